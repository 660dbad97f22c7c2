//! Scheduler benchmark: decisions per second for every IPVS scheduler with
//! 10 and 1000 real servers on one core, and the Maglev table rebuild time.
//!
//! Each decision goes through `SchedulerSet::schedule` (overload flags,
//! snapshot check, scheduler) with a `SummedLoad` view. Inputs vary like
//! traffic: random client address and port, and 1024 destination addresses
//! (what lblc, lblcr and dh key on). Every chosen server gets an active
//! connection and the connection opened 4 × servers decisions earlier
//! closes, so the least-connection schedulers see realistic, shifting
//! counts (and ovf never runs out of room); that bookkeeping (two counter
//! updates) is part of the measured time.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use vsd::lb::load::{CoreLoad, DestId, GlobalLoad, SummedLoad};
use vsd::lb::sched::mh::Maglev;
use vsd::lb::sched::{Prng, SchedInput, SchedulerSet};
use vsd::lb::service::{
    RealServerConfig, SchedFlags, ServiceConfig, ServiceKey, ServiceTable, MH_TABLE_SIZES,
};
use vsd::lb::types::{FwdMethod, SchedulerKind};

fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))
}

/// A table with one service of `n` servers, weights 1..=10 in turn.
fn table(kind: SchedulerKind, n: u32, mh_size: u32) -> (ServiceTable, ServiceKey) {
    let mut t = ServiceTable::new(n as usize + 16);
    let key = ServiceKey::tcp(vip(), 80);
    let cfg = ServiceConfig {
        flags: SchedFlags {
            sh_fallback: kind == SchedulerKind::Sh,
            mh_fallback: kind == SchedulerKind::Mh,
            ..SchedFlags::default()
        },
        mh_table_size: mh_size,
        ..ServiceConfig::with_scheduler(kind.name())
    };
    t.add_service(key, cfg).expect("service");
    for i in 0..n {
        let addr = IpAddr::V4(Ipv4Addr::from(0xC612_0100 + i));
        let rs = RealServerConfig::new(addr, 80, FwdMethod::Masq).weight(1 + i % 10);
        t.add_dest(&key, rs).expect("server");
    }
    (t, key)
}

/// Decisions per second for one scheduler and server count, and the
/// fraction of decisions that found no server.
fn decisions_per_sec(kind: SchedulerKind, n: u32, budget: Duration) -> (f64, f64) {
    let (t, key) = table(kind, n, 4093);
    let snap = t.snapshot();
    let svc = snap.get_key(&key).expect("service in snapshot");
    let mut set = SchedulerSet::new(1);
    set.sync(&snap);
    let slots = snap.dest_capacity();
    let (core, global) = (CoreLoad::new(slots), GlobalLoad::new(slots));
    let load = SummedLoad {
        global: &global,
        local: &core,
    };
    let mut rng = Prng::new(0xBE7C);
    let open_conns = 4 * n as usize;
    let mut open: Vec<DestId> = Vec::with_capacity(open_conns);
    let mut next_close = 0usize;
    // Pre-generate inputs so the generator is not measured.
    let inputs: Vec<SchedInput> = (0..8192)
        .map(|_| {
            let r = rng.next_u64();
            SchedInput {
                src: IpAddr::V4(Ipv4Addr::from(r as u32)),
                sport: (r >> 32) as u16 | 1024,
                dst: IpAddr::V4(Ipv4Addr::from(0xC612_0000 | ((r >> 48) as u32 & 1023))),
                dport: 80,
                now_ms: 0,
            }
        })
        .collect();
    let (mut done, mut missed) = (0u64, 0u64);
    let mut now_ms = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for (i, inp) in inputs.iter().enumerate() {
            let mut inp = *inp;
            now_ms += u64::from(i as u32 & 1);
            inp.now_ms = now_ms;
            if let Some(rs) = set.schedule(black_box(svc), &load, black_box(&inp)) {
                let id = black_box(rs.id);
                core.add_active(id, 1);
                if open.len() < open_conns {
                    open.push(id);
                } else {
                    core.add_active(open[next_close], -1);
                    open[next_close] = id;
                    next_close = (next_close + 1) % open_conns;
                }
            } else {
                missed += 1;
            }
        }
        done += inputs.len() as u64;
    }
    (
        done as f64 / start.elapsed().as_secs_f64(),
        missed as f64 / done.max(1) as f64,
    )
}

fn human((rate, missed): (f64, f64)) -> String {
    let r = if rate >= 1e6 {
        format!("{:.2} M/s", rate / 1e6)
    } else {
        format!("{:.1} K/s", rate / 1e3)
    };
    if missed > 0.0 {
        format!("{r} ({:.0}% none)", missed * 100.0)
    } else {
        r
    }
}

/// Average time to build a Maglev table of `size` for 1000 servers.
fn maglev_rebuild(size: u32, rounds: u32) -> Duration {
    let (t, key) = table(SchedulerKind::Mh, 1000, size);
    let snap = t.snapshot();
    let svc = snap.get_key(&key).expect("service in snapshot");
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(Maglev::new(black_box(svc)));
    }
    start.elapsed() / rounds
}

pub fn run(quick: bool) {
    let budget = Duration::from_millis(if quick { 60 } else { 400 });
    println!();
    println!("Scheduler decisions per second (one core, SchedulerSet + SummedLoad)");
    println!("{:<7} {:>14} {:>14}", "sched", "10 servers", "1000 servers");
    for kind in SchedulerKind::ALL {
        let small = decisions_per_sec(kind, 10, budget);
        let large = decisions_per_sec(kind, 1000, budget);
        println!(
            "{:<7} {:>14} {:>14}",
            kind.name(),
            human(small),
            human(large)
        );
    }
    println!();
    println!("Maglev table rebuild, 1000 servers");
    let rounds = if quick { 2 } else { 10 };
    for size in [4093, MH_TABLE_SIZES[MH_TABLE_SIZES.len() - 1]] {
        let d = maglev_rebuild(size, rounds);
        println!("  size {:>6}: {:>9.3} ms", size, d.as_secs_f64() * 1e3);
    }
}
