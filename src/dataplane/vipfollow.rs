//! The workers' side of VIPs that follow the kernel
//! ([`crate::control::vipwatch`] decides which are active).
//!
//! What: the published configuration carries every followed VIP with its
//! port and whether it is active now ([`VipActivity`]). On adopting it a
//! worker (1) leaves inactive VIPs out of the addresses its ports answer
//! ARP and ICMP echo for, (2) drops, with the counted reason `vip_inactive`,
//! packets from the wire addressed to an inactive VIP (its services are not
//! forwarded; the director's own traffic and replies never have a VIP as
//! destination), and (3) worker 0 alone sends [`GARP_REPEAT`] gratuitous
//! ARP requests out of the VIP's port for each VIP that became active, at
//! once, like keepalived's `garp_master_repeat` (one worker, so a switch
//! sees one burst and not one per worker).
//!
//! Why here: the workers own the tx queues; the control thread never
//! touches packets. The fast-path cost is one `is_empty` test per packet
//! while every followed VIP is active (the usual state on a master).
//!
//! Failure modes: no mbuf for a GARP: counted as `no_mbuf`, the VIP is
//! still served (clients learn it on their next ARP request). A GARP lost
//! on the wire: the same. The keepalived on the twin also sends its own.

use super::counters::{DropReason, Event, WorkerCounters};
use crate::dpdk::{Mbuf, Mempool, TxBuffer};
use crate::wire::{self, ArpOperation, EtherType, EthernetFrame, MacAddr};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Gratuitous ARPs sent when a VIP becomes active (keepalived's default
/// `garp_master_repeat`).
pub const GARP_REPEAT: usize = 5;

/// One followed VIP as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipActivity {
    /// Index of the port that announces it.
    pub port: usize,
    pub addr: Ipv4Addr,
    pub active: bool,
}

/// What a worker keeps between configurations.
#[derive(Debug, Default)]
pub struct WorkerFollow {
    /// The followed VIPs of the configuration in force.
    current: Arc<[VipActivity]>,
    /// Inactive VIPs: not answered, not forwarded.
    inactive: Vec<Ipv4Addr>,
}

impl WorkerFollow {
    /// Take up a new list; returns the (port, VIP) pairs that became active
    /// (at the first adoption: every active one, announced at start).
    pub fn adopt(&mut self, next: &Arc<[VipActivity]>) -> Vec<(usize, Ipv4Addr)> {
        let up = newly_active(&self.current, next);
        self.inactive = next.iter().filter(|v| !v.active).map(|v| v.addr).collect();
        self.current = Arc::clone(next);
        up
    }

    pub fn inactive(&self) -> &[Ipv4Addr] {
        &self.inactive
    }

    /// Whether `frame` (from the wire) is an IPv4 packet to an inactive VIP.
    #[inline]
    pub fn to_inactive_vip(&self, frame: &[u8]) -> bool {
        if self.inactive.is_empty() {
            return false;
        }
        ipv4_dst(frame).is_some_and(|d| self.inactive.contains(&d))
    }
}

/// VIPs active in `next` that were not active in `prev`.
pub fn newly_active(prev: &[VipActivity], next: &[VipActivity]) -> Vec<(usize, Ipv4Addr)> {
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

/// The destination of an IPv4 frame (untagged or VLAN-tagged).
pub fn ipv4_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    let (l3, ethertype) = wire::l3_offset(frame).ok()?;
    if ethertype != EtherType::IPV4 {
        return None;
    }
    let d = frame.get(l3 + 16..l3 + 20)?;
    Some(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
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

/// Queue [`GARP_REPEAT`] gratuitous ARPs for `vip` on `tx`.
pub fn send_garps(
    pool: &Mempool,
    tx: &mut TxBuffer,
    c: &WorkerCounters,
    mac: MacAddr,
    vip: Ipv4Addr,
) {
    let mut frame = [0u8; 60];
    let Some(len) = build_garp(&mut frame, mac, vip) else {
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
        c.add(Event::GarpSent, 1);
        tx.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ArpPacket, PacketBuilder};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn list(v: &[(Ipv4Addr, bool)]) -> Arc<[VipActivity]> {
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
        assert!(!f.to_inactive_vip(&to(VIP)), "nothing followed");
        f.adopt(&list(&[(VIP, false), (VIP2, true)]));
        assert!(f.to_inactive_vip(&to(VIP)));
        assert!(!f.to_inactive_vip(&to(VIP2)));
        assert!(!f.to_inactive_vip(&[0u8; 10]), "short frame");
    }

    #[test]
    fn a_garp_is_a_broadcast_request_from_the_vip_to_itself() {
        let mut buf = [0u8; 64];
        let len = build_garp(&mut buf, MAC, VIP).unwrap();
        assert_eq!(len, 60);
        let eth = EthernetFrame::new_unchecked(&buf[..len]);
        assert_eq!(eth.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(eth.src_addr(), MAC);
        assert_eq!(eth.ethertype(), EtherType::ARP);
        let arp = ArpPacket::new_checked(&buf[14..len]).unwrap();
        assert_eq!(arp.operation(), ArpOperation::Request);
        assert!(arp.is_gratuitous());
        assert_eq!(arp.source_protocol_addr(), VIP);
        assert_eq!(arp.source_hardware_addr(), MAC);
        assert!(build_garp(&mut [0u8; 59], MAC, VIP).is_none());
    }
}
