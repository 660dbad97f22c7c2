//! The Toeplitz hash NICs use for receive side scaling (RSS), computed in
//! software with the same key and input layout, so vsd can predict which
//! queue (and so which worker) will receive a given flow.
//!
//! Input layout (what the NICs hash, all in network byte order):
//! source address, destination address, then source port and destination
//! port for the 4-tuple hash. The queue is `RETA[hash % reta_size]`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of an RSS key in bytes (the common 40-byte size).
pub const RSS_KEY_LEN: usize = 40;

/// A 40-byte RSS key.
pub type RssKey = [u8; RSS_KEY_LEN];

/// Longest input the table supports: IPv6 addresses and ports.
pub const MAX_INPUT_LEN: usize = 36;

/// The key 0x6d5a repeated. Its bit pattern repeats every 16 bits, and all
/// the tuple fields are whole 16-bit words, so swapping source and
/// destination (addresses and ports together) gives the same hash: both
/// directions of a flow land on the same queue.
pub const SYMMETRIC_KEY: RssKey = {
    let mut key = [0u8; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        key[i] = 0x6d;
        key[i + 1] = 0x5a;
        i += 2;
    }
    key
};

/// The key of Microsoft's "Verifying the RSS Hash Calculation" examples,
/// also many NICs' default.
pub const MICROSOFT_KEY: RssKey = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Bit-by-bit Toeplitz hash, straight from the definition: for each input
/// bit (most significant first) that is set, XOR in the 32 key bits that
/// start at that bit's position. Key bits past the end of `key` count as 0.
/// Slow; the reference for tests.
pub fn toeplitz_reference(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |pos: usize| -> u32 {
        match key.get(pos / 8) {
            Some(byte) => ((byte >> (7 - pos % 8)) & 1) as u32,
            None => 0,
        }
    };
    let mut result = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                let start = i * 8 + bit;
                let mut window = 0u32;
                for k in 0..32 {
                    window = (window << 1) | key_bit(start + k);
                }
                result ^= window;
            }
        }
    }
    result
}

/// Precomputed Toeplitz tables for one key: for every input byte position
/// and byte value, the XOR of the key windows its set bits select. A hash
/// is then one lookup and XOR per input byte (12 for an IPv4 4-tuple).
/// The table is 36 KiB; build it once per key (not per packet).
#[derive(Clone)]
pub struct ToeplitzTable {
    table: Box<[[u32; 256]; MAX_INPUT_LEN]>,
}

impl std::fmt::Debug for ToeplitzTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToeplitzTable").finish_non_exhaustive()
    }
}

impl ToeplitzTable {
    /// Builds the tables for `key`.
    pub fn new(key: &RssKey) -> Self {
        let mut table = Box::new([[0u32; 256]; MAX_INPUT_LEN]);
        for (pos, row) in table.iter_mut().enumerate() {
            // 40 key bits starting at byte `pos`: enough for the 32-bit
            // windows of all 8 bits of this input byte. pos + 4 <= 39.
            let mut wide = 0u64;
            for k in 0..5 {
                wide = (wide << 8) | key[pos + k] as u64;
            }
            // Single-bit entries: bit 7 of the byte (MSB) uses the window
            // starting at the byte's first key bit.
            for bit in 0..8 {
                row[0x80 >> bit] = (wide >> (8 - bit)) as u32;
            }
            // Other values by linearity: v = lowest set bit ^ the rest.
            for value in 1usize..256 {
                let low = value & value.wrapping_neg();
                if low != value {
                    row[value] = row[low] ^ row[value ^ low];
                }
            }
        }
        ToeplitzTable { table }
    }

    /// Hash of an arbitrary input of up to 36 bytes (extra bytes ignored).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut h = 0u32;
        for (row, &byte) in self.table.iter().zip(input) {
            h ^= row[byte as usize];
        }
        h
    }

    /// Hash of consecutive input bytes starting at input position `start`.
    #[inline(always)]
    fn hash_at(&self, start: usize, bytes: &[u8]) -> u32 {
        let mut h = 0u32;
        for (row, &byte) in self.table[start..].iter().zip(bytes) {
            h ^= row[byte as usize];
        }
        h
    }

    /// 4-tuple hash of IPv4 TCP/UDP: src addr, dst addr, src port, dst port.
    #[inline]
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> u32 {
        self.hash_at(0, &src.octets())
            ^ self.hash_at(4, &dst.octets())
            ^ self.hash_at(8, &src_port.to_be_bytes())
            ^ self.hash_at(10, &dst_port.to_be_bytes())
    }

    /// 2-tuple hash of IPv4: src addr, dst addr.
    #[inline]
    pub fn hash_v4_addrs(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        self.hash_at(0, &src.octets()) ^ self.hash_at(4, &dst.octets())
    }

    /// 4-tuple hash of IPv6 TCP/UDP.
    #[inline]
    pub fn hash_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr, src_port: u16, dst_port: u16) -> u32 {
        self.hash_at(0, &src.octets())
            ^ self.hash_at(16, &dst.octets())
            ^ self.hash_at(32, &src_port.to_be_bytes())
            ^ self.hash_at(34, &dst_port.to_be_bytes())
    }

    /// 2-tuple hash of IPv6.
    #[inline]
    pub fn hash_v6_addrs(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        self.hash_at(0, &src.octets()) ^ self.hash_at(16, &dst.octets())
    }
}

