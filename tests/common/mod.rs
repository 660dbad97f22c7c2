//! Helpers shared by the end-to-end tests: a guard for network namespaces,
//! a guard for a running vsd, and a tiny pcap reader/writer. Every guard
//! cleans up in Drop, so a failing assertion still removes what it made.
#![allow(dead_code)]

pub mod pcap;
pub mod topo;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether we run under CI (where skipping an end-to-end test is a failure).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Check what an end-to-end test needs. Returns false (test skipped, with a
/// message) outside CI; panics in CI, where nothing may be skipped.
pub fn e2e_prerequisites(need_hugepages: bool) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".into());
    }
    if need_hugepages {
        let n: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if n == 0 {
            missing.push("hugepages (scripts/test.sh sets them up)".into());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("end-to-end test needs: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: skipping is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call, for namespaces, interfaces
/// (at most 15 bytes) and file prefixes.
pub fn unique(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{}{n}", std::process::id() % 100000)
}

/// Run a command, panicking with its output if it fails.
pub fn sh(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command, returning its output whatever the status.
pub fn sh_any(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = sh_any("ip", &["netns", "del", name]);
        sh("ip", &["netns", "add", name]);
        sh("ip", &["-n", name, "link", "set", "lo", "up"]);
        Netns { name: name.into() }
    }

    /// Run a command inside the namespace; panics on failure.
    pub fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// Run a command inside the namespace; any status.
    pub fn run_any(&self, cmd: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        sh_any("ip", &full)
    }

    /// `ip` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh_any("ip", &["netns", "del", &self.name]);
    }
}

/// Wait until `f` holds, polling every 50 ms, for at most `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A running vsd, killed on drop if still alive.
pub struct Vsd {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Tells the reaper to remove `dir` if the test process is killed.
    _reg: topo::Registration,
    /// The config's DPDK file prefix: its runtime files go with this guard
    /// (after Drop has killed vsd), also when a failing test kills vsd.
    _prefix: Option<topo::DpdkPrefix>,
}

/// The `--file-prefix=` a vsd config gives its EAL, if any.
fn file_prefix(config: &str) -> Option<&str> {
    let rest = config.split("--file-prefix=").nth(1)?;
    let name = rest.split(['"', '\'', ',', ' ', '\n']).next()?;
    (!name.is_empty()).then_some(name)
}

impl Vsd {
    /// Start vsd with `config` (TOML text) in a fresh temporary directory;
    /// `{dir}` in the text is replaced by that directory.
    pub fn start(config: &str) -> Vsd {
        Self::start_in(None, config)
    }

    /// [`Vsd::start`] inside network namespace `netns` (through
    /// `ip netns exec`, which execs vsd: the child is vsd itself).
    pub fn start_in(netns: Option<&str>, config: &str) -> Vsd {
        Self::start_with(netns, config, &[])
    }

    /// [`Vsd::start_in`] with more command-line arguments after `--config`
    /// (`{dir}` in them is replaced too).
    pub fn start_with(netns: Option<&str>, config: &str, extra: &[&str]) -> Vsd {
        let dir = std::env::temp_dir().join(unique("vsd-e2e-"));
        let reg = topo::register("dir", &dir.display().to_string());
        std::fs::create_dir_all(&dir).expect("temp dir");
        let text = config.replace("{dir}", &dir.display().to_string());
        let cfg = dir.join("vsd.toml");
        std::fs::write(&cfg, &text).expect("write config");
        let log = dir.join("vsd.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vsd")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vsd")),
        };
        cmd.arg("--config")
            .arg(&cfg)
            .args(
                extra
                    .iter()
                    .map(|a| a.replace("{dir}", &dir.display().to_string())),
            )
            .stdout(Stdio::from(logf.try_clone().expect("dup log")))
            .stderr(Stdio::from(logf));
        // A test killed outright (SIGKILL) takes its vsd with it.
        let child = topo::die_with_parent(&mut cmd).spawn().expect("spawn vsd");
        let socket = dir.join("vsd.sock");
        let mut v = Vsd {
            child: Some(child),
            socket,
            dir,
            log,
            _reg: reg,
            _prefix: file_prefix(&text).map(topo::DpdkPrefix::adopt),
        };
        let up = wait_for(Duration::from_secs(60), || {
            v.socket.exists() || v.exited().is_some()
        });
        assert!(
            up && v.exited().is_none(),
            "vsd did not come up:\n{}",
            v.log_text()
        );
        v
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status if vsd has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// One control request.
    pub fn ask(&self, cmd: &str) -> Value {
        vsd::control::socket::request(
            &self.socket,
            &json!({"v": 1, "cmd": cmd}),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("vsd {cmd}: {e}\n{}", self.log_text()))
    }

    /// A summed data-plane event counter.
    pub fn event(&self, name: &str) -> u64 {
        self.ask("counters")["total"]["events"][name]
            .as_u64()
            .unwrap_or(0)
    }

    /// A summed drop counter.
    pub fn dropped(&self, name: &str) -> u64 {
        self.ask("counters")["total"]["drops"][name]
            .as_u64()
            .unwrap_or(0)
    }

    /// Run vsadm against this vsd.
    pub fn vsadm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vsadm"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run vsadm")
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("vsd running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let mut status = None;
        wait_for(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            self.child = None;
            panic!(
                "vsd did not exit within 30 s of SIGTERM:\n{}",
                self.log_text()
            );
        };
        self.child = None;
        status
    }
}

impl Drop for Vsd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- vsd log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
