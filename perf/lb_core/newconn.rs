//! New-connection benchmark: the cost of opening one connection through
//! `CoreLb::process_burst` on one core, as the memif `syn` point sees it.
//!
//! Each round sends a burst of 32 SYNs on fresh client tuples (classify,
//! lookup miss, service lookup, scheduler, FULLNAT local port, table
//! insert of both keys, state, counters, rewrite), then — for NAT and
//! FULLNAT — the burst of the real servers' SYN-ACKs to them (the reply's
//! first packet: reply-key lookup, state SYN_RECV, reverse rewrite), as
//! vsd-gen reflects them in the `syn` point. A connection costs one SYN
//! plus, where replies pass the director, one SYN-ACK.
//!
//! Then, as a control, two passes of established packets over those
//! connections (the client's ACK; the server's ACK back where replies pass
//! the director), the second pass timed (`established`, ns per packet).
//!
//! Instructions (the VM has no PMU): the measured steps are the
//! `#[inline(never)]` functions `syn_burst`, `reply_burst` and
//! `established_burst` (both passes), so
//!
//! ```text
//! valgrind --tool=callgrind --dump-instr=no \
//!   --toggle-collect='*newconn::syn_burst*' --toggle-collect='*newconn::reply_burst*' \
//!   target/release/deps/lb_core-HASH --quick newconn --only fullnat-rr-4
//! callgrind_annotate --inclusive=yes callgrind.out.PID
//! ```
//!
//! counts exactly those steps (divide by the connections the run prints;
//! `established_burst` handles 2 packets per NAT/FULLNAT connection, 1 for
//! DR, in each of its 2 passes).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use vsd::lb::director::{CoreLb, CoreLbConfig, FwdVerdict, BURST};
use vsd::lb::fwd;
use vsd::lb::load::GlobalLoad;
use vsd::lb::packet::{PacketBuf, VecPacket};
use vsd::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use vsd::lb::types::FwdMethod;
use vsd::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Local addresses of the FULLNAT service (as perf/run.sh configures).
const LOCAL_ADDRS: u32 = 16;
const CLIENT_PORTS: u32 = 50_000;
/// 64-byte frames without FCS.
const FRAME: usize = 60;

fn director(method: FwdMethod, sched: &str, servers: u32, capacity: usize) -> CoreLb {
    let rport = match method {
        FwdMethod::Route | FwdMethod::Tunnel => 80,
        _ => 8080,
    };
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(64);
    let mut cfg = ServiceConfig::with_scheduler(sched);
    cfg.local_addresses = (0..LOCAL_ADDRS)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200 + i as u8)))
        .collect();
    t.add_service(key, cfg).expect("service");
    for i in 0..servers {
        let rip = Ipv4Addr::from(0xc612_0100 + 11 + i);
        t.add_dest(&key, RealServerConfig::new(IpAddr::V4(rip), rport, method))
            .expect("server");
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let cfg = CoreLbConfig {
        tun_source: DIP,
        conn_capacity: capacity,
        conn_capacity6: 1024,
        hash_seed: Some(0x5eed),
        ..CoreLbConfig::default()
    };
    CoreLb::new(cfg, t.snapshot(), global, None, 0).expect("director")
}

fn frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src.0, dst.0)
        .tcp(src.1, dst.1, flags)
        .pad_to(FRAME)
        .build()
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc613_0000 + i / CLIENT_PORTS),
        1024 + (i % CLIENT_PORTS) as u16,
    )
}

/// The measured step for SYNs (see the module note for callgrind; the
/// two steps differ in their `black_box`es, so the linker cannot fold them
/// into one symbol).
#[inline(never)]
fn syn_burst(lb: &mut CoreLb, burst: &mut [VecPacket], v: &mut [FwdVerdict], now: u64) {
    lb.process_burst(black_box(burst), &[], v, black_box(now));
}

/// The measured step for the SYN-ACKs.
#[inline(never)]
fn reply_burst(lb: &mut CoreLb, burst: &mut [VecPacket], v: &mut [FwdVerdict], now: u64) {
    lb.process_burst(black_box(burst), &[], v, now);
}

/// The measured step for established packets (a control: the A/B of a
/// change to the new-connection path must leave this count alone).
#[inline(never)]
fn established_burst(lb: &mut CoreLb, burst: &mut [VecPacket], v: &mut [FwdVerdict], now: u64) {
    let v = black_box(v);
    lb.process_burst(black_box(burst), &[], v, now);
}

struct Row {
    syn_ns: f64,
    reply_ns: Option<f64>,
    /// Established packets (both directions where replies pass), ns each.
    est_ns: f64,
}

/// Send `frames` (whole bursts) through `established_burst`, `passes`
/// times; ns per packet of the last pass.
fn established(lb: &mut CoreLb, frames: &[u8], passes: usize, now: u64) -> f64 {
    let mut burst: Vec<VecPacket> = (0..BURST)
        .map(|_| VecPacket::new(&frames[..FRAME]))
        .collect();
    let mut verdicts = [FwdVerdict::NotService; BURST];
    let mut t = 0f64;
    for _ in 0..passes {
        t = 0.0;
        for group in frames.chunks_exact(FRAME * BURST) {
            for (p, f) in burst.iter_mut().zip(group.chunks_exact(FRAME)) {
                p.reset(f, VecPacket::DEFAULT_HEADROOM);
            }
            let start = Instant::now();
            established_burst(lb, &mut burst, &mut verdicts, now);
            t += start.elapsed().as_secs_f64();
            assert!(
                verdicts
                    .iter()
                    .all(|v| matches!(v, FwdVerdict::Forward { .. })),
                "every established packet forwarded: {verdicts:?}"
            );
        }
    }
    t * 1e9 / (frames.len() / FRAME) as f64
}

