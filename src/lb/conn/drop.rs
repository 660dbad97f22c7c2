//! drop_entry's random pass over a table (kernel `ip_vs_random_dropentry`);
//! the policy and its rationale are in [`crate::lb::defense`].

use super::{Addr, Conn, ConnId, ConnTable, F_TEMPLATE, PROTO_TCP, PROTO_UDP};
use crate::lb::defense::DefenseState;
use crate::lb::tcp_state::TcpState;

/// Idle time after which an ESTABLISHED/UDP entry may be dropped (kernel:
/// "if the conn entry hasn't lasted for 60 seconds, don't drop it").
pub const DROP_MIN_IDLE_MS: u64 = 60_000;

impl<A: Addr> ConnTable<A> {
    /// Probe `probes` random slab entries and drop those the kernel's
    /// drop_entry would: half-open TCP (SYN_RECV, SYNACK) always; idle
    /// ESTABLISHED TCP and UDP entries at `todrop` rates. Templates are
    /// never dropped. `on_dropped` sees each entry removed (FULLNAT ports).
    /// Returns the number dropped.
    pub fn drop_random_entries(
        &mut self,
        defense: &mut DefenseState,
        probes: usize,
        now_ms: u64,
        mut on_dropped: impl FnMut(ConnId, &Conn<A>),
    ) -> usize {
        let used = self.watermark as usize;
        if used == 0 {
            return 0;
        }
        let mut dropped = 0;
        for _ in 0..probes {
            let idx = defense.random_below(used);
            let Some(e) = self.slab.get(idx).map(|s| s.0) else {
                continue;
            };
            if !e.is_live() || e.flags & F_TEMPLATE != 0 {
                continue;
            }
            let idle_ms = (now_ms + u64::from(e.timeout_ms)).saturating_sub(e.expires_ms);
            let old_enough = idle_ms >= DROP_MIN_IDLE_MS;
            let drop = match e.proto {
                PROTO_TCP => match TcpState::from_u8(e.state) {
                    Some(TcpState::SynRecv | TcpState::SynAck) => true,
                    Some(TcpState::Established) => old_enough && defense.todrop(e.in_pkts),
                    _ => false,
                },
                PROTO_UDP => old_enough && defense.todrop(e.in_pkts),
                _ => false,
            };
            if drop {
                self.release(idx, &mut on_dropped);
                self.stats.removed += 1;
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::conn::{Direction, Endpoint, NewConn};
    use crate::lb::defense::SECURE_HALFOPEN_TIMEOUT_S;
    use crate::lb::load::CoreLoad;
    use crate::lb::tcp_state::tcp_flags::{ACK, SYN};
    use crate::lb::types::{FwdMethod, Protocol};
    use std::sync::Arc;

    fn table(cap: usize) -> ConnTable<u32> {
        ConnTable::with_seed(
            cap,
            Arc::new(CoreLoad::new(4)),
            0,
            crate::lb::conn::Seed::new(3),
        )
        .unwrap()
    }

    fn conn(proto: Protocol, cport: u16) -> NewConn<u32> {
        NewConn {
            proto,
            client: Endpoint::new(0xc612_0001 + u32::from(cport), cport),
            virt: Endpoint::new(0xc612_0064, 80),
            local: None,
            real: Endpoint::new(0xc612_010b, 8080),
            dest: 1,
            fwd: FwdMethod::Masq,
            one_packet: false,
            template: None,
        }
    }

    #[test]
    fn drops_half_open_keeps_fresh_established() {
        let mut t = table(64);
        let mut def = DefenseState::new(9);
        let mut half = Vec::new();
        for p in 0..32 {
            let id = t.insert(&conn(Protocol::Tcp, 1000 + p), 0).unwrap();
            t.update_state(id, Direction::Input, SYN, 0);
            half.push(id);
        }
        let mut est = Vec::new();
        for p in 0..32 {
            let id = t.insert(&conn(Protocol::Tcp, 2000 + p), 0).unwrap();
            t.update_state(id, Direction::Input, SYN, 0);
            t.update_state(id, Direction::Output, SYN | ACK, 0);
            t.update_state(id, Direction::Input, ACK, 0);
            if let Some(c) = t.get_mut(id) {
                c.bump_in_pkts();
            }
            est.push(id);
        }
        assert_eq!(t.len(), 64);
        let mut seen = 0;
        let n = t.drop_random_entries(&mut def, 4096, 1000, |_, c| {
            assert_eq!(c.tcp_state(), Some(TcpState::SynRecv));
            seen += 1;
        });
        assert_eq!((n, seen), (32, 32), "every half-open entry found");
        assert!(half.iter().all(|id| t.get(*id).is_none()));
        assert!(
            est.iter().all(|id| t.get(*id).is_some()),
            "fresh ESTABLISHED kept"
        );
        // After 60 s idle, one-packet ESTABLISHED entries go too.
        let n = t.drop_random_entries(&mut def, 4096, 61_000, |_, _| {});
        assert_eq!(n, 32);
        assert!(t.is_empty());
    }

    #[test]
    fn never_drops_udp_without_packets_or_templates() {
        let mut t = table(16);
        let mut def = DefenseState::new(5);
        let id = t.insert(&conn(Protocol::Udp, 53), 0).unwrap();
        t.update_state(id, Direction::Input, 0, 0);
        assert_eq!(t.drop_random_entries(&mut def, 1000, 400_000, |_, _| {}), 0);
        assert!(
            t.get(id).is_some(),
            "UDP entry with no client packets counted"
        );
    }

    #[test]
    fn secure_tcp_shortens_half_open_timeouts() {
        let mut t = table(16);
        t.set_secure_tcp(true);
        let id = t.insert(&conn(Protocol::Tcp, 7), 0).unwrap();
        t.update_state(id, Direction::Input, SYN, 0);
        let c = t.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::SynRecv));
        assert_eq!(c.timeout_ms(), SECURE_HALFOPEN_TIMEOUT_S * 1000);
        // server's SYN-ACK: SYNACK in the secure table, still 10 s
        t.update_state(id, Direction::Output, SYN | ACK, 0);
        let c = t.get(id).unwrap();
        assert_eq!(c.tcp_state(), Some(TcpState::SynAck));
        assert_eq!(c.timeout_ms(), SECURE_HALFOPEN_TIMEOUT_S * 1000);
        t.update_state(id, Direction::Output, ACK, 0);
        assert_eq!(t.get(id).unwrap().timeout_ms(), 900_000);
        // off: the configured 60 s
        t.set_secure_tcp(false);
        let id = t.insert(&conn(Protocol::Tcp, 8), 0).unwrap();
        t.update_state(id, Direction::Input, SYN, 0);
        assert_eq!(t.get(id).unwrap().timeout_ms(), 60_000);
    }
}
