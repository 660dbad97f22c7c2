//! IP-in-IP encapsulation for TUN forwarding (`-i`, ipip): IPv4 in IPv4
//! (protocol 4, RFC 2003) and IPv6 in IPv6 (next header 41, RFC 2473).
//!
//! # Headroom contract
//!
//! Encapsulation never moves the inner packet. The caller leaves room for
//! the outer header in front of it: the inner packet starts at offset
//! [`IPV4_HEADROOM`] (20) or [`IPV6_HEADROOM`] (40) of `buf`, and the outer
//! header is written at offset 0. With DPDK this is `rte_pktmbuf_prepend`
//! of that many bytes before calling. The result is the whole outer packet
//! at `buf[..returned_len]`.
//!
//! The caller also owns the MTU check: if `returned_len` exceeds the path
//! MTU and the inner IPv4 header has DF set, answer with
//! `icmp::build_frag_needed` (advertising MTU − 20) instead of sending.

use super::ipv4::Ipv4Packet;
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::{Error, IpProtocol, Result};
use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes to leave in front of an IPv4 inner packet for the outer header.
pub const IPV4_HEADROOM: usize = 20;
/// Bytes to leave in front of an IPv6 inner packet for the outer header.
pub const IPV6_HEADROOM: usize = 40;
/// TTL / hop limit of the outer header.
pub const OUTER_TTL: u8 = 64;

/// Wraps the IPv4 packet at `buf[20..20 + inner_len]` in an outer IPv4
/// header written at `buf[0..20]`: protocol 4, TTL 64, `ident`, DSCP/ECN
/// and DF copied from the inner header, total length and checksum.
///
/// Ethernet padding included in `inner_len` is dropped: the inner header's
/// total length decides. Returns the outer packet's length.
///
/// Errors: `NoSpace` if `buf` is shorter than `20 + inner_len`; the inner
/// packet's IPv4 errors; `Malformed` if the result exceeds 65535 bytes.
pub fn encap_ipv4_in_ipv4(
    buf: &mut [u8],
    inner_len: usize,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    ident: u16,
) -> Result<usize> {
    let end = IPV4_HEADROOM.checked_add(inner_len).ok_or(Error::NoSpace)?;
    let inner_bytes = buf.get(IPV4_HEADROOM..end).ok_or(Error::NoSpace)?;
    let inner = Ipv4Packet::new_checked(inner_bytes)?;
    let total = usize::from(inner.total_len()) + IPV4_HEADROOM;
    let total = u16::try_from(total).map_err(|_| Error::Malformed)?;
    let outer = OuterIpv4 {
        src: outer_src,
        dst: outer_dst,
    };
    let (tos, dont_frag) = (inner.tos(), inner.dont_frag());
    let hdr = buf.get_mut(..IPV4_HEADROOM).ok_or(Error::NoSpace)?;
    outer.emit(hdr, total, tos, dont_frag, ident);
    Ok(usize::from(total))
}

/// The constant part of an IPIP outer header (the tunnel's two ends), for
/// writing one per packet without a general header builder: no options,
/// protocol 4, TTL [`OUTER_TTL`], fragment offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterIpv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl OuterIpv4 {
    /// Writes the 20-byte header into `hdr` (which must be exactly 20
    /// bytes long; anything else is left untouched): `total` is the outer
    /// total length, `tos` and `dont_frag` come from the inner header.
    #[inline]
    pub fn emit(&self, hdr: &mut [u8], total: u16, tos: u8, dont_frag: bool, ident: u16) {
        let Ok(hdr) = <&mut [u8; IPV4_HEADROOM]>::try_from(hdr) else {
            return;
        };
        let vt = 0x4500 | u16::from(tos);
        let flags: u16 = if dont_frag { 0x4000 } else { 0 };
        let ttl_proto = u16::from(OUTER_TTL) << 8 | u16::from(IpProtocol::IPIP.0);
        let (s, d) = (u32::from(self.src), u32::from(self.dst));
        let sum = u64::from(vt)
            + u64::from(total)
            + u64::from(ident)
            + u64::from(flags)
            + u64::from(ttl_proto)
            + u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff);
        let csum = !super::checksum::fold(sum);
        hdr[0..2].copy_from_slice(&vt.to_be_bytes());
        hdr[2..4].copy_from_slice(&total.to_be_bytes());
        hdr[4..6].copy_from_slice(&ident.to_be_bytes());
        hdr[6..8].copy_from_slice(&flags.to_be_bytes());
        hdr[8..10].copy_from_slice(&ttl_proto.to_be_bytes());
        hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        hdr[12..16].copy_from_slice(&s.to_be_bytes());
        hdr[16..20].copy_from_slice(&d.to_be_bytes());
    }
}

