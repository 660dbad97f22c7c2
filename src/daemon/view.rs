//! What the control thread reads of the running data plane (counters, rates,
//! ports, connection dumps), as JSON for vsadm and as [`StatsSource`] for the
//! rate estimators.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{PlaneView, STOP};
use crate::control::state::{ConnCounts, StatsSource};
use crate::dataplane::counters::CounterSnapshot;
use crate::dataplane::worker::ConnRow;
use crate::dpdk::Eal;
use crate::lb::fwd::FwdDrop;
use crate::lb::stats::{FwdEvent, StatsTable};

impl PlaneView<'_> {
    pub(super) fn counters_json(&self) -> Value {
        let total = CounterSnapshot::sum(self.counters.iter().map(|c| &**c));
        let per_worker: Vec<Value> = self
            .counters
            .iter()
            .zip(&self.worker_lcores)
            .zip(&self.lb_stats)
            .map(|((c, l), lb)| {
                let s = CounterSnapshot::sum([&**c]);
                let fwd = StatsTable::sum(&[&**lb]);
                let fwd_drops: serde_json::Map<String, Value> = FwdDrop::ALL
                    .iter()
                    .map(|d| (d.name().to_string(), json!(fwd.drop_count(*d))))
                    .collect();
                json!({"lcore": l, "events": pairs(&s.events), "drops": pairs(&s.drops),
                       "forwarding_drops": fwd_drops})
            })
            .collect();
        let refs: Vec<&StatsTable> = self.lb_stats.iter().map(|t| &**t).collect();
        let fwd = StatsTable::sum(&refs);
        let fwd_drops: serde_json::Map<String, Value> = FwdDrop::ALL
            .iter()
            .map(|d| (d.name().to_string(), json!(fwd.drop_count(*d))))
            .collect();
        let fwd_events: serde_json::Map<String, Value> = FwdEvent::ALL
            .iter()
            .map(|e| (e.name().to_string(), json!(fwd.event(*e))))
            .collect();
        json!({
            "total": {"events": pairs(&total.events), "drops": pairs(&total.drops)},
            "forwarding": {"events": fwd_events, "drops": fwd_drops},
            "workers": per_worker,
        })
    }

    pub(super) fn ports_json(&self) -> Value {
        let followed = self.plane.load().followed_vips.clone();
        Value::Array(
            self.ports
                .iter()
                .map(|p| {
                    let link = p.link();
                    let stats = p.port.stats().unwrap_or_default();
                    json!({
                        "name": p.name,
                        "driver": p.port.info().driver,
                        "mac": p.mac.to_string(),
                        "mtu": p.port.mtu().unwrap_or(0),
                        "link_up": link.up,
                        "speed_mbps": link.speed_mbps,
                        "rss": p.port.rss_active(),
                        "addresses": p.addrs.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                        "vips": p.addrs.vips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        "vip_follow": p.follow.iter().map(|(vip, iface)| json!({
                            "address": vip.to_string(),
                            "follow": iface,
                            "active": followed.iter().any(|f| f.addr == *vip && f.active),
                        })).collect::<Vec<_>>(),
                        "kernel_iface": p.kernel_iface,
                        "stats": {
                            "rx_packets": stats.rx_packets, "tx_packets": stats.tx_packets,
                            "rx_bytes": stats.rx_bytes, "tx_bytes": stats.tx_bytes,
                            "rx_missed": stats.rx_missed, "rx_errors": stats.rx_errors,
                            "tx_errors": stats.tx_errors, "rx_nombuf": stats.rx_nombuf,
                        },
                    })
                })
                .collect(),
        )
    }

    pub(super) fn status_json(&self) -> Value {
        json!({
            "state": if STOP.load(Ordering::Relaxed) { "stopping" } else { "running" },
            "vsd": env!("CARGO_PKG_VERSION"),
            "dpdk": Eal::version(),
            "pid": std::process::id(),
            "uptime_s": self.started.elapsed().as_secs(),
            "workers": self.worker_lcores,
            "ports": self.ports_json(),
            "mbufs_in_use": self.pool.in_use(),
            "mbufs_available": self.pool.available(),
            "vip_watch": self.vip_watch.map(|w| json!({
                "events": w.events, "resyncs": w.resyncs, "errors": w.errors,
            })),
            "announce": self.announce,
        })
    }

    /// Whether every worker runs the newest published configuration.
    pub(super) fn workers_caught_up(&self) -> bool {
        let g = self.plane.generation();
        self.adopted.iter().all(|a| a.load(Ordering::Acquire) >= g)
    }

    /// Ask every worker for its connections. The wait is bounded by one
    /// deadline for all workers, checked after every short sleep (a worker
    /// that does not answer in time is left out of this listing).
    fn dump_connections(&self, limit: usize) -> (Vec<ConnRow>, u64) {
        for d in &self.dumps {
            d.limit.store(limit, Ordering::Relaxed);
            d.requested.fetch_add(1, Ordering::AcqRel);
        }
        let deadline = Instant::now() + DUMP_DEADLINE;
        let mut rows = Vec::new();
        let mut total = 0;
        for d in &self.dumps {
            let want = d.requested.load(Ordering::Acquire);
            loop {
                if d.answered.load(Ordering::Acquire) == want {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(1)));
            }
            if d.answered.load(Ordering::Acquire) != want {
                continue;
            }
            if let Ok(mut slot) = d.rows.lock() {
                let (r, t) = std::mem::take(&mut *slot);
                total += t;
                rows.extend(r.into_iter().take(limit.saturating_sub(rows.len())));
            }
        }
        (rows, total)
    }
}

