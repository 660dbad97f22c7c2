//! Maglev hashing (`ip_vs_mh.c`).
//!
//! Each server gets a permutation of the table positions from two hashes
//! of its address and port (`offset`, `skip`); the table is filled in
//! rounds over the servers in walking order, each taking `turns`
//! consecutive preferred free positions per round. Turns are the server's
//! *last non-zero* weight divided by the gcd of all of them, shifted right
//! so that the largest fits in `bits` bits (`ip_vs_mh_shift_weight`), and
//! at least 1 for a non-zero weight; a server added with weight 0 gets no
//! slots. A client maps to `table[hash(src [+ sport]) mod size]`; with
//! `mh-fallback`, an unavailable server makes the kernel try
//! `table[hash(src + offset') mod size]` for offset' = h, h+1, … (mod size).
//!
//! Hash: the kernel's `hsiphash` with *fixed* keys (both words 2654435761
//! for the lookup hash and offsets, 2654446892 for skips; see
//! `generate_hash_secret`), over the 4-byte host-order word
//! `offset + port + address` (IPv6 folded by XOR). On 64-bit kernels
//! `hsiphash` is SipHash-1-3 truncated to 32 bits; 32-bit kernels use
//! HalfSipHash-1-3 instead. We implement the 64-bit (x86-64, arm64)
//! variant over a little-endian word: with the same configuration, vsd
//! builds the same table as Linux IPVS on those machines, and every core
//! and every vsd director builds the same table as every other — no
//! per-process key is involved.

use super::{fold_addr, SchedCtx, SchedInput, Scheduler};
use crate::lb::service::{Service, DEFAULT_MH_TABLE_SIZE, MH_TABLE_SIZES};
#[cfg(test)]
use crate::lb::siphash::siphash;
use crate::lb::siphash::sipround;
use crate::lb::types::{AddrFamily, SchedulerKind};
use std::net::IpAddr;

const NONE: u32 = u32::MAX;
/// `hash1` key words (lookup and permutation offsets).
const KEY1: u64 = 2_654_435_761;
/// `hash2` key words (permutation skips).
const KEY2: u64 = 2_654_446_892;

/// The kernel's 64-bit `hsiphash(&v, 4, key)` with both key words `k`:
/// SipHash-1-3 of the little-endian word, truncated.
#[inline]
pub fn hsiphash_u32(val: u32, k: u64) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ k,
        0x646f_7261_6e64_6f6d ^ k,
        0x6c79_6765_6e65_7261 ^ k,
        0x7465_6462_7974_6573 ^ k,
    ];
    let b = (4u64 << 56) | u64::from(val);
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// `ip_vs_mh_hashkey`.
#[inline]
fn hashkey(af: AddrFamily, addr: IpAddr, port: u16, key: u64, offset: u32) -> u32 {
    let v = offset
        .wrapping_add(u32::from(port))
        .wrapping_add(fold_addr(af, addr));
    hsiphash_u32(v, key)
}

