//! Connection counts per real server, kept per core and summed for the
//! schedulers that need global load (lc, wlc, sed, nq, lblc, lblcr, ovf, twos).
//!
//! Each worker owns one [`CoreLoad`] and is its only writer: it updates with a
//! relaxed load followed by a relaxed store, which compiles to plain moves (no
//! locked read-modify-write on the fast path). The control thread periodically
//! sums every core into a [`GlobalLoad`]. A scheduler on core `k` reads
//! [`SummedLoad`], which is the global sum corrected by core `k`'s own changes
//! since that sum was taken: its own decisions are seen at once, the other
//! cores' after at most one refresh period (bounded staleness).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::lb::service::RealServer;

/// Stable slot number of a real server, assigned by the control plane and
/// reused only after the server's connections are gone.
pub type DestId = u32;

/// What a scheduler needs to know about a server's connections.
pub trait LoadView {
    /// Connections in ESTABLISHED, SYN_SENT, SYN_RECV or SYNACK (IPVS
    /// "ActiveConn", as Linux >= 4.8 counts it).
    fn active(&self, dest: DestId) -> u32;
    /// Connections in any other state (IPVS "InActConn").
    fn inactive(&self, dest: DestId) -> u32;
    /// Persistence templates pointing at the server (IPVS "PersistConn").
    fn persistent(&self, dest: DestId) -> u32;
    /// Active and inactive together (one look-up where a view can do it).
    fn conns(&self, dest: DestId) -> (u32, u32) {
        (self.active(dest), self.inactive(dest))
    }
    /// The kernel's `ip_vs_dest_conn_overhead` (active × 256 + inactive)
    /// of each of `servers` into `out` (up to the shorter of the two): one
    /// call for a scheduler's whole scan instead of one per server.
    fn overheads(&self, servers: &[RealServer], out: &mut [u64]) {
        for (s, o) in servers.iter().zip(out.iter_mut()) {
            let (active, inactive) = self.conns(s.id);
            *o = overhead(active, inactive);
        }
    }
}

/// `ip_vs_dest_conn_overhead`: active connections weigh 256 inactive ones.
#[inline(always)]
pub fn overhead(active: u32, inactive: u32) -> u64 {
    (u64::from(active) << 8) + u64::from(inactive)
}

const ACTIVE: usize = 0;
const INACTIVE: usize = 1;
const PERSISTENT: usize = 2;

/// Active, inactive and persistent counts of one server, side by side so a
/// scheduler's scan touches one place per server.
type Triple = [AtomicU32; 3];

fn triple() -> Triple {
    [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]
}

/// One server's counts on one core: what the core has now, and what it had
/// when the control thread last summed. 24 bytes, read together.
#[derive(Debug)]
struct CoreSlot {
    now: Triple,
    reported: Triple,
}

#[inline]
fn read(t: &Triple, k: usize) -> u32 {
    t[k].load(Relaxed)
}

/// Single-writer bump: load + store, no RMW. Saturates instead of wrapping.
#[inline]
fn bump(c: &AtomicU32, delta: i32) {
    let v = c.load(Relaxed);
    let n = if delta >= 0 {
        v.saturating_add(delta as u32)
    } else {
        v.saturating_sub(delta.unsigned_abs())
    };
    c.store(n, Relaxed);
}

/// One core's counts. Only the owning worker calls the mutating methods.
#[derive(Debug)]
pub struct CoreLoad {
    slots: Box<[CoreSlot]>,
}

impl CoreLoad {
    pub fn new(slots: usize) -> Self {
        CoreLoad {
            slots: (0..slots)
                .map(|_| CoreSlot {
                    now: triple(),
                    reported: triple(),
                })
                .collect(),
        }
    }
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
    #[inline]
    fn add(&self, dest: DestId, k: usize, delta: i32) {
        if let Some(s) = self.slots.get(dest as usize) {
            bump(&s.now[k], delta)
        }
    }
    pub fn add_active(&self, dest: DestId, delta: i32) {
        self.add(dest, ACTIVE, delta)
    }
    pub fn add_inactive(&self, dest: DestId, delta: i32) {
        self.add(dest, INACTIVE, delta)
    }
    pub fn add_persistent(&self, dest: DestId, delta: i32) {
        self.add(dest, PERSISTENT, delta)
    }
    /// Forget a slot (control plane, after the server is gone from every core).
    pub fn clear(&self, dest: DestId) {
        if let Some(s) = self.slots.get(dest as usize) {
            for c in s.now.iter().chain(s.reported.iter()) {
                c.store(0, Relaxed);
            }
        }
    }
    #[inline]
    fn get(&self, dest: DestId, k: usize) -> u32 {
        self.slots.get(dest as usize).map_or(0, |s| read(&s.now, k))
    }
}

