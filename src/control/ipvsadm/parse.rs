//! The parser: tokens checked against the option table and built into a [`Command`].

use std::net::{IpAddr, Ipv4Addr};

use super::options::{tokenize, Tag};
use super::table::{check_options, Cmd, Opt};
use super::values::{fwmark, number, parse_addr_port, sched_flags, timeout, DRAIN_TIMEOUT_MAX};
use super::{
    Command, DefenseChange, ListFormat, ListOptions, ListWhat, ServerSpec, ServiceSpec, SyncChange,
    SyncDaemonSpec, SyncRole, SyncTransport,
};
use crate::lb::mark::MarkRule;
use crate::lb::service::{
    PersistMask, RealServerConfig, SchedFlags, ServiceConfig, ServiceKey, DEFAULT_PERSIST_TIMEOUT,
};
use crate::lb::types::{AddrFamily, FwdMethod, Protocol, SchedulerKind};

#[derive(Default)]
struct Builder {
    cmd: Option<Cmd>,
    options: u64,
    proto: Option<Protocol>,
    svc_addr: Option<(IpAddr, Option<u16>)>,
    fwmark: Option<u32>,
    fwmark_v6: bool,
    scheduler: Option<String>,
    persistence: Option<u32>,
    netmask: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    method: Option<FwdMethod>,
    weight: Option<u32>,
    u_threshold: u32,
    l_threshold: u32,
    format: ListFormat,
    one_packet: bool,
    sched_flags: Option<String>,
    sync_role: Option<SyncRole>,
    mcast_if: Option<String>,
    syncid: u8,
    mcast_group: Option<IpAddr>,
    mcast_port: Option<u16>,
    mcast_ttl: Option<u8>,
    sync_maxlen: Option<u16>,
    sync_peers: Vec<IpAddr>,
    sync_transport: SyncTransport,
    tun_type_unsupported: Option<String>,
    laddr: Option<IpAddr>,
    mark_dst: Option<(IpAddr, u8)>,
    mark_proto: Option<u8>,
    mark_dport: Option<(u16, u16)>,
    set_mark: Option<u32>,
    synproxy: bool,
}

impl Builder {
    fn set_command(&mut self, cmd: Cmd) -> Result<(), String> {
        if self.cmd.is_some() {
            return Err("multiple commands specified".into());
        }
        self.cmd = Some(cmd);
        Ok(())
    }

    fn set_option(&mut self, opt: Opt) -> Result<(), String> {
        if self.options & opt.bit() != 0 {
            return Err(format!("multiple '{}' options specified", opt.name()));
        }
        self.options |= opt.bit();
        Ok(())
    }

    fn has(&self, opt: Opt) -> bool {
        self.options & opt.bit() != 0
    }

    fn set_method(&mut self, m: FwdMethod) -> Result<(), String> {
        self.set_option(Opt::Forward)?;
        self.method = Some(m);
        Ok(())
    }

    fn flag(&mut self, opt: Opt, set: impl FnOnce(&mut ListFormat)) -> Result<(), String> {
        self.set_option(opt)?;
        set(&mut self.format);
        Ok(())
    }

