//! End to end: health checks with keepalived's semantics.
//!
//! One vsd in a network namespace of its own, with the kernel twin of its
//! port (`kernel_iface`): its checks are ordinary kernel sockets that leave
//! from the director's address through the twin and the data plane, as
//! keepalived's would. Its tap is moved onto a bridge in a "LAN" namespace
//! with a client and three real servers (DR: VIP on the servers' loopback,
//! arp_ignore/arp_announce), each running tests/helpers/rs_server.py on
//! ports 80, 81 and 82.
//!
//! ```text
//!  [dir ns] vsd (198.18.0.1) + twin --tap--\
//!  [client ns] 198.18.0.10 ---------veth---+ br0 [lan ns]
//!  [rs1..rs3 ns] 198.18.0.11..13 ---veth--/
//! ```
//!
//! - Detection: VIP:80 checks HTTP_GET, VIP:81 TCP_CHECK, VIP:82
//!   MISC_CHECK (curl from the director). A client loop (a new connection
//!   every 100 ms per service) runs while one server's web server is
//!   killed, then while another vanishes from the network (link down: no
//!   ARP answer). After keepalived's bound (`delay_loop + connect_timeout
//!   × (retry+1) + retry × delay_before_retry`) no request may fail; the
//!   measured detection times are printed. Restarted, the server comes
//!   back and takes requests again.
//! - `inhibit_on_failure` keeps a failed server at weight 0 and its
//!   established download going; without it the server leaves `-Ln`.
//! - `sorry_server` takes over when the pool is empty; quorum and
//!   hysteresis with three servers run `quorum_down`/`quorum_up` once each.
//! - A reload with an unchanged file changes nothing and logs no
//!   transition; a changed weight applies to the up server only, and the
//!   inhibited one comes back with the new weight when it recovers.
//! - The seed notes' keepalived.conf (configs/keepalived-seed.conf) runs
//!   unmodified: `vsd --keepalived` on it, `keepalived --vrrp` on the same
//!   file putting the VIP on the twin (named ens33 as the file says).
//!
//! Workers run with `idle = "sleep"`. Needs root, /dev/net/tun, hugepages.

mod common;

use common::topo::{helper, no_offloads, python3, text, DpdkPrefix, Ns, Proc, TempDir};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const VIP: &str = "198.18.0.100";
const DIP: &str = "198.18.0.1";
const CLIENT: &str = "198.18.0.10";
const CLIENT_MAC: &str = "02:00:00:00:0c:01";
/// Real servers; the fourth only serves as a sorry server.
const RS: [&str; 4] = ["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"];
const RS_MAC: [&str; 4] = [
    "02:00:00:00:0d:01",
    "02:00:00:00:0d:02",
    "02:00:00:00:0d:03",
    "02:00:00:00:0d:04",
];
const VSD_MAC: &str = "02:00:00:00:0a:01";
const TAP_FAR_MAC: &str = "02:00:00:00:3a:01";
/// Ports every real server serves HTTP on (one rs_server.py each).
const PORTS: [u16; 3] = [80, 81, 82];

/// The check timing every test uses: keepalived's bound on detecting a
/// dead server is delay_loop + connect_timeout × (retry + 1) +
/// retry × delay_before_retry = 1 + 1 × 2 + 1 = 4 s.
const TIMING: &str = "delay_loop = 1\nconnect_timeout = 1\nretry = 1\ndelay_before_retry = 1\n";
const BOUND: f64 = 4.0;

fn mono() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn bridge_veth(lan: &Ns, lan_end: &str, ns: &Ns, ns_end: &str, mac: &str) {
    lan.ip(&[
        "link", "add", lan_end, "type", "veth", "peer", "name", ns_end, "address", mac, "netns",
        &ns.name,
    ]);
    lan.ip(&["link", "set", lan_end, "master", "br0", "up"]);
    no_offloads(lan, lan_end, true);
    no_offloads(ns, ns_end, true);
    ns.ip(&["link", "set", ns_end, "up"]);
}

/// One real server: its namespace and one rs_server.py per port.
struct RealServer {
    id: String,
    ns: Ns,
    www: PathBuf,
    logs: PathBuf,
    servers: BTreeMap<u16, Proc>,
}

