//! The generator's one-lcore loop: build and send bursts from the
//! templates, receive what comes back, answer ARP, reflect requests as the
//! real servers, check and time the stamped samples.
//!
//! Run phases, in order:
//! 1. settle: send the first packets (up to 256 flows) and then only
//!    receive for `settle` — long enough for the forwarder to resolve every
//!    real server by ARP, so the prime pass is not dropped in neighbour
//!    queues;
//! 2. prime: one packet per flow, in flow order (a SYN for TCP), so every
//!    flow has a connection in the forwarder before it is measured;
//! 3. warm-up: steady traffic until `warmup` after settling (or until the
//!    prime pass is done, if later);
//! 4. measure: steady traffic for `duration`, `repeat` times back to back;
//!    the counters are snapshot at every window edge and latencies
//!    recorded per window;
//! 5. drain: receive only, so packets in flight are counted, not lost.
//!
//! Handshake mode (`--handshake`, TCP through NAT/FULLNAT, for a SYN proxy
//! or IPVS's defence knobs): every client connection is a real TCP
//! handshake. A SYN-ACK from the VIP to one of our clients is answered in
//! place with the ACK carrying a first data segment (marked with
//! [`packet::HANDSHAKE_MARK`]); the real servers answer a SYN with a
//! SYN-ACK acknowledging its sequence number and data with data
//! acknowledging it ([`packet::reflect_tcp`]), so a SYN proxy in between
//! sees consistent numbers. A connection counts as completed when the
//! server's answer to the marked segment reaches the client: every leg of
//! the handshake crossed the forwarder. Nothing is kept per connection:
//! all client ISNs are 0 and the reply carries what the next step needs.
//! On top, from the warm-up on, a flood of SYNs from random sources of
//! their own block (`--flood-net`) at `--flood-rate`, paced separately;
//! the SYN-ACKs the flood draws (cookies, or the servers' through a plain
//! director) are counted and dropped, as a spoofed source would.

use crate::check::{rs_mac, Direction, Expect, Failure};
use crate::fast::{free_bulk, BulkPool};
use crate::flows::FlowSpace;
use crate::packet::{self, Rx, Stamp, Template};
use hdrhistogram::Histogram;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr::NonNull;
use vsd::dpdk::{tsc_now, Mbuf, MbufBurst, RxQueue, TxQueue, BURST_SIZE};
use vsd::wire::tcp;

/// Packets waiting to be sent (built, reflected or ARP replies).
const PENDING: usize = 4 * BURST_SIZE;
/// Room kept free for what two receive bursts may need to send back
/// (reflections, ARP replies): when the forwarder's ring is full, new
/// packets wait, answers do not get dropped.
const ANSWER_ROOM: usize = 2 * BURST_SIZE;
/// Flows primed before the settle pause.
const SETTLE_FLOWS: u64 = 256;

/// Everything the loop needs, resolved from the command line.
#[derive(Debug)]
pub struct Plan {
    pub expect: Expect,
    /// Established flows.
    pub flows: FlowSpace,
    /// Tuples for new connections, walked by a counter.
    pub new_space: FlowSpace,
    /// Prime pass template (TCP SYN or UDP).
    pub prime: Template,
    /// Steady traffic on established flows (TCP ACK or UDP).
    pub steady: Template,
    /// New connections (TCP SYN or UDP).
    pub fresh: Template,
    /// Share of steady packets that open a new connection, in 1/65536.
    pub new_share_q16: u32,
    /// Target rate in packets/s; 0 = as fast as possible.
    pub rate_pps: u64,
    /// One packet in `sample` carries a stamp (≥ 1).
    pub sample: u32,
    /// Answer requests as the real servers (NAT/FULLNAT replies).
    pub reflect: bool,
    /// End the run after a window in which nothing came back.
    pub stop_if_silent: bool,
    /// Say on stderr when windows start and end (`--window-marks`).
    pub window_marks: bool,
    pub hz: u64,
    pub settle_cycles: u64,
    pub warmup_cycles: u64,
    pub duration_cycles: u64,
    pub drain_cycles: u64,
    /// Handshake mode with its flood, if on.
    pub handshake: Option<Handshake>,
}

/// How fast the flood goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodRate {
    Off,
    /// Packets per second.
    Paced(u64),
    /// As fast as the port takes them.
    Max,
}

/// The handshake mode's extra plan (see the module note).
#[derive(Debug)]
pub struct Handshake {
    /// The client's answer to a SYN-ACK: ACK with a marked data segment to
    /// VIP:vport (seq/ack patched per packet).
    pub answer: Template,
    /// Flood sources, picked at random.
    pub flood: FlowSpace,
    pub flood_rate: FloodRate,
    /// The real servers' ISN.
    pub server_isn: u32,
    /// Most new connections open at once (0: no limit): a closed loop, so
    /// that "as fast as possible" measures the forwarder's handshake rate
    /// rather than a SYN proxy's pool of held segments overflowing.
    pub max_inflight: u64,
}

/// What a TCP packet is in the handshake mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HsClass {
    /// SYN-ACK from the VIP to a client of ours: answer it.
    LegitSynAck,
    /// SYN-ACK from the VIP to a flood source: count, drop.
    FloodSynAck,
    /// SYN-ACK from the VIP to anyone else: count, drop.
    OtherSynAck,
    /// RST in either direction: count, drop.
    Rst,
    /// The server's answer to a marked segment reached a new-connection
    /// client / an established-flow client (its prime handshake).
    DoneNew,
    DoneEst,
    /// ... reached a client of the settle pass (not counted as either).
    DoneSettle,
    /// SYN at a real server (from the proxy, or passed through): answer.
    ServerSyn,
    /// A marked data segment at a real server: answer.
    MarkedRequest,
    /// A segment without data at a real server (the proxy's ACK when it
    /// held no data): count, no answer.
    BareRequest,
    /// Steady established-flow traffic (either direction): as without
    /// the handshake mode.
    Data,
}

