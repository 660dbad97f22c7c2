//! Malformed traffic through the real binary: thousands of mutated frames
//! (truncated, bit-flipped, lengths and flags scrambled) replayed with
//! net_pcap into a vsd running every forwarding method. vsd must take them
//! all, keep answering its control socket, and exit cleanly: a bad packet
//! is a counted drop or a forwarded packet, never a crash or a hang.
//!
//! The IPv6 run mutates valid IPv6 frames of every method and NAT64
//! (requests, replies, ICMPv6 and NAT64 ICMP errors, extension headers,
//! neighbor discovery, echo) and checks the books: every frame received is
//! sent (once) or counted as a drop, none vanishes uncounted, and every
//! forwarding drop has its reason.

mod common;

use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);
const LIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x200);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xfe);
const DIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
/// The first FULLNAT/NAT64 local port: replies in the seeds use it.
const LPORT: u16 = 50000;

/// `frame` (IPv6 at 14, no extension headers) with `ext` inserted after
/// the fixed header: next header `first`, the last extension header's
/// next header the original upper layer (its first byte is overwritten).
fn with_ext6(frame: &[u8], first: u8, ext: &[u8]) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let plen = u16::from_be_bytes([out[18], out[19]]) as usize + ext.len();
    out[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    let upper = out[20];
    out[20] = first;
    let mut ext = ext.to_vec();
    ext[0] = upper;
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let c = || PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv4(CLIENT, VIP);
    let r = || PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv4(RS, CLIENT);
    vec![
        c().tcp(40000, 80, 0x02).build(),
        c().tcp(40001, 81, 0x02).build(),
        c().tcp(40002, 82, 0x02)
            .payload(&[7; 1400])
            .dont_frag(true)
            .build(),
        c().tcp(40003, 83, 0x02).build(),
        c().tcp(40000, 80, 0x10).payload(b"data").build(),
        c().udp(40004, 53).payload(b"q").build(),
        r().tcp(8080, 40000, 0x12).build(),
        r().icmp(3, 3, 0)
            .payload(&c().tcp(40000, 80, 0x02).build()[14..])
            .build(),
        c().icmp_echo_request(1, 1).build(),
        PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, CLIENT, VIP)
            .build(),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .vlan(5)
            .ipv4(CLIENT, VIP)
            .tcp(40005, 80, 0x02)
            .build(),
        // IPv6: TCP, UDP, extension headers, a fragment, an ICMPv6 error
        c6().tcp(40006, 80, 0x02).build(),
        c6().udp(40007, 53).payload(b"q").build(),
        with_ext6(
            &c6().tcp(40008, 80, 0x02).build(),
            0,
            &[0, 0, 1, 4, 0, 0, 0, 0],
        ),
        with_ext6(
            &c6().tcp(40009, 80, 0x02).build(),
            44,
            &[0, 0, 0, 1, 0, 0, 0, 9],
        ),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(VIP6, CLIENT6)
            .icmpv6(2, 0, 1280)
            .payload(&c6().tcp(40006, 80, 0x02).build()[14..])
            .build(),
        // IPv6 to the director: neighbor discovery (a solicitation to the
        // solicited-node group, a DAD probe, an advertisement) and echo
        PacketBuilder::ethernet(PEER_MAC, MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(CLIENT6, "ff02::1:ff00:1".parse().unwrap())
            .neighbor_solicit(DIP6, Some(PEER_MAC))
            .build(),
        PacketBuilder::ethernet(PEER_MAC, MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(Ipv6Addr::UNSPECIFIED, "ff02::1:ff00:1".parse().unwrap())
            .neighbor_solicit(DIP6, None)
            .build(),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(CLIENT6, DIP6)
            .neighbor_advert(0x60, CLIENT6, Some(PEER_MAC))
            .build(),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(CLIENT6, DIP6)
            .icmpv6_echo_request(1, 1)
            .payload(b"ping6")
            .build(),
    ]
}

fn c6() -> PacketBuilder {
    PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv6(CLIENT6, VIP6)
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(6) {
        0 => {
            let n = rng.below(f.len() + 1);
            f.truncate(n);
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                if !f.is_empty() {
                    let at = rng.below(f.len());
                    f[at] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            // scramble the IP header's interesting bytes
            for at in [14, 16, 17, 20, 21, 22, 23, 24] {
                if at < f.len() && rng.below(3) == 0 {
                    f[at] = rng.next() as u8;
                }
            }
        }
        3 => {
            // the L4 header
            for _ in 0..3 {
                if f.len() > 34 {
                    let at = 34 + rng.below((f.len() - 34).min(20));
                    f[at] = rng.next() as u8;
                }
            }
        }
        4 => f.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        _ => {
            let n = rng.below(80);
            *f = (0..n).map(|_| rng.next() as u8).collect();
        }
    }
}

#[test]
fn mutated_frames_are_dropped_or_forwarded_never_fatal() {
    const FRAMES: usize = 5000;
    let dir = std::env::temp_dir().join(unique("vsd-fuzz-"));
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut frames = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let mut f = seeds[i % seeds.len()].clone();
        if i % 10 != 0 {
            mutate(&mut rng, &mut f);
        }
        if f.is_empty() {
            f.push(0);
        }
        frames.push(f);
    }
    pcap::write(&dir.join("in.pcap"), &frames);
    let prefix = unique("vsdz");
    let svc = |port: u16, method: &str, rport: u16, extra: &str| {
        pcap::service("tcp", VIP, port, extra, RS, rport, method)
    };
    let head = pcap::replay_config(
        &dir,
        &prefix,
        8191,
        VSD_MAC,
        &["198.18.0.1/24", "198.18.1.1/24", &format!("{DIP6}/64")],
    );
    let config = format!(
        r#"{head}
[lb]
conn_capacity = 4096

[[vip]]
address = "{VIP}"
port = "cap0"
{a}{b}{c}{d}
[[service]]
proto = "udp"
vip = "{VIP}"
port = 53

[[service.real_server]]
address = "{RS}"
port = 5353
method = "nat"
"#,
        a = svc(80, "nat", 8080, ""),
        b = svc(81, "dr", 81, ""),
        c = svc(82, "tun", 82, ""),
        d = svc(83, "fullnat", 8083, "local_addresses = [\"198.18.1.200\"]"),
    );
    let mut vsd = Vsd::start(&config);
    let done = wait_for(std::time::Duration::from_secs(60), || {
        vsd.exited().is_none() && vsd.event("rx_packets") >= FRAMES as u64
    });
    assert!(done, "vsd did not take every frame:\n{}", vsd.log_text());
    // still serving the control socket
    let listing = vsd.vsadm(&["-Ln", "--stats"]);
    assert!(listing.status.success(), "vsadm -Ln failed after the fuzz");
    let counters = vsd.ask("counters");
    let total = &counters["total"];
    let sum = |o: &serde_json::Value| -> u64 {
        o.as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    };
    let drops = sum(&total["drops"]);
    let fwd_drops = total["events"]["forward_drops"].as_u64().unwrap_or(0);
    let forwarded = total["events"]["forwarded"].as_u64().unwrap_or(0);
    assert!(
        drops + fwd_drops > FRAMES as u64 / 2,
        "most mutated frames must be counted drops: {counters}"
    );
    assert!(
        forwarded > 0,
        "the unmutated seeds still forward: {counters}"
    );
    let status = vsd.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "vsd exit status {status:?}");
}