fn bench(method: FwdMethod, sched: &str, servers: u32, conns: usize, capacity: usize) -> Row {
    let mut lb = director(method, sched, servers, capacity);
    let rounds = conns / BURST;
    // SYNs built beforehand, in the order they are sent (a fresh tuple each)
    let syns: Vec<u8> = (0..(rounds * BURST) as u32)
        .flat_map(|i| frame(client(i), (VIP, 80), tcp::SYN))
        .collect();
    let mut burst: Vec<VecPacket> = (0..BURST).map(|_| VecPacket::new(&syns[..FRAME])).collect();
    let mut replies: Vec<VecPacket> = (0..BURST).map(|_| VecPacket::new(&syns[..FRAME])).collect();
    let mut verdicts = [FwdVerdict::NotService; BURST];
    let mut reply_frame = frame((VIP, 1), (VIP, 1), tcp::SYN | tcp::ACK);
    let (mut syn_t, mut reply_t) = (0f64, 0f64);
    let now = 1_000;
    // established packets on these connections, afterwards: the client's
    // ACK, and (NAT, FULLNAT) the server's ACK back
    let mut est: Vec<u8> = Vec::with_capacity(2 * rounds * BURST * FRAME);
    for group in syns.chunks_exact(FRAME * BURST).take(rounds) {
        for (p, f) in burst.iter_mut().zip(group.chunks_exact(FRAME)) {
            p.reset(f, VecPacket::DEFAULT_HEADROOM);
        }
        let t = Instant::now();
        syn_burst(&mut lb, &mut burst, &mut verdicts, now);
        syn_t += t.elapsed().as_secs_f64();
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, FwdVerdict::Forward { .. })),
            "{method:?} {sched}: every SYN forwarded: {verdicts:?}"
        );
        for f in group.chunks_exact(FRAME) {
            let mut a = f.to_vec();
            a[47] = tcp::ACK; // TCP flags (14 + 20 + 13), checksum not checked
            est.extend_from_slice(&a);
        }
        if !method.sees_replies() {
            continue;
        }
        // the real servers' SYN-ACKs to what each SYN became
        for (r, p) in replies.iter_mut().zip(&burst) {
            let i = fwd::classify(p.data())
                .ok()
                .flatten()
                .expect("forwarded SYN");
            reply_frame.copy_from_slice(&frame(
                (i.dst, i.dport),
                (i.src, i.sport),
                tcp::SYN | tcp::ACK,
            ));
            r.reset(&reply_frame, VecPacket::DEFAULT_HEADROOM);
            est.extend_from_slice(&frame((i.dst, i.dport), (i.src, i.sport), tcp::ACK));
        }
        let t = Instant::now();
        reply_burst(&mut lb, &mut replies, &mut verdicts, now);
        reply_t += t.elapsed().as_secs_f64();
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, FwdVerdict::Forward { .. })),
            "{method:?} {sched}: every SYN-ACK forwarded: {verdicts:?}"
        );
    }
    let n = (rounds * BURST) as f64;
    assert_eq!(lb.conns().conn_count(), rounds * BURST, "one entry per SYN");
    // the first pass moves the connections to ESTABLISHED; the second is
    // the one measured (callgrind counts both: halve it)
    let est_ns = established(&mut lb, &est, 2, now);
    Row {
        syn_ns: syn_t * 1e9 / n,
        reply_ns: method.sees_replies().then_some(reply_t * 1e9 / n),
        est_ns,
    }
}

/// `args`: the bench's arguments; `--only METHOD-SCHED-SERVERS` (e.g.
/// `fullnat-rr-4`) runs that configuration alone (for callgrind);
/// `--capacity N` sizes the connection table (default: the connections
/// plus 1/8; perf/run.sh's `syn` points use 8388608, whose 256 MB index
/// misses the cache on every new key as they do).
pub fn run(quick: bool, args: &[String]) {
    let conns = if quick { 131_072 } else { 1 << 20 };
    let opt = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let only = opt("--only");
    let capacity = opt("--capacity")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(conns + conns / 8 + 1024)
        .max(conns + 1024);
    println!();
    println!(
        "New connections through CoreLb::process_burst, one core, {conns} connections \
         ({capacity} table slots), bursts of {BURST}"
    );
    println!("a connection: its SYN and (NAT, FULLNAT) the server's SYN-ACK back (ns each)");
    println!(
        "{:<8} {:<5} {:>7} {:>8} {:>8} {:>9} {:>10} {:>12}",
        "method", "sched", "servers", "SYN", "SYN-ACK", "per conn", "M conns/s", "established"
    );
    for method in [FwdMethod::FullNat, FwdMethod::Masq, FwdMethod::Route] {
        for sched in ["rr", "wlc"] {
            for servers in [4u32, 32] {
                let name = format!("{}-{sched}-{servers}", method.name().to_lowercase());
                if only.as_ref().is_some_and(|o| *o != name) {
                    continue;
                }
                let r = bench(method, sched, servers, conns, capacity);
                let per_conn = r.syn_ns + r.reply_ns.unwrap_or(0.0);
                println!(
                    "{:<8} {:<5} {:>7} {:>8.1} {:>8} {:>9.1} {:>10.2} {:>12.1}",
                    method.name(),
                    sched,
                    servers,
                    r.syn_ns,
                    r.reply_ns.map_or("-".into(), |x| format!("{x:.1}")),
                    per_conn,
                    1e3 / per_conn,
                    r.est_ns
                );
            }
        }
    }
}
