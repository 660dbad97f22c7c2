//! The neighbour table: next hop (IPv4 by ARP, IPv6 by neighbor discovery) -> MAC,
//! one per worker core. Both families share one table, keyed by `IpAddr`; the caller
//! sends an ARP request or a neighbor solicitation as the address asks.
//!
//! Pure and single-threaded: no DPDK, no I/O, no clock. The caller passes `now` (in
//! milliseconds, non-decreasing) and performs the actions the table returns: sending
//! packets, sending ARP requests, freeing dropped packets. It is generic over the pending
//! packet type `P` (mbufs in the data plane, plain values in tests), and every `P` handed
//! to the table comes back to the caller exactly once: sent, dropped with a reason, or
//! flushed. Nothing is dropped silently, so mbufs cannot leak.
//!
//! Memory is fixed at construction: entry slots, an open-addressing index (linear probing,
//! backward-shift deletion, load <= 1/2) and a pool of pending-packet nodes shared by all
//! entries. Per packet the table allocates nothing.
//!
//! States, as in Linux's neighbour code but simplified:
//! - **Incomplete**: a broadcast ARP request was sent; packets wait in a bounded queue.
//!   Requests repeat every `retry_ms`; after `max_retries` unanswered requests the entry
//!   fails: its packets are dropped (`Unresolved`) and the entry is removed.
//! - **Reachable**: MAC known and confirmed less than `reachable_ms` ago.
//! - **Stale**: MAC known but unconfirmed (aged out, or learned unsolicited). Packets are
//!   sent; the first one moves the entry to
//! - **Delay** (Linux's `delay_first_probe_time`): packets are sent to the known MAC and
//!   for `delay_probe_ms` the table waits for a confirmation (an ARP packet from the
//!   neighbour with the same MAC, or a reply) before probing; then it goes to
//! - **Probe**: packets are sent; probes repeat every `retry_ms`; a reply makes it
//!   Reachable, `max_retries` unanswered probes remove it. (With `delay_probe_ms = 0`
//!   a used Stale entry is probed at once: [`Resolve::SendAndProbe`].)
//!
//! Timers: Incomplete, Probe and Delay entries sit in one FIFO list per state, ordered by
//! deadline. Every deadline of a list is "armed at + the same interval" and `now` does
//! not go back, so appending keeps each list sorted and [`NeighTable::tick`] only looks
//! at the heads. The Incomplete list is also the eviction order (oldest request first).
//! A clock hand inspects a few slots per tick.
//!
//! # Keeping neighbours in use (why, and how it fails)
//!
//! Deleting a real server's entry after a quiet minute made the next burst of SYNs wait
//! in an 8-packet queue behind a broadcast request, and lose the rest. As Linux keeps a
//! STALE entry and moves it through DELAY/PROBE on use while still sending to the known
//! MAC, this table:
//! - *refreshes* an entry in use (sent through in the last `gc_stale_ms`) before it ages
//!   out: when its confirmation is older than `reachable_ms - max_retries x retry_ms`,
//!   the clock hand moves it to Probe (a unicast probe; packets keep going to the known
//!   MAC), so a live neighbour is confirmed again without ever going Stale;
//! - *keeps* idle entries whose MAC is known while the table has room (Linux collects
//!   stale entries only above `gc_thresh1`): the clock hand collects Stale entries unused
//!   for `gc_stale_ms` only when more than half of `max_entries` are in use, and a new
//!   neighbour may evict a Stale one when the table is full;
//! - removes an entry only when its probes go unanswered (`max_retries`).
//!
//! A neighbour whose MAC changed while it sat Stale gets packets at the old MAC until
//! the probe fails (at most `max_retries x retry_ms`), as in Linux.
//!
//! # The shared pending pool under spoofed sources
//!
//! Unresolved neighbours (for NAT replies: any on-link client address, which a spoofer
//! chooses) share one pool of `max_pending_total` packets. So that spoofed sources cannot
//! lock legitimate clients out:
//! - once half the pool is in use, an unresolved neighbour holds at most one packet (its
//!   first); further ones are dropped (`PendingShareLimit`), so a flood of new addresses
//!   gets one slot each instead of `max_pending_per_entry`;
//! - a new neighbour always gets its entry and its broadcast request, even when the pool
//!   is exhausted: its first packet is then dropped (`PendingPoolFull`,
//!   [`Resolve::DroppedAndRequest`]), the answer arrives within a round trip and the
//!   peer's retransmission goes straight out. Known neighbours (Reachable, Stale, Probe)
//!   never use the pool at all.
//!
//!
//! # The entry table under spoofed sources (Linux's neighbour GC)
//!
//! Each spoofed on-link address also takes an entry while its request goes unanswered.
//! So that Incomplete entries cannot fill the table and lock a legitimate neighbour out,
//! as Linux's forced GC collects INCOMPLETE/FAILED entries before useful ones:
//! - at most half of `max_entries` may be Incomplete; a new neighbour beyond that evicts
//!   the oldest Incomplete entry (`incomplete_limited`), so resolved neighbours always
//!   have half the table;
//! - a new neighbour finding the table full evicts an idle known entry (Stale, or
//!   Reachable aged out; `evicted`), else the oldest Incomplete one
//!   (`evicted_incomplete`), and is refused (`TableFull`) only when every entry is
//!   resolved and in use (Reachable, Delay, Probe): those are never evicted;
//! - an ARP reply from an address the table no longer holds (its entry was evicted while
//!   waiting) may evict the oldest Incomplete entry: a neighbour that answers is worth
//!   more than one that does not.
//!
//! An evicted entry's queued packets cannot be handed back from `resolve` (which returns
//! the new packet's outcome), so they move, still occupying their pool nodes, to an
//! evicted list that the next [`NeighTable::tick`] (or [`NeighTable::flush`]) hands back
//! as `Drop(_, Evicted)`. Failure mode: under a flood of new addresses faster than one
//! per round trip per half-table, a new neighbour's entry may be evicted before its
//! reply arrives; the reply then still creates its entry (above), so the neighbour's
//! next packet goes out.

use std::net::{IpAddr, Ipv4Addr};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// Table sizing and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighParams {
    /// Entries the table holds (fixed capacity).
    pub max_entries: u32,
    /// Packets queued per unresolved neighbour.
    pub max_pending_per_entry: u32,
    /// Packets queued over all unresolved neighbours.
    pub max_pending_total: u32,
    /// Interval between ARP requests (and probes) for one neighbour.
    pub retry_ms: u64,
    /// Unanswered requests (or probes) after which resolution fails.
    pub max_retries: u32,
    /// How long a confirmed MAC is trusted before it goes Stale (entries in use are
    /// probed before then).
    pub reachable_ms: u64,
    /// Stale entries unused for this long are removed when the table is more than half
    /// full; entries used within it count as in use.
    pub gc_stale_ms: u64,
    /// How long a Stale entry that is used again waits in Delay for a confirmation
    /// before it is probed (Linux's `delay_first_probe_time`); 0 probes at once.
    pub delay_probe_ms: u64,
}

impl Default for NeighParams {
    fn default() -> Self {
        NeighParams {
            max_entries: 4096,
            max_pending_per_entry: 8,
            max_pending_total: 1024,
            retry_ms: 1000,
            max_retries: 3,
            reachable_ms: 300_000,
            gc_stale_ms: 60_000,
            delay_probe_ms: 5_000,
        }
    }
}

/// Why the table handed a packet back instead of sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The neighbour's own queue is at `max_pending_per_entry`.
    QueueFull,
    /// All `max_pending_total` pending slots are in use.
    PendingPoolFull,
    /// Half the pool is in use and this neighbour already has a packet queued.
    PendingShareLimit,
    /// No free entry and nothing evictable.
    TableFull,
    /// Resolution failed after `max_retries` requests.
    Unresolved,
    /// The entry was removed or the table flushed.
    Flushed,
    /// The (Incomplete) entry was evicted to make room for another neighbour.
    Evicted,
}

impl DropReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = 7;
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::QueueFull,
        DropReason::PendingPoolFull,
        DropReason::PendingShareLimit,
        DropReason::TableFull,
        DropReason::Unresolved,
        DropReason::Flushed,
        DropReason::Evicted,
    ];
    /// Index into [`NeighCounters::dropped`].
    pub fn index(self) -> usize {
        match self {
            DropReason::QueueFull => 0,
            DropReason::PendingPoolFull => 1,
            DropReason::PendingShareLimit => 2,
            DropReason::TableFull => 3,
            DropReason::Unresolved => 4,
            DropReason::Flushed => 5,
            DropReason::Evicted => 6,
        }
    }
    /// Short name for counters listings.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "neigh_queue_full",
            DropReason::PendingPoolFull => "neigh_pending_pool_full",
            DropReason::PendingShareLimit => "neigh_pending_share_limit",
            DropReason::TableFull => "neigh_table_full",
            DropReason::Unresolved => "neigh_unresolved",
            DropReason::Flushed => "neigh_flushed",
            DropReason::Evicted => "neigh_evicted",
        }
    }
}

/// What to do with a packet given to [`NeighTable::resolve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve<P> {
    /// Send it to this MAC.
    Send(Mac, P),
    /// Send it to this MAC, and send an ARP probe for the address (unicast to this MAC):
    /// the entry was Stale and `delay_probe_ms` is 0.
    SendAndProbe(Mac, P),
    /// Queued until the neighbour answers; a request is already outstanding.
    Queued,
    /// Queued, and the caller must broadcast an ARP request for the address now.
    QueuedAndRequest,
    /// Not queued: handed back for the caller to free and count.
    Dropped(P, DropReason),
    /// A new neighbour while the pending pool is exhausted: the entry exists and the
    /// caller must broadcast an ARP request for the address now, but the packet is
    /// handed back for the caller to free and count.
    DroppedAndRequest(P, DropReason),
}

