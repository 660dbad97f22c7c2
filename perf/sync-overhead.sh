#!/usr/bin/env bash
# Connection sync overhead on the memif bench (issue 15): vsd's forwarding rate with a
# master sync daemon against the same vsd without one, alternating off/on sessions, and the
# connection updates per second the master sent. vsd's worker on CPU 1, the generator on
# CPU 0 with vsd's control thread and the sync daemon (as perf/run.sh).
#
#   perf/sync-overhead.sh [options]
#     --pairs N              off/on session pairs, alternated (default 3)
#     --duration S, --repeat N   measurement windows per session (default 2 s x 3)
#     --flows N              established client flows (default 100000)
#     --new-conn-share F     share of packets opening a new connection (default 0.2)
#     --persistence SECS     persistent service (default 300; 0: none). With the kernel's
#                            default knobs the master sends a connection at its 3rd packet
#                            and every 50th, and its persistence template on every client
#                            packet (the kernel's rule), so a persistent service is the
#                            update-heavy case
#     --set-sync "K=V ..."   sync knobs for the "on" sessions (default: the kernel's)
#     --transport T          how the "on" master sends (default dataplane):
#                            dataplane: the worker sends its own messages out of the memif
#                              port, multicast to 224.0.0.81:8848 (vsd-gen counts them as
#                              rx_other and frees them); no daemon thread
#                            kernel: the daemon thread with kernel sockets, to a unicast peer
#                              (127.0.0.1 on lo, port 18848; nothing listens there, the
#                              datagrams are dropped by the kernel after the send)
#     --no-build             do not build the release binaries first
#     --retry-slow N         run a session again, up to N times (default 2), when
#                            vsd-xcpu-probe says the host moved cache lines between the
#                            two CPUs at its slow speed around it (perf/README.md, "The
#                            host's two speeds"); the summary compares the sessions
#                            outside the slow mode when both sides have some
#     --slow-xcpu-ns NS      a probe above NS ns per transfer is the slow mode (default 100)
#
# No second director is needed: what is measured is the master's cost (data plane: the
# worker's encoding and sends; kernel: the workers' queues + daemon thread + sends).
# Per session one line: rx Mpps (requests at the servers + replies at the clients, vsd-gen's
# median window), and for "on" the records the workers fed and the entries the daemon sent per
# second (sampled once a second from `vsadm --counters --json` in both kinds of session).
# At the end: median off, median on, on/off, the worker's cycles per packet off and on (the
# figure a starved generator cannot move), median updates/s, and the master daemon thread's
# share of a CPU (what it takes from the generator on CPU 0 here). Raw output in
# /tmp/vsd-syncbench-last/ (SYNCBENCH_RAW=DIR). Needs root and DPDK; every DPDK process has
# --no-pci and its own --file-prefix (hssync...), sockets live in a temp directory, and
# everything started is stopped on exit, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=3
DURATION=2
REPEAT=3
FLOWS=100000
NEW_SHARE=0.2
PERSISTENCE=300
SET_SYNC=""
TRANSPORT=dataplane
BUILD=1
RETRY_SLOW=2
SLOW_XCPU_NS=100
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --pairs) PAIRS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --flows) FLOWS=$2; shift ;;
        --new-conn-share) NEW_SHARE=$2; shift ;;
        --persistence) PERSISTENCE=$2; shift ;;
        --set-sync) SET_SYNC=$2; shift ;;
        --transport) TRANSPORT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --retry-slow) RETRY_SLOW=$2; shift ;;
        --slow-xcpu-ns) SLOW_XCPU_NS=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --bin vsd --bin vsadm --bin vsd-gen --bin vsd-xcpu-probe -p vsd -p vsd-gen) >&2
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
GEN="$TARGET/release/vsd-gen"
VSD="$TARGET/release/vsd"
VSADM="$TARGET/release/vsadm"
XPROBE="$TARGET/release/vsd-xcpu-probe"
RAW="${SYNCBENCH_RAW:-/tmp/vsd-syncbench-last}"
mkdir -p "$RAW"
TAG="hssync$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
MEMIF_SOCK="$WORK/memif.sock"
CTL_SOCK="$WORK/vsd.sock"
VSD_PID=""
GEN_PID=""
POLL_PID=""
PREFIXES=()

