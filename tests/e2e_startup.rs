//! Start-up failures end to end (issue 12 item 1): every way vsd can fail
//! to start ends the process with a non-zero status and the reason, within
//! a bound (never a hang), and leaves nothing behind: no EAL runtime
//! directory, no hugepage files, no control socket, no tap interface.
//! `vsd --check` refuses the same configurations where it can tell.
//!
//! Before: with the control socket served by a live vsd or the Prometheus
//! port taken, vsd logged "running", spun at 100% CPU, ignored SIGTERM and
//! died only to SIGKILL; a tap name longer than 15 bytes passed `--check`
//! and failures after EAL start left `/var/run/dpdk/<prefix>` behind.
//!
//! Needs root, /dev/net/tun and hugepages; under CI=true a missing
//! prerequisite fails.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One vsd at a time (the one in `socket_in_use...` busy-polls a core).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The longest a failing start may take: generous, it only tells a hang
/// from an answer.
const BOUND: Duration = Duration::from_secs(60);

/// A configuration with one tap port named `tap`.
fn config(prefix: &str, socket: &Path, device: &str, extra: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true

[lcores]
control = 0
workers = [1]

[control]
socket = "{}"
{extra}

[[port]]
name = "lan0"
device = "{device}"
addresses = ["198.18.0.1/24"]
"#,
        socket.display()
    )
}

/// How one vsd run ended.
struct Ended {
    code: Option<i32>,
    stderr: String,
}

/// Run vsd (with `--check` if asked) on `cfg`; panic if it is still
/// running after [`BOUND`] (killed then).
fn run_vsd(dir: &Path, cfg: &str, check: bool) -> Ended {
    let path = dir.join(if check { "check.toml" } else { "vsd.toml" });
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vsd"));
    if check {
        cmd.arg("--check");
    }
    cmd.arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = common::topo::die_with_parent(&mut cmd)
        .spawn()
        .expect("spawn vsd");
    let ended = wait_for(BOUND, || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "vsd {}did not end within {BOUND:?}:\n{}",
            if check { "--check " } else { "" },
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = child.wait_with_output().unwrap();
    Ended {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a failed start must not leave behind.
fn assert_nothing_left(prefix: &str, socket: Option<&Path>, tap: &str) {
    let runtime = PathBuf::from(format!("/var/run/dpdk/{prefix}"));
    assert!(
        !runtime.exists(),
        "{} left behind: {:?}",
        runtime.display(),
        std::fs::read_dir(&runtime)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    for dir in ["/dev/hugepages", "/mnt/huge"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(&format!("{prefix}map_")),
                    "hugepage file {dir}/{name} left behind"
                );
            }
        }
    }
    if let Some(s) = socket {
        assert!(!s.exists(), "control socket {} left behind", s.display());
    }
    assert!(
        !sh_any("ip", &["link", "show", tap]).status.success(),
        "tap {tap} left behind"
    );
}

/// A failed start: status 1, `why` in the message, nothing left.
fn assert_fails_cleanly(e: &Ended, why: &str, prefix: &str, socket: Option<&Path>, tap: &str) {
    assert_eq!(e.code, Some(1), "exit status; stderr:\n{}", e.stderr);
    assert!(
        e.stderr.contains(why),
        "the reason ({why:?}) is not in the message:\n{}",
        e.stderr
    );
    assert!(
        !e.stderr.contains("vsd: running"),
        "workers were launched before the failure:\n{}",
        e.stderr
    );
    assert_nothing_left(prefix, socket, tap);
}

/// Everything one case needs: a temp dir, a DPDK prefix (guarded), a tap
/// name.
struct Case {
    dir: common::topo::TempDir,
    prefix: common::topo::DpdkPrefix,
    tap: String,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: common::topo::TempDir::new("vsd-start-"),
            prefix: common::topo::DpdkPrefix::new("vsdst"),
            tap: unique("vst"),
        }
    }
    fn socket(&self) -> PathBuf {
        self.dir.path.join("vsd.sock")
    }
    fn config(&self, device: &str, extra: &str) -> String {
        config(&self.prefix.name, &self.socket(), device, extra)
    }
    fn tap_device(&self) -> String {
        format!("net_tap0,iface={}", self.tap)
    }
}

