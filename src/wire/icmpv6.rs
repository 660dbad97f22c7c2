//! ICMPv6 (RFC 4443) with echo, Packet Too Big, and the Neighbor
//! Solicitation/Advertisement messages of neighbor discovery (RFC 4861).

use super::checksum;
use super::ethernet::MacAddr;
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};
use std::net::Ipv6Addr;

/// Destination unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const TYPE_ROUTER_ADVERT: u8 = 134;
/// Neighbor solicitation.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

/// NDP option: source link-layer address.
pub const OPT_SOURCE_LINK_ADDR: u8 = 1;
/// NDP option: target link-layer address.
pub const OPT_TARGET_LINK_ADDR: u8 = 2;

/// Neighbor advertisement flag: sender is a router.
pub const NA_FLAG_ROUTER: u8 = 0x80;
/// Neighbor advertisement flag: sent in response to a solicitation.
pub const NA_FLAG_SOLICITED: u8 = 0x40;
/// Neighbor advertisement flag: override an existing cache entry.
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

/// Hop limit that neighbor discovery messages must carry (RFC 4861 §7.1).
pub const NDP_HOP_LIMIT: u8 = 255;
/// IPv6 minimum MTU: ICMPv6 errors must fit in it (RFC 4443 §2.4(c)).
pub const IPV6_MIN_MTU: usize = 1280;
/// Hop limit of other messages we originate.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const MTU: usize = 4;
    pub const NA_FLAGS: usize = 4;
    pub const PAYLOAD: usize = 8;
    pub const TARGET: core::ops::Range<usize> = 8..24;
    pub const NDP_OPTIONS: usize = 24;
}

