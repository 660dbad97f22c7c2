//! The IPv6 side of the forwarding rewrites: validation of IPv6 frames,
//! NAT/FULLNAT/DR rewrites, IPv6-in-IPv6 and IPv6-in-IPv4 encapsulation
//! (TUN), ICMPv6 errors the director originates (time exceeded, Packet Too
//! Big) and ICMPv6 error translation for connections.
//!
//! What differs from IPv4 ([`crate::lb::fwd`]), as Linux IPVS does it:
//! - there is no header checksum: an address change only moves the L4
//!   checksum, whose pseudo-header holds both addresses (RFC 8200 §8.1);
//!   ICMPv6 has a pseudo-header too, so an ICMPv6 error's checksum follows
//!   its outer addresses as well as the quoted packet;
//! - the hop limit is decremented on every forwarded packet, as the kernel's
//!   forwarding path does (`ip6_forward`; IPVS's `__ip_vs_get_out_rt_v6`
//!   for the methods that leave the box): ≤ 1 on a request gets an ICMPv6
//!   time exceeded back, on a reply it is dropped, as for IPv4's TTL;
//! - routers never fragment IPv6: a packet too big for the tunnel always
//!   gets a Packet Too Big (ICMPv6 type 2) back, advertising the MTU minus
//!   the outer header but never less than the IPv6 minimum of 1280
//!   (RFC 8200 §5: the sender keeps 1280 and the tunnel is the real
//!   server's problem, as the kernel's `ip_vs_tunnel_xmit_v6`);
//! - extension headers are walked to the upper layer
//!   ([`Ipv6Packet::upper_layer`]) and kept as they are; a chain cut short
//!   or longer than [`crate::wire::ipv6::MAX_EXT_HEADERS`], or one the
//!   walker cannot cross (AH, mobility, HIP, shim6, experimental), is
//!   dropped (`ipv6_ext_headers`). Fragments are dropped (`ipv6_fragment`):
//!   IPv4's first-fragment cache ([`crate::lb::frag`]) keys on the IPv4
//!   identification, and an IPv6 fragment header is end to end (a path MTU
//!   problem the sender must solve with the PTBs above). An atomic
//!   fragment (offset 0, no more fragments, RFC 6946) is a whole packet.
//!
//! Failure modes: every function is bounds-safe on a frame and the
//! [`PacketInfo`] [`classify6`] returned for it; a mismatched info at worst
//! skips out-of-range writes.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lb::fwd::{
    adjust, d16, fix_quote_checksums, rd16, rewrite_l4, wr16, FwdDrop, IcmpQuote, IcmpTranslation,
    L4Csum, PacketInfo, TunError, ETH_LEN, PROTO_TCP, PROTO_UDP,
};
use crate::lb::packet::PacketBuf;
use crate::wire::ethernet::{l3_offset, EtherType};
use crate::wire::icmpv6;
use crate::wire::ipip;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::Error as WireError;

/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 in IP (IPv6-in-IPv6, IPv6-in-IPv4 tunnels).
pub const PROTO_IPV6: u8 = 41;
/// The fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Extension headers (RFC 7045's list) the walker does not cross:
/// authentication (51), mobility (135), HIP (139), shim6 (140) and the
/// experimental 253 and 254. What follows them is unknown: dropped as
/// `ipv6_ext_headers`, not taken for an upper layer.
const UNWALKED_EXT_HEADERS: [u8; 6] = [51, 135, 139, 140, 253, 254];
/// Largest ICMPv6 error we originate: the IPv6 minimum MTU.
const ICMPV6_ERROR_MAX: usize = icmpv6::IPV6_MIN_MTU;

/// Validate an IPv6 frame and find what the director needs in it.
///
/// `Ok(None)`: not IPv6. `Err`: a malformed packet, with the reason.
/// Checks, in order: Ethernet/VLAN length, the fixed header's length,
/// version, payload length, the extension header chain, fragments, then
/// the TCP/UDP/ICMPv6 header lengths. ICMPv6 errors quoting TCP/UDP get
/// their quote parsed.
#[inline]
pub fn classify6(frame: &[u8]) -> Result<Option<PacketInfo<Ipv6Addr>>, FwdDrop> {
    let (l3, ethertype) = match l3_offset(frame) {
        Ok(x) => x,
        Err(WireError::Truncated) => return Err(FwdDrop::TruncatedL2),
        Err(_) => return Ok(None),
    };
    if ethertype != EtherType::IPV6 {
        return Ok(None);
    }
    classify6_at(frame, l3).map(Some)
}