impl Handshake {
    /// Classifies a TCP packet (`frame` parsed into `h`, arriving in
    /// direction `dir`).
    pub fn classify(
        &self,
        e: &Expect,
        frame: &[u8],
        h: &packet::Headers,
        dir: Direction,
    ) -> HsClass {
        if h.flags & tcp::RST != 0 {
            return HsClass::Rst;
        }
        let marked = packet::is_marked(frame, h);
        match dir {
            Direction::Reply => {
                let new_index = e.new_clients.index_of(h.dst, h.dport);
                let new = new_index.is_some();
                let ours = new || e.clients.index_of(h.dst, h.dport).is_some();
                if h.flags & (tcp::SYN | tcp::ACK) == tcp::SYN | tcp::ACK {
                    if ours {
                        HsClass::LegitSynAck
                    } else if self.flood.index_of(h.dst, h.dport).is_some() {
                        HsClass::FloodSynAck
                    } else {
                        HsClass::OtherSynAck
                    }
                } else if marked && new_index.is_some_and(|i| i >= settle_base(e.new_clients)) {
                    HsClass::DoneSettle
                } else if marked && new {
                    HsClass::DoneNew
                } else if marked {
                    HsClass::DoneEst
                } else {
                    HsClass::Data
                }
            }
            Direction::Request => {
                if h.flags & (tcp::SYN | tcp::ACK) == tcp::SYN {
                    HsClass::ServerSyn
                } else if marked {
                    HsClass::MarkedRequest
                } else if packet::payload_len(frame, h) == 0 {
                    HsClass::BareRequest
                } else {
                    HsClass::Data
                }
            }
        }
    }

    /// Turns a legitimate SYN-ACK (`frame`, parsed into `h`) into the
    /// client's ACK with its first data segment, written into `out` (the
    /// answer template's length). False if `out` has the wrong length.
    pub fn answer(&self, frame: &[u8], h: &packet::Headers, out: &mut [u8]) -> bool {
        let t = &self.answer;
        let (Some(seq), Some(ack)) = (rd32(frame, h.l4 + 4), rd32(frame, h.l4 + 8)) else {
            return false;
        };
        if out.len() != t.bytes().len() {
            return false;
        }
        out.copy_from_slice(t.bytes());
        t.patch(out, h.dst, h.dport, None);
        t.patch_seq_ack(out, ack, seq.wrapping_add(1));
        true
    }
}

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Event counts. Copied at the measurement window's edges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets the generator originated and the port accepted.
    pub tx_orig: u64,
    /// Of those, new connections (TCP SYN / UDP on a fresh tuple).
    pub tx_new: u64,
    /// Requests sent back as real-server replies.
    pub tx_reflected: u64,
    /// ARP replies sent.
    pub tx_arp: u64,
    /// Data packets received travelling client → server.
    pub rx_request: u64,
    /// Data packets received travelling server → client (NAT/FULLNAT).
    pub rx_reply: u64,
    /// Received requests that open a connection (TCP SYN without ACK).
    pub rx_new: u64,
    pub rx_arp: u64,
    /// Received frames that are neither ARP nor our TCP/UDP.
    pub rx_other: u64,
    /// Stamped packets checked.
    pub checked: u64,
    /// Check failures by [`Failure`] index.
    pub failures: [u64; Failure::ALL.len()],
    /// Stamped packets arriving with a lower sequence than one before.
    pub reordered: u64,
    /// Bursts not sent because the pool was empty.
    pub alloc_failures: u64,
    /// Requests not reflected because the tx backlog was full.
    pub reflect_dropped: u64,
    /// Turns of the loop.
    pub loop_turns: u64,
    /// Sends that left packets behind (the ring towards the forwarder was
    /// full: the forwarder, not the generator, is the bottleneck).
    pub tx_ring_full: u64,
    /// Receive polls that found nothing.
    pub rx_empty_polls: u64,
    /// Handshake mode: flood SYNs sent; answers (ACK + data) to SYN-ACKs
    /// sent; SYN-ACKs received for our clients, for flood sources, for
    /// anyone else; SYNs at the real servers; marked segments at the real
    /// servers; segments without data there; RSTs; completed handshakes of
    /// new connections and of established flows (their prime).
    pub tx_flood: u64,
    pub tx_answer: u64,
    pub rx_synack_legit: u64,
    pub rx_synack_flood: u64,
    pub rx_synack_other: u64,
    pub rx_server_syn: u64,
    pub rx_marked_request: u64,
    pub rx_bare_request: u64,
    pub rx_rst: u64,
    pub done_new: u64,
    pub done_est: u64,
}

impl Counters {
    /// Data packets that came back through the forwarder.
    pub fn rx_data(&self) -> u64 {
        self.rx_request + self.rx_reply
    }

    /// Check failures of every reason.
    pub fn check_failures(&self) -> u64 {
        self.failures.iter().sum()
    }
}

/// One measurement window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Counters at the window's start and end.
    pub at_start: Counters,
    pub at_end: Counters,
    /// Counters once what was sent in the window had time to come back:
    /// at the end of the next window, or after the drain for the last.
    pub at_settled: Counters,
    /// Length in TSC cycles.
    pub cycles: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// The windows, in order.
    pub windows: Vec<Window>,
    /// Counters after draining.
    pub at_finish: Counters,
    /// Cycles from the start to the first window (settle, prime, warm-up).
    pub lead_cycles: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Settle,
    Prime,
    Warm,
    Measure,
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Orig { new: bool },
    Reflected,
    Arp,
    Flood,
    Answer,
}

/// The most a paced generator lets its schedule run ahead of what it sent:
/// 20 µs of traffic (at least two bursts).
const MAX_DEBT_US: u64 = 20;

/// Paces origination at a target rate from a reference point.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    hz: u64,
    since: u64,
    base: u64,
}

