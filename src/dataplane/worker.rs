//! The worker loop: one per worker lcore, l3fwd-shaped. Each turn: adopt a
//! newly published configuration, receive a burst on every port it polls
//! and on every steering ring, handle each packet, run timers, flush every
//! tx buffer and steering batch.
//!
//! A worker owns all of its state: its queues, its connection shard and
//! schedulers (`CoreLb`), its neighbour tables and counters. What crosses
//! workers goes through single-producer rings (packets whose flow another
//! worker owns) and lock-free inboxes (neighbours and persistence templates
//! one worker learned, for the others).

use super::counters::{DropReason, Event, WorkerCounters};
use super::exception::{self, Punt, PuntBudget, TwinQueue};
use super::idle::Idle;
use super::local::{self, LocalVerdict, PortAddrs};
use super::martian::MartianFilter;
use super::neigh::{self, NeighAction, NeighTable, Resolve};
use super::publish::Subscriber;
use crate::dpdk::{
    tsc_hz, tsc_now, Mbuf, MbufBurst, Mempool, RxQueue, SteerBatch, SteerBurst, SteerRing, TxBuffer,
};
use crate::lb::director::{CoreLb, FwdVerdict, SteerMeta, TemplateNote};
use crate::lb::owner::RssOwner;
use crate::lb::service::{ServiceKey, ServiceSnapshot};
use crate::lb::stats::FwdEvent;
use crate::lb::tcp_state::Timeouts;
use crate::wire::{EthernetFrame, MacAddr};
use crossbeam::queue::ArrayQueue;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the control plane publishes to the workers.
#[derive(Debug)]
pub struct PlaneConfig {
    pub services: Arc<ServiceSnapshot>,
    pub timeouts: Timeouts,
    /// The firewall-mark classifier's rules.
    pub marks: Arc<crate::lb::mark::MarkRules>,
    /// drop_entry / secure_tcp settings.
    pub defense: crate::lb::defense::DefenseConfig,
    /// VIPs that follow a kernel interface, and whether each is active.
    pub followed_vips: Arc<[super::vipfollow::VipActivity]>,
}

/// Latency histograms a worker shares with the control thread (values in
/// nanoseconds). The worker records into private copies and merges them in
/// here every [`LATENCY_MERGE_MS`], so the fast path takes no lock.
#[derive(Debug)]
pub struct WorkerLatency {
    /// Time to process one non-empty rx burst.
    pub burst: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    /// Duration of a loop turn that did work.
    pub turn: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// Highest latency a histogram tracks (larger values saturate), ns.
const LATENCY_MAX_NS: u64 = 1_000_000_000;
/// A loop turn starting this long (us) after the previous one counts as a
/// stall: a busy worker turns in under 10 us, so anything this long means
/// the core was taken away (see the `stalls` and `stall_us` counters).
const STALL_US: u64 = 50;
/// How often a worker merges its histograms into the shared ones.
pub const LATENCY_MERGE_MS: u64 = 100;

/// An empty latency histogram (1 ns .. 1 s, 2 significant digits: 1%
/// precision is plenty for p50..p99.9, and the histogram stays small enough
/// that merging it every 100 ms does not sweep the worker's caches).
pub fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    // constant bounds within hdrhistogram's limits: this cannot fail
    hdrhistogram::Histogram::new_with_bounds(1, LATENCY_MAX_NS, 2)
        .expect("constant histogram bounds are valid")
}

impl Default for WorkerLatency {
    fn default() -> Self {
        WorkerLatency {
            burst: std::sync::Mutex::new(new_latency_histogram()),
            turn: std::sync::Mutex::new(new_latency_histogram()),
        }
    }
}

pub use super::conn_rows::ConnRow;

/// A request from the control thread for a worker's connection list (for
/// `-Lc`; the control path, never per packet). The control thread bumps
/// `requested`; the worker notices it between bursts, fills `rows` and
/// sets `answered` to the same number.
#[derive(Debug, Default)]
pub struct ConnDump {
    pub requested: std::sync::atomic::AtomicU64,
    pub answered: std::sync::atomic::AtomicU64,
    pub limit: std::sync::atomic::AtomicUsize,
    /// The rows and how many connections the worker has in all.
    pub rows: std::sync::Mutex<(Vec<ConnRow>, u64)>,
}

/// A neighbour one worker learned, passed to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighUpdate {
    pub port: u16,
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub solicited: bool,
}

/// Capacity of each worker's neighbour and template inboxes.
pub const NEIGH_INBOX: usize = 1024;
pub const TEMPLATE_INBOX: usize = 4096;
/// Packets a steering ring holds.
pub const STEER_RING_SIZE: u32 = 4096;

/// One port as a worker sees it: its own rx queue and tx buffer, the
/// port's addresses and its own neighbour table for the port.
pub struct WorkerPort {
    pub rx: RxQueue,
    pub tx: TxBuffer,
    pub addrs: PortAddrs,
    /// The VIPs configured for this port in `[[vip]]` (the snapshot adds
    /// on-link service VIPs and FULLNAT local addresses to `addrs.vips`).
    pub static_vips: Vec<IpAddr>,
    pub neigh: NeighTable<Mbuf>,
    /// `tx.dropped` already counted as `tx_full`.
    pub tx_dropped_seen: u64,
    /// This worker's queues on the port's kernel twin (exception path).
    pub twin: Option<TwinQueue>,
}

