//! The exception path: what the data plane does not consume goes up to a
//! kernel "twin" interface, and what the kernel sends on the twin goes out
//! of the port.
//!
//! What: a port with `kernel_iface = "NAME"` gets a second DPDK device, a
//! net_tap (or virtio-user + vhost-net) whose kernel side is the interface
//! NAME in vsd's own network namespace. vsd gives it the port's MAC, MTU
//! and the port's own `addresses`, and brings it up (`daemon::twin`). The
//! kernel then runs whatever the director needs besides forwarding: sshd,
//! a management HTTP server, keepalived (VRRP), BIRD (OSPF/BGP), ...
//!
//! Which packets go up ([`classify`], then the forwarding verdict):
//! - IPv4 to a multicast group (224.0.0.0/4: VRRP 224.0.0.18, OSPF,
//!   IGMP queries, ...): up (the kernel drops groups it did not join);
//! - IPv4 to one of the port's own addresses: ICMP echo and every protocol
//!   other than TCP/UDP/ICMP (VRRP 112, OSPF 89, IGMP 2, GRE, ...) go up;
//!   TCP/UDP go to the forwarding path first (a service or a FULLNAT
//!   connection on the director's address keeps them), and only what it
//!   rejects as "no service" goes up: BGP, ssh, HTTP management, ... ICMP
//!   errors too (the forwarding path translates those about connections);
//! - ARP: a request for one of the port's own addresses goes up and only
//!   the kernel answers it (vsd no longer does: one answer, from the stack
//!   that owns the address); every other ARP packet (requests for VIPs,
//!   replies, gratuitous ARP) is handled by vsd as before and a copy goes
//!   up, so the kernel's neighbour table stays right. vsd keeps answering
//!   ARP and ping for VIPs: they are not on the twin.
//! - IPv6, by the same rules: to a multicast group (router advertisements,
//!   MLD, OSPFv3, VRRPv3, ...) up, except neighbor discovery, and MLD
//!   queries go up as a copy (vsd answers for the VIPs' groups); to one of the
//!   port's own addresses (the link-local address from the MAC included,
//!   which the kernel forms alike) TCP/UDP and extension-header chains go
//!   to the forwarding path first, ICMPv6 errors too, ICMPv6 informational
//!   messages (echo request and reply, ...) and other protocols go up.
//!   Neighbor discovery as ARP: a solicitation whose target is one of the
//!   port's own addresses (DAD probes included) goes up and only the kernel
//!   answers it; a solicitation for a VIP is vsd's; an advertisement is
//!   learned by vsd and copied up, so the kernel resolves its own next hops
//!   through the twin. The twin has IPv6 on, the port's IPv6 addresses,
//!   and router advertisements ignored (`daemon::twin`).
//! - everything else (broadcasts, VLAN-tagged frames) is treated as
//!   without a twin.
//!
//! Who moves packets: every worker, with no mover thread and no ring
//! between threads. The twin has one queue pair per worker, like the port:
//! a worker puts what it punts on its own twin tx queue (batched, flushed
//! at the end of its loop turn), and polls its own twin rx queue (the
//! kernel spreads the twin's transmissions over the queues by flow hash)
//! at most every [`TWIN_POLL_US`], sending what it reads out of the port
//! on its own tx queue. Why: no locks, no shared ring, nothing to wake
//! up, and it scales with the workers like everything else.
//!
//! Bounds and failure modes: a punt costs the worker a `writev` (net_tap),
//! so each worker punts at most [`PUNT_BUDGET_PER_MS`] packets per
//! millisecond; beyond that packets are dropped (`exception_rate_limit`),
//! so a flood to the director's address cannot take the forwarding CPU.
//! A full twin queue drops (`exception_queue_full`), an ARP copy without an
//! mbuf drops the copy (`exception_no_mbuf`); the worker never waits on
//! the kernel. Polling the twin costs a `read` on net_tap, hence the
//! [`TWIN_POLL_US`] spacing (kernel traffic waits at most that long).
//! If the kernel is slow, its own queues drop (visible in `ip -s link`).
//! The kernel owns the director's addresses once a twin exists: with the
//! twin set down (writes to it fail: `exception_queue_full`, or the twin
//! device's tx errors) or an address removed from it, nobody answers ARP
//! or ping for that address, and real servers cannot resolve it as a
//! FULLNAT local address. VIPs are not affected.

