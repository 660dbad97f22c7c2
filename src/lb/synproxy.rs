//! SYN proxy with SYN cookies, per service (as DPVS's synproxy).
//!
//! What: for a service with `synproxy` on, vsd answers a client's SYN itself
//! with a SYN-ACK whose sequence number is a SYN cookie, and keeps nothing.
//! Only a client ACK carrying a valid cookie creates a connection: the
//! scheduler picks a real server, the ACK is turned into a SYN to it (with
//! the client's sequence number and the options the cookie encodes), the
//! server's SYN-ACK is turned into the ACK that completes its handshake,
//! and from then on every packet is shifted between the two sequence
//! spaces the client and the server chose: `delta = cookie - server ISN`
//! is added to the server's sequence numbers going to the client and taken
//! from the client's acknowledgements (and SACK blocks) going to the
//! server. The window field of server packets is rescaled when the server's
//! window scale differs from the one vsd announced. Timestamps (RFC 7323)
//! are kept when client and server both use them: vsd's SYN-ACK carries
//! its own millisecond clock as TSval, the server's SYN carries the
//! client's, and `ts_delta = vsd's TSval - the server's` is added to the
//! server's TSval and taken from the client's TSecr on every segment, so
//! each side's PAWS and RTT measurement see one consistent clock.
//!
//! Why: a SYN flood with random sources creates no entry at all, so the
//! table never fills and real clients keep getting through (IPVS without a
//! proxy creates a SYN_RECV entry per SYN; see also [`crate::lb::defense`]).
//!
//! The cookie (as Linux's `syncookies.c`, own code): with a keyed SipHash
//! `H` over the client's tuple and `t = now / 64 s`,
//! `cookie = H0(tuple) + client ISN + (t << 24) + ((H1(tuple, t) + data) mod 2^24)`
//! where `data` (8 bits) holds the MSS table index, the client's window
//! scale, SACK permission and timestamp use (Linux puts the options in the
//! TSval's low bits instead; the 24-bit field has room for them here). An
//! ACK is valid when `t` recovered from its acknowledgement is at most
//! [`MAX_COOKIE_AGE`] periods old and `data` decodes (16 bits of the hash
//! must match). The keys are per process
//! (every worker core derives the same), so any core can check a cookie.
//!
//! Failure modes and limits: the MSS sent to the server is the table value
//! at or below the client's. The client's first data segment arriving
//! before the server's SYN-ACK (or carried by the cookie ACK) is held
//! ([`HeldPool`]) and sent in place of the bare ACK; later ones, or any
//! when the pool is full, are dropped and counted (the client retransmits).
//! ICMP errors quoting a proxied connection's segments are translated as
//! for any connection, without shifting the quoted sequence number. A server that refuses (RST) has its
//! RST passed on in the client's sequence space. Direct routing and
//! tunnelling cannot be proxied (replies bypass vsd, so sequence numbers
//! could not be shifted): such servers are refused for synproxy services.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use crate::lb::conn::ConnId;
use crate::lb::fwd::PacketInfo;
use crate::lb::packet::PacketBuf;
use crate::lb::siphash::siphash24_words;
use crate::wire::checksum;
use crate::wire::tcp_syn::{
    for_each_option, headers_len, write_ipv4_tcp, Segment, SynOptions, OPT_SACK, OPT_TIMESTAMP,
};

/// MSS values a cookie can carry (Linux's IPv4 table).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Length of one cookie period.
pub const COOKIE_PERIOD_MS: u64 = 64_000;
/// Oldest accepted cookie, in periods (2 to 3 minutes).
pub const MAX_COOKIE_AGE: u32 = 2;
/// Window scale vsd announces to clients that offer one.
pub const OUR_WSCALE: u8 = 7;
/// Window of vsd's SYN-ACK (unscaled, as in every SYN).
pub const SYNACK_WINDOW: u16 = 29200;
/// TTL of the segments vsd originates.
pub const TTL: u8 = 64;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const TCP_FIN: u8 = 0x01;

// ---------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------

/// The two SipHash keys of the cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieKey([[u64; 2]; 2]);

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl CookieKey {
    /// Keys from a seed (tests, benchmarks, fixed-seed runs).
    pub fn from_seed(mut seed: u64) -> Self {
        let mut n = || splitmix(&mut seed);
        CookieKey([[n(), n()], [n(), n()]])
    }

    /// This process's keys: random, the same for every core.
    pub fn process() -> Self {
        static KEY: OnceLock<CookieKey> = OnceLock::new();
        *KEY.get_or_init(|| {
            use std::hash::BuildHasher;
            let s = std::collections::hash_map::RandomState::new().hash_one("vsd synproxy");
            CookieKey::from_seed(s)
        })
    }
}