/// An IPv6 packet info before classification ([`classify6_into`] sets
/// every field it reads).
pub(crate) const EMPTY_INFO6: PacketInfo<Ipv6Addr> = PacketInfo {
    l3: 0,
    l4: 0,
    end: 0,
    proto: 0,
    src: Ipv6Addr::UNSPECIFIED,
    dst: Ipv6Addr::UNSPECIFIED,
    sport: 0,
    dport: 0,
    tcp_flags: 0,
    ttl: 0,
    dont_frag: true,
    first_fragment: false,
    icmp: None,
};

/// [`classify6`] of the IPv6 packet at `l3`.
#[inline]
pub fn classify6_at(frame: &[u8], l3: usize) -> Result<PacketInfo<Ipv6Addr>, FwdDrop> {
    let mut info = PacketInfo {
        l3,
        l4: l3,
        end: l3,
        ..EMPTY_INFO6
    };
    classify6_into(frame, l3, &mut info)?;
    Ok(info)
}

/// [`classify6_at`] written field by field into `info` where the caller
/// keeps it (a burst's slot): no 176-byte info built aside and copied.
/// On `Err`, `info` holds a partial description and must not be used.
#[inline(always)]
pub fn classify6_into(
    frame: &[u8],
    l3: usize,
    info: &mut PacketInfo<Ipv6Addr>,
) -> Result<(), FwdDrop> {
    let ip = frame.get(l3..).unwrap_or(&[]);
    // one bounds check for the whole fixed header; fields by constant index
    let Some(hdr) = ip.first_chunk::<IPV6_HEADER_LEN>() else {
        return Err(FwdDrop::TruncatedIp);
    };
    if hdr[0] >> 4 != 6 {
        return Err(FwdDrop::BadIpVersion);
    }
    let total = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if total > ip.len() {
        return Err(FwdDrop::BadTotalLength);
    }
    // the common case, no extension headers: the upper layer follows the
    // fixed header (what the walker would find, without walking)
    let (proto, upper_offset) = match hdr[6] {
        next @ (PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) => (next, IPV6_HEADER_LEN),
        _ => upper_layer_walked(&ip[..total])?,
    };
    let l4 = l3 + upper_offset;
    let end = l3 + total;
    info.l3 = l3;
    info.l4 = l4;
    info.end = end;
    info.proto = proto;
    info.src = Ipv6Addr::from(addr16(hdr, 8));
    info.dst = Ipv6Addr::from(addr16(hdr, 24));
    info.ttl = hdr[7];
    info.dont_frag = true;
    info.first_fragment = false;
    info.icmp = None;
    let l4_len = total.saturating_sub(upper_offset);
    // the upper-layer header, bounds-checked once: within the packet
    let upper = ip.get(upper_offset..total).unwrap_or(&[]);
    match proto {
        PROTO_TCP => {
            let Some(tcp) = upper.first_chunk::<20>() else {
                return Err(FwdDrop::TruncatedL4);
            };
            let doff = usize::from(tcp[12] >> 4) * 4;
            if doff < 20 || doff > l4_len {
                return Err(FwdDrop::TruncatedL4);
            }
            info.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
            info.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
            info.tcp_flags = tcp[13];
        }
        PROTO_UDP => {
            let Some(udp) = upper.first_chunk::<8>() else {
                return Err(FwdDrop::TruncatedL4);
            };
            let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            if ulen < 8 || ulen > l4_len {
                return Err(FwdDrop::BadUdpLength);
            }
            info.sport = u16::from_be_bytes([udp[0], udp[1]]);
            info.dport = u16::from_be_bytes([udp[2], udp[3]]);
            info.tcp_flags = 0;
        }
        PROTO_ICMPV6 => {
            if l4_len < 8 {
                return Err(FwdDrop::TruncatedL4);
            }
            info.sport = 0;
            info.dport = 0;
            info.tcp_flags = 0;
            info.icmp = parse_quote6(frame, l4, end);
        }
        _ => {
            info.sport = 0;
            info.dport = 0;
            info.tcp_flags = 0;
        }
    }
    Ok(())
}

