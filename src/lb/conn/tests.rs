use super::*;
use crate::lb::load::LoadView;
use crate::lb::persist::PersistKey;
use crate::lb::tcp_state::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::lb::timer::TICK_MS;
use std::collections::HashMap;

const CIP: u32 = 0xc612_0005; // 198.18.0.5
const VIP: u32 = 0xc612_0064; // 198.18.0.100
const RIP: u32 = 0xc612_010b; // 198.18.1.11
const LIP: u32 = 0xc612_0201; // 198.18.2.1

fn table(cap: usize) -> ConnTable<u32> {
    ConnTable::with_seed(cap, Arc::new(CoreLoad::new(16)), 0, Seed::new(42)).unwrap()
}

fn nat(cport: u16, dest: DestId) -> NewConn<u32> {
    NewConn {
        proto: Protocol::Tcp,
        client: Endpoint::new(CIP, cport),
        virt: Endpoint::new(VIP, 80),
        local: None,
        real: Endpoint::new(RIP, 8080),
        dest,
        fwd: FwdMethod::Masq,
        one_packet: false,
        template: None,
    }
}

fn fwd_tuple(c: &NewConn<u32>) -> Tuple<u32> {
    Tuple {
        proto: c.proto,
        src: c.client,
        dst: c.virt,
    }
}

fn reply_tuple(c: &NewConn<u32>) -> Tuple<u32> {
    let dst = match c.fwd {
        FwdMethod::FullNat => c.local.unwrap(),
        _ => c.client,
    };
    Tuple {
        proto: c.proto,
        src: c.real,
        dst,
    }
}

/// (state, expires) after a packet.
fn step(
    t: &mut ConnTable<u32>,
    id: ConnId,
    dir: Direction,
    flags: u8,
    now: u64,
) -> (TcpState, u64) {
    assert!(t.update_state(id, dir, flags, now));
    let c = t.get(id).unwrap();
    (c.tcp_state().unwrap(), c.expires_ms())
}

fn counts(t: &ConnTable<u32>, dest: DestId) -> (u32, u32, u32) {
    let l = t.load();
    (l.active(dest), l.inactive(dest), l.persistent(dest))
}

#[test]
fn sizes_fit_the_budget() {
    assert_eq!(
        std::mem::size_of::<Slot<u32>>(),
        64,
        "IPv4 entry: one cache line"
    );
    assert_eq!(std::mem::align_of::<Slot<u32>>(), 64);
    assert!(std::mem::size_of::<Slot<u128>>() <= 128, "IPv6: two lines");
    println!(
        "entry: IPv4 {} bytes, IPv6 {} bytes",
        std::mem::size_of::<Slot<u32>>(),
        std::mem::size_of::<Slot<u128>>()
    );
    for cap in [1usize, 1000, 1 << 16, (1 << 16) + 1, 100_000, 3 << 18] {
        let t = table(cap);
        let per_conn = t.memory_bytes() as f64 / cap as f64;
        let index_per_conn = t.index_buckets() as f64 * 8.0 / cap as f64;
        println!("capacity {cap}: {per_conn:.1} bytes/conn (entry 64, index {index_per_conn:.1})");
        assert!(t.index_buckets() as f64 >= 3.5 * cap as f64);
        if cap >= 1000 {
            assert!(per_conn <= 128.0, "{per_conn} bytes per connection");
        }
    }
    assert_eq!(
        ConnTable::<u32>::with_seed(0, Arc::new(CoreLoad::new(1)), 0, Seed::new(1)).err(),
        Some(ConnError::BadCapacity(0))
    );
}

#[test]
fn nat_handshake_to_established_and_counters() {
    let mut t = table(16);
    let c = nat(40000, 2);
    let id = t.insert(&c, 1_000).unwrap();
    let e = t.get(id).unwrap();
    assert_eq!(e.tcp_state(), Some(TcpState::None));
    assert_eq!(e.expires_ms(), 4_000, "initial 3 s");
    assert_eq!(counts(&t, 2), (0, 1, 0));

    assert_eq!(
        t.lookup(&fwd_tuple(&c), 1_000),
        Some((id, Direction::Input))
    );
    assert_eq!(
        step(&mut t, id, Direction::Input, SYN, 1_000),
        (TcpState::SynRecv, 61_000)
    );
    assert_eq!(
        t.lookup(&reply_tuple(&c), 1_010),
        Some((id, Direction::Output))
    );
    assert_eq!(
        step(&mut t, id, Direction::Output, SYN | ACK, 1_010),
        (TcpState::SynRecv, 61_010)
    );
    // Half-open counts as active (Linux >= 4.8, tcp_state_active_table).
    assert_eq!(counts(&t, 2), (1, 0, 0));
    assert_eq!(
        step(&mut t, id, Direction::Input, ACK, 1_020),
        (TcpState::Established, 901_020)
    );
    assert_eq!(counts(&t, 2), (1, 0, 0));
    assert!(t.get(id).unwrap().is_active());
    assert_eq!(t.get(id).unwrap().state_name(), "ESTABLISHED");
    // Data both ways keeps it established and refreshes the timer.
    assert_eq!(
        step(&mut t, id, Direction::Output, ACK | PSH, 5_000),
        (TcpState::Established, 905_000)
    );
}

