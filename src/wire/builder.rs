//! Test and fixture packet builder (allocates; not for the fast path).
//!
//! ```
//! use vsd::wire::{MacAddr, PacketBuilder};
//! use std::net::Ipv4Addr;
//! let frame = PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
//!     .ipv4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 100))
//!     .udp(5353, 53)
//!     .payload(b"hello")
//!     .build();
//! assert_eq!(frame.len(), 14 + 20 + 8 + 5);
//! ```
//!
//! Every length and checksum comes out right unless a test asks otherwise
//! (`ip_checksum`/`l4_checksum` overrides). The header bytes are written
//! here directly rather than through the views, so the builder doubles as
//! an independent check of them.

use super::arp::{ArpOperation, ArpRepr};
use super::checksum;
use super::ethernet::{EtherType, MacAddr};
use super::IpProtocol;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug)]
enum Network {
    None,
    Ipv4 { src: Ipv4Addr, dst: Ipv4Addr },
    Ipv6 { src: Ipv6Addr, dst: Ipv6Addr },
    Arp(ArpRepr),
}

#[derive(Clone, Debug)]
enum Transport {
    /// Payload directly after the IP header with this protocol number.
    Raw(IpProtocol),
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmpv4 {
        msg_type: u8,
        code: u8,
        rest: u32,
    },
    Icmpv6 {
        msg_type: u8,
        code: u8,
        rest: u32,
    },
}

