//! Statistics presentation: `-Z` baselines and rate estimators per service
//! and server, over the counters a [`StatsSource`] gives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;

use super::ControlState;
use crate::control::estimator::{Counters, RateEstimator};
use crate::control::listing::{
    ConnView, CoreCounters, DestView, LatencyView, PortCounters, ServiceView,
};
use crate::lb::load::DestId;
use crate::lb::service::{PersistMask, ServiceKey};

/// Connection counts of one real server, summed over cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnCounts {
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// PersistConn (templates).
    pub persistent: u32,
}

/// What the daemon knows and the control state does not: live counters,
/// connections, per-core and per-port counters, histograms. The daemon
/// implements it over its workers' counters; tests use a fake.
pub trait StatsSource {
    /// Milliseconds on a monotonic clock (drives the rate estimators).
    fn now_ms(&self) -> u64;
    /// Cumulative counters of a service slot since vsd started (summed
    /// over cores). By slot, as the control state assigns it: a service
    /// added but not yet published already has its slot, and the counters
    /// a deleted service left there are its new baseline.
    fn service_counters(&self, slot: u32) -> Counters;
    /// Cumulative counters of a real-server slot (summed over cores).
    fn dest_counters(&self, id: DestId) -> Counters;
    /// Connection counts of a real-server slot.
    fn dest_conns(&self, id: DestId) -> ConnCounts;
    /// Up to `limit` connections (templates included) and how many exist.
    fn connections(&self, limit: usize) -> (Vec<ConnView>, u64);
    /// The `size=` of the listing title: connection-index buckets over all cores.
    fn conn_table_size(&self) -> u64;
    /// Every worker's data-plane counters.
    fn core_counters(&self) -> Vec<CoreCounters>;
    /// Every port's NIC counters.
    fn port_counters(&self) -> Vec<PortCounters>;
    /// Latency histograms.
    fn latency(&self) -> Vec<LatencyView>;
    /// The daemon's status (version, workers, ports...), as `vsadm --status` prints it.
    fn status(&self) -> Value;
    /// The configuration file `--reload` re-reads, if vsd was started with one.
    fn config_path(&self) -> Option<PathBuf>;
    /// The keepalived.conf `--reload` re-reads with it (`vsd --keepalived`).
    fn keepalived_path(&self) -> Option<PathBuf> {
        None
    }
}

/// `-Z` baseline and estimator of one service or server.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    base: Counters,
    est: RateEstimator,
}

impl Tracked {
    fn new(now_ms: u64, raw: &Counters) -> Self {
        Tracked {
            base: *raw,
            est: RateEstimator::new(now_ms, raw),
        }
    }
}

/// Statistics presentation state.
#[derive(Debug, Clone, Default)]
pub(super) struct StatsBook {
    /// By key, with the slot the service had when it was created.
    pub(super) services: HashMap<ServiceKey, (u32, Tracked)>,
    /// By slot, with the identity it was created for: a slot reused by
    /// another server starts over.
    dests: HashMap<DestId, ((ServiceKey, IpAddr, u16), Tracked)>,
}

impl ControlState {
    /// Register baselines and estimators for services and servers created
    /// since the last call, forget deleted services, and start over for a
    /// slot now used by another server.
    pub fn sync_stats(&mut self, stats: &dyn StatsSource) {
        let now = stats.now_ms();
        let keys = self.table.service_keys();
        let table = &self.table;
        // Deleted services and servers are forgotten at once: re-added,
        // they start from zero (IPVS makes them anew, or zeroes a server
        // it takes back from its trash).
        self.book
            .services
            .retain(|k, (slot, _)| table.service_slot(k) == Some(*slot));
        self.book.dests.retain(|id, ((key, addr, port), _)| {
            table
                .dests(key)
                .unwrap_or_default()
                .iter()
                .any(|(i, d)| i == id && d.addr == *addr && d.port == *port)
        });
        for key in keys {
            let Some(slot) = self.table.service_slot(&key) else {
                continue;
            };
            self.book
                .services
                .entry(key)
                .or_insert_with(|| (slot, Tracked::new(now, &stats.service_counters(slot))));
            for (id, d) in self.table.dests(&key).unwrap_or_default() {
                let ident = (key, d.addr, d.port);
                let fresh = match self.book.dests.get(&id) {
                    Some((who, _)) => *who != ident,
                    None => true,
                };
                if fresh {
                    let t = Tracked::new(now, &stats.dest_counters(id));
                    self.book.dests.insert(id, (ident, t));
                }
            }
        }
    }