impl RealServer {
    fn start(&mut self, port: u16) {
        let ready = self.logs.join(format!("{}-{port}.ready", self.id));
        let _ = std::fs::remove_file(&ready);
        let mut p = Proc::spawn(
            Some(&self.ns),
            &format!("{}-{port}", self.id),
            &self.logs,
            python3(),
            &[
                &helper("rs_server.py"),
                "--name",
                &self.id,
                "--dir",
                &self.www.display().to_string(),
                "--http-port",
                &port.to_string(),
                "--udp-port",
                &(9000 + port).to_string(),
                "--peer-log",
                &self
                    .logs
                    .join(format!("{}-{port}.peers", self.id))
                    .display()
                    .to_string(),
                "--ready",
                &ready.display().to_string(),
            ],
        );
        p.wait_ready(&ready, Duration::from_secs(20));
        self.servers.insert(port, p);
    }

    /// SIGKILL the web server on `port` (the socket closes: refused).
    fn kill(&mut self, port: u16) {
        if let Some(mut p) = self.servers.remove(&port) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Take the server off the network (or back): no ARP answer, nothing.
    fn link(&self, up: bool) {
        self.ns
            .ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
    }
}

struct Lab {
    files: TempDir,
    lan: Ns,
    client: Ns,
    rs: Vec<RealServer>,
    dir_ns: Ns,
    tap: String,
    twin: String,
    prefixes: Vec<DpdkPrefix>,
    vsd: Option<Vsd>,
}

impl Lab {
    fn build(tag: &str) -> Lab {
        Self::build_with(tag, &[0, 1, 2])
    }

    /// A lab with the real servers `RS[i]` for each `i` in `which`.
    fn build_with(tag: &str, which: &[usize]) -> Lab {
        let files = TempDir::new(&format!("vsd-hc{tag}-"));
        let lan = Ns::new(&format!("hl{tag}"));
        lan.ip(&["link", "add", "br0", "type", "bridge"]);
        lan.ip(&["link", "set", "br0", "up"]);
        let client = Ns::new(&format!("hc{tag}"));
        bridge_veth(&lan, "pc", &client, "eth0", CLIENT_MAC);
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
        let mut rs = Vec::new();
        for (i, addr) in RS.iter().enumerate().filter(|(i, _)| which.contains(i)) {
            let id = format!("rs{}", i + 1);
            let ns = Ns::new(&format!("h{tag}{id}"));
            bridge_veth(&lan, &format!("p{}", i + 1), &ns, "eth0", RS_MAC[i]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            for dev in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore=1"));
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce=2"));
            }
            let www = files.path.join(&id);
            std::fs::create_dir_all(&www).expect("web root");
            std::fs::write(www.join("id"), format!("{id}\n")).expect("id file");
            let mut r = RealServer {
                id,
                ns,
                www,
                logs: files.path.clone(),
                servers: BTreeMap::new(),
            };
            for port in PORTS {
                r.start(port);
            }
            rs.push(r);
        }
        let dir_ns = Ns::new(&format!("hd{tag}"));
        Lab {
            files,
            lan,
            client,
            rs,
            dir_ns,
            tap: unique(&format!("hct{tag}")),
            twin: unique(&format!("hck{tag}")),
            prefixes: Vec::new(),
            vsd: None,
        }
    }

    fn config(&self, prefix: &str, services: &str) -> String {
        let (tap, twin) = (&self.tap, &self.twin);
        format!(
            r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 128

[lcores]
control = 0
workers = [1]
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[lb]
conn_capacity = 4096

[[port]]
name = "lan0"
device = "net_tap0,iface={tap}"
mac = "{VSD_MAC}"
addresses = ["{DIP}/24"]
kernel_iface = "{twin}"

[[vip]]
address = "{VIP}"
port = "lan0"
{services}"#
        )
    }

    /// Start vsd with `services`, wait for its tap and twin, put the tap on
    /// the bridge.
    fn start_vsd(&mut self, services: &str) {
        let prefix = DpdkPrefix::new("vsdhc");
        let config = self.config(&prefix.name, services);
        self.prefixes.push(prefix);
        self.start_vsd_with(&config, &[], DIP);
    }

    /// Start vsd with a whole configuration (and more arguments), wait for
    /// its tap and for `dip` on its twin, put the tap on the bridge.
    fn start_vsd_with(&mut self, config: &str, extra: &[&str], dip: &str) {
        let vsd = Vsd::start_with(Some(&self.dir_ns.name), config, extra);
        let (ns, tap, twin) = (&self.dir_ns, &self.tap, &self.twin);
        assert!(
            wait_for(Duration::from_secs(20), || {
                sh_any("ip", &["-n", &ns.name, "link", "show", tap])
                    .status
                    .success()
                    && text(&sh_any("ip", &["-n", &ns.name, "-4", "addr", "show", twin]))
                        .contains(dip)
            }),
            "tap or twin missing:\n{}",
            vsd.log_text()
        );
        ns.ip(&["link", "set", tap, "netns", &self.lan.name]);
        self.lan.ip(&["link", "set", tap, "address", TAP_FAR_MAC]);
        self.lan.ip(&["link", "set", tap, "master", "br0", "up"]);
        no_offloads(&self.lan, tap, false);
        self.vsd = Some(vsd);
    }

