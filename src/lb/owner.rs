//! The one flow-ownership rule (ARCHITECTURE principle 2):
//! `owner(tuple) = RETA[toeplitz(key, tuple) % reta.len()]`, where the
//! tuple is (source address, destination address, source port,
//! destination port) of the packet as it is on the wire.
//!
//! The NIC computes it in hardware with RSS; [`RssOwner`] computes the same
//! thing in software, so that
//! - a FULLNAT core picks local ports whose *reply* tuple it owns,
//! - a NAT core knows which core will see the replies of a new connection
//!   and installs the connection there,
//! - the data plane can steer packets on ports without RSS.
//!
//! With [`SYMMETRIC_KEY`] both directions of an unmodified tuple hash alike.
//! That key (0x6d5a repeated) presents the same key windows to every 16-bit
//! input word, so the hash is a linear function of the XOR of the tuple's
//! six 16-bit words alone. One consequence: a NAT reply tuple
//! `(RIP, CIP, rport, cport)` differs from its request `(CIP, VIP, cport,
//! vport)` by the constant `VIP ^ vport ^ RIP ^ rport` (folded to 16 bits),
//! so whether replies come back to the request's core is fixed per
//! (VIP:vport, RIP:rport) pair and RETA, not per client.
//!
//! IPv6 follows the same rule over the RSS_IPV6 input layout (source
//! address, destination address, 16 bytes each, then the ports: 36 bytes;
//! 32 for the 2-tuple), which is what NICs hash for IPv6 TCP/UDP
//! (`RTE_ETH_RSS_NONFRAG_IPV6_TCP`/`UDP`) and other IPv6
//! (`RTE_ETH_RSS_IPV6`); `dpdk::port` asks for exactly those hash types.
//!
//! Port decomposition: Toeplitz is linear over the input bits (XOR), so
//! `h(s, d, sp, dp) = h(s, d, sp, 0) ^ h(0, 0, 0, dp)`. [`RssOwner::dport_term`]
//! is the second term for any port from two 256-entry tables (high and low
//! byte), which makes testing a candidate FULLNAT port one XOR and one
//! RETA read.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet::{l3_offset, EtherType};
use crate::wire::toeplitz::{reta_index, RssKey, ToeplitzTable, SYMMETRIC_KEY};
use crate::wire::Ipv6Packet;

/// Software RSS: Toeplitz hash plus redirection table.
#[derive(Debug, Clone)]
pub struct RssOwner {
    table: ToeplitzTable,
    /// RETA entry → core.
    reta: Vec<u16>,
    /// Toeplitz term of the destination port's high byte (input byte 10).
    dport_hi: [u32; 256],
    /// Toeplitz term of the destination port's low byte (input byte 11).
    dport_lo: [u32; 256],
    /// The same for IPv6 input (bytes 34 and 35).
    dport_hi6: [u32; 256],
    dport_lo6: [u32; 256],
}

/// The dport terms of the hash for a `LEN`-byte input ending in the
/// destination port.
fn dport_tables<const LEN: usize>(table: &ToeplitzTable) -> ([u32; 256], [u32; 256]) {
    let mut hi = [0u32; 256];
    let mut lo = [0u32; 256];
    let mut input = [0u8; LEN];
    for b in 0..256usize {
        input[LEN - 2] = b as u8;
        input[LEN - 1] = 0;
        hi[b] = table.hash(&input);
        input[LEN - 2] = 0;
        input[LEN - 1] = b as u8;
        lo[b] = table.hash(&input);
    }
    (hi, lo)
}

fn ipv6_at(b: &[u8]) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

