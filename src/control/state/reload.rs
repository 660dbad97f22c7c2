//! Reload: the configuration file's services, servers and global settings
//! applied over the running state, keeping vsadm's own changes.

use std::net::IpAddr;

use super::{err, key_from_config, server_config_from, service_config_from, ControlState};
use crate::control::config::{self, Config};
use crate::control::unsupported;
use crate::lb::mark::MarkRules;
use crate::lb::service::ServiceKey;
use crate::lb::tcp_state::{TcpState, Timeouts};

/// Changes a reload made (or would make).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadDiff {
    /// Services created.
    pub services_added: Vec<ServiceKey>,
    /// Services whose settings changed.
    pub services_edited: Vec<ServiceKey>,
    /// Services deleted (their slots wait until their connections expire).
    pub services_removed: Vec<ServiceKey>,
    /// Servers created: (service, address, port).
    pub servers_added: Vec<(ServiceKey, IpAddr, u16)>,
    /// Servers whose weight, method or thresholds changed (same slot).
    pub servers_edited: Vec<(ServiceKey, IpAddr, u16)>,
    /// Servers deleted (their slots wait until their connections expire).
    pub servers_removed: Vec<(ServiceKey, IpAddr, u16)>,
    /// Services whose local addresses changed.
    pub laddrs_changed: Vec<ServiceKey>,
    /// The firewall-mark rules changed.
    pub marks_changed: bool,
    /// `[defense]` changed the defence settings or the SYN_RECV timeout.
    pub defense_changed: bool,
    /// `[sync]` changed the sync knobs.
    pub sync_changed: bool,
}

impl ReloadDiff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.services_added.is_empty()
            && self.services_edited.is_empty()
            && self.services_removed.is_empty()
            && self.servers_added.is_empty()
            && self.servers_edited.is_empty()
            && self.servers_removed.is_empty()
            && self.laddrs_changed.is_empty()
            && !self.marks_changed
            && !self.defense_changed
            && !self.sync_changed
    }

    /// One line for the operator.
    pub fn summary(&self) -> String {
        let marks = if self.marks_changed {
            "; mark rules changed"
        } else {
            ""
        };
        format!(
            "services: {} added, {} edited, {} removed; servers: {} added, {} edited, {} removed; \
             local addresses changed in {} service(s){marks}{}{}",
            self.services_added.len(),
            self.services_edited.len(),
            self.services_removed.len(),
            self.servers_added.len(),
            self.servers_edited.len(),
            self.servers_removed.len(),
            self.laddrs_changed.len(),
            if self.defense_changed {
                "; defense settings changed"
            } else {
                ""
            },
            if self.sync_changed {
                "; sync settings changed"
            } else {
                ""
            }
        )
    }
}

/// What the configuration file said of the global settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileGlobals {
    pub(super) marks: Vec<crate::lb::mark::MarkRule>,
    defense: config::DefenseConf,
    timeouts: config::TimeoutsConf,
    sync: crate::lb::sync::SyncSettings,
}

impl ControlState {
    /// What [`Self::reload`] would change, without changing anything.
    pub fn diff(&self, cfg: &Config) -> Result<ReloadDiff, String> {
        let mut scratch = self.clone();
        scratch.reload(cfg)
    }

    /// Make the services, servers and local addresses those of `cfg`:
    /// unchanged servers keep their slots (so their connections stay), edited
    /// ones are changed in place, removed ones keep their slots until their
    /// connections expire. All or nothing: on an
    /// error the running state is kept.
    pub fn reload(&mut self, cfg: &Config) -> Result<ReloadDiff, String> {
        let mut next = self.clone();
        let diff = next.reload_in_place(cfg)?;
        if !diff.is_empty() {
            next.version = self.version.wrapping_add(1);
        }
        *self = next;
        Ok(diff)
    }