/// Finds the inner IPv4 packet of an IPv4-in-IPv4 packet (the reverse of
/// [`encap_ipv4_in_ipv4`], for the userspace decapsulating real server in
/// tests). Returns the inner packet's byte range within `buf`.
///
/// Errors: outer or inner IPv4 errors; `BadChecksum` for a bad outer
/// header checksum; `Unsupported` if the outer protocol is not 4 or the
/// outer packet is a fragment.
pub fn decap_ipv4_in_ipv4(buf: &[u8]) -> Result<Range<usize>> {
    let outer = Ipv4Packet::new_checked(buf)?;
    if outer.protocol() != IpProtocol::IPIP || outer.is_fragment() {
        return Err(Error::Unsupported);
    }
    if !outer.verify_checksum() {
        return Err(Error::BadChecksum);
    }
    let start = outer.header_len();
    let inner = Ipv4Packet::new_checked(outer.payload())?;
    Ok(start..start + inner.total_len() as usize)
}

/// Wraps the IPv6 packet at `buf[40..40 + inner_len]` in an outer IPv6
/// header written at `buf[0..40]`: next header 41, hop limit 64, traffic
/// class and flow label copied from the inner header, payload length.
/// Padding beyond the inner payload length is dropped. Returns the outer
/// packet's length.
///
/// Errors: `NoSpace` if `buf` is too short; the inner packet's IPv6
/// errors; `Malformed` if the outer payload exceeds 65535 bytes.
pub fn encap_ipv6_in_ipv6(
    buf: &mut [u8],
    inner_len: usize,
    outer_src: Ipv6Addr,
    outer_dst: Ipv6Addr,
) -> Result<usize> {
    let end = IPV6_HEADROOM.checked_add(inner_len).ok_or(Error::NoSpace)?;
    let inner_bytes = buf.get(IPV6_HEADROOM..end).ok_or(Error::NoSpace)?;
    let inner = Ipv6Packet::new_checked(inner_bytes)?;
    let inner_total = inner.total_len();
    let repr = Ipv6Repr {
        src_addr: outer_src,
        dst_addr: outer_dst,
        next_header: IpProtocol::IPV6,
        payload_len: inner_total,
        hop_limit: OUTER_TTL,
        traffic_class: inner.traffic_class(),
        flow_label: inner.flow_label(),
    };
    repr.emit(buf)?;
    Ok(IPV6_HEADROOM + inner_total)
}

