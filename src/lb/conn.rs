//! Per-core connection table: slab of fixed capacity, one open-addressing
//! index for both directions, timer wheel for expiry, IPVS state machine and
//! per-server load counting.
//!
//! Each worker owns one [`ConnTable`] (single-threaded, no locks, no atomic
//! read-modify-write). Layout, for IPv4:
//!
//! - **Slab**: one 64-byte, cache-line aligned [`Conn`] per connection,
//!   allocated at construction; free entries are chained through their unused
//!   timer link. Full means [`ConnError::TableFull`], never growth.
//! - **Index**: 8-byte slots (32-bit hash, slab index, direction bit), at least
//!   3.5 slots per connection, so the load stays at or below 0.57 even when
//!   every connection has both directions indexed. Request keys are
//!   `(proto, client, vip)`; reply keys `(proto, real server, client)` for NAT
//!   and `(proto, real server, local)` for FULLNAT. DR and TUN connections have
//!   no reply key: their replies never reach the director, and skipping the key
//!   avoids spurious conflicts between two VIPs sharing a real server.
//!   One-packet (`-o`) connections are not indexed at all, as in the kernel:
//!   every datagram is scheduled afresh.
//! - **Timer wheel** ([`crate::lb::timer`]), linked through the entries.
//!
//! Memory per IPv4 connection: 64 bytes of entry plus at most 56 of index
//! (below 120 in total); IPv6 entries take two cache lines (128 bytes).
//! Large slabs and indexes are advised for transparent huge pages, and
//! [`ConnTable::lookup_batch`] resolves a burst with its cache misses
//! overlapped: at a million connections a lookup is memory bound.
//!
//! Persistence templates (see [`crate::lb::persist`]) live in the same slab,
//! index and wheel, flagged as templates, as the kernel does with
//! `IP_VS_CONN_F_TEMPLATE`: they share the capacity, cost no second
//! structure, and a connection refers to its template by slab index.

mod drop;
pub(crate) mod index;

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::lb::defense::SECURE_HALFOPEN_TIMEOUT_S;
use crate::lb::load::{CoreLoad, DestId};
use crate::lb::tcp_state::{
    next_state, StateDir, TcpState, Timeouts, INITIAL_TIMEOUT_S, MAX_TIMEOUT_S, UDP_STATE_NAME,
};
use crate::lb::timer::{TimerLink, TimerNodes, TimerWheel};
use crate::lb::types::{FwdMethod, Protocol};
use index::Index;

/// Largest capacity of one table.
pub const MAX_CAPACITY: usize = 1 << 28;

/// Slot value bit marking a reply-direction key.
const REPLY_BIT: u32 = 0x8000_0000;
/// No slab entry.
const NIL: u32 = u32::MAX;

/// Tuples [`ConnTable::peek_group`] looks up together (the director's
/// burst fits in one group).
pub const PEEK_GROUP: usize = 32;

/// IP protocol number stored for fwmark templates (`IPPROTO_IP`).
pub(crate) const PROTO_IP: u8 = 0;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

// Entry flags.
pub(crate) const F_LIVE: u8 = 1;
pub(crate) const F_TEMPLATE: u8 = 1 << 1;
/// Counted in InActConn (else ActiveConn).
const F_INACTIVE: u8 = 1 << 2;
/// No reply seen yet and the method never shows replies: INPUT-ONLY table.
const F_NO_OUTPUT: u8 = 1 << 3;
const F_ONE_PACKET: u8 = 1 << 4;
/// Template whose connection reached ESTABLISHED (TCP) or saw a reply (UDP).
pub(crate) const F_ASSURED: u8 = 1 << 5;
/// Request key is in the index (not for one-packet conns, invalidated templates).
pub(crate) const F_REQ_INDEXED: u8 = 1 << 6;
const F_REPLY_INDEXED: u8 = 1 << 7;

/// An IP address usable as a table key: `u32` for IPv4, `u128` for IPv6
/// (as produced by `u32::from(Ipv4Addr)` / `u128::from(Ipv6Addr)`).
pub trait Addr: Copy + Eq + Default + fmt::Debug + 'static {
    /// Bitwise AND (persistence netmask).
    fn mask(self, netmask: Self) -> Self;
    /// A netmask of `len` leading one bits (saturating at the address width).
    fn prefix_mask(len: u8) -> Self;
    /// A firewall mark stored in an address field (fwmark templates).
    fn from_fwmark(mark: u32) -> Self;
    /// 32-bit hash of `(proto, a:ap, b:bp)` under `seed`.
    fn hash_key(seed: &Seed, proto: u8, a: Self, ap: u16, b: Self, bp: u16) -> u32;
}

/// Per-table hash secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed([u64; 3]);

impl Seed {
    /// Expand a 64-bit seed (splitmix64).
    pub fn new(mut s: u64) -> Seed {
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Seed([next(), next(), next()])
    }

    /// A seed that differs between tables and runs.
    pub fn random() -> Seed {
        Seed::new(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

/// 64x64 -> 128 multiply, folded: the core of wyhash-style mixing.
#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline]
fn finish(seed: &Seed, h: u64) -> u32 {
    let h = mix(h ^ seed.0[2], 0x9e37_79b9_7f4a_7c15);
    (h ^ (h >> 32)) as u32
}

#[inline]
fn ports_word(proto: u8, ap: u16, bp: u16) -> u64 {
    (u64::from(proto) << 32) | (u64::from(ap) << 16) | u64::from(bp)
}

impl Addr for u32 {
    fn mask(self, netmask: Self) -> Self {
        self & netmask
    }
    fn prefix_mask(len: u8) -> Self {
        match len {
            0 => 0,
            l if l >= 32 => u32::MAX,
            l => u32::MAX << (32 - l),
        }
    }
    fn from_fwmark(mark: u32) -> Self {
        mark
    }
    #[inline]
    fn hash_key(seed: &Seed, proto: u8, a: Self, ap: u16, b: Self, bp: u16) -> u32 {
        let w0 = (u64::from(a) << 32) | u64::from(b);
        let h = mix(w0 ^ seed.0[0], ports_word(proto, ap, bp) ^ seed.0[1]);
        finish(seed, h)
    }
}

impl Addr for u128 {
    fn mask(self, netmask: Self) -> Self {
        self & netmask
    }
    fn prefix_mask(len: u8) -> Self {
        match len {
            0 => 0,
            l if l >= 128 => u128::MAX,
            l => u128::MAX << (128 - l),
        }
    }
    fn from_fwmark(mark: u32) -> Self {
        u128::from(mark)
    }
    #[inline]
    fn hash_key(seed: &Seed, proto: u8, a: Self, ap: u16, b: Self, bp: u16) -> u32 {
        let h = mix((a as u64) ^ seed.0[0], ((a >> 64) as u64) ^ seed.0[1]);
        let h = mix(h ^ (b as u64) ^ seed.0[2], ((b >> 64) as u64) ^ seed.0[0]);
        let h = mix(
            h ^ ports_word(proto, ap, bp),
            seed.0[1] ^ 0x2545_f491_4f6c_dd1d,
        );
        finish(seed, h)
    }
}

/// An address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Endpoint<A> {
    pub addr: A,
    pub port: u16,
}

impl<A> Endpoint<A> {
    pub fn new(addr: A, port: u16) -> Self {
        Endpoint { addr, port }
    }
}

/// A packet's transport tuple as received: protocol, source, destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple<A> {
    pub proto: Protocol,
    pub src: Endpoint<A>,
    pub dst: Endpoint<A>,
}

/// Which of a connection's tuples a packet matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Request direction: client to virtual service (IPVS "INPUT").
    Input,
    /// Reply direction: real server back through the director (IPVS "OUTPUT").
    Output,
}

