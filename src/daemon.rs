//! The director process: boots EAL from the config, brings up the ports,
//! launches one worker per worker lcore and runs the control loop on the main
//! lcore until SIGINT or SIGTERM. Shutdown order matters: workers stop and
//! are joined before the ports stop, ports close before the mempool goes,
//! and EAL cleanup comes last.

use crate::control::announce::{Announcer, PlaneFacts};
use crate::control::api;
use crate::control::config::Config;
use crate::control::health::HealthMonitor;
use crate::control::metrics_http::MetricsServer;
use crate::control::socket::{ControlServer, Handler};
use crate::control::state::{ConnCounts, ControlState, StatsSource};
use crate::control::vipwatch::{FollowedVip, VipWatch};
use crate::control::wait::WaitSet;
use crate::dataplane::counters::{CounterSnapshot, WorkerCounters};
use crate::dataplane::exception::{PuntBudget, TwinQueue};
use crate::dataplane::idle::Idle;
use crate::dataplane::local::PortAddrs;
use crate::dataplane::neigh::NeighTable;
use crate::dataplane::publish::{Published, Subscriber};
use crate::dataplane::sync_feed::SyncFeed;
use crate::dataplane::vipfollow::VipActivity;
use crate::dataplane::worker::{
    ConnDump, ConnRow, NeighUpdate, PlaneConfig, SteerOut, Worker, WorkerLatency, WorkerPort,
    FWD_BATCH, NEIGH_INBOX, STEER_RING_SIZE, TEMPLATE_INBOX,
};
use crate::dpdk::{Eal, LaunchedLcore, Mempool, Port, PortConfig, SteerBatch, SteerRing, TxBuffer};
use crate::lb::director::{CoreLb, CoreLbConfig};
use crate::lb::fwd::FwdDrop;
use crate::lb::load::{CoreLoad, GlobalLoad};
use crate::lb::owner::RssOwner;
use crate::lb::stats::FwdEvent;
use crate::lb::stats::StatsTable;
use crate::lb::types::FwdMethod;
use crate::wire::{MacAddr, SYMMETRIC_KEY};
use crossbeam::queue::ArrayQueue;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod signals;
mod startup;
mod taplink;
mod twin;

pub use startup::check;

/// Set once a stop is requested (SIGINT or SIGTERM), for `status`.
static STOP: AtomicBool = AtomicBool::new(false);

/// Informational lines; warnings and errors use `log::warn!`/`log::error!`.
macro_rules! log {
    ($($t:tt)*) => { log::info!($($t)*) };
}

/// The followed VIPs and their state, as the workers take them.
fn vip_activity(w: Option<&VipWatch>) -> Arc<[VipActivity]> {
    w.map_or_else(
        || Arc::from(Vec::new()),
        |w| {
            w.states()
                .map(|(v, active)| VipActivity {
                    port: v.port,
                    addr: v.address,
                    active,
                })
                .collect()
        },
    )
}

/// What the control plane shows of a port.
struct PortView {
    port: Port,
    name: String,
    mac: MacAddr,
    addrs: PortAddrs,
    /// `[[vip]]`s of this port that follow a kernel interface: (VIP, name).
    follow: Vec<(IpAddr, String)>,
    /// The kernel twin's interface (exception path), if any.
    kernel_iface: Option<String>,
    /// A net_tap port's interface name (`iface=`), to tell its true link
    /// state once it left vsd's namespace (see `taplink`).
    tap_iface: Option<String>,
}

impl PortView {
    /// The port's link status, with the truth about a net_tap interface
    /// that left our namespace (net_tap itself reads "down" then).
    fn link(&self) -> crate::dpdk::LinkStatus {
        let mut link = self.port.link();
        if !link.up {
            if let Some(up) = self.tap_iface.as_deref().and_then(taplink::tap_link_up) {
                link.up = up;
            }
        }
        link
    }
}

/// What the control thread reads of the running data plane.
struct PlaneView<'a> {
    started: Instant,
    config_path: PathBuf,
    /// `--keepalived FILE`, re-read with the TOML file on reload.
    keepalived_path: Option<PathBuf>,
    worker_lcores: Vec<u32>,
    counters: Vec<Arc<WorkerCounters>>,
    lb_stats: Vec<Arc<StatsTable>>,
    global: Arc<GlobalLoad>,
    dumps: Vec<Arc<ConnDump>>,
    adopted: Vec<Arc<AtomicU64>>,
    latencies: Vec<Arc<WorkerLatency>>,
    conn_capacity: u64,
    ports: &'a [PortView],
    pool: &'a Mempool,
    plane: Arc<Published<PlaneConfig>>,
    /// The VIP watcher's counters (when a VIP follows an interface).
    vip_watch: Option<crate::control::vipwatch::WatchStats>,
    /// `[announce]`: the announcer's state at its last evaluation.
    announce: Option<Value>,
}

/// The control thread: the ipvsadm state plus the view of the data plane.
struct Control<'a> {
    view: PlaneView<'a>,
    state: ControlState,
    /// Which followed VIPs are active, from rtnetlink.
    vipwatch: Option<VipWatch>,
    /// The watcher's version in the last published configuration.
    published_watch: u64,
    /// The connection sync daemons that run (`--start-daemon`).
    syncd: crate::control::syncd::SyncDaemons,
    /// `[[sync_daemon]]` as read at start (a reload does not restart
    /// daemons; it says so when the file's differ).
    sync_config: Vec<crate::control::ipvsadm::SyncDaemonSpec>,
    /// Health checks, when the configuration has some (see [`start_health`]).
    health: Option<HealthMonitor>,
    /// `[control] rules_file`: vsadm's own services, kept across restarts.
    rules_file: Option<PathBuf>,
    /// The rules text last written there (writes only on change).
    rules_written: Option<String>,
    /// `[announce]`: the served VIPs on a kernel interface, and the drain.
    announce: Option<Announcer>,
    /// When the announce rule ran last, and on which table generation.
    announce_evaluated: Option<(Instant, u64)>,
}

