//! The 14 IPVS schedulers, each making the choice Linux IPVS makes for the
//! same inputs (see the kernel's `net/netfilter/ipvs/ip_vs_*.c`).
//!
//! A worker core owns one [`SchedulerSet`]: one scheduler instance per
//! service of its current [`ServiceSnapshot`], plus the per-core overload
//! flags of the servers (the kernel's `IP_VS_DEST_F_OVERLOAD`). When the
//! worker adopts a new snapshot it calls [`SchedulerSet::sync`], which keeps
//! each scheduler's state where the kernel would (rr cursor, wrr step,
//! lblc/lblcr tables) and rebuilds hash tables when servers change.
//!
//! Schedulers read connection counts only through a [`LoadView`], which on
//! a worker is the global sum over all cores ([`super::load::SummedLoad`]).
//!
//! Positions: a scheduler returns the *position* of the chosen server in
//! [`Service::servers`] (walking order); [`SchedulerSet::schedule`] turns it
//! into the [`RealServer`].

use std::net::IpAddr;
use std::sync::Arc;

use super::load::{DestId, LoadView};
use super::service::{FastMap, RealServer, Service, ServiceKey, ServiceSnapshot};
use super::types::{AddrFamily, SchedulerKind};

pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

/// What a scheduler may look at in the first packet of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedInput {
    /// Client address.
    pub src: IpAddr,
    /// Client port (sh-port, mh-port).
    pub sport: u16,
    /// Destination address as the packet carries it: the VIP (lblc, lblcr
    /// and dh key on it, as IPVS does).
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
    /// Monotonic time in milliseconds (lblc/lblcr ageing); injected, never
    /// read from a clock here.
    pub now_ms: u64,
}

/// A service's servers as one scheduling decision sees them.
#[derive(Clone, Copy)]
pub struct SchedCtx<'a> {
    /// The service (servers in walking order, flags in `config`).
    pub svc: &'a Service,
    /// Connection counts (global sums on a worker).
    pub load: &'a dyn LoadView,
    /// Per-position overload flags (upper/lower thresholds), same length as
    /// `svc.servers`.
    pub overloaded: &'a [bool],
}

impl<'a> SchedCtx<'a> {
    /// Number of servers.
    #[inline]
    pub fn len(&self) -> usize {
        self.svc.servers.len()
    }
    /// Whether the service has no servers.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.svc.servers.is_empty()
    }
    /// Server at a position.
    #[inline]
    pub fn server(&self, i: usize) -> Option<&'a RealServer> {
        self.svc.servers.get(i)
    }
    /// Current weight (0 if out of range).
    #[inline]
    pub fn weight(&self, i: usize) -> u32 {
        self.server(i).map_or(0, |s| s.weight)
    }
    /// The server's `IP_VS_DEST_F_OVERLOAD` flag.
    #[inline]
    pub fn is_overloaded(&self, i: usize) -> bool {
        self.overloaded.get(i).copied().unwrap_or(false)
    }
    /// Can take a new connection: weight > 0 and not overloaded.
    #[inline]
    pub fn available(&self, i: usize) -> bool {
        self.weight(i) > 0 && !self.is_overloaded(i)
    }
    /// Active (established) connections.
    #[inline]
    pub fn active(&self, i: usize) -> u32 {
        self.server(i).map_or(0, |s| self.load.active(s.id))
    }
    /// Inactive connections.
    #[inline]
    pub fn inactive(&self, i: usize) -> u32 {
        self.server(i).map_or(0, |s| self.load.inactive(s.id))
    }
    /// The kernel's `ip_vs_dest_conn_overhead`: active × 256 + inactive.
    #[inline]
    pub fn overhead(&self, i: usize) -> u64 {
        self.server(i).map_or(0, |s| {
            let (active, inactive) = self.load.conns(s.id);
            (u64::from(active) << 8) + u64::from(inactive)
        })
    }
}

