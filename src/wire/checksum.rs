//! The Internet checksum (RFC 1071), pseudo headers, and incremental
//! updates (RFC 1624).
//!
//! Terms used here: a *sum* is the folded 16-bit one's complement sum of
//! some data (what [`data`] returns); a *checksum* is the complement of a
//! sum, the value stored in a header. To checksum several pieces, add their
//! sums with [`combine`] and complement the result ([`finish`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide one's complement accumulator down to 16 bits.
///
/// A nonzero input never folds to 0 (it folds to 0xFFFF, "negative zero"),
/// which is the property that keeps incremental and full results equal.
#[inline(always)]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// Adds `value` to a one's complement accumulator with end-around carry.
#[inline(always)]
fn add_carry(acc: u64, value: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(value);
    // If a carry occurred, sum <= u64::MAX - 1, so this cannot overflow.
    sum + carry as u64
}

/// Adds `data` into a one's complement accumulator kept in native byte order.
///
/// Why native order: the one's complement sum commutes with byte swapping
/// (RFC 1071 §2(B)), so we add whole native 64-bit words with end-around
/// carry and swap once at the end instead of byte-swapping every word.
#[inline]
fn add_native(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(32);
    for chunk in &mut chunks {
        // Four independent loads per iteration; each 8-byte word is added
        // with its carry folded back in (end-around carry).
        for word in chunk.chunks_exact(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            acc = add_carry(acc, u64::from_ne_bytes(bytes));
        }
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        acc = add_carry(acc, u64::from_ne_bytes(bytes));
    }
    let mut tail = words.remainder().chunks_exact(2);
    for pair in &mut tail {
        acc = add_carry(acc, u16::from_ne_bytes([pair[0], pair[1]]) as u64);
    }
    if let [last] = tail.remainder() {
        // An odd final byte is the high-order byte of a zero-padded word
        // in network order, i.e. the first byte in memory.
        acc = add_carry(acc, u16::from_ne_bytes([*last, 0]) as u64);
    }
    acc
}

/// Converts a folded native-order sum to network (big-endian) value order.
#[inline(always)]
fn native_to_value(sum: u16) -> u16 {
    u16::from_be_bytes(sum.to_ne_bytes())
}

/// One's complement sum of `data` as 16-bit big-endian words (odd length
/// padded with a zero byte), folded to 16 bits. Not complemented.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    native_to_value(fold(add_native(0, data)))
}

/// Whether a 20-byte IPv4 header (no options) checksums correctly: the
/// same answer as `data(hdr) == 0xffff`, without loops or carries to chase
/// (five 32-bit words cannot overflow a u64), for the per-packet check.
#[inline(always)]
pub fn ipv4_header_ok(hdr: &[u8; 20]) -> bool {
    let w = |i: usize| {
        u64::from(u32::from_ne_bytes([
            hdr[i],
            hdr[i + 1],
            hdr[i + 2],
            hdr[i + 3],
        ]))
    };
    let mut s = w(0) + w(4) + w(8) + w(12) + w(16);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    // 0xffff reads the same in either byte order
    s == 0xffff
}

/// One's complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc = 0u64;
    for &s in sums {
        acc += s as u64;
    }
    fold(acc)
}

/// Turns a sum into the checksum value to store in a header.
#[inline(always)]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// The Internet checksum of `bytes`: the value to store in a header whose
/// checksum field (inside `bytes`) is zero. Verifying a header with its
/// checksum in place gives 0 when it is correct.
#[inline]
pub fn checksum(bytes: &[u8]) -> u16 {
    !data(bytes)
}

/// Sum of the IPv4 pseudo header (RFC 793/768): source, destination, zero,
/// protocol, and the L4 length (header + payload).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = (s >> 16) as u64
        + (s & 0xFFFF) as u64
        + (d >> 16) as u64
        + (d & 0xFFFF) as u64
        + protocol as u64
        + length as u64;
    fold(acc)
}

/// Sum of the IPv6 pseudo header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes and the next header value.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc = 0u64;
    for seg in src.segments().iter().chain(dst.segments().iter()) {
        acc += *seg as u64;
    }
    acc += (length >> 16) as u64 + (length & 0xFFFF) as u64 + next_header as u64;
    fold(acc)
}

/// RFC 1624 eqn. 3 core: `HC' = ~(~HC + ~m + m')`, with the `~m + m'`
/// terms already accumulated in `delta`.
#[inline(always)]
fn apply(csum: u16, delta: u64) -> u16 {
    !fold((!csum) as u64 + delta)
}

