//! Traffic addressed to the director itself: ARP and IPv6 neighbor
//! discovery for its addresses and VIPs, ICMP and ICMPv6 echo to them. Pure
//! logic over a frame buffer, so it is tested on plain bytes; the worker
//! moves frames between mbufs and these functions. On a port with a kernel
//! twin, ARP requests, neighbor solicitations and pings for the director's
//! own addresses never get here: the kernel answers them (see
//! `exception`); VIPs are always answered here.
//!
//! # Neighbor discovery (RFC 4861), as ARP is done for IPv4
//!
//! - A Neighbor Solicitation is accepted when it passes §7.1.1 (hop limit
//!   255, code 0, ICMPv6 checksum, at least 24 bytes, target not
//!   multicast, every option of nonzero length; from the unspecified
//!   address only to a solicited-node group and without a source
//!   link-layer option), is sent to the target itself or to the target's
//!   solicited-node group (33:33:ff:xx:xx:xx on the wire), and its target
//!   is one of the port's addresses or VIPs. The answer is a Neighbor
//!   Advertisement from the target with R (vsd routes: NAT real servers
//!   use it as their gateway), S and O set and our MAC in a target
//!   link-layer option, sent to the solicitor's link-layer option or
//!   Ethernet source. A source link-layer option teaches us the solicitor
//!   (unconfirmed, like an ARP request). The reply is built in the
//!   received frame: the worker gives short ICMPv6 frames room for it
//!   ([`ND_REPLY_ROOM`]).
//! - DAD-safe: a probe from the unspecified source (Duplicate Address
//!   Detection) teaches nothing and is never answered with a solicited
//!   advertisement. For an address we own (or a VIP) it is defended as
//!   Linux does (`ndisc_recv_ns`): an advertisement to all-nodes (ff02::1)
//!   with S clear, so the prober sees the address in use
//!   (`nd_dad_defended`); for any other target it is dropped
//!   (`nd_not_for_us`): we never claim an address we do not own.
//! - A Neighbor Advertisement (§7.1.2 checks, S clear when sent to a
//!   group) teaches us the target's MAC (its target link-layer option, or
//!   the Ethernet source of a solicited one without the option); solicited
//!   and sent to us, it confirms the entry. One that claims one of our own
//!   addresses or VIPs, or a solicitation from one of them, is dropped
//!   (`nd_duplicate_address`).
//! - MLD queries (behind a Hop-by-Hop header) are answered for the port's
//!   solicited-node groups ([`super::mld`]). Everything else ICMPv6 to a
//!   multicast group (router advertisements, MLD reports, ...) is dropped
//!   here (`dst_multicast`; with a twin it went up before); ICMPv6 errors
//!   and echo replies to our addresses go to the forwarding path like
//!   ICMP ones.
//!
//! Echo requests to the director's addresses and VIPs are answered (hop
//! limit 64), both families, without a rate limit: Linux limits ICMP
//! errors (`icmp_ratemask`, `icmpv6 ratemask` 0-1,3-127), not echo replies,
//! and vsd's error limiter (`lb::icmp_limit`) follows it.
//!
//! Every port also owns its IPv6 link-local address (fe80::/64 from the
//! MAC's modified EUI-64, as the kernel forms it), so neighbours can
//! resolve it and it can source solicitations for link-local next hops.

use super::counters::{DropReason, Event, WorkerCounters};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::{
    self, ArpOperation, ArpPacket, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, MacAddr,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes a frame carrying a neighbor solicitation must have for the
/// advertisement to be built in place (Ethernet with one VLAN tag, IPv6,
/// the advertisement with its option). The worker appends room to shorter
/// ICMPv6 frames before handing them here.
pub const ND_REPLY_ROOM: usize = 14 + 4 + 40 + 32;

/// The director's identity on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAddrs {
    pub mac: MacAddr,
    /// Director addresses of both families with their prefix lengths; the
    /// IPv6 link-local address from the MAC is always among them.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Virtual service addresses announced on this port.
    pub vips: Vec<IpAddr>,
    /// Next hops for destinations off every connected subnet, at most one
    /// per address family.
    pub gateways: Vec<IpAddr>,
}

fn in_subnet(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = match prefix.min(32) {
                0 => 0,
                p => u32::MAX << (32 - u32::from(p)),
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = match prefix.min(128) {
                0 => 0,
                p => u128::MAX << (128 - u32::from(p)),
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

impl PortAddrs {
    /// A port's addresses: `addrs` plus the IPv6 link-local address formed
    /// from `mac` (unless listed already).
    pub fn new(
        mac: MacAddr,
        mut addrs: Vec<(IpAddr, u8)>,
        vips: Vec<IpAddr>,
        gateways: Vec<IpAddr>,
    ) -> Self {
        let ll = IpAddr::V6(icmpv6::link_local_from_mac(mac));
        if !addrs.iter().any(|(a, _)| *a == ll) {
            addrs.push((ll, 64));
        }
        PortAddrs {
            mac,
            addrs,
            vips,
            gateways,
        }
    }

    /// The port's IPv6 link-local address (from its MAC).
    pub fn link_local(&self) -> Ipv6Addr {
        icmpv6::link_local_from_mac(self.mac)
    }

    /// One of the director's own addresses on this port.
    #[inline]
    pub fn is_own(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|(a, _)| *a == ip)
    }

    /// An address the director answers for (own address or VIP).
    #[inline]
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.is_own(ip) || self.vips.contains(&ip)
    }

    /// Whether `ip` is on one of this port's connected subnets. Multicast,
    /// unspecified and IPv4-mapped IPv6 addresses never are.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        if let IpAddr::V6(a) = ip {
            if a.is_multicast() || a.is_unspecified() || a.to_ipv4_mapped().is_some() {
                return false;
            }
        }
        self.addrs.iter().any(|(a, p)| in_subnet(ip, *a, *p))
    }

    /// The gateway of `dst`'s address family, if the port has one.
    pub fn gateway_for(&self, dst: IpAddr) -> Option<IpAddr> {
        self.gateways
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == dst.is_ipv4())
    }

    /// Next hop towards `dst`: itself when on-link, else the gateway of
    /// its family.
    pub fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        if self.on_link(dst) {
            Some(dst)
        } else {
            self.gateway_for(dst)
        }
    }

    /// The director address to use as a source towards `dst`: one on
    /// `dst`'s subnet, else the first of its family (for IPv6 a global one
    /// before the link-local address; a link-local destination gets the
    /// link-local source, as RFC 6724 rule 2 picks).
    pub fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        let same_family = |a: &IpAddr| a.is_ipv4() == dst.is_ipv4();
        self.addrs
            .iter()
            .find(|(a, p)| in_subnet(dst, *a, *p))
            .or_else(|| {
                self.addrs
                    .iter()
                    .find(|(a, _)| same_family(a) && !is_link_local(*a))
            })
            .or_else(|| self.addrs.iter().find(|(a, _)| same_family(a)))
            .map(|(a, _)| *a)
    }
}

/// What to do with a frame after local handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    /// The frame is now a reply, complete with Ethernet header: send the
    /// first `len` bytes back out of the port it came in on.
    SendBack { len: usize },
    /// The frame is now an IP packet (first `len` bytes) to route to
    /// `next_hop`: resolve its MAC, set the Ethernet destination, send.
    Route { len: usize, next_hop: IpAddr },
    /// Fully handled (e.g. an ARP reply learned); free the frame.
    Consumed,
    /// A valid MLD query ([`super::mld`]): the worker answers it for the
    /// port's groups, then frees the frame.
    MldQuery,
    /// Not addressed to the director: the forwarding path's business.
    NotLocal,
    /// Drop and count.
    Drop(DropReason),
}

