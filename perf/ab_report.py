#!/usr/bin/env python3
"""The report of `perf/run.sh --ab REV` (perf/ab.sh): per point, B/A ratios over the rounds.

Reads last-run/points.jsonl, whose labels are POINT-rROUND-BUILD for vsd (BUILD A = REV,
B = this checkout) and POINT-rROUND for testpmd; writes OUT_DIR/ab-latest.{json,md}.
A ratio exists for a round only when both builds returned a value in that round, and
only when neither session was disturbed: measured in the host's slow cross-CPU mode
(`host_slow`, the probes around it) or, by its own cycles per packet, over
DISTURBED_CYCLES times the lowest of its build at that point (the slow mode can start and
end inside a session). "best" compares the two builds' best undisturbed sessions:
disturbance only ever adds cycles, so best against best is the comparison the host moves
least.

usage: ab_report.py POINTS OUT_DIR A_REV B_REV LOAD_BEFORE LOAD_AFTER ROUNDS DURATION PROTO PKT_SIZE [FAMILY]
"""
import datetime
import json
import os
import re
import statistics
import sys

DISTURBED_CYCLES = 1.25

LABEL = re.compile(r"^(?P<point>.+)-r(?P<round>\d+)(?:-(?P<build>[AB]))?$")


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(ratios):
    """Median, min and max of the per-round ratios (None when there are none)."""
    if not ratios:
        return None
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "rounds": len(ratios)}


def values(row):
    """(rate, cycles per packet, packets per burst) of one session; rate is Mpps, or new
    conns/s for syn."""
    gen = row["gen"]
    rate = None
    if gen.get("rx_packets", 0) > 0:
        rate = gen.get("new_conns_per_s") if row["kind"] == "syn" else gen.get("rx_mpps")
    # the session's figure (run.sh's "cycles" may be one window's)
    whole = row.get("session_cycles") or row.get("cycles") or {}
    cycles = whole.get("cycles_per_packet")
    burst = whole.get("packets_per_burst")
    return rate, cycles, burst


def build(rows):
    notes = {}
    sessions = {}  # point -> round -> build -> (rate, cycles)
    order = []
    for r in rows:
        m = LABEL.match(r.get("label", ""))
        if not m:
            continue
        point, rnd, b = m["point"], int(m["round"]), m["build"] or "-"
        if point not in order:
            order.append(point)
        if "note" in r:
            notes.setdefault(point, []).append(f"{b} r{rnd}: {r['note']}")
            continue
        if "gen" not in r:
            continue
        fails = r["gen"].get("check_failures", 0)
        if fails:
            notes.setdefault(point, []).append(f"{b} r{rnd}: {fails} check failures")
        sessions.setdefault(point, {}).setdefault(rnd, {})[b] = (r["kind"],) + values(r) + (bool(r.get("host_slow")),)
    testpmd = {}
    for fwd in ("io", "macswap"):
        for point in order:
            if point.split("-")[0] == fwd and point in sessions:
                rounds = sessions[point].values()
                # the best round of each, as run.sh's ceiling: other work on its core
                # only ever lowers testpmd's rate and raises its cycles (it has no
                # stall filter)
                rates = [x["-"][1] for x in rounds if "-" in x and x["-"][1] is not None]
                cycles = [x["-"][2] for x in rounds if "-" in x and x["-"][2] is not None]
                testpmd[fwd] = {
                    "mpps": max(rates) if rates else None,
                    "cycles_per_packet": min(cycles) if cycles else None,
                }
    out = []
    for point in order:
        rounds = sessions.get(point, {})
        if not any("A" in x or "B" in x for x in rounds.values()) and point not in notes:
            continue
        if point.split("-")[0] in testpmd and not any("A" in x for x in rounds.values()):
            continue
        kind = next((x[b][0] for x in rounds.values() for b in x), "syn" if point.startswith("syn-") else "throughput")
        rec = {"point": point, "kind": kind}
        lowest = {}
        for b in ("A", "B"):
            cyc = [x[b][2] for x in rounds.values() if b in x and x[b][2] and not x[b][4]]
            lowest[b] = min(cyc) if cyc else None

        def disturbed(b, x):
            s = x[b]
            return s[4] or (s[2] is not None and lowest[b] is not None and s[2] > DISTURBED_CYCLES * lowest[b])

        clean = {rnd: x for rnd, x in rounds.items()
                 if "A" in x and "B" in x and not disturbed("A", x) and not disturbed("B", x)}
        rec["rounds_left_out"] = sorted(rnd for rnd, x in rounds.items() if "A" in x and "B" in x and rnd not in clean)
        for i, key, pick in ((1, "rate", max), (2, "cycles_per_packet", min)):
            a = [x["A"][i] for x in rounds.values() if "A" in x]
            b = [x["B"][i] for x in rounds.values() if "B" in x]
            ratios = [x["B"][i] / x["A"][i] for x in clean.values() if x["A"][i] and x["B"][i] is not None]
            best_a = [x["A"][i] for x in rounds.values() if "A" in x and x["A"][i] is not None and not disturbed("A", x)]
            best_b = [x["B"][i] for x in rounds.values() if "B" in x and x["B"][i] is not None and not disturbed("B", x)]
            best = (round(pick(best_b) / pick(best_a), 3)
                    if best_a and best_b and pick(best_a) else None)
            rec[key] = {"a": med(a), "b": med(b), "b_over_a": spread(ratios), "best_b_over_best_a": best,
                        "a_runs": a, "b_runs": b}
        if rec["rounds_left_out"]:
            notes.setdefault(point, []).append(
                "rounds left out (a session in the host's slow mode or over "
                f"{DISTURBED_CYCLES}x its build's best cycles): " + ", ".join(map(str, rec["rounds_left_out"])))
        rec["packets_per_burst_b"] = med([x["B"][3] for x in rounds.values() if "B" in x])
        io = testpmd.get("io", {}).get("cycles_per_packet")
        for b in ("a", "b"):
            c = rec["cycles_per_packet"][b]
            rec["cycles_per_packet"][f"{b}_over_testpmd_io"] = round(c / io, 2) if c and io else None
        rec["note"] = "; ".join(notes.get(point, [])) or None
        out.append(rec)
    return testpmd, out


