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
use super::health::{self, HealthMonitor};
use super::ipvsadm::{self, Command, ListWhat};
use super::listing::{self, CoreCounters, ServiceView};
use super::prometheus;
use super::state::{ControlState, Reply, StatsSource};
use super::vsadm;
use crate::lb::service::cmp_dests_for_listing;

/// Most connections `-Lc` lists; a larger table is cut with a note.
pub const MAX_LISTED_CONNS: usize = 100_000;

/// Answer one request. `Err` is the error text the client shows.
pub fn handle_request(
    state: &mut ControlState,
    stats: &dyn StatsSource,
    req: &Value,
) -> Result<Value, String> {
    handle_request_with(state, None, stats, req)
}

/// [`handle_request`] with the health monitor, when health checks run:
/// `--reload` goes through it, `--checks` and `--prometheus` show it.
pub fn handle_request_with(
    state: &mut ControlState,
    health: Option<&mut HealthMonitor>,
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
            run_command_with(state, health, stats, &command, input)
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
    run_command_with(state, None, stats, cmd, input)
}

/// A reload of `cfg`: through the health monitor when there is one (so
/// checked servers keep their state); without one, a configuration that
/// asks for health checks is refused.
pub fn reload_with(
    state: &mut ControlState,
    health: Option<&mut HealthMonitor>,
    cfg: &Config,
) -> Result<super::state::ReloadDiff, String> {
    match health {
        Some(h) => h.reload(cfg, state),
        None if health::needs_health(cfg) => Err(health::NEED_ENGINE.into()),
        None => state.reload(cfg),
    }
}

