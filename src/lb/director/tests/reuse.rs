//! Connection reuse, removed and quiescent servers, and ActiveConn, as the
//! kernel's `ip_vs_in` (`conn_reuse_mode`, `expire_nodest_conn`,
//! `expire_quiescent_template`) and `tcp_state_active_table` (Linux >= 4.8)
//! behave.

use super::*;

fn syn(c: (Ipv4Addr, u16)) -> Vec<u8> {
    seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build()
}

fn tcp2(edit: impl FnOnce(&mut ServiceConfig)) -> ServiceTable {
    table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        edit,
    )
}

fn weight(t: &mut ServiceTable, rip: Ipv4Addr, w: u32) {
    t.edit_dest(
        &tcp_key(),
        RealServerConfig::new(IpAddr::V4(rip), RPORT, FwdMethod::Masq).weight(w),
    )
    .unwrap();
}

/// SYN, SYN-ACK, ACK through NAT to `rip`: ESTABLISHED.
fn handshake(lb: &mut CoreLb, c: (Ipv4Addr, u16), rip: Ipv4Addr, now: u64) {
    let r = (rip, RPORT);
    assert_eq!(run(lb, &syn(c), now).0, fwd_to(rip));
    let synack = seg(r, c, tcp::SYN | tcp::ACK, 64, &[]).build();
    assert_eq!(run(lb, &synack, now).0, fwd_to(CIP));
    let ack = seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build();
    assert_eq!(run(lb, &ack, now).0, fwd_to(rip));
    assert_eq!(
        state(lb, c, (VIP, VPORT), Protocol::Tcp),
        Some("ESTABLISHED")
    );
}

#[test]
fn udp_flow_to_a_deleted_server_expires_and_is_rescheduled() {
    // The client keeps sending: its datagrams are dropped without
    // refreshing the entry, which expires after the UDP timeout (300 s);
    // the next datagram is scheduled to a server that exists.
    let mut t = table(
        udp_key(),
        FwdMethod::Masq,
        &[(RIP1, 53), (RIP2, 53)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    let q = udp((CIP, 3333), (VIP, 53), 64, b"q").build();
    assert_eq!(run(&mut lb, &q, 0).0, fwd_to(RIP1));
    t.del_dest(&udp_key(), IpAddr::V4(RIP1), 53).unwrap();
    lb.adopt(t.snapshot());
    for now in (5_000..300_000).step_by(5_000) {
        assert_eq!(
            run(&mut lb, &q, now).0,
            FwdVerdict::Drop(FwdDrop::DestRemoved),
            "at {now}"
        );
        lb.tick(now);
        assert_eq!(lb.conns().len(), 1, "entry lives until its timeout");
    }
    assert_eq!(
        lb.tick(300_100),
        1,
        "not refreshed by the dropped datagrams"
    );
    assert_eq!(run(&mut lb, &q, 300_200).0, fwd_to(RIP2));
    assert_eq!(lb.stats().drop_count(FwdDrop::DestRemoved), 59);
}

#[test]
fn udp_flow_to_a_deleted_server_with_expire_nodest_conn_moves_at_once() {
    let mut t = table(
        udp_key(),
        FwdMethod::Masq,
        &[(RIP1, 53), (RIP2, 53)],
        |_| {},
    );
    let c = CoreLbConfig {
        expire_nodest_conn: true,
        ..cfg()
    };
    let mut lb = lb_with(&t, c);
    let q = udp((CIP, 3333), (VIP, 53), 64, b"q").build();
    assert_eq!(run(&mut lb, &q, 0).0, fwd_to(RIP1));
    t.del_dest(&udp_key(), IpAddr::V4(RIP1), 53).unwrap();
    lb.adopt(t.snapshot());
    assert_eq!(run(&mut lb, &q, 1_000).0, fwd_to(RIP2));
    assert_eq!(run(&mut lb, &q, 2_000).0, fwd_to(RIP2));
    assert_eq!(lb.stats().event(FwdEvent::NodestExpired), 1);
    assert_eq!(lb.stats().drop_count(FwdDrop::DestRemoved), 0);
    assert_eq!(lb.conns().conn_count(), 1);
}

#[test]
fn syn_on_time_wait_of_a_deleted_server_is_scheduled_afresh() {
    let mut t = tcp2(|_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT));
    handshake(&mut lb, c, RIP1, 0);
    for (frame, want) in [
        (seg(c, v, tcp::FIN | tcp::ACK, 64, &[]), fwd_to(RIP1)),
        (seg(r, c, tcp::FIN | tcp::ACK, 64, &[]), fwd_to(CIP)),
        (seg(c, v, tcp::ACK, 64, &[]), fwd_to(RIP1)),
    ] {
        assert_eq!(run(&mut lb, &frame.build(), 0).0, want);
    }
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("TIME_WAIT"));
    t.del_dest(&tcp_key(), IpAddr::V4(RIP1), RPORT).unwrap();
    lb.adopt(t.snapshot());
    assert_eq!(run(&mut lb, &syn(c), 1_000).0, fwd_to(RIP2));
    assert_eq!(lb.stats().event(FwdEvent::ConnReused), 1);
}

