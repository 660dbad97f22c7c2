//! ICMP for IPv4 (RFC 792): echo, errors with the embedded original
//! datagram, and the "fragmentation needed" message of path MTU discovery
//! (RFC 1191).

use super::checksum;
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::{read_u16, write_u16, Error, IpProtocol, Result};
use std::net::Ipv4Addr;

/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, still an error type).
pub const TYPE_SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const TYPE_REDIRECT: u8 = 5;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// TTL of the IPv4 header of messages we originate.
pub const DEFAULT_TTL: u8 = 64;
/// TOS of ICMP errors we originate: precedence "internetwork control",
/// as Linux does.
pub const ERROR_TOS: u8 = 0xc0;

/// Bytes of the original datagram's payload quoted in an error (RFC 792).
pub const QUOTED_PAYLOAD_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const REST: usize = 4;
    pub const MTU: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// True for the ICMPv4 types that report an error about another datagram
/// and quote it (3, 4, 5, 11, 12).
pub const fn is_error_type(msg_type: u8) -> bool {
    matches!(
        msg_type,
        TYPE_DEST_UNREACHABLE
            | TYPE_SOURCE_QUENCH
            | TYPE_REDIRECT
            | TYPE_TIME_EXCEEDED
            | TYPE_PARAM_PROBLEM
    )
}

/// A view of an ICMPv4 message. The buffer must be exactly the message
/// (the IP payload), since the checksum covers all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the ICMP header (type, code, checksum, 4 more bytes).
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checks; accessors panic under 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::PAYLOAD {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (type 3 code 4).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MTU)
    }

    /// The 4 bytes after the checksum, as a big-endian word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        super::read_u32(self.buffer.as_ref(), field::REST)
    }

    /// True for echo request (type 8).
    #[inline]
    pub fn is_echo_request(&self) -> bool {
        self.msg_type() == TYPE_ECHO_REQUEST
    }

    /// True for error messages that quote a datagram; see [`is_error_type`].
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }

    /// Echo data (the payload of an echo request/reply).
    #[inline]
    pub fn echo_payload(&self) -> &[u8] {
        self.payload()
    }

    /// The quoted original datagram of an error message (bytes after the
    /// 8-byte header: its IP header and at least 8 bytes of its payload).
    /// Check [`is_error`](Self::is_error) first; parse the result with
    /// `Ipv4Packet::new_unchecked` and care, since the quote is usually
    /// shorter than its header's total length.
    #[inline]
    pub fn inner_ip(&self) -> &[u8] {
        self.payload()
    }

    /// True when the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type (checksum not updated).
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code (checksum not updated).
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the 4 bytes after the checksum (unused/pointer/gateway/...).
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        super::write_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the next-hop MTU (bytes 6..8; bytes 4..6 are left as is).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::MTU, value);
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// Mutable payload after the 8-byte header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }

    /// Turns an echo request into the echo reply in place: type 8 -> 0,
    /// checksum updated incrementally; identifier, sequence and data stay.
    /// `Unsupported` if this is not an echo request.
    #[inline]
    pub fn emit_echo_reply(&mut self) -> Result<()> {
        if !self.is_echo_request() {
            return Err(Error::Unsupported);
        }
        let code = self.code() as u16;
        let old = ((TYPE_ECHO_REQUEST as u16) << 8) | code;
        let new = ((TYPE_ECHO_REPLY as u16) << 8) | code;
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_msg_type(TYPE_ECHO_REPLY);
        self.set_checksum(c);
        Ok(())
    }
}

/// Answers an IPv4 ICMP echo request in place: swaps the IP addresses,
/// sets TTL to 64 and turns the ICMP message into the echo reply, with
/// both checksums updated incrementally. The Ethernet header (if any) is
/// the caller's. Returns the IP total length.
///
/// Errors: the IPv4 view's errors, `Unsupported` for anything other than
/// an unfragmented ICMP echo request, `BadChecksum` if the request's ICMP
/// checksum is wrong (we don't answer corrupted pings).
pub fn ipv4_echo_reply_in_place(ip: &mut [u8]) -> Result<usize> {
    let mut packet = Ipv4Packet::new_checked(ip)?;
    if packet.protocol() != IpProtocol::ICMP || packet.is_fragment() {
        return Err(Error::Unsupported);
    }
    {
        let icmp = Icmpv4Packet::new_checked(packet.payload())?;
        if !icmp.is_echo_request() {
            return Err(Error::Unsupported);
        }
        if !icmp.verify_checksum() {
            return Err(Error::BadChecksum);
        }
    }
    // Swapping the two addresses leaves the header sum unchanged.
    let src = packet.src_addr();
    let dst = packet.dst_addr();
    packet.set_src_addr(dst);
    packet.set_dst_addr(src);
    packet.set_ttl_incremental(DEFAULT_TTL);
    Icmpv4Packet::new_unchecked(packet.payload_mut()).emit_echo_reply()?;
    Ok(packet.total_len() as usize)
}