/// Work [`NeighTable::tick`] asks the caller to do.
#[derive(Debug, PartialEq, Eq)]
pub enum NeighAction<P> {
    /// Send an ARP request for `ip`: broadcast when `unicast` is `None`, else a probe to
    /// that MAC.
    Request {
        /// Address to resolve.
        ip: IpAddr,
        /// Destination MAC of a probe.
        unicast: Option<Mac>,
    },
    /// A queued packet that will not be sent.
    Drop(P, DropReason),
}

/// What [`NeighTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// An Incomplete entry was resolved; its queued packets went to the callback.
    Resolved {
        /// Packets handed to the callback.
        drained: u32,
    },
    /// A known entry was confirmed Reachable (MAC unchanged).
    Confirmed,
    /// A known entry's MAC changed.
    MacChanged,
    /// Nothing changed (unsolicited, same MAC).
    Unchanged,
    /// A new Stale entry was created.
    Created,
    /// Unknown address and no free slot: not learned.
    IgnoredTableFull,
}

/// State of an entry, as listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// Request sent, waiting for the reply.
    Incomplete,
    /// MAC confirmed recently.
    Reachable,
    /// MAC known, not confirmed recently.
    Stale,
    /// MAC in use after Stale, waiting `delay_probe_ms` for a confirmation.
    Delay,
    /// MAC in use, probe outstanding.
    Probe,
}

impl NeighState {
    /// Name as `ip neigh` prints it.
    pub fn name(self) -> &'static str {
        match self {
            NeighState::Incomplete => "INCOMPLETE",
            NeighState::Reachable => "REACHABLE",
            NeighState::Stale => "STALE",
            NeighState::Delay => "DELAY",
            NeighState::Probe => "PROBE",
        }
    }
}

/// One entry, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighInfo {
    /// Neighbour address.
    pub ip: IpAddr,
    /// Its MAC, once known.
    pub mac: Option<Mac>,
    /// Current state.
    pub state: NeighState,
    /// Packets waiting for resolution.
    pub pending: u32,
    /// Milliseconds since the MAC was last confirmed (None while Incomplete).
    pub confirmed_ago_ms: Option<u64>,
}

/// Event and drop counters; written only by the owning worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeighCounters {
    /// Broadcast ARP requests asked for (first requests and retries).
    pub requests_sent: u64,
    /// Unicast probes asked for.
    pub probes_sent: u64,
    /// Solicited replies that resolved or confirmed an entry.
    pub replies_learned: u64,
    /// Unsolicited learns (requests, gratuitous ARP) that created or changed an entry.
    pub unsolicited_learned: u64,
    /// Learns that changed a known MAC.
    pub mac_changes: u64,
    /// Entries that failed resolution (Incomplete or Probe) and were removed.
    pub failed: u64,
    /// Stale entries evicted to make room.
    pub evicted: u64,
    /// Incomplete entries evicted because the table was full.
    pub evicted_incomplete: u64,
    /// Incomplete entries evicted because half the table was Incomplete.
    pub incomplete_limited: u64,
    /// Stale entries used again (moved to Delay).
    pub delays: u64,
    /// Delay entries confirmed by ARP from the neighbour before a probe was needed.
    pub delay_confirmed: u64,
    /// Idle Stale entries removed by the clock hand.
    pub collected: u64,
    /// Unsolicited learns ignored because the table was full.
    pub learn_ignored_full: u64,
    /// Probes started by the clock hand for entries in use before they went Stale
    /// (included in `probes_sent`).
    pub refreshes: u64,
    /// Requests sent for a new neighbour whose first packet found the pool exhausted.
    pub requests_without_queue: u64,
    /// Packets handed back, by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
}

impl NeighCounters {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// What happened since `earlier` (a previous copy of these counters).
    pub fn since(&self, earlier: &NeighCounters) -> NeighCounters {
        let d = |a: u64, b: u64| a.wrapping_sub(b);
        let mut dropped = [0; DropReason::COUNT];
        for (i, v) in dropped.iter_mut().enumerate() {
            *v = d(self.dropped[i], earlier.dropped[i]);
        }
        NeighCounters {
            requests_sent: d(self.requests_sent, earlier.requests_sent),
            probes_sent: d(self.probes_sent, earlier.probes_sent),
            replies_learned: d(self.replies_learned, earlier.replies_learned),
            unsolicited_learned: d(self.unsolicited_learned, earlier.unsolicited_learned),
            mac_changes: d(self.mac_changes, earlier.mac_changes),
            failed: d(self.failed, earlier.failed),
            evicted: d(self.evicted, earlier.evicted),
            evicted_incomplete: d(self.evicted_incomplete, earlier.evicted_incomplete),
            incomplete_limited: d(self.incomplete_limited, earlier.incomplete_limited),
            delays: d(self.delays, earlier.delays),
            delay_confirmed: d(self.delay_confirmed, earlier.delay_confirmed),
            collected: d(self.collected, earlier.collected),
            learn_ignored_full: d(self.learn_ignored_full, earlier.learn_ignored_full),
            refreshes: d(self.refreshes, earlier.refreshes),
            requests_without_queue: d(self.requests_without_queue, earlier.requests_without_queue),
            dropped,
        }
    }
}

/// Timer expirations [`NeighTable::tick`] handles per call at most.
pub const TICK_TIMER_BUDGET: usize = 64;
/// Slots the clock hand inspects per tick (and an eviction attempt at most).
pub const GC_SCAN_PER_TICK: usize = 16;
/// Refresh probes the clock hand starts per tick at most (the caller sends each).
pub const REFRESH_PER_TICK: usize = 2;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
}

/// Timer lists, one per timed state (each sorted by deadline, see the module doc).
const LIST_INCOMPLETE: usize = 0;
const LIST_PROBE: usize = 1;
const LIST_DELAY: usize = 2;

impl Slot {
    /// The timer list an entry in this state sits on.
    fn list(self) -> Option<usize> {
        match self {
            Slot::Incomplete => Some(LIST_INCOMPLETE),
            Slot::Probe => Some(LIST_PROBE),
            Slot::Delay => Some(LIST_DELAY),
            Slot::Free | Slot::Reachable | Slot::Stale => None,
        }
    }
}

/// A doubly linked list of entry slots (through `t_prev`/`t_next`).
#[derive(Debug, Clone, Copy)]
struct TimerList {
    head: u32,
    tail: u32,
    len: u32,
}

const EMPTY_LIST: TimerList = TimerList {
    head: NIL,
    tail: NIL,
    len: 0,
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    mac: Mac,
    slot: Slot,
    /// Requests or probes sent in the current resolution.
    attempts: u32,
    /// Next retry (Incomplete, Probe) or the end of Delay.
    deadline: u64,
    /// Last confirmation (Reachable) or MAC learn.
    confirmed: u64,
    /// Last packet sent through this entry.
    last_used: u64,
    /// Pending queue: first and last node in the pool, length.
    q_head: u32,
    q_tail: u32,
    q_len: u32,
    /// Timer list links (Incomplete, Probe, Delay only).
    t_prev: u32,
    t_next: u32,
}

const FREE_ENTRY: Entry = Entry {
    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    mac: [0; 6],
    slot: Slot::Free,
    attempts: 0,
    deadline: 0,
    confirmed: 0,
    last_used: 0,
    q_head: NIL,
    q_tail: NIL,
    q_len: 0,
    t_prev: NIL,
    t_next: NIL,
};

/// The neighbour table. See the module documentation.
pub struct NeighTable<P> {
    params: NeighParams,
    entries: Vec<Entry>,
    free_slots: Vec<u32>,
    /// Open addressing: entry slot or NIL; size a power of two >= 2 x capacity.
    index: Vec<u32>,
    index_bits: u32,
    /// Pending packets and their queue links; free nodes are chained through `pkt_next`.
    pkts: Vec<Option<P>>,
    pkt_next: Vec<u32>,
    pkt_free: u32,
    pending: u32,
    /// Pending nodes of evicted entries, handed back by the next tick.
    evicted_head: u32,
    evicted_tail: u32,
    lists: [TimerList; 3],
    gc_hand: u32,
    len: u32,
    counters: NeighCounters,
    /// `counters` as of the last [`NeighTable::counts_since_last_report`].
    reported: NeighCounters,
}

impl<P> NeighTable<P> {
    /// Builds a table with all memory allocated up front. Zero sizes and intervals are
    /// raised to 1, and the per-entry limit is capped at the total.
    pub fn new(params: NeighParams) -> Self {
        let mut p = params;
        p.max_entries = p.max_entries.clamp(1, 1 << 24);
        p.max_pending_total = p.max_pending_total.clamp(1, 1 << 24);
        p.max_pending_per_entry = p.max_pending_per_entry.clamp(1, p.max_pending_total);
        p.max_retries = p.max_retries.max(1);
        p.retry_ms = p.retry_ms.max(1);
        let capacity = p.max_entries as usize;
        let index_len = (capacity * 2).next_power_of_two().max(2);
        let pool = p.max_pending_total as usize;
        let mut pkts = Vec::with_capacity(pool);
        pkts.resize_with(pool, || None);
        // Node i links to i + 1; the last one ends the free chain.
        let pkt_next = (1..=pool as u32)
            .map(|n| if n as usize == pool { NIL } else { n })
            .collect();
        NeighTable {
            params: p,
            entries: vec![FREE_ENTRY; capacity],
            // Popped from the back: slot 0 is used first.
            free_slots: (0..capacity as u32).rev().collect(),
            index: vec![NIL; index_len],
            index_bits: index_len.trailing_zeros(),
            pkts,
            pkt_next,
            pkt_free: 0,
            pending: 0,
            evicted_head: NIL,
            evicted_tail: NIL,
            lists: [EMPTY_LIST; 3],
            gc_hand: 0,
            len: 0,
            counters: NeighCounters::default(),
            reported: NeighCounters::default(),
        }
    }

