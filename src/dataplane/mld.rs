//! MLD for the director's solicited-node groups (the host side of RFC 3810).
//!
//! What: every port with IPv6 (an IPv6 address besides its link-local
//! one, or an IPv6 VIP) listens to the solicited-node multicast group
//! (ff02::1:ffXX:XXXX) of each IPv6 address it answers neighbor
//! solicitations for: its own addresses (the link-local one included) and
//! its IPv6 VIPs. The data plane reports those groups with MLDv2:
//! - unsolicited State Change Reports when groups appear (at start, an
//!   address or VIP added, a followed VIP becoming active: CHANGE_TO_EXCLUDE
//!   with no sources, i.e. join) or go (CHANGE_TO_INCLUDE with no sources,
//!   i.e. leave), sent by worker 0 alone (one report per change on the
//!   link, not one per worker) and sent again once [`RETRANSMIT_MS`] later
//!   (Robustness Variable 2, RFC 3810 §6.1; changes made meanwhile are
//!   merged into the repeat);
//! - Current State Reports answering queries, by whichever worker receives
//!   the query: a general query gets MODE_IS_EXCLUDE records for every
//!   group of the port (split into reports of at most
//!   [`mld::MAX_RECORDS_1500`] records), a group-specific query one record
//!   if the port is in that group (else nothing), a
//!   group-and-source-specific query MODE_IS_INCLUDE with the sources asked
//!   about (our state is EXCLUDE({}), §6.4.2). An MLDv1 query (24 bytes) is
//!   answered with MLDv1 reports, one per group, sent to the group.
//!
//! Reports leave from the port's link-local address, hop limit 1, with a
//! Router Alert option (RFC 3810 §5), to ff02::16 (MLDv2) or the group
//! (MLDv1); queries are taken only when they pass §5.1.14's checks
//! (link-local source, hop limit 1, Router Alert, checksum) and carry the
//! group's Ethernet address, else dropped as `bad_mld`.
//!
//! Why: a switch that snoops MLD forwards a group's multicast only to the
//! ports that reported it. A director that never reports its
//! solicited-node groups never hears the neighbor solicitations for its
//! addresses and VIPs once the switch has learned the group elsewhere (or
//! prunes unknown groups): clients and routers cannot resolve the VIP.
//!
//! Where: queries are recognised in [`super::local`] (Hop-by-Hop header,
//! ICMPv6 type 130, to a multicast group) and answered by the worker that
//! received them; the group lists are rebuilt by every worker when it
//! adopts a configuration. On a port with a kernel twin the kernel owns
//! the director's addresses and reports their groups itself (queries are
//! copied up to it, [`super::exception`]); vsd reports only the VIPs' groups
//! there.
//!
//! Failure modes: no mbuf for a report: counted (`no_mbuf`), the group is
//! reported again at the next query (routers query every 125 s by
//! default). Reports are sent at once instead of after a random delay up to
//! the query's Maximum Response Delay (0 is a valid choice of that delay;
//! one director is not a crowd of listeners to spread out). There is no
//! MLDv1 compatibility mode timer (§8.2.1): unsolicited reports are always
//! MLDv2, queries are answered in their own version, so an MLDv1-only
//! snooping switch learns the groups at its next query.

use std::net::{IpAddr, Ipv6Addr};

use super::counters::{DropReason, Event, WorkerCounters};
use super::local::{LocalVerdict, PortAddrs};
use crate::wire::icmpv6;
use crate::wire::mld::{self, Query, Record};
use crate::wire::{EtherType, EthernetFrame, MacAddr};

/// When a State Change Report is sent again (within RFC 3810's
/// Unsolicited Report Interval of 1 s).
pub const RETRANSMIT_MS: u64 = 500;
/// How often a report held while the port's link is down is tried again.
pub const LINK_RETRY_MS: u64 = 100;

/// The largest frame a report takes: Ethernet and a 1500-byte packet.
const FRAME_MAX: usize = 14 + 1500;

