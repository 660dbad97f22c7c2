//! What to check and how a pool reacts: keepalived's `virtual_server` /
//! `real_server` / checker settings as plain data.
//!
//! Both configuration front ends produce these types: vsd's TOML
//! (`[service.health]`, `[[service.real_server.check]]`) and `vsd
//! --keepalived FILE` (an unmodified keepalived.conf). The checker engine
//! ([`super`]) consumes [`CheckTarget`]s built from them, the pool logic
//! consumes [`ServiceHealth`] and [`ServerHealth`].
//!
//! keepalived lets timing settings be given on the virtual server, the real
//! server or the checker, the most specific winning, with defaults that
//! depend on the checker type. [`CheckerTiming`] holds what one level said;
//! [`EffectiveTiming::resolve`] applies keepalived's inheritance and
//! defaults in one place so the two front ends cannot disagree.

use std::net::IpAddr;
use std::time::Duration;

use crate::lb::types::FwdMethod;

/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Timing settings as one level (service, server or checker) gave them;
/// `None` inherits from the level above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckerTiming {
    /// `connect_timeout`: how long one attempt may take in all.
    pub connect_timeout: Option<Duration>,
    /// `retry` (or the deprecated `nb_get_retry`): extra attempts after a
    /// failure before a server that was up is declared down.
    pub retry: Option<u32>,
    /// `delay_before_retry`.
    pub delay_before_retry: Option<Duration>,
    /// `delay_loop`: the period between checks.
    pub delay_loop: Option<Duration>,
    /// `warmup`: the first check starts after a random delay up to this
    /// (default: up to `delay_loop`; zero disables).
    pub warmup: Option<Duration>,
    /// `alpha`: start in the failed state until a check succeeds.
    pub alpha: Option<bool>,
}

/// Timing of one checker after keepalived's inheritance and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTiming {
    pub connect_timeout: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
    pub delay_loop: Duration,
    pub warmup: Duration,
    /// The checker starts down (alpha) rather than up.
    pub starts_down: bool,
}

impl EffectiveTiming {
    /// keepalived's rules: the checker's setting, else the real server's,
    /// else the virtual server's, else the checker type's default.
    pub fn resolve(
        kind: &CheckKind,
        checker: &CheckerTiming,
        server: &CheckerTiming,
        service: &CheckerTiming,
    ) -> EffectiveTiming {
        let levels = [checker, server, service];
        fn pick<T: Copy>(
            levels: &[&CheckerTiming; 3],
            f: impl Fn(&CheckerTiming) -> Option<T>,
        ) -> Option<T> {
            levels.iter().find_map(|l| f(l))
        }
        let delay_loop = pick(&levels, |l| l.delay_loop).unwrap_or(DEFAULT_DELAY_LOOP);
        let default_retry = match kind {
            CheckKind::Dns(_) => 3,
            CheckKind::Misc(_) => 0,
            _ => 1,
        };
        let default_delay_before_retry = match kind {
            CheckKind::Dns(_) => delay_loop,
            CheckKind::Http(_) | CheckKind::Ssl(_) => Duration::from_secs(3),
            _ => Duration::from_secs(1),
        };
        EffectiveTiming {
            connect_timeout: pick(&levels, |l| l.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retry: pick(&levels, |l| l.retry).unwrap_or(default_retry),
            delay_before_retry: pick(&levels, |l| l.delay_before_retry)
                .unwrap_or(default_delay_before_retry),
            delay_loop,
            warmup: pick(&levels, |l| l.warmup).unwrap_or(delay_loop),
            starts_down: pick(&levels, |l| l.alpha).unwrap_or(false),
        }
    }

    /// keepalived's bound on detecting a dead server that was up: the
    /// check in progress finds it, then `retry` more attempts each after
    /// `delay_before_retry`, each taking up to `connect_timeout`.
    pub fn detection_bound(&self) -> Duration {
        self.delay_loop
            + self.connect_timeout * (self.retry + 1)
            + self.delay_before_retry * self.retry
    }
}

/// A program keepalived would run (`notify_up`, `quorum_down`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The command line, split like a shell would split a simple command
    /// (quotes allowed, no expansion).
    pub command: String,
    /// Run as this user (and group), when given.
    pub user: Option<String>,
    pub group: Option<String>,
}

