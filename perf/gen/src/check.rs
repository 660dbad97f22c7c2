//! What a correctly forwarded packet looks like in each mode, and the
//! per-packet check the generator runs on its samples.
//!
//! The generator plays every host behind the forwarder: clients, the
//! gateway towards them, and the real servers. It answers ARP for a real
//! server address R with the synthetic MAC `02:52:R` ([`rs_mac`]), so a
//! frame's destination MAC alone tells which real server the forwarder
//! chose, and DR (where the IP header does not change) can be checked too.

use crate::flows::FlowSpace;
use crate::packet::{Family, Headers};
use std::net::{IpAddr, Ipv4Addr};
use vsd::wire::{Ipv4Packet, Ipv6Packet, MacAddr, TcpPacket, UdpPacket};

/// What the forwarder is expected to do to each packet (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// dpdk-testpmd --forward-mode=io: packets come back unchanged.
    Io,
    /// dpdk-testpmd --forward-mode=io, with the generator answering each
    /// returned request as a real server would: every round trip crosses
    /// the forwarder twice, as in NAT and FULLNAT (their latency baseline).
    IoReflect,
    /// dpdk-testpmd --forward-mode=macswap: Ethernet addresses swapped.
    Macswap,
    /// Direct routing: destination MAC = the real server's, IP unchanged.
    Dr,
    /// IPIP tunnel: an outer IPv4 header to the real server around the
    /// unchanged packet (IPv6: an outer IPv6 header, IPv6-in-IPv6).
    Tun,
    /// NAT: destination = RIP:rport; replies come back from VIP:vport.
    Nat,
    /// FULLNAT: source = a local address, destination = RIP:rport;
    /// replies come back from VIP:vport to the client.
    Fullnat,
}

impl Mode {
    /// Whether the real servers' replies pass back through the forwarder
    /// (so the generator reflects requests by default).
    pub fn replies_through_forwarder(self) -> bool {
        matches!(self, Mode::Nat | Mode::Fullnat | Mode::IoReflect)
    }

    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Io => "io",
            Mode::IoReflect => "io-reflect",
            Mode::Macswap => "macswap",
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::Nat => "nat",
            Mode::Fullnat => "fullnat",
        }
    }
}

/// The MAC the generator answers ARP with for real server `ip`.
pub fn rs_mac(ip: u32) -> MacAddr {
    let o = ip.to_be_bytes();
    MacAddr([0x02, 0x52, o[0], o[1], o[2], o[3]])
}

/// The real server address a synthetic MAC stands for.
pub fn rs_of_mac(mac: &[u8]) -> Option<u32> {
    match mac {
        [0x02, 0x52, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// A small set of IPv4 prefixes (real servers, local addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    nets: Vec<(u32, u32)>,
}

impl NetSet {
    /// Parses comma-separated addresses and `addr/len` prefixes.
    pub fn parse(s: &str) -> Result<NetSet, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, len) = match part.split_once('/') {
                Some((a, l)) => (
                    a,
                    l.parse::<u32>()
                        .ok()
                        .filter(|l| *l <= 32)
                        .ok_or_else(|| format!("bad prefix length in {part:?}"))?,
                ),
                None => (part, 32),
            };
            let addr: Ipv4Addr = a.parse().map_err(|_| format!("bad IPv4 address {a:?}"))?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            nets.push((u32::from(addr) & mask, mask));
        }
        Ok(NetSet { nets })
    }

    /// Whether `ip` lies in one of the prefixes.
    #[inline]
    pub fn contains(&self, ip: u32) -> bool {
        self.nets.iter().any(|&(net, mask)| ip & mask == net)
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Why a sampled packet failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The IPv4 header checksum (outer or inner) does not verify.
    IpChecksum,
    /// The TCP/UDP checksum does not verify.
    L4Checksum,
    /// Truncated or inconsistent lengths.
    Malformed,
    /// Destination MAC is not what the mode sends to.
    DstMac,
    /// Source MAC is not what the mode sends from.
    SrcMac,
    /// Source address/port not what the mode leaves or writes there.
    Src,
    /// Destination address not what the mode leaves or writes there.
    DstAddr,
    /// Destination port not what the mode leaves or writes there.
    DstPort,
    /// TUN: no outer IPIP header, or one not from a director address;
    /// other modes: an unexpected one.
    Encapsulation,
    /// TUN: outer destination is not a real server, or not the one whose
    /// MAC the frame is addressed to.
    OuterDst,
    /// The payload after the stamp is not the zeros we sent.
    Payload,
}

