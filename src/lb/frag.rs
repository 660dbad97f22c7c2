//! Forwarding IPv4 fragments: every fragment of a datagram goes where its
//! first fragment went.
//!
//! # What
//!
//! Only the first fragment (offset 0, MF set) carries the TCP/UDP ports, so
//! only it can be matched to a connection. When [`crate::lb::director::CoreLb`]
//! has decided a first fragment, it records the decision in a small per-core
//! [`FragCache`] keyed by (source, destination, protocol, IP ID): either
//! *steer to core N* or *rewrite like this and send to that next hop*. A
//! non-first fragment looks its datagram up there and gets the same
//! treatment:
//!
//! - NAT / FULLNAT: the addresses are rewritten in every fragment (and the
//!   IP header checksum updated incrementally); ports and the L4 checksum
//!   exist only in the first fragment, which the normal path rewrote (an
//!   incremental update is correct on a partial payload);
//! - DR: forwarded as is (TTL − 1) to the real server's MAC;
//! - TUN: each fragment is encapsulated on its own.
//!
//! The cache has [`FRAG_CACHE_SLOTS`] slots (2-way set associative, no
//! allocation after start-up); an entry lives [`FRAG_TIMEOUT_MS`] after its
//! first fragment. A new first fragment with the same key replaces it.
//!
//! # Several cores
//!
//! A non-first fragment has no ports, so the owner of its 5-tuple cannot be
//! computed. The rule, as a NIC's RSS applies it (IPv4 fragments hashed on
//! the 2-tuple): *every* fragment of a datagram, the first included, is
//! delivered to owner(source, destination) — by the NIC (vsd enables
//! `RTE_ETH_RSS_FRAG_IPV4`, which hashes a packet with MF set or a fragment
//! offset on its addresses only), or by
//! [`crate::lb::owner::RssOwner::owner_of_frame`] in software. That core F
//! sees the first fragment before the others (they share a queue, in
//! order). If the connection's core A = owner(5-tuple) differs, F steers
//! the first fragment to A and records *steer to A*; the other fragments
//! follow over the same single-producer ring, so A has recorded its own
//! decision (rewrite, or steer on to the NAT reply owner R) before they
//! arrive. A steered fragment carries [`crate::lb::director::SteerMeta::fragment`]
//! and is handled on arrival as if it came from the wire.
//!
//! # Failure modes
//!
//! - A non-first fragment arriving before its first fragment (reordered),
//!   after the entry expired or was evicted, or belonging to a datagram
//!   whose first fragment was not forwarded (no service, dropped), is
//!   dropped and counted (`non_first_fragment`): vsd does not hold
//!   fragments back (no mbufs parked in the core, nothing to leak or time
//!   out); the sender's retransmission or the application retries.
//! - Two datagrams with the same key within the timeout (IP ID reuse) make
//!   the second's first fragment replace the first's entry.
//! - Overlapping or duplicate fragments are forwarded as they come: the
//!   real server reassembles (vsd never reassembles).

use std::net::Ipv4Addr;

use crate::lb::load::DestId;
use crate::wire::checksum;

/// Cache slots per core.
pub const FRAG_CACHE_SLOTS: usize = 1024;
/// Lifetime of an entry after its first fragment, milliseconds (all
/// fragments of a datagram normally arrive within microseconds; Linux keeps
/// reassembly queues 30 s, but a director only needs to bridge reordering).
pub const FRAG_TIMEOUT_MS: u64 = 2000;

const WAYS: usize = 2;
const SETS: usize = FRAG_CACHE_SLOTS / WAYS;

/// A datagram: (source, destination, protocol, IP ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub id: u16,
}

impl FragKey {
    fn set(&self) -> usize {
        // a cheap mix: the IP ID varies fastest, addresses spread flows
        let h = (self.src.rotate_left(7) ^ self.dst ^ u32::from(self.id).wrapping_mul(0x9e37_79b1))
            .wrapping_mul(0x85eb_ca6b)
            ^ u32::from(self.proto);
        (h >> 16) as usize % SETS
    }
}

