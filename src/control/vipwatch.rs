//! VIPs that follow the kernel: which `[[vip]] follow = "IFACE"` addresses
//! are present on their kernel interface, learned from rtnetlink.
//!
//! What: a VIP configured with `follow` is served (ARP answered, ICMP echo,
//! its services forwarded) only while its address is on the named
//! interface in vsd's own network namespace. [`VipWatch`] holds a
//! `NETLINK_ROUTE` socket subscribed to link and IPv4 and IPv6 address
//! events (RTM_NEWLINK/DELLINK, RTM_NEWADDR/DELADDR), dumps links and addresses at
//! start, and keeps [`KernelAddrs`], a model of "which address is on which
//! interface". The daemon's control loop waits on the socket with its other
//! file descriptors, calls [`VipWatch::poll`], and publishes a new
//! configuration snapshot when the set of active VIPs changed; the workers
//! adopt it between bursts (ARP answers, the forwarding filter and
//! gratuitous ARPs follow: [`crate::dataplane::vipfollow`]).
//!
//! Why: this is how keepalived moves a VIP (it adds and deletes the address
//! on its interface, in production the port's kernel twin), so
//! `keepalived --vrrp` drives vsd with no glue, and vsd needs no VRRP code.
//! Only the interface *name* matters here; what kind of interface it is
//! (net_tap twin, dummy in tests) does not.
//!
//! Failure modes:
//! - The socket overruns (ENOBUFS, events lost): everything is dumped
//!   again into a fresh model while the old one stays in force, and the
//!   fresh one replaces it once both dumps are complete (no flap). A dump
//!   interrupted by a change (NLM_F_DUMP_INTR) is redone the same way.
//! - The interface is absent at start or deleted later: its VIPs are
//!   inactive until an interface of that name has the address. A renamed
//!   interface is followed by name: its VIPs go inactive under the old name,
//!   and an interface renamed *to* the name counts from then on.
//! - A dump request refused by the kernel (e.g. EBUSY) is retried on the
//!   next [`VipWatch::tick`]; until a dump completes, the model is what the
//!   events taught, and at start every followed VIP is inactive.
//! - Any other receive error is counted and logged by the caller; the
//!   watcher keeps its last model.
//! - An IPv6 address still in duplicate address detection (tentative) or
//!   that failed it (dadfailed) is not on the interface yet: the kernel
//!   would not use it either. Its RTM_NEWADDR without those flags (DAD
//!   done, or `nodad`) makes it count.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// One configured VIP that follows a kernel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedVip {
    pub address: IpAddr,
    /// Index of the port that announces it.
    pub port: usize,
    /// The kernel interface whose addresses it follows.
    pub iface: String,
}

/// One change the kernel reported (or a dump entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// An interface exists with this index and name (new, renamed, or
    /// changed in another way).
    Link { index: u32, name: String },
    /// The interface with this index is gone, with its addresses.
    LinkGone { index: u32 },
    /// An address (with its prefix length) was added to an interface.
    AddrAdded {
        index: u32,
        addr: IpAddr,
        prefix: u8,
    },
    /// An address was removed.
    AddrRemoved {
        index: u32,
        addr: IpAddr,
        prefix: u8,
    },
}

/// The watcher's model of the kernel: interface names and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelAddrs {
    names: HashMap<u32, String>,
    /// (interface index, address, prefix length): the same address may be
    /// on one interface twice with different prefixes.
    addrs: HashSet<(u32, IpAddr, u8)>,
}

impl KernelAddrs {
    pub fn apply(&mut self, e: &KernelEvent) {
        match e {
            KernelEvent::Link { index, name } => {
                self.names.insert(*index, name.clone());
            }
            KernelEvent::LinkGone { index } => {
                self.names.remove(index);
                self.addrs.retain(|(i, _, _)| i != index);
            }
            KernelEvent::AddrAdded {
                index,
                addr,
                prefix,
            } => {
                self.addrs.insert((*index, *addr, *prefix));
            }
            KernelEvent::AddrRemoved {
                index,
                addr,
                prefix,
            } => {
                self.addrs.remove(&(*index, *addr, *prefix));
            }
        }
    }