/// The redirection table index for `hash`: `hash % reta_size` (0 for an
/// empty table).
///
/// NICs and DPDK index the RETA with the low bits of the hash,
/// `hash & (reta_size - 1)`, and RETA sizes are powers of two (64, 128,
/// 512), where both forms agree.
#[inline]
pub fn reta_index(hash: u32, reta_size: usize) -> usize {
    if reta_size == 0 {
        0
    } else {
        hash as usize % reta_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::XorShift;

    /// Microsoft's IPv4 verification table: (src, sport, dst, dport,
    /// hash without ports, hash with ports).
    const V4_VECTORS: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "66.9.149.187",
            2794,
            "161.142.100.80",
            1766,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "199.92.111.2",
            14230,
            "65.69.140.83",
            4739,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "24.19.198.95",
            12898,
            "12.22.207.184",
            38024,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "38.27.205.30",
            48228,
            "209.142.163.6",
            2217,
            0x82989176,
            0xafc7327f,
        ),
        (
            "153.39.163.191",
            44251,
            "202.188.127.2",
            1303,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    /// Microsoft's IPv6 verification table.
    const V6_VECTORS: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:1fff::7",
            2794,
            "3ffe:2501:200:3::1",
            1766,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            "ff02::1",
            4739,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            "fe80::200:f8ff:fe21:67cf",
            38024,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_ipv4_vectors() {
        let table = ToeplitzTable::new(&MICROSOFT_KEY);
        for (src, sport, dst, dport, h2, h4) in V4_VECTORS {
            let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(table.hash_v4_addrs(s, d), h2, "{src} -> {dst}");
            assert_eq!(
                table.hash_v4(s, d, sport, dport),
                h4,
                "{src}:{sport} -> {dst}:{dport}"
            );
            let mut input = Vec::new();
            input.extend_from_slice(&s.octets());
            input.extend_from_slice(&d.octets());
            assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &input), h2);
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &input), h4);
            assert_eq!(table.hash(&input), h4);
        }
    }

    #[test]
    fn microsoft_ipv6_vectors() {
        let table = ToeplitzTable::new(&MICROSOFT_KEY);
        for (src, sport, dst, dport, h2, h4) in V6_VECTORS {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(table.hash_v6_addrs(&s, &d), h2, "{src} -> {dst}");
            assert_eq!(
                table.hash_v6(&s, &d, sport, dport),
                h4,
                "{src}.{sport} -> {dst}.{dport}"
            );
            let mut input = Vec::new();
            input.extend_from_slice(&s.octets());
            input.extend_from_slice(&d.octets());
            assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &input), h2);
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &input), h4);
        }
    }

    #[test]
    fn table_matches_reference_on_random_inputs() {
        let mut rng = XorShift(0x0bad_5eed);
        for key_kind in 0..3 {
            let mut key = [0u8; RSS_KEY_LEN];
            match key_kind {
                0 => key = MICROSOFT_KEY,
                1 => key = SYMMETRIC_KEY,
                _ => rng.fill(&mut key),
            }
            let table = ToeplitzTable::new(&key);
            for _ in 0..300 {
                let len = rng.below(MAX_INPUT_LEN + 1);
                let mut input = vec![0u8; len];
                rng.fill(&mut input);
                assert_eq!(table.hash(&input), toeplitz_reference(&key, &input));
            }
        }
    }

    #[test]
    fn symmetric_key_is_symmetric() {
        assert_eq!(&SYMMETRIC_KEY[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
        let table = ToeplitzTable::new(&SYMMETRIC_KEY);
        let mut rng = XorShift(77);
        for _ in 0..1000 {
            let (a, b) = (
                Ipv4Addr::from(rng.next_u32()),
                Ipv4Addr::from(rng.next_u32()),
            );
            let (pa, pb) = (rng.next_u16(), rng.next_u16());
            assert_eq!(table.hash_v4(a, b, pa, pb), table.hash_v4(b, a, pb, pa));
            assert_eq!(table.hash_v4_addrs(a, b), table.hash_v4_addrs(b, a));
            let mut x = [0u8; 16];
            let mut y = [0u8; 16];
            rng.fill(&mut x);
            rng.fill(&mut y);
            let (x, y) = (Ipv6Addr::from(x), Ipv6Addr::from(y));
            assert_eq!(table.hash_v6(&x, &y, pa, pb), table.hash_v6(&y, &x, pb, pa));
            assert_eq!(table.hash_v6_addrs(&x, &y), table.hash_v6_addrs(&y, &x));
        }
        // The Microsoft key is not symmetric.
        let ms = ToeplitzTable::new(&MICROSOFT_KEY);
        let (a, b) = (
            Ipv4Addr::new(66, 9, 149, 187),
            Ipv4Addr::new(161, 142, 100, 80),
        );
        assert_ne!(ms.hash_v4(a, b, 2794, 1766), ms.hash_v4(b, a, 1766, 2794));
    }

    #[test]
    fn reference_edge_cases() {
        assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &[]), 0);
        // A single MSB selects the first 32 key bits.
        assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &[0x80]), 0x6d5a56da);
        // The LSB of byte 0 selects key bits 7..38: 0x6d5a56da25 >> 1.
        assert_eq!(toeplitz_reference(&MICROSOFT_KEY, &[0x01]), 0xad2b6d12);
        // Short key: missing bits are zero.
        assert_eq!(toeplitz_reference(&[0xff], &[0x80]), 0xff00_0000);
    }

    #[test]
    fn reta() {
        assert_eq!(reta_index(0x51ccc178, 128), 0x78);
        assert_eq!(reta_index(0x51ccc178, 128), (0x51ccc178 & 127) as usize);
        assert_eq!(reta_index(10, 3), 1);
        assert_eq!(reta_index(10, 0), 0);
    }
}