#[test]
fn fin_sequences_end_in_the_right_state_and_timeout() {
    // Client closes first.
    let mut t = table(16);
    let id = t.insert(&nat(1, 1), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Output, SYN | ACK, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    assert_eq!(
        step(&mut t, id, Direction::Input, FIN | ACK, 100),
        (TcpState::CloseWait, 60_100)
    );
    assert_eq!(counts(&t, 1), (0, 1, 0));
    assert_eq!(
        step(&mut t, id, Direction::Output, ACK, 110),
        (TcpState::CloseWait, 60_110)
    );
    assert_eq!(
        step(&mut t, id, Direction::Output, FIN | ACK, 120),
        (TcpState::TimeWait, 120_120)
    );
    assert_eq!(
        step(&mut t, id, Direction::Input, ACK, 130),
        (TcpState::TimeWait, 120_130)
    );

    // Server closes first.
    let id = t.insert(&nat(2, 1), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Output, SYN | ACK, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    assert_eq!(counts(&t, 1), (1, 1, 0));
    assert_eq!(
        step(&mut t, id, Direction::Output, FIN | ACK, 200),
        (TcpState::FinWait, 120_200)
    );
    assert_eq!(
        step(&mut t, id, Direction::Input, ACK, 210),
        (TcpState::FinWait, 120_210)
    );
    assert_eq!(
        step(&mut t, id, Direction::Input, FIN | ACK, 220),
        (TcpState::TimeWait, 120_220)
    );
    assert_eq!(counts(&t, 1), (0, 2, 0));
}

#[test]
fn rst_closes_with_ten_seconds() {
    let mut t = table(16);
    let id = t.insert(&nat(1, 3), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    assert_eq!(counts(&t, 3), (1, 0, 0));
    assert_eq!(
        step(&mut t, id, Direction::Output, RST, 500),
        (TcpState::Close, 10_500)
    );
    assert_eq!(counts(&t, 3), (0, 1, 0));
    // A packet without SYN/FIN/ACK/RST also closes.
    let id = t.insert(&nat(2, 3), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    assert_eq!(
        step(&mut t, id, Direction::Input, PSH, 7),
        (TcpState::Close, 10_007)
    );
}

#[test]
fn dr_and_tun_use_input_only() {
    for fwd in [FwdMethod::Route, FwdMethod::Tunnel] {
        let mut t = table(16);
        let c = NewConn { fwd, ..nat(5, 4) };
        let c = NewConn {
            real: Endpoint::new(RIP, 80),
            ..c
        };
        let id = t.insert(&c, 0).unwrap();
        assert!(t.get(id).unwrap().no_reply_seen());
        // Replies are never indexed for DR/TUN.
        assert_eq!(t.peek(&reply_tuple(&c)), None);
        assert_eq!(
            step(&mut t, id, Direction::Input, SYN, 0),
            (TcpState::SynRecv, 60_000)
        );
        assert_eq!(
            step(&mut t, id, Direction::Input, ACK, 10),
            (TcpState::Established, 900_010)
        );
        assert_eq!(counts(&t, 4), (1, 0, 0));
        // Client FIN alone: FIN_WAIT (INPUT would say CLOSE_WAIT).
        assert_eq!(
            step(&mut t, id, Direction::Input, FIN | ACK, 20),
            (TcpState::FinWait, 120_020)
        );
        assert_eq!(
            step(&mut t, id, Direction::Input, ACK, 30),
            (TcpState::FinWait, 120_030)
        );
        assert_eq!(counts(&t, 4), (0, 1, 0));
        assert_eq!(t.get(id).unwrap().fwd(), fwd);
    }
}

#[test]
fn lookups_from_both_directions_nat_and_fullnat() {
    let mut t = table(64);
    let n = nat(1234, 1);
    let f = NewConn {
        fwd: FwdMethod::FullNat,
        local: Some(Endpoint::new(LIP, 5000)),
        client: Endpoint::new(CIP + 1, 1234),
        ..nat(0, 2)
    };
    let idn = t.insert(&n, 0).unwrap();
    let idf = t.insert(&f, 0).unwrap();
    assert_eq!(t.peek(&fwd_tuple(&n)), Some((idn, Direction::Input)));
    assert_eq!(t.peek(&reply_tuple(&n)), Some((idn, Direction::Output)));
    assert_eq!(t.peek(&fwd_tuple(&f)), Some((idf, Direction::Input)));
    assert_eq!(t.peek(&reply_tuple(&f)), Some((idf, Direction::Output)));
    // FULLNAT replies go to the local address, not to the client.
    let wrong = Tuple {
        dst: f.client,
        ..reply_tuple(&f)
    };
    assert_eq!(t.peek(&wrong), None);
    assert_eq!(t.get(idf).unwrap().local(), Some(Endpoint::new(LIP, 5000)));
    assert_eq!(t.get(idn).unwrap().local(), None);
    // Same tuple, other protocol: no match.
    let udp = Tuple {
        proto: Protocol::Udp,
        ..fwd_tuple(&n)
    };
    assert_eq!(t.peek(&udp), None);
    // Duplicates are refused and counted.
    assert_eq!(t.insert(&n, 0), Err(ConnError::Exists));
    let same_reply = NewConn {
        virt: Endpoint::new(VIP + 1, 80),
        ..n
    };
    assert_eq!(t.insert(&same_reply, 0), Err(ConnError::ReplyExists));
    assert_eq!((t.stats().exists, t.stats().reply_exists), (1, 1));
    let no_local = NewConn { local: None, ..f };
    assert_eq!(t.insert(&no_local, 0), Err(ConnError::MissingLocal));
    // The same for DR is fine: no reply key.
    let dr = NewConn {
        fwd: FwdMethod::Route,
        ..same_reply
    };
    assert!(t.insert(&dr, 0).is_ok());
    assert_eq!(t.len(), 3);
}

#[test]
fn batch_lookup_equals_single_lookups() {
    // Tiny index relative to the keys: plenty of collisions and probing.
    let mut t = table(300);
    let mut rng = Rng(77);
    let mut tuples = Vec::new();
    for i in 0..300u16 {
        let mut c = nat(i, 1);
        c.client.addr = CIP + (rng.below(16) as u32);
        c.fwd = if i % 2 == 0 {
            FwdMethod::Masq
        } else {
            FwdMethod::Route
        };
        if t.insert(&c, 0).is_ok() {
            tuples.push(fwd_tuple(&c));
            tuples.push(reply_tuple(&c)); // DR replies: misses
        }
        tuples.push(Tuple {
            dst: Endpoint::new(VIP + 1, 80),
            ..fwd_tuple(&c)
        }); // miss
    }
    let want: Vec<_> = tuples.iter().map(|tu| t.peek(tu)).collect();
    let mut out = vec![None; tuples.len()];
    let hits = t.lookup_batch(&tuples, 500, &mut out);
    assert_eq!(out, want);
    assert_eq!(hits, want.iter().filter(|w| w.is_some()).count());
    assert!(hits >= 300 && hits < tuples.len());
    // Hits were refreshed: initial 3 s from 500 ms.
    for (id, _) in out.iter().flatten() {
        assert_eq!(t.get(*id).unwrap().expires_ms(), 3_500);
    }
    // A short output slice bounds the work.
    let mut two = [None; 2];
    assert!(t.lookup_batch(&tuples, 600, &mut two) <= 2);
}

#[test]
fn expiry_is_never_early_and_at_most_one_tick_late() {
    let mut t = table(256);
    let mut due = HashMap::new();
    let mut timeouts = Timeouts::default();
    timeouts.set(7, 3, 5).unwrap();
    t.set_timeouts(timeouts);
    for i in 0..200u16 {
        let mut c = nat(i, 1);
        if i % 3 == 0 {
            c.proto = Protocol::Udp;
        }
        let born = u64::from(i) * 37;
        let id = t.insert(&c, born).unwrap();
        let flags = [SYN, ACK, FIN, RST][usize::from(i) % 4];
        t.update_state(id, Direction::Input, flags, born);
        due.insert(id.index(), t.get(id).unwrap().expires_ms());
    }
    let mut now = 0;
    while !due.is_empty() {
        let mut gone = Vec::new();
        t.expire(now, |id, c| {
            assert!(c.expires_ms() <= now, "expired early");
            gone.push(id.index());
        });
        for g in gone {
            assert!(due.remove(&g).is_some());
        }
        for &d in due.values() {
            assert!(now < d + TICK_MS, "late: due {d}, now {now}");
        }
        now += 1;
        assert!(now < 100_000);
    }
    assert!(t.is_empty());
    assert_eq!(counts(&t, 1), (0, 0, 0));
    assert_eq!(t.stats().expired, 200);
}

#[test]
fn shorter_timeout_moves_the_timer_earlier() {
    // Big enough for a wheel revolution (4096 slots, 41 s) longer than the
    // new timeout: a revisit would not correct it in time.
    let mut t = table(1 << 16);
    assert!(t.wheel.slots() as u64 * TICK_MS > 10_000);
    let id = t.insert(&nat(1, 0), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    // Refreshed lazily for a while at 900 s, then reset: CLOSE, 10 s.
    for now in (1_000..=50_000).step_by(1_000) {
        t.lookup(&fwd_tuple(&nat(1, 0)), now);
        assert_eq!(t.expire(now, |_, _| ()), 0);
    }
    assert_eq!(
        step(&mut t, id, Direction::Output, RST, 50_000),
        (TcpState::Close, 60_000)
    );
    for now in 50_001..60_000 {
        assert_eq!(t.expire(now, |_, _| ()), 0, "early at {now}");
    }
    assert_eq!(t.expire(60_000, |_, _| ()), 1);
}

#[test]
fn refreshed_connections_do_not_expire() {
    let mut t = table(16);
    let mut to = Timeouts::default();
    to.set(0, 0, 1).unwrap(); // UDP 1 s
    t.set_timeouts(to);
    let c = NewConn {
        proto: Protocol::Udp,
        ..nat(53, 0)
    };
    let id = t.insert(&c, 0).unwrap();
    t.update_state(id, Direction::Input, 0, 0);
    let mut last = 0;
    for now in (0..=600_000u64).step_by(10) {
        if now % 900 == 0 {
            let dir = if now % 1800 == 0 {
                fwd_tuple(&c)
            } else {
                reply_tuple(&c)
            };
            assert!(t.lookup(&dir, now).is_some(), "lost at {now}");
            last = now;
        }
        assert_eq!(t.expire(now, |_, _| ()), 0, "expired at {now}");
    }
    // Lazy refresh: the wheel re-linked it a few times per second at most.
    assert_eq!(last, 599_400);
    assert_eq!(t.expire(last + 999, |_, _| ()), 0);
    assert_eq!(t.expire(last + 1000, |_, _| ()), 1);
    assert_eq!(t.get(id), None, "stale handle finds nothing");
}

#[test]
fn table_full_then_recovery_after_expiry() {
    let mut t = table(8);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(t.insert(&nat(i, 1), 0).unwrap());
    }
    assert_eq!(t.insert(&nat(100, 1), 0), Err(ConnError::TableFull));
    assert_eq!(t.insert(&nat(101, 1), 0), Err(ConnError::TableFull));
    assert_eq!(t.stats().table_full, 2);
    assert_eq!((t.len(), t.capacity()), (8, 8));
    // Keep two alive, let the rest time out (initial 3 s).
    t.lookup(&fwd_tuple(&nat(0, 1)), 2_000);
    t.lookup(&fwd_tuple(&nat(1, 1)), 2_000);
    assert_eq!(t.expire(3_000, |_, _| ()), 6);
    assert_eq!(t.len(), 2);
    let fresh = t.insert(&nat(100, 1), 3_000).unwrap();
    assert_eq!(
        t.peek(&fwd_tuple(&nat(100, 1))),
        Some((fresh, Direction::Input))
    );
    // Recycled entries have new generations: old handles are dead.
    assert!(ids[2..].iter().all(|&id| t.get(id).is_none()));
    assert!(t.get(ids[0]).is_some());
}

#[test]
fn counters_through_a_whole_lifecycle() {
    let mut t = table(16);
    let a = t.insert(&nat(1, 5), 0).unwrap();
    let b = t.insert(&nat(2, 5), 0).unwrap();
    assert_eq!(counts(&t, 5), (0, 2, 0));
    for id in [a, b] {
        step(&mut t, id, Direction::Input, SYN, 0);
        step(&mut t, id, Direction::Output, SYN | ACK, 0);
        step(&mut t, id, Direction::Input, ACK, 0);
    }
    assert_eq!(counts(&t, 5), (2, 0, 0));
    // a: closes, b: explicitly removed while established.
    step(&mut t, a, Direction::Input, FIN, 0);
    assert_eq!(counts(&t, 5), (1, 1, 0));
    let removed = t.remove(b).unwrap();
    assert_eq!(removed.tcp_state(), Some(TcpState::Established));
    assert_eq!(t.remove(b), None);
    assert_eq!(counts(&t, 5), (0, 1, 0));
    // Reopened? an established-again sequence counts back as active.
    step(&mut t, a, Direction::Input, SYN, 0);
    step(&mut t, a, Direction::Input, ACK, 0);
    assert_eq!(counts(&t, 5), (1, 0, 0));
    step(&mut t, a, Direction::Output, RST, 0);
    assert_eq!(counts(&t, 5), (0, 1, 0));
    assert_eq!(t.expire(10_000, |_, _| ()), 1);
    assert_eq!(counts(&t, 5), (0, 0, 0));
    assert_eq!(t.stats().removed, 1);
}

#[test]
fn one_packet_udp_is_not_indexed_and_expires_at_once() {
    let mut t = table(16);
    let c = NewConn {
        proto: Protocol::Udp,
        one_packet: true,
        ..nat(53, 6)
    };
    let id = t.insert(&c, 100).unwrap();
    assert!(t.get(id).unwrap().is_one_packet());
    assert_eq!(t.peek(&fwd_tuple(&c)), None);
    // A second datagram gets its own entry.
    let id2 = t.insert(&c, 100).unwrap();
    assert_ne!(id, id2);
    t.update_state(id, Direction::Input, 0, 100);
    assert_eq!(counts(&t, 6), (0, 2, 0));
    assert_eq!(t.expire(100 + TICK_MS, |_, _| ()), 2);
    assert_eq!(counts(&t, 6), (0, 0, 0));
    // TCP ignores -o.
    let tcp = NewConn {
        one_packet: true,
        ..nat(1, 6)
    };
    let id = t.insert(&tcp, 0).unwrap();
    assert!(!t.get(id).unwrap().is_one_packet());
}

#[test]
fn timeout_changes_apply_from_the_next_packet() {
    let mut t = table(16);
    let id = t.insert(&nat(1, 0), 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    assert_eq!(t.get(id).unwrap().timeout_ms(), 900_000);
    let mut to = *t.timeouts();
    to.set(60, 0, 0).unwrap();
    t.set_timeouts(to);
    assert_eq!(t.get(id).unwrap().timeout_ms(), 900_000);
    assert_eq!(
        step(&mut t, id, Direction::Input, ACK, 10),
        (TcpState::Established, 60_010)
    );
}

#[test]
fn listing_shows_connections_and_templates() {
    let mut t = table(16);
    let key = PersistKey::for_service(Protocol::Tcp, CIP, u32::MAX, VIP, 80, 80);
    let (tpl, dest) = t
        .template_for(
            &key,
            360,
            0,
            |_| true,
            || Some((1, Endpoint::new(RIP, 8080))),
        )
        .unwrap();
    let c = NewConn {
        template: Some(tpl),
        ..nat(3333, dest)
    };
    let id = t.insert(&c, 0).unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    let rows: Vec<(String, &str, &str, u64)> = t
        .iter()
        .map(|(_, c)| {
            (
                c.proto_name().to_string(),
                c.state_name(),
                if c.is_template() { "tpl" } else { "conn" },
                c.expires_in_ms(1_000) / 1000,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("TCP".into(), "NONE", "tpl", 359),
            ("TCP".into(), "SYN_RECV", "conn", 59),
        ]
    );
    assert_eq!(t.template_of(id), Some(tpl));
    assert_eq!(t.get(tpl).unwrap().controlled(), 1);
}

#[test]
fn persistence_same_client_net_same_server() {
    let mut t = table(64);
    let mask = u32::prefix_mask(24);
    fn pick(d: DestId) -> impl FnOnce() -> Option<(DestId, Endpoint<u32>)> {
        move || Some((d, Endpoint::new(RIP + d, 80)))
    }
    fn no_pick() -> Option<(DestId, Endpoint<u32>)> {
        panic!("scheduled although a template exists")
    }
    let k1 = PersistKey::for_service(Protocol::Tcp, CIP, mask, VIP, 80, 80);
    let (t1, d1) = t.template_for(&k1, 300, 0, |_| true, pick(7)).unwrap();
    // Another client of the same /24: same template, same server.
    let k2 = PersistKey::for_service(Protocol::Tcp, CIP + 9, mask, VIP, 80, 80);
    assert_eq!(k1, k2);
    let (t2, d2) = t.template_for(&k2, 300, 1_000, |_| true, no_pick).unwrap();
    assert_eq!((t2, d2), (t1, d1));
    assert_eq!(d1, 7);
    // A different /24 is scheduled afresh.
    let k3 = PersistKey::for_service(Protocol::Tcp, CIP + 0x100, mask, VIP, 80, 80);
    let (t3, d3) = t.template_for(&k3, 300, 1_000, |_| true, pick(3)).unwrap();
    assert_ne!(t3, t1);
    assert_eq!(d3, 3);
    // Another port of the VIP is another template.
    let k4 = PersistKey::for_service(Protocol::Tcp, CIP, mask, VIP, 443, 443);
    assert_ne!(t.template_lookup(&k4, 1_000, |_| true), Some(t1));
    assert_eq!(counts(&t, 7), (0, 0, 1));
    assert_eq!(counts(&t, 3), (0, 0, 1));
    // Refreshed by its second use at 1 s.
    assert_eq!(t.get(t1).unwrap().expires_ms(), 301_000);
    // No server: error, no template.
    let k5 = PersistKey::for_service(Protocol::Udp, CIP, mask, VIP, 53, 53);
    assert_eq!(
        t.template_for(&k5, 300, 0, |_| true, || None),
        Err(crate::lb::persist::PersistError::NoDest)
    );
    assert_eq!(t.template_count(), 2);
}

#[test]
fn template_outlives_its_connections_as_the_kernel_does() {
    let mut t = table(64);
    let key = PersistKey::for_service(Protocol::Tcp, CIP, u32::MAX, VIP, 80, 80);
    let (tpl, dest) = t
        .template_for(&key, 100, 0, |_| true, || Some((2, Endpoint::new(RIP, 80))))
        .unwrap();
    let id = t
        .insert(
            &NewConn {
                template: Some(tpl),
                ..nat(1, dest)
            },
            0,
        )
        .unwrap();
    step(&mut t, id, Direction::Input, SYN, 0);
    step(&mut t, id, Direction::Output, SYN | ACK, 0);
    step(&mut t, id, Direction::Input, ACK, 0);
    assert!(t.get(tpl).unwrap().is_assured());
    assert_eq!(t.get(tpl).unwrap().state_name(), "ASSURED");
    // Template due at 100 s, but the connection (ESTABLISHED, 900 s) lives:
    // kept 60 s more, again and again.
    assert_eq!(t.expire(100_000, |_, _| ()), 0);
    assert_eq!(t.get(tpl).unwrap().expires_ms(), 160_000);
    assert_eq!(t.get(tpl).unwrap().timeout_ms(), 60_000);
    assert_eq!(t.expire(160_000, |_, _| ()), 0);
    assert_eq!(t.get(tpl).unwrap().expires_ms(), 220_000);
    // A new connection through it refreshes with the (now 60 s) timeout.
    assert_eq!(t.template_lookup(&key, 200_000, |_| true), Some(tpl));
    assert_eq!(t.get(tpl).unwrap().expires_ms(), 260_000);
    // The connection closes and expires at 210 s + 10 s; the template
    // survives it and expires on its own timer.
    step(&mut t, id, Direction::Input, RST, 210_000);
    let mut gone = Vec::new();
    t.expire(220_000, |id, c| gone.push((id, c.is_template())));
    assert_eq!(gone, vec![(id, false)]);
    assert_eq!(t.get(tpl).unwrap().controlled(), 0);
    assert_eq!(counts(&t, 2), (0, 0, 1));
    assert_eq!(t.expire(259_999, |_, _| ()), 0);
    assert_eq!(t.expire(260_000, |_, _| ()), 1);
    assert_eq!(counts(&t, 2), (0, 0, 0));
    assert!(t.is_empty());
}

#[test]
fn template_of_unavailable_server_is_replaced() {
    let mut t = table(64);
    let key = PersistKey::<u32>::for_fwmark(CIP, u32::MAX, 9);
    let (old, d) = t
        .template_for(&key, 300, 0, |_| true, || Some((1, Endpoint::new(RIP, 0))))
        .unwrap();
    assert_eq!(t.get(old).unwrap().proto_name(), "IP");
    let c = NewConn {
        template: Some(old),
        ..nat(1, d)
    };
    let conn = t.insert(&c, 0).unwrap();
    // Server 1 goes away: the template is invalidated and a new one made.
    let (new, d2) = t
        .template_for(
            &key,
            300,
            5_000,
            |d| d != 1,
            || Some((4, Endpoint::new(RIP + 1, 0))),
        )
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(d2, 4);
    assert_eq!(t.stats().templates_invalidated, 1);
    let o = t.get(old).unwrap();
    assert!(!o.is_hashed());
    assert_eq!((o.virt().port, o.real().port), (0xffff, 0xffff));
    // Both still count until the old one expires with no connection left.
    assert_eq!(counts(&t, 1), (0, 1, 1));
    assert_eq!(counts(&t, 4), (0, 0, 1));
    assert_eq!(t.template_lookup(&key, 6_000, |_| true), Some(new));
    // The old template fires at 300 s with its connection gone (3 s initial
    // timeout): removed then.
    let mut removed = Vec::new();
    t.expire(300_000, |id, _| removed.push(id));
    assert_eq!(removed, vec![conn, old]);
    assert_eq!(counts(&t, 1), (0, 0, 0));
    assert_eq!(t.template_count(), 1);
    // Removing a template that controls connections only invalidates it.
    let c2 = t
        .insert(
            &NewConn {
                template: Some(new),
                ..nat(2, 4)
            },
            300_000,
        )
        .unwrap();
    assert_eq!(t.remove(new), None);
    assert!(t.get(new).is_some());
    assert_eq!(t.template_lookup(&key, 300_000, |_| true), None);
    assert!(t.remove(c2).is_some());
    assert!(t.remove(new).is_some());
    assert!(t.is_empty());
    assert_eq!(counts(&t, 4), (0, 0, 0));
    // A stale template handle is refused.
    assert_eq!(
        t.insert(
            &NewConn {
                template: Some(new),
                ..nat(3, 4)
            },
            0
        ),
        Err(ConnError::StaleTemplate)
    );
}

#[test]
fn udp_reply_assures_template_and_flush_clears_all() {
    let mut t = table(64);
    let key = PersistKey::for_service(Protocol::Udp, CIP, u32::MAX, VIP, 53, 53);
    let (tpl, d) = t
        .template_for(&key, 300, 0, |_| true, || Some((2, Endpoint::new(RIP, 53))))
        .unwrap();
    let c = NewConn {
        proto: Protocol::Udp,
        template: Some(tpl),
        ..nat(1000, d)
    };
    let id = t.insert(&c, 0).unwrap();
    t.update_state(id, Direction::Input, 0, 0);
    assert!(!t.get(tpl).unwrap().is_assured());
    assert_eq!(t.get(id).unwrap().state_name(), "UDP");
    assert_eq!(t.get(id).unwrap().expires_ms(), 300_000);
    t.update_state(id, Direction::Output, 0, 5);
    assert!(t.get(tpl).unwrap().is_assured());
    let mut n = 0;
    t.flush(|_, _| n += 1);
    assert_eq!(n, 2);
    assert!(t.is_empty());
    assert_eq!(counts(&t, 2), (0, 0, 0));
}

#[test]
fn ipv6_table_works_the_same() {
    let load = Arc::new(CoreLoad::new(4));
    let mut t = ConnTable::<u128>::with_seed(32, load, 0, Seed::new(9)).unwrap();
    let c = NewConn {
        proto: Protocol::Tcp,
        client: Endpoint::new(0x2001_0db8_u128 << 96 | 5, 4000),
        virt: Endpoint::new(0x2001_0db8_u128 << 96 | 0x100, 443),
        local: Some(Endpoint::new(0x2001_0db8_u128 << 96 | 0x200, 6000)),
        real: Endpoint::new(0x2001_0db8_u128 << 96 | 0x300, 8443),
        dest: 1,
        fwd: FwdMethod::FullNat,
        one_packet: false,
        template: None,
    };
    let id = t.insert(&c, 0).unwrap();
    let reply = Tuple {
        proto: Protocol::Tcp,
        src: c.real,
        dst: c.local.unwrap(),
    };
    assert_eq!(t.lookup(&reply, 0), Some((id, Direction::Output)));
    assert!(t.update_state(id, Direction::Input, SYN, 0));
    assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::SynRecv));
    let key = PersistKey::for_service(
        Protocol::Tcp,
        c.client.addr,
        u128::prefix_mask(64),
        c.virt.addr,
        443,
        443,
    );
    assert_eq!(key.client_net(), 0x2001_0db8_u128 << 96);
    assert_eq!(t.expire(60_000, |_, _| ()), 1);
}

/// xorshift64*: deterministic pseudo-random numbers for property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
struct ModelConn {
    id: ConnId,
    request: Tuple<u32>,
    reply: Option<Tuple<u32>>,
    dest: DestId,
    proto: Protocol,
    fwd: FwdMethod,
    no_output: bool,
    state: TcpState,
    timeout: u64,
    expires: u64,
}

#[derive(Default)]
struct Model {
    conns: HashMap<u32, ModelConn>,
    by_tuple: HashMap<Tuple<u32>, (u32, Direction)>,
}

impl Model {
    fn remove(&mut self, idx: u32) -> ModelConn {
        let m = self.conns.remove(&idx).unwrap();
        self.by_tuple.remove(&m.request);
        if let Some(r) = m.reply {
            self.by_tuple.remove(&r);
        }
        m
    }
    fn load(&self, dest: DestId) -> (u32, u32) {
        let mut a = (0, 0);
        for m in self.conns.values().filter(|m| m.dest == dest) {
            if m.proto == Protocol::Tcp && m.state.counts_as_active() {
                a.0 += 1;
            } else {
                a.1 += 1;
            }
        }
        a
    }
}

fn check_model(t: &ConnTable<u32>, m: &Model) {
    assert_eq!(t.len(), m.conns.len());
    for (tuple, &(idx, dir)) in &m.by_tuple {
        let (id, d) = t.peek(tuple).expect("model tuple missing");
        assert_eq!((id.index(), d), (idx, dir));
        assert_eq!(m.conns[&idx].id, id);
    }
    for dest in 0..4 {
        let (a, i) = m.load(dest);
        assert_eq!((t.load().active(dest), t.load().inactive(dest)), (a, i));
    }
}

#[test]
fn property_random_operations_match_a_model() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut t =
        ConnTable::<u32>::with_seed(20, Arc::new(CoreLoad::new(4)), 0, Seed::new(5)).unwrap();
    let mut to = Timeouts::default();
    to.set(100, 5, 7).unwrap();
    t.set_timeouts(to);
    let timeouts = *t.timeouts();
    let mut m = Model::default();
    let mut now = 0u64;
    let mut refused = [0u32; 3];
    for _ in 0..20_000 {
        match rng.below(100) {
            // Insert.
            0..=34 => {
                let proto = if rng.below(3) == 0 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                };
                let fwd = [
                    FwdMethod::Masq,
                    FwdMethod::Route,
                    FwdMethod::Tunnel,
                    FwdMethod::FullNat,
                ][rng.below(4) as usize];
                let c = NewConn {
                    proto,
                    client: Endpoint::new(CIP + rng.below(4) as u32, rng.below(8) as u16),
                    virt: Endpoint::new(VIP + rng.below(2) as u32, 80),
                    local: Some(Endpoint::new(LIP, rng.below(16) as u16)),
                    real: Endpoint::new(RIP + rng.below(2) as u32, 8080),
                    dest: rng.below(4) as DestId,
                    fwd,
                    one_packet: false,
                    template: None,
                };
                let request = fwd_tuple(&c);
                let reply = fwd.sees_replies().then(|| reply_tuple(&c));
                let expect = if m.conns.len() == t.capacity() {
                    Err(ConnError::TableFull)
                } else if m.by_tuple.contains_key(&request) {
                    Err(ConnError::Exists)
                } else if reply.is_some_and(|r| m.by_tuple.contains_key(&r)) {
                    Err(ConnError::ReplyExists)
                } else {
                    Ok(())
                };
                match (t.insert(&c, now), expect) {
                    (Ok(id), Ok(())) => {
                        m.by_tuple.insert(request, (id.index(), Direction::Input));
                        if let Some(r) = reply {
                            m.by_tuple.insert(r, (id.index(), Direction::Output));
                        }
                        m.conns.insert(
                            id.index(),
                            ModelConn {
                                id,
                                request,
                                reply,
                                dest: c.dest,
                                proto,
                                fwd,
                                no_output: !fwd.sees_replies(),
                                state: TcpState::None,
                                timeout: 3_000,
                                expires: now + 3_000,
                            },
                        );
                    }
                    (Err(e), Err(x)) => {
                        assert_eq!(e, x);
                        refused[match e {
                            ConnError::TableFull => 0,
                            ConnError::Exists => 1,
                            _ => 2,
                        }] += 1;
                    }
                    (got, want) => panic!("insert: got {got:?}, want {want:?}"),
                }
            }
            // Packet on a random tuple (maybe unknown): lookup + state.
            35..=74 => {
                let keys: Vec<_> = m.by_tuple.keys().copied().collect();
                let tuple = if keys.is_empty() || rng.below(10) == 0 {
                    Tuple {
                        proto: Protocol::Tcp,
                        src: Endpoint::new(rng.next() as u32, 1),
                        dst: Endpoint::new(VIP, 80),
                    }
                } else {
                    keys[rng.below(keys.len() as u64) as usize]
                };
                let got = t.lookup(&tuple, now);
                let want = m.by_tuple.get(&tuple).copied();
                assert_eq!(got.map(|(id, d)| (id.index(), d)), want);
                let Some((id, dir)) = got else { continue };
                let mc = m.conns.get_mut(&id.index()).unwrap();
                mc.expires = now + mc.timeout;
                let flags = [SYN, SYN | ACK, ACK, FIN | ACK, RST, PSH][rng.below(6) as usize];
                assert!(t.update_state(id, dir, flags, now));
                match mc.proto {
                    Protocol::Tcp => {
                        let mut sd = match dir {
                            Direction::Input => StateDir::Input,
                            Direction::Output => StateDir::Output,
                        };
                        if mc.no_output {
                            if dir == Direction::Output {
                                mc.no_output = false;
                            } else {
                                sd = StateDir::InputOnly;
                            }
                        }
                        mc.state = next_state(false, sd, flags, mc.state);
                        mc.timeout = u64::from(timeouts.tcp_state(mc.state)) * 1000;
                    }
                    Protocol::Udp => mc.timeout = u64::from(timeouts.udp) * 1000,
                }
                mc.expires = now + mc.timeout;
                let c = t.get(id).unwrap();
                assert_eq!(c.expires_ms(), mc.expires);
                assert_eq!(c.fwd(), mc.fwd);
                if mc.proto == Protocol::Tcp {
                    assert_eq!(c.tcp_state(), Some(mc.state));
                }
            }
            // Explicit removal.
            75..=79 => {
                let keys: Vec<_> = m.conns.keys().copied().collect();
                if let Some(&k) = keys.get(rng.below(keys.len().max(1) as u64) as usize) {
                    let mc = m.remove(k);
                    assert!(t.remove(mc.id).is_some());
                    assert!(t.get(mc.id).is_none());
                }
            }
            // Time passes; expire.
            _ => {
                now += rng.below(4_000);
                let mut gone = Vec::new();
                t.expire(now, |id, c| {
                    assert!(c.expires_ms() <= now, "early");
                    gone.push(id);
                });
                for id in gone {
                    let mc = m.remove(id.index());
                    assert_eq!(mc.id, id);
                }
                for mc in m.conns.values() {
                    assert!(
                        now < mc.expires.div_ceil(TICK_MS) * TICK_MS,
                        "late: due {} now {now}",
                        mc.expires
                    );
                }
            }
        }
        check_model(&t, &m);
    }
    // Every outcome was exercised.
    assert!(refused.iter().all(|&n| n > 0), "{refused:?}");
    assert!(t.stats().expired > 1000);
}

/// `insert_checked` skips only the lookups its caller vouches for: with
/// nothing vouched it refuses what `insert` refuses, and an entry made with
/// both keys vouched free is found from both directions like any other.
#[test]
fn insert_checked_skips_only_vouched_lookups() {
    let mut t = table(16);
    let mut fnat = nat(1000, 1);
    fnat.fwd = FwdMethod::FullNat;
    fnat.local = Some(Endpoint::new(LIP, 5000));
    let both = KnownFree {
        request: true,
        reply: true,
        ..KnownFree::default()
    };
    let id = t.insert_checked(&fnat, 0, both).unwrap();
    assert_eq!(t.peek(&fwd_tuple(&fnat)), Some((id, Direction::Input)));
    assert_eq!(t.peek(&reply_tuple(&fnat)), Some((id, Direction::Output)));
    // the same request again, nothing vouched: refused as by insert
    assert_eq!(
        t.insert_checked(&fnat, 0, KnownFree::default()),
        Err(ConnError::Exists)
    );
    // another client on the same local port: the reply key is taken
    let mut other = fnat;
    other.client = Endpoint::new(CIP, 1001);
    assert_eq!(
        t.insert_checked(
            &other,
            0,
            KnownFree {
                request: true,
                ..KnownFree::default()
            }
        ),
        Err(ConnError::ReplyExists)
    );
    assert_eq!(t.insert(&other, 0), Err(ConnError::ReplyExists));
    assert_eq!(t.len(), 1);
}

/// A reply hash passed in (as the port allocator computed it with
/// `key_hash`) indexes the entry exactly as the table's own would: found
/// from both directions, removed cleanly, the key free again after.
#[test]
fn insert_checked_with_the_callers_reply_hash_indexes_as_insert() {
    let mut t = table(16);
    let mut fnat = nat(1000, 1);
    fnat.fwd = FwdMethod::FullNat;
    fnat.local = Some(Endpoint::new(LIP, 5000));
    let reply = reply_tuple(&fnat);
    let h = t.key_hash(&reply);
    assert_eq!(t.peek_hashed(&reply, h), None);
    let free = KnownFree {
        request: true,
        reply: true,
        reply_hash: Some(h),
    };
    let id = t.insert_checked(&fnat, 0, free).unwrap();
    assert_eq!(t.peek(&fwd_tuple(&fnat)), Some((id, Direction::Input)));
    assert_eq!(t.peek(&reply), Some((id, Direction::Output)));
    assert_eq!(t.peek_hashed(&reply, h), Some((id, Direction::Output)));
    // the same connection in a second table by plain insert: the same
    // results, and removal leaves both keys free in each
    let mut u = table(16);
    let id2 = u.insert(&fnat, 0).unwrap();
    assert_eq!(u.peek(&reply), Some((id2, Direction::Output)));
    t.remove(id);
    u.remove(id2);
    for tab in [&t, &u] {
        assert_eq!(tab.peek(&reply), None);
        assert_eq!(tab.peek(&fwd_tuple(&fnat)), None);
    }
}

/// An entry made by `insert_first` is exactly what `insert_checked` then
/// `update_state` (or `update_state_forwarded`) of the same packet made:
/// the same state, timeout, expiry, flags, `in_pkts`, ActiveConn and
/// InActConn counts, template (controlled count, ASSURED), counters, and it
/// expires at the same moment. For every TCP flag byte's classes (a SYN, a
/// sloppy ACK or FIN, a RST, none of them), UDP and one-packet UDP, every
/// method (INPUT and INPUT-ONLY tables), with and without a persistence
/// template, with the normal and the secure_tcp tables.
#[test]
fn insert_first_equals_insert_then_update_state() {
    let methods = [
        FwdMethod::Masq,
        FwdMethod::FullNat,
        FwdMethod::Route,
        FwdMethod::Tunnel,
    ];
    let flag_cases = [
        SYN,
        SYN | ACK,
        ACK,
        ACK | PSH,
        FIN,
        FIN | ACK,
        RST,
        RST | SYN,
        PSH,
        0,
    ];
    let mut cases = 0;
    for secure in [false, true] {
        for fwd in methods {
            for (proto, one_packet) in [
                (Protocol::Tcp, false),
                (Protocol::Udp, false),
                (Protocol::Udp, true),
            ] {
                for with_template in [false, true] {
                    for forwarded in [false, true] {
                        for &flags in &flag_cases {
                            let now = 7_000 + u64::from(flags);
                            let mut made = [None, None];
                            for (k, made) in made.iter_mut().enumerate() {
                                let mut t = table(64);
                                t.set_secure_tcp(secure);
                                let template = with_template.then(|| {
                                    let key =
                                        PersistKey::for_service(proto, CIP, u32::MAX, VIP, 80, 80);
                                    // (a timeout no connection state has: two
                                    // entries due in the same tick may leave
                                    // in either order)
                                    t.template_for(
                                        &key,
                                        450,
                                        now,
                                        |_| true,
                                        || Some((3, Endpoint::new(RIP, 8080))),
                                    )
                                    .unwrap()
                                    .0
                                });
                                let c = NewConn {
                                    proto,
                                    fwd,
                                    one_packet,
                                    local: (fwd == FwdMethod::FullNat)
                                        .then_some(Endpoint::new(LIP, 5000)),
                                    template,
                                    ..nat(40000, 3)
                                };
                                let id = if k == 0 {
                                    let id =
                                        t.insert_checked(&c, now, KnownFree::default()).unwrap();
                                    if forwarded {
                                        t.update_state_forwarded(id, Direction::Input, flags, now);
                                    } else {
                                        t.update_state(id, Direction::Input, flags, now);
                                    }
                                    id
                                } else {
                                    let first = FirstPacket {
                                        tcp_flags: flags,
                                        forwarded,
                                    };
                                    t.insert_first(&c, now, KnownFree::default(), first)
                                        .unwrap()
                                };
                                let mut e = *t.get(id).unwrap();
                                // the timer link is the wheel's business:
                                // compared through the expiry below
                                e.link = TimerLink::UNLINKED;
                                let tpl = template.map(|tp| {
                                    let mut x = *t.get(tp).unwrap();
                                    x.link = TimerLink::UNLINKED;
                                    x
                                });
                                let load = counts(&t, 3);
                                let stats = *t.stats();
                                let armed = t.wheel.armed();
                                // expiry: nothing before the entry's time,
                                // the entry then
                                let due = e.expires_ms();
                                let early = t.expire(due.saturating_sub(1), |_, _| ());
                                let mut gone = Vec::new();
                                t.expire(due, |g, _| gone.push(g));
                                *made = Some((id, e, tpl, load, stats, armed, early, gone));
                            }
                            let what = format!(
                                "{fwd:?} {proto:?} one_packet={one_packet} template={with_template} \
                                 forwarded={forwarded} secure={secure} flags={flags:#x}"
                            );
                            assert_eq!(made[0], made[1], "{what}");
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 4 * 3 * 2 * 2 * 10);
}
