//! Route announcement and drain: vsd puts each VIP it serves on a kernel
//! interface, and takes it off when it stops serving it, so that a routing
//! daemon on the exception path (BIRD's `protocol direct`, exported over
//! BGP to the upstream router's ECMP) announces exactly the VIPs this
//! director can take.
//!
//! What: with `[announce] interface = "vip0"`, a VIP (the address of any
//! `-t`/`-u` service; a `-f MARK` service counts for the addresses of the
//! `[[mark]]` rules that give that mark to a single /32) is **announced**
//! — present on the interface as /32 (/128 for IPv6) — iff
//! 1. a service on it exists,
//! 2. (`require_healthy`, the default) one of its services has an
//!    available real server (present with weight > 0: health checks remove
//!    or inhibit dead ones),
//! 3. every forwarding worker is alive: its loop counter (`loop_turns`,
//!    which the worker already publishes) advanced within
//!    [`STALL_LIMIT`], and its thread has not ended,
//! 4. the director is not draining (`vsadm --drain`).
//!
//! The rule ([`decide`]) is a pure function of those inputs; the control
//! thread evaluates it on every change and every tick (100 ms) and
//! reconciles the interface with rtnetlink ([`netlink`]): one RTM_NEWADDR
//! or RTM_DELADDR per change, each logged (info) with its reason. When
//! the interface does not exist vsd creates it as a `dummy` link (up), and
//! removes it again at exit; at exit (also SIGTERM) every address vsd
//! added is removed.
//!
//! Drain: `vsadm --drain [--timeout S]` withdraws every VIP at once and
//! changes nothing else: what still arrives (established connections, and
//! new ones while the routers converge) is forwarded as before. The drain
//! is *done* when no active connection (IPVS ActiveConn, summed over all
//! servers and workers) is left, or when the timeout (`drain_timeout`,
//! 300 s) expired; vsd logs it, `-L --announce` and the metric
//! `vsd_director_drained` show it. `vsadm --undrain` ends the drain and the
//! rule announces again.
//!
//! Why this way: the routing protocol stays with a trusted daemon (no BGP
//! code in vsd), and the interface's addresses are the whole interface
//! between the two — what `ip addr` shows is what is announced.
//!
//! Failure modes:
//! - vsd killed with SIGKILL (or aborted): the addresses and the dummy stay
//!   until the next vsd starts (it deletes the configured VIPs it must not
//!   announce at its first evaluation). Kill the routing daemon with vsd,
//!   or rely on its BGP hold timer / BFD, for that case.
//! - An rtnetlink request fails: logged (once per distinct error) and
//!   retried on the next evaluation; the listing shows what is really on
//!   the interface.
//! - A worker stalls (no loop turn for [`STALL_LIMIT`]): every VIP is
//!   withdrawn until all workers turn again. A worker whose thread ended
//!   stops vsd anyway (and the exit withdraws).
//! - UDP flows count as inactive in IPVS: a drain does not wait for them.

pub mod netlink;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::config::announce::AnnounceConf;
use crate::lb::mark::MarkRules;
use crate::lb::service::{ServiceKey, ServiceSnapshot};
use crate::lb::types::AddrFamily;

/// What can be checked before EAL starts (`vsd --check` too): a TUN
/// device needs /dev/net/tun.
pub fn preflight(conf: &AnnounceConf) -> Result<(), String> {
    use super::config::announce::LinkKind;
    if conf.kind == LinkKind::Tun && !std::path::Path::new("/dev/net/tun").exists() {
        return Err(format!(
            "[announce] kind = \"tun\" needs /dev/net/tun, which does not exist \
             (load the tun module, or use kind = \"dummy\") for interface {}",
            conf.interface
        ));
    }
    Ok(())
}

/// A worker whose loop counter did not advance for this long is stalled.
pub const STALL_LIMIT: Duration = Duration::from_secs(1);

/// Why a VIP is not announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No service uses the address.
    NoService,
    /// `require_healthy`: no service on it has a real server with weight > 0.
    NoAvailableServer,
    /// A `[[vip]] follow` VIP whose address is not on its interface: vsd
    /// does not serve it.
    VipInactive,
    /// A worker is stalled or gone.
    WorkerStalled,
    /// `vsadm --drain`.
    Draining,
}

