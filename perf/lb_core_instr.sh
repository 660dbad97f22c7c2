#!/usr/bin/env bash
# Instructions per packet of lb_core's burst passes, per method and family, at
# 1K flows: cachegrind (--cache-sim=no) counts a run with P packets per pass and
# one with 0; the difference over the packets sent is the per-packet cost
# (NAT and FULLNAT: requests and replies, two passes). Deterministic: the figure
# to compare builds with on a loaded machine (perf/README.md, IPv6 against IPv4).
#
#   perf/lb_core_instr.sh [BIN] [METHODS] [FAMILIES]
#   BIN: an lb_core bench binary (default: the newest target/release/deps/lb_core-*,
#        from `cargo bench --bench lb_core --no-run`); METHODS default
#        "dr tun nat fullnat"; FAMILIES default "4 6".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$(ls -t "$ROOT"/target/release/deps/lb_core-* | grep -v '\.d$' | head -n 1)}
METHODS=${2:-"dr tun nat fullnat"}
FAMILIES=${3:-"4 6"}
P=65536
OUT=$(mktemp -d /tmp/lb_core_instr.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
count() { # method family packets
    valgrind --tool=cachegrind --cache-sim=no \
        --cachegrind-out-file="$OUT/cg.out" "$BIN" --quick fwd --family "$2" \
        --method "$1" --flows 1000 --packets "$3" --burst-only >/dev/null 2>"$OUT/log"
    awk '/I *refs:/ { gsub(",", "", $4); print $4 }' "$OUT/log"
}
for m in $METHODS; do
    passes=1
    case $m in nat | fullnat) passes=2 ;; esac
    for f in $FAMILIES; do
        base=$(count "$m" "$f" 0)
        full=$(count "$m" "$f" "$P")
        echo "$m IPv$f $(((full - base) / (P * passes))) instructions/packet"
    done
done
