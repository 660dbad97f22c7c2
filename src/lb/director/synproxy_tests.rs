//! The SYN proxy through the director: a whole NAT and FULLNAT connection,
//! a flood that leaves no entry, forged and early packets.

use super::*;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::wire::{tcp, MacAddr, PacketBuilder, TcpPacket};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const CISN: u32 = 0x0a00_0000;
const SISN: u32 = 0x5000_0000;

fn director(method: FwdMethod) -> CoreLb {
    director_with(method, true)
}

fn director_with(method: FwdMethod, synproxy: bool) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(4);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.synproxy = synproxy;
    cfg.local_addresses = vec![IpAddr::V4(LIP)];
    t.add_service(key, cfg).unwrap();
    t.add_dest(&key, RealServerConfig::new(IpAddr::V4(RIP), 8080, method))
        .unwrap();
    let cfg = CoreLbConfig {
        conn_capacity: 1024,
        hash_seed: Some(5),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap()
}

fn run(lb: &mut CoreLb, frame: Vec<u8>, now: u64) -> (FwdVerdict, Vec<u8>) {
    let mut p = VecPacket::new(&frame);
    let v = lb.process(&mut p, None, now);
    (v, p.to_vec())
}

fn tcp_of(frame: &[u8]) -> TcpPacket<&[u8]> {
    TcpPacket::new_checked(&frame[34..]).unwrap()
}

fn from_client(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .tcp(40000, 80, flags)
        .seq(seq)
        .ack(ack)
        .window(500)
        .tcp_options(if flags & tcp::SYN != 0 {
            &[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]
        } else {
            &[]
        })
        .payload(payload)
        .build()
}

/// A server segment as it reaches vsd: to the client (NAT) or to the
/// local address (FULLNAT).
fn from_server(dst: (Ipv4Addr, u16), flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::ethernet(M2, M1)
        .ipv4(RIP, dst.0)
        .tcp(8080, dst.1, flags)
        .seq(seq)
        .ack(ack)
        .window(1000)
        .tcp_options(if flags & tcp::SYN != 0 {
            &[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]
        } else {
            &[]
        })
        .payload(payload)
        .build()
}

fn whole_connection(method: FwdMethod) {
    let mut lb = director(method);
    // SYN: answered by vsd, nothing kept
    let (v, out) = run(&mut lb, from_client(tcp::SYN, CISN, 0, &[]), 0);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(CIP)
        }
    );
    assert!(lb.conns().is_empty());
    let t = tcp_of(&out);
    assert_eq!((t.src_port(), t.dst_port(), t.flags().0), (80, 40000, 0x12));
    assert_eq!(t.ack_number(), CISN + 1);
    assert!(t.verify_checksum_v4(VIP, CIP));
    let cookie = t.seq_number();
    assert_eq!(lb.stats().event(FwdEvent::SynproxyCookieSent), 1);

    // client data before the ACK completes nothing: no connection
    let (v, _) = run(
        &mut lb,
        from_client(tcp::ACK, CISN + 1, cookie ^ 0x0100_0000, &[]),
        1,
    );
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::SynproxyBadCookie));
    assert!(lb.conns().is_empty());

    // ACK with the cookie: the server gets a SYN with the client's ISN
    let (v, out) = run(&mut lb, from_client(tcp::ACK, CISN + 1, cookie + 1, &[]), 2);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    assert_eq!(lb.conns().len(), 1);
    let (src, sport) = match method {
        FwdMethod::FullNat => {
            let c = lb.conns().iter().next().unwrap().1;
            (LIP, c.local().unwrap().port)
        }
        _ => (CIP, 40000),
    };
    let t = tcp_of(&out);
    assert_eq!(&out[26..30], &src.octets());
    assert_eq!(&out[30..34], &RIP.octets());
    assert_eq!(
        (t.src_port(), t.dst_port(), t.flags().0),
        (sport, 8080, tcp::SYN)
    );
    assert_eq!((t.seq_number(), t.mss()), (CISN, Some(1460)));
    assert!(t.verify_checksum_v4(src, RIP));

    // the client's request, before the server answered: held (a second
    // segment is dropped, the client retransmits it)
    let get = from_client(tcp::ACK | tcp::PSH, CISN + 1, cookie + 1, b"GET");
    let (v, _) = run(&mut lb, get, 3);
    assert_eq!(v, FwdVerdict::Held);
    assert_eq!(lb.stats().event(FwdEvent::SynproxyDataHeld), 1);
    let more = from_client(tcp::ACK | tcp::PSH, CISN + 4, cookie + 1, b"/x");
    let (v, _) = run(&mut lb, more, 3);
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::SynproxyNotReady));

    // the server's SYN-ACK is answered with the held request, whose
    // acknowledgement completes the server's handshake
    let synack = from_server((src, sport), 0x12, SISN, CISN + 1, &[]);
    let (v, out) = run(&mut lb, synack, 4);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!(&out[26..30], &src.octets());
    assert_eq!(&out[30..34], &RIP.octets());
    assert_eq!(
        (t.src_port(), t.dst_port(), t.flags().0),
        (sport, 8080, tcp::ACK | tcp::PSH)
    );
    assert_eq!((t.seq_number(), t.ack_number()), (CISN + 1, SISN + 1));
    assert_eq!(t.payload(), b"GET");
    assert!(t.verify_checksum_v4(src, RIP));
    let c = *lb.conns().iter().next().unwrap().1;
    assert_eq!(c.tcp_state(), Some(TcpState::Established));
    assert_eq!(lb.stats().event(FwdEvent::SynproxyServerSynAck), 1);

    // data both ways, shifted between the two sequence spaces
    let more = from_client(tcp::ACK | tcp::PSH, CISN + 4, cookie + 1, b"/x");
    let (v, out) = run(&mut lb, more, 5);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!((t.seq_number(), t.ack_number()), (CISN + 4, SISN + 1));
    assert_eq!(t.payload(), b"/x");
    assert!(t.verify_checksum_v4(src, RIP));
    let (v, out) = run(
        &mut lb,
        from_server(
            (src, sport),
            tcp::ACK | tcp::PSH,
            SISN + 1,
            CISN + 4,
            b"200 OK",
        ),
        6,
    );
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(CIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!(&out[26..30], &VIP.octets());
    assert_eq!(&out[30..34], &CIP.octets());
    assert_eq!((t.src_port(), t.dst_port()), (80, 40000));
    assert_eq!((t.seq_number(), t.ack_number()), (cookie + 1, CISN + 4));
    assert_eq!(t.window_len(), 1000, "same window scale on both sides");
    assert!(t.verify_checksum_v4(VIP, CIP));
    assert_eq!(lb.stats().event(FwdEvent::SynproxySeqAdjusted), 3);

    // a retransmitted SYN-ACK of the server is acknowledged again
    let (v, out) = run(
        &mut lb,
        from_server((src, sport), 0x12, SISN, CISN + 1, &[]),
        7,
    );
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!((t.flags().0, t.ack_number()), (tcp::ACK, SISN + 1));
    assert!(t.payload().is_empty(), "a bare ACK this time");
    assert_eq!(lb.proxied.held.in_use(), 0, "slot given back");
}