impl Failure {
    /// Every reason, in report order.
    pub const ALL: [Failure; 11] = [
        Failure::IpChecksum,
        Failure::L4Checksum,
        Failure::Malformed,
        Failure::DstMac,
        Failure::SrcMac,
        Failure::Src,
        Failure::DstAddr,
        Failure::DstPort,
        Failure::Encapsulation,
        Failure::OuterDst,
        Failure::Payload,
    ];

    /// Name in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Failure::IpChecksum => "ip_checksum",
            Failure::L4Checksum => "l4_checksum",
            Failure::Malformed => "malformed",
            Failure::DstMac => "dst_mac",
            Failure::SrcMac => "src_mac",
            Failure::Src => "src",
            Failure::DstAddr => "dst_addr",
            Failure::DstPort => "dst_port",
            Failure::Encapsulation => "encapsulation",
            Failure::OuterDst => "outer_dst",
            Failure::Payload => "payload",
        }
    }

    /// Index into a per-reason counter array.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which way a received data packet travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → real server (what the forwarder sends to a real server; in
    /// io/macswap mode, every packet).
    Request,
    /// Real server → client, through the forwarder (NAT/FULLNAT replies).
    Reply,
}

/// Everything the checker compares against.
#[derive(Debug, Clone)]
pub struct Expect {
    pub mode: Mode,
    /// The address family (IPv6: addresses below are host parts in its /96).
    pub family: Family,
    pub gen_mac: MacAddr,
    pub dut_mac: MacAddr,
    pub vip: u32,
    pub vport: u16,
    pub rport: u16,
    pub proto: u8,
    pub rips: NetSet,
    pub lips: NetSet,
    /// Established flows.
    pub clients: FlowSpace,
    /// Tuples of new connections.
    pub new_clients: FlowSpace,
}

impl Expect {
    fn is_client(&self, ip: u32, port: u16) -> bool {
        self.clients.index_of(ip, port).is_some() || self.new_clients.index_of(ip, port).is_some()
    }

    /// The direction of a data packet (cheap; every packet).
    #[inline]
    pub fn direction(&self, h: &Headers) -> Direction {
        if self.mode.replies_through_forwarder() && h.src == self.vip && h.outer_ip.is_none() {
            Direction::Reply
        } else {
            Direction::Request
        }
    }

