//! End to end through the control plane: vsd with two net_tap ports, a
//! client namespace on one and a server namespace (real servers with kernel
//! HTTP/UDP servers) on the other, NAT services, and vsadm / the control
//! socket while traffic runs. Needs root, /dev/net/tun, hugepages, python3,
//! nft and curl; under CI=true a missing prerequisite fails.
//!
//! Every test builds its own topology (all names unique, everything removed
//! by guards on failure) and the tests run one at a time: each vsd worker
//! busy-polls a core, and the machine may have only two.
//!
//! - services added by vsadm under traffic; `-Ln --stats --exact` equal to
//!   nft's counts of 100 connections; `--prometheus` equal to the listing;
//! - `--rate` against a steady UDP rate;
//! - a download across `-d`, `--reload` and SIGHUP, its server quiesced;
//! - hostile control-socket clients (garbage, a 10 MB line, silent and
//!   half-sent ones) while traffic runs.
//!
//! - regressions for control-socket bugs found here (a client streaming
//!   requests stalled the control plane; 64 silent connections locked vsadm
//!   out);
//! - `-Lnc` 50 times and SIGTERM under sustained traffic (issue 12 item 0:
//!   net_tap's per-packet signals used to land on the control thread);
//! - a regression for a forwarding bug found here: a client port reused
//!   toward another service on the same real server could not connect
//!   while the first connection lingered in TIME_WAIT.

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
/// Ports of the real servers' HTTP servers.
const HTTP_PORTS: [u16; 2] = [8080, 8081];
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
        .filter(|t| {
            !sh_any("sh", &["-c", &format!("command -v {t}")])
                .status
                .success()
        })
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
    /// SIGTERM first (`timeout` passes it on to its command), SIGKILL if
    /// that is not enough within 2 s.
    fn drop(&mut self) {
        if self.running() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let child = &mut self.child;
            wait_for(Duration::from_secs(2), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
        }
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
    _runtime: common::topo::DpdkPrefix,
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
    /// HTTP server on ports 8080 and 8081 of every address in `RS` (each serving a
    /// directory whose `id` file names it) and, with `udp_echo`, a UDP echo
    /// server on port 9999 of each.
    fn start(services: &str, udp_echo: bool) -> Topo {
        let lan = unique("vcl");
        let srv = unique("vcs");
        let dpdk = common::topo::DpdkPrefix::new("vsdctl");
        let prefix = dpdk.name.clone();
        let head = config_head(&lan, &srv, &prefix);
        let client = Netns::new(&unique("vcc"));
        let server = Netns::new(&unique("vcr"));
        let www = TempDir::new("vsd-ctl-www-");
        let runtime = dpdk;
        let vsd = Vsd::start(&format!("{head}{services}"));
        let config_head = head.replace("{dir}", &vsd.dir.display().to_string());
        let mut t = Topo {
            bg: Vec::new(),
            vsd,
            client,
            server,
            www,
            _runtime: runtime,
            config_head,
        };
        for iface in [&lan, &srv] {
            assert!(
                wait_for(Duration::from_secs(15), || sh_any(
                    "ip",
                    &["link", "show", iface]
                )
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
            t.server
                .ip(&["addr", "add", &format!("{a}/24"), "dev", &srv]);
        }
        t.server.ip(&["link", "set", &srv, "up"]);
        t.server
            .ip(&["route", "add", "default", "via", GATEWAY, "dev", &srv]);

        for a in RS {
            let dir = t.www.path(&rs_id(a));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("id"), format!("{}\n", rs_id(a))).unwrap();
            let ns = t.server.name.clone();
            let dir_s = dir.display().to_string();
            for port in HTTP_PORTS {
                let log = t.www.path(&format!("{}.{port}.http.log", rs_id(a)));
                t.bg.push(Bg::spawn_in(
                    &ns,
                    &log,
                    python(),
                    &[
                        "-m",
                        "http.server",
                        &port.to_string(),
                        "--bind",
                        a,
                        "--directory",
                        &dir_s,
                    ],
                ));
            }
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
                HTTP_PORTS.iter().all(|p| tcp.contains(&format!("{a}:{p}")))
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
    let out = text(
        &ns.run("nft", &["list", "chain", "inet", table, chain])
            .stdout,
    );
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
        &[
            "-a",
            "-t",
            "198.18.0.100:80",
            "-r",
            "198.18.1.11:8080",
            "-m",
            "-w",
            "1",
        ],
        &[
            "-a",
            "-t",
            "198.18.0.100:80",
            "-r",
            "198.18.1.12:8080",
            "-m",
            "-w",
            "2",
        ],
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
            vec![
                ("198.18.1.11:8080".into(), 1),
                ("198.18.1.12:8080".into(), 2),
            ],
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
    // Real port 8081: with 8080, a client port that an earlier connection to
    // port 80 used would meet that connection's NAT reply tuple, and vsd drops
    // such a SYN (see client_port_reused_for_another_service_connects).
    for args in [
        &["-A", "-t", "198.18.0.100:81", "-s", "rr"][..],
        &[
            "-a",
            "-t",
            "198.18.0.100:81",
            "-r",
            "198.18.1.11:8081",
            "-m",
        ],
        &[
            "-a",
            "-t",
            "198.18.0.100:81",
            "-r",
            "198.18.1.12:8081",
            "-m",
        ],
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
    if s81.service.nums != [100, out_pkts, in_pkts, out_bytes, in_bytes] {
        // Where did the difference go? Slow attempts, drops on either side.
        let slow: Vec<(u64, u64)> = got
            .windows(2)
            .map(|w| (w[0].start_ms, w[1].start_ms - w[0].start_ms))
            .filter(|(_, d)| *d > 500)
            .collect();
        eprintln!(
            "slow attempts (start ms, ms to the next): {slow:?}\nvsd:\n{}\nclient:\n{}{}",
            topo.vsadm(&["--counters"]),
            text(&topo.client.run_any("ip", &["-s", "link"]).stdout),
            text(
                &topo
                    .client
                    .run_any(
                        "nstat",
                        &[
                            "-az",
                            "TcpExtTCPSynRetrans",
                            "TcpRetransSegs",
                            "TcpExtTCPTimeouts"
                        ]
                    )
                    .stdout
            ),
        );
    }
    assert_eq!(
        s81.service.nums,
        [100, out_pkts, in_pkts, out_bytes, in_bytes],
        "service counters [Conns InPkts OutPkts InBytes OutBytes] vs what the client sent and received"
    );
    let names: Vec<&str> = s81.servers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["198.18.1.11:8081", "198.18.1.12:8081"]);
    let mut sum = [0u64; 5];
    for r in &s81.servers {
        assert_eq!(r.nums[0], 50, "{r:?}: rr gives each server 50 connections");
        for (s, v) in sum.iter_mut().zip(r.nums) {
            *s += v;
        }
    }
    assert_eq!(
        sum, s81.service.nums,
        "servers do not add up to the service"
    );
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
    assert_eq!(
        get(format!("vsd_service_connections_total{{{svc}}}")),
        conns
    );
    assert_eq!(
        get(format!(
            "vsd_service_packets_total{{{svc},direction=\"in\"}}"
        )),
        inp
    );
    assert_eq!(
        get(format!(
            "vsd_service_packets_total{{{svc},direction=\"out\"}}"
        )),
        outp
    );
    assert_eq!(
        get(format!("vsd_service_bytes_total{{{svc},direction=\"in\"}}")),
        inb
    );
    assert_eq!(
        get(format!(
            "vsd_service_bytes_total{{{svc},direction=\"out\"}}"
        )),
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

// ---------------------------------------------------------------------------------------
// 3: rates follow a steady generated rate
// ---------------------------------------------------------------------------------------

/// `(monotonic_ms, datagrams really sent so far)` lines of `udp_sender.py`.
fn sender_progress(path: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match w.as_slice() {
                [ms, attempted, errors] => Some((*ms, attempted - errors)),
                _ => None,
            }
        })
        .collect()
}

/// Packets per second really sent over the last `window_ms` of the log.
fn sent_rate(progress: &[(u64, u64)], window_ms: u64) -> f64 {
    let (t1, n1) = *progress.last().expect("sender progress");
    let (t0, n0) = *progress
        .iter()
        .rev()
        .find(|(t, _)| t1 - t >= window_ms)
        .unwrap_or_else(|| panic!("sender log shorter than {window_ms} ms: {progress:?}"));
    (n1 - n0) as f64 * 1000.0 / (t1 - t0) as f64
}

fn within(got: u64, want: f64, frac: f64) -> bool {
    (got as f64 - want).abs() <= want * frac
}

#[test]
fn rate_estimates_follow_a_steady_udp_rate() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    const PPS: u32 = 2000;
    /// IPv4 packet size of every datagram (IPVS counts L3 bytes).
    const PKT: u64 = 100;
    let services = service_toml("udp", 5353, "rr", &[(RS[0], 9999, 1), (RS[1], 9999, 1)]);
    let mut topo = Topo::start(&services, true);
    let files = TempDir::new("vsd-ctl-t3-");
    let log = files.path("sender.txt");
    let started = Instant::now();
    let mut sender = Bg::spawn_in(
        &topo.client.name,
        &log,
        python(),
        &[
            &helper("udp_sender.py"),
            VIP,
            "5353",
            &PPS.to_string(),
            &PKT.to_string(),
            "32",
        ],
    );
    // The estimator samples every 2 s and moves a quarter of the way to the
    // new rate each time: after n samples of a steady rate it shows
    // 1 - (3/4)^n of it, so 24 s (11 or more samples) gives > 95 %.
    let mut readings = Vec::new();
    for at_s in [24u64, 28] {
        while started.elapsed() < Duration::from_secs(at_s) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(sender.running(), "the sender ended early");
        let listing = topo.vsadm(&["-Ln", "--rate", "--exact"]);
        let progress = sender_progress(&log);
        let real = sent_rate(&progress, 10_000);
        readings.push((listing, real));
    }
    let st = sender.wait(Duration::from_secs(30));
    assert!(st.success(), "sender: {st:?}");
    for (listing, real) in &readings {
        eprintln!("sent {real:.1} pps; vsd:\n{listing}");
        assert!(
            within(*real as u64, PPS as f64, 0.10),
            "the sender could not keep {PPS} pps ({real:.1})"
        );
        assert!(
            listing.contains(
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
            ),
            "{listing}"
        );
        let rows = parse_numbers(listing);
        let svc = find_svc(&rows, "UDP 198.18.0.100:5353");
        let [cps, inpps, outpps, inbps, outbps] = svc.service.nums;
        // One client socket: one connection, made 24 s ago.
        assert_eq!(cps, 0, "{listing}");
        assert!(
            within(inpps, *real, 0.10),
            "InPPS {inpps} vs {real:.1} sent per second"
        );
        // The servers echo every datagram.
        assert!(
            within(outpps, *real, 0.10),
            "OutPPS {outpps} vs {real:.1} sent per second"
        );
        // Bytes are L3: every packet is PKT bytes long.
        for (bps, pps, what) in [(inbps, inpps, "In"), (outbps, outpps, "Out")] {
            assert!(
                within(bps, *real * PKT as f64, 0.10),
                "{what}BPS {bps} vs {real:.1} packets of {PKT} bytes per second"
            );
            assert!(
                within(bps, (pps * PKT) as f64, 0.01),
                "{what}BPS {bps} vs {what}PPS {pps} x {PKT} bytes"
            );
        }
        // The one connection's server carries it all; the other nothing.
        let mut busy: Vec<&Row> = svc.servers.iter().filter(|r| r.nums[1] > 0).collect();
        assert_eq!(busy.len(), 1, "{listing}");
        let b = busy.pop().unwrap();
        assert!(
            within(b.nums[1], inpps as f64, 0.01) && within(b.nums[2], outpps as f64, 0.01),
            "server rates {b:?} vs service {:?}",
            svc.service
        );
        assert!(
            svc.servers
                .iter()
                .filter(|r| r.name != b.name)
                .all(|r| r.nums == [0; 5]),
            "{listing}"
        );
    }
    // The exact counters: one connection, every packet PKT bytes.
    let stats = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact"]));
    let s = find_svc(&stats, "UDP 198.18.0.100:5353");
    let sent = sender_progress(&log).last().unwrap().1;
    assert_eq!(s.service.nums[0], 1, "{s:?}");
    assert_eq!(s.service.nums[3], s.service.nums[1] * PKT, "{s:?}");
    assert_eq!(s.service.nums[4], s.service.nums[2] * PKT, "{s:?}");
    assert!(
        s.service.nums[1] <= sent && s.service.nums[1] as f64 >= sent as f64 * 0.99,
        "InPkts {} vs {sent} datagrams sent",
        s.service.nums[1]
    );
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

// ---------------------------------------------------------------------------------------
// 4: removals and reloads during a long download
// ---------------------------------------------------------------------------------------

fn sha256_of(path: &Path) -> String {
    let out = sh("timeout", &["60", "sha256sum", &path.display().to_string()]);
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The client's connections to VIP:80 in `-Lnc`: (state, client, real server).
fn client_conns(lnc: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    lnc.lines().filter_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["TCP", _, state, client, "198.18.0.100:80", dest]
                if client.starts_with("198.18.0.2:") =>
            {
                Some((*state, *client, *dest))
            }
            _ => None,
        }
    })
}

/// The client's ESTABLISHED connection to VIP:80: (client, real server).
fn serving_server(lnc: &str) -> Option<(String, String)> {
    client_conns(lnc)
        .find(|(state, _, _)| *state == "ESTABLISHED")
        .map(|(_, c, d)| (c.to_string(), d.to_string()))
}

/// The real server of connection `client` -> VIP:80, in any state: the
/// HTTP server closes its end once the whole file is in the socket buffers,
/// seconds before a rate-limited client has read it, and the connection
/// goes on draining in FIN_WAIT.
fn server_of(lnc: &str, client: &str) -> Option<String> {
    client_conns(lnc)
        .find(|(_, c, _)| *c == client)
        .map(|(_, _, d)| d.to_string())
}

#[test]
fn download_survives_server_removals_and_reloads() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    // About 24 s at 4 MB/s. curl writes its file in bursts of ~10 MB
    // (every ~2.5 s), so each of the three `progress` checks below can take
    // that long; the download must outlast them all with room to spare.
    const SIZE: u64 = 96 << 20;
    let all: Vec<(&str, u16, u32)> = RS.iter().map(|a| (*a, 8080, 1)).collect();
    let mut topo = Topo::start(&service_toml("tcp", 80, "rr", &all), false);
    let files = TempDir::new("vsd-ctl-t4-");
    let big = files.path("big");
    sh(
        "sh",
        &[
            "-c",
            &format!("head -c {SIZE} /dev/urandom > {}", big.display()),
        ],
    );
    let want_sha = sha256_of(&big);
    for a in RS {
        std::fs::hard_link(&big, topo.www.path(&rs_id(a)).join("big")).unwrap();
    }
    let got = files.path("got");
    // Rate-limited so that it lasts while the configuration changes.
    let mut curl = Bg::spawn_in(
        &topo.client.name,
        &files.path("curl.txt"),
        "timeout",
        &[
            "120",
            "curl",
            "-sS",
            "--max-time",
            "110",
            "--limit-rate",
            "4M",
            "-o",
            &got.display().to_string(),
            &format!("http://{VIP}/big"),
        ],
    );
    let mut serving = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            serving = serving_server(&topo.vsadm(&["-Lnc"]));
            serving.is_some() && file_len(&got) > 1 << 20
        }),
        "the download did not start: {:?} {}",
        serving,
        std::fs::read_to_string(files.path("curl.txt")).unwrap_or_default()
    );
    let (client, serving) = serving.unwrap();
    let s_addr = serving.trim_end_matches(":8080");
    let others: Vec<&str> = RS.iter().copied().filter(|a| *a != s_addr).collect();
    assert_eq!(others.len(), 2, "serving {serving} is not one of {RS:?}");
    let (other_a, other_b) = (others[0], others[1]);
    eprintln!("download from {client} served by {serving}; removing {other_a}, keeping {other_b}");
    let progress = |what: &str, before: u64| {
        let ok = wait_for(Duration::from_secs(10), || file_len(&got) > before);
        assert!(ok, "the download stalled after {what}");
    };

    // vsadm -d the other server.
    let len0 = file_len(&got);
    topo.vsadm(&[
        "-d",
        "-t",
        "198.18.0.100:80",
        "-r",
        &format!("{other_a}:8080"),
    ]);
    progress("vsadm -d of another server", len0);
    // every change is logged with who asked (the socket's peer credentials)
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let want = format!("vsadm -d -t 198.18.0.100:80 -r {other_a}:8080 (by uid {uid} pid ");
    let log = topo.vsd.log_text();
    assert!(
        log.contains(&want) && log.contains("): done"),
        "{want:?} not logged:\n{log}"
    );

    // vsadm --reload: the serving server is quiesced (weight 0: its
    // connection drains, as in IPVS; a removed server's connections would
    // have their requests dropped), the remaining one gets weight 3.
    let kept = |w_serving: u32, w_other: u32| {
        let mut v = vec![(s_addr, 8080, w_serving), (other_b, 8080, w_other)];
        v.sort();
        v
    };
    let listed = |w_serving: u32, w_other: u32| -> Vec<(String, u32)> {
        kept(w_serving, w_other)
            .into_iter()
            .map(|(a, p, w)| (format!("{a}:{p}"), w))
            .collect()
    };
    let path = topo.write_config(&service_toml("tcp", 80, "rr", &kept(0, 3)));
    let len1 = file_len(&got);
    assert_eq!(
        topo.vsadm(&["--reload"]),
        format!(
            "reloaded {}: services: 0 added, 0 edited, 0 removed; servers: 0 added, 2 edited, 0 removed; local addresses changed in 0 service(s)\n",
            path.display()
        )
    );
    progress("--reload quiescing the serving server", len1);
    check_plain_listing(
        &topo.vsadm(&["-Ln"]),
        &[("TCP  198.18.0.100:80 rr", listed(0, 3))],
    );
    let lnc = topo.vsadm(&["-Lnc"]);
    assert_eq!(
        server_of(&lnc, &client).as_deref(),
        Some(serving.as_str()),
        "the draining connection from {client} is not listed any more (after {} bytes):\n{lnc}",
        file_len(&got)
    );

    // SIGHUP with another weight.
    topo.write_config(&service_toml("tcp", 80, "rr", &kept(0, 2)));
    let len2 = file_len(&got);
    let pid = topo.vsd.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        wait_for(Duration::from_secs(10), || {
            topo
            .vsd
            .log_text()
            .contains(&format!(
                "vsd: reloaded {}: services: 0 added, 0 edited, 0 removed; servers: 0 added, 1 edited, 0 removed;",
                path.display()
            ))
        }),
        "no reload after SIGHUP:\n{}",
        topo.vsd.log_text()
    );
    // who sent the signal is logged (the kernel's siginfo)
    let sender = format!(
        "SIGHUP from pid {} uid {uid}: reloading",
        std::process::id()
    );
    assert!(
        topo.vsd.log_text().contains(&sender),
        "{sender:?} not logged"
    );
    progress("SIGHUP reload", len2);
    assert!(
        curl.running(),
        "the download ended before the last change; it must outlast them (size {})",
        file_len(&got)
    );

    let st = curl.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "curl: {st:?} {}",
        std::fs::read_to_string(files.path("curl.txt")).unwrap_or_default()
    );
    assert_eq!(file_len(&got), SIZE);
    assert_eq!(sha256_of(&got), want_sha, "downloaded file differs");

    // Final state; new connections go only to the remaining server.
    check_plain_listing(
        &topo.vsadm(&["-Ln"]),
        &[("TCP  198.18.0.100:80 rr", listed(0, 2))],
    );
    let saved = topo.vsadm(&["-S", "-n"]);
    for line in [
        "-A -t 198.18.0.100:80 -s rr".to_string(),
        format!("-a -t 198.18.0.100:80 -r {other_b}:8080 -m -w 2"),
        format!("-a -t 198.18.0.100:80 -r {s_addr}:8080 -m -w 0"),
    ] {
        assert!(
            saved.lines().any(|l| l == line),
            "{line:?} not in -S:\n{saved}"
        );
    }
    assert_eq!(saved.lines().count(), 3, "-S:\n{saved}");
    let log = files.path("after.txt");
    let mut after = topo.http_loop(80, 10, 0.0, 5.0, &files.path("nostop"), &log);
    after.wait(Duration::from_secs(60));
    let got_after = attempts(&log);
    assert_eq!(got_after.len(), 10);
    assert!(
        got_after.iter().all(|a| a.ok && a.what == rs_id(other_b)),
        "new connections after the changes: {got_after:?}"
    );
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

