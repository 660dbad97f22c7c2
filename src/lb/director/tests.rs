//! CoreLb tests: declarative packet fixtures (input frame → exact output
//! frame and verdict, checksums included, Katran style) for every method
//! and direction, ICMP, malformed input, and director behaviour with an
//! injected clock, on one core and on two.

use super::*;
use crate::lb::load::LoadView;
use crate::lb::packet::VecPacket;
use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
use crate::lb::stats::CounterValues;
use crate::wire::{tcp, IpProtocol, MacAddr, PacketBuilder};

mod reuse;

const CMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const DMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd]);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RIP1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const RIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
/// With [`SYMMETRIC_KEY`](crate::wire::SYMMETRIC_KEY) the hash depends only
/// on the XOR of the tuple's six 16-bit words, so whether NAT replies land
/// on the request's core is fixed per (VIP:vport, RIP:rport) pair: with two
/// cores, replies of RIP1:8080 always come back to the request core, those
/// of RIP3:8080 always to the other one.
const RIP3: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 13);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);

const CPORT: u16 = 40000;
const VPORT: u16 = 80;
const RPORT: u16 = 8080;

fn eth() -> PacketBuilder {
    PacketBuilder::ethernet(CMAC, DMAC)
}

/// A TCP segment with fixed sequence numbers (per flag set) and payload.
fn seg(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    ttl: u8,
    payload: &[u8],
) -> PacketBuilder {
    eth()
        .ipv4(src.0, dst.0)
        .ttl(ttl)
        .ident(0x1c46)
        .tcp(src.1, dst.1, flags)
        .seq(0x1000_0000 + u32::from(flags))
        .ack(0x2000_0000)
        .window(29200)
        .payload(payload)
}

fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ttl: u8, payload: &[u8]) -> PacketBuilder {
    eth()
        .ipv4(src.0, dst.0)
        .ttl(ttl)
        .udp(src.1, dst.1)
        .payload(payload)
}

fn fwd_to(a: Ipv4Addr) -> FwdVerdict {
    FwdVerdict::Forward {
        next_hop: IpAddr::V4(a),
    }
}

/// A table with one service and servers (given in walking order: the
/// first is tried first).
fn table(
    key: ServiceKey,
    method: FwdMethod,
    servers: &[(Ipv4Addr, u16)],
    edit: impl FnOnce(&mut ServiceConfig),
) -> ServiceTable {
    let mut t = ServiceTable::new(16);
    let mut cfg = ServiceConfig::with_scheduler("rr");
    cfg.local_addresses = vec![IpAddr::V4(LIP)];
    edit(&mut cfg);
    t.add_service(key, cfg).unwrap();
    for &(a, p) in servers.iter().rev() {
        t.add_dest(&key, RealServerConfig::new(IpAddr::V4(a), p, method))
            .unwrap();
    }
    t
}

/// The slot of a real server of the TCP or UDP test service.
fn dest_id(t: &ServiceTable, a: Ipv4Addr) -> DestId {
    [tcp_key(), udp_key()]
        .iter()
        .filter_map(|k| t.dests(k))
        .flatten()
        .find(|(_, c)| c.addr == IpAddr::V4(a))
        .map(|(id, _)| id)
        .unwrap()
}

fn tcp_key() -> ServiceKey {
    ServiceKey::tcp(IpAddr::V4(VIP), VPORT)
}

fn udp_key() -> ServiceKey {
    ServiceKey::udp(IpAddr::V4(VIP), 53)
}

fn cfg() -> CoreLbConfig {
    CoreLbConfig {
        tun_source: DIP,
        conn_capacity: 1024,
        hash_seed: Some(7),
        ..CoreLbConfig::default()
    }
}

fn lb_with(t: &ServiceTable, cfg: CoreLbConfig) -> CoreLb {
    let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
    CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap()
}

fn run(lb: &mut CoreLb, frame: &[u8], now: u64) -> (FwdVerdict, Vec<u8>) {
    let mut p = VecPacket::new(frame);
    let v = lb.process(&mut p, None, now);
    (v, p.to_vec())
}

/// One fixture: a frame in, the verdict and the exact frame out.
struct Fixture {
    name: &'static str,
    input: Vec<u8>,
    verdict: FwdVerdict,
    output: Vec<u8>,
}

impl Fixture {
    fn new(
        name: &'static str,
        input: PacketBuilder,
        verdict: FwdVerdict,
        output: PacketBuilder,
    ) -> Self {
        Fixture {
            name,
            input: input.build(),
            verdict,
            output: output.build(),
        }
    }
}

fn check(lb: &mut CoreLb, fixtures: &[Fixture], now: u64) {
    for f in fixtures {
        let (v, out) = run(lb, &f.input, now);
        assert_eq!(v, f.verdict, "{}: verdict", f.name);
        assert_eq!(out, f.output, "{}: frame", f.name);
    }
}

fn state(
    lb: &CoreLb,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    proto: Protocol,
) -> Option<&'static str> {
    let t = Tuple {
        proto,
        src: Endpoint::new(u32::from(src.0), src.1),
        dst: Endpoint::new(u32::from(dst.0), dst.1),
    };
    let (id, _) = lb.conns().peek(&t)?;
    lb.conns().get(id).map(|c| c.state_name())
}

const REQ: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nhello";

#[test]
fn nat_fixtures_full_handshake() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let c = (CIP, CPORT);
    let v = (VIP, VPORT);
    let r = (RIP1, RPORT);
    use tcp::{ACK, FIN, PSH, SYN};
    let fixtures = [
        Fixture::new(
            "syn",
            seg(c, v, SYN, 64, &[]),
            fwd_to(RIP1),
            seg(c, r, SYN, 63, &[]),
        ),
        Fixture::new(
            "syn-ack reply",
            seg(r, c, SYN | ACK, 64, &[]),
            fwd_to(CIP),
            seg(v, c, SYN | ACK, 63, &[]),
        ),
        Fixture::new(
            "ack",
            seg(c, v, ACK, 64, &[]),
            fwd_to(RIP1),
            seg(c, r, ACK, 63, &[]),
        ),
        Fixture::new(
            "request data",
            seg(c, v, PSH | ACK, 64, REQ),
            fwd_to(RIP1),
            seg(c, r, PSH | ACK, 63, REQ),
        ),
        Fixture::new(
            "response data",
            seg(r, c, PSH | ACK, 61, RESP),
            fwd_to(CIP),
            seg(v, c, PSH | ACK, 60, RESP),
        ),
        Fixture::new(
            "client fin",
            seg(c, v, FIN | ACK, 64, &[]),
            fwd_to(RIP1),
            seg(c, r, FIN | ACK, 63, &[]),
        ),
        Fixture::new(
            "server fin",
            seg(r, c, FIN | ACK, 64, &[]),
            fwd_to(CIP),
            seg(v, c, FIN | ACK, 63, &[]),
        ),
        Fixture::new(
            "last ack",
            seg(c, v, ACK, 64, &[]),
            fwd_to(RIP1),
            seg(c, r, ACK, 63, &[]),
        ),
    ];
    check(&mut lb, &fixtures, 1000);
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("TIME_WAIT"));
    // Counters: 5 packets in, 3 out, one connection.
    let s = lb.stats().dest(0);
    let len = |f: &Fixture| (f.input.len() - 14) as u64;
    let in_bytes: u64 = [0, 2, 3, 5, 7].iter().map(|&i| len(&fixtures[i])).sum();
    let out_bytes: u64 = [1, 4, 6].iter().map(|&i| len(&fixtures[i])).sum();
    assert_eq!(
        s,
        CounterValues {
            conns: 1,
            in_pkts: 5,
            out_pkts: 3,
            in_bytes,
            out_bytes,
        }
    );
    assert_eq!(lb.stats().service(0), s);
}

#[test]
fn nat_keeps_ethernet_padding_and_vlan() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let fixtures = [
        Fixture::new(
            "padded syn",
            seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64, &[]).pad_to(60),
            fwd_to(RIP1),
            seg((CIP, CPORT), (RIP1, RPORT), tcp::SYN, 63, &[]).pad_to(60),
        ),
        Fixture::new(
            "vlan syn",
            eth()
                .vlan(42)
                .ipv4(CIP, VIP)
                .tcp(CPORT + 1, VPORT, tcp::SYN)
                .seq(5),
            fwd_to(RIP1),
            eth()
                .vlan(42)
                .ipv4(CIP, RIP1)
                .ttl(63)
                .tcp(CPORT + 1, RPORT, tcp::SYN)
                .seq(5),
        ),
    ];
    check(&mut lb, &fixtures, 0);
}

