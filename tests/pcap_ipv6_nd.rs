//! Capture replay through the real binary with net_pcap: IPv6 neighbor
//! discovery and echo for the director's addresses, vsd's answers compared
//! byte for byte, malformed neighbor discovery dropped and counted, and an
//! unknown next hop resolved by a solicitation to its solicited-node
//! group. Deterministic, no namespaces; runs without hugepages.

mod common;

use common::*;
use std::net::Ipv6Addr;
use vsd::wire::icmpv6::{multicast_mac, solicited_node, ALL_NODES};
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// A neighbour that never answers.
const SILENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
/// vsd's link-local address (EUI-64 of VSD_MAC) and the peer's.
const VSD_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
const PEER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

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
"#,
    )
}

fn ns(src: Ipv6Addr, target: Ipv6Addr, from: MacAddr) -> PacketBuilder {
    let group = solicited_node(&target);
    PacketBuilder::ethernet(from, multicast_mac(&group))
        .ipv6(src, group)
        .neighbor_solicit(target, (!src.is_unspecified()).then_some(from))
}

fn na(target: Ipv6Addr, flags: u8, dst: Ipv6Addr, dst_mac: MacAddr) -> Vec<u8> {
    PacketBuilder::ethernet(VSD_MAC, dst_mac)
        .ipv6(target, dst)
        .neighbor_advert(flags, target, Some(VSD_MAC))
        .build()
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, seq: u16, reply: bool) -> Vec<u8> {
    let (from, to) = if reply {
        (VSD_MAC, PEER_MAC)
    } else {
        (PEER_MAC, VSD_MAC)
    };
    let b = PacketBuilder::ethernet(from, to).ipv6(src, dst).ttl(64);
    let b = if reply {
        b.icmpv6_echo_reply(0x1d, seq)
    } else {
        b.icmpv6_echo_request(0x1d, seq)
    };
    b.payload(b"0123456789abcdefghij").build()
}

#[test]
fn neighbor_discovery_and_echo6_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("vsd-pcap6-"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_hop = ns(PEER6, DIP6, PEER_MAC).ttl(64).build();
    let mut bad_sum = ns(PEER6, DIP6, PEER_MAC).build();
    bad_sum[14 + 40 + 3] ^= 0x5a;
    let input = vec![
        ns(PEER6, DIP6, PEER_MAC).build(),
        echo(PEER6, DIP6, 1, false),
        ns(Ipv6Addr::UNSPECIFIED, DIP6, PEER_MAC).build(),
        ns(PEER_LL, VSD_LL, PEER_MAC).build(),
        bad_hop,
        bad_sum,
        // from a neighbour vsd has not heard of: the reply must wait for a
        // solicitation nobody answers
        PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 3]), VSD_MAC)
            .ipv6(SILENT6, DIP6)
            .ttl(64)
            .icmpv6_echo_request(0x1e, 1)
            .build(),
    ];
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdp6");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64 && vsd.event("nd_solicits_out") >= 1
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    assert_eq!(vsd.dropped("bad_nd"), 1);
    assert_eq!(vsd.dropped("bad_icmpv6"), 1);
    assert_eq!(vsd.event("nd_dad_defended"), 1);
    assert_eq!(vsd.event("nd_solicits_in"), 3);
    assert_eq!(vsd.event("nd_adverts_out"), 3);
    let status = vsd.stop();
    assert!(status.success());

    let mut out = pcap::read(&dir.join("out.pcap"));
    // vsd's MLD reports of its groups (to ff02::16; tests/pcap_ipv6_mld.rs)
    out.retain(|f| f[..6] != [0x33, 0x33, 0, 0, 0, 0x16]);
    let _ = std::fs::remove_dir_all(&dir);
    let rso = 0xe0;
    let group = solicited_node(&SILENT6);
    let solicit = PacketBuilder::ethernet(VSD_MAC, multicast_mac(&group))
        .ipv6(DIP6, group)
        .neighbor_solicit(SILENT6, Some(VSD_MAC))
        .build();
    let expected = vec![
        na(DIP6, rso, PEER6, PEER_MAC),
        echo(DIP6, PEER6, 1, true),
        // the DAD probe: defended to all-nodes, solicited flag clear
        na(DIP6, 0xa0, ALL_NODES, multicast_mac(&ALL_NODES)),
        na(VSD_LL, rso, PEER_LL, PEER_MAC),
        solicit,
    ];
    assert!(out.len() >= expected.len(), "frames out: {out:02x?}");
    for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i} differs");
    }
    // only retries of the same solicitation may follow
    for (i, extra) in out.iter().enumerate().skip(expected.len()) {
        assert_eq!(extra, &expected[4], "frame {i}");
    }
}
