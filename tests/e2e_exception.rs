//! End to end: the exception path. vsd runs inside a network namespace of
//! its own (never the root namespace) with a kernel twin of its port; the
//! port's tap is moved to a client namespace. From the client: ARP and
//! ping of the director's address are answered by the kernel through the
//! twin, an HTTP server bound to the director's address in vsd's namespace
//! answers curl (management through the twin), and a 50 MB TCP upload to a
//! socket on the director arrives byte-identical (its throughput is
//! printed; perf/README.md has the number) and comes back down from the
//! HTTP server identical. The VIP stays vsd's own. Once with one worker,
//! once with two (each with its own queue pair on the twin).
//! Workers run with `idle = "sleep"`. Needs root, /dev/net/tun, hugepages.

mod common;

use common::topo::{
    python3, run_in, sha256_of, text, write_random_file, DpdkPrefix, Ns, Proc, TempDir,
};
use common::*;
use std::time::{Duration, Instant};

const VSD_MAC: &str = "02:00:00:00:00:01";
const DIP: &str = "198.18.0.1";
const VIP: &str = "198.18.0.100";
const PEER: &str = "198.18.0.2";
const UPLOAD_BYTES: usize = 50 * 1000 * 1000;

fn config(tap: &str, twin: &str, prefix: &str, lcores: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
control = 0
{lcores}
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_tap0,iface={tap}"
mac = "{VSD_MAC}"
addresses = ["{DIP}/24"]
kernel_iface = "{twin}"

[[vip]]
address = "{VIP}"
port = "lan0"
"#
    )
}

/// Receives one connection to the end and answers "BYTES SHA256".
const SINK: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
open(sys.argv[3], "w").close()
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
c.close()
"#;

/// Sends a file, then prints the sink's answer and the seconds it took.
const UPLOAD: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
t = time.monotonic()
with open(sys.argv[3], "rb") as f:
    while True:
        b = f.read(1 << 16)
        if not b:
            break
        s.sendall(b)
s.shutdown(socket.SHUT_WR)
answer = s.makefile().readline().strip()
print(answer, time.monotonic() - t)
"#;

fn link_exists(ns: &Netns, dev: &str) -> bool {
    sh_any("ip", &["-n", &ns.name, "link", "show", dev])
        .status
        .success()
}

#[test]
fn kernel_twin_carries_management_ping_and_tcp_for_the_director() {
    if !e2e_prerequisites(true) {
        return;
    }
    twin_scenario("workers = [1]");
}

/// Two workers (both on CPU 1): each has its own queue pair on the twin,
/// the kernel spreads its transmissions over them, and TCP to the
/// director's address is steered to its owner before it goes up.
#[test]
fn kernel_twin_with_two_workers() {
    if !e2e_prerequisites(true) {
        return;
    }
    twin_scenario("workers = [1, 2]\ncpu_map = \"0@0,1@1,2@1\"");
}

