//! Capture replay of IPv6 ICMP errors and malformed IPv6 through the real
//! binary (net_pcap), every frame vsd sends compared byte for byte with one
//! built independently by `PacketBuilder` (checksums included):
//!
//! - Packet Too Big to the client when TUN encapsulation would exceed the
//!   port's MTU (1500 - 40 for the outer IPv6 header);
//! - Packet Too Big from the server side relayed to the client: from a NAT
//!   real server about the request it got (quoting the client's packet to
//!   the VIP again), and from a router about a tunnelled packet (the inner
//!   packet quoted, the MTU less the tunnel's 40 bytes);
//! - NAT64 errors both ways (RFC 7915): ICMP destination unreachable and
//!   fragmentation needed from the IPv4 server become ICMPv6 destination
//!   unreachable and Packet Too Big (MTU + 20) to the IPv6 client about its
//!   own packet; the client's ICMPv6 destination unreachable about a reply
//!   becomes ICMP destination unreachable to the server about its packet;
//! - malformed IPv6 (truncated, bad payload length, extension header
//!   chains too long, cut or of an unknown type, fragments, a bad UDP
//!   length, hop limit 1) dropped and counted by reason, only hop limit 1
//!   answered (time exceeded); a valid extension header chain is kept.
//!
//! One-armed: clients, servers and the router share the pcap port.
//! Deterministic, no namespaces, no hugepages.

mod common;

use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use vsd::wire::icmpv6::{multicast_mac, solicited_node};
use vsd::wire::{IpProtocol, MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const RS4_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const RS: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);
/// A router on the way to a tunnel server.
const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xfe);
const DIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const RS4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);
const LPORT: u16 = 50000;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const PAYLOAD: &[u8] = b"hello";

/// NAT, TUN (TCP and UDP) and NAT64 services.
const NAT: u16 = 80;
const TUN: u16 = 82;
const NAT64: u16 = 84;

fn config(dir: &std::path::Path, prefix: &str) -> String {
    let svc = |proto: &str, port: u16, method: &str, rs: String, rport: u16, extra: &str| {
        pcap::service(proto, VIP, port, extra, rs, rport, method)
    };
    let head = pcap::replay_config(
        dir,
        prefix,
        4095,
        VSD_MAC,
        &[&format!("{DIP6}/64"), &format!("{DIP4}/24")],
    );
    format!(
        r#"{head}
[lb]
conn_capacity = 4096
local_port_min = {LPORT}
local_port_max = {LPORT}

[[vip]]
address = "{VIP}"
port = "cap0"
{nat}{tun}{tun_udp}{nat64}"#,
        nat = svc("tcp", NAT, "nat", RS.to_string(), 8080, ""),
        tun = svc("tcp", TUN, "tun", RS.to_string(), TUN, ""),
        tun_udp = svc("udp", TUN, "tun", RS.to_string(), TUN, ""),
        nat64 = svc(
            "tcp",
            NAT64,
            "fullnat",
            RS4.to_string(),
            8084,
            &format!("local_addresses = [\"{LIP4}\"]")
        ),
    )
}

/// A neighbour solicitation for the director's address: vsd learns the
/// sender's MAC and answers.
fn ns(src: Ipv6Addr, from: MacAddr) -> Vec<u8> {
    let group = solicited_node(&DIP6);
    PacketBuilder::ethernet(from, multicast_mac(&group))
        .ipv6(src, group)
        .neighbor_solicit(DIP6, Some(from))
        .build()
}

fn na(dst: Ipv6Addr, dst_mac: MacAddr) -> Vec<u8> {
    PacketBuilder::ethernet(VSD_MAC, dst_mac)
        .ipv6(DIP6, dst)
        .neighbor_advert(0xe0, DIP6, Some(VSD_MAC))
        .build()
}

/// The client's SYN to the VIP at `dport` (source port `cport`), as an IP
/// packet with hop limit `hop` (no Ethernet header).
fn syn_ip(cport: u16, dport: u16, hop: u8, flow: u32) -> Vec<u8> {
    PacketBuilder::new()
        .ipv6(CLIENT, VIP)
        .ttl(hop)
        .flow_label(flow)
        .tcp(cport, dport, SYN)
        .seq(1000)
        .payload(PAYLOAD)
        .build()
}

fn from_client(ip: &[u8]) -> Vec<u8> {
    let mut f = PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ethertype(vsd::wire::EtherType::IPV6)
        .build();
    f.extend_from_slice(ip);
    f
}