/// `IP_VS_MH_TAB_BITS` for a table size: half the kernel config index
/// (prime number k in the list has index k + 8).
fn tab_bits(size: u32) -> u32 {
    let idx = MH_TABLE_SIZES.iter().position(|&p| p == size).unwrap_or(4) as u32;
    (idx + 8) / 2
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Maglev lookup table of server positions.
#[derive(Debug, Clone)]
pub struct Maglev {
    size: u32,
    table: Vec<u32>,
}

impl Maglev {
    /// Build the table for a service (size from `config.mh_table_size`;
    /// an invalid size falls back to the default, the table has already
    /// validated it).
    pub fn new(svc: &Service) -> Self {
        let size = if MH_TABLE_SIZES.contains(&svc.config.mh_table_size) {
            svc.config.mh_table_size
        } else {
            DEFAULT_MH_TABLE_SIZE
        };
        let mut m = Maglev {
            size,
            table: vec![NONE; size as usize],
        };
        m.populate(svc);
        m
    }

    /// Table size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The lookup table (server positions; `u32::MAX` = none).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// `ip_vs_mh_reassign`: permutations, then population.
    fn populate(&mut self, svc: &Service) {
        let m = self.size;
        let servers = &svc.servers;
        let g = servers
            .iter()
            .map(|s| s.last_weight)
            .filter(|&w| w > 0)
            .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
        if g < 1 || servers.len() > m as usize {
            self.table.iter_mut().for_each(|t| *t = NONE);
            return;
        }
        let max_w = servers.iter().map(|s| s.last_weight).max().unwrap_or(0) / g;
        let fls = 32 - max_w.leading_zeros();
        let shift = fls.saturating_sub(tab_bits(m));
        // offset, skip, next preference, turns.
        let mut setup: Vec<(u32, u32, u32)> = servers
            .iter()
            .map(|s| {
                let af = svc.af();
                let offset = hashkey(af, s.addr, s.port, KEY1, 0) % m;
                let skip = hashkey(af, s.addr, s.port, KEY2, 0) % (m - 1) + 1;
                let lw = s.last_weight;
                let turns = match (lw / g) >> shift {
                    0 => u32::from(lw != 0),
                    t => t,
                };
                (offset, skip, turns)
            })
            .collect();
        let mut filled = vec![false; m as usize];
        let (mut n, mut dt_count) = (0u32, 0u32);
        // Every round fills at least one slot (g ≥ 1 means some server has
        // turns), so this ends after at most `m` rounds.
        'fill: while n < m {
            let mut i = 0;
            while i < setup.len() {
                let (_, skip, turns) = setup[i];
                if turns < 1 {
                    i += 1;
                    continue;
                }
                let mut c = setup[i].0;
                while filled[c as usize] {
                    c += skip;
                    if c >= m {
                        c -= m;
                    }
                }
                setup[i].0 = c;
                filled[c as usize] = true;
                self.table[c as usize] = i as u32;
                n += 1;
                if n == m {
                    break 'fill;
                }
                dt_count += 1;
                if dt_count >= turns {
                    dt_count = 0;
                    i += 1;
                }
            }
        }
    }

    #[inline]
    fn owner(&self, h: u32) -> u32 {
        self.table
            .get((h % self.size) as usize)
            .copied()
            .unwrap_or(NONE)
    }
}

