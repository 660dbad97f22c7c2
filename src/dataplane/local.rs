//! Traffic addressed to the director itself: ARP for its addresses and VIPs,
//! ICMP echo to them. Pure logic over a frame buffer, so it is tested on
//! plain bytes; the worker moves frames between mbufs and these functions.
//! On a port with a kernel twin, ARP requests and pings for the director's
//! own addresses never get here: the kernel answers them (see
//! `exception`); VIPs are always answered here.

use super::counters::{DropReason, Event, WorkerCounters};
use crate::wire::{self, ArpOperation, ArpPacket, EtherType, EthernetFrame, Ipv4Packet, MacAddr};
use std::net::Ipv4Addr;

/// The director's identity on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAddrs {
    pub mac: MacAddr,
    /// Director addresses with their prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// Virtual service addresses announced on this port.
    pub vips: Vec<Ipv4Addr>,
    /// Next hop for destinations off every connected subnet.
    pub gateway: Option<Ipv4Addr>,
}

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32) as u32)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl PortAddrs {
    /// One of the director's own addresses on this port.
    pub fn is_own(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|(a, _)| *a == ip)
    }

    /// An address the director answers for (own address or VIP).
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.is_own(ip) || self.vips.contains(&ip)
    }

    /// Whether `ip` is on one of this port's connected subnets.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|(a, p)| in_subnet(ip, *a, *p))
    }

    /// Next hop towards `dst`: itself when on-link, else the gateway.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.on_link(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }

    /// The director address to use as a source towards `dst`.
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addrs
            .iter()
            .find(|(a, p)| in_subnet(dst, *a, *p))
            .or_else(|| self.addrs.first())
            .map(|(a, _)| *a)
    }
}

/// What to do with a frame after local handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    /// The frame is now a reply, complete with Ethernet header: send the
    /// first `len` bytes back out of the port it came in on.
    SendBack { len: usize },
    /// The frame is now an IPv4 packet (first `len` bytes) to route to
    /// `next_hop`: resolve its MAC, set the Ethernet destination, send.
    Route { len: usize, next_hop: Ipv4Addr },
    /// Fully handled (e.g. an ARP reply learned); free the frame.
    Consumed,
    /// Not addressed to the director: the forwarding path's business.
    NotLocal,
    /// Drop and count.
    Drop(DropReason),
}

/// A neighbour the frame taught us: (address, MAC, was it an answer to us).
pub type Learned = Option<(Ipv4Addr, MacAddr, bool)>;

/// Handle one received frame. `learned` is set when an ARP packet tells us a
/// neighbour's MAC.
pub fn handle_frame(
    frame: &mut [u8],
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    // The common case first, decided from fixed offsets: an untagged IPv4
    // TCP/UDP frame without options sent to our MAC is never ours to answer
    // (the slow path below returns NotLocal for it too); the forwarding
    // path validates it in full.
    if let Some(h) = frame.get(..24) {
        if h[12..14] == [0x08, 0x00]
            && h[14] == 0x45
            && (h[23] == wire::IpProtocol::TCP.0 || h[23] == wire::IpProtocol::UDP.0)
            && h[..6] == port.mac.0
        {
            return LocalVerdict::NotLocal;
        }
    }
    let (l3, ethertype) = match wire::l3_offset(frame) {
        Ok(v) => v,
        Err(_) => return LocalVerdict::Drop(DropReason::BadEthernet),
    };
    let dst_mac = EthernetFrame::new_unchecked(&*frame).dst_addr();
    if dst_mac != port.mac && !dst_mac.is_broadcast() && !dst_mac.is_multicast() {
        return LocalVerdict::Drop(DropReason::NotForUs);
    }
    match ethertype {
        EtherType::ARP => handle_arp(frame, l3, port, counters, learned),
        EtherType::IPV4 => handle_ipv4(frame, l3, port, counters),
        EtherType::IPV6 => LocalVerdict::Drop(DropReason::Ipv6Unsupported),
        _ => LocalVerdict::Drop(DropReason::UnknownEthertype),
    }
}

