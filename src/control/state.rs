//! The control state machine: the service table, FULLNAT local addresses,
//! timeouts and sync-daemon settings, changed by ipvsadm commands, a restore
//! (`-R`) or a configuration reload, each all-or-nothing.
//!
//! After a change, [`ControlState::snapshot`] gives the daemon what to
//! publish to the workers; [`ControlState::version`] tells it whether
//! anything changed since it last looked.
//!
//! The state also keeps the statistics *presentation*: `-Z` baselines and
//! the rate estimators of every service and real server, over the raw
//! cumulative counters the daemon reports through [`StatsSource`]. Workers'
//! counters are never written by the control plane (one writer each), so
//! zeroing subtracts a baseline instead.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::config::{self, Config, SchedFlag};
use super::estimator::Counters;
use super::ipvsadm::{self, Command, SyncDaemonSpec, SyncRole};
use super::listing::{self, ServiceView};
use super::unsupported;
use crate::lb::defense::DefenseConfig;
use crate::lb::load::DestId;
use crate::lb::mark::MarkRules;
use crate::lb::service::{
    PersistMask, RealServerConfig, SchedFlags, ServiceConfig, ServiceKey, ServiceSnapshot,
    ServiceTable,
};
use crate::lb::tcp_state::{TcpState, Timeouts};
use crate::lb::types::{AddrFamily, FwdMethod, SchedulerKind};

mod reload;
mod stats;

use reload::FileGlobals;
pub use reload::ReloadDiff;
use stats::StatsBook;
pub use stats::{ConnCounts, StatsSource};

/// Real-server slots when the caller does not say (see [`ControlState::new`]).
pub const DEFAULT_DEST_CAPACITY: usize = 16384;
/// Most FULLNAT local addresses one service may have.
pub const MAX_LADDRS_PER_SERVICE: usize = 1024;

/// What a successful [`ControlState::apply`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The configuration changed.
    Changed,
    /// Output to print (`-S`, `--timeout`, `--daemon`, `--get-laddr`).
    Text(String),
}

/// Everything the daemon publishes after a change.
#[derive(Debug, Clone)]
pub struct ControlSnapshot {
    /// [`ControlState::version`] it was taken at.
    pub version: u64,
    /// The service table for the workers.
    pub services: Arc<ServiceSnapshot>,
    /// FULLNAT local addresses of each service that has some.
    pub local_addrs: Arc<HashMap<ServiceKey, Vec<IpAddr>>>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Sync daemons that should run.
    pub sync_daemons: Vec<SyncDaemonSpec>,
    /// The firewall-mark classifier's rules.
    pub marks: Arc<MarkRules>,
    /// drop_entry / secure_tcp settings.
    pub defense: DefenseConfig,
}

/// The control plane's state.
#[derive(Debug, Clone)]
pub struct ControlState {
    table: ServiceTable,
    laddrs: HashMap<ServiceKey, Vec<IpAddr>>,
    timeouts: Timeouts,
    defense: DefenseConfig,
    sync: Vec<SyncDaemonSpec>,
    /// The kernel's sync sysctls (`--set-sync`, `[sync]`).
    sync_settings: crate::lb::sync::SyncSettings,
    /// Firewall-mark rules (`--add-mark`, `[[mark]]`).
    marks: MarkRules,
    /// Slots of deleted servers still waiting for [`Self::release_dest_slot`].
    draining: BTreeSet<DestId>,
    version: u64,
    book: StatsBook,
    /// Services the configuration file names (the file owns them); the
    /// others were added with vsadm and reloads leave them alone.
    file_services: std::collections::HashSet<ServiceKey>,
    /// The file's global settings as last read, so that a reload applies
    /// only what the file changed (and keeps vsadm's changes otherwise).
    file_globals: Option<FileGlobals>,
    /// The IPv6 tunnel source the data plane was given, fixed by the first
    /// configuration loaded (`None` before: no configuration, no check).
    tun_source6: Option<Option<std::net::Ipv6Addr>>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// DR and TUN cannot map ports: like ipvsadm, use the virtual port.
fn fix_port(service: &ServiceKey, mut s: RealServerConfig) -> RealServerConfig {
    if matches!(service, ServiceKey::Addr { .. })
        && matches!(s.method, FwdMethod::Route | FwdMethod::Tunnel)
    {
        s.port = service.port();
    }
    s
}

/// The lb service key of a configured service.
pub fn key_from_config(k: &config::ServiceKey) -> ServiceKey {
    match *k {
        config::ServiceKey::Addr { proto, vip, port } => ServiceKey::Addr {
            proto,
            addr: vip,
            port,
        },
        config::ServiceKey::Fwmark { mark, family } => ServiceKey::fwmark(mark, family),
    }
}

/// The lb settings of a configured service (flag-N as the parser reads them).
pub fn service_config_from(s: &config::ServiceConf) -> ServiceConfig {
    let sched = s.scheduler;
    let mut flags = SchedFlags::default();
    for f in &s.flags {
        match (f, sched) {
            (SchedFlag::ShFallback, _) | (SchedFlag::Flag1, SchedulerKind::Sh) => {
                flags.sh_fallback = true
            }
            (SchedFlag::ShPort, _) | (SchedFlag::Flag2, SchedulerKind::Sh) => flags.sh_port = true,
            (SchedFlag::MhFallback, _) | (SchedFlag::Flag1, SchedulerKind::Mh) => {
                flags.mh_fallback = true
            }
            (SchedFlag::MhPort, _) | (SchedFlag::Flag2, SchedulerKind::Mh) => flags.mh_port = true,
            _ => {}
        }
    }
    let persist_mask = s.netmask.map(|len| match key_from_config(&s.key).af() {
        AddrFamily::Inet => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            PersistMask::V4(Ipv4Addr::from(bits))
        }
        AddrFamily::Inet6 => PersistMask::V6(len),
    });
    ServiceConfig {
        scheduler: sched.name().to_string(),
        flags,
        persistence: s.persistence_timeout,
        persist_mask,
        one_packet: s.one_packet,
        synproxy: s.synproxy,
        local_addresses: s.local_addresses.clone(),
        ..ServiceConfig::default()
    }
}

/// The lb settings of a configured real server.
pub fn server_config_from(key: &ServiceKey, r: &config::RealServerConf) -> RealServerConfig {
    fix_port(
        key,
        RealServerConfig {
            addr: r.address,
            port: r.port,
            weight: r.weight,
            method: r.method,
            upper_threshold: r.upper_threshold,
            lower_threshold: r.lower_threshold,
        },
    )
}

impl Default for ControlState {
    fn default() -> Self {
        ControlState::new(DEFAULT_DEST_CAPACITY)
    }
}

impl ControlState {
    /// An empty state with room for `dest_capacity` real servers (deleted
    /// ones still draining included).
    pub fn new(dest_capacity: usize) -> Self {
        ControlState {
            table: ServiceTable::new(dest_capacity),
            laddrs: HashMap::new(),
            timeouts: Timeouts::default(),
            defense: DefenseConfig::default(),
            sync: Vec::new(),
            sync_settings: crate::lb::sync::SyncSettings::default(),
            marks: MarkRules::new(),
            draining: BTreeSet::new(),
            version: 1,
            book: StatsBook::default(),
            file_services: std::collections::HashSet::new(),
            file_globals: None,
            tun_source6: None,
        }
    }

    /// Refuse an IPv6 TUN server without an IPv6 tunnel source
    /// ([`crate::control::tun_source`]).
    fn check_tun_source(&self, addr: IpAddr, method: FwdMethod) -> Result<(), String> {
        match self.tun_source6 {
            Some(src) => crate::control::tun_source::check_server(src, addr, method),
            None => Ok(()),
        }
    }

    /// The state a configuration describes ([`DEFAULT_DEST_CAPACITY`] slots).
    pub fn from_config(cfg: &Config) -> Result<Self, String> {
        Self::from_config_with_capacity(cfg, DEFAULT_DEST_CAPACITY)
    }

    /// The state a configuration describes, with `dest_capacity` slots.
    pub fn from_config_with_capacity(cfg: &Config, dest_capacity: usize) -> Result<Self, String> {
        let mut s = ControlState::new(dest_capacity);
        s.reload(cfg)?;
        Ok(s)
    }

    /// Changes on every successful change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The service table.
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// Connection timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// drop_entry / secure_tcp settings.
    pub fn defense(&self) -> &DefenseConfig {
        &self.defense
    }

    /// FULLNAT local addresses of a service.
    pub fn local_addrs(&self, key: &ServiceKey) -> &[IpAddr] {
        self.laddrs.get(key).map_or(&[], Vec::as_slice)
    }

