//! Power of two choices (`ip_vs_twos.c`): two servers drawn at random with
//! probability by weight, then the one with the lower overhead per weight.
//!
//! As in the kernel the draws are `r` uniform in `0..=total weight`,
//! subtracting each available server's weight in walking order and taking
//! the first at which `r` ≤ 0 (so the first server also takes `r` = 0).
//! The random numbers come from a per-core [`Prng`] seeded at creation,
//! not from the kernel's `get_random_u32_below`.

use super::{Prng, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Power of two choices with its random generator.
#[derive(Debug, Clone)]
pub struct TwoChoices {
    rng: Prng,
}

impl TwoChoices {
    /// A scheduler drawing from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        TwoChoices {
            rng: Prng::new(seed),
        }
    }

    /// The kernel's choice for given draws `r1`, `r2` in `0..=total`.
    pub(crate) fn choose(ctx: &SchedCtx<'_>, r1: u32, r2: u32) -> Option<usize> {
        let (mut r1, mut r2) = (i64::from(r1), i64::from(r2));
        let mut c1: Option<(usize, u64, u64)> = None;
        let mut c2: Option<(usize, u64, u64)> = None;
        for i in 0..ctx.len() {
            if !ctx.available(i) {
                continue;
            }
            let w = ctx.weight(i);
            r1 -= i64::from(w);
            r2 -= i64::from(w);
            if r1 <= 0 && c1.is_none() {
                c1 = Some((i, u64::from(w), ctx.overhead(i)));
            }
            if r2 <= 0 && c2.is_none() {
                c2 = Some((i, u64::from(w), ctx.overhead(i)));
            }
            if c1.is_some() && c2.is_some() {
                break;
            }
        }
        let (i1, w1, oh1) = c1?;
        match c2 {
            Some((i2, w2, oh2))
                if u128::from(w2) * u128::from(oh1) > u128::from(w1) * u128::from(oh2) =>
            {
                Some(i2)
            }
            _ => Some(i1),
        }
    }
}

impl Scheduler for TwoChoices {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Twos
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let total: u64 = (0..ctx.len())
            .filter(|&i| ctx.available(i))
            .map(|i| u64::from(ctx.weight(i)))
            .sum();
        if total == 0 {
            return None;
        }
        // Inclusive of total, as the kernel's `total_weight + 1`.
        let bound = u32::try_from(total + 1).unwrap_or(u32::MAX);
        let r1 = self.rng.below(bound);
        let r2 = self.rng.below(bound);
        Self::choose(ctx, r1, r2)
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn draws_map_to_servers_as_in_the_kernel() {
        // Weights 2 0 3 (total 5, r in 0..=5). Walking: pos 0 consumes 2
        // (r ≤ 2 → pos 0), pos 1 quiescent skipped, pos 2 consumes 3.
        let s = svc(SchedulerKind::Twos, &[2, 0, 3]);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        // Idle servers: choice2 replaces choice1 only if w2*oh1 > w1*oh2,
        // i.e. never at zero overhead, so the first draw decides.
        for (r1, want) in [(0, 0), (2, 0), (3, 2), (5, 2)] {
            assert_eq!(TwoChoices::choose(&ctx, r1, 4), Some(want), "r1 {r1}");
        }
        // Pos 0 busy (1 active = 256), pos 2 idle: 3*256 > 2*0 → pos 2.
        load.set(0, 1, 0);
        assert_eq!(TwoChoices::choose(&ctx, 1, 4), Some(2));
        // Pos 2 busier per weight: 2 active over 3 (512/3) vs 256/2:
        // 3*256 = 768 > 2*512 = 1024? no → pos 0 stays.
        load.set(2, 2, 0);
        assert_eq!(TwoChoices::choose(&ctx, 1, 4), Some(0));
    }

    #[test]
    fn shares_follow_weight_within_tolerance() {
        // Idle servers: the pick is the first draw's server, P(pos) =
        // weight / (total + 1) except pos 0, which also takes r = 0.
        // Weights 1 3 6 (total 10): expected 2/11, 3/11, 6/11.
        let s = svc(SchedulerKind::Twos, &[1, 3, 6]);
        let mut t = TwoChoices::new(42);
        let c = shares(&mut t, &s, 110_000);
        for (got, want) in c.iter().zip([20_000u32, 30_000, 60_000]) {
            assert!(got.abs_diff(want) < 1_000, "{c:?}");
        }
    }

    #[test]
    fn balances_load_under_accumulating_connections() {
        // With connections accumulating, the two-choice rule keeps the load
        // per weight close: after 60K picks over weights 1:2:3, each server
        // is within 2% of its share.
        let s = svc(SchedulerKind::Twos, &[1, 2, 3]);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let mut t = TwoChoices::new(7);
        let mut counts = [0u32; 3];
        for i in 0..60_000u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            let p = t.schedule(&ctx, &input(client(i), 1)).unwrap();
            load.add_active(p as u32, 1);
            counts[p] += 1;
        }
        for (got, want) in counts.iter().zip([10_000u32, 20_000, 30_000]) {
            assert!(got.abs_diff(want) < 1_200, "{counts:?}");
        }
    }
}
