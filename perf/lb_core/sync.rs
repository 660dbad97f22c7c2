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
//! - `backup path`: the same messages through the backup's whole path on
//!   one thread, a datagram at a time: the daemon's part
//!   ([`ingest_datagram`]: decode, check, the owning worker by the RSS
//!   hash, its inbox) then the worker's ([`SyncFeed::exchange`]: install).
//!   Entries a backup installs per second of one CPU (daemon and worker
//!   run on two in vsd).
//! - `master daemon`: records/s the master's thread turns into 1472-byte
//!   datagrams ([`MasterBatch::collect`]: the workers' queues, encoding;
//!   not the send, one `sendmmsg` per batch of datagrams).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use vsd::control::syncd::{ingest_datagram, MasterBatch, SyncCounters};
use vsd::dataplane::sync_feed::{RecordSink, SyncFeed};
use vsd::dataplane::sync_tx::{MessageBatch, SyncFrame};
use vsd::lb::director::{CoreLb, CoreLbConfig, FwdVerdict};
use vsd::lb::load::GlobalLoad;
use vsd::lb::owner::RssOwner;
use vsd::lb::packet::VecPacket;
use vsd::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use vsd::lb::sync::{SyncRecord, SyncSettings, SyncedConn};
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
    feed.exchange(&mut lb, 0, None);
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
    // VSD_SYNC_BENCH_TRANSPORT=dataplane: the worker encodes its records
    // and writes each full message's frame itself (the data-plane
    // transport, all but the mbuf and the tx burst)
    let mut dp = (std::env::var("VSD_SYNC_BENCH_TRANSPORT").as_deref() == Ok("dataplane"))
        .then(DataplaneSink::new);
    let start = Instant::now();
    let records = drive_master(
        &mut lb,
        &feed,
        &mut p,
        &acks,
        packets,
        dp.as_mut().map(|s| s as &mut dyn RecordSink),
    );
    if let Some(s) = &dp {
        println!(
            "data plane: {} messages, {} frame bytes",
            s.messages, s.bytes
        );
    }
    let pps = f64::from(packets) / start.elapsed().as_secs_f64();
    (pps, records)
}

/// The timed loop of [`master_pps`], apart so that
/// `valgrind --tool=callgrind --toggle-collect=*drive_master*` counts the
/// instructions of the packets alone (see [`instr_mode`]).
#[inline(never)]
fn drive_master(
    lb: &mut CoreLb,
    feed: &SyncFeed,
    p: &mut VecPacket,
    acks: &[Vec<u8>],
    packets: u32,
    mut sink: Option<&mut dyn RecordSink>,
) -> u64 {
    let mut records = 0u64;
    for k in 0..packets as usize {
        p.reset(&acks[k % acks.len()], VecPacket::DEFAULT_HEADROOM);
        let v = lb.process(p, None, 2);
        debug_assert!(matches!(v, FwdVerdict::Forward { .. }));
        if k % 32 == 31 {
            match sink.as_deref_mut() {
                Some(s) => {
                    let before = feed.counters.fed.load(Ordering::Relaxed);
                    feed.exchange(lb, 2, Some(s));
                    records += feed.counters.fed.load(Ordering::Relaxed) - before;
                }
                None => {
                    feed.exchange(lb, 2, None);
                    while feed.out.pop().is_some() {
                        records += 1;
                    }
                }
            }
        }
    }
    records
}

/// The data-plane transport's work on a worker without the port: records
/// into the message ([`MessageBatch`]), each full message written as its
/// frame ([`SyncFrame::write`]) into a buffer.
struct DataplaneSink {
    batch: MessageBatch,
    frame: SyncFrame,
    buf: Vec<u8>,
    messages: u64,
    bytes: u64,
}

impl DataplaneSink {
    fn new() -> Self {
        let group = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81));
        let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        DataplaneSink {
            batch: MessageBatch::new(SyncMessageBuilder::new(15, 1472).expect("maxlen"), u64::MAX),
            frame: SyncFrame::new(MacAddr([2, 0, 0, 0, 0, 1]), src, group, 8848, 1)
                .expect("multicast group"),
            buf: vec![0; 2048],
            messages: 0,
            bytes: 0,
        }
    }

    fn encode<K: vsd::lb::sync::SyncAddr>(&mut self, recs: &[SyncRecord<K>]) -> usize {
        let DataplaneSink {
            batch,
            frame,
            buf,
            messages,
            bytes,
        } = self;
        for r in recs {
            batch.push(r, 0, |msg| {
                *messages += 1;
                *bytes += frame.write(buf, msg, *messages as u16).unwrap_or(0) as u64;
            });
        }
        recs.len()
    }
}

impl RecordSink for DataplaneSink {
    fn take(&mut self, recs: &[SyncRecord]) -> usize {
        self.encode(recs)
    }

    fn take6(&mut self, recs: &[SyncRecord<u128>]) -> usize {
        self.encode(recs)
    }
}

