//! The neighbour (ARP) table: IPv4 next hop -> MAC, one per worker core.
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
//!   sent; the first one also asks the caller for a unicast probe and the entry goes to
//! - **Probe**: packets are sent; probes repeat every `retry_ms`; a reply makes it
//!   Reachable, `max_retries` unanswered probes remove it.
//!
//! Timers: Incomplete and Probe entries sit in a FIFO list ordered by deadline. Every
//! deadline is "armed at + retry_ms" and `now` does not go back, so appending keeps the
//! list sorted and [`NeighTable::tick`] only looks at its head. A clock hand inspects a
//! few slots per tick.
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
//! What remains exhaustible is the entry table itself (Incomplete entries are not
//! evicted: their queued packets could not be handed back from `resolve`).

use std::net::Ipv4Addr;

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
}

impl DropReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = 6;
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::QueueFull,
        DropReason::PendingPoolFull,
        DropReason::PendingShareLimit,
        DropReason::TableFull,
        DropReason::Unresolved,
        DropReason::Flushed,
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
        }
    }
}

/// What to do with a packet given to [`NeighTable::resolve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve<P> {
    /// Send it to this MAC.
    Send(Mac, P),
    /// Send it to this MAC, and send an ARP probe for the address (unicast to this MAC):
    /// the entry was Stale.
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
        ip: Ipv4Addr,
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
            NeighState::Probe => "PROBE",
        }
    }
}

/// One entry, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighInfo {
    /// Neighbour address.
    pub ip: Ipv4Addr,
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
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: u32,
    mac: Mac,
    slot: Slot,
    /// Requests or probes sent in the current resolution.
    attempts: u32,
    /// Next retry (Incomplete, Probe).
    deadline: u64,
    /// Last confirmation (Reachable) or MAC learn.
    confirmed: u64,
    /// Last packet sent through this entry.
    last_used: u64,
    /// Pending queue: first and last node in the pool, length.
    q_head: u32,
    q_tail: u32,
    q_len: u32,
    /// Timer list links (Incomplete, Probe only).
    t_prev: u32,
    t_next: u32,
}