/// A neighbour the frame taught us: (address, MAC, was it an answer to us).
pub type Learned = Option<(IpAddr, MacAddr, bool)>;

/// Handle one received frame. `learned` is set when an ARP packet or a
/// neighbor discovery message tells us a neighbour's MAC.
pub fn handle_frame(
    frame: &mut [u8],
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    // The common case first, decided from fixed offsets: an untagged IPv4
    // TCP/UDP frame without options, or IPv6 TCP/UDP without extension
    // headers, sent to our MAC is never ours to answer (the slow path below
    // returns NotLocal for it too); the forwarding path validates it.
    if let Some(h) = frame.get(..24) {
        let tcp_udp = |p: u8| p == wire::IpProtocol::TCP.0 || p == wire::IpProtocol::UDP.0;
        if h[..6] == port.mac.0
            && ((h[12..14] == [0x08, 0x00] && h[14] == 0x45 && tcp_udp(h[23]))
                || (h[12..14] == [0x86, 0xdd] && tcp_udp(h[20])))
        {
            return LocalVerdict::NotLocal;
        }
    }
    let (l3, ethertype) = match wire::l3_offset(frame) {
        Ok(v) => v,
        Err(_) => return LocalVerdict::Drop(DropReason::BadEthernet),
    };
    let dst_mac = EthernetFrame::new_unchecked(&*frame).dst_addr();
    if dst_mac != port.mac && !dst_mac.is_broadcast() && !dst_mac.is_multicast() {
        return LocalVerdict::Drop(DropReason::NotForUs);
    }
    match ethertype {
        EtherType::ARP => handle_arp(frame, l3, port, counters, learned),
        EtherType::IPV4 => handle_ipv4(frame, l3, port, counters),
        EtherType::IPV6 => handle_ipv6(frame, l3, port, counters, learned),
        _ => LocalVerdict::Drop(DropReason::UnknownEthertype),
    }
}

fn handle_arp(
    frame: &mut [u8],
    l3: usize,
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    let Some(body) = frame.get_mut(l3..) else {
        return LocalVerdict::Drop(DropReason::BadArp);
    };
    let mut arp = match ArpPacket::new_checked(body) {
        Ok(a) => a,
        Err(_) => return LocalVerdict::Drop(DropReason::BadArp),
    };
    let sender_ip = arp.source_protocol_addr();
    let sender_mac = arp.source_hardware_addr();
    let target_ip = arp.target_protocol_addr();
    let valid_sender = !sender_ip.is_unspecified() && sender_mac.is_unicast();
    match arp.operation() {
        ArpOperation::Request => {
            counters.add(Event::ArpRequestsIn, 1);
            if arp.is_gratuitous() {
                if valid_sender && port.on_link(IpAddr::V4(sender_ip)) {
                    *learned = Some((IpAddr::V4(sender_ip), sender_mac, false));
                }
                return LocalVerdict::Consumed;
            }
            if !port.is_local(IpAddr::V4(target_ip)) {
                return LocalVerdict::Drop(DropReason::ArpNotForUs);
            }
            // Like Linux: a request for us also teaches us the requester.
            if valid_sender && port.on_link(IpAddr::V4(sender_ip)) {
                *learned = Some((IpAddr::V4(sender_ip), sender_mac, false));
            }
            arp.make_reply_in_place(port.mac);
            let mut eth = EthernetFrame::new_unchecked(&mut *frame);
            eth.set_dst_addr(sender_mac);
            eth.set_src_addr(port.mac);
            counters.add(Event::ArpRepliesOut, 1);
            LocalVerdict::SendBack {
                len: l3 + ArpPacket::<&[u8]>::LEN,
            }
        }
        ArpOperation::Reply => {
            counters.add(Event::ArpRepliesIn, 1);
            let to_us = port.is_own(IpAddr::V4(target_ip));
            if valid_sender && (to_us || arp.is_gratuitous()) {
                *learned = Some((IpAddr::V4(sender_ip), sender_mac, to_us));
                LocalVerdict::Consumed
            } else {
                LocalVerdict::Drop(DropReason::ArpNotForUs)
            }
        }
        _ => LocalVerdict::Drop(DropReason::BadArp),
    }
}

fn handle_ipv4(
    frame: &mut [u8],
    l3: usize,
    port: &PortAddrs,
    counters: &WorkerCounters,
) -> LocalVerdict {
    let Some(ip) = frame.get_mut(l3..) else {
        return LocalVerdict::Drop(DropReason::BadIpHeader);
    };
    let pkt = match Ipv4Packet::new_checked(&*ip) {
        Ok(p) => p,
        // the forwarding path validates in detail and counts the precise
        // reason (bad IHL, bad total length, ...)
        Err(_) => return LocalVerdict::NotLocal,
    };
    if !port.is_local(IpAddr::V4(pkt.dst_addr())) {
        return LocalVerdict::NotLocal;
    }
    if pkt.protocol() != wire::IpProtocol::ICMP {
        // TCP/UDP to a VIP, or to a director address used as a FULLNAT
        // local address, is the forwarding path's.
        return LocalVerdict::NotLocal;
    }
    if !pkt.verify_checksum() {
        return LocalVerdict::Drop(DropReason::BadIpChecksum);
    }
    if pkt.is_fragment() {
        return LocalVerdict::Drop(DropReason::IpFragment);
    }
    if pkt.has_options() {
        return LocalVerdict::Drop(DropReason::IpOptions);
    }
    let src = pkt.src_addr();
    match wire::icmp::Icmpv4Packet::new_checked(pkt.payload()) {
        Ok(icmp) if icmp.is_echo_request() => {}
        // errors about forwarded connections are translated by the
        // forwarding path; it drops what matches no connection
        Ok(_) => return LocalVerdict::NotLocal,
        Err(_) => return LocalVerdict::Drop(DropReason::BadIcmp),
    }
    counters.add(Event::IcmpEchoIn, 1);
    let Some(next_hop) = port.next_hop(IpAddr::V4(src)) else {
        return LocalVerdict::Drop(DropReason::NoRoute);
    };
    let total = match wire::icmp::ipv4_echo_reply_in_place(ip) {
        Ok(n) => n,
        Err(_) => return LocalVerdict::Drop(DropReason::BadIcmp),
    };
    EthernetFrame::new_unchecked(&mut *frame).set_src_addr(port.mac);
    counters.add(Event::IcmpEchoOut, 1);
    LocalVerdict::Route {
        len: l3 + total,
        next_hop,
    }
}

/// A neighbor discovery message that passed RFC 4861's validity checks.
struct NdMsg {
    msg_type: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    /// NA flags (R, S, O); 0 for a solicitation.
    flags: u8,
    /// The source (NS) or target (NA) link-layer address option.
    lladdr: Option<MacAddr>,
}