/// The solicited-node groups port `addrs` listens to, sorted: its VIPs',
/// and its own addresses' unless a kernel twin (`twin`) reports those.
/// None on a port without IPv6 (no IPv6 address but the link-local one, no
/// IPv6 VIP): an IPv4-only port sends no MLD.
pub fn groups_of(addrs: &PortAddrs, twin: bool) -> Vec<Ipv6Addr> {
    let ll = IpAddr::V6(addrs.link_local());
    let ipv6 = addrs
        .addrs
        .iter()
        .map(|(a, _)| a)
        .chain(&addrs.vips)
        .any(|a| a.is_ipv6() && *a != ll);
    if !ipv6 {
        return Vec::new();
    }
    let own = addrs.addrs.iter().map(|(a, _)| *a).filter(|_| !twin);
    let mut groups: Vec<Ipv6Addr> = own
        .chain(addrs.vips.iter().copied())
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(icmpv6::solicited_node(&a)),
            IpAddr::V4(_) => None,
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// A State Change Report waiting to be sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Repeat {
    due_ms: u64,
    joined: Vec<Ipv6Addr>,
    left: Vec<Ipv6Addr>,
    /// Not sent even once yet: the link was down (a tap writes nothing
    /// while its interface is down); sent when it is up, then repeated.
    unsent: bool,
}

/// One port's groups and its pending repeat.
#[derive(Debug, Clone, Default)]
struct PortGroups {
    groups: Vec<Ipv6Addr>,
    repeat: Option<Repeat>,
}

/// What a worker knows of its ports' groups (see the module docs).
#[derive(Debug, Default)]
pub struct MldGroups {
    ports: Vec<PortGroups>,
}

/// Groups that joined and left.
pub type Change = (Vec<Ipv6Addr>, Vec<Ipv6Addr>);

impl MldGroups {
    /// Port `p`'s groups.
    pub fn groups(&self, p: usize) -> &[Ipv6Addr] {
        self.ports.get(p).map_or(&[], |g| &g.groups)
    }

    /// Take up port `p`'s groups (sorted, as [`groups_of`]); returns
    /// those that joined and those that left.
    pub fn update(&mut self, p: usize, groups: Vec<Ipv6Addr>) -> Change {
        if self.ports.len() <= p {
            self.ports.resize_with(p + 1, PortGroups::default);
        }
        let old = &self.ports[p].groups;
        let joined: Vec<Ipv6Addr> = groups
            .iter()
            .filter(|g| old.binary_search(g).is_err())
            .copied()
            .collect();
        let left: Vec<Ipv6Addr> = old
            .iter()
            .filter(|g| groups.binary_search(g).is_err())
            .copied()
            .collect();
        self.ports[p].groups = groups;
        (joined, left)
    }

    /// Send `change` of port `p` again [`RETRANSMIT_MS`] from `now_ms`,
    /// merged with a repeat already pending (a group that joined then left
    /// is reported as left, and the reverse).
    pub fn schedule_repeat(&mut self, p: usize, change: &Change, now_ms: u64) {
        self.schedule(p, change, now_ms + RETRANSMIT_MS, false);
    }

    /// Hold `change` of port `p`, not sent because the link is down, and
    /// try again [`LINK_RETRY_MS`] from `now_ms`; once sent it is repeated
    /// as any change (the kernel, too, reports when an interface comes up).
    pub fn defer(&mut self, p: usize, change: &Change, now_ms: u64) {
        self.schedule(p, change, now_ms + LINK_RETRY_MS, true);
    }

    fn schedule(&mut self, p: usize, change: &Change, due_ms: u64, unsent: bool) {
        let Some(port) = self.ports.get_mut(p) else {
            return;
        };
        let r = port.repeat.get_or_insert_with(Repeat::default);
        r.due_ms = due_ms;
        r.unsent |= unsent;
        let (joined, left) = change;
        r.joined.retain(|g| !left.contains(g));
        r.left.retain(|g| !joined.contains(g));
        for g in joined {
            if !r.joined.contains(g) {
                r.joined.push(*g);
            }
        }
        for g in left {
            if !r.left.contains(g) {
                r.left.push(*g);
            }
        }
    }

    /// The reports due at `now_ms`, by port (taken: each is sent once),
    /// with whether it was never sent (deferred while the link was down).
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(usize, Change, bool)> {
        let mut due = Vec::new();
        for (p, port) in self.ports.iter_mut().enumerate() {
            if port.repeat.as_ref().is_some_and(|r| r.due_ms <= now_ms) {
                if let Some(r) = port.repeat.take() {
                    due.push((p, (r.joined, r.left), r.unsent));
                }
            }
        }
        due
    }
}

