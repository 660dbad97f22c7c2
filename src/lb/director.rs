//! [`CoreLb`]: the director logic of one worker core.
//!
//! A worker owns one `CoreLb`: its connection table, its schedulers, its
//! adopted service snapshot, its load and traffic counters and its FULLNAT
//! local-port pool. The data plane hands it frames with
//! [`CoreLb::process`] (or a whole RX burst with [`CoreLb::process_burst`],
//! which overlaps the connection lookups' cache misses: at 100K+ flows it
//! is about twice as fast) and carries out the [`FwdVerdict`]; it calls
//! [`CoreLb::tick`] regularly and [`CoreLb::adopt`] between bursts.
//!
//! # Per packet
//!
//! Validate ([`fwd::classify`]), look the connection up from either
//! direction, and if found advance its TCP state (INPUT, OUTPUT, or
//! INPUT-ONLY for DR/TUN, in [`ConnTable::update_state`]) and apply its
//! method's rewrite for that direction. If not found and the packet is a
//! request to a service (TCP: SYN without RST, as IPVS without
//! sloppy_tcp; UDP: any datagram), schedule: persistence template
//! ([`crate::lb::persist`]) or the service's scheduler over the available
//! servers, then create the connection (table full: dropped and counted,
//! never growth). One-packet UDP services (`-o`) schedule every datagram
//! and keep no entry.
//!
//! Connection reuse and unavailable servers follow the kernel's `ip_vs_in`
//! (`conn_reuse_mode`, `expire_nodest_conn`), request direction only:
//! - a TCP SYN (`conn_reuse_mode` ≠ 0) that finds its connection in
//!   TIME_WAIT or CLOSE (and not under a persistence template), or with
//!   mode bit 2 in FIN_WAIT with no reply seen (DR/TUN), expires it and is
//!   scheduled anew, so clients reusing ports are scheduled afresh; with
//!   `expire_nodest_conn` so does a SYN on a quiescent (weight 0) server's
//!   connection in any state;
//! - a packet of a connection whose server was removed from the snapshot
//!   is dropped *without restarting the entry's timer* (the lookup does not
//!   touch it; only forwarded packets do), so the entry expires and the
//!   flow is scheduled afresh — a UDP client that keeps sending is not
//!   pinned to a deleted server. With `expire_nodest_conn` the entry is
//!   expired at once and the packet (SYN or UDP) scheduled afresh. A NAT
//!   redirect entry (below) applies the same rule on its own core, its
//!   server found by address and port, so that it expires too and the flow
//!   is then scheduled onto the core where its new replies land.
//!
//! Draining is weight 0: a quiescent server gets no new connections but
//! keeps its existing ones. With `expire_quiescent_template`, persistence
//! templates of a quiescent server are not followed (a fresh one is made).
//!
//! A packet starting a connection is matched to a fwmark service first
//! when its mark (vsd's classifier, [`crate::lb::mark`], consulted only
//! while a fwmark service exists) names one, as `ip_vs_service_find` does.
//! Fragments: the first fragment is handled as above and its decision
//! cached for the datagram's other fragments ([`crate::lb::frag`]).
//!
//! # Several cores
//!
//! The data plane delivers every packet to `owner(packet tuple)`
//! ([`RssOwner`]), by NIC RSS or in software. Then:
//! - DR, TUN: the connection lives on the core owning the request tuple
//!   (replies never come back).
//! - FULLNAT: the local port is chosen so that the reply tuple is owned by
//!   the same core ([`crate::lb::laddr`]): both directions on one core.
//! - NAT: replies `(RIP, CIP, rport, cport)` belong to core R =
//!   owner(reply tuple), generally not the core Q that saw the SYN. The
//!   connection must live on R. Q schedules and, if R ≠ Q, records a small
//!   *redirect* entry (a connection-table entry with dest
//!   [`REDIRECT_DEST`], INPUT-ONLY state like DR, so its timeout follows the
//!   request packets) and answers `Steer { core: R, meta: new(dest) }`. R,
//!   called with that meta, creates the real connection with that server
//!   (or schedules again if the server is gone from R's snapshot). Later
//!   request packets hit Q's redirect and are steered with
//!   `SteerMeta::existing()`; a steered non-SYN packet R has no connection
//!   for is dropped (`SteeredNoConn`). Steered packets are never steered
//!   again.
//!
//! Persistence templates are per core. Clients whose connections hash to
//! different cores would get independent templates (and possibly different
//! servers), so new templates of either family are recorded for broadcast:
//! [`CoreLb::take_new_templates`] on the creating core, then
//! [`CoreLb::learn_template`] on every other core (the data plane carries
//! them, as it does neighbours). Until a template has propagated, a second
//! core may schedule the same client elsewhere.
//!
//! # IPv6
//!
//! The per-packet path above is generic over the address family
//! ([`crate::lb::family::Family`]) and monomorphised: IPv4 frames take the
//! path they always took (batched lookups in [`CoreLb::process_burst`]);
//! frames that are not IPv4 go to [`fwd6::classify6`] and the same logic
//! over a second connection table of 128-bit keys (in a burst, IPv6 frames
//! are classified and looked up together in the first pass, as IPv4's are).
//! Mixed families live in that IPv6 table with IPv4-mapped addresses:
//! NAT64 ([`crate::lb::nat64`]: IPv6 VIP, IPv4 servers and local
//! addresses; IPv4 packets matching no service are looked up there while a
//! NAT64 service exists), TUN IPv6-in-IPv4 and IPv4-in-IPv6 (an IPv4
//! service's flows to IPv6 tunnel servers). Not over IPv6: the SYN proxy
//! (`ipv6_unsupported_feature`), fragments (`ipv6_fragment`) and the
//! firewall-mark classifier.
//!
//! Counters: every drop is counted here, in the core's [`StatsTable`],
//! with its reason; the data plane must not count `Drop` verdicts again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::lb::conn::{
    Addr, Conn, ConnError, ConnId, ConnTable, ConnTable4, ConnTable6, Direction, Endpoint,
    FirstPacket, KnownFree, NewConn, Seed, Tuple,
};
use crate::lb::defense::{DefenseConfig, DefenseState, DROP_PROBE_SHIFT};
use crate::lb::family::Family;
use crate::lb::frag::{self, FragAction, FragCache, FragKey};
use crate::lb::fwd::{
    self, FwdDrop, IcmpQuote, IcmpTranslation, L4Csum, PacketInfo, TunError, PROTO_ICMP, PROTO_TCP,
    PROTO_UDP,
};
use crate::lb::fwd6;
use crate::lb::icmp_limit::{IcmpLimitConfig, IcmpLimiter, Verdict as IcmpVerdict};
use crate::lb::laddr::{LocalPortStats, LocalPorts, DEFAULT_PORT_MAX, DEFAULT_PORT_MIN};
use crate::lb::load::{CoreLoad, DestId, GlobalLoad, SummedLoad};
use crate::lb::mark::MarkRules;
use crate::lb::nat64;
use crate::lb::owner::RssOwner;
use crate::lb::packet::PacketBuf;
pub use crate::lb::persist::TemplateNote;
use crate::lb::persist::{PersistError, PersistKey, Template};
use crate::lb::sched::{SchedInput, SchedulerSet};
use crate::lb::service::{RealServer, ServiceKey, ServiceSnapshot};
use crate::lb::stats::{FwdEvent, StatsTable};
use crate::lb::synproxy::{self, AckedCookie, CookieKey, Phase, ProxyDrop, ProxyTable, NO_HELD};
use crate::lb::tcp_state::{tcp_flags, TcpState, Timeouts};
use crate::lb::types::{FwdMethod, Protocol};

use burst6::{Burst6, Class6};

/// Dest of a NAT redirect entry (see the module docs): out of range of
/// every counter, so it is never counted as a connection of a server.
pub const REDIRECT_DEST: DestId = DestId::MAX;

/// Whether a connection-table entry is a NAT redirect (listings skip them).
pub fn is_redirect<K: Addr>(c: &Conn<K>) -> bool {
    c.dest() == REDIRECT_DEST
}

/// What travels with a packet steered to another core: a kind tag in the
/// top two bits (new connection / existing) and, for a new connection, the
/// chosen server's [`DestId`] in the low 32. Its raw value is never 0, so a
/// ring may use 0 for "no metadata".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SteerMeta(u64);

impl SteerMeta {
    const KIND_MASK: u64 = 3 << 62;
    const NEW: u64 = 1 << 62;
    const EXISTING: u64 = 2 << 62;
    const FRAGMENT: u64 = 3 << 62;

    /// First packet of a connection the steering core scheduled to `dest`.
    pub fn new_conn(dest: DestId) -> Self {
        SteerMeta(Self::NEW | u64::from(dest))
    }
    /// A packet of a connection that should exist on the receiving core.
    pub fn existing() -> Self {
        SteerMeta(Self::EXISTING)
    }
    /// An IPv4 fragment handed to the core that owns its datagram
    /// ([`crate::lb::frag`]): handled there as if it came from the wire.
    pub fn fragment() -> Self {
        SteerMeta(Self::FRAGMENT)
    }
    /// Whether this is a fragment steered by the fragment rule.
    pub fn is_fragment(self) -> bool {
        self.0 & Self::KIND_MASK == Self::FRAGMENT
    }
    /// From the raw value (as carried on a ring).
    pub fn from_raw(v: u64) -> Self {
        SteerMeta(v)
    }
    /// The raw value.
    pub fn raw(self) -> u64 {
        self.0
    }
    /// The server chosen for a new connection.
    pub fn new_dest(self) -> Option<DestId> {
        (self.0 & Self::KIND_MASK == Self::NEW).then_some(self.0 as u32)
    }
    /// Whether this is a packet of an existing connection.
    pub fn is_existing(self) -> bool {
        self.0 & Self::KIND_MASK == Self::EXISTING
    }
}

/// What the data plane does with a processed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwdVerdict {
    /// Rewritten: resolve `next_hop`'s MAC on the port whose subnet holds it
    /// (or its gateway), fill the Ethernet header and send. Its family is
    /// the frame's (EtherType) as it now is: a TUN packet across families
    /// has been re-framed for the real server's family.
    Forward {
        /// The real server (requests) or the client (replies, ICMP errors
        /// we originate).
        next_hop: IpAddr,
    },
    /// Untouched: give it to `core`'s worker, which calls `process` with
    /// `Some(meta)`.
    Steer {
        /// Destination core.
        core: u16,
        /// Pass back to `process` on that core.
        meta: SteerMeta,
    },
    /// Not for a service or connection: local handling (ARP, ICMP echo to
    /// the director, ...) or drop.
    NotService,
    /// Dropped (already counted in the core's [`StatsTable`]).
    Drop(FwdDrop),
    /// Kept by the director (a copy: the SYN proxy holds a client's first
    /// data segment until the real server's handshake completes); free the
    /// buffer, count nothing.
    Held,
}

/// Settings of one core's director.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreLbConfig {
    /// This core's number (as in the RETA).
    pub core: u16,
    /// Number of worker cores.
    pub cores: u16,
    /// IP MTU towards the real servers (TUN encapsulation limit).
    pub mtu: u16,
    /// Outer source address of TUN packets (a director address).
    pub tun_source: Ipv4Addr,
    /// Outer source address of IPv6 TUN packets (IPv6-in-IPv6).
    pub tun_source6: Ipv6Addr,
    /// Connection table capacity (connections + templates + redirects).
    pub conn_capacity: usize,
    /// The IPv6 connection table's capacity (a table of its own: 128-bit
    /// keys).
    pub conn_capacity6: usize,
    /// Expire a connection whose server was removed on its next request
    /// packet and schedule that packet afresh (IPVS `expire_nodest_conn`).
    pub expire_nodest_conn: bool,
    /// IPVS `conn_reuse_mode`: 0 never reschedules a SYN that hits an
    /// entry; bit 1 (default) reschedules it on a closing entry; bit 2 also
    /// on FIN_WAIT entries with no reply seen (DR/TUN).
    pub conn_reuse_mode: u8,
    /// IPVS `expire_quiescent_template`: persistence templates of a
    /// weight-0 server are not followed.
    pub expire_quiescent_template: bool,
    /// FULLNAT local port range.
    pub local_port_min: u16,
    /// FULLNAT local port range, last port.
    pub local_port_max: u16,
    /// L4 checksum update in software or left to the NIC.
    pub l4_csum: L4Csum,
    /// Per-service counters (service slots `0..service_capacity`).
    pub service_capacity: usize,
    /// Entries expired per [`CoreLb::tick`] at most.
    pub tick_budget: usize,
    /// Connection table hash seed; `None` for a random one.
    pub hash_seed: Option<u64>,
}

