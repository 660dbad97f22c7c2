//! The pool: how one virtual service reacts to its checkers, with
//! keepalived's semantics (its `check/ipwrapper.c`).
//!
//! **What.** Per service, the state of every checker of every real server
//! becomes table changes (add / remove / set weight of a server, the sorry
//! server in or out), notify and quorum scripts to run, and log lines that
//! carry the reason of the check that caused them.
//!
//! **Rules (keepalived's).**
//! - A server is alive iff all its checkers are up; one without checkers
//!   is always alive. Checkers with `alpha` start down, so their server
//!   starts out of the pool.
//! - A server that dies is removed from the service, or kept at weight 0
//!   with `inhibit_on_failure`; one that recovers comes back at its
//!   configured weight, or the weight `misc_dynamic` asked for.
//! - Quorum: the sum of the weights of alive servers. Starting with it
//!   `>= quorum + hysteresis` the quorum is up; it is lost when the sum
//!   falls to 0 or below `quorum - hysteresis`, regained when it reaches
//!   `quorum + hysteresis`. Losing it runs `quorum_down` and, with a
//!   `sorry_server`, takes every real server out (inhibited ones stay at
//!   weight 0) and puts the sorry server in; regaining it runs
//!   `quorum_up`, takes the sorry server out (weight 0 with
//!   `sorry_server_inhibit`) and puts the alive servers back.
//! - `notify_up` / `notify_down` run on each server transition; with
//!   `omega`, shutting down runs the down notifiers of alive servers and
//!   `quorum_down`.
//!
//! **How.** The pool never tracks "what the table holds" by replaying
//! commands: [`Pool::desired`] derives the table membership from the state
//! (alive flags, quorum, sorry server), and every change emits the
//! difference between the membership before and after it. So the emitted
//! commands cannot drift from the rules, and a reload needs no commands
//! at all: the caller builds the effective configuration from
//! [`Pool::desired`].
//!
//! **Failure modes.** Events for unknown servers or checker positions
//! (a stale event racing a reload) are ignored and reported by the
//! returned `false`; nothing here panics on input. Pure: no sockets,
//! threads or clocks.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use super::spec::Script;
use super::CheckResult;

/// A server of the table: address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Dest {
    /// `198.18.1.11:8080` or `[2001:db8::1]:80`, as ipvsadm prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A table entry the pool manages: a real server or the sorry server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Member {
    Real(Dest),
    Sorry(Dest),
}

impl Member {
    pub fn dest(&self) -> Dest {
        match *self {
            Member::Real(d) | Member::Sorry(d) => d,
        }
    }
}

/// What the pool asks the control plane to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put a server that is not in the table into it.
    Add { member: Member, weight: u32 },
    /// Change the weight of a server in the table.
    SetWeight { member: Member, weight: u32 },
    /// Take a server out of the table.
    Remove { member: Member },
    /// Start a program (`notify_up`, `quorum_down`...); `reason` is why.
    Run { script: Script, reason: String },
    /// One line for the log.
    Log(String),
}

/// One checker of a server, as the pool needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerInit {
    /// keepalived's block name, for log lines.
    pub kind: &'static str,
    /// `alpha`: starts down.
    pub starts_down: bool,
}

/// A real server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub dest: Dest,
    /// Configured weight.
    pub weight: u32,
    /// `inhibit_on_failure` after inheritance.
    pub inhibit: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    /// Its checkers, by position (the position is the checker's key index).
    pub checkers: Vec<CheckerInit>,
}

/// The sorry server of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SorryConfig {
    pub dest: Dest,
    /// `sorry_server_inhibit`: kept at weight 0 while the quorum is up.
    pub inhibit: bool,
}

/// Weight of the sorry server while it serves (keepalived's default).
pub const SORRY_WEIGHT: u32 = 1;

/// A service's health settings, as the pool needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The service's name in logs: `TCP 198.18.0.100:80`.
    pub service: String,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub sorry: Option<SorryConfig>,
    pub omega: bool,
    pub servers: Vec<ServerConfig>,
}

/// Where a real server stands, for `vsadm --checks` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Alive and serving.
    Alive,
    /// Dead and out of the table.
    Removed,
    /// Dead and kept at weight 0 (`inhibit_on_failure`).
    Inhibited,
    /// Alive, but out of service while the sorry server stands in.
    Sorry,
}

impl ServerState {
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Alive => "alive",
            ServerState::Removed => "removed",
            ServerState::Inhibited => "inhibited",
            ServerState::Sorry => "sorry",
        }
    }
}

/// One real server's pool state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub dest: Dest,
    pub state: ServerState,
    pub alive: bool,
    /// Configured weight.
    pub weight: u32,
    /// The weight it serves with when alive (`misc_dynamic` or configured).
    pub effective_weight: u32,
    /// Its weight in the table, `None` when it is not there.
    pub table_weight: Option<u32>,
    /// Positions of its checkers that are down.
    pub failed_checkers: Vec<usize>,
    /// Why it is down (the last failing result), empty when alive.
    pub reason: String,
}

/// A service's quorum, for `vsadm --checks` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub up: bool,
    /// Sum of the weights of alive servers.
    pub live_weight: u64,
    pub quorum: u32,
    pub hysteresis: u32,
    /// The sorry server, and whether it is serving.
    pub sorry: Option<(Dest, bool)>,
}

