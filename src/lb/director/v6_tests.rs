//! IPv6 through CoreLb: exact expected frames for every method (built
//! independently by [`PacketBuilder`], which computes every checksum from
//! scratch), ICMPv6 errors sent and relayed, malformed IPv6 dropped with a
//! counted reason, and random garbage behind an IPv6 EtherType.

use super::*;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::wire::{checksum, icmpv6, tcp, IpProtocol, MacAddr, PacketBuilder};

const CMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const DMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd]);
const CIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xc, 0, 0, 0, 7);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
const RIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x11);
const LIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const DIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const CPORT: u16 = 40000;
const VPORT: u16 = 80;
const RPORT: u16 = 8080;

fn eth() -> PacketBuilder {
    PacketBuilder::ethernet(CMAC, DMAC)
}

fn seg(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8, hop: u8) -> PacketBuilder {
    eth()
        .ipv6(src.0, dst.0)
        .ttl(hop)
        .tcp(src.1, dst.1, flags)
        .seq(0x1000_0000 + u32::from(flags))
        .ack(0x2000_0000)
        .window(29200)
        .payload(b"hello")
}

fn udp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), hop: u8) -> PacketBuilder {
    eth()
        .ipv6(src.0, dst.0)
        .ttl(hop)
        .udp(src.1, dst.1)
        .payload(b"query")
}

fn to(a: Ipv6Addr) -> FwdVerdict {
    FwdVerdict::Forward {
        next_hop: IpAddr::V6(a),
    }
}

fn lb_for(method: FwdMethod, servers: &[IpAddr], edit: impl FnOnce(&mut ServiceConfig)) -> CoreLb {
    let mut t = ServiceTable::new(16);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.local_addresses = vec![IpAddr::V6(LIP)];
    edit(&mut cfg);
    let rport = if matches!(method, FwdMethod::Route | FwdMethod::Tunnel) {
        VPORT
    } else {
        RPORT
    };
    for key in [
        ServiceKey::tcp(IpAddr::V6(VIP), VPORT),
        ServiceKey::udp(IpAddr::V6(VIP), VPORT),
    ] {
        t.add_service(key, cfg.clone()).unwrap();
        for &a in servers.iter().rev() {
            t.add_dest(&key, RealServerConfig::new(a, rport, method))
                .unwrap();
        }
    }
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let c = CoreLbConfig {
        tun_source: DIP4,
        tun_source6: DIP6,
        conn_capacity: 1024,
        conn_capacity6: 1024,
        hash_seed: Some(7),
        ..CoreLbConfig::default()
    };
    CoreLb::new(c, t.snapshot(), global, None, 0).unwrap()
}

fn run(lb: &mut CoreLb, frame: &[u8]) -> (FwdVerdict, Vec<u8>) {
    let mut p = VecPacket::with_room(frame, 128, 1400);
    let v = lb.process(&mut p, None, 1000);
    (v, p.to_vec())
}

/// The L4 checksum of the IPv6 packet at 14 (no extension headers),
/// recomputed from scratch: 0 if it verifies.
fn l4_verify(frame: &[u8]) -> u16 {
    let ip = &frame[14..];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let l4 = &ip[40..40 + plen];
    let pseudo = checksum::pseudo_header_v6(&src, &dst, ip[6], plen as u32);
    !checksum::combine(&[pseudo, checksum::data(l4)])
}

