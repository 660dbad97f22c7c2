//! `vsd --keepalived FILE`: an unmodified keepalived.conf as the source of
//! vsd's virtual services and their health checks.
//!
//! **What.** keepalived's `virtual_server` blocks (address and port, or
//! fwmark), their real servers and every checker vsd implements become
//! [`ServiceConf`]s with [`crate::health::spec`] settings. The file's
//! `vrrp_*`, `static_*` and other blocks that `keepalived --vrrp` runs on
//! the same file are skipped; `global_defs` gives what vsd uses of it
//! (`script_user`, `checker_log_all_failures`). keepalived.conf has no
//! ports, lcores or EAL settings: those stay in the TOML file given with
//! `--config`, whose own `[[service]]`s are kept; the keepalived services
//! are added after them, and a service defined in both is refused.
//!
//! **Why.** Operators already have this file and keepalived cannot drive
//! vsd (it programs the kernel's IPVS); reading the same file keeps one
//! source of truth, and keepalived `--vrrp` keeps doing VRRP with it.
//!
//! **Parts.** [`lexer`] (files, `include` globs relative to the including
//! file, depth and cycle limits, comments, quotes, `$PARAM`, `@id`),
//! [`parse`] (the block tree), this module (the mapping).
//!
//! **Failure modes.** Every error names the file and line
//! (`FILE:LINE: message`). What would change forwarding and vsd cannot do
//! (virtual_server groups, SMTP/BFD/FILE checkers, the sip persistence
//! engine, GUE/GRE tunnels, `lvs_timeouts`, `lvs_sync_daemon`...) is
//! refused, never skipped. Keywords keepalived itself does not know are
//! skipped with a warning, as keepalived does (the seed tutorial's
//! `net_mask` is one).

pub mod lexer;
pub mod parse;
mod servers;
mod values;
mod virtual_server;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::control::config::{Config, ConfigError, SchedFlag, ServiceConf, ServiceKey};
use crate::lb::types::{AddrFamily, FwdMethod, Protocol};
use lexer::{Lexed, Loc};
use parse::Node;

/// Largest `local_address_group` range (`A.B.C.D-E`) expanded.
pub const MAX_LADDR_RANGE: u32 = 4096;

/// An error in a keepalived configuration: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KaError {
    pub file: String,
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for KaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for KaError {}

impl From<KaError> for ConfigError {
    fn from(e: KaError) -> ConfigError {
        ConfigError {
            file: e.file,
            line: e.line,
            col: 0,
            key: String::new(),
            message: e.message,
        }
    }
}

/// A file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What a keepalived.conf gives vsd.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepalivedConf {
    /// Its virtual servers, in file order, with where each was defined.
    pub services: Vec<(ServiceConf, Place)>,
    /// Things skipped that keepalived would warn about too, `FILE:LINE: ...`.
    pub warnings: Vec<String>,
    /// Every file read (the main one first, then its includes).
    pub files: Vec<String>,
}

/// keepalived's default config-id: the host name up to its first dot.
pub fn default_config_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_string))
        .unwrap_or_default()
}

/// Reads a keepalived.conf and everything it includes. `ports` are the
/// TOML's port names (a `local_address_group` entry may name one).
pub fn load(path: &Path, ports: &[String]) -> Result<KeepalivedConf, KaError> {
    let lx = lexer::lex_file(path, &default_config_id())?;
    from_lexed(lx, ports)
}

/// [`load`] on text (tests).
#[cfg(test)]
pub fn from_str(text: &str, name: &str, ports: &[String]) -> Result<KeepalivedConf, KaError> {
    from_lexed(lexer::lex_str(text, name, "")?, ports)
}

/// Adds the services of keepalived.conf `path` to `cfg` (the TOML's):
/// a service in both is refused. Sets `cfg.keepalived` and adds the
/// warnings to `cfg.warnings`.
pub fn merge_into(cfg: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let ports: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let ka = load(path, &ports)?;
    for (svc, place) in ka.services {
        if let Some(i) = cfg.services.iter().position(|s| s.key == svc.key) {
            return Err(ConfigError {
                file: place.file,
                line: place.line,
                col: 0,
                key: String::new(),
                message: format!(
                    "virtual_server {} is also service[{i}] of {}: define it in one file only",
                    describe(&svc.key),
                    cfg.source
                ),
            });
        }
        cfg.services.push(svc);
    }
    cfg.warnings.extend(ka.warnings);
    cfg.keepalived = Some(path.display().to_string());
    Ok(())
}

/// A service as keepalived.conf writes it: `198.18.0.100 80 (TCP)`, `fwmark 7`.
fn describe(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { proto, vip, port } => format!(
            "{vip} {port} ({})",
            if *proto == Protocol::Tcp {
                "TCP"
            } else {
                "UDP"
            }
        ),
        ServiceKey::Fwmark { mark, .. } => format!("fwmark {mark}"),
    }
}