/// Updates checksum `csum` for one 16-bit word changing from `old` to `new`.
///
/// Uses RFC 1624 eqn. 3, which (unlike eqn. 2) never produces a checksum
/// of 0xFFFF from nonzero data, so it agrees exactly with a full
/// recomputation.
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    apply(csum, (!old) as u64 + new as u64)
}

/// Updates checksum `csum` for a 32-bit field (two words) changing from
/// `old` to `new` (host-order values of big-endian fields).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let delta = (!(old >> 16) & 0xFFFF) as u64
        + (!old & 0xFFFF) as u64
        + (new >> 16) as u64
        + (new & 0xFFFF) as u64;
    apply(csum, delta)
}

/// Updates checksum `csum` for a field at an even offset changing from the
/// bytes `old` to `new` (e.g. a 4-byte IPv4 or 16-byte IPv6 address).
///
/// Both slices should have the same length; if they differ, only the common
/// prefix is considered. An odd trailing byte is treated as the high byte of
/// a word whose low byte does not change.
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let len = old.len().min(new.len());
    let (old, new) = (&old[..len], &new[..len]);
    // ~m summed word by word equals ~(sum of m) in one's complement, so we
    // can sum each side with the fast routine and combine.
    let old_sum = data(old);
    let new_sum = data(new);
    apply(csum, (!old_sum) as u64 + new_sum as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fast_check_agrees_with_the_general_sum() {
        // a valid header, then every single-bit corruption of it, then
        // pseudo-random headers (valid and not)
        let mut h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0xac, 0x10,
            0x0a, 0x63, 0xac, 0x10, 0x0a, 0x0c,
        ];
        let c = finish(data(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_ok(&h));
        assert_eq!(data(&h), 0xffff);
        for bit in 0..160 {
            let mut b = h;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(ipv4_header_ok(&b), data(&b) == 0xffff, "bit {bit}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let mut b = [0u8; 20];
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if round % 2 == 0 {
                b[10] = 0;
                b[11] = 0;
                let c = finish(data(&b));
                b[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header_ok(&b), data(&b) == 0xffff, "{b:02x?}");
        }
        // all zeros and all ones
        assert_eq!(ipv4_header_ok(&[0; 20]), data(&[0; 20]) == 0xffff);
        assert_eq!(ipv4_header_ok(&[0xff; 20]), data(&[0xff; 20]) == 0xffff);
    }
    use crate::wire::testutil::{hex, XorShift};

    /// Straightforward RFC 1071 reference: big-endian words, 32-bit sum.
    fn reference_sum(bytes: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            acc += ((bytes[i] as u64) << 8) | bytes[i + 1] as u64;
            i += 2;
        }
        if i < bytes.len() {
            acc += (bytes[i] as u64) << 8;
        }
        fold(acc)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(checksum(&bytes), 0x220d);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header (checksum b861 in place).
        let header = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        assert_eq!(checksum(&header), 0);
        let mut zeroed = header.clone();
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn odd_lengths_and_empty() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(checksum(&[]), 0xFFFF);
    }

    #[test]
    fn fast_sum_matches_reference_on_random_data() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for len in 0..300 {
            let mut buf = vec![0u8; len];
            rng.fill(&mut buf);
            assert_eq!(data(&buf), reference_sum(&buf), "len {len}");
            // Unaligned start.
            if len > 1 {
                assert_eq!(data(&buf[1..]), reference_sum(&buf[1..]), "len {len}+1");
            }
        }
        // All 0xFF bytes: worst case for carries.
        let ones = vec![0xFFu8; 1501];
        assert_eq!(data(&ones), reference_sum(&ones));
    }

    #[test]
    fn combine_and_pseudo_header_v4() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 0, 199);
        // c0a8 + 0001 + c0a8 + 00c7 + 0011 + 0010
        let expected = fold(0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 0x0011 + 0x0010);
        assert_eq!(pseudo_header_v4(src, dst, 17, 16), expected);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 17, 0, 16]);
        assert_eq!(pseudo_header_v4(src, dst, 17, 16), data(&pseudo));
        assert_eq!(combine(&[0xFFFF, 0x0001]), 0x0001);
        assert_eq!(combine(&[0x8000, 0x8000]), 0x0001);
    }

    #[test]
    fn pseudo_header_v6_matches_bytes() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::ffff:1234".parse().unwrap();
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&0x0001_0010u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(pseudo_header_v6(&src, &dst, 6, 0x0001_0010), data(&pseudo));
    }

    /// Writes a random header-like buffer with a correct checksum at 10..12.
    fn random_packet(rng: &mut XorShift, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        rng.fill(&mut buf);
        buf[10] = 0;
        buf[11] = 0;
        let c = checksum(&buf);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        buf
    }

    fn recomputed(buf: &[u8]) -> u16 {
        let mut copy = buf.to_vec();
        copy[10] = 0;
        copy[11] = 0;
        checksum(&copy)
    }

    #[test]
    fn incremental_matches_full_recompute_random() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for _ in 0..5000 {
            let len = 40 + rng.below(60) * 2;
            let mut buf = random_packet(&mut rng, len);
            let csum = u16::from_be_bytes([buf[10], buf[11]]);
            match rng.below(3) {
                0 => {
                    // 16-bit field at an even offset (not the checksum).
                    let off = 12 + 2 * rng.below((len - 14) / 2);
                    let old = u16::from_be_bytes([buf[off], buf[off + 1]]);
                    let new = rng.next_u16();
                    buf[off..off + 2].copy_from_slice(&new.to_be_bytes());
                    let inc = update_u16(csum, old, new);
                    assert_eq!(inc, recomputed(&buf));
                }
                1 => {
                    let off = 12 + 2 * rng.below((len - 16) / 2);
                    let old = u32::from_be_bytes(buf[off..off + 4].try_into().unwrap());
                    let new = rng.next_u32();
                    buf[off..off + 4].copy_from_slice(&new.to_be_bytes());
                    let inc = update_u32(csum, old, new);
                    assert_eq!(inc, recomputed(&buf));
                }
                _ => {
                    let off = 12 + 2 * rng.below((len - 28) / 2);
                    let field_len = if rng.below(2) == 0 { 4 } else { 16 };
                    let old = buf[off..off + field_len].to_vec();
                    let mut new = vec![0u8; field_len];
                    rng.fill(&mut new);
                    buf[off..off + field_len].copy_from_slice(&new);
                    let inc = update_bytes(csum, &old, &new);
                    assert_eq!(inc, recomputed(&buf));
                }
            }
        }
    }

    #[test]
    fn rfc1624_edge_cases() {
        // RFC 1624 §3 example: a header whose sum is all ones except the
        // field being changed from 0x5555 to 0x3285... Build the exact
        // scenario: data whose sum (excluding checksum) is 0xFFFF, i.e.
        // checksum 0x0000, then a field change that keeps the sum.
        // Data: [0xCD7A, 0x3285] sums to 0xFFFF -> checksum 0x0000.
        let mut buf = vec![0u8; 14];
        buf[12..14].copy_from_slice(&0x3285u16.to_be_bytes());
        buf[0..2].copy_from_slice(&0xCD7Au16.to_be_bytes());
        let csum = recomputed(&buf);
        assert_eq!(csum, 0x0000);
        // Change 0x3285 -> 0x3285 (no-op) must keep 0x0000, not 0xFFFF.
        assert_eq!(update_u16(csum, 0x3285, 0x3285), 0x0000);
        // Change the field so the data sum becomes 0xFFFF again from a
        // different split: 0xCD7A + 0x3285 == 0xCD7B + 0x3284.
        buf[0..2].copy_from_slice(&0xCD7Bu16.to_be_bytes());
        let c1 = update_u16(csum, 0xCD7A, 0xCD7B);
        buf[12..14].copy_from_slice(&0x3284u16.to_be_bytes());
        let c2 = update_u16(c1, 0x3285, 0x3284);
        assert_eq!(c2, recomputed(&buf));
        assert_eq!(c2, 0x0000);
        // Field changed from 0xFFFF to 0x0000 and back (both encode zero).
        buf[12..14].copy_from_slice(&0xFFFFu16.to_be_bytes());
        let c3 = recomputed(&buf);
        buf[12..14].copy_from_slice(&0x0000u16.to_be_bytes());
        let c4 = update_u16(c3, 0xFFFF, 0x0000);
        assert_eq!(c4, recomputed(&buf));
        buf[12..14].copy_from_slice(&0xFFFFu16.to_be_bytes());
        assert_eq!(update_u16(c4, 0x0000, 0xFFFF), recomputed(&buf));
        // Stored checksum 0xFFFF (a UDP "computed zero") updates like 0x0000.
        assert_eq!(
            update_u16(0xFFFF, 0x1234, 0x1235),
            update_u16(0x0000, 0x1234, 0x1235)
        );
    }

    #[test]
    fn update_u32_equals_two_u16_updates() {
        let mut rng = XorShift(42);
        for _ in 0..1000 {
            let c = rng.next_u16();
            let (old, new) = (rng.next_u32(), rng.next_u32());
            let two = update_u16(
                update_u16(c, (old >> 16) as u16, (new >> 16) as u16),
                old as u16,
                new as u16,
            );
            assert_eq!(update_u32(c, old, new), two);
            assert_eq!(
                update_bytes(c, &old.to_be_bytes(), &new.to_be_bytes()),
                update_u32(c, old, new)
            );
        }
    }
}