#[test]
fn nat_connection_through_the_proxy() {
    whole_connection(FwdMethod::Masq);
}

#[test]
fn fullnat_connection_through_the_proxy() {
    whole_connection(FwdMethod::FullNat);
}

#[test]
fn the_proxy_table_comes_with_the_configuration_not_the_first_connection() {
    // Allocating (and filling) one entry per connection slot is too slow
    // for the packet loop with a large table: it happens when a synproxy
    // service is configured, and never for directors without one.
    let lb = director(FwdMethod::Masq);
    assert!(lb.proxied.in_use());
    let mut t = ServiceTable::new(4);
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    t.add_service(key, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &key,
        RealServerConfig::new(IpAddr::V4(RIP), 8080, FwdMethod::Masq),
    )
    .unwrap();
    let cfg = CoreLbConfig {
        conn_capacity: 1024,
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let mut plain = CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap();
    assert!(!plain.proxied.in_use());
    // a synproxy service added later: allocated on adoption
    let mut sp = ServiceConfig::with_scheduler("rr");
    sp.synproxy = true;
    t.edit_service(&key, sp).unwrap();
    plain.adopt(t.snapshot());
    assert!(plain.proxied.in_use());
}

#[test]
fn a_syn_flood_leaves_the_table_empty() {
    let mut lb = director(FwdMethod::Masq);
    for i in 0..5000u32 {
        let src = Ipv4Addr::from(0xc613_0000 | (i.wrapping_mul(2_654_435_761) >> 16));
        let f = PacketBuilder::ethernet(M1, M2)
            .ipv4(src, VIP)
            .tcp((i % 60000) as u16 + 1024, 80, tcp::SYN)
            .seq(i)
            .build();
        let (v, _) = run(&mut lb, f, 0);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(src)
            }
        );
    }
    assert!(lb.conns().is_empty());
    assert_eq!(lb.stats().event(FwdEvent::SynproxyCookieSent), 5000);
    // ... and a blind flood of ACKs opens nothing
    for i in 0..5000u32 {
        let f = from_client(tcp::ACK, i, i.wrapping_mul(2_654_435_761), &[]);
        let mut p = VecPacket::new(&f);
        lb.process(&mut p, None, 0);
    }
    assert!(lb.conns().is_empty());
    assert!(lb.stats().drop_count(FwdDrop::SynproxyBadCookie) >= 4990);
    // a real client still gets through
    let (_, out) = run(&mut lb, from_client(tcp::SYN, CISN, 0, &[]), 1);
    let cookie = tcp_of(&out).seq_number();
    let (v, _) = run(&mut lb, from_client(tcp::ACK, CISN + 1, cookie + 1, &[]), 2);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
}

