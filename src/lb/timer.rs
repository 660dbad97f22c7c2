//! Hashed timer wheel for connection expiry.
//!
//! Slots hold intrusive doubly-linked lists threaded through the items
//! themselves (a [`TimerLink`] of two `u32` slab indexes inside each item), so
//! arming allocates nothing and removal is O(1). A slot covers one tick of
//! [`TICK_MS`]; an item due at `t` ms is linked in the slot of tick
//! `ceil(t / TICK_MS)`, processed once `now >= tick * TICK_MS`. Timeouts longer
//! than one revolution simply stay in their slot for further rounds: each
//! visit compares the item's own expiry time with `now`.
//!
//! Refreshing an item is lazy: the owner only moves the item's expiry time
//! later. When its old slot comes up the item is found not yet due and is
//! re-linked at its new slot, so a connection seen on every packet costs one
//! re-link per timeout period, not one per packet.
//!
//! Time is injected: every call takes `now_ms`; nothing here reads a clock.
//! [`TimerWheel::pop_due`] is amortized O(1 + slots passed + items re-linked),
//! and a call far in the future walks each slot at most once.

/// Length of one tick, milliseconds.
pub const TICK_MS: u64 = 10;

/// End of a list.
const NIL: u32 = u32::MAX;
/// `prev` of an item that is in no list.
const UNLINKED: u32 = u32::MAX;
/// `prev` of the first item of the detached list being walked.
const HEAD_OF_WALK: u32 = u32::MAX - 1;
/// `prev` of the first item of a slot is `HEAD_OF_SLOT | slot`.
const HEAD_OF_SLOT: u32 = 0x8000_0000;

/// Largest item index the wheel accepts (ids above are used as list markers).
pub const MAX_ITEM: u32 = HEAD_OF_SLOT - 1;
/// Largest number of slots.
pub const MAX_SLOTS: usize = 1 << 20;

/// The wheel's links inside one item. Items start (and end) unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerLink {
    prev: u32,
    next: u32,
}

impl TimerLink {
    /// Not in any list.
    pub const UNLINKED: TimerLink = TimerLink {
        prev: UNLINKED,
        next: NIL,
    };

    /// Whether the item is armed (in a slot or in the list being walked).
    pub fn is_linked(&self) -> bool {
        self.prev != UNLINKED
    }

    /// The `next` field, free for the owner's use while the item is unlinked
    /// (connection slabs keep their free list there).
    pub fn spare(&self) -> u32 {
        self.next
    }

    /// An unlinked link carrying `v` in its spare field.
    pub fn unlinked_with_spare(v: u32) -> TimerLink {
        TimerLink {
            prev: UNLINKED,
            next: v,
        }
    }
}

impl Default for TimerLink {
    fn default() -> Self {
        TimerLink::UNLINKED
    }
}

/// Storage of the items the wheel links: usually a slab of connections.
pub trait TimerNodes {
    /// Link of item `id`.
    fn timer_link(&self, id: u32) -> TimerLink;
    /// Set the link of item `id`.
    fn set_timer_link(&mut self, id: u32, link: TimerLink);
    /// Absolute time at which item `id` is due, milliseconds.
    fn expires_ms(&self, id: u32) -> u64;
}

/// Tick whose slot holds an item due at `ms`.
fn due_tick(ms: u64) -> u64 {
    ms.div_ceil(TICK_MS)
}

/// A hashed timer wheel over items stored elsewhere (see [`TimerNodes`]).
#[derive(Debug)]
pub struct TimerWheel {
    heads: Box<[u32]>,
    mask: u64,
    /// Next tick whose slot has not been detached yet.
    next_tick: u64,
    /// Detached slot list being examined by `pop_due`.
    walking: u32,
    /// Items linked (in slots or in the walk list).
    armed: usize,
}

impl TimerWheel {
    /// A wheel of `slots` slots (rounded up to a power of two, at least 16,
    /// at most [`MAX_SLOTS`]), starting at time `now_ms`.
    pub fn new(slots: usize, now_ms: u64) -> Self {
        let n = slots.clamp(16, MAX_SLOTS).next_power_of_two();
        TimerWheel {
            heads: vec![NIL; n].into_boxed_slice(),
            mask: n as u64 - 1,
            next_tick: now_ms / TICK_MS,
            walking: NIL,
            armed: 0,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.heads.len()
    }

    /// Items currently armed.
    pub fn armed(&self) -> usize {
        self.armed
    }

    /// Bytes of memory the wheel itself uses (the links live in the items).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.heads)
    }

