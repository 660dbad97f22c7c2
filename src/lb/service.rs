//! Virtual services and their real servers.
//!
//! Two halves:
//! - [`ServiceTable`]: the control plane's mutable model. Every ipvsadm
//!   command (`-A -E -D -a -e -d -C`) is a method that validates its input
//!   and fails with a typed [`LbError`] whose text is ipvsadm's (or the
//!   kernel's) where one exists.
//! - [`ServiceSnapshot`]: an immutable copy the workers hold behind an
//!   `Arc` and swap between bursts. Lookups are hash-map hits; every
//!   [`Service`] lists its servers in the kernel's *walking order*: IPVS
//!   links a new real server at the head of its service's list
//!   (`list_add_rcu` in `__ip_vs_update_dest`), so schedulers see servers
//!   in the reverse of their `-a` order. `-L` sorts instead; use
//!   [`ServiceSnapshot::listing_order`] and [`Service::servers_listing_order`].
//!
//! Real servers get a stable [`DestId`] from a fixed-capacity free list.
//! Connections keep referring to a server after `-d`, so a deleted server's
//! slot stays reserved until the caller hands it back with
//! [`ServiceTable::release_dest_slot`]. Re-adding the same server to the same
//! service before then reuses its slot, as the kernel takes a destination
//! back from its trash.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::load::DestId;
use super::svc_index::V4ServiceIndex;
use super::types::{AddrFamily, FwdMethod, Protocol, SchedulerKind};

/// Persistence timeout in seconds when `-p` is given without a value.
pub const DEFAULT_PERSIST_TIMEOUT: u32 = 300;
/// Longest persistence timeout ipvsadm accepts (31 days).
pub const MAX_PERSIST_TIMEOUT: u32 = 86_400 * 31;
/// Largest real-server weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65_535;
/// Table sizes the kernel's Maglev scheduler can be built with.
pub const MH_TABLE_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];
/// The kernel's default Maglev table size (`CONFIG_IP_VS_MH_TAB_INDEX` 12).
pub const DEFAULT_MH_TABLE_SIZE: u32 = 4093;

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// `-t|-u VIP:port`.
    Addr {
        /// TCP or UDP.
        proto: Protocol,
        /// The virtual IP.
        addr: IpAddr,
        /// The virtual port; 0 only for persistent "all ports" services.
        port: u16,
    },
    /// `-f MARK` (with `-6` for IPv6).
    Fwmark {
        /// Firewall mark, greater than zero.
        mark: u32,
        /// Address family of the packets it matches.
        af: AddrFamily,
    },
}

impl ServiceKey {
    /// `-t addr:port`.
    pub fn tcp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr,
            port,
        }
    }
    /// `-u addr:port`.
    pub fn udp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            proto: Protocol::Udp,
            addr,
            port,
        }
    }
    /// `-f mark` (`af` Inet6 for `-6`).
    pub fn fwmark(mark: u32, af: AddrFamily) -> Self {
        ServiceKey::Fwmark { mark, af }
    }
    /// Address family of the service.
    pub fn af(&self) -> AddrFamily {
        match *self {
            ServiceKey::Addr { addr, .. } => AddrFamily::of(addr),
            ServiceKey::Fwmark { af, .. } => af,
        }
    }
    /// The virtual port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match *self {
            ServiceKey::Addr { port, .. } => port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }
    fn is_fwmark(&self) -> bool {
        matches!(self, ServiceKey::Fwmark { .. })
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 198.18.0.100:80`, `UDP [2001:db8::1]:53`, `FWM 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceKey::Addr { proto, addr, port } => match addr {
                IpAddr::V4(a) => write!(f, "{} {}:{}", proto.name(), a, port),
                IpAddr::V6(a) => write!(f, "{} [{}]:{}", proto.name(), a, port),
            },
            ServiceKey::Fwmark { mark, af } => match af {
                AddrFamily::Inet => write!(f, "FWM {mark}"),
                AddrFamily::Inet6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

/// Scheduler flags (ipvsadm `-b`). Each is valid only with its scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags {
    /// `sh-fallback`: pick another server when the hashed one is unavailable.
    pub sh_fallback: bool,
    /// `sh-port`: hash the source port too.
    pub sh_port: bool,
    /// `mh-fallback`: as sh-fallback, for mh.
    pub mh_fallback: bool,
    /// `mh-port`: as sh-port, for mh.
    pub mh_port: bool,
}

impl SchedFlags {
    /// Parse ipvsadm's comma-separated `-b` list, checking each flag belongs
    /// to `sched` as ipvsadm's `parse_sched_flags` does.
    pub fn parse(list: &str, sched: &str) -> Result<Self, LbError> {
        let mut flags = SchedFlags::default();
        for flag in list.split(',').filter(|s| !s.is_empty()) {
            let (field, owner) = match flag {
                "sh-fallback" => (&mut flags.sh_fallback, "sh"),
                "sh-port" => (&mut flags.sh_port, "sh"),
                "mh-fallback" => (&mut flags.mh_fallback, "mh"),
                "mh-port" => (&mut flags.mh_port, "mh"),
                other => return Err(LbError::InvalidSchedFlag(other.to_string())),
            };
            if sched != owner {
                return Err(LbError::IncompatibleSchedFlag(flag_name(flag)));
            }
            *field = true;
        }
        Ok(flags)
    }

    /// The flags as ipvsadm names them, for `-S` output.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, name) in [
            (self.sh_fallback, "sh-fallback"),
            (self.sh_port, "sh-port"),
            (self.mh_fallback, "mh-fallback"),
            (self.mh_port, "mh-port"),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }

    /// First flag that does not belong to `sched`, if any.
    fn incompatible_with(&self, sched: SchedulerKind) -> Option<&'static str> {
        if sched != SchedulerKind::Sh {
            if self.sh_fallback {
                return Some("sh-fallback");
            }
            if self.sh_port {
                return Some("sh-port");
            }
        }
        if sched != SchedulerKind::Mh {
            if self.mh_fallback {
                return Some("mh-fallback");
            }
            if self.mh_port {
                return Some("mh-port");
            }
        }
        None
    }
}

fn flag_name(flag: &str) -> &'static str {
    match flag {
        "sh-fallback" => "sh-fallback",
        "sh-port" => "sh-port",
        "mh-fallback" => "mh-fallback",
        _ => "mh-port",
    }
}

/// Persistence granularity (`-M`): which part of the client address a
/// persistence template keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PersistMask {
    /// IPv4 netmask, default 255.255.255.255.
    V4(Ipv4Addr),
    /// IPv6 prefix length 1..=128, default 128.
    V6(u8),
}

impl PersistMask {
    /// The default for a family: the whole address.
    pub fn full(af: AddrFamily) -> Self {
        match af {
            AddrFamily::Inet => PersistMask::V4(Ipv4Addr::BROADCAST),
            AddrFamily::Inet6 => PersistMask::V6(128),
        }
    }
    /// Whether this is the family default (listings print ` mask M` otherwise).
    pub fn is_full(&self) -> bool {
        matches!(*self, PersistMask::V4(m) if m == Ipv4Addr::BROADCAST)
            || matches!(*self, PersistMask::V6(128))
    }
    /// The client address masked for a persistence template; an address of
    /// the other family is returned unchanged.
    pub fn apply(&self, addr: IpAddr) -> IpAddr {
        match (*self, addr) {
            (PersistMask::V4(m), IpAddr::V4(a)) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m)))
            }
            (PersistMask::V6(plen), IpAddr::V6(a)) => {
                let plen = u32::from(plen.min(128));
                let mask = if plen == 0 {
                    0
                } else {
                    u128::MAX << (128 - plen)
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
            _ => addr,
        }
    }
}

