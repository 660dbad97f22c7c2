//! vsd-gen end to end on a `net_ring` loopback port (what it sends comes
//! straight back, as through `testpmd --forward-mode=io`): the whole DPDK
//! loop, the checks and the JSON report, with no second process.

use serde_json::Value;
use std::process::Command;

/// Runs vsd-gen on a loopback ring with `args`; returns its exit status
/// success, the JSON lines it printed, and its stderr.
fn run(prefix: &str, args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vsd-gen"))
        .args([
            "--file-prefix",
            prefix,
            "--settle-ms",
            "20",
            "--warmup",
            "0.1",
        ])
        .args(["--duration", "0.3", "--drain-ms", "50"])
        .args(args)
        .args(["--", "--vdev", "net_ring0"])
        .output()
        .expect("vsd-gen runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing or not a count: {v}"))
}

#[test]
fn loopback_runs_check_and_report() {
    // io: every packet comes back unchanged, so every check passes.
    let (ok, lines, err) = run(
        "vsdgen-selftest-io",
        &[
            "--expect", "io", "--proto", "tcp", "--flows", "5000", "--repeat", "2",
        ],
    );
    assert!(ok, "vsd-gen failed:\n{err}");
    assert_eq!(lines.len(), 2, "one JSON line per window:\n{err}");
    for (i, r) in lines.iter().enumerate() {
        assert_eq!(r["mode"], "io");
        assert_eq!(r["proto"], "tcp");
        assert_eq!(u(r, "flows"), 5000);
        assert_eq!(u(r, "window"), i as u64 + 1);
        assert_eq!(u(r, "windows"), 2);
        assert!(u(r, "tx_packets") > 0, "{r}");
        assert!(u(r, "rx_packets") > 0, "{r}");
        assert_eq!(u(r, "drops"), 0, "{r}");
        assert!(u(r, "checked") > 0, "{r}");
        assert_eq!(u(r, "check_failures"), 0, "{r}");
        assert_eq!(u(r, "reordered"), 0, "{r}");
        assert!(u(r, "latency_samples") > 0, "{r}");
        assert!(r["p99_us"].as_f64().is_some(), "{r}");
    }
    assert!(
        err.contains("vsd-gen io tcp flows=5000 size=64 [1/2]"),
        "{err}"
    );

    // Expecting macswap where nothing is swapped: every sample fails on the
    // source MAC, which shows the checker is on the path.
    let (ok, lines, err) = run("vsdgen-selftest-ms", &["--expect", "macswap"]);
    assert!(ok, "vsd-gen failed:\n{err}");
    let r = &lines[0];
    assert!(u(r, "checked") > 0, "{r}");
    assert_eq!(u(r, "check_failures"), u(r, "checked"), "{r}");
    assert_eq!(r["failures"]["src_mac"], r["check_failures"], "{r}");

    // All new connections: every packet a SYN on a fresh tuple, counted
    // when it comes back.
    let (ok, lines, err) = run(
        "vsdgen-selftest-syn",
        &[
            "--proto",
            "tcp",
            "--new-conn-share",
            "1",
            "--pkt-size",
            "128",
        ],
    );
    assert!(ok, "vsd-gen failed:\n{err}");
    let r = &lines[0];
    assert_eq!(u(r, "new_conns"), u(r, "tx_packets"), "{r}");
    assert!(r["new_conns_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    assert_eq!(u(r, "check_failures"), 0, "{r}");

    // IPv6 (TCP and UDP): the frames come back unchanged and every sample
    // passes the IPv6 checks (2001:2::/96 addresses, L4 checksums over the
    // IPv6 pseudo-header).
    for proto in ["tcp", "udp"] {
        let (ok, lines, err) = run(
            &format!("vsdgen-selftest-v6{proto}"),
            &["--family", "6", "--proto", proto, "--flows", "3000"],
        );
        assert!(ok, "vsd-gen failed:\n{err}");
        let r = &lines[0];
        assert_eq!(u(r, "family"), 6, "{r}");
        assert!(u(r, "rx_packets") > 0, "{r}");
        assert!(u(r, "checked") > 0, "{r}");
        assert_eq!(u(r, "check_failures"), 0, "{r}");
        assert_eq!(u(r, "rx_other"), 0, "{r}");
    }
    let (ok, lines, err) = run(
        "vsdgen-selftest-v4on6",
        &["--family", "4", "--proto", "tcp"],
    );
    assert!(ok, "vsd-gen failed:\n{err}");
    assert_eq!(u(&lines[0], "family"), 4);

    // A bad option: an error on stderr, nothing on stdout.
    let (ok, lines, err) = run("vsdgen-selftest-bad", &["--pkt-size", "40"]);
    assert!(!ok);
    assert!(lines.is_empty());
    assert!(err.contains("--pkt-size 40 is outside 64..=1518"), "{err}");
    let (ok, _, err) = run("vsdgen-selftest-bad6", &["--family", "5"]);
    assert!(!ok);
    assert!(err.contains("--family"), "{err}");
    let (ok, _, err) = run(
        "vsdgen-selftest-bad96",
        &["--family", "6", "--ipv6-prefix", "2001:2::1:0"],
    );
    assert!(!ok);
    assert!(err.contains("a /96 is needed"), "{err}");
}
