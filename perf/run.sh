#!/usr/bin/env bash
# vsd benchmarks on net_memif, with this machine's ceiling measured in the same run.
#
#   perf/run.sh            full run (~22 min): 3 windows of 10 s per session, 2 sessions per vsd point
#   perf/run.sh --quick    under 3 minutes: 3 windows of 1 s, fewer points
#
# Options: --quick, --no-build, --repeat N, --duration S, --warmup S,
#          --flows "1000 100000 1000000", --modes "dr tun nat fullnat",
#          --proto tcp|udp, --pkt-size N, --sched NAME, --out DIR,
#          --family 4|6 (IPv6: every address below in 2001:2::/96, e.g.
#          198.18.0.100 -> 2001:2::c612:64; 64-byte frames grow to the 84 bytes
#          with FCS that IPv6 + TCP + the generator's stamp need),
#          --wait-idle MIN (wait up to MIN minutes for a 1-minute load under 0.5),
#          --idle poll|sleep (vsd's [lcores] idle mode, default poll),
#          --ab REV (A/B: REV against this checkout, point by point; perf/ab.sh),
#          --ab-patch FILE (apply FILE to REV's build, e.g. perf/ab-patches/cycle-counters.patch),
#          --extra-config FILE (TOML appended to every vsd config, e.g. perf/health-ab.sh's
#          10,000 health-checked real servers),
#          --retry-slow N (default 2: run a throughput session again, up to N times, when
#          vsd-xcpu-probe says the host moved cache lines between the two CPUs at its slow
#          speed around it; perf/README.md "The host's two speeds"),
#          --slow-xcpu-ns NS (default 100: a probe above NS ns per transfer is the slow mode),
#          --sessions N (default 1, 2 in a full run: measure every vsd throughput point in N
#          separate sessions, all points once, then all again; a point reports its best
#          undisturbed session's cycles per packet, and a session whose cycles per packet
#          exceed 1.25x its point's lowest is left out as disturbed: the host's slow mode can
#          start and end inside a session, where the probes around it do not see it)
#
# What it does (details and the meaning of every number: perf/README.md):
#   1. builds release (vsd, vsadm, vsd-gen, vsd-stall-probe);
#   2. ceiling: vsd-gen <-> dpdk-testpmd --forward-mode=io, then macswap
#      (io again at the end: the ceiling is the best io point);
#   3. vsd in each mode at each flow count, a new-connection (SYN) run, and
#      latency runs at half of each maximum rate;
#   4. writes perf/results/latest.{json,md,png}; raw JSON lines and logs of
#      the last run stay in perf/results/last-run/ (not in git).
# Every point is repeated (windows, and with --sessions whole sessions): runs on this VM
# vary by up to 2x, and a point reports its undisturbed sessions only.
# Topology: 2 CPUs. The generator runs on CPU 0; the forwarder's one worker on
# CPU 1 (testpmd -l 0,1 / vsd control 0, workers [1]); control threads share CPU 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR="$ROOT/perf/results"
QUICK=0
BUILD=1
REPEAT=""
DURATION=""
WARMUP=""
FLOWS=""
MODES="dr tun nat fullnat"
PROTO=tcp
FAMILY=4
PKT_SIZE=64
SCHED=rr
WAIT_IDLE=0
IDLE=poll
AB_REV=""
AB_PATCH=""
EXTRA_CONFIG=""
RETRY_SLOW=2
SESSIONS=""
# A session is in the host's slow mode when a cache-line transfer between the
# two CPUs, probed just before or just after it, took longer than this (ns).
# This VM: ~31 ns (sometimes ~14) in the fast mode, 3x that and more in the
# slow one, where testpmd io drops from ~10 to ~4 Mpps.
SLOW_XCPU_NS=100

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --repeat) REPEAT=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --flows) FLOWS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        --proto) PROTO=$2; shift ;;
        --family) FAMILY=$2; shift ;;
        --pkt-size) PKT_SIZE=$2; shift ;;
        --sched) SCHED=$2; shift ;;
        --out) OUT_DIR=$2; shift ;;
        --wait-idle) WAIT_IDLE=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --extra-config) EXTRA_CONFIG=$(realpath -e "$2") || { echo "run.sh: no file $2" >&2; exit 2; }; shift ;;
        --ab) AB_REV=$2; shift ;;
        --retry-slow) RETRY_SLOW=$2; shift ;;
        --slow-xcpu-ns) SLOW_XCPU_NS=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --ab-patch) AB_PATCH=$(realpath -e "$2") || { echo "run.sh: no patch file $2" >&2; exit 2; }; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

case "$FAMILY" in 4|6) ;; *) echo "run.sh: --family 4 or 6, not $FAMILY" >&2; exit 2 ;; esac
case "$SESSIONS" in "" | [1-9] | [1-9][0-9]) ;; *) echo "run.sh: --sessions takes 1 to 99, not $SESSIONS" >&2; exit 2 ;; esac

if [ "$QUICK" = 1 ]; then
    : "${REPEAT:=3}" "${DURATION:=1}" "${WARMUP:=0.5}" "${FLOWS:=1000 1000000}" "${SESSIONS:=1}"
else
    : "${REPEAT:=3}" "${DURATION:=10}" "${WARMUP:=2}" "${FLOWS:=1000 100000 1000000}" "${SESSIONS:=2}"
fi
# SYN floods fill connection tables (SYN_RECV entries live 60 s): short windows, a short
# warm-up and a table of SYN_CAPACITY slots (8M: ~800 MB) for them.
# 3 x 0.5 s + 0.2 s at ~4M SYN/s stays under 8M.
SYN_DURATION=0.5
SYN_CAPACITY=8388608
# Table slots for the throughput points: room for the largest flow count twice over.
CONN_CAPACITY=2097152

# EAL file prefixes and the scratch directory start with this (PERF_TAG=NAME
# to tell several users' runs apart)
TAG="${PERF_TAG:-vsdperf}$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
RAW="$OUT_DIR/last-run"
MEMIF_SOCK="$WORK/memif.sock"
CTL_SOCK="$WORK/vsd.sock"
GEN="$ROOT/target/release/vsd-gen"
PROBE="$ROOT/target/release/vsd-stall-probe"
XPROBE="$ROOT/target/release/vsd-xcpu-probe"
VSD="$ROOT/target/release/vsd"
VSADM="$ROOT/target/release/vsadm"
FWD_PID=""
FWD_NAME=""
GEN_PID=""
PREFIXES=()

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# The benchmark's address for IPv4 address $1 in --family: itself, or (IPv6)
# the IPv4 address in the low 32 bits of 2001:2::/96, as vsd-gen --family 6
# forms every address (198.18.0.100 -> 2001:2::c612:64).
addr() {
    if [ "$FAMILY" = 6 ]; then
        local a b c d
        IFS=. read -r a b c d <<<"$1"
        printf '2001:2::%x:%x' $((a * 256 + b)) $((c * 256 + d))
    else
        printf '%s' "$1"
    fi
}
# Prefix length $1 (IPv4) in --family.
plen() { if [ "$FAMILY" = 6 ]; then echo $(($1 + 96)); else echo "$1"; fi; }
# A/B mode (--ab): ab_build, ab_main, ab_cleanup
. "$ROOT/perf/ab.sh"

