//! SipHash (Aumasson and Bernstein), the one implementation vsd has: the
//! general c-d form as the kernel's lib/siphash.c computes it (the mh
//! scheduler's hsiphash must match the kernel bit for bit), and SipHash-2-4
//! over whole 64-bit words (SYN cookies: no byte packing per SYN).

#[inline]
pub fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-c-d of `data` with key (`k0`, `k1`), as lib/siphash.c computes
/// it (little-endian words, length in the top byte of the last word).
pub fn siphash(c_rounds: u32, d_rounds: u32, k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ k0,
        0x646f_7261_6e64_6f6d ^ k1,
        0x6c79_6765_6e65_7261 ^ k0,
        0x7465_6462_7974_6573 ^ k1,
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        for _ in 0..c_rounds {
            sipround(&mut v);
        }
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    let b = ((data.len() as u64) << 56) | u64::from_le_bytes(w);
    v[3] ^= b;
    for _ in 0..c_rounds {
        sipround(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..d_rounds {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// SipHash-2-4 of whole 64-bit words.
pub fn siphash24_words(k: &[u64; 2], words: &[u64]) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    for &m in words {
        v[3] ^= m;
        sipround(&mut v);
        sipround(&mut v);
        v[0] ^= m;
    }
    let b = ((words.len() as u64 * 8) & 0xff) << 56;
    v[3] ^= b;
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_form_is_siphash_2_4_of_their_little_endian_bytes() {
        let k = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        for n in 0..4u64 {
            let words: Vec<u64> = (0..n).map(|i| 0x0123_4567_89ab_cdef ^ (i << 7)).collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(
                siphash24_words(&k, &words),
                siphash(2, 4, k[0], k[1], &bytes)
            );
        }
    }
}
