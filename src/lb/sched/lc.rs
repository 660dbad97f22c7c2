//! Least connection (`ip_vs_lc.c`): the available server with the smallest
//! overhead (active × 256 + inactive); the first in walking order on ties.

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Least connection (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastConn;

impl Scheduler for LeastConn {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lc
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for i in 0..ctx.len() {
            if !ctx.available(i) {
                continue;
            }
            let doh = ctx.overhead(i);
            if least.is_none_or(|(_, loh)| doh < loh) {
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
    fn picks_least_overhead_first_on_ties() {
        // Overheads: 0: 1*256+0 = 256, 1: 0*256+300 = 300, 2: 256, 3: 0 but
        // quiescent. 0 and 2 tie at 256: the first in walking order wins.
        let s = svc(SchedulerKind::Lc, &[1, 1, 1, 0]);
        let load = FakeLoad::new(4);
        load.set(0, 1, 0);
        load.set(1, 0, 300);
        load.set(2, 1, 0);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 4],
        };
        let mut lc = LeastConn;
        assert_eq!(lc.schedule(&ctx, &input(client(1), 1)), Some(0));
        // Weight does not matter to lc: 255 inactive beat 1 active.
        load.set(1, 0, 255);
        assert_eq!(lc.schedule(&ctx, &input(client(1), 1)), Some(1));
        // Overloaded servers are skipped.
        let ctx = SchedCtx {
            overloaded: &[false, true, false, false],
            ..ctx
        };
        assert_eq!(lc.schedule(&ctx, &input(client(1), 1)), Some(0));
    }

    #[test]
    fn balances_as_connections_accumulate() {
        // Every pick opens an active connection: the picks go round the
        // list in walking order, whatever the weights.
        let s = svc(SchedulerKind::Lc, &[1, 7, 3]);
        let load = FakeLoad::new(3);
        let flags = [false; 3];
        let mut lc = LeastConn;
        let mut picks = Vec::new();
        let mut counts = [0u32; 3];
        for i in 0..99_999u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            let p = lc.schedule(&ctx, &input(client(i), 1)).unwrap();
            load.add_active(p as u32, 1);
            counts[p] += 1;
            if i < 6 {
                picks.push(p);
            }
        }
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(counts, [33_333; 3]);
    }
}
