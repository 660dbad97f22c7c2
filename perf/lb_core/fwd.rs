//! Forwarding benchmark: packets per second through `CoreLb::process` on
//! one core, 64-byte TCP frames (60 bytes without FCS) in `VecPacket`s,
//! for each method: new connections (SYN), then requests and replies of
//! established flows, at 1K and 1M live flows. `--family 6`: the same over
//! IPv6 (78-byte frames: the smallest IPv6 TCP frame, 74 without FCS).
//!
//! `--method M --flows N --packets P --burst-only` (see [`Options`]) run one
//! point's burst passes only, for instruction counts under cachegrind: the
//! count with P packets minus the count with 0 is the burst passes' alone
//! (`perf/lb_core_instr.sh`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

/// The address family measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Frame length without FCS (64 and 78 bytes on the wire).
    fn frame(self) -> usize {
        match self {
            Family::V4 => 60,
            Family::V6 => 74,
        }
    }
    fn vip(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(VIP),
            Family::V6 => IpAddr::V6(VIP6),
        }
    }
    /// The `i`th address of a block (`block` 1: servers, 2: local).
    fn addr(self, block: u32, i: u32) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(0xc612_0001 + (block << 8) + i)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                2,
                0,
                block as u16,
                0,
                0,
                0,
                i as u16 + 1,
            )),
        }
    }
}
const SERVERS: u32 = 16;
const LOCAL_ADDRS: u32 = 4;
const CLIENT_PORTS: u32 = 50_000;

fn template(fam: Family, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
    let b = match fam {
        Family::V4 => b.ipv4(VIP, VIP),
        Family::V6 => b.ipv6(VIP6, VIP6),
    };
    b.tcp(sport, dport, flags).pad_to(fam.frame()).build()
}

fn put(out: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(a) => out.copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}

/// Write addresses and ports into a copy of `tpl` at `out`, fixing the
/// IPv4 header checksum (the L4 checksum is not checked by the director).
fn patch(out: &mut [u8], tpl: &[u8], src: (IpAddr, u16), dst: (IpAddr, u16)) {
    out.copy_from_slice(tpl);
    let (s, d, l4) = if src.0.is_ipv4() {
        (26, 30, 34)
    } else {
        (22, 38, 54)
    };
    put(&mut out[s..d], src.0);
    put(&mut out[d..l4], dst.0);
    out[l4..l4 + 2].copy_from_slice(&src.1.to_be_bytes());
    out[l4 + 2..l4 + 4].copy_from_slice(&dst.1.to_be_bytes());
    if src.0.is_ipv4() {
        out[24..26].copy_from_slice(&[0, 0]);
        let c = vsd::wire::checksum::checksum(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

fn client(fam: Family, i: u32) -> (IpAddr, u16) {
    let host = i / CLIENT_PORTS;
    let a = match fam {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(0xc613_0000 + host)),
        Family::V6 => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            2,
            0,
            0xc,
            0,
            0,
            (host >> 16) as u16,
            host as u16,
        )),
    };
    (a, 1024 + (i % CLIENT_PORTS) as u16)
}