    /// The parameters in effect (after the adjustments of [`NeighTable::new`]).
    pub fn params(&self) -> &NeighParams {
        &self.params
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packets queued over all entries.
    pub fn pending(&self) -> usize {
        self.pending as usize
    }

    /// Counters so far.
    pub fn counters(&self) -> &NeighCounters {
        &self.counters
    }

    /// What the counters gained since the previous call (for the worker's counters).
    pub fn counts_since_last_report(&mut self) -> NeighCounters {
        let d = self.counters.since(&self.reported);
        self.reported = self.counters;
        d
    }

    /// Where to send a packet for next hop `ip`. See [`Resolve`].
    pub fn resolve(&mut self, ip: IpAddr, pkt: P, now: u64) -> Resolve<P> {
        let key = ip;
        let Some(slot) = self.find(key) else {
            return self.resolve_miss(key, pkt, now);
        };
        let reachable_ms = self.params.reachable_ms;
        let e = &mut self.entries[slot as usize];
        match e.slot {
            Slot::Reachable if now.saturating_sub(e.confirmed) < reachable_ms => {
                e.last_used = now;
                Resolve::Send(e.mac, pkt)
            }
            Slot::Reachable | Slot::Stale if self.params.delay_probe_ms > 0 => {
                // Linux's STALE -> DELAY: send now, probe only if nothing confirms it.
                e.last_used = now;
                e.slot = Slot::Delay;
                e.attempts = 0;
                e.deadline = now.saturating_add(self.params.delay_probe_ms);
                let mac = e.mac;
                self.timer_push(slot);
                self.counters.delays += 1;
                Resolve::Send(mac, pkt)
            }
            Slot::Reachable | Slot::Stale => {
                e.last_used = now;
                e.slot = Slot::Probe;
                e.attempts = 1;
                e.deadline = now.saturating_add(self.params.retry_ms);
                let mac = e.mac;
                self.timer_push(slot);
                self.counters.probes_sent += 1;
                Resolve::SendAndProbe(mac, pkt)
            }
            Slot::Probe | Slot::Delay => {
                e.last_used = now;
                Resolve::Send(e.mac, pkt)
            }
            Slot::Incomplete | Slot::Free => match self.enqueue(slot, pkt) {
                Ok(()) => Resolve::Queued,
                Err((pkt, reason)) => self.dropped(pkt, reason),
            },
        }
    }

    fn resolve_miss(&mut self, key: IpAddr, pkt: P, now: u64) -> Resolve<P> {
        // At most half the table unresolved: the oldest unresolved entry makes room.
        if self.lists[LIST_INCOMPLETE].len >= self.max_incomplete() {
            let oldest = self.lists[LIST_INCOMPLETE].head;
            self.counters.incomplete_limited += 1;
            self.evict_incomplete(oldest);
        }
        let slot = match self.alloc(key, now) {
            Some(slot) => slot,
            None => return self.dropped(pkt, DropReason::TableFull),
        };
        let e = &mut self.entries[slot as usize];
        e.slot = Slot::Incomplete;
        e.attempts = 1;
        e.deadline = now.saturating_add(self.params.retry_ms);
        self.timer_push(slot);
        self.counters.requests_sent += 1;
        // Pool exhausted (by others): resolve anyway, so this neighbour's next packet
        // goes straight out; this one is dropped.
        if self.pkt_free == NIL {
            self.counters.requests_without_queue += 1;
            self.counters.dropped[DropReason::PendingPoolFull.index()] += 1;
            return Resolve::DroppedAndRequest(pkt, DropReason::PendingPoolFull);
        }
        match self.enqueue(slot, pkt) {
            Ok(()) => Resolve::QueuedAndRequest,
            // Unreachable: a pool node was checked free above and the per-entry limit is >= 1.
            Err((pkt, reason)) => {
                self.remove_slot(slot);
                self.dropped(pkt, reason)
            }
        }
    }

    fn dropped(&mut self, pkt: P, reason: DropReason) -> Resolve<P> {
        self.counters.dropped[reason.index()] += 1;
        Resolve::Dropped(pkt, reason)
    }

    /// Takes in an ARP packet from `ip` with sender `mac`. `solicited` is true for a reply
    /// to our request (confirms reachability); false for requests and gratuitous ARP.
    /// Packets that were waiting for this neighbour go to `send` in arrival order.
    pub fn learn(
        &mut self,
        ip: IpAddr,
        mac: Mac,
        now: u64,
        solicited: bool,
        mut send: impl FnMut(Mac, P),
    ) -> Learned {
        let key = ip;
        let Some(slot) = self.find(key) else {
            // Never evict a useful entry for an address nobody asked about; a reply (to a
            // request whose entry was evicted) may take an unresolved one's place.
            let free = match self.alloc_free(key) {
                Some(slot) => Some(slot),
                None if solicited && self.lists[LIST_INCOMPLETE].len > 0 => {
                    let oldest = self.lists[LIST_INCOMPLETE].head;
                    self.counters.evicted_incomplete += 1;
                    self.evict_incomplete(oldest);
                    self.alloc_free(key)
                }
                None => None,
            };
            let Some(slot) = free else {
                self.counters.learn_ignored_full += 1;
                return Learned::IgnoredTableFull;
            };
            let e = &mut self.entries[slot as usize];
            e.slot = Slot::Stale;
            e.mac = mac;
            e.confirmed = now;
            e.last_used = now;
            self.counters.unsolicited_learned += 1;
            return Learned::Created;
        };
        let e = self.entries[slot as usize];
        if e.slot == Slot::Incomplete {
            self.timer_unlink(slot);
            let e = &mut self.entries[slot as usize];
            e.mac = mac;
            e.slot = if solicited {
                Slot::Reachable
            } else {
                Slot::Stale
            };
            e.confirmed = now;
            e.last_used = now;
            e.attempts = 0;
            if solicited {
                self.counters.replies_learned += 1;
            } else {
                self.counters.unsolicited_learned += 1;
            }
            let drained = self.drain(slot, |p| send(mac, p));
            return Learned::Resolved { drained };
        }
        let changed = e.mac != mac;
        if changed {
            self.counters.mac_changes += 1;
        }
        if !solicited && !changed {
            if e.slot != Slot::Delay {
                return Learned::Unchanged;
            }
            // The neighbour spoke (same MAC) while we waited to probe it: confirmed,
            // as Linux confirms a DELAY entry without probing.
            self.timer_unlink(slot);
            let e = &mut self.entries[slot as usize];
            e.slot = Slot::Reachable;
            e.attempts = 0;
            e.confirmed = now;
            self.counters.delay_confirmed += 1;
            return Learned::Confirmed;
        }
        self.timer_unlink(slot);
        let e = &mut self.entries[slot as usize];
        e.mac = mac;
        e.attempts = 0;
        e.confirmed = now;
        if solicited {
            e.slot = Slot::Reachable;
            self.counters.replies_learned += 1;
        } else {
            // Someone claims a new MAC: use it, but have it confirmed by a probe.
            e.slot = Slot::Stale;
            self.counters.unsolicited_learned += 1;
        }
        if changed {
            Learned::MacChanged
        } else {
            Learned::Confirmed
        }
    }

    /// Hands back the packets of entries evicted since the last call (`Drop(_, Evicted)`),
    /// then runs due timers (at most [`TICK_TIMER_BUDGET`]): repeats requests and probes,
    /// probes Delay entries nothing confirmed, fails entries whose retries are exhausted
    /// (their packets come back as `Drop(_, Unresolved)`), and lets the clock hand collect
    /// idle Stale entries. Returns the number of timers handled.
    pub fn tick(&mut self, now: u64, mut on_action: impl FnMut(NeighAction<P>)) -> usize {
        // Packets of entries evicted since the last tick.
        let mut node = self.evicted_head;
        while node != NIL {
            let next = self.pkt_next[node as usize];
            if let Some(p) = self.pkts[node as usize].take() {
                self.counters.dropped[DropReason::Evicted.index()] += 1;
                on_action(NeighAction::Drop(p, DropReason::Evicted));
            }
            self.free_node(node);
            node = next;
        }
        self.evicted_head = NIL;
        self.evicted_tail = NIL;
        let mut handled = 0;
        while handled < TICK_TIMER_BUDGET {
            let Some(slot) = [LIST_INCOMPLETE, LIST_PROBE, LIST_DELAY]
                .into_iter()
                .map(|l| self.lists[l].head)
                .find(|&h| h != NIL && self.entries[h as usize].deadline <= now)
            else {
                break;
            };
            let e = self.entries[slot as usize];
            handled += 1;
            self.timer_unlink(slot);
            if e.slot == Slot::Delay {
                // Not confirmed in time: probe, still sending to the known MAC.
                let entry = &mut self.entries[slot as usize];
                entry.slot = Slot::Probe;
                entry.attempts = 1;
                entry.deadline = now.saturating_add(self.params.retry_ms);
                self.timer_push(slot);
                self.counters.probes_sent += 1;
                on_action(NeighAction::Request {
                    ip: e.ip,
                    unicast: Some(e.mac),
                });
            } else if e.attempts < self.params.max_retries {
                let unicast = (e.slot == Slot::Probe).then_some(e.mac);
                let entry = &mut self.entries[slot as usize];
                entry.attempts += 1;
                entry.deadline = now.saturating_add(self.params.retry_ms);
                self.timer_push(slot);
                if unicast.is_some() {
                    self.counters.probes_sent += 1;
                } else {
                    self.counters.requests_sent += 1;
                }
                on_action(NeighAction::Request { ip: e.ip, unicast });
            } else {
                self.counters.failed += 1;
                let dropped = self.drain(slot, |p| {
                    on_action(NeighAction::Drop(p, DropReason::Unresolved))
                });
                self.counters.dropped[DropReason::Unresolved.index()] += u64::from(dropped);
                self.remove_slot(slot);
            }
        }
        let mut refreshed = 0;
        for _ in 0..GC_SCAN_PER_TICK.min(self.entries.len()) {
            let slot = self.advance_hand();
            // Linux's gc_thresh1: idle entries are collected only from a crowded table.
            let crowded = self.len > self.params.max_entries / 2;
            if crowded && self.idle(slot, now) {
                self.counters.collected += 1;
                self.remove_slot(slot);
            } else if refreshed < REFRESH_PER_TICK && self.wants_refresh(slot, now) {
                refreshed += 1;
                let e = &mut self.entries[slot as usize];
                e.slot = Slot::Probe;
                e.attempts = 1;
                e.deadline = now.saturating_add(self.params.retry_ms);
                let (ip, mac) = (e.ip, e.mac);
                self.timer_push(slot);
                self.counters.probes_sent += 1;
                self.counters.refreshes += 1;
                on_action(NeighAction::Request {
                    ip,
                    unicast: Some(mac),
                });
            }
        }
        handled
    }

    /// A Reachable entry used in the last `gc_stale_ms` whose confirmation is about to
    /// age out (within `max_retries x retry_ms` of `reachable_ms`): probe it now, so it
    /// is confirmed again before it would go Stale.
    fn wants_refresh(&self, slot: u32, now: u64) -> bool {
        let e = &self.entries[slot as usize];
        let p = &self.params;
        let lead = p.retry_ms.saturating_mul(u64::from(p.max_retries));
        e.slot == Slot::Reachable
            && now.saturating_sub(e.last_used) < p.gc_stale_ms
            && now.saturating_sub(e.confirmed) >= p.reachable_ms.saturating_sub(lead)
    }

    /// The MAC for `ip` if one is known (Reachable, Stale or Probe); changes nothing.
    pub fn lookup(&self, ip: IpAddr) -> Option<Mac> {
        let slot = self.find(ip)?;
        let e = &self.entries[slot as usize];
        (e.slot != Slot::Incomplete).then_some(e.mac)
    }

    /// State of the entry for `ip` at time `now`.
    pub fn state(&self, ip: IpAddr, now: u64) -> Option<NeighState> {
        let slot = self.find(ip)?;
        Some(self.info(&self.entries[slot as usize], now).state)
    }

    /// Every entry, in slot order, as of `now`.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = NeighInfo> + '_ {
        self.entries
            .iter()
            .filter(|e| e.slot != Slot::Free)
            .map(move |e| self.info(e, now))
    }