/// Mutations of an IPv6 frame: the generic ones, and its own fields
/// (payload length, next header, hop limit, the first extension header).
fn mutate6(rng: &mut Rng, f: &mut Vec<u8>) {
    if rng.below(3) != 0 {
        return mutate(rng, f);
    }
    for at in [18, 19, 20, 21, 54, 55, 56, 57] {
        if at < f.len() && rng.below(3) == 0 {
            f[at] = match rng.below(4) {
                // next header values the walker knows, and some it does not
                0 => [0, 43, 44, 60, 59, 135, 6, 17, 58, 41, 4][rng.below(11)],
                1 => f[at] ^ (1 << rng.below(8)),
                _ => rng.next() as u8,
            };
        }
    }
}

/// Valid IPv6 frames of every method and NAT64 (and the errors, extension
/// headers and neighbor discovery around them), to be mutated.
fn seeds6() -> Vec<Vec<u8>> {
    let c = || PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv6(CLIENT6, VIP6);
    let from_rs = || PacketBuilder::ethernet(RS_MAC, VSD_MAC);
    let syn = |dport: u16| c().tcp(40000 + dport, dport, 0x02).payload(b"hi").build();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for port in 80..85u16 {
        seeds.push(syn(port));
        seeds.push(c().udp(41000 + port, port + 10).payload(b"q").build());
        seeds.push(c().tcp(40000 + port, port, 0x10).payload(b"data").build());
    }
    // replies: NAT, FULLNAT, NAT64 (IPv4)
    seeds.push(from_rs().ipv6(RS6, CLIENT6).tcp(8080, 40080, 0x12).build());
    seeds.push(from_rs().ipv6(RS6, LIP6).tcp(8083, LPORT, 0x12).build());
    seeds.push(from_rs().ipv4(RS, LIP4).tcp(8084, LPORT, 0x12).build());
    seeds.push(
        from_rs()
            .ipv4(RS, LIP4)
            .udp(8094, LPORT)
            .payload(b"a")
            .build(),
    );
    // errors: from the NAT server, a router about a tunnel, the NAT64
    // server (IPv4), the client about a NAT64 reply
    let nat_sent = PacketBuilder::new()
        .ipv6(CLIENT6, RS6)
        .ttl(63)
        .tcp(40080, 8080, 0x02)
        .payload(b"hi")
        .build();
    seeds.push(
        from_rs()
            .ipv6(RS6, CLIENT6)
            .icmpv6(2, 0, 1400)
            .payload(&nat_sent)
            .build(),
    );
    let inner = PacketBuilder::new()
        .ipv6(CLIENT6, VIP6)
        .ttl(63)
        .tcp(40082, 82, 0x02)
        .payload(b"hi")
        .build();
    let tunnelled = PacketBuilder::new()
        .ipv6(DIP6, RS6)
        .ip_proto(vsd::wire::IpProtocol::IPV6)
        .payload(&inner)
        .build();
    seeds.push(
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(ROUTER6, DIP6)
            .icmpv6(2, 0, 1400)
            .payload(&tunnelled)
            .build(),
    );
    let nat64_sent = PacketBuilder::new()
        .ipv4(LIP4, RS)
        .ttl(63)
        .tcp(LPORT, 8084, 0x02)
        .payload(b"hi")
        .build();
    seeds.push(
        from_rs()
            .ipv4(RS, LIP4)
            .icmp(3, 3, 0)
            .payload(&nat64_sent)
            .build(),
    );
    seeds.push(
        from_rs()
            .ipv4(RS, LIP4)
            .icmp(3, 4, 1400)
            .payload(&nat64_sent[..28])
            .build(),
    );
    let nat64_reply = PacketBuilder::new()
        .ipv6(VIP6, CLIENT6)
        .ttl(63)
        .tcp(84, 40084, 0x12)
        .build();
    seeds.push(c().icmpv6(1, 4, 0).payload(&nat64_reply).build());
    // too big for the tunnel; hop limit 1
    seeds.push(c().udp(41082, 92).payload(&[7; 1452]).build());
    seeds.push(c().ttl(1).tcp(40999, 80, 0x02).build());
    // extension headers: hop-by-hop + destination options, a fragment
    seeds.push(with_ext6(&syn(80), 0, &[0, 0, 1, 4, 0, 0, 0, 0]));
    seeds.push(with_ext6(&syn(81), 60, &[0, 0, 1, 4, 0, 0, 0, 0]));
    seeds.push(with_ext6(&syn(82), 44, &[0, 0, 0, 1, 0, 0, 0, 9]));
    // to the director: a solicitation, echo
    seeds.push(
        PacketBuilder::ethernet(PEER_MAC, MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(CLIENT6, "ff02::1:ff00:1".parse().unwrap())
            .neighbor_solicit(DIP6, Some(PEER_MAC))
            .build(),
    );
    seeds.push(
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(CLIENT6, VIP6)
            .icmpv6_echo_request(1, 1)
            .payload(b"ping6")
            .build(),
    );
    seeds
}

#[test]
fn mutated_ipv6_frames_are_sent_or_counted_never_lost() {
    const FRAMES: usize = 5000;
    let dir = std::env::temp_dir().join(unique("vsd-fuzz6-"));
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds6();
    let mut rng = Rng(0x5eed_1234_abcd_0006);
    // the neighbours first, unmutated: the client, the IPv6 server, the
    // IPv4 server (NAT64)
    let group = "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap();
    let mut frames = vec![
        PacketBuilder::ethernet(PEER_MAC, MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(CLIENT6, group)
            .neighbor_solicit(DIP6, Some(PEER_MAC))
            .build(),
        PacketBuilder::ethernet(RS_MAC, MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(RS6, group)
            .neighbor_solicit(DIP6, Some(RS_MAC))
            .build(),
        PacketBuilder::ethernet(RS_MAC, MacAddr::BROADCAST)
            .arp_request(RS_MAC, RS, DIP4)
            .build(),
    ];
    for i in 0..FRAMES - frames.len() {
        let mut f = seeds[i % seeds.len()].clone();
        if i % 10 != 0 {
            mutate6(&mut rng, &mut f);
        }
        if f.is_empty() {
            f.push(0);
        }
        frames.push(f);
    }
    pcap::write(&dir.join("in.pcap"), &frames);
    let prefix = unique("vsdz6");
    // each method a TCP service on port P and a UDP one on P + 10
    let svc = |port: u16, method: &str, rs: String, rport: u16, extra: &str| {
        let one = |proto: &str, port: u16, rport: u16| {
            pcap::service(proto, VIP6, port, extra, &rs, rport, method)
        };
        one("tcp", port, rport) + &one("udp", port + 10, rport + 10)
    };
    let head = pcap::replay_config(
        &dir,
        &prefix,
        8191,
        VSD_MAC,
        &[&format!("{DIP4}/24"), &format!("{DIP6}/64")],
    );
    let config = format!(
        r#"{head}
[lb]
conn_capacity = 4096
local_port_min = {LPORT}
local_port_max = {lport_max}

[[vip]]
address = "{VIP6}"
port = "cap0"
{a}{b}{c}{d}{e}"#,
        lport_max = LPORT + 63,
        a = svc(80, "nat", RS6.to_string(), 8080, ""),
        b = svc(81, "dr", RS6.to_string(), 81, ""),
        c = svc(82, "tun", RS6.to_string(), 82, ""),
        d = svc(
            83,
            "fullnat",
            RS6.to_string(),
            8083,
            &format!("local_addresses = [\"{LIP6}\"]")
        ),
        e = svc(
            84,
            "fullnat",
            RS.to_string(),
            8084,
            &format!("local_addresses = [\"{LIP4}\"]")
        ),
    );
    let mut vsd = Vsd::start(&config);
    let done = wait_for(std::time::Duration::from_secs(60), || {
        vsd.exited().is_none() && vsd.event("rx_packets") >= FRAMES as u64
    });
    assert!(done, "vsd did not take every frame:\n{}", vsd.log_text());
    let listing = vsd.vsadm(&["-Ln", "--stats"]);
    assert!(listing.status.success(), "vsadm -Ln failed after the fuzz");

    // The books, once packets waiting for a neighbour have gone out or
    // been dropped (3 unanswered solicitations, 1 s apart): every frame in
    // is a frame out or a counted drop. Frames vsd makes up itself
    // (neighbour requests, announcements, MLD reports) are out but not in;
    // frames it consumes (advertisements, ARP replies and gratuitous
    // requests teach it a neighbour; MLD queries are answered with reports)
    // are neither: at most that many may be missing.
    let books = |c: &serde_json::Value| {
        let t = &c["total"];
        let ev = |n: &str| t["events"][n].as_u64().unwrap_or(0);
        let drops: u64 = t["drops"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        let made_up = ev("arp_requests_out")
            + ev("nd_solicits_out")
            + ev("garp_sent")
            + ev("unsolicited_na_sent")
            + ev("mld_reports_out");
        let sent = ev("tx_packets") - t["drops"]["tx_full"].as_u64().unwrap_or(0);
        let accounted = sent + drops + ev("forward_drops");
        let consumed_at_most = (ev("nd_adverts_in")
            + ev("arp_replies_in")
            + ev("arp_requests_in")
            + ev("mld_queries_in"))
        .saturating_sub(ev("arp_replies_out"));
        (ev("rx_packets") + made_up, accounted, consumed_at_most)
    };
    let mut last = (0, 0, 0);
    let balanced = wait_for(std::time::Duration::from_secs(30), || {
        last = books(&vsd.ask("counters"));
        let (came, accounted, consumed) = last;
        came >= accounted && came - accounted <= consumed
    });
    let counters = vsd.ask("counters");
    assert!(
        balanced,
        "frames in + made up {} != sent + dropped {} (+ consumed <= {}): {counters}",
        last.0, last.1, last.2
    );
    // every forwarding drop by its reason: the per-reason counts add up to
    // the drop verdicts, plus the hop-limit drops answered with time
    // exceeded (counted as ttl_expired and sent)
    let fwd = &counters["forwarding"];
    let by_reason: u64 = fwd["drops"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let verdicts = counters["total"]["events"]["forward_drops"]
        .as_u64()
        .unwrap_or(0);
    let answered = fwd["events"]["icmp_time_exceeded_sent"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(by_reason, verdicts + answered, "{counters}");
    // the run exercised what it claims: methods forwarded, IPv6 reasons
    let total = &counters["total"]["events"];
    assert!(total["forwarded"].as_u64().unwrap_or(0) > 100, "{counters}");
    for reason in [
        "ipv6_ext_headers",
        "ipv6_fragment",
        "truncated_l4",
        "ttl_expired",
    ] {
        assert!(
            fwd["drops"][reason].as_u64().unwrap_or(0) > 0,
            "no {reason} drop: {counters}"
        );
    }
    let status = vsd.stop();
    let out = pcap::read(&dir.join("out.pcap"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "vsd exit status {status:?}");
    // the capture holds every frame counted as sent (and perhaps a late
    // neighbour probe)
    let sent = counters["total"]["events"]["tx_packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        out.len() as u64 >= sent,
        "{} frames in out.pcap, tx_packets {sent}",
        out.len()
    );
    eprintln!(
        "IPv6 fuzz: {FRAMES} frames in, {} out, books (in + made up, sent + dropped, consumed at most) {last:?}, forwarded {}, forwarding drops {by_reason}",
        out.len(),
        total["forwarded"]
    );
}
