//! Packet templates, latency stamps, the fast receive-side parse and the
//! real-server reflection. Pure byte-buffer code, tested without DPDK.
//!
//! A template is a whole frame built once with [`PacketBuilder`] for
//! client 0.0.0.0 port 0. Each packet is the template copied into an mbuf
//! with the client address and port written in and both checksums updated
//! incrementally from the template's (RFC 1624 with an old value of 0), so
//! building a packet costs a copy and a few stores.

use std::net::Ipv4Addr;
use vsd::wire::checksum;
use vsd::wire::{tcp, ArpOperation, ArpPacket, MacAddr, PacketBuilder};

/// Ethernet header length (no VLAN: the generator sends untagged frames).
pub const ETH_LEN: usize = 14;
/// Offset of the IPv4 header in our frames.
pub const IP_OFF: usize = ETH_LEN;
/// Stamp bytes at the start of the L4 payload.
pub const STAMP_LEN: usize = 6;
/// Ethernet frame check sequence, counted in `--pkt-size` (as Pktgen and
/// RFC 2544 count it) but not carried in the mbuf.
pub const FCS_LEN: usize = 4;

/// Transport protocol of the generated traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// Bytes of Ethernet + IPv4 + L4 header.
    pub fn headers_len(self) -> usize {
        match self {
            Proto::Tcp => ETH_LEN + 20 + 20,
            Proto::Udp => ETH_LEN + 20 + 8,
        }
    }

    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// Offset of the checksum field inside the L4 header.
    fn csum_field(self) -> usize {
        match self {
            Proto::Tcp => 16,
            Proto::Udp => 6,
        }
    }
}

/// A latency stamp: the TSC (shifted right by 4, low 32 bits, bit 0 forced
/// to 1 so a stamp is never all zeros) and a sample sequence number.
///
/// Six bytes is what a 64-byte TCP frame has room for (60 - 54). The
/// shifted TSC wraps after 2^36 cycles (about 25 s at 2.7 GHz); round trips
/// are computed modulo 2^32, so only round trips that long would alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub tsc32: u32,
    pub seq: u16,
}

impl Stamp {
    /// Stamp for the TSC value `tsc`.
    #[inline]
    pub fn at(tsc: u64, seq: u16) -> Stamp {
        Stamp {
            tsc32: ((tsc >> 4) as u32) | 1,
            seq,
        }
    }

    /// The stamp in `bytes`, or None for unstamped (all-zero) payload.
    #[inline]
    pub fn read(bytes: &[u8]) -> Option<Stamp> {
        let b = bytes.get(..STAMP_LEN)?;
        let tsc32 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if tsc32 == 0 {
            return None;
        }
        Some(Stamp {
            tsc32,
            seq: u16::from_be_bytes([b[4], b[5]]),
        })
    }

    /// Cycles from this stamp to `now` (modulo the stamp's range).
    #[inline]
    pub fn cycles_until(&self, now: u64) -> u64 {
        let now32 = ((now >> 4) as u32) | 1;
        (now32.wrapping_sub(self.tsc32) as u64) << 4
    }
}

/// A pre-built frame for one kind of packet (UDP, TCP SYN or TCP ACK).
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    proto: Proto,
    /// IPv4 header checksum with source 0.0.0.0.
    ip_csum: u16,
    /// L4 checksum with source 0.0.0.0 port 0 and no stamp.
    l4_csum: u16,
}

/// What a template is built from.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSpec {
    pub proto: Proto,
    /// TCP flags (ignored for UDP).
    pub tcp_flags: u8,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    /// Frame length without FCS (60..=1514).
    pub frame_len: usize,
}

