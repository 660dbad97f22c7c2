//! The option spellings (long, short, argument kind) and the tokenizer that
//! turns vsadm's arguments into recognised options and positional words.

use super::table::Cmd;

/// What an option spelling does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Command(Cmd),
    StartDaemon,
    StopDaemon,
    Help,
    Version,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Masq,
    Ipip,
    Gate,
    FullNat,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastIf,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
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

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    /// popt's `POPT_ARGFLAG_OPTIONAL`: the next word is the value unless it
    /// starts with '-'.
    Optional,
}

pub(super) struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    pub(super) tag: Tag,
}

const fn spec(long: &'static str, short: Option<char>, arg: Arg, tag: Tag) -> Spec {
    Spec {
        long,
        short,
        arg,
        tag,
    }
}

/// ipvsadm's popt table, plus vsd's options.
const SPECS: &[Spec] = &[
    spec("add-service", Some('A'), Arg::None, Tag::Command(Cmd::Add)),
    spec(
        "edit-service",
        Some('E'),
        Arg::None,
        Tag::Command(Cmd::Edit),
    ),
    spec(
        "delete-service",
        Some('D'),
        Arg::None,
        Tag::Command(Cmd::Del),
    ),
    spec("clear", Some('C'), Arg::None, Tag::Command(Cmd::Flush)),
    spec("list", Some('L'), Arg::None, Tag::Command(Cmd::List)),
    spec("list", Some('l'), Arg::None, Tag::Command(Cmd::List)),
    spec("zero", Some('Z'), Arg::None, Tag::Command(Cmd::Zero)),
    spec(
        "add-server",
        Some('a'),
        Arg::None,
        Tag::Command(Cmd::AddDest),
    ),
    spec(
        "edit-server",
        Some('e'),
        Arg::None,
        Tag::Command(Cmd::EditDest),
    ),
    spec(
        "delete-server",
        Some('d'),
        Arg::None,
        Tag::Command(Cmd::DelDest),
    ),
    spec("set", None, Arg::None, Tag::Command(Cmd::Timeout)),
    spec("help", Some('h'), Arg::None, Tag::Help),
    spec("version", Some('v'), Arg::None, Tag::Version),
    spec("restore", Some('R'), Arg::None, Tag::Command(Cmd::Restore)),
    spec("save", Some('S'), Arg::None, Tag::Command(Cmd::Save)),
    spec("start-daemon", None, Arg::Required, Tag::StartDaemon),
    spec("stop-daemon", None, Arg::Required, Tag::StopDaemon),
    spec("tcp-service", Some('t'), Arg::Required, Tag::Tcp),
    spec("udp-service", Some('u'), Arg::Required, Tag::Udp),
    spec("sctp-service", None, Arg::Required, Tag::Sctp),
    spec("fwmark-service", Some('f'), Arg::Required, Tag::Fwmark),
    spec("scheduler", Some('s'), Arg::Required, Tag::Scheduler),
    spec("persistent", Some('p'), Arg::Optional, Tag::Persistent),
    spec("netmask", Some('M'), Arg::Required, Tag::Netmask),
    spec("real-server", Some('r'), Arg::Required, Tag::Server),
    spec("masquerading", Some('m'), Arg::None, Tag::Masq),
    spec("ipip", Some('i'), Arg::None, Tag::Ipip),
    spec("gatewaying", Some('g'), Arg::None, Tag::Gate),
    spec("fullnat", None, Arg::None, Tag::FullNat),
    spec("weight", Some('w'), Arg::Required, Tag::Weight),
    spec("u-threshold", Some('x'), Arg::Required, Tag::UThreshold),
    spec("l-threshold", Some('y'), Arg::Required, Tag::LThreshold),
    spec("numeric", Some('n'), Arg::None, Tag::Numeric),
    spec("connection", Some('c'), Arg::None, Tag::Connection),
    spec("mcast-interface", None, Arg::Required, Tag::McastIf),
    spec("syncid", None, Arg::Required, Tag::SyncId),
    spec("timeout", None, Arg::None, Tag::Timeout),
    spec("daemon", None, Arg::None, Tag::Daemon),
    spec("stats", None, Arg::None, Tag::Stats),
    spec("rate", None, Arg::None, Tag::Rate),
    spec("thresholds", None, Arg::None, Tag::Thresholds),
    spec("persistent-conn", None, Arg::None, Tag::PersistentConn),
    spec("nosort", None, Arg::None, Tag::NoSort),
    spec("sort", None, Arg::None, Tag::Sort),
    spec("exact", Some('X'), Arg::None, Tag::Exact),
    spec("ipv6", Some('6'), Arg::None, Tag::Ipv6),
    spec("ops", Some('o'), Arg::None, Tag::Ops),
    spec("pe", None, Arg::Required, Tag::Pe),
    spec("sched-flags", Some('b'), Arg::Required, Tag::SchedFlags),
    spec("mcast-group", None, Arg::Required, Tag::McastGroup),
    spec("mcast-port", None, Arg::Required, Tag::McastPort),
    spec("mcast-ttl", None, Arg::Required, Tag::McastTtl),
    spec("sync-maxlen", None, Arg::Required, Tag::SyncMaxlen),
    spec("tun-info", None, Arg::None, Tag::TunInfo),
    spec("tun-type", None, Arg::Required, Tag::TunType),
    spec("tun-port", None, Arg::Required, Tag::TunPort),
    spec("tun-nocsum", None, Arg::None, Tag::TunNocsum),
    spec("tun-csum", None, Arg::None, Tag::TunCsum),
    spec("tun-remcsum", None, Arg::None, Tag::TunRemcsum),
    // vsd
    spec("add-laddr", None, Arg::None, Tag::Command(Cmd::AddLaddr)),
    spec("del-laddr", None, Arg::None, Tag::Command(Cmd::DelLaddr)),
    spec("get-laddr", None, Arg::None, Tag::Command(Cmd::GetLaddr)),
    spec("laddr", Some('z'), Arg::Required, Tag::Laddr),
    spec("counters", None, Arg::None, Tag::Command(Cmd::Counters)),
    spec("per-worker", None, Arg::None, Tag::PerWorker),
    spec("latency", None, Arg::None, Tag::Command(Cmd::Latency)),
    spec("status", None, Arg::None, Tag::Command(Cmd::Status)),
    spec("reload", None, Arg::None, Tag::Command(Cmd::Reload)),
    spec("prometheus", None, Arg::None, Tag::Command(Cmd::Prometheus)),
    spec("checks", None, Arg::None, Tag::Command(Cmd::Checks)),
    spec("add-mark", None, Arg::None, Tag::Command(Cmd::AddMark)),
    spec("del-mark", None, Arg::None, Tag::Command(Cmd::DelMark)),
    spec("dst", None, Arg::Required, Tag::MarkDst),
    spec("proto", None, Arg::Required, Tag::MarkProto),
    spec("dport", None, Arg::Required, Tag::MarkDport),
    spec("set-mark", None, Arg::Required, Tag::SetMark),
    spec("marks", None, Arg::None, Tag::Marks),
    spec(
        "set-defense",
        None,
        Arg::None,
        Tag::Command(Cmd::SetDefense),
    ),
    spec("defense", None, Arg::None, Tag::Defense),
    spec("set-sync", None, Arg::None, Tag::Command(Cmd::SetSync)),
    spec("sync", None, Arg::None, Tag::SyncSettings),
    spec("sync-peer", None, Arg::Required, Tag::SyncPeer),
    spec("sync-transport", None, Arg::Required, Tag::SyncTransport),
    spec("synproxy", None, Arg::None, Tag::Synproxy),
    spec("drain", None, Arg::None, Tag::Command(Cmd::Drain)),
    spec("undrain", None, Arg::None, Tag::Command(Cmd::Undrain)),
    spec("announce", None, Arg::None, Tag::Announce),
    spec("wait", None, Arg::None, Tag::Wait),
];