/// Finds the inner IPv6 packet of an IPv6-in-IPv6 packet whose outer next
/// header is 41 directly (no extension headers). Returns its byte range.
///
/// Errors: outer or inner IPv6 errors; `Unsupported` if the outer next
/// header is not 41.
pub fn decap_ipv6_in_ipv6(buf: &[u8]) -> Result<Range<usize>> {
    let outer = Ipv6Packet::new_checked(buf)?;
    if outer.next_header() != IpProtocol::IPV6 {
        return Err(Error::Unsupported);
    }
    let inner = Ipv6Packet::new_checked(outer.payload())?;
    Ok(IPV6_HEADROOM..IPV6_HEADROOM + inner.total_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::PacketBuilder;
    use crate::wire::checksum;
    use crate::wire::testutil::hex;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

    #[test]
    fn outer_header_matches_the_general_builder() {
        use crate::wire::ipv4::Ipv4Repr;
        let outer = OuterIpv4 { src: DIP, dst: RIP };
        for (tos, df, ident, payload) in [
            (0u8, true, 0u16, 40usize),
            (0xb8, false, 0xffff, 1480),
            (0x03, true, 0x1234, 20),
            (0xff, false, 1, 65515),
        ] {
            let mut fast = [0u8; 20];
            outer.emit(&mut fast, (payload + 20) as u16, tos, df, ident);
            let mut general = [0u8; 20];
            Ipv4Repr {
                src_addr: DIP,
                dst_addr: RIP,
                protocol: IpProtocol::IPIP,
                payload_len: payload,
                ttl: OUTER_TTL,
                tos,
                ident,
                dont_frag: df,
            }
            .emit(&mut general)
            .unwrap();
            assert_eq!(
                fast, general,
                "tos {tos:#x} df {df} ident {ident} payload {payload}"
            );
            assert_eq!(checksum::checksum(&fast), 0);
        }
        // a header slice of the wrong size is left alone
        let mut short = [0u8; 19];
        outer.emit(&mut short, 60, 0, true, 7);
        assert_eq!(short, [0u8; 19]);
    }

    #[test]
    fn ipv4_encap_exact_bytes() {
        let inner = PacketBuilder::new()
            .ipv4(CIP, VIP)
            .tos(0x2e)
            .tcp(54321, 80, crate::wire::tcp::SYN)
            .build();
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(&inner);
        buf.extend_from_slice(&[0, 0, 0]); // trailing padding, dropped
        let n = encap_ipv4_in_ipv4(&mut buf, inner.len() + 3, DIP, RIP, 0x1234).unwrap();
        assert_eq!(n, 60);
        let mut expected = hex("4500 003c 1234 4000 4004 0000 c6120101 c612010b");
        expected[1] = 0x2e;
        let c = checksum::checksum(&expected);
        expected[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&buf[..20], &expected[..]);
        assert_eq!(&buf[20..60], &inner[..]);
        assert_eq!(decap_ipv4_in_ipv4(&buf[..n]), Ok(20..60));
    }

    #[test]
    fn ipv4_encap_df_clear_and_errors() {
        let inner = PacketBuilder::new()
            .ipv4(CIP, VIP)
            .dont_frag(false)
            .udp(1, 2)
            .build();
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(&inner);
        let n = encap_ipv4_in_ipv4(&mut buf, inner.len(), DIP, RIP, 7).unwrap();
        let outer = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(!outer.dont_frag());
        assert!(outer.verify_checksum());
        assert_eq!(outer.protocol(), IpProtocol::IPIP);
        assert_eq!(outer.ttl(), 64);
        // No room: inner_len runs past the buffer.
        let mut short = buf.clone();
        assert_eq!(
            encap_ipv4_in_ipv4(&mut short, inner.len() + 1, DIP, RIP, 0),
            Err(Error::NoSpace)
        );
        assert_eq!(
            encap_ipv4_in_ipv4(&mut short, usize::MAX, DIP, RIP, 0),
            Err(Error::NoSpace)
        );
        // Inner is not IPv4.
        let mut junk = vec![0u8; 60];
        assert_eq!(
            encap_ipv4_in_ipv4(&mut junk, 40, DIP, RIP, 0),
            Err(Error::Malformed)
        );
        // Decap rejections.
        let mut wrong_proto = buf[..n].to_vec();
        wrong_proto[9] = 17;
        assert_eq!(decap_ipv4_in_ipv4(&wrong_proto), Err(Error::Unsupported));
        let mut bad_sum = buf[..n].to_vec();
        bad_sum[10] ^= 0xff;
        assert_eq!(decap_ipv4_in_ipv4(&bad_sum), Err(Error::BadChecksum));
        assert_eq!(decap_ipv4_in_ipv4(&buf[..n - 1]), Err(Error::Truncated));
    }

    #[test]
    fn ipv6_encap_roundtrip() {
        let c6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let r6: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        let inner = PacketBuilder::new()
            .ipv6(c6, v6)
            .tos(0xb8)
            .flow_label(0xabcde)
            .udp(5000, 53)
            .payload(b"q")
            .build();
        let mut buf = vec![0u8; 40];
        buf.extend_from_slice(&inner);
        let n = encap_ipv6_in_ipv6(&mut buf, inner.len(), d6, r6).unwrap();
        assert_eq!(n, 40 + inner.len());
        let mut expected = hex("6b8a bcde 0031 2940");
        expected.extend_from_slice(&d6.octets());
        expected.extend_from_slice(&r6.octets());
        assert_eq!(&buf[..40], &expected[..]);
        assert_eq!(decap_ipv6_in_ipv6(&buf[..n]), Ok(40..n));
        let mut wrong = buf.clone();
        wrong[6] = 4;
        assert_eq!(decap_ipv6_in_ipv6(&wrong[..n]), Err(Error::Unsupported));
        assert_eq!(
            encap_ipv6_in_ipv6(&mut buf, inner.len() + 1, d6, r6),
            Err(Error::NoSpace)
        );
    }
}
