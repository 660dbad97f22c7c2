//! Locality-based least connection with replication (`ip_vs_lblcr.c`).
//!
//! Each destination address maps to a *set* of servers. A decision takes
//! the set's weighted-least-connection member (skipping threshold-
//! overloaded ones; ties to the most recently added). If the set has more
//! than one member and has not changed for `lblcr_expiration` (24 h), its
//! weighted-most-loaded member is dropped first. The chosen member is used
//! unless it is lblc-overloaded (more active connections than weight while
//! some server is below half its weight); then wlc over the whole service
//! picks a server, which joins the set (at its head). A new destination
//! gets a set of the wlc choice.
//!
//! Ageing and memory bounds are lblc's (same table, same timers); set
//! members come from a second fixed slab. When a server leaves the
//! service it leaves every set at once (the kernel keeps it in the set,
//! unavailable, until it is dropped as the most loaded).

use std::net::IpAddr;

use super::lblc::{lblc_overloaded, AddrTable, DEFAULT_EXPIRATION_MS, HARD_LIMIT};
use super::{wlc::weighted_least_conn, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Hard limit on set members over all destinations.
pub const MEMBER_LIMIT: usize = HARD_LIMIT * 2;

const NIL: u32 = u32::MAX;

/// A destination's server set: a list of member slots.
#[derive(Debug, Clone, Copy)]
struct DestSet {
    head: u32,
    size: u32,
    lastmod: u64,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    pos: u32,
    next: u32,
}

/// Fixed slab of set members.
#[derive(Debug, Clone)]
struct Members {
    slab: Vec<Member>,
    free: Vec<u32>,
    cap: usize,
}

impl Members {
    fn new(cap: usize) -> Self {
        Members {
            slab: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            cap,
        }
    }

    fn iter(&self, set: &DestSet) -> MemberIter<'_> {
        MemberIter {
            slab: &self.slab,
            cur: set.head,
        }
    }

    /// `ip_vs_dest_set_insert`: at the head; `check` skips a member already
    /// present. The set's lastmod changes only when a member is added.
    fn insert(&mut self, set: &mut DestSet, pos: u32, now: u64, check: bool) {
        if check && self.iter(set).any(|p| p == pos) {
            return;
        }
        let m = Member {
            pos,
            next: set.head,
        };
        let idx = if let Some(i) = self.free.pop() {
            match self.slab.get_mut(i as usize) {
                Some(slot) => *slot = m,
                None => return,
            }
            i
        } else if self.slab.len() < self.cap {
            self.slab.push(m);
            (self.slab.len() - 1) as u32
        } else {
            return;
        };
        set.head = idx;
        set.size += 1;
        set.lastmod = now;
    }

    /// `ip_vs_dest_set_erase`: remove `pos` from the set.
    fn erase(&mut self, set: &mut DestSet, pos: u32, now: u64) {
        self.retain(set, |p| (p != pos).then_some(p));
        set.lastmod = now;
    }

    /// Keep members for which `f` gives a (possibly new) position.
    fn retain(&mut self, set: &mut DestSet, mut f: impl FnMut(u32) -> Option<u32>) {
        let mut prev = NIL;
        let mut cur = set.head;
        while cur != NIL {
            let Some(m) = self.slab.get_mut(cur as usize) else {
                break;
            };
            let next = m.next;
            match f(m.pos) {
                Some(p) => {
                    m.pos = p;
                    prev = cur;
                }
                None => {
                    if prev == NIL {
                        set.head = next;
                    } else if let Some(pm) = self.slab.get_mut(prev as usize) {
                        pm.next = next;
                    }
                    self.free.push(cur);
                    set.size = set.size.saturating_sub(1);
                }
            }
            cur = next;
        }
    }

    fn free_all(&mut self, set: &DestSet) {
        let mut cur = set.head;
        while cur != NIL {
            let Some(m) = self.slab.get(cur as usize) else {
                break;
            };
            let next = m.next;
            self.free.push(cur);
            cur = next;
        }
    }

    /// `ip_vs_dest_set_min`: weighted least connection among members not
    /// overloaded, the first with weight > 0 being the initial candidate.
    fn set_min(&self, ctx: &SchedCtx<'_>, set: &DestSet) -> Option<usize> {
        let mut it = self.iter(set).map(|p| p as usize);
        let mut least = loop {
            let p = it.next()?;
            if !ctx.is_overloaded(p) && ctx.weight(p) > 0 {
                break p;
            }
        };
        let mut loh = ctx.overhead(least);
        for p in it {
            if ctx.is_overloaded(p) {
                continue;
            }
            let doh = ctx.overhead(p);
            if u128::from(loh) * u128::from(ctx.weight(p))
                > u128::from(doh) * u128::from(ctx.weight(least))
            {
                least = p;
                loh = doh;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: weighted most connections among members with
    /// weight > 0 (overload flags ignored).
    fn set_max(&self, ctx: &SchedCtx<'_>, set: &DestSet) -> Option<usize> {
        let mut it = self.iter(set).map(|p| p as usize);
        let mut most = loop {
            let p = it.next()?;
            if ctx.weight(p) > 0 {
                break p;
            }
        };
        let mut moh = ctx.overhead(most);
        for p in it {
            let doh = ctx.overhead(p);
            if u128::from(moh) * u128::from(ctx.weight(p))
                < u128::from(doh) * u128::from(ctx.weight(most))
                && ctx.weight(p) > 0
            {
                most = p;
                moh = doh;
            }
        }
        Some(most)
    }
}

struct MemberIter<'a> {
    slab: &'a [Member],
    cur: u32,
}

impl Iterator for MemberIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.cur == NIL {
            return None;
        }
        let m = self.slab.get(self.cur as usize)?;
        self.cur = m.next;
        Some(m.pos)
    }
}

