//! ARP for Ethernet/IPv4 (RFC 826), the only kind a director answers.

use super::ethernet::{EtherType, MacAddr};
use super::{read_u16, write_u16, Error, Result};
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
    pub const END: usize = 28;
}

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// An ARP operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has `target_protocol_addr`? (1)
    Request,
    /// `source_protocol_addr` is at `source_hardware_addr`. (2)
    Reply,
    /// Any other code (RARP etc.).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet (28 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = field::END;

    /// Wraps `buffer` without checks; accessors panic if it is shorter
    /// than 28 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 28 bytes; `Unsupported` unless it is
    /// Ethernet (htype 1, hlen 6) over IPv4 (ptype 0x0800, plen 4).
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < field::END {
            return Err(Error::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != EtherType::IPV4
            || buf[field::HLEN] != 6
            || buf[field::PLEN] != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        MacAddr(a)
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        MacAddr(a)
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::TPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// A gratuitous ARP announces the sender's own address: sender and
    /// target protocol addresses are equal (request or reply form).
    pub fn is_gratuitous(&self) -> bool {
        self.source_protocol_addr() == self.target_protocol_addr()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 type and length fields.
    pub fn set_ethernet_ipv4(&mut self) {
        let buf = self.buffer.as_mut();
        write_u16(buf, field::HTYPE, HTYPE_ETHERNET);
        write_u16(buf, field::PTYPE, EtherType::IPV4.0);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets the sender hardware address.
    pub fn set_source_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }

    /// Turns a request for one of our addresses into the reply, in place:
    /// the old sender becomes the target, and `our_mac` with the requested
    /// address becomes the sender. The Ethernet header is the caller's.
    pub fn make_reply_in_place(&mut self, our_mac: MacAddr) {
        let requester_mac = self.source_hardware_addr();
        let requester_ip = self.source_protocol_addr();
        let asked_ip = self.target_protocol_addr();
        self.set_operation(ArpOperation::Reply);
        self.set_source_hardware_addr(our_mac);
        self.set_source_protocol_addr(asked_ip);
        self.set_target_hardware_addr(requester_mac);
        self.set_target_protocol_addr(requester_ip);
    }
}

/// Parsed Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply or other.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: MacAddr,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: MacAddr,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a checked packet view.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        field::END
    }

    /// Writes the packet into the first 28 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let buf = buf.get_mut(..field::END).ok_or(Error::NoSpace)?;
        let mut packet = ArpPacket::new_unchecked(buf);
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
        Ok(())
    }

    /// See [`ArpPacket::is_gratuitous`].
    pub fn is_gratuitous(&self) -> bool {
        self.source_protocol_addr == self.target_protocol_addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    // who-has 198.18.0.100 tell 198.18.0.1 from 02:00:00:00:00:01
    const REQUEST: &str = "0001 0800 06 04 0001 020000000001 c6120001 000000000000 c6120064";

    #[test]
    fn parse_request() {
        let bytes = hex(REQUEST);
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.source_hardware_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(packet.source_protocol_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(packet.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(
            packet.target_protocol_addr(),
            Ipv4Addr::new(198, 18, 0, 100)
        );
        assert!(!packet.is_gratuitous());
        let repr = ArpRepr::parse(&packet).unwrap();
        let mut out = vec![0u8; 28];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn make_reply() {
        let mut bytes = hex(REQUEST);
        let mut packet = ArpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.make_reply_in_place(MacAddr([2, 0, 0, 0, 0, 0x64]));
        let expected = hex("0001 0800 06 04 0002 020000000064 c6120064 020000000001 c6120001");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn rejects_bad() {
        let bytes = hex(REQUEST);
        assert_eq!(
            ArpPacket::new_checked(&bytes[..27]).unwrap_err(),
            Error::Truncated
        );
        for (offset, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = bytes.clone();
            bad[offset] = value;
            assert_eq!(
                ArpPacket::new_checked(&bad[..]).unwrap_err(),
                Error::Unsupported
            );
        }
        let mut out = [0u8; 27];
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.emit(&mut out), Err(Error::NoSpace));
    }

    #[test]
    fn gratuitous() {
        let garp = hex("0001 0800 06 04 0001 020000000001 c6120064 000000000000 c6120064");
        let packet = ArpPacket::new_checked(&garp[..]).unwrap();
        assert!(packet.is_gratuitous());
        assert!(ArpRepr::parse(&packet).unwrap().is_gratuitous());
        let mut other = garp.clone();
        other[7] = 9;
        let packet = ArpPacket::new_checked(&other[..]).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Unknown(9));
        assert_eq!(u16::from(ArpOperation::Unknown(9)), 9);
    }
}
