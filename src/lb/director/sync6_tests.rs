//! Connection sync of the IPv6 table: the master feeds `ip_vs_sync_v6`
//! records for IPv6 connections and templates, they survive the wire
//! (encode, decode) unchanged, and a backup core installs them into its
//! IPv6 table and forwards the connection's next packet exactly as the
//! master did; NAT64 connections are not sent but counted.

use super::*;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::lb::sync::{SyncRecord, SyncedConn};
use crate::wire::ipvs_sync::{decode, flags, SyncConn, SyncMessageBuilder};
use crate::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const CIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xc, 0, 0, 0, 7);
const RIPS: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x12),
];
const LIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
const RIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

fn eth() -> PacketBuilder {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
}

fn seg(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8, n: u32) -> Vec<u8> {
    eth()
        .ipv6(src.0, dst.0)
        .tcp(src.1, dst.1, flags)
        .seq(1000 + n)
        .ack(5000)
        .payload(b"x")
        .build()
}

/// A core with one IPv6 TCP service (persistent: templates too) over
/// both servers; `first` rotates rr so master and backup would differ.
fn director(method: FwdMethod, first: usize) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V6(VIP), 80);
    let mut t = ServiceTable::new(8);
    let mut c = ServiceConfig::with_scheduler("rr");
    c.local_addresses = vec![IpAddr::V6(LIP)];
    c.persistence = Some(300);
    t.add_service(key, c).unwrap();
    for i in (0..2).rev() {
        let rip = RIPS[(first + i) % 2];
        t.add_dest(&key, RealServerConfig::new(IpAddr::V6(rip), 8080, method))
            .unwrap();
    }
    let cfg = CoreLbConfig {
        conn_capacity: 256,
        conn_capacity6: 256,
        hash_seed: Some(11 + first as u64),
        local_port_min: 20000 + 1000 * first as u16,
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap()
}

fn run(lb: &mut CoreLb, frame: &[u8]) -> (FwdVerdict, Vec<u8>) {
    let mut p = VecPacket::new(frame);
    let v = lb.process(&mut p, None, 0);
    (v, p.to_vec())
}

fn v6_at(frame: &[u8], at: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&frame[at..at + 16]).unwrap())
}

/// Client packets 1..=n (SYN, then ACKs), the server's SYN-ACK to where
/// the SYN went; every record fed.
fn drive(lb: &mut CoreLb, n: u32) -> Vec<SyncConn> {
    packets(lb, n);
    let mut fed = Vec::new();
    lb.take_sync_records(&mut fed);
    fed
}

/// The packets of [`drive`], records left where the core put them.
fn packets(lb: &mut CoreLb, n: u32) {
    let (c, v) = ((CIP, 40000), (VIP, 80));
    for i in 1..=n {
        let flags = if i == 1 { tcp::SYN } else { tcp::ACK };
        let (verdict, out) = run(lb, &seg(c, v, flags, i));
        assert!(matches!(verdict, FwdVerdict::Forward { .. }), "{verdict:?}");
        if i == 1 {
            let (src, dst) = (v6_at(&out, 14 + 8), v6_at(&out, 14 + 24));
            let sport = u16::from_be_bytes([out[54], out[55]]);
            let (rv, _) = run(lb, &seg((dst, 8080), (src, sport), tcp::SYN | tcp::ACK, 0));
            assert!(matches!(rv, FwdVerdict::Forward { .. }), "{rv:?}");
        }
    }
}

/// Through a message and back.
fn over_the_wire(recs: &[SyncConn]) -> Vec<SyncConn> {
    let mut b = SyncMessageBuilder::new(1, 1452).unwrap();
    let mut msgs = Vec::new();
    for r in recs {
        msgs.extend(b.push(r).unwrap());
    }
    msgs.extend(b.finish());
    msgs.iter()
        .flat_map(|m| decode(m, 1).unwrap().entries)
        .map(|e| e.unwrap())
        .collect()
}

fn takeover(method: FwdMethod) {
    let mut master = director(method, 0);
    master.set_sync_master(true);
    let sent = drive(&mut master, 3);
    // the connection (once, at the threshold) and its template (created,
    // then assured: the kernel syncs a template on its state changes),
    // all IPv6 entries
    let is_template = |s: &SyncConn| s.flags & flags::TEMPLATE != 0;
    assert_eq!(
        sent.iter().filter(|s| !is_template(s)).count(),
        1,
        "{sent:#?}"
    );
    assert!(sent.iter().any(is_template), "{sent:#?}");
    assert!(sent.iter().all(|s| s.client.is_ipv6() && s.real.is_ipv6()));
    let got = over_the_wire(&sent);
    // unchanged but for the SYNC flag a receiver sets (as the kernel)
    let unsynced = |s: &SyncConn| SyncConn {
        flags: s.flags & !flags::SYNC,
        ..*s
    };
    let back: Vec<SyncConn> = got.iter().map(unsynced).collect();
    assert_eq!(back, sent, "an IPv6 entry survives the wire");
    // the worker's record form round-trips too
    for s in &sent {
        let rec = SyncRecord::<u128>::from_wire(s).unwrap();
        assert_eq!(rec.to_wire(), *s);
        assert!(SyncRecord::<u32>::from_wire(s).is_none());
    }
    let conn = got.iter().find(|s| !is_template(s)).unwrap();
    assert_eq!(conn.real.ip(), IpAddr::V6(RIPS[0]));
    if method == FwdMethod::FullNat {
        assert_eq!(conn.fullnat_local.map(|l| l.ip()), Some(IpAddr::V6(LIP)));
    }

    let mut backup = director(method, 1);
    for s in &got {
        let c = SyncedConn::<u128>::from_sync(s).unwrap();
        assert!(backup.install_synced6(&c, false, 0).is_ok(), "{s:?}");
        // an IPv6 entry is no IPv4 one
        assert!(SyncedConn::<u32>::from_sync(s).is_err());
    }
    let c = SyncedConn::<u128>::from_sync(conn).unwrap();
    assert_eq!(
        backup.install_synced6(&c, false, 0),
        Ok(SyncInstalled::Updated)
    );
    assert_eq!(backup.conns().len(), 0);
    assert_eq!(backup.conns6().template_count(), 1);
    let (_, entry) = backup
        .conns6()
        .iter()
        .find(|(_, c)| !c.is_template())
        .unwrap();
    assert!(entry.is_synced());
    assert_eq!(entry.tcp_state(), Some(TcpState::Established));
    let next = seg((CIP, 40000), (VIP, 80), tcp::ACK, 4);
    let (mv, mout) = run(&mut master, &next);
    let (bv, bout) = run(&mut backup, &next);
    assert_eq!(
        bv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V6(RIPS[0])
        }
    );
    assert_eq!((bv, bout), (mv, mout));
}

