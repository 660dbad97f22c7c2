//! Forwarding end to end on net_tap: NAT, DR, TUN and FULLNAT, each proven
//! with real programs through the VIP (see tests/common/topo.rs for the
//! topologies):
//!
//! - 100 sequential HTTP requests (curl, a new connection each) all succeed
//!   and spread as round-robin says: exactly 50/50 with one worker; with
//!   four workers each worker alternates on its own, so the two counts
//!   differ by at most the number of workers;
//! - a 50 MB download arrives byte-identical (sha256), and so does an 8 MB
//!   upload (for TUN that needs ICMP fragmentation-needed from the
//!   director: full-size segments do not fit the tunnel);
//! - 2000 requests at 200 concurrent connections (ab) complete, none failed;
//! - a UDP service answers through the VIP (10 queries, each a new flow);
//! - what the method promises on the real-server side: NAT/DR/TUN servers
//!   see the client's address; FULLNAT servers see only the local address
//!   and have no route to the client; TUN packets arrive tunnelled from the
//!   director's address on the server network; DR clients resolve the VIP
//!   to the director, never to a real server.
//!
//! Every method runs with one worker and with four worker lcores mapped
//! onto the two CPUs (net_tap gets one queue per worker, so the packets of
//! one connection arrive on different workers).
//!
//! The `reference_*` tests run the same checks with a director built from
//! plain Linux (nftables NAT, tests/helpers/ref_director.py for DR and TUN):
//! they prove the topologies, servers and checks independently of vsd.
//! `sigkill_leaves_nothing_behind` kills a test process mid-way and checks
//! the reaper removed every namespace, interface, process and file.
//!
//! Needs root, /dev/net/tun, hugepages, curl, ab, python3, nft, ethtool.
//! Tests run one at a time (vsd's workers busy-poll the two CPUs).

mod common;

use common::topo::*;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const VSD_LAN_MAC: &str = "02:00:00:00:00:01";
const VSD_SRV_MAC: &str = "02:00:00:00:01:01";
const SEQUENTIAL: usize = 100;
const AB_REQUESTS: usize = 2000;
const AB_CONCURRENCY: usize = 200;
const UDP_QUERIES: usize = 10;

/// One test at a time: vsd's workers busy-poll, and the machine has 2 CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything an end-to-end forwarding test needs besides root and taps.
fn prerequisites(need_hugepages: bool) -> bool {
    if !e2e_prerequisites(need_hugepages) {
        return false;
    }
    let tools = ["curl", "ab", "nft", "ethtool", "sha256sum", "timeout"];
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(|t| t.to_string())
        .collect();
    if !Command::new(python3())
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        missing.push("python3".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "forwarding tests need: {} (scripts/setup.sh installs them)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

// ---------------------------------------------------------------- vsd

/// Worker layout: one worker, or four worker lcores on the two CPUs.
#[derive(Clone, Copy, Debug)]
enum Workers {
    One,
    FourOnTwoCpus,
}

impl Workers {
    fn count(self) -> usize {
        match self {
            Workers::One => 1,
            Workers::FourOnTwoCpus => 4,
        }
    }

    fn toml(self) -> &'static str {
        match self {
            Workers::One => "control = 0\nworkers = [1]\n",
            Workers::FourOnTwoCpus => {
                "control = 0\nworkers = [1, 2, 3, 4]\ncpu_map = \"0@0,(1,3)@1,(2,4)@0\"\n"
            }
        }
    }
}

/// vsd's configuration for `method`: a TCP service VIP:80 and a UDP
/// service VIP:9000, round-robin over the two real servers.
fn vsd_config(
    method: Method,
    workers: Workers,
    lan_tap: &str,
    srv_tap: &str,
    prefix: &str,
) -> String {
    let mut c = format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
{lcores}
[control]
socket = "{{dir}}/vsd.sock"

[lb]
conn_capacity = 65536

[[port]]
name = "lan0"
device = "net_tap0,iface={lan_tap}"
mac = "{VSD_LAN_MAC}"
addresses = ["{LAN_DIP}/24"]
"#,
        lcores = workers.toml()
    );
    if method.has_srv_port() {
        c.push_str(&format!(
            r#"
[[port]]
name = "srv0"
device = "net_tap1,iface={srv_tap}"
mac = "{VSD_SRV_MAC}"
addresses = ["{SRV_DIP}/24"]
"#
        ));
    }
    c.push_str(&format!(
        r#"
[[vip]]
address = "{VIP}"
port = "lan0"
"#
    ));
    let locals = if method == Method::FullNat {
        format!("local_addresses = [\"{LIP}\"]\n")
    } else {
        String::new()
    };
    for (proto, vport, rport) in [
        ("tcp", HTTP_PORT, method.rs_http_port()),
        ("udp", UDP_PORT, method.rs_udp_port()),
    ] {
        c.push_str(&format!(
            r#"
[[service]]
proto = "{proto}"
vip = "{VIP}"
port = {vport}
scheduler = "rr"
{locals}"#
        ));
        for rs in method.rs_addrs() {
            c.push_str(&format!(
                r#"
[[service.real_server]]
address = "{rs}"
port = {rport}
weight = 1
method = "{}"
"#,
                method.config_name()
            ));
        }
    }
    c
}