// ---------------------------------------------------------------------------------------
// 5: hostile control-socket clients
// ---------------------------------------------------------------------------------------

/// xorshift64*: garbage bytes from a fixed seed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Read reply lines until EOF or `limit`; the lines read.
fn read_lines(s: &mut UnixStream, limit: Duration) -> (Vec<String>, bool) {
    let end = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut eof = false;
    let mut chunk = [0u8; 65536];
    while Instant::now() < end {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    let lines = text(&buf).lines().map(str::to_string).collect();
    (lines, eof)
}

#[test]
fn hostile_socket_clients_change_nothing_for_others() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let services = service_toml("tcp", 80, "rr", &[(RS[0], 8080, 1), (RS[1], 8080, 1)]);
    let mut topo = Topo::start(&services, false);
    let files = TempDir::new("vsd-ctl-t5-");
    let saved = topo.vsadm(&["-S", "-n"]);
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s rr\n\
         -a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1\n\
         -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 1\n"
    );
    let stop = files.path("stop");
    let log = files.path("loop.txt");
    let mut client = topo.http_loop(80, 1000, 0.05, 3.0, &stop, &log);
    assert!(
        wait_for(Duration::from_secs(20), || attempts(&log).len() >= 5),
        "the client loop did not start"
    );
    let sock = topo.vsd.socket.clone();

    // A silent client, and a half-open one: part of a line, then silence.
    let silent = UnixStream::connect(&sock).unwrap();
    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(br#"{"v":1,"cmd":"ipvsadm","args":["-C""#)
        .unwrap();
    let half_sent = Instant::now();

    // Garbage: random bytes (newlines among them), an unknown protocol
    // version carrying a destructive command, malformed requests, deeply
    // nested JSON. Every line must be refused.
    let garbage_client = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut junk = garbage(0x9E37_79B9_7F4A_7C15, 256 << 10);
            junk.push(b'\n');
            junk.extend_from_slice(b"{\"v\":2,\"cmd\":\"ipvsadm\",\"args\":[\"-C\"]}\n");
            junk.extend_from_slice(b"{\"v\":1,\"cmd\":\"ipvsadm\",\"args\":[\"-C\",7]}\n");
            junk.extend_from_slice(b"{\"v\":1,\"cmd\":\"ipvsadm\",\"args\":\"-C\"}\n");
            junk.extend_from_slice(b"{\"v\":1,\"cmd\":\"ipvsadm\",\"args\":[\"-D\",\"-t\"]}\n");
            junk.extend_from_slice(b"{\"v\":\"1\",\"cmd\":\"ipvsadm\",\"args\":[\"-C\"]}\n");
            junk.extend_from_slice(b"[\"-C\"]\n\xff\xfe{\n");
            junk.extend(std::iter::repeat_n(b'[', 200_000));
            junk.push(b'\n');
            let lines_sent = junk.iter().filter(|b| **b == b'\n').count();
            s.write_all(&junk).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let (lines, eof) = read_lines(&mut s, Duration::from_secs(30));
            (lines, eof, lines_sent)
        })
    };
    // A 10 MB line without a newline.
    let big_client = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            let chunk = vec![b'x'; 64 << 10];
            let mut written = 0usize;
            while written < 10 << 20 {
                match s.write(&chunk) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            let (lines, _) = read_lines(&mut s, Duration::from_secs(5));
            (written, lines)
        })
    };

    // Meanwhile vsadm answers promptly, and the half-open client is
    // dropped after the socket's line timeout.
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    let mut half_reply = None;
    let until = Instant::now() + Duration::from_secs(14);
    half.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    while Instant::now() < until {
        let t = Instant::now();
        let out = topo.vsd.vsadm(&["-Ln"]);
        let took = t.elapsed();
        calls += 1;
        slowest = slowest.max(took);
        assert!(
            out.status.success() && text(&out.stdout).contains("TCP  198.18.0.100:80 rr\n"),
            "vsadm -Ln during the hostile clients: {:?} {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            took < Duration::from_secs(2),
            "vsadm -Ln took {took:?} with hostile clients connected"
        );
        if half_reply.is_none() {
            let mut b = [0u8; 4096];
            if let Ok(n) = half.read(&mut b) {
                if n > 0 {
                    half_reply = Some((text(&b[..n]), half_sent.elapsed()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{calls} vsadm -Ln calls, slowest {slowest:?}; half-open reply {half_reply:?}");

    let (lines, eof, lines_sent) = garbage_client.join().unwrap();
    assert!(eof, "the garbage client was not disconnected after its EOF");
    assert!(!lines.is_empty(), "no answer to garbage");
    assert!(
        lines.len() <= lines_sent,
        "{} replies to {lines_sent} lines",
        lines.len()
    );
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("reply {l:?} is not JSON: {e}"));
        assert_eq!(v["ok"], serde_json::json!(false), "garbage accepted: {l}");
        assert!(v["error"].is_string(), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("unsupported protocol version 2")),
        "{lines:?}"
    );
    let (written, big_lines) = big_client.join().unwrap();
    assert!(
        written < 10 << 20
            || big_lines
                .iter()
                .any(|l| l.contains("request line longer than")),
        "a 10 MB line was swallowed whole without an error: {big_lines:?}"
    );
    let (reply, after) = half_reply.expect("the half-open client was never answered");
    assert!(
        reply.contains("timed out waiting for the end of the request line"),
        "{reply}"
    );
    // (the line timeout counts from the line's first byte)
    assert!(
        after >= vsd::control::socket::LINE_TIMEOUT - Duration::from_secs(1),
        "half-open client dropped after only {after:?}"
    );

    // Nothing changed, and the data plane never noticed.
    assert_eq!(topo.vsadm(&["-S", "-n"]), saved);
    std::fs::write(&stop, "").unwrap();
    client.wait(Duration::from_secs(10));
    let all = attempts(&log);
    let failed: Vec<&Attempt> = all.iter().filter(|a| !a.ok).collect();
    assert!(all.len() >= 100, "only {} requests ran", all.len());
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert!(all.iter().all(|a| a.what == "rs11" || a.what == "rs12"));

    assert!(topo.vsd.exited().is_none(), "vsd died");
    drop(silent);
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

/// vsd alone (its taps stay in this namespace, nothing is forwarded), with
/// one service, for the control-socket tests that need no traffic.
fn lone_vsd() -> (Vsd, common::topo::DpdkPrefix) {
    let runtime = common::topo::DpdkPrefix::new("vsdctl");
    let prefix = runtime.name.clone();
    let head = config_head(&unique("vcl"), &unique("vcs"), &prefix);
    let services = service_toml("tcp", 80, "rr", &[(RS[0], 8080, 1)]);
    (Vsd::start(&format!("{head}{services}")), runtime)
}

/// `vsadm -Ln` every 200 ms for `period`: each call must succeed within
/// `bound` (a liveness bound, not a performance figure). Stops at the
/// first violation; returns the number of calls.
fn vsadm_stays_live(vsd: &Vsd, period: Duration, bound: Duration, while_what: &str) -> u32 {
    let until = Instant::now() + period;
    let mut calls = 0;
    while Instant::now() < until {
        let t = Instant::now();
        let out = vsd.vsadm(&["-Ln"]);
        let took = t.elapsed();
        calls += 1;
        assert!(
            out.status.success() && took < bound,
            "vsadm -Ln {while_what}: {:?} after {took:?}: {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    calls
}

/// A client writes `line` non-stop for `secs` and never reads a reply;
/// meanwhile and afterwards vsadm must keep answering, and vsd must still
/// stop cleanly on SIGTERM.
fn streaming_client_does_not_stall_the_control_plane(line: &'static [u8]) {
    let (mut vsd, _runtime) = lone_vsd();
    let sock = vsd.socket.clone();
    let writer = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&sock).unwrap();
        // A blocked write ends the stream: the server stopped reading.
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let chunk = line.repeat((64 << 10) / line.len());
        let end = Instant::now() + Duration::from_secs(3);
        let mut sent = 0usize;
        while Instant::now() < end {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let during = vsadm_stays_live(
        &vsd,
        Duration::from_secs(3),
        Duration::from_secs(2),
        "while a client streams requests without reading",
    );
    let sent = writer.join().unwrap();
    eprintln!("the client wrote {sent} bytes; {during} vsadm calls meanwhile");
    vsadm_stays_live(
        &vsd,
        Duration::from_secs(2),
        Duration::from_secs(2),
        "after a streaming client went away",
    );
    let status = vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

/// Regression: the control socket once read everything a client sent and
/// answered every buffered line before serving anyone else, removing each
/// answered line from the front of its buffer (quadratic): a few seconds of
/// `{}` lines stalled it for many minutes, SIGTERM included.
#[test]
fn a_client_streaming_short_bad_lines_does_not_stall_the_control_plane() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    streaming_client_does_not_stall_the_control_plane(b"{}\n");
}

/// Regression: as above, with valid requests. Every `-Lnc` waits for the
/// workers' connection dumps (at least a millisecond), so answering all one
/// client has pipelined before anyone else starved vsadm for seconds.
#[test]
fn a_client_pipelining_requests_without_reading_does_not_starve_vsadm() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    streaming_client_does_not_stall_the_control_plane(
        b"{\"v\":1,\"cmd\":\"ipvsadm\",\"args\":[\"-Lnc\"]}\n",
    );
}

/// Regression: connections that never sent anything were never dropped,
/// so MAX_CLIENTS (64) of them locked every vsadm out.
#[test]
fn silent_connections_cannot_lock_vsadm_out() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let (mut vsd, _runtime) = lone_vsd();
    let silent: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&vsd.socket).unwrap())
        .collect();
    // Whatever the remedy (idle clients time out like half-sent lines do
    // after 10 s, or the oldest idle one makes room), vsadm must get an
    // answer within 15 s while these stay connected.
    let start = Instant::now();
    let mut last = String::new();
    let answered = wait_for(Duration::from_secs(15), || {
        let out = vsd.vsadm(&["-Ln"]);
        last = format!(
            "{:?} {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out.status.success()
    });
    assert!(
        answered,
        "vsadm locked out for {:?} by {} silent connections: {last}",
        start.elapsed(),
        silent.len()
    );
    drop(silent);
    let status = vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

// ---------------------------------------------------------------------------------------
// Found while counting: a client port reused toward another service
// ---------------------------------------------------------------------------------------

/// Regression test (fixed). Two NAT services on one real server: a
/// client that connects to VIP:80 from port P and later to VIP:81 from the
/// same port P gives both connections the same reply tuple (RS:8080 →
/// CLIENT:P). vsd used to drop the second SYN (`fwd_reply_tuple_in_use`)
/// for as long as the first connection lingered in TIME_WAIT (2 minutes);
/// now the closing entry gives way. The kernel's IPVS forwards it (the real server's
/// TIME_WAIT handling accepts the new SYN).
#[test]
fn client_port_reused_for_another_service_connects() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let services = format!(
        "{}{}",
        service_toml("tcp", 80, "rr", &[(RS[0], 8080, 1)]),
        service_toml("tcp", 81, "rr", &[(RS[0], 8080, 1)])
    );
    let mut topo = Topo::start(&services, false);
    // from client port 40000 each time (a helper: curl cannot bind a port
    // its own kernel may still hold in TIME_WAIT)
    let getter = helper("get_from_port.py");
    let curl = |port: u16| {
        topo.client.run_any(
            "timeout",
            &[
                "15",
                "python3",
                &getter,
                "40000",
                VIP,
                &port.to_string(),
                "/id",
            ],
        )
    };
    let first = curl(80);
    assert!(
        first.status.success() && text(&first.stdout) == "rs11\n",
        "first request: {:?} {}{}",
        first.status,
        text(&first.stdout),
        text(&first.stderr)
    );
    let second = curl(81);
    let reply_in_use = &topo.vsd.ask("counters")["forwarding"]["drops"]["reply_tuple_in_use"];
    assert!(
        second.status.success() && text(&second.stdout) == "rs11\n",
        "the same client port toward VIP:81 (same real server) did not connect: {:?} {}{}\nvsd's reply_tuple_in_use drops: {reply_in_use}",
        second.status,
        text(&second.stdout),
        text(&second.stderr)
    );
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

// ---------------------------------------------------------------------------------------
// Issue 12 item 0: the control plane under traffic
// ---------------------------------------------------------------------------------------

/// Run `vsd`'s vsadm with `args`; None if it has not ended within `limit`
/// (it is killed then).
fn vsadm_within(vsd: &Vsd, args: &[&str], limit: Duration) -> Option<std::process::Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsadm"))
        .arg("--socket")
        .arg(&vsd.socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vsadm");
    let ended = wait_for(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}

/// Context switches (voluntary and not) of a process's main thread.
fn control_thread_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Regression (issue 12 item 0): net_tap signals the process once per
/// received packet; the signals landed on the control thread, whose
/// connection dump slept in a loop the signals kept restarting, so under
/// traffic `-Lnc` took from seconds to minutes, every other request and
/// scrape waited meanwhile and SIGTERM took half a minute. Now the control
/// thread is not woken per packet (its context switches over 5 s of
/// traffic stay a small fraction of the packets: on the old code they were
/// more than half of them), 50 `-Lnc` under sustained traffic (both taps
/// receive thousands of packets a second) each end well within a generous
/// bound, and SIGTERM under traffic ends vsd cleanly.
#[test]
fn connection_listings_and_sigterm_stay_prompt_under_traffic() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    const PPS: u32 = 15000;
    let services = service_toml("udp", 5353, "rr", &[(RS[0], 9999, 1), (RS[1], 9999, 1)]);
    let mut topo = Topo::start(&services, true);
    let files = TempDir::new("vsd-ctl-t0-");
    // Several client sockets (several connections), bounded in time.
    let senders: Vec<Bg> = (0..3)
        .map(|i| {
            Bg::spawn_in(
                &topo.client.name,
                &files.path(&format!("sender{i}.txt")),
                python(),
                &[
                    &helper("udp_sender.py"),
                    VIP,
                    "5353",
                    &(PPS / 3).to_string(),
                    "100",
                    "120",
                ],
            )
        })
        .collect();
    // traffic flows before the first listing
    assert!(
        wait_for(Duration::from_secs(10), || {
            topo.vsadm(&["-Lnc"]).lines().count() >= 2 + 3
        }),
        "no connections under traffic:\n{}",
        topo.vsadm(&["-Lnc"])
    );
    // The control thread (vsd's main thread) is not woken per packet: over
    // 5 s of traffic its context switches stay a small fraction of the
    // packets received (it wakes for its 100 ms tick, not per signal).
    let pid = topo.vsd.child.as_ref().expect("vsd running").id();
    let rx = |t: &Topo| t.vsd.event("rx_packets");
    let (sw0, rx0) = (control_thread_switches(pid), rx(&topo));
    std::thread::sleep(Duration::from_secs(5));
    let (sw1, rx1) = (control_thread_switches(pid), rx(&topo));
    let (switches, packets) = (sw1 - sw0, rx1 - rx0);
    eprintln!("control thread: {switches} context switches while {packets} packets arrived");
    assert!(
        packets > 10_000,
        "too little traffic to tell: {packets} packets"
    );
    assert!(
        switches * 10 < packets,
        "the control thread was woken {switches} times for {packets} packets"
    );
    let per_call = Duration::from_secs(10);
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let t = Instant::now();
        let out = vsadm_within(&topo.vsd, &["-Lnc"], per_call);
        let took = t.elapsed();
        slowest = slowest.max(took);
        let out = out.unwrap_or_else(|| {
            panic!("vsadm -Lnc call {i} under traffic did not end within {per_call:?}")
        });
        let listing = text(&out.stdout);
        assert!(
            out.status.success() && listing.starts_with("IPVS connection entries\n"),
            "vsadm -Lnc call {i}: {:?} {listing}{}",
            out.status,
            text(&out.stderr)
        );
        assert!(
            listing.lines().any(|l| l.starts_with("UDP ")),
            "call {i}: no UDP connection listed under traffic:\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("slowest of 50 -Lnc under traffic: {slowest:?}");
    // the traffic really was there all along
    let counters = topo.vsd.ask("counters");
    eprintln!("counters: {}", counters["total"]["events"]);
    // SIGTERM under traffic: a clean exit, well within a generous bound
    let child = topo.vsd.child.as_mut().expect("vsd running");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut status = None;
    wait_for(Duration::from_secs(15), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let status = status.unwrap_or_else(|| {
        panic!(
            "vsd did not exit within 15 s of SIGTERM under traffic:\n{}",
            topo.vsd.log_text()
        )
    });
    topo.vsd.child = None;
    assert!(status.success(), "vsd exit status {status:?}");
    drop(senders);
}

// ---------------------------------------------------------------------------------------
// Issue 12 item 9: totals of deleted and re-added services and servers
// ---------------------------------------------------------------------------------------

/// Regression (issue 12 item 9): `-C`, `-D` or `-d` and then adding the
/// same service or server again brought the old totals back (a re-added
/// server takes its draining slot back; a re-added service gets the lowest
/// free service slot, with the counters its predecessor left). IPVS starts
/// them from zero.
#[test]
fn deleted_and_re_added_services_and_servers_start_from_zero() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let topo = Topo::start(&service_toml("tcp", 80, "rr", &[(RS[0], 8080, 1)]), false);
    let svc = format!("{VIP}:80");
    let rs = format!("{}:8080", RS[0]);
    let curl = || {
        let out = topo.client.run_any(
            "timeout",
            &[
                "15",
                "curl",
                "-sS",
                "--max-time",
                "10",
                &format!("http://{svc}/id"),
            ],
        );
        assert!(
            out.status.success() && text(&out.stdout) == "rs11\n",
            "curl: {:?} {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    };
    // (service conns, server conns, service inpkts)
    let totals = || {
        let rows = parse_numbers(&topo.vsadm(&["-Ln", "--stats", "--exact"]));
        let s = find_svc(&rows, &format!("TCP {svc}")).clone();
        assert_eq!(s.servers.len(), 1, "{s:?}");
        (s.service.nums[0], s.servers[0].nums[0], s.service.nums[1])
    };
    for _ in 0..3 {
        curl();
    }
    let (conns, rs_conns, _) = totals();
    assert_eq!((conns, rs_conns), (3, 3));
    // -d and -a of the same server
    topo.vsadm(&["-d", "-t", &svc, "-r", &rs]);
    topo.vsadm(&["-a", "-t", &svc, "-r", &rs, "-m"]);
    let (conns, rs_conns, _) = totals();
    assert_eq!((conns, rs_conns), (3, 0), "after -d and -a of the server");
    // -C, and -D, then the same service and server again
    for clear in [vec!["-C"], vec!["-D", "-t", &svc]] {
        topo.vsadm(&clear);
        topo.vsadm(&["-A", "-t", &svc, "-s", "rr"]);
        topo.vsadm(&["-a", "-t", &svc, "-r", &rs, "-m"]);
        let t = totals();
        assert_eq!(t, (0, 0, 0), "after {clear:?} and re-adding");
    }
    curl();
    let (conns, rs_conns, inpkts) = totals();
    assert_eq!((conns, rs_conns), (1, 1));
    assert!(inpkts > 0);
    let mut topo = topo;
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

// ---------------------------------------------------------------------------------------
// Deleted servers do not pin traffic (issue 12, item 4)
// ---------------------------------------------------------------------------------------

/// The UDP client for [`deleted_server_pins_neither_reused_ports_nor_udp_flows`]:
/// from CLIENT:45000 to VIP:9999 every ~0.25 s for argv[1] seconds, one
/// line `<monotonic_ms> reply` per echo received.
const UDP_PINGER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.2", 45000))
s.settimeout(0.2)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    s.sendto(b"ping", ("198.18.0.100", 9999))
    try:
        s.recv(100)
        print("%d reply" % int(time.monotonic() * 1000), flush=True)
    except socket.timeout:
        pass
    time.sleep(0.05)
"#;

/// The real server of the UDP flow CLIENT:45000 -> VIP:9999 in `-Lnc`.
fn udp_flow_server(lnc: &str) -> Option<String> {
    lnc.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["UDP", _, _, "198.18.0.2:45000", "198.18.0.100:9999", dest] => Some(dest.to_string()),
            _ => None,
        }
    })
}

/// Replies the pinger got after monotonic time `after_ms`.
fn replies_after(path: &Path, after_ms: u64) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|t| *t > after_ms)
        .count()
}

/// As the kernel's IPVS (`conn_reuse_mode` 1, `expire_nodest_conn` 0):
/// (a) after `vsadm -d` of the server a client port last went to, a new
/// connection from that port (its old entry in TIME_WAIT) is scheduled to
/// a server that exists; (b) a UDP client that keeps sending to a deleted
/// server is not pinned to it: its datagrams are dropped without refreshing
/// the entry, which expires after the UDP timeout (4 s here), and the flow
/// moves to the remaining server. vsd used to forward both to the deleted
/// server, refreshing the UDP entry forever.
#[test]
fn deleted_server_pins_neither_reused_ports_nor_udp_flows() {
    if !prerequisites() {
        return;
    }
    let _serial = serial();
    let two = [(RS[0], 8080, 1), (RS[1], 8080, 1)];
    let two_udp = [(RS[0], 9999, 1), (RS[1], 9999, 1)];
    let services = format!(
        "{}{}",
        service_toml("tcp", 80, "rr", &two),
        service_toml("udp", 9999, "rr", &two_udp)
    );
    let mut topo = Topo::start(&services, true);
    let files = TempDir::new("vsd-ctl-reuse-");

    // (a) TCP: the same client port after -d of its server.
    // from client port 40000 each time (see get_from_port.py)
    let getter = helper("get_from_port.py");
    let curl = || {
        topo.client.run_any(
            "timeout",
            &["15", "python3", &getter, "40000", VIP, "80", "/id"],
        )
    };
    let first = curl();
    let first_id = text(&first.stdout).trim().to_string();
    assert!(
        first.status.success(),
        "first request: {:?} {first_id}{}",
        first.status,
        text(&first.stderr)
    );
    let first_rs = RS
        .iter()
        .find(|a| rs_id(a) == first_id)
        .unwrap_or_else(|| panic!("first request answered by {first_id:?}"));
    let lnc = topo.vsadm(&["-Lnc"]);
    let old = client_conns(&lnc)
        .find(|(_, c, _)| *c == "198.18.0.2:40000")
        .map(|(state, _, d)| (state.to_string(), d.to_string()));
    assert_eq!(
        old.as_ref().map(|(_, d)| d.as_str()),
        Some(format!("{first_rs}:8080").as_str()),
        "no entry for the first connection:\n{lnc}"
    );
    eprintln!("first connection: {old:?}");
    topo.vsadm(&[
        "-d",
        "-t",
        "198.18.0.100:80",
        "-r",
        &format!("{first_rs}:8080"),
    ]);
    let second = curl();
    let other_id = rs_id(if *first_rs == RS[0] { RS[1] } else { RS[0] });
    assert!(
        second.status.success() && text(&second.stdout).trim() == other_id,
        "the same client port after -d of {first_rs}: {:?} {}{}\n-Lnc:\n{}",
        second.status,
        text(&second.stdout),
        text(&second.stderr),
        topo.vsadm(&["-Lnc"])
    );

    // (b) UDP: a flow pinned to a server that is then deleted.
    topo.vsadm(&["--set", "900", "120", "4"]);
    let pings = files.path("pinger.txt");
    let _pinger = Bg::spawn_in(
        &topo.client.name,
        &pings,
        python(),
        &["-c", UDP_PINGER, "40"],
    );
    let mut pinned = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            pinned = udp_flow_server(&topo.vsadm(&["-Lnc"]));
            pinned.is_some() && replies_after(&pings, 0) > 0
        }),
        "the UDP flow did not start: {pinned:?}\n{}",
        std::fs::read_to_string(&pings).unwrap_or_default()
    );
    let pinned = pinned.unwrap();
    topo.vsadm(&["-d", "-u", "198.18.0.100:9999", "-r", &pinned]);
    let mut now_at = None;
    let moved = wait_for(Duration::from_secs(20), || {
        now_at = udp_flow_server(&topo.vsadm(&["-Lnc"]));
        now_at.as_ref().is_some_and(|d| *d != pinned)
    });
    assert!(
        moved,
        "the UDP flow is still pinned to deleted {pinned}: {now_at:?}\n{}",
        topo.vsadm(&["-Lnc"])
    );
    let moved_at = monotonic_ms();
    assert!(
        wait_for(Duration::from_secs(5), || replies_after(&pings, moved_at)
            > 0),
        "no echo from the new server"
    );
    let removed = &topo.vsd.ask("counters")["forwarding"]["drops"]["dest_removed"];
    assert!(
        removed.as_u64().is_some_and(|n| n > 0),
        "dest_removed drops: {removed}"
    );
    let status = topo.vsd.stop();
    assert!(status.success(), "vsd exit status {status:?}");
}

