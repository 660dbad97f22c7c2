//! End to end through the control plane: vsd with two net_tap ports, a
//! client namespace on one and a server namespace (real servers with kernel
//! HTTP/UDP servers) on the other, NAT services, and vsadm / the control
//! socket while traffic runs. Needs root, /dev/net/tun, hugepages, python3,
//! nft and curl; under CI=true a missing prerequisite fails.
//!
//! Every test builds its own topology (all names unique, everything removed
//! by guards on failure) and the tests run one at a time: each vsd worker
//! busy-polls a core, and the machine may have only two.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const VIP: &str = "198.18.0.100";
const CLIENT_IP: &str = "198.18.0.2";
const GATEWAY: &str = "198.18.1.1";
const RS: [&str; 3] = ["198.18.1.11", "198.18.1.12", "198.18.1.13"];
/// Connection table entries per worker; the listing title's `size=`.
const CONN_CAPACITY: u64 = 65536;

/// One test at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The real python interpreter (python3 may be a slow-starting shim).
fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = sh("python3", &["-c", "import sys; print(sys.executable)"]);
        text(&out.stdout).trim().to_string()
    })
}

fn helper(name: &str) -> String {
    format!("{}/tests/ctl_helpers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A tool the tests need, checked like the other prerequisites.
fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !sh_any("sh", &["-c", &format!("command -v {t}")]).status.success())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("end-to-end test needs: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn prerequisites() -> bool {
    e2e_prerequisites(true) && have_tools(&["python3", "nft", "curl", "sha256sum", "ss"])
}

/// A background process, killed on drop.
struct Bg {
    child: Child,
    what: String,
}

impl Bg {
    /// Run `cmd args` in namespace `ns`, stdout and stderr to `out`.
    fn spawn_in(ns: &str, out: &Path, cmd: &str, args: &[&str]) -> Bg {
        let f = std::fs::File::create(out).expect("output file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"));
        Bg {
            child,
            what: format!("{cmd} {}", args.join(" ")),
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait at most `limit` for the end; the exit status, or panic.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut st = None;
        wait_for(limit, || {
            st = self.child.try_wait().ok().flatten();
            st.is_some()
        });
        st.unwrap_or_else(|| panic!("{} did not end within {limit:?}", self.what))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The id a real server's `/id` answers: `rs11` for 198.18.1.11.
fn rs_id(addr: &str) -> String {
    format!("rs{}", addr.rsplit('.').next().unwrap_or(""))
}

// ---------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------

/// vsd between a client namespace (on lan0) and a server namespace (on
/// srv0). Field order is drop order: helpers, vsd, namespaces, files.
struct Topo {
    bg: Vec<Bg>,
    vsd: Vsd,
    client: Netns,
    server: Netns,
    www: TempDir,
    /// The configuration without its services, `{dir}` already replaced.
    config_head: String,
}

fn config_head(lan: &str, srv: &str, prefix: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true

[lcores]
control = 0
workers = [1]

[control]
socket = "{{dir}}/vsd.sock"

[lb]
conn_capacity = {CONN_CAPACITY}

[[port]]
name = "lan0"
device = "net_tap0,iface={lan}"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24"]

[[port]]
name = "srv0"
device = "net_tap1,iface={srv}"
mac = "02:00:00:00:01:01"
addresses = ["198.18.1.1/24"]

[[vip]]
address = "{VIP}"
port = "lan0"
"#
    )
}

/// `[[service]]` TOML for a NAT service with `(address, port, weight)` servers.
fn service_toml(proto: &str, port: u16, sched: &str, servers: &[(&str, u16, u32)]) -> String {
    let mut s = format!(
        "\n[[service]]\nproto = \"{proto}\"\nvip = \"{VIP}\"\nport = {port}\nscheduler = \"{sched}\"\n"
    );
    for (a, p, w) in servers {
        s.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{a}\"\nport = {p}\nweight = {w}\nmethod = \"nat\"\n"
        ));
    }
    s
}

