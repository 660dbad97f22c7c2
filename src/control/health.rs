//! Health checks in the control plane: the checker runner's events turned
//! into table changes, scripts and log lines.
//!
//! **What.** [`HealthMonitor`] owns the checker runner (a
//! [`CheckRunner`]: the real engine, or a scripted fake in tests) and one
//! [`Pool`] per service. Its events go through the pools, and the pools'
//! table changes go to [`ControlState::apply`] as the `-a` / `-e` / `-d`
//! commands vsadm would send, so the workers get them through the normal
//! snapshot publication. Notify and quorum scripts are started without
//! waiting and reaped later.
//!
//! **Reload without flap** (keepalived's issues #187, #1720, #1904). A
//! reload does not hand the file to [`ControlState::reload`] as it is:
//! the file would put back the servers the checks removed and reset
//! inhibited weights. The monitor first carries every pool's state over
//! to the new settings ([`Pool::reconfigure`]), then reloads the table
//! from the *effective* configuration (servers that are down left out or
//! at weight 0, dynamic weights applied, the sorry server in when it
//! serves), then gives the runner the new checkers (unchanged keys keep
//! their state). An unchanged file therefore changes nothing at all.
//!
//! **Failure modes.** A table command the state refuses (an operator
//! deleted the server by hand, say) is logged and the pool's view is
//! kept, so the next transition tries again; a script that cannot start
//! is logged with the reason; events for checkers a reload removed are
//! ignored. A configuration the pool cannot represent (a sorry server
//! that is also a real server of the service) is refused at start and at
//! reload with a clear error.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::config::{Config, RealServerConf, ServiceConf};
use super::ipvsadm::{Command, ServerSpec};
use super::state::{key_from_config, server_config_from, ControlState, ReloadDiff};
use crate::health::pool::{
    Action, CheckerInit, Dest, Member, Pool, PoolConfig, QuorumView, ServerConfig, ServerView,
    SorryConfig,
};
use crate::health::spec::{CheckKey, CheckTarget};
use crate::health::{CheckEvent, CheckRunner, CheckStatus};
use crate::lb::load::DestId;
use crate::lb::service::{RealServerConfig, ServiceKey};
use crate::lb::types::FwdMethod;

mod render;
mod spawn;

pub use render::{checks_json, render_checks};
pub use spawn::{split_command, ProcessSpawner, Spawner};

/// The refusal of health settings while no checker engine runs.
pub const NEED_ENGINE: &str = "health checks need the checker engine, which this build does not \
     start: remove the checkers, quorum, sorry_server and notify settings";

/// Whether a configuration asks for anything health checking does
/// (checkers, quorum settings, a sorry server, scripts, passive checks).
pub fn needs_health(cfg: &Config) -> bool {
    cfg.services.iter().any(|s| {
        s.health != Default::default()
            || s.real_servers
                .iter()
                .any(|r| r.health != Default::default())
    })
}

/// The checkers a real server runs: its own, else its service's defaults.
fn checkers_of<'a>(
    s: &'a ServiceConf,
    r: &'a RealServerConf,
) -> &'a [crate::health::spec::CheckerSpec] {
    if r.health.checkers.is_empty() {
        &s.health.default_checkers
    } else {
        &r.health.checkers
    }
}

/// Address and port of a configured server as the table holds it.
fn dest_of(key: &ServiceKey, r: &RealServerConf) -> Dest {
    let c = server_config_from(key, r);
    Dest {
        addr: c.addr,
        port: c.port,
    }
}

/// Whether every service's health settings can be run (`vsd --check`):
/// the same errors [`HealthMonitor::new`] would give.
pub fn validate(cfg: &Config) -> Result<(), String> {
    for s in &cfg.services {
        pool_config(&key_from_config(&s.key), s)?;
    }
    Ok(())
}

/// The sorry server's address in the table (DR and TUN take the
/// service's port, as for any server).
fn sorry_dest(key: &ServiceKey, s: &ServiceConf) -> Option<Dest> {
    sorry_server_conf(key, s, 0).map(|r| dest_of(key, &r))
}

/// Every checker of every server of `s`, keyed for the runner.
fn service_targets(key: &ServiceKey, s: &ServiceConf) -> Vec<CheckTarget> {
    let name = key.to_string();
    let mut out = Vec::new();
    for r in &s.real_servers {
        let d = dest_of(key, r);
        for (index, spec) in checkers_of(s, r).iter().enumerate() {
            let ck = CheckKey {
                service: name.clone(),
                server: d.addr,
                server_port: d.port,
                index,
            };
            out.push(CheckTarget::new(ck, spec, &r.health, &s.health));
        }
    }
    out
}

/// Every checker a configuration runs.
pub fn targets(cfg: &Config) -> Vec<CheckTarget> {
    cfg.services
        .iter()
        .flat_map(|s| service_targets(&key_from_config(&s.key), s))
        .collect()
}

/// The pool settings of a configured service.
fn pool_config(key: &ServiceKey, s: &ServiceConf) -> Result<PoolConfig, String> {
    let name = key.to_string();
    let targets = service_targets(key, s);
    let mut servers = Vec::with_capacity(s.real_servers.len());
    for r in &s.real_servers {
        let dest = dest_of(key, r);
        let checkers = targets
            .iter()
            .filter(|t| t.key.server == dest.addr && t.key.server_port == dest.port)
            .map(|t| CheckerInit {
                kind: t.spec.kind.name(),
                starts_down: t.timing.starts_down,
            })
            .collect();
        servers.push(ServerConfig {
            dest,
            weight: r.weight,
            inhibit: r
                .health
                .inhibit_on_failure
                .unwrap_or(s.health.inhibit_on_failure),
            notify_up: r.health.notify_up.clone(),
            notify_down: r.health.notify_down.clone(),
            checkers,
        });
    }
    let sorry = match (&s.health.sorry_server, sorry_dest(key, s)) {
        (Some(ss), Some(dest)) => {
            if servers.iter().any(|r| r.dest == dest) {
                return Err(format!(
                    "service {name}: sorry_server {dest} is also one of its real servers \
                     (not supported: give the sorry server its own address or port)"
                ));
            }
            Some(SorryConfig {
                dest,
                inhibit: ss.inhibit,
            })
        }
        _ => None,
    };
    Ok(PoolConfig {
        service: name,
        quorum: s.health.quorum,
        hysteresis: s.health.hysteresis,
        quorum_up: s.health.quorum_up.clone(),
        quorum_down: s.health.quorum_down.clone(),
        sorry,
        omega: s.health.omega,
        servers,
    })
}

