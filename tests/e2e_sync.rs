//! End to end: connection synchronisation between two vsd directors.
//!
//! Director A (master sync daemon) and director B (backup) each run in a
//! network namespace of their own with a kernel twin of their port; both
//! ports hang on one bridge (the LAN, in a namespace of its own) with a
//! client (its own subnet, 198.18.1.0/24, routed via a director) and a
//! real server (198.18.0.0/24, routed back via a director). Both carry the
//! same services: NAT on VIP:80, FULLNAT on VIP:81 (local address
//! 198.18.2.50, in both pools, routed via the active director).
//!
//! 1. `--start-daemon` on both; `-L --daemon` shows the kernel's defaults.
//! 2. Malformed sync datagrams to B's group (wrong version, short, bad
//!    size, wrong sync ID, truncated entry, an unknown mandatory option,
//!    an entry for a service B does not have) are dropped and counted per
//!    reason; B's table stays empty.
//! 3. Two rate-limited downloads through A (NAT and FULLNAT): B's `-Lnc`
//!    shows both connections with A's real server and ports.
//! 4. Takeover without keepalived: the client's and the server's routes
//!    move to B and A is SIGKILLed; both downloads complete byte-identical
//!    through B (NAT: same real server; FULLNAT: the same local address
//!    and port, or the server would reset the connection).
//! 5. The sync traffic captured on the LAN decodes with `tshark -O ipvs`
//!    without errors; messages and entries match A's counters.
//!
//! Both roles on both directors (`both_directors_run_master_and_backup`):
//! A and B each run a master and a backup daemon at once. After the
//! takeover B's master syncs the downloads it now carries; A comes back
//! (a fresh vsd with both daemons), learns them from B, and takes them
//! back when B is SIGKILLed in turn: two failovers, A → B → A, and both
//! downloads complete byte-identical.
//!
//! Needs root, /dev/net/tun, hugepages, tshark/dumpcap, curl, python3.

mod common;

use common::topo::{
    python3, run_in, sha256_of, text, write_random_file, DpdkPrefix, Ns, Proc, TempDir,
};
use common::*;
use std::time::Duration;

const VIP: &str = "198.18.0.100";
const LIP: &str = "198.18.2.50";
const RIP: &str = "198.18.0.20";
const CLIENT: &str = "198.18.1.10";
const LAN_SNIFF: &str = "198.18.0.250";
const SYNCID: &str = "7";
const FILE_BYTES: usize = 16 * 1000 * 1000;
/// The failback scenario needs twice the time.
const FILE_BYTES_FAILBACK: usize = 32 * 1000 * 1000;
/// Client download rate, bytes/s: the transfer takes ~10 s, long enough
/// to sync, check and take over in the middle.
const RATE: &str = "1500k";

struct Director {
    dip: &'static str,
    cip_gw: &'static str,
    mac: &'static str,
}

const A: Director = Director {
    dip: "198.18.0.1",
    cip_gw: "198.18.1.1",
    mac: "02:00:00:00:0a:01",
};
const B: Director = Director {
    dip: "198.18.0.2",
    cip_gw: "198.18.1.2",
    mac: "02:00:00:00:0b:01",
};

fn config(d: &Director, tap: &str, twin: &str, prefix: &str, lcores: &str, extra: &str) -> String {
    let mut c = format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
control = 0
{lcores}
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_tap0,iface={tap}"
mac = "{mac}"
addresses = ["{dip}/24", "{gw}/24"]
kernel_iface = "{twin}"
{extra}
"#,
        mac = d.mac,
        dip = d.dip,
        gw = d.cip_gw,
    );
    for (vport, method, locals) in [
        (80, "nat", String::new()),
        (81, "fullnat", format!("local_addresses = [\"{LIP}\"]\n")),
    ] {
        c.push_str(&format!(
            r#"
[[service]]
proto = "tcp"
vip = "{VIP}"
port = {vport}
scheduler = "rr"
{locals}
[[service.real_server]]
address = "{RIP}"
port = 8080
weight = 1
method = "{method}"
"#
        ));
    }
    c
}

