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

/// Stable slot number of a real server, assigned by the control plane and
/// reused only after the server's connections are gone.
pub type DestId = u32;

/// What a scheduler needs to know about a server's connections.
pub trait LoadView {
    /// Connections in ESTABLISHED (IPVS "ActiveConn").
    fn active(&self, dest: DestId) -> u32;
    /// Connections in any other state (IPVS "InActConn").
    fn inactive(&self, dest: DestId) -> u32;
    /// Persistence templates pointing at the server (IPVS "PersistConn").
    fn persistent(&self, dest: DestId) -> u32;
}

#[derive(Debug)]
struct Counts {
    active: Box<[AtomicU32]>,
    inactive: Box<[AtomicU32]>,
    persistent: Box<[AtomicU32]>,
}

impl Counts {
    fn new(slots: usize) -> Self {
        let mk = || (0..slots).map(|_| AtomicU32::new(0)).collect::<Box<[_]>>();
        Counts {
            active: mk(),
            inactive: mk(),
            persistent: mk(),
        }
    }
}

fn get(arr: &[AtomicU32], dest: DestId) -> u32 {
    arr.get(dest as usize).map_or(0, |c| c.load(Relaxed))
}

/// Single-writer bump: load + store, no RMW. Saturates instead of wrapping.
fn add(arr: &[AtomicU32], dest: DestId, delta: i32) {
    if let Some(c) = arr.get(dest as usize) {
        let v = c.load(Relaxed);
        let n = if delta >= 0 {
            v.saturating_add(delta as u32)
        } else {
            v.saturating_sub(delta.unsigned_abs())
        };
        c.store(n, Relaxed);
    }
}

/// One core's counts. Only the owning worker calls the mutating methods.
#[derive(Debug)]
pub struct CoreLoad {
    now: Counts,
    /// What this core had when the control thread last summed (written by control).
    reported: Counts,
}

impl CoreLoad {
    pub fn new(slots: usize) -> Self {
        CoreLoad {
            now: Counts::new(slots),
            reported: Counts::new(slots),
        }
    }
    pub fn slots(&self) -> usize {
        self.now.active.len()
    }
    pub fn add_active(&self, dest: DestId, delta: i32) {
        add(&self.now.active, dest, delta)
    }
    pub fn add_inactive(&self, dest: DestId, delta: i32) {
        add(&self.now.inactive, dest, delta)
    }
    pub fn add_persistent(&self, dest: DestId, delta: i32) {
        add(&self.now.persistent, dest, delta)
    }
    /// Forget a slot (control plane, after the server is gone from every core).
    pub fn clear(&self, dest: DestId) {
        for arr in [&self.now, &self.reported] {
            for a in [&arr.active, &arr.inactive, &arr.persistent] {
                if let Some(c) = a.get(dest as usize) {
                    c.store(0, Relaxed);
                }
            }
        }
    }
}

impl LoadView for CoreLoad {
    fn active(&self, dest: DestId) -> u32 {
        get(&self.now.active, dest)
    }
    fn inactive(&self, dest: DestId) -> u32 {
        get(&self.now.inactive, dest)
    }
    fn persistent(&self, dest: DestId) -> u32 {
        get(&self.now.persistent, dest)
    }
}

/// Sum over all cores, rebuilt by the control thread.
#[derive(Debug)]
pub struct GlobalLoad {
    sum: Counts,
}

impl GlobalLoad {
    pub fn new(slots: usize) -> Self {
        GlobalLoad {
            sum: Counts::new(slots),
        }
    }

    /// Re-sum every core. Called by the control thread only.
    pub fn refresh(&self, cores: &[&CoreLoad]) {
        let slots = self.sum.active.len();
        for d in 0..slots {
            let (mut a, mut i, mut p) = (0u32, 0u32, 0u32);
            for core in cores {
                let (ca, ci, cp) = (
                    get(&core.now.active, d as DestId),
                    get(&core.now.inactive, d as DestId),
                    get(&core.now.persistent, d as DestId),
                );
                core.reported.active[d].store(ca, Relaxed);
                core.reported.inactive[d].store(ci, Relaxed);
                core.reported.persistent[d].store(cp, Relaxed);
                a = a.saturating_add(ca);
                i = i.saturating_add(ci);
                p = p.saturating_add(cp);
            }
            self.sum.active[d].store(a, Relaxed);
            self.sum.inactive[d].store(i, Relaxed);
            self.sum.persistent[d].store(p, Relaxed);
        }
    }
}

impl LoadView for GlobalLoad {
    fn active(&self, dest: DestId) -> u32 {
        get(&self.sum.active, dest)
    }
    fn inactive(&self, dest: DestId) -> u32 {
        get(&self.sum.inactive, dest)
    }
    fn persistent(&self, dest: DestId) -> u32 {
        get(&self.sum.persistent, dest)
    }
}

/// The view a scheduler on one core uses: global sum, corrected by this core's
/// own changes since the sum was taken.
#[derive(Debug, Clone, Copy)]
pub struct SummedLoad<'a> {
    pub global: &'a GlobalLoad,
    pub local: &'a CoreLoad,
}

fn corrected(global: u32, reported: u32, now: u32) -> u32 {
    (global as i64 - reported as i64 + now as i64).clamp(0, u32::MAX as i64) as u32
}

impl LoadView for SummedLoad<'_> {
    fn active(&self, dest: DestId) -> u32 {
        corrected(
            self.global.active(dest),
            get(&self.local.reported.active, dest),
            self.local.active(dest),
        )
    }
    fn inactive(&self, dest: DestId) -> u32 {
        corrected(
            self.global.inactive(dest),
            get(&self.local.reported.inactive, dest),
            self.local.inactive(dest),
        )
    }
    fn persistent(&self, dest: DestId) -> u32 {
        corrected(
            self.global.persistent(dest),
            get(&self.local.reported.persistent, dest),
            self.local.persistent(dest),
        )
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
    fn out_of_range_and_underflow_are_harmless() {
        let c = CoreLoad::new(1);
        c.add_active(7, 1);
        assert_eq!(c.active(7), 0);
        c.add_active(0, -3);
        assert_eq!(c.active(0), 0);
    }
}
