//! Source hashing (`ip_vs_sh.c`): a static 256-bucket table indexed by
//! `hash_32(source port + source address, 8)` (the port only with
//! `sh-port`).
//!
//! Buckets are dealt out in walking order, each server taking as many
//! consecutive buckets as its weight (at least one: a weight-0 server takes
//! one and is unavailable), wrapping until all 256 are filled
//! (`ip_vs_sh_reassign`). A bucket whose server is quiescent or overloaded
//! yields nothing, unless `sh-fallback`: then the kernel probes the buckets
//! `(offset + 2 × h) mod 256` for offset 0, 1, 2… — it adds the original
//! hash to an offset that already starts at it — and takes the first
//! available server. We keep that exactly, so answers match Linux IPVS and
//! agree across cores and directors.

use super::{fold_addr, hash_32, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;
const NONE: u32 = u32::MAX;

/// Source-hashing table of server positions.
#[derive(Debug, Clone)]
pub struct SourceHash {
    buckets: Box<[u32; TAB_SIZE]>,
}

impl SourceHash {
    /// Table for a service.
    pub fn new(svc: &Service) -> Self {
        let mut s = SourceHash {
            buckets: Box::new([NONE; TAB_SIZE]),
        };
        s.assign(svc);
        s
    }

    fn assign(&mut self, svc: &Service) {
        let n = svc.servers.len();
        let (mut p, mut d_count) = (0usize, 0u32);
        for b in self.buckets.iter_mut() {
            if n == 0 {
                *b = NONE;
                continue;
            }
            *b = p as u32;
            d_count += 1;
            if d_count >= svc.servers.get(p).map_or(0, |s| s.weight) {
                p = (p + 1) % n;
                d_count = 0;
            }
        }
    }

    /// The bucket table (server positions; `u32::MAX` = none).
    pub fn buckets(&self) -> &[u32; TAB_SIZE] {
        &self.buckets
    }
}

impl Scheduler for SourceHash {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sh
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize> {
        let flags = ctx.svc.config.flags;
        let port = if flags.sh_port {
            u32::from(input.sport)
        } else {
            0
        };
        let ihash = hash_32(
            port.wrapping_add(fold_addr(ctx.svc.af(), input.src)),
            TAB_BITS,
        );
        let owner = |h: u32| {
            self.buckets
                .get((h & TAB_MASK) as usize)
                .copied()
                .unwrap_or(NONE)
        };
        let pos = owner(ihash);
        if pos == NONE {
            return None;
        }
        if ctx.available(pos as usize) {
            return Some(pos as usize);
        }
        if !flags.sh_fallback {
            return None;
        }
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + ihash) & TAB_MASK;
            let pos = owner(roffset + ihash);
            if pos == NONE {
                break;
            }
            if ctx.available(pos as usize) {
                return Some(pos as usize);
            }
        }
        None
    }

    fn servers_changed(&mut self, _old: &Service, new: &Service) {
        self.assign(new);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::lb::service::{SchedFlags, ServiceConfig};

    fn sh_svc(weights: &[u32], fallback: bool, port: bool) -> Service {
        let cfg = ServiceConfig {
            flags: SchedFlags {
                sh_fallback: fallback,
                sh_port: port,
                ..SchedFlags::default()
            },
            ..ServiceConfig::with_scheduler("sh")
        };
        svc_cfg(cfg, weights)
    }

    fn from(src: &str, sport: u16) -> SchedInput {
        input(src.parse().unwrap(), sport)
    }

    #[test]
    fn buckets_are_dealt_by_weight() {
        // Weights 2 1 3: buckets 0,1 → 0; 2 → 1; 3,4,5 → 2; repeat. So
        // bucket b belongs to [0,0,1,2,2,2][b mod 6].
        let s = SourceHash::new(&sh_svc(&[2, 1, 3], false, false));
        let pattern = [0, 0, 1, 2, 2, 2];
        for (b, &p) in s.buckets().iter().enumerate() {
            assert_eq!(p, pattern[b % 6], "bucket {b}");
        }
        // Weight 0 still takes one bucket.
        let z = SourceHash::new(&sh_svc(&[1, 0], false, false));
        assert_eq!(&z.buckets()[..4], &[0, 1, 0, 1]);
    }

    #[test]
    fn kernel_choices_for_known_clients() {
        // hash_32(addr, 8) = (addr * 0x61C88647 mod 2^32) >> 24:
        //   10.0.0.1 = 0x0A000001 → 0x27C88647 →  39;  39 mod 6 = 3 → pos 2
        //   10.0.0.3 = 0x0A000003 →   ...      → 235; 235 mod 6 = 1 → pos 0
        //   10.0.0.8 = 0x0A000008 →   ...      → 212; 212 mod 6 = 2 → pos 1
        //   10.0.0.5 = 0x0A000005 →   ...      → 174; 174 mod 6 = 0 → pos 0
        let s = sh_svc(&[2, 1, 3], false, false);
        let mut sh = SourceHash::new(&s);
        let load = FakeLoad::new(3);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 3],
        };
        for (src, want) in [
            ("10.0.0.1", 2),
            ("10.0.0.3", 0),
            ("10.0.0.8", 1),
            ("10.0.0.5", 0),
        ] {
            // Without sh-port the source port is ignored.
            for sport in [1024, 40000] {
                assert_eq!(sh.schedule(&ctx, &from(src, sport)), Some(want), "{src}");
            }
        }
    }

    #[test]
    fn sh_port_hashes_the_source_port() {
        // 10.0.0.1 port 1024: 0x0A000001 + 1024 = 0x0A000401 → 0x49E1A247 →
        // 73; 73 mod 6 = 1 → pos 0. Port 40000: 0x0A009C41 → 0xCBBD5C07 →
        // 203; 203 mod 6 = 5 → pos 2.
        let s = sh_svc(&[2, 1, 3], false, true);
        let mut sh = SourceHash::new(&s);
        let load = FakeLoad::new(3);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 3],
        };
        assert_eq!(sh.schedule(&ctx, &from("10.0.0.1", 1024)), Some(0));
        assert_eq!(sh.schedule(&ctx, &from("10.0.0.1", 40000)), Some(2));
    }

    #[test]
    fn fallback_probes_like_the_kernel() {
        // Position 2 overloaded. 10.0.0.1 hashes to 39 (pos 2). Without
        // fallback: nothing. With it, the first probe is (0 + 39) + 39 = 78,
        // 78 mod 6 = 0 → pos 0 (the next bucket, 40, would have been pos 2).
        // 10.0.0.4 hashes to 77 (pos 2); probes 154 (pos 2), 155 (pos 2),
        // 156 (pos 0).
        let flags = [false, false, true];
        let load = FakeLoad::new(3);
        let plain = sh_svc(&[2, 1, 3], false, false);
        let ctx = SchedCtx {
            svc: &plain,
            load: &load,
            overloaded: &flags,
        };
        assert_eq!(
            SourceHash::new(&plain).schedule(&ctx, &from("10.0.0.1", 1)),
            None
        );
        let fb = sh_svc(&[2, 1, 3], true, false);
        let mut sh = SourceHash::new(&fb);
        let ctx = SchedCtx { svc: &fb, ..ctx };
        assert_eq!(sh.schedule(&ctx, &from("10.0.0.1", 1)), Some(0));
        assert_eq!(sh.schedule(&ctx, &from("10.0.0.4", 1)), Some(0));
        // Quiescing position 2 reassigns the table (weights 2 1 0: the
        // quiescent server keeps one bucket, so bucket b belongs to
        // [0,0,1,2][b mod 4]). 10.0.0.1: 39 mod 4 = 3 → pos 2, unavailable;
        // first probe 78 mod 4 = 2 → pos 1.
        let mut q = fb.clone();
        q.servers[2].weight = 0;
        let mut shq = SourceHash::new(&q);
        let ctx = SchedCtx {
            svc: &q,
            overloaded: &[false; 3],
            ..ctx
        };
        assert_eq!(shq.schedule(&ctx, &from("10.0.0.1", 1)), Some(1));
        // Everything unavailable: the probe gives up.
        let ctx = SchedCtx {
            overloaded: &[true; 3],
            ..ctx
        };
        assert_eq!(shq.schedule(&ctx, &from("10.0.0.1", 1)), None);
    }

    #[test]
    fn same_answers_across_instances_and_rebuilds() {
        let s = sh_svc(&[3, 1, 4, 1, 5, 9, 2, 6], true, true);
        let mut a = SourceHash::new(&s);
        let mut b = SourceHash::new(&s.clone());
        assert_eq!(a.buckets(), b.buckets());
        let before = *a.buckets();
        a.servers_changed(&s, &s);
        assert_eq!(*a.buckets(), before);
        let load = FakeLoad::new(8);
        let flags = [false, true, false, false, true, false, false, false];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        for i in 0..2_000u32 {
            let inp = input(client(i), (i * 7) as u16);
            assert_eq!(a.schedule(&ctx, &inp), b.schedule(&ctx, &inp));
        }
    }

    #[test]
    fn shares_follow_bucket_counts() {
        // Weights 1 2 5 fill 256 buckets as 32 rounds of 8: 32/64/160.
        // Clients spread evenly over buckets share traffic about the same.
        let s = sh_svc(&[1, 2, 5], false, false);
        let mut sh = SourceHash::new(&s);
        let c = shares(&mut sh, &s, 100_000);
        for (got, want) in c.iter().zip([12_500u32, 25_000, 62_500]) {
            assert!(got.abs_diff(want) < 1_500, "{c:?}");
        }
    }
}
