//! ipvsadm's command line, parsed into a typed [`Command`].
//!
//! vsadm accepts exactly ipvsadm's options (short, long, clustered short
//! options like `-Ln`, `--opt=value`, `-p` with an optional value) and checks
//! them with ipvsadm's table of legal command/option combinations, so wrong
//! usage fails with ipvsadm's own messages ("Illegal 'weight' option with the
//! 'add-service' command", "illegal weight specified", ...).
//!
//! Where vsd differs, on purpose:
//! - Addresses are numeric only (no DNS lookups); ports may be numbers or a
//!   few well-known service names ([`service_port`]).
//! - Options are order-independent: a command may come anywhere (ipvsadm
//!   wants it first), `-r` without a port takes the service's port even when
//!   it comes before `-t`, and `-M` is read as an IPv6 prefix length or an
//!   IPv4 mask according to the service's family whatever the order.
//! - `--sctp-service`, `--pe`, and the `gue`/`gre` tunnel types are refused
//!   (vsd has no SCTP, SIP persistence or those encapsulations).
//! - `flag-1`/`flag-2` mean sh-/mh-fallback and sh-/mh-port with sh and mh;
//!   with other schedulers (which define no flags) they are accepted and have
//!   no effect, as in IPVS. `flag-3` is accepted and ignored.
//!
//! vsd additions: `--fullnat` (forwarding method; `-b` stays the scheduler
//! flags), `--add-laddr|--del-laddr -z LIP -t|-u VIP:PORT`,
//! `--get-laddr [-t|-u VIP:PORT]`, the firewall-mark classifier
//! (`--add-mark|--del-mark [--dst ADDR[/LEN]] [--proto tcp|udp]
//! [--dport PORT[:LAST]] --set-mark MARK`, listed by `-L --marks`, saved by
//! `-S`; what `iptables -t mangle ... -j MARK` does for kernel IPVS), and
//! the views `--counters [--per-worker]`, `--latency`, `--status`,
//! `--reload`, `--prometheus`.

use std::net::IpAddr;

use crate::lb::mark::MarkRule;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, MAX_PERSIST_TIMEOUT};

mod options;
mod parse;
mod table;
mod values;

pub use parse::parse;
use values::{number, timeout};
pub use values::{parse_addr_port, service_port};

/// Longest timeout ipvsadm accepts (`-p`, `--set`): 31 days.
pub const MAX_TIMEOUT: u32 = MAX_PERSIST_TIMEOUT;

/// A virtual service with its settings (`-A`, `-E`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `-t|-u ADDR:PORT` or `-f MARK [-6]`.
    pub key: ServiceKey,
    /// `-s`, `-p`, `-M`, `-b`, `-o` (ipvsadm's defaults where not given).
    pub config: ServiceConfig,
}

/// A real server of a service (`-a`, `-e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSpec {
    /// The service it belongs to.
    pub service: ServiceKey,
    /// `-r`, `-g|-i|-m|--fullnat`, `-w`, `-x`, `-y`.
    pub server: RealServerConfig,
}

/// Which sync daemon (`--start-daemon`, `--stop-daemon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncRole {
    /// Sends connection updates.
    Master,
    /// Receives them.
    Backup,
}

impl SyncRole {
    /// `master` or `backup`.
    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// `--start-daemon` and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemonSpec {
    /// master or backup.
    pub role: SyncRole,
    /// `--mcast-interface` (ipvsadm's default "eth0").
    pub mcast_interface: String,
    /// `--syncid`, 0..=255 (0: no filtering).
    pub syncid: u8,
    /// `--sync-maxlen`, `None` = derived from the MTU.
    pub sync_maxlen: Option<u16>,
    /// `--mcast-group`, `None` = 224.0.0.81.
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port`, `None` = 8848.
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl`, `None` = 1.
    pub mcast_ttl: Option<u8>,
    /// `--sync-peer IP`, repeated (vsd): unicast peers. A master sends
    /// every message to each of them instead of the group; a backup
    /// accepts datagrams from them only, on the sync port, without joining
    /// the group. Empty: multicast, as the kernel.
    pub peers: Vec<IpAddr>,
    /// `--sync-transport` (vsd): how a master's messages leave. `Auto`
    /// until resolved ([`crate::control::syncd::resolve`]), then what runs.
    pub transport: SyncTransport,
}

/// How a master sync daemon sends (`--sync-transport`, `[[sync_daemon]]
/// transport`): see [`crate::control::syncd`]'s note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncTransport {
    /// The data plane when it can (a multicast master on a DPDK port or
    /// its kernel twin), else kernel sockets.
    #[default]
    Auto,
    /// A daemon thread with kernel UDP sockets on the interface.
    Kernel,
    /// Every worker sends its own messages out of the port
    /// ([`crate::dataplane::sync_tx`]).
    Dataplane,
}

impl SyncTransport {
    /// `auto`, `kernel` or `dataplane`.
    pub fn name(self) -> &'static str {
        match self {
            SyncTransport::Auto => "auto",
            SyncTransport::Kernel => "kernel",
            SyncTransport::Dataplane => "dataplane",
        }
    }

    /// The transport named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(SyncTransport::Auto),
            "kernel" => Some(SyncTransport::Kernel),
            "dataplane" => Some(SyncTransport::Dataplane),
            _ => None,
        }
    }
}

/// What `-L` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListWhat {
    /// The virtual server table (all services, or the one given).
    #[default]
    Services,
    /// `-c`: the connection table.
    Connections,
    /// `--timeout`.
    Timeouts,
    /// `--daemon`: the sync daemons.
    Daemons,
    /// `--marks`: the firewall-mark classifier's rules.
    Marks,
    /// `--defense` (vsd): drop_entry, secure_tcp and SYN_RECV timeouts.
    Defense,
    /// `--sync` (vsd): the sync knobs of `--set-sync`.
    SyncSettings,
    /// `--announce` (vsd): each VIP announced or withdrawn and why, and
    /// the drain state ([`crate::control::announce`]).
    Announce,
}

/// `-L` output modifiers (ipvsadm's `FMT_*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListFormat {
    /// `-n`. vsd always prints numbers; kept so that `-S -n` round-trips.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--tun-info`.
    pub tun_info: bool,
    /// `--exact`.
    pub exact: bool,
    /// `--nosort`.
    pub nosort: bool,
}

/// `-L|-l` and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// What to list.
    pub what: ListWhat,
    /// Only this service (`-L -t VIP:PORT`).
    pub service: Option<ServiceKey>,
    /// Output modifiers.
    pub format: ListFormat,
}