    /// Whether the interface named `iface` has `addr`.
    pub fn has(&self, iface: &str, addr: IpAddr) -> bool {
        self.addrs
            .iter()
            .any(|(i, a, _)| *a == addr && self.names.get(i).is_some_and(|n| n == iface))
    }
}

/// Which of `vips` are active under `kernel`, in order.
pub fn active_set(vips: &[FollowedVip], kernel: &KernelAddrs) -> Vec<bool> {
    vips.iter()
        .map(|v| kernel.has(&v.iface, v.address))
        .collect()
}

/// What a netlink message means to the watcher.
fn event_of(msg: &RouteNetlinkMessage) -> Option<KernelEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(l) => {
            let name = link_name(l)?;
            Some(KernelEvent::Link {
                index: l.header.index,
                name,
            })
        }
        RouteNetlinkMessage::DelLink(l) => Some(KernelEvent::LinkGone {
            index: l.header.index,
        }),
        RouteNetlinkMessage::NewAddress(a) if in_dad(a) => {
            let (index, addr, prefix) = address_of(a)?;
            Some(KernelEvent::AddrRemoved {
                index,
                addr,
                prefix,
            })
        }
        RouteNetlinkMessage::NewAddress(a) => {
            let (index, addr, prefix) = address_of(a)?;
            Some(KernelEvent::AddrAdded {
                index,
                addr,
                prefix,
            })
        }
        RouteNetlinkMessage::DelAddress(a) => {
            let (index, addr, prefix) = address_of(a)?;
            Some(KernelEvent::AddrRemoved {
                index,
                addr,
                prefix,
            })
        }
        _ => None,
    }
}

fn link_name(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Whether the address is tentative (in DAD) or failed DAD: IFA_FLAGS
/// when present (it holds all the flags), else the header's 8 bits.
fn in_dad(a: &AddressMessage) -> bool {
    let flags = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Flags(f) => Some(*f),
        _ => None,
    });
    match flags {
        Some(f) => f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed),
        None => a
            .header
            .flags
            .intersects(AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed),
    }
}

/// The interface's own address: IFA_LOCAL (IFA_ADDRESS is the peer on a
/// point-to-point link), else IFA_ADDRESS.
fn address_of(a: &AddressMessage) -> Option<(u32, IpAddr, u8)> {
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some((a.header.index, addr, a.header.prefix_len))
}

/// The two dumps a (re)synchronisation makes, in order: names first, so
/// the addresses that follow land on known interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    Links,
    Addrs,
}

/// Counters of the watcher, for `vsadm --status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Messages that changed or confirmed the model.
    pub events: u64,
    /// Full re-dumps after an overrun or an interrupted dump.
    pub resyncs: u64,
    /// Receive errors other than "nothing to read" and overruns.
    pub errors: u64,
}

/// One netlink message as the synchronisation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Incoming {
    Event(KernelEvent),
    /// End of a dump.
    Done,
    /// An error answer (a refused request).
    Error,
    /// The kernel lost messages.
    Overrun,
    /// Anything else (other message types, ACKs).
    Other,
}

/// The synchronisation with the kernel, apart from the socket: the model
/// in force, the one a re-dump is building, and the dumps to request.
#[derive(Debug, Default)]
struct Sync {
    /// The model in force.
    kernel: KernelAddrs,
    /// The model a (re)synchronisation is building; events apply to both.
    fresh: Option<KernelAddrs>,
    /// Dumps still to request, and the one in flight with its sequence
    /// number and whether the kernel flagged it interrupted.
    todo: Vec<Dump>,
    in_flight: Option<(Dump, u32, bool)>,
    seq: u32,
    stats: WatchStats,
}