    /// Sync daemons that should run.
    pub fn sync_daemons(&self) -> &[SyncDaemonSpec] {
        &self.sync
    }

    /// The sync knobs.
    pub fn sync_settings(&self) -> &crate::lb::sync::SyncSettings {
        &self.sync_settings
    }

    /// What to publish.
    pub fn snapshot(&self) -> ControlSnapshot {
        ControlSnapshot {
            version: self.version,
            services: self.table.snapshot(),
            local_addrs: Arc::new(self.laddrs.clone()),
            timeouts: self.timeouts,
            sync_daemons: self.sync.clone(),
            marks: Arc::new(self.marks.clone()),
            defense: self.defense,
        }
    }

    /// Slots of deleted servers whose connections may still use them; the
    /// daemon releases each once no connection refers to it.
    pub fn draining_slots(&self) -> Vec<DestId> {
        self.draining.iter().copied().collect()
    }

    /// Give a drained slot back (no connection uses it any more).
    pub fn release_dest_slot(&mut self, id: DestId) -> Result<(), String> {
        self.table.release_dest_slot(id).map_err(err)?;
        self.draining.remove(&id);
        Ok(())
    }

    /// Copy a service's local addresses into its table entry, where the
    /// workers read them from the published snapshot.
    fn push_laddrs(&mut self, key: &ServiceKey) -> Result<(), String> {
        let Some(mut config) = self.table.service_config(key).cloned() else {
            return Ok(());
        };
        let want = self.local_addrs(key).to_vec();
        if config.local_addresses != want {
            config.local_addresses = want;
            self.table.edit_service(key, config).map_err(err)?;
        }
        Ok(())
    }

    /// The kernel refuses a real server of the other address family while
    /// a sync daemon runs (ip_vs_ctl.c: "The synchronization protocol is
    /// incompatible with mixed family services"; ipvsadm shows its EINVAL
    /// as "Invalid operation..."): a sync entry has one family for the
    /// client, virtual and real addresses. vsd says why.
    fn check_sync_family(&self, service: &ServiceKey, addr: IpAddr) -> Result<(), String> {
        if !self.sync.is_empty() && AddrFamily::of(addr) != service.af() {
            return Err(format!(
                "Different address family is not allowed while a sync daemon runs \
                 (the sync protocol carries one address family per connection): {addr} refused"
            ));
        }
        Ok(())
    }

    /// A real server whose family differs from its service's, if any.
    fn mixed_family_server(&self) -> Option<(ServiceKey, IpAddr)> {
        self.table.service_keys().into_iter().find_map(|key| {
            self.table
                .dests(&key)?
                .into_iter()
                .find(|(_, d)| AddrFamily::of(d.addr) != key.af())
                .map(|(_, d)| (key, d.addr))
        })
    }

    fn changed(&mut self) -> Result<Reply, String> {
        self.version = self.version.wrapping_add(1);
        Ok(Reply::Changed)
    }

    /// Apply one command. Changes return [`Reply::Changed`]; `-S`,
    /// `--timeout`, `--daemon` and `--get-laddr` return their text. Commands
    /// that need live statistics (listings, `-Z`, views) are for
    /// [`super::api::handle_request`]; `-R` and `--reload` have their own
    /// methods ([`Self::restore`], [`Self::reload`]).
    pub fn apply(&mut self, cmd: &Command) -> Result<Reply, String> {
        match cmd {
            Command::AddService(s) => {
                unsupported::check_service(&s.key)?;
                self.table
                    .add_service(s.key, s.config.clone())
                    .map_err(err)?;
                self.changed()
            }
            Command::EditService(s) => {
                unsupported::check_service(&s.key)?;
                // -E replaces the settings; the local addresses stay
                let mut config = s.config.clone();
                config.local_addresses = self.local_addrs(&s.key).to_vec();
                self.table.edit_service(&s.key, config).map_err(err)?;
                self.changed()
            }
            Command::DelService(key) => {
                let ids = self.table.del_service(key).map_err(err)?;
                self.forget_stats(Some(key), &ids);
                self.draining.extend(ids);
                self.laddrs.remove(key);
                self.changed()
            }
            Command::AddServer(s) => {
                unsupported::check_server(s.service.af(), s.server.addr)?;
                self.check_sync_family(&s.service, s.server.addr)?;
                self.check_tun_source(s.server.addr, s.server.method)?;
                let id = self
                    .table
                    .add_dest(&s.service, fix_port(&s.service, s.server))
                    .map_err(err)?;
                self.draining.remove(&id);
                self.changed()
            }
            Command::EditServer(s) => {
                unsupported::check_server(s.service.af(), s.server.addr)?;
                self.check_sync_family(&s.service, s.server.addr)?;
                self.check_tun_source(s.server.addr, s.server.method)?;
                self.table
                    .edit_dest(&s.service, fix_port(&s.service, s.server))
                    .map_err(err)?;
                self.changed()
            }
            Command::DelServer {
                service,
                addr,
                port,
            } => {
                let id = self.table.del_dest(service, *addr, *port).map_err(err)?;
                self.forget_stats(None, &[id]);
                self.draining.insert(id);
                self.changed()
            }
            Command::Clear => {
                let ids = self.table.clear();
                self.book.services.clear();
                self.forget_stats(None, &ids);
                self.draining.extend(ids);
                self.laddrs.clear();
                // vsd's own classifier goes with the table, so that
                // `-C` then `-R` of a `-S` restores exactly
                self.marks.clear();
                self.changed()
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                let mut t = self.timeouts;
                t.set(*tcp, *tcpfin, *udp).map_err(err)?;
                self.timeouts = t;
                self.changed()
            }
            Command::SetDefense(c) => {
                let mut d = self.defense;
                d.drop_entry = c.drop_entry.unwrap_or(d.drop_entry);
                d.secure_tcp = c.secure_tcp.unwrap_or(d.secure_tcp);
                d.pressure_percent = c.pressure.unwrap_or(d.pressure_percent);
                d.sloppy_tcp = c.sloppy_tcp.unwrap_or(d.sloppy_tcp);
                d.validate().map_err(err)?;
                let mut t = self.timeouts;
                if let Some(secs) = c.synrecv {
                    t.set_state(TcpState::SynRecv, secs).map_err(err)?;
                }
                self.defense = d;
                self.timeouts = t;
                self.changed()
            }
            Command::SetSync(c) => {
                let s = c.apply(self.sync_settings);
                s.validate()?;
                self.sync_settings = s;
                self.changed()
            }
            Command::StartDaemon(spec) => {
                let spec = super::syncd::resolve(spec)?;
                if let Some((key, addr)) = self.mixed_family_server() {
                    return Err(format!(
                        "a sync daemon cannot run while service {key} has real server {addr} \
                         of the other address family (the sync protocol carries one address \
                         family per connection)"
                    ));
                }
                if self.sync.iter().any(|d| d.role == spec.role) {
                    return Err(format!(
                        "{} sync daemon is already running",
                        spec.role.name()
                    ));
                }
                self.sync.push(spec);
                self.changed()
            }
            Command::StopDaemon(role) => {
                let before = self.sync.len();
                self.sync.retain(|d| d.role != *role);
                if self.sync.len() == before {
                    return Err(format!("no {} sync daemon is running", role.name()));
                }
                self.changed()
            }
            Command::AddLocalAddr { service, addr } => {
                unsupported::check_local_addr(service.af(), *addr)?;
                if self.table.service_config(service).is_none() {
                    return Err("Service not defined".into());
                }
                let list = self.laddrs.entry(*service).or_default();
                if list.contains(addr) {
                    return Err("Local address already exists".into());
                }
                if list.len() >= MAX_LADDRS_PER_SERVICE {
                    return Err(format!(
                        "a service has at most {MAX_LADDRS_PER_SERVICE} local addresses"
                    ));
                }
                list.push(*addr);
                self.push_laddrs(service)?;
                self.changed()
            }
            Command::DelLocalAddr { service, addr } => {
                if self.table.service_config(service).is_none() {
                    return Err("Service not defined".into());
                }
                let list = self.laddrs.entry(*service).or_default();
                let Some(i) = list.iter().position(|a| a == addr) else {
                    return Err("No such local address".into());
                };
                list.remove(i);
                if list.is_empty() {
                    self.laddrs.remove(service);
                }
                self.push_laddrs(service)?;
                self.changed()
            }
            Command::AddMark(rule) => {
                self.marks.add(*rule)?;
                self.changed()
            }
            Command::DelMark(rule) => {
                self.marks.remove(rule)?;
                self.changed()
            }
            Command::List(l) if l.what == ipvsadm::ListWhat::Marks => {
                Ok(Reply::Text(self.marks.render()))
            }
            Command::Save { .. } => Ok(Reply::Text(self.save_text())),
            Command::List(l) if l.what == ipvsadm::ListWhat::Timeouts => {
                Ok(Reply::Text(listing::render_timeouts(&self.timeouts)))
            }
            Command::List(l) if l.what == ipvsadm::ListWhat::Defense => Ok(Reply::Text(
                listing::render_defense(&self.defense, &self.timeouts),
            )),
            Command::List(l) if l.what == ipvsadm::ListWhat::SyncSettings => Ok(Reply::Text(
                format!("Sync settings: {}\n", self.sync_settings.render()),
            )),
            Command::List(l) if l.what == ipvsadm::ListWhat::Daemons => {
                Ok(Reply::Text(listing::render_daemons(&self.sync)))
            }
            Command::GetLocalAddrs(key) => {
                let mut entries: Vec<(ServiceKey, Vec<IpAddr>)> = Vec::new();
                match key {
                    Some(k) => {
                        if self.table.service_config(k).is_none() {
                            return Err("No such service".into());
                        }
                        entries.push((*k, self.local_addrs(k).to_vec()));
                    }
                    None => {
                        for k in self.table.service_keys() {
                            if let Some(l) = self.laddrs.get(&k) {
                                entries.push((k, l.clone()));
                            }
                        }
                    }
                }
                Ok(Reply::Text(listing::render_laddrs(&entries)))
            }
            Command::Restore => Err("-R needs its rules: use ControlState::restore".into()),
            Command::Reload => {
                Err("--reload needs a configuration: use ControlState::reload".into())
            }
            _ => Err("this command needs the daemon's statistics".into()),
        }
    }

