//! Forwarding benchmark: packets per second through `CoreLb::process` on
//! one core, 64-byte TCP frames (60 bytes without FCS) in `VecPacket`s,
//! for each method: new connections (SYN), then requests and replies of
//! established flows, at 1K and 1M live flows.

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

const FRAME: usize = 60;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVERS: u32 = 16;
const LOCAL_ADDRS: u32 = 4;
const CLIENT_PORTS: u32 = 50_000;

fn template(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src, dst)
        .tcp(sport, dport, flags)
        .pad_to(FRAME)
        .build()
}

/// Write addresses and ports into a copy of `tpl` at `out`, fixing the
/// IPv4 header checksum (the L4 checksum is not checked by the director).
fn patch(out: &mut [u8], tpl: &[u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    out.copy_from_slice(tpl);
    out[26..30].copy_from_slice(&src.0.octets());
    out[30..34].copy_from_slice(&dst.0.octets());
    out[34..36].copy_from_slice(&src.1.to_be_bytes());
    out[36..38].copy_from_slice(&dst.1.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let c = vsd::wire::checksum::checksum(&out[14..34]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc613_0000 + i / CLIENT_PORTS),
        1024 + (i % CLIENT_PORTS) as u16,
    )
}

fn director(method: FwdMethod, flows: usize) -> CoreLb {
    let rport = match method {
        FwdMethod::Route | FwdMethod::Tunnel => 80,
        _ => 8080,
    };
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(64);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.local_addresses = (0..LOCAL_ADDRS)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc612_0201 + i)))
        .collect();
    t.add_service(key, cfg).expect("service");
    for i in 0..SERVERS {
        let a = IpAddr::V4(Ipv4Addr::from(0xc612_0101 + i));
        t.add_dest(&key, RealServerConfig::new(a, rport, method))
            .expect("server");
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let cfg = CoreLbConfig {
        tun_source: DIP,
        conn_capacity: flows + flows / 8 + 1024,
        hash_seed: Some(0x5eed),
        ..CoreLbConfig::default()
    };
    CoreLb::new(cfg, t.snapshot(), global, None, 0).expect("director")
}

struct Row {
    method: FwdMethod,
    flows: usize,
    syn_per_s: f64,
    req_per_s: f64,
    reply_per_s: Option<f64>,
    req_burst_per_s: f64,
    reply_burst_per_s: Option<f64>,
}

