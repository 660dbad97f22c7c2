#!/usr/bin/env bash
# Repeated director failovers with long connections of every method (issue 15): runs
# tests/e2e_failover.rs's VRRPv2 test with the downloads across every takeover
# (VSD_FAILOVER_EVERY=1) and VSD_FAILOVER_REPEATS rounds of each kill (keepalived stop,
# vsd SIGKILL; default 3 + 3 = 6 failovers), then sums the broken connections per method.
#
#   scripts/failover-rounds.sh [ROUNDS] [--full]
#     ROUNDS   rounds per kill kind (default 3)
#     --full   the issue's sizes (VSD_FAILOVER_FULL=1: 32 s downloads, 35 connections
#              per method)
#
# Needs what the test needs (root, /dev/net/tun, hugepages, keepalived). The test's own
# namespaces, prefixes and cleanup apply; its log stays in /tmp/vsd-failover-rounds.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
FULL=0
for a in "$@"; do
    case "$a" in
        --full) FULL=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *[!0-9]* | "") echo "unknown argument $a" >&2; exit 2 ;;
        *) ROUNDS=$a ;;
    esac
done
LOG=/tmp/vsd-failover-rounds.log
cd "$ROOT"
rc=0
VSD_FAILOVER_EVERY=1 VSD_FAILOVER_REPEATS=$ROUNDS VSD_FAILOVER_FULL=$FULL \
    cargo test --test e2e_failover vrrp2_failover_keeps_connections_of_every_method \
    -- --nocapture >"$LOG" 2>&1 || rc=$?
python3 - "$LOG" <<'PY'
import re, sys
names = {80: "DR", 81: "TUN", 82: "NAT", 83: "FULLNAT"}
tot = {p: [0, 0] for p in names}
rounds = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"^(.*): per port \(complete, broken\): (\[.*\])", line)
    if not m:
        continue
    rounds += 1
    for port, good, broken in re.findall(r"\((\d+), (\d+), (\d+)\)", m.group(2)):
        tot[int(port)][0] += int(good)
        tot[int(port)][1] += int(broken)
    print(m.group(1), m.group(2))
for line in open(sys.argv[1], errors="replace"):
    if "takeover median" in line:
        print(line.rstrip())
print(f"{rounds} failovers with downloads; per method complete/broken: " +
      ", ".join(f"{names[p]} {g}/{b}" for p, (g, b) in tot.items()))
PY
if [ "$rc" != 0 ]; then
    echo "the test failed (exit $rc); see $LOG" >&2
fi
exit "$rc"
