//! Mapping between vsd's connection entries ([`Conn`]) and IPVS sync
//! records ([`SyncConn`], the wire format of [`crate::wire::ipvs_sync`]).
//!
//! **What.** [`to_sync`] turns a live connection or persistence template
//! into the record a kernel master would send for it; [`SyncedConn`] is a
//! received record checked against what vsd can hold, ready to become a
//! [`NewConn`] (connections) or a [`PersistKey`] (templates) once the
//! caller has found the real server's [`DestId`].
//!
//! **Why here.** The wire module knows no vsd types; the connection table
//! knows no wire. The rules that bind them (forwarding bits, FULLNAT's
//! option, template state, fwmark templates, flags a backup keeps) live in
//! one place.
//!
//! **Rules, as the kernel's.** Forwarding bits: NAT `MASQ`, DR `DROUTE`,
//! TUN `TUNNEL`; FULLNAT is sent as `MASQ` with the local endpoint in vsd's
//! optional option. `INACTIVE` when the connection counts in InActConn,
//! `NOOUTPUT` while a DR/TUN connection has seen no reply, `TEMPLATE` for
//! templates, whose state is 1 once assured (`IP_VS_CTPL_S_ASSURED`), else
//! 0. One-packet connections are never synced. The timeout sent is the
//! current state's timeout in seconds (not what is left of it), as
//! `cp->timeout / HZ`. A fwmark template (protocol 0) carries the mark as
//! its virtual address: IPv4 the mark itself, IPv6 the mark in the first
//! four bytes (the kernel's `nf_inet_addr.ip`), and in `fwmark`.
//!
//! **Failure modes.** A record vsd cannot represent is refused with a
//! [`FromSyncError`] naming why (address family of the table, local-node or
//! bypass forwarding, protocol), so the daemon counts it as a drop.
//!
//! **Sequence adjustment.** The only vsd connections whose sequence numbers
//! are shifted are those its SYN proxy opened ([`crate::lb::synproxy`]):
//! server sequence numbers going to the client get `delta = cookie -
//! server ISN` added, client acknowledgements lose it. [`synproxy_options`]
//! writes that as the kernel's SEQ option would carry it: `out_seq =
//! {init_seq: server ISN, delta, previous_delta: 0}` (the kernel's
//! `vs_fix_seq` adds `delta` to output sequence numbers after `init_seq`,
//! `vs_fix_ack_seq` takes it from input acknowledgements after `init_seq +
//! delta` — though only for a connection bound to an application helper,
//! so a kernel backup keeps but never applies it), `in_seq` zero, flag
//! `OUT_SEQ`; the timestamp shift and the
//! window scales, which the kernel format lacks, go in vsd's optional
//! option ([`crate::wire::ipvs_sync::VSD_OPT_SYNPROXY`]). A vsd backup with
//! the same service (SYN proxy on) takes both and goes on shifting the
//! connection. Any other SEQ data (a kernel master's FTP helper, or in_seq,
//! or a previous delta, or SEQ data without vsd's option) is refused
//! ([`FromSyncError::SeqAdjust`]) rather than ignored: vsd has no helper
//! that could continue such a connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lb::conn::{Addr, Conn, ConnId, Endpoint, NewConn};
use crate::lb::load::DestId;
use crate::lb::persist::PersistKey;
use crate::lb::synproxy::{Phase, Proxied};
use crate::lb::tcp_state::{TcpState, TCP_STATE_COUNT};
use crate::lb::types::{FwdMethod, Protocol};
use crate::wire::ipvs_sync::{
    flags, EncodeError, SeqAdjust, SeqOptions, SyncConn, SyncEntry, SyncMessageBuilder,
    SynproxyState,
};

/// Template state once a controlled connection got established.
const TEMPLATE_ASSURED: u16 = 1;

/// A connection-table address that maps to and from the wire's `IpAddr`.
pub trait SyncAddr: Addr {
    fn to_ip(self) -> IpAddr;
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// The wire form of a fwmark template's virtual address.
    fn fwmark_to_ip(mark: u32) -> IpAddr;
    /// The mark of a fwmark template's virtual address on the wire.
    fn fwmark_from_ip(ip: IpAddr) -> Option<u32>;
    /// An address of the other family held in this table's form (an
    /// IPv4-mapped server or local address of an IPv6 connection).
    fn is_other_family(self) -> bool {
        false
    }
    /// Encode `rec` into `b`'s message straight from the record (the one
    /// encoder, [`SyncMessageBuilder::push_entry_then`], through the
    /// record's [`SyncEntry`] of this family); a message it does not fit
    /// into goes to `full` first.
    fn push_record(
        rec: &SyncRecord<Self>,
        b: &mut SyncMessageBuilder,
        full: impl FnOnce(&[u8]),
    ) -> Result<(), EncodeError>;
}

impl SyncAddr for u32 {
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        }
    }
    fn fwmark_to_ip(mark: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(mark))
    }
    fn fwmark_from_ip(ip: IpAddr) -> Option<u32> {
        Self::from_ip(ip)
    }
    #[inline(always)]
    fn push_record(
        rec: &SyncRecord<Self>,
        b: &mut SyncMessageBuilder,
        full: impl FnOnce(&[u8]),
    ) -> Result<(), EncodeError> {
        b.push_entry_then::<4>(rec, full)
    }
}

impl SyncAddr for u128 {
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(u128::from(a)),
            IpAddr::V4(_) => None,
        }
    }
    fn fwmark_to_ip(mark: u32) -> IpAddr {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&mark.to_be_bytes());
        IpAddr::V6(Ipv6Addr::from(o))
    }
    fn is_other_family(self) -> bool {
        Ipv6Addr::from(self).to_ipv4_mapped().is_some()
    }
    fn fwmark_from_ip(ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V6(a) => {
                let o = a.octets();
                Some(u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
            }
            IpAddr::V4(_) => None,
        }
    }
    #[inline(always)]
    fn push_record(
        rec: &SyncRecord<Self>,
        b: &mut SyncMessageBuilder,
        full: impl FnOnce(&[u8]),
    ) -> Result<(), EncodeError> {
        b.push_entry_then::<16>(rec, full)
    }
}

/// A table address in the wire's `N` bytes (network order), for
/// encoding a [`SyncRecord`] straight into a message ([`SyncEntry`]).
pub trait WireOctets<const N: usize>: SyncAddr {
    fn octets(self) -> [u8; N];
    /// A fwmark template's virtual address on the wire (as
    /// [`SyncAddr::fwmark_to_ip`]).
    fn fwmark_octets(mark: u32) -> [u8; N];
}

impl WireOctets<4> for u32 {
    #[inline(always)]
    fn octets(self) -> [u8; 4] {
        self.to_be_bytes()
    }
    #[inline(always)]
    fn fwmark_octets(mark: u32) -> [u8; 4] {
        mark.to_be_bytes()
    }
}

impl WireOctets<16> for u128 {
    #[inline(always)]
    fn octets(self) -> [u8; 16] {
        self.to_be_bytes()
    }
    #[inline(always)]
    fn fwmark_octets(mark: u32) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&mark.to_be_bytes());
        o
    }
}