    fn info(&self, e: &Entry, now: u64) -> NeighInfo {
        let state = match e.slot {
            Slot::Incomplete | Slot::Free => NeighState::Incomplete,
            Slot::Reachable if now.saturating_sub(e.confirmed) < self.params.reachable_ms => {
                NeighState::Reachable
            }
            Slot::Reachable | Slot::Stale => NeighState::Stale,
            Slot::Delay => NeighState::Delay,
            Slot::Probe => NeighState::Probe,
        };
        let known = state != NeighState::Incomplete;
        NeighInfo {
            ip: e.ip,
            mac: known.then_some(e.mac),
            state,
            pending: e.q_len,
            confirmed_ago_ms: known.then(|| now.saturating_sub(e.confirmed)),
        }
    }

    /// Removes the entry for `ip`; its queued packets go to `on_drop` (reason `Flushed`).
    /// Returns whether there was one.
    pub fn remove(&mut self, ip: IpAddr, mut on_drop: impl FnMut(P, DropReason)) -> bool {
        let Some(slot) = self.find(ip) else {
            return false;
        };
        let n = self.drain(slot, |p| on_drop(p, DropReason::Flushed));
        self.counters.dropped[DropReason::Flushed.index()] += u64::from(n);
        self.remove_slot(slot);
        true
    }

    /// Removes every entry; queued packets go to `on_drop` (reason `Flushed`; those of
    /// entries evicted since the last tick `Evicted`). Use before the packets' memory pool
    /// goes away.
    pub fn flush(&mut self, mut on_drop: impl FnMut(P, DropReason)) {
        let mut node = self.evicted_head;
        while node != NIL {
            let next = self.pkt_next[node as usize];
            if let Some(p) = self.pkts[node as usize].take() {
                self.counters.dropped[DropReason::Evicted.index()] += 1;
                on_drop(p, DropReason::Evicted);
            }
            self.free_node(node);
            node = next;
        }
        self.evicted_head = NIL;
        self.evicted_tail = NIL;
        for slot in 0..self.entries.len() as u32 {
            if self.entries[slot as usize].slot != Slot::Free {
                let n = self.drain(slot, |p| on_drop(p, DropReason::Flushed));
                self.counters.dropped[DropReason::Flushed.index()] += u64::from(n);
                self.remove_slot(slot);
            }
        }
    }

    // ---- entries ----

    /// A free slot, or an evicted Stale one, or the oldest Incomplete one; indexed
    /// under `key`. Entries in use (Reachable, Delay, Probe) are never evicted.
    fn alloc(&mut self, key: IpAddr, now: u64) -> Option<u32> {
        if let Some(slot) = self.alloc_free(key) {
            return Some(slot);
        }
        for _ in 0..GC_SCAN_PER_TICK.min(self.entries.len()) {
            let slot = self.advance_hand();
            if self.evictable(slot, now) {
                self.counters.evicted += 1;
                self.remove_slot(slot);
                return self.alloc_free(key);
            }
        }
        let oldest = self.lists[LIST_INCOMPLETE].head;
        if oldest == NIL {
            return None;
        }
        self.counters.evicted_incomplete += 1;
        self.evict_incomplete(oldest);
        self.alloc_free(key)
    }

    /// Incomplete entries allowed at once: half the table (at least one).
    fn max_incomplete(&self) -> u32 {
        (self.params.max_entries / 2).max(1)
    }

    /// Removes an Incomplete entry; its queued packets move to the evicted list (the
    /// next tick hands them back).
    fn evict_incomplete(&mut self, slot: u32) {
        let e = self.entries[slot as usize];
        debug_assert!(e.slot == Slot::Incomplete);
        if e.q_head != NIL {
            if self.evicted_tail == NIL {
                self.evicted_head = e.q_head;
            } else {
                self.pkt_next[self.evicted_tail as usize] = e.q_head;
            }
            self.evicted_tail = e.q_tail;
            let q = &mut self.entries[slot as usize];
            q.q_head = NIL;
            q.q_tail = NIL;
            q.q_len = 0;
        }
        self.remove_slot(slot);
    }

    fn alloc_free(&mut self, key: IpAddr) -> Option<u32> {
        let slot = self.free_slots.pop()?;
        self.entries[slot as usize] = Entry {
            ip: key,
            ..FREE_ENTRY
        };
        self.index_insert(key, slot);
        self.len += 1;
        Some(slot)
    }

    fn advance_hand(&mut self) -> u32 {
        let slot = self.gc_hand;
        self.gc_hand = if slot as usize + 1 >= self.entries.len() {
            0
        } else {
            slot + 1
        };
        slot
    }

    /// Holds a MAC nobody has confirmed for `reachable_ms` and no timer runs for it.
    fn evictable(&self, slot: u32, now: u64) -> bool {
        let e = &self.entries[slot as usize];
        match e.slot {
            Slot::Stale => true,
            Slot::Reachable => now.saturating_sub(e.confirmed) >= self.params.reachable_ms,
            _ => false,
        }
    }

    /// Evictable and unused for `gc_stale_ms`.
    fn idle(&self, slot: u32, now: u64) -> bool {
        self.evictable(slot, now)
            && now.saturating_sub(self.entries[slot as usize].last_used) >= self.params.gc_stale_ms
    }

    /// Frees a slot whose queue is empty.
    fn remove_slot(&mut self, slot: u32) {
        let e = self.entries[slot as usize];
        debug_assert!(e.slot != Slot::Free && e.q_len == 0);
        self.timer_unlink(slot);
        self.index_remove(e.ip);
        self.entries[slot as usize] = FREE_ENTRY;
        self.free_slots.push(slot);
        self.len -= 1;
    }

    // ---- pending queues ----

    fn enqueue(&mut self, slot: u32, pkt: P) -> Result<(), (P, DropReason)> {
        let e = self.entries[slot as usize];
        if e.q_len >= self.params.max_pending_per_entry {
            return Err((pkt, DropReason::QueueFull));
        }
        // Under pressure every unresolved neighbour keeps only its first packet.
        // (Only when others hold packets too: one neighbour alone is no flood.)
        if e.q_len > 0
            && self.pending >= self.params.max_pending_total / 2
            && self.pending > e.q_len
        {
            return Err((pkt, DropReason::PendingShareLimit));
        }
        let node = self.pkt_free;
        if node == NIL {
            return Err((pkt, DropReason::PendingPoolFull));
        }
        self.pkt_free = self.pkt_next[node as usize];
        self.pkts[node as usize] = Some(pkt);
        self.pkt_next[node as usize] = NIL;
        if e.q_tail == NIL {
            self.entries[slot as usize].q_head = node;
        } else {
            self.pkt_next[e.q_tail as usize] = node;
        }
        let e = &mut self.entries[slot as usize];
        e.q_tail = node;
        e.q_len += 1;
        self.pending += 1;
        Ok(())
    }

    /// Hands every queued packet of `slot` to `f` in arrival order; returns how many.
    fn drain(&mut self, slot: u32, mut f: impl FnMut(P)) -> u32 {
        let mut node = self.entries[slot as usize].q_head;
        let mut n = 0;
        while node != NIL {
            let next = self.pkt_next[node as usize];
            if let Some(p) = self.pkts[node as usize].take() {
                f(p);
                n += 1;
            }
            self.free_node(node);
            node = next;
        }
        let e = &mut self.entries[slot as usize];
        e.q_head = NIL;
        e.q_tail = NIL;
        e.q_len = 0;
        n
    }

    /// Returns a (taken) pending node to the free chain.
    fn free_node(&mut self, node: u32) {
        self.pkt_next[node as usize] = self.pkt_free;
        self.pkt_free = node;
        self.pending -= 1;
    }

    // ---- timer lists ----

    /// Appends `slot` to the list of its (timed) state.
    fn timer_push(&mut self, slot: u32) {
        let Some(l) = self.entries[slot as usize].slot.list() else {
            return;
        };
        let tail = self.lists[l].tail;
        let e = &mut self.entries[slot as usize];
        e.t_prev = tail;
        e.t_next = NIL;
        if tail == NIL {
            self.lists[l].head = slot;
        } else {
            self.entries[tail as usize].t_next = slot;
        }
        self.lists[l].tail = slot;
        self.lists[l].len += 1;
    }

