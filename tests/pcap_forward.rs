//! Capture replay of forwarding through the real binary (net_pcap): for
//! each method a request (and for NAT/FULLNAT its reply) goes in, and the
//! exact frame vsd sends out is compared byte for byte, checksums included.
//! Malformed packets go in too and must be dropped and counted by reason.
//! One-armed: the client subnet and the server subnet share the pcap port.

mod common;

use common::*;
use std::net::Ipv4Addr;
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const SRV_DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;

fn config(dir: &std::path::Path, prefix: &str) -> String {
    let head = pcap::replay_config(
        dir,
        prefix,
        4095,
        VSD_MAC,
        &[&format!("{DIP}/24"), &format!("{SRV_DIP}/24")],
    );
    let svc = |port: u16, method: &str, rport: u16, extra: &str| {
        pcap::service("tcp", VIP, port, extra, RS, rport, method)
    };
    format!(
        r#"{head}
[lb]
conn_capacity = 4096
tun_source = "{SRV_DIP}"

[[vip]]
address = "{VIP}"
port = "cap0"
{nat}{dr}{tun}{fnat}
[[service]]
proto = "udp"
vip = "{VIP}"
port = 53
scheduler = "rr"

[[service.real_server]]
address = "{RS}"
port = 5353
method = "nat"
"#,
        nat = svc(80, "nat", 8080, ""),
        dr = svc(81, "dr", 81, ""),
        tun = svc(82, "tun", 82, ""),
        fnat = svc(
            83,
            "fullnat",
            8083,
            &format!("local_addresses = [\"{LIP}\"]")
        ),
    )
}

/// A client TCP segment to the VIP.
fn client_tcp(dport: u16, flags: u8) -> PacketBuilder {
    PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv4(CLIENT, VIP)
        .ttl(64)
        .ident(0x1000 + dport)
        .tcp(40000, dport, flags)
        .seq(1000)
}

fn arp_probe(target: Ipv4Addr, target_mac: MacAddr, from: Ipv4Addr) -> Vec<u8> {
    PacketBuilder::ethernet(VSD_MAC, target_mac)
        .arp_request(VSD_MAC, from, target)
        .pad_to(60)
        .build()
}

