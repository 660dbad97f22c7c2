//! Open-addressing index from a 32-bit key hash to a slab slot.
//!
//! One power-of-two array of 8-byte slots: the key's 32-bit hash in the high
//! half, the slot value (slab index plus a direction bit) in the low half.
//! Linear probing, backward-shift deletion (no tombstones, so lookups stay
//! short under churn). The owner keeps the load at or below about 0.57, so
//! an empty slot always ends a probe. The home bucket is `hash & mask`; the
//! full hash stored in each slot filters out most non-matching neighbours
//! before the slab entry is read, and lets a batched lookup pick its
//! candidate out of the home slot's whole cache line, and the next one for a
//! home slot at a line's end ([`Index::home_candidate`]).

/// An unused slot.
const EMPTY: u64 = u64::MAX;

/// A home slot with this many slots or fewer left in its line (itself
/// included) has the next line loaded with it ([`Index::prefetch_home`]):
/// there a displacement of one or two slots, common at a load of 0.5, puts
/// a key in the next line, and its lookup would otherwise wait for that line
/// and then for its entry, one after the other.
const TAIL_SLOTS: usize = 2;

/// Slots a probe from home slot `s` finds in the lines
/// [`Index::prefetch_home`] loaded, `s` included: to the end of the line
/// holding slot `s + TAIL_SLOTS` (the second line it loads), which is `s`'s
/// own line unless `s` is among that line's last [`TAIL_SLOTS`] (the array
/// need not start on a line boundary). One bound for both cases, no branch:
/// as cheap as the end of `s`'s line alone.
#[inline(always)]
fn slots_to_scan(s: *const u64) -> usize {
    const SLOT: usize = std::mem::size_of::<u64>();
    let second = (s as usize).wrapping_add(TAIL_SLOTS * SLOT);
    (64 + TAIL_SLOTS * SLOT - (second & 63)) / SLOT
}

#[derive(Debug)]
pub(crate) struct Index {
    slots: Box<[u64]>,
    mask: usize,
}

#[inline]
fn pack(hash: u32, val: u32) -> u64 {
    (u64::from(hash) << 32) | u64::from(val)
}

impl Index {
    /// An index of `buckets` slots (a power of two, at least 2).
    pub(crate) fn new(buckets: usize) -> Self {
        let n = buckets.max(2).next_power_of_two();
        Index {
            slots: super::huge_filled(n, EMPTY),
            mask: n - 1,
        }
    }

    pub(crate) fn buckets(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// Start loading the home bucket of `hash` into the cache (a hint:
    /// batched lookups issue every bucket's load before reading any).
    /// A home slot among the last [`TAIL_SLOTS`] of its line has the next
    /// line loaded too.
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u32) {
        let home = self.slots.as_ptr().wrapping_add(self.home(hash));
        super::prefetch_addr(home.cast());
        // the same line unless `home` is among its last TAIL_SLOTS, then the
        // next one (past the array's end for its last slots: a prefetch of
        // any address is harmless, see `prefetch_addr`)
        super::prefetch_addr(home.wrapping_add(TAIL_SLOTS).cast());
    }

    /// The first value stored under `hash` in the cache line of its home
    /// slot (the line [`Index::prefetch_home`] loaded, with the next one
    /// when the home slot is one of the line's last [`TAIL_SLOTS`]): from
    /// the home slot on, up to an empty slot or the end of those. Lets batched
    /// lookups start loading the entry of a key that linear probing pushed
    /// past its home slot too (a third of the keys at a load of 0.5)
    /// without touching a second index line; [`Index::find`] remains the
    /// authority (a hash match is only a candidate, and a probe may run on
    /// into the next line).
    #[inline]
    pub(crate) fn home_candidate(&self, hash: u32) -> Option<u32> {
        let line = self.slots.get(self.home(hash)..)?;
        // (one bound for the loop, not a count and the slice's end)
        let n = slots_to_scan(line.as_ptr()).min(line.len());
        for &s in line.get(..n)? {
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == hash {
                return Some(s as u32);
            }
        }
        None
    }

