//! Pinning the calling thread to a CPU, shared by the probe binaries
//! (included with `#[path]`: vsd-gen has no library crate).

/// Pin the calling thread to one CPU.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("cpu {cpu} is out of range"));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, CPU_SET
    // writes a bit inside it (cpu was range-checked above), and
    // sched_setaffinity(0, ...) reads the set for the calling thread only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!(
            "cannot pin to cpu {cpu}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