#[test]
fn nat_both_directions_exact() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(v, to(RIP));
    assert_eq!(
        out,
        seg((CIP, CPORT), (RIP, RPORT), tcp::SYN, 63).build(),
        "request: dst VIP:vport -> RIP:rport, hop limit - 1"
    );
    assert_eq!(l4_verify(&out), 0);
    let synack = seg((RIP, RPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 64).build();
    let (v, out) = run(&mut lb, &synack);
    assert_eq!(v, to(CIP));
    assert_eq!(
        out,
        seg((VIP, VPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 63).build()
    );
    assert_eq!(l4_verify(&out), 0);
    assert_eq!(lb.conns6().len(), 1);
    assert_eq!(lb.conns().len(), 0);
    // UDP too, checksum over the pseudo-header
    let q = udp((CIP, 5353), (VIP, VPORT), 9).build();
    let (v, out) = run(&mut lb, &q);
    assert_eq!(v, to(RIP));
    assert_eq!(out, udp((CIP, 5353), (RIP, RPORT), 8).build());
    assert_eq!(l4_verify(&out), 0);
    let r = udp((RIP, RPORT), (CIP, 5353), 9).build();
    let (v, out) = run(&mut lb, &r);
    assert_eq!(v, to(CIP));
    assert_eq!(out, udp((VIP, VPORT), (CIP, 5353), 8).build());
}

#[test]
fn dr_rewrites_nothing_but_the_hop_limit() {
    let mut lb = lb_for(FwdMethod::Route, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(v, to(RIP));
    assert_eq!(out, seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 63).build());
    // the established flow follows the connection
    let ack = seg((CIP, CPORT), (VIP, VPORT), tcp::ACK, 64).build();
    assert_eq!(run(&mut lb, &ack).0, to(RIP));
}

#[test]
fn fullnat_both_directions_exact() {
    let mut lb = lb_for(FwdMethod::FullNat, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(v, to(RIP));
    // the local port is the pool's choice: read it back
    let lport = u16::from_be_bytes([out[54], out[55]]);
    assert!(lport >= crate::lb::laddr::DEFAULT_PORT_MIN);
    assert_eq!(out, seg((LIP, lport), (RIP, RPORT), tcp::SYN, 63).build());
    assert_eq!(l4_verify(&out), 0);
    let synack = seg((RIP, RPORT), (LIP, lport), tcp::SYN | tcp::ACK, 64).build();
    let (v, out) = run(&mut lb, &synack);
    assert_eq!(v, to(CIP));
    assert_eq!(
        out,
        seg((VIP, VPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 63).build()
    );
}

#[test]
fn fullnat_without_an_ipv6_local_address_is_dropped() {
    let mut lb = lb_for(FwdMethod::FullNat, &[IpAddr::V6(RIP)], |c| {
        c.local_addresses = vec![IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1))];
    });
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    assert_eq!(
        run(&mut lb, &syn).0,
        FwdVerdict::Drop(FwdDrop::NoLocalAddress)
    );
    assert_eq!(lb.stats().drop_count(FwdDrop::NoLocalAddress), 1);
}

#[test]
fn tun_ipv6_in_ipv6_exact() {
    let mut lb = lb_for(FwdMethod::Tunnel, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(v, to(RIP));
    let inner = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 63).build();
    let want = eth()
        .ipv6(DIP6, RIP)
        .ttl(64)
        .ip_proto(IpProtocol::IPV6)
        .payload(&inner[14..])
        .build();
    assert_eq!(out, want);
}

#[test]
fn tun_ipv6_in_ipv4_for_an_ipv4_server() {
    let mut lb = lb_for(FwdMethod::Tunnel, &[IpAddr::V4(RIP4)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(
        v,
        FwdVerdict::Forward {
            next_hop: IpAddr::V4(RIP4)
        }
    );
    let inner = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 63).build();
    let want = eth()
        .ipv4(DIP4, RIP4)
        .ttl(64)
        .ident(0)
        .dont_frag(true)
        .ip_proto(IpProtocol(41))
        .payload(&inner[14..])
        .build();
    assert_eq!(out, want, "protocol 41, EtherType IPv4");
    assert_eq!(checksum::checksum(&out[14..34]), 0);
}

#[test]
fn tun_too_big_gets_packet_too_big() {
    let mut lb = lb_for(FwdMethod::Tunnel, &[IpAddr::V6(RIP)], |_| {});
    // 1500-byte packet: 1540 with the outer header, above the 1500 MTU
    let big = eth()
        .ipv6(CIP, VIP)
        .ttl(64)
        .udp(CPORT, VPORT)
        .payload(&[0x5a; 1452])
        .build();
    assert_eq!(big.len(), 14 + 1500);
    let (v, out) = run(&mut lb, &big);
    assert_eq!(v, to(CIP));
    let ip = &out[14..];
    assert_eq!(u16::from_be_bytes([out[12], out[13]]), 0x86dd);
    assert_eq!(ip[6], 58, "ICMPv6");
    assert_eq!(&ip[8..24], &VIP.octets(), "from the VIP");
    assert_eq!(&ip[24..40], &CIP.octets(), "to the client");
    assert_eq!(ip[40], icmpv6::TYPE_PACKET_TOO_BIG);
    assert_eq!(ip[41], 0);
    assert_eq!(u32::from_be_bytes([ip[44], ip[45], ip[46], ip[47]]), 1460);
    // quoting as much as fits in 1280 bytes, from the original's start
    assert_eq!(ip.len(), 1280);
    assert_eq!(&ip[48..], &big[14..14 + 1280 - 48]);
    assert_eq!(l4_verify(&out), 0, "ICMPv6 checksum from scratch");
    assert_eq!(lb.stats().event(FwdEvent::FragNeededSent), 1);
}

#[test]
fn hop_limit_one_gets_time_exceeded_and_replies_are_dropped() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 1).build();
    let (v, out) = run(&mut lb, &syn);
    assert_eq!(v, to(CIP));
    let ip = &out[14..];
    assert_eq!(ip[40], icmpv6::TYPE_TIME_EXCEEDED);
    assert_eq!(&ip[8..24], &VIP.octets());
    assert_eq!(&ip[48..], &syn[14..]);
    assert_eq!(l4_verify(&out), 0);
    assert_eq!(lb.stats().drop_count(FwdDrop::TtlExpired), 1);
    // established, a reply with hop limit 1 is dropped
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    assert_eq!(run(&mut lb, &syn).0, to(RIP));
    let reply = seg((RIP, RPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 1).build();
    assert_eq!(
        run(&mut lb, &reply).0,
        FwdVerdict::Drop(FwdDrop::TtlExpired)
    );
}

/// `frame` with `ext` (extension headers, next header fields filled by the
/// caller except the last one's) inserted after the fixed header, whose
/// next header becomes `first`.
fn with_ext(frame: &[u8], first: u8, ext: &[u8]) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let plen = u16::from_be_bytes([out[18], out[19]]) as usize + ext.len();
    out[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    let upper = out[20];
    out[20] = first;
    let mut ext = ext.to_vec();
    // the last header's next header is the upper layer
    let mut at = 0;
    loop {
        let len = if first == 44 {
            8
        } else {
            (usize::from(ext[at + 1]) + 1) * 8
        };
        if at + len >= ext.len() {
            ext[at] = upper;
            break;
        }
        at += len;
    }
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

#[test]
fn extension_headers_are_walked_and_kept() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    // hop-by-hop (PadN) then destination options (PadN)
    let ext = [
        60, 0, 1, 4, 0, 0, 0, 0, //
        0, 0, 1, 4, 0, 0, 0, 0,
    ];
    let input = with_ext(&syn, 0, &ext);
    let (v, out) = run(&mut lb, &input);
    assert_eq!(v, to(RIP));
    let want = with_ext(
        &seg((CIP, CPORT), (RIP, RPORT), tcp::SYN, 63).build(),
        0,
        &ext,
    );
    assert_eq!(out, want);
}

#[test]
fn malformed_ipv6_is_dropped_and_counted() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let mut cases: Vec<(&str, Vec<u8>, FwdDrop)> = Vec::new();
    cases.push((
        "truncated header",
        syn[..14 + 39].to_vec(),
        FwdDrop::TruncatedIp,
    ));
    let mut v = syn.clone();
    v[14] = 0x40;
    cases.push(("version 4 under 86dd", v, FwdDrop::BadIpVersion));
    let mut v = syn.clone();
    v[18..20].copy_from_slice(&1000u16.to_be_bytes());
    cases.push((
        "payload length beyond the frame",
        v,
        FwdDrop::BadTotalLength,
    ));
    let mut v = syn.clone();
    v[18..20].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("payload length cuts TCP", v, FwdDrop::TruncatedL4));
    // nine destination options headers: longer than the walker's 8
    let mut nine = Vec::new();
    for _ in 0..9 {
        nine.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    cases.push((
        "chain too long",
        with_ext(&syn, 60, &nine),
        FwdDrop::Ipv6ExtHeaders,
    ));
    // a header whose length runs past the payload
    let mut cut = with_ext(&syn, 60, &[6, 0, 1, 4, 0, 0, 0, 0]);
    cut[55] = 200;
    cases.push(("truncated extension header", cut, FwdDrop::Ipv6ExtHeaders));
    // an extension header the walker cannot cross (mobility)
    let mut mobility = syn.clone();
    mobility[20] = 135;
    cases.push((
        "unknown extension header",
        mobility,
        FwdDrop::Ipv6ExtHeaders,
    ));
    // fragments: first (offset 0, M) and later
    let first = with_ext(&syn, 44, &[6, 0, 0, 1, 0, 0, 0, 9]);
    cases.push(("first fragment", first, FwdDrop::Ipv6Fragment));
    let later = with_ext(&syn, 44, &[6, 0, 0x05, 0x00, 0, 0, 0, 9]);
    cases.push(("later fragment", later, FwdDrop::Ipv6Fragment));
    let mut udp_bad = udp((CIP, 5353), (VIP, VPORT), 64).build();
    udp_bad[14 + 44..14 + 46].copy_from_slice(&200u16.to_be_bytes());
    cases.push(("udp length", udp_bad, FwdDrop::BadUdpLength));
    for (name, frame, why) in cases {
        let before = lb.stats().drop_count(why);
        assert_eq!(run(&mut lb, &frame).0, FwdVerdict::Drop(why), "{name}");
        assert_eq!(lb.stats().drop_count(why), before + 1, "{name}");
    }
    assert_eq!(lb.conns6().len(), 0);
    // an atomic fragment (offset 0, no more) is a whole packet
    let atomic = with_ext(&syn, 44, &[6, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(run(&mut lb, &atomic).0, to(RIP));
}

#[test]
fn icmpv6_errors_of_a_nat_connection_are_relayed() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (_, fwded) = run(&mut lb, &syn);
    // a router toward the server says the server is unreachable, quoting
    // the request as we sent it (to RIP:rport)
    let router = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0xfe);
    let err = eth()
        .ipv6(router, CIP)
        .ttl(64)
        .icmpv6(icmpv6::TYPE_DEST_UNREACHABLE, 3, 0)
        .payload(&fwded[14..])
        .build();
    let (v, out) = run(&mut lb, &err);
    assert_eq!(v, to(CIP));
    // the client sees it from the VIP about its own packet to the VIP
    let quoted = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 63).build();
    let want = eth()
        .ipv6(VIP, CIP)
        .ttl(63)
        .icmpv6(icmpv6::TYPE_DEST_UNREACHABLE, 3, 0)
        .payload(&quoted[14..])
        .build();
    assert_eq!(out, want);
    // a corrupted one is dropped
    let mut bad = err.clone();
    bad[14 + 42] ^= 1;
    assert_eq!(
        run(&mut lb, &bad).0,
        FwdVerdict::Drop(FwdDrop::BadIcmpChecksum)
    );
    // and an error about no connection is not ours
    let stray = eth()
        .ipv6(router, CIP)
        .icmpv6(icmpv6::TYPE_DEST_UNREACHABLE, 3, 0)
        .payload(&seg((CIP, 1), (RIP, RPORT), tcp::SYN, 63).build()[14..])
        .build();
    assert_eq!(run(&mut lb, &stray).0, FwdVerdict::NotService);
}

