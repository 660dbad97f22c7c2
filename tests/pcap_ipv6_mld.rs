//! MLD through the real binary (net_pcap): vsd reports the solicited-node
//! groups of its IPv6 addresses and VIPs so that an MLD-snooping switch
//! forwards neighbor solicitations for them. At start it sends an MLDv2
//! State Change Report (join, CHANGE_TO_EXCLUDE with no sources) and
//! repeats it once; it answers a general query with every group, a
//! group-specific query for one of its groups with that group and one for
//! another group not at all, a group-and-source-specific query with
//! MODE_IS_INCLUDE of the sources asked about, an MLDv1 query with MLDv1
//! reports; queries failing RFC 3810 §5.1.14's checks are dropped and
//! counted. A VIP added with vsadm joins its group (reported twice),
//! deleted it leaves (twice). Every frame compared byte for byte with one built here
//! (checksums summed here, independently of vsd's code): link-local
//! source, hop limit 1, the Router Alert option. Deterministic, no
//! namespaces, no hugepages.

mod common;

use common::*;
use std::net::Ipv6Addr;
use vsd::wire::{IpProtocol, MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
/// vsd's link-local address (modified EUI-64 of VSD_MAC).
const VSD_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0x00ff, 0xfe00, 1);
const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);
/// The solicited-node groups: of DIP6 and VSD_LL (the same), of the VIP.
const GROUP_DIP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
const GROUP_VIP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x64);
const OTHER_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x99);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// A VIP added and deleted at run time (on the port's subnet), its group.
const NEW_VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x65);
const GROUP_NEW_VIP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x65);
const SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 9);

fn config(dir: &std::path::Path, prefix: &str) -> String {
    let head = pcap::replay_config(
        dir,
        prefix,
        4095,
        VSD_MAC,
        &["198.18.0.1/24", &format!("{DIP6}/64")],
    );
    format!(
        r#"{head}

[[vip]]
address = "{VIP}"
port = "cap0"

[[service]]
proto = "tcp"
vip = "{VIP}"
port = 80

[[service.real_server]]
address = "2001:2::11"
port = 80
method = "dr"
"#,
    )
}

/// The Internet checksum of `data` after the IPv6 pseudo header of an
/// ICMPv6 message from `src` to `dst`, summed here from scratch.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> u16 {
    let mut words: Vec<u8> = Vec::new();
    words.extend_from_slice(&src.octets());
    words.extend_from_slice(&dst.octets());
    words.extend_from_slice(&(data.len() as u32).to_be_bytes());
    words.extend_from_slice(&[0, 0, 0, 58]);
    words.extend_from_slice(data);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    let mut sum: u32 = words
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An MLD message (ICMPv6 `body`, checksum filled here) behind the
/// Hop-by-Hop header with the Router Alert, as a frame.
fn mld_frame(from: (MacAddr, Ipv6Addr), dst: Ipv6Addr, hop: u8, mut body: Vec<u8>) -> Vec<u8> {
    body[2..4].fill(0);
    let sum = icmpv6_checksum(from.1, dst, &body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    // next header ICMPv6, length 0; Router Alert (5, 2, value 0 = MLD);
    // PadN of 2
    let mut ext = vec![58, 0, 5, 2, 0, 0, 1, 0];
    ext.extend_from_slice(&body);
    let o = dst.octets();
    PacketBuilder::ethernet(from.0, MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]))
        .ipv6(from.1, dst)
        .ttl(hop)
        .ip_proto(IpProtocol(0))
        .payload(&ext)
        .build()
}

/// A query from the router: MLDv2 (with `sources`) or, with `None`, MLDv1.
fn query(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    group: Ipv6Addr,
    v2: Option<&[Ipv6Addr]>,
) -> Vec<u8> {
    // type 130, code 0, checksum, Maximum Response Code 10000 ms
    let mut body = vec![130, 0, 0, 0, 0x27, 0x10, 0, 0];
    body.extend_from_slice(&group.octets());
    if let Some(sources) = v2 {
        // S = 0, QRV 2; QQIC 125 s; number of sources
        body.extend_from_slice(&[2, 125]);
        body.extend_from_slice(&(sources.len() as u16).to_be_bytes());
        for s in sources {
            body.extend_from_slice(&s.octets());
        }
    }
    mld_frame((ROUTER_MAC, src), dst, hop, body)
}

/// vsd's MLDv2 report with `records` (type, group, sources).
fn report_v2(records: &[(u8, Ipv6Addr, &[Ipv6Addr])]) -> Vec<u8> {
    let mut body = vec![143, 0, 0, 0, 0, 0];
    body.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (kind, group, sources) in records {
        body.extend_from_slice(&[*kind, 0]);
        body.extend_from_slice(&(sources.len() as u16).to_be_bytes());
        body.extend_from_slice(&group.octets());
        for s in *sources {
            body.extend_from_slice(&s.octets());
        }
    }
    mld_frame((VSD_MAC, VSD_LL), ALL_MLDV2_ROUTERS, 1, body)
}