/// The sending end of the steering ring to one other worker.
pub struct SteerOut {
    pub ring: Arc<SteerRing>,
    pub batch: SteerBatch,
}

/// Everything a worker owns.
pub struct Worker {
    /// This worker's core number in the RETA.
    pub index: usize,
    pub ports: Vec<WorkerPort>,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
    pub pool: Arc<Mempool>,
    pub lb: CoreLb,
    pub config: Subscriber<PlaneConfig>,
    /// Flow ownership; `None` with a single worker.
    pub owner: Option<Arc<RssOwner>>,
    /// Indexed by destination worker; `None` for this worker itself.
    pub steer_out: Vec<Option<SteerOut>>,
    pub steer_in: Vec<Arc<SteerRing>>,
    /// Neighbour updates from the other workers, and theirs.
    pub inbox: Arc<ArrayQueue<NeighUpdate>>,
    pub peers: Vec<Arc<ArrayQueue<NeighUpdate>>>,
    /// Persistence templates from the other workers, and theirs.
    pub template_inbox: Arc<ArrayQueue<TemplateNote>>,
    pub template_peers: Vec<Arc<ArrayQueue<TemplateNote>>>,
    /// Records to the sync master, entries from the sync backup.
    pub sync: Arc<super::sync_feed::SyncFeed>,
    /// The master's data-plane transport ([`super::sync_tx`]).
    pub sync_tx: super::sync_tx::SyncTx,
    /// Connection listing requests from the control thread.
    pub dump: Arc<ConnDump>,
    /// Generation of the configuration this worker runs (for the control
    /// thread: when may a removed server's slot be reused).
    pub adopted: Arc<std::sync::atomic::AtomicU64>,
    /// Latency histograms shared with the control thread.
    pub latency: Arc<WorkerLatency>,
    /// The NIC computes TCP/UDP checksums of forwarded packets (the
    /// forwarding core then skips them).
    pub l4_csum_offload: bool,
    /// Packets of the current burst waiting for the forwarding core, with
    /// their steering metadata (preallocated: no allocation per packet).
    pub fwd_batch: Vec<Mbuf>,
    pub fwd_meta: Vec<Option<SteerMeta>>,
    /// What must never reach the forwarding path (rebuilt on adoption).
    pub martian: MartianFilter,
    /// Followed VIPs: which are inactive ([`super::vipfollow`]).
    pub follow: super::vipfollow::WorkerFollow,
    /// The ports' solicited-node groups, reported with MLD ([`super::mld`]).
    pub mld: super::mld::MldGroups,
    /// Busy polling or sleeping when idle (`[lcores] idle`).
    pub idle: Idle,
    /// Packets this worker may still punt to the kernel this millisecond.
    pub punt_budget: PuntBudget,
}

/// Capacity to give [`Worker::fwd_batch`] and [`Worker::fwd_meta`].
pub const FWD_BATCH: usize = crate::dpdk::BURST_SIZE;

fn count_neigh_drop(c: &WorkerCounters, r: neigh::DropReason) {
    c.drop_pkt(match r {
        neigh::DropReason::QueueFull => DropReason::NeighQueueFull,
        neigh::DropReason::PendingPoolFull => DropReason::NeighPoolFull,
        neigh::DropReason::PendingShareLimit => DropReason::NeighShareLimit,
        neigh::DropReason::TableFull => DropReason::NeighTableFull,
        neigh::DropReason::Unresolved | neigh::DropReason::Flushed => DropReason::NeighFailed,
        neigh::DropReason::Evicted => DropReason::NeighEvicted,
    });
}

/// Put a routed frame on the wire to `mac` (tx_packets/tx_bytes are
/// tallied by the buffer and folded into the counters once per turn).
#[inline]
fn send_to(tx: &mut TxBuffer, mac: [u8; 6], mut m: Mbuf) {
    EthernetFrame::new_unchecked(m.data_mut()).set_dst_addr(MacAddr(mac));
    tx.push(m);
}

/// Send an MLD report frame ([`super::mld`]) out of `tx`.
fn send_frame(pool: &Mempool, tx: &mut TxBuffer, c: &WorkerCounters, frame: &[u8]) {
    let Ok(mut m) = Mbuf::alloc(pool) else {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    };
    if !m.append(frame.len()) || !m.set_data(frame) {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    }
    c.add(Event::MldReportsOut, 1);
    tx.push(m);
}

/// Send the request that resolves `target`: an ARP request (IPv4) or a
/// neighbor solicitation (IPv6), to everyone or, with `unicast`, as a
/// probe to that MAC.
fn send_neigh_request(
    pool: &Mempool,
    tx: &mut TxBuffer,
    c: &WorkerCounters,
    addrs: &PortAddrs,
    target: IpAddr,
    unicast: Option<[u8; 6]>,
) {
    let mut frame = [0u8; 96];
    let Some(len) = local::build_neighbor_request(&mut frame, addrs, target, unicast.map(MacAddr))
    else {
        // no address of the target's family on this port to ask from
        c.drop_pkt(DropReason::NoRoute);
        return;
    };
    let Ok(mut m) = Mbuf::alloc(pool) else {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    };
    if !m.append(len) || !m.set_data(&frame[..len]) {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    }
    c.add(
        match target {
            IpAddr::V4(_) => Event::ArpRequestsOut,
            IpAddr::V6(_) => Event::NdSolicitsOut,
        },
        1,
    );
    tx.push(m);
}