/// Options with their values, and positional words.
pub(super) type Tokens = (Vec<(&'static Spec, Option<String>)>, Vec<String>);

/// Splits argv into (spec, value) items and positional words, as popt does.
pub(super) fn tokenize<S: AsRef<str>>(args: &[S]) -> Result<Tokens, String> {
    let mut items = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while let Some(word) = args.get(i) {
        let word = word.as_ref();
        i += 1;
        if word == "--" {
            positional.extend(args[i..].iter().map(|s| s.as_ref().to_string()));
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(spec) = SPECS.iter().find(|s| s.long == name) else {
                return Err(format!("--{name}: unknown option"));
            };
            let value = match (spec.arg, inline) {
                (Arg::None, Some(_)) => {
                    return Err(format!("--{name}: option does not take an argument"))
                }
                (Arg::None, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.as_ref().to_string())
                    }
                    None => return Err(format!("--{name}: missing argument")),
                },
                (Arg::Optional, None) => match args.get(i).map(AsRef::as_ref) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        Some(v.to_string())
                    }
                    _ => None,
                },
            };
            items.push((spec, value));
            continue;
        }
        let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) else {
            positional.push(word.to_string());
            continue;
        };
        for (at, c) in cluster.char_indices() {
            let Some(spec) = SPECS.iter().find(|s| s.short == Some(c)) else {
                return Err(format!("-{c}: unknown option"));
            };
            let rest = &cluster[at + c.len_utf8()..];
            match spec.arg {
                Arg::None => items.push((spec, None)),
                Arg::Required | Arg::Optional if !rest.is_empty() => {
                    items.push((spec, Some(rest.to_string())));
                    break;
                }
                Arg::Required => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        items.push((spec, Some(v.as_ref().to_string())));
                    }
                    None => return Err(format!("-{c}: missing argument")),
                },
                Arg::Optional => match args.get(i).map(AsRef::as_ref) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        items.push((spec, Some(v.to_string())));
                    }
                    _ => items.push((spec, None)),
                },
            }
        }
    }
    Ok((items, positional))
}
