//! The worker loop: one per worker lcore, l3fwd-shaped. Each turn: receive a
//! burst on every port it polls, handle each packet, run neighbour timers,
//! flush every tx buffer. A worker owns all of its state; the only shared
//! things are its counters (single-writer) and the neighbour inboxes through
//! which workers tell each other what ARP taught them.

use super::counters::{DropReason, Event, WorkerCounters};
use super::local::{self, LocalVerdict, PortAddrs};
use super::neigh::{self, NeighAction, NeighTable, Resolve};
use crate::dpdk::{tsc_hz, tsc_now, Mbuf, MbufBurst, Mempool, RxQueue, TxBuffer};
use crate::wire::{EthernetFrame, MacAddr};
use crossbeam::queue::ArrayQueue;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A neighbour one worker learned, passed to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighUpdate {
    pub port: u16,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub solicited: bool,
}

/// Capacity of each worker's neighbour inbox.
pub const NEIGH_INBOX: usize = 1024;

/// One port as a worker sees it: its own rx queue and tx buffer, the
/// port's addresses and its own neighbour table for the port.
pub struct WorkerPort {
    pub rx: RxQueue,
    pub tx: TxBuffer,
    pub addrs: PortAddrs,
    pub neigh: NeighTable<Mbuf>,
    /// `tx.dropped` already counted as `tx_full`.
    pub tx_dropped_seen: u64,
}

/// Everything a worker owns.
pub struct Worker {
    pub index: usize,
    pub ports: Vec<WorkerPort>,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
    pub pool: Arc<Mempool>,
    /// Updates from the other workers.
    pub inbox: Arc<ArrayQueue<NeighUpdate>>,
    /// The other workers' inboxes.
    pub peers: Vec<Arc<ArrayQueue<NeighUpdate>>>,
}

fn count_neigh_drop(c: &WorkerCounters, r: neigh::DropReason) {
    c.drop_pkt(match r {
        neigh::DropReason::QueueFull | neigh::DropReason::PendingPoolFull => {
            DropReason::NeighQueueFull
        }
        neigh::DropReason::TableFull => DropReason::NeighTableFull,
        neigh::DropReason::Unresolved | neigh::DropReason::Flushed => DropReason::NeighFailed,
    });
}

/// Put a routed frame on the wire to `mac`.
#[inline]
fn send_to(tx: &mut TxBuffer, c: &WorkerCounters, mac: [u8; 6], mut m: Mbuf) {
    EthernetFrame::new_unchecked(m.data_mut()).set_dst_addr(MacAddr(mac));
    c.add(Event::TxPackets, 1);
    c.add(Event::TxBytes, m.len() as u64);
    tx.push(m);
}

/// Send an ARP request for `target` (broadcast, or a unicast probe).
fn send_arp_request(
    pool: &Mempool,
    tx: &mut TxBuffer,
    c: &WorkerCounters,
    addrs: &PortAddrs,
    target: Ipv4Addr,
    unicast: Option<[u8; 6]>,
) {
    let Some(src_ip) = addrs.source_for(target) else {
        c.drop_pkt(DropReason::NoRoute);
        return;
    };
    let mut frame = [0u8; 60];
    let Some(len) = local::build_arp_request(&mut frame, addrs.mac, src_ip, target) else {
        return;
    };
    if let Some(mac) = unicast {
        frame[..6].copy_from_slice(&mac);
    }
    let Ok(mut m) = Mbuf::alloc(pool) else {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    };
    if !m.append(len) || !m.set_data(&frame[..len]) {
        c.drop_pkt(DropReason::NoMbuf);
        return;
    }
    c.add(Event::ArpRequestsOut, 1);
    c.add(Event::TxPackets, 1);
    c.add(Event::TxBytes, len as u64);
    tx.push(m);
}

