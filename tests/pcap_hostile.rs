//! Capture replay of hostile input through the real binary (net_pcap):
//! martian and non-host packets must be dropped and counted per reason as
//! Linux's `ip_route_input_slow` would, never forwarded; fragmented
//! datagrams are forwarded whole; fwmark services forward what the
//! built-in classifier marks; spoofed on-link sources cannot fill the
//! neighbour table; IPv6 martians (unspecified, loopback, multicast or
//! the director's own source) are dropped and counted, never forwarded;
//! IPv6 director addresses and followed VIPs pass `--check`.

mod common;

use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SRV_DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);

const SYN: u8 = 0x02;

fn config(dir: &std::path::Path, prefix: &str, extra: &str) -> String {
    let head = pcap::replay_config(
        dir,
        prefix,
        4095,
        VSD_MAC,
        &[&format!("{DIP}/24"), &format!("{SRV_DIP}/24")],
    );
    format!(
        r#"{head}
[lb]
conn_capacity = 4096

[[vip]]
address = "{VIP}"
port = "cap0"

[[service]]
proto = "tcp"
vip = "{VIP}"
port = 80
scheduler = "rr"
local_addresses = ["{LIP}"]

[[service.real_server]]
address = "{RS}"
port = 8080
method = "fullnat"

[[service]]
proto = "udp"
vip = "{VIP}"
port = 53
scheduler = "rr"

[[service.real_server]]
address = "{RS}"
port = 5353
method = "nat"
{extra}
"#,
    )
}

fn hellos() -> Vec<Vec<u8>> {
    vec![
        PacketBuilder::ethernet(RS_MAC, MacAddr::BROADCAST)
            .arp_request(RS_MAC, RS, SRV_DIP)
            .pad_to(60)
            .build(),
        PacketBuilder::ethernet(CLIENT_MAC, MacAddr::BROADCAST)
            .arp_request(CLIENT_MAC, CLIENT, VIP)
            .pad_to(60)
            .build(),
    ]
}

fn syn_from(src: Ipv4Addr, dst_mac: MacAddr, sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(CLIENT_MAC, dst_mac)
        .ipv4(src, VIP)
        .ttl(64)
        .ident(sport)
        .tcp(sport, 80, SYN)
        .seq(1000)
        .build()
}

fn udp_to(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv4(CLIENT, dst)
        .ttl(64)
        .ident(sport)
        .udp(sport, 53)
        .payload(b"query")
        .build()
}

fn echo_from(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv4(src, dst)
        .ttl(64)
        .icmp_echo_request(0x1d, 1)
        .payload(b"ping")
        .build()
}

/// Replay `input`, wait until vsd received it all, return the counters,
/// the `-Lnc` listing and the frames vsd sent.
fn replay(extra: &str, input: &[Vec<u8>]) -> (serde_json::Value, String, Vec<Vec<u8>>) {
    replay_with(|dir, prefix| config(dir, prefix, extra), input)
}