    /// Unlinks `slot` from the list of its state; does nothing when it is not linked.
    /// (Call before changing the state.)
    fn timer_unlink(&mut self, slot: u32) {
        let Entry {
            t_prev,
            t_next,
            slot: state,
            ..
        } = self.entries[slot as usize];
        let Some(l) = state.list() else {
            return;
        };
        if t_prev == NIL && self.lists[l].head != slot {
            return;
        }
        if t_prev == NIL {
            self.lists[l].head = t_next;
        } else {
            self.entries[t_prev as usize].t_next = t_next;
        }
        if t_next == NIL {
            self.lists[l].tail = t_prev;
        } else {
            self.entries[t_next as usize].t_prev = t_prev;
        }
        self.lists[l].len -= 1;
        let e = &mut self.entries[slot as usize];
        e.t_prev = NIL;
        e.t_next = NIL;
    }

    // ---- index: open addressing, linear probing, backward-shift deletion ----

    fn home(&self, key: IpAddr) -> usize {
        // An IPv6 address folds to 32 bits (its interface identifier varies most; the
        // prefix is mixed in). Then Fibonacci hashing: the top bits of key x 2^32/phi
        // spread consecutive addresses.
        let folded = match key {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                let y = (x as u64) ^ ((x >> 64) as u64).rotate_left(17);
                (y as u32) ^ ((y >> 32) as u32)
            }
        };
        ((u64::from(folded.wrapping_mul(0x9E37_79B9)) << self.index_bits) >> 32) as usize
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn find(&self, key: IpAddr) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(key);
        // The index is at most half full, so an empty bucket ends every probe.
        loop {
            let slot = self.index[i];
            if slot == NIL {
                return None;
            }
            if self.entries[slot as usize].ip == key {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    fn index_insert(&mut self, key: IpAddr, slot: u32) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.index[i] != NIL {
            i = (i + 1) & mask;
        }
        self.index[i] = slot;
    }

    fn index_remove(&mut self, key: IpAddr) {
        let mask = self.mask();
        let mut hole = self.home(key);
        loop {
            let slot = self.index[hole];
            if slot == NIL {
                return; // not indexed
            }
            if self.entries[slot as usize].ip == key {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Pull later members of the probe run back over the hole when their home allows.
        let mut j = (hole + 1) & mask;
        loop {
            let slot = self.index[j];
            if slot == NIL {
                break;
            }
            let home = self.home(self.entries[slot as usize].ip);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = slot;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.index[hole] = NIL;
    }
}

impl<P> std::fmt::Debug for NeighTable<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighTable")
            .field("params", &self.params)
            .field("len", &self.len)
            .field("pending", &self.pending)
            .field("counters", &self.counters)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    const MAC_A: Mac = [2, 0, 0, 0, 0, 0xa];
    const MAC_B: Mac = [2, 0, 0, 0, 0, 0xb];
    const MAC_C: Mac = [2, 0, 0, 0, 0, 0xc];

    fn params() -> NeighParams {
        NeighParams {
            max_entries: 4,
            max_pending_per_entry: 3,
            max_pending_total: 5,
            retry_ms: 1000,
            max_retries: 3,
            reachable_ms: 10_000,
            gc_stale_ms: 5_000,
            // Most tests follow Stale -> Probe directly; the Delay tests set it.
            delay_probe_ms: 0,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, n))
    }

    /// Runs `tick` and collects the actions.
    fn tick(t: &mut NeighTable<u32>, now: u64) -> Vec<NeighAction<u32>> {
        let mut out = Vec::new();
        t.tick(now, |a| out.push(a));
        t.check_invariants();
        out
    }

    fn learn(
        t: &mut NeighTable<u32>,
        a: IpAddr,
        mac: Mac,
        now: u64,
        solicited: bool,
    ) -> (Learned, Vec<(Mac, u32)>) {
        let mut sent = Vec::new();
        let r = t.learn(a, mac, now, solicited, |m, p| sent.push((m, p)));
        t.check_invariants();
        (r, sent)
    }

    impl<P> NeighTable<P> {
        /// Checks every structural invariant; panics with a description when one breaks.
        fn check_invariants(&self) {
            let cap = self.entries.len();
            let live: Vec<u32> = (0..cap as u32)
                .filter(|s| self.entries[*s as usize].slot != Slot::Free)
                .collect();
            assert_eq!(live.len(), self.len as usize, "len");
            assert_eq!(self.free_slots.len() + live.len(), cap, "free slots");
            assert_eq!(
                self.index.iter().filter(|s| **s != NIL).count(),
                live.len(),
                "index size"
            );
            for &s in &live {
                assert_eq!(
                    self.find(self.entries[s as usize].ip),
                    Some(s),
                    "index lookup"
                );
            }
            // Timer lists: consistent links, exactly the entries of their state,
            // deadlines in order, lengths right.
            let mut linked = HashSet::new();
            for (l, list) in self.lists.iter().enumerate() {
                let (mut prev, mut cur, mut last_deadline, mut n) = (NIL, list.head, 0, 0);
                while cur != NIL {
                    let e = &self.entries[cur as usize];
                    assert_eq!(e.t_prev, prev, "timer back link");
                    assert_eq!(e.slot.list(), Some(l), "timer on {:?}", e.slot);
                    assert!(e.deadline >= last_deadline, "timer order");
                    assert!(linked.insert(cur), "timer loop");
                    last_deadline = e.deadline;
                    prev = cur;
                    cur = e.t_next;
                    n += 1;
                }
                assert_eq!(list.tail, prev, "timer tail");
                assert_eq!(list.len, n, "list length");
            }
            for &s in &live {
                let timed = self.entries[s as usize].slot.list().is_some();
                assert_eq!(linked.contains(&s), timed, "timer membership");
            }
            assert!(self.lists[LIST_INCOMPLETE].len <= self.max_incomplete());
            // Pending: per-entry lengths add up, queues only on Incomplete entries, and
            // the free chain holds the rest of the pool.
            let mut queued = 0;
            for &s in &live {
                let e = &self.entries[s as usize];
                assert!(e.q_len <= self.params.max_pending_per_entry);
                assert!(e.q_len == 0 || e.slot == Slot::Incomplete);
                let (mut n, mut node) = (0, e.q_head);
                while node != NIL {
                    assert!(self.pkts[node as usize].is_some());
                    n += 1;
                    node = self.pkt_next[node as usize];
                }
                assert_eq!(n, e.q_len, "queue length");
                queued += n;
            }
            let mut node = self.evicted_head;
            while node != NIL {
                assert!(self.pkts[node as usize].is_some());
                queued += 1;
                if self.pkt_next[node as usize] == NIL {
                    assert_eq!(self.evicted_tail, node, "evicted tail");
                }
                node = self.pkt_next[node as usize];
            }
            assert_eq!(queued, self.pending, "pending total");
            let (mut free, mut node) = (0, self.pkt_free);
            while node != NIL {
                assert!(self.pkts[node as usize].is_none());
                free += 1;
                node = self.pkt_next[node as usize];
            }
            assert_eq!(free + self.pending, self.params.max_pending_total, "pool");
        }
    }

    #[test]
    fn first_packet_queues_and_requests() {
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 1, 0), Resolve::QueuedAndRequest);
        assert_eq!(t.resolve(ip(1), 2, 10), Resolve::Queued);
        t.check_invariants();
        assert_eq!((t.len(), t.pending()), (1, 2));
        assert_eq!(t.state(ip(1), 10), Some(NeighState::Incomplete));
        assert_eq!(t.lookup(ip(1)), None);
        assert_eq!(t.counters().requests_sent, 1);
        assert_eq!(
            t.iter(10).collect::<Vec<_>>(),
            vec![NeighInfo {
                ip: ip(1),
                mac: None,
                state: NeighState::Incomplete,
                pending: 2,
                confirmed_ago_ms: None
            }]
        );
    }

