//! TCP header view (RFC 9293) with checksum helpers and the incremental
//! updates NAT and FULLNAT rewrites need (ports, addresses, sequence
//! numbers, MSS clamping).
//!
//! TCP has no length field: the view's buffer must be exactly the TCP
//! segment (the IP payload), since the checksum and payload cover all of it.

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Result};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// FIN flag bit.
pub const FIN: u8 = 0x01;
/// SYN flag bit.
pub const SYN: u8 = 0x02;
/// RST flag bit.
pub const RST: u8 = 0x04;
/// PSH flag bit.
pub const PSH: u8 = 0x08;
/// ACK flag bit.
pub const ACK: u8 = 0x10;
/// URG flag bit.
pub const URG: u8 = 0x20;
/// ECE flag bit.
pub const ECE: u8 = 0x40;
/// CWR flag bit.
pub const CWR: u8 = 0x80;

/// Option kind: end of option list.
pub const OPT_END: u8 = 0;
/// Option kind: no-operation (padding).
pub const OPT_NOP: u8 = 1;
/// Option kind: maximum segment size.
pub const OPT_MSS: u8 = 2;

/// The 8 TCP flag bits (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// True if every bit of `mask` is set.
    #[inline]
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// True if any bit of `mask` is set.
    #[inline]
    pub const fn intersects(self, mask: u8) -> bool {
        self.0 & mask != 0
    }

    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & FIN != 0
    }

    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & SYN != 0
    }

    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & RST != 0
    }

    /// PSH set.
    #[inline]
    pub const fn psh(self) -> bool {
        self.0 & PSH != 0
    }

    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & ACK != 0
    }

    /// URG set.
    #[inline]
    pub const fn urg(self) -> bool {
        self.0 & URG != 0
    }

    /// ECE set.
    #[inline]
    pub const fn ece(self) -> bool {
        self.0 & ECE != 0
    }

    /// CWR set.
    #[inline]
    pub const fn cwr(self) -> bool {
        self.0 & CWR != 0
    }
}

impl fmt::Display for TcpFlags {
    /// tcpdump's notation: `S` SYN, `F` FIN, `R` RST, `P` PSH, `U` URG,
    /// `E` ECE, `W` CWR, and `.` for ACK, so SYN-ACK is `S.` and FIN-ACK
    /// `F.`; no flags prints `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        for (bit, letter) in [
            (SYN, 'S'),
            (FIN, 'F'),
            (RST, 'R'),
            (PSH, 'P'),
            (URG, 'U'),
            (ECE, 'E'),
            (CWR, 'W'),
            (ACK, '.'),
        ] {
            if self.0 & bit != 0 {
                fmt::Write::write_char(f, letter)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const END: usize = 20;
}

/// A view of a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::END;

    /// Wraps `buffer` without checks; accessors panic under 20 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is under 20 bytes or shorter than the data
    /// offset; `Malformed` if the data offset is under 5 words.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::END {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < field::END {
            return Err(Error::Malformed);
        }
        if header_len > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }

    /// The flag byte.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Options bytes (empty without options or on an unchecked short buffer).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::END..self.header_len())
            .unwrap_or(&[])
    }

    /// Payload: everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Segment length in sequence space: payload plus one each for SYN
    /// and FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        let flags = self.flags();
        self.payload().len() + flags.syn() as usize + flags.fin() as usize
    }

    /// Finds the MSS option value; `None` if absent or the options are
    /// malformed.
    pub fn mss(&self) -> Option<u16> {
        let at = find_option(self.options(), OPT_MSS, 4)?;
        let opts = self.options();
        Some(u16::from_be_bytes([*opts.get(at + 2)?, *opts.get(at + 3)?]))
    }

    fn sum_with(&self, pseudo: u16) -> u16 {
        checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())])
    }

    /// Verifies the checksum with the IPv4 pseudo header.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let len = self.buffer.as_ref().len();
        let Ok(len) = u16::try_from(len) else {
            return false;
        };
        self.sum_with(checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len)) == 0xFFFF
    }

    /// Verifies the checksum with the IPv6 pseudo header.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let len = self.buffer.as_ref().len() as u32;
        self.sum_with(checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, len)) == 0xFFFF
    }
}

