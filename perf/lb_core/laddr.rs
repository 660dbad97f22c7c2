//! FULLNAT local-port choice (issue 19 item 2), one core of four, no I/O:
//! what finding a port whose reply tuple this core owns costs, by the
//! walk (every port of the range tried in turn, other cores' skipped) and
//! by the per-core port lists built with the pool ([`vsd::lb::laddr`]).
//! The table check is left out (`in_use` always false): this is the
//! allocator's own cost per new connection, on top of the table insert.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use vsd::lb::laddr::{LocalPorts, DEFAULT_PORT_MAX, DEFAULT_PORT_MIN};
use vsd::lb::owner::RssOwner;

fn rate(pool: &mut LocalPorts, rss: &RssOwner, core: u16, n: u32) -> (f64, u64) {
    let lips: Vec<IpAddr> = (0..16u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_00c8 + i)))
        .collect();
    let mut candidates = 0u64;
    let start = Instant::now();
    for k in 0..n {
        let rip = Ipv4Addr::from(0xc612_000b + (k & 3));
        let got = pool.alloc(&lips, rip, 8080, Some((rss, core)), |_, _| {
            candidates += 1;
            false
        });
        black_box(got.expect("a port"));
    }
    (n as f64 / start.elapsed().as_secs_f64(), candidates)
}

pub fn run(quick: bool) {
    let n = if quick { 1 << 20 } else { 4 << 20 };
    println!();
    println!("FULLNAT local ports, core 1 of 4 (RETA 128), 16 local addresses, 4 servers");
    println!("{:<28} {:>14} {:>10}", "allocator", "ports/s", "ns each");
    let rss = RssOwner::round_robin(4, 128);
    // best of 3 alternated runs (the machine is shared)
    let mut best = [0f64; 2];
    for _ in 0..3 {
        for (k, lists) in [false, true].into_iter().enumerate() {
            let mut pool = if lists {
                LocalPorts::for_core(DEFAULT_PORT_MIN, DEFAULT_PORT_MAX, 7919, Some((&rss, 1)))
            } else {
                LocalPorts::new(DEFAULT_PORT_MIN, DEFAULT_PORT_MAX, 7919)
            };
            assert_eq!(pool.has_port_lists(1), lists);
            let (r, looked) = rate(&mut pool, &rss, 1, n);
            assert_eq!(looked, u64::from(n), "one table check per port");
            best[k] = best[k].max(r);
        }
    }
    for (k, name) in ["walk (skips other cores')", "per-core port lists"]
        .into_iter()
        .enumerate()
    {
        println!("{:<28} {:>14.0} {:>10.1}", name, best[k], 1e9 / best[k]);
    }
}