impl Reason {
    /// As `-L --announce` prints it.
    pub fn text(self) -> &'static str {
        match self {
            Reason::NoService => "no service",
            Reason::NoAvailableServer => "no available real server",
            Reason::VipInactive => "vip inactive (follow)",
            Reason::WorkerStalled => "worker stalled",
            Reason::Draining => "draining",
        }
    }
    /// As the JSON answer names it.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoService => "no_service",
            Reason::NoAvailableServer => "no_available_real_server",
            Reason::VipInactive => "vip_inactive",
            Reason::WorkerStalled => "worker_stalled",
            Reason::Draining => "draining",
        }
    }
}

/// What the table says about one VIP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VipFacts {
    /// Services on the address.
    pub services: usize,
    /// Whether one of them has a real server with weight > 0.
    pub available: bool,
    /// It follows a kernel interface (`[[vip]] follow`) that does not
    /// have it now.
    pub inactive: bool,
}

/// The rule's inputs.
#[derive(Debug, Clone)]
pub struct RuleInputs<'a> {
    /// Every VIP to decide about, with its services.
    pub vips: &'a BTreeMap<IpAddr, VipFacts>,
    /// `[announce] require_healthy`.
    pub require_healthy: bool,
    /// Every worker turns.
    pub workers_alive: bool,
    /// `vsadm --drain` is in force.
    pub draining: bool,
}

/// The rule: for each VIP, the reasons it must not be announced (empty:
/// announce it), in [`Reason`] order.
pub fn decide(i: &RuleInputs<'_>) -> BTreeMap<IpAddr, Vec<Reason>> {
    i.vips
        .iter()
        .map(|(vip, f)| {
            let mut why = Vec::new();
            if f.services == 0 {
                why.push(Reason::NoService);
            } else if i.require_healthy && !f.available {
                why.push(Reason::NoAvailableServer);
            }
            if f.inactive {
                why.push(Reason::VipInactive);
            }
            if !i.workers_alive {
                why.push(Reason::WorkerStalled);
            }
            if i.draining {
                why.push(Reason::Draining);
            }
            (*vip, why)
        })
        .collect()
}

/// The VIPs of a published table: each address service's VIP, and for a
/// `-f MARK` (IPv4) service the /32 destinations of the mark rules that set
/// MARK (other fwmark services have no address to announce).
pub fn vip_facts(services: &ServiceSnapshot, marks: &MarkRules) -> BTreeMap<IpAddr, VipFacts> {
    let mut out: BTreeMap<IpAddr, VipFacts> = BTreeMap::new();
    for s in services.services() {
        let available = s.servers.iter().any(|r| r.weight > 0);
        let vips: Vec<IpAddr> = match s.key {
            ServiceKey::Addr { addr, .. } => vec![addr],
            ServiceKey::Fwmark { mark, af } => marks
                .rules()
                .iter()
                .filter(|r| {
                    r.mark == mark
                        && AddrFamily::of(r.dst.0) == af
                        && r.dst.1 == crate::lb::mark::host_prefix(r.dst.0)
                        && !r.dst.0.is_unspecified()
                })
                .map(|r| r.dst.0)
                .collect(),
        };
        for vip in vips {
            let f = out.entry(vip).or_default();
            f.services += 1;
            f.available |= available;
        }
    }
    out
}

/// One worker as the liveness check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WorkerSeen {
    turns: u64,
    /// When `turns` last changed (or when first seen).
    since: Instant,
}

/// Whether the workers' loops make progress, from their `loop_turns`
/// counters sampled by the control thread. A sample that differs from the
/// last one proves progress whenever it was taken, so a control thread that
/// was itself descheduled does not see stalls that were not there.
#[derive(Debug, Clone, Default)]
pub struct WorkerLiveness {
    seen: Vec<WorkerSeen>,
}