    /// Full check of one sampled packet: addresses, ports, MACs,
    /// checksums and payload for the mode and direction.
    pub fn check(&self, frame: &[u8], h: &Headers, dir: Direction) -> Result<(), Failure> {
        let dst_mac = frame.get(0..6).ok_or(Failure::Malformed)?;
        let src_mac = frame.get(6..12).ok_or(Failure::Malformed)?;
        let (want_dst_mac, want_src_mac): (Option<MacAddr>, MacAddr) = match (self.mode, dir) {
            (Mode::Io, _) | (Mode::IoReflect, Direction::Request) => {
                (Some(self.dut_mac), self.gen_mac)
            }
            // returned as the generator reflected it, from the "server" VIP
            (Mode::IoReflect, Direction::Reply) => (Some(self.dut_mac), rs_mac(self.vip)),
            (Mode::Macswap, _) => (Some(self.gen_mac), self.dut_mac),
            (_, Direction::Reply) => (Some(self.gen_mac), self.dut_mac),
            // Checked below against the real server the packet went to.
            (_, Direction::Request) => (None, self.dut_mac),
        };
        if src_mac != want_src_mac.0 {
            return Err(Failure::SrcMac);
        }
        if let Some(m) = want_dst_mac {
            if dst_mac != m.0 {
                return Err(Failure::DstMac);
            }
        }
        let rs_by_mac = if want_dst_mac.is_none() {
            match rs_of_mac(dst_mac) {
                Some(r) if self.rips.contains(r) => Some(r),
                _ => return Err(Failure::DstMac),
            }
        } else {
            None
        };
        match (self.mode, h.outer_ip) {
            (Mode::Tun, None) if dir == Direction::Request => return Err(Failure::Encapsulation),
            (Mode::Tun, Some(outer)) => {
                let outer = frame.get(outer..).ok_or(Failure::Malformed)?;
                let (osrc, odst) = match self.family {
                    Family::V4 => {
                        let o = Ipv4Packet::new_checked(outer).map_err(|_| Failure::Malformed)?;
                        if !o.verify_checksum() {
                            return Err(Failure::IpChecksum);
                        }
                        (IpAddr::V4(o.src_addr()), IpAddr::V4(o.dst_addr()))
                    }
                    Family::V6 { .. } => {
                        let o = Ipv6Packet::new_checked(outer).map_err(|_| Failure::Malformed)?;
                        (IpAddr::V6(o.src_addr()), IpAddr::V6(o.dst_addr()))
                    }
                };
                // from a director address: of the family's /96, never 0
                if self.family.host_of(osrc).is_none_or(|h| h == 0) {
                    return Err(Failure::Encapsulation);
                }
                match self.family.host_of(odst) {
                    Some(odst) if self.rips.contains(odst) && rs_by_mac == Some(odst) => {}
                    _ => return Err(Failure::OuterDst),
                }
            }
            (_, Some(_)) => return Err(Failure::Encapsulation),
            _ => {}
        }
        // Addresses and ports.
        match (self.mode, dir) {
            (Mode::Io | Mode::Macswap | Mode::Dr | Mode::Tun, _)
            | (Mode::IoReflect, Direction::Request) => {
                if !self.is_client(h.src, h.sport) {
                    return Err(Failure::Src);
                }
                if h.dst != self.vip {
                    return Err(Failure::DstAddr);
                }
                if h.dport != self.vport {
                    return Err(Failure::DstPort);
                }
            }
            (Mode::Nat | Mode::Fullnat, Direction::Request) => {
                let src_ok = if self.mode == Mode::Nat {
                    self.is_client(h.src, h.sport)
                } else {
                    self.lips.contains(h.src)
                        || (self.lips.is_empty() && !self.is_client(h.src, h.sport))
                };
                if !src_ok {
                    return Err(Failure::Src);
                }
                if !self.rips.contains(h.dst) || rs_by_mac != Some(h.dst) {
                    return Err(Failure::DstAddr);
                }
                if h.dport != self.rport {
                    return Err(Failure::DstPort);
                }
            }
            (Mode::Nat | Mode::Fullnat | Mode::IoReflect, Direction::Reply) => {
                if h.src != self.vip || h.sport != self.vport {
                    return Err(Failure::Src);
                }
                if !self.is_client(h.dst, h.dport) {
                    return Err(Failure::DstAddr);
                }
            }
        }
        if h.proto != self.proto {
            return Err(Failure::Malformed);
        }
        // Our payload: a 6-byte stamp, then zeros.
        let payload_ok = |p: &[u8]| {
            p.get(crate::packet::STAMP_LEN..)
                .is_some_and(|rest| rest.iter().all(|&b| b == 0))
        };
        // Checksums over the (inner) packet.
        let ip_bytes = frame.get(h.ip..).ok_or(Failure::Malformed)?;
        let payload_good = match self.family {
            Family::V4 => {
                let ip = Ipv4Packet::new_checked(ip_bytes).map_err(|_| Failure::Malformed)?;
                if !ip.verify_checksum() {
                    return Err(Failure::IpChecksum);
                }
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                match h.proto {
                    6 => {
                        let t =
                            TcpPacket::new_checked(ip.payload()).map_err(|_| Failure::Malformed)?;
                        if !t.verify_checksum_v4(src, dst) {
                            return Err(Failure::L4Checksum);
                        }
                        payload_ok(t.payload())
                    }
                    _ => {
                        let u =
                            UdpPacket::new_checked(ip.payload()).map_err(|_| Failure::Malformed)?;
                        if !u.verify_checksum_v4(src, dst) {
                            return Err(Failure::L4Checksum);
                        }
                        payload_ok(u.payload())
                    }
                }
            }
            Family::V6 { .. } => {
                let ip = Ipv6Packet::new_checked(ip_bytes).map_err(|_| Failure::Malformed)?;
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                // the fast path compared host parts only: the /96 too
                if self.family.host_of(IpAddr::V6(src)) != Some(h.src) {
                    return Err(Failure::Src);
                }
                if self.family.host_of(IpAddr::V6(dst)) != Some(h.dst) {
                    return Err(Failure::DstAddr);
                }
                match h.proto {
                    6 => {
                        let t =
                            TcpPacket::new_checked(ip.payload()).map_err(|_| Failure::Malformed)?;
                        if !t.verify_checksum_v6(&src, &dst) {
                            return Err(Failure::L4Checksum);
                        }
                        payload_ok(t.payload())
                    }
                    _ => {
                        let u =
                            UdpPacket::new_checked(ip.payload()).map_err(|_| Failure::Malformed)?;
                        if !u.verify_checksum_v6(&src, &dst) {
                            return Err(Failure::L4Checksum);
                        }
                        payload_ok(u.payload())
                    }
                }
            }
        };
        if !payload_good {
            return Err(Failure::Payload);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse, Proto, Rx, Stamp, Template, TemplateSpec};
    use vsd::wire::{ipip, tcp, PacketBuilder};

    const GEN: MacAddr = MacAddr([2, 0, 0, 0, 0x20, 1]);
    const DUT: MacAddr = MacAddr([2, 0, 0, 0, 0x10, 1]);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn n(s: &str) -> u32 {
        u32::from(ip(s))
    }

    fn expect(mode: Mode) -> Expect {
        Expect {
            mode,
            family: Family::V4,
            gen_mac: GEN,
            dut_mac: DUT,
            vip: n("198.18.0.100"),
            vport: 80,
            rport: if matches!(mode, Mode::Nat | Mode::Fullnat) {
                8080
            } else {
                80
            },
            proto: 6,
            rips: NetSet::parse("198.18.0.11,198.18.0.12").unwrap(),
            lips: NetSet::parse("198.18.0.200/29").unwrap(),
            clients: FlowSpace::new(ip("198.19.0.0"), 256, 1024, 1000).unwrap(),
            new_clients: FlowSpace::full(ip("198.19.128.0"), 32768, 1024).unwrap(),
        }
    }

    /// The frame the generator sends for client 198.19.0.7:1027.
    fn sent() -> Vec<u8> {
        let t = Template::new(&TemplateSpec {
            family: Family::V4,
            proto: Proto::Tcp,
            tcp_flags: tcp::ACK,
            src_mac: GEN,
            dst_mac: DUT,
            dst_ip: ip("198.18.0.100"),
            dst_port: 80,
            frame_len: 60,
        });
        let mut f = vec![0u8; 60];
        t.write(&mut f, n("198.19.0.7"), 1027, Some(Stamp::at(99, 1)));
        f
    }

    fn payload_of(f: &[u8]) -> Vec<u8> {
        f[54..].to_vec()
    }

    fn tcp_frame(
        smac: MacAddr,
        dmac: MacAddr,
        s: (&str, u16),
        d: (&str, u16),
        pl: &[u8],
    ) -> Vec<u8> {
        PacketBuilder::ethernet(smac, dmac)
            .ipv4(ip(s.0), ip(d.0))
            .tcp(s.1, d.1, tcp::ACK)
            .seq(1)
            .ack(1)
            .payload(pl)
            .build()
    }

    fn run(e: &Expect, f: &[u8]) -> Result<(), Failure> {
        let Rx::Data(h) = parse(f) else {
            return Err(Failure::Malformed);
        };
        e.check(f, &h, e.direction(&h))
    }

    #[test]
    fn io_accepts_unchanged_and_rejects_swapped() {
        let f = sent();
        assert_eq!(run(&expect(Mode::Io), &f), Ok(()));
        let mut swapped = f.clone();
        swapped[..6].copy_from_slice(&GEN.0);
        swapped[6..12].copy_from_slice(&DUT.0);
        assert_eq!(run(&expect(Mode::Io), &swapped), Err(Failure::SrcMac));
        assert_eq!(run(&expect(Mode::Macswap), &swapped), Ok(()));
        assert_eq!(run(&expect(Mode::Macswap), &f), Err(Failure::SrcMac));
    }

    #[test]
    fn io_reflect_checks_both_crossings() {
        let e = expect(Mode::IoReflect);
        // first crossing: the request comes back unchanged
        let mut f = sent();
        let Rx::Data(h) = parse(&f) else {
            panic!("not data")
        };
        assert_eq!(e.direction(&h), Direction::Request);
        assert_eq!(e.check(&f, &h, Direction::Request), Ok(()));
        // the generator answers as the server behind the VIP ...
        assert!(crate::packet::reflect(
            &mut f,
            &h,
            rs_mac(n("198.18.0.100")),
            DUT
        ));
        // ... and the forwarder returns that unchanged too
        let Rx::Data(h) = parse(&f) else {
            panic!("not data")
        };
        assert_eq!(e.direction(&h), Direction::Reply);
        assert_eq!(e.check(&f, &h, Direction::Reply), Ok(()));
        // a reply with the generator's own MAC did not come from the reflection
        let mut g = f.clone();
        g[6..12].copy_from_slice(&GEN.0);
        assert_eq!(e.check(&g, &h, Direction::Reply), Err(Failure::SrcMac));
        // a reply to somebody who is not a client
        let pl = payload_of(&sent());
        let f = tcp_frame(
            rs_mac(n("198.18.0.100")),
            DUT,
            ("198.18.0.100", 80),
            ("198.19.9.7", 1027),
            &pl,
        );
        assert_eq!(run(&e, &f), Err(Failure::DstAddr));
    }

    #[test]
    fn corrupted_checksums_and_payload_fail() {
        let e = expect(Mode::Io);
        let mut f = sent();
        f[14 + 8] = 63; // TTL changed without checksum update
        assert_eq!(run(&e, &f), Err(Failure::IpChecksum));
        let mut f = sent();
        f[34 + 4] ^= 1; // TCP sequence number
        assert_eq!(run(&e, &f), Err(Failure::L4Checksum));
        // a nonzero byte after the stamp, with a consistent checksum
        let mut pl = payload_of(&sent());
        pl.push(0);
        pl.push(9);
        let f = tcp_frame(DUT, GEN, ("198.19.0.7", 1027), ("198.18.0.100", 80), &pl);
        let mut f2 = f.clone();
        f2[..6].copy_from_slice(&DUT.0);
        f2[6..12].copy_from_slice(&GEN.0);
        assert_eq!(run(&e, &f2), Err(Failure::Payload));
    }

    #[test]
    fn io_rejects_foreign_tuples() {
        let e = expect(Mode::Io);
        let pl = payload_of(&sent());
        let f = tcp_frame(GEN, DUT, ("198.19.9.7", 1027), ("198.18.0.100", 80), &pl);
        assert_eq!(run(&e, &f), Err(Failure::Src));
        let f = tcp_frame(GEN, DUT, ("198.19.0.7", 1027), ("198.18.0.101", 80), &pl);
        assert_eq!(run(&e, &f), Err(Failure::DstAddr));
        let f = tcp_frame(GEN, DUT, ("198.19.0.7", 1027), ("198.18.0.100", 81), &pl);
        assert_eq!(run(&e, &f), Err(Failure::DstPort));
        // new-connection tuples are clients too
        let f = tcp_frame(GEN, DUT, ("198.19.130.1", 5000), ("198.18.0.100", 80), &pl);
        assert_eq!(run(&e, &f), Ok(()));
    }

    #[test]
    fn dr_wants_a_real_server_mac_and_nothing_else_changed() {
        let e = expect(Mode::Dr);
        let mut f = sent();
        f[..6].copy_from_slice(&rs_mac(n("198.18.0.12")).0);
        f[6..12].copy_from_slice(&DUT.0);
        assert_eq!(run(&e, &f), Ok(()));
        f[..6].copy_from_slice(&rs_mac(n("198.18.0.13")).0);
        assert_eq!(run(&e, &f), Err(Failure::DstMac));
        f[..6].copy_from_slice(&DUT.0);
        assert_eq!(run(&e, &f), Err(Failure::DstMac));
        // unchanged (as sent): the source MAC is still the generator's
        assert_eq!(run(&e, &sent()), Err(Failure::SrcMac));
    }

    fn tunnelled(outer_dst: &str, mac_of: &str) -> Vec<u8> {
        let f = sent();
        let inner = &f[14..];
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(inner);
        let len =
            ipip::encap_ipv4_in_ipv4(&mut buf, inner.len(), ip("198.18.0.1"), ip(outer_dst), 0)
                .unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&rs_mac(n(mac_of)).0);
        out.extend_from_slice(&DUT.0);
        out.extend_from_slice(&[0x08, 0x00]);
        out.extend_from_slice(&buf[..len]);
        out
    }