impl Pacer {
    /// Packets allowed now, given `sent` so far (BURST_SIZE if unpaced).
    #[inline]
    fn budget(&mut self, now: u64, sent: u64) -> usize {
        if self.rate == 0 {
            return BURST_SIZE;
        }
        let due = self.base
            + (now.saturating_sub(self.since) as u128 * self.rate as u128 / self.hz.max(1) as u128)
                as u64;
        let owed = due.saturating_sub(sent);
        // Absorb loop jitter (a burst or two behind), but never make up for
        // a stall of this process (the kernel ran something else on our CPU):
        // sending the backlog at full speed would queue a burst in the
        // forwarder that a steady source never produces, and measure that.
        let most = (self.rate * MAX_DEBT_US / 1_000_000).max(2 * BURST_SIZE as u64);
        if owed > most {
            self.restart(now, sent);
            return BURST_SIZE;
        }
        owed.min(BURST_SIZE as u64) as usize
    }

    fn restart(&mut self, now: u64, sent: u64) {
        self.since = now;
        self.base = sent;
    }
}

struct Loop<'a> {
    plan: &'a Plan,
    c: Counters,
    pending: [*mut dpdk_sys::rte_mbuf; PENDING],
    kinds: [Kind; PENDING],
    npend: usize,
    /// Originated packets built (sent or pending).
    built: u64,
    prime_next: u64,
    flow_next: u64,
    new_next: u64,
    new_acc: u32,
    /// Flood packets built; the flood's random state.
    flood_built: u64,
    flood_rng: u64,
    /// The in-flight limit's view: completions seen, when the last one
    /// was seen, connections given up as lost.
    last_done: u64,
    last_progress: u64,
    given_up: u64,
    sample_left: u32,
    sample_seq: u16,
    last_seq: Option<u16>,
    /// The histogram of the current window, if measuring.
    window: Option<usize>,
    rtt: &'a mut [Histogram<u64>],
    ns_per_cycle: f64,
}

impl<'a> Loop<'a> {
    fn push(&mut self, m: Mbuf, kind: Kind) -> Result<(), Mbuf> {
        if self.npend == PENDING {
            return Err(m);
        }
        self.pending[self.npend] = m.into_raw().as_ptr();
        self.kinds[self.npend] = kind;
        self.npend += 1;
        Ok(())
    }

    /// Sends what is pending; keeps what the port refused for next time.
    #[inline]
    fn flush(&mut self, tx: &mut TxQueue) {
        if self.npend == 0 {
            return;
        }
        // SAFETY: pending[..npend] are mbufs this loop owns (built, or
        // received and taken out of their burst).
        let sent = unsafe { tx.tx_burst_raw(&mut self.pending[..self.npend]) };
        if sent < self.npend {
            self.c.tx_ring_full += 1;
        }
        for k in &self.kinds[..sent] {
            match *k {
                Kind::Orig { new } => {
                    self.c.tx_orig += 1;
                    self.c.tx_new += new as u64;
                }
                Kind::Reflected => self.c.tx_reflected += 1,
                Kind::Arp => self.c.tx_arp += 1,
                Kind::Flood => self.c.tx_flood += 1,
                Kind::Answer => self.c.tx_answer += 1,
            }
        }
        self.pending.copy_within(sent..self.npend, 0);
        self.kinds.copy_within(sent..self.npend, 0);
        self.npend -= sent;
    }

    /// New connections that may be opened now under the in-flight limit.
    fn new_room(&mut self, now: u64) -> u64 {
        let max = match &self.plan.handshake {
            Some(hs) if hs.max_inflight > 0 => hs.max_inflight,
            _ => return u64::MAX,
        };
        // A segment without data at a server is a connection whose first
        // data the proxy dropped: it will never complete, count it now.
        let (room, given_up) = inflight_room(
            max,
            self.new_next,
            self.c.done_new + self.c.rx_bare_request,
            self.given_up,
            &mut self.last_done,
            &mut self.last_progress,
            now,
            self.plan.hz / 1000 * INFLIGHT_PATIENCE_MS,
        );
        self.given_up = given_up;
        room
    }

    /// Builds up to `want` originated packets into the pending array.
    #[inline]
    fn originate(&mut self, pool: &BulkPool, want: usize, phase: Phase) {
        let limited = self
            .plan
            .handshake
            .as_ref()
            .is_some_and(|h| h.max_inflight > 0);
        let mut new_room = if limited {
            self.new_room(tsc_now())
        } else {
            u64::MAX
        };
        let mut n = want
            .min((PENDING - ANSWER_ROOM).saturating_sub(self.npend))
            .min(BURST_SIZE);
        if self.plan.new_share_q16 >= 1 << 16 && matches!(phase, Phase::Warm | Phase::Measure) {
            n = n.min(new_room.min(BURST_SIZE as u64) as usize);
        }
        if n == 0 {
            return;
        }
        let mut fresh = [std::ptr::null_mut(); BURST_SIZE];
        if !pool.alloc_bulk(&mut fresh[..n]) {
            self.c.alloc_failures += 1;
            return;
        }
        let plan = self.plan;
        for raw in fresh.iter().take(n) {
            let Some(raw) = NonNull::new(*raw) else {
                continue;
            };
            // SAFETY: alloc_bulk just handed us this mbuf; nothing else owns it.
            let mut m = unsafe { Mbuf::from_raw(raw) };
            let (t, (ip, port), new) = if phase == Phase::Settle && plan.handshake.is_some() {
                // Handshake mode: the settle pass (whose SYNs to the real
                // servers wait for ARP and may be lost, leaving a proxy's
                // connection stuck) opens connections of its own, at the
                // top of the new-connection block, never counted.
                let f = self.prime_next;
                self.prime_next += 1;
                let k = settle_base(plan.new_space) + f;
                (&plan.prime, plan.new_space.tuple(k), false)
            } else if phase == Phase::Prime || phase == Phase::Settle {
                let f = self.prime_next;
                self.prime_next += 1;
                (&plan.prime, plan.flows.tuple(f), false)
            } else {
                self.new_acc += plan.new_share_q16;
                if self.new_acc >= 1 << 16 && new_room > 0 {
                    self.new_acc -= 1 << 16;
                    new_room -= 1;
                    let k = self.new_next;
                    self.new_next += 1;
                    (&plan.fresh, plan.new_space.tuple(k), true)
                } else {
                    let f = self.flow_next;
                    self.flow_next += 1;
                    if self.flow_next == plan.flows.len() {
                        self.flow_next = 0;
                    }
                    (&plan.steady, plan.flows.tuple(f), false)
                }
            };
            self.sample_left -= 1;
            let stamp = if self.sample_left == 0 {
                self.sample_left = plan.sample.max(1);
                self.sample_seq = self.sample_seq.wrapping_add(1);
                Some(Stamp::at(tsc_now(), self.sample_seq))
            } else {
                None
            };
            if !m.set_data(t.bytes()) {
                continue; // mbuf too small for the frame: dropped here
            }
            t.patch(m.data_mut(), ip, port, stamp);
            self.built += 1;
            // n ≤ PENDING - ANSWER_ROOM - npend, so this always fits.
            let _ = self.push(m, Kind::Orig { new });
        }
    }