/// vsd's MLDv1 report of `group`, to the group.
fn report_v1(group: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![131, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&group.octets());
    mld_frame((VSD_MAC, VSD_LL), group, 1, body)
}

#[test]
fn mld_reports_and_answers_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("vsd-pcapmld-"));
    std::fs::create_dir_all(&dir).unwrap();
    let global_router = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xfe);
    let input = vec![
        query(ROUTER_LL, ALL_NODES, 1, Ipv6Addr::UNSPECIFIED, Some(&[])),
        query(ROUTER_LL, GROUP_VIP, 1, GROUP_VIP, Some(&[])),
        query(ROUTER_LL, OTHER_GROUP, 1, OTHER_GROUP, Some(&[])),
        query(ROUTER_LL, GROUP_VIP, 1, GROUP_VIP, Some(&[SOURCE])),
        query(ROUTER_LL, ALL_NODES, 1, Ipv6Addr::UNSPECIFIED, None),
        // RFC 3810 §5.1.14: hop limit 1 and a link-local source, or dropped
        query(ROUTER_LL, ALL_NODES, 2, Ipv6Addr::UNSPECIFIED, Some(&[])),
        query(
            global_router,
            ALL_NODES,
            1,
            Ipv6Addr::UNSPECIFIED,
            Some(&[]),
        ),
    ];
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdmld");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    // five answers, and the start-up report twice
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64 && vsd.event("mld_reports_out") >= 7
    });
    assert!(done, "vsd did not answer:\n{}", vsd.log_text());
    assert_eq!(vsd.event("mld_queries_in"), input.len() as u64);
    assert_eq!(vsd.dropped("bad_mld"), 2);
    assert_eq!(vsd.event("mld_reports_out"), 7);
    // a VIP added through the control socket: its group joins (reported
    // twice); deleted: it leaves (twice)
    let vsadm_ok = |args: &[&str]| {
        let out = vsd.vsadm(args);
        assert!(out.status.success(), "vsadm {args:?}: {out:?}");
    };
    let svc = format!("[{NEW_VIP}]:80");
    vsadm_ok(&["-A", "-t", &svc, "-s", "rr"]);
    let joined = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("mld_reports_out") >= 9
    });
    assert!(
        joined,
        "no report of the new VIP's group:\n{}",
        vsd.log_text()
    );
    vsadm_ok(&["-D", "-t", &svc]);
    let left = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("mld_reports_out") >= 11
    });
    assert!(
        left,
        "no report of the VIP's group leaving:\n{}",
        vsd.log_text()
    );
    assert!(vsd.stop().success());

    let out = pcap::read(&dir.join("out.pcap"));
    let _ = std::fs::remove_dir_all(&dir);
    let (join, is_ex, is_in) = (4, 2, 1);
    let joined = report_v2(&[(join, GROUP_DIP, &[]), (join, GROUP_VIP, &[])]);
    let expected: Vec<(&str, Vec<u8>)> = vec![
        (
            "the start-up State Change Report (join both groups)",
            joined.clone(),
        ),
        (
            "the general query's answer: every group",
            report_v2(&[(is_ex, GROUP_DIP, &[]), (is_ex, GROUP_VIP, &[])]),
        ),
        (
            "the VIP group's query: that group",
            report_v2(&[(is_ex, GROUP_VIP, &[])]),
        ),
        (
            "the group-and-source-specific query: IS_IN the sources asked about",
            report_v2(&[(is_in, GROUP_VIP, &[SOURCE])]),
        ),
        (
            "MLDv1 general query: a v1 report per group (1)",
            report_v1(GROUP_DIP),
        ),
        (
            "MLDv1 general query: a v1 report per group (2)",
            report_v1(GROUP_VIP),
        ),
        ("the State Change Report repeated", joined),
        (
            "a VIP added: its group joins",
            report_v2(&[(join, GROUP_NEW_VIP, &[])]),
        ),
        (
            "a VIP added: repeated",
            report_v2(&[(join, GROUP_NEW_VIP, &[])]),
        ),
        (
            "the VIP deleted: its group leaves (CHANGE_TO_INCLUDE, no sources)",
            report_v2(&[(3, GROUP_NEW_VIP, &[])]),
        ),
        (
            "the VIP deleted: repeated",
            report_v2(&[(3, GROUP_NEW_VIP, &[])]),
        ),
    ];
    for (i, (what, want)) in expected.iter().enumerate() {
        let got = out
            .get(i)
            .unwrap_or_else(|| panic!("missing frame {i} ({what}); got {out:02x?}"));
        assert_eq!(got, want, "frame {i}: {what}");
    }
    assert_eq!(out.len(), expected.len(), "extra frames: {out:02x?}");
}