    /// `-R`: apply every line of `text` (the `-S` format, optionally
    /// starting with `ipvsadm`), all or nothing. Errors name the line.
    pub fn restore(&mut self, text: &str) -> Result<usize, String> {
        let mut next = self.clone();
        let mut applied = 0;
        for (n, line) in text.lines().enumerate() {
            let words = ipvsadm::restore_line_words(line);
            if words.is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            let cmd = ipvsadm::parse(&words).map_err(at)?;
            if !cmd.is_change() || matches!(cmd, Command::Restore | Command::Reload) {
                return Err(at(format!(
                    "only configuration commands can be restored, not `{}'",
                    words.join(" ")
                )));
            }
            next.apply(&cmd).map_err(at)?;
            applied += 1;
        }
        if applied > 0 {
            next.version = self.version.wrapping_add(1);
        }
        *self = next;
        Ok(applied)
    }

    /// `-S` text of the current state.
    pub fn save_text(&self) -> String {
        let views = self.service_views_with(&|_| Counters::default(), &|_| ConnCounts::default());
        let mut text = listing::render_save(&views, &|k| self.local_addrs(k).to_vec());
        text.push_str(&self.marks.render());
        text
    }

    /// What vsadm added on top of the configuration file, in `-S` form:
    /// its services (with their servers and local addresses) and marks.
    /// vsd keeps this in `[control] rules_file` across restarts.
    pub fn vsadm_rules(&self) -> String {
        let views: Vec<ServiceView> = self
            .service_views_with(&|_| Counters::default(), &|_| ConnCounts::default())
            .into_iter()
            .filter(|v| !self.file_services.contains(&v.key))
            .collect();
        let mut text = listing::render_save(&views, &|k| self.local_addrs(k).to_vec());
        let file_marks = self
            .file_globals
            .as_ref()
            .map(|g| g.marks.clone())
            .unwrap_or_default();
        for r in self.marks.rules() {
            if !file_marks.contains(r) {
                text.push_str(&format!("{r}\n"));
            }
        }
        text
    }

    /// Restore [`Self::vsadm_rules`] text at start, after the configuration:
    /// a line for a service the file now names is skipped (the file owns
    /// it), a line that fails is skipped; both are reported, the rest
    /// applies. Returns the lines applied and the reasons lines were not.
    pub fn restore_vsadm_rules(&mut self, text: &str) -> (usize, Vec<String>) {
        let mut applied = 0;
        let mut skipped = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let words = ipvsadm::restore_line_words(line);
            if words.is_empty() {
                continue;
            }
            let cmd = match ipvsadm::parse(&words) {
                Ok(c) if c.is_change() && !matches!(c, Command::Restore | Command::Reload) => c,
                Ok(_) => {
                    skipped.push(format!("line {}: not a rule: {line}", n + 1));
                    continue;
                }
                Err(e) => {
                    skipped.push(format!("line {}: {e}", n + 1));
                    continue;
                }
            };
            let service = match &cmd {
                Command::AddService(s) | Command::EditService(s) => Some(s.key),
                Command::AddServer(s) | Command::EditServer(s) => Some(s.service),
                Command::AddLocalAddr { service, .. } => Some(*service),
                _ => None,
            };
            if service.is_some_and(|k| self.file_services.contains(&k)) {
                skipped.push(format!(
                    "line {}: the configuration file names this service now: {line}",
                    n + 1
                ));
                continue;
            }
            if let Command::AddMark(r) = &cmd {
                if self.marks.rules().contains(r) {
                    continue;
                }
            }
            match self.apply(&cmd) {
                Ok(_) => applied += 1,
                Err(e) => skipped.push(format!("line {}: {e}: {line}", n + 1)),
            }
        }
        (applied, skipped)
    }

    /// The firewall-mark rules.
    pub fn marks(&self) -> &MarkRules {
        &self.marks
    }

    /// Roles of the running sync daemons.
    pub fn sync_roles(&self) -> Vec<SyncRole> {
        self.sync.iter().map(|d| d.role).collect()
    }
}