/// A record encodes straight into a message: the same bytes as its
/// [`SyncRecord::to_wire`] through the same encoder (checked by a test),
/// without building the `SyncConn` on the worker.
impl<K: WireOctets<N>, const N: usize> SyncEntry<N> for SyncRecord<K> {
    #[inline(always)]
    fn protocol(&self) -> u8 {
        self.protocol
    }
    #[inline(always)]
    fn flags(&self) -> u32 {
        self.flags
    }
    #[inline(always)]
    fn state(&self) -> u16 {
        self.state
    }
    #[inline(always)]
    fn fwmark(&self) -> u32 {
        self.fwmark
    }
    #[inline(always)]
    fn timeout_s(&self) -> u32 {
        self.timeout_s
    }
    #[inline(always)]
    fn endpoints(&self) -> [([u8; N], u16); 3] {
        let vaddr = if self.flags & flags::TEMPLATE != 0 && self.protocol == 0 {
            K::fwmark_octets(self.fwmark)
        } else {
            self.vaddr.octets()
        };
        [
            (self.caddr.octets(), self.cport),
            (vaddr, self.vport),
            (self.daddr.octets(), self.dport),
        ]
    }
    #[inline(always)]
    fn fullnat_local(&self) -> Option<([u8; N], u16)> {
        self.has_local.then(|| (self.laddr.octets(), self.lport))
    }
    #[inline(always)]
    fn seq(&self) -> Option<SeqOptions> {
        self.proxy.map(|p| SeqOptions {
            in_seq: SeqAdjust::default(),
            out_seq: SeqAdjust {
                init_seq: p.server_isn,
                delta: p.delta,
                previous_delta: 0,
            },
        })
    }
    #[inline(always)]
    fn synproxy(&self) -> Option<SynproxyState> {
        self.proxy.map(|p| p.state)
    }
}

/// Why a connection is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToSyncError {
    /// One-packet connections are never synced (kernel rule).
    OnePacket,
    /// Server or local address of the other family than the client's
    /// (NAT64, TUN IPv6-in-IPv4): a sync entry has one family.
    MixedFamily,
}

impl fmt::Display for ToSyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToSyncError::OnePacket => f.write_str("one-packet connections are not synced"),
            ToSyncError::MixedFamily => {
                f.write_str("connections between address families are not synced")
            }
        }
    }
}

impl std::error::Error for ToSyncError {}

/// What every record of `conn` carries besides its endpoints: wire
/// flags, state, virtual address (a fwmark template's is the mark) and
/// fwmark.
fn record_head<A: SyncAddr>(
    conn: &Conn<A>,
    fwmark: u32,
) -> Result<(u32, u16, Endpoint<A>, u32), ToSyncError> {
    if conn.is_one_packet() {
        return Err(ToSyncError::OnePacket);
    }
    if conn.real().addr.is_other_family() || conn.local().is_some_and(|l| l.addr.is_other_family())
    {
        return Err(ToSyncError::MixedFamily);
    }
    let template = conn.is_template();
    let mut bits = match conn.fwd() {
        FwdMethod::Masq | FwdMethod::FullNat => flags::MASQ,
        FwdMethod::Route => flags::DROUTE,
        FwdMethod::Tunnel => flags::TUNNEL,
    };
    let (state, virt, fwmark) = if template {
        bits |= flags::TEMPLATE;
        let state = if conn.is_assured() {
            TEMPLATE_ASSURED
        } else {
            0
        };
        if conn.protocol_number() == 0 {
            let mark = fwmark_of(conn.virt().addr);
            (state, conn.virt(), mark)
        } else {
            (state, conn.virt(), fwmark)
        }
    } else {
        if !conn.is_active() {
            bits |= flags::INACTIVE;
        }
        if conn.no_reply_seen() {
            bits |= flags::NOOUTPUT;
        }
        // UDP has the single state 0 (IP_VS_UDP_S_NORMAL).
        let state = conn.tcp_state().map_or(0, |s| s as u16);
        (state, conn.virt(), fwmark)
    };
    Ok((bits, state, virt, fwmark))
}

/// The sync record for `conn`. `fwmark` is the firewall mark of the
/// connection's service (0 for address/port services); the backup looks
/// the service up by it.
pub fn to_sync<A: SyncAddr>(conn: &Conn<A>, fwmark: u32) -> Result<SyncConn, ToSyncError> {
    let (flags, state, virt, fwmark) = record_head(conn, fwmark)?;
    let sa = |e: Endpoint<A>| SocketAddr::new(e.addr.to_ip(), e.port);
    let virt = if conn.is_template() && conn.protocol_number() == 0 {
        SocketAddr::new(A::fwmark_to_ip(fwmark), virt.port)
    } else {
        sa(virt)
    };
    Ok(SyncConn {
        protocol: conn.protocol_number(),
        flags,
        state,
        client: sa(conn.client()),
        virt,
        real: sa(conn.real()),
        fwmark,
        timeout_s: conn.timeout_ms() / 1000,
        seq: None,
        fullnat_local: conn.local().map(sa),
        synproxy: None,
    })
}

/// A SYN proxy connection's shifts as a record carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyShift {
    pub server_isn: u32,
    pub delta: u32,
    pub state: SynproxyState,
}

/// What a worker hands to the sync daemon for one entry of one of its
/// tables (`K`: `u32` IPv4, `u128` IPv6, each table with its own queue):
/// the fields of a sync entry in 60 bytes (IPv4), copied by value through
/// the worker's buffer and queue; the daemon's thread turns it into the
/// wire form ([`SyncRecord::to_wire`]), so the worker neither builds
/// socket addresses nor copies the ~190-byte [`SyncConn`]. The data-plane
/// master encodes it on the worker straight into its message
/// ([`SyncAddr::push_record`], through the record's [`SyncEntry`]): the
/// same encoder and bytes as its `to_wire` form, without building that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRecord<K = u32> {
    pub caddr: K,
    /// A fwmark template's: the mark as the table keeps it.
    pub vaddr: K,
    pub daddr: K,
    pub laddr: K,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub lport: u16,
    pub flags: u32,
    pub fwmark: u32,
    pub timeout_s: u32,
    pub state: u16,
    pub protocol: u8,
    pub has_local: bool,
    pub proxy: Option<ProxyShift>,
}

impl<K: SyncAddr> SyncRecord<K> {
    /// The record of `conn` (see [`to_sync`]).
    pub fn of(conn: &Conn<K>, fwmark: u32) -> Result<SyncRecord<K>, ToSyncError> {
        let (flags, state, virt, fwmark) = record_head(conn, fwmark)?;
        let (laddr, lport, has_local) = match conn.local() {
            Some(l) => (l.addr, l.port, true),
            None => (K::default(), 0, false),
        };
        let vaddr = if conn.is_template() && conn.protocol_number() == 0 {
            K::from_fwmark(fwmark)
        } else {
            virt.addr
        };
        Ok(SyncRecord {
            caddr: conn.client().addr,
            vaddr,
            daddr: conn.real().addr,
            laddr,
            cport: conn.client().port,
            vport: virt.port,
            dport: conn.real().port,
            lport,
            flags,
            fwmark,
            timeout_s: conn.timeout_ms() / 1000,
            state,
            protocol: conn.protocol_number(),
            has_local,
            proxy: None,
        })
    }

