//! The IPv6 frames of a burst ([`super::CoreLb::process_burst`]).
//!
//! What: the frames of a burst that are not IPv4 are classified as IPv6
//! in the burst's first pass, their connections looked up together
//! ([`ConnTable::peek_group`]) as IPv4's are, and taken back in the same
//! order in the second pass (every frame that is not IPv4 adds one entry
//! and takes one, so the passes cannot get out of step).
//!
//! Why this shape: an IPv6 packet's info is 176 bytes. It is written field
//! by field into a fixed slot ([`fwd6::classify6_into`]) and used where it
//! lies, never built aside and copied; the slots, tuples and lookups are
//! fixed arrays of [`BURST`] in one allocation kept by the core, so an
//! IPv4 burst pays nothing for them and an IPv6 one no per-packet
//! bookkeeping beyond two counters.
//!
//! Failure modes: more than [`BURST`] entries cannot happen (bursts are
//! chunked by [`BURST`]); an entry past the end is classified again on its
//! own by the caller, so a mistake costs speed, never a wrong verdict.

use std::net::Ipv6Addr;

use super::tcp_udp_tuple;
use crate::lb::conn::{ConnId, ConnTable6, Direction, Endpoint, Tuple, PEEK_GROUP};
use crate::lb::fwd::{FwdDrop, PacketInfo, PROTO_TCP, PROTO_UDP};
use crate::lb::fwd6;
use crate::lb::types::Protocol;
use crate::wire::ethernet::{l3_offset, EtherType};
use crate::wire::Error as WireError;

use super::BURST;

/// What the first pass found in a frame that is not IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class6 {
    /// A valid IPv6 packet: its info is in the entry's slot.
    Ipv6,
    /// Not IPv6 either: not for a service.
    NotIpv6,
    /// A malformed IPv6 packet (or frame), with the reason.
    Drop(FwdDrop),
}

/// An empty slot (overwritten by every classification).
const EMPTY_INFO: PacketInfo<Ipv6Addr> = fwd6::EMPTY_INFO6;

/// A burst's connection lookup of one packet.
type Lookup = Option<(ConnId, Direction)>;

/// No tuple (not TCP/UDP).
const NO_TUPLE: u8 = u8::MAX;

// `look_up` takes a whole burst's tuples in one `peek_group`.
const _: () = assert!(BURST <= PEEK_GROUP);

/// See the module docs. Empty outside `process_burst`.
pub(super) struct Burst6 {
    /// Entries classified.
    n: usize,
    /// The next entry the second pass takes.
    next: usize,
    /// Tuples to look up.
    nt: usize,
    class: [Class6; BURST],
    infos: [PacketInfo<Ipv6Addr>; BURST],
    /// Per entry: its tuple's index in `tuples`, or [`NO_TUPLE`].
    tuple_of: [u8; BURST],
    tuples: [Tuple<u128>; BURST],
    found: [Lookup; BURST],
}

impl Burst6 {
    pub(super) fn new() -> Box<Burst6> {
        Box::new(Burst6 {
            n: 0,
            next: 0,
            nt: 0,
            class: [Class6::NotIpv6; BURST],
            infos: [EMPTY_INFO; BURST],
            tuple_of: [NO_TUPLE; BURST],
            tuples: [Tuple {
                proto: Protocol::Tcp,
                src: Endpoint::default(),
                dst: Endpoint::default(),
            }; BURST],
            found: [None; BURST],
        })
    }

    /// First pass: classify a frame that is not IPv4 into the next entry.
    #[inline]
    pub(super) fn classify(&mut self, frame: &[u8]) {
        let k = self.n;
        let (Some(class), Some(info)) = (self.class.get_mut(k), self.infos.get_mut(k)) else {
            return;
        };
        self.n = k + 1;
        *class = match l3_offset(frame) {
            Ok((l3, EtherType::IPV6)) => match fwd6::classify6_into(frame, l3, info) {
                Ok(()) => Class6::Ipv6,
                Err(d) => Class6::Drop(d),
            },
            Err(WireError::Truncated) => Class6::Drop(FwdDrop::TruncatedL2),
            Ok(_) | Err(_) => Class6::NotIpv6,
        };
        let mut of = NO_TUPLE;
        if *class == Class6::Ipv6 && matches!(info.proto, PROTO_TCP | PROTO_UDP) {
            if let Some(t) = self.tuples.get_mut(self.nt) {
                *t = tcp_udp_tuple(info.proto, (info.src, info.sport), (info.dst, info.dport));
                of = self.nt as u8;
                self.nt += 1;
            }
        }
        if let Some(o) = self.tuple_of.get_mut(k) {
            *o = of;
        }
    }

    /// Look up the entries' connections together.
    // (a call of its own: inlined into `process_burst`, the lookup pipeline
    // competed for registers with the burst loop around it and spilled in
    // every stage, ~10 instructions per IPv6 packet; the call costs a
    // burst a few)
    #[inline(never)]
    pub(super) fn look_up(&mut self, conns: &ConnTable6) {
        let nt = self.nt.min(BURST);
        if nt > 0 {
            // one group: a burst fits (the `const _` above checks it)
            conns.peek_group(&self.tuples[..nt], &mut self.found[..nt]);
        }
    }

    /// Whether the second pass has an entry to take.
    #[inline]
    pub(super) fn has_next(&self) -> bool {
        self.next < self.n
    }

    /// Second pass: the next entry, its class, info and connection lookup
    /// (the info stays in place: no copy). `None` past the end.
    #[inline]
    pub(super) fn take_next(&mut self) -> Option<(Class6, &PacketInfo<Ipv6Addr>, Lookup)> {
        let k = self.next;
        let (class, info, of) = (
            *self.class.get(k)?,
            self.infos.get(k)?,
            *self.tuple_of.get(k)?,
        );
        if k >= self.n {
            return None;
        }
        self.next = k + 1;
        let pre = self.found.get(usize::from(of)).copied().flatten();
        Some((class, info, pre))
    }

    /// Empty (end of a burst).
    #[inline]
    pub(super) fn clear(&mut self) {
        self.n = 0;
        self.next = 0;
        self.nt = 0;
    }
}
