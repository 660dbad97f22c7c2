//! Multicast Listener Discovery messages: queries parsed and checked,
//! reports built (MLDv1, RFC 2710; MLDv2, RFC 3810).
//!
//! Every MLD message is an ICMPv6 message behind a Hop-by-Hop Options
//! header carrying a Router Alert option (value 0: MLD), from a link-local
//! address, with hop limit 1 (RFC 3810 §5). The functions here work on the
//! IPv6 packet (from its fixed header) and know nothing of Ethernet.

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv6::Ipv6Packet;
use super::IpProtocol;

/// Multicast Listener Query (both versions).
pub const TYPE_QUERY: u8 = 130;
/// MLDv1 Multicast Listener Report.
pub const TYPE_REPORT_V1: u8 = 131;
/// MLDv1 Multicast Listener Done.
pub const TYPE_DONE_V1: u8 = 132;
/// MLDv2 Multicast Listener Report.
pub const TYPE_REPORT_V2: u8 = 143;

/// Where MLDv2 reports go: all MLDv2-capable routers (ff02::16).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// MLDv2 multicast address record types (RFC 3810 §5.2.12): current
/// state (answers to queries) and state changes (unsolicited).
pub const MODE_IS_INCLUDE: u8 = 1;
pub const MODE_IS_EXCLUDE: u8 = 2;
pub const CHANGE_TO_INCLUDE: u8 = 3;
pub const CHANGE_TO_EXCLUDE: u8 = 4;

/// The Hop-by-Hop Options header every MLD message carries: next header
/// ICMPv6, length 0 (8 bytes), Router Alert (type 5, length 2, value 0 =
/// MLD, RFC 2711) and a 2-byte PadN.
pub const HOP_BY_HOP_ROUTER_ALERT: [u8; 8] = [58, 0, 5, 2, 0, 0, 1, 0];

/// Hop limit of every MLD message.
pub const HOP_LIMIT: u8 = 1;

const IPV6_HEADER: usize = 40;
const HBH_LEN: usize = HOP_BY_HOP_ROUTER_ALERT.len();
/// ICMPv6 header of an MLDv2 report (type, code, checksum, reserved,
/// number of records).
const REPORT_V2_HEADER: usize = 8;
/// A record without sources: type, aux length, number of sources, group.
const RECORD_HEADER: usize = 20;
/// MLDv1 messages and the MLDv1 query: 24 bytes.
const V1_LEN: usize = 24;
/// The shortest MLDv2 query (no sources).
const V2_QUERY_MIN: usize = 28;

/// Records of one MLDv2 report that fit a 1500-byte IPv6 MTU, without
/// sources (RFC 3810 §5.2.15: a report never exceeds the link MTU).
pub const MAX_RECORDS_1500: usize =
    (1500 - IPV6_HEADER - HBH_LEN - REPORT_V2_HEADER) / RECORD_HEADER;

/// Why a query is not taken (RFC 3810 §5.1.14, §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Shorter than its fields, or 25-27 bytes (neither version).
    BadLength,
    /// The ICMPv6 checksum does not verify.
    BadChecksum,
    /// Not from a link-local address.
    NotLinkLocal,
    /// Hop limit other than 1.
    BadHopLimit,
    /// No Router Alert option in the Hop-by-Hop header.
    NoRouterAlert,
    /// The multicast address field is neither unspecified (general query)
    /// nor a multicast group.
    BadGroup,
}

/// A query that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// MLDv1 (24 bytes) or MLDv2.
    pub v1: bool,
    /// `None`: a general query; else the group asked about.
    pub group: Option<Ipv6Addr>,
    /// MLDv2 group-and-source-specific: the sources asked about (16 bytes
    /// each); empty otherwise.
    pub sources: &'a [u8],
}

/// The first Hop-by-Hop header's bytes and what follows, if `ip` (an IPv6
/// packet from its fixed header) has one.
fn hop_by_hop(ip: &[u8]) -> Option<(&[u8], &[u8])> {
    let pkt = Ipv6Packet::new_checked(ip).ok()?;
    if pkt.next_header() != IpProtocol::HOP_BY_HOP {
        return None;
    }
    let payload = ip.get(IPV6_HEADER..IPV6_HEADER + usize::from(pkt.payload_len()))?;
    let len = (usize::from(*payload.get(1)?) + 1) * 8;
    Some((payload.get(..len)?, payload.get(len..)?))
}