impl Template {
    /// Builds the template frame. `frame_len` is raised to what the headers
    /// and a stamp need.
    pub fn new(spec: &TemplateSpec) -> Template {
        let min = spec.proto.headers_len() + STAMP_LEN;
        let payload = vec![0u8; spec.frame_len.max(min) - spec.proto.headers_len()];
        let b = PacketBuilder::ethernet(spec.src_mac, spec.dst_mac)
            .ipv4(Ipv4Addr::UNSPECIFIED, spec.dst_ip)
            .ttl(64);
        let b = match spec.proto {
            Proto::Tcp => {
                let (seq, ack) = if spec.tcp_flags & tcp::ACK != 0 {
                    (1, 1)
                } else {
                    (0, 0)
                };
                b.tcp(0, spec.dst_port, spec.tcp_flags).seq(seq).ack(ack)
            }
            Proto::Udp => b.udp(0, spec.dst_port),
        };
        let bytes = b.payload(&payload).build();
        let ip_csum = u16::from_be_bytes([bytes[IP_OFF + 10], bytes[IP_OFF + 11]]);
        let at = IP_OFF + 20 + spec.proto.csum_field();
        let l4_csum = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        Template {
            bytes,
            proto: spec.proto,
            ip_csum,
            l4_csum,
        }
    }

    /// The frame length.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The template bytes (client 0.0.0.0:0, no stamp).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the packet for client `src_ip:src_port` into `out` (exactly
    /// the template's length), with `stamp` in the payload if given.
    #[cfg(test)]
    pub fn write(&self, out: &mut [u8], src_ip: u32, src_port: u16, stamp: Option<Stamp>) {
        if out.len() != self.bytes.len() {
            return;
        }
        out.copy_from_slice(&self.bytes);
        self.patch(out, src_ip, src_port, stamp);
    }

    /// Like [`write`](Self::write) for an `out` that already holds the
    /// template bytes (the mbuf was filled with [`bytes`](Self::bytes)).
    #[inline]
    pub fn patch(&self, out: &mut [u8], src_ip: u32, src_port: u16, stamp: Option<Stamp>) {
        if out.len() != self.bytes.len() {
            return;
        }
        let ip_csum = checksum::update_u32(self.ip_csum, 0, src_ip);
        let mut l4 = checksum::update_u32(self.l4_csum, 0, src_ip);
        l4 = checksum::update_u16(l4, 0, src_port);
        out[IP_OFF + 12..IP_OFF + 16].copy_from_slice(&src_ip.to_be_bytes());
        out[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&ip_csum.to_be_bytes());
        let l4_off = IP_OFF + 20;
        out[l4_off..l4_off + 2].copy_from_slice(&src_port.to_be_bytes());
        if let Some(s) = stamp {
            let at = self.proto.headers_len();
            l4 = checksum::update_u32(l4, 0, s.tsc32);
            l4 = checksum::update_u16(l4, 0, s.seq);
            out[at..at + 4].copy_from_slice(&s.tsc32.to_be_bytes());
            out[at + 4..at + 6].copy_from_slice(&s.seq.to_be_bytes());
        }
        if self.proto == Proto::Udp && l4 == 0 {
            // 0 means "no checksum" in UDP; the same sum is sent as 0xFFFF.
            l4 = 0xFFFF;
        }
        let at = l4_off + self.proto.csum_field();
        out[at..at + 2].copy_from_slice(&l4.to_be_bytes());
    }
}

/// Marks the payload of the handshake mode's connection-completing data
/// segments (the client's first segment and the server's answer to it):
/// written after the 4 zero bytes where a stamp's TSC would be, so a marked
/// payload never reads as a stamp and the reply to it carries the mark back.
pub const HANDSHAKE_MARK: u16 = 0x4c47; // "LG"

impl Template {
    /// Writes [`HANDSHAKE_MARK`] into the template's payload (at the
    /// stamp's sequence position, TSC left zero) and updates its checksum.
    /// Packets built from it must not be stamped.
    pub fn mark(&mut self) {
        let at = self.proto.headers_len() + 4;
        self.bytes[at..at + 2].copy_from_slice(&HANDSHAKE_MARK.to_be_bytes());
        self.l4_csum = checksum::update_u16(self.l4_csum, 0, HANDSHAKE_MARK);
        let at = IP_OFF + 20 + self.proto.csum_field();
        self.bytes[at..at + 2].copy_from_slice(&self.l4_csum.to_be_bytes());
    }