/// Route `m` (an IPv4 or IPv6 frame whose Ethernet header we fill) toward
/// `next_hop`: out of the port whose subnet holds it, else through the
/// first port with a gateway of its family.
fn route(
    ports: &mut [WorkerPort],
    pool: &Mempool,
    c: &WorkerCounters,
    next_hop: IpAddr,
    m: Mbuf,
    now_ms: u64,
) {
    route_from(ports, pool, c, None, next_hop, m, now_ms)
}

/// The port and the neighbour to send a packet for `next_hop` to: the
/// port whose subnet holds it (the `ingress` port first, if it does: a
/// reply to an IPv6 link-local address, on-link on every port, must leave
/// where the request came in), else the first port with a gateway of its
/// family.
pub fn egress<T>(
    ports: &[T],
    addrs: impl Fn(&T) -> &PortAddrs,
    ingress: Option<usize>,
    next_hop: IpAddr,
) -> Option<(usize, IpAddr)> {
    if let Some(i) = ingress.filter(|&i| ports.get(i).is_some_and(|p| addrs(p).on_link(next_hop))) {
        return Some((i, next_hop));
    }
    if let Some(i) = ports.iter().position(|p| addrs(p).on_link(next_hop)) {
        return Some((i, next_hop));
    }
    ports
        .iter()
        .enumerate()
        .find_map(|(i, p)| addrs(p).gateway_for(next_hop).map(|g| (i, g)))
}

/// [`route`] for a packet that came in on port `ingress` (see [`egress`]).
fn route_from(
    ports: &mut [WorkerPort],
    pool: &Mempool,
    c: &WorkerCounters,
    ingress: Option<usize>,
    next_hop: IpAddr,
    mut m: Mbuf,
    now_ms: u64,
) {
    let Some((p, hop)) = egress(ports, |wp| &wp.addrs, ingress, next_hop) else {
        c.drop_pkt(DropReason::NoRoute);
        return;
    };
    let WorkerPort {
        tx, addrs, neigh, ..
    } = &mut ports[p];
    EthernetFrame::new_unchecked(m.data_mut()).set_src_addr(addrs.mac);
    match neigh.resolve(hop, m, now_ms) {
        Resolve::Send(mac, m) => send_to(tx, mac, m),
        Resolve::SendAndProbe(mac, m) => {
            send_to(tx, mac, m);
            send_neigh_request(pool, tx, c, addrs, hop, Some(mac));
        }
        Resolve::Queued => {}
        Resolve::QueuedAndRequest => send_neigh_request(pool, tx, c, addrs, hop, None),
        Resolve::Dropped(m, r) => {
            count_neigh_drop(c, r);
            drop(m);
        }
        Resolve::DroppedAndRequest(m, r) => {
            c.add(Event::NeighRequestsUnqueued, 1);
            count_neigh_drop(c, r);
            drop(m);
            send_neigh_request(pool, tx, c, addrs, hop, None);
        }
    }
}

/// The addresses a port answers ARP and neighbor solicitations for,
/// beyond its own: its configured VIPs, plus every service VIP and FULLNAT
/// local address (of either family) on one of its subnets (so `vsadm -A`
/// and `--add-laddr` need no config change).
pub fn port_vips(addrs: &PortAddrs, static_vips: &[IpAddr], snap: &ServiceSnapshot) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = static_vips.to_vec();
    let mut add = |a: IpAddr| {
        if addrs.on_link(a) && !addrs.is_own(a) && !v.contains(&a) {
            v.push(a);
        }
    };
    for svc in snap.services() {
        if let ServiceKey::Addr { addr, .. } = svc.key {
            add(addr);
        }
        for l in &svc.config.local_addresses {
            add(*l);
        }
    }
    v
}

/// Whether a frame is (untagged or single-tagged) IPv6 with ICMPv6 right
/// after the fixed header: the only frames [`local::handle_frame`] may
/// answer with a neighbor advertisement longer than themselves.
#[inline]
fn may_be_nd(frame: &[u8]) -> bool {
    const ICMPV6: u8 = 58;
    match frame.get(12..14) {
        Some([0x86, 0xdd]) => frame.get(20) == Some(&ICMPV6),
        Some([0x81, 0x00]) => {
            frame.get(16..18) == Some(&[0x86, 0xdd]) && frame.get(24) == Some(&ICMPV6)
        }
        _ => false,
    }
}

/// Metadata 0 on a steering ring: a packet steered by the ownership rule,
/// before any decision (real `SteerMeta` values are never 0).
const META_RAW_PACKET: u64 = 0;

