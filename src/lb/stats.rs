//! Per-core traffic counters for the control plane (`ipvsadm --stats`,
//! `--rate`, drop reasons).
//!
//! Each worker owns one [`StatsTable`] and is its only writer: every bump is
//! a relaxed load followed by a relaxed store (plain moves, no locked
//! read-modify-write). The control thread reads any number of tables and
//! adds them up with [`StatsTable::sum`]. Counters are per real server
//! (indexed by [`DestId`]), per service (indexed by [`Service::slot`]) and
//! per drop reason ([`FwdDrop`]) and event ([`FwdEvent`]); all arrays have
//! a fixed size chosen at start-up, out-of-range indexes are not counted.
//!
//! "In" is the client → server direction, "out" server → client, as in
//! `ipvsadm --stats`; bytes are IP lengths (header included), as the kernel
//! counts `skb->len` at its hooks.
//!
//! [`Service::slot`]: crate::lb::service::Service::slot

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::lb::fwd::FwdDrop;
use crate::lb::load::DestId;

/// Things worth counting that are not drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FwdEvent {
    /// ICMP fragmentation needed sent back for a TUN packet over the MTU.
    FragNeededSent,
    /// ICMP time exceeded sent back for a request with TTL ≤ 1.
    TimeExceededSent,
    /// ICMP error about a connection translated and forwarded.
    IcmpForwarded,
    /// Packet handed to another core (NAT reply owner).
    SteeredOut,
    /// Packet received from another core and processed here.
    SteeredIn,
    /// NAT redirect entry created (connection installed on another core).
    RedirectCreated,
    /// UDP datagram scheduled on its own (`-o`), no connection kept.
    OnePacket,
    /// Connection replaced by a new SYN (TIME_WAIT/CLOSE reuse).
    ConnReused,
    /// Persistence template learned from another core.
    TemplateLearned,
    /// New template not carried to another core (notes buffer or that
    /// core's inbox full).
    TemplateNoteLost,
    /// Connection of an unavailable server expired by a packet
    /// (`expire_nodest_conn`, or a new SYN on a quiescent server's
    /// connection); the packet is scheduled afresh where it may be.
    NodestExpired,
    /// Entry dropped by drop_entry ([`crate::lb::defense`]).
    DefenseDropped,
    /// This core's table came under pressure with drop_entry automatic, or
    /// drop_entry was set to 3 (counted at each switch to on).
    DropEntryOn,
    /// secure_tcp switched on on this core.
    SecureTcpOn,
    /// SYN proxy: SYN answered with a cookie SYN-ACK (no state kept).
    SynproxyCookieSent,
    /// SYN proxy: ACK with a valid cookie (a connection is opened).
    SynproxyAckValid,
    /// SYN proxy: the cookie ACK carried data and no slot was free to hold
    /// it: not passed on (the client retransmits it).
    SynproxyAckData,
    /// SYN proxy: the real server's SYN-ACK, answered with the ACK.
    SynproxyServerSynAck,
    /// SYN proxy: a client's first data segment kept until its server's
    /// handshake completes (then sent in place of the bare ACK).
    SynproxyDataHeld,
    /// SYN proxy: packet whose sequence/acknowledgement numbers were shifted.
    SynproxySeqAdjusted,
    /// A non-first fragment forwarded like its datagram's first fragment.
    FragmentForwarded,
    /// ICMP error not sent: the global rate limit (Linux RateLimitGlobal).
    IcmpRateLimitedGlobal,
    /// ICMP error not sent: its destination's rate limit (RateLimitHost).
    IcmpRateLimitedHost,
    /// `sloppy_tcp`: a TCP packet without SYN scheduled as a new connection.
    SloppyScheduled,
}

impl FwdEvent {
    /// Number of events.
    pub const COUNT: usize = 24;
    /// Every event, in counter order.
    pub const ALL: [FwdEvent; FwdEvent::COUNT] = [
        FwdEvent::FragNeededSent,
        FwdEvent::TimeExceededSent,
        FwdEvent::IcmpForwarded,
        FwdEvent::SteeredOut,
        FwdEvent::SteeredIn,
        FwdEvent::RedirectCreated,
        FwdEvent::OnePacket,
        FwdEvent::ConnReused,
        FwdEvent::TemplateLearned,
        FwdEvent::TemplateNoteLost,
        FwdEvent::NodestExpired,
        FwdEvent::DefenseDropped,
        FwdEvent::DropEntryOn,
        FwdEvent::SecureTcpOn,
        FwdEvent::SynproxyCookieSent,
        FwdEvent::SynproxyAckValid,
        FwdEvent::SynproxyAckData,
        FwdEvent::SynproxyServerSynAck,
        FwdEvent::SynproxyDataHeld,
        FwdEvent::SynproxySeqAdjusted,
        FwdEvent::FragmentForwarded,
        FwdEvent::IcmpRateLimitedGlobal,
        FwdEvent::IcmpRateLimitedHost,
        FwdEvent::SloppyScheduled,
    ];