    /// Sets the TCP sequence and acknowledgement numbers of a packet built
    /// from this (ACK-flagged, so built with seq = ack = 1) TCP template.
    #[inline]
    pub fn patch_seq_ack(&self, out: &mut [u8], seq: u32, ack: u32) {
        if self.proto != Proto::Tcp || out.len() != self.bytes.len() {
            return;
        }
        let l4 = IP_OFF + 20;
        set_tcp_u32(out, l4, 4, seq);
        set_tcp_u32(out, l4, 8, ack);
    }
}

/// Writes a 32-bit TCP header field at `l4 + at` and updates the checksum.
#[inline]
fn set_tcp_u32(frame: &mut [u8], l4: usize, at: usize, new: u32) {
    let (Some(old), Some(c)) = (be32(frame, l4 + at), be16(frame, l4 + 16)) else {
        return;
    };
    let c = checksum::update_u32(c, old, new);
    frame[l4 + at..l4 + at + 4].copy_from_slice(&new.to_be_bytes());
    frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

/// What the fast parse found in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// An ARP packet (the caller may answer it).
    Arp,
    /// An IPv4 TCP or UDP packet (possibly inside IPIP).
    Data(Headers),
    /// Anything else (IPv6, ICMP, fragments, truncated, ...).
    Other,
}

/// Offsets and fields of a data packet. For IPIP, `ip` is the inner header
/// and `outer_ip` the outer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub outer_ip: Option<usize>,
    pub ip: usize,
    pub l4: usize,
    pub payload: usize,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (0 for UDP).
    pub flags: u8,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The IPv4 header at `ip`: (header length, protocol, src, dst), unless it
/// is not a first-and-only fragment of a well-formed header.
#[inline]
fn ipv4_at(frame: &[u8], ip: usize) -> Option<(usize, u8, u32, u32)> {
    let vihl = *frame.get(ip)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = (vihl & 0x0f) as usize * 4;
    let frag = be16(frame, ip + 6)?;
    if ihl < 20 || frag & 0x3fff != 0 {
        return None;
    }
    let proto = *frame.get(ip + 9)?;
    Some((ihl, proto, be32(frame, ip + 12)?, be32(frame, ip + 16)?))
}

/// Classifies a received frame, reading only the fields the generator
/// needs. Never panics; anything malformed is [`Rx::Other`].
#[inline]
pub fn parse(frame: &[u8]) -> Rx {
    match be16(frame, 12) {
        Some(0x0806) => return Rx::Arp,
        Some(0x0800) => {}
        _ => return Rx::Other,
    }
    parse_ipv4(frame).map_or(Rx::Other, Rx::Data)
}

fn parse_ipv4(frame: &[u8]) -> Option<Headers> {
    let (mut ihl, mut proto, mut src, mut dst) = ipv4_at(frame, IP_OFF)?;
    let mut ip = IP_OFF;
    let mut outer_ip = None;
    if proto == 4 {
        outer_ip = Some(ip);
        ip += ihl;
        (ihl, proto, src, dst) = ipv4_at(frame, ip)?;
    }
    let l4 = ip + ihl;
    let (payload, flags) = match proto {
        6 => {
            let off = (*frame.get(l4 + 12)? >> 4) as usize * 4;
            if off < 20 {
                return None;
            }
            (l4 + off, *frame.get(l4 + 13)?)
        }
        17 => (l4 + 8, 0),
        _ => return None,
    };
    if payload > frame.len() {
        return None;
    }
    Some(Headers {
        outer_ip,
        ip,
        l4,
        payload,
        proto,
        src,
        dst,
        sport: be16(frame, l4)?,
        dport: be16(frame, l4 + 2)?,
        flags,
    })
}