impl PlaneView<'_> {
    fn counters_json(&self) -> Value {
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

    fn ports_json(&self) -> Value {
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

    fn status_json(&self) -> Value {
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
    fn workers_caught_up(&self) -> bool {
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
struct PlaneStats<'v, 'a> {
    view: &'v PlaneView<'a>,
}

impl<'v, 'a> PlaneStats<'v, 'a> {
    fn new(view: &'v PlaneView<'a>) -> Self {
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

impl Control<'_> {
    /// Publish the state's snapshot to the workers if it changed.
    fn publish_if_changed(&mut self, published_version: &mut u64) {
        let watch = self.vipwatch.as_ref().map_or(0, VipWatch::version);
        if self.state.version() == *published_version && watch == self.published_watch {
            return;
        }
        let snap = self.state.snapshot();
        *published_version = snap.version;
        self.published_watch = watch;
        self.view.plane.publish(Arc::new(PlaneConfig {
            services: snap.services,
            timeouts: snap.timeouts,
            marks: snap.marks,
            defense: snap.defense,
            followed_vips: vip_activity(self.vipwatch.as_ref()),
        }));
    }

    /// Read rtnetlink; log what changed. Returns whether a followed VIP
    /// came or went.
    fn poll_vipwatch(&mut self) -> bool {
        let Some(w) = self.vipwatch.as_mut() else {
            return false;
        };
        let before: Vec<bool> = w.states().map(|(_, a)| a).collect();
        let changed = w.poll();
        if changed {
            for ((v, now), was) in w.states().zip(before) {
                if now != was {
                    log!(
                        "vip {} {} ({} {} {})",
                        v.address,
                        if now { "active" } else { "inactive" },
                        v.address,
                        if now { "is on" } else { "is not on" },
                        v.iface
                    );
                }
            }
        }
        self.view.vip_watch = Some(w.stats());
        changed
    }

    /// One past the highest server slot any connection can use: the
    /// published servers and those still draining.
    fn slots_in_use(&self) -> usize {
        let snap = self.view.plane.load();
        let published = snap
            .services
            .services()
            .iter()
            .flat_map(|s| s.servers.iter().map(|r| r.id))
            .max();
        let draining = self.state.draining_slots().into_iter().max();
        published.max(draining).map_or(0, |m| m as usize + 1)
    }

    /// IPVS ActiveConn summed over every server slot in use.
    fn active_conns(&self) -> u64 {
        use crate::lb::load::LoadView;
        (0..self.slots_in_use() as u32)
            .map(|id| u64::from(self.view.global.active(id)))
            .sum()
    }

    /// Run the announce rule when the table changed or it is due (every
    /// [`ANNOUNCE_PERIOD`]), or at once with `force`.
    fn evaluate_announce(&mut self, finished: &[bool], force: bool) {
        if self.announce.is_none() {
            return;
        }
        let now = Instant::now();
        let generation = self.view.plane.generation();
        let due = force
            || self.announce_evaluated.is_none_or(|(at, g)| {
                g != generation || now.saturating_duration_since(at) >= ANNOUNCE_PERIOD
            });
        if !due {
            return;
        }
        let turns: Vec<u64> = self
            .view
            .counters
            .iter()
            .map(|c| c.event(crate::dataplane::counters::Event::LoopTurns))
            .collect();
        let active_conns = self.active_conns();
        let plane = self.view.plane.load();
        let inactive: Vec<IpAddr> = plane
            .followed_vips
            .iter()
            .filter(|f| !f.active)
            .map(|f| f.addr)
            .collect();
        let facts = PlaneFacts {
            services: &plane.services,
            marks: &plane.marks,
            loop_turns: &turns,
            finished,
            active_conns,
            inactive_vips: &inactive,
        };
        if let Some(a) = self.announce.as_mut() {
            a.evaluate(now, &facts);
            self.view.announce = Some(a.json(now));
        }
        self.announce_evaluated = Some((now, generation));
    }

    /// `vsadm --drain` / `--undrain` with `[announce]` (without it the
    /// request goes to `api`, which refuses it).
    fn drain_command(&mut self, cmd: &crate::control::ipvsadm::Command) -> Result<Value, String> {
        use crate::control::ipvsadm::Command;
        let active_conns = self.active_conns();
        let Some(a) = self.announce.as_mut() else {
            return Err("internal: no announcer".into());
        };
        let text = match cmd {
            Command::Drain { timeout, .. } => a.start_drain(
                Instant::now(),
                std::time::SystemTime::now(),
                timeout.map(|s| Duration::from_secs(u64::from(s))),
                active_conns,
            ),
            _ => a.end_drain(),
        };
        // withdraw (or announce) before answering
        self.evaluate_announce(&[], true);
        Ok(json!({"text": text, "changed": false, "announce": self.view.announce}))
    }

    /// A reload's `[announce]`: start, stop, or change the announcer.
    fn reload_announce(&mut self, conf: Option<crate::control::config::announce::AnnounceConf>) {
        match (self.announce.as_mut(), conf) {
            (None, None) => {}
            (Some(a), None) => {
                log!("[announce] removed by the reload: withdrawing every VIP");
                a.shutdown();
                self.announce = None;
                self.view.announce = None;
            }
            (None, Some(c)) => match open_announcer(c) {
                Ok(a) => self.announce = Some(a),
                Err(e) => log::error!("[announce] from the reload not started: {e}"),
            },
            (Some(a), Some(c)) => {
                if c.interface == a.conf().interface {
                    if c.kind != a.conf().kind {
                        log!(
                            "[announce] kind {:?} applies the next time vsd creates {} \
                             (it exists now)",
                            c.kind,
                            c.interface
                        );
                    }
                    a.reconfigure(c, None);
                } else {
                    match crate::control::announce::netlink::IfaceAnnouncer::open(
                        &c.interface,
                        c.kind,
                    ) {
                        Ok(k) => a.reconfigure(c, Some(Box::new(k))),
                        Err(e) => log::error!(
                            "[announce] interface {} from the reload not used, {} stays: {e}",
                            c.interface,
                            a.conf().interface
                        ),
                    }
                }
            }
        }
        self.evaluate_announce(&[], true);
    }

    /// Periodic work: rate estimators, reuse of drained server slots.
    fn tick(&mut self) {
        let stats = PlaneStats::new(&self.view);
        self.state.tick(&stats);
        if self.view.workers_caught_up() {
            self.state.release_drained(&stats);
        }
    }

    /// Apply the health checks' news to the table. True if it changed.
    fn poll_health(&mut self) -> bool {
        match self.health.as_mut() {
            Some(h) => h.poll(&mut self.state),
            None => false,
        }
    }

    /// Passive health checking over the workers' half-open expiry
    /// counters. True if the table changed.
    fn tick_health(&mut self) -> bool {
        let Some(h) = self.health.as_mut() else {
            return false;
        };
        let tables = &self.view.lb_stats;
        h.passive_tick(&mut self.state, Instant::now(), &|id| {
            StatsTable::sum_syn_timeouts(tables.iter().map(|t| &**t), id)
        })
    }

    /// The Prometheus exposition, as `vsadm --prometheus` prints it.
    fn prometheus_text(&mut self) -> String {
        let stats = PlaneStats::new(&self.view);
        let req = json!({"v": 1, "cmd": "ipvsadm", "args": ["--prometheus"]});
        match api::handle_request_with(&mut self.state, self.health.as_mut(), &stats, &req) {
            Ok(v) => v["text"].as_str().unwrap_or_default().to_string(),
            Err(e) => format!("# error: {e}\n"),
        }
    }

    /// Start and stop sync daemons to match the state; a daemon that
    /// cannot start is taken out of the state again and reported.
    fn run_sync_daemons(&mut self) -> Result<(), String> {
        self.syncd.set_settings(self.state.sync_settings());
        match self.syncd.reconcile(self.state.sync_daemons()) {
            Ok(()) => Ok(()),
            Err((role, e)) => {
                let _ = self
                    .state
                    .apply(&crate::control::ipvsadm::Command::StopDaemon(role));
                log::error!("{} sync daemon not started: {e}", role.name());
                Err(e)
            }
        }
    }

    /// Write vsadm's own rules to `[control] rules_file` when they changed
    /// (atomically: a temporary file renamed over it). A failure is logged
    /// and tried again on the next change.
    fn save_rules(&mut self) {
        let Some(path) = &self.rules_file else {
            return;
        };
        let text = self.state.vsadm_rules();
        if self.rules_written.as_deref() == Some(text.as_str()) {
            return;
        }
        match write_atomically(path, &text) {
            Ok(()) => self.rules_written = Some(text),
            Err(e) => log::error!("rules file {}: {e}", path.display()),
        }
    }

    /// SIGHUP: re-read the config file and apply its services, telling
    /// systemd RELOADING=1 before and READY=1 after.
    fn reload(&mut self) {
        // systemd (ExecReload sends SIGHUP) sees the reload start and end
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]) {
            log::warn!("sd_notify RELOADING: {e}");
        }
        self.reload_config();
        self.save_rules();
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            log::warn!("sd_notify READY: {e}");
        }
    }

    fn reload_config(&mut self) {
        let path = self.view.config_path.clone();
        let keepalived = self.view.keepalived_path.clone();
        match Config::load(&path, keepalived.as_deref()).map_err(|e| e.to_string()) {
            Ok(cfg) => match api::reload_with(&mut self.state, self.health.as_mut(), &cfg) {
                Ok(diff) => {
                    for w in &cfg.warnings {
                        log::warn!("{w}");
                    }
                    log!("reloaded {}: {}", path.display(), diff.summary());
                    self.reload_announce(cfg.announce.clone());
                    if cfg.sync_daemons != self.sync_config {
                        log!(
                            "[[sync_daemon]] changed in {}: not applied by a reload; \
                             use vsadm --start-daemon/--stop-daemon or restart vsd",
                            path.display()
                        );
                    }
                }
                Err(e) => log::error!(
                    "reload of {} refused, running config kept: {e}",
                    path.display()
                ),
            },
            Err(e) => log::error!("reload refused, running config kept: {e}"),
        }
    }
}

impl Handler for Control<'_> {
    fn handle(&mut self, cmd: &str, req: &Value) -> Result<Value, String> {
        match cmd {
            "version" => Ok(json!({
                "vsd": env!("CARGO_PKG_VERSION"),
                "dpdk": Eal::version(),
                "protocol": crate::control::socket::PROTOCOL_VERSION,
            })),
            "status" => Ok(self.view.status_json()),
            "counters" => {
                let mut v = self.view.counters_json();
                v["sync"] = self.syncd.counters_json();
                Ok(v)
            }
            "ports" => Ok(self.view.ports_json()),
            "xstats" => Ok(Value::Object(
                self.view
                    .ports
                    .iter()
                    .map(|p| {
                        let x = p.port.xstats().unwrap_or_default();
                        (
                            p.name.clone(),
                            Value::Object(x.into_iter().map(|(k, v)| (k, json!(v))).collect()),
                        )
                    })
                    .collect(),
            )),
            "ipvsadm" => {
                use crate::control::ipvsadm::Command;
                let args: Vec<&str> = req["args"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let parsed = crate::control::ipvsadm::parse(&args).ok();
                if self.announce.is_some()
                    && matches!(parsed, Some(Command::Drain { .. } | Command::Undrain))
                {
                    let reply = parsed
                        .as_ref()
                        .map_or_else(|| Err("bad request".into()), |c| self.drain_command(c));
                    log_change(req, &reply);
                    return reply;
                }
                let stats = PlaneStats::new(&self.view);
                let reply =
                    api::handle_request_with(&mut self.state, self.health.as_mut(), &stats, req);
                log_change(req, &reply);
                if reply.is_ok() && parsed == Some(Command::Reload) {
                    // the file was read and applied: its [announce] too
                    match Config::load(&self.view.config_path, self.view.keepalived_path.as_deref())
                    {
                        Ok(cfg) => self.reload_announce(cfg.announce),
                        Err(e) => log::error!("[announce] not reloaded: {e}"),
                    }
                }
                self.save_rules();
                self.run_sync_daemons()?;
                reply
            }
            _ => Err(format!(
                "unknown command {cmd:?} (known: version, status, counters, ports, xstats, ipvsadm)"
            )),
        }
    }
}

/// The `iface=` of a net_tap vdev spec (DPDK's default `dtap0`... names
/// are not guessed: without `iface=` there is nothing to look up).
fn tap_iface_of(dev: &crate::control::config::PortDevice) -> Option<String> {
    let crate::control::config::PortDevice::Vdev(spec) = dev else {
        return None;
    };
    let mut parts = spec.split(',');
    if !parts.next()?.starts_with("net_tap") {
        return None;
    }
    parts.find_map(|kv| kv.strip_prefix("iface=").map(str::to_string))
}

/// Restore `[control] rules_file` (if it exists) on top of the
/// configuration file's state; lines that cannot apply are logged and
/// skipped, an unreadable file stops the start (its rules would be lost
/// at the next save).
fn restore_rules(state: &mut ControlState, path: &std::path::Path) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("rules file {}: {e}", path.display())),
    };
    let (applied, skipped) = state.restore_vsadm_rules(&text);
    for why in &skipped {
        log::warn!("rules file {}: {why}", path.display());
    }
    log!(
        "rules file {}: {applied} vsadm rule(s) restored, {} skipped",
        path.display(),
        skipped.len()
    );
    Ok(())
}

