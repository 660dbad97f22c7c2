//! Persistence templates (`ipvsadm -p timeout -M netmask`).
//!
//! A template pins a client network to a real server: key
//! `(protocol, client address & netmask, VIP, vport)`, where vport is 0 for
//! port-zero services and FTP (port 21), and fwmark services use protocol
//! `IP` and the mark in place of the VIP. The rules follow the kernel
//! (`ip_vs_sched_persist`, `ip_vs_check_template`, `ip_vs_conn_expire`):
//!
//! - a template is refreshed to `now + its timeout` each time a new
//!   connection is scheduled through it (not by the connections' packets);
//! - when its timer fires while connections it controls still live
//!   (`n_control > 0`), it is kept for another 60 s, and from then on that
//!   60 s is its timeout (the kernel overwrites the template's timeout);
//! - when its server is unavailable (removed, or quiescent with
//!   expire_quiescent_template: the caller's predicate decides), the
//!   template is invalidated: no longer found by key (its ports show as
//!   65535 in listings), left to expire, and a fresh one is made;
//! - it counts in PersistConn of its server while it exists;
//! - it becomes ASSURED when a connection it controls reaches ESTABLISHED
//!   (TCP) or gets a reply (UDP); listings show "ASSURED", else "NONE".
//!
//! Templates live in the connection table's own slab, index and timer wheel
//! (flagged as templates, as the kernel's `IP_VS_CONN_F_TEMPLATE`), so they
//! share its capacity and are expired by the same [`ConnTable::expire`].

use crate::lb::conn::{
    secs_to_ms, Addr, Conn, ConnError, ConnId, ConnTable, Endpoint, F_LIVE, F_REQ_INDEXED,
    F_TEMPLATE, PROTO_IP,
};
use crate::lb::load::DestId;
use crate::lb::timer::TimerLink;
use crate::lb::types::Protocol;

/// FTP control port: persistent FTP services use vport 0 in templates, so
/// control and data connections stick together.
pub const FTP_PORT: u16 = 21;

/// How long a template that fired while still controlling connections is
/// kept, milliseconds (kernel: 60 s).
pub const TEMPLATE_REARM_MS: u32 = 60_000;

/// Default persistence timeout of `-p` without a value, seconds.
pub const DEFAULT_PERSISTENCE_S: u32 = 300;

/// Port 65535, written into invalidated templates (as the kernel does).
const INVALID_PORT: u16 = 0xffff;

/// Key of a persistence template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersistKey<A> {
    proto: u8,
    client_net: A,
    vaddr: A,
    vport: u16,
}

impl<A: Addr> PersistKey<A> {
    /// Key for a port service (or port-zero service, `svc_port == 0`):
    /// `client & netmask`, and vport = `dst_port` when the packet is for the
    /// service port and that port is not FTP, else 0.
    pub fn for_service(
        proto: Protocol,
        client: A,
        netmask: A,
        vip: A,
        svc_port: u16,
        dst_port: u16,
    ) -> Self {
        let vport = if dst_port == svc_port && svc_port != FTP_PORT {
            dst_port
        } else {
            0
        };
        PersistKey {
            proto: proto.number(),
            client_net: client.mask(netmask),
            vaddr: vip,
            vport,
        }
    }

    /// Key for a fwmark service: protocol IP, the mark in place of the VIP.
    pub fn for_fwmark(client: A, netmask: A, mark: u32) -> Self {
        PersistKey {
            proto: PROTO_IP,
            client_net: client.mask(netmask),
            vaddr: A::from_fwmark(mark),
            vport: 0,
        }
    }

    /// Key from its raw parts, as a synced template carries them (protocol
    /// number, 0 for fwmark; masked client; VIP or mark; vport).
    pub fn from_parts(proto: u8, client_net: A, vaddr: A, vport: u16) -> Self {
        PersistKey {
            proto,
            client_net,
            vaddr,
            vport,
        }
    }
    /// Masked client address.
    pub fn client_net(&self) -> A {
        self.client_net
    }
    /// VIP (or fwmark) of the key.
    pub fn vaddr(&self) -> A {
        self.vaddr
    }
    /// Virtual port of the key (0 for port-zero, FTP and fwmark services).
    pub fn vport(&self) -> u16 {
        self.vport
    }

    fn matches(&self, c: &Conn<A>) -> bool {
        c.is_template()
            && c.protocol_number() == self.proto
            && c.client().addr == self.client_net
            && c.virt() == Endpoint::new(self.vaddr, self.vport)
    }
}

/// A template as one core created it, for the other cores to install
/// (templates are per core; see [`crate::lb::director`]): `K` is its
/// family's table key (`u32` IPv4, `u128` IPv6 and mixed families).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template<K> {
    /// Template key.
    pub key: PersistKey<K>,
    /// Its server.
    pub dest: DestId,
    /// The server's address and port (as listings show them).
    pub real: Endpoint<K>,
    /// Template timeout, seconds.
    pub timeout_s: u32,
}