/// The checks of RFC 4861 §7.1.1 (solicitations) and §7.1.2
/// (advertisements) on an IPv6 packet whose next header is ICMPv6.
fn parse_nd(pkt: &Ipv6Packet<&[u8]>) -> Result<NdMsg, DropReason> {
    let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
    let body = pkt.payload();
    if body.len() < 24 {
        // type, code, checksum, reserved/flags and the target (§7.1)
        return Err(DropReason::BadNd);
    }
    let icmp = Icmpv6Packet::new_checked(body).map_err(|_| DropReason::BadIcmpv6)?;
    if !icmp.verify_checksum(&src, &dst) {
        return Err(DropReason::BadIcmpv6);
    }
    if pkt.hop_limit() != icmpv6::NDP_HOP_LIMIT || icmp.code() != 0 {
        return Err(DropReason::BadNd);
    }
    let (Some(target), Some(options)) = (icmp.target_addr(), body.get(24..)) else {
        return Err(DropReason::BadNd);
    };
    if target.is_multicast() || src.is_multicast() || !icmpv6::ndp_options_valid(options) {
        return Err(DropReason::BadNd);
    }
    let msg_type = icmp.msg_type();
    let (flags, lladdr) = if msg_type == icmpv6::TYPE_NEIGHBOR_SOLICIT {
        let sll = icmp.source_link_addr();
        // a DAD probe: to the solicited-node group, without a source
        // link-layer address (there is no address to bind it to)
        if src.is_unspecified() && (!icmpv6::is_solicited_node(&dst) || sll.is_some()) {
            return Err(DropReason::BadNd);
        }
        (0, sll)
    } else {
        let flags = icmp.na_flags();
        if dst.is_multicast() && flags & icmpv6::NA_FLAG_SOLICITED != 0 {
            return Err(DropReason::BadNd);
        }
        (flags, icmp.target_link_addr())
    };
    Ok(NdMsg {
        msg_type,
        src,
        dst,
        target,
        flags,
        lladdr,
    })
}

fn handle_ipv6(
    frame: &mut [u8],
    l3: usize,
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    let Some(ip) = frame.get(l3..) else {
        return LocalVerdict::NotLocal;
    };
    let pkt = match Ipv6Packet::new_checked(ip) {
        Ok(p) => p,
        // the forwarding path validates in detail and counts the reason
        Err(_) => return LocalVerdict::NotLocal,
    };
    if pkt.next_header() == wire::IpProtocol::HOP_BY_HOP && pkt.dst_addr().is_multicast() {
        // MLD queries behind their Router Alert; other packets the
        // forwarding path's
        return super::mld::classify(frame, l3, counters);
    }
    if pkt.next_header() != wire::IpProtocol::ICMPV6 {
        // TCP/UDP to a VIP or a FULLNAT local address, extension headers:
        // the forwarding path's
        return LocalVerdict::NotLocal;
    }
    let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
    // a group's frame must carry the group's MAC (33:33 + low 32 bits)
    let dst_mac = EthernetFrame::new_unchecked(&*frame).dst_addr();
    if dst_mac.is_multicast() && (!dst.is_multicast() || dst_mac != icmpv6::multicast_mac(&dst)) {
        return LocalVerdict::Drop(DropReason::NotForUs);
    }
    match pkt.payload().first().copied() {
        Some(icmpv6::TYPE_NEIGHBOR_SOLICIT | icmpv6::TYPE_NEIGHBOR_ADVERT) => {
            let nd = match parse_nd(&pkt) {
                Ok(nd) => nd,
                Err(r) => return LocalVerdict::Drop(r),
            };
            if nd.msg_type == icmpv6::TYPE_NEIGHBOR_SOLICIT {
                handle_ns(frame, l3, &nd, port, counters, learned)
            } else {
                handle_na(frame, &nd, port, counters, learned)
            }
        }
        _ if dst.is_multicast() => LocalVerdict::Drop(DropReason::DstMulticast),
        Some(icmpv6::TYPE_ECHO_REQUEST) if port.is_local(IpAddr::V6(dst)) => {
            if src.is_unspecified() || src.is_multicast() {
                return LocalVerdict::Drop(DropReason::BadIcmpv6);
            }
            if port.is_local(IpAddr::V6(src)) {
                // spoofed from ourselves: never answered (IPv4's
                // martian_src_local)
                return LocalVerdict::Drop(DropReason::MartianSrcLocal);
            }
            counters.add(Event::IcmpEchoIn, 1);
            let Some(next_hop) = port.next_hop(IpAddr::V6(src)) else {
                return LocalVerdict::Drop(DropReason::NoRoute);
            };
            let Some(ip) = frame.get_mut(l3..) else {
                return LocalVerdict::Drop(DropReason::BadIcmpv6);
            };
            let total = match icmpv6::ipv6_echo_reply_in_place(ip) {
                Ok(n) => n,
                Err(_) => return LocalVerdict::Drop(DropReason::BadIcmpv6),
            };
            EthernetFrame::new_unchecked(&mut *frame).set_src_addr(port.mac);
            counters.add(Event::IcmpEchoOut, 1);
            LocalVerdict::Route {
                len: l3 + total,
                next_hop,
            }
        }
        // errors about forwarded connections, echo replies, other types:
        // the forwarding path translates or drops them, as for ICMP
        _ => LocalVerdict::NotLocal,
    }
}

/// Answer a valid solicitation for one of our addresses (see the module
/// docs): in place, an advertisement back to the solicitor, or to
/// all-nodes when defending against a DAD probe.
fn handle_ns(
    frame: &mut [u8],
    l3: usize,
    nd: &NdMsg,
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    counters.add(Event::NdSolicitsIn, 1);
    let to_target = nd.dst == nd.target || nd.dst == icmpv6::solicited_node(&nd.target);
    if !to_target || !port.is_local(IpAddr::V6(nd.target)) {
        return LocalVerdict::Drop(DropReason::NdNotForUs);
    }
    let (flags, ip_dst, eth_dst) = if nd.src.is_unspecified() {
        // someone probes an address we hold: tell every node it is taken,
        // as Linux does (solicited clear, override set)
        counters.add(Event::NdDadDefended, 1);
        (
            icmpv6::NA_FLAG_ROUTER | icmpv6::NA_FLAG_OVERRIDE,
            icmpv6::ALL_NODES,
            icmpv6::multicast_mac(&icmpv6::ALL_NODES),
        )
    } else {
        if port.is_local(IpAddr::V6(nd.src)) {
            // another node soliciting from one of our addresses uses it:
            // never answer it there, nor learn our own address
            return LocalVerdict::Drop(DropReason::NdDuplicateAddress);
        }
        let src_mac = EthernetFrame::new_unchecked(&*frame).src_addr();
        if let Some(mac) = nd.lladdr {
            // like an ARP request: the solicitor, unconfirmed
            if mac.is_unicast() && port.on_link(IpAddr::V6(nd.src)) {
                *learned = Some((IpAddr::V6(nd.src), mac, false));
            }
        }
        (
            icmpv6::NA_FLAG_ROUTER | icmpv6::NA_FLAG_SOLICITED | icmpv6::NA_FLAG_OVERRIDE,
            nd.src,
            nd.lladdr.unwrap_or(src_mac),
        )
    };
    let Some(out) = frame.get_mut(l3..l3 + 72) else {
        return LocalVerdict::Drop(DropReason::NdNoRoom);
    };
    let len =
        match icmpv6::build_neighbor_advert(port.mac, nd.target, flags, nd.target, ip_dst, out) {
            Ok(n) => n,
            Err(_) => return LocalVerdict::Drop(DropReason::NdNoRoom),
        };
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(eth_dst);
    eth.set_src_addr(port.mac);
    counters.add(Event::NdAdvertsOut, 1);
    LocalVerdict::SendBack { len: l3 + len }
}

/// Learn from a valid advertisement (see the module docs).
fn handle_na(
    frame: &[u8],
    nd: &NdMsg,
    port: &PortAddrs,
    counters: &WorkerCounters,
    learned: &mut Learned,
) -> LocalVerdict {
    counters.add(Event::NdAdvertsIn, 1);
    let target = IpAddr::V6(nd.target);
    if port.is_local(target) {
        // another node claims an address of ours: never let it teach us
        return LocalVerdict::Drop(DropReason::NdDuplicateAddress);
    }
    let to_us = port.is_own(IpAddr::V6(nd.dst));
    if !(to_us || nd.dst == icmpv6::ALL_NODES) || !port.on_link(target) {
        return LocalVerdict::Drop(DropReason::NdNotForUs);
    }
    let solicited = to_us && nd.flags & icmpv6::NA_FLAG_SOLICITED != 0;
    let src_mac = EthernetFrame::new_unchecked(frame).src_addr();
    let mac = match nd.lladdr {
        Some(m) => Some(m),
        None if solicited => Some(src_mac),
        None => None,
    };
    if let Some(mac) = mac.filter(|m| m.is_unicast()) {
        *learned = Some((target, mac, solicited));
    }
    LocalVerdict::Consumed
}