/// [`replay`] with the configuration `make(dir, prefix)`.
fn replay_with(
    make: impl FnOnce(&std::path::Path, &str) -> String,
    input: &[Vec<u8>],
) -> (serde_json::Value, String, Vec<Vec<u8>>) {
    let dir = std::env::temp_dir().join(unique("vsd-pcaph-"));
    std::fs::create_dir_all(&dir).unwrap();
    pcap::write(&dir.join("in.pcap"), input);
    let prefix = unique("vsdh");
    let mut vsd = Vsd::start(&make(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    let counters = vsd.ask("counters");
    let conns = vsd.vsadm(&["-Lnc"]);
    assert!(conns.status.success());
    let listing = String::from_utf8_lossy(&conns.stdout).into_owned();
    assert!(vsd.stop().success());
    let out = pcap::read(&dir.join("out.pcap"));
    let _ = std::fs::remove_dir_all(&dir);
    (counters, listing, out)
}

/// IPv4 frames vsd sent to the real server.
fn to_rs(out: &[Vec<u8>]) -> Vec<&Vec<u8>> {
    out.iter()
        .filter(|f| f.len() > 34 && f[..6] == RS_MAC.0 && f[12..14] == [8, 0])
        .collect()
}

#[test]
fn martian_and_non_host_packets_are_dropped_and_counted() {
    let mut input = hellos();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("not_host", syn_from(CLIENT, MacAddr::BROADCAST, 1001)),
        (
            "not_host",
            syn_from(CLIENT, MacAddr([0x01, 0, 0x5e, 0, 0, 1]), 1002),
        ),
        (
            "martian_src_zeronet",
            syn_from(Ipv4Addr::UNSPECIFIED, VSD_MAC, 1003),
        ),
        (
            "martian_src_limited_broadcast",
            syn_from(Ipv4Addr::BROADCAST, VSD_MAC, 1004),
        ),
        (
            "martian_src_loopback",
            syn_from(Ipv4Addr::new(127, 0, 0, 1), VSD_MAC, 1005),
        ),
        (
            "martian_src_multicast",
            syn_from(Ipv4Addr::new(224, 0, 0, 9), VSD_MAC, 1006),
        ),
        ("martian_src_local", syn_from(VIP, VSD_MAC, 1007)),
        ("martian_src_local", syn_from(DIP, VSD_MAC, 1008)),
        (
            "martian_src_directed_broadcast",
            syn_from(Ipv4Addr::new(198, 18, 0, 255), VSD_MAC, 1009),
        ),
        (
            "dst_broadcast",
            udp_to(Ipv4Addr::new(198, 18, 0, 255), 1010),
        ),
        (
            "martian_dst_loopback",
            udp_to(Ipv4Addr::new(127, 0, 0, 1), 1011),
        ),
        // spoofed pings: the director must not answer them either
        (
            "martian_src_loopback",
            echo_from(Ipv4Addr::new(127, 0, 0, 1), VIP),
        ),
        ("martian_src_local", echo_from(VIP, DIP)),
    ];
    input.extend(hostile.iter().map(|(_, f)| f.clone()));
    // the one legitimate request
    input.push(syn_from(CLIENT, VSD_MAC, 2000));
    let (counters, listing, out) = replay("", &input);

    let drop = |name: &str| counters["total"]["drops"][name].as_u64().unwrap_or(0);
    let mut want = std::collections::BTreeMap::new();
    for (reason, _) in &hostile {
        *want.entry(*reason).or_insert(0u64) += 1;
    }
    for (reason, n) in want {
        assert_eq!(drop(reason), n, "{reason}: {counters}");
    }
    let forwarded = to_rs(&out);
    assert_eq!(
        forwarded.len(),
        1,
        "only the legitimate SYN goes out: {forwarded:02x?}"
    );
    // FULLNAT: the one forwarded SYN left from the local address, client
    // port 2000 (ident 2000) on the wire before
    assert_eq!(forwarded[0][26..30], LIP.octets());
    assert_eq!(forwarded[0][18..20], 2000u16.to_be_bytes());
    let rows = listing.lines().filter(|l| l.starts_with("TCP")).count();
    assert_eq!(rows, 1, "one connection:\n{listing}");
    let icmp = out
        .iter()
        .filter(|f| f.len() > 23 && f[12..14] == [8, 0] && f[23] == 1)
        .count();
    assert_eq!(icmp, 0, "no echo reply to a martian source: {out:02x?}");
}

#[test]
fn ipv6_martians_are_dropped_and_counted() {
    let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let vip6 = ip("2001:2::64");
    let rs6 = ip("2001:2:1::11");
    let extra = format!(
        r#"
[[service]]
proto = "tcp"
vip = "{vip6}"
port = 80
scheduler = "rr"

[[service.real_server]]
address = "{rs6}"
port = 8080
method = "nat"
"#
    );
    let make = |dir: &std::path::Path, prefix: &str| {
        let base = config(dir, prefix, &extra);
        let dual = base.replace(
            &format!("addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\"]"),
            &format!(
                "addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\", \"2001:2::1/64\", \"2001:2:1::1/64\"]"
            ),
        );
        assert_ne!(dual, base);
        dual
    };
    let syn6 = |src: Ipv6Addr, sport: u16| {
        PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
            .ipv6(src, vip6)
            .tcp(sport, 80, SYN)
            .seq(1000)
            .build()
    };
    // the real server announces itself (vsd learns its MAC)
    let mut input = vec![
        PacketBuilder::ethernet(RS_MAC, MacAddr([0x33, 0x33, 0, 0, 0, 1]))
            .ipv6(rs6, ip("ff02::1"))
            .neighbor_advert(0x20, rs6, Some(RS_MAC))
            .build(),
    ];
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("martian_src_unspecified", syn6(Ipv6Addr::UNSPECIFIED, 1001)),
        ("martian_src_loopback", syn6(Ipv6Addr::LOCALHOST, 1002)),
        ("martian_src_multicast", syn6(ip("ff02::1"), 1003)),
        ("martian_src_multicast", syn6(ip("ff05::2"), 1004)),
        ("martian_src_local", syn6(vip6, 1005)),
        ("martian_src_local", syn6(ip("2001:2::1"), 1006)),
        // the port's EUI-64 link-local address
        ("martian_src_local", syn6(ip("fe80::ff:fe00:1"), 1007)),
        (
            "martian_dst_loopback",
            PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
                .ipv6(ip("2001:2::2"), Ipv6Addr::LOCALHOST)
                .udp(1008, 53)
                .build(),
        ),
        // a spoofed ping is not answered either
        (
            "martian_src_loopback",
            PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
                .ipv6(Ipv6Addr::LOCALHOST, vip6)
                .icmpv6_echo_request(0x1d, 1)
                .build(),
        ),
    ];
    input.extend(hostile.iter().map(|(_, f)| f.clone()));
    // the one legitimate request
    input.push(syn6(ip("2001:2::2"), 2000));
    let (counters, listing, out) = replay_with(make, &input);

    let drop = |name: &str| counters["total"]["drops"][name].as_u64().unwrap_or(0);
    let mut want = std::collections::BTreeMap::new();
    for (reason, _) in &hostile {
        *want.entry(*reason).or_insert(0u64) += 1;
    }
    for (reason, n) in want {
        assert_eq!(drop(reason), n, "{reason}: {counters}");
    }
    let forwarded: Vec<_> = out
        .iter()
        .filter(|f| f.len() > 54 && f[..6] == RS_MAC.0 && f[12..14] == [0x86, 0xdd])
        .collect();
    assert_eq!(
        forwarded.len(),
        1,
        "only the legitimate SYN goes out: {forwarded:02x?}"
    );
    // NAT: from the client, port 2000
    assert_eq!(forwarded[0][22..38], ip("2001:2::2").octets());
    assert_eq!(forwarded[0][54..56], 2000u16.to_be_bytes());
    let rows = listing.lines().filter(|l| l.starts_with("TCP")).count();
    assert_eq!(rows, 1, "one connection:\n{listing}");
    let echo_replies = out
        .iter()
        .filter(|f| f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 129)
        .count();
    assert_eq!(echo_replies, 0, "no echo reply to a martian source");
}

