//! vsd's boot configuration: a TOML file parsed into typed, validated structs.
//!
//! Parsing happens in two steps. `toml` + serde turn the text into raw structs whose
//! fields carry their byte spans (`toml::Spanned`); syntax errors, unknown keys, wrong
//! types and missing keys come out of this step. Then [`Config`] is built field by field,
//! and every semantic rule (ranges, formats, cross references, duplicates) is checked
//! with the span of the value it is about. Every error, from either step, becomes a
//! [`ConfigError`] naming the file, line, column and key path:
//!
//! ```text
//! configs/bad.toml:12:9: port[1].addresses[0]: invalid address "198.18.0.1/40": prefix length must be 0..=32
//! ```
//!
//! `toml` does not expose the key path of a deserialization error, so [`key_path_at`]
//! recovers it from the error's byte offset with a small scanner over the (already
//! syntactically valid) document.
//!
//! `configs/demo.toml` documents every key.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::dataplane::neigh::NeighParams;
pub use crate::lb::types::{AddrFamily, SchedulerKind};

mod addr;
pub mod announce;
mod eal;
pub mod health;
mod lb_conf;
mod lcores;
mod locate;
mod port;
mod service;
mod sync;

pub use addr::{IpCidr, MacAddr, PciAddr};
use eal::{build_eal, build_mempool};
pub use eal::{default_mbufs, EalConf, MempoolConf};
pub use lb_conf::LbConf;
use lb_conf::{build_lb, build_neighbour};
use lcores::build_lcores;
pub use lcores::{IdleMode, LcoreConf};
pub(crate) use locate::key_path_at;
use port::build_port;
pub use port::{KernelDevice, KernelTwin, PortConf, PortDevice};
pub(crate) use service::mask_prefix_len;
use service::{build_mark, build_service, parse_method};
pub use service::{RealServerConf, SchedFlag, ServiceConf, ServiceKey};
use sync::{build_sync, build_sync_daemons};

/// Largest lcore id DPDK accepts with its default `RTE_MAX_LCORE` (128).
pub const MAX_LCORE_ID: u32 = 127;
/// Most worker lcores one vsd runs.
pub const MAX_WORKERS: usize = 64;
/// Smallest and largest port MTU.
pub const MTU_RANGE: (i64, i64) = (68, 9600);
/// `RTE_PKTMBUF_HEADROOM`: bytes reserved in front of every packet in an mbuf.
pub const MBUF_HEADROOM: u32 = 128;
/// `RTE_MEMPOOL_CACHE_MAX_SIZE`. With at least 1024 mbufs, DPDK's rule that 1.5 x cache
/// must not exceed the pool always holds.
pub const MEMPOOL_CACHE_MAX: i64 = 512;
/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/vsd/vsd.sock";
/// Memory (MiB) vsd asks EAL for with `--no-huge` when `eal.memory_mb` is not set.
pub const DEFAULT_NO_HUGE_MEMORY_MB: u32 = 512;
/// Config files larger than this are refused rather than read.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given to [`Config::from_file`] (or the origin name of [`Config::from_str`]).
    pub file: String,
    /// 1-based line; 0 when the error is about the file as a whole (unreadable, too large).
    pub line: usize,
    /// 1-based column in characters; 0 together with `line`.
    pub col: usize,
    /// Key path such as `port[1].addresses[0]`; empty for syntax errors and file errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else if self.col == 0 {
            // keepalived.conf errors: a line, no column
            write!(f, "{}:{}: ", self.file, self.line)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------
// Typed configuration
// ---------------------------------------------------------------------------------------

/// The validated boot configuration of one vsd process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the configuration came from (file name), for logs.
    pub source: String,
    /// `[eal]`: DPDK EAL options.
    pub eal: EalConf,
    /// `[lcores]`: which lcores run the control thread and the workers.
    pub lcores: LcoreConf,
    /// `[control]`: the admin socket.
    pub control: ControlConf,
    /// `[mempool]`: the packet buffer pool.
    pub mempool: MempoolConf,
    /// `[[port]]`: network ports, in file order (port index = position).
    pub ports: Vec<PortConf>,
    /// `[[vip]]`: addresses the director answers ARP and ping for.
    pub vips: Vec<VipConf>,
    /// `[neighbour]`: the per-worker neighbour table (ARP and IPv6 neighbor discovery).
    pub neighbour: NeighParams,
    /// `[lb]`: the forwarding core.
    pub lb: LbConf,
    /// `[[service]]`: virtual services and their real servers.
    pub services: Vec<ServiceConf>,
    /// `[[mark]]`: the firewall-mark classifier's rules, in match order.
    pub marks: Vec<crate::lb::mark::MarkRule>,
    /// `[defense]`: IPVS's drop_entry / secure_tcp and the SYN_RECV timeout.
    pub defense: DefenseConf,
    /// `[timeouts]`: `--set tcp tcpfin udp`.
    pub timeouts: TimeoutsConf,
    /// `[[sync_daemon]]`: connection sync daemons started with vsd (as
    /// `--start-daemon`; see [`super::syncd`]).
    pub sync_daemons: Vec<super::ipvsadm::SyncDaemonSpec>,
    /// The keepalived.conf whose virtual servers were added to `services`
    /// (`vsd --keepalived`; see [`super::keepalived`]).
    pub keepalived: Option<String>,
    /// Things skipped with a warning (keywords keepalived does not know
    /// either, includes matching nothing), `FILE:LINE: ...`.
    pub warnings: Vec<String>,
    /// `[sync]`: the kernel's sync sysctls (as `--set-sync`).
    pub sync: crate::lb::sync::SyncSettings,
    /// `[announce]`: put served VIPs on a kernel interface for a routing
    /// daemon (see [`crate::control::announce`]); `None`: no announcement.
    pub announce: Option<announce::AnnounceConf>,
}

/// `[defense]` (see [`crate::lb::defense`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DefenseConf {
    /// drop_entry, secure_tcp and the pressure threshold.
    pub knobs: crate::lb::defense::DefenseConfig,
    /// SYN_RECV timeout in seconds; `None` keeps the current one (60 s at start).
    pub synrecv_timeout: Option<u32>,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConf {
    /// Unix socket path vsadm connects to.
    pub socket: PathBuf,
    /// Permission bits of the socket file.
    pub socket_mode: u32,
    /// Serve Prometheus metrics over HTTP here (loopback only).
    pub prometheus: Option<std::net::SocketAddr>,
    /// Where vsadm's own services are kept across restarts (ipvsadm-save
    /// format, written on every change; see [`super::state`]).
    pub rules_file: Option<PathBuf>,
}

/// `[timeouts]`: ipvsadm's `--set tcp tcpfin udp` as configuration
/// (seconds; absent: IPVS's defaults, 900/120/300).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutsConf {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
}

/// `[[vip]]`: an address the director answers ARP and ping for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConf {
    /// The virtual IP.
    pub address: IpAddr,
    /// Index into [`Config::ports`] of the port that announces it.
    pub port: usize,
    /// `follow = "IFACE"`: served only while the address is on this kernel
    /// interface in vsd's network namespace ([`crate::control::vipwatch`]);
    /// `None`: always on.
    pub follow: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Raw (serde) structs: what the file says, with spans
// ---------------------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    eal: Option<S<RawEal>>,
    lcores: S<RawLcores>,
    control: Option<S<RawControl>>,
    mempool: Option<S<RawMempool>>,
    #[serde(default)]
    port: Vec<S<RawPort>>,
    #[serde(default)]
    vip: Vec<S<RawVip>>,
    neighbour: Option<S<RawNeighbour>>,
    lb: Option<S<RawLb>>,
    #[serde(default)]
    service: Vec<S<RawService>>,
    defense: Option<S<RawDefense>>,
    timeouts: Option<S<RawTimeouts>>,
    #[serde(default)]
    mark: Vec<S<RawMark>>,
    #[serde(default)]
    sync_daemon: Vec<S<RawSyncDaemon>>,
    sync: Option<S<RawSync>>,
    announce: Option<S<announce::RawAnnounce>>,
}

/// `[sync]`: `threshold`, `period`, `refresh_period` (seconds), `retries`,
/// `persist_mode` (0/1), `version` — the kernel's `sync_threshold` pair,
/// `sync_refresh_period`, `sync_retries`, `sync_persist_mode`,
/// `sync_version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    threshold: Option<S<i64>>,
    period: Option<S<i64>>,
    refresh_period: Option<S<i64>>,
    retries: Option<S<i64>>,
    persist_mode: Option<S<i64>>,
    version: Option<S<i64>>,
}

/// `[[sync_daemon]]`: `role = "master"|"backup"`, `mcast_interface`, and
/// optional `syncid`, `sync_maxlen`, `mcast_group`, `mcast_port`,
/// `mcast_ttl` (the `--start-daemon` options) and `peers`, a list of IPv4
/// unicast addresses used instead of the group (`--sync-peer`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyncDaemon {
    role: S<String>,
    mcast_interface: S<String>,
    syncid: Option<S<i64>>,
    sync_maxlen: Option<S<i64>>,
    mcast_group: Option<S<String>>,
    mcast_port: Option<S<i64>>,
    mcast_ttl: Option<S<i64>>,
    #[serde(default)]
    peers: Vec<S<String>>,
    /// "auto" (default), "kernel" or "dataplane" (`--sync-transport`).
    transport: Option<S<String>>,
}

/// `[[mark]]`: `dst = "198.18.0.100/32"`, `proto = "tcp"`,
/// `dport = 80` or `"80:90"`, `mark = 1` (the iptables mangle rule
/// `-d DST -p PROTO --dport PORTS -j MARK --set-mark MARK`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMark {
    dst: Option<S<String>>,
    proto: Option<S<String>>,
    dport: Option<S<RawPorts>>,
    mark: S<i64>,
}