/// One scheduling algorithm's state for one service on one core.
pub trait Scheduler: Send {
    /// Which algorithm this is.
    fn kind(&self) -> SchedulerKind;
    /// Pick a server for a new connection; its position in `ctx.svc.servers`.
    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize>;
    /// The service's servers changed (added, removed or reweighted) while
    /// the algorithm stayed: adapt as the kernel's add/del/upd_dest hooks do.
    fn servers_changed(&mut self, old: &Service, new: &Service);
    /// Periodic housekeeping (lblc/lblcr table ageing). Cheap to call often.
    fn expire(&mut self, _now_ms: u64) {}
}

/// A new scheduler for a service. `seed` feeds the random choices of twos.
pub fn new_scheduler(svc: &Service, seed: u64) -> Box<dyn Scheduler> {
    match svc.sched {
        SchedulerKind::Rr => Box::new(rr::RoundRobin::new()),
        SchedulerKind::Wrr => Box::new(wrr::WeightedRoundRobin::new(svc)),
        SchedulerKind::Lc => Box::new(lc::LeastConn),
        SchedulerKind::Wlc => Box::new(wlc::WeightedLeastConn),
        SchedulerKind::Sed => Box::new(sed::ShortestExpectedDelay),
        SchedulerKind::Nq => Box::new(nq::NeverQueue),
        SchedulerKind::Lblc => Box::new(lblc::Lblc::new()),
        SchedulerKind::Lblcr => Box::new(lblcr::Lblcr::new()),
        SchedulerKind::Dh => Box::new(dh::DestHash::new(svc)),
        SchedulerKind::Sh => Box::new(sh::SourceHash::new(svc)),
        SchedulerKind::Mh => Box::new(mh::Maglev::new(svc)),
        SchedulerKind::Fo => Box::new(fo::FailOver),
        SchedulerKind::Ovf => Box::new(ovf::Overflow),
        SchedulerKind::Twos => Box::new(twos::TwoChoices::new(seed)),
    }
}

/// Kernel `hash_32` (include/linux/hash.h, since Linux 4.7): multiply by
/// the 32-bit golden ratio, keep the top `bits` bits (1..=32; 0 gives 0).
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    if bits == 0 {
        return 0;
    }
    val.wrapping_mul(0x61C8_8647) >> (32 - bits.min(32))
}

/// The kernel's address fold for sh, dh, mh, lblc and lblcr, in host
/// order: an IPv4 address as a number; for an IPv6 service the XOR of the
/// four 32-bit words. As in the kernel the family of the *service* decides:
/// an IPv6 address under an IPv4 service contributes its first word only.
#[inline]
pub fn fold_addr(svc_af: AddrFamily, addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let w = u128::from(a);
            let words = [
                (w >> 96) as u32,
                (w >> 64) as u32,
                (w >> 32) as u32,
                w as u32,
            ];
            match svc_af {
                AddrFamily::Inet6 => words[0] ^ words[1] ^ words[2] ^ words[3],
                AddrFamily::Inet => words[0],
            }
        }
    }
}

/// Small fast PRNG (xorshift64*), seeded per core; for twos and tests.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator from a seed (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        // splitmix64 scrambles nearby seeds apart.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Prng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (0 when `n` is 0), without modulo bias
    /// (Lemire's multiply-shift with rejection).
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u64::from(self.next_u64() as u32) * u64::from(n);
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }
}

/// For each position in `old.servers`, its position in `new.servers`
/// (matched by [`DestId`]), or `None` if the server is gone.
pub(crate) fn remap_positions(old: &Service, new: &Service) -> Vec<Option<u32>> {
    let by_id: FastMap<DestId, u32> = new
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i as u32))
        .collect();
    old.servers
        .iter()
        .map(|s| by_id.get(&s.id).copied())
        .collect()
}

