//! The control socket's request handler for vsadm (protocol version 1).
//!
//! # Protocol
//!
//! One JSON object per line, as in [`super::socket`]. vsadm sends its
//! ipvsadm-style arguments unchanged; the daemon parses them with the same
//! parser ([`super::ipvsadm::parse`]), so both sides agree on every option:
//!
//! ```text
//! {"v":1,"cmd":"ipvsadm","args":["-A","-t","198.18.0.100:80","-s","rr"]}
//! {"v":1,"cmd":"ipvsadm","args":["-R"],"input":"-A -t 198.18.0.100:80 -s rr\n..."}
//! ```
//!
//! The answer is `{"ok":true,"data":{"text":"...","changed":false}}`: `text`
//! is exactly what vsadm prints (ipvsadm's formats), `changed` says whether
//! the configuration changed (the daemon then publishes a new snapshot);
//! `-L` answers also carry the listing as JSON in `data.services`. Errors are
//! `{"ok":false,"error":"ipvsadm's message"}`.
//!
//! `{"v":1,"cmd":"status"}` and `{"v":1,"cmd":"counters"}` answer with the
//! daemon's status and counters as JSON (used by `vsadm --status`,
//! `vsadm --counters` and tests).

use serde_json::{json, Map, Value};

use super::config::Config;
use super::ipvsadm::{self, Command, ListWhat};
use super::listing::{self, CoreCounters, ServiceView};
use super::prometheus;
use super::state::{ControlState, Reply, StatsSource};
use super::vsadm;

/// Most connections `-Lc` lists; a larger table is cut with a note.
pub const MAX_LISTED_CONNS: usize = 100_000;

/// Answer one request. `Err` is the error text the client shows.
pub fn handle_request(
    state: &mut ControlState,
    stats: &dyn StatsSource,
    req: &Value,
) -> Result<Value, String> {
    let cmd = req
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("bad request: missing \"cmd\"")?;
    match cmd {
        "ipvsadm" => {
            let args = req
                .get("args")
                .and_then(Value::as_array)
                .ok_or("bad request: \"args\" must be an array of strings")?;
            let args: Vec<&str> = args
                .iter()
                .map(|a| {
                    a.as_str()
                        .ok_or("bad request: \"args\" must be an array of strings")
                })
                .collect::<Result<_, _>>()?;
            let input = req.get("input").and_then(Value::as_str);
            let command = ipvsadm::parse(&args)?;
            run_command(state, stats, &command, input)
        }
        "status" => Ok(stats.status()),
        "counters" => Ok(counters_json(&stats.core_counters())),
        other => Err(format!(
            "unknown command {other:?} (known: ipvsadm, status, counters)"
        )),
    }
}

fn text(t: String, changed: bool) -> Value {
    json!({"text": t, "changed": changed})
}