    /// Builds up to `want` flood SYNs from random sources.
    #[inline]
    fn originate_flood(&mut self, pool: &BulkPool, want: usize, hs: &Handshake) {
        let n = want
            .min((PENDING - ANSWER_ROOM).saturating_sub(self.npend))
            .min(BURST_SIZE);
        if n == 0 {
            return;
        }
        let mut fresh = [std::ptr::null_mut(); BURST_SIZE];
        if !pool.alloc_bulk(&mut fresh[..n]) {
            self.c.alloc_failures += 1;
            return;
        }
        let t = &self.plan.fresh;
        for raw in fresh.iter().take(n) {
            let Some(raw) = NonNull::new(*raw) else {
                continue;
            };
            // SAFETY: alloc_bulk just handed us this mbuf; nothing else owns it.
            let mut m = unsafe { Mbuf::from_raw(raw) };
            let (ip, port) = hs.flood.tuple(xorshift(&mut self.flood_rng));
            if !m.set_data(t.bytes()) {
                continue;
            }
            t.patch(m.data_mut(), ip, port, None);
            self.flood_built += 1;
            let _ = self.push(m, Kind::Flood);
        }
    }

    /// The handshake mode's handling of a TCP packet: what to send back
    /// (`Some(Some(kind))` with `m` rewritten, `Some(None)` to free it), or
    /// None for steady established traffic, handled as without the mode.
    #[inline]
    fn handshake(
        &mut self,
        m: &mut Mbuf,
        h: &packet::Headers,
        dir: Direction,
        hs: &Handshake,
    ) -> Option<Option<Kind>> {
        let plan = self.plan;
        let e = &plan.expect;
        let class = hs.classify(e, m.data(), h, dir);
        let c = &mut self.c;
        let answer = match class {
            HsClass::Data => return None,
            HsClass::LegitSynAck => {
                c.rx_synack_legit += 1;
                let mut out = [0u8; 1514];
                let len = hs.answer.bytes().len();
                if len <= out.len() && hs.answer(m.data(), h, &mut out[..len]) {
                    m.set_data(&out[..len]).then_some(Kind::Answer)
                } else {
                    None
                }
            }
            HsClass::FloodSynAck => {
                c.rx_synack_flood += 1;
                None
            }
            HsClass::OtherSynAck => {
                c.rx_synack_other += 1;
                None
            }
            HsClass::Rst => {
                c.rx_rst += 1;
                None
            }
            HsClass::DoneNew => {
                c.done_new += 1;
                None
            }
            HsClass::DoneEst => {
                c.done_est += 1;
                None
            }
            HsClass::DoneSettle => None,
            HsClass::BareRequest => {
                c.rx_bare_request += 1;
                None
            }
            HsClass::ServerSyn | HsClass::MarkedRequest => {
                if class == HsClass::ServerSyn {
                    c.rx_server_syn += 1;
                    c.rx_new += 1;
                } else {
                    c.rx_marked_request += 1;
                }
                let (src, dst) = (rs_mac(h.dst), e.dut_mac);
                packet::reflect_tcp(m.data_mut(), h, src, dst, hs.server_isn)
                    .then_some(Kind::Reflected)
            }
        };
        Some(answer)
    }

