//! End to end on net_tap: vsd creates a tap interface, the test moves it
//! into a namespace of its own and talks to vsd from there with the
//! kernel's own ping and ARP. Needs root, /dev/net/tun and hugepages.

mod common;

use common::*;
use std::time::{Duration, Instant};

const VSD_MAC: &str = "02:00:00:00:00:01";
const DIP: &str = "198.18.0.1";
const VIP: &str = "198.18.0.100";
const PEER: &str = "198.18.0.2";

fn config(iface: &str, prefix: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
control = 0
workers = [1]

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_tap0,iface={iface}"
mac = "{VSD_MAC}"
addresses = ["{DIP}/24"]

[[vip]]
address = "{VIP}"
port = "lan0"
"#
    )
}

fn hugepage_files(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["/dev/hugepages", "/mnt/huge"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(prefix) {
                    found.push(format!("{dir}/{n}"));
                }
            }
        }
    }
    found
}

#[test]
fn vip_answers_arp_and_ping_and_vsd_resolves_neighbours() {
    if !e2e_prerequisites(true) {
        return;
    }
    let iface = unique("vt");
    let prefix = unique("vsdt");
    let ns = Netns::new(&unique("vsdc"));
    let mut vsd = Vsd::start(&config(&iface, &prefix));

    // the tap appears in our namespace; move it into the client namespace
    assert!(
        wait_for(Duration::from_secs(10), || {
            sh_any("ip", &["link", "show", &iface]).status.success()
        }),
        "tap {iface} not created"
    );
    sh("ip", &["link", "set", &iface, "netns", &ns.name]);
    ns.ip(&["addr", "add", &format!("{PEER}/24"), "dev", &iface]);
    ns.ip(&["link", "set", &iface, "up"]);

    // 1. vsd must resolve us: the namespace knows vsd's MAC statically and
    //    never ARPs, so the echo reply can only come back if vsd sends an
    //    ARP request for PEER and learns the answer.
    ns.ip(&[
        "neigh",
        "replace",
        DIP,
        "lladdr",
        VSD_MAC,
        "dev",
        &iface,
        "nud",
        "permanent",
    ]);
    let ping = ns.run_any("ping", &["-c", "3", "-i", "0.2", "-W", "3", DIP]);
    assert!(
        ping.status.success(),
        "ping to the director address failed:\n{}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    assert!(
        vsd.event("arp_requests_out") >= 1,
        "vsd sent no ARP request"
    );
    assert!(vsd.event("neigh_learned") >= 1, "vsd learned no neighbour");
    ns.ip(&["neigh", "del", DIP, "dev", &iface]);

    // 2. the namespace resolves the VIP through vsd's ARP replies
    let ping = ns.run_any("ping", &["-c", "3", "-i", "0.2", "-W", "3", VIP]);
    assert!(
        ping.status.success(),
        "ping to the VIP failed:\n{}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    let neigh = String::from_utf8_lossy(&ns.ip(&["neigh", "show", VIP]).stdout).into_owned();
    assert!(
        neigh.contains(VSD_MAC),
        "namespace neighbour table lacks vsd's MAC for the VIP: {neigh:?}"
    );
    let ping = ns.run_any("ping", &["-c", "2", "-i", "0.2", "-W", "3", DIP]);
    assert!(ping.status.success(), "second ping to the director address");

    // counters and vsadm agree with what happened
    assert!(vsd.event("arp_replies_out") >= 1);
    assert!(vsd.event("icmp_echo_out") >= 8);
    let st = vsd.vsadm(&["--status"]);
    assert!(st.status.success(), "vsadm --status failed");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("state: running"), "{text}");
    assert!(text.contains("port lan0: driver net_tap"), "{text}");
    assert!(text.contains(&format!("vips: {VIP}")), "{text}");
    let ct = vsd.vsadm(&["--counters"]);
    assert!(ct.status.success());
    assert!(String::from_utf8_lossy(&ct.stdout).contains("icmp_echo_out"));
    // the worker accounts its cycles: turns that carried the pings were
    // busy, the polling in between idle (issue 19)
    assert!(vsd.event("busy_cycles") > 0, "no busy cycles counted");
    assert!(vsd.event("idle_cycles") > 0, "no idle cycles counted");
    assert!(
        String::from_utf8_lossy(&ct.stdout).contains("cycles per worker:"),
        "{}",
        String::from_utf8_lossy(&ct.stdout)
    );

    // a worker that loses its CPU counts it: the whole process stopped for
    // 200 ms makes the worker's next loop turn a stall at least that long
    let (stalls0, stall_us0) = (vsd.event("stalls"), vsd.event("stall_us"));
    let pid = vsd.child.as_ref().map(|c| c.id()).expect("vsd is running") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid; it has not been reaped
    // (the Child is still held), so the pid is still ours.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while vsd.event("stalls") == stalls0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (stalls1, stall_us1) = (vsd.event("stalls"), vsd.event("stall_us"));
    assert!(stalls1 > stalls0, "no stall counted for a 200 ms stop");
    assert!(
        stall_us1 - stall_us0 >= 190_000,
        "stall_us grew by {} us for a 200 ms stop",
        stall_us1 - stall_us0
    );

    // clean stop
    let status = vsd.stop();
    assert!(
        status.success(),
        "vsd exit status {status:?}:\n{}",
        vsd.log_text()
    );
    assert!(
        hugepage_files(&prefix).is_empty(),
        "hugepage files left: {:?}",
        hugepage_files(&prefix)
    );
    assert!(!vsd.socket.exists(), "control socket left behind");
    assert!(
        !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "DPDK runtime directory left behind"
    );
}

#[test]
fn bad_config_names_key_and_position() {
    let dir = std::env::temp_dir().join(unique("vsd-badcfg-"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[lcores]\ncontrol = 0\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"198.18.0.1/40\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:8:"), "no file:line in {err:?}");
    assert!(err.contains("addresses"), "no key in {err:?}");
}