#[test]
fn nat_udp_and_zero_checksum() {
    let t = table(udp_key(), FwdMethod::Masq, &[(RIP1, 5353)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r) = ((CIP, 3333), (VIP, 53), (RIP1, 5353));
    let fixtures = [
        Fixture::new(
            "query",
            udp(c, v, 64, b"query"),
            fwd_to(RIP1),
            udp(c, r, 63, b"query"),
        ),
        Fixture::new(
            "answer",
            udp(r, c, 64, b"answer"),
            fwd_to(CIP),
            udp(v, c, 63, b"answer"),
        ),
        Fixture::new(
            "no checksum stays none",
            udp(c, v, 64, b"q2").l4_checksum(0),
            fwd_to(RIP1),
            udp(c, r, 63, b"q2").l4_checksum(0),
        ),
    ];
    check(&mut lb, &fixtures, 0);
    assert_eq!(state(&lb, c, v, Protocol::Udp), Some("UDP"));
}

#[test]
fn fullnat_fixtures_both_directions() {
    let t = table(tcp_key(), FwdMethod::FullNat, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT));
    // Single core: the port walk of core 0 starts at the first port.
    let l = (LIP, 1024);
    use tcp::{ACK, PSH, SYN};
    let fixtures = [
        Fixture::new(
            "syn",
            seg(c, v, SYN, 64, &[]),
            fwd_to(RIP1),
            seg(l, r, SYN, 63, &[]),
        ),
        Fixture::new(
            "syn-ack",
            seg(r, l, SYN | ACK, 64, &[]),
            fwd_to(CIP),
            seg(v, c, SYN | ACK, 63, &[]),
        ),
        Fixture::new(
            "data",
            seg(c, v, PSH | ACK, 64, REQ),
            fwd_to(RIP1),
            seg(l, r, PSH | ACK, 63, REQ),
        ),
        Fixture::new(
            "reply data",
            seg(r, l, PSH | ACK, 64, RESP),
            fwd_to(CIP),
            seg(v, c, PSH | ACK, 63, RESP),
        ),
    ];
    check(&mut lb, &fixtures, 0);
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("ESTABLISHED"));
    assert_eq!(lb.local_port_stats().in_use(), 1);
    // A second client gets the next port.
    let (v2, out) = run(&mut lb, &seg((CIP, CPORT + 1), v, SYN, 64, &[]).build(), 0);
    assert_eq!(v2, fwd_to(RIP1));
    assert_eq!(out, seg((LIP, 1025), r, SYN, 63, &[]).build());
}

#[test]
fn fullnat_udp() {
    let t = table(udp_key(), FwdMethod::FullNat, &[(RIP1, 5353)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r, l) = ((CIP, 3333), (VIP, 53), (RIP1, 5353), (LIP, 1024));
    check(
        &mut lb,
        &[
            Fixture::new(
                "query",
                udp(c, v, 64, b"q"),
                fwd_to(RIP1),
                udp(l, r, 63, b"q"),
            ),
            Fixture::new(
                "answer",
                udp(r, l, 64, b"a"),
                fwd_to(CIP),
                udp(v, c, 63, b"a"),
            ),
        ],
        0,
    );
}

#[test]
fn dr_fixture() {
    let t = table(tcp_key(), FwdMethod::Route, &[(RIP1, VPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v) = ((CIP, CPORT), (VIP, VPORT));
    check(
        &mut lb,
        &[
            Fixture::new(
                "syn",
                seg(c, v, tcp::SYN, 64, &[]),
                fwd_to(RIP1),
                seg(c, v, tcp::SYN, 63, &[]),
            ),
            Fixture::new(
                "data",
                seg(c, v, tcp::ACK | tcp::PSH, 9, REQ),
                fwd_to(RIP1),
                seg(c, v, tcp::ACK | tcp::PSH, 8, REQ),
            ),
        ],
        0,
    );
    // INPUT-ONLY table: the client's ACK establishes.
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("ESTABLISHED"));
    // A "reply" from the real server is not ours.
    let (verdict, _) = run(&mut lb, &seg((VIP, VPORT), c, tcp::ACK, 64, &[]).build(), 0);
    assert_eq!(verdict, FwdVerdict::NotService);
}

/// The IP packet of a frame built without Ethernet.
fn ip_only(b: PacketBuilder) -> Vec<u8> {
    b.build()
}

fn inner_syn(ttl: u8, payload: &[u8], df: bool) -> PacketBuilder {
    PacketBuilder::new()
        .ipv4(CIP, VIP)
        .ttl(ttl)
        .ident(0x1c46)
        .dont_frag(df)
        .tos(0x10)
        .tcp(CPORT, VPORT, tcp::SYN)
        .seq(0x1000_0002)
        .ack(0x2000_0000)
        .window(29200)
        .payload(payload)
}

fn tun_outer(ident: u16, df: bool, inner: &[u8]) -> PacketBuilder {
    eth()
        .ipv4(DIP, RIP1)
        .ttl(64)
        .ident(ident)
        .tos(0x10)
        .dont_frag(df)
        .ip_proto(IpProtocol::IPIP)
        .payload(inner)
}

#[test]
fn tun_fixtures_encap_frag_needed_and_too_big() {
    let t = table(tcp_key(), FwdMethod::Tunnel, &[(RIP1, VPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let syn = |payload: &[u8], df: bool| {
        eth()
            .ipv4(CIP, VIP)
            .ttl(64)
            .ident(0x1c46)
            .dont_frag(df)
            .tos(0x10)
            .tcp(CPORT, VPORT, tcp::SYN)
            .seq(0x1000_0002)
            .ack(0x2000_0000)
            .window(29200)
            .payload(payload)
    };
    // 1480 bytes of IP: 1500 once encapsulated, exactly the MTU.
    let fits = vec![0xabu8; 1480 - 40];
    let big = vec![0xcdu8; 1481 - 40];
    let big_frame = syn(&big, true).build();
    let quote = &big_frame[14..14 + 28];
    let fixtures = [
        Fixture::new(
            "syn encapsulated",
            syn(&[], true).pad_to(60),
            fwd_to(RIP1),
            tun_outer(0, true, &ip_only(inner_syn(63, &[], true))),
        ),
        Fixture::new(
            "exactly the mtu",
            syn(&fits, true),
            fwd_to(RIP1),
            tun_outer(1, true, &ip_only(inner_syn(63, &fits, true))),
        ),
        Fixture::new(
            "too big with df: frag needed to the client",
            syn(&big, true),
            fwd_to(CIP),
            eth()
                .ipv4(VIP, CIP)
                .ttl(64)
                .tos(0xc0)
                .dont_frag(false)
                .icmp(3, 4, 1480)
                .payload(quote),
        ),
    ];
    check(&mut lb, &fixtures, 0);
    let (v, out) = run(&mut lb, &syn(&big, false).build(), 0);
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::TooBigNoDf));
    assert_eq!(out, syn(&big, false).build());
    assert_eq!(lb.stats().event(FwdEvent::FragNeededSent), 1);
    assert_eq!(lb.stats().drop_count(FwdDrop::TooBigNoDf), 1);
    // No headroom: dropped, frame unchanged.
    let mut p = VecPacket::with_room(&syn(&[], true).build(), 10, 0);
    assert_eq!(
        lb.process(&mut p, None, 0),
        FwdVerdict::Drop(FwdDrop::NoRoom)
    );
}

#[test]
fn ttl_expired_request_gets_time_exceeded_reply_is_dropped() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let syn1 = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 1, &[]).build();
    let (v, out) = run(&mut lb, &syn1, 0);
    assert_eq!(v, fwd_to(CIP));
    let want = eth()
        .ipv4(VIP, CIP)
        .ttl(64)
        .tos(0xc0)
        .dont_frag(false)
        .icmp(11, 0, 0)
        .payload(&syn1[14..14 + 28])
        .build();
    assert_eq!(out, want);
    assert_eq!(lb.conns().len(), 0, "no connection for a dying SYN");
    assert_eq!(lb.stats().drop_count(FwdDrop::TtlExpired), 1);
    assert_eq!(lb.stats().event(FwdEvent::TimeExceededSent), 1);
    // Established, then a reply with TTL 1: dropped.
    run(
        &mut lb,
        &seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64, &[]).build(),
        0,
    );
    let (v, _) = run(
        &mut lb,
        &seg((RIP1, RPORT), (CIP, CPORT), tcp::SYN | tcp::ACK, 1, &[]).build(),
        0,
    );
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::TtlExpired));
}

/// An ICMP error frame from `src` to `dst` quoting `quoted` (an IP packet).
fn icmp_err(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    t: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> PacketBuilder {
    eth()
        .ipv4(src, dst)
        .ttl(ttl)
        .dont_frag(false)
        .ident(77)
        .icmp(t, code, rest)
        .payload(quoted)
}

fn ip_seg(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, ttl: u8) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(src.0, dst.0)
        .ttl(ttl)
        .ident(0x1c46)
        .tcp(src.1, dst.1, flags)
        .seq(0x1000_0000 + u32::from(flags))
        .ack(0x2000_0000)
        .window(29200)
        .payload(REQ)
        .build()
}