/// Run a parsed command against the state and the daemon's statistics.
pub fn run_command(
    state: &mut ControlState,
    stats: &dyn StatsSource,
    cmd: &Command,
    input: Option<&str>,
) -> Result<Value, String> {
    match cmd {
        Command::Help => Ok(text(ipvsadm::usage("vsadm"), false)),
        Command::Version => Ok(text(vsadm::version_text(), false)),
        Command::List(l) if l.what == ListWhat::Services => {
            state.sync_stats(stats);
            let views = state.service_views(stats);
            let (out, shown): (String, Vec<&ServiceView>) = match &l.service {
                Some(key) => {
                    let v = views
                        .iter()
                        .find(|v| v.key == *key)
                        .ok_or("No such service")?;
                    (listing::render_service(v, &l.format), vec![v])
                }
                None => (
                    listing::render_list(stats.conn_table_size(), &views, &l.format),
                    views.iter().collect(),
                ),
            };
            let mut data = text(out, false);
            data["services"] = Value::Array(shown.into_iter().map(service_json).collect());
            Ok(data)
        }
        Command::List(l) if l.what == ListWhat::Connections => {
            let (conns, total) = stats.connections(MAX_LISTED_CONNS);
            let mut out = listing::render_conns(&conns, l.format.persistent_conn);
            if total > conns.len() as u64 {
                out.push_str(&format!(
                    "({} more connections not listed)\n",
                    total - conns.len() as u64
                ));
            }
            Ok(text(out, false))
        }
        Command::Zero(key) => {
            state.zero(key.as_ref(), stats)?;
            Ok(text(String::new(), false))
        }
        Command::Restore => {
            let input = input.ok_or("-R reads the rules from standard input; none were sent")?;
            state.restore(input)?;
            state.sync_stats(stats);
            Ok(text(String::new(), true))
        }
        Command::Reload => {
            let path = stats
                .config_path()
                .ok_or("vsd was started without a configuration file")?;
            let cfg = Config::from_file(&path).map_err(|e| e.to_string())?;
            let diff = state.reload(&cfg)?;
            state.sync_stats(stats);
            Ok(text(
                format!("reloaded {}: {}\n", path.display(), diff.summary()),
                !diff.is_empty(),
            ))
        }
        Command::Counters { per_worker } => Ok(text(
            listing::render_counters(&stats.core_counters(), &stats.port_counters(), *per_worker),
            false,
        )),
        Command::Latency => Ok(text(listing::render_latency(&stats.latency()), false)),
        Command::Status => {
            let mut out = Vec::new();
            vsadm::print_status(&stats.status(), &mut out).map_err(|e| e.to_string())?;
            Ok(text(String::from_utf8_lossy(&out).into_owned(), false))
        }
        Command::Prometheus => {
            state.sync_stats(stats);
            let views = state.service_views(stats);
            let m = prometheus::Metrics {
                services: &views,
                cores: &stats.core_counters(),
                ports: &stats.port_counters(),
                latency: &stats.latency(),
            };
            Ok(text(prometheus::render(&m), false))
        }
        other => match state.apply(other)? {
            Reply::Changed => {
                state.sync_stats(stats);
                Ok(text(String::new(), true))
            }
            Reply::Text(t) => Ok(text(t, false)),
        },
    }
}

fn counters_obj(list: &[(String, u64)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// The daemon's `counters` answer: totals and every worker's.
pub fn counters_json(cores: &[CoreCounters]) -> Value {
    let workers: Vec<Value> = cores
        .iter()
        .map(|c| {
            json!({"lcore": c.core, "events": counters_obj(&c.events), "drops": counters_obj(&c.drops)})
        })
        .collect();
    json!({
        "total": {
            "events": counters_obj(&listing::sum_by_name(cores.iter().map(|c| c.events.as_slice()))),
            "drops": counters_obj(&listing::sum_by_name(cores.iter().map(|c| c.drops.as_slice()))),
        },
        "workers": workers,
    })
}

/// A service listing entry as JSON.
pub fn service_json(s: &ServiceView) -> Value {
    let counters = |c: &super::estimator::Counters| {
        json!({"conns": c.conns, "inpkts": c.inpkts, "outpkts": c.outpkts,
               "inbytes": c.inbytes, "outbytes": c.outbytes})
    };
    let rates = |r: &super::estimator::Rates| {
        json!({"cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
               "inbps": r.inbps, "outbps": r.outbps})
    };
    json!({
        "service": s.key.to_string(),
        "scheduler": s.scheduler,
        "flags": listing::flag_names(&s.scheduler, &s.flags),
        "persistence": s.persistence,
        "one_packet": s.one_packet,
        "stats": counters(&s.stats),
        "rates": rates(&s.rates),
        "servers": s.dests.iter().map(|d| json!({
            "address": listing::addr_port(d.addr, d.port),
            "forward": d.method.name(),
            "weight": d.weight,
            "active": d.active,
            "inactive": d.inactive,
            "persistent": d.persistent,
            "u_threshold": d.u_threshold,
            "l_threshold": d.l_threshold,
            "stats": counters(&d.stats),
            "rates": rates(&d.rates),
        })).collect::<Vec<_>>(),
    })
}