# Stop the forwarder (testpmd or vsd): SIGINT, then SIGKILL after 10 s.
stop_fwd() {
    if [ -n "$FWD_PID" ] && kill -0 "$FWD_PID" 2>/dev/null; then
        kill -INT "$FWD_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$FWD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FWD_PID" 2>/dev/null; then
            log "$FWD_NAME ($FWD_PID) ignored SIGINT; killing it"
            kill -KILL "$FWD_PID" 2>/dev/null || true
        fi
        wait "$FWD_PID" 2>/dev/null || true
    fi
    FWD_PID=""
    rm -f "$MEMIF_SOCK" "$CTL_SOCK"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_fwd
    if [ -n "$GEN_PID" ]; then
        kill -KILL "$GEN_PID" 2>/dev/null || true
        wait "$GEN_PID" 2>/dev/null || true
    fi
    for p in "${PREFIXES[@]}"; do
        rm -rf "/var/run/dpdk/$p" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$p"
        rm -f /dev/hugepages/"$p"map_* 2>/dev/null || true
    done
    if declare -F ab_cleanup >/dev/null; then ab_cleanup; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sets PREFIX to a fresh EAL --file-prefix and remembers it for cleanup.
new_prefix() {
    PREFIX="$TAG-$1"
    PREFIXES+=("$PREFIX")
}

# Real server port: NAT and FULLNAT map 80 -> 8080, DR and TUN cannot.
rport_of() {
    case "$1" in nat|fullnat) echo 8080 ;; *) echo 80 ;; esac
}

