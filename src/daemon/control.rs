//! The control thread's duties between loop turns (publishing, reload, health,
//! announce, sync daemons, rules file) and its answers to vsadm commands.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::view::PlaneStats;
use super::{vip_activity, Control};
use crate::control::announce::{Announcer, PlaneFacts};
use crate::control::api;
use crate::control::config::Config;
use crate::control::socket::Handler;
use crate::control::vipwatch::VipWatch;
use crate::dataplane::worker::PlaneConfig;
use crate::dpdk::Eal;
use crate::lb::stats::StatsTable;

impl Control<'_> {
    /// Publish the state's snapshot to the workers if it changed.
    pub(super) fn publish_if_changed(&mut self, published_version: &mut u64) {
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
    pub(super) fn poll_vipwatch(&mut self) -> bool {
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
    pub(super) fn slots_in_use(&self) -> usize {
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
    pub(super) fn evaluate_announce(&mut self, finished: &[bool], force: bool) {
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
    pub(super) fn tick(&mut self) {
        let stats = PlaneStats::new(&self.view);
        self.state.tick(&stats);
        if self.view.workers_caught_up() {
            self.state.release_drained(&stats);
        }
    }

    /// Apply the health checks' news to the table. True if it changed.
    pub(super) fn poll_health(&mut self) -> bool {
        match self.health.as_mut() {
            Some(h) => h.poll(&mut self.state),
            None => false,
        }
    }

    /// Passive health checking over the workers' half-open expiry
    /// counters. True if the table changed.
    pub(super) fn tick_health(&mut self) -> bool {
        let Some(h) = self.health.as_mut() else {
            return false;
        };
        let tables = &self.view.lb_stats;
        h.passive_tick(&mut self.state, Instant::now(), &|id| {
            StatsTable::sum_syn_timeouts(tables.iter().map(|t| &**t), id)
        })
    }

    /// The Prometheus exposition, as `vsadm --prometheus` prints it.
    pub(super) fn prometheus_text(&mut self) -> String {
        let stats = PlaneStats::new(&self.view);
        let req = json!({"v": 1, "cmd": "ipvsadm", "args": ["--prometheus"]});
        match api::handle_request_with(&mut self.state, self.health.as_mut(), &stats, &req) {
            Ok(v) => v["text"].as_str().unwrap_or_default().to_string(),
            Err(e) => format!("# error: {e}\n"),
        }
    }

    /// Start and stop sync daemons to match the state; a daemon that
    /// cannot start is taken out of the state again and reported.
    pub(super) fn run_sync_daemons(&mut self) -> Result<(), String> {
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
    pub(super) fn save_rules(&mut self) {
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
    pub(super) fn reload(&mut self) {
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

/// The longest the announce rule waits between two evaluations.
const ANNOUNCE_PERIOD: Duration = Duration::from_millis(100);

/// Open `[announce]`'s interface (rtnetlink) and make the announcer.
pub(super) fn open_announcer(
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