impl Default for CoreLbConfig {
    fn default() -> Self {
        CoreLbConfig {
            core: 0,
            cores: 1,
            mtu: 1500,
            tun_source: Ipv4Addr::UNSPECIFIED,
            tun_source6: Ipv6Addr::UNSPECIFIED,
            conn_capacity: 1 << 16,
            conn_capacity6: 1 << 16,
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
            expire_quiescent_template: false,
            local_port_min: DEFAULT_PORT_MIN,
            local_port_max: DEFAULT_PORT_MAX,
            l4_csum: L4Csum::Update,
            service_capacity: 256,
            tick_budget: 4096,
            hash_seed: None,
        }
    }
}

/// Packets whose connection lookups [`CoreLb::process_burst`] issues together.
pub const BURST: usize = 32;

/// In a burst's lookup pipeline, how many tuples after starting a tuple's
/// lookup (hash, index slot load) its index slot is read and its entry load
/// started: long enough for the slot to arrive from memory (the last ones
/// are probed while the burst is handled, see [`HANDLE_LAG`]).
const PROBE_LAG: usize = 8;

/// Tuples not probed during classification (its last [`PROBE_LAG`]) are
/// probed while the burst is handled, after this many of its packets: a
/// handled packet takes a few hundred cycles, so the tail's index lines are
/// not read right after their loads were started, and each of their entries
/// still has several packets' handling to arrive.
const HANDLE_LAG: usize = 4;

/// One IPv4 lookup of a burst in flight.
#[derive(Clone, Copy)]
struct Lookup4 {
    tuple: Tuple<u32>,
    hash: u32,
    /// Its home index slot's value ([`ConnTable::lookup_probe`]).
    first: u32,
}

impl Default for Lookup4 {
    fn default() -> Self {
        Lookup4 {
            tuple: Tuple {
                proto: Protocol::Tcp,
                src: Endpoint::default(),
                dst: Endpoint::default(),
            },
            hash: 0,
            first: 0,
        }
    }
}

/// The connection-table tuple of a TCP/UDP packet.
fn l4_tuple(info: &PacketInfo) -> Option<Tuple<u32>> {
    matches!(info.proto, PROTO_TCP | PROTO_UDP)
        .then(|| tcp_udp_tuple(info.proto, (info.src, info.sport), (info.dst, info.dport)))
}

/// The connection-table key of a TCP (`proto` 6) or else UDP flow.
#[inline(always)]
fn tcp_udp_tuple<A: Family>(proto: u8, src: (A, u16), dst: (A, u16)) -> Tuple<A::Key> {
    Tuple {
        proto: if proto == PROTO_TCP {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        src: Endpoint::new(src.0.key(), src.1),
        dst: Endpoint::new(dst.0.key(), dst.1),
    }
}

/// An IPv4 packet's info in the IPv4-mapped form of the IPv6 table.
fn mapped_v4(info: &PacketInfo<Ipv4Addr>) -> PacketInfo<Ipv6Addr> {
    info.with_addrs(info.src.to_ipv6_mapped(), info.dst.to_ipv6_mapped())
}

/// Most template notes kept between two `take_new_templates` calls.
const TEMPLATE_NOTES_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, Default)]
struct DestSlot {
    /// In the adopted snapshot.
    present: bool,
    /// Slot of its service (kept after removal, for draining connections).
    svc_slot: u32,
    /// Weight in the adopted snapshot (0: quiescent).
    weight: u32,
    /// Firewall mark of its service (0: an address/port service), which
    /// sync records carry so a backup finds the service.
    fwmark: u32,
}

/// The endpoints of a connection as the rewrites need them.
#[derive(Debug, Clone, Copy)]
struct Flow<A = Ipv4Addr> {
    fwd: FwdMethod,
    client: (A, u16),
    virt: (A, u16),
    local: (A, u16),
    real: (A, u16),
}

#[inline(always)]
fn ep<A: Family>(e: Endpoint<A::Key>) -> (A, u16) {
    (A::from_key(e.addr), e.port)
}

impl<A: Family> Flow<A> {
    /// The flow of a connection with these endpoints (`local`: FULLNAT's).
    #[inline(always)]
    fn new(
        fwd: FwdMethod,
        client: Endpoint<A::Key>,
        virt: Endpoint<A::Key>,
        local: Option<Endpoint<A::Key>>,
        real: Endpoint<A::Key>,
    ) -> Flow<A> {
        Flow {
            fwd,
            client: ep(client),
            virt: ep(virt),
            local: local.map_or((A::UNSPECIFIED, 0), ep),
            real: ep(real),
        }
    }

    #[inline(always)]
    fn of(c: &Conn<A::Key>) -> Flow<A> {
        Flow::new(c.fwd(), c.client(), c.virt(), c.local(), c.real())
    }
}

/// Whether a SYN may replace this entry (kernel `is_new_conn_expected`,
/// conn_reuse_mode 1; redirect entries follow the INPUT-ONLY table, so
/// FIN_WAIT is their closing state, as mode 2 allows for DR).
fn reusable<K: Addr>(c: &Conn<K>) -> bool {
    reusable_in_mode(c, 1)
}

/// Kernel `is_new_conn_expected` for `conn_reuse_mode` `mode` (nonzero).
fn reusable_in_mode<K: Addr>(c: &Conn<K>, mode: u8) -> bool {
    match c.tcp_state() {
        Some(TcpState::TimeWait | TcpState::Close) => is_redirect(c) || !c.has_template(),
        Some(TcpState::FinWait) => {
            is_redirect(c) || (mode & 2 != 0 && !c.has_template() && c.no_reply_seen())
        }
        _ => false,
    }
}

/// Insert a new connection. If its reply tuple belongs to an old
/// connection that is already closing (TIME_WAIT or CLOSE, as for SYN
/// reuse) — e.g. a client port reused toward another service on the same
/// real server — the old entry gives way, as the real server's own TIME_WAIT
/// handling would let the new SYN through.
/// With `first`, the entry is made already classified by that packet
/// ([`ConnTable::insert_first`]).
// (inlined: only the reply key's reuse is out of line; as a call of its
// own it cost every new connection ~30 instructions)
#[inline(always)]
fn insert_reusing<K: Addr>(
    conns: &mut ConnTable<K>,
    stats: &StatsTable,
    nc: &NewConn<K>,
    now_ms: u64,
    free: KnownFree,
    first: Option<FirstPacket>,
) -> Result<ConnId, ConnError> {
    let r = match first {
        Some(p) => conns.insert_first(nc, now_ms, free, p),
        None => conns.insert_checked(nc, now_ms, free),
    };
    match r {
        Err(ConnError::ReplyExists) => insert_replacing_reply(conns, stats, nc, now_ms, first),
        other => other,
    }
}

/// [`insert_reusing`] when the reply key is taken: the old entry gives way
/// if it is closing.
#[cold]
#[inline(never)]
fn insert_replacing_reply<K: Addr>(
    conns: &mut ConnTable<K>,
    stats: &StatsTable,
    nc: &NewConn<K>,
    now_ms: u64,
    first: Option<FirstPacket>,
) -> Result<ConnId, ConnError> {
    let reply_dst = match nc.fwd {
        FwdMethod::FullNat => match nc.local {
            Some(l) => l,
            None => return Err(ConnError::ReplyExists),
        },
        _ => nc.client,
    };
    let tuple = Tuple {
        proto: nc.proto,
        src: nc.real,
        dst: reply_dst,
    };
    let old = conns
        .peek(&tuple)
        .and_then(|(id, _)| conns.get(id).copied().map(|c| (id, c)));
    match old {
        Some((id, c)) if reusable(&c) && !is_redirect(&c) => {
            conns.remove(id);
            stats.count_event(FwdEvent::ConnReused);
            match first {
                Some(p) => conns.insert_first(nc, now_ms, KnownFree::default(), p),
                None => conns.insert(nc, now_ms),
            }
        }
        _ => Err(ConnError::ReplyExists),
    }
}

fn proxy_drop(e: ProxyDrop) -> FwdDrop {
    match e {
        ProxyDrop::BadCookie => FwdDrop::SynproxyBadCookie,
        ProxyDrop::NotReady => FwdDrop::SynproxyNotReady,
        ProxyDrop::Unexpected => FwdDrop::SynproxyUnexpected,
        ProxyDrop::NoRoom => FwdDrop::NoRoom,
    }
}

fn insert_error(e: ConnError) -> FwdDrop {
    match e {
        ConnError::TableFull => FwdDrop::TableFull,
        _ => FwdDrop::ReplyTupleInUse,
    }
}

/// One worker core's director.
pub struct CoreLb {
    cfg: CoreLbConfig,
    conns: ConnTable4,
    /// IPv6 connections ([`Family`]: the same logic, 128-bit keys).
    conns6: ConnTable6,
    sched: SchedulerSet,
    snap: Arc<ServiceSnapshot>,
    load: Arc<CoreLoad>,
    global: Arc<GlobalLoad>,
    rss: Option<Arc<RssOwner>>,
    ports: LocalPorts,
    stats: Arc<StatsTable>,
    dests: Vec<DestSlot>,
    /// `(address, port)` of every server in the snapshot, sorted: a NAT
    /// redirect entry knows its real server only by address.
    reals: Vec<(IpAddr, u16)>,
    notes: Vec<TemplateNote>,
    tun_ident: u16,
    /// The firewall-mark classifier ([`crate::lb::mark`]).
    marks: Arc<MarkRules>,
    /// Whether the adopted snapshot has a fwmark service (else the
    /// classifier is never consulted).
    fwmark_services: bool,
    /// Whether it has an IPv6 FULLNAT service with IPv4 servers (NAT64:
    /// IPv4 packets that match no service may be replies of its
    /// connections, [`crate::lb::nat64`]).
    nat64: bool,
    /// Whether it has an IPv4 service with IPv6 (tunnel) servers: their
    /// connections live in the IPv6 table in IPv4-mapped form.
    tun_4in6: bool,
    defense: DefenseState,
    cookie_key: CookieKey,
    proxied: ProxyTable,
    /// Decisions for the fragments of recent datagrams ([`crate::lb::frag`]).
    frags: FragCache,
    /// The datagram of the first fragment being processed (recorded with
    /// its rewrite in [`CoreLb::note_fragment`]).
    frag_pending: Option<FragKey>,
    /// The non-IPv4 frames of the burst being processed ([`Burst6`]);
    /// lent out (`None`) while one of them is handled.
    burst6: Option<Box<Burst6>>,
    /// Rate limits on the ICMP errors this core sends.
    icmp_limit: IcmpLimiter,
    /// Sync master on: connections to send ([`sync`]), records lost.
    sync_master: bool,
    sync_out: Vec<crate::lb::sync::SyncRecord>,
    sync_lost: u64,
    /// The kernel's sync knobs and, per slab slot, the master's memory of
    /// its last decision ([`crate::lb::sync::SyncMark`]).
    sync_settings: crate::lb::sync::SyncSettings,
    /// ([`crate::lb::sync::SyncMark`] bits: a zeroed `Vec<u64>` is mapped lazily)
    sync_marks: Vec<u64>,
    /// The same for the IPv6 table ([`sync`]).
    sync6: sync::Sync6,
}

