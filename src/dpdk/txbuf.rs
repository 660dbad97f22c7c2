use super::{Mbuf, TxQueue, BURST_SIZE};

/// Batches packets for one tx queue: sends when [`BURST_SIZE`] are waiting
/// and whenever the worker calls [`TxBuffer::flush`] at the end of its loop
/// turn. Packets the queue refuses are freed and counted in `dropped`.
#[derive(Debug)]
pub struct TxBuffer {
    queue: TxQueue,
    pending: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    len: usize,
    /// Packets handed to the NIC.
    pub sent: u64,
    /// Packets freed because the tx ring was full.
    pub dropped: u64,
    /// Packets and bytes queued since the last [`TxBuffer::take_queued`]
    /// (the worker folds them into its shared counters once per loop turn
    /// rather than per packet).
    queued: u64,
    queued_bytes: u64,
}

// SAFETY: the buffered mbufs are owned by the buffer; it moves to its worker
// lcore with its TxQueue and is used only there.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    /// Whether the queue's port has its link up ([`TxQueue::link_up`]).
    pub fn link_up(&self) -> bool {
        self.queue.link_up()
    }

    pub fn new(queue: TxQueue) -> Self {
        TxBuffer {
            queue,
            pending: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
            sent: 0,
            dropped: 0,
            queued: 0,
            queued_bytes: 0,
        }
    }

    /// Packets and bytes queued since the last call.
    #[inline]
    pub fn take_queued(&mut self) -> (u64, u64) {
        let q = (self.queued, self.queued_bytes);
        self.queued = 0;
        self.queued_bytes = 0;
        q
    }

    pub fn port(&self) -> u16 {
        self.queue.port()
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue a packet, sending the batch if it is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        self.queued += 1;
        self.queued_bytes += m.len() as u64;
        self.pending[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        if self.len == BURST_SIZE {
            self.flush();
        }
    }

    /// Send `m` now, after everything waiting; if the queue refuses it, it
    /// is given back (not counted in `dropped`) for the caller to try
    /// again later or free. For the rare frame that must not be lost to a
    /// momentarily full queue (a sync message), not for forwarding.
    pub fn send_now(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        self.flush();
        let len = m.len() as u64;
        let mut one = [m.into_raw().as_ptr()];
        // SAFETY: `one` holds one mbuf we own; the driver takes it or not.
        let sent = unsafe { self.queue.tx_burst_raw(&mut one) };
        if sent == 1 {
            self.sent += 1;
            self.queued += 1;
            self.queued_bytes += len;
            return Ok(());
        }
        match std::ptr::NonNull::new(one[0]) {
            // SAFETY: not taken by the driver: still the mbuf we owned.
            Some(raw) => Err(unsafe { Mbuf::from_raw(raw) }),
            None => Ok(()),
        }
    }

    /// Send everything waiting; free and count what the queue refuses.
    #[inline]
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: pending[..len] are mbufs owned by this buffer.
        let sent = unsafe { self.queue.tx_burst_raw(&mut self.pending[..self.len]) };
        self.sent += sent as u64;
        for p in &self.pending[sent..self.len] {
            // SAFETY: not taken by the driver, still ours; freed once.
            unsafe { dpdk_sys::rte_pktmbuf_free(*p) };
            self.dropped += 1;
        }
        self.len = 0;
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        for p in &self.pending[..self.len] {
            // SAFETY: owned by the buffer, never sent; freed once.
            unsafe { dpdk_sys::rte_pktmbuf_free(*p) };
        }
        self.len = 0;
    }
}
