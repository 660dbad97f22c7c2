//! Locality-based least connection (`ip_vs_lblc.c`).
//!
//! A table maps each destination address to the server last chosen for it.
//! A hit is used while that server has weight > 0 and is not "overloaded"
//! in lblc's own sense: more active connections than its weight *and* some
//! server of the service below half its weight in active connections. (As
//! in the kernel, the threshold flag does not invalidate a hit.) Otherwise
//! wlc picks a server and the entry is replaced.
//!
//! Ageing (`ip_vs_lblc_check_expire`, every 60 s): every 30th check drops
//! entries unused for 24 h (`lblc_expiration`); in between, when the table
//! holds more than 16384 entries, entries unused for 6 minutes are dropped
//! until 4/3 of the excess is gone (at most 8192), walking the 1024
//! buckets round-robin from where the last walk stopped. Time comes from
//! [`SchedInput::now_ms`] and [`Scheduler::expire`]; there is no clock.
//!
//! Memory: entries live in a slab of fixed capacity reserved at creation,
//! chained per bucket like the kernel's hlists. When it is full a new
//! destination is scheduled but not remembered, as when the kernel's
//! `kmalloc` fails; nothing is allocated after creation.

use std::net::IpAddr;

use super::{fold_addr, hash_32, wlc::weighted_least_conn, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::{AddrFamily, SchedulerKind};

/// Interval of the ageing check.
pub const CHECK_EXPIRE_INTERVAL_MS: u64 = 60_000;
/// Unused entries older than this go when the table is over its size.
pub const ENTRY_TIMEOUT_MS: u64 = 6 * 60_000;
/// Default `lblc_expiration` / `lblcr_expiration` sysctl: 24 h.
pub const DEFAULT_EXPIRATION_MS: u64 = 24 * 3_600_000;
/// Every this many checks, a full expiration pass.
pub const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// `IP_VS_LBLC_TAB_BITS`.
pub const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// Entry count above which the periodic check collects (kernel: 16 × buckets).
pub const MAX_SIZE: usize = TAB_SIZE * 16;
/// Hard limit on entries (memory bound; the kernel has none).
pub const HARD_LIMIT: usize = MAX_SIZE * 4;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Entry<V> {
    addr: IpAddr,
    lastuse: u64,
    next: u32,
    val: V,
}

/// Fixed-capacity chained hash table keyed by destination address, laid
/// out as the kernel's (1024 buckets, `hash_32` of the folded address,
/// new entries at the bucket head).
#[derive(Debug, Clone)]
pub(crate) struct AddrTable<V> {
    af: AddrFamily,
    buckets: Box<[u32; TAB_SIZE]>,
    slab: Vec<Entry<V>>,
    free: Vec<u32>,
    len: usize,
    cap: usize,
    /// Ageing state.
    rover: usize,
    counter: u32,
    next_check: Option<u64>,
}

impl<V: Copy> AddrTable<V> {
    pub(crate) fn new(af: AddrFamily, cap: usize) -> Self {
        AddrTable {
            af,
            buckets: Box::new([NIL; TAB_SIZE]),
            slab: Vec::with_capacity(cap),
            free: Vec::with_capacity(cap),
            len: 0,
            cap,
            rover: 0,
            counter: 1,
            next_check: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn bucket(&self, addr: IpAddr) -> usize {
        hash_32(fold_addr(self.af, addr), TAB_BITS) as usize & TAB_MASK
    }

    /// Slab index of the entry for `addr`.
    #[inline]
    pub(crate) fn find(&self, addr: IpAddr) -> Option<u32> {
        let mut i = *self.buckets.get(self.bucket(addr))?;
        while i != NIL {
            let e = self.slab.get(i as usize)?;
            if e.addr == addr {
                return Some(i);
            }
            i = e.next;
        }
        None
    }

    pub(crate) fn get_mut(&mut self, idx: u32) -> Option<(&mut u64, &mut V)> {
        self.slab
            .get_mut(idx as usize)
            .map(|e| (&mut e.lastuse, &mut e.val))
    }

    /// Insert at the head of its bucket (no duplicate check). `None` when
    /// the table is full.
    pub(crate) fn insert(&mut self, addr: IpAddr, val: V, now: u64) -> Option<u32> {
        let b = self.bucket(addr);
        let head = *self.buckets.get(b)?;
        let e = Entry {
            addr,
            lastuse: now,
            next: head,
            val,
        };
        let idx = if let Some(i) = self.free.pop() {
            *self.slab.get_mut(i as usize)? = e;
            i
        } else if self.slab.len() < self.cap {
            self.slab.push(e);
            (self.slab.len() - 1) as u32
        } else {
            return None;
        };
        self.buckets[b] = idx;
        self.len += 1;
        Some(idx)
    }

    /// Remove the entry at `idx`; returns its value.
    pub(crate) fn remove(&mut self, idx: u32) -> Option<V> {
        let e = self.slab.get(idx as usize)?;
        let (b, next, val) = (self.bucket(e.addr), e.next, e.val);
        let mut cur = self.buckets[b];
        let mut prev = NIL;
        while cur != NIL && cur != idx {
            prev = cur;
            cur = self.slab.get(cur as usize)?.next;
        }
        if cur != idx {
            return None;
        }
        if prev == NIL {
            self.buckets[b] = next;
        } else {
            self.slab.get_mut(prev as usize)?.next = next;
        }
        self.free.push(idx);
        self.len = self.len.saturating_sub(1);
        Some(val)
    }

    /// Remove the entries of bucket `b` for which `drop` says so; returns
    /// the removed values through `on_remove` and their count.
    fn sweep_bucket(
        &mut self,
        b: usize,
        mut drop: impl FnMut(&Entry<V>) -> bool,
        on_remove: &mut impl FnMut(V),
    ) -> usize {
        let mut removed = 0;
        let mut cur = self.buckets[b];
        while cur != NIL {
            let Some(e) = self.slab.get(cur as usize) else {
                break;
            };
            let next = e.next;
            if drop(e) {
                if let Some(v) = self.remove(cur) {
                    on_remove(v);
                    removed += 1;
                }
            }
            cur = next;
        }
        removed
    }

    /// Apply `f` to every value; entries for which it returns `None` are
    /// removed (passed to `on_remove` first).
    pub(crate) fn retain_map(
        &mut self,
        mut f: impl FnMut(V) -> Option<V>,
        mut on_remove: impl FnMut(V),
    ) {
        for b in 0..TAB_SIZE {
            let mut cur = self.buckets[b];
            while cur != NIL {
                let Some(e) = self.slab.get_mut(cur as usize) else {
                    break;
                };
                let next = e.next;
                match f(e.val) {
                    Some(v) => e.val = v,
                    None => {
                        if let Some(v) = self.remove(cur) {
                            on_remove(v);
                        }
                    }
                }
                cur = next;
            }
        }
    }

    /// The kernel's periodic check, run when its 60 s timer would fire.
    pub(crate) fn expire(&mut self, now: u64, expiration: u64, mut on_remove: impl FnMut(V)) {
        let Some(due) = self.next_check else {
            // The kernel arms the timer when the service is created.
            self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
            return;
        };
        if now < due {
            return;
        }
        self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            let mut j = self.rover;
            for _ in 0..TAB_SIZE {
                j = (j + 1) & TAB_MASK;
                self.sweep_bucket(
                    j,
                    |e| now >= e.lastuse.saturating_add(expiration),
                    &mut on_remove,
                );
            }
            self.rover = j;
            self.counter = 1;
            return;
        }
        if self.len <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = ((self.len - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2) as i64;
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            goal -= self.sweep_bucket(
                j,
                |e| now >= e.lastuse.saturating_add(ENTRY_TIMEOUT_MS),
                &mut on_remove,
            ) as i64;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

/// lblc's "overloaded": more active connections than weight while some
/// server of the service is below half its weight (`is_overloaded`).
pub(crate) fn lblc_overloaded(ctx: &SchedCtx<'_>, pos: usize) -> bool {
    if ctx.active(pos) <= ctx.weight(pos) {
        return false;
    }
    (0..ctx.len()).any(|d| u64::from(ctx.active(d)) * 2 < u64::from(ctx.weight(d)))
}

/// Locality-based least connection: destination address → server position.
#[derive(Debug, Clone)]
pub struct Lblc {
    table: Option<AddrTable<u32>>,
    expiration_ms: u64,
}

impl Default for Lblc {
    fn default() -> Self {
        Self::new()
    }
}

impl Lblc {
    /// Empty table with the default 24 h expiration. The table's memory is
    /// reserved on first use (then never grows).
    pub fn new() -> Self {
        Lblc {
            table: None,
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

    /// The server position remembered for a destination.
    pub fn cached(&self, dst: IpAddr) -> Option<u32> {
        let t = self.table.as_ref()?;
        let i = t.find(dst)?;
        t.slab.get(i as usize).map(|e| e.val)
    }
}

impl Scheduler for Lblc {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize> {
        let now = input.now_ms;
        let table = self
            .table
            .get_or_insert_with(|| AddrTable::new(ctx.svc.af(), HARD_LIMIT));
        let hit = table.find(input.dst);
        if let Some(idx) = hit {
            if let Some((lastuse, &mut pos)) = table.get_mut(idx) {
                *lastuse = now;
                let p = pos as usize;
                if p < ctx.len() && ctx.weight(p) > 0 && !lblc_overloaded(ctx, p) {
                    return Some(p);
                }
            }
        }
        let pick = weighted_least_conn(ctx)?;
        match hit {
            Some(idx) if table.get_mut(idx).map(|(_, v)| *v) == Some(pick as u32) => {}
            Some(idx) => {
                // The kernel drops the stale entry and hashes a new one.
                table.remove(idx);
                table.insert(input.dst, pick as u32, now);
            }
            None => {
                table.insert(input.dst, pick as u32, now);
            }
        }
        Some(pick)
    }

    fn servers_changed(&mut self, old: &Service, new: &Service) {
        let map = super::remap_positions(old, new);
        if let Some(t) = &mut self.table {
            t.retain_map(|p| map.get(p as usize).copied().flatten(), |_| {});
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let exp = self.expiration_ms;
        if let Some(t) = &mut self.table {
            t.expire(now_ms, exp, |_| {});
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn sticks_to_the_cached_server() {
        // Weights 1 1 (positions 0 1). First sight of D1: wlc over idle
        // servers picks position 0 and caches it. Then position 0 gets 5
        // active (more than its weight) while position 1 is idle (0*2 < 1):
        // lblc-overloaded, so wlc picks 1 and the entry moves to 1.
        let s = svc(SchedulerKind::Lblc, &[1, 1]);
        let load = FakeLoad::new(2);
        let flags = [false; 2];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let d1 = client(1);
        let d2 = client(2);
        let mut l = Lblc::new();
        assert_eq!(l.schedule(&ctx, &to(d1, 0)), Some(0));
        // Another destination with 0 at 1 active: wlc → 1.
        load.set(0, 1, 0);
        assert_eq!(l.schedule(&ctx, &to(d2, 0)), Some(1));
        // D1 stays on 0 although 1 is less loaded: locality first.
        load.set(1, 0, 0);
        assert_eq!(l.schedule(&ctx, &to(d1, 0)), Some(0));
        // 0 at 1 active is not above weight 1: still a hit. At 2 it is,
        // and 1 (idle) is under half load: re-schedule.
        load.set(0, 2, 0);
        assert_eq!(l.schedule(&ctx, &to(d1, 0)), Some(1));
        assert_eq!(l.cached(d1), Some(1));
        // If nobody is under half load, an over-weight server stays.
        load.set(0, 2, 0);
        load.set(1, 5, 0);
        assert_eq!(l.schedule(&ctx, &to(d1, 0)), Some(1));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn quiesced_hit_is_replaced_but_threshold_flag_is_not_checked() {
        let mut s = svc(SchedulerKind::Lblc, &[1, 1]);
        let load = FakeLoad::new(2);
        let d = client(9);
        let mut l = Lblc::new();
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 2],
        };
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(0));
        // The kernel only checks weight and its own overload rule on a hit.
        let ctx = SchedCtx {
            overloaded: &[true, false],
            ..ctx
        };
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(0));
        s.servers[0].weight = 0;
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 2],
        };
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(1));
    }

    #[test]
    fn entries_follow_server_changes() {
        // D cached on position 1 (id 1). Removing id 0 shifts it to
        // position 0; removing id 1 drops the entry.
        let s = svc(SchedulerKind::Lblc, &[1, 1]);
        let load = FakeLoad::new(2);
        load.set(0, 1, 0);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 2],
        };
        let d = client(3);
        let mut l = Lblc::new();
        assert_eq!(l.schedule(&ctx, &to(d, 0)), Some(1));
        let mut s2 = s.clone();
        s2.servers.remove(0);
        l.servers_changed(&s, &s2);
        assert_eq!(l.cached(d), Some(0));
        let mut s3 = s2.clone();
        s3.servers.clear();
        l.servers_changed(&s2, &s3);
        assert!(l.is_empty());
    }

    #[test]
    fn full_expiration_every_thirty_checks() {
        // The first expire() arms the 60 s timer (as service creation does).
        // Checks at 60 s … 29 min only count; the 30th, at 30 min, drops
        // entries unused for 24 h or more.
        let s = svc(SchedulerKind::Lblc, &[1]);
        let load = FakeLoad::new(1);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false],
        };
        let mut l = Lblc::new();
        let day = DEFAULT_EXPIRATION_MS;
        let t0 = day; // arm at t0
        l.schedule(&ctx, &to(client(1), 0)); // last used at 0
        l.schedule(&ctx, &to(client(2), t0)); // last used at t0
        l.expire(t0);
        for k in 1..30u64 {
            l.expire(t0 + k * CHECK_EXPIRE_INTERVAL_MS);
            assert_eq!(l.len(), 2, "check {k}");
        }
        l.expire(t0 + 30 * CHECK_EXPIRE_INTERVAL_MS);
        assert_eq!(l.len(), 1);
        assert!(l.cached(client(2)).is_some());
        // A hit refreshes lastuse.
        l.schedule(&ctx, &to(client(2), t0 + day));
        l.expire(t0 + 60 * CHECK_EXPIRE_INTERVAL_MS);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn over_size_collects_idle_entries() {
        // Fill past MAX_SIZE with entries last used at 0, plus 100 fresh
        // ones. A check that is not a full pass collects 4/3 of the excess
        // among entries idle for 6 minutes or more.
        let s = svc(SchedulerKind::Lblc, &[1]);
        let load = FakeLoad::new(1);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false],
        };
        let mut l = Lblc::new();
        let old = MAX_SIZE + 300;
        for i in 0..old as u32 {
            l.schedule(&ctx, &to(client(i), 0));
        }
        let t = ENTRY_TIMEOUT_MS;
        for i in 0..100u32 {
            l.schedule(&ctx, &to(client(1_000_000 + i), t));
        }
        assert_eq!(l.len(), MAX_SIZE + 400);
        l.expire(t - CHECK_EXPIRE_INTERVAL_MS); // arm
        l.expire(t); // counter 1: not a full pass; over size → collect
        let removed = MAX_SIZE + 400 - l.len();
        // Goal 400 * 4 / 3 = 533; whole buckets are swept, so a few more.
        assert!((533..533 + 64).contains(&removed), "{removed}");
        for i in 0..100u32 {
            assert!(l.cached(client(1_000_000 + i)).is_some());
        }
    }

    #[test]
    fn hard_limit_bounds_memory() {
        let s = svc(SchedulerKind::Lblc, &[1]);
        let load = FakeLoad::new(1);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false],
        };
        let mut l = Lblc::new();
        for i in 0..(HARD_LIMIT + 10) as u32 {
            assert_eq!(l.schedule(&ctx, &to(client(i), 0)), Some(0));
        }
        assert_eq!(l.len(), HARD_LIMIT);
    }
}
