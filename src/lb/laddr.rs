//! FULLNAT local addresses and ports, per core.
//!
//! A FULLNAT connection to `RIP:rport` needs a local endpoint `LIP:lport`
//! such that
//! - the reply tuple `(RIP, LIP, rport, lport)` is owned by this core
//!   ([`RssOwner`]), so both directions are handled here with no steering;
//! - the reply tuple is not in use by another connection (checked against
//!   the connection table's reply index by the caller's `in_use`).
//!
//! There is no per-port bitmap: the connection table already knows which
//! reply tuples are taken, and a port is free again as soon as its
//! connection is removed.
//!
//! **One core** (no RSS ownership): a cursor walks the port range (and
//! rotates the local addresses), so consecutive allocations continue where
//! the last one stopped, like the kernel's ephemeral ports.
//!
//! **Several cores**: the reply tuple's Toeplitz hash is
//! `h0 ^ term(lport)`, with `h0` the hash of `(RIP, LIP, rport, 0)` and
//! `term` the port's own term ([`RssOwner::dport_term`]), and its owner is
//! `RETA[hash % n]`. With a power-of-two RETA of `n` entries the entry is
//! `(h0 % n) ^ (term(lport) % n)`, so the ports can be grouped once by
//! `term(lport) % n` ([`OwnedPorts`], built with the pool, as HDSLB and
//! DPVS precompute per-core port lists): for a new connection, each RETA
//! entry `e` this core owns names the group `e ^ (h0 % n)`, every port of
//! which hashes back to this core. Allocation takes the next port of the
//! next owned entry's group: no candidate is ever another core's, so there
//! are no retries for ownership, only for ports in use. A RETA whose size
//! is not a power of two keeps the walk, skipping other cores' ports (one
//! XOR and one RETA read each).
//!
//! Both are bounded ([`LocalPorts::MAX_CANDIDATES`] ports,
//! [`LocalPorts::MAX_LOOKUPS`] lookups, one more on one core: the walk's
//! first candidate is tried once before the walk), so a nearly exhausted pool fails
//! fast with `None` (counted as `NoLocalPort`) instead of scanning 64K
//! ports.
//!
//! Fixed memory (the port groups: two bytes per port of the range per
//! core), no allocation per packet.

use std::net::IpAddr;

use crate::lb::family::Family;
use crate::lb::owner::RssOwner;

/// Default first local port.
pub const DEFAULT_PORT_MIN: u16 = 1024;
/// Default last local port.
pub const DEFAULT_PORT_MAX: u16 = 65535;

/// Allocation counters of one core's pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalPortStats {
    /// Successful allocations.
    pub allocated: u64,
    /// Ports given back (FULLNAT connections removed).
    pub released: u64,
    /// Allocations that found no port.
    pub failed: u64,
}

impl LocalPortStats {
    /// Ports currently held by connections of this core.
    pub fn in_use(&self) -> u64 {
        self.allocated.saturating_sub(self.released)
    }
}

/// One core's local port allocator.
#[derive(Debug, Clone)]
pub struct LocalPorts {
    min: u16,
    max: u16,
    /// Next port to try (within `min..=max`).
    cursor: u16,
    /// Next local address to try (index into the service's list).
    addr_cursor: usize,
    stats: LocalPortStats,
    /// The pool's ports grouped by RETA entry, when the pool was built for
    /// one core of several with a power-of-two RETA.
    owned: Option<OwnedPorts>,
}

/// The ports of a pool grouped by the RETA entry bits their Toeplitz term
/// contributes, and the RETA entries one core owns.
#[derive(Debug, Clone)]
struct OwnedPorts {
    /// The core these lists are for.
    core: u16,
    /// RETA size − 1 (a power of two).
    mask: u32,
    /// RETA entries that map to `core`.
    entries: Vec<u32>,
    /// Next entry of `entries` to take a port for.
    entry_cursor: usize,
    /// Every port of the pool, grouped: group `g` (ports whose term
    /// `% n == g`) is `ports[starts[g]..starts[g + 1]]`.
    ports: Vec<u16>,
    starts: Vec<u32>,
    /// Next port of each group (an offset into it).
    cursors: Vec<u32>,
}