impl Scheduler for Maglev {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Mh
    }

    fn schedule(&mut self, ctx: &SchedCtx<'_>, input: &SchedInput) -> Option<usize> {
        let flags = ctx.svc.config.flags;
        let port = if flags.mh_port { input.sport } else { 0 };
        let af = ctx.svc.af();
        let ihash = hashkey(af, input.src, port, KEY1, 0) % self.size;
        let pos = self.owner(ihash);
        if pos == NONE {
            return None;
        }
        if ctx.available(pos as usize) {
            return Some(pos as usize);
        }
        if !flags.mh_fallback {
            return None;
        }
        for offset in 0..self.size {
            let roffset = (offset + ihash) % self.size;
            let pos = self.owner(hashkey(af, input.src, port, KEY1, roffset));
            if pos == NONE {
                break;
            }
            if ctx.available(pos as usize) {
                return Some(pos as usize);
            }
        }
        None
    }

    fn servers_changed(&mut self, _old: &Service, new: &Service) {
        self.populate(new);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::lb::load::DestId;
    use crate::lb::service::{SchedFlags, ServiceConfig};
    use std::net::Ipv4Addr;

    fn mh_svc(weights: &[u32], size: u32, fallback: bool, port: bool) -> Service {
        let cfg = ServiceConfig {
            flags: SchedFlags {
                mh_fallback: fallback,
                mh_port: port,
                ..SchedFlags::default()
            },
            mh_table_size: size,
            ..ServiceConfig::with_scheduler("mh")
        };
        svc_cfg(cfg, weights)
    }

    #[test]
    fn siphash_reference_vectors() {
        // SipHash-2-4 paper vectors, key 00..0f: empty message and 00..0e.
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(siphash(2, 4, k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash(2, 4, k0, k1, &msg), 0xa129_ca61_49be_45e5);
        // The 4-byte 1-3 fast path agrees with the general form.
        for v in [0u32, 1, 0xC612_0101, u32::MAX] {
            let general = siphash(1, 3, KEY1, KEY1, &v.to_le_bytes()) as u32;
            assert_eq!(hsiphash_u32(v, KEY1), general);
        }
        // Values from an independent Python transcription of lib/siphash.c.
        assert_eq!(hsiphash_u32(0, KEY1), 0x1d5a_77c2);
        assert_eq!(hsiphash_u32(1, KEY1), 0x16ec_66b2);
        assert_eq!(hsiphash_u32(0xC612_0101, KEY2), 0x0d4c_a4da);
    }

    #[test]
    fn kernel_table_and_lookups_small() {
        // Servers 198.18.1.1..3 port 80, weights 1 2 3, table 251 (bits 4,
        // gcd 1, max 3 fits: no shift; turns 1 2 3). Offsets/skips:
        // .1 → 248/101, .2 → 79/216, .3 → 176/181. Slot counts 42/84/125
        // and the first 20 slots come from the Python transcription.
        let s = mh_svc(&[1, 2, 3], 251, false, false);
        let mut mh = Maglev::new(&s);
        let counts: Vec<usize> = (0..3u32)
            .map(|p| mh.table().iter().filter(|&&t| t == p).count())
            .collect();
        assert_eq!(counts, vec![42, 84, 125]);
        assert_eq!(
            &mh.table()[..20],
            &[0, 2, 2, 0, 2, 1, 0, 2, 2, 1, 1, 2, 0, 2, 2, 1, 2, 1, 0, 2]
        );
        let load = FakeLoad::new(3);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 3],
        };
        // 10.0.0.1 → hsiphash 0x03080CE4 mod 251 = 110 → pos 0, etc.
        for (src, want) in [
            ("10.0.0.1", 0),
            ("10.0.0.2", 2),
            ("10.0.0.3", 1),
            ("192.0.2.7", 1),
        ] {
            let inp = input(src.parse().unwrap(), 1024);
            assert_eq!(mh.schedule(&ctx, &inp), Some(want), "{src}");
        }
        // mh-port: the source port joins the hash.
        let sp = mh_svc(&[1, 2, 3], 251, false, true);
        let mut mhp = Maglev::new(&sp);
        let ctx = SchedCtx { svc: &sp, ..ctx };
        for (src, want) in [
            ("10.0.0.1", 2),
            ("10.0.0.2", 2),
            ("10.0.0.3", 0),
            ("192.0.2.7", 0),
        ] {
            let inp = input(src.parse().unwrap(), 1024);
            assert_eq!(mhp.schedule(&ctx, &inp), Some(want), "{src}");
        }
    }

    #[test]
    fn fallback_rehashes_with_offsets() {
        // Position 2 overloaded. 10.0.0.2 maps to pos 2: nothing without
        // fallback; with it the kernel's offset probe lands on pos 1.
        // 10.0.0.1 maps to pos 0 and is unaffected.
        let load = FakeLoad::new(3);
        let flags = [false, false, true];
        let plain = mh_svc(&[1, 2, 3], 251, false, false);
        let ctx = SchedCtx {
            svc: &plain,
            load: &load,
            overloaded: &flags,
        };
        let inp2 = input("10.0.0.2".parse().unwrap(), 1);
        assert_eq!(Maglev::new(&plain).schedule(&ctx, &inp2), None);
        let fb = mh_svc(&[1, 2, 3], 251, true, false);
        let mut mh = Maglev::new(&fb);
        let ctx = SchedCtx { svc: &fb, ..ctx };
        assert_eq!(mh.schedule(&ctx, &inp2), Some(1));
        for (src, want) in [("10.0.0.1", 0), ("10.0.0.3", 1), ("192.0.2.7", 1)] {
            assert_eq!(
                mh.schedule(&ctx, &input(src.parse().unwrap(), 1)),
                Some(want)
            );
        }
        let ctx = SchedCtx {
            overloaded: &[true; 3],
            ..ctx
        };
        assert_eq!(mh.schedule(&ctx, &inp2), None);
    }

    #[test]
    fn quiesced_server_keeps_its_slots() {
        // Weight set to 0 after being added: last_weight keeps its turns, so
        // the table is unchanged and only its clients move (with fallback).
        let s = mh_svc(&[1, 2, 3], 251, true, false);
        let mut q = s.clone();
        q.servers[2].weight = 0;
        assert_eq!(Maglev::new(&s).table(), Maglev::new(&q).table());
        // Added with weight 0 (last_weight 0): no slots at all.
        let mut z = s.clone();
        z.servers[2].weight = 0;
        z.servers[2].last_weight = 0;
        assert!(!Maglev::new(&z).table().contains(&2));
        // Nothing with a weight: empty table.
        let none = mh_svc(&[0, 0], 251, true, false);
        assert!(Maglev::new(&none).table().iter().all(|&t| t == NONE));
    }

    #[test]
    fn large_weights_are_shifted() {
        // Table 4093: bits 6. Weights 1000 and 3000, gcd 1000: 1 and 3, no
        // shift. Weights 1 and 65535: gcd 1, max 65535 has 16 bits → shift
        // 10: turns 1 (from the "at least one" rule) and 63.
        let a = Maglev::new(&mh_svc(&[1000, 3000], 4093, false, false));
        let b = Maglev::new(&mh_svc(&[1, 3], 4093, false, false));
        assert_eq!(a.table(), b.table());
        let c = Maglev::new(&mh_svc(&[1, 65535], 4093, false, false));
        let d = Maglev::new(&mh_svc(&[1, 63], 4093, false, false));
        assert_eq!(c.table(), d.table());
        assert_eq!((tab_bits(251), tab_bits(4093), tab_bits(131071)), (4, 6, 8));
    }

    fn servers_v4(n: u32, size: u32) -> Service {
        let weights: Vec<u32> = (0..n).map(|_| 1).collect();
        let mut s = mh_svc(&weights, size, false, false);
        for (i, srv) in s.servers.iter_mut().enumerate() {
            srv.addr = IpAddr::V4(Ipv4Addr::from(0xC612_0000 + 7 * i as u32 + 1));
        }
        s
    }

    fn owners(m: &Maglev, svc: &Service) -> Vec<DestId> {
        m.table()
            .iter()
            .map(|&p| svc.servers[p as usize].id)
            .collect()
    }

    #[test]
    fn removing_one_server_moves_little() {
        // Maglev's promise: removing one of N servers reassigns its own
        // ~1/N of the table and disturbs few other slots: at most 1/N + 2%
        // in all, given the table has well over 100 slots per server (as
        // the Maglev paper advises; at 4093 slots and 50 servers the other
        // slots moved are ~3%).
        for (n, size) in [
            (5u32, 4093),
            (10, 4093),
            (20, 4093),
            (50, 8191),
            (100, 16381),
        ] {
            let full = servers_v4(n, size);
            let before = owners(&Maglev::new(&full), &full);
            for gone in [0, n / 2, n - 1] {
                let mut less = full.clone();
                less.servers.remove(gone as usize);
                let after = owners(&Maglev::new(&less), &less);
                let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
                let frac = moved as f64 / before.len() as f64;
                assert!(frac <= 1.0 / n as f64 + 0.02, "n {n} gone {gone}: {frac}");
            }
        }
    }

    #[test]
    fn large_tables_match_the_reference_transcription() {
        // Checksums (c = c * 31 + position + 1, mod 2^32, over the table)
        // and slot counts from the Python transcription of ip_vs_mh.c for
        // servers 0xC6120001 + 7i, weights 1 2 3 1 2 3 …; and the number of
        // slots that change owner when the first server is removed.
        for (n, size, sum, counts, moved) in [
            (
                50u32,
                4093u32,
                0x1006_0cfdu32,
                [42usize, 84, 126, 42, 84, 126, 42],
                180usize,
            ),
            (
                7,
                131071,
                0x5b30_b4c3,
                [10083, 20166, 30248, 10082, 20164, 30246, 10082],
                10192,
            ),
        ] {
            let weights: Vec<u32> = (0..n).map(|i| 1 + i % 3).collect();
            let mut s = mh_svc(&weights, size, false, false);
            for (i, srv) in s.servers.iter_mut().enumerate() {
                srv.addr = IpAddr::V4(Ipv4Addr::from(0xC612_0000 + 7 * i as u32 + 1));
            }
            let m = Maglev::new(&s);
            let c = m
                .table()
                .iter()
                .fold(0u32, |c, &p| c.wrapping_mul(31).wrapping_add(p + 1));
            assert_eq!(c, sum, "n {n}");
            for (p, &want) in counts.iter().enumerate() {
                assert_eq!(m.table().iter().filter(|&&t| t == p as u32).count(), want);
            }
            let mut less = s.clone();
            less.servers.remove(0);
            let (a, b) = (owners(&m, &s), owners(&Maglev::new(&less), &less));
            assert_eq!(a.iter().zip(&b).filter(|(x, y)| x != y).count(), moved);
        }
    }

    #[test]
    fn same_table_across_instances_and_rebuilds() {
        let s = servers_v4(20, DEFAULT_MH_TABLE_SIZE);
        let mut a = Maglev::new(&s);
        let mut b = Maglev::new(&s.clone());
        assert_eq!(a.table(), b.table());
        let before = a.table().to_vec();
        a.servers_changed(&s, &s);
        assert_eq!(a.table(), &before[..]);
        let load = FakeLoad::new(20);
        let flags = vec![false; 20];
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &flags,
        };
        for i in 0..2_000u32 {
            let inp = input(client(i), i as u16);
            assert_eq!(a.schedule(&ctx, &inp), b.schedule(&ctx, &inp));
        }
    }

    #[test]
    fn shares_follow_weight() {
        let s = mh_svc(&[1, 2, 5], DEFAULT_MH_TABLE_SIZE, false, false);
        let mut mh = Maglev::new(&s);
        let c = shares(&mut mh, &s, 100_000);
        for (got, want) in c.iter().zip([12_500u32, 25_000, 62_500]) {
            assert!(got.abs_diff(want) < 1_500, "{c:?}");
        }
    }

    #[test]
    fn ipv6_folds_addresses() {
        // An IPv6 service hashes the XOR of the address words: two clients
        // with the same fold get the same server.
        let mut s = mh_svc(&[1, 1, 1, 1], 251, false, false);
        s.key = crate::lb::service::ServiceKey::tcp("2001:db8::100".parse().unwrap(), 80);
        for (i, srv) in s.servers.iter_mut().enumerate() {
            srv.addr = format!("2001:db8::{}", i + 1).parse().unwrap();
        }
        let mut mh = Maglev::new(&s);
        let load = FakeLoad::new(4);
        let ctx = SchedCtx {
            svc: &s,
            load: &load,
            overloaded: &[false; 4],
        };
        // Words 2001:0db8, 0, 0, 0001:0002 and 2001:0db8, 0, 0001:0002, 0.
        let a = input("2001:db8::1:2".parse().unwrap(), 1);
        let b = input("2001:db8::1:2:0:0".parse().unwrap(), 1);
        assert_eq!(
            fold_addr(AddrFamily::Inet6, a.src),
            fold_addr(AddrFamily::Inet6, b.src)
        );
        assert_eq!(mh.schedule(&ctx, &a), mh.schedule(&ctx, &b));
        assert!(mh.schedule(&ctx, &a).is_some());
    }
}