/// `HTTP_GET` / `SSL_GET` `http_protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpProtocol {
    /// `1.0`: HTTP/1.0 without `Connection: close` (keepalived's default).
    #[default]
    V10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    V10Close,
    /// `1.1` (with `Connection: close`).
    V11,
}

/// One `url { }` of an HTTP_GET or SSL_GET checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// `path`.
    pub path: String,
    /// `status_code` ranges, inclusive; empty means 200-299.
    pub status: Vec<(u16, u16)>,
    /// `digest`: MD5 of the body (as keepalived's genhash prints it).
    pub digest: Option<[u8; 16]>,
    /// `virtualhost` of this URL.
    pub virtualhost: Option<String>,
}

impl UrlCheck {
    /// Whether `code` passes this URL's `status_code` list.
    pub fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() {
            return (200..=299).contains(&code);
        }
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// `HTTP_GET` / `SSL_GET`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCheck {
    pub urls: Vec<UrlCheck>,
    pub protocol: HttpProtocol,
    /// Checker-level `virtualhost`.
    pub virtualhost: Option<String>,
    /// `enable_sni` (SSL_GET).
    pub enable_sni: bool,
    /// `fast_recovery`: check every URL at once when recovering.
    pub fast_recovery: bool,
}

/// `MISC_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// `misc_path`: the command line.
    pub path: String,
    /// `misc_timeout` (default: `delay_loop`).
    pub timeout: Option<Duration>,
    /// `misc_dynamic`: exit codes 2..=255 set the weight to code - 2.
    pub dynamic: bool,
    /// `user USER [GROUP]`.
    pub user: Option<String>,
    pub group: Option<String>,
}

/// DNS query types `DNS_CHECK` may ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    #[default]
    Soa,
    Mx,
    Txt,
    Aaaa,
}

impl DnsType {
    pub fn parse(text: &str) -> Option<DnsType> {
        Some(match text.to_ascii_uppercase().as_str() {
            "A" => DnsType::A,
            "NS" => DnsType::Ns,
            "CNAME" => DnsType::Cname,
            "SOA" => DnsType::Soa,
            "MX" => DnsType::Mx,
            "TXT" => DnsType::Txt,
            "AAAA" => DnsType::Aaaa,
            _ => return None,
        })
    }
}

/// `DNS_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// `type` (default SOA).
    pub qtype: DnsType,
    /// `name` (default `.`).
    pub name: String,
}

/// One nibble of a `require_reply` pattern: a value, or `X` (any).
pub type HexNibble = Option<u8>;

/// `UDP_CHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCheck {
    /// `payload` (default: random bytes).
    pub payload: Option<Vec<u8>>,
    /// `require_reply`: `None` = no reply needed; `Some(empty)` = any
    /// reply; otherwise the reply must match these nibbles (up to the
    /// shorter length).
    pub require_reply: Option<Vec<HexNibble>>,
    /// `min_reply_length` (default 0).
    pub min_reply_length: u32,
    /// `max_reply_length` (default 255).
    pub max_reply_length: u32,
}

/// The checker types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http(HttpCheck),
    Ssl(HttpCheck),
    Misc(MiscCheck),
    Dns(DnsCheck),
    Udp(UdpCheck),
    Ping,
}

impl CheckKind {
    /// keepalived's block name.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Ssl(_) => "SSL_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
            CheckKind::Dns(_) => "DNS_CHECK",
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
        }
    }
}