impl Topo {
    /// Start vsd with `services` (TOML), build both namespaces, start an
    /// HTTP server on port 8080 of every address in `RS` (each serving a
    /// directory whose `id` file names it) and, with `udp_echo`, a UDP echo
    /// server on port 9999 of each.
    fn start(services: &str, udp_echo: bool) -> Topo {
        let lan = unique("vcl");
        let srv = unique("vcs");
        let prefix = unique("vsdctl");
        let head = config_head(&lan, &srv, &prefix);
        let client = Netns::new(&unique("vcc"));
        let server = Netns::new(&unique("vcr"));
        let www = TempDir::new("vsd-ctl-www-");
        let vsd = Vsd::start(&format!("{head}{services}"));
        let config_head = head.replace("{dir}", &vsd.dir.display().to_string());
        let mut t = Topo {
            bg: Vec::new(),
            vsd,
            client,
            server,
            www,
            config_head,
        };
        for iface in [&lan, &srv] {
            assert!(
                wait_for(Duration::from_secs(15), || sh_any("ip", &["link", "show", iface])
                    .status
                    .success()),
                "tap {iface} not created:\n{}",
                t.vsd.log_text()
            );
        }
        // Client side. The namespace ends of the taps get their own MACs:
        // net_tap would otherwise give them vsd's.
        sh("ip", &["link", "set", &lan, "netns", &t.client.name]);
        t.client
            .ip(&["link", "set", &lan, "address", "02:00:00:00:aa:02"]);
        t.client
            .ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", &lan]);
        t.client.ip(&["link", "set", &lan, "up"]);
        // Server side: every real server address on one interface.
        sh("ip", &["link", "set", &srv, "netns", &t.server.name]);
        t.server
            .ip(&["link", "set", &srv, "address", "02:00:00:00:aa:11"]);
        for a in RS {
            t.server.ip(&["addr", "add", &format!("{a}/24"), "dev", &srv]);
        }
        t.server.ip(&["link", "set", &srv, "up"]);
        t.server
            .ip(&["route", "add", "default", "via", GATEWAY, "dev", &srv]);

        for a in RS {
            let dir = t.www.path(&rs_id(a));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("id"), format!("{}\n", rs_id(a))).unwrap();
            let log = t.www.path(&format!("{}.http.log", rs_id(a)));
            let ns = t.server.name.clone();
            let dir_s = dir.display().to_string();
            t.bg.push(Bg::spawn_in(
                &ns,
                &log,
                python(),
                &[
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    a,
                    "--directory",
                    &dir_s,
                ],
            ));
            if udp_echo {
                let log = t.www.path(&format!("{}.udp.log", rs_id(a)));
                t.bg.push(Bg::spawn_in(
                    &ns,
                    &log,
                    python(),
                    &[&helper("udp_echo.py"), a, "9999"],
                ));
            }
        }
        let ready = wait_for(Duration::from_secs(30), || {
            let tcp = text(&t.server.run_any("ss", &["-ltnH"]).stdout);
            let udp = text(&t.server.run_any("ss", &["-lunH"]).stdout);
            RS.iter().all(|a| {
                tcp.contains(&format!("{a}:8080"))
                    && (!udp_echo || udp.contains(&format!("{a}:9999")))
            })
        });
        assert!(ready, "real servers did not start listening");
        t
    }

    /// vsadm that must succeed; its standard output.
    fn vsadm(&self, args: &[&str]) -> String {
        let out = self.vsd.vsadm(args);
        assert!(
            out.status.success(),
            "vsadm {} failed ({:?}): {}{}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Start the HTTP client loop in the client namespace.
    fn http_loop(
        &self,
        port: u16,
        count: u32,
        interval_s: f64,
        timeout_s: f64,
        stop: &Path,
        out: &Path,
    ) -> Bg {
        Bg::spawn_in(
            &self.client.name,
            out,
            python(),
            &[
                &helper("http_loop.py"),
                VIP,
                &port.to_string(),
                "/id",
                &count.to_string(),
                &interval_s.to_string(),
                &timeout_s.to_string(),
                &stop.display().to_string(),
            ],
        )
    }

    /// Rewrite vsd's configuration file with these services.
    fn write_config(&self, services: &str) -> PathBuf {
        let path = self.vsd.dir.join("vsd.toml");
        std::fs::write(&path, format!("{}{services}", self.config_head)).unwrap();
        path
    }
}

// ---------------------------------------------------------------------------------------
// Parsing what vsadm and the helpers print
// ---------------------------------------------------------------------------------------

/// One attempt of `http_loop.py`.
#[derive(Debug, Clone)]
struct Attempt {
    start_ms: u64,
    ok: bool,
    /// The body's first line, or the failure reason.
    what: String,
}

fn attempts(path: &Path) -> Vec<Attempt> {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    t.lines()
        .filter_map(|l| {
            let mut it = l.splitn(4, ' ');
            let _seq: u64 = it.next()?.parse().ok()?;
            let start_ms: u64 = it.next()?.parse().ok()?;
            let ok = match it.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            Some(Attempt {
                start_ms,
                ok,
                what: it.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Milliseconds on CLOCK_MONOTONIC, the clock python's time.monotonic() reads.
fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A row of a `--stats` or `--rate` listing: the name and five numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    nums: [u64; 5],
}

/// A service of a `--stats` / `--rate` listing with its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SvcRows {
    service: Row,
    servers: Vec<Row>,
}

fn five(words: &[&str]) -> Option<[u64; 5]> {
    if words.len() != 5 {
        return None;
    }
    let mut n = [0u64; 5];
    for (d, w) in n.iter_mut().zip(words) {
        *d = w.parse().ok()?;
    }
    Some(n)
}

/// Parse `-Ln --stats --exact` or `-Ln --rate --exact`.
fn parse_numbers(listing: &str) -> Vec<SvcRows> {
    let mut out: Vec<SvcRows> = Vec::new();
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("  -> ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.first() == Some(&"RemoteAddress:Port") {
                continue;
            }
            let nums = five(&w[1..]).unwrap_or_else(|| panic!("bad row {line:?}"));
            out.last_mut()
                .unwrap_or_else(|| panic!("server row before a service: {line:?}"))
                .servers
                .push(Row {
                    name: w[0].to_string(),
                    nums,
                });
        } else if matches!(w.first(), Some(&"TCP") | Some(&"UDP")) {
            let nums = five(&w[2..]).unwrap_or_else(|| panic!("bad row {line:?}"));
            out.push(SvcRows {
                service: Row {
                    name: format!("{} {}", w[0], w[1]),
                    nums,
                },
                servers: Vec::new(),
            });
        }
    }
    out
}

fn find_svc<'a>(rows: &'a [SvcRows], name: &str) -> &'a SvcRows {
    rows.iter()
        .find(|s| s.service.name == name)
        .unwrap_or_else(|| panic!("no service {name} in {rows:?}"))
}

