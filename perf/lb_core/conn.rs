//! Connection table benchmark: memory per connection, lookups per second and
//! insert+expire pairs per second on one core, at several live sizes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use vsd::lb::conn::{ConnTable, Direction, Endpoint, NewConn, Seed, Tuple};
use vsd::lb::load::CoreLoad;
use vsd::lb::tcp_state::{tcp_flags, Timeouts};
use vsd::lb::types::{FwdMethod, Protocol};

const VIP: u32 = 0xc612_0064; // 198.18.0.100
const RIP_BASE: u32 = 0xc612_0100; // 198.18.1.0
const SERVERS: u32 = 16;

/// A bijection on 48-bit values: distinct counters give distinct clients.
fn permute48(i: u64) -> u64 {
    const M: u64 = (1 << 48) - 1;
    let mut x = i & M;
    x = x.wrapping_mul(0x5deece66d) & M;
    x ^= x >> 21;
    x = x.wrapping_mul(0x2545_f491_4f6d) & M; // odd: invertible mod 2^48
    x ^= x >> 17;
    x
}

fn new_conn(i: u64, proto: Protocol) -> NewConn<u32> {
    let x = permute48(i);
    let dest = (i % u64::from(SERVERS)) as u32;
    NewConn {
        proto,
        client: Endpoint::new((x >> 16) as u32, x as u16),
        virt: Endpoint::new(VIP, 80),
        local: None,
        real: Endpoint::new(RIP_BASE + dest, 8080),
        dest,
        fwd: FwdMethod::Masq,
        one_packet: false,
        template: None,
    }
}

/// xorshift64* for picking query keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Row {
    live: usize,
    bytes_per_conn: f64,
    lookups_per_s: f64,
    batched_per_s: f64,
    churn_per_s: f64,
}

fn table(capacity: usize) -> ConnTable<u32> {
    let load = Arc::new(CoreLoad::new(SERVERS as usize));
    ConnTable::with_seed(capacity, load, 0, Seed::new(0x1b2c_3d4e)).expect("capacity")
}

/// Lookups of random live tuples (half requests, half replies).
fn bench_lookups(n: usize, quick: bool) -> (f64, f64, f64) {
    let mut t = table(n);
    for i in 0..n as u64 {
        let c = new_conn(i, Protocol::Tcp);
        let id = t.insert(&c, 0).expect("insert");
        t.update_state(id, Direction::Input, tcp_flags::ACK, 0); // ESTABLISHED, 900 s
    }
    let bytes_per_conn = t.memory_bytes() as f64 / t.capacity() as f64;
    let queries = (1usize << 20).min(n * 4);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let keys: Vec<Tuple<u32>> = (0..queries)
        .map(|_| {
            let r = rng.next();
            let c = new_conn(r % n as u64, Protocol::Tcp);
            if r >> 63 == 0 {
                Tuple {
                    proto: c.proto,
                    src: c.client,
                    dst: c.virt,
                }
            } else {
                Tuple {
                    proto: c.proto,
                    src: c.real,
                    dst: c.client,
                }
            }
        })
        .collect();
    let rounds = if quick { 2 } else { 8 };
    let total = rounds * (4 << 20) / queries * queries;
    let mut hits = 0usize;
    let start = Instant::now();
    for (now, k) in (1..).zip(black_box(&keys).iter().cycle().take(total)) {
        hits += usize::from(t.lookup(black_box(k), now).is_some());
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(hits, total, "every query is live");
    // The same in bursts of 32, as the worker loop does.
    let mut out = [None; 32];
    let mut hits = 0usize;
    let start = Instant::now();
    for (now, burst) in (1..).zip(black_box(&keys).chunks_exact(32).cycle().take(total / 32)) {
        hits += t.lookup_batch(burst, now, &mut out);
        black_box(&out);
    }
    let batch_secs = start.elapsed().as_secs_f64();
    assert_eq!(hits, total / 32 * 32, "every query is live");
    black_box(&t);
    (
        bytes_per_conn,
        total as f64 / secs,
        (total / 32 * 32) as f64 / batch_secs,
    )
}

/// Steady state with `n` live UDP connections: each simulated millisecond
/// one connection is inserted and the one inserted `n` ms earlier expires.
fn bench_churn(n: usize, quick: bool) -> f64 {
    // Expiry may lag by up to one 10 ms tick: leave room for a few more.
    let mut t = table(n + 64);
    let mut to = Timeouts::default();
    to.set(0, 0, (n / 1000).max(1) as u32).expect("timeout");
    t.set_timeouts(to);
    let ttl = u64::from(to.udp) * 1000;
    let steps = if quick {
        n.min(1 << 20)
    } else {
        n.min(4 << 20)
    };
    let total = n + steps;
    let conns: Vec<NewConn<u32>> = (0..total as u64)
        .map(|i| new_conn(i, Protocol::Udp))
        .collect();
    let mut now = 0u64;
    let step = |t: &mut ConnTable<u32>, c: &NewConn<u32>, now: u64| {
        t.expire(now, |_, c| {
            black_box(c);
        });
        let id = t.insert(c, now).expect("room after expiry");
        t.update_state(id, Direction::Input, 0, now);
    };
    for c in &conns[..n] {
        now += ttl / n as u64;
        step(&mut t, c, now);
    }
    let start = Instant::now();
    for c in black_box(&conns[n..]) {
        now += ttl / n as u64;
        step(&mut t, c, now);
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(t.len() + 16 >= n && t.len() <= n + 16, "live {}", t.len());
    steps as f64 / secs
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn run(quick: bool) {
    let mut sizes = vec![1_000usize, 100_000, 1_000_000];
    if !quick {
        sizes.push(10_000_000);
    }
    println!("Connection table, one core, IPv4 NAT (both directions indexed)");
    println!(
        "entry {} bytes; capacity = live count",
        std::mem::size_of::<vsd::lb::conn::Conn<u32>>()
    );
    println!(
        "{:>12} {:>11} {:>13} {:>15} {:>17}",
        "live", "bytes/conn", "lookups/s", "batched x32/s", "insert+expire/s"
    );
    let mut rows = Vec::new();
    for &n in &sizes {
        let (bytes_per_conn, lookups_per_s, batched_per_s) = bench_lookups(n, quick);
        let churn_per_s = bench_churn(n, quick);
        let r = Row {
            live: n,
            bytes_per_conn,
            lookups_per_s,
            batched_per_s,
            churn_per_s,
        };
        println!(
            "{:>12} {:>11.1} {:>11.2} M {:>13.2} M {:>15.2} M",
            thousands(r.live),
            r.bytes_per_conn,
            r.lookups_per_s / 1e6,
            r.batched_per_s / 1e6,
            r.churn_per_s / 1e6
        );
        rows.push(r);
    }
    if let (Some(first), Some(m)) = (rows.first(), rows.iter().find(|r| r.live == 1_000_000)) {
        println!(
            "lookups at 1M / at 1K: {:.0}% single, {:.0}% batched",
            100.0 * m.lookups_per_s / first.lookups_per_s,
            100.0 * m.batched_per_s / first.batched_per_s
        );
    }
}