/// [`run_command`] with the health monitor, when health checks run.
pub fn run_command_with(
    state: &mut ControlState,
    health: Option<&mut HealthMonitor>,
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
            let cfg = Config::load(&path, stats.keepalived_path().as_deref())
                .map_err(|e| e.to_string())?;
            let diff = reload_with(state, health, &cfg)?;
            state.sync_stats(stats);
            Ok(text(
                format!(
                    "reloaded {}{}: {}\n",
                    path.display(),
                    cfg.keepalived
                        .as_ref()
                        .map(|k| format!(" + {k}"))
                        .unwrap_or_default(),
                    diff.summary()
                ),
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
            let status = stats.status();
            let m = prometheus::Metrics {
                services: &views,
                cores: &stats.core_counters(),
                ports: &stats.port_counters(),
                latency: &stats.latency(),
                dpdk_version: status["dpdk"].as_str().unwrap_or(""),
            };
            let mut out = prometheus::render(&m);
            out.push_str(&super::prometheus_ipvs::render(&views));
            if let Some(a) = status.get("announce").filter(|a| !a.is_null()) {
                out.push_str(&super::announce::render_prometheus(a));
            }
            if let Some(h) = health {
                out.push_str(&prometheus::render_health(&h.report()));
            }
            Ok(text(out, false))
        }
        Command::List(l) if l.what == ListWhat::Announce => {
            let status = stats.status();
            let state = status.get("announce").filter(|a| !a.is_null());
            let mut data = text(super::announce::render(state), false);
            data["announce"] = state.cloned().unwrap_or(Value::Null);
            Ok(data)
        }
        // the daemon answers these itself when it runs with [announce]
        Command::Drain { .. } | Command::Undrain => Err(
            "vsd runs without [announce] in its configuration: there are no announced \
             routes to withdraw (add [announce] interface = \"vip0\" and reload)"
                .into(),
        ),
        Command::Checks => {
            let report = health.map(|h| h.report()).unwrap_or_default();
            let mut data = text(health::render_checks(&report), false);
            data["checks"] = health::checks_json(&report);
            Ok(data)
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

/// A service listing entry as JSON (servers sorted as `-L` sorts them).
pub fn service_json(s: &ServiceView) -> Value {
    let counters = |c: &super::estimator::Counters| {
        json!({"conns": c.conns, "inpkts": c.inpkts, "outpkts": c.outpkts,
               "inbytes": c.inbytes, "outbytes": c.outbytes})
    };
    let rates = |r: &super::estimator::Rates| {
        json!({"cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
               "inbps": r.inbps, "outbps": r.outbps})
    };
    let mut dests: Vec<&listing::DestView> = s.dests.iter().collect();
    dests.sort_by(|a, b| cmp_dests_for_listing((a.addr, a.port), (b.addr, b.port)));
    json!({
        "service": s.key.to_string(),
        "scheduler": s.scheduler,
        "flags": listing::flag_names(&s.scheduler, &s.flags),
        "persistence": s.persistence,
        "netmask": listing::mask_text(&s.netmask),
        "one_packet": s.one_packet,
        "synproxy": s.synproxy,
        "stats": counters(&s.stats),
        "rates": rates(&s.rates),
        "servers": dests.iter().map(|d| json!({
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::estimator::Counters;
    use crate::control::listing::{ConnView, LatencyView, PortCounters};
    use crate::control::state::testing::FakeStats;
    use crate::lb::types::Protocol;
    use std::net::{IpAddr, SocketAddr};

    fn req(args: &[&str]) -> Value {
        json!({"v": 1, "cmd": "ipvsadm", "args": args})
    }
    fn call(s: &mut ControlState, st: &FakeStats, args: &[&str]) -> Result<Value, String> {
        handle_request(s, st, &req(args))
    }
    fn text_of(s: &mut ControlState, st: &FakeStats, line: &str) -> String {
        let args: Vec<&str> = line.split_whitespace().collect();
        let v = call(s, st, &args).unwrap_or_else(|e| panic!("{line}: {e}"));
        v["text"].as_str().unwrap().to_string()
    }
    fn ip(a: &str) -> IpAddr {
        a.parse().unwrap()
    }

    fn setup() -> (ControlState, FakeStats) {
        let mut s = ControlState::default();
        let st = FakeStats::default();
        for line in [
            "-A -t 198.18.0.100:80 -s rr",
            "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m",
            "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2",
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let v = call(&mut s, &st, &args).unwrap();
            assert_eq!(v, json!({"text": "", "changed": true}), "{line}");
        }
        (s, st)
    }

    #[test]
    fn listing_through_a_request() {
        let (mut s, st) = setup();
        st.conns.borrow_mut().insert(
            1,
            crate::control::state::ConnCounts {
                active: 4,
                inactive: 2,
                persistent: 0,
            },
        );
        assert_eq!(
            text_of(&mut s, &st, "-Ln"),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  198.18.0.100:80 rr\n\
             \x20 -> 198.18.1.11:8080             Masq    1      0          0         \n\
             \x20 -> 198.18.1.12:8080             Masq    2      4          2         \n"
        );
        // Without arguments: the same listing.
        let v = call(&mut s, &st, &[]).unwrap();
        assert_eq!(v["text"], json!(text_of(&mut s, &st, "-Ln")));
        assert_eq!(v["services"][0]["servers"][1]["active"], json!(4));
        assert_eq!(v["services"][0]["service"], json!("TCP 198.18.0.100:80"));
        // One service: no version line.
        assert!(text_of(&mut s, &st, "-L -t 198.18.0.100:80").starts_with("Prot LocalAddress"));
        assert_eq!(
            call(&mut s, &st, &["-L", "-t", "198.18.0.1:80"]).unwrap_err(),
            "No such service"
        );
        // Stats: counters since the service was created.
        // (198.18.0.100:80, the first service created: slot 0)
        st.services.borrow_mut().insert(
            0,
            Counters {
                conns: 3,
                inpkts: 30,
                outpkts: 20,
                inbytes: 3000,
                outbytes: 200_000_000_000,
            },
        );
        let stats_text = text_of(&mut s, &st, "-Ln --stats");
        assert!(
            stats_text.contains(
                "TCP  198.18.0.100:80                     3       30       20     3000     200G\n"
            ),
            "{stats_text}"
        );
        assert!(text_of(&mut s, &st, "-Ln --stats --exact").contains("     3000 200000000000\n"));
        // -Z then the counters read 0.
        assert_eq!(call(&mut s, &st, &["-Z"]).unwrap()["changed"], json!(false));
        assert!(text_of(&mut s, &st, "-Ln --stats").contains(
            "TCP  198.18.0.100:80                     0        0        0        0        0\n"
        ));
        assert!(
            text_of(&mut s, &st, "-Ln --rate").contains("CPS    InPPS   OutPPS    InBPS   OutBPS")
        );
    }

    #[test]
    fn connections_save_restore_timeouts() {
        let (mut s, mut st) = setup();
        let sa = |a: &str, p: u16| SocketAddr::new(ip(a), p);
        st.conn_list = vec![
            ConnView {
                proto: Protocol::Tcp.into(),
                expires_ms: 61_000,
                state: "FIN_WAIT",
                client: sa("198.18.5.1", 1234),
                vip: sa("198.18.0.100", 80),
                dest: sa("198.18.1.11", 8080),
            };
            3
        ];
        let text = text_of(&mut s, &st, "-Lnc");
        assert_eq!(
            text.lines().nth(2).unwrap(),
            "TCP 01:01  FIN_WAIT    198.18.5.1:1234    198.18.0.100:80    198.18.1.11:8080"
        );
        assert_eq!(text.lines().count(), 5);
        let saved = text_of(&mut s, &st, "-S -n");
        assert_eq!(
            saved,
            "-A -t 198.18.0.100:80 -s rr\n\
             -a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1\n\
             -a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2\n"
        );
        let mut fresh = ControlState::default();
        let v = handle_request(
            &mut fresh,
            &st,
            &json!({"v": 1, "cmd": "ipvsadm", "args": ["-R"], "input": saved}),
        )
        .unwrap();
        assert_eq!(v["changed"], json!(true));
        assert_eq!(text_of(&mut fresh, &st, "-S"), saved);
        assert_eq!(
            call(&mut fresh, &st, &["-R"]).unwrap_err(),
            "-R reads the rules from standard input; none were sent"
        );
        assert_eq!(
            text_of(&mut s, &st, "-L --timeout"),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
        assert_eq!(
            call(&mut s, &st, &["--set", "1", "2", "3"]).unwrap()["changed"],
            json!(true)
        );
        assert_eq!(
            text_of(&mut s, &st, "-L --timeout"),
            "Timeout (tcp tcpfin udp): 1 2 3\n"
        );
        assert_eq!(text_of(&mut s, &st, "-L --daemon"), "");
        assert_eq!(text_of(&mut s, &st, "-C"), "");
        assert_eq!(text_of(&mut s, &st, "-S"), "");
        // Limit on listed connections.
        st.conn_list = vec![st.conn_list[0]; MAX_LISTED_CONNS + 2];
        assert!(text_of(&mut s, &st, "-Lnc").ends_with("(2 more connections not listed)\n"));
    }

    /// Without `[announce]` (the daemon answers drains itself when it has
    /// it): a drain is refused, the listing says announcing is off.
    #[test]
    fn drain_without_announce_is_refused() {
        let (mut s, st) = setup();
        for args in [
            &["--drain"][..],
            &["--undrain"],
            &["--drain", "--timeout", "5"],
        ] {
            let e = call(&mut s, &st, args).unwrap_err();
            assert!(e.starts_with("vsd runs without [announce]"), "{e}");
        }
        let v = call(&mut s, &st, &["-L", "--announce"]).unwrap();
        assert_eq!(
            v["text"],
            "Announce: off (no [announce] in the configuration)\n"
        );
        assert_eq!(v["announce"], Value::Null);
        let prom = text_of(&mut s, &st, "--prometheus");
        assert!(!prom.contains("vsd_director_draining"));
    }

    #[test]
    fn errors_and_bad_requests() {
        let (mut s, st) = setup();
        assert_eq!(
            call(&mut s, &st, &["-A", "-t", "198.18.0.100:80"]).unwrap_err(),
            "Service already exists"
        );
        assert_eq!(
            call(&mut s, &st, &["-a", "-t", "198.18.0.100:80", "-w", "1"]).unwrap_err(),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            handle_request(&mut s, &st, &json!({"cmd": "ipvsadm"})).unwrap_err(),
            "bad request: \"args\" must be an array of strings"
        );
        assert_eq!(
            handle_request(&mut s, &st, &json!({"cmd": "ipvsadm", "args": [1]})).unwrap_err(),
            "bad request: \"args\" must be an array of strings"
        );
        assert_eq!(
            handle_request(&mut s, &st, &json!({"args": []})).unwrap_err(),
            "bad request: missing \"cmd\""
        );
        assert!(handle_request(&mut s, &st, &json!({"cmd": "nope"}))
            .unwrap_err()
            .starts_with("unknown command \"nope\""));
        assert_eq!(
            call(&mut s, &st, &["--reload"]).unwrap_err(),
            "vsd was started without a configuration file"
        );
    }

    #[test]
    fn views_counters_latency_status_prometheus() {
        let (mut s, mut st) = setup();
        st.cores = vec![CoreCounters {
            core: 1,
            events: vec![("rx_packets".into(), 9)],
            drops: vec![("no_service".into(), 2)],
        }];
        st.ports = vec![PortCounters {
            port: "lan0".into(),
            link_up: true,
            counters: vec![("rx_missed".into(), 1)],
        }];
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        h.record(100).unwrap();
        st.hists = vec![LatencyView {
            name: "burst".into(),
            core: None,
            hist: h,
        }];
        assert_eq!(
            text_of(&mut s, &st, "--counters"),
            "events:\n  rx_packets               9\ndrops:\n  no_service               2\n\
             port lan0:\n  rx_missed                1\n"
        );
        assert!(text_of(&mut s, &st, "--counters --per-worker").contains("worker lcore 1 events:"));
        assert!(text_of(&mut s, &st, "--latency").contains("burst"));
        assert!(
            text_of(&mut s, &st, "--status").starts_with("vsd 0.1.0 (DPDK 22.11)\nstate: running")
        );
        let prom = text_of(&mut s, &st, "--prometheus");
        assert!(prom.contains(
            "vsd_server_weight{service=\"TCP 198.18.0.100:80\",server=\"198.18.1.12:8080\"} 2\n"
        ));
        assert!(prom.contains("vsd_worker_drops_total{core=\"1\",reason=\"no_service\"} 2\n"));
        assert!(prom.contains("vsd_latency_nanoseconds_count{name=\"burst\",core=\"all\"} 1\n"));
        assert_eq!(
            handle_request(&mut s, &st, &json!({"v": 1, "cmd": "counters"})).unwrap(),
            json!({"total": {"events": {"rx_packets": 9}, "drops": {"no_service": 2}},
                   "workers": [{"lcore": 1, "events": {"rx_packets": 9}, "drops": {"no_service": 2}}]})
        );
        assert_eq!(
            handle_request(&mut s, &st, &json!({"v": 1, "cmd": "status"})).unwrap()["state"],
            json!("running")
        );
        assert!(text_of(&mut s, &st, "-h").starts_with("Usage:"));
        assert!(text_of(&mut s, &st, "-v").starts_with("vsadm "));
    }

    #[test]
    fn reload_from_the_config_file() {
        let dir = std::env::temp_dir().join(format!("vsd-api-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vsd.toml");
        let base = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n";
        std::fs::write(
            &path,
            format!(
                "{base}[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n\
                 scheduler = \"rr\"\n[[service.real_server]]\naddress = \"198.18.1.11\"\n\
                 port = 8080\nmethod = \"nat\"\n"
            ),
        )
        .unwrap();
        let (mut s, mut st) = setup();
        st.config = Some(path.clone());
        let v = call(&mut s, &st, &["--reload"]).unwrap();
        assert_eq!(v["changed"], json!(true));
        assert!(v["text"]
            .as_str()
            .unwrap()
            .ends_with("services: 0 added, 0 edited, 0 removed; servers: 0 added, 0 edited, 1 removed; local addresses changed in 0 service(s)\n"));
        assert_eq!(s.draining_slots(), vec![1]);
        // A broken file is refused and the running state kept.
        std::fs::write(&path, format!("{base}[[service]]\nproto = \"sctp\"\n")).unwrap();
        let before = s.save_text();
        let e = call(&mut s, &st, &["--reload"]).unwrap_err();
        assert!(e.contains("vsd.toml"), "{e}");
        assert_eq!(s.save_text(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reload_rereads_the_keepalived_file() {
        let dir = std::env::temp_dir().join(format!("vsd-api-kareload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = dir.join("vsd.toml");
        std::fs::write(
            &toml,
            "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n",
        )
        .unwrap();
        let ka = dir.join("keepalived.conf");
        let vs = |servers: &str| {
            format!("virtual_server 198.18.0.100 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n{servers}}}\n")
        };
        std::fs::write(
            &ka,
            vs(" real_server 198.18.1.11 8080 {\n }\n real_server 198.18.1.12 8080 {\n  weight 2\n }\n"),
        )
        .unwrap();
        let (mut s, mut st) = setup();
        st.config = Some(toml.clone());
        st.keepalived = Some(ka.clone());
        // the same services as setup(): nothing changes
        let v = call(&mut s, &st, &["--reload"]).unwrap();
        assert_eq!(v["changed"], json!(false), "{v}");
        assert!(
            v["text"].as_str().unwrap().starts_with(&format!(
                "reloaded {} + {}: ",
                toml.display(),
                ka.display()
            )),
            "{v}"
        );
        // a server removed from keepalived.conf goes
        std::fs::write(&ka, vs(" real_server 198.18.1.12 8080 {\n  weight 2\n }\n")).unwrap();
        let v = call(&mut s, &st, &["--reload"]).unwrap();
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .contains("servers: 0 added, 0 edited, 1 removed"),
            "{v}"
        );
        // a broken keepalived.conf is refused with its file and line
        std::fs::write(&ka, vs(" real_server 198.18.1.12 8080 {\n  weight x\n }\n")).unwrap();
        let e = call(&mut s, &st, &["--reload"]).unwrap_err();
        assert!(e.contains("keepalived.conf:6: weight \"x\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
