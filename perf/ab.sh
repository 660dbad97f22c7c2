# A/B mode of perf/run.sh (`perf/run.sh --ab REV`): sourced by run.sh, not run on its own.
#
# What: builds revision REV (build A, the baseline) in a temporary git worktree with the
# same release command as this checkout (build B, the change), then runs every point with
# A and B alternately, one window each, for --repeat rounds: A B, then B A in the next
# round (so neither build always runs first), and so on. A point's B/A ratios over the
# rounds give its median and min/max: the spread is the noise the comparison carries.
# Why: throughput on this shared VM moves by +-30% from one minute to the next; two builds
# measured seconds apart under the same load differ by what the change did, and cycles per
# packet (busy cycles / packets, from each vsd's own counters) moves even less.
# Failure modes: REV that does not build -> run.sh stops with the build log; REV whose vsd
# does not count cycles (before issue 19) -> its cycles/packet is "-" and only throughput
# is compared, unless --ab-patch perf/ab-patches/cycle-counters.patch adds the counters to
# it (a patch that does not apply stops the run); REV whose vsd refuses the generated config -> that point's sessions fail and
# are noted. The generator (vsd-gen) is always this checkout's, so only the forwarder differs.
# Output: $OUT_DIR/ab-latest.{json,md} (perf/ab_report.py) and the raw points in last-run/.

AB_TREE=""
AB_DIR=""

# Builds REV into $ROOT/target/ab (a target dir kept between runs: dependencies are not
# rebuilt every time) and sets VSD_A/VSADM_A to its binaries.
ab_build() { # rev
    local sha
    sha=$(git -C "$ROOT" rev-parse --verify --quiet "$1^{commit}") ||
        { log "--ab: $1 is not a revision of this repository"; exit 2; }
    AB_SHA=${sha:0:9}
    AB_DIR=$(mktemp -d "/tmp/vsdperf-ab.XXXXXX")
    AB_TREE="$AB_DIR/src"
    log "A/B: building A = $AB_SHA in $AB_TREE (log: $RAW/build-a.log)"
    git -C "$ROOT" worktree add --detach --quiet "$AB_TREE" "$sha" >"$RAW/build-a.log" 2>&1 ||
        { log "--ab: git worktree add failed (see $RAW/build-a.log)"; exit 1; }
    if [ -n "$AB_PATCH" ]; then
        git -C "$AB_TREE" apply "$AB_PATCH" >>"$RAW/build-a.log" 2>&1 ||
            { log "--ab-patch: $AB_PATCH does not apply to $AB_SHA (see $RAW/build-a.log)"; exit 1; }
        AB_SHA="$AB_SHA+$(basename "$AB_PATCH" .patch)"
    fi
    (cd "$AB_TREE" && CARGO_TARGET_DIR="$ROOT/target/ab" cargo build --release --workspace --bins) \
        >>"$RAW/build-a.log" 2>&1 || { log "--ab: building $AB_SHA failed (see $RAW/build-a.log)"; exit 1; }
    mkdir -p "$WORK/a"
    cp "$ROOT/target/ab/release/vsd" "$ROOT/target/ab/release/vsadm" "$WORK/a/"
    VSD_A="$WORK/a/vsd"
    VSADM_A="$WORK/a/vsadm"
    ab_cleanup
}

# Removes the temporary worktree (also on failure: run.sh's cleanup calls this).
ab_cleanup() {
    if [ -n "$AB_TREE" ]; then
        git -C "$ROOT" worktree remove --force "$AB_TREE" 2>/dev/null || true
        AB_TREE=""
    fi
    if [ -n "$AB_DIR" ]; then
        rm -rf "$AB_DIR"
        AB_DIR=""
    fi
}

# One session of build $1 (A or B): the same session() as a normal run, with that
# build's vsd and vsadm and a single window.
ab_session() { # build label session-args...
    local build=$1 label=$2
    shift 2
    if [ "$build" = A ]; then
        VSD=$VSD_A VSADM=$VSADM_A REPEAT=1 session "$label" "$@" || true
    else
        VSD=$VSD_B VSADM=$VSADM_B REPEAT=1 session "$label" "$@" || true
    fi
}

ab_main() {
    VSD_B=$VSD
    VSADM_B=$VSADM
    local round order build mode flows
    CEIL_FLOWS=${FLOWS%% *}
    log "A/B: A = $AB_SHA, B = this checkout ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo ', with uncommitted changes')); $REPEAT rounds"
    for round in $(seq "$REPEAT"); do
        order="A B"
        [ $((round % 2)) = 0 ] && order="B A"
        # testpmd's own figure each round (the same binary for A and B): the floor under
        # vsd's cycles per packet, and the round's io rate
        REPEAT=1 session "io-$CEIL_FLOWS-r$round" throughput io "$CEIL_FLOWS" testpmd-io "$DURATION" --expect io || true
        REPEAT=1 session "macswap-$CEIL_FLOWS-r$round" throughput macswap "$CEIL_FLOWS" testpmd-macswap "$DURATION" \
            --expect macswap || true
        for mode in $MODES; do
            for flows in $FLOWS; do
                for build in $order; do
                    ab_session "$build" "$mode-$flows-r$round-$build" throughput "$mode" "$flows" "vsd-$mode" \
                        "$DURATION" --expect "$mode" --rport "$(rport_of "$mode")"
                done
            done
        done
        case " $MODES " in
            *" fullnat "*)
                for build in $order; do
                    PROTO=tcp WARMUP=0.2 SESSION_CAPACITY=$SYN_CAPACITY ab_session "$build" \
                        "syn-fullnat-r$round-$build" syn fullnat "$CEIL_FLOWS" vsd-fullnat "$SYN_DURATION" \
                        --expect fullnat --rport "$(rport_of fullnat)" --new-conn-share 1
                done
                ;;
        esac
        log "A/B: round $round of $REPEAT done (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    /usr/bin/python3 "$ROOT/perf/ab_report.py" "$RAW/points.jsonl" "$OUT_DIR" "$AB_SHA" \
        "$(git -C "$ROOT" rev-parse --short HEAD)" "$LOAD_BEFORE" "$LOAD_AFTER" "$REPEAT" "$DURATION" \
        "$PROTO" "$PKT_SIZE" "$FAMILY" || { log "A/B: the report failed"; exit 1; }
    log "A/B done in $((SECONDS - T0)) s"
    cat "$OUT_DIR/ab-latest.md" >&2
}