/// Settings of a virtual service (`-A`/`-E` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Scheduler name (`-s`); validated against the 14 IPVS schedulers.
    pub scheduler: String,
    /// Scheduler flags (`-b`).
    pub flags: SchedFlags,
    /// Persistence timeout in seconds (`-p`; `-p` alone means
    /// [`DEFAULT_PERSIST_TIMEOUT`]); `None` when not persistent.
    pub persistence: Option<u32>,
    /// Persistence granularity (`-M`); `None` means the family default.
    pub persist_mask: Option<PersistMask>,
    /// One-packet scheduling (`-o`), UDP only.
    pub one_packet: bool,
    /// Maglev table size (a prime from [`MH_TABLE_SIZES`]); only mh uses it.
    pub mh_table_size: u32,
    /// FULLNAT source addresses (DPVS `--add-laddr`); only FULLNAT servers use them.
    pub local_addresses: Vec<IpAddr>,
    /// SYN proxy with SYN cookies (DPVS `--synproxy`; [`crate::lb::synproxy`]).
    pub synproxy: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            scheduler: SchedulerKind::DEFAULT.name().to_string(),
            flags: SchedFlags::default(),
            persistence: None,
            persist_mask: None,
            one_packet: false,
            mh_table_size: DEFAULT_MH_TABLE_SIZE,
            local_addresses: Vec::new(),
            synproxy: false,
        }
    }
}

impl ServiceConfig {
    /// A config with scheduler `name` and defaults elsewhere.
    pub fn with_scheduler(name: &str) -> Self {
        ServiceConfig {
            scheduler: name.to_string(),
            ..ServiceConfig::default()
        }
    }
}

/// Settings of a real server (`-a`/`-e` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServerConfig {
    /// Real server address (`-r`).
    pub addr: IpAddr,
    /// Real server port; must equal the virtual port for DR and TUN.
    pub port: u16,
    /// Weight 0..=65535 (`-w`, default 1); 0 is quiescent.
    pub weight: u32,
    /// Forwarding method (`-g -i -m`, `--fullnat`).
    pub method: FwdMethod,
    /// Upper connection threshold (`-x`), 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = three quarters of the upper.
    pub lower_threshold: u32,
}

impl RealServerConfig {
    /// A server with weight 1 and no thresholds.
    pub fn new(addr: IpAddr, port: u16, method: FwdMethod) -> Self {
        RealServerConfig {
            addr,
            port,
            weight: 1,
            method,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }
    /// The same server with another weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    /// The same server with thresholds (`-x upper -y lower`).
    pub fn thresholds(mut self, upper: u32, lower: u32) -> Self {
        self.upper_threshold = upper;
        self.lower_threshold = lower;
        self
    }
}

/// Why a control-plane change was refused. `Display` gives ipvsadm's text
/// (or the kernel's log text) where one exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbError {
    /// `-A` of an existing service.
    ServiceExists,
    /// `-E`/`-D` of an unknown service.
    NoSuchService,
    /// `-a`/`-e`/`-d` on an unknown service.
    ServiceNotDefined,
    /// `-a` of a server already in the service.
    DestExists,
    /// `-e`/`-d` of a server not in the service.
    NoSuchDest,
    /// `-s` names no known scheduler.
    SchedulerNotFound(String),
    /// A `-b` flag of another scheduler.
    IncompatibleSchedFlag(&'static str),
    /// An unknown `-b` flag.
    InvalidSchedFlag(String),
    /// Port 0 without `-p`.
    ZeroPortNonPersistent,
    /// `-o` on a TCP service.
    OnePacketNotUdp,
    /// `--synproxy` on a service that is not IPv4 TCP.
    SynproxyNotTcp,
    /// A DR or TUN server in a `--synproxy` service (replies bypass vsd, so
    /// sequence numbers cannot be shifted).
    SynproxyNeedsNat(FwdMethod),
    /// `-p` outside 1..=2678400.
    InvalidPersistTimeout(u32),
    /// `-M` netmask of the other address family.
    InvalidPersistMask,
    /// `-M` IPv6 prefix length outside 1..=128.
    InvalidIpv6Netmask(u8),
    /// `-f 0`.
    InvalidFwmark,
    /// `-w` above 65535.
    WeightOutOfRange(u32),
    /// `-y` greater than `-x`.
    ThresholdOrder {
        /// The `-y` given.
        lower: u32,
        /// The `-x` given.
        upper: u32,
    },
    /// DR or TUN server whose port differs from the virtual port.
    PortMappingNotSupported(FwdMethod),
    /// Server of another address family, not tunnelled.
    AddressFamilyMismatch,
    /// Real-server address that is not unicast (0.0.0.0, multicast, broadcast).
    DestNotUnicast,
    /// Maglev table size not in [`MH_TABLE_SIZES`].
    InvalidMhTableSize(u32),
    /// More servers than Maglev table slots.
    TooManyDestsForMh {
        /// The service's table size.
        table_size: u32,
    },
    /// Every real-server slot is taken (including slots still draining).
    NoFreeDestSlot {
        /// The table's fixed capacity.
        capacity: usize,
    },
    /// `release_dest_slot` of a slot that is not waiting for release.
    SlotNotDraining(DestId),
}

impl fmt::Display for LbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LbError::ServiceExists => f.write_str("Service already exists"),
            LbError::NoSuchService => f.write_str("No such service"),
            LbError::ServiceNotDefined => f.write_str("Service not defined"),
            LbError::DestExists => f.write_str("Destination already exists"),
            LbError::NoSuchDest => f.write_str("No such destination"),
            LbError::SchedulerNotFound(_) => f.write_str("Scheduler not found"),
            LbError::IncompatibleSchedFlag(flag) => {
                write!(f, "incompatible scheduler flag `{flag}'")
            }
            LbError::InvalidSchedFlag(flag) => write!(f, "invalid scheduler flag `{flag}'"),
            LbError::ZeroPortNonPersistent => {
                f.write_str("Zero port specified for non-persistent service")
            }
            LbError::OnePacketNotUdp => {
                f.write_str("One-Packet Scheduling is only for UDP virtual services")
            }
            LbError::SynproxyNotTcp => {
                f.write_str("synproxy is only for IPv4 TCP virtual services")
            }
            LbError::SynproxyNeedsNat(m) => write!(
                f,
                "synproxy needs NAT (-m) or FULLNAT (--fullnat) real servers, not {}: \
                 replies bypass the director",
                m.name()
            ),
            LbError::InvalidPersistTimeout(t) => write!(f, "invalid timeout value `{t}' specified"),
            LbError::InvalidPersistMask => {
                f.write_str("illegal virtual server persistent mask specified")
            }
            LbError::InvalidIpv6Netmask(_) => f.write_str("illegal ipv6 netmask specified"),
            LbError::InvalidFwmark => f.write_str("invalid fwmark value `0' specified"),
            LbError::WeightOutOfRange(_) => f.write_str("illegal weight specified"),
            LbError::ThresholdOrder { .. } => {
                f.write_str("lower threshold is higher than upper threshold")
            }
            LbError::PortMappingNotSupported(m) => write!(
                f,
                "Port mapping is only supported with NAT and FULLNAT \
                 ({} servers must use the virtual port)",
                m.name()
            ),
            LbError::AddressFamilyMismatch => {
                f.write_str("Different address family is allowed only for tunneling servers")
            }
            LbError::DestNotUnicast => f.write_str("Real server address is not unicast"),
            LbError::InvalidMhTableSize(n) => write!(
                f,
                "invalid mh table size {n}: must be one of \
                 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071"
            ),
            LbError::TooManyDestsForMh { table_size } => write!(
                f,
                "Too many real servers for an mh table of {table_size} entries"
            ),
            LbError::NoFreeDestSlot { capacity } => write!(
                f,
                "Memory allocation problem: all {capacity} real-server slots are in use"
            ),
            LbError::SlotNotDraining(id) => {
                write!(f, "real-server slot {id} is not waiting to be released")
            }
        }
    }
}