#[test]
fn servers_refusal_reaches_the_client() {
    let mut lb = director(FwdMethod::Masq);
    let (_, out) = run(&mut lb, from_client(tcp::SYN, CISN, 0, &[]), 0);
    let cookie = tcp_of(&out).seq_number();
    run(&mut lb, from_client(tcp::ACK, CISN + 1, cookie + 1, &[]), 0);
    let (v, out) = run(
        &mut lb,
        from_server((CIP, 40000), tcp::RST | tcp::ACK, 0, CISN + 1, &[]),
        1,
    );
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(CIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!(
        (t.seq_number(), t.flags().0),
        (cookie + 1, tcp::RST | tcp::ACK)
    );
    assert!(t.verify_checksum_v4(VIP, CIP));
}

#[test]
fn synproxy_is_refused_for_dr_tun_and_udp() {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(4);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.synproxy = true;
    t.add_service(key, cfg.clone()).unwrap();
    for m in [FwdMethod::Route, FwdMethod::Tunnel] {
        let e = t
            .add_dest(&key, RealServerConfig::new(IpAddr::V4(RIP), 80, m))
            .unwrap_err();
        assert!(e.to_string().starts_with("synproxy needs NAT"), "{e}");
    }
    let udp = ServiceKey::udp(IpAddr::V4(VIP), 53);
    assert_eq!(
        t.add_service(udp, cfg.clone()).unwrap_err().to_string(),
        "synproxy is only for IPv4 TCP virtual services"
    );
    // turning it on over a DR server is refused too
    let k2 = ServiceKey::tcp(IpAddr::V4(VIP), 81);
    t.add_service(k2, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &k2,
        RealServerConfig::new(IpAddr::V4(RIP), 81, FwdMethod::Route),
    )
    .unwrap();
    assert!(t.edit_service(&k2, cfg).is_err());
}

#[test]
fn held_slots_of_abandoned_connections_are_reclaimed() {
    let mut lb = director(FwdMethod::Masq);
    // more abandoned handshakes with held data than there are slots
    let n = synproxy::HELD_SLOTS as u16 + 10;
    for i in 0..n {
        let port = 20000 + i;
        let seg = |flags: u8, ack: u32, payload: &[u8]| {
            PacketBuilder::ethernet(M1, M2)
                .ipv4(CIP, VIP)
                .tcp(port, 80, flags)
                .seq(if flags & tcp::SYN != 0 {
                    CISN
                } else {
                    CISN + 1
                })
                .ack(ack)
                .payload(payload)
                .build()
        };
        let (_, out) = run(&mut lb, seg(tcp::SYN, 0, &[]), 0);
        let cookie = tcp_of(&out).seq_number();
        let (v, _) = run(&mut lb, seg(tcp::ACK, cookie + 1, &[]), 0);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP)
            }
        );
        let (v, _) = run(&mut lb, seg(tcp::ACK | tcp::PSH, cookie + 1, b"GET"), 0);
        if usize::from(i) < synproxy::HELD_SLOTS {
            assert_eq!(v, FwdVerdict::Held, "connection {i}");
        } else {
            assert_eq!(v, FwdVerdict::Drop(FwdDrop::SynproxyNotReady), "pool full");
        }
    }
    // the servers never answered: the entries expire, their slots return
    let mut t = 0;
    while t <= 130_000 {
        lb.tick(t);
        t += 1000;
    }
    assert!(lb.conns().is_empty());
    let (_, out) = run(&mut lb, from_client(tcp::SYN, CISN, 0, &[]), t);
    let cookie = tcp_of(&out).seq_number();
    run(&mut lb, from_client(tcp::ACK, CISN + 1, cookie + 1, &[]), t);
    let get = from_client(tcp::ACK | tcp::PSH, CISN + 1, cookie + 1, b"GET");
    let (v, _) = run(&mut lb, get, t);
    assert_eq!(v, FwdVerdict::Held, "a reclaimed slot");
}

