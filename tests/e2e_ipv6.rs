//! IPv6 forwarding end to end on net_tap: NAT, DR, TUN (IPv6-in-IPv6),
//! FULLNAT (IPv6 local address), NAT64 (FULLNAT from an IPv6 VIP to IPv4
//! real servers with an IPv4 local address) and TUN across families
//! (IPv6-in-IPv4 to an IPv4 address of a real server, IPv4-in-IPv6 from an
//! IPv4 client), all through one vsd and one topology, each method a
//! service of its own (several on the same IPv6 VIP, different ports):
//!
//! - 100 sequential `curl -6` requests (a new connection each) spread by
//!   rr exactly 50/50 over the two real servers (one worker; with four,
//!   within the number of workers), and `vsadm -Ln --stats` counts the
//!   same connections per real server;
//! - a 50 MB download arrives sha256-identical, and so does an 8 MB upload
//!   (for the tunnels that needs an ICMPv6 Packet Too Big / ICMP
//!   fragmentation-needed from vsd: full-size segments do not fit, and the
//!   client's route to the VIP must show the tunnel's path MTU);
//! - `ab -n 2000 -c 200` completes with no failure;
//! - a UDP service of the method answers 10 queries, 5 per real server,
//!   and its packet and byte counters are exact;
//! - `vsadm -Lnc` shows the method's connections in ipvsadm's forms;
//! - what the method promises on the real-server side: NAT, DR and TUN
//!   servers see the client's address, FULLNAT servers only the IPv6 local
//!   address, NAT64 servers (IPv4 only, no IPv6 at all in their namespace)
//!   only the IPv4 local address; tunnelled packets arrive from the
//!   director's address of the outer family; the client (IPv6 only)
//!   resolves the VIP to vsd.
//!
//! The NAT services are made live through the control socket
//! (`vsadm -A -t [VIP]:80`, `-a ... -r [RIP]:8080 -m`) and `vsadm -Ln`
//! must show their IPv6 rows; the others come from the TOML (with an IPv6
//! `[[vip]]`).
//!
//! ```text
//! [client ns, IPv6 only] lan 2001:2::2 ===== vsd lan0 2001:2::1, VIPs 2001:2::64, ::65
//!                        eth1 2001:2:1::2 --+     (the DR/TUN servers' way back)
//! [client4 ns] eth0 198.18.1.2 -------------+     (IPv4 VIP 198.18.0.100 via vsd)
//!                                           |
//! vsd srv0 2001:2:1::1, 198.18.1.1 -[switch ns: br0]-+- [rs1] 2001:2:1::11, 198.18.1.21
//!                                                    +- [rs2] 2001:2:1::12, 198.18.1.22
//!                                                    +- [rs3] 198.18.1.11   (NAT64: IPv4 only)
//!                                                    +- [rs4] 198.18.1.12
//! rs1, rs2: the VIPs on lo; 2001:2::/64 via vsd (NAT replies); replies
//! from the IPv6 VIPs (DR, TUN) by policy routing via the client's eth1,
//! from the IPv4 VIP on-link to client4. FULLNAT local addresses
//! 2001:2:1::200 and 198.18.1.200 are on-link. Tunnels: the kernel here has
//! no tunnel modules; tests/helpers/ipip_decap.py (one per outer family)
//! decapsulates into TUN devices, nftables drops protocols 4 and 41.
//! ```
//!
//! Needs root, /dev/net/tun, hugepages, curl, ab, python3, nft, ethtool.

mod common;

use common::topo::*;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VSD_LAN_MAC: &str = "02:00:00:00:00:01";
const VSD_SRV_MAC: &str = "02:00:00:00:01:01";
const CLIENT6: &str = "2001:2::2";
const VIP6: &str = "2001:2::64";
/// The VIP of the IPv6-in-IPv4 service (its own: the client's path MTU
/// toward it is the IPv4 tunnel's).
const VIP6_6IN4: &str = "2001:2::65";
/// The IPv4-in-IPv6 service's VIP, and its client on the server network
/// (routed to the VIP through vsd).
const VIP4: &str = "198.18.0.100";
const CLIENT4: &str = "198.18.1.2";
const LAN_DIP6: &str = "2001:2::1";
const SRV_DIP6: &str = "2001:2:1::1";
const CLIENT_SRV6: &str = "2001:2:1::2";
const LIP6: &str = "2001:2:1::200";
const RS6: [&str; 2] = ["2001:2:1::11", "2001:2:1::12"];
const RS6_MAC: [&str; 2] = ["02:00:00:00:02:11", "02:00:00:00:02:12"];
/// The IPv6 real servers' IPv4 addresses (IPv6-in-IPv4 tunnels end there).
const RS6_V4: [&str; 2] = ["198.18.1.21", "198.18.1.22"];
const SRV_DIP4: &str = "198.18.1.1";
const LIP4: &str = "198.18.1.200";
const RS4: [&str; 2] = ["198.18.1.11", "198.18.1.12"];
const RS4_MAC: [&str; 2] = ["02:00:00:00:02:13", "02:00:00:00:02:14"];
/// The routing table of the IPv6 real servers' replies from the VIP.
const VIP_TABLE: &str = "100";
const SEQUENTIAL: usize = 100;
const AB_REQUESTS: usize = 2000;
const AB_CONCURRENCY: usize = 200;
const UDP_QUERIES: usize = 10;

/// One forwarding method under test, a TCP and a UDP service on the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Nat,
    Dr,
    Tun,
    FullNat,
    Nat64,
    /// TUN from an IPv6 service to an IPv4 real server (IPv6 in IPv4).
    Tun6in4,
    /// TUN from an IPv4 service to an IPv6 real server (IPv4 in IPv6),
    /// from the IPv4 client.
    Tun4in6,
    /// DR through an IPv6 firewall-mark service (`-f 6 -6`) whose packets
    /// IPv6 mark rules pick (TCP and UDP to the VIP, one port each).
    Fwmark6,
}