impl OwnedPorts {
    /// Lists for `core` under `rss`, or `None` when the RETA is empty, not
    /// a power of two, or gives this core no entry.
    fn new(min: u16, max: u16, rss: &RssOwner, core: u16) -> Option<Self> {
        let n = rss.reta().len();
        if n == 0 || !n.is_power_of_two() || n > 1 << 16 {
            return None;
        }
        let mask = (n - 1) as u32;
        let entries: Vec<u32> = (0..n as u32)
            .filter(|&e| rss.reta().get(e as usize) == Some(&core))
            .collect();
        if entries.is_empty() {
            return None;
        }
        let group = |p: u16| (rss.dport_term(p) & mask) as usize;
        let mut starts = vec![0u32; n + 1];
        for p in min..=max {
            starts[group(p) + 1] += 1;
        }
        for g in 0..n {
            starts[g + 1] += starts[g];
        }
        let mut fill = starts.clone();
        let mut ports = vec![0u16; (u32::from(max - min) + 1) as usize];
        for p in min..=max {
            let g = group(p);
            ports[fill[g] as usize] = p;
            fill[g] += 1;
        }
        Some(OwnedPorts {
            core,
            mask,
            entries,
            entry_cursor: 0,
            ports,
            starts,
            cursors: vec![0; n],
        })
    }

    /// The next port of the group that RETA entry `entry_cursor` names for
    /// a reply hash base `h0` (every such port's reply tuple maps to this
    /// core), or `None` if that group is empty (a range narrower than the
    /// RETA). Advances both cursors.
    #[inline]
    fn next(&mut self, h0: u32) -> Option<u16> {
        let e = self.entries.get(self.entry_cursor).copied().unwrap_or(0);
        self.entry_cursor += 1;
        if self.entry_cursor >= self.entries.len() {
            self.entry_cursor = 0;
        }
        let g = ((e ^ h0) & self.mask) as usize;
        let (start, end) = (*self.starts.get(g)?, *self.starts.get(g + 1)?);
        let len = end - start;
        if len == 0 {
            return None;
        }
        let cur = self.cursors.get_mut(g)?;
        let port = self.ports.get((start + *cur) as usize).copied();
        *cur = if *cur + 1 >= len { 0 } else { *cur + 1 };
        port
    }
}

/// `x % n` for `x < 2n`.
#[inline]
fn wrap(x: usize, n: usize) -> usize {
    if x >= n {
        x - n
    } else {
        x
    }
}

impl LocalPorts {
    /// Ports examined per allocation, at most (owned or not).
    pub const MAX_CANDIDATES: u32 = 8192;
    /// Connection-table lookups per allocation, at most.
    pub const MAX_LOOKUPS: u32 = 256;

    /// A pool over ports `min..=max` (swapped if given backwards; port 0
    /// is never used). `start` picks the first port tried, e.g. from the
    /// core number, so cores do not all walk from the same place.
    pub fn new(min: u16, max: u16, start: u16) -> Self {
        Self::for_core(min, max, start, None)
    }

