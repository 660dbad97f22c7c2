//! `virtual_server` blocks mapped to services, with keepalived's corrections
//! and timing keywords.

use std::net::IpAddr;

use super::lexer::Loc;
use super::parse::Node;

use super::{KaError, Mapper, VsDraft};
use crate::control::config::health::{validate_service_health, virtualhost, MAX_RETRY};
use crate::control::config::{mask_prefix_len, RealServerConf, SchedFlag, ServiceConf, ServiceKey};
use crate::health::spec::{CheckerTiming, ServiceHealth, SorryServer};
use crate::lb::types::{AddrFamily, FwdMethod, Protocol, SchedulerKind};

impl Mapper<'_> {
    /// A virtual server; `None` when keepalived would drop it (no real
    /// servers), with a warning.
    pub(super) fn virtual_server(&mut self, n: &Node) -> Result<Option<ServiceConf>, KaError> {
        let body = self.block(n)?;
        enum Head {
            Addr(IpAddr, u16),
            Fwmark(u32),
        }
        let head = match n.args.as_slice() {
            [f, mark] if f == "fwmark" => match mark.parse::<u32>() {
                Ok(m) if m > 0 => Head::Fwmark(m),
                _ => return Err(self.err(n, format!("invalid fwmark {mark:?}: expected 1..=4294967295"))),
            },
            [g, _] if g == "group" => {
                return Err(self.err(
                    n,
                    "virtual_server group is not supported by vsd: write one virtual_server per address",
                ))
            }
            [ip] => Head::Addr(self.ip(n, ip)?, 0),
            [ip, port] => Head::Addr(self.ip(n, ip)?, self.port(n, port)?),
            _ => {
                return Err(self.err(
                    n,
                    "virtual_server takes an address and a port, fwmark N, or group NAME",
                ))
            }
        };
        let mut d = VsDraft {
            flags: Vec::new(),
            granularity: None,
            laddr_group: None,
            ip_family: None,
            protocol: None,
            method: FwdMethod::Masq,
            sorry: None,
            sorry_method: None,
            sorry_inhibit: false,
        };
        let mut scheduler = SchedulerKind::Wlc;
        let mut sched_loc: Option<Loc> = None;
        let mut persistence: Option<u32> = None;
        let mut one_packet: Option<Loc> = None;
        let mut synproxy: Option<Loc> = None;
        let mut health = ServiceHealth::default();
        let mut server_nodes: Vec<&Node> = Vec::new();
        let mut quorum_loc: Option<Loc> = None;
        let mut hysteresis_loc: Option<Loc> = None;
        for c in body {
            let kw = c.keyword.as_str();
            if self.timing_keyword(c, &mut health.timing)? {
                continue;
            }
            match kw {
                "lvs_sched" | "lb_algo" => {
                    let name = self.one(c)?;
                    scheduler = SchedulerKind::from_name(name).ok_or_else(|| {
                        let all: Vec<&str> = SchedulerKind::ALL.iter().map(|s| s.name()).collect();
                        self.err(
                            c,
                            format!(
                                "unknown scheduler {name:?}: expected one of {}",
                                all.join(" ")
                            ),
                        )
                    })?;
                    sched_loc = Some(c.loc);
                }
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    self.no_args(c)?;
                    if let Some(f) = SchedFlag::parse(kw) {
                        d.flags.push((f, c.loc));
                    }
                }
                "ops" => {
                    self.no_args(c)?;
                    one_packet = Some(c.loc);
                }
                // IP_VS_SVC_F_HASHED: the kernel sets it on every service anyway
                "hashed" => self.no_args(c)?,
                "lvs_method" | "lb_kind" => d.method = self.method(c)?,
                "persistence_timeout" => {
                    self.no_block(c)?;
                    // no value: keepalived's 6 minutes; 0: not persistent
                    // (keepalived ignores 0 and leaves the service so)
                    persistence = if c.args.is_empty() {
                        Some(360)
                    } else {
                        Some(self.int(c, 0, u64::from(u32::MAX))? as u32).filter(|t| *t > 0)
                    };
                }
                "persistence_granularity" => {
                    d.granularity = Some((self.one(c)?.to_string(), c.loc))
                }
                "protocol" => {
                    let p = self.one(c)?;
                    let proto = match p.to_ascii_uppercase().as_str() {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        "SCTP" => return Err(self.err(c, "protocol SCTP is not supported by vsd")),
                        _ => {
                            return Err(
                                self.err(c, format!("unknown protocol {p:?}: expected TCP or UDP"))
                            )
                        }
                    };
                    d.protocol = Some((proto, c.loc));
                }
                "ip_family" => {
                    d.ip_family = Some(match self.one(c)? {
                        "inet" => AddrFamily::Inet,
                        "inet6" => AddrFamily::Inet6,
                        other => {
                            return Err(self.err(
                                c,
                                format!("unknown ip_family {other:?}: expected inet or inet6"),
                            ))
                        }
                    })
                }
                "virtualhost" => {
                    health.virtualhost =
                        Some(virtualhost(self.one(c)?).map_err(|m| self.err(c, m))?)
                }
                "omega" => health.omega = self.flag(c)?,
                "quorum" => {
                    health.quorum = self.int(c, 1, u64::from(u32::MAX))? as u32;
                    quorum_loc = Some(c.loc);
                }
                "hysteresis" => {
                    health.hysteresis = self.int(c, 0, u64::from(u32::MAX))? as u32;
                    hysteresis_loc = Some(c.loc);
                }
                "quorum_up" => health.quorum_up = Some(self.script(c)?),
                "quorum_down" => health.quorum_down = Some(self.script(c)?),
                "sorry_server" => {
                    self.no_block(c)?;
                    let (addr, port) = match c.args.as_slice() {
                        [a] => (self.ip(c, a)?, None),
                        [a, p] => (self.ip(c, a)?, Some(self.port(c, p)?)),
                        _ => {
                            return Err(
                                self.err(c, "sorry_server takes an address and an optional port")
                            )
                        }
                    };
                    d.sorry = Some((addr, port, c.loc));
                }
                "sorry_server_inhibit" => d.sorry_inhibit = self.flag(c)?,
                "sorry_server_lvs_method" => d.sorry_method = Some(self.method(c)?),
                "inhibit_on_failure" => health.inhibit_on_failure = self.flag(c)?,
                "real_server" => server_nodes.push(c),
                // DPVS's keepalived
                "laddr_group_name" => d.laddr_group = Some((self.one(c)?.to_string(), c.loc)),
                "syn_proxy" => {
                    self.no_args(c)?;
                    synproxy = Some(c.loc);
                }
                // reporting only
                "smtp_alert" | "snmp_name" => self.no_block(c)?,
                "persistence_engine" => {
                    return Err(self.err(c, "persistence_engine (sip) is not supported by vsd"))
                }
                "ha_suspend" => {
                    return Err(
                        self.err(c, "ha_suspend is not supported by vsd (checks always run)")
                    )
                }
                "establish_timeout"
                | "proxy_protocol"
                | "hash_target"
                | "bps"
                | "limit_proportion"
                | "src-range"
                | "dst-range"
                | "oif"
                | "iif"
                | "match"
                | "whitelist_address_group"
                | "blacklist_address_group"
                | "quic"
                | "tunnel_group" => {
                    return Err(self.err(c, format!("{kw} (a DPVS option) is not supported by vsd")))
                }
                _ => self.warn(
                    c,
                    format!("unknown keyword '{kw}' in virtual_server ignored"),
                ),
            }
        }

        // the key, now that protocol and ip_family are known
        let key = match head {
            Head::Addr(vip, port) => {
                if let Some(f) = d.ip_family.filter(|f| *f != AddrFamily::of(vip)) {
                    return Err(self.err(n, format!("ip_family {f:?} does not match {vip}")));
                }
                let proto = match d.protocol {
                    Some((p, _)) => p,
                    None => {
                        // keepalived's choice: the kernel's default for protocol 0
                        self.correct(n, "no protocol set - defaulting to UDP");
                        Protocol::Udp
                    }
                };
                ServiceKey::Addr { proto, vip, port }
            }
            Head::Fwmark(mark) => {
                if let Some((_, loc)) = d.protocol {
                    let w = format!(
                        "{}: protocol specified for fwmark - protocol will be ignored",
                        self.place(loc)
                    );
                    self.warnings.push(w);
                }
                ServiceKey::Fwmark {
                    mark,
                    family: d.ip_family.unwrap_or(AddrFamily::Inet),
                }
            }
        };
        let family = key.family();
        // as keepalived: a granularity makes the service persistent
        if d.granularity.is_some() {
            persistence.get_or_insert(360);
        }
        if key.port() == 0 && matches!(key, ServiceKey::Addr { .. }) && persistence.is_none() {
            self.correct(n, "zero port only valid for persistent services - setting");
            persistence = Some(360);
        }
        let netmask = match &d.granularity {
            None => None,
            Some((text, loc)) => {
                let len = match (family, text.parse::<u8>()) {
                    (AddrFamily::Inet6, Ok(l)) if (1..=128).contains(&l) => Some(l),
                    (AddrFamily::Inet, Ok(l)) if (1..=32).contains(&l) => Some(l),
                    (AddrFamily::Inet, Err(_)) => mask_prefix_len(text).filter(|l| *l > 0),
                    _ => None,
                };
                let Some(len) = len else {
                    return Err(self.lx.error(*loc, format!("invalid persistence_granularity {text:?}: expected a contiguous netmask like 255.255.255.0 or a prefix length")));
                };
                Some(len)
            }
        };
        let mut flags: Vec<SchedFlag> = Vec::new();
        for (f, loc) in &d.flags {
            if let Some(owner) = f.scheduler().filter(|o| *o != scheduler) {
                return Err(self.lx.error(
                    *loc,
                    format!(
                        "{} needs lvs_sched {}, not {}",
                        f.as_str(),
                        owner.name(),
                        scheduler.name()
                    ),
                ));
            }
            if !flags.contains(f) {
                flags.push(*f);
            }
        }
        let _ = sched_loc;
        let mut one_packet = one_packet.is_some();
        if one_packet
            && matches!(
                key,
                ServiceKey::Addr {
                    proto: Protocol::Tcp,
                    ..
                }
            )
        {
            self.correct(n, "one packet scheduling requires UDP - resetting");
            one_packet = false;
        }
        if let Some(loc) = synproxy {
            if !matches!(
                key,
                ServiceKey::Addr {
                    proto: Protocol::Tcp,
                    vip: IpAddr::V4(_),
                    ..
                }
            ) {
                return Err(self
                    .lx
                    .error(loc, "syn_proxy applies to IPv4 TCP services only"));
            }
        }
        let local_addresses = match &d.laddr_group {
            None => Vec::new(),
            Some((name, loc)) => self.laddr_groups.get(name).cloned().ok_or_else(|| {
                self.lx
                    .error(*loc, format!("no local_address_group {name}"))
            })?,
        };

        let mut real_servers: Vec<RealServerConf> = Vec::new();
        for r in server_nodes {
            let Some(rs) =
                self.real_server(r, &key, d.method, &local_addresses, synproxy.is_some())?
            else {
                continue;
            };
            if real_servers
                .iter()
                .any(|o| o.address == rs.address && o.port == rs.port)
            {
                self.correct(
                    r,
                    &format!(
                        "real server {} {} is duplicated - removing second rs",
                        rs.address, rs.port
                    ),
                );
                continue;
            }
            real_servers.push(rs);
        }

        if let Some((addr, port, loc)) = d.sorry {
            let method = d.sorry_method.unwrap_or(d.method);
            if AddrFamily::of(addr) != family && method != FwdMethod::Tunnel {
                let w = format!(
                    "{}: address family of virtual server and sorry server {addr} don't match - skipping sorry server (keepalived does the same)",
                    self.place(loc)
                );
                self.warnings.push(w);
            } else {
                // keepalived's port rules: NAT keeps its port; otherwise the
                // virtual server's (none for fwmark)
                let port = match (method, &key) {
                    (FwdMethod::Masq | FwdMethod::FullNat, _) => port,
                    (_, ServiceKey::Fwmark { .. }) => Some(0),
                    (_, ServiceKey::Addr { port: vport, .. }) => Some(*vport),
                };
                health.sorry_server = Some(SorryServer {
                    addr,
                    port,
                    method: Some(method),
                    inhibit: d.sorry_inhibit,
                });
            }
        } else if d.sorry_method.is_some() || d.sorry_inhibit {
            return Err(self.err(
                n,
                "sorry_server_lvs_method/sorry_server_inhibit without sorry_server",
            ));
        }
        // keepalived: a quorum above the servers' total weight could never
        // be reached, and hysteresis must stay below the quorum
        let weight_sum: u64 = real_servers.iter().map(|r| u64::from(r.weight)).sum();
        if u64::from(health.quorum) > weight_sum && !real_servers.is_empty() {
            let sum = u32::try_from(weight_sum).unwrap_or(u32::MAX);
            let w = format!(
                "{}: quorum {} exceeds total weight of real servers {sum}, reducing quorum to {sum} (keepalived does the same)",
                self.place(quorum_loc.unwrap_or(n.loc)),
                health.quorum
            );
            self.warnings.push(w);
            health.quorum = sum;
        }
        if health.quorum > 0 && health.hysteresis >= health.quorum {
            let w = format!(
                "{}: hysteresis {} >= quorum {}; setting hysteresis to {} (keepalived does the same)",
                self.place(hysteresis_loc.or(quorum_loc).unwrap_or(n.loc)),
                health.hysteresis,
                health.quorum,
                health.quorum - 1
            );
            self.warnings.push(w);
            health.hysteresis = health.quorum - 1;
        }
        validate_service_health(&health, family, &local_addresses).map_err(|(what, m)| {
            let loc = match what {
                "sorry_server" => d.sorry.map_or(n.loc, |s| s.2),
                _ => hysteresis_loc.or(quorum_loc).unwrap_or(n.loc),
            };
            self.lx.error(loc, m)
        })?;
        if real_servers.is_empty() {
            self.correct(n, "virtual server has no real servers - ignoring");
            return Ok(None);
        }
        Ok(Some(ServiceConf {
            key,
            scheduler,
            persistence_timeout: persistence,
            netmask,
            flags,
            one_packet,
            synproxy: synproxy.is_some(),
            local_addresses,
            real_servers,
            health,
        }))
    }

    /// A correction keepalived makes itself, with its words: applied the
    /// same way, and reported.
    pub(super) fn correct(&mut self, n: &Node, what: &str) {
        let w = format!("{}: {what} (keepalived does the same)", self.place(n.loc));
        self.warnings.push(w);
    }

    /// The timing keywords every level shares; true when `n` was one.
    pub(super) fn timing_keyword(
        &mut self,
        n: &Node,
        t: &mut CheckerTiming,
    ) -> Result<bool, KaError> {
        match n.keyword.as_str() {
            "connect_timeout" => t.connect_timeout = Some(self.timer(n, false)?),
            "delay_loop" => t.delay_loop = Some(self.timer(n, false)?),
            "delay_before_retry" => t.delay_before_retry = Some(self.timer(n, true)?),
            "warmup" => t.warmup = Some(self.timer(n, true)?),
            "retry" => t.retry = Some(self.int(n, 0, MAX_RETRY as u64)? as u32),
            "nb_get_retry" => {
                t.retry = Some(self.int(n, 0, MAX_RETRY as u64)? as u32);
                let w = format!(
                    "{}: nb_get_retry is deprecated - please use 'retry' (read as retry)",
                    self.place(n.loc)
                );
                self.warnings.push(w);
            }
            "alpha" => t.alpha = Some(self.flag(n)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}