/// One checker of a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerSpec {
    pub kind: CheckKind,
    /// `connect_ip` (default: the real server's address).
    pub connect_ip: Option<IpAddr>,
    /// `connect_port` (default: the real server's port).
    pub connect_port: Option<u16>,
    /// `bindto`: source address.
    pub bindto: Option<IpAddr>,
    /// `bind_port`: source port.
    pub bind_port: Option<u16>,
    /// `bind_if`: source interface.
    pub bind_if: Option<String>,
    /// `fwmark` set on the checker's packets.
    pub fwmark: Option<u32>,
    /// The checker's own timing settings.
    pub timing: CheckerTiming,
    /// `log_all_failures`.
    pub log_all_failures: bool,
}

impl CheckerSpec {
    /// A checker of `kind` with every option at its default.
    pub fn new(kind: CheckKind) -> CheckerSpec {
        CheckerSpec {
            kind,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            timing: CheckerTiming::default(),
            log_all_failures: false,
        }
    }
}

/// The `sorry_server` of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SorryServer {
    pub addr: IpAddr,
    /// Default: the service's port.
    pub port: Option<u16>,
    /// `sorry_server_lvs_method` (default: the service's `lb_kind`).
    pub method: Option<FwdMethod>,
    /// `sorry_server_inhibit`: kept at weight 0 instead of removed while
    /// the pool has quorum.
    pub inhibit: bool,
}

/// Passive checking (beyond keepalived): a real server whose new
/// connections die unanswered in SYN_RECV is marked down before the next
/// active check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveCheck {
    /// Unanswered SYN_RECV expiries within `window` that mark it down.
    pub syn_timeouts: u32,
    pub window: Duration,
}

/// Health settings of a virtual service (`virtual_server` level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// Timing defaults for every checker of the service (`delay_loop`,
    /// `connect_timeout`, `retry`, `delay_before_retry`, `warmup`, `alpha`).
    pub timing: CheckerTiming,
    /// `omega`: run the down notifiers on shutdown.
    pub omega: bool,
    /// `quorum`: the least total weight of live servers (default 1).
    pub quorum: u32,
    /// `hysteresis` (default 0).
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub sorry_server: Option<SorryServer>,
    /// `inhibit_on_failure` default for its servers.
    pub inhibit_on_failure: bool,
    /// `virtualhost` default for HTTP_GET/SSL_GET.
    pub virtualhost: Option<String>,
    /// Checkers every real server without its own gets (vsd's TOML only).
    pub default_checkers: Vec<CheckerSpec>,
    /// Passive checking; off by default.
    pub passive: Option<PassiveCheck>,
}

impl Default for ServiceHealth {
    fn default() -> ServiceHealth {
        ServiceHealth {
            timing: CheckerTiming::default(),
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            inhibit_on_failure: false,
            virtualhost: None,
            default_checkers: Vec::new(),
            passive: None,
        }
    }
}

/// Health settings of a real server (`real_server` level).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHealth {
    /// Its checkers; empty means the service's `default_checkers`, and a
    /// server with no checker at all is always up (as in keepalived).
    pub checkers: Vec<CheckerSpec>,
    pub timing: CheckerTiming,
    /// `inhibit_on_failure` (default: the service's).
    pub inhibit_on_failure: Option<bool>,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub virtualhost: Option<String>,
}

/// Identifies one checker of one real server across reloads: the same
/// service, server and checker settings give the same key, so an
/// unchanged checker keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckKey {
    /// The service as the config names it (`proto vip:port` or `fwmark N`).
    pub service: String,
    pub server: IpAddr,
    pub server_port: u16,
    /// Position among the server's checkers.
    pub index: usize,
}

/// Everything the engine needs to run one checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    pub key: CheckKey,
    /// Where to connect: `connect_ip`/`connect_port` or the server's.
    pub addr: IpAddr,
    pub port: u16,
    pub spec: CheckerSpec,
    pub timing: EffectiveTiming,
    /// `virtualhost` after inheritance (URL's wins over this at check time).
    pub virtualhost: Option<String>,
}