/// vsd plus its topology; vsd stops first, then the namespaces go.
struct Rig {
    vsd: Vsd,
    topo: Topology,
    prefix: DpdkPrefix,
}

impl Rig {
    fn start(method: Method, workers: Workers) -> Rig {
        let lan_tap = unique("fl");
        let srv_tap = unique("fs");
        let prefix = DpdkPrefix::new("vsdf");
        let vsd = Vsd::start(&vsd_config(
            method,
            workers,
            &lan_tap,
            &srv_tap,
            &prefix.name,
        ));
        let srv = method.has_srv_port().then_some(srv_tap.as_str());
        let topo = Topology::build(method, &lan_tap, srv);
        Rig { vsd, topo, prefix }
    }
}

impl Drop for Rig {
    /// On failure, show what vsd counted before it is killed.
    fn drop(&mut self) {
        if !std::thread::panicking() || self.vsd.child.is_none() {
            return;
        }
        for args in [&["--counters"][..], &["-Ln", "--stats"][..]] {
            if let Ok(out) = Command::new(env!("CARGO_BIN_EXE_vsadm"))
                .arg("--socket")
                .arg(&self.vsd.socket)
                .args(args)
                .output()
            {
                eprintln!("--- vsadm {} ---\n{}", args.join(" "), text(&out));
            }
        }
    }
}

