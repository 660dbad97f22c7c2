//! The admin CLI's logic (the `vsadm` binary is a thin wrapper).
//!
//! vsadm takes ipvsadm's arguments (`vsadm -A -t 198.18.0.100:80 -s rr`,
//! `vsadm -Ln --stats`, `vsadm -S > rules`, `vsadm -R < rules`), checks them
//! with the same parser the daemon uses ([`super::ipvsadm`]), sends ONE
//! request over the control socket and prints the answer (protocol in
//! [`super::api`]). Without arguments it lists the table, as ipvsadm does.
//!
//! Options of vsadm itself, anywhere on the line: `--socket PATH` (default
//! [`DEFAULT_SOCKET`]) and `--json` (print the daemon's JSON answer).
//! `--status` and `--counters [--per-worker]` ask the daemon's `status` and
//! `counters` commands. Exit status: 0 on success, 2 for wrong usage, 1 when
//! the daemon refuses or cannot be reached.

use super::ipvsadm::{self, Command};
use super::socket::{request, MAX_LINE, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/vsd/vsd.sock";
/// How long vsadm waits for the daemon.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One vsadm invocation: vsadm's own options and the ipvsadm arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// vsd's control socket.
    pub socket: PathBuf,
    /// Print the daemon's raw JSON answer.
    pub json: bool,
    /// The ipvsadm arguments, in order.
    pub args: Vec<String>,
}

impl Args {
    /// Take `--socket PATH`, `--socket=PATH` and `--json` out of `argv`
    /// (without the program name); the rest are ipvsadm arguments.
    pub fn from_argv<S: AsRef<str>>(argv: &[S]) -> Result<Args, String> {
        let mut a = Args {
            socket: PathBuf::from(DEFAULT_SOCKET),
            json: false,
            args: Vec::new(),
        };
        let mut i = 0;
        while let Some(w) = argv.get(i) {
            let w = w.as_ref();
            i += 1;
            if w == "--" {
                a.args
                    .extend(argv[i - 1..].iter().map(|s| s.as_ref().to_string()));
                break;
            } else if w == "--json" {
                a.json = true;
            } else if w == "--socket" {
                let p = argv.get(i).ok_or("--socket: missing argument")?;
                a.socket = PathBuf::from(p.as_ref());
                i += 1;
            } else if let Some(p) = w.strip_prefix("--socket=") {
                a.socket = PathBuf::from(p);
            } else {
                a.args.push(w.to_string());
            }
        }
        Ok(a)
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Wrong usage (exit status 2).
    Usage(String),
    /// The daemon refused or could not be reached (exit status 1).
    Daemon(String),
    /// Whoever reads our output closed it (`vsadm -Lnc | head`): the reader
    /// has what it wanted, so vsadm stops quietly with status 0, as a
    /// pipeline under `set -o pipefail` expects.
    OutputClosed,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Daemon(m) => f.write_str(m),
            Failure::OutputClosed => f.write_str("output closed"),
        }
    }
}

/// `vsadm -v`.
pub fn version_text() -> String {
    format!(
        "vsadm {} (ipvsadm v1.31 syntax, IPVS {})\n",
        env!("CARGO_PKG_VERSION"),
        super::listing::IPVS_VERSION
    )
}

fn io(e: std::io::Error) -> Failure {
    // Rust ignores SIGPIPE, so a closed pipe is EPIPE here.
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Failure::OutputClosed;
    }
    Failure::Daemon(format!("writing output: {e}"))
}

fn ask(args: &Args, req: &Value) -> Result<Value, Failure> {
    request(&args.socket, req, REQUEST_TIMEOUT).map_err(Failure::Daemon)
}