    /// Add a proxied connection's shifts ([`synproxy_options`]).
    pub fn add_synproxy(&mut self, p: &Proxied) {
        if let Some((seq, state)) = synproxy_options(p) {
            self.proxy = Some(ProxyShift {
                server_isn: seq.out_seq.init_seq,
                delta: seq.out_seq.delta,
                state,
            });
            self.flags |= flags::OUT_SEQ;
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> SyncConn {
        let sa = |a: K, p: u16| SocketAddr::new(a.to_ip(), p);
        let fwmark_template = self.flags & flags::TEMPLATE != 0 && self.protocol == 0;
        SyncConn {
            protocol: self.protocol,
            flags: self.flags,
            state: self.state,
            client: sa(self.caddr, self.cport),
            virt: if fwmark_template {
                SocketAddr::new(K::fwmark_to_ip(self.fwmark), self.vport)
            } else {
                sa(self.vaddr, self.vport)
            },
            real: sa(self.daddr, self.dport),
            fwmark: self.fwmark,
            timeout_s: self.timeout_s,
            seq: self.proxy.map(|p| SeqOptions {
                in_seq: SeqAdjust::default(),
                out_seq: SeqAdjust {
                    init_seq: p.server_isn,
                    delta: p.delta,
                    previous_delta: 0,
                },
            }),
            fullnat_local: self.has_local.then(|| sa(self.laddr, self.lport)),
            synproxy: self.proxy.map(|p| p.state),
        }
    }

    /// The record of a wire entry of `K`'s family (`None` for the other
    /// family, and for SEQ data other than a SYN proxy's): for tests and
    /// tools.
    pub fn from_wire(s: &SyncConn) -> Option<SyncRecord<K>> {
        let ep = |a: SocketAddr| Some((K::from_ip(a.ip())?, a.port()));
        let (caddr, cport) = ep(s.client)?;
        let (vaddr, vport) = if s.flags & flags::TEMPLATE != 0 && s.protocol == 0 {
            K::from_ip(s.virt.ip())?;
            (
                K::from_fwmark(K::fwmark_from_ip(s.virt.ip())?),
                s.virt.port(),
            )
        } else {
            ep(s.virt)?
        };
        let (daddr, dport) = ep(s.real)?;
        let (laddr, lport) = match s.fullnat_local {
            Some(l) => ep(l)?,
            None => (K::default(), 0),
        };
        let proxy = match (s.seq, s.synproxy) {
            (None, None) => None,
            (Some(q), Some(state)) if q.in_seq == SeqAdjust::default() => Some(ProxyShift {
                server_isn: q.out_seq.init_seq,
                delta: q.out_seq.delta,
                state,
            }),
            _ => return None,
        };
        Some(SyncRecord {
            caddr,
            vaddr,
            daddr,
            laddr,
            cport,
            vport,
            dport,
            lport,
            flags: s.flags,
            fwmark: s.fwmark,
            timeout_s: s.timeout_s,
            state: s.state,
            protocol: s.protocol,
            has_local: s.fullnat_local.is_some(),
            proxy,
        })
    }
}

/// The SEQ option and vsd's SYN proxy option for a proxied connection in
/// state `p` (`None` before the server answered: nothing is shifted yet).
pub fn synproxy_options(p: &Proxied) -> Option<(SeqOptions, SynproxyState)> {
    if p.phase != Phase::Established {
        return None;
    }
    let seq = SeqOptions {
        in_seq: SeqAdjust::default(),
        out_seq: SeqAdjust {
            init_seq: p.our_isn.wrapping_sub(p.delta),
            delta: p.delta,
            previous_delta: 0,
        },
    };
    let state = SynproxyState {
        ts: p.ts,
        ts_delta: p.ts_delta,
        server_wscale: p.server_wscale,
        client_wscale: p.client_view_wscale,
    };
    Some((seq, state))
}

/// A received SYN proxy connection: its sequence shift and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedProxy {
    /// The server's ISN (`out_seq.init_seq`).
    pub server_isn: u32,
    /// `out_seq.delta`: cookie - server ISN.
    pub delta: u32,
    pub state: SynproxyState,
}

impl SyncedProxy {
    /// The proxy's state for the connection, as the master had it once
    /// both handshakes were done.
    pub fn proxied(&self) -> Proxied {
        Proxied {
            phase: Phase::Established,
            our_isn: self.server_isn.wrapping_add(self.delta),
            delta: self.delta,
            ts: self.state.ts,
            ts_delta: self.state.ts_delta,
            server_wscale: self.state.server_wscale,
            client_view_wscale: self.state.client_wscale,
            ..Proxied::default()
        }
    }
}

/// The mark vsd stores in a fwmark template's address field (its low 32
/// bits, see [`Addr::from_fwmark`]).
fn fwmark_of<A: SyncAddr>(addr: A) -> u32 {
    match addr.to_ip() {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => u128::from(a) as u32,
    }
}

/// Why a received record cannot go into a vsd table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FromSyncError {
    /// IPv6 record for an IPv4 table or the other way round.
    AddressFamily,
    /// Local-node, bypass or an undefined forwarding method.
    ForwardingMethod(u32),
    /// A connection of a protocol vsd does not balance.
    Protocol(u8),
    /// A state number out of range (TCP 0..=10, UDP 0, templates 0 or 1).
    State(u16),
    /// Sequence adjustment data vsd cannot continue (anything but its SYN
    /// proxy's shift, see the module note).
    SeqAdjust,
}

impl fmt::Display for FromSyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FromSyncError::AddressFamily => f.write_str("address family of another table"),
            FromSyncError::ForwardingMethod(m) => write!(f, "forwarding method {m} not supported"),
            FromSyncError::Protocol(p) => write!(f, "protocol {p} not supported"),
            FromSyncError::State(s) => write!(f, "state {s} out of range"),
            FromSyncError::SeqAdjust => f.write_str("sequence adjustment not supported"),
        }
    }
}

impl std::error::Error for FromSyncError {}

/// A received record in vsd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedConn<A> {
    /// IP protocol number (0: fwmark template).
    pub proto: u8,
    pub client: Endpoint<A>,
    /// Virtual address and port (fwmark templates: the mark as vsd keeps it).
    pub virt: Endpoint<A>,
    pub local: Option<Endpoint<A>>,
    pub real: Endpoint<A>,
    pub fwd: FwdMethod,
    pub template: bool,
    /// TCP state in the kernel's numbering; templates: 1 assured, else 0.
    pub state: u16,
    /// Counted in InActConn.
    pub inactive: bool,
    /// DR/TUN connection that has seen no reply.
    pub no_output: bool,
    /// Timeout of the state, seconds (0: use the local timeout table).
    pub timeout_s: u32,
    pub fwmark: u32,
    /// A SYN proxy connection's shifts (vsd masters only).
    pub synproxy: Option<SyncedProxy>,
}

