//! The master sync daemon's data-plane transport: every worker encodes its
//! own sync records into IPVS sync messages and sends them out of the
//! multicast interface's DPDK port itself.
//!
//! **What.** A worker keeps one message being filled (the same encoder as
//! the kernel-socket master, [`SyncMessageBuilder`], so the messages are
//! byte for byte what that master would send for the same records). The
//! records its director decided to sync go straight into it once per loop
//! turn; a message is sent when the next record does not fit (`sync_maxlen`
//! bytes or 255 entries) or when its first entry has waited
//! [`FLUSH_AFTER`] (the kernel's `IPVS_SYNC_FLUSH_TIME`, 2 s; a TSC
//! compare once per loop turn). Sending builds the whole frame in an mbuf
//! ([`SyncFrame`]: Ethernet + IPv4 or IPv6 + UDP, as the kernel's master
//! socket would put it on the wire) and hands it to the worker's own tx
//! queue of the port right after the packets its tx buffer holds
//! ([`TxBuffer::send_now`]: one burst of its own per message, ~40
//! records, so that a refusal is known to be this frame's and it can be
//! held instead of lost).
//!
//! **Why.** The kernel-socket transport costs a daemon thread (draining
//! the rings, encoding, `sendmmsg`, the kernel's UDP/IP stack and the
//! exception path's tap): on a small machine that CPU is taken from
//! whatever shares it. Here a record costs its encoding on the worker and
//! nothing else: no ring, no thread, no system call, no lock, no kernel.
//!
//! **The frame** (what the kernel's `make_send_sock` socket sends):
//! destination the group's multicast MAC (01:00:5e + low 23 bits; IPv6
//! 33:33 + low 32 bits), source the port's MAC; the source address is what
//! the kernel chooses (IPv4: `bind_mcastif_addr`, the interface's primary
//! address, i.e. the port's first IPv4 address; IPv6: source address
//! selection, the link-local address for a link-local group, else the
//! port's first global one); TTL / hop limit `--mcast-ttl`; DF clear
//! (`set_mcast_pmtudisc(IP_PMTUDISC_DONT)`, "allow fragmentation"), so
//! the IPv4 ID counts per worker; UDP checksum computed (the kernel's
//! default for IPv4, mandatory for IPv6). Differences that no receiver
//! looks at: the UDP source port is fixed ([`SOURCE_PORT_OFFSET`] above
//! the destination port, where the kernel takes an ephemeral one) and the
//! IPv6 flow label is 0 (the kernel hashes one when auto flow labels are
//! on).
//!
//! **Thread id and port.** The kernel runs `sync_ports` master threads and
//! thread `id` sends to `mcast_port + id`; a kernel backup listens on
//! `mcast_port + id` for each of its own threads (`sync_ports`, default 1:
//! port 8848 only). vsd's workers are not the kernel's threads (they are
//! chosen by flow ownership, not by `sync_ports`), so every worker sends as
//! thread 0, to `mcast_port`: a default kernel backup (and vsd's backup,
//! which listens on `mcast_port`) receives every worker's messages.
//!
//! **Failure modes.** Every message that does not leave is counted by
//! reason, per worker ([`SyncTxCounters`]): no mbuf, the tx queue full (a
//! refused frame is held and tried again at the next loop turn, as the
//! kernel's master waits for its socket; it is dropped only if still
//! refused when the next message is ready or the master stops), a frame
//! larger than an mbuf; a record the encoder refuses is counted as
//! `encode_errors`. As with the kernel, a lost message is not
//! sent again; the connections are synced again at their next threshold.
//! The control thread refuses a configuration this transport cannot
//! serve (unicast peers, an interface that is no DPDK port or twin, a
//! port without an address of the group's family, a message larger than
//! the port's MTU or an mbuf).

