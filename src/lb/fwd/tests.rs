//! Rewrite primitives against full recomputation by `PacketBuilder`.

use super::*;
use crate::lb::packet::VecPacket;
use crate::wire::{tcp, IpProtocol, MacAddr, PacketBuilder};

const A: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const C: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const D: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

fn eth() -> PacketBuilder {
    PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
}

fn info(frame: &[u8]) -> PacketInfo {
    classify(frame).unwrap().unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn incremental_rewrites_match_full_recomputation() {
    let mut rng = Rng(99);
    for i in 0..3000 {
        let r = rng.next();
        let (s0, d0) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
        let r2 = rng.next();
        let (s1, d1) = (Ipv4Addr::from(r2 as u32), Ipv4Addr::from((r2 >> 32) as u32));
        let p = rng.next();
        let ports = [
            (p as u16),
            (p >> 16) as u16,
            (p >> 32) as u16,
            (p >> 48) as u16,
        ];
        let mut payload = vec![0u8; (rng.next() % 40) as usize];
        for b in &mut payload {
            *b = rng.next() as u8;
        }
        let ttl = 2 + (rng.next() % 250) as u8;
        let mk = |s, d, sp, dp, ttl| {
            let b = eth().ipv4(s, d).ttl(ttl).ident(i as u16);
            let b = if i % 2 == 0 {
                b.tcp(sp, dp, tcp::ACK).seq(i as u32)
            } else {
                b.udp(sp, dp)
            };
            b.payload(&payload).build()
        };
        let mut frame = mk(s0, d0, ports[0], ports[1], ttl);
        let inf = info(&frame);
        rewrite(
            &mut frame,
            &inf,
            (s1, ports[2]),
            (d1, ports[3]),
            true,
            L4Csum::Update,
        );
        assert_eq!(frame, mk(s1, d1, ports[2], ports[3], ttl - 1), "case {i}");
    }
}

/// The one-bounds-check rewrite writes exactly what the per-field one
/// does: on whole frames (TCP, UDP with and without checksum; every
/// combination of changed fields, TTL and checksum mode) and on frames cut
/// anywhere from inside the IP header to past the L4 checksum.
#[test]
fn rewrite_agrees_with_the_per_field_rewrite_on_whole_and_cut_frames() {
    let mut rng = Rng(7);
    for i in 0..1200u32 {
        let r = rng.next();
        let (s0, d0) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
        let r2 = rng.next();
        let (s1, d1) = (Ipv4Addr::from(r2 as u32), Ipv4Addr::from((r2 >> 32) as u32));
        let p = rng.next();
        let b = eth().ipv4(s0, d0).ttl(2 + (i % 200) as u8);
        let whole = match i % 3 {
            0 => b.tcp(p as u16, (p >> 16) as u16, tcp::SYN).build(),
            1 => b
                .udp(p as u16, (p >> 16) as u16)
                .payload(&[1, 2, 3])
                .build(),
            _ => b.udp(p as u16, (p >> 16) as u16).l4_checksum(0).build(),
        };
        let inf = info(&whole);
        let m = rng.next();
        // each field changed or kept
        let src = (
            if m & 1 != 0 { s1 } else { s0 },
            if m & 2 != 0 {
                (p >> 32) as u16
            } else {
                p as u16
            },
        );
        let dst = (
            if m & 4 != 0 { d1 } else { d0 },
            if m & 8 != 0 {
                (p >> 48) as u16
            } else {
                (p >> 16) as u16
            },
        );
        let dec_ttl = m & 16 != 0;
        let csum = if m & 32 != 0 {
            L4Csum::Update
        } else {
            L4Csum::Skip
        };
        let end = inf.l4 + 20;
        for cut in (inf.l3 + 7..=end.min(whole.len())).chain([whole.len()]) {
            let mut fast = whole[..cut].to_vec();
            let mut slow = fast.clone();
            rewrite(&mut fast, &inf, src, dst, dec_ttl, csum);
            rewrite_per_field(&mut slow, &inf, src, dst, dec_ttl, csum);
            assert_eq!(fast, slow, "case {i}, cut at {cut}");
        }
    }
}

#[test]
fn udp_checksum_rules() {
    // Find the payload word that makes the rewritten datagram sum to zero:
    // its checksum must be sent as 0xffff, never 0.
    let probe = eth()
        .ipv4(A, C)
        .ttl(63)
        .udp(1000, 53)
        .payload(&[0, 0])
        .build();
    let c0 = u16::from_be_bytes([probe[40], probe[41]]);
    let payload = c0.to_be_bytes();
    let mut frame = eth()
        .ipv4(A, B)
        .ttl(64)
        .udp(1000, 53)
        .payload(&payload)
        .build();
    let want = eth()
        .ipv4(A, C)
        .ttl(63)
        .udp(1000, 53)
        .payload(&payload)
        .build();
    assert_eq!(&want[40..42], &[0xff, 0xff]);
    let inf = info(&frame);
    nat_request(&mut frame, &inf, C, 53, L4Csum::Update);
    assert_eq!(frame, want);
    // And back: 0xffff stays a valid encoding of zero.
    let inf = info(&frame);
    rewrite(&mut frame, &inf, (A, 1000), (B, 53), false, L4Csum::Update);
    let back = eth()
        .ipv4(A, B)
        .ttl(63)
        .udp(1000, 53)
        .payload(&payload)
        .build();
    assert_eq!(frame, back);
    // No checksum (0) stays none.
    let mut none = eth().ipv4(A, B).udp(1, 2).l4_checksum(0).build();
    let inf = info(&none);
    fullnat_request(&mut none, &inf, (D, 5000), (C, 8080), L4Csum::Update);
    assert_eq!(&none[40..42], &[0, 0]);
}

#[test]
fn skip_leaves_the_l4_checksum_to_the_nic() {
    let mut frame = eth().ipv4(A, B).tcp(1, 80, tcp::SYN).build();
    let before = frame[50..52].to_vec();
    let inf = info(&frame);
    nat_request(&mut frame, &inf, C, 8080, L4Csum::Skip);
    assert_eq!(&frame[50..52], &before[..]);
    // The IP header is still right.
    let want = eth().ipv4(A, C).ttl(63).tcp(1, 8080, tcp::SYN).build();
    assert_eq!(&frame[..34], &want[..34]);
    assert_eq!(&frame[34..50], &want[34..50]);
}

#[test]
fn tun_moves_a_vlan_header_and_drops_padding() {
    let inner = eth()
        .vlan(9)
        .ipv4(A, B)
        .tcp(1, 80, tcp::SYN)
        .pad_to(64)
        .build();
    let mut p = VecPacket::new(&inner);
    let inf = info(p.data());
    assert_eq!(inf.l3, 18);
    tun_encap(&mut p, &inf, D, C, 1500, 0x1234).unwrap();
    let inner_ip = PacketBuilder::new()
        .ipv4(A, B)
        .ttl(63)
        .tcp(1, 80, tcp::SYN)
        .build();
    let want = eth()
        .vlan(9)
        .ipv4(D, C)
        .ident(0x1234)
        .ip_proto(IpProtocol::IPIP)
        .payload(&inner_ip)
        .build();
    assert_eq!(p.data(), &want[..]);
    assert_eq!(p.headroom(), VecPacket::DEFAULT_HEADROOM - 20);
    // MTU check before anything changes.
    let mut q = VecPacket::new(&inner);
    let inf = info(q.data());
    assert_eq!(
        tun_encap(&mut q, &inf, D, C, 59, 0),
        Err(TunError::FragNeeded)
    );
    assert_eq!(q.data(), &inner[..]);
    assert_eq!(tun_encap(&mut q, &inf, D, C, 60, 0), Ok(()));
}

#[test]
fn icmp_errors_grow_or_shrink_the_frame() {
    // A 54-byte SYN: the 70-byte error needs 16 more bytes.
    let syn = eth().ipv4(A, B).ttl(1).tcp(1, 80, tcp::SYN).build();
    let mut p = VecPacket::new(&syn);
    let inf = info(p.data());
    assert!(time_exceeded(&mut p, &inf));
    let want = eth()
        .ipv4(B, A)
        .tos(0xc0)
        .dont_frag(false)
        .icmp(11, 0, 0)
        .payload(&syn[14..42])
        .build();
    assert_eq!(p.data(), &want[..]);
    // No tailroom: refused, unchanged.
    let mut tight = VecPacket::with_room(&syn, 0, 0);
    assert!(!time_exceeded(&mut tight, &inf));
    assert_eq!(tight.data(), &syn[..]);
    // Never an error about an ICMP error.
    let quoted = PacketBuilder::new().ipv4(B, A).udp(1, 2).build();
    let err = eth().ipv4(C, A).icmp(3, 3, 0).payload(&quoted).build();
    let mut e = VecPacket::new(&err);
    let inf = info(e.data());
    assert!(!time_exceeded(&mut e, &inf));
    // Frag needed advertises MTU - 20 and shrinks a big frame.
    let big = eth()
        .ipv4(A, B)
        .tcp(1, 80, tcp::ACK)
        .payload(&[1; 1460])
        .build();
    let mut b = VecPacket::new(&big);
    let inf = info(b.data());
    assert!(frag_needed(&mut b, &inf, 1500));
    assert_eq!(b.len(), 14 + 20 + 8 + 28);
    assert_eq!(&b.data()[38..42], &[0, 0, 0x05, 0xc8]);
}

#[test]
fn icmp_quote_parsing() {
    let quoted = PacketBuilder::new()
        .ipv4(A, C)
        .tcp(1000, 8080, tcp::SYN)
        .build();
    let err = eth()
        .ipv4(C, A)
        .icmp(3, 3, 0)
        .payload(&quoted[..28])
        .build();
    let q = info(&err).icmp.unwrap();
    assert_eq!(
        (q.msg_type, q.code, q.ip, q.l4, q.proto),
        (3, 3, 42, 62, PROTO_TCP)
    );
    assert_eq!((q.src, q.dst, q.sport, q.dport), (A, C, 1000, 8080));
    // Too short a quote, a redirect, a quoted ICMP: unrelated.
    for e in [
        eth()
            .ipv4(C, A)
            .icmp(3, 3, 0)
            .payload(&quoted[..27])
            .build(),
        eth()
            .ipv4(C, A)
            .icmp(5, 0, 0)
            .payload(&quoted[..28])
            .build(),
        eth()
            .ipv4(C, A)
            .icmp(11, 0, 0)
            .payload(
                &PacketBuilder::new()
                    .ipv4(A, C)
                    .icmp_echo_request(1, 1)
                    .build(),
            )
            .build(),
    ] {
        assert_eq!(info(&e).icmp, None);
    }
    // A quoted UDP datagram with checksum 0 keeps it through translation.
    let quoted = PacketBuilder::new()
        .ipv4(A, C)
        .udp(1000, 53)
        .l4_checksum(0)
        .build();
    let mut err = eth().ipv4(C, A).icmp(3, 3, 0).payload(&quoted).build();
    let inf = info(&err);
    let q = inf.icmp.unwrap();
    let t = IcmpTranslation {
        outer_src: B,
        outer_dst: A,
        quote_src: (A, 1000),
        quote_dst: (B, 53),
    };
    translate_icmp_error(&mut err, &inf, &q, &t);
    let quoted_want = PacketBuilder::new()
        .ipv4(A, B)
        .udp(1000, 53)
        .l4_checksum(0)
        .build();
    let want = eth()
        .ipv4(B, A)
        .ttl(63)
        .icmp(3, 3, 0)
        .payload(&quoted_want)
        .build();
    assert_eq!(err, want);
}
