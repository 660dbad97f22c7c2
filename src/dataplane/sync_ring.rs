//! A bounded single-producer, single-consumer ring of plain records that
//! moves whole batches: the worker → sync master link of
//! [`crate::dataplane::sync_feed`].
//!
//! **What.** [`SpscRing::push_slice`] copies a batch of records in and
//! publishes them with one release store of the tail;
//! [`SpscRing::pop_into`] copies up to a number of them out and frees the
//! slots with one release store of the head. Each side keeps its own copy
//! of the other side's index and reads the shared one only when that copy
//! says the ring is full (producer) or empty (consumer).
//!
//! **Why.** crossbeam's `ArrayQueue` (multi-producer, multi-consumer)
//! costs a compare-and-swap and a stamp per record on each side, and its
//! tail line moves between the worker's and the daemon's CPU at every
//! record. A worker hands over its loop turn's records at once, and the
//! daemon takes hundreds at once, so a batch costs one atomic store each
//! way, plus the record bytes themselves.
//!
//! **Failure modes.** A full ring takes what fits and says how many; the
//! caller counts the rest as lost. The single-producer (single-consumer)
//! rule is enforced, not assumed: each side is claimed with one atomic
//! swap per batch, and a second producer (consumer) arriving while one is
//! active gets 0 records through instead of corrupting the ring.

use crossbeam::utils::CachePadded;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One side of the ring: its index, the claim, and its copy of the other
/// side's index (read and written only while claimed).
#[derive(Debug)]
struct Side {
    index: AtomicUsize,
    claimed: AtomicBool,
    other: UnsafeCell<usize>,
}

impl Side {
    fn new() -> Self {
        Side {
            index: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            other: UnsafeCell::new(0),
        }
    }

    /// Claim the side (false: someone else holds it).
    fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::Acquire)
    }

    fn release(&self) {
        self.claimed.store(false, Ordering::Release);
    }
}

/// The ring (see the module note). `T: Copy`: slots are never dropped.
pub struct SpscRing<T: Copy> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// `index`: the tail (next slot to write).
    producer: CachePadded<Side>,
    /// `index`: the head (next slot to read).
    consumer: CachePadded<Side>,
}

// SAFETY: slots are written only by the one claimed producer in the free
// region and read only by the one claimed consumer in the published region;
// the release/acquire pairs on `tail` and `head` order those accesses, and
// each side's cached index is touched only by its claimant.
unsafe impl<T: Copy + Send> Sync for SpscRing<T> {}
// SAFETY: the ring owns its records; moving it moves them.
unsafe impl<T: Copy + Send> Send for SpscRing<T> {}

impl<T: Copy> std::fmt::Debug for SpscRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T: Copy> SpscRing<T> {
    /// A ring of `capacity` slots, rounded up to a power of two.
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(1).next_power_of_two();
        SpscRing {
            slots: (0..cap)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: cap - 1,
            producer: CachePadded::new(Side::new()),
            consumer: CachePadded::new(Side::new()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Records waiting (a snapshot: either side may move meanwhile).
    pub fn len(&self) -> usize {
        let head = self.consumer.index.load(Ordering::Acquire);
        let tail = self.producer.index.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.capacity())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append as many of `items` as fit, in order; returns how many.
    pub fn push_slice(&self, items: &[T]) -> usize {
        if items.is_empty() || !self.producer.claim() {
            return 0;
        }
        let cap = self.capacity();
        let tail = self.producer.index.load(Ordering::Relaxed);
        // SAFETY: only the claimant touches the producer's cached head.
        let cached_head = unsafe { &mut *self.producer.other.get() };
        if cap - tail.wrapping_sub(*cached_head) < items.len() {
            *cached_head = self.consumer.index.load(Ordering::Acquire);
        }
        let n = items.len().min(cap - tail.wrapping_sub(*cached_head));
        for (i, item) in items[..n].iter().enumerate() {
            let slot = &self.slots[tail.wrapping_add(i) & self.mask];
            // SAFETY: slots tail..tail+n are free (the consumer's head,
            // acquired above, is at most `cap` behind), so no reader
            // touches them until the release store below publishes them.
            unsafe { (*slot.get()).write(*item) };
        }
        self.producer
            .index
            .store(tail.wrapping_add(n), Ordering::Release);
        self.producer.release();
        n
    }

    /// Append one record (`Err(item)`: the ring is full or busy).
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.push_slice(std::slice::from_ref(&item)) == 1 {
            Ok(())
        } else {
            Err(item)
        }
    }

    /// Move up to `max` records, oldest first, to the end of `out`;
    /// returns how many.
    pub fn pop_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        if max == 0 || !self.consumer.claim() {
            return 0;
        }
        let head = self.consumer.index.load(Ordering::Relaxed);
        // SAFETY: only the claimant touches the consumer's cached tail.
        let cached_tail = unsafe { &mut *self.consumer.other.get() };
        if cached_tail.wrapping_sub(head) < max {
            *cached_tail = self.producer.index.load(Ordering::Acquire);
        }
        let n = cached_tail.wrapping_sub(head).min(max);
        out.reserve(n);
        for i in 0..n {
            let slot = &self.slots[head.wrapping_add(i) & self.mask];
            // SAFETY: slots head..head+n were published by the producer's
            // release store of the tail (acquired above) and stay its
            // until the release store of the head below.
            out.push(unsafe { (*slot.get()).assume_init() });
        }
        self.consumer
            .index
            .store(head.wrapping_add(n), Ordering::Release);
        self.consumer.release();
        n
    }