    fn item(&mut self, tag: Tag, value: Option<String>) -> Result<(), String> {
        let given = value.is_some();
        let v = value.unwrap_or_default();
        match tag {
            Tag::Command(c) => self.set_command(c)?,
            Tag::StartDaemon | Tag::StopDaemon => {
                let (cmd, msg) = if tag == Tag::StartDaemon {
                    (Cmd::StartDaemon, "illegal start-daemon parameter specified")
                } else {
                    (Cmd::StopDaemon, "illegal start_daemon specified")
                };
                self.set_command(cmd)?;
                self.sync_role = Some(match v.as_str() {
                    "master" => SyncRole::Master,
                    "backup" => SyncRole::Backup,
                    _ => return Err(msg.into()),
                });
            }
            Tag::Help | Tag::Version => unreachable_tag()?,
            Tag::Tcp | Tag::Udp => {
                self.set_option(Opt::Service)?;
                self.proto = Some(if tag == Tag::Tcp {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                });
                self.svc_addr = Some(
                    parse_addr_port(&v).ok_or("illegal virtual server address[:port] specified")?,
                );
            }
            Tag::Sctp => {
                self.set_option(Opt::Service)?;
                return Err("SCTP services are not supported by vsd".into());
            }
            Tag::Fwmark => {
                self.set_option(Opt::Service)?;
                self.fwmark = Some(fwmark(&v)?);
            }
            Tag::Scheduler => {
                self.set_option(Opt::Scheduler)?;
                self.scheduler = Some(v);
            }
            Tag::Persistent => {
                self.set_option(Opt::Persistent)?;
                self.persistence = Some(if !given {
                    DEFAULT_PERSIST_TIMEOUT
                } else {
                    timeout(&v, 1)?
                });
            }
            Tag::Netmask => {
                self.set_option(Opt::Netmask)?;
                self.netmask = Some(v);
            }
            Tag::Server => {
                self.set_option(Opt::Server)?;
                self.server = Some(
                    parse_addr_port(&v).ok_or("illegal real server address[:port] specified")?,
                );
            }
            Tag::Masq => self.set_method(FwdMethod::Masq)?,
            Tag::Ipip => self.set_method(FwdMethod::Tunnel)?,
            Tag::Gate => self.set_method(FwdMethod::Route)?,
            Tag::FullNat => self.set_method(FwdMethod::FullNat)?,
            Tag::Weight => {
                self.set_option(Opt::Weight)?;
                self.weight = Some(number(&v, 0, 65535).ok_or("illegal weight specified")? as u32);
            }
            Tag::UThreshold => {
                self.set_option(Opt::UThreshold)?;
                self.u_threshold = number(&v, 0, i64::from(i32::MAX))
                    .ok_or("illegal u_threshold specified")?
                    as u32;
            }
            Tag::LThreshold => {
                self.set_option(Opt::LThreshold)?;
                self.l_threshold = number(&v, 0, i64::from(i32::MAX))
                    .ok_or("illegal l_threshold specified")?
                    as u32;
            }
            Tag::Numeric => self.flag(Opt::Numeric, |f| f.numeric = true)?,
            Tag::Connection => self.set_option(Opt::Connection)?,
            Tag::McastIf => {
                self.set_option(Opt::Mcast)?;
                // IP_VS_IFNAME_MAXLEN is 16 with the NUL.
                self.mcast_if = Some(v.chars().take(15).collect());
            }
            Tag::SyncId => {
                self.set_option(Opt::SyncId)?;
                self.syncid = number(&v, 0, 255).ok_or("illegal syncid specified")? as u8;
            }
            Tag::Timeout => self.set_option(Opt::Timeout)?,
            Tag::Daemon => self.set_option(Opt::Daemon)?,
            Tag::Defense => self.set_option(Opt::Defense)?,
            Tag::SyncSettings => self.set_option(Opt::SyncSettings)?,
            Tag::Announce => self.set_option(Opt::Announce)?,
            Tag::Wait => self.set_option(Opt::Wait)?,
            Tag::SyncPeer => {
                // repeated: one per peer
                self.options |= Opt::SyncPeer.bit();
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("invalid sync-peer `{v}' specified"))?;
                if ip.is_multicast() || ip.is_unspecified() || ip == IpAddr::from([255; 4]) {
                    return Err(format!(
                        "invalid sync-peer `{v}' specified: must be a unicast address"
                    ));
                }
                if self.sync_peers.contains(&ip) {
                    return Err(format!("sync-peer {ip} given twice"));
                }
                self.sync_peers.push(ip);
            }
            Tag::SyncTransport => {
                self.set_option(Opt::SyncTransport)?;
                self.sync_transport = SyncTransport::parse(&v).ok_or_else(|| {
                    format!("illegal sync-transport `{v}' specified (auto, kernel or dataplane)")
                })?;
            }
            Tag::Synproxy => {
                self.set_option(Opt::Synproxy)?;
                self.synproxy = true;
            }
            Tag::Stats => self.flag(Opt::Stats, |f| f.stats = true)?,
            Tag::Rate => self.flag(Opt::Rate, |f| f.rate = true)?,
            Tag::Thresholds => self.flag(Opt::Thresholds, |f| f.thresholds = true)?,
            Tag::PersistentConn => self.flag(Opt::PersistentConn, |f| f.persistent_conn = true)?,
            Tag::NoSort => self.flag(Opt::NoSort, |f| f.nosort = true)?,
            Tag::Sort => {}
            Tag::Exact => self.flag(Opt::Exact, |f| f.exact = true)?,
            Tag::TunInfo => self.flag(Opt::TunInfo, |f| f.tun_info = true)?,
            Tag::Ipv6 => {
                if self.fwmark.is_none() {
                    return Err("-6 used before -f".into());
                }
                self.fwmark_v6 = true;
            }
            Tag::Ops => {
                self.set_option(Opt::Ops)?;
                self.one_packet = true;
            }
            Tag::Pe => {
                self.set_option(Opt::Pe)?;
                return Err(format!("persistence engine `{v}' is not supported by vsd"));
            }
            Tag::SchedFlags => {
                self.set_option(Opt::SchedFlags)?;
                self.sched_flags = Some(v);
            }
            Tag::McastGroup => {
                self.set_option(Opt::McastGroup)?;
                let group = if v.contains(':') {
                    v.parse::<std::net::Ipv6Addr>()
                        .ok()
                        .filter(|a| a.is_multicast())
                        .map(IpAddr::V6)
                        .ok_or_else(|| format!("invalid IPv6 mcast-group `{v}'"))?
                } else {
                    v.parse::<Ipv4Addr>()
                        .ok()
                        .filter(|a| a.is_multicast())
                        .map(IpAddr::V4)
                        .ok_or_else(|| format!("invalid IPv4 mcast-group `{v}'"))?
                };
                self.mcast_group = Some(group);
            }
            Tag::McastPort => {
                self.set_option(Opt::McastPort)?;
                self.mcast_port =
                    Some(number(&v, 1, 65535).ok_or("illegal mcast-port specified")? as u16);
            }
            Tag::McastTtl => {
                self.set_option(Opt::McastTtl)?;
                self.mcast_ttl =
                    Some(number(&v, 1, 255).ok_or("illegal mcast-ttl specified")? as u8);
            }
            Tag::SyncMaxlen => {
                self.set_option(Opt::SyncMaxlen)?;
                self.sync_maxlen = Some(
                    number(&v, 1, 65535 - 20 - 8).ok_or("illegal sync-maxlen specified")? as u16,
                );
            }
            Tag::TunType => {
                self.set_option(Opt::TunType)?;
                match v.as_str() {
                    "ipip" => {}
                    "gue" | "gre" => self.tun_type_unsupported = Some(v),
                    _ => return Err("illegal tunnel type specified".into()),
                }
            }
            Tag::TunPort => {
                self.set_option(Opt::TunPort)?;
                number(&v, 1, 65535).ok_or("illegal tunnel port specified")?;
            }
            Tag::TunNocsum => self.set_option(Opt::TunNocsum)?,
            Tag::TunCsum => self.set_option(Opt::TunCsum)?,
            Tag::TunRemcsum => self.set_option(Opt::TunRemcsum)?,
            Tag::Laddr => {
                self.set_option(Opt::Laddr)?;
                self.laddr = Some(v.parse().map_err(|_| "illegal local address specified")?);
            }
            Tag::PerWorker => self.set_option(Opt::PerWorker)?,
            Tag::MarkDst => {
                self.set_option(Opt::MarkDst)?;
                self.mark_dst = Some(MarkRule::parse_dst(&v)?);
            }
            Tag::MarkProto => {
                self.set_option(Opt::MarkProto)?;
                self.mark_proto = Some(MarkRule::parse_proto(&v)?);
            }
            Tag::MarkDport => {
                self.set_option(Opt::MarkDport)?;
                self.mark_dport = Some(MarkRule::parse_ports(&v)?);
            }
            Tag::SetMark => {
                self.set_option(Opt::SetMark)?;
                self.set_mark = Some(fwmark(&v)?);
            }
            Tag::Marks => self.set_option(Opt::Marks)?,
        }
        Ok(())
    }

    /// The service named by `-t|-u|-f`, if any.
    fn service_key(&self) -> Option<ServiceKey> {
        if let Some(mark) = self.fwmark {
            let af = if self.fwmark_v6 {
                AddrFamily::Inet6
            } else {
                AddrFamily::Inet
            };
            return Some(ServiceKey::fwmark(mark, af));
        }
        let (addr, port) = self.svc_addr?;
        Some(ServiceKey::Addr {
            proto: self.proto?,
            addr,
            port: port.unwrap_or(0),
        })
    }

    fn required_service(&self) -> Result<ServiceKey, String> {
        // generic_opt_check has made sure it was given.
        self.service_key()
            .ok_or_else(|| "You need to supply the 'service-address' option".into())
    }

    fn service_spec(&self) -> Result<ServiceSpec, String> {
        let key = self.required_service()?;
        let fw = matches!(key, ServiceKey::Fwmark { .. });
        if !fw && key.port() == 0 && self.persistence.is_none() {
            return Err("Zero port specified for non-persistent service".into());
        }
        if self.one_packet
            && !fw
            && !matches!(
                key,
                ServiceKey::Addr {
                    proto: Protocol::Udp,
                    ..
                }
            )
        {
            return Err("One-Packet Scheduling is only for UDP virtual services".into());
        }
        let scheduler = self
            .scheduler
            .clone()
            .unwrap_or_else(|| SchedulerKind::DEFAULT.name().to_string());
        let flags = match &self.sched_flags {
            Some(list) => sched_flags(list, &scheduler)?,
            None => SchedFlags::default(),
        };
        let persist_mask = match &self.netmask {
            None => None,
            Some(m) if key.af() == AddrFamily::Inet6 => Some(PersistMask::V6(
                number(m, 1, 128).ok_or("illegal ipv6 netmask specified")? as u8,
            )),
            Some(m) => {
                Some(PersistMask::V4(m.parse().map_err(|_| {
                    "illegal virtual server persistent mask specified"
                })?))
            }
        };
        Ok(ServiceSpec {
            key,
            config: ServiceConfig {
                scheduler,
                flags,
                persistence: self.persistence,
                persist_mask,
                one_packet: self.one_packet,
                synproxy: self.synproxy,
                ..ServiceConfig::default()
            },
        })
    }

    fn server_spec(&self) -> Result<ServerSpec, String> {
        let service = self.required_service()?;
        let (addr, port) = self
            .server
            .ok_or("You need to supply the 'real-server' option")?;
        let method = self.method.unwrap_or(FwdMethod::Route);
        let fw = matches!(service, ServiceKey::Fwmark { .. });
        let mut port = port.unwrap_or(service.port());
        // DR and TUN cannot map ports: ipvsadm silently uses the virtual port.
        if !fw && matches!(method, FwdMethod::Route | FwdMethod::Tunnel) {
            port = service.port();
        }
        // NAT64: FULLNAT from an IPv6 service to IPv4 servers
        let nat64 =
            method == FwdMethod::FullNat && service.af() == AddrFamily::Inet6 && addr.is_ipv4();
        if AddrFamily::of(addr) != service.af() && method != FwdMethod::Tunnel && !nat64 {
            return Err("Different address family is allowed only for tunneling servers".into());
        }
        let tun_opts = [
            Opt::TunType,
            Opt::TunPort,
            Opt::TunNocsum,
            Opt::TunCsum,
            Opt::TunRemcsum,
        ];
        if tun_opts.iter().any(|o| self.has(*o)) && method != FwdMethod::Tunnel {
            return Err("Tunnel options conflict with forward method".into());
        }
        if let Some(t) = &self.tun_type_unsupported {
            return Err(format!(
                "tunnel type {t} is not supported by vsd (only ipip)"
            ));
        }
        // ipvsadm's tunnel_types_v_options row for ipip: no tunnel option.
        for o in [Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum] {
            if self.has(o) {
                return Err(format!(
                    "Illegal '{}' option with the 'ipip' tunnel type",
                    o.name()
                ));
            }
        }
        Ok(ServerSpec {
            service,
            server: RealServerConfig {
                addr,
                port,
                weight: self.weight.unwrap_or(1),
                method,
                upper_threshold: self.u_threshold,
                lower_threshold: self.l_threshold,
            },
        })
    }
}