#[test]
fn icmp_errors_translated_both_ways_nat() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT));
    run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0);
    let ack = tcp::ACK | tcp::PSH;
    // From the real server's side: frag needed about the forwarded request
    // CIP -> RIP:8080 (quote: whole IP header + TCP header = 40 bytes, so
    // the quoted TCP checksum is translated too).
    let fwd_req = ip_seg(c, r, ack, 63);
    let orig_req = ip_seg(c, v, ack, 63);
    // From the client's side: time exceeded about our reply VIP:80 -> CIP.
    let sent_reply = ip_seg(v, c, ack, 63);
    let rs_reply = ip_seg(r, c, ack, 64);
    let fixtures = [
        Fixture::new(
            "frag needed from the server side, 40-byte quote",
            icmp_err(RIP1, CIP, 64, 3, 4, 1400, &fwd_req[..40]),
            fwd_to(CIP),
            icmp_err(VIP, CIP, 63, 3, 4, 1400, &orig_req[..40]),
        ),
        Fixture::new(
            "port unreachable from the server side, 28-byte quote",
            icmp_err(RIP1, CIP, 64, 3, 3, 0, &fwd_req[..28]),
            fwd_to(CIP),
            icmp_err(VIP, CIP, 63, 3, 3, 0, &orig_req[..28]),
        ),
        Fixture::new(
            "time exceeded from the client side",
            icmp_err(ROUTER, VIP, 250, 11, 0, 0, &sent_reply[..40]),
            fwd_to(RIP1),
            // The quoted TTL stays as quoted; only addresses, ports, checksums change.
            icmp_err(ROUTER, RIP1, 249, 11, 0, 0, &{
                let mut q = rs_reply[..40].to_vec();
                // The router quoted our reply with TTL 63; the server sent 64.
                q[8] = 63;
                let mut p = crate::wire::Ipv4Packet::new_unchecked(&mut q[..20]);
                p.fill_checksum();
                q
            }),
        ),
    ];
    check(&mut lb, &fixtures, 0);
    assert_eq!(lb.stats().event(FwdEvent::IcmpForwarded), 3);
    // Bad ICMP checksum: dropped.
    let bad = icmp_err(RIP1, CIP, 64, 3, 3, 0, &fwd_req[..28])
        .l4_checksum(0xbeef)
        .build();
    assert_eq!(
        run(&mut lb, &bad, 0).0,
        FwdVerdict::Drop(FwdDrop::BadIcmpChecksum)
    );
    // Unrelated error (no connection) and echo: not ours.
    let other = ip_seg((CIP, 1), r, ack, 63);
    assert_eq!(
        run(
            &mut lb,
            &icmp_err(RIP1, CIP, 64, 3, 3, 0, &other[..28]).build(),
            0
        )
        .0,
        FwdVerdict::NotService
    );
    let echo = eth().ipv4(CIP, VIP).icmp_echo_request(1, 1).build();
    assert_eq!(run(&mut lb, &echo, 0).0, FwdVerdict::NotService);
}

#[test]
fn icmp_errors_translated_both_ways_fullnat() {
    let t = table(tcp_key(), FwdMethod::FullNat, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v, r, l) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT), (LIP, 1024));
    run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0);
    let ack = tcp::ACK | tcp::PSH;
    let fwd_req = ip_seg(l, r, ack, 63);
    let orig_req = ip_seg(c, v, ack, 63);
    let sent_reply = ip_seg(v, c, ack, 63);
    let mut rs_reply = ip_seg(r, l, ack, 63);
    rs_reply.truncate(40);
    let fixtures = [
        Fixture::new(
            "from the server side",
            icmp_err(RIP1, LIP, 64, 3, 4, 1400, &fwd_req[..40]),
            fwd_to(CIP),
            icmp_err(VIP, CIP, 63, 3, 4, 1400, &orig_req[..40]),
        ),
        Fixture::new(
            "from the client side",
            icmp_err(ROUTER, VIP, 250, 11, 0, 0, &sent_reply[..40]),
            fwd_to(RIP1),
            icmp_err(LIP, RIP1, 249, 11, 0, 0, &rs_reply),
        ),
    ];
    check(&mut lb, &fixtures, 0);
}

#[test]
fn icmp_errors_from_the_client_side_dr_and_tun() {
    for method in [FwdMethod::Route, FwdMethod::Tunnel] {
        let t = table(tcp_key(), method, &[(RIP1, VPORT)], |_| {});
        let mut lb = lb_with(&t, cfg());
        let (c, v) = ((CIP, CPORT), (VIP, VPORT));
        run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0);
        // The server answered the client directly with VIP:80 -> CIP; a
        // router on the way back reports it to the VIP, that is to us.
        let reply = ip_seg(v, c, tcp::ACK, 60);
        let input = icmp_err(ROUTER, VIP, 250, 11, 0, 0, &reply[..28]);
        let (verdict, out) = run(&mut lb, &input.build(), 0);
        assert_eq!(verdict, fwd_to(RIP1), "{method:?}");
        let same_ttl249 = icmp_err(ROUTER, VIP, 249, 11, 0, 0, &reply[..28]);
        let want = if method == FwdMethod::Route {
            same_ttl249.build()
        } else {
            let inner = PacketBuilder::new()
                .ipv4(ROUTER, VIP)
                .ttl(249)
                .dont_frag(false)
                .ident(77)
                .icmp(11, 0, 0)
                .payload(&reply[..28])
                .build();
            eth()
                .ipv4(DIP, RIP1)
                .ttl(64)
                .ident(1)
                .dont_frag(false)
                .ip_proto(IpProtocol::IPIP)
                .payload(&inner)
                .build()
        };
        assert_eq!(out, want, "{method:?}");
    }
}

#[test]
fn malformed_frames_each_have_their_reason() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let good = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64, b"abcd").build();
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let refill_ip = |v: &mut Vec<u8>| {
        let mut p = crate::wire::Ipv4Packet::new_unchecked(&mut v[14..34]);
        p.fill_checksum();
    };
    let udp_frame = udp((CIP, 1), (VIP, 53), 64, b"xy").build();
    let cases: Vec<(&str, Vec<u8>, FwdDrop)> = vec![
        ("short ethernet", good[..10].to_vec(), FwdDrop::TruncatedL2),
        (
            "vlan tag cut",
            eth().vlan(3).ipv4(CIP, VIP).tcp(1, 80, tcp::SYN).build()[..16].to_vec(),
            FwdDrop::TruncatedL2,
        ),
        ("short ip", good[..14 + 19].to_vec(), FwdDrop::TruncatedIp),
        (
            "version 6 in ipv4",
            mutate(&|v| v[14] = 0x65),
            FwdDrop::BadIpVersion,
        ),
        (
            "ihl 4",
            mutate(&|v| {
                v[14] = 0x44;
            }),
            FwdDrop::BadIhl,
        ),
        (
            "ihl past the frame",
            {
                let mut v = good[..14 + 20].to_vec();
                v[14] = 0x4f;
                v
            },
            FwdDrop::TruncatedIp,
        ),
        (
            "total length beyond the frame",
            mutate(&|v| {
                v[16..18].copy_from_slice(&1000u16.to_be_bytes());
                refill_ip(v);
            }),
            FwdDrop::BadTotalLength,
        ),
        (
            "total length below the header",
            mutate(&|v| {
                v[16..18].copy_from_slice(&19u16.to_be_bytes());
                refill_ip(v);
            }),
            FwdDrop::BadTotalLength,
        ),
        (
            "bad ip checksum",
            mutate(&|v| v[24] ^= 0x55),
            FwdDrop::BadIpChecksum,
        ),
        (
            "ip options",
            eth()
                .ipv4(CIP, VIP)
                .ip_options(&[1, 1, 1, 0])
                .tcp(CPORT, VPORT, tcp::SYN)
                .build(),
            FwdDrop::IpOptions,
        ),
        (
            "non-first fragment",
            eth()
                .ipv4(CIP, VIP)
                .fragment(false, 1480)
                .ip_proto(IpProtocol::TCP)
                .payload(&[0; 20])
                .build(),
            FwdDrop::NonFirstFragment,
        ),
        (
            "tcp cut short",
            eth()
                .ipv4(CIP, VIP)
                .ip_proto(IpProtocol::TCP)
                .payload(&[0; 19])
                .build(),
            FwdDrop::TruncatedL4,
        ),
        (
            "tcp data offset too large",
            mutate(&|v| v[34 + 12] = 0xf0),
            FwdDrop::TruncatedL4,
        ),
        (
            "tcp data offset too small",
            mutate(&|v| v[34 + 12] = 0x40),
            FwdDrop::TruncatedL4,
        ),
        (
            "udp cut short",
            eth()
                .ipv4(CIP, VIP)
                .ip_proto(IpProtocol::UDP)
                .payload(&[0; 7])
                .build(),
            FwdDrop::TruncatedL4,
        ),
        (
            "udp length too small",
            {
                let mut v = udp_frame.clone();
                v[38..40].copy_from_slice(&7u16.to_be_bytes());
                v
            },
            FwdDrop::BadUdpLength,
        ),
        (
            "udp length too large",
            {
                let mut v = udp_frame.clone();
                v[38..40].copy_from_slice(&11u16.to_be_bytes());
                v
            },
            FwdDrop::BadUdpLength,
        ),
        (
            "icmp cut short",
            eth()
                .ipv4(CIP, VIP)
                .ip_proto(IpProtocol::ICMP)
                .payload(&[3, 3, 0, 0])
                .build(),
            FwdDrop::TruncatedL4,
        ),
    ];
    for (name, frame, reason) in cases {
        let mut p = VecPacket::new(&frame);
        assert_eq!(
            lb.process(&mut p, None, 0),
            FwdVerdict::Drop(reason),
            "{name}"
        );
        assert_eq!(p.data(), &frame[..], "{name}: frame untouched");
    }
    assert_eq!(lb.stats().drop_count(FwdDrop::TruncatedL4), 5);
    assert_eq!(lb.conns().len(), 0);
    // A first fragment passes (its ports are there).
    let first = seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64, b"abcdefgh").fragment(true, 0);
    assert_eq!(run(&mut lb, &first.build(), 0).0, fwd_to(RIP1));
    // Not IPv4, not a service.
    let arp = eth().arp_request(CMAC, CIP, VIP).build();
    assert_eq!(run(&mut lb, &arp, 0).0, FwdVerdict::NotService);
    let v6 = eth()
        .ipv6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
        .udp(1, 2)
        .build();
    assert_eq!(run(&mut lb, &v6, 0).0, FwdVerdict::NotService);
    let other_port = seg((CIP, CPORT), (VIP, 81), tcp::SYN, 64, &[]).build();
    assert_eq!(run(&mut lb, &other_port, 0).0, FwdVerdict::NotService);
    let gre = eth()
        .ipv4(CIP, VIP)
        .ip_proto(IpProtocol(47))
        .payload(&[0; 8])
        .build();
    assert_eq!(run(&mut lb, &gre, 0).0, FwdVerdict::NotService);
    let stray_ack = seg((CIP, 1), (VIP, VPORT), tcp::ACK, 64, &[]).build();
    assert_eq!(
        run(&mut lb, &stray_ack, 0).0,
        FwdVerdict::Drop(FwdDrop::NoConnNotSyn)
    );
    let rst_syn = seg((CIP, 2), (VIP, VPORT), tcp::SYN | tcp::RST, 64, &[]).build();
    assert_eq!(
        run(&mut lb, &rst_syn, 0).0,
        FwdVerdict::Drop(FwdDrop::NoConnNotSyn)
    );
}