def fmt(v, spec="{}"):
    return "-" if v is None else spec.format(v)


def ratio_text(s):
    return "-" if s is None else f"**{s['median']:.3f}** [{s['min']:.3f}, {s['max']:.3f}]"


def rate_text(kind, v):
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} M/s" if kind == "syn" else f"{v:.2f}"


def main():
    points, out_dir, a_rev, b_rev, load0, load1, rounds, duration, proto, pkt = sys.argv[1:11]
    family = sys.argv[11] if len(sys.argv) > 11 else "4"
    rows = [json.loads(line) for line in open(points) if line.strip()]
    testpmd, recs = build(rows)
    with open(os.path.join(out_dir, "ab-latest.json"), "w") as f:
        json.dump({"a": a_rev, "b": b_rev, "family": int(family), "load_before": load0, "load_after": load1,
                   "testpmd": testpmd, "points": recs}, f, indent=1)
        f.write("\n")
    io, mac = testpmd.get("io", {}), testpmd.get("macswap", {})
    lines = [
        f"# vsd A/B: A = {a_rev}, B = {b_rev}",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; {rounds} rounds of one {duration} s "
        f"window per build and point, A B then B A; IPv{family} {proto.upper()}, {pkt}-byte frames",
        f"- load average before / after: {load0} / {load1}",
        f"- testpmd in the same run (best round: fewest cycles, highest rate): io {fmt(io.get('cycles_per_packet'))} cycles/packet, "
        f"{fmt(io.get('mpps'))} Mpps; macswap {fmt(mac.get('cycles_per_packet'))} cycles/packet, "
        f"{fmt(mac.get('mpps'))} Mpps",
        "- B/A: median [min, max] of the per-round ratios over the rounds where neither session was",
        f"  disturbed (host's slow mode by the probes, or cycles over {DISTURBED_CYCLES}x the build's best at",
        "  the point); best B/A: the best undisturbed session of B against A's. Throughput B/A > 1 and",
        "  cycles B/A < 1 mean B is better; a change that costs nothing has a cycles ratio whose",
        "  [min, max] holds 1.",
        "",
        "| point | cycles/pkt A | cycles/pkt B | cycles B/A | best B/A | B / testpmd io | rate A | rate B | rate B/A "
        "| B pkts/burst | note |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in recs:
        c, t = r["cycles_per_packet"], r["rate"]
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["point"], fmt(c["a"], "{:.1f}"), fmt(c["b"], "{:.1f}"), ratio_text(c["b_over_a"]),
            fmt(c["best_b_over_best_a"], "{:.3f}"),
            fmt(c["b_over_testpmd_io"]), rate_text(r["kind"], t["a"]), rate_text(r["kind"], t["b"]),
            ratio_text(t["b_over_a"]), fmt(r["packets_per_burst_b"]), r["note"] or ""))
    lines += ["", "Rates are Mpps received back by the generator (new connections/s for syn points).",
              "See perf/README.md (A/B mode) for how to read this.", ""]
    with open(os.path.join(out_dir, "ab-latest.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {out_dir}/ab-latest.json, ab-latest.md", file=sys.stderr)


if __name__ == "__main__":
    main()