wait_for_socket() { # path seconds
    local i
    for i in $(seq $(( $2 * 10 ))); do
        [ -S "$1" ] && return 0
        [ -n "$FWD_PID" ] && ! kill -0 "$FWD_PID" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

start_testpmd() { # forward-mode
    FWD_NAME="testpmd-$1"
    new_prefix "$FWD_NAME"
    dpdk-testpmd -l 0,1 --no-pci --file-prefix="$PREFIX" --no-huge -m 1024 \
        --vdev "net_memif0,role=server,socket=$MEMIF_SOCK,socket-abstract=no" -- \
        --forward-mode="$1" --port-topology=loop --auto-start --stats-period 1 --record-core-cycles \
        --total-num-mbufs=16384 --rxd=1024 --txd=1024 \
        </dev/null >"$RAW/$FWD_NAME.log" 2>&1 &
    FWD_PID=$!
    # Connect only once testpmd forwards: a memif client that connects while
    # the server port is still starting can make the server panic.
    local i
    for i in $(seq 300); do
        grep -q "packet forwarding - ports=" "$RAW/$FWD_NAME.log" 2>/dev/null && { sleep 0.3; return 0; }
        kill -0 "$FWD_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "testpmd did not start (see $RAW/$FWD_NAME.log)"
    return 1
}

# vsd's bench configuration for one forwarding method.
vsd_config() { # mode prefix [conn_capacity]
    local mode=$1 rport laddrs="" i cap=${3:-$CONN_CAPACITY}
    rport=$(rport_of "$mode")
    if [ "$mode" = fullnat ]; then
        laddrs="local_addresses = ["
        for i in $(seq 200 215); do laddrs+="\"$(addr "198.18.0.$i")\", "; done
        laddrs="${laddrs%, }]"
    fi
    cat <<EOF
# generated by perf/run.sh: vsd in $mode mode for the memif benchmark (IPv$FAMILY)
[eal]
args = ["--no-pci", "--file-prefix=$2"]
huge = false
memory_mb = 1024

[lcores]
control = 0
workers = [1]
$([ "$IDLE" = poll ] || printf 'idle = "%s"' "$IDLE")

[control]
socket = "$CTL_SOCK"

[[port]]
name = "bench0"
device = "net_memif0,role=server,socket=$MEMIF_SOCK,socket-abstract=no"
rx_desc = 1024
tx_desc = 1024
mac = "02:00:00:00:10:01"
rss = false
addresses = ["$(addr 198.18.0.1)/$(plen 24)"]
gateway = "$(addr 198.18.0.254)"

[[vip]]
address = "$(addr 198.18.0.100)"
port = "bench0"

[lb]
# connection table slots per worker (about 100 bytes each, allocated at start);
# the IPv6 table is sized the same only when the point runs over IPv6
conn_capacity = $cap
conn_capacity6 = $( ((FAMILY == 6)) && echo "$cap" || echo 65536 )

[[service]]
proto = "$PROTO"
vip = "$(addr 198.18.0.100)"
port = 80
scheduler = "$SCHED"
$laddrs
EOF
    for i in 11 12 13 14; do
        printf '\n[[service.real_server]]\naddress = "%s"\nport = %s\nmethod = "%s"\n' "$(addr "198.18.0.$i")" "$rport" "$mode"
    done
    if [ -n "$EXTRA_CONFIG" ]; then
        printf '\n# --extra-config %s\n' "$EXTRA_CONFIG"
        cat "$EXTRA_CONFIG"
    fi
}

VSD_NOTE=""
start_vsd() { # mode [conn_capacity]
    FWD_NAME="vsd-$1"
    new_prefix "$FWD_NAME"
    vsd_config "$1" "$PREFIX" "${2:-}" >"$RAW/$FWD_NAME.toml"
    "$VSD" --config "$RAW/$FWD_NAME.toml" </dev/null >"$RAW/$FWD_NAME.log" 2>&1 &
    FWD_PID=$!
    # vsd binds its control socket after its ports started and its workers run.
    if ! wait_for_socket "$CTL_SOCK" 30 || ! wait_for_socket "$MEMIF_SOCK" 5; then
        VSD_NOTE="vsd did not start in $1 mode: $(tail -n 1 "$RAW/$FWD_NAME.log" | tr -d '"\\' | cut -c1-160)"
        log "$VSD_NOTE"
        stop_fwd
        return 1
    fi
    sleep 0.3
}

vsd_rss_kb() {
    if [ -n "$FWD_PID" ] && [ -r "/proc/$FWD_PID/status" ]; then
        awk '/^VmRSS:/ {print $2}' "/proc/$FWD_PID/status"
    else
        echo 0
    fi
}

note() { # label text
    printf '{"label":"%s","note":"%s"}\n' "$1" "$2" >>"$RAW/points.jsonl"
}

# The forwarder's work per packet over a session, as JSON (null if unknown):
# testpmd's --record-core-cycles total (cycles of bursts that carried packets)
# over its received packets, or vsd's busy_cycles over rx_packets (vsadm
# --counters --json, summed over workers). Reads what stop_fwd left behind.
fwd_cycles() { # forwarder label
    /usr/bin/python3 - "$1" "$RAW/$1.log" "$RAW/$2.counters.json" <<'PY'
import json, re, sys
fwd, log, counters = sys.argv[1:4]
out = None
try:
    if fwd.startswith("testpmd-"):
        m = re.findall(r"CPU cycles/packet=([0-9.]+) \(total cycles=(\d+) / total \S+ packets=(\d+)\)",
                       open(log, errors="replace").read())
        if m:
            cpp, busy, pkts = m[-1]
            out = {"busy_cycles": int(busy), "packets": int(pkts), "cycles_per_packet": round(float(cpp), 1)}
    else:
        ws = json.load(open(counters)).get("workers", [])
        busy = sum(w["events"].get("busy_cycles", 0) for w in ws)
        idle = sum(w["events"].get("idle_cycles", 0) for w in ws)
        pkts = sum(w["events"].get("rx_packets", 0) for w in ws)
        bursts = sum(w["events"].get("rx_bursts", 0) for w in ws)
        if any("busy_cycles" in w["events"] for w in ws):
            # packets per rx burst: per-burst costs are spread over this many
            out = {"busy_cycles": busy, "idle_cycles": idle, "packets": pkts,
                   "cycles_per_packet": round(busy / pkts, 1) if pkts else None,
                   "packets_per_burst": round(pkts / bursts, 1) if bursts else None}
except (OSError, ValueError, KeyError, AttributeError, TypeError):
    pass
print(json.dumps(out))
PY
}

# One window's vsd cycles per packet (JSON, or null): the difference of the
# counters read at its start and its end (marks N and N+1 of the session).
window_cycles() { # label window(0-based)
    /usr/bin/python3 - "$RAW/$1.mark$2.json" "$RAW/$1.mark$(($2 + 1)).json" <<'PY'
import json, sys
def totals(path):
    ws = json.load(open(path)).get("workers", [])
    ev = lambda k: sum(w["events"].get(k, 0) for w in ws)
    return ev("busy_cycles"), ev("idle_cycles"), ev("rx_packets"), ev("rx_bursts")
out = None
try:
    (b0, i0, p0, n0), (b1, i1, p1, n1) = totals(sys.argv[1]), totals(sys.argv[2])
    busy, pkts, bursts = b1 - b0, p1 - p0, n1 - n0
    if pkts > 0 and busy > 0:
        out = {"busy_cycles": busy, "idle_cycles": i1 - i0, "packets": pkts,
               "cycles_per_packet": round(busy / pkts, 1),
               "packets_per_burst": round(pkts / bursts, 1) if bursts > 0 else None}
except (OSError, ValueError, KeyError, AttributeError, TypeError):
    pass
print(json.dumps(out))
PY
}

# The host's current cost of moving a cache line between the benchmark's two
# CPUs (ns, "null" if the probe failed); run only while neither is busy. Keeps
# the fastest value of the run in XCPU_BEST.
XCPU=null
XCPU_BEST=""
xcpu_probe() {
    XCPU=$("$XPROBE" --cpus 0,1 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ns_per_transfer"])' 2>/dev/null) || XCPU=null
    [ -n "$XCPU" ] || XCPU=null
    if [ "$XCPU" != null ] && { [ -z "$XCPU_BEST" ] || awk -v a="$XCPU" -v b="$XCPU_BEST" 'BEGIN { exit !(a < b) }'; }; then
        XCPU_BEST=$XCPU
    fi
}
# Whether either probe value ($@) says the host was in its slow mode.
xcpu_slow() {
    local x
    for x in "$@"; do
        [ "$x" != null ] && awk -v a="$x" -v b="$SLOW_XCPU_NS" 'BEGIN { exit !(a > b) }' && return 0
    done
    return 1
}

# One forwarder session: start the forwarder (testpmd-MODE or vsd-MODE), run
# vsd-gen for $REPEAT back-to-back windows, stop the forwarder once the reports
# are in, and only then let the generator disconnect (a memif client leaving
# while the server's worker polls can crash a DPDK 22.11 memif server).
# Appends one labelled line per window to $RAW/points.jsonl.
session() { # label kind target flows forwarder duration [vsd-gen options...]
    local label=$1 kind=$2 target=$3 flows=$4 fwd=$5 duration=$6 xcpu0 xcpu1 slow=false
    shift 6
    # the host's cache-line transfer speed just before and just after (the
    # forwarder and the generator both stopped): the memif rate follows it
    xcpu_probe
    xcpu0=$XCPU
    case "$fwd" in
        testpmd-*) start_testpmd "${fwd#testpmd-}" || { note "$label" "testpmd did not start"; return 1; } ;;
        vsd-*) start_vsd "${fwd#vsd-}" "${SESSION_CAPACITY:-}" || { note "$label" "$VSD_NOTE"; return 1; } ;;
    esac
    new_prefix "gen-$label"
    local rss0 rss1 limit t line left rc marks=0
    rm -f "$RAW/$label".mark*.json
    rss0=$(vsd_rss_kb)
    limit=$(awk -v d="$duration" -v w="$WARMUP" -v r="$REPEAT" 'BEGIN { printf "%d", r * d + w + 60 }')
    : >"$RAW/$label.json"
    : >"$RAW/$label.err"
    # The generator's stderr comes through a FIFO and this shell blocks on
    # it until vsd-gen reports: nothing here wakes up, forks or competes for
    # the two CPUs while a window is measured (a poll loop of sleep + grep
    # did, and showed up as millisecond stalls in the latency tail).
    rm -f "$WORK/gen.fifo"
    mkfifo "$WORK/gen.fifo"
    "$GEN" --file-prefix "$PREFIX" --memif-socket "$MEMIF_SOCK" --repeat "$REPEAT" --linger 30 \
        --stop-if-silent --window-marks --flows "$flows" --pkt-size "$PKT_SIZE" --proto "$PROTO" --family "$FAMILY" \
        --duration "$duration" --warmup "$WARMUP" --lips 198.18.0.200/29,198.18.0.208/29 "$@" \
        >"$RAW/$label.json" 2>"$WORK/gen.fifo" &
    GEN_PID=$!
    exec 3<"$WORK/gen.fifo"
    t=$((SECONDS + limit))
    while :; do
        left=$((t - SECONDS))
        if [ "$left" -le 0 ] || { IFS= read -r -t "$left" line <&3; rc=$?; [ "$rc" -gt 128 ]; }; then
            log "  $label: vsd-gen still running after ${limit}s; stopping it"
            kill -INT "$GEN_PID" 2>/dev/null || true
            break
        fi
        [ -n "$line" ] && printf '%s\n' "$line" >>"$RAW/$label.err"
        [ "$rc" = 0 ] || break # end of file: vsd-gen exited
        # vsd's counters at every window boundary, for each window's cycles
        # per packet (the host's slow mode can start or end inside a
        # session). On CPU 0, with the generator: the worker's CPU stays
        # the worker's.
        case "$line" in "vsd-gen: window "*" starts" | "vsd-gen: windows end")
            if [ "${fwd%%-*}" = vsd ]; then
                taskset -c 0 "$VSADM" --socket "$CTL_SOCK" --counters --json \
                    >"$RAW/$label.mark$marks.json" 2>/dev/null || true
                marks=$((marks + 1))
            fi ;;
        esac
        case "$line" in "vsd-gen: reported"*) break ;; esac
    done
    # keep draining what vsd-gen still writes until it exits
    cat <&3 >>"$RAW/$label.err" &
    local drain=$!
    exec 3<&-
    rss1=$(vsd_rss_kb)
    if [ "${fwd%%-*}" = vsd ]; then
        "$VSADM" --socket "$CTL_SOCK" --counters >"$RAW/$label.counters.txt" 2>&1 || true
        "$VSADM" --socket "$CTL_SOCK" --counters --json >"$RAW/$label.counters.json" 2>&1 || true
        "$VSADM" --socket "$CTL_SOCK" -Ln --stats >"$RAW/$label.stats.txt" 2>&1 || true
    fi
    stop_fwd
    local cycles
    cycles=$(fwd_cycles "$fwd" "$label") || cycles=null
    [ -n "$cycles" ] || cycles=null
    for _ in $(seq 100); do kill -0 "$GEN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    wait "$drain" 2>/dev/null || true
    GEN_PID=""
    xcpu_probe
    xcpu1=$XCPU
    SESSION_HOST_SLOW=0
    if xcpu_slow "$xcpu0" "$xcpu1"; then
        slow=true
        SESSION_HOST_SLOW=1
    fi
    log "  $label: host cache-line transfer $xcpu0 ns before, $xcpu1 ns after (fastest of the run $XCPU_BEST, slow over $SLOW_XCPU_NS)$([ "$slow" = false ] || echo ': slow mode')"
    grep '^vsd-gen ' "$RAW/$label.err" | sed 's/^vsd-gen /  /' | while IFS= read -r line; do log "$line"; done
    if [ ! -s "$RAW/$label.json" ]; then
        log "  $label: vsd-gen failed: $(tail -n 1 "$RAW/$label.err")"
        note "$label" "vsd-gen failed: $(tail -n 1 "$RAW/$label.err" | tr -d '"\\' | cut -c1-160)"
        return 1
    fi
    SESSION_NO=$((SESSION_NO + 1))
    # a window's "cycles" are its own when the marks around it were read,
    # the session's otherwise; "session_cycles" are always the session's
    local window=0 wcycles
    while IFS= read -r line; do
        wcycles=$(window_cycles "$label" "$window") || wcycles=null
        [ -n "$wcycles" ] && [ "$wcycles" != null ] || wcycles=$cycles
        printf '{"label":"%s","kind":"%s","target":"%s","session":%s,"window":%s,"fwd_rss_kb_before":%s,"fwd_rss_kb_after":%s,"cycles":%s,"session_cycles":%s,"xcpu_ns":[%s,%s],"host_slow":%s,"gen":%s}\n' \
            "$label" "$kind" "$target" "$SESSION_NO" "$((window + 1))" "${rss0:-0}" "${rss1:-0}" "$wcycles" "$cycles" "$xcpu0" "$xcpu1" "$slow" "$line" >>"$RAW/points.jsonl"
        window=$((window + 1))
    done <"$RAW/$label.json"
}
# every session's lines in points.jsonl carry its number (a session = one
# forwarder start; its windows share the forwarder's cycle counts)
SESSION_NO=0

