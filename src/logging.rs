//! vsd's log: levels, targets and journald-friendly single lines.
//!
//! **What.** Everything vsd says goes through the `log` facade, written by
//! `env_logger` to stderr, one line per message:
//!
//! ```text
//! vsd: reloaded /etc/vsd/vsd.toml: services: 0 added, ...     (info)
//! vsd: warning: [[sync_daemon]] changed in ...                (warn)
//! vsd: error: worker on lcore 1 failed: ...                   (error)
//! vsd: dpdk: EAL: No free 2048 kB hugepages reported ...      (DPDK, any level)
//! ```
//!
//! Under systemd (stderr is the journal: `JOURNAL_STREAM` names it) each
//! line starts with its syslog priority, `<3>` error ... `<7>` debug
//! (sd-daemon(3)), so `journalctl -p warning -u vsd` works; journald adds
//! the time. Elsewhere lines get an RFC 3339 time in front.
//!
//! **Filter.** `--log-level SPEC` or `VSD_LOG=SPEC`, env_logger's syntax:
//! `info` (default), `debug`, `warn,dpdk=error`... Target `dpdk` is DPDK's
//! own log (see [`crate::dpdk::log`]): at the default level its INFO
//! chatter is dropped and its notices and warnings kept.
//!
//! **Failure modes.** A bad SPEC is an error at start (exit 2), never
//! silently the default; a logger set twice (tests) keeps the first.

use std::io::Write as _;

/// The default filter.
pub const DEFAULT_SPEC: &str = "info";

/// Whether stderr is the systemd journal (`JOURNAL_STREAM=dev:ino` of fd 2).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// syslog priority of a level.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The line for one message (without time or priority prefix).
pub fn format_line(level: log::Level, target: &str, msg: &std::fmt::Arguments<'_>) -> String {
    let tag = match level {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        log::Level::Info => "",
        log::Level::Debug => "debug: ",
        log::Level::Trace => "trace: ",
    };
    if target == "dpdk" {
        format!("vsd: dpdk: {tag}{msg}")
    } else {
        format!("vsd: {tag}{msg}")
    }
}

/// Check a filter spec without installing it.
pub fn check_spec(spec: &str) -> Result<(), String> {
    // env_logger ignores what it cannot parse; refuse it instead
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if level.parse::<log::LevelFilter>().is_err() && !part.contains('=') {
            // a bare word that is no level is a target (all levels)
            continue;
        }
        if level.parse::<log::LevelFilter>().is_err() {
            return Err(format!(
                "log level {part:?}: {level:?} is not one of off, error, warn, info, debug, trace"
            ));
        }
    }
    Ok(())
}

/// Install the logger: `spec` (from `--log-level`), else `VSD_LOG`, else
/// [`DEFAULT_SPEC`].
pub fn init(spec: Option<&str>) -> Result<(), String> {
    let env = std::env::var("VSD_LOG").ok();
    let spec = spec.or(env.as_deref()).unwrap_or(DEFAULT_SPEC);
    check_spec(spec)?;
    let journal = stderr_is_journal();
    let mut b = env_logger::Builder::new();
    b.parse_filters(spec)
        .target(env_logger::Target::Stderr)
        .format(move |buf, r| {
            let line = format_line(r.level(), r.target(), r.args());
            if journal {
                writeln!(buf, "<{}>{line}", priority(r.level()))
            } else {
                writeln!(buf, "{} {line}", buf.timestamp_millis())
            }
        });
    // a second init (tests) keeps the first logger
    let _ = b.try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_level_and_dpdk_its_target() {
        let l = |level, target, a: std::fmt::Arguments<'_>| format_line(level, target, &a);
        assert_eq!(
            l(log::Level::Info, "vsd::daemon", format_args!("reloaded x")),
            "vsd: reloaded x"
        );
        assert_eq!(
            l(log::Level::Warn, "vsd", format_args!("w")),
            "vsd: warning: w"
        );
        assert_eq!(
            l(log::Level::Error, "vsd", format_args!("e")),
            "vsd: error: e"
        );
        assert_eq!(
            l(log::Level::Info, "dpdk", format_args!("EAL: x")),
            "vsd: dpdk: EAL: x"
        );
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Error), 3);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(check_spec("info").is_ok());
        assert!(check_spec("warn,dpdk=error").is_ok());
        assert!(check_spec("vsd::health=debug").is_ok());
        assert!(check_spec("dpdk=loud").is_err());
    }
}
