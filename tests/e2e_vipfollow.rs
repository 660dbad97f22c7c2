//! End to end: a VIP that follows a kernel interface
//! (`[[vip]] follow = "vsd-lan0"`, src/control/vipwatch.rs).
//!
//! vsd runs in a namespace of its own (`ip netns exec`), where the test
//! adds and deletes the VIP on an interface named `vsd-lan0` (a tap the
//! test makes: this kernel has no dummy driver), as keepalived would on
//! the port's kernel twin. vsd's taps are moved from
//! there into a client namespace and a real-server namespace (NAT):
//!
//! ```text
//! [client ns] lan tap 198.18.0.2 == vsd (198.18.0.1 | 198.18.1.1) == srv tap [rs ns] 198.18.1.11:8080
//!             2001:2::2             2001:2::1
//!                                   [vsd ns] tap vsd-lan0: VIP/32, VIP6/128 or nothing
//! ```
//!
//! The IPv6 VIP 2001:2::100 follows the same interface; its service is
//! NAT64 (FULLNAT to the IPv4 real server from local address
//! 198.18.1.200), and vsd announces it with unsolicited neighbor
//! advertisements when it comes up.
//!
//! Needs root, /dev/net/tun and hugepages.

mod common;

use common::topo::{no_offloads, python3, run_in, text, DpdkPrefix, Ns, Proc, TempDir};
use common::*;
use std::time::Duration;

const VSD_LAN_MAC: &str = "02:00:00:00:00:01";
const VSD_SRV_MAC: &str = "02:00:00:00:00:02";
const CLIENT_MAC: &str = "02:00:00:00:02:01";
const RS_MAC: &str = "02:00:00:00:03:02";
const LAN_DIP: &str = "198.18.0.1";
const SRV_DIP: &str = "198.18.1.1";
const CLIENT: &str = "198.18.0.2";
const RS: &str = "198.18.1.11";
const VIP: &str = "198.18.0.100";
const CLIENT6: &str = "2001:2::2";
const LAN_DIP6: &str = "2001:2::1";
const VIP6: &str = "2001:2::100";
const LIP4: &str = "198.18.1.200";
/// The MAC another director had for the IPv6 VIP before vsd took it over.
const OLD_DIRECTOR_MAC: &str = "02:00:00:00:09:09";
const RS_PORT: u16 = 8080;
const FOLLOW_IF: &str = "vsd-lan0";

fn vsd_config(prefix: &str, lan: &str, srv: &str) -> String {
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

[lb]
conn_capacity = 4096

[[port]]
name = "lan0"
device = "net_tap0,iface={lan}"
mac = "{VSD_LAN_MAC}"
addresses = ["{LAN_DIP}/24", "{LAN_DIP6}/64"]

[[port]]
name = "srv0"
device = "net_tap1,iface={srv}"
mac = "{VSD_SRV_MAC}"
addresses = ["{SRV_DIP}/24"]

[[vip]]
address = "{VIP}"
port = "lan0"
follow = "{FOLLOW_IF}"

[[vip]]
address = "{VIP6}"
port = "lan0"
follow = "{FOLLOW_IF}"

[[service]]
proto = "tcp"
vip = "{VIP}"
port = 80
scheduler = "rr"

[[service.real_server]]
address = "{RS}"
port = {RS_PORT}
method = "nat"

[[service]]
proto = "tcp"
vip = "{VIP6}"
port = 80
scheduler = "rr"
local_addresses = ["{LIP4}"]

[[service.real_server]]
address = "{RS}"
port = {RS_PORT}
method = "fullnat"
"#
    )
}

/// Move `dev` from `from` into `to`, waiting for vsd to create it.
fn move_tap(dev: &str, from: &Netns, to: &Netns) {
    assert!(
        wait_for(Duration::from_secs(20), || {
            sh_any("ip", &["-n", &from.name, "link", "show", dev])
                .status
                .success()
        }),
        "tap {dev} did not appear in {}",
        from.name
    );
    from.ip(&["link", "set", dev, "netns", &to.name]);
}

