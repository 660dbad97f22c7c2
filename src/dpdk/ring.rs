use super::{DpdkError, Mbuf, MbufBurst, BURST_SIZE};
use std::ffi::CString;
use std::ptr::NonNull;

/// A single-producer single-consumer ring of mbufs, used to steer packets
/// from the worker that received them to the worker that owns their flow.
#[derive(Debug)]
pub struct MbufRing {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: an SP/SC rte_ring is safe with one producer and one consumer on
// different threads; the data plane gives each end to one worker.
unsafe impl Send for MbufRing {}
// SAFETY: as above; enqueue and dequeue touch separate head/tail pairs.
unsafe impl Sync for MbufRing {}

const RING_F_SP_ENQ: u32 = 1;
const RING_F_SC_DEQ: u32 = 2;

impl MbufRing {
    /// A ring of `size` slots (a power of two; one is kept empty).
    pub fn new(name: &str, size: u32) -> Result<MbufRing, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::msg("ring name has NUL"))?;
        // SAFETY: valid name; EAL initialised by the caller.
        let raw = unsafe {
            dpdk_sys::rte_ring_create(cname.as_ptr(), size, -1, RING_F_SP_ENQ | RING_F_SC_DEQ)
        };
        NonNull::new(raw)
            .map(|raw| MbufRing { raw })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("rte_ring_create({name})")))
    }

    /// Producer side: enqueue as many of `pkts` as fit; the rest are
    /// returned to the caller.
    pub fn enqueue_burst(&self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let mut ptrs = [std::ptr::null_mut::<std::os::raw::c_void>(); BURST_SIZE];
        let n = pkts.len().min(BURST_SIZE);
        for (slot, m) in ptrs.iter_mut().zip(pkts.iter()) {
            *slot = m_ptr(m);
        }
        // SAFETY: ptrs[..n] are valid mbuf pointers; single producer.
        let done = unsafe {
            dpdk_sys::rte_ring_sp_enqueue_burst(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                n as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // ownership of the first `done` passed to the ring
        for m in pkts.drain(..done) {
            let _ = m.into_raw();
        }
        done
    }

    /// Consumer side: fill `burst` (emptying it first).
    pub fn dequeue_burst(&self, burst: &mut MbufBurst) -> usize {
        burst.reset();
        // SAFETY: burst.ptrs has BURST_SIZE slots; single consumer; the ring
        // holds only mbuf pointers whose ownership passes to the burst.
        let n = unsafe {
            dpdk_sys::rte_ring_sc_dequeue_burst(
                self.raw.as_ptr(),
                burst.ptrs.as_mut_ptr() as *mut *mut std::os::raw::c_void,
                BURST_SIZE as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.len = n;
        n
    }
}

fn m_ptr(m: &Mbuf) -> *mut std::os::raw::c_void {
    // peek at the pointer without giving up ownership
    let raw = m as *const Mbuf as *const NonNull<dpdk_sys::rte_mbuf>;
    // SAFETY: Mbuf is a single NonNull field, so its bits are the pointer.
    unsafe { (*raw).as_ptr() as *mut std::os::raw::c_void }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut burst = MbufBurst::new();
        while self.dequeue_burst(&mut burst) > 0 {
            burst.reset();
        }
        // SAFETY: drained; no worker uses the ring any more.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}
