//! The four IPVS forwarding rewrites as functions over an Ethernet frame
//! (IPv4, TCP and UDP), the validation that precedes them, ICMP error
//! translation and the ICMP errors the director originates.
//!
//! What each method does to a packet, as Linux IPVS (and DPVS for FULLNAT):
//!
//! | method | request (client → server) | reply (server → client) |
//! |---|---|---|
//! | NAT | dst VIP:vport → RIP:rport | src RIP:rport → VIP:vport |
//! | FULLNAT | src CIP:cport → LIP:lport, dst VIP:vport → RIP:rport | src → VIP:vport, dst LIP:lport → CIP:cport |
//! | DR | unchanged (the data plane sets the Ethernet destination) | never seen |
//! | TUN | IPIP header from the director to RIP in front | never seen |
//!
//! The TTL is decremented in every forwarded packet, both directions: the
//! kernel does it in `decrement_ttl` (called from `__ip_vs_get_out_rt` for
//! every method that leaves the box) and, for NAT replies, in `ip_forward`
//! before the FORWARD hook. A request that arrives with TTL ≤ 1 gets an
//! ICMP time exceeded back, as `decrement_ttl` sends one; a reply with
//! TTL ≤ 1 is dropped and counted (the director has no address of its own
//! on the real server side to send from).
//!
//! ICMP errors (destination unreachable, source quench, time exceeded,
//! parameter problem) that quote a packet of a connection are translated
//! like the connection's packets, outer and quoted headers both
//! ([`translate_icmp_error`]); an error about one of our TUN packets (a
//! quoted IPIP packet) is turned into the same error about the packet
//! inside, for the client ([`relay_tunnel_icmp`]).
//!
//! Checksums are updated incrementally (RFC 1624 eqn. 3, one fold per
//! header). The IP header checksum is always maintained; the L4 checksum
//! update is a separate step selected by [`L4Csum`], so a data plane with
//! checksum offload can skip it. A UDP checksum of 0 (none) stays 0.
//!
//! Every function here is bounds-safe: given a frame and the
//! [`PacketInfo`] that [`classify`] returned for it, nothing panics, and
//! out-of-range writes (only possible with a mismatched info) are skipped.

use std::net::Ipv4Addr;

use crate::lb::packet::PacketBuf;
use crate::wire::checksum;
use crate::wire::ethernet::{l3_offset, EtherType};
use crate::wire::icmp;
use crate::wire::ipip;
use crate::wire::Error as WireError;

/// IP protocol numbers handled here.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// IP in IP.
pub const PROTO_IPIP: u8 = 4;

/// Length of the IPv4 header we forward (options are dropped).
pub const IPV4_HEADER_LEN: usize = 20;
/// Largest ICMP error message we originate (IP + ICMP + quoted header + 8).
const ICMP_ERROR_MAX: usize = 20 + 8 + 60 + 8;
/// An untagged Ethernet header.
pub(crate) const ETH_LEN: usize = 14;

/// Why the forwarding core dropped a packet. One counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FwdDrop {
    /// Ethernet or VLAN header cut short.
    TruncatedL2,
    /// Less than an IPv4 header (or its IHL) in the frame.
    TruncatedIp,
    /// EtherType IPv4 but the version field is not 4.
    BadIpVersion,
    /// IHL below 5.
    BadIhl,
    /// Total length below the header length or beyond the frame.
    BadTotalLength,
    /// IPv4 options (not forwarded).
    IpOptions,
    /// A fragment other than the first (no ports to match on).
    NonFirstFragment,
    /// The IPv4 header checksum does not verify.
    BadIpChecksum,
    /// TCP, UDP or ICMP header cut short (or TCP data offset out of range).
    TruncatedL4,
    /// UDP length field below 8 or beyond the IP payload.
    BadUdpLength,
    /// An ICMP error about a connection whose checksum does not verify.
    BadIcmpChecksum,
    /// TTL ≤ 1 on a packet to forward.
    TtlExpired,
    /// TCP without SYN (or with RST) for a service, no connection.
    NoConnNotSyn,
    /// The scheduler found no available real server.
    NoDest,
    /// The connection table is full.
    TableFull,
    /// The reply tuple of a new connection is already in use.
    ReplyTupleInUse,
    /// FULLNAT service without an IPv4 local address.
    NoLocalAddress,
    /// FULLNAT: no free local port whose reply tuple lands on this core.
    NoLocalPort,
    /// The connection's real server is gone (removed from its service):
    /// its packets are dropped without refreshing the entry, so it expires
    /// and the flow is scheduled afresh (IPVS without `expire_nodest_conn`;
    /// with it, a TCP non-SYN that expired the entry at once).
    DestRemoved,
    /// A steered packet of an existing connection found none here.
    SteeredNoConn,
    /// TUN: encapsulated packet above the MTU with DF clear (we don't fragment).
    TooBigNoDf,
    /// TUN: no headroom for the outer header; or no room for an ICMP error.
    NoRoom,
    /// The real server's address family cannot carry this packet
    /// (IPv6 tunnel server behind an IPv4 service).
    UnsupportedDest,
    /// SYN proxy: an ACK whose SYN cookie does not verify (forged or stale).
    SynproxyBadCookie,
    /// SYN proxy: client data before the real server's handshake completed
    /// (the client retransmits it).
    SynproxyNotReady,
    /// SYN proxy: a handshake packet out of place (a client SYN on a proxied
    /// connection, a SYN-ACK that answers no SYN of ours, ...).
    SynproxyUnexpected,
    /// IPv6: an extension header chain cut short, or longer than
    /// [`crate::wire::ipv6::MAX_EXT_HEADERS`] headers.
    Ipv6ExtHeaders,
    /// IPv6: a fragment (first or later; IPv6 fragments are not
    /// reassembled or tracked, see [`crate::lb::fwd6`]).
    Ipv6Fragment,
    /// IPv6: a packet for a service feature not available over IPv6 (the
    /// SYN proxy).
    Ipv6Unsupported,
    /// NAT64: a packet of a NAT64 connection that is not translated (an
    /// ICMP error, an IPv4 fragment), or no room to translate it.
    Nat64Untranslatable,
}