/// Turns a request that reached a real server into that server's reply,
/// in place: addresses and ports swapped, a SYN answered with SYN+ACK,
/// `src_mac`/`dst_mac` written, checksums updated. Swapping addresses and
/// ports leaves both checksums' sums unchanged, so only the TCP flags word
/// needs an incremental update. False (frame unchanged) if `h` does not
/// describe a plain (not IPIP) packet in `frame`.
pub fn reflect(frame: &mut [u8], h: &Headers, src_mac: MacAddr, dst_mac: MacAddr) -> bool {
    if h.outer_ip.is_some() || frame.len() < h.payload || h.ip != IP_OFF {
        return false;
    }
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&src_mac.0);
    frame[h.ip + 12..h.ip + 16].copy_from_slice(&h.dst.to_be_bytes());
    frame[h.ip + 16..h.ip + 20].copy_from_slice(&h.src.to_be_bytes());
    frame[h.l4..h.l4 + 2].copy_from_slice(&h.dport.to_be_bytes());
    frame[h.l4 + 2..h.l4 + 4].copy_from_slice(&h.sport.to_be_bytes());
    if h.proto == 6 && h.flags & tcp::SYN != 0 && h.flags & tcp::ACK == 0 {
        let old = u16::from_be_bytes([frame[h.l4 + 12], frame[h.l4 + 13]]);
        let new = old | tcp::ACK as u16;
        frame[h.l4 + 13] = new as u8;
        let at = h.l4 + 16;
        let c = u16::from_be_bytes([frame[at], frame[at + 1]]);
        let c = checksum::update_u16(c, old, new);
        frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// TCP payload bytes of a parsed data packet (from the IP total length,
/// not the frame: a short segment is padded to 60 bytes on the wire).
#[inline]
pub fn payload_len(frame: &[u8], h: &Headers) -> usize {
    let total = be16(frame, h.ip + 2).unwrap_or(0) as usize;
    (h.ip + total).saturating_sub(h.payload)
}

/// Whether the payload carries [`HANDSHAKE_MARK`] (and no stamp).
#[inline]
pub fn is_marked(frame: &[u8], h: &Headers) -> bool {
    payload_len(frame, h) >= STAMP_LEN
        && be32(frame, h.payload) == Some(0)
        && be16(frame, h.payload + 4) == Some(HANDSHAKE_MARK)
}

/// A TCP request that reached a real server turned into that server's
/// answer as a TCP stack would send it (the handshake mode, where a SYN
/// proxy checks sequence numbers): [`reflect`]'s swap, and a SYN answered
/// with SYN+ACK `seq = server_isn, ack = seq + 1`, anything else with
/// `seq = its ack, ack = its seq + payload` (the server "echoes" the data).
/// False (frame unchanged) if `h` is not a plain TCP packet in `frame`.
pub fn reflect_tcp(
    frame: &mut [u8],
    h: &Headers,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    server_isn: u32,
) -> bool {
    if h.proto != 6 {
        return false;
    }
    let (Some(seq), Some(ack)) = (be32(frame, h.l4 + 4), be32(frame, h.l4 + 8)) else {
        return false;
    };
    let len = payload_len(frame, h) as u32;
    if !reflect(frame, h, src_mac, dst_mac) {
        return false;
    }
    let (new_seq, new_ack) = if h.flags & (tcp::SYN | tcp::ACK) == tcp::SYN {
        (server_isn, seq.wrapping_add(1))
    } else {
        (ack, seq.wrapping_add(len))
    };
    set_tcp_u32(frame, h.l4, 4, new_seq);
    set_tcp_u32(frame, h.l4, 8, new_ack);
    true
}

/// Answers an ARP request in place: the reply claims the asked address
/// with the MAC `mac_for` gives for it. False (frame unchanged) for
/// anything that is not a non-gratuitous Ethernet/IPv4 ARP request.
pub fn answer_arp(frame: &mut [u8], mac_for: impl Fn(Ipv4Addr) -> MacAddr) -> bool {
    let Some(body) = frame.get_mut(ETH_LEN..) else {
        return false;
    };
    let Ok(mut arp) = ArpPacket::new_checked(body) else {
        return false;
    };
    if arp.operation() != ArpOperation::Request || arp.is_gratuitous() {
        return false;
    }
    let requester = arp.source_hardware_addr();
    let mac = mac_for(arp.target_protocol_addr());
    arp.make_reply_in_place(mac);
    frame[0..6].copy_from_slice(&requester.0);
    frame[6..12].copy_from_slice(&mac.0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsd::wire::{Ipv4Packet, TcpPacket, UdpPacket};

    const GEN: MacAddr = MacAddr([2, 0, 0, 0, 0x20, 1]);
    const DUT: MacAddr = MacAddr([2, 0, 0, 0, 0x10, 1]);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn spec(proto: Proto, flags: u8, frame_len: usize) -> TemplateSpec {
        TemplateSpec {
            proto,
            tcp_flags: flags,
            src_mac: GEN,
            dst_mac: DUT,
            dst_ip: ip("198.18.0.100"),
            dst_port: 80,
            frame_len,
        }
    }

    /// The packet a template writes equals the one PacketBuilder builds
    /// directly for the same tuple and stamp, byte for byte.
    fn same_as_builder(proto: Proto, flags: u8, frame_len: usize) {
        let t = Template::new(&spec(proto, flags, frame_len));
        assert_eq!(t.len(), frame_len.max(proto.headers_len() + STAMP_LEN));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = vec![0u8; t.len()];
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (src, sport) = ((x >> 32) as u32, x as u16);
            let stamp = (i % 3 == 0).then(|| Stamp::at(x, i as u16));
            t.write(&mut out, src, sport, stamp);
            let mut payload = vec![0u8; t.len() - proto.headers_len()];
            if let Some(s) = stamp {
                payload[..4].copy_from_slice(&s.tsc32.to_be_bytes());
                payload[4..6].copy_from_slice(&s.seq.to_be_bytes());
            }
            let b = PacketBuilder::ethernet(GEN, DUT).ipv4(Ipv4Addr::from(src), ip("198.18.0.100"));
            let b = match proto {
                Proto::Tcp => {
                    let sa = if flags & tcp::ACK != 0 { 1 } else { 0 };
                    b.tcp(sport, 80, flags).seq(sa).ack(sa)
                }
                Proto::Udp => b.udp(sport, 80),
            };
            let want = b.payload(&payload).build();
            assert_eq!(out, want, "packet {i}");
        }
    }

    #[test]
    fn udp_template_matches_builder() {
        same_as_builder(Proto::Udp, 0, 60);
        same_as_builder(Proto::Udp, 0, 1514);
    }

    #[test]
    fn tcp_templates_match_builder() {
        same_as_builder(Proto::Tcp, tcp::SYN, 60);
        same_as_builder(Proto::Tcp, tcp::ACK, 60);
        same_as_builder(Proto::Tcp, tcp::ACK, 590);
    }

    #[test]
    fn template_is_at_least_headers_and_stamp() {
        let t = Template::new(&spec(Proto::Tcp, tcp::ACK, 10));
        assert_eq!(t.len(), 60);
        let t = Template::new(&spec(Proto::Udp, 0, 10));
        assert_eq!(t.len(), 48);
    }

    #[test]
    fn write_into_wrong_length_does_nothing() {
        let t = Template::new(&spec(Proto::Udp, 0, 60));
        let mut out = vec![7u8; 59];
        t.write(&mut out, 1, 2, None);
        assert!(out.iter().all(|&b| b == 7));
    }

    #[test]
    fn stamp_round_trip_and_wrap() {
        let s = Stamp::at(0x1234_5678_9abc, 7);
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&s.tsc32.to_be_bytes());
        buf[4..6].copy_from_slice(&s.seq.to_be_bytes());
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(s.cycles_until(0x1234_5678_9abc + 16 * 1000), 16 * 1000);
        assert_eq!(Stamp::read(&[0u8; 6]), None);
        assert_eq!(Stamp::read(&[1u8; 5]), None);
        // across the 2^36-cycle wrap of the shifted counter
        let t = (1u64 << 36) - 32;
        let s = Stamp::at(t, 0);
        assert_eq!(s.cycles_until(t + 64), 64);
    }

    #[test]
    fn parse_finds_fields() {
        let t = Template::new(&spec(Proto::Tcp, tcp::SYN, 60));
        let mut f = vec![0u8; 60];
        t.write(&mut f, u32::from(ip("198.19.0.5")), 1030, None);
        let Rx::Data(h) = parse(&f) else {
            panic!("not data")
        };
        assert_eq!(
            h,
            Headers {
                outer_ip: None,
                ip: 14,
                l4: 34,
                payload: 54,
                proto: 6,
                src: u32::from(ip("198.19.0.5")),
                dst: u32::from(ip("198.18.0.100")),
                sport: 1030,
                dport: 80,
                flags: tcp::SYN,
            }
        );
    }

    #[test]
    fn parse_sees_through_ipip() {
        let inner = PacketBuilder::new()
            .ipv4(ip("198.19.0.1"), ip("198.18.0.100"))
            .udp(1024, 53)
            .payload(&[0; 18])
            .build();
        let mut ipbuf = vec![0u8; 20];
        ipbuf.extend_from_slice(&inner);
        let n = vsd::wire::ipip::encap_ipv4_in_ipv4(
            &mut ipbuf,
            inner.len(),
            ip("198.18.0.1"),
            ip("198.18.0.11"),
            0,
        )
        .unwrap();
        let mut frame = PacketBuilder::ethernet(DUT, GEN)
            .ethertype(vsd::wire::EtherType::IPV4)
            .build();
        frame.truncate(14);
        frame.extend_from_slice(&ipbuf[..n]);
        let Rx::Data(h) = parse(&frame) else {
            panic!("not data")
        };
        assert_eq!(h.outer_ip, Some(14));
        assert_eq!((h.ip, h.l4, h.payload), (34, 54, 62));
        assert_eq!(
            (h.src, h.dport, h.proto),
            (u32::from(ip("198.19.0.1")), 53, 17)
        );
    }

    #[test]
    fn parse_rejects_other_things() {
        let arp = PacketBuilder::ethernet(GEN, MacAddr::BROADCAST)
            .arp_request(GEN, ip("198.18.0.254"), ip("198.18.0.1"))
            .build();
        assert_eq!(parse(&arp), Rx::Arp);
        let icmp = PacketBuilder::ethernet(GEN, DUT)
            .ipv4(ip("1.1.1.1"), ip("2.2.2.2"))
            .icmp_echo_request(1, 1)
            .build();
        assert_eq!(parse(&icmp), Rx::Other);
        let frag = PacketBuilder::ethernet(GEN, DUT)
            .ipv4(ip("1.1.1.1"), ip("2.2.2.2"))
            .fragment(true, 0)
            .udp(1, 2)
            .build();
        assert_eq!(parse(&frag), Rx::Other);
        // every truncation of a good frame is handled without panic
        let t = Template::new(&spec(Proto::Tcp, tcp::ACK, 60));
        for n in 0..t.len() {
            let r = parse(&t.bytes()[..n]);
            assert!(n >= 54 || r == Rx::Other, "len {n}: {r:?}");
        }
        assert_eq!(parse(&[]), Rx::Other);
    }

    #[test]
    fn reflect_makes_the_server_reply() {
        let t = Template::new(&spec(Proto::Tcp, tcp::SYN, 60));
        let mut f = vec![0u8; 60];
        let stamp = Stamp::at(123456789, 3);
        t.write(&mut f, u32::from(ip("198.19.0.5")), 1030, Some(stamp));
        // what a NAT director would have sent to RS 198.18.0.11:8080
        let rs_mac = MacAddr([2, 0x52, 198, 18, 0, 11]);
        let request = {
            let mut p = PacketBuilder::ethernet(DUT, rs_mac)
                .ipv4(ip("198.19.0.5"), ip("198.18.0.11"))
                .tcp(1030, 8080, tcp::SYN)
                .payload(&f[54..])
                .build();
            let Rx::Data(h) = parse(&p) else { panic!() };
            assert!(reflect(&mut p, &h, rs_mac, DUT));
            p
        };
        let want = PacketBuilder::ethernet(rs_mac, DUT)
            .ipv4(ip("198.18.0.11"), ip("198.19.0.5"))
            .tcp(8080, 1030, tcp::SYN | tcp::ACK)
            .payload(&f[54..])
            .build();
        assert_eq!(request, want);
        let ipp = Ipv4Packet::new_checked(&request[14..]).unwrap();
        assert!(ipp.verify_checksum());
        let tp = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert!(tp.verify_checksum_v4(ip("198.18.0.11"), ip("198.19.0.5")));
    }

    #[test]
    fn marked_template_and_seq_patch_keep_checksums_valid() {
        let mut t = Template::new(&spec(Proto::Tcp, tcp::ACK | tcp::PSH, 60));
        t.mark();
        let mut f = vec![0u8; 60];
        t.write(&mut f, u32::from(ip("198.19.128.9")), 2000, None);
        t.patch_seq_ack(&mut f, 0x8000_0001, 0xffff_fffe);
        let ipp = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tp = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert!(tp.verify_checksum_v4(ip("198.19.128.9"), ip("198.18.0.100")));
        assert_eq!(
            (tp.seq_number(), tp.ack_number()),
            (0x8000_0001, 0xffff_fffe)
        );
        assert_eq!(tp.payload(), &[0, 0, 0, 0, 0x4c, 0x47]);
        let Rx::Data(h) = parse(&f) else { panic!() };
        assert!(is_marked(&f, &h));
        assert_eq!(payload_len(&f, &h), 6);
        // a stamp is not a mark
        let plain = Template::new(&spec(Proto::Tcp, tcp::ACK, 60));
        plain.write(&mut f, 1, 2, Some(Stamp::at(99, HANDSHAKE_MARK)));
        let Rx::Data(h) = parse(&f) else { panic!() };
        assert!(!is_marked(&f, &h));
    }

    #[test]
    fn reflect_tcp_answers_like_a_server() {
        let rs_mac = MacAddr([2, 0x52, 198, 18, 0, 11]);
        let seg = |flags: u8, seq: u32, ack: u32, payload: &[u8]| {
            let mut p = PacketBuilder::ethernet(DUT, rs_mac)
                .ipv4(ip("198.19.0.5"), ip("198.18.0.11"))
                .tcp(1030, 8080, flags)
                .seq(seq)
                .ack(ack)
                .payload(payload)
                .build();
            p.resize(p.len().max(60), 0); // Ethernet padding
            p
        };
        let answer = |mut p: Vec<u8>| {
            let Rx::Data(h) = parse(&p) else { panic!() };
            assert!(reflect_tcp(&mut p, &h, rs_mac, DUT, 777));
            let ipp = Ipv4Packet::new_checked(&p[14..]).unwrap();
            assert!(ipp.verify_checksum());
            let tp = TcpPacket::new_checked(ipp.payload()).unwrap();
            assert!(tp.verify_checksum_v4(ip("198.18.0.11"), ip("198.19.0.5")));
            assert_eq!((tp.src_port(), tp.dst_port()), (8080, 1030));
            (tp.flags().0, tp.seq_number(), tp.ack_number())
        };
        // SYN: SYN-ACK with the server's ISN, acknowledging the client's
        assert_eq!(
            answer(seg(tcp::SYN, 0xffff_ffff, 0, &[])),
            (tcp::SYN | tcp::ACK, 777, 0)
        );
        // data: acknowledged, sent from where the client's ACK points
        assert_eq!(
            answer(seg(tcp::ACK | tcp::PSH, 1, 778, &[1, 2, 3, 4, 5, 6, 7])),
            (tcp::ACK | tcp::PSH, 778, 8)
        );
        // a bare (padded) ACK: nothing to acknowledge beyond its seq
        assert_eq!(answer(seg(tcp::ACK, 50, 778, &[])), (tcp::ACK, 778, 50));
        let Rx::Data(h) = parse(&seg(tcp::ACK, 50, 778, &[])) else {
            panic!()
        };
        assert_eq!(payload_len(&seg(tcp::ACK, 50, 778, &[]), &h), 0);
        // UDP is not answered this way
        let mut u = PacketBuilder::ethernet(DUT, GEN)
            .ipv4(ip("198.19.0.9"), ip("198.18.0.12"))
            .udp(4000, 9)
            .payload(&[0; 6])
            .build();
        let Rx::Data(h) = parse(&u) else { panic!() };
        assert!(!reflect_tcp(&mut u, &h, GEN, DUT, 1));
    }

    #[test]
    fn reflect_udp_keeps_checksums_valid() {
        let mut p = PacketBuilder::ethernet(DUT, GEN)
            .ipv4(ip("198.19.0.9"), ip("198.18.0.12"))
            .udp(4000, 9)
            .payload(&[1, 2, 3, 4, 5, 6, 0, 0, 0])
            .build();
        let Rx::Data(h) = parse(&p) else { panic!() };
        assert!(reflect(&mut p, &h, GEN, DUT));
        let ipp = Ipv4Packet::new_checked(&p[14..]).unwrap();
        assert!(ipp.verify_checksum());
        let u = UdpPacket::new_checked(ipp.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (9, 4000));
        assert!(u.verify_checksum_v4(ip("198.18.0.12"), ip("198.19.0.9")));
    }

    #[test]
    fn arp_requests_get_answers() {
        let rs = MacAddr([2, 0x52, 198, 18, 0, 11]);
        let mac_for = |a: Ipv4Addr| if a == ip("198.18.0.11") { rs } else { GEN };
        let mut f = PacketBuilder::ethernet(DUT, MacAddr::BROADCAST)
            .arp_request(DUT, ip("198.18.0.1"), ip("198.18.0.11"))
            .build();
        assert!(answer_arp(&mut f, mac_for));
        let want = PacketBuilder::ethernet(rs, DUT)
            .arp_reply(rs, ip("198.18.0.11"), DUT, ip("198.18.0.1"))
            .build();
        assert_eq!(f, want);
        // a reply, or a gratuitous request, is left alone
        let before = f.clone();
        assert!(!answer_arp(&mut f, mac_for));
        assert_eq!(f, before);
        let mut g = PacketBuilder::ethernet(DUT, MacAddr::BROADCAST)
            .arp_request(DUT, ip("198.18.0.1"), ip("198.18.0.1"))
            .build();
        assert!(!answer_arp(&mut g, mac_for));
        let mut gw = PacketBuilder::ethernet(DUT, MacAddr::BROADCAST)
            .arp_request(DUT, ip("198.18.0.1"), ip("198.18.0.254"))
            .build();
        assert!(answer_arp(&mut gw, mac_for));
        assert_eq!(&gw[6..12], &GEN.0);
        assert!(!answer_arp(&mut [0u8; 20], mac_for));
    }
}