#[test]
fn persistence_uses_the_ipv6_prefix() {
    let rip2 = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x12);
    let mut lb = lb_for(
        FwdMethod::Route,
        &[IpAddr::V6(RIP), IpAddr::V6(rip2)],
        |c| {
            c.persistence = Some(300);
            c.persist_mask = Some(crate::lb::service::PersistMask::V6(64));
        },
    );
    // clients of one /64 stick to the first choice; rr would alternate
    let mut hops = Vec::new();
    for i in 0..4u16 {
        let c = Ipv6Addr::new(0x2001, 2, 0, 0xc, 0, 0, 0, 7 + i);
        let syn = seg((c, CPORT + i), (VIP, VPORT), tcp::SYN, 64).build();
        hops.push(run(&mut lb, &syn).0);
    }
    assert!(hops.iter().all(|h| *h == hops[0]), "{hops:?}");
    let other = Ipv6Addr::new(0x2001, 2, 0, 0xd, 0, 0, 0, 7);
    let syn = seg((other, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    assert_ne!(
        run(&mut lb, &syn).0,
        hops[0],
        "another /64 is scheduled anew"
    );
}

#[test]
fn ipv4_is_untouched_by_an_ipv6_service() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let v4 = eth()
        .ipv4(Ipv4Addr::new(198, 19, 0, 7), Ipv4Addr::new(198, 18, 0, 100))
        .tcp(CPORT, VPORT, tcp::SYN)
        .build();
    assert_eq!(run(&mut lb, &v4).0, FwdVerdict::NotService);
}

