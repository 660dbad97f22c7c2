//! Weighted fail-over (`ip_vs_fo.c`): the available server with the highest
//! weight; the first in walking order among equals.

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Weighted fail-over (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOver;

impl Scheduler for FailOver {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Fo
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut hw = 0u32;
        for i in 0..ctx.len() {
            // Strictly greater than the best so far (which starts at 0, so
            // weight 0 never qualifies).
            if !ctx.is_overloaded(i) && ctx.weight(i) > hw {
                best = Some(i);
                hw = ctx.weight(i);
            }
        }
        best
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn highest_weight_then_next_on_failure() {
        // Weights 2 5 5 1: the first 5 (position 1) takes everything, load
        // is ignored.
        let s = svc(SchedulerKind::Fo, &[2, 5, 5, 1]);
        let load = FakeLoad::new(4);
        load.set(1, 10_000, 0);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 4],
        };
        let c = shares(&mut FailOver, &s, 1_000);
        assert_eq!(c, vec![0, 1_000, 0, 0]);
        assert_eq!(FailOver.schedule(&ctx, &input(client(1), 1)), Some(1));
        // Position 1 overloaded: the other 5.
        let ctx = SchedCtx {
            overloaded: &[false, true, false, false],
            ..ctx
        };
        assert_eq!(FailOver.schedule(&ctx, &input(client(1), 1)), Some(2));
        // Both 5s out: weight 2.
        let ctx = SchedCtx {
            overloaded: &[false, true, true, false],
            ..ctx
        };
        assert_eq!(FailOver.schedule(&ctx, &input(client(1), 1)), Some(0));
    }
}
