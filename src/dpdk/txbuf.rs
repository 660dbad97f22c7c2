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
}

// SAFETY: the buffered mbufs are owned by the buffer; it moves to its worker
// lcore with its TxQueue and is used only there.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    pub fn new(queue: TxQueue) -> Self {
        TxBuffer {
            queue,
            pending: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
            sent: 0,
            dropped: 0,
        }
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
        self.pending[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        if self.len == BURST_SIZE {
            self.flush();
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