/// Handle of a live entry: slab index plus a generation, so a handle kept
/// after its entry was freed and reused finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    idx: u32,
    gen: u32,
}

impl ConnId {
    /// Slab index (stable while the entry lives).
    pub fn index(self) -> u32 {
        self.idx
    }
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// Every slab entry is in use.
    TableFull,
    /// The request tuple (or the template key) already has an entry.
    Exists,
    /// The reply tuple already has an entry (two NAT services sharing a real
    /// server and the same client port, say).
    ReplyExists,
    /// FULLNAT connection without a local address.
    MissingLocal,
    /// The template handle is stale or not a template.
    StaleTemplate,
    /// Capacity 0 or above [`MAX_CAPACITY`].
    BadCapacity(usize),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::TableFull => f.write_str("connection table full"),
            ConnError::Exists => f.write_str("connection already exists"),
            ConnError::ReplyExists => f.write_str("reply tuple already in use"),
            ConnError::MissingLocal => f.write_str("FULLNAT connection without local address"),
            ConnError::StaleTemplate => f.write_str("stale persistence template"),
            ConnError::BadCapacity(c) => {
                write!(f, "capacity {c} outside 1..={MAX_CAPACITY}")
            }
        }
    }
}

impl std::error::Error for ConnError {}

/// What a new connection is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn<A> {
    pub proto: Protocol,
    /// Client address and port (packet source).
    pub client: Endpoint<A>,
    /// Virtual service address and port (packet destination).
    pub virt: Endpoint<A>,
    /// FULLNAT source address and port towards the real server.
    pub local: Option<Endpoint<A>>,
    /// Real server address and port.
    pub real: Endpoint<A>,
    pub dest: DestId,
    pub fwd: FwdMethod,
    /// `-o` one-packet scheduling (honoured for UDP only, like the kernel):
    /// the entry is not indexed and expires right after its packet.
    pub one_packet: bool,
    /// Persistence template controlling this connection.
    pub template: Option<ConnId>,
}

/// Keys of a new connection that its caller has just looked up and found
/// free ([`ConnTable::insert_checked`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownFree {
    /// The request key (client -> virtual service).
    pub request: bool,
    /// The reply key (real server -> client or local address).
    pub reply: bool,
    /// The reply key's hash, when the caller has it from
    /// [`ConnTable::key_hash`] (the port allocator's free-check): not
    /// computed again.
    pub reply_hash: Option<u32>,
}

/// The packet that creates a connection, classified as the entry is made
/// ([`ConnTable::insert_first`]): the client's first packet, seen in the
/// request direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPacket {
    /// Its TCP header flags (ignored for UDP).
    pub tcp_flags: u8,
    /// Counted in the entry's `in_pkts`, as
    /// [`ConnTable::update_state_forwarded`] counts a forwarded request
    /// (false: as [`ConnTable::update_state`], not counted).
    pub forwarded: bool,
}

/// Timeout of TCP state `s`, seconds: with secure_tcp the half-open
/// states are capped at [`SECURE_HALFOPEN_TIMEOUT_S`].
#[inline(always)]
fn tcp_timeout_s(timeouts: &Timeouts, secure: bool, s: TcpState) -> u32 {
    let secs = timeouts.tcp_state(s);
    if secure && matches!(s, TcpState::SynRecv | TcpState::SynAck) {
        secs.min(SECURE_HALFOPEN_TIMEOUT_S)
    } else {
        secs
    }
}

/// One connection or template. 64 bytes for IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn<A> {
    pub(crate) expires_ms: u64,
    pub(crate) caddr: A,
    pub(crate) vaddr: A,
    pub(crate) laddr: A,
    pub(crate) daddr: A,
    pub(crate) cport: u16,
    pub(crate) vport: u16,
    pub(crate) lport: u16,
    pub(crate) dport: u16,
    pub(crate) dest: DestId,
    pub(crate) timeout_ms: u32,
    pub(crate) link: TimerLink,
    /// Connection: slab index of its template or NIL. Template: n_control,
    /// the number of connections it controls.
    pub(crate) control: u32,
    pub(crate) gen: u32,
    pub(crate) in_pkts: u32,
    pub(crate) proto: u8,
    pub(crate) fwd: u8,
    pub(crate) state: u8,
    pub(crate) flags: u8,
}

impl<A: Addr> Default for Conn<A> {
    fn default() -> Self {
        Conn {
            expires_ms: 0,
            caddr: A::default(),
            vaddr: A::default(),
            laddr: A::default(),
            daddr: A::default(),
            cport: 0,
            vport: 0,
            lport: 0,
            dport: 0,
            dest: 0,
            timeout_ms: 0,
            link: TimerLink::UNLINKED,
            control: NIL,
            gen: 0,
            in_pkts: 0,
            proto: 0,
            fwd: 0,
            state: 0,
            flags: 0,
        }
    }
}

fn fwd_code(m: FwdMethod) -> u8 {
    match m {
        FwdMethod::Masq => 0,
        FwdMethod::Route => 1,
        FwdMethod::Tunnel => 2,
        FwdMethod::FullNat => 3,
    }
}

/// Bits of `Conn::fwd` holding the forwarding method.
const FWD_MASK: u8 = 0x3;
/// `Conn::fwd` bit: the entry came from a sync master (the kernel's
/// `IP_VS_CONN_F_SYNC`); kept for the entry's life.
const FWD_F_SYNC: u8 = 0x80;

fn fwd_from_code(c: u8) -> FwdMethod {
    match c & FWD_MASK {
        1 => FwdMethod::Route,
        2 => FwdMethod::Tunnel,
        3 => FwdMethod::FullNat,
        _ => FwdMethod::Masq,
    }
}

/// Seconds to milliseconds, capped at the largest accepted timeout.
pub(crate) fn secs_to_ms(s: u32) -> u32 {
    s.min(MAX_TIMEOUT_S) * 1000
}

