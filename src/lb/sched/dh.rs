//! Destination hashing (`ip_vs_dh.c`): a static 256-bucket table indexed
//! by `hash_32(destination address, 8)`.
//!
//! The kernel fills bucket `i` with server `i mod n` in walking order — one
//! bucket per server in turn, whatever the weights (`ip_vs_dh_reassign`
//! has no weight logic; weight only matters as 0 = unavailable). A bucket
//! whose server is quiescent or overloaded yields no server: dh has no
//! fallback. The hash is the kernel's golden-ratio `hash_32`, so every core
//! and every director (and Linux IPVS itself) maps a destination to the
//! same server for the same configuration.

use super::{fold_addr, hash_32, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const NONE: u32 = u32::MAX;

/// Destination-hashing table of server positions.
#[derive(Debug, Clone)]
pub struct DestHash {
    buckets: Box<[u32; TAB_SIZE]>,
}

impl DestHash {
    /// Table for a service (`ip_vs_dh_reassign`).
    pub fn new(svc: &Service) -> Self {
        let mut d = DestHash {
            buckets: Box::new([NONE; TAB_SIZE]),
        };
        d.assign(svc);
        d
    }

    fn assign(&mut self, svc: &Service) {
        let n = svc.servers.len();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if n == 0 { NONE } else { (i % n) as u32 };
        }
    }

    /// The bucket table (server positions; `u32::MAX` = none).
    pub fn buckets(&self) -> &[u32; TAB_SIZE] {
        &self.buckets
    }
}

impl Scheduler for DestHash {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Dh
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize> {
        let h = hash_32(fold_addr(ctx.svc.af(), input.dst), TAB_BITS) as usize;
        let pos = *self.buckets.get(h)?;
        if pos == NONE || !ctx.available(pos as usize) {
            return None;
        }
        Some(pos as usize)
    }

    fn servers_changed(&mut self, _old: &Service, new: &Service) {
        self.assign(new);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn to(dst: &str) -> SchedInput {
        SchedInput {
            dst: dst.parse().unwrap(),
            ..input("10.0.0.1".parse().unwrap(), 1)
        }
    }

    #[test]
    fn kernel_buckets_for_known_destinations() {
        // hash_32(addr, 8) = (addr * 0x61C88647 mod 2^32) >> 24:
        //   198.18.0.100 = 0xC6120064 → 0x8D5273BC → 141 → 141 mod 3 = 0
        //   198.18.0.101 = 0xC6120065 → 0xEF1AFA03 → 239 → 239 mod 3 = 2
        //   198.18.0.102 = 0xC6120066 → 0x50E3804A →  80 →  80 mod 3 = 2
        //   10.0.0.1     = 0x0A000001 → 0x27C88647 →  39 →  39 mod 3 = 0
        // Weights do not shape the table.
        let s = svc(SchedulerKind::Dh, &[5, 1, 1]);
        let mut dh = DestHash::new(&s);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        for (dst, want) in [
            ("198.18.0.100", 0),
            ("198.18.0.101", 2),
            ("198.18.0.102", 2),
            ("10.0.0.1", 0),
        ] {
            assert_eq!(dh.schedule(&ctx, &to(dst)), Some(want), "{dst}");
        }
        // No fallback: an overloaded or quiescent bucket owner gives nothing.
        let ctx2 = SchedCtx {
            overloaded: &[false, false, true],
            ..ctx
        };
        assert_eq!(dh.schedule(&ctx2, &to("198.18.0.101")), None);
        let mut q = s.clone();
        q.servers[0].weight = 0;
        let ctx3 = SchedCtx { svc: &q, ..ctx };
        assert_eq!(dh.schedule(&ctx3, &to("198.18.0.100")), None);
    }

    #[test]
    fn same_table_from_independent_instances_and_rebuilds() {
        // Two cores (or two directors) with the same configuration agree on
        // every bucket and every answer; a rebuild gives the same table.
        let s = svc(SchedulerKind::Dh, &[1, 2, 3, 4, 5]);
        let mut a = DestHash::new(&s);
        let mut b = DestHash::new(&s.clone());
        assert_eq!(a.buckets(), b.buckets());
        let load = FakeLoad::new(5);
        let flags = [false; 5];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        for i in 0..1_000u32 {
            let inp = SchedInput {
                dst: client(i),
                ..input(client(i + 7), 1)
            };
            assert_eq!(a.schedule(&ctx, &inp), b.schedule(&ctx, &inp));
        }
        let before = *a.buckets();
        a.servers_changed(&s, &s);
        assert_eq!(*a.buckets(), before);
    }

    #[test]
    fn one_bucket_per_server_in_turn() {
        let s = svc(SchedulerKind::Dh, &[9, 1, 1]);
        let d = DestHash::new(&s);
        let counts = (0..3u32)
            .map(|p| d.buckets().iter().filter(|&&b| b == p).count())
            .collect::<Vec<_>>();
        // 256 = 3 * 85 + 1: position 0 gets the extra bucket.
        assert_eq!(counts, vec![86, 85, 85]);
        let empty = svc(SchedulerKind::Dh, &[]);
        assert!(DestHash::new(&empty).buckets().iter().all(|&b| b == NONE));
    }
}
