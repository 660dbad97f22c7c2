#!/usr/bin/env bash
# Scale-out with 3 (or more) directors behind a router's ECMP (issue 17, docs/ecmp.md):
# runs tests/e2e_ecmp.rs with VSD_ECMP_DIRECTORS directors (default 3; CI runs the same
# test with 2). The router's table must show the VIPs over N, N-1, N, N-1, N next hops
# through drain, undrain, SIGKILL and add-back of a director; prints the broken-connection
# table per event and method and the convergence times (route, BFD, BGP).
#
#   scripts/ecmp-scaleout.sh [DIRECTORS] [--conns N] [--no-sync] [--no-sloppy]
#     DIRECTORS    2..9 (default 3)
#     --conns N    long-lived connections per method (default 120)
#     --no-sync    no connection sync: FULLNAT connections break on every reshuffle
#                  (reported, not asserted)
#     --no-sloppy  no sloppy pickup: DR connections that move break (reported)
#
# Needs what the test needs (root, /dev/net/tun, hugepages, bird2, python3; every
# director takes 128 MiB of hugepages). The test's namespaces, prefixes and cleanup apply.
# Its output stays in /tmp/vsd-ecmp-scaleout.log, the load client's event log (one JSON
# line per break, stall and new connection) in /tmp/vsd-ecmp-scaleout-load.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIRECTORS=3
CONNS=120
SYNC=1
SLOPPY=1
while (($#)); do
    case "$1" in
        --conns) CONNS=${2:?--conns needs a number}; shift ;;
        --no-sync) SYNC=0 ;;
        --no-sloppy) SLOPPY=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *[!0-9]* | "") echo "unknown argument $1" >&2; exit 2 ;;
        *) DIRECTORS=$1 ;;
    esac
    shift
done
LOG=/tmp/vsd-ecmp-scaleout.log
cd "$ROOT"
rc=0
CI=true VSD_ECMP_DIRECTORS=$DIRECTORS VSD_ECMP_CONNS=$CONNS VSD_ECMP_SYNC=$SYNC \
    VSD_ECMP_SLOPPY=$SLOPPY VSD_ECMP_LOG=/tmp/vsd-ecmp-scaleout-load.log \
    cargo test --test e2e_ecmp -- --nocapture --test-threads=1 >"$LOG" 2>&1 || rc=$?
# the table and the distribution lines
sed -n '/^before the events/p; /^after the kill/p; /^BFD sessions/p; /^ECMP, /,/^test result/p' "$LOG" |
    grep -v -e '^test result' -e '^ok$' -e '^$' || true
if ((rc)); then
    echo "ecmp-scaleout: the test failed (exit $rc); see $LOG" >&2
    grep -E "panicked|assert" "$LOG" | head -5 >&2 || true
fi
exit "$rc"