/// Sends malformed sync datagrams to the group from `argv[1]`.
const FUZZ: &str = r#"
import socket, struct, sys
sid = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
msgs = [
    bytes([0, sid, 0, 8, 0, 2, 0, 0]),                  # version 2
    bytes([0, sid, 0]),                                 # shorter than a header
    bytes([0, sid, 0, 100, 0, 1, 0, 0]),                # size says 100
    bytes([0, sid + 1, 0, 8, 0, 1, 0, 0]),              # another sync id
    bytes([0, sid, 0, 12, 1, 1, 0, 0, 0, 6, 0, 4]),     # entry cut short
]
def entry(vport, option=b""):
    ip = socket.inet_aton
    e = struct.pack("!BBHIHHHHII4s4s4s", 0, 6, 36 + len(option), 0, 1,
                    40000, vport, 8080, 0, 900,
                    ip("198.18.1.99"), ip("198.18.0.100"), ip("198.18.0.20"))
    return e + option
def message(entries):
    body = b"".join(entries)
    return struct.pack("!BBHBBH", 0, sid, 8 + len(body), len(entries), 1, 0) + body
msgs += [
    message([entry(80, bytes([9, 2, 0, 0]))]),          # unknown mandatory option
    message([entry(99)]),                               # no such service here
]
for m in msgs:
    s.sendto(m, ("224.0.0.81", 8848))
print("sent", len(msgs))
"#;

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

fn sync_counter(v: &Vsd, name: &str) -> u64 {
    v.ask("counters")["sync"]["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

/// `-Lnc` rows for `vport` as (client, virtual, real) strings.
fn conns_to(v: &Vsd, vport: u16) -> Vec<(String, String, String)> {
    vsadm_ok(v, &["-Lnc"])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 6 && w[0] == "TCP" && w[4] == format!("{VIP}:{vport}"))
                .then(|| (w[3].to_string(), w[4].to_string(), w[5].to_string()))
        })
        .collect()
}

/// The master's messages leave through kernel sockets on its port's twin
/// (the exception path carries them to the wire).
#[test]
fn backup_takes_over_nat_and_fullnat_connections() {
    if !e2e_prerequisites(true) {
        return;
    }
    scenario("workers = [1]", false, Some("kernel"));
}

/// The master's worker sends its messages itself, out of the port
/// (`--sync-transport dataplane`); the backup takes them in through its
/// port's exception path into its kernel socket.
#[test]
fn backup_takes_over_from_a_dataplane_master() {
    if !e2e_prerequisites(true) {
        return;
    }
    scenario("workers = [1]", false, Some("dataplane"));
}

/// Two workers on each director (both on CPU 1): the backup hands each
/// entry to the worker owning its tuples (NAT: reply owner plus a
/// redirect on the request's worker).
#[test]
fn backup_takes_over_with_two_workers() {
    if !e2e_prerequisites(true) {
        return;
    }
    // the default transport: from the data plane, each worker its own
    scenario("workers = [1, 2]\ncpu_map = \"0@0,1@1,2@1\"", false, None);
}

/// A and B both run a master and a backup daemon; the connections go
/// A → B → A through two SIGKILLs.
#[test]
fn both_directors_run_master_and_backup() {
    if !e2e_prerequisites(true) {
        return;
    }
    scenario("workers = [1]", true, None);
}

