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
//! - ICMP errors (§4.2–4.4, §5.2–5.4): an ICMPv4 error about a request
//!   goes to the client as ICMPv6 ([`icmp_4to6`]), an ICMPv6 error about a
//!   reply to the server as ICMPv4 ([`icmp_6to4`]): types and codes mapped
//!   ([`map_icmp_4to6`], [`map_icmp_6to4`]; frag-needed ⇄ Packet Too Big
//!   with the 20-byte header difference), the quoted packet translated
//!   back to what its sender sent (addresses, ports, its checksum), the
//!   outer checksum computed. Types with no counterpart (source quench,
//!   parameter problems with a pointer) and IPv4 fragments are dropped
//!   and counted (`nat64_untranslatable`).
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

/// Largest ICMPv4 error NAT64 sends (RFC 1812 §4.3.2.3: up to 576 bytes).
const ICMP4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error NAT64 sends: the IPv6 minimum MTU.
const ICMP6_ERROR_MAX: usize = crate::wire::icmpv6::IPV6_MIN_MTU;

/// RFC 7915 §4.2: an ICMPv4 error's type, code and rest as ICMPv6
/// (`None`: not translated — source quench, parameter problem other than
/// "protocol unreachable", and the administrative codes with no IPv6
/// counterpart are dropped).
pub fn map_icmp_4to6(msg_type: u8, code: u8, rest: u32) -> Option<(u8, u8, u32)> {
    use crate::wire::icmpv6 as v6;
    match (msg_type, code) {
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => Some((v6::TYPE_DEST_UNREACHABLE, 0, 0)),
        // protocol unreachable: parameter problem pointing at next header
        (3, 2) => Some((v6::TYPE_PARAM_PROBLEM, 1, 6)),
        (3, 3) => Some((v6::TYPE_DEST_UNREACHABLE, 4, 0)),
        // fragmentation needed: Packet Too Big, the IPv6 header being 20
        // bytes larger, never below 1280
        (3, 4) => {
            let mtu = (rest & 0xffff) + 20;
            Some((v6::TYPE_PACKET_TOO_BIG, 0, mtu.max(v6::IPV6_MIN_MTU as u32)))
        }
        (3, 9 | 10 | 13 | 15) => Some((v6::TYPE_DEST_UNREACHABLE, 1, 0)),
        (11, c) => Some((v6::TYPE_TIME_EXCEEDED, c, 0)),
        _ => None,
    }
}

/// RFC 7915 §5.2: an ICMPv6 error's type, code and rest as ICMPv4.
pub fn map_icmp_6to4(msg_type: u8, code: u8, rest: u32) -> Option<(u8, u8, u32)> {
    use crate::wire::icmpv6 as v6;
    match (msg_type, code) {
        (v6::TYPE_DEST_UNREACHABLE, 0 | 2 | 3) => Some((3, 1, 0)),
        (v6::TYPE_DEST_UNREACHABLE, 1) => Some((3, 10, 0)),
        (v6::TYPE_DEST_UNREACHABLE, 4) => Some((3, 3, 0)),
        // Packet Too Big: fragmentation needed, 20 bytes less
        (v6::TYPE_PACKET_TOO_BIG, _) => {
            let mtu = rest.saturating_sub(20).min(0xffff);
            Some((3, 4, mtu))
        }
        (v6::TYPE_TIME_EXCEEDED, c) => Some((11, c, 0)),
        // unrecognised next header: protocol unreachable
        (v6::TYPE_PARAM_PROBLEM, 1) => Some((3, 2, 0)),
        _ => None,
    }
}

/// Put `msg` (a whole IP packet) in place of the IP packet of `pkt` at
/// `l3`, with EtherType `t`.
fn replace_l3<P: PacketBuf>(pkt: &mut P, l3: usize, msg: &[u8], t: EtherType) -> bool {
    let want = l3 + msg.len();
    let have = pkt.len();
    if have < want {
        if !pkt.append(want - have) {
            return false;
        }
    } else {
        pkt.truncate(want);
    }
    let frame = pkt.data_mut();
    match frame.get_mut(l3..want) {
        Some(d) => d.copy_from_slice(msg),
        None => return false,
    }
    set_ethertype(frame, l3, t);
    true
}

