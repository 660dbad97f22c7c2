use super::{DpdkError, Mempool};
use std::ptr::NonNull;

/// Packets per rx burst and per tx buffer.
pub const BURST_SIZE: usize = 32;

/// One owned packet buffer. Dropping it returns it to its pool.
///
/// vsd configures ports without scatter, so a received packet is one segment;
/// [`Mbuf::data`] covers the first segment and multi-segment packets are
/// rejected by the data plane before parsing.
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an Mbuf is uniquely owned; moving it to another lcore (through a
// steering ring) transfers that ownership. Freeing from any lcore is allowed.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Allocate an empty mbuf from `pool`.
    pub fn alloc(pool: &Mempool) -> Result<Mbuf, DpdkError> {
        // SAFETY: pool is a live mempool.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| Mbuf { raw })
            .ok_or_else(|| DpdkError::msg("mbuf pool exhausted"))
    }

    /// Take ownership of a raw mbuf pointer.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns or frees.
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Give up ownership (e.g. to a tx queue or ring).
    #[inline]
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    #[inline]
    fn m(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: raw is a valid mbuf we own.
        unsafe { self.raw.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut dpdk_sys::rte_mbuf {
        // SAFETY: raw is a valid mbuf we own exclusively.
        unsafe { self.raw.as_mut() }
    }

    /// Bytes of packet data in the first segment.
    #[inline]
    pub fn len(&self) -> usize {
        self.m().data_len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segments in the chain.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.m().nb_segs
    }

    /// Port the packet arrived on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.m().port
    }

    /// The packet bytes (first segment).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes
        // inside the mbuf's buffer, which we own for the borrow's lifetime.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// The packet bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m_mut();
        // SAFETY: as in `data`, and we hold the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Free space before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.m().data_off as usize
    }

    /// Free space after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        (m.buf_len as usize).saturating_sub(m.data_off as usize + m.data_len as usize)
    }

    /// Grow the packet at the front by `n` bytes (uninitialised contents).
    /// Returns false, changing nothing, without enough headroom.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.headroom() || n > u16::MAX as usize {
            return false;
        }
        // What rte_pktmbuf_prepend does, inline (it is a static inline in
        // C; through the bindings it would be a call per TUN packet).
        let n = n as u16; // <= headroom (a u16)
        let m = self.m_mut();
        m.data_off -= n;
        m.data_len += n;
        m.pkt_len += u32::from(n);
        true
    }

    /// Remove `n` bytes from the front. False if the packet is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        // SAFETY: raw is valid; length checked above.
        !unsafe { dpdk_sys::rte_pktmbuf_adj(self.raw.as_ptr(), n as u16) }.is_null()
    }

    /// Grow the packet at the end by `n` bytes (uninitialised contents).
    #[inline]
    pub fn append(&mut self, n: usize) -> bool {
        if n > self.tailroom() || n > u16::MAX as usize {
            return false;
        }
        // SAFETY: raw is valid; tailroom checked above.
        !unsafe { dpdk_sys::rte_pktmbuf_append(self.raw.as_ptr(), n as u16) }.is_null()
    }

    /// Shorten the packet to `len` bytes (single segment).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() && self.segments() == 1 {
            let m = self.m_mut();
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
    }

    /// Replace the packet contents with `bytes`. False if they don't fit.
    pub fn set_data(&mut self, bytes: &[u8]) -> bool {
        if self.segments() != 1 {
            return false;
        }
        let room = self.len() + self.tailroom();
        if bytes.len() > room {
            return false;
        }
        let m = self.m_mut();
        m.data_len = bytes.len() as u16;
        m.pkt_len = bytes.len() as u32;
        self.data_mut().copy_from_slice(bytes);
        true
    }

    /// RSS hash the NIC computed, if it set one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.m();
        if m.ol_flags & dpdk_sys::mbuf_flags::RX_RSS_HASH != 0 {
            // SAFETY: the flag says the rss member of the hash union is valid.
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }

    /// Offload flags (`ol_flags`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.m().ol_flags
    }

    /// Ask the NIC to compute checksums: `l2`/`l3` header lengths and the
    /// `RTE_MBUF_F_TX_*` flags to add.
    #[inline]
    pub fn request_tx_offload(&mut self, l2_len: u8, l3_len: u16, flags: u64) {
        let m = self.m_mut();
        // tx_offload packs l2_len (7 bits) and l3_len (9 bits) in its low 16 bits.
        let lens = (l2_len as u64 & 0x7f) | ((l3_len as u64 & 0x1ff) << 7);
        // SAFETY: tx_offload is a plain u64 view of the bitfield union.
        unsafe {
            let t = &mut m.__bindgen_anon_3.tx_offload;
            *t = (*t & !0xffff) | lens;
        }
        m.ol_flags |= flags;
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own raw; it is freed exactly once here.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Up to [`BURST_SIZE`] received packets. Unconsumed packets are freed on drop.
#[derive(Debug)]
pub struct MbufBurst {
    pub(crate) ptrs: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    pub(crate) len: usize,
    pub(crate) next: usize,
}

impl Default for MbufBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl MbufBurst {
    pub fn new() -> Self {
        MbufBurst {
            ptrs: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
            next: 0,
        }
    }

    /// Packets not yet taken.
    pub fn remaining(&self) -> usize {
        self.len - self.next
    }

    /// Hint the CPU to fetch the first cache line of packet `i` ahead of use.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i < self.len {
            let p = self.ptrs[i];
            // SAFETY: p is a valid received mbuf; reading buf_addr/data_off
            // is a plain field read, prefetch has no side effects.
            unsafe {
                let data = ((*p).buf_addr as *const u8).add((*p).data_off as usize);
                #[cfg(target_arch = "x86_64")]
                std::arch::x86_64::_mm_prefetch(data as *const i8, std::arch::x86_64::_MM_HINT_T0);
                #[cfg(not(target_arch = "x86_64"))]
                let _ = data;
            }
        }
    }

    pub(crate) fn reset(&mut self) {
        self.drop_rest();
        self.len = 0;
        self.next = 0;
    }

    fn drop_rest(&mut self) {
        while let Some(m) = self.next_packet() {
            drop(m);
        }
    }

    /// Take the next packet.
    #[inline]
    pub fn next_packet(&mut self) -> Option<Mbuf> {
        if self.next >= self.len {
            return None;
        }
        let p = self.ptrs[self.next];
        self.next += 1;
        // SAFETY: ptrs[..len] were filled by rx_burst/ring dequeue with mbufs
        // now owned by this burst; each index is taken once.
        NonNull::new(p).map(|raw| unsafe { Mbuf::from_raw(raw) })
    }
}

impl Iterator for MbufBurst {
    type Item = Mbuf;
    fn next(&mut self) -> Option<Mbuf> {
        self.next_packet()
    }
}

impl Drop for MbufBurst {
    fn drop(&mut self) {
        self.drop_rest();
    }
}

impl crate::lb::packet::PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        Mbuf::append(self, n)
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        Mbuf::truncate(self, len)
    }
}