impl std::error::Error for LbError {}

/// One real server as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServer {
    /// Stable slot number (index into the load counters).
    pub id: DestId,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Current weight; 0 = quiescent.
    pub weight: u32,
    /// Latest non-zero weight (the kernel's `last_weight`; mh builds its
    /// table from it so a quiesced server keeps its slots).
    pub last_weight: u32,
    /// Forwarding method.
    pub method: FwdMethod,
    /// Upper connection threshold, 0 = none.
    pub upper_threshold: u32,
    /// Lower connection threshold, 0 = 3/4 of the upper.
    pub lower_threshold: u32,
}

/// A virtual service inside a snapshot.
#[derive(Debug, Clone)]
pub struct Service {
    /// Identity.
    pub key: ServiceKey,
    /// Settings.
    pub config: ServiceConfig,
    /// The scheduler, parsed from `config.scheduler`.
    pub sched: SchedulerKind,
    /// Servers in the kernel's walking order (newest `-a` first).
    pub servers: Vec<RealServer>,
    /// Position in [`ServiceSnapshot::services`].
    pub index: usize,
    /// Generation of the snapshot this service belongs to.
    pub generation: u64,
    /// Stable slot number of the service (index into per-service counters):
    /// kept while the service exists, the lowest free one on `-A`, free
    /// again after `-D`.
    pub slot: u32,
}

impl Service {
    /// Address family of the service.
    pub fn af(&self) -> AddrFamily {
        self.key.af()
    }
    /// Persistence granularity in effect.
    pub fn persist_mask(&self) -> PersistMask {
        self.config
            .persist_mask
            .unwrap_or_else(|| PersistMask::full(self.af()))
    }
    /// Servers sorted as `ipvsadm -L` prints them (address, then port).
    pub fn servers_listing_order(&self) -> Vec<&RealServer> {
        let mut v: Vec<&RealServer> = self.servers.iter().collect();
        v.sort_by(|a, b| cmp_dests_for_listing((a.addr, a.port), (b.addr, b.port)));
        v
    }
    /// Position of a server in `servers`.
    pub fn position_of(&self, id: DestId) -> Option<usize> {
        self.servers.iter().position(|s| s.id == id)
    }
}

/// Immutable service table the workers use.
#[derive(Debug)]
pub struct ServiceSnapshot {
    generation: u64,
    services: Vec<Service>,
    by_addr: FastMap<(Protocol, IpAddr, u16), usize>,
    /// The IPv4 keys of `by_addr` again, for `find`'s fast path.
    by_v4: V4ServiceIndex,
    by_fwmark: FastMap<(u32, AddrFamily), usize>,
    dest_capacity: usize,
}

impl ServiceSnapshot {
    /// Whether any scheduling decision depends on connection counts: a
    /// load-based scheduler, or a server with a connection threshold
    /// (`-x`, which makes it overloaded for every scheduler).
    pub fn reads_load(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.sched.reads_load() || s.servers.iter().any(|r| r.upper_threshold > 0))
    }

    /// An empty snapshot (generation 0).
    pub fn empty(dest_capacity: usize) -> Self {
        ServiceSnapshot {
            generation: 0,
            services: Vec::new(),
            by_addr: FastMap::default(),
            by_v4: V4ServiceIndex::new([]),
            by_fwmark: FastMap::default(),
            dest_capacity,
        }
    }
    /// Generation of the table this was taken from; changes on every edit.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Number of real-server slots (size the load counters with it).
    pub fn dest_capacity(&self) -> usize {
        self.dest_capacity
    }
    /// All services, in creation order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }
    /// Service by position.
    pub fn service(&self, index: usize) -> Option<&Service> {
        self.services.get(index)
    }
    /// Exact lookup of a `-t`/`-u` service.
    #[inline]
    pub fn get(&self, proto: Protocol, addr: IpAddr, port: u16) -> Option<&Service> {
        self.by_addr
            .get(&(proto, addr, port))
            .and_then(|&i| self.services.get(i))
    }
    /// Exact lookup of a `-f` service.
    #[inline]
    pub fn get_fwmark(&self, mark: u32, af: AddrFamily) -> Option<&Service> {
        self.by_fwmark
            .get(&(mark, af))
            .and_then(|&i| self.services.get(i))
    }
    /// Lookup by key.
    pub fn get_key(&self, key: &ServiceKey) -> Option<&Service> {
        match *key {
            ServiceKey::Addr { proto, addr, port } => self.get(proto, addr, port),
            ServiceKey::Fwmark { mark, af } => self.get_fwmark(mark, af),
        }
    }
    /// The service a new packet belongs to, as `ip_vs_service_find` decides:
    /// the firewall mark first (if non-zero), then `proto addr:port`, then the
    /// port-zero service of the address.
    #[inline]
    pub fn find(&self, fwmark: u32, proto: Protocol, addr: IpAddr, port: u16) -> Option<&Service> {
        if fwmark != 0 {
            if let Some(s) = self.get_fwmark(fwmark, AddrFamily::of(addr)) {
                return Some(s);
            }
        }
        let i = match addr {
            IpAddr::V4(a) => {
                let (p, a) = (proto.number(), u32::from(a));
                self.by_v4
                    .get(p, a, port)
                    .or_else(|| self.by_v4.get(p, a, 0))
            }
            IpAddr::V6(_) => {
                return self
                    .get(proto, addr, port)
                    .or_else(|| self.get(proto, addr, 0))
            }
        };
        i.and_then(|i| self.services.get(i))
    }
    /// Services sorted as `ipvsadm -L` prints them.
    pub fn listing_order(&self) -> Vec<&Service> {
        let mut v: Vec<&Service> = self.services.iter().collect();
        v.sort_by(|a, b| cmp_services_for_listing(&a.key, &b.key));
        v
    }
}

