//! Address families of the forwarding core.
//!
//! What: [`Family`], implemented by [`Ipv4Addr`] and [`Ipv6Addr`], is what
//! the director's per-packet path ([`crate::lb::director::CoreLb`]) needs to
//! know about a family: its connection-table key ([`Addr`]: `u32`/`u128`),
//! which of the core's two connection tables holds it, RSS ownership of its
//! tuples, the persistence netmask, and its wire operations (the rewrites
//! of [`crate::lb::fwd`] and [`crate::lb::fwd6`], TUN encapsulation, the
//! ICMP errors the director sends).
//!
//! Why: one copy of the director logic (lookup, schedule, state, counters,
//! redirects, templates) for both families, monomorphised, so the IPv4
//! path compiles to what it was: every family test here is a constant.
//!
//! Mixed families: an IPv6 connection whose real server is IPv4 (TUN
//! IPv6-in-IPv4) keeps that server as an IPv4-mapped address
//! (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) in the IPv6 table; such addresses
//! are never a real IPv6 destination, so the encoding is unambiguous.
//! IPv4 connections to IPv6 servers (IPv4-in-IPv6) cannot be held in the
//! IPv4 table and are refused per packet (`unsupported_dest`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::lb::conn::{Addr, Conn, ConnTable, ConnTable4, ConnTable6};
use crate::lb::fwd::{self, IcmpQuote, IcmpTranslation, L4Csum, PacketInfo, TunError, PROTO_ICMP};
use crate::lb::fwd6::{self, PROTO_ICMPV6};
use crate::lb::nat64;
use crate::lb::owner::RssOwner;
use crate::lb::packet::PacketBuf;
use crate::lb::persist::{Template, TemplateNote};
use crate::lb::service::PersistMask;
use crate::lb::types::FwdMethod;
use crate::wire::ipip;

