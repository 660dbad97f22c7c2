use super::DpdkError;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// The initialised Environment Abstraction Layer. One per process.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// `rte_eal_init` with `args` (args[0] is the program name).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::msg("EAL already initialised in this process"));
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| DpdkError::msg("EAL argument contains a NUL byte"))?;
        // rte_eal_init may permute argv, so it gets its own pointer array; the
        // CStrings outlive the call (DPDK keeps no reference past init except
        // through its own copies).
        let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        // SAFETY: argv holds argv.len() valid NUL-terminated strings that live
        // until after the call; EAL is not yet initialised (checked above).
        let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        // EAL keeps pointers into argv for some options (e.g. the program
        // name); leak the strings so they stay valid for the process.
        std::mem::forget(cargs);
        if ret < 0 {
            EAL_UP.store(false, Ordering::SeqCst);
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// The lcore running `main` (the control thread).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised (we hold an Eal).
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Every enabled lcore other than the main one, in id order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised; rte_get_next_lcore is a pure lookup.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// Whether `lcore` is enabled in this EAL.
    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: EAL is initialised; any lcore id is accepted.
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// EAL's runtime directory for this process's `--file-prefix`
    /// (`/var/run/dpdk/PREFIX` for root). `rte_eal_cleanup` leaves it
    /// behind, so the owner removes it after dropping the Eal.
    pub fn runtime_dir(&self) -> Option<std::path::PathBuf> {
        // SAFETY: EAL is initialised (we hold an Eal); the result points at
        // EAL's static runtime-dir buffer and is copied out at once.
        let p = unsafe { dpdk_sys::rte_eal_get_runtime_dir() };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-NULL and NUL-terminated (EAL writes it with snprintf).
        let s = unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned();
        (!s.is_empty()).then(|| std::path::PathBuf::from(s))
    }

    /// DPDK version string, e.g. "DPDK 22.11.11".
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static string.
        unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_version()) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, after every port, queue and worker the program
        // owned has been stopped and dropped (they borrow or outlive nothing
        // from here by construction of the daemon's shutdown order).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}

/// Current TSC cycle count.
#[inline(always)]
pub fn tsc_now() -> u64 {
    // rte_rdtsc is a static inline in C: through the bindings it is an
    // out-of-line call, twice per loop turn. On x86_64 read the counter here.
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; DPDK requires an x86_64 CPU
        // with an invariant TSC, which is what rte_rdtsc reads too.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the time stamp counter; no preconditions.
        unsafe { dpdk_sys::rte_rdtsc() }
    }
}

/// TSC frequency measured by EAL (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value computed at EAL init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
