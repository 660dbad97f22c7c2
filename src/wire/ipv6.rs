//! IPv6 fixed header view (RFC 8200) and an extension header walker.

use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};
use std::net::Ipv6Addr;

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
    pub const END: usize = 40;
}

/// Most extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet. After `new_checked`, `payload()` is bounded by
/// the payload length field (Ethernet padding is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// A Fragment extension header (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Offset of the fragment header from the start of the IPv6 header.
    pub header_offset: usize,
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6UpperLayer {
    /// Upper-layer protocol (TCP, UDP, ICMPv6, ...; 59 for no next header).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// The Fragment header, if there was one. When its `offset` is nonzero
    /// the bytes at `offset` are fragment data, not an L4 header.
    pub fragment: Option<Ipv6Fragment>,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = field::END;

    /// Wraps `buffer` without checks; accessors panic under 40 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is under 40 bytes or shorter than 40 +
    /// payload length; `Malformed` if the version is not 6.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::END {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if field::END + self.payload_len() as usize > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP/ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (read_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000F_FFFF
    }

    /// Payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Total length (40 + payload length).
    #[inline]
    pub fn total_len(&self) -> usize {
        field::END + self.payload_len() as usize
    }

    /// Payload after the fixed header, bounded by the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::END..self.total_len())
            .unwrap_or(&[])
    }

    /// Walks hop-by-hop, routing and destination options headers (and a
    /// Fragment header) to the upper-layer protocol.
    ///
    /// Stops at the first other next-header value (the upper layer) or
    /// right after a Fragment header with a nonzero offset (what follows is
    /// data). Errors: `Truncated` if a header runs past the payload,
    /// `Unsupported` after more than [`MAX_EXT_HEADERS`] headers.
    pub fn upper_layer(&self) -> Result<Ipv6UpperLayer> {
        let buf = self.buffer.as_ref();
        let end = self.total_len().min(buf.len());
        let mut next = self.next_header();
        let mut offset = field::END;
        let mut fragment = None;
        for _ in 0..MAX_EXT_HEADERS {
            match next {
                IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTING | IpProtocol::IPV6_DEST_OPTS => {
                    if offset + 2 > end {
                        return Err(Error::Truncated);
                    }
                    let len = (buf[offset + 1] as usize + 1) * 8;
                    if offset + len > end {
                        return Err(Error::Truncated);
                    }
                    next = IpProtocol(buf[offset]);
                    offset += len;
                }
                IpProtocol::IPV6_FRAGMENT => {
                    if offset + 8 > end {
                        return Err(Error::Truncated);
                    }
                    let word = read_u16(buf, offset + 2);
                    let frag = Ipv6Fragment {
                        header_offset: offset,
                        offset: word & 0xFFF8,
                        more_frags: word & 1 != 0,
                        ident: read_u32(buf, offset + 4),
                    };
                    fragment = Some(frag);
                    next = IpProtocol(buf[offset]);
                    offset += 8;
                    if frag.offset != 0 {
                        break;
                    }
                }
                _ => break,
            }
        }
        if matches!(
            next,
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTING | IpProtocol::IPV6_DEST_OPTS
        ) && fragment.is_none_or(|f| f.offset == 0)
        {
            return Err(Error::Unsupported);
        }
        Ok(Ipv6UpperLayer {
            protocol: next,
            offset,
            fragment,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0x000F_FFFF);
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Decrements the hop limit; `None` (unchanged) if it was 0 or 1.
    #[inline]
    pub fn dec_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.set_hop_limit(h - 1);
        Some(h - 1)
    }

    /// Sets the source address (IPv6 has no header checksum; L4 checksums
    /// are the caller's to update).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Mutable payload bounded by the payload length.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        self.buffer
            .as_mut()
            .get_mut(field::END..end)
            .unwrap_or(&mut [])
    }
}

