//! Ethernet II frames, MAC addresses, EtherTypes and 802.1Q/802.1ad tags.

use super::{read_u16, write_u16, Error, Result};
use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xFF; 6]);
    /// 00:00:00:00:00:00 (also the "unknown" target of an ARP request).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from the first 6 bytes of `bytes`; `None` if shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let octets: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(octets))
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the group bit (lowest bit of the first octet) is set;
    /// broadcast is a multicast address too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for a unicast (not group) address that is not all zero.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a MAC address from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address (expected aa:bb:cc:dd:ee:ff)")
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts six hex octets separated by `:` or `-` (one or two digits each).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for slot in out.iter_mut() {
            let part = parts.next().ok_or(ParseMacError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

/// An EtherType value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);

    /// True for the tag protocol identifiers 0x8100 and 0x88a8.
    pub fn is_vlan(&self) -> bool {
        *self == Self::VLAN || *self == Self::QINQ
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType(other) => write!(f, "0x{other:04x}"),
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// A view of an Ethernet II frame (no FCS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the Ethernet header (without VLAN tags).
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checks; accessors panic if it is shorter than
    /// 14 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Ensures the buffer holds a whole Ethernet header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }

    /// The EtherType field (may be a VLAN TPID; see [`l3_offset`]).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType field.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// Swaps source and destination MAC addresses (for replies).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let buf = self.buffer.as_mut();
        let (dst, rest) = buf.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }

    /// Mutable access to everything after the 14-byte header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }
}

/// A view of a 4-byte 802.1Q/802.1ad tag body as it follows a TPID:
/// the TCI (PCP, DEI, VLAN id) and the encapsulated EtherType.
///
/// The view starts *after* the TPID, i.e. at frame offset 14 for the
/// first tag: bytes 0..2 are the TCI, 2..4 the inner EtherType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Length of the tag body (TCI + inner EtherType).
    pub const LEN: usize = 4;

    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps `buffer` after checking it holds 4 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Ensures the buffer holds a whole tag.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[0] >> 5
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.buffer.as_ref()[0] & 0x10 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vlan_id(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 0) & 0x0FFF
    }

    /// The EtherType of what follows the tag.
    pub fn inner_ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), 2))
    }

    /// What follows the tag.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(Self::LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the TCI from its parts (pcp truncated to 3 bits, id to 12).
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vlan_id: u16) {
        let tci = ((pcp as u16 & 0x7) << 13) | ((dei as u16) << 12) | (vlan_id & 0x0FFF);
        write_u16(self.buffer.as_mut(), 0, tci);
    }

    /// Sets the EtherType of what follows the tag.
    pub fn set_inner_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), 2, ethertype.0);
    }
}