/// Write an ARP request for `target` into `out` (at least 60 bytes: the
/// frame is padded to Ethernet's minimum). Returns the frame length.
pub fn build_arp_request(
    out: &mut [u8],
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<usize> {
    const FRAME: usize = 60;
    let out = out.get_mut(..FRAME)?;
    out.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(MacAddr::BROADCAST);
    eth.set_src_addr(our_mac);
    eth.set_ethertype(EtherType::ARP);
    let repr = wire::ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: our_mac,
        source_protocol_addr: our_ip,
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: target,
    };
    repr.emit(&mut out[14..]).ok()?;
    Some(FRAME)
}

/// Write a neighbor solicitation for `target` into `out` (at least 86
/// bytes): from `src`, to the target's solicited-node group (Ethernet
/// 33:33:ff:xx:xx:xx), or to the target itself at `unicast` for a probe of
/// a known neighbour. Returns the frame length.
pub fn build_nd_solicit(
    out: &mut [u8],
    our_mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
    unicast: Option<MacAddr>,
) -> Option<usize> {
    let (ip_dst, eth_dst) = match unicast {
        Some(mac) => (target, mac),
        None => {
            let group = icmpv6::solicited_node(&target);
            (group, icmpv6::multicast_mac(&group))
        }
    };
    let n =
        icmpv6::build_neighbor_solicit(our_mac, target, src, ip_dst, out.get_mut(14..)?).ok()?;
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(eth_dst);
    eth.set_src_addr(our_mac);
    eth.set_ethertype(EtherType::IPV6);
    Some(14 + n)
}