impl FwdDrop {
    /// Number of reasons.
    pub const COUNT: usize = 30;
    /// Every reason, in counter order.
    pub const ALL: [FwdDrop; FwdDrop::COUNT] = [
        FwdDrop::TruncatedL2,
        FwdDrop::TruncatedIp,
        FwdDrop::BadIpVersion,
        FwdDrop::BadIhl,
        FwdDrop::BadTotalLength,
        FwdDrop::IpOptions,
        FwdDrop::NonFirstFragment,
        FwdDrop::BadIpChecksum,
        FwdDrop::TruncatedL4,
        FwdDrop::BadUdpLength,
        FwdDrop::BadIcmpChecksum,
        FwdDrop::TtlExpired,
        FwdDrop::NoConnNotSyn,
        FwdDrop::NoDest,
        FwdDrop::TableFull,
        FwdDrop::ReplyTupleInUse,
        FwdDrop::NoLocalAddress,
        FwdDrop::NoLocalPort,
        FwdDrop::DestRemoved,
        FwdDrop::SteeredNoConn,
        FwdDrop::TooBigNoDf,
        FwdDrop::NoRoom,
        FwdDrop::UnsupportedDest,
        FwdDrop::SynproxyBadCookie,
        FwdDrop::SynproxyNotReady,
        FwdDrop::SynproxyUnexpected,
        FwdDrop::Ipv6ExtHeaders,
        FwdDrop::Ipv6Fragment,
        FwdDrop::Ipv6Unsupported,
        FwdDrop::Nat64Untranslatable,
    ];

    /// Counter index (position in [`FwdDrop::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            FwdDrop::TruncatedL2 => "truncated_l2",
            FwdDrop::TruncatedIp => "truncated_ip",
            FwdDrop::BadIpVersion => "bad_ip_version",
            FwdDrop::BadIhl => "bad_ihl",
            FwdDrop::BadTotalLength => "bad_total_length",
            FwdDrop::IpOptions => "ip_options",
            FwdDrop::NonFirstFragment => "non_first_fragment",
            FwdDrop::BadIpChecksum => "bad_ip_checksum",
            FwdDrop::TruncatedL4 => "truncated_l4",
            FwdDrop::BadUdpLength => "bad_udp_length",
            FwdDrop::BadIcmpChecksum => "bad_icmp_checksum",
            FwdDrop::TtlExpired => "ttl_expired",
            FwdDrop::NoConnNotSyn => "no_conn_not_syn",
            FwdDrop::NoDest => "no_dest",
            FwdDrop::TableFull => "table_full",
            FwdDrop::ReplyTupleInUse => "reply_tuple_in_use",
            FwdDrop::NoLocalAddress => "no_local_address",
            FwdDrop::NoLocalPort => "no_local_port",
            FwdDrop::DestRemoved => "dest_removed",
            FwdDrop::SteeredNoConn => "steered_no_conn",
            FwdDrop::TooBigNoDf => "too_big_no_df",
            FwdDrop::NoRoom => "no_room",
            FwdDrop::UnsupportedDest => "unsupported_dest",
            FwdDrop::SynproxyBadCookie => "synproxy_bad_cookie",
            FwdDrop::SynproxyNotReady => "synproxy_not_ready",
            FwdDrop::SynproxyUnexpected => "synproxy_unexpected",
            FwdDrop::Ipv6ExtHeaders => "ipv6_ext_headers",
            FwdDrop::Ipv6Fragment => "ipv6_fragment",
            FwdDrop::Ipv6Unsupported => "ipv6_unsupported_feature",
            FwdDrop::Nat64Untranslatable => "nat64_untranslatable",
        }
    }
}

/// Whether the L4 checksum is updated in software or left to the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Csum {
    /// Incremental update here (default).
    #[default]
    Update,
    /// Leave the L4 checksum field alone: the data plane recomputes it (TX
    /// checksum offload). The IP header checksum is still maintained.
    Skip,
}