/// Locality-based least connection with replication.
#[derive(Debug, Clone)]
pub struct Lblcr {
    table: Option<AddrTable<DestSet>>,
    members: Option<Members>,
    expiration_ms: u64,
}

impl Default for Lblcr {
    fn default() -> Self {
        Self::new()
    }
}

impl Lblcr {
    /// Empty table, default 24 h expiration; memory reserved on first use.
    pub fn new() -> Self {
        Lblcr {
            table: None,
            members: None,
            expiration_ms: DEFAULT_EXPIRATION_MS,
        }
    }

    /// Number of remembered destinations.
    pub fn len(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.len())
    }

    /// Whether no destination is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A destination's server set, most recently added first.
    pub fn set_of(&mut self, dst: IpAddr) -> Option<Vec<u32>> {
        let (t, m) = (self.table.as_mut()?, self.members.as_ref()?);
        let idx = t.find(dst)?;
        let (_, set) = t.get_mut(idx)?;
        Some(m.iter(set).collect())
    }
}

impl Scheduler for Lblcr {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize> {
        let now = input.now_ms;
        let exp = self.expiration_ms;
        let table = self
            .table
            .get_or_insert_with(|| AddrTable::new(ctx.svc.af(), HARD_LIMIT));
        let members = self
            .members
            .get_or_insert_with(|| Members::new(MEMBER_LIMIT));
        if let Some(idx) = table.find(input.dst) {
            let (lastuse, set) = table.get_mut(idx)?;
            *lastuse = now;
            let dest = members.set_min(ctx, set);
            if set.size > 1 && now > set.lastmod.saturating_add(exp) {
                if let Some(m) = members.set_max(ctx, set) {
                    members.erase(set, m as u32, now);
                }
            }
            if let Some(d) = dest {
                if !lblc_overloaded(ctx, d) {
                    return Some(d);
                }
            }
            let d = weighted_least_conn(ctx)?;
            members.insert(set, d as u32, now, true);
            return Some(d);
        }
        let d = weighted_least_conn(ctx)?;
        let mut set = DestSet {
            head: NIL,
            size: 0,
            lastmod: now,
        };
        members.insert(&mut set, d as u32, now, false);
        if table.insert(input.dst, set, now).is_none() {
            members.free_all(&set);
        }
        Some(d)
    }

    fn servers_changed(&mut self, old: &Service, new: &Service) {
        let map = super::remap_positions(old, new);
        let (Some(t), Some(m)) = (&mut self.table, &mut self.members) else {
            return;
        };
        t.retain_map(
            |mut set| {
                m.retain(&mut set, |p| map.get(p as usize).copied().flatten());
                Some(set)
            },
            |_| {},
        );
    }