/// Run one vsadm invocation: `stdin` feeds `-R`, output goes to `out`.
pub fn run(args: &Args, stdin: &mut dyn Read, out: &mut dyn Write) -> Result<(), Failure> {
    let cmd = ipvsadm::parse(&args.args).map_err(Failure::Usage)?;
    match cmd {
        Command::Help => {
            return out
                .write_all(ipvsadm::usage("vsadm").as_bytes())
                .map_err(io)
        }
        Command::Version => return out.write_all(version_text().as_bytes()).map_err(io),
        Command::Status => {
            let v = ask(args, &json!({"v": PROTOCOL_VERSION, "cmd": "status"}))?;
            if args.json {
                return writeln!(out, "{v}").map_err(io);
            }
            return print_status(&v, out).map_err(io);
        }
        Command::Counters { per_worker } => {
            let v = ask(args, &json!({"v": PROTOCOL_VERSION, "cmd": "counters"}))?;
            if args.json {
                return writeln!(out, "{v}").map_err(io);
            }
            return print_counters(&v, per_worker, out).map_err(io);
        }
        _ => {}
    }
    let mut req = json!({"v": PROTOCOL_VERSION, "cmd": "ipvsadm", "args": args.args});
    if cmd == Command::Restore {
        let mut input = String::new();
        stdin
            .take(MAX_LINE as u64 / 2 + 1)
            .read_to_string(&mut input)
            .map_err(|e| Failure::Usage(format!("reading the rules from standard input: {e}")))?;
        if input.len() > MAX_LINE / 2 {
            return Err(Failure::Usage(format!(
                "-R input is larger than {} bytes",
                MAX_LINE / 2
            )));
        }
        // Check it here too, so a typo is reported before anything is sent.
        ipvsadm::parse_restore(&input).map_err(Failure::Usage)?;
        req["input"] = Value::String(input);
    }
    let v = ask(args, &req)?;
    if args.json {
        return writeln!(out, "{v}").map_err(io);
    }
    let text = v.get("text").and_then(Value::as_str).unwrap_or("");
    out.write_all(text.as_bytes()).map_err(io)?;
    if let Command::Drain { wait: true, .. } = cmd {
        wait_for_drain(args, out)?;
    }
    Ok(())
}

/// How often `vsadm --drain --wait` asks whether the drain is done.
const DRAIN_POLL: Duration = Duration::from_millis(500);

/// `--drain --wait`: ask for the drain state until it is done, then print
/// the final state. An `--undrain` meanwhile ends the wait with an error.
fn wait_for_drain(args: &Args, out: &mut dyn Write) -> Result<(), Failure> {
    let req = json!({"v": PROTOCOL_VERSION, "cmd": "ipvsadm", "args": ["-L", "--announce"]});
    loop {
        let v = ask(args, &req)?;
        let drain = &v["announce"]["drain"];
        if drain["draining"].as_bool() != Some(true) {
            return Err(Failure::Daemon(
                "the drain ended (--undrain) before it was done".into(),
            ));
        }
        if drain["done"].as_bool() == Some(true) {
            let text = v.get("text").and_then(Value::as_str).unwrap_or("");
            return out.write_all(text.as_bytes()).map_err(io);
        }
        std::thread::sleep(DRAIN_POLL);
    }
}