fn handle_arp(
    frame: &mut [u8],
    l3: usize,
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    let Some(body) = frame.get_mut(l3..) else {
        return LocalVerdict::Drop(DropReason::BadArp);
    };
    let mut arp = match ArpPacket::new_checked(body) {
        Ok(a) => a,
        Err(_) => return LocalVerdict::Drop(DropReason::BadArp),
    };
    let sender_ip = arp.source_protocol_addr();
    let sender_mac = arp.source_hardware_addr();
    let target_ip = arp.target_protocol_addr();
    let valid_sender = !sender_ip.is_unspecified() && sender_mac.is_unicast();
    match arp.operation() {
        ArpOperation::Request => {
            counters.add(Event::ArpRequestsIn, 1);
            if arp.is_gratuitous() {
                if valid_sender && port.on_link(sender_ip) {
                    *learned = Some((sender_ip, sender_mac, false));
                }
                return LocalVerdict::Consumed;
            }
            if !port.is_local(target_ip) {
                return LocalVerdict::Drop(DropReason::ArpNotForUs);
            }
            // Like Linux: a request for us also teaches us the requester.
            if valid_sender && port.on_link(sender_ip) {
                *learned = Some((sender_ip, sender_mac, false));
            }
            arp.make_reply_in_place(port.mac);
            let mut eth = EthernetFrame::new_unchecked(&mut *frame);
            eth.set_dst_addr(sender_mac);
            eth.set_src_addr(port.mac);
            counters.add(Event::ArpRepliesOut, 1);
            LocalVerdict::SendBack {
                len: l3 + ArpPacket::<&[u8]>::LEN,
            }
        }
        ArpOperation::Reply => {
            counters.add(Event::ArpRepliesIn, 1);
            if valid_sender && (port.is_own(target_ip) || arp.is_gratuitous()) {
                *learned = Some((sender_ip, sender_mac, port.is_own(target_ip)));
                LocalVerdict::Consumed
            } else {
                LocalVerdict::Drop(DropReason::ArpNotForUs)
            }
        }
        _ => LocalVerdict::Drop(DropReason::BadArp),
    }
}

fn handle_ipv4(
    frame: &mut [u8],
    l3: usize,
    port: &PortAddrs,
    counters: &WorkerCounters,
) -> LocalVerdict {
    let Some(ip) = frame.get_mut(l3..) else {
        return LocalVerdict::Drop(DropReason::BadIpHeader);
    };
    let pkt = match Ipv4Packet::new_checked(&*ip) {
        Ok(p) => p,
        // the forwarding path validates in detail and counts the precise
        // reason (bad IHL, bad total length, ...)
        Err(_) => return LocalVerdict::NotLocal,
    };
    if !port.is_local(pkt.dst_addr()) {
        return LocalVerdict::NotLocal;
    }
    if pkt.protocol() != wire::IpProtocol::ICMP {
        // TCP/UDP to a VIP, or to a director address used as a FULLNAT
        // local address, is the forwarding path's.
        return LocalVerdict::NotLocal;
    }
    if !pkt.verify_checksum() {
        return LocalVerdict::Drop(DropReason::BadIpChecksum);
    }
    if pkt.is_fragment() {
        return LocalVerdict::Drop(DropReason::IpFragment);
    }
    if pkt.has_options() {
        return LocalVerdict::Drop(DropReason::IpOptions);
    }
    let src = pkt.src_addr();
    match wire::icmp::Icmpv4Packet::new_checked(pkt.payload()) {
        Ok(icmp) if icmp.is_echo_request() => {}
        // errors about forwarded connections are translated by the
        // forwarding path; it drops what matches no connection
        Ok(_) => return LocalVerdict::NotLocal,
        Err(_) => return LocalVerdict::Drop(DropReason::BadIcmp),
    }
    counters.add(Event::IcmpEchoIn, 1);
    let Some(next_hop) = port.next_hop(src) else {
        return LocalVerdict::Drop(DropReason::NoRoute);
    };
    let total = match wire::icmp::ipv4_echo_reply_in_place(ip) {
        Ok(n) => n,
        Err(_) => return LocalVerdict::Drop(DropReason::BadIcmp),
    };
    EthernetFrame::new_unchecked(&mut *frame).set_src_addr(port.mac);
    counters.add(Event::IcmpEchoOut, 1);
    LocalVerdict::Route {
        len: l3 + total,
        next_hop,
    }
}