#[test]
fn random_garbage_behind_an_ipv6_ethertype_never_panics() {
    let mut lb = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP)], |_| {});
    let seed_frames = [
        seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build(),
        udp((CIP, 5353), (VIP, VPORT), 64).build(),
        with_ext(
            &seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build(),
            0,
            &[6, 0, 1, 4, 0, 0, 0, 0],
        ),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000u32 {
        let base = &seed_frames[round as usize % seed_frames.len()];
        let mut f = base.clone();
        // flip a few bytes after the EtherType, sometimes cut the frame
        for _ in 0..1 + next() % 4 {
            let at = 14 + (next() as usize % (f.len() - 14));
            f[at] = next() as u8;
        }
        if next() % 4 == 0 {
            let len = 14 + next() as usize % (f.len() - 13);
            f.truncate(len);
        }
        let mut p = VecPacket::with_room(&f, 128, 1400);
        let _ = lb.process(&mut p, None, u64::from(round));
    }
    lb.tick(10_000_000);
}

mod nat64 {
    use super::*;

    const LIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

    fn v4seg(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, ttl: u8) -> PacketBuilder {
        eth()
            .ipv4(src.0, dst.0)
            .ttl(ttl)
            .ident(0)
            .dont_frag(false)
            .tcp(src.1, dst.1, flags)
            .seq(0x1000_0000 + u32::from(flags))
            .ack(0x2000_0000)
            .window(29200)
            .payload(b"hello")
    }

    fn lb() -> CoreLb {
        lb_for(FwdMethod::FullNat, &[IpAddr::V4(RIP4)], |c| {
            c.local_addresses = vec![IpAddr::V6(LIP), IpAddr::V4(LIP4)];
        })
    }

