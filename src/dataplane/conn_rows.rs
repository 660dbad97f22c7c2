//! A worker's connections as `vsadm -Lc` lists them.
//!
//! **What.** [`conn_rows`] walks both of a core's connection tables (IPv4
//! and IPv6, including persistence templates and FULLNAT connections) and
//! turns each entry into a [`ConnRow`] of family-generic socket addresses.
//! An IPv6 connection whose real server is IPv4 (TUN IPv6-in-IPv4, NAT64)
//! holds that server IPv4-mapped; it is listed as the IPv4 address it
//! stands for, as the kernel lists a connection by its `daf`.
//!
//! **Why.** The control thread formats rows (`-Lnc`, `--persistent-conn`,
//! JSON, Prometheus counts); the worker only copies them out, on request,
//! between bursts (never per packet).
//!
//! **Failure modes.** None: NAT redirect entries (a second entry for a
//! connection another core owns) are skipped, so each connection is listed
//! once; rows beyond `limit` are counted in the total but not copied.

use std::net::SocketAddr;

use crate::lb::conn::{Conn, Endpoint};
use crate::lb::director::{is_redirect, CoreLb};
use crate::lb::family::Family;

/// One connection as `vsadm -Lc` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRow {
    /// "TCP", "UDP" or "IP" (fwmark templates).
    pub proto: &'static str,
    pub expires_ms: u64,
    pub state: &'static str,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub real: SocketAddr,
}

fn sock<A: Family>(e: Endpoint<A::Key>) -> SocketAddr {
    SocketAddr::new(A::from_key(e.addr).ip(), e.port)
}

fn row<A: Family>(c: &Conn<A::Key>, now_ms: u64) -> ConnRow {
    ConnRow {
        proto: c.proto_name(),
        expires_ms: c.expires_in_ms(now_ms),
        state: c.state_name(),
        client: sock::<A>(c.client()),
        vip: sock::<A>(c.virt()),
        real: sock::<A>(c.real()),
    }
}

/// Up to `limit` rows of `lb`'s connections (IPv4 first, then IPv6) and
/// how many connections it holds in all (redirect entries not counted).
pub fn conn_rows(lb: &CoreLb, now_ms: u64, limit: usize) -> (Vec<ConnRow>, u64) {
    let mut rows = Vec::new();
    let mut total = 0u64;
    let v4 = lb.conns().iter().map(|(_, c)| c);
    for c in v4.filter(|c| !is_redirect(c)) {
        total += 1;
        if rows.len() < limit {
            rows.push(row::<std::net::Ipv4Addr>(c, now_ms));
        }
    }
    let v6 = lb.conns6().iter().map(|(_, c)| c);
    for c in v6.filter(|c| !is_redirect(c)) {
        total += 1;
        if rows.len() < limit {
            rows.push(row::<std::net::Ipv6Addr>(c, now_ms));
        }
    }
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::director::CoreLbConfig;
    use crate::lb::load::GlobalLoad;
    use crate::lb::packet::VecPacket;
    use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
    use crate::lb::types::FwdMethod;
    use crate::wire::{tcp, MacAddr, PacketBuilder};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xc, 0, 0, 0, 7);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
    const RIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x11);
    const CIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 7);
    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
    const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

    fn syn(src: (IpAddr, u16), dst: (IpAddr, u16)) -> Vec<u8> {
        let e = PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let e = match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => e.ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => e.ipv6(s, d),
            _ => unreachable!("test tuples are of one family"),
        };
        e.ttl(64).tcp(src.1, dst.1, tcp::SYN).seq(1).build()
    }

    /// An IPv4 NAT service, an IPv6 NAT service with persistence (so a
    /// template too) and an IPv6 NAT64 FULLNAT service (IPv4 server).
    fn lb() -> CoreLb {
        let mut t = ServiceTable::new(16);
        let mut add = |vip: IpAddr, vport: u16, rip: IpAddr, m: FwdMethod, cfg: ServiceConfig| {
            let key = ServiceKey::tcp(vip, vport);
            t.add_service(key, cfg).unwrap();
            t.add_dest(&key, RealServerConfig::new(rip, 8080, m))
                .unwrap();
        };
        let rr = ServiceConfig::with_scheduler("rr");
        add(VIP4.into(), 80, RIP4.into(), FwdMethod::Masq, rr.clone());
        let mut persistent = rr.clone();
        persistent.persistence = Some(300);
        add(VIP6.into(), 80, RIP6.into(), FwdMethod::Masq, persistent);
        let mut nat64 = rr;
        nat64.local_addresses = vec![IpAddr::V4(LIP4)];
        add(VIP6.into(), 443, RIP4.into(), FwdMethod::FullNat, nat64);
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let c = CoreLbConfig {
            conn_capacity: 64,
            conn_capacity6: 64,
            hash_seed: Some(7),
            ..CoreLbConfig::default()
        };
        CoreLb::new(c, t.snapshot(), global, None, 0).unwrap()
    }

    fn send(lb: &mut CoreLb, frame: &[u8]) {
        let mut p = VecPacket::with_room(frame, 128, 1400);
        let v = lb.process(&mut p, None, 1000);
        assert!(
            matches!(v, crate::lb::director::FwdVerdict::Forward { .. }),
            "{v:?}"
        );
    }

    #[test]
    fn lists_ipv6_connections_templates_and_nat64() {
        let mut lb = lb();
        send(&mut lb, &syn((CIP4.into(), 1000), (VIP4.into(), 80)));
        send(&mut lb, &syn((CIP6.into(), 2000), (VIP6.into(), 80)));
        send(&mut lb, &syn((CIP6.into(), 3000), (VIP6.into(), 443)));
        let (rows, total) = conn_rows(&lb, 1000, 100);
        assert_eq!(total, 4, "{rows:#?}");
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let find = |client: &str, vip: &str| {
            rows.iter()
                .find(|r| r.client == sa(client) && r.vip == sa(vip))
                .copied()
                .unwrap_or_else(|| panic!("no row {client} -> {vip} in {rows:#?}"))
        };
        let r = find("198.18.9.7:1000", "198.18.0.100:80");
        assert_eq!((r.proto, r.real), ("TCP", sa("198.18.1.11:8080")));
        let r = find("[2001:2:0:c::7]:2000", "[2001:2::64]:80");
        assert_eq!((r.proto, r.state), ("TCP", "SYN_RECV"));
        assert_eq!(r.real, sa("[2001:2:0:1::11]:8080"));
        // the persistence template: client port 0, the service's port
        let t = find("[2001:2:0:c::7]:0", "[2001:2::64]:80");
        assert_eq!((t.state, t.real), ("NONE", sa("[2001:2:0:1::11]:8080")));
        // NAT64: the IPv4 server, not its IPv4-mapped form
        let r = find("[2001:2:0:c::7]:3000", "[2001:2::64]:443");
        assert_eq!(r.real, sa("198.18.1.11:8080"));
        // the limit caps the rows, not the total
        let (rows, total) = conn_rows(&lb, 1000, 1);
        assert_eq!((rows.len(), total), (1, 4));
    }
}
