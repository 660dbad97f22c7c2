//! What the generator needs beyond `vsd::dpdk`: bulk mbuf allocation and
//! freeing (one call per burst instead of one per packet, which matters at
//! 10+ Mpps on one core) and keeping stdout for the JSON report.
//!
//! Candidates for `src/dpdk`: `Mempool::alloc_bulk` and a bulk free of
//! owned mbufs; with those this module would shrink to [`StdoutGuard`].

use std::ffi::CString;
use std::ptr::NonNull;
use vsd::dpdk::DpdkError;

/// A raw handle on a mempool created through `vsd::dpdk::Mempool`, found
/// by name (the wrapper keeps its pointer crate-private). It does not own
/// the pool: the `Mempool` must outlive it.
#[derive(Debug)]
pub struct BulkPool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: mempools are multi-thread safe; the generator uses this handle on
// its one lcore only anyway.
unsafe impl Send for BulkPool {}

impl BulkPool {
    /// The pool named `name`.
    pub fn lookup(name: &str) -> Result<BulkPool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::msg("pool name has NUL"))?;
        // SAFETY: cname is a valid C string; the lookup only reads EAL's
        // mempool list (EAL is initialised: the pool was just created).
        let raw = unsafe { dpdk_sys::rte_mempool_lookup(cname.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| BulkPool { raw })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("rte_mempool_lookup({name})")))
    }

    /// Fills all of `out` with fresh mbufs, or none of it (false).
    #[inline]
    pub fn alloc_bulk(&self, out: &mut [*mut dpdk_sys::rte_mbuf]) -> bool {
        if out.is_empty() {
            return true;
        }
        // SAFETY: the pool is live (the Mempool outlives this handle); out
        // has room for out.len() pointers, which the call fills on success.
        let ret = unsafe {
            dpdk_sys::rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), out.as_mut_ptr(), out.len() as u32)
        };
        ret == 0
    }
}

/// Frees `ptrs`, which the caller owns and never uses again.
///
/// # Safety
/// Every pointer must be a valid mbuf owned by the caller (not also held
/// by an `Mbuf`, a queue or another array).
#[inline]
pub unsafe fn free_bulk(ptrs: &mut [*mut dpdk_sys::rte_mbuf]) {
    if ptrs.is_empty() {
        return;
    }
    // SAFETY: per the function's contract.
    unsafe { dpdk_sys::rte_pktmbuf_free_bulk(ptrs.as_mut_ptr(), ptrs.len() as u32) };
}

/// Keeps the process's stdout for the JSON report and points file
/// descriptor 1 at stderr, so DPDK's log lines (which EAL writes to
/// stdout) and anything a PMD prints cannot mix into the report.
#[derive(Debug)]
pub struct StdoutGuard {
    report_fd: i32,
}

impl StdoutGuard {
    /// Redirect fd 1 to fd 2, keeping a duplicate of the original stdout.
    pub fn divert() -> std::io::Result<StdoutGuard> {
        // SAFETY: dup of a descriptor the process owns; no memory involved.
        let report_fd = unsafe { libc::dup(1) };
        if report_fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are open; dup2 atomically replaces fd 1.
        if unsafe { libc::dup2(2, 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StdoutGuard { report_fd })
    }

    /// Write `text` to the original stdout.
    pub fn write_report(&self, text: &str) -> std::io::Result<()> {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            // SAFETY: report_fd is open; rest points at rest.len() readable bytes.
            let n = unsafe { libc::write(self.report_fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            rest = rest.get(n as usize..).unwrap_or(&[]);
        }
        Ok(())
    }
}

impl Drop for StdoutGuard {
    fn drop(&mut self) {
        // SAFETY: report_fd was opened by divert and is closed once.
        unsafe { libc::close(self.report_fd) };
    }
}