    fn reload_in_place(&mut self, cfg: &Config) -> Result<ReloadDiff, String> {
        // the data plane's tunnel source is set at start, from the first
        // configuration; a reload does not change it
        if self.tun_source6.is_none() {
            self.tun_source6 = Some(crate::control::tun_source::tun_source6(cfg));
        }
        let mut diff = ReloadDiff::default();
        let wanted: Vec<ServiceKey> = cfg
            .services
            .iter()
            .map(|s| key_from_config(&s.key))
            .collect();
        let ctx = |key: &ServiceKey, e: String| format!("service {key}: {e}");
        // Removals first, so limits (slots, mh table) see the final sizes.
        // Only services the file owned: vsadm's own stay (the file is the
        // truth for what it names, vsadm for the rest; see docs/rules.md).
        for key in self.table.service_keys() {
            if !wanted.contains(&key) && self.file_services.contains(&key) {
                let ids = self
                    .table
                    .del_service(&key)
                    .map_err(|e| ctx(&key, err(e)))?;
                self.draining.extend(ids);
                self.laddrs.remove(&key);
                diff.services_removed.push(key);
            }
        }
        for (s, key) in cfg.services.iter().zip(&wanted) {
            let Some(current) = self.table.dests(key) else {
                continue;
            };
            for (_, d) in current {
                let keep = s.real_servers.iter().any(|r| {
                    server_config_from(key, r).addr == d.addr
                        && server_config_from(key, r).port == d.port
                });
                if !keep {
                    let id = self
                        .table
                        .del_dest(key, d.addr, d.port)
                        .map_err(|e| ctx(key, err(e)))?;
                    self.draining.insert(id);
                    diff.servers_removed.push((*key, d.addr, d.port));
                }
            }
        }
        for (s, key) in cfg.services.iter().zip(&wanted) {
            unsupported::check_service(key).map_err(|e| ctx(key, e))?;
            for r in &s.real_servers {
                unsupported::check_server(key.af(), r.address).map_err(|e| ctx(key, e))?;
                self.check_sync_family(key, r.address)
                    .map_err(|e| ctx(key, e))?;
                self.check_tun_source(r.address, r.method)
                    .map_err(|e| ctx(key, e))?;
            }
            for a in &s.local_addresses {
                unsupported::check_local_addr(key.af(), *a).map_err(|e| ctx(key, e))?;
            }
            let config = service_config_from(s);
            match self.table.service_config(key) {
                None => {
                    self.table
                        .add_service(*key, config)
                        .map_err(|e| ctx(key, err(e)))?;
                    diff.services_added.push(*key);
                }
                Some(c) if *c != config => {
                    self.table
                        .edit_service(key, config)
                        .map_err(|e| ctx(key, err(e)))?;
                    diff.services_edited.push(*key);
                }
                Some(_) => {}
            }
            let current = self.table.dests(key).unwrap_or_default();
            for r in &s.real_servers {
                let want = server_config_from(key, r);
                match current
                    .iter()
                    .find(|(_, d)| d.addr == want.addr && d.port == want.port)
                {
                    None => {
                        let id = self
                            .table
                            .add_dest(key, want)
                            .map_err(|e| ctx(key, err(e)))?;
                        self.draining.remove(&id);
                        diff.servers_added.push((*key, want.addr, want.port));
                    }
                    Some((_, have)) if *have != want => {
                        self.table
                            .edit_dest(key, want)
                            .map_err(|e| ctx(key, err(e)))?;
                        diff.servers_edited.push((*key, want.addr, want.port));
                    }
                    Some(_) => {}
                }
            }
            let have = self.laddrs.get(key).cloned().unwrap_or_default();
            if have != s.local_addresses {
                if s.local_addresses.is_empty() {
                    self.laddrs.remove(key);
                } else {
                    self.laddrs.insert(*key, s.local_addresses.clone());
                }
                self.push_laddrs(key)?;
                diff.laddrs_changed.push(*key);
            }
        }
        self.file_services = wanted.iter().copied().collect();
        // Global settings: what the file changed since it was last read
        // (everything, the first time); vsadm's changes stay otherwise.
        let now = FileGlobals {
            marks: cfg.marks.clone(),
            defense: cfg.defense,
            timeouts: cfg.timeouts,
            sync: cfg.sync,
        };
        let last = self.file_globals.clone();
        if last.as_ref().map(|l| &l.marks) != Some(&now.marks) {
            let old_file = last.as_ref().map(|l| l.marks.clone()).unwrap_or_default();
            // the file's rules first, then those vsadm added
            let mut marks = MarkRules::new();
            for r in &cfg.marks {
                marks.add(*r)?;
            }
            for r in self.marks.rules() {
                if !old_file.contains(r) && !cfg.marks.contains(r) {
                    marks.add(*r)?;
                }
            }
            if marks.rules() != self.marks.rules() {
                self.marks = marks;
                diff.marks_changed = true;
            }
        }
        let mut t = self.timeouts;
        let mut d = self.defense;
        if last.as_ref().map(|l| l.defense) != Some(now.defense) {
            if let Some(secs) = cfg.defense.synrecv_timeout {
                t.set_state(TcpState::SynRecv, secs).map_err(err)?;
            }
            cfg.defense.knobs.validate().map_err(err)?;
            d = cfg.defense.knobs;
        }
        if last.as_ref().map(|l| l.timeouts) != Some(now.timeouts) {
            let ipvs = Timeouts::default().ipvsadm_triple();
            let old = last.as_ref().map(|l| l.timeouts).unwrap_or_default();
            let pick = |new: Option<u32>, old: Option<u32>, default: u32| {
                if new == old {
                    0 // unchanged in the file: leave vsadm's value
                } else {
                    new.unwrap_or(default)
                }
            };
            t.set(
                pick(now.timeouts.tcp, old.tcp, ipvs.0),
                pick(now.timeouts.tcpfin, old.tcpfin, ipvs.1),
                pick(now.timeouts.udp, old.udp, ipvs.2),
            )
            .map_err(err)?;
            if last.is_none() {
                // first read: the file's values, or the defaults
                t.set(
                    now.timeouts.tcp.unwrap_or(ipvs.0),
                    now.timeouts.tcpfin.unwrap_or(ipvs.1),
                    now.timeouts.udp.unwrap_or(ipvs.2),
                )
                .map_err(err)?;
            }
        }
        if d != self.defense || t != self.timeouts {
            self.defense = d;
            self.timeouts = t;
            diff.defense_changed = true;
        }
        if last.as_ref().map(|l| l.sync) != Some(now.sync) && cfg.sync != self.sync_settings {
            cfg.sync.validate()?;
            self.sync_settings = cfg.sync;
            diff.sync_changed = true;
        }
        self.file_globals = Some(now);
        Ok(diff)
    }
}
