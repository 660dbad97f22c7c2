use super::DpdkError;
use std::ffi::CString;
use std::ptr::NonNull;

/// A pool of packet buffers (`rte_pktmbuf_pool_create`).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the per-lcore
// caches are indexed by the calling lcore.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `count` mbufs of `data_room` bytes each (headroom included), with a
    /// per-lcore cache of `cache` buffers, on NUMA socket `socket` (-1: any).
    pub fn new_pktmbuf(
        name: &str,
        count: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::msg("mempool name has NUL"))?;
        // SAFETY: cname is a valid C string; EAL is initialised by the caller
        // (the only way to get here in the daemon is after Eal::init).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("rte_pktmbuf_pool_create({name})")))
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// Buffers currently available (approximate under concurrency).
    pub fn available(&self) -> u32 {
        // SAFETY: raw is a live mempool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Buffers handed out.
    pub fn in_use(&self) -> u32 {
        // SAFETY: raw is a live mempool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the daemon drops the pool only after every port using it
        // was stopped and closed and every mbuf was returned.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
