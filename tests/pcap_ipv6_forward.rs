//! Capture replay of IPv6 forwarding through the real binary (net_pcap):
//! for NAT, DR, TUN (IPv6-in-IPv6), FULLNAT and NAT64 a client SYN and a
//! client UDP datagram go in (and for NAT, FULLNAT and NAT64 the server's
//! SYN-ACK and UDP answer: the local port is pinned so the replies can be
//! in the capture), and every frame
//! vsd sends is compared byte for byte with one built independently by
//! `PacketBuilder` (checksums included). A hop-limit-1 SYN is answered
//! with ICMPv6 time exceeded and counted. One-armed: clients and servers
//! share the pcap port. Deterministic, no namespaces, no hugepages.

mod common;

use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use vsd::wire::icmpv6::{multicast_mac, solicited_node};
use vsd::wire::{IpProtocol, MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const RS4_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const RS: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);
const LIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x200);
const DIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const RS4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);

/// The only local port FULLNAT may use (pinned in the config), so the
/// server's replies can be in the capture.
const LPORT: u16 = 50000;
/// A method's UDP service port (and its servers' port): its TCP one + 10.
const UDP: u16 = 10;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const PAYLOAD: &[u8] = b"hello";

fn config(dir: &std::path::Path, prefix: &str) -> String {
    // each method a TCP service on port P and a UDP one on P + 10
    let svc = |port: u16, method: &str, rs: String, rport: u16, extra: &str| {
        let one = |proto: &str, port: u16, rport: u16| {
            pcap::service(proto, VIP, port, extra, &rs, rport, method)
        };
        one("tcp", port, rport) + &one("udp", port + UDP, rport + UDP)
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
{nat}{dr}{tun}{fnat}{nat64}"#,
        nat = svc(80, "nat", RS.to_string(), 8080, ""),
        dr = svc(81, "dr", RS.to_string(), 81, ""),
        tun = svc(82, "tun", RS.to_string(), 82, ""),
        fnat = svc(
            83,
            "fullnat",
            RS.to_string(),
            8083,
            &format!("local_addresses = [\"{LIP6}\"]")
        ),
        nat64 = svc(
            84,
            "fullnat",
            RS4.to_string(),
            8084,
            &format!("local_addresses = [\"{LIP4}\"]")
        ),
    )
}

/// A neighbour solicitation for the director's address: vsd learns the
/// sender's MAC from its source link-layer option and answers.
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

/// A client TCP segment to the VIP, with `hop` as its hop limit.
fn client_syn(dport: u16, hop: u8) -> PacketBuilder {
    PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv6(CLIENT, VIP)
        .ttl(hop)
        .flow_label(0x12345)
        .tcp(40000, dport, SYN)
        .seq(1000)
        .payload(PAYLOAD)
}

/// A client UDP datagram to the VIP (the method's TCP port + [`UDP`]).
fn client_udp(tcp_port: u16) -> PacketBuilder {
    PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv6(CLIENT, VIP)
        .ttl(64)
        .flow_label(0x23456)
        .udp(40001, tcp_port + UDP)
        .payload(b"query")
}

/// A server's UDP answer (IPv6) from `sport` to `dst`.
fn server_udp6(dst: (Ipv6Addr, u16), sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(RS_MAC, VSD_MAC)
        .ipv6(RS, dst.0)
        .ttl(64)
        .udp(sport, dst.1)
        .payload(b"answer!")
        .build()
}