impl WorkerLiveness {
    /// Take one sample: each worker's loop counter and whether its thread
    /// ended. Returns the indices of stalled (or ended) workers.
    pub fn observe(&mut self, now: Instant, turns: &[u64], finished: &[bool]) -> Vec<usize> {
        if self.seen.len() != turns.len() {
            self.seen = turns
                .iter()
                .map(|&t| WorkerSeen {
                    turns: t,
                    since: now,
                })
                .collect();
        }
        let mut stalled = Vec::new();
        for (w, (seen, &t)) in self.seen.iter_mut().zip(turns).enumerate() {
            if t != seen.turns {
                *seen = WorkerSeen {
                    turns: t,
                    since: now,
                };
            }
            let ended = finished.get(w).copied().unwrap_or(false);
            if ended || now.saturating_duration_since(seen.since) >= STALL_LIMIT {
                stalled.push(w);
            }
        }
        stalled
    }
}

/// Why a drain is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// No active connection is left.
    NoConnections,
    /// The timeout expired first.
    TimedOut,
}

/// A drain in progress (or done, until `--undrain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Drain {
    /// When it started (wall clock, for the listing).
    pub since_wall: SystemTime,
    /// When it started.
    pub since: Instant,
    /// How long it may last.
    pub timeout: Duration,
    /// Active connections at the last evaluation.
    pub active_conns: u64,
    /// When and why it ended.
    pub done: Option<(Instant, DrainEnd)>,
}

impl Drain {
    /// Start one.
    pub fn new(now: Instant, wall: SystemTime, timeout: Duration, active_conns: u64) -> Drain {
        Drain {
            since_wall: wall,
            since: now,
            timeout,
            active_conns,
            done: None,
        }
    }

    /// Take the current active connection count; returns the end when the
    /// drain has just become done.
    pub fn update(&mut self, now: Instant, active_conns: u64) -> Option<DrainEnd> {
        self.active_conns = active_conns;
        if self.done.is_some() {
            return None;
        }
        let end = if active_conns == 0 {
            DrainEnd::NoConnections
        } else if now.saturating_duration_since(self.since) >= self.timeout {
            DrainEnd::TimedOut
        } else {
            return None;
        };
        self.done = Some((now, end));
        Some(end)
    }

    fn json(&self, now: Instant) -> Value {
        let since_unix = self
            .since_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "draining": true,
            "since": utc_text(self.since_wall),
            "since_unix": since_unix,
            "elapsed_s": now.saturating_duration_since(self.since).as_secs(),
            "timeout_s": self.timeout.as_secs(),
            "active_connections": self.active_conns,
            "done": self.done.is_some(),
            "done_reason": self.done.map(|(_, e)| match e {
                DrainEnd::NoConnections => "no_active_connections",
                DrainEnd::TimedOut => "timeout",
            }),
            "done_after_s": self.done.map(|(t, _)| t.saturating_duration_since(self.since).as_secs()),
        })
    }
}

/// `2026-12-05T10:01:02Z`.
pub fn utc_text(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Putting addresses on the announce interface and taking them off
/// ([`netlink::IfaceAnnouncer`] in vsd, a fake in tests).
pub trait AnnounceKernel {
    /// Make sure `vip` is on the interface (as /32 or /128).
    fn add(&mut self, vip: IpAddr) -> Result<(), String>;
    /// Make sure `vip` is not on it (absent already is fine).
    fn remove(&mut self, vip: IpAddr) -> Result<(), String>;
    /// Undo what was set up (the dummy link vsd created).
    fn close(&mut self);
    /// The interface's name.
    fn iface(&self) -> &str;
}

/// What the daemon knows at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct PlaneFacts<'a> {
    /// The published service table.
    pub services: &'a ServiceSnapshot,
    /// The published mark rules.
    pub marks: &'a MarkRules,
    /// Each worker's `loop_turns`.
    pub loop_turns: &'a [u64],
    /// Each worker's thread ended.
    pub finished: &'a [bool],
    /// IPVS ActiveConn summed over every server.
    pub active_conns: u64,
    /// `[[vip]] follow` VIPs that are inactive now.
    pub inactive_vips: &'a [IpAddr],
}