#[test]
fn ipv6_nat_takeover() {
    takeover(FwdMethod::Masq);
}

#[test]
fn ipv6_fullnat_takeover() {
    takeover(FwdMethod::FullNat);
}

/// A core with an IPv6 UDP service NAT64-ed to an IPv4 server.
fn nat64_director() -> CoreLb {
    let key = ServiceKey::udp(IpAddr::V6(VIP), 53);
    let mut t = ServiceTable::new(8);
    let mut c = ServiceConfig::with_scheduler("rr");
    c.local_addresses = vec![IpAddr::V4(LIP4)];
    t.add_service(key, c).unwrap();
    t.add_dest(
        &key,
        RealServerConfig::new(IpAddr::V4(RIP4), 53, FwdMethod::FullNat),
    )
    .unwrap();
    let cfg = CoreLbConfig {
        conn_capacity: 64,
        conn_capacity6: 64,
        hash_seed: Some(3),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap()
}

fn nat64_query() -> Vec<u8> {
    eth().ipv6(CIP, VIP).udp(5353, 53).payload(b"query").build()
}

#[test]
fn nat64_connections_are_counted_not_sent() {
    let mut lb = nat64_director();
    lb.set_sync_master(true);
    let q = nat64_query();
    let mut fed = Vec::new();
    for _ in 0..3 {
        let (v, _) = run(&mut lb, &q);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP4)
            }
        );
        lb.take_sync_records(&mut fed);
    }
    assert!(fed.is_empty(), "{fed:#?}");
    // the third packet is the kernel's threshold: one connection not sent
    assert_eq!(lb.take_sync_mixed_family(), 1);
    assert_eq!(lb.take_sync_mixed_family(), 0);
}

/// Through the workers' feeds: the master's IPv6 records leave on the
/// IPv6 queue, a backup worker installs what its IPv6 inbox holds.
#[test]
fn ipv6_through_the_worker_feeds() {
    use crate::dataplane::sync_feed::{SyncDelivery, SyncFeed};
    use std::sync::atomic::Ordering;
    let mut master = director(FwdMethod::FullNat, 0);
    let feed = SyncFeed::default();
    feed.master.store(true, Ordering::Relaxed);
    feed.exchange(&mut master, 0, None);
    packets(&mut master, 3);
    feed.exchange(&mut master, 0, None);
    assert!(feed.out.is_empty());
    let recs: Vec<SyncRecord<u128>> = std::iter::from_fn(|| feed.out6.pop()).collect();
    assert!(recs.len() >= 2, "{recs:?}");
    assert_eq!(feed.counters.fed.load(Ordering::Relaxed), recs.len() as u64);

    let mut backup = director(FwdMethod::FullNat, 1);
    let bfeed = SyncFeed::default();
    for r in &recs {
        let conn = SyncedConn::<u128>::from_sync(&r.to_wire()).unwrap();
        let d = SyncDelivery {
            conn,
            redirect: false,
        };
        assert!(bfeed.inbox6.push(d).is_ok());
    }
    bfeed.exchange(&mut backup, 0, None);
    let c = &bfeed.counters;
    let installed = c.installed.load(Ordering::Relaxed) + c.updated.load(Ordering::Relaxed);
    assert_eq!(installed, recs.len() as u64);
    assert_eq!(backup.conns().len(), 0);
    assert_eq!(backup.conns6().template_count(), 1);
    assert_eq!(backup.conns6().len(), 2, "the connection and its template");
}

/// The feed counts NAT64 connections it does not send.
#[test]
fn feed_counts_mixed_family_connections() {
    use crate::dataplane::sync_feed::SyncFeed;
    use std::sync::atomic::Ordering;
    let mut lb = nat64_director();
    let feed = SyncFeed::default();
    feed.master.store(true, Ordering::Relaxed);
    feed.exchange(&mut lb, 0, None);
    for _ in 0..3 {
        run(&mut lb, &nat64_query());
    }
    feed.exchange(&mut lb, 0, None);
    assert!(feed.out.is_empty() && feed.out6.is_empty());
    assert_eq!(feed.counters.mixed_family.load(Ordering::Relaxed), 1);
    let names: Vec<&str> = feed.counters.values().iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"not_sent_mixed_family"));
}