#[test]
fn syn_on_a_live_connection_of_a_deleted_server_is_dropped_until_it_expires() {
    // FIN_WAIT (the server closed first) is not a reusable state in mode
    // 1: the SYN is dropped (never sent to the deleted server), the entry
    // is not refreshed, and once it expires the client's retransmitted SYN
    // is scheduled afresh.
    let mut t = tcp2(|_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v) = ((CIP, CPORT), (VIP, VPORT));
    handshake(&mut lb, c, RIP1, 0);
    let fin = seg((RIP1, RPORT), c, tcp::FIN | tcp::ACK, 64, &[]).build();
    assert_eq!(run(&mut lb, &fin, 0).0, fwd_to(CIP));
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("FIN_WAIT"));
    let expires = lb.conns().iter().map(|(_, c)| c.expires_ms()).max();
    t.del_dest(&tcp_key(), IpAddr::V4(RIP1), RPORT).unwrap();
    lb.adopt(t.snapshot());
    for now in [1_000, 3_000, 7_000, 15_000, 31_000, 63_000] {
        assert_eq!(
            run(&mut lb, &syn(c), now).0,
            FwdVerdict::Drop(FwdDrop::DestRemoved)
        );
    }
    assert_eq!(
        lb.conns().iter().map(|(_, c)| c.expires_ms()).max(),
        expires,
        "timer not restarted"
    );
    assert_eq!(lb.tick(121_000), 1);
    assert_eq!(run(&mut lb, &syn(c), 127_000).0, fwd_to(RIP2));
}

#[test]
fn conn_reuse_mode_0_keeps_a_time_wait_entry() {
    let t = tcp2(|_| {});
    for (mode, want) in [(0, RIP1), (1, RIP2)] {
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                conn_reuse_mode: mode,
                ..cfg()
            },
        );
        let (c, v, r) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT));
        handshake(&mut lb, c, RIP1, 0);
        for frame in [
            seg(c, v, tcp::FIN | tcp::ACK, 64, &[]),
            seg(r, c, tcp::FIN | tcp::ACK, 64, &[]),
            seg(c, v, tcp::ACK, 64, &[]),
        ] {
            run(&mut lb, &frame.build(), 0);
        }
        assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("TIME_WAIT"));
        assert_eq!(run(&mut lb, &syn(c), 1_000).0, fwd_to(want), "mode {mode}");
        assert_eq!(
            lb.stats().event(FwdEvent::ConnReused),
            u64::from(mode != 0),
            "mode {mode}"
        );
    }
}

#[test]
fn conn_reuse_mode_2_reschedules_a_dr_connection_in_fin_wait() {
    let t = table(
        tcp_key(),
        FwdMethod::Route,
        &[(RIP1, VPORT), (RIP2, VPORT)],
        |_| {},
    );
    for (mode, want) in [(1, RIP1), (3, RIP2)] {
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                conn_reuse_mode: mode,
                ..cfg()
            },
        );
        let (c, v) = ((CIP, CPORT), (VIP, VPORT));
        for flags in [tcp::SYN, tcp::ACK, tcp::FIN | tcp::ACK] {
            assert_eq!(
                run(&mut lb, &seg(c, v, flags, 64, &[]).build(), 0).0,
                fwd_to(RIP1)
            );
        }
        assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("FIN_WAIT"));
        assert_eq!(run(&mut lb, &syn(c), 1_000).0, fwd_to(want), "mode {mode}");
    }
}

