//! The lock-free link between one worker and the sync daemons
//! ([`crate::control::syncd`]).
//!
//! **What.** Each worker has one [`SyncFeed`]: `out`, a bounded queue of
//! sync records the worker's director decided to send (the master daemon
//! drains every worker's queue and batches the records into messages), and
//! `inbox`, received entries the backup daemon addressed to this worker
//! because it owns their tuples (the ownership rule). `master` says whether
//! the worker runs the sync decision at all; the sync knobs
//! (`--set-sync`) come through a small sequence lock the worker reads once
//! per loop turn (a few relaxed loads, never a wait).
//!
//! **Why.** Per packet a worker only appends to its director's buffer; once
//! per loop turn, if there is any, it moves that buffer to `out` as one
//! batch (a single-producer ring, [`SpscRing`]: the records' bytes and one
//! release store, no lock, no read-modify-write per record, no syscall),
//! so a master costs the data path almost nothing and a slow or absent
//! daemon never blocks a worker. A turn with nothing to hand over or
//! install costs a handful of loads (the master switch, the knobs'
//! sequence, whether the buffer and inboxes are empty).
//!
//! **Failure modes.** A full `out` drops the record (`sync_feed_full`);
//! the connection is synced again at its next threshold. A full `inbox`
//! is counted by the backup daemon. Entries the worker cannot install are
//! counted per reason ([`SyncRefused`]).
//!
//! **IPv6.** The IPv6 table has its own pair of queues (`out6`, `inbox6`:
//! a record of 16-byte addresses is twice the size of an IPv4 one, which
//! keeps its small queue; the IPv6 queue is smaller). IPv6 connections to
//! an IPv4 server (NAT64, TUN IPv6-in-IPv4) are not sent
//! (`not_sent_mixed_family`, see [`crate::lb::director`]'s sync module).

use super::sync_ring::SpscRing;
use crate::lb::director::{CoreLb, SyncInstalled, SyncRefused};
use crate::lb::sync::{SyncRecord, SyncSettings, SyncedConn};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Records a worker's `out` queue holds (60 bytes each: ~4 MB per worker,
/// allocated at start).
pub const SYNC_FEED_CAPACITY: usize = 65536;
/// Entries a worker's `inbox` holds.
pub const SYNC_INBOX_CAPACITY: usize = 8192;
/// Records a worker's `out6` queue holds (~100 bytes each: ~1.6 MB per
/// worker, allocated at start).
pub const SYNC_FEED6_CAPACITY: usize = 16384;

/// One received entry for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncDelivery<K = u32> {
    pub conn: SyncedConn<K>,
    /// Install only the redirect entry (this worker sees the requests of a
    /// NAT connection another worker owns).
    pub redirect: bool,
}

/// Counters a worker writes (single writer: plain load + store).
#[derive(Debug, Default)]
pub struct SyncFeedCounters {
    pub fed: AtomicU64,
    pub feed_full: AtomicU64,
    pub buffer_full: AtomicU64,
    pub installed: AtomicU64,
    pub updated: AtomicU64,
    pub no_service: AtomicU64,
    pub no_dest: AtomicU64,
    pub local_addr_not_in_pool: AtomicU64,
    pub not_proxied: AtomicU64,
    pub tuple_in_use: AtomicU64,
    pub table_full: AtomicU64,
    pub mixed_family: AtomicU64,
}

impl SyncFeedCounters {
    /// `(name, value)` of every counter, for `--counters`.
    pub fn values(&self) -> [(&'static str, u64); 12] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("fed", g(&self.fed)),
            ("feed_full", g(&self.feed_full)),
            ("buffer_full", g(&self.buffer_full)),
            ("installed", g(&self.installed)),
            ("updated", g(&self.updated)),
            ("refused_no_service", g(&self.no_service)),
            ("refused_no_dest", g(&self.no_dest)),
            (
                "refused_local_addr_not_in_pool",
                g(&self.local_addr_not_in_pool),
            ),
            ("refused_not_proxied", g(&self.not_proxied)),
            ("refused_tuple_in_use", g(&self.tuple_in_use)),
            ("refused_table_full", g(&self.table_full)),
            ("not_sent_mixed_family", g(&self.mixed_family)),
        ]
    }
}