/// One vsadm invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-A`.
    AddService(ServiceSpec),
    /// `-E`: replaces all the service's settings (ipvsadm's defaults for
    /// those not given, as ipvsadm does).
    EditService(ServiceSpec),
    /// `-D`.
    DelService(ServiceKey),
    /// `-a`.
    AddServer(ServerSpec),
    /// `-e`: replaces all the server's settings (defaults for those not given).
    EditServer(ServerSpec),
    /// `-d`.
    DelServer {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: IpAddr,
        /// Server port (the service's port when `-r` has none).
        port: u16,
    },
    /// `-C`.
    Clear,
    /// `-L|-l`; also what vsadm without arguments does.
    List(ListOptions),
    /// `-Z [service]`.
    Zero(Option<ServiceKey>),
    /// `--set tcp tcpfin udp` (0 keeps a value).
    SetTimeouts {
        /// ESTABLISHED timeout, seconds.
        tcp: u32,
        /// FIN_WAIT timeout, seconds.
        tcpfin: u32,
        /// UDP timeout, seconds.
        udp: u32,
    },
    /// `--set-defense key=value...` (vsd): IPVS's drop_entry / secure_tcp
    /// knobs and the SYN_RECV timeout.
    SetDefense(DefenseChange),
    /// `--set-sync key=value...` (vsd): the kernel's sync sysctls
    /// (sync_threshold, sync_refresh_period, sync_retries,
    /// sync_persist_mode, sync_version).
    SetSync(SyncChange),
    /// `-S [-n]`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-R`: the rules come on standard input (vsadm sends them along).
    Restore,
    /// `--start-daemon`.
    StartDaemon(SyncDaemonSpec),
    /// `--stop-daemon`.
    StopDaemon(SyncRole),
    /// `--add-laddr -z LIP -t|-u VIP:PORT` (FULLNAT local address).
    AddLocalAddr {
        /// The service.
        service: ServiceKey,
        /// The local address.
        addr: IpAddr,
    },
    /// `--del-laddr -z LIP -t|-u VIP:PORT`.
    DelLocalAddr {
        /// The service.
        service: ServiceKey,
        /// The local address.
        addr: IpAddr,
    },
    /// `--get-laddr [-t|-u VIP:PORT]`.
    GetLocalAddrs(Option<ServiceKey>),
    /// `--add-mark [--dst P] [--proto tcp|udp] [--dport A[:B]] --set-mark N`:
    /// append a rule to the firewall-mark classifier ([`crate::lb::mark`]).
    AddMark(MarkRule),
    /// `--del-mark` with the same rule: remove it.
    DelMark(MarkRule),
    /// `--counters [--per-worker]`: data-plane counters, drops by reason.
    Counters {
        /// Every worker's counters too, not only the totals.
        per_worker: bool,
    },
    /// `--latency`: latency histograms.
    Latency,
    /// `--status`: daemon, workers and ports.
    Status,
    /// `--reload`: re-read the configuration file.
    Reload,
    /// `--prometheus`: every metric in Prometheus text format.
    Prometheus,
    /// `--checks`: health checks, per service, server and checker.
    Checks,
    /// `--drain [--timeout S] [--wait]` (vsd): withdraw every VIP, keep
    /// forwarding until no active connection is left or the timeout.
    Drain {
        /// `--timeout S`: instead of `[announce] drain_timeout`.
        timeout: Option<u32>,
        /// `--wait`: vsadm returns when the drain is done.
        wait: bool,
    },
    /// `--undrain` (vsd): end the drain; the rule announces again.
    Undrain,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

impl Command {
    /// Whether the command changes the configuration (the daemon republishes
    /// its snapshot after those).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Command::AddService(_)
                | Command::EditService(_)
                | Command::DelService(_)
                | Command::AddServer(_)
                | Command::EditServer(_)
                | Command::DelServer { .. }
                | Command::Clear
                | Command::SetTimeouts { .. }
                | Command::SetDefense(_)
                | Command::SetSync(_)
                | Command::Restore
                | Command::StartDaemon(_)
                | Command::StopDaemon(_)
                | Command::AddLocalAddr { .. }
                | Command::DelLocalAddr { .. }
                | Command::AddMark(_)
                | Command::DelMark(_)
                | Command::Reload
                | Command::Drain { .. }
                | Command::Undrain
        )
    }
}

/// `--set-defense` words: each setting given, the others unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DefenseChange {
    /// `drop_entry=0..3`.
    pub drop_entry: Option<u8>,
    /// `secure_tcp=0..3`.
    pub secure_tcp: Option<u8>,
    /// `synrecv=SECS`: the SYN_RECV timeout (1 s and more).
    pub synrecv: Option<u32>,
    /// `pressure=PCT`: table fill (1..=100 %) that turns modes 1 and 2 on.
    pub pressure: Option<u8>,
    /// `sloppy_tcp=0|1`: a non-SYN TCP packet may create a connection.
    pub sloppy_tcp: Option<bool>,
}

impl DefenseChange {
    /// Parse `key=value` words; at least one, each key at most once.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<DefenseChange, String> {
        const USE: &str = "--set-defense takes drop_entry=0..3, secure_tcp=0..3, \
                           synrecv=SECS, pressure=1..100 or sloppy_tcp=0|1";
        if words.is_empty() {
            return Err(format!("{USE}: nothing to set"));
        }
        let mut c = DefenseChange::default();
        for w in words {
            let w = w.as_ref();
            let Some((key, value)) = w.split_once('=') else {
                return Err(format!("{USE}: `{w}' is not key=value"));
            };
            let bad = || format!("invalid {key} value `{value}' specified");
            let dup = || format!("{key} given twice");
            match key {
                "drop_entry" | "secure_tcp" => {
                    let n = number(value, 0, 3).ok_or_else(|| {
                        format!("invalid {key} value `{value}' specified: must be 0..3")
                    })? as u8;
                    let slot = if key == "drop_entry" {
                        &mut c.drop_entry
                    } else {
                        &mut c.secure_tcp
                    };
                    if slot.replace(n).is_some() {
                        return Err(dup());
                    }
                }
                "synrecv" => {
                    let n = timeout(value, 1).map_err(|_| bad())?;
                    if c.synrecv.replace(n).is_some() {
                        return Err(dup());
                    }
                }
                "pressure" => {
                    let n = number(value, 1, 100).ok_or_else(|| {
                        format!(
                            "invalid pressure value `{value}' specified: must be 1..100 (percent)"
                        )
                    })? as u8;
                    if c.pressure.replace(n).is_some() {
                        return Err(dup());
                    }
                }
                "sloppy_tcp" => {
                    let on = match value {
                        "0" => false,
                        "1" => true,
                        _ => {
                            return Err(format!(
                                "invalid sloppy_tcp value `{value}' specified: must be 0 or 1"
                            ))
                        }
                    };
                    if c.sloppy_tcp.replace(on).is_some() {
                        return Err(dup());
                    }
                }
                "sloppy_sctp" => {
                    return Err("sloppy_sctp: vsd has no SCTP services (--sctp-service is \
                                refused), so there is nothing to pick up"
                        .into())
                }
                _ => return Err(format!("{USE}: unknown setting `{key}'")),
            }
        }
        Ok(c)
    }
}

/// `--set-sync` words: each setting given, the others unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncChange {
    /// `threshold=N` (sync_threshold's first value).
    pub threshold: Option<u32>,
    /// `period=N` (sync_threshold's second value).
    pub period: Option<u32>,
    /// `refresh_period=SECS` (sync_refresh_period).
    pub refresh_period: Option<u32>,
    /// `retries=0..3` (sync_retries).
    pub retries: Option<u8>,
    /// `persist_mode=0|1` (sync_persist_mode).
    pub persist_mode: Option<bool>,
    /// `version=0|1` (sync_version).
    pub version: Option<u8>,
}

