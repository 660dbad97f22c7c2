//! Connection sync through two directors' cores: the master's decision
//! feeds records at the kernel's points; a backup core installs them and
//! forwards the connection's next packets exactly as the master did (NAT:
//! same real server; FULLNAT: same local address and port).

use super::*;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::lb::sync::SyncedConn;
use crate::wire::ipvs_sync::{decode, SyncConn, SyncMessageBuilder};
use crate::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const RIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 1, 11), Ipv4Addr::new(198, 18, 1, 12)];
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

fn seg(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, n: u32) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src.0, dst.0)
        .tcp(src.1, dst.1, flags)
        .seq(1000 + n)
        .ack(5000)
        .payload(b"x")
        .build()
}

/// A director core with one TCP service over both servers. `first`
/// rotates the rr start so master and backup would pick differently.
fn director(method: FwdMethod, first: usize, pool: &[Ipv4Addr]) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(8);
    let mut c = ServiceConfig::with_scheduler("rr");
    c.local_addresses = pool.iter().map(|a| IpAddr::V4(*a)).collect();
    t.add_service(key, c).unwrap();
    // added last = tried first
    for i in (0..2).rev() {
        let rip = RIPS[(first + i) % 2];
        t.add_dest(&key, RealServerConfig::new(IpAddr::V4(rip), 8080, method))
            .unwrap();
    }
    let cfg = CoreLbConfig {
        conn_capacity: 1024,
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

/// Client packets 1..=n of one connection (SYN, then ACKs) through `lb`,
/// with the server's SYN-ACK to wherever the SYN went; the records fed
/// after each client packet.
fn drive(lb: &mut CoreLb, n: u32) -> Vec<Vec<SyncConn>> {
    let (c, v) = ((CIP, 40000), (VIP, 80));
    let mut fed = Vec::new();
    for i in 1..=n {
        let flags = if i == 1 { tcp::SYN } else { tcp::ACK };
        let (verdict, out) = run(lb, &seg(c, v, flags, i));
        assert!(matches!(verdict, FwdVerdict::Forward { .. }), "{verdict:?}");
        if i == 1 {
            let ip = crate::wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
            let l4 = &out[14 + ip.header_len()..];
            let sport = u16::from_be_bytes([l4[0], l4[1]]);
            let reply = seg(
                (ip.dst_addr(), 8080),
                (ip.src_addr(), sport),
                tcp::SYN | tcp::ACK,
                0,
            );
            let (rv, _) = run(lb, &reply);
            assert!(matches!(rv, FwdVerdict::Forward { .. }), "{rv:?}");
        }
        let mut recs = Vec::new();
        lb.take_sync_records(&mut recs);
        fed.push(recs);
    }
    fed
}

#[test]
fn master_feeds_at_the_kernels_points() {
    let mut lb = director(FwdMethod::Masq, 0, &[]);
    // off: nothing
    assert!(drive(&mut lb, 4).iter().all(Vec::is_empty));
    let mut lb = director(FwdMethod::Masq, 0, &[]);
    lb.set_sync_master(true);
    let fed = drive(&mut lb, 60);
    // packet 3 (the kernel's threshold) and 53 (3 + period 50)
    let at: Vec<usize> = (0..fed.len())
        .filter(|i| !fed[*i].is_empty())
        .map(|i| i + 1)
        .collect();
    assert_eq!(at, [3, 53]);
    let rec = fed[2][0];
    assert_eq!(rec.state, TcpState::Established as u16);
    assert_eq!(rec.real.ip(), IpAddr::V4(RIPS[0]));
}

/// The master's records through the wire into a backup core: the next
/// packet of the connection leaves the backup exactly as it left the
/// master, although the backup would have scheduled another server.
fn takeover(method: FwdMethod) {
    let pool = [LIP];
    let mut master = director(method, 0, &pool);
    master.set_sync_master(true);
    let fed = drive(&mut master, 3);
    let recs: Vec<SyncConn> = fed.into_iter().flatten().collect();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let mut b = SyncMessageBuilder::new(1, 1472).unwrap();
    assert!(b.push(&recs[0]).unwrap().is_none());
    let msg = decode(&b.finish().unwrap(), 1).unwrap();
    let got = SyncedConn::<u32>::from_sync(msg.entries[0].as_ref().unwrap()).unwrap();

    let mut backup = director(method, 1, &pool);
    assert_eq!(
        backup.install_synced(&got, false, 0),
        Ok(SyncInstalled::New)
    );
    let (id, _) = backup
        .conns()
        .iter()
        .find(|(_, c)| !c.is_template())
        .unwrap();
    let entry = *backup.conns().get(id).unwrap();
    assert!(entry.is_synced());
    assert_eq!(entry.fwd(), method);
    assert_eq!(entry.tcp_state(), Some(TcpState::Established));
    assert_eq!(entry.timeout_ms(), 900_000);
    assert!(entry.is_active());
    let mine = master
        .conns()
        .iter()
        .find(|(_, c)| !c.is_template())
        .unwrap()
        .1;
    assert!(!mine.is_synced());
    assert_eq!((entry.local(), entry.real()), (mine.local(), mine.real()));
    assert_eq!(
        backup.install_synced(&got, false, 0),
        Ok(SyncInstalled::Updated)
    );
    let next = seg((CIP, 40000), (VIP, 80), tcp::ACK, 4);
    let (mv, mout) = run(&mut master, &next);
    let (bv, bout) = run(&mut backup, &next);
    assert_eq!(bv, mv);
    assert_eq!(bout, mout);
    assert_eq!(
        bv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[0])
        }
    );
    // while a new connection on the backup goes elsewhere
    let (nv, _) = run(&mut backup, &seg((CIP, 40001), (VIP, 80), tcp::SYN, 1));
    assert_eq!(
        nv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[1])
        }
    );

    // a backup with no local address for the service refuses FULLNAT
    if method == FwdMethod::FullNat {
        let mut other = director(method, 1, &[]);
        assert_eq!(
            other.install_synced(&got, false, 0),
            Err(SyncRefused::LocalAddrNotInPool)
        );
    }
    // a backup without the service refuses it
    let mut none = director(method, 1, &pool);
    let mut stray = got;
    stray.virt.port = 81;
    assert_eq!(
        none.install_synced(&stray, false, 0),
        Err(SyncRefused::NoService)
    );
    let mut gone = got;
    gone.real.addr = u32::from(Ipv4Addr::new(198, 18, 1, 99));
    assert_eq!(
        none.install_synced(&gone, false, 0),
        Err(SyncRefused::NoDest)
    );
}

