//! Connection sync benchmark (issue 15), one core, no I/O:
//!
//! - `master` (best of alternated rounds): client packets of established
//!   NAT connections through a
//!   director core with the sync master off, on with the kernel's default
//!   knobs (a record at packet 3 and every 50th), and on with
//!   `threshold=1 period=2` (a record every second packet); the worker's
//!   per-turn hand-over ([`SyncFeed::exchange`], every 32 packets) is
//!   inside the timed loop, and so is emptying its queue (which the sync
//!   daemon's thread does in vsd): an upper bound of the worker's cost.
//! - `backup ingest`: version 1 messages of 40 IPv4 NAT entries (1472
//!   bytes, as a kernel or vsd master fills them) decoded, checked
//!   ([`SyncedConn::from_sync`]) and installed into a director core's table
//!   ([`CoreLb::install_synced`]): new entries, then the same again
//!   (updates); decoding alone for comparison.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use vsd::dataplane::sync_feed::SyncFeed;
use vsd::lb::director::{CoreLb, CoreLbConfig, FwdVerdict};
use vsd::lb::load::GlobalLoad;
use vsd::lb::packet::VecPacket;
use vsd::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use vsd::lb::sync::{SyncSettings, SyncedConn};
use vsd::lb::types::FwdMethod;
use vsd::wire::ipvs_sync::{decode, flags, SyncConn, SyncMessageBuilder};
use vsd::wire::{tcp, MacAddr, PacketBuilder};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SERVERS: u32 = 4;

fn director(conns: usize) -> CoreLb {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    let mut t = ServiceTable::new(16);
    t.add_service(key, ServiceConfig::with_scheduler("rr"))
        .expect("service");
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

fn segment(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        .ipv4(src.0, dst.0)
        .tcp(src.1, dst.1, flags)
        .pad_to(60)
        .build()
}

/// Packets/s of `packets` client ACKs over `conns` established
/// connections, with the feed's master switch and knobs as given.
fn master_pps(conns: u32, packets: u32, settings: Option<SyncSettings>) -> (f64, u64) {
    let mut lb = director(conns as usize);
    let feed = SyncFeed::default();
    if let Some(s) = settings {
        feed.set_settings(&s);
        feed.master.store(true, Ordering::Relaxed);
    }
    feed.exchange(&mut lb, 0);
    // open every connection: SYN, the server's SYN-ACK, then the ACKs
    let mut p = VecPacket::new(&segment(client(0), (VIP, 80), tcp::SYN));
    for i in 0..conns {
        p.reset(
            &segment(client(i), (VIP, 80), tcp::SYN),
            VecPacket::DEFAULT_HEADROOM,
        );
        let FwdVerdict::Forward {
            next_hop: std::net::IpAddr::V4(next_hop),
        } = lb.process(&mut p, None, 1)
        else {
            panic!("SYN not forwarded");
        };
        let c = client(i);
        p.reset(
            &segment((next_hop, 8080), c, tcp::SYN | tcp::ACK),
            VecPacket::DEFAULT_HEADROOM,
        );
        assert!(matches!(
            lb.process(&mut p, None, 1),
            FwdVerdict::Forward { .. }
        ));
    }
    let acks: Vec<Vec<u8>> = (0..conns)
        .map(|i| segment(client(i), (VIP, 80), tcp::ACK))
        .collect();
    let mut records = 0u64;
    let start = Instant::now();
    for k in 0..packets as usize {
        p.reset(&acks[k % acks.len()], VecPacket::DEFAULT_HEADROOM);
        let v = lb.process(&mut p, None, 2);
        debug_assert!(matches!(v, FwdVerdict::Forward { .. }));
        if k % 32 == 31 {
            feed.exchange(&mut lb, 2);
            while feed.out.pop().is_some() {
                records += 1;
            }
        }
    }
    let pps = f64::from(packets) / start.elapsed().as_secs_f64();
    (pps, records)
}

fn record(i: u32) -> SyncConn {
    let (ip, port) = client(i);
    SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        client: SocketAddr::new(IpAddr::V4(ip), port),
        virt: SocketAddr::new(IpAddr::V4(VIP), 80),
        real: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_0101 + i % SERVERS)), 8080),
        fwmark: 0,
        timeout_s: 900,
        seq: None,
        fullnat_local: None,
        synproxy: None,
    }
}

/// Records/s a backup core takes: decode, check, install.
fn ingest(msgs: &[Vec<u8>], lb: &mut CoreLb, install: bool) -> (f64, u64) {
    let mut n = 0u64;
    let start = Instant::now();
    for m in msgs {
        let msg = decode(m, 7).expect("valid message");
        for e in msg.entries.iter().flatten() {
            if install {
                let c = SyncedConn::<u32>::from_sync(e).expect("representable");
                if lb.install_synced(&c, false, 5).is_ok() {
                    n += 1;
                }
            } else {
                n += 1;
            }
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

pub fn run(quick: bool) {
    let conns: u32 = if quick { 100_000 } else { 1_000_000 };
    let packets: u32 = if quick { 2_000_000 } else { 20_000_000 };
    println!("\n== sync (one core, {conns} connections) ==");
    let busy = SyncSettings {
        threshold: 1,
        period: 2,
        ..SyncSettings::default()
    };
    // alternated rounds, the best of each kind: the machine's noise only
    // ever slows a round down
    let (mut off, mut dflt, mut every2) = (0f64, 0f64, 0f64);
    let (mut r_dflt, mut r_every2) = (0, 0);
    for _ in 0..if quick { 3 } else { 5 } {
        off = off.max(master_pps(conns, packets, None).0);
        let (pps, r) = master_pps(conns, packets, Some(SyncSettings::default()));
        (dflt, r_dflt) = (dflt.max(pps), r);
        let (pps, r) = master_pps(conns, packets, Some(busy));
        (every2, r_every2) = (every2.max(pps), r);
    }
    let ns = |pps: f64| 1e9 / pps;
    println!(
        "master, client packets/s: off {:.2} M ({:.0} ns); on, default knobs {:.2} M ({:.0} ns, \
         {} records = 1/{:.0} packets); on, threshold=1 period=2 {:.2} M ({:.0} ns, {} records \
         = 1/{:.1} packets)",
        off / 1e6,
        ns(off),
        dflt / 1e6,
        ns(dflt),
        r_dflt,
        f64::from(packets) / r_dflt.max(1) as f64,
        every2 / 1e6,
        ns(every2),
        r_every2,
        f64::from(packets) / r_every2.max(1) as f64,
    );
    println!(
        "master, cost per record sent: {:.0} ns (threshold=1 period=2 against off)",
        (ns(every2) - ns(off)) * f64::from(packets) / r_every2.max(1) as f64
    );
    // backup ingest
    let mut b = SyncMessageBuilder::new(7, 1472).expect("maxlen");
    let mut msgs = Vec::new();
    for i in 0..conns {
        if let Some(m) = b.push(&record(i)).expect("encodable") {
            msgs.push(m);
        }
    }
    msgs.extend(b.finish());
    let mut lb = director(conns as usize);
    let (dec, _) = ingest(&msgs, &mut lb, false);
    let (new, n_new) = ingest(&msgs, &mut lb, true);
    let (upd, n_upd) = ingest(&msgs, &mut lb, true);
    assert_eq!(n_new, u64::from(conns));
    assert_eq!(n_upd, u64::from(conns));
    println!(
        "backup ingest, records/s: decode only {:.2} M; decode + check + install: new {:.2} M, \
         updates {:.2} M ({} messages of 40)",
        dec / 1e6,
        new / 1e6,
        upd / 1e6,
        msgs.len()
    );
}