/// The 16 bytes at `at` of a fixed IPv6 header (8: source, 24:
/// destination).
#[inline(always)]
fn addr16(hdr: &[u8; IPV6_HEADER_LEN], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(b) = hdr.get(at..at + 16) {
        a.copy_from_slice(b);
    }
    a
}

/// The upper layer's protocol and offset in an IPv6 `packet` with
/// extension headers, walked ([`Ipv6Packet::upper_layer`]); fragments and
/// chains the walker cannot cross are dropped.
#[inline(never)]
fn upper_layer_walked(packet: &[u8]) -> Result<(u8, usize), FwdDrop> {
    let upper = Ipv6Packet::new_unchecked(packet)
        .upper_layer()
        .map_err(|_| FwdDrop::Ipv6ExtHeaders)?;
    if upper
        .fragment
        .is_some_and(|f| f.offset != 0 || f.more_frags)
    {
        return Err(FwdDrop::Ipv6Fragment);
    }
    let proto = upper.protocol.0;
    if UNWALKED_EXT_HEADERS.contains(&proto) {
        return Err(FwdDrop::Ipv6ExtHeaders);
    }
    Ok((proto, upper.offset))
}

/// The IPv6 address at `at` (unspecified if out of range).
#[inline]
pub(crate) fn addr_at(frame: &[u8], at: usize) -> Ipv6Addr {
    match frame
        .get(at..at + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
    {
        Some(b) => Ipv6Addr::from(b),
        None => Ipv6Addr::UNSPECIFIED,
    }
}

#[inline]
fn wr_addr(frame: &mut [u8], at: usize, a: Ipv6Addr) {
    if let Some(b) = frame.get_mut(at..at + 16) {
        b.copy_from_slice(&a.octets());
    }
}

/// RFC 1624 delta of a 128-bit field (eight words), summed as four
/// 32-bit words: `~m + m'` of a 32-bit word is congruent (mod 0xffff) to
/// that of its two 16-bit halves, and zero exactly when theirs both are,
/// so the folded checksum is the same as eight `d16`s', in half the steps.
#[inline]
pub(crate) fn d128(old: Ipv6Addr, new: Ipv6Addr) -> u64 {
    let (o, n) = (old.octets(), new.octets());
    let mut delta = 0u64;
    for (ow, nw) in o.chunks_exact(4).zip(n.chunks_exact(4)) {
        let ow = u32::from_be_bytes([ow[0], ow[1], ow[2], ow[3]]);
        let nw = u32::from_be_bytes([nw[0], nw[1], nw[2], nw[3]]);
        delta += u64::from(!ow) + u64::from(nw);
    }
    delta
}

/// Whether ICMPv6 messages of this type are related to connections
/// (the kernel's `ip_vs_in_icmp_v6`: the error messages, types 1–4).
pub fn is_related_icmpv6_type(t: u8) -> bool {
    matches!(
        t,
        icmpv6::TYPE_DEST_UNREACHABLE
            | icmpv6::TYPE_PACKET_TOO_BIG
            | icmpv6::TYPE_TIME_EXCEEDED
            | icmpv6::TYPE_PARAM_PROBLEM
    )
}

/// The quoted TCP/UDP packet of an ICMPv6 error at `l4` ending at `end`:
/// an IPv6 header, its extension headers and 8 bytes of TCP/UDP, not a
/// non-first fragment; or an IPv6-in-IPv6 packet quoting one inside.
fn parse_quote6(frame: &[u8], l4: usize, end: usize) -> Option<IcmpQuote<Ipv6Addr>> {
    let msg_type = *frame.get(l4)?;
    if !is_related_icmpv6_type(msg_type) {
        return None;
    }
    let code = frame.get(l4 + 1).copied().unwrap_or(0);
    let (ip, ql4, proto) = quoted_ip6(frame, l4 + 8, end)?;
    let (ip, ql4, proto, tunnel) = if proto == PROTO_IPV6 {
        let outer = (addr_at(frame, ip + 8), addr_at(frame, ip + 24));
        let (inner, inner_l4, inner_proto) = quoted_ip6(frame, ql4, end)?;
        (inner, inner_l4, inner_proto, Some(outer))
    } else {
        (ip, ql4, proto, None)
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    if ql4 + 8 > end {
        return None;
    }
    Some(IcmpQuote {
        msg_type,
        code,
        ip,
        l4: ql4,
        proto,
        src: addr_at(frame, ip + 8),
        dst: addr_at(frame, ip + 24),
        sport: rd16(frame, ql4),
        dport: rd16(frame, ql4 + 2),
        tunnel,
    })
}

/// A quoted IPv6 packet at `ip` before `end` (possibly cut short):
/// (offset, offset of its upper layer, upper-layer protocol), unless it is
/// a non-first fragment or its headers do not fit.
fn quoted_ip6(frame: &[u8], ip: usize, end: usize) -> Option<(usize, usize, u8)> {
    let quoted = frame.get(ip..end)?;
    if quoted.len() < IPV6_HEADER_LEN || quoted[0] >> 4 != 6 {
        return None;
    }
    let upper = Ipv6Packet::new_unchecked(quoted).upper_layer().ok()?;
    if upper.fragment.is_some_and(|f| f.offset != 0) {
        return None;
    }
    if upper.offset + 8 > quoted.len() {
        return None;
    }
    Some((ip, ip + upper.offset, upper.protocol.0))
}

/// Rewrite an IPv6 TCP/UDP packet's addresses and ports, decrementing the
/// hop limit when `dec_hop` (the caller has checked it is above 1). Only
/// the L4 checksum changes (unless `csum` is [`L4Csum::Skip`]).
pub fn rewrite6(
    frame: &mut [u8],
    info: &PacketInfo<Ipv6Addr>,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    dec_hop: bool,
    csum: L4Csum,
) {
    let ip = info.l3;
    let mut l4_delta = 0u64;
    if dec_hop {
        if let Some(h) = frame.get_mut(ip + 7) {
            *h = h.wrapping_sub(1);
        }
    }
    if src.0 != info.src {
        l4_delta += d128(info.src, src.0);
        wr_addr(frame, ip + 8, src.0);
    }
    if dst.0 != info.dst {
        l4_delta += d128(info.dst, dst.0);
        wr_addr(frame, ip + 24, dst.0);
    }
    rewrite_l4(frame, info, src.1, dst.1, l4_delta, csum);
}

/// TUN over IPv6: encapsulate the IPv6 packet in an outer IPv6 header
/// (next header 41, hop limit 64, traffic class and flow label copied)
/// from `outer_src` to `outer_dst`, after decrementing the inner hop
/// limit (the caller has checked it is above 1). The Ethernet header moves
/// to the new front; padding after the packet is dropped. Too big for
/// `mtu`: nothing changes, `FragNeeded` (answer with [`packet_too_big`]).
pub fn tun_encap6<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    outer_src: Ipv6Addr,
    outer_dst: Ipv6Addr,
    mtu: u16,
) -> Result<(), TunError> {
    let inner_len = info.ip_len();
    if inner_len + ipip::IPV6_HEADROOM > usize::from(mtu) {
        return Err(TunError::FragNeeded);
    }
    let inner = prepend_outer(pkt, info, ipip::IPV6_HEADROOM)?;
    let frame = pkt.data_mut();
    if let Some(h) = frame.get_mut(inner + 7) {
        *h = h.wrapping_sub(1);
    }
    let l3 = info.l3;
    let mut hdr = [0u8; IPV6_HEADER_LEN];
    if let Some(first) = frame.get(inner..inner + 4) {
        hdr[..4].copy_from_slice(first);
    }
    // inner_len + 40 <= mtu (a u16), checked above
    hdr[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
    hdr[6] = PROTO_IPV6;
    hdr[7] = ipip::OUTER_TTL;
    hdr[8..24].copy_from_slice(&outer_src.octets());
    hdr[24..40].copy_from_slice(&outer_dst.octets());
    if let Some(h) = frame.get_mut(l3..inner) {
        h.copy_from_slice(&hdr);
    }
    Ok(())
}

/// TUN for an IPv6 packet to an IPv4 real server: encapsulate it in an
/// outer IPv4 header (protocol 41, TTL 64, DSCP/ECN from the traffic
/// class, DF set: IPv6 is never fragmented on the way) from `outer_src` to
/// `outer_dst`, as the kernel's `--tun-type ipip` does for a mixed-family
/// destination; the EtherType becomes IPv4. Too big: `FragNeeded`.
pub fn tun_encap6_in4<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    mtu: u16,
    ident: u16,
) -> Result<(), TunError> {
    let inner_len = info.ip_len();
    if inner_len + ipip::IPV4_HEADROOM > usize::from(mtu) {
        return Err(TunError::FragNeeded);
    }
    let inner = prepend_outer(pkt, info, ipip::IPV4_HEADROOM)?;
    let frame = pkt.data_mut();
    if let Some(h) = frame.get_mut(inner + 7) {
        *h = h.wrapping_sub(1);
    }
    let tclass = ((rd16(frame, inner) >> 4) & 0xff) as u8;
    let total = (inner_len + ipip::IPV4_HEADROOM) as u16;
    let outer = ipip::OuterIpv4 {
        src: outer_src,
        dst: outer_dst,
    };
    let l3 = info.l3;
    if let Some(hdr) = frame.get_mut(l3..inner) {
        outer.emit(hdr, total, tclass, true, ident);
        // protocol 41, not IPIP's 4
        hdr[9] = PROTO_IPV6;
        wr16(hdr, 10, 0);
        let c = crate::wire::checksum::checksum(hdr);
        wr16(hdr, 10, c);
    }
    set_ethertype(frame, l3, EtherType::IPV4);
    Ok(())
}

/// TUN for an IPv4 packet to an IPv6 real server: encapsulate it in an
/// outer IPv6 header (next header 4, hop limit 64, traffic class from the
/// TOS, flow label 0) from `outer_src` to `outer_dst`, after decrementing
/// the inner TTL (the caller has checked it is above 1); the EtherType
/// becomes IPv6. Too big for `mtu`: `FragNeeded` with DF set, `TooBig`
/// without (the director does not fragment).
pub fn tun_encap4_in6<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv4Addr>,
    outer_src: Ipv6Addr,
    outer_dst: Ipv6Addr,
    mtu: u16,
) -> Result<(), TunError> {
    let inner_len = info.ip_len();
    if inner_len + ipip::IPV6_HEADROOM > usize::from(mtu) {
        return Err(if info.dont_frag {
            TunError::FragNeeded
        } else {
            TunError::TooBig
        });
    }
    let inner = prepend_outer(pkt, info, ipip::IPV6_HEADROOM)?;
    let frame = pkt.data_mut();
    let ttl_proto = rd16(frame, inner + 8);
    let dec = ttl_proto.wrapping_sub(0x100);
    wr16(frame, inner + 8, dec);
    let c = adjust(rd16(frame, inner + 10), d16(ttl_proto, dec));
    wr16(frame, inner + 10, c);
    let tos = frame.get(inner + 1).copied().unwrap_or(0);
    let mut hdr = [0u8; IPV6_HEADER_LEN];
    let first = (6u32 << 28) | (u32::from(tos) << 20);
    hdr[..4].copy_from_slice(&first.to_be_bytes());
    // inner_len + 40 <= mtu (a u16), checked above
    hdr[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
    hdr[6] = crate::lb::fwd::PROTO_IPIP;
    hdr[7] = ipip::OUTER_TTL;
    hdr[8..24].copy_from_slice(&outer_src.octets());
    hdr[24..40].copy_from_slice(&outer_dst.octets());
    let l3 = info.l3;
    if let Some(h) = frame.get_mut(l3..inner) {
        h.copy_from_slice(&hdr);
    }
    set_ethertype(frame, l3, EtherType::IPV6);
    Ok(())
}

/// The EtherType field just before the IP header at `l3` (the innermost
/// VLAN tag's, if any).
fn set_ethertype(frame: &mut [u8], l3: usize, t: EtherType) {
    if l3 >= 2 {
        wr16(frame, l3 - 2, t.0);
    }
}

/// Make room for an outer header of `room` bytes in front of the IP
/// packet: padding after it is dropped, the Ethernet header (with its VLAN
/// tags) moves to the new front. Returns the inner packet's new offset.
fn prepend_outer<P: PacketBuf, A>(
    pkt: &mut P,
    info: &PacketInfo<A>,
    room: usize,
) -> Result<usize, TunError> {
    if pkt.len() < info.end {
        return Err(TunError::NoHeadroom);
    }
    pkt.truncate(info.end);
    if !pkt.prepend(room) {
        return Err(TunError::NoHeadroom);
    }
    let frame = pkt.data_mut();
    let l2 = info.l3;
    let inner = l2 + room;
    match frame.get(room..inner) {
        Some(eth) if l2 == ETH_LEN => {
            let mut hdr = [0u8; ETH_LEN];
            hdr.copy_from_slice(eth);
            frame[..ETH_LEN].copy_from_slice(&hdr);
        }
        _ => frame.copy_within(room..inner, 0),
    }
    Ok(inner)
}

/// Replace the IPv6 packet of `pkt` (keeping its Ethernet header) with an
/// ICMPv6 error about it from `src` to `dst` ([`icmpv6::build_error`]:
/// quoting as much as fits in 1280 bytes). False if no error may be sent
/// about it (an ICMPv6 error itself, a multicast destination) or the buffer
/// cannot hold it; then nothing changed.
pub fn icmp6_error_in_place<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    msg_type: u8,
    code: u8,
    rest: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> bool {
    let mut out = [0u8; ICMPV6_ERROR_MAX];
    let n = {
        let Some(orig) = pkt.data().get(info.l3..info.end) else {
            return false;
        };
        match icmpv6::build_error(orig, msg_type, code, rest, src, dst, &mut out) {
            Ok(n) => n,
            Err(_) => return false,
        }
    };
    let want = info.l3 + n;
    let have = pkt.len();
    if have < want {
        if !pkt.append(want - have) {
            return false;
        }
    } else {
        pkt.truncate(want);
    }
    match (pkt.data_mut().get_mut(info.l3..want), out.get(..n)) {
        (Some(d), Some(s)) => {
            d.copy_from_slice(s);
            true
        }
        _ => false,
    }
}

/// Replace an ICMPv6 error about one of our IPv6-in-IPv6 packets with the
/// same error about the packet inside, for its sender: a new IPv6 header
/// from `src` to `dst`, the ICMPv6 header with the original type and code
/// and `rest`, and the inner packet as quoted (within 1280 bytes). The
/// Ethernet header stays. False (nothing changed) if it cannot be built.
pub fn relay_tunnel_icmp6<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    q: &IcmpQuote<Ipv6Addr>,
    rest: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> bool {
    let mut out = [0u8; ICMPV6_ERROR_MAX];
    let Some(quote) = pkt.data().get(q.ip..info.end) else {
        return false;
    };
    let quote = &quote[..quote.len().min(ICMPV6_ERROR_MAX - IPV6_HEADER_LEN - 8)];
    let icmp_len = 8 + quote.len();
    let total = IPV6_HEADER_LEN + icmp_len;
    let repr = crate::wire::ipv6::Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: crate::wire::IpProtocol::ICMPV6,
        payload_len: icmp_len,
        hop_limit: icmpv6::DEFAULT_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let Some(buf) = out.get_mut(..total) else {
        return false;
    };
    if repr.emit(buf).is_err() {
        return false;
    }
    {
        let (_, icmp_buf) = buf.split_at_mut(IPV6_HEADER_LEN);
        let mut m = icmpv6::Icmpv6Packet::new_unchecked(icmp_buf);
        m.set_msg_type(q.msg_type);
        m.set_code(q.code);
        m.set_rest_of_header(rest);
        m.payload_mut().copy_from_slice(quote);
        m.fill_checksum(&src, &dst);
    }
    let want = info.l3 + total;
    let have = pkt.len();
    if have < want {
        if !pkt.append(want - have) {
            return false;
        }
    } else {
        pkt.truncate(want);
    }
    match pkt.data_mut().get_mut(info.l3..want) {
        Some(d) => {
            d.copy_from_slice(buf);
            true
        }
        None => false,
    }
}

/// Packet Too Big about a packet too big to tunnel, from its destination
/// (the VIP) back to its source, advertising `mtu - overhead` but at least
/// 1280. See [`icmp6_error_in_place`].
pub fn packet_too_big<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    mtu: u16,
    overhead: usize,
) -> bool {
    let adv = usize::from(mtu)
        .saturating_sub(overhead)
        .max(icmpv6::IPV6_MIN_MTU) as u32;
    icmp6_error_in_place(
        pkt,
        info,
        icmpv6::TYPE_PACKET_TOO_BIG,
        0,
        adv,
        info.dst,
        info.src,
    )
}