/// The scenarios run one at a time: each takes two directors' hugepages.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `transport`: A's `--sync-transport` (`None`: the default, auto, which
/// sends from the data plane on a port's twin).
fn scenario(lcores: &str, both_roles: bool, transport: Option<&str>) {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // the both-roles variant names its namespaces and prefixes hs...
    let n = |tag: &str| {
        if both_roles {
            format!("hs{tag}")
        } else {
            tag.to_string()
        }
    };
    let files = TempDir::new("vsd-sync-");
    let lan = Ns::new(&n("sl"));
    let (vna, vnb) = (Ns::new(&n("sa")), Ns::new(&n("sb")));
    let (cns, rns) = (Ns::new(&n("sc")), Ns::new(&n("sr")));
    let br = unique(&n("sbr"));
    lan.ip(&["link", "add", &br, "type", "bridge"]);
    lan.ip(&["addr", "add", &format!("{LAN_SNIFF}/24"), "dev", &br]);
    lan.ip(&["link", "set", &br, "up"]);

    // client and real server on the bridge
    for (ns, addr, tag) in [(&cns, CLIENT, "sq"), (&rns, RIP, "sw")] {
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
        ns.ip(&["link", "set", "lo", "up"]);
        common::topo::no_offloads(ns, &inner, false);
    }
    cns.ip(&["route", "add", "198.18.0.0/24", "via", A.cip_gw]);
    rns.ip(&["route", "add", "198.18.1.0/24", "via", A.dip]);
    rns.ip(&["route", "add", "198.18.2.0/24", "via", A.dip]);

    // the directors
    // A's daemon comes from vsadm, B's from the configuration file
    let start = |d: &Director, ns: &Ns, tag: &str| {
        let (tap, twin) = (unique(&format!("{tag}t")), unique(&format!("{tag}k")));
        let prefix = DpdkPrefix::new(&if both_roles {
            format!("hsvsd{tag}")
        } else {
            format!("vsds{tag}")
        });
        let extra = if tag == "b" {
            format!(
                "\n[[sync_daemon]]\nrole = \"backup\"\nmcast_interface = \"{twin}\"\nsyncid = {SYNCID}\n"
            )
        } else {
            String::new()
        };
        let v = Vsd::start_in(
            Some(&ns.name),
            &config(d, &tap, &twin, &prefix.name, lcores, &extra),
        );
        assert!(
            wait_for(Duration::from_secs(10), || ns
                .run_any("ip", &["link", "show", &tap])
                .status
                .success()),
            "tap {tap} missing:\n{}",
            v.log_text()
        );
        sh(
            "ip",
            &["-n", &ns.name, "link", "set", &tap, "netns", &lan.name],
        );
        lan.ip(&["link", "set", &tap, "master", &br, "up"]);
        (v, twin, prefix)
    };
    let (mut va, twin_a, pa) = start(&A, &vna, "a");
    let (vb, twin_b, _pb) = start(&B, &vnb, "b");

    // 1. the daemons, with the kernel's defaults filled in
    let refused = va.vsadm(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        "nonexistent0",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("no such interface"),
        "{}",
        text(&refused)
    );
    let mut master_args = vec![
        "--start-daemon",
        "master",
        "--mcast-interface",
        &twin_a,
        "--syncid",
        SYNCID,
    ];
    if let Some(t) = transport {
        master_args.extend(["--sync-transport", t]);
    }
    vsadm_ok(&va, &master_args);
    let twice = vb.vsadm(&["--start-daemon", "backup", "--mcast-interface", &twin_b]);
    assert!(text(&twice).contains("already running"), "{}", text(&twice));
    let master_a = format!(
        "master sync daemon (mcast={twin_a}, syncid={SYNCID}, maxlen=1472, group=224.0.0.81, port=8848, ttl=1{})\n",
        if transport == Some("kernel") {
            ""
        } else {
            ", transport=dataplane"
        }
    );
    assert_eq!(
        va.ask("counters")["sync"]["transport"],
        transport.unwrap_or("dataplane"),
        "{}",
        va.ask("counters")["sync"]
    );
    if both_roles {
        for (v, role, twin) in [(&va, "backup", &twin_a), (&vb, "master", &twin_b)] {
            vsadm_ok(
                v,
                &[
                    "--start-daemon",
                    role,
                    "--mcast-interface",
                    twin,
                    "--syncid",
                    SYNCID,
                ],
            );
        }
        let listed = vsadm_ok(&va, &["-L", "--daemon"]);
        assert!(listed.starts_with(&master_a), "{listed}");
        assert!(listed.contains("backup sync daemon"), "{listed}");
        let listed = vsadm_ok(&vb, &["-L", "--daemon"]);
        assert!(listed.contains("master sync daemon"), "{listed}");
    } else {
        assert_eq!(vsadm_ok(&va, &["-L", "--daemon"]), master_a);
    }
    let listed_b = vsadm_ok(&vb, &["-L", "--daemon"]);
    assert!(
        listed_b.starts_with(&format!(
            "backup sync daemon (mcast={twin_b}, syncid={SYNCID}, maxlen="
        )),
        "{listed_b}"
    );

    // capture the master's sync traffic on the LAN
    let cap = files.path.join("sync.pcap");
    let cap_s = cap.display().to_string();
    let mut dump = Proc::spawn(
        Some(&lan),
        "dumpcap",
        &files.path,
        "dumpcap",
        &[
            "-q",
            "-i",
            &br,
            "-f",
            &format!("udp port 8848 and src host {}", A.dip),
            "-w",
            &cap_s,
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || cap.exists()),
        "dumpcap: {}",
        dump.log_text()
    );

    // 2. malformed datagrams: dropped, counted, table untouched
    let fz = run_in(&lan, 20, python3(), &["-c", FUZZ, LAN_SNIFF, SYNCID]);
    assert!(fz.status.success(), "fuzz: {}", text(&fz));
    let reasons = [
        "dropped_message_bad_version",
        "dropped_message_header_too_short",
        "dropped_message_size_mismatch",
        "dropped_message_syncid_mismatch",
        "dropped_message_entry_truncated",
    ];
    let all_counted = wait_for(Duration::from_secs(10), || {
        reasons.iter().all(|r| sync_counter(&vb, r) == 1)
            && sync_counter(&vb, "dropped_entry_unknown_mandatory_option") == 1
            && sync_counter(&vb, "worker_refused_no_service") >= 1
    });
    assert!(
        all_counted,
        "backup counters: {}",
        vb.ask("counters")["sync"]
    );
    assert_eq!(sync_counter(&vb, "received_messages"), 7);
    // a director's own messages never reach its own backup (no loop)
    if both_roles {
        assert_eq!(sync_counter(&va, "received_messages"), 7);
    }
    assert_eq!(sync_counter(&vb, "worker_installed"), 0);
    assert!(conns_to(&vb, 80).is_empty() && conns_to(&vb, 81).is_empty());

    // 3. two slow downloads through A
    let web = files.path.join("web");
    std::fs::create_dir_all(&web).expect("web dir");
    let file = web.join("big.bin");
    let bytes = if both_roles {
        FILE_BYTES_FAILBACK
    } else {
        FILE_BYTES
    };
    write_random_file(&file, bytes, 15);
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
    let mut downloads = Vec::new();
    for vport in [80u16, 81] {
        let out = files.path.join(format!("down{vport}.bin"));
        let out_s = out.display().to_string();
        let url = format!("http://{VIP}:{vport}/big.bin");
        let p = Proc::spawn(
            Some(&cns),
            &format!("curl{vport}"),
            &files.path,
            "curl",
            &["-sS", "-m", "120", "--limit-rate", RATE, "-o", &out_s, &url],
        );
        downloads.push((vport, p, out));
    }

    // B learns both connections, with A's real server and ports
    let mut a_rows = Vec::new();
    let synced = wait_for(Duration::from_secs(8), || {
        a_rows = [80, 81].iter().flat_map(|p| conns_to(&va, *p)).collect();
        let b_rows: Vec<_> = [80, 81].iter().flat_map(|p| conns_to(&vb, *p)).collect();
        a_rows.len() == 2 && a_rows.iter().all(|r| b_rows.contains(r))
    });
    assert!(
        synced,
        "A:\n{}\nB:\n{}\nB sync: {}",
        vsadm_ok(&va, &["-Lnc"]),
        vsadm_ok(&vb, &["-Lnc"]),
        vb.ask("counters")["sync"]
    );
    for (client, _, real) in &a_rows {
        assert!(client.starts_with(&format!("{CLIENT}:")), "{client}");
        assert_eq!(real, &format!("{RIP}:8080"));
    }
    assert!(sync_counter(&va, "sent_messages") >= 1);
    if transport != Some("kernel") {
        // sent by the workers themselves, nothing lost on the way
        let sync = va.ask("counters")["sync"].clone();
        let per_worker: u64 = sync["dataplane_workers"]
            .as_array()
            .expect("per-worker data-plane counters")
            .iter()
            .map(|w| w["counters"]["sent_messages"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            Some(per_worker),
            sync["counters"]["sent_messages"].as_u64(),
            "{sync}"
        );
        for reason in ["no_mbuf", "tx_full", "too_long", "no_source"] {
            assert_eq!(
                sync["counters"][format!("dataplane_dropped_message_{reason}")].as_u64(),
                Some(0),
                "{sync}"
            );
        }
    }
    assert!(sync_counter(&vb, "worker_installed") >= 2);

    eprintln!("A -Lnc before takeover: {a_rows:?}");
    // the takeover must happen in the middle of both downloads
    for (vport, p, _) in &mut downloads {
        assert!(p.alive(), "download via :{vport} ended before the takeover");
    }
    // 4. takeover: routes to B, A gone; the downloads go on through B
    cns.ip(&["route", "replace", "198.18.0.0/24", "via", B.cip_gw]);
    rns.ip(&["route", "replace", "198.18.1.0/24", "via", B.dip]);
    rns.ip(&["route", "replace", "198.18.2.0/24", "via", B.dip]);
    // the master's last partial message goes out when its daemon stops
    vsadm_ok(&va, &["--stop-daemon", "master"]);
    let left = vsadm_ok(&va, &["-L", "--daemon"]);
    if both_roles {
        assert!(left.starts_with("backup sync daemon ("), "{left}");
        assert_eq!(left.lines().count(), 1, "{left}");
    } else {
        assert_eq!(left, "");
    }
    let sent_msgs = sync_counter(&va, "sent_messages");
    let sent_entries = sync_counter(&va, "sent_entries");
    // A dies as a crashed director does: SIGKILL
    let a_child = va.child.as_mut().expect("A running");
    a_child.kill().expect("SIGKILL A");
    let _ = a_child.wait();
    va.child = None;
    // A's messages are all out: the capture ends here, dumpcap stopped
    // with SIGINT so that it writes what it buffered
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &dump.child.id().to_string()])
        .status();
    let ended = wait_for(Duration::from_secs(10), || {
        matches!(dump.child.try_wait(), Ok(Some(_)))
    });
    assert!(ended, "dumpcap did not stop: {}", dump.log_text());
    drop(dump);
    let mut survivor = vb;
    let mut _prefix_a2 = None;
    if both_roles {
        // B's master syncs what it now carries; A comes back (a fresh vsd
        // running both daemons), learns the downloads from B and takes
        // them back when B dies in turn
        drop(pa);
        let (va2, twin_a2, pa2) = start(&A, &vna, "a");
        _prefix_a2 = Some(pa2);
        for role in ["backup", "master"] {
            vsadm_ok(
                &va2,
                &[
                    "--start-daemon",
                    role,
                    "--mcast-interface",
                    &twin_a2,
                    "--syncid",
                    SYNCID,
                ],
            );
        }
        let relearnt = wait_for(Duration::from_secs(10), || {
            let rows: Vec<_> = [80, 81].iter().flat_map(|p| conns_to(&va2, *p)).collect();
            a_rows.iter().all(|r| rows.contains(r))
        });
        assert!(
            relearnt,
            "A again:\n{}\nB:\n{}\nB sync: {}\nA sync: {}",
            vsadm_ok(&va2, &["-Lnc"]),
            vsadm_ok(&survivor, &["-Lnc"]),
            survivor.ask("counters")["sync"],
            va2.ask("counters")["sync"]
        );
        for (vport, p, _) in &mut downloads {
            assert!(p.alive(), "download via :{vport} ended before the failback");
        }
        cns.ip(&["route", "replace", "198.18.0.0/24", "via", A.cip_gw]);
        rns.ip(&["route", "replace", "198.18.1.0/24", "via", A.dip]);
        rns.ip(&["route", "replace", "198.18.2.0/24", "via", A.dip]);
        eprintln!(
            "failback: B sent {} entries, A installed {}",
            sync_counter(&survivor, "sent_entries"),
            sync_counter(&va2, "worker_installed")
        );
        let b_child = survivor.child.as_mut().expect("B running");
        b_child.kill().expect("SIGKILL B");
        let _ = b_child.wait();
        survivor.child = None;
        survivor = va2;
    }
    for (vport, p, out) in &mut downloads {
        let done = wait_for(Duration::from_secs(90), || !p.alive());
        assert!(done, "download via :{vport} did not finish");
        let st = p.child.wait().expect("curl status");
        assert!(
            st.success(),
            "download via :{vport} failed after the takeover: {}\n-Lnc:\n{}\ncounters: {}",
            p.log_text(),
            vsadm_ok(&survivor, &["-Lnc"]),
            survivor.ask("counters")
        );
        assert_eq!(sha256_of(None, out), want, "download via :{vport} differs");
    }

    // 5. every captured sync message decodes; counts match A's
    let tshark = |args: &[&str]| {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r", &cap_s, "-d", "udp.port==8848,ipvs"])
            .args(args)
            .output()
            .expect("run tshark");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let flagged = tshark(&["-Y", "_ws.malformed || _ws.expert || !ipvs"]);
    assert!(flagged.trim().is_empty(), "tshark flags:\n{flagged}");
    let counts = tshark(&["-T", "fields", "-e", "ipvs.conncount"]);
    let per_msg: Vec<u64> = counts
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(per_msg.len() as u64, sent_msgs, "messages captured vs sent");
    assert_eq!(
        per_msg.iter().sum::<u64>(),
        sent_entries,
        "entries captured vs sent"
    );
    eprintln!(
        "sync: {sent_msgs} messages / {sent_entries} entries sent and captured; \
         last director: {}",
        survivor.ask("counters")["sync"]
    );
    // every entry is one of the test's connections (or its template)
    let addrs = tshark(&[
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=|",
        "-e",
        "ipvs.caddr",
        "-e",
        "ipvs.vaddr",
        "-e",
        "ipvs.daddr",
    ]);
    let mut seen = 0u64;
    for line in addrs.lines() {
        let cols: Vec<Vec<&str>> = line.split('|').map(|c| c.split(',').collect()).collect();
        assert_eq!(cols.len(), 3, "{line}");
        for ((c, v), r) in cols[0].iter().zip(&cols[1]).zip(&cols[2]) {
            assert_eq!((*c, *v, *r), (CLIENT, VIP, RIP), "{line}");
            seen += 1;
        }
    }
    assert_eq!(seen, sent_entries, "{addrs}");
    let verbose = tshark(&["-O", "ipvs"]);
    assert!(verbose.contains(RIP), "{verbose}");

    let status = survivor.stop();
    assert!(
        status.success(),
        "exit {status:?}:\n{}",
        survivor.log_text()
    );
}
