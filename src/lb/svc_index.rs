//! IPv4 service index: `(protocol, IPv4 address, port)` → service position,
//! for the lookup every new connection makes ([`super::service::ServiceSnapshot::find`]).
//!
//! What: one small open-addressing array of 16-byte slots (the key packed
//! into a u64, the position beside it), built once per snapshot by the
//! control plane and only read by the workers.
//!
//! Why: the general map is keyed on `(Protocol, IpAddr, u16)`, whose hash
//! walks the address enum and whose probe compares it field by field —
//! about 100 instructions per new connection. An IPv4 key fits in one
//! word: one multiply to hash, one compare per probe.
//!
//! Failure modes: none at lookup (a miss is `None`; the array is never
//! full: it has at least twice as many slots as keys, so a probe always
//! ends at an empty slot). IPv6 services stay in the general map only.

/// A packed key never equals this (bit 63 is set in every real key).
const EMPTY: u64 = 0;

#[inline(always)]
fn pack(proto: u8, addr: u32, port: u16) -> u64 {
    (1 << 63) | (u64::from(proto) << 48) | (u64::from(port) << 32) | u64::from(addr)
}

/// The index (see the module note).
#[derive(Debug, Clone)]
pub struct V4ServiceIndex {
    slots: Box<[(u64, u32)]>,
    /// 64 − log2(slots): the hash's top bits pick the home slot.
    shift: u32,
}

impl V4ServiceIndex {
    /// An index of `keys`: `(protocol number, address, port, position)`.
    /// A key given twice keeps its first position (the snapshot's keys are
    /// unique).
    pub fn new(keys: impl IntoIterator<Item = (u8, u32, u16, usize)>) -> Self {
        let keys: Vec<(u64, u32)> = keys
            .into_iter()
            .filter_map(|(proto, addr, port, pos)| {
                Some((pack(proto, addr, port), u32::try_from(pos).ok()?))
            })
            .collect();
        let n = (2 * keys.len()).next_power_of_two().max(8);
        let mut ix = V4ServiceIndex {
            slots: vec![(EMPTY, 0); n].into_boxed_slice(),
            shift: 64 - n.trailing_zeros(),
        };
        let mask = n - 1;
        for (k, pos) in keys {
            let mut i = ix.home(k);
            loop {
                match ix.slots.get_mut(i) {
                    Some(s) if s.0 == EMPTY => {
                        *s = (k, pos);
                        break;
                    }
                    Some(s) if s.0 == k => break,
                    _ => i = (i + 1) & mask,
                }
            }
        }
        ix
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The position stored for `(proto, addr, port)`.
    #[inline]
    pub fn get(&self, proto: u8, addr: u32, port: u16) -> Option<usize> {
        let k = pack(proto, addr, port);
        let mask = self.slots.len() - 1;
        let mut i = self.home(k);
        // bounded by the slot count (a probe ends at an empty slot first)
        for _ in 0..self.slots.len() {
            let &(key, pos) = self.slots.get(i)?;
            if key == k {
                return Some(pos as usize);
            }
            if key == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn empty_index_misses() {
        let ix = V4ServiceIndex::new([]);
        assert_eq!(ix.get(6, 0xc612_0064, 80), None);
        assert_eq!(
            ix.get(0, 0, 0),
            None,
            "the all-zero key is not the empty marker"
        );
    }

    #[test]
    fn finds_exactly_the_keys_it_was_built_from() {
        // many services on few addresses and ports, both protocols, port 0
        // among them: the packed keys differ in every field
        let mut want = HashMap::new();
        let mut keys = Vec::new();
        for a in 0..40u32 {
            for (j, port) in [0u16, 80, 443, 8080].into_iter().enumerate() {
                for proto in [6u8, 17] {
                    let addr = 0xc612_0000 + a * 7;
                    let pos = keys.len();
                    if !(a as usize + j).is_multiple_of(3) {
                        keys.push((proto, addr, port, pos));
                        want.insert((proto, addr, port), pos);
                    }
                }
            }
        }
        let ix = V4ServiceIndex::new(keys.iter().copied());
        assert!(ix.slots.len() >= 2 * keys.len());
        for a in 0..300u32 {
            for port in [0u16, 1, 80, 443, 8080, 65535] {
                for proto in [0u8, 6, 17] {
                    let addr = 0xc612_0000 + a;
                    assert_eq!(
                        ix.get(proto, addr, port),
                        want.get(&(proto, addr, port)).copied(),
                        "{proto} {addr:#x}:{port}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_position() {
        let ix = V4ServiceIndex::new([(6, 1, 80, 3), (6, 1, 80, 9), (17, 1, 80, 4)]);
        assert_eq!(ix.get(6, 1, 80), Some(3));
        assert_eq!(ix.get(17, 1, 80), Some(4));
    }
}