/// Whether RFC 1122 §3.2.2 allows an ICMP error about `orig`: never about
/// an ICMP error, a non-first fragment, or a broadcast/multicast address.
pub fn icmp_error_allowed<T: AsRef<[u8]>>(orig: &Ipv4Packet<T>) -> bool {
    if orig.frag_offset() != 0 {
        return false;
    }
    let dst = orig.dst_addr();
    let src = orig.src_addr();
    if dst.is_broadcast() || dst.is_multicast() || src.is_broadcast() || src.is_multicast() {
        return false;
    }
    if src.is_unspecified() {
        return false;
    }
    if orig.protocol() == IpProtocol::ICMP {
        match orig.payload().first() {
            Some(&t) => !is_error_type(t),
            None => false,
        }
    } else {
        true
    }
}

/// Builds an IPv4 + ICMP error message about `orig` into `out`: a 20-byte
/// IP header from `src` to `dst`, the ICMP header with `msg_type`, `code`
/// and `rest` (the 4 bytes after the checksum), then the original IP header
/// and the first 8 bytes of its payload. Returns the bytes written.
///
/// Errors: `orig` fails the IPv4 checks; `Unsupported` when RFC 1122
/// forbids an error about it ([`icmp_error_allowed`]); `NoSpace` when
/// `out` is too small.
pub fn build_error(
    orig: &[u8],
    msg_type: u8,
    code: u8,
    rest: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize> {
    let orig = Ipv4Packet::new_checked(orig)?;
    if !icmp_error_allowed(&orig) {
        return Err(Error::Unsupported);
    }
    let quote_len = orig.header_len() + orig.payload().len().min(QUOTED_PAYLOAD_LEN);
    let icmp_len = field::PAYLOAD + quote_len;
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::ICMP,
        payload_len: icmp_len,
        ttl: DEFAULT_TTL,
        tos: ERROR_TOS,
        ident: 0,
        dont_frag: false,
    };
    let total = repr.total_len();
    let out = out.get_mut(..total).ok_or(Error::NoSpace)?;
    repr.emit(out)?;
    let quote = orig.into_inner().get(..quote_len).ok_or(Error::Truncated)?;
    let (_, icmp_buf) = out.split_at_mut(repr.header_len());
    let mut icmp = Icmpv4Packet::new_unchecked(icmp_buf);
    icmp.set_msg_type(msg_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.payload_mut().copy_from_slice(quote);
    icmp.fill_checksum();
    Ok(total)
}

/// Builds "destination unreachable, fragmentation needed and DF set"
/// (type 3 code 4, RFC 1191) about `orig_ip_packet`, advertising `mtu`,
/// from `src` (us) to `dst` (normally the original source) into `out`.
/// Returns the bytes written; see [`build_error`] for errors.
pub fn build_frag_needed(
    orig_ip_packet: &[u8],
    mtu: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize> {
    build_error(
        orig_ip_packet,
        TYPE_DEST_UNREACHABLE,
        CODE_FRAG_NEEDED,
        mtu as u32,
        src,
        dst,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    // `ping -c1 -p 61` style: ident 0x1234, seq 1, 4 data bytes.
    fn echo_request_ip() -> Vec<u8> {
        let mut ip =
            hex("4500 0020 0001 4000 3f01 0000 c6120001 c6120064 0800 0000 1234 0001 61616161");
        let mut p = Ipv4Packet::new_checked(&mut ip[..]).unwrap();
        p.fill_checksum();
        let mut icmp = Icmpv4Packet::new_checked(p.payload_mut()).unwrap();
        icmp.fill_checksum();
        ip
    }

    #[test]
    fn echo_request_fields() {
        let ip = echo_request_ip();
        let p = Ipv4Packet::new_checked(&ip[..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), TYPE_ECHO_REQUEST);
        assert_eq!(icmp.code(), 0);
        // ~(0x0800 + 0x1234 + 0x0001 + 0x6161 + 0x6161) = ~0xdcf7 = 0x2308
        assert_eq!(icmp.checksum(), 0x2308);
        assert_eq!(icmp.echo_ident(), 0x1234);
        assert_eq!(icmp.echo_seq(), 1);
        assert_eq!(icmp.echo_payload(), b"aaaa");
        assert!(icmp.verify_checksum());
        assert!(!icmp.is_error());
    }

    #[test]
    fn echo_reply_in_place_exact() {
        let mut ip = echo_request_ip();
        let len = ipv4_echo_reply_in_place(&mut ip).unwrap();
        assert_eq!(len, 32);
        let mut expected =
            hex("4500 0020 0001 4000 4001 0000 c6120064 c6120001 0000 2b08 1234 0001 61616161");
        let mut p = Ipv4Packet::new_checked(&mut expected[..]).unwrap();
        p.fill_checksum();
        assert_eq!(ip, expected);
        let p = Ipv4Packet::new_checked(&ip[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn echo_reply_rejections() {
        let mut ip = echo_request_ip();
        ipv4_echo_reply_in_place(&mut ip).unwrap();
        // Already a reply.
        assert_eq!(ipv4_echo_reply_in_place(&mut ip), Err(Error::Unsupported));
        let mut bad = echo_request_ip();
        bad[31] ^= 0xFF;
        assert_eq!(ipv4_echo_reply_in_place(&mut bad), Err(Error::BadChecksum));
        let mut short = echo_request_ip();
        short.truncate(25);
        assert_eq!(ipv4_echo_reply_in_place(&mut short), Err(Error::Truncated));
        let mut udp = echo_request_ip();
        udp[9] = 17;
        assert_eq!(ipv4_echo_reply_in_place(&mut udp), Err(Error::Unsupported));
        let mut frag = echo_request_ip();
        frag[6] = 0x20;
        assert_eq!(ipv4_echo_reply_in_place(&mut frag), Err(Error::Unsupported));
        let mut tiny = [0u8; 4];
        assert_eq!(
            Icmpv4Packet::new_checked(&mut tiny[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn frag_needed_exact_bytes() {
        // Original: 198.18.0.1 -> 198.18.0.100 TCP, DF, 1500 bytes.
        let mut orig = hex("4500 05dc 4242 4000 4006 0000 c6120001 c6120064 d431 0050 00000001 00000000 5002 ffff 0000 0000");
        orig.resize(1500, 0xEE);
        let mut p = Ipv4Packet::new_checked(&mut orig[..]).unwrap();
        p.fill_checksum();
        let mut out = [0u8; 128];
        let n = build_frag_needed(
            &orig,
            1480,
            Ipv4Addr::new(198, 18, 0, 100),
            Ipv4Addr::new(198, 18, 0, 1),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);
        let mut expected =
            hex("45c0 0038 0000 0000 4001 0000 c6120064 c6120001 0304 0000 0000 05c8");
        expected.extend_from_slice(&orig[..28]);
        let ip_csum = checksum::checksum(&expected[..20]);
        expected[10..12].copy_from_slice(&ip_csum.to_be_bytes());
        let icmp_csum = checksum::checksum(&expected[20..]);
        expected[22..24].copy_from_slice(&icmp_csum.to_be_bytes());
        assert_eq!(&out[..n], &expected[..]);

        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert!(icmp.is_error());
        assert_eq!(icmp.msg_type(), TYPE_DEST_UNREACHABLE);
        assert_eq!(icmp.code(), CODE_FRAG_NEEDED);
        assert_eq!(icmp.next_hop_mtu(), 1480);
        assert_eq!(icmp.inner_ip(), &orig[..28]);
        let inner = Ipv4Packet::new_unchecked(icmp.inner_ip());
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(198, 18, 0, 100));
    }

    #[test]
    fn frag_needed_short_payload_and_errors() {
        // Original with only 3 payload bytes: quote all of them.
        let mut orig = hex("4500 0017 0000 4000 4011 0000 c6120001 c6120064 010203");
        Ipv4Packet::new_unchecked(&mut orig[..]).fill_checksum();
        let mut out = [0u8; 64];
        let a = Ipv4Addr::new(198, 18, 0, 100);
        let b = Ipv4Addr::new(198, 18, 0, 1);
        let n = build_frag_needed(&orig, 576, a, b, &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 23);
        assert_eq!(&out[28..n], &orig[..]);
        // Output too small.
        assert_eq!(
            build_frag_needed(&orig, 576, a, b, &mut out[..50]),
            Err(Error::NoSpace)
        );
        // Not about an ICMP error.
        let mut icmp_err =
            hex("4500 001c 0000 0000 4001 0000 c6120001 c6120064 0b00 f4ff 0000 0000");
        Ipv4Packet::new_unchecked(&mut icmp_err[..]).fill_checksum();
        assert_eq!(
            build_frag_needed(&icmp_err, 576, a, b, &mut out),
            Err(Error::Unsupported)
        );
        // Not about a non-first fragment.
        let mut frag = orig.clone();
        frag[6] = 0x00;
        frag[7] = 0x10;
        assert_eq!(
            build_frag_needed(&frag, 576, a, b, &mut out),
            Err(Error::Unsupported)
        );
        // Not about a multicast destination.
        let mut mcast = orig.clone();
        mcast[16] = 224;
        assert_eq!(
            build_frag_needed(&mcast, 576, a, b, &mut out),
            Err(Error::Unsupported)
        );
        // Garbage original.
        assert_eq!(
            build_frag_needed(&[0x45, 0], 576, a, b, &mut out),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn error_type_classification() {
        for t in [3u8, 4, 5, 11, 12] {
            assert!(is_error_type(t));
        }
        for t in [0u8, 8, 13, 14, 255] {
            assert!(!is_error_type(t));
        }
    }
}
