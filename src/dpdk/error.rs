use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: which operation and the errno it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
}

impl DpdkError {
    /// From a negative return code (`-errno`) or a positive errno.
    pub fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        DpdkError {
            op: op.into(),
            errno: ret.abs(),
        }
    }

    /// From `rte_errno` (for calls that return NULL on failure).
    pub fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno; no preconditions.
        let errno = unsafe { dpdk_sys::vsd_rte_errno() };
        DpdkError {
            op: op.into(),
            errno,
        }
    }

    pub fn msg(op: impl Into<String>) -> Self {
        DpdkError {
            op: op.into(),
            errno: 0,
        }
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errno == 0 {
            return write!(f, "{}", self.op);
        }
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string for any errno value.
        let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.errno)) };
        write!(
            f,
            "{}: {} (errno {})",
            self.op,
            text.to_string_lossy(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}