    #[test]
    fn tun_wants_ipip_to_the_real_server() {
        let e = expect(Mode::Tun);
        assert_eq!(run(&e, &tunnelled("198.18.0.11", "198.18.0.11")), Ok(()));
        assert_eq!(
            run(&e, &tunnelled("198.18.0.11", "198.18.0.12")),
            Err(Failure::OuterDst)
        );
        assert_eq!(
            run(&e, &tunnelled("198.18.0.99", "198.18.0.99")),
            Err(Failure::DstMac)
        );
        let mut bad = tunnelled("198.18.0.11", "198.18.0.11");
        bad[14 + 8] = 1; // outer TTL without checksum update
        assert_eq!(run(&e, &bad), Err(Failure::IpChecksum));
        let mut plain = sent();
        plain[..6].copy_from_slice(&rs_mac(n("198.18.0.11")).0);
        plain[6..12].copy_from_slice(&DUT.0);
        assert_eq!(run(&e, &plain), Err(Failure::Encapsulation));
        // and DR refuses a tunnelled packet
        assert_eq!(
            run(&expect(Mode::Dr), &tunnelled("198.18.0.11", "198.18.0.11")),
            Err(Failure::Encapsulation)
        );
    }

    #[test]
    fn nat_request_and_reply() {
        let e = expect(Mode::Nat);
        let pl = payload_of(&sent());
        let rs = rs_mac(n("198.18.0.11"));
        let req = tcp_frame(DUT, rs, ("198.19.0.7", 1027), ("198.18.0.11", 8080), &pl);
        assert_eq!(run(&e, &req), Ok(()));
        let wrong_port = tcp_frame(DUT, rs, ("198.19.0.7", 1027), ("198.18.0.11", 80), &pl);
        assert_eq!(run(&e, &wrong_port), Err(Failure::DstPort));
        let not_rs = tcp_frame(DUT, rs, ("198.19.0.7", 1027), ("198.18.0.100", 8080), &pl);
        assert_eq!(run(&e, &not_rs), Err(Failure::DstAddr));
        let other_rs = tcp_frame(DUT, rs, ("198.19.0.7", 1027), ("198.18.0.12", 8080), &pl);
        assert_eq!(run(&e, &other_rs), Err(Failure::DstAddr));
        let snat = tcp_frame(DUT, rs, ("198.18.0.201", 1027), ("198.18.0.11", 8080), &pl);
        assert_eq!(run(&e, &snat), Err(Failure::Src));
        let reply = tcp_frame(DUT, GEN, ("198.18.0.100", 80), ("198.19.0.7", 1027), &pl);
        assert_eq!(run(&e, &reply), Ok(()));
        let bad_reply = tcp_frame(DUT, GEN, ("198.18.0.100", 8080), ("198.19.0.7", 1027), &pl);
        assert_eq!(run(&e, &bad_reply), Err(Failure::Src));
        let stray = tcp_frame(DUT, GEN, ("198.18.0.100", 80), ("198.19.99.7", 1027), &pl);
        assert_eq!(run(&e, &stray), Err(Failure::DstAddr));
    }

