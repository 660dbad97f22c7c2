//! IPv6 through the whole control plane, with the forwarding refusal of
//! [`super::unsupported`] lifted for the test's thread: what the operator
//! types (vsadm, `-R`, the TOML, keepalived.conf) to what vsd shows (`-L`
//! in every form, `-Lc`, `-S`, the control socket's JSON, Prometheus).
//!
//! Expected text is ipvsadm 1.31's: its printf formats (`print_title`,
//! `print_service_entry`, `list_conn`, `addrport_to_anyname` with
//! `[ADDR]:PORT` for IPv6 and no 28/33-byte cut) applied to the same
//! table, byte for byte. Addresses are from the benchmarking prefix
//! 2001:2::/48 (RFC 5180).

use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

use super::api::handle_request;
use super::config::Config;
use super::estimator::Counters;
use super::listing::{ConnProto, ConnView};
use super::state::testing::FakeStats;
use super::state::{ConnCounts, ControlState};
use super::unsupported::test_override::AllowIpv6;
use crate::lb::service::{PersistMask, ServiceKey};
use crate::lb::types::Protocol;

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap()
}

fn call(s: &mut ControlState, st: &FakeStats, line: &str) -> Result<Value, String> {
    let args: Vec<&str> = line.split_whitespace().collect();
    handle_request(s, st, &json!({"v": 1, "cmd": "ipvsadm", "args": args}))
}