/// An IP address family as the forwarding core sees it (see the module
/// docs).
pub trait Family: Copy + Eq + fmt::Debug + 'static {
    /// Its connection-table key.
    type Key: Addr;
    /// IPv6.
    const IS_V6: bool;
    /// The unspecified address.
    const UNSPECIFIED: Self;
    /// Its ICMP protocol number (no ICMP error is sent about an ICMP packet
    /// too big to tunnel).
    const ICMP_PROTO: u8;

    /// The connection-table key of an address.
    fn key(self) -> Self::Key;
    /// The address of a connection-table key.
    fn from_key(k: Self::Key) -> Self;
    /// As an [`IpAddr`].
    fn ip(self) -> IpAddr;
    /// An address of this family.
    fn of(ip: IpAddr) -> Option<Self>;
    /// How a real server at `ip` is recorded in a connection of this
    /// family forwarded by `method` (`None`: the family cannot carry it).
    fn real_of(ip: IpAddr, method: FwdMethod) -> Option<Self>;
    /// Where to send a packet for `self` (an IPv4-mapped real server is
    /// reached over IPv4).
    fn next_hop(self) -> IpAddr;
    /// A FULLNAT local address for a connection to `real`: of `real`'s
    /// family (IPv4-mapped for NAT64).
    fn local_of(ip: IpAddr, real: Self) -> Option<Self>;

    /// This family's table of a core's two.
    fn table<'a>(v4: &'a mut ConnTable4, v6: &'a mut ConnTable6) -> &'a mut ConnTable<Self::Key>;
    /// This family's table, shared.
    fn table_ref<'a>(v4: &'a ConnTable4, v6: &'a ConnTable6) -> &'a ConnTable<Self::Key>;

    /// Toeplitz hash of a TCP/UDP tuple of this family.
    fn rss_hash(rss: &RssOwner, src: Self, dst: Self, sport: u16, dport: u16) -> u32;
    /// The destination port's term of [`Family::rss_hash`] for tuples
    /// from `src` (the hash is linear:
    /// `hash(s, d, sp, dp) == hash(s, d, sp, 0) ^ term(dp)`).
    fn rss_dport_term(rss: &RssOwner, src: Self, dport: u16) -> u32;
    /// The core owning a TCP/UDP tuple.
    #[inline]
    fn owner(rss: &RssOwner, src: Self, dst: Self, sport: u16, dport: u16) -> u16 {
        rss.core_of_hash(Self::rss_hash(rss, src, dst, sport, dport))
    }

    /// A service's persistence granularity as a key mask (the other
    /// family's form means the whole address).
    fn persist_netmask(m: PersistMask) -> Self::Key;
    /// The address the ICMP rate limiter keys this peer on.
    fn limit_key(self) -> Ipv4Addr;

    /// Rewrite a TCP/UDP packet's addresses and ports (TTL/hop limit − 1
    /// with `dec_ttl`).
    fn rewrite(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        src: (Self, u16),
        dst: (Self, u16),
        dec_ttl: bool,
        csum: L4Csum,
    );
    /// ICMP time exceeded back to the packet's source, in place.
    fn time_exceeded<P: PacketBuf>(pkt: &mut P, info: &PacketInfo<Self>) -> bool;
    /// TUN: encapsulate toward `real` (an IPv4-mapped one over IPv4) from
    /// the core's tunnel source of the outer family. `Err` carries the
    /// outer header's length.
    fn tunnel<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        src4: Ipv4Addr,
        src6: Ipv6Addr,
        real: Self,
        mtu: u16,
        ident: u16,
    ) -> Result<(), (TunError, usize)>;
    /// The "too big" error for a packet that does not fit the tunnel
    /// (IPv4 frag-needed, ICMPv6 Packet Too Big), in place.
    fn too_big<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        mtu: u16,
        overhead: usize,
    ) -> bool;

    /// NAT64 (an IPv6 connection with IPv4-mapped ends): translate the
    /// packet to the other family with the new endpoints. `None`: not a
    /// NAT64 packet (always, for IPv4); `Some(false)`: no room.
    fn nat64<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        src: (Self, u16),
        dst: (Self, u16),
        csum: L4Csum,
        ident: u16,
    ) -> Option<bool>;
    /// NAT64: an ICMPv6 error from the client's side translated into
    /// ICMPv4 for the server, with the new outer and quoted endpoints
    /// (IPv4-mapped). False (never, for IPv4): untranslatable.
    fn nat64_icmp<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        outer: (Self, Self),
        quote_src: (Self, u16),
        quote_dst: (Self, u16),
    ) -> bool;
    /// Whether `self` is an IPv4 address in this family's connection
    /// (IPv4-mapped, for IPv6).
    fn is_mapped_v4(self) -> bool;

    /// The core's tunnel source of this family.
    fn tun_source(src4: Ipv4Addr, src6: Ipv6Addr) -> Self;
    /// The 4 bytes after the checksum of an error about one of our tunnel
    /// packets, as relayed to the client: a "too big" advertises the
    /// reported MTU minus the outer header, so the client's path MTU
    /// leaves room for the tunnel (as the kernel's `ip_vs_in_icmp`).
    fn tunnel_icmp_rest(frame: &[u8], info: &PacketInfo<Self>, q: &IcmpQuote<Self>) -> u32;
    /// Replace an error about one of our tunnel packets with the same
    /// error about the packet inside, from `src` to `dst`, with `rest`.
    fn relay_tunnel_icmp<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        rest: u32,
        src: Self,
        dst: Self,
    ) -> bool;

    /// Whether an ICMP error's checksum verifies.
    fn icmp_checksum_ok(frame: &[u8], info: &PacketInfo<Self>) -> bool;
    /// Translate an ICMP error about a connection, outer and quoted
    /// headers and every checksum.
    fn translate_icmp_error(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        t: &IcmpTranslation<Self>,
    );

    /// The IPv4 view of an IPv4 packet's info (`None` for IPv6): for the
    /// IPv4-only side paths (SYN proxy, fragments, sync).
    fn v4(info: &PacketInfo<Self>) -> Option<&PacketInfo<Ipv4Addr>>;
    /// The IPv4 view of an IPv4 connection.
    fn v4_conn(c: &Conn<Self::Key>) -> Option<&Conn<u32>>;
    /// The IPv4 view of an IPv4 ICMP quote.
    fn v4_quote(q: &IcmpQuote<Self>) -> Option<&IcmpQuote<Ipv4Addr>>;
    /// An IPv4 address (`None` for IPv6).
    fn to_v4(self) -> Option<Ipv4Addr>;
    /// A template of this family's table as a note for the other cores.
    fn template_note(t: Template<Self::Key>) -> TemplateNote;
}

