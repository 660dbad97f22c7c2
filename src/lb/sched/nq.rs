//! Never queue (`ip_vs_nq.c`): the first available server in walking order
//! with no active connection; if every one is busy, shortest expected delay.

use super::sed::expected_delay;
use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Never queue (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Nq
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for i in 0..ctx.len() {
            if !ctx.available(i) {
                continue;
            }
            if ctx.active(i) == 0 {
                return Some(i);
            }
            let doh = expected_delay(ctx, i);
            let better = match least {
                None => true,
                Some((l, loh)) => loh * u64::from(ctx.weight(i)) > doh * u64::from(ctx.weight(l)),
            };
            if better {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn idle_first_then_sed() {
        // Weights 5 1 2. 0 busy (3 active), 1 idle but with 50 inactive:
        // idle wins even against a much bigger weight.
        let s = svc(SchedulerKind::Nq, &[5, 1, 2]);
        let load = FakeLoad::new(3);
        load.set(0, 3, 0);
        load.set(1, 0, 50);
        load.set(2, 1, 0);
        let flags = [false; 3];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let mut nq = NeverQueue;
        assert_eq!(nq.schedule(&ctx, &input(client(1), 1)), Some(1));
        // Nobody idle: sed. (3+1)/5 vs (1+1)/1: 4*1 > 2*5? no. vs (1+1)/2:
        // 4*2 = 8 > 2*5 = 10? no → 0.
        load.set(1, 1, 0);
        assert_eq!(nq.schedule(&ctx, &input(client(1), 1)), Some(0));
        // 0 at 6 active: 7*1 > 2*5 no; 7*2 = 14 > 2*5 = 10 → 2.
        load.set(0, 6, 0);
        assert_eq!(nq.schedule(&ctx, &input(client(1), 1)), Some(2));
        // An idle but overloaded server is skipped: sed between 0 and 1,
        // 7*1 > 2*5 is false → 0.
        load.set(2, 0, 0);
        let ctx = SchedCtx {
            overloaded: &[false, false, true],
            ..ctx
        };
        assert_eq!(nq.schedule(&ctx, &input(client(1), 1)), Some(0));
    }

    #[test]
    fn shares_follow_weight_once_busy() {
        // Start with every server busy (1 active each), then add one active
        // connection per pick: sed proportions 1:3 apply to the new ones.
        let s = svc(SchedulerKind::Nq, &[1, 3]);
        let load = FakeLoad::new(2);
        load.set(0, 1, 0);
        load.set(1, 1, 0);
        let flags = [false; 2];
        let mut counts = [0u32; 2];
        for i in 0..100_000u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            let p = NeverQueue.schedule(&ctx, &input(client(i), 1)).unwrap();
            load.add_active(p as u32, 1);
            counts[p] += 1;
        }
        // With the starting connection each, the totals are 25_000 and
        // 75_002: the whole split of 100_002 closest to 1:3 (sed keeps
        // (a+1)/w of the servers within one step of each other).
        assert_eq!(counts, [24_999, 75_001]);
    }
}
