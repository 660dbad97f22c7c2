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
//! connection is removed. Each core keeps a cursor that walks the port range
//! (and rotates the local addresses), so consecutive allocations continue
//! where the last one stopped, like the kernel's ephemeral ports. A
//! candidate costs one XOR and one RETA read (the port's Toeplitz term,
//! [`RssOwner::dport_term`]); only candidates this core owns are looked up
//! in the table. The walk is bounded ([`LocalPorts::MAX_CANDIDATES`] ports,
//! [`LocalPorts::MAX_LOOKUPS`] lookups), so a nearly exhausted pool fails
//! fast with `None` (counted as `NoLocalPort`) instead of scanning 64K ports.
//!
//! Fixed memory, no allocation per packet.

use std::net::{IpAddr, Ipv4Addr};

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
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let min = min.max(1);
        let max = max.max(min);
        let span = u32::from(max - min) + 1;
        let cursor = min + (u32::from(start) % span) as u16;
        LocalPorts {
            min,
            max,
            cursor,
            addr_cursor: 0,
            stats: LocalPortStats::default(),
        }
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
    /// IPv4 addresses among `addrs`. With `owner = Some((rss, core))` only
    /// ports whose reply tuple `(rip, LIP, rport, lport)` maps to `core`
    /// qualify. `in_use(lip, lport)` says whether that reply tuple already
    /// has a connection. `None` when nothing was found within the bounds
    /// (or `addrs` holds no IPv4 address).
    pub fn alloc(
        &mut self,
        addrs: &[IpAddr],
        rip: Ipv4Addr,
        rport: u16,
        owner: Option<(&RssOwner, u16)>,
        mut in_use: impl FnMut(Ipv4Addr, u16) -> bool,
    ) -> Option<(Ipv4Addr, u16)> {
        let n_addrs = addrs.len();
        if n_addrs == 0 {
            self.stats.failed += 1;
            return None;
        }
        let span = u32::from(self.max - self.min) + 1;
        // Spread the budget over the addresses: each gets a full sweep of
        // its share of candidates before the next is tried.
        let per_addr = (Self::MAX_CANDIDATES / n_addrs.min(64) as u32).clamp(1, span);
        let mut lookups = 0u32;
        for k in 0..n_addrs.min(64) {
            let i = (self.addr_cursor + k) % n_addrs;
            let Some(IpAddr::V4(lip)) = addrs.get(i).copied() else {
                continue;
            };
            let base = owner.map(|(rss, _)| rss.hash_v4(rip, lip, rport, 0));
            for _ in 0..per_addr {
                let port = self.advance();
                if let (Some((rss, core)), Some(h0)) = (owner, base) {
                    if rss.core_of_hash(h0 ^ rss.dport_term(port)) != core {
                        continue;
                    }
                }
                lookups += 1;
                if !in_use(lip, port) {
                    self.addr_cursor = (i + 1) % n_addrs;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
}
