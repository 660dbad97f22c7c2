//! UDP header view (RFC 768) with checksum helpers for IPv4 and IPv6 and
//! incremental updates for NAT rewrites.
//!
//! Checksum rules: over IPv4 a checksum of 0 means "none" and stays 0
//! through incremental updates; a computed checksum of 0 is sent as 0xFFFF
//! (both mean zero in one's complement). Over IPv6 the checksum is
//! mandatory (RFC 8200), so 0 never verifies there.

use super::checksum;
use super::{read_u16, write_u16, Error, IpProtocol, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// A view of a UDP datagram. Payload is bounded by the length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checks; accessors panic under 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is under 8 bytes or shorter than the
    /// length field; `Malformed` if the length field is under 8.
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < field::PAYLOAD {
            return Err(Error::Truncated);
        }
        let len = self.len() as usize;
        if len < field::PAYLOAD {
            return Err(Error::Malformed);
        }
        if len > buf_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram as its length field bounds it (empty if inconsistent).
    #[inline]
    fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..self.len() as usize)
            .unwrap_or(&[])
    }

    /// Payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::PAYLOAD..self.len() as usize)
            .unwrap_or(&[])
    }

    /// Verifies the checksum over IPv4; a zero checksum ("none") passes.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        checksum::combine(&[pseudo, checksum::data(self.datagram())]) == 0xFFFF
    }

    /// Verifies the checksum over IPv6; zero is invalid there.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, self.len() as u32);
        checksum::combine(&[pseudo, checksum::data(self.datagram())]) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable payload, bounded by the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..end)
            .unwrap_or(&mut [])
    }

    fn store_computed(&mut self, pseudo: u16) {
        self.set_checksum(0);
        let sum = checksum::combine(&[pseudo, checksum::data(self.datagram())]);
        let value = checksum::finish(sum);
        // A computed zero goes out as 0xFFFF: zero means "no checksum".
        self.set_checksum(if value == 0 { 0xFFFF } else { value });
    }

    /// Computes and stores the checksum with the IPv4 pseudo header.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        self.store_computed(pseudo);
    }

    /// Computes and stores the checksum with the IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, self.len() as u32);
        self.store_computed(pseudo);
    }

    /// Applies an incremental update unless the checksum is absent (0),
    /// and keeps a resulting 0 as 0xFFFF.
    #[inline]
    fn adjust_checksum(&mut self, update: impl FnOnce(u16) -> u16) {
        let old = self.checksum();
        if old == 0 {
            return;
        }
        let new = update(old);
        self.set_checksum(if new == 0 { 0xFFFF } else { new });
    }

    /// Rewrites the source port, updating the checksum incrementally.
    #[inline]
    pub fn set_src_port_incremental(&mut self, port: u16) {
        let old = self.src_port();
        self.adjust_checksum(|c| checksum::update_u16(c, old, port));
        self.set_src_port(port);
    }

    /// Rewrites the destination port, updating the checksum incrementally.
    #[inline]
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        let old = self.dst_port();
        self.adjust_checksum(|c| checksum::update_u16(c, old, port));
        self.set_dst_port(port);
    }

    /// Updates the checksum for an IP address change in the pseudo header
    /// (`old`/`new`: 4 or 16 address bytes). The IP header itself is the
    /// caller's to rewrite.
    #[inline]
    pub fn update_checksum_for_addr_change(&mut self, old: &[u8], new: &[u8]) {
        self.adjust_checksum(|c| checksum::update_bytes(c, old, new));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, XorShift};

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    fn datagram() -> Vec<u8> {
        // 5353 -> 53, length 12, payload "abcd".
        hex("14e9 0035 000c 0000 61626364")
    }

    #[test]
    fn fields_and_checksum() {
        let mut bytes = datagram();
        bytes.extend_from_slice(&[0, 0]); // trailing junk outside length
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.src_port(), 5353);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), b"abcd");
        p.fill_checksum_v4(SRC, DST);
        let expected = {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&SRC.octets());
            pseudo.extend_from_slice(&DST.octets());
            pseudo.extend_from_slice(&[0, 17, 0, 12]);
            pseudo.extend_from_slice(&datagram());
            checksum::checksum(&pseudo)
        };
        assert_eq!(p.checksum(), expected);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(SRC, Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn check_len_rules() {
        let bytes = datagram();
        assert_eq!(
            UdpPacket::new_checked(&bytes[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&bytes[..11]).unwrap_err(),
            Error::Truncated
        );
        let mut short_len = bytes.clone();
        short_len[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&short_len[..]).unwrap_err(),
            Error::Malformed
        );
        // Unchecked junk does not panic in slices.
        let junk = hex("0000 0000 ffff 0000");
        let p = UdpPacket::new_unchecked(&junk[..]);
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn zero_checksum_means_none_over_v4() {
        let mut bytes = datagram();
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(p.verify_checksum_v4(SRC, DST));
        let v6a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(!p.verify_checksum_v6(&v6a, &v6a));
        p.set_dst_port_incremental(5300);
        p.set_src_port_incremental(1);
        p.update_checksum_for_addr_change(&DST.octets(), &[10, 0, 0, 1]);
        assert_eq!(p.checksum(), 0);
        assert_eq!(&bytes[..8], &hex("0001 14b4 000c 0000")[..]);
    }

    #[test]
    fn computed_zero_sent_as_ffff() {
        // Find a payload whose checksum computes to zero: choose the last
        // two payload bytes so the total sum is 0xFFFF.
        let mut bytes = hex("0001 0002 000c 0000 0000 0000");
        let pseudo = checksum::pseudo_header_v4(SRC, DST, 17, 12);
        let partial = checksum::combine(&[pseudo, checksum::data(&bytes)]);
        let filler = !partial; // sum + filler = 0xFFFF
        bytes[10..12].copy_from_slice(&filler.to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum_v4(SRC, DST));
        // An incremental update landing on zero also yields 0xFFFF:
        // change src port 1 -> 2 and back; the first changes it, the
        // second returns to the all-ones sum.
        p.set_src_port_incremental(2);
        assert_ne!(p.checksum(), 0);
        p.set_src_port_incremental(1);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn nat_rewrite_matches_recompute_v4_and_v6() {
        let mut rng = XorShift(99);
        for i in 0..1000 {
            let payload_len = rng.below(40);
            let mut bytes = vec![0u8; 8 + payload_len];
            rng.fill(&mut bytes);
            bytes[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
            if i % 2 == 0 {
                let (src, dst) = (
                    Ipv4Addr::from(rng.next_u32()),
                    Ipv4Addr::from(rng.next_u32()),
                );
                let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum_v4(src, dst);
                let (new_dst, new_port) = (Ipv4Addr::from(rng.next_u32()), rng.next_u16());
                p.update_checksum_for_addr_change(&dst.octets(), &new_dst.octets());
                p.set_dst_port_incremental(new_port);
                assert!(p.verify_checksum_v4(src, new_dst));
                let inc = p.checksum();
                p.fill_checksum_v4(src, new_dst);
                assert_eq!(inc, p.checksum());
            } else {
                let mut a = [0u8; 16];
                let mut b = [0u8; 16];
                let mut c = [0u8; 16];
                rng.fill(&mut a);
                rng.fill(&mut b);
                rng.fill(&mut c);
                let (src, dst, new_src) = (Ipv6Addr::from(a), Ipv6Addr::from(b), Ipv6Addr::from(c));
                let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum_v6(&src, &dst);
                p.update_checksum_for_addr_change(&a, &c);
                p.set_src_port_incremental(rng.next_u16());
                assert!(p.verify_checksum_v6(&new_src, &dst));
                let inc = p.checksum();
                p.fill_checksum_v6(&new_src, &dst);
                assert_eq!(inc, p.checksum());
            }
        }
    }
}
