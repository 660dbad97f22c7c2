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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::dataplane::neigh::NeighParams;
pub use crate::lb::types::{AddrFamily, SchedulerKind};
use crate::lb::types::{FwdMethod, Protocol};

pub mod announce;
pub mod health;

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
/// Ethernet header + one VLAN tag: what a frame adds to the MTU.
const FRAME_OVERHEAD: u32 = 18;
/// Packets per RX/TX burst, for the mempool sizing estimate.
const BURST: u32 = 32;
/// Mbufs per worker for steering rings between workers (estimate).
const STEERING_MBUFS_PER_WORKER: u32 = 1024;
/// Mbufs for the control thread and the exception path (estimate).
const CONTROL_MBUFS: u32 = 2048;
/// The default pool never goes below this (a power of two minus one, as DPDK likes).
const MIN_DEFAULT_MBUFS: u32 = 8191;

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

/// `[eal]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConf {
    /// Extra EAL arguments, appended verbatim after the ones vsd generates.
    pub args: Vec<String>,
    /// Use hugepages; `false` makes vsd pass `--no-huge -m <memory_mb>`.
    pub huge: bool,
    /// EAL memory in MiB (`-m`); with hugepages only passed when set.
    pub memory_mb: Option<u32>,
}

/// `[lcores]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreConf {
    /// Lcore of the main (control) thread.
    pub control: u32,
    /// Worker lcores, in file order; distinct, none equal to `control`.
    pub workers: Vec<u32>,
    /// DPDK `--lcores` mapping of lcores onto CPUs, passed through when set.
    pub cpu_map: Option<String>,
    /// What a worker does when it finds no packets (`idle`).
    pub idle: IdleMode,
}

/// `[lcores] idle`: busy polling, or sleeping with backoff once idle
/// (see `dataplane::idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdleMode {
    /// Poll without pause: lowest latency, one CPU per worker (appliances).
    #[default]
    Poll,
    /// Sleep with a growing pause after a run of empty polls.
    Sleep,
}

/// `[[port]] kernel_device`: the DPDK device behind a kernel twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelDevice {
    /// DPDK's net_tap PMD (needs /dev/net/tun).
    Tap,
    /// virtio-user with the vhost-net backend (needs /dev/vhost-net).
    VirtioUser,
}

/// The kernel twin of a port (`kernel_iface`, `kernel_device`): see
/// `dataplane::exception`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTwin {
    /// Name of the kernel interface vsd creates.
    pub iface: String,
    pub device: KernelDevice,
}

impl KernelTwin {
    /// DPDK name of the twin device of port `index`.
    pub fn eal_name(&self, index: usize) -> String {
        match self.device {
            KernelDevice::Tap => format!("net_tap_vsdk{index}"),
            KernelDevice::VirtioUser => format!("virtio_user_vsdk{index}"),
        }
    }

    /// The `--vdev` argument for the twin of port `index` with `queues`
    /// queue pairs.
    pub fn eal_spec(&self, index: usize, queues: usize) -> String {
        match self.device {
            KernelDevice::Tap => format!("{},iface={}", self.eal_name(index), self.iface),
            KernelDevice::VirtioUser => format!(
                "{},path=/dev/vhost-net,iface={},queues={queues},queue_size=1024",
                self.eal_name(index),
                self.iface
            ),
        }
    }
}

/// `[lb]`: settings of each worker's forwarding core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConf {
    /// Connection table capacity per worker (connections, templates and
    /// NAT redirect entries).
    pub conn_capacity: u32,
    /// The IPv6 connection table's capacity per worker (its own table:
    /// 128-bit keys; NAT64 and cross-family tunnel connections live there).
    pub conn_capacity6: u32,
    /// Expire a connection on its next request once its real server is
    /// removed and schedule that request afresh (IPVS `expire_nodest_conn`);
    /// otherwise its requests are dropped until the entry times out.
    pub expire_nodest_conn: bool,
    /// IPVS `conn_reuse_mode` (0..=3, default 1): bit 1 schedules afresh
    /// a SYN that finds a closing connection; bit 2 also one in FIN_WAIT
    /// on a DR/TUN connection.
    pub conn_reuse_mode: u8,
    /// IPVS `expire_quiescent_template`: persistence templates of a
    /// weight-0 server are not followed (default false).
    pub expire_quiescent_template: bool,
    /// Outer source of TUN packets; default: the director address on the
    /// port toward the first tunnelled real server.
    pub tun_source: Option<std::net::Ipv4Addr>,
    /// Outer source of IPv6 TUN packets (IPv6-in-IPv6); default: see
    /// [`crate::control::tun_source`].
    pub tun_source6: Option<std::net::Ipv6Addr>,
    /// FULLNAT local port range.
    pub local_port_min: u16,
    /// FULLNAT local port range, last port.
    pub local_port_max: u16,
}

impl Default for LbConf {
    fn default() -> Self {
        LbConf {
            conn_capacity: 1 << 20,
            conn_capacity6: 1 << 16,
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
            expire_quiescent_template: false,
            tun_source: None,
            tun_source6: None,
            local_port_min: 1024,
            local_port_max: 65535,
        }
    }
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

/// `[mempool]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConf {
    /// Mbufs in the pool (explicit, or the estimate of [`default_mbufs`]).
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    pub cache: u32,
    /// Data room of each mbuf including the 128-byte headroom.
    pub data_room: u16,
}

