//! Martian and non-host filtering of packets bound for the forwarding path.
//!
//! What: [`MartianFilter::check_ip`] runs on every received IP frame
//! (before the director answers ARP-less local traffic such as ICMP echo,
//! and before forwarding), [`MartianFilter::not_host`] on what would be
//! forwarded; each drop has its own counter:
//!
//! - **not_host** (forwarding only): a frame not addressed to the port's
//!   own MAC (Ethernet
//!   broadcast or multicast). IPVS only sees `PACKET_HOST` packets
//!   (`ip_vs_in` accepts anything else untouched, and `ip_forward` drops
//!   it), so a unicast IP packet to a VIP inside a broadcast frame is not a
//!   connection attempt.
//! - the checks of the kernel's `ip_route_input_slow`, in its order:
//!   source multicast or 255.255.255.255 (`martian_src_multicast`,
//!   `martian_src_limited_broadcast`); destination 255.255.255.255 goes to
//!   broadcast input, never to IPVS (`dst_broadcast`); source 0.0.0.0/8
//!   (`martian_src_zeronet`); destination 0.0.0.0/8
//!   (`martian_dst_zeronet`); destination, else source, in 127.0.0.0/8
//!   (`martian_dst_loopback`, `martian_src_loopback`; route_localnet off,
//!   as by default). Multicast destinations take the kernel's multicast
//!   input, never IPVS (`dst_multicast`). Then the FIB answers: a
//!   destination that is a connected subnet's directed broadcast address is
//!   broadcast input (`dst_broadcast`), and `fib_validate_source` rejects a
//!   source that is one of the director's own addresses, a VIP or FULLNAT
//!   local address (`martian_src_local`) or a connected subnet's directed
//!   broadcast (`martian_src_directed_broadcast`).
//! - Class E (240.0.0.0/4 other than 255.255.255.255) is ordinary unicast
//!   for Linux since 2.6.25 and passes here too.
//! - IPv6 (RFC 4291): a multicast source (`martian_src_multicast`, as
//!   Linux's `ip6_rcv_core`), the unspecified source `::`
//!   (`martian_src_unspecified`; RFC 4291 §2.5.2: never forwarded) except
//!   in a neighbor solicitation (a duplicate address detection probe,
//!   which `dataplane::local` defends), destination, else source, `::1`
//!   (`martian_dst_loopback`, `martian_src_loopback`, as `ip6_rcv_core`),
//!   and a source that is one of the director's own IPv6 addresses
//!   (link-local included), a VIP or a FULLNAT local address
//!   (`martian_src_local`) except in a neighbor solicitation or
//!   advertisement, where another node using our address is
//!   `dataplane::local`'s `nd_duplicate_address`.
//!   Multicast destinations pass: neighbor discovery uses them, and the
//!   forwarding path never sees them (`not_host`).
//!
//! Why: spoofed SYNs from such sources created connections (and through
//! FULLNAT each one took a local port), and broadcast frames were NATed.
//!
//! Cost: a MAC compare, a few mask compares on the two addresses, and a
//! binary search of a small sorted array (the director's addresses, VIPs
//! and broadcast addresses, rebuilt when the configuration is adopted): no
//! allocation or lock per packet.
//!
//! Failure modes: a frame too short for an IP header is left to the
//! forwarding path's validation (which counts it).

use super::counters::DropReason;
use super::local::PortAddrs;
use crate::lb::service::{ServiceKey, ServiceSnapshot};
use std::net::{IpAddr, Ipv4Addr};

/// The addresses the checks need, for all ports of a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MartianFilter {
    /// The director's own addresses, VIPs and FULLNAT local addresses,
    /// sorted: a packet from one of them is spoofed.
    local: Vec<u32>,
    /// Directed broadcast addresses of the connected subnets, sorted.
    broadcast: Vec<u32>,
    /// The director's own IPv6 addresses (link-local included), VIPs and
    /// FULLNAT local addresses, sorted.
    local6: Vec<u128>,
}

/// The directed broadcast address of `addr/prefix` (none for /31, /32,
/// which have no broadcast address, RFC 3021).
fn directed_broadcast(addr: Ipv4Addr, prefix: u8) -> Option<u32> {
    if prefix >= 31 {
        return None;
    }
    let host = u32::MAX >> prefix;
    Some(u32::from(addr) | host)
}