#[test]
fn data_in_the_cookie_ack_reaches_the_server() {
    let mut lb = director(FwdMethod::Masq);
    let (_, out) = run(&mut lb, from_client(tcp::SYN, CISN, 0, &[]), 0);
    let cookie = tcp_of(&out).seq_number();
    // the pure ACK was lost; the request carries the cookie
    let get = from_client(tcp::ACK | tcp::PSH, CISN + 1, cookie + 1, b"GET /");
    let (v, out) = run(&mut lb, get, 1);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!((t.flags().0, t.seq_number()), (tcp::SYN, CISN));
    assert!(t.payload().is_empty());
    assert_eq!(lb.stats().event(FwdEvent::SynproxyDataHeld), 1);
    let synack = from_server((CIP, 40000), 0x12, SISN, CISN + 1, &[]);
    let (v, out) = run(&mut lb, synack, 2);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    let t = tcp_of(&out);
    assert_eq!((t.seq_number(), t.ack_number()), (CISN + 1, SISN + 1));
    assert_eq!(t.payload(), b"GET /");
    assert!(t.verify_checksum_v4(CIP, RIP));
    assert_eq!(lb.stats().event(FwdEvent::SynproxyAckData), 0);
}

/// A proxied connection synced to a backup: the master sends its
/// sequence shift as the kernel's SEQ option (out_seq) plus vsd's SYN
/// proxy option; the backup goes on shifting exactly as the master.
fn proxied_connection_continues_on_a_sync_backup(method: FwdMethod) {
    use crate::lb::sync::SyncedConn;
    use crate::wire::ipvs_sync::{decode, flags, SyncConn, SyncMessageBuilder};
    let mut master = director(method);
    master.set_sync_master(true);
    let (_, out) = run(&mut master, from_client(tcp::SYN, CISN, 0, &[]), 0);
    let cookie = tcp_of(&out).seq_number();
    run(
        &mut master,
        from_client(tcp::ACK, CISN + 1, cookie + 1, &[]),
        1,
    );
    let (src, sport) = match method {
        FwdMethod::FullNat => {
            let c = master.conns().iter().next().unwrap().1;
            (LIP, c.local().unwrap().port)
        }
        _ => (CIP, 40000),
    };
    run(
        &mut master,
        from_server((src, sport), 0x12, SISN, CISN + 1, &[]),
        2,
    );
    let mut recs: Vec<SyncConn> = Vec::new();
    for i in 0..3u32 {
        let seg = from_client(tcp::ACK | tcp::PSH, CISN + 1 + i, cookie + 1, b"x");
        run(&mut master, seg, 3);
        master.take_sync_records(&mut recs);
    }
    assert_eq!(recs.len(), 1, "{recs:?}");
    let rec = recs[0];
    let seq = rec.seq.unwrap();
    assert_eq!(seq.out_seq.init_seq, SISN);
    assert_eq!(seq.out_seq.delta, cookie.wrapping_sub(SISN));
    assert_eq!(seq.in_seq, Default::default());
    assert_eq!(rec.flags & flags::SEQ_MASK, flags::OUT_SEQ);
    assert!(rec.synproxy.is_some());

    let mut b = SyncMessageBuilder::new(1, 1472).unwrap();
    assert!(b.push(&rec).unwrap().is_none());
    let msg = decode(&b.finish().unwrap(), 1).unwrap();
    let got = SyncedConn::<u32>::from_sync(msg.entries[0].as_ref().unwrap()).unwrap();
    // a backup whose service does not proxy refuses it, and keeps nothing
    let mut plain = director_with(method, false);
    assert_eq!(
        plain.install_synced(&got, false, 0),
        Err(SyncRefused::NotProxied)
    );
    assert!(plain.conns().is_empty());
    let mut backup = director(method);
    assert_eq!(
        backup.install_synced(&got, false, 0),
        Ok(SyncInstalled::New)
    );
    // the server's data and the client's next segment leave both alike
    let data = from_server(
        (src, sport),
        tcp::ACK | tcp::PSH,
        SISN + 1,
        CISN + 4,
        b"200 OK",
    );
    let (mv, mout) = run(&mut master, data.clone(), 4);
    let (bv, bout) = run(&mut backup, data, 4);
    assert_eq!(
        bv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(CIP)
        }
    );
    assert_eq!((bv, &bout), (mv, &mout));
    assert_eq!(tcp_of(&bout).seq_number(), cookie + 1);
    let next = from_client(tcp::ACK | tcp::PSH, CISN + 4, cookie + 7, b"y");
    let (mv, mout) = run(&mut master, next.clone(), 5);
    let (bv, bout) = run(&mut backup, next, 5);
    assert_eq!(
        bv,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    assert_eq!((bv, &bout), (mv, &mout));
    assert_eq!(tcp_of(&bout).ack_number(), SISN + 7);
}

#[test]
fn proxied_nat_connection_continues_on_a_sync_backup() {
    proxied_connection_continues_on_a_sync_backup(FwdMethod::Masq);
}

#[test]
fn proxied_fullnat_connection_continues_on_a_sync_backup() {
    proxied_connection_continues_on_a_sync_backup(FwdMethod::FullNat);
}