/// Maximum number of VLAN tags [`l3_offset`] walks past (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// Finds the network-layer header of an Ethernet frame: returns its offset
/// and EtherType after skipping up to two 802.1Q/802.1ad tags.
///
/// Errors: `Truncated` if the frame ends inside a header or tag,
/// `Unsupported` if a third tag follows.
#[inline]
pub fn l3_offset(frame: &[u8]) -> Result<(usize, EtherType)> {
    if frame.len() < EthernetFrame::<&[u8]>::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let mut ethertype = EtherType(read_u16(frame, field::ETHERTYPE));
    let mut offset = field::PAYLOAD;
    let mut tags = 0;
    while ethertype.is_vlan() {
        if tags == MAX_VLAN_TAGS {
            return Err(Error::Unsupported);
        }
        if frame.len() < offset + VlanTag::<&[u8]>::LEN {
            return Err(Error::Truncated);
        }
        ethertype = EtherType(read_u16(frame, offset + 2));
        offset += VlanTag::<&[u8]>::LEN;
        tags += 1;
    }
    Ok((offset, ethertype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    #[test]
    fn mac_display_parse() {
        let mac = MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0x0f]);
        assert_eq!(mac.to_string(), "aa:bb:cc:0d:ee:0f");
        assert_eq!(format!("{mac:?}"), "aa:bb:cc:0d:ee:0f");
        assert_eq!("aa:bb:cc:0d:ee:0f".parse::<MacAddr>(), Ok(mac));
        assert_eq!("AA-BB-CC-d-EE-f".parse::<MacAddr>(), Ok(mac));
        assert!("aa:bb:cc:dd:ee".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:fg".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:+f".parse::<MacAddr>().is_err());
        assert!("aaa:bb:cc:dd:ee:ff".parse::<MacAddr>().is_err());
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x02, 0, 0, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn frame_view() {
        let bytes = hex("ffffffffffff 020000000001 0806 0001");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(frame.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0x00, 0x01]);
        assert_eq!(
            EthernetFrame::new_checked(&bytes[..13]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn frame_setters() {
        let mut bytes = vec![0u8; 16];
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        frame.set_dst_addr(MacAddr([1, 2, 3, 4, 5, 6]));
        frame.set_src_addr(MacAddr([7, 8, 9, 10, 11, 12]));
        frame.set_ethertype(EtherType::IPV6);
        frame.payload_mut()[0] = 0x60;
        assert_eq!(bytes, hex("010203040506 0708090a0b0c 86dd 6000"));
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.swap_addrs();
        assert_eq!(bytes, hex("0708090a0b0c 010203040506 86dd 6000"));
    }

    #[test]
    fn vlan_tag_view() {
        // PCP 5, DEI 1, VID 0x123, inner IPv4.
        let mut bytes = hex("b123 0800 45");
        let tag = VlanTag::new_checked(&bytes[..]).unwrap();
        assert_eq!(tag.pcp(), 5);
        assert!(tag.dei());
        assert_eq!(tag.vlan_id(), 0x123);
        assert_eq!(tag.inner_ethertype(), EtherType::IPV4);
        assert_eq!(tag.payload(), &[0x45]);
        let mut tag = VlanTag::new_checked(&mut bytes[..]).unwrap();
        tag.set_tci(3, false, 0xfff);
        tag.set_inner_ethertype(EtherType::IPV6);
        assert_eq!(bytes, hex("6fff 86dd 45"));
        assert_eq!(
            VlanTag::new_checked(&[0u8; 3][..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn l3_offset_untagged_single_double_triple() {
        let untagged = hex("ffffffffffff 020000000001 0800 45");
        assert_eq!(l3_offset(&untagged), Ok((14, EtherType::IPV4)));

        let single = hex("ffffffffffff 020000000001 8100 0064 86dd 60");
        assert_eq!(l3_offset(&single), Ok((18, EtherType::IPV6)));

        let double = hex("ffffffffffff 020000000001 88a8 0010 8100 0064 0806 00");
        assert_eq!(l3_offset(&double), Ok((22, EtherType::ARP)));

        let triple = hex("ffffffffffff 020000000001 88a8 0010 8100 0064 8100 0001 0800");
        assert_eq!(l3_offset(&triple), Err(Error::Unsupported));

        let cut = hex("ffffffffffff 020000000001 8100 0064 86");
        assert_eq!(l3_offset(&cut), Err(Error::Truncated));
        assert_eq!(l3_offset(&untagged[..13]), Err(Error::Truncated));
        // Tag exactly filling the buffer is fine: L3 starts at the end.
        let exact = hex("ffffffffffff 020000000001 8100 0064 0800");
        assert_eq!(l3_offset(&exact), Ok((18, EtherType::IPV4)));
    }

    #[test]
    fn ethertype_display() {
        assert_eq!(EtherType::IPV4.to_string(), "IPv4");
        assert_eq!(EtherType(0x1234).to_string(), "0x1234");
        assert!(EtherType::QINQ.is_vlan());
        assert!(!EtherType::IPV6.is_vlan());
    }
}