impl<A: SyncAddr> SyncedConn<A> {
    /// Checks `s` against what a vsd table of address type `A` can hold.
    pub fn from_sync(s: &SyncConn) -> Result<Self, FromSyncError> {
        let ep = |a: SocketAddr| {
            A::from_ip(a.ip())
                .map(|addr| Endpoint::new(addr, a.port()))
                .ok_or(FromSyncError::AddressFamily)
        };
        let template = s.flags & flags::TEMPLATE != 0;
        let synproxy = match (s.seq, s.synproxy) {
            (None, None) => None,
            (Some(q), Some(state))
                if !template
                    && q.in_seq == SeqAdjust::default()
                    && q.out_seq.previous_delta == 0 =>
            {
                Some(SyncedProxy {
                    server_isn: q.out_seq.init_seq,
                    delta: q.out_seq.delta,
                    state,
                })
            }
            _ => return Err(FromSyncError::SeqAdjust),
        };
        let fwd = match s.flags & flags::FWD_MASK {
            flags::MASQ if s.fullnat_local.is_some() => FwdMethod::FullNat,
            flags::MASQ => FwdMethod::Masq,
            flags::DROUTE => FwdMethod::Route,
            flags::TUNNEL => FwdMethod::Tunnel,
            other => return Err(FromSyncError::ForwardingMethod(other)),
        };
        let virt = if template && s.protocol == 0 {
            let mark = A::fwmark_from_ip(s.virt.ip()).ok_or(FromSyncError::AddressFamily)?;
            Endpoint::new(A::from_fwmark(mark), s.virt.port())
        } else {
            ep(s.virt)?
        };
        match (template, s.protocol) {
            (true, 0) | (_, 6) | (_, 17) => {}
            (_, p) => return Err(FromSyncError::Protocol(p)),
        }
        let state_ok = match (template, s.protocol) {
            // The kernel only logs odd template states; vsd keeps 0/1.
            (true, _) => s.state <= TEMPLATE_ASSURED,
            (false, 6) => usize::from(s.state) < TCP_STATE_COUNT,
            _ => s.state == 0,
        };
        if !state_ok {
            return Err(FromSyncError::State(s.state));
        }
        Ok(SyncedConn {
            proto: s.protocol,
            client: ep(s.client)?,
            virt,
            local: s.fullnat_local.map(ep).transpose()?,
            real: ep(s.real)?,
            fwd,
            template,
            state: s.state,
            inactive: s.flags & flags::INACTIVE != 0,
            no_output: s.flags & flags::NOOUTPUT != 0,
            timeout_s: s.timeout_s,
            fwmark: s.fwmark,
            synproxy,
        })
    }

    /// The transport protocol (`None` for a fwmark template).
    pub fn protocol(&self) -> Option<Protocol> {
        match self.proto {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// TCP state (`None` for UDP and templates).
    pub fn tcp_state(&self) -> Option<TcpState> {
        (!self.template && self.proto == 6)
            .then(|| TcpState::from_u8(self.state as u8))
            .flatten()
    }

    /// The connection to insert, bound to server `dest` and, if one is
    /// known, its `template` (`None` for a template record).
    pub fn new_conn(&self, dest: DestId, template: Option<ConnId>) -> Option<NewConn<A>> {
        if self.template {
            return None;
        }
        Some(NewConn {
            proto: self.protocol()?,
            client: self.client,
            virt: self.virt,
            local: self.local,
            real: self.real,
            dest,
            fwd: self.fwd,
            one_packet: false,
            template,
        })
    }

    /// The key of a template record (`None` for a connection).
    pub fn persist_key(&self) -> Option<PersistKey<A>> {
        self.template.then(|| {
            PersistKey::from_parts(self.proto, self.client.addr, self.virt.addr, self.virt.port)
        })
    }
}

/// The kernel's sync sysctls (`Documentation/networking/ipvs-sysctl.rst`),
/// with its defaults. Checked by [`SyncSettings::validate`] as the kernel's
/// handlers check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// `sync_threshold`'s first value: a connection is synced when its
    /// packet count modulo `period` equals it (default 3).
    pub threshold: u32,
    /// `sync_threshold`'s second value, the `sync_period` (default 50; 0:
    /// sync once, when the count equals `threshold`, and on state changes).
    pub period: u32,
    /// `sync_refresh_period`, seconds (default 0: off). When on, an entry
    /// is not sent again while its timeout moved by less than this (or less
    /// than half its timeout, at least 10 s) since it was last sent.
    pub refresh_period_s: u32,
    /// `sync_retries`, 0..=3 (default 0): extra sends, each 1/8 of
    /// `refresh_period` apart, of an entry the refresh period holds back.
    pub retries: u8,
    /// `sync_persist_mode` (default off): connections of persistent
    /// services are not sent, only their templates.
    pub persist_mode: bool,
    /// `sync_version` (default 1). vsd sends version 1 only (it reads both).
    pub version: u8,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            threshold: 3,
            period: 50,
            refresh_period_s: 0,
            retries: 0,
            persist_mode: false,
            version: 1,
        }
    }
}

/// Largest `sync_refresh_period` in seconds: the decision works in
/// wrapping 32-bit milliseconds (the kernel's limit is `INT_MAX` jiffies).
pub const MAX_REFRESH_PERIOD_S: u32 = 24 * 24 * 3600;

impl SyncSettings {
    /// The kernel's checks: `threshold < period` unless `period` is 0
    /// (`proc_do_sync_threshold`), `retries` 0..=3, version 0 or 1 — and
    /// version 0 refused because vsd does not send it.
    pub fn validate(&self) -> Result<(), String> {
        if self.period != 0 && self.threshold >= self.period {
            return Err(format!(
                "sync_threshold {} {}: the threshold must be below the period (or the period 0)",
                self.threshold, self.period
            ));
        }
        if self.retries > 3 {
            return Err(format!("sync_retries {}: must be 0..3", self.retries));
        }
        if self.refresh_period_s > MAX_REFRESH_PERIOD_S {
            return Err(format!(
                "sync_refresh_period {}: at most {MAX_REFRESH_PERIOD_S} seconds",
                self.refresh_period_s
            ));
        }
        match self.version {
            1 => Ok(()),
            0 => Err("sync_version 0: vsd sends sync protocol version 1 only \
                      (its backup reads version 0)"
                .into()),
            v => Err(format!("sync_version {v}: must be 0 or 1")),
        }
    }

    /// `key=value` words as `--set-sync` and `-L --sync` spell them.
    pub fn render(&self) -> String {
        format!(
            "threshold={} period={} refresh_period={} retries={} persist_mode={} version={}",
            self.threshold,
            self.period,
            self.refresh_period_s,
            self.retries,
            u8::from(self.persist_mode),
            self.version
        )
    }
}

/// What the master remembers about one entry between its sync decisions:
/// the kernel's `cp->sync_endtime` (when the entry's timeout would end as
/// last sent, with the retries in the low two bits) and `cp->old_state`.
/// Kept in a side table of the worker, packed into a `u64` so a zeroed
/// table means "never decided": bits 0..32 the end (wrapping milliseconds),
/// 32..40 the old state, 40..63 the entry's slab generation (low 23 bits,
/// to notice a reused slot), bit 63 "set".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncMark(pub u64);

const MARK_SET: u64 = 1 << 63;
const MARK_GEN_MASK: u32 = (1 << 23) - 1;

impl SyncMark {
    /// The mark of an entry of generation `gen`, fresh as the kernel's
    /// `ip_vs_conn_new` leaves it (end = now, old state NONE) if `self`
    /// belongs to another entry or none.
    fn for_entry(self, gen: u32, now_ms: u64) -> (u32, u8) {
        let g = u64::from(gen & MARK_GEN_MASK) << 40;
        if self.0 & MARK_SET != 0 && self.0 & (u64::from(MARK_GEN_MASK) << 40) == g {
            (self.0 as u32, (self.0 >> 32) as u8)
        } else {
            ((now_ms as u32) & !3, TcpState::None as u8)
        }
    }

    fn new(gen: u32, end: u32, old_state: u8) -> SyncMark {
        SyncMark(
            MARK_SET
                | u64::from(gen & MARK_GEN_MASK) << 40
                | u64::from(old_state) << 32
                | u64::from(end),
        )
    }
}

