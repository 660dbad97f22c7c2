//! Start-up checks and clean failure.
//!
//! What: everything that can fail for reasons outside the config's syntax
//! is checked before EAL starts (tap interface names, the control socket
//! not served by a live process, the Prometheus address free: the metrics
//! listener is bound here and kept), and `vsd --check` runs the same
//! checks. What EAL leaves on disk is removed when start-up fails, and
//! workers are told to stop before anyone waits for them.
//!
//! Why: workers used to be launched before the socket and listener were
//! bound, and the error path then waited forever for workers nobody had
//! told to stop (100% CPU, SIGTERM ignored); a tap name too long for the
//! kernel passed `--check` and failed at start, leaving
//! `/var/run/dpdk/<prefix>` behind.
//!
//! Failure modes: the control socket can still be taken between the check
//! and its bind after the ports are up (a race with another starting vsd);
//! that bind fails before any worker is launched and the same cleanup runs.
//! A runtime directory that existed before EAL started (another process
//! with the same prefix, or a crash's leftovers) is never removed here.

use crate::control::config::{Config, PortDevice};
use crate::control::metrics_http::MetricsServer;
use crate::dpdk::LaunchedLcore;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// What the checks bound and the daemon keeps.
#[derive(Debug)]
pub struct Bound {
    pub metrics: Option<MetricsServer>,
}

/// The checks `vsd --check` runs: [`preflight`], then release everything.
pub fn check(cfg: &Config) -> Result<(), String> {
    crate::control::health::validate(cfg)?;
    preflight(cfg).map(drop)
}

/// Check everything that can be checked before EAL starts; bind the
/// metrics listener.
pub fn preflight(cfg: &Config) -> Result<Bound, String> {
    for pc in &cfg.ports {
        if let PortDevice::Vdev(spec) = &pc.device {
            check_vdev(&pc.name, spec)?;
        }
    }
    super::twin::preflight(cfg)?;
    if let Some(a) = &cfg.announce {
        crate::control::announce::preflight(a)?;
    }
    check_control_socket(&cfg.control.socket)?;
    let metrics = match cfg.control.prometheus {
        Some(addr) => Some(
            MetricsServer::bind(addr).map_err(|e| format!("cannot listen for Prometheus: {e}"))?,
        ),
        None => None,
    };
    Ok(Bound { metrics })
}

/// A net_tap device's interface names must be names the kernel takes.
fn check_vdev(port: &str, spec: &str) -> Result<(), String> {
    let mut parts = spec.split(',');
    let driver = parts.next().unwrap_or_default();
    if !(driver.starts_with("net_tap") || driver.starts_with("net_tun")) {
        return Ok(());
    }
    for arg in parts {
        let Some((key, value)) = arg.split_once('=') else {
            continue;
        };
        if key != "iface" && key != "remote" {
            continue;
        }
        let bad = if value.is_empty() {
            Some("is empty".to_string())
        } else if value.len() > IFNAME_MAX {
            Some(format!(
                "is {} bytes long; Linux interface names have at most {IFNAME_MAX}",
                value.len()
            ))
        } else if value == "." || value == ".." {
            Some("is not a valid interface name".to_string())
        } else {
            value
                .chars()
                .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
                .map(|c| format!("contains {c:?}, which Linux refuses in interface names"))
        };
        if let Some(why) = bad {
            return Err(format!("port {port}: {key} {value:?} {why}"));
        }
    }
    Ok(())
}