/// A `-Ln` server row in ipvsadm's layout, with the connection counts it shows.
fn server_line(addr_port: &str, fwd: &str, weight: u32, active: u64, inactive: u64) -> String {
    format!("  -> {addr_port:<28} {fwd:<7} {weight:<6} {active:<10} {inactive:<10}")
}

/// Check a plain `-Ln` listing line by line: `expected_servers` are
/// `(ADDR:PORT, weight)` rows (Masq) under `service_line`. The connection
/// counts are read back from the rows themselves (they change as traffic
/// runs) and the row must then be exactly ipvsadm's layout.
fn check_plain_listing(listing: &str, services: &[(&str, Vec<(String, u32)>)]) {
    let lines: Vec<&str> = listing.lines().collect();
    let mut want = vec![
        format!("IP Virtual Server version 1.2.1 (size={CONN_CAPACITY})"),
        "Prot LocalAddress:Port Scheduler Flags".to_string(),
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn".to_string(),
    ];
    for (svc, servers) in services {
        want.push(svc.to_string());
        for (ap, w) in servers {
            let i = want.len();
            let got = lines.get(i).copied().unwrap_or("");
            let nums: Vec<u64> = got
                .split_whitespace()
                .skip(4)
                .filter_map(|x| x.parse().ok())
                .collect();
            let (a, n) = match nums.as_slice() {
                [a, n] => (*a, *n),
                _ => (u64::MAX, u64::MAX),
            };
            want.push(server_line(ap, "Masq", *w, a, n));
        }
    }
    let want_text = want.join("\n") + "\n";
    assert_eq!(listing, want_text, "-Ln listing");
}