impl<A: Addr> Conn<A> {
    /// IP protocol number (6, 17, or 0 for a fwmark template).
    pub fn protocol_number(&self) -> u8 {
        self.proto
    }
    /// Transport protocol; `None` for a fwmark template.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.proto {
            PROTO_TCP => Some(Protocol::Tcp),
            PROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
    /// Protocol as `ipvsadm -Lc` prints it: "TCP", "UDP", or "IP" for fwmark templates.
    pub fn proto_name(&self) -> &'static str {
        match self.proto {
            PROTO_TCP => "TCP",
            PROTO_UDP => "UDP",
            _ => "IP",
        }
    }
    /// Client address and port (templates: masked client address, port 0).
    pub fn client(&self) -> Endpoint<A> {
        Endpoint::new(self.caddr, self.cport)
    }
    /// Virtual address and port (fwmark templates: the mark as an address).
    pub fn virt(&self) -> Endpoint<A> {
        Endpoint::new(self.vaddr, self.vport)
    }
    /// FULLNAT local address and port.
    pub fn local(&self) -> Option<Endpoint<A>> {
        (self.fwd() == FwdMethod::FullNat && !self.is_template())
            .then(|| Endpoint::new(self.laddr, self.lport))
    }
    /// Real server address and port.
    pub fn real(&self) -> Endpoint<A> {
        Endpoint::new(self.daddr, self.dport)
    }
    /// Where replies are addressed: the local address for FULLNAT, else the client.
    pub fn reply_dst(&self) -> Endpoint<A> {
        if self.fwd & FWD_MASK == fwd_code(FwdMethod::FullNat) {
            Endpoint::new(self.laddr, self.lport)
        } else {
            Endpoint::new(self.caddr, self.cport)
        }
    }
    pub fn dest(&self) -> DestId {
        self.dest
    }
    pub fn fwd(&self) -> FwdMethod {
        fwd_from_code(self.fwd)
    }
    pub fn is_template(&self) -> bool {
        self.flags & F_TEMPLATE != 0
    }
    pub fn is_one_packet(&self) -> bool {
        self.flags & F_ONE_PACKET != 0
    }
    /// Counted in ActiveConn (ESTABLISHED or half-open) rather than InActConn.
    pub fn is_active(&self) -> bool {
        !self.is_template() && self.flags & F_INACTIVE == 0
    }
    /// No reply seen yet on a connection whose method never shows them.
    pub fn no_reply_seen(&self) -> bool {
        self.flags & F_NO_OUTPUT != 0
    }
    /// Template: a controlled connection got established (or, UDP, answered).
    pub fn is_assured(&self) -> bool {
        self.is_template() && self.flags & F_ASSURED != 0
    }
    /// Template still findable by key (not invalidated).
    pub fn is_hashed(&self) -> bool {
        self.flags & F_REQ_INDEXED != 0
    }
    /// TCP state (`None` for UDP and templates).
    pub fn tcp_state(&self) -> Option<TcpState> {
        if self.proto == PROTO_TCP && !self.is_template() {
            TcpState::from_u8(self.state)
        } else {
            None
        }
    }
    /// State column of `ipvsadm -Lc`: TCP state name, "UDP", or for
    /// templates "NONE" / "ASSURED".
    pub fn state_name(&self) -> &'static str {
        if self.is_template() {
            return if self.is_assured() { "ASSURED" } else { "NONE" };
        }
        match self.tcp_state() {
            Some(s) => s.name(),
            None if self.proto == PROTO_UDP => UDP_STATE_NAME,
            None => "NONE",
        }
    }
    /// Absolute expiry time, milliseconds.
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms
    }
    /// Milliseconds left at `now_ms` (0 once due).
    pub fn expires_in_ms(&self, now_ms: u64) -> u64 {
        self.expires_ms.saturating_sub(now_ms)
    }
    /// Current timeout, milliseconds (restarted on every packet).
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }
    /// Template: number of connections it controls (kernel `n_control`).
    pub fn controlled(&self) -> u32 {
        if self.is_template() {
            self.control
        } else {
            0
        }
    }
    /// Whether a persistence template controls this connection.
    pub fn has_template(&self) -> bool {
        !self.is_template() && self.control != NIL
    }
    /// Packets counted with [`Conn::bump_in_pkts`].
    pub fn in_pkts(&self) -> u32 {
        self.in_pkts
    }
    /// Count a client packet (kernel `in_pkts`, for sync thresholds).
    pub fn bump_in_pkts(&mut self) {
        self.in_pkts = self.in_pkts.wrapping_add(1);
    }

    fn is_live(&self) -> bool {
        self.flags & F_LIVE != 0
    }

    /// Whether a sync master sent this entry ([`ConnTable::set_synced`]).
    pub fn is_synced(&self) -> bool {
        self.fwd & FWD_F_SYNC != 0
    }

    /// Whether a packet with tuple `t` is this connection's request.
    #[inline]
    fn matches_request(&self, proto: u8, t: &Tuple<A>) -> bool {
        self.flags & F_TEMPLATE == 0
            && self.proto == proto
            && self.caddr == t.src.addr
            && self.vaddr == t.dst.addr
            && self.cport == t.src.port
            && self.vport == t.dst.port
    }

    /// Whether a packet with tuple `t` is this connection's reply.
    #[inline]
    fn matches_reply(&self, proto: u8, t: &Tuple<A>) -> bool {
        self.flags & F_TEMPLATE == 0
            && self.proto == proto
            && self.daddr == t.src.addr
            && self.dport == t.src.port
            && self.reply_dst() == t.dst
    }
}

/// A slab entry on its own cache line(s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Slot<A: Addr>(pub(crate) Conn<A>);

impl<A: Addr> TimerNodes for [Slot<A>] {
    fn timer_link(&self, id: u32) -> TimerLink {
        self.get(id as usize)
            .map_or(TimerLink::UNLINKED, |s| s.0.link)
    }
    fn set_timer_link(&mut self, id: u32, link: TimerLink) {
        if let Some(s) = self.get_mut(id as usize) {
            s.0.link = link;
        }
    }
    fn expires_ms(&self, id: u32) -> u64 {
        self.get(id as usize).map_or(0, |s| s.0.expires_ms)
    }
}

/// Event counters of one table (plain integers: the owner is the only writer;
/// the control thread reads copies the worker publishes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections inserted.
    pub inserted: u64,
    /// Templates created.
    pub templates_created: u64,
    /// Entries (connections and templates) removed by expiry.
    pub expired: u64,
    /// Entries removed explicitly.
    pub removed: u64,
    /// Inserts refused: table full.
    pub table_full: u64,
    /// Inserts refused: request tuple or template key present.
    pub exists: u64,
    /// Inserts refused: reply tuple present.
    pub reply_exists: u64,
    /// Templates invalidated because their server became unavailable.
    pub templates_invalidated: u64,
}