impl Family for Ipv4Addr {
    type Key = u32;
    const IS_V6: bool = false;
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    const ICMP_PROTO: u8 = PROTO_ICMP;

    #[inline(always)]
    fn key(self) -> u32 {
        u32::from(self)
    }
    #[inline(always)]
    fn from_key(k: u32) -> Self {
        Ipv4Addr::from(k)
    }
    #[inline(always)]
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
    #[inline]
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    #[inline]
    fn real_of(ip: IpAddr, _method: FwdMethod) -> Option<Self> {
        Self::of(ip)
    }
    #[inline(always)]
    fn next_hop(self) -> IpAddr {
        IpAddr::V4(self)
    }
    #[inline]
    fn local_of(ip: IpAddr, _real: Self) -> Option<Self> {
        Self::of(ip)
    }
    #[inline(always)]
    fn table<'a>(v4: &'a mut ConnTable4, _v6: &'a mut ConnTable6) -> &'a mut ConnTable<u32> {
        v4
    }
    #[inline(always)]
    fn table_ref<'a>(v4: &'a ConnTable4, _v6: &'a ConnTable6) -> &'a ConnTable<u32> {
        v4
    }
    #[inline]
    fn rss_hash(rss: &RssOwner, src: Self, dst: Self, sport: u16, dport: u16) -> u32 {
        rss.hash_v4(src, dst, sport, dport)
    }
    #[inline]
    fn rss_dport_term(rss: &RssOwner, _src: Self, dport: u16) -> u32 {
        rss.dport_term(dport)
    }
    #[inline]
    fn owner(rss: &RssOwner, src: Self, dst: Self, sport: u16, dport: u16) -> u16 {
        rss.owner_v4(src, dst, sport, dport)
    }
    fn persist_netmask(m: PersistMask) -> u32 {
        match m {
            PersistMask::V4(m) => u32::from(m),
            PersistMask::V6(_) => u32::MAX,
        }
    }
    #[inline(always)]
    fn limit_key(self) -> Ipv4Addr {
        self
    }
    #[inline(always)]
    fn rewrite(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        src: (Self, u16),
        dst: (Self, u16),
        dec_ttl: bool,
        csum: L4Csum,
    ) {
        fwd::rewrite(frame, info, src, dst, dec_ttl, csum);
    }
    fn time_exceeded<P: PacketBuf>(pkt: &mut P, info: &PacketInfo<Self>) -> bool {
        fwd::time_exceeded(pkt, info)
    }
    #[inline(always)]
    fn tunnel<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        src4: Ipv4Addr,
        _src6: Ipv6Addr,
        real: Self,
        mtu: u16,
        ident: u16,
    ) -> Result<(), (TunError, usize)> {
        fwd::tun_encap(pkt, info, src4, real, mtu, ident).map_err(|e| (e, ipip::IPV4_HEADROOM))
    }
    fn too_big<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        mtu: u16,
        _overhead: usize,
    ) -> bool {
        fwd::frag_needed(pkt, info, mtu)
    }
    #[inline(always)]
    fn nat64<P: PacketBuf>(
        _pkt: &mut P,
        _info: &PacketInfo<Self>,
        _src: (Self, u16),
        _dst: (Self, u16),
        _csum: L4Csum,
        _ident: u16,
    ) -> Option<bool> {
        None
    }
    fn nat64_icmp<P: PacketBuf>(
        _pkt: &mut P,
        _info: &PacketInfo<Self>,
        _q: &IcmpQuote<Self>,
        _outer: (Self, Self),
        _quote_src: (Self, u16),
        _quote_dst: (Self, u16),
    ) -> bool {
        false
    }
    #[inline(always)]
    fn is_mapped_v4(self) -> bool {
        false
    }
    #[inline]
    fn tun_source(src4: Ipv4Addr, _src6: Ipv6Addr) -> Self {
        src4
    }
    fn tunnel_icmp_rest(frame: &[u8], info: &PacketInfo<Self>, q: &IcmpQuote<Self>) -> u32 {
        match (q.msg_type, q.code) {
            (crate::wire::icmp::TYPE_DEST_UNREACHABLE, crate::wire::icmp::CODE_FRAG_NEEDED) => {
                let mtu = u32::from(fwd::rd16(frame, info.l4 + 6));
                // As the kernel: only above the IPv4 minimum plus the header.
                if mtu > 68 + 20 {
                    mtu - 20
                } else {
                    mtu
                }
            }
            _ => fwd::rd32(frame, info.l4 + 4),
        }
    }
    fn relay_tunnel_icmp<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        rest: u32,
        src: Self,
        dst: Self,
    ) -> bool {
        fwd::relay_tunnel_icmp(pkt, info, q, rest, src, dst)
    }
    fn icmp_checksum_ok(frame: &[u8], info: &PacketInfo<Self>) -> bool {
        fwd::icmp_checksum_ok(frame, info)
    }
    fn translate_icmp_error(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        t: &IcmpTranslation<Self>,
    ) {
        fwd::translate_icmp_error(frame, info, q, t);
    }
    #[inline(always)]
    fn v4(info: &PacketInfo<Self>) -> Option<&PacketInfo<Ipv4Addr>> {
        Some(info)
    }
    #[inline(always)]
    fn v4_conn(c: &Conn<u32>) -> Option<&Conn<u32>> {
        Some(c)
    }
    #[inline(always)]
    fn v4_quote(q: &IcmpQuote<Self>) -> Option<&IcmpQuote<Ipv4Addr>> {
        Some(q)
    }
    #[inline(always)]
    fn to_v4(self) -> Option<Ipv4Addr> {
        Some(self)
    }
    fn template_note(t: Template<u32>) -> TemplateNote {
        TemplateNote::V4(t)
    }
}