# A throughput session, run again (up to --retry-slow times) while the host
# moved cache lines between the CPUs at its slow speed around it: such a
# session measures the host's mode, not the forwarder (perf/README.md, "The
# host's two speeds"). Every session stays in points.jsonl; the results use
# the ones outside the slow mode when there are any.
measured_session() { # session arguments...
    local try rc=0
    for try in $(seq 0 "$RETRY_SLOW"); do
        if [ "$try" -gt 0 ]; then
            log "  $1: the host was in its slow cross-CPU mode; measuring again ($try of $RETRY_SLOW)"
        fi
        SESSION_HOST_SLOW=0
        session "$@" || { rc=$?; break; }
        [ "$SESSION_HOST_SLOW" = 1 ] || break
    done
    return "$rc"
}

# Median rx Mpps of a label (empty if none came back), over its sessions
# outside the host's slow mode when there are any.
median_mpps() {
    /usr/bin/python3 - "$RAW/points.jsonl" "$1" <<'PY'
import json, statistics, sys
rows = [r for r in map(json.loads, open(sys.argv[1]))
        if r.get("label") == sys.argv[2] and "gen" in r and r["gen"]["rx_packets"] > 0]
rows = [r for r in rows if not r.get("host_slow")] or rows
vals = [r["gen"]["rx_mpps"] for r in rows]
print(statistics.median(vals) if vals else "")
PY
}

# Half of a maximum received rate (Mpps), as an originated rate (pps): NAT and
# FULLNAT receive every originated packet twice (request, then the reply).
half_of() { # mpps mode
    local legs=1
    case "$2" in nat|fullnat) legs=2 ;; esac
    awk -v m="$1" -v l="$legs" 'BEGIN { printf "%d", m * 1e6 / 2 / l }'
}

# --- build -------------------------------------------------------------------
mkdir -p "$OUT_DIR"
rm -rf "$RAW"
mkdir -p "$RAW"
: >"$RAW/points.jsonl"
if [ "$BUILD" = 1 ]; then
    log "building release binaries"
    # --workspace: vsd-gen and vsd-stall-probe live in perf/gen, a workspace
    # member that a build in the root package alone leaves out
    (cd "$ROOT" && cargo build --release --workspace --bins) >"$RAW/build.log" 2>&1 ||
        { log "build failed (see $RAW/build.log)"; exit 1; }
fi
for b in "$GEN" "$VSD" "$PROBE" "$XPROBE"; do
    [ -x "$b" ] || { log "missing $b (build first, or drop --no-build)"; exit 1; }
done
command -v dpdk-testpmd >/dev/null || { log "dpdk-testpmd not found (apt-get install dpdk)"; exit 1; }
[ -z "$AB_REV" ] || ab_build "$AB_REV"
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null && ! command -v gnuplot >/dev/null; then
    log "installing python3-matplotlib for the chart"
    apt-get install -y -q python3-matplotlib >"$RAW/apt.log" 2>&1 ||
        apt-get install -y -q gnuplot-nox >>"$RAW/apt.log" 2>&1 ||
        log "no chart tool could be installed: latest.png will be missing"
fi
if [ "$WAIT_IDLE" != 0 ]; then
    log "waiting up to $WAIT_IDLE min for the machine to be idle (load now $(cut -d' ' -f1 /proc/loadavg))"
    t=$SECONDS
    while [ $((SECONDS - t)) -lt $((WAIT_IDLE * 60)) ]; do
        case "$(cut -d' ' -f1 /proc/loadavg)" in 0.[0-4]*) break ;; esac
        sleep 10
    done
fi
T0=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "runs: $REPEAT x ${DURATION}s windows (+${WARMUP}s warm-up), flows: $FLOWS, $PROTO, ${PKT_SIZE}B; load $LOAD_BEFORE"
case "$LOAD_BEFORE" in 0.[0-4]*) ;; *) log "warning: the machine is busy (load $LOAD_BEFORE): numbers will be low and noisy" ;; esac
if [ -n "$AB_REV" ]; then
    ab_main
    exit 0
fi

# How much of each CPU the machine itself takes from a busy poll loop (the
# floor under every latency tail here), before the points and after them.
stall_probe() { # start|end
    local secs=5
    [ "$QUICK" = 1 ] && secs=2
    "$PROBE" --seconds "$secs" >"$RAW/stall-$1.jsonl" 2>"$RAW/stall-$1.err" ||
        log "stall probe failed: $(tail -n 1 "$RAW/stall-$1.err")"
    while IFS= read -r line; do log "  $line"; done <"$RAW/stall-$1.err"
}
log "machine stalls before the points (busy loop pinned to each CPU):"
stall_probe start
for _ in 1 2 3; do xcpu_probe; sleep 0.2; done
log "cache-line transfer between CPU 0 and CPU 1: $XCPU ns (best $XCPU_BEST ns)"