fn bump(a: &AtomicU64, n: u64) {
    if n != 0 {
        a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// One worker's queues to and from the sync daemons.
#[derive(Debug)]
pub struct SyncFeed {
    pub master: AtomicBool,
    /// Sequence of the settings words: odd while the control thread writes.
    settings_seq: AtomicU32,
    /// threshold, period, refresh period (s), retries | persist_mode << 8 |
    /// version << 16.
    settings: [AtomicU32; 4],
    /// The sequence of the knobs the worker last took (the worker's only;
    /// odd at first, so the first turn takes them).
    settings_seen: AtomicU32,
    /// Records to the master daemon (the worker produces, the daemon
    /// consumes, each a batch at a time).
    pub out: SpscRing<SyncRecord>,
    pub inbox: ArrayQueue<SyncDelivery>,
    /// The same for the IPv6 table.
    pub out6: SpscRing<SyncRecord<u128>>,
    pub inbox6: ArrayQueue<SyncDelivery<u128>>,
    pub counters: SyncFeedCounters,
    /// The data-plane transport's configuration and counters
    /// ([`super::sync_tx`]).
    pub dp: super::sync_tx::SyncTxShared,
}

/// Where a worker's records go instead of `out` when the master sends
/// from the data plane ([`super::sync_tx`]): each takes a batch and says
/// how many records it took.
pub trait RecordSink {
    fn take(&mut self, recs: &[SyncRecord]) -> usize;
    fn take6(&mut self, recs: &[SyncRecord<u128>]) -> usize;
}

impl Default for SyncFeed {
    fn default() -> Self {
        SyncFeed {
            master: AtomicBool::new(false),
            settings_seq: AtomicU32::new(0),
            settings: Self::words(&SyncSettings::default()).map(AtomicU32::new),
            settings_seen: AtomicU32::new(u32::MAX),
            out: SpscRing::new(SYNC_FEED_CAPACITY),
            inbox: ArrayQueue::new(SYNC_INBOX_CAPACITY),
            out6: SpscRing::new(SYNC_FEED6_CAPACITY),
            inbox6: ArrayQueue::new(SYNC_INBOX_CAPACITY),
            counters: SyncFeedCounters::default(),
            dp: Default::default(),
        }
    }
}

impl SyncFeed {
    fn words(s: &SyncSettings) -> [u32; 4] {
        [
            s.threshold,
            s.period,
            s.refresh_period_s,
            u32::from(s.retries) | u32::from(s.persist_mode) << 8 | u32::from(s.version) << 16,
        ]
    }

    /// Publish new sync knobs (the control thread, the only writer).
    pub fn set_settings(&self, s: &SyncSettings) {
        let seq = self.settings_seq.load(Ordering::Relaxed);
        self.settings_seq
            .store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (a, w) in self.settings.iter().zip(Self::words(s)) {
            a.store(w, Ordering::Relaxed);
        }
        self.settings_seq
            .store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The published knobs, or `None` while they are being written.
    pub fn settings(&self) -> Option<SyncSettings> {
        let seq = self.settings_seq.load(Ordering::Acquire);
        if seq & 1 != 0 {
            return None;
        }
        let w = [0, 1, 2, 3].map(|i| self.settings[i].load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        if self.settings_seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        Some(SyncSettings {
            threshold: w[0],
            period: w[1],
            refresh_period_s: w[2],
            retries: w[3] as u8,
            persist_mode: (w[3] >> 8) & 1 != 0,
            version: (w[3] >> 16) as u8,
        })
    }

    /// The worker's turn: follow the master switch and the knobs, hand
    /// the director's records to `out` as one batch, install what the
    /// backup delivered. Each step only when it has something to do. The
    /// records go to `sink` instead of `out` when there is one.
    pub fn exchange(&self, lb: &mut CoreLb, now_ms: u64, sink: Option<&mut dyn RecordSink>) {
        let master = self.master.load(Ordering::Relaxed);
        if master != lb.sync_master() {
            lb.set_sync_master(master);
        }
        // the knobs only when the control thread published new ones (the
        // director keeps them whether or not it is a master)
        let seq = self.settings_seq.load(Ordering::Relaxed);
        if seq != self.settings_seen.load(Ordering::Relaxed) {
            if let Some(s) = self.settings() {
                if s != lb.sync_settings() {
                    lb.set_sync_settings(s);
                }
                self.settings_seen.store(seq, Ordering::Relaxed);
            }
        }
        if lb.sync_pending() {
            let f = match sink {
                Some(s) => {
                    // the two closures run one after the other
                    let s = std::cell::RefCell::new(s);
                    lb.flush_sync_records(|r| s.borrow_mut().take(r), |r| s.borrow_mut().take6(r))
                }
                None => {
                    lb.flush_sync_records(|r| self.out.push_slice(r), |r| self.out6.push_slice(r))
                }
            };
            bump(&self.counters.buffer_full, f.lost);
            bump(&self.counters.fed, f.fed);
            bump(&self.counters.feed_full, f.full);
            bump(&self.counters.mixed_family, f.mixed_family);
        }
        if self.inbox.is_empty() && self.inbox6.is_empty() {
            return;
        }
        let c = &self.counters;
        let count = |outcome: Result<SyncInstalled, SyncRefused>| match outcome {
            Ok(SyncInstalled::New) => bump(&c.installed, 1),
            Ok(SyncInstalled::Updated) => bump(&c.updated, 1),
            Err(SyncRefused::NoService) => bump(&c.no_service, 1),
            Err(SyncRefused::NoDest) => bump(&c.no_dest, 1),
            Err(SyncRefused::LocalAddrNotInPool) => bump(&c.local_addr_not_in_pool, 1),
            Err(SyncRefused::NotProxied) => bump(&c.not_proxied, 1),
            Err(SyncRefused::Table(crate::lb::conn::ConnError::TableFull)) => {
                bump(&c.table_full, 1)
            }
            Err(SyncRefused::Table(_)) => bump(&c.tuple_in_use, 1),
        };
        while let Some(d) = self.inbox.pop() {
            count(lb.install_synced(&d.conn, d.redirect, now_ms));
        }
        while let Some(d) = self.inbox6.pop() {
            count(lb.install_synced6(&d.conn, d.redirect, now_ms));
        }
    }
}