/// Visit `n` flows in a scattered order (a stride coprime with `n`).
fn order(n: usize) -> impl Iterator<Item = usize> + Clone {
    let stride = [7_919usize, 104_729, 1_299_709]
        .into_iter()
        .find(|s| gcd(*s, n) == 1)
        .unwrap_or(1);
    (0..n).map(move |i| (i * stride) % n)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn bench(method: FwdMethod, flows: usize, packets: usize) -> Row {
    let mut lb = director(method, flows);
    let syn_tpl = template(VIP, VIP, 1, 80, tcp::SYN);
    let ack_tpl = template(VIP, VIP, 1, 80, tcp::ACK);
    let reply_tpl = template(VIP, VIP, 1, 1, tcp::ACK);
    // Frames are laid out in the order they are sent, so reading them is
    // sequential as it is from an RX ring; the flows are visited in a
    // scattered order, so connection lookups are not.
    let visit: Vec<usize> = order(flows).collect();
    let mut syns = vec![0u8; flows * FRAME];
    let mut acks = vec![0u8; flows * FRAME];
    for (k, &i) in visit.iter().enumerate() {
        let c = client(i as u32);
        patch(
            &mut syns[i * FRAME..(i + 1) * FRAME],
            &syn_tpl,
            c,
            (VIP, 80),
        );
        patch(
            &mut acks[k * FRAME..(k + 1) * FRAME],
            &ack_tpl,
            c,
            (VIP, 80),
        );
    }
    let mut pkt = VecPacket::new(&syn_tpl);
    // New connections, in client order; remember what each became.
    let mut became = vec![(Ipv4Addr::UNSPECIFIED, 0u16, Ipv4Addr::UNSPECIFIED, 0u16); flows];
    let start = Instant::now();
    for (i, b) in became.iter_mut().enumerate() {
        pkt.reset(
            &syns[i * FRAME..(i + 1) * FRAME],
            VecPacket::DEFAULT_HEADROOM,
        );
        let v = lb.process(&mut pkt, None, 1_000);
        assert!(
            matches!(v, FwdVerdict::Forward { .. }),
            "{method:?} SYN {i}: {v:?}"
        );
        if method.sees_replies() {
            let out = fwd::classify(pkt.data())
                .ok()
                .flatten()
                .expect("valid output");
            *b = (out.src, out.sport, out.dst, out.dport);
        }
    }
    let syn_per_s = flows as f64 / start.elapsed().as_secs_f64();
    // Replies go from the server to the client (NAT) or the local address
    // (FULLNAT): swap what the request became.
    let mut replies = vec![
        0u8;
        if method.sees_replies() {
            flows * FRAME
        } else {
            0
        }
    ];
    if method.sees_replies() {
        for (k, &i) in visit.iter().enumerate() {
            let (s, sp, d, dp) = became[i];
            patch(
                &mut replies[k * FRAME..(k + 1) * FRAME],
                &reply_tpl,
                (d, dp),
                (s, sp),
            );
        }
    }
    let now = 2_000;
    let mut burst: Vec<VecPacket> = (0..BURST).map(|_| VecPacket::new(&syn_tpl)).collect();
    let mut verdicts = [FwdVerdict::NotService; BURST];
    let mut send_burst = |lb: &mut CoreLb, frames: &[u8]| {
        let mut forwarded = 0usize;
        let rounds = packets / BURST;
        let start = Instant::now();
        for group in frames.chunks_exact(FRAME * BURST).cycle().take(rounds) {
            for (p, f) in burst.iter_mut().zip(group.chunks_exact(FRAME)) {
                p.reset(f, VecPacket::DEFAULT_HEADROOM);
            }
            lb.process_burst(black_box(&mut burst), &[], &mut verdicts, now);
            forwarded += verdicts
                .iter()
                .filter(|v| matches!(v, FwdVerdict::Forward { .. }))
                .count();
        }
        let rate = (rounds * BURST) as f64 / start.elapsed().as_secs_f64();
        assert_eq!(
            forwarded,
            rounds * BURST,
            "{method:?}: every packet forwarded"
        );
        rate
    };
    let req_burst_per_s = send_burst(&mut lb, &acks);
    let reply_burst_per_s = method.sees_replies().then(|| send_burst(&mut lb, &replies));
    let mut send = |frames: &[u8]| {
        let mut forwarded = 0usize;
        let start = Instant::now();
        for f in frames.chunks_exact(FRAME).cycle().take(packets) {
            pkt.reset(f, VecPacket::DEFAULT_HEADROOM);
            let v = lb.process(black_box(&mut pkt), None, now);
            forwarded += usize::from(matches!(v, FwdVerdict::Forward { .. }));
        }
        let rate = packets as f64 / start.elapsed().as_secs_f64();
        assert_eq!(forwarded, packets, "{method:?}: every packet forwarded");
        rate
    };
    let req_per_s = send(&acks);
    let reply_per_s = method.sees_replies().then(|| send(&replies));
    Row {
        method,
        flows,
        syn_per_s,
        req_per_s,
        reply_per_s,
        req_burst_per_s,
        reply_burst_per_s,
    }
}

pub fn run(quick: bool) {
    let sizes: &[usize] = if quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 1_000_000]
    };
    let packets = if quick { 1 << 20 } else { 4 << 20 };
    println!();
    println!("Forwarding through CoreLb, one core, 64-byte TCP frames (M packets/s)");
    println!("one: process() per packet; x32: process_burst() of 32");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "flows", "new conn", "req one", "req x32", "rep one", "rep x32"
    );
    let mut rows = Vec::new();
    let m = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.2}", x / 1e6));
    for method in [
        FwdMethod::Masq,
        FwdMethod::FullNat,
        FwdMethod::Route,
        FwdMethod::Tunnel,
    ] {
        for &n in sizes {
            let r = bench(method, n, packets);
            println!(
                "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                r.method.name(),
                r.flows,
                m(Some(r.syn_per_s)),
                m(Some(r.req_per_s)),
                m(Some(r.req_burst_per_s)),
                m(r.reply_per_s),
                m(r.reply_burst_per_s),
            );
            rows.push(r);
        }
    }
    for method in [
        FwdMethod::Masq,
        FwdMethod::FullNat,
        FwdMethod::Route,
        FwdMethod::Tunnel,
    ] {
        let of = |n: usize| rows.iter().find(|r| r.method == method && r.flows == n);
        if let (Some(small), Some(big)) = (of(sizes[0]), of(sizes[sizes.len() - 1])) {
            println!(
                "{:<8} requests at {} flows / at {}: {:.0}% one, {:.0}% x32",
                method.name(),
                big.flows,
                small.flows,
                100.0 * big.req_per_s / small.req_per_s,
                100.0 * big.req_burst_per_s / small.req_burst_per_s
            );
        }
    }
}
