#!/usr/bin/env bash
# SYN-flood benchmark on net_tap (issue 12 item 3): legitimate connection success rate
# while two raw-socket senders flood the VIP, with the SYN proxy and with IPVS's
# drop_entry/secure_tcp. Prints one line per case. Needs root, hugepages, curl, python3.
#   perf/synflood.sh [SECONDS]   (default 10, at most 120)
# The proxy's own cost per new connection (cookies/s per core) is
# `cargo bench --bench lb_core -- --quick synproxy`.
set -euo pipefail
cd "$(dirname "$0")/.."
VSD_FLOOD_SECONDS="${1:-10}" exec cargo test --release --test e2e_synflood -- \
    --ignored --nocapture --test-threads 1 benchmark_legitimate_success_during_a_flood