/// A client's flow as the cookie covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieFlow {
    pub client: Ipv4Addr,
    pub vip: Ipv4Addr,
    pub cport: u16,
    pub vport: u16,
}

impl CookieFlow {
    fn words(&self) -> [u64; 2] {
        [
            u64::from(u32::from(self.client)) << 32 | u64::from(u32::from(self.vip)),
            u64::from(self.cport) << 16 | u64::from(self.vport),
        ]
    }
}

/// What a cookie remembers of the client's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieData {
    /// Index in [`MSS_TABLE`].
    pub mss_idx: u8,
    /// The client's window scale, if it offered one.
    pub wscale: Option<u8>,
    /// The client allows SACK.
    pub sack: bool,
    /// The client offered timestamps (and vsd answered with its own).
    pub ts: bool,
}

/// Bits of `data` in a cookie.
const DATA_BITS: u32 = 8;

impl CookieData {
    /// From the client SYN's options.
    pub fn from_syn(o: &SynOptions) -> Self {
        let mss = o.mss.unwrap_or(536);
        let mss_idx = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8;
        CookieData {
            mss_idx,
            wscale: o.wscale,
            sack: o.sack_perm,
            ts: o.timestamp.is_some(),
        }
    }

    /// The MSS value.
    pub fn mss(&self) -> u16 {
        MSS_TABLE.get(self.mss_idx as usize).copied().unwrap_or(536)
    }

    fn encode(&self) -> u32 {
        let ws = self.wscale.map_or(0, |w| u32::from(w.min(14)) + 1);
        u32::from(self.mss_idx & 3) | ws << 2 | u32::from(self.sack) << 6 | u32::from(self.ts) << 7
    }

    fn decode(v: u32) -> Option<Self> {
        if v >> DATA_BITS != 0 {
            return None;
        }
        let ws = (v >> 2) & 0xf;
        Some(CookieData {
            mss_idx: (v & 3) as u8,
            wscale: (ws != 0).then(|| (ws - 1) as u8),
            sack: v & (1 << 6) != 0,
            ts: v & (1 << 7) != 0,
        })
    }
}

fn period(now_ms: u64) -> u32 {
    (now_ms / COOKIE_PERIOD_MS) as u32
}

/// The cookie (vsd's ISN) for a client SYN with sequence `client_isn`.
pub fn make_cookie(
    key: &CookieKey,
    flow: &CookieFlow,
    client_isn: u32,
    data: &CookieData,
    now_ms: u64,
) -> u32 {
    let w = flow.words();
    let t = period(now_ms);
    let h0 = siphash24_words(&key.0[0], &w) as u32;
    let h1 = siphash24_words(&key.0[1], &[w[0], w[1], u64::from(t)]) as u32;
    h0.wrapping_add(client_isn)
        .wrapping_add(t << 24)
        .wrapping_add(h1.wrapping_add(data.encode()) & 0x00ff_ffff)
}

/// Check the cookie an ACK returns (`ack - 1`) for a client whose ISN was
/// `client_isn` (`seq - 1`). `None` if forged or too old.
pub fn check_cookie(
    key: &CookieKey,
    flow: &CookieFlow,
    client_isn: u32,
    cookie: u32,
    now_ms: u64,
) -> Option<CookieData> {
    let w = flow.words();
    let h0 = siphash24_words(&key.0[0], &w) as u32;
    let c = cookie.wrapping_sub(h0).wrapping_sub(client_isn);
    let now = period(now_ms);
    // the period modulo 256, as carried in the top byte
    let age = (now.wrapping_sub(c >> 24)) & 0xff;
    if age > MAX_COOKIE_AGE {
        return None;
    }
    let t = now.wrapping_sub(age);
    let h1 = siphash24_words(&key.0[1], &[w[0], w[1], u64::from(t)]) as u32;
    CookieData::decode((c.wrapping_sub(h1)) & 0x00ff_ffff)
}

// ---------------------------------------------------------------------------------------
// Per-connection state
// ---------------------------------------------------------------------------------------

