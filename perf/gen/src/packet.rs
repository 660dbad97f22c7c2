//! Packet templates, latency stamps, the fast receive-side parse and the
//! real-server reflection. Pure byte-buffer code, tested without DPDK.
//!
//! A template is a whole frame built once with [`PacketBuilder`] for
//! client 0.0.0.0 port 0. Each packet is the template copied into an mbuf
//! with the client address and port written in and both checksums updated
//! incrementally from the template's (RFC 1624 with an old value of 0), so
//! building a packet costs a copy and a few stores.
//!
//! IPv6 (`--family 6`): every address is the IPv4 address the options name,
//! embedded in the low 32 bits of an IPv6 /96 (default 2001:2::/96, inside
//! the benchmarking prefix 2001:2::/48 of RFC 5180): client 198.19.0.5 is
//! 2001:2::c613:5. The flow space, the real-server set and the synthetic
//! MACs keep working on the 32-bit host part, so both families share every
//! per-packet path; the checker verifies the /96 of every sampled packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vsd::wire::checksum;
use vsd::wire::icmpv6::{self, Icmpv6Packet};
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

/// Address family of the generated traffic. IPv6 addresses are a /96
/// prefix (its first 12 bytes here) with a 32-bit host part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6 { prefix: [u8; 12] },
}

impl Family {
    /// IPv6 over the /96 of `prefix` (its low 32 bits are ignored).
    pub fn v6(prefix: Ipv6Addr) -> Family {
        let mut p = [0u8; 12];
        p.copy_from_slice(&prefix.octets()[..12]);
        Family::V6 { prefix: p }
    }

    /// Length of the IP header (no options or extension headers).
    pub fn ip_len(self) -> usize {
        match self {
            Family::V4 => 20,
            Family::V6 { .. } => 40,
        }
    }

    /// The address host part `host` stands for.
    pub fn addr(self, host: u32) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(host)),
            Family::V6 { prefix } => {
                let mut o = [0u8; 16];
                o[..12].copy_from_slice(&prefix);
                o[12..].copy_from_slice(&host.to_be_bytes());
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    /// The host part of `a`, if `a` is of this family (and, for IPv6, in
    /// the prefix).
    pub fn host_of(self, a: IpAddr) -> Option<u32> {
        match (self, a) {
            (Family::V4, IpAddr::V4(a)) => Some(u32::from(a)),
            (Family::V6 { prefix }, IpAddr::V6(a)) => {
                let o = a.octets();
                (o[..12] == prefix).then(|| u32::from_be_bytes([o[12], o[13], o[14], o[15]]))
            }
            _ => None,
        }
    }

    /// 4 or 6.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 { .. } => 6,
        }
    }
}

/// Transport protocol of the generated traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// Bytes of the L4 header.
    pub fn l4_len(self) -> usize {
        match self {
            Proto::Tcp => 20,
            Proto::Udp => 8,
        }
    }

    /// Bytes of Ethernet + IPv4 + L4 header.
    #[cfg(test)]
    pub fn headers_len(self) -> usize {
        ETH_LEN + 20 + self.l4_len()
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
    family: Family,
    /// IPv4 header checksum with source 0.0.0.0 (unused for IPv6).
    ip_csum: u16,
    /// L4 checksum with source 0.0.0.0 port 0 and no stamp.
    l4_csum: u16,
}