const CASES: [Case; 8] = [
    Case::Nat,
    Case::Dr,
    Case::Tun,
    Case::FullNat,
    Case::Nat64,
    Case::Tun6in4,
    Case::Tun4in6,
    Case::Fwmark6,
];

/// The mark of [`Case::Fwmark6`].
const MARK6: &str = "6";

impl Case {
    fn index(self) -> u16 {
        CASES.iter().position(|c| *c == self).unwrap_or(0) as u16
    }

    fn tag(self) -> &'static str {
        match self {
            Case::Nat => "nat",
            Case::Dr => "dr",
            Case::Tun => "tun",
            Case::FullNat => "fullnat",
            Case::Nat64 => "nat64",
            Case::Tun6in4 => "tun6in4",
            Case::Tun4in6 => "tun4in6",
            Case::Fwmark6 => "fwmark6",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Case::Nat64 => "fullnat",
            Case::Tun6in4 | Case::Tun4in6 => "tun",
            Case::Fwmark6 => "dr",
            c => c.tag(),
        }
    }

    /// Whether replies come back through vsd.
    fn replies_through_vsd(self) -> bool {
        matches!(self, Case::Nat | Case::FullNat | Case::Nat64)
    }

    fn tunnels(self) -> bool {
        matches!(self, Case::Tun | Case::Tun6in4 | Case::Tun4in6)
    }

    /// The client's family (and the service's).
    fn v4_client(self) -> bool {
        self == Case::Tun4in6
    }

    fn vip(self) -> &'static str {
        match self {
            Case::Tun6in4 => VIP6_6IN4,
            Case::Tun4in6 => VIP4,
            _ => VIP6,
        }
    }

    /// The VIP as ipvsadm prints it before `:port`.
    fn vip_shown(self) -> String {
        if self.v4_client() {
            self.vip().to_string()
        } else {
            format!("[{}]", self.vip())
        }
    }

    /// The family of the real servers' sockets.
    fn rs_family(self) -> u8 {
        if matches!(self, Case::Nat64 | Case::Tun4in6) {
            4
        } else {
            6
        }
    }

    fn vport(self) -> u16 {
        80 + self.index()
    }

    fn udp_vport(self) -> u16 {
        9000 + self.index()
    }

    /// The real servers' ports: NAT and FULLNAT map ports, DR and TUN
    /// cannot.
    fn rport(self) -> u16 {
        if self.replies_through_vsd() {
            8080 + self.index()
        } else {
            self.vport()
        }
    }

    fn udp_rport(self) -> u16 {
        if self.replies_through_vsd() {
            9080 + self.index()
        } else {
            self.udp_vport()
        }
    }

    fn rs_addrs(self) -> [&'static str; 2] {
        match self {
            Case::Nat64 => RS4,
            Case::Tun6in4 => RS6_V4,
            _ => RS6,
        }
    }

    /// The only source address the real servers may see.
    fn peer(self) -> &'static str {
        match self {
            Case::FullNat => LIP6,
            Case::Nat64 => LIP4,
            Case::Tun4in6 => CLIENT4,
            _ => CLIENT6,
        }
    }

    /// `[addr]:port` or `addr:port`, as ipvsadm prints an endpoint.
    fn rs_endpoint(self, i: usize, port: u16) -> String {
        let a = self.rs_addrs()[i];
        if a.contains(':') {
            format!("[{a}]:{port}")
        } else {
            format!("{a}:{port}")
        }
    }

    fn url(self, path: &str) -> String {
        format!("http://{}:{}/{path}", self.vip_shown(), self.vport())
    }

    fn curl_family(self) -> &'static str {
        if self.v4_client() {
            "-4"
        } else {
            "-6"
        }
    }
}

