//! TCP handshake options (MSS, window scale, SACK permitted, timestamps)
//! and in-place construction of a bare IPv4 TCP segment, for the SYN proxy
//! ([`crate::lb::synproxy`]): it answers SYNs itself and turns the client's
//! ACK into the SYN to the real server, so it writes headers with options
//! rather than patching fields.

use super::checksum;
use std::net::Ipv4Addr;

/// Option kind: window scale (RFC 7323).
pub const OPT_WSCALE: u8 = 3;
/// Option kind: SACK permitted (RFC 2018).
pub const OPT_SACK_PERM: u8 = 4;
/// Option kind: SACK blocks.
pub const OPT_SACK: u8 = 5;
/// Option kind: timestamps.
pub const OPT_TIMESTAMP: u8 = 8;
/// Largest window shift (RFC 7323: larger values are taken as 14).
pub const MAX_WSCALE: u8 = 14;

/// What a SYN or SYN-ACK announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window shift (capped at 14).
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_perm: bool,
    /// Timestamps: (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

/// Call `f(kind, value)` for every well-formed option of an option list,
/// stopping at the end-of-list option or at the first malformed one.
pub fn for_each_option(options: &[u8], mut f: impl FnMut(u8, &[u8], usize)) {
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        match kind {
            0 => return,
            1 => at += 1,
            k => {
                let Some(&l) = options.get(at + 1) else {
                    return;
                };
                let l = l as usize;
                let Some(value) = options.get(at + 2..at + l.max(2)) else {
                    return;
                };
                if l < 2 {
                    return;
                }
                f(k, value, at + 2);
                at += l;
            }
        }
    }
}

impl SynOptions {
    /// Parse a handshake segment's options.
    pub fn parse(options: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        for_each_option(options, |kind, v, _| match (kind, v.len()) {
            (2, 2) => o.mss = Some(u16::from_be_bytes([v[0], v[1]])),
            (OPT_WSCALE, 1) => o.wscale = Some(v[0].min(MAX_WSCALE)),
            (OPT_SACK_PERM, 0) => o.sack_perm = true,
            (OPT_TIMESTAMP, 8) => {
                o.timestamp = Some((
                    u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                    u32::from_be_bytes([v[4], v[5], v[6], v[7]]),
                ))
            }
            _ => {}
        });
        o
    }

    /// Options as written into a SYN or SYN-ACK (MSS, SACK permitted,
    /// timestamps, window scale, NOP-padded to 32-bit words, in the order
    /// Linux sends them). Returns the bytes and their length (≤ 20).
    pub fn emit(&self) -> ([u8; 20], usize) {
        let mut b = [0u8; 20];
        let mut n = 0;
        if let Some(mss) = self.mss {
            b[n..n + 4].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
            n += 4;
        }
        match (self.sack_perm, self.timestamp) {
            (true, Some((val, ecr))) => {
                b[n..n + 4].copy_from_slice(&[OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10]);
                b[n + 4..n + 8].copy_from_slice(&val.to_be_bytes());
                b[n + 8..n + 12].copy_from_slice(&ecr.to_be_bytes());
                n += 12;
            }
            (false, Some((val, ecr))) => {
                b[n..n + 4].copy_from_slice(&[1, 1, OPT_TIMESTAMP, 10]);
                b[n + 4..n + 8].copy_from_slice(&val.to_be_bytes());
                b[n + 8..n + 12].copy_from_slice(&ecr.to_be_bytes());
                n += 12;
            }
            (true, None) => {
                b[n..n + 4].copy_from_slice(&[1, 1, OPT_SACK_PERM, 2]);
                n += 4;
            }
            (false, None) => {}
        }
        if let Some(ws) = self.wscale {
            b[n..n + 4].copy_from_slice(&[1, OPT_WSCALE, 3, ws.min(MAX_WSCALE)]);
            n += 4;
        }
        (b, n)
    }
}

/// The header fields of a segment to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub ttl: u8,
    /// Options, a multiple of 4 bytes long (at most 40).
    pub options: &'a [u8],
}

/// Length of the IPv4 + TCP headers `seg` needs.
pub fn headers_len(seg: &Segment<'_>) -> usize {
    20 + 20 + seg.options.len()
}