/// ipvsadm's service order (libipvs `ipvs_cmp_services`): firewall mark,
/// address family, protocol, address, port. ipvsadm subtracts unsigned
/// addresses into an `int`, which misorders addresses more than 2^31 apart;
/// we compare numerically, which agrees with it everywhere else.
pub fn cmp_services_for_listing(a: &ServiceKey, b: &ServiceKey) -> Ordering {
    fn parts(k: &ServiceKey) -> (u32, AddrFamily, u8, u128, u16) {
        match *k {
            ServiceKey::Addr { proto, addr, port } => (
                0,
                AddrFamily::of(addr),
                proto.number(),
                addr_num(addr),
                port,
            ),
            // ipvsadm gives fwmark services protocol TCP and no address.
            ServiceKey::Fwmark { mark, af } => (mark, af, Protocol::Tcp.number(), 0, 0),
        }
    }
    parts(a).cmp(&parts(b))
}

/// ipvsadm's real-server order (libipvs `ipvs_cmp_dests`): address, then port.
pub fn cmp_dests_for_listing(a: (IpAddr, u16), b: (IpAddr, u16)) -> Ordering {
    (AddrFamily::of(a.0), addr_num(a.0), a.1).cmp(&(AddrFamily::of(b.0), addr_num(b.0), b.1))
}

fn addr_num(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// A small non-keyed hasher (FxHash's multiply-rotate) for snapshot lookups:
/// keys are operator-configured, so no keyed hashing is needed, and SipHash
/// would cost more than the rest of the lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// HashMap with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone)]
struct TableDest {
    id: DestId,
    cfg: RealServerConfig,
    last_weight: u32,
}

#[derive(Debug, Clone)]
struct TableService {
    key: ServiceKey,
    config: ServiceConfig,
    sched: SchedulerKind,
    /// Stable slot number (see [`Service::slot`]).
    slot: u32,
    /// Walking order: newest first.
    dests: Vec<TableDest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    InUse,
    /// Deleted; connections may still point at it.
    Draining,
}

/// The control plane's service table.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    services: Vec<TableService>,
    slots: Vec<Slot>,
    /// Free slot numbers; popped from the end, so fresh ids come out 0, 1, 2...
    free: Vec<DestId>,
    /// Deleted servers whose slots are not yet released, by (service, addr, port).
    draining: HashMap<(ServiceKey, IpAddr, u16), DestId>,
    generation: u64,
}

impl ServiceTable {
    /// An empty table with room for `dest_capacity` real servers over all
    /// services (including deleted ones not yet released).
    pub fn new(dest_capacity: usize) -> Self {
        let cap = dest_capacity.min(DestId::MAX as usize + 1);
        ServiceTable {
            services: Vec::new(),
            slots: vec![Slot::Free; cap],
            free: (0..cap as u64).rev().map(|i| i as DestId).collect(),
            draining: HashMap::new(),
            generation: 1,
        }
    }

    /// Number of real-server slots.
    pub fn dest_capacity(&self) -> usize {
        self.slots.len()
    }

    /// Changes on every successful edit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether there are no services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Keys of all services, in creation order.
    pub fn service_keys(&self) -> Vec<ServiceKey> {
        self.services.iter().map(|s| s.key).collect()
    }

    /// A service's settings.
    pub fn service_config(&self, key: &ServiceKey) -> Option<&ServiceConfig> {
        self.find(key).map(|i| &self.services[i].config)
    }

    /// A service's servers in walking order, with their slot numbers.
    pub fn dests(&self, key: &ServiceKey) -> Option<Vec<(DestId, RealServerConfig)>> {
        self.find(key).map(|i| {
            self.services[i]
                .dests
                .iter()
                .map(|d| (d.id, d.cfg))
                .collect()
        })
    }

    fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.key == *key)
    }

    /// The lowest slot number no current service holds.
    fn free_service_slot(&self) -> u32 {
        let mut used: Vec<u32> = self.services.iter().map(|s| s.slot).collect();
        used.sort_unstable();
        let mut slot = 0u32;
        for u in used {
            if u == slot {
                slot += 1;
            } else if u > slot {
                break;
            }
        }
        slot
    }

    /// Slot number of a service (see [`Service::slot`]).
    pub fn service_slot(&self, key: &ServiceKey) -> Option<u32> {
        self.find(key).map(|i| self.services[i].slot)
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// `-A`: add a service.
    pub fn add_service(&mut self, key: ServiceKey, config: ServiceConfig) -> Result<(), LbError> {
        if self.find(&key).is_some() {
            return Err(LbError::ServiceExists);
        }
        let sched = validate_service(&key, &config, 0)?;
        let slot = self.free_service_slot();
        self.services.push(TableService {
            key,
            config,
            sched,
            slot,
            dests: Vec::new(),
        });
        self.bump();
        Ok(())
    }

    /// `-E`: replace a service's settings (servers stay).
    pub fn edit_service(&mut self, key: &ServiceKey, config: ServiceConfig) -> Result<(), LbError> {
        let i = self.find(key).ok_or(LbError::NoSuchService)?;
        let sched = validate_service(key, &config, self.services[i].dests.len())?;
        if config.synproxy {
            if let Some(d) = self.services[i]
                .dests
                .iter()
                .find(|d| !d.cfg.method.sees_replies())
            {
                return Err(LbError::SynproxyNeedsNat(d.cfg.method));
            }
        }
        let svc = &mut self.services[i];
        svc.config = config;
        svc.sched = sched;
        self.bump();
        Ok(())
    }

    /// `-D`: delete a service. Returns the slots of its servers, which the
    /// caller releases with [`release_dest_slot`](Self::release_dest_slot)
    /// once no connection uses them.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<Vec<DestId>, LbError> {
        let i = self.find(key).ok_or(LbError::NoSuchService)?;
        let svc = self.services.remove(i);
        let ids = svc.dests.iter().map(|d| self.retire(svc.key, d)).collect();
        self.bump();
        Ok(ids)
    }

    /// `-C`: delete everything. Returns every server slot to release later.
    pub fn clear(&mut self) -> Vec<DestId> {
        let services = std::mem::take(&mut self.services);
        let mut ids = Vec::new();
        for svc in &services {
            for d in &svc.dests {
                ids.push(self.retire(svc.key, d));
            }
        }
        self.bump();
        ids
    }

    fn retire(&mut self, key: ServiceKey, d: &TableDest) -> DestId {
        if let Some(s) = self.slots.get_mut(d.id as usize) {
            *s = Slot::Draining;
        }
        self.draining.insert((key, d.cfg.addr, d.cfg.port), d.id);
        d.id
    }

    /// `-a`: add a real server at the head of the service's list. Returns
    /// its slot.
    pub fn add_dest(
        &mut self,
        key: &ServiceKey,
        dest: RealServerConfig,
    ) -> Result<DestId, LbError> {
        let i = self.find(key).ok_or(LbError::ServiceNotDefined)?;
        validate_dest(key, &dest)?;
        let svc = &self.services[i];
        if svc.config.synproxy && !dest.method.sees_replies() {
            return Err(LbError::SynproxyNeedsNat(dest.method));
        }
        if svc
            .dests
            .iter()
            .any(|d| d.cfg.addr == dest.addr && d.cfg.port == dest.port)
        {
            return Err(LbError::DestExists);
        }
        if svc.sched == SchedulerKind::Mh && svc.dests.len() >= svc.config.mh_table_size as usize {
            return Err(LbError::TooManyDestsForMh {
                table_size: svc.config.mh_table_size,
            });
        }
        // Like the kernel's trash: a server deleted and re-added before its
        // connections are gone keeps its slot (and so its counters).
        let id = match self.draining.remove(&(*key, dest.addr, dest.port)) {
            Some(id) => id,
            None => self.free.pop().ok_or(LbError::NoFreeDestSlot {
                capacity: self.slots.len(),
            })?,
        };
        if let Some(s) = self.slots.get_mut(id as usize) {
            *s = Slot::InUse;
        }
        self.services[i].dests.insert(
            0,
            TableDest {
                id,
                cfg: dest,
                last_weight: dest.weight,
            },
        );
        self.bump();
        Ok(id)
    }

    /// `-e`: change a real server's weight, method and thresholds. It keeps
    /// its place in the list.
    pub fn edit_dest(&mut self, key: &ServiceKey, dest: RealServerConfig) -> Result<(), LbError> {
        let i = self.find(key).ok_or(LbError::ServiceNotDefined)?;
        validate_dest(key, &dest)?;
        if self.services[i].config.synproxy && !dest.method.sees_replies() {
            return Err(LbError::SynproxyNeedsNat(dest.method));
        }
        let d = self.services[i]
            .dests
            .iter_mut()
            .find(|d| d.cfg.addr == dest.addr && d.cfg.port == dest.port)
            .ok_or(LbError::NoSuchDest)?;
        // The kernel keeps the latest non-zero weight for mh.
        if dest.weight != 0 {
            d.last_weight = dest.weight;
        }
        d.cfg = dest;
        self.bump();
        Ok(())
    }

    /// `-d`: remove a real server. Returns its slot, to be released with
    /// [`release_dest_slot`](Self::release_dest_slot) once no connection
    /// uses it.
    pub fn del_dest(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<DestId, LbError> {
        let i = self.find(key).ok_or(LbError::ServiceNotDefined)?;
        let j = self.services[i]
            .dests
            .iter()
            .position(|d| d.cfg.addr == addr && d.cfg.port == port)
            .ok_or(LbError::NoSuchDest)?;
        let d = self.services[i].dests.remove(j);
        let id = self.retire(*key, &d);
        self.bump();
        Ok(id)
    }

    /// Give a deleted server's slot back for reuse. Fails if the slot is not
    /// waiting for release: never handed out, already released, or taken
    /// back by re-adding the same server (then there is nothing to do).
    pub fn release_dest_slot(&mut self, id: DestId) -> Result<(), LbError> {
        match self.slots.get_mut(id as usize) {
            Some(s) if *s == Slot::Draining => {
                *s = Slot::Free;
                self.draining.retain(|_, v| *v != id);
                self.free.push(id);
                Ok(())
            }
            _ => Err(LbError::SlotNotDraining(id)),
        }
    }

    /// An immutable copy for the workers.
    pub fn snapshot(&self) -> Arc<ServiceSnapshot> {
        let mut by_addr = FastMap::default();
        let mut by_fwmark = FastMap::default();
        let services: Vec<Service> = self
            .services
            .iter()
            .enumerate()
            .map(|(index, s)| {
                match s.key {
                    ServiceKey::Addr { proto, addr, port } => {
                        by_addr.insert((proto, addr, port), index);
                    }
                    ServiceKey::Fwmark { mark, af } => {
                        by_fwmark.insert((mark, af), index);
                    }
                }
                Service {
                    key: s.key,
                    config: s.config.clone(),
                    sched: s.sched,
                    servers: s
                        .dests
                        .iter()
                        .map(|d| RealServer {
                            id: d.id,
                            addr: d.cfg.addr,
                            port: d.cfg.port,
                            weight: d.cfg.weight,
                            last_weight: d.last_weight,
                            method: d.cfg.method,
                            upper_threshold: d.cfg.upper_threshold,
                            lower_threshold: d.cfg.lower_threshold,
                        })
                        .collect(),
                    index,
                    generation: self.generation,
                    slot: s.slot,
                }
            })
            .collect();
        Arc::new(ServiceSnapshot {
            generation: self.generation,
            services,
            by_v4: V4ServiceIndex::new(by_addr.iter().filter_map(|(&(proto, addr, port), &i)| {
                match addr {
                    IpAddr::V4(a) => Some((proto.number(), u32::from(a), port, i)),
                    IpAddr::V6(_) => None,
                }
            })),
            by_addr,
            by_fwmark,
            dest_capacity: self.slots.len(),
        })
    }
}

/// Checks ipvsadm and the kernel make on `-A`/`-E`.
fn validate_service(
    key: &ServiceKey,
    cfg: &ServiceConfig,
    num_dests: usize,
) -> Result<SchedulerKind, LbError> {
    if let ServiceKey::Fwmark { mark: 0, .. } = key {
        return Err(LbError::InvalidFwmark);
    }
    if let ServiceKey::Addr { port: 0, .. } = key {
        if cfg.persistence.is_none() {
            return Err(LbError::ZeroPortNonPersistent);
        }
    }
    if cfg.one_packet {
        if let ServiceKey::Addr {
            proto: Protocol::Tcp,
            ..
        } = key
        {
            return Err(LbError::OnePacketNotUdp);
        }
    }
    if cfg.synproxy
        && !matches!(
            key,
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: IpAddr::V4(_),
                ..
            }
        )
    {
        return Err(LbError::SynproxyNotTcp);
    }
    if let Some(t) = cfg.persistence {
        if !(1..=MAX_PERSIST_TIMEOUT).contains(&t) {
            return Err(LbError::InvalidPersistTimeout(t));
        }
    }
    match (cfg.persist_mask, key.af()) {
        (None, _) | (Some(PersistMask::V4(_)), AddrFamily::Inet) => {}
        (Some(PersistMask::V6(plen)), AddrFamily::Inet6) => {
            if !(1..=128).contains(&plen) {
                return Err(LbError::InvalidIpv6Netmask(plen));
            }
        }
        _ => return Err(LbError::InvalidPersistMask),
    }
    let sched = SchedulerKind::from_name(&cfg.scheduler)
        .ok_or_else(|| LbError::SchedulerNotFound(cfg.scheduler.clone()))?;
    if let Some(flag) = cfg.flags.incompatible_with(sched) {
        return Err(LbError::IncompatibleSchedFlag(flag));
    }
    // Only mh reads the table size.
    if sched == SchedulerKind::Mh {
        if !MH_TABLE_SIZES.contains(&cfg.mh_table_size) {
            return Err(LbError::InvalidMhTableSize(cfg.mh_table_size));
        }
        if num_dests > cfg.mh_table_size as usize {
            return Err(LbError::TooManyDestsForMh {
                table_size: cfg.mh_table_size,
            });
        }
    }
    Ok(sched)
}