/// VSD_E2E_HOLD=SECONDS keeps a freshly built rig up that long before the
/// checks (bounded to 10 minutes), for looking at it by hand.
fn hold_for_debugging(label: &str, rig: &Rig) {
    let Some(secs) = std::env::var("VSD_E2E_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let t = &rig.topo;
    eprintln!(
        "{label}: holding {secs} s: vsadm --socket {}; client ns {}, switch ns {}, real servers {:?}",
        rig.vsd.socket.display(),
        t.client.name,
        t.switch.name,
        t.rs.iter().map(|r| r.ns.name.clone()).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(secs.min(600)));
}

fn forward_test(method: Method, workers: Workers) {
    let _one = serial();
    if !prerequisites(true) {
        return;
    }
    let mut rig = Rig::start(method, workers);
    let label = format!("vsd {method:?} {workers:?}");
    hold_for_debugging(&label, &rig);
    let view = VsdView {
        vsd: &rig.vsd,
        method,
        workers: workers.count(),
    };
    run_checks(&label, &mut rig.topo, workers.count(), Some(&view));
    rig.topo.assert_servers_alive();
    let status = rig.vsd.stop();
    assert!(
        status.success(),
        "{label}: vsd exit status {status:?}:\n{}",
        rig.vsd.log_text()
    );
}

#[test]
fn nat_one_worker() {
    forward_test(Method::Nat, Workers::One);
}

#[test]
fn nat_four_workers_on_two_cpus() {
    forward_test(Method::Nat, Workers::FourOnTwoCpus);
}

#[test]
fn dr_one_worker() {
    forward_test(Method::Dr, Workers::One);
}

#[test]
fn dr_four_workers_on_two_cpus() {
    forward_test(Method::Dr, Workers::FourOnTwoCpus);
}

#[test]
fn tun_one_worker() {
    forward_test(Method::Tun, Workers::One);
}

#[test]
fn tun_four_workers_on_two_cpus() {
    forward_test(Method::Tun, Workers::FourOnTwoCpus);
}

#[test]
fn fullnat_one_worker() {
    forward_test(Method::FullNat, Workers::One);
}

#[test]
fn fullnat_four_workers_on_two_cpus() {
    forward_test(Method::FullNat, Workers::FourOnTwoCpus);
}

/// One line of `ipvsadm -Ln --stats`: a service or a real server.
#[derive(Clone, Debug, Default)]
struct StatsRow {
    conns: u64,
    in_pkts: u64,
    out_pkts: u64,
    in_bytes: u64,
    out_bytes: u64,
}

/// A service's row and its real servers' rows ("198.18.1.11:8080" -> row).
#[derive(Clone, Debug, Default)]
struct ServiceStats {
    total: StatsRow,
    real_servers: BTreeMap<String, StatsRow>,
}

/// Services ("TCP 198.18.0.100:80") of an `ipvsadm -Ln --stats` listing.
fn parse_ipvsadm_stats(listing: &str) -> BTreeMap<String, ServiceStats> {
    fn row(f: &[&str]) -> Option<StatsRow> {
        let n: Vec<u64> = f.iter().map(|v| parse_largenum(v)).collect::<Option<_>>()?;
        match n.as_slice() {
            [conns, in_pkts, out_pkts, in_bytes, out_bytes] => Some(StatsRow {
                conns: *conns,
                in_pkts: *in_pkts,
                out_pkts: *out_pkts,
                in_bytes: *in_bytes,
                out_bytes: *out_bytes,
            }),
            _ => None,
        }
    }
    let mut out: BTreeMap<String, ServiceStats> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [proto @ ("TCP" | "UDP"), addr, rest @ ..] => {
                if let Some(total) = row(rest) {
                    let key = format!("{proto} {addr}");
                    out.insert(
                        key.clone(),
                        ServiceStats {
                            total,
                            real_servers: BTreeMap::new(),
                        },
                    );
                    current = Some(key);
                }
            }
            ["->", addr, rest @ ..] => {
                if let (Some(k), Some(r)) = (&current, row(rest)) {
                    if let Some(svc) = out.get_mut(k) {
                        svc.real_servers.insert(addr.to_string(), r);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// ipvsadm prints large counters with K/M/G suffixes.
fn parse_largenum(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

/// What vsd says through vsadm, for the checks.
struct VsdView<'a> {
    vsd: &'a Vsd,
    method: Method,
    workers: usize,
}

impl VsdView<'_> {
    /// `vsadm -Ln --stats`, parsed; panics if vsadm fails.
    fn stats(&self, label: &str) -> (String, BTreeMap<String, ServiceStats>) {
        let out = self.vsd.vsadm(&["-Ln", "--stats"]);
        assert!(
            out.status.success(),
            "{label}: vsadm -Ln --stats: {}",
            text(&out)
        );
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let parsed = parse_ipvsadm_stats(&listing);
        (listing, parsed)
    }

    /// The service `key` has scheduled exactly `answers` (real-server id ->
    /// count, as the client saw them) new connections, per real server.
    fn assert_conns(
        &self,
        label: &str,
        key: &str,
        rs_port: u16,
        answers: &BTreeMap<String, usize>,
    ) {
        let (listing, stats) = self.stats(label);
        let svc = stats
            .get(key)
            .unwrap_or_else(|| panic!("{label}: {key} missing from:\n{listing}"));
        let total: usize = answers.values().sum();
        assert_eq!(
            svc.total.conns, total as u64,
            "{label}: {key}: Conns after {total} new connections:\n{listing}"
        );
        for (i, addr) in self.method.rs_addrs().iter().enumerate() {
            let id = format!("rs{}", i + 1);
            let want = answers.get(&id).copied().unwrap_or(0) as u64;
            let got = svc
                .real_servers
                .get(&format!("{addr}:{rs_port}"))
                .map(|r| r.conns);
            assert_eq!(
                got,
                Some(want),
                "{label}: {key} -> {addr}:{rs_port} Conns (the client saw {answers:?}):\n{listing}"
            );
        }
    }

    /// After all checks: byte and packet counters fit the method, and with
    /// several workers packets really crossed between them.
    fn assert_final(&self, label: &str) {
        let (listing, stats) = self.stats(label);
        eprintln!("{label}: vsadm -Ln --stats:\n{listing}");
        let tcp = stats
            .get(&format!("TCP {VIP}:{HTTP_PORT}"))
            .unwrap_or_else(|| panic!("{label}: no TCP service in:\n{listing}"));
        let udp = stats
            .get(&format!("UDP {VIP}:{UDP_PORT}"))
            .unwrap_or_else(|| panic!("{label}: no UDP service in:\n{listing}"));
        // at least the sequential requests and the download; ab's
        // connections may reuse client ports of finished ones
        assert!(
            tcp.total.conns > SEQUENTIAL as u64,
            "{label}: TCP Conns:\n{listing}"
        );
        assert!(
            tcp.total.in_pkts > AB_REQUESTS as u64 * 3,
            "{label}: TCP InPkts:\n{listing}"
        );
        assert_eq!(
            udp.total.in_pkts, UDP_QUERIES as u64,
            "{label}: UDP InPkts:\n{listing}"
        );
        // IPv4 + UDP headers and "query-N"; the answers say "rsN query-N"
        let query_bytes = UDP_QUERIES as u64 * (20 + 8 + 7);
        let answer_bytes = UDP_QUERIES as u64 * (20 + 8 + 11);
        assert_eq!(
            udp.total.in_bytes, query_bytes,
            "{label}: UDP InBytes:\n{listing}"
        );
        if self.method.maps_ports() {
            // replies come back through vsd: the download alone is 50 MB
            assert!(
                tcp.total.out_bytes >= 50_000_000,
                "{label}: TCP OutBytes:\n{listing}"
            );
            assert_eq!(
                udp.total.out_pkts, UDP_QUERIES as u64,
                "{label}: UDP OutPkts:\n{listing}"
            );
            assert_eq!(
                udp.total.out_bytes, answer_bytes,
                "{label}: UDP OutBytes:\n{listing}"
            );
        } else {
            // DR and TUN: replies go straight to the client
            assert_eq!(tcp.total.out_pkts, 0, "{label}: TCP OutPkts:\n{listing}");
            assert_eq!(udp.total.out_pkts, 0, "{label}: UDP OutPkts:\n{listing}");
        }
        let counters = self.vsd.vsadm(&["--counters"]);
        eprintln!("{label}: vsadm --counters:\n{}", text(&counters));
        // Nothing may have been dropped for want of a resource or a route.
        for name in [
            "no_mbuf",
            "tx_full",
            "steer_full",
            "neigh_queue_full",
            "neigh_pending_pool_full",
            "neigh_pending_share_limit",
            "neigh_table_full",
            "neigh_unresolved",
            "neigh_evicted",
            "no_route",
            "bad_ip_checksum",
        ] {
            assert_eq!(self.vsd.dropped(name), 0, "{label}: drops {name}");
        }
        let all = self.vsd.ask("counters");
        if self.method == Method::Tun {
            // the upload's full-size segments do not fit the tunnel: the
            // client learnt the path MTU from vsd
            let n = all["forwarding"]["events"]["icmp_frag_needed_sent"]
                .as_u64()
                .unwrap_or(0);
            assert!(n > 0, "{label}: TUN sent no ICMP fragmentation-needed");
        }
        for name in ["table_full", "no_room", "no_local_address", "no_local_port"] {
            let n = all["forwarding"]["drops"][name].as_u64().unwrap_or(0);
            assert_eq!(n, 0, "{label}: forwarding drops {name}");
        }
        if self.workers > 1 {
            let steered = self.vsd.event("steered_in");
            assert!(
                steered > 0,
                "{label}: with {} workers no packet was steered to its owner",
                self.workers
            );
        }
    }
}

// ---------------------------------------------------------------- checks

/// All checks against whatever directs traffic for the VIP in `topo`.
/// `workers` bounds the round-robin spread (1 = exact alternation); with
/// `vsd`, its statistics are checked against what the client saw.
fn run_checks(label: &str, topo: &mut Topology, workers: usize, vsd: Option<&VsdView>) {
    let t = std::time::Instant::now();
    let seq = sequential_requests(label, topo);
    eprintln!(
        "{label}: {SEQUENTIAL} sequential requests: {seq:?} ({:?})",
        t.elapsed()
    );
    assert_spread(label, "sequential HTTP", &seq, SEQUENTIAL, workers);
    if let Some(v) = vsd {
        v.assert_conns(
            label,
            &format!("TCP {VIP}:{HTTP_PORT}"),
            topo.method.rs_http_port(),
            &seq,
        );
    }
    let t = std::time::Instant::now();
    download(label, topo);
    eprintln!("{label}: 50 MB download, sha256 equal ({:?})", t.elapsed());
    let t = std::time::Instant::now();
    let by = upload(label, topo);
    eprintln!(
        "{label}: {} MB upload to {by}, sha256 equal ({:?})",
        UPLOAD_BYTES >> 20,
        t.elapsed()
    );
    let t = std::time::Instant::now();
    concurrent(label, topo);
    eprintln!(
        "{label}: ab -n {AB_REQUESTS} -c {AB_CONCURRENCY}: no failures ({:?})",
        t.elapsed()
    );
    let udp = udp_queries(label, topo);
    eprintln!("{label}: {UDP_QUERIES} UDP queries: {udp:?}");
    assert_spread(label, "UDP", &udp, UDP_QUERIES, workers);
    if let Some(v) = vsd {
        v.assert_conns(
            label,
            &format!("UDP {VIP}:{UDP_PORT}"),
            topo.method.rs_udp_port(),
            &udp,
        );
    }
    topo.assert_servers_alive();
    method_specifics(label, topo);
    for rs in &topo.rs {
        eprintln!("{label}: {} peers {:?}", rs.id, rs.peers());
    }
    if let Some(v) = vsd {
        v.assert_final(label);
    }
}

fn assert_spread(
    label: &str,
    what: &str,
    counts: &BTreeMap<String, usize>,
    n: usize,
    workers: usize,
) {
    let rs1 = counts.get("rs1").copied().unwrap_or(0);
    let rs2 = counts.get("rs2").copied().unwrap_or(0);
    assert_eq!(rs1 + rs2, n, "{label}: {what}: answers {counts:?}");
    if workers == 1 {
        assert_eq!(
            (rs1, rs2),
            (n / 2, n / 2),
            "{label}: {what}: rr must alternate exactly"
        );
    } else {
        assert!(
            rs1.abs_diff(rs2) <= workers && rs1 > 0 && rs2 > 0,
            "{label}: {what}: rr spread {counts:?} with {workers} workers"
        );
    }
}

/// 100 requests, each on a new connection, in one curl run.
fn sequential_requests(label: &str, topo: &Topology) -> BTreeMap<String, usize> {
    let url = format!("http://{VIP}:{HTTP_PORT}/id");
    let mut args: Vec<&str> = vec![
        "-sS",
        "--fail",
        "--fail-early",
        "--connect-timeout",
        "5",
        "--max-time",
        "10",
        "-H",
        "Connection: close",
    ];
    for _ in 0..SEQUENTIAL {
        args.push(&url);
    }
    let out = topo.client_run(240, "curl", &args);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut counts = BTreeMap::new();
    for line in body.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    assert!(
        out.status.success() && body.lines().count() == SEQUENTIAL,
        "{label}: {SEQUENTIAL} sequential requests: {} answers {counts:?}, curl {:?}: {}",
        body.lines().count(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    counts
}

/// The 50 MB file arrives byte-identical.
fn download(label: &str, topo: &Topology) {
    let dst = topo.dir.path.join("download.bin");
    let url = format!("http://{VIP}:{HTTP_PORT}/big.bin");
    let path = dst.display().to_string();
    let out = topo.client_run(
        200,
        "curl",
        &[
            "-sS",
            "--fail",
            "--connect-timeout",
            "5",
            "--max-time",
            "180",
            "-o",
            &path,
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{label}: 50 MB download failed: {}",
        text(&out)
    );
    let len = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, BIG_FILE_BYTES as u64, "{label}: download length");
    assert_eq!(
        sha256_of(None, &dst),
        topo.big_sha256,
        "{label}: download differs"
    );
    let _ = std::fs::remove_file(&dst);
}

/// An upload arrives byte-identical at a real server, which answers with
/// its name and the body's sha256. Returns the name.
fn upload(label: &str, topo: &Topology) -> String {
    let url = format!("http://{VIP}:{HTTP_PORT}/upload");
    let data = format!("@{}", topo.upload.display());
    let out = topo.client_run(
        150,
        "curl",
        &[
            "-sS",
            "--fail",
            "--connect-timeout",
            "5",
            "--max-time",
            "120",
            "-H",
            "Expect:",
            "--data-binary",
            &data,
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{label}: upload failed: {}",
        text(&out)
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (by, sha) = answer.split_once(' ').unwrap_or(("", ""));
    assert!(
        by.starts_with("rs") && sha == topo.upload_sha256,
        "{label}: upload arrived as {answer:?}, sent sha256 {}",
        topo.upload_sha256
    );
    by.to_string()
}

/// ab: 2000 requests, 200 concurrent, none failed.
fn concurrent(label: &str, topo: &Topology) {
    let url = format!("http://{VIP}:{HTTP_PORT}/id");
    let n = AB_REQUESTS.to_string();
    let c = AB_CONCURRENCY.to_string();
    let out = topo.client_run(300, "ab", &["-q", "-n", &n, "-c", &c, "-s", "30", &url]);
    let report = text(&out);
    let field = |name: &str| -> Option<u64> {
        report
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(name.split_whitespace().count()))
            .and_then(|v| v.parse().ok())
    };
    assert!(out.status.success(), "{label}: ab failed:\n{report}");
    assert_eq!(
        field("Complete requests:"),
        Some(AB_REQUESTS as u64),
        "{label}: ab:\n{report}"
    );
    assert_eq!(field("Failed requests:"), Some(0), "{label}: ab:\n{report}");
    assert!(
        !report.contains("Non-2xx responses"),
        "{label}: ab:\n{report}"
    );
}

/// 10 UDP queries, each from a new source port; who answered how often.
fn udp_queries(label: &str, topo: &Topology) -> BTreeMap<String, usize> {
    let count = UDP_QUERIES.to_string();
    let port = UDP_PORT.to_string();
    let out = topo.client_run(
        60,
        python3(),
        &[
            &helper("udp_client.py"),
            VIP,
            &port,
            "--count",
            &count,
            "--first-port",
            "50000",
            "--timeout",
            "3",
        ],
    );
    assert!(
        out.status.success(),
        "{label}: UDP through the VIP: {}",
        text(&out)
    );
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// What each method promises on the real-server side.
fn method_specifics(label: &str, topo: &Topology) {
    let expect_peer = if topo.method == Method::FullNat {
        LIP
    } else {
        CLIENT
    };
    for rs in &topo.rs {
        let peers = rs.peers();
        assert!(
            peers.iter().any(|(k, _)| k == "tcp") && peers.iter().any(|(k, _)| k == "udp"),
            "{label}: {} saw no TCP or no UDP peer: {peers:?}",
            rs.id
        );
        assert!(
            peers.iter().all(|(_, a)| a == expect_peer),
            "{label}: {} must see only {expect_peer} as peer, saw {peers:?}",
            rs.id
        );
    }
    match topo.method {
        Method::FullNat => {
            for rs in &topo.rs {
                let out = run_in(&rs.ns, 10, "ip", &["route", "get", CLIENT]);
                assert!(
                    !out.status.success(),
                    "{label}: {} must have no route to the client: {}",
                    rs.id,
                    text(&out)
                );
            }
        }
        Method::Tun => {
            // the upload taught the client the tunnel's path MTU
            let out = topo.client.ip(&["route", "get", VIP]);
            let route = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                route.contains("mtu 1480"),
                "{label}: client's route to the VIP lacks the tunnel's path MTU: {route:?}"
            );
            for rs in &topo.rs {
                assert_eq!(
                    rs.outer_sources(),
                    vec![SRV_DIP.to_string()],
                    "{label}: {}: outer sources of the tunnelled packets",
                    rs.id
                );
            }
        }
        Method::Dr => {
            let out = topo.client.ip(&["neigh", "show", VIP]);
            let neigh = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                neigh.contains(VSD_LAN_MAC),
                "{label}: the client must resolve the VIP to the director: {neigh:?}"
            );
        }
        Method::Nat => {}
    }
}

// ---------------------------------------------------------------- reference

fn reference_test(method: Method) {
    let _one = serial();
    if !prerequisites(false) {
        return;
    }
    let mut director = RefDirector::new(method);
    let mut topo = Topology::build(method, &director.lan_if, director.srv_if.as_deref());
    director.start(&topo);
    run_checks(&format!("reference {method:?}"), &mut topo, 1, None);
}

#[test]
fn reference_nat() {
    reference_test(Method::Nat);
}

#[test]
fn reference_dr() {
    reference_test(Method::Dr);
}

#[test]
fn reference_tun() {
    reference_test(Method::Tun);
}

#[test]
fn reference_fullnat() {
    reference_test(Method::FullNat);
}

/// The IPIP decapsulation helper hands the inner packet of a hand-made
/// IPIP packet to the real server's kernel, which answers it straight to
/// the client (UDP echo, TCP SYN-ACK); the kernel itself drops protocol 4
/// (nftables counter) instead of answering protocol-unreachable.
#[test]
fn ipip_decap_answers_hand_made_packets() {
    let _one = serial();
    if !prerequisites(false) {
        return;
    }
    let director = RefDirector::new(Method::Tun);
    let topo = Topology::build(Method::Tun, &director.lan_if, director.srv_if.as_deref());
    let probe = helper("ipip_probe.py");
    let dir = &topo.dir.path;
    for (i, rs) in topo.rs.iter().enumerate() {
        // UDP: the echo comes back to the client from VIP:9000
        let cport = (40000 + i).to_string();
        let ready = dir.join(format!("probe-udp-{i}.ready"));
        let mut rx = Proc::spawn(
            Some(&topo.client),
            &format!("probe-udp-{i}"),
            dir,
            python3(),
            &[
                &probe,
                "expect-udp",
                "--bind",
                &format!("{CLIENT}:{cport}"),
                "--ready",
                &ready.display().to_string(),
                "--timeout",
                "10",
            ],
        );
        rx.wait_ready(&ready, Duration::from_secs(10));
        let sent = run_in(
            &director.ns,
            10,
            python3(),
            &[
                &probe,
                "send",
                "--rs",
                &rs.addr,
                "--proto",
                "udp",
                "--src",
                &format!("{CLIENT}:{cport}"),
                "--dst",
                &format!("{VIP}:{UDP_PORT}"),
                "--payload",
                "hand-made",
            ],
        );
        assert!(sent.status.success(), "probe send: {}", text(&sent));
        let status = wait_exit(&mut rx, Duration::from_secs(15));
        let log = rx.log_text();
        assert!(status == Some(0), "{}: no UDP answer: {log}", rs.id);
        assert!(
            log.contains(&format!("udp from {VIP}:{UDP_PORT}: {} hand-made", rs.id)),
            "{}: {log}",
            rs.id
        );

        // TCP: a SYN to VIP:80 is answered with a SYN-ACK from the VIP
        let cport = (41000 + i).to_string();
        let ready = dir.join(format!("probe-tcp-{i}.ready"));
        let mut rx = Proc::spawn(
            Some(&topo.client),
            &format!("probe-tcp-{i}"),
            dir,
            python3(),
            &[
                &probe,
                "expect-synack",
                "--iface",
                "eth1",
                "--port",
                &cport,
                "--ready",
                &ready.display().to_string(),
                "--timeout",
                "10",
            ],
        );
        rx.wait_ready(&ready, Duration::from_secs(10));
        let sent = run_in(
            &director.ns,
            10,
            python3(),
            &[
                &probe,
                "send",
                "--rs",
                &rs.addr,
                "--proto",
                "tcp",
                "--src",
                &format!("{CLIENT}:{cport}"),
                "--dst",
                &format!("{VIP}:{HTTP_PORT}"),
            ],
        );
        assert!(sent.status.success(), "probe send: {}", text(&sent));
        let status = wait_exit(&mut rx, Duration::from_secs(15));
        let log = rx.log_text();
        assert!(status == Some(0), "{}: no SYN-ACK: {log}", rs.id);
        assert!(
            log.contains(&format!(
                "syn-ack from {VIP}:{HTTP_PORT} to {CLIENT}:{cport}"
            )),
            "{}: {log}",
            rs.id
        );

        assert_eq!(
            rs.outer_sources(),
            vec![SRV_DIP.to_string()],
            "{}: outer source",
            rs.id
        );
        // the kernel saw both tunnelled packets and dropped them silently
        let rules = run_in(&rs.ns, 10, "nft", &["list", "ruleset"]);
        let rules = text(&rules);
        assert!(
            rules.contains("counter packets 2 bytes"),
            "{}: nft drop counter: {rules}",
            rs.id
        );
    }
}

fn wait_exit(p: &mut Proc, limit: Duration) -> Option<i32> {
    let mut status = None;
    wait_for(limit, || {
        status = p.child.try_wait().ok().flatten();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

// ---------------------------------------------------------------- cleanup

const KILL_MARKER_ENV: &str = "VSD_E2E_KILL_MARKER";

/// Run by `sigkill_leaves_nothing_behind` in a child test process, which it
/// kills with SIGKILL once this has built vsd and a TUN topology (the one
/// with the most parts: taps, bridge, veths, nftables, two helpers per
/// real server).
#[test]
#[ignore = "run only by sigkill_leaves_nothing_behind"]
fn kill_target() {
    let Ok(marker) = std::env::var(KILL_MARKER_ENV) else {
        return;
    };
    let rig = Rig::start(Method::Tun, Workers::One);
    let t = &rig.topo;
    let mut lines = Vec::new();
    for ns in [&t.client, &t.switch] {
        lines.push(format!("netns {}", ns.name));
    }
    for rs in &t.rs {
        lines.push(format!("netns {}", rs.ns.name));
        lines.push(format!("pid {}", rs.server.child.id()));
        if let Some(d) = &rs.decap {
            lines.push(format!("pid {}", d.child.id()));
        }
    }
    if let Some(c) = &rig.vsd.child {
        lines.push(format!("pid {}", c.id()));
    }
    lines.push(format!("dir {}", t.dir.path.display()));
    lines.push(format!("dir {}", rig.vsd.dir.display()));
    lines.push(format!("dpdk {}", rig.prefix.name));
    let cfg = std::fs::read_to_string(rig.vsd.dir.join("vsd.toml")).unwrap_or_default();
    for l in cfg.lines() {
        if let Some(i) = l.split("iface=").nth(1) {
            lines.push(format!("link {}", i.trim_end_matches('"')));
        }
    }
    let tmp = format!("{marker}.tmp");
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, &marker).unwrap();
    // bounded: the parent kills us long before this ends
    std::thread::sleep(Duration::from_secs(120));
}

/// SIGKILL a test process mid-way: its namespaces, interfaces, processes,
/// files and hugepages must all be gone shortly after.
#[test]
fn sigkill_leaves_nothing_behind() {
    let _one = serial();
    if !prerequisites(true) {
        return;
    }
    let dir = TempDir::new("vsd-kill-");
    let marker = dir.path.join("marker");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_target", "--ignored", "--nocapture"])
        .env(KILL_MARKER_ENV, &marker)
        .stdout(std::fs::File::create(dir.path.join("child.log")).unwrap())
        .stderr(std::fs::File::create(dir.path.join("child.err")).unwrap())
        .spawn()
        .unwrap();
    let built = wait_for(Duration::from_secs(120), || {
        marker.exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    let child_log = || {
        format!(
            "{}{}",
            std::fs::read_to_string(dir.path.join("child.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path.join("child.err")).unwrap_or_default()
        )
    };
    if !(built && marker.exists()) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("kill_target did not build its topology:\n{}", child_log());
    }
    let listed = std::fs::read_to_string(&marker).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();

    let entries: Vec<(String, String)> = listed
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(
        entries.iter().filter(|(k, _)| k == "netns").count() == 4
            && entries.iter().filter(|(k, _)| k == "pid").count() == 5,
        "marker lists too little: {listed}"
    );
    let leftovers = || -> Vec<String> {
        let netns = String::from_utf8_lossy(&sh_any("ip", &["netns", "list"]).stdout).into_owned();
        let mut left = Vec::new();
        for (kind, arg) in &entries {
            let gone = match kind.as_str() {
                "netns" => !netns.split_whitespace().any(|n| n == arg),
                "pid" => !Path::new(&format!("/proc/{arg}")).exists(),
                "dir" => !Path::new(arg).exists(),
                "link" => !sh_any("ip", &["link", "show", arg]).status.success(),
                "dpdk" => {
                    !Path::new(&format!("/var/run/dpdk/{arg}")).exists()
                        && std::fs::read_dir("/dev/hugepages")
                            .map(|rd| {
                                rd.flatten().all(|e| {
                                    !e.file_name().to_string_lossy().starts_with(arg.as_str())
                                })
                            })
                            .unwrap_or(true)
                }
                _ => true,
            };
            if !gone {
                left.push(format!("{kind} {arg}"));
            }
        }
        left
    };
    let clean = wait_for(Duration::from_secs(30), || leftovers().is_empty());
    assert!(
        clean,
        "left behind after SIGKILL: {:?}\nchild output:\n{}",
        leftovers(),
        child_log()
    );
}