fn arp_reply(ip: Ipv4Addr, to_mac: MacAddr, to: Ipv4Addr) -> Vec<u8> {
    let mut f = PacketBuilder::ethernet(VSD_MAC, to_mac)
        .arp_reply(VSD_MAC, ip, to_mac, to)
        .build();
    f.truncate(42);
    f
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[test]
fn forwarding_methods_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("vsd-pcapf-"));
    std::fs::create_dir_all(&dir).unwrap();

    // the neighbours introduce themselves (vsd learns them from requests)
    let rs_hello = PacketBuilder::ethernet(RS_MAC, MacAddr::BROADCAST)
        .arp_request(RS_MAC, RS, SRV_DIP)
        .pad_to(60)
        .build();
    let client_hello = PacketBuilder::ethernet(CLIENT_MAC, MacAddr::BROADCAST)
        .arp_request(CLIENT_MAC, CLIENT, VIP)
        .pad_to(60)
        .build();
    let nat_reply = PacketBuilder::ethernet(RS_MAC, VSD_MAC)
        .ipv4(RS, CLIENT)
        .ttl(64)
        .ident(0x2000)
        .tcp(8080, 40000, SYN_ACK)
        .seq(5000)
        .ack(1001)
        .build();
    let udp_query = PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv4(CLIENT, VIP)
        .ttl(64)
        .ident(0x3000)
        .udp(40001, 53)
        .payload(b"query")
        .build();

    // malformed: each must be dropped and counted, never answered
    let mut bad_ihl = client_tcp(80, SYN).build();
    bad_ihl[14] = 0x44;
    let mut bad_total_len = client_tcp(80, SYN).build();
    bad_total_len[16] = 0x0f; // total length 0x0f28 > frame
    let mut bad_csum = client_tcp(80, SYN).build();
    bad_csum[24] ^= 0x55;
    // a consistent IP packet whose TCP header is cut to 10 bytes
    let truncated_tcp = PacketBuilder::ethernet(CLIENT_MAC, VSD_MAC)
        .ipv4(CLIENT, VIP)
        .ip_proto(vsd::wire::IpProtocol::TCP)
        .payload(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0])
        .build();
    let options = client_tcp(80, SYN).ip_options(&[1, 1, 1, 0]).build();
    let non_first_frag = client_tcp(80, SYN).fragment(false, 64).build();

    let input = vec![
        rs_hello.clone(),
        client_hello,
        client_tcp(80, SYN).build(), // NAT
        nat_reply,
        client_tcp(81, SYN).build(), // DR
        client_tcp(82, SYN).build(), // TUN
        client_tcp(83, SYN).build(), // FULLNAT
        udp_query,
        bad_ihl,
        bad_total_len,
        bad_csum,
        truncated_tcp,
        options,
        non_first_frag,
    ];
    pcap::write(&dir.join("in.pcap"), &input);

    let prefix = unique("vsdq");
    let mut vsd = Vsd::start(&config(&dir, &prefix));
    let done = wait_for(std::time::Duration::from_secs(20), || {
        vsd.event("rx_packets") >= input.len() as u64
    });
    assert!(done, "vsd did not receive the capture:\n{}", vsd.log_text());
    let counters = vsd.ask("counters");
    let fwd_drop = |name: &str| counters["forwarding"]["drops"][name].as_u64().unwrap_or(0);
    assert_eq!(fwd_drop("bad_ihl"), 1, "{counters}");
    assert_eq!(fwd_drop("bad_total_length"), 1, "{counters}");
    assert_eq!(fwd_drop("bad_ip_checksum"), 1, "{counters}");
    assert_eq!(fwd_drop("truncated_l4"), 1, "{counters}");
    assert_eq!(fwd_drop("ip_options"), 1, "{counters}");
    assert_eq!(fwd_drop("non_first_fragment"), 1, "{counters}");
    let stats = vsd.vsadm(&["-Ln", "--stats"]);
    assert!(stats.status.success());
    let listing = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert!(vsd.stop().success());

    let out = pcap::read(&dir.join("out.pcap"));
    // FULLNAT's local port is vsd's choice: read it, check it, then build
    // the exact expected frame with it.
    let fnat_out = out
        .iter()
        .find(|f| f.len() > 34 && f[23] == 6 && f[26..30] == LIP.octets())
        .unwrap_or_else(|| panic!("no FULLNAT frame in {out:02x?}"));
    let lport = be16(fnat_out, 34);
    assert!(lport >= 1024, "local port {lport}");

    let expected: Vec<(&str, Vec<u8>)> = vec![
        ("ARP reply to the RS", arp_reply(SRV_DIP, RS_MAC, RS)),
        (
            "ARP reply to the client",
            arp_reply(VIP, CLIENT_MAC, CLIENT),
        ),
        (
            "NAT request: dst VIP:80 -> RS:8080, TTL-1",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv4(CLIENT, RS)
                .ttl(63)
                .ident(0x1000 + 80)
                .tcp(40000, 8080, SYN)
                .seq(1000)
                .build(),
        ),
        // No ARP probe of the RS here: its entry, learned unsolicited (STALE), goes to
        // DELAY when used and is probed only 5 s later unless the RS confirms it.
        (
            "NAT reply: src RS:8080 -> VIP:80, TTL-1",
            PacketBuilder::ethernet(VSD_MAC, CLIENT_MAC)
                .ipv4(VIP, CLIENT)
                .ttl(63)
                .ident(0x2000)
                .tcp(80, 40000, SYN_ACK)
                .seq(5000)
                .ack(1001)
                .build(),
        ),
        // Nor of the client (learned unsolicited as well).
        (
            "DR: only the MACs change (and TTL-1)",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv4(CLIENT, VIP)
                .ttl(63)
                .ident(0x1000 + 81)
                .tcp(40000, 81, SYN)
                .seq(1000)
                .build(),
        ),
        ("TUN: IPIP from the director to the RS", {
            let inner = PacketBuilder::new()
                .ipv4(CLIENT, VIP)
                .ttl(63)
                .ident(0x1000 + 82)
                .tcp(40000, 82, SYN)
                .seq(1000)
                .build();
            let mut f = PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv4(SRV_DIP, RS)
                .ip_proto(vsd::wire::IpProtocol::IPIP)
                .payload(&inner)
                .build();
            // outer header: TTL 64, DF copied from the inner packet (clear),
            // ident as vsd numbers TUN packets: take it from the output
            if let Some(got) = out.iter().find(|g| g.len() > 23 && g[23] == 4) {
                f[18..20].copy_from_slice(&got[18..20]);
                f[24] = 0;
                f[25] = 0;
                let c = vsd::wire::checksum::checksum(&f[14..34]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            f
        }),
        (
            "FULLNAT: src -> LIP:lport, dst -> RS:8083",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv4(LIP, RS)
                .ttl(63)
                .ident(0x1000 + 83)
                .tcp(lport, 8083, SYN)
                .seq(1000)
                .build(),
        ),
        (
            "UDP NAT: dst VIP:53 -> RS:5353",
            PacketBuilder::ethernet(VSD_MAC, RS_MAC)
                .ipv4(CLIENT, RS)
                .ttl(63)
                .ident(0x3000)
                .udp(40001, 5353)
                .payload(b"query")
                .build(),
        ),
    ];
    let _ = std::fs::remove_dir_all(&dir);
    for (who, probe) in [
        ("RS", arp_probe(RS, RS_MAC, SRV_DIP)),
        ("client", arp_probe(CLIENT, CLIENT_MAC, DIP)),
    ] {
        assert!(
            !out.contains(&probe),
            "{who} probed before its DELAY ran out"
        );
    }
    for (i, (what, want)) in expected.iter().enumerate() {
        let got = out
            .get(i)
            .unwrap_or_else(|| panic!("missing frame {i} ({what}); got {out:02x?}"));
        assert_eq!(got, want, "frame {i}: {what}");
    }
    assert_eq!(out.len(), expected.len(), "extra frames: {out:02x?}");
    // the NAT flow's packets show in the listing
    assert!(
        listing.contains("TCP  198.18.0.100:80"),
        "listing:\n{listing}"
    );
}