    #[test]
    fn tcp_both_directions_exact() {
        let mut lb = lb();
        let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
        let (v, out) = run(&mut lb, &syn);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP4)
            }
        );
        let lport = u16::from_be_bytes([out[34], out[35]]);
        // an IPv4 packet from the IPv4 local address, checksums from scratch
        assert_eq!(
            out,
            v4seg((LIP4, lport), (RIP4, RPORT), tcp::SYN, 63).build(),
            "IPv6 -> IPv4"
        );
        assert_eq!(checksum::checksum(&out[14..34]), 0);
        let synack = v4seg((RIP4, RPORT), (LIP4, lport), tcp::SYN | tcp::ACK, 64).build();
        let (v, out) = run(&mut lb, &synack);
        assert_eq!(v, to(CIP));
        assert_eq!(
            out,
            seg((VIP, VPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 63).build(),
            "IPv4 -> IPv6"
        );
        assert_eq!(l4_verify(&out), 0);
        assert_eq!(lb.conns6().len(), 1);
        // the next request goes the same way
        let ack = seg((CIP, CPORT), (VIP, VPORT), tcp::ACK, 64).build();
        let (_, out) = run(&mut lb, &ack);
        assert_eq!(
            out,
            eth()
                .ipv4(LIP4, RIP4)
                .ttl(63)
                .ident(1)
                .dont_frag(false)
                .tcp(lport, RPORT, tcp::ACK)
                .seq(0x1000_0000 + u32::from(tcp::ACK))
                .ack(0x2000_0000)
                .window(29200)
                .payload(b"hello")
                .build()
        );
    }

    #[test]
    fn udp_without_checksum_gets_one_in_ipv6() {
        let mut lb = lb();
        let q = udp((CIP, 5353), (VIP, VPORT), 64).build();
        let (_, out) = run(&mut lb, &q);
        assert_eq!(u16::from_be_bytes([out[12], out[13]]), 0x0800);
        let lport = u16::from_be_bytes([out[34], out[35]]);
        let reply = eth()
            .ipv4(RIP4, LIP4)
            .ttl(64)
            .udp(RPORT, lport)
            .payload(b"query")
            .l4_checksum(0)
            .build();
        let (v, out) = run(&mut lb, &reply);
        assert_eq!(v, to(CIP));
        assert_eq!(out, udp((VIP, VPORT), (CIP, 5353), 63).build());
    }

    #[test]
    fn icmp_errors_are_translated_both_ways() {
        let mut lb = lb();
        let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
        let (_, sent) = run(&mut lb, &syn);
        let lport = u16::from_be_bytes([sent[34], sent[35]]);
        // the server's side: port unreachable about our IPv4 request
        let unreach = eth()
            .ipv4(RIP4, LIP4)
            .ttl(64)
            .icmp(3, 3, 0)
            .payload(&sent[14..])
            .build();
        let (v, out) = run(&mut lb, &unreach);
        assert_eq!(v, to(CIP));
        let want = eth()
            .ipv6(VIP, CIP)
            .ttl(63)
            .icmpv6(icmpv6::TYPE_DEST_UNREACHABLE, 4, 0)
            .payload(&seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 63).build()[14..])
            .build();
        assert_eq!(
            out, want,
            "ICMPv4 3/3 -> ICMPv6 1/4 about the client's packet"
        );
        // frag needed: Packet Too Big, 20 bytes more
        let frag = eth()
            .ipv4(RIP4, LIP4)
            .icmp(3, 4, 1400)
            .payload(&sent[14..14 + 28])
            .build();
        let (v, out) = run(&mut lb, &frag);
        assert_eq!(v, to(CIP));
        assert_eq!(out[54], icmpv6::TYPE_PACKET_TOO_BIG);
        assert_eq!(
            u32::from_be_bytes([out[58], out[59], out[60], out[61]]),
            1420
        );
        assert_eq!(l4_verify(&out), 0);
        // the client's side: port unreachable about our IPv6 reply
        let synack = v4seg((RIP4, RPORT), (LIP4, lport), tcp::SYN | tcp::ACK, 64).build();
        let (_, reply) = run(&mut lb, &synack);
        let back = eth()
            .ipv6(CIP, VIP)
            .ttl(64)
            .icmpv6(icmpv6::TYPE_DEST_UNREACHABLE, 4, 0)
            .payload(&reply[14..])
            .build();
        let (v, out) = run(&mut lb, &back);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP4)
            }
        );
        let quoted = eth()
            .ipv4(RIP4, LIP4)
            .ttl(63)
            .ident(0)
            .dont_frag(true)
            .tcp(RPORT, lport, tcp::SYN | tcp::ACK)
            .seq(0x1000_0000 + u32::from(tcp::SYN | tcp::ACK))
            .ack(0x2000_0000)
            .window(29200)
            .payload(b"hello")
            .build();
        let want = eth()
            .ipv4(LIP4, RIP4)
            .ttl(63)
            .ident(0)
            .dont_frag(false)
            .icmp(3, 3, 0)
            .payload(&quoted[14..])
            .build();
        assert_eq!(
            out, want,
            "ICMPv6 1/4 -> ICMPv4 3/3 about the server's packet"
        );
        // untranslatable: source quench
        let quench = eth()
            .ipv4(RIP4, LIP4)
            .icmp(4, 0, 0)
            .payload(&sent[14..14 + 28])
            .build();
        assert_eq!(
            run(&mut lb, &quench).0,
            FwdVerdict::Drop(FwdDrop::Nat64Untranslatable)
        );
    }

    #[test]
    fn large_requests_get_df_and_ipv4_noise_is_not_ours() {
        let mut lb = lb();
        let big = eth()
            .ipv6(CIP, VIP)
            .ttl(64)
            .udp(CPORT, VPORT)
            .payload(&[7; 1400])
            .build();
        let (_, out) = run(&mut lb, &big);
        assert_eq!(out.len(), 14 + 20 + 8 + 1400);
        assert_eq!(out[14 + 6] & 0x40, 0x40, "DF above 1260 bytes");
        assert_eq!(checksum::checksum(&out[14..34]), 0);
        // an IPv4 packet to the local address with no connection
        let stray = v4seg((RIP4, RPORT), (LIP4, 1), tcp::ACK, 64).build();
        assert_eq!(run(&mut lb, &stray).0, FwdVerdict::NotService);
    }
}