fn text(s: &mut ControlState, st: &FakeStats, line: &str) -> String {
    let v = call(s, st, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    v["text"].as_str().unwrap().to_string()
}

fn err(s: &mut ControlState, st: &FakeStats, line: &str) -> String {
    match call(s, st, line) {
        Ok(v) => panic!("{line}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// Every IPv6 form a table can hold: IPv6 TCP/UDP/fwmark services, IPv6
/// servers by every method, IPv4 servers behind an IPv6 service and the
/// reverse (tunnel only), a persistence prefix length, a FULLNAT local
/// address. `-r` without a port takes the service's.
const SETUP: &[&str] = &[
    "-A -t [2001:2::64]:80 -s rr",
    "--add-laddr -z 2001:2::5 -t [2001:2::64]:80",
    "-a -t [2001:2::64]:80 -r [2001:2::10]:80 -m -w 1",
    "-a -t [2001:2::64]:80 -r [2001:2::11]:8080 -m -w 2",
    "-a -t [2001:2::64]:80 -r [2001:2::13]:8080 --fullnat",
    "-a -t [2001:2::64]:80 -r 198.18.1.10 -i",
    "-A -u [2001:2::64]:53 -s wrr -p 300 -M 64",
    "-a -u [2001:2::64]:53 -r 2001:2::20 -g",
    "-A -f 1 -6 -s sh -b sh-port",
    "-a -f 1 -6 -r 2001:2::30 -i",
    "-A -t 198.18.0.100:80 -s wlc",
    "-a -t 198.18.0.100:80 -r [2001:2::12]:80 -i",
];

fn setup() -> (ControlState, FakeStats) {
    let mut s = ControlState::default();
    let st = FakeStats::default();
    for line in SETUP {
        let v = call(&mut s, &st, line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(v, json!({"text": "", "changed": true}), "{line}");
    }
    (s, st)
}

fn v6_http() -> ServiceKey {
    ServiceKey::tcp(ip("2001:2::64"), 80)
}

/// The dest slot of `addr` in `key` (slots follow `-a` order from 0).
fn slot(s: &ControlState, key: &ServiceKey, addr: &str) -> u32 {
    s.table()
        .dests(key)
        .unwrap()
        .into_iter()
        .find(|(_, d)| d.addr == ip(addr))
        .map(|(id, _)| id)
        .unwrap()
}

const TITLE: &str = "Prot LocalAddress:Port Scheduler Flags\n  \
                     -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn list_numeric_is_ipvsadms_for_every_ipv6_form() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    let id = slot(&s, &v6_http(), "2001:2::10");
    st.conns.borrow_mut().insert(
        id,
        ConnCounts {
            active: 3,
            inactive: 4,
            persistent: 0,
        },
    );
    let want = format!(
        "IP Virtual Server version 1.2.1 (size=4096)\n{TITLE}\
         TCP  198.18.0.100:80 wlc\n\
         \x20 -> [2001:2::12]:80              Tunnel  1      0          0         \n\
         TCP  [2001:2::64]:80 rr\n\
         \x20 -> 198.18.1.10:80               Tunnel  1      0          0         \n\
         \x20 -> [2001:2::10]:80              Masq    1      3          4         \n\
         \x20 -> [2001:2::11]:8080            Masq    2      0          0         \n\
         \x20 -> [2001:2::13]:8080            FullNat 1      0          0         \n\
         UDP  [2001:2::64]:53 wrr persistent 300 mask 64\n\
         \x20 -> [2001:2::20]:53              Route   1      0          0         \n\
         FWM  1 IPv6 sh (sh-port)\n\
         \x20 -> [2001:2::30]:0               Tunnel  1      0          0         \n"
    );
    assert_eq!(text(&mut s, &st, "-Ln"), want);
    // --sort is the default (a no-op for compatibility, as in ipvsadm).
    assert_eq!(text(&mut s, &st, "-Ln --sort"), want);
    // one service, named in the bracketed form: no version line
    assert_eq!(
        text(&mut s, &st, "-L -n -u [2001:2::64]:53"),
        format!(
            "{TITLE}UDP  [2001:2::64]:53 wrr persistent 300 mask 64\n\
             \x20 -> [2001:2::20]:53              Route   1      0          0         \n"
        )
    );
    assert_eq!(
        text(&mut s, &st, "-L -n -f 1 -6"),
        format!(
            "{TITLE}FWM  1 IPv6 sh (sh-port)\n\
             \x20 -> [2001:2::30]:0               Tunnel  1      0          0         \n"
        )
    );
    // the IPv4 fwmark 1 is another service
    assert_eq!(err(&mut s, &st, "-L -n -f 1"), "No such service");
    assert_eq!(
        err(&mut s, &st, "-L -n -t [2001:2::65]:80"),
        "No such service"
    );
    // --nosort: the kernel's walking order (the last added first)
    let nosort = text(&mut s, &st, "-L -n --nosort -t [2001:2::64]:80");
    let rows: Vec<&str> = nosort.lines().skip(3).map(|l| &l[5..22]).collect();
    assert_eq!(
        rows,
        [
            "198.18.1.10:80   ",
            "[2001:2::13]:8080",
            "[2001:2::11]:8080",
            "[2001:2::10]:80  "
        ]
    );
}

#[test]
fn stats_rate_exact_thresholds_persistent_conn_and_tun_info_with_ipv6() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    let id = slot(&s, &v6_http(), "2001:2::10");
    let c = Counters {
        conns: 5,
        inpkts: 60,
        outpkts: 50,
        inbytes: 6000,
        outbytes: 200_000_000_000,
    };
    st.dests.borrow_mut().insert(id, c);
    // the IPv6 HTTP service was added first: service slot 0
    st.services.borrow_mut().insert(0, c);
    st.conns.borrow_mut().insert(
        id,
        ConnCounts {
            active: 3,
            inactive: 4,
            persistent: 2,
        },
    );
    let one = |s: &mut ControlState, opts: &str| {
        text(s, &st, &format!("-L -n {opts} -t [2001:2::64]:80"))
    };
    assert_eq!(
        one(&mut s, "--stats"),
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
         \x20 -> RemoteAddress:Port\n\
         TCP  [2001:2::64]:80                     5       60       50     6000     200G\n\
         \x20 -> 198.18.1.10:80                      0        0        0        0        0\n\
         \x20 -> [2001:2::10]:80                     5       60       50     6000     200G\n\
         \x20 -> [2001:2::11]:8080                   0        0        0        0        0\n\
         \x20 -> [2001:2::13]:8080                   0        0        0        0        0\n"
    );
    let exact = one(&mut s, "--stats --exact");
    assert!(exact.contains(
        "TCP  [2001:2::64]:80                     5       60       50     6000 200000000000\n"
    ));
    assert!(exact.contains(
        "\x20 -> [2001:2::10]:80                     5       60       50     6000 200000000000\n"
    ));
    assert_eq!(
        one(&mut s, "--rate"),
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n\
         \x20 -> RemoteAddress:Port\n\
         TCP  [2001:2::64]:80                     0        0        0        0        0\n\
         \x20 -> 198.18.1.10:80                      0        0        0        0        0\n\
         \x20 -> [2001:2::10]:80                     0        0        0        0        0\n\
         \x20 -> [2001:2::11]:8080                   0        0        0        0        0\n\
         \x20 -> [2001:2::13]:8080                   0        0        0        0        0\n"
    );
    assert_eq!(
        one(&mut s, "--thresholds"),
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  [2001:2::64]:80 rr\n\
         \x20 -> 198.18.1.10:80               0          0          0          0         \n\
         \x20 -> [2001:2::10]:80              0          0          3          4         \n\
         \x20 -> [2001:2::11]:8080            0          0          0          0         \n\
         \x20 -> [2001:2::13]:8080            0          0          0          0         \n"
    );
    assert_eq!(
        one(&mut s, "--persistent-conn"),
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  [2001:2::64]:80 rr\n\
         \x20 -> 198.18.1.10:80               1         0           0          0         \n\
         \x20 -> [2001:2::10]:80              1         2           3          4         \n\
         \x20 -> [2001:2::11]:8080            2         0           0          0         \n\
         \x20 -> [2001:2::13]:8080            1         0           0          0         \n"
    );
    assert_eq!(
        one(&mut s, "--tun-info"),
        "Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n\
         TCP  [2001:2::64]:80 rr\n\
         \x20 -> 198.18.1.10:80               Tunnel  ipip          1      0          0         \n\
         \x20 -> [2001:2::10]:80              Masq    n/a           1      3          4         \n\
         \x20 -> [2001:2::11]:8080            Masq    n/a           2      0          0         \n\
         \x20 -> [2001:2::13]:8080            FullNat n/a           1      0          0         \n"
    );
    // -Z of an IPv6 service
    assert_eq!(text(&mut s, &st, "-Z -t [2001:2::64]:80"), "");
    assert!(one(&mut s, "--stats").contains(
        "TCP  [2001:2::64]:80                     0        0        0        0        0\n"
    ));
}

#[test]
fn connection_listing_with_ipv6_rows() {
    let (mut s, mut st) = setup_allowing();
    let sa = |a: &str, p: u16| SocketAddr::new(ip(a), p);
    st.conn_list = vec![
        ConnView {
            proto: ConnProto::Tcp,
            expires_ms: 899_500,
            state: "ESTABLISHED",
            client: sa("2001:2:1::10", 40000),
            vip: sa("2001:2::64", 80),
            dest: sa("2001:2::10", 80),
        },
        ConnView {
            proto: ConnProto::Udp,
            expires_ms: 299_000,
            state: "UDP",
            client: sa("2001:2:1::a", 5353),
            vip: sa("2001:2::64", 53),
            dest: sa("2001:2::20", 53),
        },
        // a fwmark service's persistence template
        ConnView {
            proto: ConnProto::Ip,
            expires_ms: 300_000,
            state: "NONE",
            client: sa("2001:2:1::", 0),
            vip: sa("::", 0),
            dest: sa("2001:2::30", 0),
        },
        // an IPv4 connection tunnelled to an IPv6 server
        ConnView {
            proto: ConnProto::Tcp,
            expires_ms: 60_000,
            state: "SYN_RECV",
            client: sa("198.18.5.1", 1234),
            vip: sa("198.18.0.100", 80),
            dest: sa("2001:2::12", 80),
        },
    ];
    let rows = "TCP 14:59  ESTABLISHED [2001:2:1::10]:40000 [2001:2::64]:80    [2001:2::10]:80\n\
                UDP 04:59  UDP         [2001:2:1::a]:5353 [2001:2::64]:53    [2001:2::20]:53\n\
                IP  05:00  NONE        [2001:2:1::]:0     [::]:0             [2001:2::30]:0\n\
                TCP 01:00  SYN_RECV    198.18.5.1:1234    198.18.0.100:80    [2001:2::12]:80\n";
    assert_eq!(
        text(&mut s, &st, "-Lnc"),
        format!(
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination\n{rows}"
        )
    );
    assert_eq!(
        text(&mut s, &st, "-Lnc --persistent-conn"),
        format!(
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination        pe name          pe_data\n{rows}"
        )
    );
}

fn setup_allowing() -> (ControlState, FakeStats) {
    // The guard only matters while commands are applied; listings of
    // what is in the table need no permission.
    let _v6 = AllowIpv6::new();
    setup()
}

/// ipvsadm's `-S` of [`SETUP`], with vsd's `--fullnat` and `--add-laddr`
/// additions (see `listing`'s notes).
const SAVED: &str = "-A -t 198.18.0.100:80 -s wlc\n\
     -a -t 198.18.0.100:80 -r [2001:2::12]:80 -i -w 1 --tun-type ipip\n\
     -A -t [2001:2::64]:80 -s rr\n\
     -a -t [2001:2::64]:80 -r 198.18.1.10:80 -i -w 1 --tun-type ipip\n\
     -a -t [2001:2::64]:80 -r [2001:2::10]:80 -m -w 1\n\
     -a -t [2001:2::64]:80 -r [2001:2::11]:8080 -m -w 2\n\
     -a -t [2001:2::64]:80 -r [2001:2::13]:8080 --fullnat -w 1\n\
     --add-laddr -z 2001:2::5 -t [2001:2::64]:80\n\
     -A -u [2001:2::64]:53 -s wrr -p 300 -M 64\n\
     -a -u [2001:2::64]:53 -r [2001:2::20]:53 -g -w 1\n\
     -A -f 1 -6 -s sh -b sh-port\n\
     -a -f 1 -6 -r [2001:2::30]:0 -i -w 1 --tun-type ipip\n";

#[test]
fn save_and_restore_round_trip_with_ipv6_rows() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    assert_eq!(text(&mut s, &st, "-S -n"), SAVED);
    let listed = text(&mut s, &st, "-Ln");
    // -C, then -R of the saved text: the same table, the same listing
    assert_eq!(text(&mut s, &st, "-C"), "");
    assert_eq!(text(&mut s, &st, "-Ln").lines().count(), 3);
    let v = handle_request(
        &mut s,
        &st,
        &json!({"v": 1, "cmd": "ipvsadm", "args": ["-R"], "input": SAVED}),
    )
    .unwrap();
    assert_eq!(v["changed"], json!(true));
    assert_eq!(text(&mut s, &st, "-S -n"), SAVED);
    assert_eq!(text(&mut s, &st, "-Ln"), listed);
    assert_eq!(s.local_addrs(&v6_http()), [ip("2001:2::5")]);
    // into a fresh state too, and the persistence prefix survives as one
    let mut fresh = ControlState::default();
    fresh.restore(SAVED).unwrap();
    assert_eq!(fresh.save_text(), SAVED);
    let udp = ServiceKey::Addr {
        proto: Protocol::Udp,
        addr: ip("2001:2::64"),
        port: 53,
    };
    assert_eq!(
        fresh.table().service_config(&udp).unwrap().persist_mask,
        Some(PersistMask::V6(64))
    );
    // the rule file vsd keeps for vsadm's changes round-trips as well
    let rules = s.vsadm_rules();
    let mut again = ControlState::default();
    let (n, errors) = again.restore_vsadm_rules(&rules);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(n > 0);
    assert_eq!(again.save_text(), SAVED);
}

#[test]
fn every_ipv6_form_of_a_change_command() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    // -e and -d name the server as -a did, bracketed or bare
    text(
        &mut s,
        &st,
        "-e -t [2001:2::64]:80 -r [2001:2::11]:8080 -m -w 7",
    );
    text(&mut s, &st, "-d -t [2001:2::64]:80 -r [2001:2::10]:80");
    text(&mut s, &st, "-d -u [2001:2::64]:53 -r 2001:2::20");
    text(&mut s, &st, "-E -u [2001:2::64]:53 -s rr -p 60 -M 48");
    text(&mut s, &st, "--del-laddr -z 2001:2::5 -t [2001:2::64]:80");
    text(&mut s, &st, "--add-laddr -z 2001:2::6 -t [2001:2::64]:80");
    assert_eq!(
        text(&mut s, &st, "--get-laddr -t [2001:2::64]:80"),
        "Prot LocalAddress:Port\n  -> LocalAddress\nTCP  [2001:2::64]:80\n  -> 2001:2::6\n"
    );
    text(&mut s, &st, "-D -f 1 -6");
    let saved = text(&mut s, &st, "-S -n");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s wlc\n\
         -a -t 198.18.0.100:80 -r [2001:2::12]:80 -i -w 1 --tun-type ipip\n\
         -A -t [2001:2::64]:80 -s rr\n\
         -a -t [2001:2::64]:80 -r 198.18.1.10:80 -i -w 1 --tun-type ipip\n\
         -a -t [2001:2::64]:80 -r [2001:2::11]:8080 -m -w 7\n\
         -a -t [2001:2::64]:80 -r [2001:2::13]:8080 --fullnat -w 1\n\
         --add-laddr -z 2001:2::6 -t [2001:2::64]:80\n\
         -A -u [2001:2::64]:53 -s rr -p 60 -M 48\n"
    );
    // ipvsadm's forms that name the same address the same way
    text(&mut s, &st, "-D -t [2001:0002:0000::0064]:80");
    assert!(!text(&mut s, &st, "-Ln").contains("[2001:2::64]:80"));
    // a bare IPv6 address is a service without a port
    text(&mut s, &st, "-A -t 2001:2::64 -p");
    assert!(text(&mut s, &st, "-Ln").contains("TCP  [2001:2::64]:0 wlc persistent 300\n"));
    // an IPv6 fwmark service's persistence granularity is a prefix length
    text(&mut s, &st, "-A -f 2 -6 -s rr -p 60 -M 56");
    assert!(text(&mut s, &st, "-Ln").contains("FWM  2 IPv6 rr persistent 60 mask 56\n"));
    assert!(text(&mut s, &st, "-S").contains("-A -f 2 -6 -s rr -p 60 -M 56\n"));
    assert_eq!(
        err(&mut s, &st, "-E -f 2 -6 -s rr -p 60 -M 255.255.255.0"),
        "illegal ipv6 netmask specified"
    );
    // the service port of a DR/TUN server wins over the one given, as in ipvsadm
    text(&mut s, &st, "-A -u [2001:2::65]:53");
    text(&mut s, &st, "-a -u [2001:2::65]:53 -r [2001:2::21]:5353 -g");
    assert!(text(&mut s, &st, "-S").contains("-a -u [2001:2::65]:53 -r [2001:2::21]:53 -g -w 1\n"));
}

