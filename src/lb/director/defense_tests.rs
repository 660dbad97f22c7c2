//! A SYN flood against a small table, with and without IPVS's defences
//! (drop_entry, secure_tcp): [`crate::lb::defense`].

use super::*;
use crate::lb::defense::DefenseConfig;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LEGIT: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const CAPACITY: usize = 1024;

fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src, VIP)
        .tcp(sport, 80, tcp::SYN)
        .seq(1)
        .build()
}

fn director() -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(4);
    t.add_service(key, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &key,
        RealServerConfig::new(IpAddr::V4(RIP), 8080, FwdMethod::Masq),
    )
    .unwrap();
    let cfg = CoreLbConfig {
        conn_capacity: CAPACITY,
        hash_seed: Some(11),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap()
}

/// SYNs from `n` random-looking sources at `now`.
fn flood(lb: &mut CoreLb, n: u32, salt: u32, now: u64) {
    for i in 0..n {
        let x = (i ^ salt).wrapping_mul(0x9e37_79b9);
        let src = Ipv4Addr::from(0xc612_0000 | (x >> 16) | 0x0001_0000);
        let mut p = VecPacket::new(&syn(src, (x & 0xffff) as u16 | 1024));
        lb.process(&mut p, None, now);
    }
}

fn legit(lb: &mut CoreLb, sport: u16, now: u64) -> FwdVerdict {
    let mut p = VecPacket::new(&syn(LEGIT, sport));
    lb.process(&mut p, None, now)
}

/// Tick every 10 ms from `from` to `to`.
fn run_clock(lb: &mut CoreLb, from: u64, to: u64) {
    let mut t = from;
    while t <= to {
        lb.tick(t);
        t += 10;
    }
}

#[test]
fn without_defence_a_flood_locks_clients_out_for_the_synrecv_timeout() {
    let mut lb = director();
    flood(&mut lb, 4 * CAPACITY as u32, 1, 0);
    assert_eq!(lb.conns().len(), CAPACITY);
    run_clock(&mut lb, 0, 30_000);
    assert_eq!(
        legit(&mut lb, 5000, 30_000),
        FwdVerdict::Drop(FwdDrop::TableFull)
    );
    assert_eq!(lb.stats().event(FwdEvent::DefenseDropped), 0);
}

#[test]
fn drop_entry_frees_half_open_entries_within_seconds() {
    let mut lb = director();
    lb.set_defense(DefenseConfig {
        drop_entry: 1,
        ..DefenseConfig::default()
    });
    flood(&mut lb, 4 * CAPACITY as u32, 2, 0);
    assert_eq!(lb.conns().len(), CAPACITY);
    // First check at t=0 saw... the flood came first: pressure, drop pass.
    run_clock(&mut lb, 0, 2_000);
    assert!(lb.defense_level().drop_entry, "under pressure");
    assert!(lb.stats().event(FwdEvent::DefenseDropped) > 0);
    assert!(lb.stats().event(FwdEvent::DropEntryOn) >= 1);
    assert!(lb.conns().len() < CAPACITY);
    assert_eq!(
        legit(&mut lb, 5000, 2_000),
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
    // A flood that keeps coming is thinned every second, so clients keep
    // finding room between its bursts.
    for s in 3..8u32 {
        flood(&mut lb, CAPACITY as u32, 100 + s, u64::from(s) * 1000);
        run_clock(&mut lb, u64::from(s) * 1000, u64::from(s) * 1000 + 990);
        let v = legit(&mut lb, 6000 + s as u16, u64::from(s) * 1000 + 995);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP)
            },
            "second {s}"
        );
    }
}

#[test]
fn secure_tcp_expires_flood_entries_after_ten_seconds() {
    let mut lb = director();
    lb.set_defense(DefenseConfig {
        secure_tcp: 3,
        ..DefenseConfig::default()
    });
    lb.tick(0); // mode 3: on from the first check
    assert!(lb.defense_level().secure_tcp);
    assert_eq!(lb.stats().event(FwdEvent::SecureTcpOn), 1);
    flood(&mut lb, 4 * CAPACITY as u32, 3, 0);
    assert_eq!(lb.conns().len(), CAPACITY);
    run_clock(&mut lb, 0, 9_900);
    assert_eq!(lb.conns().len(), CAPACITY, "not before 10 s");
    // the tick budget expires 4096 entries per tick: all gone by 10.1 s
    run_clock(&mut lb, 10_000, 10_100);
    assert_eq!(lb.conns().len(), 0);
    assert_eq!(
        legit(&mut lb, 5000, 10_100),
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP)
        }
    );
}

#[test]
fn automatic_modes_switch_off_when_the_pressure_is_gone() {
    let mut lb = director();
    lb.set_defense(DefenseConfig {
        drop_entry: 0,
        secure_tcp: 1,
        pressure_percent: 50,
        sloppy_tcp: false,
    });
    lb.tick(0);
    assert!(!lb.defense_level().secure_tcp);
    flood(&mut lb, CAPACITY as u32, 4, 0);
    lb.tick(1000);
    assert!(lb.defense_level().pressure && lb.defense_level().secure_tcp);
    // entries made before the switch keep 60 s; those after get 10 s
    run_clock(&mut lb, 1000, 61_000);
    assert_eq!(lb.conns().len(), 0);
    lb.tick(62_000);
    assert!(!lb.defense_level().secure_tcp);
}

#[test]
fn a_drop_pass_is_spread_over_the_ticks() {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(4);
    t.add_service(key, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &key,
        RealServerConfig::new(IpAddr::V4(RIP), 8080, FwdMethod::Masq),
    )
    .unwrap();
    // 1/32 of 65536 slots = 2048 probes a second, at most 512 per tick
    let cfg = CoreLbConfig {
        conn_capacity: 65536,
        tick_budget: 512,
        hash_seed: Some(3),
        ..CoreLbConfig::default()
    };
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let mut lb = CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap();
    lb.set_defense(DefenseConfig {
        drop_entry: 3,
        ..DefenseConfig::default()
    });
    flood(&mut lb, 65536, 9, 0);
    let full = lb.conns().len();
    let mut dropped = Vec::new();
    for tick in 0..6u64 {
        lb.tick(tick * 10);
        dropped.push(lb.stats().event(FwdEvent::DefenseDropped));
    }
    assert!(full > 60_000, "{full}");
    // four ticks of at most 512 probes, then nothing until the next second
    assert!(dropped[0] > 0 && dropped[0] <= 512, "{dropped:?}");
    assert!(dropped[3] > dropped[2] && dropped[3] <= 2048, "{dropped:?}");
    assert_eq!(dropped[4], dropped[3], "{dropped:?}");
    assert_eq!(dropped[5], dropped[3], "{dropped:?}");
}