fn twin_scenario(lcores: &str) {
    let tap = unique("xt");
    let twin = unique("xk");
    let prefix = DpdkPrefix::new("vsdx");
    let files = TempDir::new("vsd-exc-");
    let vns = Ns::new("xv");
    let cns = Ns::new("xc");
    let mut vsd = Vsd::start_in(Some(&vns.name), &config(&tap, &twin, &prefix.name, lcores));

    // the twin lives in vsd's namespace, with the port's MAC and address
    assert!(
        wait_for(Duration::from_secs(10), || link_exists(&vns, &tap)),
        "tap {tap} not created in vsd's namespace:\n{}",
        vsd.log_text()
    );
    let shown = text(&vns.ip(&["-4", "addr", "show", "dev", &twin]));
    assert!(shown.contains(&format!("{DIP}/24")), "{shown}");
    assert!(shown.contains("UP"), "{shown}");
    let link = text(&vns.ip(&["link", "show", "dev", &twin]));
    assert!(link.contains(VSD_MAC), "{link}");
    assert!(
        !std::path::Path::new("/sys/class/net").join(&twin).exists(),
        "the twin appeared in the root namespace"
    );

    // the data tap goes to the client namespace
    sh(
        "ip",
        &["-n", &vns.name, "link", "set", &tap, "netns", &cns.name],
    );
    cns.ip(&["addr", "add", &format!("{PEER}/24"), "dev", &tap]);
    // net_tap itself reads "link down" once its interface left vsd's
    // namespace; the status asks the interface where it is now
    let link_up = || vsd.ask("status")["ports"][0]["link_up"].as_bool();
    assert_eq!(
        link_up(),
        Some(false),
        "the tap is down in the client namespace"
    );
    cns.ip(&["link", "set", &tap, "up"]);
    assert!(
        wait_for(Duration::from_secs(5), || link_up() == Some(true)),
        "the tap is up in the client namespace, status says {:?}",
        vsd.ask("status")["ports"][0]
    );
    let shown = vsd.vsadm(&["--status"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("link up"),
        "{}",
        text(&shown)
    );

    // 1. ping of the director's address: ARP and echo answered by the kernel
    let ping = run_in(&cns, 20, "ping", &["-c", "3", "-i", "0.2", "-W", "3", DIP]);
    assert!(ping.status.success(), "ping {DIP}: {}", text(&ping));
    let neigh = text(&cns.ip(&["neigh", "show", DIP]));
    assert!(neigh.contains(VSD_MAC), "{neigh}");
    assert!(vsd.event("exception_to_kernel") >= 4, "{}", vsd.log_text());
    assert!(vsd.event("exception_from_kernel") >= 4);
    assert_eq!(
        vsd.event("icmp_echo_in"),
        0,
        "vsd answered the kernel's ping"
    );
    // the kernel learned the client from its ARP traffic
    let kneigh = text(&vns.ip(&["neigh", "show", PEER]));
    assert!(
        kneigh.contains("lladdr"),
        "kernel neighbour table: {kneigh}"
    );

    // multicast goes up too (the path VRRP and OSPF take): the kernel in
    // vsd's namespace answers a ping to the all-hosts group
    vns.sysctl("net.ipv4.icmp_echo_ignore_broadcasts=0");
    let up0 = vsd.event("exception_to_kernel");
    let ping = run_in(
        &cns,
        20,
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "3", "-I", &tap, "224.0.0.1"],
    );
    assert!(
        text(&ping).contains(&format!("from {DIP}")),
        "ping 224.0.0.1: {}",
        text(&ping)
    );
    assert!(vsd.event("exception_to_kernel") >= up0 + 2);
    assert_eq!(vsd.dropped("dst_multicast"), 0);

    // 2. the VIP is still vsd's
    let echo0 = vsd.event("icmp_echo_out");
    let ping = run_in(&cns, 20, "ping", &["-c", "2", "-i", "0.2", "-W", "3", VIP]);
    assert!(ping.status.success(), "ping {VIP}: {}", text(&ping));
    assert!(vsd.event("icmp_echo_out") >= echo0 + 2);

    // 3. management through the twin: HTTP on the director's address
    let web = files.path.join("web");
    std::fs::create_dir_all(&web).expect("web dir");
    std::fs::write(web.join("hello.txt"), "hello through the twin\n").expect("write");
    let web_s = web.display().to_string();
    let mut http = Proc::spawn(
        Some(&vns),
        "http",
        &files.path,
        python3(),
        &["-m", "http.server", "-b", DIP, "-d", &web_s, "8080"],
    );
    let url = format!("http://{DIP}:8080/hello.txt");
    let mut body = String::new();
    let served = wait_for(Duration::from_secs(15), || {
        let out = run_in(&cns, 5, "curl", &["-sS", "-m", "3", &url]);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert!(
        served && body == "hello through the twin\n",
        "curl {url}: {body:?}\n{}",
        http.log_text()
    );
    assert!(http.alive());

    // 4. a 50 MB upload to a socket on the director, sha256 checked
    let file = web.join("upload.bin");
    write_random_file(&file, UPLOAD_BYTES, 13);
    let want = sha256_of(None, &file);
    let ready = files.path.join("sink.ready");
    let ready_s = ready.display().to_string();
    let mut sink = Proc::spawn(
        Some(&vns),
        "sink",
        &files.path,
        python3(),
        &["-c", SINK, DIP, "9000", &ready_s],
    );
    sink.wait_ready(&ready, Duration::from_secs(10));
    let file_s = file.display().to_string();
    let started = Instant::now();
    let up = run_in(&cns, 120, python3(), &["-c", UPLOAD, DIP, "9000", &file_s]);
    let wall = started.elapsed();
    let answer = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "upload: {}\n{}",
        text(&up),
        sink.log_text()
    );
    let mut words = answer.split_whitespace();
    let (got_len, got_sha, secs) = (words.next(), words.next(), words.next());
    assert_eq!(got_len, Some(UPLOAD_BYTES.to_string().as_str()), "{answer}");
    assert_eq!(got_sha, Some(want.as_str()), "{answer}");
    let secs: f64 = secs
        .and_then(|s| s.parse().ok())
        .unwrap_or(wall.as_secs_f64());
    eprintln!(
        "exception path: {UPLOAD_BYTES} bytes uploaded in {secs:.2} s = {:.0} Mbit/s",
        UPLOAD_BYTES as f64 * 8.0 / secs / 1e6
    );

    // ... and back down from the HTTP server: the kernel's transmissions
    // on the twin go out of the port
    let down = files.path.join("down.bin");
    let down_s = down.display().to_string();
    let get = run_in(
        &cns,
        120,
        "curl",
        &[
            "-sS",
            "-m",
            "100",
            "-o",
            &down_s,
            &format!("http://{DIP}:8080/upload.bin"),
        ],
    );
    assert!(get.status.success(), "download: {}", text(&get));
    assert_eq!(sha256_of(None, &down), want, "downloaded file differs");

    let st = vsd.vsadm(&["--status"]);
    let st = String::from_utf8_lossy(&st.stdout).into_owned();
    assert!(st.contains(&format!("  kernel twin: {twin}")), "{st}");

    // counters: in vsadm and in JSON; nothing dropped on the way
    let ct = vsd.vsadm(&["--counters"]);
    assert!(ct.status.success());
    let ct = String::from_utf8_lossy(&ct.stdout).into_owned();
    for name in [
        "exception_to_kernel",
        "exception_from_kernel",
        "idle_sleeps",
    ] {
        assert!(
            ct.contains(name),
            "{name} missing from vsadm --counters:\n{ct}"
        );
    }
    assert!(vsd.event("exception_to_kernel") > 30_000);
    assert!(vsd.event("exception_arp_copies") >= 1);
    assert_eq!(vsd.dropped("exception_queue_full"), 0);
    assert_eq!(vsd.dropped("exception_no_mbuf"), 0);
    // idle workers slept (the test spent seconds idle between steps)
    assert!(vsd.event("idle_sleeps") > 0);

    drop(http);
    drop(sink);
    let status = vsd.stop();
    assert!(status.success(), "vsd exit {status:?}:\n{}", vsd.log_text());
    assert!(
        !link_exists(&vns, &twin),
        "twin {twin} left behind after vsd stopped"
    );
}

#[test]
fn a_virtio_user_twin_without_vhost_net_is_refused() {
    let dir = TempDir::new("vsd-excchk-");
    let cfg = dir.path.join("vsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lcores]\ncontrol = 0\nworkers = [1]\n\n[control]\nsocket = \"{}/vsd.sock\"\n\n\
             [[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"{DIP}/24\"]\n\
             kernel_iface = \"vsd-lan0\"\nkernel_device = \"virtio-user\"\n",
            dir.path.display()
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .expect("run vsd --check");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if std::path::Path::new("/dev/vhost-net").exists() {
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{err}");
        assert!(
            said.contains("virtio_user_vsdk0,path=/dev/vhost-net"),
            "{said}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("port lan0: kernel_device = \"virtio-user\" needs /dev/vhost-net"),
            "{err}"
        );
    }
}

#[test]
fn a_twin_name_taken_in_vsds_namespace_is_refused() {
    if !e2e_prerequisites(false) {
        return;
    }
    let vns = Ns::new("xv");
    let taken = unique("xk");
    let peer = unique("xp");
    vns.ip(&["link", "add", &taken, "type", "veth", "peer", "name", &peer]);
    let dir = TempDir::new("vsd-exctaken-");
    let cfg = dir.path.join("vsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lcores]\ncontrol = 0\nworkers = [1]\n\n[control]\nsocket = \"{}/vsd.sock\"\n\n\
             [[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"{DIP}/24\"]\n\
             kernel_iface = \"{taken}\"\n",
            dir.path.display()
        ),
    )
    .expect("write config");
    let cfg_s = cfg.display().to_string();
    let vsd_bin = env!("CARGO_BIN_EXE_vsd");
    let out = run_in(&vns, 30, vsd_bin, &["--config", &cfg_s, "--check"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "port lan0: kernel_iface \"{taken}\" already exists in this network namespace"
        )),
        "{err}"
    );
    // the same name is free in another namespace
    let other = Ns::new("xw");
    let out = run_in(&other, 30, vsd_bin, &["--config", &cfg_s, "--check"]);
    assert!(out.status.success(), "{}", text(&out));
}