fn director(fam: Family, method: FwdMethod, flows: usize) -> CoreLb {
    let rport = match method {
        FwdMethod::Route | FwdMethod::Tunnel => 80,
        _ => 8080,
    };
    let key = ServiceKey::tcp(fam.vip(), 80);
    let mut t = ServiceTable::new(64);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.local_addresses = (0..LOCAL_ADDRS).map(|i| fam.addr(2, i)).collect();
    t.add_service(key, cfg).expect("service");
    for i in 0..SERVERS {
        t.add_dest(&key, RealServerConfig::new(fam.addr(1, i), rport, method))
            .expect("server");
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let capacity = flows + flows / 8 + 1024;
    let cfg = CoreLbConfig {
        tun_source: DIP,
        tun_source6: DIP6,
        conn_capacity: if fam == Family::V4 { capacity } else { 1024 },
        conn_capacity6: if fam == Family::V6 { capacity } else { 1024 },
        hash_seed: Some(0x5eed),
        ..CoreLbConfig::default()
    };
    CoreLb::new(cfg, t.snapshot(), global, None, 0).expect("director")
}

/// The addresses and ports of a frame the director sent.
fn endpoints(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    if let Some(i) = fwd::classify(frame).ok().flatten() {
        return (IpAddr::V4(i.src), i.sport, IpAddr::V4(i.dst), i.dport);
    }
    let i = vsd::lb::fwd6::classify6(frame)
        .ok()
        .flatten()
        .expect("valid output");
    (IpAddr::V6(i.src), i.sport, IpAddr::V6(i.dst), i.dport)
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

/// `FRAME`: the family's frame length, a constant so the copies into the
/// packet buffers are as cheap as they were for IPv4 alone.
fn bench<const FRAME: usize>(
    fam: Family,
    method: FwdMethod,
    flows: usize,
    packets: usize,
    burst_only: bool,
) -> Row {
    assert_eq!(FRAME, fam.frame());
    let mut lb = director(fam, method, flows);
    let syn_tpl = template(fam, 1, 80, tcp::SYN);
    let ack_tpl = template(fam, 1, 80, tcp::ACK);
    let reply_tpl = template(fam, 1, 1, tcp::ACK);
    // Frames are laid out in the order they are sent, so reading them is
    // sequential as it is from an RX ring; the flows are visited in a
    // scattered order, so connection lookups are not.
    let visit: Vec<usize> = order(flows).collect();
    let mut syns = vec![0u8; flows * FRAME];
    let mut acks = vec![0u8; flows * FRAME];
    for (k, &i) in visit.iter().enumerate() {
        let c = client(fam, i as u32);
        patch(
            &mut syns[i * FRAME..(i + 1) * FRAME],
            &syn_tpl,
            c,
            (fam.vip(), 80),
        );
        patch(
            &mut acks[k * FRAME..(k + 1) * FRAME],
            &ack_tpl,
            c,
            (fam.vip(), 80),
        );
    }
    let mut pkt = VecPacket::new(&syn_tpl);
    // New connections, in client order; remember what each became.
    let none = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut became = vec![(none, 0u16, none, 0u16); flows];
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
            *b = endpoints(pkt.data());
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
    let (req_per_s, reply_per_s) = if burst_only {
        (f64::NAN, method.sees_replies().then_some(f64::NAN))
    } else {
        (send(&acks), method.sees_replies().then(|| send(&replies)))
    };
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

/// What `run` measures beyond its defaults: for simulations
/// (`valgrind --tool=cachegrind`), one method at chosen flow counts and a
/// chosen packet count, bursts only.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--flows 1000,1000000`: flow counts instead of the defaults.
    pub flows: Vec<usize>,
    /// `--method nat|fullnat|dr|tun`: this method only.
    pub method: Option<FwdMethod>,
    /// `--packets N`: packets per measured pass instead of the default.
    pub packets: Option<usize>,
    /// `--burst-only`: skip the process() per packet passes.
    pub burst_only: bool,
}

impl Options {
    /// Parse the options above out of the benchmark's arguments.
    pub fn parse(args: &[String]) -> Options {
        let value = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
        Options {
            flows: value("--flows")
                .map(|v| {
                    v.split(',')
                        .map(|n| {
                            n.trim()
                                .parse()
                                .expect("--flows: a comma-separated list of numbers")
                        })
                        .collect()
                })
                .unwrap_or_default(),
            method: value("--method").map(|m| match m.as_str() {
                "nat" => FwdMethod::Masq,
                "fullnat" => FwdMethod::FullNat,
                "dr" => FwdMethod::Route,
                "tun" => FwdMethod::Tunnel,
                other => panic!("--method {other}: nat, fullnat, dr or tun"),
            }),
            packets: value("--packets").map(|v| v.parse().expect("--packets: a number")),
            burst_only: args.iter().any(|a| a == "--burst-only"),
        }
    }
}

pub fn run(quick: bool, fam: Family, opts: &Options) {
    let default_sizes: &[usize] = if quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 1_000_000]
    };
    let sizes: &[usize] = if opts.flows.is_empty() {
        default_sizes
    } else {
        &opts.flows
    };
    let packets = opts
        .packets
        .unwrap_or(if quick { 1 << 20 } else { 4 << 20 });
    println!();
    println!(
        "Forwarding through CoreLb, one core, {}-byte {fam:?} TCP frames (M packets/s)",
        fam.frame() + 4
    );
    println!("one: process() per packet; x32: process_burst() of 32");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "flows", "new conn", "req one", "req x32", "rep one", "rep x32"
    );
    let mut rows = Vec::new();
    let m = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.2}", x / 1e6));
    let methods = [
        FwdMethod::Masq,
        FwdMethod::FullNat,
        FwdMethod::Route,
        FwdMethod::Tunnel,
    ];
    for method in methods
        .into_iter()
        .filter(|m| opts.method.is_none_or(|o| o == *m))
    {
        for &n in sizes {
            let r = match fam {
                Family::V4 => bench::<60>(fam, method, n, packets, opts.burst_only),
                Family::V6 => bench::<74>(fam, method, n, packets, opts.burst_only),
            };
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