#[test]
fn wrong_ipv6_forms_fail_with_ipvsadms_messages() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    for (line, want) in [
        // ipvsadm's parse_service wants ":PORT" after "]"
        (
            "-A -t [2001:2::66] -s rr",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [2001:2::66]:http-x -s rr",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [2001:2::66:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [198.18.0.1]:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t [2001:2::64]:80 -r [2001:2::40]",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t [2001:2::64]:80 -r [2001:2::40]:99999",
            "illegal real server address[:port] specified",
        ),
        (
            "-A -t 2001:2::66 -s rr",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -u [2001:2::66]:53 -p 60 -M 129",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -u [2001:2::66]:53 -p 60 -M 0",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -u [2001:2::66]:53 -p 60 -M 255.255.255.0",
            "illegal ipv6 netmask specified",
        ),
        ("-A -t [2001:2::66]:80 -6", "-6 used before -f"),
        // the kernel (and ipvsadm before it) mix families for tunnels only
        (
            "-a -t [2001:2::64]:80 -r 198.18.1.11:80 -m",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -t [2001:2::64]:80 -r 198.18.1.11 -g",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            // (the other way round is NAT64)
            "-a -t 198.18.0.100:80 -r [2001:2::40]:80 --fullnat",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -t 198.18.0.100:80 -r [2001:2::40]:80 -m",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -f 1 -r 2001:2::40 -m",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -f 1 -6 -r 198.18.1.11 -g",
            "Different address family is allowed only for tunneling servers",
        ),
        // changes that name something absent
        ("-D -t [2001:2::65]:80", "No such service"),
        (
            "-d -t [2001:2::64]:80 -r [2001:2::99]:80",
            "No such destination",
        ),
        ("-A -t [2001:2::64]:80", "Service already exists"),
        (
            "-a -t [2001:2::64]:80 -r [2001:2::10]:80 -m",
            "Destination already exists",
        ),
        (
            "--add-laddr -z 2001:2::5 -t [2001:2::64]:80",
            "Local address already exists",
        ),
        (
            "--del-laddr -z 2001:2::99 -t [2001:2::64]:80",
            "No such local address",
        ),
    ] {
        assert_eq!(err(&mut s, &st, line), want, "{line}");
    }
    // nothing of that changed the table
    let mut fresh = ControlState::default();
    fresh.restore(SAVED).unwrap();
    assert_eq!(text(&mut s, &st, "-S -n"), fresh.save_text());
}