/// An ICMP error (types 3, 4, 11, 12; ICMPv6 1–4) quoting a TCP or UDP
/// packet. `A`: the address type of the family (IPv4 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpQuote<A = Ipv4Addr> {
    /// ICMP type.
    pub msg_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Frame offset of the quoted IP header.
    pub ip: usize,
    /// Frame offset of the quoted TCP/UDP header (at least 8 bytes quoted).
    pub l4: usize,
    /// Quoted protocol (6 or 17).
    pub proto: u8,
    /// Quoted source address.
    pub src: A,
    /// Quoted destination address.
    pub dst: A,
    /// Quoted source port.
    pub sport: u16,
    /// Quoted destination port.
    pub dport: u16,
    /// The quoted packet was IPIP (one of our TUN packets, or anyone's):
    /// its outer source and destination. `ip`, `l4`, `src`, `dst`, ports
    /// then describe the packet inside the tunnel.
    pub tunnel: Option<(A, A)>,
}

/// What [`classify`] learned about a valid IPv4 frame (or
/// [`crate::lb::fwd6::classify6`] about an IPv6 one: `A = Ipv6Addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo<A = Ipv4Addr> {
    /// Frame offset of the IP header (after Ethernet and VLAN tags).
    pub l3: usize,
    /// Frame offset of the L4 header (`l3 + 20`; IPv6: after the
    /// extension headers).
    pub l4: usize,
    /// Frame offset just past the IP packet (`l3 + total length`);
    /// anything after it is Ethernet padding.
    pub end: usize,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// TCP/UDP source port (0 otherwise).
    pub sport: u16,
    /// TCP/UDP destination port (0 otherwise).
    pub dport: u16,
    /// TCP flags byte (0 otherwise).
    pub tcp_flags: u8,
    /// TTL (IPv6: hop limit).
    pub ttl: u8,
    /// Don't Fragment (always set for IPv6: routers never fragment it).
    pub dont_frag: bool,
    /// A first fragment (MF set, offset 0).
    pub first_fragment: bool,
    /// For an ICMP error quoting TCP/UDP: the quote.
    pub icmp: Option<IcmpQuote<A>>,
}

impl<A: Copy> PacketInfo<A> {
    /// The same packet described with addresses of another type (NAT64's
    /// IPv4-mapped view of an IPv4 packet, and back); no ICMP quote.
    pub fn with_addrs<B>(&self, src: B, dst: B) -> PacketInfo<B> {
        PacketInfo {
            l3: self.l3,
            l4: self.l4,
            end: self.end,
            proto: self.proto,
            src,
            dst,
            sport: self.sport,
            dport: self.dport,
            tcp_flags: self.tcp_flags,
            ttl: self.ttl,
            dont_frag: self.dont_frag,
            first_fragment: self.first_fragment,
            icmp: None,
        }
    }
}

impl<A> PacketInfo<A> {
    /// IP total length.
    pub fn ip_len(&self) -> usize {
        self.end - self.l3
    }
}

#[inline]
pub(crate) fn rd16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

#[inline]
pub(crate) fn rd32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