mod tun_4in6 {
    use super::*;

    const CIP4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
    const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    fn lb() -> CoreLb {
        let mut t = ServiceTable::new(16);
        let key = ServiceKey::tcp(IpAddr::V4(VIP4), VPORT);
        t.add_service(key, ServiceConfig::with_scheduler("rr"))
            .unwrap();
        t.add_dest(
            &key,
            RealServerConfig::new(IpAddr::V6(RIP), VPORT, FwdMethod::Tunnel),
        )
        .unwrap();
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let c = CoreLbConfig {
            tun_source: DIP4,
            tun_source6: DIP6,
            conn_capacity: 1024,
            conn_capacity6: 1024,
            hash_seed: Some(7),
            ..CoreLbConfig::default()
        };
        CoreLb::new(c, t.snapshot(), global, None, 0).unwrap()
    }

    fn v4seg(flags: u8, ttl: u8, len: usize) -> PacketBuilder {
        eth()
            .ipv4(CIP4, VIP4)
            .ttl(ttl)
            .tos(0xb8)
            .ident(0x1c46)
            .dont_frag(true)
            .tcp(CPORT, VPORT, flags)
            .payload(&vec![3; len])
    }

    #[test]
    fn ipv4_client_to_ipv6_server_exact() {
        let mut lb = lb();
        for flags in [tcp::SYN, tcp::ACK, tcp::ACK | tcp::PSH] {
            let (v, out) = run(&mut lb, &v4seg(flags, 64, 5).build());
            assert_eq!(v, to(RIP), "{flags:#x}");
            let inner = v4seg(flags, 63, 5).build();
            let want = eth()
                .ipv6(DIP6, RIP)
                .ttl(64)
                .tos(0xb8)
                .ip_proto(IpProtocol::IPIP)
                .payload(&inner[14..])
                .build();
            assert_eq!(out, want, "{flags:#x}");
            assert_eq!(checksum::checksum(&out[54..74]), 0, "inner header");
        }
        // one connection, in the IPv6 table
        assert_eq!(lb.conns6().len(), 1);
        assert_eq!(lb.conns().len(), 0);
    }

    #[test]
    fn too_big_with_df_gets_frag_needed_for_the_ipv6_overhead() {
        let mut lb = lb();
        let big = v4seg(tcp::SYN, 64, 1500 - 40).build();
        let (v, out) = run(&mut lb, &big);
        assert_eq!(
            v,
            FwdVerdict::Forward {
                next_hop: IpAddr::V4(CIP4)
            }
        );
        assert_eq!(out[14 + 9], 1, "ICMP");
        assert_eq!((out[34], out[35]), (3, 4), "frag needed");
        assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1460, "1500 - 40");
        assert_eq!(checksum::checksum(&out[34..]), 0);
    }
}

#[test]
fn packet_too_big_about_a_tunnel_packet_is_relayed_to_the_client() {
    let mut lb = lb_for(FwdMethod::Tunnel, &[IpAddr::V6(RIP)], |_| {});
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (_, tunnelled) = run(&mut lb, &syn);
    let router = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0xfe);
    let ptb = eth()
        .ipv6(router, DIP6)
        .ttl(64)
        .icmpv6(icmpv6::TYPE_PACKET_TOO_BIG, 0, 1400)
        .payload(&tunnelled[14..])
        .build();
    let (v, out) = run(&mut lb, &ptb);
    assert_eq!(v, to(CIP));
    let inner = &tunnelled[14 + 40..];
    let want = eth()
        .ipv6(VIP, CIP)
        .ttl(64)
        .icmpv6(icmpv6::TYPE_PACKET_TOO_BIG, 0, 1360)
        .payload(inner)
        .build();
    assert_eq!(out, want, "MTU 1400 - 40, about the client's own packet");
    // one that advertises less than 1280 + 40 still leaves 1280
    let small = eth()
        .ipv6(router, DIP6)
        .icmpv6(icmpv6::TYPE_PACKET_TOO_BIG, 0, 1280)
        .payload(&tunnelled[14..])
        .build();
    let (_, out) = run(&mut lb, &small);
    assert_eq!(
        u32::from_be_bytes([out[58], out[59], out[60], out[61]]),
        1280
    );
    // about someone else's tunnel: not ours
    let mut other = tunnelled.clone();
    other[14 + 8 + 15] ^= 1;
    let foreign = eth()
        .ipv6(router, DIP6)
        .icmpv6(icmpv6::TYPE_PACKET_TOO_BIG, 0, 1400)
        .payload(&other[14..])
        .build();
    assert_eq!(run(&mut lb, &foreign).0, FwdVerdict::NotService);
}

mod two_cores {
    use super::*;
    use crate::lb::family::Family;
    use crate::lb::owner::RssOwner;