impl Sync {
    /// Start building a fresh model from new dumps; the model in force
    /// stays until they are complete.
    fn resync(&mut self) {
        if self.fresh.is_some() || self.in_flight.is_some() || self.stats.events > 0 {
            self.stats.resyncs += 1;
        }
        self.fresh = Some(KernelAddrs::default());
        self.todo = vec![Dump::Links, Dump::Addrs];
        // the answer to a dump in flight may still arrive: with the
        // sequence number moved on, its entries count as plain events
        self.in_flight = None;
    }

    /// The next dump to request, now marked in flight.
    fn next_request(&mut self) -> Option<(Dump, u32)> {
        if self.in_flight.is_some() || self.todo.is_empty() {
            return None;
        }
        let kind = self.todo.remove(0);
        self.seq = self.seq.wrapping_add(1).max(1);
        self.in_flight = Some((kind, self.seq, false));
        Some((kind, self.seq))
    }

    /// The request could not be sent: try again later.
    fn request_failed(&mut self) {
        if let Some((d, _, _)) = self.in_flight.take() {
            self.todo.insert(0, d);
        }
        self.stats.errors += 1;
    }

    fn syncing(&self) -> bool {
        self.fresh.is_some()
    }

    /// Take one message (`seq`, `flags` from its header).
    fn on_message(&mut self, seq: u32, flags: u16, m: Incoming) {
        let ours = matches!(self.in_flight, Some((_, s, _)) if s == seq && seq != 0);
        if ours && flags & NLM_F_DUMP_INTR != 0 {
            if let Some((_, _, intr)) = self.in_flight.as_mut() {
                *intr = true;
            }
        }
        match m {
            Incoming::Event(e) => {
                self.stats.events += 1;
                if let Some(f) = self.fresh.as_mut() {
                    f.apply(&e);
                }
                // an event (not a dump entry of a re-dump) applies to the
                // model in force too
                if !ours || self.fresh.is_none() {
                    self.kernel.apply(&e);
                }
            }
            Incoming::Done if ours => {
                let Some((_, _, interrupted)) = self.in_flight.take() else {
                    return;
                };
                if interrupted {
                    self.resync();
                } else if self.todo.is_empty() {
                    if let Some(f) = self.fresh.take() {
                        self.kernel = f;
                    }
                }
            }
            // refused (e.g. EBUSY while an old dump drains): again later
            Incoming::Error if ours => self.request_failed(),
            Incoming::Overrun => self.resync(),
            _ => {}
        }
    }
}

/// The rtnetlink watcher (control thread only).
pub struct VipWatch {
    socket: Socket,
    vips: Vec<FollowedVip>,
    sync: Sync,
    active: Vec<bool>,
    /// Bumped whenever `active` changes.
    version: u64,
    buf: Vec<u8>,
}

/// Receive buffer: one datagram of a dump is at most a few pages.
const RECV_BUF: usize = 64 * 1024;
/// Socket receive buffer: room for bursts of events between two polls.
const SOCKET_RCVBUF: usize = 1 << 20;