/// The table entry of a service's sorry server with weight `weight`.
fn sorry_server_conf(key: &ServiceKey, s: &ServiceConf, weight: u32) -> Option<RealServerConf> {
    let ss = s.health.sorry_server.as_ref()?;
    let method = ss.method.unwrap_or_else(|| {
        s.real_servers
            .first()
            .map_or(FwdMethod::Route, |r| r.method)
    });
    Some(RealServerConf {
        address: ss.addr,
        port: ss.port.unwrap_or(key.port()),
        weight,
        method,
        upper_threshold: 0,
        lower_threshold: 0,
        health: Default::default(),
    })
}

struct Monitored {
    key: ServiceKey,
    conf: ServiceConf,
    pool: Pool,
}

/// The configuration the table should follow: `cfg` with each pool's
/// state applied.
fn effective(cfg: &Config, services: &[Monitored]) -> Config {
    let mut out = cfg.clone();
    for (s, m) in out.services.iter_mut().zip(services) {
        let mut servers = Vec::with_capacity(s.real_servers.len() + 1);
        for r in &s.real_servers {
            if let Some(w) = m.pool.table_weight(dest_of(&m.key, r)) {
                servers.push(RealServerConf {
                    weight: w,
                    ..r.clone()
                });
            }
        }
        for (member, w) in m.pool.desired() {
            if let (Member::Sorry(_), Some(w)) = (member, w) {
                servers.extend(sorry_server_conf(&m.key, &m.conf, w));
            }
        }
        s.real_servers = servers;
    }
    out
}

/// One checker as `vsadm --checks` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerChecks {
    pub pool: ServerView,
    /// Its checkers' status from the runner, by position.
    pub checks: Vec<CheckStatus>,
}

/// One service's health as `vsadm --checks` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceChecks {
    pub service: ServiceKey,
    pub quorum: QuorumView,
    pub servers: Vec<ServerChecks>,
}

/// How often passive checking samples the half-open expiry counters.
pub const PASSIVE_PERIOD: Duration = Duration::from_secs(1);

/// Passive checking's view of one real server.
#[derive(Debug, Clone, Default)]
struct PassiveTrack {
    /// The table slot the samples are of (a new slot starts over).
    slot: Option<DestId>,
    /// (time, cumulative half-open expiries), oldest first, spanning a
    /// little more than the window.
    samples: VecDeque<(Instant, u64)>,
    /// Marked down: when, and each checker's attempt count then (the
    /// mark lifts when one of them passes a later attempt).
    marked: Option<(Instant, Vec<u64>)>,
}

/// Health checks in the control plane (see the module note).
pub struct HealthMonitor {
    runner: Box<dyn CheckRunner>,
    spawner: Box<dyn Spawner>,
    log: Box<dyn FnMut(String)>,
    services: Vec<Monitored>,
    by_name: HashMap<String, usize>,
    events: Vec<CheckEvent>,
    /// Passive checking, by service name and server.
    passive: HashMap<(String, Dest), PassiveTrack>,
    next_passive: Option<Instant>,
}

fn index_services(services: &[Monitored]) -> HashMap<String, usize> {
    services
        .iter()
        .enumerate()
        .map(|(i, m)| (m.pool.config().service.clone(), i))
        .collect()
}

/// The monitor's lines through vsd's logger: a server or quorum going
/// down and failing scripts are warnings, the rest information.
fn log_to_stderr(line: String) {
    let bad = [
        " down (",
        "quorum lost",
        " failed",
        "still running",
        ": cannot ",
    ];
    if bad.iter().any(|b| line.contains(b)) {
        log::warn!("{line}");
    } else {
        log::info!("{line}");
    }
}

impl HealthMonitor {
    /// Monitor `cfg`'s services with `runner`; scripts run as processes
    /// and lines go to standard error. Returns the monitor and the
    /// configuration the table starts from (alpha servers out, the sorry
    /// server in when the quorum starts down).
    pub fn new(
        cfg: &Config,
        runner: Box<dyn CheckRunner>,
    ) -> Result<(HealthMonitor, Config), String> {
        Self::with_io(
            cfg,
            runner,
            Box::<ProcessSpawner>::default(),
            Box::new(log_to_stderr),
        )
    }

    /// [`HealthMonitor::new`] with the script runner and log sink given.
    pub fn with_io(
        cfg: &Config,
        runner: Box<dyn CheckRunner>,
        spawner: Box<dyn Spawner>,
        log: Box<dyn FnMut(String)>,
    ) -> Result<(HealthMonitor, Config), String> {
        let mut services = Vec::with_capacity(cfg.services.len());
        let mut start = Vec::new();
        for s in &cfg.services {
            let key = key_from_config(&s.key);
            let (pool, actions) = Pool::new(pool_config(&key, s)?);
            start.push(actions);
            services.push(Monitored {
                key,
                conf: s.clone(),
                pool,
            });
        }
        let eff = effective(cfg, &services);
        let mut m = HealthMonitor {
            runner,
            spawner,
            log,
            by_name: index_services(&services),
            services,
            events: Vec::new(),
            passive: HashMap::new(),
            next_passive: None,
        };
        for (i, actions) in start.into_iter().enumerate() {
            m.run_notes(i, actions);
        }
        m.runner.set_targets(targets(cfg));
        Ok((m, eff))
    }