/// `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// Unique name used in logs and listings.
    pub name: String,
    /// The DPDK device behind the port.
    pub device: PortDevice,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// MTU (IP packet size).
    pub mtu: u16,
    /// MAC address to set on the port instead of its own.
    pub mac: Option<MacAddr>,
    /// Enable promiscuous mode.
    pub promiscuous: bool,
    /// Use hardware RSS with the symmetric key where the PMD supports it.
    pub rss: bool,
    /// The director's own addresses on this port.
    pub addresses: Vec<IpCidr>,
    /// Default next hops reached through this port, at most one per
    /// address family (`gateway = "ADDR"` or a list of addresses).
    pub gateways: Vec<IpAddr>,
    /// The kernel twin interface, when the port has one.
    pub kernel: Option<KernelTwin>,
}

/// The DPDK device of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDevice {
    /// A virtual device (`--vdev`), e.g. `net_tap0,iface=vsd0`; the full spec.
    Vdev(String),
    /// A PCI device (`-a`), with optional device arguments after a comma.
    Pci {
        /// Bus address.
        addr: PciAddr,
        /// Driver arguments (text after the first comma), passed through.
        devargs: Option<String>,
    },
}

impl PortDevice {
    /// Name DPDK gives the port (`rte_eth_dev_get_port_by_name`): the vdev name before
    /// its first comma, or the canonical PCI address.
    pub fn eal_name(&self) -> String {
        match self {
            PortDevice::Vdev(spec) => spec.split(',').next().unwrap_or(spec).to_string(),
            PortDevice::Pci { addr, .. } => addr.to_string(),
        }
    }

    /// The argument of `--vdev` or `-a` for this device.
    pub fn eal_spec(&self) -> String {
        match self {
            PortDevice::Vdev(spec) => spec.clone(),
            PortDevice::Pci {
                addr,
                devargs: Some(args),
            } => format!("{addr},{args}"),
            PortDevice::Pci {
                addr,
                devargs: None,
            } => addr.to_string(),
        }
    }
}

/// A PCI address `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    /// Domain (segment), 16 bits in practice.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddr {
    /// Parses `DDDD:BB:DD.F` or the short `BB:DD.F` (domain 0), hexadecimal.
    pub fn parse(text: &str) -> Option<PciAddr> {
        let (rest, function) = text.rsplit_once('.')?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        if parts.len() == 2 {
            parts.insert(0, "0000");
        }
        let [domain, bus, device] = parts.as_slice() else {
            return None;
        };
        let hex = |s: &str, max_len: usize| -> Option<u32> {
            if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let domain = u16::try_from(hex(domain, 4)?).ok()?;
        let bus = u8::try_from(hex(bus, 2)?).ok()?;
        let device = u8::try_from(hex(device, 2)?).ok().filter(|d| *d <= 31)?;
        let function = u8::try_from(hex(function, 1)?).ok().filter(|f| *f <= 7)?;
        Some(PciAddr {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// An Ethernet MAC address (local to the config; the data plane has its own type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `02:00:00:00:00:01` (six pairs of hex digits separated by colons).
    pub fn parse(text: &str) -> Option<MacAddr> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in bytes.iter_mut() {
            let part = parts.next()?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(MacAddr(bytes))
    }

    /// Whether this is a multicast (or broadcast) address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An address with its prefix length, e.g. `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    /// The address itself (not masked).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix_len: u8,
}

impl IpCidr {
    /// Parses `ADDR/LEN`; the error text says what is wrong.
    pub fn parse(text: &str) -> Result<IpCidr, String> {
        let Some((addr, len)) = text.split_once('/') else {
            return Err("missing /prefix length".to_string());
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length must be 0..={max}"))?;
        Ok(IpCidr { addr, prefix_len })
    }

    /// Whether `ip` lies in this prefix (same family, same leading `prefix_len` bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
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

/// EAL options vsd generates itself; `eal.args` must not repeat them.
const GENERATED_EAL_OPTIONS: [&str; 6] =
    ["-l", "-c", "--lcores", "--main-lcore", "--no-huge", "-m"];

/// Whether an EAL argument is (or starts) the option `opt`.
fn is_option(arg: &str, opt: &str) -> bool {
    if opt.starts_with("--") {
        arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
    } else {
        // Short options may carry their value attached: `-l0-3`.
        !arg.starts_with("--") && arg.starts_with(opt)
    }
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

fn build_sync_daemons(
    ctx: &Ctx<'_>,
    raw: &[S<RawSyncDaemon>],
) -> Result<Vec<super::ipvsadm::SyncDaemonSpec>, ConfigError> {
    use super::ipvsadm::{SyncDaemonSpec, SyncRole};
    let mut out: Vec<SyncDaemonSpec> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let d = d.get_ref();
        let k = |f: &str| format!("sync_daemon[{i}].{f}");
        let role = match d.role.get_ref().as_str() {
            "master" => SyncRole::Master,
            "backup" => SyncRole::Backup,
            other => {
                return Err(ctx.err(
                    d.role.span(),
                    k("role"),
                    format!("{other:?}: must be \"master\" or \"backup\""),
                ))
            }
        };
        if out.iter().any(|o| o.role == role) {
            return Err(ctx.err(
                d.role.span(),
                k("role"),
                format!("a second {} sync daemon", role.name()),
            ));
        }
        let opt = |v: &Option<S<i64>>, f: &str, lo: i64, hi: i64| {
            v.as_ref().map(|v| ctx.int(v, &k(f), lo, hi)).transpose()
        };
        let mcast_group = match &d.mcast_group {
            None => None,
            Some(g) => {
                let ip = ctx.ip(g, &k("mcast_group"))?;
                if !ip.is_multicast() {
                    return Err(ctx.err(
                        g.span(),
                        k("mcast_group"),
                        format!("{ip}: must be a multicast address"),
                    ));
                }
                Some(ip)
            }
        };
        let mut peers = Vec::new();
        for (j, p) in d.peers.iter().enumerate() {
            let ip = ctx.ip(p, &k(&format!("peers[{j}]")))?;
            if ip.is_multicast() || ip.is_unspecified() || ip == IpAddr::from([255; 4]) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip}: must be a unicast address"),
                ));
            }
            if let Some(o) = peers.iter().find(|o: &&IpAddr| o.is_ipv4() != ip.is_ipv4()) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip}: peers of one address family only ({o} is the other)"),
                ));
            }
            if peers.contains(&ip) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip} given twice"),
                ));
            }
            peers.push(ip);
        }
        out.push(SyncDaemonSpec {
            peers,
            role,
            mcast_interface: d.mcast_interface.get_ref().clone(),
            syncid: opt(&d.syncid, "syncid", 0, 255)?.unwrap_or(0) as u8,
            sync_maxlen: opt(&d.sync_maxlen, "sync_maxlen", 1, 65535)?.map(|n| n as u16),
            mcast_group,
            mcast_port: opt(&d.mcast_port, "mcast_port", 1, 65535)?.map(|n| n as u16),
            mcast_ttl: opt(&d.mcast_ttl, "mcast_ttl", 1, 255)?.map(|n| n as u8),
        });
    }
    Ok(out)
}