/// xorshift64* for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic_and_forward_valid_headers() {
    // Every method, a stream of valid and mutated frames in both
    // directions, ICMP errors included, with random steering metadata.
    let methods = [
        FwdMethod::Masq,
        FwdMethod::FullNat,
        FwdMethod::Route,
        FwdMethod::Tunnel,
    ];
    let mut rng = Rng(0x5eed_f00d);
    for (mi, method) in methods.into_iter().enumerate() {
        let rport = if matches!(method, FwdMethod::Route | FwdMethod::Tunnel) {
            VPORT
        } else {
            RPORT
        };
        let t = table(tcp_key(), method, &[(RIP1, rport), (RIP2, rport)], |_| {});
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                conn_capacity: 64,
                mtu: 600,
                ..cfg()
            },
        );
        let reply_dst = if method == FwdMethod::FullNat {
            (LIP, 1024)
        } else {
            (CIP, CPORT)
        };
        let seeds = [
            seg((CIP, CPORT), (VIP, VPORT), tcp::SYN, 64, &[]).build(),
            seg((CIP, CPORT), (VIP, VPORT), tcp::ACK, 2, REQ).build(),
            seg((RIP1, rport), reply_dst, tcp::ACK | tcp::SYN, 64, RESP).build(),
            seg((CIP, CPORT), (VIP, VPORT), tcp::ACK, 64, &[0x77; 700]).build(),
            icmp_err(
                RIP1,
                CIP,
                64,
                3,
                4,
                1400,
                &ip_seg((CIP, CPORT), (RIP1, rport), tcp::ACK, 63)[..40],
            )
            .build(),
            icmp_err(
                ROUTER,
                VIP,
                9,
                11,
                0,
                0,
                &ip_seg((VIP, VPORT), (CIP, CPORT), tcp::ACK, 63)[..28],
            )
            .build(),
            udp((CIP, 5), (VIP, VPORT), 64, b"u").build(),
            eth()
                .vlan(5)
                .ipv4(CIP, VIP)
                .tcp(CPORT, VPORT, tcp::SYN)
                .build(),
        ];
        for i in 0..5_000u64 {
            let mut frame = seeds[rng.below(seeds.len())].clone();
            let flips = rng.below(4);
            for _ in 0..flips {
                let at = rng.below(frame.len());
                frame[at] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                let len = rng.below(frame.len() + 1);
                frame.truncate(len);
            }
            let meta = match rng.below(4) {
                0 => Some(SteerMeta::from_raw(rng.next())),
                1 => Some(SteerMeta::existing()),
                _ => None,
            };
            let mut p = VecPacket::with_room(&frame, rng.below(40), rng.below(80));
            let v = lb.process(&mut p, meta, i * 10);
            if let FwdVerdict::Forward { .. } = v {
                let out = p.data();
                let info = fwd::classify(out)
                    .unwrap_or_else(|e| panic!("method {mi} case {i}: output invalid {e:?}"));
                assert!(info.is_some(), "method {mi} case {i}");
            }
            if i % 100 == 0 {
                lb.tick(i * 10);
            }
        }
    }
}

#[test]
fn rr_spreads_four_nat_connections_evenly() {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    let mut hops = Vec::new();
    for i in 0..4u16 {
        let (v, out) = run(
            &mut lb,
            &seg((CIP, CPORT + i), (VIP, VPORT), tcp::SYN, 64, &[]).build(),
            0,
        );
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(next_hop),
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(&out[30..34], &next_hop.octets());
        hops.push(next_hop);
    }
    assert_eq!(hops, vec![RIP1, RIP2, RIP1, RIP2]);
    // SYN_RECV is active (Linux >= 4.8 counts pre-established states).
    assert_eq!(lb.load().active(0) + lb.load().active(1), 4);
    assert_eq!(lb.load().inactive(0) + lb.load().inactive(1), 0);
    // Their later packets stay with their server.
    for i in 0..4u16 {
        let (v, _) = run(
            &mut lb,
            &seg((CIP, CPORT + i), (VIP, VPORT), tcp::ACK, 64, &[]).build(),
            1,
        );
        assert_eq!(v, fwd_to(hops[usize::from(i)]));
    }
    assert_eq!((lb.load().active(0), lb.load().active(1)), (2, 2));
    assert_eq!(lb.stats().dest(0).conns + lb.stats().dest(1).conns, 4);
}

#[test]
fn udp_connection_times_out() {
    let t = table(
        udp_key(),
        FwdMethod::Masq,
        &[(RIP1, 53), (RIP2, 53)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    let q = udp((CIP, 3333), (VIP, 53), 64, b"q").build();
    assert_eq!(run(&mut lb, &q, 0).0, fwd_to(RIP1));
    // Same flow: same server, timer restarted (300 s).
    assert_eq!(run(&mut lb, &q, 200_000).0, fwd_to(RIP1));
    assert_eq!(lb.tick(450_000), 0);
    assert_eq!(lb.conns().len(), 1);
    assert_eq!(lb.tick(500_100), 1);
    assert_eq!(lb.conns().len(), 0);
    // Rescheduled: rr moves on.
    assert_eq!(run(&mut lb, &q, 500_200).0, fwd_to(RIP2));
}

#[test]
fn persistence_same_client_same_server_until_expiry() {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |c| {
            c.persistence = Some(60);
            c.persist_mask = Some(crate::lb::service::PersistMask::V4(Ipv4Addr::new(
                255, 255, 255, 0,
            )));
        },
    );
    let mut lb = lb_with(&t, cfg());
    let syn = |ip: Ipv4Addr, port: u16| seg((ip, port), (VIP, VPORT), tcp::SYN, 64, &[]).build();
    assert_eq!(run(&mut lb, &syn(CIP, 1000), 0).0, fwd_to(RIP1));
    // Same /24, other ports and hosts: same server.
    for p in 1001..1005 {
        assert_eq!(run(&mut lb, &syn(CIP, p), 1000).0, fwd_to(RIP1));
    }
    assert_eq!(
        run(&mut lb, &syn(Ipv4Addr::new(198, 19, 0, 99), 7), 1000).0,
        fwd_to(RIP1)
    );
    // Another network: rr's next server.
    assert_eq!(
        run(&mut lb, &syn(Ipv4Addr::new(198, 19, 1, 1), 7), 1000).0,
        fwd_to(RIP2)
    );
    assert_eq!(lb.conns().template_count(), 2);
    let mut notes = Vec::new();
    lb.take_new_templates(&mut notes);
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].dest(), dest_id(&t, RIP1));
    assert_eq!(notes[0].timeout_s(), 60);
    // All connections gone (NONE timeout 2 s... SYN_RECV 60 s), template
    // expires 60 s after its last use once nothing depends on it.
    for now in (10_000..400_000).step_by(10_000) {
        lb.tick(now);
    }
    assert_eq!(lb.conns().len(), 0);
    // Rescheduled from scratch: rr continues where it was (RIP1 next).
    assert_eq!(
        run(&mut lb, &syn(Ipv4Addr::new(198, 19, 1, 1), 8), 400_000).0,
        fwd_to(RIP1)
    );
    // Learning a template from another core pins the client there.
    let mut other = lb_with(&t, cfg());
    assert!(other.learn_template(&notes[1], 400_000));
    assert!(!other.learn_template(&notes[1], 400_000), "already there");
    assert_eq!(
        run(&mut other, &syn(Ipv4Addr::new(198, 19, 1, 1), 9), 400_000).0,
        fwd_to(RIP2)
    );
}

#[test]
fn one_packet_udp_schedules_each_datagram_and_keeps_nothing() {
    let t = table(
        udp_key(),
        FwdMethod::Route,
        &[(RIP1, 53), (RIP2, 53)],
        |c| c.one_packet = true,
    );
    let mut lb = lb_with(&t, cfg());
    let q = udp((CIP, 3333), (VIP, 53), 64, b"q").build();
    let hops: Vec<FwdVerdict> = (0..4).map(|_| run(&mut lb, &q, 0).0).collect();
    assert_eq!(
        hops,
        vec![fwd_to(RIP1), fwd_to(RIP2), fwd_to(RIP1), fwd_to(RIP2)]
    );
    assert_eq!(lb.conns().len(), 0);
    assert_eq!(lb.stats().dest(0).conns, 2);
    assert_eq!(lb.stats().event(FwdEvent::OnePacket), 4);
    let (_, out) = run(&mut lb, &q, 0);
    assert_eq!(out, udp((CIP, 3333), (VIP, 53), 63, b"q").build());
}