/// Counters of the nft rules in the client namespace: (packets, bytes).
fn nft_counter(ns: &Netns, table: &str, chain: &str) -> (u64, u64) {
    let out = text(&ns.run("nft", &["list", "chain", "inet", table, chain]).stdout);
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "counter")
        .unwrap_or_else(|| panic!("no counter in {out}"));
    assert_eq!(words.get(at + 1), Some(&"packets"), "{out}");
    assert_eq!(words.get(at + 3), Some(&"bytes"), "{out}");
    (
        words[at + 2].parse().unwrap(),
        words[at + 4].parse().unwrap(),
    )
}

/// The samples of a Prometheus text exposition, by `name{labels}`.
fn prometheus_samples(t: &str) -> BTreeMap<String, u64> {
    t.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1, 2, 6: services added live; exact statistics; Prometheus
// ---------------------------------------------------------------------------------------

#[test]
fn live_services_exact_stats_and_prometheus() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let mut topo = Topo::start("", false);
    let files = TempDir::new("vsd-ctl-t1-");

    // No services yet.
    check_plain_listing(&topo.vsadm(&["-Ln"]), &[]);
    assert_eq!(topo.vsadm(&["-S", "-n"]), "");

    // --- 1. Services added while traffic runs. -------------------------------------
    let stop = files.path("stop");
    let log = files.path("loop.txt");
    let mut client = topo.http_loop(80, 600, 0.05, 1.0, &stop, &log);
    // The loop runs and fails: there is no service yet.
    assert!(
        wait_for(Duration::from_secs(20), || attempts(&log).len() >= 3),
        "the client loop did not start: {:?}",
        std::fs::read_to_string(&log)
    );
    assert!(
        attempts(&log).iter().all(|a| !a.ok),
        "a request succeeded before the service existed: {:?}",
        attempts(&log)
    );
    for args in [
        &["-A", "-t", "198.18.0.100:80", "-s", "wrr"][..],
        &["-a", "-t", "198.18.0.100:80", "-r", "198.18.1.11:8080", "-m", "-w", "1"],
        &["-a", "-t", "198.18.0.100:80", "-r", "198.18.1.12:8080", "-m", "-w", "2"],
    ] {
        assert_eq!(topo.vsadm(args), "", "vsadm {args:?} printed something");
    }
    let configured_ms = monotonic_ms();
    // Requests succeed from now on: wait for 30 that started after the last change.
    assert!(
        wait_for(Duration::from_secs(30), || {
            attempts(&log)
                .iter()
                .filter(|a| a.start_ms > configured_ms + 100)
                .count()
                >= 30
        }),
        "the loop made no progress: {:?}",
        attempts(&log)
    );
    std::fs::write(&stop, "").unwrap();
    client.wait(Duration::from_secs(10));
    let all = attempts(&log);
    let first_ok = all
        .iter()
        .position(|a| a.ok)
        .unwrap_or_else(|| panic!("no request ever succeeded: {all:?}"));
    let after = &all[first_ok..];
    let failed: Vec<&Attempt> = after.iter().filter(|a| !a.ok).collect();
    assert!(
        failed.is_empty(),
        "requests failed after the service started working: {failed:?}"
    );
    assert!(
        after.iter().all(|a| a.what == "rs11" || a.what == "rs12"),
        "answers from unexpected servers: {after:?}"
    );
    // wrr 1:2 — in any run of consecutive requests one third (± 1) go to rs11.
    let settled: Vec<&Attempt> = all
        .iter()
        .filter(|a| a.start_ms > configured_ms + 100)
        .collect();
    let n11 = settled.iter().filter(|a| a.what == "rs11").count() as i64;
    let n = settled.len() as i64;
    assert!(
        (3 * n11 - n).abs() <= 3,
        "wrr with weights 1 and 2 sent {n11} of {n} requests to the weight-1 server"
    );
    check_plain_listing(
        &topo.vsadm(&["-Ln"]),
        &[(
            "TCP  198.18.0.100:80 wrr",
            vec![("198.18.1.11:8080".into(), 1), ("198.18.1.12:8080".into(), 2)],
        )],
    );
    assert_eq!(
        topo.vsadm(&["-S", "-n"]),
        "-A -t 198.18.0.100:80 -s wrr\n\
         -a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1\n\
         -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2\n"
    );
    let oks = after.len() as u64;
    let stats = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact"]));
    let s80 = find_svc(&stats, "TCP 198.18.0.100:80");
    assert!(
        s80.service.nums[0] >= oks,
        "Conns {} < {oks} successful requests",
        s80.service.nums[0]
    );

    // --- 2. Exactly 100 connections, counted on the client side by nft. -------------
    for args in [
        &["-A", "-t", "198.18.0.100:81", "-s", "rr"][..],
        &["-a", "-t", "198.18.0.100:81", "-r", "198.18.1.11:8080", "-m"],
        &["-a", "-t", "198.18.0.100:81", "-r", "198.18.1.12:8080", "-m"],
    ] {
        topo.vsadm(args);
    }
    let nft_rules = files.path("count.nft");
    std::fs::write(
        &nft_rules,
        format!(
            "table inet vsdctl {{\n\
             \tchain out {{ type filter hook output priority 0; policy accept; ip daddr {VIP} tcp dport 81 counter; }}\n\
             \tchain in {{ type filter hook input priority 0; policy accept; ip saddr {VIP} tcp sport 81 counter; }}\n\
             }}\n"
        ),
    )
    .unwrap();
    topo.client
        .run("nft", &["-f", &nft_rules.display().to_string()]);
    let log100 = files.path("loop100.txt");
    let mut hundred = topo.http_loop(81, 100, 0.0, 5.0, &files.path("nostop"), &log100);
    let st = hundred.wait(Duration::from_secs(120));
    assert!(st.success(), "client loop: {st:?}");
    let got = attempts(&log100);
    assert_eq!(got.len(), 100, "{got:?}");
    let bad: Vec<&Attempt> = got.iter().filter(|a| !a.ok).collect();
    assert!(bad.is_empty(), "failed requests: {bad:?}");
    let by_body = |id: &str| got.iter().filter(|a| a.what == id).count() as u64;
    assert_eq!(
        (by_body("rs11"), by_body("rs12")),
        (50, 50),
        "rr over two servers"
    );
    // Let the last packets (final ACKs) pass, then read both sides until stable.
    let read_both = || {
        let rows = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact"]));
        let out = nft_counter(&topo.client, "vsdctl", "out");
        let inn = nft_counter(&topo.client, "vsdctl", "in");
        (rows, out, inn)
    };
    let mut last = read_both();
    let stable = wait_for(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = read_both();
        let same = now == last;
        last = now;
        same
    });
    assert!(stable, "counters kept changing: {last:?}");
    let (rows, (out_pkts, out_bytes), (in_pkts, in_bytes)) = last;
    let s81 = find_svc(&rows, "TCP 198.18.0.100:81");
    eprintln!(
        "client counted: to VIP {out_pkts} packets {out_bytes} bytes, from VIP {in_pkts} packets {in_bytes} bytes; vsd: {:?}",
        s81
    );
    assert_eq!(
        s81.service.nums,
        [100, out_pkts, in_pkts, out_bytes, in_bytes],
        "service counters [Conns InPkts OutPkts InBytes OutBytes] vs what the client sent and received"
    );
    let names: Vec<&str> = s81.servers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["198.18.1.11:8080", "198.18.1.12:8080"]);
    let mut sum = [0u64; 5];
    for r in &s81.servers {
        assert_eq!(r.nums[0], 50, "{r:?}: rr gives each server 50 connections");
        for (s, v) in sum.iter_mut().zip(r.nums) {
            *s += v;
        }
    }
    assert_eq!(sum, s81.service.nums, "servers do not add up to the service");
    // The listing without --exact agrees (numbers this small are not shortened).
    let plain = parse_numbers(&topo.vsadm(&["-Ln", "--stats"]));
    assert_eq!(find_svc(&plain, "TCP 198.18.0.100:81"), s81);
    // One service alone.
    let one = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact", "-t", "198.18.0.100:81"]));
    assert_eq!(one.len(), 1);
    assert_eq!(&one[0], s81);

    // --- 6. Prometheus: the same counters. ------------------------------------------
    let prom = topo.vsadm(&["--prometheus"]);
    let samples = prometheus_samples(&prom);
    for (fam, kind) in [
        ("vsd_service_connections_total", "counter"),
        ("vsd_service_packets_total", "counter"),
        ("vsd_service_bytes_total", "counter"),
        ("vsd_server_connections_total", "counter"),
        ("vsd_server_packets_total", "counter"),
        ("vsd_server_bytes_total", "counter"),
        ("vsd_server_weight", "gauge"),
        ("vsd_service_pps", "gauge"),
    ] {
        assert!(
            prom.contains(&format!("\n# TYPE {fam} {kind}\n")),
            "no TYPE line for {fam}:\n{prom}"
        );
    }
    let get = |k: String| -> u64 {
        *samples
            .get(&k)
            .unwrap_or_else(|| panic!("no sample {k} in:\n{prom}"))
    };
    let svc = "service=\"TCP 198.18.0.100:81\"";
    let [conns, inp, outp, inb, outb] = s81.service.nums;
    assert_eq!(get(format!("vsd_service_connections_total{{{svc}}}")), conns);
    assert_eq!(
        get(format!("vsd_service_packets_total{{{svc},direction=\"in\"}}")),
        inp
    );
    assert_eq!(
        get(format!("vsd_service_packets_total{{{svc},direction=\"out\"}}")),
        outp
    );
    assert_eq!(
        get(format!("vsd_service_bytes_total{{{svc},direction=\"in\"}}")),
        inb
    );
    assert_eq!(
        get(format!("vsd_service_bytes_total{{{svc},direction=\"out\"}}")),
        outb
    );
    for r in &s81.servers {
        let l = format!("{svc},server=\"{}\"", r.name);
        let [c, ip, op, ib, ob] = r.nums;
        assert_eq!(get(format!("vsd_server_connections_total{{{l}}}")), c);
        assert_eq!(
            get(format!("vsd_server_packets_total{{{l},direction=\"in\"}}")),
            ip
        );
        assert_eq!(
            get(format!("vsd_server_packets_total{{{l},direction=\"out\"}}")),
            op
        );
        assert_eq!(
            get(format!("vsd_server_bytes_total{{{l},direction=\"in\"}}")),
            ib
        );
        assert_eq!(
            get(format!("vsd_server_bytes_total{{{l},direction=\"out\"}}")),
            ob
        );
        assert_eq!(get(format!("vsd_server_weight{{{l}}}")), 1);
    }
    // Port 80's counters are there too, and agree with its listing.
    let rows80 = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact"]));
    let s80 = find_svc(&rows80, "TCP 198.18.0.100:80");
    let svc80 = "service=\"TCP 198.18.0.100:80\"";
    assert_eq!(
        get(format!("vsd_service_connections_total{{{svc80}}}")),
        s80.service.nums[0]
    );
    assert_eq!(
        get(format!(
            "vsd_server_weight{{{svc80},server=\"198.18.1.12:8080\"}}"
        )),
        2
    );

    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}
