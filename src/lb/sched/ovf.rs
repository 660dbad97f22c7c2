//! Weighted overflow (`ip_vs_ovf.c`): the available server with the highest
//! weight among those whose active connections do not exceed their weight
//! (`activeconns > weight` overflows to the next); the first in walking
//! order among equals.

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Weighted overflow (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overflow;

impl Scheduler for Overflow {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ovf
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for i in 0..ctx.len() {
            let w = ctx.weight(i);
            if ctx.is_overloaded(i) || w == 0 || ctx.active(i) > w {
                continue;
            }
            if best.is_none_or(|(_, hw)| w > hw) {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn overflows_once_active_exceeds_weight() {
        // Weights 3 (pos 0) and 2 (pos 1). Each pick adds an active
        // connection. Position 0 takes picks while its active count is at
        // most 3, i.e. 4 picks (0,1,2,3 active before each); then 1 takes 3
        // (0,1,2); then nothing is left.
        let s = svc(SchedulerKind::Ovf, &[3, 2, 0]);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let mut picks = Vec::new();
        for i in 0..9u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            match Overflow.schedule(&ctx, &input(client(i), 1)) {
                Some(p) => {
                    load.add_active(p as u32, 1);
                    picks.push(Some(p));
                }
                None => picks.push(None),
            }
        }
        assert_eq!(
            picks,
            vec![
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(1),
                None,
                None
            ]
        );
    }

    #[test]
    fn inactive_does_not_count_and_overloaded_is_skipped() {
        let s = svc(SchedulerKind::Ovf, &[1, 4, 4]);
        let load = FakeLoad::new(3);
        load.set(1, 0, 1_000);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 3],
        };
        assert_eq!(Overflow.schedule(&ctx, &input(client(1), 1)), Some(1));
        let ctx = SchedCtx {
            overloaded: &[false, true, false],
            ..ctx
        };
        assert_eq!(Overflow.schedule(&ctx, &input(client(1), 1)), Some(2));
    }
}