/// The whole program: parse `argv` (without the program name), run, report.
pub fn main_with(argv: &[String]) -> ExitCode {
    let args = match Args::from_argv(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vsadm: {e}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout();
    // Flushed here, not at exit, where a failed flush would be lost.
    let result =
        run(&args, &mut std::io::stdin(), &mut stdout).and_then(|()| stdout.flush().map_err(io));
    match result {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("vsadm: {e}");
            eprintln!("Try `vsadm -h' or 'vsadm --help' for more information.");
            ExitCode::from(2)
        }
        Err(Failure::Daemon(e)) => {
            eprintln!("vsadm: {e}");
            ExitCode::from(1)
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("?")
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Human-readable status.
pub fn print_status(v: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "vsd {} ({})", s(v, "vsd"), s(v, "dpdk"))?;
    writeln!(
        out,
        "state: {}, pid {}, uptime {}s",
        s(v, "state"),
        n(v, "pid"),
        n(v, "uptime_s")
    )?;
    let workers: Vec<String> = v
        .get("workers")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|l| l.to_string()).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "workers: {} (lcores {})",
        workers.len(),
        workers.join(",")
    )?;
    writeln!(
        out,
        "mbufs: {} in use, {} available",
        n(v, "mbufs_in_use"),
        n(v, "mbufs_available")
    )?;
    for p in v
        .get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let list = |k: &str| -> String {
            p.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "(none)".into())
        };
        writeln!(
            out,
            "port {}: driver {}, mac {}, mtu {}, link {}, rss {}",
            s(p, "name"),
            s(p, "driver"),
            s(p, "mac"),
            n(p, "mtu"),
            if p.get("link_up").and_then(Value::as_bool) == Some(true) {
                "up"
            } else {
                "down"
            },
            if p.get("rss").and_then(Value::as_bool) == Some(true) {
                "on"
            } else {
                "off"
            },
        )?;
        writeln!(out, "  addresses: {}", list("addresses"))?;
        writeln!(out, "  vips: {}", list("vips"))?;
        for f in p
            .get("vip_follow")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            writeln!(
                out,
                "  vip {} follows {}: {}",
                s(f, "address"),
                s(f, "follow"),
                if f.get("active").and_then(Value::as_bool) == Some(true) {
                    "active"
                } else {
                    "inactive"
                }
            )?;
        }
        if let Some(twin) = p.get("kernel_iface").and_then(Value::as_str) {
            writeln!(out, "  kernel twin: {twin}")?;
        }
        let st = p.get("stats").cloned().unwrap_or(Value::Null);
        writeln!(
            out,
            "  rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}, rx errors {}, tx errors {}",
            n(&st, "rx_packets"),
            n(&st, "rx_bytes"),
            n(&st, "tx_packets"),
            n(&st, "tx_bytes"),
            n(&st, "rx_missed"),
            n(&st, "rx_errors"),
            n(&st, "tx_errors")
        )?;
    }
    if let Some(a) = v.get("announce").filter(|a| a.is_object()) {
        let vips = a["vips"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let announced = vips
            .iter()
            .filter(|x| x["announced"].as_bool() == Some(true))
            .count();
        let d = &a["drain"];
        let drain = if d["draining"].as_bool() != Some(true) {
            "not draining".to_string()
        } else {
            format!(
                "draining since {}, {} active connections left{}",
                s(d, "since"),
                n(d, "active_connections"),
                if d["done"].as_bool() == Some(true) {
                    ", done"
                } else {
                    ""
                }
            )
        };
        writeln!(
            out,
            "announce on {}: {announced} of {} VIPs announced, {drain} (vsadm -L --announce)",
            s(a, "interface"),
            vips.len()
        )?;
    }
    Ok(())
}

fn print_block(title: &str, v: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{title}")?;
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            writeln!(out, "  {:<24} {}", k, val.as_u64().unwrap_or(0))?;
        }
    }
    Ok(())
}

/// Each worker's TSC cycles on loop turns that carried packets (busy) and
/// on empty polling (idle), and busy cycles per received packet: the work
/// per packet, which a slower or faster traffic source does not move.
fn print_cycles(v: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let workers = v
        .get("workers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // a daemon that does not count cycles has nothing to show here
    if !workers
        .iter()
        .any(|w| w.get("events").and_then(|e| e.get("busy_cycles")).is_some())
    {
        return Ok(());
    }
    writeln!(out, "cycles per worker:")?;
    writeln!(
        out,
        "  {:<6} {:>16} {:>16} {:>14} {:>14}",
        "lcore", "busy_cycles", "idle_cycles", "packets", "cycles/packet"
    )?;
    for w in workers {
        let ev = w.get("events").unwrap_or(&Value::Null);
        let (busy, idle, pkts) = (
            n(ev, "busy_cycles"),
            n(ev, "idle_cycles"),
            n(ev, "rx_packets"),
        );
        let per_packet = if pkts == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", busy as f64 / pkts as f64)
        };
        writeln!(
            out,
            "  {:<6} {:>16} {:>16} {:>14} {:>14}",
            n(w, "lcore"),
            busy,
            idle,
            pkts,
            per_packet
        )?;
    }
    Ok(())
}

