//! Capture replay through the real binary with net_pcap: packets in from a
//! pcap file, vsd's answers out to another, compared byte for byte.
//! Deterministic, no namespaces; runs without hugepages.

mod common;

use common::*;
use std::net::Ipv4Addr;
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn config(dir: &std::path::Path, prefix: &str) -> String {
    let head = pcap::replay_config(dir, prefix, 4095, VSD_MAC, &[&format!("{DIP}/24")]);
    format!(
        r#"{head}

[[vip]]
address = "{VIP}"
port = "cap0"
"#,
    )
}

fn echo_request(dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
        .ipv4(PEER, dst)
        .ident(0x4242 + seq)
        .ttl(64)
        .icmp_echo_request(0x1d, seq)
        .payload(b"0123456789abcdefghij")
        .build()
}

fn echo_reply(src: Ipv4Addr, seq: u16) -> Vec<u8> {
    PacketBuilder::ethernet(VSD_MAC, PEER_MAC)
        .ipv4(src, PEER)
        .ident(0x4242 + seq)
        .ttl(64)
        .icmp_echo_reply(0x1d, seq)
        .payload(b"0123456789abcdefghij")
        .build()
}

#[test]
fn arp_and_echo_replies_byte_for_byte() {
    // net_pcap needs neither root nor hugepages
    let dir = std::env::temp_dir().join(unique("vsd-pcap-"));
    std::fs::create_dir_all(&dir).unwrap();
    let arp_req = PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
        .arp_request(PEER_MAC, PEER, VIP)
        .pad_to(60)
        .build();
    let mut bad_ip = echo_request(VIP, 9);
    bad_ip[14] = 0x44; // IHL 4: malformed
    let truncated = echo_request(DIP, 10)[..20].to_vec();
    let input = vec![
        arp_req,
        echo_request(VIP, 1),
        echo_request(DIP, 2),
        bad_ip,
        truncated,
    ];
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdp");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    // IHL 4 and a header cut short: both malformed IPv4, counted by
    // reason, no reply
    let counters = vsd.ask("counters");
    let fwd = &counters["forwarding"]["drops"];
    assert_eq!(fwd["bad_ihl"].as_u64(), Some(1), "{counters}");
    assert_eq!(fwd["truncated_ip"].as_u64(), Some(1), "{counters}");
    let status = vsd.stop();
    assert!(status.success());

    let out = pcap::read(&dir.join("out.pcap"));
    // the ARP reply keeps the request's 60-byte padded length
    let mut arp_reply = PacketBuilder::ethernet(VSD_MAC, PEER_MAC)
        .arp_reply(VSD_MAC, VIP, PEER_MAC, PEER)
        .build();
    arp_reply.resize(42, 0);
    // The ARP request taught vsd the peer's MAC unsolicited (a Stale entry,
    // as in Linux), so its first use moves it to DELAY: no unicast probe
    // before delay_probe_ms (5 s) has passed without a confirmation.
    let probe = PacketBuilder::ethernet(VSD_MAC, PEER_MAC)
        .arp_request(VSD_MAC, DIP, PEER)
        .pad_to(60)
        .build();
    assert!(!out.contains(&probe), "probed at once: {out:02x?}");
    let expected = vec![arp_reply, echo_reply(VIP, 1), echo_reply(DIP, 2)];
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.len(), expected.len(), "frames out: {out:02x?}");
    for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i} differs");
    }
}