    /// Counter index.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            FwdEvent::FragNeededSent => "icmp_frag_needed_sent",
            FwdEvent::TimeExceededSent => "icmp_time_exceeded_sent",
            FwdEvent::IcmpForwarded => "icmp_forwarded",
            FwdEvent::SteeredOut => "steered_out",
            FwdEvent::SteeredIn => "steered_in",
            FwdEvent::RedirectCreated => "redirect_created",
            FwdEvent::OnePacket => "one_packet",
            FwdEvent::ConnReused => "conn_reused",
            FwdEvent::TemplateLearned => "template_learned",
            FwdEvent::TemplateNoteLost => "template_note_lost",
            FwdEvent::NodestExpired => "nodest_expired",
            FwdEvent::DefenseDropped => "defense_dropped_entry",
            FwdEvent::DropEntryOn => "defense_drop_entry_on",
            FwdEvent::SecureTcpOn => "defense_secure_tcp_on",
            FwdEvent::SynproxyCookieSent => "synproxy_syn_cookie_sent",
            FwdEvent::SynproxyAckValid => "synproxy_ack_valid",
            FwdEvent::SynproxyAckData => "synproxy_ack_data_dropped",
            FwdEvent::SynproxyServerSynAck => "synproxy_server_synack",
            FwdEvent::SynproxyDataHeld => "synproxy_data_held",
            FwdEvent::SynproxySeqAdjusted => "synproxy_seq_adjusted",
            FwdEvent::FragmentForwarded => "fragments_forwarded",
            FwdEvent::IcmpRateLimitedGlobal => "icmp_rate_limited_global",
            FwdEvent::IcmpRateLimitedHost => "icmp_rate_limited_host",
            FwdEvent::SloppyScheduled => "sloppy_scheduled",
        }
    }
}

/// One set of ipvsadm counters (single writer).
#[derive(Debug, Default)]
pub struct Counters {
    conns: AtomicU64,
    in_pkts: AtomicU64,
    out_pkts: AtomicU64,
    in_bytes: AtomicU64,
    out_bytes: AtomicU64,
}

/// Values of one set of counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_pkts: u64,
    /// Packets server → client.
    pub out_pkts: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

impl CounterValues {
    fn add(&mut self, o: &CounterValues) {
        self.conns += o.conns;
        self.in_pkts += o.in_pkts;
        self.out_pkts += o.out_pkts;
        self.in_bytes += o.in_bytes;
        self.out_bytes += o.out_bytes;
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    /// Current values.
    pub fn values(&self) -> CounterValues {
        CounterValues {
            conns: self.conns.load(Relaxed),
            in_pkts: self.in_pkts.load(Relaxed),
            out_pkts: self.out_pkts.load(Relaxed),
            in_bytes: self.in_bytes.load(Relaxed),
            out_bytes: self.out_bytes.load(Relaxed),
        }
    }
}

/// One core's counters.
#[derive(Debug)]
pub struct StatsTable {
    dests: Box<[Counters]>,
    /// Per real server: TCP connections that expired half-open (SYN_RECV
    /// or SYN_SENT), i.e. SYNs the server never answered (passive health
    /// checking reads them).
    syn_timeouts: Box<[AtomicU64]>,
    services: Box<[Counters]>,
    drops: Box<[AtomicU64]>,
    events: Box<[AtomicU64]>,
}

/// The sum of several cores' counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSum {
    /// Per real server, indexed by [`DestId`].
    pub dests: Vec<CounterValues>,
    /// Per service, indexed by service slot.
    pub services: Vec<CounterValues>,
    /// Per drop reason, indexed by [`FwdDrop::index`].
    pub drops: [u64; FwdDrop::COUNT],
    /// Per event, indexed by [`FwdEvent::index`].
    pub events: [u64; FwdEvent::COUNT],
}

