//! ipvsadm's table of legal command/option combinations, and the check that
//! names the first illegal option the way ipvsadm does.

/// ipvsadm's command names (for messages), plus vsd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Counters,
    Latency,
    Status,
    Reload,
    Prometheus,
    Checks,
    AddMark,
    DelMark,
    SetDefense,
    SetSync,
    Drain,
    Undrain,
}

impl Cmd {
    pub(super) fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::AddLaddr => "add-laddr",
            Cmd::DelLaddr => "del-laddr",
            Cmd::GetLaddr => "get-laddr",
            Cmd::Counters => "counters",
            Cmd::Latency => "latency",
            Cmd::Status => "status",
            Cmd::Reload => "reload",
            Cmd::Prometheus => "prometheus",
            Cmd::Checks => "checks",
            Cmd::AddMark => "add-mark",
            Cmd::DelMark => "del-mark",
            Cmd::SetDefense => "set-defense",
            Cmd::SetSync => "set-sync",
            Cmd::Drain => "drain",
            Cmd::Undrain => "undrain",
        }
    }
}

/// ipvsadm's option classes, in its table order (vsd's last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Laddr,
    PerWorker,
    MarkDst,
    MarkProto,
    MarkDport,
    SetMark,
    Marks,
    Defense,
    Synproxy,
    SyncSettings,
    SyncPeer,
    SyncTransport,
    Announce,
    Wait,
}

impl Opt {
    const ALL: [Opt; 48] = [
        Opt::Numeric,
        Opt::Connection,
        Opt::Service,
        Opt::Scheduler,
        Opt::Persistent,
        Opt::Netmask,
        Opt::Server,
        Opt::Forward,
        Opt::Weight,
        Opt::UThreshold,
        Opt::LThreshold,
        Opt::Mcast,
        Opt::Timeout,
        Opt::Daemon,
        Opt::Stats,
        Opt::Rate,
        Opt::Thresholds,
        Opt::PersistentConn,
        Opt::NoSort,
        Opt::SyncId,
        Opt::Exact,
        Opt::Ops,
        Opt::Pe,
        Opt::SchedFlags,
        Opt::McastGroup,
        Opt::McastPort,
        Opt::McastTtl,
        Opt::SyncMaxlen,
        Opt::TunInfo,
        Opt::TunType,
        Opt::TunPort,
        Opt::TunNocsum,
        Opt::TunCsum,
        Opt::TunRemcsum,
        Opt::Laddr,
        Opt::PerWorker,
        Opt::MarkDst,
        Opt::MarkProto,
        Opt::MarkDport,
        Opt::SetMark,
        Opt::Marks,
        Opt::Defense,
        Opt::Synproxy,
        Opt::SyncSettings,
        Opt::SyncPeer,
        Opt::SyncTransport,
        Opt::Announce,
        Opt::Wait,
    ];

    pub(super) fn bit(self) -> u64 {
        1u64 << (self as u32)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Mcast => "mcast-interface",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::SyncId => "syncid",
            Opt::Exact => "exact",
            Opt::Ops => "ops",
            Opt::Pe => "pe",
            Opt::SchedFlags => "sched-flags",
            Opt::McastGroup => "mcast-group",
            Opt::McastPort => "mcast-port",
            Opt::McastTtl => "mcast-ttl",
            Opt::SyncMaxlen => "sync-maxlen",
            Opt::TunInfo => "tun-info",
            Opt::TunType => "tun-type",
            Opt::TunPort => "tun-port",
            Opt::TunNocsum => "tun-nocsum",
            Opt::TunCsum => "tun-csum",
            Opt::TunRemcsum => "tun-remcsum",
            Opt::Laddr => "laddr",
            Opt::PerWorker => "per-worker",
            Opt::MarkDst => "dst",
            Opt::MarkProto => "proto",
            Opt::MarkDport => "dport",
            Opt::SetMark => "set-mark",
            Opt::Marks => "marks",
            Opt::Defense => "defense",
            Opt::Synproxy => "synproxy",
            Opt::SyncSettings => "sync",
            Opt::SyncPeer => "sync-peer",
            Opt::SyncTransport => "sync-transport",
            Opt::Announce => "announce",
            Opt::Wait => "wait",
        }
    }
}