/// One core's connection table. `A` is `u32` (IPv4) or `u128` (IPv6).
#[derive(Debug)]
pub struct ConnTable<A: Addr> {
    pub(crate) slab: Box<[Slot<A>]>,
    pub(crate) index: Index,
    pub(crate) wheel: TimerWheel,
    /// Head of the free list of recycled entries.
    free_head: u32,
    /// Entries below this index have been used at least once.
    watermark: u32,
    len: usize,
    pub(crate) templates: usize,
    pub(crate) seed: Seed,
    timeouts: Timeouts,
    secure_tcp: bool,
    pub(crate) load: Arc<CoreLoad>,
    pub(crate) stats: ConnStats,
}

/// IPv4 table.
pub type ConnTable4 = ConnTable<u32>;
/// IPv6 table.
pub type ConnTable6 = ConnTable<u128>;

/// Index slots for a capacity: a power of two of at least 3.5 per entry, so
/// two keys per entry keep the load at or below 4/7, and at most 7 per entry,
/// so the index costs at most 56 bytes per connection.
fn index_buckets(capacity: usize) -> usize {
    let mut b = (4 * capacity).next_power_of_two();
    if b > 7 * capacity {
        b /= 2;
    }
    b.max(16)
}

/// A boxed slice of `n` copies of `v`. Large ones are advised for
/// transparent huge pages before their first touch: lookups land on random
/// entries, and with 4 KiB pages nearly every one would also miss the TLB.
pub(crate) fn huge_filled<T: Clone>(n: usize, v: T) -> Box<[T]> {
    let mut out: Vec<T> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n.saturating_mul(std::mem::size_of::<T>());
        let start = out.as_ptr() as usize;
        let a = start.div_ceil(HUGE).saturating_mul(HUGE);
        let b = start.saturating_add(bytes) / HUGE * HUGE;
        if bytes >= 2 * HUGE && b > a {
            // SAFETY: [a, b) is page-aligned and lies inside the allocation
            // `out` owns; MADV_HUGEPAGE is only a hint about how to back it
            // and changes neither its contents nor its validity. The result
            // is ignored: without huge pages the table still works.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    out.resize(n, v);
    out.into_boxed_slice()
}

/// Ask the CPU to start loading the cache line of `r` (a hint: no effect
/// on what any later read returns; nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (r as *const T).cast::<i8>();
        // SAFETY: `p` comes from a reference, so it points into a live
        // object; a prefetch reads nothing architecturally and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// [`prefetch`] by address: `p` need not point into a live object (a
/// prefetch reads nothing architecturally and cannot fault), so a caller
/// may name a line past the end of an array without a bounds check.
#[inline(always)]
pub(crate) fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the
        // address, and changes no memory or register state.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] every cache line of `r` (an IPv6 entry spans two, and a
/// lookup reads both: addresses in one, ports and flags in the other).
#[inline(always)]
pub(crate) fn prefetch_lines<T>(r: &T) {
    let p = (r as *const T).cast::<u8>();
    let mut off = 0;
    while off < std::mem::size_of::<T>() {
        // SAFETY: `off` < size_of::<T>(), so `p + off` lies inside `*r`.
        prefetch(unsafe { &*p.add(off) });
        off += 64;
    }
}

/// Wheel slots for a capacity: about one per 16 entries, 256 to 65536.
fn wheel_slots(capacity: usize) -> usize {
    (capacity / 16).clamp(256, 65536).next_power_of_two()
}

impl<A: Addr> ConnTable<A> {
    /// A table for `capacity` entries (connections plus templates), counting
    /// into `load`, with a random hash seed, clock starting at `now_ms`.
    pub fn new(capacity: usize, load: Arc<CoreLoad>, now_ms: u64) -> Result<Self, ConnError> {
        Self::with_seed(capacity, load, now_ms, Seed::random())
    }

    /// As [`ConnTable::new`] with a fixed hash seed (tests, benchmarks).
    pub fn with_seed(
        capacity: usize,
        load: Arc<CoreLoad>,
        now_ms: u64,
        seed: Seed,
    ) -> Result<Self, ConnError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(ConnError::BadCapacity(capacity));
        }
        Ok(ConnTable {
            slab: huge_filled(capacity, Slot::default()),
            index: Index::new(index_buckets(capacity)),
            wheel: TimerWheel::new(wheel_slots(capacity), now_ms),
            free_head: NIL,
            watermark: 0,
            len: 0,
            templates: 0,
            seed,
            timeouts: Timeouts::default(),
            secure_tcp: false,
            load,
            stats: ConnStats::default(),
        })
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }
    /// Live entries: connections plus templates.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Live persistence templates.
    pub fn template_count(&self) -> usize {
        self.templates
    }
    /// Live connections (templates excluded).
    pub fn conn_count(&self) -> usize {
        self.len - self.templates
    }
    /// Bytes allocated: slab, index and wheel.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slab) + self.index.memory_bytes() + self.wheel.memory_bytes()
    }
    /// Slots in the index (for sizing reports).
    pub fn index_buckets(&self) -> usize {
        self.index.buckets()
    }
    /// Current protocol timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
    /// Change the timeouts (`ipvsadm --set`): used from the next state change
    /// or packet of each connection, as in the kernel.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }
    /// Use the secure_tcp transition tables and the shortened half-open
    /// timeouts ([`crate::lb::defense`]).
    pub fn set_secure_tcp(&mut self, on: bool) {
        self.secure_tcp = on;
    }
    /// The load counters this table updates.
    pub fn load(&self) -> &Arc<CoreLoad> {
        &self.load
    }
    /// Event counters.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// Slab index of a live entry with the handle's generation.
    #[inline]
    pub(crate) fn live_idx(&self, id: ConnId) -> Option<usize> {
        let s = self.slab.get(id.idx as usize)?;
        (s.0.is_live() && s.0.gen == id.gen).then_some(id.idx as usize)
    }

    #[inline]
    pub(crate) fn id_at(&self, idx: usize) -> ConnId {
        ConnId {
            idx: idx as u32,
            gen: self.slab.get(idx).map_or(0, |s| s.0.gen),
        }
    }

    /// Entry behind a handle, if still live.
    pub fn get(&self, id: ConnId) -> Option<&Conn<A>> {
        self.live_idx(id)
            .and_then(|i| self.slab.get(i))
            .map(|s| &s.0)
    }

    /// Mutable entry (only counters can be changed through it; keys and
    /// state go through the table).
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn<A>> {
        let i = self.live_idx(id)?;
        self.slab.get_mut(i).map(|s| &mut s.0)
    }

    /// The template controlling a connection.
    pub fn template_of(&self, id: ConnId) -> Option<ConnId> {
        let c = self.get(id)?;
        c.has_template().then(|| self.id_at(c.control as usize))
    }

    #[inline]
    fn tuple_hash(&self, proto: u8, t: &Tuple<A>) -> u32 {
        A::hash_key(
            &self.seed, proto, t.src.addr, t.src.port, t.dst.addr, t.dst.port,
        )
    }

    /// Entry and direction a tuple maps to, without touching it.
    #[inline]
    fn find_tuple(&self, proto: u8, t: &Tuple<A>, h: u32) -> Option<(usize, Direction)> {
        let slab = &self.slab;
        let v = self.index.find(h, |v| {
            let Some(s) = slab.get((v & !REPLY_BIT) as usize) else {
                return false;
            };
            if v & REPLY_BIT == 0 {
                s.0.matches_request(proto, t)
            } else {
                s.0.matches_reply(proto, t)
            }
        })?;
        let dir = if v & REPLY_BIT == 0 {
            Direction::Input
        } else {
            Direction::Output
        };
        Some(((v & !REPLY_BIT) as usize, dir))
    }

    /// Find the connection a packet belongs to, from either direction, and
    /// restart its timer with its current timeout (kernel `ip_vs_conn_put`):
    /// only the expiry time field is written.
    #[inline]
    pub fn lookup(&mut self, t: &Tuple<A>, now_ms: u64) -> Option<(ConnId, Direction)> {
        let proto = t.proto.number();
        let h = self.tuple_hash(proto, t);
        let (idx, dir) = self.find_tuple(proto, t, h)?;
        Some((self.touch(idx, now_ms)?, dir))
    }

    /// [`ConnTable::lookup`] for a burst of packets: `out[i]` gets the result
    /// for `tuples[i]` (up to the shorter of the two). The hashes and first
    /// index slots of a group of packets are loaded before any entry is
    /// compared, so cache misses overlap instead of queueing. Returns the
    /// number of hits.
    pub fn lookup_batch(
        &mut self,
        tuples: &[Tuple<A>],
        now_ms: u64,
        out: &mut [Option<(ConnId, Direction)>],
    ) -> usize {
        let hits = self.peek_batch(tuples, out);
        for o in out.iter_mut().take(tuples.len()) {
            if let Some((id, dir)) = *o {
                *o = self.touch(id.idx as usize, now_ms).map(|id| (id, dir));
            }
        }
        hits
    }

    /// [`ConnTable::lookup_batch`] without restarting any timer: the
    /// director restarts it only for packets it forwards (a packet of a
    /// connection whose server is gone is dropped and must not keep the
    /// entry alive, as the kernel's `__ip_vs_conn_put`).
    pub fn peek_batch(
        &self,
        tuples: &[Tuple<A>],
        out: &mut [Option<(ConnId, Direction)>],
    ) -> usize {
        let mut hits = 0;
        for (ts, os) in tuples.chunks(PEEK_GROUP).zip(out.chunks_mut(PEEK_GROUP)) {
            hits += self.peek_group(ts, os);
        }
        hits
    }

    /// [`ConnTable::peek_batch`] of up to [`PEEK_GROUP`] tuples (any
    /// beyond are left alone). A burst that fits calls this directly: with
    /// no loop over groups around it, the hash seeds are dead once the
    /// tuples are hashed instead of held (and spilled and reloaded) through
    /// the compares.
    #[inline(always)]
    pub fn peek_group(
        &self,
        tuples: &[Tuple<A>],
        out: &mut [Option<(ConnId, Direction)>],
    ) -> usize {
        // A software pipeline (as HDSLB's, or DPDK's bulk lookups): hash
        // every tuple and start loading its home bucket; then read the
        // buckets and start loading the entries they name; only then
        // compare. Each stage's cache misses overlap with the others'
        // instead of one lookup waiting for the previous one.
        let mut hashes = [0u32; PEEK_GROUP];
        let mut first = [NIL; PEEK_GROUP];
        for (t, h) in tuples.iter().zip(&mut hashes) {
            *h = self.lookup_start(t);
        }
        for (h, f) in hashes.iter().zip(&mut first) {
            *f = self.lookup_probe(*h);
        }
        let mut hits = 0;
        for ((t, o), (h, f)) in tuples
            .iter()
            .zip(out.iter_mut())
            .zip(hashes.iter().zip(&first))
        {
            *o = self.lookup_finish(t, *h, *f);
            hits += usize::from(o.is_some());
        }
        hits
    }

    /// First stage of a pipelined lookup of `t` (see
    /// [`ConnTable::peek_batch`]): its hash, with its home index slot
    /// starting to load. Pass the hash to [`ConnTable::lookup_probe`] and
    /// [`ConnTable::lookup_finish`].
    #[inline(always)]
    pub(crate) fn lookup_start(&self, t: &Tuple<A>) -> u32 {
        let h = self.tuple_hash(t.proto.number(), t);
        self.index.prefetch_home(h);
        h
    }

    /// Second stage: find the candidate slot of hash `h` in the index line
    /// [`ConnTable::lookup_start`] loaded and start loading the entry it
    /// names. Returns that slot's value (or NIL) for
    /// [`ConnTable::lookup_finish`].
    #[inline(always)]
    pub(crate) fn lookup_probe(&self, h: u32) -> u32 {
        let Some(v) = self.index.home_candidate(h) else {
            return NIL;
        };
        if let Some(s) = self.slab.get((v & !REPLY_BIT) as usize) {
            prefetch_lines(s);
        }
        v
    }

    /// Last stage: the entry and direction of `t`, hash `h`, given the
    /// home slot value `first` its probe read. The table may have changed
    /// since the probe (earlier packets of a burst insert and remove):
    /// the candidate's tuple is compared in full, and anything else is
    /// looked up afresh, so the result is that of [`ConnTable::peek`] now.
    #[inline(always)]
    pub(crate) fn lookup_finish(
        &self,
        t: &Tuple<A>,
        h: u32,
        first: u32,
    ) -> Option<(ConnId, Direction)> {
        let proto = t.proto.number();
        let fast = (first != NIL).then_some(first).and_then(|v| {
            let e = &self.slab.get((v & !REPLY_BIT) as usize)?.0;
            let ok = if v & REPLY_BIT == 0 {
                e.matches_request(proto, t)
            } else {
                e.matches_reply(proto, t)
            };
            ok.then_some(v)
        });
        let found = match fast {
            Some(v) => {
                let dir = if v & REPLY_BIT == 0 {
                    Direction::Input
                } else {
                    Direction::Output
                };
                Some(((v & !REPLY_BIT) as usize, dir))
            }
            None => self.find_tuple(proto, t, h),
        };
        found.map(|(idx, dir)| (self.id_at(idx), dir))
    }

    /// Restart the timer of entry `idx` (lookup hit).
    #[inline]
    fn touch(&mut self, idx: usize, now_ms: u64) -> Option<ConnId> {
        let s = self.slab.get_mut(idx)?;
        let gen = s.0.gen;
        let old = s.0.expires_ms;
        s.0.expires_ms = now_ms + u64::from(s.0.timeout_ms);
        if s.0.expires_ms < old {
            // Only a clock going backwards gets here; lazy re-arm needs
            // expiry times that never move earlier.
            self.wheel.arm(&mut self.slab[..], idx as u32);
        }
        Some(ConnId {
            idx: idx as u32,
            gen,
        })
    }

    /// Restart the timer of connection `id` with its current timeout, as a
    /// [`ConnTable::lookup`] hit does. False if the handle is stale.
    pub fn refresh(&mut self, id: ConnId, now_ms: u64) -> bool {
        match self.live_idx(id) {
            Some(idx) => self.touch(idx, now_ms).is_some(),
            None => false,
        }
    }

    /// As [`ConnTable::lookup`] without refreshing (control path, tests).
    pub fn peek(&self, t: &Tuple<A>) -> Option<(ConnId, Direction)> {
        // (not through peek_hashed: this body, small once that is inlined,
        // would be inlined into handle_l4 and cost established packets)
        let proto = t.proto.number();
        let (idx, dir) = self.find_tuple(proto, t, self.tuple_hash(proto, t))?;
        Some((self.id_at(idx), dir))
    }

    /// The index hash of key `t` (this table's seed), for
    /// [`ConnTable::peek_hashed`] and [`KnownFree::reply_hash`].
    #[inline]
    pub fn key_hash(&self, t: &Tuple<A>) -> u32 {
        self.tuple_hash(t.proto.number(), t)
    }

    /// [`ConnTable::peek`] of `t` whose hash `h` the caller has computed
    /// with [`ConnTable::key_hash`].
    #[inline]
    pub fn peek_hashed(&self, t: &Tuple<A>, h: u32) -> Option<(ConnId, Direction)> {
        let (idx, dir) = self.find_tuple(t.proto.number(), t, h)?;
        Some((self.id_at(idx), dir))
    }

    /// Take a free slab entry.
    pub(crate) fn alloc(&mut self) -> Option<usize> {
        if self.free_head != NIL {
            let idx = self.free_head as usize;
            self.free_head = self.slab.get(idx)?.0.link.spare();
            return Some(idx);
        }
        if (self.watermark as usize) < self.slab.len() {
            self.watermark += 1;
            return Some(self.watermark as usize - 1);
        }
        None
    }

    /// Store a fully built entry at `idx` (from `alloc`), index it and arm its timer.
    pub(crate) fn install(&mut self, idx: usize, mut c: Conn<A>, req_hash: u32, reply_hash: u32) {
        let Some(slot) = self.slab.get_mut(idx) else {
            return;
        };
        c.gen = slot.0.gen;
        c.link = TimerLink::UNLINKED;
        slot.0 = c;
        if c.flags & F_REQ_INDEXED != 0 {
            self.index.insert(req_hash, idx as u32);
        }
        if c.flags & F_REPLY_INDEXED != 0 {
            self.index.insert(reply_hash, idx as u32 | REPLY_BIT);
        }
        self.wheel.arm(&mut self.slab[..], idx as u32);
        self.len += 1;
    }

    /// Add a connection in state NONE with the kernel's initial 3 s timeout;
    /// classify its first packet with [`ConnTable::update_state`] next. It is
    /// counted in InActConn of its server until it reaches ESTABLISHED.
    pub fn insert(&mut self, c: &NewConn<A>, now_ms: u64) -> Result<ConnId, ConnError> {
        self.insert_checked(c, now_ms, KnownFree::default())
    }

    /// [`ConnTable::insert`] without looking up again the keys the caller
    /// has just found free (`free`), with nothing inserted since: a new
    /// connection's first packet missed its request key in the lookup, and
    /// a FULLNAT local port was chosen because its reply key was free.
    /// Claiming a key free that is not leaves two entries under one key;
    /// only the new-connection path, which has just done those lookups,
    /// passes anything but [`KnownFree::default`].
    pub fn insert_checked(
        &mut self,
        c: &NewConn<A>,
        now_ms: u64,
        free: KnownFree,
    ) -> Result<ConnId, ConnError> {
        self.insert_with(c, now_ms, free, None)
    }

    /// [`ConnTable::insert_checked`] of a connection together with the
    /// classification of the packet that creates it: the entry is made
    /// directly in the state, timeout, ActiveConn/InActConn count and
    /// `in_pkts` that [`ConnTable::insert_checked`] followed by
    /// [`ConnTable::update_state`] (or, `first.forwarded`,
    /// [`ConnTable::update_state_forwarded`]) in [`Direction::Input`] with
    /// `first.tcp_flags` would leave, its template assured as they would,
    /// and its timer armed once, at its final expiry (the two steps armed
    /// it at the initial 3 s and the wheel moved it when that came, a
    /// second visit to an entry long out of the cache; the only trace of
    /// the difference is the order in which entries due in the same 10 ms
    /// tick leave). A new connection's packet costs one visit to the entry
    /// instead of two.
    pub fn insert_first(
        &mut self,
        c: &NewConn<A>,
        now_ms: u64,
        free: KnownFree,
        first: FirstPacket,
    ) -> Result<ConnId, ConnError> {
        self.insert_with(c, now_ms, free, Some(first))
    }

    /// [`ConnTable::insert_checked`] (`first` = `None`) and
    /// [`ConnTable::insert_first`]; inlined into both so that each keeps
    /// only its own code.
    #[inline(always)]
    fn insert_with(
        &mut self,
        c: &NewConn<A>,
        now_ms: u64,
        free: KnownFree,
        first: Option<FirstPacket>,
    ) -> Result<ConnId, ConnError> {
        let local = match (c.fwd, c.local) {
            (FwdMethod::FullNat, None) => return Err(ConnError::MissingLocal),
            (FwdMethod::FullNat, Some(l)) => l,
            _ => Endpoint::default(),
        };
        let template = match c.template {
            Some(t) => match self.live_idx(t) {
                Some(i) if self.slab.get(i).is_some_and(|s| s.0.is_template()) => i as u32,
                _ => return Err(ConnError::StaleTemplate),
            },
            None => NIL,
        };
        if self.free_head == NIL && self.watermark as usize >= self.slab.len() {
            self.stats.table_full += 1;
            return Err(ConnError::TableFull);
        }
        let proto = c.proto.number();
        let one_packet = c.one_packet && c.proto == Protocol::Udp;
        let request = Tuple {
            proto: c.proto,
            src: c.client,
            dst: c.virt,
        };
        let reply_dst = if c.fwd == FwdMethod::FullNat {
            local
        } else {
            c.client
        };
        let reply = Tuple {
            proto: c.proto,
            src: c.real,
            dst: reply_dst,
        };
        let req_hash = self.tuple_hash(proto, &request);
        let reply_hash = match free.reply_hash {
            Some(h) => {
                debug_assert_eq!(h, self.tuple_hash(proto, &reply), "stale reply hash");
                h
            }
            None => self.tuple_hash(proto, &reply),
        };
        let index_reply = !one_packet && c.fwd.sees_replies();
        if !one_packet && !free.request && self.find_tuple(proto, &request, req_hash).is_some() {
            self.stats.exists += 1;
            return Err(ConnError::Exists);
        }
        if index_reply && !free.reply && self.find_tuple(proto, &reply, reply_hash).is_some() {
            self.stats.reply_exists += 1;
            return Err(ConnError::ReplyExists);
        }
        let Some(idx) = self.alloc() else {
            self.stats.table_full += 1;
            return Err(ConnError::TableFull);
        };
        let mut flags = F_LIVE | F_INACTIVE;
        if one_packet {
            flags |= F_ONE_PACKET;
        } else {
            flags |= F_REQ_INDEXED;
        }
        if index_reply {
            flags |= F_REPLY_INDEXED;
        }
        if !c.fwd.sees_replies() {
            flags |= F_NO_OUTPUT;
        }
        let mut timeout_ms = if one_packet {
            0
        } else {
            secs_to_ms(INITIAL_TIMEOUT_S)
        };
        let mut state = TcpState::None;
        let mut in_pkts = 0;
        // a TCP packet that makes the connection ESTABLISHED (a sloppy ACK)
        // assures its template, as update_state would
        let mut assure = false;
        if let Some(p) = first {
            // update_state_counting's work for a fresh entry (state NONE,
            // inactive, INPUT or, no reply ever seen yet, INPUT-ONLY)
            in_pkts = u32::from(p.forwarded);
            match c.proto {
                Protocol::Tcp => {
                    let table = if flags & F_NO_OUTPUT != 0 {
                        StateDir::InputOnly
                    } else {
                        StateDir::Input
                    };
                    let secure = self.secure_tcp;
                    let new = next_state(secure, table, p.tcp_flags, TcpState::None);
                    if new.counts_as_active() {
                        flags &= !F_INACTIVE;
                    }
                    assure = new == TcpState::Established;
                    state = new;
                    timeout_ms = secs_to_ms(tcp_timeout_s(&self.timeouts, secure, new));
                }
                Protocol::Udp => timeout_ms = secs_to_ms(self.timeouts.udp),
            }
        }
        // (a one-packet entry expires at once, whatever its timeout says)
        let expires_ms = if one_packet {
            now_ms
        } else {
            now_ms + u64::from(timeout_ms)
        };
        let conn = Conn {
            expires_ms,
            caddr: c.client.addr,
            vaddr: c.virt.addr,
            laddr: local.addr,
            daddr: c.real.addr,
            cport: c.client.port,
            vport: c.virt.port,
            lport: local.port,
            dport: c.real.port,
            dest: c.dest,
            timeout_ms,
            link: TimerLink::UNLINKED,
            control: template,
            gen: 0,
            in_pkts,
            proto,
            fwd: fwd_code(c.fwd),
            state: state as u8,
            flags,
        };
        self.install(idx, conn, req_hash, reply_hash);
        if flags & F_INACTIVE != 0 {
            self.load.add_inactive(c.dest, 1);
        } else {
            self.load.add_active(c.dest, 1);
        }
        if let Some(t) = self.slab.get_mut(template as usize) {
            t.0.control = t.0.control.saturating_add(1);
            if assure {
                t.0.flags |= F_ASSURED;
            }
        }
        self.stats.inserted += 1;
        Ok(self.id_at(idx))
    }

    /// Classify a packet of connection `id` seen in `dir` with TCP header
    /// flags `tcp_flags` (ignored for UDP): apply the INPUT, OUTPUT or
    /// INPUT-ONLY table (INPUT-ONLY while no reply was seen on a DR/TUN
    /// connection), move the connection between ActiveConn and InActConn,
    /// set the timeout of the new state and restart the timer. False if the
    /// handle is stale or names a template.
    pub fn update_state(&mut self, id: ConnId, dir: Direction, tcp_flags: u8, now_ms: u64) -> bool {
        self.update_state_counting(id, dir, tcp_flags, now_ms, false)
    }

    /// [`ConnTable::update_state`] for a packet forwarded on the
    /// connection: a client → server packet (`dir` Input) also counts in
    /// the entry's `in_pkts` (the kernel's, which drop_entry reads), in the
    /// same visit to the entry.
    #[inline]
    pub fn update_state_forwarded(
        &mut self,
        id: ConnId,
        dir: Direction,
        tcp_flags: u8,
        now_ms: u64,
    ) -> bool {
        self.update_state_counting(id, dir, tcp_flags, now_ms, dir == Direction::Input)
    }

    #[inline]
    fn update_state_counting(
        &mut self,
        id: ConnId,
        dir: Direction,
        tcp_flags: u8,
        now_ms: u64,
        count_in: bool,
    ) -> bool {
        let Some(idx) = self.live_idx(id) else {
            return false;
        };
        let secure = self.secure_tcp;
        let Some(e) = self.slab.get_mut(idx).map(|s| &mut s.0) else {
            return false;
        };
        if count_in {
            // counted before the template check, as get_mut + bump_in_pkts did
            e.in_pkts = e.in_pkts.wrapping_add(1);
        }
        if e.flags & F_TEMPLATE != 0 {
            return false;
        }
        let mut assure = false;
        match e.proto {
            PROTO_TCP => {
                let mut table = match dir {
                    Direction::Input => StateDir::Input,
                    Direction::Output => StateDir::Output,
                };
                if e.flags & F_NO_OUTPUT != 0 {
                    if dir == Direction::Output {
                        e.flags &= !F_NO_OUTPUT;
                    } else {
                        table = StateDir::InputOnly;
                    }
                }
                let cur = TcpState::from_u8(e.state).unwrap_or(TcpState::None);
                let new = next_state(secure, table, tcp_flags, cur);
                if new != cur {
                    let inactive = e.flags & F_INACTIVE != 0;
                    if !inactive && !new.counts_as_active() {
                        e.flags |= F_INACTIVE;
                        self.load.add_active(e.dest, -1);
                        self.load.add_inactive(e.dest, 1);
                    } else if inactive && new.counts_as_active() {
                        e.flags &= !F_INACTIVE;
                        self.load.add_active(e.dest, 1);
                        self.load.add_inactive(e.dest, -1);
                    }
                    assure = new == TcpState::Established;
                }
                e.state = new as u8;
                e.timeout_ms = secs_to_ms(tcp_timeout_s(&self.timeouts, secure, new));
            }
            PROTO_UDP => {
                e.timeout_ms = secs_to_ms(self.timeouts.udp);
                assure = dir == Direction::Output;
            }
            _ => {}
        }
        let old = e.expires_ms;
        e.expires_ms = if e.flags & F_ONE_PACKET != 0 {
            now_ms
        } else {
            now_ms + u64::from(e.timeout_ms)
        };
        let earlier = e.expires_ms < old;
        let control = e.control;
        if earlier {
            // A shorter timeout (FIN, RST...): the lazy re-arm only handles
            // expiry moving later, so move the timer now.
            self.wheel.arm(&mut self.slab[..], idx as u32);
        }
        if assure {
            if let Some(t) = self.slab.get_mut(control as usize) {
                if t.0.flags & F_TEMPLATE != 0 {
                    t.0.flags |= F_ASSURED;
                }
            }
        }
        true
    }

    /// A sync backup's entry (see [`crate::lb::sync`]): put connection `id`
    /// in the master's `state` (TCP state number; ignored for UDP) with the
    /// master's `timeout_ms`, counted as active or inactive as the master
    /// said, mark it synced ([`Conn::is_synced`]) and restart its timer. False if the handle is stale or names a
    /// template.
    pub fn set_synced(
        &mut self,
        id: ConnId,
        state: u8,
        inactive: bool,
        timeout_ms: u32,
        now_ms: u64,
    ) -> bool {
        let Some(idx) = self.live_idx(id) else {
            return false;
        };
        let Some(e) = self.slab.get_mut(idx).map(|s| &mut s.0) else {
            return false;
        };
        if e.flags & F_TEMPLATE != 0 {
            return false;
        }
        if e.proto == PROTO_TCP && TcpState::from_u8(state).is_some() {
            e.state = state;
        }
        e.fwd |= FWD_F_SYNC;
        let was_inactive = e.flags & F_INACTIVE != 0;
        if was_inactive && !inactive {
            e.flags &= !F_INACTIVE;
            self.load.add_active(e.dest, 1);
            self.load.add_inactive(e.dest, -1);
        } else if !was_inactive && inactive {
            e.flags |= F_INACTIVE;
            self.load.add_active(e.dest, -1);
            self.load.add_inactive(e.dest, 1);
        }
        e.timeout_ms = timeout_ms;
        let old = e.expires_ms;
        e.expires_ms = now_ms + u64::from(timeout_ms);
        if e.expires_ms < old {
            self.wheel.arm(&mut self.slab[..], idx as u32);
        }
        true
    }

    /// Free entry `idx`: unindex, disarm, uncount, report it to `on_removed`.
    fn release(&mut self, idx: usize, on_removed: &mut impl FnMut(ConnId, &Conn<A>)) {
        let Some(e) = self.slab.get(idx).map(|s| s.0) else {
            return;
        };
        if !e.is_live() {
            return;
        }
        if e.flags & F_REQ_INDEXED != 0 {
            let h = A::hash_key(&self.seed, e.proto, e.caddr, e.cport, e.vaddr, e.vport);
            self.index.remove(h, idx as u32);
        }
        if e.flags & F_REPLY_INDEXED != 0 {
            let r = e.reply_dst();
            let h = A::hash_key(&self.seed, e.proto, e.daddr, e.dport, r.addr, r.port);
            self.index.remove(h, idx as u32 | REPLY_BIT);
        }
        self.wheel.unlink(&mut self.slab[..], idx as u32);
        if e.is_template() {
            self.load.add_persistent(e.dest, -1);
            self.templates = self.templates.saturating_sub(1);
        } else {
            if e.flags & F_INACTIVE != 0 {
                self.load.add_inactive(e.dest, -1);
            } else {
                self.load.add_active(e.dest, -1);
            }
            if let Some(t) = self.slab.get_mut(e.control as usize) {
                if t.0.flags & F_TEMPLATE != 0 {
                    t.0.control = t.0.control.saturating_sub(1);
                }
            }
        }
        on_removed(
            ConnId {
                idx: idx as u32,
                gen: e.gen,
            },
            &e,
        );
        if let Some(s) = self.slab.get_mut(idx) {
            s.0 = Conn {
                gen: e.gen.wrapping_add(1),
                link: TimerLink::unlinked_with_spare(self.free_head),
                ..Conn::default()
            };
            self.free_head = idx as u32;
        }
        self.len = self.len.saturating_sub(1);
    }

    /// Remove everything due at `now_ms`, calling `on_expired` for each
    /// connection or template removed (the caller frees FULLNAT local ports
    /// and the like). A template that still controls connections is kept
    /// for another 60 s instead, as in the kernel. Returns the number removed.
    pub fn expire(&mut self, now_ms: u64, on_expired: impl FnMut(ConnId, &Conn<A>)) -> usize {
        self.expire_some(now_ms, usize::MAX, on_expired)
    }

    /// As [`ConnTable::expire`], removing at most `limit` entries (to bound
    /// the time spent per call; the rest go on the next call).
    pub fn expire_some(
        &mut self,
        now_ms: u64,
        limit: usize,
        mut on_expired: impl FnMut(ConnId, &Conn<A>),
    ) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(id) = self.wheel.pop_due(&mut self.slab[..], now_ms) else {
                break;
            };
            let idx = id as usize;
            if self.rearm_if_controlling(idx, now_ms) {
                continue;
            }
            self.release(idx, &mut on_expired);
            self.stats.expired += 1;
            n += 1;
        }
        n
    }

    /// Remove one entry now. Returns a copy of it. A template that still
    /// controls connections cannot go yet: it is invalidated instead (no
    /// longer found by key) and left to expire, and `None` is returned.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn<A>> {
        let idx = self.live_idx(id)?;
        if self.slab.get(idx).is_some_and(|s| s.0.controlled() > 0) {
            self.invalidate_template(idx);
            return None;
        }
        let mut out = None;
        self.release(idx, &mut |_, c: &Conn<A>| out = Some(*c));
        self.stats.removed += 1;
        out
    }

    /// Remove every entry, connections first (control path, O(capacity)).
    pub fn flush(&mut self, mut on_removed: impl FnMut(ConnId, &Conn<A>)) {
        for templates in [false, true] {
            for idx in 0..self.watermark as usize {
                let hit = self
                    .slab
                    .get(idx)
                    .is_some_and(|s| s.0.is_live() && s.0.is_template() == templates);
                if hit {
                    self.release(idx, &mut on_removed);
                    self.stats.removed += 1;
                }
            }
        }
    }

    /// Live entries in slab order, for listings (control path, O(capacity)).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn<A>)> + '_ {
        self.slab
            .iter()
            .take(self.watermark as usize)
            .enumerate()
            .filter(|(_, s)| s.0.is_live())
            .map(|(i, s)| {
                (
                    ConnId {
                        idx: i as u32,
                        gen: s.0.gen,
                    },
                    &s.0,
                )
            })
    }
}

#[cfg(test)]
mod tests;