/// Whether a Hop-by-Hop header's options hold a Router Alert for MLD.
fn has_mld_router_alert(hbh: &[u8]) -> bool {
    let mut opts = hbh.get(2..).unwrap_or_default();
    while let Some(&kind) = opts.first() {
        if kind == 0 {
            // Pad1
            opts = &opts[1..];
            continue;
        }
        let Some(&len) = opts.get(1) else {
            return false;
        };
        let Some(data) = opts.get(2..2 + usize::from(len)) else {
            return false;
        };
        if kind == 5 && data == [0, 0] {
            return true;
        }
        opts = &opts[2 + usize::from(len)..];
    }
    false
}

/// Whether `ip` (an IPv6 packet from its fixed header) is an MLD query:
/// a Hop-by-Hop header then ICMPv6 type 130.
pub fn is_query(ip: &[u8]) -> bool {
    matches!(hop_by_hop(ip), Some((hbh, icmp)) if hbh[0] == IpProtocol::ICMPV6.0 && icmp.first() == Some(&TYPE_QUERY))
}

/// The query in `ip` (an IPv6 packet from its fixed header): `Ok(None)`
/// when it is no MLD query, else checked as RFC 3810 §5.1.14 asks (a
/// link-local source, hop limit 1, a Router Alert, a valid checksum) and
/// by its length (§8.1: 24 bytes MLDv1, 28 and more MLDv2 with its
/// sources; anything else is ignored).
pub fn parse_query(ip: &[u8]) -> Result<Option<Query<'_>>, QueryError> {
    let Some((hbh, icmp)) = hop_by_hop(ip) else {
        return Ok(None);
    };
    if hbh[0] != IpProtocol::ICMPV6.0 || icmp.first() != Some(&TYPE_QUERY) {
        return Ok(None);
    }
    let pkt = Ipv6Packet::new_unchecked(ip);
    let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
    if src.segments()[0] & 0xffc0 != 0xfe80 {
        return Err(QueryError::NotLinkLocal);
    }
    if pkt.hop_limit() != HOP_LIMIT {
        return Err(QueryError::BadHopLimit);
    }
    if !has_mld_router_alert(hbh) {
        return Err(QueryError::NoRouterAlert);
    }
    let v1 = icmp.len() == V1_LEN;
    if !v1 && icmp.len() < V2_QUERY_MIN {
        return Err(QueryError::BadLength);
    }
    let pseudo = checksum::pseudo_header_v6(&src, &dst, IpProtocol::ICMPV6.0, icmp.len() as u32);
    if checksum::combine(&[pseudo, checksum::data(icmp)]) != 0xffff {
        return Err(QueryError::BadChecksum);
    }
    let mut g = [0u8; 16];
    g.copy_from_slice(&icmp[8..24]);
    let group = Ipv6Addr::from(g);
    let group = if group.is_unspecified() {
        None
    } else if group.is_multicast() {
        Some(group)
    } else {
        return Err(QueryError::BadGroup);
    };
    let sources = if v1 {
        &[][..]
    } else {
        let n = usize::from(u16::from_be_bytes([icmp[26], icmp[27]]));
        let Some(s) = icmp.get(V2_QUERY_MIN..V2_QUERY_MIN + 16 * n) else {
            return Err(QueryError::BadLength);
        };
        if n != 0 && group.is_none() {
            // sources without a group: no such query
            return Err(QueryError::BadGroup);
        }
        s
    };
    Ok(Some(Query { v1, group, sources }))
}

/// One multicast address record of an MLDv2 report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// [`MODE_IS_INCLUDE`], [`MODE_IS_EXCLUDE`], [`CHANGE_TO_INCLUDE`] or
    /// [`CHANGE_TO_EXCLUDE`].
    pub kind: u8,
    pub group: Ipv6Addr,
    /// Source addresses, 16 bytes each.
    pub sources: &'a [u8],
}

impl Record<'_> {
    fn len(&self) -> usize {
        RECORD_HEADER + self.sources.len() / 16 * 16
    }
}

