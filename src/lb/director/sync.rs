//! Connection synchronisation in a worker's director: the master's sync
//! decision and the backup's installation of received entries.
//!
//! **Master.** While [`CoreLb::set_sync_master`] is on, every client packet
//! of a connection runs the kernel's decision ([`sync_decide`], with the
//! knobs of [`CoreLb::set_sync_settings`]) for the connection and then,
//! as the kernel's `ip_vs_sync_conn` does, for its persistence template
//! (whose own packet count it bumps); what is to be sent is appended to a
//! bounded buffer the worker drains once per loop turn into its ring to
//! the sync daemon ([`CoreLb::take_sync_records`]). A full buffer loses the
//! record and counts it (`sync_buffer_full`): a later packet syncs again.
//! The decision's memory (the kernel's `sync_endtime` and `old_state`) is
//! a side table of 8 bytes per connection slot, allocated (zeroed, so
//! lazily by the OS) when the master is first turned on; records carry the
//! fwmark of the connection's service so a backup finds fwmark services.
//!
//! **Backup.** [`CoreLb::install_synced`] turns a received entry into a
//! live connection on this core: its service and real server are found
//! in this core's snapshot by address (not by slot: the backup's slots are
//! its own), it gets the master's state and timeout, and is counted where
//! the master counted it. An entry that exists already is updated (state,
//! timeout), as the kernel's `ip_vs_proc_conn` does — unless it is bound
//! elsewhere (another real server or local port: an old connection on a
//! reused client port), then the master's binding replaces it, where the
//! kernel would keep the stale one. A new entry whose reply tuple an old
//! closing or merely synced entry holds (a restarted master hands out its
//! FULLNAT local ports from the start again) replaces that entry too. FULLNAT entries keep
//! the master's local address and port: an address of the backup's own
//! pool for that service (directors sharing a pool; the backup's own new
//! connections avoid the port because its reply tuple is taken) or a
//! peer's (directors behind ECMP, a pool each: the entry serves the
//! requests the router moves here and, once the peer is gone, the replies
//! its address's covering route brings here). A service without a local
//! address is refused (`LocalAddrNotInPool`). A NAT entry whose replies another core owns is
//! installed there, with a redirect entry on the request's core, exactly
//! as a NAT connection created on this backup would be.
//!
//! **IPv6.** Connections of the IPv6 table are synced as `ip_vs_sync_v6`
//! entries, with their own record buffer and decision memory
//! ([`Sync6`]) and their own queue to the daemon; received IPv6 entries
//! are installed into the IPv6 table the same way. A connection whose
//! server (or FULLNAT local address) is of the other family (NAT64, TUN
//! IPv6-in-IPv4: held IPv4-mapped) has no kernel form — a sync entry has
//! one address family — and is not sent but counted
//! (`sync_mixed_family`); vsd, like the kernel, refuses such servers while
//! a sync daemon runs, so only connections older than the daemon are
//! concerned. The SYN proxy serves IPv4 only: an IPv6 entry with SYN proxy
//! data is refused (`NotProxied`).
//!
//! **Failure modes.** Entries the backup cannot place are refused with a
//! [`SyncRefused`] reason the worker counts; nothing is half-installed.

use super::{CoreLb, REDIRECT_DEST};
use crate::lb::conn::{secs_to_ms, ConnError, ConnId, ConnTable, Direction, NewConn, Tuple};
use crate::lb::family::Family;
use crate::lb::load::DestId;
use crate::lb::sync::{
    sync_decide, sync_surely_not, SyncAddr, SyncRecord, SyncSettings, SyncedConn, ToSyncError,
};
use crate::lb::synproxy::ProxyTable;
use crate::lb::tcp_state::TcpState;
use crate::lb::types::{FwdMethod, Protocol};
use crate::wire::ipvs_sync::SyncConn;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The master's IPv6 state: records to send and, per slot of the IPv6
/// table, the decision memory (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Sync6 {
    out: Vec<SyncRecord<u128>>,
    marks: Vec<u64>,
    /// Connections not sent: server or local address of the other family.
    mixed_family: u64,
}