impl SyncChange {
    /// Parse `key=value` words; at least one, each key at most once.
    /// Ranges are checked here; the combination (threshold below period,
    /// version) by [`crate::lb::sync::SyncSettings::validate`].
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<SyncChange, String> {
        const USE: &str = "--set-sync takes threshold=N, period=N, refresh_period=SECS, \
                           retries=0..3, persist_mode=0|1 or version=0|1";
        if words.is_empty() {
            return Err(format!("{USE}: nothing to set"));
        }
        let mut c = SyncChange::default();
        for w in words {
            let w = w.as_ref();
            let Some((key, value)) = w.split_once('=') else {
                return Err(format!("{USE}: `{w}' is not key=value"));
            };
            let num = |lo: i64, hi: i64| {
                number(value, lo, hi).ok_or_else(|| {
                    format!("invalid {key} value `{value}' specified: must be {lo}..{hi}")
                })
            };
            let fresh = match key {
                "threshold" => c.threshold.replace(num(0, i64::from(i32::MAX))? as u32),
                "period" => c.period.replace(num(0, i64::from(i32::MAX))? as u32),
                "refresh_period" => c
                    .refresh_period
                    .replace(num(0, i64::from(crate::lb::sync::MAX_REFRESH_PERIOD_S))? as u32),
                "retries" => c.retries.replace(num(0, 3)? as u8).map(u32::from),
                "persist_mode" => c.persist_mode.replace(num(0, 1)? == 1).map(u32::from),
                "version" => c.version.replace(num(0, 1)? as u8).map(u32::from),
                _ => return Err(format!("{USE}: unknown setting `{key}'")),
            };
            if fresh.is_some() {
                return Err(format!("{key} given twice"));
            }
        }
        Ok(c)
    }

