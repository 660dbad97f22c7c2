//! Zero-copy packet header views and checksums. No DPDK here.
//!
//! Every header type follows the same shape (after smoltcp's `wire`):
//! a `XxxPacket<T: AsRef<[u8]>>` view over a byte buffer with
//! `new_unchecked` (no checks, accessors may panic on a short buffer),
//! `new_checked` (validates with `check_len`, after which no accessor
//! panics), `into_inner`, getters on `T: AsRef<[u8]>` and setters on
//! `T: AsMut<[u8]>`. Where a parsed, owned form is useful there is a
//! `XxxRepr` with `parse`/`emit`.
//!
//! The in-place rewrites the load balancer needs (NAT address/port
//! changes, TTL decrement, echo replies) keep checksums correct with the
//! incremental update of RFC 1624 instead of recomputing them.
//!
//! Modules: [`checksum`] (RFC 1071/1624), [`ethernet`] (MAC, EtherType,
//! VLAN tags, [`l3_offset`]), [`arp`], [`ipv4`], [`ipv6`] (with extension
//! header walking), [`tcp`], [`udp`], [`icmp`] (v4, including
//! frag-needed), [`icmpv6`] (echo, Packet Too Big, neighbor discovery),
//! [`ipip`] (TUN-mode encapsulation), [`ipvs_sync`] (IPVS connection
//! sync messages, versions 1 and 0, as the kernel writes them),
//! [`toeplitz`] (software RSS hash) and [`builder`] (test/fixture packets;
//! allocates).

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod ipvs_sync;
pub mod mld;
pub mod tcp;
pub mod tcp_syn;
pub mod toeplitz;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use builder::PacketBuilder;
pub use ethernet::{l3_offset, EtherType, EthernetFrame, MacAddr, VlanTag};
pub use icmp::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Fragment, Ipv6Packet, Ipv6Repr, Ipv6UpperLayer};
pub use tcp::{TcpFlags, TcpPacket};
pub use toeplitz::{reta_index, RssKey, ToeplitzTable, MICROSOFT_KEY, SYMMETRIC_KEY};
pub use udp::UdpPacket;

use std::fmt;

/// Why a packet could not be parsed or built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header or a length field says.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, length
    /// field smaller than the header, ...).
    Malformed,
    /// The checksum does not verify.
    BadChecksum,
    /// Well-formed but not something we handle (non Ethernet/IPv4 ARP,
    /// too many VLAN tags, ...).
    Unsupported,
    /// The output buffer is too small for what is being written.
    NoSpace,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::BadChecksum => "bad checksum",
            Error::Unsupported => "unsupported packet",
            Error::NoSpace => "output buffer too small",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, Error>;

/// An IP protocol number (IPv4 `protocol`, IPv6 `next header`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options extension header.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IPv4 encapsulated in IP (IPIP, TUN forwarding).
    pub const IPIP: IpProtocol = IpProtocol(4);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulated in IP.
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 routing extension header.
    pub const IPV6_ROUTING: IpProtocol = IpProtocol(43);
    /// IPv6 fragment extension header.
    pub const IPV6_FRAGMENT: IpProtocol = IpProtocol(44);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header".
    pub const IPV6_NO_NEXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options extension header.
    pub const IPV6_DEST_OPTS: IpProtocol = IpProtocol(60);
    /// SCTP.
    pub const SCTP: IpProtocol = IpProtocol(132);
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        IpProtocol(value)
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        value.0
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::IPIP => f.write_str("IPIP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol::ICMPV6 => f.write_str("ICMPv6"),
            IpProtocol::SCTP => f.write_str("SCTP"),
            IpProtocol(other) => write!(f, "proto {other}"),
        }
    }
}

/// Reads a big-endian u16 at `offset`; the caller has checked the length.
#[inline(always)]
pub(crate) fn read_u16(buf: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes([buf[offset], buf[offset + 1]])
}

/// Reads a big-endian u32 at `offset`; the caller has checked the length.
#[inline(always)]
pub(crate) fn read_u32(buf: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([
        buf[offset],
        buf[offset + 1],
        buf[offset + 2],
        buf[offset + 3],
    ])
}

