#!/usr/bin/env bash
# Does checking 10,000 real servers slow the data plane? perf/run.sh --quick
# with and without a service of N health-checked real servers (TCP_CHECK at
# delay_loop 1), alternated, comparing vsd's worker cycles per packet and
# rates point by point.
#
#   perf/health-ab.sh [--servers 10000] [--rounds 2] [--modes "dr nat"] [--no-build]
#
# The checks connect to 127.0.0.1 ports 20000-20099 (connect_ip/connect_port),
# where a listener this script starts on CPU 0 accepts and closes (it counts
# the connections: proof the checks ran). Loopback only: no route, address or
# namespace is touched. vsd runs its checker thread on the control lcore's
# CPU (CPU 0, shared with the generator), its worker on CPU 1: the worker's
# cycles per packet is the data-plane figure; rates also show what the
# checker's CPU 0 time costs the generator. Results: perf/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

servers=10000 rounds=2 modes="dr nat" build=1 ports=100
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) servers=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "health-ab: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$servers" -ge 1 ] && [ "$servers" -le 16000 ] || { echo "--servers must be 1..16000" >&2; exit 2; }

# raw results stay in HEALTH_AB_RAW (default /tmp/vsd-health-ab-last)
work=${HEALTH_AB_RAW:-/tmp/vsd-health-ab-last}
rm -rf "$work"
mkdir -p "$work"
listener=""
cleanup() {
    [ -n "$listener" ] && kill "$listener" 2>/dev/null && wait "$listener" 2>/dev/null
    true
}
trap cleanup EXIT INT TERM

# the checks' far end: accept and close, count
cat >"$work/listen.py" <<'PY'
import selectors, signal, socket, sys
base, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel, count = selectors.DefaultSelector(), 0
for p in range(base, base + n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p)); s.listen(4096); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
def done(*_):
    open(out, "w").write("%d\n" % count); sys.exit(0)
signal.signal(signal.SIGTERM, done)
open(out, "w").write("0\n")
while True:
    for key, _ in sel.select(1.0):
        while True:
            try:
                c, _ = key.fileobj.accept()
            except BlockingIOError:
                break
            # an orderly close (no linger-0 RST: a reset that overtakes the
            # checker's connect reads as a failed check)
            c.close(); count += 1
PY
# on CPU 0 with the generator and vsd's control side: CPU 1 is the worker's
taskset -c 0 python3 "$work/listen.py" 20000 "$ports" "$work/accepts" &
listener=$!

# N NAT real servers (198.19.x.y, never sent a packet: the generator's flows
# go to the benchmark's own service) on a second VIP, each checked
{
    printf '\n[[service]]\nproto = "tcp"\nvip = "198.18.0.101"\nport = 80\nscheduler = "rr"\n'
    printf '[service.health]\ndelay_loop = 1\nconnect_timeout = 1\n'
    for i in $(seq 0 $((servers - 1))); do
        printf '\n[[service.real_server]]\naddress = "198.19.%d.%d"\nport = 80\nmethod = "nat"\n' $((i / 250)) $((i % 250 + 1))
        printf '[[service.real_server.check]]\ntype = "tcp"\nconnect_ip = "127.0.0.1"\nconnect_port = %d\n' $((20000 + i % ports))
    done
} >"$work/health.toml"

if [ $build = 1 ]; then cargo build --release --workspace --bins >/dev/null 2>&1; fi
for r in $(seq 1 "$rounds"); do
    for arm in off on; do
        extra=()
        [ $arm = on ] && extra=(--extra-config "$work/health.toml")
        before=$(cat "$work/accepts" 2>/dev/null || echo 0)
        start=$(date +%s)
        perf/run.sh --quick --no-build --modes "$modes" --flows 1000 --out "$work/$arm-$r" "${extra[@]}" \
            >"$work/$arm-$r.log" 2>&1 || { tail -20 "$work/$arm-$r.log"; echo "health-ab: run $arm-$r failed" >&2; exit 1; }
        echo "$arm $r $(( $(date +%s) - start ))" >>"$work/arms"
    done
done
kill "$listener"; wait "$listener" 2>/dev/null || true; listener=""
accepts=$(cat "$work/accepts")

python3 - "$work" "$rounds" "$servers" "$accepts" <<'PY'
import json, os, statistics, sys
work, rounds, servers, accepts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def points(arm, r):
    recs = json.load(open(os.path.join(work, f"{arm}-{r}", "latest.json")))
    recs = recs.get("records", recs) if isinstance(recs, dict) else recs
    out = {}
    for x in recs:
        # vsd's throughput points (testpmd's io/macswap are the ceiling)
        if x.get("kind") == "throughput" and x.get("mode") in ("dr", "tun", "nat", "fullnat"):
            if x.get("cycles_per_packet"):
                key = (x["mode"], x.get("flows"))
                out.setdefault(key, []).append(
                    (x["cycles_per_packet"], x.get("mpps"), x.get("packets_per_burst"), x.get("worker_stalls")))
    return out
rows = {}
for r in range(1, rounds + 1):
    for arm in ("off", "on"):
        for k, v in points(arm, r).items():
            rows.setdefault(k, {"off": [], "on": []})[arm].extend(v)
on_secs = sum(int(l.split()[2]) for l in open(os.path.join(work, "arms")) if l.startswith("on "))
print(f"health-ab: {servers} TCP_CHECK real servers at delay_loop 1; the listener accepted {accepts} checks "
      f"in {on_secs} s of 'on' runs (~{accepts / max(on_secs, 1):.0f}/s; the config load at each vsd start adds some)")
print(f"{'point':<22}{'cycles/pkt off':>16}{'cycles/pkt on':>15}{'on/off':>8}{'Mpps off':>10}{'Mpps on':>9}"
      f"{'pkts/burst off':>16}{'on':>6}{'worker stalls off':>19}{'on':>6}")
for (fwd, flows), d in sorted(rows.items(), key=lambda kv: str(kv[0])):
    if not d["off"] or not d["on"]:
        continue
    med = lambda arm, i: statistics.median((r[i] or 0) for r in d[arm])
    c_off, c_on = med("off", 0), med("on", 0)
    print(f"{fwd + ' ' + str(flows) + ' flows':<22}{c_off:>16.1f}{c_on:>15.1f}{c_on / c_off:>8.3f}"
          f"{med('off', 1):>10.2f}{med('on', 1):>9.2f}{med('off', 2):>16.1f}{med('on', 2):>6.1f}"
          f"{med('off', 3):>19.0f}{med('on', 3):>6.0f}")
print(f"raw: {work}")
PY