/// Whether two versions of a service differ in what schedulers build from:
/// the servers' identities, order, weights and last weights.
fn servers_differ(old: &Service, new: &Service) -> bool {
    old.servers.len() != new.servers.len()
        || old
            .servers
            .iter()
            .zip(&new.servers)
            .any(|(a, b)| a.id != b.id || a.weight != b.weight || a.last_weight != b.last_weight)
}

/// Apply the kernel's overload hysteresis to one server (`ip_vs_bind_dest`
/// sets the flag at `upper`; `ip_vs_unbind_dest` clears it below `lower`, or
/// below 3/4 of `upper` when `lower` is 0).
#[inline]
fn update_overload(flag: &mut bool, total: u64, upper: u32, lower: u32) {
    if upper != 0 && total >= u64::from(upper) {
        *flag = true;
    } else if *flag {
        let clear = if lower != 0 {
            total < u64::from(lower)
        } else if upper != 0 {
            total * 4 < u64::from(upper) * 3
        } else {
            true
        };
        if clear {
            *flag = false;
        }
    }
}

struct SetEntry {
    sched: Box<dyn Scheduler>,
    /// Per-position overload flags.
    overloaded: Vec<bool>,
    /// Positions of servers with an upper threshold (the only ones that can
    /// be overloaded).
    thresholded: Vec<u32>,
}

impl SetEntry {
    fn thresholded(svc: &Service) -> Vec<u32> {
        svc.servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.upper_threshold != 0)
            .map(|(i, _)| i as u32)
            .collect()
    }
}

/// One core's schedulers, one per service of the adopted snapshot.
pub struct SchedulerSet {
    snapshot: Option<Arc<ServiceSnapshot>>,
    entries: Vec<SetEntry>,
    seed: u64,
}

impl SchedulerSet {
    /// An empty set; `seed` (e.g. the core number) seeds random schedulers.
    pub fn new(seed: u64) -> Self {
        SchedulerSet {
            snapshot: None,
            entries: Vec::new(),
            seed,
        }
    }

    /// Generation of the snapshot adopted last.
    pub fn generation(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.generation())
    }

    /// The snapshot adopted last.
    pub fn snapshot(&self) -> Option<&Arc<ServiceSnapshot>> {
        self.snapshot.as_ref()
    }

    fn seed_for(&self, key: &ServiceKey) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = super::service::FastHasher::default();
        key.hash(&mut h);
        self.seed.rotate_left(32) ^ h.finish()
    }

    /// Adopt a snapshot. Schedulers of services whose algorithm (and mh
    /// table size) is unchanged keep their state; their server changes are
    /// applied as the kernel applies them. Call between bursts.
    pub fn sync(&mut self, snap: &Arc<ServiceSnapshot>) {
        if let Some(cur) = &self.snapshot {
            if Arc::ptr_eq(cur, snap) {
                return;
            }
        }
        let old_snap = self.snapshot.take();
        let mut old_entries: Vec<Option<SetEntry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        let mut entries = Vec::with_capacity(snap.services().len());
        for new in snap.services() {
            let old = old_snap.as_ref().and_then(|o| {
                let s = o.get_key(&new.key)?;
                let e = old_entries.get_mut(s.index)?.take()?;
                Some((s, e))
            });
            let entry = match old {
                Some((old_svc, mut e))
                    if e.sched.kind() == new.sched
                        && (new.sched != SchedulerKind::Mh
                            || old_svc.config.mh_table_size == new.config.mh_table_size) =>
                {
                    if servers_differ(old_svc, new) {
                        e.sched.servers_changed(old_svc, new);
                    }
                    e.overloaded = carry_overload(old_svc, new, &e.overloaded);
                    e.thresholded = SetEntry::thresholded(new);
                    e
                }
                Some((old_svc, e)) => SetEntry {
                    sched: new_scheduler(new, self.seed_for(&new.key)),
                    overloaded: carry_overload(old_svc, new, &e.overloaded),
                    thresholded: SetEntry::thresholded(new),
                },
                None => SetEntry {
                    sched: new_scheduler(new, self.seed_for(&new.key)),
                    overloaded: vec![false; new.servers.len()],
                    thresholded: SetEntry::thresholded(new),
                },
            };
            entries.push(entry);
        }
        self.entries = entries;
        self.snapshot = Some(Arc::clone(snap));
    }

    /// Schedule a new connection of `svc`, which must come from the adopted
    /// snapshot (otherwise `None`). Updates the overload flags from `load`
    /// first.
    #[inline]
    pub fn schedule<'s>(
        &mut self,
        svc: &'s Service,
        load: &dyn LoadView,
        input: &SchedInput,
    ) -> Option<&'s RealServer> {
        if self.snapshot.as_ref()?.generation() != svc.generation {
            return None;
        }
        let e = self.entries.get_mut(svc.index)?;
        if e.overloaded.len() != svc.servers.len() {
            return None;
        }
        for &pos in &e.thresholded {
            let (Some(s), Some(flag)) = (
                svc.servers.get(pos as usize),
                e.overloaded.get_mut(pos as usize),
            ) else {
                continue;
            };
            let (active, inactive) = load.conns(s.id);
            let total = u64::from(active) + u64::from(inactive);
            update_overload(flag, total, s.upper_threshold, s.lower_threshold);
        }
        let ctx = SchedCtx {
            svc,
            load,
            overloaded: &e.overloaded,
        };
        let pos = e.sched.schedule(&ctx, input)?;
        svc.servers.get(pos)
    }

    /// This core's overload flag for a server of `svc`.
    pub fn is_overloaded(&self, svc: &Service, pos: usize) -> bool {
        self.entries
            .get(svc.index)
            .and_then(|e| e.overloaded.get(pos).copied())
            .unwrap_or(false)
    }

    /// Periodic housekeeping of every scheduler (lblc/lblcr ageing).
    pub fn expire(&mut self, now_ms: u64) {
        for e in &mut self.entries {
            e.sched.expire(now_ms);
        }
    }
}