    #[test]
    fn queue_is_bounded_per_entry() {
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 1, 0), Resolve::QueuedAndRequest);
        assert_eq!(t.resolve(ip(1), 2, 0), Resolve::Queued);
        assert_eq!(t.resolve(ip(1), 3, 0), Resolve::Queued);
        assert_eq!(
            t.resolve(ip(1), 4, 0),
            Resolve::Dropped(4, DropReason::QueueFull)
        );
        assert_eq!(
            t.resolve(ip(1), 5, 0),
            Resolve::Dropped(5, DropReason::QueueFull)
        );
        t.check_invariants();
        assert_eq!(t.pending(), 3);
        assert_eq!(t.counters().dropped(DropReason::QueueFull), 2);
    }

    #[test]
    fn reply_drains_the_queue_in_order() {
        let mut t = NeighTable::new(params());
        for p in 1..=3 {
            t.resolve(ip(1), p, 0);
        }
        let (r, sent) = learn(&mut t, ip(1), MAC_A, 50, true);
        assert_eq!(r, Learned::Resolved { drained: 3 });
        assert_eq!(sent, vec![(MAC_A, 1), (MAC_A, 2), (MAC_A, 3)]);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.state(ip(1), 50), Some(NeighState::Reachable));
        assert_eq!(t.resolve(ip(1), 9, 60), Resolve::Send(MAC_A, 9));
        assert_eq!(t.lookup(ip(1)), Some(MAC_A));
        assert_eq!(t.counters().replies_learned, 1);
        // Resolved: no more requests.
        assert_eq!(tick(&mut t, 5000), vec![]);
    }

    #[test]
    fn retries_at_retry_ms_then_fails_and_drops_the_queue() {
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 1, 0), Resolve::QueuedAndRequest);
        assert_eq!(t.resolve(ip(1), 2, 400), Resolve::Queued);
        let mut events = Vec::new();
        for now in 0..=4000 {
            for a in tick(&mut t, now) {
                events.push((now, a));
            }
        }
        let req = NeighAction::Request {
            ip: ip(1),
            unicast: None,
        };
        assert_eq!(
            events,
            vec![
                (1000, req),
                (
                    2000,
                    NeighAction::Request {
                        ip: ip(1),
                        unicast: None
                    }
                ),
                (3000, NeighAction::Drop(1, DropReason::Unresolved)),
                (3000, NeighAction::Drop(2, DropReason::Unresolved)),
            ]
        );
        assert!(t.is_empty());
        assert_eq!(t.pending(), 0);
        let c = t.counters();
        assert_eq!(
            (c.requests_sent, c.failed, c.dropped(DropReason::Unresolved)),
            (3, 1, 2)
        );
        // The next packet starts over.
        assert_eq!(t.resolve(ip(1), 3, 4001), Resolve::QueuedAndRequest);
    }

    #[test]
    fn late_tick_spaces_retries_from_the_tick() {
        let mut t = NeighTable::new(params());
        t.resolve(ip(1), 1, 0);
        assert_eq!(tick(&mut t, 999), vec![]);
        assert_eq!(
            tick(&mut t, 1500),
            vec![NeighAction::Request {
                ip: ip(1),
                unicast: None
            }]
        );
        assert_eq!(tick(&mut t, 2499), vec![]);
        assert_eq!(
            tick(&mut t, 2500),
            vec![NeighAction::Request {
                ip: ip(1),
                unicast: None
            }]
        );
    }

    #[test]
    fn stale_entry_sends_and_probes_once() {
        let mut t = NeighTable::new(params());
        learn(&mut t, ip(1), MAC_A, 0, true); // unknown: created Stale
        assert_eq!(t.resolve(ip(1), 1, 1), Resolve::SendAndProbe(MAC_A, 1));
        learn(&mut t, ip(1), MAC_A, 100, true);
        assert_eq!(t.state(ip(1), 100), Some(NeighState::Reachable));
        assert_eq!(t.resolve(ip(1), 2, 10_099), Resolve::Send(MAC_A, 2));
        assert_eq!(t.state(ip(1), 10_100), Some(NeighState::Stale));
        assert_eq!(t.resolve(ip(1), 3, 10_100), Resolve::SendAndProbe(MAC_A, 3));
        assert_eq!(t.state(ip(1), 10_100), Some(NeighState::Probe));
        assert_eq!(t.resolve(ip(1), 4, 10_101), Resolve::Send(MAC_A, 4));
        assert_eq!(tick(&mut t, 11_099), vec![]);
        assert_eq!(
            tick(&mut t, 11_100),
            vec![NeighAction::Request {
                ip: ip(1),
                unicast: Some(MAC_A)
            }]
        );
        assert_eq!(
            learn(&mut t, ip(1), MAC_A, 11_500, true).0,
            Learned::Confirmed
        );
        assert_eq!(t.state(ip(1), 11_500), Some(NeighState::Reachable));
        assert_eq!(tick(&mut t, 20_000), vec![]);
        assert_eq!(t.counters().probes_sent, 3);
    }

    #[test]
    fn unanswered_probes_remove_the_entry() {
        let mut t = NeighTable::new(params());
        learn(&mut t, ip(1), MAC_A, 0, true);
        assert_eq!(t.resolve(ip(1), 1, 0), Resolve::SendAndProbe(MAC_A, 1));
        let probe = || NeighAction::Request {
            ip: ip(1),
            unicast: Some(MAC_A),
        };
        assert_eq!(tick(&mut t, 1000), vec![probe()]);
        assert_eq!(tick(&mut t, 2000), vec![probe()]);
        assert_eq!(tick(&mut t, 3000), vec![]);
        assert_eq!(t.lookup(ip(1)), None);
        assert!(t.is_empty());
        assert_eq!(t.counters().failed, 1);
        assert_eq!(t.resolve(ip(1), 2, 3001), Resolve::QueuedAndRequest);
    }

    #[test]
    fn total_pending_limit_spans_entries() {
        // Room for 4 unresolved entries (half the table).
        let mut t = NeighTable::new(NeighParams {
            max_entries: 8,
            ..params()
        });
        // One neighbour alone may use its whole queue (3 of a pool of 5).
        for p in 1..=3 {
            t.resolve(ip(1), p, 0);
        }
        assert_eq!(t.pending(), 3);
        assert_eq!(t.resolve(ip(2), 4, 0), Resolve::QueuedAndRequest);
        // Half the pool in use and others queued: one packet per neighbour.
        assert_eq!(
            t.resolve(ip(2), 5, 0),
            Resolve::Dropped(5, DropReason::PendingShareLimit)
        );
        assert_eq!(t.resolve(ip(3), 6, 0), Resolve::QueuedAndRequest);
        // Pool exhausted: a new neighbour still gets its entry and request.
        assert_eq!(
            t.resolve(ip(4), 7, 0),
            Resolve::DroppedAndRequest(7, DropReason::PendingPoolFull)
        );
        t.check_invariants();
        assert_eq!((t.len(), t.pending()), (4, 5));
        assert_eq!(t.counters().dropped(DropReason::PendingPoolFull), 1);
        assert_eq!(t.counters().dropped(DropReason::PendingShareLimit), 1);
        assert_eq!(t.counters().requests_without_queue, 1);
        assert_eq!(t.counters().requests_sent, 4);
        // Resolving one neighbour frees its slots for the others.
        learn(&mut t, ip(1), MAC_A, 1, true);
        assert_eq!(t.resolve(ip(4), 8, 2), Resolve::Queued);
    }

    #[test]
    fn table_full_drops() {
        // Fresh Reachable entries are never evicted.
        let mut t = NeighTable::new(params());
        for n in 1..=4 {
            learn(&mut t, ip(n), MAC_A, 0, true);
            t.resolve(ip(n), 0, 0);
            learn(&mut t, ip(n), MAC_A, 0, true);
        }
        assert_eq!(
            t.resolve(ip(5), 5, 1),
            Resolve::Dropped(5, DropReason::TableFull)
        );
        assert_eq!(t.counters().dropped(DropReason::TableFull), 1);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn stale_entries_are_evicted_for_new_neighbours() {
        let mut t = NeighTable::new(params());
        for n in 1..=4 {
            assert_eq!(learn(&mut t, ip(n), MAC_A, 0, false).0, Learned::Created);
        }
        assert_eq!(t.resolve(ip(5), 5, 1), Resolve::QueuedAndRequest);
        t.check_invariants();
        assert_eq!(t.len(), 4);
        assert_eq!(t.counters().evicted, 1);
        // The clock hand starts at slot 0, so the first learned entry went.
        assert_eq!(t.lookup(ip(1)), None);
        assert_eq!(t.lookup(ip(2)), Some(MAC_A));
    }

    #[test]
    fn unsolicited_learning_never_grows_past_capacity() {
        let mut t = NeighTable::new(params());
        for n in 1..=4 {
            reachable(&mut t, n, 0);
        }
        assert_eq!(
            learn(&mut t, ip(9), MAC_A, 1, false),
            (Learned::IgnoredTableFull, vec![])
        );
        assert_eq!(
            learn(&mut t, ip(9), MAC_A, 1, true),
            (Learned::IgnoredTableFull, vec![])
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup(ip(9)), None);
        assert_eq!(t.counters().learn_ignored_full, 2);
        // With room, an unknown address becomes a Stale entry.
        let mut t = NeighTable::new(params());
        assert_eq!(learn(&mut t, ip(9), MAC_B, 5, false).0, Learned::Created);
        assert_eq!(t.state(ip(9), 5), Some(NeighState::Stale));
        assert_eq!(t.lookup(ip(9)), Some(MAC_B));
    }

    #[test]
    fn relearning_updates_the_mac() {
        let mut t = NeighTable::new(params());
        t.resolve(ip(1), 1, 0);
        learn(&mut t, ip(1), MAC_A, 10, true);
        assert_eq!(learn(&mut t, ip(1), MAC_B, 20, true).0, Learned::MacChanged);
        assert_eq!(t.lookup(ip(1)), Some(MAC_B));
        assert_eq!(t.state(ip(1), 20), Some(NeighState::Reachable));
        assert_eq!(t.resolve(ip(1), 2, 30), Resolve::Send(MAC_B, 2));
        // An unsolicited claim changes the MAC but must be confirmed by a probe.
        assert_eq!(
            learn(&mut t, ip(1), MAC_C, 40, false).0,
            Learned::MacChanged
        );
        assert_eq!(t.state(ip(1), 40), Some(NeighState::Stale));
        assert_eq!(t.resolve(ip(1), 3, 50), Resolve::SendAndProbe(MAC_C, 3));
        // The same MAC again, unsolicited, changes nothing (the probe keeps running).
        assert_eq!(learn(&mut t, ip(1), MAC_C, 60, false).0, Learned::Unchanged);
        assert_eq!(t.state(ip(1), 60), Some(NeighState::Probe));
        // A new MAC during a probe stops it: Stale with the new MAC.
        assert_eq!(
            learn(&mut t, ip(1), MAC_A, 70, false).0,
            Learned::MacChanged
        );
        assert_eq!(t.state(ip(1), 70), Some(NeighState::Stale));
        assert_eq!(tick(&mut t, 5000), vec![]);
        assert_eq!(t.counters().mac_changes, 3);
    }

    #[test]
    fn request_from_an_incomplete_neighbour_resolves_it_as_stale() {
        let mut t = NeighTable::new(params());
        t.resolve(ip(1), 1, 0);
        t.resolve(ip(1), 2, 0);
        let (r, sent) = learn(&mut t, ip(1), MAC_B, 5, false);
        assert_eq!(r, Learned::Resolved { drained: 2 });
        assert_eq!(sent, vec![(MAC_B, 1), (MAC_B, 2)]);
        assert_eq!(t.state(ip(1), 5), Some(NeighState::Stale));
        assert_eq!(t.counters().unsolicited_learned, 1);
    }

    #[test]
    fn idle_stale_entries_are_collected_from_a_crowded_table() {
        let mut t = NeighTable::new(params());
        // Three of four entries in use: more than half, so idle ones are collected.
        learn(&mut t, ip(1), MAC_A, 0, false); // Stale, unused
        learn(&mut t, ip(3), MAC_B, 0, false); // Stale, unused
        t.resolve(ip(2), 7, 0);
        learn(&mut t, ip(2), MAC_A, 0, true); // Reachable until 10_000
        assert_eq!(tick(&mut t, 4_999), vec![]);
        assert_eq!(t.len(), 3);
        tick(&mut t, 5_000);
        assert_eq!(t.lookup(ip(1)), None);
        assert_eq!(t.lookup(ip(2)), Some(MAC_A));
        // Down to two of four (half): the rest stays, idle or not.
        assert_eq!(t.len(), 2);
        tick(&mut t, 60_000);
        assert_eq!(t.len(), 2);
        assert_eq!(t.counters().collected, 1);
    }

    #[test]
    fn idle_entry_is_kept_and_the_next_burst_goes_out_at_once() {
        // A real server resolved once, then quiet far longer than gc_stale_ms and
        // reachable_ms: its entry stays (the table has room), and the next burst is
        // sent to the known MAC while a probe confirms it. No packet waits or is lost.
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 1, 0), Resolve::QueuedAndRequest);
        learn(&mut t, ip(1), MAC_A, 1, true);
        for now in (0..120_000).step_by(100) {
            tick(&mut t, now);
        }
        assert_eq!(t.counters().collected, 0);
        assert_eq!(t.state(ip(1), 120_000), Some(NeighState::Stale));
        assert_eq!(
            t.resolve(ip(1), 2, 120_000),
            Resolve::SendAndProbe(MAC_A, 2)
        );
        for p in 3..40 {
            assert_eq!(t.resolve(ip(1), p, 120_001), Resolve::Send(MAC_A, p));
        }
        learn(&mut t, ip(1), MAC_A, 120_002, true);
        assert_eq!(t.state(ip(1), 120_002), Some(NeighState::Reachable));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn entry_in_use_is_refreshed_before_it_goes_stale() {
        // Used every 200 ms, answered: the clock hand probes it before reachable_ms
        // (10 s) runs out, packets keep going to the known MAC meanwhile, and the
        // entry never goes Stale, so no packet ever waits for a probe.
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 0, 0), Resolve::QueuedAndRequest);
        learn(&mut t, ip(1), MAC_A, 0, true);
        let mut probes = Vec::new();
        for now in (100..35_000).step_by(100) {
            for a in tick(&mut t, now) {
                match a {
                    NeighAction::Request {
                        ip: a,
                        unicast: Some(m),
                    } if a == ip(1) && m == MAC_A => {
                        probes.push(now);
                        learn(&mut t, ip(1), MAC_A, now + 1, true);
                    }
                    other => panic!("{other:?}"),
                }
            }
            if now % 200 == 0 {
                let p = now as u32;
                assert_eq!(
                    t.resolve(ip(1), p, now),
                    Resolve::Send(MAC_A, p),
                    "at {now}"
                );
                assert_ne!(t.state(ip(1), now), Some(NeighState::Stale), "at {now}");
            }
        }
        assert!(probes.len() >= 3, "{probes:?}");
        // Each refresh starts within max_retries x retry_ms (3 s) of the entry ageing
        // out, i.e. 7 to 10 s after its last confirmation.
        let mut confirmed = 0;
        for p in &probes {
            assert!((7_000..10_000).contains(&(p - confirmed)), "{probes:?}");
            confirmed = p + 1;
        }
        assert_eq!(t.counters().refreshes, probes.len() as u64);
    }

    #[test]
    fn refresh_unanswered_removes_the_entry_after_its_probes() {
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 0, 0), Resolve::QueuedAndRequest);
        learn(&mut t, ip(1), MAC_A, 0, true);
        let mut probes = 0;
        let mut gone_at = None;
        for now in (100..20_000).step_by(100) {
            for a in tick(&mut t, now) {
                if let NeighAction::Request {
                    unicast: Some(_), ..
                } = a
                {
                    probes += 1;
                }
            }
            match t.lookup(ip(1)) {
                Some(_) => {
                    let p = now as u32;
                    assert_eq!(t.resolve(ip(1), p, now), Resolve::Send(MAC_A, p));
                }
                None => {
                    gone_at.get_or_insert(now);
                }
            }
        }
        assert_eq!(probes, 3, "max_retries probes");
        assert_eq!(t.counters().failed, 1);
        // Removed once the last probe went unanswered, before reachable_ms + retries.
        assert!(gone_at.is_some_and(|g| g <= 11_000), "{gone_at:?}");
    }

    #[test]
    fn unused_entry_is_not_refreshed() {
        let mut t = NeighTable::new(params());
        assert_eq!(t.resolve(ip(1), 0, 0), Resolve::QueuedAndRequest);
        learn(&mut t, ip(1), MAC_A, 0, true);
        // Last used at 0; gc_stale_ms is 5 s: at 7 s it is not in use.
        for now in (100..30_000).step_by(100) {
            assert_eq!(tick(&mut t, now), vec![], "at {now}");
        }
        assert_eq!(t.counters().refreshes, 0);
        assert_eq!(t.state(ip(1), 30_000), Some(NeighState::Stale));
    }

    #[test]
    fn spoofed_neighbours_cannot_lock_a_new_client_out() {
        // Many unresolved (spoofed) addresses, each sent several packets: under
        // pressure each keeps one, and once the pool is exhausted a new client still
        // gets its entry and request, so its next packet goes straight out.
        let mut t: NeighTable<u32> = NeighTable::new(NeighParams {
            max_entries: 64,
            max_pending_per_entry: 4,
            max_pending_total: 8,
            ..params()
        });
        let mut id = 0;
        for n in 10..30 {
            for _ in 0..4 {
                id += 1;
                t.resolve(ip(n), id, 0);
            }
        }
        t.check_invariants();
        assert_eq!(t.pending(), 8);
        let per: Vec<u32> = t.iter(0).map(|i| i.pending).collect();
        assert_eq!(per.iter().filter(|q| **q > 1).count(), 1, "{per:?}");
        assert!(t.counters().dropped(DropReason::PendingShareLimit) > 0);
        let client = ip(200);
        assert_eq!(
            t.resolve(client, 1000, 10),
            Resolve::DroppedAndRequest(1000, DropReason::PendingPoolFull)
        );
        learn(&mut t, client, MAC_C, 11, true);
        assert_eq!(t.resolve(client, 1001, 12), Resolve::Send(MAC_C, 1001));
    }

    #[test]
    fn remove_and_flush_hand_back_every_packet() {
        let mut t = NeighTable::new(params());
        t.resolve(ip(1), 1, 0);
        t.resolve(ip(1), 2, 0);
        t.resolve(ip(2), 3, 0);
        learn(&mut t, ip(3), MAC_A, 0, true);
        let mut dropped = Vec::new();
        assert!(t.remove(ip(1), |p, r| dropped.push((p, r))));
        assert!(!t.remove(ip(1), |p, r| dropped.push((p, r))));
        assert_eq!(
            dropped,
            vec![(1, DropReason::Flushed), (2, DropReason::Flushed)]
        );
        t.check_invariants();
        dropped.clear();
        t.flush(|p, r| dropped.push((p, r)));
        assert_eq!(dropped, vec![(3, DropReason::Flushed)]);
        t.check_invariants();
        assert!(t.is_empty());
        assert_eq!(t.pending(), 0);
        assert_eq!(t.counters().dropped(DropReason::Flushed), 3);
    }

    #[test]
    fn zero_params_are_raised_to_one() {
        let t: NeighTable<u32> = NeighTable::new(NeighParams {
            max_entries: 0,
            max_pending_per_entry: 0,
            max_pending_total: 0,
            retry_ms: 0,
            max_retries: 0,
            reachable_ms: 0,
            gc_stale_ms: 0,
            delay_probe_ms: 0,
        });
        let p = t.params();
        assert_eq!(
            (
                p.max_entries,
                p.max_pending_per_entry,
                p.max_pending_total,
                p.retry_ms,
                p.max_retries
            ),
            (1, 1, 1, 1, 1)
        );
        t.check_invariants();
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Resolves `n` and confirms it by a reply: a fresh Reachable entry in use.
    fn reachable(t: &mut NeighTable<u32>, n: u8, now: u64) {
        assert_eq!(t.resolve(ip(n), 0, now), Resolve::QueuedAndRequest);
        learn(t, ip(n), MAC_A, now, true);
        assert_eq!(t.resolve(ip(n), 1, now), Resolve::Send(MAC_A, 1));
    }

    #[test]
    fn spoofed_incomplete_entries_cannot_fill_the_table() {
        // Before: every unanswered address kept its entry until its retries ran out, so
        // 4 spoofed sources filled the table and a real neighbour got TableFull.
        let mut t = NeighTable::new(params());
        let mut dropped = Vec::new();
        for n in 10..30 {
            assert_eq!(t.resolve(ip(n), u32::from(n), 0), Resolve::QueuedAndRequest);
            // The evicted entries' packets come back at the next tick, counted.
            for a in tick(&mut t, 0) {
                if let NeighAction::Drop(p, DropReason::Evicted) = a {
                    dropped.push(p);
                }
            }
        }
        assert_eq!(t.len(), 2, "at most half the table unresolved");
        assert_eq!(t.counters().incomplete_limited, 18);
        assert_eq!(dropped, (10..28).collect::<Vec<u32>>());
        assert_eq!(t.counters().dropped(DropReason::Evicted), 18);
        assert_eq!(t.pending(), 2);
        // The real neighbour still gets an entry and its request, and its answer
        // delivers its packet.
        assert_eq!(t.resolve(ip(1), 100, 2), Resolve::QueuedAndRequest);
        let (r, sent) = learn(&mut t, ip(1), MAC_B, 3, true);
        assert_eq!(r, Learned::Resolved { drained: 1 });
        assert_eq!(sent, vec![(MAC_B, 100)]);
    }

    #[test]
    fn full_table_evicts_the_oldest_incomplete_never_an_entry_in_use() {
        let mut t = NeighTable::new(NeighParams {
            max_entries: 6,
            ..params()
        });
        for n in 1..=3 {
            reachable(&mut t, n, 0);
        }
        // Three unresolved fill the table (the limit is 3 of 6).
        for n in 10..=12 {
            assert_eq!(t.resolve(ip(n), u32::from(n), 5), Resolve::QueuedAndRequest);
        }
        assert_eq!(t.len(), 6);
        // A new neighbour: the oldest unresolved one (10) goes, the Reachable ones stay.
        assert_eq!(t.resolve(ip(20), 20, 6), Resolve::QueuedAndRequest);
        t.check_invariants();
        assert_eq!(t.state(ip(10), 6), None);
        for n in [1, 2, 3, 11, 12, 20] {
            assert!(t.state(ip(n), 6).is_some(), "{n} kept");
        }
        assert_eq!(t.counters().incomplete_limited, 1);
        assert_eq!(
            tick(&mut t, 6),
            vec![NeighAction::Drop(10, DropReason::Evicted)]
        );
        // Once every unresolved entry has resolved and the table is all in use, a new
        // neighbour is refused and counted.
        for n in [11, 12, 20] {
            learn(&mut t, ip(n), MAC_B, 7, true);
            t.resolve(ip(n), 0, 7);
        }
        assert_eq!(
            t.resolve(ip(30), 30, 8),
            Resolve::Dropped(30, DropReason::TableFull)
        );
        assert_eq!(t.counters().dropped(DropReason::TableFull), 1);
        // A Stale, idle entry is evicted before an unresolved one.
        let mut t = NeighTable::new(NeighParams {
            max_entries: 6,
            ..params()
        });
        learn(&mut t, ip(1), MAC_A, 0, false); // Stale, unused
        for n in 2..=4 {
            reachable(&mut t, n, 0);
        }
        t.resolve(ip(10), 10, 1);
        t.resolve(ip(11), 11, 1);
        assert_eq!(t.resolve(ip(12), 12, 2), Resolve::QueuedAndRequest);
        t.check_invariants();
        assert_eq!(t.lookup(ip(1)), None);
        assert_eq!(t.counters().evicted, 1);
        assert!(t.state(ip(10), 2).is_some() && t.state(ip(11), 2).is_some());
    }

    #[test]
    fn reply_for_an_evicted_request_is_still_learned() {
        let mut t = NeighTable::new(params());
        reachable(&mut t, 1, 0);
        reachable(&mut t, 2, 0);
        t.resolve(ip(10), 10, 1);
        t.resolve(ip(11), 11, 1);
        // Unsolicited ARP from an unknown address never evicts anything.
        assert_eq!(
            learn(&mut t, ip(3), MAC_C, 2, false).0,
            Learned::IgnoredTableFull
        );
        // A reply does, taking the oldest unresolved entry's place.
        assert_eq!(learn(&mut t, ip(3), MAC_C, 2, true).0, Learned::Created);
        assert_eq!(t.state(ip(10), 2), None);
        assert_eq!(t.lookup(ip(3)), Some(MAC_C));
        assert_eq!(t.counters().evicted_incomplete, 1);
        assert_eq!(t.counters().learn_ignored_full, 1);
        assert_eq!(
            tick(&mut t, 3),
            vec![NeighAction::Drop(10, DropReason::Evicted)]
        );
    }

    #[test]
    fn used_stale_entry_waits_in_delay_then_probes() {
        let mut t = NeighTable::new(NeighParams {
            delay_probe_ms: 5_000,
            ..params()
        });
        learn(&mut t, ip(1), MAC_A, 0, false); // Stale
                                               // Sent at once, no probe yet (before: a probe with the first packet).
        assert_eq!(t.resolve(ip(1), 1, 100), Resolve::Send(MAC_A, 1));
        assert_eq!(t.state(ip(1), 100), Some(NeighState::Delay));
        assert_eq!(t.resolve(ip(1), 2, 200), Resolve::Send(MAC_A, 2));
        assert_eq!(tick(&mut t, 5_099), vec![]);
        assert_eq!(
            tick(&mut t, 5_100),
            vec![NeighAction::Request {
                ip: ip(1),
                unicast: Some(MAC_A)
            }]
        );
        assert_eq!(t.state(ip(1), 5_100), Some(NeighState::Probe));
        assert_eq!(t.resolve(ip(1), 3, 5_200), Resolve::Send(MAC_A, 3));
        // The probe is answered: Reachable.
        learn(&mut t, ip(1), MAC_A, 5_300, true);
        assert_eq!(t.state(ip(1), 5_300), Some(NeighState::Reachable));
        assert_eq!(t.counters().delays, 1);
        assert_eq!(t.counters().probes_sent, 1);
        // Unanswered, the probes remove it as before.
        let mut t = NeighTable::new(NeighParams {
            delay_probe_ms: 5_000,
            ..params()
        });
        learn(&mut t, ip(1), MAC_A, 0, false);
        t.resolve(ip(1), 1, 0);
        assert_eq!(tick(&mut t, 5_000).len(), 1);
        assert_eq!(tick(&mut t, 6_000).len(), 1);
        assert_eq!(tick(&mut t, 7_000).len(), 1);
        assert_eq!(tick(&mut t, 8_000), vec![]);
        assert_eq!(t.lookup(ip(1)), None);
    }

    #[test]
    fn arp_from_the_neighbour_confirms_a_delay_entry() {
        let mut t = NeighTable::new(NeighParams {
            delay_probe_ms: 5_000,
            ..params()
        });
        learn(&mut t, ip(1), MAC_A, 0, false);
        assert_eq!(t.resolve(ip(1), 1, 100), Resolve::Send(MAC_A, 1));
        // Its own ARP request (same MAC) confirms it: no probe is needed.
        assert_eq!(
            learn(&mut t, ip(1), MAC_A, 1_000, false).0,
            Learned::Confirmed
        );
        assert_eq!(t.state(ip(1), 1_000), Some(NeighState::Reachable));
        assert_eq!(tick(&mut t, 6_000), vec![]);
        assert_eq!(t.counters().delay_confirmed, 1);
        assert_eq!(t.counters().probes_sent, 0);
        // A different MAC is not a confirmation: Stale again, to be probed on use.
        t.resolve(ip(1), 2, 20_000);
        assert_eq!(t.state(ip(1), 20_000), Some(NeighState::Delay));
        assert_eq!(
            learn(&mut t, ip(1), MAC_B, 20_001, false).0,
            Learned::MacChanged
        );
        assert_eq!(t.state(ip(1), 20_001), Some(NeighState::Stale));
        assert_eq!(tick(&mut t, 30_000), vec![]);
    }

    /// Random operations against the invariants: every packet comes back exactly once,
    /// packets of one neighbour come back in order, nothing grows past its bounds.
    #[test]
    fn random_operations_keep_every_invariant() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut t: NeighTable<u32> = NeighTable::new(NeighParams {
            max_entries: 8,
            max_pending_per_entry: 3,
            max_pending_total: 10,
            retry_ms: 3,
            max_retries: 2,
            reachable_ms: 20,
            gc_stale_ms: 10,
            delay_probe_ms: 4,
        });
        // Packet id -> neighbour it was sent towards, while the table holds it.
        let mut held: BTreeMap<u32, u8> = BTreeMap::new();
        let mut returned: HashSet<u32> = HashSet::new();
        let give_back = |id: u32, held: &mut BTreeMap<u32, u8>, returned: &mut HashSet<u32>| {
            assert!(returned.insert(id), "packet {id} returned twice");
            held.remove(&id);
        };
        let mut now = 0u64;
        let mut next_id = 0u32;
        for _ in 0..40_000 {
            now += rng.below(3);
            let n = 1 + rng.below(20) as u8;
            match rng.below(10) {
                0..=4 => {
                    next_id += 1;
                    let id = next_id;
                    match t.resolve(ip(n), id, now) {
                        Resolve::Send(_, p)
                        | Resolve::SendAndProbe(_, p)
                        | Resolve::Dropped(p, _)
                        | Resolve::DroppedAndRequest(p, _) => {
                            assert_eq!(p, id);
                            returned.insert(p);
                        }
                        Resolve::Queued | Resolve::QueuedAndRequest => {
                            held.insert(id, n);
                        }
                    }
                }
                5..=6 => {
                    let mac = [2, 0, 0, 0, 0, rng.below(3) as u8];
                    let mut sent = Vec::new();
                    t.learn(ip(n), mac, now, rng.below(2) == 0, |m, p| {
                        assert_eq!(m, mac);
                        sent.push(p);
                    });
                    assert!(sent.windows(2).all(|w| w[0] < w[1]), "FIFO order");
                    for p in sent {
                        assert_eq!(held.get(&p), Some(&n), "drained to the wrong neighbour");
                        give_back(p, &mut held, &mut returned);
                    }
                }
                7..=8 => {
                    let mut actions = Vec::new();
                    t.tick(now, |a| actions.push(a));
                    for a in actions {
                        if let NeighAction::Drop(p, reason) = a {
                            assert!(
                                matches!(reason, DropReason::Unresolved | DropReason::Evicted),
                                "{reason:?}"
                            );
                            give_back(p, &mut held, &mut returned);
                        }
                    }
                }
                _ => {
                    let mut dropped = Vec::new();
                    t.remove(ip(n), |p, _| dropped.push(p));
                    for p in dropped {
                        give_back(p, &mut held, &mut returned);
                    }
                }
            }
            assert_eq!(t.pending(), held.len());
            assert!(t.len() <= 8);
            t.check_invariants();
        }
        let mut dropped = Vec::new();
        t.flush(|p, _| dropped.push(p));
        for p in dropped {
            give_back(p, &mut held, &mut returned);
        }
        assert!(held.is_empty());
        assert_eq!(returned.len(), next_id as usize);
        let c = t.counters();
        assert!(
            c.requests_sent > 100
                && c.failed > 10
                && c.evicted + c.evicted_incomplete + c.incomplete_limited > 10
                && c.collected > 10
                && c.delays > 10,
            "{c:?}"
        );
    }
}
