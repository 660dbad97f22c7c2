//! IPv4 header view (RFC 791) with in-place rewrites that keep the header
//! checksum correct incrementally.

use super::checksum;
use super::{read_u16, write_u16, Error, IpProtocol, Result};
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    pub const END: usize = 20;
}

/// Don't Fragment bit in the flags/offset word.
const FLAG_DF: u16 = 0x4000;
/// More Fragments bit in the flags/offset word.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (in units of 8 bytes).
const OFFSET_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet.
///
/// After `new_checked`, `payload()` is bounded by the header's total length,
/// not by the buffer, so Ethernet padding after a short packet is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::END;

    /// Wraps `buffer` without checks; accessors panic if it is shorter than
    /// 20 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the lengths so no accessor can panic: rejects a buffer
    /// under 20 bytes or shorter than total length (`Truncated`), version
    /// other than 4, IHL under 5, or header length past total length
    /// (`Malformed`).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::END {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = self.header_len();
        let total_len = self.total_len() as usize;
        if header_len < field::END || header_len > total_len {
            return Err(Error::Malformed);
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a valid packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0F) as usize) * 4
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The whole DSCP/ECN (former TOS) byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// True for any fragment: MF set or a nonzero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// True for the first fragment of a fragmented datagram (MF set,
    /// offset 0): it carries the L4 header but not the whole payload.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        let fo = self.flags_offset();
        fo & FLAG_MF != 0 && fo & OFFSET_MASK == 0
    }

    /// True when the header has options (IHL > 5).
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > field::END
    }

    /// The header bytes (including options); empty if the buffer is short.
    #[inline]
    pub fn header(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// The options bytes (empty without options or on a short buffer).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::END..self.header_len())
            .unwrap_or(&[])
    }

    /// The payload, from the end of the header to total length (empty if
    /// the lengths are inconsistent, which `new_checked` rules out).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.header_len()..self.total_len() as usize)
            .unwrap_or(&[])
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = self.header();
        !header.is_empty() && checksum::data(header) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (multiple of 4,
    /// 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) as u8) & 0x0F;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the whole DSCP/ECN byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = tos;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets flags and offset: DF, MF and the offset in bytes (must be a
    /// multiple of 8).
    #[inline]
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut word = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            word |= FLAG_DF;
        }
        if more_frags {
            word |= FLAG_MF;
        }
        write_u16(self.buffer.as_mut(), field::FLG_OFF, word);
    }

    /// Sets the TTL (checksum not updated).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol (checksum not updated).
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.0;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address (checksum not updated).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (checksum not updated).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum. Does nothing if the buffer
    /// is shorter than the header length.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        if let Some(header) = self.buffer.as_ref().get(..header_len) {
            let value = checksum::checksum(header);
            self.set_checksum(value);
        }
    }

    /// Rewrites the source address and updates the header checksum
    /// incrementally. The L4 checksum (which covers the address through
    /// the pseudo header) is the caller's to update.
    #[inline]
    pub fn set_src_incremental(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.src_addr());
        let new = u32::from(addr);
        let c = checksum::update_u32(self.checksum(), old, new);
        self.set_src_addr(addr);
        self.set_checksum(c);
    }

    /// Rewrites the destination address and updates the header checksum
    /// incrementally (L4 checksum: see [`set_src_incremental`](Self::set_src_incremental)).
    #[inline]
    pub fn set_dst_incremental(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.dst_addr());
        let new = u32::from(addr);
        let c = checksum::update_u32(self.checksum(), old, new);
        self.set_dst_addr(addr);
        self.set_checksum(c);
    }

    /// Sets the TTL and updates the header checksum incrementally.
    #[inline]
    pub fn set_ttl_incremental(&mut self, ttl: u8) {
        let buf = self.buffer.as_ref();
        // TTL shares a 16-bit word with the protocol.
        let old = read_u16(buf, field::TTL);
        let new = ((ttl as u16) << 8) | buf[field::PROTOCOL] as u16;
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(c);
    }

    /// Decrements the TTL by one, updating the checksum incrementally.
    /// Returns the new TTL, or `None` (packet unchanged) if it was 0 or 1,
    /// in which case a router drops it and may send ICMP time exceeded.
    #[inline]
    pub fn dec_ttl_incremental(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        self.set_ttl_incremental(ttl - 1);
        Some(ttl - 1)
    }

    /// Mutable header bytes (including options).
    #[inline]
    pub fn header_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(..header_len)
            .unwrap_or(&mut [])
    }

    /// Mutable payload, bounded by total length.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..self.total_len() as usize;
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }
}