impl Worker {
    /// Poll until told to stop.
    pub fn run(&mut self) {
        let per_ms = (tsc_hz() / 1000).max(1);
        // cycles -> ns: cycles * 1e6 / cycles-per-ms
        let ns = |cycles: u64| cycles.saturating_mul(1_000_000) / per_ms;
        let mut burst = MbufBurst::new();
        let mut steered = SteerBurst::new();
        let mut notes = Vec::with_capacity(64);
        let mut last_tick_ms = 0u64;
        let mut last_merge_ms = 0u64;
        let mut burst_hist = new_latency_histogram();
        let mut turn_hist = new_latency_histogram();
        let stall_cycles = (per_ms * STALL_US / 1000).max(1);
        let twin_poll_cycles = (per_ms * exception::TWIN_POLL_US / 1000).max(1);
        let mut last_twin_poll = 0u64;
        let has_twin = self.ports.iter().any(|wp| wp.twin.is_some());
        self.adopt_config(tsc_now() / per_ms);
        let mut prev_turn_start = tsc_now();
        let mut prev_worked = false;
        while !self.stop.load(Ordering::Relaxed) {
            let turn_start = tsc_now();
            let now_ms = turn_start / per_ms;
            let mut worked = false;
            self.counters.add(Event::LoopTurns, 1);
            // A poll loop that did not come round for this long was stopped
            // (the kernel ran something else on this core, or the
            // hypervisor took the vCPU): packets queued meanwhile.
            let gap = turn_start.wrapping_sub(prev_turn_start);
            prev_turn_start = turn_start;
            if gap >= stall_cycles {
                self.counters.add(Event::Stalls, 1);
                self.counters.add(Event::StallMicros, ns(gap) / 1000);
            } else {
                // The previous turn took `gap` cycles (this turn's timestamp
                // ends it: no extra rdtsc). Busy if it carried packets, idle
                // polling if not; a stalled turn is neither (the cycles went
                // to whoever took the core). busy_cycles / rx_packets is the
                // work per packet, whatever rate the traffic came at.
                let e = if prev_worked {
                    Event::BusyCycles
                } else {
                    Event::IdleCycles
                };
                self.counters.add(e, gap);
            }
            if self.config.poll().is_some() {
                self.adopt_config(now_ms);
            }
            for p in 0..self.ports.len() {
                let n = self.ports[p].rx.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                self.counters.add(Event::Bursts, 1);
                worked = true;
                let burst_start = tsc_now();
                for i in 0..n.min(4) {
                    burst.prefetch(i);
                }
                // counted once per burst, not per packet
                self.counters.add(Event::RxPackets, n as u64);
                let mut i = 0;
                let mut bytes = 0u64;
                while let Some(m) = burst.next_packet() {
                    burst.prefetch(i + 4);
                    i += 1;
                    bytes += m.len() as u64;
                    self.handle_wire(p, m, now_ms);
                }
                self.counters.add(Event::RxBytes, bytes);
                self.forward_batch(now_ms);
                burst_hist.saturating_record(ns(tsc_now().wrapping_sub(burst_start)).max(1));
            }
            for r in 0..self.steer_in.len() {
                let ring = Arc::clone(&self.steer_in[r]);
                if ring.dequeue(&mut steered) == 0 {
                    continue;
                }
                worked = true;
                while let Some((m, meta)) = steered.next_packet() {
                    self.counters.add(Event::SteeredIn, 1);
                    let meta = (meta != META_RAW_PACKET).then(|| SteerMeta::from_raw(meta));
                    self.queue_forward(m, meta, now_ms);
                }
                self.forward_batch(now_ms);
            }
            if has_twin && turn_start.wrapping_sub(last_twin_poll) >= twin_poll_cycles {
                last_twin_poll = turn_start;
                worked |= self.poll_twins(&mut burst);
            }
            self.exchange_templates(&mut notes, now_ms);
            self.sync_turn(turn_start, now_ms);
            if self.dump.requested.load(Ordering::Relaxed)
                != self.dump.answered.load(Ordering::Relaxed)
            {
                self.answer_dump(now_ms);
            }
            self.drain_inbox(now_ms);
            if now_ms != last_tick_ms {
                last_tick_ms = now_ms;
                self.tick(now_ms);
            }
            self.flush_all();
            if worked {
                turn_hist.saturating_record(ns(tsc_now().wrapping_sub(turn_start)).max(1));
            }
            if now_ms.wrapping_sub(last_merge_ms) >= LATENCY_MERGE_MS {
                last_merge_ms = now_ms;
                self.merge_latency(&mut burst_hist, &mut turn_hist);
            }
            prev_worked = worked;
            if let Some(us) = self.idle.after_turn(worked) {
                std::thread::sleep(std::time::Duration::from_micros(us));
                let slept = tsc_now();
                self.counters.add(Event::IdleSleeps, 1);
                self.counters.add(
                    Event::IdleSleepMicros,
                    ns(slept.wrapping_sub(turn_start)) / 1000,
                );
                // a chosen pause is not a stall
                prev_turn_start = slept;
            }
        }
        self.merge_latency(&mut burst_hist, &mut turn_hist);
        self.shutdown();
    }

    /// Hand the private histograms to the control thread (a short lock,
    /// every [`LATENCY_MERGE_MS`]; skipped if the control thread holds it).
    fn merge_latency(
        &self,
        burst: &mut hdrhistogram::Histogram<u64>,
        turn: &mut hdrhistogram::Histogram<u64>,
    ) {
        for (local, shared) in [(burst, &self.latency.burst), (turn, &self.latency.turn)] {
            if local.is_empty() {
                continue;
            }
            if let Ok(mut h) = shared.try_lock() {
                // same bounds on both sides: add cannot fail
                let _ = h.add(&*local);
                local.reset();
            }
        }
    }