    /// Forget the totals of a deleted service and deleted servers at once,
    /// so that added again (even within the same restore) they start from
    /// zero.
    pub(super) fn forget_stats(&mut self, service: Option<&ServiceKey>, dests: &[DestId]) {
        if let Some(key) = service {
            self.book.services.remove(key);
        }
        for id in dests {
            self.book.dests.remove(id);
        }
    }

    /// Run the rate estimators (each samples every 2 s); call it often.
    pub fn tick(&mut self, stats: &dyn StatsSource) {
        self.sync_stats(stats);
        let now = stats.now_ms();
        for (slot, t) in self.book.services.values_mut() {
            if t.est.due(now) {
                t.est.sample(now, &stats.service_counters(*slot));
            }
        }
        for (id, (_, t)) in self.book.dests.iter_mut() {
            if t.est.due(now) {
                t.est.sample(now, &stats.dest_counters(*id));
            }
        }
    }

    /// Release every draining slot that no connection or template uses any
    /// more; returns them. Call it only once every worker runs a snapshot
    /// at least as new as the deletions (an older one could still schedule
    /// onto a deleted server).
    pub fn release_drained(&mut self, stats: &dyn StatsSource) -> Vec<DestId> {
        let idle: Vec<DestId> = self
            .draining
            .iter()
            .copied()
            .filter(|id| stats.dest_conns(*id) == ConnCounts::default())
            .collect();
        for id in &idle {
            // Draining slots are always releasable; ignore a mismatch rather than fail.
            let _ = self.release_dest_slot(*id);
        }
        idle
    }

    /// `-Z [service]`: zero the counters and rates of one service and its
    /// servers, or of everything.
    pub fn zero(
        &mut self,
        key: Option<&ServiceKey>,
        stats: &dyn StatsSource,
    ) -> Result<(), String> {
        self.sync_stats(stats);
        let now = stats.now_ms();
        let keys = match key {
            Some(k) => {
                if self.table.service_config(k).is_none() {
                    return Err("No such service".into());
                }
                vec![*k]
            }
            None => self.table.service_keys(),
        };
        for k in keys {
            if let Some((slot, t)) = self.book.services.get_mut(&k) {
                let raw = stats.service_counters(*slot);
                t.base = raw;
                t.est.zero(now, &raw);
            }
            for (id, _) in self.table.dests(&k).unwrap_or_default() {
                if let Some((_, t)) = self.book.dests.get_mut(&id) {
                    let raw = stats.dest_counters(id);
                    t.base = raw;
                    t.est.zero(now, &raw);
                }
            }
        }
        Ok(())
    }

    /// Every service as `-L` shows it (creation order; servers in walking
    /// order), with counters since the last `-Z` and estimated rates.
    pub fn service_views(&self, stats: &dyn StatsSource) -> Vec<ServiceView> {
        self.service_views_with(&|id| stats.dest_counters(id), &|id| stats.dest_conns(id))
            .into_iter()
            .map(|mut v| {
                if let Some((slot, t)) = self.book.services.get(&v.key) {
                    v.stats = stats.service_counters(*slot).since(&t.base);
                    v.rates = t.est.rates();
                }
                v
            })
            .collect()
    }

    pub(super) fn service_views_with(
        &self,
        dest_raw: &dyn Fn(DestId) -> Counters,
        conns: &dyn Fn(DestId) -> ConnCounts,
    ) -> Vec<ServiceView> {
        let mut out = Vec::new();
        for key in self.table.service_keys() {
            let Some(cfg) = self.table.service_config(&key) else {
                continue;
            };
            let dests = self
                .table
                .dests(&key)
                .unwrap_or_default()
                .into_iter()
                .map(|(id, d)| {
                    let raw = dest_raw(id);
                    let (stats, rates) = match self.book.dests.get(&id) {
                        Some((who, t)) if *who == (key, d.addr, d.port) => {
                            (raw.since(&t.base), t.est.rates())
                        }
                        _ => (raw, Default::default()),
                    };
                    let c = conns(id);
                    DestView {
                        addr: d.addr,
                        port: d.port,
                        method: d.method,
                        weight: d.weight,
                        active: c.active,
                        inactive: c.inactive,
                        persistent: c.persistent,
                        u_threshold: d.upper_threshold,
                        l_threshold: d.lower_threshold,
                        stats,
                        rates,
                    }
                })
                .collect();
            out.push(ServiceView {
                key,
                scheduler: cfg.scheduler.clone(),
                flags: cfg.flags,
                persistence: cfg.persistence,
                netmask: cfg
                    .persist_mask
                    .unwrap_or_else(|| PersistMask::full(key.af())),
                one_packet: cfg.one_packet,
                synproxy: cfg.synproxy,
                stats: Counters::default(),
                rates: Default::default(),
                dests,
            });
        }
        out
    }
}