#[test]
fn fwmark_service_forwards_what_the_classifier_marks() {
    let extra = format!(
        r#"
[[service]]
fwmark = 7
scheduler = "rr"
persistence_timeout = 60

[[service.real_server]]
address = "{RS}"
method = "nat"

[[mark]]
dst = "{VIP}/32"
proto = "tcp"
dport = "8000:8010"
mark = 7
"#
    );
    let mut input = hellos();
    let syn = |sport: u16, dport: u16| {
        PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
            .ipv4(CLIENT, VIP)
            .ttl(64)
            .ident(sport)
            .tcp(sport, dport, SYN)
            .seq(1000)
            .build()
    };
    input.push(syn(3000, 8000));
    input.push(syn(3001, 8010));
    input.push(syn(3002, 8011)); // no rule, no service: not forwarded
    let (counters, listing, out) = replay(&extra, &input);
    let forwarded = to_rs(&out);
    assert_eq!(forwarded.len(), 2, "{forwarded:02x?}\n{counters}");
    for (f, (sport, port)) in forwarded.iter().zip([(3000u16, 8000u16), (3001, 8010)]) {
        let want = PacketBuilder::ethernet(VSD_MAC, RS_MAC)
            .ipv4(CLIENT, RS)
            .ttl(63)
            .ident(sport)
            .tcp(sport, port, SYN)
            .seq(1000)
            .build();
        assert_eq!(**f, want, "NAT of the marked SYN to port {port}");
    }
    assert_eq!(
        counters["total"]["drops"]["no_service"].as_u64(),
        Some(1),
        "{counters}"
    );
    // one persistence template for both connections: the mark in place
    // of the VIP, port 0 (as IPVS keys fwmark templates)
    let templates: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(" 0.0.0.7:0 "))
        .collect();
    assert_eq!(templates.len(), 1, "{listing}");
    // and, as ipvsadm prints the kernel's IPPROTO_IP template, protocol IP
    assert!(
        templates[0].starts_with("IP  ") && templates[0].contains(" NONE "),
        "{listing}"
    );
    assert_eq!(listing.matches("SYN_RECV").count(), 2, "{listing}");
}