fn ports_at(b: &[u8]) -> Option<(u16, u16)> {
    let p = b.get(..4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

impl RssOwner {
    /// Ownership by `key` and `reta` (entry → core). An empty RETA sends
    /// everything to core 0.
    pub fn new(key: &RssKey, reta: Vec<u16>) -> Self {
        let table = ToeplitzTable::new(key);
        let (dport_hi, dport_lo) = dport_tables::<12>(&table);
        let (dport_hi6, dport_lo6) = dport_tables::<36>(&table);
        RssOwner {
            table,
            reta,
            dport_hi,
            dport_lo,
            dport_hi6,
            dport_lo6,
        }
    }

    /// The symmetric key with the RETA a DPDK port gets by default for
    /// `cores` queues: entry `i` → queue `i % cores`, `reta_size` entries.
    pub fn round_robin(cores: u16, reta_size: usize) -> Self {
        let cores = cores.max(1);
        let reta = (0..reta_size)
            .map(|i| (i % usize::from(cores)) as u16)
            .collect();
        RssOwner::new(&SYMMETRIC_KEY, reta)
    }

    /// The redirection table.
    pub fn reta(&self) -> &[u16] {
        &self.reta
    }

    /// The Toeplitz table.
    pub fn table(&self) -> &ToeplitzTable {
        &self.table
    }

    /// Toeplitz hash of an IPv4 4-tuple.
    #[inline]
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.table.hash_v4(src, dst, sport, dport)
    }

    /// The core a hash value maps to.
    #[inline]
    pub fn core_of_hash(&self, hash: u32) -> u16 {
        self.reta
            .get(reta_index(hash, self.reta.len()))
            .copied()
            .unwrap_or(0)
    }

    /// Owner of an IPv4 TCP/UDP 4-tuple as on the wire.
    #[inline]
    pub fn owner_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u16 {
        self.core_of_hash(self.hash_v4(src, dst, sport, dport))
    }

    /// Owner of an IPv4 packet without ports (2-tuple hash, as NICs hash
    /// non-TCP/UDP IPv4).
    #[inline]
    pub fn owner_v4_addrs(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        self.core_of_hash(self.table.hash_v4_addrs(src, dst))
    }

    /// Toeplitz hash of an IPv6 4-tuple (the RSS_IPV6 TCP/UDP input).
    #[inline]
    pub fn hash_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr, sport: u16, dport: u16) -> u32 {
        self.table.hash_v6(src, dst, sport, dport)
    }

    /// Owner of an IPv6 TCP/UDP 4-tuple as on the wire.
    #[inline]
    pub fn owner_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr, sport: u16, dport: u16) -> u16 {
        self.core_of_hash(self.hash_v6(src, dst, sport, dport))
    }

    /// Owner of an IPv6 packet without ports (2-tuple hash, as NICs hash
    /// other IPv6 and fragments).
    #[inline]
    pub fn owner_v6_addrs(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        self.core_of_hash(self.table.hash_v6_addrs(src, dst))
    }

    /// The destination port's term of the IPv6 hash:
    /// `hash_v6(s, d, sp, dp) == hash_v6(s, d, sp, 0) ^ dport_term_v6(dp)`.
    #[inline]
    pub fn dport_term_v6(&self, dport: u16) -> u32 {
        self.dport_hi6[usize::from(dport >> 8)] ^ self.dport_lo6[usize::from(dport & 0xff)]
    }

    /// The destination port's term of the hash:
    /// `hash_v4(s, d, sp, dp) == hash_v4(s, d, sp, 0) ^ dport_term(dp)`.
    #[inline]
    pub fn dport_term(&self, dport: u16) -> u32 {
        self.dport_hi[usize::from(dport >> 8)] ^ self.dport_lo[usize::from(dport & 0xff)]
    }

    /// The core that must handle a frame, by the ownership rule:
    /// - TCP/UDP: its 4-tuple;
    /// - an ICMP error quoting TCP/UDP (types 3, 4, 11, 12): the quoted
    ///   packet's reverse 4-tuple, so the error reaches the core holding
    ///   the connection it is about (for a quoted IPIP packet, the TCP/UDP
    ///   packet inside it);
    /// - other IPv4 (ICMP echo, other protocols, every fragment, the first
    ///   included): the 2-tuple, as a NIC hashes them;
    /// - IPv6 alike: TCP/UDP (after any extension headers but a Fragment
    ///   header) on the 4-tuple, an ICMPv6 error (types 1-4) quoting
    ///   TCP/UDP on the quoted packet's reverse 4-tuple (through a quoted
    ///   IPv6-in-IPv6 or IPv4-in-IPv6 TUN packet to the request inside),
    ///   fragments and everything else on the 2-tuple;
    /// - not IP or too short to tell: `None` (the receiving core keeps it).
    ///
    /// Only lengths are checked here (no checksums): the owning core
    /// validates fully.
    pub fn owner_of_frame(&self, frame: &[u8]) -> Option<u16> {
        let (l3, ethertype) = l3_offset(frame).ok()?;
        if ethertype == EtherType::IPV6 {
            return self.owner_of_ipv6(frame.get(l3..)?);
        }
        if ethertype != EtherType::IPV4 {
            return None;
        }
        let ip = frame.get(l3..)?;
        let hdr = ip.get(..20)?;
        if hdr[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(hdr[0] & 0x0f) * 4;
        let src = Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]);
        let dst = Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]);
        // any fragment, the first included (MF set): on the 2-tuple, as a
        // NIC hashes fragments, so a datagram's fragments meet on one core
        // (crate::lb::frag)
        let fragment = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff;
        let proto = hdr[9];
        if ihl < 20 || fragment != 0 {
            return Some(self.owner_v4_addrs(src, dst));
        }
        let l4 = ip.get(ihl..).unwrap_or(&[]);
        match proto {
            6 | 17 => match l4.get(..4) {
                Some(p) => Some(self.owner_v4(
                    src,
                    dst,
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )),
                None => Some(self.owner_v4_addrs(src, dst)),
            },
            1 => Some(
                self.quoted_owner(l4)
                    .unwrap_or_else(|| self.owner_v4_addrs(src, dst)),
            ),
            _ => Some(self.owner_v4_addrs(src, dst)),
        }
    }

    /// Owner of the reverse tuple of the TCP/UDP packet an ICMP error quotes.
    fn quoted_owner(&self, icmp: &[u8]) -> Option<u16> {
        if !crate::lb::fwd::is_related_icmp_type(*icmp.first()?) {
            return None;
        }
        let q = icmp.get(8..)?;
        let hdr = q.get(..20)?;
        let ihl = usize::from(hdr[0] & 0x0f) * 4;
        if hdr[0] >> 4 != 4 || ihl < 20 || !matches!(hdr[9], 4 | 6 | 17 | 41) {
            return None;
        }
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
            return None;
        }
        match hdr[9] {
            // Our TUN packet: the connection is the request inside.
            4 => return self.quoted_owner_inner(q.get(ihl..)?),
            41 => return self.quoted_owner_inner6(q.get(ihl..)?),
            _ => {}
        }
        let p = q.get(ihl..ihl + 4)?;
        let qsrc = Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]);
        let qdst = Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]);
        Some(self.owner_v4(
            qdst,
            qsrc,
            u16::from_be_bytes([p[2], p[3]]),
            u16::from_be_bytes([p[0], p[1]]),
        ))
    }
}