#[test]
fn nat_connection_continues_on_the_backup() {
    takeover(FwdMethod::Masq);
}

#[test]
fn fullnat_connection_continues_on_the_backup() {
    takeover(FwdMethod::FullNat);
}

/// Directors behind ECMP have a local address pool each. A peer's FULLNAT
/// connection (its local address not in this director's pool) is
/// installed from sync; requests the router moves here leave exactly as
/// they left the peer, and once the peer is gone the real server's
/// replies to the peer's local address reach the client from here. This
/// director's own new connections keep to its own pool.
#[test]
fn fullnat_connection_of_a_peer_with_another_pool() {
    let peer_lip = Ipv4Addr::new(198, 18, 2, 2);
    let mut peer = director(FwdMethod::FullNat, 0, &[LIP]);
    peer.set_sync_master(true);
    let recs: Vec<SyncConn> = drive(&mut peer, 3).into_iter().flatten().collect();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let got = SyncedConn::<u32>::from_sync(&recs[0]).unwrap();
    let local = got
        .local
        .expect("a FULLNAT record carries its local endpoint");
    assert_eq!(Ipv4Addr::from(local.addr), LIP);

    let mut me = director(FwdMethod::FullNat, 1, &[peer_lip]);
    assert_eq!(me.install_synced(&got, false, 0), Ok(SyncInstalled::New));
    // a request the router now sends here
    let next = seg((CIP, 40000), (VIP, 80), tcp::ACK, 4);
    let (pv, pout) = run(&mut peer, &next);
    let (mv, mout) = run(&mut me, &next);
    assert_eq!(mv, pv);
    assert_eq!(mout, pout);
    // the server's reply to the peer's local address
    let rip = Ipv4Addr::from(got.real.addr);
    let reply = seg((rip, 8080), (LIP, local.port), tcp::ACK, 9);
    let (pv, pout) = run(&mut peer, &reply);
    let (mv, mout) = run(&mut me, &reply);
    assert_eq!(
        pv,
        FwdVerdict::Forward {
            next_hop: CIP.into()
        }
    );
    assert_eq!(mv, pv);
    assert_eq!(mout, pout);
    // this director's own connections take its own address
    let (nv, nout) = run(&mut me, &seg((CIP, 40001), (VIP, 80), tcp::SYN, 1));
    assert!(matches!(nv, FwdVerdict::Forward { .. }), "{nv:?}");
    let ip = crate::wire::Ipv4Packet::new_checked(&nout[14..]).unwrap();
    assert_eq!(ip.src_addr(), peer_lip);
}