#[derive(Debug, Clone)]
struct ServerRt {
    cfg: ServerConfig,
    checker_up: Vec<bool>,
    dynamic_weight: Option<u32>,
    /// Marked down by passive checking, until an active check passes.
    passive_down: bool,
    alive: bool,
    reason: String,
}

impl ServerRt {
    fn fresh(cfg: ServerConfig) -> ServerRt {
        let checker_up: Vec<bool> = cfg.checkers.iter().map(|c| !c.starts_down).collect();
        let alive = checker_up.iter().all(|&u| u);
        let reason = if alive {
            String::new()
        } else {
            "alpha: waiting for a first successful check".to_string()
        };
        ServerRt {
            cfg,
            checker_up,
            dynamic_weight: None,
            passive_down: false,
            alive,
            reason,
        }
    }

    fn computed_alive(&self) -> bool {
        !self.passive_down && self.checker_up.iter().all(|&u| u)
    }

    fn effective_weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.cfg.weight)
    }
}

/// One service's pool.
#[derive(Debug, Clone)]
pub struct Pool {
    cfg: PoolConfig,
    servers: Vec<ServerRt>,
    index: HashMap<Dest, usize>,
    quorum_up: bool,
}

impl Pool {
    /// A pool as it starts: checkers up unless `alpha`, the quorum from
    /// the alive weights. Returns the start-up scripts and log lines; the
    /// table to start with is [`Pool::desired`].
    pub fn new(cfg: PoolConfig) -> (Pool, Vec<Action>) {
        let servers: Vec<ServerRt> = cfg.servers.iter().cloned().map(ServerRt::fresh).collect();
        let mut pool = Pool {
            index: index_of(&servers),
            servers,
            cfg,
            quorum_up: false,
        };
        pool.quorum_up = pool.live_weight() >= pool.up_threshold();
        let mut out = Vec::new();
        pool.starting_quorum(true, &mut out);
        (pool, out)
    }

    /// The settings.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// keepalived, starting (or reloading) with the quorum down: say so,
    /// and with a sorry server run `quorum_down` as it goes in.
    fn starting_quorum(&mut self, sorry_was_out: bool, out: &mut Vec<Action>) {
        if self.quorum_up {
            return;
        }
        if let Some(s) = self.cfg.sorry {
            if sorry_was_out {
                out.push(Action::Log(format!(
                    "health: {} starting with quorum down: live weight {} < {}+{}; sorry server {} in",
                    self.cfg.service,
                    self.live_weight(),
                    self.cfg.quorum,
                    self.cfg.hysteresis,
                    s.dest
                )));
                if let Some(script) = &self.cfg.quorum_down {
                    out.push(Action::Run {
                        script: script.clone(),
                        reason: format!("{} quorum down", self.cfg.service),
                    });
                }
            }
        }
    }

    fn up_threshold(&self) -> u64 {
        u64::from(self.cfg.quorum) + u64::from(self.cfg.hysteresis)
    }