use super::sync_feed::RecordSink;
use super::worker::Worker;
use crate::dpdk::{tsc_hz, Mbuf, Mempool, TxBuffer};
use crate::lb::sync::{SyncAddr, SyncRecord};
use crate::wire::checksum;
use crate::wire::ipvs_sync::SyncMessageBuilder;
use crate::wire::MacAddr;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long a message's first entry may wait for company (the kernel's
/// `IPVS_SYNC_FLUSH_TIME`).
pub const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// The UDP source port is the destination port plus this (any port would
/// do; a fixed one keeps captures readable).
pub const SOURCE_PORT_OFFSET: u16 = 0;
/// Ethernet + IPv4 + UDP header bytes.
const HEADERS_V4: usize = 14 + 20 + 8;
/// Ethernet + IPv6 + UDP header bytes.
const HEADERS_V6: usize = 14 + 40 + 8;
const IPPROTO_UDP: u8 = 17;

/// The multicast MAC address of `group` (RFC 1112: 01:00:5e and the low 23
/// bits; RFC 2464: 33:33 and the low 32 bits); `None` for a unicast one.
pub fn multicast_mac(group: IpAddr) -> Option<MacAddr> {
    match group {
        IpAddr::V4(g) if g.is_multicast() => {
            let o = g.octets();
            Some(MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]))
        }
        IpAddr::V6(g) if g.is_multicast() => {
            let o = g.octets();
            Some(MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]))
        }
        _ => None,
    }
}

/// The source address the kernel's master socket would use for `group`
/// on an interface with `addrs` (in configuration order, see the module
/// note); `None` if it has none of the group's family.
pub fn source_address(addrs: &[IpAddr], group: IpAddr) -> Option<IpAddr> {
    match group {
        IpAddr::V4(_) => addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() && !a.is_loopback()),
        IpAddr::V6(g) => {
            let link_local = |a: &IpAddr| matches!(a, IpAddr::V6(v) if v.is_unicast_link_local());
            let v6 = || addrs.iter().copied().filter(|a| a.is_ipv6());
            // multicast scope (RFC 4291): 1 interface-local, 2 link-local
            if g.segments()[0] & 0xf <= 2 {
                v6().find(link_local).or_else(|| v6().next())
            } else {
                v6().find(|a| !link_local(a)).or_else(|| v6().next())
            }
        }
    }
}

/// The headers of the frames one master sends: everything but the
/// lengths, the IPv4 ID and the checksums, which [`SyncFrame::write`]
/// fills per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFrame {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: IpAddr,
    pub group: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ttl: u8,
}

impl SyncFrame {
    /// The frame from `src` to `group`'s port `dst_port` (see the module
    /// note); `None` if `group` is not multicast or `src` is of the other
    /// family.
    pub fn new(
        src_mac: MacAddr,
        src: IpAddr,
        group: IpAddr,
        dst_port: u16,
        ttl: u8,
    ) -> Option<SyncFrame> {
        if src.is_ipv4() != group.is_ipv4() {
            return None;
        }
        Some(SyncFrame {
            src_mac,
            dst_mac: multicast_mac(group)?,
            src,
            group,
            src_port: dst_port.wrapping_add(SOURCE_PORT_OFFSET),
            dst_port,
            ttl,
        })
    }

    /// Ethernet, IP and UDP header bytes.
    pub fn header_len(&self) -> usize {
        match self.group {
            IpAddr::V4(_) => HEADERS_V4,
            IpAddr::V6(_) => HEADERS_V6,
        }
    }