impl RssOwner {
    /// [`Self::owner_of_frame`] for the IPv6 packet `ip`.
    fn owner_of_ipv6(&self, ip: &[u8]) -> Option<u16> {
        let pkt = Ipv6Packet::new_checked(ip).ok()?;
        let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
        // the 2-tuple's hash (32 table rows) only where it decides
        let by_addrs = || self.owner_v6_addrs(&src, &dst);
        let Ok(upper) = pkt.upper_layer() else {
            return Some(by_addrs());
        };
        // any fragment, the first included: on the 2-tuple, as for IPv4
        if upper.fragment.is_some() {
            return Some(by_addrs());
        }
        let l4 = ip.get(upper.offset..pkt.total_len()).unwrap_or(&[]);
        Some(match upper.protocol.0 {
            6 | 17 => match ports_at(l4) {
                Some((sport, dport)) => self.owner_v6(&src, &dst, sport, dport),
                None => by_addrs(),
            },
            58 => self.quoted_owner_v6(l4).unwrap_or_else(by_addrs),
            _ => by_addrs(),
        })
    }

    /// Owner of the reverse tuple of the TCP/UDP packet an ICMPv6 error
    /// (destination unreachable, packet too big, time exceeded, parameter
    /// problem) quotes. Quoted extension headers are not walked.
    fn quoted_owner_v6(&self, icmp: &[u8]) -> Option<u16> {
        if !(1..=4).contains(icmp.first()?) {
            return None;
        }
        let q = icmp.get(8..)?;
        let hdr = q.get(..40)?;
        if hdr[0] >> 4 != 6 {
            return None;
        }
        let (qsrc, qdst) = (ipv6_at(&hdr[8..24])?, ipv6_at(&hdr[24..40])?);
        match hdr[6] {
            6 | 17 => {
                let (sport, dport) = ports_at(q.get(40..)?)?;
                Some(self.owner_v6(&qdst, &qsrc, dport, sport))
            }
            // our TUN packets: the connection is the request inside
            41 => self.quoted_owner_inner6(q.get(40..)?),
            4 => self.quoted_owner_inner(q.get(40..)?),
            _ => None,
        }
    }