    /// Take the oldest record.
    pub fn pop(&self) -> Option<T> {
        if !self.consumer.claim() {
            return None;
        }
        let head = self.consumer.index.load(Ordering::Relaxed);
        // SAFETY: only the claimant touches the consumer's cached tail.
        let cached_tail = unsafe { &mut *self.consumer.other.get() };
        if *cached_tail == head {
            *cached_tail = self.producer.index.load(Ordering::Acquire);
        }
        let item = (*cached_tail != head).then(|| {
            let slot = &self.slots[head & self.mask];
            // SAFETY: slot `head` was published by the producer's release
            // store of the tail (acquired above) and stays the consumer's
            // until the release store of the head below.
            let item = unsafe { (*slot.get()).assume_init() };
            self.consumer
                .index
                .store(head.wrapping_add(1), Ordering::Release);
            item
        });
        self.consumer.release();
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn batches_keep_order_and_stop_at_capacity() {
        let r = SpscRing::<u64>::new(6);
        assert_eq!(r.capacity(), 8);
        assert_eq!(r.push_slice(&[1, 2, 3, 4, 5]), 5);
        // only 3 slots left: the rest is refused, not overwritten
        assert_eq!(r.push_slice(&[6, 7, 8, 9, 10]), 3);
        assert_eq!(r.len(), 8);
        assert_eq!(r.push(11), Err(11));
        let mut out = Vec::new();
        assert_eq!(r.pop_into(&mut out, 3), 3);
        assert_eq!(out, [1, 2, 3]);
        // wraps around the end of the slots
        assert_eq!(r.push_slice(&[11, 12, 13, 14]), 3);
        out.clear();
        assert_eq!(r.pop_into(&mut out, 100), 8);
        assert_eq!(out, [4, 5, 6, 7, 8, 11, 12, 13]);
        assert!(r.is_empty());
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn a_second_producer_gets_nothing_through_while_one_is_active() {
        let r = SpscRing::<u32>::new(4);
        assert!(r.producer.claim());
        assert_eq!(r.push_slice(&[1]), 0);
        r.producer.release();
        assert_eq!(r.push_slice(&[1]), 1);
        assert!(r.consumer.claim());
        assert_eq!(r.pop(), None);
        r.consumer.release();
        assert_eq!(r.pop(), Some(1));
    }

    /// Two threads, many wrap-arounds: every record arrives once, in order.
    #[test]
    fn producer_and_consumer_threads_agree() {
        let r = Arc::new(SpscRing::<u64>::new(64));
        let total = 200_000u64;
        let p = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut next = 0u64;
                while next < total {
                    let batch: Vec<u64> = (next..(next + 37).min(total)).collect();
                    next += r.push_slice(&batch) as u64;
                    if next % 1024 < 37 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        let mut expect = 0u64;
        while expect < total {
            got.clear();
            r.pop_into(&mut got, 50);
            for v in &got {
                assert_eq!(*v, expect);
                expect += 1;
            }
            if got.is_empty() {
                std::thread::yield_now();
            }
        }
        p.join().unwrap();
        assert!(r.is_empty());
    }
}