#[test]
fn a_tap_name_longer_than_15_bytes_is_refused_by_check_and_at_start() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    let c = Case::new();
    let long = "vsdtap-0123456789"; // 17 bytes
    let cfg = c.config(&format!("net_tap0,iface={long}"), "");
    for check in [false, true] {
        let e = run_vsd(&c.dir.path, &cfg, check);
        assert_fails_cleanly(&e, "at most 15", &c.prefix.name, Some(&c.socket()), long);
    }
    // and a good name passes --check
    let e = run_vsd(&c.dir.path, &c.config(&c.tap_device(), ""), true);
    assert_eq!(e.code, Some(0), "{}", e.stderr);
}

#[test]
fn a_control_socket_served_by_a_live_vsd_is_refused_and_left_alone() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    // the live vsd
    let holder_prefix = common::topo::DpdkPrefix::new("vsdsh");
    let holder_tap = unique("vsh");
    let mut holder = Vsd::start(&config(
        &holder_prefix.name,
        Path::new("{dir}/vsd.sock"),
        &format!("net_tap0,iface={holder_tap}"),
        "",
    ));
    let c = Case::new();
    let cfg = config(&c.prefix.name, &holder.socket, &c.tap_device(), "");
    for check in [false, true] {
        let e = run_vsd(&c.dir.path, &cfg, check);
        assert_fails_cleanly(&e, "in use", &c.prefix.name, None, &c.tap);
    }
    // the live vsd keeps its socket and answers
    assert!(holder.socket.exists(), "the live vsd's socket was removed");
    let out = holder.vsadm(&["-Ln"]);
    assert!(
        out.status.success(),
        "the live vsd no longer answers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = holder.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_taken_prometheus_port_is_refused_by_check_and_at_start() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let c = Case::new();
    let cfg = c.config(&c.tap_device(), &format!("prometheus = \"{addr}\""));
    for check in [false, true] {
        let e = run_vsd(&c.dir.path, &cfg, check);
        assert_fails_cleanly(
            &e,
            &format!("cannot listen for Prometheus: metrics listener {addr}"),
            &c.prefix.name,
            Some(&c.socket()),
            &c.tap,
        );
    }
    drop(taken);
}

#[test]
fn a_control_socket_path_under_a_file_is_refused() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    let c = Case::new();
    let file = c.dir.path.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let socket = file.join("vsd.sock");
    let cfg = config(&c.prefix.name, &socket, &c.tap_device(), "");
    for check in [false, true] {
        let e = run_vsd(&c.dir.path, &cfg, check);
        assert_fails_cleanly(&e, "is not a directory", &c.prefix.name, None, &c.tap);
    }
}

/// A regular file where the socket should be is neither taken for a stale
/// socket nor removed (vsd runs as root: it used to delete whatever was
/// there).
#[test]
fn a_file_in_the_way_of_the_socket_is_kept() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    let c = Case::new();
    std::fs::write(c.socket(), "precious").unwrap();
    let cfg = c.config(&c.tap_device(), "");
    for check in [false, true] {
        let e = run_vsd(&c.dir.path, &cfg, check);
        assert_fails_cleanly(&e, "not a socket", &c.prefix.name, None, &c.tap);
        assert_eq!(std::fs::read_to_string(c.socket()).unwrap(), "precious");
    }
}

/// Failures after EAL has started (its runtime directory exists, the tap
/// may exist): a port EAL could not create, a mempool too large for the
/// hugepages. Both pass `--check` (nothing there can tell) and must clean
/// up at start.
#[test]
fn failures_after_eal_started_clean_up() {
    if !e2e_prerequisites(true) {
        return;
    }
    let _s = serial();
    let c = Case::new();
    let bad_port = c.config(&format!("{},mac=zz", c.tap_device()), "");
    let e = run_vsd(&c.dir.path, &bad_port, false);
    assert_fails_cleanly(
        &e,
        "no DPDK port named \"net_tap0\"",
        &c.prefix.name,
        Some(&c.socket()),
        &c.tap,
    );
    let huge_pool = format!(
        "{}\n[mempool]\nmbufs = 200000000\n",
        c.config(&c.tap_device(), "")
    );
    let e = run_vsd(&c.dir.path, &huge_pool, false);
    assert_fails_cleanly(
        &e,
        "Cannot allocate memory",
        &c.prefix.name,
        Some(&c.socket()),
        &c.tap,
    );
}