/// TCP states the kernel syncs (`ip_vs_sync_conn_needed`): ESTABLISHED and
/// the closing states FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT.
fn tcp_state_synced(s: TcpState) -> bool {
    matches!(
        s,
        TcpState::Established
            | TcpState::FinWait
            | TcpState::Close
            | TcpState::CloseWait
            | TcpState::TimeWait
    )
}

/// The common case of [`sync_decide`], from the entry alone: `true` when
/// `conn`, a connection after a client packet (`pkts` its packet count),
/// is surely not sent — a TCP state the kernel never syncs, or ESTABLISHED
/// (or UDP) between two thresholds of the period — so that deciding it
/// needs neither the side table nor a call. `false`: ask [`sync_decide`]
/// (templates, closing states, a threshold reached). A connection
/// controlled by a template is the caller's to exclude (its template is
/// decided on every packet).
#[inline]
pub fn sync_surely_not<A: Addr>(conn: &Conn<A>, pkts: u32, s: &SyncSettings) -> bool {
    if conn.is_template() {
        return false;
    }
    match conn.tcp_state() {
        Some(TcpState::Established) => {}
        Some(st) => return !tcp_state_synced(st),
        None if conn.protocol_number() == 17 => {}
        None => return true,
    }
    if s.period > 0 {
        pkts % s.period != s.threshold
    } else {
        s.refresh_period_s == 0 && pkts != s.threshold
    }
}