/// Most client packets send nothing, and that is decided from the entry
/// alone, inline at the caller (a connection without a template: one
/// packet, a state never synced, or between two thresholds); `false`:
/// [`feed_sync_in`] decides.
#[inline(always)]
fn nothing_to_sync<K: SyncAddr>(conns: &ConnTable<K>, id: ConnId, s: &SyncSettings) -> bool {
    conns.get(id).is_none_or(|c| {
        !c.has_template() && (c.is_one_packet() || sync_surely_not(c, c.in_pkts(), s))
    })
}

/// The sync decision for `id` of `conns`, then for its template; records
/// to send go to `out` (see [`CoreLb::feed_sync`]).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn feed_sync_in<K: SyncAddr>(
    conns: &mut ConnTable<K>,
    marks: &mut [u64],
    out: &mut Vec<SyncRecord<K>>,
    lost: &mut u64,
    mixed: &mut u64,
    settings: &SyncSettings,
    proxied: Option<&ProxyTable>,
    fwmark_of: impl Fn(DestId) -> u32,
    id: ConnId,
    now_ms: u64,
) {
    let mut push = |id: ConnId, c: &crate::lb::conn::Conn<K>, fwmark: u32| {
        let mut rec = match SyncRecord::of(c, fwmark) {
            Ok(r) => r,
            Err(ToSyncError::MixedFamily) => {
                *mixed += 1;
                return;
            }
            Err(_) => return,
        };
        if let Some(p) = proxied.and_then(|t| t.get(id)) {
            rec.add_synproxy(p);
        }
        if out.len() < SYNC_RECORDS_MAX {
            out.push(rec);
        } else {
            *lost += 1;
        }
    };
    // decided on the entry in place (no copy of it per packet)
    let Some(c) = conns.get(id) else {
        return;
    };
    let template = if c.has_template() {
        conns.template_of(id)
    } else {
        None
    };
    // one-packet connections are never sent, their templates are
    let send = !c.is_one_packet()
        && marks.get_mut(id.index() as usize).is_some_and(|raw| {
            sync_decide(c, raw, c.in_pkts(), now_ms, template.is_some(), settings)
        });
    // the service's mark only for a record (a lookup in the snapshot)
    let mut fwmark = None;
    let mut mark_of = |d: DestId| *fwmark.get_or_insert_with(|| fwmark_of(d));
    if send {
        push(id, c, mark_of(c.dest()));
    }
    let Some(t) = template else {
        return;
    };
    let dest = c.dest();
    let Some(tc) = conns.get_mut(t) else {
        return;
    };
    tc.bump_in_pkts();
    let tc = &*tc;
    if let Some(raw) = marks.get_mut(t.index() as usize) {
        if sync_decide(tc, raw, tc.in_pkts(), now_ms, false, settings) {
            push(t, tc, mark_of(dest));
        }
    }
}

/// Sync records a core keeps between two drains by its worker.
pub const SYNC_RECORDS_MAX: usize = 256;

/// What [`CoreLb::flush_sync_records`] handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncFlush {
    /// Records the queues took.
    pub fed: u64,
    /// Records the queues had no room for.
    pub full: u64,
    /// Records lost to the core's full buffer since the last flush.
    pub lost: u64,
    /// IPv6 connections not sent since the last flush (server or local
    /// address of the other family).
    pub mixed_family: u64,
}

/// Why a received entry was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRefused {
    /// No service on this director matches its virtual address.
    NoService,
    /// The service has no such real server here.
    NoDest,
    /// A FULLNAT entry for a service with no local address (of the
    /// entry's family) on this director: not a FULLNAT service here.
    LocalAddrNotInPool,
    /// A SYN proxy connection for a service without the SYN proxy here.
    NotProxied,
    /// The connection table refused it (full, reply tuple in use, ...).
    Table(ConnError),
}

/// What [`CoreLb::install_synced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncInstalled {
    New,
    Updated,
}

/// TCP states of a connection on its way out.
fn closing(st: TcpState) -> bool {
    matches!(
        st,
        TcpState::FinWait
            | TcpState::TimeWait
            | TcpState::Close
            | TcpState::CloseWait
            | TcpState::LastAck
    )
}