    /// `s` with the given settings changed.
    pub fn apply(&self, s: crate::lb::sync::SyncSettings) -> crate::lb::sync::SyncSettings {
        crate::lb::sync::SyncSettings {
            threshold: self.threshold.unwrap_or(s.threshold),
            period: self.period.unwrap_or(s.period),
            refresh_period_s: self.refresh_period.unwrap_or(s.refresh_period_s),
            retries: self.retries.unwrap_or(s.retries),
            persist_mode: self.persist_mode.unwrap_or(s.persist_mode),
            version: self.version.unwrap_or(s.version),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The command/option table
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The option spellings
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Value parsers (ipvsadm's helpers)
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------

/// Splits one line of `-R` input into words: whitespace-separated, an
/// optional leading `ipvsadm` or `vsadm`. Blank lines and `#` comments give
/// no words.
pub fn restore_line_words(line: &str) -> Vec<&str> {
    let line = line.trim();
    if line.starts_with('#') {
        return Vec::new();
    }
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if matches!(words.first(), Some(&"ipvsadm") | Some(&"vsadm")) {
        words.remove(0);
    }
    words
}

/// Parses a whole `-R` input: every non-empty line is one ipvsadm command.
/// Fails on the first bad line (`line N: message`); `-R` inside `-R` is
/// refused as ipvsadm does.
pub fn parse_restore(text: &str) -> Result<Vec<Command>, String> {
    let mut cmds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words = restore_line_words(line);
        if words.is_empty() {
            continue;
        }
        let cmd = parse(&words).map_err(|e| format!("line {}: {e}", n + 1))?;
        if matches!(cmd, Command::Restore | Command::Help | Command::Version) {
            return Err(format!(
                "line {}: -R input cannot contain {}",
                n + 1,
                words.join(" ")
            ));
        }
        cmds.push(cmd);
    }
    Ok(cmds)
}

/// ipvsadm's usage text, with vsd's additions.
pub fn usage(program: &str) -> String {
    let p = program;
    format!(
        "Usage:\n\
\x20 {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o] [--synproxy]\n\
\x20 {p} -D virtual-service\n\
\x20 {p} -C\n\
\x20 {p} -R\n\
\x20 {p} -S [-n]\n\
\x20 {p} -a|e virtual-service -r server-address [options]\n\
\x20 {p} -d virtual-service -r server-address\n\
\x20 {p} -L|l [virtual-service] [options]\n\
\x20 {p} -Z [virtual-service]\n\
\x20 {p} --set tcp tcpfin udp\n\
\x20 {p} --set-defense [drop_entry=N] [secure_tcp=N] [synrecv=SECS] [pressure=PCT] [sloppy_tcp=0|1]\n\
\x20 {p} --start-daemon {{master|backup}} [daemon-options]\n\
\x20 {p} --stop-daemon {{master|backup}}\n\
\x20 {p} --set-sync [threshold=N] [period=N] [refresh_period=SECS] [retries=N] [persist_mode=0|1]\n\
\x20 {p} --add-laddr|--del-laddr -z local-address virtual-service\n\
\x20 {p} --get-laddr [virtual-service]\n\
\x20 {p} --add-mark|--del-mark [--dst address[/len]] [--proto tcp|udp] [--dport port[:last]] --set-mark fwmark\n\
\x20 {p} --status | --counters [--per-worker] | --latency | --prometheus | --reload\n\
\x20 {p} --drain [--timeout seconds] [--wait] | --undrain\n\
\x20 {p} -h\n\n\
Commands:\n\
Either long or short options are allowed.\n\
\x20 --add-service     -A        add virtual service with options\n\
\x20 --edit-service    -E        edit virtual service with options\n\
\x20 --delete-service  -D        delete virtual service\n\
\x20 --clear           -C        clear the whole table\n\
\x20 --restore         -R        restore rules from stdin\n\
\x20 --save            -S        save rules to stdout\n\
\x20 --add-server      -a        add real server with options\n\
\x20 --edit-server     -e        edit real server with options\n\
\x20 --delete-server   -d        delete real server\n\
\x20 --list            -L|-l     list the table\n\
\x20 --zero            -Z        zero counters in a service or all services\n\
\x20 --set tcp tcpfin udp        set connection timeout values\n\
\x20 --set-defense key=value...  SYN-flood defences (vsd): drop_entry=0..3 and\n\
\x20                             secure_tcp=0..3 (0 off, 1|2 when a worker's table\n\
\x20                             is at least pressure=PCT % full, 3 always),\n\
\x20                             synrecv=SECS (SYN_RECV timeout; 10 s at most while\n\
\x20                             secure_tcp is on), sloppy_tcp=0|1 (a non-SYN TCP\n\
\x20                             packet may open a connection); show with\n\
\x20                             -L --defense\n\
\x20 --set-sync key=value...     connection sync knobs (the kernel's sysctls):\n\
\x20                             threshold=3 period=50 (sync a connection when its\n\
\x20                             packet count % period == threshold), refresh_period=\n\
\x20                             SECS (0: off), retries=0..3, persist_mode=0|1,\n\
\x20                             version=1; show with -L --sync\n\
\x20 --start-daemon              start connection sync daemon\n\
\x20 --stop-daemon               stop connection sync daemon\n\
\x20 --add-laddr                 add a FULLNAT local address to a service\n\
\x20 --del-laddr                 remove a FULLNAT local address\n\
\x20 --get-laddr                 list FULLNAT local addresses\n\
\x20 --add-mark                  append a firewall-mark rule (first match wins)\n\
\x20 --del-mark                  remove the identical firewall-mark rule\n\
\x20 --status                    show the daemon, its workers and ports\n\
\x20 --counters                  show data-plane counters and drops by reason\n\
\x20 --latency                   show latency histograms\n\
\x20 --prometheus                print every metric in Prometheus text format\n\
\x20 --checks                    show health checks: pool, quorum and checker states\n\
\x20 --reload                    re-read the configuration file\n\
\x20 --drain                     withdraw every announced VIP ([announce]), keep\n\
\x20                             forwarding until no active connection is left or\n\
\x20                             the timeout (--timeout seconds); --wait: until done\n\
\x20 --undrain                   end a drain: announce again\n\
\x20 --help            -h        display this help message\n\n\
virtual-service:\n\
\x20 --tcp-service|-t  service-address   service-address is host[:port]\n\
\x20 --udp-service|-u  service-address   service-address is host[:port]\n\
\x20 --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n\n\
Options:\n\
\x20 --ipv6         -6                   fwmark entry uses IPv6\n\
\x20 --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,\n\
\x20                                     the default scheduler is wlc.\n\
\x20 --persistent   -p [timeout]         persistent service\n\
\x20 --netmask      -M netmask           persistent granularity mask\n\
\x20 --real-server  -r server-address    server-address is host (and port)\n\
\x20 --gatewaying   -g                   gatewaying (direct routing) (default)\n\
\x20 --ipip         -i                   ipip encapsulation (tunneling)\n\
\x20 --masquerading -m                   masquerading (NAT)\n\
\x20 --fullnat                           full NAT (source from the local addresses)\n\
\x20 --laddr        -z local-address     FULLNAT local address\n\
\x20 --weight       -w weight            capacity of real server\n\
\x20 --u-threshold  -x uthreshold        upper threshold of connections\n\
\x20 --l-threshold  -y lthreshold        lower threshold of connections\n\
\x20 --connection   -c                   output of current IPVS connections\n\
\x20 --timeout                           output of timeout (tcp tcpfin udp)\n\
\x20 --daemon                            output of daemon information\n\
\x20 --marks                             output of the firewall-mark rules\n\
\x20 --defense                           output of SYN-flood defence settings (vsd)\n\
\x20 --sync                              output of connection sync settings (vsd)\n\
\x20 --announce                          output of VIP announcement and drain state (vsd)\n\
\x20 --stats                             output of statistics information\n\
\x20 --rate                              output of rate information\n\
\x20 --exact                             expand numbers (display exact values)\n\
\x20 --thresholds                        output of thresholds information\n\
\x20 --persistent-conn                   output of persistent connection info\n\
\x20 --tun-info                          output of tunnel information\n\
\x20 --nosort                            disable sorting output of service/server entries\n\
\x20 --sort                              does nothing, for backwards compatibility\n\
\x20 --ops          -o                   one-packet scheduling\n\
\x20 --synproxy                          SYN proxy with SYN cookies (vsd; IPv4 TCP,\n\
\x20                                     NAT and FULLNAT servers only)\n\
\x20 --numeric      -n                   numeric output of addresses and ports (always on)\n\
\x20 --sched-flags  -b flags             scheduler flags (comma-separated)\n\
\x20 --per-worker                        every worker's counters (with --counters)\n\
\x20 --dst address[/len]                 mark rule: destination (default 0.0.0.0/0)\n\
\x20 --proto tcp|udp                     mark rule: protocol (default any)\n\
\x20 --dport port[:last]                 mark rule: destination ports (needs --proto)\n\
\x20 --set-mark fwmark                   mark rule: the mark it sets\n\
\x20 --socket PATH                       vsd's control socket\n\
\x20 --json                              print the daemon's JSON answer\n\
Daemon Options:\n\
\x20 --syncid sid                        syncid for connection sync (default=255)\n\
\x20 --sync-maxlen length                Max sync message length (default=1472)\n\
\x20 --mcast-interface interface         multicast interface for connection sync\n\
\x20 --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n\
\x20 --mcast-port port                   UDP port (default=8848)\n\
\x20 --mcast-ttl ttl                     Multicast TTL (default=1)\n\
\x20 --sync-peer address                 unicast peer instead of the group (vsd;\n\
\x20                                     repeat for each peer)\n\
\x20 --sync-transport auto|kernel|dataplane how a master sends (vsd; auto: straight\n\
\x20                                     from the workers on a DPDK port or its twin)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::service::{PersistMask, SchedFlags};
    use crate::lb::types::{AddrFamily, FwdMethod};
    use std::net::Ipv6Addr;

    fn p(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse(&words)
    }
    fn ok(line: &str) -> Command {
        p(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
    fn err(line: &str) -> String {
        match p(line) {
            Ok(c) => panic!("{line}: parsed as {c:?}"),
            Err(e) => e,
        }
    }
    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn vip() -> ServiceKey {
        ServiceKey::tcp(v4("198.18.0.100"), 80)
    }
    fn svc(line: &str) -> ServiceSpec {
        match ok(line) {
            Command::AddService(s) | Command::EditService(s) => s,
            other => panic!("{other:?}"),
        }
    }
    fn server(line: &str) -> ServerSpec {
        match ok(line) {
            Command::AddServer(s) | Command::EditServer(s) => s,
            other => panic!("{other:?}"),
        }
    }
    fn list(line: &str) -> ListOptions {
        match ok(line) {
            Command::List(l) => l,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_service_defaults_and_options() {
        let s = svc("-A -t 198.18.0.100:80");
        assert_eq!(s.key, vip());
        assert_eq!(s.config, ServiceConfig::default());
        assert_eq!(s.config.scheduler, "wlc");
        let s = svc("-A -t 198.18.0.100:80 -s wrr -p 60 -M 255.255.255.0");
        assert_eq!(s.config.scheduler, "wrr");
        assert_eq!(s.config.persistence, Some(60));
        assert_eq!(
            s.config.persist_mask,
            Some(PersistMask::V4("255.255.255.0".parse().unwrap()))
        );
        // -p alone (also when an option follows) is 300.
        assert_eq!(
            svc("-A -t 198.18.0.100:80 -p").config.persistence,
            Some(300)
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 -p -s rr").config.persistence,
            Some(300)
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 -p120").config.persistence,
            Some(120)
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 --persistent=7")
                .config
                .persistence,
            Some(7)
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 --persistent 8")
                .config
                .persistence,
            Some(8)
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 -p 2678400").config.persistence,
            Some(MAX_TIMEOUT)
        );
        // Long forms.
        let s = svc(
            "--add-service --tcp-service 198.18.0.100:80 --scheduler sh --persistent 30 \
             --netmask 255.255.0.0 --sched-flags sh-fallback,sh-port",
        );
        assert_eq!(s.config.scheduler, "sh");
        assert_eq!(
            s.config.flags,
            SchedFlags {
                sh_fallback: true,
                sh_port: true,
                ..SchedFlags::default()
            }
        );
        let s = svc("-A -u 198.18.0.100:53 -o");
        assert_eq!(s.key, ServiceKey::udp(v4("198.18.0.100"), 53));
        assert!(s.config.one_packet);
        assert!(
            svc("-A --udp-service 198.18.0.100:53 --ops")
                .config
                .one_packet
        );
        // Clustered: -At is -A -t.
        assert_eq!(svc("-At 198.18.0.100:80 -srr").config.scheduler, "rr");
        // -E is a full replacement with the same defaults.
        match ok("-E -t 198.18.0.100:80") {
            Command::EditService(s) => assert_eq!(s.config, ServiceConfig::default()),
            c => panic!("{c:?}"),
        }
        assert_eq!(
            ok("--edit-service -t 198.18.0.100:80 -s rr"),
            Command::EditService(ServiceSpec {
                key: vip(),
                config: ServiceConfig::with_scheduler("rr"),
            })
        );
    }

    #[test]
    fn service_errors() {
        assert_eq!(
            err("-A -t 198.18.0.100:80 -p abc"),
            "invalid timeout value `abc' specified"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -p 0"),
            "invalid timeout value `0' specified"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -p 2678401"),
            "invalid timeout value `2678401' specified"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:0"),
            "Zero port specified for non-persistent service"
        );
        assert_eq!(svc("-A -t 198.18.0.100:0 -p").key.port(), 0);
        assert_eq!(
            err("-A -t 198.18.0.100:80 -o"),
            "One-Packet Scheduling is only for UDP virtual services"
        );
        assert!(svc("-A -f 3 -o").config.one_packet);
        assert_eq!(
            err("-A -t 198.18.0.100:80 -M 255.255.x.0"),
            "illegal virtual server persistent mask specified"
        );
        assert_eq!(
            err("-A -t [2001:db8::1]:80 -p -M 0"),
            "illegal ipv6 netmask specified"
        );
        assert_eq!(
            err("-A -t [2001:db8::1]:80 -p -M 129"),
            "illegal ipv6 netmask specified"
        );
        assert_eq!(
            svc("-A -t [2001:db8::1]:80 -p -M 64").config.persist_mask,
            Some(PersistMask::V6(64))
        );
        // -M before -t still reads as an IPv6 prefix.
        assert_eq!(
            svc("-A -M 48 -t [2001:db8::1]:80 -p").config.persist_mask,
            Some(PersistMask::V6(48))
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -b sh-port"),
            "incompatible scheduler flag `sh-port'"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -s sh -b mh-port"),
            "incompatible scheduler flag `mh-port'"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -s sh -b fast"),
            "invalid scheduler flag `fast'"
        );
        // flag-N: sh/mh meaning, else no effect.
        assert!(
            svc("-A -t 198.18.0.100:80 -s sh -b flag-1")
                .config
                .flags
                .sh_fallback
        );
        assert!(
            svc("-A -t 198.18.0.100:80 -s mh -b flag-2")
                .config
                .flags
                .mh_port
        );
        assert_eq!(
            svc("-A -t 198.18.0.100:80 -s rr -b flag-1,flag-3")
                .config
                .flags,
            SchedFlags::default()
        );
        assert_eq!(
            err("-A -s rr"),
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -r 198.18.1.1"),
            "Illegal 'real-server' option with the 'add-service' command"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -w 2"),
            "Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            err("-D -t 198.18.0.100:80 -s rr"),
            "Illegal 'scheduler' option with the 'delete-service' command"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -t 198.18.0.101:80"),
            "multiple 'service-address' options specified"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -s rr -s wrr"),
            "multiple 'scheduler' options specified"
        );
        assert_eq!(
            err("--sctp-service 198.18.0.100:80 -A"),
            "SCTP services are not supported by vsd"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -p --pe sip"),
            "persistence engine `sip' is not supported by vsd"
        );
        assert_eq!(ok("-D -t 198.18.0.100:80"), Command::DelService(vip()));
        assert_eq!(
            ok("--delete-service --tcp-service 198.18.0.100:80"),
            Command::DelService(vip())
        );
    }

    #[test]
    fn addresses_ports_and_fwmarks() {
        let six: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            svc("-A -t [2001:db8::1]:443").key,
            ServiceKey::tcp(IpAddr::V6(six), 443)
        );
        // A bare IPv6 address has no port.
        assert_eq!(
            svc("-A -t 2001:db8::1 -p").key,
            ServiceKey::tcp(IpAddr::V6(six), 0)
        );
        assert_eq!(svc("-A -t 198.18.0.100:http").key, vip());
        assert_eq!(svc("-A -u 198.18.0.100:domain").key.port(), 53);
        for bad in [
            "80",
            "198.18.0.100:99999",
            "198.18.0.100:nosuchservice",
            "host.example:80",
            "[2001:db8::1]",
            "[2001:db8::1]80",
            "[2001:db8::zz]:80",
            "198.18.0:80",
        ] {
            assert_eq!(
                err(&format!("-A -t {bad}")),
                "illegal virtual server address[:port] specified",
                "{bad}"
            );
        }
        assert_eq!(svc("-A -f 7").key, ServiceKey::fwmark(7, AddrFamily::Inet));
        assert_eq!(
            svc("-A --fwmark-service 7 --ipv6").key,
            ServiceKey::fwmark(7, AddrFamily::Inet6)
        );
        assert_eq!(
            svc("-A -f 7 -6 -p -M 64").config.persist_mask,
            Some(PersistMask::V6(64))
        );
        assert_eq!(err("-A -6 -f 7"), "-6 used before -f");
        assert_eq!(err("-A -f 0"), "invalid fwmark value `0' specified");
        assert_eq!(err("-A -f x"), "invalid fwmark value `x' specified");
        assert_eq!(
            err("-A -f 4294967296"),
            "invalid fwmark value `4294967296' specified"
        );
        assert_eq!(svc("-A -f 4294967295").key.port(), 0);
        assert_eq!(parse_addr_port("1.2.3.4"), Some((v4("1.2.3.4"), None)));
        assert_eq!(parse_addr_port("1.2.3.4:0"), Some((v4("1.2.3.4"), Some(0))));
        assert_eq!(parse_addr_port(""), None);
    }

    #[test]
    fn add_server_defaults_and_port_rules() {
        let s = server("-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m");
        assert_eq!(s.service, vip());
        assert_eq!(
            s.server,
            RealServerConfig::new(v4("198.18.1.11"), 8080, FwdMethod::Masq)
        );
        // Default: direct routing, weight 1; DR and TUN take the virtual port.
        let s = server("-a -t 198.18.0.100:80 -r 198.18.1.11:8080");
        assert_eq!(
            s.server,
            RealServerConfig::new(v4("198.18.1.11"), 80, FwdMethod::Route)
        );
        assert_eq!(
            server("-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -i")
                .server
                .port,
            80
        );
        assert_eq!(
            server("-a -t 198.18.0.100:80 -r 198.18.1.11:8080 --fullnat").server,
            RealServerConfig::new(v4("198.18.1.11"), 8080, FwdMethod::FullNat)
        );
        // No port: the service's, even when -r comes first.
        assert_eq!(
            server("-a -r 198.18.1.11 -t 198.18.0.100:80 -m")
                .server
                .port,
            80
        );
        // fwmark services: no port means 0; a given port stays even for DR.
        assert_eq!(server("-a -f 3 -r 198.18.1.11").server.port, 0);
        assert_eq!(server("-a -f 3 -r 198.18.1.11:25").server.port, 25);
        let s = server(
            "--add-server --tcp-service 198.18.0.100:80 --real-server 198.18.1.11:80 \
             --gatewaying --weight 5 --u-threshold 100 --l-threshold 50",
        );
        assert_eq!(
            s.server,
            RealServerConfig::new(v4("198.18.1.11"), 80, FwdMethod::Route)
                .weight(5)
                .thresholds(100, 50)
        );
        assert_eq!(
            server("-a -t 198.18.0.100:80 -r 198.18.1.11 --masquerading -w 0")
                .server
                .weight,
            0
        );
        assert_eq!(
            server("-a -t 198.18.0.100:80 -r 198.18.1.11 --ipip")
                .server
                .method,
            FwdMethod::Tunnel
        );
        assert_eq!(
            server("-a -t 198.18.0.100:80 -r 198.18.1.11 -i --tun-type ipip")
                .server
                .method,
            FwdMethod::Tunnel
        );
        // -e: full replacement with defaults.
        assert_eq!(
            ok("-e -t 198.18.0.100:80 -r 198.18.1.11:8080 -w 3"),
            Command::EditServer(ServerSpec {
                service: vip(),
                server: RealServerConfig::new(v4("198.18.1.11"), 80, FwdMethod::Route).weight(3),
            })
        );
        assert!(matches!(
            ok("--edit-server -t 198.18.0.100:80 -r 198.18.1.11 -m"),
            Command::EditServer(_)
        ));
        // IPv6 server of an IPv4 service: tunnel only.
        let s = server("-a -t 198.18.0.100:80 -r [2001:db8::5]:80 -i");
        assert_eq!(s.server.addr, "2001:db8::5".parse::<IpAddr>().unwrap());
        assert_eq!(
            err("-a -t 198.18.0.100:80 -r [2001:db8::5]:80 -m"),
            "Different address family is allowed only for tunneling servers"
        );
        // NAT64: an IPv4 FULLNAT server of an IPv6 service; not the reverse
        let s = server("-a -t [2001:db8::64]:80 -r 198.18.1.11:8080 --fullnat");
        assert_eq!(s.server.method, FwdMethod::FullNat);
        assert_eq!(
            err("-a -t 198.18.0.100:80 -r [2001:db8::5]:80 --fullnat"),
            "Different address family is allowed only for tunneling servers"
        );
        // -d: port as given, else the service's.
        assert_eq!(
            ok("-d -t 198.18.0.100:80 -r 198.18.1.11:8080"),
            Command::DelServer {
                service: vip(),
                addr: v4("198.18.1.11"),
                port: 8080
            }
        );
        assert_eq!(
            ok("--delete-server -t 198.18.0.100:80 -r 198.18.1.11"),
            Command::DelServer {
                service: vip(),
                addr: v4("198.18.1.11"),
                port: 80
            }
        );
    }

    #[test]
    fn server_errors() {
        let base = "-a -t 198.18.0.100:80 -r 198.18.1.11:8080";
        for (extra, want) in [
            ("-w 65536", "illegal weight specified"),
            ("-w -1", "illegal weight specified"),
            ("-w x", "illegal weight specified"),
            ("-x -1", "illegal u_threshold specified"),
            ("-x 2147483648", "illegal u_threshold specified"),
            ("-y z", "illegal l_threshold specified"),
            ("-m -g", "multiple 'forwarding-method' options specified"),
            (
                "-m --fullnat",
                "multiple 'forwarding-method' options specified",
            ),
            ("-w 1 -w 2", "multiple 'weight' options specified"),
            (
                "-s rr",
                "Illegal 'scheduler' option with the 'add-server' command",
            ),
            (
                "-p",
                "Illegal 'persistent' option with the 'add-server' command",
            ),
            (
                "-m --tun-type ipip",
                "Tunnel options conflict with forward method",
            ),
            (
                "-i --tun-type gue",
                "tunnel type gue is not supported by vsd (only ipip)",
            ),
            ("-i --tun-type vxlan", "illegal tunnel type specified"),
            (
                "-i --tun-port 6080",
                "Illegal 'tun-port' option with the 'ipip' tunnel type",
            ),
            (
                "-i --tun-csum",
                "Illegal 'tun-csum' option with the 'ipip' tunnel type",
            ),
            ("-i --tun-port 0", "illegal tunnel port specified"),
            ("-w", "-w: missing argument"),
        ] {
            assert_eq!(err(&format!("{base} {extra}")), want, "{extra}");
        }
        assert_eq!(
            server(&format!("{base} -w 65535 -x 2147483647"))
                .server
                .upper_threshold,
            i32::MAX as u32
        );
        assert_eq!(
            err("-a -t 198.18.0.100:80 -m"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            err("-a -r 198.18.1.11"),
            "You need to supply the 'service-address' option for the 'add-server' command"
        );
        assert_eq!(
            err("-a -t 198.18.0.100:80 -r 80"),
            "illegal real server address[:port] specified"
        );
        assert_eq!(
            err("-d -t 198.18.0.100:80 -r 198.18.1.11 -w 2"),
            "Illegal 'weight' option with the 'delete-server' command"
        );
        assert_eq!(
            err("-d -t 198.18.0.100:80 -r 198.18.1.11 -m"),
            "Illegal 'forwarding-method' option with the 'delete-server' command"
        );
    }

    #[test]
    fn list_variants() {
        assert_eq!(
            parse::<&str>(&[]),
            Ok(Command::List(ListOptions::default()))
        );
        assert_eq!(list("-L"), ListOptions::default());
        assert_eq!(list("-l"), ListOptions::default());
        assert_eq!(list("--list"), ListOptions::default());
        let l = list("-Ln");
        assert!(l.format.numeric);
        let l = list("-L -n --stats --exact");
        assert!(l.format.stats && l.format.exact && l.format.numeric);
        assert!(list("-Ln --rate").format.rate);
        assert!(list("-Ln --thresholds").format.thresholds);
        assert!(list("-Ln --persistent-conn").format.persistent_conn);
        assert!(list("-Ln --tun-info").format.tun_info);
        assert!(list("-Ln --nosort").format.nosort);
        assert_eq!(list("-Ln --sort"), list("-Ln"));
        assert!(list("-L -X").format.exact);
        assert_eq!(list("-Lnc").what, ListWhat::Connections);
        assert_eq!(list("-L --connection").what, ListWhat::Connections);
        assert!(list("-Lnc --persistent-conn").format.persistent_conn);
        assert_eq!(list("-L --timeout").what, ListWhat::Timeouts);
        assert_eq!(list("-L --daemon").what, ListWhat::Daemons);
        let l = list("-Ln -t 198.18.0.100:80 --stats");
        assert_eq!((l.what, l.service), (ListWhat::Services, Some(vip())));
        assert_eq!(
            err("-L -c --stats"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L --timeout --rate"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L --daemon --persistent-conn"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L -c -t 198.18.0.100:80"),
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
        );
        assert_eq!(
            err("-L --timeout --daemon"),
            "The option 'daemon' conflicts with the 'timeout' option in the 'list' command"
        );
        assert_eq!(
            err("-L -s rr"),
            "Illegal 'scheduler' option with the 'list' command"
        );
        assert_eq!(err("-L -n -n"), "multiple 'numeric' options specified");
    }

    #[test]
    fn other_commands() {
        assert_eq!(ok("-C"), Command::Clear);
        assert_eq!(ok("--clear"), Command::Clear);
        assert_eq!(
            err("-C -n"),
            "Illegal 'numeric' option with the 'flush' command"
        );
        assert_eq!(ok("-Z"), Command::Zero(None));
        assert_eq!(ok("--zero -t 198.18.0.100:80"), Command::Zero(Some(vip())));
        assert_eq!(
            err("-Z -n"),
            "Illegal 'numeric' option with the 'zero' command"
        );
        assert_eq!(
            ok("--set 900 120 300"),
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(
            ok("--set 0 0 5"),
            Command::SetTimeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 5
            }
        );
        assert_eq!(err("--set 1 2"), "--set option requires 3 timeout values");
        assert_eq!(err("--set 1 x 3"), "invalid timeout value `x' specified");
        assert_eq!(err("--set 1 2 3 4"), "unexpected argument 4");
        assert_eq!(err("-C extra"), "unexpected argument extra");
        assert_eq!(ok("-S"), Command::Save { numeric: false });
        assert_eq!(ok("--save -n"), Command::Save { numeric: true });
        assert_eq!(ok("-Sn"), Command::Save { numeric: true });
        assert_eq!(
            err("-S --stats"),
            "Illegal 'stats' option with the 'save' command"
        );
        assert_eq!(ok("-R"), Command::Restore);
        assert_eq!(ok("--restore"), Command::Restore);
        assert_eq!(
            err("-R -n"),
            "Illegal 'numeric' option with the 'restore' command"
        );
        assert_eq!(ok("-h"), Command::Help);
        assert_eq!(ok("-A --help"), Command::Help);
        assert_eq!(ok("-v"), Command::Version);
        assert_eq!(ok("--version"), Command::Version);
    }

    #[test]
    fn set_sync_sync_peers_and_the_listing() {
        assert_eq!(
            ok("--set-sync threshold=5 period=100 refresh_period=60 retries=2 persist_mode=1"),
            Command::SetSync(SyncChange {
                threshold: Some(5),
                period: Some(100),
                refresh_period: Some(60),
                retries: Some(2),
                persist_mode: Some(true),
                version: None,
            })
        );
        let Command::SetSync(c) = ok("--set-sync period=0") else {
            panic!()
        };
        let s = c.apply(crate::lb::sync::SyncSettings::default());
        assert_eq!((s.threshold, s.period), (3, 0));
        assert!(ok("--set-sync retries=1").is_change());
        assert!(err("--set-sync").contains("nothing to set"));
        assert!(err("--set-sync retries=4").contains("must be 0..3"));
        assert!(err("--set-sync persist_mode=2").contains("must be 0..1"));
        assert!(err("--set-sync threshold=-1").contains("invalid threshold"));
        assert!(err("--set-sync period=1 period=2").contains("period given twice"));
        assert!(err("--set-sync sync_qlen_max=1").contains("unknown setting `sync_qlen_max'"));
        assert!(err("--set-sync retries").contains("not key=value"));
        assert_eq!(
            err("--set-sync retries=1 --syncid 3"),
            "Illegal 'syncid' option with the 'set-sync' command"
        );
        assert_eq!(list("-L --sync").what, ListWhat::SyncSettings);
        assert_eq!(
            err("-L --sync --daemon"),
            "The option 'sync' conflicts with the 'daemon' option in the 'list' command"
        );
        // unicast peers, repeated
        let Command::StartDaemon(spec) =
            ok("--start-daemon master --sync-peer 198.18.0.2 --sync-peer 198.18.0.3")
        else {
            panic!()
        };
        assert_eq!(spec.peers, [v4("198.18.0.2"), v4("198.18.0.3")]);
        assert!(
            err("--start-daemon master --sync-peer 198.18.0.2 --sync-peer 198.18.0.2")
                .contains("given twice")
        );
        assert!(err("--start-daemon master --sync-peer 224.0.0.81").contains("unicast"));
        assert!(err("--start-daemon master --sync-peer ff02::1").contains("unicast"));
        assert!(err("--start-daemon master --sync-peer 255.255.255.255").contains("unicast"));
        // IPv6 peers too (the kernel's IPv6 sync)
        let Command::StartDaemon(spec) = ok("--start-daemon backup --sync-peer 2001:2::2") else {
            panic!()
        };
        assert_eq!(spec.peers, ["2001:2::2".parse::<IpAddr>().unwrap()]);
        assert!(err("--start-daemon master --sync-peer x").contains("invalid sync-peer"));
        assert_eq!(
            err("-L --sync-peer 198.18.0.2"),
            "Illegal 'sync-peer' option with the 'list' command"
        );
        let u = usage("vsadm");
        assert!(u.contains("--set-sync key=value"));
        assert!(u.contains("--sync-peer address"));
    }

    #[test]
    fn sync_daemon_commands() {
        assert_eq!(
            ok("--start-daemon master"),
            Command::StartDaemon(SyncDaemonSpec {
                role: SyncRole::Master,
                mcast_interface: "eth0".into(),
                syncid: 0,
                sync_maxlen: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                peers: Vec::new(),
                transport: SyncTransport::Auto,
            })
        );
        assert_eq!(
            ok(
                "--start-daemon backup --syncid 7 --mcast-interface lan0 --mcast-group 239.1.1.1 \
                --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1400"
            ),
            Command::StartDaemon(SyncDaemonSpec {
                role: SyncRole::Backup,
                mcast_interface: "lan0".into(),
                syncid: 7,
                sync_maxlen: Some(1400),
                mcast_group: Some(v4("239.1.1.1")),
                mcast_port: Some(9000),
                mcast_ttl: Some(2),
                peers: Vec::new(),
                transport: SyncTransport::Auto,
            })
        );
        assert!(matches!(
            ok("--start-daemon master --mcast-group ff02::81"),
            Command::StartDaemon(SyncDaemonSpec {
                mcast_group: Some(IpAddr::V6(_)),
                ..
            })
        ));
        assert_eq!(
            ok("--stop-daemon backup"),
            Command::StopDaemon(SyncRole::Backup)
        );
        assert!(matches!(
            ok("--start-daemon master --sync-transport dataplane"),
            Command::StartDaemon(SyncDaemonSpec {
                transport: SyncTransport::Dataplane,
                ..
            })
        ));
        assert_eq!(
            err("--start-daemon master --sync-transport udp"),
            "illegal sync-transport `udp' specified (auto, kernel or dataplane)"
        );
        assert_eq!(
            err("--start-daemon boss"),
            "illegal start-daemon parameter specified"
        );
        assert_eq!(err("--stop-daemon boss"), "illegal start_daemon specified");
        assert_eq!(
            err("--start-daemon master --syncid 256"),
            "illegal syncid specified"
        );
        assert_eq!(
            err("--start-daemon master --mcast-group 10.0.0.1"),
            "invalid IPv4 mcast-group `10.0.0.1'"
        );
        assert_eq!(
            err("--start-daemon master --mcast-group 2001:db8::1"),
            "invalid IPv6 mcast-group `2001:db8::1'"
        );
        assert_eq!(
            err("--start-daemon master --mcast-port 0"),
            "illegal mcast-port specified"
        );
        assert_eq!(
            err("--start-daemon master --mcast-ttl 256"),
            "illegal mcast-ttl specified"
        );
        assert_eq!(
            err("--start-daemon master --sync-maxlen 65508"),
            "illegal sync-maxlen specified"
        );
        assert_eq!(
            err("--stop-daemon master --mcast-ttl 2"),
            "Illegal 'mcast-ttl' option with the 'stop-daemon' command"
        );
    }

    #[test]
    fn vsd_commands() {
        assert_eq!(
            ok("--add-laddr -z 198.18.2.1 -t 198.18.0.100:80"),
            Command::AddLocalAddr {
                service: vip(),
                addr: v4("198.18.2.1")
            }
        );
        assert_eq!(
            ok("--del-laddr --laddr 198.18.2.1 -t 198.18.0.100:80"),
            Command::DelLocalAddr {
                service: vip(),
                addr: v4("198.18.2.1")
            }
        );
        assert_eq!(ok("--get-laddr"), Command::GetLocalAddrs(None));
        assert_eq!(
            ok("--get-laddr -t 198.18.0.100:80"),
            Command::GetLocalAddrs(Some(vip()))
        );
        assert_eq!(
            err("--add-laddr -t 198.18.0.100:80"),
            "You need to supply the 'laddr' option for the 'add-laddr' command"
        );
        assert_eq!(
            err("--add-laddr -z 198.18.2.1"),
            "You need to supply the 'service-address' option for the 'add-laddr' command"
        );
        assert_eq!(
            err("--add-laddr -z 198.18.2 -t 198.18.0.100:80"),
            "illegal local address specified"
        );
        assert_eq!(
            err("-A -t 198.18.0.100:80 -z 198.18.2.1"),
            "Illegal 'laddr' option with the 'add-service' command"
        );
        assert_eq!(ok("--counters"), Command::Counters { per_worker: false });
        assert_eq!(
            ok("--counters --per-worker"),
            Command::Counters { per_worker: true }
        );
        assert_eq!(ok("--latency"), Command::Latency);
        assert_eq!(ok("--status"), Command::Status);
        assert_eq!(ok("--reload"), Command::Reload);
        assert_eq!(ok("--prometheus"), Command::Prometheus);
        assert_eq!(ok("--checks"), Command::Checks);
        assert_eq!(
            err("--checks -t 198.18.0.100:80"),
            "Illegal 'service-address' option with the 'checks' command"
        );
        assert_eq!(err("--per-worker"), "no command specified");
        assert_eq!(
            err("-L --per-worker"),
            "Illegal 'per-worker' option with the 'list' command"
        );
        assert_eq!(err("--status --counters"), "multiple commands specified");
        assert_eq!(err("-A -L"), "multiple commands specified");
        assert_eq!(
            err("--status -n"),
            "Illegal 'numeric' option with the 'status' command"
        );
    }

    #[test]
    fn drain_undrain_and_list_announce() {
        assert_eq!(
            ok("--drain"),
            Command::Drain {
                timeout: None,
                wait: false
            }
        );
        assert_eq!(
            ok("--drain --timeout 60 --wait"),
            Command::Drain {
                timeout: Some(60),
                wait: true
            }
        );
        assert_eq!(
            ok("--timeout 0 --drain"),
            Command::Drain {
                timeout: Some(0),
                wait: false
            }
        );
        assert!(ok("--drain").is_change());
        assert_eq!(ok("--undrain"), Command::Undrain);
        assert_eq!(
            err("--drain --timeout"),
            "--drain --timeout needs a number of seconds"
        );
        assert_eq!(
            err("--drain --timeout x"),
            "invalid drain timeout `x' specified: 0..=86400 seconds"
        );
        assert_eq!(
            err("--drain --timeout 86401"),
            "invalid drain timeout `86401' specified: 0..=86400 seconds"
        );
        assert_eq!(err("--drain 5"), "unexpected argument 5");
        assert_eq!(
            err("--undrain --wait"),
            "Illegal 'wait' option with the 'undrain' command"
        );
        assert_eq!(
            err("--drain -t 198.18.0.100:80"),
            "Illegal 'service-address' option with the 'drain' command"
        );
        assert_eq!(err("--drain --undrain"), "multiple commands specified");
        assert_eq!(
            ok("-L --announce"),
            Command::List(ListOptions {
                what: ListWhat::Announce,
                ..ListOptions::default()
            })
        );
        assert_eq!(
            err("-L --announce --stats"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L --wait"),
            "Illegal 'wait' option with the 'list' command"
        );
        // -L --timeout still lists timeouts
        assert!(matches!(
            ok("-L --timeout"),
            Command::List(ListOptions {
                what: ListWhat::Timeouts,
                ..
            })
        ));
    }

    #[test]
    fn option_syntax_errors() {
        assert_eq!(err("--bogus"), "--bogus: unknown option");
        assert_eq!(err("-L -q"), "-q: unknown option");
        assert_eq!(err("-t 198.18.0.100:80"), "no command specified");
        assert_eq!(err("-A -t"), "-t: missing argument");
        assert_eq!(err("-A --tcp-service"), "--tcp-service: missing argument");
        assert_eq!(
            err("-L --stats=1"),
            "--stats: option does not take an argument"
        );
        assert_eq!(
            server("-a --tcp-service=198.18.0.100:80 --real-server=198.18.1.11 --weight=4 -m")
                .server
                .weight,
            4
        );
        // "--" ends options.
        assert_eq!(
            ok("--set -- 1 2 3"),
            Command::SetTimeouts {
                tcp: 1,
                tcpfin: 2,
                udp: 3
            }
        );
        assert_eq!(err("-C - "), "unexpected argument -");
    }

    #[test]
    fn restore_text() {
        let text = "\
# saved by vsadm -S
ipvsadm -A -t 198.18.0.100:80 -s rr

-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1
vsadm -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2
";
        let cmds = parse_restore(text).unwrap();
        assert_eq!(cmds.len(), 3);
        assert!(matches!(cmds[0], Command::AddService(_)));
        assert!(matches!(cmds[2], Command::AddServer(s) if s.server.weight == 2));
        assert_eq!(
            parse_restore("-A -t 198.18.0.100:80\n-a -t 198.18.0.100:80 -r x\n").unwrap_err(),
            "line 2: illegal real server address[:port] specified"
        );
        assert_eq!(
            parse_restore("-R\n").unwrap_err(),
            "line 1: -R input cannot contain -R"
        );
        assert_eq!(parse_restore("\n  \n# only comments\n").unwrap(), vec![]);
    }

    #[test]
    fn changes_are_flagged() {
        assert!(ok("-A -t 198.18.0.100:80").is_change());
        assert!(ok("-C").is_change());
        assert!(ok("--set 1 2 3").is_change());
        assert!(!ok("-Ln").is_change());
        assert!(!ok("-S").is_change());
        assert!(!ok("-Z").is_change());
        assert!(!ok("--status").is_change());
    }

    #[test]
    fn usage_mentions_every_command() {
        let u = usage("vsadm");
        for s in [
            "--add-service",
            "--edit-service",
            "--delete-service",
            "--clear",
            "--restore",
            "--save",
            "--add-server",
            "--edit-server",
            "--delete-server",
            "--list",
            "--zero",
            "--set",
            "--start-daemon",
            "--stop-daemon",
            "--add-laddr",
            "--get-laddr",
            "--counters",
            "--latency",
            "--prometheus",
            "--checks",
            "--reload",
            "--status",
            "--fullnat",
        ] {
            assert!(u.contains(s), "{s}");
        }
        assert!(u.starts_with("Usage:\n  vsadm -A|E virtual-service"));
    }

    #[test]
    fn set_defense_and_its_listing() {
        assert_eq!(
            ok("--set-defense drop_entry=1 secure_tcp=3 synrecv=20 pressure=75"),
            Command::SetDefense(DefenseChange {
                drop_entry: Some(1),
                secure_tcp: Some(3),
                synrecv: Some(20),
                pressure: Some(75),
                sloppy_tcp: None,
            })
        );
        assert_eq!(
            ok("--set-defense secure_tcp=0"),
            Command::SetDefense(DefenseChange {
                secure_tcp: Some(0),
                ..DefenseChange::default()
            })
        );
        assert!(err("--set-defense").contains("nothing to set"));
        assert_eq!(
            ok("--set-defense sloppy_tcp=1"),
            Command::SetDefense(DefenseChange {
                sloppy_tcp: Some(true),
                ..DefenseChange::default()
            })
        );
        assert!(err("--set-defense sloppy_tcp=2").contains("must be 0 or 1"));
        assert!(err("--set-defense sloppy_sctp=1").contains("no SCTP"));
        assert_eq!(
            err("--set-defense drop_entry=4"),
            "invalid drop_entry value `4' specified: must be 0..3"
        );
        assert_eq!(
            err("--set-defense synrecv=0"),
            "invalid synrecv value `0' specified"
        );
        assert!(err("--set-defense pressure=101").contains("1..100"));
        assert!(err("--set-defense drop_packet=1").contains("unknown setting `drop_packet'"));
        assert!(err("--set-defense secure_tcp").contains("not key=value"));
        assert_eq!(
            err("--set-defense drop_entry=1 drop_entry=2"),
            "drop_entry given twice"
        );
        assert_eq!(
            err("--set-defense drop_entry=1 -t 198.18.0.100:80"),
            "Illegal 'service-address' option with the 'set-defense' command"
        );
        assert!(ok("--set-defense drop_entry=1").is_change());
        assert_eq!(list("-L --defense").what, ListWhat::Defense);
        assert_eq!(
            err("-L --defense --stats"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L --timeout --defense"),
            "The option 'defense' conflicts with the 'timeout' option in the 'list' command"
        );
        let u = usage("vsadm");
        assert!(u.contains("--set-defense [drop_entry=N] [secure_tcp=N] [synrecv=SECS]"));
        assert!(u.contains("--defense "));
    }
}