log() { printf '[syncbench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

stop_poll() {
    if [ -n "$POLL_PID" ]; then
        kill "$POLL_PID" 2>/dev/null || true
        wait "$POLL_PID" 2>/dev/null || true
    fi
    POLL_PID=""
}

stop_vsd() {
    stop_poll
    if [ -n "$VSD_PID" ] && kill -0 "$VSD_PID" 2>/dev/null; then
        kill -INT "$VSD_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$VSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$VSD_PID" 2>/dev/null || true
        wait "$VSD_PID" 2>/dev/null || true
    fi
    VSD_PID=""
    rm -f "$MEMIF_SOCK" "$CTL_SOCK"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_vsd
    if [ -n "$GEN_PID" ]; then
        kill -KILL "$GEN_PID" 2>/dev/null || true
        wait "$GEN_PID" 2>/dev/null || true
    fi
    for p in "${PREFIXES[@]}"; do
        rm -rf "/var/run/dpdk/$p" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$p"
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

new_prefix() { PREFIX="$TAG-$1"; PREFIXES+=("$PREFIX"); }

vsd_config() { # sync(on|off) prefix
    local cap=$((FLOWS * 2 + 2000000)) i
    cat <<EOF
# generated by perf/sync-overhead.sh: sync $1
[eal]
args = ["--no-pci", "--file-prefix=$2"]
huge = false
memory_mb = 1536

[lcores]
control = 0
workers = [1]

[control]
socket = "$CTL_SOCK"

[[port]]
name = "bench0"
device = "net_memif0,role=server,socket=$MEMIF_SOCK,socket-abstract=no"
rx_desc = 1024
tx_desc = 1024
mac = "02:00:00:00:10:01"
rss = false
addresses = ["198.18.0.1/24"]
gateway = "198.18.0.254"

[[vip]]
address = "198.18.0.100"
port = "bench0"

[lb]
conn_capacity = $cap

[[service]]
proto = "tcp"
vip = "198.18.0.100"
port = 80
scheduler = "rr"
EOF
    [ "$PERSISTENCE" != 0 ] && printf 'persistence_timeout = %s\n' "$PERSISTENCE"
    for i in 11 12 13 14; do
        printf '\n[[service.real_server]]\naddress = "198.18.0.%s"\nport = 8080\nmethod = "nat"\n' "$i"
    done
    if [ "$1" = on ] && [ "$TRANSPORT" = dataplane ]; then
        printf '\n[[sync_daemon]]\nrole = "master"\nmcast_interface = "bench0"\nsyncid = 15\n'
        printf 'transport = "dataplane"\n'
    elif [ "$1" = on ]; then
        printf '\n[[sync_daemon]]\nrole = "master"\nmcast_interface = "lo"\nsyncid = 15\n'
        printf 'mcast_port = 18848\npeers = ["127.0.0.1"]\ntransport = "kernel"\n'
    fi
    if [ "$1" = on ] && [ -n "$SET_SYNC" ]; then
        printf '\n[sync]\n'
        local kv
        for kv in $SET_SYNC; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done
    fi
}

start_vsd() { # label sync
    new_prefix "vsd-$1"
    vsd_config "$2" "$PREFIX" >"$RAW/$1.toml"
    "$VSD" --config "$RAW/$1.toml" </dev/null >"$RAW/$1.vsd.log" 2>&1 &
    VSD_PID=$!
    local i
    for i in $(seq 300); do
        [ -S "$CTL_SOCK" ] && [ -S "$MEMIF_SOCK" ] && { sleep 0.3; return 0; }
        kill -0 "$VSD_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "vsd did not start: $(tail -n 2 "$RAW/$1.vsd.log")"
    stop_vsd
    return 1
}

# Once a second: time, records the workers fed, entries the daemon sent, records lost, and
# the CPU seconds the master daemon's thread (vsd-sync-master) has used.
poll_counters() { # label
    while :; do
        "$VSADM" --socket "$CTL_SOCK" --counters --json 2>/dev/null | python3 -c '
import glob, json, os, sys, time
try:
    c = json.load(sys.stdin)["sync"]["counters"]
except Exception:
    sys.exit()
cpu = 0.0
for t in glob.glob("/proc/%s/task/*" % sys.argv[1]):
    try:
        if open(t + "/comm").read().strip() == "vsd-sync-master":
            f = open(t + "/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
print(time.time(), c.get("worker_fed", 0), c.get("sent_entries", 0),
      c.get("worker_feed_full", 0) + c.get("worker_buffer_full", 0)
      + sum(v for k, v in c.items() if k.startswith("dataplane_dropped")
            or k == "dataplane_encode_errors"), cpu, flush=True)
' "$VSD_PID" >>"$RAW/$1.poll" || true
        sleep 1
    done
}

session_once() { # label sync
    local label=$1 sync=$2
    start_vsd "$label" "$sync" || return 1
    : >"$RAW/$label.poll"
    poll_counters "$label" &
    POLL_PID=$!
    new_prefix "gen-$label"
    "$GEN" --file-prefix "$PREFIX" --memif-socket "$MEMIF_SOCK" --expect nat --proto tcp \
        --rport 8080 --flows "$FLOWS" --new-conn-share "$NEW_SHARE" --repeat "$REPEAT" \
        --duration "$DURATION" --warmup 1 --linger 30 --stop-if-silent \
        --lips 198.18.0.200/29,198.18.0.208/29 >"$RAW/$label.json" 2>"$RAW/$label.gen.log" &
    GEN_PID=$!
    local limit=$((DURATION * REPEAT + 90)) t0=$SECONDS
    while ! grep -q "^vsd-gen: " "$RAW/$label.gen.log" 2>/dev/null; do
        kill -0 "$GEN_PID" 2>/dev/null || break
        if [ $((SECONDS - t0)) -gt "$limit" ]; then log "$label: vsd-gen hangs; stopping it"; break; fi
        sleep 0.5
    done
    stop_poll
    "$VSADM" --socket "$CTL_SOCK" --counters --json >"$RAW/$label.counters.json" 2>&1 || true
    stop_vsd
    for _ in $(seq 100); do kill -0 "$GEN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    GEN_PID=""
    if [ ! -s "$RAW/$label.json" ]; then
        log "$label: vsd-gen failed: $(tail -n 1 "$RAW/$label.gen.log")"
        return 1
    fi
}

# now and then vsd's memif server never accepts the generator; a fresh vsd does
session_started() {
    local try
    for try in 1 2; do
        session_once "$@" && return 0
        log "$1: once more"
    done
    session_once "$@"
}

# The host's cache-line transfer time between CPU 0 and CPU 1 in ns (null if the
# probe cannot run), as perf/run.sh measures it around every session.
xcpu_probe() {
    "$XPROBE" --cpus 0,1 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["ns_per_transfer"])' 2>/dev/null ||
        echo null
}
xcpu_slow() { # values...
    local x
    for x in "$@"; do
        [ "$x" != null ] && awk -v a="$x" -v b="$SLOW_XCPU_NS" 'BEGIN { exit !(a > b) }' && return 0
    done
    return 1
}

# A session, run again (up to --retry-slow times) while the host was in its slow
# cross-CPU mode around it; XCPU holds the last try's probes ("before after").
session() { # label sync
    local try x0 x1
    for try in $(seq 0 "$RETRY_SLOW"); do
        [ "$try" = 0 ] || log "$1: the host was in its slow cross-CPU mode ($XCPU ns); again ($try of $RETRY_SLOW)"
        x0=$(xcpu_probe)
        session_started "$@" || return 1
        x1=$(xcpu_probe)
        XCPU="$x0 $x1"
        xcpu_slow "$x0" "$x1" || return 0
    done
    return 0
}

line() { # label "xcpu-before xcpu-after"
    python3 - "$RAW/$1.json" "$RAW/$1.poll" "$1" "$RAW/$1.counters.json" "$2" "$SLOW_XCPU_NS" <<'EOF'
import json, statistics, sys
path, poll, label, counters, xcpu, slow_ns = sys.argv[1:7]
xcpu = [None if x == "null" else float(x) for x in xcpu.split()]
host_slow = any(x is not None and x > float(slow_ns) for x in xcpu)
# the worker's own figure: TSC cycles on busy loop turns per received packet
# over the session (vsd's busy_cycles / rx_packets), which a starved
# generator on the shared CPU 0 cannot move
try:
    ev = json.load(open(counters))["total"]["events"]
    cpp = ev["busy_cycles"] / ev["rx_packets"] if ev.get("rx_packets") else None
except Exception:
    cpp = None
rows = [json.loads(l) for l in open(path) if l.strip()]
rx = statistics.median(r["rx_mpps"] for r in rows)
tx = statistics.median(r["tx_mpps"] for r in rows)
pts = [list(map(float, l.split())) for l in open(poll) if len(l.split()) == 5]
rates = []
for a, b in zip(pts, pts[1:]):
    dt = b[0] - a[0]
    if dt > 0 and b[2] > a[2]:
        # (a sample that missed the daemon's thread reads 0 CPU seconds)
        cpu = (b[4] - a[4]) / dt if a[4] > 0 and b[4] >= a[4] else 0
        rates.append(((b[1] - a[1]) / dt, (b[2] - a[2]) / dt, b[3], cpu))
# the busiest seconds are the measured windows (prime and drain are shorter)
rates.sort(key=lambda r: r[1], reverse=True)
top = rates[: max(1, len(rates) // 2)] if rates else []
fed = statistics.median(r[0] for r in top) if top else 0
sent = statistics.median(r[1] for r in top) if top else 0
daemon_cpu = statistics.median(r[3] for r in top) if top else 0
lost = pts[-1][3] if pts else 0
print(json.dumps({"label": label, "rx_mpps": rx, "tx_mpps": tx, "fed_per_s": fed,
                  "sent_per_s": sent, "lost": lost, "daemon_cpu": round(daemon_cpu, 3),
                  "cycles_per_packet": round(cpp, 1) if cpp else None,
                  "xcpu_ns": xcpu, "host_slow": host_slow}))
EOF
}

log "load before: $(cut -d' ' -f1-3 /proc/loadavg); $PAIRS pairs, windows ${DURATION}s x $REPEAT, $FLOWS flows, new-conn share $NEW_SHARE, persistence $PERSISTENCE, knobs '${SET_SYNC:-kernel defaults}', transport $TRANSPORT"
: >"$RAW/summary.jsonl"
for i in $(seq "$PAIRS"); do
    for sync in off on; do
        label="$sync-$i"
        log "session $label"
        if session "$label" "$sync"; then
            line "$label" "$XCPU" | tee -a "$RAW/summary.jsonl"
        fi
    done
done
python3 - "$RAW/summary.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Sessions in the host's slow cross-CPU mode measure the host, not the sync cost
# (perf/README.md, "The host's two speeds"). The probes around a session miss a switch
# inside it, but the worker's own cycles per packet show it (the slow mode costs 1.5-2x,
# sync a few %): a session above 1.25x the lowest of its side was disturbed. The medians
# below compare the undisturbed sessions; the best against the best uses them all.
def side(r):
    return r["label"].split("-")[0]
low = {}
for r in rows:
    c = r.get("cycles_per_packet")
    if c:
        low[side(r)] = min(low.get(side(r), c), c)
def disturbed(r):
    c = r.get("cycles_per_packet")
    return bool(c) and c > 1.25 * low[side(r)]
left = [r for r in rows if disturbed(r)]
if left:
    print(f"left out of the medians: {len(left)} session(s) in the host's slow mode by their "
          f"cycles per packet: " + ", ".join(f"{r['label']} ({r['cycles_per_packet']})" for r in left))
all_rows = rows
rows = [r for r in rows if not disturbed(r)]
off = [r["rx_mpps"] for r in rows if r["label"].startswith("off")]
on = [r for r in rows if r["label"].startswith("on")]
if not off or not on:
    print("no result"); sys.exit(1)
m_off = statistics.median(off)
m_on = statistics.median(r["rx_mpps"] for r in on)
ups = statistics.median(r["sent_per_s"] for r in on)
fed = statistics.median(r["fed_per_s"] for r in on)
lost = max(r["lost"] for r in on)
print(f"off: {m_off:.3f} Mpps (sessions: {', '.join(f'{x:.3f}' for x in off)})")
on_list = ", ".join("%.3f" % r["rx_mpps"] for r in on)
print(f"on:  {m_on:.3f} Mpps (sessions: {on_list})")
print(f"on/off: {m_on / m_off * 100:.1f}%  (loss {(1 - m_on / m_off) * 100:+.1f}%)")
# best against best: a session the host disturbed is only ever slower, so the fastest
# session of each side is the least disturbed measurement of it
all_on = [r for r in all_rows if side(r) == "on"]
b_off = max(r["rx_mpps"] for r in all_rows if side(r) == "off")
b_on = max(r["rx_mpps"] for r in all_on)
b_ups = max(all_on, key=lambda r: r["rx_mpps"])["sent_per_s"]
print(f"best against best: off {b_off:.3f}, on {b_on:.3f} Mpps at {b_ups / 1e3:.0f}K updates/s: "
      f"{b_on / b_off * 100:.1f}%  (loss {(1 - b_on / b_off) * 100:+.1f}%)")
c_off = [r["cycles_per_packet"] for r in rows if r["label"].startswith("off") and r.get("cycles_per_packet")]
c_on = [r["cycles_per_packet"] for r in on if r.get("cycles_per_packet")]
if c_off and c_on:
    print(f"worker cycles/packet: off {statistics.median(c_off):.1f} (best {min(c_off):.1f}), "
          f"on {statistics.median(c_on):.1f} (best {min(c_on):.1f}); on/off medians "
          f"{statistics.median(c_on) / statistics.median(c_off):.3f}, best {min(c_on) / min(c_off):.3f}")
print(f"sync updates: {ups / 1e3:.0f}K entries sent/s, {fed / 1e3:.0f}K records fed/s "
      f"(median of the on sessions' busiest seconds); records or messages lost: {lost:.0f}")
cpu = statistics.median(r.get("daemon_cpu", 0) for r in on)
print(f"master daemon thread: {cpu * 100:.1f}% of a CPU (CPU 0, shared with vsd-gen), "
      f"{cpu / ups * 1e9 if ups else 0:.0f} ns per entry sent")
EOF
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