#[test]
fn quiescent_server_skipped_existing_connection_continues() {
    let mut t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    let syn = |p: u16| seg((CIP, p), (VIP, VPORT), tcp::SYN, 64, &[]).build();
    let ack = |p: u16| seg((CIP, p), (VIP, VPORT), tcp::ACK, 64, &[]).build();
    assert_eq!(run(&mut lb, &syn(1), 0).0, fwd_to(RIP1));
    t.edit_dest(
        &tcp_key(),
        RealServerConfig::new(IpAddr::V4(RIP1), RPORT, FwdMethod::Masq).weight(0),
    )
    .unwrap();
    lb.adopt(t.snapshot());
    for p in 2..6 {
        assert_eq!(run(&mut lb, &syn(p), 0).0, fwd_to(RIP2));
    }
    assert_eq!(run(&mut lb, &ack(1), 0).0, fwd_to(RIP1));
    // Both quiescent: no destination.
    t.edit_dest(
        &tcp_key(),
        RealServerConfig::new(IpAddr::V4(RIP2), RPORT, FwdMethod::Masq).weight(0),
    )
    .unwrap();
    lb.adopt(t.snapshot());
    assert_eq!(
        run(&mut lb, &syn(9), 0).0,
        FwdVerdict::Drop(FwdDrop::NoDest)
    );
    assert_eq!(lb.stats().drop_count(FwdDrop::NoDest), 1);
}

#[test]
fn removed_server_requests_dropped_or_expired() {
    for expire in [false, true] {
        let mut t = table(
            tcp_key(),
            FwdMethod::Masq,
            &[(RIP1, RPORT), (RIP2, RPORT)],
            |_| {},
        );
        let t0 = t.clone();
        let mut lb = lb_with(
            &t,
            CoreLbConfig {
                expire_nodest_conn: expire,
                ..cfg()
            },
        );
        let c = (CIP, CPORT);
        assert_eq!(
            run(&mut lb, &seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build(), 0).0,
            fwd_to(RIP1)
        );
        t.del_dest(&tcp_key(), IpAddr::V4(RIP1), RPORT).unwrap();
        lb.adopt(t.snapshot());
        let ack = seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build();
        let reply = seg((RIP1, RPORT), c, tcp::ACK, 64, &[]).build();
        if expire {
            assert_eq!(
                run(&mut lb, &ack, 0).0,
                FwdVerdict::Drop(FwdDrop::DestRemoved)
            );
            assert_eq!(lb.conns().len(), 0);
            // The client's next SYN goes to a server that exists.
            assert_eq!(
                run(&mut lb, &seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build(), 0).0,
                fwd_to(RIP2)
            );
        } else {
            // Kernel ip_vs_in: the request is dropped, the entry stays (and
            // is not refreshed); replies are still translated (ip_vs_out
            // does not check the server).
            assert_eq!(
                run(&mut lb, &ack, 0).0,
                FwdVerdict::Drop(FwdDrop::DestRemoved)
            );
            assert_eq!(lb.conns().len(), 1);
            assert_eq!(run(&mut lb, &reply, 0).0, fwd_to(CIP));
            assert_eq!(
                lb.stats().dest(dest_id(&t0, RIP1)).out_pkts,
                1,
                "still counted to its slot"
            );
        }
    }
}

#[test]
fn table_full_is_counted_never_grown() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(
        &t,
        CoreLbConfig {
            conn_capacity: 3,
            ..cfg()
        },
    );
    for p in 0..3 {
        assert_eq!(
            run(
                &mut lb,
                &seg((CIP, p), (VIP, VPORT), tcp::SYN, 64, &[]).build(),
                0
            )
            .0,
            fwd_to(RIP1)
        );
    }
    let (v, out) = run(
        &mut lb,
        &seg((CIP, 9), (VIP, VPORT), tcp::SYN, 64, &[]).build(),
        0,
    );
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::TableFull));
    assert_eq!(out, seg((CIP, 9), (VIP, VPORT), tcp::SYN, 64, &[]).build());
    assert_eq!(lb.conns().capacity(), 3);
    assert_eq!(lb.stats().drop_count(FwdDrop::TableFull), 1);
    // Existing connections still flow.
    assert_eq!(
        run(
            &mut lb,
            &seg((CIP, 1), (VIP, VPORT), tcp::ACK, 64, &[]).build(),
            0
        )
        .0,
        fwd_to(RIP1)
    );
}

#[test]
fn syn_reuses_a_time_wait_connection() {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    let (c, v, r) = ((CIP, CPORT), (VIP, VPORT), (RIP1, RPORT));
    for (frame, want) in [
        (seg(c, v, tcp::SYN, 64, &[]), fwd_to(RIP1)),
        (seg(r, c, tcp::SYN | tcp::ACK, 64, &[]), fwd_to(CIP)),
        (seg(c, v, tcp::ACK, 64, &[]), fwd_to(RIP1)),
        (seg(c, v, tcp::FIN | tcp::ACK, 64, &[]), fwd_to(RIP1)),
        (seg(r, c, tcp::FIN | tcp::ACK, 64, &[]), fwd_to(CIP)),
        (seg(c, v, tcp::ACK, 64, &[]), fwd_to(RIP1)),
    ] {
        assert_eq!(run(&mut lb, &frame.build(), 0).0, want);
    }
    assert_eq!(state(&lb, c, v, Protocol::Tcp), Some("TIME_WAIT"));
    // Same client port again: a new connection, rr's next server.
    assert_eq!(
        run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0).0,
        fwd_to(RIP2)
    );
    assert_eq!(lb.stats().event(FwdEvent::ConnReused), 1);
    assert_eq!(lb.conns().conn_count(), 1);
    // A SYN retransmission on a live connection does not reschedule.
    assert_eq!(
        run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0).0,
        fwd_to(RIP2)
    );
}