/// The kernel's `ip_vs_sync_conn_needed` for entry `conn` (a connection or
/// a template) after a client packet: `pkts` is its packet count including
/// this one, `mark` its memory (updated when the entry is sent),
/// `persistent` whether it is a connection controlled by a template.
///
/// - TCP connections only in ESTABLISHED and the closing states; a change
///   into a closing state (from the state last decided on) is sent at once.
/// - With `refresh_period` on, an entry whose timeout end moved by less
///   than `min(refresh_period, max(timeout / 2, 10 s))` since it was last
///   sent is held back, unless it has retries left and `refresh_period / 8`
///   passed since then.
/// - Otherwise connections are sent when `pkts % period == threshold`
///   (`period` 0: when `pkts == threshold`, unless `refresh_period` is on);
///   templates every time (the kernel's rule; only `refresh_period` or
///   `period` 0 thin them).
/// - `persist_mode`: connections of persistent services never.
///
/// One-packet connections are the caller's business (never sent, but their
/// template is decided on).
pub fn sync_decide<A: Addr>(
    conn: &Conn<A>,
    mark: &mut u64,
    pkts: u32,
    now_ms: u64,
    persistent: bool,
    s: &SyncSettings,
) -> bool {
    let template = conn.is_template();
    let mut closing = false;
    if template {
        // templates: decided by the refresh period and the period only
    } else if s.persist_mode && persistent {
        return false;
    } else if let Some(st) = conn.tcp_state() {
        if !tcp_state_synced(st) {
            return false;
        }
        closing = st != TcpState::Established;
    } else if conn.protocol_number() != 17 {
        return false;
    }
    // The memory is read only when needed (a closing state, the refresh
    // period, a send): for most packets of a busy connection the period
    // alone says no, without touching the side table.
    let now = now_ms as u32;
    let timeout = conn.timeout_ms();
    let state = if template { 0 } else { conn.state };
    if closing {
        let (_, old_state) = SyncMark(*mark).for_entry(conn.gen, now_ms);
        if state != old_state {
            // a change into a closing state is sent at once (the kernel's
            // `force`; its cmpxchg always succeeds here: one writer)
            *mark = SyncMark::new(conn.gen, now.wrapping_add(timeout) & !3, state).0;
            return true;
        }
    }
    // the kernel checks the refresh period first; both must pass, and
    // neither changes anything when the other fails
    let refresh_ms = s.refresh_period_s.saturating_mul(1000);
    if s.period > 0 {
        if !template && pkts % s.period != s.threshold {
            return false;
        }
    } else if refresh_ms == 0 && pkts != s.threshold {
        return false;
    }
    let mut n = now.wrapping_add(timeout) & !3;
    if refresh_ms > 0 {
        let (orig, _) = SyncMark(*mark).for_entry(conn.gen, now_ms);
        let diff = n.wrapping_sub(orig) as i32;
        let min_diff = (timeout / 2).max(10_000);
        if diff.unsigned_abs() < refresh_ms.min(min_diff) {
            let retries = orig & 3;
            if retries >= u32::from(s.retries) {
                return false;
            }
            // time_before(now, orig - timeout + refresh / 8)
            let since = orig.wrapping_sub(timeout).wrapping_add(refresh_ms >> 3);
            if (now.wrapping_sub(since) as i32) < 0 {
                return false;
            }
            n |= retries + 1;
        }
    }
    *mark = SyncMark::new(conn.gen, n, state).0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::conn::{ConnTable, Direction, Seed};
    use crate::lb::load::CoreLoad;
    use crate::lb::tcp_state::tcp_flags::{ACK, SYN};
    use crate::wire::ipvs_sync::decode;
    use std::sync::Arc;

    fn table<A: SyncAddr>() -> ConnTable<A> {
        ConnTable::with_seed(64, Arc::new(CoreLoad::new(4)), 0, Seed::new(7)).unwrap()
    }

    fn new_conn<A: Addr>(
        c: A,
        v: A,
        r: A,
        fwd: FwdMethod,
        local: Option<Endpoint<A>>,
    ) -> NewConn<A> {
        NewConn {
            proto: Protocol::Tcp,
            client: Endpoint::new(c, 40000),
            virt: Endpoint::new(v, 80),
            local,
            real: Endpoint::new(r, 8080),
            dest: 1,
            fwd,
            one_packet: false,
            template: None,
        }
    }

    /// Through the wire and back: what a backup gets is what the master had.
    fn over_the_wire<A: SyncAddr>(s: SyncConn) -> SyncedConn<A> {
        let mut b = SyncMessageBuilder::new(1, 1500).unwrap();
        assert!(b.push(&s).unwrap().is_none());
        let msg = b.finish().unwrap();
        let got = decode(&msg, 1).unwrap().entries[0].unwrap();
        SyncedConn::from_sync(&got).unwrap()
    }

    /// Every kind of record a director makes (and a few it refuses), with
    /// addresses from `addr`.
    fn record_kinds<K: SyncAddr>(addr: impl Fn(u8) -> K) -> Vec<SyncRecord<K>> {
        let proxy = ProxyShift {
            server_isn: 0x0102_0304,
            delta: 0xfedc_ba98,
            state: SynproxyState {
                ts: true,
                ts_delta: 0x1122_3344,
                server_wscale: 7,
                client_wscale: 3,
            },
        };
        let mut out = Vec::new();
        let mut n = 0u16;
        for fwd in [flags::MASQ, flags::TUNNEL, flags::DROUTE, flags::LOCALNODE] {
            for extra in [
                0,
                flags::INACTIVE,
                flags::NOOUTPUT,
                flags::INACTIVE | flags::NOOUTPUT | flags::NO_CPORT,
                flags::TEMPLATE,
                flags::ONE_PACKET,
                flags::HASHED | flags::SYNC,
            ] {
                for protocol in [6u8, 17, 0] {
                    for local in [false, true] {
                        for with_proxy in [false, true] {
                            n = n.wrapping_add(1);
                            let mut fl = fwd | extra;
                            if with_proxy {
                                fl |= flags::OUT_SEQ;
                            }
                            out.push(SyncRecord {
                                caddr: addr(1),
                                vaddr: addr(2),
                                daddr: addr(3),
                                laddr: if local { addr(4) } else { K::default() },
                                cport: 40000 + n,
                                vport: 80,
                                dport: 8080 + n,
                                lport: if local { 50000 - n } else { 0 },
                                flags: fl,
                                fwmark: u32::from(n) * 0x0101,
                                timeout_s: 900 + u32::from(n),
                                state: n % 11,
                                protocol,
                                has_local: local,
                                proxy: with_proxy.then_some(proxy),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The direct encoding of records ([`SyncEntry`]) is byte for byte the
    /// general encoder's of their `SyncConn` (the kernel-socket master's
    /// path), message by message, refusals included, in both placements
    /// and across message splits (the builder reuses its buffer).
    fn direct_encoding_is_the_general_encoders<K: WireOctets<N>, const N: usize>(
        recs: &[SyncRecord<K>],
    ) {
        use crate::wire::ipvs_sync::{OptionPlacement, MIN_MAXLEN};
        let mut refused = 0;
        for placement in [OptionPlacement::Packed, OptionPlacement::LastOnly] {
            for maxlen in [MIN_MAXLEN, 1472, 9000] {
                let mut direct = SyncMessageBuilder::with_placement(3, maxlen, placement).unwrap();
                let mut general = SyncMessageBuilder::with_placement(3, maxlen, placement).unwrap();
                let (mut want, mut got) = (Vec::new(), Vec::new());
                for r in recs {
                    let g = general.push(&r.to_wire()).map(|m| want.extend(m));
                    let d = direct.push_entry_then(r, |m| got.push(m.to_vec()));
                    assert_eq!(d, g.map(|_| ()), "{r:?}");
                    refused += usize::from(d.is_err());
                    // one record alone in a message too
                    let mut one = SyncMessageBuilder::with_placement(3, maxlen, placement).unwrap();
                    if d.is_ok() {
                        one.push_entry_then(r, |_| panic!("a message of one"))
                            .unwrap();
                        let mut alone = SyncMessageBuilder::new(3, maxlen).unwrap();
                        alone.push(&r.to_wire()).unwrap();
                        assert_eq!(one.finish(), alone.finish(), "{r:?}");
                    }
                }
                want.extend(general.finish());
                direct.finish_then(|m| got.push(m.to_vec()));
                assert!(
                    want.len() > 1 || maxlen == 9000,
                    "{placement:?} {maxlen}: splits"
                );
                assert_eq!(got, want, "{placement:?} {maxlen}");
                for m in &got {
                    assert!(decode(m, 3).is_ok());
                }
            }
        }
        assert!(refused > 0, "refusals are covered");
    }

    #[test]
    fn direct_record_encoding_equals_the_general_encoder() {
        let v4 = record_kinds(|i| 0xc612_0000u32 | u32::from(i) << 8 | 7);
        let v6 = record_kinds(|i| 0x2001_0db8_u128 << 96 | u128::from(i) << 16 | 7);
        assert!(v4
            .iter()
            .any(|r| r.has_local && r.flags & flags::TEMPLATE == 0));
        direct_encoding_is_the_general_encoders(&v4);
        direct_encoding_is_the_general_encoders(&v6);
    }

    #[test]
    fn every_method_maps_to_its_kernel_bits_and_back() {
        let lip = Endpoint::new(0xc612_0301u32, 50000);
        for (fwd, bits) in [
            (FwdMethod::Masq, flags::MASQ),
            (FwdMethod::Route, flags::DROUTE),
            (FwdMethod::Tunnel, flags::TUNNEL),
            (FwdMethod::FullNat, flags::MASQ),
        ] {
            let mut t = table::<u32>();
            let local = (fwd == FwdMethod::FullNat).then_some(lip);
            let nc = new_conn(0xc612_0001, 0xc612_0101, 0xc612_0201, fwd, local);
            let id = t.insert(&nc, 0).unwrap();
            assert!(t.update_state(id, Direction::Input, SYN, 0));
            let s = to_sync(t.get(id).unwrap(), 0).unwrap();
            assert_eq!(s.flags & flags::FWD_MASK, bits, "{fwd:?}");
            assert_eq!(
                s.fullnat_local,
                local.map(|_| "198.18.3.1:50000".parse().unwrap())
            );
            assert_eq!(s.flags & flags::TEMPLATE, 0);
            assert_eq!(s.state, TcpState::SynRecv as u16);
            assert_eq!(
                s.flags & flags::INACTIVE != 0,
                !t.get(id).unwrap().is_active()
            );
            assert_eq!(s.timeout_s * 1000, t.get(id).unwrap().timeout_ms());
            let back: SyncedConn<u32> = over_the_wire(s);
            assert_eq!(back.fwd, fwd);
            assert_eq!(back.local, local);
            assert_eq!(back.tcp_state(), Some(TcpState::SynRecv));
            let again = back.new_conn(1, None).unwrap();
            assert_eq!(again, nc);
            // And it goes into a backup's table.
            let mut backup = table::<u32>();
            assert!(backup.insert(&again, 0).is_ok());
        }
    }

    /// The worker's compact record says what the wire form says.
    #[test]
    fn compact_record_is_the_wire_record() {
        let lip = Endpoint::new(0xc612_0301u32, 50000);
        for fwd in [
            FwdMethod::Masq,
            FwdMethod::Route,
            FwdMethod::Tunnel,
            FwdMethod::FullNat,
        ] {
            let mut t = table::<u32>();
            let local = (fwd == FwdMethod::FullNat).then_some(lip);
            let id = t
                .insert(
                    &new_conn(0xc612_0001, 0xc612_0101, 0xc612_0201, fwd, local),
                    0,
                )
                .unwrap();
            t.update_state(id, Direction::Input, SYN, 0);
            let c = t.get(id).unwrap();
            let r = SyncRecord::of(c, 9).unwrap();
            assert_eq!(r.to_wire(), to_sync(c, 9).unwrap(), "{fwd:?}");
            assert_eq!(SyncRecord::from_wire(&r.to_wire()), Some(r));
        }
        // templates, fwmark templates
        let mut t = table::<u32>();
        let key = PersistKey::for_fwmark(0xc612_0009, u32::MAX, 7);
        let id = t
            .template_insert(&key, 1, Endpoint::new(0xc612_0201, 0), 60, 0)
            .unwrap();
        let c = t.get(id).unwrap();
        let r = SyncRecord::of(c, 7).unwrap();
        assert_eq!(r.to_wire(), to_sync(c, 7).unwrap());
        assert_eq!(r.to_wire().virt, "0.0.0.7:0".parse().unwrap());
        // one-packet: none
        let mut nc = new_conn(1, 2, 3, FwdMethod::Masq, None);
        nc.proto = Protocol::Udp;
        nc.one_packet = true;
        let id = t.insert(&nc, 0).unwrap();
        assert_eq!(
            SyncRecord::of(t.get(id).unwrap(), 0),
            Err(ToSyncError::OnePacket)
        );
    }

    #[test]
    fn ipv6_and_established_state() {
        let a = |s: &str| u128::from(s.parse::<Ipv6Addr>().unwrap());
        let mut t = table::<u128>();
        let local = Some(Endpoint::new(a("2001:db8:3::1"), 1025));
        let nc = new_conn(
            a("2001:db8::1"),
            a("2001:db8:1::1"),
            a("2001:db8:2::1"),
            FwdMethod::FullNat,
            local,
        );
        let id = t.insert(&nc, 0).unwrap();
        t.update_state(id, Direction::Input, SYN, 0);
        t.update_state(id, Direction::Output, SYN | ACK, 0);
        t.update_state(id, Direction::Input, ACK, 0);
        let s = to_sync(t.get(id).unwrap(), 0).unwrap();
        assert_eq!(s.state, TcpState::Established as u16);
        assert_eq!(s.flags & flags::INACTIVE, 0);
        assert!(s.client.is_ipv6() && s.fullnat_local.unwrap().is_ipv6());
        let back: SyncedConn<u128> = over_the_wire(s);
        assert_eq!(back.new_conn(1, None).unwrap(), nc);
        assert_eq!(back.tcp_state(), Some(TcpState::Established));
        // An IPv6 record does not fit an IPv4 table.
        assert_eq!(
            SyncedConn::<u32>::from_sync(&s),
            Err(FromSyncError::AddressFamily)
        );
    }

    #[test]
    fn templates_and_fwmark_templates() {
        let mut t = table::<u32>();
        let key =
            PersistKey::for_service(Protocol::Tcp, 0xc612_0009, 0xffff_ff00, 0xc612_0101, 80, 80);
        let id = t
            .template_insert(&key, 1, Endpoint::new(0xc612_0201, 80), 300, 0)
            .unwrap();
        let s = to_sync(t.get(id).unwrap(), 0).unwrap();
        assert_eq!(s.flags & flags::TEMPLATE, flags::TEMPLATE);
        assert_eq!(s.client, "198.18.0.0:0".parse().unwrap());
        assert_eq!(s.timeout_s, 300);
        assert_eq!(s.state, 0);
        let back: SyncedConn<u32> = over_the_wire(s);
        assert!(back.new_conn(1, None).is_none());
        assert_eq!(back.persist_key(), Some(key));

        // fwmark 7 on IPv6: the kernel's layout puts the mark first.
        let mut t6 = table::<u128>();
        let key6 = PersistKey::for_fwmark(u128::from(0x2001_0db8u32) << 96, u128::MAX << 64, 7);
        let id = t6
            .template_insert(&key6, 1, Endpoint::new(1, 0), 60, 0)
            .unwrap();
        let s = to_sync(t6.get(id).unwrap(), 7).unwrap();
        assert_eq!(s.protocol, 0);
        assert_eq!(s.fwmark, 7);
        assert_eq!(s.virt.ip(), "0:7::".parse::<IpAddr>().unwrap());
        let back: SyncedConn<u128> = over_the_wire(s);
        assert_eq!(back.persist_key(), Some(key6));
    }

    #[test]
    fn refusals() {
        let mut t = table::<u32>();
        let mut nc = new_conn(1, 2, 3, FwdMethod::Masq, None);
        nc.proto = Protocol::Udp;
        nc.one_packet = true;
        let id = t.insert(&nc, 0).unwrap();
        assert_eq!(to_sync(t.get(id).unwrap(), 0), Err(ToSyncError::OnePacket));

        let base = SyncConn {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            client: "198.18.0.1:1".parse().unwrap(),
            virt: "198.18.1.1:80".parse().unwrap(),
            real: "198.18.2.1:80".parse().unwrap(),
            fwmark: 0,
            timeout_s: 900,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        };
        assert!(SyncedConn::<u32>::from_sync(&base).is_ok());
        let with = |f: &dyn Fn(&mut SyncConn)| {
            let mut s = base;
            f(&mut s);
            SyncedConn::<u32>::from_sync(&s)
        };
        assert_eq!(
            with(&|s| s.flags = flags::LOCALNODE),
            Err(FromSyncError::ForwardingMethod(1))
        );
        assert_eq!(
            with(&|s| s.flags = flags::BYPASS),
            Err(FromSyncError::ForwardingMethod(4))
        );
        assert_eq!(
            with(&|s| s.protocol = 132),
            Err(FromSyncError::Protocol(132))
        );
        assert_eq!(with(&|s| s.state = 11), Err(FromSyncError::State(11)));
        assert_eq!(
            with(&|s| s.seq = Some(Default::default())),
            Err(FromSyncError::SeqAdjust)
        );
        assert_eq!(
            with(&|s| s.real = "[::1]:80".parse().unwrap()),
            Err(FromSyncError::AddressFamily)
        );
    }

    /// An established TCP (or live UDP) connection in a fresh table.
    fn established(proto: Protocol) -> (ConnTable<u32>, ConnId) {
        let mut tab = table::<u32>();
        let mut nc = new_conn(1, 2, 3, FwdMethod::Masq, None);
        nc.proto = proto;
        let id = tab.insert(&nc, 0).unwrap();
        if proto == Protocol::Tcp {
            tab.update_state(id, Direction::Input, SYN, 0);
            tab.update_state(id, Direction::Output, SYN | ACK, 0);
            tab.update_state(id, Direction::Input, ACK, 0);
        } else {
            tab.update_state(id, Direction::Input, 0, 0);
        }
        (tab, id)
    }

    #[test]
    fn settings_default_and_checks_are_the_kernels() {
        let d = SyncSettings::default();
        assert_eq!(
            d.render(),
            "threshold=3 period=50 refresh_period=0 retries=0 persist_mode=0 version=1"
        );
        assert!(d.validate().is_ok());
        let with = |f: &dyn Fn(&mut SyncSettings)| {
            let mut s = d;
            f(&mut s);
            s.validate()
        };
        // proc_do_sync_threshold: threshold < period unless period is 0
        assert!(with(&|s| s.threshold = 50)
            .unwrap_err()
            .contains("below the period"));
        assert!(with(&|s| {
            s.threshold = 100;
            s.period = 0
        })
        .is_ok());
        assert!(with(&|s| s.retries = 3).is_ok());
        assert!(with(&|s| s.retries = 4).unwrap_err().contains("0..3"));
        assert!(with(&|s| s.version = 0)
            .unwrap_err()
            .contains("version 1 only"));
        assert!(with(&|s| s.version = 2)
            .unwrap_err()
            .contains("must be 0 or 1"));
    }

    #[test]
    fn default_decision_follows_the_kernel() {
        let s = SyncSettings::default();
        let mut tab = table::<u32>();
        let id = tab
            .insert(&new_conn(1, 2, 3, FwdMethod::Masq, None), 0)
            .unwrap();
        let mut m = SyncMark::default();
        // SYN: SYN_RECV, not a synced state
        tab.update_state(id, Direction::Input, SYN, 0);
        let c = *tab.get(id).unwrap();
        assert!(!sync_decide(&c, &mut m.0, 1, 0, false, &s));
        // ESTABLISHED: even on the change only at the threshold, as the kernel
        tab.update_state(id, Direction::Output, SYN | ACK, 0);
        tab.update_state(id, Direction::Input, ACK, 0);
        let c = *tab.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::Established));
        let sent: Vec<u32> = (2..=110)
            .filter(|&p| sync_decide(&c, &mut m.0, p, 0, false, &s))
            .collect();
        assert_eq!(sent, [3, 53, 103]);
        // a change into a closing state: at once, whatever the count; the
        // state changed by a reply counts at the next client packet
        tab.update_state(
            id,
            Direction::Output,
            crate::lb::tcp_state::tcp_flags::FIN,
            0,
        );
        let c = *tab.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::FinWait));
        assert!(sync_decide(&c, &mut m.0, 111, 0, false, &s));
        assert!(!sync_decide(&c, &mut m.0, 112, 0, false, &s));
        assert!(sync_decide(&c, &mut m.0, 153, 0, false, &s));
        // a reused slot (new generation) starts from state NONE again
        let mut other = c;
        other.gen = c.gen.wrapping_add(1);
        assert!(sync_decide(&other, &mut m.0, 7, 0, false, &s));
        // UDP: the threshold only
        let (utab, uid) = established(Protocol::Udp);
        let u = *utab.get(uid).unwrap();
        let mut um = SyncMark::default();
        let sent: Vec<u32> = (1..=60)
            .filter(|&p| sync_decide(&u, &mut um.0, p, 0, false, &s))
            .collect();
        assert_eq!(sent, [3, 53]);
    }

    /// The fast path never says "surely not" where the full decision
    /// would send or remember something: every state, packet count, knob
    /// set and memory.
    #[test]
    fn surely_not_agrees_with_the_decision() {
        let knobs = [
            SyncSettings::default(),
            SyncSettings {
                threshold: 3,
                period: 5,
                ..SyncSettings::default()
            },
            SyncSettings {
                threshold: 3,
                period: 0,
                ..SyncSettings::default()
            },
            SyncSettings {
                period: 0,
                refresh_period_s: 10,
                retries: 2,
                ..SyncSettings::default()
            },
            SyncSettings {
                refresh_period_s: 10,
                retries: 1,
                persist_mode: true,
                ..SyncSettings::default()
            },
        ];
        let (tab, id) = established(Protocol::Tcp);
        let (utab, uid) = established(Protocol::Udp);
        let tcp = *tab.get(id).unwrap();
        let mut entries = vec![*utab.get(uid).unwrap()];
        for st in 0..TCP_STATE_COUNT as u8 {
            let mut c = tcp;
            c.state = st;
            entries.push(c);
        }
        let mut checked = 0;
        for s in &knobs {
            for c in &entries {
                // memories: none, and one of a send in each state
                let mut marks = vec![0u64];
                for st in 0..TCP_STATE_COUNT as u8 {
                    marks.push(SyncMark::new(c.gen, 1000, st).0);
                }
                for &m0 in &marks {
                    for pkts in 0..160 {
                        if !sync_surely_not(c, pkts, s) {
                            continue;
                        }
                        let mut m = m0;
                        assert!(
                            !sync_decide(c, &mut m, pkts, 5000, false, s),
                            "{s:?} state {} pkts {pkts}",
                            c.state
                        );
                        assert_eq!(m, m0);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn period_zero_syncs_once_and_templates_always() {
        let (tab, id) = established(Protocol::Tcp);
        let c = *tab.get(id).unwrap();
        let once = SyncSettings {
            period: 0,
            ..SyncSettings::default()
        };
        let mut m = SyncMark::default();
        let sent: Vec<u32> = (1..=200)
            .filter(|&p| sync_decide(&c, &mut m.0, p, 0, false, &once))
            .collect();
        assert_eq!(sent, [3]);
        // templates: every time with a period (the kernel's rule 3), at
        // the threshold only without
        let mut t = table::<u32>();
        let key = PersistKey::for_service(Protocol::Tcp, 9, u32::MAX, 2, 80, 80);
        let tid = t
            .template_insert(&key, 1, Endpoint::new(3, 80), 300, 0)
            .unwrap();
        let tc = *t.get(tid).unwrap();
        let mut tm = SyncMark::default();
        let d = SyncSettings::default();
        assert!((1..=10).all(|p| sync_decide(&tc, &mut tm.0, p, 0, false, &d)));
        let mut tm = SyncMark::default();
        let sent: Vec<u32> = (1..=10)
            .filter(|&p| sync_decide(&tc, &mut tm.0, p, 0, false, &once))
            .collect();
        assert_eq!(sent, [3]);
    }

    #[test]
    fn persist_mode_sends_only_templates_of_persistent_services() {
        let (tab, id) = established(Protocol::Tcp);
        let c = *tab.get(id).unwrap();
        let s = SyncSettings {
            persist_mode: true,
            ..SyncSettings::default()
        };
        let mut m = SyncMark::default();
        assert!(!sync_decide(&c, &mut m.0, 3, 0, true, &s));
        assert!(sync_decide(&c, &mut m.0, 3, 0, false, &s));
    }

    #[test]
    fn refresh_period_thins_and_retries_repeat() {
        let (tab, id) = established(Protocol::Tcp);
        let c = *tab.get(id).unwrap();
        assert_eq!(c.timeout_ms(), 900_000);
        // refresh 10 s: held back while the end moved less than 10 s
        let s = SyncSettings {
            refresh_period_s: 10,
            ..SyncSettings::default()
        };
        let mut m = SyncMark::default();
        let at =
            |m: &mut SyncMark, p: u32, t_ms: u64| sync_decide(&c, &mut m.0, p, t_ms, false, &s);
        assert!(at(&mut m, 3, 0));
        assert!(!at(&mut m, 53, 1_000));
        assert!(!at(&mut m, 103, 9_996));
        assert!(at(&mut m, 153, 10_000));
        // the period still applies
        assert!(!at(&mut m, 154, 30_000));
        assert!(at(&mut m, 203, 30_000));
        // a closing state goes at once, refresh or not
        let mut fin = c;
        fin.state = TcpState::CloseWait as u8;
        assert!(sync_decide(&fin, &mut m.0, 204, 30_001, false, &s));

        // refresh 80 s, 2 retries, 80/8 = 10 s apart
        let s = SyncSettings {
            refresh_period_s: 80,
            retries: 2,
            ..SyncSettings::default()
        };
        let mut m = SyncMark::default();
        let at = |m: &mut SyncMark, t_ms: u64| sync_decide(&c, &mut m.0, 3, t_ms, false, &s);
        assert!(at(&mut m, 0));
        assert!(!at(&mut m, 5_000), "within refresh/8 of the send");
        assert!(at(&mut m, 12_000), "retry 1");
        assert_eq!(m.0 as u32 & 3, 1);
        assert!(!at(&mut m, 15_000));
        assert!(at(&mut m, 23_000), "retry 2");
        assert_eq!(m.0 as u32 & 3, 2);
        assert!(!at(&mut m, 40_000), "retries used up");
        assert!(
            !at(&mut m, 100_000),
            "80 s not yet passed since the last send"
        );
        assert!(at(&mut m, 104_000), "refreshed");
        assert_eq!(m.0 as u32 & 3, 0);
        // half the timeout caps the hold-back: a 20 s timeout is refreshed
        // every 10 s whatever the period
        let mut short = c;
        short.timeout_ms = 20_000;
        let long = SyncSettings {
            refresh_period_s: 3600,
            ..SyncSettings::default()
        };
        let mut m = SyncMark::default();
        assert!(sync_decide(&short, &mut m.0, 3, 0, false, &long));
        assert!(!sync_decide(&short, &mut m.0, 3, 9_000, false, &long));
        assert!(sync_decide(&short, &mut m.0, 3, 10_000, false, &long));
    }
}