    /// Handles one received burst: count, check samples, answer ARP,
    /// reflect requests; frees the rest in one call.
    #[inline]
    fn receive(&mut self, burst: &mut MbufBurst) {
        let plan = self.plan;
        let e = &plan.expect;
        let mut free = [std::ptr::null_mut(); BURST_SIZE];
        let mut nfree = 0;
        while let Some(mut m) = burst.next_packet() {
            let keep = match packet::parse(m.data()) {
                Rx::Arp => {
                    self.c.rx_arp += 1;
                    let rips = &e.rips;
                    let gen = e.gen_mac;
                    packet::answer_arp(m.data_mut(), |a: Ipv4Addr| {
                        let a = u32::from(a);
                        if rips.contains(a) {
                            rs_mac(a)
                        } else {
                            gen
                        }
                    })
                    .then_some(Kind::Arp)
                }
                Rx::Solicit => {
                    // neighbor resolution, counted with ARP
                    self.c.rx_arp += 1;
                    let rips = &e.rips;
                    let (gen, family) = (e.gen_mac, e.family);
                    let na = packet::answer_solicit(m.data(), |a: Ipv6Addr| {
                        match family.host_of(IpAddr::V6(a)) {
                            Some(h) if rips.contains(h) => rs_mac(h),
                            _ => gen,
                        }
                    });
                    na.filter(|na| m.set_data(na)).map(|_| Kind::Arp)
                }
                Rx::Other => {
                    self.c.rx_other += 1;
                    None
                }
                Rx::Data(h) => 'data: {
                    let dir = e.direction(&h);
                    let hs = plan.handshake.as_ref().filter(|_| h.proto == 6);
                    if let Some(hs) = hs {
                        if let Some(kind) = self.handshake(&mut m, &h, dir, hs) {
                            break 'data kind;
                        }
                    }
                    match dir {
                        Direction::Request => self.c.rx_request += 1,
                        Direction::Reply => self.c.rx_reply += 1,
                    }
                    let reflect = plan.reflect && dir == Direction::Request;
                    if dir == Direction::Request
                        && h.proto == 6
                        && h.flags & (tcp::SYN | tcp::ACK) == tcp::SYN
                    {
                        self.c.rx_new += 1;
                    }
                    let stamp = m.data().get(h.payload..).and_then(Stamp::read);
                    if let Some(s) = stamp {
                        self.sampled(&m, &h, dir, s, reflect);
                    }
                    if reflect {
                        let (src, dst) = (rs_mac(h.dst), e.dut_mac);
                        let done = match hs {
                            Some(hs) => {
                                packet::reflect_tcp(m.data_mut(), &h, src, dst, hs.server_isn)
                            }
                            None => packet::reflect(m.data_mut(), &h, src, dst),
                        };
                        done.then_some(Kind::Reflected)
                    } else {
                        None
                    }
                }
            };
            let m = match keep {
                Some(kind) => match self.push(m, kind) {
                    Ok(()) => continue,
                    Err(m) => {
                        if kind == Kind::Reflected {
                            self.c.reflect_dropped += 1;
                        }
                        m
                    }
                },
                None => m,
            };
            free[nfree] = m.into_raw().as_ptr();
            nfree += 1;
        }
        // SAFETY: free[..nfree] were taken out of the burst (ownership
        // moved to us by into_raw) and are referenced nowhere else.
        unsafe { free_bulk(&mut free[..nfree]) };
    }

    /// Checks a stamped packet; on its last arrival, times it.
    fn sampled(&mut self, m: &Mbuf, h: &packet::Headers, dir: Direction, s: Stamp, reflect: bool) {
        self.c.checked += 1;
        if let Err(f) = self.plan.expect.check(m.data(), h, dir) {
            self.c.failures[f.index()] += 1;
        }
        if reflect {
            return; // timed when the reply comes back
        }
        if let Some(h) = self.window.and_then(|w| self.rtt.get_mut(w)) {
            let ns = (s.cycles_until(tsc_now()) as f64 * self.ns_per_cycle) as u64;
            h.saturating_record(ns.max(1));
        }
        if let Some(last) = self.last_seq {
            if (s.seq.wrapping_sub(last) as i16) <= 0 {
                self.c.reordered += 1;
                return;
            }
        }
        self.last_seq = Some(s.seq);
    }
}

impl Drop for Loop<'_> {
    fn drop(&mut self) {
        // SAFETY: pending[..npend] are owned by the loop and never sent.
        unsafe { free_bulk(&mut self.pending[..self.npend]) };
        self.npend = 0;
    }
}

/// Runs the whole plan on the calling lcore: one measurement window per
/// histogram in `rtt`, where the round trips of stamped packets of that
/// window go (ns).
pub fn run(
    plan: &Plan,
    rx: &mut RxQueue,
    tx: &mut TxQueue,
    pool: &BulkPool,
    rtt: &mut [Histogram<u64>],
) -> Outcome {
    let repeat = rtt.len();
    let mut lp = Loop {
        plan,
        c: Counters::default(),
        pending: [std::ptr::null_mut(); PENDING],
        kinds: [Kind::Arp; PENDING],
        npend: 0,
        built: 0,
        prime_next: 0,
        flow_next: 0,
        new_next: 0,
        new_acc: 0,
        flood_built: 0,
        last_done: 0,
        last_progress: 0,
        given_up: 0,
        flood_rng: 0x9e37_79b9_7f4a_7c15 ^ start_seed(),
        sample_left: plan.sample.max(1),
        sample_seq: 0,
        last_seq: None,
        window: None,
        rtt,
        ns_per_cycle: 1e9 / plan.hz.max(1) as f64,
    };
    let mut burst = MbufBurst::new();
    let start = tsc_now();
    let mut pacer = Pacer {
        rate: plan.rate_pps,
        hz: plan.hz,
        since: start,
        base: 0,
    };
    let mut flood_pacer = Pacer {
        rate: match plan.handshake.as_ref().map(|h| h.flood_rate) {
            Some(FloodRate::Paced(r)) => r,
            _ => 0,
        },
        hz: plan.hz,
        since: start,
        base: 0,
    };
    let flood = plan
        .handshake
        .as_ref()
        .filter(|h| h.flood_rate != FloodRate::Off);
    let settle_flows = if plan.handshake.is_some() {
        HANDSHAKE_SETTLE_FLOWS
    } else {
        SETTLE_FLOWS.min(plan.flows.len())
    };
    let settle_end = start + plan.settle_cycles;
    let warm_end = settle_end + plan.warmup_cycles;
    let mut phase = Phase::Settle;
    let mut windows: Vec<Window> = Vec::with_capacity(repeat);
    let (mut window_start, mut first_start, mut drain_end) = (0u64, 0u64, 0u64);
    let mut at_start = Counters::default();
    loop {
        let now = tsc_now();
        lp.c.loop_turns += 1;
        // Phase changes.
        match phase {
            Phase::Settle if now >= settle_end => {
                phase = Phase::Prime;
                lp.prime_next = 0;
                if plan.handshake.is_some() {
                    pacer.rate = match plan.rate_pps {
                        0 => HANDSHAKE_PRIME_PPS,
                        r => r.min(HANDSHAKE_PRIME_PPS),
                    };
                }
                pacer.restart(now, lp.built);
            }
            Phase::Prime if lp.prime_next >= plan.flows.len() => {
                phase = Phase::Warm;
                pacer.rate = plan.rate_pps;
                pacer.restart(now, lp.built);
            }
            Phase::Warm if now >= warm_end && repeat > 0 => {
                phase = Phase::Measure;
                lp.flush(tx);
                at_start = lp.c;
                window_start = now;
                first_start = now;
                lp.window = Some(0);
                if plan.window_marks {
                    eprintln!("vsd-gen: window 1 starts");
                }
                pacer.restart(now, lp.built);
            }
            Phase::Warm if now >= warm_end => {
                phase = Phase::Drain;
                drain_end = now + plan.drain_cycles;
            }
            Phase::Measure if now >= window_start + plan.duration_cycles => {
                lp.flush(tx);
                if let Some(prev) = windows.last_mut() {
                    prev.at_settled = lp.c;
                }
                windows.push(Window {
                    at_start,
                    at_end: lp.c,
                    at_settled: lp.c,
                    cycles: now - window_start,
                });
                let silent = at_start.rx_data() == lp.c.rx_data();
                at_start = lp.c;
                window_start = now;
                if windows.len() < repeat && !(silent && plan.stop_if_silent) {
                    lp.window = Some(windows.len());
                    if plan.window_marks {
                        eprintln!("vsd-gen: window {} starts", windows.len() + 1);
                    }
                } else {
                    if plan.window_marks {
                        eprintln!("vsd-gen: windows end");
                    }
                    phase = Phase::Drain;
                    lp.window = None;
                    drain_end = now + plan.drain_cycles;
                }
            }
            Phase::Drain if now >= drain_end => break,
            _ => {}
        }
        // Originate.
        let want = match phase {
            Phase::Settle => settle_flows.saturating_sub(lp.prime_next) as usize,
            Phase::Prime => {
                let left = plan.flows.len() - lp.prime_next;
                pacer
                    .budget(now, lp.built)
                    .min(left.min(usize::MAX as u64) as usize)
            }
            Phase::Warm | Phase::Measure => pacer.budget(now, lp.built),
            Phase::Drain => 0,
        };
        lp.originate(pool, want, phase);
        if let (Some(hs), Phase::Warm | Phase::Measure) = (flood, phase) {
            let n = flood_pacer.budget(now, lp.flood_built);
            lp.originate_flood(pool, n, hs);
        }
        lp.flush(tx);
        // Receive (twice per send, so the rx ring drains faster than the
        // forwarder can fill it when both run flat out).
        for _ in 0..2 {
            if rx.rx_burst(&mut burst) == 0 {
                lp.c.rx_empty_polls += 1;
                break;
            }
            lp.receive(&mut burst);
            lp.flush(tx);
        }
    }
    lp.flush(tx);
    if let Some(last) = windows.last_mut() {
        last.at_settled = lp.c;
    }
    Outcome {
        windows,
        at_finish: lp.c,
        lead_cycles: first_start.saturating_sub(start),
    }
}