/// Handshake phase of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// SYN sent to the server, its SYN-ACK awaited.
    #[default]
    WaitServer,
    /// Both handshakes done: shift sequence numbers.
    Established,
}

/// What vsd keeps for one proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Proxied {
    /// The connection it belongs to (a slot reused by another connection
    /// no longer matches).
    pub conn: Option<ConnId>,
    pub phase: Phase,
    /// The client's initial sequence number.
    pub client_isn: u32,
    /// vsd's ISN towards the client (the cookie).
    pub our_isn: u32,
    /// `our_isn - server ISN`, once the server answered.
    pub delta: u32,
    /// Window field of the client's ACK (scaled by the client's shift).
    pub client_window: u16,
    /// Window shift the client applies to server windows.
    pub client_view_wscale: u8,
    /// Window shift the server applies to its windows.
    pub server_wscale: u8,
    /// Timestamps in use on both sides: shift TSval (server to client) and
    /// TSecr (client to server) by `ts_delta`.
    pub ts: bool,
    /// vsd's TSval in its SYN-ACK (the client's cookie ACK echoes it).
    pub our_tsval: u32,
    /// `our_tsval - the server's TSval`, once the server answered.
    pub ts_delta: u32,
    /// The client's TSval in its cookie ACK (echoed to the server).
    pub client_tsval: u32,
    /// Slot in [`HeldPool`] of the client's first data segment, kept until
    /// the server's handshake completes ([`NO_HELD`]: none).
    pub held: u16,
}

/// [`Proxied::held`] when nothing is held.
pub const NO_HELD: u16 = u16::MAX;
/// Held segments per core.
pub const HELD_SLOTS: usize = 128;
/// Largest IP packet a held slot takes (larger ones are dropped and counted
/// as before the handshake).
pub const HELD_SLOT_BYTES: usize = 1600;

/// Per-core copies of client data segments that arrived before the real
/// server's SYN-ACK (a client sends its request right after its ACK; that
/// segment would otherwise be lost and retransmitted only after the
/// client's retransmission timeout, 200 ms or more). One per connection;
/// the server's SYN-ACK is turned into it (its acknowledgement completes the
/// server's handshake as the bare ACK would). Slots of connections that
/// ended before their server answered are reclaimed when the pool runs dry.
#[derive(Debug, Default)]
pub struct HeldPool {
    bytes: Box<[u8]>,
    lens: Box<[u16]>,
    owners: Box<[Option<ConnId>]>,
    free: Vec<u16>,
}

impl HeldPool {
    fn allocate(&mut self) {
        self.bytes = vec![0u8; HELD_SLOTS * HELD_SLOT_BYTES].into_boxed_slice();
        self.lens = vec![0u16; HELD_SLOTS].into_boxed_slice();
        self.owners = vec![None; HELD_SLOTS].into_boxed_slice();
        self.free = (0..HELD_SLOTS as u16).rev().collect();
    }

    /// Keep a copy of `ip` (an IP packet) for `owner`; `live(id)` says
    /// whether a slot's owner still waits for its server (slots of others
    /// are reclaimed when no slot is free). `None`: too big or no room.
    pub fn hold(&mut self, owner: ConnId, ip: &[u8], live: impl Fn(ConnId) -> bool) -> Option<u16> {
        if ip.len() > HELD_SLOT_BYTES || self.owners.is_empty() {
            return None;
        }
        if self.free.is_empty() {
            for (i, o) in self.owners.iter_mut().enumerate() {
                if o.is_some_and(|id| !live(id)) {
                    *o = None;
                    self.free.push(i as u16);
                }
            }
        }
        let slot = self.free.pop()?;
        let at = usize::from(slot) * HELD_SLOT_BYTES;
        self.bytes.get_mut(at..at + ip.len())?.copy_from_slice(ip);
        if let (Some(l), Some(o)) = (
            self.lens.get_mut(usize::from(slot)),
            self.owners.get_mut(usize::from(slot)),
        ) {
            *l = ip.len() as u16;
            *o = Some(owner);
        }
        Some(slot)
    }

    /// The bytes held in `slot` for `owner` (`None` if the slot was
    /// reclaimed for another connection).
    pub fn get(&self, slot: u16, owner: ConnId) -> Option<&[u8]> {
        let i = usize::from(slot);
        if self.owners.get(i).copied().flatten() != Some(owner) {
            return None;
        }
        let len = usize::from(*self.lens.get(i)?);
        self.bytes
            .get(i * HELD_SLOT_BYTES..i * HELD_SLOT_BYTES + len)
    }