    fn cores(method: FwdMethod) -> (Vec<CoreLb>, Arc<RssOwner>) {
        let rss = Arc::new(RssOwner::round_robin(2, 128));
        let mut t = ServiceTable::new(16);
        let mut cfg = ServiceConfig::with_scheduler("rr");
        cfg.local_addresses = vec![IpAddr::V6(LIP)];
        let key = ServiceKey::tcp(IpAddr::V6(VIP), VPORT);
        t.add_service(key, cfg).unwrap();
        t.add_dest(&key, RealServerConfig::new(IpAddr::V6(RIP), RPORT, method))
            .unwrap();
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let lbs = (0..2u16)
            .map(|core| {
                let c = CoreLbConfig {
                    core,
                    cores: 2,
                    conn_capacity: 1024,
                    conn_capacity6: 1024,
                    hash_seed: Some(7),
                    ..CoreLbConfig::default()
                };
                CoreLb::new(c, t.snapshot(), global.clone(), Some(rss.clone()), 0).unwrap()
            })
            .collect();
        (lbs, rss)
    }

    #[test]
    fn nat_connections_live_where_their_replies_land() {
        let (mut lbs, rss) = cores(FwdMethod::Masq);
        let mut steered = 0;
        for cport in 40000..40064u16 {
            let syn = seg((CIP, cport), (VIP, VPORT), tcp::SYN, 64).build();
            let mut p = VecPacket::with_room(&syn, 128, 64);
            let owner = Ipv6Addr::owner(&rss, RIP, CIP, RPORT, cport);
            let v = lbs[0].process(&mut p, None, 1);
            let v = match v {
                FwdVerdict::Steer { core, meta } => {
                    assert_eq!(core, owner);
                    steered += 1;
                    lbs[usize::from(core)].process(&mut p, Some(meta), 1)
                }
                v => {
                    assert_eq!(owner, 0);
                    v
                }
            };
            assert_eq!(v, to(RIP));
            let reply = seg((RIP, RPORT), (CIP, cport), tcp::SYN | tcp::ACK, 64).build();
            let (v, out) = run(&mut lbs[usize::from(owner)], &reply);
            assert_eq!(v, to(CIP));
            assert_eq!(
                out,
                seg((VIP, VPORT), (CIP, cport), tcp::SYN | tcp::ACK, 63).build()
            );
            // later requests arriving on core 0 follow the redirect
            let ack = seg((CIP, cport), (VIP, VPORT), tcp::ACK, 64).build();
            let mut p = VecPacket::with_room(&ack, 128, 64);
            let v = match lbs[0].process(&mut p, None, 2) {
                FwdVerdict::Steer { core, meta } => {
                    lbs[usize::from(core)].process(&mut p, Some(meta), 2)
                }
                v => v,
            };
            assert_eq!(v, to(RIP));
        }
        assert!(steered > 10 && steered < 54, "{steered}");
    }