fn build_sync(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawSync>>,
) -> Result<crate::lb::sync::SyncSettings, ConfigError> {
    use crate::lb::sync::{SyncSettings, MAX_REFRESH_PERIOD_S};
    let d = SyncSettings::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let r = raw.get_ref();
    let max = i64::from(i32::MAX);
    let s = SyncSettings {
        threshold: narrow(ctx.int_or(&r.threshold, "sync.threshold", 0, max, 3)?),
        period: narrow(ctx.int_or(&r.period, "sync.period", 0, max, 50)?),
        refresh_period_s: narrow(ctx.int_or(
            &r.refresh_period,
            "sync.refresh_period",
            0,
            i64::from(MAX_REFRESH_PERIOD_S),
            0,
        )?),
        retries: narrow(ctx.int_or(&r.retries, "sync.retries", 0, 3, 0)?),
        persist_mode: ctx.int_or(&r.persist_mode, "sync.persist_mode", 0, 1, 0)? == 1,
        version: narrow(ctx.int_or(&r.version, "sync.version", 0, 1, 1)?),
    };
    s.validate().map_err(|e| ctx.err(raw.span(), "sync", e))?;
    Ok(s)
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

fn build_lcores(ctx: &Ctx<'_>, raw: &S<RawLcores>) -> Result<LcoreConf, ConfigError> {
    let max = i64::from(MAX_LCORE_ID);
    let lc = raw.get_ref();
    let control = narrow::<u32>(ctx.int_or(&lc.control, "lcores.control", 0, max, 0)?);
    let list = lc.workers.get_ref();
    if list.is_empty() {
        return Err(ctx.err(
            lc.workers.span(),
            "lcores.workers",
            "at least one worker lcore is required",
        ));
    }
    if list.len() > MAX_WORKERS {
        return Err(ctx.err(
            lc.workers.span(),
            "lcores.workers",
            format!(
                "{} workers: at most {MAX_WORKERS} are supported",
                list.len()
            ),
        ));
    }
    let mut workers = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        let key = format!("lcores.workers[{i}]");
        let id = narrow::<u32>(ctx.int(w, &key, 0, max)?);
        if id == control {
            return Err(ctx.err(
                w.span(),
                key,
                format!("lcore {id} is the control lcore; workers need their own"),
            ));
        }
        if workers.contains(&id) {
            return Err(ctx.err(w.span(), key, format!("duplicate worker lcore {id}")));
        }
        workers.push(id);
    }
    let cpu_map = match &lc.cpu_map {
        None => None,
        Some(map) => {
            let defined = parse_cpu_map(map.get_ref())
                .map_err(|m| ctx.err(map.span(), "lcores.cpu_map", m))?;
            let mut used: BTreeSet<u32> = workers.iter().copied().collect();
            used.insert(control);
            if defined != used {
                return Err(ctx.err(
                    map.span(),
                    "lcores.cpu_map",
                    format!(
                        "defines lcores {} but control and workers are {}",
                        join_ids(&defined),
                        join_ids(&used)
                    ),
                ));
            }
            Some(map.get_ref().clone())
        }
    };
    let idle = match &lc.idle {
        None => IdleMode::Poll,
        Some(v) => match v.get_ref().as_str() {
            "poll" => IdleMode::Poll,
            "sleep" => IdleMode::Sleep,
            other => {
                return Err(ctx.err(
                    v.span(),
                    "lcores.idle",
                    format!("unknown idle mode {other:?}: expected \"poll\" or \"sleep\""),
                ))
            }
        },
    };
    Ok(LcoreConf {
        control,
        workers,
        cpu_map,
        idle,
    })
}