const FREE_ENTRY: Entry = Entry {
    ip: 0,
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
    timer_head: u32,
    timer_tail: u32,
    gc_hand: u32,
    len: u32,
    counters: NeighCounters,
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
            timer_head: NIL,
            timer_tail: NIL,
            gc_hand: 0,
            len: 0,
            counters: NeighCounters::default(),
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

    /// Where to send a packet for next hop `ip`. See [`Resolve`].
    pub fn resolve(&mut self, ip: Ipv4Addr, pkt: P, now: u64) -> Resolve<P> {
        let key = u32::from(ip);
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
            Slot::Probe => {
                e.last_used = now;
                Resolve::Send(e.mac, pkt)
            }
            Slot::Incomplete | Slot::Free => match self.enqueue(slot, pkt) {
                Ok(()) => Resolve::Queued,
                Err((pkt, reason)) => self.dropped(pkt, reason),
            },
        }
    }

    fn resolve_miss(&mut self, key: u32, pkt: P, now: u64) -> Resolve<P> {
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
        ip: Ipv4Addr,
        mac: Mac,
        now: u64,
        solicited: bool,
        mut send: impl FnMut(Mac, P),
    ) -> Learned {
        let key = u32::from(ip);
        let Some(slot) = self.find(key) else {
            // Never evict a useful entry for an address nobody asked about.
            let Some(slot) = self.alloc_free(key) else {
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
            return Learned::Unchanged;
        }
        if e.slot == Slot::Probe {
            self.timer_unlink(slot);
        }
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

    /// Runs due timers (at most [`TICK_TIMER_BUDGET`]): repeats requests and probes, fails
    /// entries whose retries are exhausted (their packets come back as
    /// `Drop(_, Unresolved)`), and lets the clock hand collect idle Stale entries.
    /// Returns the number of timers handled.
    pub fn tick(&mut self, now: u64, mut on_action: impl FnMut(NeighAction<P>)) -> usize {
        let mut handled = 0;
        while handled < TICK_TIMER_BUDGET && self.timer_head != NIL {
            let slot = self.timer_head;
            let e = self.entries[slot as usize];
            if e.deadline > now {
                break;
            }
            handled += 1;
            self.timer_unlink(slot);
            if e.attempts < self.params.max_retries {
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
                on_action(NeighAction::Request {
                    ip: Ipv4Addr::from(e.ip),
                    unicast,
                });
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
                    ip: Ipv4Addr::from(ip),
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
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<Mac> {
        let slot = self.find(u32::from(ip))?;
        let e = &self.entries[slot as usize];
        (e.slot != Slot::Incomplete).then_some(e.mac)
    }

    /// State of the entry for `ip` at time `now`.
    pub fn state(&self, ip: Ipv4Addr, now: u64) -> Option<NeighState> {
        let slot = self.find(u32::from(ip))?;
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
            Slot::Probe => NeighState::Probe,
        };
        let known = state != NeighState::Incomplete;
        NeighInfo {
            ip: Ipv4Addr::from(e.ip),
            mac: known.then_some(e.mac),
            state,
            pending: e.q_len,
            confirmed_ago_ms: known.then(|| now.saturating_sub(e.confirmed)),
        }
    }

    /// Removes the entry for `ip`; its queued packets go to `on_drop` (reason `Flushed`).
    /// Returns whether there was one.
    pub fn remove(&mut self, ip: Ipv4Addr, mut on_drop: impl FnMut(P, DropReason)) -> bool {
        let Some(slot) = self.find(u32::from(ip)) else {
            return false;
        };
        let n = self.drain(slot, |p| on_drop(p, DropReason::Flushed));
        self.counters.dropped[DropReason::Flushed.index()] += u64::from(n);
        self.remove_slot(slot);
        true
    }

    /// Removes every entry; queued packets go to `on_drop` (reason `Flushed`). Use before
    /// the packets' memory pool goes away.
    pub fn flush(&mut self, mut on_drop: impl FnMut(P, DropReason)) {
        for slot in 0..self.entries.len() as u32 {
            if self.entries[slot as usize].slot != Slot::Free {
                let n = self.drain(slot, |p| on_drop(p, DropReason::Flushed));
                self.counters.dropped[DropReason::Flushed.index()] += u64::from(n);
                self.remove_slot(slot);
            }
        }
    }

    // ---- entries ----

    /// A free slot, or an evicted Stale one; indexed under `key`.
    fn alloc(&mut self, key: u32, now: u64) -> Option<u32> {
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
        None
    }

    fn alloc_free(&mut self, key: u32) -> Option<u32> {
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
        if matches!(e.slot, Slot::Incomplete | Slot::Probe) {
            self.timer_unlink(slot);
        }
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
            self.pkt_next[node as usize] = self.pkt_free;
            self.pkt_free = node;
            self.pending -= 1;
            node = next;
        }
        let e = &mut self.entries[slot as usize];
        e.q_head = NIL;
        e.q_tail = NIL;
        e.q_len = 0;
        n
    }

    // ---- timer list ----

    fn timer_push(&mut self, slot: u32) {
        let tail = self.timer_tail;
        let e = &mut self.entries[slot as usize];
        e.t_prev = tail;
        e.t_next = NIL;
        if tail == NIL {
            self.timer_head = slot;
        } else {
            self.entries[tail as usize].t_next = slot;
        }
        self.timer_tail = slot;
    }

    /// Unlinks `slot` from the timer list; does nothing when it is not linked.
    fn timer_unlink(&mut self, slot: u32) {
        let Entry { t_prev, t_next, .. } = self.entries[slot as usize];
        if t_prev == NIL && self.timer_head != slot {
            return;
        }
        if t_prev == NIL {
            self.timer_head = t_next;
        } else {
            self.entries[t_prev as usize].t_next = t_next;
        }
        if t_next == NIL {
            self.timer_tail = t_prev;
        } else {
            self.entries[t_next as usize].t_prev = t_prev;
        }
        let e = &mut self.entries[slot as usize];
        e.t_prev = NIL;
        e.t_next = NIL;
    }

    // ---- index: open addressing, linear probing, backward-shift deletion ----

    fn home(&self, key: u32) -> usize {
        // Fibonacci hashing: the top bits of key x 2^32/phi spread consecutive addresses.
        ((u64::from(key.wrapping_mul(0x9E37_79B9)) << self.index_bits) >> 32) as usize
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn find(&self, key: u32) -> Option<u32> {
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

    fn index_insert(&mut self, key: u32, slot: u32) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.index[i] != NIL {
            i = (i + 1) & mask;
        }
        self.index[i] = slot;
    }

    fn index_remove(&mut self, key: u32) {
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
        }
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, n)
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
        a: Ipv4Addr,
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
            // Timer list: consistent links, exactly the Incomplete and Probe entries,
            // deadlines in order.
            let mut linked = HashSet::new();
            let (mut prev, mut cur, mut last_deadline) = (NIL, self.timer_head, 0);
            while cur != NIL {
                let e = &self.entries[cur as usize];
                assert_eq!(e.t_prev, prev, "timer back link");
                assert!(
                    matches!(e.slot, Slot::Incomplete | Slot::Probe),
                    "timer on {:?}",
                    e.slot
                );
                assert!(e.deadline >= last_deadline, "timer order");
                assert!(linked.insert(cur), "timer loop");
                last_deadline = e.deadline;
                prev = cur;
                cur = e.t_next;
            }
            assert_eq!(self.timer_tail, prev, "timer tail");
            for &s in &live {
                let timed = matches!(
                    self.entries[s as usize].slot,
                    Slot::Incomplete | Slot::Probe
                );
                assert_eq!(linked.contains(&s), timed, "timer membership");
            }
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
        let mut t = NeighTable::new(params());
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
        let mut t = NeighTable::new(params());
        for n in 1..=4 {
            assert_eq!(t.resolve(ip(n), u32::from(n), 0), Resolve::QueuedAndRequest);
        }
        assert_eq!(
            t.resolve(ip(5), 5, 0),
            Resolve::Dropped(5, DropReason::TableFull)
        );
        // Fresh Reachable entries are not evicted either.
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
            t.resolve(ip(n), u32::from(n), 0);
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
                            assert_eq!(reason, DropReason::Unresolved);
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
            c.requests_sent > 100 && c.failed > 10 && c.evicted > 10 && c.collected > 10,
            "{c:?}"
        );
    }
}