impl StatsSum {
    /// Counters of a real server.
    pub fn dest(&self, id: DestId) -> CounterValues {
        self.dests.get(id as usize).copied().unwrap_or_default()
    }
    /// Counters of a service slot.
    pub fn service(&self, slot: u32) -> CounterValues {
        self.services
            .get(slot as usize)
            .copied()
            .unwrap_or_default()
    }
    /// Drops for one reason.
    pub fn drop_count(&self, r: FwdDrop) -> u64 {
        self.drops[r.index()]
    }
    /// Count of one event.
    pub fn event(&self, e: FwdEvent) -> u64 {
        self.events[e.index()]
    }
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl StatsTable {
    /// Counters for `dest_capacity` real servers and `service_capacity`
    /// service slots.
    pub fn new(dest_capacity: usize, service_capacity: usize) -> Self {
        StatsTable {
            dests: (0..dest_capacity).map(|_| Counters::default()).collect(),
            syn_timeouts: zeros(dest_capacity),
            services: (0..service_capacity).map(|_| Counters::default()).collect(),
            drops: zeros(FwdDrop::COUNT),
            events: zeros(FwdEvent::COUNT),
        }
    }

    /// Number of real-server counters.
    pub fn dest_capacity(&self) -> usize {
        self.dests.len()
    }

    /// Number of service counters.
    pub fn service_capacity(&self) -> usize {
        self.services.len()
    }

    /// A new connection to `dest` of service slot `svc`.
    #[inline]
    pub fn add_conn(&self, dest: DestId, svc: u32) {
        if let Some(c) = self.dests.get(dest as usize) {
            bump(&c.conns, 1);
        }
        if let Some(c) = self.services.get(svc as usize) {
            bump(&c.conns, 1);
        }
    }

    /// A client → server packet of `bytes`.
    #[inline]
    pub fn add_in(&self, dest: DestId, svc: u32, bytes: u64) {
        if let Some(c) = self.dests.get(dest as usize) {
            bump(&c.in_pkts, 1);
            bump(&c.in_bytes, bytes);
        }
        if let Some(c) = self.services.get(svc as usize) {
            bump(&c.in_pkts, 1);
            bump(&c.in_bytes, bytes);
        }
    }

    /// A server → client packet of `bytes`.
    #[inline]
    pub fn add_out(&self, dest: DestId, svc: u32, bytes: u64) {
        if let Some(c) = self.dests.get(dest as usize) {
            bump(&c.out_pkts, 1);
            bump(&c.out_bytes, bytes);
        }
        if let Some(c) = self.services.get(svc as usize) {
            bump(&c.out_pkts, 1);
            bump(&c.out_bytes, bytes);
        }
    }

    /// A connection to `dest` expired half-open.
    #[inline]
    pub fn count_syn_timeout(&self, dest: DestId) {
        if let Some(c) = self.syn_timeouts.get(dest as usize) {
            bump(c, 1);
        }
    }

    /// This core's half-open expiries of a real server.
    pub fn syn_timeouts(&self, id: DestId) -> u64 {
        self.syn_timeouts
            .get(id as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    /// One real server's half-open expiries over several cores' tables.
    pub fn sum_syn_timeouts<'t>(
        tables: impl IntoIterator<Item = &'t StatsTable>,
        id: DestId,
    ) -> u64 {
        tables.into_iter().map(|t| t.syn_timeouts(id)).sum()
    }

    /// Count a drop.
    #[inline]
    pub fn count_drop(&self, r: FwdDrop) {
        if let Some(c) = self.drops.get(r.index()) {
            bump(c, 1);
        }
    }

    /// Count an event.
    #[inline]
    pub fn count_event(&self, e: FwdEvent) {
        if let Some(c) = self.events.get(e.index()) {
            bump(c, 1);
        }
    }

    /// This core's counters of a real server.
    pub fn dest(&self, id: DestId) -> CounterValues {
        self.dests
            .get(id as usize)
            .map(Counters::values)
            .unwrap_or_default()
    }

    /// This core's counters of a service slot.
    pub fn service(&self, slot: u32) -> CounterValues {
        self.services
            .get(slot as usize)
            .map(Counters::values)
            .unwrap_or_default()
    }

    /// This core's drops for one reason.
    pub fn drop_count(&self, r: FwdDrop) -> u64 {
        self.drops.get(r.index()).map_or(0, |c| c.load(Relaxed))
    }

    /// This core's count of one event.
    pub fn event(&self, e: FwdEvent) -> u64 {
        self.events.get(e.index()).map_or(0, |c| c.load(Relaxed))
    }

    /// One real server's counters added up over several cores' tables
    /// (control thread: its periodic rate sampling reads only the servers
    /// in use, not a whole-capacity [`StatsTable::sum`]).
    pub fn sum_dest<'t>(
        tables: impl IntoIterator<Item = &'t StatsTable>,
        id: DestId,
    ) -> CounterValues {
        Self::sum_each(tables, |t| t.dest(id))
    }

    /// One service slot's counters added up over several cores' tables.
    pub fn sum_service<'t>(
        tables: impl IntoIterator<Item = &'t StatsTable>,
        slot: u32,
    ) -> CounterValues {
        Self::sum_each(tables, |t| t.service(slot))
    }