    /// Fill the control thread's connection listing request.
    fn answer_dump(&mut self, now_ms: u64) {
        let want = self.dump.requested.load(Ordering::Acquire);
        let limit = self.dump.limit.load(Ordering::Relaxed);
        let (rows, total) = super::conn_rows::conn_rows(&self.lb, now_ms, limit);
        if let Ok(mut slot) = self.dump.rows.lock() {
            *slot = (rows, total);
        }
        self.dump.answered.store(want, Ordering::Release);
    }

    /// Take up the published configuration: services, timeouts, and the
    /// addresses each port answers for.
    fn adopt_config(&mut self, now_ms: u64) {
        self.adopted
            .store(self.config.generation(), Ordering::Release);
        let cfg = Arc::clone(self.config.current());
        self.lb.adopt(Arc::clone(&cfg.services));
        self.lb.set_timeouts(cfg.timeouts);
        self.lb.set_marks(Arc::clone(&cfg.marks));
        self.lb.set_defense(cfg.defense);
        let came_up = self.follow.adopt(&cfg.followed_vips);
        let inactive = self.follow.inactive();
        for wp in &mut self.ports {
            wp.addrs.vips = port_vips(&wp.addrs, &wp.static_vips, &cfg.services);
            wp.addrs.vips.retain(|v| !inactive.contains(v));
        }
        if self.index == 0 {
            for (p, vip) in came_up {
                if let Some(wp) = self.ports.get_mut(p) {
                    super::vipfollow::send_announcements(
                        &self.pool,
                        &mut wp.tx,
                        &self.counters,
                        wp.addrs.mac,
                        vip,
                    );
                }
            }
        }
        self.martian = MartianFilter::new(self.ports.iter().map(|wp| &wp.addrs), &cfg.services);
        for (p, wp) in self.ports.iter_mut().enumerate() {
            let change = self
                .mld
                .update(p, super::mld::groups_of(&wp.addrs, wp.twin.is_some()));
            // worker 0 reports the changes (once per link, not per worker)
            if self.index == 0 && !(change.0.is_empty() && change.1.is_empty()) {
                if !wp.tx.link_up() {
                    // a down link sends nothing (a tap refuses the write)
                    self.mld.defer(p, &change, now_ms);
                    continue;
                }
                let c = &*self.counters;
                let mac = wp.addrs.mac;
                super::mld::state_change(&change, mac, &mut |f| {
                    send_frame(&self.pool, &mut wp.tx, c, f)
                });
                self.mld.schedule_repeat(p, &change, now_ms);
            }
        }
    }

    /// Answer the MLD query in `m` for port `p`'s groups.
    fn answer_mld(&mut self, p: usize, m: &Mbuf) {
        let Some(wp) = self.ports.get_mut(p) else {
            return;
        };
        let c = &*self.counters;
        let (pool, mac) = (&self.pool, wp.addrs.mac);
        super::mld::answer(m.data(), self.mld.groups(p), mac, &mut |f| {
            send_frame(pool, &mut wp.tx, c, f)
        });
    }

    /// Send the MLD state change reports due again (worker 0).
    fn repeat_mld(&mut self, now_ms: u64) {
        for (p, change, unsent) in self.mld.take_due(now_ms) {
            if let Some(wp) = self.ports.get_mut(p) {
                if !wp.tx.link_up() {
                    if unsent {
                        self.mld.defer(p, &change, now_ms);
                    } else {
                        self.mld.schedule_repeat(p, &change, now_ms);
                    }
                    continue;
                }
                let c = &*self.counters;
                let mac = wp.addrs.mac;
                super::mld::state_change(&change, mac, &mut |f| {
                    send_frame(&self.pool, &mut wp.tx, c, f)
                });
                if unsent {
                    // its first send: repeat it as any change
                    self.mld.schedule_repeat(p, &change, now_ms);
                }
            }
        }
    }