    /// As [`LocalPorts::new`], for core `core` of the ownership rule `rss`:
    /// the port lists of that core are built here (not per packet), and
    /// [`LocalPorts::alloc`] with the same `(rss, core)` takes only ports
    /// whose reply tuples `rss` gives this core.
    pub fn for_core(min: u16, max: u16, start: u16, owner: Option<(&RssOwner, u16)>) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let min = min.max(1);
        let max = max.max(min);
        let span = u32::from(max - min) + 1;
        let cursor = min + (u32::from(start) % span) as u16;
        let owned = owner.and_then(|(rss, core)| OwnedPorts::new(min, max, rss, core));
        LocalPorts {
            min,
            max,
            cursor,
            addr_cursor: 0,
            stats: LocalPortStats::default(),
            owned,
        }
    }

    /// Whether allocations for `core` take ports from precomputed lists
    /// (no ownership retries).
    pub fn has_port_lists(&self, core: u16) -> bool {
        self.owned.as_ref().is_some_and(|o| o.core == core)
    }

    /// First and last port of the pool.
    pub fn range(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    /// Allocation counters.
    pub fn stats(&self) -> &LocalPortStats {
        &self.stats
    }

    /// Count `n` ports given back (their connections were removed).
    pub fn released(&mut self, n: u64) {
        self.stats.released += n;
    }

    /// Count a port taken by a connection a sync master allocated (the
    /// backup holds it until the connection goes, like its own).
    pub fn adopted(&mut self) {
        self.stats.allocated += 1;
    }

    #[inline]
    fn advance(&mut self) -> u16 {
        let p = self.cursor;
        self.cursor = if p >= self.max { self.min } else { p + 1 };
        p
    }

    /// Pick `(LIP, lport)` for a new connection to `rip:rport` from the
    /// addresses of `rip`'s family among `addrs` (a pool per family: a
    /// connection never mixes them). With `owner = Some((rss, core))` only
    /// ports whose reply tuple `(rip, LIP, rport, lport)` maps to `core`
    /// qualify. `in_use(lip, lport)` says whether that reply tuple already
    /// has a connection. `None` when nothing was found within the bounds
    /// (or `addrs` holds no address of that family). The precomputed port
    /// lists are the IPv4 hash's; IPv6 allocations walk. The candidate
    /// returned is always the one of the last `in_use` call (the director
    /// keeps that call's reply-key hash for the insert).
    pub fn alloc<A: Family>(
        &mut self,
        addrs: &[IpAddr],
        rip: A,
        rport: u16,
        owner: Option<(&RssOwner, u16)>,
        mut in_use: impl FnMut(A, u16) -> bool,
    ) -> Option<(A, u16)> {
        let n_addrs = addrs.len();
        if n_addrs == 0 {
            self.stats.failed += 1;
            return None;
        }
        if let (Some((rss, core)), Some(owned)) = (owner, self.owned.as_mut()) {
            if owned.core == core && (!A::IS_V6 || rip.is_mapped_v4()) {
                return Self::alloc_listed(
                    owned,
                    &mut self.addr_cursor,
                    &mut self.stats,
                    addrs,
                    rip,
                    rport,
                    rss,
                    in_use,
                );
            }
        }
        // (the cursor may come from a service with more addresses)
        let first = if self.addr_cursor < n_addrs {
            self.addr_cursor
        } else {
            self.addr_cursor % n_addrs
        };
        // One core: the walk's first candidate — the cursor's port at the
        // cursor's address — is nearly always free. Tried here without
        // the walk's set-up; if taken, the walk below starts from the same
        // state and checks it again.
        if owner.is_none() {
            if let Some(lip) = addrs.get(first).and_then(|&a| A::local_of(a, rip)) {
                let port = self.cursor;
                if !in_use(lip, port) {
                    self.advance();
                    self.addr_cursor = wrap(first + 1, n_addrs);
                    self.stats.allocated += 1;
                    return Some((lip, port));
                }
            }
        }
        let span = u32::from(self.max - self.min) + 1;
        // Spread the budget over the addresses: each gets a full sweep of
        // its share of candidates before the next is tried.
        let per_addr = (Self::MAX_CANDIDATES / n_addrs.min(64) as u32).clamp(1, span);
        let mut lookups = 0u32;
        for k in 0..n_addrs.min(64) {
            // (first + k) % n_addrs without a division per packet
            let i = wrap(first + k, n_addrs);
            let Some(lip) = addrs.get(i).and_then(|&a| A::local_of(a, rip)) else {
                continue;
            };
            let base = owner.map(|(rss, _)| A::rss_hash(rss, rip, lip, rport, 0));
            for _ in 0..per_addr {
                let port = self.advance();
                if let (Some((rss, core)), Some(h0)) = (owner, base) {
                    if rss.core_of_hash(h0 ^ A::rss_dport_term(rss, rip, port)) != core {
                        continue;
                    }
                }
                lookups += 1;
                if !in_use(lip, port) {
                    self.addr_cursor = wrap(i + 1, n_addrs);
                    self.stats.allocated += 1;
                    return Some((lip, port));
                }
                if lookups >= Self::MAX_LOOKUPS {
                    self.stats.failed += 1;
                    return None;
                }
            }
        }
        self.stats.failed += 1;
        None
    }

    /// [`LocalPorts::alloc`] from this core's precomputed port lists.
    #[allow(clippy::too_many_arguments)]
    fn alloc_listed<A: Family>(
        owned: &mut OwnedPorts,
        addr_cursor: &mut usize,
        stats: &mut LocalPortStats,
        addrs: &[IpAddr],
        rip: A,
        rport: u16,
        rss: &RssOwner,
        mut in_use: impl FnMut(A, u16) -> bool,
    ) -> Option<(A, u16)> {
        let n_addrs = addrs.len();
        let tried_addrs = n_addrs.min(64);
        // the same budgets as the walk, but every candidate is owned: spread
        // the lookups over the addresses
        let per_addr_lookups = (Self::MAX_LOOKUPS / tried_addrs.max(1) as u32).max(1);
        let per_addr_candidates = (Self::MAX_CANDIDATES / tried_addrs.max(1) as u32).max(1);
        let mut lookups = 0u32;
        let first = if *addr_cursor < n_addrs {
            *addr_cursor
        } else {
            *addr_cursor % n_addrs
        };
        for k in 0..tried_addrs {
            let i = wrap(first + k, n_addrs);
            let Some(lip) = addrs.get(i).and_then(|&a| A::local_of(a, rip)) else {
                continue;
            };
            let h0 = A::rss_hash(rss, rip, lip, rport, 0);
            let mut addr_lookups = 0u32;
            for _ in 0..per_addr_candidates {
                let Some(port) = owned.next(h0) else {
                    continue;
                };
                lookups += 1;
                addr_lookups += 1;
                if !in_use(lip, port) {
                    *addr_cursor = wrap(i + 1, n_addrs);
                    stats.allocated += 1;
                    return Some((lip, port));
                }
                if lookups >= Self::MAX_LOOKUPS {
                    stats.failed += 1;
                    return None;
                }
                if addr_lookups >= per_addr_lookups {
                    break;
                }
            }
        }
        stats.failed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn every_port_lands_on_its_core_without_duplicates() {
        let rss = RssOwner::round_robin(4, 128);
        let lips = [IpAddr::V4(v4(198, 18, 2, 1)), IpAddr::V4(v4(198, 18, 2, 2))];
        let rip = v4(198, 18, 1, 11);
        for core in 0..4u16 {
            let mut pool = LocalPorts::new(DEFAULT_PORT_MIN, DEFAULT_PORT_MAX, core * 1000);
            let mut used: HashSet<(Ipv4Addr, u16)> = HashSet::new();
            for _ in 0..5000 {
                let (lip, port) = pool
                    .alloc(&lips, rip, 8080, Some((&rss, core)), |l, p| {
                        used.contains(&(l, p))
                    })
                    .unwrap();
                assert!(port >= DEFAULT_PORT_MIN);
                assert_eq!(rss.owner_v4(rip, lip, 8080, port), core);
                assert!(used.insert((lip, port)), "duplicate {lip}:{port}");
            }
            // Both addresses are used.
            assert!(used.iter().any(|(l, _)| *l == v4(198, 18, 2, 1)));
            assert!(used.iter().any(|(l, _)| *l == v4(198, 18, 2, 2)));
            assert_eq!(pool.stats().allocated, 5000);
        }
    }

    #[test]
    fn one_core_takes_the_walks_choice_with_busy_first_candidates() {
        // One core: the cursor's port at the cursor's address, else the
        // walk on from there; addresses rotate after each allocation and
        // an address of the other family is passed over.
        let (a, b) = (v4(198, 18, 2, 1), v4(198, 18, 2, 2));
        let six: IpAddr = "2001:db8::1".parse().unwrap();
        let addrs = [IpAddr::V4(a), six, IpAddr::V4(b)];
        let rip = v4(198, 18, 1, 11);
        let busy: HashSet<(Ipv4Addr, u16)> = [(a, 1000), (b, 1002), (a, 1006)].into();
        let mut pool = LocalPorts::new(1000, 1009, 0);
        let mut used = busy.clone();
        let mut got = Vec::new();
        for _ in 0..7 {
            let (l, p) = pool
                .alloc(&addrs, rip, 80, None, |l, p| used.contains(&(l, p)))
                .unwrap();
            assert!(used.insert((l, p)), "{l}:{p} twice");
            got.push((l, p));
        }
        assert_eq!(
            got,
            [
                (a, 1001), // 1000 busy at a
                (b, 1003), // the IPv6 address passed over; 1002 busy at b
                (a, 1004),
                (b, 1005),
                (a, 1007), // 1006 busy at a
                (b, 1008),
                (a, 1009),
            ]
        );
        assert_eq!(pool.stats().allocated, 7);
    }

    /// Whatever the path (one core's first candidate, the walk past busy
    /// ports, the owned port lists), the candidate returned is the one of
    /// the last `in_use` call: the director reuses that call's hash.
    #[test]
    fn the_port_returned_is_the_last_one_checked() {
        let (a, b) = (v4(198, 18, 2, 1), v4(198, 18, 2, 2));
        let addrs = [IpAddr::V4(a), IpAddr::V4(b)];
        let rip = v4(198, 18, 1, 11);
        let rss = RssOwner::round_robin(4, 128);
        for owner in [None, Some((&rss, 1u16))] {
            let mut pool = LocalPorts::for_core(1000, 1999, 0, owner);
            let mut used: HashSet<(Ipv4Addr, u16)> = HashSet::new();
            // every third candidate checked is busy, so walks of several
            // steps mix with first-candidate hits
            let mut checks = 0u32;
            for _ in 0..300 {
                let mut last = None;
                let got = pool
                    .alloc(&addrs, rip, 80, owner, |l, p| {
                        last = Some((l, p));
                        checks += 1;
                        used.contains(&(l, p)) || checks.is_multiple_of(3)
                    })
                    .unwrap();
                assert_eq!(Some(got), last, "owner {}", owner.is_some());
                assert!(used.insert(got));
            }
        }
    }

    #[test]
    fn exhaustion_release_and_reuse() {
        // 64 ports, one core: all 64 allocatable, then None, then reuse.
        let lips = [IpAddr::V4(v4(198, 18, 2, 1))];
        let rip = v4(198, 18, 1, 11);
        let mut pool = LocalPorts::new(2000, 2063, 0);
        let mut used: HashSet<u16> = HashSet::new();
        for _ in 0..64 {
            let (_, p) = pool
                .alloc(&lips, rip, 80, None, |_, p| used.contains(&p))
                .unwrap();
            assert!((2000..=2063).contains(&p));
            assert!(used.insert(p));
        }
        assert_eq!(
            pool.alloc(&lips, rip, 80, None, |_, p| used.contains(&p)),
            None
        );
        assert_eq!(pool.stats().failed, 1);
        // Release one: it is found again.
        used.remove(&2010);
        pool.released(1);
        assert_eq!(
            pool.alloc(&lips, rip, 80, None, |_, p| used.contains(&p)),
            Some((v4(198, 18, 2, 1), 2010))
        );
        assert_eq!(pool.stats().in_use(), 64);
        // Another real server has its own reply tuples: same ports free.
        let other: HashSet<u16> = HashSet::new();
        assert!(pool
            .alloc(&lips, v4(198, 18, 1, 12), 80, None, |_, p| other
                .contains(&p))
            .is_some());
    }

    #[test]
    fn owned_ports_exhaust_per_core() {
        // 256 ports over 4 cores: core 1 owns about a quarter of them.
        let rss = RssOwner::round_robin(4, 128);
        let lips = [IpAddr::V4(v4(198, 18, 2, 1))];
        let rip = v4(198, 18, 1, 11);
        let owned: Vec<u16> = (3000..3256u16)
            .filter(|&p| rss.owner_v4(rip, v4(198, 18, 2, 1), 80, p) == 1)
            .collect();
        let mut pool = LocalPorts::new(3000, 3255, 0);
        let mut used: HashSet<u16> = HashSet::new();
        while let Some((_, p)) =
            pool.alloc(&lips, rip, 80, Some((&rss, 1)), |_, p| used.contains(&p))
        {
            assert!(used.insert(p));
        }
        let mut got: Vec<u16> = used.into_iter().collect();
        got.sort_unstable();
        assert_eq!(got, owned);
    }

    #[test]
    fn no_address_or_v6_only() {
        let mut pool = LocalPorts::new(1024, 65535, 0);
        assert_eq!(
            pool.alloc(&[], v4(1, 1, 1, 1), 80, None, |_, _| false),
            None
        );
        let v6 = [IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)];
        assert_eq!(
            pool.alloc(&v6, v4(1, 1, 1, 1), 80, None, |_, _| false),
            None
        );
        assert_eq!(pool.stats().failed, 2);
        let p = LocalPorts::new(10, 0, 5);
        assert_eq!(p.range(), (1, 10));
    }

    #[test]
    fn port_lists_give_only_owned_ports_without_duplicates() {
        let rss = RssOwner::round_robin(4, 128);
        let lips = [IpAddr::V4(v4(198, 18, 2, 1)), IpAddr::V4(v4(198, 18, 2, 2))];
        for core in 0..4u16 {
            let mut pool = LocalPorts::for_core(
                DEFAULT_PORT_MIN,
                DEFAULT_PORT_MAX,
                core * 1000,
                Some((&rss, core)),
            );
            assert!(pool.has_port_lists(core));
            assert!(!pool.has_port_lists(core + 1));
            let mut used: HashSet<(Ipv4Addr, u16)> = HashSet::new();
            // several real servers and ports: each has its own hash base
            for k in 0..6000u32 {
                let rip = v4(198, 18, 1, 11 + (k % 3) as u8);
                let rport = [80, 8080][(k % 2) as usize];
                let mut lookups = 0;
                let (lip, port) = pool
                    .alloc(&lips, rip, rport, Some((&rss, core)), |l, p| {
                        lookups += 1;
                        used.contains(&(l, p))
                    })
                    .unwrap();
                assert!(port >= DEFAULT_PORT_MIN);
                assert_eq!(rss.owner_v4(rip, lip, rport, port), core, "{lip}:{port}");
                assert!(used.insert((lip, port)), "duplicate {lip}:{port}");
                // every candidate is owned: no retries while ports are free
                assert!(lookups <= 2, "{lookups} lookups for one port");
            }
            assert_eq!(pool.stats().allocated, 6000);
            assert_eq!(pool.stats().failed, 0);
        }
    }

    #[test]
    fn port_lists_exhaust_to_exactly_the_owned_ports_and_count_it() {
        // 512 ports over 4 cores: core 2 gets exactly the ports whose reply
        // tuple it owns, then failures are counted; a released port comes back
        let rss = RssOwner::round_robin(4, 128);
        let lip = v4(198, 18, 2, 1);
        let lips = [IpAddr::V4(lip)];
        let rip = v4(198, 18, 1, 11);
        let owned: HashSet<u16> = (4000..4512u16)
            .filter(|&p| rss.owner_v4(rip, lip, 80, p) == 2)
            .collect();
        let mut pool = LocalPorts::for_core(4000, 4511, 0, Some((&rss, 2)));
        assert!(pool.has_port_lists(2));
        let mut used: HashSet<u16> = HashSet::new();
        while let Some((_, p)) =
            pool.alloc(&lips, rip, 80, Some((&rss, 2)), |_, p| used.contains(&p))
        {
            assert!(used.insert(p), "{p} given twice");
        }
        assert_eq!(used, owned);
        assert_eq!(pool.stats().failed, 1);
        assert_eq!(pool.stats().allocated, owned.len() as u64);
        assert_eq!(
            pool.alloc(&lips, rip, 80, Some((&rss, 2)), |_, p| used.contains(&p)),
            None
        );
        assert_eq!(pool.stats().failed, 2);
        let back = *owned.iter().next().unwrap();
        used.remove(&back);
        pool.released(1);
        assert_eq!(
            pool.alloc(&lips, rip, 80, Some((&rss, 2)), |_, p| used.contains(&p)),
            Some((lip, back))
        );
    }

    #[test]
    fn a_reta_that_is_not_a_power_of_two_keeps_the_walk() {
        let rss = RssOwner::new(
            &crate::wire::toeplitz::SYMMETRIC_KEY,
            (0..96).map(|i| i % 3).collect(),
        );
        let mut pool = LocalPorts::for_core(1024, 65535, 0, Some((&rss, 1)));
        assert!(!pool.has_port_lists(1));
        let lips = [IpAddr::V4(v4(198, 18, 2, 1))];
        let rip = v4(198, 18, 1, 11);
        for _ in 0..100 {
            let (lip, p) = pool
                .alloc(&lips, rip, 80, Some((&rss, 1)), |_, _| false)
                .unwrap();
            assert_eq!(rss.owner_v4(rip, lip, 80, p), 1);
        }
    }
}
