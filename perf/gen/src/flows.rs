//! The flow space: which client address and port a flow index stands for.
//!
//! Flow `f` of a space with `ips` addresses and ports from `port_base` is
//! client `base + f % ips` port `port_base + f / ips`: consecutive flows
//! differ in address first (spreading hash buckets and real servers early),
//! and every flow of the space is a distinct tuple. The mapping is a pure
//! function, so the checker can tell whether an address:port seen on the
//! wire belongs to the space without any table.

use std::net::Ipv4Addr;

/// Highest usable source port + 1.
const PORT_END: u32 = 65536;

/// A rectangular block of client tuples: `ips` consecutive addresses from
/// `base`, each with ports from `port_base` upwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpace {
    base: u32,
    ips: u32,
    port_base: u16,
    /// Number of tuples used (flow indices 0..len).
    len: u64,
}

/// Why a flow space cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSpaceError {
    /// Zero flows or zero addresses.
    Empty,
    /// More flows than addresses × ports.
    TooManyFlows { flows: u64, capacity: u64 },
    /// The address block runs past 255.255.255.255.
    AddressOverflow,
}

impl std::fmt::Display for FlowSpaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowSpaceError::Empty => {
                f.write_str("a flow space needs at least one flow and address")
            }
            FlowSpaceError::TooManyFlows { flows, capacity } => write!(
                f,
                "{flows} flows do not fit: the client addresses and ports give {capacity} tuples"
            ),
            FlowSpaceError::AddressOverflow => {
                f.write_str("client address block runs past 255.255.255.255")
            }
        }
    }
}

impl FlowSpace {
    /// `flows` tuples over at most `max_ips` addresses from `base`, ports
    /// from `port_base`. Uses `min(flows, max_ips)` addresses.
    pub fn new(
        base: Ipv4Addr,
        max_ips: u32,
        port_base: u16,
        flows: u64,
    ) -> Result<FlowSpace, FlowSpaceError> {
        if flows == 0 || max_ips == 0 {
            return Err(FlowSpaceError::Empty);
        }
        let ips = flows.min(max_ips as u64) as u32;
        let base = u32::from(base);
        if base.checked_add(ips - 1).is_none() {
            return Err(FlowSpaceError::AddressOverflow);
        }
        let capacity = ips as u64 * (PORT_END - port_base as u32) as u64;
        if flows > capacity {
            return Err(FlowSpaceError::TooManyFlows { flows, capacity });
        }
        Ok(FlowSpace {
            base,
            ips,
            port_base,
            len: flows,
        })
    }

    /// A space as large as the block allows (for the new-connection
    /// counter, which walks it round and round).
    pub fn full(base: Ipv4Addr, ips: u32, port_base: u16) -> Result<FlowSpace, FlowSpaceError> {
        let capacity = ips as u64 * (PORT_END - port_base as u32) as u64;
        Self::new(base, ips, port_base, capacity)
    }

    /// Number of flows.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Addresses in use.
    #[cfg(test)]
    pub fn ips(&self) -> u32 {
        self.ips
    }

    /// Client address (host order) and port of flow `index` (taken modulo
    /// the space, so any counter can be passed).
    #[inline]
    pub fn tuple(&self, index: u64) -> (u32, u16) {
        let f = index % self.len;
        let ip = self.base + (f % self.ips as u64) as u32;
        let port = self.port_base as u64 + f / self.ips as u64;
        (ip, port as u16)
    }

    /// The flow index of `ip:port`, if it belongs to the space.
    #[inline]
    pub fn index_of(&self, ip: u32, port: u16) -> Option<u64> {
        let off = ip.checked_sub(self.base)?;
        if off >= self.ips || port < self.port_base {
            return None;
        }
        let f = (port - self.port_base) as u64 * self.ips as u64 + off as u64;
        (f < self.len).then_some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn small_space_uses_one_port_per_address() {
        let s = FlowSpace::new(ip("198.19.0.0"), 4096, 1024, 1000).unwrap();
        assert_eq!(s.ips(), 1000);
        assert_eq!(s.tuple(0), (u32::from(ip("198.19.0.0")), 1024));
        assert_eq!(s.tuple(999), (u32::from(ip("198.19.3.231")), 1024));
        // wraps
        assert_eq!(s.tuple(1000), s.tuple(0));
    }

    #[test]
    fn large_space_spreads_over_addresses_then_ports() {
        let s = FlowSpace::new(ip("198.19.0.0"), 4096, 1024, 1_000_000).unwrap();
        assert_eq!(s.ips(), 4096);
        assert_eq!(s.tuple(4095), (u32::from(ip("198.19.15.255")), 1024));
        assert_eq!(s.tuple(4096), (u32::from(ip("198.19.0.0")), 1025));
        assert_eq!(s.tuple(999_999), (u32::from(ip("198.19.2.63")), 1024 + 244));
    }

    #[test]
    fn index_of_inverts_tuple() {
        let s = FlowSpace::new(ip("198.19.0.0"), 1024, 2000, 10_000_000).unwrap();
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = x % s.len();
            let (a, p) = s.tuple(f);
            assert_eq!(s.index_of(a, p), Some(f));
        }
        // outside: below/above the block, low port, past the last flow
        assert_eq!(s.index_of(u32::from(ip("198.18.255.255")), 2000), None);
        assert_eq!(s.index_of(u32::from(ip("198.19.4.0")), 2000), None);
        assert_eq!(s.index_of(u32::from(ip("198.19.0.0")), 1999), None);
        let (a, p) = s.tuple(s.len() - 1);
        assert_eq!(s.index_of(a, p.wrapping_add(1)), None);
    }

    #[test]
    fn every_tuple_is_distinct() {
        let s = FlowSpace::new(ip("10.0.0.0"), 7, 65530, 42).unwrap();
        let mut seen = std::collections::HashSet::new();
        for f in 0..42 {
            assert!(seen.insert(s.tuple(f)));
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            FlowSpace::new(ip("10.0.0.0"), 1, 1024, 0),
            Err(FlowSpaceError::Empty)
        );
        assert_eq!(
            FlowSpace::new(ip("10.0.0.0"), 2, 65535, 3),
            Err(FlowSpaceError::TooManyFlows {
                flows: 3,
                capacity: 2
            })
        );
        assert_eq!(
            FlowSpace::new(ip("255.255.255.255"), 2, 1024, 2),
            Err(FlowSpaceError::AddressOverflow)
        );
        let full = FlowSpace::full(ip("198.19.128.0"), 32768, 1024).unwrap();
        assert_eq!(full.len(), 32768 * 64512);
    }
}