/// What a template is built from.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSpec {
    pub family: Family,
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
        let headers = ETH_LEN + spec.family.ip_len() + spec.proto.l4_len();
        let min = headers + STAMP_LEN;
        let payload = vec![0u8; spec.frame_len.max(min) - headers];
        let b = PacketBuilder::ethernet(spec.src_mac, spec.dst_mac);
        let b = match (
            spec.family.addr(0),
            spec.family.addr(u32::from(spec.dst_ip)),
        ) {
            (IpAddr::V6(src), IpAddr::V6(dst)) => b.ipv6(src, dst),
            _ => b.ipv4(Ipv4Addr::UNSPECIFIED, spec.dst_ip),
        }
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
        let at = IP_OFF + spec.family.ip_len() + spec.proto.csum_field();
        let l4_csum = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        Template {
            bytes,
            proto: spec.proto,
            family: spec.family,
            ip_csum,
            l4_csum,
        }
    }

    /// Offset of the L4 header.
    #[inline]
    fn l4_off(&self) -> usize {
        IP_OFF + self.family.ip_len()
    }

    /// Offset of the payload (the stamp).
    #[inline]
    fn payload_off(&self) -> usize {
        self.l4_off() + self.proto.l4_len()
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
        let mut l4 = checksum::update_u32(self.l4_csum, 0, src_ip);
        l4 = checksum::update_u16(l4, 0, src_port);
        match self.family {
            Family::V4 => {
                let ip_csum = checksum::update_u32(self.ip_csum, 0, src_ip);
                out[IP_OFF + 12..IP_OFF + 16].copy_from_slice(&src_ip.to_be_bytes());
                out[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&ip_csum.to_be_bytes());
            }
            // the host part: the last 4 bytes of the source address
            Family::V6 { .. } => {
                out[IP_OFF + 20..IP_OFF + 24].copy_from_slice(&src_ip.to_be_bytes())
            }
        }
        let l4_off = self.l4_off();
        out[l4_off..l4_off + 2].copy_from_slice(&src_port.to_be_bytes());
        if let Some(s) = stamp {
            let at = self.payload_off();
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
        let at = self.payload_off() + 4;
        self.bytes[at..at + 2].copy_from_slice(&HANDSHAKE_MARK.to_be_bytes());
        self.l4_csum = checksum::update_u16(self.l4_csum, 0, HANDSHAKE_MARK);
        let at = self.l4_off() + self.proto.csum_field();
        self.bytes[at..at + 2].copy_from_slice(&self.l4_csum.to_be_bytes());
    }

    /// Sets the TCP sequence and acknowledgement numbers of a packet built
    /// from this (ACK-flagged, so built with seq = ack = 1) TCP template.
    #[inline]
    pub fn patch_seq_ack(&self, out: &mut [u8], seq: u32, ack: u32) {
        if self.proto != Proto::Tcp || out.len() != self.bytes.len() {
            return;
        }
        let l4 = self.l4_off();
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
    /// An IPv6 neighbor solicitation (the caller may answer it).
    Solicit,
    /// An IPv4 or IPv6 TCP or UDP packet (possibly inside IPIP or
    /// IPv6-in-IPv6).
    Data(Headers),
    /// Anything else (ICMP, fragments, extension headers, truncated, ...).
    Other,
}

/// Offsets and fields of a data packet. For IPIP, `ip` is the inner header
/// and `outer_ip` the outer one. IPv6 addresses are their host part (the
/// last 4 bytes; the /96 is checked on sampled packets only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub ipv6: bool,
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
        Some(0x0806) => Rx::Arp,
        // multicast IP (a director's sync messages, reports): not ours
        Some(0x0800 | 0x86dd) if frame[0] & 1 != 0 && !is_solicit(frame) => Rx::Other,
        Some(0x0800) => parse_ipv4(frame).map_or(Rx::Other, Rx::Data),
        Some(0x86dd) => parse_ipv6(frame),
        _ => Rx::Other,
    }
}

/// The IPv6 header at `ip`: (next header, src host part, dst host part).
#[inline]
fn ipv6_at(frame: &[u8], ip: usize) -> Option<(u8, u32, u32)> {
    if *frame.get(ip)? >> 4 != 6 {
        return None;
    }
    Some((
        *frame.get(ip + 6)?,
        be32(frame, ip + 20)?,
        be32(frame, ip + 36)?,
    ))
}

/// A neighbor solicitation (sent to a solicited-node group): answered.
#[inline]
fn is_solicit(frame: &[u8]) -> bool {
    matches!(parse_ipv6(frame), Rx::Solicit)
}