fn join_ids(ids: &BTreeSet<u32>) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Parses DPDK's `--lcores` syntax (`0@0,(1,2)@(1-3),4-5`) and returns the lcore ids it
/// defines; CPU sets are checked for syntax only.
fn parse_cpu_map(text: &str) -> Result<BTreeSet<u32>, String> {
    struct P<'a> {
        b: &'a [u8],
        pos: usize,
    }
    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.pos).copied()
        }
        fn unexpected(&self) -> String {
            match self.peek() {
                Some(c) => format!("unexpected {:?} at offset {}", c as char, self.pos),
                None => "unexpected end".to_string(),
            }
        }
        fn number(&mut self, max: u32) -> Result<u32, String> {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.unexpected());
            }
            std::str::from_utf8(self.b.get(start..self.pos).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("number at offset {start} must be 0..={max}"))
        }
        /// `N` or `N-M`, added to `out`.
        fn range(&mut self, max: u32, out: &mut BTreeSet<u32>) -> Result<(), String> {
            let lo = self.number(max)?;
            let hi = if self.peek() == Some(b'-') {
                self.pos += 1;
                self.number(max)?
            } else {
                lo
            };
            if hi < lo {
                return Err(format!("empty range {lo}-{hi}"));
            }
            out.extend(lo..=hi);
            Ok(())
        }
        /// A range or a parenthesised list of ranges.
        fn set(&mut self, max: u32) -> Result<BTreeSet<u32>, String> {
            let mut out = BTreeSet::new();
            if self.peek() == Some(b'(') {
                self.pos += 1;
                loop {
                    self.range(max, &mut out)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            } else {
                self.range(max, &mut out)?;
            }
            Ok(out)
        }
    }
    let mut p = P {
        b: text.as_bytes(),
        pos: 0,
    };
    let mut lcores = BTreeSet::new();
    loop {
        let set = p.set(MAX_LCORE_ID)?;
        if let Some(dup) = set.intersection(&lcores).next() {
            return Err(format!("lcore {dup} is mapped twice"));
        }
        lcores.extend(set);
        if p.peek() == Some(b'@') {
            p.pos += 1;
            p.set(1023)?;
        }
        match p.peek() {
            None => return Ok(lcores),
            Some(b',') => p.pos += 1,
            _ => return Err(p.unexpected()),
        }
    }
}

fn build_neighbour(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawNeighbour>>,
) -> Result<NeighParams, ConfigError> {
    let d = NeighParams::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let n = raw.get_ref();
    let day_ms = 86_400_000;
    let params = NeighParams {
        max_entries: narrow(ctx.int_or(
            &n.max_entries,
            "neighbour.max_entries",
            1,
            1 << 20,
            i64::from(d.max_entries),
        )?),
        max_pending_per_entry: narrow(ctx.int_or(
            &n.max_pending_per_entry,
            "neighbour.max_pending_per_entry",
            1,
            65535,
            i64::from(d.max_pending_per_entry),
        )?),
        max_pending_total: narrow(ctx.int_or(
            &n.max_pending_total,
            "neighbour.max_pending_total",
            1,
            1 << 20,
            i64::from(d.max_pending_total),
        )?),
        retry_ms: narrow(ctx.int_or(
            &n.retry_ms,
            "neighbour.retry_ms",
            1,
            60_000,
            d.retry_ms as i64,
        )?),
        max_retries: narrow(ctx.int_or(
            &n.max_retries,
            "neighbour.max_retries",
            1,
            100,
            i64::from(d.max_retries),
        )?),
        reachable_ms: narrow(ctx.int_or(
            &n.reachable_ms,
            "neighbour.reachable_ms",
            1000,
            day_ms,
            d.reachable_ms as i64,
        )?),
        gc_stale_ms: narrow(ctx.int_or(
            &n.gc_stale_ms,
            "neighbour.gc_stale_ms",
            1000,
            day_ms,
            d.gc_stale_ms as i64,
        )?),
        delay_probe_ms: d.delay_probe_ms,
    };
    if params.max_pending_per_entry > params.max_pending_total {
        let span = n.max_pending_per_entry.as_ref().map_or(raw.span(), S::span);
        return Err(ctx.err(
            span,
            "neighbour.max_pending_per_entry",
            format!(
                "{} exceeds max_pending_total {}",
                params.max_pending_per_entry, params.max_pending_total
            ),
        ));
    }
    Ok(params)
}

fn build_lb(ctx: &Ctx<'_>, raw: Option<&S<RawLb>>) -> Result<LbConf, ConfigError> {
    let d = LbConf::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let l = raw.get_ref();
    if let Some(sctp) = l.sloppy_sctp.as_ref().filter(|v| *v.get_ref()) {
        return Err(ctx.err(
            sctp.span(),
            "lb.sloppy_sctp",
            "vsd has no SCTP services, so sloppy_sctp cannot be on",
        ));
    }
    let tun_source = match &l.tun_source {
        None => None,
        Some(a) => match ctx.ip(a, "lb.tun_source")? {
            IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_multicast() => Some(v4),
            other => {
                return Err(ctx.err(
                    a.span(),
                    "lb.tun_source",
                    format!("tun_source {other} must be a unicast IPv4 address"),
                ))
            }
        },
    };
    let tun_source6 = match &l.tun_source6 {
        None => None,
        Some(a) => match ctx.ip(a, "lb.tun_source6")? {
            IpAddr::V6(v6) if crate::control::tun_source::usable6(v6) => Some(v6),
            other => {
                return Err(ctx.err(
                    a.span(),
                    "lb.tun_source6",
                    format!("tun_source6 {other} must be a global unicast IPv6 address"),
                ))
            }
        },
    };
    let lb = LbConf {
        conn_capacity: narrow(ctx.int_or(
            &l.conn_capacity,
            "lb.conn_capacity",
            1024,
            1 << 28,
            i64::from(d.conn_capacity),
        )?),
        conn_capacity6: narrow(ctx.int_or(
            &l.conn_capacity6,
            "lb.conn_capacity6",
            1024,
            1 << 28,
            i64::from(d.conn_capacity6),
        )?),
        expire_nodest_conn: l.expire_nodest_conn.unwrap_or(d.expire_nodest_conn),
        conn_reuse_mode: narrow(ctx.int_or(
            &l.conn_reuse_mode,
            "lb.conn_reuse_mode",
            0,
            3,
            i64::from(d.conn_reuse_mode),
        )?),
        expire_quiescent_template: l
            .expire_quiescent_template
            .unwrap_or(d.expire_quiescent_template),
        tun_source,
        tun_source6,
        local_port_min: narrow(ctx.int_or(
            &l.local_port_min,
            "lb.local_port_min",
            1,
            65535,
            i64::from(d.local_port_min),
        )?),
        local_port_max: narrow(ctx.int_or(
            &l.local_port_max,
            "lb.local_port_max",
            1,
            65535,
            i64::from(d.local_port_max),
        )?),
    };
    if lb.local_port_min > lb.local_port_max {
        let span = l.local_port_min.as_ref().map_or(raw.span(), S::span);
        return Err(ctx.err(
            span,
            "lb.local_port_min",
            format!(
                "{} is above local_port_max {}",
                lb.local_port_min, lb.local_port_max
            ),
        ));
    }
    Ok(lb)
}

