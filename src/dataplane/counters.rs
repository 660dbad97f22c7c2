//! Per-worker counters: written only by their worker, summed by the control
//! thread. Each worker's block sits on its own cache lines.
//!
//! Writes are a relaxed load plus a relaxed store (plain moves on x86): no
//! locked read-modify-write on the fast path, which is sound because each
//! block has exactly one writer.

use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A fieldless enum with a stable snake_case name per variant, `ALL` and
/// `COUNT` (counter arrays are indexed by the variant).
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum $name { $($variant,)* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// Stable snake_case name used in listings and metrics.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }
    };
}

named_enum!(
    /// Why a packet was dropped. Every drop has one, and a counter.
    DropReason {
    NotForUs => "not_for_us",
    UnknownEthertype => "unknown_ethertype",
    MultiSegment => "multi_segment",
    BadEthernet => "bad_ethernet",
    BadArp => "bad_arp",
    ArpNotForUs => "arp_not_for_us",
    BadIpHeader => "bad_ip_header",
    BadIpChecksum => "bad_ip_checksum",
    IpFragment => "ip_fragment",
    IpOptions => "ip_options",
    NotHost => "not_host",
    MartianSrcMulticast => "martian_src_multicast",
    MartianSrcLimitedBroadcast => "martian_src_limited_broadcast",
    MartianSrcZeronet => "martian_src_zeronet",
    MartianSrcUnspecified => "martian_src_unspecified",
    MartianSrcLoopback => "martian_src_loopback",
    MartianSrcLocal => "martian_src_local",
    MartianSrcDirectedBroadcast => "martian_src_directed_broadcast",
    MartianDstZeronet => "martian_dst_zeronet",
    MartianDstLoopback => "martian_dst_loopback",
    DstBroadcast => "dst_broadcast",
    DstMulticast => "dst_multicast",
    BadIcmpv6 => "bad_icmpv6",
    BadNd => "bad_nd",
    NdNotForUs => "nd_not_for_us",
    NdDuplicateAddress => "nd_duplicate_address",
    NdNoRoom => "nd_no_room",
    BadMld => "bad_mld",
    BadIcmp => "bad_icmp",
    IcmpUnhandled => "icmp_unhandled",
    NoService => "no_service",
    VipInactive => "vip_inactive",
    UnsupportedProto => "unsupported_protocol",
    NoRoute => "no_route",
    NeighQueueFull => "neigh_queue_full",
    NeighPoolFull => "neigh_pending_pool_full",
    NeighShareLimit => "neigh_pending_share_limit",
    NeighTableFull => "neigh_table_full",
    NeighFailed => "neigh_unresolved",
    NeighEvicted => "neigh_evicted",
    NoMbuf => "no_mbuf",
    TxFull => "tx_full",
    SteerFull => "steer_full",
    ExceptionFull => "exception_queue_full",
    ExceptionRateLimit => "exception_rate_limit",
    ExceptionNoMbuf => "exception_no_mbuf",
}
);

named_enum!(
    /// Things the data plane counts besides drops.
    Event {
    RxPackets => "rx_packets",
    RxBytes => "rx_bytes",
    TxPackets => "tx_packets",
    TxBytes => "tx_bytes",
    ArpRequestsIn => "arp_requests_in",
    ArpRepliesIn => "arp_replies_in",
    ArpRepliesOut => "arp_replies_out",
    ArpRequestsOut => "arp_requests_out",
    GarpSent => "garp_sent",
    UnsolicitedNaSent => "unsolicited_na_sent",
    NeighLearned => "neigh_learned",
    NeighRefreshes => "neigh_refresh_probes",
    NeighRequestsUnqueued => "neigh_requests_without_queue",
    NeighEvictedStale => "neigh_evicted_stale",
    NeighEvictedIncomplete => "neigh_evicted_incomplete",
    NeighIncompleteLimited => "neigh_incomplete_limited",
    NeighLearnIgnoredFull => "neigh_learn_ignored_full",
    NeighDelayConfirmed => "neigh_delay_confirmed",
    NdSolicitsIn => "nd_solicits_in",
    NdAdvertsOut => "nd_adverts_out",
    NdAdvertsIn => "nd_adverts_in",
    NdSolicitsOut => "nd_solicits_out",
    NdDadDefended => "nd_dad_defended",
    MldQueriesIn => "mld_queries_in",
    MldReportsOut => "mld_reports_out",
    IcmpEchoIn => "icmp_echo_in",
    IcmpEchoOut => "icmp_echo_out",
    Forwarded => "forwarded",
    ForwardDrops => "forward_drops",
    SteeredOut => "steered_out",
    SteeredIn => "steered_in",
    LoopTurns => "loop_turns",
    Bursts => "rx_bursts",
    Stalls => "stalls",
    StallMicros => "stall_us",
    ExceptionToKernel => "exception_to_kernel",
    ExceptionArpCopies => "exception_arp_copies",
    ExceptionFromKernel => "exception_from_kernel",
    IdleSleeps => "idle_sleeps",
    IdleSleepMicros => "idle_sleep_us",
    BusyCycles => "busy_cycles",
    IdleCycles => "idle_cycles",
}
);

/// One worker's counters.
#[derive(Debug)]
pub struct WorkerCounters {
    drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
    events: CachePadded<[AtomicU64; Event::COUNT]>,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            drops: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            events: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerCounters {
    /// Count a drop (owner only).
    #[inline]
    pub fn drop_pkt(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1)
    }
    /// Count `n` drops at once (owner only).
    #[inline]
    pub fn drop_n(&self, r: DropReason, n: u64) {
        bump(&self.drops[r as usize], n)
    }
    /// Count an event (owner only).
    #[inline]
    pub fn add(&self, e: Event, n: u64) {
        bump(&self.events[e as usize], n)
    }
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }
    pub fn event(&self, e: Event) -> u64 {
        self.events[e as usize].load(Relaxed)
    }
    pub fn total_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.drops(*r)).sum()
    }
}

/// Counters of every worker plus their sum (control side).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub drops: Vec<(&'static str, u64)>,
    pub events: Vec<(&'static str, u64)>,
}

impl CounterSnapshot {
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerCounters>) -> Self {
        let mut drops = [0u64; DropReason::COUNT];
        let mut events = [0u64; Event::COUNT];
        for w in workers {
            for r in DropReason::ALL {
                drops[*r as usize] += w.drops(*r);
            }
            for e in Event::ALL {
                events[*e as usize] += w.event(*e);
            }
        }
        CounterSnapshot {
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name(), drops[*r as usize]))
                .collect(),
            events: Event::ALL
                .iter()
                .map(|e| (e.name(), events[*e as usize]))
                .collect(),
        }
    }

    pub fn event(&self, name: &str) -> u64 {
        self.events
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn drop_count(&self, name: &str) -> u64 {
        self.drops
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_workers_by_name() {
        let (a, b) = (WorkerCounters::default(), WorkerCounters::default());
        a.drop_pkt(DropReason::BadArp);
        b.drop_pkt(DropReason::BadArp);
        b.drop_pkt(DropReason::TxFull);
        a.add(Event::RxPackets, 10);
        b.add(Event::RxPackets, 5);
        let s = CounterSnapshot::sum([&a, &b]);
        assert_eq!(s.drop_count("bad_arp"), 2);
        assert_eq!(s.drop_count("tx_full"), 1);
        assert_eq!(s.event("rx_packets"), 15);
        assert_eq!(a.total_drops(), 1);
    }

    #[test]
    fn names_are_unique() {
        let mut n: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), DropReason::COUNT);
    }
}