# --- ceiling -----------------------------------------------------------------
CEIL_FLOWS=${FLOWS%% *}
LAST_FLOWS=${FLOWS##* }
measured_session "io-$CEIL_FLOWS" throughput io "$CEIL_FLOWS" testpmd-io "$DURATION" --expect io ||
    { log "the ceiling run failed: nothing to compare against"; exit 1; }
CEILING=$(median_mpps "io-$CEIL_FLOWS")
[ -n "$CEILING" ] || { log "the ceiling run returned nothing"; exit 1; }
log "ceiling (testpmd io): $CEILING Mpps"
if [ "$QUICK" = 0 ] && [ "$LAST_FLOWS" != "$CEIL_FLOWS" ]; then
    session "io-$LAST_FLOWS" throughput io "$LAST_FLOWS" testpmd-io "$DURATION" --expect io || true
fi
session "macswap-$CEIL_FLOWS" throughput macswap "$CEIL_FLOWS" testpmd-macswap "$DURATION" --expect macswap || true
session lat-io latency io "$CEIL_FLOWS" testpmd-io "$DURATION" --expect io --rate "$(half_of "$CEILING" io)" || true
# NAT and FULLNAT round trips cross the forwarder twice (request, then the
# real server's reply): their latency baseline is io forwarding crossed
# twice, the generator answering each returned request as the server would.
case " $MODES " in
    *" nat "* | *" fullnat "*)
        session lat-io-reflect latency io-reflect "$CEIL_FLOWS" testpmd-io "$DURATION" \
            --expect io-reflect --rate "$(half_of "$CEILING" nat)" || true
        ;;
esac

# --- vsd ---------------------------------------------------------------------
# --sessions passes over the throughput points (each point's sessions minutes
# apart, so one stretch of the host's slow mode does not take all of them); the
# latency points, at half the first pass's rate, only in the first
for pass in $(seq "$SESSIONS"); do
    [ "$SESSIONS" = 1 ] || log "vsd points: pass $pass of $SESSIONS"
    for mode in $MODES; do
        for flows in $FLOWS; do
            measured_session "$mode-$flows" throughput "$mode" "$flows" "vsd-$mode" "$DURATION" \
                --expect "$mode" --rport "$(rport_of "$mode")" || continue
            [ "$pass" = 1 ] || continue
            max=$(median_mpps "$mode-$flows")
            if [ -z "$max" ]; then
                note "$mode-$flows" "vsd forwarded nothing in $mode mode (0 packets came back)"
                continue
            fi
            if [ "$flows" = "$CEIL_FLOWS" ]; then
                session "lat-$mode" latency "$mode" "$flows" "vsd-$mode" "$DURATION" \
                    --expect "$mode" --rport "$(rport_of "$mode")" --rate "$(half_of "$max" "$mode")" || true
            fi
        done
    done
done

# New connections: every packet a SYN on a fresh tuple (TCP whatever --proto says).
SYN_MODES="dr fullnat"
[ "$QUICK" = 1 ] && SYN_MODES="fullnat"
for mode in $SYN_MODES; do
    case " $MODES " in *" $mode "*) ;; *) continue ;; esac
    PROTO=tcp WARMUP=0.2 SESSION_CAPACITY=$SYN_CAPACITY session "syn-$mode" syn "$mode" "$CEIL_FLOWS" \
        "vsd-$mode" "$SYN_DURATION" --expect "$mode" --rport "$(rport_of "$mode")" --new-conn-share 1 || continue
    [ -n "$(median_mpps "syn-$mode")" ] ||
        note "syn-$mode" "vsd forwarded nothing in $mode mode (0 packets came back)"
done
# The ceiling once more at the end: other work on the machine only ever lowers
# a rate, so the best io point of the run is the ceiling the ratios use.
measured_session "io-$CEIL_FLOWS-end" throughput io "$CEIL_FLOWS" testpmd-io "$DURATION" --expect io || true

# Memory per connection: vsd allocates (and touches) its connection table at start, so
# the resident size of two idle vsds that differ only in table slots gives the bytes
# per slot, index and timer wheel included.
vsd_idle_rss_kb() { # capacity -> IDLE_RSS (kB, 0 if vsd did not start)
    IDLE_RSS=0
    start_vsd dr "$1" || return 0
    # the tables are filled as vsd starts; on a busy machine that can take
    # seconds: read once the resident size stops growing (at most ~10 s)
    local prev=-1 i
    for i in $(seq 50); do
        sleep 0.2
        IDLE_RSS=$(vsd_rss_kb)
        [ "${IDLE_RSS:-0}" = "$prev" ] && break
        prev=${IDLE_RSS:-0}
    done
    stop_fwd
}
BYTES_PER_CONN=""
case " $MODES " in
    *" dr "*)
        vsd_idle_rss_kb 1048576
        rss_small=$IDLE_RSS
        vsd_idle_rss_kb 4194304
        rss_big=$IDLE_RSS
        if [ "${rss_small:-0}" -gt 0 ] && [ "${rss_big:-0}" -gt "${rss_small:-0}" ]; then
            BYTES_PER_CONN=$(( (rss_big - rss_small) * 1024 / (4194304 - 1048576) ))
            log "connection table: $BYTES_PER_CONN bytes per slot (RSS $rss_small kB at 1M slots, $rss_big kB at 4M)"
        fi
        ;;
esac
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine stalls after the points:"
stall_probe end

# --- results -----------------------------------------------------------------
log "measurements done in $((SECONDS - T0)) s; writing results"
/usr/bin/python3 - "$RAW/points.jsonl" "$OUT_DIR" "$QUICK" "$REPEAT" "$DURATION" "$PROTO" "$PKT_SIZE" \
    "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$LOAD_BEFORE" "$LOAD_AFTER" \
    "$BYTES_PER_CONN" "$FAMILY" "$SLOW_XCPU_NS" <<'EOF'
import json, os, statistics, sys, datetime, subprocess

raw, out_dir, quick, repeat, duration, proto, pkt_size, rev, load0, load1, table_bpc, family, slow_ns = sys.argv[1:14]
table_bpc = int(table_bpc) if table_bpc else None
rows = [json.loads(l) for l in open(raw) if l.strip()]
notes = {}
for r in rows:
    if "note" in r:
        notes.setdefault(r["label"], []).append(r["note"])
points = [r for r in rows if "gen" in r]
labels = []
for r in points:
    if r["label"] not in labels:
        labels.append(r["label"])
for l in notes:
    if l not in labels:
        labels.append(l)

def med(vals):
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 3) if vals else None

# A session whose cycles per packet exceed its point's lowest by this factor was
# disturbed (the host's slow mode costs 1.5-2x; session-to-session noise in a
# quiet host is a few %): the probes around a session miss a switch inside it.
DISTURBED_CYCLES = 1.25

def cyc(r):
    return (r.get("cycles") or {}).get("cycles_per_packet")

def own_cycles(r):
    # a window line with cycles of its own (vsd's counters read at the
    # window's start and end), not its session's
    return r.get("session_cycles") is not None and r.get("cycles") != r.get("session_cycles")

def all_sessions(label):
    return [r for r in points if r["label"] == label]

