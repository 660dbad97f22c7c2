//! The admin CLI's logic (the `vsadm` binary is a thin wrapper): talks to
//! vsd over the control socket and prints what it says.
//!
//! For now it reports the daemon's version, state and counters; the
//! ipvsadm command set arrives with the forwarding and control-plane work.

use super::socket::{request, PROTOCOL_VERSION};
use clap::Parser;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/vsd/vsd.sock";

/// Administer a running vsd.
#[derive(Parser, Debug)]
#[command(name = "vsadm", version, about)]
pub struct Args {
    /// vsd's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Show the daemon's version, state, workers and ports.
    #[arg(long, group = "cmd")]
    pub status: bool,
    /// Show the data plane counters (events and drops by reason).
    #[arg(long, group = "cmd")]
    pub counters: bool,
    /// Show every worker's counters, not only the totals (with --counters).
    #[arg(long, requires = "counters")]
    pub per_worker: bool,
    /// Print the daemon's raw JSON answer.
    #[arg(long)]
    pub json: bool,
}

fn ask(args: &Args, cmd: &str) -> Result<Value, String> {
    request(
        &args.socket,
        &json!({"v": PROTOCOL_VERSION, "cmd": cmd}),
        Duration::from_secs(5),
    )
}

fn io(e: std::io::Error) -> String {
    format!("writing output: {e}")
}

/// Run one vsadm invocation, writing its output to `out`.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), String> {
    if args.counters {
        let v = ask(args, "counters")?;
        if args.json {
            return writeln!(out, "{v}").map_err(io);
        }
        return print_counters(&v, args.per_worker, out).map_err(io);
    }
    // --status, and the default
    let v = ask(args, "status")?;
    if args.json {
        return writeln!(out, "{v}").map_err(io);
    }
    print_status(&v, out).map_err(io)
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

/// Human-readable counters.
pub fn print_counters(v: &Value, per_worker: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let total = v.get("total").cloned().unwrap_or(Value::Null);
    print_block("events:", total.get("events").unwrap_or(&Value::Null), out)?;
    print_block("drops:", total.get("drops").unwrap_or(&Value::Null), out)?;
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
                       "addresses": ["198.18.0.1/24"], "vips": ["198.18.0.100"],
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
             \x20 vips: 198.18.0.100\n\
             \x20 rx 5 pkts 300 bytes, tx 4 pkts 280 bytes, missed 0, rx errors 0, tx errors 0\n"
        );
    }

    #[test]
    fn unreachable_daemon_is_a_clear_error() {
        let args = Args::parse_from(["vsadm", "--socket", "/nonexistent/vsd.sock", "--status"]);
        let err = run(&args, &mut Vec::new()).unwrap_err();
        assert!(
            err.contains("cannot connect to vsd at /nonexistent/vsd.sock"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_commands_rejected() {
        assert!(Args::try_parse_from(["vsadm", "--status", "--counters"]).is_err());
        assert!(Args::try_parse_from(["vsadm", "--per-worker"]).is_err());
        assert!(Args::try_parse_from(["vsadm", "--bogus"]).is_err());
    }
}