impl CoreLb {
    /// Turn the master's sync decision on or off (between bursts).
    pub fn set_sync_master(&mut self, on: bool) {
        if on && self.sync_out.capacity() == 0 {
            self.sync_out.reserve_exact(SYNC_RECORDS_MAX);
        }
        if on && self.sync_marks.len() != self.conns.capacity() {
            // zeroed memory: the OS maps it lazily, no stall of the loop
            self.sync_marks = vec![0u64; self.conns.capacity()];
        }
        if on && self.sync6.marks.len() != self.conns6.capacity() {
            self.sync6.out.reserve_exact(SYNC_RECORDS_MAX);
            self.sync6.marks = vec![0u64; self.conns6.capacity()];
        }
        self.sync_master = on;
    }

    /// Whether the master's decision runs.
    pub fn sync_master(&self) -> bool {
        self.sync_master
    }

    /// Records or counts wait for [`CoreLb::flush_sync_records`].
    pub fn sync_pending(&self) -> bool {
        !self.sync_out.is_empty()
            || !self.sync6.out.is_empty()
            || self.sync_lost != 0
            || self.sync6.mixed_family != 0
    }

    /// Hand the records collected since the last call to the queues, as
    /// one batch per family: `push` (IPv4) and `push6` (IPv6) take a slice
    /// and return how many records of it they took (the rest are counted
    /// in [`SyncFlush::full`]). No allocation; the buffers are emptied.
    pub fn flush_sync_records(
        &mut self,
        push: impl FnOnce(&[SyncRecord]) -> usize,
        push6: impl FnOnce(&[SyncRecord<u128>]) -> usize,
    ) -> SyncFlush {
        let mut f = SyncFlush {
            lost: std::mem::take(&mut self.sync_lost),
            mixed_family: std::mem::take(&mut self.sync6.mixed_family),
            ..SyncFlush::default()
        };
        if !self.sync_out.is_empty() {
            let n = push(&self.sync_out).min(self.sync_out.len());
            f.fed += n as u64;
            f.full += (self.sync_out.len() - n) as u64;
            self.sync_out.clear();
        }
        if !self.sync6.out.is_empty() {
            let n = push6(&self.sync6.out).min(self.sync6.out.len());
            f.fed += n as u64;
            f.full += (self.sync6.out.len() - n) as u64;
            self.sync6.out.clear();
        }
        f
    }

    /// The sync knobs (`--set-sync`), already validated.
    pub fn set_sync_settings(&mut self, s: SyncSettings) {
        self.sync_settings = s;
    }

    /// The sync knobs in use.
    pub fn sync_settings(&self) -> SyncSettings {
        self.sync_settings
    }

    /// Sync records collected since the last call, in wire form,
    /// appended to `out` (tests and tools; the worker uses
    /// [`CoreLb::drain_sync_records`]), and how many were lost to a full
    /// buffer since the last call.
    pub fn take_sync_records(&mut self, out: &mut Vec<SyncConn>) -> u64 {
        out.extend(self.sync_out.drain(..).map(|r| r.to_wire()));
        out.extend(self.sync6.out.drain(..).map(|r| r.to_wire()));
        std::mem::take(&mut self.sync_lost)
    }

    /// The IPv6 records collected since the last call, to `f`, as
    /// [`CoreLb::drain_sync_records`] does for IPv4.
    pub fn drain_sync_records6(&mut self, f: impl FnMut(SyncRecord<u128>)) {
        self.sync6.out.drain(..).for_each(f);
    }

    /// IPv6 connections not sent since the last call because their server
    /// or local address is IPv4 (no kernel record holds both families).
    pub fn take_sync_mixed_family(&mut self) -> u64 {
        std::mem::take(&mut self.sync6.mixed_family)
    }

    /// Hand every record collected since the last call to `f` (by value,
    /// no allocation); returns how many were lost to a full buffer since
    /// the last call.
    pub fn drain_sync_records(&mut self, f: impl FnMut(SyncRecord)) -> u64 {
        self.sync_out.drain(..).for_each(f);
        std::mem::take(&mut self.sync_lost)
    }