/// Writes a big-endian u16 at `offset`; the caller has checked the length.
#[inline(always)]
pub(crate) fn write_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian u32 at `offset`; the caller has checked the length.
#[inline(always)]
pub(crate) fn write_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod testutil {
    /// xorshift64* PRNG for reproducible randomized tests.
    pub struct XorShift(pub u64);

    impl XorShift {
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        pub fn next_u16(&mut self) -> u16 {
            (self.next_u64() >> 48) as u16
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        pub fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = (self.next_u64() >> 56) as u8;
            }
        }
    }

    /// Parses "aa bb cc" / "aabbcc" hex (whitespace ignored).
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(Error::BadChecksum.to_string(), "bad checksum");
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Unsupported);
        assert_eq!(boxed.to_string(), "unsupported packet");
    }

    #[test]
    fn ip_protocol_display() {
        assert_eq!(IpProtocol::TCP.to_string(), "TCP");
        assert_eq!(IpProtocol(99).to_string(), "proto 99");
        assert_eq!(u8::from(IpProtocol::UDP), 17);
    }

    /// Random and mutated buffers through every checked parser and helper:
    /// errors are fine, panics are not.
    #[test]
    fn parsers_never_panic_on_garbage() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let mut rng = testutil::XorShift(0xf00d);
        let seeds = [
            PacketBuilder::new()
                .ipv4(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8))
                .tcp(1, 2, tcp::SYN)
                .tcp_options(&[2, 4, 5, 0xb4])
                .build(),
            PacketBuilder::new()
                .ipv4(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8))
                .icmp_echo_request(1, 1)
                .build(),
            PacketBuilder::new()
                .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
                .icmpv6(135, 0, 0)
                .payload(&[0u8; 24])
                .build(),
        ];
        let v6 = Ipv6Addr::LOCALHOST;
        let v4 = Ipv4Addr::LOCALHOST;
        for i in 0..20_000 {
            let mut buf = if i % 2 == 0 {
                let mut b = vec![0u8; rng.below(90)];
                rng.fill(&mut b);
                b
            } else {
                let mut b = seeds[i % 3].clone();
                for _ in 0..3 {
                    let at = rng.below(b.len());
                    b[at] = rng.next_u32() as u8;
                }
                b.truncate(rng.below(b.len() + 1));
                b
            };
            let _ = l3_offset(&buf);
            if let Ok(p) = EthernetFrame::new_checked(&buf[..]) {
                let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload());
            }
            if let Ok(p) = ArpPacket::new_checked(&buf[..]) {
                let _ = ArpRepr::parse(&p);
            }
            if let Ok(p) = Ipv4Packet::new_checked(&buf[..]) {
                let _ = (
                    p.options(),
                    p.payload(),
                    p.verify_checksum(),
                    p.is_fragment(),
                );
                let _ = Ipv4Repr::parse(&p);
            }
            if let Ok(p) = Ipv6Packet::new_checked(&buf[..]) {
                let _ = (p.payload(), p.upper_layer());
            }
            if let Ok(p) = TcpPacket::new_checked(&buf[..]) {
                let _ = (p.options(), p.payload(), p.mss(), p.flags().to_string());
                let _ = p.verify_checksum_v4(v4, v4);
            }
            if let Ok(p) = UdpPacket::new_checked(&buf[..]) {
                let _ = (p.payload(), p.verify_checksum_v6(&v6, &v6));
            }
            if let Ok(p) = Icmpv4Packet::new_checked(&buf[..]) {
                let _ = (p.inner_ip(), p.is_error(), p.next_hop_mtu());
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&buf[..]) {
                let _ = (p.target_addr(), p.source_link_addr(), p.target_link_addr());
            }
            let mut out = [0u8; 200];
            let _ = icmp::build_frag_needed(&buf, 1400, v4, v4, &mut out);
            let _ = icmpv6::build_packet_too_big(&buf, 1400, v6, v6, &mut out);
            let _ = ipip::decap_ipv4_in_ipv4(&buf);
            let _ = ipip::decap_ipv6_in_ipv6(&buf);
            if let Ok(mut p) = TcpPacket::new_checked(&mut buf[..]) {
                let _ = p.clamp_mss_incremental(1000);
            }
            let _ = icmp::ipv4_echo_reply_in_place(&mut buf.clone());
            let _ = icmpv6::ipv6_echo_reply_in_place(&mut buf.clone());
            let len = buf.len();
            let mut room = vec![0u8; 40];
            room.extend_from_slice(&buf);
            let _ = ipip::encap_ipv4_in_ipv4(&mut room[20..], len, v4, v4, 0);
            let _ = ipip::encap_ipv6_in_ipv6(&mut room, len, v6, v6);
        }
    }
}
