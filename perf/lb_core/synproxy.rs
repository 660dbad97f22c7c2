//! SYN proxy benchmark (issue 12 item 3), one core, no I/O: what the proxy
//! costs per new connection.
//!
//! - `cookie SYN-ACKs/s`: flood SYNs (each a fresh tuple) answered with a
//!   cookie SYN-ACK: the whole per-SYN cost of a flood against a proxied
//!   service (no state kept, so it does not degrade as the flood goes on);
//! - `forged ACKs/s`: ACKs with a wrong cookie, checked and dropped;
//! - `handshakes/s`: whole TCP opens through the director, three packets
//!   each: proxied (client SYN, cookie ACK → SYN to the server, server
//!   SYN-ACK → ACK) against plain NAT (client SYN, server SYN-ACK, client
//!   ACK); the difference per connection is the proxy's own cost;
//! - `proxied data/s`: packets of established proxied connections
//!   (sequence numbers shifted) against plain NAT, both directions.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use vsd::lb::director::{CoreLb, CoreLbConfig, FwdVerdict};
use vsd::lb::fwd;
use vsd::lb::load::GlobalLoad;
use vsd::lb::packet::{PacketBuf, VecPacket};
use vsd::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use vsd::lb::types::FwdMethod;
use vsd::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SERVERS: u32 = 4;

fn director(synproxy: bool, conns: usize) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(16);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.synproxy = synproxy;
    t.add_service(key, cfg).expect("service");
    for i in 0..SERVERS {
        let a = IpAddr::V4(Ipv4Addr::from(0xc612_0101 + i));
        t.add_dest(&key, RealServerConfig::new(a, 8080, FwdMethod::Masq))
            .expect("server");
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let cfg = CoreLbConfig {
        conn_capacity: conns + conns / 4 + 1024,
        hash_seed: Some(0x5eed),
        ..CoreLbConfig::default()
    };
    CoreLb::new(cfg, t.snapshot(), global, None, 0).expect("director")
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc613_0000 + i / 50_000),
        1024 + (i % 50_000) as u16,
    )
}

/// A TCP segment with a Linux-like SYN's options when it is a SYN.
fn segment(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let b = PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src.0, dst.0)
        .tcp(src.1, dst.1, flags)
        .seq(seq)
        .ack(ack);
    if flags & tcp::SYN != 0 {
        b.tcp_options(&[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7])
            .build()
    } else {
        b.pad_to(60).build()
    }
}

fn seq_ack(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u32) {
    let i = fwd::classify(frame).ok().flatten().expect("valid output");
    let seq = u32::from_be_bytes(frame[i.l4 + 4..i.l4 + 8].try_into().expect("seq"));
    (i.src, i.sport, i.dst, i.dport, seq)
}

fn forwarded(v: FwdVerdict) {
    assert!(matches!(v, FwdVerdict::Forward { .. }), "{v:?}");
}