    /// First value stored under `hash` for which `is_match` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u32, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(hash);
        for _ in 0..self.slots.len() {
            let s = *self.slots.get(i)?;
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == hash && is_match(s as u32) {
                return Some(s as u32);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Store `val` under `hash`. False only if the array is full, which the
    /// owner's sizing rules out.
    pub(crate) fn insert(&mut self, hash: u32, val: u32) -> bool {
        let mut i = self.home(hash);
        for _ in 0..self.slots.len() {
            if let Some(s) = self.slots.get_mut(i) {
                if *s == EMPTY {
                    *s = pack(hash, val);
                    return true;
                }
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Remove the slot holding exactly (`hash`, `val`); false if absent.
    pub(crate) fn remove(&mut self, hash: u32, val: u32) -> bool {
        let want = pack(hash, val);
        let mut i = self.home(hash);
        let mut found = None;
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(&s) if s == want => {
                    found = Some(i);
                    break;
                }
                Some(&EMPTY) | None => return false,
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        let Some(mut hole) = found else {
            return false;
        };
        // Backward shift: pull later members of the cluster into the hole
        // unless their home lies cyclically in (hole, j].
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = match self.slots.get(j) {
                Some(&s) if s != EMPTY => s,
                _ => break,
            };
            let k = self.home((s >> 32) as u32);
            let stays = if hole <= j {
                hole < k && k <= j
            } else {
                hole < k || k <= j
            };
            if !stays {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = EMPTY;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn insert_find_remove_with_collisions_and_wraparound() {
        let mut ix = Index::new(16);
        // Same home bucket 15 for all: the cluster wraps around to 0, 1, ...
        let hashes = [15u32, 31, 47, 15 | 0x100, 14];
        for (v, &h) in hashes.iter().enumerate() {
            assert!(ix.insert(h, v as u32));
        }
        for (v, &h) in hashes.iter().enumerate() {
            assert_eq!(ix.find(h, |x| x == v as u32), Some(v as u32));
        }
        assert!(ix.remove(31, 1));
        assert!(!ix.remove(31, 1));
        for (v, &h) in hashes.iter().enumerate() {
            let want = if v == 1 { None } else { Some(v as u32) };
            assert_eq!(ix.find(h, |x| x == v as u32), want);
        }
    }

    #[test]
    fn home_candidate_finds_keys_pushed_past_their_home_slot_in_its_line() {
        let mut ix = Index::new(64);
        let base = ix.slots.as_ptr() as usize;
        // a home slot with at least two more slots after it in its line
        let home = (0..64u32)
            .find(|&h| (base + 8 * h as usize) % 64 <= 40)
            .expect("some slot starts a line's first five");
        let other = home | 0x100; // same home slot, other hash
        assert!(ix.insert(home, 1));
        assert!(ix.insert(other, 2));
        assert_eq!(ix.home_candidate(home), Some(1));
        assert_eq!(ix.home_candidate(other), Some(2), "pushed one slot on");
        assert_eq!(ix.home_candidate(home | 0x200), None, "absent");
        assert!(ix.remove(home, 1));
        assert_eq!(ix.home_candidate(other), Some(2), "shifted back home");
    }

    #[test]
    fn home_candidate_reads_the_next_line_for_a_home_slot_at_a_line_end() {
        let mut ix = Index::new(64);
        let base = ix.slots.as_ptr() as usize;
        // the last slot of a line that is not the array's last
        let home = (0..56u32)
            .find(|&h| (base + 8 * h as usize) % 64 == 56)
            .expect("some slot ends a line");
        let hashes = [home, home | 0x100, home | 0x200];
        for (v, &h) in hashes.iter().enumerate() {
            assert!(ix.insert(h, v as u32));
        }
        // the second and third were pushed into the next line
        assert_eq!(ix.home_candidate(hashes[1]), Some(1));
        assert_eq!(ix.home_candidate(hashes[2]), Some(2));
        assert_eq!(ix.home_candidate(home | 0x300), None, "absent");
        // a home slot in the middle of a line looks no further than its line
        let mid = (0..56u32)
            .find(|&h| (base + 8 * h as usize).is_multiple_of(64) && (h > home + 3 || h + 9 < home))
            .expect("some slot starts a line");
        let run: Vec<u32> = (0..9u32).map(|k| mid | (k << 8)).collect();
        for (v, &h) in run.iter().enumerate() {
            assert!(ix.insert(h, 10 + v as u32));
        }
        assert_eq!(ix.home_candidate(run[7]), Some(17), "the line's last slot");
        assert_eq!(ix.home_candidate(run[8]), None, "in the next line");
        assert_eq!(ix.find(run[8], |_| true), Some(18));
    }

    #[test]
    fn slots_to_scan_reaches_the_next_line_only_from_a_lines_last_slots() {
        let ix = Index::new(64);
        let base = ix.slots.as_ptr();
        for k in 0..16 {
            let s = base.wrapping_add(k);
            let left = (64 - (s as usize & 63)) / 8;
            let want = if left <= TAIL_SLOTS { left + 8 } else { left };
            assert_eq!(slots_to_scan(s), want, "slot {k}");
        }
    }

    #[test]
    fn random_churn_matches_model() {
        let mut ix = Index::new(64);
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let h = (x as u32) & 0x3ff; // few distinct hashes: many collisions
            if model.len() < 30 && x & 1 == 0 {
                if let std::collections::hash_map::Entry::Vacant(e) = model.entry(h) {
                    e.insert(step);
                    assert!(ix.insert(h, step));
                }
            } else if let Some(&v) = model.get(&h) {
                assert!(ix.remove(h, v));
                model.remove(&h);
            }
            for (&h, &v) in &model {
                assert_eq!(ix.find(h, |x| x == v), Some(v));
                // a candidate, when there is one, is a value stored under h
                if let Some(c) = ix.home_candidate(h) {
                    assert_eq!(c, v);
                }
            }
        }
    }
}
