#!/usr/bin/env bash
# Builds the Debian package of vsd from this tree into target/debian/:
#
#   scripts/package.sh               # release binaries (what you install)
#   VSD_PROFILE=dev scripts/package.sh   # debug binaries (the CI check; fast)
#
# debhelper drives it (debian/rules; docs/packaging.md says why), run
# directly rather than through dpkg-buildpackage so nothing is written
# outside the tree. Needs root or fakeroot (file ownership in the package).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/rust.sh
find_rust package || exit 1
if ! command -v dh >/dev/null 2>&1; then
  echo "package: debhelper is not installed (scripts/setup.sh installs it, or apt-get install debhelper)" >&2
  exit 1
fi
export VSD_PROFILE=${VSD_PROFILE:-release}
export VSD_DEB_DIR=${VSD_DEB_DIR:-target/debian}
rm -f "$VSD_DEB_DIR"/vsd_*.deb "$VSD_DEB_DIR"/vsd-dbgsym_*.deb
ROOT=
((EUID == 0)) || ROOT=fakeroot
debian/rules clean >/dev/null
debian/rules build
$ROOT debian/rules binary
debian/rules clean >/dev/null
ls "$VSD_DEB_DIR"/vsd_*.deb
