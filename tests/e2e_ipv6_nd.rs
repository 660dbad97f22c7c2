//! End to end on net_tap: IPv6 neighbor discovery and echo for the
//! director's own addresses. vsd creates a tap, the test moves it into a
//! namespace of its own and talks to vsd with the kernel's ping and
//! neighbor discovery (2001:2::/48, RFC 5180's benchmarking prefix).
//!
//! 1. vsd resolves the peer: the peer knows vsd's MAC statically (so it
//!    never solicits, and vsd cannot learn it from a solicitation); the
//!    echo replies only come back if vsd sends a neighbor solicitation to
//!    the peer's solicited-node group and learns the advertisement.
//! 2. The peer resolves vsd: with the static entry gone, the peer's
//!    solicitations (global and link-local addresses) are answered, its
//!    neighbour table shows vsd's MAC as REACHABLE, and pings get replies.
//!
//! With a kernel twin (`kernel_twin_owns_the_directors_ipv6_addresses`),
//! vsd runs in a namespace of its own: the twin has the port's IPv6
//! address; solicitations and pings for it are the kernel's (vsd answers
//! none of them), the kernel resolves the peer through the twin, and TCP
//! to the director's IPv6 address reaches a socket in vsd's namespace.
//!
//! Needs root, /dev/net/tun and hugepages.

mod common;

use common::topo::{python3, run_in, text, DpdkPrefix, Ns, Proc, TempDir};
use common::*;
use std::time::Duration;

const VSD_MAC: &str = "02:00:00:00:00:61";
/// The link-local address vsd forms from its MAC (modified EUI-64).
const VSD_LL: &str = "fe80::ff:fe00:61";
const DIP6: &str = "2001:2::1";
const PEER6: &str = "2001:2::2";

fn config(iface: &str, prefix: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = true
memory_mb = 256

[lcores]
control = 0
workers = [1]
idle = "sleep"

[control]
socket = "{{dir}}/vsd.sock"

[[port]]
name = "lan0"
device = "net_tap0,iface={iface}"
mac = "{VSD_MAC}"
addresses = ["198.18.0.1/24", "{DIP6}/64"]
"#
    )
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn ipv6_ping_and_neighbor_discovery_both_ways() {
    if !e2e_prerequisites(true) {
        return;
    }
    let iface = unique("v6t");
    let prefix = unique("vsd6n");
    let ns = Netns::new(&unique("vsd6c"));
    let mut vsd = Vsd::start(&config(&iface, &prefix));
    assert!(
        wait_for(Duration::from_secs(10), || {
            sh_any("ip", &["link", "show", &iface]).status.success()
        }),
        "tap {iface} not created"
    );
    sh("ip", &["link", "set", &iface, "netns", &ns.name]);
    // no DAD delay or noise on the peer's side
    let dad = format!("net.ipv6.conf.{iface}.accept_dad=0");
    ns.run("sysctl", &["-qw", &dad]);
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{PEER6}/64"),
        "dev",
        &iface,
        "nodad",
    ]);
    ns.ip(&["link", "set", &iface, "up"]);

    // 1. vsd must resolve the peer by a solicitation of its own
    ns.ip(&[
        "-6",
        "neigh",
        "replace",
        DIP6,
        "lladdr",
        VSD_MAC,
        "dev",
        &iface,
        "nud",
        "permanent",
    ]);
    let ping = ns.run_any("ping", &["-6", "-c", "3", "-i", "0.2", "-W", "3", DIP6]);
    assert!(
        ping.status.success(),
        "ping -6 to the director address failed:\n{}\n{}",
        out(&ping),
        vsd.log_text()
    );
    assert!(
        vsd.event("nd_solicits_out") >= 1,
        "vsd sent no neighbor solicitation"
    );
    assert!(vsd.event("nd_adverts_in") >= 1, "vsd got no advertisement");
    assert!(vsd.event("neigh_learned") >= 1, "vsd learned no neighbour");
    assert!(vsd.event("icmp_echo_out") >= 3);
    ns.ip(&["-6", "neigh", "del", DIP6, "dev", &iface]);

    // 2. the peer resolves vsd's global and link-local addresses
    let solicits_in = vsd.event("nd_solicits_in");
    let ping = ns.run_any("ping", &["-6", "-c", "3", "-i", "0.2", "-W", "3", DIP6]);
    assert!(ping.status.success(), "second ping -6:\n{}", out(&ping));
    let ll = format!("{VSD_LL}%{iface}");
    let ping = ns.run_any("ping", &["-6", "-c", "2", "-i", "0.2", "-W", "3", &ll]);
    assert!(
        ping.status.success(),
        "ping -6 to vsd's link-local address failed:\n{}",
        out(&ping)
    );
    assert!(
        vsd.event("nd_solicits_in") > solicits_in,
        "the peer's solicitations did not reach vsd"
    );
    assert!(
        vsd.event("nd_adverts_out") >= 2,
        "vsd sent no advertisements"
    );
    for addr in [DIP6, VSD_LL] {
        let neigh = out(&ns.ip(&["-6", "neigh", "show", addr, "dev", &iface]));
        assert!(
            neigh.contains(VSD_MAC) && neigh.contains("REACHABLE"),
            "the peer's neighbour entry for {addr} is not vsd's MAC, REACHABLE: {neigh:?}"
        );
    }
    // nothing the peer's kernel sent was malformed in vsd's eyes
    for r in ["bad_nd", "bad_icmpv6", "nd_no_room"] {
        assert_eq!(vsd.dropped(r), 0, "{r}");
    }
    let ct = vsd.vsadm(&["--counters"]);
    assert!(ct.status.success());
    assert!(out(&ct).contains("nd_adverts_out"), "{}", out(&ct));

    let status = vsd.stop();
    assert!(
        status.success(),
        "vsd exit status {status:?}:\n{}",
        vsd.log_text()
    );
}

