#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, capture replay and the
# end-to-end tests on net_tap (root, /dev/net/tun and hugepages; under
# CI=true a missing prerequisite fails instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

if ((EUID != 0)); then
  echo "test: needs root (packages, hugepages, network namespaces for the end-to-end tests): run it as root or with sudo" >&2
  exit 1
fi
source scripts/lib/rust.sh
find_rust test || exit 1
scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build benches"
cargo build --benches
echo "== cargo test"
cargo test --workspace
echo "== Debian package (build, contents, unit, man pages)"
scripts/check-package.sh