/// Overload flags for `new`, carried over by server identity. As in
/// `__ip_vs_update_dest`, a flag is cleared when the upper threshold is
/// removed or raised.
fn carry_overload(old: &Service, new: &Service, old_flags: &[bool]) -> Vec<bool> {
    let by_id: FastMap<DestId, usize> = old
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    new.servers
        .iter()
        .map(|s| match by_id.get(&s.id) {
            Some(&i) => {
                let was = old_flags.get(i).copied().unwrap_or(false);
                let old_upper = old.servers.get(i).map_or(0, |o| o.upper_threshold);
                was && s.upper_threshold != 0 && s.upper_threshold <= old_upper
            }
            None => false,
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders shared by the scheduler tests.
    use super::*;
    use crate::lb::service::{ServiceConfig, ServiceKey};
    use crate::lb::types::{FwdMethod, SchedulerKind};
    use std::cell::RefCell;
    use std::net::Ipv4Addr;

    /// Connection counts set by hand.
    #[derive(Default)]
    pub struct FakeLoad {
        pub counts: RefCell<Vec<(u32, u32)>>,
    }

    impl FakeLoad {
        pub fn new(n: usize) -> Self {
            FakeLoad {
                counts: RefCell::new(vec![(0, 0); n]),
            }
        }
        pub fn set(&self, id: DestId, active: u32, inactive: u32) {
            let mut c = self.counts.borrow_mut();
            if c.len() <= id as usize {
                c.resize(id as usize + 1, (0, 0));
            }
            c[id as usize] = (active, inactive);
        }
        pub fn add_active(&self, id: DestId, n: u32) {
            let (a, i) = self
                .counts
                .borrow()
                .get(id as usize)
                .copied()
                .unwrap_or((0, 0));
            self.set(id, a + n, i);
        }
    }

    impl LoadView for FakeLoad {
        fn active(&self, dest: DestId) -> u32 {
            self.counts.borrow().get(dest as usize).map_or(0, |c| c.0)
        }
        fn inactive(&self, dest: DestId) -> u32 {
            self.counts.borrow().get(dest as usize).map_or(0, |c| c.1)
        }
        fn persistent(&self, _dest: DestId) -> u32 {
            0
        }
    }

    /// Address 198.18.1.`n`.
    pub fn rip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xC612_0100 + n))
    }

    /// A service whose servers, in *walking order*, have these weights;
    /// server at position i has id i and address 198.18.1.(i+1), port 80.
    pub fn svc(kind: SchedulerKind, weights: &[u32]) -> Service {
        svc_cfg(ServiceConfig::with_scheduler(kind.name()), weights)
    }

    /// As [`svc`] with a given config.
    pub fn svc_cfg(config: ServiceConfig, weights: &[u32]) -> Service {
        let sched = SchedulerKind::from_name(&config.scheduler).unwrap();
        Service {
            key: ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)), 80),
            config,
            sched,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| RealServer {
                    id: i as DestId,
                    addr: rip(i as u32 + 1),
                    port: 80,
                    weight: w,
                    last_weight: w,
                    method: FwdMethod::Masq,
                    upper_threshold: 0,
                    lower_threshold: 0,
                })
                .collect(),
            index: 0,
            generation: 1,
            slot: 0,
        }
    }

    /// A plain input from client `src` to the VIP.
    pub fn input(src: IpAddr, sport: u16) -> SchedInput {
        SchedInput {
            src,
            sport,
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
            dport: 80,
            now_ms: 0,
        }
    }

    /// Client address 203.0.113.`n` style, spread over the whole space.
    pub fn client(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(
            0x0A00_0000u32.wrapping_add(n.wrapping_mul(2_654_435_761)),
        ))
    }

    /// Run `picks` decisions with no load and no overload; count per position.
    pub fn shares(s: &mut dyn Scheduler, svc: &Service, picks: u32) -> Vec<u32> {
        let load = FakeLoad::new(svc.servers.len());
        let flags = vec![false; svc.servers.len()];
        let ctx = SchedCtx {
            svc,
            load: &load,
            overloaded: &flags,
        };
        let mut counts = vec![0u32; svc.servers.len()];
        for i in 0..picks {
            if let Some(p) = s.schedule(&ctx, &input(client(i), (i % 60_000) as u16 + 1024)) {
                counts[p] += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::lb::load::{CoreLoad, GlobalLoad, SummedLoad};
    use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
    use crate::lb::types::FwdMethod;

    #[test]
    fn hash_32_is_the_kernels() {
        // 1 * 0x61C88647 = 0x61C88647, top byte 0x61.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        // 0xC6120001 * 0x61C88647 mod 2^32 = 0xBCC68647, top byte 0xBC.
        assert_eq!(hash_32(0xC612_0001, 8), 0xBC);
        // -1 * 0x61C88647 mod 2^32 = 0x9E3779B9, top 10 bits 0x278.
        assert_eq!(hash_32(0xFFFF_FFFF, 10), 0x278);
    }

    #[test]
    fn fold_follows_service_family() {
        let v6: IpAddr = "2001:db8:0:0:1:2:3:4".parse().unwrap();
        let x = 0x2001_0db8 ^ 0x0001_0002 ^ 0x0003_0004; // the zero words drop out
        assert_eq!(fold_addr(AddrFamily::Inet6, v6), x);
        assert_eq!(fold_addr(AddrFamily::Inet, v6), 0x2001_0db8);
        assert_eq!(fold_addr(AddrFamily::Inet6, rip(1)), 0xC612_0101);
    }

    #[test]
    fn prng_below_is_in_range_and_uniform() {
        let mut p = Prng::new(7);
        let mut c = [0u32; 5];
        for _ in 0..50_000 {
            c[p.below(5) as usize] += 1;
        }
        for n in c {
            assert!((9_500..10_500).contains(&n), "{c:?}");
        }
        assert_eq!(p.below(0), 0);
    }

    #[test]
    fn hysteresis_follows_the_kernel() {
        let mut f = false;
        // upper 4, lower 0 → clears below 3 (4 * 3/4).
        for (total, want) in [
            (3, false),
            (4, true),
            (5, true),
            (3, true),
            (2, false),
            (3, false),
        ] {
            update_overload(&mut f, total, 4, 0);
            assert_eq!(f, want, "total {total}");
        }
        // upper 10, lower 5.
        let mut f = false;
        for (total, want) in [(10, true), (6, true), (5, true), (4, false), (9, false)] {
            update_overload(&mut f, total, 10, 5);
            assert_eq!(f, want, "total {total}");
        }
    }

    fn table_with(kind: &str, n: u8) -> (ServiceTable, ServiceKey) {
        let mut t = ServiceTable::new(64);
        let key = ServiceKey::tcp("198.18.0.100".parse().unwrap(), 80);
        t.add_service(key, ServiceConfig::with_scheduler(kind))
            .unwrap();
        for i in 1..=n {
            let a = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, i));
            t.add_dest(&key, RealServerConfig::new(a, 80, FwdMethod::Masq))
                .unwrap();
        }
        (t, key)
    }

    #[test]
    fn set_schedules_with_thresholds_and_hysteresis() {
        // One server with -x 2 (lower 0 → clears below 1.5, i.e. at 1), one
        // without. wlc over an idle pair picks the first in walking order.
        let (mut t, key) = table_with("wlc", 2);
        let a = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 2));
        t.edit_dest(
            &key,
            RealServerConfig::new(a, 80, FwdMethod::Masq).thresholds(2, 0),
        )
        .unwrap();
        let snap = t.snapshot();
        let mut set = SchedulerSet::new(0);
        set.sync(&snap);
        let svc = snap.get_key(&key).unwrap();
        let (core, global) = (CoreLoad::new(64), GlobalLoad::new(64));
        let load = SummedLoad {
            global: &global,
            local: &core,
        };
        let inp = input(client(1), 1000);
        let hot = svc.servers[0].id; // 198.18.1.2, newest
        let cold = svc.servers[1].id;
        assert_eq!(svc.servers[0].addr, a);
        // Fill the thresholded server to 2 connections: it becomes overloaded.
        core.add_active(hot, 2);
        core.add_active(cold, 5);
        assert_eq!(set.schedule(svc, &load, &inp).unwrap().id, cold);
        assert!(set.is_overloaded(svc, 0));
        // Down to 1 connection: 1*4 < 2*3, cleared.
        core.add_active(hot, -1);
        assert_eq!(set.schedule(svc, &load, &inp).unwrap().id, hot);
        assert!(!set.is_overloaded(svc, 0));
    }

    #[test]
    fn set_keeps_rr_cursor_and_flags_across_snapshots() {
        let (mut t, key) = table_with("rr", 3);
        let mut set = SchedulerSet::new(0);
        let load = FakeLoad::new(64);
        let snap = t.snapshot();
        set.sync(&snap);
        let svc = snap.get_key(&key).unwrap();
        let inp = input(client(1), 1000);
        // Walking order .3 .2 .1; two picks leave the cursor on .2.
        let first: Vec<IpAddr> = (0..2)
            .map(|_| set.schedule(svc, &load, &inp).unwrap().addr)
            .collect();
        assert_eq!(first, vec![rip_v4(3), rip_v4(2)]);
        // An unrelated edit (weight of .1) keeps the cursor.
        t.edit_dest(
            &key,
            RealServerConfig::new(rip_v4(1), 80, FwdMethod::Masq).weight(2),
        )
        .unwrap();
        let snap2 = t.snapshot();
        set.sync(&snap2);
        // A service from the old snapshot is refused.
        assert!(set.schedule(svc, &load, &inp).is_none());
        let svc2 = snap2.get_key(&key).unwrap();
        assert_eq!(set.schedule(svc2, &load, &inp).unwrap().addr, rip_v4(1));
        // Switching the algorithm rebuilds: wrr starts from the head.
        t.edit_service(&key, ServiceConfig::with_scheduler("wrr"))
            .unwrap();
        let snap3 = t.snapshot();
        set.sync(&snap3);
        let svc3 = snap3.get_key(&key).unwrap();
        // wrr: weights .3=1 .2=1 .1=2, mw 2: .1 first.
        assert_eq!(set.schedule(svc3, &load, &inp).unwrap().addr, rip_v4(1));
    }

    #[test]
    fn set_clears_flag_when_upper_threshold_raised() {
        let (mut t, key) = table_with("rr", 1);
        let a = rip_v4(1);
        t.edit_dest(
            &key,
            RealServerConfig::new(a, 80, FwdMethod::Masq).thresholds(1, 0),
        )
        .unwrap();
        let snap = t.snapshot();
        let mut set = SchedulerSet::new(0);
        set.sync(&snap);
        let svc = snap.get_key(&key).unwrap();
        let load = FakeLoad::new(64);
        load.set(svc.servers[0].id, 1, 0);
        let inp = input(client(1), 1000);
        assert!(set.schedule(svc, &load, &inp).is_none());
        assert!(set.is_overloaded(svc, 0));
        // Same upper threshold: the flag stays (1 * 4 < 1 * 3 is false).
        t.edit_dest(
            &key,
            RealServerConfig::new(a, 80, FwdMethod::Masq)
                .thresholds(1, 0)
                .weight(3),
        )
        .unwrap();
        let snap2 = t.snapshot();
        set.sync(&snap2);
        let svc2 = snap2.get_key(&key).unwrap();
        assert!(set.is_overloaded(svc2, 0));
        // Raised to 5: cleared at once, and 1 < 5 keeps it clear.
        t.edit_dest(
            &key,
            RealServerConfig::new(a, 80, FwdMethod::Masq).thresholds(5, 0),
        )
        .unwrap();
        let snap3 = t.snapshot();
        set.sync(&snap3);
        let svc3 = snap3.get_key(&key).unwrap();
        assert!(!set.is_overloaded(svc3, 0));
        assert_eq!(set.schedule(svc3, &load, &inp).unwrap().addr, a);
    }

    fn rip_v4(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, n))
    }

    #[test]
    fn every_scheduler_handles_empty_and_all_quiescent() {
        for kind in SchedulerKind::ALL {
            for weights in [&[][..], &[0, 0, 0][..]] {
                let s = svc(kind, weights);
                let mut sch = new_scheduler(&s, 1);
                assert_eq!(sch.kind(), kind);
                let c = shares(sch.as_mut(), &s, 10);
                assert_eq!(c.iter().sum::<u32>(), 0, "{kind:?} {weights:?}");
            }
        }
    }

    #[test]
    fn every_scheduler_skips_overloaded_and_quiescent() {
        // Position 0 quiescent, 1 overloaded, 2 available: every scheduler
        // must pick 2 (hash schedulers only with fallback, or when they hash
        // there; they never return 0 or 1).
        for kind in SchedulerKind::ALL {
            let mut cfg = ServiceConfig::with_scheduler(kind.name());
            cfg.flags.sh_fallback = kind == SchedulerKind::Sh;
            cfg.flags.mh_fallback = kind == SchedulerKind::Mh;
            let s = svc_cfg(cfg, &[0, 5, 1]);
            let mut sch = new_scheduler(&s, 1);
            let load = FakeLoad::new(3);
            let flags = [false, true, false];
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            for i in 0..200 {
                let got = sch.schedule(&ctx, &input(client(i), 1000 + i as u16));
                if kind == SchedulerKind::Dh {
                    assert!(matches!(got, None | Some(2)), "{kind:?} {got:?}");
                } else {
                    assert_eq!(got, Some(2), "{kind:?} pick {i}");
                }
            }
        }
    }
}
