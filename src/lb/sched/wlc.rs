//! Weighted least connection (`ip_vs_wlc.c`), the default scheduler: the
//! server with the least overhead / weight, compared cross-multiplied
//! (`loh * dw > doh * lw`, no division). The first available server in
//! walking order is the initial candidate and a later one replaces it only
//! when strictly better, so ties go to the earlier server.

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Weighted least connection (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedLeastConn;

/// The wlc choice over a whole service; lblc and lblcr use it too.
/// The servers' overheads are read [`SCAN`] at a time through one
/// [`crate::lb::load::LoadView::overheads`] call (not a virtual call per
/// server); the choice is the kernel's, server by server.
pub(crate) fn weighted_least_conn(ctx: &SchedCtx<'_>) -> Option<usize> {
    let servers = &ctx.svc.servers;
    let first = (0..servers.len()).find(|&i| ctx.available(i))?;
    // The first available server is the initial candidate: with `loh`
    // at u64::MAX and `lw` 1 it wins its own comparison below (its weight
    // is > 0 and any overhead is < 2^41), which sets its real overhead and
    // weight; after it, a server replaces the candidate only when strictly
    // better, so ties go to the earlier one.
    let (mut least, mut loh, mut lw) = (first, u64::MAX, 1u32);
    let mut oh = [0u64; SCAN];
    let mut i = first;
    for chunk in servers.get(first..).unwrap_or(&[]).chunks(SCAN) {
        ctx.load.overheads(chunk, &mut oh);
        for (s, &doh) in chunk.iter().zip(&oh) {
            // Weight 0 never wins: loh * 0 > doh * lw is false.
            if !ctx.is_overloaded(i)
                && u128::from(loh) * u128::from(s.weight) > u128::from(doh) * u128::from(lw)
            {
                (least, loh, lw) = (i, doh, s.weight);
            }
            i += 1;
        }
    }
    Some(least)
}

/// Servers whose overheads one scan step reads at once.
const SCAN: usize = 32;

impl Scheduler for WeightedLeastConn {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wlc
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        weighted_least_conn(ctx)
    }

    fn servers_changed(&mut self, _old: &Service, _new: &Service) {}
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn compares_overhead_per_weight() {
        // Weights 1 2 3. Overheads 256 (1 active), 768 (3 active), 1024 (4).
        // 256/1 vs 768/2: 256*2 = 512 > 768*1? no. vs 1024/3: 256*3 = 768 >
        // 1024*1? no. Position 0 stays.
        let s = svc(SchedulerKind::Wlc, &[1, 2, 3]);
        let load = FakeLoad::new(3);
        load.set(0, 1, 0);
        load.set(1, 3, 0);
        load.set(2, 4, 0);
        let flags = [false; 3];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        let mut w = WeightedLeastConn;
        assert_eq!(w.schedule(&ctx, &input(client(1), 1)), Some(0));
        // Position 0 at 2 active (512): 512*2 = 1024 > 768*1 → 1 (768);
        // then 768*3 = 2304 > 1024*2 = 2048 → 2.
        load.set(0, 2, 0);
        assert_eq!(w.schedule(&ctx, &input(client(1), 1)), Some(2));
        // Inactive connections count 1/256 of an active one.
        load.set(2, 4, 100); // 1124: 768*3 = 2304 > 1124*2 = 2248 → still 2
        assert_eq!(w.schedule(&ctx, &input(client(1), 1)), Some(2));
        load.set(2, 4, 200); // 1224: 2304 > 2448? no → 1
        assert_eq!(w.schedule(&ctx, &input(client(1), 1)), Some(1));
    }

    #[test]
    fn first_available_is_the_initial_candidate() {
        // Position 0 quiescent (and idle), position 1 overloaded: the
        // candidate is 2; 3 ties with it (both idle) and loses.
        let s = svc(SchedulerKind::Wlc, &[0, 1, 1, 1]);
        let load = FakeLoad::new(4);
        let flags = [false, true, false, false];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        assert_eq!(
            WeightedLeastConn.schedule(&ctx, &input(client(1), 1)),
            Some(2)
        );
    }

    #[test]
    fn shares_follow_weight_as_connections_accumulate() {
        // Each pick adds an active connection. wlc always takes the least
        // active/weight, so whenever the picks are a multiple of the weight
        // sum (10) the counts are exactly proportional: 1:2:5:2.
        let s = svc(SchedulerKind::Wlc, &[1, 2, 5, 2]);
        let load = FakeLoad::new(4);
        let flags = [false; 4];
        let mut counts = [0u32; 4];
        for i in 0..100_000u32 {
            let ctx = SchedCtx {
                svc: &s,
                load: &load,
                overloaded: &flags,
            };
            let p = WeightedLeastConn
                .schedule(&ctx, &input(client(i), 1))
                .unwrap();
            load.add_active(p as u32, 1);
            counts[p] += 1;
        }
        assert_eq!(counts, [10_000, 20_000, 50_000, 20_000]);
    }

    /// The kernel's loop as written before the batched scan: position by
    /// position, one overhead read each.
    fn wlc_by_position(ctx: &SchedCtx<'_>) -> Option<usize> {
        let n = ctx.len();
        let first = (0..n).find(|&i| ctx.available(i))?;
        let (mut least, mut loh) = (first, ctx.overhead(first));
        for i in first + 1..n {
            if ctx.is_overloaded(i) {
                continue;
            }
            let doh = ctx.overhead(i);
            if u128::from(loh) * u128::from(ctx.weight(i))
                > u128::from(doh) * u128::from(ctx.weight(least))
            {
                least = i;
                loh = doh;
            }
        }
        Some(least)
    }

    #[test]
    fn batched_scan_chooses_as_the_per_server_loop_across_scan_steps() {
        // services of 1..=3 scan steps and a partial one, random weights
        // (some 0), overload flags and loads, including ties and servers
        // idle after the first step
        let mut x = 0x9e37_79b9u32;
        let mut next = move |m: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % m
        };
        for n in [1usize, 2, SCAN - 1, SCAN, SCAN + 1, 2 * SCAN + 5, 3 * SCAN] {
            for round in 0..200 {
                let weights: Vec<u32> = (0..n).map(|_| next(4)).collect();
                let s = svc(SchedulerKind::Wlc, &weights);
                let load = FakeLoad::new(n);
                for d in 0..n as u32 {
                    load.set(d, next(3), next(600));
                }
                let flags: Vec<bool> = (0..n).map(|_| round % 3 == 0 && next(4) == 0).collect();
                let ctx = SchedCtx {
                    svc: &s,
                    load: &load,
                    overloaded: &flags,
                };
                assert_eq!(
                    WeightedLeastConn.schedule(&ctx, &input(client(1), 1)),
                    wlc_by_position(&ctx),
                    "{n} servers, weights {weights:?}, flags {flags:?}"
                );
            }
        }
    }
}