/// An IPv4 header without options, parsed or to be emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parses a packet: checks lengths and the header checksum. Options
    /// are skipped; fragments are accepted (look at the view for those).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Length of the header `emit` writes (always 20: no options).
    pub const fn header_len(&self) -> usize {
        field::END
    }

    /// Total length (header + payload).
    pub const fn total_len(&self) -> usize {
        field::END + self.payload_len
    }

    /// Writes a 20-byte header, with checksum, at the start of `buf`.
    /// `NoSpace` if `buf` is shorter than 20 bytes, `Malformed` if the
    /// total length does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total_len = u16::try_from(self.total_len()).map_err(|_| Error::Malformed)?;
        let header = buf.get_mut(..field::END).ok_or(Error::NoSpace)?;
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_version_and_header_len(field::END);
        packet.set_tos(self.tos);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_flags_and_offset(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, XorShift};

    // 192.168.0.1 -> 192.168.0.199, UDP, total 0x73, DF, TTL 64.
    fn sample() -> Vec<u8> {
        let mut v = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        v.resize(0x73, 0xAB);
        v
    }

    #[test]
    fn getters() {
        let bytes = sample();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 0);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert!(!p.is_fragment());
        assert!(!p.is_first_fragment());
        assert!(!p.has_options());
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn payload_ignores_ethernet_padding() {
        // 20-byte header + 8-byte payload, padded to 46 bytes.
        let mut bytes = hex("4500 001c 1234 0000 4001 0000 0a000001 0a000002 0800f7ff 00000000");
        bytes.resize(46, 0);
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.payload(), &hex("0800f7ff 00000000")[..]);
        assert_eq!(p.payload_mut().len(), 8);
    }

    #[test]
    fn check_len_rejections() {
        let good = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::Malformed
        );
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl4[..]).unwrap_err(),
            Error::Malformed
        );
        // header_len (60) > total_len (40)
        let mut long_header = good.clone();
        long_header[0] = 0x4F;
        long_header[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&long_header[..]).unwrap_err(),
            Error::Malformed
        );
        // total_len > buffer
        assert_eq!(
            Ipv4Packet::new_checked(&good[..0x72]).unwrap_err(),
            Error::Truncated
        );
        // unchecked view on junk never panics in slice accessors
        let junk = [0x4Fu8; 20];
        let p = Ipv4Packet::new_unchecked(&junk[..]);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte option (router alert 94 04 00 00); MF set,
        // offset 0 -> first fragment.
        let mut bytes =
            hex("4600 0020 abcd 2000 0111 0000 0a000001 e0000016 94040000 deadbeef 0102 0304");
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.has_options());
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload(), &hex("deadbeef 0102 0304")[..]);
        assert!(p.is_fragment());
        assert!(p.is_first_fragment());
        // Offset 185*8 = 1480, no MF: last fragment.
        p.set_flags_and_offset(false, false, 1480);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert!(!p.is_first_fragment());
        assert_eq!(&bytes[6..8], &[0x00, 0xb9]);
    }

    #[test]
    fn incremental_rewrites_match_full_checksum() {
        let mut rng = XorShift(7);
        for _ in 0..2000 {
            let mut bytes = sample();
            rng.fill(&mut bytes[4..8]);
            bytes[8] = 2 + (rng.next_u32() % 254) as u8;
            rng.fill(&mut bytes[12..20]);
            let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            p.fill_checksum();
            let new_src = Ipv4Addr::from(rng.next_u32());
            let new_dst = Ipv4Addr::from(rng.next_u32());
            p.set_src_incremental(new_src);
            p.set_dst_incremental(new_dst);
            let old_ttl = p.ttl();
            assert_eq!(p.dec_ttl_incremental(), Some(old_ttl - 1));
            assert!(p.verify_checksum());
            let incremental = p.checksum();
            p.fill_checksum();
            assert_eq!(incremental, p.checksum());
            assert_eq!(p.src_addr(), new_src);
            assert_eq!(p.dst_addr(), new_dst);
        }
    }

    #[test]
    fn dec_ttl_exact_bytes_and_expiry() {
        let mut bytes = sample();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.dec_ttl_incremental(), Some(63));
        // TTL 0x40 -> 0x3f raises the checksum by 0x0100: b861 -> b961.
        assert_eq!(&bytes[8..12], &[0x3f, 0x11, 0xb9, 0x61]);
        let mut bytes = sample();
        bytes[8] = 1;
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.dec_ttl_incremental(), None);
        assert_eq!(p.ttl(), 1);
    }

    #[test]
    fn nat_rewrite_exact_bytes() {
        let mut bytes = sample();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_dst_incremental(Ipv4Addr::new(10, 0, 0, 5));
        let expected = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 0a00 0005");
        let mut expected_full = expected.clone();
        let c = checksum::checksum(&expected);
        expected_full[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&bytes[..20], &expected_full[..]);
    }

    #[test]
    fn repr_roundtrip() {
        let bytes = sample();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 0, 1),
                dst_addr: Ipv4Addr::new(192, 168, 0, 199),
                protocol: IpProtocol::UDP,
                payload_len: 0x73 - 20,
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_frag: true,
            }
        );
        let mut out = vec![0u8; 20];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..20]);
        let mut bad = bytes.clone();
        bad[11] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadChecksum));
        assert_eq!(repr.emit(&mut [0u8; 19]), Err(Error::NoSpace));
        let huge = Ipv4Repr {
            payload_len: 70000,
            ..repr
        };
        assert_eq!(huge.emit(&mut out), Err(Error::Malformed));
    }
}
