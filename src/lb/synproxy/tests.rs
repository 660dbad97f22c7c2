//! SYN proxy: cookies, and packet fixtures (input frame → exact output).

use super::*;
use crate::lb::fwd;
use crate::lb::packet::VecPacket;
use crate::wire::{MacAddr, PacketBuilder, TcpPacket};

const CIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const CLIENT_ISN: u32 = 0x1111_0000;
const SERVER_ISN: u32 = 0x7000_0000;

fn key() -> CookieKey {
    CookieKey::from_seed(1)
}

fn flow() -> CookieFlow {
    CookieFlow {
        client: CIP,
        vip: VIP,
        cport: 40000,
        vport: 80,
    }
}

fn info(frame: &[u8]) -> PacketInfo {
    fwd::classify(frame).unwrap().unwrap()
}

/// Linux's SYN options: MSS 1460, SACK, timestamps, wscale 7.
const LINUX_SYN_OPTS: [u8; 20] = [
    2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 3, 3, 7,
];

#[test]
fn cookie_round_trip_and_forgery() {
    let d = CookieData {
        mss_idx: 3,
        wscale: Some(7),
        sack: true,
        ts: true,
    };
    let c = make_cookie(&key(), &flow(), CLIENT_ISN, &d, 1_000);
    assert_eq!(check_cookie(&key(), &flow(), CLIENT_ISN, c, 1_000), Some(d));
    // valid for MAX_COOKIE_AGE periods after the one it was made in
    let last = (u64::from(MAX_COOKIE_AGE) + 1) * COOKIE_PERIOD_MS - 1;
    assert_eq!(check_cookie(&key(), &flow(), CLIENT_ISN, c, last), Some(d));
    assert_eq!(check_cookie(&key(), &flow(), CLIENT_ISN, c, last + 1), None);
    // another client ISN, port, key, or a changed cookie: refused
    // (a client ISN off by a little shifts the data field, as in Linux)
    assert_ne!(
        check_cookie(&key(), &flow(), CLIENT_ISN + 1, c, 1_000),
        Some(d)
    );
    assert_eq!(
        check_cookie(&key(), &flow(), CLIENT_ISN + 0x1000, c, 1_000),
        None
    );
    let other = CookieFlow {
        cport: 40001,
        ..flow()
    };
    assert_eq!(check_cookie(&key(), &other, CLIENT_ISN, c, 1_000), None);
    assert_eq!(
        check_cookie(&CookieKey::from_seed(2), &flow(), CLIENT_ISN, c, 1_000),
        None
    );
    // forged acknowledgements: nearly all refused (17 bits must match)
    let accepted = (0..100_000u32)
        .filter(|i| {
            let guess = c ^ (i.wrapping_mul(0x9e37_79b9) | 1);
            check_cookie(&key(), &flow(), CLIENT_ISN, guess, 1_000).is_some()
        })
        .count();
    assert!(accepted < 20, "{accepted} forged cookies accepted");
}

#[test]
fn cookie_data_covers_every_option_combination() {
    for mss_idx in 0..4 {
        for wscale in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                let d = CookieData {
                    mss_idx,
                    wscale,
                    sack,
                    ts: !sack,
                };
                let c = make_cookie(&key(), &flow(), 5, &d, 0);
                assert_eq!(check_cookie(&key(), &flow(), 5, c, 0), Some(d));
            }
        }
    }
    let from = |mss| {
        CookieData::from_syn(&SynOptions {
            mss,
            ..SynOptions::default()
        })
    };
    assert_eq!(from(Some(1460)).mss(), 1460);
    assert_eq!(from(Some(9000)).mss(), 1460);
    assert_eq!(from(Some(1400)).mss(), 1300);
    assert_eq!(from(Some(100)).mss(), 536);
    assert_eq!(from(None).mss(), 536);
}

fn client_syn() -> PacketBuilder {
    PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .ttl(63)
        .ident(77)
        .tcp(40000, 80, 0x02)
        .seq(CLIENT_ISN)
        .window(64240)
        .tcp_options(&LINUX_SYN_OPTS)
}