    fn slot_of(&self, tick: u64) -> usize {
        (tick & self.mask) as usize
    }

    /// Link `id` at the front of the slot for `tick` (not before `next_tick`).
    fn link_at<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, tick: u64) {
        let s = self.slot_of(tick.max(self.next_tick));
        let old = self.heads[s];
        nodes.set_timer_link(
            id,
            TimerLink {
                prev: HEAD_OF_SLOT | s as u32,
                next: old,
            },
        );
        if old != NIL {
            let mut l = nodes.timer_link(old);
            l.prev = id;
            nodes.set_timer_link(old, l);
        }
        self.heads[s] = id;
    }

    /// Arm item `id` for its current `expires_ms`. An item already armed is
    /// moved. Ids above [`MAX_ITEM`] are ignored (returns false).
    pub fn arm<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32) -> bool {
        if id > MAX_ITEM {
            return false;
        }
        self.unlink(nodes, id);
        let t = due_tick(nodes.expires_ms(id));
        self.link_at(nodes, id, t);
        self.armed += 1;
        true
    }

    /// Disarm item `id` (no-op if it is not armed).
    pub fn unlink<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32) {
        let l = nodes.timer_link(id);
        if !l.is_linked() {
            return;
        }
        if l.next != NIL {
            let mut n = nodes.timer_link(l.next);
            n.prev = l.prev;
            nodes.set_timer_link(l.next, n);
        }
        match l.prev {
            HEAD_OF_WALK => self.walking = l.next,
            p if p & HEAD_OF_SLOT != 0 => {
                if let Some(h) = self.heads.get_mut((p & !HEAD_OF_SLOT) as usize) {
                    *h = l.next;
                }
            }
            p => {
                let mut pl = nodes.timer_link(p);
                pl.next = l.next;
                nodes.set_timer_link(p, pl);
            }
        }
        nodes.set_timer_link(id, TimerLink::UNLINKED);
        self.armed = self.armed.saturating_sub(1);
    }

    /// Next item due at `now_ms` (its expiry time `<= now_ms`), unlinked from
    /// the wheel, or `None` when nothing more is due. Items found early are
    /// re-linked at the slot of their current expiry time on the way.
    ///
    /// Never returns an item before it is due, and returns every item by the
    /// end of the tick that contains its expiry time, provided it is called
    /// with that time. `now_ms` should not go backwards.
    pub fn pop_due<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, now_ms: u64) -> Option<u32> {
        let now_tick = now_ms / TICK_MS;
        loop {
            while self.walking != NIL {
                let id = self.walking;
                let l = nodes.timer_link(id);
                self.walking = l.next;
                if l.next != NIL {
                    let mut n = nodes.timer_link(l.next);
                    n.prev = HEAD_OF_WALK;
                    nodes.set_timer_link(l.next, n);
                }
                nodes.set_timer_link(id, TimerLink::UNLINKED);
                let exp = nodes.expires_ms(id);
                if exp <= now_ms {
                    self.armed = self.armed.saturating_sub(1);
                    return Some(id);
                }
                // Refreshed since it was armed, or due in a later round.
                self.link_at(nodes, id, due_tick(exp));
            }
            if self.next_tick > now_tick {
                return None;
            }
            if self.armed == 0 {
                self.next_tick = now_tick + 1;
                return None;
            }
            // More than a revolution behind: one pass over every slot suffices,
            // since each visit compares expiry times with `now_ms`.
            let n = self.mask + 1;
            if now_tick - self.next_tick >= n {
                self.next_tick = now_tick + 1 - n;
            }
            let s = self.slot_of(self.next_tick);
            self.next_tick += 1;
            let head = std::mem::replace(&mut self.heads[s], NIL);
            if head != NIL {
                let mut l = nodes.timer_link(head);
                l.prev = HEAD_OF_WALK;
                nodes.set_timer_link(head, l);
                self.walking = head;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items with an expiry time, for testing the wheel alone.
    struct Items(Vec<(TimerLink, u64)>);

    impl TimerNodes for Items {
        fn timer_link(&self, id: u32) -> TimerLink {
            self.0[id as usize].0
        }
        fn set_timer_link(&mut self, id: u32, link: TimerLink) {
            self.0[id as usize].0 = link;
        }
        fn expires_ms(&self, id: u32) -> u64 {
            self.0[id as usize].1
        }
    }

    fn drain(w: &mut TimerWheel, items: &mut Items, now: u64) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some(id) = w.pop_due(items, now) {
            v.push(id);
        }
        v.sort();
        v
    }

    #[test]
    fn nothing_early_everything_within_a_tick() {
        let mut items = Items(vec![(TimerLink::UNLINKED, 0); 4]);
        let mut w = TimerWheel::new(64, 0);
        for (i, due) in [5u64, 10, 11, 1000].into_iter().enumerate() {
            items.0[i].1 = due;
            assert!(w.arm(&mut items, i as u32));
        }
        assert_eq!(w.armed(), 4);
        assert_eq!(drain(&mut w, &mut items, 4), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut items, 9), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut items, 10), vec![0, 1]);
        assert_eq!(drain(&mut w, &mut items, 19), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut items, 20), vec![2]);
        assert_eq!(drain(&mut w, &mut items, 999), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut items, 1000), vec![3]);
        assert_eq!(w.armed(), 0);
        assert!(items.0.iter().all(|(l, _)| !l.is_linked()));
    }

    #[test]
    fn lazy_refresh_and_long_rounds() {
        // 16 slots of 10 ms: one revolution is 160 ms.
        let mut items = Items(vec![(TimerLink::UNLINKED, 0); 3]);
        let mut w = TimerWheel::new(16, 0);
        items.0[0].1 = 50;
        items.0[1].1 = 100_000; // many revolutions
        items.0[2].1 = 70;
        for i in 0..3 {
            w.arm(&mut items, i);
        }
        // Refresh item 0 without touching the wheel.
        items.0[0].1 = 400;
        let mut now = 0;
        let mut seen = Vec::new();
        while now <= 100_010 {
            while let Some(id) = w.pop_due(&mut items, now) {
                assert!(items.0[id as usize].1 <= now, "early");
                assert!(now < items.0[id as usize].1 + TICK_MS, "late");
                seen.push((id, now));
            }
            now += 1;
        }
        assert_eq!(seen, vec![(2, 70), (0, 400), (1, 100_000)]);
    }

    #[test]
    fn unlink_anywhere_including_during_walk() {
        let mut items = Items(vec![(TimerLink::UNLINKED, 10); 5]);
        let mut w = TimerWheel::new(16, 0);
        for i in 0..5 {
            w.arm(&mut items, i);
        }
        w.unlink(&mut items, 2); // middle of the slot list
        w.unlink(&mut items, 4); // head of the slot list
        w.unlink(&mut items, 4); // twice is harmless
        assert_eq!(w.armed(), 3);
        let first = w.pop_due(&mut items, 10).unwrap();
        // The remaining items are in the walk list now; remove one of them.
        let other = [0, 1, 3].into_iter().find(|&i| i != first).unwrap();
        w.unlink(&mut items, other);
        let rest = drain(&mut w, &mut items, 10);
        let mut all = rest.clone();
        all.push(first);
        all.push(other);
        all.sort();
        assert_eq!(all, vec![0, 1, 3]);
        assert_eq!(rest.len(), 1);
        assert_eq!(w.armed(), 0);
    }

    #[test]
    fn big_jump_walks_each_slot_once() {
        let n = 200u32;
        let mut items = Items(vec![(TimerLink::UNLINKED, 0); n as usize]);
        let mut w = TimerWheel::new(16, 0);
        for i in 0..n {
            items.0[i as usize].1 = 1 + u64::from(i) * 37;
            w.arm(&mut items, i);
        }
        // Jump a day ahead in one call: everything is due, found in one pass.
        let got = drain(&mut w, &mut items, 86_400_000);
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        // Re-arm after the jump: due times before the cursor fire at the next tick.
        items.0[0].1 = 86_400_005;
        w.arm(&mut items, 0);
        assert_eq!(drain(&mut w, &mut items, 86_400_009), Vec::<u32>::new());
        assert_eq!(drain(&mut w, &mut items, 86_400_010), vec![0]);
    }

    #[test]
    fn rejects_marker_ids() {
        let mut items = Items(vec![]);
        let mut w = TimerWheel::new(16, 0);
        struct Huge;
        impl TimerNodes for Huge {
            fn timer_link(&self, _: u32) -> TimerLink {
                TimerLink::UNLINKED
            }
            fn set_timer_link(&mut self, _: u32, _: TimerLink) {}
            fn expires_ms(&self, _: u32) -> u64 {
                0
            }
        }
        assert!(!w.arm(&mut Huge, MAX_ITEM + 1));
        assert_eq!(w.pop_due(&mut items, 1000), None);
    }
}