#[test]
fn expire_nodest_conn_moves_a_syn_off_a_quiescent_server() {
    for (expire, want) in [(false, RIP1), (true, RIP2)] {
        let mut t = tcp2(|_| {});
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                expire_nodest_conn: expire,
                ..cfg()
            },
        );
        let c = (CIP, CPORT);
        handshake(&mut lb, c, RIP1, 0);
        weight(&mut t, RIP1, 0);
        lb.adopt(t.snapshot());
        // The established connection keeps its quiescent server...
        let ack = seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build();
        assert_eq!(run(&mut lb, &ack, 1_000).0, fwd_to(RIP1));
        // ...but a new SYN on its tuple is scheduled afresh only with
        // expire_nodest_conn.
        assert_eq!(run(&mut lb, &syn(c), 2_000).0, fwd_to(want), "{expire}");
        assert_eq!(lb.stats().event(FwdEvent::NodestExpired), u64::from(expire));
    }
}

#[test]
fn expire_quiescent_template_moves_persistent_clients() {
    for (expire, want) in [(false, RIP1), (true, RIP2)] {
        let mut t = tcp2(|c| c.persistence = Some(300));
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                expire_quiescent_template: expire,
                ..cfg()
            },
        );
        assert_eq!(run(&mut lb, &syn((CIP, 1000)), 0).0, fwd_to(RIP1));
        weight(&mut t, RIP1, 0);
        lb.adopt(t.snapshot());
        assert_eq!(
            run(&mut lb, &syn((CIP, 1001)), 1_000).0,
            fwd_to(want),
            "expire_quiescent_template {expire}"
        );
    }
}

/// Servers chosen for SYNs from ports `ports` (no handshake: half-open).
fn syn_burst(lb: &mut CoreLb, ports: std::ops::Range<u16>) -> Vec<Ipv4Addr> {
    ports
        .map(|p| match run(lb, &syn((CIP, p)), 0).0 {
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(next_hop),
            } => next_hop,
            v => panic!("{v:?}"),
        })
        .collect()
}

#[test]
fn half_open_connections_are_active_so_sed_and_nq_spread_a_syn_burst() {
    for sched in ["sed", "nq"] {
        let t = tcp2(|c| c.scheduler = sched.to_string());
        let mut lb = lb_with(&t, cfg());
        let hops = syn_burst(&mut lb, 1000..1004);
        assert_eq!(hops, vec![RIP1, RIP2, RIP1, RIP2], "{sched}");
        let (r1, r2) = (dest_id(&t, RIP1), dest_id(&t, RIP2));
        assert_eq!(
            (lb.load().active(r1), lb.load().active(r2)),
            (2, 2),
            "{sched}: SYN_RECV is ActiveConn"
        );
        assert_eq!((lb.load().inactive(r1), lb.load().inactive(r2)), (0, 0));
    }
}

#[test]
fn half_open_connections_overflow_ovf() {
    // ovf: the highest-weight server until its active connections exceed
    // its weight; half-open ones count (else RIP1 would take them all).
    let mut t = tcp2(|c| c.scheduler = "ovf".to_string());
    weight(&mut t, RIP1, 2);
    let mut lb = lb_with(&t, cfg());
    let hops = syn_burst(&mut lb, 1000..1004);
    assert_eq!(hops, vec![RIP1, RIP1, RIP1, RIP2]);
}

#[test]
fn half_open_connections_weigh_256_in_lc() {
    // One ESTABLISHED connection on RIP1 (overhead 256); five SYNs. Were
    // half-open connections inactive (overhead 1), all five would go to
    // RIP2; as active they share.
    let t = tcp2(|c| c.scheduler = "lc".to_string());
    let mut lb = lb_with(&t, cfg());
    handshake(&mut lb, (CIP, 999), RIP1, 0);
    let hops = syn_burst(&mut lb, 1000..1005);
    assert_eq!(hops, vec![RIP2, RIP1, RIP2, RIP1, RIP2]);
}