/// (handshakes/s, data packets/s) for `n` connections.
fn handshakes(synproxy: bool, n: u32) -> (f64, f64) {
    let mut lb = director(synproxy, n as usize);
    let syns: Vec<Vec<u8>> = (0..n)
        .map(|i| segment(client(i), (VIP, 80), tcp::SYN, i, 0))
        .collect();
    let mut p = VecPacket::new(&syns[0]);
    let mut became = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for (i, syn) in syns.iter().enumerate() {
        let i = i as u32;
        let c = client(i);
        p.reset(syn, VecPacket::DEFAULT_HEADROOM);
        forwarded(lb.process(&mut p, None, 1_000));
        let (rip, rport, our_isn) = if synproxy {
            // the client answers the cookie SYN-ACK
            let cookie = seq_ack(p.data()).4;
            let ack = segment(c, (VIP, 80), tcp::ACK, i + 1, cookie.wrapping_add(1));
            p.reset(&ack, VecPacket::DEFAULT_HEADROOM);
            forwarded(lb.process(&mut p, None, 1_000));
            let (_, _, rip, rport, _) = seq_ack(p.data());
            (rip, rport, cookie)
        } else {
            let (_, _, rip, rport, _) = seq_ack(p.data());
            (rip, rport, 0)
        };
        let synack = segment((rip, rport), c, tcp::SYN | tcp::ACK, 0x4000_0000, i + 1);
        p.reset(&synack, VecPacket::DEFAULT_HEADROOM);
        forwarded(lb.process(&mut p, None, 1_000));
        if !synproxy {
            let ack = segment(c, (VIP, 80), tcp::ACK, i + 1, 0x4000_0001);
            p.reset(&ack, VecPacket::DEFAULT_HEADROOM);
            forwarded(lb.process(&mut p, None, 1_000));
        }
        became.push((c, rip, rport, our_isn));
    }
    let hs = f64::from(n) / start.elapsed().as_secs_f64();
    // data: one request and one reply per connection, 4 rounds
    let frames: Vec<(Vec<u8>, Vec<u8>)> = became
        .iter()
        .map(|&(c, rip, rport, our_isn)| {
            let ack = if synproxy {
                our_isn.wrapping_add(1)
            } else {
                0x4000_0001
            };
            (
                segment(c, (VIP, 80), tcp::ACK | tcp::PSH, 7, ack),
                segment((rip, rport), c, tcp::ACK | tcp::PSH, 0x4000_0001, 8),
            )
        })
        .collect();
    let start = Instant::now();
    for _ in 0..4 {
        for (req, reply) in &frames {
            p.reset(req, VecPacket::DEFAULT_HEADROOM);
            forwarded(lb.process(&mut p, None, 2_000));
            p.reset(reply, VecPacket::DEFAULT_HEADROOM);
            forwarded(lb.process(&mut p, None, 2_000));
        }
    }
    let data = f64::from(n) * 8.0 / start.elapsed().as_secs_f64();
    (hs, data)
}

pub fn run(quick: bool) {
    let n: u32 = if quick { 100_000 } else { 1_000_000 };
    println!("\n== synproxy (one core, {n} connections / SYNs) ==");
    // cookie SYN-ACKs: a flood, every SYN a fresh tuple, nothing kept
    let mut lb = director(true, 1024);
    let syns: Vec<Vec<u8>> = (0..n.min(200_000))
        .map(|i| segment(client(i), (VIP, 80), tcp::SYN, i, 0))
        .collect();
    let mut p = VecPacket::new(&syns[0]);
    let start = Instant::now();
    for k in 0..n as usize {
        p.reset(&syns[k % syns.len()], VecPacket::DEFAULT_HEADROOM);
        forwarded(lb.process(&mut p, None, 1_000));
    }
    let cookies = f64::from(n) / start.elapsed().as_secs_f64();
    assert!(lb.conns().is_empty(), "the flood left entries");
    // forged ACKs
    let acks: Vec<Vec<u8>> = (0..n.min(200_000))
        .map(|i| {
            segment(
                client(i),
                (VIP, 80),
                tcp::ACK,
                i,
                i.wrapping_mul(2_654_435_761),
            )
        })
        .collect();
    let start = Instant::now();
    for k in 0..n as usize {
        p.reset(&acks[k % acks.len()], VecPacket::DEFAULT_HEADROOM);
        let v = lb.process(&mut p, None, 1_000);
        assert!(matches!(v, FwdVerdict::Drop(_)), "{v:?}");
    }
    let forged = f64::from(n) / start.elapsed().as_secs_f64();
    let hn = n / 4;
    let (plain_hs, plain_data) = handshakes(false, hn);
    let (proxy_hs, proxy_data) = handshakes(true, hn);
    let per_conn_ns = (1e9 / proxy_hs) - (1e9 / plain_hs);
    println!(
        "cookie SYN-ACKs/s      {:>12.0}  ({:.0} ns per flood SYN)",
        cookies,
        1e9 / cookies
    );
    println!(
        "forged ACKs dropped/s  {:>12.0}  ({:.0} ns each)",
        forged,
        1e9 / forged
    );
    println!(
        "handshakes/s  plain NAT {:>10.0}  synproxy NAT {:>10.0}  proxy cost {:+.0} ns per connection ({hn} conns)",
        plain_hs, proxy_hs, per_conn_ns
    );
    println!(
        "data packets/s plain NAT {:>10.0}  synproxy NAT {:>10.0}  ({:+.1} ns per packet for the shift)",
        plain_data,
        proxy_data,
        (1e9 / proxy_data) - (1e9 / plain_data)
    );
}