/// The quoted transport header's new ports and checksum (`delta`: the
/// pseudo-header's address change), in a copy of the quoted bytes.
fn patch_quoted_l4(l4: &mut [u8], proto: u8, ports: (u16, u16), mut delta: u64) {
    let old = (
        l4.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
        l4.get(2..4).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
    );
    delta += crate::lb::fwd::d16(old.0, ports.0) + crate::lb::fwd::d16(old.1, ports.1);
    wr16(l4, 0, ports.0);
    wr16(l4, 2, ports.1);
    if let Some(off) = crate::lb::fwd::l4_csum_offset(proto) {
        if let Some(b) = l4.get(off..off + 2) {
            let c = u16::from_be_bytes([b[0], b[1]]);
            if !(proto == PROTO_UDP && c == 0) {
                let mut n = crate::lb::fwd::adjust(c, delta);
                if proto == PROTO_UDP && n == 0 {
                    n = 0xffff;
                }
                wr16(l4, off, n);
            }
        }
    }
}

/// Translate an ICMPv4 error about a NAT64 connection's IPv4 packet into
/// ICMPv6 for the client (RFC 7915 §4.2–4.4): outer header `outer` (from,
/// to), type and code mapped, the quoted IPv4 packet turned into the
/// IPv6 packet the client sent (`quote_src`, `quote_dst`, ports and
/// checksum included). False (nothing changed) if it cannot be: the type
/// has no ICMPv6 counterpart, the quote has IPv4 options, no room.
pub fn icmp_4to6<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv4Addr>,
    q: &crate::lb::fwd::IcmpQuote<Ipv4Addr>,
    outer: (Ipv6Addr, Ipv6Addr),
    quote_src: (Ipv6Addr, u16),
    quote_dst: (Ipv6Addr, u16),
) -> bool {
    let frame = pkt.data();
    let rest = crate::lb::fwd::rd32(frame, info.l4 + 4);
    let Some((t, code, rest)) = map_icmp_4to6(q.msg_type, q.code, rest) else {
        return false;
    };
    if q.l4 != q.ip + IPV4_LEN {
        return false;
    }
    let Some(qdata) = frame.get(q.l4..info.end) else {
        return false;
    };
    let (qtos, qtotal, qttl) = (
        frame.get(q.ip + 1).copied().unwrap_or(0),
        crate::lb::fwd::rd16(frame, q.ip + 2),
        frame.get(q.ip + 8).copied().unwrap_or(0),
    );
    let mut out = [0u8; ICMP6_ERROR_MAX];
    let qlen = qdata.len().min(ICMP6_ERROR_MAX - 2 * IPV6_HEADER_LEN - 8);
    let icmp_len = 8 + IPV6_HEADER_LEN + qlen;
    let total = IPV6_HEADER_LEN + icmp_len;
    // outer IPv6 header
    out[0] = 0x60;
    out[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    out[6] = crate::lb::fwd6::PROTO_ICMPV6;
    out[7] = info.ttl.wrapping_sub(1);
    out[8..24].copy_from_slice(&outer.0.octets());
    out[24..40].copy_from_slice(&outer.1.octets());
    out[40] = t;
    out[41] = code;
    out[44..48].copy_from_slice(&rest.to_be_bytes());
    // the quoted packet as the client sent it
    let qh = 48;
    let first = (6u32 << 28) | (u32::from(qtos) << 20);
    out[qh..qh + 4].copy_from_slice(&first.to_be_bytes());
    out[qh + 4..qh + 6].copy_from_slice(&qtotal.saturating_sub(IPV4_LEN as u16).to_be_bytes());
    out[qh + 6] = q.proto;
    out[qh + 7] = qttl;
    out[qh + 8..qh + 24].copy_from_slice(&quote_src.0.octets());
    out[qh + 24..qh + 40].copy_from_slice(&quote_dst.0.octets());
    let l4 = &mut out[qh + IPV6_HEADER_LEN..qh + IPV6_HEADER_LEN + qlen];
    l4.copy_from_slice(&qdata[..qlen]);
    let delta = words_v4(q.src, true)
        + words_v4(q.dst, true)
        + words_v6(quote_src.0, false)
        + words_v6(quote_dst.0, false);
    patch_quoted_l4(l4, q.proto, (quote_src.1, quote_dst.1), delta);
    crate::wire::icmpv6::Icmpv6Packet::new_unchecked(&mut out[IPV6_HEADER_LEN..total])
        .fill_checksum(&outer.0, &outer.1);
    replace_l3(pkt, info.l3, &out[..total], EtherType::IPV6)
}

/// Translate an ICMPv6 error about a NAT64 connection's IPv6 packet into
/// ICMPv4 for the real server (RFC 7915 §5.2–5.4): outer header `outer`,
/// type and code mapped, the quoted IPv6 packet (extension headers
/// dropped) turned into the IPv4 packet the server sent. False (nothing
/// changed) if it cannot be.
pub fn icmp_6to4<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    q: &crate::lb::fwd::IcmpQuote<Ipv6Addr>,
    outer: (Ipv4Addr, Ipv4Addr),
    quote_src: (Ipv4Addr, u16),
    quote_dst: (Ipv4Addr, u16),
) -> bool {
    let frame = pkt.data();
    let rest = crate::lb::fwd::rd32(frame, info.l4 + 4);
    let Some((t, code, rest)) = map_icmp_6to4(q.msg_type, q.code, rest) else {
        return false;
    };
    let Some(qdata) = frame.get(q.l4..info.end) else {
        return false;
    };
    let qfirst = u32::from(crate::lb::fwd::rd16(frame, q.ip));
    let qtc = ((qfirst >> 4) & 0xff) as u8;
    let qplen = usize::from(crate::lb::fwd::rd16(frame, q.ip + 4));
    let qhop = frame.get(q.ip + 7).copied().unwrap_or(0);
    let ext = q.l4 - q.ip - IPV6_HEADER_LEN;
    let mut out = [0u8; ICMP4_ERROR_MAX];
    let qlen = qdata.len().min(ICMP4_ERROR_MAX - 2 * IPV4_LEN - 8);
    let icmp_len = 8 + IPV4_LEN + qlen;
    let outer_repr = Ipv4Repr {
        src_addr: outer.0,
        dst_addr: outer.1,
        protocol: IpProtocol::ICMP,
        payload_len: icmp_len,
        ttl: info.ttl.wrapping_sub(1),
        tos: 0,
        ident: 0,
        dont_frag: false,
    };
    let quoted_repr = Ipv4Repr {
        src_addr: quote_src.0,
        dst_addr: quote_dst.0,
        protocol: IpProtocol(q.proto),
        payload_len: qplen.saturating_sub(ext),
        ttl: qhop,
        tos: qtc,
        ident: 0,
        dont_frag: true,
    };
    let total = IPV4_LEN + icmp_len;
    if outer_repr.emit(&mut out[..IPV4_LEN]).is_err()
        || quoted_repr.emit(&mut out[28..28 + IPV4_LEN]).is_err()
    {
        return false;
    }
    out[20] = t;
    out[21] = code;
    out[24..28].copy_from_slice(&rest.to_be_bytes());
    let l4 = &mut out[28 + IPV4_LEN..28 + IPV4_LEN + qlen];
    l4.copy_from_slice(&qdata[..qlen]);
    let delta = words_v6(q.src, true)
        + words_v6(q.dst, true)
        + words_v4(quote_src.0, false)
        + words_v4(quote_dst.0, false);
    patch_quoted_l4(l4, q.proto, (quote_src.1, quote_dst.1), delta);
    let c = checksum::checksum(&out[IPV4_LEN..total]);
    wr16(&mut out, IPV4_LEN + 2, c);
    replace_l3(pkt, info.l3, &out[..total], EtherType::IPV4)
}