#[test]
fn json_of_the_control_socket_carries_ipv6() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    let v = call(&mut s, &st, "-Ln").unwrap();
    // services in the table's order, servers sorted as -L sorts them
    let by_name = |name: &str| -> Value {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["service"] == json!(name))
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    let services = [
        by_name("TCP 198.18.0.100:80"),
        by_name("TCP [2001:2::64]:80"),
        by_name("UDP [2001:2::64]:53"),
        by_name("FWM 1 IPv6"),
    ];
    assert_eq!(v["services"].as_array().unwrap().len(), 4);
    let servers: Vec<&str> = services[1]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers,
        [
            "198.18.1.10:80",
            "[2001:2::10]:80",
            "[2001:2::11]:8080",
            "[2001:2::13]:8080"
        ]
    );
    assert_eq!(services[1]["servers"][3]["forward"], json!("FullNat"));
    assert_eq!(
        services[0]["servers"][0]["address"],
        json!("[2001:2::12]:80")
    );
    assert_eq!(services[2]["persistence"], json!(300));
    assert_eq!(services[2]["netmask"], json!("64"));
    assert_eq!(services[1]["netmask"], Value::Null);
    // the addresses parse back as what they are
    let back: SocketAddr = services[1]["servers"][1]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(back, SocketAddr::new(ip("2001:2::10"), 80));
}