#[test]
fn fullnat_without_local_address_or_ports() {
    let t = table(tcp_key(), FwdMethod::FullNat, &[(RIP1, RPORT)], |c| {
        c.local_addresses.clear()
    });
    let mut lb = lb_with(&t, cfg());
    let syn = |p: u16| seg((CIP, p), (VIP, VPORT), tcp::SYN, 64, &[]).build();
    assert_eq!(
        run(&mut lb, &syn(1), 0).0,
        FwdVerdict::Drop(FwdDrop::NoLocalAddress)
    );
    let t = table(tcp_key(), FwdMethod::FullNat, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(
        &t,
        CoreLbConfig {
            local_port_min: 5000,
            local_port_max: 5003,
            ..cfg()
        },
    );
    for p in 0..4 {
        assert_eq!(run(&mut lb, &syn(p), 0).0, fwd_to(RIP1));
    }
    assert_eq!(
        run(&mut lb, &syn(9), 0).0,
        FwdVerdict::Drop(FwdDrop::NoLocalPort)
    );
    // Expiry gives the ports back.
    lb.tick(100_000);
    assert_eq!(lb.conns().len(), 0);
    assert_eq!(lb.local_port_stats().in_use(), 0);
    assert_eq!(run(&mut lb, &syn(9), 100_000).0, fwd_to(RIP1));
}

#[test]
fn service_slots_are_stable_and_reused() {
    let mut t = ServiceTable::new(4);
    let k = |p: u16| ServiceKey::tcp(IpAddr::V4(VIP), p);
    for p in 1..=3 {
        t.add_service(k(p), ServiceConfig::default()).unwrap();
    }
    assert_eq!(
        (t.service_slot(&k(1)), t.service_slot(&k(3))),
        (Some(0), Some(2))
    );
    t.del_service(&k(1)).unwrap();
    let s = t.snapshot();
    assert_eq!(s.get_key(&k(2)).unwrap().slot, 1, "kept across deletes");
    t.add_service(k(4), ServiceConfig::default()).unwrap();
    assert_eq!(t.service_slot(&k(4)), Some(0), "lowest free");
    assert_eq!(t.snapshot().get_key(&k(4)).unwrap().slot, 0);
}

#[test]
fn steer_meta_round_trip() {
    let m = SteerMeta::new_conn(17);
    assert_eq!(m.new_dest(), Some(17));
    assert!(!m.is_existing());
    assert_eq!(SteerMeta::from_raw(m.raw()), m);
    let e = SteerMeta::existing();
    assert!(e.is_existing());
    assert_eq!(e.new_dest(), None);
    assert_eq!(SteerMeta::from_raw(0).new_dest(), None);
}

// ------------------------------------------------------------------------
// Several cores.

/// Cores sharing one RssOwner and GlobalLoad; every frame goes to
/// owner(frame) first, Steer verdicts are followed.
struct Sim {
    rss: Arc<RssOwner>,
    lbs: Vec<CoreLb>,
}

struct Delivery {
    /// Core that produced the final verdict.
    core: u16,
    /// Core the frame arrived on.
    first: u16,
    verdict: FwdVerdict,
    out: Vec<u8>,
}

impl Sim {
    fn new(t: &ServiceTable, cores: u16) -> Sim {
        let rss = Arc::new(RssOwner::round_robin(cores, 128));
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let lbs = (0..cores)
            .map(|core| {
                CoreLb::new(
                    CoreLbConfig {
                        core,
                        cores,
                        ..cfg()
                    },
                    t.snapshot(),
                    Arc::clone(&global),
                    Some(Arc::clone(&rss)),
                    0,
                )
                .unwrap()
            })
            .collect();
        Sim { rss, lbs }
    }

    fn deliver(&mut self, frame: &[u8], now: u64) -> Delivery {
        let first = self.rss.owner_of_frame(frame).unwrap_or(0);
        let mut core = first;
        let mut p = VecPacket::new(frame);
        let mut v = self.lbs[usize::from(core)].process(&mut p, None, now);
        if let FwdVerdict::Steer { core: to, meta } = v {
            assert_ne!(to, core, "steered to itself");
            assert_eq!(p.data(), frame, "steered packets are untouched");
            core = to;
            v = self.lbs[usize::from(core)].process(&mut p, Some(meta), now);
            assert!(!matches!(v, FwdVerdict::Steer { .. }), "steered twice");
        }
        Delivery {
            core,
            first,
            verdict: v,
            out: p.to_vec(),
        }
    }
}

#[test]
fn two_cores_nat_connections_live_on_the_reply_owner() {
    let steered = nat_on_cores(2);
    assert_eq!(steered, 100, "every RIP3 connection, no RIP1 one");
}

#[test]
fn four_cores_nat_connections_live_on_the_reply_owner() {
    // With four cores the (fixed) hash deltas of both RIP1:8080 and
    // RIP3:8080 change the low two bits: every connection is steered.
    assert_eq!(nat_on_cores(4), 200);
}

/// 200 NAT connections over RIP1 and RIP3 on `cores` cores: each lives on
/// its reply owner, every packet is delivered once and rewritten right.
/// Returns how many were steered at creation.
fn nat_on_cores(cores: u16) -> u64 {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP3, RPORT)],
        |_| {},
    );
    let mut sim = Sim::new(&t, cores);
    let mut steered = 0u64;
    for i in 0..200u16 {
        let c = (CIP, 20000 + i);
        let v = (VIP, VPORT);
        let syn = sim.deliver(&seg(c, v, tcp::SYN, 64, &[]).build(), 0);
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(rip),
        } = syn.verdict
        else {
            panic!("{:?}", syn.verdict)
        };
        let r = (rip, RPORT);
        assert_eq!(syn.out, seg(c, r, tcp::SYN, 63, &[]).build());
        let owner = sim.rss.owner_v4(rip, CIP, RPORT, c.1);
        assert_eq!(syn.core, owner, "connection created on the reply owner");
        if syn.first != owner {
            steered += 1;
        }
        // The reply arrives on its owner and is translated there.
        let reply = sim.deliver(&seg(r, c, tcp::SYN | tcp::ACK, 64, &[]).build(), 0);
        assert_eq!((reply.first, reply.core), (owner, owner));
        assert_eq!(reply.verdict, fwd_to(CIP));
        assert_eq!(reply.out, seg(v, c, tcp::SYN | tcp::ACK, 63, &[]).build());
        // More requests: steered through the redirect when needed.
        for flags in [tcp::ACK, tcp::ACK | tcp::PSH] {
            let d = sim.deliver(&seg(c, v, flags, 64, REQ).build(), 0);
            assert_eq!(d.core, owner);
            assert_eq!(d.verdict, fwd_to(rip));
            assert_eq!(d.out, seg(c, r, flags, 63, REQ).build());
        }
        // An ICMP error from the server side reaches the owner too.
        let quote = ip_seg(c, r, tcp::ACK | tcp::PSH, 63);
        let err = sim.deliver(&icmp_err(rip, CIP, 64, 3, 4, 1400, &quote[..40]).build(), 0);
        assert_eq!((err.core, err.verdict), (owner, fwd_to(CIP)));
        // Exactly one real connection, on the owner; a redirect elsewhere.
        let t4 = Tuple {
            proto: Protocol::Tcp,
            src: Endpoint::new(u32::from(CIP), c.1),
            dst: Endpoint::new(u32::from(VIP), VPORT),
        };
        for (k, lb) in sim.lbs.iter().enumerate() {
            let e = lb
                .conns()
                .peek(&t4)
                .and_then(|(id, _)| lb.conns().get(id).copied());
            if k == usize::from(owner) {
                let e = e.expect("connection on the owner");
                assert!(!is_redirect(&e));
                assert_eq!(e.state_name(), "ESTABLISHED");
            } else if k == usize::from(syn.first) {
                assert!(is_redirect(&e.expect("redirect on the first core")));
            } else {
                assert!(e.is_none());
            }
        }
    }
    // Connection counts: 200 over both cores, all ESTABLISHED, none
    // counted twice.
    let active: u32 = sim
        .lbs
        .iter()
        .map(|lb| lb.load().active(0) + lb.load().active(1))
        .sum();
    assert_eq!(active, 200);
    let sums = StatsTable::sum(&sim.lbs.iter().map(|lb| &**lb.stats()).collect::<Vec<_>>());
    assert_eq!(sums.dest(0).conns + sums.dest(1).conns, 200);
    assert_eq!(sums.dest(0).in_pkts + sums.dest(1).in_pkts, 600);
    assert_eq!(sums.dest(0).out_pkts + sums.dest(1).out_pkts, 400);
    assert_eq!(sums.event(FwdEvent::RedirectCreated), steered);
    steered
}

#[test]
fn two_cores_fullnat_stays_on_one_core() {
    let t = table(
        tcp_key(),
        FwdMethod::FullNat,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |c| {
            c.local_addresses = vec![IpAddr::V4(LIP), IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2))];
        },
    );
    let mut sim = Sim::new(&t, 2);
    for i in 0..200u16 {
        let c = (CIP, 20000 + i);
        let v = (VIP, VPORT);
        let syn = sim.deliver(&seg(c, v, tcp::SYN, 64, &[]).build(), 0);
        assert_eq!(syn.first, syn.core, "never steered");
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(rip),
        } = syn.verdict
        else {
            panic!("{:?}", syn.verdict)
        };
        let out = crate::lb::fwd::classify(&syn.out).unwrap().unwrap();
        let l = (out.src, out.sport);
        assert_eq!(sim.rss.owner_v4(rip, l.0, RPORT, l.1), syn.core);
        let r = (rip, RPORT);
        assert_eq!(syn.out, seg(l, r, tcp::SYN, 63, &[]).build());
        let reply = sim.deliver(&seg(r, l, tcp::SYN | tcp::ACK, 64, &[]).build(), 0);
        assert_eq!((reply.first, reply.core), (syn.core, syn.core));
        assert_eq!(reply.out, seg(v, c, tcp::SYN | tcp::ACK, 63, &[]).build());
    }
    let sums = StatsTable::sum(&sim.lbs.iter().map(|lb| &**lb.stats()).collect::<Vec<_>>());
    assert_eq!(sums.event(FwdEvent::SteeredOut), 0);
    assert_eq!(sums.dest(0).out_pkts + sums.dest(1).out_pkts, 200);
}

#[test]
fn two_cores_dr_and_tun_live_on_the_request_owner() {
    for method in [FwdMethod::Route, FwdMethod::Tunnel] {
        let t = table(tcp_key(), method, &[(RIP1, VPORT)], |_| {});
        let mut sim = Sim::new(&t, 2);
        for i in 0..50u16 {
            let c = (CIP, 20000 + i);
            let d = sim.deliver(&seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build(), 0);
            assert_eq!((d.first, d.verdict), (d.core, fwd_to(RIP1)));
            let d2 = sim.deliver(&seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build(), 0);
            assert_eq!(d2.core, d.core);
        }
        let n: usize = sim.lbs.iter().map(|lb| lb.conns().len()).sum();
        assert_eq!(n, 50, "{method:?}");
    }
}

#[test]
fn two_cores_nat_steered_edge_cases() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP3, RPORT)], |_| {});
    let mut sim = Sim::new(&t, 2);
    // Find a client port whose NAT connection is steered.
    let cport = (1000..2000u16)
        .find(|&p| sim.rss.owner_v4(CIP, VIP, p, VPORT) != sim.rss.owner_v4(RIP3, CIP, RPORT, p))
        .unwrap();
    let c = (CIP, cport);
    let q = usize::from(sim.rss.owner_v4(CIP, VIP, cport, VPORT));
    let r = 1 - q;
    // A steered "existing" non-SYN packet with no connection on R: dropped.
    let mut p = VecPacket::new(&seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build());
    assert_eq!(
        sim.lbs[r].process(&mut p, Some(SteerMeta::existing()), 0),
        FwdVerdict::Drop(FwdDrop::SteeredNoConn)
    );
    // A steered new connection naming a server R does not know: R schedules.
    let mut p = VecPacket::new(&seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build());
    assert_eq!(
        sim.lbs[r].process(&mut p, Some(SteerMeta::new_conn(9)), 0),
        fwd_to(RIP3)
    );
    // The connection expires on R; Q's redirect does not exist: a fresh
    // SYN goes through Q again.
    for now in (10_000..300_000).step_by(10_000) {
        for lb in &mut sim.lbs {
            lb.tick(now);
        }
    }
    assert!(sim.lbs.iter().all(|lb| lb.conns().is_empty()));
    let d = sim.deliver(&seg(c, (VIP, VPORT), tcp::SYN, 64, &[]).build(), 300_000);
    assert_eq!((d.first as usize, d.core as usize), (q, r));
    // R's connection times out (SYN_RECV 60 s) while Q's redirect lives on
    // (INPUT-ONLY SYN_RECV 60 s too; both go), then a client ACK to Q...
    for lb in &mut sim.lbs {
        lb.tick(400_000);
    }
    let d = sim.deliver(&seg(c, (VIP, VPORT), tcp::ACK, 64, &[]).build(), 400_000);
    assert_eq!(d.verdict, FwdVerdict::Drop(FwdDrop::NoConnNotSyn));
}