def undisturbed_by_probe(label):
    # sessions in the host's slow cross-CPU mode measured the host: left out
    # when the point has others
    g = all_sessions(label)
    return [r for r in g if not r.get("host_slow")] or g

def group(label):
    # ... and so are sessions the forwarder's own cycles show were disturbed
    g = undisturbed_by_probe(label)
    vals = [cyc(r) for r in g if cyc(r)]
    if vals:
        g = [r for r in g if not cyc(r) or cyc(r) <= DISTURBED_CYCLES * min(vals)]
    return g

def cycles_disturbed(label):
    kept = {r.get("session") for r in group(label)}
    return sorted({(r.get("session"), cyc(r)) for r in undisturbed_by_probe(label) if r.get("session") not in kept},
                  key=lambda x: x[1] or 0)

def best_session(label, g):
    # the session with the fewest cycles per packet, whatever the probes
    # said: disturbance only ever adds cycles, and a probe just after a
    # session can find the host slow when the session was not
    with_cycles = [r for r in all_sessions(label) if cyc(r)]
    return min(with_cycles, key=cyc) if with_cycles else (g[0] if g else None)

def slow_sessions(label):
    return sorted({tuple(r.get("xcpu_ns") or ()) for r in points
                   if r["label"] == label and r.get("host_slow")})

# the ceiling: the best io throughput point (measured at the start and again
# at the end; a disturbed point is only ever lower)
io_points = [med([r["gen"]["rx_mpps"] for r in group(l)]) for l in labels
             if l.startswith("io-") and group(l) and group(l)[0]["kind"] == "throughput"]
io_points = [v for v in io_points if v is not None]
ceiling = max(io_points) if io_points else None
# latency baselines: io forwarding crossed once (DR, TUN) or twice (NAT,
# FULLNAT: request and reply both cross the forwarder)
def baseline(label):
    g = group(label)
    return (med([r["gen"]["p50_us"] for r in g]), med([r["gen"]["p99_us"] for r in g]))
BASE = {1: baseline("lat-io"), 2: baseline("lat-io-reflect")}
BASELINE_OF = {"dr": 1, "tun": 1, "nat": 2, "fullnat": 2}
FORWARDERS = ("io", "macswap", "io-reflect")

records = []
for label in labels:
    g = group(label)
    gens = [r["gen"] for r in g]
    kind = g[0]["kind"] if g else ("syn" if label.startswith("syn-") else "latency" if label.startswith("lat-") else "throughput")
    mode = g[0]["target"] if g else label.split("-")[1 if label.startswith(("syn-", "lat-")) else 0]
    flows = gens[0]["flows"] if gens else (int(label.split("-")[-1]) if label.split("-")[-1].isdigit() else 1000)
    note = list(notes.get(label, []))
    slow = slow_sessions(label)
    if slow and g and g[0].get("host_slow"):
        note.append(f"slow cross-CPU transfers in all {len(slow)} session(s) (the host's slow mode, or a task "
                    "sharing CPU 0/1; cache-line transfer "
                    + ", ".join("/".join(str(x) for x in s) for s in slow) + " ns): the host's rate, not the forwarder's")
    elif slow:
        note.append(f"{len(slow)} session(s) in the host's slow cross-CPU mode left out")
    by_cycles = cycles_disturbed(label)
    if by_cycles:
        note.append(f"{len(by_cycles)} session(s) disturbed by their cycles per packet left out ("
                    + ", ".join(f"{c:.0f}" for _, c in by_cycles if c) + f" > {DISTURBED_CYCLES}x the best)")
    best = best_session(label, g)
    sessions = sorted({r.get("session") for r in g}, key=lambda x: x or 0)
    # a point where nothing came back has no value; otherwise every window
    # counts, silent ones too (a forwarder that stops is part of the result)
    forwarded = gens if any(x["rx_packets"] > 0 for x in gens) else []
    fails = sum(x["check_failures"] for x in gens)
    if gens and not forwarded and not note:
        note.append("nothing came back")
    if fails:
        note.append(f"{fails} check failures")
    p99s = [x["p99_us"] for x in gens if x.get("p99_us") is not None]
    if p99s and statistics.median(p99s) > 2000:
        note.append("disturbed: p99 in the milliseconds, other work took the CPUs")
    # vsd's own drop reasons over the session, when it dropped anything
    worker_stalls = (None, None)
    try:
        c = json.load(open(os.path.join(os.path.dirname(raw), label + ".counters.json")))
        drops = dict(c.get("forwarding", {}).get("drops", {}))
        drops.update(c.get("total", {}).get("drops", {}))
        big = {k: v for k, v in drops.items() if isinstance(v, int) and v > 0}
        if big:
            note.append("vsd drops: " + ", ".join(f"{k}={v}" for k, v in sorted(big.items())))
        # poll loop turns that came round 50 us late or more: the worker's
        # core was taken away (what a latency tail is made of on a VM)
        ev = c.get("total", {}).get("events", {})
        if isinstance(ev.get("stalls"), int) and isinstance(ev.get("stall_us"), int):
            worker_stalls = (ev["stalls"], round(ev["stall_us"] / 1000, 1))
            note.append(f"worker stalled {ev['stalls']}x, {worker_stalls[1]} ms")
    except (OSError, ValueError, AttributeError):
        pass
    # a throughput or SYN point's rate is its best session's too (the one
    # with the fewest cycles per packet: the host's slow mode lowers both)
    best_windows = [r["gen"] for r in all_sessions(label)
                    if best is not None and cyc(best) and r.get("session") == best.get("session")
                    and r["gen"]["rx_packets"] > 0]
    # (its best window's alone when vsd's counters gave each window its own
    # cycles: the rate of the same stretch of time as the cycles)
    if best is not None and own_cycles(best) and best["gen"]["rx_packets"] > 0:
        best_windows = [best["gen"]]
    rate_windows = best_windows if kind in ("throughput", "syn") and best_windows else forwarded
    mpps = med([x["rx_mpps"] for x in rate_windows])
    is_vsd = mode not in FORWARDERS
    # bytes per connection: the table's per-slot size (measured once, below
    # the points), plus what the session's resident memory grew per flow
    # beyond what the same mode's smallest session grew (0 when the table
    # was allocated up front). Every session grows by the same ~4 MB when
    # the generator connects: memif's shared rings and buffers, mapped into
    # the forwarder whatever the flow count, not connection state.
    bpc = None
    if is_vsd and g and forwarded and kind == "throughput" and table_bpc is not None:
        def rss_grow(gr):
            return (gr[0]["fwd_rss_kb_after"] - gr[0]["fwd_rss_kb_before"]) * 1024
        base = min(rss_grow(gr) for gr in map(group, labels)
                   if gr and gr[0]["kind"] == "throughput" and gr[0]["target"] == mode)
        bpc = table_bpc + (round(max(0, rss_grow(g) - base) / flows) if flows >= 100000 else 0)
    rec = {
        "kind": kind,
        "mode": mode,
        "family": int(family),
        "flows": flows,
        "pkt_size": gens[0]["pkt_size"] if gens else int(pkt_size),
        "mpps": mpps,
        "ceiling_mpps": ceiling,
        "ratio": round(mpps / ceiling, 3) if mpps is not None and ceiling else None,
        "new_conns_per_s": med([x["new_conns_per_s"] for x in rate_windows]) if kind == "syn" else None,
        "p50_us": med([x["p50_us"] for x in forwarded]),
        "p99_us": med([x["p99_us"] for x in forwarded]),
        "bytes_per_conn": bpc,
        # the forwarder's busy cycles per received packet over the session
        # (testpmd --record-core-cycles, or vsd's busy_cycles / rx_packets)
        # (the best window's, probes or not: vsd's own or, without marks, its session's; each session's best in cycles_sessions)
        "cycles_per_packet": (cyc(best) if best else None),
        # (each session's best window)
        "cycles_sessions": list({s: min((cyc(r) for r in all_sessions(label) if r.get("session") == s and cyc(r)),
                                        default=None)
                                 for s in dict.fromkeys(r.get("session") for r in all_sessions(label))}.values()),
        "sessions_used": len(sessions),
        # ns per cache-line transfer between the CPUs before and after the
        # session used; slow_sessions: the ones left out (or all of them)
        "xcpu_ns": (best.get("xcpu_ns") if best else None),
        "host_slow_sessions": len(slow),
        "cycles_disturbed_sessions": len(by_cycles),
        "packets_per_burst": ((best.get("cycles") or {}).get("packets_per_burst") if best else None),
        "rate_pps": gens[0]["rate_pps"] if gens else None,
        "runs_mpps": [x["rx_mpps"] for x in gens],
        "drops": med([x["drops"] for x in gens]),
        "check_failures": fails,
        "worker_stalls": worker_stalls[0],
        "worker_stall_ms": worker_stalls[1],
        "note": "; ".join(note) or None,
    }
    if kind == "latency":
        rec["p999_us"] = med([x["p999_us"] for x in forwarded])
        base_p50, base_p99 = BASE.get(BASELINE_OF.get(mode, 1), (None, None))
        if is_vsd:
            rec["baseline"] = "io-reflect" if BASELINE_OF.get(mode) == 2 else "io"
            rec["baseline_p99_us"] = base_p99
        if is_vsd and rec["p99_us"] is not None and base_p99 is not None:
            rec["added_p99_us"] = round(rec["p99_us"] - base_p99, 2)
        if is_vsd and rec["p50_us"] is not None and base_p50 is not None:
            rec["added_p50_us"] = round(rec["p50_us"] - base_p50, 2)
    if kind == "throughput" and is_vsd and mpps is None and not rec["note"]:
        rec["note"] = "no result"
    records.append(rec)