/// The control socket's directory exists or can be made (its nearest
/// existing ancestor is a directory; nothing is created here), and no live
/// process answers on the socket (a stale file is replaced at bind).
fn check_control_socket(path: &Path) -> Result<(), String> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        dir = d.parent();
    }
    if let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if !d.is_dir() {
            return Err(format!(
                "control socket {}: {} is not a directory",
                path.display(),
                d.display()
            ));
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(format!(
                "control socket {}: a file that is not a socket is in the way (not removed)",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "control socket {} is in use by a running process (another vsd?)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// EAL's runtime directory for these EAL arguments, as EAL names it:
/// `/var/run/dpdk/<prefix>` for root, else under `$XDG_RUNTIME_DIR`
/// (or /tmp); prefix from `--file-prefix`, default "rte".
pub fn runtime_dir_for(argv: &[String]) -> PathBuf {
    let mut prefix = "rte".to_string();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if let Some(p) = a.strip_prefix("--file-prefix=") {
            prefix = p.to_string();
        } else if a == "--file-prefix" {
            if let Some(p) = it.next() {
                prefix = p.clone();
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    let base = if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    };
    base.join("dpdk").join(prefix)
}

/// The runtime directory, remembered before EAL starts: removed after a
/// failed start only if this process created it.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    existed: bool,
}

impl RuntimeDir {
    pub fn before_init(argv: &[String]) -> RuntimeDir {
        let path = runtime_dir_for(argv);
        RuntimeDir {
            existed: path.exists(),
            path,
        }
    }

    /// After a failed `rte_eal_init`.
    pub fn remove_if_created(&self) {
        if !self.existed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The launched workers. Dropped (on any error path too), they are told to
/// stop first and then waited for: waiting for a worker nobody told to stop
/// never ends.
pub struct Workers {
    stop: Arc<AtomicBool>,
    launched: Vec<LaunchedLcore>,
}

impl Workers {
    pub fn new(stop: Arc<AtomicBool>) -> Workers {
        Workers {
            stop,
            launched: Vec::new(),
        }
    }

    pub fn push(&mut self, l: LaunchedLcore) {
        self.launched.push(l);
    }

    /// Each worker's thread has ended, in launch order.
    pub fn finished_each(&self) -> Vec<bool> {
        self.launched.iter().map(LaunchedLcore::finished).collect()
    }

    /// Whether a worker has ended (it only should when told to).
    pub fn any_finished(&self) -> bool {
        self.launched.iter().any(LaunchedLcore::finished)
    }

    /// Stop and join every worker: (lcore, panic message) of those that
    /// failed.
    pub fn stop_and_join(&mut self) -> Vec<(u32, String)> {
        self.stop.store(true, Ordering::SeqCst);
        self.launched
            .drain(..)
            .filter_map(|l| {
                let lcore = l.lcore();
                l.join().err().map(|e| (lcore, e))
            })
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_linux_refuses_are_refused() {
        assert!(check_vdev("lan", "net_tap0,iface=vsd-lan0").is_ok());
        assert!(check_vdev("lan", "net_tap0").is_ok());
        assert!(check_vdev("lan", "net_tap0,iface=abcdefghijklmno").is_ok());
        let e = check_vdev("lan", "net_tap0,iface=abcdefghijklmnop").unwrap_err();
        assert!(e.contains("16 bytes") && e.contains("at most 15"), "{e}");
        assert!(check_vdev("lan", "net_tap1,remote=eth0,iface=a/b").is_err());
        assert!(check_vdev("lan", "net_tap1,iface=a b").is_err());
        assert!(check_vdev("lan", "net_tap1,iface=").is_err());
        assert!(check_vdev("lan", "net_tap1,remote=0123456789abcdefg").is_err());
        // other drivers' arguments are theirs
        assert!(check_vdev("p", "net_memif0,socket=/tmp/a-very-long-socket-name.sock").is_ok());
    }

    #[test]
    fn runtime_dir_follows_the_file_prefix() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let d = runtime_dir_for(&argv(&["vsd", "--file-prefix=abc"]));
        assert!(d.ends_with("dpdk/abc"), "{}", d.display());
        let d = runtime_dir_for(&argv(&["vsd", "--file-prefix", "xyz"]));
        assert!(d.ends_with("dpdk/xyz"), "{}", d.display());
        assert!(runtime_dir_for(&argv(&["vsd"])).ends_with("dpdk/rte"));
    }

    #[test]
    fn a_live_control_socket_is_refused_and_a_stale_one_is_not() {
        let dir = std::env::temp_dir().join(format!("vsd-startup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("vsd.sock");
        assert!(check_control_socket(&path).is_ok());
        assert!(!dir.exists(), "the check creates nothing");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = check_control_socket(&path).unwrap_err();
        assert!(e.contains("in use"), "{e}");
        drop(live);
        // the file stays, nobody listens: stale
        assert!(path.exists());
        assert!(check_control_socket(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(check_control_socket(Path::new("/dev/null/vsd.sock")).is_err());
        // not a socket: never taken for a stale one
        let file = std::env::temp_dir().join(format!("vsd-startup-file-{}", std::process::id()));
        std::fs::write(&file, "keep me").unwrap();
        let e = check_control_socket(&file).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        let _ = std::fs::remove_file(&file);
    }
}