    /// The runner's wake-up descriptor, for the control loop's poll set.
    pub fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        self.runner.wake_fd()
    }

    /// Apply the events that arrived and reap finished scripts. True if
    /// the table changed (the caller publishes).
    pub fn poll(&mut self, state: &mut ControlState) -> bool {
        let before = state.version();
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        self.runner.drain_events(&mut events);
        // one batch per service: a mass failure costs one table diff
        let mut by_service: std::collections::BTreeMap<usize, Vec<&CheckEvent>> =
            std::collections::BTreeMap::new();
        for ev in &events {
            if let Some(&i) = self.by_name.get(&ev.key.service) {
                by_service.entry(i).or_default().push(ev);
            }
        }
        for (i, evs) in by_service {
            let mut actions = Vec::new();
            let batch = evs.iter().map(|ev| {
                let dest = Dest {
                    addr: ev.key.server,
                    port: ev.key.server_port,
                };
                (dest, ev.key.index, ev.up, &ev.result)
            });
            if self.services[i].pool.on_checks(batch, &mut actions) {
                self.execute(i, actions, state);
            }
        }
        self.events = events;
        self.spawner.reap(&mut *self.log);
        state.version() != before
    }

    /// Passive checking marked a server down (or lifted the mark).
    pub fn set_passive_down(
        &mut self,
        service: &ServiceKey,
        dest: Dest,
        down: bool,
        reason: &str,
        state: &mut ControlState,
    ) -> bool {
        let Some(&i) = self.by_name.get(&service.to_string()) else {
            return false;
        };
        let mut actions = Vec::new();
        let known = self.services[i]
            .pool
            .set_passive_down(dest, down, reason, &mut actions);
        self.execute(i, actions, state);
        known
    }

    /// Passive checking (`ServiceHealth::passive`, off by default): a
    /// server with `syn_timeouts` or more connections expired half-open
    /// within `window` is marked down until one of its checkers passes an
    /// attempt made after the mark (a server without checkers: until a
    /// window has passed). `half_open(slot)` reads the workers' summed
    /// counters. Call it often; it samples every [`PASSIVE_PERIOD`]. True
    /// if the table changed.
    pub fn passive_tick(
        &mut self,
        state: &mut ControlState,
        now: Instant,
        half_open: &dyn Fn(DestId) -> u64,
    ) -> bool {
        if self.next_passive.is_some_and(|t| now < t) {
            return false;
        }
        self.next_passive = Some(now + PASSIVE_PERIOD);
        let before = state.version();
        let mut marks: Vec<(usize, Dest, bool, String)> = Vec::new();
        let mut status: Option<HashMap<CheckKey, CheckStatus>> = None;
        let mut live = std::collections::HashSet::new();
        for (i, m) in self.services.iter().enumerate() {
            let Some(p) = m.conf.health.passive else {
                continue;
            };
            let name = m.pool.config().service.clone();
            let slots: HashMap<Dest, DestId> = state
                .table()
                .dests(&m.key)
                .unwrap_or_default()
                .into_iter()
                .map(|(id, d)| {
                    (
                        Dest {
                            addr: d.addr,
                            port: d.port,
                        },
                        id,
                    )
                })
                .collect();
            for v in m.pool.servers() {
                let key = (name.clone(), v.dest);
                live.insert(key.clone());
                let track = self.passive.entry(key).or_default();
                if let Some((since, checks_then)) = &track.marked {
                    if !m.pool.passive_down(v.dest) {
                        // an event lifted it already
                        track.marked = None;
                        continue;
                    }
                    let n = checks_then.len();
                    let passed = if n == 0 {
                        now.duration_since(*since) >= p.window
                    } else {
                        let st = status.get_or_insert_with(|| {
                            self.runner
                                .status()
                                .into_iter()
                                .map(|s| (s.key.clone(), s))
                                .collect()
                        });
                        (0..n).any(|index| {
                            let ck = CheckKey {
                                service: name.clone(),
                                server: v.dest.addr,
                                server_port: v.dest.port,
                                index,
                            };
                            st.get(&ck).is_some_and(|s| {
                                s.checks > checks_then[index]
                                    && s.last.as_ref().is_some_and(|r| r.ok)
                            })
                        })
                    };
                    if passed {
                        track.marked = None;
                        track.samples.clear();
                        let why = if n == 0 {
                            format!(
                                "passive: no checker, mark lifted after {}s",
                                p.window.as_secs()
                            )
                        } else {
                            "passive: an active check passed".to_string()
                        };
                        marks.push((i, v.dest, false, why));
                    }
                    continue;
                }
                let Some(&slot) = slots.get(&v.dest) else {
                    track.samples.clear();
                    continue;
                };
                if track.slot != Some(slot) {
                    track.slot = Some(slot);
                    track.samples.clear();
                }
                let count = half_open(slot);
                track.samples.push_back((now, count));
                // keep one sample at or before the window's start
                while track
                    .samples
                    .get(1)
                    .is_some_and(|(t, _)| now.duration_since(*t) >= p.window)
                {
                    track.samples.pop_front();
                }
                let base = track.samples.front().map_or(count, |(_, c)| *c);
                let unanswered = count.saturating_sub(base);
                if v.alive && p.syn_timeouts > 0 && unanswered >= u64::from(p.syn_timeouts) {
                    let n = m
                        .pool
                        .config()
                        .servers
                        .iter()
                        .find(|s| s.dest == v.dest)
                        .map_or(0, |s| s.checkers.len());
                    let st = status.get_or_insert_with(|| {
                        self.runner
                            .status()
                            .into_iter()
                            .map(|s| (s.key.clone(), s))
                            .collect()
                    });
                    let checks_then = (0..n)
                        .map(|index| {
                            st.get(&CheckKey {
                                service: name.clone(),
                                server: v.dest.addr,
                                server_port: v.dest.port,
                                index,
                            })
                            .map_or(0, |s| s.checks)
                        })
                        .collect();
                    track.marked = Some((now, checks_then));
                    track.samples.clear();
                    marks.push((
                        i,
                        v.dest,
                        true,
                        format!(
                            "passive: {unanswered} unanswered SYNs in {}s",
                            p.window.as_secs()
                        ),
                    ));
                }
            }
        }
        self.passive.retain(|k, _| live.contains(k));
        for (i, dest, down, why) in marks {
            let mut actions = Vec::new();
            self.services[i]
                .pool
                .set_passive_down(dest, down, &why, &mut actions);
            self.execute(i, actions, state);
        }
        state.version() != before
    }

    /// Logs and scripts only (start-up and reload: the table follows the
    /// effective configuration instead).
    fn run_notes(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Log(line) => (self.log)(line),
                Action::Run { script, reason } => {
                    self.spawner.spawn(&script, &reason, &mut *self.log)
                }
                _ => {
                    debug_assert!(false, "table action from a start or reload of service {i}")
                }
            }
        }
    }

    /// Carry out a pool's actions on the table.
    fn execute(&mut self, i: usize, actions: Vec<Action>, state: &mut ControlState) {
        for a in actions {
            match a {
                Action::Log(line) => (self.log)(line),
                Action::Run { script, reason } => {
                    self.spawner.spawn(&script, &reason, &mut *self.log)
                }
                Action::Add { member, weight } | Action::SetWeight { member, weight } => {
                    let m = &self.services[i];
                    let Some(server) = self.table_entry(m, member, weight) else {
                        continue;
                    };
                    let spec = ServerSpec {
                        service: m.key,
                        server,
                    };
                    // Add, or edit if somebody (vsadm) put it there already;
                    // set weight, or add if somebody took it out.
                    let (first, second) = match a {
                        Action::Add { .. } => (Command::AddServer(spec), Command::EditServer(spec)),
                        _ => (Command::EditServer(spec), Command::AddServer(spec)),
                    };
                    if let Err(e) = state.apply(&first).or_else(|_| state.apply(&second)) {
                        (self.log)(format!(
                            "health: {} -> {}: cannot set weight {weight}: {e}",
                            m.key,
                            member.dest()
                        ));
                    }
                }
                Action::Remove { member } => {
                    let m = &self.services[i];
                    let d = member.dest();
                    let cmd = Command::DelServer {
                        service: m.key,
                        addr: d.addr,
                        port: d.port,
                    };
                    if let Err(e) = state.apply(&cmd) {
                        (self.log)(format!("health: {} -> {d}: cannot remove: {e}", m.key));
                    }
                }
            }
        }
    }

    /// The table settings of a pool member with `weight`.
    fn table_entry(&self, m: &Monitored, member: Member, weight: u32) -> Option<RealServerConfig> {
        match member {
            Member::Real(d) => m
                .conf
                .real_servers
                .iter()
                .find(|r| dest_of(&m.key, r) == d)
                .map(|r| RealServerConfig {
                    weight,
                    ..server_config_from(&m.key, r)
                }),
            Member::Sorry(_) => {
                sorry_server_conf(&m.key, &m.conf, weight).map(|r| server_config_from(&m.key, &r))
            }
        }
    }

    /// The configuration the table should follow for `cfg` given the
    /// current health states (what [`Self::reload`] loads).
    pub fn effective_config(&self, cfg: &Config) -> Result<Config, String> {
        Ok(effective(cfg, &self.carry_over(cfg)?.0))
    }

    /// The pools for `cfg`, states carried over; with the start/reload
    /// notes of each.
    fn carry_over(&self, cfg: &Config) -> Result<(Vec<Monitored>, Vec<Vec<Action>>), String> {
        let mut services = Vec::with_capacity(cfg.services.len());
        let mut notes = Vec::with_capacity(cfg.services.len());
        for s in &cfg.services {
            let key = key_from_config(&s.key);
            let pc = pool_config(&key, s)?;
            let (pool, actions) = match self.by_name.get(&pc.service) {
                Some(&i) => {
                    let mut pool = self.services[i].pool.clone();
                    let actions = pool.reconfigure(pc);
                    (pool, actions)
                }
                None => Pool::new(pc),
            };
            notes.push(actions);
            services.push(Monitored {
                key,
                conf: s.clone(),
                pool,
            });
        }
        Ok((services, notes))
    }

    /// SIGHUP / `vsadm --reload`: the new settings, states kept, the table
    /// reloaded from the effective configuration, the runner given the new
    /// checkers. All or nothing: on an error nothing changed.
    pub fn reload(&mut self, cfg: &Config, state: &mut ControlState) -> Result<ReloadDiff, String> {
        let (services, notes) = self.carry_over(cfg)?;
        let diff = state.reload(&effective(cfg, &services))?;
        let old = std::mem::replace(&mut self.services, services);
        self.by_name = index_services(&self.services);
        // services that went away: their alive servers' notify_down and
        // the quorum_down, as keepalived runs them
        for m in old {
            if !self.by_name.contains_key(&m.pool.config().service) {
                let actions = m.pool.retire();
                self.run_notes(usize::MAX, actions);
            }
        }
        for (i, actions) in notes.into_iter().enumerate() {
            self.run_notes(i, actions);
        }
        self.runner.set_targets(targets(cfg));
        Ok(diff)
    }

    /// Shutting down: `omega` services run their down notifiers; waits up
    /// to a second for the scripts.
    pub fn shutdown(&mut self) {
        let actions: Vec<Action> = self
            .services
            .iter()
            .flat_map(|m| m.pool.shutdown())
            .collect();
        self.run_notes(usize::MAX, actions);
        self.spawner
            .wait_all(Duration::from_secs(1), &mut *self.log);
    }

    /// Every service's pool and checkers, for `vsadm --checks` and metrics.
    pub fn report(&self) -> Vec<ServiceChecks> {
        let mut by_key: HashMap<CheckKey, CheckStatus> = self
            .runner
            .status()
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        self.services
            .iter()
            .map(|m| {
                let name = m.pool.config().service.clone();
                let servers = m
                    .pool
                    .servers()
                    .into_iter()
                    .map(|v| {
                        let n = m
                            .pool
                            .config()
                            .servers
                            .iter()
                            .find(|s| s.dest == v.dest)
                            .map_or(0, |s| s.checkers.len());
                        let checks = (0..n)
                            .filter_map(|index| {
                                by_key.remove(&CheckKey {
                                    service: name.clone(),
                                    server: v.dest.addr,
                                    server_port: v.dest.port,
                                    index,
                                })
                            })
                            .collect();
                        ServerChecks { pool: v, checks }
                    })
                    .collect();
                ServiceChecks {
                    service: m.key,
                    quorum: m.pool.quorum(),
                    servers,
                }
            })
            .collect()
    }

    /// The servers of a service, for passive checking.
    pub fn servers_of(&self, service: &ServiceKey) -> Vec<(Dest, bool)> {
        self.by_name
            .get(&service.to_string())
            .map(|&i| {
                self.services[i]
                    .pool
                    .servers()
                    .into_iter()
                    .map(|v| (v.dest, v.alive))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub mod testing {
    //! A scripted checker runner and a recording script runner.
    use super::*;
    use crate::health::spec::Script;
    use crate::health::CheckResult;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What the fake runner was told and what it will report.
    #[derive(Default)]
    pub struct FakeRunnerState {
        pub targets: Vec<CheckTarget>,
        pub set_calls: usize,
        pub pending: Vec<CheckEvent>,
        pub status: Vec<CheckStatus>,
    }

    /// A [`CheckRunner`] whose events the test scripts.
    #[derive(Clone, Default)]
    pub struct FakeRunner(pub Rc<RefCell<FakeRunnerState>>);

    impl CheckRunner for FakeRunner {
        fn set_targets(&mut self, targets: Vec<CheckTarget>) {
            let mut s = self.0.borrow_mut();
            s.targets = targets;
            s.set_calls += 1;
        }
        fn drain_events(&mut self, out: &mut Vec<CheckEvent>) {
            out.append(&mut self.0.borrow_mut().pending);
        }
        fn status(&self) -> Vec<CheckStatus> {
            self.0.borrow().status.clone()
        }
        fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
    }

    impl FakeRunner {
        /// Queue a transition of checker `index` of `server` in `service`.
        pub fn push(&self, service: &str, server: &str, index: usize, up: bool, reason: &str) {
            let (addr, port) = server.rsplit_once(':').unwrap();
            self.0.borrow_mut().pending.push(CheckEvent {
                key: CheckKey {
                    service: service.into(),
                    server: addr.parse().unwrap(),
                    server_port: port.parse().unwrap(),
                    index,
                },
                up,
                result: CheckResult {
                    ok: up,
                    reason: reason.into(),
                    latency: Duration::from_millis(2),
                    dynamic_weight: None,
                },
            });
        }
    }

    /// A [`Spawner`] that records what it was asked to run.
    #[derive(Clone, Default)]
    pub struct RecordingSpawner(pub Rc<RefCell<Vec<String>>>);

    impl Spawner for RecordingSpawner {
        fn spawn(&mut self, script: &Script, _reason: &str, _log: &mut dyn FnMut(String)) {
            self.0.borrow_mut().push(script.command.clone());
        }
        fn reap(&mut self, _log: &mut dyn FnMut(String)) {}
        fn wait_all(&mut self, _limit: Duration, _log: &mut dyn FnMut(String)) {}
    }

    /// A monitor over a fake runner, its spawner and its log.
    pub struct Rig {
        pub runner: FakeRunner,
        pub scripts: RecordingSpawner,
        pub log: Rc<RefCell<Vec<String>>>,
    }

    impl Rig {
        pub fn start(cfg: &Config) -> Result<(Rig, HealthMonitor, Config), String> {
            let rig = Rig {
                runner: FakeRunner::default(),
                scripts: RecordingSpawner::default(),
                log: Rc::default(),
            };
            let log = rig.log.clone();
            let (m, eff) = HealthMonitor::with_io(
                cfg,
                Box::new(rig.runner.clone()),
                Box::new(rig.scripts.clone()),
                Box::new(move |l| log.borrow_mut().push(l)),
            )?;
            Ok((rig, m, eff))
        }

        /// Scripts run and lines logged since the last call.
        pub fn take(&self) -> (Vec<String>, Vec<String>) {
            (
                std::mem::take(&mut *self.scripts.0.borrow_mut()),
                std::mem::take(&mut *self.log.borrow_mut()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Rig;
    use super::*;
    use crate::health::spec::{CheckKind, CheckerSpec, HttpCheck, Script, SorryServer};

    const BASE: &str =
        "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n";
    const SVC: &str = "TCP 198.18.0.100:80";

    fn script(cmd: &str) -> Option<Script> {
        Some(Script {
            command: cmd.into(),
            user: None,
            group: None,
        })
    }

    /// A NAT service with servers .2, .3, .4 (weights 1, 2, 3) each with
    /// one HTTP_GET checker and notify scripts.
    fn cfg_with(extra: &str, edit: impl FnOnce(&mut Config)) -> Config {
        let mut text = format!(
            "{BASE}\n[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\nscheduler = \"wrr\"\n"
        );
        for (i, w) in [(2, 1), (3, 2), (4, 3)] {
            text.push_str(&format!(
                "[[service.real_server]]\naddress = \"198.19.0.{i}\"\nport = 80\nmethod = \"nat\"\nweight = {w}\n"
            ));
        }
        text.push_str(extra);
        let mut cfg = Config::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        for r in &mut cfg.services[0].real_servers {
            let last = match r.address {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(_) => 0,
            };
            r.health.checkers = vec![CheckerSpec::new(CheckKind::Http(HttpCheck::default()))];
            r.health.notify_up = script(&format!("/bin/up {last}"));
            r.health.notify_down = script(&format!("/bin/down {last}"));
        }
        edit(&mut cfg);
        cfg
    }

    use std::net::IpAddr;

    fn cfg() -> Config {
        cfg_with("", |_| {})
    }

    fn table(state: &ControlState) -> Vec<(String, u32)> {
        let key = key_from_config(&cfg().services[0].key);
        let mut v: Vec<(String, u32)> = state
            .table()
            .dests(&key)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, d)| {
                (
                    Dest {
                        addr: d.addr,
                        port: d.port,
                    }
                    .to_string(),
                    d.weight,
                )
            })
            .collect();
        v.sort();
        v
    }

    fn rows(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(a, w)| (a.to_string(), *w)).collect()
    }

    fn started(c: &Config) -> (Rig, HealthMonitor, ControlState) {
        let (rig, m, eff) = Rig::start(c).unwrap();
        let state = ControlState::from_config(&eff).unwrap();
        (rig, m, state)
    }

    #[test]
    fn a_failing_server_leaves_the_table_through_the_state_and_comes_back() {
        let (rig, mut m, mut state) = started(&cfg());
        assert_eq!(rig.runner.0.borrow().targets.len(), 3);
        assert_eq!(
            table(&state),
            rows(&[
                ("198.19.0.2:80", 1),
                ("198.19.0.3:80", 2),
                ("198.19.0.4:80", 3)
            ])
        );
        assert!(!m.poll(&mut state), "no events, no change");
        rig.runner
            .push(SVC, "198.19.0.2:80", 0, false, "status 503");
        assert!(m.poll(&mut state));
        assert_eq!(
            table(&state),
            rows(&[("198.19.0.3:80", 2), ("198.19.0.4:80", 3)])
        );
        let (scripts, log) = rig.take();
        assert_eq!(scripts, vec!["/bin/down 2"]);
        assert_eq!(
            log,
            vec![
                "health: TCP 198.18.0.100:80 -> 198.19.0.2:80 down (HTTP_GET: status 503); removed"
            ]
        );
        rig.runner.push(SVC, "198.19.0.2:80", 0, true, "");
        assert!(m.poll(&mut state));
        assert_eq!(
            table(&state),
            rows(&[
                ("198.19.0.2:80", 1),
                ("198.19.0.3:80", 2),
                ("198.19.0.4:80", 3)
            ])
        );
        assert_eq!(rig.take().0, vec!["/bin/up 2"]);
        // -Ln of the state matches ipvsadm's (the server is a plain entry)
        let listed = state.save_text();
        assert!(
            listed.contains("-a -t 198.18.0.100:80 -r 198.19.0.2:80 -m -w 1"),
            "{listed}"
        );
    }

    #[test]
    fn inhibited_servers_stay_listed_at_weight_zero() {
        let c = cfg_with("", |c| c.services[0].health.inhibit_on_failure = true);
        let (rig, mut m, mut state) = started(&c);
        rig.runner
            .push(SVC, "198.19.0.3:80", 0, false, "timeout after 3s");
        m.poll(&mut state);
        assert_eq!(
            table(&state),
            rows(&[
                ("198.19.0.2:80", 1),
                ("198.19.0.3:80", 0),
                ("198.19.0.4:80", 3)
            ])
        );
        assert!(rig.take().1[0]
            .ends_with("198.19.0.3:80 down (HTTP_GET: timeout after 3s); inhibited at weight 0"));
    }

    #[test]
    fn default_checkers_apply_to_servers_without_their_own_and_alpha_starts_out() {
        let c = cfg_with("", |c| {
            let mut spec = CheckerSpec::new(CheckKind::Tcp);
            spec.timing.alpha = Some(true);
            c.services[0].health.default_checkers = vec![spec];
            c.services[0].real_servers[1].health.checkers.clear();
        });
        let (rig, _m, state) = started(&c);
        let targets = rig.runner.0.borrow().targets.clone();
        assert_eq!(targets.len(), 3);
        let t = targets
            .iter()
            .find(|t| t.key.server.to_string() == "198.19.0.3")
            .unwrap();
        assert_eq!(
            (t.spec.kind.name(), t.timing.starts_down),
            ("TCP_CHECK", true)
        );
        // the alpha server is out until its first success
        assert_eq!(
            table(&state),
            rows(&[("198.19.0.2:80", 1), ("198.19.0.4:80", 3)])
        );
    }

    #[test]
    fn a_sorry_server_that_is_a_real_server_is_refused() {
        assert!(validate(&cfg()).is_ok());
        let c = cfg_with("", |c| {
            c.services[0].health.sorry_server = Some(SorryServer {
                addr: "198.19.0.2".parse().unwrap(),
                port: None,
                method: None,
                inhibit: false,
            })
        });
        let e = Rig::start(&c).err().unwrap();
        assert!(
            e.contains("sorry_server 198.19.0.2:80 is also one of its real servers"),
            "{e}"
        );
    }

    #[test]
    fn the_sorry_server_enters_the_table_with_the_services_method() {
        let c = cfg_with("", |c| {
            c.services[0].health.sorry_server = Some(SorryServer {
                addr: "198.19.0.99".parse().unwrap(),
                port: Some(8080),
                method: None,
                inhibit: false,
            })
        });
        let (rig, mut m, mut state) = started(&c);
        for s in ["198.19.0.2:80", "198.19.0.3:80", "198.19.0.4:80"] {
            rig.runner.push(SVC, s, 0, false, "connection refused");
        }
        m.poll(&mut state);
        assert_eq!(table(&state), rows(&[("198.19.0.99:8080", 1)]));
        let save = state.save_text();
        assert!(save.contains("-r 198.19.0.99:8080 -m -w 1"), "{save}");
        rig.runner.push(SVC, "198.19.0.4:80", 0, true, "");
        m.poll(&mut state);
        assert_eq!(table(&state), rows(&[("198.19.0.4:80", 3)]));
    }

    #[test]
    fn a_direct_routing_sorry_server_takes_the_service_port() {
        let c = cfg_with("", |c| {
            for r in &mut c.services[0].real_servers {
                r.method = FwdMethod::Route;
            }
            c.services[0].health.sorry_server = Some(SorryServer {
                addr: "198.19.0.99".parse().unwrap(),
                port: Some(8080),
                method: None,
                inhibit: false,
            })
        });
        let (rig, mut m, mut state) = started(&c);
        for s in ["198.19.0.2:80", "198.19.0.3:80", "198.19.0.4:80"] {
            rig.runner.push(SVC, s, 0, false, "connection refused");
        }
        m.poll(&mut state);
        assert_eq!(table(&state), rows(&[("198.19.0.99:80", 1)]));
        rig.runner.push(SVC, "198.19.0.2:80", 0, true, "");
        m.poll(&mut state);
        assert_eq!(table(&state), rows(&[("198.19.0.2:80", 1)]));
        assert!(!rig.take().1.iter().any(|l| l.contains("cannot")));
    }

    #[test]
    fn reload_of_an_unchanged_file_changes_nothing() {
        let c = cfg_with("", |c| c.services[0].health.inhibit_on_failure = true);
        let (rig, mut m, mut state) = started(&c);
        rig.runner.push(SVC, "198.19.0.2:80", 0, false, "refused");
        m.poll(&mut state);
        rig.take();
        let version = state.version();
        let targets = rig.runner.0.borrow().targets.clone();
        let diff = m.reload(&c, &mut state).unwrap();
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(state.version(), version);
        assert_eq!(rig.take(), (vec![], vec![]), "no transition, no script");
        assert_eq!(rig.runner.0.borrow().targets, targets);
        assert_eq!(rig.runner.0.borrow().set_calls, 2);
        // the inhibited server was not put back at its file weight
        assert_eq!(table(&state)[0], ("198.19.0.2:80".to_string(), 0));
    }

    #[test]
    fn a_down_server_is_not_readded_by_a_reload() {
        let (rig, mut m, mut state) = started(&cfg());
        rig.runner.push(SVC, "198.19.0.3:80", 0, false, "refused");
        m.poll(&mut state);
        // ControlState::reload alone would put it back: the monitor does not
        let diff = m.reload(&cfg(), &mut state).unwrap();
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(
            table(&state),
            rows(&[("198.19.0.2:80", 1), ("198.19.0.4:80", 3)])
        );
    }

    #[test]
    fn a_changed_file_makes_exactly_its_changes() {
        let (rig, mut m, mut state) = started(&cfg());
        rig.runner.push(SVC, "198.19.0.3:80", 0, false, "refused");
        m.poll(&mut state);
        rig.take();
        let next = cfg_with(
            "[[service.real_server]]\naddress = \"198.19.0.5\"\nport = 80\nmethod = \"nat\"\nweight = 4\n",
            |c| {
                let s = &mut c.services[0];
                s.real_servers[0].weight = 7; // alive: applies
                s.real_servers[1].weight = 9; // down: stays out
                s.real_servers.remove(2); // removed: notify_down (keepalived)
                // new server, with a different checker
                s.real_servers[2].health.checkers = vec![CheckerSpec::new(CheckKind::Tcp)];
            },
        );
        let diff = m.reload(&next, &mut state).unwrap();
        let key = key_from_config(&next.services[0].key);
        let a = |s: &str| (key, s.parse::<IpAddr>().unwrap(), 80u16);
        assert_eq!(diff.servers_edited, vec![a("198.19.0.2")]);
        assert_eq!(diff.servers_added, vec![a("198.19.0.5")]);
        assert_eq!(diff.servers_removed, vec![a("198.19.0.4")]);
        assert!(diff.services_added.is_empty() && diff.services_edited.is_empty());
        assert_eq!(
            table(&state),
            rows(&[("198.19.0.2:80", 7), ("198.19.0.5:80", 4)])
        );
        let (scripts, log) = rig.take();
        assert_eq!(scripts, vec!["/bin/down 4"]);
        assert!(log.is_empty(), "{log:?}");
        let kinds: Vec<&str> = rig
            .runner
            .0
            .borrow()
            .targets
            .iter()
            .map(|t| t.spec.kind.name())
            .collect();
        assert_eq!(kinds, vec!["HTTP_GET", "HTTP_GET", "TCP_CHECK"]);
        // the down server comes back at its new weight
        rig.runner.push(SVC, "198.19.0.3:80", 0, true, "");
        m.poll(&mut state);
        assert_eq!(
            table(&state),
            rows(&[
                ("198.19.0.2:80", 7),
                ("198.19.0.3:80", 9),
                ("198.19.0.5:80", 4)
            ])
        );
        // a stale event for the removed server is ignored
        rig.runner.push(SVC, "198.19.0.4:80", 0, false, "refused");
        assert!(!m.poll(&mut state));
    }

    #[test]
    fn an_inhibited_server_recovering_after_a_reload_gets_its_weight_back() {
        let c = cfg_with("", |c| c.services[0].health.inhibit_on_failure = true);
        let (rig, mut m, mut state) = started(&c);
        rig.runner.push(SVC, "198.19.0.2:80", 0, false, "refused");
        m.poll(&mut state);
        let next = cfg_with("", |c| {
            c.services[0].health.inhibit_on_failure = true;
            c.services[0].real_servers[0].weight = 5;
        });
        m.reload(&next, &mut state).unwrap();
        assert_eq!(table(&state)[0], ("198.19.0.2:80".to_string(), 0));
        rig.runner.push(SVC, "198.19.0.2:80", 0, true, "");
        m.poll(&mut state);
        assert_eq!(table(&state)[0], ("198.19.0.2:80".to_string(), 5));
    }

    #[test]
    fn a_refused_reload_changes_nothing() {
        let (rig, mut m, mut state) = started(&cfg());
        rig.runner.push(SVC, "198.19.0.2:80", 0, false, "refused");
        m.poll(&mut state);
        let bad = cfg_with("", |c| {
            c.services[0].health.sorry_server = Some(SorryServer {
                addr: "198.19.0.3".parse().unwrap(),
                port: None,
                method: None,
                inhibit: false,
            })
        });
        let v = state.version();
        assert!(m.reload(&bad, &mut state).is_err());
        assert_eq!(state.version(), v);
        assert_eq!(rig.runner.0.borrow().set_calls, 1);
        rig.runner.push(SVC, "198.19.0.2:80", 0, true, "");
        m.poll(&mut state);
        assert_eq!(table(&state).len(), 3);
    }

    #[test]
    fn omega_runs_down_notifiers_at_shutdown() {
        let c = cfg_with("", |c| {
            c.services[0].health.omega = true;
            c.services[0].health.quorum_down = script("/bin/qdown");
        });
        let (rig, mut m, mut state) = started(&c);
        rig.runner.push(SVC, "198.19.0.2:80", 0, false, "refused");
        m.poll(&mut state);
        rig.take();
        m.shutdown();
        assert_eq!(
            rig.take().0,
            vec!["/bin/down 3", "/bin/down 4", "/bin/qdown"]
        );
    }

    fn ask(
        state: &mut ControlState,
        m: Option<&mut HealthMonitor>,
        args: &[&str],
    ) -> serde_json::Value {
        let stats = crate::control::state::testing::FakeStats::default();
        let req = serde_json::json!({"v": 1, "cmd": "ipvsadm", "args": args});
        crate::control::api::handle_request_with(state, m, &stats, &req).unwrap()
    }

    fn status(server: &str, index: usize, up: bool, reason: &str) -> CheckStatus {
        let (addr, port) = server.rsplit_once(':').unwrap();
        CheckStatus {
            key: CheckKey {
                service: SVC.into(),
                server: addr.parse().unwrap(),
                server_port: port.parse().unwrap(),
                index,
            },
            kind: "HTTP_GET",
            target: server.into(),
            up,
            last: Some(crate::health::CheckResult {
                ok: up,
                reason: reason.into(),
                latency: Duration::from_micros(1500),
                dynamic_weight: None,
            }),
            checks: 12,
            failures: if up { 0 } else { 4 },
            transitions: if up { 0 } else { 1 },
            since_change: Duration::from_secs(75),
        }
    }

    #[test]
    fn listings_show_removed_and_inhibited_servers_as_ipvs_would() {
        let c = cfg_with("", |c| {
            c.services[0].real_servers[1].health.inhibit_on_failure = Some(true)
        });
        let (rig, mut m, mut state) = started(&c);
        rig.runner
            .push(SVC, "198.19.0.2:80", 0, false, "status 503");
        rig.runner
            .push(SVC, "198.19.0.3:80", 0, false, "connection refused");
        m.poll(&mut state);
        let ln = ask(&mut state, Some(&mut m), &["-Ln"]);
        assert_eq!(
            ln["text"].as_str().unwrap(),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  198.18.0.100:80 wrr\n\
             \x20 -> 198.19.0.3:80                Masq    0      0          0         \n\
             \x20 -> 198.19.0.4:80                Masq    3      0          0         \n"
        );
        rig.runner.0.borrow_mut().status = vec![
            status("198.19.0.2:80", 0, false, "status 503"),
            status("198.19.0.3:80", 0, false, "connection refused"),
            status("198.19.0.4:80", 0, true, ""),
        ];
        let checks = ask(&mut state, Some(&mut m), &["--checks"]);
        let text = checks["text"].as_str().unwrap();
        assert!(
            text.contains("TCP 198.18.0.100:80 up (live weight 3, quorum 1+0)\n"),
            "{text}"
        );
        assert!(
            text.contains("  -> 198.19.0.2:80                removed   - (HTTP_GET: status 503)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  -> 198.19.0.3:80                inhibited 0 (HTTP_GET: connection refused)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  -> 198.19.0.4:80                alive     3\n"),
            "{text}"
        );
        assert!(
            text.contains("     HTTP_GET   198.19.0.2:80          down  status 503             1.5ms    12         4          1      1m15s\n"),
            "{text}"
        );
        assert_eq!(checks["checks"][0]["servers"][1]["state"], "inhibited");
        assert_eq!(
            checks["checks"][0]["servers"][0]["checks"][0]["failures"],
            4
        );
        let prom = ask(&mut state, Some(&mut m), &["--prometheus"]);
        let prom = prom["text"].as_str().unwrap();
        for line in [
            "vsd_service_quorum_up{service=\"TCP 198.18.0.100:80\"} 1\n",
            "vsd_real_server_up{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\"} 0\n",
            "vsd_real_server_up{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.4:80\"} 1\n",
            "vsd_health_check_up{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\",checker=\"HTTP_GET\",index=\"0\"} 0\n",
            "vsd_health_checks_total{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\",checker=\"HTTP_GET\",index=\"0\"} 12\n",
            "vsd_health_check_failures_total{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\",checker=\"HTTP_GET\",index=\"0\"} 4\n",
            "vsd_health_transitions_total{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\",checker=\"HTTP_GET\",index=\"0\"} 1\n",
            "vsd_health_check_latency_seconds{service=\"TCP 198.18.0.100:80\",server=\"198.19.0.2:80\",checker=\"HTTP_GET\",index=\"0\"} 0.0015\n",
            "# TYPE vsd_health_checks_total counter\n",
        ] {
            assert!(prom.contains(line), "{line} missing from\n{prom}");
        }
        // without health checks: an empty --checks, no health families
        let mut plain = ControlState::default();
        let checks = ask(&mut plain, None, &["--checks"]);
        assert_eq!(checks["checks"], serde_json::json!([]));
        let prom = ask(&mut plain, None, &["--prometheus"]);
        assert!(!prom["text"]
            .as_str()
            .unwrap()
            .contains("vsd_real_server_up"));
    }

    #[test]
    fn without_the_engine_a_reload_with_health_settings_is_refused() {
        let mut state = ControlState::default();
        let e = crate::control::api::reload_with(&mut state, None, &cfg()).unwrap_err();
        assert_eq!(e, NEED_ENGINE);
        let mut plain = cfg();
        for r in &mut plain.services[0].real_servers {
            r.health = Default::default();
        }
        assert!(crate::control::api::reload_with(&mut state, None, &plain).is_ok());
    }

    fn passive_cfg(syn_timeouts: u32, window_s: u64) -> Config {
        cfg_with("", |c| {
            c.services[0].health.passive = Some(crate::health::spec::PassiveCheck {
                syn_timeouts,
                window: Duration::from_secs(window_s),
            });
            // .4 has no checker: its mark lifts after a window
            c.services[0].real_servers[2].health.checkers.clear();
        })
    }

    fn slot_of(state: &ControlState, server: &str) -> DestId {
        let key = key_from_config(&cfg().services[0].key);
        state
            .table()
            .dests(&key)
            .unwrap()
            .into_iter()
            .find(|(_, d)| {
                Dest {
                    addr: d.addr,
                    port: d.port,
                }
                .to_string()
                    == server
            })
            .unwrap()
            .0
    }

    #[test]
    fn passive_checking_marks_a_server_with_unanswered_syns_down_until_a_check_passes() {
        let (rig, mut m, mut state) = started(&passive_cfg(5, 10));
        let counts: std::cell::RefCell<HashMap<DestId, u64>> = Default::default();
        let s2 = slot_of(&state, "198.19.0.2:80");
        let s3 = slot_of(&state, "198.19.0.3:80");
        let s4 = slot_of(&state, "198.19.0.4:80");
        let read = |id: DestId| counts.borrow().get(&id).copied().unwrap_or(0);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!m.passive_tick(&mut state, at(0), &read));
        // .3: 4 within the window, then 2 more after it slid: never 5 in 10 s
        counts.borrow_mut().insert(s3, 4);
        assert!(!m.passive_tick(&mut state, at(1), &read));
        counts.borrow_mut().insert(s3, 6);
        assert!(!m.passive_tick(&mut state, at(12), &read));
        // within one period nothing is sampled
        counts.borrow_mut().insert(s2, 50);
        assert!(!m.passive_tick(&mut state, at(12) + Duration::from_millis(10), &read));
        // .2: 50 in 2 s -> down, with the reason
        rig.runner.0.borrow_mut().status = vec![status("198.19.0.2:80", 0, true, "")];
        assert!(m.passive_tick(&mut state, at(14), &read));
        assert_eq!(
            table(&state),
            rows(&[("198.19.0.3:80", 2), ("198.19.0.4:80", 3)])
        );
        let (scripts, log) = rig.take();
        assert_eq!(scripts, vec!["/bin/down 2"]);
        assert_eq!(
            log,
            vec!["health: TCP 198.18.0.100:80 -> 198.19.0.2:80 down (passive: 50 unanswered SYNs in 10s); removed"]
        );
        // the same attempt count passing again is not a new check
        assert!(!m.passive_tick(&mut state, at(16), &read));
        // a later attempt that failed does not lift it either
        rig.runner.0.borrow_mut().status = vec![status("198.19.0.2:80", 0, false, "refused")];
        rig.runner.0.borrow_mut().status[0].checks = 13;
        assert!(!m.passive_tick(&mut state, at(17), &read));
        // one that passed does
        rig.runner.0.borrow_mut().status = vec![status("198.19.0.2:80", 0, true, "")];
        rig.runner.0.borrow_mut().status[0].checks = 14;
        assert!(m.passive_tick(&mut state, at(18), &read));
        assert_eq!(table(&state).len(), 3);
        assert!(rig.take().1[0].ends_with("198.19.0.2:80 up (passive: an active check passed)"));
        // .4 has no checker: marked, then back after one window
        counts.borrow_mut().insert(s4, 9);
        assert!(m.passive_tick(&mut state, at(19), &read));
        assert_eq!(table(&state).len(), 2);
        assert!(!m.passive_tick(&mut state, at(25), &read));
        assert!(m.passive_tick(&mut state, at(30), &read));
        assert_eq!(table(&state).len(), 3);
    }

    #[test]
    fn passive_checking_is_off_by_default() {
        let (_rig, mut m, mut state) = started(&cfg());
        let s2 = slot_of(&state, "198.19.0.2:80");
        let t0 = Instant::now();
        let read = |id: DestId| if id == s2 { 1_000_000 } else { 0 };
        assert!(!m.passive_tick(&mut state, t0, &|_| 0));
        assert!(!m.passive_tick(&mut state, t0 + Duration::from_secs(5), &read));
        assert_eq!(table(&state).len(), 3);
    }

    #[test]
    fn needs_health_sees_any_health_setting() {
        let mut c = cfg();
        assert!(needs_health(&c));
        for r in &mut c.services[0].real_servers {
            r.health = Default::default();
        }
        assert!(!needs_health(&c));
        c.services[0].health.quorum = 2;
        assert!(needs_health(&c));
    }

    #[test]
    fn commands_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_command(r#"/bin/notify "a b" 'c "d"' e\ f "x\"y" $HOME"#).unwrap(),
            vec!["/bin/notify", "a b", "c \"d\"", "e f", "x\"y", "$HOME"]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("/bin/x 'open").is_err());
    }

    #[test]
    fn processes_start_without_waiting_and_failures_are_logged() {
        let mut sp = ProcessSpawner::default();
        let mut log = Vec::new();
        let s = |c: &str| Script {
            command: c.into(),
            user: None,
            group: None,
        };
        sp.spawn(&s("/nonexistent/notify up"), "test", &mut |l| log.push(l));
        assert_eq!(sp.running(), 0);
        assert!(
            log[0].contains("`/nonexistent/notify up' (test) not started"),
            "{log:?}"
        );
        sp.spawn(&s("/bin/sh -c 'exit 3'"), "fails", &mut |l| log.push(l));
        sp.spawn(&s("true"), "passes", &mut |l| log.push(l));
        let mut as_root = s("true");
        as_root.user = Some("root".into());
        as_root.group = Some("0".into());
        sp.spawn(&as_root, "as root", &mut |l| log.push(l));
        let mut nobody = s("true");
        nobody.user = Some("no-such-user-vsd".into());
        sp.spawn(&nobody, "bad user", &mut |l| log.push(l));
        assert!(log[1].contains("no user no-such-user-vsd"), "{log:?}");
        sp.wait_all(Duration::from_secs(10), &mut |l| log.push(l));
        assert_eq!(sp.running(), 0);
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(log[2].contains("(fails) failed: exit status: 3"), "{log:?}");
    }
}