#[test]
fn syn_is_answered_with_a_cookie_synack() {
    let input = client_syn().build();
    let mut p = VecPacket::new(&input);
    answer_syn(&mut p, &info(&input), &key(), 0, 1460).unwrap();
    let cookie = make_cookie(
        &key(),
        &flow(),
        CLIENT_ISN,
        &CookieData {
            mss_idx: 3,
            wscale: Some(7),
            sack: true,
            ts: true,
        },
        0,
    );
    // MSS, SACK permitted, timestamps (vsd's clock, the client's echoed),
    // window scale 7
    let expected = PacketBuilder::ethernet(M1, M2)
        .ipv4(VIP, CIP)
        .tcp(80, 40000, 0x12)
        .seq(cookie)
        .ack(CLIENT_ISN + 1)
        .window(SYNACK_WINDOW)
        .tcp_options(&[
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 9, 1, 3, 3, 7,
        ])
        .build();
    assert_eq!(p.to_vec(), expected);
    // A SYN with data and without options: payload gone, no wscale/SACK.
    let input = PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .tcp(40000, 80, 0x02)
        .seq(CLIENT_ISN)
        .payload(b"early")
        .build();
    let mut p = VecPacket::new(&input);
    answer_syn(&mut p, &info(&input), &key(), 0, 1400).unwrap();
    let out = p.to_vec();
    let t = TcpPacket::new_checked(&out[34..]).unwrap();
    assert_eq!(t.options(), &[2, 4, 5, 0x78]);
    assert!(t.payload().is_empty());
    assert!(t.verify_checksum_v4(VIP, CIP));
}

fn client_ack(cookie: u32, payload: &[u8]) -> PacketBuilder {
    PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .ttl(63)
        .tcp(40000, 80, 0x10)
        .seq(CLIENT_ISN + 1)
        .ack(cookie.wrapping_add(1))
        .window(502)
        .payload(payload)
}

fn synack_cookie(now: u64) -> u32 {
    let input = client_syn().build();
    let mut p = VecPacket::new(&input);
    answer_syn(&mut p, &info(&input), &key(), now, 1460).unwrap();
    let out = p.to_vec();
    TcpPacket::new_checked(&out[34..]).unwrap().seq_number()
}

#[test]
fn valid_ack_becomes_the_servers_syn() {
    let cookie = synack_cookie(0);
    let input = client_ack(cookie, &[]).build();
    let i = info(&input);
    let a = check_ack(&input, &i, &key(), 30_000).unwrap();
    assert_eq!(
        (a.client_isn, a.our_isn, a.payload),
        (CLIENT_ISN, cookie, 0)
    );
    let mut p = VecPacket::new(&input);
    assert!(ack_to_syn(&mut p, &i, &a));
    // the client's options (no timestamps), its window unscaled
    let expected = PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .ttl(63)
        .tcp(40000, 80, 0x02)
        .seq(CLIENT_ISN)
        .window(502 << 7)
        .tcp_options(&[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7])
        .build();
    assert_eq!(p.to_vec(), expected);
    // forged, wrong flags, stale
    let bad = client_ack(cookie ^ 0x0010_0000, &[]).build();
    assert_eq!(
        check_ack(&bad, &info(&bad), &key(), 0),
        Err(ProxyDrop::BadCookie)
    );
    let fin = PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .tcp(40000, 80, 0x11)
        .seq(CLIENT_ISN + 1)
        .ack(cookie + 1)
        .build();
    assert_eq!(
        check_ack(&fin, &info(&fin), &key(), 0),
        Err(ProxyDrop::Unexpected)
    );
    assert_eq!(
        check_ack(&input, &i, &key(), 3 * COOKIE_PERIOD_MS),
        Err(ProxyDrop::BadCookie)
    );
    // data in the ACK is reported (the caller drops and counts it)
    let with_data = client_ack(cookie, b"GET /").build();
    let a = check_ack(&with_data, &info(&with_data), &key(), 0).unwrap();
    assert_eq!(a.payload, 5);
}

/// The server's SYN-ACK as it reaches vsd (NAT: to the client's address).
fn server_synack(server_ws: Option<u8>) -> PacketBuilder {
    let mut opts = vec![2, 4, 5, 0xb4, 1, 1, 4, 2];
    if let Some(w) = server_ws {
        opts.extend_from_slice(&[1, 3, 3, w]);
    }
    PacketBuilder::ethernet(M2, M1)
        .ipv4(RIP, CIP)
        .tcp(8080, 40000, 0x12)
        .seq(SERVER_ISN)
        .ack(CLIENT_ISN + 1)
        .window(65160)
        .tcp_options(&opts)
}

fn proxied(cookie: u32) -> Proxied {
    let input = client_ack(cookie, &[]).build();
    new_proxied(&check_ack(&input, &info(&input), &key(), 0).unwrap())
}

#[test]
fn servers_synack_becomes_the_ack_that_completes_its_handshake() {
    let cookie = synack_cookie(0);
    let mut st = proxied(cookie);
    let input = server_synack(Some(9)).build();
    let mut p = VecPacket::new(&input);
    assert!(synack_to_ack(&mut p, &info(&input), &mut st));
    let expected = PacketBuilder::ethernet(M2, M1)
        .ipv4(CIP, RIP)
        .tcp(40000, 8080, 0x10)
        .seq(CLIENT_ISN + 1)
        .ack(SERVER_ISN + 1)
        .window(502)
        .build();
    assert_eq!(p.to_vec(), expected);
    assert_eq!(st.phase, Phase::Established);
    assert_eq!(st.delta, cookie.wrapping_sub(SERVER_ISN));
    assert_eq!((st.client_view_wscale, st.server_wscale), (7, 9));
    // a SYN-ACK for another SYN is not ours
    let mut st2 = proxied(cookie);
    let other = server_synack(None).ack(CLIENT_ISN + 7).build();
    let mut p = VecPacket::new(&other);
    assert!(!synack_to_ack(&mut p, &info(&other), &mut st2));
    assert_eq!(st2.phase, Phase::WaitServer);
}