    fn vsd(&self) -> &Vsd {
        self.vsd.as_ref().expect("vsd running")
    }

    /// `vsadm -Ln` text.
    fn listing(&self) -> String {
        let out = self.vsd().vsadm(&["-L", "-n"]);
        assert!(out.status.success(), "vsadm -Ln: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start a client loop against VIP:port (a new connection every 100 ms).
    fn client_loop(&self, port: u16, stop: &Path) -> (Proc, PathBuf) {
        let name = format!("loop{port}");
        let p = Proc::spawn(
            Some(&self.client),
            &name,
            &self.files.path,
            python3(),
            &[
                &format!(
                    "{}/tests/ctl_helpers/http_loop.py",
                    env!("CARGO_MANIFEST_DIR")
                ),
                VIP,
                &port.to_string(),
                "/id",
                "100000",
                "0.1",
                // a request's budget covers one retransmitted SYN (the
                // client's RTO is 1 s: one packet lost on a loaded machine is
                // not a checker fault); a request to a vanished server still
                // never completes, and one to a killed server is refused
                "2.5",
                &stop.display().to_string(),
            ],
        );
        let log = self.files.path.join(format!("{name}.log"));
        (p, log)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Some(v) = &self.vsd {
            s.push_str(&format!("--- vsd ---\n{}\n", v.log_text()));
        }
        s
    }
}

/// Parse `-Ln`: the real servers of the TCP service on `port`.
fn servers_in(listing: &str, port: u16) -> Vec<(String, u32)> {
    let head = format!("TCP  {VIP}:{port} ");
    let mut out = Vec::new();
    let mut inside = false;
    for line in listing.lines() {
        if line.starts_with("TCP") || line.starts_with("UDP") || line.starts_with("FWM") {
            inside = line.starts_with(&head);
            continue;
        }
        if inside {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 && f[0] == "->" {
                out.push((f[1].to_string(), f[3].parse().unwrap_or(u32::MAX)));
            }
        }
    }
    out
}

/// One attempt of http_loop.py: (start in monotonic seconds, ok, body or reason).
fn attempts(log: &Path) -> Vec<(f64, bool, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let _seq = f.next()?;
            let ms: f64 = f.next()?.parse().ok()?;
            let ok = f.next()? == "ok";
            Some((ms / 1000.0, ok, f.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// Wait until `cond` holds on the listing; returns when (monotonic s).
fn wait_listing(lab: &Lab, limit: Duration, what: &str, cond: impl Fn(&str) -> bool) -> f64 {
    let ok = wait_for(limit, || cond(&lab.listing()));
    assert!(
        ok,
        "{what}: not within {limit:?}\n{}\n{}",
        lab.listing(),
        lab.logs()
    );
    mono()
}

fn has_server(listing: &str, port: u16, addr: &str) -> bool {
    servers_in(listing, port)
        .iter()
        .any(|(a, _)| a == &format!("{addr}:{port}"))
}

fn detection_services() -> String {
    let mut s = String::new();
    for (port, check) in [
        (
            80,
            format!("type = \"http_get\"\n{TIMING}url = [{{ path = \"/id\", status_code = \"200\" }}]\n"),
        ),
        (81, format!("type = \"tcp\"\n{TIMING}")),
    ] {
        s.push_str(&format!(
            "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = {port}\nscheduler = \"rr\"\n\
             [service.health]\ndelay_loop = 1\n\n[[service.check]]\n{check}"
        ));
        for rs in RS {
            s.push_str(&format!(
                "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {port}\nmethod = \"dr\"\n"
            ));
        }
    }
    // MISC_CHECK: a program on the director decides (curl through the twin)
    s.push_str(&format!(
        "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = 82\nscheduler = \"rr\"\n\
         [service.health]\ndelay_loop = 1\n"
    ));
    for rs in RS {
        s.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = 82\nmethod = \"dr\"\n\
             [[service.real_server.check]]\ntype = \"misc\"\n{TIMING}misc_timeout = 1\n\
             misc_path = \"/usr/bin/curl -sf -m 1 -o /dev/null http://{rs}:82/id\"\n"
        ));
    }
    s
}

/// For each service: requests that started after `from` and failed.
fn failures_after(logs: &[(u16, PathBuf)], from: f64) -> Vec<(u16, usize, usize, Vec<String>)> {
    logs.iter()
        .map(|(port, log)| {
            let a: Vec<_> = attempts(log).into_iter().filter(|a| a.0 >= from).collect();
            let failed: Vec<String> = a
                .iter()
                .filter(|a| !a.1)
                .map(|a| format!("{:.2} {}", a.0 - from, a.2))
                .collect();
            (*port, a.len(), failed.len(), failed)
        })
        .collect()
}

#[test]
fn checkers_take_killed_and_vanished_servers_out_within_keepalived_bound() {
    if !e2e_prerequisites(true) {
        return;
    }
    let mut lab = Lab::build("d");
    lab.start_vsd(&detection_services());
    for port in PORTS {
        wait_listing(&lab, Duration::from_secs(20), "all servers listed", |l| {
            RS.iter().all(|rs| has_server(l, port, rs))
        });
    }
    let stop = lab.files.path.join("stop-loops");
    let mut loops = Vec::new();
    let mut logs = Vec::new();
    for port in PORTS {
        let (p, log) = lab.client_loop(port, &stop);
        loops.push(p);
        logs.push((port, log));
    }
    std::thread::sleep(Duration::from_secs(2));

    // 1. rs1's web servers die (connections refused)
    let killed_at = mono();
    for port in PORTS {
        lab.rs[0].kill(port);
    }
    let mut detected = Vec::new();
    for port in PORTS {
        let t = wait_listing(
            &lab,
            Duration::from_secs(20),
            "killed server removed",
            |l| !has_server(l, port, RS[0]),
        );
        detected.push((port, t - killed_at));
    }
    std::thread::sleep(Duration::from_secs(3));
    let after_kill = failures_after(&logs, killed_at + BOUND);
    // vsadm --checks tells which server is out and why
    let checks = text(&lab.vsd().vsadm(&["--checks"]));
    let rs1 = checks
        .lines()
        .find(|l| l.contains(&format!("-> {}:80 ", RS[0])))
        .unwrap_or_else(|| panic!("rs1 not in --checks:\n{checks}"));
    assert!(
        rs1.contains("removed") && rs1.contains("HTTP_GET"),
        "{rs1}\n{checks}"
    );

    // 2. rs2 vanishes from the network (no ARP answer, checks time out)
    let vanished_at = mono();
    lab.rs[1].link(false);
    let mut detected_vanish = Vec::new();
    for port in PORTS {
        let t = wait_listing(
            &lab,
            Duration::from_secs(30),
            "vanished server removed",
            |l| !has_server(l, port, RS[1]),
        );
        detected_vanish.push((port, t - vanished_at));
    }
    std::thread::sleep(Duration::from_secs(3));
    let after_vanish = failures_after(&logs, vanished_at + BOUND);

    // 3. both come back and take requests again
    let back_at = mono();
    lab.rs[1].link(true);
    for port in PORTS {
        lab.rs[0].start(port);
    }
    for port in PORTS {
        wait_listing(&lab, Duration::from_secs(30), "servers back", |l| {
            has_server(l, port, RS[0]) && has_server(l, port, RS[1])
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop, "").expect("stop file");
    for p in &mut loops {
        wait_for(Duration::from_secs(10), || !p.alive());
    }
    for (port, log) in &logs {
        let back: Vec<_> = attempts(log)
            .into_iter()
            .filter(|a| a.0 >= back_at && a.1)
            .collect();
        for id in ["rs1", "rs2"] {
            assert!(
                back.iter().any(|a| a.2 == id),
                "port {port}: {id} took no request after coming back\n{}",
                lab.logs()
            );
        }
    }

    for (what, d) in [("killed", &detected), ("vanished", &detected_vanish)] {
        for (port, secs) in d {
            let kind = ["HTTP_GET", "TCP_CHECK", "MISC_CHECK"][(*port - 80) as usize];
            println!("health: {kind} detected a {what} server in {secs:.2} s (bound {BOUND} s)");
        }
    }
    for (what, f) in [("kill", &after_kill), ("vanish", &after_vanish)] {
        for (port, n, failed, list) in f {
            println!(
                "health: port {port}, after the {what} + bound: {failed} of {n} requests failed"
            );
            assert_eq!(
                *failed,
                0,
                "port {port} after {what}: {list:?}\n{}",
                lab.logs()
            );
            assert!(*n > 0, "port {port}: no requests after {what}");
        }
    }
    // every transition is logged with its reason
    let log = lab.vsd().log_text();
    assert!(log.contains("down"), "no transition logged:\n{log}");
}

fn pool_services(files: &Path) -> String {
    // a flag file per server and service port fails that one checker
    let flag = |rs: &str, port: u16| {
        files
            .join(format!("fail-{rs}-{port}"))
            .display()
            .to_string()
    };
    let misc = |rs: &str, port: u16| {
        format!(
            "[[service.real_server.check]]\ntype = \"misc\"\n{TIMING}\
             misc_path = \"/bin/sh -c '! test -e {}'\"\n",
            flag(rs, port)
        )
    };
    let scripts = |what: &str| {
        format!(
            "quorum_{what} = \"/bin/sh -c 'echo {what} >> {}'\"\n",
            files.join("quorum.log").display()
        )
    };
    let mut s = String::new();
    // VIP:80: inhibit_on_failure
    s.push_str(&format!(
        "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n\
         [service.health]\ndelay_loop = 1\ninhibit_on_failure = true\n"
    ));
    for rs in &RS[..2] {
        s.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = 80\nmethod = \"dr\"\n{}",
            misc(rs, 80)
        ));
    }
    // VIP:81: quorum 2, hysteresis 0, sorry server rs3
    s.push_str(&format!(
        "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = 81\nscheduler = \"rr\"\n\
         [service.health]\ndelay_loop = 1\nquorum = 2\n{}{}\
         sorry_server = {{ address = \"{}\", port = 81 }}\n",
        scripts("up"),
        scripts("down"),
        RS[2]
    ));
    for rs in &RS[..2] {
        s.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = 81\nmethod = \"dr\"\n{}",
            misc(rs, 81)
        ));
    }
    s
}

#[test]
fn inhibit_on_failure_quorum_and_sorry_server() {
    if !e2e_prerequisites(true) {
        return;
    }
    let mut lab = Lab::build("p");
    let files = lab.files.path.clone();
    lab.start_vsd(&pool_services(&files));
    wait_listing(&lab, Duration::from_secs(20), "servers listed", |l| {
        servers_in(l, 80).len() == 2 && servers_in(l, 81).len() == 2
    });
    assert!(
        !has_server(&lab.listing(), 81, RS[2]),
        "sorry server listed while quorum holds"
    );

    // inhibit: the failed server stays at weight 0, and a download it
    // serves keeps going (a file only rs1 has: rs2 answers 404, so retry
    // until rr picks rs1)
    let big = lab.rs[0].www.join("only-rs1.bin");
    common::topo::write_random_file(&big, 6 << 20, 0x5eed_4ea1_0000_0001);
    let want = common::topo::sha256_of(None, &big);
    let got = files.join("got.bin");
    let (got_s, url) = (
        got.display().to_string(),
        format!("http://{VIP}:80/only-rs1.bin"),
    );
    let mut download = None;
    for _ in 0..10 {
        let mut p = Proc::spawn(
            Some(&lab.client),
            "slow-download",
            &files,
            "curl",
            &[
                "-sf",
                "--limit-rate",
                "512K",
                "-m",
                "60",
                "-o",
                &got_s,
                &url,
            ],
        );
        // a 404 from rs2 ends at once; rs1's answer streams for ~12 s, long
        // enough for a loaded machine's checker to fork its script twice
        std::thread::sleep(Duration::from_millis(700));
        if p.alive() {
            download = Some(p);
            break;
        }
        let _ = p.child.wait();
    }
    let mut download = download.expect("the download never reached rs1");
    std::fs::write(files.join("fail-198.18.0.11-80"), "").expect("flag");
    wait_listing(
        &lab,
        Duration::from_secs(15),
        "inhibited at weight 0",
        |l| servers_in(l, 80).contains(&(format!("{}:80", RS[0]), 0)),
    );
    assert_eq!(servers_in(&lab.listing(), 80).len(), 2);
    assert!(
        download.alive(),
        "the download ended before rs1 was inhibited"
    );
    let status = download.child.wait().expect("curl");
    assert!(
        status.success(),
        "the download through the inhibited server failed: {status:?}\n{}",
        lab.logs()
    );
    assert_eq!(
        common::topo::sha256_of(None, &got),
        want,
        "the download is corrupt"
    );
    std::fs::remove_file(files.join("fail-198.18.0.11-80")).expect("flag");
    wait_listing(&lab, Duration::from_secs(15), "weight restored", |l| {
        servers_in(l, 80).contains(&(format!("{}:80", RS[0]), 1))
    });

    // quorum 2 of weights 1+1: one failure loses it, the sorry server
    // replaces the pool, quorum_down runs once; recovery reverses it
    std::fs::write(files.join("fail-198.18.0.12-81"), "").expect("flag");
    wait_listing(&lab, Duration::from_secs(15), "sorry server in", |l| {
        servers_in(l, 81) == vec![(format!("{}:81", RS[2]), 1)]
    });
    let out = lab
        .client
        .run_any("curl", &["-s", "-m", "3", &format!("http://{VIP}:81/id")]);
    assert_eq!(
        text(&out).trim(),
        "rs3",
        "the sorry server answers\n{}",
        lab.logs()
    );
    std::fs::remove_file(files.join("fail-198.18.0.12-81")).expect("flag");
    wait_listing(&lab, Duration::from_secs(15), "pool back", |l| {
        let s = servers_in(l, 81);
        s.len() == 2 && !s.iter().any(|(a, _)| a.starts_with(RS[2]))
    });
    let q = std::fs::read_to_string(files.join("quorum.log")).unwrap_or_default();
    assert_eq!(
        q.lines().collect::<Vec<_>>(),
        vec!["down", "up"],
        "quorum scripts\n{}",
        lab.logs()
    );
}

#[test]
fn reload_keeps_check_state_without_flapping() {
    if !e2e_prerequisites(true) {
        return;
    }
    let mut lab = Lab::build("r");
    let files = lab.files.path.clone();
    lab.start_vsd(&pool_services(&files));
    wait_listing(&lab, Duration::from_secs(20), "servers listed", |l| {
        servers_in(l, 80).len() == 2
    });
    // rs2 down (inhibited at 0) before the reload
    for port in [80, 81] {
        std::fs::write(files.join(format!("fail-198.18.0.12-{port}")), "").expect("flag");
    }
    // the same flag fails it on :81 too, where quorum 2 is lost
    wait_listing(
        &lab,
        Duration::from_secs(15),
        "inhibited, sorry server in",
        |l| {
            servers_in(l, 80).contains(&(format!("{}:80", RS[1]), 0))
                && servers_in(l, 81) == vec![(format!("{}:81", RS[2]), 1)]
        },
    );
    let before = lab.listing();
    let log_before = lab.vsd().log_text().len();
    let out = lab.vsd().vsadm(&["--reload"]);
    assert!(out.status.success(), "reload: {}", text(&out));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lab.listing(),
        before,
        "an unchanged reload changed the table"
    );
    let new_log = lab.vsd().log_text()[log_before..].to_string();
    assert!(
        !new_log.contains(" up (") && !new_log.contains(" down ("),
        "an unchanged reload logged transitions:\n{new_log}"
    );
    // a changed file: rs1's weight on :80 becomes 5 (it is up: applied),
    // rs2's becomes 3 (it is inhibited: stays 0 until it recovers)
    let cfg_path = lab.vsd().dir.join("vsd.toml");
    let file = std::fs::read_to_string(&cfg_path).expect("config");
    let changed = file
        .replacen(
            &format!("address = \"{}\"\nport = 80\n", RS[0]),
            &format!("address = \"{}\"\nport = 80\nweight = 5\n", RS[0]),
            1,
        )
        .replacen(
            &format!("address = \"{}\"\nport = 80\n", RS[1]),
            &format!("address = \"{}\"\nport = 80\nweight = 3\n", RS[1]),
            1,
        );
    assert_ne!(changed, file, "the weights were not put in the file");
    std::fs::write(&cfg_path, changed).expect("write config");
    let log_before = lab.vsd().log_text().len();
    let out = lab.vsd().vsadm(&["--reload"]);
    assert!(out.status.success(), "reload: {}", text(&out));
    let l = lab.listing();
    assert_eq!(
        servers_in(&l, 80),
        vec![(format!("{}:80", RS[0]), 5), (format!("{}:80", RS[1]), 0)],
        "{l}"
    );
    assert_eq!(
        servers_in(&l, 81),
        vec![(format!("{}:81", RS[2]), 1)],
        "{l}"
    );
    let new_log = lab.vsd().log_text()[log_before..].to_string();
    assert!(
        !new_log.contains(" up (") && !new_log.contains(" down ("),
        "a weight-only reload logged transitions:\n{new_log}"
    );
    // recovery after the reloads restores the file's weight, not 0
    for port in [80, 81] {
        std::fs::remove_file(files.join(format!("fail-198.18.0.12-{port}"))).expect("flag");
    }
    wait_listing(
        &lab,
        Duration::from_secs(15),
        "recovered after reload",
        |l| servers_in(l, 80).contains(&(format!("{}:80", RS[1]), 3)),
    );
}

/// The seed notes' keepalived.conf (configs/keepalived-seed.conf, only the
/// addresses changed) drives vsd unmodified: `vsd --keepalived` takes its
/// virtual_server and HTTP_GET checks, `keepalived --vrrp` on the same file
/// puts the VIP on the twin (named ens33, as the file's vrrp_instance
/// says), vsd serves it, and a killed web server leaves the pool within
/// keepalived's bound (delay_loop 6, connect_timeout 3, nb_get_retry 3,
/// delay_before_retry 3: 6 + 3 x 4 + 3 x 3 = 27 s).
#[test]
fn the_seed_keepalived_conf_serves_with_keepalived_doing_vrrp() {
    if !e2e_prerequisites(true) {
        return;
    }
    if sh_any("keepalived", &["--version"]).status.code().is_none() {
        assert!(
            !in_ci(),
            "keepalived is not installed (scripts/setup.sh installs it)"
        );
        return;
    }
    const SEED_DIP: &str = "198.18.0.11";
    const SEED_VIP: &str = "198.18.0.50";
    let mut lab = Lab::build_with("k", &[1, 2]);
    lab.twin = "ens33".to_string();
    // DR: the seed's VIP on the real servers' loopback
    for rs in &lab.rs {
        rs.ns
            .ip(&["addr", "add", &format!("{SEED_VIP}/32"), "dev", "lo"]);
    }
    let prefix = DpdkPrefix::new("vsdhk");
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/keepalived-seed.toml"
    ))
    .expect("seed toml")
    .replace(
        "--file-prefix=vsd-kaseed",
        &format!("--file-prefix={}", prefix.name),
    )
    .replace("/run/vsd/keepalived-seed.sock", "{dir}/vsd.sock")
    .replace("iface=vsd-kaseed0", &format!("iface={}", lab.tap))
    .replace("[eal]\n", "[eal]\nhuge = true\nmemory_mb = 128\n");
    assert!(
        base.contains(&lab.tap) && base.contains("{dir}/vsd.sock"),
        "{base}"
    );
    let conf = lab.files.path.join("keepalived.conf");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/keepalived-seed.conf"),
        &conf,
    )
    .expect("seed conf");
    let conf_s = conf.display().to_string();
    lab.start_vsd_with(&base, &["--keepalived", &conf_s], SEED_DIP);
    lab.prefixes.push(prefix);
    let listing = lab.listing();
    assert!(
        listing.contains(&format!("TCP  {SEED_VIP}:80 rr persistent 50")),
        "{listing}"
    );

    // keepalived --vrrp on the same file, in vsd's namespace
    let pid = lab.files.path.join("keepalived.pid");
    let vpid = lab.files.path.join("vrrp.pid");
    let (p, v) = (pid.display().to_string(), vpid.display().to_string());
    let mut keepalived = Proc::spawn(
        Some(&lab.dir_ns),
        "keepalived",
        &lab.files.path,
        "keepalived",
        &[
            "--vrrp", "-n", "-l", "-D", "-f", &conf_s, "-p", &p, "-r", &v,
        ],
    );
    let serves = |lab: &Lab| {
        let url = format!("http://{SEED_VIP}/id");
        let out = lab.client.run_any(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "3",
                &url,
            ],
        );
        text(&out).trim() == "200"
    };
    assert!(
        wait_for(Duration::from_secs(30), || serves(&lab)),
        "the VIP is not served:\n{}\n--- keepalived ---\n{}",
        lab.logs(),
        keepalived.log_text()
    );
    assert!(keepalived.alive(), "{}", keepalived.log_text());
    assert!(
        keepalived.log_text().contains("Entering MASTER STATE"),
        "{}",
        keepalived.log_text()
    );

    // a killed web server leaves the pool within keepalived's bound
    let killed_at = mono();
    lab.rs[0].kill(80);
    let ok = wait_for(Duration::from_secs(40), || {
        !has_server_at(&lab.listing(), SEED_VIP, 80, RS[1])
    });
    let took = mono() - killed_at;
    assert!(ok, "{} not removed:\n{}", RS[1], lab.logs());
    println!(
        "health: the seed's HTTP_GET took {took:.1} s to remove a killed server (keepalived's bound 27 s)"
    );
    assert!(took <= 27.0 + 2.0, "detection took {took:.1} s");
    for _ in 0..10 {
        assert!(
            serves(&lab),
            "a request failed after the removal:\n{}",
            lab.logs()
        );
    }
    drop(keepalived);
}