/// `frame` (IPv6 at 14, no extension headers) with `ext` inserted after
/// the fixed header: next header `first`; the caller fills every next
/// header field but the last one's, which becomes the upper layer.
fn with_ext(frame: &[u8], first: u8, ext: &[u8]) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let plen = u16::from_be_bytes([out[18], out[19]]) as usize + ext.len();
    out[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    let upper = out[20];
    out[20] = first;
    let mut ext = ext.to_vec();
    let mut at = 0;
    loop {
        let len = if first == 44 {
            8
        } else {
            (usize::from(ext[at + 1]) + 1) * 8
        };
        if at + len >= ext.len() {
            ext[at] = upper;
            break;
        }
        at += len;
    }
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[test]
fn ipv6_icmp_errors_and_malformed_ipv6_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("vsd-pcapi6-"));
    std::fs::create_dir_all(&dir).unwrap();

    // what vsd will send, as the replies and errors quote it
    let nat_sent = PacketBuilder::new()
        .ipv6(CLIENT, RS)
        .ttl(63)
        .flow_label(0x12345)
        .tcp(40000, 8080, SYN)
        .seq(1000)
        .payload(PAYLOAD)
        .build();
    let tun_inner = syn_ip(40002, TUN, 63, 0x12345);
    let tunnelled = PacketBuilder::new()
        .ipv6(DIP6, RS)
        .ttl(64)
        .flow_label(0x12345)
        .ip_proto(IpProtocol::IPV6)
        .payload(&tun_inner)
        .build();
    // NAT64: the IPv4 packet vsd sends; its identification is vsd's choice
    // (RFC 7915 5.1), and the first one vsd sends is 0
    let nat64_sent = |ident: u16| {
        PacketBuilder::new()
            .ipv4(LIP4, RS4)
            .ttl(63)
            .dont_frag(false)
            .ident(ident)
            .tcp(LPORT, 8084, SYN)
            .seq(1000)
            .payload(PAYLOAD)
            .build()
    };
    let nat64_reply_in = PacketBuilder::ethernet(RS4_MAC, VSD_MAC)
        .ipv4(RS4, LIP4)
        .ttl(64)
        .ident(0x2000)
        .dont_frag(true)
        .tcp(8084, LPORT, SYN_ACK)
        .seq(7000)
        .ack(1001 + PAYLOAD.len() as u32)
        .build();
    let nat64_reply_out = PacketBuilder::new()
        .ipv6(VIP, CLIENT)
        .ttl(63)
        .tcp(NAT64, 40003, SYN_ACK)
        .seq(7000)
        .ack(1001 + PAYLOAD.len() as u32)
        .build();
    // 1500 bytes of IPv6 to the tunnel: 1540 with the outer header
    let big = PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv6(CLIENT, VIP)
        .ttl(64)
        .udp(40001, TUN)
        .payload(&[0x5a; 1452])
        .build();
    assert_eq!(big.len(), 14 + 1500);

    // malformed, each dropped with its reason
    let syn = from_client(&syn_ip(40010, NAT, 64, 0));
    let mut malformed: Vec<(&str, Vec<u8>, &str)> =
        vec![("truncated header", syn[..14 + 39].to_vec(), "truncated_ip")];
    let mut v = syn.clone();
    v[18..20].copy_from_slice(&1000u16.to_be_bytes());
    malformed.push(("payload length beyond the frame", v, "bad_total_length"));
    let mut v = syn.clone();
    v[18..20].copy_from_slice(&10u16.to_be_bytes());
    malformed.push(("payload length cuts TCP", v, "truncated_l4"));
    let mut nine = Vec::new();
    for _ in 0..9 {
        nine.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    malformed.push((
        "extension header chain too long",
        with_ext(&syn, 60, &nine),
        "ipv6_ext_headers",
    ));
    let mut cut = with_ext(&syn, 60, &[6, 0, 1, 4, 0, 0, 0, 0]);
    cut[55] = 200;
    malformed.push(("truncated extension header", cut, "ipv6_ext_headers"));
    let mut mobility = syn.clone();
    mobility[20] = 135;
    malformed.push((
        "unknown extension header (mobility)",
        mobility,
        "ipv6_ext_headers",
    ));
    malformed.push((
        "first fragment",
        with_ext(&syn, 44, &[6, 0, 0, 1, 0, 0, 0, 9]),
        "ipv6_fragment",
    ));
    malformed.push((
        "later fragment",
        with_ext(&syn, 44, &[6, 0, 0x05, 0x00, 0, 0, 0, 9]),
        "ipv6_fragment",
    ));
    let mut udp_bad = PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv6(CLIENT, VIP)
        .udp(40011, TUN)
        .payload(b"query")
        .build();
    udp_bad[14 + 44..14 + 46].copy_from_slice(&200u16.to_be_bytes());
    malformed.push(("UDP length beyond the payload", udp_bad, "bad_udp_length"));
    // hop-by-hop then destination options (PadN each): walked and kept
    let ext_ok = [
        60, 0, 1, 4, 0, 0, 0, 0, //
        0, 0, 1, 4, 0, 0, 0, 0,
    ];
    let with_options = with_ext(&from_client(&syn_ip(40012, NAT, 64, 0)), 0, &ext_ok);
    let hop1 = with_ext(&from_client(&syn_ip(40013, NAT, 1, 0)), 0, &ext_ok);

    let mut input = vec![
        ns(RS, RS_MAC),
        ns(CLIENT, CLIENT_MAC),
        PacketBuilder::ethernet(RS4_MAC, MacAddr::BROADCAST)
            .arp_request(RS4_MAC, RS4, DIP4)
            .pad_to(60)
            .build(),
        // 3: NAT request, then the server's Packet Too Big about it
        from_client(&syn_ip(40000, NAT, 64, 0x12345)),
        PacketBuilder::ethernet(RS_MAC, VSD_MAC)
            .ipv6(RS, CLIENT)
            .ttl(64)
            .icmpv6(2, 0, 1400)
            .payload(&nat_sent)
            .build(),
        // 5: too big for the tunnel
        big.clone(),
        // 6: a tunnelled SYN, then a router's Packet Too Big about it
        from_client(&syn_ip(40002, TUN, 64, 0x12345)),
        PacketBuilder::ethernet(ROUTER_MAC, VSD_MAC)
            .ipv6(ROUTER, DIP6)
            .ttl(64)
            .icmpv6(2, 0, 1400)
            .payload(&tunnelled)
            .build(),
        // 8: NAT64 request, the server's port unreachable and
        // fragmentation needed (8 bytes of TCP quoted) about it
        from_client(&syn_ip(40003, NAT64, 64, 0)),
        PacketBuilder::ethernet(RS4_MAC, VSD_MAC)
            .ipv4(RS4, LIP4)
            .ttl(64)
            .ident(0x3000)
            .icmp(3, 3, 0)
            .payload(&nat64_sent(0))
            .build(),
        PacketBuilder::ethernet(RS4_MAC, VSD_MAC)
            .ipv4(RS4, LIP4)
            .ttl(64)
            .ident(0x3001)
            .icmp(3, 4, 1400)
            .payload(&nat64_sent(0)[..28])
            .build(),
        // 11: the server's SYN-ACK, and the client's port unreachable
        // about it
        nat64_reply_in,
        PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
            .ipv6(CLIENT, VIP)
            .ttl(64)
            .icmpv6(1, 4, 0)
            .payload(&nat64_reply_out)
            .build(),
        // 13: extension headers kept; hop limit 1 behind them
        with_options.clone(),
        hop1.clone(),
    ];
    input.extend(malformed.iter().map(|(_, f, _)| f.clone()));
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdi6");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    let counters = vsd.ask("counters");
    let fwd_drop = |name: &str| counters["forwarding"]["drops"][name].as_u64().unwrap_or(0);
    let fwd_event = |name: &str| counters["forwarding"]["events"][name].as_u64().unwrap_or(0);
    let mut want_drops = std::collections::BTreeMap::new();
    for (_, _, why) in &malformed {
        *want_drops.entry(*why).or_insert(0u64) += 1;
    }
    // hop limit 1: answered, and counted as the drop it is
    want_drops.insert("ttl_expired", 1);
    for (why, n) in &want_drops {
        assert_eq!(fwd_drop(why), *n, "forwarding drops {why}: {counters}");
    }
    assert_eq!(fwd_event("icmp_frag_needed_sent"), 1, "{counters}");
    assert_eq!(fwd_event("icmp_time_exceeded_sent"), 1, "{counters}");
    assert_eq!(
        counters["total"]["events"]["forward_drops"].as_u64(),
        Some(malformed.len() as u64),
        "every malformed frame and nothing else: {counters}"
    );
    assert!(vsd.stop().success());

    let mut out = pcap::read(&dir.join("out.pcap"));
    // vsd's MLD reports of its groups (to ff02::16; tests/pcap_ipv6_mld.rs)
    out.retain(|f| f[..6] != [0x33, 0x33, 0, 0, 0, 0x16]);
    let _ = std::fs::remove_dir_all(&dir);

    let arp_reply = {
        let mut f = PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
            .arp_reply(VSD_MAC, DIP4, RS4_MAC, RS4)
            .build();
        f.truncate(42);
        f
    };
    // the NAT64 request's identification, from the output
    let nat64_out = out
        .iter()
        .find(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == LIP4.octets())
        .unwrap_or_else(|| panic!("no NAT64 frame in {out:02x?}"));
    let nat64_ident = be16(nat64_out, 18);
    let to_client = || PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC).ipv6(VIP, CLIENT);
    // the client's NAT64 packet as the client sent it, from the
    // translated quote: hop limit as forwarded, no flow label (IPv4 has
    // none)
    let nat64_quoted = syn_ip(40003, NAT64, 63, 0);
    let expected: Vec<(&str, Vec<u8>)> =
        vec![
        ("NA to the RS", na(RS, RS_MAC)),
        ("NA to the client", na(CLIENT, CLIENT_MAC)),
        ("ARP reply to the IPv4 RS", arp_reply),
        ("NAT request", {
            let mut f = PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ethertype(vsd::wire::EtherType::IPV6)
                .build();
            f.extend_from_slice(&nat_sent);
            f
        }),
        (
            "the NAT server's Packet Too Big, relayed from the VIP about the client's packet",
            to_client()
                .ttl(63)
                .icmpv6(2, 0, 1400)
                .payload(&syn_ip(40000, NAT, 63, 0x12345))
                .build(),
        ),
        (
            "Packet Too Big to the client: 1500 - 40, quoting what fits in 1280 bytes",
            to_client()
                .ttl(64)
                .icmpv6(2, 0, 1460)
                .payload(&big[14..14 + 1280 - 48])
                .build(),
        ),
        ("TUN: IPv6-in-IPv6", {
            let mut f = PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ethertype(vsd::wire::EtherType::IPV6)
                .build();
            f.extend_from_slice(&tunnelled);
            f
        }),
        (
            "the router's Packet Too Big about the tunnel: 1400 - 40, the inner packet quoted",
            to_client()
                .ttl(64)
                .icmpv6(2, 0, 1360)
                .payload(&tun_inner)
                .build(),
        ),
        ("NAT64 request", {
            let mut f = PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
                .ethertype(vsd::wire::EtherType::IPV4)
                .build();
            f.extend_from_slice(&nat64_sent(nat64_ident));
            f
        }),
        (
            "NAT64: ICMP port unreachable -> ICMPv6 1/4 about the client's packet",
            to_client()
                .ttl(63)
                .icmpv6(1, 4, 0)
                .payload(&nat64_quoted)
                .build(),
        ),
        (
            "NAT64: fragmentation needed 1400 -> Packet Too Big 1420, the 8 quoted bytes of TCP",
            to_client()
                .ttl(63)
                .icmpv6(2, 0, 1420)
                .payload(&nat64_quoted[..48])
                .build(),
        ),
        ("NAT64 reply", {
            let mut f = PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ethertype(vsd::wire::EtherType::IPV6)
                .build();
            f.extend_from_slice(&nat64_reply_out);
            f
        }),
        (
            "NAT64: the client's ICMPv6 1/4 -> ICMP 3/3 to the server about its own packet",
            PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
                .ipv4(LIP4, RS4)
                .ttl(63)
                .ident(0)
                .dont_frag(false)
                .icmp(3, 3, 0)
                .payload(
                    &PacketBuilder::new()
                        .ipv4(RS4, LIP4)
                        .ttl(63)
                        .ident(0)
                        .dont_frag(true)
                        .tcp(8084, LPORT, SYN_ACK)
                        .seq(7000)
                        .ack(1001 + PAYLOAD.len() as u32)
                        .build(),
                )
                .build(),
        ),
        (
            "extension headers walked and kept (NAT)",
            with_ext(
                &PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                    .ipv6(CLIENT, RS)
                    .ttl(63)
                    .tcp(40012, 8080, SYN)
                    .seq(1000)
                    .payload(PAYLOAD)
                    .build(),
                0,
                &ext_ok,
            ),
        ),
        (
            "hop limit 1 behind extension headers: time exceeded from the VIP",
            to_client().ttl(64).icmpv6(3, 0, 0).payload(&hop1[14..]).build(),
        ),
    ];
    for (i, (what, want)) in expected.iter().enumerate() {
        let got = out
            .get(i)
            .unwrap_or_else(|| panic!("missing frame {i} ({what}); got {out:02x?}"));
        assert_eq!(got, want, "frame {i}: {what}");
    }
    assert_eq!(
        out.len(),
        expected.len(),
        "malformed frames must not be answered: {:02x?}",
        &out[expected.len().min(out.len())..]
    );
}