    #[test]
    fn fullnat_wants_a_local_source() {
        let e = expect(Mode::Fullnat);
        let pl = payload_of(&sent());
        let rs = rs_mac(n("198.18.0.12"));
        let req = tcp_frame(DUT, rs, ("198.18.0.203", 40000), ("198.18.0.12", 8080), &pl);
        assert_eq!(run(&e, &req), Ok(()));
        let not_lip = tcp_frame(DUT, rs, ("198.19.0.7", 1027), ("198.18.0.12", 8080), &pl);
        assert_eq!(run(&e, &not_lip), Err(Failure::Src));
        let reply = tcp_frame(DUT, GEN, ("198.18.0.100", 80), ("198.19.0.7", 1027), &pl);
        assert_eq!(run(&e, &reply), Ok(()));
    }

    #[test]
    fn netset_parses_and_matches() {
        let s = NetSet::parse("10.0.0.1, 10.1.0.0/16").unwrap();
        assert!(s.contains(n("10.0.0.1")));
        assert!(!s.contains(n("10.0.0.2")));
        assert!(s.contains(n("10.1.255.3")));
        assert!(NetSet::parse("10.0.0.0/33").is_err());
        assert!(NetSet::parse("10.0.0").is_err());
        assert!(NetSet::parse("").unwrap().is_empty());
        assert_eq!(rs_of_mac(&rs_mac(n("1.2.3.4")).0), Some(n("1.2.3.4")));
        assert_eq!(rs_of_mac(&GEN.0), None);
    }

