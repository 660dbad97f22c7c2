//! `[[service]]` and its real servers: the validated types and their builders.

use std::net::IpAddr;

use toml::Spanned;

use super::{health, narrow, ConfigError, Ctx, RawMark, RawNetmask, RawPorts, RawService, S};
use crate::lb::types::{AddrFamily, FwdMethod, Protocol, SchedulerKind};

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// `-t|-u VIP:PORT`.
    Addr {
        /// Transport protocol.
        proto: Protocol,
        /// Virtual IP.
        vip: IpAddr,
        /// Virtual port; 0 (any port) only with persistence.
        port: u16,
    },
    /// `-f MARK`.
    Fwmark {
        /// Firewall mark, > 0.
        mark: u32,
        /// Address family of the packets it matches.
        family: AddrFamily,
    },
}

impl ServiceKey {
    /// Address family of the service.
    pub fn family(&self) -> AddrFamily {
        match *self {
            ServiceKey::Addr { vip, .. } => AddrFamily::of(vip),
            ServiceKey::Fwmark { family, .. } => family,
        }
    }
    /// Virtual port, 0 for fwmark services.
    pub fn port(&self) -> u16 {
        match *self {
            ServiceKey::Addr { port, .. } => port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }
}

/// Scheduler flags (`-b`), as ipvsadm names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedFlag {
    /// `flag-1`.
    Flag1,
    /// `flag-2`.
    Flag2,
    /// `flag-3`.
    Flag3,
    /// `sh-fallback` (= flag-1, sh only).
    ShFallback,
    /// `sh-port` (= flag-2, sh only).
    ShPort,
    /// `mh-fallback` (= flag-1, mh only).
    MhFallback,
    /// `mh-port` (= flag-2, mh only).
    MhPort,
}

impl SchedFlag {
    /// Every flag name ipvsadm accepts.
    pub const ALL: [SchedFlag; 7] = [
        SchedFlag::Flag1,
        SchedFlag::Flag2,
        SchedFlag::Flag3,
        SchedFlag::ShFallback,
        SchedFlag::ShPort,
        SchedFlag::MhFallback,
        SchedFlag::MhPort,
    ];

    /// Name as ipvsadm spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedFlag::Flag1 => "flag-1",
            SchedFlag::Flag2 => "flag-2",
            SchedFlag::Flag3 => "flag-3",
            SchedFlag::ShFallback => "sh-fallback",
            SchedFlag::ShPort => "sh-port",
            SchedFlag::MhFallback => "mh-fallback",
            SchedFlag::MhPort => "mh-port",
        }
    }

    /// Looks a flag up by name.
    pub fn parse(name: &str) -> Option<SchedFlag> {
        SchedFlag::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The one scheduler a named flag belongs to (ipvsadm refuses it with others).
    pub fn scheduler(self) -> Option<SchedulerKind> {
        match self {
            SchedFlag::ShFallback | SchedFlag::ShPort => Some(SchedulerKind::Sh),
            SchedFlag::MhFallback | SchedFlag::MhPort => Some(SchedulerKind::Mh),
            _ => None,
        }
    }
}

/// `[[service]]`: a virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConf {
    /// Protocol, VIP and port, or firewall mark.
    pub key: ServiceKey,
    /// Scheduler (default wlc).
    pub scheduler: SchedulerKind,
    /// Persistence timeout in seconds (`-p`); `None` means not persistent.
    pub persistence_timeout: Option<u32>,
    /// Persistence granularity as a prefix length (`-M`); `None` means a full host mask.
    pub netmask: Option<u8>,
    /// Scheduler flags (`-b`).
    pub flags: Vec<SchedFlag>,
    /// One-packet scheduling (`-o`, UDP and fwmark only).
    pub one_packet: bool,
    /// SYN proxy with SYN cookies (IPv4 TCP, NAT/FULLNAT servers only).
    pub synproxy: bool,
    /// FULLNAT source addresses.
    pub local_addresses: Vec<IpAddr>,
    /// Real servers, in file order.
    pub real_servers: Vec<RealServerConf>,
    /// Health checking defaults, quorum and sorry server (see [`crate::health`]).
    pub health: crate::health::spec::ServiceHealth,
}

