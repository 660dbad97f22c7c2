//! Open-addressing index from a 32-bit key hash to a slab slot.
//!
//! One power-of-two array of 8-byte slots: the key's 32-bit hash in the high
//! half, the slot value (slab index plus a direction bit) in the low half.
//! Linear probing, backward-shift deletion (no tombstones, so lookups stay
//! short under churn). The owner keeps the load at or below about 0.57, so
//! an empty slot always ends a probe. The home bucket is `hash & mask`; the
//! full hash stored in each slot filters out most non-matching neighbours
//! before the slab entry is read.

/// An unused slot.
const EMPTY: u64 = u64::MAX;

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
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u32) {
        if let Some(s) = self.slots.get(self.home(hash)) {
            super::prefetch(s);
        }
    }

    /// The home-bucket slot of `hash`, raw: `Some(val)` if that slot holds a
    /// value stored under `hash`. Lets batched lookups issue all their first
    /// memory accesses before depending on any of them.
    #[inline]
    pub(crate) fn home_candidate(&self, hash: u32) -> Option<u32> {
        let s = *self.slots.get(self.home(hash))?;
        (s != EMPTY && (s >> 32) as u32 == hash).then_some(s as u32)
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
            }
        }
    }
}
