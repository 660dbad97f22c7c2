//! The workers' side of VIPs that follow the kernel
//! ([`crate::control::vipwatch`] decides which are active).
//!
//! What: the published configuration carries every followed VIP with its
//! port and whether it is active now ([`VipActivity`]). On adopting it a
//! worker (1) leaves inactive VIPs out of the addresses its ports answer
//! ARP, neighbor solicitations and ICMP echo for, (2) drops, with the
//! counted reason `vip_inactive`, packets from the wire addressed to an
//! inactive VIP (its services are not forwarded; the director's own traffic
//! and replies never have a VIP as destination), and (3) worker 0 alone
//! announces each VIP that became active out of its port, [`GARP_REPEAT`]
//! times at once, like keepalived's `garp_master_repeat` (one worker, so a
//! switch sees one burst and not one per worker): gratuitous ARP requests
//! for an IPv4 VIP, unsolicited neighbor advertisements for an IPv6 one
//! (RFC 4861 §7.2.6: to all-nodes, Override set so neighbours replace the
//! old director's MAC, Solicited clear, Router set like vsd's other
//! advertisements, from the VIP itself, as Linux and keepalived send them).
//!
//! Why here: the workers own the tx queues; the control thread never
//! touches packets. The fast-path cost is one `is_empty` test per packet
//! while every followed VIP is active (the usual state on a master).
//!
//! Failure modes: no mbuf for an announcement: counted as `no_mbuf`, the
//! VIP is still served (clients learn it on their next ARP request or
//! neighbor solicitation). An announcement lost on the wire: the same; an
//! IPv6 neighbour that had the old director's MAC reaches it again once its
//! entry goes stale and is probed (RFC 4861 §7.3.3). The keepalived on the
//! twin also sends its own.

use super::counters::{DropReason, Event, WorkerCounters};
use crate::dpdk::{Mbuf, Mempool, TxBuffer};
use crate::wire::{self, icmpv6, ArpOperation, EtherType, EthernetFrame, MacAddr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Gratuitous ARPs (IPv4) or unsolicited neighbor advertisements (IPv6)
/// sent when a VIP becomes active (keepalived's default
/// `garp_master_repeat`, which it uses for both).
pub const GARP_REPEAT: usize = 5;

/// One followed VIP as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipActivity {
    /// Index of the port that announces it.
    pub port: usize,
    pub addr: IpAddr,
    pub active: bool,
}

/// What a worker keeps between configurations.
#[derive(Debug, Default)]
pub struct WorkerFollow {
    /// The followed VIPs of the configuration in force.
    current: Arc<[VipActivity]>,
    /// Inactive VIPs: not answered, not forwarded.
    inactive: Vec<IpAddr>,
}

impl WorkerFollow {
    /// Take up a new list; returns the (port, VIP) pairs that became active
    /// (at the first adoption: every active one, announced at start).
    pub fn adopt(&mut self, next: &Arc<[VipActivity]>) -> Vec<(usize, IpAddr)> {
        let up = newly_active(&self.current, next);
        self.inactive = next.iter().filter(|v| !v.active).map(|v| v.addr).collect();
        self.current = Arc::clone(next);
        up
    }

    pub fn inactive(&self) -> &[IpAddr] {
        &self.inactive
    }

    /// Whether `frame` (from the wire) is an IP packet to an inactive VIP.
    #[inline]
    pub fn to_inactive_vip(&self, frame: &[u8]) -> bool {
        if self.inactive.is_empty() {
            return false;
        }
        ip_dst(frame).is_some_and(|d| self.inactive.contains(&d))
    }
}

/// VIPs active in `next` that were not active in `prev`.
pub fn newly_active(prev: &[VipActivity], next: &[VipActivity]) -> Vec<(usize, IpAddr)> {
    next.iter()
        .filter(|v| v.active)
        .filter(|v| {
            !prev
                .iter()
                .any(|p| p.active && p.addr == v.addr && p.port == v.port)
        })
        .map(|v| (v.port, v.addr))
        .collect()
}

/// The destination of an IPv4 or IPv6 frame (untagged or VLAN-tagged).
pub fn ip_dst(frame: &[u8]) -> Option<IpAddr> {
    let (l3, ethertype) = wire::l3_offset(frame).ok()?;
    if ethertype == EtherType::IPV4 {
        let d: [u8; 4] = frame.get(l3 + 16..l3 + 20)?.try_into().ok()?;
        Some(IpAddr::from(d))
    } else if ethertype == EtherType::IPV6 {
        let d: [u8; 16] = frame.get(l3 + 24..l3 + 40)?.try_into().ok()?;
        Some(IpAddr::from(d))
    } else {
        None
    }
}