fn unreachable_tag() -> Result<(), String> {
    Err("internal: help and version are handled first".into())
}

/// Parses vsadm's arguments (without the program name). An empty list means
/// `-L`, as ipvsadm does without arguments.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, String> {
    if args.is_empty() {
        return Ok(Command::List(ListOptions::default()));
    }
    let (items, mut positional) = tokenize(args)?;
    // -h and -v win wherever they are (ipvsadm exits on them).
    for (spec, _) in &items {
        match spec.tag {
            Tag::Help => return Ok(Command::Help),
            Tag::Version => return Ok(Command::Version),
            _ => {}
        }
    }
    let mut b = Builder::default();
    for (spec, value) in items {
        b.item(spec.tag, value)?;
    }
    let Some(cmd) = b.cmd else {
        return Err("no command specified".into());
    };
    let mut set_values = None;
    if cmd == Cmd::Timeout {
        if positional.len() < 3 {
            return Err("--set option requires 3 timeout values".into());
        }
        let rest = positional.split_off(3);
        let t: Vec<u32> = positional
            .iter()
            .map(|p| timeout(p, 0))
            .collect::<Result<_, _>>()?;
        positional = rest;
        set_values = Some((t[0], t[1], t[2]));
    }
    let mut defense = None;
    if cmd == Cmd::SetDefense {
        defense = Some(DefenseChange::parse(&positional)?);
        positional.clear();
    }
    let mut drain_timeout = None;
    if cmd == Cmd::Drain && b.has(Opt::Timeout) {
        // `--timeout` lists timeouts with -L; after --drain it takes seconds
        let Some(p) = positional.first() else {
            return Err("--drain --timeout needs a number of seconds".into());
        };
        drain_timeout = Some(
            number(p, 0, DRAIN_TIMEOUT_MAX)
                .map(|n| n as u32)
                .ok_or_else(|| {
                    format!(
                        "invalid drain timeout `{p}' specified: 0..={DRAIN_TIMEOUT_MAX} seconds"
                    )
                })?,
        );
        positional.remove(0);
    }
    let mut sync_change = None;
    if cmd == Cmd::SetSync {
        sync_change = Some(SyncChange::parse(&positional)?);
        positional.clear();
    }
    if let Some(p) = positional.first() {
        return Err(format!("unexpected argument {p}"));
    }
    check_options(cmd, b.options)?;

    Ok(match cmd {
        Cmd::Add => Command::AddService(b.service_spec()?),
        Cmd::Edit => Command::EditService(b.service_spec()?),
        Cmd::Del => Command::DelService(b.required_service()?),
        Cmd::Flush => Command::Clear,
        Cmd::List => {
            let summary = b.has(Opt::Timeout)
                || b.has(Opt::Daemon)
                || b.has(Opt::Defense)
                || b.has(Opt::SyncSettings);
            let conflict =
                (b.has(Opt::Connection) || summary || b.has(Opt::Marks) || b.has(Opt::Announce))
                    && (b.has(Opt::Stats) || b.has(Opt::Rate) || b.has(Opt::Thresholds))
                    || summary && b.has(Opt::PersistentConn);
            if conflict {
                return Err("options conflicts in the list command".into());
            }
            let what = if b.has(Opt::Connection) {
                ListWhat::Connections
            } else if b.has(Opt::Timeout) {
                ListWhat::Timeouts
            } else if b.has(Opt::Daemon) {
                ListWhat::Daemons
            } else if b.has(Opt::Marks) {
                ListWhat::Marks
            } else if b.has(Opt::Defense) {
                ListWhat::Defense
            } else if b.has(Opt::SyncSettings) {
                ListWhat::SyncSettings
            } else if b.has(Opt::Announce) {
                ListWhat::Announce
            } else {
                ListWhat::Services
            };
            Command::List(ListOptions {
                what,
                service: b.service_key(),
                format: b.format,
            })
        }
        Cmd::AddDest => Command::AddServer(b.server_spec()?),
        Cmd::EditDest => Command::EditServer(b.server_spec()?),
        Cmd::DelDest => {
            let service = b.required_service()?;
            let (addr, port) = b
                .server
                .ok_or("You need to supply the 'real-server' option")?;
            Command::DelServer {
                service,
                addr,
                port: port.unwrap_or(service.port()),
            }
        }
        Cmd::Timeout => {
            let (tcp, tcpfin, udp) = set_values.unwrap_or((0, 0, 0));
            Command::SetTimeouts { tcp, tcpfin, udp }
        }
        Cmd::SetDefense => Command::SetDefense(defense.unwrap_or_default()),
        Cmd::SetSync => Command::SetSync(sync_change.unwrap_or_default()),
        Cmd::StartDaemon => Command::StartDaemon(SyncDaemonSpec {
            role: b.sync_role.unwrap_or(SyncRole::Master),
            mcast_interface: b.mcast_if.clone().unwrap_or_else(|| "eth0".into()),
            syncid: b.syncid,
            sync_maxlen: b.sync_maxlen,
            mcast_group: b.mcast_group,
            mcast_port: b.mcast_port,
            mcast_ttl: b.mcast_ttl,
            peers: b.sync_peers.clone(),
            transport: b.sync_transport,
        }),
        Cmd::StopDaemon => Command::StopDaemon(b.sync_role.unwrap_or(SyncRole::Master)),
        Cmd::Restore => Command::Restore,
        Cmd::Save => Command::Save {
            numeric: b.format.numeric,
        },
        Cmd::Zero => Command::Zero(b.service_key()),
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let service = b.required_service()?;
            let addr = b.laddr.ok_or("You need to supply the 'laddr' option")?;
            if cmd == Cmd::AddLaddr {
                Command::AddLocalAddr { service, addr }
            } else {
                Command::DelLocalAddr { service, addr }
            }
        }
        Cmd::GetLaddr => Command::GetLocalAddrs(b.service_key()),
        Cmd::AddMark | Cmd::DelMark => {
            let rule = MarkRule::new(
                b.mark_dst.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
                b.mark_proto,
                b.mark_dport,
                b.set_mark
                    .ok_or("You need to supply the 'set-mark' option")?,
            )?;
            if cmd == Cmd::AddMark {
                Command::AddMark(rule)
            } else {
                Command::DelMark(rule)
            }
        }
        Cmd::Counters => Command::Counters {
            per_worker: b.has(Opt::PerWorker),
        },
        Cmd::Latency => Command::Latency,
        Cmd::Status => Command::Status,
        Cmd::Reload => Command::Reload,
        Cmd::Prometheus => Command::Prometheus,
        Cmd::Checks => Command::Checks,
        Cmd::Drain => Command::Drain {
            timeout: drain_timeout,
            wait: b.has(Opt::Wait),
        },
        Cmd::Undrain => Command::Undrain,
    })
}