    /// Sum of the weights of alive servers.
    pub fn live_weight(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.alive)
            .map(|s| u64::from(s.effective_weight()))
            .sum()
    }

    /// The sorry server stands in for the pool.
    fn sorry_active(&self) -> bool {
        self.cfg.sorry.is_some() && !self.quorum_up
    }

    /// Whether the quorum is up.
    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    fn member_weight(&self, s: &ServerRt) -> Option<u32> {
        if self.sorry_active() || !s.alive {
            s.cfg.inhibit.then_some(0)
        } else {
            Some(s.effective_weight())
        }
    }

    /// What the table should hold for this service: every managed member
    /// with its weight, `None` for members that must not be there. Real
    /// servers in configuration order, then the sorry server.
    pub fn desired(&self) -> Vec<(Member, Option<u32>)> {
        let mut v: Vec<(Member, Option<u32>)> = self
            .servers
            .iter()
            .map(|s| (Member::Real(s.cfg.dest), self.member_weight(s)))
            .collect();
        if let Some(sorry) = self.cfg.sorry {
            let w = if self.sorry_active() {
                Some(SORRY_WEIGHT)
            } else {
                sorry.inhibit.then_some(0)
            };
            v.push((Member::Sorry(sorry.dest), w));
        }
        v
    }

    /// The table weight of a real server (`None`: not in the table, or not
    /// a server of this pool).
    pub fn table_weight(&self, dest: Dest) -> Option<u32> {
        let i = *self.index.get(&dest)?;
        self.member_weight(&self.servers[i])
    }

    /// Whether a real server of this pool is alive.
    pub fn is_alive(&self, dest: Dest) -> Option<bool> {
        self.index.get(&dest).map(|&i| self.servers[i].alive)
    }

    /// A checker of `dest` changed state or reported a `misc_dynamic`
    /// weight. Appends what to do to `out`; false when the event is for a
    /// server or checker this pool does not have (stale).
    pub fn on_check(
        &mut self,
        dest: Dest,
        checker: usize,
        up: bool,
        result: &CheckResult,
        out: &mut Vec<Action>,
    ) -> bool {
        self.on_checks([(dest, checker, up, result)], out)
    }

    /// [`Self::on_check`] for a batch of events (all the runner had): the
    /// table difference and the quorum are worked out once for the batch,
    /// so a mass failure of N servers costs O(N), not O(N) per server.
    /// False when no event was for a server of this pool.
    pub fn on_checks<'r>(
        &mut self,
        events: impl IntoIterator<Item = (Dest, usize, bool, &'r CheckResult)>,
        out: &mut Vec<Action>,
    ) -> bool {
        let mut before = None;
        let mut notes = Vec::new();
        for (dest, checker, up, result) in events {
            let Some(&i) = self.index.get(&dest) else {
                continue;
            };
            if checker >= self.servers[i].checker_up.len() {
                continue;
            }
            if before.is_none() {
                before = Some(self.desired());
            }
            let kind = self.servers[i].cfg.checkers[checker].kind;
            if let Some(w) = result.dynamic_weight {
                let s = &mut self.servers[i];
                let old = s.effective_weight();
                s.dynamic_weight = Some(w);
                if old != w {
                    notes.push(Action::Log(format!(
                        "health: {} -> {} weight {old} -> {w} ({kind}: misc_dynamic)",
                        self.cfg.service, dest
                    )));
                }
            }
            self.servers[i].checker_up[checker] = up;
            if up && result.ok {
                // an active check passed: passive checking's mark is over
                self.servers[i].passive_down = false;
            }
            let why = if up {
                format!("{kind}: {}", if result.ok { "ok" } else { &result.reason })
            } else {
                format!("{kind}: {}", result.reason)
            };
            self.settle_server(i, &why, &mut notes);
        }
        let Some(before) = before else {
            return false;
        };
        self.update_quorum(&mut notes);
        self.finish(before, notes, out);
        true
    }

    /// Passive checking marked `dest` down (`down`), or an operator/timer
    /// cleared the mark. False for an unknown server.
    pub fn set_passive_down(
        &mut self,
        dest: Dest,
        down: bool,
        reason: &str,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(&i) = self.index.get(&dest) else {
            return false;
        };
        if self.servers[i].passive_down == down {
            return true;
        }
        let before = self.desired();
        let mut notes = Vec::new();
        self.servers[i].passive_down = down;
        self.settle(i, reason, &mut notes);
        self.finish(before, notes, out);
        true
    }

    /// Whether passive checking holds `dest` down.
    pub fn passive_down(&self, dest: Dest) -> bool {
        self.index
            .get(&dest)
            .is_some_and(|&i| self.servers[i].passive_down)
    }

    /// Recompute server `i`'s alive flag; on a transition log it, run its
    /// notifier and update the quorum.
    fn settle(&mut self, i: usize, why: &str, notes: &mut Vec<Action>) {
        self.settle_server(i, why, notes);
        self.update_quorum(notes);
    }

    /// A server's alive state after a change of its checkers, without the
    /// quorum (a batch updates that once at its end).
    fn settle_server(&mut self, i: usize, why: &str, notes: &mut Vec<Action>) {
        let s = &mut self.servers[i];
        let alive = s.computed_alive();
        if alive == s.alive {
            return;
        }
        s.alive = alive;
        s.reason = if alive {
            String::new()
        } else {
            why.to_string()
        };
        let dest = s.cfg.dest;
        let inhibit = s.cfg.inhibit;
        let script = if alive {
            s.cfg.notify_up.clone()
        } else {
            s.cfg.notify_down.clone()
        };
        let (what, then) = match (alive, inhibit) {
            (true, _) => ("up", ""),
            (false, true) => ("down", "; inhibited at weight 0"),
            (false, false) => ("down", "; removed"),
        };
        notes.push(Action::Log(format!(
            "health: {} -> {dest} {what} ({why}){then}",
            self.cfg.service
        )));
        if let Some(script) = script {
            notes.push(Action::Run {
                script,
                reason: format!(
                    "{} -> {dest} {}",
                    self.cfg.service,
                    if alive { "up" } else { "down" }
                ),
            });
        }
    }

    /// keepalived's `update_quorum_state`, after a change of alive
    /// servers or weights.
    fn update_quorum(&mut self, notes: &mut Vec<Action>) {
        let sum = self.live_weight();
        let quorum = u64::from(self.cfg.quorum);
        let hyst = u64::from(self.cfg.hysteresis);
        if !self.quorum_up && sum >= quorum + hyst {
            self.quorum_up = true;
            let sorry = match self.cfg.sorry {
                Some(s) => format!("; sorry server {} out", s.dest),
                None => String::new(),
            };
            notes.push(Action::Log(format!(
                "health: {} quorum gained: live weight {sum} >= {}+{}{sorry}",
                self.cfg.service, self.cfg.quorum, self.cfg.hysteresis
            )));
            if let Some(script) = &self.cfg.quorum_up {
                notes.push(Action::Run {
                    script: script.clone(),
                    reason: format!("{} quorum up", self.cfg.service),
                });
            }
        } else if self.quorum_up && (sum == 0 || sum + hyst < quorum) {
            self.quorum_up = false;
            let sorry = match self.cfg.sorry {
                Some(s) => format!("; sorry server {} in", s.dest),
                None => String::new(),
            };
            notes.push(Action::Log(format!(
                "health: {} quorum lost: live weight {sum} < {}-{}{sorry}",
                self.cfg.service, self.cfg.quorum, self.cfg.hysteresis
            )));
            if let Some(script) = &self.cfg.quorum_down {
                notes.push(Action::Run {
                    script: script.clone(),
                    reason: format!("{} quorum down", self.cfg.service),
                });
            }
        }
    }

    /// Log lines first, then the table changes, then the scripts (they
    /// see the table already changed, as keepalived's notifiers do).
    fn finish(
        &self,
        before: Vec<(Member, Option<u32>)>,
        notes: Vec<Action>,
        out: &mut Vec<Action>,
    ) {
        let (logs, runs): (Vec<Action>, Vec<Action>) =
            notes.into_iter().partition(|a| matches!(a, Action::Log(_)));
        out.extend(logs);
        let after = self.desired();
        table_diff(&before, &after, out);
        out.extend(runs);
    }

    /// A reload: new settings for the same service. Servers kept (same
    /// address and port) keep their checkers' states by position (as the
    /// runner keeps its checkers' states by key), their `misc_dynamic`
    /// weight and passive mark; new servers start as at start-up; a
    /// server that goes away runs its `notify_down` if it was alive
    /// (keepalived does). Returns scripts and log lines only: the caller
    /// takes the new table from [`Pool::desired`].
    pub fn reconfigure(&mut self, cfg: PoolConfig) -> Vec<Action> {
        let mut notes = Vec::new();
        let sorry_was_out = !self.sorry_active();
        let mut old: HashMap<Dest, ServerRt> =
            self.servers.drain(..).map(|s| (s.cfg.dest, s)).collect();
        let mut servers = Vec::with_capacity(cfg.servers.len());
        for sc in &cfg.servers {
            let Some(prev) = old.remove(&sc.dest) else {
                servers.push(ServerRt::fresh(sc.clone()));
                continue;
            };
            let checker_up: Vec<bool> = sc
                .checkers
                .iter()
                .enumerate()
                .map(|(k, c)| prev.checker_up.get(k).copied().unwrap_or(!c.starts_down))
                .collect();
            let mut s = ServerRt {
                cfg: sc.clone(),
                checker_up,
                dynamic_weight: prev.dynamic_weight,
                passive_down: prev.passive_down,
                alive: prev.alive,
                reason: prev.reason,
            };
            let alive = s.computed_alive();
            if alive != s.alive {
                s.alive = alive;
                let why = "reload: checkers changed";
                s.reason = if alive { String::new() } else { why.into() };
                notes.push(Action::Log(format!(
                    "health: {} -> {} {} ({why})",
                    cfg.service,
                    sc.dest,
                    if alive { "up" } else { "down" }
                )));
                let script = if alive {
                    &sc.notify_up
                } else {
                    &sc.notify_down
                };
                if let Some(script) = script {
                    notes.push(Action::Run {
                        script: script.clone(),
                        reason: format!(
                            "{} -> {} {}",
                            cfg.service,
                            sc.dest,
                            if alive { "up" } else { "down" }
                        ),
                    });
                }
            }
            servers.push(s);
        }
        // servers that left the configuration, in their old order
        let mut gone: Vec<ServerRt> = old.into_values().collect();
        gone.sort_by_key(|s| s.cfg.dest);
        for s in gone {
            if s.alive {
                if let Some(script) = &s.cfg.notify_down {
                    notes.push(Action::Run {
                        script: script.clone(),
                        reason: format!(
                            "{} -> {} removed from the configuration",
                            cfg.service, s.cfg.dest
                        ),
                    });
                }
            }
        }
        self.index = index_of(&servers);
        self.servers = servers;
        self.cfg = cfg;
        self.update_quorum(&mut notes);
        self.starting_quorum(sorry_was_out, &mut notes);
        notes
    }

    /// `omega`: what shutting down runs (the down notifiers of alive
    /// servers, then `quorum_down`); nothing without omega.
    pub fn shutdown(&self) -> Vec<Action> {
        if !self.cfg.omega {
            return Vec::new();
        }
        self.down_notifiers(true, "shutting down")
    }

    /// The service left the configuration: keepalived runs the down
    /// notifiers of its alive servers, and `quorum_down` if the quorum was
    /// up (it is lost with the servers).
    pub fn retire(&self) -> Vec<Action> {
        self.down_notifiers(self.quorum_up, "removed from the configuration")
    }

    fn down_notifiers(&self, quorum_down: bool, why: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for s in self.servers.iter().filter(|s| s.alive) {
            if let Some(script) = &s.cfg.notify_down {
                out.push(Action::Run {
                    script: script.clone(),
                    reason: format!("{} -> {} {why}", self.cfg.service, s.cfg.dest),
                });
            }
        }
        if quorum_down {
            if let Some(script) = &self.cfg.quorum_down {
                out.push(Action::Run {
                    script: script.clone(),
                    reason: format!("{} {why}", self.cfg.service),
                });
            }
        }
        out
    }

    /// Every real server's state, in configuration order.
    pub fn servers(&self) -> Vec<ServerView> {
        let sorry = self.sorry_active();
        self.servers
            .iter()
            .map(|s| ServerView {
                dest: s.cfg.dest,
                state: match (s.alive, sorry, s.cfg.inhibit) {
                    (true, false, _) => ServerState::Alive,
                    (true, true, _) => ServerState::Sorry,
                    (false, _, true) => ServerState::Inhibited,
                    (false, _, false) => ServerState::Removed,
                },
                alive: s.alive,
                weight: s.cfg.weight,
                effective_weight: s.effective_weight(),
                table_weight: self.member_weight(s),
                failed_checkers: s
                    .checker_up
                    .iter()
                    .enumerate()
                    .filter(|(_, &u)| !u)
                    .map(|(k, _)| k)
                    .collect(),
                reason: s.reason.clone(),
            })
            .collect()
    }

    /// The quorum's state.
    pub fn quorum(&self) -> QuorumView {
        QuorumView {
            up: self.quorum_up,
            live_weight: self.live_weight(),
            quorum: self.cfg.quorum,
            hysteresis: self.cfg.hysteresis,
            sorry: self.cfg.sorry.map(|s| (s.dest, self.sorry_active())),
        }
    }
}