/// A gratuitous ARP request for `vip` (sender and target `vip`, broadcast),
/// as keepalived and Linux's `arping -U` send it. Returns the frame length.
pub fn build_garp(out: &mut [u8], mac: MacAddr, vip: Ipv4Addr) -> Option<usize> {
    const FRAME: usize = 60;
    let out = out.get_mut(..FRAME)?;
    out.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(MacAddr::BROADCAST);
    eth.set_src_addr(mac);
    eth.set_ethertype(EtherType::ARP);
    let repr = wire::ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: vip,
        target_hardware_addr: MacAddr::BROADCAST,
        target_protocol_addr: vip,
    };
    repr.emit(&mut out[14..]).ok()?;
    Some(FRAME)
}

/// Length of an unsolicited neighbor advertisement frame: Ethernet, IPv6,
/// the advertisement and its target link-layer address option.
pub const UNSOLICITED_NA_LEN: usize = 14 + 40 + 32;

/// An unsolicited neighbor advertisement for `vip` (RFC 4861 §7.2.6):
/// from the VIP to all-nodes (Ethernet 33:33:00:00:00:01), hop limit 255,
/// Router and Override set, Solicited clear, target `vip` with `mac` as
/// its link-layer address. Returns the frame length.
pub fn build_unsolicited_na(out: &mut [u8], mac: MacAddr, vip: Ipv6Addr) -> Option<usize> {
    let out = out.get_mut(..UNSOLICITED_NA_LEN)?;
    let flags = icmpv6::NA_FLAG_ROUTER | icmpv6::NA_FLAG_OVERRIDE;
    let n = icmpv6::build_neighbor_advert(mac, vip, flags, vip, icmpv6::ALL_NODES, &mut out[14..])
        .ok()?;
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    eth.set_dst_addr(icmpv6::multicast_mac(&icmpv6::ALL_NODES));
    eth.set_src_addr(mac);
    eth.set_ethertype(EtherType::IPV6);
    Some(14 + n)
}