#[inline]
pub(crate) fn wr16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
pub(crate) fn wr32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(b) = buf.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// RFC 1624 delta of one 16-bit word: `~m + m'`.
#[inline]
pub(crate) fn d16(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// Delta of a 32-bit field (two words).
#[inline]
pub(crate) fn d32(old: u32, new: u32) -> u64 {
    d16((old >> 16) as u16, (new >> 16) as u16) + d16(old as u16, new as u16)
}

/// Apply an accumulated delta: `HC' = ~(~HC + Σ(~m + m'))` (eqn. 3).
#[inline]
pub(crate) fn adjust(csum: u16, delta: u64) -> u16 {
    !checksum::fold(u64::from(!csum) + delta)
}

/// Validate a frame and find what the director needs in it.
///
/// `Ok(None)`: not IPv4 (ARP, IPv6, unknown EtherType, three VLAN tags),
/// for the data plane to handle. `Err`: a malformed IPv4 packet, with the
/// reason. Checks, in order: Ethernet/VLAN length, IPv4 length, version,
/// IHL, total length, header checksum, options, fragment offset, then the
/// TCP/UDP/ICMP header lengths. First fragments pass (their L4 header must
/// be complete); ICMP errors quoting TCP/UDP get their quote parsed.
// Always inlined: out of line, its large result went through a temporary
// that each caller copied again (about 3% of TUN's packet rate on memif).
#[inline(always)]
pub fn classify(frame: &[u8]) -> Result<Option<PacketInfo>, FwdDrop> {
    let (l3, ethertype) = match l3_offset(frame) {
        Ok(x) => x,
        Err(WireError::Truncated) => return Err(FwdDrop::TruncatedL2),
        Err(_) => return Ok(None),
    };
    if ethertype != EtherType::IPV4 {
        return Ok(None);
    }
    let ip = frame.get(l3..).unwrap_or(&[]);
    if ip.len() < IPV4_HEADER_LEN {
        return Err(FwdDrop::TruncatedIp);
    }
    let ver_ihl = ip[0];
    if ver_ihl >> 4 != 4 {
        return Err(FwdDrop::BadIpVersion);
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN {
        return Err(FwdDrop::BadIhl);
    }
    if ip.len() < ihl {
        return Err(FwdDrop::TruncatedIp);
    }
    let total = usize::from(rd16(ip, 2));
    if total < ihl || total > ip.len() {
        return Err(FwdDrop::BadTotalLength);
    }
    let header_ok = match <&[u8; IPV4_HEADER_LEN]>::try_from(&ip[..ihl]) {
        Ok(h) => checksum::ipv4_header_ok(h),
        Err(_) => checksum::data(&ip[..ihl]) == 0xffff, // with options
    };
    if !header_ok {
        return Err(FwdDrop::BadIpChecksum);
    }
    if ihl != IPV4_HEADER_LEN {
        return Err(FwdDrop::IpOptions);
    }
    let frag = rd16(ip, 6);
    if frag & 0x1fff != 0 {
        return Err(FwdDrop::NonFirstFragment);
    }
    let first_fragment = frag & 0x2000 != 0;
    let proto = ip[9];
    let l4 = l3 + IPV4_HEADER_LEN;
    let end = l3 + total;
    let mut info = PacketInfo {
        l3,
        l4,
        end,
        proto,
        src: Ipv4Addr::from(rd32(ip, 12)),
        dst: Ipv4Addr::from(rd32(ip, 16)),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ttl: ip[8],
        dont_frag: frag & 0x4000 != 0,
        first_fragment,
        icmp: None,
    };
    let l4_len = end - l4;
    match proto {
        PROTO_TCP => {
            if l4_len < 20 {
                return Err(FwdDrop::TruncatedL4);
            }
            let doff = usize::from(frame.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4;
            if doff < 20 || doff > l4_len {
                return Err(FwdDrop::TruncatedL4);
            }
            info.sport = rd16(frame, l4);
            info.dport = rd16(frame, l4 + 2);
            info.tcp_flags = frame.get(l4 + 13).copied().unwrap_or(0);
        }
        PROTO_UDP => {
            if l4_len < 8 {
                return Err(FwdDrop::TruncatedL4);
            }
            let ulen = usize::from(rd16(frame, l4 + 4));
            if ulen < 8 || (!first_fragment && ulen > l4_len) {
                return Err(FwdDrop::BadUdpLength);
            }
            info.sport = rd16(frame, l4);
            info.dport = rd16(frame, l4 + 2);
        }
        PROTO_ICMP => {
            if l4_len < 8 {
                return Err(FwdDrop::TruncatedL4);
            }
            // A fragmented ICMP error cannot be checksummed or translated
            // here; it stays unrelated (the kernel would reassemble first).
            if !first_fragment {
                info.icmp = parse_quote(frame, l4, end);
            }
        }
        _ => {}
    }
    Ok(Some(info))
}

/// Whether IPVS relates ICMP messages of this type to connections. The
/// kernel (`ip_vs_in_icmp`, `ip_vs_out_icmp`) handles destination
/// unreachable, source quench and time exceeded; parameter problem is
/// handled too, its pointer stays valid across the translation.
pub fn is_related_icmp_type(t: u8) -> bool {
    matches!(
        t,
        icmp::TYPE_DEST_UNREACHABLE
            | icmp::TYPE_SOURCE_QUENCH
            | icmp::TYPE_TIME_EXCEEDED
            | icmp::TYPE_PARAM_PROBLEM
    )
}

/// The quoted TCP/UDP packet of an ICMP error at `l4` (ICMP header) ending
/// at `end`: an IPv4 header and at least 8 bytes of its payload, not a
/// non-first fragment; or an IPIP packet quoting such a packet inside.
fn parse_quote(frame: &[u8], l4: usize, end: usize) -> Option<IcmpQuote> {
    let msg_type = *frame.get(l4)?;
    if !is_related_icmp_type(msg_type) {
        return None;
    }
    let code = frame.get(l4 + 1).copied().unwrap_or(0);
    let (ip, ihl, proto) = quoted_ip(frame, l4 + 8, end)?;
    let (ip, ihl, proto, tunnel) = if proto == PROTO_IPIP {
        let outer = (
            Ipv4Addr::from(rd32(frame, ip + 12)),
            Ipv4Addr::from(rd32(frame, ip + 16)),
        );
        let (inner, inner_ihl, inner_proto) = quoted_ip(frame, ip + ihl, end)?;
        (inner, inner_ihl, inner_proto, Some(outer))
    } else {
        (ip, ihl, proto, None)
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let ql4 = ip + ihl;
    Some(IcmpQuote {
        msg_type,
        code,
        ip,
        l4: ql4,
        proto,
        src: Ipv4Addr::from(rd32(frame, ip + 12)),
        dst: Ipv4Addr::from(rd32(frame, ip + 16)),
        sport: rd16(frame, ql4),
        dport: rd16(frame, ql4 + 2),
        tunnel,
    })
}

/// A quoted IPv4 header at `ip` with 8 payload bytes before `end`, not a
/// non-first fragment: (offset, header length, protocol).
fn quoted_ip(frame: &[u8], ip: usize, end: usize) -> Option<(usize, usize, u8)> {
    let quoted = frame.get(ip..end)?;
    if quoted.len() < IPV4_HEADER_LEN || quoted[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(quoted[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || quoted.len() < ihl + 8 {
        return None;
    }
    if rd16(quoted, 6) & 0x1fff != 0 {
        return None;
    }
    Some((ip, ihl, quoted[9]))
}

/// Replace an ICMP error about one of our TUN packets with the same error
/// about the packet inside, for its sender (kernel `ip_vs_in_icmp`, ipip
/// case): a new IP header from `src` to `dst`, the ICMP header with the
/// original type and code and `rest`, and the quoted inner header plus 8
/// bytes. The Ethernet header stays. False (nothing changed) if the buffer
/// cannot hold it.
pub fn relay_tunnel_icmp<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo,
    q: &IcmpQuote,
    rest: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> bool {
    let mut out = [0u8; ICMP_ERROR_MAX];
    let quote_len = q.l4 + 8 - q.ip;
    let icmp_len = 8 + quote_len;
    let repr = crate::wire::Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: crate::wire::IpProtocol::ICMP,
        payload_len: icmp_len,
        ttl: icmp::DEFAULT_TTL,
        tos: icmp::ERROR_TOS,
        ident: 0,
        dont_frag: false,
    };
    let total = repr.total_len();
    let (Some(buf), Some(quote)) = (out.get_mut(..total), pkt.data().get(q.ip..q.l4 + 8)) else {
        return false;
    };
    if repr.emit(buf).is_err() {
        return false;
    }
    {
        let (_, icmp_buf) = buf.split_at_mut(IPV4_HEADER_LEN);
        let mut m = icmp::Icmpv4Packet::new_unchecked(icmp_buf);
        m.set_msg_type(q.msg_type);
        m.set_code(q.code);
        m.set_rest_of_header(rest);
        m.payload_mut().copy_from_slice(quote);
        m.fill_checksum();
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

/// Offset of the L4 checksum field for `proto` relative to its header.
pub(crate) fn l4_csum_offset(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(16),
        PROTO_UDP => Some(6),
        _ => None,
    }
}

/// Rewrite a TCP/UDP packet's addresses and ports, decrementing the TTL
/// when `dec_ttl` (the caller has checked it is above 1). `src`/`dst` are
/// the new endpoints; unchanged fields are left alone. The IP header
/// checksum is updated in one fold; the L4 checksum (pseudo header and
/// ports) too unless `csum` is [`L4Csum::Skip`].
pub fn rewrite(
    frame: &mut [u8],
    info: &PacketInfo,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    dec_ttl: bool,
    csum: L4Csum,
) {
    // The header's fields through one bounds check (classify has seen the
    // whole header) instead of one per field: ~25 instructions a packet.
    // A frame too short for it takes the per-field version, which writes
    // whatever fields there are.
    let Some(hdr) = frame
        .get_mut(info.l3..)
        .and_then(|f| f.first_chunk_mut::<IPV4_HEADER_LEN>())
    else {
        return rewrite_per_field(frame, info, src, dst, dec_ttl, csum);
    };
    let mut ip_delta = 0u64;
    let mut l4_delta = 0u64;
    if dec_ttl {
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        let new = old.wrapping_sub(0x100);
        ip_delta += d16(old, new);
        hdr[8..10].copy_from_slice(&new.to_be_bytes());
    }
    if src.0 != info.src {
        let d = d32(u32::from(info.src), u32::from(src.0));
        ip_delta += d;
        l4_delta += d;
        hdr[12..16].copy_from_slice(&src.0.octets());
    }
    if dst.0 != info.dst {
        let d = d32(u32::from(info.dst), u32::from(dst.0));
        ip_delta += d;
        l4_delta += d;
        hdr[16..20].copy_from_slice(&dst.0.octets());
    }
    if ip_delta != 0 {
        let c = adjust(u16::from_be_bytes([hdr[10], hdr[11]]), ip_delta);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
    }
    rewrite_l4(frame, info, src.1, dst.1, l4_delta, csum);
}

#[cold]
/// [`rewrite`] one field at a time, each written only if it is inside
/// `frame` (the reference for [`rewrite`], and its way for a frame too
/// short for a whole header).
fn rewrite_per_field(
    frame: &mut [u8],
    info: &PacketInfo,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    dec_ttl: bool,
    csum: L4Csum,
) {
    let ip = info.l3;
    let mut ip_delta = 0u64;
    let mut l4_delta = 0u64;
    if dec_ttl {
        let old = rd16(frame, ip + 8);
        let new = old.wrapping_sub(0x100);
        ip_delta += d16(old, new);
        wr16(frame, ip + 8, new);
    }
    if src.0 != info.src {
        let d = d32(u32::from(info.src), u32::from(src.0));
        ip_delta += d;
        l4_delta += d;
        wr32(frame, ip + 12, u32::from(src.0));
    }
    if dst.0 != info.dst {
        let d = d32(u32::from(info.dst), u32::from(dst.0));
        ip_delta += d;
        l4_delta += d;
        wr32(frame, ip + 16, u32::from(dst.0));
    }
    if ip_delta != 0 {
        let c = adjust(rd16(frame, ip + 10), ip_delta);
        wr16(frame, ip + 10, c);
    }
    rewrite_l4_per_field(frame, info, src.1, dst.1, l4_delta, csum);
}

/// The L4 half of a rewrite, shared by both families: new ports, and the
/// L4 checksum adjusted by `l4_delta` (the pseudo-header's address change)
/// plus the port changes.
#[inline(always)]
pub(crate) fn rewrite_l4<A>(
    frame: &mut [u8],
    info: &PacketInfo<A>,
    sport: u16,
    dport: u16,
    mut l4_delta: u64,
    csum: L4Csum,
) {
    let Some(csum_at) = l4_csum_offset(info.proto) else {
        return;
    };
    // the ports through one bounds check, the checksum through another
    // (as in `rewrite`; a frame cut inside the ports goes field by field),
    // the ports' only when one changes: DR keeps both (and the checksum),
    // and then two compares are all this costs
    #[inline(always)]
    fn ports_at(frame: &mut [u8], l4: usize) -> Option<&mut [u8; 4]> {
        frame.get_mut(l4..)?.first_chunk_mut::<4>()
    }
    if sport != info.sport {
        let Some(ports) = ports_at(frame, info.l4) else {
            return rewrite_l4_per_field(frame, info, sport, dport, l4_delta, csum);
        };
        l4_delta += d16(info.sport, sport);
        ports[..2].copy_from_slice(&sport.to_be_bytes());
        if dport != info.dport {
            l4_delta += d16(info.dport, dport);
            ports[2..].copy_from_slice(&dport.to_be_bytes());
        }
    } else if dport != info.dport {
        let Some(ports) = ports_at(frame, info.l4) else {
            return rewrite_l4_per_field(frame, info, sport, dport, l4_delta, csum);
        };
        l4_delta += d16(info.dport, dport);
        ports[2..].copy_from_slice(&dport.to_be_bytes());
    }
    if csum == L4Csum::Skip || l4_delta == 0 {
        return;
    }
    let Some(sum) = frame
        .get_mut(info.l4 + csum_at..)
        .and_then(|f| f.first_chunk_mut::<2>())
    else {
        return;
    };
    let old = u16::from_be_bytes(*sum);
    if info.proto == PROTO_UDP && old == 0 {
        return; // no checksum: stays none
    }
    let mut new = adjust(old, l4_delta);
    if info.proto == PROTO_UDP && new == 0 {
        new = 0xffff;
    }
    *sum = new.to_be_bytes();
}

/// [`rewrite_l4`] one field at a time (see [`rewrite_per_field`]).
#[cold]
fn rewrite_l4_per_field<A>(
    frame: &mut [u8],
    info: &PacketInfo<A>,
    sport: u16,
    dport: u16,
    mut l4_delta: u64,
    csum: L4Csum,
) {
    let Some(csum_at) = l4_csum_offset(info.proto) else {
        return;
    };
    if sport != info.sport {
        l4_delta += d16(info.sport, sport);
        wr16(frame, info.l4, sport);
    }
    if dport != info.dport {
        l4_delta += d16(info.dport, dport);
        wr16(frame, info.l4 + 2, dport);
    }
    if csum == L4Csum::Skip || l4_delta == 0 {
        return;
    }
    let at = info.l4 + csum_at;
    let old = rd16(frame, at);
    if info.proto == PROTO_UDP && old == 0 {
        return; // no checksum: stays none
    }
    let mut new = adjust(old, l4_delta);
    if info.proto == PROTO_UDP && new == 0 {
        new = 0xffff;
    }
    wr16(frame, at, new);
}

/// NAT request: destination VIP:vport → RIP:rport, TTL − 1.
pub fn nat_request(frame: &mut [u8], info: &PacketInfo, rip: Ipv4Addr, rport: u16, csum: L4Csum) {
    rewrite(
        frame,
        info,
        (info.src, info.sport),
        (rip, rport),
        true,
        csum,
    );
}

/// NAT reply: source RIP:rport → VIP:vport, TTL − 1.
pub fn nat_reply(frame: &mut [u8], info: &PacketInfo, vip: Ipv4Addr, vport: u16, csum: L4Csum) {
    rewrite(
        frame,
        info,
        (vip, vport),
        (info.dst, info.dport),
        true,
        csum,
    );
}

/// FULLNAT request: source CIP:cport → LIP:lport and destination
/// VIP:vport → RIP:rport, TTL − 1.
pub fn fullnat_request(
    frame: &mut [u8],
    info: &PacketInfo,
    local: (Ipv4Addr, u16),
    real: (Ipv4Addr, u16),
    csum: L4Csum,
) {
    rewrite(frame, info, local, real, true, csum);
}

/// FULLNAT reply: source RIP:rport → VIP:vport and destination
/// LIP:lport → CIP:cport, TTL − 1.
pub fn fullnat_reply(
    frame: &mut [u8],
    info: &PacketInfo,
    virt: (Ipv4Addr, u16),
    client: (Ipv4Addr, u16),
    csum: L4Csum,
) {
    rewrite(frame, info, virt, client, true, csum);
}

/// DR: the IP packet only loses one TTL (the data plane sets the Ethernet
/// destination to the real server's MAC).
pub fn dr_request(frame: &mut [u8], info: &PacketInfo) {
    rewrite(
        frame,
        info,
        (info.src, info.sport),
        (info.dst, info.dport),
        true,
        L4Csum::Skip,
    );
}

/// Why a TUN encapsulation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunError {
    /// Too big for the MTU with DF set: answer with frag-needed.
    FragNeeded,
    /// Too big for the MTU with DF clear: dropped.
    TooBig,
    /// No headroom for the outer header.
    NoHeadroom,
}

/// TUN: encapsulate the IP packet in IPIP from `outer_src` to `outer_dst`
/// (protocol 4, TTL 64, DSCP/ECN and DF copied, identification `ident`).
/// The Ethernet header (with its VLAN tags) moves to the new front;
/// Ethernet padding after the inner packet is dropped. The inner TTL is
/// decremented first (the caller has checked it is above 1).
///
/// If the outer packet would exceed `mtu`, nothing changes: with DF set
/// the caller answers with [`frag_needed`], otherwise the packet is dropped.
// Always inlined: its callers (one per family) would otherwise share an
// out-of-line copy, a call per TUN packet the IPv4-only build did not make.
#[inline(always)]
pub fn tun_encap<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    mtu: u16,
    ident: u16,
) -> Result<(), TunError> {
    let inner_len = info.ip_len();
    if inner_len + ipip::IPV4_HEADROOM > usize::from(mtu) {
        return Err(if info.dont_frag {
            TunError::FragNeeded
        } else {
            TunError::TooBig
        });
    }
    if pkt.len() < info.end {
        return Err(TunError::NoHeadroom);
    }
    pkt.truncate(info.end);
    if !pkt.prepend(ipip::IPV4_HEADROOM) {
        return Err(TunError::NoHeadroom);
    }
    let frame = pkt.data_mut();
    let l2 = info.l3;
    let inner = l2 + ipip::IPV4_HEADROOM;
    match frame.get(ipip::IPV4_HEADROOM..inner) {
        // untagged: a fixed-size move the compiler inlines
        Some(eth) if l2 == ETH_LEN => {
            let mut hdr = [0u8; ETH_LEN];
            hdr.copy_from_slice(eth);
            frame[..ETH_LEN].copy_from_slice(&hdr);
        }
        _ => frame.copy_within(ipip::IPV4_HEADROOM..inner, 0),
    }
    // The inner header was validated by `classify` (no options, lengths
    // consistent): write the outer header straight from what it found
    // rather than parse it again. TTL − 1 on the inner header, as IPVS
    // does before encapsulating.
    let ttl_proto = rd16(frame, inner + 8);
    let dec = ttl_proto.wrapping_sub(0x100);
    wr16(frame, inner + 8, dec);
    let c = adjust(rd16(frame, inner + 10), d16(ttl_proto, dec));
    wr16(frame, inner + 10, c);
    let tos = frame.get(inner + 1).copied().unwrap_or(0);
    // inner_len + 20 <= mtu (a u16), checked above
    let total = (inner_len + ipip::IPV4_HEADROOM) as u16;
    let outer = ipip::OuterIpv4 {
        src: outer_src,
        dst: outer_dst,
    };
    if let Some(hdr) = frame.get_mut(l2..inner) {
        outer.emit(hdr, total, tos, info.dont_frag, ident);
    }
    Ok(())
}

/// Replace the IP packet of `pkt` (keeping its Ethernet header) with an
/// ICMP error about it: `msg_type`/`code`/`rest`, from `src` to `dst`,
/// quoting its header and 8 bytes of payload ([`icmp::build_error`]).
/// False if no error may be sent about it (an ICMP error itself, RFC 1122)
/// or the buffer cannot hold it; then nothing changed.
pub fn icmp_error_in_place<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo,
    msg_type: u8,
    code: u8,
    rest: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> bool {
    let mut out = [0u8; ICMP_ERROR_MAX];
    let n = {
        let Some(orig) = pkt.data().get(info.l3..info.end) else {
            return false;
        };
        match icmp::build_error(orig, msg_type, code, rest, src, dst, &mut out) {
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
        (Some(dst_buf), Some(src_buf)) => {
            dst_buf.copy_from_slice(src_buf);
            true
        }
        _ => false,
    }
}

/// ICMP "fragmentation needed" (type 3 code 4) advertising `mtu - 20`
/// about a packet too big to tunnel, from the VIP (its destination) back
/// to the client (its source), in place. See [`icmp_error_in_place`].
pub fn frag_needed<P: PacketBuf>(pkt: &mut P, info: &PacketInfo, mtu: u16) -> bool {
    frag_needed_for(pkt, info, mtu, ipip::IPV4_HEADROOM)
}

/// [`frag_needed`] for a tunnel whose outer header is `overhead` bytes
/// (IPv4-in-IPv6: 40).
pub fn frag_needed_for<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo,
    mtu: u16,
    overhead: usize,
) -> bool {
    let next_hop_mtu = u32::from(mtu).saturating_sub(overhead as u32);
    icmp_error_in_place(
        pkt,
        info,
        icmp::TYPE_DEST_UNREACHABLE,
        icmp::CODE_FRAG_NEEDED,
        next_hop_mtu,
        info.dst,
        info.src,
    )
}

/// ICMP time exceeded in transit (type 11 code 0) for a request that
/// arrived with TTL ≤ 1, from the address it was sent to back to its
/// source, in place. See [`icmp_error_in_place`].
pub fn time_exceeded<P: PacketBuf>(pkt: &mut P, info: &PacketInfo) -> bool {
    icmp_error_in_place(
        pkt,
        info,
        icmp::TYPE_TIME_EXCEEDED,
        icmp::CODE_TTL_EXCEEDED,
        0,
        info.dst,
        info.src,
    )
}

/// Whether the ICMP message of an error packet verifies.
pub fn icmp_checksum_ok(frame: &[u8], info: &PacketInfo) -> bool {
    frame
        .get(info.l4..info.end)
        .is_some_and(|m| checksum::data(m) == 0xffff)
}

/// New addresses for an ICMP error and the packet it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpTranslation<A = Ipv4Addr> {
    /// Outer source address.
    pub outer_src: A,
    /// Outer destination address.
    pub outer_dst: A,
    /// Quoted source address and port.
    pub quote_src: (A, u16),
    /// Quoted destination address and port.
    pub quote_dst: (A, u16),
}

/// Translate an ICMP error about a connection (IPVS `ip_vs_nat_icmp`, and
/// DPVS for FULLNAT): the outer addresses, the quoted addresses and ports,
/// and every checksum: outer IP header, quoted IP header, quoted TCP/UDP
/// checksum when the quote holds it (the kernel leaves that one stale; we
/// keep it consistent), and the ICMP checksum. TTL − 1.
pub fn translate_icmp_error(
    frame: &mut [u8],
    info: &PacketInfo,
    q: &IcmpQuote,
    t: &IcmpTranslation,
) {
    // Outer header: addresses and TTL; ICMP has no pseudo header.
    let outer = PacketInfo {
        proto: PROTO_ICMP,
        ..*info
    };
    rewrite(
        frame,
        &outer,
        (t.outer_src, 0),
        (t.outer_dst, 0),
        true,
        L4Csum::Skip,
    );
    let mut icmp_delta = 0u64;
    let mut qip_delta = 0u64;
    let mut ql4_delta = 0u64;
    if t.quote_src.0 != q.src {
        let d = d32(u32::from(q.src), u32::from(t.quote_src.0));
        qip_delta += d;
        ql4_delta += d;
        wr32(frame, q.ip + 12, u32::from(t.quote_src.0));
    }
    if t.quote_dst.0 != q.dst {
        let d = d32(u32::from(q.dst), u32::from(t.quote_dst.0));
        qip_delta += d;
        ql4_delta += d;
        wr32(frame, q.ip + 16, u32::from(t.quote_dst.0));
    }
    icmp_delta += qip_delta;
    if qip_delta != 0 {
        let old = rd16(frame, q.ip + 10);
        let new = adjust(old, qip_delta);
        icmp_delta += d16(old, new);
        wr16(frame, q.ip + 10, new);
    }
    let mut port_delta = 0u64;
    if t.quote_src.1 != q.sport {
        port_delta += d16(q.sport, t.quote_src.1);
        wr16(frame, q.l4, t.quote_src.1);
    }
    if t.quote_dst.1 != q.dport {
        port_delta += d16(q.dport, t.quote_dst.1);
        wr16(frame, q.l4 + 2, t.quote_dst.1);
    }
    // Port changes are ICMP payload changes too.
    icmp_delta += port_delta;
    ql4_delta += port_delta;
    fix_quote_checksums(
        frame, q.proto, q.l4, info.end, info.l4, ql4_delta, icmp_delta,
    );
}

/// After an ICMP error's quoted packet was rewritten: fold `ql4_delta` into
/// the quoted L4 checksum (at `q_l4`, if it lies within `end`; a quoted UDP
/// checksum of 0 means none), and that change plus `icmp_delta` into the
/// ICMP (or ICMPv6) checksum of the error at `icmp_l4`. Shared by both
/// families.
pub(crate) fn fix_quote_checksums(
    frame: &mut [u8],
    q_proto: u8,
    q_l4: usize,
    end: usize,
    icmp_l4: usize,
    ql4_delta: u64,
    mut icmp_delta: u64,
) {
    if let Some(off) = l4_csum_offset(q_proto) {
        let at = q_l4 + off;
        if ql4_delta != 0 && at + 2 <= end {
            let old = rd16(frame, at);
            if !(q_proto == PROTO_UDP && old == 0) {
                let mut new = adjust(old, ql4_delta);
                if q_proto == PROTO_UDP && new == 0 {
                    new = 0xffff;
                }
                icmp_delta += d16(old, new);
                wr16(frame, at, new);
            }
        }
    }
    if icmp_delta != 0 {
        let at = icmp_l4 + 2;
        let c = adjust(rd16(frame, at), icmp_delta);
        wr16(frame, at, c);
    }
}

#[cfg(test)]
mod tests;