impl CheckTarget {
    /// Build the target for checker `index` of a server.
    pub fn new(
        key: CheckKey,
        spec: &CheckerSpec,
        server: &ServerHealth,
        service: &ServiceHealth,
    ) -> CheckTarget {
        let timing =
            EffectiveTiming::resolve(&spec.kind, &spec.timing, &server.timing, &service.timing);
        let checker_vhost = match &spec.kind {
            CheckKind::Http(h) | CheckKind::Ssl(h) => h.virtualhost.clone(),
            _ => None,
        };
        CheckTarget {
            addr: spec.connect_ip.unwrap_or(key.server),
            port: spec.connect_port.unwrap_or(key.server_port),
            virtualhost: checker_vhost
                .or_else(|| server.virtualhost.clone())
                .or_else(|| service.virtualhost.clone()),
            timing,
            spec: spec.clone(),
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn timing_follows_keepalived_inheritance_and_per_type_defaults() {
        let none = CheckerTiming::default();
        let t = EffectiveTiming::resolve(&CheckKind::Tcp, &none, &none, &none);
        assert_eq!(
            (
                t.connect_timeout,
                t.retry,
                t.delay_before_retry,
                t.delay_loop,
                t.warmup,
                t.starts_down
            ),
            (secs(5), 1, secs(1), secs(60), secs(60), false)
        );
        let http = CheckKind::Http(HttpCheck::default());
        assert_eq!(
            EffectiveTiming::resolve(&http, &none, &none, &none).delay_before_retry,
            secs(3)
        );
        let misc = CheckKind::Misc(MiscCheck {
            path: "/bin/true".into(),
            timeout: None,
            dynamic: false,
            user: None,
            group: None,
        });
        assert_eq!(
            EffectiveTiming::resolve(&misc, &none, &none, &none).retry,
            0
        );
        let dns = CheckKind::Dns(DnsCheck {
            qtype: DnsType::Soa,
            name: ".".into(),
        });
        let service = CheckerTiming {
            delay_loop: Some(secs(6)),
            ..Default::default()
        };
        let t = EffectiveTiming::resolve(&dns, &none, &none, &service);
        assert_eq!(
            (t.retry, t.delay_before_retry, t.warmup),
            (3, secs(6), secs(6))
        );
        // the most specific level wins
        let server = CheckerTiming {
            retry: Some(2),
            alpha: Some(true),
            ..Default::default()
        };
        let checker = CheckerTiming {
            retry: Some(4),
            ..Default::default()
        };
        let t = EffectiveTiming::resolve(&CheckKind::Tcp, &checker, &server, &service);
        assert_eq!((t.retry, t.starts_down, t.delay_loop), (4, true, secs(6)));
        assert_eq!(t.detection_bound(), secs(6) + secs(5) * 5 + secs(4));
    }

    #[test]
    fn status_codes_default_to_2xx_and_take_ranges() {
        let mut u = UrlCheck {
            path: "/".into(),
            status: vec![],
            digest: None,
            virtualhost: None,
        };
        assert!(u.status_ok(204) && !u.status_ok(301) && !u.status_ok(503));
        u.status = vec![(200, 200), (400, 499)];
        assert!(u.status_ok(200) && u.status_ok(404) && !u.status_ok(201));
    }

    #[test]
    fn targets_take_connect_overrides_and_the_nearest_virtualhost() {
        let mut spec = CheckerSpec::new(CheckKind::Http(HttpCheck::default()));
        spec.connect_port = Some(8080);
        let server = ServerHealth {
            virtualhost: Some("rs.example".into()),
            ..Default::default()
        };
        let service = ServiceHealth {
            virtualhost: Some("vs.example".into()),
            ..Default::default()
        };
        let key = CheckKey {
            service: "TCP 198.18.0.100:80".into(),
            server: "198.19.0.2".parse().unwrap(),
            server_port: 80,
            index: 0,
        };
        let t = CheckTarget::new(key, &spec, &server, &service);
        assert_eq!((t.addr, t.port), ("198.19.0.2".parse().unwrap(), 8080));
        assert_eq!(t.virtualhost.as_deref(), Some("rs.example"));
    }
}