    /// Free `slot` if `owner` still has it.
    pub fn release(&mut self, slot: u16, owner: ConnId) {
        if let Some(o) = self.owners.get_mut(usize::from(slot)) {
            if *o == Some(owner) {
                *o = None;
                self.free.push(slot);
            }
        }
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.owners.iter().filter(|o| o.is_some()).count()
    }
}

impl ProxyTable {
    /// Hold `ip` (a copy of the packet from its IP header) for connection
    /// `id`, which waits for its server; `conn_live(id)` says whether a
    /// connection still exists (slots of connections gone or past their
    /// handshake are reclaimed when none is free). The slot, or `None`.
    pub fn hold(
        &mut self,
        id: ConnId,
        ip: &[u8],
        conn_live: impl Fn(ConnId) -> bool,
    ) -> Option<u16> {
        let slots = &self.slots;
        let slot = self.held.hold(id, ip, |o| {
            conn_live(o)
                && slots
                    .get(o.index() as usize)
                    .is_some_and(|s| s.conn == Some(o) && s.phase == Phase::WaitServer)
        })?;
        if let Some(p) = self.get_mut(id) {
            p.held = slot;
        }
        Some(slot)
    }
}

/// Put the held IP packet `ip` into `pkt` in place of what it carries from
/// `l3` on. False if the buffer has no room.
pub fn restore_held<P: PacketBuf>(pkt: &mut P, l3: usize, ip: &[u8]) -> bool {
    let need = l3 + ip.len();
    if pkt.len() < need && !pkt.append(need - pkt.len()) {
        return false;
    }
    pkt.truncate(need);
    match pkt.data_mut().get_mut(l3..need) {
        Some(b) => {
            b.copy_from_slice(ip);
            true
        }
        None => false,
    }
}

/// Side table of proxied connections, by connection-table slot. Allocated
/// on first use (one entry per slot of the connection table), so services
/// without synproxy cost nothing.
#[derive(Debug, Default)]
pub struct ProxyTable {
    slots: Box<[Proxied]>,
    /// Client data held until the server's handshake completes.
    pub held: HeldPool,
}

impl ProxyTable {
    /// Allocate the table (one entry per slot of a connection table of
    /// `capacity`) and the held-data pool, once.
    pub fn ensure(&mut self, capacity: usize) {
        if self.slots.is_empty() {
            self.slots = crate::lb::conn::huge_filled(capacity, Proxied::default());
            self.held.allocate();
        }
    }

    /// Whether any connection was ever proxied (the table is allocated).
    pub fn in_use(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Record connection `id` (slot `id.index()` of a table of `capacity`).
    pub fn insert(&mut self, capacity: usize, id: ConnId, p: Proxied) {
        self.ensure(capacity);
        if let Some(s) = self.slots.get_mut(id.index() as usize) {
            *s = Proxied {
                conn: Some(id),
                ..p
            };
        }
    }

    /// The state of connection `id`, if it is proxied (read only).
    pub fn get(&self, id: ConnId) -> Option<&Proxied> {
        self.slots
            .get(id.index() as usize)
            .filter(|s| s.conn == Some(id))
    }

    /// The state of connection `id`, if it is proxied.
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Proxied> {
        self.slots
            .get_mut(id.index() as usize)
            .filter(|s| s.conn == Some(id))
    }
}

// ---------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------

/// Why the proxy dropped a packet (mapped to a forwarding drop reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyDrop {
    /// An ACK whose cookie does not verify (forged, or older than 3 min).
    BadCookie,
    /// A packet the handshake does not expect (SYN-ACK from a client, FIN
    /// or bare data without a connection, ...).
    Unexpected,
    /// Client data before the server's handshake completed.
    NotReady,
    /// No room in the buffer to write the answer.
    NoRoom,
}

fn rd32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}
fn rd16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

/// TCP header length of the packet (its data offset).
fn tcp_header_len(frame: &[u8], info: &PacketInfo) -> usize {
    frame
        .get(info.l4 + 12)
        .map_or(20, |b| usize::from(b >> 4) * 4)
}

fn tcp_options<'a>(frame: &'a [u8], info: &PacketInfo) -> &'a [u8] {
    let hl = tcp_header_len(frame, info);
    frame.get(info.l4 + 20..info.l4 + hl).unwrap_or(&[])
}

