//! vsd under systemd's Type=notify: a fake NOTIFY_SOCKET (a Unix datagram
//! socket this test listens on) receives READY=1 once the workers run and the
//! control socket answers, RELOADING=1 then READY=1 around a SIGHUP reload,
//! and STOPPING=1 on SIGTERM.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn next_message(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
}

#[test]
fn vsd_notifies_ready_and_stopping() {
    if !e2e_prerequisites(true) {
        return;
    }
    let prefix = topo::DpdkPrefix::new("vsdnt");
    let dir = std::env::temp_dir().join(unique("vsd-notify-"));
    std::fs::create_dir_all(&dir).unwrap();
    let notify_path = dir.join("notify.sock");
    let listener = UnixDatagram::bind(&notify_path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Inherited by the vsd Vsd::start spawns (the only test in this binary).
    std::env::set_var("NOTIFY_SOCKET", &notify_path);
    let mut vsd = Vsd::start(&format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={}"]
huge = true
memory_mb = 64

[lcores]
control = 0
workers = [1]

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_null0"
addresses = ["198.18.0.1/24"]
"#,
        prefix.name
    ));
    std::env::remove_var("NOTIFY_SOCKET");
    let ready = next_message(&listener);
    assert_eq!(ready.as_deref(), Some("READY=1"), "{}", vsd.log_text());
    // Ready means the control socket answers.
    let status = vsd.ask("status");
    assert_eq!(status["state"], "running", "{status}");
    // SIGHUP (systemd's ExecReload): RELOADING=1, then READY=1 again
    let pid = vsd.child.as_ref().expect("vsd running").id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert_eq!(
        next_message(&listener).as_deref(),
        Some("RELOADING=1"),
        "{}",
        vsd.log_text()
    );
    assert_eq!(
        next_message(&listener).as_deref(),
        Some("READY=1"),
        "{}",
        vsd.log_text()
    );
    let exit = vsd.stop();
    assert!(exit.success(), "{exit:?}\n{}", vsd.log_text());
    let stopping = next_message(&listener);
    assert_eq!(
        stopping.as_deref(),
        Some("STOPPING=1"),
        "{}",
        vsd.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
