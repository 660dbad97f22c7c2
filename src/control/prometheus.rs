//! Prometheus text exposition (format 0.0.4) of vsd's counters, rates and
//! latency histograms, from plain view structs.
//!
//! Families (labels in braces):
//! - `vsd_service_connections_total{service}`, `vsd_service_packets_total`
//!   and `vsd_service_bytes_total{service,direction}`: counters since the
//!   service was created or zeroed (`-Z`), as `ipvsadm --stats`;
//! - `vsd_service_cps{service}`, `vsd_service_pps` and
//!   `vsd_service_bps{service,direction}`: IPVS's rate estimates (gauges);
//! - the same with `vsd_server_` and labels `service,server`, plus the gauges
//!   `vsd_server_weight`, `vsd_server_active_connections`,
//!   `vsd_server_inactive_connections`, `vsd_server_persistent_connections`;
//! - `vsd_worker_events_total{core,event}` (counts only),
//!   `vsd_worker_drops_total{core,reason}`, `vsd_worker_bytes_total{core,direction}`,
//!   `vsd_worker_cycles_total{core,state}` (TSC cycles on loop turns with
//!   packets, `busy`, and without, `idle`: `rate(busy) / rate(rx_packets)`
//!   is the worker's cycles per packet), `vsd_worker_stall_seconds_total`
//!   and `vsd_worker_idle_sleep_seconds_total`; one unit per family;
//! - `vsd_port_counter_total{port,counter}`: NIC packet and error counters,
//!   `vsd_port_bytes_total{port,direction}`, `vsd_port_link_up{port}`;
//! - `vsd_build_info{version,dpdk}` (always 1);
//! - `vsd_latency_nanoseconds{name,core,quantile}` summaries (p50, p99,
//!   p99.9, with `_sum` and `_count`).
//! - with health checks ([`render_health`]): `vsd_real_server_up{service,server}`,
//!   `vsd_service_quorum_up{service}`, and per checker
//!   (`{service,server,checker,index}`) `vsd_health_check_up`,
//!   `vsd_health_check_latency_seconds`, `vsd_health_checks_total`,
//!   `vsd_health_check_failures_total`, `vsd_health_transitions_total`.
//!
//! Label values are escaped (`\\`, `\"`, `\n`); `service` is `TCP
//! 198.18.0.100:80` style (ipvsadm's identity of a service), `server` is
//! `198.18.1.11:8080` or `[2001:db8::1]:80`.
//!
//! node_exporter's `node_ipvs_*` families follow (see [`super::prometheus_ipvs`]).

use std::fmt::Write as _;

use super::listing::{addr_port, CoreCounters, LatencyView, PortCounters, ServiceView};

/// Worker events that are not counts of things: exposed in families of
/// their own unit (bytes, cycles, seconds) instead of `vsd_worker_events_total`.
const WORKER_NON_COUNTS: [&str; 6] = [
    "rx_bytes",
    "tx_bytes",
    "busy_cycles",
    "idle_cycles",
    "stall_us",
    "idle_sleep_us",
];

/// Quantiles every latency summary reports.
pub const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// What to expose.
#[derive(Debug, Clone, Copy)]
pub struct Metrics<'a> {
    /// Services with their servers, counters and rates.
    pub services: &'a [ServiceView],
    /// Per-worker counters.
    pub cores: &'a [CoreCounters],
    /// Per-port NIC counters.
    pub ports: &'a [PortCounters],
    /// Latency histograms.
    pub latency: &'a [LatencyView],
    /// The DPDK version vsd runs on, for `vsd_build_info`.
    pub dpdk_version: &'a str,
}

/// A label value escaped for the text format.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A HELP text escaped for the text format (backslash and newline only).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }
    fn sample(&mut self, suffix: &str, l: &[(&str, &str)], v: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{}{suffix}{} {v}", self.name, labels(l));
    }
}

