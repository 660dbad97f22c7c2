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
//! Port decomposition: Toeplitz is linear over the input bits (XOR), so
//! `h(s, d, sp, dp) = h(s, d, sp, 0) ^ h(0, 0, 0, dp)`. [`RssOwner::dport_term`]
//! is the second term for any port from two 256-entry tables (high and low
//! byte), which makes testing a candidate FULLNAT port one XOR and one
//! RETA read.

use std::net::Ipv4Addr;

use crate::wire::ethernet::{l3_offset, EtherType};
use crate::wire::toeplitz::{reta_index, RssKey, ToeplitzTable, SYMMETRIC_KEY};

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
}

impl RssOwner {
    /// Ownership by `key` and `reta` (entry → core). An empty RETA sends
    /// everything to core 0.
    pub fn new(key: &RssKey, reta: Vec<u16>) -> Self {
        let table = ToeplitzTable::new(key);
        let mut dport_hi = [0u32; 256];
        let mut dport_lo = [0u32; 256];
        let mut input = [0u8; 12];
        for b in 0..256usize {
            input[10] = b as u8;
            input[11] = 0;
            dport_hi[b] = table.hash(&input);
            input[10] = 0;
            input[11] = b as u8;
            dport_lo[b] = table.hash(&input);
        }
        RssOwner {
            table,
            reta,
            dport_hi,
            dport_lo,
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
    /// - not IPv4 or too short to tell: `None` (the receiving core keeps it).
    ///
    /// Only lengths are checked here (no checksums): the owning core
    /// validates fully.
    pub fn owner_of_frame(&self, frame: &[u8]) -> Option<u16> {
        let (l3, ethertype) = l3_offset(frame).ok()?;
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
        if hdr[0] >> 4 != 4 || ihl < 20 || !matches!(hdr[9], 4 | 6 | 17) {
            return None;
        }
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff != 0 {
            return None;
        }
        if hdr[9] == 4 {
            // Our TUN packet: the connection is the request inside.
            return self.quoted_owner_inner(q.get(ihl..)?);
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