#[test]
fn sequence_numbers_and_sack_blocks_are_shifted_both_ways() {
    let cookie = synack_cookie(0);
    let mut st = proxied(cookie);
    let sa = server_synack(Some(9)).build();
    let mut p = VecPacket::new(&sa);
    assert!(synack_to_ack(&mut p, &info(&sa), &mut st));
    let delta = st.delta;
    // client -> server: ack and SACK edges (after NOP NOP, and after a lone
    // NOP: odd offset) lose delta
    for opts in [
        vec![1, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let at = opts.iter().position(|&b| b == 5).unwrap() + 2;
        let (l, r) = (cookie.wrapping_add(1001), cookie.wrapping_add(2001));
        let mut o = opts.clone();
        o[at..at + 4].copy_from_slice(&l.to_be_bytes());
        o[at + 4..at + 8].copy_from_slice(&r.to_be_bytes());
        let mut e = opts.clone();
        e[at..at + 4].copy_from_slice(&SERVER_ISN.wrapping_add(1001).to_be_bytes());
        e[at + 4..at + 8].copy_from_slice(&SERVER_ISN.wrapping_add(2001).to_be_bytes());
        let data = |ack: u32, opts: &[u8]| {
            PacketBuilder::ethernet(M1, M2)
                .ipv4(CIP, VIP)
                .tcp(40000, 80, 0x18)
                .seq(CLIENT_ISN + 1)
                .ack(ack)
                .window(502)
                .tcp_options(opts)
                .payload(b"GET / HTTP/1.1\r\n\r\n")
                .build()
        };
        let input = data(cookie.wrapping_add(1), &o);
        let mut f = input.clone();
        adjust_client(&mut f, &info(&input), delta, None);
        assert_eq!(f, data(SERVER_ISN + 1, &e), "options {opts:?}");
    }
    // server -> client: seq gains delta; window 100 << 9 seen as << 7
    let reply = |seq: u32, window: u16| {
        PacketBuilder::ethernet(M2, M1)
            .ipv4(RIP, CIP)
            .tcp(8080, 40000, 0x18)
            .seq(seq)
            .ack(CLIENT_ISN + 19)
            .window(window)
            .payload(b"HTTP/1.0 200 OK\r\n")
            .build()
    };
    let input = reply(SERVER_ISN + 1, 100);
    let mut f = input.clone();
    adjust_server(&mut f, &info(&input), &st);
    assert_eq!(f, reply(cookie.wrapping_add(1), 400));
    // saturates rather than wraps
    let input = reply(SERVER_ISN + 1, 0x8000);
    let mut f = input.clone();
    adjust_server(&mut f, &info(&input), &st);
    assert_eq!(f, reply(cookie.wrapping_add(1), 0xffff));
}

#[test]
fn servers_rst_before_its_synack_goes_to_the_client_in_its_space() {
    let cookie = synack_cookie(0);
    let st = proxied(cookie);
    let rst = |seq: u32| {
        PacketBuilder::ethernet(M2, M1)
            .ipv4(RIP, CIP)
            .tcp(8080, 40000, 0x14)
            .seq(seq)
            .ack(CLIENT_ISN + 1)
            .window(0)
            .build()
    };
    let input = rst(0);
    let mut f = input.clone();
    adjust_server(&mut f, &info(&input), &st);
    assert_eq!(f, rst(cookie.wrapping_add(1)));
}

#[test]
fn side_table_entries_belong_to_their_connection_only() {
    use crate::lb::conn::{ConnTable4, Endpoint, NewConn, Seed};
    use crate::lb::load::CoreLoad;
    use crate::lb::types::{FwdMethod, Protocol};
    use std::sync::Arc;
    let mut t = ConnTable4::with_seed(8, Arc::new(CoreLoad::new(2)), 0, Seed::new(1)).unwrap();
    let nc = NewConn {
        proto: Protocol::Tcp,
        client: Endpoint::new(1, 1),
        virt: Endpoint::new(2, 2),
        local: None,
        real: Endpoint::new(3, 3),
        dest: 0,
        fwd: FwdMethod::Masq,
        one_packet: false,
        template: None,
    };
    let id = t.insert(&nc, 0).unwrap();
    let mut side = ProxyTable::default();
    assert!(!side.in_use());
    let cookie = synack_cookie(0);
    side.insert(t.capacity(), id, proxied(cookie));
    assert!(side.in_use());
    assert_eq!(side.get_mut(id).map(|p| p.our_isn), Some(cookie));
    t.remove(id);
    let id2 = t.insert(&nc, 0).unwrap();
    assert_eq!(id2.index(), id.index(), "slot reused");
    assert!(side.get_mut(id2).is_none(), "new connection is not proxied");
}

#[test]
fn side_entry_size() {
    // what a proxied connection adds to its 64-byte entry
    assert_eq!(std::mem::size_of::<Proxied>(), 44);
}

/// Timestamps are negotiated with the client by vsd and with the server
/// by the client's own clock; every later segment is moved between the
/// two: TSval from the server gains `ts_delta`, TSecr from the client
/// loses it.
#[test]
fn timestamps_are_shifted_between_vsds_clock_and_the_servers() {
    let now = 5_000;
    let syn = client_syn().build();
    let mut p = VecPacket::new(&syn);
    answer_syn(&mut p, &info(&syn), &key(), now, 1460).unwrap();
    let out = p.to_vec();
    let t = TcpPacket::new_checked(&out[34..]).unwrap();
    let sa = SynOptions::parse(t.options());
    assert_eq!(
        sa.timestamp,
        Some((5_000, 9)),
        "vsd's ms clock, client's TSval echoed"
    );
    let cookie = t.seq_number();
    let ts = |val: u32, ecr: u32| {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    };
    // the cookie ACK echoes vsd's TSval
    let ack = PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .tcp(40000, 80, 0x10)
        .seq(CLIENT_ISN + 1)
        .ack(cookie + 1)
        .window(502)
        .tcp_options(&ts(100, 5_000))
        .build();
    let a = check_ack(&ack, &info(&ack), &key(), now).unwrap();
    assert_eq!(a.timestamp, Some((100, 5_000)));
    let mut p = VecPacket::new(&ack);
    assert!(ack_to_syn(&mut p, &info(&ack), &a));
    let out = p.to_vec();
    let o = SynOptions::parse(TcpPacket::new_checked(&out[34..]).unwrap().options());
    assert_eq!(
        o.timestamp,
        Some((100, 0)),
        "the server sees the client's clock"
    );
    // the server answers with its own clock
    let mut st = new_proxied(&a);
    let synack = PacketBuilder::ethernet(M2, M1)
        .ipv4(RIP, CIP)
        .tcp(8080, 40000, 0x12)
        .seq(SERVER_ISN)
        .ack(CLIENT_ISN + 1)
        .tcp_options(&[
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 100, 1, 3, 3, 7,
        ])
        .build();
    let mut p = VecPacket::new(&synack);
    assert!(synack_to_ack(&mut p, &info(&synack), &mut st));
    assert!(st.ts);
    assert_eq!(st.ts_delta, 5_000u32.wrapping_sub(12_345));
    let out = p.to_vec();
    let t = TcpPacket::new_checked(&out[34..]).unwrap();
    assert_eq!(
        t.options(),
        &ts(100, 12_345)[..],
        "our ACK carries both clocks"
    );
    assert!(t.verify_checksum_v4(CIP, RIP));
    // client -> server: TSecr back on the server's clock
    let data = |val: u32, ecr: u32| {
        PacketBuilder::ethernet(M1, M2)
            .ipv4(CIP, VIP)
            .tcp(40000, 80, 0x18)
            .seq(CLIENT_ISN + 1)
            .ack(cookie + 1)
            .window(502)
            .tcp_options(&ts(val, ecr))
            .payload(b"GET")
            .build()
    };
    let input = data(101, 5_000);
    let mut f = input.clone();
    adjust_client(&mut f, &info(&input), st.delta, client_ts_delta(&st));
    let expected = PacketBuilder::ethernet(M1, M2)
        .ipv4(CIP, VIP)
        .tcp(40000, 80, 0x18)
        .seq(CLIENT_ISN + 1)
        .ack(SERVER_ISN + 1)
        .window(502)
        .tcp_options(&ts(101, 12_345))
        .payload(b"GET")
        .build();
    assert_eq!(f, expected);
    // server -> client: TSval on vsd's clock
    let reply = |seq: u32, val: u32| {
        PacketBuilder::ethernet(M2, M1)
            .ipv4(RIP, CIP)
            .tcp(8080, 40000, 0x18)
            .seq(seq)
            .ack(CLIENT_ISN + 4)
            .window(100)
            .tcp_options(&ts(val, 101))
            .payload(b"200")
            .build()
    };
    let input = reply(SERVER_ISN + 1, 12_346);
    let mut f = input.clone();
    adjust_server(&mut f, &info(&input), &st);
    // (the server's window scale 7 equals vsd's: the window is unchanged)
    assert_eq!(f, reply(cookie + 1, 5_001));
}
