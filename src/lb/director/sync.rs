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
//! **Failure modes.** Entries the backup cannot place are refused with a
//! [`SyncRefused`] reason the worker counts; nothing is half-installed.

use super::{CoreLb, REDIRECT_DEST};
use crate::lb::conn::{secs_to_ms, ConnError, ConnId, Direction, NewConn, Tuple};
use crate::lb::sync::{sync_decide, SyncRecord, SyncSettings, SyncedConn};
use crate::lb::tcp_state::TcpState;
use crate::lb::types::{FwdMethod, Protocol};
use crate::wire::ipvs_sync::SyncConn;
use std::net::{IpAddr, Ipv4Addr};

/// Sync records a core keeps between two drains by its worker.
pub const SYNC_RECORDS_MAX: usize = 256;

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
        self.sync_master = on;
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
        std::mem::take(&mut self.sync_lost)
    }

    /// Hand every record collected since the last call to `f` (by value,
    /// no allocation); returns how many were lost to a full buffer since
    /// the last call.
    pub fn drain_sync_records(&mut self, f: impl FnMut(SyncRecord)) -> u64 {
        self.sync_out.drain(..).for_each(f);
        std::mem::take(&mut self.sync_lost)
    }

    /// The master's decision after a client packet of `id` (its packet
    /// count already bumped): the connection, then its template.
    pub(super) fn feed_sync(&mut self, id: ConnId, now_ms: u64) {
        // decided on the entry in place (no copy of it per packet)
        let Some(c) = self.conns.get(id) else {
            return;
        };
        let template = if c.has_template() {
            self.conns.template_of(id)
        } else {
            None
        };
        // one-packet connections are never sent, their templates are
        let send = !c.is_one_packet()
            && self
                .sync_marks
                .get_mut(id.index() as usize)
                .is_some_and(|raw| {
                    sync_decide(
                        c,
                        raw,
                        c.in_pkts(),
                        now_ms,
                        template.is_some(),
                        &self.sync_settings,
                    )
                });
        let fwmark = self.dests.get(c.dest() as usize).map_or(0, |d| d.fwmark);
        if send {
            let c = *c;
            self.push_sync(id, &c, fwmark);
        }
        let Some(t) = template else {
            return;
        };
        let Some(tc) = self.conns.get_mut(t) else {
            return;
        };
        tc.bump_in_pkts();
        let tc = *tc;
        if let Some(raw) = self.sync_marks.get_mut(t.index() as usize) {
            if sync_decide(&tc, raw, tc.in_pkts(), now_ms, false, &self.sync_settings) {
                self.push_sync(t, &tc, fwmark);
            }
        }
    }

    fn push_sync(&mut self, id: ConnId, c: &crate::lb::conn::Conn<u32>, fwmark: u32) {
        let Ok(mut rec) = SyncRecord::of(c, fwmark) else {
            return;
        };
        if let Some(p) = self.proxied.get(id) {
            rec.add_synproxy(p);
        }
        if self.sync_out.len() < SYNC_RECORDS_MAX {
            self.sync_out.push(rec);
        } else {
            self.sync_lost += 1;
        }
    }

    /// A synced connection's reply tuple is held by an older entry here:
    /// the master gave the tuple (a FULLNAT local port, typically, after it
    /// restarted and its port walk began again) to a new connection, so
    /// the old one is over on the master. Remove the old entry if it is in
    /// a closing state or itself only synced (the master's word is newer);
    /// an established connection this director forwards itself stays, and
    /// the new entry is refused (`tuple_in_use`).
    fn evict_stale_reply(&mut self, nc: &NewConn<u32>) -> bool {
        let reply = Tuple {
            proto: nc.proto,
            src: nc.real,
            dst: nc.local.unwrap_or(nc.client),
        };
        let Some((old, Direction::Output)) = self.conns.peek(&reply) else {
            return false;
        };
        let Some(c) = self.conns.get(old) else {
            return false;
        };
        if !(c.tcp_state().is_some_and(closing) || c.is_synced()) {
            return false;
        }
        if let Some(gone) = self.conns.remove(old) {
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
        let proto = s.protocol().unwrap_or(Protocol::Tcp);
        let vip = IpAddr::V4(Ipv4Addr::from(s.virt.addr));
        let svc = self
            .snap
            .find(s.fwmark, proto, vip, s.virt.port)
            .ok_or(SyncRefused::NoService)?;
        let rip = IpAddr::V4(Ipv4Addr::from(s.real.addr));
        let dest = svc
            .servers
            .iter()
            .find(|d| d.addr == rip && (d.port == s.real.port || d.port == 0))
            .ok_or(SyncRefused::NoDest)?;
        let dest_id = dest.id;
        if s.synproxy.is_some() && !svc.config.synproxy {
            return Err(SyncRefused::NotProxied);
        }
        // FULLNAT keeps the master's local endpoint, whether or not its
        // address is in this director's pool: directors behind ECMP have a
        // pool each (docs/ecmp.md), so their local ports never collide, and
        // a peer's address reaches this director only when routing sends
        // it here (the peer died; its address's covering route remains).
        // A service with no local address here is no FULLNAT service here.
        if s.local.is_some() && !svc.config.local_addresses.iter().any(IpAddr::is_ipv4) {
            return Err(SyncRefused::LocalAddrNotInPool);
        }
        if let Some(key) = s.persist_key() {
            return match self
                .conns
                .template_insert(&key, dest_id, s.real, s.timeout_s, now_ms)
            {
                Ok(_) => Ok(SyncInstalled::New),
                Err(ConnError::Exists) => Ok(SyncInstalled::Updated),
                Err(e) => Err(SyncRefused::Table(e)),
            };
        }
        let mut nc: NewConn<u32> = s.new_conn(dest_id, None).ok_or(SyncRefused::NoService)?;
        if redirect {
            nc.dest = REDIRECT_DEST;
            nc.fwd = FwdMethod::Route;
            nc.local = None;
        }
        let state = s.tcp_state();
        let timeout_s = match (s.timeout_s, state) {
            (0, Some(st)) => self.conns.timeouts().tcp_state(st),
            (0, None) => self.conns.timeouts().udp,
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
        let existing = self.conns.peek(&request).map(|(id, _)| id);
        let stale = existing.and_then(|id| {
            let o = self.conns.get(id)?;
            let moved = o.real() != nc.real || o.local() != nc.local || o.fwd() != nc.fwd;
            // a closing entry and a record of a live state: a new
            // connection on the reused tuple
            let reused = o.tcp_state().is_some_and(closing) && state.is_some_and(|st| !closing(st));
            Some((id, moved, reused))
        });
        if let Some((id, true, _)) = stale {
            if let Some(gone) = self.conns.remove(id) {
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
                let id = match self.conns.insert(&nc, now_ms) {
                    Ok(id) => id,
                    Err(ConnError::ReplyExists) if self.evict_stale_reply(&nc) => {
                        self.conns.insert(&nc, now_ms).map_err(SyncRefused::Table)?
                    }
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
        if let (Some(sp), false) = (s.synproxy, redirect) {
            let cap = self.conns.capacity();
            self.proxied.insert(cap, id, sp.proxied());
        }
        let st = state.map_or(TcpState::None as u8, |t| t as u8);
        self.conns
            .set_synced(id, st, s.inactive, secs_to_ms(timeout_s), now_ms);
        Ok(outcome)
    }
}