use super::local::PortAddrs;
use crate::dpdk::{RxQueue, TxBuffer};
use std::net::IpAddr;

/// The longest a worker leaves its twin rx queue unpolled (µs).
pub const TWIN_POLL_US: u64 = 20;
/// Packets a worker may punt to the kernel per millisecond.
pub const PUNT_BUDGET_PER_MS: u32 = 512;

/// A worker's queue pair on a port's kernel twin.
pub struct TwinQueue {
    pub rx: RxQueue,
    pub tx: TxBuffer,
    /// `tx.dropped` already counted as `exception_queue_full`.
    pub tx_dropped_seen: u64,
}

/// What the exception path does with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punt {
    /// Not the kernel's (or not yet: the forwarding path decides first).
    Continue,
    /// The kernel's alone: hand the frame up.
    ToKernel,
    /// vsd handles it, and the kernel gets a copy (ARP).
    CopyToKernel,
}

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_ARP: [u8; 2] = [0x08, 0x06];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];
const PROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers the forwarding path walks (hop-by-hop, routing,
/// fragment, destination options).
const IPV6_EXT_HEADERS: [u8; 4] = [0, 43, 44, 60];
const ND_SOLICIT: u8 = 135;
const ND_ADVERT: u8 = 136;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const ICMP_ECHO_REQUEST: u8 = 8;
const ARP_REQUEST: [u8; 2] = [0x00, 0x01];

fn ipv4_at(b: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Decide what goes up for a frame received on a port that has a twin
/// (see the module docs). Reads fixed offsets of untagged frames only.
#[inline]
pub fn classify(frame: &[u8], addrs: &PortAddrs) -> Punt {
    let Some(ethertype) = frame.get(12..14) else {
        return Punt::Continue;
    };
    if ethertype == ETH_IPV4 {
        let Some(ip) = frame.get(14..34) else {
            return Punt::Continue;
        };
        // another host's unicast frame (promiscuous port): not ours at all
        if frame[0] & 1 == 0 && frame[..6] != addrs.mac.0 {
            return Punt::Continue;
        }
        let dst = ipv4_at(&ip[16..20]);
        if dst.is_multicast() {
            return Punt::ToKernel;
        }
        let proto = ip[9];
        if proto == PROTO_TCP || proto == PROTO_UDP || !addrs.is_own(IpAddr::V4(dst)) {
            return Punt::Continue;
        }
        if proto != PROTO_ICMP {
            return Punt::ToKernel;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        // a first fragment or a whole packet: an echo request is the
        // kernel's to answer; errors go to the forwarding path
        return match frame.get(14 + ihl) {
            Some(&ICMP_ECHO_REQUEST) => Punt::ToKernel,
            _ => Punt::Continue,
        };
    }
    if ethertype == ETH_IPV6 {
        return classify_ipv6(frame, addrs);
    }
    if ethertype == ETH_ARP {
        // Ethernet/IPv4 ARP: op at 20, target protocol address at 38
        return match (frame.get(20..22), frame.get(38..42)) {
            (Some(op), Some(target))
                if op == ARP_REQUEST && addrs.is_own(IpAddr::V4(ipv4_at(target))) =>
            {
                Punt::ToKernel
            }
            _ => Punt::CopyToKernel,
        };
    }
    Punt::Continue
}

fn ipv6_at(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
    Some(std::net::Ipv6Addr::from(a))
}

/// [`classify`] for an untagged IPv6 frame (see the module docs).
fn classify_ipv6(frame: &[u8], addrs: &PortAddrs) -> Punt {
    let Some(ip) = frame.get(14..54) else {
        return Punt::Continue;
    };
    if frame[0] & 1 == 0 && frame[..6] != addrs.mac.0 {
        return Punt::Continue;
    }
    let Some(dst) = ipv6_at(&ip[24..40]) else {
        return Punt::Continue;
    };
    let next = ip[6];
    let icmp_type = frame.get(54).copied();
    if next == PROTO_ICMPV6 {
        match icmp_type {
            // Ethernet/IPv6 NS: the target right after the 8-byte header
            Some(ND_SOLICIT) => {
                return match frame.get(62..78).and_then(ipv6_at) {
                    Some(t) if addrs.is_own(IpAddr::V6(t)) => Punt::ToKernel,
                    _ => Punt::Continue,
                };
            }
            Some(ND_ADVERT) => return Punt::CopyToKernel,
            _ => {}
        }
    }
    if dst.is_multicast() {
        // an MLD query: the kernel answers for its addresses' groups, vsd
        // for the VIPs' (super::mld)
        if crate::wire::mld::is_query(&frame[14..]) {
            return Punt::CopyToKernel;
        }
        return Punt::ToKernel;
    }
    if !addrs.is_own(IpAddr::V6(dst)) || next == PROTO_TCP || next == PROTO_UDP {
        return Punt::Continue;
    }
    if IPV6_EXT_HEADERS.contains(&next) {
        return Punt::Continue;
    }
    if next != PROTO_ICMPV6 {
        return Punt::ToKernel;
    }
    // errors (types below 128) are about connections: forwarding path
    match icmp_type {
        Some(t) if t >= 128 => Punt::ToKernel,
        _ => Punt::Continue,
    }
}

/// The index of the port whose own address is the IP destination of
/// `frame` and that has a twin (for TCP/UDP the forwarding path refused).
pub fn own_port_of<'a>(
    frame: &[u8],
    ports: impl Iterator<Item = (&'a PortAddrs, bool)>,
) -> Option<usize> {
    let dst = match frame.get(12..14)? {
        e if e == ETH_IPV4 => IpAddr::V4(ipv4_at(frame.get(30..34)?)),
        e if e == ETH_IPV6 => IpAddr::V6(ipv6_at(frame.get(38..54)?)?),
        _ => return None,
    };
    ports
        .enumerate()
        .find(|(_, (a, has_twin))| *has_twin && a.is_own(dst))
        .map(|(i, _)| i)
}

/// Per-worker punt budget: [`PUNT_BUDGET_PER_MS`] packets per millisecond.
#[derive(Debug, Default)]
pub struct PuntBudget {
    ms: u64,
    used: u32,
}

impl PuntBudget {
    /// Take one packet's worth; false once this millisecond's is spent.
    #[inline]
    pub fn take(&mut self, now_ms: u64) -> bool {
        if now_ms != self.ms {
            self.ms = now_ms;
            self.used = 0;
        }
        if self.used >= PUNT_BUDGET_PER_MS {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const OWN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const OWN6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);

    fn addrs() -> PortAddrs {
        PortAddrs::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            vec![(IpAddr::V4(OWN), 24), (IpAddr::V6(OWN6), 64)],
            vec![IpAddr::V4(VIP), IpAddr::V6(VIP6)],
            vec![],
        )
    }

    fn ipv4(dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&ETH_IPV4);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
        ip[16..20].copy_from_slice(&dst.octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    fn arp(op: u16, target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ETH_ARP);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 198, 18, 0, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        f
    }

    #[test]
    fn kernel_protocols_to_own_address_go_up() {
        let a = addrs();
        assert_eq!(classify(&ipv4(OWN, 112, &[0; 20]), &a), Punt::ToKernel);
        assert_eq!(classify(&ipv4(OWN, 89, &[0; 20]), &a), Punt::ToKernel);
        assert_eq!(classify(&ipv4(OWN, 2, &[0; 8]), &a), Punt::ToKernel);
        assert_eq!(
            classify(&ipv4(OWN, PROTO_ICMP, &[8, 0, 0, 0]), &a),
            Punt::ToKernel
        );
        // ICMP errors and TCP/UDP: the forwarding path decides first
        assert_eq!(
            classify(&ipv4(OWN, PROTO_ICMP, &[3, 4, 0, 0]), &a),
            Punt::Continue
        );
        assert_eq!(
            classify(&ipv4(OWN, PROTO_TCP, &[0; 20]), &a),
            Punt::Continue
        );
        assert_eq!(classify(&ipv4(OWN, PROTO_UDP, &[0; 8]), &a), Punt::Continue);
    }

    #[test]
    fn vips_and_transit_stay_in_the_data_plane() {
        let a = addrs();
        assert_eq!(
            classify(&ipv4(VIP, PROTO_ICMP, &[8, 0, 0, 0]), &a),
            Punt::Continue
        );
        assert_eq!(classify(&ipv4(VIP, 112, &[0; 20]), &a), Punt::Continue);
        let other = Ipv4Addr::new(198, 18, 1, 9);
        assert_eq!(classify(&ipv4(other, 89, &[0; 20]), &a), Punt::Continue);
        assert_eq!(classify(&[0u8; 10], &a), Punt::Continue);
        assert_eq!(classify(&ipv4(OWN, 112, &[])[..30], &a), Punt::Continue);
        let mut other_mac = ipv4(OWN, 112, &[0; 20]);
        other_mac[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        assert_eq!(classify(&other_mac, &a), Punt::Continue);
    }

    #[test]
    fn multicast_goes_up() {
        let a = addrs();
        let vrrp = Ipv4Addr::new(224, 0, 0, 18);
        assert_eq!(classify(&ipv4(vrrp, 112, &[0; 20]), &a), Punt::ToKernel);
        let group = Ipv4Addr::new(239, 1, 2, 3);
        assert_eq!(
            classify(&ipv4(group, PROTO_UDP, &[0; 8]), &a),
            Punt::ToKernel
        );
    }

    #[test]
    fn arp_for_own_address_is_the_kernels_the_rest_is_copied() {
        let a = addrs();
        assert_eq!(classify(&arp(1, OWN), &a), Punt::ToKernel);
        assert_eq!(classify(&arp(1, VIP), &a), Punt::CopyToKernel);
        assert_eq!(classify(&arp(2, OWN), &a), Punt::CopyToKernel);
        assert_eq!(classify(&arp(1, OWN)[..30], &a), Punt::CopyToKernel);
    }

    #[test]
    fn refused_tcp_finds_the_port_owning_the_address() {
        let a = addrs();
        let mut b = addrs();
        b.addrs = vec![(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)), 24)];
        let f = ipv4(OWN, PROTO_TCP, &[0; 20]);
        assert_eq!(
            own_port_of(&f, [(&b, true), (&a, true)].into_iter()),
            Some(1)
        );
        assert_eq!(own_port_of(&f, [(&b, true), (&a, false)].into_iter()), None);
        let f = ipv4(VIP, PROTO_TCP, &[0; 20]);
        assert_eq!(own_port_of(&f, [(&a, true)].into_iter()), None);
    }

    fn ipv6(dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
        let dst_mac = if dst.is_multicast() {
            crate::wire::icmpv6::multicast_mac(&dst).0
        } else {
            [2, 0, 0, 0, 0, 1]
        };
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ETH_IPV6);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        ip[6] = next;
        ip[7] = 255;
        ip[8..24].copy_from_slice(&Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2).octets());
        ip[24..40].copy_from_slice(&dst.octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    fn nd(msg_type: u8, target: Ipv6Addr) -> Vec<u8> {
        let mut icmp = vec![msg_type, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp
    }

    #[test]
    fn ipv6_follows_the_ipv4_rules() {
        let a = addrs();
        let group = |t: &Ipv6Addr| crate::wire::icmpv6::solicited_node(t);
        let ll = a.link_local();
        // neighbor discovery: solicitations for the kernel's addresses go up
        // (DAD probes too), for VIPs stay; advertisements are copied
        assert_eq!(
            classify(&ipv6(group(&OWN6), 58, &nd(135, OWN6)), &a),
            Punt::ToKernel
        );
        assert_eq!(
            classify(&ipv6(group(&ll), 58, &nd(135, ll)), &a),
            Punt::ToKernel
        );
        assert_eq!(
            classify(&ipv6(OWN6, 58, &nd(135, OWN6)), &a),
            Punt::ToKernel
        );
        assert_eq!(
            classify(&ipv6(group(&VIP6), 58, &nd(135, VIP6)), &a),
            Punt::Continue
        );
        assert_eq!(
            classify(&ipv6(OWN6, 58, &nd(136, VIP6)), &a),
            Punt::CopyToKernel
        );
        let all_nodes = crate::wire::icmpv6::ALL_NODES;
        assert_eq!(
            classify(&ipv6(all_nodes, 58, &nd(136, VIP6)), &a),
            Punt::CopyToKernel
        );
        // other multicast: up (router advertisements, MLD, VRRPv3, OSPFv3)
        assert_eq!(
            classify(&ipv6(all_nodes, 58, &[134, 0, 0, 0]), &a),
            Punt::ToKernel
        );
        let vrrp = "ff02::12".parse().unwrap();
        assert_eq!(classify(&ipv6(vrrp, 112, &[0; 8]), &a), Punt::ToKernel);
        // an MLD query (Hop-by-Hop, ICMPv6 130) is copied: the kernel
        // answers for its addresses' groups, vsd for the VIPs'; an MLD
        // report goes up
        let mut query = crate::wire::mld::HOP_BY_HOP_ROUTER_ALERT.to_vec();
        query.extend_from_slice(&[130, 0, 0, 0, 0, 0, 0, 0]);
        query.extend_from_slice(&[0; 20]);
        assert_eq!(
            classify(&ipv6(all_nodes, 0, &query), &a),
            Punt::CopyToKernel
        );
        query[8] = 143;
        let routers = crate::wire::mld::ALL_MLDV2_ROUTERS;
        assert_eq!(classify(&ipv6(routers, 0, &query), &a), Punt::ToKernel);
        // to an own address: echo and other protocols up, TCP/UDP,
        // extension headers and ICMPv6 errors to the forwarding path first
        assert_eq!(
            classify(&ipv6(OWN6, 58, &[128, 0, 0, 0]), &a),
            Punt::ToKernel
        );
        assert_eq!(classify(&ipv6(ll, 58, &[129, 0, 0, 0]), &a), Punt::ToKernel);
        assert_eq!(classify(&ipv6(OWN6, 89, &[0; 8]), &a), Punt::ToKernel);
        assert_eq!(classify(&ipv6(OWN6, 58, &[1, 4, 0, 0]), &a), Punt::Continue);
        assert_eq!(
            classify(&ipv6(OWN6, PROTO_TCP, &[0; 20]), &a),
            Punt::Continue
        );
        assert_eq!(
            classify(&ipv6(OWN6, PROTO_UDP, &[0; 8]), &a),
            Punt::Continue
        );
        assert_eq!(classify(&ipv6(OWN6, 44, &[0; 8]), &a), Punt::Continue);
        // VIPs and transit stay in the data plane
        assert_eq!(
            classify(&ipv6(VIP6, 58, &[128, 0, 0, 0]), &a),
            Punt::Continue
        );
        let other = "2001:2::99".parse().unwrap();
        assert_eq!(classify(&ipv6(other, 89, &[0; 8]), &a), Punt::Continue);
        assert_eq!(classify(&ipv6(OWN6, 58, &[])[..40], &a), Punt::Continue);
        // refused TCP to an own IPv6 address finds its port
        let f = ipv6(OWN6, PROTO_TCP, &[0; 20]);
        assert_eq!(own_port_of(&f, [(&a, true)].into_iter()), Some(0));
        let f = ipv6(VIP6, PROTO_TCP, &[0; 20]);
        assert_eq!(own_port_of(&f, [(&a, true)].into_iter()), None);
    }

    #[test]
    fn budget_refills_every_millisecond() {
        let mut b = PuntBudget::default();
        for _ in 0..PUNT_BUDGET_PER_MS {
            assert!(b.take(5));
        }
        assert!(!b.take(5));
        assert!(b.take(6));
    }
}