/// Returns the offset in `options` of the first option of `kind` whose
/// length byte equals `len`, walking the kind/length list safely.
fn find_option(options: &[u8], kind: u8, len: u8) -> Option<usize> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            OPT_END => return None,
            OPT_NOP => at += 1,
            k => {
                let l = *options.get(at + 1)?;
                if l < 2 || at + l as usize > options.len() {
                    return None;
                }
                if k == kind && l == len {
                    return Some(at);
                }
                at += l as usize;
            }
        }
    }
    None
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number (checksum not updated).
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ, value);
    }

    /// Sets the acknowledgment number (checksum not updated).
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK, value);
    }

    /// Sets the header length in bytes (multiple of 4, 20..=60); keeps the
    /// low reserved/NS bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let buf = self.buffer.as_mut();
        buf[field::DATA_OFF] = (((len / 4) as u8) << 4) | (buf[field::DATA_OFF] & 0x0F);
    }

    /// Sets the flag byte (checksum not updated).
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window (checksum not updated).
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer (checksum not updated).
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        self.buffer.as_mut().get_mut(start..).unwrap_or(&mut [])
    }

    fn store_with(&mut self, pseudo: u16) {
        self.set_checksum(0);
        let value = checksum::finish(self.sum_with(pseudo));
        self.set_checksum(value);
    }

    /// Computes and stores the checksum with the IPv4 pseudo header (the
    /// segment length is the buffer length, truncated to 16 bits).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.buffer.as_ref().len() as u16;
        self.store_with(checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len));
    }

    /// Computes and stores the checksum with the IPv6 pseudo header.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let len = self.buffer.as_ref().len() as u32;
        self.store_with(checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, len));
    }

    /// Rewrites the source port, updating the checksum incrementally.
    #[inline]
    pub fn set_src_port_incremental(&mut self, port: u16) {
        let c = checksum::update_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(c);
    }

    /// Rewrites the destination port, updating the checksum incrementally.
    #[inline]
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        let c = checksum::update_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(c);
    }

    /// Rewrites the sequence number, updating the checksum incrementally.
    #[inline]
    pub fn set_seq_number_incremental(&mut self, value: u32) {
        let c = checksum::update_u32(self.checksum(), self.seq_number(), value);
        self.set_seq_number(value);
        self.set_checksum(c);
    }

    /// Rewrites the acknowledgment number, updating the checksum
    /// incrementally.
    #[inline]
    pub fn set_ack_number_incremental(&mut self, value: u32) {
        let c = checksum::update_u32(self.checksum(), self.ack_number(), value);
        self.set_ack_number(value);
        self.set_checksum(c);
    }

    /// Updates the checksum for an IP address change in the pseudo header
    /// (`old`/`new`: 4 or 16 address bytes). The IP header is the caller's.
    #[inline]
    pub fn update_checksum_for_addr_change(&mut self, old: &[u8], new: &[u8]) {
        let c = checksum::update_bytes(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Lowers the MSS option to `max_mss` if it is larger, updating the
    /// checksum incrementally. Returns the MSS now in the option, or `None`
    /// if there is no (well-formed) MSS option.
    pub fn clamp_mss_incremental(&mut self, max_mss: u16) -> Option<u16> {
        let at = field::END + find_option(self.options(), OPT_MSS, 4)?;
        let old = read_u16(self.buffer.as_ref(), at + 2);
        if old <= max_mss {
            return Some(old);
        }
        // The option may start at an odd offset; update the checksum with
        // the 16-bit words that actually hold the value.
        let word_start = (at + 2) & !1;
        let old_words = read_u32_at(self.buffer.as_ref(), word_start);
        write_u16(self.buffer.as_mut(), at + 2, max_mss);
        let new_words = read_u32_at(self.buffer.as_ref(), word_start);
        let c = checksum::update_u32(self.checksum(), old_words, new_words);
        self.set_checksum(c);
        Some(max_mss)
    }
}

/// Reads up to 4 bytes at `offset` as a big-endian word, zero-filling past
/// the end (used for an MSS value that ends at the header boundary).
fn read_u32_at(buf: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = buf.get(offset + i).copied().unwrap_or(0);
    }
    u32::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, XorShift};

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    /// SYN 54321 -> 80, seq 1, MSS 1460, SACK-permitted, no payload.
    fn syn() -> Vec<u8> {
        hex("d431 0050 00000001 00000000 7002 faf0 0000 0000 020405b4 0101 0402")
    }

    #[test]
    fn fields() {
        let bytes = syn();
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.src_port(), 54321);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.flags(), TcpFlags(SYN));
        assert!(p.flags().syn() && !p.flags().ack());
        assert_eq!(p.window_len(), 0xfaf0);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &hex("020405b4 0101 0402")[..]);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(p.segment_len(), 1);
        assert_eq!(p.mss(), Some(1460));
    }

    #[test]
    fn check_len_rules() {
        let bytes = syn();
        assert_eq!(
            TcpPacket::new_checked(&bytes[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&bytes[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut small_off = bytes.clone();
        small_off[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&small_off[..]).unwrap_err(),
            Error::Malformed
        );
        let mut big_off = bytes.clone();
        big_off[12] = 0xF0;
        assert_eq!(
            TcpPacket::new_checked(&big_off[..]).unwrap_err(),
            Error::Truncated
        );
        let p = TcpPacket::new_unchecked(&big_off[..]);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(p.mss(), None);
    }

    #[test]
    fn flags_display() {
        assert_eq!(TcpFlags(SYN).to_string(), "S");
        assert_eq!(TcpFlags(SYN | ACK).to_string(), "S.");
        assert_eq!(TcpFlags(FIN | ACK).to_string(), "F.");
        assert_eq!(TcpFlags(PSH | ACK).to_string(), "P.");
        assert_eq!(TcpFlags(RST).to_string(), "R");
        assert_eq!(TcpFlags(ACK).to_string(), ".");
        assert_eq!(TcpFlags(SYN | ECE | CWR).to_string(), "SEW");
        assert_eq!(TcpFlags(0).to_string(), "none");
        assert_eq!(format!("{:?}", TcpFlags(SYN | ACK)), "TcpFlags(S.)");
        assert!(TcpFlags(SYN | ACK).contains(SYN | ACK));
        assert!(!TcpFlags(SYN).contains(SYN | ACK));
        assert!(TcpFlags(SYN).intersects(SYN | FIN | RST));
        let all = TcpFlags(0xFF);
        assert!(all.fin() && all.rst() && all.psh() && all.urg() && all.ece() && all.cwr());
    }

    #[test]
    fn checksum_known_value() {
        let mut bytes = syn();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&SRC.octets());
        pseudo.extend_from_slice(&DST.octets());
        pseudo.extend_from_slice(&[0, 6, 0, 28]);
        pseudo.extend_from_slice(&syn());
        assert_eq!(p.checksum(), checksum::checksum(&pseudo));
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(DST, Ipv4Addr::new(198, 18, 0, 2)));
    }

    #[test]
    fn nat_rewrite_exact_bytes() {
        // DNAT: dst 198.18.0.100:80 -> 198.18.1.11:8080.
        let mut bytes = syn();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        let rip = Ipv4Addr::new(198, 18, 1, 11);
        p.update_checksum_for_addr_change(&DST.octets(), &rip.octets());
        p.set_dst_port_incremental(8080);
        let mut expected =
            hex("d431 1f90 00000001 00000000 7002 faf0 0000 0000 020405b4 0101 0402");
        TcpPacket::new_unchecked(&mut expected[..]).fill_checksum_v4(SRC, rip);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn fullnat_rewrite_random_v4_v6() {
        let mut rng = XorShift(2024);
        for i in 0..1000 {
            let payload = rng.below(64);
            let mut bytes = syn();
            bytes[13] = ACK | PSH;
            rng.fill(&mut bytes[0..12]);
            bytes.resize(28 + payload, 0);
            rng.fill(&mut bytes[28..]);
            if i % 2 == 0 {
                let (s, d) = (
                    Ipv4Addr::from(rng.next_u32()),
                    Ipv4Addr::from(rng.next_u32()),
                );
                let (ns, nd) = (
                    Ipv4Addr::from(rng.next_u32()),
                    Ipv4Addr::from(rng.next_u32()),
                );
                let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum_v4(s, d);
                p.update_checksum_for_addr_change(&s.octets(), &ns.octets());
                p.update_checksum_for_addr_change(&d.octets(), &nd.octets());
                p.set_src_port_incremental(rng.next_u16());
                p.set_dst_port_incremental(rng.next_u16());
                p.set_seq_number_incremental(rng.next_u32());
                p.set_ack_number_incremental(rng.next_u32());
                assert!(p.verify_checksum_v4(ns, nd));
                let inc = p.checksum();
                p.fill_checksum_v4(ns, nd);
                assert_eq!(inc, p.checksum());
            } else {
                let mut a = [[0u8; 16]; 4];
                for x in a.iter_mut() {
                    rng.fill(x);
                }
                let [s, d, ns, nd] = a.map(Ipv6Addr::from);
                let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum_v6(&s, &d);
                p.update_checksum_for_addr_change(&s.octets(), &ns.octets());
                p.update_checksum_for_addr_change(&d.octets(), &nd.octets());
                p.set_src_port_incremental(rng.next_u16());
                assert!(p.verify_checksum_v6(&ns, &nd));
                let inc = p.checksum();
                p.fill_checksum_v6(&ns, &nd);
                assert_eq!(inc, p.checksum());
            }
        }
    }

    #[test]
    fn mss_clamp_even_and_odd_offsets() {
        // MSS at an even offset (20).
        let mut bytes = syn();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(p.clamp_mss_incremental(1500), Some(1460));
        assert_eq!(p.clamp_mss_incremental(1440), Some(1440));
        assert_eq!(p.mss(), Some(1440));
        assert!(p.verify_checksum_v4(SRC, DST));
        assert_eq!(&bytes[20..24], &hex("020405a0")[..]);
        // MSS at an odd offset (after three NOPs): the value spans words.
        let mut odd = hex("d431 0050 00000001 00000000 7002 faf0 0000 0000 010101 020405b4 00");
        let mut p = TcpPacket::new_checked(&mut odd[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(p.mss(), Some(1460));
        assert_eq!(p.clamp_mss_incremental(1400), Some(1400));
        assert_eq!(p.mss(), Some(1400));
        assert!(p.verify_checksum_v4(SRC, DST));
        // No MSS option.
        let mut plain = hex("d431 0050 00000001 00000000 5010 faf0 0000 0000");
        let mut p = TcpPacket::new_checked(&mut plain[..]).unwrap();
        assert_eq!(p.clamp_mss_incremental(1400), None);
        // Malformed option length 0 does not loop forever.
        let bad = hex("d431 0050 00000001 00000000 6002 faf0 0000 0000 0300 0000");
        assert_eq!(TcpPacket::new_checked(&bad[..]).unwrap().mss(), None);
    }
}