#[test]
fn process_burst_matches_process_one_by_one() {
    for method in [FwdMethod::Masq, FwdMethod::FullNat, FwdMethod::Tunnel] {
        let rport = if method == FwdMethod::Tunnel {
            VPORT
        } else {
            RPORT
        };
        let t = table(tcp_key(), method, &[(RIP1, rport), (RIP2, rport)], |_| {});
        let mut one = lb_with(&t, cfg());
        let mut burst = lb_with(&t, cfg());
        let mut rng = Rng(0xb0b);
        let flags = [
            tcp::SYN,
            tcp::ACK,
            tcp::ACK | tcp::PSH,
            tcp::FIN | tcp::ACK,
            tcp::RST,
        ];
        for round in 0..300u64 {
            // A burst of up to 40 frames over 8 flows: the same flow often
            // appears several times, SYNs replace closed connections, and
            // replies follow whatever the requests became.
            let n = 1 + rng.below(40);
            let mut frames = Vec::new();
            for _ in 0..n {
                let f = 1000 + rng.below(8) as u16;
                let fl = flags[rng.below(flags.len())];
                let reply = rng.below(3) == 0;
                let frame = if reply {
                    let dst = if method == FwdMethod::FullNat {
                        (LIP, 1024 + rng.below(8) as u16)
                    } else {
                        (CIP, f)
                    };
                    let rip = if rng.below(2) == 0 { RIP1 } else { RIP2 };
                    seg((rip, rport), dst, fl, 64, b"r").build()
                } else {
                    seg((CIP, f), (VIP, VPORT), fl, 64, b"q").build()
                };
                frames.push(frame);
            }
            let now = round * 500;
            let want: Vec<(FwdVerdict, Vec<u8>)> =
                frames.iter().map(|f| run(&mut one, f, now)).collect();
            let mut pkts: Vec<VecPacket> = frames.iter().map(|f| VecPacket::new(f)).collect();
            let mut verdicts = vec![FwdVerdict::NotService; n];
            assert_eq!(burst.process_burst(&mut pkts, &[], &mut verdicts, now), n);
            for (k, (p, v)) in pkts.iter().zip(&verdicts).enumerate() {
                assert_eq!(
                    (*v, p.to_vec()),
                    want[k],
                    "{method:?} round {round} packet {k}"
                );
            }
            one.tick(now);
            burst.tick(now);
        }
        assert_eq!(one.conns().len(), burst.conns().len());
        assert_eq!(
            StatsTable::sum(&[one.stats()]),
            StatsTable::sum(&[burst.stats()])
        );
    }
}

#[test]
fn icmp_about_our_tunnel_packets_is_relayed_to_the_client() {
    let t = table(tcp_key(), FwdMethod::Tunnel, &[(RIP1, VPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let (c, v) = ((CIP, CPORT), (VIP, VPORT));
    let (verdict, tunneled) = run(&mut lb, &seg(c, v, tcp::SYN, 64, &[]).build(), 0);
    assert_eq!(verdict, fwd_to(RIP1));
    // A router between us and the server reports the tunnel packet too
    // big: it quotes the outer header, the inner header and 8 more bytes.
    let outer_ip = &tunneled[14..];
    let inner_quote = &outer_ip[20..48];
    let err = icmp_err(ROUTER, DIP, 64, 3, 4, 1400, &outer_ip[..48]).build();
    let (verdict, out) = run(&mut lb, &err, 0);
    assert_eq!(verdict, fwd_to(CIP));
    let want = eth()
        .ipv4(VIP, CIP)
        .tos(0xc0)
        .dont_frag(false)
        .icmp(3, 4, 1380)
        .payload(inner_quote)
        .build();
    assert_eq!(out, want);
    // Other errors keep their code and rest.
    let err = icmp_err(ROUTER, DIP, 64, 3, 1, 0, &outer_ip[..60]).build();
    let (verdict, out) = run(&mut lb, &err, 0);
    assert_eq!(verdict, fwd_to(CIP));
    let want = eth()
        .ipv4(VIP, CIP)
        .tos(0xc0)
        .dont_frag(false)
        .icmp(3, 1, 0)
        .payload(inner_quote)
        .build();
    assert_eq!(out, want);
    // Not from our tunnel source, or not our server: not ours.
    let mut foreign = outer_ip[..48].to_vec();
    foreign[12..16].copy_from_slice(&ROUTER.octets());
    let err = icmp_err(ROUTER, DIP, 64, 3, 4, 1400, &foreign).build();
    assert_eq!(run(&mut lb, &err, 0).0, FwdVerdict::NotService);
    let mut other_rs = outer_ip[..48].to_vec();
    other_rs[16..20].copy_from_slice(&RIP2.octets());
    let err = icmp_err(ROUTER, DIP, 64, 3, 4, 1400, &other_rs).build();
    assert_eq!(run(&mut lb, &err, 0).0, FwdVerdict::NotService);
    // The owner of such an error is the core of the connection inside.
    let rss = RssOwner::round_robin(4, 128);
    let err = icmp_err(ROUTER, DIP, 64, 3, 4, 1400, &outer_ip[..48]).build();
    assert_eq!(
        rss.owner_of_frame(&err),
        Some(rss.owner_v4(CIP, VIP, CPORT, VPORT))
    );
}

/// A client port reused toward another service that maps to the same real
/// server: the new connection has the same reply tuple as the old one,
/// which is in TIME_WAIT. The old entry gives way (it would otherwise block
/// the client for two minutes); a live one does not.
#[test]
fn client_port_reused_toward_another_service_on_the_same_server() {
    let mut t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let other = ServiceKey::tcp(IpAddr::V4(VIP), 81);
    t.add_service(other, ServiceConfig::with_scheduler("rr"))
        .unwrap();
    t.add_dest(
        &other,
        RealServerConfig::new(IpAddr::V4(RIP1), RPORT, FwdMethod::Masq),
    )
    .unwrap();
    let mut lb = lb_with(&t, cfg());
    let c = (CIP, CPORT);
    let (v80, v81, rs) = ((VIP, VPORT), (VIP, 81), (RIP1, RPORT));
    // connection 1 to :80, closed both ways: TIME_WAIT
    for (src, dst, flags) in [
        (c, v80, 0x02),
        (rs, c, 0x12),
        (c, v80, 0x10),
        (c, v80, 0x11),
        (rs, c, 0x11),
        (c, v80, 0x10),
    ] {
        let (v, _) = run(&mut lb, &seg(src, dst, flags, 64, &[]).build(), 1_000);
        assert!(matches!(v, FwdVerdict::Forward { .. }), "{v:?}");
    }
    // same client port toward :81, same real server: forwarded
    let (v, _) = run(&mut lb, &seg(c, v81, 0x02, 64, &[]).build(), 2_000);
    assert_eq!(v, fwd_to(RIP1));
    // its reply is translated for the :81 connection
    let (v, out) = run(&mut lb, &seg(rs, c, 0x12, 64, &[]).build(), 2_000);
    assert_eq!(v, fwd_to(CIP));
    assert_eq!(
        &out[34..36],
        &81u16.to_be_bytes(),
        "reply source port is the new VIP port"
    );

    // while that connection is established, the same port toward :80 is
    // refused rather than stealing it
    let (v, _) = run(&mut lb, &seg(c, v81, 0x10, 64, &[]).build(), 2_000);
    assert_eq!(v, fwd_to(RIP1));
    let (v, _) = run(&mut lb, &seg(c, v80, 0x02, 64, &[]).build(), 2_500);
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::ReplyTupleInUse));
}

/// Issue 12 item 9: time exceeded errors are rate limited like Linux's
/// (icmp_ratelimit 1000 ms with a burst of 6 per destination, 1000/s with
/// a burst of 50 in all); the packet is still dropped as ttl_expired and
/// the suppressed error counted.
#[test]
fn time_exceeded_errors_are_rate_limited_per_destination() {
    let t = table(tcp_key(), FwdMethod::Masq, &[(RIP1, RPORT)], |_| {});
    let mut lb = lb_with(&t, cfg());
    let dying = |port: u16| seg((CIP, port), (VIP, VPORT), tcp::SYN, 1, &[]).build();
    let mut sent = 0;
    for i in 0..100u16 {
        let (v, _) = run(&mut lb, &dying(CPORT + i), 0);
        if v == fwd_to(CIP) {
            sent += 1;
        } else {
            assert_eq!(v, FwdVerdict::Drop(FwdDrop::TtlExpired));
        }
    }
    assert_eq!(sent, 6, "a burst of 6 to one client");
    assert_eq!(lb.stats().event(FwdEvent::TimeExceededSent), 6);
    assert_eq!(lb.stats().event(FwdEvent::IcmpRateLimitedHost), 94);
    assert_eq!(lb.stats().drop_count(FwdDrop::TtlExpired), 100);
    // a second later, one more
    let (v, _) = run(&mut lb, &dying(CPORT), 1000);
    assert_eq!(v, fwd_to(CIP));
    let (v, _) = run(&mut lb, &dying(CPORT), 1001);
    assert_eq!(v, FwdVerdict::Drop(FwdDrop::TtlExpired));
}

#[test]
fn two_cores_nat_synproxy_opens_on_the_reply_owner() {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP3, RPORT)],
        |c| c.synproxy = true,
    );
    let mut sim = Sim::new(&t, 2);
    let mut steered = 0;
    for i in 0..100u16 {
        let c = (CIP, 30000 + i);
        let v = (VIP, VPORT);
        let synack = sim.deliver(&seg(c, v, tcp::SYN, 64, &[]).build(), 0);
        assert_eq!(synack.verdict, fwd_to(CIP));
        let out = crate::lb::fwd::classify(&synack.out).unwrap().unwrap();
        let cookie = u32::from_be_bytes(synack.out[out.l4 + 4..out.l4 + 8].try_into().unwrap());
        let cisn = 0x1000_0000 + u32::from(tcp::SYN);
        let ack = eth()
            .ipv4(CIP, VIP)
            .tcp(c.1, VPORT, tcp::ACK)
            .seq(cisn + 1)
            .ack(cookie.wrapping_add(1))
            .build();
        let syn = sim.deliver(&ack, 0);
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(rip),
        } = syn.verdict
        else {
            panic!("{:?}", syn.verdict)
        };
        let owner = sim.rss.owner_v4(rip, CIP, RPORT, c.1);
        assert_eq!(syn.core, owner, "opened where the replies land");
        if syn.first != owner {
            steered += 1;
        }
        let s = crate::lb::fwd::classify(&syn.out).unwrap().unwrap();
        assert_eq!((s.tcp_flags, s.dst, s.dport), (tcp::SYN, rip, RPORT));
        let r = (rip, RPORT);
        let server_synack = eth()
            .ipv4(rip, CIP)
            .tcp(RPORT, c.1, tcp::SYN | tcp::ACK)
            .seq(0x7000_0000)
            .ack(cisn + 1)
            .build();
        let d = sim.deliver(&server_synack, 0);
        assert_eq!((d.core, d.verdict), (owner, fwd_to(rip)));
        let data = eth()
            .ipv4(CIP, VIP)
            .tcp(c.1, VPORT, tcp::ACK | tcp::PSH)
            .seq(cisn + 1)
            .ack(cookie.wrapping_add(1))
            .payload(REQ)
            .build();
        let d = sim.deliver(&data, 0);
        assert_eq!((d.core, d.verdict), (owner, fwd_to(rip)));
        let o = crate::lb::fwd::classify(&d.out).unwrap().unwrap();
        let acked = u32::from_be_bytes(d.out[o.l4 + 8..o.l4 + 12].try_into().unwrap());
        assert_eq!(acked, 0x7000_0001, "acknowledgement in the server's space");
        let reply = sim.deliver(&seg(r, c, tcp::ACK, 64, &[]).build(), 0);
        assert_eq!((reply.core, reply.verdict), (owner, fwd_to(CIP)));
    }
    assert!(steered > 0, "no cookie ACK needed steering");
    let sums = StatsTable::sum(&sim.lbs.iter().map(|lb| &**lb.stats()).collect::<Vec<_>>());
    assert_eq!(sums.event(FwdEvent::SynproxyCookieSent), 100);
    assert_eq!(sums.event(FwdEvent::SynproxyAckValid), 100, "counted once");
    assert_eq!(sums.event(FwdEvent::SynproxyServerSynAck), 100);
}