#[test]
fn half_open_connection_leaving_for_close_is_inactive() {
    // NONE (inactive) -> SYN_RECV (active) -> ESTABLISHED (active) -> RST
    // -> CLOSE (inactive), as the kernel moves it.
    let t = tcp2(|_| {});
    let mut lb = lb_with(&t, cfg());
    let c = (CIP, CPORT);
    let r1 = dest_id(&t, RIP1);
    assert_eq!(run(&mut lb, &syn(c), 0).0, fwd_to(RIP1));
    assert_eq!(state(&lb, c, (VIP, VPORT), Protocol::Tcp), Some("SYN_RECV"));
    assert_eq!((lb.load().active(r1), lb.load().inactive(r1)), (1, 0));
    let synack = seg((RIP1, RPORT), c, tcp::SYN | tcp::ACK, 64, &[]).build();
    assert_eq!(run(&mut lb, &synack, 0).0, fwd_to(CIP));
    let ack = seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build();
    assert_eq!(run(&mut lb, &ack, 0).0, fwd_to(RIP1));
    assert_eq!((lb.load().active(r1), lb.load().inactive(r1)), (1, 0));
    let rst = seg(c, (VIP, VPORT), tcp::RST, 64, &[]).build();
    assert_eq!(run(&mut lb, &rst, 0).0, fwd_to(RIP1));
    assert_eq!(state(&lb, c, (VIP, VPORT), Protocol::Tcp), Some("CLOSE"));
    assert_eq!((lb.load().active(r1), lb.load().inactive(r1)), (0, 1));
}

#[test]
fn two_cores_nat_redirect_to_a_deleted_server_expires_and_the_flow_moves() {
    // NAT on two cores: a UDP flow whose replies belong to the other core
    // has a redirect entry where it arrives. Once its server is deleted, the
    // redirect (which knows the server only by address) drops the requests
    // without refreshing itself, expires, and the flow is scheduled afresh
    // by the arriving core, onto the core owning the new reply tuple.
    let mut t = table(
        udp_key(),
        FwdMethod::Masq,
        &[(RIP1, 53), (RIP2, 53), (RIP3, 53)],
        |_| {},
    );
    let mut sim = Sim::new(&t, 2);
    // A client port whose flow is steered at creation (redirect + conn).
    let (q, first, rip) = (40000..40200u16)
        .find_map(|p| {
            let q = udp((CIP, p), (VIP, 53), 64, b"q").build();
            let d = sim.deliver(&q, 0);
            let FwdVerdict::Forward {
                next_hop: IpAddr::V4(next_hop),
            } = d.verdict
            else {
                panic!("{:?}", d.verdict)
            };
            (d.core != d.first).then_some((q, d.first, next_hop))
        })
        .expect("some flow is steered");
    t.del_dest(&udp_key(), IpAddr::V4(rip), 53).unwrap();
    for lb in &mut sim.lbs {
        lb.adopt(t.snapshot());
    }
    let redirects = |sim: &Sim| {
        sim.lbs[usize::from(first)]
            .conns()
            .iter()
            .filter(|(_, c)| is_redirect(c))
            .count()
    };
    let before = redirects(&sim);
    for now in (10_000..300_000).step_by(10_000) {
        let d = sim.deliver(&q, now);
        assert_eq!(
            d.verdict,
            FwdVerdict::Drop(FwdDrop::DestRemoved),
            "at {now}"
        );
        assert_eq!(d.core, first, "dropped where it arrived, not steered");
    }
    for lb in &mut sim.lbs {
        lb.tick(300_500);
    }
    assert_eq!(redirects(&sim), before - 1, "the redirect expired");
    let d = sim.deliver(&q, 301_000);
    let FwdVerdict::Forward {
        next_hop: IpAddr::V4(next_hop),
    } = d.verdict
    else {
        panic!("{:?}", d.verdict)
    };
    assert_ne!(next_hop, rip);
    let sport = u16::from_be_bytes([q[34], q[35]]);
    assert_eq!(
        d.core,
        sim.rss.owner_v4(next_hop, CIP, 53, sport),
        "the new connection lives on its reply owner"
    );
}
