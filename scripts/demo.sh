#!/usr/bin/env bash
# Self-contained demo: builds vsd, starts it on two net_tap ports
# (configs/demo.toml), moves the taps into a client and a server namespace,
# shows the VIP answering ARP and ping, prints vsd's status and counters,
# and tears everything down again (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building vsd (release)"
cargo build --release --bins 2>&1 | tail -1

VSD=target/release/vsd
VSADM=target/release/vsadm
CFG=configs/demo.toml
SOCK=/run/vsd/vsd.sock
NS_C=vsd-demo-client
NS_S=vsd-demo-servers
LOG=$(mktemp /tmp/vsd-demo.XXXXXX.log)
VSD_PID=

cleanup() {
  set +e
  if [[ -n "$VSD_PID" ]] && kill -0 "$VSD_PID" 2>/dev/null; then
    kill -TERM "$VSD_PID"
    for _ in $(seq 50); do kill -0 "$VSD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VSD_PID" 2>/dev/null
  fi
  ip netns del "$NS_C" 2>/dev/null
  ip netns del "$NS_S" 2>/dev/null
  rm -f "$LOG"
}
trap cleanup EXIT

for ns in "$NS_C" "$NS_S"; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done

echo "== starting vsd --config $CFG"
"$VSD" --config "$CFG" >"$LOG" 2>&1 &
VSD_PID=$!
for _ in $(seq 300); do
  [[ -S "$SOCK" ]] && ip link show vsd1 >/dev/null 2>&1 && break
  kill -0 "$VSD_PID" 2>/dev/null || { cat "$LOG"; echo "vsd exited"; exit 1; }
  sleep 0.1
done
[[ -S "$SOCK" ]] || { cat "$LOG"; echo "vsd did not come up"; exit 1; }

# client side: 198.18.0.0/24 with the VIP 198.18.0.100; servers: 198.18.1.0/24
ip link set vsd0 netns "$NS_C"
ip -n "$NS_C" addr add 198.18.0.2/24 dev vsd0
ip -n "$NS_C" link set vsd0 up
ip link set vsd1 netns "$NS_S"
ip -n "$NS_S" addr add 198.18.1.11/24 dev vsd1
ip -n "$NS_S" link set vsd1 up

echo
echo "== client: ping the VIP 198.18.0.100"
ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.0.100
echo
echo "== client: neighbour table (vsd's MAC answers for the VIP)"
ip -n "$NS_C" neigh show 198.18.0.100
echo
echo "== servers: ping the director address 198.18.1.1"
ip netns exec "$NS_S" ping -c 2 -i 0.2 -W 2 198.18.1.1
echo
echo "== vsadm --status"
"$VSADM" --socket "$SOCK" --status
echo
echo "== vsadm --counters"
"$VSADM" --socket "$SOCK" --counters
echo
echo "== stopping vsd (SIGTERM)"
kill -TERM "$VSD_PID"
wait "$VSD_PID"
echo "vsd exited with status $?"
VSD_PID=