/// A UDP datagram of `len` payload bytes cut into frames of at most
/// 1500-byte IP packets (what a Linux sender puts on the wire).
fn udp_fragments(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    macs: (MacAddr, MacAddr),
    id: u16,
    len: usize,
) -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
    let whole = PacketBuilder::new()
        .ipv4(src.0, dst.0)
        .udp(src.1, dst.1)
        .payload(&data)
        .build();
    let udp = &whole[20..];
    udp.chunks(1480)
        .enumerate()
        .map(|(i, part)| {
            PacketBuilder::ethernet(macs.0, macs.1)
                .ipv4(src.0, dst.0)
                .ttl(64)
                .ident(id)
                .dont_frag(false)
                .fragment((i + 1) * 1480 < udp.len(), (i * 1480) as u16)
                .ip_proto(vsd::wire::IpProtocol::UDP)
                .payload(part)
                .build()
        })
        .collect()
}

/// The frames `want` with vsd's rewrite applied by hand: new addresses,
/// TTL 63, Ethernet toward `to_mac`, the ports (first fragment) as given,
/// checksums recomputed from scratch.
fn rewritten(
    want: &[Vec<u8>],
    to_mac: MacAddr,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Vec<Vec<u8>> {
    // rebuild the datagram with the new addresses and ports, then cut it
    // the same way: the expected bytes come from the builder, not from vsd
    let mut udp = Vec::new();
    for f in want {
        udp.extend_from_slice(&f[34..]);
    }
    let data = &udp[8..];
    let id = u16::from_be_bytes([want[0][18], want[0][19]]);
    udp_fragments(src, dst, (VSD_MAC, to_mac), id, data.len())
        .into_iter()
        .map(|mut f| {
            f[22] = 63;
            f[24] = 0;
            f[25] = 0;
            let c = vsd::wire::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

#[test]
fn fragmented_udp_is_forwarded_whole_through_nat_and_fullnat() {
    let extra = format!(
        r#"
[[service]]
proto = "udp"
vip = "{VIP}"
port = 54
scheduler = "rr"
local_addresses = ["{LIP}"]

[[service.real_server]]
address = "{RS}"
port = 5454
method = "fullnat"
"#
    );
    let c2v = (CLIENT_MAC, VSD_MAC);
    let r2v = (RS_MAC, VSD_MAC);
    let nat_req = udp_fragments((CLIENT, 4000), (VIP, 53), c2v, 0x100, 3000);
    let nat_reply = udp_fragments((RS, 5353), (CLIENT, 4000), r2v, 0x200, 3000);
    let fnat_req = udp_fragments((CLIENT, 4001), (VIP, 54), c2v, 0x101, 3000);
    let stray = udp_fragments((CLIENT, 4002), (VIP, 53), c2v, 0x102, 3000);
    assert_eq!(nat_req.len(), 3);
    let mut input = hellos();
    input.extend(nat_req.iter().cloned());
    input.extend(nat_reply.iter().cloned());
    input.extend(fnat_req.iter().cloned());
    // a reordered datagram: its last fragment before its first
    input.push(stray[2].clone());
    let (counters, _listing, out) = replay(&extra, &input);

    let ipv4_out: Vec<&Vec<u8>> = out.iter().filter(|f| f[12..14] == [8, 0]).collect();
    let want_nat = rewritten(&nat_req, RS_MAC, (CLIENT, 4000), (RS, 5353));
    let want_reply = rewritten(&nat_reply, CLIENT_MAC, (VIP, 53), (CLIENT, 4000));
    // FULLNAT: the local port is vsd's choice; read it from the first frame
    let fnat_first = ipv4_out
        .iter()
        .find(|f| f[26..30] == LIP.octets() && f[20..22] == [0x20, 0])
        .unwrap_or_else(|| panic!("no FULLNAT first fragment: {ipv4_out:02x?}"));
    let lport = u16::from_be_bytes([fnat_first[34], fnat_first[35]]);
    let want_fnat = rewritten(&fnat_req, RS_MAC, (LIP, lport), (RS, 5454));
    for (what, want) in [
        ("NAT request", &want_nat),
        ("NAT reply", &want_reply),
        ("FULLNAT request", &want_fnat),
    ] {
        for (i, w) in want.iter().enumerate() {
            assert!(
                ipv4_out.contains(&w),
                "{what}: fragment {i} not sent as expected\nwant {w:02x?}\ngot {ipv4_out:02x?}"
            );
        }
    }
    assert_eq!(ipv4_out.len(), 9, "nothing else forwarded: {ipv4_out:02x?}");
    let fwd = &counters["forwarding"];
    assert_eq!(
        fwd["drops"]["non_first_fragment"].as_u64(),
        Some(1),
        "{counters}"
    );
    assert_eq!(
        fwd["events"]["fragments_forwarded"].as_u64(),
        Some(6),
        "{counters}"
    );
}

#[test]
fn ipv6_local_addresses_of_ipv4_services_are_refused_by_check_and_at_start() {
    let dir = std::env::temp_dir().join(unique("vsd-refuse-"));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = unique("vsdr");
    let text = config(&dir, &prefix, "")
        + "\n[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 81\n\
           local_addresses = [\"2001:db8::5\"]\n\
           [[service.real_server]]\naddress = \"198.18.1.11\"\nmethod = \"nat\"\n";
    let text = text.replace("{dir}", &dir.display().to_string());
    let path = dir.join("v6.toml");
    std::fs::write(&path, text).unwrap();
    let vsd = env!("CARGO_BIN_EXE_vsd");
    let check = std::process::Command::new(vsd)
        .args(["--config", &path.display().to_string(), "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(
        err.contains("an IPv6 local address is never used by an IPv4 service"),
        "{err}"
    );
    let start = std::process::Command::new(vsd)
        .args(["--config", &path.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&start.stderr).into_owned();
    assert_eq!(start.status.code(), Some(1), "{err}");
    assert!(
        err.contains("an IPv6 local address is never used by an IPv4 service"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_port_addresses_and_followed_vips_pass_check_a_foreign_gateway_is_refused() {
    // IPv6 port addresses and gateways are served by the data plane
    // (neighbor discovery, echo, routing) and pass, and so does an IPv6 VIP
    // that follows a kernel interface (dataplane::vipfollow); a gateway
    // outside the port's subnets is refused before anything starts.
    let dir = std::env::temp_dir().join(unique("vsd-refuse6-"));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = unique("vsdr6");
    let base = config(&dir, &prefix, "").replace("{dir}", &dir.display().to_string());
    let vsd = env!("CARGO_BIN_EXE_vsd");
    let dual = base.replace(
        &format!("addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\"]"),
        &format!(
            "addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\", \"2001:2::1/64\"]\ngateway = [\"2001:2::fe\"]"
        ),
    ) + "\n[[vip]]\naddress = \"2001:2::100\"\nport = \"cap0\"\nfollow = \"eth9\"\n";
    assert_ne!(dual, base);
    let path = dir.join("v6-ok.toml");
    std::fs::write(&path, &dual).unwrap();
    let out = std::process::Command::new(vsd)
        .args(["--config", &path.display().to_string(), "--check"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = [(
        base.replace(
            &format!("addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\"]"),
            &format!("addresses = [\"{DIP}/24\", \"{SRV_DIP}/24\"]\ngateway = \"2001:db8::fe\""),
        ),
        "port[0].gateway: gateway 2001:db8::fe is not in any subnet of this port",
    )];
    for (i, (text, want)) in cases.iter().enumerate() {
        assert_ne!(text, &base, "case {i} changed nothing");
        let path = dir.join(format!("v6-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for args in [vec!["--check"], vec![]] {
            let out = std::process::Command::new(vsd)
                .args(["--config", &path.display().to_string()])
                .args(&args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "case {i} {args:?}: {err}");
            assert!(err.contains(want), "case {i} {args:?}: {err}");
            assert!(
                !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
                "case {i} {args:?}: EAL started"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spoofed_on_link_sources_cannot_fill_the_neighbour_table() {
    // Pings from 20 on-link addresses that never answer ARP, then from a real
    // client: before, the 8-entry table filled with unresolved entries and the
    // client's reply was dropped as neigh_table_full without an ARP request;
    // now at most half the table waits for answers, the oldest goes first.
    let legit = Ipv4Addr::new(198, 18, 0, 50);
    let mut input: Vec<Vec<u8>> = (0..20u8)
        .map(|i| echo_from(Ipv4Addr::new(198, 18, 0, 150 + i), DIP))
        .collect();
    input.push(echo_from(legit, DIP));
    let (counters, _, out) = replay("\n[neighbour]\nmax_entries = 8\n", &input);
    let request_for = |ip: Ipv4Addr| {
        out.iter().any(|f| {
            f.len() >= 42
                && f[..6] == MacAddr::BROADCAST.0
                && f[12..14] == [8, 6]
                && f[20..22] == [0, 1]
                && f[38..42] == ip.octets()
        })
    };
    assert!(
        request_for(legit),
        "no ARP request for the client: {out:02x?}"
    );
    let total = &counters["total"];
    assert_eq!(
        total["drops"]["neigh_table_full"].as_u64(),
        Some(0),
        "{counters}"
    );
    assert!(
        total["events"]["neigh_incomplete_limited"].as_u64() >= Some(16),
        "{counters}"
    );
}