impl VipWatch {
    /// Open the socket, subscribe, and request the first dumps (answered
    /// through [`VipWatch::poll`]).
    pub fn open(vips: Vec<FollowedVip>) -> std::io::Result<VipWatch> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // best effort: the default buffer works, only overruns sooner
        let _ = socket.set_rx_buf_sz(SOCKET_RCVBUF);
        socket.add_membership(libc::RTNLGRP_LINK)?;
        socket.add_membership(libc::RTNLGRP_IPV4_IFADDR)?;
        socket.add_membership(libc::RTNLGRP_IPV6_IFADDR)?;
        socket.set_non_blocking(true)?;
        let active = vec![false; vips.len()];
        let mut w = VipWatch {
            socket,
            vips,
            sync: Sync::default(),
            active,
            version: 0,
            buf: vec![0; RECV_BUF],
        };
        w.sync.resync();
        w.request_next()?;
        Ok(w)
    }

    /// Open and wait (at most `limit`) for the first dumps, so the workers
    /// start with the right VIPs.
    pub fn open_synced(vips: Vec<FollowedVip>, limit: Duration) -> std::io::Result<VipWatch> {
        let mut w = VipWatch::open(vips)?;
        let end = Instant::now() + limit;
        while w.syncing() && Instant::now() < end {
            w.poll();
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(w)
    }

    /// The socket, to wait on with the control thread's other descriptors.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Whether a (re)synchronisation is under way.
    pub fn syncing(&self) -> bool {
        self.sync.syncing()
    }

    /// Followed VIPs and whether each is active.
    pub fn states(&self) -> impl Iterator<Item = (&FollowedVip, bool)> + '_ {
        self.vips.iter().zip(self.active.iter().copied())
    }

    /// Changes each time the active set changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn stats(&self) -> WatchStats {
        self.sync.stats
    }

    /// Periodic duty: request a dump that could not be sent.
    pub fn tick(&mut self) {
        let _ = self.request_next();
    }

    /// Read everything the socket holds. Returns whether the active set
    /// changed.
    pub fn poll(&mut self) -> bool {
        let before = self.version;
        loop {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => break,
                Ok(n) => n.min(self.buf.len()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // events were lost: learn everything again
                    self.sync.resync();
                    let _ = self.request_next();
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.sync.stats.errors += 1;
                    break;
                }
            };
            let data = std::mem::take(&mut self.buf);
            self.handle_datagram(&data[..n]);
            self.buf = data;
            // a finished dump makes room for the next one
            let _ = self.request_next();
        }
        self.recompute();
        self.version != before
    }

    fn handle_datagram(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) else {
                // a message this crate cannot parse: skip it by its length
                let Some(len) = data
                    .get(..4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
                else {
                    return;
                };
                if len < 16 {
                    return;
                }
                data = data.get(align4(len)..).unwrap_or_default();
                continue;
            };
            let len = msg.header.length as usize;
            let (seq, flags) = (msg.header.sequence_number, msg.header.flags);
            let m = match msg.payload {
                NetlinkPayload::InnerMessage(m) => {
                    event_of(&m).map_or(Incoming::Other, Incoming::Event)
                }
                NetlinkPayload::Done(_) => Incoming::Done,
                NetlinkPayload::Error(e) if e.code.is_some() => Incoming::Error,
                NetlinkPayload::Overrun(_) => Incoming::Overrun,
                _ => Incoming::Other,
            };
            self.sync.on_message(seq, flags, m);
            if len == 0 {
                return;
            }
            data = data.get(align4(len)..).unwrap_or_default();
        }
    }

    fn request_next(&mut self) -> std::io::Result<()> {
        let Some((kind, seq)) = self.sync.next_request() else {
            return Ok(());
        };
        let payload = match kind {
            Dump::Links => RouteNetlinkMessage::GetLink(LinkMessage::default()),
            Dump::Addrs => RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        };
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), payload.into());
        packet.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out[..]);
        match self.socket.send(&out, 0) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.sync.request_failed();
                Err(e)
            }
        }
    }

    fn recompute(&mut self) {
        let now = active_set(&self.vips, &self.sync.kernel);
        if now != self.active {
            self.active = now;
            self.version += 1;
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x64);

    fn vips() -> Vec<FollowedVip> {
        vec![
            FollowedVip {
                address: IpAddr::V4(VIP),
                port: 0,
                iface: "vsd-lan0".into(),
            },
            FollowedVip {
                address: IpAddr::V4(VIP2),
                port: 0,
                iface: "vsd-lan1".into(),
            },
        ]
    }

    fn link(index: u32, name: &str) -> KernelEvent {
        KernelEvent::Link {
            index,
            name: name.into(),
        }
    }

    fn add(index: u32, a: Ipv4Addr, prefix: u8) -> KernelEvent {
        KernelEvent::AddrAdded {
            index,
            addr: IpAddr::V4(a),
            prefix,
        }
    }

    fn del(index: u32, a: Ipv4Addr, prefix: u8) -> KernelEvent {
        KernelEvent::AddrRemoved {
            index,
            addr: IpAddr::V4(a),
            prefix,
        }
    }

    fn run(events: &[KernelEvent]) -> Vec<bool> {
        let mut k = KernelAddrs::default();
        for e in events {
            k.apply(e);
        }
        active_set(&vips(), &k)
    }

    #[test]
    fn a_vip_is_active_only_while_its_address_is_on_its_interface() {
        assert_eq!(run(&[]), [false, false], "nothing known: inactive");
        assert_eq!(run(&[link(5, "vsd-lan0")]), [false, false]);
        assert_eq!(run(&[link(5, "vsd-lan0"), add(5, VIP, 32)]), [true, false]);
        assert_eq!(
            run(&[link(5, "vsd-lan0"), add(5, VIP, 32), del(5, VIP, 32)]),
            [false, false]
        );
        // the address on another interface does not count
        assert_eq!(run(&[link(6, "eth0"), add(6, VIP, 32)]), [false, false]);
        // the second VIP follows its own interface
        assert_eq!(
            run(&[link(5, "vsd-lan0"), link(7, "vsd-lan1"), add(7, VIP2, 24)]),
            [false, true]
        );
    }

    #[test]
    fn an_address_seen_before_its_interface_counts_once_the_name_is_known() {
        assert_eq!(run(&[add(5, VIP, 32)]), [false, false]);
        assert_eq!(run(&[add(5, VIP, 32), link(5, "vsd-lan0")]), [true, false]);
    }

    #[test]
    fn the_same_address_twice_stays_until_both_are_gone() {
        let base = [link(5, "vsd-lan0"), add(5, VIP, 32), add(5, VIP, 24)];
        let mut evs = base.to_vec();
        evs.push(del(5, VIP, 24));
        assert_eq!(run(&evs), [true, false]);
        evs.push(del(5, VIP, 32));
        assert_eq!(run(&evs), [false, false]);
    }

    #[test]
    fn renamed_and_deleted_interfaces() {
        let up = [link(5, "vsd-lan0"), add(5, VIP, 32)];
        let mut evs = up.to_vec();
        evs.push(link(5, "old-lan0"));
        assert_eq!(run(&evs), [false, false], "renamed away");
        evs.push(link(5, "vsd-lan0"));
        assert_eq!(run(&evs), [true, false], "renamed back");
        evs.push(KernelEvent::LinkGone { index: 5 });
        assert_eq!(run(&evs), [false, false], "deleted");
        // a new interface of the same name (new index) starts empty
        evs.push(link(9, "vsd-lan0"));
        assert_eq!(run(&evs), [false, false]);
        evs.push(add(9, VIP, 32));
        assert_eq!(run(&evs), [true, false]);
    }

    /// A watcher's synchronisation after its first complete dump with
    /// `vsd-lan0` (index 5) holding the VIP.
    fn synced() -> Sync {
        let mut s = Sync::default();
        s.resync();
        let (d, seq) = s.next_request().unwrap();
        assert_eq!(d, Dump::Links);
        s.on_message(seq, 0, Incoming::Event(link(5, "vsd-lan0")));
        s.on_message(seq, 0, Incoming::Done);
        assert!(s.syncing(), "addresses not dumped yet");
        assert_eq!(active_set(&vips(), &s.kernel), [false, false]);
        let (d, seq) = s.next_request().unwrap();
        assert_eq!(d, Dump::Addrs);
        s.on_message(seq, 0, Incoming::Event(add(5, VIP, 32)));
        s.on_message(seq, 0, Incoming::Done);
        assert!(!s.syncing());
        assert!(s.next_request().is_none());
        assert_eq!(active_set(&vips(), &s.kernel), [true, false]);
        s
    }

    #[test]
    fn the_first_dump_takes_effect_when_complete() {
        synced();
    }

    #[test]
    fn after_an_overrun_the_old_model_holds_until_the_re_dump_is_complete() {
        let mut s = synced();
        s.on_message(0, 0, Incoming::Overrun);
        assert!(s.syncing());
        assert_eq!(s.stats.resyncs, 1);
        // while re-dumping, the VIP stays active (no flap) ...
        let (_, seq) = s.next_request().unwrap();
        s.on_message(seq, 0, Incoming::Event(link(5, "vsd-lan0")));
        s.on_message(seq, 0, Incoming::Done);
        assert_eq!(active_set(&vips(), &s.kernel), [true, false]);
        // ... an event during the re-dump applies to both models ...
        let (_, seq) = s.next_request().unwrap();
        s.on_message(0, 0, Incoming::Event(link(7, "vsd-lan1")));
        s.on_message(0, 0, Incoming::Event(add(7, VIP2, 32)));
        assert_eq!(active_set(&vips(), &s.kernel), [true, true]);
        // ... and the lost deletion shows once the dump is in
        s.on_message(seq, 0, Incoming::Event(add(7, VIP2, 32)));
        s.on_message(seq, 0, Incoming::Done);
        assert!(!s.syncing());
        assert_eq!(active_set(&vips(), &s.kernel), [false, true]);
    }

    #[test]
    fn an_interrupted_dump_is_done_again() {
        let mut s = synced();
        s.resync();
        let (_, seq) = s.next_request().unwrap();
        s.on_message(seq, NLM_F_DUMP_INTR, Incoming::Event(link(5, "vsd-lan0")));
        s.on_message(seq, NLM_F_DUMP_INTR, Incoming::Done);
        assert!(s.syncing());
        assert_eq!(s.next_request().map(|(d, _)| d), Some(Dump::Links));
        assert_eq!(s.stats.resyncs, 2);
    }

    #[test]
    fn a_refused_dump_is_requested_again() {
        let mut s = Sync::default();
        s.resync();
        let (_, seq) = s.next_request().unwrap();
        assert!(s.next_request().is_none(), "one dump at a time");
        s.on_message(seq, 0, Incoming::Error);
        let (d, seq2) = s.next_request().unwrap();
        assert_eq!(d, Dump::Links);
        assert_ne!(seq, seq2);
        // answers to someone else's sequence number are not ours
        s.on_message(seq, 0, Incoming::Done);
        assert!(s.next_request().is_none());
        assert!(s.syncing());
    }

    #[test]
    fn netlink_messages_map_to_events() {
        use netlink_packet_route::address::AddressHeader;
        let mut a = AddressMessage::default();
        a.header = AddressHeader {
            index: 4,
            prefix_len: 32,
            ..a.header
        };
        a.attributes
            .push(AddressAttribute::Address(IpAddr::V4(VIP2)));
        a.attributes.push(AddressAttribute::Local(IpAddr::V4(VIP)));
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewAddress(a.clone())),
            Some(add(4, VIP, 32)),
            "IFA_LOCAL is the interface's own address"
        );
        assert_eq!(
            event_of(&RouteNetlinkMessage::DelAddress(a)),
            Some(del(4, VIP, 32))
        );
        let mut l = LinkMessage::default();
        l.header.index = 4;
        assert_eq!(event_of(&RouteNetlinkMessage::NewLink(l.clone())), None);
        assert_eq!(
            event_of(&RouteNetlinkMessage::DelLink(l.clone())),
            Some(KernelEvent::LinkGone { index: 4 })
        );
        l.attributes.push(LinkAttribute::IfName("vsd-lan0".into()));
        assert_eq!(
            event_of(&RouteNetlinkMessage::NewLink(l)),
            Some(link(4, "vsd-lan0"))
        );
    }

    #[test]
    fn ipv6_vips_follow_and_count_only_after_dad() {
        let v6 = vec![FollowedVip {
            address: IpAddr::V6(VIP6),
            port: 0,
            iface: "vsd-lan0".into(),
        }];
        let mut k = KernelAddrs::default();
        k.apply(&link(5, "vsd-lan0"));
        let added = KernelEvent::AddrAdded {
            index: 5,
            addr: IpAddr::V6(VIP6),
            prefix: 128,
        };
        k.apply(&added);
        assert_eq!(active_set(&v6, &k), [true]);
        // the same bits as an IPv4 address are another address
        assert_eq!(active_set(&vips()[..1], &k), [false]);

        // RTM_NEWADDR of a tentative or DAD-failed address: not there
        // (IFA_FLAGS when present, else the header's flags)
        use netlink_packet_route::address::AddressHeader;
        let mut a = AddressMessage::default();
        a.header = AddressHeader {
            index: 5,
            prefix_len: 128,
            ..a.header
        };
        a.attributes
            .push(AddressAttribute::Address(IpAddr::V6(VIP6)));
        let removed = KernelEvent::AddrRemoved {
            index: 5,
            addr: IpAddr::V6(VIP6),
            prefix: 128,
        };
        let new = |a: &AddressMessage| event_of(&RouteNetlinkMessage::NewAddress(a.clone()));
        assert_eq!(new(&a), Some(added.clone()));
        let mut t = a.clone();
        t.header.flags = AddressHeaderFlags::Tentative;
        assert_eq!(new(&t), Some(removed.clone()));
        let mut f = a.clone();
        f.attributes.push(AddressAttribute::Flags(
            AddressFlags::Dadfailed | AddressFlags::Tentative,
        ));
        assert_eq!(new(&f), Some(removed.clone()));
        // IFA_FLAGS wins: DAD done, whatever the header's 8 bits say
        let mut done = t.clone();
        done.attributes
            .push(AddressAttribute::Flags(AddressFlags::Permanent));
        assert_eq!(new(&done), Some(added));
        k.apply(&new(&t).unwrap());
        assert_eq!(active_set(&v6, &k), [false]);
    }

    /// The watcher on a real rtnetlink socket, in a namespace of the
    /// test's own: an IPv6 VIP added with `nodad` counts at once, one in
    /// DAD only once DAD is done, and a deleted one no more.
    #[test]
    fn ipv6_vip_on_a_live_interface() {
        use crate::control::test_netns::{in_private_netns, ip};
        in_private_netns(|| {
            ip(&[
                "link", "add", "vfollow0", "type", "veth", "peer", "name", "vfollow1",
            ]);
            ip(&["link", "set", "vfollow0", "up"]);
            ip(&["link", "set", "vfollow1", "up"]);
            let vip = |a: &str| FollowedVip {
                address: a.parse().unwrap(),
                port: 0,
                iface: "vfollow0".into(),
            };
            let mut w = VipWatch::open_synced(
                vec![vip("2001:2::64"), vip("2001:2::65")],
                Duration::from_secs(5),
            )
            .unwrap();
            assert!(!w.syncing());
            let active = |w: &VipWatch| w.states().map(|(_, a)| a).collect::<Vec<_>>();
            let wait_for = |w: &mut VipWatch, want: [bool; 2]| {
                let end = Instant::now() + Duration::from_secs(10);
                while active(w) != want {
                    assert!(Instant::now() < end, "still {:?}, want {want:?}", active(w));
                    w.poll();
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            assert_eq!(active(&w), [false, false]);
            ip(&[
                "-6",
                "addr",
                "add",
                "2001:2::64/128",
                "dev",
                "vfollow0",
                "nodad",
            ]);
            wait_for(&mut w, [true, false]);
            // with DAD: tentative for at least a second (RetransTimer)
            ip(&["-6", "addr", "add", "2001:2::65/64", "dev", "vfollow0"]);
            w.poll();
            assert_eq!(active(&w), [true, false], "tentative counted");
            wait_for(&mut w, [true, true]);
            ip(&["-6", "addr", "del", "2001:2::64/128", "dev", "vfollow0"]);
            wait_for(&mut w, [false, true]);
        });
    }
}
