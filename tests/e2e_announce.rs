//! End to end: route announcement and drain (`[announce]`).
//!
//! One vsd (net_tap port, idle = "sleep") in a namespace of its own with
//! `[announce] interface = "vip0"`; its port hangs on a bridge (the LAN,
//! in a namespace of its own) with a client (198.18.1.0/24, routed via
//! the director) and a real server (NAT, routed back via the director).
//!
//! 1. vsd creates the dummy vip0 at start; the service has no real server,
//!    so the VIP is not on it and `-L --announce` says why.
//! 2. `-a` a real server: VIP/32 appears on vip0; `-e -w 0` withdraws it,
//!    `-w 1` brings it back; `-d` withdraws, `-a` again announces.
//!    An IPv6 service's VIP goes on as /128 (no DAD, IPv6 switched on for
//!    the link vsd made) and off when the service is deleted.
//! 3. A rate-limited download through the VIP runs; `vsadm --drain`
//!    withdraws the VIP at once, `-L --announce` shows the drain with the
//!    connection left, a new connection during the drain is still served,
//!    the download completes sha256-identical, and the drain becomes done
//!    (`--drain --wait` returns; `vsd_director_drained 1`).
//! 4. `--undrain` announces again.
//! 5. `--reload` with `interface = "vip1"`: the VIP moves; vip0 (vsd's own
//!    dummy) goes.
//! 6. SIGTERM: the address and the dummy are gone.
//!
//! Needs root, /dev/net/tun, hugepages, curl, python3.

mod common;

use common::topo::{
    python3, run_in, sha256_of, text, write_random_file, DpdkPrefix, Ns, Proc, TempDir,
};
use common::*;
use std::time::Duration;

const VIP: &str = "198.18.0.100";
const VIP6: &str = "2001:2::64";
const RIP: &str = "198.18.0.20";
const CLIENT: &str = "198.18.1.10";
const DIP: &str = "198.18.0.1";
const CIP_GW: &str = "198.18.1.1";
const FILE_BYTES: usize = 8 * 1000 * 1000;
/// ~8 s of download: long enough to drain in the middle.
const RATE: &str = "1000k";

fn config(tap: &str, prefix: &str, iface: &str, with_server: bool) -> String {
    config_kind(tap, prefix, iface, with_server, "auto")
}