fn index_of(servers: &[ServerRt]) -> HashMap<Dest, usize> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.cfg.dest, i))
        .collect()
}

/// The commands that take the table from `before` to `after` (same
/// members in both, or members only in one of them).
pub fn table_diff(
    before: &[(Member, Option<u32>)],
    after: &[(Member, Option<u32>)],
    out: &mut Vec<Action>,
) {
    let was: HashMap<Member, Option<u32>> = before.iter().copied().collect();
    for &(member, w) in after {
        match (was.get(&member).copied().flatten(), w) {
            (None, Some(weight)) => out.push(Action::Add { member, weight }),
            (Some(a), Some(b)) if a != b => out.push(Action::SetWeight { member, weight: b }),
            (Some(_), None) => out.push(Action::Remove { member }),
            _ => {}
        }
    }
    let now: HashMap<Member, Option<u32>> = after.iter().copied().collect();
    for &(member, w) in before {
        if w.is_some() && !now.contains_key(&member) {
            out.push(Action::Remove { member });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dest(last: u8) -> Dest {
        Dest {
            addr: IpAddr::from([198, 19, 0, last]),
            port: 80,
        }
    }

    fn script(cmd: &str) -> Script {
        Script {
            command: cmd.into(),
            user: None,
            group: None,
        }
    }

    fn server(last: u8, weight: u32, checkers: usize) -> ServerConfig {
        ServerConfig {
            dest: dest(last),
            weight,
            inhibit: false,
            notify_up: Some(script(&format!("/bin/up {last}"))),
            notify_down: Some(script(&format!("/bin/down {last}"))),
            checkers: (0..checkers)
                .map(|_| CheckerInit {
                    kind: "HTTP_GET",
                    starts_down: false,
                })
                .collect(),
        }
    }

    /// Server number `i` of a large pool (198.20.x.y).
    fn dest_at(i: usize) -> Dest {
        Dest {
            addr: IpAddr::from([198, 20, (i / 250) as u8, (i % 250 + 1) as u8]),
            port: 80,
        }
    }

    fn server_at(i: usize, weight: u32) -> ServerConfig {
        ServerConfig {
            dest: dest_at(i),
            ..server(1, weight, 1)
        }
    }

    fn pool_cfg(servers: Vec<ServerConfig>) -> PoolConfig {
        PoolConfig {
            service: "TCP 198.18.0.100:80".into(),
            quorum: 1,
            hysteresis: 0,
            quorum_up: Some(script("/bin/qup")),
            quorum_down: Some(script("/bin/qdown")),
            sorry: None,
            omega: false,
            servers,
        }
    }

    fn fail(reason: &str) -> CheckResult {
        CheckResult {
            ok: false,
            reason: reason.into(),
            latency: Duration::from_millis(3),
            dynamic_weight: None,
        }
    }

    fn pass() -> CheckResult {
        CheckResult {
            ok: true,
            reason: String::new(),
            latency: Duration::from_millis(1),
            dynamic_weight: None,
        }
    }

    fn runs(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Run { script, .. } => Some(script.command.clone()),
                _ => None,
            })
            .collect()
    }

    fn table(actions: &[Action]) -> Vec<Action> {
        actions
            .iter()
            .filter(|a| !matches!(a, Action::Run { .. } | Action::Log(_)))
            .cloned()
            .collect()
    }

    fn logs(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }

    fn event(p: &mut Pool, d: Dest, k: usize, up: bool, r: CheckResult) -> Vec<Action> {
        let mut out = Vec::new();
        assert!(p.on_check(d, k, up, &r, &mut out));
        out
    }

    #[test]
    fn a_batch_of_failures_makes_one_table_diff_and_one_quorum_change() {
        // 1000 servers of weight 1, quorum 1: all fail in one batch
        let n = 1000;
        let servers: Vec<_> = (0..n).map(|i| server_at(i, 1)).collect();
        let (mut batch_pool, _) = Pool::new(pool_cfg(servers.clone()));
        let (mut one_by_one, _) = Pool::new(pool_cfg(servers));
        let r = fail("connection refused");
        let events: Vec<_> = (0..n).map(|i| (dest_at(i), 0, false, &r)).collect();
        let mut out = Vec::new();
        assert!(batch_pool.on_checks(events.iter().copied(), &mut out));
        let removed = table(&out).len();
        assert_eq!(removed, n, "one removal per server");
        let quorum_lines: Vec<String> = logs(&out)
            .into_iter()
            .filter(|l| l.contains("quorum"))
            .collect();
        assert_eq!(quorum_lines.len(), 1, "{quorum_lines:?}");
        assert!(!batch_pool.quorum_up());
        // the same end state as one event at a time
        for (d, c, up, r) in events {
            one_by_one.on_check(d, c, up, r, &mut Vec::new());
        }
        assert_eq!(batch_pool.desired(), one_by_one.desired());
        // events for unknown servers are no change
        assert!(!batch_pool.on_checks([(dest_at(n + 1), 0, true, &r)], &mut Vec::new()));
    }

    #[test]
    fn a_failed_server_is_removed_and_restored_with_its_notifiers() {
        let (mut p, start) = Pool::new(pool_cfg(vec![server(2, 3, 1), server(3, 1, 1)]));
        assert!(start.is_empty());
        assert_eq!(
            p.desired(),
            vec![
                (Member::Real(dest(2)), Some(3)),
                (Member::Real(dest(3)), Some(1))
            ]
        );
        let out = event(&mut p, dest(2), 0, false, fail("status 503"));
        assert_eq!(
            logs(&out),
            vec![
                "health: TCP 198.18.0.100:80 -> 198.19.0.2:80 down (HTTP_GET: status 503); removed"
            ]
        );
        assert_eq!(
            table(&out),
            vec![Action::Remove {
                member: Member::Real(dest(2))
            }]
        );
        assert_eq!(runs(&out), vec!["/bin/down 2"]);
        assert_eq!(p.servers()[0].state, ServerState::Removed);
        assert_eq!(p.servers()[0].reason, "HTTP_GET: status 503");
        // quorum (1) still held by the other server
        assert!(p.quorum_up());
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::Add {
                member: Member::Real(dest(2)),
                weight: 3
            }]
        );
        assert_eq!(runs(&out), vec!["/bin/up 2"]);
        assert_eq!(p.servers()[0].state, ServerState::Alive);
    }

    #[test]
    fn inhibit_on_failure_keeps_the_server_at_weight_zero() {
        let mut s = server(2, 5, 1);
        s.inhibit = true;
        let (mut p, _) = Pool::new(pool_cfg(vec![s, server(3, 1, 1)]));
        let out = event(&mut p, dest(2), 0, false, fail("timeout after 3s"));
        assert_eq!(
            table(&out),
            vec![Action::SetWeight {
                member: Member::Real(dest(2)),
                weight: 0
            }]
        );
        assert_eq!(p.servers()[0].state, ServerState::Inhibited);
        assert_eq!(p.table_weight(dest(2)), Some(0));
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::SetWeight {
                member: Member::Real(dest(2)),
                weight: 5
            }]
        );
    }

    #[test]
    fn a_server_is_alive_only_when_every_checker_is_up() {
        let (mut p, _) = Pool::new(pool_cfg(vec![server(2, 1, 2), server(3, 1, 0)]));
        let out = event(&mut p, dest(2), 0, false, fail("connection refused"));
        assert_eq!(table(&out).len(), 1);
        // the second checker failing too changes nothing more
        let out = event(&mut p, dest(2), 1, false, fail("status 500"));
        assert!(table(&out).is_empty() && runs(&out).is_empty());
        // one of two recovering is not enough
        let out = event(&mut p, dest(2), 0, true, pass());
        assert!(table(&out).is_empty() && runs(&out).is_empty());
        assert_eq!(p.servers()[0].failed_checkers, vec![1]);
        let out = event(&mut p, dest(2), 1, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::Add {
                member: Member::Real(dest(2)),
                weight: 1
            }]
        );
        // a server without checkers is always alive
        assert_eq!(p.servers()[1].state, ServerState::Alive);
        // stale events are refused, not applied
        let mut out = Vec::new();
        assert!(!p.on_check(dest(9), 0, false, &fail("x"), &mut out));
        assert!(!p.on_check(dest(2), 7, false, &fail("x"), &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn alpha_servers_start_down_and_come_in_on_their_first_success() {
        let mut s = server(2, 2, 1);
        s.checkers[0].starts_down = true;
        let (mut p, _) = Pool::new(pool_cfg(vec![s, server(3, 1, 1)]));
        assert_eq!(
            p.desired(),
            vec![
                (Member::Real(dest(2)), None),
                (Member::Real(dest(3)), Some(1))
            ]
        );
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::Add {
                member: Member::Real(dest(2)),
                weight: 2
            }]
        );
        assert_eq!(runs(&out), vec!["/bin/up 2"]);
    }

    #[test]
    fn misc_dynamic_sets_the_weight_and_recovery_uses_it() {
        let (mut p, _) = Pool::new(pool_cfg(vec![server(2, 10, 1), server(3, 1, 1)]));
        let mut r = pass();
        r.dynamic_weight = Some(4);
        let out = event(&mut p, dest(2), 0, true, r);
        assert_eq!(
            table(&out),
            vec![Action::SetWeight {
                member: Member::Real(dest(2)),
                weight: 4
            }]
        );
        event(&mut p, dest(2), 0, false, fail("exit status 1"));
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::Add {
                member: Member::Real(dest(2)),
                weight: 4
            }]
        );
    }

    fn quorum_pool(sorry: Option<SorryConfig>, inhibit_rs: bool) -> Pool {
        let mut servers = vec![server(2, 1, 1), server(3, 1, 1), server(4, 1, 1)];
        for s in &mut servers {
            s.inhibit = inhibit_rs;
        }
        let mut cfg = pool_cfg(servers);
        cfg.quorum = 2;
        cfg.hysteresis = 1;
        cfg.sorry = sorry;
        let (p, out) = Pool::new(cfg);
        assert!(out.is_empty(), "quorum 3 >= 2+1 at start: {out:?}");
        assert!(p.quorum_up());
        p
    }

    #[test]
    fn quorum_is_lost_below_quorum_minus_hysteresis_and_regained_at_plus() {
        let mut p = quorum_pool(None, false);
        // 3 -> 2 -> 1: 1 is not < 2-1, so the quorum holds
        let out = event(&mut p, dest(2), 0, false, fail("refused"));
        assert_eq!(runs(&out), vec!["/bin/down 2"]);
        event(&mut p, dest(3), 0, false, fail("refused"));
        assert!(p.quorum_up());
        // 0: lost
        let out = event(&mut p, dest(4), 0, false, fail("refused"));
        assert!(!p.quorum_up());
        assert_eq!(runs(&out), vec!["/bin/down 4", "/bin/qdown"]);
        assert!(logs(&out)
            .iter()
            .any(|l| l.contains("quorum lost: live weight 0 < 2-1")));
        // 1, 2: not yet 2+1
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(runs(&out), vec!["/bin/up 2"]);
        event(&mut p, dest(3), 0, true, pass());
        assert!(!p.quorum_up());
        let out = event(&mut p, dest(4), 0, true, pass());
        assert!(p.quorum_up());
        assert_eq!(runs(&out), vec!["/bin/up 4", "/bin/qup"]);
        // without a sorry server the servers came back one by one
        assert_eq!(
            table(&out),
            vec![Action::Add {
                member: Member::Real(dest(4)),
                weight: 1
            }]
        );
    }

    #[test]
    fn the_sorry_server_replaces_the_pool_while_the_quorum_is_lost() {
        let sorry = SorryConfig {
            dest: dest(99),
            inhibit: false,
        };
        let mut p = quorum_pool(Some(sorry), false);
        assert_eq!(p.desired().last(), Some(&(Member::Sorry(dest(99)), None)));
        event(&mut p, dest(2), 0, false, fail("refused"));
        event(&mut p, dest(3), 0, false, fail("refused"));
        let out = event(&mut p, dest(4), 0, false, fail("refused"));
        assert_eq!(
            table(&out),
            vec![
                Action::Remove {
                    member: Member::Real(dest(4))
                },
                Action::Add {
                    member: Member::Sorry(dest(99)),
                    weight: SORRY_WEIGHT
                }
            ]
        );
        // alive servers stay out while the sorry server stands in
        let out = event(&mut p, dest(2), 0, true, pass());
        assert!(table(&out).is_empty());
        assert_eq!(p.servers()[0].state, ServerState::Sorry);
        let out = event(&mut p, dest(3), 0, true, pass());
        assert!(table(&out).is_empty());
        // quorum regained (3 >= 2+1): sorry out, all alive servers in
        let out = event(&mut p, dest(4), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![
                Action::Add {
                    member: Member::Real(dest(2)),
                    weight: 1
                },
                Action::Add {
                    member: Member::Real(dest(3)),
                    weight: 1
                },
                Action::Add {
                    member: Member::Real(dest(4)),
                    weight: 1
                },
                Action::Remove {
                    member: Member::Sorry(dest(99))
                },
            ]
        );
        assert!(logs(&out)
            .iter()
            .any(|l| l.contains("quorum gained") && l.contains("sorry server 198.19.0.99:80 out")));
    }

    #[test]
    fn quorum_loss_with_a_sorry_server_takes_alive_servers_out_and_inhibit_keeps_them_at_zero() {
        let sorry = SorryConfig {
            dest: dest(99),
            inhibit: true,
        };
        let mut p = quorum_pool(Some(sorry), true);
        // sorry_server_inhibit: present at weight 0 while the quorum holds
        assert_eq!(
            p.desired().last(),
            Some(&(Member::Sorry(dest(99)), Some(0)))
        );
        let mut cfg = p.config().clone();
        cfg.quorum = 3;
        cfg.hysteresis = 0;
        p.reconfigure(cfg);
        assert!(p.quorum_up());
        // 3 -> 2 < 3: lost; the two alive (inhibited) servers go to 0
        let out = event(&mut p, dest(2), 0, false, fail("refused"));
        assert!(!p.quorum_up());
        assert_eq!(
            table(&out),
            vec![
                Action::SetWeight {
                    member: Member::Real(dest(2)),
                    weight: 0
                },
                Action::SetWeight {
                    member: Member::Real(dest(3)),
                    weight: 0
                },
                Action::SetWeight {
                    member: Member::Real(dest(4)),
                    weight: 0
                },
                Action::SetWeight {
                    member: Member::Sorry(dest(99)),
                    weight: SORRY_WEIGHT
                }
            ]
        );
        assert_eq!(runs(&out), vec!["/bin/down 2", "/bin/qdown"]);
    }

    #[test]
    fn starting_with_the_quorum_down_puts_the_sorry_server_in() {
        let mut servers = vec![server(2, 1, 1)];
        servers[0].checkers[0].starts_down = true;
        let mut cfg = pool_cfg(servers);
        cfg.sorry = Some(SorryConfig {
            dest: dest(99),
            inhibit: false,
        });
        let (mut p, out) = Pool::new(cfg);
        assert!(!p.quorum_up());
        assert_eq!(runs(&out), vec!["/bin/qdown"]);
        assert_eq!(
            p.desired(),
            vec![
                (Member::Real(dest(2)), None),
                (Member::Sorry(dest(99)), Some(1))
            ]
        );
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(runs(&out), vec!["/bin/up 2", "/bin/qup"]);
        assert_eq!(
            table(&out),
            vec![
                Action::Add {
                    member: Member::Real(dest(2)),
                    weight: 1
                },
                Action::Remove {
                    member: Member::Sorry(dest(99))
                }
            ]
        );
    }

    #[test]
    fn reconfigure_with_the_same_settings_changes_nothing() {
        let cfg = pool_cfg(vec![server(2, 1, 1), server(3, 1, 1)]);
        let (mut p, _) = Pool::new(cfg.clone());
        event(&mut p, dest(2), 0, false, fail("refused"));
        let before = p.desired();
        let out = p.reconfigure(cfg);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(p.desired(), before);
        assert_eq!(p.servers()[0].reason, "HTTP_GET: refused");
    }

    #[test]
    fn reconfigure_keeps_states_and_applies_weights_only_to_alive_servers() {
        let mut inhibited = server(2, 1, 1);
        inhibited.inhibit = true;
        let cfg = pool_cfg(vec![inhibited, server(3, 1, 1), server(4, 1, 1)]);
        let (mut p, _) = Pool::new(cfg.clone());
        event(&mut p, dest(2), 0, false, fail("refused"));
        let mut next = cfg.clone();
        next.servers[0].weight = 7; // down, inhibited: stays 0
        next.servers[1].weight = 5; // alive: applies
        next.servers.remove(2); // alive, removed: its notify_down runs
        next.servers.push(server(5, 2, 1)); // new: in at once
        let out = p.reconfigure(next);
        assert_eq!(runs(&out), vec!["/bin/down 4"]);
        assert_eq!(
            p.desired(),
            vec![
                (Member::Real(dest(2)), Some(0)),
                (Member::Real(dest(3)), Some(5)),
                (Member::Real(dest(5)), Some(2)),
            ]
        );
        // recovering after the reload: the new configured weight, not 0
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(
            table(&out),
            vec![Action::SetWeight {
                member: Member::Real(dest(2)),
                weight: 7
            }]
        );
    }

    #[test]
    fn reconfigure_of_checkers_keeps_positions_and_settles_the_server() {
        let cfg = pool_cfg(vec![server(2, 1, 2), server(3, 1, 1)]);
        let (mut p, _) = Pool::new(cfg.clone());
        event(&mut p, dest(2), 1, false, fail("status 500"));
        assert!(!p.is_alive(dest(2)).unwrap());
        // the failing checker (position 1) is dropped: the server is up
        let mut next = cfg.clone();
        next.servers[0].checkers.truncate(1);
        let out = p.reconfigure(next.clone());
        assert_eq!(runs(&out), vec!["/bin/up 2"]);
        assert!(p.is_alive(dest(2)).unwrap());
        // an alpha checker added to an alive server starts down
        next.servers[0].checkers.push(CheckerInit {
            kind: "TCP_CHECK",
            starts_down: true,
        });
        let out = p.reconfigure(next);
        assert_eq!(runs(&out), vec!["/bin/down 2"]);
        assert_eq!(p.table_weight(dest(2)), None);
    }

    #[test]
    fn passive_marks_hold_a_server_down_until_an_active_check_passes() {
        let (mut p, _) = Pool::new(pool_cfg(vec![server(2, 1, 1), server(3, 1, 1)]));
        let mut out = Vec::new();
        assert!(p.set_passive_down(dest(2), true, "passive: 5 unanswered SYNs in 10s", &mut out));
        assert_eq!(
            table(&out),
            vec![Action::Remove {
                member: Member::Real(dest(2))
            }]
        );
        assert!(logs(&out)[0].contains("down (passive: 5 unanswered SYNs in 10s); removed"));
        // a failing check keeps it down, a passing one lifts the mark
        event(&mut p, dest(2), 0, false, fail("refused"));
        let out = event(&mut p, dest(2), 0, true, pass());
        assert_eq!(table(&out).len(), 1);
        assert!(!p.passive_down(dest(2)));
    }

    #[test]
    fn omega_runs_the_down_notifiers_on_shutdown() {
        let mut cfg = pool_cfg(vec![server(2, 1, 1), server(3, 1, 1)]);
        let (p, _) = Pool::new(cfg.clone());
        assert!(p.shutdown().is_empty());
        cfg.omega = true;
        let (mut p, _) = Pool::new(cfg);
        event(&mut p, dest(3), 0, false, fail("refused"));
        assert_eq!(runs(&p.shutdown()), vec!["/bin/down 2", "/bin/qdown"]);
    }
}