    /// A persistent client keeps its server whichever core its next flow
    /// lands on: the template the first core made is carried to the other
    /// (before, IPv6 templates stayed on their core and the other core's
    /// scheduler sent the client elsewhere).
    #[test]
    fn persistence_templates_are_learned_by_the_other_core() {
        let rip2 = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x12);
        let rss = Arc::new(RssOwner::round_robin(2, 128));
        let mut t = ServiceTable::new(16);
        let mut cfg = ServiceConfig::with_scheduler("rr");
        cfg.persistence = Some(300);
        cfg.persist_mask = Some(crate::lb::service::PersistMask::V6(64));
        let key = ServiceKey::tcp(IpAddr::V6(VIP), VPORT);
        t.add_service(key, cfg).unwrap();
        for a in [rip2, RIP] {
            t.add_dest(
                &key,
                RealServerConfig::new(IpAddr::V6(a), VPORT, FwdMethod::Route),
            )
            .unwrap();
        }
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let mut lbs: Vec<CoreLb> = (0..2u16)
            .map(|core| {
                let c = CoreLbConfig {
                    core,
                    cores: 2,
                    conn_capacity6: 1024,
                    hash_seed: Some(7),
                    ..CoreLbConfig::default()
                };
                CoreLb::new(c, t.snapshot(), global.clone(), Some(rss.clone()), 0).unwrap()
            })
            .collect();
        // core 0 pins the client's /64 to its first choice
        let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
        let (first, _) = run(&mut lbs[0], &syn);
        assert_eq!(first, to(RIP));
        // core 1 has moved its rr cursor on with a client of another /64
        let other = Ipv6Addr::new(0x2001, 2, 0, 0xd, 0, 0, 0, 7);
        let syn = seg((other, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
        assert_eq!(run(&mut lbs[1], &syn).0, to(RIP));
        // the data plane carries core 0's new templates to core 1
        let mut notes = Vec::new();
        lbs[0].take_new_templates(&mut notes);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(matches!(notes[0], TemplateNote::V6(_)));
        assert_eq!(notes[0].timeout_s(), 300);
        assert!(lbs[1].learn_template(&notes[0], 1000));
        assert!(!lbs[1].learn_template(&notes[0], 1000), "already there");
        assert_eq!(lbs[1].stats().event(FwdEvent::TemplateLearned), 1);
        // the client's next flows (same /64), on core 1, follow the template
        for i in 1..4u16 {
            let c = Ipv6Addr::new(0x2001, 2, 0, 0xc, 0, 0, 0, 7 + i);
            let syn = seg((c, CPORT + i), (VIP, VPORT), tcp::SYN, 64).build();
            assert_eq!(run(&mut lbs[1], &syn).0, first, "flow {i} on core 1");
        }
        assert_eq!(lbs[1].conns6().template_count(), 2);
    }

    #[test]
    fn fullnat_local_ports_keep_replies_on_the_core() {
        let (mut lbs, rss) = cores(FwdMethod::FullNat);
        for core in 0..2u16 {
            for cport in 40000..40032u16 {
                let syn = seg((CIP, cport), (VIP, VPORT), tcp::SYN, 64).build();
                let (v, out) = run(&mut lbs[usize::from(core)], &syn);
                assert_eq!(v, to(RIP));
                let lport = u16::from_be_bytes([out[54], out[55]]);
                assert_eq!(Ipv6Addr::owner(&rss, RIP, LIP, RPORT, lport), core);
            }
        }
    }
}

#[test]
fn ipv6_checksums_are_updated_even_with_offload_configured() {
    // the data plane prepares IPv4 checksum offloads only
    let mut t = ServiceTable::new(16);
    let key = ServiceKey::tcp(IpAddr::V6(VIP), VPORT);
    t.add_service(key, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &key,
        RealServerConfig::new(IpAddr::V6(RIP), RPORT, FwdMethod::Masq),
    )
    .unwrap();
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    let c = CoreLbConfig {
        l4_csum: L4Csum::Skip,
        conn_capacity6: 64,
        hash_seed: Some(7),
        ..CoreLbConfig::default()
    };
    let mut lb = CoreLb::new(c, t.snapshot(), global, None, 0).unwrap();
    let syn = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64).build();
    let (_, out) = run(&mut lb, &syn);
    assert_eq!(out, seg((CIP, CPORT), (RIP, RPORT), tcp::SYN, 63).build());
}

#[test]
fn a_mixed_burst_matches_packet_by_packet() {
    // IPv6 frames of a burst are classified and looked up in its first
    // pass and taken back in order: interleave them with IPv4, ARP and
    // malformed frames and compare with process() one by one
    let mut frames = Vec::new();
    for round in 0..3u16 {
        for k in 0..6u16 {
            let cport = CPORT + k;
            let flags = if round == 0 { tcp::SYN } else { tcp::ACK };
            frames.push(seg((CIP, cport), (VIP, VPORT), flags, 64).build());
            frames.push(seg((RIP, RPORT), (CIP, cport), tcp::ACK, 64).build());
            match k % 3 {
                0 => frames.push(
                    eth()
                        .ipv4(Ipv4Addr::new(198, 19, 0, 7), Ipv4Addr::new(198, 18, 0, 100))
                        .tcp(cport, VPORT, tcp::SYN)
                        .build(),
                ),
                1 => {
                    let mut arp = seg((CIP, cport), (VIP, VPORT), tcp::SYN, 64).build();
                    arp[12..14].copy_from_slice(&[0x08, 0x06]);
                    frames.push(arp);
                }
                _ => frames
                    .push(seg((CIP, cport), (VIP, VPORT), tcp::SYN, 64).build()[..60].to_vec()),
            }
            frames.push(udp((CIP, 5000 + k), (VIP, VPORT), 1 + round as u8).build());
        }
    }
    let mut one = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP), IpAddr::V6(LIP)], |_| {});
    let mut burst = lb_for(FwdMethod::Masq, &[IpAddr::V6(RIP), IpAddr::V6(LIP)], |_| {});
    let want: Vec<(FwdVerdict, Vec<u8>)> = frames.iter().map(|f| run(&mut one, f)).collect();
    let mut pkts: Vec<VecPacket> = frames
        .iter()
        .map(|f| VecPacket::with_room(f, 128, 1400))
        .collect();
    let mut verdicts = vec![FwdVerdict::NotService; pkts.len()];
    assert_eq!(
        burst.process_burst(&mut pkts, &[], &mut verdicts, 1000),
        frames.len()
    );
    for (i, ((v, out), p)) in want.iter().zip(&pkts).enumerate() {
        assert_eq!(verdicts[i], *v, "frame {i}");
        assert_eq!(p.to_vec(), *out, "frame {i}");
    }
    assert!(
        want.iter()
            .filter(|(v, _)| matches!(v, FwdVerdict::Forward { .. }))
            .count()
            > 30
    );
    // and a single packet after the burst classifies for itself
    let syn = seg((CIP, 1), (VIP, VPORT), tcp::SYN, 64).build();
    assert!(matches!(
        run(&mut burst, &syn).0,
        FwdVerdict::Forward { .. }
    ));
}