/// Write an ARP request for `target` into `out` (at least 60 bytes: the
/// frame is padded to Ethernet's minimum). Returns the frame length.
pub fn build_arp_request(
    out: &mut [u8],
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<usize> {
    const FRAME: usize = 60;
    let out = out.get_mut(..FRAME)?;
    out.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(MacAddr::BROADCAST);
    eth.set_src_addr(our_mac);
    eth.set_ethertype(EtherType::ARP);
    let repr = wire::ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: our_mac,
        source_protocol_addr: our_ip,
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: target,
    };
    repr.emit(&mut out[14..]).ok()?;
    Some(FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PacketBuilder;

    const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x55]);
    const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 5);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

    fn port() -> PortAddrs {
        PortAddrs {
            mac: OUR_MAC,
            addrs: vec![(DIP, 24)],
            vips: vec![VIP],
            gateway: None,
        }
    }

    /// One fixture: input frame, expected verdict, expected output bytes
    /// (for verdicts that send), expected learned neighbour.
    struct Case {
        name: &'static str,
        input: Vec<u8>,
        verdict: LocalVerdict,
        output: Option<Vec<u8>>,
        learned: Learned,
    }

    fn run(cases: Vec<Case>, port: &PortAddrs) {
        for c in cases {
            let counters = WorkerCounters::default();
            let mut frame = c.input.clone();
            let mut learned = None;
            let v = handle_frame(&mut frame, port, &counters, &mut learned);
            assert_eq!(v, c.verdict, "{}: verdict", c.name);
            assert_eq!(learned, c.learned, "{}: learned", c.name);
            if let Some(out) = c.output {
                let len = match v {
                    LocalVerdict::SendBack { len } | LocalVerdict::Route { len, .. } => len,
                    _ => unreachable!(),
                };
                assert_eq!(&frame[..len], &out[..], "{}: output bytes", c.name);
            }
        }
    }

    fn arp_request_to(target: Ipv4Addr) -> Vec<u8> {
        PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, PEER, target)
            .build()
    }

    fn arp_reply_from(ip: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
        PacketBuilder::ethernet(OUR_MAC, PEER_MAC)
            .arp_reply(OUR_MAC, ip, PEER_MAC, to)
            .build()
    }

    #[test]
    fn tcp_and_udp_go_to_the_forwarding_path_unless_not_for_our_mac() {
        let tcp = |dst: Ipv4Addr, mac: MacAddr| {
            PacketBuilder::ethernet(PEER_MAC, mac)
                .ipv4(FAR, dst)
                .tcp(40000, 80, crate::wire::tcp::ACK)
                .build()
        };
        let udp = |dst: Ipv4Addr| {
            PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                .ipv4(FAR, dst)
                .udp(40000, 53)
                .payload(b"q")
                .build()
        };
        let mut bad_csum = tcp(VIP, OUR_MAC);
        bad_csum[14 + 10] ^= 0xff;
        let cases = vec![
            (tcp(VIP, OUR_MAC), LocalVerdict::NotLocal),
            (tcp(DIP, OUR_MAC), LocalVerdict::NotLocal),
            (tcp(FAR, OUR_MAC), LocalVerdict::NotLocal),
            (udp(VIP), LocalVerdict::NotLocal),
            // the forwarding path validates and counts it
            (bad_csum, LocalVerdict::NotLocal),
            // broadcast takes the full path and ends the same way
            (tcp(VIP, MacAddr::BROADCAST), LocalVerdict::NotLocal),
            (
                tcp(VIP, OTHER_MAC),
                LocalVerdict::Drop(DropReason::NotForUs),
            ),
        ];
        for (i, (mut frame, want)) in cases.into_iter().enumerate() {
            let counters = WorkerCounters::default();
            let mut learned = None;
            let v = handle_frame(&mut frame, &port(), &counters, &mut learned);
            assert_eq!(v, want, "case {i}");
            assert_eq!(learned, None);
        }
    }

    fn echo(src: Ipv4Addr, dst: Ipv4Addr, dst_mac: MacAddr) -> PacketBuilder {
        PacketBuilder::ethernet(PEER_MAC, dst_mac)
            .ipv4(src, dst)
            .ttl(61)
            .ident(0x1234)
            .icmp_echo_request(0x77, 3)
            .payload(b"vsd ping payload")
    }

    fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        // the reply keeps the request's ident; TTL 64; MACs: ours as source,
        // the destination still the request's (the caller sets it after
        // resolving), i.e. our own MAC here.
        PacketBuilder::ethernet(OUR_MAC, OUR_MAC)
            .ipv4(src, dst)
            .ttl(64)
            .ident(0x1234)
            .icmp_echo_reply(0x77, 3)
            .payload(b"vsd ping payload")
            .build()
    }

    #[test]
    fn arp_fixtures() {
        let mut bad_htype = arp_request_to(DIP);
        bad_htype[14] = 0;
        bad_htype[15] = 6; // IEEE 802 hardware type: not ours
        let gratuitous = PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, PEER, PEER)
            .build();
        run(
            vec![
                Case {
                    name: "request for director address",
                    input: arp_request_to(DIP),
                    verdict: LocalVerdict::SendBack { len: 42 },
                    output: Some(arp_reply_from(DIP, PEER)),
                    learned: Some((PEER, PEER_MAC, false)),
                },
                Case {
                    name: "request for VIP",
                    input: arp_request_to(VIP),
                    verdict: LocalVerdict::SendBack { len: 42 },
                    output: Some(arp_reply_from(VIP, PEER)),
                    learned: Some((PEER, PEER_MAC, false)),
                },
                Case {
                    name: "request for someone else",
                    input: arp_request_to(Ipv4Addr::new(198, 18, 0, 77)),
                    verdict: LocalVerdict::Drop(DropReason::ArpNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "reply to our request",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .arp_reply(PEER_MAC, PEER, OUR_MAC, DIP)
                        .build(),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((PEER, PEER_MAC, true)),
                },
                Case {
                    name: "gratuitous announcement",
                    input: gratuitous,
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((PEER, PEER_MAC, false)),
                },
                Case {
                    name: "non-Ethernet ARP",
                    input: bad_htype,
                    verdict: LocalVerdict::Drop(DropReason::BadArp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "truncated ARP",
                    input: arp_request_to(DIP)[..30].to_vec(),
                    verdict: LocalVerdict::Drop(DropReason::BadArp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "unicast to another MAC",
                    input: PacketBuilder::ethernet(PEER_MAC, OTHER_MAC)
                        .arp_request(PEER_MAC, PEER, DIP)
                        .build(),
                    verdict: LocalVerdict::Drop(DropReason::NotForUs),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
    }

    #[test]
    fn icmp_fixtures() {
        let padded = echo(PEER, VIP, OUR_MAC).pad_to(120).build();
        let mut bad_csum = echo(PEER, DIP, OUR_MAC).build();
        bad_csum[24] ^= 0xff; // IP header checksum
        let mut bad_icmp = echo(PEER, DIP, OUR_MAC).build();
        bad_icmp[36] ^= 0xff; // ICMP checksum
        run(
            vec![
                Case {
                    name: "echo to director address",
                    input: echo(PEER, DIP, OUR_MAC).build(),
                    verdict: LocalVerdict::Route {
                        len: 14 + 20 + 8 + 16,
                        next_hop: PEER,
                    },
                    output: Some(echo_reply(DIP, PEER)),
                    learned: None,
                },
                Case {
                    name: "echo to VIP, Ethernet padding dropped",
                    input: padded,
                    verdict: LocalVerdict::Route {
                        len: 58,
                        next_hop: PEER,
                    },
                    output: Some(echo_reply(VIP, PEER)),
                    learned: None,
                },
                Case {
                    name: "echo from off-link without a gateway",
                    input: echo(FAR, DIP, OUR_MAC).build(),
                    verdict: LocalVerdict::Drop(DropReason::NoRoute),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "bad IP checksum",
                    input: bad_csum,
                    verdict: LocalVerdict::Drop(DropReason::BadIpChecksum),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "bad ICMP checksum",
                    input: bad_icmp,
                    verdict: LocalVerdict::Drop(DropReason::BadIcmp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "fragment",
                    input: echo(PEER, DIP, OUR_MAC).fragment(true, 0).build(),
                    verdict: LocalVerdict::Drop(DropReason::IpFragment),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "echo reply is not answered, forwarding path decides",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, DIP)
                        .icmp_echo_reply(1, 1)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "not addressed to us",
                    input: echo(PEER, Ipv4Addr::new(198, 18, 0, 50), OUR_MAC).build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "TCP to the VIP goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, VIP)
                        .tcp(40000, 80, 0x02)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "UDP to a director address goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, DIP)
                        .udp(40000, 53)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "truncated IPv4 goes to the forwarding path's checks",
                    input: echo(PEER, DIP, OUR_MAC).build()[..30].to_vec(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "runt frame",
                    input: vec![0xff; 10],
                    verdict: LocalVerdict::Drop(DropReason::BadEthernet),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
    }

    #[test]
    fn off_link_uses_gateway_and_source_selection() {
        let mut p = port();
        p.gateway = Some(GW);
        p.addrs.push((Ipv4Addr::new(198, 19, 0, 1), 16));
        assert_eq!(p.next_hop(FAR), Some(FAR), "198.19/16 is on-link now");
        assert_eq!(p.next_hop(Ipv4Addr::new(198, 20, 0, 1)), Some(GW));
        assert_eq!(p.source_for(FAR), Some(Ipv4Addr::new(198, 19, 0, 1)));
        assert_eq!(p.source_for(PEER), Some(DIP));
    }

    #[test]
    fn arp_request_builder() {
        let mut buf = [0u8; 64];
        let n = build_arp_request(&mut buf, OUR_MAC, DIP, PEER).unwrap();
        assert_eq!(n, 60);
        let expect = PacketBuilder::ethernet(OUR_MAC, MacAddr::BROADCAST)
            .arp_request(OUR_MAC, DIP, PEER)
            .pad_to(60)
            .build();
        assert_eq!(&buf[..n], &expect[..]);
        assert!(build_arp_request(&mut [0u8; 59], OUR_MAC, DIP, PEER).is_none());
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let p = port();
        let c = WorkerCounters::default();
        let base = echo(PEER, DIP, OUR_MAC).build();
        for i in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut f = if i % 2 == 0 {
                base.clone()
            } else {
                arp_request_to(VIP)
            };
            let len = (seed as usize) % (f.len() + 1);
            f.truncate(len);
            for k in 0..4 {
                if !f.is_empty() {
                    let at = ((seed >> (8 * k)) as usize) % f.len();
                    f[at] = (seed >> (16 + k)) as u8;
                }
            }
            let mut l = None;
            let _ = handle_frame(&mut f, &p, &c, &mut l);
        }
    }
}
