//! NAT64 through FULLNAT: an IPv6 VIP served by IPv4 real servers from
//! IPv4 local addresses (as DPVS does), header translation per RFC 7915.
//!
//! What: the request (client → VIP, IPv6) becomes an IPv4 packet from
//! LIP:lport to RIP:rport ([`request_6to4`]); the reply (RIP → LIP, IPv4)
//! becomes an IPv6 packet from VIP:vport to the client ([`reply_4to6`]).
//! The connection lives in the IPv6 table with the IPv4 ends as
//! IPv4-mapped addresses ([`crate::lb::family`]).
//!
//! Translation (RFC 7915 §4.1 and §5.1, no options, no fragments):
//! - IPv6 → IPv4: TOS = traffic class, TTL = hop limit − 1, protocol =
//!   the upper layer's (extension headers are dropped), DF set when the
//!   IPv4 packet is above 1260 bytes (§5.1: below that it may be
//!   fragmented on the IPv4 side), identification from the core's counter.
//! - IPv4 → IPv6: traffic class = TOS, flow label 0, hop limit = TTL − 1,
//!   next header = protocol.
//! - TCP/UDP checksums are adjusted incrementally: the pseudo-headers'
//!   length and protocol terms are equal, so only the addresses (and the
//!   ports) move the sum. A UDP datagram without a checksum (IPv4 allows
//!   it, IPv6 does not) gets one computed in full on the way to IPv6
//!   (RFC 7915 §4.5).
//! - ICMP errors are not translated here (counted: `nat64_untranslatable`
//!   in the director), nor are IPv4 fragments.
//!
//! Failure modes: no headroom for the 20 extra bytes of the IPv6 header, or
//! a frame shorter than its info says: `false`, nothing changed.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lb::fwd::{rewrite_l4, wr16, L4Csum, PacketInfo, ETH_LEN, PROTO_UDP};
use crate::lb::fwd6::IPV6_HEADER_LEN;
use crate::lb::packet::PacketBuf;
use crate::wire::checksum;
use crate::wire::ethernet::EtherType;
use crate::wire::{IpProtocol, Ipv4Repr};

/// IPv4 header length (no options).
const IPV4_LEN: usize = 20;
/// Below this, a translated IPv4 packet leaves DF clear (RFC 7915 §5.1).
const DF_THRESHOLD: usize = 1260;

/// One's complement sum of an address's 16-bit words, negated word by
/// word (removing it from a checksum) or not (adding it).
fn words_v6(a: Ipv6Addr, negate: bool) -> u64 {
    a.segments()
        .iter()
        .map(|&w| u64::from(if negate { !w } else { w }))
        .sum()
}

fn words_v4(a: Ipv4Addr, negate: bool) -> u64 {
    let v = u32::from(a);
    [(v >> 16) as u16, v as u16]
        .iter()
        .map(|&w| u64::from(if negate { !w } else { w }))
        .sum()
}

fn set_ethertype(frame: &mut [u8], l3: usize, t: EtherType) {
    if l3 >= 2 {
        wr16(frame, l3 - 2, t.0);
    }
}

/// Translate an IPv6 TCP/UDP request into IPv4 from `src` to `dst` (new
/// ports included), in place: the packet shrinks by its IPv6 header and
/// extension headers minus 20. False if the frame is shorter than `info`.
pub fn request_6to4<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    ident: u16,
    csum: L4Csum,
) -> bool {
    if pkt.len() < info.end || info.l4 < info.l3 + IPV6_HEADER_LEN {
        return false;
    }
    pkt.truncate(info.end);
    let l4_len = info.end - info.l4;
    let delta = words_v6(info.src, true)
        + words_v6(info.dst, true)
        + words_v4(src.0, false)
        + words_v4(dst.0, false);
    let tclass = {
        let d = pkt.data();
        ((u16::from_be_bytes([d[info.l3], d[info.l3 + 1]]) >> 4) & 0xff) as u8
    };
    let frame = pkt.data_mut();
    rewrite_l4(frame, info, src.1, dst.1, delta, csum);
    let total = IPV4_LEN + l4_len;
    let repr = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        protocol: IpProtocol(info.proto),
        payload_len: l4_len,
        ttl: info.ttl.wrapping_sub(1),
        tos: tclass,
        ident,
        dont_frag: total > DF_THRESHOLD,
    };
    let hdr_at = info.l4 - IPV4_LEN;
    if frame
        .get_mut(hdr_at..info.l4)
        .is_none_or(|h| repr.emit(h).is_err())
    {
        return false;
    }
    // the Ethernet header (and tags) moves up against the new header
    let shift = hdr_at - info.l3;
    let l2 = info.l3;
    if l2 == ETH_LEN {
        let mut eth = [0u8; ETH_LEN];
        eth.copy_from_slice(&frame[..ETH_LEN]);
        frame[shift..shift + ETH_LEN].copy_from_slice(&eth);
    } else {
        frame.copy_within(0..l2, shift);
    }
    set_ethertype(frame, hdr_at, EtherType::IPV4);
    pkt.adj(shift)
}