    fn expire(&mut self, now_ms: u64) {
        let exp = self.expiration_ms;
        if let (Some(t), Some(m)) = (&mut self.table, &mut self.members) {
            t.expire(now_ms, exp, |set| m.free_all(&set));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lblc::{CHECK_EXPIRE_INTERVAL_MS, COUNT_FOR_FULL_EXPIRATION};
    use super::super::testutil::*;
    use super::*;

    fn to(dst: IpAddr, now_ms: u64) -> SchedInput {
        SchedInput {
            dst,
            now_ms,
            ..input("10.0.0.1".parse().unwrap(), 1)
        }
    }

    #[test]
    fn set_grows_when_member_is_overloaded_and_picks_least_within() {
        let s = svc(SchedulerKind::Lblcr, &[1, 1, 1]);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let d = client(5);
        let mut l = Lblcr::new();
        // New destination: wlc over idle servers → 0; set {0}.
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(0));
        // 0 at 2 active (> weight 1) and 1 idle (0 < 1/2): wlc → 1 (0 active
        // 512 vs 1 idle 0 vs 2 idle 0, first strictly better is 1), which
        // joins at the head: {1, 0}.
        load.set(0, 2, 0);
        assert_eq!(l.schedule(&ctx, &to(d, 10)), Some(1));
        assert_eq!(l.set_of(d), Some(vec![1, 0]));
        // Within the set, least connection: 1 at 1 active (256) vs 0 idle
        // again (0): 256 * 1 > 0 * 1 → 0.
        load.set(0, 0, 0);
        load.set(1, 1, 0);
        assert_eq!(l.schedule(&ctx, &to(d, 20)), Some(0));
        // Server 2 is idle but not in the set: not considered.
        load.set(0, 1, 0);
        assert_eq!(l.schedule(&ctx, &to(d, 30)), Some(1));
        assert_eq!(l.set_of(d), Some(vec![1, 0]));
    }

    #[test]
    fn stale_set_drops_its_most_loaded_member() {
        let s = svc(SchedulerKind::Lblcr, &[1, 1]);
        let load = FakeLoad::new(2);
        let flags = [false; 2];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let d = client(6);
        let mut l = Lblcr::new();
        l.schedule(&ctx, &to(d, 0));
        load.set(0, 2, 0);
        assert_eq!(l.schedule(&ctx, &to(d, 1_000)), Some(1)); // set {1, 0}, lastmod 1000
                                                              // 24 h later exactly: not yet (the kernel uses time_after, strict).
        load.set(0, 0, 0);
        load.set(1, 3, 0);
        let day = DEFAULT_EXPIRATION_MS;
        assert_eq!(l.schedule(&ctx, &to(d, 1_000 + day)), Some(0));
        assert_eq!(l.set_of(d), Some(vec![1, 0]));
        // One ms later: min is 0, max is 1 (768 vs 0): 1 leaves the set.
        assert_eq!(l.schedule(&ctx, &to(d, 1_001 + day)), Some(0));
        assert_eq!(l.set_of(d), Some(vec![0]));
    }

    #[test]
    fn dropped_member_is_still_returned_once() {
        // Both members idle: set_min and set_max both pick the head (ties
        // keep the first). The kernel erases it and still returns it.
        let s = svc(SchedulerKind::Lblcr, &[1, 1]);
        let load = FakeLoad::new(2);
        let flags = [false; 2];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let d = client(7);
        let mut l = Lblcr::new();
        l.schedule(&ctx, &to(d, 0));
        load.set(0, 2, 0);
        l.schedule(&ctx, &to(d, 0)); // {1, 0}
        load.set(0, 0, 0);
        let later = DEFAULT_EXPIRATION_MS + 1;
        assert_eq!(l.schedule(&ctx, &to(d, later)), Some(1));
        assert_eq!(l.set_of(d), Some(vec![0]));
    }

    #[test]
    fn members_follow_server_changes_and_expire_frees_them() {
        let s = svc(SchedulerKind::Lblcr, &[1, 1]);
        let load = FakeLoad::new(2);
        let flags = [false; 2];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let d = client(8);
        let mut l = Lblcr::new();
        l.schedule(&ctx, &to(d, 0));
        load.set(0, 2, 0);
        l.schedule(&ctx, &to(d, 0)); // {1, 0}
        let mut s2 = s.clone();
        s2.servers.remove(0); // id 1 moves to position 0; id 0 leaves
        l.servers_changed(&s, &s2);
        assert_eq!(l.set_of(d), Some(vec![0]));
        // Full expiration after 30 checks frees the entry and its members.
        let t0 = DEFAULT_EXPIRATION_MS;
        l.expire(t0);
        for k in 1..=u64::from(COUNT_FOR_FULL_EXPIRATION) {
            l.expire(t0 + k * CHECK_EXPIRE_INTERVAL_MS);
        }
        assert!(l.is_empty());
        let m = l.members.as_ref().unwrap();
        assert_eq!(m.free.len(), m.slab.len());
    }

    #[test]
    fn threshold_overloaded_members_are_skipped() {
        // Set {1, 0}; member 1 (the head) carries the overload flag: the set
        // minimum is 0 even though 1 is idle.
        let s = svc(SchedulerKind::Lblcr, &[1, 1]);
        let load = FakeLoad::new(2);
        let d = client(9);
        let mut l = Lblcr::new();
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 2],
        };
        l.schedule(&ctx, &to(d, 0));
        load.set(0, 2, 0);
        l.schedule(&ctx, &to(d, 0));
        load.set(0, 1, 0);
        let ctx = SchedCtx {
            overloaded: &[false, true],
            ..ctx
        };
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(0));
    }
}