    /// A packet from a port: local traffic, then the ownership rule, then
    /// the forwarding core (rx_packets/rx_bytes are counted by the caller,
    /// once per burst).
    fn handle_wire(&mut self, p: usize, mut m: Mbuf, now_ms: u64) {
        if m.segments() != 1 {
            self.counters.drop_pkt(DropReason::MultiSegment);
            return;
        }
        if self.ports[p].twin.is_some() {
            match exception::classify(m.data(), &self.ports[p].addrs) {
                Punt::Continue => {}
                Punt::ToKernel => {
                    self.punt(p, m, now_ms);
                    return;
                }
                Punt::CopyToKernel => self.punt_copy(p, &m, now_ms),
            }
        }
        let c = &*self.counters;
        // martian source or destination: never answered, never forwarded
        if let Some(r) = self.martian.check_ip(m.data()) {
            c.drop_pkt(r);
            return;
        }
        // room for a neighbor advertisement built in place of a short
        // ICMPv6 frame (given back below if the frame is not ours)
        let received_len = m.len();
        if received_len < local::ND_REPLY_ROOM
            && may_be_nd(m.data())
            && m.append(local::ND_REPLY_ROOM - received_len)
        {
            // zeroed: a packet whose length fields claim more than arrived
            // must never read (and echo) an earlier packet's bytes
            if let Some(tail) = m.data_mut().get_mut(received_len..) {
                tail.fill(0);
            }
        }
        let mut learned = None;
        let verdict = local::handle_frame(m.data_mut(), &self.ports[p].addrs, c, &mut learned);
        if let Some((ip, mac, solicited)) = learned {
            c.add(Event::NeighLearned, 1);
            let WorkerPort { tx, neigh, .. } = &mut self.ports[p];
            neigh.learn(ip, mac.0, now_ms, solicited, |mac, pkt| {
                send_to(tx, mac, pkt)
            });
            let update = NeighUpdate {
                port: p as u16,
                ip,
                mac: mac.0,
                solicited,
            };
            for peer in &self.peers {
                // a full inbox only costs that worker an ARP request later
                let _ = peer.push(update);
            }
        }
        match verdict {
            LocalVerdict::SendBack { len } => {
                m.truncate(len);
                let tx = &mut self.ports[p].tx;
                tx.push(m);
            }
            LocalVerdict::Route { len, next_hop } => {
                m.truncate(len);
                route_from(&mut self.ports, &self.pool, c, Some(p), next_hop, m, now_ms);
            }
            LocalVerdict::Consumed => {}
            LocalVerdict::MldQuery => self.answer_mld(p, &m),
            LocalVerdict::Drop(r) => c.drop_pkt(r),
            LocalVerdict::NotLocal => {
                m.truncate(received_len);
                if MartianFilter::not_host(m.data(), &self.ports[p].addrs.mac.0) {
                    c.drop_pkt(DropReason::NotHost);
                    return;
                }
                // a followed VIP while its address is off the kernel interface
                if self.follow.to_inactive_vip(m.data()) {
                    c.drop_pkt(DropReason::VipInactive);
                    return;
                }
                // The software rule when the NIC did not hash this packet
                // (no RSS on the port, or a PMD such as net_tap that reports
                // RSS but spreads flows its own way).
                if m.rss_hash().is_none() {
                    if let Some(owner) =
                        self.owner.as_ref().and_then(|o| o.owner_of_frame(m.data()))
                    {
                        if owner as usize != self.index {
                            self.steer(owner as usize, m, META_RAW_PACKET);
                            return;
                        }
                    }
                }
                self.queue_forward(m, None, now_ms);
            }
        }
    }

    /// Add a packet to the batch for the forwarding core.
    #[inline]
    fn queue_forward(&mut self, m: Mbuf, meta: Option<SteerMeta>, now_ms: u64) {
        if self.fwd_batch.len() >= FWD_BATCH {
            self.forward_batch(now_ms);
        }
        self.fwd_batch.push(m);
        self.fwd_meta.push(meta);
    }

    /// Run the batch through the forwarding core (lookups issued together)
    /// and carry out each verdict.
    fn forward_batch(&mut self, now_ms: u64) {
        let n = self.fwd_batch.len();
        if n == 0 {
            return;
        }
        // queue_forward keeps n <= FWD_BATCH, so every packet gets a verdict
        let mut verdicts = [FwdVerdict::NotService; FWD_BATCH];
        self.lb.process_burst(
            &mut self.fwd_batch[..],
            &self.fwd_meta[..],
            &mut verdicts[..n],
            now_ms,
        );
        self.fwd_meta.clear();
        let forwarded = verdicts[..n]
            .iter()
            .filter(|v| matches!(v, FwdVerdict::Forward { .. }))
            .count();
        self.counters.add(Event::Forwarded, forwarded as u64);
        let mut batch = std::mem::take(&mut self.fwd_batch);
        for (m, v) in batch.drain(..).zip(verdicts) {
            self.carry_out(v, m, now_ms);
        }
        // keep the allocation for the next burst
        self.fwd_batch = batch;
    }

    /// Carry out the forwarding core's verdict on a packet (forwarded ones are
    /// counted per batch by the caller).
    fn carry_out(&mut self, verdict: FwdVerdict, mut m: Mbuf, now_ms: u64) {
        match verdict {
            FwdVerdict::Forward { next_hop } => {
                if self.l4_csum_offload {
                    if let Some(o) = super::offload::prepare_l4_offload(m.data_mut()) {
                        m.request_tx_offload(o.l2_len, o.l3_len, o.flags);
                    }
                }
                route(
                    &mut self.ports,
                    &self.pool,
                    &self.counters,
                    next_hop,
                    m,
                    now_ms,
                );
            }
            FwdVerdict::Steer { core, meta } => self.steer(core as usize, m, meta.raw()),
            FwdVerdict::NotService => {
                // TCP/UDP to the director's own address that no service or
                // connection takes: the kernel's (ssh, BGP, management)
                let twin_port = exception::own_port_of(
                    m.data(),
                    self.ports.iter().map(|wp| (&wp.addrs, wp.twin.is_some())),
                );
                match twin_port {
                    Some(p) => self.punt(p, m, now_ms),
                    None => self.counters.drop_pkt(DropReason::NoService),
                }
            }
            // counted by reason in the core's forwarding stats
            FwdVerdict::Drop(_) => self.counters.add(Event::ForwardDrops, 1),
            // the director kept a copy; the buffer goes back to the pool
            FwdVerdict::Held => {}
        }
    }