fn has_server_at(listing: &str, vip: &str, port: u16, addr: &str) -> bool {
    let head = format!("TCP  {vip}:{port} ");
    let mut inside = false;
    for line in listing.lines() {
        if line.starts_with("TCP") || line.starts_with("UDP") || line.starts_with("FWM") {
            inside = line.starts_with(&head);
        } else if inside && line.contains(&format!("-> {addr}:{port} ")) {
            return true;
        }
    }
    false
}

/// Quorum with hysteresis over three servers (weights 1, quorum 2,
/// hysteresis 1: lost below 1, regained at 3) and the sorry server while
/// all are down: two failures keep the pool, the third brings the sorry
/// server in and runs quorum_down once; two recoveries are not enough to
/// take it out again, the third is, and quorum_up runs once.
#[test]
fn quorum_with_hysteresis_over_three_servers_and_the_sorry_server() {
    if !e2e_prerequisites(true) {
        return;
    }
    let mut lab = Lab::build_with("q", &[0, 1, 2, 3]);
    let files = lab.files.path.clone();
    let flag = |rs: &str| files.join(format!("fail-{rs}")).display().to_string();
    let mut svc = format!(
        "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n\
         [service.health]\ndelay_loop = 1\nquorum = 2\nhysteresis = 1\n\
         quorum_up = \"/bin/sh -c 'echo up >> {q}'\"\nquorum_down = \"/bin/sh -c 'echo down >> {q}'\"\n\
         sorry_server = {{ address = \"{sorry}\", port = 80 }}\n",
        q = files.join("quorum.log").display(),
        sorry = RS[3]
    );
    for rs in &RS[..3] {
        svc.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = 80\nmethod = \"dr\"\n\
             [[service.real_server.check]]\ntype = \"misc\"\n{TIMING}\
             misc_path = \"/bin/sh -c '! test -e {}'\"\n",
            flag(rs)
        ));
    }
    lab.start_vsd(&svc);
    let pool = |n: usize| move |l: &str| servers_in(l, 80).len() == n && !has_server(l, 80, RS[3]);
    let sorry = |l: &str| servers_in(l, 80) == vec![(format!("{}:80", RS[3]), 1)];
    wait_listing(&lab, Duration::from_secs(20), "three servers", pool(3));
    let quorum_log = || std::fs::read_to_string(files.join("quorum.log")).unwrap_or_default();
    // live weight 2, then 1: not below quorum - hysteresis = 1
    for (i, rs) in RS[..2].iter().enumerate() {
        std::fs::write(flag(rs), "").expect("flag");
        wait_listing(
            &lab,
            Duration::from_secs(15),
            "one server less",
            pool(2 - i),
        );
    }
    assert_eq!(quorum_log(), "", "quorum lost too early");
    // live weight 0: lost; the sorry server replaces the pool
    std::fs::write(flag(RS[2]), "").expect("flag");
    wait_listing(&lab, Duration::from_secs(15), "sorry server in", sorry);
    let out = lab
        .client
        .run_any("curl", &["-s", "-m", "3", &format!("http://{VIP}:80/id")]);
    assert_eq!(
        text(&out).trim(),
        "rs4",
        "the sorry server answers\n{}",
        lab.logs()
    );
    // live weight 1, then 2: below quorum + hysteresis = 3, still the sorry server
    for rs in &RS[..2] {
        std::fs::remove_file(flag(rs)).expect("flag");
        let back = format!("{rs}:80 up");
        assert!(
            wait_for(Duration::from_secs(15), || lab
                .vsd()
                .log_text()
                .contains(&back)),
            "{rs} did not come back:\n{}",
            lab.logs()
        );
        assert!(
            sorry(&lab.listing()),
            "quorum regained too early:\n{}",
            lab.listing()
        );
    }
    // live weight 3: regained
    std::fs::remove_file(flag(RS[2])).expect("flag");
    wait_listing(&lab, Duration::from_secs(15), "pool back", pool(3));
    assert_eq!(quorum_log(), "down\nup\n", "quorum scripts\n{}", lab.logs());
}