    /// Write the frame carrying `payload` into `out` (at least
    /// [`Self::header_len`] + `payload.len()` bytes); the frame's length,
    /// or `None` if it does not fit or the datagram exceeds 65535 bytes.
    pub fn write(&self, out: &mut [u8], payload: &[u8], ip_id: u16) -> Option<usize> {
        let hl = self.header_len();
        let len = hl + payload.len();
        let udp_len = u16::try_from(8 + payload.len()).ok()?;
        let out = out.get_mut(..len)?;
        out[0..6].copy_from_slice(&self.dst_mac.0);
        out[6..12].copy_from_slice(&self.src_mac.0);
        let (ip, rest) = out[12..].split_at_mut(hl - 14 - 8 + 2);
        let pseudo = match (self.src, self.group) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(20 + 8 + payload.len()).ok()?;
                ip[0..2].copy_from_slice(&0x0800u16.to_be_bytes());
                let h = &mut ip[2..22];
                h[0] = 0x45;
                h[1] = 0;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&ip_id.to_be_bytes());
                // DF clear: the kernel's master socket is IP_PMTUDISC_DONT
                h[6..8].copy_from_slice(&[0, 0]);
                h[8] = self.ttl;
                h[9] = IPPROTO_UDP;
                h[10..12].copy_from_slice(&[0, 0]);
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = checksum::checksum(h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                checksum::pseudo_header_v4(s, d, IPPROTO_UDP, udp_len)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ip[0..2].copy_from_slice(&0x86ddu16.to_be_bytes());
                let h = &mut ip[2..42];
                h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
                h[4..6].copy_from_slice(&udp_len.to_be_bytes());
                h[6] = IPPROTO_UDP;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                checksum::pseudo_header_v6(&s, &d, IPPROTO_UDP, u32::from(udp_len))
            }
            _ => return None,
        };
        let (udp, data) = rest.split_at_mut(8);
        udp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        data.copy_from_slice(payload);
        let sum = checksum::combine(&[pseudo, checksum::data(udp), checksum::data(data)]);
        // 0 means "no checksum" in UDP: a computed 0 is sent as 0xffff
        let c = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        Some(len)
    }
}

/// What the control thread tells a worker to send: `None` in
/// [`SyncTxShared`] means the data-plane transport is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTxConf {
    /// The worker's index of the port the messages leave by.
    pub port: usize,
    pub syncid: u8,
    pub maxlen: usize,
    pub group: IpAddr,
    /// `mcast_port` + the thread id (0, see the module note).
    pub dst_port: u16,
    pub ttl: u8,
}

/// Counters one worker writes (single writer: load + store).
#[derive(Debug, Default)]
pub struct SyncTxCounters {
    pub sent_messages: AtomicU64,
    pub sent_entries: AtomicU64,
    pub encode_errors: AtomicU64,
    pub dropped_no_mbuf: AtomicU64,
    pub dropped_tx_full: AtomicU64,
    pub dropped_too_long: AtomicU64,
    pub dropped_no_source: AtomicU64,
}

impl SyncTxCounters {
    /// `(name, value)` of every counter, for `--counters`.
    pub fn values(&self) -> [(&'static str, u64); 7] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("sent_messages", g(&self.sent_messages)),
            ("sent_entries", g(&self.sent_entries)),
            ("encode_errors", g(&self.encode_errors)),
            ("dropped_message_no_mbuf", g(&self.dropped_no_mbuf)),
            ("dropped_message_tx_full", g(&self.dropped_tx_full)),
            ("dropped_message_too_long", g(&self.dropped_too_long)),
            ("dropped_message_no_source", g(&self.dropped_no_source)),
        ]
    }
}