/// The whole exposition.
pub fn render(m: &Metrics<'_>) -> String {
    let mut out = String::new();
    let svc_names: Vec<String> = m.services.iter().map(|s| s.key.to_string()).collect();

    type Pick = fn(&super::estimator::Counters) -> [u64; 2];
    let dirs: [(&'static str, &str, Pick); 2] = [
        ("vsd_service_packets_total", "Packets of the service", |c| {
            [c.inpkts, c.outpkts]
        }),
        ("vsd_service_bytes_total", "Bytes of the service", |c| {
            [c.inbytes, c.outbytes]
        }),
    ];
    let mut f = Family::new(
        &mut out,
        "vsd_service_connections_total",
        "counter",
        "Connections scheduled by the service",
    );
    for (s, name) in m.services.iter().zip(&svc_names) {
        f.sample("", &[("service", name)], s.stats.conns);
    }
    for (fam, help, pick) in dirs {
        let mut f = Family::new(&mut out, fam, "counter", help);
        for (s, name) in m.services.iter().zip(&svc_names) {
            let [i, o] = pick(&s.stats);
            f.sample("", &[("service", name), ("direction", "in")], i);
            f.sample("", &[("service", name), ("direction", "out")], o);
        }
    }
    let mut f = Family::new(
        &mut out,
        "vsd_service_cps",
        "gauge",
        "Connections per second (IPVS estimator)",
    );
    for (s, name) in m.services.iter().zip(&svc_names) {
        f.sample("", &[("service", name)], s.rates.cps);
    }
    type RatePick = fn(&super::estimator::Rates) -> [u64; 2];
    let rates: [(&'static str, &str, RatePick); 2] = [
        (
            "vsd_service_pps",
            "Packets per second (IPVS estimator)",
            |r| [r.inpps, r.outpps],
        ),
        (
            "vsd_service_bps",
            "Bytes per second (IPVS estimator)",
            |r| [r.inbps, r.outbps],
        ),
    ];
    for (fam, help, pick) in rates {
        let mut f = Family::new(&mut out, fam, "gauge", help);
        for (s, name) in m.services.iter().zip(&svc_names) {
            let [i, o] = pick(&s.rates);
            f.sample("", &[("service", name), ("direction", "in")], i);
            f.sample("", &[("service", name), ("direction", "out")], o);
        }
    }

    // Real servers.
    let servers: Vec<(&str, String, &super::listing::DestView)> = m
        .services
        .iter()
        .zip(&svc_names)
        .flat_map(|(s, name)| {
            s.dests
                .iter()
                .map(move |d| (name.as_str(), addr_port(d.addr, d.port), d))
        })
        .collect();
    type DestPick = fn(&super::listing::DestView) -> u64;
    let scalars: [(&'static str, &str, &str, DestPick); 6] = [
        (
            "vsd_server_connections_total",
            "counter",
            "Connections scheduled to the server",
            |d| d.stats.conns,
        ),
        (
            "vsd_server_cps",
            "gauge",
            "Connections per second to the server (IPVS estimator)",
            |d| d.rates.cps,
        ),
        (
            "vsd_server_weight",
            "gauge",
            "Weight of the server (0: quiescent)",
            |d| u64::from(d.weight),
        ),
        (
            "vsd_server_active_connections",
            "gauge",
            "ESTABLISHED and half-open (SYN_SENT, SYN_RECV, SYNACK) connections (ActiveConn)",
            |d| u64::from(d.active),
        ),
        (
            "vsd_server_inactive_connections",
            "gauge",
            "Other connections (InActConn)",
            |d| u64::from(d.inactive),
        ),
        (
            "vsd_server_persistent_connections",
            "gauge",
            "Persistence templates (PersistConn)",
            |d| u64::from(d.persistent),
        ),
    ];
    for (fam, kind, help, pick) in scalars {
        let mut f = Family::new(&mut out, fam, kind, help);
        for (svc, srv, d) in &servers {
            f.sample("", &[("service", svc), ("server", srv)], pick(d));
        }
    }
    type DirPick = fn(&super::listing::DestView) -> [u64; 2];
    let dir_fams: [(&'static str, &str, &str, DirPick); 4] = [
        (
            "vsd_server_packets_total",
            "counter",
            "Packets of the server",
            |d| [d.stats.inpkts, d.stats.outpkts],
        ),
        (
            "vsd_server_bytes_total",
            "counter",
            "Bytes of the server",
            |d| [d.stats.inbytes, d.stats.outbytes],
        ),
        (
            "vsd_server_pps",
            "gauge",
            "Packets per second of the server (IPVS estimator)",
            |d| [d.rates.inpps, d.rates.outpps],
        ),
        (
            "vsd_server_bps",
            "gauge",
            "Bytes per second of the server (IPVS estimator)",
            |d| [d.rates.inbps, d.rates.outbps],
        ),
    ];
    for (fam, kind, help, pick) in dir_fams {
        let mut f = Family::new(&mut out, fam, kind, help);
        for (svc, srv, d) in &servers {
            let [i, o] = pick(d);
            f.sample(
                "",
                &[("service", svc), ("server", srv), ("direction", "in")],
                i,
            );
            f.sample(
                "",
                &[("service", svc), ("server", srv), ("direction", "out")],
                o,
            );
        }
    }

    // Workers and ports. One unit per family: counts of events, bytes,
    // seconds (from microsecond counters) and TSC cycles are apart.
    let mut f = Family::new(
        &mut out,
        "vsd_worker_events_total",
        "counter",
        "Data-plane events per worker (counts)",
    );
    for c in m.cores {
        let core = c.core.to_string();
        for (k, v) in &c.events {
            if !WORKER_NON_COUNTS.contains(&k.as_str()) {
                f.sample("", &[("core", &core), ("event", k)], v);
            }
        }
    }
    let event = |c: &CoreCounters, name: &str| {
        c.events
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    };
    let mut f = Family::new(
        &mut out,
        "vsd_worker_bytes_total",
        "counter",
        "Bytes received and sent per worker",
    );
    for c in m.cores {
        let core = c.core.to_string();
        f.sample(
            "",
            &[("core", &core), ("direction", "rx")],
            event(c, "rx_bytes"),
        );
        f.sample(
            "",
            &[("core", &core), ("direction", "tx")],
            event(c, "tx_bytes"),
        );
    }
    let mut f = Family::new(
        &mut out,
        "vsd_worker_cycles_total",
        "counter",
        "TSC cycles per worker on loop turns with packets (busy) and without (idle); rate(busy) / rate(vsd_worker_events_total{event=\"rx_packets\"}) is the cycles per packet",
    );
    for c in m.cores {
        let core = c.core.to_string();
        f.sample(
            "",
            &[("core", &core), ("state", "busy")],
            event(c, "busy_cycles"),
        );
        f.sample(
            "",
            &[("core", &core), ("state", "idle")],
            event(c, "idle_cycles"),
        );
    }
    for (name, counter, help) in [
        (
            "vsd_worker_stall_seconds_total",
            "stall_us",
            "Time workers spent in stalls (a loop turn longer than the stall threshold)",
        ),
        (
            "vsd_worker_idle_sleep_seconds_total",
            "idle_sleep_us",
            "Time workers slept in idle mode",
        ),
    ] {
        let mut f = Family::new(&mut out, name, "counter", help);
        for c in m.cores {
            let core = c.core.to_string();
            f.sample("", &[("core", &core)], event(c, counter) as f64 / 1e6);
        }
    }
    let mut f = Family::new(
        &mut out,
        "vsd_worker_drops_total",
        "counter",
        "Dropped packets per worker, by reason",
    );
    for c in m.cores {
        let core = c.core.to_string();
        for (k, v) in &c.drops {
            f.sample("", &[("core", &core), ("reason", k)], v);
        }
    }
    let mut f = Family::new(
        &mut out,
        "vsd_port_counter_total",
        "counter",
        "NIC counters per port (packets and errors)",
    );
    for p in m.ports {
        for (k, v) in p.counters.iter().filter(|(k, _)| !k.ends_with("_bytes")) {
            f.sample("", &[("port", &p.port), ("counter", k)], v);
        }
    }
    let mut f = Family::new(
        &mut out,
        "vsd_port_bytes_total",
        "counter",
        "Bytes received and sent per port (NIC counters)",
    );
    for p in m.ports {
        for (k, v) in p.counters.iter().filter(|(k, _)| k.ends_with("_bytes")) {
            let dir = k.trim_end_matches("_bytes");
            f.sample("", &[("port", &p.port), ("direction", dir)], v);
        }
    }
    let mut f = Family::new(
        &mut out,
        "vsd_port_link_up",
        "gauge",
        "Whether the port's link is up (1) or down (0)",
    );
    for p in m.ports {
        f.sample("", &[("port", &p.port)], u8::from(p.link_up));
    }
    let mut f = Family::new(
        &mut out,
        "vsd_build_info",
        "gauge",
        "vsd's version and the DPDK it runs on (always 1)",
    );
    f.sample(
        "",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("dpdk", m.dpdk_version),
        ],
        1,
    );

    // Latency summaries.
    let mut f = Family::new(
        &mut out,
        "vsd_latency_nanoseconds",
        "summary",
        "Latency histograms (nanoseconds)",
    );
    for h in m.latency {
        let core = h.core.map_or_else(|| "all".to_string(), |c| c.to_string());
        for q in QUANTILES {
            let qs = q.to_string();
            f.sample(
                "",
                &[("name", &h.name), ("core", &core), ("quantile", &qs)],
                h.hist.value_at_quantile(q),
            );
        }
        let sum: u128 = h
            .hist
            .iter_recorded()
            .map(|v| u128::from(v.value_iterated_to()) * u128::from(v.count_at_value()))
            .sum();
        f.sample("_sum", &[("name", &h.name), ("core", &core)], sum);
        f.sample(
            "_count",
            &[("name", &h.name), ("core", &core)],
            h.hist.len(),
        );
    }
    out
}

/// The health-check families (appended to [`render`] when checks run):
/// `vsd_real_server_up{service,server}` and
/// `vsd_service_quorum_up{service}` (1/0), per checker
/// (`{service,server,checker,index}`, checker is keepalived's block name)
/// `vsd_health_check_up`, `vsd_health_check_latency_seconds` (last
/// attempt) and the counters `vsd_health_checks_total`,
/// `vsd_health_check_failures_total`, `vsd_health_transitions_total`.
pub fn render_health(report: &[super::health::ServiceChecks]) -> String {
    let mut out = String::new();
    let names: Vec<String> = report.iter().map(|s| s.service.to_string()).collect();
    let mut f = Family::new(
        &mut out,
        "vsd_service_quorum_up",
        "gauge",
        "Whether the service has quorum (live weight against quorum and hysteresis)",
    );
    for (s, name) in report.iter().zip(&names) {
        f.sample("", &[("service", name)], u8::from(s.quorum.up));
    }
    let mut f = Family::new(
        &mut out,
        "vsd_real_server_up",
        "gauge",
        "Whether every health checker of the real server passes",
    );
    for (s, name) in report.iter().zip(&names) {
        for v in &s.servers {
            let server = v.pool.dest.to_string();
            f.sample(
                "",
                &[("service", name), ("server", &server)],
                u8::from(v.pool.alive),
            );
        }
    }
    type CheckPick = fn(&crate::health::CheckStatus) -> String;
    let families: [(&'static str, &str, &str, CheckPick); 5] = [
        (
            "vsd_health_check_up",
            "gauge",
            "Whether the health checker is up",
            |c| u8::from(c.up).to_string(),
        ),
        (
            "vsd_health_check_latency_seconds",
            "gauge",
            "Duration of the checker's last finished attempt",
            |c| {
                c.last
                    .as_ref()
                    .map_or(0.0, |r| r.latency.as_secs_f64())
                    .to_string()
            },
        ),
        (
            "vsd_health_checks_total",
            "counter",
            "Check attempts finished",
            |c| c.checks.to_string(),
        ),
        (
            "vsd_health_check_failures_total",
            "counter",
            "Check attempts that failed",
            |c| c.failures.to_string(),
        ),
        (
            "vsd_health_transitions_total",
            "counter",
            "Up/down transitions of the checker",
            |c| c.transitions.to_string(),
        ),
    ];
    for (fam, kind, help, pick) in families {
        let mut f = Family::new(&mut out, fam, kind, help);
        for (s, name) in report.iter().zip(&names) {
            for v in &s.servers {
                let server = v.pool.dest.to_string();
                for c in &v.checks {
                    let index = c.key.index.to_string();
                    f.sample(
                        "",
                        &[
                            ("service", name),
                            ("server", &server),
                            ("checker", c.kind),
                            ("index", &index),
                        ],
                        pick(c),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::estimator::{Counters, Rates};
    use crate::control::listing::DestView;
    use crate::lb::service::{PersistMask, SchedFlags, ServiceKey};
    use crate::lb::types::{AddrFamily, FwdMethod};
    use hdrhistogram::Histogram;

    #[test]
    fn escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
        assert_eq!(
            labels(&[("name", "lat\"x"), ("core", "1")]),
            "{name=\"lat\\\"x\",core=\"1\"}"
        );
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn golden_exposition() {
        let services = vec![ServiceView {
            key: ServiceKey::tcp("198.18.0.100".parse().unwrap(), 80),
            scheduler: "rr".into(),
            flags: SchedFlags::default(),
            persistence: None,
            netmask: PersistMask::full(AddrFamily::Inet),
            one_packet: false,
            synproxy: false,
            stats: Counters {
                conns: 10,
                inpkts: 20,
                outpkts: 30,
                inbytes: 40,
                outbytes: 50,
            },
            rates: Rates {
                cps: 1,
                inpps: 2,
                outpps: 3,
                inbps: 4,
                outbps: 5,
            },
            dests: vec![DestView {
                addr: "2001:db8::11".parse().unwrap(),
                port: 8080,
                method: FwdMethod::Tunnel,
                weight: 3,
                active: 8,
                inactive: 9,
                persistent: 1,
                u_threshold: 0,
                l_threshold: 0,
                stats: Counters {
                    conns: 6,
                    inpkts: 11,
                    outpkts: 12,
                    inbytes: 13,
                    outbytes: 14,
                },
                rates: Rates {
                    cps: 7,
                    inpps: 15,
                    outpps: 16,
                    inbps: 17,
                    outbps: 18,
                },
            }],
        }];
        let cores = vec![CoreCounters {
            core: 2,
            events: vec![
                ("rx_packets".into(), 100),
                ("rx_bytes".into(), 6400),
                ("busy_cycles".into(), 25000),
                ("stall_us".into(), 1500),
            ],
            drops: vec![("no_route".into(), 5)],
        }];
        let ports = vec![PortCounters {
            port: "lan0".into(),
            link_up: true,
            counters: vec![("rx_missed".into(), 7), ("rx_bytes".into(), 640)],
        }];
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in [100, 200, 300] {
            h.record(v).unwrap();
        }
        let latency = vec![LatencyView {
            name: "lat\"x".into(),
            core: Some(2),
            hist: h,
        }];
        let text = render(&Metrics {
            services: &services,
            cores: &cores,
            ports: &ports,
            latency: &latency,
            dpdk_version: "DPDK 22.11.4",
        });
        let s = "service=\"TCP 198.18.0.100:80\"";
        let d = "service=\"TCP 198.18.0.100:80\",server=\"[2001:db8::11]:8080\"";
        let want = [
            "# HELP vsd_service_connections_total Connections scheduled by the service".to_string(),
            "# TYPE vsd_service_connections_total counter".into(),
            format!("vsd_service_connections_total{{{s}}} 10"),
            "# HELP vsd_service_packets_total Packets of the service".into(),
            "# TYPE vsd_service_packets_total counter".into(),
            format!("vsd_service_packets_total{{{s},direction=\"in\"}} 20"),
            format!("vsd_service_packets_total{{{s},direction=\"out\"}} 30"),
            "# HELP vsd_service_bytes_total Bytes of the service".into(),
            "# TYPE vsd_service_bytes_total counter".into(),
            format!("vsd_service_bytes_total{{{s},direction=\"in\"}} 40"),
            format!("vsd_service_bytes_total{{{s},direction=\"out\"}} 50"),
            "# HELP vsd_service_cps Connections per second (IPVS estimator)".into(),
            "# TYPE vsd_service_cps gauge".into(),
            format!("vsd_service_cps{{{s}}} 1"),
            "# HELP vsd_service_pps Packets per second (IPVS estimator)".into(),
            "# TYPE vsd_service_pps gauge".into(),
            format!("vsd_service_pps{{{s},direction=\"in\"}} 2"),
            format!("vsd_service_pps{{{s},direction=\"out\"}} 3"),
            "# HELP vsd_service_bps Bytes per second (IPVS estimator)".into(),
            "# TYPE vsd_service_bps gauge".into(),
            format!("vsd_service_bps{{{s},direction=\"in\"}} 4"),
            format!("vsd_service_bps{{{s},direction=\"out\"}} 5"),
            "# HELP vsd_server_connections_total Connections scheduled to the server".into(),
            "# TYPE vsd_server_connections_total counter".into(),
            format!("vsd_server_connections_total{{{d}}} 6"),
            "# HELP vsd_server_cps Connections per second to the server (IPVS estimator)".into(),
            "# TYPE vsd_server_cps gauge".into(),
            format!("vsd_server_cps{{{d}}} 7"),
            "# HELP vsd_server_weight Weight of the server (0: quiescent)".into(),
            "# TYPE vsd_server_weight gauge".into(),
            format!("vsd_server_weight{{{d}}} 3"),
            "# HELP vsd_server_active_connections ESTABLISHED and half-open (SYN_SENT, SYN_RECV, SYNACK) connections (ActiveConn)".into(),
            "# TYPE vsd_server_active_connections gauge".into(),
            format!("vsd_server_active_connections{{{d}}} 8"),
            "# HELP vsd_server_inactive_connections Other connections (InActConn)".into(),
            "# TYPE vsd_server_inactive_connections gauge".into(),
            format!("vsd_server_inactive_connections{{{d}}} 9"),
            "# HELP vsd_server_persistent_connections Persistence templates (PersistConn)".into(),
            "# TYPE vsd_server_persistent_connections gauge".into(),
            format!("vsd_server_persistent_connections{{{d}}} 1"),
            "# HELP vsd_server_packets_total Packets of the server".into(),
            "# TYPE vsd_server_packets_total counter".into(),
            format!("vsd_server_packets_total{{{d},direction=\"in\"}} 11"),
            format!("vsd_server_packets_total{{{d},direction=\"out\"}} 12"),
            "# HELP vsd_server_bytes_total Bytes of the server".into(),
            "# TYPE vsd_server_bytes_total counter".into(),
            format!("vsd_server_bytes_total{{{d},direction=\"in\"}} 13"),
            format!("vsd_server_bytes_total{{{d},direction=\"out\"}} 14"),
            "# HELP vsd_server_pps Packets per second of the server (IPVS estimator)".into(),
            "# TYPE vsd_server_pps gauge".into(),
            format!("vsd_server_pps{{{d},direction=\"in\"}} 15"),
            format!("vsd_server_pps{{{d},direction=\"out\"}} 16"),
            "# HELP vsd_server_bps Bytes per second of the server (IPVS estimator)".into(),
            "# TYPE vsd_server_bps gauge".into(),
            format!("vsd_server_bps{{{d},direction=\"in\"}} 17"),
            format!("vsd_server_bps{{{d},direction=\"out\"}} 18"),
            "# HELP vsd_worker_events_total Data-plane events per worker (counts)".into(),
            "# TYPE vsd_worker_events_total counter".into(),
            "vsd_worker_events_total{core=\"2\",event=\"rx_packets\"} 100".into(),
            "# HELP vsd_worker_bytes_total Bytes received and sent per worker".into(),
            "# TYPE vsd_worker_bytes_total counter".into(),
            "vsd_worker_bytes_total{core=\"2\",direction=\"rx\"} 6400".into(),
            "vsd_worker_bytes_total{core=\"2\",direction=\"tx\"} 0".into(),
            "# HELP vsd_worker_cycles_total TSC cycles per worker on loop turns with packets (busy) and without (idle); rate(busy) / rate(vsd_worker_events_total{event=\"rx_packets\"}) is the cycles per packet".into(),
            "# TYPE vsd_worker_cycles_total counter".into(),
            "vsd_worker_cycles_total{core=\"2\",state=\"busy\"} 25000".into(),
            "vsd_worker_cycles_total{core=\"2\",state=\"idle\"} 0".into(),
            "# HELP vsd_worker_stall_seconds_total Time workers spent in stalls (a loop turn longer than the stall threshold)".into(),
            "# TYPE vsd_worker_stall_seconds_total counter".into(),
            "vsd_worker_stall_seconds_total{core=\"2\"} 0.0015".into(),
            "# HELP vsd_worker_idle_sleep_seconds_total Time workers slept in idle mode".into(),
            "# TYPE vsd_worker_idle_sleep_seconds_total counter".into(),
            "vsd_worker_idle_sleep_seconds_total{core=\"2\"} 0".into(),
            "# HELP vsd_worker_drops_total Dropped packets per worker, by reason".into(),
            "# TYPE vsd_worker_drops_total counter".into(),
            "vsd_worker_drops_total{core=\"2\",reason=\"no_route\"} 5".into(),
            "# HELP vsd_port_counter_total NIC counters per port (packets and errors)".into(),
            "# TYPE vsd_port_counter_total counter".into(),
            "vsd_port_counter_total{port=\"lan0\",counter=\"rx_missed\"} 7".into(),
            "# HELP vsd_port_bytes_total Bytes received and sent per port (NIC counters)".into(),
            "# TYPE vsd_port_bytes_total counter".into(),
            "vsd_port_bytes_total{port=\"lan0\",direction=\"rx\"} 640".into(),
            "# HELP vsd_port_link_up Whether the port's link is up (1) or down (0)".into(),
            "# TYPE vsd_port_link_up gauge".into(),
            "vsd_port_link_up{port=\"lan0\"} 1".into(),
            "# HELP vsd_build_info vsd's version and the DPDK it runs on (always 1)".into(),
            "# TYPE vsd_build_info gauge".into(),
            format!("vsd_build_info{{version=\"{}\",dpdk=\"DPDK 22.11.4\"}} 1", env!("CARGO_PKG_VERSION")),
            "# HELP vsd_latency_nanoseconds Latency histograms (nanoseconds)".into(),
            "# TYPE vsd_latency_nanoseconds summary".into(),
            "vsd_latency_nanoseconds{name=\"lat\\\"x\",core=\"2\",quantile=\"0.5\"} 200".into(),
            "vsd_latency_nanoseconds{name=\"lat\\\"x\",core=\"2\",quantile=\"0.99\"} 300".into(),
            "vsd_latency_nanoseconds{name=\"lat\\\"x\",core=\"2\",quantile=\"0.999\"} 300".into(),
            "vsd_latency_nanoseconds_sum{name=\"lat\\\"x\",core=\"2\"} 600".into(),
            "vsd_latency_nanoseconds_count{name=\"lat\\\"x\",core=\"2\"} 3".into(),
        ];
        let got: Vec<&str> = text.lines().collect();
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g, w, "line {i}");
        }
        assert_eq!(got.len(), want.len());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn empty_input_still_declares_families() {
        let text = render(&Metrics {
            services: &[],
            cores: &[],
            ports: &[],
            latency: &[],
            dpdk_version: "",
        });
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 27);
        // only vsd_build_info has a sample without any input
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert!(samples[0].starts_with("vsd_build_info{"), "{samples:?}");
    }

    /// configs/grafana-vsd.json queries only metric families vsd exposes,
    /// so the dashboard cannot drift from the exposition.
    #[test]
    fn the_grafana_dashboard_uses_only_exposed_families() {
        let mut text = render(&Metrics {
            services: &[],
            cores: &[],
            ports: &[],
            latency: &[],
            dpdk_version: "",
        });
        text.push_str(&super::super::prometheus_ipvs::render(&[]));
        text.push_str(&render_health(&[]));
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let dash: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/grafana-vsd.json"
        )))
        .expect("dashboard JSON");
        let mut exprs = Vec::new();
        for p in dash["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().expect("targets") {
                exprs.push(t["expr"].as_str().expect("expr").to_string());
            }
        }
        assert!(exprs.len() >= 10);
        let mut used = 0;
        for e in &exprs {
            let names = e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("vsd_") || w.starts_with("node_ipvs_"));
            for n in names {
                used += 1;
                assert!(families.contains(&n), "{n} (in {e}) is not exposed");
            }
        }
        assert!(used >= exprs.len());
    }
}