impl std::fmt::Debug for CoreLb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreLb")
            .field("core", &self.cfg.core)
            .field("conns", &self.conns.len())
            .field("generation", &self.snap.generation())
            .finish_non_exhaustive()
    }
}

impl CoreLb {
    /// A director for core `cfg.core` using snapshot `snap`, global load
    /// sums `global` (refreshed by the control thread from every core's
    /// [`CoreLb::load`]) and flow ownership `rss` (`None`: this is the only
    /// core). Fails only for a bad `conn_capacity`.
    pub fn new(
        cfg: CoreLbConfig,
        snap: Arc<ServiceSnapshot>,
        global: Arc<GlobalLoad>,
        rss: Option<Arc<RssOwner>>,
        now_ms: u64,
    ) -> Result<Self, ConnError> {
        let dest_capacity = snap.dest_capacity();
        let load = Arc::new(CoreLoad::new(dest_capacity));
        let seed = match cfg.hash_seed {
            Some(s) => Seed::new(s),
            None => Seed::random(),
        };
        let cookie_key_seed = cfg.hash_seed;
        // drop_entry's probes: reproducible with a fixed hash seed
        let defense_seed = cfg.hash_seed.map_or_else(
            || {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(cfg.core)
            },
            |s| s ^ 0xdefe_17ce ^ u64::from(cfg.core),
        );
        let conns = ConnTable4::with_seed(cfg.conn_capacity, Arc::clone(&load), now_ms, seed)?;
        let conns6 = ConnTable6::with_seed(cfg.conn_capacity6, Arc::clone(&load), now_ms, seed)?;
        // Start each core's port walk at a different place.
        let start = cfg.core.wrapping_mul(7919);
        // several cores: this core's port lists, built once here
        let ports = LocalPorts::for_core(
            cfg.local_port_min,
            cfg.local_port_max,
            start,
            rss.as_deref().map(|r| (r, cfg.core)),
        );
        let stats = Arc::new(StatsTable::new(dest_capacity, cfg.service_capacity));
        let cores = cfg.cores;
        let mut lb = CoreLb {
            sched: SchedulerSet::new(u64::from(cfg.core)),
            cfg,
            conns,
            conns6,
            snap: Arc::clone(&snap),
            load,
            global,
            rss,
            ports,
            stats,
            dests: vec![DestSlot::default(); dest_capacity],
            reals: Vec::new(),
            notes: Vec::with_capacity(TEMPLATE_NOTES_MAX),
            tun_ident: 0,
            marks: Arc::new(MarkRules::new()),
            fwmark_services: false,
            nat64: false,
            tun_4in6: false,
            defense: DefenseState::new(defense_seed),
            // one key for every core, so any core checks any cookie
            cookie_key: cookie_key_seed.map_or_else(CookieKey::process, CookieKey::from_seed),
            proxied: ProxyTable::default(),
            frags: FragCache::new(),
            frag_pending: None,
            burst6: Some(Burst6::new()),
            icmp_limit: IcmpLimiter::new(IcmpLimitConfig::default(), cores, now_ms),
            sync_master: false,
            sync_out: Vec::new(),
            sync_lost: 0,
            sync_settings: crate::lb::sync::SyncSettings::default(),
            sync_marks: Vec::new(),
            sync6: sync::Sync6::default(),
        };
        lb.adopt(snap);
        Ok(lb)
    }

    /// Adopt a new service snapshot (between bursts). Schedulers keep their
    /// state where the kernel would; connections keep their server.
    pub fn adopt(&mut self, snap: Arc<ServiceSnapshot>) {
        self.sched.sync(&snap);
        for d in &mut self.dests {
            d.present = false;
        }
        self.reals.clear();
        for svc in snap.services() {
            for rs in &svc.servers {
                if let Some(d) = self.dests.get_mut(rs.id as usize) {
                    d.present = true;
                    d.svc_slot = svc.slot;
                    d.weight = rs.weight;
                    d.fwmark = match svc.key {
                        ServiceKey::Fwmark { mark, .. } => mark,
                        ServiceKey::Addr { .. } => 0,
                    };
                }
                self.reals.push((rs.addr, rs.port));
            }
        }
        self.reals.sort_unstable();
        self.fwmark_services = snap
            .services()
            .iter()
            .any(|s| matches!(s.key, ServiceKey::Fwmark { .. }));
        self.tun_4in6 = snap.services().iter().any(|s| {
            s.af() == crate::lb::types::AddrFamily::Inet
                && s.servers.iter().any(|r| r.addr.is_ipv6())
        });
        self.nat64 = snap.services().iter().any(|s| {
            s.af() == crate::lb::types::AddrFamily::Inet6
                && s.servers
                    .iter()
                    .any(|r| r.addr.is_ipv4() && r.method == FwdMethod::FullNat)
        });
        // The proxy's side table (one entry per connection slot) is
        // allocated here, with the configuration, not by the first proxied
        // connection: filling it is a multi-second stall of the packet loop
        // for a large table (4M slots: ~200 MB).
        if snap.services().iter().any(|s| s.config.synproxy) {
            self.proxied.ensure(self.conns.capacity());
        }
        self.snap = snap;
    }

    /// Adopt a new firewall-mark rule set (between bursts).
    pub fn set_marks(&mut self, marks: Arc<MarkRules>) {
        self.marks = marks;
    }

    /// The firewall mark of a packet starting a connection (0: none), of
    /// either family.
    #[inline]
    fn fwmark_of<A: Family>(&self, info: &PacketInfo<A>) -> u32 {
        if self.fwmark_services {
            self.marks.mark_of(info.dst.ip(), info.proto, info.dport)
        } else {
            0
        }
    }

    /// Expire due connections (at most `tick_budget`), freeing their FULLNAT
    /// ports, and age the schedulers' tables. Returns the entries removed.
    pub fn tick(&mut self, now_ms: u64) -> usize {
        let mut freed = 0u64;
        let stats = &self.stats;
        let n = self
            .conns
            .expire_some(now_ms, self.cfg.tick_budget, |_, c| {
                if c.local().is_some() {
                    freed += 1;
                }
                // a SYN the server never answered (passive health checks)
                if matches!(c.tcp_state(), Some(TcpState::SynRecv | TcpState::SynSent)) {
                    stats.count_syn_timeout(c.dest());
                }
            });
        let n = n + self
            .conns6
            .expire_some(now_ms, self.cfg.tick_budget, |_, c| {
                if c.local().is_some() {
                    freed += 1;
                }
                if matches!(c.tcp_state(), Some(TcpState::SynRecv | TcpState::SynSent)) {
                    stats.count_syn_timeout(c.dest());
                }
            });
        self.ports.released(freed);
        self.sched.expire(now_ms);
        n + self.defend(now_ms)
    }

    /// drop_entry / secure_tcp: the level once a second, the drop pass
    /// spread over the ticks ([`crate::lb::defense`]). Returns the entries
    /// dropped.
    fn defend(&mut self, now_ms: u64) -> usize {
        let before = self.defense.level();
        if let Some(level) = self
            .defense
            .check(now_ms, self.conns.len(), self.conns.capacity())
        {
            if level.secure_tcp && !before.secure_tcp {
                self.stats.count_event(FwdEvent::SecureTcpOn);
            }
            if level.drop_entry && !before.drop_entry {
                self.stats.count_event(FwdEvent::DropEntryOn);
            }
            self.conns.set_secure_tcp(level.secure_tcp);
            self.conns6.set_secure_tcp(level.secure_tcp);
            let pass = if level.drop_entry {
                (self.conns.capacity() >> DROP_PROBE_SHIFT).max(1)
            } else {
                0
            };
            self.defense.plan_probes(pass);
        }
        let probes = self.defense.take_probes(self.cfg.tick_budget);
        if probes == 0 {
            return 0;
        }
        let mut freed = 0u64;
        let n = self
            .conns
            .drop_random_entries(&mut self.defense, probes, now_ms, |_, c| {
                if c.local().is_some() {
                    freed += 1;
                }
            });
        self.ports.released(freed);
        for _ in 0..n {
            self.stats.count_event(FwdEvent::DefenseDropped);
        }
        n
    }

    /// Change the drop_entry / secure_tcp settings (next [`CoreLb::tick`]).
    pub fn set_defense(&mut self, d: DefenseConfig) {
        self.defense.set_config(d);
    }

    /// The defence level this core decided last.
    pub fn defense_level(&self) -> crate::lb::defense::DefenseLevel {
        self.defense.level()
    }