fn bump(a: &AtomicU64, n: u64) {
    if n != 0 {
        a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// The control thread's side of one worker's transport: the configuration
/// (read by the worker only when `generation` moved: a lock once per
/// `--start-daemon`, never per packet) and the counters.
#[derive(Debug, Default)]
pub struct SyncTxShared {
    generation: AtomicU64,
    /// The generation the worker last took.
    followed: AtomicU64,
    conf: Mutex<Option<SyncTxConf>>,
    pub counters: SyncTxCounters,
}

impl SyncTxShared {
    /// Turn the transport on (`Some`) or off; the worker follows at its
    /// next loop turn (sending what it holds when turned off).
    pub fn set(&self, conf: Option<SyncTxConf>) {
        if let Ok(mut c) = self.conf.lock() {
            *c = conf;
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether the worker has taken the last configuration (and sent what
    /// it held under the one before).
    pub fn followed(&self) -> bool {
        self.followed.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
    }
}

/// The message a worker fills and when it is due: the encoder plus the
/// kernel's two reasons to send (full, or its first entry waited
/// `flush_after` TSC cycles). Pure: the tests drive it with any clock.
#[derive(Debug)]
pub struct MessageBatch {
    builder: SyncMessageBuilder,
    /// When the message being filled got its first entry.
    first_at: Option<u64>,
    flush_after: u64,
}

impl MessageBatch {
    pub fn new(builder: SyncMessageBuilder, flush_after: u64) -> Self {
        MessageBatch {
            builder,
            first_at: None,
            flush_after,
        }
    }

    /// Encode `rec` at time `now`; a message it does not fit into goes to
    /// `send` first. `false`: the encoder refused the record.
    #[inline]
    pub fn push<K: SyncAddr>(
        &mut self,
        rec: &SyncRecord<K>,
        now: u64,
        send: impl FnOnce(&[u8]),
    ) -> bool {
        let mut starts = self.builder.pending() == 0;
        let pushed = K::push_record(rec, &mut self.builder, |msg| {
            send(msg);
            starts = true;
        });
        match pushed {
            Ok(()) => {
                if starts {
                    self.first_at = Some(now);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Send the message being filled if its first entry has waited long
    /// enough at `now` (one compare when nothing waits).
    pub fn flush_due(&mut self, now: u64, send: impl FnOnce(&[u8])) {
        if self
            .first_at
            .is_some_and(|t| now.wrapping_sub(t) >= self.flush_after)
        {
            self.flush(send);
        }
    }

    /// Send the message being filled, if it holds an entry.
    pub fn flush(&mut self, send: impl FnOnce(&[u8])) {
        self.first_at = None;
        self.builder.finish_then(send);
    }
}

/// Where a worker's messages leave.
#[derive(Debug)]
struct Link {
    port: usize,
    /// `None`: the port has no source address for the group (counted).
    frame: Option<SyncFrame>,
    ip_id: u16,
    /// A frame the port refused (its queue full), with its entries: tried
    /// again at the next loop turn, as the kernel's master waits for its
    /// socket to drain; dropped (counted) if refused again when the next
    /// message is ready.
    held: Option<(Mbuf, u8)>,
}

impl Link {
    /// Hand `m` (a message of `entries`) to the port; a refused frame is
    /// held for the next try.
    fn send(&mut self, m: Mbuf, entries: u8, tx: &mut TxBuffer, c: &SyncTxCounters) {
        match tx.send_now(m) {
            Ok(()) => {
                bump(&c.sent_messages, 1);
                bump(&c.sent_entries, u64::from(entries));
            }
            Err(m) => self.held = Some((m, entries)),
        }
    }

    /// Try the held frame again; if the port still refuses it and
    /// `must_clear`, it is dropped (counted), else kept.
    fn retry(&mut self, tx: &mut TxBuffer, c: &SyncTxCounters, must_clear: bool) {
        let Some((m, entries)) = self.held.take() else {
            return;
        };
        self.send(m, entries, tx, c);
        if must_clear && self.held.take().is_some() {
            bump(&c.dropped_tx_full, 1);
        }
    }
}

/// A worker's transport while on.
#[derive(Debug)]
struct Active {
    batch: MessageBatch,
    link: Link,
}

/// One worker's data-plane transport ([`Worker::sync_tx`]).
#[derive(Debug, Default)]
pub struct SyncTx {
    seen: u64,
    active: Option<Active>,
}

/// Send one finished message out of `tx`, counting the outcome.
fn send_message(
    link: &mut Link,
    msg: &[u8],
    tx: &mut TxBuffer,
    pool: &Mempool,
    c: &SyncTxCounters,
) {
    let Some(frame) = &link.frame else {
        bump(&c.dropped_no_source, 1);
        return;
    };
    let len = frame.header_len() + msg.len();
    let Ok(mut m) = Mbuf::alloc(pool) else {
        bump(&c.dropped_no_mbuf, 1);
        return;
    };
    if !m.append(len) {
        bump(&c.dropped_too_long, 1);
        return;
    }
    link.ip_id = link.ip_id.wrapping_add(1);
    if frame.write(m.data_mut(), msg, link.ip_id).is_none() {
        bump(&c.dropped_too_long, 1);
        return;
    }
    // a frame still held from a full queue goes first (or is dropped)
    link.retry(tx, c, true);
    link.send(m, msg.get(4).copied().unwrap_or(0), tx, c);
}

/// The records of one loop turn, encoded into the worker's message.
struct Encode<'a> {
    a: &'a mut Active,
    tx: &'a mut TxBuffer,
    pool: &'a Mempool,
    c: &'a SyncTxCounters,
    now_tsc: u64,
}

impl Encode<'_> {
    fn encode<K: SyncAddr>(&mut self, recs: &[SyncRecord<K>]) -> usize {
        let Active { batch, link } = &mut *self.a;
        for r in recs {
            let (tx, pool, c) = (&mut *self.tx, self.pool, self.c);
            if !batch.push(r, self.now_tsc, |msg| send_message(link, msg, tx, pool, c)) {
                bump(&self.c.encode_errors, 1);
            }
        }
        recs.len()
    }
}

impl RecordSink for Encode<'_> {
    fn take(&mut self, recs: &[SyncRecord]) -> usize {
        self.encode(recs)
    }

    fn take6(&mut self, recs: &[SyncRecord<u128>]) -> usize {
        self.encode(recs)
    }
}

impl Worker {
    /// The sync exchange of one loop turn: follow the transport's
    /// configuration, hand the director's records to the data-plane
    /// transport (when on) or to the daemon's rings, send a message whose
    /// first entry has waited [`FLUSH_AFTER`].
    pub(super) fn sync_turn(&mut self, now_tsc: u64, now_ms: u64) {
        if self.sync.dp.generation.load(Ordering::Acquire) != self.sync_tx.seen {
            self.follow_sync_tx();
        }
        let Some(a) = self.sync_tx.active.as_mut() else {
            self.sync.exchange(&mut self.lb, now_ms, None);
            return;
        };
        let Some(wp) = self.ports.get_mut(a.link.port) else {
            self.sync.exchange(&mut self.lb, now_ms, None);
            return;
        };
        let c = &self.sync.dp.counters;
        let mut sink = Encode {
            a,
            tx: &mut wp.tx,
            pool: &self.pool,
            c,
            now_tsc,
        };
        self.sync.exchange(&mut self.lb, now_ms, Some(&mut sink));
        let Encode { a, tx, pool, .. } = sink;
        let link = &mut a.link;
        if link.held.is_some() {
            link.retry(tx, c, false);
        }
        a.batch
            .flush_due(now_tsc, |msg| send_message(link, msg, tx, pool, c));
    }

    /// Take the control thread's new configuration; the message being
    /// filled is sent first.
    fn follow_sync_tx(&mut self) {
        let shared = &self.sync.dp;
        let generation = shared.generation.load(Ordering::Acquire);
        let Ok(conf) = shared.conf.try_lock().map(|c| c.clone()) else {
            return; // the control thread is writing: next turn
        };
        self.sync_tx.seen = generation;
        if let Some(mut a) = self.sync_tx.active.take() {
            if let Some(wp) = self.ports.get_mut(a.link.port) {
                let link = &mut a.link;
                a.batch
                    .flush(|msg| send_message(link, msg, &mut wp.tx, &self.pool, &shared.counters));
                link.retry(&mut wp.tx, &shared.counters, true);
            }
        }
        shared.followed.store(generation, Ordering::Release);
        let Some(conf) = conf else {
            return;
        };
        let Ok(builder) = SyncMessageBuilder::new(conf.syncid, conf.maxlen) else {
            // the control thread checked the length: cannot happen
            return;
        };
        let frame = self.ports.get(conf.port).and_then(|wp| {
            let addrs: Vec<IpAddr> = wp.addrs.addrs.iter().map(|(a, _)| *a).collect();
            let src = source_address(&addrs, conf.group)?;
            SyncFrame::new(wp.addrs.mac, src, conf.group, conf.dst_port, conf.ttl)
        });
        let flush_after = tsc_hz().max(1).saturating_mul(FLUSH_AFTER.as_secs().max(1));
        self.sync_tx.active = Some(Active {
            batch: MessageBatch::new(builder, flush_after),
            link: Link {
                port: conf.port,
                frame,
                // distinct per worker, as the kernel's are per destination
                ip_id: (self.index as u16).wrapping_mul(0x2000),
                held: None,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipvs_sync::{decode, flags, ENTRY_V4_LEN, HEADER_LEN};
    use crate::wire::PacketBuilder;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x10, 0x01]);

    fn rec4(i: u32) -> SyncRecord {
        SyncRecord {
            caddr: u32::from(Ipv4Addr::new(198, 18, 0, 2)) + i,
            vaddr: u32::from(Ipv4Addr::new(198, 18, 0, 100)),
            daddr: u32::from(Ipv4Addr::new(198, 18, 1, 11)),
            laddr: 0,
            cport: 40000 + i as u16,
            vport: 80,
            dport: 8080,
            lport: 0,
            flags: flags::MASQ,
            fwmark: 0,
            timeout_s: 900,
            state: 1,
            protocol: 6,
            has_local: false,
            proxy: None,
        }
    }

    fn rec6(i: u128) -> SyncRecord<u128> {
        let a = |s: &str| u128::from(s.parse::<Ipv6Addr>().unwrap());
        SyncRecord {
            caddr: a("2001:db8::2") + i,
            vaddr: a("2001:db8::100"),
            daddr: a("2001:db8:1::11"),
            laddr: 0,
            cport: 40000,
            vport: 80,
            dport: 8080,
            lport: 0,
            flags: flags::MASQ,
            fwmark: 0,
            timeout_s: 900,
            state: 1,
            protocol: 6,
            has_local: false,
            proxy: None,
        }
    }

    /// The one's complement sum over the UDP pseudo header, header and
    /// payload of `frame` (a correct checksum makes it 0xffff).
    fn udp_sum(frame: &[u8]) -> u16 {
        let (src, dst, udp): (IpAddr, IpAddr, &[u8]) = match frame[12..14] {
            [0x08, 0x00] => {
                let s: [u8; 4] = frame[26..30].try_into().unwrap();
                let d: [u8; 4] = frame[30..34].try_into().unwrap();
                (s.into(), d.into(), &frame[34..])
            }
            _ => {
                let s: [u8; 16] = frame[22..38].try_into().unwrap();
                let d: [u8; 16] = frame[38..54].try_into().unwrap();
                (s.into(), d.into(), &frame[54..])
            }
        };
        let pseudo = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                checksum::pseudo_header_v4(s, d, 17, udp.len() as u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                checksum::pseudo_header_v6(&s, &d, 17, udp.len() as u32)
            }
            _ => unreachable!(),
        };
        checksum::combine(&[pseudo, checksum::data(udp)])
    }

    /// The kernel master's datagram for the same records, from the same
    /// encoder through its allocating interface.
    fn kernel_message<K: SyncAddr>(recs: &[SyncRecord<K>]) -> Vec<u8> {
        let mut b = SyncMessageBuilder::new(15, 1472).unwrap();
        for r in recs {
            assert!(b.push(&r.to_wire()).unwrap().is_none());
        }
        b.finish().unwrap()
    }

    #[test]
    fn multicast_macs_and_source_addresses() {
        let mac = |s: &str| multicast_mac(s.parse().unwrap()).map(|m| m.0);
        assert_eq!(
            mac("224.0.0.81"),
            Some([0x01, 0x00, 0x5e, 0x00, 0x00, 0x51])
        );
        // the 24th bit from the end is not in the MAC
        assert_eq!(
            mac("239.129.1.2"),
            Some([0x01, 0x00, 0x5e, 0x01, 0x01, 0x02])
        );
        assert_eq!(mac("ff02::81"), Some([0x33, 0x33, 0x00, 0x00, 0x00, 0x81]));
        assert_eq!(mac("ff05::1:3"), Some([0x33, 0x33, 0x00, 0x01, 0x00, 0x03]));
        assert_eq!(mac("198.18.0.1"), None);
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        let addrs = ips(&["2001:db8::1", "198.18.0.1", "fe80::1", "198.18.0.2"]);
        let src = |g: &str| source_address(&addrs, g.parse().unwrap()).map(|a| a.to_string());
        // IPv4: the interface's primary (first) address
        assert_eq!(src("224.0.0.81").as_deref(), Some("198.18.0.1"));
        // IPv6: link-local for a link-local group, global for a wider one
        assert_eq!(src("ff02::81").as_deref(), Some("fe80::1"));
        assert_eq!(src("ff05::81").as_deref(), Some("2001:db8::1"));
        assert_eq!(
            source_address(&ips(&["fe80::1"]), "224.0.0.81".parse().unwrap()),
            None
        );
        assert_eq!(
            source_address(&ips(&["fe80::1"]), "ff05::81".parse().unwrap()),
            Some("fe80::1".parse().unwrap())
        );
    }

    #[test]
    fn ipv4_frame_is_the_kernel_sockets() {
        let recs: Vec<SyncRecord> = (0..3).map(rec4).collect();
        let msg = kernel_message(&recs);
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let group: IpAddr = "224.0.0.81".parse().unwrap();
        let f = SyncFrame::new(MAC, src, group, 8848, 1).unwrap();
        let mut buf = [0u8; 2048];
        let n = f.write(&mut buf, &msg, 0x1234).unwrap();
        let frame = &buf[..n];
        assert_eq!(n, 14 + 20 + 8 + HEADER_LEN + 3 * ENTRY_V4_LEN);
        // an independent builder of the same frame: DF clear, TTL 1, ID
        let want = PacketBuilder::ethernet(MAC, MacAddr([0x01, 0x00, 0x5e, 0, 0, 0x51]))
            .ipv4(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(224, 0, 0, 81))
            .ttl(1)
            .ident(0x1234)
            .dont_frag(false)
            .udp(8848, 8848)
            .payload(&msg)
            .build();
        assert_eq!(frame, &want[..]);
        // field by field
        assert_eq!(frame[0..6], [0x01, 0x00, 0x5e, 0x00, 0x00, 0x51]);
        assert_eq!(frame[6..12], MAC.0);
        assert_eq!(frame[12..14], [0x08, 0x00]);
        assert_eq!(frame[14], 0x45);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]) as usize, n - 14);
        assert_eq!(frame[18..20], [0x12, 0x34]);
        assert_eq!(frame[20..22], [0, 0], "DF clear, no fragment");
        assert_eq!((frame[22], frame[23]), (1, 17));
        assert_eq!(frame[26..30], [198, 18, 0, 1]);
        assert_eq!(frame[30..34], [224, 0, 0, 81]);
        assert_eq!(
            checksum::checksum(&frame[14..34]),
            0,
            "IPv4 header checksum"
        );
        assert_eq!(frame[34..36], 8848u16.to_be_bytes());
        assert_eq!(frame[36..38], 8848u16.to_be_bytes());
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]) as usize, n - 34);
        assert_ne!(frame[40..42], [0, 0], "UDP checksum present");
        assert_eq!(udp_sum(frame), 0xffff, "UDP checksum");
        assert_eq!(&frame[42..], &msg[..]);
        let d = decode(&frame[42..], 15).unwrap();
        assert_eq!(d.entries.len(), 3);
        // (the decoder marks what it received as synced)
        let mut first = recs[0].to_wire();
        first.flags |= flags::SYNC;
        assert_eq!(d.entries[0].as_ref().unwrap(), &first);
        // too small a buffer, or mixed families, is refused
        assert_eq!(f.write(&mut buf[..60], &msg, 1), None);
        assert!(SyncFrame::new(MAC, src, "ff02::81".parse().unwrap(), 8848, 1).is_none());
    }

    #[test]
    fn ipv6_frame_to_a_link_local_group() {
        let recs: Vec<SyncRecord<u128>> = (0..2).map(rec6).collect();
        let msg = kernel_message(&recs);
        let src: Ipv6Addr = "fe80::ff:fe00:1001".parse().unwrap();
        let group: Ipv6Addr = "ff02::81".parse().unwrap();
        let f = SyncFrame::new(MAC, src.into(), group.into(), 9000, 3).unwrap();
        let mut buf = [0u8; 2048];
        let n = f.write(&mut buf, &msg, 7).unwrap();
        let frame = &buf[..n];
        let want = PacketBuilder::ethernet(MAC, MacAddr([0x33, 0x33, 0, 0, 0, 0x81]))
            .ipv6(src, group)
            .ttl(3)
            .udp(9000, 9000)
            .payload(&msg)
            .build();
        assert_eq!(frame, &want[..]);
        assert_eq!(frame[12..14], [0x86, 0xdd]);
        assert_eq!(frame[14..18], [0x60, 0, 0, 0]);
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]) as usize, n - 54);
        assert_eq!((frame[20], frame[21]), (17, 3), "UDP, hop limit");
        assert_eq!(udp_sum(frame), 0xffff, "UDP checksum (mandatory in IPv6)");
        assert_eq!(&frame[62..], &msg[..]);
        assert_eq!(decode(&frame[62..], 0).unwrap().entries.len(), 2);
    }

    /// Messages leave when the next record does not fit (bytes or 255
    /// entries) and when the first entry has waited `flush_after`; each is
    /// byte for byte the kernel-socket master's for the same records.
    #[test]
    fn batch_sends_on_full_and_on_time() {
        let maxlen = HEADER_LEN + 4 * ENTRY_V4_LEN;
        let mut batch = MessageBatch::new(SyncMessageBuilder::new(15, maxlen).unwrap(), 100);
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut reference = SyncMessageBuilder::new(15, maxlen).unwrap();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..9 {
            assert!(batch.push(&rec4(i), 10 + u64::from(i), |m| sent.push(m.to_vec())));
            want.extend(reference.push(&rec4(i).to_wire()).unwrap());
        }
        // 4 + 4 sent when full; the 9th waits (it started at time 18)
        assert_eq!(sent.len(), 2);
        assert_eq!(sent, want);
        batch.flush_due(117, |m| sent.push(m.to_vec()));
        assert_eq!(sent.len(), 2, "not yet due");
        batch.flush_due(118, |m| sent.push(m.to_vec()));
        assert_eq!(sent.len(), 3, "due after 100 ticks");
        want.extend(reference.finish());
        assert_eq!(sent, want);
        batch.flush_due(10_000, |m| sent.push(m.to_vec()));
        batch.flush(|m| sent.push(m.to_vec()));
        assert_eq!(sent.len(), 3, "nothing waits");
        // the entry cap: 255 small entries a message
        let mut batch = MessageBatch::new(SyncMessageBuilder::new(0, 65507).unwrap(), 100);
        let mut counts = Vec::new();
        for i in 0..300 {
            batch.push(&rec4(i), 0, |m| counts.push(m[4]));
        }
        assert_eq!(counts, [255]);
        // a one-packet UDP record is refused, not sent
        let mut one = rec4(0);
        one.flags |= flags::ONE_PACKET;
        assert!(!batch.push(&one, 0, |_| panic!("nothing to send")));
    }
}
