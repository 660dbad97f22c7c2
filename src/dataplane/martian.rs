//! Martian and non-host filtering of packets bound for the forwarding path.
//!
//! What: [`MartianFilter::check_ip`] runs on every received IPv4 frame
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
//!
//! Why: spoofed SYNs from such sources created connections (and through
//! FULLNAT each one took a local port), and broadcast frames were NATed.
//!
//! Cost: a MAC compare, a few mask compares on the two addresses, and a
//! binary search of a small sorted array (the director's addresses, VIPs
//! and broadcast addresses, rebuilt when the configuration is adopted): no
//! allocation or lock per packet.
//!
//! Failure modes: a frame too short for an IPv4 header is left to the
//! forwarding path's validation (which counts it); only IPv4 is examined.

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
        let mut broadcast = Vec::new();
        for p in ports {
            for (a, prefix) in &p.addrs {
                if let IpAddr::V4(a) = a {
                    local.push(u32::from(*a));
                    broadcast.extend(directed_broadcast(*a, *prefix));
                }
            }
            local.extend(p.vips.iter().filter_map(|v| match v {
                IpAddr::V4(a) => Some(u32::from(*a)),
                IpAddr::V6(_) => None,
            }));
        }
        for svc in snap.services() {
            if let ServiceKey::Addr {
                addr: IpAddr::V4(a),
                ..
            } = svc.key
            {
                local.push(u32::from(a));
            }
            for l in &svc.config.local_addresses {
                if let IpAddr::V4(a) = l {
                    local.push(u32::from(*a));
                }
            }
        }
        local.sort_unstable();
        local.dedup();
        broadcast.sort_unstable();
        broadcast.dedup();
        MartianFilter { local, broadcast }
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

    /// The address rules for an IPv4 frame (`None` for anything else, or a
    /// frame too short to judge).
    #[inline]
    pub fn check_ip(&self, frame: &[u8]) -> Option<DropReason> {
        // untagged IPv4 in the common case; else find the VLAN-tagged header
        let l3 = if frame.get(12..14)? == [0x08, 0x00] {
            14
        } else {
            match crate::wire::l3_offset(frame) {
                Ok((l3, crate::wire::EtherType::IPV4)) => l3,
                _ => return None,
            }
        };
        let ip = frame.get(l3..l3 + 20)?;
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        self.check_addrs(src, dst)
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

    fn filter() -> MartianFilter {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let port = PortAddrs::new(
            MacAddr(MAC),
            vec![
                (v4(198, 18, 0, 1), 24),
                (v4(198, 18, 1, 1), 24),
                (v4(198, 18, 2, 1), 31),
            ],
            vec![v4(198, 18, 0, 100)],
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
        let f = MartianFilter::new([], &t.snapshot());
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