    /// Owner of a TCP/UDP packet quoted inside a quoted IPv6 TUN packet.
    fn quoted_owner_inner6(&self, inner: &[u8]) -> Option<u16> {
        let hdr = inner.get(..40)?;
        if hdr[0] >> 4 != 6 || !matches!(hdr[6], 6 | 17) {
            return None;
        }
        let (sport, dport) = ports_at(inner.get(40..)?)?;
        Some(self.owner_v6(
            &ipv6_at(&hdr[8..24])?,
            &ipv6_at(&hdr[24..40])?,
            sport,
            dport,
        ))
    }

    /// Owner of a TCP/UDP packet quoted inside a quoted IPIP packet.
    fn quoted_owner_inner(&self, inner: &[u8]) -> Option<u16> {
        let hdr = inner.get(..20)?;
        let ihl = usize::from(hdr[0] & 0x0f) * 4;
        if hdr[0] >> 4 != 4 || ihl < 20 || !matches!(hdr[9], 6 | 17) {
            return None;
        }
        let p = inner.get(ihl..ihl + 4)?;
        Some(self.owner_v4(
            Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]),
            Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]),
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::toeplitz::{toeplitz_reference, MICROSOFT_KEY};
    use crate::wire::{tcp, PacketBuilder};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn microsoft_vectors() {
        // "Verifying the RSS Hash Calculation", IPv4 with TCP ports.
        let o = RssOwner::new(&MICROSOFT_KEY, vec![0]);
        let cases = [
            (
                v4(66, 9, 149, 187),
                2794,
                v4(161, 142, 100, 80),
                1766,
                0x51cc_c178u32,
            ),
            (
                v4(199, 92, 111, 2),
                14230,
                v4(65, 69, 140, 83),
                4739,
                0xc626_b0ea,
            ),
            (
                v4(24, 19, 198, 95),
                12898,
                v4(12, 22, 207, 184),
                38024,
                0x5c2b_394a,
            ),
            (
                v4(38, 27, 205, 30),
                48228,
                v4(209, 142, 163, 6),
                2217,
                0xafc7_327f,
            ),
            (
                v4(153, 39, 163, 191),
                44251,
                v4(202, 188, 127, 2),
                1303,
                0x10e8_28a2,
            ),
        ];
        for (src, sport, dst, dport, want) in cases {
            assert_eq!(o.hash_v4(src, dst, sport, dport), want);
        }
    }

    /// "Verifying the RSS Hash Calculation" (Microsoft), the IPv6 table:
    /// (source, source port, destination, destination port, hash of the
    /// addresses alone, hash with the TCP ports).
    const MICROSOFT_V6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:1fff::7",
            2794,
            "3ffe:2501:200:3::1",
            1766,
            0x2cc1_8cd5,
            0x4020_7d3d,
        ),
        (
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            "ff02::1",
            4739,
            0x0f0c_461c,
            0xdde5_1bbf,
        ),
        (
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            "fe80::200:f8ff:fe21:67cf",
            38024,
            0x4b61_e985,
            0x02d1_feef,
        ),
    ];

    #[test]
    fn microsoft_ipv6_vectors() {
        let o = RssOwner::new(&MICROSOFT_KEY, vec![0]);
        let ident = RssOwner::new(&MICROSOFT_KEY, (0..=u16::MAX).collect());
        for (src, sport, dst, dport, h2, h4) in MICROSOFT_V6 {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(o.table().hash_v6_addrs(&s, &d), h2, "{src} -> {dst}");
            assert_eq!(
                o.hash_v6(&s, &d, sport, dport),
                h4,
                "{src}.{sport} -> {dst}.{dport}"
            );
            // The frame path hashes the same input: with a 65536-entry
            // identity RETA the owner is the hash's low 16 bits.
            let b = || PacketBuilder::ethernet(Default::default(), Default::default()).ipv6(s, d);
            let tcp_frame = b().tcp(sport, dport, tcp::SYN).build();
            let other = b().ip_proto(crate::wire::IpProtocol(253)).build();
            assert_eq!(ident.owner_of_frame(&tcp_frame), Some(h4 as u16));
            assert_eq!(ident.owner_of_frame(&other), Some(h2 as u16));
        }
    }

    #[test]
    fn ipv6_dport_term_decomposes_the_hash_and_the_key_is_symmetric() {
        let o = RssOwner::round_robin(4, 128);
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = Ipv6Addr::from((u128::from(x) << 64) | u128::from(x.rotate_left(9)));
            let d = Ipv6Addr::from((u128::from(x.rotate_left(31)) << 64) | u128::from(!x));
            let (sp, dp) = ((x >> 8) as u16, (x >> 24) as u16);
            assert_eq!(
                o.hash_v6(&s, &d, sp, dp),
                o.hash_v6(&s, &d, sp, 0) ^ o.dport_term_v6(dp)
            );
            let mut input = Vec::new();
            input.extend_from_slice(&s.octets());
            input.extend_from_slice(&d.octets());
            input.extend_from_slice(&sp.to_be_bytes());
            input.extend_from_slice(&dp.to_be_bytes());
            assert_eq!(
                o.hash_v6(&s, &d, sp, dp),
                toeplitz_reference(&SYMMETRIC_KEY, &input)
            );
            assert_eq!(o.owner_v6(&s, &d, sp, dp), o.owner_v6(&d, &s, dp, sp));
            assert_eq!(o.owner_v6_addrs(&s, &d), o.owner_v6_addrs(&d, &s));
        }
        // with a key that is not periodic the IPv6 and IPv4 terms differ
        let m = RssOwner::new(&MICROSOFT_KEY, vec![0]);
        assert_ne!(m.dport_term_v6(80), m.dport_term(80));
        let (s, d): (Ipv6Addr, Ipv6Addr) =
            ("2001:2::7".parse().unwrap(), "2001:2::1".parse().unwrap());
        for p in [0u16, 1, 80, 443, 8080, 65535] {
            assert_eq!(
                m.hash_v6(&s, &d, 9, p),
                m.hash_v6(&s, &d, 9, 0) ^ m.dport_term_v6(p)
            );
        }
    }

    #[test]
    fn ipv6_frame_owner() {
        let o = RssOwner::round_robin(4, 128);
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let (c, vip, r) = (ip("2001:2:1::3"), ip("2001:2::64"), ip("2001:2::b"));
        let eth = || PacketBuilder::ethernet(Default::default(), Default::default());
        let syn = eth().ipv6(c, vip).tcp(40000, 80, tcp::SYN).build();
        assert_eq!(
            o.owner_of_frame(&syn),
            Some(o.owner_v6(&c, &vip, 40000, 80))
        );
        let udp = eth().vlan(7).ipv6(c, vip).udp(5000, 53).build();
        assert_eq!(o.owner_of_frame(&udp), Some(o.owner_v6(&c, &vip, 5000, 53)));
        // ICMPv6 port unreachable from the real server about CIP -> RIP:8080:
        // the owner of the reverse tuple (RIP:8080 -> CIP)
        let quoted = PacketBuilder::new().ipv6(c, r).udp(5000, 8080).build();
        let err = eth()
            .ipv6(r, c)
            .icmpv6(1, 4, 0)
            .payload(&quoted[..48])
            .build();
        assert_eq!(o.owner_of_frame(&err), Some(o.owner_v6(&r, &c, 8080, 5000)));
        // Packet Too Big about our IPv6-in-IPv6 TUN packet: the request inside
        let inner = PacketBuilder::new()
            .ipv6(c, vip)
            .tcp(40000, 80, tcp::ACK)
            .build();
        let tun = PacketBuilder::new()
            .ipv6(ip("2001:2::1"), r)
            .ip_proto(crate::wire::IpProtocol::IPV6)
            .payload(&inner)
            .build();
        let ptb = eth()
            .ipv6(r, ip("2001:2::1"))
            .icmpv6(2, 0, 1400)
            .payload(&tun[..100])
            .build();
        assert_eq!(
            o.owner_of_frame(&ptb),
            Some(o.owner_v6(&c, &vip, 40000, 80))
        );
        // echo, fragments (the first one too), other protocols: 2-tuple
        let echo = eth().ipv6(c, vip).icmpv6_echo_request(1, 1).build();
        assert_eq!(o.owner_of_frame(&echo), Some(o.owner_v6_addrs(&c, &vip)));
        let mut first_frag = vec![17u8, 0, 0, 1, 0, 0, 0, 9];
        first_frag.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 16, 0, 0]);
        let frag = eth()
            .ipv6(c, vip)
            .ip_proto(crate::wire::IpProtocol::IPV6_FRAGMENT)
            .payload(&first_frag)
            .build();
        assert_eq!(o.owner_of_frame(&frag), Some(o.owner_v6_addrs(&c, &vip)));
        // TCP behind a destination options header: still the 4-tuple
        let mut dopts = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
        dopts.extend_from_slice(
            &PacketBuilder::new()
                .ipv6(c, vip)
                .tcp(40001, 80, tcp::SYN)
                .build()[40..],
        );
        let ext = eth()
            .ipv6(c, vip)
            .ip_proto(crate::wire::IpProtocol::IPV6_DEST_OPTS)
            .payload(&dopts)
            .build();
        assert_eq!(
            o.owner_of_frame(&ext),
            Some(o.owner_v6(&c, &vip, 40001, 80))
        );
        // too short to tell
        assert_eq!(o.owner_of_frame(&syn[..50]), None);
    }

    #[test]
    fn dport_term_decomposes_the_hash() {
        let o = RssOwner::round_robin(4, 128);
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (s, d) = (Ipv4Addr::from(x as u32), Ipv4Addr::from((x >> 32) as u32));
            let (sp, dp) = ((x >> 8) as u16, (x >> 24) as u16);
            assert_eq!(
                o.hash_v4(s, d, sp, dp),
                o.hash_v4(s, d, sp, 0) ^ o.dport_term(dp)
            );
            // Against the bit-by-bit definition.
            let mut input = [0u8; 12];
            input[..4].copy_from_slice(&s.octets());
            input[4..8].copy_from_slice(&d.octets());
            input[8..10].copy_from_slice(&sp.to_be_bytes());
            input[10..].copy_from_slice(&dp.to_be_bytes());
            assert_eq!(
                o.hash_v4(s, d, sp, dp),
                toeplitz_reference(&SYMMETRIC_KEY, &input)
            );
            // Symmetric: both directions have one owner.
            assert_eq!(o.owner_v4(s, d, sp, dp), o.owner_v4(d, s, dp, sp));
        }
        // Every port, brute force against the table.
        let (s, d) = (v4(198, 18, 1, 11), v4(198, 18, 2, 1));
        let h0 = o.hash_v4(s, d, 8080, 0);
        for p in 0..=u16::MAX {
            assert_eq!(o.hash_v4(s, d, 8080, p), h0 ^ o.dport_term(p));
        }
    }

    #[test]
    fn symmetric_key_hashes_the_xor_of_the_words() {
        let o = RssOwner::round_robin(2, 128);
        let fold = |a: Ipv4Addr| {
            let x = u32::from(a);
            (x >> 16) as u16 ^ x as u16
        };
        let (c, vip, r) = (v4(198, 19, 0, 7), v4(198, 18, 0, 100), v4(198, 18, 1, 11));
        for cport in [1u16, 999, 40000, 65535] {
            let w = fold(c) ^ fold(vip) ^ cport ^ 80;
            // Any tuple with the same word XOR hashes alike.
            assert_eq!(
                o.hash_v4(c, vip, cport, 80),
                o.hash_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, w)
            );
            // Request and NAT reply differ by a constant.
            let delta = fold(vip) ^ 80 ^ fold(r) ^ 8080;
            assert_eq!(
                o.hash_v4(c, vip, cport, 80) ^ o.hash_v4(r, c, 8080, cport),
                o.dport_term(delta)
            );
        }
    }

    #[test]
    fn reta_mapping() {
        let o = RssOwner::round_robin(3, 128);
        assert_eq!(o.reta().len(), 128);
        assert_eq!(o.core_of_hash(0), 0);
        assert_eq!(o.core_of_hash(4), 1);
        assert_eq!(o.core_of_hash(128 + 5), 2);
        let empty = RssOwner::new(&SYMMETRIC_KEY, vec![]);
        assert_eq!(empty.owner_v4(v4(1, 2, 3, 4), v4(5, 6, 7, 8), 1, 2), 0);
        // Roughly even spread over cores.
        let mut n = [0u32; 3];
        for i in 0..30_000u32 {
            n[usize::from(o.owner_v4(
                Ipv4Addr::from(i.wrapping_mul(2_654_435_761)),
                v4(198, 18, 0, 100),
                (i % 50_000) as u16 + 1024,
                80,
            ))] += 1;
        }
        for c in n {
            assert!((9_000..11_000).contains(&c), "{n:?}");
        }
    }

    #[test]
    fn frame_owner() {
        let o = RssOwner::round_robin(4, 128);
        let (c, vip, r) = (v4(10, 1, 2, 3), v4(198, 18, 0, 100), v4(198, 18, 1, 11));
        let syn = PacketBuilder::ethernet(Default::default(), Default::default())
            .ipv4(c, vip)
            .tcp(40000, 80, tcp::SYN)
            .build();
        assert_eq!(o.owner_of_frame(&syn), Some(o.owner_v4(c, vip, 40000, 80)));
        let vlan = PacketBuilder::ethernet(Default::default(), Default::default())
            .vlan(7)
            .ipv4(c, vip)
            .udp(5000, 53)
            .build();
        assert_eq!(o.owner_of_frame(&vlan), Some(o.owner_v4(c, vip, 5000, 53)));
        // ICMP port unreachable from the real server about CIP -> RIP:8080:
        // the owner of the reverse tuple (RIP:8080 -> CIP), the NAT reply owner.
        let quoted = PacketBuilder::new().ipv4(c, r).udp(5000, 8080).build();
        let err = PacketBuilder::ethernet(Default::default(), Default::default())
            .ipv4(r, c)
            .icmp(3, 3, 0)
            .payload(&quoted[..28])
            .build();
        assert_eq!(o.owner_of_frame(&err), Some(o.owner_v4(r, c, 8080, 5000)));
        let echo = PacketBuilder::ethernet(Default::default(), Default::default())
            .ipv4(c, vip)
            .icmp_echo_request(1, 1)
            .build();
        assert_eq!(o.owner_of_frame(&echo), Some(o.owner_v4_addrs(c, vip)));
        let frag = PacketBuilder::ethernet(Default::default(), Default::default())
            .ipv4(c, vip)
            .fragment(false, 64)
            .ip_proto(crate::wire::IpProtocol::UDP)
            .payload(&[0; 16])
            .build();
        assert_eq!(o.owner_of_frame(&frag), Some(o.owner_v4_addrs(c, vip)));
        let arp = PacketBuilder::ethernet(Default::default(), Default::default())
            .arp_request(Default::default(), c, vip)
            .build();
        assert_eq!(o.owner_of_frame(&arp), None);
        assert_eq!(o.owner_of_frame(&syn[..20]), None);
        assert_eq!(o.owner_of_frame(&[]), None);
    }
}
