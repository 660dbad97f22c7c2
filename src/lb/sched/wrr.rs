//! Weighted round robin (`ip_vs_wrr.c`).
//!
//! State: a cursor (`cl`, list head at first), the current weight `cw`, the
//! step `di` = gcd of the positive weights, and `mw` = max weight − (di − 1)
//! so that the last pass is at `cw` = 1. A decision continues the walk after
//! the cursor and takes the first server not overloaded whose weight ≥ `cw`;
//! at the end of the list `cw` drops by `di` (back to `mw` below 1) and the
//! walk restarts at the head. Over a cycle of mw/di passes each server is
//! picked weight/di times. Any server change resets the cursor to the head
//! and adjusts `cw` (`ip_vs_wrr_dest_changed`).

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Weighted round-robin state (the kernel's `ip_vs_wrr_mark`).
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    /// Cursor; `None` = list head.
    cl: Option<usize>,
    cw: i64,
    mw: i64,
    di: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// gcd of the positive weights, 1 if none.
fn gcd_weight(svc: &Service) -> i64 {
    let g = svc
        .servers
        .iter()
        .map(|s| i64::from(s.weight))
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
    if g > 0 {
        g
    } else {
        1
    }
}

fn max_weight(svc: &Service) -> i64 {
    svc.servers
        .iter()
        .map(|s| i64::from(s.weight))
        .max()
        .unwrap_or(0)
}

impl WeightedRoundRobin {
    /// State for a service (`ip_vs_wrr_init_svc`).
    pub fn new(svc: &Service) -> Self {
        let di = gcd_weight(svc);
        let mw = max_weight(svc) - (di - 1);
        WeightedRoundRobin {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let n = ctx.len();
        if self.mw <= 0 {
            return None;
        }
        let last = self.cl.filter(|&c| c < n);
        let mut pos = last;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        // The kernel's loop ends after at most two cycles of cw; the bound
        // only guards against a state this code never produces.
        let max_passes = 2 * (self.mw / self.di.max(1)) + 4;
        for _ in 0..max_passes {
            let start = pos.map_or(0, |p| p + 1);
            for j in start..n {
                if !ctx.is_overloaded(j) && i64::from(ctx.weight(j)) >= self.cw {
                    self.cl = Some(j);
                    return Some(j);
                }
                if stop == Some(j) {
                    self.cl = Some(j);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Stop once every server was tried at weight ≥ 1.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first walk at weight ≥ 1 covered only the servers
                // after `last`; finish with those up to it.
                stop = last;
            }
        }
        self.cl = None;
        None
    }

    fn servers_changed(&mut self, _old: &Service, new: &Service) {
        self.cl = None;
        self.di = gcd_weight(new);
        self.mw = max_weight(new) - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn run(s: &mut WeightedRoundRobin, svc: &Service, flags: &[bool], n: usize) -> Vec<usize> {
        let load = FakeLoad::new(svc.servers.len());
        let ctx = SchedCtx {
            svc,
            load: &load,
            overloaded: flags,
        };
        (0..n)
            .filter_map(|i| s.schedule(&ctx, &input(client(i as u32), 1)))
            .collect()
    }

    #[test]
    fn kernel_sequence_4_3_2() {
        // Weights 4 3 2 in walking order: di = 1, mw = 4.
        // cw=4: A | cw=3: A B | cw=2: A B C | cw=1: A B C | cw=4 again: A ...
        let svc = svc(SchedulerKind::Wrr, &[4, 3, 2]);
        let mut s = WeightedRoundRobin::new(&svc);
        assert_eq!(
            run(&mut s, &svc, &[false; 3], 11),
            vec![0, 0, 1, 0, 1, 2, 0, 1, 2, 0, 0]
        );
    }

    #[test]
    fn gcd_step() {
        // Weights 4 2: di = 2, mw = 4 - 1 = 3. cw=3: A | cw=1: A B | cw=3: A.
        let svc = svc(SchedulerKind::Wrr, &[4, 2]);
        let mut s = WeightedRoundRobin::new(&svc);
        assert_eq!((s.di, s.mw), (2, 3));
        assert_eq!(run(&mut s, &svc, &[false; 2], 5), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn exact_shares_over_whole_cycles() {
        // Cycle of 5+3+1+1 = 10 picks (gcd 1, quiescent server excluded).
        let svc = svc(SchedulerKind::Wrr, &[1, 5, 0, 3, 1]);
        let mut s = WeightedRoundRobin::new(&svc);
        let c = shares(&mut s, &svc, 100_000);
        assert_eq!(c, vec![10_000, 50_000, 0, 30_000, 10_000]);
    }

    #[test]
    fn skips_overloaded_and_fails_when_all_are() {
        let svc = svc(SchedulerKind::Wrr, &[2, 1]);
        let mut s = WeightedRoundRobin::new(&svc);
        assert_eq!(run(&mut s, &svc, &[true, false], 4), vec![1, 1, 1, 1]);
        let mut s = WeightedRoundRobin::new(&svc);
        assert!(run(&mut s, &svc, &[true, true], 3).is_empty());
        // All weights zero: mw = 0, nothing available.
        let z = super::super::testutil::svc(SchedulerKind::Wrr, &[0, 0]);
        let mut s = WeightedRoundRobin::new(&z);
        assert_eq!(s.mw, 0);
        assert!(run(&mut s, &z, &[false; 2], 2).is_empty());
    }

    #[test]
    fn only_server_below_gcd_is_still_found() {
        // A weight lowered below di after the state was built (the race the
        // kernel comment describes): mw keeps di - 1 slack so cw reaches 1.
        let built = svc(SchedulerKind::Wrr, &[4, 2]);
        let mut s = WeightedRoundRobin::new(&built);
        let mut now = built.clone();
        now.servers[0].weight = 0;
        now.servers[1].weight = 1;
        assert_eq!(run(&mut s, &now, &[false; 2], 3), vec![1, 1, 1]);
    }

    #[test]
    fn change_resets_cursor_and_adjusts_cw() {
        let old = svc(SchedulerKind::Wrr, &[4, 3, 2]);
        let mut s = WeightedRoundRobin::new(&old);
        run(&mut s, &old, &[false; 3], 4); // cw now 2, cursor on A
        assert_eq!((s.cw, s.cl), (2, Some(0)));
        let mut new = old.clone();
        new.servers[0].weight = 6; // weights 6 3 2: di 1, mw 6
        s.servers_changed(&old, &new);
        assert_eq!((s.cl, s.cw, s.mw, s.di), (None, 2, 6, 1));
        // From the head at cw 2: A B C.
        assert_eq!(run(&mut s, &new, &[false; 3], 3), vec![0, 1, 2]);
        // To weights 6 4 2 (di 2, mw 5) with cw 1: (1 / 2) * 2 + 1 = 1.
        let mut new2 = new.clone();
        new2.servers[1].weight = 4;
        s.cw = 1;
        s.servers_changed(&new, &new2);
        assert_eq!((s.cw, s.mw, s.di), (1, 5, 2));
    }
}