/// Translate an IPv4 TCP/UDP reply into IPv6 from `src` to `dst`, in
/// place (20 bytes of headroom taken). False (nothing changed) without
/// headroom or if the frame is shorter than `info`.
pub fn reply_4to6<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv4Addr>,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    csum: L4Csum,
) -> bool {
    if pkt.len() < info.end {
        return false;
    }
    pkt.truncate(info.end);
    let grow = IPV6_HEADER_LEN - IPV4_LEN;
    if !pkt.prepend(grow) {
        return false;
    }
    // offsets after the prepend
    let l3 = info.l3;
    let l4 = info.l4 + grow;
    let moved = PacketInfo {
        l3: l3 + grow,
        l4,
        end: info.end + grow,
        ..*info
    };
    let frame = pkt.data_mut();
    let tos = frame.get(moved.l3 + 1).copied().unwrap_or(0);
    let l4_len = info.end - info.l4;
    let old_udp_csum = frame
        .get(l4 + 6..l4 + 8)
        .map_or(1, |b| u16::from_be_bytes([b[0], b[1]]));
    if info.proto == PROTO_UDP && old_udp_csum == 0 {
        // IPv6 requires a UDP checksum: compute it in full after the header
        rewrite_l4(frame, &moved, src.1, dst.1, 0, L4Csum::Skip);
    } else {
        let delta = words_v4(info.src, true)
            + words_v4(info.dst, true)
            + words_v6(src.0, false)
            + words_v6(dst.0, false);
        rewrite_l4(frame, &moved, src.1, dst.1, delta, csum);
    }
    // Ethernet header to the new front
    if l3 == ETH_LEN {
        let mut eth = [0u8; ETH_LEN];
        eth.copy_from_slice(&frame[grow..grow + ETH_LEN]);
        frame[..ETH_LEN].copy_from_slice(&eth);
    } else {
        frame.copy_within(grow..grow + l3, 0);
    }
    let mut hdr = [0u8; IPV6_HEADER_LEN];
    let first = (6u32 << 28) | (u32::from(tos) << 20);
    hdr[..4].copy_from_slice(&first.to_be_bytes());
    // l4_len < 65536: it came from an IPv4 total length
    hdr[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    hdr[6] = info.proto;
    hdr[7] = info.ttl.wrapping_sub(1);
    hdr[8..24].copy_from_slice(&src.0.octets());
    hdr[24..40].copy_from_slice(&dst.0.octets());
    if let Some(h) = frame.get_mut(l3..l3 + IPV6_HEADER_LEN) {
        h.copy_from_slice(&hdr);
    }
    set_ethertype(frame, l3, EtherType::IPV6);
    if info.proto == PROTO_UDP && old_udp_csum == 0 {
        if let Some(seg) = frame.get_mut(l3 + IPV6_HEADER_LEN..l3 + IPV6_HEADER_LEN + l4_len) {
            let pseudo = checksum::pseudo_header_v6(&src.0, &dst.0, PROTO_UDP, l4_len as u32);
            let mut c = !checksum::combine(&[pseudo, checksum::data(seg)]);
            if c == 0 {
                c = 0xffff;
            }
            wr16(seg, 6, c);
        }
    }
    true
}