/// `[[service.real_server]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerConf {
    /// Real server address.
    pub address: IpAddr,
    /// Real server port; the service port when not given (0 for fwmark services).
    pub port: u16,
    /// Weight 0..=65535 (0: quiescent).
    pub weight: u32,
    /// Forwarding method (default: direct routing, as in ipvsadm).
    pub method: FwdMethod,
    /// Upper connection threshold (`-x`), 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub lower_threshold: u32,
    /// Its checkers and notify scripts (see [`crate::health`]); none: always up.
    pub health: crate::health::spec::ServerHealth,
}

pub(super) fn build_mark(
    ctx: &Ctx<'_>,
    i: usize,
    raw: &RawMark,
) -> Result<crate::lb::mark::MarkRule, ConfigError> {
    use crate::lb::mark::MarkRule;
    let k = |key: &str| format!("mark[{i}].{key}");
    let dst = match &raw.dst {
        Some(d) => MarkRule::parse_dst(d.get_ref()).map_err(|e| ctx.err(d.span(), k("dst"), e))?,
        None => (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
    };
    let proto = match &raw.proto {
        Some(p) => {
            Some(MarkRule::parse_proto(p.get_ref()).map_err(|e| ctx.err(p.span(), k("proto"), e))?)
        }
        None => None,
    };
    let dport = match &raw.dport {
        Some(d) => Some(match d.get_ref() {
            RawPorts::Port(n) => {
                let n =
                    narrow::<u16>(ctx.int(&Spanned::new(d.span(), *n), &k("dport"), 0, 65535)?);
                (n, n)
            }
            RawPorts::Text(t) => {
                MarkRule::parse_ports(t).map_err(|e| ctx.err(d.span(), k("dport"), e))?
            }
        }),
        None => None,
    };
    let mark = narrow::<u32>(ctx.int(&raw.mark, &k("mark"), 1, i64::from(u32::MAX))?);
    MarkRule::new(dst, proto, dport, mark).map_err(|e| ctx.err(raw.mark.span(), k("mark"), e))
}

pub(super) fn parse_method(name: &str) -> Option<FwdMethod> {
    match name {
        "nat" => Some(FwdMethod::Masq),
        "dr" => Some(FwdMethod::Route),
        "tun" => Some(FwdMethod::Tunnel),
        "fullnat" => Some(FwdMethod::FullNat),
        _ => None,
    }
}

/// Prefix length of a contiguous IPv4 netmask such as 255.255.255.0.
pub(crate) fn mask_prefix_len(mask: &str) -> Option<u8> {
    let mask: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then(|| narrow::<u8>(i64::from(len)))
}

pub(super) fn build_service(
    ctx: &Ctx<'_>,
    i: usize,
    raw: &S<RawService>,
) -> Result<ServiceConf, ConfigError> {
    let base = format!("service[{i}]");
    let s = raw.get_ref();
    let k = |key: &str| format!("{base}.{key}");

    let key = match (&s.fwmark, &s.vip) {
        (Some(mark), vip) => {
            let mark_n = narrow::<u32>(ctx.int(mark, &k("fwmark"), 1, i64::from(u32::MAX))?);
            if let Some(v) = vip {
                return Err(ctx.err(v.span(), k("vip"), "a fwmark service has no vip"));
            }
            if let Some(p) = &s.port {
                return Err(ctx.err(p.span(), k("port"), "a fwmark service has no port"));
            }
            if let Some(p) = &s.proto {
                return Err(ctx.err(p.span(), k("proto"), "a fwmark service has no proto"));
            }
            let family = match &s.family {
                None => AddrFamily::Inet,
                Some(f) => match f.get_ref().as_str() {
                    "inet" => AddrFamily::Inet,
                    "inet6" => AddrFamily::Inet6,
                    other => {
                        return Err(ctx.err(
                            f.span(),
                            k("family"),
                            format!("unknown family {other:?}: expected \"inet\" or \"inet6\""),
                        ))
                    }
                },
            };
            ServiceKey::Fwmark {
                mark: mark_n,
                family,
            }
        }
        (None, Some(vip)) => {
            if let Some(f) = &s.family {
                return Err(ctx.err(
                    f.span(),
                    k("family"),
                    "family only applies to fwmark services (others take it from vip)",
                ));
            }
            let proto = match &s.proto {
                None => {
                    return Err(ctx.err(raw.span(), &base, "missing proto (\"tcp\" or \"udp\")"))
                }
                Some(p) => match p.get_ref().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => {
                        return Err(ctx.err(
                            p.span(),
                            k("proto"),
                            format!("unknown protocol {other:?}: expected \"tcp\" or \"udp\""),
                        ))
                    }
                },
            };
            let vip_addr = ctx.ip(vip, &k("vip"))?;
            let port = match &s.port {
                None => return Err(ctx.err(raw.span(), &base, "missing port (0..=65535)")),
                Some(p) => narrow::<u16>(ctx.int(p, &k("port"), 0, 65535)?),
            };
            if port == 0 && s.persistence_timeout.is_none() {
                return Err(ctx.err(
                    s.port.as_ref().map_or(raw.span(), S::span),
                    k("port"),
                    "port 0 (all ports) needs persistence_timeout",
                ));
            }
            ServiceKey::Addr {
                proto,
                vip: vip_addr,
                port,
            }
        }
        (None, None) => {
            return Err(ctx.err(
                raw.span(),
                &base,
                "a service needs vip (with proto and port) or fwmark",
            ))
        }
    };
    let family = key.family();

    let scheduler = match &s.scheduler {
        None => SchedulerKind::Wlc,
        Some(name) => SchedulerKind::from_name(name.get_ref()).ok_or_else(|| {
            let all: Vec<&str> = SchedulerKind::ALL.iter().map(|s| s.name()).collect();
            ctx.err(
                name.span(),
                k("scheduler"),
                format!(
                    "unknown scheduler {:?}: expected one of {}",
                    name.get_ref(),
                    all.join(" ")
                ),
            )
        })?,
    };
    let persistence_timeout = match &s.persistence_timeout {
        None => None,
        Some(t) => Some(narrow::<u32>(ctx.int(
            t,
            &k("persistence_timeout"),
            1,
            i64::from(u32::MAX),
        )?)),
    };
    let netmask = match &s.netmask {
        None => None,
        Some(m) => {
            let max: i64 = if family == AddrFamily::Inet { 32 } else { 128 };
            let len = match m.get_ref() {
                RawNetmask::PrefixLen(n) if (1..=max).contains(n) => Some(narrow::<u8>(*n)),
                RawNetmask::PrefixLen(_) => None,
                RawNetmask::Mask(text) if family == AddrFamily::Inet => {
                    mask_prefix_len(text).filter(|l| *l > 0)
                }
                RawNetmask::Mask(_) => None,
            };
            let Some(len) = len else {
                return Err(ctx.err(
                    m.span(),
                    k("netmask"),
                    format!(
                        "invalid netmask: expected a prefix length 1..={max}{}",
                        if family == AddrFamily::Inet {
                            " or a contiguous mask like \"255.255.255.0\""
                        } else {
                            ""
                        }
                    ),
                ));
            };
            if persistence_timeout.is_none() {
                return Err(ctx.err(m.span(), k("netmask"), "netmask needs persistence_timeout"));
            }
            Some(len)
        }
    };
    let mut flags = Vec::with_capacity(s.flags.len());
    for (j, f) in s.flags.iter().enumerate() {
        let key = format!("{base}.flags[{j}]");
        let all: Vec<&str> = SchedFlag::ALL.iter().map(|f| f.as_str()).collect();
        let flag = SchedFlag::parse(f.get_ref()).ok_or_else(|| {
            ctx.err(
                f.span(),
                &key,
                format!(
                    "unknown scheduler flag {:?}: expected one of {}",
                    f.get_ref(),
                    all.join(" ")
                ),
            )
        })?;
        if let Some(owner) = flag.scheduler().filter(|o| *o != scheduler) {
            return Err(ctx.err(
                f.span(),
                key,
                format!(
                    "flag {} needs scheduler {}, not {}",
                    flag.as_str(),
                    owner.name(),
                    scheduler.name()
                ),
            ));
        }
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    let one_packet = s.one_packet.as_ref().is_some_and(|o| *o.get_ref());
    if one_packet
        && matches!(
            key,
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                ..
            }
        )
    {
        let span = s.one_packet.as_ref().map_or(raw.span(), S::span);
        return Err(ctx.err(
            span,
            k("one_packet"),
            "one_packet applies to UDP and fwmark services only",
        ));
    }
    let synproxy = s.synproxy.as_ref().is_some_and(|o| *o.get_ref());
    let synproxy_span = s.synproxy.as_ref().map_or(raw.span(), S::span);
    if synproxy
        && !matches!(
            key,
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                vip: IpAddr::V4(_),
                ..
            }
        )
    {
        return Err(ctx.err(
            synproxy_span,
            k("synproxy"),
            "synproxy applies to IPv4 TCP services only",
        ));
    }
    let mut local_addresses = Vec::with_capacity(s.local_addresses.len());
    for (j, a) in s.local_addresses.iter().enumerate() {
        let key = format!("{base}.local_addresses[{j}]");
        let ip = ctx.ip(a, &key)?;
        if local_addresses.contains(&ip) {
            return Err(ctx.err(a.span(), key, format!("duplicate local address {ip}")));
        }
        local_addresses.push(ip);
    }

    let mut real_servers: Vec<RealServerConf> = Vec::with_capacity(s.real_server.len());
    for (j, r) in s.real_server.iter().enumerate() {
        let rs_base = format!("{base}.real_server[{j}]");
        let rk = |key: &str| format!("{rs_base}.{key}");
        let r = r.get_ref();
        let address = ctx.ip(&r.address, &rk("address"))?;
        let method = match &r.method {
            None => FwdMethod::Route,
            Some(m) => parse_method(m.get_ref()).ok_or_else(|| {
                ctx.err(
                    m.span(),
                    rk("method"),
                    format!(
                        "unknown method {:?}: expected one of nat dr tun fullnat",
                        m.get_ref()
                    ),
                )
            })?,
        };
        // NAT64: FULLNAT from an IPv6 service to IPv4 servers
        let nat64 =
            method == FwdMethod::FullNat && family == AddrFamily::Inet6 && address.is_ipv4();
        if AddrFamily::of(address) != family && method != FwdMethod::Tunnel && !nat64 {
            return Err(ctx.err(
                r.address.span(),
                rk("address"),
                format!(
                    "{address} is not in the service's address family (only tun mixes families), \
                     nor an IPv4 fullnat server of an IPv6 service (NAT64)"
                ),
            ));
        }
        let port = match &r.port {
            None => key.port(),
            Some(p) => {
                let port = narrow::<u16>(ctx.int(p, &rk("port"), 0, 65535)?);
                let maps_ports = matches!(method, FwdMethod::Masq | FwdMethod::FullNat);
                if !maps_ports && port != key.port() && matches!(key, ServiceKey::Addr { .. }) {
                    return Err(ctx.err(
                        p.span(),
                        rk("port"),
                        format!(
                            "port {port} differs from the service port {}: only nat and fullnat map ports",
                            key.port()
                        ),
                    ));
                }
                port
            }
        };
        let weight = narrow::<u32>(ctx.int_or(&r.weight, &rk("weight"), 0, 65535, 1)?);
        let upper = narrow::<u32>(ctx.int_or(
            &r.upper_threshold,
            &rk("upper_threshold"),
            0,
            i64::from(u32::MAX),
            0,
        )?);
        let lower = narrow::<u32>(ctx.int_or(
            &r.lower_threshold,
            &rk("lower_threshold"),
            0,
            i64::from(u32::MAX),
            0,
        )?);
        if lower > upper {
            let span = r.lower_threshold.as_ref().map_or(0..0, S::span);
            return Err(ctx.err(
                span,
                rk("lower_threshold"),
                format!("{lower} is higher than upper_threshold {upper}"),
            ));
        }
        if method == FwdMethod::FullNat
            && !local_addresses
                .iter()
                .any(|l| AddrFamily::of(*l) == AddrFamily::of(address))
        {
            return Err(ctx.err(
                r.method.as_ref().map_or(r.address.span(), S::span),
                rk("method"),
                format!("fullnat to {address} needs a local_addresses entry of its family in the service"),
            ));
        }
        if real_servers
            .iter()
            .any(|o| o.address == address && o.port == port)
        {
            return Err(ctx.err(
                r.address.span(),
                rk("address"),
                format!("duplicate real server {address} port {port}"),
            ));
        }
        if synproxy && !method.sees_replies() {
            let span = r.method.as_ref().map_or(r.address.span(), S::span);
            return Err(ctx.err(
                span,
                rk("method"),
                "synproxy needs nat or fullnat real servers (replies bypass the director)",
            ));
        }
        real_servers.push(RealServerConf {
            address,
            port,
            weight,
            method,
            upper_threshold: upper,
            lower_threshold: lower,
            health: health::build_server_health(ctx, &rs_base, r)?,
        });
    }
    let health = health::build_service_health(
        ctx,
        &base,
        s.health.as_ref(),
        &s.check,
        family,
        &local_addresses,
    )?;

    Ok(ServiceConf {
        key,
        scheduler,
        persistence_timeout,
        netmask,
        flags,
        one_packet,
        synproxy,
        local_addresses,
        real_servers,
        health,
    })
}