/// An IPv6 fixed header, parsed or to be emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Parses the fixed header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the header `emit` writes (40).
    pub const fn header_len(&self) -> usize {
        field::END
    }

    /// Writes the fixed header at the start of `buf`. `NoSpace` under 40
    /// bytes; `Malformed` if the payload length does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::Malformed)?;
        let header = buf.get_mut(..field::END).ok_or(Error::NoSpace)?;
        let mut packet = Ipv6Packet::new_unchecked(header);
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    fn sample() -> Vec<u8> {
        // TC 0xb8 (EF), flow 0x12345, payload 8 (UDP header), hop limit 64,
        // 2001:db8::1 -> 2001:db8::2, then 6 bytes of Ethernet padding.
        hex("6b81 2345 0008 1140 \
             20010db8000000000000000000000001 \
             20010db8000000000000000000000002 \
             0035 0035 0008 0000 \
             000000000000")
    }

    #[test]
    fn getters() {
        let bytes = sample();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &hex("0035 0035 0008 0000")[..]);
        assert_eq!(
            p.upper_layer(),
            Ok(Ipv6UpperLayer {
                protocol: IpProtocol::UDP,
                offset: 40,
                fragment: None
            })
        );
    }

    #[test]
    fn check_len_rules() {
        let bytes = sample();
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..47]).unwrap_err(),
            Error::Truncated
        );
        let mut v4 = bytes.clone();
        v4[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn repr_roundtrip_and_setters() {
        let bytes = sample();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let repr = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..40]);
        let mut p = Ipv6Packet::new_unchecked(&mut out[..]);
        assert_eq!(p.dec_hop_limit(), Some(63));
        p.set_hop_limit(1);
        assert_eq!(p.dec_hop_limit(), None);
        assert_eq!(repr.emit(&mut [0u8; 39]), Err(Error::NoSpace));
    }

    fn with_ext(next: u8, ext: &str, payload_len: u16) -> Vec<u8> {
        let mut v = hex("6000 0000");
        v.extend_from_slice(&payload_len.to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&[0u8; 32]);
        v.extend_from_slice(&hex(ext));
        v
    }

    #[test]
    fn extension_headers_skipped() {
        // Hop-by-hop (8 bytes, next = dest opts) -> dest opts (16 bytes,
        // next = TCP) -> TCP header start.
        let ext = "3c00 0000 0000 0000  0601 0000 0000 0000 0000 0000 0000 0000  d431 0050";
        let bytes = with_ext(0, ext, 28);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, IpProtocol::TCP);
        assert_eq!(ul.offset, 40 + 8 + 16);
        assert_eq!(ul.fragment, None);
    }

    #[test]
    fn fragment_headers() {
        // First fragment: offset 0, M=1, ident 0xdeadbeef, next UDP.
        let bytes = with_ext(44, "1100 0001 deadbeef 0035 0035", 12);
        let ul = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.protocol, IpProtocol::UDP);
        assert_eq!(ul.offset, 48);
        assert_eq!(
            ul.fragment,
            Some(Ipv6Fragment {
                header_offset: 40,
                offset: 0,
                more_frags: true,
                ident: 0xdeadbeef
            })
        );
        // Later fragment: offset 1448 (0x5a8), next header "hop-by-hop"
        // value must not be walked since the data is not a header.
        let bytes = with_ext(44, "0000 05a8 00000001 ffff ffff", 12);
        let ul = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.offset, 48);
        assert_eq!(ul.fragment.unwrap().offset, 1448);
        assert!(!ul.fragment.unwrap().more_frags);
    }

    #[test]
    fn extension_header_errors() {
        // Hop-by-hop claims 16 bytes but payload holds 8.
        let bytes = with_ext(0, "0601 0000 0000 0000", 8);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));
        // Fragment header cut short.
        let bytes = with_ext(44, "1100 0001", 4);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));
        // A chain of 9 destination options headers.
        let mut ext = String::new();
        for _ in 0..9 {
            ext.push_str("3c00 0000 0000 0000 ");
        }
        let bytes = with_ext(60, &ext, 72);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Unsupported));
        // No next header.
        let bytes = with_ext(59, "", 0);
        let ul = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.protocol, IpProtocol::IPV6_NO_NEXT);
        assert_eq!(ul.offset, 40);
    }
}