/// Recognise an MLD query in `frame` (IPv6 at `l3`, next header
/// Hop-by-Hop, to a multicast group) for [`super::local`]: `MldQuery` when
/// it passes the checks, a `bad_mld` drop when it does not, `NotLocal`
/// for any other Hop-by-Hop packet (the forwarding path's, as before).
pub fn classify(frame: &[u8], l3: usize, counters: &WorkerCounters) -> LocalVerdict {
    let Some(ip) = frame.get(l3..) else {
        return LocalVerdict::NotLocal;
    };
    // untagged only: the reports go out untagged
    if l3 != 14 || !mld::is_query(ip) {
        return LocalVerdict::NotLocal;
    }
    counters.add(Event::MldQueriesIn, 1);
    let dst_mac = EthernetFrame::new_unchecked(frame).dst_addr();
    let dst = ip.get(24..40).and_then(|d| <[u8; 16]>::try_from(d).ok());
    let group_mac = dst.map(|d| icmpv6::multicast_mac(&Ipv6Addr::from(d)));
    if group_mac != Some(dst_mac) {
        return LocalVerdict::Drop(DropReason::BadMld);
    }
    match mld::parse_query(ip) {
        Ok(Some(_)) => LocalVerdict::MldQuery,
        Ok(None) => LocalVerdict::NotLocal,
        Err(_) => LocalVerdict::Drop(DropReason::BadMld),
    }
}

/// Write an Ethernet header (from `mac` to `dst`'s group address) in front
/// of the IPv6 packet built at `frame[14..]`.
fn ethernet(frame: &mut [u8], mac: MacAddr, dst: &Ipv6Addr) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(icmpv6::multicast_mac(dst));
    eth.set_src_addr(mac);
    eth.set_ethertype(EtherType::IPV6);
}