/// The client's neighbour entry for the VIP (`ip neigh show`).
fn client_neigh(client: &Netns, dev: &str) -> String {
    neigh_of(client, dev, VIP)
}

fn neigh_of(client: &Netns, dev: &str, addr: &str) -> String {
    String::from_utf8_lossy(&client.ip(&["neigh", "show", addr, "dev", dev]).stdout).into_owned()
}

fn curl_id(client: &Netns) -> Result<String, String> {
    curl_url(client, &format!("http://{VIP}/id"))
}

fn curl6_id(client: &Netns) -> Result<String, String> {
    curl_url(client, &format!("http://[{VIP6}]/id"))
}

fn curl_url(client: &Netns, url: &str) -> Result<String, String> {
    let out = run_in(client, 6, "curl", &["-s", "-g", "-m", "2", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(text(&out))
    }
}

/// Send one bare TCP ACK (no connection behind it) from the client to
/// VIP:80 through a raw socket.
fn send_ack(client: &Netns, sport: u16) {
    const SCRIPT: &str = r#"
import socket, struct, sys
src, dst, sport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
tcp = struct.pack('!HHIIBBHHH', sport, 80, 1000, 1, 5 << 4, 0x10, 65535, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.sendto(tcp, (dst, 0))
"#;
    let out = run_in(
        client,
        5,
        python3(),
        &["-c", SCRIPT, CLIENT, VIP, &sport.to_string()],
    );
    assert!(out.status.success(), "raw ACK: {}", text(&out));
}

/// A forwarding-core counter (`events` or `drops`).
fn fwd_counter(vsd: &Vsd, kind: &str, name: &str) -> u64 {
    vsd.ask("counters")["forwarding"][kind][name]
        .as_u64()
        .unwrap_or(0)
}

/// The `active` flag vsd reports for the VIP.
fn vip_active(vsd: &Vsd) -> Option<bool> {
    vsd.ask("status")["ports"][0]["vip_follow"][0]["active"].as_bool()
}

/// The `active` flag vsd reports for the IPv6 VIP.
fn vip6_active(vsd: &Vsd) -> Option<bool> {
    let v = &vsd.ask("status")["ports"][0]["vip_follow"][1];
    assert_eq!(v["address"].as_str(), Some(VIP6), "{v}");
    v["active"].as_bool()
}

#[test]
fn a_followed_vip_is_served_only_while_its_address_is_on_the_interface() {
    if !e2e_prerequisites(true) {
        return;
    }
    let dir = TempDir::new("vsd-vf-");
    let vsd_ns = Ns::new("vfd");
    let client = Ns::new("vfc");
    let rs = Ns::new("vfr");
    for ns in [&vsd_ns, &client, &rs] {
        ns.sysctl("net.ipv4.conf.all.rp_filter=0");
        ns.sysctl("net.ipv4.conf.default.rp_filter=0");
    }
    let prefix = DpdkPrefix::new("vsdvf");
    let lan = unique("vfl");
    let srv = unique("vfs");

    // the real server
    let www = dir.path.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("id"), "rs1\n").unwrap();
    let ready = dir.path.join("rs.ready");

    // vsd in its own namespace; the followed interface does not exist yet
    let mut vsd = Vsd::start_in(Some(&vsd_ns.name), &vsd_config(&prefix.name, &lan, &srv));
    move_tap(&lan, &vsd_ns, &client);
    move_tap(&srv, &vsd_ns, &rs);
    // the taps' kernel ends are the far ends of the wire: MACs of their own
    client.ip(&["link", "set", &lan, "address", CLIENT_MAC]);
    client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", &lan]);
    // IPv6 on the client's end (Ns::new turns it off), without DAD
    client.sysctl(&format!("net.ipv6.conf.{lan}.accept_dad=0"));
    client.sysctl(&format!("net.ipv6.conf.{lan}.router_solicitations=0"));
    client.sysctl(&format!("net.ipv6.conf.{lan}.disable_ipv6=0"));
    client.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{CLIENT6}/64"),
        "dev",
        &lan,
        "nodad",
    ]);
    client.ip(&["link", "set", &lan, "up"]);
    no_offloads(&client, &lan, false);
    // a gratuitous ARP may create a neighbour entry (Linux's arp_accept)
    client.sysctl("net.ipv4.conf.all.arp_accept=1");
    client.sysctl(&format!("net.ipv4.conf.{lan}.arp_accept=1"));
    rs.ip(&["link", "set", &srv, "address", RS_MAC]);
    rs.ip(&["addr", "add", &format!("{RS}/24"), "dev", &srv]);
    rs.ip(&["link", "set", &srv, "up"]);
    rs.ip(&["route", "add", "default", "via", SRV_DIP]);
    no_offloads(&rs, &srv, false);
    let mut server = Proc::spawn(
        Some(&rs),
        "rs1",
        &dir.path,
        python3(),
        &[
            &topo::helper("rs_server.py"),
            "--name",
            "rs1",
            "--dir",
            &www.display().to_string(),
            "--http-port",
            &RS_PORT.to_string(),
            "--udp-port",
            "9001",
            "--peer-log",
            &dir.path.join("rs1.peers").display().to_string(),
            "--ready",
            &ready.display().to_string(),
        ],
    );
    server.wait_ready(&ready, Duration::from_secs(20));

    // 1. interface absent: the VIP is inactive, its ARP unanswered, no
    //    service through it
    assert_eq!(vip_active(&vsd), Some(false), "{}", vsd.log_text());
    let st = text(&vsd.vsadm(&["--status"]));
    assert!(
        st.contains(&format!("vip {VIP} follows {FOLLOW_IF}: inactive")),
        "{st}"
    );
    let arp_not_for_us = vsd.dropped("arp_not_for_us");
    assert!(curl_id(&client).is_err(), "curl through an inactive VIP");
    assert!(
        !client_neigh(&client, &lan).contains(VSD_LAN_MAC),
        "the client resolved an inactive VIP: {}",
        client_neigh(&client, &lan)
    );
    assert!(
        vsd.dropped("arp_not_for_us") > arp_not_for_us,
        "vsd did not refuse the ARP requests for the VIP"
    );
    assert_eq!(vsd.event("garp_sent"), 0);

    // 2. the address appears on the interface: gratuitous ARP at once (the
    //    client learns vsd's MAC without asking), and the service works
    client.ip(&["neigh", "flush", "dev", &lan]);
    // a tap like the port's kernel twin (this kernel has no dummy driver)
    vsd_ns.ip(&["tuntap", "add", "dev", FOLLOW_IF, "mode", "tap"]);
    vsd_ns.sysctl(&format!("net.ipv6.conf.{FOLLOW_IF}.accept_dad=0"));
    vsd_ns.sysctl(&format!("net.ipv6.conf.{FOLLOW_IF}.router_solicitations=0"));
    vsd_ns.sysctl(&format!("net.ipv6.conf.{FOLLOW_IF}.disable_ipv6=0"));
    vsd_ns.ip(&["link", "set", FOLLOW_IF, "up"]);
    vsd_ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", FOLLOW_IF]);
    assert!(
        wait_for(Duration::from_secs(5), || client_neigh(&client, &lan)
            .contains(VSD_LAN_MAC)),
        "no gratuitous ARP reached the client: {:?}\n{}",
        client_neigh(&client, &lan),
        vsd.log_text()
    );
    assert_eq!(vsd.event("garp_sent"), 5, "five gratuitous ARPs");
    assert_eq!(vip_active(&vsd), Some(true));
    assert_eq!(curl_id(&client), Ok("rs1".to_string()));
    let ping = client.run_any("ping", &["-c", "1", "-W", "2", VIP]);
    assert!(
        ping.status.success(),
        "ping to the active VIP: {}",
        text(&ping)
    );
    let st = text(&vsd.vsadm(&["--status"]));
    assert!(
        st.contains(&format!("vip {VIP} follows {FOLLOW_IF}: active")),
        "{st}"
    );

    // sloppy pickup through the real binary: off by default, a bare ACK
    // is dropped and counted; switched on with vsadm, it opens a connection
    let not_syn = fwd_counter(&vsd, "drops", "no_conn_not_syn");
    send_ack(&client, 40001);
    assert!(
        wait_for(Duration::from_secs(5), || fwd_counter(
            &vsd,
            "drops",
            "no_conn_not_syn"
        ) > not_syn),
        "a bare ACK was not refused with sloppy_tcp off"
    );
    assert_eq!(fwd_counter(&vsd, "events", "sloppy_scheduled"), 0);
    let set = vsd.vsadm(&["--set-defense", "sloppy_tcp=1"]);
    assert!(set.status.success(), "{}", text(&set));
    let defense = text(&vsd.vsadm(&["-L", "--defense"]));
    assert!(defense.contains("Sloppy (sloppy_tcp): 1"), "{defense}");
    send_ack(&client, 40002);
    assert!(
        wait_for(Duration::from_secs(5), || fwd_counter(
            &vsd,
            "events",
            "sloppy_scheduled"
        ) == 1),
        "a bare ACK was not picked up with sloppy_tcp on"
    );
    let conns = text(&vsd.vsadm(&["-Lnc"]));
    assert!(
        conns.contains(&format!("{CLIENT}:40002")),
        "no connection for the picked-up ACK:\n{conns}"
    );
    let set = vsd.vsadm(&["--set-defense", "sloppy_tcp=0"]);
    assert!(set.status.success(), "{}", text(&set));

    // 3. the address goes: packets to the VIP are dropped and counted even
    //    from a client that still has vsd's MAC, and ARP is not answered
    vsd_ns.ip(&["addr", "del", &format!("{VIP}/32"), "dev", FOLLOW_IF]);
    assert!(
        wait_for(Duration::from_secs(5), || vip_active(&vsd) == Some(false)),
        "VIP still active after ip addr del"
    );
    client.ip(&[
        "neigh",
        "replace",
        VIP,
        "lladdr",
        VSD_LAN_MAC,
        "dev",
        &lan,
        "nud",
        "permanent",
    ]);
    let inactive_drops = vsd.dropped("vip_inactive");
    assert!(curl_id(&client).is_err(), "curl through a withdrawn VIP");
    assert!(
        vsd.dropped("vip_inactive") > inactive_drops,
        "packets to the withdrawn VIP were not counted as vip_inactive"
    );
    client.ip(&["neigh", "del", VIP, "dev", &lan]);
    let arp_not_for_us = vsd.dropped("arp_not_for_us");
    assert!(curl_id(&client).is_err());
    assert!(!client_neigh(&client, &lan).contains(VSD_LAN_MAC));
    assert!(vsd.dropped("arp_not_for_us") > arp_not_for_us);

    // 4. back again (five more GARPs), then the interface is deleted
    vsd_ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", FOLLOW_IF]);
    assert!(
        wait_for(Duration::from_secs(5), || vip_active(&vsd) == Some(true)),
        "VIP not active again"
    );
    assert!(wait_for(Duration::from_secs(5), || vsd.event("garp_sent") == 10));
    assert!(wait_for(Duration::from_secs(5), || curl_id(&client)
        == Ok("rs1".to_string())));

    // 5. the IPv6 VIP, inactive so far: neighbor solicitations for it are
    //    not answered, packets to it dropped and counted
    assert_eq!(vip6_active(&vsd), Some(false));
    assert_eq!(vsd.event("unsolicited_na_sent"), 0);
    let nd_not_for_us = vsd.dropped("nd_not_for_us");
    let ping6 = client.run_any("ping", &["-6", "-c", "1", "-W", "1", VIP6]);
    assert!(!ping6.status.success(), "ping -6 to an inactive VIP");
    assert!(!neigh_of(&client, &lan, VIP6).contains(VSD_LAN_MAC));
    assert!(
        vsd.dropped("nd_not_for_us") > nd_not_for_us,
        "vsd did not refuse the solicitations for the inactive IPv6 VIP"
    );
    client.ip(&[
        "neigh",
        "replace",
        VIP6,
        "lladdr",
        VSD_LAN_MAC,
        "dev",
        &lan,
        "nud",
        "permanent",
    ]);
    let inactive_drops = vsd.dropped("vip_inactive");
    assert!(
        curl6_id(&client).is_err(),
        "curl -6 through an inactive VIP"
    );
    assert!(
        vsd.dropped("vip_inactive") > inactive_drops,
        "packets to the inactive IPv6 VIP were not counted as vip_inactive"
    );

    // 6. the IPv6 address appears (nodad, as keepalived adds it): the
    //    client's stale entry, pointing at the director that had the VIP
    //    before, is overridden by vsd's unsolicited neighbor advertisements,
    //    and the NAT64 service works
    client.ip(&[
        "neigh",
        "replace",
        VIP6,
        "lladdr",
        OLD_DIRECTOR_MAC,
        "dev",
        &lan,
        "nud",
        "stale",
    ]);
    assert!(neigh_of(&client, &lan, VIP6).contains(OLD_DIRECTOR_MAC));
    vsd_ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{VIP6}/128"),
        "dev",
        FOLLOW_IF,
        "nodad",
    ]);
    assert!(
        wait_for(Duration::from_secs(5), || neigh_of(&client, &lan, VIP6)
            .contains(VSD_LAN_MAC)),
        "no unsolicited neighbor advertisement overrode the client's entry: {:?}\n{}",
        neigh_of(&client, &lan, VIP6),
        vsd.log_text()
    );
    assert_eq!(vsd.event("unsolicited_na_sent"), 5, "five advertisements");
    assert_eq!(vsd.event("garp_sent"), 10, "no ARP for an IPv6 VIP");
    assert_eq!(vip6_active(&vsd), Some(true));
    assert_eq!(vip_active(&vsd), Some(true), "the IPv4 VIP is untouched");
    let st = text(&vsd.vsadm(&["--status"]));
    assert!(
        st.contains(&format!("vip {VIP6} follows {FOLLOW_IF}: active")),
        "{st}"
    );
    assert_eq!(curl6_id(&client), Ok("rs1".to_string()));
    let ping6 = client.run_any("ping", &["-6", "-c", "1", "-W", "2", VIP6]);
    assert!(
        ping6.status.success(),
        "ping -6 to the active VIP: {}",
        text(&ping6)
    );

    // 7. the IPv6 address goes: dropped and counted again, the IPv4 VIP
    //    stays served
    vsd_ns.ip(&[
        "-6",
        "addr",
        "del",
        &format!("{VIP6}/128"),
        "dev",
        FOLLOW_IF,
    ]);
    assert!(
        wait_for(Duration::from_secs(5), || vip6_active(&vsd) == Some(false)),
        "IPv6 VIP still active after ip addr del"
    );
    client.ip(&[
        "neigh",
        "replace",
        VIP6,
        "lladdr",
        VSD_LAN_MAC,
        "dev",
        &lan,
        "nud",
        "permanent",
    ]);
    let inactive_drops = vsd.dropped("vip_inactive");
    assert!(
        curl6_id(&client).is_err(),
        "curl -6 through a withdrawn VIP"
    );
    assert!(vsd.dropped("vip_inactive") > inactive_drops);
    assert_eq!(curl_id(&client), Ok("rs1".to_string()));
    assert_eq!(vsd.event("unsolicited_na_sent"), 5);

    vsd_ns.ip(&["link", "del", FOLLOW_IF]);
    assert!(
        wait_for(Duration::from_secs(5), || vip_active(&vsd) == Some(false)),
        "VIP still active after its interface was deleted"
    );

    let status = vsd.stop();
    assert!(
        status.success(),
        "vsd exit status {status:?}:\n{}",
        vsd.log_text()
    );
    drop(server);
}
