//! SYN floods end to end on net_tap (issue 12 item 3), with real clients
//! (curl) and real servers (python's HTTP server) in namespaces and a
//! bounded raw-socket flood (tests/helpers/syn_flood.py) from random
//! off-link sources (their SYN-ACKs go to the client's gateway address and
//! die there):
//!
//! - `synproxy_nat_keeps_clients_in_during_and_after_a_flood`: with
//!   `synproxy = true` a flood of 20000 SYNs creates no connection entry in
//!   a 1024-entry table, every curl during and after it succeeds, the
//!   counters show the cookies, and a 50 MB download through the proxy
//!   arrives byte-identical (sequence numbers shifted on every packet);
//! - `synproxy_fullnat_download`: the same download and requests through a
//!   FULLNAT synproxy service, with a smaller flood, and (`synproxy_nat_four_workers`)
//!   NAT with four workers, where cookie ACKs are steered to the reply owner;
//! - `defense_knobs_clear_a_flooded_table`: without the proxy a flood fills
//!   the table and locks clients out; `vsadm --set-defense drop_entry=1
//!   secure_tcp=1` lets them back in within seconds (IPVS alone would hold
//!   the SYN_RECV entries for 60 s).
//!
//! Needs root, /dev/net/tun, hugepages, curl, python3. One test at a time.

mod common;

use common::topo::*;
use common::*;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const CAPACITY: usize = 1024;

fn prerequisites() -> bool {
    if !e2e_prerequisites(true) {
        return false;
    }
    let ok = |p: &str, a: &str| {
        Command::new(p)
            .arg(a)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if ok("curl", "--version") && ok(python3(), "--version") {
        return true;
    }
    let msg = "SYN-flood tests need curl and python3 (scripts/setup.sh installs them)";
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn vsd_config(
    method: Method,
    synproxy: bool,
    workers: &str,
    lan: &str,
    srv: &str,
    prefix: &str,
) -> String {
    let locals = if method == Method::FullNat {
        format!("local_addresses = [\"{LIP}\"]\n")
    } else {
        String::new()
    };
    let mut c = format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
{workers}

[control]
socket = "{{dir}}/vsd.sock"

[lb]
conn_capacity = {CAPACITY}

[[port]]
name = "lan0"
device = "net_tap0,iface={lan}"
mac = "02:00:00:00:00:01"
addresses = ["{LAN_DIP}/24"]
gateway = "{CLIENT}"

[[port]]
name = "srv0"
device = "net_tap1,iface={srv}"
mac = "02:00:00:00:01:01"
addresses = ["{SRV_DIP}/24"]

[[vip]]
address = "{VIP}"
port = "lan0"

[[service]]
proto = "tcp"
vip = "{VIP}"
port = {HTTP_PORT}
scheduler = "rr"
synproxy = {synproxy}
{locals}"#
    );
    for rs in method.rs_addrs() {
        c.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {}\nmethod = \"{}\"\n",
            method.rs_http_port(),
            method.config_name()
        ));
    }
    c
}

struct Rig {
    vsd: Vsd,
    topo: Topology,
    _prefix: DpdkPrefix,
}

impl Rig {
    fn start(method: Method, synproxy: bool, workers: &str) -> Rig {
        let lan = unique("yl");
        let srv = unique("ys");
        let prefix = DpdkPrefix::new("vsdy");
        let vsd = Vsd::start(&vsd_config(
            method,
            synproxy,
            workers,
            &lan,
            &srv,
            &prefix.name,
        ));
        let topo = Topology::build(method, &lan, Some(&srv));
        Rig {
            vsd,
            topo,
            _prefix: prefix,
        }
    }

    /// A forwarding counter (events or drops).
    fn fwd(&self, kind: &str, name: &str) -> u64 {
        self.vsd.ask("counters")["forwarding"][kind][name]
            .as_u64()
            .unwrap_or(0)
    }