/// How the other fragments of a datagram are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragAction {
    /// Hand them to this core (which handled the first fragment).
    Steer(u16),
    /// Rewrite the addresses (unchanged ones stay) and send to `next_hop`;
    /// `tunnel`: encapsulate toward `next_hop` instead (TUN).
    Forward {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        next_hop: Ipv4Addr,
        tunnel: bool,
        /// Counters: the server, its service slot, request direction.
        dest: DestId,
        svc_slot: u32,
        inbound: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FragKey,
    expires_ms: u64,
    action: FragAction,
}

/// The per-core cache (see the module docs).
#[derive(Debug)]
pub struct FragCache {
    slots: Box<[Option<Slot>]>,
}

impl Default for FragCache {
    fn default() -> Self {
        Self::new()
    }
}

impl FragCache {
    /// An empty cache of [`FRAG_CACHE_SLOTS`] slots.
    pub fn new() -> Self {
        FragCache {
            slots: vec![None; FRAG_CACHE_SLOTS].into_boxed_slice(),
        }
    }

    /// Record the decision for a datagram's first fragment.
    pub fn insert(&mut self, key: FragKey, action: FragAction, now_ms: u64) {
        let base = key.set() * WAYS;
        let Some(ways) = self.slots.get_mut(base..base + WAYS) else {
            return;
        };
        let slot = Slot {
            key,
            expires_ms: now_ms + FRAG_TIMEOUT_MS,
            action,
        };
        // same datagram, else a free or expired way, else the oldest
        let pick = ways
            .iter()
            .position(|w| w.is_some_and(|s| s.key == key))
            .or_else(|| {
                ways.iter()
                    .position(|w| w.is_none_or(|s| s.expires_ms <= now_ms))
            })
            .unwrap_or_else(|| {
                let mut oldest = 0;
                for (i, w) in ways.iter().enumerate() {
                    let e = w.map_or(0, |s| s.expires_ms);
                    if e < ways[oldest].map_or(0, |s| s.expires_ms) {
                        oldest = i;
                    }
                }
                oldest
            });
        ways[pick] = Some(slot);
    }

    /// The decision for a non-first fragment's datagram, if still known.
    pub fn lookup(&self, key: &FragKey, now_ms: u64) -> Option<FragAction> {
        let base = key.set() * WAYS;
        self.slots
            .get(base..base + WAYS)?
            .iter()
            .flatten()
            .find(|s| s.key == *key && s.expires_ms > now_ms)
            .map(|s| s.action)
    }
}

/// What the non-first-fragment path needs from a frame that
/// [`crate::lb::fwd::classify`] found to be a valid non-first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Frame offset of the IPv4 header.
    pub l3: usize,
    /// Frame offset just past the IP packet.
    pub end: usize,
    pub key: FragKey,
    pub ttl: u8,
    pub dont_frag: bool,
}

/// The datagram key of an IPv4 frame whose header `classify` validated.
pub fn frag_info(frame: &[u8]) -> Option<FragInfo> {
    let (l3, _) = crate::wire::l3_offset(frame).ok()?;
    let ip = frame.get(l3..l3 + 20)?;
    let rd32 = |at: usize| u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    Some(FragInfo {
        l3,
        end: l3 + total,
        key: FragKey {
            src: rd32(12),
            dst: rd32(16),
            proto: ip[9],
            id: u16::from_be_bytes([ip[4], ip[5]]),
        },
        ttl: ip[8],
        dont_frag: ip[6] & 0x40 != 0,
    })
}