impl LoadView for CoreLoad {
    fn active(&self, dest: DestId) -> u32 {
        self.get(dest, ACTIVE)
    }
    fn inactive(&self, dest: DestId) -> u32 {
        self.get(dest, INACTIVE)
    }
    fn persistent(&self, dest: DestId) -> u32 {
        self.get(dest, PERSISTENT)
    }
}

/// Sum over all cores, rebuilt by the control thread.
#[derive(Debug)]
pub struct GlobalLoad {
    sum: Box<[Triple]>,
}

impl GlobalLoad {
    pub fn new(slots: usize) -> Self {
        GlobalLoad {
            sum: (0..slots).map(|_| triple()).collect(),
        }
    }

    /// Re-sum every core. Called by the control thread only.
    pub fn refresh(&self, cores: &[&CoreLoad]) {
        self.refresh_upto(self.sum.len(), cores)
    }

    /// Re-sum slots `0..slots` only (the control thread knows the highest
    /// slot in use; the rest stay zero), keeping its periodic work small.
    pub fn refresh_upto(&self, slots: usize, cores: &[&CoreLoad]) {
        for (d, sum) in self.sum.iter().enumerate().take(slots) {
            let mut total = [0u32; 3];
            for core in cores {
                let Some(s) = core.slots.get(d) else {
                    continue;
                };
                for ((now, reported), t) in s.now.iter().zip(&s.reported).zip(&mut total) {
                    let v = now.load(Relaxed);
                    reported.store(v, Relaxed);
                    *t = t.saturating_add(v);
                }
            }
            for (out, t) in sum.iter().zip(total) {
                out.store(t, Relaxed);
            }
        }
    }

    #[inline]
    fn get(&self, dest: DestId, k: usize) -> u32 {
        self.sum.get(dest as usize).map_or(0, |t| read(t, k))
    }
}

impl LoadView for GlobalLoad {
    fn active(&self, dest: DestId) -> u32 {
        self.get(dest, ACTIVE)
    }
    fn inactive(&self, dest: DestId) -> u32 {
        self.get(dest, INACTIVE)
    }
    fn persistent(&self, dest: DestId) -> u32 {
        self.get(dest, PERSISTENT)
    }
}

/// The view a scheduler on one core uses: global sum, corrected by this core's
/// own changes since the sum was taken.
#[derive(Debug, Clone, Copy)]
pub struct SummedLoad<'a> {
    pub global: &'a GlobalLoad,
    pub local: &'a CoreLoad,
}

impl SummedLoad<'_> {
    #[inline]
    fn get(&self, dest: DestId, k: usize) -> u32 {
        let g = self.global.get(dest, k) as i64;
        let (reported, now) = self.local.slots.get(dest as usize).map_or((0, 0), |s| {
            (read(&s.reported, k) as i64, read(&s.now, k) as i64)
        });
        (g - reported + now).clamp(0, u32::MAX as i64) as u32
    }
}

/// A global count corrected by one core's changes since it was summed.
#[inline(always)]
fn corrected(g: u32, r: u32, n: u32) -> u32 {
    // g - r + n, clamped to 0..=u32::MAX, without signed arithmetic
    (u64::from(g) + u64::from(n))
        .saturating_sub(u64::from(r))
        .min(u64::from(u32::MAX)) as u32
}