    /// Change the protocol timeouts (`ipvsadm --set`).
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.conns.set_timeouts(t);
        self.conns6.set_timeouts(t);
    }

    /// This core's number.
    pub fn core(&self) -> u16 {
        self.cfg.core
    }
    /// The settings.
    pub fn config(&self) -> &CoreLbConfig {
        &self.cfg
    }
    /// The connection table (listings, tests).
    pub fn conns(&self) -> &ConnTable4 {
        &self.conns
    }
    /// The IPv6 connection table (listings, tests).
    pub fn conns6(&self) -> &ConnTable6 {
        &self.conns6
    }
    /// This core's connection counts per server (sum them into the
    /// [`GlobalLoad`]).
    pub fn load(&self) -> &Arc<CoreLoad> {
        &self.load
    }
    /// This core's traffic counters.
    pub fn stats(&self) -> &Arc<StatsTable> {
        &self.stats
    }
    /// FULLNAT local port counters.
    pub fn local_port_stats(&self) -> &LocalPortStats {
        self.ports.stats()
    }
    /// The adopted snapshot.
    pub fn snapshot(&self) -> &Arc<ServiceSnapshot> {
        &self.snap
    }

    /// Templates created here since the last call, appended to `out`, for
    /// the other cores' [`CoreLb::learn_template`].
    pub fn take_new_templates(&mut self, out: &mut Vec<TemplateNote>) {
        out.append(&mut self.notes);
    }

    /// Install a template another core created (unless one exists here or
    /// its server is not in this core's snapshot). True if installed.
    pub fn learn_template(&mut self, note: &TemplateNote, now_ms: u64) -> bool {
        match note {
            TemplateNote::V4(t) => self.learn::<Ipv4Addr>(t, now_ms),
            TemplateNote::V6(t) => self.learn::<Ipv6Addr>(t, now_ms),
        }
    }

    fn learn<A: Family>(&mut self, t: &Template<A::Key>, now_ms: u64) -> bool {
        if !self.dest_present(t.dest) {
            return false;
        }
        let ok = A::table(&mut self.conns, &mut self.conns6)
            .template_insert(&t.key, t.dest, t.real, t.timeout_s, now_ms)
            .is_ok();
        if ok {
            self.stats.count_event(FwdEvent::TemplateLearned);
        }
        ok
    }

    fn dest_present(&self, d: DestId) -> bool {
        self.dests.get(d as usize).is_some_and(|s| s.present)
    }

    /// Whether the real server of connection `c` is in the snapshot: by its
    /// slot, or for a NAT redirect (which has none) by address and port (a
    /// port-0 server serves any port; a server still in another service
    /// counts as present, so a doubt never drops traffic).
    fn real_present<A: Family>(&self, c: &Conn<A::Key>) -> bool {
        if !is_redirect(c) {
            return self.dest_present(c.dest());
        }
        let r = c.real();
        let addr = A::from_key(r.addr).ip();
        self.reals.binary_search(&(addr, r.port)).is_ok()
            || self.reals.binary_search(&(addr, 0)).is_ok()
    }

    /// A present server of weight 0.
    fn dest_quiescent(&self, d: DestId) -> bool {
        self.dests
            .get(d as usize)
            .is_some_and(|s| s.present && s.weight == 0)
    }

    /// Whether a new SYN on connection `c` expires it and is scheduled
    /// afresh (the kernel's `ip_vs_in` with `conn_reuse_mode`).
    fn syn_reschedules<K: Addr>(&self, c: &Conn<K>) -> bool {
        let mode = self.cfg.conn_reuse_mode;
        if mode == 0 {
            return false;
        }
        if !is_redirect(c) && self.cfg.expire_nodest_conn && self.dest_quiescent(c.dest()) {
            return true;
        }
        reusable_in_mode(c, mode)
    }

    fn dest_svc_slot(&self, d: DestId) -> u32 {
        self.dests.get(d as usize).map_or(u32::MAX, |s| s.svc_slot)
    }

    /// Owner of the reply tuple of a NAT entry (this core if single-core).
    fn reply_owner<A: Family>(&self, c: &Conn<A::Key>) -> u16 {
        match &self.rss {
            Some(rss) => {
                let (r, cl) = (ep::<A>(c.real()), ep::<A>(c.client()));
                A::owner(rss, r.0, cl.0, r.1, cl.1)
            }
            None => self.cfg.core,
        }
    }

    /// The connection table of family `A`.
    #[inline(always)]
    fn table<A: Family>(&mut self) -> &mut ConnTable<A::Key> {
        A::table(&mut self.conns, &mut self.conns6)
    }

    /// Process one frame. `meta` is what a `Steer` verdict of another core
    /// carried (`None` for packets from the wire).
    pub fn process<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        meta: Option<SteerMeta>,
        now_ms: u64,
    ) -> FwdVerdict {
        if meta.is_some() {
            self.stats.count_event(FwdEvent::SteeredIn);
        }
        let v = self.process_inner(pkt, meta, now_ms);
        if let FwdVerdict::Drop(r) = v {
            self.stats.count_drop(r);
        }
        v
    }

    /// Process a burst: `verdicts[i]` gets the verdict of `pkts[i]`
    /// (`meta[i]` as for [`CoreLb::process`]; missing entries are `None`,
    /// so pass `&[]` for packets from the wire). Same results as calling
    /// `process` on each packet in order, but the connection lookups of up
    /// to [`BURST`] packets are pipelined: each IPv4 tuple's index slot
    /// starts loading as the packet is classified, its entry [`PROBE_LAG`]
    /// packets later, and it is compared only when its packet is handled
    /// (IPv6: [`ConnTable::peek_batch`]), so the cache misses overlap with
    /// the burst's other work instead of queueing. Returns the number of
    /// packets processed (the shorter of `pkts` and `verdicts`).
    pub fn process_burst<P: PacketBuf>(
        &mut self,
        pkts: &mut [P],
        meta: &[Option<SteerMeta>],
        verdicts: &mut [FwdVerdict],
        now_ms: u64,
    ) -> usize {
        let n = pkts.len().min(verdicts.len());
        let mut base = 0;
        for (chunk, outs) in pkts[..n]
            .chunks_mut(BURST)
            .zip(verdicts[..n].chunks_mut(BURST))
        {
            let mut infos: [Result<Option<PacketInfo>, FwdDrop>; BURST] = [Ok(None); BURST];
            // the IPv4 lookups' pipeline (ConnTable::lookup_start, _probe,
            // _finish): per tuple the tuple, its hash, its home slot's value
            let mut lookups = [Lookup4::default(); BURST];
            let mut tuple_of = [usize::MAX; BURST];
            let mut probed = 0;
            let mut nt = 0;
            for (j, p) in chunk.iter().enumerate() {
                let r = fwd::classify(p.data());
                match &r {
                    Ok(Some(i)) => {
                        if let (Some(t), Some(l)) = (l4_tuple(i), lookups.get_mut(nt)) {
                            // start loading the index slot now, the entry
                            // PROBE_LAG packets later: the misses spread over
                            // the classification instead of queueing in one place
                            l.hash = self.conns.lookup_start(&t);
                            l.tuple = t;
                            tuple_of[j] = nt;
                            nt += 1;
                        }
                    }
                    // not IPv4: classified and looked up as IPv6 here too
                    // (its `infos` entry stays `Ok(None)`)
                    Ok(None) => {
                        if let Some(b6) = self.burst6.as_deref_mut() {
                            b6.classify(p.data());
                        }
                    }
                    Err(_) => {}
                }
                if r != Ok(None) {
                    infos[j] = r;
                }
                if nt > PROBE_LAG + probed {
                    if let Some(l) = lookups.get_mut(probed) {
                        l.first = self.conns.lookup_probe(l.hash);
                    }
                    probed += 1;
                }
            }
            for l in lookups.iter_mut().take(nt.min(HANDLE_LAG + 1)).skip(probed) {
                l.first = self.conns.lookup_probe(l.hash);
            }
            let probed = probed.max(HANDLE_LAG + 1).min(nt);
            if let Some(b6) = self.burst6.as_deref_mut() {
                b6.look_up(&self.conns6);
            }
            // one packet of the burst (a macro, not a closure: the body
            // stays in this function, as it was in a single loop)
            macro_rules! handle {
                ($j:expr, $p:expr, $out:expr) => {{
                    let (j, p, out) = ($j, $p, $out);
                    let m = meta.get(base + j).copied().flatten();
                    if m.is_some() {
                        self.stats.count_event(FwdEvent::SteeredIn);
                    }
                    // compared only now: what earlier packets of the burst
                    // inserted or removed is seen (a miss is current too:
                    // handle_l4 does not look again)
                    let pre = lookups
                        .get(tuple_of[j])
                        .and_then(|l| self.conns.lookup_finish(&l.tuple, l.hash, l.first));
                    // written in place: no copy of the verdict through the stack
                    *out = self.dispatch(p, &infos[j], m, now_ms, pre);
                    if let FwdVerdict::Drop(r) = *out {
                        self.stats.count_drop(r);
                    }
                }};
            }
            let mut packets = chunk.iter_mut().zip(outs.iter_mut()).enumerate();
            for (j, (p, out)) in packets.by_ref().take(HANDLE_LAG) {
                handle!(j, p, out);
            }
            // the tuples classified last are probed only now, after the
            // burst's first HANDLE_LAG packets were handled: their index
            // lines had the rest of the classification and those packets to
            // arrive, their entries get the packets handled before them
            // (tuple t is in packet t or later, so the packets before need
            // only tuples below `probed`; two loops, not a test per packet)
            for l in lookups.iter_mut().take(nt).skip(probed) {
                l.first = self.conns.lookup_probe(l.hash);
            }
            for (j, (p, out)) in packets {
                handle!(j, p, out);
            }
            base += chunk.len();
            if let Some(b6) = self.burst6.as_deref_mut() {
                b6.clear();
            }
        }
        n
    }

    fn process_inner<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        meta: Option<SteerMeta>,
        now_ms: u64,
    ) -> FwdVerdict {
        let r = fwd::classify(pkt.data());
        // looked up here, as the burst does, so that handle_l4 can take an
        // IPv4 miss as it is
        let pre = match &r {
            Ok(Some(i)) => l4_tuple(i).and_then(|t| self.conns.peek(&t)),
            _ => None,
        };
        self.dispatch(pkt, &r, meta, now_ms, pre)
    }

    /// Act on a classified packet; `pre` is its connection lookup (IPv4:
    /// done right before, see [`CoreLb::handle_l4`]; IPv6: when already
    /// done, else it is looked up here).
    fn dispatch<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        classified: &Result<Option<PacketInfo>, FwdDrop>,
        meta: Option<SteerMeta>,
        now_ms: u64,
        pre: Option<(ConnId, Direction)>,
    ) -> FwdVerdict {
        let info = match classified {
            Ok(Some(i)) => i,
            Ok(None) => return self.dispatch6(pkt, meta, now_ms),
            Err(FwdDrop::NonFirstFragment) => return self.non_first_fragment(pkt, now_ms),
            Err(d) => return FwdVerdict::Drop(*d),
        };
        match info.proto {
            PROTO_TCP | PROTO_UDP if info.first_fragment => {
                self.first_fragment(pkt, info, meta, now_ms, pre)
            }
            PROTO_TCP | PROTO_UDP => self.handle_l4(pkt, info, meta, now_ms, pre),
            PROTO_ICMP => match &info.icmp {
                Some(q) => self.handle_icmp_error(pkt, info, q, meta),
                None => FwdVerdict::NotService,
            },
            _ => FwdVerdict::NotService,
        }
    }

    /// A frame that is not IPv4: IPv6 is classified and handled by the same
    /// logic over its own connection table (a burst's IPv6 frames arrive
    /// here already classified and looked up in its first pass); anything
    /// else is not for a service.
    #[inline(never)]
    fn dispatch6<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        meta: Option<SteerMeta>,
        now_ms: u64,
    ) -> FwdVerdict {
        // in a burst: classified and looked up with the others (in order);
        // the entry is used where it lies (the burst's entries are lent
        // out for the call, as `handle_l4` borrows the core)
        if let Some(mut b6) = self.burst6.take_if(|b| b.has_next()) {
            let v = match b6.take_next() {
                Some((Class6::Ipv6, info, pre)) => {
                    self.dispatch6_info(pkt, info, meta, now_ms, pre)
                }
                Some((Class6::Drop(d), _, _)) => FwdVerdict::Drop(d),
                Some((Class6::NotIpv6, _, _)) | None => FwdVerdict::NotService,
            };
            self.burst6 = Some(b6);
            return v;
        }
        match fwd6::classify6(pkt.data()) {
            Ok(Some(info)) => self.dispatch6_info(pkt, &info, meta, now_ms, None),
            Ok(None) => FwdVerdict::NotService,
            Err(d) => FwdVerdict::Drop(d),
        }
    }

    #[inline(always)]
    fn dispatch6_info<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<Ipv6Addr>,
        meta: Option<SteerMeta>,
        now_ms: u64,
        pre: Option<(ConnId, Direction)>,
    ) -> FwdVerdict {
        match info.proto {
            PROTO_TCP | PROTO_UDP => self.handle_l4(pkt, info, meta, now_ms, pre),
            fwd6::PROTO_ICMPV6 => match &info.icmp {
                Some(q) => self.handle_icmp_error(pkt, info, q, meta),
                None => FwdVerdict::NotService,
            },
            _ => FwdVerdict::NotService,
        }
    }

    /// A first fragment (MF set, offset 0): on the core that owns its
    /// connection, handled as any packet, and the decision recorded for the
    /// datagram's other fragments ([`crate::lb::frag`]).
    fn first_fragment<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo,
        meta: Option<SteerMeta>,
        now_ms: u64,
        pre: Option<(ConnId, Direction)>,
    ) -> FwdVerdict {
        let Some(key) = frag::frag_info(pkt.data()).map(|f| f.key) else {
            return FwdVerdict::Drop(FwdDrop::TruncatedIp);
        };
        // Fragments arrive on owner(src, dst); the connection lives on the
        // 5-tuple's owner: send the first fragment there, and the others
        // after it.
        if meta.is_none() {
            if let Some(rss) = &self.rss {
                let owner = rss.owner_v4(info.src, info.dst, info.sport, info.dport);
                if owner != self.cfg.core {
                    self.frags.insert(key, FragAction::Steer(owner), now_ms);
                    self.stats.count_event(FwdEvent::SteeredOut);
                    return FwdVerdict::Steer {
                        core: owner,
                        meta: SteerMeta::fragment(),
                    };
                }
            }
        }
        let meta = meta.filter(|m| !m.is_fragment());
        self.frag_pending = Some(key);
        let v = self.handle_l4(pkt, info, meta, now_ms, pre);
        self.frag_pending = None;
        if let FwdVerdict::Steer { core, .. } = v {
            self.frags.insert(key, FragAction::Steer(core), now_ms);
        }
        v
    }

    /// Record how a first fragment was rewritten, for the rest of its
    /// datagram. `v` is the verdict of the rewrite: an ICMP error sent
    /// back instead (TTL, frag-needed) records nothing.
    #[allow(clippy::too_many_arguments)]
    fn note_fragment<A: Family>(
        &mut self,
        info: &PacketInfo<A>,
        f: &Flow<A>,
        dir: Direction,
        dest: DestId,
        svc_slot: u32,
        v: FwdVerdict,
        now_ms: u64,
    ) {
        let Some(key) = self.frag_pending.take() else {
            return;
        };
        let FwdVerdict::Forward { next_hop } = v else {
            return;
        };
        // (only IPv4 fragments are tracked)
        let (src, dst, hop, tunnel) = match (f.fwd, dir) {
            (FwdMethod::Masq, Direction::Input) => (info.src, f.real.0, f.real.0, false),
            (FwdMethod::Masq, Direction::Output) => (f.virt.0, info.dst, f.client.0, false),
            (FwdMethod::FullNat, Direction::Input) => (f.local.0, f.real.0, f.real.0, false),
            (FwdMethod::FullNat, Direction::Output) => (f.virt.0, f.client.0, f.client.0, false),
            (FwdMethod::Route, Direction::Input) => (info.src, info.dst, f.real.0, false),
            (FwdMethod::Tunnel, Direction::Input) => (info.src, info.dst, f.real.0, true),
            (FwdMethod::Route | FwdMethod::Tunnel, Direction::Output) => return,
        };
        let (Some(src), Some(dst), Some(hop)) = (src.to_v4(), dst.to_v4(), hop.to_v4()) else {
            return;
        };
        if next_hop != IpAddr::V4(hop) {
            return;
        }
        let action = FragAction::Forward {
            src,
            dst,
            next_hop: hop,
            tunnel,
            dest,
            svc_slot,
            inbound: dir == Direction::Input,
        };
        self.frags.insert(key, action, now_ms);
    }

    /// A fragment other than the first: treated as its datagram's first
    /// fragment was, or dropped (`non_first_fragment`) if that is unknown.
    fn non_first_fragment<P: PacketBuf>(&mut self, pkt: &mut P, now_ms: u64) -> FwdVerdict {
        let Some(fi) = frag::frag_info(pkt.data()) else {
            return FwdVerdict::Drop(FwdDrop::TruncatedIp);
        };
        let Some(action) = self.frags.lookup(&fi.key, now_ms) else {
            return FwdVerdict::Drop(FwdDrop::NonFirstFragment);
        };
        match action {
            FragAction::Steer(core) => {
                if core == self.cfg.core {
                    return FwdVerdict::Drop(FwdDrop::NonFirstFragment);
                }
                self.stats.count_event(FwdEvent::SteeredOut);
                FwdVerdict::Steer {
                    core,
                    meta: SteerMeta::fragment(),
                }
            }
            FragAction::Forward {
                src,
                dst,
                next_hop,
                tunnel,
                dest,
                svc_slot,
                inbound,
            } => {
                if fi.ttl <= 1 {
                    return FwdVerdict::Drop(FwdDrop::TtlExpired);
                }
                let bytes = (fi.end - fi.l3) as u64;
                if inbound {
                    self.stats.add_in(dest, svc_slot, bytes);
                } else {
                    self.stats.add_out(dest, svc_slot, bytes);
                }
                self.stats.count_event(FwdEvent::FragmentForwarded);
                if tunnel {
                    let pi = PacketInfo {
                        l3: fi.l3,
                        l4: fi.l3 + fwd::IPV4_HEADER_LEN,
                        end: fi.end,
                        proto: fi.key.proto,
                        src: Ipv4Addr::from(fi.key.src),
                        dst: Ipv4Addr::from(fi.key.dst),
                        sport: 0,
                        dport: 0,
                        tcp_flags: 0,
                        ttl: fi.ttl,
                        dont_frag: fi.dont_frag,
                        first_fragment: false,
                        icmp: None,
                    };
                    return self.tunnel(pkt, &pi, next_hop);
                }
                frag::rewrite_fragment(pkt.data_mut(), fi.l3, src, dst);
                FwdVerdict::Forward {
                    next_hop: IpAddr::V4(next_hop),
                }
            }
        }
    }

    /// A TCP or UDP packet. `pre`: its connection lookup; for IPv4 it must
    /// have been completed right before the call (a `None` is taken as a
    /// miss), for IPv6 a `None` is looked up here.
    fn handle_l4<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        meta: Option<SteerMeta>,
        now_ms: u64,
        pre: Option<(ConnId, Direction)>,
    ) -> FwdVerdict {
        let proto = if info.proto == PROTO_TCP {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let syn = proto == Protocol::Tcp
            && info.tcp_flags & tcp_flags::SYN != 0
            && info.tcp_flags & tcp_flags::RST == 0;
        // A burst's lookup may have gone stale if an earlier packet of the
        // burst removed the entry: the handle's generation then no longer
        // matches and the lookup is done again. An IPv4 `pre` is always a
        // lookup completed right before this packet was handled (the
        // burst's last stage, or `process_inner`), with nothing inserted
        // since: its miss stands. IPv6 bursts look every key up before
        // handling any packet, so their misses are looked up again. Lookups
        // do not restart the entry's timer: update_state does, for packets
        // that go on.
        let hit = match pre {
            Some((id, dir)) if self.table::<A>().get(id).is_some() => Some((id, dir)),
            None if !A::IS_V6 => None,
            // the key only when the burst did not look it up (IPv6: two
            // 128-bit conversions)
            _ => self.table::<A>().peek(&tcp_udp_tuple(
                info.proto,
                (info.src, info.sport),
                (info.dst, info.dport),
            )),
        };
        if let Some((id, dir)) = hit {
            if let Some(c) = self.table::<A>().get(id).copied() {
                let redirect = is_redirect(&c);
                let reuse = dir == Direction::Input && syn && self.syn_reschedules(&c);
                let stale_redirect = redirect && meta.is_some();
                let gone =
                    dir == Direction::Input && !stale_redirect && !self.real_present::<A>(&c);
                // The steering core scheduled a new connection: the old entry
                // of a removed server gives way.
                let replaced = meta.and_then(SteerMeta::new_dest).is_some();
                if gone && !reuse && !replaced {
                    // The server was removed (kernel: not AVAILABLE).
                    if !self.cfg.expire_nodest_conn || (proto == Protocol::Tcp && !syn) {
                        if self.cfg.expire_nodest_conn {
                            self.table::<A>().remove(id);
                            self.stats.count_event(FwdEvent::NodestExpired);
                        }
                        return FwdVerdict::Drop(FwdDrop::DestRemoved);
                    }
                    // expire_nodest_conn: expire it, schedule this packet.
                    self.table::<A>().remove(id);
                    self.stats.count_event(FwdEvent::NodestExpired);
                } else if reuse || stale_redirect || (gone && replaced) {
                    // Replaced by a new connection (or a stale redirect on
                    // the core that must hold the real connection).
                    self.table::<A>().remove(id);
                    if reuse && (redirect || reusable(&c)) {
                        self.stats.count_event(FwdEvent::ConnReused);
                    } else if reuse || gone {
                        self.stats.count_event(FwdEvent::NodestExpired);
                    }
                } else if redirect {
                    self.conns
                        .update_state(id, Direction::Input, info.tcp_flags, now_ms);
                    self.stats.count_event(FwdEvent::SteeredOut);
                    return FwdVerdict::Steer {
                        core: self.reply_owner::<A>(&c),
                        meta: SteerMeta::existing(),
                    };
                } else {
                    return self.forward_conn(pkt, info, id, &c, dir, now_ms);
                }
            }
        }
        self.new_conn(pkt, info, proto, syn, meta, now_ms)
    }

    /// No connection: schedule one if this is a request to a service.
    /// (Not inlined into `handle_l4`: kept out of the established path's
    /// code, whose instruction count must not move with it.)
    #[inline(never)]
    fn new_conn<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        proto: Protocol,
        syn: bool,
        meta: Option<SteerMeta>,
        now_ms: u64,
    ) -> FwdVerdict {
        let vip = info.dst.ip();
        let fwmark = self.fwmark_of(info);
        // (looked up once: the snapshot does not change within a packet)
        let Some((svc_index, synproxied)) = self
            .snap
            .find(fwmark, proto, vip, info.dport)
            .map(|s| (s.index, proto == Protocol::Tcp && s.config.synproxy))
        else {
            if self.nat64 {
                if let Some(info4) = A::v4(info) {
                    let info4 = *info4;
                    return self.nat64_reply(pkt, &info4, now_ms);
                }
            }
            return FwdVerdict::NotService;
        };
        if self.tun_4in6 {
            if let Some(info4) = A::v4(info) {
                let mapped = mapped_v4(info4);
                let tuple = tcp_udp_tuple(
                    mapped.proto,
                    (mapped.src, info.sport),
                    (mapped.dst, info.dport),
                );
                if self.conns6.peek(&tuple).is_some() {
                    // an IPv4 flow tunnelled to an IPv6 server
                    return self.handle_l4(pkt, &mapped, meta, now_ms, None);
                }
            }
        }
        let mut acked: Option<AckedCookie> = None;
        if synproxied {
            // the SYN proxy speaks IPv4 only
            let Some(info4) = A::v4(info) else {
                return FwdVerdict::Drop(FwdDrop::Ipv6Unsupported);
            };
            match self.synproxy_new(pkt, info4, syn, meta, now_ms) {
                Ok(Some(a)) => acked = Some(a),
                Ok(None) => {
                    return FwdVerdict::Forward {
                        next_hop: info.src.ip(),
                    }
                }
                Err(d) => return FwdVerdict::Drop(d),
            }
        } else if proto == Protocol::Tcp && !syn {
            if meta.is_some_and(|m| m.is_existing()) {
                return FwdVerdict::Drop(FwdDrop::SteeredNoConn);
            }
            // sloppy_tcp (kernel tcp_conn_schedule): any packet but a RST
            // may be scheduled ([`crate::lb::defense`])
            if !self.defense.config().sloppy_tcp || info.tcp_flags & tcp_flags::RST != 0 {
                return FwdVerdict::Drop(FwdDrop::NoConnNotSyn);
            }
            self.stats.count_event(FwdEvent::SloppyScheduled);
        }
        if info.ttl <= 1 {
            return self.ttl_expired(pkt, info, Direction::Input, now_ms);
        }
        let CoreLb {
            cfg,
            conns,
            conns6,
            sched,
            snap,
            load,
            global,
            rss,
            ports,
            stats,
            notes,
            ..
        } = self;
        let conns = A::table(conns, conns6);
        let Some(svc) = snap.service(svc_index) else {
            return FwdVerdict::NotService;
        };
        let load_view = SummedLoad {
            global,
            local: load,
        };
        let input = SchedInput {
            src: info.src.ip(),
            sport: info.sport,
            dst: vip,
            dport: info.dport,
            now_ms,
        };
        let mut chosen: Option<&RealServer> = meta
            .and_then(SteerMeta::new_dest)
            .and_then(|d| svc.servers.iter().find(|s| s.id == d));
        let mut template: Option<ConnId> = None;
        if chosen.is_none() {
            if let Some(timeout_s) = svc.config.persistence {
                let netmask = A::persist_netmask(svc.persist_mask());
                let key = match svc.key {
                    // fwmark services: one template per client and mark,
                    // port 0, whatever the packet's address and port (IPVS)
                    ServiceKey::Fwmark { mark, .. } => {
                        PersistKey::for_fwmark(info.src.key(), netmask, mark)
                    }
                    ServiceKey::Addr { .. } => PersistKey::for_service(
                        proto,
                        info.src.key(),
                        netmask,
                        info.dst.key(),
                        svc.key.port(),
                        info.dport,
                    ),
                };
                let created_before = conns.stats().templates_created;
                let skip_quiescent = cfg.expire_quiescent_template;
                let res = conns.template_for(
                    &key,
                    timeout_s,
                    now_ms,
                    // kernel ip_vs_check_template: the server must be
                    // available, and not quiescent with
                    // expire_quiescent_template
                    |d| {
                        svc.servers
                            .iter()
                            .any(|s| s.id == d && !(skip_quiescent && s.weight == 0))
                    },
                    || {
                        let rs = sched.schedule(svc, &load_view, &input)?;
                        let addr = A::real_of(rs.addr, rs.method)
                            .map_or_else(|| A::UNSPECIFIED.key(), |a| a.key());
                        Some((rs.id, Endpoint::new(addr, rs.port)))
                    },
                );
                match res {
                    Ok((t, d)) => {
                        template = Some(t);
                        chosen = svc.servers.iter().find(|s| s.id == d);
                        if conns.stats().templates_created != created_before {
                            if let Some(tc) = conns.get(t) {
                                let note = A::template_note(Template {
                                    key,
                                    dest: d,
                                    real: tc.real(),
                                    timeout_s,
                                });
                                if notes.len() < TEMPLATE_NOTES_MAX {
                                    notes.push(note);
                                } else {
                                    stats.count_event(FwdEvent::TemplateNoteLost);
                                }
                            }
                        }
                    }
                    Err(PersistError::NoDest) => return FwdVerdict::Drop(FwdDrop::NoDest),
                    Err(PersistError::Table(e)) => return FwdVerdict::Drop(insert_error(e)),
                }
            } else {
                chosen = sched.schedule(svc, &load_view, &input);
            }
        }
        let Some(rs) = chosen else {
            return FwdVerdict::Drop(FwdDrop::NoDest);
        };
        let Some(rip) = A::real_of(rs.addr, rs.method) else {
            // IPv4 to an IPv6 tunnel server: a connection of the IPv6 table
            let (IpAddr::V6(rip6), FwdMethod::Tunnel, Some(info4)) =
                (rs.addr, rs.method, A::v4(info))
            else {
                return FwdVerdict::Drop(FwdDrop::UnsupportedDest);
            };
            let mapped = mapped_v4(info4);
            let rport = if rs.port == 0 { info.dport } else { rs.port };
            let one_packet = svc.config.one_packet && proto == Protocol::Udp;
            let (dest, svc_slot) = (rs.id, svc.slot);
            return self.tun_4in6_new(
                pkt,
                &mapped,
                proto,
                (rip6, rport),
                (dest, svc_slot),
                one_packet,
                now_ms,
            );
        };
        let rport = if rs.port == 0 { info.dport } else { rs.port };
        let method = rs.method;
        let (dest, svc_slot) = (rs.id, svc.slot);
        let client = Endpoint::new(info.src.key(), info.sport);
        let virt = Endpoint::new(info.dst.key(), info.dport);
        let real = Endpoint::new(rip.key(), rport);

        // FULLNAT: a local endpoint whose reply tuple this core owns.
        let mut local = None;
        let mut reply_hash = None;
        if method == FwdMethod::FullNat {
            let addrs = &svc.config.local_addresses;
            if !addrs.iter().any(|&a| A::local_of(a, rip).is_some()) {
                return FwdVerdict::Drop(FwdDrop::NoLocalAddress);
            }
            let owner = rss.as_deref().map(|r| (r, cfg.core));
            let got = ports.alloc(addrs, rip, rport, owner, |lip: A, lport| {
                let reply = Tuple {
                    proto,
                    src: real,
                    dst: Endpoint::new(lip.key(), lport),
                };
                // kept for the insert: the allocator takes the candidate
                // its last check found free
                let h = conns.key_hash(&reply);
                reply_hash = Some(h);
                conns.peek_hashed(&reply, h).is_some()
            });
            let Some((lip, lport)) = got else {
                return FwdVerdict::Drop(FwdDrop::NoLocalPort);
            };
            local = Some(Endpoint::new(lip.key(), lport));
        }

        // -o: every datagram on its own, nothing kept (replies of NAT and
        // FULLNAT one-packet flows are not translated, as in the kernel).
        if svc.config.one_packet && proto == Protocol::Udp {
            if local.is_some() {
                ports.released(1);
            }
            stats.add_conn(dest, svc_slot);
            stats.add_in(dest, svc_slot, info.ip_len() as u64);
            stats.count_event(FwdEvent::OnePacket);
            let flow = Flow::<A>::new(method, client, virt, local, real);
            let v = self.rewrite_flow(pkt, info, &flow, Direction::Input);
            if self.frag_pending.is_some() {
                self.note_fragment(info, &flow, Direction::Input, dest, svc_slot, v, now_ms);
            }
            return v;
        }

        // NAT on several cores: the connection lives where its replies land.
        if method == FwdMethod::Masq && meta.is_none() {
            if let Some(rss) = rss.as_deref() {
                let owner = A::owner(rss, rip, info.src, rport, info.sport);
                if owner != cfg.core {
                    let nc = NewConn {
                        proto,
                        client,
                        virt,
                        local: None,
                        real,
                        dest: REDIRECT_DEST,
                        fwd: FwdMethod::Route,
                        one_packet: false,
                        template,
                    };
                    // made in the state its packet gives it (update_state:
                    // the packet is steered, not counted in in_pkts)
                    let first = FirstPacket {
                        tcp_flags: info.tcp_flags,
                        forwarded: false,
                    };
                    if let Err(e) = conns.insert_first(&nc, now_ms, KnownFree::default(), first) {
                        return FwdVerdict::Drop(insert_error(e));
                    }
                    stats.count_event(FwdEvent::RedirectCreated);
                    stats.count_event(FwdEvent::SteeredOut);
                    return FwdVerdict::Steer {
                        core: owner,
                        meta: SteerMeta::new_conn(dest),
                    };
                }
            }
        }

        let nc = NewConn {
            proto,
            client,
            virt,
            local,
            real,
            dest,
            fwd: method,
            one_packet: false,
            template,
        };
        // The request key missed in handle_l4 (or its entry was just
        // removed) and only a persistence template may have been added
        // since; a FULLNAT local port was taken because its reply key was
        // free: insert need not look those up again.
        let free = KnownFree {
            request: template.is_none(),
            reply: local.is_some(),
            reply_hash,
        };
        // The entry is made in the state its packet gives it (one visit
        // instead of insert then update_state), except for a SYN proxy's
        // cookie ACK: that packet becomes the server's SYN first.
        let first = acked.is_none().then_some(FirstPacket {
            tcp_flags: info.tcp_flags,
            forwarded: true,
        });
        let id = match insert_reusing(conns, stats, &nc, now_ms, free, first) {
            Ok(id) => id,
            Err(e) => return FwdVerdict::Drop(insert_error(e)),
        };
        stats.add_conn(dest, svc_slot);
        if let Some(a) = acked {
            let Some(c) = conns.get(id).copied() else {
                return FwdVerdict::Drop(FwdDrop::TableFull);
            };
            if let (Some(info4), Some(c4)) = (A::v4(info), A::v4_conn(&c)) {
                let c4 = *c4;
                return self.synproxy_open(pkt, info4, id, &c4, &a, now_ms);
            }
            // (not reached: the SYN proxy speaks IPv4 only)
            return self.forward_conn(pkt, info, id, &c, Direction::Input, now_ms);
        }
        // What forward_conn does after update_state: its TTL check was
        // made before the insert, and a connection this fresh is not
        // proxied (the proxy table names connections by handle, and this
        // handle's generation never had an entry before). The entry holds
        // what `nc` said: its flow is built from the same endpoints (as the
        // one-packet path builds it) instead of being read back.
        let flow = Flow::<A>::new(method, client, virt, local, real);
        self.forward_classified(pkt, info, id, dest, &flow, Direction::Input, now_ms)
    }

    /// A packet to a synproxy service without a connection: a SYN is
    /// answered with a cookie (`Ok(None)`: send it back to the client); an
    /// ACK with a valid cookie may open a connection (`Ok(Some)`).
    fn synproxy_new<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo,
        syn: bool,
        meta: Option<SteerMeta>,
        now_ms: u64,
    ) -> Result<Option<AckedCookie>, FwdDrop> {
        if syn {
            if info.tcp_flags & tcp_flags::ACK != 0 || info.first_fragment {
                return Err(FwdDrop::SynproxyUnexpected);
            }
            let mss = self.cfg.mtu.saturating_sub(40).max(536);
            synproxy::answer_syn(pkt, info, &self.cookie_key, now_ms, mss).map_err(proxy_drop)?;
            self.stats.count_event(FwdEvent::SynproxyCookieSent);
            return Ok(None);
        }
        match synproxy::check_ack(pkt.data(), info, &self.cookie_key, now_ms) {
            Ok(a) => {
                // a steered ACK was counted on the core that steered it
                if meta.is_none() {
                    self.stats.count_event(FwdEvent::SynproxyAckValid);
                }
                Ok(Some(a))
            }
            Err(ProxyDrop::Unexpected) => Err(if meta.is_some_and(|m| m.is_existing()) {
                FwdDrop::SteeredNoConn
            } else {
                FwdDrop::NoConnNotSyn
            }),
            Err(e) => Err(proxy_drop(e)),
        }
    }

    /// A connection was just made from a cookie ACK: send the real server
    /// its SYN (the ACK rewritten), and remember the handshake.
    fn synproxy_open<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo,
        id: ConnId,
        c: &Conn<u32>,
        a: &AckedCookie,
        now_ms: u64,
    ) -> FwdVerdict {
        let cap = self.conns.capacity();
        self.proxied.ensure(cap);
        // data in the cookie ACK itself (its pure ACK was lost, say): held
        // like early data, as the packet becomes the server's SYN
        let mut held = NO_HELD;
        if a.payload > 0 {
            let ip = pkt.data().get(info.l3..info.end).unwrap_or(&[]);
            let conns = &self.conns;
            match self.proxied.hold(id, ip, |o| conns.get(o).is_some()) {
                Some(slot) => {
                    held = slot;
                    self.stats.count_event(FwdEvent::SynproxyDataHeld);
                }
                None => self.stats.count_event(FwdEvent::SynproxyAckData),
            }
        }
        let syn_info = if synproxy::ack_to_syn(pkt, info, a) {
            fwd::classify(pkt.data()).ok().flatten()
        } else {
            None
        };
        let Some(syn_info) = syn_info else {
            self.proxied.held.release(held, id);
            self.conns.remove(id);
            return FwdVerdict::Drop(FwdDrop::NoRoom);
        };
        let v = self.forward_conn(pkt, &syn_info, id, c, Direction::Input, now_ms);
        if matches!(v, FwdVerdict::Forward { .. }) {
            let p = synproxy::Proxied {
                held,
                ..synproxy::new_proxied(a)
            };
            self.proxied.insert(cap, id, p);
        } else {
            self.proxied.held.release(held, id);
        }
        v
    }

    /// The server's SYN-ACK just arrived and the client's first data
    /// segment is held: send that segment (its acknowledgement completes
    /// the server's handshake) in place of the SYN-ACK. `None` if the slot
    /// was lost or the buffer has no room (the caller sends the bare ACK).
    fn synproxy_release_held<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo,
        id: ConnId,
        c: &Conn<u32>,
        slot: u16,
        now_ms: u64,
    ) -> Option<FwdVerdict> {
        let restored = match self.proxied.held.get(slot, id) {
            Some(ip) => synproxy::restore_held(pkt, info.l3, ip),
            None => false,
        };
        self.proxied.held.release(slot, id);
        if !restored {
            return None;
        }
        let data_info = fwd::classify(pkt.data()).ok().flatten()?;
        let p = *self.proxied.get_mut(id)?;
        synproxy::adjust_client(
            pkt.data_mut(),
            &data_info,
            p.delta,
            synproxy::client_ts_delta(&p),
        );
        self.stats.count_event(FwdEvent::SynproxySeqAdjusted);
        self.conns
            .update_state(id, Direction::Input, data_info.tcp_flags, now_ms);
        let slot_of = self.dest_svc_slot(c.dest());
        self.stats
            .add_in(c.dest(), slot_of, data_info.ip_len() as u64);
        Some(self.rewrite_flow(pkt, &data_info, &Flow::of(c), Direction::Input))
    }

    /// A packet of a proxied connection: the server's SYN-ACK is answered
    /// here (`Some`), early client data dropped (`Some`); otherwise the
    /// sequence numbers are shifted and forwarding goes on (`None`).
    fn synproxy_packet<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo,
        id: ConnId,
        c: &Conn<u32>,
        dir: Direction,
        now_ms: u64,
    ) -> Option<FwdVerdict> {
        let flags = info.tcp_flags;
        let p = self.proxied.get_mut(id)?;
        if p.phase == Phase::Established && flags & tcp_flags::SYN == 0 {
            // the common case, every packet of the connection: no copy
            match dir {
                Direction::Input => synproxy::adjust_client(
                    pkt.data_mut(),
                    info,
                    p.delta,
                    synproxy::client_ts_delta(p),
                ),
                Direction::Output => synproxy::adjust_server(pkt.data_mut(), info, p),
            }
            self.stats.count_event(FwdEvent::SynproxySeqAdjusted);
            return None;
        }
        let mut st = *p;
        let synack = flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST)
            == tcp_flags::SYN | tcp_flags::ACK;
        let verdict = match (st.phase, dir) {
            (_, Direction::Input) if flags & tcp_flags::SYN != 0 => {
                Some(FwdVerdict::Drop(FwdDrop::SynproxyUnexpected))
            }
            (Phase::WaitServer, Direction::Input) if flags & tcp_flags::RST != 0 => None,
            (Phase::WaitServer, Direction::Input) => {
                let first_data = st.held == NO_HELD && synproxy::payload_len(pkt.data(), info) > 0;
                let ip = pkt.data().get(info.l3..info.end).unwrap_or(&[]);
                let conns = &self.conns;
                if first_data
                    && self
                        .proxied
                        .hold(id, ip, |o| conns.get(o).is_some())
                        .is_some()
                {
                    self.stats.count_event(FwdEvent::SynproxyDataHeld);
                    return Some(FwdVerdict::Held);
                }
                Some(FwdVerdict::Drop(FwdDrop::SynproxyNotReady))
            }
            (_, Direction::Output) if synack => {
                let first = st.phase == Phase::WaitServer;
                if !synproxy::accept_synack(pkt.data(), info, &mut st) {
                    return Some(FwdVerdict::Drop(FwdDrop::SynproxyUnexpected));
                }
                let held = std::mem::replace(&mut st.held, NO_HELD);
                if let Some(p) = self.proxied.get_mut(id) {
                    *p = st;
                }
                self.conns
                    .update_state(id, Direction::Output, flags, now_ms);
                self.stats.count_event(FwdEvent::SynproxyServerSynAck);
                if first && held != NO_HELD {
                    if let Some(v) = self.synproxy_release_held(pkt, info, id, c, held, now_ms) {
                        return Some(v);
                    }
                }
                if !synproxy::ack_to_server(pkt, info, &st) {
                    return Some(FwdVerdict::Drop(FwdDrop::NoRoom));
                }
                self.conns
                    .update_state(id, Direction::Input, tcp_flags::ACK, now_ms);
                Some(FwdVerdict::Forward {
                    next_hop: IpAddr::V4(ep::<Ipv4Addr>(c.real()).0),
                })
            }
            (Phase::WaitServer, Direction::Output) if flags & tcp_flags::RST != 0 => {
                synproxy::adjust_server(pkt.data_mut(), info, &st);
                None
            }
            (Phase::WaitServer, Direction::Output) => {
                Some(FwdVerdict::Drop(FwdDrop::SynproxyUnexpected))
            }
            (Phase::Established, Direction::Input) => {
                synproxy::adjust_client(
                    pkt.data_mut(),
                    info,
                    st.delta,
                    synproxy::client_ts_delta(&st),
                );
                self.stats.count_event(FwdEvent::SynproxySeqAdjusted);
                None
            }
            (Phase::Established, Direction::Output) => {
                synproxy::adjust_server(pkt.data_mut(), info, &st);
                self.stats.count_event(FwdEvent::SynproxySeqAdjusted);
                None
            }
        };
        if let Some(p) = self.proxied.get_mut(id) {
            *p = st;
        }
        verdict
    }

    /// A packet of connection `id` seen in `dir`: TTL, state (restarting
    /// the timer), counters, rewrite.
    fn forward_conn<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        id: ConnId,
        c: &Conn<A::Key>,
        dir: Direction,
        now_ms: u64,
    ) -> FwdVerdict {
        if info.ttl <= 1 {
            // the kernel restarts the timer after any transmit attempt
            self.table::<A>().refresh(id, now_ms);
            return self.ttl_expired(pkt, info, dir, now_ms);
        }
        if self.proxied.in_use() {
            // (IPv6 connections are never proxied)
            if let (Some(info4), Some(c4)) = (A::v4(info), A::v4_conn(c)) {
                if let Some(v) = self.synproxy_packet(pkt, info4, id, c4, dir, now_ms) {
                    return v;
                }
            }
        }
        // kernel in_pkts (Input): drop_entry spares busy connections
        self.table::<A>()
            .update_state_forwarded(id, dir, info.tcp_flags, now_ms);
        self.forward_classified(pkt, info, id, c.dest(), &Flow::of(c), dir, now_ms)
    }

    /// [`CoreLb::forward_conn`] once the packet has been classified
    /// (state, timer, `in_pkts`): sync, counters, rewrite; `dest` and
    /// `flow` are the connection's.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward_classified<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        id: ConnId,
        dest: DestId,
        flow: &Flow<A>,
        dir: Direction,
        now_ms: u64,
    ) -> FwdVerdict {
        if dir == Direction::Input && self.sync_master {
            if A::IS_V6 {
                self.feed_sync6(id, now_ms);
            } else {
                self.feed_sync(id, now_ms);
            }
        }
        let slot = self.dest_svc_slot(dest);
        let bytes = info.ip_len() as u64;
        match dir {
            Direction::Input => self.stats.add_in(dest, slot, bytes),
            Direction::Output => self.stats.add_out(dest, slot, bytes),
        }
        let v = self.rewrite_flow(pkt, info, flow, dir);
        if self.frag_pending.is_some() {
            self.note_fragment(info, flow, dir, dest, slot, v, now_ms);
        }
        v
    }

    /// A packet with TTL ≤ 1: requests get ICMP time exceeded back (as the
    /// kernel's `decrement_ttl`) within the ICMP rate limits, replies are
    /// dropped.
    fn ttl_expired<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        dir: Direction,
        now_ms: u64,
    ) -> FwdVerdict {
        if dir != Direction::Input {
            return FwdVerdict::Drop(FwdDrop::TtlExpired);
        }
        let limited = match self.icmp_limit.allow(
            crate::wire::icmp::TYPE_TIME_EXCEEDED,
            0,
            info.src.limit_key(),
            now_ms,
        ) {
            IcmpVerdict::Send => None,
            IcmpVerdict::LimitedGlobal => Some(FwdEvent::IcmpRateLimitedGlobal),
            IcmpVerdict::LimitedHost => Some(FwdEvent::IcmpRateLimitedHost),
        };
        if let Some(e) = limited {
            self.stats.count_event(e);
            return FwdVerdict::Drop(FwdDrop::TtlExpired);
        }
        if A::time_exceeded(pkt, info) {
            self.stats.count_drop(FwdDrop::TtlExpired);
            self.stats.count_event(FwdEvent::TimeExceededSent);
            return FwdVerdict::Forward {
                next_hop: info.src.ip(),
            };
        }
        FwdVerdict::Drop(FwdDrop::TtlExpired)
    }

    /// Apply the method's rewrite for `dir`.
    fn rewrite_flow<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        f: &Flow<A>,
        dir: Direction,
    ) -> FwdVerdict {
        // a NIC cannot checksum a fragment: those keep the software update;
        // so do IPv6 packets (the data plane prepares IPv4 offloads only)
        let csum = if info.first_fragment || A::IS_V6 {
            L4Csum::Update
        } else {
            self.cfg.l4_csum
        };
        match (f.fwd, dir) {
            // (the fwd:: helpers of IPv4, spelled out for both families)
            (FwdMethod::Masq, Direction::Input) => {
                let src = (info.src, info.sport);
                A::rewrite(pkt.data_mut(), info, src, f.real, true, csum);
                FwdVerdict::Forward {
                    next_hop: f.real.0.ip(),
                }
            }
            (FwdMethod::Masq, Direction::Output) => {
                let dst = (info.dst, info.dport);
                A::rewrite(pkt.data_mut(), info, f.virt, dst, true, csum);
                FwdVerdict::Forward {
                    next_hop: f.client.0.ip(),
                }
            }
            (FwdMethod::FullNat, Direction::Input) => {
                if let Some(ok) = A::nat64(pkt, info, f.local, f.real, csum, self.tun_ident) {
                    self.tun_ident = self.tun_ident.wrapping_add(1);
                    return self.nat64_verdict(ok, f.real.0);
                }
                A::rewrite(pkt.data_mut(), info, f.local, f.real, true, csum);
                FwdVerdict::Forward {
                    next_hop: f.real.0.ip(),
                }
            }
            (FwdMethod::FullNat, Direction::Output) => {
                if let Some(ok) = A::nat64(pkt, info, f.virt, f.client, csum, 0) {
                    return self.nat64_verdict(ok, f.client.0);
                }
                A::rewrite(pkt.data_mut(), info, f.virt, f.client, true, csum);
                FwdVerdict::Forward {
                    next_hop: f.client.0.ip(),
                }
            }
            (FwdMethod::Route, Direction::Input) => {
                let (src, dst) = ((info.src, info.sport), (info.dst, info.dport));
                A::rewrite(pkt.data_mut(), info, src, dst, true, L4Csum::Skip);
                FwdVerdict::Forward {
                    next_hop: f.real.0.ip(),
                }
            }
            (FwdMethod::Tunnel, Direction::Input) => self.tunnel(pkt, info, f.real.0),
            // DR and TUN connections have no reply key.
            (FwdMethod::Route | FwdMethod::Tunnel, Direction::Output) => FwdVerdict::NotService,
        }
    }

    /// A new connection of an IPv4 client to an IPv6 tunnel server (the
    /// packet described in IPv4-mapped form): kept in the IPv6 table
    /// (without its persistence template's link: that lives in the IPv4
    /// table) and tunnelled IPv4-in-IPv6.
    #[allow(clippy::too_many_arguments)]
    fn tun_4in6_new<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        mapped: &PacketInfo<Ipv6Addr>,
        proto: Protocol,
        real: (Ipv6Addr, u16),
        (dest, svc_slot): (DestId, u32),
        one_packet: bool,
        now_ms: u64,
    ) -> FwdVerdict {
        let client = Endpoint::new(mapped.src.key(), mapped.sport);
        let virt = Endpoint::new(mapped.dst.key(), mapped.dport);
        let real = Endpoint::new(real.0.key(), real.1);
        if one_packet {
            self.stats.add_conn(dest, svc_slot);
            self.stats.add_in(dest, svc_slot, mapped.ip_len() as u64);
            self.stats.count_event(FwdEvent::OnePacket);
            let flow = Flow {
                fwd: FwdMethod::Tunnel,
                client: ep(client),
                virt: ep(virt),
                local: (Ipv6Addr::UNSPECIFIED, 0),
                real: ep(real),
            };
            self.frag_pending = None;
            return self.rewrite_flow(pkt, mapped, &flow, Direction::Input);
        }
        let nc = NewConn {
            proto,
            client,
            virt,
            local: None,
            real,
            dest,
            fwd: FwdMethod::Tunnel,
            one_packet: false,
            template: None,
        };
        let id = match insert_reusing(
            &mut self.conns6,
            &self.stats,
            &nc,
            now_ms,
            KnownFree::default(),
            None,
        ) {
            Ok(id) => id,
            Err(e) => return FwdVerdict::Drop(insert_error(e)),
        };
        self.stats.add_conn(dest, svc_slot);
        let Some(c) = self.conns6.get(id).copied() else {
            return FwdVerdict::Drop(FwdDrop::TableFull);
        };
        self.forward_conn(pkt, mapped, id, &c, Direction::Input, now_ms)
    }

    fn nat64_verdict<A: Family>(&self, translated: bool, to: A) -> FwdVerdict {
        if translated {
            FwdVerdict::Forward {
                next_hop: to.next_hop(),
            }
        } else {
            FwdVerdict::Drop(FwdDrop::Nat64Untranslatable)
        }
    }

    /// An IPv4 TCP/UDP packet for no service while NAT64 services exist:
    /// a reply of a NAT64 connection (RIP → LIP, held in the IPv6 table in
    /// IPv4-mapped form) is forwarded as such a connection's replies are;
    /// anything else is not for a service.
    #[inline(never)]
    fn nat64_reply<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<Ipv4Addr>,
        now_ms: u64,
    ) -> FwdVerdict {
        let mapped = mapped_v4(info);
        let tuple = tcp_udp_tuple(
            info.proto,
            (mapped.src, info.sport),
            (mapped.dst, info.dport),
        );
        let Some((id, Direction::Output)) = self.conns6.peek(&tuple) else {
            return FwdVerdict::NotService;
        };
        let Some(c) = self.conns6.get(id).copied() else {
            return FwdVerdict::NotService;
        };
        if info.first_fragment {
            return FwdVerdict::Drop(FwdDrop::Nat64Untranslatable);
        }
        self.forward_conn(pkt, &mapped, id, &c, Direction::Output, now_ms)
    }

    /// An IPv4 ICMP error that is about no IPv4 connection while NAT64
    /// services exist: if it quotes a NAT64 connection's IPv4 request
    /// (LIP → RIP), it goes to the client as ICMPv6 ([`nat64::icmp_4to6`]).
    #[inline(never)]
    fn nat64_icmp4<P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<Ipv4Addr>,
        q: &IcmpQuote<Ipv4Addr>,
    ) -> FwdVerdict {
        if q.tunnel.is_some() {
            return FwdVerdict::NotService;
        }
        let (qsrc, qdst) = (q.src.to_ipv6_mapped(), q.dst.to_ipv6_mapped());
        let tuple = tcp_udp_tuple(q.proto, (qdst, q.dport), (qsrc, q.sport));
        let Some((id, Direction::Output)) = self.conns6.peek(&tuple) else {
            return FwdVerdict::NotService;
        };
        let Some(c) = self.conns6.get(id).copied() else {
            return FwdVerdict::NotService;
        };
        let f = Flow::<Ipv6Addr>::of(&c);
        if c.fwd() != FwdMethod::FullNat || !f.real.0.is_mapped_v4() {
            return FwdVerdict::NotService;
        }
        if !fwd::icmp_checksum_ok(pkt.data(), info) {
            return FwdVerdict::Drop(FwdDrop::BadIcmpChecksum);
        }
        if info.ttl <= 1 {
            return FwdVerdict::Drop(FwdDrop::TtlExpired);
        }
        let bytes = info.ip_len() as u64;
        if !nat64::icmp_4to6(pkt, info, q, (f.virt.0, f.client.0), f.client, f.virt) {
            return FwdVerdict::Drop(FwdDrop::Nat64Untranslatable);
        }
        let (dest, slot) = (c.dest(), self.dest_svc_slot(c.dest()));
        self.stats.add_out(dest, slot, bytes);
        self.stats.count_event(FwdEvent::IcmpForwarded);
        FwdVerdict::Forward {
            next_hop: IpAddr::V6(f.client.0),
        }
    }

    /// TUN toward `rip` (IPv4-in-IPv4, IPv6-in-IPv6, or IPv6-in-IPv4 for
    /// an IPv4-mapped `rip`); too big with DF (always, for IPv6): the
    /// frag-needed / Packet Too Big goes back to the client instead.
    fn tunnel<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        rip: A,
    ) -> FwdVerdict {
        let mtu = self.cfg.mtu;
        let (src4, src6) = (self.cfg.tun_source, self.cfg.tun_source6);
        match A::tunnel(pkt, info, src4, src6, rip, mtu, self.tun_ident) {
            Ok(()) => {
                self.tun_ident = self.tun_ident.wrapping_add(1);
                FwdVerdict::Forward {
                    next_hop: rip.next_hop(),
                }
            }
            Err((TunError::FragNeeded, overhead)) => {
                if info.proto != A::ICMP_PROTO && A::too_big(pkt, info, mtu, overhead) {
                    self.stats.count_event(FwdEvent::FragNeededSent);
                    FwdVerdict::Forward {
                        next_hop: info.src.ip(),
                    }
                } else {
                    FwdVerdict::Drop(FwdDrop::TooBigNoDf)
                }
            }
            Err((TunError::TooBig, _)) => FwdVerdict::Drop(FwdDrop::TooBigNoDf),
            Err((TunError::NoHeadroom, _)) => FwdVerdict::Drop(FwdDrop::NoRoom),
        }
    }

    /// An ICMP error quoting TCP/UDP: find the connection from the quoted
    /// packet's reverse tuple (IPVS `ip_vs_in_icmp` / `ip_vs_out_icmp`) and
    /// translate toward the other side.
    fn handle_icmp_error<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        q: &IcmpQuote<A>,
        meta: Option<SteerMeta>,
    ) -> FwdVerdict {
        if let Some((outer_src, outer_dst)) = q.tunnel {
            return self.handle_tunnel_icmp(pkt, info, q, outer_src, outer_dst);
        }
        let tuple = tcp_udp_tuple(q.proto, (q.dst, q.dport), (q.src, q.sport));
        // Like the kernel, an ICMP error does not refresh the connection.
        let Some((id, dir)) = self.table::<A>().peek(&tuple) else {
            // an IPv4 error about a NAT64 connection's IPv4 side?
            if self.nat64 {
                if let (Some(i4), Some(q4)) = (A::v4(info), A::v4_quote(q)) {
                    let (i4, q4) = (*i4, *q4);
                    return self.nat64_icmp4(pkt, &i4, &q4);
                }
            }
            return FwdVerdict::NotService;
        };
        let Some(c) = self.table::<A>().get(id).copied() else {
            return FwdVerdict::NotService;
        };
        if is_redirect(&c) {
            if meta.is_some() {
                return FwdVerdict::NotService;
            }
            self.stats.count_event(FwdEvent::SteeredOut);
            return FwdVerdict::Steer {
                core: self.reply_owner::<A>(&c),
                meta: SteerMeta::existing(),
            };
        }
        if !A::icmp_checksum_ok(pkt.data(), info) {
            return FwdVerdict::Drop(FwdDrop::BadIcmpChecksum);
        }
        if info.ttl <= 1 {
            return FwdVerdict::Drop(FwdDrop::TtlExpired);
        }
        let f = Flow::<A>::of(&c);
        let (dest, slot) = (c.dest(), self.dest_svc_slot(c.dest()));
        let bytes = info.ip_len() as u64;
        let (t, next_hop) = match (f.fwd, dir) {
            // From the real server's side about a request we forwarded.
            (FwdMethod::Masq, Direction::Output) => (
                IcmpTranslation {
                    outer_src: f.virt.0,
                    outer_dst: info.dst,
                    quote_src: (q.src, q.sport),
                    quote_dst: f.virt,
                },
                info.dst,
            ),
            (FwdMethod::FullNat, Direction::Output) => (
                IcmpTranslation {
                    outer_src: f.virt.0,
                    outer_dst: f.client.0,
                    quote_src: f.client,
                    quote_dst: f.virt,
                },
                f.client.0,
            ),
            // From the client's side about a reply we sent.
            (FwdMethod::Masq, Direction::Input) => (
                IcmpTranslation {
                    outer_src: info.src,
                    outer_dst: f.real.0,
                    quote_src: f.real,
                    quote_dst: (q.dst, q.dport),
                },
                f.real.0,
            ),
            (FwdMethod::FullNat, Direction::Input) => (
                IcmpTranslation {
                    outer_src: f.local.0,
                    outer_dst: f.real.0,
                    quote_src: f.real,
                    quote_dst: f.local,
                },
                f.real.0,
            ),
            // DR/TUN: forwarded like the connection's packets.
            (FwdMethod::Route, Direction::Input) => {
                self.stats.add_in(dest, slot, bytes);
                self.stats.count_event(FwdEvent::IcmpForwarded);
                let (src, dst) = ((info.src, info.sport), (info.dst, info.dport));
                A::rewrite(pkt.data_mut(), info, src, dst, true, L4Csum::Skip);
                return FwdVerdict::Forward {
                    next_hop: f.real.0.ip(),
                };
            }
            (FwdMethod::Tunnel, Direction::Input) => {
                self.stats.add_in(dest, slot, bytes);
                self.stats.count_event(FwdEvent::IcmpForwarded);
                return self.tunnel(pkt, info, f.real.0);
            }
            (FwdMethod::Route | FwdMethod::Tunnel, Direction::Output) => {
                return FwdVerdict::NotService
            }
        };
        if f.real.0.is_mapped_v4() {
            // NAT64: an ICMPv6 error from the client's side becomes ICMPv4
            // for the server (its IPv4 errors: CoreLb::nat64_icmp4)
            let outer = (t.outer_src, t.outer_dst);
            if dir != Direction::Input
                || !A::nat64_icmp(pkt, info, q, outer, t.quote_src, t.quote_dst)
            {
                return FwdVerdict::Drop(FwdDrop::Nat64Untranslatable);
            }
            self.stats.add_in(dest, slot, bytes);
            self.stats.count_event(FwdEvent::IcmpForwarded);
            return FwdVerdict::Forward {
                next_hop: next_hop.ip(),
            };
        }
        match dir {
            Direction::Input => self.stats.add_in(dest, slot, bytes),
            Direction::Output => self.stats.add_out(dest, slot, bytes),
        }
        self.stats.count_event(FwdEvent::IcmpForwarded);
        A::translate_icmp_error(pkt.data_mut(), info, q, &t);
        FwdVerdict::Forward {
            next_hop: next_hop.ip(),
        }
    }

    /// An ICMP error about one of our TUN packets (quoted IPIP from
    /// `tun_source` to the real server): relay it to the client about the
    /// packet inside, as the kernel does; a frag-needed advertises the
    /// reported MTU minus the 20 bytes of the outer header, so the client
    /// lowers its path MTU enough for the tunnel.
    fn handle_tunnel_icmp<A: Family, P: PacketBuf>(
        &mut self,
        pkt: &mut P,
        info: &PacketInfo<A>,
        q: &IcmpQuote<A>,
        outer_src: A,
        outer_dst: A,
    ) -> FwdVerdict {
        if outer_src != A::tun_source(self.cfg.tun_source, self.cfg.tun_source6) {
            return FwdVerdict::NotService;
        }
        // The quoted inner packet is the client's request as it was.
        let tuple = tcp_udp_tuple(q.proto, (q.src, q.sport), (q.dst, q.dport));
        let Some((id, Direction::Input)) = self.table::<A>().peek(&tuple) else {
            return FwdVerdict::NotService;
        };
        let Some(c) = self.table::<A>().get(id).copied() else {
            return FwdVerdict::NotService;
        };
        if c.fwd() != FwdMethod::Tunnel || ep::<A>(c.real()).0 != outer_dst {
            return FwdVerdict::NotService;
        }
        if !A::icmp_checksum_ok(pkt.data(), info) {
            return FwdVerdict::Drop(FwdDrop::BadIcmpChecksum);
        }
        let rest = A::tunnel_icmp_rest(pkt.data(), info, q);
        let (client, virt) = (q.src, q.dst);
        if !A::relay_tunnel_icmp(pkt, info, q, rest, virt, client) {
            return FwdVerdict::Drop(FwdDrop::NoRoom);
        }
        self.stats
            .add_out(c.dest(), self.dest_svc_slot(c.dest()), info.ip_len() as u64);
        self.stats.count_event(FwdEvent::IcmpForwarded);
        FwdVerdict::Forward {
            next_hop: client.ip(),
        }
    }
}

mod burst6;
mod sync;
pub use sync::{SyncFlush, SyncInstalled, SyncRefused, SYNC_RECORDS_MAX};

#[cfg(test)]
mod defense_tests;
#[cfg(test)]
mod sloppy_tests;
#[cfg(test)]
mod sync6_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod synproxy_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod v6_tests;