/// The knobs reach the decision through the worker's feed: with period 0
/// a connection is sent once, at the threshold.
#[test]
fn settings_from_the_feed_change_the_decision() {
    use crate::dataplane::sync_feed::SyncFeed;
    use crate::lb::sync::SyncSettings;
    let mut lb = director(FwdMethod::Masq, 0, &[]);
    let feed = SyncFeed::default();
    let once = SyncSettings {
        period: 0,
        ..SyncSettings::default()
    };
    feed.set_settings(&once);
    feed.master
        .store(true, std::sync::atomic::Ordering::Relaxed);
    feed.exchange(&mut lb, 0, None);
    assert_eq!(lb.sync_settings(), once);
    let fed = drive(&mut lb, 60);
    let at: Vec<usize> = (0..fed.len())
        .filter(|i| !fed[*i].is_empty())
        .map(|i| i + 1)
        .collect();
    assert_eq!(at, [3]);
}

/// A director core with a persistent fwmark service (mark 7 for VIP:80
/// TCP) over both servers.
fn fwmark_director(first: usize) -> CoreLb {
    use crate::lb::mark::{MarkRule, MarkRules};
    use crate::lb::types::AddrFamily;
    let key = ServiceKey::fwmark(7, AddrFamily::Inet);
    let mut t = ServiceTable::new(8);
    let mut c = ServiceConfig::with_scheduler("rr");
    c.persistence = Some(300);
    t.add_service(key, c).unwrap();
    for i in (0..2).rev() {
        let rip = RIPS[(first + i) % 2];
        t.add_dest(
            &key,
            RealServerConfig::new(IpAddr::V4(rip), 8080, FwdMethod::Masq),
        )
        .unwrap();
    }
    let cfg = CoreLbConfig {
        conn_capacity: 1024,
        hash_seed: Some(21 + first as u64),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let mut lb = CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap();
    let mut rules = MarkRules::new();
    rules
        .add(MarkRule {
            dst: (VIP.into(), 32),
            proto: Some(6),
            dport: Some((80, 80)),
            mark: 7,
        })
        .unwrap();
    lb.set_marks(Arc::new(rules));
    lb
}

/// Connections of a fwmark service carry the mark; the backup files the
/// connection and its fwmark template (protocol 0, port 0) under the
/// fwmark service, so the connection continues there and the client's
/// next connection sticks to the same server through the synced template.
#[test]
fn fwmark_service_connection_and_template_land_on_the_backup() {
    let mut master = fwmark_director(0);
    master.set_sync_master(true);
    let recs: Vec<SyncConn> = drive(&mut master, 3).into_iter().flatten().collect();
    // the connection (at the threshold) and its template (every time)
    let conn = recs.iter().find(|r| !r.is_template()).unwrap();
    let tmpl = recs.iter().find(|r| r.is_template()).unwrap();
    assert_eq!(conn.fwmark, 7);
    assert_eq!(conn.virt, std::net::SocketAddr::new(IpAddr::V4(VIP), 80));
    assert_eq!((tmpl.protocol, tmpl.fwmark), (0, 7));
    assert_eq!(tmpl.virt, "0.0.0.7:0".parse().unwrap());
    assert_eq!(conn.real.ip(), IpAddr::V4(RIPS[0]));

    let mut b = SyncMessageBuilder::new(1, 1472).unwrap();
    for r in [tmpl, conn] {
        assert!(b.push(r).unwrap().is_none());
    }
    let msg = decode(&b.finish().unwrap(), 1).unwrap();
    let mut backup = fwmark_director(1);
    for e in &msg.entries {
        let got = SyncedConn::<u32>::from_sync(e.as_ref().unwrap()).unwrap();
        assert_eq!(
            backup.install_synced(&got, false, 0),
            Ok(SyncInstalled::New)
        );
    }
    assert_eq!(backup.conns().template_count(), 1);
    // the synced connection continues on the master's server
    let next = seg((CIP, 40000), (VIP, 80), tcp::ACK, 4);
    let (mv, mout) = run(&mut master, &next);
    let (bv, bout) = run(&mut backup, &next);
    assert_eq!((bv, &bout), (mv, &mout));
    assert_eq!(
        bv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[0])
        }
    );
    // a new connection of the same client follows the synced template,
    // though the backup's rr would start with the other server
    let (nv, _) = run(&mut backup, &seg((CIP, 40001), (VIP, 80), tcp::SYN, 1));
    assert_eq!(
        nv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[0])
        }
    );
    // ...which a backup without the template would not do
    let mut bare = fwmark_director(1);
    let (bare_v, _) = run(&mut bare, &seg((CIP, 40001), (VIP, 80), tcp::SYN, 1));
    assert_eq!(
        bare_v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[1])
        }
    );
}