fn from_lexed(lx: Lexed, ports: &[String]) -> Result<KeepalivedConf, KaError> {
    let tree = parse::parse(&lx)?;
    let mut m = Mapper {
        lx: &lx,
        ports,
        script_user: None,
        log_all_failures: false,
        laddr_groups: HashMap::new(),
        warnings: lx.warnings.clone(),
    };
    // global_defs and local_address_group first: virtual servers use them
    // wherever they appear
    for n in &tree {
        match n.keyword.as_str() {
            "global_defs" => m.global_defs(n)?,
            "local_address_group" => m.laddr_group(n)?,
            _ => {}
        }
    }
    let mut services: Vec<(ServiceConf, Place)> = Vec::new();
    for n in &tree {
        let kw = n.keyword.as_str();
        match kw {
            "global_defs" | "local_address_group" => {}
            "virtual_server" => {
                let Some(svc) = m.virtual_server(n)? else {
                    continue;
                };
                if let Some((_, first)) = services.iter().find(|(s, _)| s.key == svc.key) {
                    return Err(m.err(n, format!("duplicate virtual_server (first at {first})")));
                }
                services.push((svc, m.place(n.loc)));
            }
            "virtual_server_group" => {
                return Err(m.err(
                    n,
                    "virtual_server_group is not supported by vsd: write one virtual_server per address",
                ))
            }
            "SSL" => {
                if n.block.as_ref().is_some_and(|b| !b.is_empty()) {
                    return Err(m.err(
                        n,
                        "SSL { } (the SSL_GET client certificate and CA) is not supported by vsd",
                    ));
                }
            }
            _ if ignored_top_level(kw) => {}
            _ => m.warn(n, format!("unknown keyword '{kw}' ignored")),
        }
    }
    Ok(KeepalivedConf {
        services,
        warnings: m.warnings,
        files: lx.files.clone(),
    })
}

/// Top-level blocks that belong to keepalived's other processes (VRRP,
/// BFD) or to the host, and mean nothing to vsd.
fn ignored_top_level(kw: &str) -> bool {
    kw.starts_with("vrrp_")
        || kw.starts_with("static_")
        || matches!(
            kw,
            "linkbeat_interfaces"
                | "track_file"
                | "track_process"
                | "bfd_instance"
                | "garp_group"
                | "net_namespace"
                | "net_namespace_ipvs"
                | "namespace_with_ipsets"
                | "instance"
                | "use_pid_dir"
                | "unicast_peer"
        )
}

struct Mapper<'a> {
    lx: &'a Lexed,
    ports: &'a [String],
    /// `global_defs { script_user }`: the default user of scripts.
    script_user: Option<(String, Option<String>)>,
    /// `global_defs { checker_log_all_failures }`.
    log_all_failures: bool,
    /// DPVS's `local_address_group NAME { ... }`.
    laddr_groups: HashMap<String, Vec<IpAddr>>,
    warnings: Vec<String>,
}

/// A virtual server being read: what must be checked once the whole
/// block is known (the scheduler may follow its flags).
struct VsDraft {
    flags: Vec<(SchedFlag, Loc)>,
    granularity: Option<(String, Loc)>,
    laddr_group: Option<(String, Loc)>,
    ip_family: Option<AddrFamily>,
    protocol: Option<(Protocol, Loc)>,
    method: FwdMethod,
    sorry: Option<(IpAddr, Option<u16>, Loc)>,
    sorry_method: Option<FwdMethod>,
    sorry_inhibit: bool,
}