/// Everything the test needs besides root and taps.
fn prerequisites() -> bool {
    if !e2e_prerequisites(true) {
        return false;
    }
    let tools = [
        "curl",
        "ab",
        "nft",
        "ethtool",
        "sha256sum",
        "timeout",
        "ping",
    ];
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
    let msg = format!("the IPv6 forwarding test needs: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// vsd's configuration: the ports, the IPv6 VIP and every service but
/// NAT's (made live through vsadm).
fn vsd_config(lan_tap: &str, srv_tap: &str, prefix: &str, workers: usize) -> String {
    let lcores = if workers == 1 {
        "workers = [1]"
    } else {
        // four worker lcores on the two CPUs: net_tap gets a queue per
        // worker, so a connection's packets arrive on different workers
        // and are steered to their owner (Toeplitz over IPv6 tuples)
        "workers = [1, 2, 3, 4]\ncpu_map = \"0@0,(1,3)@1,(2,4)@0\""
    };
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

[lb]
conn_capacity = 65536

[[port]]
name = "lan0"
device = "net_tap0,iface={lan_tap}"
mac = "{VSD_LAN_MAC}"
addresses = ["{LAN_DIP6}/64"]

[[port]]
name = "srv0"
device = "net_tap1,iface={srv_tap}"
mac = "{VSD_SRV_MAC}"
addresses = ["{SRV_DIP6}/64", "{SRV_DIP4}/24"]

[[vip]]
address = "{VIP6}"
port = "lan0"
"#
    );
    // NAT and the fwmark service are made live through vsadm
    for case in CASES
        .into_iter()
        .filter(|c| !matches!(c, Case::Nat | Case::Fwmark6))
    {
        let locals = match case {
            Case::FullNat => format!("local_addresses = [\"{LIP6}\"]\n"),
            Case::Nat64 => format!("local_addresses = [\"{LIP4}\"]\n"),
            _ => String::new(),
        };
        for (proto, vport, rport) in [
            ("tcp", case.vport(), case.rport()),
            ("udp", case.udp_vport(), case.udp_rport()),
        ] {
            c.push_str(&format!(
                "\n[[service]]\nproto = \"{proto}\"\nvip = \"{}\"\nport = {vport}\n\
                 scheduler = \"rr\"\n{locals}",
                case.vip()
            ));
            for rs in case.rs_addrs() {
                c.push_str(&format!(
                    "\n[[service.real_server]]\naddress = \"{rs}\"\nport = {rport}\n\
                     weight = 1\nmethod = \"{}\"\n",
                    case.method()
                ));
            }
        }
    }
    c
}

/// One rs_server.py instance: a method's server on one real server.
struct Server {
    case: Case,
    id: String,
    proc: Proc,
    peer_log: PathBuf,
}

/// vsd and its topology. Fields drop in order: vsd first, then the
/// programs, then the namespaces, files and the DPDK prefix.
struct Rig {
    vsd: Vsd,
    workers: usize,
    servers: Vec<Server>,
    /// Decapsulation helpers: (outer family, helper, its log of outer
    /// sources).
    decaps: Vec<(u8, Proc, PathBuf)>,
    _rs6: Vec<Ns>,
    rs4: Vec<Ns>,
    client: Ns,
    /// The IPv4 client of the IPv4-in-IPv6 service, on the server network.
    client4: Ns,
    _switch: Ns,
    dir: TempDir,
    big_sha256: String,
    upload: PathBuf,
    upload_sha256: String,
    _prefix: DpdkPrefix,
}

impl Drop for Rig {
    /// On failure, show what vsd counted before it is killed.
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

/// IPv6 on in a namespace made by [`Ns::new`] (which turns it off), with
/// neither duplicate address detection nor router solicitations.
fn enable_ipv6(ns: &Ns) {
    for conf in ["default", "all"] {
        ns.sysctl(&format!("net.ipv6.conf.{conf}.accept_dad=0"));
        ns.sysctl(&format!("net.ipv6.conf.{conf}.router_solicitations=0"));
        ns.sysctl(&format!("net.ipv6.conf.{conf}.disable_ipv6=0"));
    }
}

/// The same for one interface (one moved in from another namespace).
fn enable_ipv6_on(ns: &Ns, dev: &str) {
    ns.sysctl(&format!("net.ipv6.conf.{dev}.accept_dad=0"));
    ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6=0"));
}

/// A veth from `sw`'s bridge br0 (end `sw_end`) to `ns` (end `ns_end`).
fn bridge_veth(sw: &Ns, sw_end: &str, ns: &Ns, ns_end: &str, mac: &str) {
    sw.ip(&[
        "link", "add", sw_end, "type", "veth", "peer", "name", ns_end, "address", mac, "netns",
        &ns.name,
    ]);
    sw.ip(&["link", "set", sw_end, "master", "br0", "up"]);
    no_offloads(sw, sw_end, true);
    no_offloads(ns, ns_end, true);
    ns.ip(&["link", "set", ns_end, "up"]);
}

fn add6(ns: &Ns, cidr: &str, dev: &str) {
    ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
}

impl Rig {
    fn start(workers: usize) -> Rig {
        let dir = TempDir::new("vsd-e2e6-");
        let big = dir.path.join("big.bin");
        write_random_file(&big, BIG_FILE_BYTES, 0x5eed_0000_0000_0061);
        let big_sha256 = sha256_of(None, &big);
        let upload = dir.path.join("upload.bin");
        write_random_file(&upload, UPLOAD_BYTES, 0x5eed_0000_0000_0062);
        let upload_sha256 = sha256_of(None, &upload);

        let lan_tap = unique("v6l");
        let srv_tap = unique("v6s");
        let prefix = DpdkPrefix::new("vsd6e");
        let vsd = Vsd::start(&vsd_config(&lan_tap, &srv_tap, &prefix.name, workers));

        // the client: IPv6 only
        let client = Ns::new("v6c");
        enable_ipv6(&client);
        move_link(&lan_tap, &client);
        client.ip(&["link", "set", &lan_tap, "address", "02:00:00:00:02:01"]);
        enable_ipv6_on(&client, &lan_tap);
        no_offloads(&client, &lan_tap, false);
        client.ip(&["link", "set", &lan_tap, "up"]);
        add6(&client, &format!("{CLIENT6}/64"), &lan_tap);

        // the server network: a bridge without multicast snooping (vsd
        // sends no MLD reports for its solicited-node groups)
        let switch = Ns::new("v6w");
        switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        switch.ip(&["link", "set", "br0", "up"]);
        move_link(&srv_tap, &switch);
        switch.ip(&["link", "set", &srv_tap, "address", "02:00:00:00:03:02"]);
        switch.ip(&["link", "set", &srv_tap, "master", "br0", "up"]);
        no_offloads(&switch, &srv_tap, false);
        bridge_veth(&switch, "pc", &client, "eth1", "02:00:00:00:02:03");
        add6(&client, &format!("{CLIENT_SRV6}/64"), "eth1");
        // the IPv4 client: IPv4 only, routed to the IPv4 VIP through vsd
        let client4 = Ns::new("v4c");
        client4.sysctl("net.ipv4.conf.all.rp_filter=0");
        client4.sysctl("net.ipv4.conf.default.rp_filter=0");
        bridge_veth(&switch, "pd", &client4, "eth0", "02:00:00:00:02:04");
        client4.ip(&["addr", "add", &format!("{CLIENT4}/24"), "dev", "eth0"]);
        client4.ip(&["route", "add", &format!("{VIP4}/32"), "via", SRV_DIP4]);

        let mut servers = Vec::new();
        let mut decaps = Vec::new();
        let mut rs6 = Vec::new();
        for (i, addr) in RS6.iter().enumerate() {
            let ns = Ns::new(&format!("v6r{}", i + 1));
            enable_ipv6(&ns);
            bridge_veth(&switch, &format!("p{}", i + 1), &ns, "eth0", RS6_MAC[i]);
            add6(&ns, &format!("{addr}/64"), "eth0");
            add6(&ns, &format!("{VIP6}/128"), "lo");
            add6(&ns, &format!("{VIP6_6IN4}/128"), "lo");
            // IPv6-in-IPv4 ends on the IPv4 address; IPv4-in-IPv6 carries
            // packets for the IPv4 VIP, answered on-link to the IPv4 client
            ns.sysctl("net.ipv4.conf.all.rp_filter=0");
            ns.sysctl("net.ipv4.conf.default.rp_filter=0");
            ns.ip(&["addr", "add", &format!("{}/24", RS6_V4[i]), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
            // NAT replies go back through vsd; DR and TUN replies (from
            // the VIPs) straight to the client's second leg
            ns.ip(&["-6", "route", "add", "2001:2::/64", "via", SRV_DIP6]);
            for vip in [VIP6, VIP6_6IN4] {
                ns.ip(&["-6", "rule", "add", "from", vip, "lookup", VIP_TABLE]);
            }
            ns.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                CLIENT_SRV6,
                "dev",
                "eth0",
                "table",
                VIP_TABLE,
            ]);
            // the kernel here has no tunnel modules: it must not answer
            // tunnelled packets (the helpers decapsulate them)
            let rules = "table inet vsdtest6 {\n chain input {\n  type filter hook input priority 0; policy accept;\n  meta l4proto { 4, 41 } counter drop\n }\n}\n";
            let nft = dir.path.join(format!("rs{}.nft", i + 1));
            std::fs::write(&nft, rules).expect("nft rules");
            ns.run("nft", &["-f", &nft.display().to_string()]);
            for (family, outer) in [(6u8, *addr), (4, RS6_V4[i])] {
                let name = format!("rs{}-decap{family}", i + 1);
                let ready = dir.path.join(format!("{name}.ready"));
                let log = dir.path.join(format!("{name}.outer"));
                let mut p = Proc::spawn(
                    Some(&ns),
                    &name,
                    &dir.path,
                    python3(),
                    &[
                        &helper("ipip_decap.py"),
                        "--iface",
                        "eth0",
                        "--addr",
                        outer,
                        "--tun",
                        &format!("tun{family}"),
                        "--log",
                        &log.display().to_string(),
                        "--ready",
                        &ready.display().to_string(),
                    ],
                );
                p.wait_ready(&ready, Duration::from_secs(20));
                decaps.push((family, p, log));
            }
            for case in CASES.into_iter().filter(|c| *c != Case::Nat64) {
                servers.push(spawn_server(&ns, &dir.path, case, i, case.rs_family()));
            }
            rs6.push(ns);
        }
        // NAT64's real servers: IPv4 only (Ns::new turns IPv6 off)
        let mut rs4 = Vec::new();
        for (i, addr) in RS4.iter().enumerate() {
            let ns = Ns::new(&format!("v4r{}", i + 1));
            bridge_veth(&switch, &format!("q{}", i + 1), &ns, "eth0", RS4_MAC[i]);
            ns.sysctl("net.ipv4.conf.all.rp_filter=0");
            ns.sysctl("net.ipv4.conf.default.rp_filter=0");
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            servers.push(spawn_server(&ns, &dir.path, Case::Nat64, i, 4));
            rs4.push(ns);
        }
        for s in &mut servers {
            let ready = s.peer_log.with_extension("ready");
            s.proc.wait_ready(&ready, Duration::from_secs(30));
        }
        Rig {
            vsd,
            workers,
            servers,
            decaps,
            _rs6: rs6,
            rs4,
            client,
            client4,
            _switch: switch,
            dir,
            big_sha256,
            upload,
            upload_sha256,
            _prefix: prefix,
        }
    }

    /// Run a client program for `case` (bounded by `secs`).
    fn client_run(
        &self,
        case: Case,
        secs: u32,
        program: &str,
        args: &[&str],
    ) -> std::process::Output {
        let ns = if case.v4_client() {
            &self.client4
        } else {
            &self.client
        };
        run_in(ns, secs, program, args)
    }

    /// `vsadm ARGS`, which must succeed; its stdout.
    fn vsadm_ok(&self, args: &[&str]) -> String {
        let out = self.vsd.vsadm(args);
        assert!(
            out.status.success(),
            "vsadm {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn assert_alive(&mut self) {
        for s in &mut self.servers {
            assert!(
                s.proc.alive(),
                "{} died:\n{}",
                s.proc.name,
                s.proc.log_text()
            );
        }
        for (_, d, _) in &mut self.decaps {
            assert!(d.alive(), "{} died:\n{}", d.name, d.log_text());
        }
    }
}

/// Start rs_server.py for `case` on real server `i` (its namespace `ns`).
fn spawn_server(ns: &Ns, dir: &Path, case: Case, i: usize, family: u8) -> Server {
    let id = format!("rs{}", i + 1);
    let name = format!("{}-{id}", case.tag());
    let www = dir.join(&name);
    std::fs::create_dir_all(&www).expect("web root");
    std::fs::write(www.join("id"), format!("{id}\n")).expect("id file");
    std::fs::hard_link(dir.join("big.bin"), www.join("big.bin")).expect("link big.bin");
    let peer_log = dir.join(format!("{name}.peers"));
    let ready = peer_log.with_extension("ready");
    let proc = Proc::spawn(
        Some(ns),
        &name,
        dir,
        python3(),
        &[
            &helper("rs_server.py"),
            "--name",
            &id,
            "--dir",
            &www.display().to_string(),
            "--http-port",
            &case.rport().to_string(),
            "--udp-port",
            &case.udp_rport().to_string(),
            "--peer-log",
            &peer_log.display().to_string(),
            "--ready",
            &ready.display().to_string(),
            "--family",
            &family.to_string(),
        ],
    );
    Server {
        case,
        id,
        proc,
        peer_log,
    }
}

// ---------------------------------------------------------------- listings

/// One row of `vsadm -Ln --stats`.
#[derive(Clone, Debug, Default)]
struct StatsRow {
    conns: u64,
    in_pkts: u64,
    out_pkts: u64,
    in_bytes: u64,
    out_bytes: u64,
}

/// Services ("TCP [2001:2::64]:80", "FWM 6 IPv6") of a `-Ln --stats` listing, each with
/// its total and its real servers' rows ("[2001:2:1::11]:8080" -> row).
fn parse_stats(listing: &str) -> BTreeMap<String, (StatsRow, BTreeMap<String, StatsRow>)> {
    fn largenum(s: &str) -> Option<u64> {
        let (num, mul) = match s.chars().last()? {
            'K' => (&s[..s.len() - 1], 1_000),
            'M' => (&s[..s.len() - 1], 1_000_000),
            'G' => (&s[..s.len() - 1], 1_000_000_000),
            _ => (s, 1),
        };
        num.parse::<u64>().ok().map(|n| n * mul)
    }
    fn row(f: &[&str]) -> Option<StatsRow> {
        let n: Vec<u64> = f.iter().map(|v| largenum(v)).collect::<Option<_>>()?;
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
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [proto @ ("TCP" | "UDP"), addr, rest @ ..] => {
                if let Some(total) = row(rest) {
                    let key = format!("{proto} {addr}");
                    out.insert(key.clone(), (total, BTreeMap::new()));
                    current = Some(key);
                }
            }
            ["FWM", mark, "IPv6", rest @ ..] => {
                if let Some(total) = row(rest) {
                    let key = format!("FWM {mark} IPv6");
                    out.insert(key.clone(), (total, BTreeMap::new()));
                    current = Some(key);
                }
            }
            ["->", addr, rest @ ..] => {
                if let (Some(k), Some(r)) = (&current, row(rest)) {
                    if let Some(svc) = out.get_mut(k) {
                        svc.1.insert(addr.to_string(), r);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The service `key` scheduled exactly the connections the client saw
/// answered (`answers`: "rs1" -> count), per real server; its row.
fn assert_conns(
    rig: &Rig,
    case: Case,
    key: &str,
    rport: u16,
    answers: &BTreeMap<String, usize>,
) -> StatsRow {
    let listing = rig.vsadm_ok(&["-Ln", "--stats"]);
    let stats = parse_stats(&listing);
    let (total, servers) = stats
        .get(key)
        .unwrap_or_else(|| panic!("{case:?}: {key} missing from:\n{listing}"));
    let n: usize = answers.values().sum();
    assert_eq!(total.conns, n as u64, "{case:?}: {key} Conns:\n{listing}");
    for i in 0..2 {
        let want = answers.get(&format!("rs{}", i + 1)).copied().unwrap_or(0) as u64;
        let ep = case.rs_endpoint(i, rport);
        assert_eq!(
            servers.get(&ep).map(|r| r.conns),
            Some(want),
            "{case:?}: {key} -> {ep} Conns (the client saw {answers:?}):\n{listing}"
        );
    }
    total.clone()
}

// ---------------------------------------------------------------- checks

/// Lines of output counted by value ("rs1" -> 50).
fn count_lines(s: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in s.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// rr over the two servers: exactly half each with one worker; with
/// several, each worker alternates on its own, so the counts differ by at
/// most the number of workers.
fn assert_split(
    case: Case,
    what: &str,
    counts: &BTreeMap<String, usize>,
    n: usize,
    workers: usize,
) {
    let rs1 = counts.get("rs1").copied().unwrap_or(0);
    let rs2 = counts.get("rs2").copied().unwrap_or(0);
    assert_eq!(
        (rs1 + rs2, counts.len()),
        (n, 2),
        "{case:?}: {what}: answers {counts:?}"
    );
    if workers == 1 {
        assert_eq!(
            (rs1, rs2),
            (n / 2, n / 2),
            "{case:?}: {what}: rr alternates"
        );
    } else {
        assert!(
            rs1.abs_diff(rs2) <= workers,
            "{case:?}: {what}: rr spread {counts:?} with {workers} workers"
        );
    }
}

/// 100 requests, each on a new connection, in one curl run.
fn sequential(rig: &Rig, case: Case) -> BTreeMap<String, usize> {
    let url = case.url("id");
    let mut args: Vec<&str> = vec![
        case.curl_family(),
        "-g",
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
    let out = rig.client_run(case, 240, "curl", &args);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let counts = count_lines(&body);
    assert!(
        out.status.success() && body.lines().count() == SEQUENTIAL,
        "{case:?}: {SEQUENTIAL} sequential requests: {counts:?}, curl {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    counts
}

fn download(rig: &Rig, case: Case) {
    let dst = rig.dir.path.join(format!("{}.download", case.tag()));
    let path = dst.display().to_string();
    let url = case.url("big.bin");
    let out = rig.client_run(
        case,
        200,
        "curl",
        &[
            case.curl_family(),
            "-g",
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
    assert!(out.status.success(), "{case:?}: download: {}", text(&out));
    let len = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, BIG_FILE_BYTES as u64, "{case:?}: download length");
    assert_eq!(
        sha256_of(None, &dst),
        rig.big_sha256,
        "{case:?}: download differs"
    );
    let _ = std::fs::remove_file(&dst);
}

/// The upload arrives byte-identical at a real server; which one.
fn upload(rig: &Rig, case: Case) -> String {
    let data = format!("@{}", rig.upload.display());
    let url = case.url("upload");
    let out = rig.client_run(
        case,
        150,
        "curl",
        &[
            case.curl_family(),
            "-g",
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
    assert!(out.status.success(), "{case:?}: upload: {}", text(&out));
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (by, sha) = answer.split_once(' ').unwrap_or(("", ""));
    assert!(
        by.starts_with("rs") && sha == rig.upload_sha256,
        "{case:?}: upload arrived as {answer:?}, sent sha256 {}",
        rig.upload_sha256
    );
    by.to_string()
}

fn ab(rig: &Rig, case: Case) -> String {
    let url = case.url("id");
    let (n, c) = (AB_REQUESTS.to_string(), AB_CONCURRENCY.to_string());
    let out = rig.client_run(
        case,
        300,
        "ab",
        &["-q", "-n", &n, "-c", &c, "-s", "30", &url],
    );
    let report = text(&out);
    let field = |name: &str| -> Option<u64> {
        report
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(name.split_whitespace().count()))
            .and_then(|v| v.parse().ok())
    };
    assert!(out.status.success(), "{case:?}: ab failed:\n{report}");
    assert_eq!(
        field("Complete requests:"),
        Some(AB_REQUESTS as u64),
        "{case:?}: ab:\n{report}"
    );
    assert_eq!(
        field("Failed requests:"),
        Some(0),
        "{case:?}: ab:\n{report}"
    );
    assert!(
        !report.contains("Non-2xx responses"),
        "{case:?}: ab:\n{report}"
    );
    report
        .lines()
        .find(|l| l.starts_with("Requests per second:"))
        .unwrap_or_default()
        .to_string()
}

fn udp(rig: &Rig, case: Case) -> BTreeMap<String, usize> {
    let port = case.udp_vport().to_string();
    let count = UDP_QUERIES.to_string();
    let first = (50000 + 100 * case.index()).to_string();
    let out = rig.client_run(
        case,
        60,
        python3(),
        &[
            &helper("udp_client.py"),
            case.vip(),
            &port,
            "--count",
            &count,
            "--first-port",
            &first,
            "--timeout",
            "3",
        ],
    );
    assert!(out.status.success(), "{case:?}: UDP: {}", text(&out));
    count_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Distinct ("tcp"|"udp", address) a server saw.
fn peers(s: &Server) -> Vec<(String, String)> {
    std::fs::read_to_string(&s.peer_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.to_string(), b.to_string()))
        })
        .collect()
}

fn run_case(rig: &mut Rig, case: Case) {
    let t = Instant::now();
    let seq = sequential(rig, case);
    assert_split(case, "sequential HTTP", &seq, SEQUENTIAL, rig.workers);
    // a fwmark service is one row for both protocols, its servers port 0
    let (tcp_key, listed_rport) = if case == Case::Fwmark6 {
        (format!("FWM {MARK6} IPv6"), 0)
    } else {
        (
            format!("TCP {}:{}", case.vip_shown(), case.vport()),
            case.rport(),
        )
    };
    assert_conns(rig, case, &tcp_key, listed_rport, &seq);
    eprintln!(
        "{case:?}: {SEQUENTIAL} sequential requests {seq:?} ({:?})",
        t.elapsed()
    );

    let t = Instant::now();
    download(rig, case);
    eprintln!("{case:?}: 50 MB download, sha256 equal ({:?})", t.elapsed());
    let t = Instant::now();
    let by = upload(rig, case);
    eprintln!(
        "{case:?}: {} MB upload to {by}, sha256 equal ({:?})",
        UPLOAD_BYTES >> 20,
        t.elapsed()
    );
    let t = Instant::now();
    let rate = ab(rig, case);
    eprintln!(
        "{case:?}: ab -n {AB_REQUESTS} -c {AB_CONCURRENCY}: 0 failed, {rate} ({:?})",
        t.elapsed()
    );

    let answers = udp(rig, case);
    assert_split(case, "UDP", &answers, UDP_QUERIES, rig.workers);
    eprintln!("{case:?}: {UDP_QUERIES} UDP queries {answers:?}");
    if case != Case::Fwmark6 {
        udp_stats(rig, case, &answers);
    }
    let tcp = &parse_stats(&rig.vsadm_ok(&["-Ln", "--stats"]))[&tcp_key].0;
    if !case.replies_through_vsd() {
        assert_eq!(tcp.out_pkts, 0, "{case:?}: DR/TUN out");
    } else {
        assert!(tcp.out_bytes >= BIG_FILE_BYTES as u64, "{case:?}: {tcp:?}");
    }
    assert!(tcp.in_bytes >= UPLOAD_BYTES as u64, "{case:?}: {tcp:?}");
    after_traffic(rig, case);
}

/// The UDP service's connections per server and its exact counters.
fn udp_stats(rig: &Rig, case: Case, answers: &BTreeMap<String, usize>) {
    let udp_key = format!("UDP {}:{}", case.vip_shown(), case.udp_vport());
    let row = assert_conns(rig, case, &udp_key, case.udp_rport(), answers);
    // IP + UDP headers and "query-N"; the answers say "rsN query-N"
    let n = UDP_QUERIES as u64;
    let client_ip_header = if case.v4_client() { 20 } else { 40 };
    assert_eq!(
        (row.in_pkts, row.in_bytes),
        (n, n * (client_ip_header + 8 + 7)),
        "{case:?}: UDP in"
    );
    if case.replies_through_vsd() {
        // counted as received, as IPVS does (ip_vs_out_stats before the
        // rewrite): NAT64's answers as the IPv4 packets of its servers
        let ip_header = if case == Case::Nat64 { 20 } else { 40 };
        assert_eq!(
            (row.out_pkts, row.out_bytes),
            (n, n * (ip_header + 8 + 11)),
            "{case:?}: UDP out"
        );
    } else {
        assert_eq!(row.out_pkts, 0, "{case:?}: DR/TUN out");
    }
}

/// What the connection listing, the real servers, the tunnels and the
/// client show after the traffic.
fn after_traffic(rig: &Rig, case: Case) {
    // the method's connections, in ipvsadm's IPv6 forms (checked now:
    // TIME_WAIT ends after 120 s)
    let conns = rig.vsadm_ok(&["-Lnc"]);
    let client = if case.v4_client() {
        format!(" {CLIENT4}:")
    } else {
        format!(" [{CLIENT6}]:")
    };
    let virt = format!(" {}:{} ", case.vip_shown(), case.vport());
    let real = format!(" {}", case.rs_endpoint(0, case.rport()));
    let row = conns
        .lines()
        .find(|l| l.contains(&client) && l.contains(&virt) && l.ends_with(&real));
    assert!(
        row.is_some(),
        "{case:?}: vsadm -Lnc has no connection{client}..{virt}..{real}:\n{}",
        conns.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    eprintln!("{case:?}: vsadm -Lnc: {}", row.unwrap_or_default());

    // the real-server side
    for s in rig.servers.iter().filter(|s| s.case == case) {
        let p = peers(s);
        assert!(
            p.iter().any(|(k, _)| k == "tcp") && p.iter().any(|(k, _)| k == "udp"),
            "{case:?}: {} saw no TCP or no UDP peer: {p:?}",
            s.id
        );
        assert!(
            p.iter().all(|(_, a)| a == case.peer()),
            "{case:?}: {} must see only {} as peer, saw {p:?}",
            s.id,
            case.peer()
        );
    }
    if case.tunnels() {
        // the tunnels: IPv6 outer headers from the director's IPv6
        // address, IPv4 ones from its IPv4 address
        let (outer_family, outer_src, mtu) = match case {
            Case::Tun6in4 => (4, SRV_DIP4, 1480),
            _ => (6, SRV_DIP6, 1460),
        };
        for (family, d, log) in &rig.decaps {
            if *family == outer_family {
                let outer = std::fs::read_to_string(log).unwrap_or_default();
                assert_eq!(
                    outer,
                    format!("outer {outer_src}\n"),
                    "{case:?}: {}: outer sources of the tunnelled packets",
                    d.name
                );
            }
        }
        // the upload taught the client the tunnel's path MTU (vsd's
        // Packet Too Big / fragmentation needed)
        let route = if case.v4_client() {
            text(&rig.client4.ip(&["route", "get", VIP4]))
        } else {
            text(&rig.client.ip(&["-6", "route", "get", case.vip()]))
        };
        assert!(
            route.contains(&format!("mtu {mtu}")),
            "{case:?}: the client's route to the VIP lacks the tunnel's path MTU {mtu}: {route:?}"
        );
    }
    match case {
        Case::Dr => {
            // the VIP is the director's on the client's link, never a
            // real server's (they have it on lo and answer no solicitation)
            let neigh = text(&rig.client.ip(&["-6", "neigh", "show", VIP6]));
            assert!(
                neigh.contains(VSD_LAN_MAC),
                "{case:?}: the client must resolve the VIP to the director: {neigh:?}"
            );
        }
        Case::Nat64 => {
            for ns in &rig.rs4 {
                let v6 = text(&ns.ip(&["-6", "addr", "show"]));
                assert!(
                    !v6.contains("inet6"),
                    "NAT64 servers must be IPv4 only: {v6}"
                );
            }
        }
        _ => {}
    }
}

/// The persistent service's port (NAT to the NAT case's servers).
const PERSIST_VPORT: u16 = 88;
const PERSIST_REQUESTS: usize = 40;

/// A persistent IPv6 service (`-p`): every new connection of the client
/// goes to one real server, whichever worker its packets land on — the
/// template the first connection made is carried to the other workers.
/// One connection before persistence is switched on moves one worker's rr
/// cursor on, so workers scheduling on their own would disagree.
fn persistence(rig: &Rig) {
    let svc = format!("[{VIP6}]:{PERSIST_VPORT}");
    rig.vsadm_ok(&["-A", "-t", &svc, "-s", "rr"]);
    for rs in RS6 {
        let real = format!("[{rs}]:{}", Case::Nat.rport());
        rig.vsadm_ok(&["-a", "-t", &svc, "-r", &real, "-m"]);
    }
    let url = format!("http://[{VIP6}]:{PERSIST_VPORT}/id");
    let curl = |n: usize| {
        let mut args: Vec<&str> = vec![
            "-6",
            "-g",
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
        args.extend(std::iter::repeat_n(url.as_str(), n));
        let out = rig.client_run(Case::Nat, 120, "curl", &args);
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && body.lines().count() == n,
            "{n} requests to {url}: {body:?}, curl {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        count_lines(&body)
    };
    curl(1);
    rig.vsadm_ok(&["-E", "-t", &svc, "-s", "rr", "-p", "60"]);
    let listing = rig.vsadm_ok(&["-Ln"]);
    assert!(
        listing.contains(&format!("TCP  {svc} rr persistent 60")),
        "{listing}"
    );
    let counts = curl(PERSIST_REQUESTS);
    assert_eq!(
        counts.len(),
        1,
        "persistent client split over servers with {} workers: {counts:?}",
        rig.workers
    );
    eprintln!(
        "persistence: {PERSIST_REQUESTS} connections all to {counts:?} ({} workers)",
        rig.workers
    );
    if rig.workers > 1 {
        let learned = rig.vsd.ask("counters")["forwarding"]["events"]["template_learned"]
            .as_u64()
            .unwrap_or(0);
        assert!(learned > 0, "no worker learned another's template");
    }
    rig.vsadm_ok(&["-D", "-t", &svc]);
}

/// One test at a time: vsd's workers poll, and the machine has 2 CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ipv6_every_method_and_nat64_through_one_vip() {
    every_method(1);
}

#[test]
fn ipv6_every_method_and_nat64_four_workers_on_two_cpus() {
    every_method(4);
}

fn every_method(workers: usize) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites() {
        return;
    }
    let started = Instant::now();
    let mut rig = Rig::start(workers);
    eprintln!("topology up ({:?})", started.elapsed());

    // the client reaches vsd's IPv6 VIP (neighbor discovery and echo)
    let ping = rig.client_run(
        Case::Nat,
        20,
        "ping",
        &["-6", "-c", "2", "-i", "0.2", "-W", "3", VIP6],
    );
    assert!(ping.status.success(), "ping -6 {VIP6}: {}", text(&ping));

    // NAT made live through the control socket, in ipvsadm's IPv6 forms
    let nat = Case::Nat;
    for (flag, vport, rport) in [
        ("-t", nat.vport(), nat.rport()),
        ("-u", nat.udp_vport(), nat.udp_rport()),
    ] {
        let svc = format!("[{VIP6}]:{vport}");
        rig.vsadm_ok(&["-A", flag, &svc, "-s", "rr"]);
        for rs in RS6 {
            rig.vsadm_ok(&["-a", flag, &svc, "-r", &format!("[{rs}]:{rport}"), "-m"]);
        }
    }
    // an IPv6 fwmark service, its packets marked by IPv6 rules
    let fw = Case::Fwmark6;
    for (proto, port) in [("tcp", fw.vport()), ("udp", fw.udp_vport())] {
        let dst = format!("{VIP6}/128");
        let port = port.to_string();
        rig.vsadm_ok(&[
            "--add-mark",
            "--dst",
            &dst,
            "--proto",
            proto,
            "--dport",
            &port,
            "--set-mark",
            MARK6,
        ]);
    }
    rig.vsadm_ok(&["-A", "-f", MARK6, "-6", "-s", "rr"]);
    for rs in RS6 {
        rig.vsadm_ok(&["-a", "-f", MARK6, "-6", "-r", rs, "-g"]);
    }
    let listing = rig.vsadm_ok(&["-Ln"]);
    for want in [
        format!("TCP  [{VIP6}]:80 rr"),
        format!("UDP  [{VIP6}]:9000 rr"),
        format!("-> [{}]:8080", RS6[0]),
        format!("-> [{}]:9080", RS6[1]),
        format!("TCP  [{VIP6}]:84 rr"),
        format!("-> {}:8084", RS4[0]),
        format!("TCP  [{VIP6_6IN4}]:85 rr"),
        format!("-> {}:85", RS6_V4[0]),
        format!("TCP  {VIP4}:86 rr"),
        format!("-> [{}]:86", RS6[1]),
        format!("FWM  {MARK6} IPv6 rr"),
        format!("-> [{}]:0", RS6[0]),
    ] {
        assert!(
            listing.contains(&want),
            "vsadm -Ln lacks {want:?}:\n{listing}"
        );
    }
    eprintln!("vsadm -Ln:\n{listing}");

    for case in CASES {
        run_case(&mut rig, case);
        rig.assert_alive();
    }
    persistence(&rig);

    // nothing was dropped for want of a resource, a route or a feature
    for name in [
        "no_mbuf",
        "tx_full",
        "neigh_queue_full",
        "neigh_pending_pool_full",
        "neigh_table_full",
        "neigh_unresolved",
        "no_route",
        "bad_nd",
        "bad_icmpv6",
    ] {
        assert_eq!(rig.vsd.dropped(name), 0, "drops {name}");
    }
    let all = rig.vsd.ask("counters");
    for name in [
        "table_full",
        "no_room",
        "no_local_address",
        "no_local_port",
        "unsupported_dest",
        "ipv6_unsupported_feature",
        "ipv6_ext_headers",
        "nat64_untranslatable",
    ] {
        let n = all["forwarding"]["drops"][name].as_u64().unwrap_or(0);
        assert_eq!(n, 0, "forwarding drops {name}");
    }
    // TUN's upload needed a Packet Too Big
    let ptb = all["forwarding"]["events"]["icmp_frag_needed_sent"]
        .as_u64()
        .unwrap_or(0);
    assert!(ptb > 0, "TUN sent no Packet Too Big");
    assert!(
        rig.vsd.event("nd_adverts_out") > 0,
        "vsd advertised nothing"
    );
    if workers > 1 {
        assert!(
            rig.vsd.event("steered_in") > 0,
            "with {workers} workers no packet was steered to its owner"
        );
    }
    eprintln!(
        "vsadm --counters:\n{}",
        text(&rig.vsd.vsadm(&["--counters"]))
    );

    let status = rig.vsd.stop();
    assert!(
        status.success(),
        "vsd exit status {status:?}:\n{}",
        rig.vsd.log_text()
    );
    eprintln!("all methods done in {:?}", started.elapsed());
}