/// A master that restarted walks its FULLNAT ports from the start again:
/// a new connection's local port may be one the backup still holds for
/// an old, closing (or merely synced) connection. The master's word is
/// newer: the old entry goes, the new one is installed; an entry the
/// backup forwards itself stays.
#[test]
fn a_reused_fullnat_port_replaces_the_stale_entry() {
    use crate::lb::conn::Endpoint;
    let mut backup = director(FwdMethod::FullNat, 1, &[LIP]);
    let entry = |cport: u16, state: TcpState| SyncedConn::<u32> {
        proto: 6,
        client: Endpoint::new(u32::from(CIP), cport),
        virt: Endpoint::new(u32::from(VIP), 80),
        local: Some(Endpoint::new(u32::from(LIP), 50000)),
        real: Endpoint::new(u32::from(RIPS[0]), 8080),
        fwd: FwdMethod::FullNat,
        template: false,
        state: state as u16,
        inactive: state != TcpState::Established,
        no_output: false,
        timeout_s: 0,
        fwmark: 0,
        synproxy: None,
    };
    let old = entry(40000, TcpState::TimeWait);
    assert_eq!(
        backup.install_synced(&old, false, 0),
        Ok(SyncInstalled::New)
    );
    let new = entry(40001, TcpState::Established);
    assert_eq!(
        backup.install_synced(&new, false, 0),
        Ok(SyncInstalled::New)
    );
    let ports: Vec<u16> = backup
        .conns()
        .iter()
        .map(|(_, c)| c.client().port)
        .collect();
    assert_eq!(ports, [40001], "the stale entry is gone");

    // a connection the backup forwards itself keeps its port: find the
    // local port its own scheduling picked, then sync a stranger onto it
    let mut own = director(FwdMethod::FullNat, 1, &[LIP]);
    let (v, out) = run(&mut own, &seg((CIP, 41000), (VIP, 80), tcp::SYN, 1));
    assert!(matches!(v, FwdVerdict::Forward { .. }));
    let ip = crate::wire::Ipv4Packet::new_checked(&out[14..]).unwrap();
    let l4 = &out[14 + ip.header_len()..];
    let lport = u16::from_be_bytes([l4[0], l4[1]]);
    let mut clash = entry(42000, TcpState::Established);
    clash.local = Some(Endpoint::new(u32::from(LIP), lport));
    clash.real = Endpoint::new(u32::from(ip.dst_addr()), 8080);
    assert_eq!(
        own.install_synced(&clash, false, 0),
        Err(SyncRefused::Table(crate::lb::conn::ConnError::ReplyExists))
    );
    assert_eq!(own.conns().len(), 1);
}

/// A client port reused for a new connection: the backup's old, closing
/// entry of the same request tuple is a new connection's (counted New)
/// and, bound elsewhere, replaced by the master's binding.
#[test]
fn a_reused_client_port_takes_the_masters_binding() {
    use crate::lb::conn::Endpoint;
    let mut backup = director(FwdMethod::Masq, 1, &[]);
    let entry = |rip: Ipv4Addr, state: TcpState| SyncedConn::<u32> {
        proto: 6,
        client: Endpoint::new(u32::from(CIP), 40000),
        virt: Endpoint::new(u32::from(VIP), 80),
        local: None,
        real: Endpoint::new(u32::from(rip), 8080),
        fwd: FwdMethod::Masq,
        template: false,
        state: state as u16,
        inactive: state != TcpState::Established,
        no_output: false,
        timeout_s: 0,
        fwmark: 0,
        synproxy: None,
    };
    let real_of = |lb: &CoreLb| {
        let c: Vec<_> = lb.conns().iter().map(|(_, c)| c.real().addr).collect();
        assert_eq!(c.len(), 1);
        Ipv4Addr::from(c[0])
    };
    let ins = |lb: &mut CoreLb, e| lb.install_synced(&e, false, 0);
    assert_eq!(
        ins(&mut backup, entry(RIPS[0], TcpState::TimeWait)),
        Ok(SyncInstalled::New)
    );
    // same tuple, same server, a live state: a new connection on it
    assert_eq!(
        ins(&mut backup, entry(RIPS[0], TcpState::Established)),
        Ok(SyncInstalled::New)
    );
    // the same connection again: an update
    assert_eq!(
        ins(&mut backup, entry(RIPS[0], TcpState::Established)),
        Ok(SyncInstalled::Updated)
    );
    assert_eq!(real_of(&backup), RIPS[0]);
    // the master has the tuple on the other server now: replaced
    assert_eq!(
        ins(&mut backup, entry(RIPS[1], TcpState::Established)),
        Ok(SyncInstalled::New)
    );
    assert_eq!(real_of(&backup), RIPS[1]);
    let next = seg((CIP, 40000), (VIP, 80), tcp::ACK, 9);
    let (v, _) = run(&mut backup, &next);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIPS[1])
        }
    );
}