/// MLDv2 reports of `records` from port (`mac`, link-local `src`), split
/// to fit, each frame passed to `emit`.
fn emit_v2(records: &[Record<'_>], mac: MacAddr, src: Ipv6Addr, emit: &mut impl FnMut(&[u8])) {
    let mut frame = [0u8; FRAME_MAX];
    for chunk in records.chunks(mld::MAX_RECORDS_1500) {
        if let Some(n) = mld::build_report_v2(src, chunk, &mut frame[14..]) {
            ethernet(&mut frame, mac, &mld::ALL_MLDV2_ROUTERS);
            emit(&frame[..14 + n]);
        }
    }
}

/// The reports answering the query in `frame` (IPv6 at 14, passed
/// [`classify`]) for a port in `groups`, each frame passed to `emit`.
pub fn answer(frame: &[u8], groups: &[Ipv6Addr], mac: MacAddr, emit: &mut impl FnMut(&[u8])) {
    let Some(Ok(Some(q))) = frame.get(14..).map(mld::parse_query) else {
        return;
    };
    let src = icmpv6::link_local_from_mac(mac);
    let Query { v1, group, sources } = q;
    let asked: &[Ipv6Addr] = match group {
        None => groups,
        Some(g) => match groups.binary_search(&g) {
            Ok(i) => &groups[i..=i],
            // not ours: no answer
            Err(_) => return,
        },
    };
    if v1 {
        let mut out = [0u8; 14 + 72];
        for g in asked {
            if let Some(n) = mld::build_report_v1(src, *g, &mut out[14..]) {
                ethernet(&mut out, mac, g);
                emit(&out[..14 + n]);
            }
        }
        return;
    }
    let kind = if sources.is_empty() {
        mld::MODE_IS_EXCLUDE
    } else {
        mld::MODE_IS_INCLUDE
    };
    let records: Vec<Record<'_>> = asked
        .iter()
        .map(|&group| Record {
            kind,
            group,
            sources,
        })
        .collect();
    emit_v2(&records, mac, src, emit);
}

/// The State Change Report(s) of `change` from port `mac`, each frame
/// passed to `emit`.
pub fn state_change(change: &Change, mac: MacAddr, emit: &mut impl FnMut(&[u8])) {
    let (joined, left) = change;
    let record = |kind| {
        move |&group: &Ipv6Addr| Record {
            kind,
            group,
            sources: &[],
        }
    };
    let records: Vec<Record<'_>> = joined
        .iter()
        .map(record(mld::CHANGE_TO_EXCLUDE))
        .chain(left.iter().map(record(mld::CHANGE_TO_INCLUDE)))
        .collect();
    emit_v2(&records, mac, icmpv6::link_local_from_mac(mac), emit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{checksum, IpProtocol, PacketBuilder};

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe);
    // (the link-local address from MAC is fe80::ff:fe00:1: its group
    // differs from these)
    const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 5);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0x1, 0x64);

    fn port() -> PortAddrs {
        PortAddrs::new(
            MAC,
            vec![
                (IpAddr::V6(DIP6), 64),
                (IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1)), 24),
            ],
            vec![IpAddr::V6(VIP6)],
            vec![],
        )
    }

    fn query_frame(dst: Ipv6Addr, group: Ipv6Addr, v1: bool) -> Vec<u8> {
        let mut body = vec![mld::TYPE_QUERY, 0, 0, 0, 0x03, 0xe8, 0, 0];
        body.extend_from_slice(&group.octets());
        if !v1 {
            body.extend_from_slice(&[2, 125, 0, 0]);
        }
        let pseudo = checksum::pseudo_header_v6(&ROUTER_LL, &dst, 58, body.len() as u32);
        let sum = !checksum::combine(&[pseudo, checksum::data(&body)]);
        body[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut ext = mld::HOP_BY_HOP_ROUTER_ALERT.to_vec();
        ext.extend_from_slice(&body);
        PacketBuilder::ethernet(ROUTER_MAC, icmpv6::multicast_mac(&dst))
            .ipv6(ROUTER_LL, dst)
            .ttl(1)
            .ip_proto(IpProtocol::HOP_BY_HOP)
            .payload(&ext)
            .build()
    }

    fn collect(f: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        f(&mut |b: &[u8]| out.push(b.to_vec()));
        out
    }

    #[test]
    fn groups_are_the_solicited_node_groups_of_addresses_and_vips() {
        let p = port();
        let ll = icmpv6::link_local_from_mac(MAC);
        let mut want = vec![
            icmpv6::solicited_node(&DIP6),
            icmpv6::solicited_node(&VIP6),
            icmpv6::solicited_node(&ll),
        ];
        want.sort();
        assert_eq!(groups_of(&p, false), want);
        // with a twin the kernel reports its own addresses' groups
        assert_eq!(groups_of(&p, true), vec![icmpv6::solicited_node(&VIP6)]);
        // an IPv4-only port (its link-local address aside) sends no MLD
        let v4 = PortAddrs::new(
            MAC,
            vec![(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1)), 24)],
            vec![IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 100))],
            vec![],
        );
        assert!(groups_of(&v4, false).is_empty());
    }

    #[test]
    fn a_change_held_while_the_link_is_down_comes_back_unsent_until_sent() {
        let mut m = MldGroups::default();
        let a = icmpv6::solicited_node(&DIP6);
        let b = icmpv6::solicited_node(&VIP6);
        let first = m.update(0, vec![a, b]);
        m.defer(0, &first, 1000);
        assert!(m.take_due(1000 + LINK_RETRY_MS - 1).is_empty());
        let due = m.take_due(1000 + LINK_RETRY_MS);
        assert_eq!(due, vec![(0, (vec![a, b], vec![]), true)]);
        // still down: held again, a later leave merged in, still unsent
        m.defer(0, &due[0].1, 1100);
        let left = m.update(0, vec![a]);
        m.defer(0, &left, 1150);
        assert_eq!(
            m.take_due(1150 + LINK_RETRY_MS),
            vec![(0, (vec![a], vec![b]), true)]
        );
        // once sent, its repeat is an ordinary one
        m.schedule_repeat(0, &(vec![a], vec![b]), 2000);
        assert_eq!(
            m.take_due(2000 + RETRANSMIT_MS),
            vec![(0, (vec![a], vec![b]), false)]
        );
    }

    #[test]
    fn changes_are_joins_and_leaves_and_repeats_merge() {
        let mut m = MldGroups::default();
        let a = icmpv6::solicited_node(&DIP6);
        let b = icmpv6::solicited_node(&VIP6);
        let first = m.update(1, vec![a, b]);
        assert_eq!(first, (vec![a, b], vec![]));
        assert_eq!(m.groups(1), &[a, b]);
        assert_eq!(m.groups(0), &[] as &[Ipv6Addr]);
        m.schedule_repeat(1, &first, 1000);
        assert_eq!(m.update(1, vec![a, b]), (vec![], vec![]));
        let second = m.update(1, vec![a]);
        assert_eq!(second, (vec![], vec![b]));
        m.schedule_repeat(1, &second, 1200);
        assert!(m.take_due(1699).is_empty());
        assert_eq!(m.take_due(1700), vec![(1, (vec![a], vec![b]), false)]);
        assert!(m.take_due(5000).is_empty(), "sent once");
    }

    #[test]
    fn queries_are_answered_for_our_groups_only() {
        let p = port();
        let groups = groups_of(&p, false);
        let counters = WorkerCounters::default();
        let general = query_frame(icmpv6::ALL_NODES, Ipv6Addr::UNSPECIFIED, false);
        assert_eq!(classify(&general, 14, &counters), LocalVerdict::MldQuery);
        let reports = collect(|e| answer(&general, &groups, MAC, &mut |b| e(b)));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(&r[..6], &[0x33, 0x33, 0, 0, 0, 0x16]);
        assert_eq!(r[14 + 7], 1, "hop limit 1");
        assert_eq!(
            &r[14 + 8..14 + 24],
            &icmpv6::link_local_from_mac(MAC).octets()
        );
        assert_eq!(u16::from_be_bytes([r[14 + 48 + 6], r[14 + 48 + 7]]), 3);
        // a group-specific query for a group we are in, and one we are not
        let ours = icmpv6::solicited_node(&VIP6);
        let specific = query_frame(ours, ours, false);
        let reports = collect(|e| answer(&specific, &groups, MAC, &mut |b| e(b)));
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].len(), 14 + 40 + 8 + 8 + 20);
        assert_eq!(&reports[0][14 + 48 + 12..14 + 48 + 28], &ours.octets());
        let other = icmpv6::solicited_node(&Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x99));
        let theirs = query_frame(other, other, false);
        assert!(collect(|e| answer(&theirs, &groups, MAC, &mut |b| e(b))).is_empty());
        // MLDv1: one v1 report per group, to the group
        let v1 = query_frame(icmpv6::ALL_NODES, Ipv6Addr::UNSPECIFIED, true);
        let reports = collect(|e| answer(&v1, &groups, MAC, &mut |b| e(b)));
        assert_eq!(reports.len(), 3);
        for (r, g) in reports.iter().zip(&groups) {
            assert_eq!(&r[14 + 24..14 + 40], &g.octets());
            assert_eq!(r[14 + 48], mld::TYPE_REPORT_V1);
        }
        // the wrong Ethernet address for the group, a bad query
        let mut wrong_mac = general.clone();
        wrong_mac[5] ^= 1;
        assert_eq!(
            classify(&wrong_mac, 14, &counters),
            LocalVerdict::Drop(DropReason::BadMld)
        );
        let mut hop2 = general.clone();
        hop2[14 + 7] = 2;
        assert_eq!(
            classify(&hop2, 14, &counters),
            LocalVerdict::Drop(DropReason::BadMld)
        );
        assert_eq!(
            counters.event(Event::MldQueriesIn),
            3,
            "each query classified"
        );
    }

    #[test]
    fn many_groups_are_split_over_reports() {
        let joined: Vec<Ipv6Addr> = (0..200u16)
            .map(|i| icmpv6::solicited_node(&Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, i)))
            .collect();
        let reports = collect(|e| state_change(&(joined.clone(), vec![]), MAC, &mut |b| e(b)));
        let counts: Vec<u16> = reports
            .iter()
            .map(|r| u16::from_be_bytes([r[14 + 48 + 6], r[14 + 48 + 7]]))
            .collect();
        assert_eq!(counts, vec![72, 72, 56]);
        assert!(reports.iter().all(|r| r.len() <= 1514));
    }
}