/// Replace `path` with `text` in one step (write a temporary file in the
/// same directory, fsync it, rename it over).
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Log a vsadm request that changes the configuration, with who asked
/// (the socket's peer credentials) and how it ended; listings are not
/// logged.
fn log_change(req: &Value, reply: &Result<Value, String>) {
    let args: Vec<&str> = req["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Ok(cmd) = crate::control::ipvsadm::parse(&args) else {
        return; // refused before anything ran; the client has the error
    };
    if !cmd.is_change() {
        return;
    }
    let who = crate::control::socket::describe_peer(req);
    let line = args.join(" ");
    match reply {
        Ok(_) => log!("vsadm {line} (by {who}): done"),
        Err(e) => log::warn!("vsadm {line} (by {who}): refused: {e}"),
    }
}

fn pairs(list: &[(&'static str, u64)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

/// Outer sources of TUN packets (IPv4, IPv6 outer headers): the
/// configured one (`tun_source`, `tun_source6`); otherwise, per family, the director address on the port
/// toward the first tunnelled real server of that family, else the last
/// port's first address of the family (IPv6: not link-local), else the
/// unspecified address (no port has one: nothing of that family can be
/// tunnelled anywhere).
fn tun_sources(cfg: &Config, views: &[PortView]) -> (Ipv4Addr, std::net::Ipv6Addr) {
    let of_family = |v6: bool| -> Option<IpAddr> {
        let tun_rs = cfg
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter())
            .filter(|r| r.method == FwdMethod::Tunnel)
            .map(|r| r.address)
            .find(|a| a.is_ipv6() == v6);
        if let Some(rs) = tun_rs {
            let src = views
                .iter()
                .find(|v| v.addrs.on_link(rs))
                .and_then(|v| v.addrs.source_for(rs));
            if let Some(src) = src.filter(|a| a.is_ipv6() == v6) {
                return Some(src);
            }
        }
        views.iter().rev().find_map(|v| {
            v.addrs.addrs.iter().map(|(a, _)| *a).find(|a| {
                a.is_ipv6() == v6
                    && !matches!(a, IpAddr::V6(b) if b.segments()[0] & 0xffc0 == 0xfe80)
            })
        })
    };
    let v4 = match (cfg.lb.tun_source, of_family(false)) {
        (Some(a), _) | (None, Some(IpAddr::V4(a))) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let v6 = match (cfg.lb.tun_source6, of_family(true)) {
        (Some(a), _) | (None, Some(IpAddr::V6(a))) => a,
        _ => std::net::Ipv6Addr::UNSPECIFIED,
    };
    (v4, v6)
}

/// Every queue but worker `w`'s own.
fn others<T>(queues: &[Arc<T>], w: usize) -> Vec<Arc<T>> {
    queues
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != w)
        .map(|(_, q)| q.clone())
        .collect()
}

/// Rate estimators, drained-slot reuse, and the longest the control thread
/// sleeps (stop and reload requests wake it at once, see `signals`).
const TICK_PERIOD: Duration = Duration::from_millis(100);
/// Refresh period of the summed connection counts while a scheduler or
/// threshold reads them (bounded staleness for lc, wlc, ...).
const LOAD_PERIOD: Duration = Duration::from_millis(10);

/// The longest the announce rule waits between two evaluations.
const ANNOUNCE_PERIOD: Duration = Duration::from_millis(100);

/// Open `[announce]`'s interface (rtnetlink) and make the announcer.
fn open_announcer(
    conf: crate::control::config::announce::AnnounceConf,
) -> Result<Announcer, String> {
    let k = crate::control::announce::netlink::IfaceAnnouncer::open(&conf.interface, conf.kind)
        .map_err(|e| format!("[announce] interface {}: {e}", conf.interface))?;
    log!(
        "announce: VIPs go on {} (require_healthy {}, drain_timeout {} s)",
        conf.interface,
        conf.require_healthy,
        conf.drain_timeout.as_secs()
    );
    Ok(Announcer::new(conf, Box::new(k)))
}

/// The longest a connection listing waits for the workers' answers.
const DUMP_DEADLINE: Duration = Duration::from_secs(2);

/// Real-server slots (connections keep a slot until they drain): room
/// for 10,000 health-checked servers and their draining predecessors.
const DEST_CAPACITY: usize = crate::control::state::DEFAULT_DEST_CAPACITY;
/// Service slots for per-service counters.
const SERVICE_CAPACITY: usize = 1024;

/// The health monitor on the checker engine (always a monitor, even
/// without checkers, so that a reload may add some), and the engine
/// thread's id. It runs after `signals::block_async_signals`, so the
/// engine's thread inherits the signal mask.
fn start_health(cfg: &Config) -> Result<(Option<HealthMonitor>, libc::pid_t), String> {
    let engine = crate::health::engine::Engine::start()
        .map_err(|e| format!("health checks: cannot start the checker thread: {e}"))?;
    let tid = engine.thread_id();
    HealthMonitor::new(cfg, Box::new(engine)).map(|(m, _)| (Some(m), tid))
}

/// Keep a control-side thread (the checker engine) off the worker CPUs:
/// the CPUs EAL gave the main (control) lcore, and SCHED_BATCH like the
/// control thread, so thousands of checks never preempt packet work.
fn confine_to_control_cpus(tid: libc::pid_t) {
    // SAFETY: all-zero cpu_set_t is a valid empty set; sched_getaffinity
    // fills it for the calling (main, EAL-pinned) thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with the set's own size.
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: sched_setaffinity on our own thread id with a valid set.
    if got != 0
        || unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) }
            != 0
    {
        log::warn!(
            "health checks: could not pin the checker thread to the control CPUs: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a zeroed sched_param is valid for SCHED_BATCH.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(tid, libc::SCHED_BATCH, &param);
    }
}

/// Run the director until a stop signal. Whatever fails at start-up is
/// reported before any worker runs, and leaves nothing behind.
pub fn run(cfg: Config) -> Result<(), String> {
    let bound = startup::preflight(&cfg)?;
    let mut state = ControlState::from_config_with_capacity(&cfg, DEST_CAPACITY)?;
    let mut argv = cfg.eal_argv("vsd");
    // Hugepage files are unlinked as soon as they are mapped, so none are
    // left behind whatever way the process ends.
    if cfg.eal.huge
        && !argv
            .iter()
            .any(|a| a == "--huge-unlink" || a == "--in-memory")
    {
        argv.push("--huge-unlink".into());
    }
    // before EAL starts its threads, so that they inherit the mask
    signals::block_async_signals();
    // the table starts as the checks' state says (alpha servers out, the
    // sorry server in when the quorum starts down)
    let (health, health_tid) = start_health(&cfg)?;
    if let Some(h) = &health {
        state = ControlState::from_config_with_capacity(&h.effective_config(&cfg)?, DEST_CAPACITY)?;
    }
    // what vsadm added before the last stop comes back on top of the file
    if let Some(path) = &cfg.control.rules_file {
        restore_rules(&mut state, path)?;
    }
    log!("starting EAL: {}", argv.join(" "));
    // EAL's own lines through our logger, with their levels (before init,
    // so its first lines come through too)
    if let Err(e) = crate::dpdk::log::route_to_logger() {
        log::warn!("DPDK's log stays on its own stream: {e}");
    }
    let runtime = startup::RuntimeDir::before_init(&argv);
    let eal = match Eal::init(&argv) {
        Ok(eal) => eal,
        Err(e) => {
            runtime.remove_if_created();
            return Err(format!("EAL: {e}"));
        }
    };
    // EAL pinned this (main) thread to the control lcore's CPUs
    confine_to_control_cpus(health_tid);
    let result = signals::start()
        .and_then(|control_signals| serve(&cfg, state, health, &eal, bound, &control_signals));
    let runtime_dir = eal.runtime_dir();
    drop(eal);
    // EAL leaves its runtime directory (config, sockets) behind; nothing
    // uses it once we are gone
    if let Some(dir) = runtime_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    log!("stopped");
    result
}

/// Everything between EAL start and EAL cleanup. Every error return drops
/// what was made in reverse order: workers are stopped and joined (by
/// [`startup::Workers`]) before the rings, ports and mempool go.
fn serve(
    cfg: &Config,
    state: ControlState,
    health: Option<HealthMonitor>,
    eal: &Eal,
    bound: startup::Bound,
    control_signals: &signals::ControlSignals,
) -> Result<(), String> {
    let first = state.snapshot();
    for l in &cfg.lcores.workers {
        if !eal.lcore_enabled(*l) {
            return Err(format!("worker lcore {l} is not enabled in EAL"));
        }
    }
    let nworkers = cfg.lcores.workers.len();
    let pool = Arc::new(
        Mempool::new_pktmbuf(
            "vsd_pkt",
            cfg.mempool.mbufs,
            cfg.mempool.cache,
            cfg.mempool.data_room,
            -1,
        )
        .map_err(|e| e.to_string())?,
    );

    // ports: one rx and one tx queue per worker
    let mut views = Vec::new();
    let mut queues = Vec::new();
    // kernel twins (exception path), dropped before the pool
    let mut twin_ports: Vec<Port> = Vec::new();
    let mut twin_queues: Vec<Option<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>> =
        Vec::new();
    for (idx, pc) in cfg.ports.iter().enumerate() {
        let mut port = Port::by_name(&pc.device.eal_name()).map_err(|e| e.to_string())?;
        let pcfg = PortConfig {
            rx_queues: nworkers as u16,
            tx_queues: nworkers as u16,
            rx_desc: pc.rx_desc,
            tx_desc: pc.tx_desc,
            mtu: pc.mtu,
            mac: pc.mac.map(|m| m.0),
            promiscuous: pc.promiscuous,
            rss_key: pc.rss.then_some(SYMMETRIC_KEY),
            reta: (0..nworkers as u16).collect(),
        };
        let (rxq, txq) = port
            .configure(&pcfg, &pool)
            .map_err(|e| format!("port {}: {e}", pc.name))?;
        port.start().map_err(|e| format!("port {}: {e}", pc.name))?;
        port.set_reta(&pcfg.reta)
            .map_err(|e| format!("port {}: {e}", pc.name))?;
        let mac = MacAddr(port.mac().map_err(|e| e.to_string())?);
        if port.mac_in_software() {
            log!(
                "port {}: driver cannot set the MAC; using {mac} in software",
                pc.name
            );
        }
        let addrs = PortAddrs::new(
            mac,
            pc.addresses
                .iter()
                .map(|c| (c.addr, c.prefix_len))
                .collect(),
            cfg.vips
                .iter()
                .filter(|v| v.port == idx)
                .map(|v| v.address)
                .collect(),
            pc.gateways.clone(),
        );
        log!(
            "port {} ({}, driver {}): mac {}, {} queue(s), rss {}",
            pc.name,
            pc.device.eal_name(),
            port.info().driver,
            mac,
            nworkers,
            if port.rss_active() { "on" } else { "off" }
        );
        let missing = port.rss_missing_l4();
        if !missing.is_empty() {
            log!(
                "port {}: warning: the driver's RSS does not hash {} on ports; such flows may \
                 reach another worker than the ownership rule predicts",
                pc.name,
                missing.join(", ")
            );
        }
        match &pc.kernel {
            Some(k) => {
                let t = twin::open(idx, pc, k, mac.0, nworkers, &pool)?;
                log!(
                    "port {}: kernel twin {} (driver {}), mac {mac}",
                    pc.name,
                    k.iface,
                    t.port.info().driver
                );
                twin_ports.push(t.port);
                twin_queues.push(Some((t.rx, t.tx)));
            }
            None => twin_queues.push(None),
        }
        queues.push((rxq, txq));
        views.push(PortView {
            tap_iface: tap_iface_of(&pc.device),
            port,
            name: pc.name.clone(),
            mac,
            addrs,
            follow: cfg
                .vips
                .iter()
                .filter(|v| v.port == idx)
                .filter_map(|v| Some((v.address, v.follow.clone()?)))
                .collect(),
            kernel_iface: pc.kernel.as_ref().map(|k| k.iface.clone()),
        });
    }

    // flow ownership: the NIC's RETA (every port gets the same mapping) or,
    // without RSS, the same rule in software
    let owner = (nworkers > 1).then(|| {
        let reta_size = views
            .iter()
            .filter(|v| v.port.rss_active())
            .map(|v| v.port.info().reta_size as usize)
            .find(|n| *n > 0)
            .unwrap_or(128);
        Arc::new(RssOwner::round_robin(nworkers as u16, reta_size))
    });

    let per_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
    let now_ms = crate::dpdk::tsc_now() / per_ms;
    // VIPs that follow a kernel interface: learn the addresses before the
    // workers start, so they begin with the right set
    let followed: Vec<FollowedVip> = cfg
        .vips
        .iter()
        .filter_map(|v| {
            Some(FollowedVip {
                address: v.address,
                port: v.port,
                iface: v.follow.clone()?,
            })
        })
        .collect();
    let vipwatch = if followed.is_empty() {
        None
    } else {
        let w = VipWatch::open_synced(followed, Duration::from_secs(2))
            .map_err(|e| format!("VIPs that follow an interface: rtnetlink: {e}"))?;
        for (v, active) in w.states() {
            log!(
                "vip {} follows {}: {}",
                v.address,
                v.iface,
                if active { "active" } else { "inactive" }
            );
        }
        Some(w)
    };
    let plane = Arc::new(Published::new(Arc::new(PlaneConfig {
        services: first.services.clone(),
        timeouts: first.timeouts,
        marks: first.marks.clone(),
        defense: first.defense,
        followed_vips: vip_activity(vipwatch.as_ref()),
    })));
    let global = Arc::new(GlobalLoad::new(DEST_CAPACITY));
    // NIC checksum offload for forwarded TCP/UDP: only on hardware ports
    // that offer it (a software PMD's "offload" is a full software sum,
    // slower than the incremental update)
    let want_csum = crate::dpdk::TX_CSUM_OFFLOADS;
    let l4_csum_offload = !views.is_empty()
        && cfg.ports.iter().zip(&views).all(|(pc, v)| {
            matches!(pc.device, crate::control::config::PortDevice::Pci { .. })
                && v.port.tx_offloads() & want_csum == want_csum
        });
    let (tun_source4, tun_source6) = tun_sources(cfg, &views);
    let lb_cfg = CoreLbConfig {
        l4_csum: if l4_csum_offload {
            crate::lb::fwd::L4Csum::Skip
        } else {
            crate::lb::fwd::L4Csum::Update
        },
        cores: nworkers as u16,
        mtu: views
            .iter()
            .filter_map(|v| v.port.mtu().ok())
            .min()
            .unwrap_or(1500),
        tun_source: tun_source4,
        tun_source6,
        conn_capacity: cfg.lb.conn_capacity as usize,
        conn_capacity6: cfg.lb.conn_capacity6 as usize,
        expire_nodest_conn: cfg.lb.expire_nodest_conn,
        conn_reuse_mode: cfg.lb.conn_reuse_mode,
        expire_quiescent_template: cfg.lb.expire_quiescent_template,
        local_port_min: cfg.lb.local_port_min,
        local_port_max: cfg.lb.local_port_max,
        service_capacity: SERVICE_CAPACITY,
        ..CoreLbConfig::default()
    };
    log!(
        "forwarding: {} IPv4 + {} IPv6 conns per worker, TUN source {} / {}, MTU {}, L4 checksums {}",
        lb_cfg.conn_capacity,
        lb_cfg.conn_capacity6,
        lb_cfg.tun_source,
        lb_cfg.tun_source6,
        lb_cfg.mtu,
        if l4_csum_offload {
            "by the NIC"
        } else {
            "updated incrementally"
        }
    );

    // steering rings: rings[i][j] carries packets from worker i to worker j
    let mut rings: Vec<Vec<Option<Arc<SteerRing>>>> = Vec::new();
    for i in 0..nworkers {
        let mut row = Vec::new();
        for j in 0..nworkers {
            row.push(if i == j {
                None
            } else {
                Some(Arc::new(
                    SteerRing::new(&format!("vsd_steer_{i}_{j}"), STEER_RING_SIZE)
                        .map_err(|e| e.to_string())?,
                ))
            });
        }
        rings.push(row);
    }

    // Bind the control socket now: what can fail must fail before any
    // worker runs. (The metrics listener is bound already.)
    let mut server = ControlServer::bind(&cfg.control.socket)?;
    server.set_mode(cfg.control.socket_mode)?;
    let mut metrics = bound.metrics;

    // workers
    let stop = Arc::new(AtomicBool::new(false));
    let mut launched = startup::Workers::new(stop.clone());
    let inboxes: Vec<Arc<ArrayQueue<NeighUpdate>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(NEIGH_INBOX)))
        .collect();
    let template_inboxes: Vec<Arc<ArrayQueue<_>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(TEMPLATE_INBOX)))
        .collect();
    let sync_feeds: Vec<Arc<SyncFeed>> = (0..nworkers)
        .map(|_| Arc::new(SyncFeed::default()))
        .collect();
    let mut per_worker_queues: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    for ((rxq, txq), twin) in queues.into_iter().zip(twin_queues) {
        let mut twin = twin.map(|(r, t)| r.into_iter().zip(t));
        for (w, (r, t)) in rxq.into_iter().zip(txq).enumerate() {
            let tq = twin
                .as_mut()
                .and_then(Iterator::next)
                .map(|(rx, tx)| TwinQueue {
                    rx,
                    tx: TxBuffer::new(tx),
                    tx_dropped_seen: 0,
                });
            per_worker_queues[w].push((r, t, tq));
        }
    }
    let mut counters = Vec::new();
    let mut loads: Vec<Arc<CoreLoad>> = Vec::new();
    let mut lb_stats: Vec<Arc<StatsTable>> = Vec::new();
    let mut dumps = Vec::new();
    let mut adopted = Vec::new();
    let mut latencies = Vec::new();
    for (w, qs) in per_worker_queues.into_iter().enumerate() {
        let dump = Arc::new(ConnDump::default());
        let adopted_gen = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(WorkerLatency::default());
        dumps.push(dump.clone());
        adopted.push(adopted_gen.clone());
        latencies.push(latency.clone());
        let c = Arc::new(WorkerCounters::default());
        counters.push(c.clone());
        let ports = qs
            .into_iter()
            .zip(&views)
            .map(|((rx, tx, twin), v)| WorkerPort {
                rx,
                tx: TxBuffer::new(tx),
                twin,
                static_vips: v.addrs.vips.clone(),
                addrs: v.addrs.clone(),
                neigh: NeighTable::new(cfg.neighbour),
                tx_dropped_seen: 0,
            })
            .collect();
        let lb = CoreLb::new(
            CoreLbConfig {
                core: w as u16,
                ..lb_cfg.clone()
            },
            plane.load().services.clone(),
            global.clone(),
            owner.clone(),
            now_ms,
        )
        .map_err(|e| format!("worker {w}: connection table: {e:?}"))?;
        loads.push(lb.load().clone());
        lb_stats.push(lb.stats().clone());
        let mut worker = Worker {
            index: w,
            ports,
            counters: c,
            stop: stop.clone(),
            pool: pool.clone(),
            lb,
            config: Subscriber::new(plane.clone()),
            owner: owner.clone(),
            steer_out: rings[w]
                .iter()
                .map(|r| {
                    r.as_ref().map(|ring| SteerOut {
                        ring: ring.clone(),
                        batch: SteerBatch::new(),
                    })
                })
                .collect(),
            steer_in: rings.iter().filter_map(|row| row[w].clone()).collect(),
            inbox: inboxes[w].clone(),
            peers: others(&inboxes, w),
            template_inbox: template_inboxes[w].clone(),
            template_peers: others(&template_inboxes, w),
            sync: sync_feeds[w].clone(),
            dump,
            adopted: adopted_gen,
            latency,
            l4_csum_offload,
            fwd_batch: Vec::with_capacity(FWD_BATCH),
            fwd_meta: Vec::with_capacity(FWD_BATCH),
            martian: Default::default(),
            follow: Default::default(),
            mld: Default::default(),
            idle: Idle::new(cfg.lcores.idle),
            punt_budget: PuntBudget::default(),
        };
        let lcore = cfg.lcores.workers[w];
        launched.push(
            LaunchedLcore::launch(lcore, move || {
                signals::keep_async_signals_off_worker();
                worker.run()
            })
            .map_err(|e| format!("worker {w}: {e}"))?,
        );
    }
    log!(
        "running: {} worker(s) on lcores {:?}, {} service(s), control socket {}",
        nworkers,
        cfg.lcores.workers,
        plane.load().services.services().len(),
        cfg.control.socket.display()
    );
    // systemd Type=notify: workers run and the control socket is listening.
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        log::warn!("sd_notify READY: {e}");
    }

    // The control thread must never preempt packet work sharing its CPU
    // (on small machines it shares one with a worker or a generator):
    // SCHED_BATCH turns off wakeup preemption for this thread only.
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
    // valid, zeroed sched_param; failure only leaves the default policy.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
    let mut control = Control {
        view: PlaneView {
            started: Instant::now(),
            config_path: PathBuf::from(&cfg.source),
            keepalived_path: cfg.keepalived.as_ref().map(PathBuf::from),
            worker_lcores: cfg.lcores.workers.clone(),
            counters,
            lb_stats,
            global: global.clone(),
            dumps,
            adopted,
            latencies,
            conn_capacity: lb_cfg.conn_capacity as u64 * nworkers as u64,
            ports: &views,
            pool: &pool,
            plane: plane.clone(),
            vip_watch: vipwatch.as_ref().map(VipWatch::stats),
            announce: None,
        },
        state,
        published_watch: vipwatch.as_ref().map_or(0, VipWatch::version),
        vipwatch,
        syncd: crate::control::syncd::SyncDaemons::new(sync_feeds, owner.clone()),
        sync_config: cfg.sync_daemons.clone(),
        health,
        rules_file: cfg.control.rules_file.clone(),
        rules_written: None,
        announce: match &cfg.announce {
            Some(c) => {
                let mut a = open_announcer(c.clone())?;
                a.remember(cfg.vips.iter().map(|v| v.address));
                Some(a)
            }
            None => None,
        },
        announce_evaluated: None,
    };
    control.evaluate_announce(&launched.finished_each(), true);
    control.save_rules();
    // `[[sync_daemon]]`: started now that the twins exist
    for spec in &cfg.sync_daemons {
        control
            .state
            .apply(&crate::control::ipvsadm::Command::StartDaemon(spec.clone()))
            .map_err(|e| format!("sync_daemon {}: {e}", spec.role.name()))?;
    }
    control.run_sync_daemons()?;
    if let Some(addr) = metrics.as_ref().and_then(MetricsServer::local_addr) {
        log!("prometheus metrics on http://{addr}/metrics");
    }
    let mut published_version = first.version;
    let load_refs: Vec<&CoreLoad> = loads.iter().map(|l| &**l).collect();
    let mut waits = WaitSet::default();
    let mut next_sum = Instant::now();
    let mut next_tick = Instant::now() + TICK_PERIOD;
    loop {
        let asked = control_signals.take();
        if asked.stop {
            log!(
                "stop requested by {}",
                signals::describe_sender(asked.stop_from)
            );
            STOP.store(true, Ordering::SeqCst);
            break;
        }
        if asked.reload {
            log!(
                "SIGHUP from {}: reloading",
                signals::describe_sender(asked.reload_from)
            );
            control.reload();
            control.publish_if_changed(&mut published_version);
        }
        // Sleep until a client, a scraper or a signal needs us or a
        // periodic duty is due.
        waits.clear();
        waits.add(crate::control::wait::Interest::listener(
            control_signals.fd(),
        ));
        server.interest(&mut waits);
        if let Some(w) = control.vipwatch.as_ref() {
            waits.add(crate::control::wait::Interest::listener(w.fd()));
        }
        if let Some(m) = metrics.as_ref() {
            m.interest(&mut waits);
        }
        if let Some(fd) = control.health.as_ref().and_then(HealthMonitor::wake_fd) {
            waits.add(crate::control::wait::Interest::listener(fd));
        }
        let due = next_sum.min(next_tick);
        let io = waits.wait(due.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        // rtnetlink first: a VIP that came or went is published at once
        if control.poll_vipwatch() {
            control.publish_if_changed(&mut published_version);
        }
        // health transitions next: a dead server leaves the table at once
        if control.poll_health() {
            control.publish_if_changed(&mut published_version);
        }
        // Connection counts summed over cores: every LOAD_PERIOD while a
        // decision depends on them (lc, wlc, ..., thresholds), otherwise
        // with the tick; and before answering anybody, so listings are fresh.
        if io || now >= next_sum {
            global.refresh_upto(control.slots_in_use(), &load_refs);
            let fast = control.view.plane.load().services.reads_load();
            next_sum = now + if fast { LOAD_PERIOD } else { TICK_PERIOD };
        }
        if io {
            server.poll(&mut control);
            if let Some(m) = metrics.as_mut() {
                m.poll(&mut || control.prometheus_text());
            }
            control.publish_if_changed(&mut published_version);
        }
        if now >= next_tick {
            if let Some(w) = control.vipwatch.as_mut() {
                w.tick();
            }
            control.tick();
            if control.tick_health() {
                control.publish_if_changed(&mut published_version);
            }
            next_tick = now + TICK_PERIOD;
        }
        if control.announce.is_some() {
            control.evaluate_announce(&launched.finished_each(), false);
        }
        if launched.any_finished() {
            log::error!("a worker stopped unexpectedly; shutting down");
            break;
        }
    }
    log!("stopping");
    // routes first, so that the routers move the traffic while we still
    // forward it
    if let Some(a) = control.announce.as_mut() {
        a.shutdown();
    }
    control.save_rules();
    // omega: the down notifiers run on the way out
    if let Some(h) = control.health.as_mut() {
        h.shutdown();
    }
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]) {
        log::warn!("sd_notify STOPPING: {e}");
    }
    let failures = launched.stop_and_join();
    for (lcore, e) in &failures {
        log::error!("worker on lcore {lcore} failed: {e}");
    }
    drop(server);
    drop(rings);
    for v in &mut views {
        if let Err(e) = v.port.stop() {
            log!("port {}: {e}", v.name);
        }
    }
    drop(views);
    for t in &mut twin_ports {
        if let Err(e) = t.stop() {
            log!("kernel twin {}: {e}", t.name());
        }
    }
    drop(twin_ports);
    drop(pool);
    if !failures.is_empty() {
        Err("a worker failed".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_runs_the_real_engine_with_or_without_checkers() {
        let text = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n\
                    [[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n\
                    [[service.real_server]]\naddress = \"198.19.0.2\"\nmethod = \"nat\"\n";
        let mut cfg = Config::from_str(text, "t.toml").unwrap();
        // a monitor even without checkers, so that a reload may add some
        assert!(start_health(&cfg).unwrap().0.is_some());
        cfg.services[0].real_servers[0].health.checkers =
            vec![crate::health::spec::CheckerSpec::new(
                crate::health::spec::CheckKind::Tcp,
            )];
        let m = start_health(&cfg).unwrap().0.expect("monitor");
        assert_eq!(m.report()[0].servers[0].checks.len(), 1);
    }
}