/// Write the request that resolves `target` on a port with `addrs` into
/// `out` (at least 86 bytes): an ARP request for IPv4, a neighbor
/// solicitation for IPv6, broadcast/multicast or, with `unicast`, a probe
/// to that MAC. `None` when the port has no address of the target's
/// family to send it from, or `out` is too small.
pub fn build_neighbor_request(
    out: &mut [u8],
    addrs: &PortAddrs,
    target: IpAddr,
    unicast: Option<MacAddr>,
) -> Option<usize> {
    match (target, addrs.source_for(target)?) {
        (IpAddr::V4(t), IpAddr::V4(src)) => {
            let n = build_arp_request(out, addrs.mac, src, t)?;
            if let Some(mac) = unicast {
                EthernetFrame::new_unchecked(&mut out[..n]).set_dst_addr(mac);
            }
            Some(n)
        }
        (IpAddr::V6(t), IpAddr::V6(src)) => build_nd_solicit(out, addrs.mac, src, t, unicast),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PacketBuilder;

    const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x55]);
    const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 5);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
    const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
    const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 5);

    fn port() -> PortAddrs {
        PortAddrs::new(
            OUR_MAC,
            vec![(IpAddr::V4(DIP), 24), (IpAddr::V6(DIP6), 64)],
            vec![IpAddr::V4(VIP), IpAddr::V6(VIP6)],
            vec![],
        )
    }

    /// One fixture: input frame, expected verdict, expected output bytes
    /// (for verdicts that send), expected learned neighbour.
    struct Case {
        name: &'static str,
        input: Vec<u8>,
        verdict: LocalVerdict,
        output: Option<Vec<u8>>,
        learned: Learned,
    }

    fn run(cases: Vec<Case>, port: &PortAddrs) {
        for c in cases {
            let counters = WorkerCounters::default();
            let mut frame = c.input.clone();
            let mut learned = None;
            let v = handle_frame(&mut frame, port, &counters, &mut learned);
            assert_eq!(v, c.verdict, "{}: verdict", c.name);
            assert_eq!(learned, c.learned, "{}: learned", c.name);
            if let Some(out) = c.output {
                let len = match v {
                    LocalVerdict::SendBack { len } | LocalVerdict::Route { len, .. } => len,
                    _ => unreachable!(),
                };
                assert_eq!(&frame[..len], &out[..], "{}: output bytes", c.name);
            }
        }
    }

    fn arp_request_to(target: Ipv4Addr) -> Vec<u8> {
        PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, PEER, target)
            .build()
    }

    fn arp_reply_from(ip: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
        PacketBuilder::ethernet(OUR_MAC, PEER_MAC)
            .arp_reply(OUR_MAC, ip, PEER_MAC, to)
            .build()
    }

    #[test]
    fn tcp_and_udp_go_to_the_forwarding_path_unless_not_for_our_mac() {
        let tcp = |dst: Ipv4Addr, mac: MacAddr| {
            PacketBuilder::ethernet(PEER_MAC, mac)
                .ipv4(FAR, dst)
                .tcp(40000, 80, crate::wire::tcp::ACK)
                .build()
        };
        let udp = |dst: Ipv4Addr| {
            PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                .ipv4(FAR, dst)
                .udp(40000, 53)
                .payload(b"q")
                .build()
        };
        let mut bad_csum = tcp(VIP, OUR_MAC);
        bad_csum[14 + 10] ^= 0xff;
        let cases = vec![
            (tcp(VIP, OUR_MAC), LocalVerdict::NotLocal),
            (tcp(DIP, OUR_MAC), LocalVerdict::NotLocal),
            (tcp(FAR, OUR_MAC), LocalVerdict::NotLocal),
            (udp(VIP), LocalVerdict::NotLocal),
            // the forwarding path validates and counts it
            (bad_csum, LocalVerdict::NotLocal),
            // broadcast takes the full path and ends the same way
            (tcp(VIP, MacAddr::BROADCAST), LocalVerdict::NotLocal),
            (
                tcp(VIP, OTHER_MAC),
                LocalVerdict::Drop(DropReason::NotForUs),
            ),
        ];
        for (i, (mut frame, want)) in cases.into_iter().enumerate() {
            let counters = WorkerCounters::default();
            let mut learned = None;
            let v = handle_frame(&mut frame, &port(), &counters, &mut learned);
            assert_eq!(v, want, "case {i}");
            assert_eq!(learned, None);
        }
    }

    fn echo(src: Ipv4Addr, dst: Ipv4Addr, dst_mac: MacAddr) -> PacketBuilder {
        PacketBuilder::ethernet(PEER_MAC, dst_mac)
            .ipv4(src, dst)
            .ttl(61)
            .ident(0x1234)
            .icmp_echo_request(0x77, 3)
            .payload(b"vsd ping payload")
    }

    fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        // the reply keeps the request's ident; TTL 64; MACs: ours as source,
        // the destination still the request's (the caller sets it after
        // resolving), i.e. our own MAC here.
        PacketBuilder::ethernet(OUR_MAC, OUR_MAC)
            .ipv4(src, dst)
            .ttl(64)
            .ident(0x1234)
            .icmp_echo_reply(0x77, 3)
            .payload(b"vsd ping payload")
            .build()
    }

    #[test]
    fn arp_fixtures() {
        let mut bad_htype = arp_request_to(DIP);
        bad_htype[14] = 0;
        bad_htype[15] = 6; // IEEE 802 hardware type: not ours
        let gratuitous = PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, PEER, PEER)
            .build();
        run(
            vec![
                Case {
                    name: "request for director address",
                    input: arp_request_to(DIP),
                    verdict: LocalVerdict::SendBack { len: 42 },
                    output: Some(arp_reply_from(DIP, PEER)),
                    learned: Some((IpAddr::V4(PEER), PEER_MAC, false)),
                },
                Case {
                    name: "request for VIP",
                    input: arp_request_to(VIP),
                    verdict: LocalVerdict::SendBack { len: 42 },
                    output: Some(arp_reply_from(VIP, PEER)),
                    learned: Some((IpAddr::V4(PEER), PEER_MAC, false)),
                },
                Case {
                    name: "request for someone else",
                    input: arp_request_to(Ipv4Addr::new(198, 18, 0, 77)),
                    verdict: LocalVerdict::Drop(DropReason::ArpNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "reply to our request",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .arp_reply(PEER_MAC, PEER, OUR_MAC, DIP)
                        .build(),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((IpAddr::V4(PEER), PEER_MAC, true)),
                },
                Case {
                    name: "gratuitous announcement",
                    input: gratuitous,
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((IpAddr::V4(PEER), PEER_MAC, false)),
                },
                Case {
                    name: "non-Ethernet ARP",
                    input: bad_htype,
                    verdict: LocalVerdict::Drop(DropReason::BadArp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "truncated ARP",
                    input: arp_request_to(DIP)[..30].to_vec(),
                    verdict: LocalVerdict::Drop(DropReason::BadArp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "unicast to another MAC",
                    input: PacketBuilder::ethernet(PEER_MAC, OTHER_MAC)
                        .arp_request(PEER_MAC, PEER, DIP)
                        .build(),
                    verdict: LocalVerdict::Drop(DropReason::NotForUs),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
    }

    #[test]
    fn icmp_fixtures() {
        let padded = echo(PEER, VIP, OUR_MAC).pad_to(120).build();
        let mut bad_csum = echo(PEER, DIP, OUR_MAC).build();
        bad_csum[24] ^= 0xff; // IP header checksum
        let mut bad_icmp = echo(PEER, DIP, OUR_MAC).build();
        bad_icmp[36] ^= 0xff; // ICMP checksum
        run(
            vec![
                Case {
                    name: "echo to director address",
                    input: echo(PEER, DIP, OUR_MAC).build(),
                    verdict: LocalVerdict::Route {
                        len: 14 + 20 + 8 + 16,
                        next_hop: IpAddr::V4(PEER),
                    },
                    output: Some(echo_reply(DIP, PEER)),
                    learned: None,
                },
                Case {
                    name: "echo to VIP, Ethernet padding dropped",
                    input: padded,
                    verdict: LocalVerdict::Route {
                        len: 58,
                        next_hop: IpAddr::V4(PEER),
                    },
                    output: Some(echo_reply(VIP, PEER)),
                    learned: None,
                },
                Case {
                    name: "echo from off-link without a gateway",
                    input: echo(FAR, DIP, OUR_MAC).build(),
                    verdict: LocalVerdict::Drop(DropReason::NoRoute),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "bad IP checksum",
                    input: bad_csum,
                    verdict: LocalVerdict::Drop(DropReason::BadIpChecksum),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "bad ICMP checksum",
                    input: bad_icmp,
                    verdict: LocalVerdict::Drop(DropReason::BadIcmp),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "fragment",
                    input: echo(PEER, DIP, OUR_MAC).fragment(true, 0).build(),
                    verdict: LocalVerdict::Drop(DropReason::IpFragment),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "echo reply is not answered, forwarding path decides",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, DIP)
                        .icmp_echo_reply(1, 1)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "not addressed to us",
                    input: echo(PEER, Ipv4Addr::new(198, 18, 0, 50), OUR_MAC).build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "TCP to the VIP goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, VIP)
                        .tcp(40000, 80, 0x02)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "UDP to a director address goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv4(PEER, DIP)
                        .udp(40000, 53)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "truncated IPv4 goes to the forwarding path's checks",
                    input: echo(PEER, DIP, OUR_MAC).build()[..30].to_vec(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "runt frame",
                    input: vec![0xff; 10],
                    verdict: LocalVerdict::Drop(DropReason::BadEthernet),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
    }

    #[test]
    fn off_link_uses_gateway_and_source_selection() {
        let mut p = port();
        let v4 = IpAddr::V4;
        p.gateways = vec![v4(GW)];
        p.addrs.push((v4(Ipv4Addr::new(198, 19, 0, 1)), 16));
        assert_eq!(
            p.next_hop(v4(FAR)),
            Some(v4(FAR)),
            "198.19/16 is on-link now"
        );
        assert_eq!(p.next_hop(v4(Ipv4Addr::new(198, 20, 0, 1))), Some(v4(GW)));
        assert_eq!(
            p.source_for(v4(FAR)),
            Some(v4(Ipv4Addr::new(198, 19, 0, 1)))
        );
        assert_eq!(p.source_for(v4(PEER)), Some(v4(DIP)));
    }

    #[test]
    fn arp_request_builder() {
        let mut buf = [0u8; 64];
        let n = build_arp_request(&mut buf, OUR_MAC, DIP, PEER).unwrap();
        assert_eq!(n, 60);
        let expect = PacketBuilder::ethernet(OUR_MAC, MacAddr::BROADCAST)
            .arp_request(OUR_MAC, DIP, PEER)
            .pad_to(60)
            .build();
        assert_eq!(&buf[..n], &expect[..]);
        assert!(build_arp_request(&mut [0u8; 59], OUR_MAC, DIP, PEER).is_none());
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let p = port();
        let c = WorkerCounters::default();
        let base = echo(PEER, DIP, OUR_MAC).build();
        for i in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut f = if i % 2 == 0 {
                base.clone()
            } else {
                arp_request_to(VIP)
            };
            let len = (seed as usize) % (f.len() + 1);
            f.truncate(len);
            for k in 0..4 {
                if !f.is_empty() {
                    let at = ((seed >> (8 * k)) as usize) % f.len();
                    f[at] = (seed >> (16 + k)) as u8;
                }
            }
            let mut l = None;
            let _ = handle_frame(&mut f, &p, &c, &mut l);
        }
    }

    // ---- IPv6: neighbor discovery and echo ----

    const SOL_DIP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    const SOL_MAC_DIP6: MacAddr = MacAddr([0x33, 0x33, 0xff, 0, 0, 1]);
    const ALL_NODES_MAC: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    const RSO: u8 = 0xe0;

    /// A frame as the worker hands it over: short ICMPv6 frames padded to
    /// [`ND_REPLY_ROOM`].
    fn room(b: PacketBuilder) -> Vec<u8> {
        b.pad_to(ND_REPLY_ROOM).build()
    }

    fn ns(src: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr, target: Ipv6Addr) -> PacketBuilder {
        PacketBuilder::ethernet(PEER_MAC, dst_mac)
            .ipv6(src, dst)
            .neighbor_solicit(target, (!src.is_unspecified()).then_some(PEER_MAC))
    }

    fn na_from_us(target: Ipv6Addr, flags: u8, dst: Ipv6Addr, dst_mac: MacAddr) -> Vec<u8> {
        PacketBuilder::ethernet(OUR_MAC, dst_mac)
            .ipv6(target, dst)
            .neighbor_advert(flags, target, Some(OUR_MAC))
            .build()
    }

    fn na_to_us(flags: u8, dst: Ipv6Addr, dst_mac: MacAddr, tll: Option<MacAddr>) -> PacketBuilder {
        PacketBuilder::ethernet(PEER_MAC, dst_mac)
            .ipv6(PEER6, dst)
            .neighbor_advert(flags, PEER6, tll)
    }

    /// Recompute an ICMPv6 checksum from scratch over the pseudo header.
    fn icmpv6_checksum_ok(frame: &[u8]) -> bool {
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let mut sum = Vec::new();
        sum.extend_from_slice(&ip.src_addr().octets());
        sum.extend_from_slice(&ip.dst_addr().octets());
        sum.extend_from_slice(&(ip.payload().len() as u32).to_be_bytes());
        sum.extend_from_slice(&[0, 0, 0, 58]);
        sum.extend_from_slice(ip.payload());
        wire::checksum::checksum(&sum) == 0
    }

    #[test]
    fn neighbor_solicitations_are_answered_for_own_addresses_and_vips() {
        let ll = port().link_local();
        let v6 = IpAddr::V6;
        run(
            vec![
                Case {
                    name: "multicast NS for the director address",
                    input: room(ns(PEER6, SOL_DIP6, SOL_MAC_DIP6, DIP6)),
                    verdict: LocalVerdict::SendBack { len: 86 },
                    output: Some(na_from_us(DIP6, RSO, PEER6, PEER_MAC)),
                    learned: Some((v6(PEER6), PEER_MAC, false)),
                },
                Case {
                    name: "unicast NS for a VIP without a source option",
                    input: room(
                        PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                            .ipv6(PEER6, VIP6)
                            .neighbor_solicit(VIP6, None),
                    ),
                    verdict: LocalVerdict::SendBack { len: 86 },
                    output: Some(na_from_us(VIP6, RSO, PEER6, PEER_MAC)),
                    learned: None,
                },
                Case {
                    name: "NS for the link-local address from a link-local source",
                    input: room(ns(
                        "fe80::99".parse().unwrap(),
                        icmpv6::solicited_node(&ll),
                        icmpv6::multicast_mac(&icmpv6::solicited_node(&ll)),
                        ll,
                    )),
                    verdict: LocalVerdict::SendBack { len: 86 },
                    output: Some(na_from_us(ll, RSO, "fe80::99".parse().unwrap(), PEER_MAC)),
                    learned: Some((v6("fe80::99".parse().unwrap()), PEER_MAC, false)),
                },
                Case {
                    name: "NS for someone else",
                    input: room(ns(
                        PEER6,
                        icmpv6::solicited_node(&FAR6),
                        icmpv6::multicast_mac(&icmpv6::solicited_node(&FAR6)),
                        FAR6,
                    )),
                    verdict: LocalVerdict::Drop(DropReason::NdNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "NS to another target's group",
                    input: room(ns(
                        PEER6,
                        icmpv6::solicited_node(&VIP6),
                        icmpv6::multicast_mac(&icmpv6::solicited_node(&VIP6)),
                        DIP6,
                    )),
                    verdict: LocalVerdict::Drop(DropReason::NdNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "group address in a frame for another group's MAC",
                    input: room(ns(
                        PEER6,
                        SOL_DIP6,
                        MacAddr([0x33, 0x33, 0xff, 0, 0, 9]),
                        DIP6,
                    )),
                    verdict: LocalVerdict::Drop(DropReason::NotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "no room for the advertisement (not padded by the worker)",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv6(PEER6, VIP6)
                        .neighbor_solicit(VIP6, None)
                        .build(),
                    verdict: LocalVerdict::Drop(DropReason::NdNoRoom),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
        // the answer's checksum, recomputed from scratch
        let mut f = room(ns(PEER6, SOL_DIP6, SOL_MAC_DIP6, DIP6));
        let c = WorkerCounters::default();
        let v = handle_frame(&mut f, &port(), &c, &mut None);
        let LocalVerdict::SendBack { len } = v else {
            panic!("{v:?}")
        };
        assert!(icmpv6_checksum_ok(&f[..len]));
        assert_eq!(c.event(Event::NdSolicitsIn), 1);
        assert_eq!(c.event(Event::NdAdvertsOut), 1);
    }

    #[test]
    fn dad_probes_are_defended_for_our_addresses_and_never_claimed_otherwise() {
        let unspec = Ipv6Addr::UNSPECIFIED;
        let far_group = icmpv6::solicited_node(&FAR6);
        run(
            vec![
                Case {
                    name: "DAD probe for the director address: NA to all-nodes, S clear",
                    input: room(ns(unspec, SOL_DIP6, SOL_MAC_DIP6, DIP6)),
                    verdict: LocalVerdict::SendBack { len: 86 },
                    output: Some(na_from_us(DIP6, 0xa0, icmpv6::ALL_NODES, ALL_NODES_MAC)),
                    learned: None,
                },
                Case {
                    name: "DAD probe for an address we do not hold",
                    input: room(ns(
                        unspec,
                        far_group,
                        icmpv6::multicast_mac(&far_group),
                        FAR6,
                    )),
                    verdict: LocalVerdict::Drop(DropReason::NdNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "NS from one of our own addresses",
                    input: room(ns(VIP6, SOL_DIP6, SOL_MAC_DIP6, DIP6)),
                    verdict: LocalVerdict::Drop(DropReason::NdDuplicateAddress),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "DAD probe with a source link-layer option is invalid",
                    input: room(
                        PacketBuilder::ethernet(PEER_MAC, SOL_MAC_DIP6)
                            .ipv6(unspec, SOL_DIP6)
                            .neighbor_solicit(DIP6, Some(PEER_MAC)),
                    ),
                    verdict: LocalVerdict::Drop(DropReason::BadNd),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "DAD probe sent to the unicast target is invalid",
                    input: room(ns(unspec, DIP6, OUR_MAC, DIP6)),
                    verdict: LocalVerdict::Drop(DropReason::BadNd),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
        let c = WorkerCounters::default();
        let mut f = room(ns(unspec, SOL_DIP6, SOL_MAC_DIP6, DIP6));
        let _ = handle_frame(&mut f, &port(), &c, &mut None);
        assert_eq!(c.event(Event::NdDadDefended), 1);
        assert!(icmpv6_checksum_ok(&f[..86]));
    }

    #[test]
    fn malformed_nd_is_dropped_and_counted() {
        let ns_good = || ns(PEER6, SOL_DIP6, SOL_MAC_DIP6, DIP6);
        let mut bad_csum = room(ns_good());
        bad_csum[14 + 40 + 2] ^= 0xff;
        let mut zero_option = room(ns_good());
        zero_option[14 + 40 + 24 + 1] = 0;
        // checksum made right again, so only the option length is wrong
        let fix = |f: &mut Vec<u8>| {
            let (src, dst) = {
                let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
                (ip.src_addr(), ip.dst_addr())
            };
            let n = 14 + 40 + usize::from(u16::from_be_bytes([f[18], f[19]]));
            Icmpv6Packet::new_unchecked(&mut f[54..n]).fill_checksum(&src, &dst);
        };
        fix(&mut zero_option);
        let mut code1 = room(ns_good());
        code1[14 + 40 + 1] = 1;
        fix(&mut code1);
        let drops = [
            ("bad checksum", bad_csum, DropReason::BadIcmpv6),
            ("zero-length option", zero_option, DropReason::BadNd),
            ("code 1", code1, DropReason::BadNd),
            ("hop limit 64", room(ns_good().ttl(64)), DropReason::BadNd),
            (
                "multicast target",
                room(ns(
                    PEER6,
                    SOL_DIP6,
                    SOL_MAC_DIP6,
                    "ff02::1:ff00:1".parse().unwrap(),
                )),
                DropReason::BadNd,
            ),
            (
                "NS shorter than 24 bytes",
                room(
                    PacketBuilder::ethernet(PEER_MAC, SOL_MAC_DIP6)
                        .ipv6(PEER6, SOL_DIP6)
                        .ttl(255)
                        .icmpv6(135, 0, 0)
                        .payload(&[0; 8]),
                ),
                DropReason::BadNd,
            ),
            (
                "ICMPv6 shorter than its header, to a group",
                room(
                    PacketBuilder::ethernet(PEER_MAC, SOL_MAC_DIP6)
                        .ipv6(PEER6, SOL_DIP6)
                        .ip_proto(wire::IpProtocol::ICMPV6)
                        .payload(&[135, 0, 0]),
                ),
                DropReason::BadNd,
            ),
            (
                "echo request shorter than its header",
                PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                    .ipv6(PEER6, DIP6)
                    .ip_proto(wire::IpProtocol::ICMPV6)
                    .payload(&[128, 0, 0])
                    .build(),
                DropReason::BadIcmpv6,
            ),
            (
                "multicast source",
                room(ns("ff02::5".parse().unwrap(), SOL_DIP6, SOL_MAC_DIP6, DIP6)),
                DropReason::BadNd,
            ),
            (
                "solicited NA to a group",
                room(na_to_us(
                    0x60,
                    icmpv6::ALL_NODES,
                    ALL_NODES_MAC,
                    Some(PEER_MAC),
                )),
                DropReason::BadNd,
            ),
        ];
        for (name, mut f, want) in drops {
            let c = WorkerCounters::default();
            let mut learned = None;
            let v = handle_frame(&mut f, &port(), &c, &mut learned);
            assert_eq!(v, LocalVerdict::Drop(want), "{name}");
            assert_eq!(learned, None, "{name}");
            assert_eq!(c.event(Event::NdAdvertsOut), 0, "{name}");
        }
    }

    #[test]
    fn neighbor_advertisements_teach_us() {
        let v6 = IpAddr::V6;
        run(
            vec![
                Case {
                    name: "solicited NA to our address",
                    input: room(na_to_us(
                        0x60,
                        DIP6,
                        OUR_MAC,
                        Some(MacAddr([2, 0, 0, 0, 0, 0x77])),
                    )),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((v6(PEER6), MacAddr([2, 0, 0, 0, 0, 0x77]), true)),
                },
                Case {
                    name: "solicited NA without the option: the frame's source",
                    input: room(na_to_us(0x40, DIP6, OUR_MAC, None)),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((v6(PEER6), PEER_MAC, true)),
                },
                Case {
                    name: "unsolicited NA to all-nodes",
                    input: room(na_to_us(
                        0x20,
                        icmpv6::ALL_NODES,
                        ALL_NODES_MAC,
                        Some(PEER_MAC),
                    )),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: Some((v6(PEER6), PEER_MAC, false)),
                },
                Case {
                    name: "unsolicited NA without the option teaches nothing",
                    input: room(na_to_us(0x20, icmpv6::ALL_NODES, ALL_NODES_MAC, None)),
                    verdict: LocalVerdict::Consumed,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "NA claiming our address",
                    input: room(
                        PacketBuilder::ethernet(PEER_MAC, ALL_NODES_MAC)
                            .ipv6(PEER6, icmpv6::ALL_NODES)
                            .neighbor_advert(0x20, DIP6, Some(PEER_MAC)),
                    ),
                    verdict: LocalVerdict::Drop(DropReason::NdDuplicateAddress),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "NA for an off-link target",
                    input: room(
                        PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                            .ipv6(PEER6, DIP6)
                            .neighbor_advert(0x60, FAR6, Some(PEER_MAC)),
                    ),
                    verdict: LocalVerdict::Drop(DropReason::NdNotForUs),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "NA to someone else's unicast address",
                    input: room(na_to_us(0x60, FAR6, OUR_MAC, Some(PEER_MAC))),
                    verdict: LocalVerdict::Drop(DropReason::NdNotForUs),
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
    }

    fn echo6(src: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr) -> PacketBuilder {
        PacketBuilder::ethernet(PEER_MAC, dst_mac)
            .ipv6(src, dst)
            .ttl(61)
            .icmpv6_echo_request(0x77, 3)
            .payload(b"vsd ping6 payload")
    }

    fn echo6_reply(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        PacketBuilder::ethernet(OUR_MAC, OUR_MAC)
            .ipv6(src, dst)
            .ttl(64)
            .icmpv6_echo_reply(0x77, 3)
            .payload(b"vsd ping6 payload")
            .build()
    }

    #[test]
    fn icmpv6_echo_fixtures() {
        let v6 = IpAddr::V6;
        let mut bad = echo6(PEER6, DIP6, OUR_MAC).build();
        bad[14 + 40 + 2] ^= 0xff;
        let mut gw = port();
        gw.gateways = vec![IpAddr::V4(GW), v6("fe80::1".parse().unwrap())];
        run(
            vec![
                Case {
                    name: "echo to the director address",
                    input: echo6(PEER6, DIP6, OUR_MAC).build(),
                    verdict: LocalVerdict::Route {
                        len: 14 + 40 + 8 + 17,
                        next_hop: v6(PEER6),
                    },
                    output: Some(echo6_reply(DIP6, PEER6)),
                    learned: None,
                },
                Case {
                    name: "echo to a VIP, Ethernet padding dropped",
                    input: echo6(PEER6, VIP6, OUR_MAC).pad_to(120).build(),
                    verdict: LocalVerdict::Route {
                        len: 79,
                        next_hop: v6(PEER6),
                    },
                    output: Some(echo6_reply(VIP6, PEER6)),
                    learned: None,
                },
                Case {
                    name: "echo from off-link without a gateway",
                    input: echo6(FAR6, DIP6, OUR_MAC).build(),
                    verdict: LocalVerdict::Drop(DropReason::NoRoute),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "bad ICMPv6 checksum",
                    input: bad,
                    verdict: LocalVerdict::Drop(DropReason::BadIcmpv6),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "echo from one of our own addresses",
                    input: echo6(VIP6, DIP6, OUR_MAC).build(),
                    verdict: LocalVerdict::Drop(DropReason::MartianSrcLocal),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "echo to all-nodes",
                    input: echo6(PEER6, icmpv6::ALL_NODES, ALL_NODES_MAC).build(),
                    verdict: LocalVerdict::Drop(DropReason::DstMulticast),
                    output: None,
                    learned: None,
                },
                Case {
                    name: "echo to someone else",
                    input: echo6(PEER6, FAR6, OUR_MAC).build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "TCP to the VIP goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv6(PEER6, VIP6)
                        .tcp(40000, 80, 0x02)
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "an ICMPv6 error to the director goes to forwarding",
                    input: PacketBuilder::ethernet(PEER_MAC, OUR_MAC)
                        .ipv6(PEER6, DIP6)
                        .icmpv6(1, 4, 0)
                        .payload(&[0x60; 48])
                        .build(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
                Case {
                    name: "truncated IPv6 goes to the forwarding path's checks",
                    input: echo6(PEER6, DIP6, OUR_MAC).build()[..50].to_vec(),
                    verdict: LocalVerdict::NotLocal,
                    output: None,
                    learned: None,
                },
            ],
            &port(),
        );
        // off-link through the IPv6 gateway (a link-local one)
        let mut f = echo6(FAR6, DIP6, OUR_MAC).build();
        let v = handle_frame(&mut f, &gw, &WorkerCounters::default(), &mut None);
        assert_eq!(
            v,
            LocalVerdict::Route {
                len: 79,
                next_hop: v6("fe80::1".parse().unwrap())
            }
        );
        assert!(icmpv6_checksum_ok(&f[..79]));
    }

    #[test]
    fn port_addresses_of_both_families() {
        let p = port();
        let (v4, v6) = (IpAddr::V4, IpAddr::V6);
        let ll: Ipv6Addr = "fe80::ff:fe00:1".parse().unwrap();
        assert_eq!(p.link_local(), ll, "EUI-64 of 02:00:00:00:00:01");
        assert!(p.is_own(v6(ll)) && p.is_own(v6(DIP6)) && p.is_own(v4(DIP)));
        assert!(p.is_local(v6(VIP6)) && !p.is_own(v6(VIP6)));
        assert!(p.on_link(v6(PEER6)) && p.on_link(v6("fe80::42".parse().unwrap())));
        assert!(!p.on_link(v6(FAR6)));
        assert!(!p.on_link(v6(icmpv6::ALL_NODES)));
        assert!(!p.on_link(v6("::ffff:198.18.0.2".parse().unwrap())));
        assert!(!p.on_link(v6(Ipv6Addr::UNSPECIFIED)));
        assert_eq!(p.source_for(v6(PEER6)), Some(v6(DIP6)));
        assert_eq!(p.source_for(v6("fe80::42".parse().unwrap())), Some(v6(ll)));
        assert_eq!(
            p.source_for(v6(FAR6)),
            Some(v6(DIP6)),
            "global before link-local"
        );
        assert_eq!(p.source_for(v4(FAR)), Some(v4(DIP)));
        assert_eq!(p.next_hop(v6(FAR6)), None);
        let mut g = p.clone();
        g.gateways = vec![v4(GW), v6("2001:2::fe".parse().unwrap())];
        assert_eq!(
            g.next_hop(v6(FAR6)),
            Some(v6("2001:2::fe".parse().unwrap()))
        );
        assert_eq!(g.next_hop(v4(FAR)), Some(v4(GW)));
        // a port with only the link-local address sources from it
        let bare = PortAddrs::new(OUR_MAC, vec![], vec![], vec![]);
        assert_eq!(bare.addrs, [(v6(ll), 64)]);
        assert_eq!(bare.source_for(v6(FAR6)), Some(v6(ll)));
        assert_eq!(bare.source_for(v4(FAR)), None);
        // listed explicitly: not twice
        let explicit = PortAddrs::new(OUR_MAC, vec![(v6(ll), 64)], vec![], vec![]);
        assert_eq!(explicit.addrs.len(), 1);
    }

    #[test]
    fn neighbor_request_builders() {
        let p = port();
        let mut buf = [0u8; 96];
        // IPv6: a solicitation to the target's group, from our address on
        // its subnet, with our MAC in the source option
        let n = build_neighbor_request(&mut buf, &p, IpAddr::V6(PEER6), None).unwrap();
        let group = icmpv6::solicited_node(&PEER6);
        let want = PacketBuilder::ethernet(OUR_MAC, icmpv6::multicast_mac(&group))
            .ipv6(DIP6, group)
            .neighbor_solicit(PEER6, Some(OUR_MAC))
            .build();
        assert_eq!(&buf[..n], &want[..]);
        assert!(icmpv6_checksum_ok(&buf[..n]));
        // a unicast probe of a known neighbour
        let n = build_neighbor_request(&mut buf, &p, IpAddr::V6(PEER6), Some(PEER_MAC)).unwrap();
        let want = PacketBuilder::ethernet(OUR_MAC, PEER_MAC)
            .ipv6(DIP6, PEER6)
            .neighbor_solicit(PEER6, Some(OUR_MAC))
            .build();
        assert_eq!(&buf[..n], &want[..]);
        // IPv4: ARP, as before
        let n = build_neighbor_request(&mut buf, &p, IpAddr::V4(PEER), None).unwrap();
        let want = PacketBuilder::ethernet(OUR_MAC, MacAddr::BROADCAST)
            .arp_request(OUR_MAC, DIP, PEER)
            .pad_to(60)
            .build();
        assert_eq!(&buf[..n], &want[..]);
        let v6_only = PortAddrs::new(OUR_MAC, vec![(IpAddr::V6(DIP6), 64)], vec![], vec![]);
        assert_eq!(
            build_neighbor_request(&mut buf, &v6_only, IpAddr::V4(PEER), None),
            None
        );
        assert_eq!(
            build_neighbor_request(&mut buf[..80], &p, IpAddr::V6(PEER6), None),
            None
        );
    }

    /// The resolution round trip the worker runs: a packet for an unknown
    /// IPv6 neighbour waits while a solicitation goes out; the neighbour's
    /// advertisement, through `handle_frame`, resolves it and the queue
    /// drains in order.
    #[test]
    fn ipv6_next_hop_resolution_queues_then_flushes() {
        use crate::dataplane::neigh::{NeighParams, NeighState, NeighTable, Resolve};
        let p = port();
        let mut table: NeighTable<u32> = NeighTable::new(NeighParams::default());
        let hop = IpAddr::V6(PEER6);
        assert_eq!(table.resolve(hop, 1, 0), Resolve::QueuedAndRequest);
        assert_eq!(table.resolve(hop, 2, 1), Resolve::Queued);
        // what goes out for it
        let mut buf = [0u8; 96];
        let n = build_neighbor_request(&mut buf, &p, hop, None).unwrap();
        assert_eq!(
            &buf[..6],
            &icmpv6::multicast_mac(&icmpv6::solicited_node(&PEER6)).0
        );
        assert_eq!(n, 86);
        // the peer answers (solicited, to our address, with its MAC)
        let mut na = room(na_to_us(0x60, DIP6, OUR_MAC, Some(PEER_MAC)));
        let mut learned = None;
        let v = handle_frame(&mut na, &p, &WorkerCounters::default(), &mut learned);
        assert_eq!(v, LocalVerdict::Consumed);
        let (ip, mac, solicited) = learned.unwrap();
        let mut sent = Vec::new();
        table.learn(ip, mac.0, 5, solicited, |m, pkt| sent.push((m, pkt)));
        assert_eq!(sent, [(PEER_MAC.0, 1), (PEER_MAC.0, 2)]);
        assert_eq!(table.state(hop, 5), Some(NeighState::Reachable));
        assert_eq!(table.resolve(hop, 3, 6), Resolve::Send(PEER_MAC.0, 3));
        // an IPv4 neighbour with the same low 32 bits is another entry
        let v4_twin = IpAddr::V4(Ipv4Addr::from(u128::from(PEER6) as u32));
        assert_eq!(table.resolve(v4_twin, 4, 7), Resolve::QueuedAndRequest);
        assert_eq!(table.lookup(hop), Some(PEER_MAC.0));
    }

    #[test]
    fn random_ipv6_garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let p = port();
        let c = WorkerCounters::default();
        let bases = [
            room(ns(PEER6, SOL_DIP6, SOL_MAC_DIP6, DIP6)),
            room(na_to_us(0x60, DIP6, OUR_MAC, Some(PEER_MAC))),
            echo6(PEER6, DIP6, OUR_MAC).build(),
            room(ns(Ipv6Addr::UNSPECIFIED, SOL_DIP6, SOL_MAC_DIP6, DIP6)),
        ];
        for i in 0..40000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut f = bases[i % bases.len()].clone();
            if i % 3 == 0 {
                let len = (seed as usize) % (f.len() + 1);
                f.truncate(len);
            }
            for k in 0..4 {
                if !f.is_empty() {
                    let at = ((seed >> (8 * k)) as usize) % f.len();
                    f[at] = (seed >> (16 + k)) as u8;
                }
            }
            let mut l = None;
            let _ = handle_frame(&mut f, &p, &c, &mut l);
        }
    }
}