impl Mapper<'_> {
    fn global_defs(&mut self, n: &Node) -> Result<(), KaError> {
        for c in self.block(n)? {
            match c.keyword.as_str() {
                "script_user" => {
                    self.no_block(c)?;
                    self.script_user = match c.args.as_slice() {
                        [u] => Some((u.clone(), None)),
                        [u, g] => Some((u.clone(), Some(g.clone()))),
                        _ => return Err(self.err(c, "script_user takes a user and a group")),
                    };
                }
                "checker_log_all_failures" => self.log_all_failures = self.flag(c)?,
                "lvs_timeouts" => {
                    return Err(self.err(
                        c,
                        "lvs_timeouts is not read from keepalived.conf: set the timeouts with vsadm --set",
                    ))
                }
                "lvs_sync_daemon" => {
                    return Err(self.err(
                        c,
                        "lvs_sync_daemon is not supported: use [[sync_daemon]] in vsd's TOML",
                    ))
                }
                // the rest (router_id, notification e-mail, VRRP and
                // script security settings, lvs_flush...) has no meaning
                // for vsd's services
                _ => {}
            }
        }
        Ok(())
    }

    /// DPVS's `local_address_group NAME { IP [IFNAME] ; A.B.C.D-E [IFNAME] }`.
    fn laddr_group(&mut self, n: &Node) -> Result<(), KaError> {
        let name = self.one_arg_block(n)?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for e in self.block(n)? {
            self.no_block(e)?;
            match e.args.as_slice() {
                [] => {}
                [iface] => {
                    if !self.ports.iter().any(|p| p == iface) {
                        return Err(self.err(
                            e,
                            format!(
                                "{iface:?} is not a port of vsd's configuration (ports: {})",
                                self.ports.join(", ")
                            ),
                        ));
                    }
                }
                _ => return Err(self.err(e, "expected an address or range and a port name")),
            }
            for a in self.addr_range(e, &e.keyword)? {
                if addrs.contains(&a) {
                    return Err(self.err(e, format!("duplicate local address {a}")));
                }
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(self.err(n, format!("local_address_group {name} is empty")));
        }
        if self.laddr_groups.insert(name.to_string(), addrs).is_some() {
            return Err(self.err(n, format!("duplicate local_address_group {name}")));
        }
        Ok(())
    }

    fn one_arg_block<'n>(&self, n: &'n Node) -> Result<&'n str, KaError> {
        match n.args.as_slice() {
            [a] => Ok(a),
            _ => Err(self.err(n, format!("{} takes one name", n.keyword))),
        }
    }

    /// `198.18.0.1` or `198.18.0.1-10` (the last byte, or the last 16 bits
    /// of an IPv6 address, as keepalived writes ranges).
    fn addr_range(&self, n: &Node, text: &str) -> Result<Vec<IpAddr>, KaError> {
        let Some((first, last)) = text.split_once('-') else {
            return Ok(vec![self.ip(n, text)?]);
        };
        let first = self.ip(n, first)?;
        let bad = || self.err(n, format!("invalid address range {text:?}"));
        let out: Vec<IpAddr> = match first {
            IpAddr::V4(a) => {
                let end: u8 = last.parse().map_err(|_| bad())?;
                let o = a.octets();
                if end < o[3] {
                    return Err(bad());
                }
                (o[3]..=end)
                    .map(|b| IpAddr::from([o[0], o[1], o[2], b]))
                    .collect()
            }
            IpAddr::V6(a) => {
                let end = u16::from_str_radix(last, 16).map_err(|_| bad())?;
                let s = a.segments();
                if end < s[7] || u32::from(end - s[7]) >= MAX_LADDR_RANGE {
                    return Err(bad());
                }
                (s[7]..=end)
                    .map(|x| {
                        let mut seg = s;
                        seg[7] = x;
                        IpAddr::from(seg)
                    })
                    .collect()
            }
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::spec::{
        CheckKind, DnsCheck, DnsType, EffectiveTiming, HttpProtocol, MiscCheck, SorryServer,
        UdpCheck,
    };
    use crate::lb::types::SchedulerKind;
    use std::time::Duration;

    fn ports() -> Vec<String> {
        vec!["lan0".into()]
    }

    fn services(text: &str) -> Vec<ServiceConf> {
        match from_str(text, "k.conf", &ports()) {
            Ok(k) => k.services.into_iter().map(|(s, _)| s).collect(),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn error(text: &str) -> String {
        match from_str(text, "k.conf", &ports()) {
            Ok(k) => panic!("expected an error, got {:?}", k.services),
            Err(e) => e.to_string(),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn fnat_ipv4_real_servers_of_an_ipv6_virtual_server_are_nat64() {
        let k = from_str(
            "local_address_group v4 {\n 198.18.1.200\n}\n\
             virtual_server 2001:2::64 80 {\n protocol TCP\n lb_kind FNAT\n\
             laddr_group_name v4\n real_server 198.18.1.11 8080 {\n }\n}\n\
             virtual_server 198.18.0.100 80 {\n protocol TCP\n lb_kind FNAT\n\
             real_server 2001:2::11 8080 {\n }\n}\n",
            "k.conf",
            &ports(),
        )
        .unwrap();
        let nat64 = &k.services[0].0;
        assert_eq!(nat64.real_servers.len(), 1);
        assert_eq!(nat64.real_servers[0].method, FwdMethod::FullNat);
        assert_eq!(
            nat64.local_addresses,
            ["198.18.1.200".parse::<IpAddr>().unwrap()]
        );
        // IPv4 clients to IPv6 servers: skipped, as keepalived does
        assert!(k.services.iter().all(|(s, _)| s.real_servers.len() == 1));
        assert!(k
            .warnings
            .iter()
            .any(|w| w.contains("2001:2::11 don't match")));
    }

    #[test]
    fn virtual_server_options() {
        let s = services(
            "global_defs {\n router_id X\n script_user nobody nogroup\n checker_log_all_failures\n}\n\
             vrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n 198.18.0.100/24\n }\n}\n\
             virtual_server 198.18.0.100 80 {\n delay_loop 6\n lb_algo sh\n sh-port\n lb_kind DR\n\
             persistence_timeout\n persistence_granularity 255.255.255.0\n protocol TCP\n\
             quorum 2\n hysteresis 1\n quorum_up \"/bin/up now\"\n quorum_down /bin/down root\n\
             alpha\n omega\n inhibit_on_failure\n virtualhost www.example\n\
             sorry_server 198.18.0.50 80\n sorry_server_inhibit\n connect_timeout 2.5\n\
             real_server 198.18.1.1 80 {\n weight 3\n uthreshold 100\n lthreshold 10\n\
             notify_up /bin/rs-up\n TCP_CHECK {\n connect_port 8080\n }\n }\n}\n\
             virtual_server fwmark 7 {\n lvs_sched rr\n ops\n persistence_timeout 60\n\
             real_server 198.18.1.2 8080 {\n lvs_method NAT\n }\n}\n\
             virtual_server 198.18.0.101 53 {\n protocol UDP\n ops\n lb_kind TUN type ipip\n\
             real_server 198.18.1.3 53 {\n weight 0\n }\n}\n",
        );
        assert_eq!(s.len(), 3);
        let a = &s[0];
        assert_eq!(
            a.key,
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                vip: "198.18.0.100".parse().unwrap(),
                port: 80
            }
        );
        assert_eq!(a.scheduler, SchedulerKind::Sh);
        assert_eq!(a.flags, vec![SchedFlag::ShPort]);
        assert_eq!(a.persistence_timeout, Some(360));
        assert_eq!(a.netmask, Some(24));
        let h = &a.health;
        assert_eq!(h.timing.delay_loop, Some(secs(6)));
        assert_eq!(h.timing.connect_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(h.timing.alpha, Some(true));
        assert!(h.omega && h.inhibit_on_failure);
        assert_eq!((h.quorum, h.hysteresis), (2, 1));
        let up = h.quorum_up.as_ref().unwrap();
        // the global script_user applies to scripts without a user
        assert_eq!(
            (up.command.as_str(), up.user.as_deref(), up.group.as_deref()),
            ("/bin/up now", Some("nobody"), Some("nogroup"))
        );
        let down = h.quorum_down.as_ref().unwrap();
        assert_eq!(
            (down.user.as_deref(), down.group.as_deref()),
            (Some("root"), None)
        );
        assert_eq!(h.virtualhost.as_deref(), Some("www.example"));
        assert_eq!(
            h.sorry_server,
            Some(SorryServer {
                addr: "198.18.0.50".parse().unwrap(),
                port: Some(80),
                method: Some(FwdMethod::Route),
                inhibit: true
            })
        );
        let rs = &a.real_servers[0];
        assert_eq!(
            (rs.weight, rs.method, rs.upper_threshold, rs.lower_threshold),
            (3, FwdMethod::Route, 100, 10)
        );
        assert_eq!(rs.health.notify_up.as_ref().unwrap().command, "/bin/rs-up");
        let chk = &rs.health.checkers[0];
        assert_eq!(
            (chk.kind.clone(), chk.connect_port),
            (CheckKind::Tcp, Some(8080))
        );
        assert!(chk.log_all_failures, "global checker_log_all_failures");

        let b = &s[1];
        assert_eq!(
            b.key,
            ServiceKey::Fwmark {
                mark: 7,
                family: AddrFamily::Inet
            }
        );
        assert!(b.one_packet);
        assert_eq!(b.scheduler, SchedulerKind::Rr);
        assert_eq!(
            (b.real_servers[0].port, b.real_servers[0].method),
            (8080, FwdMethod::Masq)
        );
        let c = &s[2];
        assert!(matches!(
            c.key,
            ServiceKey::Addr {
                proto: Protocol::Udp,
                port: 53,
                ..
            }
        ));
        assert_eq!(c.scheduler, SchedulerKind::Wlc, "keepalived's default");
        assert_eq!(
            (c.real_servers[0].method, c.real_servers[0].weight),
            (FwdMethod::Tunnel, 0)
        );
    }

    #[test]
    fn every_checker_and_timing_inheritance() {
        let s = services(
            "virtual_server 198.18.0.100 80 {\n delay_loop 10\n retry 5\n\
             real_server 198.18.1.1 80 {\n delay_before_retry 2\n alpha false\n virtualhost rs.example\n\
             HTTP_GET {\n url {\n path /health\n status_code 200-299 404\n\
             digest 9b3a0c85a887a256d6939da88aabd8cd\n virtualhost u.example\n }\n\
             url {\n path /\n }\n connect_timeout 3\n nb_get_retry 3\n http_protocol 1.1\n fast_recovery\n }\n\
             SSL_GET {\n url {\n path /\n }\n enable_sni\n connect_ip 198.18.1.9\n bindto 198.18.0.1\n bind_port 4000\n }\n\
             MISC_CHECK {\n misc_path \"/usr/bin/check --x 1\"\n misc_timeout 4\n misc_dynamic\n user nobody nogroup\n }\n\
             DNS_CHECK {\n type AAAA\n name example.org\n }\n\
             UDP_CHECK {\n payload Ab12f 3\n require_reply 0X\n min_reply_length 1\n max_reply_length 100\n }\n\
             PING_CHECK {\n bind_if lan0\n fwmark 9\n warmup 0\n }\n\
             TCP_CHECK {\n alpha\n delay_loop 1.5\n log_all_failures on\n }\n\
             }\n}\n",
        );
        let svc = &s[0];
        let rs = &svc.real_servers[0];
        let ch = &rs.health.checkers;
        assert_eq!(ch.len(), 7);
        let CheckKind::Http(h) = &ch[0].kind else {
            panic!("{:?}", ch[0].kind)
        };
        assert_eq!(h.urls.len(), 2);
        assert_eq!(h.urls[0].status, vec![(200, 299), (404, 404)]);
        assert_eq!(h.urls[0].digest.unwrap()[15], 0xcd);
        assert_eq!(h.urls[0].virtualhost.as_deref(), Some("u.example"));
        assert!(h.urls[1].status.is_empty());
        assert_eq!(h.protocol, HttpProtocol::V11);
        assert!(h.fast_recovery);
        assert_eq!(ch[0].timing.retry, Some(3), "nb_get_retry is retry");
        let CheckKind::Ssl(sl) = &ch[1].kind else {
            panic!()
        };
        assert!(sl.enable_sni);
        assert_eq!(ch[1].connect_ip, Some("198.18.1.9".parse().unwrap()));
        assert_eq!(ch[1].bindto, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(ch[1].bind_port, Some(4000));
        assert_eq!(
            ch[2].kind,
            CheckKind::Misc(MiscCheck {
                path: "/usr/bin/check --x 1".into(),
                timeout: Some(secs(4)),
                dynamic: true,
                user: Some("nobody".into()),
                group: Some("nogroup".into())
            })
        );
        assert_eq!(
            ch[3].kind,
            CheckKind::Dns(DnsCheck {
                qtype: DnsType::Aaaa,
                name: "example.org".into()
            })
        );
        assert_eq!(
            ch[4].kind,
            CheckKind::Udp(UdpCheck {
                payload: Some(vec![0xab, 0x12, 0x0f, 0x03]),
                require_reply: Some(vec![Some(0), None]),
                min_reply_length: 1,
                max_reply_length: 100
            })
        );
        assert_eq!(ch[5].kind, CheckKind::Ping);
        assert_eq!(
            (ch[5].bind_if.as_deref(), ch[5].fwmark),
            (Some("lan0"), Some(9))
        );
        assert!(ch[6].log_all_failures);

        // keepalived's inheritance: checker, then real server, then virtual server
        let t = |i: usize| {
            EffectiveTiming::resolve(
                &ch[i].kind,
                &ch[i].timing,
                &rs.health.timing,
                &svc.health.timing,
            )
        };
        let http = t(0);
        assert_eq!(
            (
                http.retry,
                http.connect_timeout,
                http.delay_before_retry,
                http.delay_loop,
                http.starts_down
            ),
            (3, secs(3), secs(2), secs(10), false)
        );
        let dns = t(3);
        assert_eq!((dns.retry, dns.delay_before_retry), (5, secs(2)));
        assert_eq!(t(5).warmup, secs(0));
        let tcp = t(6);
        assert_eq!(
            (tcp.delay_loop, tcp.starts_down, tcp.warmup),
            (
                Duration::from_millis(1500),
                true,
                Duration::from_millis(1500)
            )
        );
    }

    #[test]
    fn persistence_as_keepalived_sets_it() {
        // a granularity alone makes the service persistent (6 minutes);
        // persistence_timeout 0 leaves it not persistent
        let s = services(
            "virtual_server 198.18.0.1 0 {\n persistence_granularity 24\n real_server 198.18.1.1\n}\n\
             virtual_server 198.18.0.2 80 {\n persistence_timeout 0\n real_server 198.18.1.1\n}\n\
             virtual_server 198.18.0.3 80 {\n persistence_timeout 50\n persistence_granularity 255.255.0.0\n real_server 198.18.1.1\n}\n",
        );
        assert_eq!(
            (s[0].persistence_timeout, s[0].netmask),
            (Some(360), Some(24))
        );
        assert_eq!((s[1].persistence_timeout, s[1].netmask), (None, None));
        assert_eq!(
            (s[2].persistence_timeout, s[2].netmask),
            (Some(50), Some(16))
        );
        assert_eq!(
            error("virtual_server 198.18.0.1 80 {\n persistence_granularity 255.0.255.0\n}\n"),
            "k.conf:2: invalid persistence_granularity \"255.0.255.0\": expected a contiguous netmask like 255.255.255.0 or a prefix length"
        );
    }

    #[test]
    fn fnat_takes_dpvs_local_address_groups() {
        let s = services(
            "local_address_group laddr_g1 {\n 198.18.2.1-3 lan0\n 198.18.2.10\n}\n\
             virtual_server 198.18.0.100 80 {\n protocol TCP\n lb_kind FNAT\n laddr_group_name laddr_g1\n syn_proxy\n\
             real_server 198.18.1.1 8080 {\n }\n}\n",
        );
        assert_eq!(
            s[0].local_addresses,
            ["198.18.2.1", "198.18.2.2", "198.18.2.3", "198.18.2.10"]
                .iter()
                .map(|a| a.parse::<IpAddr>().unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(s[0].real_servers[0].method, FwdMethod::FullNat);
        assert!(s[0].synproxy);
        assert_eq!(
            error("virtual_server 198.18.0.100 80 {\n lb_kind FNAT\n real_server 198.18.1.1 80 {\n }\n}\n"),
            "k.conf:3: FNAT to 198.18.1.1 needs local addresses of its family: laddr_group_name NAME and local_address_group NAME { ... }"
        );
        assert_eq!(
            error("local_address_group g {\n 198.18.2.1 eth9\n}\n"),
            "k.conf:2: \"eth9\" is not a port of vsd's configuration (ports: lan0)"
        );
    }

    #[test]
    fn refused_and_ignored() {
        for (text, want) in [
            ("virtual_server group G {\n}\n", "k.conf:1: virtual_server group is not supported by vsd: write one virtual_server per address"),
            ("virtual_server_group G {\n 198.18.0.1 80\n}\n", "k.conf:1: virtual_server_group is not supported by vsd: write one virtual_server per address"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  SMTP_CHECK {\n  }\n }\n}\n", "k.conf:3: SMTP_CHECK is not supported by vsd (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, DNS_CHECK, UDP_CHECK and PING_CHECK are)"),
            ("virtual_server 198.18.0.1 80 {\n persistence_engine sip\n}\n", "k.conf:2: persistence_engine (sip) is not supported by vsd"),
            ("virtual_server 198.18.0.1 80 {\n lb_kind TUN type gue port 6080\n}\n", "k.conf:2: lb_kind TUN type gue port 6080: vsd tunnels with IPIP only (no GUE or GRE)"),
            ("virtual_server 198.18.0.1 80 {\n lb_kind XX\n}\n", "k.conf:2: unknown lb_kind \"XX\": expected NAT, DR, TUN or FNAT"),
            ("virtual_server 198.18.0.1 80 {\n lb_algo nope\n}\n", "k.conf:2: unknown scheduler \"nope\": expected one of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos"),
            ("virtual_server 198.18.0.1 80 {\n protocol SCTP\n}\n", "k.conf:2: protocol SCTP is not supported by vsd"),
            ("virtual_server 198.18.0.1 80 {\n sh-port\n}\n", "k.conf:2: sh-port needs lvs_sched sh, not wlc"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  weight 70000\n }\n}\n", "k.conf:3: weight \"70000\": expected an integer 0..=65535"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 299-200\n   }\n  }\n }\n}\n", "k.conf:6: invalid status code range \"299-200\": 299 > 200"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    digest 1234\n   }\n  }\n }\n}\n", "k.conf:6: invalid digest \"1234\": expected an MD5 as 32 hex digits"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    regex ok\n   }\n  }\n }\n}\n", "k.conf:6: regex is not supported by vsd (status_code and digest are)"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  MISC_CHECK {\n   misc_timeout 3\n  }\n }\n}\n", "k.conf:3: MISC_CHECK needs misc_path"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  TCP_CHECK {\n   connect_timeout -3\n  }\n }\n}\n", "k.conf:4: connect_timeout: -3 is not a duration: expected seconds >= 0"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  TCP_CHECK {\n   delay_loop 99999999\n  }\n }\n}\n", "k.conf:4: delay_loop: 99999999 seconds out of range: at most 86400 (one day)"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80 {\n  HTTP_GET {\n   url {\n    path / status_code 200\n   }\n  }\n }\n}\n", "k.conf:5: path takes one value, got 3 (/ status_code 200); quote a value with spaces"),
            ("global_defs {\n lvs_sync_daemon eth0 VI_1\n}\n", "k.conf:2: lvs_sync_daemon is not supported: use [[sync_daemon]] in vsd's TOML"),
            ("virtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80\n}\nvirtual_server 198.18.0.1 80 {\n real_server 198.18.1.1 80\n}\n", "k.conf:4: duplicate virtual_server (first at k.conf:1)"),
        ] {
            assert_eq!(error(text), want, "for {text}");
        }
        // VRRP, static routes, BFD...: keepalived's other processes, skipped
        // silently; unknown keywords warned about and skipped, as keepalived does
        let k = from_str(
            "vrrp_script chk {\n script /bin/true\n}\nvrrp_sync_group G {\n group {\n VI_1\n }\n}\n\
             static_routes {\n 198.18.5.0/24 via 198.18.0.2\n}\nbfd_instance b {\n}\n\
             virtual_server 198.18.0.1 80 {\n net_mask 255.255.255.0\n real_server 198.18.1.1 80 {\n  frobnicate 1\n }\n protocol TCP\n}\n\
             whatever {\n}\n",
            "k.conf",
            &ports(),
        )
        .unwrap();
        assert_eq!(k.services.len(), 1);
        assert_eq!(
            k.warnings,
            vec![
                "k.conf:15: unknown keyword 'net_mask' in virtual_server ignored (keepalived ignores it too)",
                "k.conf:17: unknown keyword 'frobnicate' in real_server ignored (keepalived ignores it too)",
                "k.conf:21: unknown keyword 'whatever' ignored (keepalived ignores it too)",
            ]
        );
    }

    #[test]
    fn what_keepalived_accepts_with_a_warning_loads_the_same_way() {
        // checked against keepalived 2.2.7 --config-test: a real_server
        // without a block, an HTTP_GET without url (dropped), connection
        // options of MISC_CHECK (no use)
        let k = from_str(
            "virtual_server 198.18.0.1 80 {\n protocol TCP\n real_server 198.18.1.2 80\n\
             real_server 198.18.1.1 80 {\n  HTTP_GET {\n  }\n  MISC_CHECK {\n   connect_port 80\n   misc_path /bin/true\n  }\n }\n}\n",
            "k.conf",
            &ports(),
        )
        .unwrap();
        let s = &k.services[0].0;
        assert_eq!(s.real_servers.len(), 2);
        assert!(s.real_servers[0].health.checkers.is_empty());
        let ch = &s.real_servers[1].health.checkers;
        assert_eq!(ch.len(), 1);
        assert!(matches!(ch[0].kind, CheckKind::Misc(_)));
        assert_eq!(ch[0].connect_port, None);
        assert_eq!(
            k.warnings,
            vec![
                "k.conf:5: HTTP_GET checker has no urls specified - ignoring (keepalived ignores it too)",
                "k.conf:8: connect_port does not apply to MISC_CHECK: ignored (keepalived ignores it too)",
            ]
        );
    }

    #[test]
    fn keepalived_own_corrections_are_applied_and_reported() {
        // validate_check_config() of keepalived 2.2: what it corrects with a
        // warning, vsd corrects the same way
        let k = from_str(
            "virtual_server 198.18.0.1 80 {\n\
             ops\n\
             lb_kind DR\n\
             quorum 10\n\
             hysteresis 5\n\
             sorry_server 198.18.9.9 8080\n\
             real_server 198.18.1.1 8080 {\n  weight 2\n  TCP_CHECK {\n  }\n  MISC_CHECK {\n   misc_path /bin/true\n  }\n }\n\
             real_server 198.18.1.1 80\n\
             real_server 2001:db8::1 80\n\
             real_server 198.18.1.2 80 {\n  weight 1\n }\n\
             }\n\
             virtual_server 198.18.0.2 0 {\n protocol TCP\n sorry_server 2001:db8::9 80\n real_server 198.18.1.1\n}\n\
             virtual_server fwmark 5 {\n protocol TCP\n lb_kind DR\n real_server 198.18.1.1 443 {\n  TCP_CHECK {\n  }\n }\n}\n\
             virtual_server 198.18.0.3 80 {\n protocol TCP\n}\n",
            "k.conf",
            &ports(),
        )
        .unwrap();
        let s: Vec<&ServiceConf> = k.services.iter().map(|(s, _)| s).collect();
        assert_eq!(s.len(), 3, "the service without real servers is dropped");
        let a = s[0];
        assert!(matches!(
            a.key,
            ServiceKey::Addr {
                proto: Protocol::Udp,
                ..
            }
        ));
        assert!(a.one_packet, "UDP keeps ops");
        let rs: Vec<(String, u16)> = a
            .real_servers
            .iter()
            .map(|r| (r.address.to_string(), r.port))
            .collect();
        assert_eq!(
            rs,
            [
                ("198.18.1.1".to_string(), 80),
                ("198.18.1.2".to_string(), 80)
            ]
        );
        // DR forwards to the service port; the checker still connects to 8080
        let ch = &a.real_servers[0].health.checkers;
        assert_eq!((ch[0].connect_port, ch[1].connect_port), (Some(8080), None));
        assert_eq!((a.health.quorum, a.health.hysteresis), (3, 2));
        assert_eq!(a.health.sorry_server.as_ref().unwrap().port, Some(80));
        let b = s[1];
        assert_eq!(b.persistence_timeout, Some(360));
        assert!(b.health.sorry_server.is_none());
        let c = s[2];
        assert_eq!(c.real_servers[0].port, 0);
        assert_eq!(c.real_servers[0].health.checkers[0].connect_port, Some(443));
        let w: Vec<String> = k
            .warnings
            .iter()
            .map(|w| {
                w.trim_end_matches(" (keepalived does the same)")
                    .to_string()
            })
            .collect();
        assert_eq!(
            w,
            [
                "k.conf:1: no protocol set - defaulting to UDP",
                "k.conf:7: virtual server and real server 198.18.1.1 ports don't match - resetting",
                "k.conf:15: real server 198.18.1.1 80 is duplicated - removing second rs",
                "k.conf:16: address family of virtual server and real server 2001:db8::1 don't match - skipping real server",
                "k.conf:4: quorum 10 exceeds total weight of real servers 3, reducing quorum to 3",
                "k.conf:5: hysteresis 5 >= quorum 3; setting hysteresis to 2",
                "k.conf:21: zero port only valid for persistent services - setting",
                "k.conf:23: address family of virtual server and sorry server 2001:db8::9 don't match - skipping sorry server",
                "k.conf:27: protocol specified for fwmark - protocol will be ignored",
                "k.conf:29: fwmark virtual server, real server 198.18.1.1 has port specified - clearing",
                "k.conf:34: virtual server has no real servers - ignoring",
            ]
        );
        // ops on TCP is reset
        let k = from_str(
            "virtual_server 198.18.0.1 80 {\n protocol TCP\n ops\n real_server 198.18.1.1 80\n}\n",
            "k.conf",
            &ports(),
        )
        .unwrap();
        assert!(!k.services[0].0.one_packet);
        assert_eq!(
            k.warnings,
            ["k.conf:1: one packet scheduling requires UDP - resetting (keepalived does the same)"]
        );
    }

    /// Hostile input: mutations of a full configuration give a clear error
    /// or a configuration, never a panic.
    #[test]
    fn mutated_configurations_never_panic() {
        let seed = include_str!("../../../configs/keepalived-seed.conf").to_string()
            + "virtual_server fwmark 3 {\n lb_kind NAT\n real_server 198.18.1.1 80 {\n\
               UDP_CHECK {\n payload 0a0b\n require_reply XX\n }\n\
               MISC_CHECK {\n misc_path \"/bin/true x\"\n user nobody\n }\n\
               DNS_CHECK {\n type A\n name a.b\n }\n }\n}\n$P=1\n@x a\n";
        let alphabet: &[u8] = b"{}\"#!$@\n 0123456789.-_abcXZ:/\\";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut outcomes = (0, 0);
        for _ in 0..3000 {
            let mut bytes = seed.clone().into_bytes();
            for _ in 0..(1 + next() % 4) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() % bytes.len() as u64) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = c,
                    1 => bytes.insert(at, c),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match from_str(&text, "fuzz.conf", &ports()) {
                Ok(_) => outcomes.0 += 1,
                Err(e) => {
                    assert!(e.to_string().starts_with("fuzz.conf"), "{e}");
                    outcomes.1 += 1;
                }
            }
        }
        // both outcomes happen: the mutations reach the mapping
        assert!(outcomes.0 > 100 && outcomes.1 > 100, "{outcomes:?}");
    }

    /// A scratch directory removed on drop.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("vsd-ka-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
            let p = self.0.join(name);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn includes_globs_nesting_cycles_and_places() {
        let d = Scratch::new("inc");
        let main = d.write(
            "keepalived.conf",
            "global_defs {\n router_id A\n}\ninclude conf.d/*.conf\ninclude none/*.conf\n",
        );
        d.write(
            "conf.d/a.conf",
            "virtual_server 198.18.0.1 80 {\n protocol TCP\n include ../servers/rs.inc\n}\n",
        );
        d.write(
            "conf.d/b.conf",
            "virtual_server 198.18.0.2 80 {\n protocol TCP\n real_server 198.18.1.2 80\n}\n",
        );
        d.write("conf.d/.hidden.conf", "this is not read {\n");
        d.write("conf.d/c.txt", "neither {\n");
        d.write(
            "servers/rs.inc",
            "real_server 198.18.1.1 80 {\n weight 7\n}\n",
        );
        let k = load(&main, &ports()).unwrap();
        let keys: Vec<u16> = k
            .services
            .iter()
            .map(|(s, _)| match s.key {
                ServiceKey::Addr {
                    vip: IpAddr::V4(v), ..
                } => u16::from(v.octets()[3]),
                _ => 0,
            })
            .collect();
        assert_eq!(
            keys,
            vec![1, 2],
            "glob results sorted, hidden files skipped"
        );
        assert_eq!(k.services[0].0.real_servers[0].weight, 7);
        let place = k.services[0].1.to_string();
        assert!(place.ends_with("conf.d/a.conf:1"), "{place}");
        assert_eq!(k.files.len(), 4);
        assert_eq!(k.warnings.len(), 1);
        assert!(
            k.warnings[0].ends_with("keepalived.conf:5: include \"none/*.conf\" matches no file"),
            "{:?}",
            k.warnings
        );

        // an error in an included file names that file and its line
        d.write(
            "servers/rs.inc",
            "real_server 198.18.1.1 80 {\n weight x\n}\n",
        );
        let e = load(&main, &ports()).unwrap_err().to_string();
        assert!(
            e.ends_with("servers/rs.inc:2: weight \"x\": expected an integer 0..=65535"),
            "{e}"
        );

        // a missing file, a cycle, too deep
        let m2 = d.write("missing.conf", "include nothere.conf\n");
        let e = load(&m2, &ports()).unwrap_err().to_string();
        assert!(
            e.contains("missing.conf:1: cannot open") && e.contains("nothere.conf"),
            "{e}"
        );
        let c1 = d.write("cycle1.conf", "include cycle2.conf\n");
        d.write("cycle2.conf", "\ninclude cycle1.conf\n");
        let e = load(&c1, &ports()).unwrap_err().to_string();
        assert!(e.contains("cycle2.conf:2: include cycle:"), "{e}");
        for i in 0..12 {
            d.write(
                &format!("deep{i}.conf"),
                &format!("include deep{}.conf\n", i + 1),
            );
        }
        d.write("deep12.conf", "");
        let e = load(&d.0.join("deep0.conf"), &ports())
            .unwrap_err()
            .to_string();
        assert!(e.contains("includes nested deeper than 8"), "{e}");
    }

    #[test]
    fn merged_with_the_toml_and_duplicates_refused() {
        let d = Scratch::new("merge");
        let toml = d.write(
            "base.toml",
            "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"198.18.0.1/24\"]\n\
             [[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n",
        );
        let ka = d.write(
            "k.conf",
            "virtual_server 198.18.0.100 443 {\n real_server 198.18.1.1 443 {\n }\n}\n",
        );
        let cfg = Config::load(&toml, Some(&ka)).unwrap();
        assert_eq!(cfg.services.len(), 2);
        assert_eq!(cfg.services[1].key.port(), 443);
        assert_eq!(
            cfg.keepalived.as_deref(),
            Some(ka.display().to_string().as_str())
        );
        assert_eq!(cfg.reread().unwrap(), cfg);
        let dup = d.write(
            "dup.conf",
            "\nvirtual_server 198.18.0.100 80 {\n protocol TCP\n real_server 198.18.1.1 80\n}\n",
        );
        let e = Config::load(&toml, Some(&dup)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2: virtual_server 198.18.0.100 80 (TCP) is also service[0] of {}: define it in one file only",
                dup.display(),
                toml.display()
            )
        );
    }
}