#[test]
fn prometheus_labels_with_ipv6() {
    let _v6 = AllowIpv6::new();
    let (mut s, st) = setup();
    let id = slot(&s, &v6_http(), "2001:2::10");
    st.conns.borrow_mut().insert(
        id,
        ConnCounts {
            active: 3,
            inactive: 4,
            persistent: 0,
        },
    );
    let out = text(&mut s, &st, "--prometheus");
    // vsd's own families name services and servers as -L does
    for line in [
        "vsd_service_connections_total{service=\"TCP [2001:2::64]:80\"} 0",
        "vsd_service_connections_total{service=\"UDP [2001:2::64]:53\"} 0",
        "vsd_server_active_connections{service=\"TCP [2001:2::64]:80\",server=\"[2001:2::10]:80\"} 3",
        "vsd_server_weight{service=\"FWM 1 IPv6\",server=\"[2001:2::30]:0\"} 1",
        "vsd_server_weight{service=\"TCP 198.18.0.100:80\",server=\"[2001:2::12]:80\"} 1",
        "vsd_server_weight{service=\"TCP [2001:2::64]:80\",server=\"198.18.1.10:80\"} 1",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
    }
    // node_exporter's ipvs collector prints plain addresses (Go's net.IP)
    for line in [
        "node_ipvs_backend_connections_active{local_address=\"2001:2::64\",local_port=\"80\",remote_address=\"2001:2::10\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 3",
        "node_ipvs_backend_connections_inactive{local_address=\"2001:2::64\",local_port=\"80\",remote_address=\"2001:2::10\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 4",
        "node_ipvs_backend_weight{local_address=\"2001:2::64\",local_port=\"80\",remote_address=\"198.18.1.10\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 1",
        "node_ipvs_backend_weight{local_address=\"2001:2::64\",local_port=\"53\",remote_address=\"2001:2::20\",remote_port=\"53\",proto=\"UDP\",local_mark=\"\"} 1",
        "node_ipvs_backend_weight{local_address=\"\",local_port=\"0\",remote_address=\"2001:2::30\",remote_port=\"0\",proto=\"FWM\",local_mark=\"00000001\"} 1",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
    }
}