/// Rewrite a fragment's addresses to `src`/`dst` and decrement its TTL,
/// updating the IP header checksum incrementally. Out-of-range offsets
/// (a mismatched `l3`) leave the frame alone.
pub fn rewrite_fragment(frame: &mut [u8], l3: usize, src: Ipv4Addr, dst: Ipv4Addr) {
    let Some(ip) = frame.get_mut(l3..l3 + 20) else {
        return;
    };
    let rd16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let rd32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut csum = rd16(ip, 10);
    let ttl_proto = rd16(ip, 8);
    let dec = ttl_proto.wrapping_sub(0x100);
    csum = checksum::update_u16(csum, ttl_proto, dec);
    ip[8..10].copy_from_slice(&dec.to_be_bytes());
    for (at, new) in [(12, u32::from(src)), (16, u32::from(dst))] {
        let old = rd32(ip, at);
        if old != new {
            csum = checksum::update_u32(csum, old, new);
            ip[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
    }
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::stats::FwdEvent;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: 0xc613_0007,
            dst: 0xc612_0064,
            proto: 17,
            id,
        }
    }

    #[test]
    fn entries_are_found_replaced_and_expire() {
        let mut c = FragCache::new();
        assert_eq!(c.lookup(&key(1), 0), None);
        c.insert(key(1), FragAction::Steer(3), 100);
        assert_eq!(c.lookup(&key(1), 100), Some(FragAction::Steer(3)));
        assert_eq!(c.lookup(&key(2), 100), None);
        c.insert(key(1), FragAction::Steer(4), 200);
        assert_eq!(c.lookup(&key(1), 201), Some(FragAction::Steer(4)));
        assert_eq!(
            c.lookup(&key(1), 200 + FRAG_TIMEOUT_MS - 1),
            Some(FragAction::Steer(4))
        );
        assert_eq!(c.lookup(&key(1), 200 + FRAG_TIMEOUT_MS), None, "expired");
    }

    #[test]
    fn a_full_set_evicts_its_oldest_entry() {
        let mut c = FragCache::new();
        let target = key(7).set();
        let same_set: Vec<FragKey> = (0..u16::MAX)
            .map(key)
            .filter(|k| k.set() == target)
            .take(WAYS + 1)
            .collect();
        for (i, k) in same_set.iter().enumerate() {
            c.insert(*k, FragAction::Steer(i as u16), i as u64);
        }
        assert_eq!(c.lookup(&same_set[0], 10), None, "oldest evicted");
        for (i, k) in same_set.iter().enumerate().skip(1) {
            assert_eq!(c.lookup(k, 10), Some(FragAction::Steer(i as u16)));
        }
    }

    #[test]
    fn rewrite_keeps_the_header_checksum_valid() {
        use crate::wire::{MacAddr, PacketBuilder};
        let mut f =
            PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
                .ipv4(Ipv4Addr::new(198, 19, 0, 7), Ipv4Addr::new(198, 18, 0, 100))
                .ttl(64)
                .ident(0x1234)
                .dont_frag(false)
                .fragment(false, 1480)
                .ip_proto(crate::wire::IpProtocol::UDP)
                .payload(&[0xab; 100])
                .build();
        let info = frag_info(&f).unwrap();
        assert_eq!(info.key.id, 0x1234);
        assert_eq!(info.key.proto, 17);
        assert_eq!(info.end, f.len());
        rewrite_fragment(
            &mut f,
            14,
            Ipv4Addr::new(198, 18, 1, 200),
            Ipv4Addr::new(198, 18, 1, 11),
        );
        let hdr: [u8; 20] = f[14..34].try_into().unwrap();
        assert!(checksum::ipv4_header_ok(&hdr));
        assert_eq!(&f[26..34], &[198, 18, 1, 200, 198, 18, 1, 11]);
        assert_eq!(f[22], 63);
        assert_eq!(&f[34..], &[0xab; 100][..], "payload untouched");
    }

    // ---- through the director: byte buffers in, frames out ----

    use crate::lb::director::{CoreLb, CoreLbConfig, FwdVerdict, SteerMeta};
    use crate::lb::fwd::FwdDrop;
    use crate::lb::load::GlobalLoad;
    use crate::lb::owner::RssOwner;
    use crate::lb::packet::VecPacket;
    use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
    use crate::lb::types::FwdMethod;
    use crate::wire::{IpProtocol, MacAddr, PacketBuilder, UdpPacket};
    use std::net::IpAddr;
    use std::sync::Arc;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
    const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 200);
    const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    fn service(method: FwdMethod) -> ServiceTable {
        let mut t = ServiceTable::new(16);
        let key = ServiceKey::udp(IpAddr::V4(VIP), 9000);
        let mut cfg = ServiceConfig::with_scheduler("rr");
        cfg.local_addresses = vec![IpAddr::V4(LIP)];
        t.add_service(key, cfg).unwrap();
        let port = if matches!(method, FwdMethod::Masq | FwdMethod::FullNat) {
            9999
        } else {
            9000
        };
        t.add_dest(&key, RealServerConfig::new(IpAddr::V4(RIP), port, method))
            .unwrap();
        t
    }

    fn core(t: &ServiceTable, core: u16, cores: u16, rss: Option<Arc<RssOwner>>) -> CoreLb {
        let cfg = CoreLbConfig {
            core,
            cores,
            tun_source: DIP,
            conn_capacity: 1024,
            hash_seed: Some(5),
            ..CoreLbConfig::default()
        };
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        CoreLb::new(cfg, t.snapshot(), global, rss, 0).unwrap()
    }

    /// A UDP datagram of `len` payload bytes from `src` to `dst`, cut into
    /// Ethernet frames of at most 1500-byte IP packets.
    fn fragments(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), id: u16, len: usize) -> Vec<Vec<u8>> {
        fragments_of(src, dst, id, len, 1480)
    }

    /// The same, with `chunk` bytes of IP payload per fragment.
    fn fragments_of(
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        id: u16,
        len: usize,
        chunk: usize,
    ) -> Vec<Vec<u8>> {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let whole = PacketBuilder::new()
            .ipv4(src.0, dst.0)
            .udp(src.1, dst.1)
            .payload(&data)
            .build();
        let udp = &whole[20..];
        udp.chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let more = (i + 1) * chunk < udp.len();
                PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
                    .ipv4(src.0, dst.0)
                    .ttl(64)
                    .ident(id)
                    .dont_frag(false)
                    .fragment(more, (i * chunk) as u16)
                    .ip_proto(IpProtocol::UDP)
                    .payload(part)
                    .build()
            })
            .collect()
    }

    /// Reassemble the IP payloads of `frames` (untagged, in order) and check
    /// each header, the addresses, and the UDP checksum of the whole.
    fn reassemble(frames: &[Vec<u8>], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut udp = Vec::new();
        for f in frames {
            let hdr: [u8; 20] = f[14..34].try_into().unwrap();
            assert!(checksum::ipv4_header_ok(&hdr), "IP header checksum");
            assert_eq!(&f[26..30], &src.octets(), "source");
            assert_eq!(&f[30..34], &dst.octets(), "destination");
            assert_eq!(f[22], 63, "TTL - 1");
            let off = usize::from(u16::from_be_bytes([f[20], f[21]]) & 0x1fff) * 8;
            assert_eq!(off, udp.len(), "in order, no gap");
            udp.extend_from_slice(&f[34..]);
        }
        let p = UdpPacket::new_checked(&udp[..]).unwrap();
        assert!(
            p.verify_checksum_v4(src, dst),
            "UDP checksum of the datagram"
        );
        udp
    }

    fn run_all(lb: &mut CoreLb, frames: &[Vec<u8>], now: u64) -> Vec<(FwdVerdict, Vec<u8>)> {
        frames
            .iter()
            .map(|f| {
                let mut p = VecPacket::new(f);
                let v = lb.process(&mut p, None, now);
                (v, p.to_vec())
            })
            .collect()
    }

    #[test]
    fn nat_rewrites_every_fragment_and_the_reply_too() {
        let t = service(FwdMethod::Masq);
        let mut lb = core(&t, 0, 1, None);
        let req = fragments((CIP, 40000), (VIP, 9000), 0x77, 3000);
        assert_eq!(req.len(), 3);
        let out = run_all(&mut lb, &req, 10);
        for (v, _) in &out {
            assert_eq!(
                *v,
                FwdVerdict::Forward {
                    next_hop: IpAddr::V4(RIP)
                }
            );
        }
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        let udp = reassemble(&frames, CIP, RIP);
        assert_eq!(
            u16::from_be_bytes([udp[2], udp[3]]),
            9999,
            "port in the first only"
        );
        // the server's answer, fragmented too, goes back from the VIP
        let reply = fragments((RIP, 9999), (CIP, 40000), 0x99, 3000);
        let out = run_all(&mut lb, &reply, 20);
        for (v, _) in &out {
            assert_eq!(
                *v,
                FwdVerdict::Forward {
                    next_hop: IpAddr::V4(CIP)
                }
            );
        }
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        let udp = reassemble(&frames, VIP, CIP);
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 9000);
        let s = crate::lb::stats::StatsTable::sum(&[&**lb.stats()]);
        assert_eq!(s.event(FwdEvent::FragmentForwarded), 4);
    }

    #[test]
    fn fullnat_rewrites_both_addresses_in_every_fragment() {
        let t = service(FwdMethod::FullNat);
        let mut lb = core(&t, 0, 1, None);
        let req = fragments((CIP, 40000), (VIP, 9000), 0x42, 3000);
        let out = run_all(&mut lb, &req, 10);
        assert!(out.iter().all(|(v, _)| *v
            == FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP)
            }));
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        let udp = reassemble(&frames, LIP, RIP);
        let lport = u16::from_be_bytes([udp[0], udp[1]]);
        let reply = fragments((RIP, 9999), (LIP, lport), 0x43, 2000);
        let out = run_all(&mut lb, &reply, 20);
        assert!(out.iter().all(|(v, _)| *v
            == FwdVerdict::Forward {
                next_hop: IpAddr::V4(CIP)
            }));
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        let udp = reassemble(&frames, VIP, CIP);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 40000);
    }

    #[test]
    fn dr_forwards_and_tun_encapsulates_each_fragment() {
        let t = service(FwdMethod::Route);
        let mut lb = core(&t, 0, 1, None);
        let req = fragments((CIP, 40000), (VIP, 9000), 7, 3000);
        let out = run_all(&mut lb, &req, 10);
        assert!(out.iter().all(|(v, _)| *v
            == FwdVerdict::Forward {
                next_hop: IpAddr::V4(RIP)
            }));
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        reassemble(&frames, CIP, VIP);

        // TUN adds 20 bytes and vsd does not fragment: fragments that
        // leave room for the outer header
        let t = service(FwdMethod::Tunnel);
        let mut lb = core(&t, 0, 1, None);
        let req = fragments_of((CIP, 40000), (VIP, 9000), 8, 3000, 1400);
        let out = run_all(&mut lb, &req, 10);
        for (v, f) in &out {
            assert_eq!(
                *v,
                FwdVerdict::Forward {
                    next_hop: IpAddr::V4(RIP)
                }
            );
            assert_eq!(f[23], 4, "IPIP");
            assert_eq!(&f[26..34], &[198, 18, 1, 1, 198, 18, 1, 11]);
        }
        let inner: Vec<Vec<u8>> = out
            .iter()
            .map(|(_, f)| {
                let mut g = f[..14].to_vec();
                g.extend_from_slice(&f[34..]);
                g
            })
            .collect();
        reassemble(&inner, CIP, VIP);
    }

    #[test]
    fn fragments_without_their_first_are_dropped_and_counted() {
        let t = service(FwdMethod::Masq);
        let mut lb = core(&t, 0, 1, None);
        let req = fragments((CIP, 40000), (VIP, 9000), 0x55, 3000);
        // reordered: the last arrives before the first
        let mut p = VecPacket::new(&req[2]);
        assert_eq!(
            lb.process(&mut p, None, 0),
            FwdVerdict::Drop(FwdDrop::NonFirstFragment)
        );
        // then in order: forwarded
        let out = run_all(&mut lb, &req[..2], 1);
        assert!(out
            .iter()
            .all(|(v, _)| matches!(v, FwdVerdict::Forward { .. })));
        // the entry expires
        let mut p = VecPacket::new(&req[1]);
        assert_eq!(
            lb.process(&mut p, None, 1 + FRAG_TIMEOUT_MS),
            FwdVerdict::Drop(FwdDrop::NonFirstFragment)
        );
        // a datagram not for a service
        let other = fragments((CIP, 40000), (VIP, 9001), 0x56, 3000);
        let out = run_all(&mut lb, &other, 2);
        assert_eq!(out[0].0, FwdVerdict::NotService);
        assert_eq!(out[1].0, FwdVerdict::Drop(FwdDrop::NonFirstFragment));
        let s = crate::lb::stats::StatsTable::sum(&[&**lb.stats()]);
        assert_eq!(s.drop_count(FwdDrop::NonFirstFragment), 4);
    }

    /// Every fragment arrives on owner(src, dst), as the ownership rule and
    /// NIC RSS deliver them; follow the cores' steering until each fragment
    /// is forwarded. Returns the frames and the cores that forwarded them.
    fn on_cores(
        lbs: &mut [CoreLb],
        rss: &RssOwner,
        frames: &[Vec<u8>],
        now: u64,
    ) -> Vec<(u16, FwdVerdict, Vec<u8>)> {
        let mut done = Vec::new();
        for f in frames {
            let mut c = rss.owner_of_frame(f).unwrap();
            let mut meta = None;
            let mut p = VecPacket::new(f);
            for _hop in 0..4 {
                match lbs[usize::from(c)].process(&mut p, meta, now) {
                    FwdVerdict::Steer { core, meta: m } => {
                        assert_ne!(core, c, "never steered to itself");
                        c = core;
                        meta = Some(m);
                    }
                    v => {
                        done.push((c, v, p.to_vec()));
                        break;
                    }
                }
            }
        }
        done
    }

    #[test]
    fn several_cores_forward_every_fragment_on_the_connection_core() {
        for method in [FwdMethod::Masq, FwdMethod::FullNat] {
            for cores in [2u16, 4] {
                let t = service(method);
                let rss = Arc::new(RssOwner::round_robin(cores, 128));
                let mut lbs: Vec<CoreLb> = (0..cores)
                    .map(|c| core(&t, c, cores, Some(rss.clone())))
                    .collect();
                let mut seen_steered = false;
                for cport in 40000..40016u16 {
                    let req = fragments((CIP, cport), (VIP, 9000), cport, 3000);
                    let out = on_cores(&mut lbs, &rss, &req, 5);
                    assert_eq!(out.len(), 3, "{method:?} {cores}: every fragment");
                    let core0 = out[0].0;
                    seen_steered |= core0 != rss.owner_of_frame(&req[0]).unwrap();
                    for (c, v, _) in &out {
                        assert_eq!(*c, core0, "{method:?} {cores}: one core");
                        assert_eq!(
                            *v,
                            FwdVerdict::Forward {
                                next_hop: IpAddr::V4(RIP)
                            }
                        );
                    }
                    let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, _, f)| f).collect();
                    let src = if method == FwdMethod::FullNat {
                        LIP
                    } else {
                        CIP
                    };
                    let udp = reassemble(&frames, src, RIP);
                    // and the fragmented reply finds the connection too
                    let lport = u16::from_be_bytes([udp[0], udp[1]]);
                    let reply = fragments((RIP, 9999), (src, lport), cport ^ 0x5555, 2500);
                    let back = on_cores(&mut lbs, &rss, &reply, 6);
                    assert_eq!(back.len(), 2);
                    for (_, v, _) in &back {
                        assert_eq!(
                            *v,
                            FwdVerdict::Forward {
                                next_hop: IpAddr::V4(CIP)
                            },
                            "{method:?}"
                        );
                    }
                    let frames: Vec<Vec<u8>> = back.into_iter().map(|(_, _, f)| f).collect();
                    reassemble(&frames, VIP, CIP);
                }
                assert!(seen_steered, "{method:?} {cores}: the steering path ran");
            }
        }
        let _ = SteerMeta::fragment().is_fragment();
    }
}