/// The data plane's statistics as the ipvsadm layer reads them. A server's
/// or service's counters are added up over the workers when asked for:
/// summing whole tables (every slot of the capacity) took ~200 us per
/// control tick, time the control thread's core lost ten times a second.
pub(super) struct PlaneStats<'v, 'a> {
    view: &'v PlaneView<'a>,
}

impl<'v, 'a> PlaneStats<'v, 'a> {
    pub(super) fn new(view: &'v PlaneView<'a>) -> Self {
        PlaneStats { view }
    }

    fn tables(&self) -> impl Iterator<Item = &StatsTable> {
        self.view.lb_stats.iter().map(|t| &**t)
    }
}

fn to_counters(c: crate::lb::stats::CounterValues) -> crate::control::estimator::Counters {
    crate::control::estimator::Counters {
        conns: c.conns,
        inpkts: c.in_pkts,
        outpkts: c.out_pkts,
        inbytes: c.in_bytes,
        outbytes: c.out_bytes,
    }
}

impl StatsSource for PlaneStats<'_, '_> {
    fn now_ms(&self) -> u64 {
        self.view.started.elapsed().as_millis() as u64
    }
    fn service_counters(&self, slot: u32) -> crate::control::estimator::Counters {
        to_counters(StatsTable::sum_service(self.tables(), slot))
    }
    fn dest_counters(&self, id: crate::lb::load::DestId) -> crate::control::estimator::Counters {
        to_counters(StatsTable::sum_dest(self.tables(), id))
    }
    fn dest_conns(&self, id: crate::lb::load::DestId) -> ConnCounts {
        use crate::lb::load::LoadView;
        ConnCounts {
            active: self.view.global.active(id),
            inactive: self.view.global.inactive(id),
            persistent: self.view.global.persistent(id),
        }
    }
    fn connections(&self, limit: usize) -> (Vec<crate::control::listing::ConnView>, u64) {
        let (rows, total) = self.view.dump_connections(limit);
        let views = rows
            .into_iter()
            .map(|r| crate::control::listing::ConnView {
                // Rows name TCP, UDP or IP (fwmark templates); IP is the fallback.
                proto: crate::control::listing::ConnProto::from_name(r.proto)
                    .unwrap_or(crate::control::listing::ConnProto::Ip),
                expires_ms: r.expires_ms,
                state: r.state,
                client: r.client,
                vip: r.vip,
                dest: r.real,
            })
            .collect();
        (views, total)
    }
    fn conn_table_size(&self) -> u64 {
        self.view.conn_capacity
    }
    fn core_counters(&self) -> Vec<crate::control::listing::CoreCounters> {
        self.view
            .counters
            .iter()
            .zip(&self.view.worker_lcores)
            .zip(&self.view.lb_stats)
            .map(|((c, l), lb)| {
                let s = CounterSnapshot::sum([&**c]);
                let fwd = StatsTable::sum(&[&**lb]);
                let mut drops: Vec<(String, u64)> =
                    s.drops.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                drops.extend(
                    FwdDrop::ALL
                        .iter()
                        .map(|d| (format!("fwd_{}", d.name()), fwd.drop_count(*d))),
                );
                crate::control::listing::CoreCounters {
                    core: *l,
                    events: s.events.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                    drops,
                }
            })
            .collect()
    }
    fn port_counters(&self) -> Vec<crate::control::listing::PortCounters> {
        self.view
            .ports
            .iter()
            .map(|p| {
                let st = p.port.stats().unwrap_or_default();
                crate::control::listing::PortCounters {
                    port: p.name.clone(),
                    link_up: p.link().up,
                    counters: vec![
                        ("rx_packets".into(), st.rx_packets),
                        ("rx_bytes".into(), st.rx_bytes),
                        ("tx_packets".into(), st.tx_packets),
                        ("tx_bytes".into(), st.tx_bytes),
                        ("rx_missed".into(), st.rx_missed),
                        ("rx_errors".into(), st.rx_errors),
                        ("tx_errors".into(), st.tx_errors),
                        ("rx_nombuf".into(), st.rx_nombuf),
                    ],
                }
            })
            .collect()
    }
    fn latency(&self) -> Vec<crate::control::listing::LatencyView> {
        let mut out = Vec::new();
        for (l, lat) in self.view.worker_lcores.iter().zip(&self.view.latencies) {
            for (name, h) in [("burst", &lat.burst), ("loop", &lat.turn)] {
                if let Ok(h) = h.lock() {
                    out.push(crate::control::listing::LatencyView {
                        name: name.to_string(),
                        core: Some(*l),
                        hist: h.clone(),
                    });
                }
            }
        }
        out
    }
    fn status(&self) -> Value {
        self.view.status_json()
    }
    fn config_path(&self) -> Option<PathBuf> {
        Some(self.view.config_path.clone())
    }
    fn keepalived_path(&self) -> Option<PathBuf> {
        self.view.keepalived_path.clone()
    }
}

fn pairs(list: &[(&'static str, u64)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

/// The longest a connection listing waits for the workers' answers.
const DUMP_DEADLINE: Duration = Duration::from_secs(2);
