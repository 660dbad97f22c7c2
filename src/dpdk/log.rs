//! DPDK's log messages (EAL, PMDs) through vsd's logger, target `dpdk`.
//!
//! EAL writes its own lines to stdout/syslog with no severity a reader can
//! see, and they cannot be filtered apart from vsd's. A stdio stream whose
//! writes land in [`write_line`] replaces EAL's (`rte_openlog_stream`, set
//! before `rte_eal_init` so even its first lines come through); the
//! message's DPDK level (`rte_log_cur_msg_loglevel`, set by `rte_vlog` on
//! the writing thread) becomes a `log` level:
//!
//! | DPDK | log |
//! |---|---|
//! | EMERG, ALERT, CRIT, ERR | error |
//! | WARNING | warn |
//! | NOTICE | info |
//! | INFO | debug |
//! | DEBUG | trace |
//!
//! so the default filter (`info`) keeps EAL's notices and warnings and
//! drops its INFO chatter ("EAL: Detected CPU lcores: 2", ...).

use std::os::raw::{c_char, c_void};

use super::error::DpdkError;

/// The `log` level of a DPDK log level.
pub fn level_of(dpdk_level: i32) -> log::Level {
    match dpdk_level {
        i32::MIN..=4 => log::Level::Error,
        5 => log::Level::Warn,
        6 => log::Level::Info,
        7 => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

/// The stream's write function: one call per flushed message.
unsafe extern "C" fn write_line(_cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    if buf.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: stdio hands us `size` readable bytes at `buf`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    // SAFETY: a plain per-thread read, set by rte_vlog on this thread.
    let level = level_of(unsafe { dpdk_sys::rte_log_cur_msg_loglevel() });
    for line in String::from_utf8_lossy(bytes).lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            log::log!(target: "dpdk", level, "{line}");
        }
    }
    size as isize
}

/// Send DPDK's log through vsd's logger from now on (call before
/// `rte_eal_init`). The stream lives as long as the process.
pub fn route_to_logger() -> Result<(), DpdkError> {
    // SAFETY: the helper only calls fopencookie/setvbuf with our callback.
    let f = unsafe { dpdk_sys::vsd_log_stream(Some(write_line)) };
    if f.is_null() {
        return Err(DpdkError::from_ret("fopencookie", libc::ENOMEM));
    }
    // SAFETY: f is a valid stream that is never closed.
    let r = unsafe { dpdk_sys::rte_openlog_stream(f) };
    if r < 0 {
        return Err(DpdkError::from_ret("rte_openlog_stream", r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpdk_levels_map_to_log_levels() {
        assert_eq!(level_of(1), log::Level::Error);
        assert_eq!(level_of(4), log::Level::Error);
        assert_eq!(level_of(5), log::Level::Warn);
        assert_eq!(level_of(6), log::Level::Info);
        assert_eq!(level_of(7), log::Level::Debug);
        assert_eq!(level_of(8), log::Level::Trace);
    }
}