/// The announcement state machine (control thread only).
pub struct Announcer {
    conf: AnnounceConf,
    kernel: Box<dyn AnnounceKernel>,
    liveness: WorkerLiveness,
    stalled: Vec<usize>,
    drain: Option<Drain>,
    /// VIPs ever seen in the table (listed with "no service" once gone).
    known: BTreeSet<IpAddr>,
    decisions: BTreeMap<IpAddr, Vec<Reason>>,
    /// Addresses vsd put on the interface.
    on_iface: BTreeSet<IpAddr>,
    /// The last error of a VIP's request (logged once).
    errors: BTreeMap<IpAddr, String>,
    /// Nothing applied yet: withdrawn VIPs are removed even if vsd did not
    /// put them there (left by a vsd that was killed).
    first: bool,
}

impl Announcer {
    /// An announcer over `kernel`; nothing is announced before the first
    /// [`Announcer::evaluate`].
    pub fn new(conf: AnnounceConf, kernel: Box<dyn AnnounceKernel>) -> Announcer {
        Announcer {
            conf,
            kernel,
            liveness: WorkerLiveness::default(),
            stalled: Vec::new(),
            drain: None,
            known: BTreeSet::new(),
            decisions: BTreeMap::new(),
            on_iface: BTreeSet::new(),
            errors: BTreeMap::new(),
            first: true,
        }
    }

    /// List these VIPs too, with or without a service (`[[vip]]`).
    pub fn remember(&mut self, vips: impl IntoIterator<Item = IpAddr>) {
        self.known.extend(vips);
    }

    /// The configuration in force.
    pub fn conf(&self) -> &AnnounceConf {
        &self.conf
    }

    /// A reload's `[announce]`: the new interface (already opened) when it
    /// changed; every VIP leaves the old one first.
    pub fn reconfigure(&mut self, conf: AnnounceConf, kernel: Option<Box<dyn AnnounceKernel>>) {
        if let Some(k) = kernel {
            self.withdraw_all("interface changed");
            self.kernel.close();
            log::info!(
                "announce: interface {} replaces {}",
                k.iface(),
                self.kernel.iface()
            );
            self.kernel = k;
            self.errors.clear();
            self.first = true;
        }
        self.conf = conf;
    }

    /// Evaluate the rule and bring the interface in line. Returns whether
    /// anything was added or removed.
    pub fn evaluate(&mut self, now: Instant, facts: &PlaneFacts<'_>) -> bool {
        let stalled = self.liveness.observe(now, facts.loop_turns, facts.finished);
        if stalled != self.stalled {
            if stalled.is_empty() {
                log::info!("announce: every worker turns again");
            } else {
                log::warn!(
                    "announce: worker(s) {stalled:?} made no progress for {} ms or ended",
                    STALL_LIMIT.as_millis()
                );
            }
            self.stalled = stalled;
        }
        if let Some(d) = self.drain.as_mut() {
            match d.update(now, facts.active_conns) {
                Some(DrainEnd::NoConnections) => log::info!(
                    "drain done after {} s: no active connections left",
                    now.saturating_duration_since(d.since).as_secs()
                ),
                Some(DrainEnd::TimedOut) => log::info!(
                    "drain done: timeout of {} s expired with {} active connection(s) left",
                    d.timeout.as_secs(),
                    facts.active_conns
                ),
                None => {}
            }
        }
        let mut vips = vip_facts(facts.services, facts.marks);
        self.known.extend(vips.keys().copied());
        for v in self.known.iter().chain(&self.on_iface) {
            vips.entry(*v).or_default();
        }
        for v in facts.inactive_vips {
            if let Some(f) = vips.get_mut(v) {
                f.inactive = true;
            }
        }
        self.decisions = decide(&RuleInputs {
            vips: &vips,
            require_healthy: self.conf.require_healthy,
            workers_alive: self.stalled.is_empty(),
            draining: self.drain.is_some(),
        });
        let mut changed = false;
        let decisions = std::mem::take(&mut self.decisions);
        for (vip, why) in &decisions {
            let on = self.on_iface.contains(vip);
            if why.is_empty() && !on {
                match self.kernel.add(*vip) {
                    Ok(()) => {
                        self.on_iface.insert(*vip);
                        self.errors.remove(vip);
                        changed = true;
                        log::info!("announce {vip} on {}: served", self.kernel.iface());
                    }
                    Err(e) => self.failed(*vip, "announce", e),
                }
            } else if !why.is_empty() && (on || self.first) {
                match self.kernel.remove(*vip) {
                    Ok(()) => {
                        self.on_iface.remove(vip);
                        self.errors.remove(vip);
                        if on {
                            changed = true;
                            log::info!(
                                "withdraw {vip} from {}: {}",
                                self.kernel.iface(),
                                reasons_text(why)
                            );
                        }
                    }
                    Err(e) => self.failed(*vip, "withdraw", e),
                }
            }
        }
        self.decisions = decisions;
        self.first = false;
        changed
    }