fn parse_ipv6(frame: &[u8]) -> Rx {
    let Some((mut nh, mut src, mut dst)) = ipv6_at(frame, IP_OFF) else {
        return Rx::Other;
    };
    let mut ip = IP_OFF;
    let mut outer_ip = None;
    if nh == 41 {
        outer_ip = Some(ip);
        ip += 40;
        let Some(inner) = ipv6_at(frame, ip) else {
            return Rx::Other;
        };
        (nh, src, dst) = inner;
    }
    let l4 = ip + 40;
    if nh == 58 && outer_ip.is_none() {
        return match frame.get(l4) {
            Some(&icmpv6::TYPE_NEIGHBOR_SOLICIT) => Rx::Solicit,
            _ => Rx::Other,
        };
    }
    l4_headers(frame, true, outer_ip, ip, l4, nh, src, dst).map_or(Rx::Other, Rx::Data)
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
    l4_headers(frame, false, outer_ip, ip, ip + ihl, proto, src, dst)
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn l4_headers(
    frame: &[u8],
    ipv6: bool,
    outer_ip: Option<usize>,
    ip: usize,
    l4: usize,
    proto: u8,
    src: u32,
    dst: u32,
) -> Option<Headers> {
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
        ipv6,
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
    if h.ipv6 {
        // whole addresses, whatever their prefixes
        let (src, dst) = (h.ip + 8, h.ip + 24);
        let mut a = [0u8; 16];
        a.copy_from_slice(&frame[src..src + 16]);
        frame.copy_within(dst..dst + 16, src);
        frame[dst..dst + 16].copy_from_slice(&a);
    } else {
        frame[h.ip + 12..h.ip + 16].copy_from_slice(&h.dst.to_be_bytes());
        frame[h.ip + 16..h.ip + 20].copy_from_slice(&h.src.to_be_bytes());
    }
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
    let end = if h.ipv6 {
        h.ip + 40 + be16(frame, h.ip + 4).unwrap_or(0) as usize
    } else {
        h.ip + be16(frame, h.ip + 2).unwrap_or(0) as usize
    };
    end.saturating_sub(h.payload)
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

/// The neighbor advertisement answering the solicitation in `frame` (from
/// the solicited target to the solicitor, S and O set, with the MAC
/// `mac_for` gives for the target), or None for anything that is not a
/// well-formed solicitation from a unicast address (duplicate address
/// detection probes from :: are never answered: that would tell the
/// prober its address is taken). The solicitation's own checks (hop
/// limit, checksum) are vsd's business; the generator only plays hosts.
pub fn answer_solicit(frame: &[u8], mac_for: impl Fn(Ipv6Addr) -> MacAddr) -> Option<Vec<u8>> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(IP_OFF + 8..IP_OFF + 24)?).ok()?);
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(frame.get(IP_OFF + 40..)?).ok()?;
    if icmp.msg_type() != icmpv6::TYPE_NEIGHBOR_SOLICIT {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(icmp.payload().get(..16)?).ok()?);
    let requester = MacAddr(frame.get(6..12)?.try_into().ok()?);
    let mac = mac_for(target);
    Some(
        PacketBuilder::ethernet(mac, requester)
            .ipv6(target, src)
            .neighbor_advert(
                icmpv6::NA_FLAG_SOLICITED | icmpv6::NA_FLAG_OVERRIDE,
                target,
                Some(mac),
            )
            .build(),
    )
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
            family: Family::V4,
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

    /// A director's sync messages (UDP to a multicast group) are counted
    /// as other traffic, not taken for replies; solicitations to a
    /// solicited-node group are still answered.
    #[test]
    fn multicast_frames_are_other_traffic() {
        let v4 = PacketBuilder::ethernet(DUT, vsd::wire::MacAddr([0x01, 0, 0x5e, 0, 0, 0x51]))
            .ipv4(ip("198.18.0.1"), ip("224.0.0.81"))
            .udp(8848, 8848)
            .payload(&[0; 44])
            .build();
        assert!(matches!(parse(&v4), Rx::Other));
        let v6 = PacketBuilder::ethernet(DUT, vsd::wire::MacAddr([0x33, 0x33, 0, 0, 0, 0x81]))
            .ipv6("fe80::1".parse().unwrap(), "ff02::81".parse().unwrap())
            .udp(8848, 8848)
            .payload(&[0; 44])
            .build();
        assert!(matches!(parse(&v6), Rx::Other));
        let ns = PacketBuilder::ethernet(DUT, vsd::wire::MacAddr([0x33, 0x33, 0xff, 0, 0, 1]))
            .ipv6(
                "fe80::1".parse().unwrap(),
                "ff02::1:ff00:1".parse().unwrap(),
            )
            .neighbor_solicit("2001:db8::1".parse().unwrap(), Some(DUT))
            .build();
        assert!(matches!(parse(&ns), Rx::Solicit));
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
                ipv6: false,
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

    fn v6() -> Family {
        Family::v6("2001:2::".parse().unwrap())
    }

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// IPv6: the template's packet equals PacketBuilder's for the same
    /// tuple (2001:2::/96 + host part), byte for byte.
    #[test]
    fn ipv6_templates_match_builder() {
        for (proto, flags) in [
            (Proto::Tcp, tcp::ACK),
            (Proto::Tcp, tcp::SYN),
            (Proto::Udp, 0),
        ] {
            let t = Template::new(&TemplateSpec {
                family: v6(),
                ..spec(proto, flags, 60)
            });
            let headers = 14 + 40 + proto.l4_len();
            assert_eq!(t.len(), headers + STAMP_LEN, "raised to headers + stamp");
            let mut out = vec![0u8; t.len()];
            for (i, (src, sport)) in [(0xc613_0005u32, 1030u16), (0xffff_ffff, 65535), (0, 1)]
                .into_iter()
                .enumerate()
            {
                let stamp = (i != 1).then(|| Stamp::at(0x1234_5678 * i as u64, i as u16));
                t.write(&mut out, src, sport, stamp);
                let mut payload = vec![0u8; STAMP_LEN];
                if let Some(s) = stamp {
                    payload[..4].copy_from_slice(&s.tsc32.to_be_bytes());
                    payload[4..6].copy_from_slice(&s.seq.to_be_bytes());
                }
                let IpAddr::V6(client) = v6().addr(src) else {
                    panic!()
                };
                let b = PacketBuilder::ethernet(GEN, DUT).ipv6(client, ip6("2001:2::c612:64"));
                let b = match proto {
                    Proto::Tcp => {
                        let sa = if flags & tcp::ACK != 0 { 1 } else { 0 };
                        b.tcp(sport, 80, flags).seq(sa).ack(sa)
                    }
                    Proto::Udp => b.udp(sport, 80),
                };
                assert_eq!(out, b.payload(&payload).build(), "{proto:?} packet {i}");
                let Rx::Data(h) = parse(&out) else {
                    panic!("not data")
                };
                assert!(h.ipv6);
                assert_eq!(
                    (h.src, h.dst, h.sport, h.dport),
                    (src, 0xc612_0064, sport, 80)
                );
                assert_eq!((h.ip, h.l4, h.payload), (14, 54, headers));
                assert_eq!(payload_len(&out, &h), STAMP_LEN);
            }
        }
    }

    #[test]
    fn ipv6_family_addresses() {
        let f = v6();
        assert_eq!(f.addr(0xc613_0005), IpAddr::V6(ip6("2001:2::198.19.0.5")));
        assert_eq!(
            f.host_of(IpAddr::V6(ip6("2001:2::c613:5"))),
            Some(0xc613_0005)
        );
        assert_eq!(f.host_of(IpAddr::V6(ip6("2001:3::c613:5"))), None);
        assert_eq!(f.host_of(IpAddr::V4(ip("198.19.0.5"))), None);
        assert_eq!(
            Family::V4.host_of(IpAddr::V4(ip("198.19.0.5"))),
            Some(0xc613_0005)
        );
        assert_eq!((f.number(), Family::V4.number()), (6, 4));
    }

    #[test]
    fn ipv6_parse_sees_through_ipv6_in_ipv6_and_rejects_the_rest() {
        let inner = PacketBuilder::new()
            .ipv6(ip6("2001:2::c613:1"), ip6("2001:2::c612:64"))
            .udp(1024, 53)
            .payload(&[0; 6])
            .build();
        let frame = PacketBuilder::ethernet(DUT, GEN)
            .ipv6(ip6("2001:2::c612:1"), ip6("2001:2::c612:b"))
            .ip_proto(vsd::wire::IpProtocol(41))
            .payload(&inner)
            .build();
        let Rx::Data(h) = parse(&frame) else {
            panic!("not data")
        };
        assert_eq!(h.outer_ip, Some(14));
        assert_eq!((h.ip, h.l4, h.payload), (54, 94, 102));
        assert_eq!(
            (h.src, h.dst, h.dport, h.proto),
            (0xc613_0001, 0xc612_0064, 53, 17)
        );
        // ICMPv6: a solicitation is recognised, anything else is other
        let ns = PacketBuilder::ethernet(DUT, MacAddr([0x33, 0x33, 0xff, 0x12, 0, 0xb]))
            .ipv6(ip6("2001:2::c612:1"), ip6("ff02::1:ff12:b"))
            .neighbor_solicit(ip6("2001:2::c612:b"), Some(DUT))
            .build();
        assert_eq!(parse(&ns), Rx::Solicit);
        let echo = PacketBuilder::ethernet(DUT, GEN)
            .ipv6(ip6("2001:2::1"), ip6("2001:2::2"))
            .icmpv6_echo_request(1, 1)
            .build();
        assert_eq!(parse(&echo), Rx::Other);
        // every truncation of a good frame is handled without panic
        let t = Template::new(&TemplateSpec {
            family: v6(),
            ..spec(Proto::Tcp, tcp::ACK, 60)
        });
        for n in 0..t.len() {
            let r = parse(&t.bytes()[..n]);
            assert!(n >= 74 || r == Rx::Other, "len {n}: {r:?}");
        }
    }

    #[test]
    fn ipv6_reflect_and_handshake_patches_keep_checksums_valid() {
        let rs_mac = MacAddr([2, 0x52, 198, 18, 0, 11]);
        let (client, rs) = (ip6("2001:2::c613:5"), ip6("2001:2::c612:b"));
        let mut p = PacketBuilder::ethernet(DUT, rs_mac)
            .ipv6(client, rs)
            .tcp(1030, 8080, tcp::SYN)
            .payload(&[0; 6])
            .build();
        let Rx::Data(h) = parse(&p) else { panic!() };
        assert!(reflect_tcp(&mut p, &h, rs_mac, DUT, 777));
        let want = PacketBuilder::ethernet(rs_mac, DUT)
            .ipv6(rs, client)
            .tcp(8080, 1030, tcp::SYN | tcp::ACK)
            .seq(777)
            .ack(1)
            .payload(&[0; 6])
            .build();
        assert_eq!(p, want);
        let mut t = Template::new(&TemplateSpec {
            family: v6(),
            ..spec(Proto::Tcp, tcp::ACK | tcp::PSH, 60)
        });
        t.mark();
        let mut f = vec![0u8; t.len()];
        t.write(&mut f, 0xc613_8009, 2000, None);
        t.patch_seq_ack(&mut f, 0x8000_0001, 0xffff_fffe);
        let ipp = vsd::wire::Ipv6Packet::new_checked(&f[14..]).unwrap();
        let tp = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert!(tp.verify_checksum_v6(&ip6("2001:2::c613:8009"), &ip6("2001:2::c612:64")));
        assert_eq!(
            (tp.seq_number(), tp.ack_number()),
            (0x8000_0001, 0xffff_fffe)
        );
        let Rx::Data(h) = parse(&f) else { panic!() };
        assert!(is_marked(&f, &h));
    }

    #[test]
    fn solicitations_get_advertisements() {
        let rs = MacAddr([2, 0x52, 198, 18, 0, 11]);
        let target = ip6("2001:2::c612:b");
        let mac_for = |a: Ipv6Addr| if a == target { rs } else { GEN };
        let ns = |src: &str| {
            PacketBuilder::ethernet(DUT, MacAddr([0x33, 0x33, 0xff, 0x12, 0, 0xb]))
                .ipv6(ip6(src), ip6("ff02::1:ff12:b"))
                .neighbor_solicit(target, Some(DUT))
                .build()
        };
        let na = answer_solicit(&ns("2001:2::c612:1"), mac_for).expect("answered");
        let want = PacketBuilder::ethernet(rs, DUT)
            .ipv6(target, ip6("2001:2::c612:1"))
            .neighbor_advert(0x60, target, Some(rs))
            .build();
        assert_eq!(na, want);
        let ipp = vsd::wire::Ipv6Packet::new_checked(&na[14..]).unwrap();
        assert_eq!(ipp.hop_limit(), 255);
        // duplicate address detection probes are not answered
        assert_eq!(answer_solicit(&ns("::"), mac_for), None);
        // nor is anything that is not a solicitation
        let echo = PacketBuilder::ethernet(DUT, GEN)
            .ipv6(ip6("2001:2::1"), ip6("2001:2::2"))
            .icmpv6_echo_request(1, 1)
            .build();
        assert_eq!(answer_solicit(&echo, mac_for), None);
        assert_eq!(answer_solicit(&[0u8; 30], mac_for), None);
    }
}
