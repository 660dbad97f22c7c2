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
//! - `vsd_worker_events_total{core,event}`, `vsd_worker_drops_total{core,reason}`;
//! - `vsd_port_counter_total{port,counter}`: NIC counters;
//! - `vsd_latency_nanoseconds{name,core,quantile}` summaries (p50, p99,
//!   p99.9, with `_sum` and `_count`).
//!
//! Label values are escaped (`\\`, `\"`, `\n`); `service` is `TCP
//! 198.18.0.100:80` style (ipvsadm's identity of a service), `server` is
//! `198.18.1.11:8080` or `[2001:db8::1]:80`.

use std::fmt::Write as _;

use super::listing::{addr_port, CoreCounters, LatencyView, PortCounters, ServiceView};

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
            "ESTABLISHED connections (ActiveConn)",
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

    // Workers and ports.
    let mut f = Family::new(
        &mut out,
        "vsd_worker_events_total",
        "counter",
        "Data-plane events per worker",
    );
    for c in m.cores {
        let core = c.core.to_string();
        for (k, v) in &c.events {
            f.sample("", &[("core", &core), ("event", k)], v);
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
        "NIC counters per port",
    );
    for p in m.ports {
        for (k, v) in &p.counters {
            f.sample("", &[("port", &p.port), ("counter", k)], v);
        }
    }

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