/// Builds whole packets for tests and pcap fixtures. Start with
/// [`ethernet`](Self::ethernet) for a frame or [`new`](Self::new) for a
/// bare IP packet, add a network layer, a transport layer, a payload, and
/// call [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    macs: Option<(MacAddr, MacAddr)>,
    vlans: Vec<(EtherType, u16)>,
    ethertype: Option<EtherType>,
    network: Network,
    transport: Transport,
    payload: Vec<u8>,
    ttl: u8,
    tos: u8,
    ident: u16,
    dont_frag: bool,
    more_frags: bool,
    frag_offset: u16,
    ip_options: Vec<u8>,
    flow_label: u32,
    seq: u32,
    ack: u32,
    window: u16,
    urgent: u16,
    tcp_options: Vec<u8>,
    ip_checksum: Option<u16>,
    l4_checksum: Option<u16>,
    pad_to: usize,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuilder {
    /// A packet without an Ethernet header (starts at the IP header).
    pub fn new() -> Self {
        PacketBuilder {
            macs: None,
            vlans: Vec::new(),
            ethertype: None,
            network: Network::None,
            transport: Transport::Raw(IpProtocol(253)),
            payload: Vec::new(),
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            ip_options: Vec::new(),
            flow_label: 0,
            seq: 0,
            ack: 0,
            window: 65535,
            urgent: 0,
            tcp_options: Vec::new(),
            ip_checksum: None,
            l4_checksum: None,
            pad_to: 0,
        }
    }

    /// An Ethernet frame from `src` to `dst`.
    pub fn ethernet(src: MacAddr, dst: MacAddr) -> Self {
        PacketBuilder {
            macs: Some((src, dst)),
            ..Self::new()
        }
    }

    /// Adds an 802.1Q tag (call twice, first with [`qinq`](Self::qinq),
    /// for QinQ).
    pub fn vlan(mut self, vlan_id: u16) -> Self {
        self.vlans.push((EtherType::VLAN, vlan_id));
        self
    }

    /// Adds an 802.1ad (0x88a8) service tag.
    pub fn qinq(mut self, vlan_id: u16) -> Self {
        self.vlans.push((EtherType::QINQ, vlan_id));
        self
    }

    /// Overrides the EtherType (default: from the network layer).
    pub fn ethertype(mut self, ethertype: EtherType) -> Self {
        self.ethertype = Some(ethertype);
        self
    }

    /// IPv4 network layer.
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.network = Network::Ipv4 { src, dst };
        self
    }

    /// IPv6 network layer.
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.network = Network::Ipv6 { src, dst };
        self
    }

    /// An ARP packet (use with [`ethernet`](Self::ethernet)).
    pub fn arp(mut self, repr: ArpRepr) -> Self {
        self.network = Network::Arp(repr);
        self
    }

    /// ARP "who-has `target_ip` tell `sender_ip`" from `sender_mac`.
    pub fn arp_request(
        self,
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.arp(ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: sender_mac,
            source_protocol_addr: sender_ip,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: target_ip,
        })
    }

    /// ARP "`sender_ip` is-at `sender_mac`" to `target_mac`/`target_ip`.
    pub fn arp_reply(
        self,
        sender_mac: MacAddr,
        sender_ip: Ipv4Addr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.arp(ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: sender_mac,
            source_protocol_addr: sender_ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: target_ip,
        })
    }

    /// IPv4 TTL or IPv6 hop limit (default 64).
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// IPv4 DSCP/ECN byte or IPv6 traffic class (default 0).
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// IPv4 identification (default 0).
    pub fn ident(mut self, ident: u16) -> Self {
        self.ident = ident;
        self
    }

    /// IPv4 Don't Fragment flag (default set, as Linux sends TCP).
    pub fn dont_frag(mut self, dont_frag: bool) -> Self {
        self.dont_frag = dont_frag;
        self
    }

    /// Makes an IPv4 fragment: MF flag and offset in bytes (multiple of 8).
    pub fn fragment(mut self, more_frags: bool, offset: u16) -> Self {
        self.more_frags = more_frags;
        self.frag_offset = offset;
        self
    }

    /// IPv4 options (padded with zeros to a multiple of 4).
    pub fn ip_options(mut self, options: &[u8]) -> Self {
        self.ip_options = options.to_vec();
        self
    }

    /// IPv6 flow label (20 bits).
    pub fn flow_label(mut self, label: u32) -> Self {
        self.flow_label = label & 0xFFFFF;
        self
    }

    /// TCP with the given flag bits (e.g. `tcp::SYN | tcp::ACK`).
    pub fn tcp(mut self, src_port: u16, dst_port: u16, flags: u8) -> Self {
        self.transport = Transport::Tcp {
            src_port,
            dst_port,
            flags,
        };
        self
    }

    /// TCP sequence number.
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    /// TCP acknowledgment number.
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }

    /// TCP window (default 65535).
    pub fn window(mut self, window: u16) -> Self {
        self.window = window;
        self
    }

    /// TCP urgent pointer.
    pub fn urgent(mut self, urgent: u16) -> Self {
        self.urgent = urgent;
        self
    }

    /// TCP options (padded with zeros to a multiple of 4).
    pub fn tcp_options(mut self, options: &[u8]) -> Self {
        self.tcp_options = options.to_vec();
        self
    }

    /// UDP.
    pub fn udp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.transport = Transport::Udp { src_port, dst_port };
        self
    }

    /// Any ICMPv4 message; `rest` is the 4 bytes after the checksum.
    pub fn icmp(mut self, msg_type: u8, code: u8, rest: u32) -> Self {
        self.transport = Transport::Icmpv4 {
            msg_type,
            code,
            rest,
        };
        self
    }

    /// ICMPv4 echo request.
    pub fn icmp_echo_request(self, ident: u16, seq: u16) -> Self {
        self.icmp(8, 0, ((ident as u32) << 16) | seq as u32)
    }

    /// ICMPv4 echo reply.
    pub fn icmp_echo_reply(self, ident: u16, seq: u16) -> Self {
        self.icmp(0, 0, ((ident as u32) << 16) | seq as u32)
    }

    /// Any ICMPv6 message; `rest` is the 4 bytes after the checksum.
    pub fn icmpv6(mut self, msg_type: u8, code: u8, rest: u32) -> Self {
        self.transport = Transport::Icmpv6 {
            msg_type,
            code,
            rest,
        };
        self
    }

    /// ICMPv6 echo request (type 128).
    pub fn icmpv6_echo_request(self, ident: u16, seq: u16) -> Self {
        self.icmpv6(128, 0, ((ident as u32) << 16) | seq as u32)
    }

    /// ICMPv6 echo reply (type 129).
    pub fn icmpv6_echo_reply(self, ident: u16, seq: u16) -> Self {
        self.icmpv6(129, 0, ((ident as u32) << 16) | seq as u32)
    }

    /// ICMPv6 Neighbor Solicitation (type 135) for `target`, with a source
    /// link-layer address option when `sll` is given; hop limit 255 (set
    /// another with [`ttl`](Self::ttl) afterwards).
    pub fn neighbor_solicit(mut self, target: Ipv6Addr, sll: Option<MacAddr>) -> Self {
        let mut body = target.octets().to_vec();
        if let Some(m) = sll {
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&m.0);
        }
        self.ttl = 255;
        self.icmpv6(135, 0, 0).payload(&body)
    }

    /// ICMPv6 Neighbor Advertisement (type 136) for `target` with `flags`
    /// (R 0x80, S 0x40, O 0x20) and a target link-layer address option
    /// when `tll` is given; hop limit 255.
    pub fn neighbor_advert(mut self, flags: u8, target: Ipv6Addr, tll: Option<MacAddr>) -> Self {
        let mut body = target.octets().to_vec();
        if let Some(m) = tll {
            body.extend_from_slice(&[2, 1]);
            body.extend_from_slice(&m.0);
        }
        self.ttl = 255;
        self.icmpv6(136, 0, u32::from(flags) << 24).payload(&body)
    }

    /// No transport header: the payload follows IP with this protocol
    /// number (e.g. an already built inner packet with `IpProtocol::IPIP`).
    pub fn ip_proto(mut self, protocol: IpProtocol) -> Self {
        self.transport = Transport::Raw(protocol);
        self
    }

    /// The payload after the last header.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Forces the IPv4 header checksum field (to build bad packets).
    pub fn ip_checksum(mut self, value: u16) -> Self {
        self.ip_checksum = Some(value);
        self
    }

    /// Forces the TCP/UDP/ICMP checksum field (to build bad packets, or a
    /// UDP datagram without checksum with 0).
    pub fn l4_checksum(mut self, value: u16) -> Self {
        self.l4_checksum = Some(value);
        self
    }

    /// Pads the whole frame with zeros to at least `len` bytes (e.g. 60 for
    /// the Ethernet minimum); the padding is outside every length field.
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = len;
        self
    }

    fn protocol(&self) -> IpProtocol {
        match self.transport {
            Transport::Raw(p) => p,
            Transport::Tcp { .. } => IpProtocol::TCP,
            Transport::Udp { .. } => IpProtocol::UDP,
            Transport::Icmpv4 { .. } => IpProtocol::ICMP,
            Transport::Icmpv6 { .. } => IpProtocol::ICMPV6,
        }
    }

    /// L4 header + payload with the checksum field at `csum_at` zeroed.
    fn transport_bytes(&self) -> (Vec<u8>, Option<usize>) {
        let mut out = Vec::new();
        let csum_at = match self.transport {
            Transport::Raw(_) => None,
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut options = self.tcp_options.clone();
                options.resize(options.len().next_multiple_of(4), 0);
                let header_len = 20 + options.len();
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(&self.seq.to_be_bytes());
                out.extend_from_slice(&self.ack.to_be_bytes());
                out.push(((header_len / 4) as u8) << 4);
                out.push(flags);
                out.extend_from_slice(&self.window.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&self.urgent.to_be_bytes());
                out.extend_from_slice(&options);
                Some(16)
            }
            Transport::Udp { src_port, dst_port } => {
                out.extend_from_slice(&src_port.to_be_bytes());
                out.extend_from_slice(&dst_port.to_be_bytes());
                out.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                Some(6)
            }
            Transport::Icmpv4 {
                msg_type,
                code,
                rest,
            }
            | Transport::Icmpv6 {
                msg_type,
                code,
                rest,
            } => {
                out.push(msg_type);
                out.push(code);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&rest.to_be_bytes());
                Some(2)
            }
        };
        out.extend_from_slice(&self.payload);
        (out, csum_at)
    }

    fn fill_l4_checksum(&self, l4: &mut [u8], csum_at: Option<usize>, pseudo: u16) {
        let Some(at) = csum_at else { return };
        let value = match self.l4_checksum {
            Some(forced) => forced,
            None => {
                let uses_pseudo = !matches!(self.transport, Transport::Icmpv4 { .. });
                let sum = if uses_pseudo {
                    checksum::combine(&[pseudo, checksum::data(l4)])
                } else {
                    checksum::data(l4)
                };
                let c = checksum::finish(sum);
                if c == 0 && matches!(self.transport, Transport::Udp { .. }) {
                    0xFFFF
                } else {
                    c
                }
            }
        };
        l4[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    fn network_bytes(&self) -> (Vec<u8>, EtherType) {
        match &self.network {
            Network::None => (self.payload.clone(), EtherType(0x88b5)),
            Network::Arp(repr) => {
                let mut out = vec![0u8; repr.buffer_len()];
                // The buffer is exactly the right size, so emit cannot fail.
                let _ = repr.emit(&mut out);
                out.extend_from_slice(&self.payload);
                (out, EtherType::ARP)
            }
            Network::Ipv4 { src, dst } => {
                let (mut l4, csum_at) = self.transport_bytes();
                let pseudo =
                    checksum::pseudo_header_v4(*src, *dst, self.protocol().0, l4.len() as u16);
                self.fill_l4_checksum(&mut l4, csum_at, pseudo);
                let mut options = self.ip_options.clone();
                options.resize(options.len().next_multiple_of(4), 0);
                let header_len = 20 + options.len();
                let total = (header_len + l4.len()) as u16;
                let mut flags = (self.frag_offset >> 3) & 0x1FFF;
                if self.dont_frag {
                    flags |= 0x4000;
                }
                if self.more_frags {
                    flags |= 0x2000;
                }
                let mut out = Vec::with_capacity(total as usize);
                out.push(0x40 | (header_len / 4) as u8);
                out.push(self.tos);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&self.ident.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
                out.push(self.ttl);
                out.push(self.protocol().0);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                out.extend_from_slice(&options);
                let c = self
                    .ip_checksum
                    .unwrap_or_else(|| checksum::checksum(&out[..header_len]));
                out[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&l4);
                (out, EtherType::IPV4)
            }
            Network::Ipv6 { src, dst } => {
                let (mut l4, csum_at) = self.transport_bytes();
                let pseudo =
                    checksum::pseudo_header_v6(src, dst, self.protocol().0, l4.len() as u32);
                self.fill_l4_checksum(&mut l4, csum_at, pseudo);
                let first = (6u32 << 28) | ((self.tos as u32) << 20) | self.flow_label;
                let mut out = Vec::with_capacity(40 + l4.len());
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                out.push(self.protocol().0);
                out.push(self.ttl);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                out.extend_from_slice(&l4);
                (out, EtherType::IPV6)
            }
        }
    }

    /// Builds the packet bytes.
    pub fn build(&self) -> Vec<u8> {
        let (l3, natural_type) = self.network_bytes();
        let mut out = Vec::with_capacity(14 + 4 * self.vlans.len() + l3.len());
        if let Some((src, dst)) = self.macs {
            out.extend_from_slice(&dst.0);
            out.extend_from_slice(&src.0);
            for (tpid, vid) in &self.vlans {
                out.extend_from_slice(&tpid.0.to_be_bytes());
                out.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
            }
            let ethertype = self.ethertype.unwrap_or(natural_type);
            out.extend_from_slice(&ethertype.0.to_be_bytes());
        }
        out.extend_from_slice(&l3);
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::arp::ArpPacket;
    use crate::wire::ethernet::{l3_offset, EthernetFrame};
    use crate::wire::icmp::Icmpv4Packet;
    use crate::wire::icmpv6::Icmpv6Packet;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::ipv6::Ipv6Packet;
    use crate::wire::tcp::{self, TcpPacket};
    use crate::wire::testutil::hex;
    use crate::wire::udp::UdpPacket;

    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    #[test]
    fn arp_request_exact() {
        let frame = PacketBuilder::ethernet(MAC_A, MacAddr::BROADCAST)
            .arp_request(MAC_A, IP_A, IP_B)
            .build();
        let expected = hex("ffffffffffff 020000000001 0806 \
             0001 0800 06 04 0001 020000000001 c6120001 000000000000 c6120064");
        assert_eq!(frame, expected);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.target_protocol_addr(), IP_B);
    }

    #[test]
    fn arp_reply_padded() {
        let frame = PacketBuilder::ethernet(MAC_B, MAC_A)
            .arp_reply(MAC_B, IP_B, MAC_A, IP_A)
            .pad_to(60)
            .build();
        assert_eq!(frame.len(), 60);
        assert_eq!(
            &frame[..42],
            &hex("020000000001 020000000002 0806 \
                 0001 0800 06 04 0002 020000000002 c6120064 020000000001 c6120001")[..]
        );
        assert!(frame[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn icmp_echo_exact() {
        let pkt = PacketBuilder::new()
            .ipv4(IP_A, IP_B)
            .ttl(63)
            .ident(1)
            .icmp_echo_request(0x1234, 1)
            .payload(b"aaaa")
            .build();
        let mut expected =
            hex("4500 0020 0001 4000 3f01 0000 c6120001 c6120064 0800 2308 1234 0001 61616161");
        let c = checksum::checksum(&expected[..20]);
        expected[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(pkt, expected);
        let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(Icmpv4Packet::new_checked(ip.payload())
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn udp_frame_checksums_verify() {
        let frame = PacketBuilder::ethernet(MAC_A, MAC_B)
            .vlan(100)
            .ipv4(IP_A, IP_B)
            .udp(5353, 53)
            .payload(b"abcd")
            .build();
        let (off, et) = l3_offset(&frame).unwrap();
        assert_eq!((off, et), (18, EtherType::IPV4));
        let ip = Ipv4Packet::new_checked(&frame[off..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), IpProtocol::UDP);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.len(), 12);
        assert_eq!(udp.payload(), b"abcd");
        assert!(udp.verify_checksum_v4(IP_A, IP_B));
        assert_ne!(udp.checksum(), 0);
    }

    #[test]
    fn forced_checksums_and_fragments() {
        let pkt = PacketBuilder::new()
            .ipv4(IP_A, IP_B)
            .udp(1, 2)
            .l4_checksum(0)
            .ip_checksum(0xdead)
            .dont_frag(false)
            .fragment(true, 0)
            .build();
        let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(ip.checksum(), 0xdead);
        assert!(ip.is_first_fragment());
        assert_eq!(UdpPacket::new_checked(ip.payload()).unwrap().checksum(), 0);
    }

    #[test]
    fn tcp_syn_exact() {
        let frame = PacketBuilder::ethernet(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B)
            .ident(0x4242)
            .tcp(54321, 80, tcp::SYN)
            .seq(1)
            .window(0xfaf0)
            .tcp_options(&[2, 4, 0x05, 0xb4, 1, 1, 4, 2])
            .build();
        let mut expected = hex("020000000002 020000000001 0800 \
             4500 0030 4242 4000 4006 0000 c6120001 c6120064 \
             d431 0050 00000001 00000000 7002 faf0 0000 0000 020405b4 0101 0402");
        let ip_csum = checksum::checksum(&expected[14..34]);
        expected[24..26].copy_from_slice(&ip_csum.to_be_bytes());
        TcpPacket::new_unchecked(&mut expected[34..]).fill_checksum_v4(IP_A, IP_B);
        assert_eq!(frame, expected);
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let seg = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(seg.verify_checksum_v4(IP_A, IP_B));
        assert_eq!(seg.mss(), Some(1460));
        assert_eq!(seg.flags().to_string(), "S");
    }

    #[test]
    fn tcp_payload_and_ip_options() {
        let pkt = PacketBuilder::new()
            .ipv4(IP_A, IP_B)
            .ip_options(&[0x94, 0x04])
            .tcp(1000, 80, tcp::PSH | tcp::ACK)
            .seq(100)
            .ack(200)
            .payload(b"GET / HTTP/1.0\r\n\r\n")
            .build();
        let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[0x94, 0x04, 0, 0]);
        assert!(ip.verify_checksum());
        let seg = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(seg.seq_number(), 100);
        assert_eq!(seg.ack_number(), 200);
        assert_eq!(seg.payload(), b"GET / HTTP/1.0\r\n\r\n");
        assert!(seg.verify_checksum_v4(IP_A, IP_B));
    }

    #[test]
    fn ipv6_tcp_udp_icmpv6() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = PacketBuilder::ethernet(MAC_A, MAC_B)
            .qinq(10)
            .vlan(20)
            .ipv6(a, b)
            .ttl(63)
            .tcp(40000, 443, tcp::SYN)
            .build();
        assert_eq!(l3_offset(&frame), Ok((22, EtherType::IPV6)));
        let ip = Ipv6Packet::new_checked(&frame[22..]).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(ip.next_header(), IpProtocol::TCP);
        assert_eq!(ip.payload_len(), 20);
        let seg = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(seg.verify_checksum_v6(&a, &b));

        let pkt = PacketBuilder::new()
            .ipv6(a, b)
            .udp(53, 53)
            .payload(b"xyz")
            .build();
        let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.payload(), b"xyz");
        assert!(udp.verify_checksum_v6(&a, &b));

        let pkt = PacketBuilder::new()
            .ipv6(a, b)
            .icmpv6_echo_request(1, 2)
            .payload(b"ping")
            .build();
        let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq()),
            (128, 1, 2)
        );
        assert!(icmp.verify_checksum(&a, &b));
        let reply = PacketBuilder::new()
            .ipv6(b, a)
            .icmpv6_echo_reply(1, 2)
            .build();
        assert_eq!(reply[40], 129);
    }

    #[test]
    fn icmp_echo_reply_and_raw_proto() {
        let pkt = PacketBuilder::new()
            .ipv4(IP_B, IP_A)
            .icmp_echo_reply(7, 9)
            .build();
        let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq()),
            (0, 7, 9)
        );
        assert!(icmp.verify_checksum());
        let inner = PacketBuilder::new().ipv4(IP_A, IP_B).udp(1, 2).build();
        let outer = PacketBuilder::new()
            .ipv4(IP_A, IP_B)
            .ip_proto(IpProtocol::IPIP)
            .payload(&inner)
            .build();
        assert_eq!(outer[9], 4);
        assert_eq!(&outer[20..], &inner[..]);
        let raw = PacketBuilder::ethernet(MAC_A, MAC_B)
            .ethertype(EtherType(0x88cc))
            .payload(b"lldp")
            .build();
        assert_eq!(&raw[12..], &[0x88, 0xcc, b'l', b'l', b'd', b'p']);
    }
}
