//! Round robin (`ip_vs_rr.c`).
//!
//! The kernel keeps a cursor into the service's server list, starting at
//! the list head. Each decision walks from the entry after the cursor to the
//! end, wraps to the first entry and stops after the cursor entry itself;
//! the first server with weight > 0 and no overload flag wins and becomes
//! the cursor. Deleting the cursor's server moves the cursor to the entry
//! before it (`ip_vs_rr_del_dest`).

use super::{SchedCtx, SchedInput, Scheduler};
use crate::lb::service::Service;
use crate::lb::types::SchedulerKind;

/// Round-robin state: the cursor (`None` = list head).
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    cursor: Option<usize>,
}

impl RoundRobin {
    /// Cursor at the list head.
    pub fn new() -> Self {
        RoundRobin { cursor: None }
    }
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, _input: &SchedInput) -> Option<usize> {
        let n = ctx.len();
        let start = match self.cursor {
            Some(c) if c < n => c + 1,
            _ => 0,
        };
        // From the head only one pass is made; from an entry, the pass wraps
        // and ends with the cursor entry.
        let pick = (start..n).chain(0..start).find(|&i| ctx.available(i))?;
        self.cursor = Some(pick);
        Some(pick)
    }

    fn servers_changed(&mut self, old: &Service, new: &Service) {
        // Follow the cursor's server; if it is gone, step back to the
        // nearest earlier server still present, else to the head.
        let Some(c) = self.cursor else { return };
        let map = super::remap_positions(old, new);
        self.cursor = (0..=c.min(map.len().saturating_sub(1)))
            .rev()
            .find_map(|i| map.get(i).copied().flatten())
            .map(|p| p as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::lb::load::DestId;

    fn run(s: &mut RoundRobin, svc: &Service, flags: &[bool], n: usize) -> Vec<usize> {
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
    fn walks_in_list_order_from_the_head() {
        // Servers added A, B, C sit in the list as C B A (positions 0 1 2):
        // the kernel starts at the head, so C is first.
        let svc = svc(SchedulerKind::Rr, &[1, 1, 1]);
        let mut s = RoundRobin::new();
        assert_eq!(run(&mut s, &svc, &[false; 3], 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skips_quiescent_and_overloaded() {
        // Position 1 has weight 0, position 2 is overloaded.
        let svc = svc(SchedulerKind::Rr, &[1, 0, 4, 1]);
        let mut s = RoundRobin::new();
        assert_eq!(
            run(&mut s, &svc, &[false, false, true, false], 6),
            vec![0, 3, 0, 3, 0, 3]
        );
        // Nothing available: no pick, cursor unchanged.
        let mut s = RoundRobin::new();
        assert!(run(&mut s, &svc, &[true, false, true, true], 3).is_empty());
        assert_eq!(s.cursor, None);
    }

    #[test]
    fn cursor_entry_is_tried_last() {
        // Cursor on position 1 with only position 1 available: the walk
        // 2, 0, 1 still finds it.
        let svc = svc(SchedulerKind::Rr, &[1, 1, 1]);
        let mut s = RoundRobin { cursor: Some(1) };
        assert_eq!(run(&mut s, &svc, &[true, false, true], 2), vec![1, 1]);
    }

    #[test]
    fn equal_shares() {
        let svc = svc(SchedulerKind::Rr, &[1, 5, 1, 9]);
        let c = shares(&mut RoundRobin::new(), &svc, 100_000);
        assert_eq!(c, vec![25_000; 4]);
    }

    fn without(svc: &Service, id: DestId) -> Service {
        let mut n = svc.clone();
        n.servers.retain(|s| s.id != id);
        n
    }

    #[test]
    fn deleting_the_cursor_server_steps_back() {
        // List C B A (ids 0 1 2). Two picks: C, B; cursor on B. Delete B:
        // the kernel moves the cursor to C, so the next pick is A.
        let old = svc(SchedulerKind::Rr, &[1, 1, 1]);
        let mut s = RoundRobin::new();
        assert_eq!(run(&mut s, &old, &[false; 3], 2), vec![0, 1]);
        let new = without(&old, 1);
        s.servers_changed(&old, &new);
        let got = run(&mut s, &new, &[false; 2], 3);
        let ids: Vec<DestId> = got.iter().map(|&p| new.servers[p].id).collect();
        assert_eq!(ids, vec![2, 0, 2]);

        // Cursor on the first entry, which is deleted: back to the head.
        let mut s = RoundRobin::new();
        assert_eq!(run(&mut s, &old, &[false; 3], 1), vec![0]);
        let new = without(&old, 0);
        s.servers_changed(&old, &new);
        let got = run(&mut s, &new, &[false; 2], 1);
        assert_eq!(new.servers[got[0]].id, 1);
    }

    #[test]
    fn adding_a_server_keeps_the_cursor() {
        // List C B A, cursor on B after two picks. Adding D puts it at the
        // head (D C B A): the walk continues with A, then D, C, B.
        let old = svc(SchedulerKind::Rr, &[1, 1, 1]);
        let mut s = RoundRobin::new();
        run(&mut s, &old, &[false; 3], 2);
        let mut new = old.clone();
        let mut d = old.servers[0];
        d.id = 9;
        new.servers.insert(0, d);
        s.servers_changed(&old, &new);
        let got = run(&mut s, &new, &[false; 4], 4);
        let ids: Vec<DestId> = got.iter().map(|&p| new.servers[p].id).collect();
        assert_eq!(ids, vec![2, 9, 0, 1]);
    }
}