/// A TCP server on `argv[1]` port `argv[2]` that greets every client;
/// touches `argv[3]` once listening.
const GREETER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4)
open(sys.argv[3], "w").close()
while True:
    c, _ = s.accept()
    c.sendall(b"hello over ipv6\n")
    c.close()
"#;

/// Connect to `argv[1]` port `argv[2]` and print what arrives.
const CONNECT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(100).decode(), end="")
"#;

#[test]
fn kernel_twin_owns_the_directors_ipv6_addresses() {
    if !e2e_prerequisites(true) {
        return;
    }
    let tap = unique("v6x");
    let twin = unique("v6k");
    let prefix = DpdkPrefix::new("vsd6x");
    let files = TempDir::new("vsd-v6x-");
    let vns = Ns::new("v6v");
    let cns = Ns::new("v6c");
    // IPv6 on where the test needs it, without DAD delays
    for ns in [&vns, &cns] {
        ns.sysctl("net.ipv6.conf.default.accept_dad=0");
        ns.sysctl("net.ipv6.conf.all.accept_dad=0");
    }
    cns.sysctl("net.ipv6.conf.all.disable_ipv6=0");
    let cfg = config(&tap, &prefix.name) + &format!("kernel_iface = \"{twin}\"\n");
    let mut vsd = Vsd::start_in(Some(&vns.name), &cfg);
    assert!(
        wait_for(Duration::from_secs(10), || {
            text(&vns.ip(&["-6", "addr", "show", "dev", &twin])).contains(&format!("{DIP6}/64"))
        }),
        "the twin has no {DIP6}: {}\n{}",
        text(&vns.ip(&["addr", "show", "dev", &twin])),
        vsd.log_text()
    );
    // the kernel forms the same link-local address vsd owns for the port
    let shown = text(&vns.ip(&["-6", "addr", "show", "dev", &twin]));
    assert!(shown.contains(VSD_LL), "{shown}");
    sh(
        "ip",
        &["-n", &vns.name, "link", "set", &tap, "netns", &cns.name],
    );
    cns.sysctl(&format!("net.ipv6.conf.{tap}.disable_ipv6=0"));
    cns.sysctl(&format!("net.ipv6.conf.{tap}.accept_dad=0"));
    cns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{PEER6}/64"),
        "dev",
        &tap,
        "nodad",
    ]);
    cns.ip(&["link", "set", &tap, "up"]);

    // 1. ping: the kernel answers the solicitation and the echo
    let mut ping = None;
    let ok = wait_for(Duration::from_secs(10), || {
        let p = run_in(
            &cns,
            10,
            "ping",
            &["-6", "-c", "2", "-i", "0.2", "-W", "2", DIP6],
        );
        let ok = p.status.success();
        ping = Some(p);
        ok
    });
    assert!(
        ok,
        "ping -6 {DIP6} through the twin: {}\n{}",
        ping.as_ref().map(text).unwrap_or_default(),
        vsd.log_text()
    );
    assert_eq!(
        vsd.event("nd_adverts_out"),
        0,
        "vsd answered for the kernel"
    );
    assert_eq!(
        vsd.event("icmp_echo_in"),
        0,
        "vsd answered the kernel's ping"
    );
    assert!(vsd.event("exception_to_kernel") >= 3);
    let neigh = text(&cns.ip(&["-6", "neigh", "show", DIP6]));
    assert!(neigh.contains(VSD_MAC), "{neigh}");
    // the kernel resolved the peer through the twin (its advertisement
    // came up as a copy, or the peer's solicitation taught it)
    let kneigh = text(&vns.ip(&["-6", "neigh", "show", PEER6]));
    assert!(
        kneigh.contains("lladdr"),
        "kernel neighbour table: {kneigh}"
    );

    // 2. TCP to the director's IPv6 address: the kernel's socket
    let ready = files.path.join("greeter.ready");
    let ready_s = ready.display().to_string();
    let mut greeter = Proc::spawn(
        Some(&vns),
        "greeter",
        &files.path,
        python3(),
        &["-c", GREETER, DIP6, "9006", &ready_s],
    );
    greeter.wait_ready(&ready, Duration::from_secs(10));
    let got = run_in(&cns, 15, python3(), &["-c", CONNECT, DIP6, "9006"]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "hello over ipv6\n",
        "{}\n{}",
        text(&got),
        greeter.log_text()
    );

    let status = vsd.stop();
    assert!(
        status.success(),
        "vsd exit status {status:?}:\n{}",
        vsd.log_text()
    );
}