def xcpu_text():
    vals = [x for r in points for x in (r.get("xcpu_ns") or []) if isinstance(x, (int, float))]
    if not vals:
        return "not measured"
    slow = sorted({(r["label"], tuple(r["xcpu_ns"])) for r in points if r.get("host_slow")})
    return (f"fastest {min(vals)} ns, slowest {max(vals)} ns; {len(slow)} session(s) in the host's "
            f"slow mode (over {slow_ns} ns), left out of points that have others")

# vsd's cycles per packet against testpmd's in the same run: the work vsd adds
# per packet, whatever rate the generator reached. The lowest of testpmd's
# sessions (like the ceiling, the best one): testpmd counts whatever else ran
# on its core inside a burst, so a disturbed session is only ever higher.
CYCLES_BASE = {fwd: min([r["cycles_per_packet"] for r in records
                         if r["kind"] == "throughput" and r["mode"] == fwd
                         and r["cycles_per_packet"]] or [None])
               for fwd in ("io", "macswap")}
for r in records:
    for fwd, base in CYCLES_BASE.items():
        c = r["cycles_per_packet"]
        r[f"cycles_vs_{fwd}"] = round(c / base, 2) if c and base and r["mode"] not in FORWARDERS else None

with open(os.path.join(out_dir, "latest.json"), "w") as f:
    json.dump(records, f, indent=1)
    f.write("\n")

# ---- targets ----
def rec(kind, mode, flows=None):
    for r in records:
        if r["kind"] == kind and r["mode"] == mode and (flows is None or r["flows"] == flows):
            return r
    return None

def verdict(value, ok):
    return "n/a" if value is None else ("PASS" if ok else "FAIL")

targets = []
flows_list = sorted({r["flows"] for r in records if r["kind"] == "throughput" and r["mode"] not in ("io", "macswap")})
lo, hi = (flows_list[0], flows_list[-1]) if flows_list else (1000, 1000000)
for mode, need in (("dr", 0.60), ("tun", 0.60), ("nat", 0.45), ("fullnat", 0.45)):
    r = rec("throughput", mode, lo)
    v = r and r["ratio"]
    targets.append((f"{mode.upper()} at {lo} flows >= {int(need*100)}% of the io ceiling",
                    "-" if v is None else f"{v*100:.0f}%", verdict(v, v is not None and v >= need)))
for mode in ("dr", "tun", "nat", "fullnat") if hi != lo else ():
    a, b = rec("throughput", mode, lo), rec("throughput", mode, hi)
    v = (b["mpps"] / a["mpps"]) if a and b and a["mpps"] and b["mpps"] is not None else None
    targets.append((f"{mode.upper()} at {hi} flows >= 70% of {lo} flows", "-" if v is None else f"{v*100:.0f}%",
                    verdict(v, v is not None and v >= 0.70)))
    # the same in vsd's own figure (issue 19's "flat with flow count"):
    # cycles/packet at lo over cycles/packet at hi, which the generator's
    # speed and the other CPU's load move far less than Mpps
    ca, cb = (a or {}).get("cycles_per_packet"), (b or {}).get("cycles_per_packet")
    c = ca / cb if ca and cb else None
    targets.append((f"{mode.upper()} at {hi} flows >= 90% of {lo} flows in cycles/packet ({lo} / {hi})",
                    "-" if c is None else f"{c*100:.0f}% ({ca:.0f} / {cb:.0f})",
                    verdict(c, c is not None and c >= 0.90)))
best = max([r["new_conns_per_s"] or 0 for r in records if r["kind"] == "syn"] or [0]) or None
targets.append(("new connections >= 1M/s per core", "-" if best is None else f"{best/1e6:.2f}M/s",
                verdict(best, best is not None and best >= 1e6)))
# issue 19's raised target: FULLNAT, the costliest new connection (a local
# port chosen, two keys inserted)
best_fn = max([r["new_conns_per_s"] or 0 for r in records
               if r["kind"] == "syn" and r["mode"] == "fullnat"] or [0]) or None
targets.append(("FULLNAT new connections >= 3M/s per core", "-" if best_fn is None else f"{best_fn/1e6:.2f}M/s",
                verdict(best_fn, best_fn is not None and best_fn >= 3e6)))
for r in records:
    if r["kind"] == "latency" and r["mode"] not in FORWARDERS:
        v = r.get("added_p99_us")
        p50 = r.get("added_p50_us")
        against = f"p99 {r['p99_us']} us - {r.get('baseline')} {r.get('baseline_p99_us')} us"
        targets.append((f"{r['mode'].upper()} p99 added latency <= 20 us at half max rate",
                        "-" if v is None else f"{v} us ({against}; p50 added {p50} us)",
                        verdict(v, v is not None and v <= 20)))