/// First index of the settle pass's tuples in the new-connection space (its
/// last [`SETTLE_FLOWS`]; the run's counter never gets there).
pub fn settle_base(new_space: FlowSpace) -> u64 {
    new_space.len().saturating_sub(SETTLE_FLOWS)
}

/// How long the in-flight limit waits for a completion before giving up on
/// the outstanding connections (this VM's CPUs stall for up to ~30 ms).
const INFLIGHT_PATIENCE_MS: u64 = 50;

/// Flows of the settle pass in the handshake mode: fewer than a neighbour's
/// queue of packets waiting for ARP (8 in vsd), so none is lost there — a
/// SYN proxy's SYN to a server lost while the server's address resolves
/// leaves that connection stuck until it times out, holding a slot of its
/// pool of held segments. Four reach each of four servers in turn (rr).
const HANDSHAKE_SETTLE_FLOWS: u64 = 4;

/// Fastest prime pass in the handshake mode: a SYN proxy holds each
/// connection's first data segment until the server answers, in a small
/// pool (128 per worker in vsd); a thousand handshakes at once would
/// overflow it and lose connections the steady traffic then misses.
const HANDSHAKE_PRIME_PPS: u64 = 100_000;

/// The in-flight limit: how many new connections may open, given `max`,
/// `opened` and `done` so far and `given_up` as lost. When the limit is
/// reached and nothing completed for `patience` cycles, the outstanding
/// ones are given up (their packets were dropped somewhere; nobody
/// retransmits) so the loop goes on. Returns the room and the new
/// `given_up`.
#[allow(clippy::too_many_arguments)]
fn inflight_room(
    max: u64,
    opened: u64,
    done: u64,
    given_up: u64,
    last_done: &mut u64,
    last_progress: &mut u64,
    now: u64,
    patience: u64,
) -> (u64, u64) {
    if done != *last_done {
        *last_done = done;
        *last_progress = now;
    }
    let outstanding = opened.saturating_sub(done).saturating_sub(given_up);
    if outstanding >= max && now.saturating_sub(*last_progress) > patience {
        *last_progress = now;
        return (max, given_up + outstanding);
    }
    (max.saturating_sub(outstanding), given_up)
}