    fn failed(&mut self, vip: IpAddr, what: &str, e: String) {
        if self.errors.get(&vip) != Some(&e) {
            log::error!("{what} {vip} on {}: {e}", self.kernel.iface());
            self.errors.insert(vip, e);
        }
    }

    /// Take every address off (exit, interface change).
    fn withdraw_all(&mut self, why: &str) {
        for vip in std::mem::take(&mut self.on_iface) {
            match self.kernel.remove(vip) {
                Ok(()) => log::info!("withdraw {vip} from {}: {why}", self.kernel.iface()),
                Err(e) => log::error!("withdraw {vip} from {}: {e}", self.kernel.iface()),
            }
        }
    }

    /// At exit: every address vsd added goes, then the dummy it created.
    pub fn shutdown(&mut self) {
        self.withdraw_all("vsd stops");
        self.kernel.close();
    }

    /// `vsadm --drain [--timeout S]`: the reply text.
    pub fn start_drain(
        &mut self,
        now: Instant,
        wall: SystemTime,
        timeout: Option<Duration>,
        active_conns: u64,
    ) -> String {
        let timeout = timeout.unwrap_or(self.conf.drain_timeout);
        if let Some(d) = self.drain.as_mut() {
            d.timeout = timeout;
            return format!(
                "already draining since {}; timeout now {} s\n",
                utc_text(d.since_wall),
                timeout.as_secs()
            );
        }
        log::info!(
            "drain: withdrawing every VIP from {}; forwarding continues for at most {} s \
             ({active_conns} active connection(s))",
            self.kernel.iface(),
            timeout.as_secs()
        );
        self.drain = Some(Drain::new(now, wall, timeout, active_conns));
        format!(
            "draining: every VIP withdrawn from {}, forwarding continues; done when no active \
             connection is left or after {} s ({active_conns} active now)\n",
            self.kernel.iface(),
            timeout.as_secs()
        )
    }

    /// `vsadm --undrain`: the reply text.
    pub fn end_drain(&mut self) -> String {
        match self.drain.take() {
            Some(_) => {
                log::info!("undrain: VIPs are announced again by the rule");
                "undrained: VIPs are announced again as the rule allows\n".into()
            }
            None => "not draining\n".into(),
        }
    }

    /// The drain in force, if any.
    pub fn drain(&self) -> Option<&Drain> {
        self.drain.as_ref()
    }

    /// Each VIP: announced (no reasons) or why not.
    pub fn decisions(&self) -> &BTreeMap<IpAddr, Vec<Reason>> {
        &self.decisions
    }

    /// Whether `vip` is on the interface now.
    pub fn is_announced(&self, vip: IpAddr) -> bool {
        self.on_iface.contains(&vip)
    }

    /// The state as JSON (`-L --announce`, `status`).
    pub fn json(&self, now: Instant) -> Value {
        let vips: Vec<Value> = self
            .decisions
            .iter()
            .map(|(vip, why)| {
                json!({
                    "vip": vip.to_string(),
                    "announced": self.on_iface.contains(vip),
                    "reasons": why.iter().map(|r| r.name()).collect::<Vec<_>>(),
                    "error": self.errors.get(vip),
                })
            })
            .collect();
        json!({
            "interface": self.kernel.iface(),
            "require_healthy": self.conf.require_healthy,
            "drain_timeout_s": self.conf.drain_timeout.as_secs(),
            "stalled_workers": self.stalled,
            "vips": vips,
            "drain": self.drain.as_ref().map_or_else(|| json!({"draining": false}), |d| d.json(now)),
        })
    }
}