impl Family for Ipv6Addr {
    type Key = u128;
    const IS_V6: bool = true;
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    const ICMP_PROTO: u8 = PROTO_ICMPV6;

    #[inline(always)]
    fn key(self) -> u128 {
        u128::from(self)
    }
    #[inline(always)]
    fn from_key(k: u128) -> Self {
        Ipv6Addr::from(k)
    }
    /// An IPv4-mapped address is the IPv4 address it stands for.
    #[inline]
    fn ip(self) -> IpAddr {
        self.next_hop()
    }
    #[inline]
    fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn real_of(ip: IpAddr, method: FwdMethod) -> Option<Self> {
        match (ip, method) {
            (IpAddr::V6(a), _) if a.to_ipv4_mapped().is_none() => Some(a),
            // IPv6-in-IPv4 tunnels and NAT64
            (IpAddr::V4(a), FwdMethod::Tunnel | FwdMethod::FullNat) => Some(a.to_ipv6_mapped()),
            _ => None,
        }
    }
    #[inline]
    fn next_hop(self) -> IpAddr {
        if is_mapped(self) {
            let o = self.octets();
            IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        } else {
            IpAddr::V6(self)
        }
    }
    fn local_of(ip: IpAddr, real: Self) -> Option<Self> {
        match (ip, real.is_mapped_v4()) {
            (IpAddr::V4(a), true) => Some(a.to_ipv6_mapped()),
            (IpAddr::V6(a), false) if !a.is_mapped_v4() => Some(a),
            _ => None,
        }
    }
    #[inline(always)]
    fn table<'a>(_v4: &'a mut ConnTable4, v6: &'a mut ConnTable6) -> &'a mut ConnTable<u128> {
        v6
    }
    #[inline(always)]
    fn table_ref<'a>(_v4: &'a ConnTable4, v6: &'a ConnTable6) -> &'a ConnTable<u128> {
        v6
    }
    /// NAT64's IPv4 side is hashed as the IPv4 tuple it is on the wire.
    #[inline]
    fn rss_hash(rss: &RssOwner, src: Self, dst: Self, sport: u16, dport: u16) -> u32 {
        match (src.to_ipv4_mapped(), dst.to_ipv4_mapped()) {
            (Some(s), Some(d)) => rss.hash_v4(s, d, sport, dport),
            _ => rss.table().hash_v6(&src, &dst, sport, dport),
        }
    }
    #[inline]
    fn rss_dport_term(rss: &RssOwner, src: Self, dport: u16) -> u32 {
        if src.is_mapped_v4() {
            return rss.dport_term(dport);
        }
        rss.table()
            .hash_v6(&Ipv6Addr::UNSPECIFIED, &Ipv6Addr::UNSPECIFIED, 0, dport)
    }
    fn persist_netmask(m: PersistMask) -> u128 {
        match m {
            PersistMask::V6(len) => u128::prefix_mask(len),
            // an IPv4 service's clients in mapped form (IPv4-in-IPv6 TUN)
            PersistMask::V4(m) => u128::MAX << 32 | u128::from(u32::from(m)),
        }
    }
    /// The XOR of the address's four words: peers of one /64 share some
    /// buckets, as the kernel's inetpeer keys whole addresses.
    fn limit_key(self) -> Ipv4Addr {
        let w = u128::from(self);
        Ipv4Addr::from((w >> 96) as u32 ^ (w >> 64) as u32 ^ (w >> 32) as u32 ^ w as u32)
    }
    fn rewrite(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        src: (Self, u16),
        dst: (Self, u16),
        dec_ttl: bool,
        csum: L4Csum,
    ) {
        fwd6::rewrite6(frame, info, src, dst, dec_ttl, csum);
    }
    fn time_exceeded<P: PacketBuf>(pkt: &mut P, info: &PacketInfo<Self>) -> bool {
        match wire_v4(info) {
            Some(wire) => fwd::time_exceeded(pkt, &wire),
            None => fwd6::time_exceeded6(pkt, info),
        }
    }
    fn tunnel<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        src4: Ipv4Addr,
        src6: Ipv6Addr,
        real: Self,
        mtu: u16,
        ident: u16,
    ) -> Result<(), (TunError, usize)> {
        let outer = if real.is_mapped_v4() {
            ipip::IPV4_HEADROOM
        } else {
            ipip::IPV6_HEADROOM
        };
        let done = match (wire_v4(info), real.to_ipv4_mapped()) {
            (Some(wire), Some(rip)) => fwd::tun_encap(pkt, &wire, src4, rip, mtu, ident),
            (Some(wire), None) => fwd6::tun_encap4_in6(pkt, &wire, src6, real, mtu),
            (None, Some(rip)) => fwd6::tun_encap6_in4(pkt, info, src4, rip, mtu, ident),
            (None, None) => fwd6::tun_encap6(pkt, info, src6, real, mtu),
        };
        done.map_err(|e| (e, outer))
    }
    fn too_big<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        mtu: u16,
        overhead: usize,
    ) -> bool {
        match wire_v4(info) {
            Some(wire) => fwd::frag_needed_for(pkt, &wire, mtu, overhead),
            None => fwd6::packet_too_big(pkt, info, mtu, overhead),
        }
    }
    #[inline(always)]
    fn nat64<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        src: (Self, u16),
        dst: (Self, u16),
        csum: L4Csum,
        ident: u16,
    ) -> Option<bool> {
        // an IPv6 flow (no IPv4-mapped source, before or after) is not
        // NAT64: checked here, inline, on every FULLNAT packet
        if !is_mapped(src.0) && !is_mapped(info.src) {
            return None;
        }
        nat64_translate(pkt, info, src, dst, csum, ident)
    }
    fn nat64_icmp<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        outer: (Self, Self),
        quote_src: (Self, u16),
        quote_dst: (Self, u16),
    ) -> bool {
        let v4 = |a: Self| a.to_ipv4_mapped();
        match (v4(outer.0), v4(outer.1), v4(quote_src.0), v4(quote_dst.0)) {
            (Some(os), Some(od), Some(qs), Some(qd)) => {
                nat64::icmp_6to4(pkt, info, q, (os, od), (qs, quote_src.1), (qd, quote_dst.1))
            }
            _ => false,
        }
    }
    #[inline(always)]
    fn is_mapped_v4(self) -> bool {
        is_mapped(self)
    }
    #[inline]
    fn tun_source(_src4: Ipv4Addr, src6: Ipv6Addr) -> Self {
        src6
    }
    /// Packet Too Big: the MTU less the 40-byte outer header, never below
    /// the IPv6 minimum of 1280.
    fn tunnel_icmp_rest(frame: &[u8], info: &PacketInfo<Self>, q: &IcmpQuote<Self>) -> u32 {
        let rest = fwd::rd32(frame, info.l4 + 4);
        if q.msg_type == crate::wire::icmpv6::TYPE_PACKET_TOO_BIG {
            let min = crate::wire::icmpv6::IPV6_MIN_MTU as u32;
            return rest.saturating_sub(ipip::IPV6_HEADROOM as u32).max(min);
        }
        rest
    }
    fn relay_tunnel_icmp<P: PacketBuf>(
        pkt: &mut P,
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        rest: u32,
        src: Self,
        dst: Self,
    ) -> bool {
        fwd6::relay_tunnel_icmp6(pkt, info, q, rest, src, dst)
    }
    fn icmp_checksum_ok(frame: &[u8], info: &PacketInfo<Self>) -> bool {
        fwd6::icmp6_checksum_ok(frame, info)
    }
    fn translate_icmp_error(
        frame: &mut [u8],
        info: &PacketInfo<Self>,
        q: &IcmpQuote<Self>,
        t: &IcmpTranslation<Self>,
    ) {
        fwd6::translate_icmp6_error(frame, info, q, t);
    }
    #[inline(always)]
    fn v4(_info: &PacketInfo<Self>) -> Option<&PacketInfo<Ipv4Addr>> {
        None
    }
    #[inline(always)]
    fn v4_conn(_c: &Conn<u128>) -> Option<&Conn<u32>> {
        None
    }
    #[inline(always)]
    fn v4_quote(_q: &IcmpQuote<Self>) -> Option<&IcmpQuote<Ipv4Addr>> {
        None
    }
    #[inline(always)]
    fn to_v4(self) -> Option<Ipv4Addr> {
        None
    }
    fn template_note(t: Template<u128>) -> TemplateNote {
        TemplateNote::V6(t)
    }
}