/// Bytes of TCP payload.
pub fn payload_len(frame: &[u8], info: &PacketInfo) -> usize {
    info.end
        .saturating_sub(info.l4 + tcp_header_len(frame, info))
}

/// Write `seg` over the packet from its IP header on, dropping its payload.
fn rewrite<P: PacketBuf>(pkt: &mut P, info: &PacketInfo, seg: &Segment<'_>) -> bool {
    let need = info.l3 + headers_len(seg);
    if pkt.len() < need && !pkt.append(need - pkt.len()) {
        return false;
    }
    let ok = match pkt.data_mut().get_mut(info.l3..) {
        Some(b) => write_ipv4_tcp(b, seg, 0),
        None => false,
    };
    if ok {
        pkt.truncate(need);
    }
    ok
}

/// A client SYN to a proxied service: turn it into vsd's SYN-ACK carrying
/// the cookie, back to the client (Ethernet header left to the caller).
pub fn answer_syn<P: PacketBuf>(
    pkt: &mut P,
    info: &PacketInfo,
    key: &CookieKey,
    now_ms: u64,
    our_mss: u16,
) -> Result<(), ProxyDrop> {
    let frame = pkt.data();
    let client_isn = rd32(frame, info.l4 + 4);
    let opts = SynOptions::parse(tcp_options(frame, info));
    let data = CookieData::from_syn(&opts);
    let flow = CookieFlow {
        client: info.src,
        vip: info.dst,
        cport: info.sport,
        vport: info.dport,
    };
    let cookie = make_cookie(key, &flow, client_isn, &data, now_ms);
    let reply = SynOptions {
        mss: Some(our_mss),
        wscale: opts.wscale.map(|_| OUR_WSCALE),
        sack_perm: opts.sack_perm,
        // vsd's TSval: a millisecond clock, as Linux's
        timestamp: opts.timestamp.map(|(val, _)| (now_ms as u32, val)),
    };
    let (ob, on) = reply.emit();
    let seg = Segment {
        src: info.dst,
        dst: info.src,
        sport: info.dport,
        dport: info.sport,
        seq: cookie,
        ack: client_isn.wrapping_add(1),
        flags: TCP_SYN | TCP_ACK,
        window: SYNACK_WINDOW,
        ttl: TTL,
        options: &ob[..on],
    };
    if rewrite(pkt, info, &seg) {
        Ok(())
    } else {
        Err(ProxyDrop::NoRoom)
    }
}

/// A valid cookie ACK, as [`check_ack`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedCookie {
    pub data: CookieData,
    pub client_isn: u32,
    pub our_isn: u32,
    pub client_window: u16,
    /// Bytes of data the ACK carried (dropped when it becomes the SYN).
    pub payload: usize,
    /// The ACK's timestamps (TSval, TSecr), when the cookie says they were
    /// negotiated.
    pub timestamp: Option<(u32, u32)>,
}

/// A client packet to a proxied service without a connection: a pure ACK
/// (data allowed) with a valid cookie, or an error.
pub fn check_ack(
    frame: &[u8],
    info: &PacketInfo,
    key: &CookieKey,
    now_ms: u64,
) -> Result<AckedCookie, ProxyDrop> {
    if info.tcp_flags & (TCP_SYN | TCP_RST | TCP_FIN | TCP_ACK) != TCP_ACK {
        return Err(ProxyDrop::Unexpected);
    }
    let seq = rd32(frame, info.l4 + 4);
    let ack = rd32(frame, info.l4 + 8);
    let flow = CookieFlow {
        client: info.src,
        vip: info.dst,
        cport: info.sport,
        vport: info.dport,
    };
    let client_isn = seq.wrapping_sub(1);
    let our_isn = ack.wrapping_sub(1);
    let data = check_cookie(key, &flow, client_isn, our_isn, now_ms).ok_or(ProxyDrop::BadCookie)?;
    let timestamp = if data.ts {
        SynOptions::parse(tcp_options(frame, info)).timestamp
    } else {
        None
    };
    Ok(AckedCookie {
        data,
        client_isn,
        our_isn,
        client_window: rd16(frame, info.l4 + 14),
        payload: payload_len(frame, info),
        timestamp,
    })
}