/// Checks ipvsadm and the kernel make on `-a`/`-e`.
fn validate_dest(key: &ServiceKey, d: &RealServerConfig) -> Result<(), LbError> {
    if d.weight > MAX_WEIGHT {
        return Err(LbError::WeightOutOfRange(d.weight));
    }
    if d.lower_threshold > d.upper_threshold {
        return Err(LbError::ThresholdOrder {
            lower: d.lower_threshold,
            upper: d.upper_threshold,
        });
    }
    let unicast = match d.addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    };
    if !unicast {
        return Err(LbError::DestNotUnicast);
    }
    // mixed families: tunnels (IPIP carries either), and NAT64 (FULLNAT
    // from an IPv6 VIP to IPv4 servers, crate::lb::nat64)
    let nat64 = d.method == FwdMethod::FullNat && key.af() == AddrFamily::Inet6 && d.addr.is_ipv4();
    if AddrFamily::of(d.addr) != key.af() && d.method != FwdMethod::Tunnel && !nat64 {
        return Err(LbError::AddressFamilyMismatch);
    }
    // DR and TUN cannot rewrite the port. ipvsadm silently copies the
    // virtual port for them; here a mismatch is an error so that no caller
    // believes a mapping is in effect.
    if !key.is_fwmark()
        && matches!(d.method, FwdMethod::Route | FwdMethod::Tunnel)
        && d.port != key.port()
    {
        return Err(LbError::PortMappingNotSupported(d.method));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
    fn vip() -> ServiceKey {
        ServiceKey::tcp(v4(198, 18, 0, 100), 80)
    }
    fn rs(last: u8) -> RealServerConfig {
        RealServerConfig::new(v4(198, 18, 1, last), 8080, FwdMethod::Masq)
    }

    #[test]
    fn add_edit_delete_service_errors() {
        let mut t = ServiceTable::new(8);
        t.add_service(vip(), ServiceConfig::with_scheduler("rr"))
            .unwrap();
        assert_eq!(
            t.add_service(vip(), ServiceConfig::default()),
            Err(LbError::ServiceExists)
        );
        let other = ServiceKey::udp(v4(198, 18, 0, 100), 53);
        assert_eq!(
            t.edit_service(&other, ServiceConfig::default()),
            Err(LbError::NoSuchService)
        );
        assert_eq!(t.del_service(&other), Err(LbError::NoSuchService));
        assert_eq!(
            t.add_service(other, ServiceConfig::with_scheduler("bogus")),
            Err(LbError::SchedulerNotFound("bogus".into()))
        );
        assert_eq!(
            LbError::SchedulerNotFound("x".into()).to_string(),
            "Scheduler not found"
        );
        assert_eq!(LbError::ServiceExists.to_string(), "Service already exists");
        assert_eq!(LbError::NoSuchService.to_string(), "No such service");
        t.edit_service(&vip(), ServiceConfig::with_scheduler("wrr"))
            .unwrap();
        assert_eq!(t.service_config(&vip()).unwrap().scheduler, "wrr");
        assert_eq!(t.del_service(&vip()), Ok(vec![]));
        assert!(t.is_empty());
    }

    #[test]
    fn service_option_errors() {
        let mut t = ServiceTable::new(8);
        let zero = ServiceKey::tcp(v4(198, 18, 0, 1), 0);
        let e = t.add_service(zero, ServiceConfig::default()).unwrap_err();
        assert_eq!(e, LbError::ZeroPortNonPersistent);
        assert_eq!(
            e.to_string(),
            "Zero port specified for non-persistent service"
        );
        let persistent = ServiceConfig {
            persistence: Some(DEFAULT_PERSIST_TIMEOUT),
            ..ServiceConfig::default()
        };
        t.add_service(zero, persistent).unwrap();

        let ops = ServiceConfig {
            one_packet: true,
            ..ServiceConfig::default()
        };
        let e = t.add_service(vip(), ops.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "One-Packet Scheduling is only for UDP virtual services"
        );
        t.add_service(ServiceKey::udp(v4(198, 18, 0, 1), 53), ops.clone())
            .unwrap();
        // ipvsadm only checks -o for address services; fwmark ones may use it.
        t.add_service(ServiceKey::fwmark(3, AddrFamily::Inet), ops)
            .unwrap();

        let e = t
            .add_service(
                ServiceKey::fwmark(0, AddrFamily::Inet),
                ServiceConfig::default(),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "invalid fwmark value `0' specified");

        for bad in [0, MAX_PERSIST_TIMEOUT + 1] {
            let c = ServiceConfig {
                persistence: Some(bad),
                ..ServiceConfig::default()
            };
            let e = t.add_service(vip(), c).unwrap_err();
            assert_eq!(e, LbError::InvalidPersistTimeout(bad));
            assert_eq!(
                e.to_string(),
                format!("invalid timeout value `{bad}' specified")
            );
        }

        let mask6 = ServiceConfig {
            persist_mask: Some(PersistMask::V6(64)),
            ..ServiceConfig::default()
        };
        assert_eq!(
            t.add_service(vip(), mask6.clone()),
            Err(LbError::InvalidPersistMask)
        );
        let v6key = ServiceKey::tcp(IpAddr::V6(Ipv6Addr::LOCALHOST), 80);
        let mask6_bad = ServiceConfig {
            persist_mask: Some(PersistMask::V6(0)),
            ..ServiceConfig::default()
        };
        let e = t.add_service(v6key, mask6_bad).unwrap_err();
        assert_eq!(e, LbError::InvalidIpv6Netmask(0));
        assert_eq!(e.to_string(), "illegal ipv6 netmask specified");
        t.add_service(v6key, mask6).unwrap();
    }

    #[test]
    fn sched_flag_errors() {
        let mut t = ServiceTable::new(8);
        let c = ServiceConfig {
            flags: SchedFlags {
                sh_port: true,
                ..SchedFlags::default()
            },
            ..ServiceConfig::with_scheduler("mh")
        };
        let e = t.add_service(vip(), c).unwrap_err();
        assert_eq!(e.to_string(), "incompatible scheduler flag `sh-port'");
        let c = ServiceConfig {
            flags: SchedFlags {
                mh_fallback: true,
                ..SchedFlags::default()
            },
            ..ServiceConfig::with_scheduler("wlc")
        };
        assert_eq!(
            t.add_service(vip(), c),
            Err(LbError::IncompatibleSchedFlag("mh-fallback"))
        );
        assert_eq!(
            SchedFlags::parse("sh-fallback,sh-port", "sh"),
            Ok(SchedFlags {
                sh_fallback: true,
                sh_port: true,
                ..SchedFlags::default()
            })
        );
        assert_eq!(
            SchedFlags::parse("mh-port", "sh"),
            Err(LbError::IncompatibleSchedFlag("mh-port"))
        );
        let e = SchedFlags::parse("fast", "sh").unwrap_err();
        assert_eq!(e.to_string(), "invalid scheduler flag `fast'");

        let c = ServiceConfig {
            mh_table_size: 4000,
            ..ServiceConfig::with_scheduler("mh")
        };
        assert_eq!(
            t.add_service(vip(), c),
            Err(LbError::InvalidMhTableSize(4000))
        );
        // Other schedulers ignore the size.
        let c = ServiceConfig {
            mh_table_size: 4000,
            ..ServiceConfig::with_scheduler("rr")
        };
        t.add_service(vip(), c).unwrap();
    }

    #[test]
    fn dest_errors() {
        let mut t = ServiceTable::new(8);
        assert_eq!(t.add_dest(&vip(), rs(1)), Err(LbError::ServiceNotDefined));
        assert_eq!(
            LbError::ServiceNotDefined.to_string(),
            "Service not defined"
        );
        t.add_service(vip(), ServiceConfig::default()).unwrap();
        t.add_dest(&vip(), rs(1)).unwrap();
        let e = t.add_dest(&vip(), rs(1)).unwrap_err();
        assert_eq!(e.to_string(), "Destination already exists");
        let e = t.edit_dest(&vip(), rs(2)).unwrap_err();
        assert_eq!(e.to_string(), "No such destination");
        assert_eq!(
            t.del_dest(&vip(), rs(2).addr, 8080),
            Err(LbError::NoSuchDest)
        );
        assert_eq!(
            t.edit_dest(&ServiceKey::udp(v4(1, 1, 1, 1), 1), rs(1)),
            Err(LbError::ServiceNotDefined)
        );

        let e = t.add_dest(&vip(), rs(3).weight(65_536)).unwrap_err();
        assert_eq!(e.to_string(), "illegal weight specified");
        t.add_dest(&vip(), rs(3).weight(65_535)).unwrap();

        let e = t.add_dest(&vip(), rs(4).thresholds(10, 11)).unwrap_err();
        assert_eq!(
            e,
            LbError::ThresholdOrder {
                lower: 11,
                upper: 10
            }
        );
        assert_eq!(
            e.to_string(),
            "lower threshold is higher than upper threshold"
        );
        // The kernel refuses a lower threshold without an upper one too.
        assert!(t.add_dest(&vip(), rs(4).thresholds(0, 1)).is_err());

        for m in [FwdMethod::Route, FwdMethod::Tunnel] {
            let e = t
                .add_dest(&vip(), RealServerConfig::new(v4(198, 18, 1, 5), 8080, m))
                .unwrap_err();
            assert_eq!(e, LbError::PortMappingNotSupported(m));
            assert!(e
                .to_string()
                .starts_with("Port mapping is only supported with NAT"));
            t.add_dest(&vip(), RealServerConfig::new(v4(198, 18, 1, 5), 80, m))
                .unwrap();
            t.del_dest(&vip(), v4(198, 18, 1, 5), 80).unwrap();
        }
        // FULLNAT maps ports; fwmark services have no port to keep.
        t.add_dest(
            &vip(),
            RealServerConfig::new(v4(198, 18, 1, 6), 8080, FwdMethod::FullNat),
        )
        .unwrap();
        let fwm = ServiceKey::fwmark(1, AddrFamily::Inet);
        t.add_service(fwm, ServiceConfig::default()).unwrap();
        t.add_dest(
            &fwm,
            RealServerConfig::new(v4(198, 18, 1, 6), 8080, FwdMethod::Route),
        )
        .unwrap();

        let six = IpAddr::V6("2001:db8::1".parse().unwrap());
        let e = t
            .add_dest(&vip(), RealServerConfig::new(six, 80, FwdMethod::Masq))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Different address family is allowed only for tunneling servers"
        );
        t.add_dest(&vip(), RealServerConfig::new(six, 80, FwdMethod::Tunnel))
            .unwrap();

        for bad in [v4(0, 0, 0, 0), v4(224, 0, 0, 1), v4(255, 255, 255, 255)] {
            assert_eq!(
                t.add_dest(&vip(), RealServerConfig::new(bad, 8080, FwdMethod::Masq)),
                Err(LbError::DestNotUnicast)
            );
        }
    }

    #[test]
    fn mh_table_size_limits_servers() {
        let mut t = ServiceTable::new(300);
        let c = ServiceConfig {
            mh_table_size: 251,
            ..ServiceConfig::with_scheduler("mh")
        };
        t.add_service(vip(), c).unwrap();
        for i in 0..251u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i + 1));
            t.add_dest(&vip(), RealServerConfig::new(a, 80, FwdMethod::Masq))
                .unwrap();
        }
        let a = IpAddr::V4(Ipv4Addr::from(0xC612_1000));
        assert_eq!(
            t.add_dest(&vip(), RealServerConfig::new(a, 80, FwdMethod::Masq)),
            Err(LbError::TooManyDestsForMh { table_size: 251 })
        );
    }

    #[test]
    fn slots_are_reserved_until_released() {
        let mut t = ServiceTable::new(2);
        t.add_service(vip(), ServiceConfig::default()).unwrap();
        assert_eq!(t.add_dest(&vip(), rs(1)), Ok(0));
        assert_eq!(t.add_dest(&vip(), rs(2)), Ok(1));
        let e = t.add_dest(&vip(), rs(3)).unwrap_err();
        assert_eq!(e, LbError::NoFreeDestSlot { capacity: 2 });
        assert_eq!(
            e.to_string(),
            "Memory allocation problem: all 2 real-server slots are in use"
        );
        assert_eq!(t.del_dest(&vip(), rs(1).addr, 8080), Ok(0));
        // Deleted but not released: still taken.
        assert!(t.add_dest(&vip(), rs(3)).is_err());
        assert_eq!(t.release_dest_slot(1), Err(LbError::SlotNotDraining(1)));
        t.release_dest_slot(0).unwrap();
        assert_eq!(t.release_dest_slot(0), Err(LbError::SlotNotDraining(0)));
        assert_eq!(t.add_dest(&vip(), rs(3)), Ok(0));

        // Re-adding a deleted server before release takes its slot back.
        assert_eq!(t.del_dest(&vip(), rs(2).addr, 8080), Ok(1));
        assert_eq!(t.add_dest(&vip(), rs(2)), Ok(1));
        assert_eq!(t.release_dest_slot(1), Err(LbError::SlotNotDraining(1)));

        assert_eq!(t.del_service(&vip()).unwrap().len(), 2);
        t.release_dest_slot(0).unwrap();
        t.release_dest_slot(1).unwrap();
        t.add_service(vip(), ServiceConfig::default()).unwrap();
        t.add_dest(&vip(), rs(9)).unwrap();
        assert_eq!(t.clear().len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn snapshot_says_whether_decisions_read_connection_counts() {
        let mut t = ServiceTable::new(16);
        assert!(!t.snapshot().reads_load());
        t.add_service(vip(), ServiceConfig::with_scheduler("rr"))
            .unwrap();
        t.add_dest(&vip(), rs(1)).unwrap();
        assert!(!t.snapshot().reads_load());
        // a connection threshold makes any scheduler depend on counts
        t.edit_dest(&vip(), rs(1).thresholds(100, 0)).unwrap();
        assert!(t.snapshot().reads_load());
        t.edit_dest(&vip(), rs(1)).unwrap();
        assert!(!t.snapshot().reads_load());
        t.edit_service(&vip(), ServiceConfig::with_scheduler("wlc"))
            .unwrap();
        assert!(t.snapshot().reads_load());
    }

    #[test]
    fn snapshot_walks_newest_first_and_lists_sorted() {
        let mut t = ServiceTable::new(16);
        t.add_service(vip(), ServiceConfig::with_scheduler("rr"))
            .unwrap();
        for last in [20, 3, 11] {
            t.add_dest(&vip(), rs(last)).unwrap();
        }
        let g = t.generation();
        let s = t.snapshot();
        assert_eq!(s.generation(), g);
        let svc = s.get(Protocol::Tcp, v4(198, 18, 0, 100), 80).unwrap();
        let walk: Vec<IpAddr> = svc.servers.iter().map(|r| r.addr).collect();
        assert_eq!(
            walk,
            vec![v4(198, 18, 1, 11), v4(198, 18, 1, 3), v4(198, 18, 1, 20)]
        );
        let listed: Vec<IpAddr> = svc.servers_listing_order().iter().map(|r| r.addr).collect();
        assert_eq!(
            listed,
            vec![v4(198, 18, 1, 3), v4(198, 18, 1, 11), v4(198, 18, 1, 20)]
        );

        // Editing keeps the position; weight 0 keeps last_weight.
        t.edit_dest(&vip(), rs(3).weight(0)).unwrap();
        assert!(t.generation() > g);
        let s2 = t.snapshot();
        let svc2 = s2.get_key(&vip()).unwrap();
        assert_eq!(svc2.servers[1].addr, v4(198, 18, 1, 3));
        assert_eq!(
            (svc2.servers[1].weight, svc2.servers[1].last_weight),
            (0, 1)
        );
        // The old snapshot is untouched.
        assert_eq!(svc.servers[1].weight, 1);
    }

    #[test]
    fn service_listing_order_matches_ipvsadm() {
        let mut t = ServiceTable::new(4);
        let keys = [
            ServiceKey::udp(v4(10, 0, 0, 1), 53),
            ServiceKey::fwmark(2, AddrFamily::Inet),
            ServiceKey::tcp(IpAddr::V6(Ipv6Addr::LOCALHOST), 80),
            ServiceKey::tcp(v4(10, 0, 0, 2), 80),
            ServiceKey::tcp(v4(10, 0, 0, 1), 443),
            ServiceKey::fwmark(1, AddrFamily::Inet6),
            ServiceKey::tcp(v4(10, 0, 0, 1), 80),
        ];
        for k in keys {
            t.add_service(k, ServiceConfig::default()).unwrap();
        }
        let s = t.snapshot();
        let order: Vec<ServiceKey> = s.listing_order().iter().map(|x| x.key).collect();
        assert_eq!(
            order,
            vec![
                ServiceKey::tcp(v4(10, 0, 0, 1), 80),
                ServiceKey::tcp(v4(10, 0, 0, 1), 443),
                ServiceKey::tcp(v4(10, 0, 0, 2), 80),
                ServiceKey::udp(v4(10, 0, 0, 1), 53),
                ServiceKey::tcp(IpAddr::V6(Ipv6Addr::LOCALHOST), 80),
                ServiceKey::fwmark(1, AddrFamily::Inet6),
                ServiceKey::fwmark(2, AddrFamily::Inet),
            ]
        );
    }

    #[test]
    fn find_tries_fwmark_exact_then_port_zero() {
        let mut t = ServiceTable::new(4);
        let any = ServiceKey::tcp(v4(10, 0, 0, 1), 0);
        let p = ServiceConfig {
            persistence: Some(60),
            ..ServiceConfig::default()
        };
        t.add_service(any, p).unwrap();
        t.add_service(
            ServiceKey::tcp(v4(10, 0, 0, 1), 80),
            ServiceConfig::default(),
        )
        .unwrap();
        t.add_service(
            ServiceKey::fwmark(7, AddrFamily::Inet),
            ServiceConfig::default(),
        )
        .unwrap();
        let s = t.snapshot();
        let a = v4(10, 0, 0, 1);
        assert_eq!(s.find(0, Protocol::Tcp, a, 80).unwrap().key.port(), 80);
        assert_eq!(s.find(0, Protocol::Tcp, a, 22).unwrap().key, any);
        assert!(matches!(
            s.find(7, Protocol::Tcp, a, 80).unwrap().key,
            ServiceKey::Fwmark { mark: 7, .. }
        ));
        assert!(s.find(0, Protocol::Udp, a, 80).is_none());
        assert!(s.find(0, Protocol::Tcp, v4(10, 0, 0, 2), 80).is_none());
    }

    #[test]
    fn find_agrees_with_the_general_map_for_both_families_after_deletes() {
        // find's IPv4 index must name the same service as the general map
        // (exact port, then port 0) also once deletions moved positions
        let mut t = ServiceTable::new(64);
        let six: IpAddr = "2001:db8::1".parse().unwrap();
        let addrs = [v4(10, 0, 0, 1), v4(10, 0, 0, 2), v4(198, 18, 0, 100), six];
        let mut keys = Vec::new();
        for (i, &a) in addrs.iter().enumerate() {
            for port in [0u16, 80, 443] {
                if (i + port as usize) % 4 == 3 {
                    continue;
                }
                // (a port-0 service must be persistent)
                let cfg = || ServiceConfig {
                    persistence: (port == 0).then_some(60),
                    ..ServiceConfig::default()
                };
                let tcp = ServiceKey::tcp(a, port);
                t.add_service(tcp, cfg()).unwrap();
                keys.push(tcp);
                if port != 443 {
                    let udp = ServiceKey::Addr {
                        proto: Protocol::Udp,
                        addr: a,
                        port,
                    };
                    t.add_service(udp, cfg()).unwrap();
                    keys.push(udp);
                }
            }
        }
        for round in 0..3 {
            let s = t.snapshot();
            for &a in addrs.iter().chain(&[v4(10, 0, 0, 3)]) {
                for port in [0u16, 22, 80, 443] {
                    for proto in [Protocol::Tcp, Protocol::Udp] {
                        let want = s.get(proto, a, port).or_else(|| s.get(proto, a, 0));
                        let got = s.find(0, proto, a, port);
                        assert_eq!(
                            got.map(|x| x.key),
                            want.map(|x| x.key),
                            "{proto:?} {a} {port}"
                        );
                        assert_eq!(got.map(|x| x.index), want.map(|x| x.index));
                    }
                }
            }
            // delete an early service: the later ones move down a position
            t.del_service(&keys.remove(round)).unwrap();
        }
    }

    #[test]
    fn persist_mask_applies() {
        let m = PersistMask::V4(Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(m.apply(v4(10, 1, 2, 3)), v4(10, 1, 2, 0));
        assert!(!m.is_full());
        assert!(PersistMask::full(AddrFamily::Inet).is_full());
        let six: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let want: IpAddr = "2001:db8:1::".parse().unwrap();
        assert_eq!(PersistMask::V6(48).apply(six), want);
        assert_eq!(PersistMask::V6(128).apply(six), six);
    }

    #[test]
    fn key_display() {
        assert_eq!(vip().to_string(), "TCP 198.18.0.100:80");
        assert_eq!(
            ServiceKey::udp("2001:db8::1".parse().unwrap(), 53).to_string(),
            "UDP [2001:db8::1]:53"
        );
        assert_eq!(ServiceKey::fwmark(7, AddrFamily::Inet).to_string(), "FWM 7");
    }
}