fn config_kind(tap: &str, prefix: &str, iface: &str, with_server: bool, kind: &str) -> String {
    let server = if with_server {
        format!(
            "\n[[service.real_server]]\naddress = \"{RIP}\"\nport = 8080\nweight = 1\nmethod = \"nat\"\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
control = 0
workers = [1]
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_tap0,iface={tap}"
mac = "02:00:00:00:0a:01"
addresses = ["{DIP}/24", "{CIP_GW}/24"]

[announce]
interface = "{iface}"
drain_timeout = 120
kind = "{kind}"

[[service]]
proto = "tcp"
vip = "{VIP}"
port = 80
scheduler = "rr"
{server}"#
    )
}

fn vsadm_ok(v: &Vsd, args: &[&str]) -> String {
    let out = v.vsadm(args);
    assert!(
        out.status.success(),
        "vsadm {args:?}: {}\n{}",
        text(&out),
        v.log_text()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `iface` exists in `ns`.
fn link_exists(ns: &Ns, iface: &str) -> bool {
    ns.run_any("ip", &["link", "show", "dev", iface])
        .status
        .success()
}

/// Whether VIP/32 is on `iface` in `ns`.
fn vip_on(ns: &Ns, iface: &str) -> bool {
    let out = ns.run_any("ip", &["-4", "-o", "addr", "show", "dev", iface]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/32 "))
}

/// Wait until the VIP is (or is not) on `iface`.
fn expect_vip(v: &Vsd, ns: &Ns, iface: &str, on: bool, when: &str) {
    let ok = wait_for(Duration::from_secs(5), || vip_on(ns, iface) == on);
    assert!(
        ok,
        "{when}: VIP {} {iface}\n{}\n{}",
        if on { "not on" } else { "still on" },
        vsadm_ok(v, &["-L", "--announce"]),
        v.log_text()
    );
}

fn announce_line(v: &Vsd) -> String {
    vsadm_ok(v, &["-L", "--announce"])
        .lines()
        .find(|l| l.starts_with(VIP))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One vsd at a time: each takes its hugepages.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn vips_follow_service_health_drain_and_exit() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = TempDir::new("vsd-ann-");
    let lan = Ns::new("anl");
    let (vns, cns, rns) = (Ns::new("anv"), Ns::new("anc"), Ns::new("anr"));
    let br = unique("anbr");
    lan.ip(&["link", "add", &br, "type", "bridge"]);
    lan.ip(&["link", "set", &br, "up"]);
    for (ns, addr, tag) in [(&cns, CLIENT, "anq"), (&rns, RIP, "anw")] {
        let (inner, outer) = (unique(tag), unique(tag));
        sh(
            "ip",
            &[
                "link", "add", &inner, "netns", &ns.name, "type", "veth", "peer", "name", &outer,
                "netns", &lan.name,
            ],
        );
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &inner]);
        ns.ip(&["link", "set", &inner, "up"]);
        lan.ip(&["link", "set", &outer, "master", &br, "up"]);
        common::topo::no_offloads(ns, &inner, false);
    }
    cns.ip(&["route", "add", "198.18.0.0/24", "via", CIP_GW]);
    rns.ip(&["route", "add", "198.18.1.0/24", "via", DIP]);

    let tap = unique("ant");
    let prefix = DpdkPrefix::new("vsdan");
    let mut v = Vsd::start_in(Some(&vns.name), &config(&tap, &prefix.name, "vip0", false));
    assert!(
        wait_for(Duration::from_secs(10), || vns
            .run_any("ip", &["link", "show", &tap])
            .status
            .success()),
        "tap {tap} missing:\n{}",
        v.log_text()
    );
    sh(
        "ip",
        &["-n", &vns.name, "link", "set", &tap, "netns", &lan.name],
    );
    lan.ip(&["link", "set", &tap, "master", &br, "up"]);

    // 1. the dummy exists and is up; the VIP has no real server yet
    assert!(
        wait_for(Duration::from_secs(5), || link_exists(&vns, "vip0")),
        "{}",
        v.log_text()
    );
    // a dummy, or a TUN device on kernels without the dummy driver
    let link = text(&vns.run("ip", &["-d", "link", "show", "dev", "vip0"]));
    assert!(
        (link.contains("dummy") || link.contains("tun")) && link.contains("UP,LOWER_UP"),
        "{link}"
    );
    assert!(!vip_on(&vns, "vip0"));
    assert_eq!(
        announce_line(&v),
        format!("{VIP} withdrawn no available real server")
    );

    // 2. the VIP follows the available real servers
    let rs = format!("{RIP}:8080");
    let svc = format!("{VIP}:80");
    vsadm_ok(&v, &["-a", "-t", &svc, "-r", &rs, "-m"]);
    expect_vip(&v, &vns, "vip0", true, "a real server added");
    assert_eq!(announce_line(&v), format!("{VIP} announced"));
    vsadm_ok(&v, &["-e", "-t", &svc, "-r", &rs, "-m", "-w", "0"]);
    expect_vip(&v, &vns, "vip0", false, "weight 0");
    assert_eq!(
        announce_line(&v),
        format!("{VIP} withdrawn no available real server")
    );
    vsadm_ok(&v, &["-e", "-t", &svc, "-r", &rs, "-m", "-w", "1"]);
    expect_vip(&v, &vns, "vip0", true, "weight 1 again");
    vsadm_ok(&v, &["-d", "-t", &svc, "-r", &rs]);
    expect_vip(&v, &vns, "vip0", false, "last real server removed");
    vsadm_ok(&v, &["-a", "-t", &svc, "-r", &rs, "-m"]);
    expect_vip(&v, &vns, "vip0", true, "real server back");
    // an IPv6 VIP goes on as /128 (no DAD: announced at once) and off
    // with its last real server
    let svc6 = format!("[{VIP6}]:80");
    vsadm_ok(&v, &["-A", "-t", &svc6, "-s", "rr"]);
    vsadm_ok(&v, &["-a", "-t", &svc6, "-r", "[2001:2::20]:8080", "-m"]);
    let vip6_on = || {
        let out = vns.run_any("ip", &["-6", "-o", "addr", "show", "dev", "vip0"]);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.contains(&format!("inet6 {VIP6}/128 ")) && !t.contains("tentative")
    };
    assert!(
        wait_for(Duration::from_secs(5), vip6_on),
        "IPv6 VIP not on vip0\n{}",
        vsadm_ok(&v, &["-L", "--announce"])
    );
    vsadm_ok(&v, &["-D", "-t", &svc6]);
    assert!(
        wait_for(Duration::from_secs(5), || !vip6_on()),
        "IPv6 VIP still on vip0\n{}",
        vsadm_ok(&v, &["-L", "--announce"])
    );
    let prom = vsadm_ok(&v, &["--prometheus"]);
    assert!(
        prom.contains(&format!("vsd_vip_announced{{vip=\"{VIP}\"}} 1\n"))
            && prom.contains("vsd_director_draining 0\n"),
        "{prom}"
    );

    // 3. drain in the middle of a download
    let web = files.path.join("web");
    std::fs::create_dir_all(&web).expect("web dir");
    let file = web.join("big.bin");
    write_random_file(&file, FILE_BYTES, 17);
    let want = sha256_of(None, &file);
    let web_s = web.display().to_string();
    let _http = Proc::spawn(
        Some(&rns),
        "http",
        &files.path,
        python3(),
        &["-m", "http.server", "-b", RIP, "-d", &web_s, "8080"],
    );
    assert!(
        wait_for(Duration::from_secs(15), || run_in(
            &rns,
            5,
            "curl",
            &[
                "-sS",
                "-m",
                "2",
                "-o",
                "/dev/null",
                &format!("http://{RIP}:8080/")
            ]
        )
        .status
        .success()),
        "http server did not come up"
    );
    let out = files.path.join("down.bin");
    let out_s = out.display().to_string();
    let mut curl = Proc::spawn(
        Some(&cns),
        "curl",
        &files.path,
        "curl",
        &[
            "-sS",
            "-m",
            "90",
            "--limit-rate",
            RATE,
            "-o",
            &out_s,
            &format!("http://{VIP}/big.bin"),
        ],
    );
    let flowing = wait_for(Duration::from_secs(10), || {
        out.metadata().map(|m| m.len() > 0).unwrap_or(false)
    });
    assert!(flowing, "download did not start: {}", curl.log_text());
    let reply = vsadm_ok(&v, &["--drain"]);
    assert!(
        reply.starts_with("draining: every VIP withdrawn from vip0"),
        "{reply}"
    );
    // withdrawn before the answer
    assert!(!vip_on(&vns, "vip0"), "VIP still on vip0 after --drain");
    assert!(curl.alive(), "download ended before the drain");
    let listing = vsadm_ok(&v, &["-L", "--announce"]);
    assert!(
        listing.contains(&format!("{VIP} ")) && listing.contains("withdrawn  draining"),
        "{listing}"
    );
    assert!(
        listing.contains("Drain: draining since ")
            && listing.contains("1 active connections left, timeout 120s, not done"),
        "{listing}"
    );
    let status = v.ask("status");
    assert_eq!(status["announce"]["drain"]["draining"], true, "{status}");
    assert_eq!(
        status["announce"]["vips"][0]["announced"], false,
        "{status}"
    );
    let prom = vsadm_ok(&v, &["--prometheus"]);
    assert!(
        prom.contains(&format!("vsd_vip_announced{{vip=\"{VIP}\"}} 0\n"))
            && prom.contains("vsd_director_draining 1\n")
            && prom.contains("vsd_director_drained 0\n"),
        "{prom}"
    );
    // what still arrives is served: a new connection during the drain
    let fresh = run_in(
        &cns,
        10,
        "curl",
        &[
            "-sS",
            "-m",
            "5",
            "-o",
            "/dev/null",
            &format!("http://{VIP}/"),
        ],
    );
    assert!(
        fresh.status.success(),
        "new connection refused during the drain: {}",
        text(&fresh)
    );
    let done = wait_for(Duration::from_secs(60), || !curl.alive());
    assert!(done, "download did not finish");
    let st = curl.child.wait().expect("curl status");
    assert!(st.success(), "download failed: {}", curl.log_text());
    assert_eq!(sha256_of(None, &out), want, "download differs");
    // no active connection left: done (`--wait` returns with the listing)
    let waited = vsadm_ok(&v, &["--drain", "--wait"]);
    assert!(waited.starts_with("already draining since"), "{waited}");
    assert!(
        waited.contains("0 active connections left")
            && waited.contains("done (no active connections after"),
        "{waited}"
    );
    assert!(vsadm_ok(&v, &["--prometheus"]).contains("vsd_director_drained 1\n"));
    assert!(!vip_on(&vns, "vip0"), "a done drain stays withdrawn");

    // 4. undrain: announced again
    let reply = vsadm_ok(&v, &["--undrain"]);
    assert!(reply.starts_with("undrained"), "{reply}");
    expect_vip(&v, &vns, "vip0", true, "undrain");
    assert!(vsadm_ok(&v, &["-L", "--announce"]).contains("Drain: not draining"));

    // 5. reload onto another interface
    std::fs::write(
        v.dir.join("vsd.toml"),
        config(&tap, &prefix.name, "vip1", true).replace("{dir}", &v.dir.display().to_string()),
    )
    .expect("rewrite config");
    vsadm_ok(&v, &["--reload"]);
    expect_vip(&v, &vns, "vip1", true, "reload onto vip1");
    assert!(
        wait_for(Duration::from_secs(5), || !link_exists(&vns, "vip0")),
        "vsd's old dummy vip0 stayed"
    );
    assert!(vsadm_ok(&v, &["-L", "--announce"]).starts_with("Announce interface vip1"));

    // 6. SIGTERM: address and dummy gone
    let status = v.stop();
    assert!(status.success(), "exit {status:?}:\n{}", v.log_text());
    assert!(!link_exists(&vns, "vip1"), "dummy vip1 left behind");
    let log = v.log_text();
    for want in [
        "announce 198.18.0.100 on vip0: served",
        "withdraw 198.18.0.100 from vip0: no available real server",
        "withdraw 198.18.0.100 from vip0: draining",
        "drain done after",
        "withdraw 198.18.0.100 from vip1: vsd stops",
    ] {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
    }
}

/// `--drain` without `[announce]` is refused, and nothing is created.
#[test]
fn without_announce_nothing_is_touched() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let vns = Ns::new("anx");
    let tap = unique("anxt");
    let prefix = DpdkPrefix::new("vsdanx");
    let cfg = config(&tap, &prefix.name, "vip0", true).replace(
        "[announce]\ninterface = \"vip0\"\ndrain_timeout = 120\nkind = \"auto\"\n",
        "",
    );
    assert!(!cfg.contains("announce"));
    let mut v = Vsd::start_in(Some(&vns.name), &cfg);
    let out = v.vsadm(&["--drain"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("vsd runs without [announce]"),
        "{}",
        text(&out)
    );
    assert_eq!(
        vsadm_ok(&v, &["-L", "--announce"]),
        "Announce: off (no [announce] in the configuration)\n"
    );
    let links = text(&vns.run("ip", &["-o", "link", "show"]));
    assert!(
        !links.contains("vip0") && !links.contains("dummy"),
        "{links}"
    );
    assert!(v.stop().success());
}

/// `kind = "tun"`: the interface is vsd's open TUN device, so a vsd killed
/// with SIGKILL takes it and its VIP with it (a routing daemon withdraws
/// at once instead of announcing a dead director).
#[test]
fn a_killed_vsd_takes_its_tun_interface_along() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let vns = Ns::new("ank");
    let tap = unique("ankt");
    let prefix = DpdkPrefix::new("vsdank");
    let mut v = Vsd::start_in(
        Some(&vns.name),
        &config_kind(&tap, &prefix.name, "vip0", true, "tun"),
    );
    expect_vip(&v, &vns, "vip0", true, "a served VIP");
    let link = text(&vns.run("ip", &["-d", "link", "show", "dev", "vip0"]));
    assert!(link.contains("tun"), "{link}");
    let child = v.child.as_mut().expect("vsd running");
    child.kill().expect("SIGKILL vsd");
    let _ = child.wait();
    v.child = None;
    assert!(
        wait_for(Duration::from_secs(5), || !link_exists(&vns, "vip0")),
        "vip0 outlived a killed vsd"
    );
}