/// The IPv6 header, Hop-by-Hop header and ICMPv6 checksum of an MLD
/// message whose ICMPv6 part (`icmp_len` bytes) is already at
/// `out[48..]`. Returns the packet length.
fn finish(out: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, icmp_len: usize) -> Option<usize> {
    let total = IPV6_HEADER + HBH_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    let payload_len = u16::try_from(HBH_LEN + icmp_len).ok()?;
    out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    out[6] = IpProtocol::HOP_BY_HOP.0;
    out[7] = HOP_LIMIT;
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
    out[40..48].copy_from_slice(&HOP_BY_HOP_ROUTER_ALERT);
    let icmp = &mut out[48..];
    icmp[2..4].fill(0);
    let pseudo = checksum::pseudo_header_v6(&src, &dst, IpProtocol::ICMPV6.0, icmp_len as u32);
    let sum = !checksum::combine(&[pseudo, checksum::data(icmp)]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(total)
}

/// An MLDv2 report from `src` to ff02::16 with `records`, written into
/// `out` from its IPv6 header on. `None` when `out` is too small or the
/// records more than a report holds (the caller splits them).
pub fn build_report_v2(src: Ipv6Addr, records: &[Record<'_>], out: &mut [u8]) -> Option<usize> {
    let n = u16::try_from(records.len()).ok()?;
    let icmp_len = REPORT_V2_HEADER + records.iter().map(Record::len).sum::<usize>();
    let icmp = out.get_mut(IPV6_HEADER + HBH_LEN..IPV6_HEADER + HBH_LEN + icmp_len)?;
    icmp[..REPORT_V2_HEADER].copy_from_slice(&[TYPE_REPORT_V2, 0, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&n.to_be_bytes());
    let mut at = REPORT_V2_HEADER;
    for r in records {
        let nsrc = r.sources.len() / 16;
        icmp[at] = r.kind;
        icmp[at + 1] = 0;
        icmp[at + 2..at + 4].copy_from_slice(&u16::try_from(nsrc).ok()?.to_be_bytes());
        icmp[at + 4..at + 20].copy_from_slice(&r.group.octets());
        icmp[at + 20..at + 20 + nsrc * 16].copy_from_slice(&r.sources[..nsrc * 16]);
        at += r.len();
    }
    finish(out, src, ALL_MLDV2_ROUTERS, icmp_len)
}

/// An MLDv1 report of `group` from `src`, to the group itself (RFC 2710
/// §3, §4), written into `out` from its IPv6 header on.
pub fn build_report_v1(src: Ipv6Addr, group: Ipv6Addr, out: &mut [u8]) -> Option<usize> {
    let icmp = out.get_mut(IPV6_HEADER + HBH_LEN..IPV6_HEADER + HBH_LEN + V1_LEN)?;
    icmp.fill(0);
    icmp[0] = TYPE_REPORT_V1;
    icmp[8..24].copy_from_slice(&group.octets());
    finish(out, src, group, V1_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PacketBuilder;

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe);
    const GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);

    /// A query as a router sends it: HBH with Router Alert, ICMPv6 130.
    fn query(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        group: Ipv6Addr,
        v2: Option<&[Ipv6Addr]>,
    ) -> Vec<u8> {
        let mut body = vec![TYPE_QUERY, 0, 0, 0, 0x27, 0x10, 0, 0];
        body.extend_from_slice(&group.octets());
        if let Some(sources) = v2 {
            body.extend_from_slice(&[2, 125]);
            body.extend_from_slice(&(sources.len() as u16).to_be_bytes());
            for s in sources {
                body.extend_from_slice(&s.octets());
            }
        }
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 58, body.len() as u32);
        let sum = !checksum::combine(&[pseudo, checksum::data(&body)]);
        body[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut ext = HOP_BY_HOP_ROUTER_ALERT.to_vec();
        ext.extend_from_slice(&body);
        PacketBuilder::new()
            .ipv6(src, dst)
            .ttl(hop)
            .ip_proto(IpProtocol::HOP_BY_HOP)
            .payload(&ext)
            .build()
    }

    #[test]
    fn queries_of_both_versions_are_parsed() {
        let all = crate::wire::icmpv6::ALL_NODES;
        let general = query(ROUTER, all, 1, Ipv6Addr::UNSPECIFIED, Some(&[]));
        assert!(is_query(&general));
        assert_eq!(
            parse_query(&general),
            Ok(Some(Query {
                v1: false,
                group: None,
                sources: &[]
            }))
        );
        let v1 = query(ROUTER, GROUP, 1, GROUP, None);
        assert_eq!(
            parse_query(&v1),
            Ok(Some(Query {
                v1: true,
                group: Some(GROUP),
                sources: &[]
            }))
        );
        let src = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 9);
        let gss = query(ROUTER, GROUP, 1, GROUP, Some(&[src]));
        let q = parse_query(&gss).unwrap().unwrap();
        assert_eq!(
            (q.v1, q.group, q.sources),
            (false, Some(GROUP), &src.octets()[..])
        );
    }

    #[test]
    fn bad_queries_are_refused_with_their_reason() {
        let all = crate::wire::icmpv6::ALL_NODES;
        let global = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xfe);
        let q = |src, hop| query(src, all, hop, Ipv6Addr::UNSPECIFIED, Some(&[]));
        assert_eq!(parse_query(&q(global, 1)), Err(QueryError::NotLinkLocal));
        assert_eq!(parse_query(&q(ROUTER, 2)), Err(QueryError::BadHopLimit));
        let mut no_ra = q(ROUTER, 1);
        no_ra[42] = 1; // the Router Alert becomes a PadN
        assert_eq!(parse_query(&no_ra), Err(QueryError::NoRouterAlert));
        let mut sum = q(ROUTER, 1);
        sum[48 + 5] ^= 1;
        assert_eq!(parse_query(&sum), Err(QueryError::BadChecksum));
        let mut short = q(ROUTER, 1);
        short.truncate(48 + 26);
        short[5] = 8 + 26;
        assert_eq!(parse_query(&short), Err(QueryError::BadLength));
        let unicast_group = query(ROUTER, all, 1, LL, Some(&[]));
        assert_eq!(parse_query(&unicast_group), Err(QueryError::BadGroup));
        // more sources claimed than present
        let mut cut = query(ROUTER, GROUP, 1, GROUP, Some(&[]));
        cut[48 + 27] = 1;
        let (src, dst) = (ROUTER, GROUP);
        cut[50..52].fill(0);
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 58, 28);
        let sum = !checksum::combine(&[pseudo, checksum::data(&cut[48..])]);
        cut[50..52].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_query(&cut), Err(QueryError::BadLength));
        // no MLD at all: TCP, ICMPv6 behind no Hop-by-Hop header
        let tcp = PacketBuilder::new().ipv6(ROUTER, all).tcp(1, 2, 2).build();
        assert_eq!(parse_query(&tcp), Ok(None));
        assert!(!is_query(&tcp));
    }

    #[test]
    fn a_v2_report_is_exact() {
        let mut out = [0u8; 200];
        let recs = [
            Record {
                kind: MODE_IS_EXCLUDE,
                group: GROUP,
                sources: &[],
            },
            Record {
                kind: CHANGE_TO_INCLUDE,
                group: ALL_MLDV2_ROUTERS,
                sources: &[],
            },
        ];
        let n = build_report_v2(LL, &recs, &mut out).unwrap();
        assert_eq!(n, 40 + 8 + 8 + 40);
        let ip = &out[..n];
        assert_eq!(
            &ip[..8],
            &[0x60, 0, 0, 0, 0, 56, 0, 1],
            "payload 56, HBH, hop limit 1"
        );
        assert_eq!(&ip[8..24], &LL.octets());
        assert_eq!(&ip[24..40], &ALL_MLDV2_ROUTERS.octets());
        assert_eq!(&ip[40..48], &[58, 0, 5, 2, 0, 0, 1, 0]);
        assert_eq!(&ip[48..50], &[143, 0]);
        assert_eq!(&ip[52..56], &[0, 0, 0, 2]);
        assert_eq!(&ip[56..60], &[2, 0, 0, 0]);
        assert_eq!(&ip[60..76], &GROUP.octets());
        assert_eq!(&ip[76..80], &[3, 0, 0, 0]);
        let pseudo = checksum::pseudo_header_v6(&LL, &ALL_MLDV2_ROUTERS, 58, 48);
        assert_eq!(
            checksum::combine(&[pseudo, checksum::data(&ip[48..])]),
            0xffff
        );
        // too many records for the buffer
        assert_eq!(build_report_v2(LL, &[recs[0]; 10], &mut out), None);
    }

    #[test]
    fn a_v1_report_goes_to_its_group() {
        let mut out = [0u8; 80];
        let n = build_report_v1(LL, GROUP, &mut out).unwrap();
        assert_eq!(n, 40 + 8 + 24);
        assert_eq!(&out[24..40], &GROUP.octets());
        assert_eq!(out[48], TYPE_REPORT_V1);
        assert_eq!(&out[56..72], &GROUP.octets());
        let pseudo = checksum::pseudo_header_v6(&LL, &GROUP, 58, 24);
        assert_eq!(
            checksum::combine(&[pseudo, checksum::data(&out[48..72])]),
            0xffff
        );
    }
}
