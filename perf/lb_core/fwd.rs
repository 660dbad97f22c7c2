//! Forwarding benchmark: packets per second through `CoreLb::process` on
//! one core, 64-byte TCP frames (60 bytes without FCS; IPv6: 74, the
//! smallest IPv6 TCP frame) in `VecPacket`s, for each method and address
//! family: new connections (SYN), then requests and replies of established
//! flows, at 1K and 1M live flows. IPv6 addresses are the IPv4 ones in the
//! low 32 bits of 2001:2::/96, so both families hash the same variety.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use vsd::lb::director::{CoreLb, CoreLbConfig, FwdVerdict, BURST};
use vsd::lb::load::GlobalLoad;
use vsd::lb::packet::{PacketBuf, VecPacket};
use vsd::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use vsd::lb::types::FwdMethod;
use vsd::lb::{fwd, fwd6};
use vsd::wire::{tcp, MacAddr, PacketBuilder};

const VIP: u32 = 0xc612_0064; // 198.18.0.100
const DIP: u32 = 0xc612_0001; // 198.18.0.1
const SERVERS: u32 = 16;
const LOCAL_ADDRS: u32 = 4;
const CLIENT_PORTS: u32 = 50_000;

/// The address family of a benchmark row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The address for host part `h`: IPv4 `h`, or 2001:2::/96 + `h`.
    fn addr(self, h: u32) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(h)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from((0x2001_0002u128 << 96) | u128::from(h))),
        }
    }

    /// Frame length: 64-byte frames, or the smallest IPv6 TCP frame.
    fn frame(self) -> usize {
        match self {
            Family::V4 => 60,
            Family::V6 => 74,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

fn template(f: Family, flags: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
    match (f.addr(VIP), f.addr(VIP)) {
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s, d),
        _ => b.ipv4(Ipv4Addr::from(VIP), Ipv4Addr::from(VIP)),
    }
    .tcp(1, 80, flags)
    .pad_to(f.frame())
    .build()
}

/// Write addresses and ports into a copy of `tpl` at `out`, fixing the
/// IPv4 header checksum (the L4 checksum is not checked by the director).
fn patch(out: &mut [u8], tpl: &[u8], src: (IpAddr, u16), dst: (IpAddr, u16)) {
    out.copy_from_slice(tpl);
    let l4 = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out[26..30].copy_from_slice(&s.octets());
            out[30..34].copy_from_slice(&d.octets());
            out[24..26].copy_from_slice(&[0, 0]);
            let c = vsd::wire::checksum::checksum(&out[14..34]);
            out[24..26].copy_from_slice(&c.to_be_bytes());
            34
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out[22..38].copy_from_slice(&s.octets());
            out[38..54].copy_from_slice(&d.octets());
            54
        }
        _ => panic!("mixed families"),
    };
    out[l4..l4 + 2].copy_from_slice(&src.1.to_be_bytes());
    out[l4 + 2..l4 + 4].copy_from_slice(&dst.1.to_be_bytes());
}

fn client(f: Family, i: u32) -> (IpAddr, u16) {
    (
        f.addr(0xc613_0000 + i / CLIENT_PORTS),
        1024 + (i % CLIENT_PORTS) as u16,
    )
}