    /// The master's decision after a client packet of `id` of the IPv4
    /// table (its packet count already bumped): the connection, then its
    /// template.
    #[inline(always)]
    pub(super) fn feed_sync(&mut self, id: ConnId, now_ms: u64) {
        if nothing_to_sync(&self.conns, id, &self.sync_settings) {
            return;
        }
        let dests = &self.dests;
        feed_sync_in(
            &mut self.conns,
            &mut self.sync_marks,
            &mut self.sync_out,
            &mut self.sync_lost,
            &mut 0,
            &self.sync_settings,
            Some(&self.proxied),
            |d| dests.get(d as usize).map_or(0, |d| d.fwmark),
            id,
            now_ms,
        );
    }

    /// The same for `id` of the IPv6 table.
    #[inline(always)]
    pub(super) fn feed_sync6(&mut self, id: ConnId, now_ms: u64) {
        if nothing_to_sync(&self.conns6, id, &self.sync_settings) {
            return;
        }
        let dests = &self.dests;
        feed_sync_in(
            &mut self.conns6,
            &mut self.sync6.marks,
            &mut self.sync6.out,
            &mut self.sync_lost,
            &mut self.sync6.mixed_family,
            &self.sync_settings,
            None,
            |d| dests.get(d as usize).map_or(0, |d| d.fwmark),
            id,
            now_ms,
        );
    }

    /// A synced connection's reply tuple is held by an older entry here:
    /// the master gave the tuple (a FULLNAT local port, typically, after it
    /// restarted and its port walk began again) to a new connection, so
    /// the old one is over on the master. Remove the old entry if it is in
    /// a closing state or itself only synced (the master's word is newer);
    /// an established connection this director forwards itself stays, and
    /// the new entry is refused (`tuple_in_use`).
    fn evict_stale_reply<A: Family>(&mut self, nc: &NewConn<A::Key>) -> bool {
        let reply = Tuple {
            proto: nc.proto,
            src: nc.real,
            dst: nc.local.unwrap_or(nc.client),
        };
        let Some((old, Direction::Output)) = self.table::<A>().peek(&reply) else {
            return false;
        };
        let Some(c) = self.table::<A>().get(old) else {
            return false;
        };
        if !(c.tcp_state().is_some_and(closing) || c.is_synced()) {
            return false;
        }
        if let Some(gone) = self.table::<A>().remove(old) {
            if gone.local().is_some() {
                self.ports.released(1);
            }
        }
        true
    }

    /// Install (or refresh) a connection or template a sync master sent.
    /// `redirect`: this core only sees the requests of a NAT connection
    /// another core owns; install the redirect entry that steers them.
    pub fn install_synced(
        &mut self,
        s: &SyncedConn<u32>,
        redirect: bool,
        now_ms: u64,
    ) -> Result<SyncInstalled, SyncRefused> {
        self.install_synced_in::<Ipv4Addr>(s, redirect, now_ms)
    }

    /// [`CoreLb::install_synced`] for an IPv6 entry, into the IPv6 table.
    pub fn install_synced6(
        &mut self,
        s: &SyncedConn<u128>,
        redirect: bool,
        now_ms: u64,
    ) -> Result<SyncInstalled, SyncRefused> {
        self.install_synced_in::<Ipv6Addr>(s, redirect, now_ms)
    }

