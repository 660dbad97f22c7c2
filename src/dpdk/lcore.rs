use super::DpdkError;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// What the trampoline reports back: Ok, or the panic message.
type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

struct Launch {
    job: Job,
    outcome: Outcome,
}

/// A Rust closure running on a worker lcore.
#[derive(Debug)]
pub struct LaunchedLcore {
    lcore: u32,
    outcome: Outcome,
    joined: bool,
}

/// The lcore the caller runs on (u32::MAX for non-EAL threads).
pub fn current_lcore() -> u32 {
    // SAFETY: reads a thread-local; no preconditions.
    unsafe { dpdk_sys::rte_lcore_id() }
}

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Launch> leaked by `launch`, consumed exactly once.
    let launch = unsafe { Box::from_raw(arg as *mut Launch) };
    let Launch { job, outcome } = *launch;
    // A panic must never unwind into C: catch it and report it.
    let result = catch_unwind(AssertUnwindSafe(job)).map_err(|e| {
        e.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".into())
    });
    let failed = result.is_err();
    if let Ok(mut slot) = outcome.lock() {
        *slot = Some(result);
    }
    if failed {
        -1
    } else {
        0
    }
}

impl LaunchedLcore {
    /// Run `f` on worker lcore `lcore` (which must be idle).
    pub fn launch<F>(lcore: u32, f: F) -> Result<LaunchedLcore, DpdkError>
    where
        F: FnOnce() + Send + 'static,
    {
        let outcome: Outcome = Arc::new(Mutex::new(None));
        let arg = Box::into_raw(Box::new(Launch {
            job: Box::new(f),
            outcome: outcome.clone(),
        }));
        // SAFETY: trampoline takes ownership of arg when the launch succeeds.
        let ret =
            unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg as *mut c_void, lcore) };
        if ret < 0 {
            // SAFETY: launch failed, so the trampoline never saw arg.
            drop(unsafe { Box::from_raw(arg) });
            return Err(DpdkError::from_ret(format!("launch on lcore {lcore}"), ret));
        }
        Ok(LaunchedLcore {
            lcore,
            outcome,
            joined: false,
        })
    }

    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Whether the closure has returned (or panicked) already.
    pub fn finished(&self) -> bool {
        self.outcome.lock().map(|o| o.is_some()).unwrap_or(true)
    }

    /// Wait for the closure to return. Err carries a panic message.
    pub fn join(mut self) -> Result<(), String> {
        self.wait()
    }

    fn wait(&mut self) -> Result<(), String> {
        if self.joined {
            return Ok(());
        }
        // SAFETY: lcore was launched by us; waiting is always allowed.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) };
        self.joined = true;
        let slot = self
            .outcome
            .lock()
            .map_err(|_| "outcome lock poisoned")?
            .take();
        slot.unwrap_or(Err("worker ended without reporting".into()))
    }
}

impl Drop for LaunchedLcore {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}
