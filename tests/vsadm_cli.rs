//! The vsadm binary against a control socket served in-process by the real
//! request handler ([`vsd::control::api::handle_request`]) over a fake
//! statistics source: argument handling, output, `-R` from stdin, exit codes.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vsd::control::api::handle_request;
use vsd::control::estimator::Counters;
use vsd::control::listing::{ConnView, CoreCounters, LatencyView, PortCounters};
use vsd::control::socket::{ControlServer, Handler};
use vsd::control::state::{ConnCounts, ControlState, StatsSource};
use vsd::lb::load::DestId;

struct Fake;

impl StatsSource for Fake {
    fn now_ms(&self) -> u64 {
        0
    }
    fn service_counters(&self, _: u32) -> Counters {
        Counters::default()
    }
    fn dest_counters(&self, _: DestId) -> Counters {
        Counters::default()
    }
    fn dest_conns(&self, _: DestId) -> ConnCounts {
        ConnCounts::default()
    }
    fn connections(&self, _: usize) -> (Vec<ConnView>, u64) {
        (Vec::new(), 0)
    }
    fn conn_table_size(&self) -> u64 {
        4096
    }
    fn core_counters(&self) -> Vec<CoreCounters> {
        vec![CoreCounters {
            core: 1,
            events: vec![("icmp_echo_out".into(), 3)],
            drops: vec![("no_service".into(), 1)],
        }]
    }
    fn port_counters(&self) -> Vec<PortCounters> {
        Vec::new()
    }
    fn latency(&self) -> Vec<LatencyView> {
        Vec::new()
    }
    fn status(&self) -> Value {
        json!({"vsd": "0.1.0", "dpdk": "DPDK 22.11", "state": "running", "pid": 1,
               "uptime_s": 1, "workers": [1], "mbufs_in_use": 0, "mbufs_available": 0,
               "ports": []})
    }
    fn config_path(&self) -> Option<PathBuf> {
        None
    }
}

struct Daemon {
    state: Arc<Mutex<ControlState>>,
}

impl Handler for Daemon {
    fn handle(&mut self, _cmd: &str, req: &Value) -> Result<Value, String> {
        let mut st = self.state.lock().map_err(|_| "poisoned".to_string())?;
        handle_request(&mut st, &Fake, req)
    }
}

struct Served {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn start(name: &str) -> Served {
        let path =
            std::env::temp_dir().join(format!("vsadm-cli-{}-{name}.sock", std::process::id()));
        let mut server = ControlServer::bind(&path).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut d = Daemon {
                state: Arc::new(Mutex::new(ControlState::default())),
            };
            while !flag.load(Ordering::Relaxed) {
                server.poll(&mut d);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Served {
            path,
            stop,
            thread: Some(thread),
        }
    }

    fn vsadm(&self, args: &[&str]) -> Output {
        vsadm_at(&self.path, args, None)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn vsadm_at(socket: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsadm"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vsadm");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("vsadm output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn configure_list_save_restore() {
    let d = Served::start("main");
    for args in [
        &["-A", "-t", "198.18.0.100:80", "-s", "rr"][..],
        &[
            "-a",
            "-t",
            "198.18.0.100:80",
            "-r",
            "198.18.1.11:8080",
            "-m",
        ],
        &[
            "-a",
            "-t",
            "198.18.0.100:80",
            "-r",
            "198.18.1.12:8080",
            "-m",
            "-w",
            "2",
        ],
    ] {
        let o = d.vsadm(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "");
    }
    let o = d.vsadm(&["-Ln"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  198.18.0.100:80 rr\n\
         \x20 -> 198.18.1.11:8080             Masq    1      0          0         \n\
         \x20 -> 198.18.1.12:8080             Masq    2      0          0         \n"
    );
    // No arguments: the same listing.
    assert_eq!(stdout(&d.vsadm(&[])), stdout(&o));

    let saved = stdout(&d.vsadm(&["-S", "-n"]));
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s rr\n\
         -a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1\n\
         -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2\n"
    );
    // The daemon refuses with ipvsadm's message and exit status 1.
    let o = d.vsadm(&["-A", "-t", "198.18.0.100:80"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "vsadm: Service already exists\n");

    // -R from stdin into a second daemon gives the same table.
    let e = Served::start("restore");
    let o = vsadm_at(&e.path, &["-R"], Some(&saved));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&e.vsadm(&["-S"])), saved);
    // A bad line is reported before anything is sent.
    let o = vsadm_at(
        &e.path,
        &["-R"],
        Some("-C\n-a -t 1.2.3.4:80 -r 1.2.3.5 -w 99999\n"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("vsadm: line 2: illegal weight specified\n"));
    assert_eq!(stdout(&e.vsadm(&["-S"])), saved);

    let o = d.vsadm(&["-L", "--timeout"]);
    assert_eq!(stdout(&o), "Timeout (tcp tcpfin udp): 900 120 300\n");
    let o = d.vsadm(&["-Ln", "--json"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["services"][0]["servers"][1]["weight"], json!(2));
}

#[test]
fn usage_errors_and_views() {
    let d = Served::start("views");
    let o = d.vsadm(&["-A", "-t", "198.18.0.100:80", "-w", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "vsadm: Illegal 'weight' option with the 'add-service' command\n\
         Try `vsadm -h' or 'vsadm --help' for more information.\n"
    );
    let o = d.vsadm(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let o = d.vsadm(&["-h"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Usage:\n"));
    let o = d.vsadm(&["--status"]);
    assert!(stdout(&o).contains("state: running"), "{}", stdout(&o));
    let o = d.vsadm(&["--counters"]);
    assert!(stdout(&o).contains("icmp_echo_out"));
    let o = d.vsadm(&["--prometheus"]);
    assert!(stdout(&o).contains("vsd_worker_events_total{core=\"1\",event=\"icmp_echo_out\"} 3\n"));
    // no health checks configured: the header only
    let o = d.vsadm(&["--checks"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Prot LocalAddress:Port Quorum\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    let o = vsadm_at(Path::new("/nonexistent/vsd.sock"), &["-Ln"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot connect to vsd"));
}

#[test]
fn unsupported_features_are_refused_not_stored() {
    let d = Served::start("refuse");
    let refused = |args: &[&str], want: &str| {
        let o = d.vsadm(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    };
    refused(
        &["-A", "-u", "198.18.0.100:53", "--synproxy"],
        "synproxy is only for IPv4 TCP virtual services",
    );
    refused(
        &[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "nonexistent0",
        ],
        "--mcast-interface nonexistent0: no such interface",
    );
    // an IPv6 group is the kernel's IPv6 sync: accepted, 48 header bytes
    // off the interface MTU
    let args = [
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "lo",
        "--mcast-group",
        "ff02::51",
    ];
    let o = d.vsadm(&args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    assert_eq!(
        stdout(&d.vsadm(&["-L", "--daemon"])),
        "backup sync daemon (mcast=lo, syncid=0, maxlen=65487, group=ff02::51, port=8848, ttl=1)\n"
    );
    assert!(d.vsadm(&["--stop-daemon", "backup"]).status.success());
    // nothing was stored
    assert_eq!(stdout(&d.vsadm(&["-S", "-n"])), "");
    assert_eq!(stdout(&d.vsadm(&["-L", "--daemon"])), "");
    let o = vsadm_at(&d.path, &["-R"], Some("-A -u 198.18.0.100:53 --synproxy\n"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&d.vsadm(&["-S", "-n"])), "");
}