    fn sum_each<'t>(
        tables: impl IntoIterator<Item = &'t StatsTable>,
        pick: impl Fn(&StatsTable) -> CounterValues,
    ) -> CounterValues {
        let mut out = CounterValues::default();
        for t in tables {
            out.add(&pick(t));
        }
        out
    }

    /// Add up several cores' tables (control thread). The result has the
    /// largest capacities among them.
    pub fn sum(tables: &[&StatsTable]) -> StatsSum {
        let nd = tables.iter().map(|t| t.dests.len()).max().unwrap_or(0);
        let ns = tables.iter().map(|t| t.services.len()).max().unwrap_or(0);
        let mut out = StatsSum {
            dests: vec![CounterValues::default(); nd],
            services: vec![CounterValues::default(); ns],
            drops: [0; FwdDrop::COUNT],
            events: [0; FwdEvent::COUNT],
        };
        for t in tables {
            for (o, c) in out.dests.iter_mut().zip(t.dests.iter()) {
                o.add(&c.values());
            }
            for (o, c) in out.services.iter_mut().zip(t.services.iter()) {
                o.add(&c.values());
            }
            for (o, c) in out.drops.iter_mut().zip(t.drops.iter()) {
                *o += c.load(Relaxed);
            }
            for (o, c) in out.events.iter_mut().zip(t.events.iter()) {
                *o += c.load(Relaxed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_server_sums_match_the_whole_table_sum() {
        let a = StatsTable::new(4, 2);
        let b = StatsTable::new(4, 2);
        a.add_conn(1, 0);
        a.add_in(1, 0, 60);
        b.add_in(1, 0, 40);
        b.add_out(3, 1, 1500);
        let whole = StatsTable::sum(&[&a, &b]);
        for id in 0..4 {
            assert_eq!(StatsTable::sum_dest([&a, &b], id), whole.dest(id));
        }
        for slot in 0..2 {
            assert_eq!(StatsTable::sum_service([&a, &b], slot), whole.service(slot));
        }
        let one = StatsTable::sum_dest([&a, &b], 1);
        assert_eq!((one.conns, one.in_pkts, one.in_bytes), (1, 2, 100));
        // out of range: zero, as for the whole-table sum
        assert_eq!(StatsTable::sum_dest([&a, &b], 9), CounterValues::default());
    }

    #[test]
    fn counts_and_sums() {
        let a = StatsTable::new(4, 2);
        let b = StatsTable::new(4, 2);
        a.add_conn(1, 0);
        a.add_in(1, 0, 60);
        a.add_in(1, 0, 40);
        b.add_out(1, 0, 1500);
        b.add_conn(3, 1);
        a.count_drop(FwdDrop::TableFull);
        b.count_drop(FwdDrop::TableFull);
        b.count_event(FwdEvent::SteeredIn);
        // Out of range: ignored.
        a.add_conn(9, 9);
        assert_eq!(
            a.dest(1),
            CounterValues {
                conns: 1,
                in_pkts: 2,
                in_bytes: 100,
                ..CounterValues::default()
            }
        );
        let s = StatsTable::sum(&[&a, &b]);
        assert_eq!(
            s.dest(1),
            CounterValues {
                conns: 1,
                in_pkts: 2,
                out_pkts: 1,
                in_bytes: 100,
                out_bytes: 1500,
            }
        );
        assert_eq!(s.service(0), s.dest(1));
        assert_eq!(s.service(1).conns, 1);
        assert_eq!(s.drop_count(FwdDrop::TableFull), 2);
        assert_eq!(s.event(FwdEvent::SteeredIn), 1);
        assert_eq!(s.dest(99), CounterValues::default());
        for (i, r) in FwdDrop::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, e) in FwdEvent::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let names: std::collections::HashSet<&str> =
            FwdDrop::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), FwdDrop::COUNT);
    }
}