/// One cell of ipvsadm's `commands_v_options` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// '+': must be given.
    Required,
    /// 'x': must not be given.
    Illegal,
    /// '1': at most one of the '1' options.
    Exclusive,
    /// ' ': may be given.
    Optional,
}

/// ipvsadm's `commands_v_options`, extended with vsd's commands and options.
pub(super) fn rule(cmd: Cmd, opt: Opt) -> Rule {
    use Opt as O;
    use Rule::*;
    match cmd {
        Cmd::Add | Cmd::Edit => match opt {
            O::Service => Required,
            O::Scheduler
            | O::Persistent
            | O::Netmask
            | O::Ops
            | O::Pe
            | O::SchedFlags
            | O::Synproxy => Optional,
            _ => Illegal,
        },
        Cmd::Del => match opt {
            O::Service => Required,
            _ => Illegal,
        },
        Cmd::List => match opt {
            O::Connection
            | O::Service
            | O::Timeout
            | O::Daemon
            | O::Marks
            | O::Defense
            | O::SyncSettings
            | O::Announce => Exclusive,
            O::Numeric
            | O::Stats
            | O::Rate
            | O::Thresholds
            | O::PersistentConn
            | O::NoSort
            | O::SyncId
            | O::Exact
            | O::TunInfo => Optional,
            _ => Illegal,
        },
        Cmd::AddDest | Cmd::EditDest => match opt {
            O::Service | O::Server => Required,
            O::Forward
            | O::Weight
            | O::UThreshold
            | O::LThreshold
            | O::TunType
            | O::TunPort
            | O::TunNocsum
            | O::TunCsum
            | O::TunRemcsum => Optional,
            _ => Illegal,
        },
        Cmd::DelDest => match opt {
            O::Service | O::Server => Required,
            _ => Illegal,
        },
        Cmd::StartDaemon => match opt {
            O::Mcast
            | O::SyncId
            | O::McastGroup
            | O::McastPort
            | O::McastTtl
            | O::SyncMaxlen
            | O::SyncPeer
            | O::SyncTransport => Optional,
            _ => Illegal,
        },
        Cmd::StopDaemon => match opt {
            O::SyncId => Optional,
            _ => Illegal,
        },
        Cmd::Save => match opt {
            O::Numeric => Optional,
            _ => Illegal,
        },
        Cmd::Zero | Cmd::GetLaddr => match opt {
            O::Service => Optional,
            _ => Illegal,
        },
        Cmd::AddLaddr | Cmd::DelLaddr => match opt {
            O::Service | O::Laddr => Required,
            _ => Illegal,
        },
        Cmd::Counters => match opt {
            O::PerWorker => Optional,
            _ => Illegal,
        },
        Cmd::Drain => match opt {
            O::Timeout | O::Wait => Optional,
            _ => Illegal,
        },
        Cmd::AddMark | Cmd::DelMark => match opt {
            O::SetMark => Required,
            O::MarkDst | O::MarkProto | O::MarkDport => Optional,
            _ => Illegal,
        },
        Cmd::Flush
        | Cmd::Timeout
        | Cmd::Restore
        | Cmd::Latency
        | Cmd::Status
        | Cmd::Reload
        | Cmd::Prometheus
        | Cmd::Checks
        | Cmd::SetDefense
        | Cmd::SetSync
        | Cmd::Undrain => Illegal,
    }
}

/// ipvsadm's `generic_opt_check`.
pub(super) fn check_options(cmd: Cmd, options: u64) -> Result<(), String> {
    let mut first_exclusive: Option<Opt> = None;
    for opt in Opt::ALL {
        let given = options & opt.bit() != 0;
        match (rule(cmd, opt), given) {
            (Rule::Required, false) => {
                return Err(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (Rule::Illegal, true) => {
                return Err(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (Rule::Exclusive, true) => match first_exclusive {
                None => first_exclusive = Some(opt),
                Some(last) => {
                    return Err(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        last.name(),
                        cmd.name()
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}