/// Turn the client's cookie ACK into the SYN for the real server (same
/// addresses and ports: the method's rewrite follows), with the client's
/// ISN and the options the cookie kept.
pub fn ack_to_syn<P: PacketBuf>(pkt: &mut P, info: &PacketInfo, a: &AckedCookie) -> bool {
    let shift = a.data.wscale.unwrap_or(0);
    let window = (u32::from(a.client_window) << shift).min(0xffff) as u16;
    let o = SynOptions {
        mss: Some(a.data.mss()),
        wscale: a.data.wscale,
        sack_perm: a.data.sack,
        // the client's clock, as if its SYN went through
        timestamp: a.timestamp.map(|(val, _)| (val, 0)),
    };
    let (ob, on) = o.emit();
    let seg = Segment {
        src: info.src,
        dst: info.dst,
        sport: info.sport,
        dport: info.dport,
        seq: a.client_isn,
        ack: 0,
        flags: TCP_SYN,
        window,
        ttl: info.ttl,
        options: &ob[..on],
    };
    rewrite(pkt, info, &seg)
}

/// The state of a connection just opened from a cookie.
pub fn new_proxied(a: &AckedCookie) -> Proxied {
    Proxied {
        conn: None,
        phase: Phase::WaitServer,
        client_isn: a.client_isn,
        our_isn: a.our_isn,
        delta: 0,
        client_window: a.client_window,
        client_view_wscale: if a.data.wscale.is_some() {
            OUR_WSCALE
        } else {
            0
        },
        server_wscale: 0,
        ts: a.timestamp.is_some(),
        our_tsval: a.timestamp.map_or(0, |(_, ecr)| ecr),
        ts_delta: 0,
        client_tsval: a.timestamp.map_or(0, |(val, _)| val),
        held: NO_HELD,
    }
}

/// The server's SYN-ACK (a reply: source the server, destination the
/// client or the FULLNAT local address): learn its ISN and window scale
/// and turn it into the ACK that completes the server's handshake, sent
/// back to the server. False if it is not a SYN-ACK for our SYN.
pub fn synack_to_ack<P: PacketBuf>(pkt: &mut P, info: &PacketInfo, p: &mut Proxied) -> bool {
    accept_synack(pkt.data(), info, p) && ack_to_server(pkt, info, p)
}

/// Learn the server's ISN and window scale from its SYN-ACK (phase
/// Established from now on). False if it is not a SYN-ACK for our SYN.
pub fn accept_synack(frame: &[u8], info: &PacketInfo, p: &mut Proxied) -> bool {
    if info.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN | TCP_ACK
        || rd32(frame, info.l4 + 8) != p.client_isn.wrapping_add(1)
    {
        return false;
    }
    let server_isn = rd32(frame, info.l4 + 4);
    let opts = SynOptions::parse(tcp_options(frame, info));
    p.delta = p.our_isn.wrapping_sub(server_isn);
    match (p.ts, opts.timestamp) {
        (true, Some((server_val, _))) => p.ts_delta = p.our_tsval.wrapping_sub(server_val),
        // the server does not do timestamps: nothing to shift (the client
        // keeps sending its own, which the server ignores)
        _ => p.ts = false,
    }
    p.server_wscale = if p.client_view_wscale != 0 {
        opts.wscale.unwrap_or(0)
    } else {
        0
    };
    p.phase = Phase::Established;
    true
}

/// Turn the server's SYN-ACK (already accepted) into the bare ACK that
/// completes its handshake, back to the server.
pub fn ack_to_server<P: PacketBuf>(pkt: &mut P, info: &PacketInfo, p: &Proxied) -> bool {
    let mut ts = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    ts[4..8].copy_from_slice(&p.client_tsval.to_be_bytes());
    // TSecr: the server's own TSval
    let server_tsval = p.our_tsval.wrapping_sub(p.ts_delta);
    ts[8..12].copy_from_slice(&server_tsval.to_be_bytes());
    let options: &[u8] = if p.ts { &ts } else { &[] };
    let seg = Segment {
        src: info.dst,
        dst: info.src,
        sport: info.dport,
        dport: info.sport,
        seq: p.client_isn.wrapping_add(1),
        ack: p.our_isn.wrapping_sub(p.delta).wrapping_add(1),
        flags: TCP_ACK,
        window: p.client_window,
        ttl: TTL,
        options,
    };
    rewrite(pkt, info, &seg)
}