impl LoadView for SummedLoad<'_> {
    /// As the trait's, without a virtual call per server (wlc's scan).
    fn overheads(&self, servers: &[RealServer], out: &mut [u64]) {
        for (s, o) in servers.iter().zip(out.iter_mut()) {
            let d = s.id as usize;
            let (g, l) = (self.global.sum.get(d), self.local.slots.get(d));
            let count = |k: usize| {
                corrected(
                    g.map_or(0, |g| read(g, k)),
                    l.map_or(0, |l| read(&l.reported, k)),
                    l.map_or(0, |l| read(&l.now, k)),
                )
            };
            *o = overhead(count(ACTIVE), count(INACTIVE));
        }
    }
    #[inline]
    fn conns(&self, dest: DestId) -> (u32, u32) {
        let (g, l) = (
            self.global.sum.get(dest as usize),
            self.local.slots.get(dest as usize),
        );
        match (g, l) {
            (Some(g), Some(l)) => (
                corrected(
                    read(g, ACTIVE),
                    read(&l.reported, ACTIVE),
                    read(&l.now, ACTIVE),
                ),
                corrected(
                    read(g, INACTIVE),
                    read(&l.reported, INACTIVE),
                    read(&l.now, INACTIVE),
                ),
            ),
            _ => (self.active(dest), self.inactive(dest)),
        }
    }
    fn active(&self, dest: DestId) -> u32 {
        self.get(dest, ACTIVE)
    }
    fn inactive(&self, dest: DestId) -> u32 {
        self.get(dest, INACTIVE)
    }
    fn persistent(&self, dest: DestId) -> u32 {
        self.get(dest, PERSISTENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_changes_seen_at_once_others_after_refresh() {
        let (c0, c1) = (CoreLoad::new(4), CoreLoad::new(4));
        let g = GlobalLoad::new(4);
        c1.add_active(2, 5);
        let v0 = SummedLoad {
            global: &g,
            local: &c0,
        };
        assert_eq!(v0.active(2), 0, "other core not yet summed");
        c0.add_active(2, 1);
        assert_eq!(v0.active(2), 1, "own change visible at once");
        g.refresh(&[&c0, &c1]);
        assert_eq!(v0.active(2), 6);
        c0.add_active(2, -1);
        c0.add_inactive(2, 1);
        assert_eq!(v0.active(2), 5);
        assert_eq!(v0.inactive(2), 1);
    }

    #[test]
    fn refresh_upto_sums_only_the_slots_in_use() {
        let c = CoreLoad::new(8);
        let g = GlobalLoad::new(8);
        c.add_active(1, 2);
        c.add_active(6, 3);
        g.refresh_upto(2, &[&c]);
        assert_eq!(g.active(1), 2);
        assert_eq!(g.active(6), 0, "slot 6 not summed");
        g.refresh(&[&c]);
        assert_eq!(g.active(6), 3);
        g.refresh_upto(100, &[&c]);
        assert_eq!(g.active(6), 3, "a bound past the end is harmless");
    }

    #[test]
    fn summed_overheads_are_the_per_server_conns() {
        // SummedLoad's batched read gives what its conns() gives, server by
        // server: other cores' counts, own changes since the sum, and ids
        // past the end
        use crate::lb::service::RealServer;
        use crate::lb::types::FwdMethod;
        let (c0, c1) = (CoreLoad::new(6), CoreLoad::new(6));
        let g = GlobalLoad::new(6);
        c1.add_active(1, 4);
        c1.add_inactive(2, 7);
        c0.add_active(3, 2);
        g.refresh(&[&c0, &c1]);
        c0.add_active(3, -2);
        c0.add_inactive(3, 5);
        c0.add_active(4, 1);
        c1.add_active(1, 9); // not yet summed
        let v = SummedLoad {
            global: &g,
            local: &c0,
        };
        let servers: Vec<RealServer> = [0u32, 1, 2, 3, 4, 5, 9, 3]
            .iter()
            .map(|&id| RealServer {
                id,
                addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1)),
                port: 80,
                weight: 1,
                last_weight: 1,
                method: FwdMethod::Masq,
                upper_threshold: 0,
                lower_threshold: 0,
            })
            .collect();
        let mut got = [u64::MAX; 8];
        v.overheads(&servers, &mut got);
        let want: Vec<u64> = servers
            .iter()
            .map(|s| {
                let (a, i) = v.conns(s.id);
                overhead(a, i)
            })
            .collect();
        assert_eq!(got.to_vec(), want);
        assert_eq!(&got[..5], &[0, 4 << 8, 7, 5, 1 << 8]);
        // a shorter output is filled as far as it goes
        let mut short = [u64::MAX; 2];
        v.overheads(&servers, &mut short);
        assert_eq!(short, [0, 4 << 8]);
    }

    #[test]
    fn out_of_range_and_underflow_are_harmless() {
        let c = CoreLoad::new(1);
        c.add_active(7, 1);
        assert_eq!(c.active(7), 0);
        c.add_active(0, -3);
        assert_eq!(c.active(0), 0);
    }
}