/// A port (integer) or a `FIRST:LAST` range (string).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPorts {
    Port(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefense {
    drop_entry: Option<S<i64>>,
    secure_tcp: Option<S<i64>>,
    pressure_percent: Option<S<i64>>,
    synrecv_timeout: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEal {
    #[serde(default)]
    args: Vec<S<String>>,
    huge: Option<bool>,
    memory_mb: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLcores {
    control: Option<S<i64>>,
    workers: S<Vec<S<i64>>>,
    cpu_map: Option<S<String>>,
    idle: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<S<String>>,
    socket_mode: Option<S<String>>,
    prometheus: Option<S<String>>,
    rules_file: Option<S<String>>,
}

/// `[timeouts]`: `tcp`, `tcpfin`, `udp` in seconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<S<i64>>,
    tcpfin: Option<S<i64>>,
    udp: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMempool {
    mbufs: Option<S<i64>>,
    cache: Option<S<i64>>,
    data_room: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: S<String>,
    device: S<String>,
    rx_desc: Option<S<i64>>,
    tx_desc: Option<S<i64>>,
    mtu: Option<S<i64>>,
    mac: Option<S<String>>,
    promiscuous: Option<bool>,
    rss: Option<bool>,
    #[serde(default)]
    addresses: Vec<S<String>>,
    /// One address, or a list with at most one per family.
    gateway: Option<S<toml::Value>>,
    kernel_iface: Option<S<String>>,
    kernel_device: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: S<String>,
    port: S<String>,
    follow: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLb {
    conn_capacity: Option<S<i64>>,
    conn_capacity6: Option<S<i64>>,
    expire_nodest_conn: Option<bool>,
    conn_reuse_mode: Option<S<i64>>,
    expire_quiescent_template: Option<bool>,
    tun_source: Option<S<String>>,
    tun_source6: Option<S<String>>,
    local_port_min: Option<S<i64>>,
    local_port_max: Option<S<i64>>,
    sloppy_tcp: Option<bool>,
    sloppy_sctp: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    max_entries: Option<S<i64>>,
    max_pending_per_entry: Option<S<i64>>,
    max_pending_total: Option<S<i64>>,
    retry_ms: Option<S<i64>>,
    max_retries: Option<S<i64>>,
    reachable_ms: Option<S<i64>>,
    gc_stale_ms: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    proto: Option<S<String>>,
    vip: Option<S<String>>,
    port: Option<S<i64>>,
    fwmark: Option<S<i64>>,
    family: Option<S<String>>,
    scheduler: Option<S<String>>,
    persistence_timeout: Option<S<i64>>,
    netmask: Option<S<RawNetmask>>,
    #[serde(default)]
    flags: Vec<S<String>>,
    one_packet: Option<S<bool>>,
    synproxy: Option<S<bool>>,
    #[serde(default)]
    local_addresses: Vec<S<String>>,
    #[serde(default)]
    real_server: Vec<S<RawRealServer>>,
    /// `[service.health]` (see [`health`]).
    health: Option<S<health::RawServiceHealth>>,
    /// `[[service.check]]`: checkers of every real server without its own.
    #[serde(default)]
    check: Vec<S<health::RawCheck>>,
}

/// `netmask = "255.255.255.0"` (IPv4) or `netmask = 64` (prefix length, any family).
enum RawNetmask {
    PrefixLen(i64),
    Mask(String),
}

impl<'de> Deserialize<'de> for RawNetmask {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawNetmask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a prefix length (integer) or a netmask string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawNetmask, E> {
                Ok(RawNetmask::PrefixLen(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawNetmask, E> {
                Ok(RawNetmask::PrefixLen(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawNetmask, E> {
                Ok(RawNetmask::Mask(v.to_string()))
            }
        }
        de.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealServer {
    address: S<String>,
    port: Option<S<i64>>,
    weight: Option<S<i64>>,
    method: Option<S<String>>,
    upper_threshold: Option<S<i64>>,
    lower_threshold: Option<S<i64>>,
    // health keys (see [`health`])
    #[serde(default)]
    check: Vec<S<health::RawCheck>>,
    notify_up: Option<S<health::RawScript>>,
    notify_down: Option<S<health::RawScript>>,
    inhibit_on_failure: Option<S<bool>>,
    alpha: Option<S<bool>>,
    delay_loop: Option<S<health::RawSeconds>>,
    connect_timeout: Option<S<health::RawSeconds>>,
    retry: Option<S<i64>>,
    delay_before_retry: Option<S<health::RawSeconds>>,
    warmup: Option<S<health::RawSeconds>>,
    virtualhost: Option<S<String>>,
}

// ---------------------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------------------

/// Turns byte spans into [`ConfigError`]s for one document.
struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = line_col(self.text, span.start);
        ConfigError {
            file: self.origin.to_string(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        }
    }

    /// An integer that must lie in `lo..=hi`.
    fn int(&self, v: &S<i64>, key: &str, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(self.err(
                v.span(),
                key,
                format!("{n} out of range: must be {lo}..={hi}"),
            ))
        }
    }

    /// An optional integer in `lo..=hi`, `default` when absent.
    fn int_or(
        &self,
        v: &Option<S<i64>>,
        key: &str,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Result<i64, ConfigError> {
        match v {
            Some(v) => self.int(v, key, lo, hi),
            None => Ok(default),
        }
    }

    fn ip(&self, v: &S<String>, key: &str) -> Result<IpAddr, ConfigError> {
        v.get_ref().parse().map_err(|_| {
            self.err(
                v.span(),
                key,
                format!("invalid address {:?}: not an IP address", v.get_ref()),
            )
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// Narrows an `i64` already range-checked to fit; saturates instead of panicking.
fn narrow<T: TryFrom<i64> + Bounded>(n: i64) -> T {
    T::try_from(n).unwrap_or(T::MAX_VALUE)
}

/// The largest value of an integer type, for [`narrow`].
trait Bounded {
    const MAX_VALUE: Self;
}
impl Bounded for u8 {
    const MAX_VALUE: u8 = u8::MAX;
}
impl Bounded for u16 {
    const MAX_VALUE: u16 = u16::MAX;
}
impl Bounded for u32 {
    const MAX_VALUE: u32 = u32::MAX;
}
impl Bounded for u64 {
    const MAX_VALUE: u64 = u64::MAX;
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file_error = |message: String| ConfigError {
            file: name.clone(),
            line: 0,
            col: 0,
            key: String::new(),
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| file_error(format!("cannot open: {e}")))?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| file_error(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(file_error(format!(
                "file too large (more than {MAX_CONFIG_BYTES} bytes)"
            )));
        }
        Config::from_str(&text, &name)
    }

    /// The running configuration from its files: the TOML file, plus the
    /// virtual servers of a keepalived.conf when one is given (`vsd
    /// --config FILE --keepalived FILE`). Start, `--check` and reload all
    /// build the configuration here.
    pub fn load(toml: &Path, keepalived: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = Config::from_file(toml)?;
        if let Some(k) = keepalived {
            super::keepalived::merge_into(&mut cfg, k)?;
        }
        Ok(cfg)
    }

    /// Reads the configuration again from the files this one came from.
    pub fn reread(&self) -> Result<Config, ConfigError> {
        Config::load(
            Path::new(&self.source),
            self.keepalived.as_deref().map(Path::new),
        )
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { text, origin };
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&ctx, &e))?;
        build(&ctx, raw)
    }

    /// The complete EAL argument vector: `program`, the lcore options, one `--vdev` or
    /// `-a` per port, the memory options, then `eal.args` verbatim.
    pub fn eal_argv(&self, program: &str) -> Vec<String> {
        let mut argv = vec![program.to_string()];
        match &self.lcores.cpu_map {
            Some(map) => {
                argv.push("--lcores".to_string());
                argv.push(map.clone());
            }
            None => {
                let mut ids: Vec<u32> = self.lcores.workers.clone();
                ids.push(self.lcores.control);
                ids.sort_unstable();
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                argv.push("-l".to_string());
                argv.push(list.join(","));
            }
        }
        argv.push("--main-lcore".to_string());
        argv.push(self.lcores.control.to_string());
        for port in &self.ports {
            let flag = match port.device {
                PortDevice::Vdev(_) => "--vdev",
                PortDevice::Pci { .. } => "-a",
            };
            argv.push(flag.to_string());
            argv.push(port.device.eal_spec());
        }
        for (i, port) in self.ports.iter().enumerate() {
            if let Some(k) = &port.kernel {
                argv.push("--vdev".to_string());
                argv.push(k.eal_spec(i, self.lcores.workers.len()));
            }
        }
        if !self.eal.huge {
            argv.push("--no-huge".to_string());
            argv.push("-m".to_string());
            argv.push(
                self.eal
                    .memory_mb
                    .unwrap_or(DEFAULT_NO_HUGE_MEMORY_MB)
                    .to_string(),
            );
        } else if let Some(mb) = self.eal.memory_mb {
            argv.push("-m".to_string());
            argv.push(mb.to_string());
        }
        argv.extend(self.eal.args.iter().cloned());
        argv
    }

    /// Index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}

/// Converts a `toml` error (syntax or deserialization) into a [`ConfigError`].
fn toml_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> ConfigError {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = e.span() else {
        return ConfigError {
            file: ctx.origin.to_string(),
            line: 1,
            col: 1,
            key: String::new(),
            message,
        };
    };
    // A document that does not even parse as a table has a syntax error: no key path.
    // An empty span at the start is toml's way of pointing at the root table.
    let key = if span == (0..0) {
        String::new()
    } else if ctx.text.parse::<toml::Table>().is_ok() {
        key_path_at(ctx.text, span.start)
    } else {
        String::new()
    };
    ctx.err(span, key, message)
}

fn build(ctx: &Ctx<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let lcores = build_lcores(ctx, &raw.lcores)?;
    let neighbour = build_neighbour(ctx, raw.neighbour.as_ref())?;
    let lb = build_lb(ctx, raw.lb.as_ref())?;

    let mut ports: Vec<PortConf> = Vec::with_capacity(raw.port.len());
    // Spans of already accepted things, to point duplicates at the second occurrence.
    let mut seen_addrs: HashMap<IpAddr, String> = HashMap::new();
    for (i, port) in raw.port.iter().enumerate() {
        let conf = build_port(ctx, i, port.get_ref(), &ports, &mut seen_addrs)?;
        ports.push(conf);
    }
    if ports.is_empty() {
        return Err(ctx.err(0..0, "port", "at least one [[port]] is required"));
    }

    let eal = build_eal(ctx, raw.eal.as_ref(), &ports)?;
    let mempool = build_mempool(
        ctx,
        raw.mempool.as_ref(),
        &raw.port,
        &ports,
        &lcores,
        &neighbour,
    )?;
    let control = build_control(ctx, raw.control.as_ref())?;

    let mut vips: Vec<VipConf> = Vec::with_capacity(raw.vip.len());
    for (i, vip) in raw.vip.iter().enumerate() {
        let vip = vip.get_ref();
        let base = format!("vip[{i}]");
        let address = ctx.ip(&vip.address, &format!("{base}.address"))?;
        super::unsupported::check_vip(address)
            .map_err(|m| ctx.err(vip.address.span(), format!("{base}.address"), m))?;
        if vips.iter().any(|v| v.address == address) {
            return Err(ctx.err(
                vip.address.span(),
                format!("{base}.address"),
                format!("duplicate VIP {address}"),
            ));
        }
        let port = ports
            .iter()
            .position(|p| p.name == *vip.port.get_ref())
            .ok_or_else(|| {
                ctx.err(
                    vip.port.span(),
                    format!("{base}.port"),
                    format!("unknown port {:?}", vip.port.get_ref()),
                )
            })?;
        let follow = match &vip.follow {
            None => None,
            Some(f) => {
                let name = f.get_ref();
                // the kernel's rules for an interface name (IFNAMSIZ 16)
                if name.is_empty()
                    || name.len() > 15
                    || name == "."
                    || name == ".."
                    || name
                        .chars()
                        .any(|c| c == '/' || c == ':' || c.is_whitespace())
                {
                    return Err(ctx.err(
                        f.span(),
                        format!("{base}.follow"),
                        format!("{name:?} is not a kernel interface name (1 to 15 characters, no '/', ':' or spaces)"),
                    ));
                }
                Some(name.clone())
            }
        };
        vips.push(VipConf {
            address,
            port,
            follow,
        });
    }

    let mut services: Vec<ServiceConf> = Vec::with_capacity(raw.service.len());
    for (i, svc) in raw.service.iter().enumerate() {
        let conf = build_service(ctx, i, svc)?;
        if services.iter().any(|s| s.key == conf.key) {
            return Err(ctx.err(svc.span(), format!("service[{i}]"), "duplicate service"));
        }
        services.push(conf);
    }

    let mut marks = crate::lb::mark::MarkRules::new();
    for (i, m) in raw.mark.iter().enumerate() {
        let rule = build_mark(ctx, i, m.get_ref())?;
        marks
            .add(rule)
            .map_err(|e| ctx.err(m.span(), format!("mark[{i}]"), e))?;
    }

    let sync_daemons = build_sync_daemons(ctx, &raw.sync_daemon)?;
    let sync = build_sync(ctx, raw.sync.as_ref())?;
    let announce = announce::build_announce(ctx, raw.announce.as_ref(), &ports, &vips)?;
    Ok(Config {
        announce,
        keepalived: None,
        warnings: Vec::new(),
        sync_daemons,
        sync,
        marks: marks.rules().to_vec(),
        source: ctx.origin.to_string(),
        eal,
        lcores,
        control,
        mempool,
        ports,
        vips,
        neighbour,
        lb,
        services,
        timeouts: {
            let t = raw.timeouts.as_ref().map(S::get_ref);
            let max = i64::from(crate::lb::tcp_state::MAX_TIMEOUT_S);
            TimeoutsConf {
                tcp: timeout(ctx, t.and_then(|t| t.tcp.as_ref()), "timeouts.tcp", max)?,
                tcpfin: timeout(
                    ctx,
                    t.and_then(|t| t.tcpfin.as_ref()),
                    "timeouts.tcpfin",
                    max,
                )?,
                udp: timeout(ctx, t.and_then(|t| t.udp.as_ref()), "timeouts.udp", max)?,
            }
        },
        defense: {
            // `[lb] sloppy_tcp` is a sysctl-like knob the workers read with
            // the defences (see crate::lb::defense)
            let mut d = build_defense(ctx, raw.defense.as_ref())?;
            d.knobs.sloppy_tcp = raw
                .lb
                .as_ref()
                .and_then(|l| l.get_ref().sloppy_tcp)
                .unwrap_or(false);
            d
        },
    })
}

/// One `[timeouts]` value: 1..=max seconds.
fn timeout(
    ctx: &Ctx<'_>,
    v: Option<&S<i64>>,
    key: &str,
    max: i64,
) -> Result<Option<u32>, ConfigError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let n = *v.get_ref();
    if !(1..=max).contains(&n) {
        return Err(ctx.err(
            v.span(),
            key,
            format!("{n} is out of range 1..={max} seconds"),
        ));
    }
    Ok(Some(narrow(n)))
}

fn build_defense(ctx: &Ctx<'_>, raw: Option<&S<RawDefense>>) -> Result<DefenseConf, ConfigError> {
    use crate::lb::defense::{DefenseConfig, MAX_MODE};
    let d = DefenseConfig::default();
    let Some(raw) = raw else {
        return Ok(DefenseConf::default());
    };
    let r = raw.get_ref();
    let mode = |v: &Option<S<i64>>, key: &str| -> Result<u8, ConfigError> {
        Ok(narrow(ctx.int_or(v, key, 0, i64::from(MAX_MODE), 0)?))
    };
    let knobs = DefenseConfig {
        drop_entry: mode(&r.drop_entry, "defense.drop_entry")?,
        secure_tcp: mode(&r.secure_tcp, "defense.secure_tcp")?,
        pressure_percent: narrow(ctx.int_or(
            &r.pressure_percent,
            "defense.pressure_percent",
            1,
            100,
            i64::from(d.pressure_percent),
        )?),
        // from `[lb]`, set by the caller
        sloppy_tcp: false,
    };
    let synrecv_timeout = match &r.synrecv_timeout {
        None => None,
        Some(_) => Some(narrow(ctx.int_or(
            &r.synrecv_timeout,
            "defense.synrecv_timeout",
            1,
            i64::from(crate::lb::tcp_state::MAX_TIMEOUT_S),
            60,
        )?)),
    };
    Ok(DefenseConf {
        knobs,
        synrecv_timeout,
    })
}

fn build_control(ctx: &Ctx<'_>, raw: Option<&S<RawControl>>) -> Result<ControlConf, ConfigError> {
    let c = raw.map(S::get_ref);
    let socket = match c.and_then(|c| c.socket.as_ref()) {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(s) => {
            let path = s.get_ref();
            // sun_path holds 108 bytes including the terminating NUL.
            if path.is_empty() || path.len() > 107 || path.contains('\0') {
                return Err(ctx.err(
                    s.span(),
                    "control.socket",
                    format!("invalid socket path {path:?}: must be 1..=107 bytes"),
                ));
            }
            PathBuf::from(path)
        }
    };
    let socket_mode = match c.and_then(|c| c.socket_mode.as_ref()) {
        None => 0o660,
        Some(m) => {
            let text = m.get_ref();
            let ok = !text.is_empty()
                && text.len() <= 4
                && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
            match u32::from_str_radix(text, 8) {
                Ok(mode) if ok => mode,
                _ => {
                    return Err(ctx.err(
                        m.span(),
                        "control.socket_mode",
                        format!("invalid mode {text:?}: expected octal like \"0660\""),
                    ))
                }
            }
        }
    };
    let prometheus = match c.and_then(|c| c.prometheus.as_ref()) {
        None => None,
        Some(p) => match p.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Some(a),
            Ok(a) => {
                return Err(ctx.err(
                    p.span(),
                    "control.prometheus",
                    format!("{a} is not a loopback address: metrics are served on loopback only"),
                ))
            }
            Err(_) => {
                return Err(ctx.err(
                    p.span(),
                    "control.prometheus",
                    format!(
                        "invalid listen address {:?}: expected ADDR:PORT like \"127.0.0.1:9108\"",
                        p.get_ref()
                    ),
                ))
            }
        },
    };
    let rules_file = match c.and_then(|c| c.rules_file.as_ref()) {
        None => None,
        Some(f) if f.get_ref().is_empty() || f.get_ref().contains('\0') => {
            return Err(ctx.err(f.span(), "control.rules_file", "expected a file path"))
        }
        Some(f) => Some(PathBuf::from(f.get_ref())),
    };
    Ok(ControlConf {
        socket,
        socket_mode,
        prometheus,
        rules_file,
    })
}

// ---------------------------------------------------------------------------------------
// Key path recovery
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::eal::is_option;
    use super::lcores::parse_cpu_map;
    use super::*;
    use crate::lb::types::{FwdMethod, Protocol};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const DEMO: &str = include_str!("../../configs/demo.toml");
    const BARE_METAL: &str = include_str!("../../configs/bare-metal.toml");
    const MEMIF: &str = include_str!("../../configs/memif.toml");

    /// Lines 1-7; tests append from line 8 on.
    const BASE: &str = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"198.18.0.1/24\"]\n";

    fn parse(text: &str) -> Config {
        match Config::from_str(text, "t.toml") {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn error(text: &str) -> String {
        match Config::from_str(text, "t.toml") {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn with_base(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // ---- the example configs ----

    #[test]
    fn demo_config_parses() {
        let c = Config::from_str(DEMO, "configs/demo.toml").unwrap();
        assert_eq!(c.source, "configs/demo.toml");
        assert_eq!(c.lcores.control, 0);
        assert_eq!(c.lcores.workers, vec![1]);
        assert_eq!(c.lcores.idle, IdleMode::Sleep);
        assert!(c.eal.huge);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].name, "lan0");
        assert_eq!(
            c.ports[0].device,
            PortDevice::Vdev("net_tap0,iface=vsd0".into())
        );
        assert_eq!(c.ports[0].device.eal_name(), "net_tap0");
        assert_eq!(c.ports[0].mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(
            c.ports[0].addresses,
            vec![IpCidr {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                prefix_len: 24
            }]
        );
        assert_eq!(c.ports[1].rx_desc, 1024);
        assert_eq!(c.ports[1].mtu, 1500);
        assert!(c.ports[1].rss);
        assert_eq!(
            c.vips,
            vec![VipConf {
                address: "198.18.0.100".parse().unwrap(),
                port: 0,
                follow: None,
            }]
        );
        assert_eq!(c.neighbour, NeighParams::default());
        assert_eq!(c.control.socket, PathBuf::from("/run/vsd/vsd.sock"));
        assert_eq!(c.control.socket_mode, 0o660);
        // Two ports x (1024 + 1024) + cache 256 + bursts 64 + neighbour 1024 + steering
        // 1024, + control 2048 = 8512 -> 16383.
        assert_eq!(
            c.mempool,
            MempoolConf {
                mbufs: 16383,
                cache: 256,
                data_room: 2176
            }
        );
        assert_eq!(c.services.len(), 1);
        let svc = &c.services[0];
        assert_eq!(
            svc.key,
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                vip: "198.18.0.100".parse().unwrap(),
                port: 80
            }
        );
        assert_eq!(svc.scheduler, SchedulerKind::Wlc);
        assert_eq!(svc.real_servers.len(), 2);
        assert_eq!(
            svc.real_servers[1],
            RealServerConf {
                address: "198.18.1.12".parse().unwrap(),
                port: 8080,
                weight: 1,
                method: FwdMethod::Masq,
                upper_threshold: 0,
                lower_threshold: 0,
                health: Default::default(),
            }
        );
        assert_eq!(
            c.eal_argv("vsd"),
            argv(&[
                "vsd",
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--vdev",
                "net_tap0,iface=vsd0",
                "--vdev",
                "net_tap1,iface=vsd1",
                "--no-pci",
                "--file-prefix=vsd-demo",
            ])
        );
    }

    #[test]
    fn bare_metal_config_parses() {
        let c = Config::from_str(BARE_METAL, "configs/bare-metal.toml").unwrap();
        assert_eq!(c.lcores.workers, vec![1, 2, 3, 4]);
        assert_eq!(
            c.ports[0].device,
            PortDevice::Pci {
                addr: PciAddr {
                    domain: 0,
                    bus: 3,
                    device: 0,
                    function: 0
                },
                devargs: None
            }
        );
        assert!(c.ports.iter().all(|p| p.rss));
        assert_eq!(
            c.ports[0].gateways,
            ["198.18.0.254".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.mempool.mbufs, 262143);
        assert_eq!(c.neighbour.max_entries, 16384);
        assert_eq!(
            c.vips.iter().map(|v| v.port).collect::<Vec<_>>(),
            vec![0, 0]
        );
        assert_eq!(c.services.len(), 3);
        assert_eq!(c.services[1].flags, vec![SchedFlag::MhPort]);
        assert!(c.services[1].one_packet);
        assert_eq!(c.services[1].real_servers[0].port, 53);
        let api = &c.services[2];
        assert_eq!(api.persistence_timeout, Some(600));
        assert_eq!(api.netmask, Some(24));
        assert_eq!(api.local_addresses.len(), 2);
        assert_eq!(api.real_servers[0].method, FwdMethod::FullNat);
        assert_eq!(api.real_servers[0].upper_threshold, 10000);
        assert_eq!(c.services[0].real_servers[0].method, FwdMethod::Route);
        assert_eq!(c.services[0].real_servers[0].weight, 3);
        assert_eq!(
            c.eal_argv("/usr/bin/vsd"),
            argv(&[
                "/usr/bin/vsd",
                "--lcores",
                "0@0,1@2,2@3,3@4,4@5",
                "--main-lcore",
                "0",
                "-a",
                "0000:03:00.0",
                "-a",
                "0000:03:00.1",
                "-m",
                "4096",
                "--file-prefix=vsd",
                "--huge-unlink",
            ])
        );
    }

    #[test]
    fn memif_config_parses() {
        let c = Config::from_str(MEMIF, "configs/memif.toml").unwrap();
        assert!(!c.eal.huge);
        assert!(!c.ports[0].rss);
        assert_eq!(c.ports[0].device.eal_name(), "net_memif0");
        assert_eq!(c.services[0].real_servers.len(), 4);
        assert!(c.services[0].real_servers.iter().all(|r| r.port == 9));
        assert_eq!(
            c.eal_argv("vsd"),
            argv(&[
                "vsd",
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--vdev",
                "net_memif0,role=server,socket=/tmp/vsd-memif.sock,socket-abstract=no",
                "--no-huge",
                "-m",
                "1024",
                "--no-pci",
                "--file-prefix=vsd-bench",
            ])
        );
    }

    #[test]
    fn configs_for_this_machine_never_probe_pci() {
        for (name, text) in [("demo", DEMO), ("memif", MEMIF)] {
            let c = Config::from_str(text, name).unwrap();
            assert!(c.eal.args.iter().any(|a| a == "--no-pci"), "{name}");
            assert!(
                c.eal.args.iter().any(|a| a.starts_with("--file-prefix=")),
                "{name}"
            );
            assert!(
                c.ports
                    .iter()
                    .all(|p| matches!(p.device, PortDevice::Vdev(_))),
                "{name}"
            );
        }
    }

    // ---- defaults and eal_argv ----

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(BASE);
        assert_eq!(
            c.eal,
            EalConf {
                args: vec![],
                huge: true,
                memory_mb: None
            }
        );
        assert_eq!(
            c.lcores,
            LcoreConf {
                control: 0,
                workers: vec![1],
                cpu_map: None,
                idle: IdleMode::Poll,
            }
        );
        assert_eq!(
            c.control,
            ControlConf {
                socket: PathBuf::from(DEFAULT_SOCKET),
                socket_mode: 0o660,
                prometheus: None,
                rules_file: None,
            }
        );
        assert_eq!(
            c.mempool,
            MempoolConf {
                mbufs: 8191,
                cache: 256,
                data_room: 2176
            }
        );
        assert_eq!(
            c.ports[0],
            PortConf {
                name: "lan0".into(),
                device: PortDevice::Vdev("net_tap0".into()),
                rx_desc: 1024,
                tx_desc: 1024,
                mtu: 1500,
                mac: None,
                promiscuous: false,
                rss: true,
                addresses: vec![IpCidr::parse("198.18.0.1/24").unwrap()],
                gateways: Vec::new(),
                kernel: None,
            }
        );
        assert!(c.vips.is_empty() && c.services.is_empty());
        assert_eq!(c.neighbour, NeighParams::default());
        assert_eq!(c.port_index("lan0"), Some(0));
        assert_eq!(c.port_index("lan1"), None);
        assert_eq!(
            c.eal_argv("vsd"),
            argv(&[
                "vsd",
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--vdev",
                "net_tap0"
            ])
        );
    }

    #[test]
    fn eal_argv_sorts_lcores_and_handles_memory() {
        let c = parse(
            "[eal]\nhuge = false\nargs = [\"--log-level=7\"]\n[lcores]\ncontrol = 5\nworkers = [3, 1, 7]\n\
             [[port]]\nname = \"p\"\ndevice = \"0000:af:1f.7,txq_inline=128\"\n",
        );
        assert_eq!(
            c.eal_argv("x"),
            argv(&[
                "x",
                "-l",
                "1,3,5,7",
                "--main-lcore",
                "5",
                "-a",
                "0000:af:1f.7,txq_inline=128",
                "--no-huge",
                "-m",
                "512",
                "--log-level=7",
            ])
        );
        assert_eq!(c.ports[0].device.eal_name(), "0000:af:1f.7");
        let c = parse(&format!("[eal]\nhuge = false\nmemory_mb = 1536\n{BASE}"));
        assert_eq!(
            c.eal_argv("x"),
            argv(&[
                "x",
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--vdev",
                "net_tap0",
                "--no-huge",
                "-m",
                "1536"
            ])
        );
    }

    #[test]
    fn default_mbufs_estimate() {
        let c = parse(BASE);
        let p = NeighParams::default();
        // Per worker: rings 2048 + cache 256 + bursts 64 + neighbour 1024 + steering 1024.
        assert_eq!(default_mbufs(&c.ports, 1, 256, &p), 8191); // 4416 + 2048 = 6464
        assert_eq!(default_mbufs(&c.ports, 2, 256, &p), 16383); // 2 x 4416 + 2048 = 10880
        assert_eq!(default_mbufs(&c.ports, 8, 256, &p), 65535); // 8 x 4416 + 2048 = 37376
    }

    // ---- errors: structure (serde) ----

    #[test]
    fn lb_table() {
        assert_eq!(parse(&with_base("")).lb, LbConf::default());
        let c = parse(&with_base(
            "[lb]\nconn_capacity = 4096\nconn_capacity6 = 2048\nexpire_nodest_conn = true\nconn_reuse_mode = 2\nexpire_quiescent_template = true\ntun_source = \"198.18.1.1\"\nlocal_port_min = 2000\nlocal_port_max = 3000\n",
        ));
        assert_eq!(
            c.lb,
            LbConf {
                conn_capacity: 4096,
                conn_capacity6: 2048,
                expire_nodest_conn: true,
                conn_reuse_mode: 2,
                expire_quiescent_template: true,
                tun_source: Some("198.18.1.1".parse().unwrap()),
                tun_source6: None,
                local_port_min: 2000,
                local_port_max: 3000,
            }
        );
        let c = parse(&with_base("[lb]\ntun_source6 = \"2001:2::1\"\n"));
        assert_eq!(c.lb.tun_source6, Some("2001:2::1".parse().unwrap()));
        for bad in [
            "198.18.1.1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:198.18.1.1",
        ] {
            let e = error(&with_base(&format!("[lb]\ntun_source6 = \"{bad}\"\n")));
            assert!(
                e.contains(&format!(
                    "lb.tun_source6: tun_source6 {bad} must be a global unicast IPv6 address"
                )),
                "{e}"
            );
        }
        assert!(error(&with_base("[lb]\nconn_capacity = 10\n")).contains("lb.conn_capacity"));
        assert!(error(&with_base("[lb]\nconn_capacity6 = 10\n")).contains("lb.conn_capacity6"));
        assert!(error(&with_base("[lb]\nconn_reuse_mode = 4\n")).contains("lb.conn_reuse_mode"));
        assert!(error(&with_base("[lb]\nexpire_quiescent_template = 1\n"))
            .contains("expire_quiescent_template"));
        assert!(error(&with_base("[lb]\ntun_source = \"::1\"\n"))
            .contains("lb.tun_source: tun_source ::1 must be a unicast IPv4 address"));
        assert!(error(&with_base(
            "[lb]\nlocal_port_min = 5000\nlocal_port_max = 4000\n"
        ))
        .contains("lb.local_port_min: 5000 is above local_port_max 4000"));
    }

    #[test]
    fn sync_daemons_are_read_and_checked() {
        let c = parse(&format!(
            "{BASE}\n[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"vsd-lan0\"\n\
             syncid = 7\nmcast_ttl = 2\n\n[[sync_daemon]]\nrole = \"backup\"\n\
             mcast_interface = \"vsd-lan0\"\nmcast_group = \"224.0.0.82\"\n"
        ));
        assert_eq!(c.sync_daemons.len(), 2);
        let m = &c.sync_daemons[0];
        assert_eq!(m.role, super::super::ipvsadm::SyncRole::Master);
        assert_eq!((m.syncid, m.mcast_ttl, m.mcast_group), (7, Some(2), None));
        assert_eq!(
            c.sync_daemons[1].mcast_group,
            Some("224.0.0.82".parse().unwrap())
        );
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"boss\"\nmcast_interface = \"x\"\n"
        ))
        .contains("sync_daemon[0].role: \"boss\": must be"));
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"x\"\nsyncid = 256\n"
        ))
        .contains("sync_daemon[0].syncid: 256 out of range"));
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"x\"\n\
             mcast_group = \"198.18.0.1\"\n"
        ))
        .contains("198.18.0.1: must be a multicast address"));
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"x\"\n\
             [[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"y\"\n"
        ))
        .contains("a second master sync daemon"));
        // unicast peers
        let c = parse(&format!(
            "{BASE}\n[[sync_daemon]]\nrole = \"backup\"\nmcast_interface = \"x\"\n\
             peers = [\"198.18.0.1\", \"198.18.0.2\"]\n"
        ));
        assert_eq!(
            c.sync_daemons[0].peers,
            [
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                "198.18.0.2".parse().unwrap()
            ]
        );
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"x\"\n\
             peers = [\"224.0.0.81\"]\n"
        ))
        .contains("sync_daemon[0].peers[0]: 224.0.0.81: must be a unicast address"));
        assert!(error(&with_base(
            "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"x\"\n\
             peers = [\"198.18.0.1\", \"198.18.0.1\"]\n"
        ))
        .contains("given twice"));
    }

    #[test]
    fn sync_settings_are_read_and_checked() {
        let c = parse(BASE);
        assert_eq!(c.sync, crate::lb::sync::SyncSettings::default());
        let c = parse(&format!(
            "{BASE}\n[sync]\nthreshold = 1\nperiod = 10\nrefresh_period = 30\nretries = 3\n\
             persist_mode = 1\n"
        ));
        assert_eq!(
            c.sync.render(),
            "threshold=1 period=10 refresh_period=30 retries=3 persist_mode=1 version=1"
        );
        assert!(error(&with_base("[sync]\nretries = 4\n")).contains("sync.retries: 4 out of range"));
        assert!(error(&with_base("[sync]\nthreshold = 60\n")).contains("below the period"));
        assert!(error(&with_base("[sync]\nversion = 0\n")).contains("version 1 only"));
        assert!(error(&with_base("[sync]\nqlen = 1\n")).contains("unknown field `qlen`"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert_eq!(
            error(&with_base("bogus = 1\n")),
            "t.toml:8:1: port[0].bogus: unknown field `bogus`, expected one of `name`, `device`, \
             `rx_desc`, `tx_desc`, `mtu`, `mac`, `promiscuous`, `rss`, `addresses`, `gateway`, \
             `kernel_iface`, `kernel_device`"
        );
        assert_eq!(
            error(&format!("[ports]\nx = 1\n{BASE}")),
            "t.toml:1:2: ports: unknown field `ports`, expected one of `eal`, `lcores`, `control`, \
             `mempool`, `port`, `vip`, `neighbour`, `lb`, `service`, `defense`, `timeouts`, `mark`, \
             `sync_daemon`, `sync`, `announce`"
        );
        assert_eq!(
            error(&with_base("[neighbour]\nretry = 5\n")),
            "t.toml:9:1: neighbour.retry: unknown field `retry`, expected one of `max_entries`, \
             `max_pending_per_entry`, `max_pending_total`, `retry_ms`, `max_retries`, \
             `reachable_ms`, `gc_stale_ms`"
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert_eq!(
            error(&with_base("mtu = \"1500\"\n")),
            "t.toml:8:7: port[0].mtu: invalid type: string \"1500\", expected i64"
        );
        assert_eq!(
            error("[lcores]\nworkers = 1\n"),
            "t.toml:2:11: lcores.workers: invalid type: integer `1`, expected a sequence"
        );
        assert_eq!(
            error("[lcores]\nworkers = [1, \"2\"]\n"),
            "t.toml:2:15: lcores.workers[1]: invalid type: string \"2\", expected i64"
        );
        assert_eq!(
            error(&with_base("rss = \"yes\"\n")),
            "t.toml:8:7: port[0].rss: invalid type: string \"yes\", expected a boolean"
        );
    }

    #[test]
    fn missing_keys_are_errors() {
        assert_eq!(
            error("[eal]\nhuge = true\n"),
            "t.toml:1:1: missing field `lcores`"
        );
        assert_eq!(
            error("[lcores]\ncontrol = 0\n"),
            "t.toml:1:1: lcores: missing field `workers`"
        );
        assert_eq!(
            error(&with_base("\n[[port]]\nname = \"lan1\"\n")),
            "t.toml:9:1: port[1]: missing field `device`"
        );
        assert_eq!(
            error(&with_base("[[vip]]\nport = \"lan0\"\n")),
            "t.toml:8:1: vip[0]: missing field `address`"
        );
        assert_eq!(
            error("[lcores]\nworkers = [1]\n"),
            "t.toml:1:1: port: at least one [[port]] is required"
        );
    }

    #[test]
    fn syntax_errors_have_position_but_no_key() {
        assert_eq!(
            error(&with_base("mtu = [1, 2\n")),
            "t.toml:9:1: invalid array; expected `]`"
        );
        let e = Config::from_str(&with_base("mac = \"02:00\n"), "t.toml").unwrap_err();
        assert_eq!((e.line, e.col, e.key.as_str()), (8, 13, ""));
    }

    // ---- errors: semantics ----

    #[test]
    fn bad_cidr_is_an_error() {
        let text = format!(
            "{BASE}\n[[port]]\nname = \"lan1\"\ndevice = \"net_tap1\"\naddresses = [\"198.18.1.1/24\", \"198.18.0.1/40\"]\n"
        );
        let e = Config::from_str(&text, "configs/bad.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "configs/bad.toml:12:31: port[1].addresses[1]: invalid address \"198.18.0.1/40\": prefix length must be 0..=32"
        );
        assert_eq!(
            (e.file.as_str(), e.line, e.col, e.key.as_str()),
            ("configs/bad.toml", 12, 31, "port[1].addresses[1]")
        );
        assert_eq!(
            e.message,
            "invalid address \"198.18.0.1/40\": prefix length must be 0..=32"
        );
        let text = BASE.replace("198.18.0.1/24", "198.18.0.1");
        assert_eq!(
            error(&text),
            "t.toml:7:14: port[0].addresses[0]: invalid address \"198.18.0.1\": missing /prefix length"
        );
        let text = BASE.replace("198.18.0.1/24", "198.18.0.300/24");
        assert_eq!(
            error(&text),
            "t.toml:7:14: port[0].addresses[0]: invalid address \"198.18.0.300/24\": \"198.18.0.300\" is not an IP address"
        );
        let text = BASE.replace("198.18.0.1/24", "2001:db8::1/129");
        assert_eq!(
            error(&text),
            "t.toml:7:14: port[0].addresses[0]: invalid address \"2001:db8::1/129\": prefix length must be 0..=128"
        );
    }

    #[test]
    fn ipv6_port_addresses_and_gateways_are_accepted_vips_refused() {
        let v6 = parse(&BASE.replace("198.18.0.1/24", "2001:2::1/64"));
        assert_eq!(
            v6.ports[0].addresses[0].addr,
            "2001:2::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(v6.ports[0].addresses[0].prefix_len, 64);
        let dual = |gw: &str| {
            BASE.replace(
                "addresses = [\"198.18.0.1/24\"]\n",
                &format!("addresses = [\"198.18.0.1/24\", \"2001:2::1/64\"]\ngateway = {gw}\n"),
            )
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse(&dual("\"2001:2::fe\"")).ports[0].gateways,
            [ip("2001:2::fe")]
        );
        assert_eq!(
            parse(&dual("[\"198.18.0.254\", \"fe80::1\"]")).ports[0].gateways,
            [ip("198.18.0.254"), ip("fe80::1")]
        );
        assert_eq!(
            error(&dual("[\"2001:2::fe\", \"fe80::1\"]")),
            "t.toml:8:11: port[0].gateway: gateway fe80::1: the port already has gateway \
             2001:2::fe (at most one per address family)"
        );
        assert_eq!(
            error(&dual("\"2001:3::fe\"")),
            "t.toml:8:11: port[0].gateway: gateway 2001:3::fe is not in any subnet of this port"
        );
        assert_eq!(
            error(&dual("\"2001:2::1\"")),
            "t.toml:8:11: port[0].gateway: gateway 2001:2::1 is the port's own address"
        );
        assert_eq!(
            error(&dual("[1]")),
            "t.toml:8:11: port[0].gateway: gateway list entries must be address strings"
        );
        assert_eq!(
            error(&dual("7")),
            "t.toml:8:11: port[0].gateway: gateway must be an address or a list of addresses \
             (one per family)"
        );
        // IPv6 VIPs are served (neighbor discovery answers for them)
        let vip = with_base("[[vip]]\naddress = \"2001:db8::100\"\nport = \"lan0\"\n");
        let c = Config::from_str(&vip, "t.toml").unwrap();
        assert_eq!(
            c.vips[0].address,
            "2001:db8::100".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn duplicate_port_names_are_errors() {
        assert_eq!(
            error(&with_base(
                "[[port]]\nname = \"lan0\"\ndevice = \"net_tap1\"\n"
            )),
            "t.toml:9:8: port[1].name: duplicate port name \"lan0\""
        );
        assert_eq!(
            error(&with_base(
                "[[port]]\nname = \"lan 1\"\ndevice = \"net_tap1\"\n"
            )),
            "t.toml:9:8: port[1].name: invalid port name \"lan 1\": 1 to 32 of A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            error(&with_base(
                "[[port]]\nname = \"lan1\"\ndevice = \"net_tap0,iface=x\"\n"
            )),
            "t.toml:10:10: port[1].device: device net_tap0 is already used by port \"lan0\""
        );
    }

    #[test]
    fn address_on_two_ports_is_an_error() {
        assert_eq!(
            error(&with_base(
                "[[port]]\nname = \"lan1\"\ndevice = \"net_tap1\"\naddresses = [\"198.18.1.1/24\", \"198.18.0.1/16\"]\n"
            )),
            "t.toml:11:31: port[1].addresses[1]: address 198.18.0.1 is already on port \"lan0\""
        );
        assert_eq!(
            error(&BASE.replace(
                "[\"198.18.0.1/24\"]",
                "[\"198.18.0.1/24\", \"198.18.0.1/32\"]"
            )),
            "t.toml:7:31: port[0].addresses[1]: address 198.18.0.1 is listed twice"
        );
    }

    #[test]
    fn lcore_errors() {
        assert_eq!(
            error("[lcores]\nworkers = []\n"),
            "t.toml:2:11: lcores.workers: at least one worker lcore is required"
        );
        assert_eq!(
            error("[lcores]\nworkers = [1, 2, 1]\n"),
            "t.toml:2:18: lcores.workers[2]: duplicate worker lcore 1"
        );
        assert_eq!(
            error("[lcores]\ncontrol = 2\nworkers = [1, 2]\n"),
            "t.toml:3:15: lcores.workers[1]: lcore 2 is the control lcore; workers need their own"
        );
        assert_eq!(
            error("[lcores]\nworkers = [128]\n"),
            "t.toml:2:12: lcores.workers[0]: 128 out of range: must be 0..=127"
        );
        let many: Vec<String> = (1..=65).map(|i| i.to_string()).collect();
        assert_eq!(
            error(&format!("[lcores]\nworkers = [{}]\n", many.join(","))),
            "t.toml:2:11: lcores.workers: 65 workers: at most 64 are supported"
        );
    }

    #[test]
    fn cpu_map_is_checked_against_lcores() {
        let ok = parse(&BASE.replace(
            "workers = [1]",
            "workers = [1, 2, 3]\ncpu_map = \"0@0,(1,2)@(1-3),3@3\"",
        ));
        assert_eq!(ok.lcores.cpu_map.as_deref(), Some("0@0,(1,2)@(1-3),3@3"));
        assert_eq!(
            error(&BASE.replace("workers = [1]", "workers = [1]\ncpu_map = \"0-2@0\"")),
            "t.toml:3:11: lcores.cpu_map: defines lcores 0,1,2 but control and workers are 0,1"
        );
        assert_eq!(
            error(&BASE.replace("workers = [1]", "workers = [1]\ncpu_map = \"0@0,1@x\"")),
            "t.toml:3:11: lcores.cpu_map: unexpected 'x' at offset 6"
        );
        assert_eq!(
            error(&BASE.replace("workers = [1]", "workers = [1]\ncpu_map = \"(0,1)@0,1\"")),
            "t.toml:3:11: lcores.cpu_map: lcore 1 is mapped twice"
        );
        assert_eq!(parse_cpu_map("3-1"), Err("empty range 3-1".to_string()));
        assert_eq!(
            parse_cpu_map("0@2000"),
            Err("number at offset 2 must be 0..=1023".to_string())
        );
        assert_eq!(parse_cpu_map("(0,1"), Err("unexpected end".to_string()));
        assert_eq!(parse_cpu_map(""), Err("unexpected end".to_string()));
    }

    #[test]
    fn vip_errors() {
        assert_eq!(
            error(&with_base(
                "[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan9\"\n"
            )),
            "t.toml:10:8: vip[0].port: unknown port \"lan9\""
        );
        assert_eq!(
            error(&with_base(
                "[[vip]]\naddress = \"198.18.0.x\"\nport = \"lan0\"\n"
            )),
            "t.toml:9:11: vip[0].address: invalid address \"198.18.0.x\": not an IP address"
        );
        assert_eq!(
            error(&with_base(
                "[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\n"
            )),
            "t.toml:12:11: vip[1].address: duplicate VIP 198.18.0.100"
        );
    }

    #[test]
    fn vip_follow() {
        let c = Config::from_str(
            &with_base("[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\nfollow = \"vsd-lan0\"\n[[vip]]\naddress = \"198.18.0.101\"\nport = \"lan0\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.vips[0].follow.as_deref(), Some("vsd-lan0"));
        assert_eq!(c.vips[1].follow, None, "always on by default");
        assert!(error(&with_base(
            "[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\nfollow = \"much-too-long-name\"\n"
        ))
        .contains("vip[0].follow: \"much-too-long-name\" is not a kernel interface name"));
        assert!(error(&with_base(
            "[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\nfollow = \"\"\n"
        ))
        .contains("vip[0].follow"));
        // IPv6 VIPs follow too (announced with unsolicited neighbor
        // advertisements: dataplane::vipfollow)
        let c = Config::from_str(
            &with_base(
                "[[vip]]\naddress = \"2001:2::100\"\nport = \"lan0\"\nfollow = \"vsd-lan0\"\n",
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.vips[0].follow.as_deref(), Some("vsd-lan0"));
        assert_eq!(
            c.vips[0].address,
            "2001:2::100".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn port_field_errors() {
        assert_eq!(
            error(&with_base("mac = \"02:00:00:00:00\"\n")),
            "t.toml:8:7: port[0].mac: invalid MAC address \"02:00:00:00:00\": expected six hex pairs like \"02:00:00:00:00:01\""
        );
        assert_eq!(
            error(&with_base("mac = \"02:00:00:00:00:0g\"\n")),
            "t.toml:8:7: port[0].mac: invalid MAC address \"02:00:00:00:00:0g\": expected six hex pairs like \"02:00:00:00:00:01\""
        );
        assert_eq!(
            error(&with_base("mac = \"01:00:5e:00:00:01\"\n")),
            "t.toml:8:7: port[0].mac: MAC address 01:00:5e:00:00:01 must be a non-zero unicast address"
        );
        assert_eq!(
            error(&with_base("mtu = 9601\n")),
            "t.toml:8:7: port[0].mtu: 9601 out of range: must be 68..=9600"
        );
        assert_eq!(
            error(&with_base("mtu = 67\n")),
            "t.toml:8:7: port[0].mtu: 67 out of range: must be 68..=9600"
        );
        assert_eq!(
            error(&with_base("rx_desc = 1000\n")),
            "t.toml:8:11: port[0].rx_desc: 1000 is not a power of two"
        );
        assert_eq!(
            error(&with_base("tx_desc = 16\n")),
            "t.toml:8:11: port[0].tx_desc: 16 out of range: must be 32..=16384"
        );
        assert_eq!(
            error(&with_base("mtu = 9000\n")),
            "t.toml:8:7: port[0].mtu: mtu 9000 needs mempool.data_room >= 9146 (headroom 128 + frame 9018), data_room is 2176"
        );
        let jumbo = parse(&with_base("mtu = 9000\n[mempool]\ndata_room = 9216\n"));
        assert_eq!(jumbo.ports[0].mtu, 9000);
        assert_eq!(
            error(&with_base("gateway = \"198.18.1.254\"\n")),
            "t.toml:8:11: port[0].gateway: gateway 198.18.1.254 is not in any subnet of this port"
        );
        assert_eq!(
            error(&with_base("gateway = \"198.18.0.1\"\n")),
            "t.toml:8:11: port[0].gateway: gateway 198.18.0.1 is the port's own address"
        );
        let gw = parse(&with_base("gateway = \"198.18.0.254\"\n"));
        assert_eq!(
            gw.ports[0].gateways,
            ["198.18.0.254".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn device_must_be_vdev_or_pci() {
        let dev = |d: &str| error(&BASE.replace("\"net_tap0\"", &format!("{d:?}")));
        assert_eq!(
            dev("eth0"),
            "t.toml:6:10: port[0].device: invalid device \"eth0\": expected a vdev (\"net_...\") or a PCI address (\"0000:03:00.0\")"
        );
        assert_eq!(
            dev("0000:03:20.0"),
            "t.toml:6:10: port[0].device: invalid device \"0000:03:20.0\": expected a vdev (\"net_...\") or a PCI address (\"0000:03:00.0\")"
        );
        assert_eq!(
            dev("net_"),
            "t.toml:6:10: port[0].device: invalid vdev name \"net_\""
        );
        assert_eq!(
            dev("net_tap0, iface=x"),
            "t.toml:6:10: port[0].device: invalid device \"net_tap0, iface=x\": must be non-empty without spaces"
        );
        let short = parse(&BASE.replace("\"net_tap0\"", "\"03:00.1\""));
        assert_eq!(
            short.ports[0].device,
            PortDevice::Pci {
                addr: PciAddr {
                    domain: 0,
                    bus: 3,
                    device: 0,
                    function: 1
                },
                devargs: None
            }
        );
        assert_eq!(short.ports[0].device.eal_spec(), "0000:03:00.1");
    }

    #[test]
    fn eal_errors() {
        assert_eq!(
            error(&format!("[eal]\nargs = [\"--no-pci\", \"-l\", \"0-3\"]\n{BASE}")),
            "t.toml:2:21: eal.args[1]: \"-l\": vsd generates -l itself from [lcores] and [eal] huge/memory_mb"
        );
        assert_eq!(
            error(&format!("[eal]\nargs = [\"-m512\"]\n{BASE}")),
            "t.toml:2:9: eal.args[0]: \"-m512\": vsd generates -m itself from [lcores] and [eal] huge/memory_mb"
        );
        assert_eq!(
            error(&format!("[eal]\nargs = [\"--lcores=0@0\"]\n{BASE}")),
            "t.toml:2:9: eal.args[0]: \"--lcores=0@0\": vsd generates --lcores itself from [lcores] and [eal] huge/memory_mb"
        );
        assert_eq!(
            error(&format!("[eal]\nargs = [\"\"]\n{BASE}")),
            "t.toml:2:9: eal.args[0]: empty argument"
        );
        let pci = BASE.replace("\"net_tap0\"", "\"0000:03:00.0\"");
        assert_eq!(
            error(&format!("[eal]\nargs = [\"--no-pci\"]\n{pci}")),
            "t.toml:2:9: eal.args[0]: --no-pci contradicts PCI port \"lan0\""
        );
        // Options that merely share a prefix with generated ones are fine.
        let c = parse(&format!(
            "[eal]\nargs = [\"--log-level=8\", \"--match-allocations\", \"--lcoresx\"]\n{BASE}"
        ));
        assert_eq!(c.eal.args.len(), 3);
        assert_eq!(
            error(&format!("[eal]\nmemory_mb = 10\n{BASE}")),
            "t.toml:2:13: eal.memory_mb: 10 out of range: must be 64..=1048576"
        );
    }

    #[test]
    fn mempool_and_control_errors() {
        assert_eq!(
            error(
                &(BASE.replace("workers = [1]", "workers = [1, 2]") + "[mempool]\nmbufs = 2000\n")
            ),
            "t.toml:9:9: mempool.mbufs: 2000 is too small: the RX rings alone hold 2048"
        );
        assert_eq!(
            error(&with_base("[mempool]\ncache = 513\n")),
            "t.toml:9:9: mempool.cache: 513 out of range: must be 0..=512"
        );
        assert_eq!(
            error(&with_base("[mempool]\nmbufs = 1000\n")),
            "t.toml:9:9: mempool.mbufs: 1000 out of range: must be 1024..=268435456"
        );
        assert_eq!(
            error(&with_base("[control]\nsocket_mode = \"0980\"\n")),
            "t.toml:9:15: control.socket_mode: invalid mode \"0980\": expected octal like \"0660\""
        );
        assert_eq!(
            error(&with_base("[control]\nsocket = \"\"\n")),
            "t.toml:9:10: control.socket: invalid socket path \"\": must be 1..=107 bytes"
        );
        let c = parse(&with_base(
            "[control]\nsocket = \"/tmp/v.sock\"\nsocket_mode = \"600\"\n",
        ));
        assert_eq!(
            c.control,
            ControlConf {
                socket: "/tmp/v.sock".into(),
                socket_mode: 0o600,
                prometheus: None,
                rules_file: None,
            }
        );
        assert_eq!(
            parse(&with_base("[control]\nprometheus = \"127.0.0.1:9108\"\n"))
                .control
                .prometheus,
            Some("127.0.0.1:9108".parse().unwrap())
        );
        assert!(
            error(&with_base("[control]\nprometheus = \"198.18.0.1:9108\"\n"))
                .contains("control.prometheus: 198.18.0.1:9108 is not a loopback address")
        );
        assert!(error(&with_base("[control]\nprometheus = \"localhost\"\n"))
            .contains("control.prometheus: invalid listen address"));
    }

    #[test]
    fn neighbour_errors() {
        assert_eq!(
            error(&with_base(
                "[neighbour]\nmax_pending_per_entry = 20\nmax_pending_total = 10\n"
            )),
            "t.toml:9:25: neighbour.max_pending_per_entry: 20 exceeds max_pending_total 10"
        );
        assert_eq!(
            error(&with_base("[neighbour]\nretry_ms = 0\n")),
            "t.toml:9:12: neighbour.retry_ms: 0 out of range: must be 1..=60000"
        );
        let c = parse(&with_base(
            "[neighbour]\nmax_entries = 16\nmax_retries = 5\n",
        ));
        assert_eq!(
            c.neighbour,
            NeighParams {
                max_entries: 16,
                max_retries: 5,
                ..NeighParams::default()
            }
        );
    }

    // ---- services ----

    /// Lines 8-11.
    const SVC: &str = "[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n";

    #[test]
    fn service_defaults_and_fwmark() {
        let c = parse(&with_base(&format!(
            "{SVC}[[service.real_server]]\naddress = \"198.18.0.11\"\n"
        )));
        assert_eq!(
            c.services[0],
            ServiceConf {
                key: ServiceKey::Addr {
                    proto: Protocol::Tcp,
                    vip: "198.18.0.100".parse().unwrap(),
                    port: 80
                },
                scheduler: SchedulerKind::Wlc,
                persistence_timeout: None,
                netmask: None,
                flags: vec![],
                one_packet: false,
                synproxy: false,
                local_addresses: vec![],
                real_servers: vec![RealServerConf {
                    address: "198.18.0.11".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    method: FwdMethod::Route,
                    upper_threshold: 0,
                    lower_threshold: 0,
                    health: Default::default(),
                }],
                health: Default::default(),
            }
        );
        let c = parse(&with_base(
            "[[service]]\nfwmark = 7\nfamily = \"inet6\"\nscheduler = \"sh\"\n\
             flags = [\"sh-port\", \"sh-fallback\", \"sh-port\"]\n\
             persistence_timeout = 60\nnetmask = 64\none_packet = true\n\
             [[service.real_server]]\naddress = \"2001:db8::11\"\nmethod = \"nat\"\nport = 8080\n",
        ));
        let s = &c.services[0];
        assert_eq!(
            s.key,
            ServiceKey::Fwmark {
                mark: 7,
                family: AddrFamily::Inet6
            }
        );
        assert_eq!(s.flags, vec![SchedFlag::ShPort, SchedFlag::ShFallback]);
        assert_eq!(s.netmask, Some(64));
        assert!(s.one_packet);
        assert_eq!(s.real_servers[0].port, 8080);
        assert_eq!(
            s.real_servers[0].address,
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11))
        );
        // Every scheduler name parses.
        for sched in SchedulerKind::ALL {
            let text = with_base(&format!("{SVC}scheduler = \"{}\"\n", sched.name()));
            assert_eq!(parse(&text).services[0].scheduler, sched);
        }
    }

    #[test]
    fn service_key_errors() {
        assert_eq!(
            error(&with_base(
                "[[service]]\nvip = \"198.18.0.100\"\nport = 80\n"
            )),
            "t.toml:8:1: service[0]: missing proto (\"tcp\" or \"udp\")"
        );
        assert_eq!(
            error(&with_base(
                "[[service]]\nproto = \"sctp\"\nvip = \"198.18.0.100\"\nport = 80\n"
            )),
            "t.toml:9:9: service[0].proto: unknown protocol \"sctp\": expected \"tcp\" or \"udp\""
        );
        assert_eq!(
            error(&with_base("[[service]]\nscheduler = \"rr\"\n")),
            "t.toml:8:1: service[0]: a service needs vip (with proto and port) or fwmark"
        );
        assert_eq!(
            error(&with_base("[[service]]\nfwmark = 1\nport = 80\n")),
            "t.toml:10:8: service[0].port: a fwmark service has no port"
        );
        assert_eq!(
            error(&with_base("[[service]]\nfwmark = 0\n")),
            "t.toml:9:10: service[0].fwmark: 0 out of range: must be 1..=4294967295"
        );
        assert_eq!(
            error(&with_base(&SVC.replace("port = 80", "port = 0"))),
            "t.toml:11:8: service[0].port: port 0 (all ports) needs persistence_timeout"
        );
        assert_eq!(
            error(&with_base(&format!("{SVC}family = \"inet\"\n"))),
            "t.toml:12:10: service[0].family: family only applies to fwmark services (others take it from vip)"
        );
        assert_eq!(
            error(&with_base(&format!("{SVC}{SVC}"))),
            "t.toml:12:1: service[1]: duplicate service"
        );
    }

    #[test]
    fn service_option_errors() {
        let svc = |extra: &str| error(&with_base(&format!("{SVC}{extra}")));
        assert_eq!(
            svc("scheduler = \"fastest\"\n"),
            "t.toml:12:13: service[0].scheduler: unknown scheduler \"fastest\": expected one of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos"
        );
        assert_eq!(
            svc("scheduler = \"rr\"\nflags = [\"mh-port\"]\n"),
            "t.toml:13:10: service[0].flags[0]: flag mh-port needs scheduler mh, not rr"
        );
        assert_eq!(
            svc("flags = [\"flag-1\", \"fast\"]\n"),
            "t.toml:12:20: service[0].flags[1]: unknown scheduler flag \"fast\": expected one of flag-1 flag-2 flag-3 sh-fallback sh-port mh-fallback mh-port"
        );
        assert_eq!(
            svc("one_packet = true\n"),
            "t.toml:12:14: service[0].one_packet: one_packet applies to UDP and fwmark services only"
        );
        assert_eq!(
            svc("netmask = \"255.255.255.0\"\n"),
            "t.toml:12:11: service[0].netmask: netmask needs persistence_timeout"
        );
        assert_eq!(
            svc("persistence_timeout = 300\nnetmask = \"255.0.255.0\"\n"),
            "t.toml:13:11: service[0].netmask: invalid netmask: expected a prefix length 1..=32 or a contiguous mask like \"255.255.255.0\""
        );
        assert_eq!(
            svc("persistence_timeout = 300\nnetmask = true\n"),
            "t.toml:13:11: service[0].netmask: invalid type: boolean `true`, expected a prefix length (integer) or a netmask string"
        );
        assert_eq!(
            svc("persistence_timeout = 0\n"),
            "t.toml:12:23: service[0].persistence_timeout: 0 out of range: must be 1..=4294967295"
        );
        assert_eq!(
            svc("local_addresses = [\"198.18.1.250\", \"198.18.1.250\"]\n"),
            "t.toml:12:36: service[0].local_addresses[1]: duplicate local address 198.18.1.250"
        );
        let c = parse(&with_base(&format!(
            "{SVC}persistence_timeout = 300\nnetmask = 16\n"
        )));
        assert_eq!(c.services[0].netmask, Some(16));
    }

    #[test]
    fn real_server_errors() {
        // Lines: 12 [[service.real_server]], 13 address, 14 onwards the extra fields.
        let rs = |fields: &str| {
            error(&with_base(&format!(
                "{SVC}[[service.real_server]]\naddress = \"198.18.0.11\"\n{fields}"
            )))
        };
        assert_eq!(
            rs("weight = 65536\n"),
            "t.toml:14:10: service[0].real_server[0].weight: 65536 out of range: must be 0..=65535"
        );
        assert_eq!(
            rs("weight = -1\n"),
            "t.toml:14:10: service[0].real_server[0].weight: -1 out of range: must be 0..=65535"
        );
        assert_eq!(
            rs("method = \"masq\"\n"),
            "t.toml:14:10: service[0].real_server[0].method: unknown method \"masq\": expected one of nat dr tun fullnat"
        );
        assert_eq!(
            rs("port = 8080\n"),
            "t.toml:14:8: service[0].real_server[0].port: port 8080 differs from the service port 80: only nat and fullnat map ports"
        );
        assert_eq!(
            rs("upper_threshold = 10\nlower_threshold = 20\n"),
            "t.toml:15:19: service[0].real_server[0].lower_threshold: 20 is higher than upper_threshold 10"
        );
        assert_eq!(
            rs("method = \"fullnat\"\n"),
            "t.toml:14:10: service[0].real_server[0].method: fullnat to 198.18.0.11 needs a local_addresses entry of its family in the service"
        );
        assert_eq!(
            rs("[[service.real_server]]\naddress = \"198.18.0.11\"\n"),
            "t.toml:15:11: service[0].real_server[1].address: duplicate real server 198.18.0.11 port 80"
        );
        assert_eq!(
            error(&with_base(&format!(
                "{SVC}[[service.real_server]]\naddress = \"2001:db8::1\"\n"
            ))),
            "t.toml:13:11: service[0].real_server[0].address: 2001:db8::1 is not in the service's address family (only tun mixes families), nor an IPv4 fullnat server of an IPv6 service (NAT64)"
        );
        // A tunnel may cross families; DR with the service port spelled out is fine.
        let c = parse(&with_base(&format!(
            "{SVC}[[service.real_server]]\naddress = \"2001:db8::1\"\nmethod = \"tun\"\n\
             [[service.real_server]]\naddress = \"198.18.0.12\"\nport = 80\n"
        )));
        assert_eq!(c.services[0].real_servers[0].method, FwdMethod::Tunnel);
        assert_eq!(c.services[0].real_servers[1].port, 80);
        // NAT64: FULLNAT from an IPv6 service to IPv4 servers, with an
        // IPv4 local address; not from IPv4 to IPv6, nor by NAT
        let v6 = "[[service]]\nproto = \"tcp\"\nvip = \"2001:2::64\"\nport = 80\n\
                  local_addresses = [\"198.18.1.200\"]\n";
        let c = parse(&with_base(&format!(
            "{v6}[[service.real_server]]\naddress = \"198.18.1.11\"\nport = 8080\nmethod = \"fullnat\"\n"
        )));
        assert_eq!(c.services[0].real_servers[0].method, FwdMethod::FullNat);
        assert!(error(&with_base(&format!(
            "{v6}[[service.real_server]]\naddress = \"198.18.1.11\"\nmethod = \"nat\"\n"
        )))
        .contains("198.18.1.11 is not in the service's address family"));
        assert!(error(&with_base(&format!(
            "{SVC}local_addresses = [\"2001:2::200\"]\n\
             [[service.real_server]]\naddress = \"2001:2::11\"\nmethod = \"fullnat\"\n"
        )))
        .contains("2001:2::11 is not in the service's address family"));
    }

    // ---- pieces ----

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\nçé = 1\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        // "çé" is four bytes, two characters.
        assert_eq!(line_col(text, 7), (2, 3));
        assert_eq!(line_col(text, 4), (2, 1)); // inside "ç": snaps back to its start
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn value_parsers() {
        assert_eq!(
            MacAddr::parse("02:AB:cd:00:00:01"),
            Some(MacAddr([2, 0xab, 0xcd, 0, 0, 1]))
        );
        assert_eq!(
            MacAddr([2, 0xab, 0xcd, 0, 0, 1]).to_string(),
            "02:ab:cd:00:00:01"
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:01",
            "02-00-00-00-00-01",
            "+2:00:00:00:00:01",
        ] {
            assert_eq!(MacAddr::parse(bad), None, "{bad}");
        }
        assert_eq!(
            PciAddr::parse("ffff:ff:1f.7")
                .map(|p| p.to_string())
                .as_deref(),
            Some("ffff:ff:1f.7")
        );
        for bad in [
            "10000:00:00.0",
            "0000:03:00",
            "0000:03:00.8",
            "0000:03:32.0",
            "0000:003:00.0",
            "03.0",
            "a:b:c:d.0",
            "",
        ] {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
        let net = IpCidr::parse("198.18.0.1/15").unwrap();
        assert!(net.contains("198.19.255.255".parse().unwrap()));
        assert!(!net.contains("198.20.0.0".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(IpCidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(IpCidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!IpCidr::parse("2001:db8::/128")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert_eq!(mask_prefix_len("255.255.255.0"), Some(24));
        assert_eq!(mask_prefix_len("255.255.255.255"), Some(32));
        assert_eq!(mask_prefix_len("0.0.0.0"), Some(0));
        assert_eq!(mask_prefix_len("255.0.255.0"), None);
        assert!(is_option("-l0-3", "-l"));
        assert!(!is_option("--log-level=1", "-l"));
        assert!(is_option("--lcores=1", "--lcores"));
        assert!(!is_option("--lcoresx", "--lcores"));
    }

    #[test]
    fn from_file_reads_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("vsd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, BASE).unwrap();
        assert_eq!(
            Config::from_file(&good).unwrap().source,
            good.display().to_string()
        );
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, with_base("mtu = 1\n")).unwrap();
        assert_eq!(
            Config::from_file(&bad).unwrap_err().to_string(),
            format!(
                "{}:8:7: port[0].mtu: 1 out of range: must be 68..=9600",
                bad.display()
            )
        );
        let missing = dir.join("missing.toml");
        let e = Config::from_file(&missing).unwrap_err();
        assert_eq!((e.line, e.col), (0, 0));
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot open: ", missing.display())));
        std::fs::write(&bad, [0xff, 0xfe, b'\n']).unwrap();
        assert!(Config::from_file(&bad)
            .unwrap_err()
            .message
            .starts_with("cannot read: "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Small deterministic PRNG for the robustness test.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn mutated_configs_never_panic() {
        const BYTES: &[u8] = b"[]{}=,.\"'#\n 0123456789-:/_abcxyz@()";
        let mut rng = XorShift(0x5eed_1234_abcd_0001);
        let sources = [DEMO, BARE_METAL, MEMIF];
        let mut errors = 0;
        for round in 0..1500 {
            let mut text: Vec<u8> = sources[round % 3].as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(text.len());
                match rng.below(3) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, BYTES[rng.below(BYTES.len())]),
                    _ => text[at] = BYTES[rng.below(BYTES.len())],
                }
            }
            let text = String::from_utf8_lossy(&text);
            if let Err(e) = Config::from_str(&text, "fuzz.toml") {
                errors += 1;
                assert!(e.line >= 1 && e.col >= 1, "{e}");
                assert!(!e.message.is_empty(), "{e}");
            }
            // The locator must cope with any offset of any text.
            let offset = rng.below(text.len() + 2);
            let _ = key_path_at(&text, offset);
        }
        assert!(errors > 300, "only {errors} mutations were caught");
    }
}