    fn install_synced_in<A: Family>(
        &mut self,
        s: &SyncedConn<A::Key>,
        redirect: bool,
        now_ms: u64,
    ) -> Result<SyncInstalled, SyncRefused>
    where
        A::Key: SyncAddr,
    {
        let proto = s.protocol().unwrap_or(Protocol::Tcp);
        // an IPv4-mapped address (never a real IPv6 one) is the IPv4 one
        let ip = |k: A::Key| A::from_key(k).ip();
        let vip = ip(s.virt.addr);
        let svc = self
            .snap
            .find(s.fwmark, proto, vip, s.virt.port)
            .ok_or(SyncRefused::NoService)?;
        let rip = ip(s.real.addr);
        let dest = svc
            .servers
            .iter()
            .find(|d| d.addr == rip && (d.port == s.real.port || d.port == 0))
            .ok_or(SyncRefused::NoDest)?;
        let dest_id = dest.id;
        if s.synproxy.is_some() && (A::IS_V6 || !svc.config.synproxy) {
            return Err(SyncRefused::NotProxied);
        }
        // FULLNAT keeps the master's local endpoint, whether or not its
        // address is in this director's pool: directors behind ECMP have a
        // pool each (docs/ecmp.md), so their local ports never collide, and
        // a peer's address reaches this director only when routing sends
        // it here (the peer died; its address's covering route remains).
        // A service with no local address here is no FULLNAT service here.
        if let Some(l) = s.local {
            let v4 = ip(l.addr).is_ipv4();
            if !svc.config.local_addresses.iter().any(|a| a.is_ipv4() == v4) {
                return Err(SyncRefused::LocalAddrNotInPool);
            }
        }
        if let Some(key) = s.persist_key() {
            return match self.table::<A>().template_insert(
                &key,
                dest_id,
                s.real,
                s.timeout_s,
                now_ms,
            ) {
                Ok(_) => Ok(SyncInstalled::New),
                Err(ConnError::Exists) => Ok(SyncInstalled::Updated),
                Err(e) => Err(SyncRefused::Table(e)),
            };
        }
        let mut nc: NewConn<A::Key> = s.new_conn(dest_id, None).ok_or(SyncRefused::NoService)?;
        if redirect {
            nc.dest = REDIRECT_DEST;
            nc.fwd = FwdMethod::Route;
            nc.local = None;
        }
        let state = s.tcp_state();
        let timeout_s = match (s.timeout_s, state) {
            (0, Some(st)) => self.table::<A>().timeouts().tcp_state(st),
            (0, None) => self.table::<A>().timeouts().udp,
            (t, _) => t,
        };
        let request = Tuple {
            proto: nc.proto,
            src: nc.client,
            dst: nc.virt,
        };
        // an entry of the same request tuple bound elsewhere (another real
        // server or local port: an old connection on a reused client port)
        // is replaced, not updated: the master's binding is the live one
        let existing = self.table::<A>().peek(&request).map(|(id, _)| id);
        let stale = existing.and_then(|id| {
            let o = self.table::<A>().get(id)?;
            let moved = o.real() != nc.real || o.local() != nc.local || o.fwd() != nc.fwd;
            // a closing entry and a record of a live state: a new
            // connection on the reused tuple
            let reused = o.tcp_state().is_some_and(closing) && state.is_some_and(|st| !closing(st));
            Some((id, moved, reused))
        });
        if let Some((id, true, _)) = stale {
            if let Some(gone) = self.table::<A>().remove(id) {
                if gone.local().is_some() {
                    self.ports.released(1);
                }
            }
        }
        let (id, outcome) = match stale {
            Some((id, false, reused)) => (
                id,
                if reused {
                    SyncInstalled::New
                } else {
                    SyncInstalled::Updated
                },
            ),
            _ => {
                let id = match self.table::<A>().insert(&nc, now_ms) {
                    Ok(id) => id,
                    Err(ConnError::ReplyExists) if self.evict_stale_reply::<A>(&nc) => self
                        .table::<A>()
                        .insert(&nc, now_ms)
                        .map_err(SyncRefused::Table)?,
                    Err(e) => return Err(SyncRefused::Table(e)),
                };
                if nc.local.is_some() {
                    self.ports.adopted();
                }
                (id, SyncInstalled::New)
            }
        };
        // the proxy's shifts, on the core that rewrites the packets (not on
        // a NAT redirect entry's core, which only steers them)
        if let (Some(sp), false, false) = (s.synproxy, redirect, A::IS_V6) {
            let cap = self.table::<A>().capacity();
            self.proxied.insert(cap, id, sp.proxied());
        }
        let st = state.map_or(TcpState::None as u8, |t| t as u8);
        self.table::<A>()
            .set_synced(id, st, s.inactive, secs_to_ms(timeout_s), now_ms);
        Ok(outcome)
    }
}
