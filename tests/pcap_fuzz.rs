//! Malformed traffic through the real binary: thousands of mutated frames
//! (truncated, bit-flipped, lengths and flags scrambled) replayed with
//! net_pcap into a vsd running every forwarding method. vsd must take them
//! all, keep answering its control socket, and exit cleanly: a bad packet
//! is a counted drop or a forwarded packet, never a crash or a hang.

mod common;

use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use vsd::wire::{MacAddr, PacketBuilder};

const VSD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);

/// `frame` (IPv6 at 14, no extension headers) with `ext` inserted after
/// the fixed header: next header `first`, the last extension header's
/// next header the original upper layer (its first byte is overwritten).
fn with_ext6(frame: &[u8], first: u8, ext: &[u8]) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let plen = u16::from_be_bytes([out[18], out[19]]) as usize + ext.len();
    out[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
    let upper = out[20];
    out[20] = first;
    let mut ext = ext.to_vec();
    ext[0] = upper;
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let c = || PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv4(CLIENT, VIP);
    let r = || PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv4(RS, CLIENT);
    vec![
        c().tcp(40000, 80, 0x02).build(),
        c().tcp(40001, 81, 0x02).build(),
        c().tcp(40002, 82, 0x02)
            .payload(&[7; 1400])
            .dont_frag(true)
            .build(),
        c().tcp(40003, 83, 0x02).build(),
        c().tcp(40000, 80, 0x10).payload(b"data").build(),
        c().udp(40004, 53).payload(b"q").build(),
        r().tcp(8080, 40000, 0x12).build(),
        r().icmp(3, 3, 0)
            .payload(&c().tcp(40000, 80, 0x02).build()[14..])
            .build(),
        c().icmp_echo_request(1, 1).build(),
        PacketBuilder::ethernet(PEER_MAC, MacAddr::BROADCAST)
            .arp_request(PEER_MAC, CLIENT, VIP)
            .build(),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .vlan(5)
            .ipv4(CLIENT, VIP)
            .tcp(40005, 80, 0x02)
            .build(),
        // IPv6: TCP, UDP, extension headers, a fragment, an ICMPv6 error
        c6().tcp(40006, 80, 0x02).build(),
        c6().udp(40007, 53).payload(b"q").build(),
        with_ext6(
            &c6().tcp(40008, 80, 0x02).build(),
            0,
            &[0, 0, 1, 4, 0, 0, 0, 0],
        ),
        with_ext6(
            &c6().tcp(40009, 80, 0x02).build(),
            44,
            &[0, 0, 0, 1, 0, 0, 0, 9],
        ),
        PacketBuilder::ethernet(PEER_MAC, VSD_MAC)
            .ipv6(VIP6, CLIENT6)
            .icmpv6(2, 0, 1280)
            .payload(&c6().tcp(40006, 80, 0x02).build()[14..])
            .build(),
    ]
}

fn c6() -> PacketBuilder {
    PacketBuilder::ethernet(PEER_MAC, VSD_MAC).ipv6(CLIENT6, VIP6)
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(6) {
        0 => {
            let n = rng.below(f.len() + 1);
            f.truncate(n);
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                if !f.is_empty() {
                    let at = rng.below(f.len());
                    f[at] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            // scramble the IP header's interesting bytes
            for at in [14, 16, 17, 20, 21, 22, 23, 24] {
                if at < f.len() && rng.below(3) == 0 {
                    f[at] = rng.next() as u8;
                }
            }
        }
        3 => {
            // the L4 header
            for _ in 0..3 {
                if f.len() > 34 {
                    let at = 34 + rng.below((f.len() - 34).min(20));
                    f[at] = rng.next() as u8;
                }
            }
        }
        4 => f.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        _ => {
            let n = rng.below(80);
            *f = (0..n).map(|_| rng.next() as u8).collect();
        }
    }
}

#[test]
fn mutated_frames_are_dropped_or_forwarded_never_fatal() {
    const FRAMES: usize = 5000;
    let dir = std::env::temp_dir().join(unique("vsd-fuzz-"));
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut frames = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let mut f = seeds[i % seeds.len()].clone();
        if i % 10 != 0 {
            mutate(&mut rng, &mut f);
        }
        if f.is_empty() {
            f.push(0);
        }
        frames.push(f);
    }
    pcap::write(&dir.join("in.pcap"), &frames);
    let prefix = unique("vsdz");
    let svc = |port: u16, method: &str, rport: u16, extra: &str| {
        format!(
            "\n[[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nport = {port}\nscheduler = \"rr\"\n{extra}\n[[service.real_server]]\naddress = \"{RS}\"\nport = {rport}\nmethod = \"{method}\"\n"
        )
    };
    let config = format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = false
memory_mb = 256

[lcores]
control = 0
workers = [1]

[control]
socket = "{{dir}}/vsd.sock"

[mempool]
mbufs = 8191

[lb]
conn_capacity = 4096

[[port]]
name = "cap0"
device = "net_pcap0,rx_pcap={rx},tx_pcap={tx}"
mac = "{VSD_MAC}"
addresses = ["198.18.0.1/24", "198.18.1.1/24"]

[[vip]]
address = "{VIP}"
port = "cap0"
{a}{b}{c}{d}
[[service]]
proto = "udp"
vip = "{VIP}"
port = 53

[[service.real_server]]
address = "{RS}"
port = 5353
method = "nat"
"#,
        rx = dir.join("in.pcap").display(),
        tx = dir.join("out.pcap").display(),
        a = svc(80, "nat", 8080, ""),
        b = svc(81, "dr", 81, ""),
        c = svc(82, "tun", 82, ""),
        d = svc(83, "fullnat", 8083, "local_addresses = [\"198.18.1.200\"]"),
    );
    let mut vsd = Vsd::start(&config);
    let done = wait_for(std::time::Duration::from_secs(60), || {
        vsd.exited().is_none() && vsd.event("rx_packets") >= FRAMES as u64
    });
    assert!(done, "vsd did not take every frame:\n{}", vsd.log_text());
    // still serving the control socket
    let listing = vsd.vsadm(&["-Ln", "--stats"]);
    assert!(listing.status.success(), "vsadm -Ln failed after the fuzz");
    let counters = vsd.ask("counters");
    let total = &counters["total"];
    let sum = |o: &serde_json::Value| -> u64 {
        o.as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    };
    let drops = sum(&total["drops"]);
    let fwd_drops = total["events"]["forward_drops"].as_u64().unwrap_or(0);
    let forwarded = total["events"]["forwarded"].as_u64().unwrap_or(0);
    assert!(
        drops + fwd_drops > FRAMES as u64 / 2,
        "most mutated frames must be counted drops: {counters}"
    );
    assert!(
        forwarded > 0,
        "the unmutated seeds still forward: {counters}"
    );
    let status = vsd.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "vsd exit status {status:?}");
}