impl MartianFilter {
    /// The filter for a worker's ports and the adopted service snapshot.
    pub fn new<'a>(ports: impl IntoIterator<Item = &'a PortAddrs>, snap: &ServiceSnapshot) -> Self {
        let mut local = Vec::new();
        let mut local6 = Vec::new();
        let mut broadcast = Vec::new();
        let mut add_local = |a: &IpAddr| match a {
            IpAddr::V4(a) => local.push(u32::from(*a)),
            IpAddr::V6(a) => local6.push(u128::from(*a)),
        };
        for p in ports {
            for (a, prefix) in &p.addrs {
                add_local(a);
                if let IpAddr::V4(a) = a {
                    broadcast.extend(directed_broadcast(*a, *prefix));
                }
            }
            p.vips.iter().for_each(&mut add_local);
        }
        for svc in snap.services() {
            if let ServiceKey::Addr { addr, .. } = &svc.key {
                add_local(addr);
            }
            svc.config.local_addresses.iter().for_each(&mut add_local);
        }
        local.sort_unstable();
        local.dedup();
        local6.sort_unstable();
        local6.dedup();
        broadcast.sort_unstable();
        broadcast.dedup();
        MartianFilter {
            local,
            broadcast,
            local6,
        }
    }

    /// Why `frame` (received on a port whose MAC is `port_mac`) must not be
    /// forwarded, or `None`: [`Self::not_host`], then [`Self::check_ip`].
    #[inline]
    pub fn check(&self, frame: &[u8], port_mac: &[u8; 6]) -> Option<DropReason> {
        if Self::not_host(frame, port_mac) {
            return Some(DropReason::NotHost);
        }
        self.check_ip(frame)
    }

    /// Whether a frame to forward was not sent to this port's MAC
    /// (broadcast, multicast, another host): IPVS sees only PACKET_HOST.
    #[inline]
    pub fn not_host(frame: &[u8], port_mac: &[u8; 6]) -> bool {
        frame.get(..6).is_some_and(|d| d != port_mac)
    }

    /// The address rules for an IPv4 or IPv6 frame (`None` for anything
    /// else, or a frame too short to judge).
    #[inline]
    pub fn check_ip(&self, frame: &[u8]) -> Option<DropReason> {
        use crate::wire::EtherType;
        // untagged IPv4 in the common case; else find the VLAN-tagged header
        let ethertype = frame.get(12..14)?;
        let l3 = if ethertype == [0x08, 0x00] {
            14
        } else if ethertype == [0x86, 0xdd] {
            return self.check_ip6(frame, 14);
        } else {
            match crate::wire::l3_offset(frame) {
                Ok((l3, EtherType::IPV4)) => l3,
                Ok((l3, EtherType::IPV6)) => return self.check_ip6(frame, l3),
                _ => return None,
            }
        };
        let ip = frame.get(l3..l3 + 20)?;
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        self.check_addrs(src, dst)
    }

    /// The IPv6 rules for the header at `l3`, with the exemptions for
    /// neighbor discovery (see the module docs).
    #[inline]
    fn check_ip6(&self, frame: &[u8], l3: usize) -> Option<DropReason> {
        let ip = frame.get(l3..l3 + 40)?;
        let src = u128::from_be_bytes(ip[8..24].try_into().ok()?);
        let dst = u128::from_be_bytes(ip[24..40].try_into().ok()?);
        let reason = self.check_addrs6(src, dst)?;
        // neighbor discovery directly after the header (as RFC 4861
        // requires: local.rs drops ND behind extension headers anyway)
        let nd_type = || {
            (ip[6] == crate::wire::IpProtocol::ICMPV6.0)
                .then(|| frame.get(l3 + 40).copied())
                .flatten()
        };
        match reason {
            DropReason::MartianSrcUnspecified
                if nd_type() == Some(crate::wire::icmpv6::TYPE_NEIGHBOR_SOLICIT) =>
            {
                None
            }
            DropReason::MartianSrcLocal
                if nd_type().is_some_and(|t| {
                    t == crate::wire::icmpv6::TYPE_NEIGHBOR_SOLICIT
                        || t == crate::wire::icmpv6::TYPE_NEIGHBOR_ADVERT
                }) =>
            {
                None
            }
            r => Some(r),
        }
    }

    /// The IPv6 address rules alone (see the module docs for their order).
    #[inline]
    pub fn check_addrs6(&self, src: u128, dst: u128) -> Option<DropReason> {
        const LOOPBACK: u128 = 1;
        if src >> 120 == 0xff {
            return Some(DropReason::MartianSrcMulticast);
        }
        if src == 0 {
            return Some(DropReason::MartianSrcUnspecified);
        }
        if dst == LOOPBACK {
            return Some(DropReason::MartianDstLoopback);
        }
        if src == LOOPBACK {
            return Some(DropReason::MartianSrcLoopback);
        }
        if self.local6.binary_search(&src).is_ok() {
            return Some(DropReason::MartianSrcLocal);
        }
        None
    }

    /// The address rules alone (see the module docs for their order).
    #[inline]
    pub fn check_addrs(&self, src: u32, dst: u32) -> Option<DropReason> {
        const LIMITED_BROADCAST: u32 = u32::MAX;
        let multicast = |a: u32| a >> 28 == 0xe;
        let zeronet = |a: u32| a >> 24 == 0;
        let loopback = |a: u32| a >> 24 == 127;
        if multicast(src) {
            return Some(DropReason::MartianSrcMulticast);
        }
        if src == LIMITED_BROADCAST {
            return Some(DropReason::MartianSrcLimitedBroadcast);
        }
        if dst == LIMITED_BROADCAST {
            return Some(DropReason::DstBroadcast);
        }
        if zeronet(src) {
            return Some(DropReason::MartianSrcZeronet);
        }
        if zeronet(dst) {
            return Some(DropReason::MartianDstZeronet);
        }
        if loopback(dst) {
            return Some(DropReason::MartianDstLoopback);
        }
        if loopback(src) {
            return Some(DropReason::MartianSrcLoopback);
        }
        if multicast(dst) {
            return Some(DropReason::DstMulticast);
        }
        if self.broadcast.binary_search(&dst).is_ok() {
            return Some(DropReason::DstBroadcast);
        }
        if self.local.binary_search(&src).is_ok() {
            return Some(DropReason::MartianSrcLocal);
        }
        if self.broadcast.binary_search(&src).is_ok() {
            return Some(DropReason::MartianSrcDirectedBroadcast);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn a6(s: &str) -> u128 {
        u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
    }

    fn filter() -> MartianFilter {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let port = PortAddrs::new(
            MacAddr(MAC),
            vec![
                (v4(198, 18, 0, 1), 24),
                (v4(198, 18, 1, 1), 24),
                (v4(198, 18, 2, 1), 31),
                (v6("2001:2::1"), 64),
            ],
            vec![v4(198, 18, 0, 100), v6("2001:2::100")],
            vec![],
        );
        MartianFilter::new([&port], &ServiceSnapshot::empty(16))
    }

    fn a(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    fn frame(dst_mac: [u8; 6], src: &str, dst: &str) -> Vec<u8> {
        crate::wire::PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 2]), MacAddr(dst_mac))
            .ipv4(src.parse().unwrap(), dst.parse().unwrap())
            .udp(1000, 53)
            .build()
    }

    #[test]
    fn linux_martian_rules_each_with_its_reason() {
        let f = filter();
        let vip = "198.18.0.100";
        let cases = [
            ("224.0.0.5", vip, Some(DropReason::MartianSrcMulticast)),
            ("239.1.2.3", vip, Some(DropReason::MartianSrcMulticast)),
            (
                "255.255.255.255",
                vip,
                Some(DropReason::MartianSrcLimitedBroadcast),
            ),
            ("0.0.0.0", "255.255.255.255", Some(DropReason::DstBroadcast)),
            ("0.0.0.0", vip, Some(DropReason::MartianSrcZeronet)),
            ("0.1.2.3", vip, Some(DropReason::MartianSrcZeronet)),
            ("198.18.0.2", "0.0.0.0", Some(DropReason::MartianDstZeronet)),
            ("127.0.0.1", vip, Some(DropReason::MartianSrcLoopback)),
            ("127.9.9.9", vip, Some(DropReason::MartianSrcLoopback)),
            (
                "198.18.0.2",
                "127.0.0.1",
                Some(DropReason::MartianDstLoopback),
            ),
            ("198.18.0.2", "224.0.0.1", Some(DropReason::DstMulticast)),
            ("198.18.0.2", "198.18.0.255", Some(DropReason::DstBroadcast)),
            ("198.18.0.2", "198.18.1.255", Some(DropReason::DstBroadcast)),
            (vip, vip, Some(DropReason::MartianSrcLocal)),
            ("198.18.0.1", vip, Some(DropReason::MartianSrcLocal)),
            ("198.18.1.1", vip, Some(DropReason::MartianSrcLocal)),
            (
                "198.18.0.255",
                vip,
                Some(DropReason::MartianSrcDirectedBroadcast),
            ),
            // ordinary traffic, class E (unicast for Linux), a /31's
            // addresses and the subnet's network address pass
            ("198.18.0.2", vip, None),
            ("198.19.7.7", vip, None),
            ("240.0.0.1", vip, None),
            ("198.18.2.0", vip, None),
            ("198.18.0.2", "198.18.2.1", None),
            ("198.18.1.11", "198.18.0.2", None),
        ];
        for (src, dst, want) in cases {
            assert_eq!(f.check_addrs(a(src), a(dst)), want, "{src} -> {dst}");
        }
    }

    #[test]
    fn ipv6_martians_each_with_its_reason() {
        let f = filter();
        let vip = "2001:2::100";
        // the port's EUI-64 link-local address (from MAC 02:00:00:00:00:01)
        let ll = "fe80::ff:fe00:1";
        let cases = [
            ("ff02::1", vip, Some(DropReason::MartianSrcMulticast)),
            ("ff0e::5", vip, Some(DropReason::MartianSrcMulticast)),
            ("::", vip, Some(DropReason::MartianSrcUnspecified)),
            ("::1", vip, Some(DropReason::MartianSrcLoopback)),
            ("2001:2::2", "::1", Some(DropReason::MartianDstLoopback)),
            (vip, vip, Some(DropReason::MartianSrcLocal)),
            ("2001:2::1", vip, Some(DropReason::MartianSrcLocal)),
            (ll, vip, Some(DropReason::MartianSrcLocal)),
            // ordinary traffic, link-local neighbours, multicast
            // destinations (neighbor discovery), ::2 and v4-compatible
            // forms are not the loopback
            ("2001:2::2", vip, None),
            ("2001:3::7", vip, None),
            ("fe80::2", "ff02::1:ff00:100", None),
            ("2001:2::2", "ff02::1", None),
            ("::2", vip, None),
            ("2001:2::2", "2001:2::1", None),
        ];
        for (src, dst, want) in cases {
            assert_eq!(f.check_addrs6(a6(src), a6(dst)), want, "{src} -> {dst}");
        }
    }

    #[test]
    fn ipv6_frames_are_judged_and_neighbor_discovery_keeps_its_exceptions() {
        use crate::wire::PacketBuilder;
        let f = filter();
        let ip = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let peer = MacAddr([2, 0, 0, 0, 0, 2]);
        let udp = |src: &str, dst: &str| {
            PacketBuilder::ethernet(peer, MacAddr(MAC))
                .ipv6(ip(src), ip(dst))
                .udp(1000, 53)
                .build()
        };
        let vip = "2001:2::100";
        assert_eq!(f.check_ip(&udp("2001:2::2", vip)), None);
        assert_eq!(
            f.check_ip(&udp("::", vip)),
            Some(DropReason::MartianSrcUnspecified)
        );
        assert_eq!(
            f.check_ip(&udp("::1", vip)),
            Some(DropReason::MartianSrcLoopback)
        );
        assert_eq!(
            f.check_ip(&udp("ff02::1", vip)),
            Some(DropReason::MartianSrcMulticast)
        );
        assert_eq!(
            f.check_ip(&udp(vip, "2001:2::2")),
            Some(DropReason::MartianSrcLocal)
        );
        let tagged = PacketBuilder::ethernet(peer, MacAddr(MAC))
            .vlan(7)
            .ipv6(ip("::1"), ip(vip))
            .udp(1000, 53)
            .build();
        assert_eq!(f.check_ip(&tagged), Some(DropReason::MartianSrcLoopback));
        // a duplicate address detection probe (from ::) for our VIP goes on
        // to be defended; an echo request from :: does not
        let dad = PacketBuilder::ethernet(peer, MacAddr([0x33, 0x33, 0xff, 0, 1, 0]))
            .ipv6(ip("::"), ip("ff02::1:ff00:100"))
            .neighbor_solicit(ip(vip), None)
            .build();
        assert_eq!(f.check_ip(&dad), None);
        let echo = PacketBuilder::ethernet(peer, MacAddr(MAC))
            .ipv6(ip("::"), ip(vip))
            .icmpv6_echo_request(1, 1)
            .build();
        assert_eq!(f.check_ip(&echo), Some(DropReason::MartianSrcUnspecified));
        // an advertisement from :: is never valid (RFC 4861 §7.1.2)
        let na_unspec = PacketBuilder::ethernet(peer, MacAddr(MAC))
            .ipv6(ip("::"), ip("ff02::1"))
            .neighbor_advert(0x20, ip("2001:2::2"), Some(peer))
            .build();
        assert_eq!(
            f.check_ip(&na_unspec),
            Some(DropReason::MartianSrcUnspecified)
        );
        // another node claiming our address in neighbor discovery reaches
        // local.rs (counted there as nd_duplicate_address)
        let claim = PacketBuilder::ethernet(peer, MacAddr([0x33, 0x33, 0, 0, 0, 1]))
            .ipv6(ip(vip), ip("ff02::1"))
            .neighbor_advert(0x20, ip(vip), Some(peer))
            .build();
        assert_eq!(f.check_ip(&claim), None);
        let ns_from_ours = PacketBuilder::ethernet(peer, MacAddr([0x33, 0x33, 0xff, 0, 0, 2]))
            .ipv6(ip("2001:2::1"), ip("ff02::1:ff00:2"))
            .neighbor_solicit(ip("2001:2::2"), Some(peer))
            .build();
        assert_eq!(f.check_ip(&ns_from_ours), None);
        // too short to judge: left to the forwarding path's validation
        assert_eq!(f.check_ip(&udp("::1", vip)[..14 + 39]), None);
    }

    #[test]
    fn only_frames_to_our_mac_are_forwarded() {
        let f = filter();
        let ok = frame(MAC, "198.18.0.2", "198.18.0.100");
        assert_eq!(f.check(&ok, &MAC), None);
        let bcast = frame([0xff; 6], "198.18.0.2", "198.18.0.100");
        assert_eq!(f.check(&bcast, &MAC), Some(DropReason::NotHost));
        let mcast = frame([0x01, 0, 0x5e, 0, 0, 1], "198.18.0.2", "198.18.0.100");
        assert_eq!(f.check(&mcast, &MAC), Some(DropReason::NotHost));
        let other = frame([2, 0, 0, 0, 0, 9], "198.18.0.2", "198.18.0.100");
        assert_eq!(f.check(&other, &MAC), Some(DropReason::NotHost));
        let spoofed = frame(MAC, "127.0.0.1", "198.18.0.100");
        assert_eq!(
            f.check(&spoofed, &MAC),
            Some(DropReason::MartianSrcLoopback)
        );
        // too short to judge: left to the forwarding path's validation
        assert_eq!(f.check(&ok[..20], &MAC), None);
    }

    #[test]
    fn service_vips_and_local_addresses_are_local() {
        use crate::lb::service::{ServiceConfig, ServiceTable};
        use crate::lb::types::Protocol;
        let mut t = ServiceTable::new(16);
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "198.19.5.5".parse().unwrap(),
            port: 80,
        };
        let cfg = ServiceConfig {
            local_addresses: vec!["198.19.6.6".parse().unwrap()],
            ..ServiceConfig::default()
        };
        t.add_service(key, cfg).unwrap();
        let key6 = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "2001:2::64".parse().unwrap(),
            port: 80,
        };
        let cfg6 = ServiceConfig {
            local_addresses: vec!["2001:2:1::200".parse().unwrap()],
            ..ServiceConfig::default()
        };
        t.add_service(key6, cfg6).unwrap();
        let f = MartianFilter::new([], &t.snapshot());
        let other6 = a6("2001:2::2");
        for local in ["2001:2::64", "2001:2:1::200"] {
            assert_eq!(
                f.check_addrs6(a6(local), other6),
                Some(DropReason::MartianSrcLocal),
                "{local}"
            );
        }
        assert_eq!(f.check_addrs6(a6("2001:2::65"), other6), None);
        let other = a("198.18.0.2");
        assert_eq!(
            f.check_addrs(a("198.19.5.5"), other),
            Some(DropReason::MartianSrcLocal)
        );
        assert_eq!(
            f.check_addrs(a("198.19.6.6"), other),
            Some(DropReason::MartianSrcLocal)
        );
        assert_eq!(f.check_addrs(a("198.19.5.6"), other), None);
    }
}