/// Port names: 1..=32 of `[A-Za-z0-9_.-]`.
fn valid_port_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Parses a port's `device`: a vdev spec `net_NAME[,args]` or a PCI address `[,devargs]`.
fn parse_device(spec: &str) -> Result<PortDevice, String> {
    if spec.is_empty()
        || spec
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "invalid device {spec:?}: must be non-empty without spaces"
        ));
    }
    let (name, args) = match spec.split_once(',') {
        Some((name, args)) => (name, Some(args)),
        None => (spec, None),
    };
    if let Some(driver) = name.strip_prefix("net_") {
        if driver.is_empty()
            || !driver
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("invalid vdev name {name:?}"));
        }
        return Ok(PortDevice::Vdev(spec.to_string()));
    }
    match PciAddr::parse(name) {
        Some(addr) => Ok(PortDevice::Pci {
            addr,
            devargs: args.filter(|a| !a.is_empty()).map(str::to_string),
        }),
        None => Err(format!(
            "invalid device {spec:?}: expected a vdev (\"net_...\") or a PCI address (\"0000:03:00.0\")"
        )),
    }
}

fn build_port(
    ctx: &Ctx<'_>,
    i: usize,
    raw: &RawPort,
    earlier: &[PortConf],
    seen_addrs: &mut HashMap<IpAddr, String>,
) -> Result<PortConf, ConfigError> {
    let base = format!("port[{i}]");
    let name = raw.name.get_ref();
    if !valid_port_name(name) {
        return Err(ctx.err(
            raw.name.span(),
            format!("{base}.name"),
            format!("invalid port name {name:?}: 1 to 32 of A-Z a-z 0-9 _ . -"),
        ));
    }
    if earlier.iter().any(|p| p.name == *name) {
        return Err(ctx.err(
            raw.name.span(),
            format!("{base}.name"),
            format!("duplicate port name {name:?}"),
        ));
    }
    let device = parse_device(raw.device.get_ref())
        .map_err(|m| ctx.err(raw.device.span(), format!("{base}.device"), m))?;
    if let Some(other) = earlier
        .iter()
        .find(|p| p.device.eal_name() == device.eal_name())
    {
        return Err(ctx.err(
            raw.device.span(),
            format!("{base}.device"),
            format!(
                "device {} is already used by port {:?}",
                device.eal_name(),
                other.name
            ),
        ));
    }
    let desc = |v: &Option<S<i64>>, key: &str| -> Result<u16, ConfigError> {
        let key = format!("{base}.{key}");
        let n = ctx.int_or(v, &key, 32, 16384, 1024)?;
        if n.count_ones() != 1 {
            let span = v.as_ref().map_or(0..0, S::span);
            return Err(ctx.err(span, key, format!("{n} is not a power of two")));
        }
        Ok(narrow(n))
    };
    let rx_desc = desc(&raw.rx_desc, "rx_desc")?;
    let tx_desc = desc(&raw.tx_desc, "tx_desc")?;
    let mtu = narrow(ctx.int_or(
        &raw.mtu,
        &format!("{base}.mtu"),
        MTU_RANGE.0,
        MTU_RANGE.1,
        1500,
    )?);
    let mac = match &raw.mac {
        None => None,
        Some(m) => {
            let key = format!("{base}.mac");
            let mac = MacAddr::parse(m.get_ref()).ok_or_else(|| {
                ctx.err(
                    m.span(),
                    &key,
                    format!(
                        "invalid MAC address {:?}: expected six hex pairs like \"02:00:00:00:00:01\"",
                        m.get_ref()
                    ),
                )
            })?;
            if mac.is_multicast() || mac.0 == [0; 6] {
                return Err(ctx.err(
                    m.span(),
                    key,
                    format!("MAC address {mac} must be a non-zero unicast address"),
                ));
            }
            Some(mac)
        }
    };
    let mut addresses = Vec::with_capacity(raw.addresses.len());
    for (j, a) in raw.addresses.iter().enumerate() {
        let key = format!("{base}.addresses[{j}]");
        let cidr = IpCidr::parse(a.get_ref()).map_err(|m| {
            ctx.err(
                a.span(),
                &key,
                format!("invalid address {:?}: {m}", a.get_ref()),
            )
        })?;
        if let Some(owner) = seen_addrs.get(&cidr.addr) {
            let message = if *owner == *name {
                format!("address {} is listed twice", cidr.addr)
            } else {
                format!("address {} is already on port {owner:?}", cidr.addr)
            };
            return Err(ctx.err(a.span(), key, message));
        }
        seen_addrs.insert(cidr.addr, name.clone());
        addresses.push(cidr);
    }
    let gateways = build_gateways(ctx, &base, raw.gateway.as_ref(), &addresses)?;
    let kernel = build_kernel_twin(ctx, &base, raw, earlier)?;
    Ok(PortConf {
        name: name.clone(),
        device,
        rx_desc,
        tx_desc,
        mtu,
        mac,
        promiscuous: raw.promiscuous.unwrap_or(false),
        rss: raw.rss.unwrap_or(true),
        addresses,
        gateways,
        kernel,
    })
}