fn director(f: Family, method: FwdMethod, flows: usize) -> CoreLb {
    let rport = match method {
        FwdMethod::Route | FwdMethod::Tunnel => 80,
        _ => 8080,
    };
    let key = ServiceKey::tcp(f.addr(VIP), 80);
    let mut t = ServiceTable::new(64);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.local_addresses = (0..LOCAL_ADDRS).map(|i| f.addr(0xc612_0201 + i)).collect();
    t.add_service(key, cfg).expect("service");
    for i in 0..SERVERS {
        let a = f.addr(0xc612_0101 + i);
        t.add_dest(&key, RealServerConfig::new(a, rport, method))
            .expect("server");
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let capacity = flows + flows / 8 + 1024;
    let IpAddr::V6(dip6) = Family::V6.addr(DIP) else {
        unreachable!()
    };
    let cfg = CoreLbConfig {
        tun_source: Ipv4Addr::from(DIP),
        tun_source6: dip6,
        conn_capacity: capacity,
        conn_capacity6: capacity,
        hash_seed: Some(0x5eed),
        ..CoreLbConfig::default()
    };
    CoreLb::new(cfg, t.snapshot(), global, None, 0).expect("director")
}

/// The tuple of a forwarded frame: (src, sport, dst, dport).
fn tuple_of(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    if let Ok(Some(i)) = fwd::classify(frame) {
        return (IpAddr::V4(i.src), i.sport, IpAddr::V4(i.dst), i.dport);
    }
    let i = fwd6::classify6(frame).ok().flatten().expect("valid output");
    (IpAddr::V6(i.src), i.sport, IpAddr::V6(i.dst), i.dport)
}

struct Row {
    family: Family,
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

fn bench(family: Family, method: FwdMethod, flows: usize, packets: usize) -> Row {
    let frame = family.frame();
    let vip = (family.addr(VIP), 80);
    let mut lb = director(family, method, flows);
    let syn_tpl = template(family, tcp::SYN);
    let ack_tpl = template(family, tcp::ACK);
    let reply_tpl = template(family, tcp::ACK);
    // Frames are laid out in the order they are sent, so reading them is
    // sequential as it is from an RX ring; the flows are visited in a
    // scattered order, so connection lookups are not.
    let visit: Vec<usize> = order(flows).collect();
    let mut syns = vec![0u8; flows * frame];
    let mut acks = vec![0u8; flows * frame];
    for (k, &i) in visit.iter().enumerate() {
        let c = client(family, i as u32);
        patch(&mut syns[i * frame..(i + 1) * frame], &syn_tpl, c, vip);
        patch(&mut acks[k * frame..(k + 1) * frame], &ack_tpl, c, vip);
    }
    let mut pkt = VecPacket::new(&syn_tpl);
    // New connections, in client order; remember what each became.
    let none = (family.addr(0), 0u16, family.addr(0), 0u16);
    let mut became = vec![none; flows];
    let start = Instant::now();
    for (i, b) in became.iter_mut().enumerate() {
        pkt.reset(
            &syns[i * frame..(i + 1) * frame],
            VecPacket::DEFAULT_HEADROOM,
        );
        let v = lb.process(&mut pkt, None, 1_000);
        assert!(
            matches!(v, FwdVerdict::Forward { .. }),
            "{method:?} SYN {i}: {v:?}"
        );
        if method.sees_replies() {
            *b = tuple_of(pkt.data());
        }
    }
    let syn_per_s = flows as f64 / start.elapsed().as_secs_f64();
    // Replies go from the server to the client (NAT) or the local address
    // (FULLNAT): swap what the request became.
    let mut replies = vec![
        0u8;
        if method.sees_replies() {
            flows * frame
        } else {
            0
        }
    ];
    if method.sees_replies() {
        for (k, &i) in visit.iter().enumerate() {
            let (s, sp, d, dp) = became[i];
            patch(
                &mut replies[k * frame..(k + 1) * frame],
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
        for group in frames.chunks_exact(frame * BURST).cycle().take(rounds) {
            for (p, f) in burst.iter_mut().zip(group.chunks_exact(frame)) {
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
        for f in frames.chunks_exact(frame).cycle().take(packets) {
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
        family,
        method,
        flows,
        syn_per_s,
        req_per_s,
        reply_per_s,
        req_burst_per_s,
        reply_burst_per_s,
    }
}

const METHODS: [FwdMethod; 4] = [
    FwdMethod::Masq,
    FwdMethod::FullNat,
    FwdMethod::Route,
    FwdMethod::Tunnel,
];

pub fn run(quick: bool) {
    let sizes: &[usize] = if quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 1_000_000]
    };
    let packets = if quick { 1 << 20 } else { 4 << 20 };
    println!();
    println!(
        "Forwarding through CoreLb, one core, 64-byte TCP frames (IPv6: 74 bytes; M packets/s)"
    );
    println!("one: process() per packet; x32: process_burst() of 32");
    println!(
        "{:<8} {:<5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "af", "flows", "new conn", "req one", "req x32", "rep one", "rep x32"
    );
    let mut rows = Vec::new();
    let m = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.2}", x / 1e6));
    for method in METHODS {
        for &n in sizes {
            // IPv4 and IPv6 back to back, so drift on a shared machine hits both
            for family in [Family::V4, Family::V6] {
                let r = bench(family, method, n, packets);
                println!(
                    "{:<8} {:<5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    r.method.name(),
                    r.family.name(),
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
    }
    let of = |f: Family, method: FwdMethod, n: usize| {
        rows.iter()
            .find(|r| r.family == f && r.method == method && r.flows == n)
    };
    for family in [Family::V4, Family::V6] {
        for method in METHODS {
            if let (Some(small), Some(big)) = (
                of(family, method, sizes[0]),
                of(family, method, sizes[sizes.len() - 1]),
            ) {
                println!(
                    "{:<8} {} requests at {} flows / at {}: {:.0}% one, {:.0}% x32",
                    method.name(),
                    family.name(),
                    big.flows,
                    small.flows,
                    100.0 * big.req_per_s / small.req_per_s,
                    100.0 * big.req_burst_per_s / small.req_burst_per_s
                );
            }
        }
    }
    // The yardstick: IPv6's rate over IPv4's, per method (x32
    // bursts; replies too where the method sees them).
    let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}%", 100.0 * a / b),
        _ => "-".to_string(),
    };
    for method in METHODS {
        for &n in sizes {
            if let (Some(v6), Some(v4)) = (of(Family::V6, method, n), of(Family::V4, method, n)) {
                println!(
                    "{:<8} ipv6/ipv4 at {} flows: new conn {}, req x32 {}, rep x32 {}",
                    method.name(),
                    n,
                    pct(Some(v6.syn_per_s), Some(v4.syn_per_s)),
                    pct(Some(v6.req_burst_per_s), Some(v4.req_burst_per_s)),
                    pct(v6.reply_burst_per_s, v4.reply_burst_per_s),
                );
            }
        }
    }
}