/// A [`StatsSource`] for tests: counters set by hand.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::control::listing::{ConnView, CoreCounters, LatencyView, PortCounters};
    use serde_json::Value;
    use std::cell::{Cell, RefCell};
    use std::path::PathBuf;

    /// Counters and connections kept in cells, so tests change them between calls.
    #[derive(Default)]
    pub struct FakeStats {
        /// Clock.
        pub now: Cell<u64>,
        /// Raw service counters, by service slot.
        pub services: RefCell<HashMap<u32, Counters>>,
        /// Raw slot counters.
        pub dests: RefCell<HashMap<DestId, Counters>>,
        /// Connection counts by slot.
        pub conns: RefCell<HashMap<DestId, ConnCounts>>,
        /// Connection listing.
        pub conn_list: Vec<ConnView>,
        /// Worker counters.
        pub cores: Vec<CoreCounters>,
        /// Port counters.
        pub ports: Vec<PortCounters>,
        /// Histograms.
        pub hists: Vec<LatencyView>,
        /// Config file for --reload.
        pub config: Option<PathBuf>,
        /// What `keepalived_path` reports.
        pub keepalived: Option<PathBuf>,
    }

    impl StatsSource for FakeStats {
        fn now_ms(&self) -> u64 {
            self.now.get()
        }
        fn service_counters(&self, slot: u32) -> Counters {
            self.services
                .borrow()
                .get(&slot)
                .copied()
                .unwrap_or_default()
        }
        fn dest_counters(&self, id: DestId) -> Counters {
            self.dests.borrow().get(&id).copied().unwrap_or_default()
        }
        fn dest_conns(&self, id: DestId) -> ConnCounts {
            self.conns.borrow().get(&id).copied().unwrap_or_default()
        }
        fn connections(&self, limit: usize) -> (Vec<ConnView>, u64) {
            let v: Vec<ConnView> = self.conn_list.iter().take(limit).copied().collect();
            (v, self.conn_list.len() as u64)
        }
        fn conn_table_size(&self) -> u64 {
            4096
        }
        fn core_counters(&self) -> Vec<CoreCounters> {
            self.cores.clone()
        }
        fn port_counters(&self) -> Vec<PortCounters> {
            self.ports.clone()
        }
        fn latency(&self) -> Vec<LatencyView> {
            self.hists.clone()
        }
        fn status(&self) -> Value {
            serde_json::json!({"vsd": "0.1.0", "dpdk": "DPDK 22.11", "state": "running",
                               "pid": 1, "uptime_s": 2, "workers": [1],
                               "mbufs_in_use": 3, "mbufs_available": 4, "ports": []})
        }
        fn config_path(&self) -> Option<PathBuf> {
            self.config.clone()
        }
        fn keepalived_path(&self) -> Option<PathBuf> {
            self.keepalived.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::FakeStats;
    use super::*;
    use crate::control::ipvsadm::parse;

    fn run(s: &mut ControlState, line: &str) -> Result<Reply, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        s.apply(&parse(&words)?)
    }
    fn ok(s: &mut ControlState, line: &str) {
        run(s, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    fn ip(a: &str) -> IpAddr {
        a.parse().unwrap()
    }
    fn vip() -> ServiceKey {
        ServiceKey::tcp(ip("198.18.0.100"), 80)
    }
    fn ids(s: &ControlState, key: &ServiceKey) -> Vec<(DestId, IpAddr, u16)> {
        s.table()
            .dests(key)
            .unwrap()
            .into_iter()
            .map(|(id, d)| (id, d.addr, d.port))
            .collect()
    }

    const CONFIG_BASE: &str =
        "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n";

    fn config(services: &str) -> Config {
        Config::from_str(&format!("{CONFIG_BASE}{services}"), "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn commands_change_the_table() {
        let mut s = ControlState::default();
        let v0 = s.version();
        ok(&mut s, "-A -t 198.18.0.100:80 -s rr");
        assert!(s.version() > v0);
        // DR: the server port becomes the service port, as ipvsadm does.
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080");
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 3");
        assert_eq!(
            ids(&s, &vip()),
            vec![(1, ip("198.18.1.12"), 8080), (0, ip("198.18.1.11"), 80)]
        );
        ok(&mut s, "-e -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 0");
        let d = s.table().dests(&vip()).unwrap();
        assert_eq!(d[0].1.weight, 0);
        assert_eq!(
            run(&mut s, "-A -t 198.18.0.100:80").unwrap_err(),
            "Service already exists"
        );
        assert_eq!(
            run(&mut s, "-E -t 198.18.0.1:80").unwrap_err(),
            "No such service"
        );
        assert_eq!(
            run(&mut s, "-D -t 198.18.0.1:80").unwrap_err(),
            "No such service"
        );
        assert_eq!(
            run(&mut s, "-a -t 198.18.0.1:80 -r 198.18.1.1").unwrap_err(),
            "Service not defined"
        );
        assert_eq!(
            run(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11").unwrap_err(),
            "Destination already exists"
        );
        assert_eq!(
            run(&mut s, "-d -t 198.18.0.100:80 -r 198.18.1.99").unwrap_err(),
            "No such destination"
        );
        assert_eq!(
            run(&mut s, "-A -t 198.18.0.101:80 -s nosuch").unwrap_err(),
            "Scheduler not found"
        );
        // A typed command with a DR port mismatch is fixed the same way.
        s.apply(&Command::AddServer(ipvsadm::ServerSpec {
            service: vip(),
            server: RealServerConfig::new(ip("198.18.1.13"), 9999, FwdMethod::Tunnel),
        }))
        .unwrap();
        assert_eq!(ids(&s, &vip())[0], (2, ip("198.18.1.13"), 80));
        // Deleting a server drains its slot until the daemon releases it.
        let v = s.version();
        ok(&mut s, "-d -t 198.18.0.100:80 -r 198.18.1.11");
        assert!(s.version() > v);
        assert_eq!(s.draining_slots(), vec![0]);
        // Re-adding before release takes the slot back.
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11");
        assert!(s.draining_slots().is_empty());
        assert_eq!(ids(&s, &vip())[0].0, 0);
        ok(&mut s, "-D -t 198.18.0.100:80");
        assert_eq!(s.draining_slots(), vec![0, 1, 2]);
        s.release_dest_slot(1).unwrap();
        assert_eq!(s.draining_slots(), vec![0, 2]);
        assert!(s.release_dest_slot(1).is_err());
        // Failed commands change nothing.
        let v = s.version();
        assert!(run(&mut s, "-E -t 198.18.0.100:80").is_err());
        assert_eq!(s.version(), v);
    }

    #[test]
    fn snapshot_carries_everything() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -t 198.18.0.100:80 -s rr");
        ok(
            &mut s,
            "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 --fullnat",
        );
        ok(&mut s, "--add-laddr -z 198.18.2.1 -t 198.18.0.100:80");
        ok(&mut s, "--set 600 0 30");
        let snap = s.snapshot();
        assert_eq!(snap.version, s.version());
        let svc = snap.services.get_key(&vip()).unwrap();
        assert_eq!(svc.servers[0].method, FwdMethod::FullNat);
        assert_eq!(snap.local_addrs.get(&vip()), Some(&vec![ip("198.18.2.1")]));
        assert_eq!(snap.timeouts.ipvsadm_triple(), (600, 120, 30));
        assert!(snap.sync_daemons.is_empty());
    }

    #[test]
    fn local_addresses_timeouts_daemons() {
        let mut s = ControlState::default();
        assert_eq!(
            run(&mut s, "--add-laddr -z 198.18.2.1 -t 198.18.0.100:80").unwrap_err(),
            "Service not defined"
        );
        ok(&mut s, "-A -t 198.18.0.100:80");
        ok(&mut s, "--add-laddr -z 198.18.2.1 -t 198.18.0.100:80");
        ok(&mut s, "--add-laddr -z 198.18.2.2 -t 198.18.0.100:80");
        assert_eq!(
            run(&mut s, "--add-laddr -z 198.18.2.1 -t 198.18.0.100:80").unwrap_err(),
            "Local address already exists"
        );
        ok(&mut s, "--del-laddr -z 198.18.2.1 -t 198.18.0.100:80");
        assert_eq!(
            run(&mut s, "--del-laddr -z 198.18.2.1 -t 198.18.0.100:80").unwrap_err(),
            "No such local address"
        );
        assert_eq!(s.local_addrs(&vip()), &[ip("198.18.2.2")]);
        assert_eq!(
            run(&mut s, "--get-laddr").unwrap(),
            Reply::Text(
                "Prot LocalAddress:Port\n  -> LocalAddress\nTCP  198.18.0.100:80\n  -> 198.18.2.2\n"
                    .into()
            )
        );
        assert_eq!(
            run(&mut s, "--get-laddr -t 198.18.0.1:80").unwrap_err(),
            "No such service"
        );
        ok(&mut s, "-D -t 198.18.0.100:80");
        assert!(s.local_addrs(&vip()).is_empty());

        assert_eq!(
            run(&mut s, "-L --timeout").unwrap(),
            Reply::Text("Timeout (tcp tcpfin udp): 900 120 300\n".into())
        );
        ok(&mut s, "--set 0 60 0");
        assert_eq!(
            run(&mut s, "-L --timeout").unwrap(),
            Reply::Text("Timeout (tcp tcpfin udp): 900 60 300\n".into())
        );
        let too_big = Command::SetTimeouts {
            tcp: u32::MAX,
            tcpfin: 1,
            udp: 1,
        };
        assert!(s.apply(&too_big).is_err());
        assert_eq!(s.timeouts().ipvsadm_triple(), (900, 60, 300));

        // sync daemons: the interface is checked, defaults are filled in
        let v = s.version();
        assert_eq!(
            run(
                &mut s,
                "--start-daemon backup --mcast-interface nonexistent0"
            )
            .unwrap_err(),
            "--mcast-interface nonexistent0: no such interface"
        );
        assert_eq!(s.version(), v);
        assert!(s.sync_daemons().is_empty());
        assert_eq!(
            run(&mut s, "-L --daemon").unwrap(),
            Reply::Text(String::new())
        );
        run(
            &mut s,
            "--start-daemon master --mcast-interface lo --syncid 3",
        )
        .unwrap();
        assert_eq!(
            run(&mut s, "-L --daemon").unwrap(),
            Reply::Text(
                "master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, \
                 port=8848, ttl=1)\n"
                    .into()
            )
        );
        assert!(run(&mut s, "--start-daemon master --mcast-interface lo")
            .unwrap_err()
            .contains("already running"));
        run(&mut s, "--stop-daemon master").unwrap();
        assert!(s.sync_daemons().is_empty());
        assert_eq!(
            run(&mut s, "--stop-daemon backup").unwrap_err(),
            "no backup sync daemon is running"
        );
        assert!(run(&mut s, "-Ln").is_err());
    }

    #[test]
    fn save_restores_to_the_same_state() {
        let mut s = ControlState::default();
        for line in [
            "-A -t 198.18.0.100:80 -s wrr -p 300 -M 255.255.255.0",
            "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1 -x 100 -y 50",
            "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2",
            "-a -t 198.18.0.100:80 -r 198.18.1.13:8080 --fullnat -w 3",
            "--add-laddr -z 198.18.2.1 -t 198.18.0.100:80",
            "--add-laddr -z 198.18.2.2 -t 198.18.0.100:80",
            "-A -u 198.18.0.100:53 -s sh -b sh-fallback,sh-port -o",
            "-a -u 198.18.0.100:53 -r 198.18.1.21 -g",
            "-a -u 198.18.0.100:53 -r 198.18.1.22 -i -w 0",
            "-A -t 198.18.0.101:443 -s mh -b mh-port -p 60 -M 255.255.0.0",
            "-a -t 198.18.0.101:443 -r 198.18.1.41:8443 -m",
            "-A -f 7 -s rr -p",
            "-a -f 7 -r 198.18.1.31 -g",
            "-A -f 9 -s lc",
            "-a -f 9 -r 198.18.1.32:0 -m",
        ] {
            ok(&mut s, line);
        }
        let saved = s.save_text();
        let mut t = ControlState::default();
        assert_eq!(t.restore(&saved).unwrap(), 15);
        assert_eq!(t.save_text(), saved);
        for key in s.table().service_keys() {
            assert_eq!(
                s.table().service_config(&key),
                t.table().service_config(&key),
                "{key}"
            );
            let mut a: Vec<RealServerConfig> = s
                .table()
                .dests(&key)
                .unwrap()
                .into_iter()
                .map(|x| x.1)
                .collect();
            let mut b: Vec<RealServerConfig> = t
                .table()
                .dests(&key)
                .unwrap()
                .into_iter()
                .map(|x| x.1)
                .collect();
            let k = |r: &RealServerConfig| (r.addr, r.port);
            a.sort_by_key(k);
            b.sort_by_key(k);
            assert_eq!(a, b, "{key}");
            assert_eq!(s.local_addrs(&key), t.local_addrs(&key));
        }
        assert_eq!(t.table().len(), s.table().len());
    }

    #[test]
    fn restore_is_all_or_nothing() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -t 198.18.0.1:80");
        let before = s.save_text();
        let v = s.version();
        let bad = "-A -t 198.18.0.100:80 -s rr\n\
                   -a -t 198.18.0.100:80 -r 198.18.1.11 -m\n\
                   -a -t 198.18.0.100:80 -r 198.18.1.11 -m\n";
        assert_eq!(
            s.restore(bad).unwrap_err(),
            "line 3: Destination already exists"
        );
        assert_eq!(s.save_text(), before);
        assert_eq!(s.version(), v);
        assert_eq!(
            s.restore("-A -t 198.18.0.100:80\n-Ln\n").unwrap_err(),
            "line 2: only configuration commands can be restored, not `-Ln'"
        );
        assert_eq!(
            s.restore("\n-a -t 1.2.3.4:80 -r x\n").unwrap_err(),
            "line 2: illegal real server address[:port] specified"
        );
        assert_eq!(s.save_text(), before);
        // -C inside -R: a full replacement.
        s.restore("ipvsadm -C\n-A -u 198.18.0.100:53 -s rr\n")
            .unwrap();
        assert_eq!(s.save_text(), "-A -u 198.18.0.100:53 -s rr\n");
        assert!(s.version() > v);
        assert!(s.apply(&Command::Restore).is_err());
    }

    const TWO_SERVICES: &str = r#"
[[service]]
proto = "tcp"
vip = "198.18.0.100"
port = 80
scheduler = "wrr"
local_addresses = ["198.18.2.1"]
[[service.real_server]]
address = "198.18.1.11"
port = 8080
method = "nat"
[[service.real_server]]
address = "198.18.1.12"
port = 8080
method = "nat"
weight = 2
[[service.real_server]]
address = "198.18.1.13"
port = 8080
method = "fullnat"

[[service]]
fwmark = 5
scheduler = "sh"
flags = ["flag-1", "sh-port"]
persistence_timeout = 60
netmask = 24
[[service.real_server]]
address = "198.18.1.21"
"#;

    #[test]
    fn ipv6_is_accepted_from_vsadm_restore_and_config_what_cannot_work_is_refused() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -t [2001:db8::100]:443 -s rr");
        ok(
            &mut s,
            "-a -t [2001:db8::100]:443 -r [2001:db8::11]:8443 -m",
        );
        ok(&mut s, "--add-laddr -z 2001:db8::5 -t [2001:db8::100]:443");
        // NAT64: an IPv4 FULLNAT server and an IPv4 local address
        ok(&mut s, "-A -t [2001:db8::100]:80 -s rr");
        ok(
            &mut s,
            "-a -t [2001:db8::100]:80 -r 198.18.1.11:8080 --fullnat",
        );
        ok(&mut s, "--add-laddr -z 198.18.1.200 -t [2001:db8::100]:80");
        ok(&mut s, "-A -f 9 -6 -s lc");
        ok(&mut s, "-a -f 9 -6 -r 2001:db8::20 -g");
        ok(
            &mut s,
            "--add-mark --dst 2001:db8::100 --proto tcp --set-mark 9",
        );
        ok(&mut s, "-A -t 198.18.0.100:80 -s rr");
        // IPv6-in-IPv4 and IPv4-in-IPv6 tunnels; other mixes stay the
        // table's refusal
        ok(&mut s, "-a -t 198.18.0.100:80 -r [2001:db8::11]:80 -i");
        assert!(run(&mut s, "-a -t 198.18.0.100:80 -r [2001:db8::12]:80 -m")
            .unwrap_err()
            .contains("Different address family is allowed only for tunneling servers"));
        assert!(run(&mut s, "--add-laddr -z 2001:db8::5 -t 198.18.0.100:80")
            .unwrap_err()
            .contains("an IPv6 local address is never used by an IPv4 service"));
        let saved = s.save_text();
        assert!(
            saved.contains("-A -t [2001:db8::100]:443 -s rr\n"),
            "{saved}"
        );
        let mut r = ControlState::default();
        r.restore(&saved).unwrap();
        assert_eq!(r.save_text(), saved);
        assert!(saved.contains("-A -f 9 -6 -s lc\n"), "{saved}");
        assert!(
            saved.contains("--add-mark --dst 2001:db8::100/128 --proto tcp --set-mark 9\n"),
            "{saved}"
        );
        let v6 = "[[service]]\nproto = \"tcp\"\nvip = \"2001:db8::100\"\nport = 80\n\
                  [[service.real_server]]\naddress = \"2001:db8::11\"\nmethod = \"nat\"\n";
        let c = ControlState::from_config(&config(v6)).unwrap();
        assert!(c
            .save_text()
            .contains("-a -t [2001:db8::100]:80 -r [2001:db8::11]:80 -m"));
        let fwm6 = "[[service]]\nfwmark = 3\nfamily = \"inet6\"\n\
                    [[service.real_server]]\naddress = \"2001:db8::11\"\nmethod = \"dr\"\n";
        let c = ControlState::from_config(&config(fwm6)).unwrap();
        assert!(c.save_text().contains("-A -f 3 -6"), "{}", c.save_text());
    }

    /// The workers sync IPv6 connections (ip_vs_sync_v6 entries): IPv6
    /// services and a sync daemon go together, in either order.
    #[test]
    fn ipv6_services_and_sync_daemons_go_together() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -t [2001:db8::100]:80 -s rr");
        ok(&mut s, "--start-daemon master --mcast-interface lo");
        ok(&mut s, "-A -u [2001:db8::100]:53 -s rr");
        let v6 = "[[service]]\nproto = \"tcp\"\nvip = \"2001:db8::100\"\nport = 80\n\
                  [[service.real_server]]\naddress = \"2001:db8::11\"\nmethod = \"nat\"\n";
        s.reload(&config(v6)).unwrap();
        // the kernel's rule stays: no server of the other family while syncing
        let e = run(&mut s, "-a -t [2001:db8::100]:80 -r 198.18.1.1:80 -i").unwrap_err();
        assert!(
            e.starts_with("Different address family is not allowed"),
            "{e}"
        );
    }

    #[test]
    fn mark_rules_from_vsadm_save_restore_clear_and_config() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -f 1 -s rr -p");
        ok(&mut s, "-a -f 1 -r 198.18.1.11 -m");
        let v = s.version();
        ok(
            &mut s,
            "--add-mark --dst 198.18.0.100/32 --proto tcp --dport 80:90 --set-mark 1",
        );
        ok(&mut s, "--add-mark --dst 198.18.0.0/24 --set-mark 2");
        assert!(s.version() > v, "a change republishes");
        assert_eq!(
            run(&mut s, "--add-mark --dst 198.18.0.0/24 --set-mark 2").unwrap_err(),
            "Mark rule already exists"
        );
        let rules = "--add-mark --dst 198.18.0.100/32 --proto tcp --dport 80:90 --set-mark 1\n\
                     --add-mark --dst 198.18.0.0/24 --set-mark 2\n";
        assert_eq!(
            run(&mut s, "-L --marks").unwrap(),
            Reply::Text(rules.into())
        );
        assert_eq!(s.snapshot().marks.rules().len(), 2);
        let saved = s.save_text();
        assert!(saved.ends_with(rules), "{saved}");
        let mut t = ControlState::default();
        t.restore(&saved).unwrap();
        assert_eq!(t.save_text(), saved);
        ok(&mut t, "--del-mark --dst 198.18.0.0/24 --set-mark 2");
        assert_eq!(
            run(&mut t, "--del-mark --dst 198.18.0.0/24 --set-mark 2").unwrap_err(),
            "No such mark rule"
        );
        assert_eq!(t.marks().rules().len(), 1);
        ok(&mut t, "-C");
        assert!(t.marks().is_empty());
        // from the configuration, and changed by a reload
        let text = "[[service]]\nfwmark = 1\n[[service.real_server]]\naddress = \"198.18.1.11\"\n\
                    method = \"nat\"\n\n[[mark]]\ndst = \"198.18.0.100\"\nproto = \"udp\"\n\
                    dport = 53\nmark = 1\n";
        let mut c = ControlState::from_config(&config(text)).unwrap();
        assert_eq!(
            c.marks().render(),
            "--add-mark --dst 198.18.0.100/32 --proto udp --dport 53 --set-mark 1\n"
        );
        let diff = c
            .reload(&config(&text.replace("dport = 53", "dport = \"53:54\"")))
            .unwrap();
        assert!(diff.marks_changed && !diff.is_empty());
        assert!(diff.summary().ends_with("; mark rules changed"));
        assert_eq!(
            c.marks().render(),
            "--add-mark --dst 198.18.0.100/32 --proto udp --dport 53:54 --set-mark 1\n"
        );
        let e = Config::from_str(
            &format!("{CONFIG_BASE}[[mark]]\ndport = \"9:8\"\nproto = \"tcp\"\nmark = 1\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mark[0].dport: invalid port range `9:8'"), "{e}");
    }

    #[test]
    fn from_config_builds_the_table() {
        let s = ControlState::from_config(&config(TWO_SERVICES)).unwrap();
        assert_eq!(
            s.save_text(),
            "-A -t 198.18.0.100:80 -s wrr\n\
             -a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1\n\
             -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2\n\
             -a -t 198.18.0.100:80 -r 198.18.1.13:8080 --fullnat -w 1\n\
             --add-laddr -z 198.18.2.1 -t 198.18.0.100:80\n\
             -A -f 5 -s sh -p 60 -M 255.255.255.0 -b sh-fallback,sh-port\n\
             -a -f 5 -r 198.18.1.21:0 -g -w 1\n"
        );
        // File order = -a order: the kernel walks the newest first.
        assert_eq!(
            ids(&s, &vip()),
            vec![
                (2, ip("198.18.1.13"), 8080),
                (1, ip("198.18.1.12"), 8080),
                (0, ip("198.18.1.11"), 8080)
            ]
        );
    }

    #[test]
    fn local_addresses_reach_the_workers_snapshot() {
        let mut s = ControlState::new(64);
        let run = |s: &mut ControlState, a: &[&str]| {
            s.apply(&ipvsadm::parse(a).unwrap()).unwrap();
        };
        let laddrs = |s: &ControlState| {
            s.snapshot().services.services()[0]
                .config
                .local_addresses
                .clone()
        };
        run(&mut s, &["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
        run(
            &mut s,
            &["--add-laddr", "-z", "198.18.1.200", "-t", "198.18.0.100:80"],
        );
        assert_eq!(laddrs(&s), vec![ip("198.18.1.200")]);
        // -E replaces the settings but keeps the local addresses
        run(&mut s, &["-E", "-t", "198.18.0.100:80", "-s", "wlc"]);
        assert_eq!(laddrs(&s), vec![ip("198.18.1.200")]);
        run(
            &mut s,
            &["--del-laddr", "-z", "198.18.1.200", "-t", "198.18.0.100:80"],
        );
        assert!(laddrs(&s).is_empty());
    }

    #[test]
    fn reloads_leave_vsadm_services_alone_and_the_file_owns_what_it_names() {
        let mut s = ControlState::from_config(&config(TWO_SERVICES)).unwrap();
        run(&mut s, "-A -t 198.18.0.200:443 -s rr").unwrap();
        run(&mut s, "-a -t 198.18.0.200:443 -r 198.18.1.31:443 -m -w 3").unwrap();
        // a vsadm change to a file service lasts until the file is read again
        run(&mut s, "-e -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 7").unwrap();
        let web = ServiceKey::tcp(ip("198.18.0.200"), 443);
        let d = s.reload(&config(TWO_SERVICES)).unwrap();
        assert!(d.services_removed.is_empty(), "{d:?}");
        assert!(
            s.table().service_config(&web).is_some(),
            "vsadm's service was deleted"
        );
        assert_eq!(d.servers_edited, vec![(vip(), ip("198.18.1.11"), 8080)]);
        // a service the file stops naming goes; vsadm's stays
        let only_fwmark = &TWO_SERVICES[TWO_SERVICES.find("[[service]]\nfwmark").unwrap()..];
        let d = s.reload(&config(only_fwmark)).unwrap();
        assert_eq!(d.services_removed, vec![vip()]);
        assert!(s.table().service_config(&web).is_some());
        // the file taking a vsadm service's key owns it from then on
        let takes_web = format!(
            "{only_fwmark}\n[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.200\"\nport = 443\n\
             [[service.real_server]]\naddress = \"198.18.1.32\"\nmethod = \"nat\"\n"
        );
        s.reload(&config(&takes_web)).unwrap();
        let servers: Vec<IpAddr> = s
            .table()
            .dests(&web)
            .unwrap()
            .iter()
            .map(|(_, d)| d.addr)
            .collect();
        assert_eq!(servers, vec![ip("198.18.1.32")]);
        assert_eq!(s.vsadm_rules(), "", "nothing is vsadm's any more");
    }

    #[test]
    fn vsadm_rules_come_back_after_a_restart() {
        let cfg = config(TWO_SERVICES);
        let mut a = ControlState::from_config(&cfg).unwrap();
        run(&mut a, "-A -u 198.18.0.200:53 -s sh").unwrap();
        run(&mut a, "-a -u 198.18.0.200:53 -r 198.18.1.41:53 -m -w 2").unwrap();
        run(&mut a, "-A -t 198.18.0.201:80 -s rr").unwrap();
        run(
            &mut a,
            "-a -t 198.18.0.201:80 -r 198.18.1.42:8080 --fullnat",
        )
        .unwrap();
        run(&mut a, "--add-laddr -z 198.18.2.9 -t 198.18.0.201:80").unwrap();
        run(
            &mut a,
            "--add-mark --dst 198.18.0.250/32 --proto tcp --dport 8000:8100 --set-mark 9",
        )
        .unwrap();
        let rules = a.vsadm_rules();
        assert!(rules.contains("-A -u 198.18.0.200:53 -s sh"), "{rules}");
        assert!(
            !rules.contains("198.18.0.100:80"),
            "file services are not vsadm's: {rules}"
        );
        // a restart: the file, then the rules
        let mut b = ControlState::from_config(&cfg).unwrap();
        let (applied, skipped) = b.restore_vsadm_rules(&rules);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(applied >= 6, "{applied}");
        assert_eq!(b.save_text(), a.save_text());
        // the file now names one of them: that line is skipped, the rest apply
        let taken = format!(
            "{TWO_SERVICES}\n[[service]]\nproto = \"udp\"\nvip = \"198.18.0.200\"\nport = 53\n\
             [[service.real_server]]\naddress = \"198.18.1.43\"\nmethod = \"nat\"\n"
        );
        let mut c = ControlState::from_config(&config(&taken)).unwrap();
        let (_, skipped) = c.restore_vsadm_rules(&rules);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].contains("the configuration file names this service"),
            "{skipped:?}"
        );
        let dns = ServiceKey::Addr {
            proto: crate::lb::types::Protocol::Udp,
            addr: ip("198.18.0.200"),
            port: 53,
        };
        let servers: Vec<IpAddr> = c
            .table()
            .dests(&dns)
            .unwrap()
            .iter()
            .map(|(_, d)| d.addr)
            .collect();
        assert_eq!(servers, vec![ip("198.18.1.43")]);
        // garbage lines are reported, not fatal
        let (_, skipped) = ControlState::from_config(&cfg)
            .unwrap()
            .restore_vsadm_rules("-A -t nonsense\n");
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn the_file_timeouts_and_marks_apply_when_the_file_changes_them() {
        let with = |t: &str| config(&format!("[timeouts]\n{t}\n{TWO_SERVICES}"));
        let mut s = ControlState::from_config(&with("tcp = 600")).unwrap();
        assert_eq!(s.timeouts().ipvsadm_triple(), (600, 120, 300));
        // vsadm --set survives a reload of an unchanged file
        run(&mut s, "--set 700 0 100").unwrap();
        run(
            &mut s,
            "--add-mark --dst 198.18.0.250/32 --proto tcp --dport 8000 --set-mark 9",
        )
        .unwrap();
        s.reload(&with("tcp = 600")).unwrap();
        assert_eq!(s.timeouts().ipvsadm_triple(), (700, 120, 100));
        assert_eq!(s.marks().rules().len(), 1);
        // the file changing tcp sets tcp only; dropping a key restores the default
        s.reload(&with("tcp = 500\nudp = 200")).unwrap();
        assert_eq!(s.timeouts().ipvsadm_triple(), (500, 120, 200));
        s.reload(&with("tcp = 500")).unwrap();
        assert_eq!(s.timeouts().ipvsadm_triple(), (500, 120, 300));
        assert_eq!(s.marks().rules().len(), 1, "vsadm's mark stays");
        let e =
            Config::from_str(&format!("{CONFIG_BASE}[timeouts]\ntcp = 0\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("timeouts.tcp"), "{e}");
    }

    #[test]
    fn reload_keeps_unchanged_servers_and_drains_removed_ones() {
        let mut s = ControlState::from_config(&config(TWO_SERVICES)).unwrap();
        let before = ids(&s, &vip());
        let v = s.version();
        // Same config: nothing changes.
        let d = s.reload(&config(TWO_SERVICES)).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(s.version(), v);

        let next = TWO_SERVICES
            .replace("weight = 2", "weight = 5")
            .replace("address = \"198.18.1.13\"", "address = \"198.18.1.14\"")
            .replace("fwmark = 5", "fwmark = 6")
            .replace("scheduler = \"wrr\"", "scheduler = \"rr\"")
            .replace("[\"198.18.2.1\"]", "[\"198.18.2.1\", \"198.18.2.2\"]");
        let cfg = config(&next);
        let preview = s.diff(&cfg).unwrap();
        assert_eq!(s.version(), v, "diff changes nothing");
        let d = s.reload(&cfg).unwrap();
        assert_eq!(d, preview);
        assert!(s.version() > v);
        let fw5 = ServiceKey::fwmark(5, AddrFamily::Inet);
        let fw6 = ServiceKey::fwmark(6, AddrFamily::Inet);
        assert_eq!(d.services_added, vec![fw6]);
        assert_eq!(d.services_removed, vec![fw5]);
        assert_eq!(d.services_edited, vec![vip()]);
        assert_eq!(d.servers_edited, vec![(vip(), ip("198.18.1.12"), 8080)]);
        assert_eq!(d.servers_removed, vec![(vip(), ip("198.18.1.13"), 8080)]);
        assert_eq!(
            d.servers_added,
            vec![
                (vip(), ip("198.18.1.14"), 8080),
                (fw6, ip("198.18.1.21"), 0)
            ]
        );
        assert_eq!(d.laddrs_changed, vec![vip()]);
        assert!(d
            .summary()
            .starts_with("services: 1 added, 1 edited, 1 removed"));
        // Unchanged and edited servers keep their slots.
        let after = ids(&s, &vip());
        assert!(
            after.contains(&before[1]) && after.contains(&before[2]),
            "{after:?}"
        );
        let weight12 = s
            .table()
            .dests(&vip())
            .unwrap()
            .into_iter()
            .find(|(_, r)| r.addr == ip("198.18.1.12"))
            .unwrap();
        assert_eq!((weight12.0, weight12.1.weight), (1, 5));
        // .13 and fwmark 5's server drain.
        assert_eq!(s.draining_slots(), vec![2, 3]);
        assert_eq!(s.local_addrs(&vip()), &[ip("198.18.2.1"), ip("198.18.2.2")]);
    }

    #[test]
    fn bad_reload_keeps_the_running_state() {
        let mut s = ControlState::from_config_with_capacity(&config(TWO_SERVICES), 5).unwrap();
        let saved = s.save_text();
        let v = s.version();
        // Two more servers than slots.
        let bigger = format!(
            "{TWO_SERVICES}[[service.real_server]]\naddress = \"198.18.1.22\"\n\
             [[service.real_server]]\naddress = \"198.18.1.23\"\n"
        );
        let e = s.reload(&config(&bigger)).unwrap_err();
        assert_eq!(
            e,
            "service FWM 5: Memory allocation problem: all 5 real-server slots are in use"
        );
        assert_eq!(s.save_text(), saved);
        assert_eq!(s.version(), v);
        assert!(ControlState::from_config_with_capacity(&config(&bigger), 5).is_err());
    }

    #[test]
    fn stats_baselines_rates_and_zero() {
        let stats = FakeStats::default();
        let mut s = ControlState::default();
        ok(&mut s, "-A -t 198.18.0.100:80 -s rr");
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
        let c = |n: u64| Counters {
            conns: n,
            inpkts: n * 10,
            ..Counters::default()
        };
        // Slot 0 carries counters from an earlier life: they are not shown.
        stats.dests.borrow_mut().insert(0, c(1000));
        s.sync_stats(&stats);
        let views = s.service_views(&stats);
        assert_eq!(views[0].dests[0].stats, Counters::default());
        // 1000 conn/s, seen by the estimators.
        for k in 1..=60u64 {
            stats.now.set(k * 2000);
            stats.services.borrow_mut().insert(0, c(k * 2000));
            stats.dests.borrow_mut().insert(0, c(1000 + k * 2000));
            s.tick(&stats);
        }
        let views = s.service_views(&stats);
        assert_eq!(views[0].stats.conns, 120_000);
        assert_eq!(views[0].dests[0].stats.conns, 120_000);
        assert_eq!(views[0].rates.cps, 1000);
        assert_eq!(views[0].dests[0].rates.inpps, 10_000);
        s.zero(Some(&vip()), &stats).unwrap();
        let views = s.service_views(&stats);
        assert_eq!(views[0].stats, Counters::default());
        assert_eq!(views[0].rates, Default::default());
        assert_eq!(views[0].dests[0].stats, Counters::default());
        assert_eq!(
            s.zero(Some(&ServiceKey::tcp(ip("1.1.1.1"), 1)), &stats)
                .unwrap_err(),
            "No such service"
        );
        stats.services.borrow_mut().insert(0, c(120_005));
        assert_eq!(s.service_views(&stats)[0].stats.conns, 5);
        s.zero(None, &stats).unwrap();
        assert_eq!(s.service_views(&stats)[0].stats.conns, 0);
        // Drained slots are released once nothing uses them.
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m");
        ok(&mut s, "-d -t 198.18.0.100:80 -r 198.18.1.12:8080");
        stats.conns.borrow_mut().insert(
            1,
            ConnCounts {
                active: 0,
                inactive: 1,
                persistent: 0,
            },
        );
        assert_eq!(s.release_drained(&stats), Vec::<DestId>::new());
        stats.conns.borrow_mut().remove(&1);
        assert_eq!(s.release_drained(&stats), vec![1]);
        assert!(s.draining_slots().is_empty());
        // A slot reused by another server starts from its current counters.
        ok(&mut s, "-d -t 198.18.0.100:80 -r 198.18.1.11:8080");
        s.release_dest_slot(0).unwrap();
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.99:8080 -m");
        s.sync_stats(&stats);
        stats.dests.borrow_mut().insert(0, c(130_000));
        assert_eq!(
            s.service_views(&stats)[0].dests[0].stats.conns,
            130_000 - 121_000
        );
    }

    #[test]
    fn set_sync_changes_the_knobs_and_the_listing() {
        let mut s = ControlState::default();
        let text = |s: &mut ControlState| match run(s, "-L --sync").unwrap() {
            Reply::Text(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(&mut s),
            "Sync settings: threshold=3 period=50 refresh_period=0 retries=0 persist_mode=0 \
             version=1\n"
        );
        let v = s.version();
        ok(&mut s, "--set-sync refresh_period=10 retries=2");
        assert!(s.version() > v);
        assert_eq!(s.sync_settings().retries, 2);
        assert!(text(&mut s).contains("refresh_period=10 retries=2"));
        // the combination is checked, the state kept on a refusal
        assert!(run(&mut s, "--set-sync threshold=50")
            .unwrap_err()
            .contains("below the period"));
        assert!(run(&mut s, "--set-sync version=0")
            .unwrap_err()
            .contains("version 1 only"));
        assert_eq!(s.sync_settings().threshold, 3);
        // from the config, and back to the defaults on reload
        let d = s.reload(&config("[sync]\nperiod = 100\n")).unwrap();
        assert!(d.sync_changed && d.summary().contains("sync settings changed"));
        assert_eq!(s.sync_settings().period, 100);
        assert_eq!(s.sync_settings().retries, 0);
    }

    #[test]
    fn set_defense_reaches_the_snapshot_and_the_listing() {
        let mut s = ControlState::default();
        let text = |s: &mut ControlState| match run(s, "-L --defense").unwrap() {
            Reply::Text(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(&mut s),
            "Defense (drop_entry secure_tcp pressure): 0 0 90%\n\
             Timeout (synrecv synrecv_secure): 60 10\n\
             Sloppy (sloppy_tcp): 0\n"
        );
        let v = s.version();
        ok(&mut s, "--set-defense drop_entry=1 synrecv=5");
        assert!(s.version() > v);
        ok(
            &mut s,
            "--set-defense secure_tcp=2 pressure=50 sloppy_tcp=1",
        );
        let snap = s.snapshot();
        assert!(snap.defense.sloppy_tcp);
        assert_eq!((snap.defense.drop_entry, snap.defense.secure_tcp), (1, 2));
        assert_eq!(snap.defense.pressure_percent, 50);
        assert_eq!(snap.timeouts.tcp_state(TcpState::SynRecv), 5);
        assert_eq!(
            text(&mut s),
            "Defense (drop_entry secure_tcp pressure): 1 2 50%\n\
             Timeout (synrecv synrecv_secure): 5 5\n\
             Sloppy (sloppy_tcp): 1\n"
        );
        // --set still shows the ipvsadm triple, unchanged by synrecv
        assert_eq!(snap.timeouts.ipvsadm_triple(), (900, 120, 300));
    }

    #[test]
    fn defense_from_the_config_and_on_reload() {
        let c = config(
            "[defense]\ndrop_entry = 1\nsecure_tcp = 3\npressure_percent = 80\nsynrecv_timeout = 30\n",
        );
        let mut s = ControlState::from_config(&c).unwrap();
        assert_eq!(
            *s.defense(),
            DefenseConfig {
                drop_entry: 1,
                secure_tcp: 3,
                pressure_percent: 80,
                sloppy_tcp: false,
            }
        );
        assert_eq!(s.timeouts().tcp_state(TcpState::SynRecv), 30);
        let d = s.reload(&c).unwrap();
        assert!(d.is_empty(), "{d:?}");
        let d = s.reload(&config("[defense]\nsecure_tcp = 1\n")).unwrap();
        assert!(d.defense_changed);
        assert!(d.summary().contains("defense settings changed"));
        assert_eq!((s.defense().drop_entry, s.defense().secure_tcp), (0, 1));
        assert_eq!(s.timeouts().tcp_state(TcpState::SynRecv), 30, "kept");
        let e = Config::from_str(
            &format!("{CONFIG_BASE}[defense]\ndrop_entry = 4\n"),
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:8:14: defense.drop_entry: 4 out of range: must be 0..=3"
        );
        let e = Config::from_str(
            &format!("{CONFIG_BASE}[defense]\ndrop_packet = 1\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop_packet"), "{e}");
    }

    #[test]
    fn sloppy_tcp_from_the_lb_section_and_on_reload() {
        let s = ControlState::from_config(&config("")).unwrap();
        assert!(!s.defense().sloppy_tcp, "off by default, as in the kernel");
        let mut s = ControlState::from_config(&config("[lb]\nsloppy_tcp = true\n")).unwrap();
        assert!(s.defense().sloppy_tcp);
        assert!(s.snapshot().defense.sloppy_tcp);
        let d = s.reload(&config("")).unwrap();
        assert!(d.defense_changed);
        assert!(!s.defense().sloppy_tcp);
        let e = Config::from_str(
            &format!("{CONFIG_BASE}[lb]\nsloppy_sctp = true\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no SCTP"), "{e}");
        assert!(Config::from_str(
            &format!("{CONFIG_BASE}[lb]\nsloppy_sctp = false\n"),
            "t.toml"
        )
        .is_ok());
    }

    #[test]
    fn synproxy_flag_from_vsadm_config_and_save() {
        let mut s = ControlState::default();
        ok(&mut s, "-A -t 198.18.0.100:80 -s rr --synproxy");
        ok(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
        assert_eq!(
            run(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.12 -g").unwrap_err(),
            "synproxy needs NAT (-m) or FULLNAT (--fullnat) real servers, not Route: \
             replies bypass the director"
        );
        assert_eq!(
            run(&mut s, "-A -u 198.18.0.100:53 --synproxy").unwrap_err(),
            "synproxy is only for IPv4 TCP virtual services"
        );
        let saved = s.save_text();
        assert!(
            saved.contains("-A -t 198.18.0.100:80 -s rr --synproxy\n"),
            "{saved}"
        );
        let mut r = ControlState::default();
        r.restore(&saved).unwrap();
        assert_eq!(r.save_text(), saved, "-S | -R keeps synproxy");
        // -E without --synproxy turns it off, as -E resets every setting
        ok(&mut s, "-E -t 198.18.0.100:80 -s rr");
        assert!(!s.save_text().contains("synproxy"));

        let c = config(
            "[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\nsynproxy = true\nlocal_addresses = [\"198.18.2.1\"]\n\
             [[service.real_server]]\naddress = \"198.18.1.11\"\nport = 8080\nmethod = \"fullnat\"\n\
             [[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 81\n",
        );
        assert!(c.services[0].synproxy && !c.services[1].synproxy);
        let e = Config::from_str(
            &format!(
                "{CONFIG_BASE}[[service]]\nproto = \"udp\"\nvip = \"198.18.0.100\"\nport = 53\nsynproxy = true\n"
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("synproxy applies to IPv4 TCP services only"),
            "{e}"
        );
        let e = Config::from_str(
            &format!(
                "{CONFIG_BASE}[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\nsynproxy = true\n\
                 [[service.real_server]]\naddress = \"198.18.1.11\"\nmethod = \"dr\"\n"
            ),
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("real_server[0].method: synproxy needs nat or fullnat"),
            "{e}"
        );
    }

    /// Issue 12 item 9: like IPVS, a service or server deleted (`-D`,
    /// `-d`, `-C`) and added again starts its totals from zero, though it
    /// gets its old slot (and the slot's raw counters) back.
    #[test]
    fn deleted_and_re_added_services_and_servers_start_from_zero() {
        let stats = FakeStats::default();
        let mut s = ControlState::default();
        let c = |n: u64| Counters {
            conns: n,
            inpkts: n * 10,
            ..Counters::default()
        };
        let step = |s: &mut ControlState, line: &str| {
            ok(s, line);
            s.sync_stats(&stats);
        };
        step(&mut s, "-A -t 198.18.0.100:80 -s rr");
        step(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
        stats.services.borrow_mut().insert(0, c(7));
        stats.dests.borrow_mut().insert(0, c(7));
        let views = s.service_views(&stats);
        assert_eq!(
            (views[0].stats.conns, views[0].dests[0].stats.conns),
            (7, 7)
        );
        // -d, then -a of the same server: its draining slot comes back
        step(&mut s, "-d -t 198.18.0.100:80 -r 198.18.1.11:8080");
        step(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
        let views = s.service_views(&stats);
        assert_eq!(views[0].dests[0].stats, Counters::default());
        assert_eq!(views[0].stats.conns, 7, "the service was not deleted");
        stats.dests.borrow_mut().insert(0, c(9));
        assert_eq!(s.service_views(&stats)[0].dests[0].stats.conns, 2);
        // -C, then the same service and server again: slot 0 again
        for clear in ["-C", "-D -t 198.18.0.100:80"] {
            step(&mut s, clear);
            step(&mut s, "-A -t 198.18.0.100:80 -s rr");
            step(&mut s, "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
            let views = s.service_views(&stats);
            assert_eq!(views[0].stats, Counters::default(), "after {clear}");
            assert_eq!(
                views[0].dests[0].stats,
                Counters::default(),
                "after {clear}"
            );
        }
        // and within one restore (no listing between the deletion and the add)
        stats.services.borrow_mut().insert(0, c(20));
        stats.dests.borrow_mut().insert(0, c(20));
        s.restore(
            "-C\n-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m\n",
        )
        .unwrap();
        s.sync_stats(&stats);
        let views = s.service_views(&stats);
        assert_eq!(views[0].stats, Counters::default());
        assert_eq!(views[0].dests[0].stats, Counters::default());
    }
}