/// Set a 32-bit field of the TCP segment, updating its checksum (a field
/// at an odd offset, as a SACK block after a lone NOP may be, sums with its
/// bytes swapped pairwise).
fn set32(frame: &mut [u8], info: &PacketInfo, at: usize, new: u32) {
    let old = rd32(frame, at);
    if let Some(b) = frame.get_mut(at..at + 4) {
        b.copy_from_slice(&new.to_be_bytes());
    }
    let swap = |v: u32| ((v & 0x00ff_00ff) << 8) | ((v >> 8) & 0x00ff_00ff);
    let (o, n) = if (at - info.l4) % 2 == 1 {
        (swap(old), swap(new))
    } else {
        (old, new)
    };
    let c = rd16(frame, info.l4 + 16);
    let c = checksum::update_u32(c, o, n);
    if let Some(b) = frame.get_mut(info.l4 + 16..info.l4 + 18) {
        b.copy_from_slice(&c.to_be_bytes());
    }
}

/// A client packet of an established proxied connection: take `delta`
/// from its acknowledgement and SACK block edges (server sequence space).
pub fn adjust_client(frame: &mut [u8], info: &PacketInfo, delta: u32, ts_delta: Option<u32>) {
    if info.tcp_flags & TCP_ACK != 0 {
        let ack = rd32(frame, info.l4 + 8);
        set32(frame, info, info.l4 + 8, ack.wrapping_sub(delta));
    }
    let hl = tcp_header_len(frame, info);
    let mut edges = [0usize; 8];
    let mut n = 0;
    let mut ecr_at = None;
    if let Some(opts) = frame.get(info.l4 + 20..info.l4 + hl) {
        for_each_option(opts, |kind, v, at| {
            if kind == OPT_TIMESTAMP && v.len() == 8 {
                ecr_at = Some(info.l4 + 20 + at + 4);
            }
            if kind == OPT_SACK && v.len() % 8 == 0 {
                for i in 0..v.len() / 4 {
                    if let Some(e) = edges.get_mut(n) {
                        *e = info.l4 + 20 + at + 4 * i;
                        n += 1;
                    }
                }
            }
        });
    }
    for &at in &edges[..n] {
        let v = rd32(frame, at);
        set32(frame, info, at, v.wrapping_sub(delta));
    }
    // TSecr echoes vsd's clock: put the server's back
    if let (Some(at), Some(d)) = (ecr_at, ts_delta) {
        let v = rd32(frame, at);
        set32(frame, info, at, v.wrapping_sub(d));
    }
}

/// The `ts_delta` argument of [`adjust_client`] for a connection.
pub fn client_ts_delta(p: &Proxied) -> Option<u32> {
    (p.ts && p.phase == Phase::Established).then_some(p.ts_delta)
}

/// A server packet of an established proxied connection: add `delta` to
/// its sequence number and rescale its window to the shift the client
/// uses. Before the server answered, only its RST passes, put into the
/// client's sequence space.
pub fn adjust_server(frame: &mut [u8], info: &PacketInfo, p: &Proxied) {
    let seq = rd32(frame, info.l4 + 4);
    let new_seq = match p.phase {
        Phase::Established => seq.wrapping_add(p.delta),
        Phase::WaitServer => p.our_isn.wrapping_add(1),
    };
    set32(frame, info, info.l4 + 4, new_seq);
    if p.ts && p.phase == Phase::Established {
        // TSval on vsd's clock, as the client saw it in the SYN-ACK
        let hl = tcp_header_len(frame, info);
        let mut val_at = None;
        if let Some(opts) = frame.get(info.l4 + 20..info.l4 + hl) {
            for_each_option(opts, |kind, v, at| {
                if kind == OPT_TIMESTAMP && v.len() == 8 {
                    val_at = Some(info.l4 + 20 + at);
                }
            });
        }
        if let Some(at) = val_at {
            let v = rd32(frame, at);
            set32(frame, info, at, v.wrapping_add(p.ts_delta));
        }
    }
    if p.phase == Phase::Established && p.server_wscale != p.client_view_wscale {
        let w = u32::from(rd16(frame, info.l4 + 14));
        let bytes = u64::from(w) << p.server_wscale;
        let field = (bytes >> p.client_view_wscale).min(0xffff) as u16;
        let old = rd16(frame, info.l4 + 14);
        if let Some(b) = frame.get_mut(info.l4 + 14..info.l4 + 16) {
            b.copy_from_slice(&field.to_be_bytes());
        }
        let c = checksum::update_u16(rd16(frame, info.l4 + 16), old, field);
        if let Some(b) = frame.get_mut(info.l4 + 16..info.l4 + 18) {
            b.copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