/// ipvsadm-save/restore as vsd does it: with `[control] rules_file`,
/// services added with vsadm are written there on every change and come
/// back after a restart; a reload keeps them (the file owns only the
/// services it names).
#[test]
fn vsadm_services_survive_reloads_and_restarts() {
    let _guard = serial();
    if !prerequisites() {
        return;
    }
    let keep = common::topo::TempDir::new("vsd-rules-");
    let rules = keep.path.join("vsadm.rules");
    let config = |prefix: &str| {
        let head = config_head(&unique("vcl"), &unique("vcs"), prefix).replace(
            "socket = \"{dir}/vsd.sock\"\n",
            &format!(
                "socket = \"{{dir}}/vsd.sock\"\nrules_file = \"{}\"\n",
                rules.display()
            ),
        );
        format!(
            "{head}{}",
            service_toml("tcp", 80, "rr", &[(RS[0], 8080, 1)])
        )
    };
    let listing = |vsd: &Vsd| text(&vsd.vsadm(&["-S", "-n"]).stdout);
    let runtime = common::topo::DpdkPrefix::new("vsdrul");
    let mut vsd = Vsd::start(&config(&runtime.name));
    for args in [
        vec!["-A", "-t", "198.18.0.100:443", "-s", "wlc"],
        vec![
            "-a",
            "-t",
            "198.18.0.100:443",
            "-r",
            "198.18.1.12:8443",
            "-m",
            "-w",
            "4",
        ],
    ] {
        let out = vsd.vsadm(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let saved = std::fs::read_to_string(&rules).expect("rules file written on change");
    assert!(saved.contains("-A -t 198.18.0.100:443 -s wlc"), "{saved}");
    assert!(
        !saved.contains(":80 "),
        "the file's service is not vsadm's: {saved}"
    );
    // a reload keeps vsadm's service
    let out = vsd.vsadm(&["--reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = listing(&vsd);
    assert!(
        before.contains("198.18.0.100:443"),
        "--reload deleted vsadm's service:\n{before}"
    );
    assert!(vsd.stop().success());
    drop(runtime);
    // a restart restores it on top of the file's
    let runtime = common::topo::DpdkPrefix::new("vsdrul");
    let mut vsd = Vsd::start(&config(&runtime.name));
    assert_eq!(listing(&vsd), before, "{}", vsd.log_text());
    assert!(
        vsd.log_text().contains("vsadm rule(s) restored, 0 skipped"),
        "{}",
        vsd.log_text()
    );
    assert!(vsd.stop().success());
}
