//! Shortest expected delay (`ip_vs_sed.c`): the server with the least
//! (active + 1) / weight, cross-multiplied; inactive connections are not
//! counted. Ties go to the earlier server in walking order.

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Shortest expected delay (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortestExpectedDelay;

/// (active + 1), the kernel's `ip_vs_sed_dest_overhead`.
#[inline]
pub(crate) fn expected_delay(ctx: &SchedCtx<'_>, i: usize) -> u64 {
    u64::from(ctx.active(i)) + 1
}

impl Scheduler for ShortestExpectedDelay {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sed
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let n = ctx.len();
        let first = (0..n).find(|&i| ctx.available(i))?;
        let (mut least, mut loh) = (first, expected_delay(ctx, first));
        for i in first + 1..n {
            if ctx.is_overloaded(i) {
                continue;
            }
            let doh = expected_delay(ctx, i);
            if loh * u64::from(ctx.weight(i)) > doh * u64::from(ctx.weight(least)) {
                least = i;
                loh = doh;
            }
        }
        Some(least)
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn counts_the_incoming_connection() {
        // Weights 1 and 3, both idle: (0+1)/1 vs (0+1)/3: 1*3 > 1*1 → 1.
        // wlc would keep 0 here (0*3 > 0*1 is false): the +1 is the point.
        let s = svc(SchedulerKind::Sed, &[1, 3]);
        let load = FakeLoad::new(2);
        let flags = [false; 2];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let mut sed = ShortestExpectedDelay;
        assert_eq!(sed.schedule(&ctx, &input(client(1), 1)), Some(1));
        // 1 has 2 active: 1*3 > 3*1 is false → tie stays with 0.
        load.set(1, 2, 0);
        assert_eq!(sed.schedule(&ctx, &input(client(1), 1)), Some(0));
        // Inactive connections are ignored.
        load.set(0, 0, 1_000);
        assert_eq!(sed.schedule(&ctx, &input(client(1), 1)), Some(0));
    }

    #[test]
    fn shares_follow_weight_as_connections_accumulate() {
        // Least (a+1)/w first is the D'Hondt rule: with integral quotas
        // (100_000 picks over weights summing to 10) it gives each server
        // exactly its quota.
        let s = svc(SchedulerKind::Sed, &[2, 0, 3, 5]);
        let load = FakeLoad::new(4);
        let flags = [false; 4];
        let mut counts = [0u32; 4];
        for i in 0..100_000u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            let p = ShortestExpectedDelay
                .schedule(&ctx, &input(client(i), 1))
                .unwrap();
            load.add_active(p as u32, 1);
            counts[p] += 1;
        }
        assert_eq!(counts, [20_000, 0, 30_000, 50_000]);
    }
}
