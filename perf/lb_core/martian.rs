//! The martian filter on ordinary traffic (issue 19 item 1), one core, no
//! I/O: what `MartianFilter::check_addrs` costs per received packet (the
//! mask compares and three binary searches of
//! [`vsd::dataplane::martian`]). Addresses as in perf/run.sh's FULLNAT
//! setup: one port with two subnets, a VIP, 16 local addresses; clients
//! from 198.19.0.0/16 to the VIP and replies from the real servers.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use vsd::dataplane::local::PortAddrs;
use vsd::dataplane::martian::MartianFilter;
use vsd::lb::service::{ServiceConfig, ServiceKey, ServiceTable};
use vsd::wire::MacAddr;

fn filter() -> MartianFilter {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let port = PortAddrs::new(
        MacAddr([2, 0, 0, 0, 0x10, 1]),
        vec![(v4(198, 18, 0, 1), 24), (v4(198, 18, 1, 1), 24)],
        vec![v4(198, 18, 0, 100)],
        vec![v4(198, 18, 0, 254)],
    );
    let mut t = ServiceTable::new(16);
    let cfg = ServiceConfig {
        local_addresses: (200..216u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)))
            .collect(),
        ..ServiceConfig::default()
    };
    t.add_service(
        ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)), 80),
        cfg,
    )
    .expect("service");
    MartianFilter::new([&port], &t.snapshot())
}

pub fn run(quick: bool) {
    let f = filter();
    let vip = u32::from(Ipv4Addr::new(198, 18, 0, 100));
    // requests from 4096 clients and replies from 4 servers to local addresses
    let pairs: Vec<(u32, u32)> = (0..4096u32)
        .flat_map(|i| {
            let client = 0xc613_0000 + i * 13;
            let server = 0xc612_000b + (i & 3);
            let lip = 0xc612_00c8 + (i & 15);
            [(client, vip), (server, lip)]
        })
        .collect();
    for &(s, d) in &pairs {
        assert_eq!(f.check_addrs(s, d), None);
    }
    let rounds = if quick { 256 } else { 2048 };
    let n = (rounds * pairs.len()) as f64;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut dropped = 0usize;
        for _ in 0..rounds {
            for &(s, d) in &pairs {
                dropped += usize::from(f.check_addrs(black_box(s), black_box(d)).is_some());
            }
        }
        assert_eq!(dropped, 0);
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!();
    println!(
        "Martian filter, ordinary traffic ({} address pairs, best of 5): {:.2} ns per packet",
        pairs.len(),
        best * 1e9 / n
    );
}