/// A view of an ICMPv6 message; the buffer must be exactly the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Length of the common header (type, code, checksum, 4 more bytes).
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checks; accessors panic under 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` under 8 bytes, or under 24 bytes for a neighbor
    /// solicitation/advertisement (which carry a target address).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::PAYLOAD {
            return Err(Error::Truncated);
        }
        if self.is_neighbor_message() && len < field::NDP_OPTIONS {
            return Err(Error::Truncated);
        }
        Ok(())
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

    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// MTU of a Packet Too Big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MTU)
    }

    /// True for error messages (types below 128).
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// True for neighbor solicitation or advertisement.
    #[inline]
    pub fn is_neighbor_message(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT
        )
    }

    /// Everything after the 8-byte header (echo data, or the quoted packet
    /// of an error message).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }

    /// Neighbor advertisement flags byte (R, S, O bits).
    #[inline]
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NA_FLAGS]
    }

    /// Target address of a neighbor solicitation/advertisement; `None` for
    /// other types or when too short.
    #[inline]
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        if !self.is_neighbor_message() {
            return None;
        }
        let bytes: [u8; 16] = self.buffer.as_ref().get(field::TARGET)?.try_into().ok()?;
        Some(Ipv6Addr::from(bytes))
    }

    /// Options of a neighbor solicitation/advertisement.
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        if !self.is_neighbor_message() {
            return &[];
        }
        self.buffer
            .as_ref()
            .get(field::NDP_OPTIONS..)
            .unwrap_or(&[])
    }

    /// The link-layer address in the first NDP option of `kind` with an
    /// Ethernet-sized body; `None` if absent or the options are malformed.
    pub fn link_addr_option(&self, kind: u8) -> Option<MacAddr> {
        let mut opts = self.ndp_options();
        while opts.len() >= 2 {
            let len = opts[1] as usize * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if opts[0] == kind && len == 8 {
                return MacAddr::from_bytes(&opts[2..8]);
            }
            opts = &opts[len..];
        }
        None
    }

    /// Source link-layer address option (in solicitations).
    pub fn source_link_addr(&self) -> Option<MacAddr> {
        self.link_addr_option(OPT_SOURCE_LINK_ADDR)
    }

    /// Target link-layer address option (in advertisements).
    pub fn target_link_addr(&self) -> Option<MacAddr> {
        self.link_addr_option(OPT_TARGET_LINK_ADDR)
    }

    /// Verifies the checksum with the IPv6 pseudo header.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let buf = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, buf.len() as u32);
        checksum::combine(&[pseudo, checksum::data(buf)]) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets the 4 bytes after the checksum (MTU, pointer, NA flags + 0).
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MTU, value);
    }

    /// Mutable payload after the 8-byte header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum with the IPv6 pseudo header.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let buf = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, buf.len() as u32);
        let value = checksum::finish(checksum::combine(&[pseudo, checksum::data(buf)]));
        self.set_checksum(value);
    }

    /// Turns an echo request into the echo reply in place (type 128 ->
    /// 129, checksum updated incrementally; the pseudo header sum does not
    /// change when the caller swaps the addresses). `Unsupported` otherwise.
    pub fn emit_echo_reply(&mut self) -> Result<()> {
        if self.msg_type() != TYPE_ECHO_REQUEST {
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

/// Answers an ICMPv6 echo request in place: swaps the addresses, sets the
/// hop limit to 64 and makes the echo reply. Only packets whose next
/// header is ICMPv6 directly (no extension headers) are handled. Returns
/// the IPv6 total length.
///
/// Errors: the view's errors; `Unsupported` if not such an echo request;
/// `BadChecksum` if the request's checksum is wrong.
pub fn ipv6_echo_reply_in_place(ip: &mut [u8]) -> Result<usize> {
    let mut packet = Ipv6Packet::new_checked(ip)?;
    if packet.next_header() != IpProtocol::ICMPV6 {
        return Err(Error::Unsupported);
    }
    let src = packet.src_addr();
    let dst = packet.dst_addr();
    {
        let icmp = Icmpv6Packet::new_checked(packet.payload())?;
        if icmp.msg_type() != TYPE_ECHO_REQUEST {
            return Err(Error::Unsupported);
        }
        if !icmp.verify_checksum(&src, &dst) {
            return Err(Error::BadChecksum);
        }
    }
    packet.set_src_addr(dst);
    packet.set_dst_addr(src);
    packet.set_hop_limit(DEFAULT_HOP_LIMIT);
    Icmpv6Packet::new_unchecked(packet.payload_mut()).emit_echo_reply()?;
    Ok(packet.total_len())
}

/// Builds an IPv6 + ICMPv6 Neighbor Advertisement for `target` (one of our
/// addresses) into `out`: from `src` to `dst`, hop limit 255, flags
/// (`NA_FLAG_*`), and a target link-layer address option with `our_mac`.
/// Returns the bytes written (40 + 32); `NoSpace` if `out` is too small.
pub fn build_neighbor_advert(
    our_mac: MacAddr,
    target: Ipv6Addr,
    flags: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize> {
    const ICMP_LEN: usize = field::NDP_OPTIONS + 8;
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: ICMP_LEN,
        hop_limit: NDP_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let total = repr.header_len() + ICMP_LEN;
    let out = out.get_mut(..total).ok_or(Error::NoSpace)?;
    repr.emit(out)?;
    let (_, icmp_buf) = out.split_at_mut(repr.header_len());
    icmp_buf.fill(0);
    icmp_buf[field::TYPE] = TYPE_NEIGHBOR_ADVERT;
    icmp_buf[field::NA_FLAGS] = flags;
    icmp_buf[field::TARGET].copy_from_slice(&target.octets());
    icmp_buf[field::NDP_OPTIONS] = OPT_TARGET_LINK_ADDR;
    icmp_buf[field::NDP_OPTIONS + 1] = 1;
    icmp_buf[field::NDP_OPTIONS + 2..].copy_from_slice(&our_mac.0);
    Icmpv6Packet::new_unchecked(icmp_buf).fill_checksum(&src, &dst);
    Ok(total)
}

/// The all-nodes link-local multicast group (ff02::1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast group of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 with the address's low 24 bits.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `group` is a solicited-node multicast address.
pub fn is_solicited_node(group: &Ipv6Addr) -> bool {
    group.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// The Ethernet address an IPv6 multicast group maps to (RFC 2464 §7):
/// 33:33 and the group's low 32 bits.
pub fn multicast_mac(group: &Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The modified EUI-64 link-local address of an Ethernet interface
/// (fe80::/64, RFC 4291 appendix A), as Linux forms it by default.
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// Whether every option of a neighbor message is well formed: a nonzero
/// length that stays within the message (RFC 4861 §7.1.1/§7.1.2: "all
/// included options have a length that is greater than zero").
pub fn ndp_options_valid(options: &[u8]) -> bool {
    let mut opts = options;
    while !opts.is_empty() {
        let Some(&units) = opts.get(1) else {
            return false;
        };
        let len = usize::from(units) * 8;
        if len == 0 || len > opts.len() {
            return false;
        }
        opts = &opts[len..];
    }
    true
}

/// Builds an IPv6 + ICMPv6 Neighbor Solicitation for `target` into `out`:
/// from `src` to `dst` (the target's solicited-node group, or the target
/// itself for a unicast probe), hop limit 255, with a source link-layer
/// address option carrying `our_mac` unless `src` is unspecified (a DAD
/// probe, RFC 4861 §7.2.2). Returns the bytes written (40 + 24, + 8 with
/// the option); `NoSpace` if `out` is too small.
pub fn build_neighbor_solicit(
    our_mac: MacAddr,
    target: Ipv6Addr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize> {
    let with_option = !src.is_unspecified();
    let icmp_len = field::NDP_OPTIONS + if with_option { 8 } else { 0 };
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: icmp_len,
        hop_limit: NDP_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let total = repr.header_len() + icmp_len;
    let out = out.get_mut(..total).ok_or(Error::NoSpace)?;
    repr.emit(out)?;
    let (_, icmp_buf) = out.split_at_mut(repr.header_len());
    icmp_buf.fill(0);
    icmp_buf[field::TYPE] = TYPE_NEIGHBOR_SOLICIT;
    icmp_buf[field::TARGET].copy_from_slice(&target.octets());
    if with_option {
        icmp_buf[field::NDP_OPTIONS] = OPT_SOURCE_LINK_ADDR;
        icmp_buf[field::NDP_OPTIONS + 1] = 1;
        icmp_buf[field::NDP_OPTIONS + 2..].copy_from_slice(&our_mac.0);
    }
    Icmpv6Packet::new_unchecked(icmp_buf).fill_checksum(&src, &dst);
    Ok(total)
}

/// Builds an ICMPv6 error (`msg_type`, `code`, `rest` = the 4 bytes after
/// the checksum) about `orig` into `out`, quoting as much of `orig` as
/// keeps the result within the IPv6 minimum MTU (RFC 4443 §2.4(c)).
/// Returns the bytes written.
///
/// Errors: `orig` fails the IPv6 checks; `Unsupported` for an error about
/// an ICMPv6 error message or a multicast destination (RFC 4443 §2.4(e),
/// except Packet Too Big, which may answer multicast); `NoSpace`.
pub fn build_error(
    orig: &[u8],
    msg_type: u8,
    code: u8,
    rest: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize> {
    let orig = Ipv6Packet::new_checked(orig)?;
    if orig.dst_addr().is_multicast() && msg_type != TYPE_PACKET_TOO_BIG {
        return Err(Error::Unsupported);
    }
    if orig.next_header() == IpProtocol::ICMPV6 {
        if let Some(&t) = orig.payload().first() {
            if t < 128 {
                return Err(Error::Unsupported);
            }
        }
    }
    let orig_bytes = orig.into_inner();
    let quote_len = orig_bytes
        .len()
        .min(IPV6_MIN_MTU - Ipv6Packet::<&[u8]>::HEADER_LEN - field::PAYLOAD);
    let quote_len = quote_len.min(Ipv6Packet::new_unchecked(orig_bytes).total_len());
    let icmp_len = field::PAYLOAD + quote_len;
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: icmp_len,
        hop_limit: DEFAULT_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let total = repr.header_len() + icmp_len;
    let out = out.get_mut(..total).ok_or(Error::NoSpace)?;
    repr.emit(out)?;
    let (_, icmp_buf) = out.split_at_mut(repr.header_len());
    let mut icmp = Icmpv6Packet::new_unchecked(icmp_buf);
    icmp.set_msg_type(msg_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.payload_mut()
        .copy_from_slice(orig_bytes.get(..quote_len).ok_or(Error::Truncated)?);
    icmp.fill_checksum(&src, &dst);
    Ok(total)
}

/// Builds a Packet Too Big message advertising `mtu` about `orig`; see
/// [`build_error`].
pub fn build_packet_too_big(
    orig: &[u8],
    mtu: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize> {
    build_error(orig, TYPE_PACKET_TOO_BIG, 0, mtu, src, dst, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::hex;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn echo_request() -> Vec<u8> {
        let mut v = hex("6000 0000 000c 3a40");
        v.extend_from_slice(&a("2001:db8::1").octets());
        v.extend_from_slice(&a("2001:db8::100").octets());
        v.extend_from_slice(&hex("8000 0000 abcd 0007 70696e67"));
        let (src, dst) = (a("2001:db8::1"), a("2001:db8::100"));
        Icmpv6Packet::new_unchecked(&mut v[40..]).fill_checksum(&src, &dst);
        v
    }

    #[test]
    fn echo_fields_and_checksum() {
        let v = echo_request();
        let icmp = Icmpv6Packet::new_checked(&v[40..]).unwrap();
        assert_eq!(icmp.msg_type(), TYPE_ECHO_REQUEST);
        assert_eq!(icmp.echo_ident(), 0xabcd);
        assert_eq!(icmp.echo_seq(), 7);
        assert_eq!(icmp.payload(), b"ping");
        assert!(!icmp.is_error());
        // Independent computation over pseudo header bytes.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&a("2001:db8::1").octets());
        pseudo.extend_from_slice(&a("2001:db8::100").octets());
        pseudo.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 58]);
        pseudo.extend_from_slice(&hex("8000 0000 abcd 0007 70696e67"));
        assert_eq!(icmp.checksum(), checksum::checksum(&pseudo));
        assert!(icmp.verify_checksum(&a("2001:db8::1"), &a("2001:db8::100")));
    }

    #[test]
    fn echo_reply_in_place() {
        let mut v = echo_request();
        assert_eq!(ipv6_echo_reply_in_place(&mut v), Ok(52));
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.src_addr(), a("2001:db8::100"));
        assert_eq!(p.dst_addr(), a("2001:db8::1"));
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), TYPE_ECHO_REPLY);
        assert!(icmp.verify_checksum(&p.src_addr(), &p.dst_addr()));
        let mut expected = echo_request();
        expected[8..24].copy_from_slice(&a("2001:db8::100").octets());
        expected[24..40].copy_from_slice(&a("2001:db8::1").octets());
        expected[40] = 129;
        Icmpv6Packet::new_unchecked(&mut expected[40..])
            .fill_checksum(&a("2001:db8::100"), &a("2001:db8::1"));
        assert_eq!(v, expected);
        assert_eq!(ipv6_echo_reply_in_place(&mut v), Err(Error::Unsupported));
        let mut bad = echo_request();
        bad[51] ^= 1;
        assert_eq!(ipv6_echo_reply_in_place(&mut bad), Err(Error::BadChecksum));
    }

    #[test]
    fn neighbor_solicitation_view() {
        // NS for 2001:db8::100 with source link-layer option 02:..:01.
        let mut icmp = hex("8700 0000 0000 0000");
        icmp.extend_from_slice(&a("2001:db8::100").octets());
        icmp.extend_from_slice(&hex("0101 020000000001"));
        let (src, dst) = (a("2001:db8::1"), a("ff02::1:ff00:100"));
        let mut p = Icmpv6Packet::new_checked(&mut icmp[..]).unwrap();
        p.fill_checksum(&src, &dst);
        assert!(p.verify_checksum(&src, &dst));
        assert!(p.is_neighbor_message());
        assert_eq!(p.target_addr(), Some(a("2001:db8::100")));
        assert_eq!(p.source_link_addr(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(p.target_link_addr(), None);
        // Truncated NS.
        assert_eq!(
            Icmpv6Packet::new_checked(&icmp[..20]).unwrap_err(),
            Error::Truncated
        );
        // Zero-length option: malformed, no infinite loop.
        let mut bad = icmp.clone();
        bad[25] = 0;
        assert_eq!(
            Icmpv6Packet::new_checked(&bad[..])
                .unwrap()
                .source_link_addr(),
            None
        );
        // Non-NDP type has no target.
        let echo = hex("8000 0000 0000 0000");
        assert_eq!(
            Icmpv6Packet::new_checked(&echo[..]).unwrap().target_addr(),
            None
        );
    }

    #[test]
    fn neighbor_advert_exact() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x64]);
        let (src, dst) = (a("2001:db8::100"), a("2001:db8::1"));
        let mut out = [0u8; 80];
        let flags = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
        let n = build_neighbor_advert(mac, src, flags, src, dst, &mut out).unwrap();
        assert_eq!(n, 72);
        let mut expected = hex("6000 0000 0020 3aff");
        expected.extend_from_slice(&src.octets());
        expected.extend_from_slice(&dst.octets());
        expected.extend_from_slice(&hex("8800 0000 6000 0000"));
        expected.extend_from_slice(&src.octets());
        expected.extend_from_slice(&hex("0201 020000000064"));
        Icmpv6Packet::new_unchecked(&mut expected[40..]).fill_checksum(&src, &dst);
        assert_eq!(&out[..n], &expected[..]);
        let icmp = Icmpv6Packet::new_checked(&out[40..n]).unwrap();
        assert_eq!(icmp.na_flags(), flags);
        assert_eq!(icmp.target_link_addr(), Some(mac));
        assert_eq!(
            build_neighbor_advert(mac, src, flags, src, dst, &mut out[..71]),
            Err(Error::NoSpace)
        );
    }

    #[test]
    fn packet_too_big() {
        // A 1500-byte TCP packet (payload_len 1460) quoted up to 1280 total.
        let mut orig = hex("6000 0000 05b4 0640");
        orig.extend_from_slice(&a("2001:db8::1").octets());
        orig.extend_from_slice(&a("2001:db8::100").octets());
        orig.resize(1500, 0x5a);
        let (us, them) = (a("2001:db8::100"), a("2001:db8::1"));
        let mut out = vec![0u8; 2000];
        let n = build_packet_too_big(&orig, 1480, us, them, &mut out).unwrap();
        assert_eq!(n, IPV6_MIN_MTU);
        let p = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(p.payload_len() as usize, 1280 - 40);
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), TYPE_PACKET_TOO_BIG);
        assert_eq!(icmp.mtu(), 1480);
        assert!(icmp.is_error());
        assert_eq!(icmp.payload(), &orig[..1280 - 48]);
        assert!(icmp.verify_checksum(&us, &them));
        // Short original: quoted whole (bounded by its payload length).
        let mut small = orig[..60].to_vec();
        small[4..6].copy_from_slice(&20u16.to_be_bytes());
        let n = build_packet_too_big(&small, 1280, us, them, &mut out).unwrap();
        assert_eq!(n, 40 + 8 + 60);
        // Not about an ICMPv6 error.
        let mut err = orig[..48].to_vec();
        err[4..6].copy_from_slice(&8u16.to_be_bytes());
        err[6] = 58;
        err[40] = 1;
        assert_eq!(
            build_packet_too_big(&err, 1280, us, them, &mut out),
            Err(Error::Unsupported)
        );
        assert_eq!(
            build_packet_too_big(&orig, 1280, us, them, &mut out[..100]),
            Err(Error::NoSpace)
        );
    }

    #[test]
    fn nd_addresses_and_solicitation_builder() {
        // RFC 4291 §2.7.1 example shape; RFC 2464 §7 mapping.
        let t = a("2001:2::1:abcd:ef01");
        assert_eq!(solicited_node(&t), a("ff02::1:ffcd:ef01"));
        assert!(is_solicited_node(&solicited_node(&t)));
        assert!(!is_solicited_node(&ALL_NODES));
        assert_eq!(
            multicast_mac(&a("ff02::1:ffcd:ef01")),
            MacAddr([0x33, 0x33, 0xff, 0xcd, 0xef, 0x01])
        );
        assert_eq!(multicast_mac(&ALL_NODES), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        // EUI-64 as Linux forms it (the U/L bit flipped).
        assert_eq!(
            link_local_from_mac(MacAddr([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30])),
            a("fe80::5eff:fe10:2030")
        );
        assert_eq!(
            link_local_from_mac(MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
            a("fe80::5054:ff:fe12:3456")
        );
        assert!(ndp_options_valid(&[]));
        assert!(ndp_options_valid(&hex("0101 020000000001")));
        assert!(!ndp_options_valid(&hex("0100 020000000001")));
        assert!(!ndp_options_valid(&hex("0102 020000000001")));
        assert!(!ndp_options_valid(&[1]));

        let us = MacAddr([2, 0, 0, 0, 0, 1]);
        let (src, target) = (a("2001:2::1"), a("2001:2::2"));
        let mut out = [0u8; 80];
        let n = build_neighbor_solicit(us, target, src, solicited_node(&target), &mut out).unwrap();
        assert_eq!(n, 40 + 32);
        let mut want = hex("6000 0000 0020 3aff");
        want.extend_from_slice(&src.octets());
        want.extend_from_slice(&a("ff02::1:ff00:2").octets());
        want.extend_from_slice(&hex("8700 0000 0000 0000"));
        want.extend_from_slice(&target.octets());
        want.extend_from_slice(&hex("0101 020000000001"));
        let dst = a("ff02::1:ff00:2");
        Icmpv6Packet::new_unchecked(&mut want[40..]).fill_checksum(&src, &dst);
        assert_eq!(&out[..n], &want[..]);
        let icmp = Icmpv6Packet::new_checked(&out[40..n]).unwrap();
        assert!(icmp.verify_checksum(&src, &dst));
        // A DAD probe carries no source link-layer option.
        let n = build_neighbor_solicit(us, target, Ipv6Addr::UNSPECIFIED, dst, &mut out).unwrap();
        assert_eq!(n, 40 + 24);
        assert_eq!(
            build_neighbor_solicit(us, target, src, dst, &mut out[..71]),
            Err(Error::NoSpace)
        );
    }
}