# ---- markdown ----
def fmt(v, spec="{}"):
    return "-" if v is None else spec.format(v)

def probe_text():
    parts = []
    for when in ("start", "end"):
        try:
            rows = [json.loads(l) for l in open(os.path.join(os.path.dirname(raw), f"stall-{when}.jsonl")) if l.strip()]
        except (OSError, ValueError):
            rows = []
        if rows:
            parts.append(f"{'before' if when == 'start' else 'after'}: " + ", ".join(
                f"CPU {r['cpu']} {r['gaps']} gaps, {r['lost_pct']:.2f}% lost, longest {r['max_gap_us']/1000:.1f} ms"
                for r in rows))
    return "; ".join(parts) or "not measured"

cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
try:
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True, text=True).stdout.strip()
except OSError:
    dpdk = "?"
lines = [
    "# vsd benchmark results",
    "",
    f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, vsd {rev}, DPDK {dpdk}",
    f"- machine: {cpu}, {os.cpu_count()} CPUs; generator on CPU 0, forwarder worker on CPU 1, net_memif",
    f"- {'quick' if quick == '1' else 'full'} run: {repeat} x {duration} s windows per session; cycles/packet: the point's "
    f"best window (fewest cycles; vsd's counters are read at every window boundary, testpmd's figure is its "
    f"session's); rates: that window's (throughput, SYN); "
    f"IPv{family} {proto.upper()}, {pkt_size}-byte frames"
    + (" (IPv6 packets are at least 84 bytes with FCS: smaller sizes grow to that)" if family == "6" else ""),
    f"- load average before / after: {load0} / {load1} (other work on the 2 CPUs lowers every number)",
    f"- machine stalls (vsd-stall-probe: a busy loop pinned to each CPU, gaps >= 50 us): {probe_text()}",
    f"- cache-line transfer CPU 0 <-> CPU 1 (vsd-xcpu-probe, around every session): {xcpu_text()}",
    f"- ceiling: vsd-gen <-> dpdk-testpmd --forward-mode=io = **{fmt(ceiling)} Mpps** "
    f"(the best io throughput point: measured first and again last)",
    f"- connection table: {fmt(table_bpc)} bytes per slot (resident; 10M connections = "
    f"{fmt(None if table_bpc is None else round(table_bpc * 10e6 / 2**30, 2))} GiB)",
    "",
    "## Cycles per packet",
    "",
    "The forwarder's busy TSC cycles per packet it received (testpmd --record-core-cycles; vsd's",
    "busy_cycles / rx_packets): the work per packet, which the generator's speed and the load on",
    "the other CPU move far less than Mpps. vsd/io and vsd/macswap divide by testpmd's figure from",
    "this run: how many times testpmd's per-packet work vsd does (perf/README.md).",
    "",
    "| kind | mode | flows | cycles/packet | vsd/io | vsd/macswap | Mpps | packets/burst | sessions (cycles/packet of each: its best window) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---|",
]
for r in records:
    if r["kind"] in ("throughput", "syn"):
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) |".format(
            r["kind"], r["mode"], r["flows"], fmt(r["cycles_per_packet"], "{:.1f}"),
            fmt(r["cycles_vs_io"], "{:.2f}"), fmt(r["cycles_vs_macswap"], "{:.2f}"), fmt(r["mpps"]),
            fmt(r["packets_per_burst"]), len(r["cycles_sessions"]),
            ", ".join("-" if c is None else f"{c:.0f}" for c in r["cycles_sessions"])))
lines += [
    "",
    "## All points",
    "",
    "| kind | mode | flows | Mpps | ratio | new conns/s | p50 us | p99 us | bytes/conn | runs (Mpps) | note |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
]
for r in records:
    lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        r["kind"] + (f" @{r['rate_pps']/1e6:.2f}M" if r["kind"] == "latency" and r["rate_pps"] else ""),
        r["mode"], r["flows"], fmt(r["mpps"]), fmt(r["ratio"], "{:.2f}"),
        fmt(r["new_conns_per_s"], "{:.0f}"), fmt(r["p50_us"]), fmt(r["p99_us"]),
        fmt(r["bytes_per_conn"]), " ".join(str(x) for x in r["runs_mpps"]) or "-", r["note"] or ""))
lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---:|---|"]
for t in targets:
    lines.append("| {} | {} | {} |".format(*t))
lines += ["", "Ratios are against the io ceiling measured in the same run. See perf/README.md for what each",
          "number means and what limits it on this VM.", ""]
with open(os.path.join(out_dir, "latest.md"), "w") as f:
    f.write("\n".join(lines))

# ---- chart ----
png = os.path.join(out_dir, "latest.png")
thr = [r for r in records if r["kind"] == "throughput"]
lat = [r for r in records if r["kind"] == "latency"]
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    names = [f"{r['mode']}\n{r['flows']:,}" for r in thr]
    vals = [r["mpps"] or 0 for r in thr]
    colors = ["#888888" if r["mode"] in ("io", "macswap") else "#1f77b4" for r in thr]
    bars = ax1.bar(range(len(thr)), vals, color=colors)
    for i, r in enumerate(thr):
        ax1.text(i, vals[i], "n/a" if r["mpps"] is None else f"{r['mpps']:.2f}", ha="center", va="bottom", fontsize=8)
    if ceiling:
        ax1.axhline(ceiling, color="#888888", linestyle="--", linewidth=1)
        for frac, lab in ((0.60, "60%"), (0.45, "45%")):
            ax1.axhline(ceiling * frac, color="#d62728", linestyle=":", linewidth=1)
            ax1.text(len(thr) - 0.5, ceiling * frac, lab, color="#d62728", fontsize=8, va="bottom", ha="right")
    ax1.set_xticks(range(len(thr)))
    ax1.set_xticklabels(names, fontsize=8)
    ax1.set_ylabel("Mpps (received back)")
    ax1.set_title(f"throughput, IPv{family} {proto.upper()} {pkt_size} B, median of {repeat}")
    ax2.bar(range(len(lat)), [r["p99_us"] or 0 for r in lat], color="#ff7f0e", label="p99")
    ax2.bar(range(len(lat)), [r["p50_us"] or 0 for r in lat], color="#2ca02c", label="p50")
    ax2.set_xticks(range(len(lat)))
    ax2.set_xticklabels([r["mode"] for r in lat], fontsize=8)
    ax2.set_ylabel("round trip, us (log)")
    ax2.set_yscale("log")
    ax2.set_title("latency at half max rate")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
except ImportError:
    data = os.path.join(os.path.dirname(raw), "chart.dat")
    with open(data, "w") as f:
        for r in thr:
            f.write(f"\"{r['mode']}-{r['flows']}\" {r['mpps'] or 0}\n")
    script = (f"set terminal png size 1000,420; set output '{png}'; set style fill solid; set boxwidth 0.7;"
              f"set ylabel 'Mpps'; set xtics rotate by -30; set yrange [0:*];"
              f"plot '{data}' using 2:xtic(1) with boxes title 'throughput ({proto} {pkt_size} B)'")
    subprocess.run(["gnuplot", "-e", script], check=False)
print(f"wrote {out_dir}/latest.json, latest.md, latest.png", file=sys.stderr)
EOF
log "done in $((SECONDS - T0)) s"
cat "$OUT_DIR/latest.md" >&2