    /// One GET of /id; true if a real server answered.
    fn get(&self, max_time: u32) -> bool {
        let url = format!("http://{VIP}:{HTTP_PORT}/id");
        let t = max_time.to_string();
        let out = self.topo.client_run(
            max_time + 5,
            "curl",
            &[
                "-sS",
                "--fail",
                "--max-time",
                &t,
                "-H",
                "Connection: close",
                &url,
            ],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("rs")
    }

    fn flood(&self, count: u32, rate: u32) -> Proc {
        Proc::spawn(
            Some(&self.topo.client),
            "flood",
            &self.topo.dir.path,
            python3(),
            &[
                &helper("syn_flood.py"),
                VIP,
                &HTTP_PORT.to_string(),
                "--count",
                &count.to_string(),
                "--rate",
                &rate.to_string(),
                "--seconds",
                "30",
            ],
        )
    }

    /// Connection entries vsd lists.
    fn entries(&self) -> usize {
        let out = self.vsd.vsadm(&["-Lnc"]);
        assert!(out.status.success(), "vsadm -Lnc: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("TCP"))
            .count()
    }

    fn download(&self, label: &str) {
        let dst = self.topo.dir.path.join("download.bin");
        let url = format!("http://{VIP}:{HTTP_PORT}/big.bin");
        let path = dst.display().to_string();
        let out = self.topo.client_run(
            200,
            "curl",
            &["-sS", "--fail", "--max-time", "180", "-o", &path, &url],
        );
        assert!(out.status.success(), "{label}: download: {}", text(&out));
        assert_eq!(
            sha256_of(None, &dst),
            self.topo.big_sha256,
            "{label}: the 50 MB download differs"
        );
        let _ = std::fs::remove_file(&dst);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() && self.vsd.child.is_some() {
            for args in [&["--counters"][..], &["-Ln", "--stats"][..]] {
                eprintln!(
                    "--- vsadm {} ---\n{}",
                    args.join(" "),
                    text(&self.vsd.vsadm(args))
                );
            }
        }
    }
}

/// Wait (bounded) for the flood to end; returns how many SYNs it sent.
fn flood_done(mut p: Proc) -> u64 {
    let mut status = None;
    wait_for(Duration::from_secs(40), || {
        status = p.child.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "flood: {status:?}: {}",
        p.log_text()
    );
    p.log_text().trim().parse().unwrap_or(0)
}

const ONE_WORKER: &str = "control = 0\nworkers = [1]";
/// Four workers on the two CPUs: net_tap gets a queue per worker, so the
/// packets of a connection arrive on different workers (cookie ACKs are
/// checked on one and steered to the NAT reply owner).
const FOUR_WORKERS: &str = "control = 0\nworkers = [1, 2, 3, 4]\ncpu_map = \"0@0,(1,3)@1,(2,4)@0\"";

fn synproxy_flood_test(method: Method, workers: &str, flood_count: u32, label: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites() {
        return;
    }
    let rig = Rig::start(method, true, workers);
    let listing = text(&rig.vsd.vsadm(&["-Ln"]));
    assert!(
        listing.contains(&format!("TCP  {VIP}:{HTTP_PORT} rr synproxy")),
        "{label}: {listing}"
    );
    assert!(rig.get(10), "{label}: first request");
    let flood = rig.flood(flood_count, 5000);
    // requests while the flood runs
    let mut during = 0;
    let mut tried = 0;
    let mut p = flood;
    while p.alive() && tried < 40 {
        tried += 1;
        assert!(
            rig.get(10),
            "{label}: request {tried} during the flood failed"
        );
        during += 1;
        assert!(
            rig.entries() < 64,
            "{label}: flood entries in the table:\n{}",
            text(&rig.vsd.vsadm(&["-Lnc"]))
        );
    }
    let sent = flood_done(p);
    assert!(
        sent >= u64::from(flood_count) / 2,
        "{label}: flood sent {sent}"
    );
    assert!(
        during >= 2,
        "{label}: only {during} requests overlapped the flood"
    );
    for i in 0..5 {
        assert!(rig.get(10), "{label}: request {i} after the flood failed");
    }
    let cookies = rig.fwd("events", "synproxy_syn_cookie_sent");
    assert!(
        cookies >= sent / 2,
        "{label}: {cookies} cookies for {sent} flood SYNs"
    );
    let valid = rig.fwd("events", "synproxy_ack_valid");
    assert!(valid >= during + 6, "{label}: {valid} valid cookie ACKs");
    assert!(rig.fwd("events", "synproxy_server_synack") >= during + 6);
    // curl's request follows its ACK at once: held, not lost
    assert!(
        rig.fwd("events", "synproxy_data_held") > 0,
        "{label}: nothing held"
    );
    assert_eq!(rig.fwd("drops", "table_full"), 0, "{label}: table full");
    rig.download(label);
    assert!(
        rig.fwd("events", "synproxy_seq_adjusted") > 30_000,
        "{label}: the download's packets were not shifted"
    );
    eprintln!(
        "{label}: {sent} flood SYNs, {cookies} cookies, {during} requests during the flood\n{}",
        text(&rig.vsd.vsadm(&["--counters"]))
    );
}

#[test]
fn synproxy_nat_keeps_clients_in_during_and_after_a_flood() {
    synproxy_flood_test(Method::Nat, ONE_WORKER, 20_000, "synproxy NAT");
}

#[test]
fn synproxy_nat_four_workers() {
    synproxy_flood_test(Method::Nat, FOUR_WORKERS, 10_000, "synproxy NAT 4 workers");
}

#[test]
fn synproxy_fullnat_download() {
    synproxy_flood_test(Method::FullNat, ONE_WORKER, 10_000, "synproxy FULLNAT");
}

#[test]
fn defense_knobs_clear_a_flooded_table() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites() {
        return;
    }
    let rig = Rig::start(Method::Nat, false, ONE_WORKER);
    assert!(rig.get(10), "first request");
    let sent = flood_done(rig.flood(4 * CAPACITY as u32, 4000));
    assert!(sent > CAPACITY as u64, "flood sent {sent}");
    assert!(
        rig.fwd("drops", "table_full") > 0,
        "the flood did not fill the table"
    );
    // IPVS's behaviour: locked out while the SYN_RECV entries live (60 s)
    assert!(!rig.get(2), "a client got in with a full table");
    let out = rig
        .vsd
        .vsadm(&["--set-defense", "drop_entry=1", "secure_tcp=1"]);
    assert!(out.status.success(), "--set-defense: {}", text(&out));
    let shown = text(&rig.vsd.vsadm(&["-L", "--defense"]));
    assert!(
        shown.contains("Defense (drop_entry secure_tcp pressure): 1 1 90%"),
        "{shown}"
    );
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(20) && !ok {
        ok = rig.get(2);
    }
    assert!(ok, "no client got in within 20 s of --set-defense");
    let took = t.elapsed();
    eprintln!("defense: a client got in {took:?} after --set-defense");
    assert!(rig.fwd("events", "defense_dropped_entry") > 0);
    assert!(rig.fwd("events", "defense_drop_entry_on") > 0);
    // refused settings say why
    let out = rig.vsd.vsadm(&["--set-defense", "drop_entry=7"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("must be 0..3"), "{}", text(&out));
}

/// Not part of the suite (`#[ignore]`): perf/synflood.sh runs it. Floods a
/// synproxy NAT service (and then a plain one with drop_entry and
/// secure_tcp on) from two raw-socket senders as fast as python sends
/// (bounded by VSD_FLOOD_SECONDS, default 10), while a client opens one
/// connection after another; prints the flood rate vsd saw and the share
/// of legitimate connections that succeeded within 3 s.
#[test]
#[ignore]
fn benchmark_legitimate_success_during_a_flood() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites() {
        return;
    }
    let secs: u32 = std::env::var("VSD_FLOOD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(1, 120);
    for (synproxy, label) in [(true, "synproxy"), (false, "drop_entry=1 secure_tcp=1")] {
        let rig = Rig::start(Method::Nat, synproxy, ONE_WORKER);
        if !synproxy {
            let out = rig
                .vsd
                .vsadm(&["--set-defense", "drop_entry=1", "secure_tcp=1"]);
            assert!(out.status.success(), "{}", text(&out));
        }
        assert!(rig.get(10), "{label}: first request");
        let count = (secs * 200_000).to_string();
        let s = secs.to_string();
        let flooders: Vec<Proc> = (0..2)
            .map(|i| {
                Proc::spawn(
                    Some(&rig.topo.client),
                    &format!("flood{i}"),
                    &rig.topo.dir.path,
                    python3(),
                    &[
                        &helper("syn_flood.py"),
                        VIP,
                        &HTTP_PORT.to_string(),
                        "--count",
                        &count,
                        "--rate",
                        "1000000",
                        "--seconds",
                        &s,
                    ],
                )
            })
            .collect();
        let before = rig.fwd("events", "synproxy_syn_cookie_sent");
        let full_before = rig.fwd("drops", "table_full");
        let t = Instant::now();
        let (mut ok, mut tried) = (0u32, 0u32);
        while t.elapsed() < Duration::from_secs(u64::from(secs)) {
            tried += 1;
            if rig.get(3) {
                ok += 1;
            }
        }
        let elapsed = t.elapsed().as_secs_f64();
        let sent: u64 = flooders.into_iter().map(flood_done).sum();
        let cookies = rig.fwd("events", "synproxy_syn_cookie_sent") - before;
        let full = rig.fwd("drops", "table_full") - full_before;
        println!(
            "{label}: flood {:.0} SYN/s sent for {elapsed:.1} s ({cookies} cookies, {full} table_full drops); \
             legitimate connections {ok}/{tried} = {:.1}% within 3 s",
            sent as f64 / elapsed,
            100.0 * f64::from(ok) / f64::from(tried.max(1))
        );
    }
}