#[test]
fn half_open_expiries_are_counted_per_server() {
    let t = table(
        tcp_key(),
        FwdMethod::Masq,
        &[(RIP1, RPORT), (RIP2, RPORT)],
        |_| {},
    );
    let mut lb = lb_with(&t, cfg());
    // rr: the first SYN goes to RIP1 and is never answered; the second
    // goes to RIP2 and is completed
    let syn = |port| seg((CIP, port), (VIP, VPORT), tcp::SYN, 64, &[]).build();
    assert_eq!(run(&mut lb, &syn(CPORT), 0).0, fwd_to(RIP1));
    assert_eq!(run(&mut lb, &syn(CPORT + 1), 0).0, fwd_to(RIP2));
    let ack = seg((CIP, CPORT + 1), (VIP, VPORT), tcp::ACK, 64, &[]).build();
    assert_eq!(run(&mut lb, &ack, 10).0, fwd_to(RIP2));
    let (r1, r2) = (dest_id(&t, RIP1), dest_id(&t, RIP2));
    assert_eq!(lb.tick(59_000), 0);
    assert_eq!(lb.stats().syn_timeouts(r1), 0);
    // SYN_RECV lasts 60 s
    assert_eq!(lb.tick(61_000), 1);
    assert_eq!(lb.stats().syn_timeouts(r1), 1);
    assert_eq!(lb.stats().syn_timeouts(r2), 0);
    assert_eq!(
        StatsTable::sum_syn_timeouts([&**lb.stats(), &**lb.stats()], r1),
        2
    );
    // the established one expires later, not as a SYN timeout
    lb.tick(2_000_000);
    assert_eq!(lb.stats().syn_timeouts(r2), 0);
}

/// The entry a new connection's first packet leaves, through the burst
/// path and `process`: SYN_RECV for a SYN (60 s, ActiveConn, the packet
/// counted in `in_pkts`) whatever the method, UDP's state and 300 s
/// (InActConn), a sloppy ACK straight to ESTABLISHED (900 s) assuring its
/// persistence template, and a template counting the connection it
/// controls. (The director makes the entry already classified by its
/// packet, `ConnTable::insert_first`: the same entry as insert, then
/// update_state.)
#[test]
fn first_packet_leaves_the_entry_in_its_first_state() {
    struct Case {
        method: FwdMethod,
        udp: bool,
        flags: u8,
        persistence: bool,
        // state name, timeout s, (active, inactive), template assured
        want: (&'static str, u32, (u32, u32), bool),
    }
    let case = |method, udp, flags, persistence, want| Case {
        method,
        udp,
        flags,
        persistence,
        want,
    };
    let cases = [
        case(
            FwdMethod::FullNat,
            false,
            tcp::SYN,
            false,
            ("SYN_RECV", 60, (1, 0), false),
        ),
        case(
            FwdMethod::Masq,
            false,
            tcp::SYN,
            false,
            ("SYN_RECV", 60, (1, 0), false),
        ),
        case(
            FwdMethod::Route,
            false,
            tcp::SYN,
            false,
            ("SYN_RECV", 60, (1, 0), false),
        ),
        case(
            FwdMethod::Tunnel,
            false,
            tcp::SYN,
            false,
            ("SYN_RECV", 60, (1, 0), false),
        ),
        case(
            FwdMethod::FullNat,
            false,
            tcp::SYN,
            true,
            ("SYN_RECV", 60, (1, 0), false),
        ),
        case(
            FwdMethod::Route,
            false,
            tcp::ACK,
            false,
            ("ESTABLISHED", 900, (1, 0), false),
        ),
        case(
            FwdMethod::Masq,
            false,
            tcp::ACK,
            true,
            ("ESTABLISHED", 900, (1, 0), true),
        ),
        case(
            FwdMethod::FullNat,
            false,
            tcp::FIN | tcp::ACK,
            false,
            ("CLOSE", 10, (0, 1), false),
        ),
        case(
            FwdMethod::FullNat,
            true,
            0,
            false,
            ("UDP", 300, (0, 1), false),
        ),
        case(FwdMethod::Masq, true, 0, true, ("UDP", 300, (0, 1), false)),
    ];
    for c in &cases {
        for burst in [false, true] {
            let key = if c.udp { udp_key() } else { tcp_key() };
            let (proto, vport) = if c.udp {
                (Protocol::Udp, 53)
            } else {
                (Protocol::Tcp, VPORT)
            };
            // (DR and TUN cannot map ports)
            let rport = match c.method {
                FwdMethod::Route | FwdMethod::Tunnel => vport,
                _ => RPORT,
            };
            let t = table(key, c.method, &[(RIP1, rport)], |s| {
                if c.persistence {
                    s.persistence = Some(300);
                }
            });
            let mut lb = lb_with(&t, cfg());
            lb.set_defense(crate::lb::defense::DefenseConfig {
                sloppy_tcp: true,
                ..crate::lb::defense::DefenseConfig::default()
            });
            let frame = if c.udp {
                udp((CIP, CPORT), (VIP, vport), 64, b"q").build()
            } else {
                seg((CIP, CPORT), (VIP, vport), c.flags, 64, &[]).build()
            };
            let now = 5_000;
            let mut p = VecPacket::new(&frame);
            let v = if burst {
                let mut v = [FwdVerdict::NotService];
                lb.process_burst(std::slice::from_mut(&mut p), &[], &mut v, now);
                v[0]
            } else {
                lb.process(&mut p, None, now)
            };
            let what = format!(
                "{:?} udp={} flags={:#x} burst={burst}",
                c.method, c.udp, c.flags
            );
            assert!(matches!(v, FwdVerdict::Forward { .. }), "{what}: {v:?}");
            let tuple = Tuple {
                proto,
                src: Endpoint::new(u32::from(CIP), CPORT),
                dst: Endpoint::new(u32::from(VIP), vport),
            };
            let (id, _) = lb.conns().peek(&tuple).expect("entry");
            let e = *lb.conns().get(id).unwrap();
            let (name, secs, load, assured) = c.want;
            assert_eq!(e.state_name(), name, "{what}");
            assert_eq!(e.timeout_ms(), secs * 1000, "{what}");
            assert_eq!(e.expires_ms(), now + u64::from(secs) * 1000, "{what}");
            assert_eq!(e.in_pkts(), 1, "{what}: the packet is counted");
            let d = dest_id(&t, RIP1);
            let l = lb.load();
            assert_eq!((l.active(d), l.inactive(d)), load, "{what}");
            assert_eq!(e.has_template(), c.persistence, "{what}");
            if let Some(tpl) = lb.conns().template_of(id) {
                let tc = lb.conns().get(tpl).unwrap();
                assert_eq!(tc.controlled(), 1, "{what}");
                assert_eq!(tc.is_assured(), assured, "{what}");
            }
            // it expires on its timeout, not before
            lb.tick(now + u64::from(secs) * 1000 - 1_000);
            assert!(lb.conns().get(id).is_some(), "{what}: kept");
            lb.tick(now + u64::from(secs) * 1000 + 1_000);
            assert!(lb.conns().get(id).is_none(), "{what}: expired");
        }
    }
}
