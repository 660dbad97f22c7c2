//! End to end on net_tap (see tests/common/topo.rs for the topologies):
//!
//! - a fwmark service whose mark comes from vsd's built-in classifier
//!   (`[[mark]]`, and `vsadm --add-mark` at run time) forwards real HTTP
//!   traffic (curl through the VIP), round-robin over both servers; a port
//!   no rule marks is not served;
//! - fragmented UDP: a datagram larger than the MTU goes through NAT and
//!   FULLNAT and arrives whole at the real server (which echoes it back,
//!   fragmented again, through vsd to the client).
//!
//! Needs root, /dev/net/tun, hugepages, curl, python3, nft, ethtool.

mod common;

use common::topo::*;
use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;

const VSD_LAN_MAC: &str = "02:00:00:00:00:01";
const VSD_SRV_MAC: &str = "02:00:00:00:01:01";

static SERIAL: Mutex<()> = Mutex::new(());

const ONE_WORKER: &str = "control = 0\nworkers = [1]\n";
/// Four workers on the two CPUs: net_tap spreads the fragments of one
/// datagram over its queues, so they meet only through steering.
const FOUR_WORKERS: &str =
    "control = 0\nworkers = [1, 2, 3, 4]\ncpu_map = \"0@0,(1,3)@1,(2,4)@0\"\n";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn prerequisites() -> bool {
    if !e2e_prerequisites(true) {
        return false;
    }
    let tools = ["curl", "nft", "ethtool", "sha256sum", "timeout", "python3"];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("these tests need: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// vsd with a port on each side and `services` appended.
fn vsd_config(lan_tap: &str, srv_tap: &str, prefix: &str, lcores: &str, services: &str) -> String {
    format!(
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

[[port]]
name = "srv0"
device = "net_tap1,iface={srv_tap}"
mac = "{VSD_SRV_MAC}"
addresses = ["{SRV_DIP}/24"]

[[vip]]
address = "{VIP}"
port = "lan0"
{services}"#
    )
}

struct Rig {
    vsd: Vsd,
    topo: Topology,
    _prefix: DpdkPrefix,
}

impl Rig {
    fn start(method: Method, services: &str) -> Rig {
        Self::start_on(method, ONE_WORKER, services)
    }

    fn start_on(method: Method, lcores: &str, services: &str) -> Rig {
        let lan_tap = unique("hl");
        let srv_tap = unique("hs");
        let prefix = DpdkPrefix::new("vsdh");
        let vsd = Vsd::start(&vsd_config(
            &lan_tap,
            &srv_tap,
            &prefix.name,
            lcores,
            services,
        ));
        let topo = Topology::build(method, &lan_tap, Some(&srv_tap));
        Rig {
            vsd,
            topo,
            _prefix: prefix,
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() || self.vsd.child.is_none() {
            return;
        }
        for args in [&["--counters"][..], &["-Ln", "--stats"][..], &["-Lnc"][..]] {
            eprintln!(
                "--- vsadm {} ---\n{}",
                args.join(" "),
                text(&self.vsd.vsadm(args))
            );
        }
    }
}

/// `n` sequential HTTP requests to `VIP:port`, each a new connection: the
/// answering servers' names and counts, or curl's failure.
fn http_ids(topo: &Topology, port: u16, n: usize) -> Result<BTreeMap<String, usize>, String> {
    let url = format!("http://{VIP}:{port}/id");
    let mut args: Vec<&str> = vec![
        "-sS",
        "--fail",
        "--connect-timeout",
        "3",
        "--max-time",
        "10",
        "-H",
        "Connection: close",
    ];
    for _ in 0..n {
        args.push(&url);
    }
    let out = topo.client_run(120, "curl", &args);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(text(&out));
    }
    let mut counts = BTreeMap::new();
    for line in body.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

#[test]
fn fwmark_service_with_classifier_forwards_http() {
    let _one = serial();
    if !prerequisites() {
        return;
    }
    let rport = Method::Nat.rs_http_port();
    let mut services = String::from("\n[[service]]\nfwmark = 1\nscheduler = \"rr\"\n");
    for rs in RS_SRV {
        services.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {rport}\nmethod = \"nat\"\n"
        ));
    }
    services.push_str(&format!(
        "\n[[mark]]\ndst = \"{VIP}/32\"\nproto = \"tcp\"\ndport = \"80:90\"\nmark = 1\n"
    ));
    let mut rig = Rig::start(Method::Nat, &services);

    let counts = http_ids(&rig.topo, 80, 10).expect("HTTP through the fwmark service");
    assert_eq!(counts.get("rs1"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("rs2"), Some(&5), "{counts:?}");
    let counts = http_ids(&rig.topo, 90, 2).expect("port 90 is in the marked range");
    assert_eq!(counts.values().sum::<usize>(), 2, "{counts:?}");
    // port 91: no rule marks it, no service takes it
    assert!(http_ids(&rig.topo, 91, 1).is_err());

    // a rule added at run time covers port 91 too
    let o = rig.vsd.vsadm(&[
        "--add-mark",
        "--dst",
        VIP,
        "--proto",
        "tcp",
        "--dport",
        "91",
        "--set-mark",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let marks = text(&rig.vsd.vsadm(&["-L", "--marks"]));
    assert!(
        marks.contains("--add-mark --dst 198.18.0.100/32 --proto tcp --dport 91 --set-mark 1"),
        "{marks}"
    );
    let counts = http_ids(&rig.topo, 91, 2).expect("port 91 after --add-mark");
    assert_eq!(counts.values().sum::<usize>(), 2, "{counts:?}");
    let stats = text(&rig.vsd.vsadm(&["-Ln", "--stats"]));
    assert!(stats.contains("FWM  1"), "{stats}");

    rig.topo.assert_servers_alive();
    let status = rig.vsd.stop();
    assert!(status.success(), "vsd: {status:?}\n{}", rig.vsd.log_text());
}

/// `count` UDP queries of `size` bytes (fragmented on the wire) through the
/// VIP: every one must come back whole (the server echoes it).
fn big_udp(topo: &Topology, count: usize, size: usize) -> Result<String, String> {
    let count = count.to_string();
    let size = size.to_string();
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
            "51000",
            "--timeout",
            "3",
            "--size",
            &size,
        ],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text(&out))
    }
}

fn fragmented_udp(method: Method, lcores: &str) {
    let _one = serial();
    if !prerequisites() {
        return;
    }
    let locals = if method == Method::FullNat {
        format!("local_addresses = [\"{LIP}\"]\n")
    } else {
        String::new()
    };
    let mut services = format!(
        "\n[[service]]\nproto = \"udp\"\nvip = \"{VIP}\"\nport = {UDP_PORT}\nscheduler = \"rr\"\n{locals}"
    );
    for rs in RS_SRV {
        services.push_str(&format!(
            "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {}\nmethod = \"{}\"\n",
            method.rs_udp_port(),
            method.config_name()
        ));
    }
    let mut rig = Rig::start_on(method, lcores, &services);
    // 3000-byte datagrams: three fragments each way, through the director
    let answers = big_udp(&rig.topo, 6, 3000)
        .unwrap_or_else(|e| panic!("{method:?}: fragmented UDP through the VIP: {e}"));
    let mut counts = BTreeMap::new();
    for l in answers.lines() {
        *counts.entry(l.to_string()).or_insert(0usize) += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), 6, "{method:?}: {counts:?}");
    if lcores == ONE_WORKER {
        assert_eq!(counts.get("rs1"), Some(&3), "{method:?}: {counts:?}");
    }
    let c = rig.vsd.ask("counters");
    let forwarded = c["forwarding"]["events"]["fragments_forwarded"]
        .as_u64()
        .unwrap_or(0);
    // 6 datagrams x (2 non-first fragments each way)
    assert!(forwarded >= 24, "{method:?}: {c}");
    rig.topo.assert_servers_alive();
    let status = rig.vsd.stop();
    assert!(status.success(), "vsd: {status:?}\n{}", rig.vsd.log_text());
}

#[test]
fn fragmented_udp_through_nat() {
    fragmented_udp(Method::Nat, ONE_WORKER);
}

#[test]
fn fragmented_udp_through_fullnat() {
    fragmented_udp(Method::FullNat, ONE_WORKER);
}

#[test]
fn fragmented_udp_through_nat_four_workers() {
    fragmented_udp(Method::Nat, FOUR_WORKERS);
}

#[test]
fn fragmented_udp_through_fullnat_four_workers() {
    fragmented_udp(Method::FullNat, FOUR_WORKERS);
}