/// Write an IPv4 header (no options, DF, ID 0) and a TCP header with
/// `seg`'s fields at `buf[0..]`, for a segment carrying the `payload_len`
/// bytes that follow the headers in `buf`; fill both checksums. `buf` must
/// hold the headers and the payload; false (nothing written) otherwise or
/// when the options are not a multiple of 4 up to 40 bytes.
pub fn write_ipv4_tcp(buf: &mut [u8], seg: &Segment<'_>, payload_len: usize) -> bool {
    let opt_len = seg.options.len();
    if !opt_len.is_multiple_of(4) || opt_len > 40 {
        return false;
    }
    let tcp_len = 20 + opt_len + payload_len;
    let total = 20 + tcp_len;
    let Ok(total16) = u16::try_from(total) else {
        return false;
    };
    let Some(b) = buf.get_mut(..total) else {
        return false;
    };
    let ip = &mut b[..20];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, seg.ttl, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&total16.to_be_bytes());
    ip[12..16].copy_from_slice(&seg.src.octets());
    ip[16..20].copy_from_slice(&seg.dst.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut b[20..];
    tcp[0..2].copy_from_slice(&seg.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&seg.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    tcp[12] = (((20 + opt_len) / 4) as u8) << 4;
    tcp[13] = seg.flags;
    tcp[14..16].copy_from_slice(&seg.window.to_be_bytes());
    tcp[16..20].fill(0);
    tcp[20..20 + opt_len].copy_from_slice(seg.options);
    let pseudo = checksum::pseudo_header_v4(seg.src, seg.dst, 6, tcp_len as u16);
    let c = checksum::finish(checksum::combine(&[pseudo, checksum::data(tcp)]));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpPacket;

    #[test]
    fn options_round_trip_in_linux_order() {
        let o = SynOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_perm: true,
            timestamp: Some((0x0102_0304, 0)),
        };
        let (b, n) = o.emit();
        assert_eq!(
            &b[..n],
            &[2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        assert_eq!(SynOptions::parse(&b[..n]), o);
        let o = SynOptions {
            mss: Some(536),
            sack_perm: true,
            ..SynOptions::default()
        };
        let (b, n) = o.emit();
        assert_eq!(&b[..n], &[2, 4, 2, 0x18, 1, 1, 4, 2]);
        assert_eq!(SynOptions::parse(&b[..n]), o);
        assert_eq!(SynOptions::default().emit().1, 0);
    }

    #[test]
    fn malformed_options_stop_the_walk() {
        assert_eq!(
            SynOptions::parse(&[3, 0, 2, 4, 5, 0xb4]),
            SynOptions::default()
        );
        assert_eq!(SynOptions::parse(&[2, 4, 5]), SynOptions::default());
        let o = SynOptions::parse(&[1, 3, 3, 20, 0, 2, 4, 5, 0xb4]);
        assert_eq!(o.wscale, Some(14), "capped");
        assert_eq!(o.mss, None, "after end of list");
    }

    #[test]
    fn written_segment_has_valid_checksums() {
        let mut buf = [0u8; 80];
        buf[44..48].copy_from_slice(b"data");
        let (opts, n) = SynOptions {
            mss: Some(1460),
            ..SynOptions::default()
        }
        .emit();
        let seg = Segment {
            src: Ipv4Addr::new(198, 18, 0, 100),
            dst: Ipv4Addr::new(198, 19, 0, 7),
            sport: 80,
            dport: 40000,
            seq: 7,
            ack: 9,
            flags: 0x12,
            window: 65535,
            ttl: 64,
            options: &opts[..n],
        };
        assert_eq!(headers_len(&seg), 44);
        assert!(!write_ipv4_tcp(&mut buf[..40], &seg, 4), "too short");
        assert!(write_ipv4_tcp(&mut buf, &seg, 4));
        let hdr: [u8; 20] = buf[..20].try_into().unwrap();
        assert!(checksum::ipv4_header_ok(&hdr));
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 48);
        let t = TcpPacket::new_checked(&buf[20..48]).unwrap();
        assert!(t.verify_checksum_v4(seg.src, seg.dst));
        assert_eq!(
            (t.seq_number(), t.ack_number(), t.mss()),
            (7, 9, Some(1460))
        );
        assert_eq!(t.payload(), b"data");
        let bad = Segment {
            options: &[1, 1, 1],
            ..seg
        };
        assert!(!write_ipv4_tcp(&mut buf, &bad, 0));
    }
}