/// Human-readable counters: the worker totals, then the forwarding core's
/// events and its drops by reason (what `forward_drops` adds up), each
/// worker's cycles per packet, then each worker's counters with
/// `per_worker`.
pub fn print_counters(v: &Value, per_worker: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let total = v.get("total").cloned().unwrap_or(Value::Null);
    print_block("events:", total.get("events").unwrap_or(&Value::Null), out)?;
    print_block("drops:", total.get("drops").unwrap_or(&Value::Null), out)?;
    if let Some(fwd) = v.get("forwarding") {
        print_block(
            "forwarding events:",
            fwd.get("events").unwrap_or(&Value::Null),
            out,
        )?;
        print_block(
            "forwarding drops:",
            fwd.get("drops").unwrap_or(&Value::Null),
            out,
        )?;
    }
    if let Some(c) = v.get("sync").and_then(|s| s.get("counters")) {
        print_block("sync:", c, out)?;
    }
    print_cycles(v, out)?;
    if per_worker {
        for w in v
            .get("workers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let l = n(w, "lcore");
            print_block(
                &format!("worker lcore {l} events:"),
                w.get("events").unwrap_or(&Value::Null),
                out,
            )?;
            print_block(
                &format!("worker lcore {l} drops:"),
                w.get("drops").unwrap_or(&Value::Null),
                out,
            )?;
            if let Some(d) = w.get("forwarding_drops") {
                print_block(&format!("worker lcore {l} forwarding drops:"), d, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text() {
        let v = json!({
            "vsd": "0.1.0", "dpdk": "DPDK 22.11.11", "state": "running", "pid": 42,
            "uptime_s": 7, "workers": [1], "mbufs_in_use": 1024, "mbufs_available": 7167,
            "ports": [{"name": "lan0", "driver": "net_tap", "mac": "02:00:00:00:00:01",
                       "mtu": 1500, "link_up": true, "rss": false,
                       "addresses": ["198.18.0.1/24"], "vips": ["198.18.0.100", "198.18.0.101"],
                       "vip_follow": [{"address": "198.18.0.101", "follow": "vsd-lan0", "active": false}],
                       "stats": {"rx_packets": 5, "rx_bytes": 300, "tx_packets": 4,
                                 "tx_bytes": 280, "rx_missed": 0, "rx_errors": 0,
                                 "tx_errors": 0}}]
        });
        let mut out = Vec::new();
        print_status(&v, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "vsd 0.1.0 (DPDK 22.11.11)\n\
             state: running, pid 42, uptime 7s\n\
             workers: 1 (lcores 1)\n\
             mbufs: 1024 in use, 7167 available\n\
             port lan0: driver net_tap, mac 02:00:00:00:00:01, mtu 1500, link up, rss off\n\
             \x20 addresses: 198.18.0.1/24\n\
             \x20 vips: 198.18.0.100 198.18.0.101\n\
             \x20 vip 198.18.0.101 follows vsd-lan0: inactive\n\
             \x20 rx 5 pkts 300 bytes, tx 4 pkts 280 bytes, missed 0, rx errors 0, tx errors 0\n"
        );
    }

    #[test]
    fn status_text_with_announce() {
        let v = json!({
            "vsd": "0.1.0", "dpdk": "DPDK 22.11.11", "state": "running", "pid": 42,
            "uptime_s": 7, "workers": [1], "mbufs_in_use": 1, "mbufs_available": 2, "ports": [],
            "announce": {"interface": "vip0", "vips": [
                {"vip": "198.18.0.100", "announced": false, "reasons": ["draining"]},
                {"vip": "198.18.0.101", "announced": false, "reasons": ["no_service", "draining"]}],
                "drain": {"draining": true, "since": "2026-12-05T10:00:00Z",
                          "active_connections": 3, "done": false}}
        });
        let mut out = Vec::new();
        print_status(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "announce on vip0: 0 of 2 VIPs announced, draining since 2026-12-05T10:00:00Z, \
                 3 active connections left (vsadm -L --announce)\n"
            ),
            "{text}"
        );
    }

    /// Issue 12 item 9: the reasons behind `forward_drops` are in the
    /// plain output too, not only in `--json`.
    #[test]
    fn counters_text_shows_forwarding_drops_by_reason() {
        let v = json!({
            "total": {"events": {"forward_drops": 5, "forwarded": 9}, "drops": {"no_mbuf": 0}},
            "forwarding": {"events": {"new_conns": 2},
                           "drops": {"no_conn_not_syn": 3, "ttl_expired": 2}},
            "workers": [{"lcore": 1, "events": {"forwarded": 9}, "drops": {"no_mbuf": 0},
                         "forwarding_drops": {"no_conn_not_syn": 3, "ttl_expired": 2}}]
        });
        let text = |per_worker| {
            let mut out = Vec::new();
            print_counters(&v, per_worker, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let plain = text(false);
        assert!(
            plain.contains(
                "forwarding drops:\n  no_conn_not_syn          3\n  ttl_expired              2\n"
            ),
            "{plain}"
        );
        assert!(plain.contains("forwarding events:\n  new_conns                2\n"));
        assert!(!plain.contains("worker lcore"));
        let all = text(true);
        assert!(
            all.contains("worker lcore 1 forwarding drops:\n  no_conn_not_syn          3\n"),
            "{all}"
        );
    }

    /// Issue 19: busy cycles per received packet, per worker, in the
    /// plain output.
    #[test]
    fn counters_text_shows_cycles_per_packet_per_worker() {
        let v = json!({
            "total": {"events": {"rx_packets": 3000}, "drops": {}},
            "workers": [
                {"lcore": 1, "events": {"rx_packets": 1000, "busy_cycles": 250_500,
                                        "idle_cycles": 9000}, "drops": {}},
                {"lcore": 2, "events": {"rx_packets": 0, "busy_cycles": 0,
                                        "idle_cycles": 7}, "drops": {}},
            ]
        });
        let mut out = Vec::new();
        print_counters(&v, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| *l != "cycles per worker:")
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["1", "250500", "9000", "1000", "250.5"],
                vec!["2", "0", "7", "0", "-"],
            ],
            "{text}"
        );
        // an older daemon without the cycle counters: no empty table
        let old = json!({"total": {}, "workers": [{"lcore": 1, "events": {"rx_packets": 5}}]});
        let mut out = Vec::new();
        print_counters(&old, false, &mut out).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("cycles"));
    }

    #[test]
    fn unreachable_daemon_is_a_clear_error() {
        let args = Args::from_argv(&["--socket", "/nonexistent/vsd.sock", "--status"]).unwrap();
        let err = run(&args, &mut std::io::empty(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Failure::Daemon(_)));
        assert!(
            err.to_string()
                .contains("cannot connect to vsd at /nonexistent/vsd.sock"),
            "{err}"
        );
        let args = Args::from_argv(&["--socket=/nonexistent/vsd.sock", "-Ln"]).unwrap();
        let err = run(&args, &mut std::io::empty(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }

    #[test]
    fn wrong_usage_fails_before_connecting() {
        for (argv, want) in [
            (
                vec!["--status", "--counters"],
                "multiple commands specified",
            ),
            (vec!["--per-worker"], "no command specified"),
            (vec!["--bogus"], "--bogus: unknown option"),
            (
                vec!["-a", "-t", "198.18.0.100:80", "-w", "2"],
                "You need to supply the 'real-server' option for the 'add-server' command",
            ),
        ] {
            let mut a = Args::from_argv(&argv).unwrap();
            a.socket = PathBuf::from("/nonexistent/vsd.sock");
            let err = run(&a, &mut std::io::empty(), &mut Vec::new()).unwrap_err();
            assert_eq!(err, Failure::Usage(want.into()), "{argv:?}");
        }
        assert!(Args::from_argv(&["--socket"]).is_err());
    }

    #[test]
    fn client_options_are_taken_out() {
        let a = Args::from_argv(&["-Ln", "--json", "--socket", "/tmp/x.sock", "--stats"]).unwrap();
        assert_eq!(
            a,
            Args {
                socket: PathBuf::from("/tmp/x.sock"),
                json: true,
                args: vec!["-Ln".into(), "--stats".into()],
            }
        );
        let a = Args::from_argv::<&str>(&[]).unwrap();
        assert_eq!(a.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(a.args.is_empty());
    }

    #[test]
    fn help_and_version_need_no_daemon() {
        let mut a = Args::from_argv(&["-h"]).unwrap();
        a.socket = PathBuf::from("/nonexistent/vsd.sock");
        let mut out = Vec::new();
        run(&a, &mut std::io::empty(), &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("Usage:\n  vsadm -A|E"));
        a.args = vec!["--version".into()];
        let mut out = Vec::new();
        run(&a, &mut std::io::empty(), &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("vsadm "));
    }

    #[test]
    fn bad_restore_input_is_refused_before_sending() {
        let mut a = Args::from_argv(&["-R"]).unwrap();
        a.socket = PathBuf::from("/nonexistent/vsd.sock");
        let mut rules: &[u8] = b"-A -t 198.18.0.100:80\n-a -t 198.18.0.100:80 -r 198.18.1.1 -w x\n";
        let err = run(&a, &mut rules, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            Failure::Usage("line 2: illegal weight specified".into())
        );
        // Good input goes to the daemon (which is not there).
        let mut rules: &[u8] = b"-A -t 198.18.0.100:80\n";
        let err = run(&a, &mut rules, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Failure::Daemon(_)));
    }
}