/// The IPv4 packet behind an IPv6 connection's info in IPv4-mapped form
/// (IPv4-in-IPv6 TUN, NAT64 replies), with its real addresses.
#[inline]
fn wire_v4(info: &PacketInfo<Ipv6Addr>) -> Option<PacketInfo<Ipv4Addr>> {
    match (info.src.to_ipv4_mapped(), info.dst.to_ipv4_mapped()) {
        (Some(s), Some(d)) => Some(info.with_addrs(s, d)),
        _ => None,
    }
}

/// Whether `a` is IPv4-mapped (`::ffff:0:0/96`), as `to_ipv4_mapped`:
/// its first 12 bytes compared as they lie (two loads), not converted to
/// a host-order `u128` first.
#[inline(always)]
fn is_mapped(a: Ipv6Addr) -> bool {
    const PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    a.octets()[..12] == PREFIX
}

/// [`Family::nat64`] of IPv6 for a flow with an IPv4-mapped end.
#[inline(never)]
fn nat64_translate<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo<Ipv6Addr>,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    csum: L4Csum,
    ident: u16,
) -> Option<bool> {
    let (s4, d4) = (src.0.to_ipv4_mapped(), dst.0.to_ipv4_mapped());
    let (i4, j4) = (info.src.to_ipv4_mapped(), info.dst.to_ipv4_mapped());
    match (s4, d4, i4, j4) {
        // a request: IPv6 on the wire, to IPv4 ends
        (Some(s), Some(d), None, None) => Some(nat64::request_6to4(
            pkt,
            info,
            (s, src.1),
            (d, dst.1),
            ident,
            csum,
        )),
        // a reply: IPv4 on the wire (its info in mapped form), to IPv6
        (None, None, Some(i), Some(j)) => {
            let wire = info.with_addrs(i, j);
            Some(nat64::reply_4to6(pkt, &wire, src, dst, csum))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_test_and_next_hop_agree_with_the_standard_library() {
        let addrs: [Ipv6Addr; 8] = [
            "::ffff:198.18.0.11".parse().unwrap(),
            "::ffff:0.0.0.0".parse().unwrap(),
            "::fffe:198.18.0.11".parse().unwrap(),
            "::1:ffff:198.18.0.11".parse().unwrap(),
            "100::ffff:198.18.0.11".parse().unwrap(),
            "2001:2::c612:b".parse().unwrap(),
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::from(u128::MAX),
        ];
        for a in addrs {
            assert_eq!(is_mapped(a), a.to_ipv4_mapped().is_some(), "{a}");
            assert_eq!(a.is_mapped_v4(), a.to_ipv4_mapped().is_some(), "{a}");
            let want = a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4);
            assert_eq!(a.next_hop(), want, "{a}");
            assert_eq!(a.ip(), want, "{a}");
        }
    }
}