/// Queue [`GARP_REPEAT`] announcements of `vip` on `tx`: gratuitous ARPs
/// for IPv4, unsolicited neighbor advertisements for IPv6.
pub fn send_announcements(
    pool: &Mempool,
    tx: &mut TxBuffer,
    c: &WorkerCounters,
    mac: MacAddr,
    vip: IpAddr,
) {
    let mut frame = [0u8; UNSOLICITED_NA_LEN];
    let (built, event) = match vip {
        IpAddr::V4(v) => (build_garp(&mut frame, mac, v), Event::GarpSent),
        IpAddr::V6(v) => (
            build_unsolicited_na(&mut frame, mac, v),
            Event::UnsolicitedNaSent,
        ),
    };
    let Some(len) = built else {
        return;
    };
    for _ in 0..GARP_REPEAT {
        let Ok(mut m) = Mbuf::alloc(pool) else {
            c.drop_pkt(DropReason::NoMbuf);
            return;
        };
        if !m.append(len) || !m.set_data(&frame[..len]) {
            c.drop_pkt(DropReason::NoMbuf);
            return;
        }
        c.add(event, 1);
        tx.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ArpPacket, PacketBuilder};

    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const VIP: IpAddr = IpAddr::V4(VIP4);
    const VIP2_4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
    const VIP2: IpAddr = IpAddr::V4(VIP2_4);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn list(v: &[(IpAddr, bool)]) -> Arc<[VipActivity]> {
        v.iter()
            .map(|&(addr, active)| VipActivity {
                port: 0,
                addr,
                active,
            })
            .collect()
    }

    #[test]
    fn garps_go_out_for_each_vip_that_comes_up_and_only_then() {
        let mut f = WorkerFollow::default();
        assert_eq!(f.adopt(&list(&[(VIP, false), (VIP2, true)])), [(0, VIP2)]);
        assert_eq!(f.inactive(), [VIP]);
        assert_eq!(f.adopt(&list(&[(VIP, true), (VIP2, true)])), [(0, VIP)]);
        assert!(f.inactive().is_empty());
        assert!(f.adopt(&list(&[(VIP, true), (VIP2, true)])).is_empty());
        assert!(f.adopt(&list(&[(VIP, false), (VIP2, true)])).is_empty());
        assert_eq!(f.adopt(&list(&[(VIP, true), (VIP2, true)])), [(0, VIP)]);
        // IPv6 alongside: inactive, then announced when it comes up
        let v6 = IpAddr::V6(VIP6);
        assert!(f.adopt(&list(&[(VIP, true), (v6, false)])).is_empty());
        assert_eq!(f.inactive(), [v6]);
        assert_eq!(f.adopt(&list(&[(VIP, true), (v6, true)])), [(0, v6)]);
        assert!(f.inactive().is_empty());
    }

    #[test]
    fn packets_to_inactive_vips_are_recognised() {
        let mut f = WorkerFollow::default();
        let to = |dst| {
            PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 9]), MAC)
                .ipv4(Ipv4Addr::new(198, 19, 0, 7), dst)
                .tcp(40000, 80, wire::tcp::ACK)
                .build()
        };
        assert!(!f.to_inactive_vip(&to(VIP4)), "nothing followed");
        f.adopt(&list(&[(VIP, false), (VIP2, true)]));
        assert!(f.to_inactive_vip(&to(VIP4)));
        assert!(!f.to_inactive_vip(&to(VIP2_4)));
        assert!(!f.to_inactive_vip(&[0u8; 10]), "short frame");

        let to6 = |dst| {
            PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 9]), MAC)
                .ipv6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2), dst)
                .tcp(40000, 80, wire::tcp::ACK)
                .build()
        };
        let other6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x101);
        f.adopt(&list(&[(VIP, true), (IpAddr::V6(VIP6), false)]));
        assert!(f.to_inactive_vip(&to6(VIP6)));
        assert!(!f.to_inactive_vip(&to6(other6)));
        assert!(!f.to_inactive_vip(&to(VIP4)));
        let whole = to6(VIP6);
        assert!(
            !f.to_inactive_vip(&whole[..14 + 39]),
            "truncated IPv6 header"
        );
        f.adopt(&list(&[(VIP, true), (IpAddr::V6(VIP6), true)]));
        assert!(!f.to_inactive_vip(&to6(VIP6)));
    }

    /// The ICMPv6 checksum over the IPv6 pseudo-header, computed here
    /// independently of the builder (RFC 4443 §2.3, RFC 8200 §8.1).
    fn icmpv6_sum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        bytes.extend_from_slice(icmp);
        let mut sum = 0u32;
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn an_unsolicited_na_overrides_from_the_vip_to_all_nodes() {
        let mut buf = [0xaau8; 100];
        let len = build_unsolicited_na(&mut buf, MAC, VIP6).unwrap();
        assert_eq!(len, UNSOLICITED_NA_LEN);
        let mut want: Vec<u8> = Vec::new();
        // Ethernet: all-nodes 33:33:00:00:00:01 from the port's MAC, IPv6
        want.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]);
        // IPv6: version 6, payload 32, ICMPv6, hop limit 255, VIP -> ff02::1
        want.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
        want.extend_from_slice(&VIP6.octets());
        want.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // NA: type 136 code 0, checksum (filled below), R=1 S=0 O=1
        let icmp_at = want.len();
        want.extend_from_slice(&[136, 0, 0, 0, 0xa0, 0, 0, 0]);
        want.extend_from_slice(&VIP6.octets());
        // target link-layer address option: type 2, 1 unit of 8 bytes
        want.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
        let sum = icmpv6_sum(VIP6, icmpv6::ALL_NODES, &want[icmp_at..]);
        want[icmp_at + 2..icmp_at + 4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(&buf[..len], &want[..]);
        assert_eq!(
            icmpv6_sum(VIP6, icmpv6::ALL_NODES, &buf[icmp_at..len]),
            0,
            "the checksum verifies"
        );
        assert!(build_unsolicited_na(&mut [0u8; UNSOLICITED_NA_LEN - 1], MAC, VIP6).is_none());
    }

    #[test]
    fn a_garp_is_a_broadcast_request_from_the_vip_to_itself() {
        let mut buf = [0u8; 64];
        let len = build_garp(&mut buf, MAC, VIP4).unwrap();
        assert_eq!(len, 60);
        let eth = EthernetFrame::new_unchecked(&buf[..len]);
        assert_eq!(eth.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(eth.src_addr(), MAC);
        assert_eq!(eth.ethertype(), EtherType::ARP);
        let arp = ArpPacket::new_checked(&buf[14..len]).unwrap();
        assert_eq!(arp.operation(), ArpOperation::Request);
        assert!(arp.is_gratuitous());
        assert_eq!(arp.source_protocol_addr(), VIP4);
        assert_eq!(arp.source_hardware_addr(), MAC);
        assert!(build_garp(&mut [0u8; 59], MAC, VIP4).is_none());
    }
}