    /// Hand a frame up to port `p`'s kernel twin (bounded: see
    /// [`exception::PUNT_BUDGET_PER_MS`]).
    fn punt(&mut self, p: usize, m: Mbuf, now_ms: u64) {
        if !self.punt_budget.take(now_ms) {
            self.counters.drop_pkt(DropReason::ExceptionRateLimit);
            return;
        }
        match self.ports[p].twin.as_mut() {
            Some(twin) => {
                self.counters.add(Event::ExceptionToKernel, 1);
                twin.tx.push(m);
            }
            None => self.counters.drop_pkt(DropReason::NoService),
        }
    }

    /// Hand a copy of a frame up to port `p`'s twin (ARP and neighbor
    /// advertisements: vsd handles the original too; both counted as
    /// `exception_arp_copies`).
    fn punt_copy(&mut self, p: usize, m: &Mbuf, now_ms: u64) {
        let Ok(mut copy) = Mbuf::alloc(&self.pool) else {
            self.counters.drop_pkt(DropReason::ExceptionNoMbuf);
            return;
        };
        if !copy.append(m.len()) || !copy.set_data(m.data()) {
            self.counters.drop_pkt(DropReason::ExceptionNoMbuf);
            return;
        }
        self.counters.add(Event::ExceptionArpCopies, 1);
        self.punt(p, copy, now_ms);
    }

    /// Move what the kernel sent on the twins out of their ports (one burst
    /// per twin). Returns whether anything came.
    fn poll_twins(&mut self, burst: &mut MbufBurst) -> bool {
        let mut any = false;
        for wp in &mut self.ports {
            let Some(twin) = wp.twin.as_mut() else {
                continue;
            };
            let n = twin.rx.rx_burst(burst);
            if n == 0 {
                continue;
            }
            any = true;
            self.counters.add(Event::ExceptionFromKernel, n as u64);
            while let Some(m) = burst.next_packet() {
                wp.tx.push(m);
            }
        }
        any
    }

    /// Queue a packet for another worker's steering ring.
    fn steer(&mut self, core: usize, m: Mbuf, meta: u64) {
        let Some(Some(out)) = self.steer_out.get_mut(core) else {
            // no such worker (a RETA/worker mismatch): keep it here
            self.counters.drop_pkt(DropReason::SteerFull);
            return;
        };
        if out.batch.is_full() {
            out.ring.enqueue(&mut out.batch);
        }
        match out.batch.push(m, meta) {
            Ok(()) => self.counters.add(Event::SteeredOut, 1),
            Err(m) => {
                drop(m);
                self.counters.drop_pkt(DropReason::SteerFull);
            }
        }
    }

    /// Flush every tx buffer and steering batch; count what was refused.
    fn flush_all(&mut self) {
        for out in self.steer_out.iter_mut().flatten() {
            out.ring.enqueue(&mut out.batch);
            // a full ring means that worker is behind: drop rather than
            // hold packets back for an unbounded time
            let refused = out.batch.discard();
            if refused != 0 {
                self.counters.drop_n(DropReason::SteerFull, refused as u64);
            }
        }
        for wp in &mut self.ports {
            if let Some(twin) = wp.twin.as_mut() {
                twin.tx.flush();
                let refused = twin.tx.dropped - twin.tx_dropped_seen;
                if refused != 0 {
                    twin.tx_dropped_seen = twin.tx.dropped;
                    self.counters.drop_n(DropReason::ExceptionFull, refused);
                }
            }
            let (packets, bytes) = wp.tx.take_queued();
            if packets != 0 {
                self.counters.add(Event::TxPackets, packets);
                self.counters.add(Event::TxBytes, bytes);
            }
            wp.tx.flush();
            let refused = wp.tx.dropped - wp.tx_dropped_seen;
            if refused != 0 {
                wp.tx_dropped_seen = wp.tx.dropped;
                self.counters.drop_n(DropReason::TxFull, refused);
            }
        }
    }

    fn exchange_templates(&mut self, notes: &mut Vec<TemplateNote>, now_ms: u64) {
        notes.clear();
        self.lb.take_new_templates(notes);
        for n in notes.iter() {
            for peer in &self.template_peers {
                if peer.push(*n).is_err() {
                    // that core's inbox is full: it may schedule the client
                    // elsewhere until its own template
                    self.lb.stats().count_event(FwdEvent::TemplateNoteLost);
                }
            }
        }
        while let Some(n) = self.template_inbox.pop() {
            self.lb.learn_template(&n, now_ms);
        }
    }

    fn drain_inbox(&mut self, now_ms: u64) {
        while let Some(u) = self.inbox.pop() {
            let Some(WorkerPort { tx, neigh, .. }) = self.ports.get_mut(u.port as usize) else {
                continue;
            };
            neigh.learn(u.ip, u.mac, now_ms, u.solicited, |mac, pkt| {
                send_to(tx, mac, pkt)
            });
        }
    }