const CONFIG_BASE: &str =
    "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"2001:2::1/64\"]\n";

/// [`SETUP`] as a vsd TOML configuration.
const SETUP_TOML: &str = r#"
[[service]]
proto = "tcp"
vip = "2001:2::64"
port = 80
scheduler = "rr"
local_addresses = ["2001:2::5"]
[[service.real_server]]
address = "2001:2::10"
method = "nat"
[[service.real_server]]
address = "2001:2::11"
port = 8080
method = "nat"
weight = 2
[[service.real_server]]
address = "2001:2::13"
port = 8080
method = "fullnat"
[[service.real_server]]
address = "198.18.1.10"
method = "tun"

[[service]]
proto = "udp"
vip = "2001:2::64"
port = 53
scheduler = "wrr"
persistence_timeout = 300
netmask = 64
[[service.real_server]]
address = "2001:2::20"

[[service]]
fwmark = 1
family = "inet6"
scheduler = "sh"
flags = ["sh-port"]
[[service.real_server]]
address = "2001:2::30"
method = "tun"

[[service]]
proto = "tcp"
vip = "198.18.0.100"
port = 80
[[service.real_server]]
address = "2001:2::12"
method = "tun"
"#;

fn config(services: &str) -> Config {
    Config::from_str(&format!("{CONFIG_BASE}{services}"), "t.toml")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn toml_configuration_gives_the_same_table() {
    let _v6 = AllowIpv6::new();
    let cfg = config(SETUP_TOML);
    let mut s = ControlState::from_config(&cfg).unwrap();
    assert_eq!(s.save_text(), SAVED);
    // a reload of the same file changes nothing
    assert!(s.reload(&cfg).unwrap().is_empty());
    // and the forms the file refuses, with its place
    let bad = |svc: &str| match Config::from_str(&format!("{CONFIG_BASE}{svc}"), "t.toml") {
        Ok(_) => panic!("accepted: {svc}"),
        Err(e) => e.to_string(),
    };
    let head = "[[service]]\nproto = \"udp\"\nvip = \"2001:2::64\"\nport = 53\n";
    assert!(
        bad(&format!("{head}persistence_timeout = 1\nnetmask = 129\n"))
            .contains("invalid netmask: expected a prefix length 1..=128")
    );
    assert!(bad(&format!(
        "{head}persistence_timeout = 1\nnetmask = \"255.255.0.0\"\n"
    ))
    .contains("invalid netmask: expected a prefix length 1..=128"));
    assert!(bad(&format!(
        "{head}[[service.real_server]]\naddress = \"198.18.1.1\"\nmethod = \"nat\"\n"
    ))
    .contains("198.18.1.1 is not in the service's address family (only tun mixes families)"));
    assert!(bad(&format!(
        "{head}[[service.real_server]]\naddress = \"2001:2::1\"\nmethod = \"fullnat\"\n"
    ))
    .contains("fullnat to 2001:2::1 needs a local_addresses entry of its family"));
}

#[test]
fn keepalived_virtual_servers_give_the_same_table() {
    let _v6 = AllowIpv6::new();
    let ka = "local_address_group v6 {\n 2001:2::5\n}\n\
              virtual_server 2001:2::64 80 {\n lb_algo rr\n protocol TCP\n laddr_group_name v6\n\
              real_server 2001:2::10 80 {\n lb_kind NAT\n }\n\
              real_server 2001:2::11 8080 {\n lb_kind NAT\n weight 2\n }\n\
              real_server 2001:2::13 8080 {\n lb_kind FNAT\n }\n\
              real_server 198.18.1.10 80 {\n lb_kind TUN\n }\n}\n\
              virtual_server 2001:2::64 53 {\n lb_algo wrr\n protocol UDP\n lb_kind DR\n\
              persistence_timeout 300\n persistence_granularity 64\n\
              real_server 2001:2::20 53 {\n }\n}\n\
              virtual_server fwmark 1 {\n ip_family inet6\n lb_algo sh\n sh-port\n lb_kind TUN\n\
              real_server 2001:2::30 0 {\n }\n}\n\
              virtual_server 198.18.0.100 80 {\n protocol TCP\n lb_kind TUN\n\
              real_server 2001:2::12 80 {\n }\n}\n";
    let parsed = super::keepalived::from_str(ka, "k.conf", &["lan0".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = config("");
    cfg.services = parsed.services.into_iter().map(|(s, _)| s).collect();
    let s = ControlState::from_config(&cfg).unwrap();
    assert_eq!(s.save_text(), SAVED);
    // keepalived's IPv6 ranges: the last group, in hex
    let ranged = "local_address_group v6 {\n 2001:2::5-7\n 2001:2::a\n}\n\
                  virtual_server 2001:2::64 80 {\n protocol TCP\n lb_kind FNAT\n\
                  laddr_group_name v6\n real_server 2001:2::10 80 {\n }\n}\n";
    let k = super::keepalived::from_str(ranged, "k.conf", &["lan0".to_string()]).unwrap();
    let laddrs: Vec<String> = k.services[0]
        .0
        .local_addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(laddrs, ["2001:2::5", "2001:2::6", "2001:2::7", "2001:2::a"]);
    // an IPv4 real server of an IPv6 virtual server, not tunnelled, is
    // skipped with keepalived's own warning
    let mixed = "virtual_server 2001:2::64 80 {\n protocol TCP\n lb_kind NAT\n\
                 real_server 198.18.1.1 80 {\n }\n real_server 2001:2::10 80 {\n }\n}\n";
    let k = super::keepalived::from_str(mixed, "k.conf", &["lan0".to_string()]).unwrap();
    assert_eq!(k.services[0].0.real_servers.len(), 1);
    assert!(k
        .warnings
        .iter()
        .any(|w| w
            .contains("address family of virtual server and real server 198.18.1.1 don't match")));
}

#[test]
fn without_the_override_every_ipv6_form_is_accepted() {
    let mut s = ControlState::default();
    let st = FakeStats::default();
    for line in SETUP {
        call(&mut s, &st, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    assert!(ControlState::from_config(&config(SETUP_TOML)).is_ok());
    assert_eq!(s.save_text(), SAVED);
}

#[test]
fn mixed_family_servers_and_a_sync_daemon_exclude_each_other() {
    let _v6 = AllowIpv6::new();
    let mut s = ControlState::default();
    let st = FakeStats::default();
    text(&mut s, &st, "-A -t [2001:2::64]:80");
    text(&mut s, &st, "-a -t [2001:2::64]:80 -r [2001:2::10]:80 -i");
    text(&mut s, &st, "--start-daemon master --mcast-interface lo");
    // as the kernel: no server of the other family while sync runs
    let e = err(&mut s, &st, "-a -t [2001:2::64]:80 -r 198.18.1.10 -i");
    assert!(
        e.starts_with("Different address family is not allowed while a sync daemon runs"),
        "{e}"
    );
    // the same family still is
    text(&mut s, &st, "-a -t [2001:2::64]:80 -r [2001:2::11]:80 -i");
    // and a reload cannot add one either
    let mixed = "[[service]]\nproto = \"tcp\"\nvip = \"2001:2::64\"\nport = 80\n\
                 [[service.real_server]]\naddress = \"198.18.1.10\"\nmethod = \"tun\"\n";
    let e = s.reload(&config(mixed)).unwrap_err();
    assert!(e.contains("Different address family is not allowed"), "{e}");
    text(&mut s, &st, "--stop-daemon master");
    text(&mut s, &st, "-a -t [2001:2::64]:80 -r 198.18.1.10 -i");
    // with one present, no sync daemon starts (vsd: the kernel would start
    // it and could not sync those connections)
    let e = err(&mut s, &st, "--start-daemon backup --mcast-interface lo");
    assert!(
        e.starts_with(
            "a sync daemon cannot run while service TCP [2001:2::64]:80 has real server 198.18.1.10"
        ),
        "{e}"
    );
    text(&mut s, &st, "-d -t [2001:2::64]:80 -r 198.18.1.10");
    text(&mut s, &st, "--start-daemon backup --mcast-interface lo");
}

#[test]
fn ipv6_sync_groups_and_peers_from_vsadm_and_the_toml() {
    let mut s = ControlState::default();
    let st = FakeStats::default();
    text(
        &mut s,
        &st,
        "--start-daemon master --mcast-interface lo --mcast-group ff02::51 --syncid 3",
    );
    text(
        &mut s,
        &st,
        "--start-daemon backup --mcast-interface lo --sync-peer ::1",
    );
    assert_eq!(
        text(&mut s, &st, "-L --daemon"),
        "master sync daemon (mcast=lo, syncid=3, maxlen=1452, group=ff02::51, port=8848, ttl=1)\n\
         backup sync daemon (mcast=lo, syncid=0, maxlen=65487, group=224.0.0.81, port=8848, ttl=1, peer=::1)\n"
    );
    let cfg = config(
        "[[sync_daemon]]\nrole = \"backup\"\nmcast_interface = \"lo\"\n\
         mcast_group = \"ff02::51\"\n\
         [[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"lo\"\n\
         peers = [\"2001:2::2\", \"2001:2::3\"]\n",
    );
    assert_eq!(cfg.sync_daemons[0].mcast_group, Some(ip("ff02::51")));
    assert_eq!(
        cfg.sync_daemons[1].peers,
        [ip("2001:2::2"), ip("2001:2::3")]
    );
    let bad = |t: &str| match Config::from_str(&format!("{CONFIG_BASE}{t}"), "t.toml") {
        Ok(_) => panic!("accepted: {t}"),
        Err(e) => e.to_string(),
    };
    assert!(bad(
        "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"lo\"\n\
                 peers = [\"2001:2::2\", \"198.18.0.2\"]\n"
    )
    .contains("198.18.0.2: peers of one address family only (2001:2::2 is the other)"));
    assert!(bad(
        "[[sync_daemon]]\nrole = \"master\"\nmcast_interface = \"lo\"\n\
                 mcast_group = \"2001:2::1\"\n"
    )
    .contains("2001:2::1: must be a multicast address"));
}
