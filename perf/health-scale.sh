#!/usr/bin/env bash
# Scale benchmark of the health checker engine (perf/health_scale.rs):
# 10,000 TCP_CHECK targets at delay_loop 1 (100 addresses x 100 ports by
# default) from the engine's one thread, against listeners inside a network
# namespace this script creates (198.18.1.0/24 on its loopback). Prints
# checks/s, start lateness p50/p99 and the vsd-health thread's CPU use.
#
#   perf/health-scale.sh [--addrs 100] [--ports 100] [--seconds 30] [--no-build]
#
# Needs root (namespace). Everything is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

addrs=100 ports=100 seconds=30 build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --addrs) addrs=$2; shift 2 ;;
        --ports) ports=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$addrs" -ge 1 ] && [ "$addrs" -le 254 ] || { echo "--addrs must be 1..254" >&2; exit 2; }

if [ $build = 1 ]; then
    cargo bench --bench health_scale --no-run >&2
fi
bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/health_scale-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$bin" ] || { echo "health_scale binary not found; build with cargo bench --bench health_scale --no-run" >&2; exit 1; }

ns="vsdhs-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
for i in $(seq 1 "$addrs"); do
    echo "address add 198.18.1.$i/32 dev lo"
done | ip -n "$ns" -batch -
# Every check closes first, leaving a TIME_WAIT socket per attempt; bound
# them (per namespace) so the run does not hold ~600K of them.
ip netns exec "$ns" sysctl -qw net.ipv4.tcp_max_tw_buckets=32768
ip netns exec "$ns" sysctl -qw net.core.somaxconn=4096

ip netns exec "$ns" "$bin" --addrs 198.18.1.1 --count "$addrs" --ports 20000 --nports "$ports" \
    --seconds "$seconds"