    fn tick(&mut self, now_ms: u64) {
        self.lb.tick(now_ms);
        if self.index == 0 {
            self.repeat_mld(now_ms);
        }
        let c = &*self.counters;
        for wp in &mut self.ports {
            let WorkerPort {
                tx, addrs, neigh, ..
            } = wp;
            let pool = &self.pool;
            // Every request the table asks for goes out (a fixed buffer of 8
            // used to lose the rest of a tick's retries and refresh probes).
            neigh.tick(now_ms, |a| match a {
                NeighAction::Request { ip, unicast } => {
                    send_neigh_request(pool, tx, c, addrs, ip, unicast);
                }
                NeighAction::Drop(m, r) => {
                    count_neigh_drop(c, r);
                    drop(m);
                }
            });
            // The table's own events since the last tick (evictions happen in resolve).
            let d = neigh.counts_since_last_report();
            c.add(Event::NeighRefreshes, d.refreshes);
            c.add(Event::NeighEvictedStale, d.evicted);
            c.add(Event::NeighEvictedIncomplete, d.evicted_incomplete);
            c.add(Event::NeighIncompleteLimited, d.incomplete_limited);
            c.add(Event::NeighLearnIgnoredFull, d.learn_ignored_full);
            c.add(Event::NeighDelayConfirmed, d.delay_confirmed);
        }
    }

    fn shutdown(&mut self) {
        self.flush_all();
        let c = &*self.counters;
        for wp in &mut self.ports {
            wp.neigh.flush(|m, r| {
                count_neigh_drop(c, r);
                drop(m);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::service::{ServiceConfig, ServiceTable};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn ports() -> [PortAddrs; 2] {
        [
            PortAddrs::new(
                MacAddr([2, 0, 0, 0, 0, 1]),
                vec![(v4("198.18.0.1"), 24), (v6("2001:2::1"), 64)],
                vec![],
                vec![],
            ),
            PortAddrs::new(
                MacAddr([2, 0, 0, 0, 0, 2]),
                vec![(v4("198.18.1.1"), 24), (v6("2001:2:1::1"), 64)],
                vec![],
                vec![v4("198.18.1.254"), v6("fe80::1")],
            ),
        ]
    }

    #[test]
    fn egress_by_subnet_ingress_and_gateway_of_the_family() {
        let p = ports();
        fn id(a: &PortAddrs) -> &PortAddrs {
            a
        }
        assert_eq!(
            egress(&p, id, None, v6("2001:2:1::9")),
            Some((1, v6("2001:2:1::9")))
        );
        assert_eq!(
            egress(&p, id, Some(0), v6("2001:2:1::9")),
            Some((1, v6("2001:2:1::9")))
        );
        // off-link: the gateway of the destination's family
        assert_eq!(
            egress(&p, id, None, v6("2001:3::9")),
            Some((1, v6("fe80::1")))
        );
        assert_eq!(
            egress(&p, id, None, v4("198.19.0.9")),
            Some((1, v4("198.18.1.254")))
        );
        // link-local is on-link everywhere: the ingress port decides
        assert_eq!(
            egress(&p, id, Some(1), v6("fe80::99")),
            Some((1, v6("fe80::99")))
        );
        assert_eq!(
            egress(&p, id, Some(0), v6("fe80::99")),
            Some((0, v6("fe80::99")))
        );
        assert_eq!(
            egress(&p, id, None, v6("fe80::99")),
            Some((0, v6("fe80::99")))
        );
        assert_eq!(egress(&p[..1], id, None, v6("2001:3::9")), None);
        assert_eq!(
            egress(&p[..1], id, Some(5), v4("198.18.0.7")),
            Some((0, v4("198.18.0.7")))
        );
    }

    #[test]
    fn port_vips_take_on_link_service_addresses_of_both_families() {
        let p = ports();
        let mut t = ServiceTable::new(16);
        t.add_service(
            crate::lb::service::ServiceKey::tcp(v6("2001:2::64"), 80),
            ServiceConfig::default(),
        )
        .unwrap();
        t.add_service(
            crate::lb::service::ServiceKey::tcp(v4("198.18.0.100"), 80),
            ServiceConfig::default(),
        )
        .unwrap();
        t.add_service(
            crate::lb::service::ServiceKey::tcp(v6("2001:9::64"), 80),
            ServiceConfig::default(),
        )
        .unwrap();
        let vips = port_vips(&p[0], &[], &t.snapshot());
        assert!(vips.contains(&v6("2001:2::64")), "{vips:?}");
        assert!(vips.contains(&v4("198.18.0.100")), "{vips:?}");
        assert!(!vips.contains(&v6("2001:9::64")), "off-link: {vips:?}");
    }

    #[test]
    fn only_short_icmpv6_frames_get_room_for_an_advertisement() {
        use crate::wire::PacketBuilder;
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 9]), MacAddr([2, 0, 0, 0, 0, 1]));
        let ip6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let ns = PacketBuilder::ethernet(a, b)
            .ipv6(ip6("2001:2::2"), ip6("2001:2::1"))
            .neighbor_solicit(ip6("2001:2::1"), None)
            .build();
        assert!(may_be_nd(&ns));
        let tagged = PacketBuilder::ethernet(a, b)
            .vlan(5)
            .ipv6(ip6("2001:2::2"), ip6("2001:2::1"))
            .neighbor_solicit(ip6("2001:2::1"), None)
            .build();
        assert!(may_be_nd(&tagged));
        let tcp = PacketBuilder::ethernet(a, b)
            .ipv6(ip6("2001:2::2"), ip6("2001:2::1"))
            .tcp(1, 2, crate::wire::tcp::ACK)
            .build();
        assert!(!may_be_nd(&tcp));
        let v4 = PacketBuilder::ethernet(a, b)
            .ipv4("198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap())
            .icmp_echo_request(1, 1)
            .build();
        assert!(!may_be_nd(&v4));
        assert!(!may_be_nd(&ns[..15]));
    }
}