    fn v6() -> Family {
        Family::v6("2001:2::".parse().unwrap())
    }

    fn a6(s: &str) -> std::net::Ipv6Addr {
        match v6().addr(n(s)) {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => unreachable!(),
        }
    }

    fn expect6(mode: Mode) -> Expect {
        Expect {
            family: v6(),
            ..expect(mode)
        }
    }

    /// An IPv6 TCP ACK between the IPv6 forms of IPv4 addresses `s` and `d`.
    fn tcp6(smac: MacAddr, dmac: MacAddr, s: (&str, u16), d: (&str, u16)) -> Vec<u8> {
        PacketBuilder::ethernet(smac, dmac)
            .ipv6(a6(s.0), a6(d.0))
            .tcp(s.1, d.1, tcp::ACK)
            .seq(1)
            .ack(1)
            .payload(&[0, 0, 0, 9, 0, 1])
            .build()
    }

    #[test]
    fn ipv6_every_method_checked() {
        let rs = rs_mac(n("198.18.0.11"));
        let client = ("198.19.0.7", 1027);
        // DR: only the MACs change
        let dr = tcp6(DUT, rs, client, ("198.18.0.100", 80));
        assert_eq!(run(&expect6(Mode::Dr), &dr), Ok(()));
        // the same frame is not IPv4 traffic
        assert_eq!(run(&expect(Mode::Dr), &dr), Err(Failure::Malformed));
        // NAT and FULLNAT requests and the reply
        let nat = tcp6(DUT, rs, client, ("198.18.0.11", 8080));
        assert_eq!(run(&expect6(Mode::Nat), &nat), Ok(()));
        let fnat = tcp6(DUT, rs, ("198.18.0.203", 40000), ("198.18.0.11", 8080));
        assert_eq!(run(&expect6(Mode::Fullnat), &fnat), Ok(()));
        assert_eq!(run(&expect6(Mode::Nat), &fnat), Err(Failure::Src));
        let reply = tcp6(DUT, GEN, ("198.18.0.100", 80), client);
        assert_eq!(run(&expect6(Mode::Nat), &reply), Ok(()));
        // a bad L4 checksum
        let mut bad = nat.clone();
        bad[54 + 4] ^= 1;
        assert_eq!(run(&expect6(Mode::Nat), &bad), Err(Failure::L4Checksum));
        // the right host part under another prefix
        let other = PacketBuilder::ethernet(DUT, rs)
            .ipv6("2001:3::c613:7".parse().unwrap(), a6("198.18.0.11"))
            .tcp(1027, 8080, tcp::ACK)
            .seq(1)
            .ack(1)
            .payload(&[0, 0, 0, 9, 0, 1])
            .build();
        assert_eq!(run(&expect6(Mode::Nat), &other), Err(Failure::Src));
        let other = PacketBuilder::ethernet(DUT, rs)
            .ipv6(a6("198.19.0.7"), "2001:3::c612:b".parse().unwrap())
            .tcp(1027, 8080, tcp::ACK)
            .seq(1)
            .ack(1)
            .payload(&[0, 0, 0, 9, 0, 1])
            .build();
        assert_eq!(run(&expect6(Mode::Nat), &other), Err(Failure::DstAddr));
        // TUN: IPv6-in-IPv6 to the server the frame is addressed to
        let tunnel = |outer_dst: &str, mac: MacAddr| {
            let inner = &dr[14..];
            PacketBuilder::ethernet(DUT, mac)
                .ipv6(a6("198.18.0.1"), a6(outer_dst))
                .ip_proto(vsd::wire::IpProtocol(41))
                .payload(inner)
                .build()
        };
        assert_eq!(run(&expect6(Mode::Tun), &tunnel("198.18.0.11", rs)), Ok(()));
        assert_eq!(
            run(&expect6(Mode::Tun), &tunnel("198.18.0.12", rs)),
            Err(Failure::OuterDst)
        );
        assert_eq!(run(&expect6(Mode::Tun), &dr), Err(Failure::Encapsulation));
        // from the unspecified address: not a director's tunnel
        let mut from_nowhere = tunnel("198.18.0.11", rs);
        from_nowhere[14 + 8..14 + 24].fill(0);
        assert_eq!(
            run(&expect6(Mode::Tun), &from_nowhere),
            Err(Failure::Encapsulation)
        );
        assert_eq!(
            run(&expect6(Mode::Dr), &tunnel("198.18.0.11", rs)),
            Err(Failure::Encapsulation)
        );
    }
}