/// A port's `gateway`: one address or a list, at most one per address
/// family, each in one of the port's subnets (an IPv6 link-local gateway,
/// as routers advertise themselves, is on-link through the port's own
/// link-local address) and none the port's own address.
fn build_gateways(
    ctx: &Ctx,
    base: &str,
    raw: Option<&S<toml::Value>>,
    addresses: &[IpCidr],
) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(g) = raw else {
        return Ok(Vec::new());
    };
    let key = format!("{base}.gateway");
    let err = |m: String| ctx.err(g.span(), &key, m);
    let texts: Vec<&str> = match g.get_ref() {
        toml::Value::String(t) => vec![t.as_str()],
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<_>>()
            .ok_or_else(|| err("gateway list entries must be address strings".to_string()))?,
        _ => {
            return Err(err(
                "gateway must be an address or a list of addresses (one per family)".to_string(),
            ))
        }
    };
    let mut gateways: Vec<IpAddr> = Vec::with_capacity(texts.len());
    for t in texts {
        let gw: IpAddr = t
            .parse()
            .map_err(|_| err(format!("invalid address {t:?}: not an IP address")))?;
        if let Some(other) = gateways.iter().find(|o| o.is_ipv4() == gw.is_ipv4()) {
            return Err(err(format!(
                "gateway {gw}: the port already has gateway {other} (at most one per address family)"
            )));
        }
        if addresses.iter().any(|a| a.addr == gw) {
            return Err(err(format!("gateway {gw} is the port's own address")));
        }
        let link_local = matches!(gw, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        if !link_local && !addresses.iter().any(|a| a.contains(gw)) {
            return Err(err(format!(
                "gateway {gw} is not in any subnet of this port"
            )));
        }
        gateways.push(gw);
    }
    Ok(gateways)
}

/// `kernel_iface` / `kernel_device` of a port.
fn build_kernel_twin(
    ctx: &Ctx<'_>,
    base: &str,
    raw: &RawPort,
    earlier: &[PortConf],
) -> Result<Option<KernelTwin>, ConfigError> {
    let device = match &raw.kernel_device {
        None => None,
        Some(d) => Some(match d.get_ref().as_str() {
            "tap" => KernelDevice::Tap,
            "virtio-user" => KernelDevice::VirtioUser,
            other => {
                return Err(ctx.err(
                    d.span(),
                    format!("{base}.kernel_device"),
                    format!("unknown kernel device {other:?}: expected \"tap\" or \"virtio-user\""),
                ))
            }
        }),
    };
    let Some(iface) = &raw.kernel_iface else {
        if let Some(d) = &raw.kernel_device {
            return Err(ctx.err(
                d.span(),
                format!("{base}.kernel_device"),
                "kernel_device needs kernel_iface (the twin interface's name)",
            ));
        }
        return Ok(None);
    };
    let key = format!("{base}.kernel_iface");
    let name = iface.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(ctx.err(
            iface.span(),
            key,
            format!("invalid interface name {name:?}: 1 to 15 of A-Z a-z 0-9 _ . -"),
        ));
    }
    if let Some(other) = earlier
        .iter()
        .find(|p| p.kernel.as_ref().is_some_and(|k| k.iface == *name))
    {
        return Err(ctx.err(
            iface.span(),
            key,
            format!(
                "interface {name:?} is already the twin of port {:?}",
                other.name
            ),
        ));
    }
    Ok(Some(KernelTwin {
        iface: name.clone(),
        device: device.unwrap_or(KernelDevice::Tap),
    }))
}

fn build_eal(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawEal>>,
    ports: &[PortConf],
) -> Result<EalConf, ConfigError> {
    let Some(raw) = raw else {
        return Ok(EalConf {
            args: Vec::new(),
            huge: true,
            memory_mb: None,
        });
    };
    let e = raw.get_ref();
    let mut args = Vec::with_capacity(e.args.len());
    for (i, a) in e.args.iter().enumerate() {
        let key = format!("eal.args[{i}]");
        let arg = a.get_ref();
        if arg.is_empty() {
            return Err(ctx.err(a.span(), key, "empty argument"));
        }
        if let Some(opt) = GENERATED_EAL_OPTIONS.iter().find(|o| is_option(arg, o)) {
            return Err(ctx.err(
                a.span(),
                key,
                format!(
                    "{arg:?}: vsd generates {opt} itself from [lcores] and [eal] huge/memory_mb"
                ),
            ));
        }
        if is_option(arg, "--no-pci") {
            if let Some(j) = ports
                .iter()
                .position(|p| matches!(p.device, PortDevice::Pci { .. }))
            {
                return Err(ctx.err(
                    a.span(),
                    key,
                    format!(
                        "--no-pci contradicts PCI port {:?}",
                        ports.get(j).map_or("", |p| p.name.as_str())
                    ),
                ));
            }
        }
        args.push(arg.clone());
    }
    let memory_mb = match &e.memory_mb {
        Some(m) => Some(narrow::<u32>(ctx.int(m, "eal.memory_mb", 64, 1 << 20)?)),
        None => None,
    };
    Ok(EalConf {
        args,
        huge: e.huge.unwrap_or(true),
        memory_mb,
    })
}

/// The default mbuf count: every RX and TX ring full on every worker queue, plus each
/// worker's mempool cache and bursts in flight, its neighbour queue and steering rings,
/// plus the control thread; rounded up to 2^n - 1, at least 8191.
pub fn default_mbufs(ports: &[PortConf], workers: u32, cache: u32, neighbour: &NeighParams) -> u32 {
    let rings: u64 = ports
        .iter()
        .map(|p| u64::from(p.rx_desc) + u64::from(p.tx_desc))
        .sum();
    let per_worker = rings
        + u64::from(cache)
        + 2 * u64::from(BURST)
        + u64::from(neighbour.max_pending_total)
        + u64::from(STEERING_MBUFS_PER_WORKER);
    let needed = u64::from(workers) * per_worker + u64::from(CONTROL_MBUFS);
    let rounded = (needed + 1).next_power_of_two() - 1;
    u32::try_from(rounded.max(u64::from(MIN_DEFAULT_MBUFS))).unwrap_or(u32::MAX)
}