/// ICMPv6 time exceeded (type 3 code 0) for a request that arrived with
/// hop limit ≤ 1, from its destination back to its source.
pub fn time_exceeded6<P: PacketBuf>(pkt: &mut P, info: &PacketInfo<Ipv6Addr>) -> bool {
    icmp6_error_in_place(
        pkt,
        info,
        icmpv6::TYPE_TIME_EXCEEDED,
        0,
        0,
        info.dst,
        info.src,
    )
}

/// Whether the ICMPv6 message of an error packet verifies (its checksum
/// covers the pseudo-header).
pub fn icmp6_checksum_ok(frame: &[u8], info: &PacketInfo<Ipv6Addr>) -> bool {
    frame.get(info.l4..info.end).is_some_and(|m| {
        icmpv6::Icmpv6Packet::new_unchecked(m).verify_checksum(&info.src, &info.dst)
    })
}

/// Translate an ICMPv6 error about a connection (IPVS `ip_vs_nat_icmp_v6`):
/// outer and quoted addresses, quoted ports, the quoted TCP/UDP checksum
/// when the quote holds it, and the ICMPv6 checksum (pseudo-header
/// included). Hop limit − 1.
pub fn translate_icmp6_error(
    frame: &mut [u8],
    info: &PacketInfo<Ipv6Addr>,
    q: &IcmpQuote<Ipv6Addr>,
    t: &IcmpTranslation<Ipv6Addr>,
) {
    let ip = info.l3;
    if let Some(h) = frame.get_mut(ip + 7) {
        *h = h.wrapping_sub(1);
    }
    // the ICMPv6 checksum covers the pseudo-header and the whole message
    let mut icmp_delta = 0u64;
    if t.outer_src != info.src {
        icmp_delta += d128(info.src, t.outer_src);
        wr_addr(frame, ip + 8, t.outer_src);
    }
    if t.outer_dst != info.dst {
        icmp_delta += d128(info.dst, t.outer_dst);
        wr_addr(frame, ip + 24, t.outer_dst);
    }
    let mut ql4_delta = 0u64;
    if t.quote_src.0 != q.src {
        ql4_delta += d128(q.src, t.quote_src.0);
        wr_addr(frame, q.ip + 8, t.quote_src.0);
    }
    if t.quote_dst.0 != q.dst {
        ql4_delta += d128(q.dst, t.quote_dst.0);
        wr_addr(frame, q.ip + 24, t.quote_dst.0);
    }
    if t.quote_src.1 != q.sport {
        ql4_delta += d16(q.sport, t.quote_src.1);
        wr16(frame, q.l4, t.quote_src.1);
    }
    if t.quote_dst.1 != q.dport {
        ql4_delta += d16(q.dport, t.quote_dst.1);
        wr16(frame, q.l4 + 2, t.quote_dst.1);
    }
    // every quoted change is ICMPv6 payload
    icmp_delta += ql4_delta;
    fix_quote_checksums(
        frame, q.proto, q.l4, info.end, info.l4, ql4_delta, icmp_delta,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-by-word delta `d128` replaced: eight 16-bit words.
    fn d128_by_words(old: Ipv6Addr, new: Ipv6Addr) -> u64 {
        old.segments()
            .iter()
            .zip(new.segments())
            .map(|(&o, n)| d16(o, n))
            .sum()
    }

    #[test]
    fn d128_adjusts_as_sixteen_bit_words() {
        let addrs = [
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::from(u128::MAX),
            Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64),
            Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0xffff, 1),
            Ipv6Addr::new(0xffff, 0, 0xffff, 0, 0xffff, 0, 0xffff, 0),
            Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc612, 0x0001),
        ];
        for &old in &addrs {
            for &new in &addrs {
                assert_eq!(d128(old, new) == 0, d128_by_words(old, new) == 0);
                for csum in [0u16, 1, 0x1234, 0xfffe, 0xffff] {
                    assert_eq!(
                        adjust(csum, d128(old, new)),
                        adjust(csum, d128_by_words(old, new)),
                        "{old} -> {new}, checksum {csum:#x}"
                    );
                }
            }
        }
    }
}