/// The answer as the client must see it: from the VIP's UDP port.
fn answer_to_client(tcp_port: u16) -> Vec<u8> {
    PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
        .ipv6(VIP, CLIENT)
        .ttl(63)
        .udp(tcp_port + UDP, 40001)
        .payload(b"answer!")
        .build()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[test]
fn ipv6_methods_and_nat64_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("vsd-pcapf6-"));
    std::fs::create_dir_all(&dir).unwrap();

    let rs4_hello = PacketBuilder::ethernet(RS4_MAC, MacAddr::BROADCAST)
        .arp_request(RS4_MAC, RS4, DIP4)
        .pad_to(60)
        .build();
    let nat_reply = PacketBuilder::ethernet(RS_MAC, VSD_MAC)
        .ipv6(RS, CLIENT)
        .ttl(64)
        .tcp(8080, 40000, SYN_ACK)
        .seq(5000)
        .ack(1001 + PAYLOAD.len() as u32)
        .build();
    let hop1 = client_syn(80, 1).build();

    let input = vec![
        ns(RS, RS_MAC),
        ns(CLIENT, CLIENT_MAC),
        rs4_hello,
        client_syn(80, 64).build(), // NAT
        nat_reply,
        client_syn(81, 64).build(), // DR
        client_syn(82, 64).build(), // TUN
        client_syn(83, 64).build(), // FULLNAT
        client_syn(84, 64).build(), // NAT64
        PacketBuilder::ethernet(RS_MAC, VSD_MAC)
            .ipv6(RS, LIP6)
            .ttl(64)
            .tcp(8083, LPORT, SYN_ACK)
            .seq(6000)
            .ack(1001 + PAYLOAD.len() as u32)
            .build(),
        PacketBuilder::ethernet(RS4_MAC, VSD_MAC)
            .ipv4(RS4, LIP4)
            .ttl(64)
            .ident(0x2000)
            .tcp(8084, LPORT, SYN_ACK)
            .seq(7000)
            .ack(1001 + PAYLOAD.len() as u32)
            .build(),
        hop1.clone(),
        // UDP, every method
        client_udp(80).build(), // NAT
        server_udp6((CLIENT, 40001), 8080 + UDP),
        client_udp(81).build(), // DR
        client_udp(82).build(), // TUN
        client_udp(83).build(), // FULLNAT
        server_udp6((LIP6, LPORT), 8083 + UDP),
        client_udp(84).build(), // NAT64
        PacketBuilder::ethernet(RS4_MAC, VSD_MAC)
            .ipv4(RS4, LIP4)
            .ttl(64)
            .ident(0x2001)
            .udp(8084 + UDP, LPORT)
            .payload(b"answer!")
            .build(),
    ];
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdf6");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    let counters = vsd.ask("counters");
    let fwd_drop = |name: &str| counters["forwarding"]["drops"][name].as_u64().unwrap_or(0);
    assert_eq!(fwd_drop("ttl_expired"), 1, "{counters}");
    assert!(vsd.stop().success());

    let mut out = pcap::read(&dir.join("out.pcap"));
    // vsd's MLD reports of its groups (to ff02::16; tests/pcap_ipv6_mld.rs)
    out.retain(|f| f[..6] != [0x33, 0x33, 0, 0, 0, 0x16]);
    let _ = std::fs::remove_dir_all(&dir);

    // NAT64's IPv4 identification is vsd's choice (RFC 7915 5.1 leaves it
    // to the translator): take it from the output.
    let nat64_frames: Vec<&Vec<u8>> = out
        .iter()
        .filter(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[26..30] == LIP4.octets())
        .collect();
    let (Some(nat64_out), Some(nat64_udp_out)) = (nat64_frames.first(), nat64_frames.get(1)) else {
        panic!("no NAT64 TCP and UDP frames in {out:02x?}")
    };

    let arp_reply = {
        let mut f = PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
            .arp_reply(VSD_MAC, DIP4, RS4_MAC, RS4)
            .build();
        f.truncate(42);
        f
    };
    let udp_req = |dst: (Ipv6Addr, u16), src: (Ipv6Addr, u16), hop: u8| {
        PacketBuilder::ethernet(VSD_MAC, RS_MAC)
            .ipv6(src.0, dst.0)
            .ttl(hop)
            .flow_label(0x23456)
            .udp(src.1, dst.1)
            .payload(b"query")
            .build()
    };
    let tun_udp_inner = PacketBuilder::new()
        .ipv6(CLIENT, VIP)
        .ttl(63)
        .flow_label(0x23456)
        .udp(40001, 82 + UDP)
        .payload(b"query")
        .build();
    let tun_inner = PacketBuilder::new()
        .ipv6(CLIENT, VIP)
        .ttl(63)
        .flow_label(0x12345)
        .tcp(40000, 82, SYN)
        .seq(1000)
        .payload(PAYLOAD)
        .build();
    let expected: Vec<(&str, Vec<u8>)> = vec![
        ("NA to the RS", na(RS, RS_MAC)),
        ("NA to the client", na(CLIENT, CLIENT_MAC)),
        ("ARP reply to the IPv4 RS", arp_reply),
        (
            "NAT request: dst VIP:80 -> RS:8080, hop limit - 1",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv6(CLIENT, RS)
                .ttl(63)
                .flow_label(0x12345)
                .tcp(40000, 8080, SYN)
                .seq(1000)
                .payload(PAYLOAD)
                .build(),
        ),
        (
            "NAT reply: src RS:8080 -> VIP:80, hop limit - 1",
            PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ipv6(VIP, CLIENT)
                .ttl(63)
                .tcp(80, 40000, SYN_ACK)
                .seq(5000)
                .ack(1001 + PAYLOAD.len() as u32)
                .build(),
        ),
        (
            "DR: only the MACs change (and hop limit - 1)",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv6(CLIENT, VIP)
                .ttl(63)
                .flow_label(0x12345)
                .tcp(40000, 81, SYN)
                .seq(1000)
                .payload(PAYLOAD)
                .build(),
        ),
        (
            "TUN: IPv6-in-IPv6 from the director to the RS",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv6(DIP6, RS)
                .ttl(64)
                .flow_label(0x12345)
                .ip_proto(IpProtocol::IPV6)
                .payload(&tun_inner)
                .build(),
        ),
        (
            "FULLNAT: src -> LIP6:lport, dst -> RS:8083",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv6(LIP6, RS)
                .ttl(63)
                .flow_label(0x12345)
                .tcp(LPORT, 8083, SYN)
                .seq(1000)
                .payload(PAYLOAD)
                .build(),
        ),
        (
            "NAT64: IPv6 client -> IPv4 LIP4:lport to RS4:8084",
            PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
                .ipv4(LIP4, RS4)
                .ttl(63)
                // RFC 7915 5.1: DF clear for a translated packet <= 1260 bytes
                .dont_frag(false)
                .ident(be16(nat64_out, 18))
                .tcp(LPORT, 8084, SYN)
                .seq(1000)
                .payload(PAYLOAD)
                .build(),
        ),
        (
            "FULLNAT reply: LIP6:lport <- RS:8083 becomes VIP:83 -> client",
            PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ipv6(VIP, CLIENT)
                .ttl(63)
                .tcp(83, 40000, SYN_ACK)
                .seq(6000)
                .ack(1001 + PAYLOAD.len() as u32)
                .build(),
        ),
        (
            "NAT64 reply: IPv4 RS4:8084 -> LIP4:lport becomes IPv6 VIP:84 -> client",
            PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ipv6(VIP, CLIENT)
                .ttl(63)
                .tcp(84, 40000, SYN_ACK)
                .seq(7000)
                .ack(1001 + PAYLOAD.len() as u32)
                .build(),
        ),
        ("hop limit 1: ICMPv6 time exceeded from the VIP", {
            PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ipv6(VIP, CLIENT)
                .ttl(64)
                .icmpv6(3, 0, 0)
                .payload(&hop1[14..])
                .build()
        }),
        (
            "UDP NAT request: dst VIP:90 -> RS:8090",
            udp_req((RS, 8080 + UDP), (CLIENT, 40001), 63),
        ),
        ("UDP NAT answer: from VIP:90", answer_to_client(80)),
        (
            "UDP DR: only the MACs change (and hop limit - 1)",
            udp_req((VIP, 81 + UDP), (CLIENT, 40001), 63),
        ),
        (
            "UDP TUN: IPv6-in-IPv6",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv6(DIP6, RS)
                .ttl(64)
                .flow_label(0x23456)
                .ip_proto(IpProtocol::IPV6)
                .payload(&tun_udp_inner)
                .build(),
        ),
        (
            "UDP FULLNAT: src -> LIP6:lport, dst -> RS:8093",
            udp_req((RS, 8083 + UDP), (LIP6, LPORT), 63),
        ),
        ("UDP FULLNAT answer: from VIP:93", answer_to_client(83)),
        (
            "UDP NAT64: IPv6 client -> IPv4 LIP4:lport to RS4:8094",
            PacketBuilder::ethernet(VSD_MAC, RS4_MAC)
                .ipv4(LIP4, RS4)
                .ttl(63)
                .dont_frag(false)
                .ident(be16(nat64_udp_out, 18))
                .udp(LPORT, 8084 + UDP)
                .payload(b"query")
                .build(),
        ),
        (
            "UDP NAT64 answer: IPv4 RS4:8094 -> IPv6 VIP:94 -> client",
            answer_to_client(84),
        ),
    ];
    for (i, (what, want)) in expected.iter().enumerate() {
        let got = out
            .get(i)
            .unwrap_or_else(|| panic!("missing frame {i} ({what}); got {out:02x?}"));
        assert_eq!(got, want, "frame {i}: {what}");
    }
    assert_eq!(out.len(), expected.len(), "extra frames: {out:02x?}");
}