fn build_mempool(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawMempool>>,
    raw_ports: &[S<RawPort>],
    ports: &[PortConf],
    lcores: &LcoreConf,
    neighbour: &NeighParams,
) -> Result<MempoolConf, ConfigError> {
    let m = raw.map(S::get_ref);
    let none = None;
    let field = |f: fn(&RawMempool) -> &Option<S<i64>>| m.map_or(&none, f);
    let cache = narrow::<u32>(ctx.int_or(
        field(|m| &m.cache),
        "mempool.cache",
        0,
        MEMPOOL_CACHE_MAX,
        256,
    )?);
    let data_room = narrow::<u16>(ctx.int_or(
        field(|m| &m.data_room),
        "mempool.data_room",
        i64::from(MBUF_HEADROOM) + 64,
        65535,
        2176,
    )?);
    let workers = u32::try_from(lcores.workers.len()).unwrap_or(u32::MAX);
    let rx_total: u64 =
        ports.iter().map(|p| u64::from(p.rx_desc)).sum::<u64>() * u64::from(workers);
    let mbufs = match field(|m| &m.mbufs) {
        None => default_mbufs(ports, workers, cache, neighbour),
        Some(v) => {
            let n = narrow::<u32>(ctx.int(v, "mempool.mbufs", 1024, 1 << 28)?);
            if u64::from(n) < rx_total {
                return Err(ctx.err(
                    v.span(),
                    "mempool.mbufs",
                    format!("{n} is too small: the RX rings alone hold {rx_total}"),
                ));
            }
            n
        }
    };
    for (i, port) in ports.iter().enumerate() {
        let needed = MBUF_HEADROOM + u32::from(port.mtu) + FRAME_OVERHEAD;
        if u32::from(data_room) < needed {
            let span = raw_ports
                .get(i)
                .and_then(|p| p.get_ref().mtu.as_ref().map(S::span))
                .unwrap_or(0..0);
            return Err(ctx.err(
                span,
                format!("port[{i}].mtu"),
                format!(
                    "mtu {} needs mempool.data_room >= {needed} (headroom {MBUF_HEADROOM} + frame {}), data_room is {data_room}",
                    port.mtu,
                    needed - MBUF_HEADROOM
                ),
            ));
        }
    }
    Ok(MempoolConf {
        mbufs,
        cache,
        data_room,
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

fn build_mark(
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

fn parse_method(name: &str) -> Option<FwdMethod> {
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

fn build_service(ctx: &Ctx<'_>, i: usize, raw: &S<RawService>) -> Result<ServiceConf, ConfigError> {
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

// ---------------------------------------------------------------------------------------
// Key path recovery
// ---------------------------------------------------------------------------------------

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn format_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Nesting deeper than this is not followed (toml itself refuses far less).
const MAX_LOCATOR_DEPTH: usize = 128;

/// The key path (`port[1].addresses[0]`) of the innermost key or value at byte `offset`
/// of a syntactically valid TOML document; for a table header, the table's path. Empty
/// when the offset is outside any key or value.
///
/// A small scanner: headers (`[a.b]`, `[[a]]` with per-parent element counting), dotted
/// keys, arrays, inline tables, all four string forms, comments. It never panics and always
/// advances, whatever the input.
pub(crate) fn key_path_at(text: &str, offset: usize) -> String {
    let mut loc = Locator {
        b: text.as_bytes(),
        pos: 0,
        target: offset,
        aot_counts: HashMap::new(),
    };
    loc.document().unwrap_or_default()
}

struct Locator<'a> {
    b: &'a [u8],
    pos: usize,
    target: usize,
    /// Elements seen so far of each array of tables, keyed by its resolved path.
    aot_counts: HashMap<String, usize>,
}

impl Locator<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.pos + ahead).copied()
    }
    fn starts_with(&self, s: &[u8]) -> bool {
        self.b.get(self.pos..).is_some_and(|r| r.starts_with(s))
    }
    fn hit(&self, start: usize) -> bool {
        (start..self.pos).contains(&self.target)
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn document(&mut self) -> Option<String> {
        let mut table: Vec<Seg> = Vec::new();
        loop {
            self.skip_blank();
            let start = self.pos;
            match self.peek() {
                None => return None,
                Some(b'[') => {
                    let array = self.peek_at(1) == Some(b'[');
                    self.pos += if array { 2 } else { 1 };
                    let keys = self.key();
                    self.skip_spaces();
                    for _ in 0..if array { 2 } else { 1 } {
                        if self.peek() == Some(b']') {
                            self.pos += 1;
                        }
                    }
                    table = self.resolve_header(&keys, array);
                    if self.hit(start) {
                        return Some(format_path(&table));
                    }
                }
                Some(_) => {
                    let mut path = table.clone();
                    path.extend(self.key().into_iter().map(Seg::Key));
                    if self.hit(start) {
                        return Some(format_path(&path));
                    }
                    self.skip_spaces();
                    if self.peek() == Some(b'=') {
                        self.pos += 1;
                    }
                    self.skip_spaces();
                    if let Some(found) = self.value(&path, 0) {
                        return Some(found);
                    }
                }
            }
            if self.pos == start {
                self.pos += 1; // never stall on unexpected bytes
            }
        }
    }

    /// Path of a header; array-of-tables prefixes resolve to their latest element.
    fn resolve_header(&mut self, keys: &[String], array: bool) -> Vec<Seg> {
        let mut resolved = Vec::with_capacity(keys.len() + 2);
        for (i, k) in keys.iter().enumerate() {
            resolved.push(Seg::Key(k.clone()));
            let name = format_path(&resolved);
            if array && i + 1 == keys.len() {
                let count = self.aot_counts.entry(name).or_insert(0);
                resolved.push(Seg::Index(*count));
                *count += 1;
            } else if let Some(count) = self.aot_counts.get(&name) {
                resolved.push(Seg::Index(count.saturating_sub(1)));
            }
        }
        resolved
    }

    /// A dotted key; bare or quoted parts.
    fn key(&mut self) -> Vec<String> {
        let mut keys = Vec::new();
        loop {
            self.skip_spaces();
            let part = match self.peek() {
                Some(q @ (b'"' | b'\'')) => {
                    self.pos += 1;
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == q || c == b'\n' {
                            break;
                        }
                        if c == b'\\' && q == b'"' {
                            self.pos += 1;
                        }
                        self.pos += 1;
                    }
                    let part = self
                        .b
                        .get(start..self.pos.min(self.b.len()))
                        .unwrap_or_default();
                    if self.peek() == Some(q) {
                        self.pos += 1;
                    }
                    String::from_utf8_lossy(part).into_owned()
                }
                _ => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        self.pos += 1;
                    }
                    if start == self.pos {
                        return keys;
                    }
                    String::from_utf8_lossy(self.b.get(start..self.pos).unwrap_or_default())
                        .into_owned()
                }
            };
            keys.push(part);
            self.skip_spaces();
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                return keys;
            }
        }
    }

    /// Scans one value; returns the path of the innermost value or key containing the target.
    fn value(&mut self, path: &[Seg], depth: usize) -> Option<String> {
        let start = self.pos;
        if depth > MAX_LOCATOR_DEPTH {
            return Some(format_path(path));
        }
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None => break,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            index += 1;
                        }
                        Some(_) => {
                            let before = self.pos;
                            let mut p = path.to_vec();
                            p.push(Seg::Index(index));
                            if let Some(found) = self.value(&p, depth + 1) {
                                return Some(found);
                            }
                            if self.pos == before {
                                self.pos += 1;
                            }
                        }
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None => break,
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            let key_start = self.pos;
                            let mut p = path.to_vec();
                            p.extend(self.key().into_iter().map(Seg::Key));
                            if self.hit(key_start) {
                                return Some(format_path(&p));
                            }
                            self.skip_spaces();
                            if self.peek() == Some(b'=') {
                                self.pos += 1;
                            }
                            self.skip_spaces();
                            if let Some(found) = self.value(&p, depth + 1) {
                                return Some(found);
                            }
                            if self.pos == key_start {
                                self.pos += 1;
                            }
                        }
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => {
                let triple = [q, q, q];
                if self.starts_with(&triple) {
                    self.pos += 3;
                    loop {
                        match self.peek() {
                            None => break,
                            Some(b'\\') if q == b'"' => self.pos += 2,
                            Some(_) if self.starts_with(&triple) => {
                                self.pos += 3;
                                // Up to two quotes may end the content right before the delimiter.
                                for _ in 0..2 {
                                    if self.peek() == Some(q) {
                                        self.pos += 1;
                                    }
                                }
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                } else {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None | Some(b'\n') => break,
                            Some(b'\\') if q == b'"' => self.pos += 2,
                            Some(c) if c == q => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
            }
            Some(_) => {
                // Numbers, booleans, dates (which may contain a space): up to a delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b'\n' | b'#' | b'\r')
                ) {
                    self.pos += 1;
                }
                // Trailing spaces are not part of the value.
                while self.pos > start && matches!(self.b.get(self.pos - 1), Some(b' ' | b'\t')) {
                    self.pos -= 1;
                }
                if self.pos == start {
                    return None;
                }
            }
            None => return None,
        }
        self.pos = self.pos.min(self.b.len());
        self.hit(start).then(|| format_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn key_path_locator() {
        let doc = "a = 1\n[t]\nx.y = [1, [2, 3], {k = \"v\", 'q' = [4]}]\n[[arr]]\nz = '''\nmulti ] \" line'''\n[[arr]]\nz = 5 # c ]\n[[arr.sub]]\nw = \"s\\\"]\"\n[arr.more]\nm = 1\n[[arr]]\n\"quoted.key\" = 1979-05-27 07:32:00\n";
        assert!(doc.parse::<toml::Table>().is_ok());
        let at = |needle: &str| key_path_at(doc, doc.find(needle).unwrap());
        assert_eq!(at("a ="), "a");
        assert_eq!(at("1\n"), "a");
        assert_eq!(at("[t]"), "t");
        assert_eq!(at("x.y"), "t.x.y");
        assert_eq!(at("[1,"), "t.x.y");
        assert_eq!(at("1, ["), "t.x.y[0]");
        assert_eq!(at("3]"), "t.x.y[1][1]");
        assert_eq!(at("k ="), "t.x.y[2].k");
        assert_eq!(at("\"v\""), "t.x.y[2].k");
        assert_eq!(at("4]"), "t.x.y[2].q[0]");
        assert_eq!(at("multi"), "arr[0].z");
        assert_eq!(at("5 #"), "arr[1].z");
        assert_eq!(at("# c"), "");
        assert_eq!(at("[[arr.sub]]"), "arr[1].sub[0]");
        assert_eq!(at("\"s\\"), "arr[1].sub[0].w");
        assert_eq!(at("[arr.more]"), "arr[1].more");
        assert_eq!(at("m = 1"), "arr[1].more.m");
        assert_eq!(at("07:32"), "arr[2].quoted.key");
        assert_eq!(key_path_at(doc, doc.len() + 10), "");
    }

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
