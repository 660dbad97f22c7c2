use super::{DpdkError, Mbuf, BURST_SIZE};
use std::ffi::CString;
use std::ptr::NonNull;

/// One slot of a steering ring: a packet and 64 bits of metadata (the
/// sending worker's decision about it, e.g. the real server it picked).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Elem {
    mbuf: *mut dpdk_sys::rte_mbuf,
    meta: u64,
}

const ELEM_SIZE: u32 = std::mem::size_of::<Elem>() as u32;
const EMPTY: Elem = Elem {
    mbuf: std::ptr::null_mut(),
    meta: 0,
};

/// A single-producer single-consumer ring of (mbuf, metadata) pairs, used
/// to hand packets from the worker that received them to the worker that
/// owns their flow. Each ordered pair of workers has its own ring.
#[derive(Debug)]
pub struct SteerRing {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: an SP/SC rte_ring is safe with one producer thread and one
// consumer thread; the data plane gives each end to exactly one worker.
unsafe impl Send for SteerRing {}
// SAFETY: as above; producer and consumer touch separate head/tail pairs.
unsafe impl Sync for SteerRing {}

const RING_F_SP_ENQ: u32 = 1;
const RING_F_SC_DEQ: u32 = 2;
const RING_F_EXACT_SZ: u32 = 4;

impl SteerRing {
    /// A ring holding at least `size` packets.
    pub fn new(name: &str, size: u32) -> Result<SteerRing, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::msg("ring name has NUL"))?;
        // SAFETY: valid name; EAL is initialised by the caller.
        let raw = unsafe {
            dpdk_sys::rte_ring_create_elem(
                cname.as_ptr(),
                ELEM_SIZE,
                size,
                -1,
                RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ,
            )
        };
        NonNull::new(raw)
            .map(|raw| SteerRing { raw })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("rte_ring_create_elem({name})")))
    }

    /// Producer side: move as many packets of `batch` into the ring as fit.
    /// Returns how many went; the rest stay in `batch`.
    pub fn enqueue(&self, batch: &mut SteerBatch) -> usize {
        if batch.len == 0 {
            return 0;
        }
        // SAFETY: elems[..len] are valid owned mbufs with metadata; single
        // producer (the owning worker); the ring takes ownership of the
        // first `done` elements.
        let done = unsafe {
            dpdk_sys::rte_ring_sp_enqueue_burst_elem(
                self.raw.as_ptr(),
                batch.elems.as_ptr() as *const std::os::raw::c_void,
                ELEM_SIZE,
                batch.len as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        batch.elems.copy_within(done..batch.len, 0);
        batch.len -= done;
        done
    }

    /// Consumer side: refill `burst` (packets not taken are freed first).
    pub fn dequeue(&self, burst: &mut SteerBurst) -> usize {
        burst.clear();
        // SAFETY: elems has BURST_SIZE slots of ELEM_SIZE; single consumer;
        // ownership of the dequeued mbufs passes to the burst.
        let n = unsafe {
            dpdk_sys::rte_ring_sc_dequeue_burst_elem(
                self.raw.as_ptr(),
                burst.elems.as_mut_ptr() as *mut std::os::raw::c_void,
                ELEM_SIZE,
                BURST_SIZE as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.len = n;
        burst.next = 0;
        n
    }
}

impl Drop for SteerRing {
    fn drop(&mut self) {
        let mut burst = SteerBurst::new();
        while self.dequeue(&mut burst) > 0 {
            burst.clear();
        }
        // SAFETY: drained; no worker uses the ring any more.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// Packets waiting to be enqueued to one steering ring.
#[derive(Debug)]
pub struct SteerBatch {
    elems: [Elem; BURST_SIZE],
    len: usize,
}

// SAFETY: owns its mbufs; moves with its worker.
unsafe impl Send for SteerBatch {}

impl Default for SteerBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SteerBatch {
    pub fn new() -> Self {
        SteerBatch {
            elems: [EMPTY; BURST_SIZE],
            len: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }
    /// Add a packet; gives it back if the batch is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf, meta: u64) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.elems[self.len] = Elem {
            mbuf: m.into_raw().as_ptr(),
            meta,
        };
        self.len += 1;
        Ok(())
    }
    /// Free every packet still waiting; returns how many.
    pub fn discard(&mut self) -> usize {
        let n = self.len;
        for e in &self.elems[..self.len] {
            // SAFETY: owned by the batch, never enqueued; freed once.
            unsafe { dpdk_sys::rte_pktmbuf_free(e.mbuf) };
        }
        self.len = 0;
        n
    }
}

impl Drop for SteerBatch {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Packets dequeued from a steering ring.
#[derive(Debug)]
pub struct SteerBurst {
    elems: [Elem; BURST_SIZE],
    len: usize,
    next: usize,
}

// SAFETY: owns its mbufs; moves with its worker.
unsafe impl Send for SteerBurst {}

impl Default for SteerBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl SteerBurst {
    pub fn new() -> Self {
        SteerBurst {
            elems: [EMPTY; BURST_SIZE],
            len: 0,
            next: 0,
        }
    }
    fn clear(&mut self) {
        while self.next_packet().is_some() {}
        self.len = 0;
        self.next = 0;
    }
    /// Take the next packet with its metadata.
    #[inline]
    pub fn next_packet(&mut self) -> Option<(Mbuf, u64)> {
        if self.next >= self.len {
            return None;
        }
        let e = self.elems[self.next];
        self.next += 1;
        // SAFETY: elems[..len] came out of the ring, owned by this burst,
        // each taken once.
        NonNull::new(e.mbuf).map(|raw| (unsafe { Mbuf::from_raw(raw) }, e.meta))
    }
}

impl Drop for SteerBurst {
    fn drop(&mut self) {
        self.clear();
    }
}