/// xorshift64: the flood's source picker (any nonzero state).
#[inline]
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A per-run seed, so two runs do not flood the same sources in order.
fn start_seed() -> u64 {
    tsc_now() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spreads_packets_over_time() {
        let mut p = Pacer {
            rate: 1_000_000,
            hz: 1_000_000_000,
            since: 0,
            base: 0,
        };
        // 1 Mpps at 1 GHz: one packet per 1000 cycles
        assert_eq!(p.budget(0, 0), 0);
        assert_eq!(p.budget(10_000, 0), 10);
        assert_eq!(p.budget(10_000, 10), 0);
        assert_eq!(p.budget(42_500, 10), 32);
        // behind by two bursts or less: catch up a burst at a time
        assert_eq!(p.budget(100_000, 42), BURST_SIZE);
        assert_eq!((p.since, p.base), (0, 0));
        assert_eq!(p.budget(100_000, 74), 26);
        // further behind (this process was stalled): the debt is dropped
        assert_eq!(p.budget(5_000_000, 100), BURST_SIZE);
        assert_eq!((p.since, p.base), (5_000_000, 100));
        assert_eq!(p.budget(5_005_000, 100), 5);
        // at 10 Mpps the allowance is 20 us of traffic (200 packets)
        let mut fast = Pacer {
            rate: 10_000_000,
            hz: 1_000_000_000,
            since: 0,
            base: 0,
        };
        assert_eq!(fast.budget(20_000, 0), BURST_SIZE);
        assert_eq!(fast.since, 0);
        assert_eq!(fast.budget(20_100, 0), BURST_SIZE);
        assert_eq!(fast.since, 20_100);
        let mut unpaced = Pacer {
            rate: 0,
            hz: 1,
            since: 0,
            base: 0,
        };
        assert_eq!(unpaced.budget(123, 456), BURST_SIZE);
    }

    use crate::packet::{parse, Headers, HANDSHAKE_MARK};
    use clap::Parser;
    use vsd::wire::{Ipv4Packet, MacAddr, PacketBuilder, TcpPacket};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn handshake_plan(mode: &str) -> Plan {
        let o = crate::Opts::try_parse_from([
            "vsd-gen",
            "--expect",
            mode,
            "--proto",
            "tcp",
            "--rport",
            "8080",
            "--handshake",
            "--flood-rate",
            "2M",
        ])
        .unwrap();
        crate::build_plan(&o, 1_000_000_000).unwrap().0
    }

    fn headers(f: &[u8]) -> Headers {
        match parse(f) {
            Rx::Data(h) => h,
            other => panic!("not data: {other:?}"),
        }
    }

    /// Sequence numbers, flags, payload mark; both checksums valid.
    fn tcp_of(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, u32, u32, u8, Vec<u8>) {
        let ipp = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ipp.verify_checksum());
        let t = TcpPacket::new_checked(ipp.payload()).unwrap();
        let (src, dst) = (ipp.src_addr(), ipp.dst_addr());
        assert!(t.verify_checksum_v4(src, dst), "TCP checksum");
        (
            src,
            dst,
            t.src_port(),
            t.dst_port(),
            t.seq_number(),
            t.ack_number(),
            t.flags().0,
            t.payload().to_vec(),
        )
    }

    fn marked() -> Vec<u8> {
        let mut p = vec![0u8; 6];
        p[4..].copy_from_slice(&HANDSHAKE_MARK.to_be_bytes());
        p
    }

    /// One legitimate connection through a (simulated) SYN proxy, every
    /// packet as vsd's synproxy sends it: the generator's answers carry
    /// the numbers the proxy checks, and the last leg counts as done.
    #[test]
    fn handshake_through_a_syn_proxy() {
        let plan = handshake_plan("nat");
        let hs = plan.handshake.as_ref().unwrap();
        assert_eq!(hs.flood_rate, FloodRate::Paced(2_000_000));
        let e = &plan.expect;
        let gen = e.gen_mac;
        let dut = e.dut_mac;
        let vip = ip("198.18.0.100");
        let rip = ip("198.18.0.11");
        let rmac = rs_mac(u32::from(rip));
        let (cip, cport) = plan.new_space.tuple(12345);
        let client = Ipv4Addr::from(cip);
        // 1. the client's SYN: ISN 0
        let mut syn = plan.fresh.bytes().to_vec();
        plan.fresh.patch(&mut syn, cip, cport, None);
        let (s, d, _, dp, seq, _, fl, _) = tcp_of(&syn);
        assert_eq!((s, d, dp, seq, fl), (client, vip, 80, 0, tcp::SYN));
        // 2. the proxy's cookie SYN-ACK → the client's ACK with marked data
        let cookie = 0xdead_beef_u32;
        let synack = PacketBuilder::ethernet(dut, gen)
            .ipv4(vip, client)
            .tcp(80, cport, tcp::SYN | tcp::ACK)
            .seq(cookie)
            .ack(1)
            .build();
        let h = headers(&synack);
        let dir = e.direction(&h);
        assert_eq!(dir, Direction::Reply);
        assert_eq!(hs.classify(e, &synack, &h, dir), HsClass::LegitSynAck);
        let mut ack = vec![0u8; hs.answer.bytes().len()];
        assert!(hs.answer(&synack, &h, &mut ack));
        assert_eq!(&ack[0..6], &dut.0);
        assert_eq!(&ack[6..12], &gen.0);
        let (s, d, sp, dp, seq, ackn, fl, payload) = tcp_of(&ack);
        assert_eq!((s, d, sp, dp), (client, vip, cport, 80));
        assert_eq!((seq, ackn), (1, cookie.wrapping_add(1)));
        assert_eq!(fl, tcp::ACK | tcp::PSH);
        assert_eq!(payload, marked());
        assert!(!hs.answer(&synack, &h, &mut [0u8; 10]));
        // 3. the proxy's SYN to the server (client ISN = ack's seq - 1) →
        //    the server's SYN-ACK acknowledges exactly that ISN, as vsd's
        //    accept_synack requires
        let mut to_rs = PacketBuilder::ethernet(dut, rmac)
            .ipv4(client, rip)
            .tcp(cport, 8080, tcp::SYN)
            .seq(seq.wrapping_sub(1))
            .build();
        let h = headers(&to_rs);
        let dir = e.direction(&h);
        assert_eq!(dir, Direction::Request);
        assert_eq!(hs.classify(e, &to_rs, &h, dir), HsClass::ServerSyn);
        assert!(packet::reflect_tcp(
            &mut to_rs,
            &h,
            rmac,
            dut,
            hs.server_isn
        ));
        let (s, d, sp, dp, seq, ackn, fl, _) = tcp_of(&to_rs);
        assert_eq!((s, d, sp, dp), (rip, client, 8080, cport));
        assert_eq!((seq, ackn, fl), (hs.server_isn, 1, tcp::SYN | tcp::ACK));
        // 4. the held data, now in the server's sequence space → the
        //    server's answer acknowledges it and carries the mark back
        let mut data = PacketBuilder::ethernet(dut, rmac)
            .ipv4(client, rip)
            .tcp(cport, 8080, tcp::ACK | tcp::PSH)
            .seq(1)
            .ack(hs.server_isn + 1)
            .payload(&marked())
            .build();
        let h = headers(&data);
        assert_eq!(
            hs.classify(e, &data, &h, Direction::Request),
            HsClass::MarkedRequest
        );
        assert!(packet::reflect_tcp(&mut data, &h, rmac, dut, hs.server_isn));
        let (s, d, _, _, seq, ackn, _, payload) = tcp_of(&data);
        assert_eq!((s, d, seq, ackn), (rip, client, hs.server_isn + 1, 7));
        assert_eq!(payload, marked());
        // 5. through the proxy back to the client: done
        let reply = |to: Ipv4Addr, port: u16, payload: &[u8], flags: u8| {
            PacketBuilder::ethernet(dut, gen)
                .ipv4(vip, to)
                .tcp(80, port, flags)
                .seq(cookie + 1)
                .ack(7)
                .payload(payload)
                .build()
        };
        let f = reply(client, cport, &marked(), tcp::ACK | tcp::PSH);
        let h = headers(&f);
        assert_eq!(hs.classify(e, &f, &h, Direction::Reply), HsClass::DoneNew);
        // the settle pass's connections are not counted
        let (sip, sport) = plan.new_space.tuple(settle_base(plan.new_space) + 3);
        let f = reply(Ipv4Addr::from(sip), sport, &marked(), tcp::ACK);
        let h = headers(&f);
        assert_eq!(
            hs.classify(e, &f, &h, Direction::Reply),
            HsClass::DoneSettle
        );
        let (lip, lport) = plan.new_space.tuple(settle_base(plan.new_space) - 1);
        let f = reply(Ipv4Addr::from(lip), lport, &marked(), tcp::ACK);
        let h = headers(&f);
        assert_eq!(hs.classify(e, &f, &h, Direction::Reply), HsClass::DoneNew);
        let (eip, eport) = plan.flows.tuple(7);
        let f = reply(Ipv4Addr::from(eip), eport, &marked(), tcp::ACK);
        let h = headers(&f);
        assert_eq!(hs.classify(e, &f, &h, Direction::Reply), HsClass::DoneEst);
        // steady established traffic, stamped or not, is plain data
        let f = reply(Ipv4Addr::from(eip), eport, &[0, 0, 1, 2, 0, 9], tcp::ACK);
        let h = headers(&f);
        assert_eq!(hs.classify(e, &f, &h, Direction::Reply), HsClass::Data);
    }

    #[test]
    fn handshake_classifies_what_is_not_ours() {
        let plan = handshake_plan("fullnat");
        let hs = plan.handshake.as_ref().unwrap();
        let e = &plan.expect;
        let (gen, dut) = (e.gen_mac, e.dut_mac);
        let vip = ip("198.18.0.100");
        let synack_to = |to: u32, port: u16, flags: u8| {
            PacketBuilder::ethernet(dut, gen)
                .ipv4(vip, Ipv4Addr::from(to))
                .tcp(80, port, flags)
                .seq(5)
                .ack(1)
                .build()
        };
        let class = |f: &[u8]| {
            let h = headers(f);
            hs.classify(e, f, &h, e.direction(&h))
        };
        let mut rng = 7u64;
        for _ in 0..100 {
            let (a, p) = hs.flood.tuple(xorshift(&mut rng));
            assert!(e.clients.index_of(a, p).is_none() && e.new_clients.index_of(a, p).is_none());
            let f = synack_to(a, p, tcp::SYN | tcp::ACK);
            assert_eq!(class(&f), HsClass::FloodSynAck);
        }
        let f = synack_to(u32::from(ip("10.1.2.3")), 5000, tcp::SYN | tcp::ACK);
        assert_eq!(class(&f), HsClass::OtherSynAck);
        let (a, p) = plan.flows.tuple(3);
        assert_eq!(class(&synack_to(a, p, tcp::RST | tcp::ACK)), HsClass::Rst);
        // at a real server (FULLNAT: from a local address)
        let rmac = rs_mac(u32::from(ip("198.18.0.12")));
        let at_rs = |flags: u8, payload: &[u8]| {
            PacketBuilder::ethernet(dut, rmac)
                .ipv4(ip("198.18.0.201"), ip("198.18.0.12"))
                .tcp(40000, 8080, flags)
                .payload(payload)
                .build()
        };
        // a bare ACK (the proxy's own, padded to 60 bytes on the wire)
        let mut bare = at_rs(tcp::ACK, &[]);
        bare.resize(60, 0);
        assert_eq!(class(&bare), HsClass::BareRequest);
        assert_eq!(class(&at_rs(tcp::ACK, &[0; 6])), HsClass::Data);
        assert_eq!(class(&at_rs(tcp::ACK, &marked())), HsClass::MarkedRequest);
        assert_eq!(class(&at_rs(tcp::SYN, &[])), HsClass::ServerSyn);
        assert_eq!(class(&at_rs(tcp::RST, &[])), HsClass::Rst);
        let _ = MacAddr::BROADCAST;
    }

    #[test]
    fn inflight_limit_closes_the_loop_and_gives_up_on_losses() {
        let (mut last_done, mut last_progress) = (0, 0);
        let mut room = |opened, done, given_up, now| {
            inflight_room(
                64,
                opened,
                done,
                given_up,
                &mut last_done,
                &mut last_progress,
                now,
                1000,
            )
        };
        assert_eq!(room(0, 0, 0, 0), (64, 0));
        assert_eq!(room(40, 0, 0, 10), (24, 0));
        assert_eq!(room(64, 0, 0, 20), (0, 0));
        // completions make room
        assert_eq!(room(64, 10, 0, 500), (10, 0));
        assert_eq!(room(74, 10, 0, 1400), (0, 0));
        // nothing for more than `patience` since the last completion: the
        // 64 outstanding are given up
        assert_eq!(room(74, 10, 0, 1501), (64, 64));
        assert_eq!(room(74, 10, 64, 1502), (64, 64));
        // a late completion of a given-up one does not underflow
        assert_eq!(room(74, 80, 64, 1503), (64, 64));
    }

    #[test]
    fn counters_sum() {
        let mut c = Counters {
            rx_request: 3,
            rx_reply: 4,
            ..Counters::default()
        };
        c.failures[Failure::Src.index()] = 2;
        c.failures[Failure::Payload.index()] = 1;
        assert_eq!(c.rx_data(), 7);
        assert_eq!(c.check_failures(), 3);
    }
}