impl Worker {
    /// Poll until told to stop.
    pub fn run(&mut self) {
        let per_ms = (tsc_hz() / 1000).max(1);
        let mut burst = MbufBurst::new();
        let mut last_tick_ms = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let now_ms = tsc_now() / per_ms;
            self.counters.add(Event::LoopTurns, 1);
            for p in 0..self.ports.len() {
                let n = self.ports[p].rx.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                self.counters.add(Event::Bursts, 1);
                for i in 0..n.min(4) {
                    burst.prefetch(i);
                }
                let mut i = 0;
                while let Some(m) = burst.next_packet() {
                    burst.prefetch(i + 4);
                    i += 1;
                    self.handle(p, m, now_ms);
                }
            }
            self.drain_inbox(now_ms);
            if now_ms != last_tick_ms {
                last_tick_ms = now_ms;
                self.tick(now_ms);
            }
            self.flush_all();
        }
        self.shutdown();
    }

    fn handle(&mut self, p: usize, mut m: Mbuf, now_ms: u64) {
        let c = &*self.counters;
        c.add(Event::RxPackets, 1);
        c.add(Event::RxBytes, m.len() as u64);
        if m.segments() != 1 {
            c.drop_pkt(DropReason::MultiSegment);
            return;
        }
        let WorkerPort {
            tx, addrs, neigh, ..
        } = &mut self.ports[p];
        let mut learned = None;
        let verdict = local::handle_frame(m.data_mut(), addrs, c, &mut learned);
        if let Some((ip, mac, solicited)) = learned {
            c.add(Event::NeighLearned, 1);
            neigh.learn(ip, mac.0, now_ms, solicited, |mac, pkt| {
                send_to(tx, c, mac, pkt)
            });
            let update = NeighUpdate {
                port: p as u16,
                ip,
                mac: mac.0,
                solicited,
            };
            for peer in &self.peers {
                // a full inbox only costs that worker an ARP request later
                let _ = peer.push(update);
            }
        }
        match verdict {
            LocalVerdict::SendBack { len } => {
                m.truncate(len);
                c.add(Event::TxPackets, 1);
                c.add(Event::TxBytes, m.len() as u64);
                tx.push(m);
            }
            LocalVerdict::Route { len, next_hop } => {
                m.truncate(len);
                match neigh.resolve(next_hop, m, now_ms) {
                    Resolve::Send(mac, m) => send_to(tx, c, mac, m),
                    Resolve::SendAndProbe(mac, m) => {
                        send_to(tx, c, mac, m);
                        send_arp_request(&self.pool, tx, c, addrs, next_hop, Some(mac));
                    }
                    Resolve::Queued => {}
                    Resolve::QueuedAndRequest => {
                        send_arp_request(&self.pool, tx, c, addrs, next_hop, None)
                    }
                    Resolve::Dropped(m, r) => {
                        count_neigh_drop(c, r);
                        drop(m);
                    }
                }
            }
            LocalVerdict::Consumed => {}
            // forwarding to real servers is not wired in yet: no service matches
            LocalVerdict::NotLocal => c.drop_pkt(DropReason::NoService),
            LocalVerdict::Drop(r) => c.drop_pkt(r),
        }
    }

    /// Flush every tx buffer; count what the tx rings refused.
    fn flush_all(&mut self) {
        for wp in &mut self.ports {
            wp.tx.flush();
            let refused = wp.tx.dropped - wp.tx_dropped_seen;
            if refused != 0 {
                wp.tx_dropped_seen = wp.tx.dropped;
                self.counters.drop_n(DropReason::TxFull, refused);
            }
        }
    }

    fn drain_inbox(&mut self, now_ms: u64) {
        let c = &*self.counters;
        while let Some(u) = self.inbox.pop() {
            let Some(WorkerPort { tx, neigh, .. }) = self.ports.get_mut(u.port as usize) else {
                continue;
            };
            neigh.learn(u.ip, u.mac, now_ms, u.solicited, |mac, pkt| {
                send_to(tx, c, mac, pkt)
            });
        }
    }

    fn tick(&mut self, now_ms: u64) {
        let c = &*self.counters;
        for wp in &mut self.ports {
            let WorkerPort {
                tx, addrs, neigh, ..
            } = wp;
            let mut requests: [(Ipv4Addr, Option<[u8; 6]>); 8] = [(Ipv4Addr::UNSPECIFIED, None); 8];
            let mut nreq = 0;
            neigh.tick(now_ms, |a| match a {
                NeighAction::Request { ip, unicast } => {
                    if nreq < requests.len() {
                        requests[nreq] = (ip, unicast);
                        nreq += 1;
                    }
                }
                NeighAction::Drop(m, r) => {
                    count_neigh_drop(c, r);
                    drop(m);
                }
            });
            for (ip, unicast) in &requests[..nreq] {
                send_arp_request(&self.pool, tx, c, addrs, *ip, *unicast);
            }
        }
    }

    fn shutdown(&mut self) {
        self.flush_all();
        let c = &*self.counters;
        for wp in &mut self.ports {
            wp.neigh.flush(|m, r| {
                count_neigh_drop(c, r);
                drop(m);
            });
        }
    }
}