impl Drop for Announcer {
    /// A panic that unwinds the control thread, or an error return after
    /// start, still takes the VIPs and the link off ([`Announcer::shutdown`]
    /// does nothing the second time).
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn reasons_text(why: &[Reason]) -> String {
    why.iter().map(|r| r.text()).collect::<Vec<_>>().join(", ")
}

/// `vsadm -L --announce` from the JSON state (or without `[announce]`).
pub fn render(state: Option<&Value>) -> String {
    let Some(v) = state else {
        return "Announce: off (no [announce] in the configuration)\n".into();
    };
    let mut out = format!(
        "Announce interface {} (require_healthy {}, drain_timeout {}s)\n",
        v["interface"].as_str().unwrap_or("?"),
        if v["require_healthy"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        },
        v["drain_timeout_s"].as_u64().unwrap_or(0)
    );
    out.push_str(&format!("{:<40} {:<10} {}\n", "VIP", "State", "Reason"));
    for vip in v["vips"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let why: Vec<&str> = vip["reasons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(reason_text)
                    .collect()
            })
            .unwrap_or_default();
        let mut why = why.join(", ");
        if let Some(e) = vip["error"].as_str() {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str("error: ");
            why.push_str(e);
        }
        let state = if vip["announced"].as_bool() == Some(true) {
            "announced"
        } else {
            "withdrawn"
        };
        out.push_str(
            format!(
                "{:<40} {:<10} {}",
                vip["vip"].as_str().unwrap_or("?"),
                state,
                why
            )
            .trim_end(),
        );
        out.push('\n');
    }
    let stalled = v["stalled_workers"].as_array().map_or(0, Vec::len);
    if stalled > 0 {
        out.push_str(&format!(
            "Workers: {stalled} stalled ({})\n",
            v["stalled_workers"]
        ));
    }
    let d = &v["drain"];
    if d["draining"].as_bool() != Some(true) {
        out.push_str("Drain: not draining\n");
    } else {
        out.push_str(&format!(
            "Drain: draining since {} ({}s), {} active connections left, timeout {}s, {}\n",
            d["since"].as_str().unwrap_or("?"),
            d["elapsed_s"].as_u64().unwrap_or(0),
            d["active_connections"].as_u64().unwrap_or(0),
            d["timeout_s"].as_u64().unwrap_or(0),
            match d["done_reason"].as_str() {
                Some("timeout") => format!(
                    "done (timeout expired after {}s)",
                    d["done_after_s"].as_u64().unwrap_or(0)
                ),
                Some(_) => format!(
                    "done (no active connections after {}s)",
                    d["done_after_s"].as_u64().unwrap_or(0)
                ),
                None => "not done".into(),
            }
        ));
    }
    out
}

fn reason_text(name: &str) -> &str {
    [
        Reason::NoService,
        Reason::NoAvailableServer,
        Reason::VipInactive,
        Reason::WorkerStalled,
        Reason::Draining,
    ]
    .iter()
    .find(|r| r.name() == name)
    .map_or(name, |r| r.text())
}

/// `vsd_vip_announced{vip}`, `vsd_director_draining`,
/// `vsd_director_drained` (gauges, 0/1) from the JSON state.
pub fn render_prometheus(state: &Value) -> String {
    use super::prometheus::escape_label;
    let mut out = String::new();
    out.push_str(
        "# HELP vsd_vip_announced Whether the VIP is on the announce interface (1) or withdrawn (0)\n\
         # TYPE vsd_vip_announced gauge\n",
    );
    for vip in state["vips"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        out.push_str(&format!(
            "vsd_vip_announced{{vip=\"{}\"}} {}\n",
            escape_label(vip["vip"].as_str().unwrap_or("")),
            u8::from(vip["announced"].as_bool() == Some(true))
        ));
    }
    let d = &state["drain"];
    out.push_str(&format!(
        "# HELP vsd_director_draining Whether a drain (vsadm --drain) is in force\n\
         # TYPE vsd_director_draining gauge\n\
         vsd_director_draining {}\n\
         # HELP vsd_director_drained Whether the drain is done (no active connection left, or its timeout expired)\n\
         # TYPE vsd_director_drained gauge\n\
         vsd_director_drained {}\n",
        u8::from(d["draining"].as_bool() == Some(true)),
        u8::from(d["done"].as_bool() == Some(true)),
    ));
    out
}

#[cfg(test)]
mod tests;
