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
//! Sequence adjustment (SEQ option) is not mapped: vsd connections keep no
//! sequence deltas in their entry, so none are sent, and a received SEQ
//! option is refused ([`FromSyncError::SeqAdjust`]) rather than ignored.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lb::conn::{Addr, Conn, ConnId, Endpoint, NewConn};
use crate::lb::load::DestId;
use crate::lb::persist::PersistKey;
use crate::lb::tcp_state::{TcpState, TCP_STATE_COUNT};
use crate::lb::types::{FwdMethod, Protocol};
use crate::wire::ipvs_sync::{flags, SyncConn};

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
    fn fwmark_from_ip(ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V6(a) => {
                let o = a.octets();
                Some(u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
            }
            IpAddr::V4(_) => None,
        }
    }
}

/// Why a connection is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToSyncError {
    /// One-packet connections are never synced (kernel rule).
    OnePacket,
}

impl fmt::Display for ToSyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToSyncError::OnePacket => f.write_str("one-packet connections are not synced"),
        }
    }
}

impl std::error::Error for ToSyncError {}

/// The sync record for `conn`. `fwmark` is the firewall mark of the
/// connection's service (0 for address/port services); the backup looks
/// the service up by it.
pub fn to_sync<A: SyncAddr>(conn: &Conn<A>, fwmark: u32) -> Result<SyncConn, ToSyncError> {
    if conn.is_one_packet() {
        return Err(ToSyncError::OnePacket);
    }
    let sa = |e: Endpoint<A>| SocketAddr::new(e.addr.to_ip(), e.port);
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
            let virt = SocketAddr::new(A::fwmark_to_ip(mark), conn.virt().port);
            (state, virt, mark)
        } else {
            (state, sa(conn.virt()), fwmark)
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
        (state, sa(conn.virt()), fwmark)
    };
    Ok(SyncConn {
        protocol: conn.protocol_number(),
        flags: bits,
        state,
        client: sa(conn.client()),
        virt,
        real: sa(conn.real()),
        fwmark,
        timeout_s: conn.timeout_ms() / 1000,
        seq: None,
        fullnat_local: conn.local().map(sa),
    })
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
    /// Sequence adjustment data, which vsd connections cannot carry.
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
}

impl<A: SyncAddr> SyncedConn<A> {
    /// Checks `s` against what a vsd table of address type `A` can hold.
    pub fn from_sync(s: &SyncConn) -> Result<Self, FromSyncError> {
        let ep = |a: SocketAddr| {
            A::from_ip(a.ip())
                .map(|addr| Endpoint::new(addr, a.port()))
                .ok_or(FromSyncError::AddressFamily)
        };
        if s.seq.is_some() {
            return Err(FromSyncError::SeqAdjust);
        }
        let template = s.flags & flags::TEMPLATE != 0;
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

/// The kernel's `sync_threshold` sysctl pair: a connection is synced when
/// its packet count modulo `period` equals `threshold` (defaults 3 and 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncThreshold {
    pub threshold: u32,
    pub period: u32,
}

impl Default for SyncThreshold {
    fn default() -> Self {
        SyncThreshold {
            threshold: 3,
            period: 50,
        }
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

/// Whether the master sends connection `conn` after a client packet that
/// moved it from `old_state` to its current state; `pkts` is its packet
/// count including this one. As the kernel's `ip_vs_sync_conn_needed` with
/// `sync_refresh_period` 0 (its default): TCP only in the synced states, at
/// once on a change into a closing state, else (ESTABLISHED, UDP) when
/// `pkts % period == threshold`; never one-packet UDP or templates (a
/// template is sent along with its synced connections).
pub fn sync_needed<A: Addr>(
    conn: &Conn<A>,
    old_state: Option<TcpState>,
    pkts: u32,
    t: SyncThreshold,
) -> bool {
    if conn.is_one_packet() || conn.is_template() {
        return false;
    }
    if let Some(state) = conn.tcp_state() {
        if !tcp_state_synced(state) {
            return false;
        }
        let changed = old_state != Some(state);
        if changed && state != TcpState::Established {
            return true;
        }
    } else if conn.protocol_number() != 17 {
        return false;
    }
    t.period > 0 && pkts % t.period == t.threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::conn::{ConnTable, Direction, Seed};
    use crate::lb::load::CoreLoad;
    use crate::lb::tcp_state::tcp_flags::{ACK, SYN};
    use crate::wire::ipvs_sync::{decode, SyncMessageBuilder};
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

    #[test]
    fn sync_decision_follows_the_kernel() {
        let t = SyncThreshold::default();
        let mut tab = table::<u32>();
        let id = tab
            .insert(&new_conn(1, 2, 3, FwdMethod::Masq, None), 0)
            .unwrap();
        // SYN: SYN_RECV, not a synced state
        tab.update_state(id, Direction::Input, SYN, 0);
        let c = *tab.get(id).unwrap();
        assert!(!sync_needed(&c, Some(TcpState::None), 1, t));
        // ESTABLISHED: on the change only at the threshold, as the kernel
        tab.update_state(id, Direction::Output, SYN | ACK, 0);
        tab.update_state(id, Direction::Input, ACK, 0);
        let c = *tab.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::Established));
        assert!(!sync_needed(&c, Some(TcpState::SynRecv), 2, t));
        assert!(sync_needed(&c, Some(TcpState::Established), 3, t));
        assert!(!sync_needed(&c, Some(TcpState::Established), 4, t));
        assert!(sync_needed(&c, Some(TcpState::Established), 53, t));
        assert!(!sync_needed(&c, Some(TcpState::Established), 50, t));
        // a change into a closing state: at once
        tab.update_state(
            id,
            Direction::Input,
            crate::lb::tcp_state::tcp_flags::FIN,
            0,
        );
        let c = *tab.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::CloseWait));
        assert!(sync_needed(&c, Some(TcpState::Established), 10, t));
        assert!(!sync_needed(&c, Some(TcpState::CloseWait), 10, t));
        // UDP: threshold only; one-packet never
        let mut u = new_conn(4, 2, 3, FwdMethod::Masq, None);
        u.proto = Protocol::Udp;
        let uid = tab.insert(&u, 0).unwrap();
        tab.update_state(uid, Direction::Input, 0, 0);
        let c = *tab.get(uid).unwrap();
        assert!(sync_needed(&c, None, 3, t));
        assert!(!sync_needed(&c, None, 2, t));
        u.one_packet = true;
        u.client.port = 1;
        let oid = tab.insert(&u, 0).unwrap();
        let c = *tab.get(oid).unwrap();
        assert!(!sync_needed(&c, None, 3, t));
    }
}