/// A new template of either family's table, as carried between cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateNote {
    /// In the IPv4 table.
    V4(Template<u32>),
    /// In the IPv6 table.
    V6(Template<u128>),
}

impl TemplateNote {
    /// Its server.
    pub fn dest(&self) -> DestId {
        match self {
            TemplateNote::V4(t) => t.dest,
            TemplateNote::V6(t) => t.dest,
        }
    }
    /// Its timeout, seconds.
    pub fn timeout_s(&self) -> u32 {
        match self {
            TemplateNote::V4(t) => t.timeout_s,
            TemplateNote::V6(t) => t.timeout_s,
        }
    }
}

/// Why no template could be provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistError {
    /// The scheduler found no server.
    NoDest,
    /// The table refused the template.
    Table(ConnError),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::NoDest => f.write_str("no destination available"),
            PersistError::Table(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PersistError {}

impl<A: Addr> ConnTable<A> {
    fn template_hash(&self, key: &PersistKey<A>) -> u32 {
        A::hash_key(
            &self.seed,
            key.proto,
            key.client_net,
            0,
            key.vaddr,
            key.vport,
        )
    }

    fn find_template(&self, key: &PersistKey<A>) -> Option<usize> {
        let slab = &self.slab;
        let h = self.template_hash(key);
        self.index
            .find(h, |v| {
                slab.get(v as usize)
                    .is_some_and(|s| s.0.is_hashed() && key.matches(&s.0))
            })
            .map(|v| v as usize)
    }

    /// The usable template for `key`, refreshed to `now + its timeout`
    /// (kernel `ip_vs_ct_in_get` + `ip_vs_check_template`). If its server is
    /// not `available`, the template is invalidated and `None` returned.
    pub fn template_lookup(
        &mut self,
        key: &PersistKey<A>,
        now_ms: u64,
        available: impl FnOnce(DestId) -> bool,
    ) -> Option<ConnId> {
        let idx = self.find_template(key)?;
        if !available(self.slab.get(idx)?.0.dest()) {
            self.invalidate_template(idx);
            return None;
        }
        self.slab.get_mut(idx)?.0.refresh_template(now_ms);
        Some(self.id_at(idx))
    }

    /// Create the template for `key` pointing at server `dest` (address and
    /// port `real`, as listings show them), living `timeout_s` seconds from
    /// `now_ms`. Refused with `Exists` if a valid template has the key.
    pub fn template_insert(
        &mut self,
        key: &PersistKey<A>,
        dest: DestId,
        real: Endpoint<A>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Result<ConnId, ConnError> {
        if self.find_template(key).is_some() {
            self.stats.exists += 1;
            return Err(ConnError::Exists);
        }
        let Some(idx) = self.alloc() else {
            self.stats.table_full += 1;
            return Err(ConnError::TableFull);
        };
        let c = Conn::new_template(key, dest, real, secs_to_ms(timeout_s), now_ms);
        let h = self.template_hash(key);
        self.install(idx, c, h, 0);
        self.load.add_persistent(dest, 1);
        self.templates += 1;
        self.stats.templates_created += 1;
        Ok(self.id_at(idx))
    }

    /// The persistent scheduling step of `ip_vs_sched_persist`: the template
    /// for `key` if one is usable, else a new one for the server `schedule`
    /// picks (living `timeout_s`). Returns the template and its server; give
    /// the template to the connection's [`crate::lb::conn::NewConn`].
    pub fn template_for(
        &mut self,
        key: &PersistKey<A>,
        timeout_s: u32,
        now_ms: u64,
        available: impl FnOnce(DestId) -> bool,
        schedule: impl FnOnce() -> Option<(DestId, Endpoint<A>)>,
    ) -> Result<(ConnId, DestId), PersistError> {
        if let Some(t) = self.template_lookup(key, now_ms, available) {
            let dest = self.get(t).map_or(0, |c| c.dest());
            return Ok((t, dest));
        }
        let (dest, real) = schedule().ok_or(PersistError::NoDest)?;
        let t = self
            .template_insert(key, dest, real, timeout_s, now_ms)
            .map_err(PersistError::Table)?;
        Ok((t, dest))
    }

    /// Unhash a template so it is no longer found; it stays (and counts in
    /// PersistConn) until its timer fires with no connection left on it.
    pub(crate) fn invalidate_template(&mut self, idx: usize) {
        let Some(e) = self.slab.get(idx).map(|s| s.0) else {
            return;
        };
        if !e.is_template() || !e.is_hashed() {
            return;
        }
        let key = PersistKey {
            proto: e.protocol_number(),
            client_net: e.client().addr,
            vaddr: e.virt().addr,
            vport: e.virt().port,
        };
        let h = self.template_hash(&key);
        self.index.remove(h, idx as u32);
        if let Some(s) = self.slab.get_mut(idx) {
            s.0.mark_invalid();
        }
        self.stats.templates_invalidated += 1;
    }

    /// At expiry: keep a template that still controls connections for
    /// another [`TEMPLATE_REARM_MS`]. True if re-armed.
    pub(crate) fn rearm_if_controlling(&mut self, idx: usize, now_ms: u64) -> bool {
        let Some(s) = self.slab.get_mut(idx) else {
            return false;
        };
        if s.0.controlled() == 0 {
            return false;
        }
        s.0.rearm_template(now_ms);
        self.wheel.arm(&mut self.slab[..], idx as u32);
        true
    }
}

impl<A: Addr> Conn<A> {
    fn new_template(
        key: &PersistKey<A>,
        dest: DestId,
        real: Endpoint<A>,
        timeout_ms: u32,
        now_ms: u64,
    ) -> Self {
        Conn {
            expires_ms: now_ms + u64::from(timeout_ms),
            caddr: key.client_net,
            vaddr: key.vaddr,
            daddr: real.addr,
            cport: 0,
            vport: key.vport,
            dport: real.port,
            dest,
            timeout_ms,
            link: TimerLink::UNLINKED,
            control: 0,
            proto: key.proto,
            flags: F_LIVE | F_TEMPLATE | F_REQ_INDEXED,
            ..Conn::default()
        }
    }

    fn refresh_template(&mut self, now_ms: u64) {
        self.expires_ms = now_ms + u64::from(self.timeout_ms);
    }

    fn rearm_template(&mut self, now_ms: u64) {
        self.timeout_ms = TEMPLATE_REARM_MS;
        self.expires_ms = now_ms + u64::from(TEMPLATE_REARM_MS);
    }

    fn mark_invalid(&mut self) {
        self.flags &= !F_REQ_INDEXED;
        self.cport = 0;
        self.vport = INVALID_PORT;
        self.dport = INVALID_PORT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::load::{CoreLoad, LoadView};
    use std::sync::Arc;

    fn table() -> ConnTable<u32> {
        ConnTable::with_seed(
            64,
            Arc::new(CoreLoad::new(8)),
            0,
            crate::lb::conn::Seed::new(3),
        )
        .unwrap()
    }

    #[test]
    fn key_rules() {
        let m = u32::prefix_mask(24);
        assert_eq!(m, 0xffff_ff00);
        let k = PersistKey::for_service(Protocol::Tcp, 0xc612_0005, m, 0xc612_0064, 80, 80);
        assert_eq!((k.client_net(), k.vport()), (0xc612_0000, 80));
        // Port-zero service: vport 0.
        let k = PersistKey::for_service(Protocol::Tcp, 0xc612_0005, m, 0xc612_0064, 0, 443);
        assert_eq!(k.vport(), 0);
        // FTP: vport 0 so the data connections share the template.
        let k = PersistKey::for_service(Protocol::Tcp, 1, u32::MAX, 2, 21, 21);
        assert_eq!(k.vport(), 0);
        let k = PersistKey::<u32>::for_fwmark(0xc612_0005, u32::MAX, 7);
        assert_eq!((k.vaddr(), k.vport(), k.client_net()), (7, 0, 0xc612_0005));
        assert_eq!(u128::prefix_mask(64), u128::MAX << 64);
        assert_eq!(u128::prefix_mask(0), 0);
        assert_eq!(u128::prefix_mask(200), u128::MAX);
    }

    #[test]
    fn insert_lookup_refresh_and_counts() {
        let mut t = table();
        let key = PersistKey::for_service(Protocol::Tcp, 10, u32::MAX, 100, 80, 80);
        let id = t
            .template_insert(&key, 3, Endpoint::new(200, 8080), 300, 1_000)
            .unwrap();
        assert_eq!(t.load().persistent(3), 1);
        assert_eq!(t.template_count(), 1);
        assert_eq!(t.conn_count(), 0);
        assert_eq!(
            t.template_insert(&key, 3, Endpoint::new(200, 8080), 300, 1_000),
            Err(ConnError::Exists)
        );
        assert_eq!(t.template_lookup(&key, 50_000, |_| true), Some(id));
        let c = t.get(id).unwrap();
        assert_eq!(c.expires_ms(), 350_000);
        assert_eq!(c.state_name(), "NONE");
        assert_eq!(c.proto_name(), "TCP");
        assert_eq!(c.client(), Endpoint::new(10, 0));
        assert_eq!(c.real(), Endpoint::new(200, 8080));
        // Not visible to packet lookups.
        let tuple = crate::lb::conn::Tuple {
            proto: Protocol::Tcp,
            src: Endpoint::new(10, 0),
            dst: Endpoint::new(100, 80),
        };
        assert_eq!(t.peek(&tuple), None);
    }
}