/// `VSD_SYNC_BENCH=off|default|p5|busy [VSD_SYNC_BENCH_PACKETS=N]`: one
/// round of one kind only (`p5`: `threshold=3 period=5`, the memif
/// benchmark's knobs), for instruction counts under callgrind
/// (`backup`, `daemon`: the backup path or the master daemon only,
/// toggled on `*backup_path*` or `*master_daemon*`):
///
/// ```text
/// VSD_SYNC_BENCH=p5 valgrind --tool=callgrind --cache-sim=no \
///     --toggle-collect='*drive_master*' target/release/deps/lb_core-* --quick sync
/// ```
///
/// Instructions per packet = the collected Ir / packets. With
/// `VSD_SYNC_BENCH_TRANSPORT=dataplane` the master rounds encode on the
/// worker (the data-plane transport) instead of handing records to the
/// daemon's queue.
fn instr_mode(kind: &str) {
    let conns = 100_000;
    let packets = std::env::var("VSD_SYNC_BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let settings = match kind {
        "off" => None,
        "default" => Some(SyncSettings::default()),
        "p5" => Some(SyncSettings {
            threshold: 3,
            period: 5,
            ..SyncSettings::default()
        }),
        "busy" => Some(SyncSettings {
            threshold: 1,
            period: 2,
            ..SyncSettings::default()
        }),
        "backup" => {
            let msgs = messages(conns);
            let mut lb = director(conns as usize);
            let (_, n) = backup_path(&msgs, &mut lb);
            println!("sync backup: {n} entries installed (toggle *backup_path*)");
            return;
        }
        "daemon" => {
            let (_, n) = master_daemon(conns);
            println!("sync daemon: {conns} records into {n} messages (toggle *master_daemon*)");
            return;
        }
        other => panic!("VSD_SYNC_BENCH={other}: off, default, p5, busy, backup or daemon"),
    };
    let (pps, records) = master_pps(conns, packets, settings);
    println!(
        "sync {kind}: {packets} packets over {conns} connections, {records} records, {:.2} M/s",
        pps / 1e6
    );
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

/// Version 1 messages of 1472 bytes holding a record for each of `conns`
/// connections.
fn messages(conns: u32) -> Vec<Vec<u8>> {
    let mut b = SyncMessageBuilder::new(7, 1472).expect("maxlen");
    let mut msgs = Vec::new();
    for i in 0..conns {
        if let Some(m) = b.push(&record(i)).expect("encodable") {
            msgs.push(m);
        }
    }
    msgs.extend(b.finish());
    msgs
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

#[inline(never)]
/// Entries/s through the backup's daemon and worker parts (see the module
/// note), and how many were installed or updated.
fn backup_path(msgs: &[Vec<u8>], lb: &mut CoreLb) -> (f64, u64) {
    let feeds = vec![Arc::new(SyncFeed::default())];
    let counters = SyncCounters::default();
    let owner = RssOwner::round_robin(1, 128);
    let mut dests = Vec::with_capacity(8);
    let start = Instant::now();
    for m in msgs {
        ingest_datagram(m, 7, Some(&owner), &feeds, &counters, &mut dests);
        feeds[0].exchange(lb, 5, None);
    }
    let secs = start.elapsed().as_secs_f64();
    let c = &feeds[0].counters;
    let n = c.installed.load(Ordering::Relaxed) + c.updated.load(Ordering::Relaxed);
    (n as f64 / secs, n)
}

/// Records/s the master daemon turns into datagrams (no send).
#[inline(never)]
fn master_daemon(conns: u32) -> (f64, usize) {
    let feeds = vec![Arc::new(SyncFeed::default())];
    let recs: Vec<SyncRecord> = (0..conns)
        .map(|i| SyncRecord::from_wire(&record(i)).expect("IPv4 record"))
        .collect();
    let counters = SyncCounters::default();
    let mut batch = MasterBatch::new(SyncMessageBuilder::new(7, 1472).expect("maxlen"));
    let mut out = Vec::new();
    let mut msgs = 0;
    let mut secs = 0f64;
    for chunk in recs.chunks(feeds[0].out.capacity()) {
        assert_eq!(feeds[0].out.push_slice(chunk), chunk.len());
        let start = Instant::now();
        batch.collect(&feeds, start, true, &counters, &mut out);
        secs += start.elapsed().as_secs_f64();
        msgs += out.len();
        out.clear();
    }
    (f64::from(conns) / secs, msgs)
}

pub fn run(quick: bool) {
    if let Ok(kind) = std::env::var("VSD_SYNC_BENCH") {
        instr_mode(&kind);
        return;
    }
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
    let msgs = messages(conns);
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
    let mut lb = director(conns as usize);
    let (new, n_new) = backup_path(&msgs, &mut lb);
    let (upd, n_upd) = backup_path(&msgs, &mut lb);
    assert_eq!(n_new, u64::from(conns));
    assert_eq!(n_upd, u64::from(conns));
    println!(
        "backup path (daemon: decode, check, owner, inbox; worker: install), entries/s on one \
         CPU: new {:.2} M, updates {:.2} M",
        new / 1e6,
        upd / 1e6
    );
    let (rate, n_msgs) = master_daemon(conns);
    println!(
        "master daemon, records/s into datagrams (queue, encode; no send): {:.2} M ({} messages)",
        rate / 1e6,
        n_msgs
    );
}
