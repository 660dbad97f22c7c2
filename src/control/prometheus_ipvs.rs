//! node_exporter's IPVS metric families, from vsd's service table.
//!
//! Operators' IPVS dashboards and alerts are written against node_exporter's
//! `ipvs` collector (collector/ipvs_linux.go), which reads the kernel's
//! /proc/net/ip_vs and /proc/net/ip_vs_stats. vsd offers the same names,
//! types and labels next to its own `vsd_*` families, so those dashboards
//! work unchanged:
//!
//! - `node_ipvs_connections_total`, `node_ipvs_incoming_packets_total`,
//!   `node_ipvs_outgoing_packets_total`, `node_ipvs_incoming_bytes_total`,
//!   `node_ipvs_outgoing_bytes_total`: counters without labels (the
//!   kernel's global totals; here the sum over the services that exist, so
//!   a deleted service's traffic leaves the sum, and `-Z` zeroes it as it
//!   zeroes the kernel's);
//! - `node_ipvs_backend_connections_active`, `..._inactive` and
//!   `node_ipvs_backend_weight`: gauges with labels `local_address`,
//!   `local_port`, `remote_address`, `remote_port`, `proto`, `local_mark`.
//!   As node_exporter: `proto` is `TCP`, `UDP` or `FWM`; a fwmark service
//!   has an empty `local_address`, `local_port` 0 and `local_mark` as
//!   /proc/net/ip_vs prints it (`%08X`); other services an empty
//!   `local_mark`. Backends with equal labels are summed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use super::listing::ServiceView;
use super::prometheus::{escape_help, escape_label};
use crate::lb::service::ServiceKey;
use crate::lb::types::Protocol;

/// The six backend labels, in node_exporter's order.
type BackendLabels = [String; 6];

/// An address as node_exporter labels it: Go's `net.IP.String()` of what
/// procfs parsed from /proc/net/ip_vs, which writes an IPv4-mapped IPv6
/// address dotted (`::ffff:198.18.0.1` is `198.18.0.1`) and compresses
/// the rest as Rust does.
fn go_ip_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        },
        IpAddr::V4(a) => a.to_string(),
    }
}

fn backend_labels(key: &ServiceKey, addr: IpAddr, port: u16) -> BackendLabels {
    let (local_address, local_port, proto, mark) = match key {
        ServiceKey::Addr {
            proto,
            addr: vip,
            port,
        } => (
            go_ip_text(*vip),
            port.to_string(),
            match proto {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            }
            .to_string(),
            String::new(),
        ),
        ServiceKey::Fwmark { mark, .. } => (
            String::new(),
            "0".to_string(),
            "FWM".to_string(),
            format!("{mark:08X}"),
        ),
    };
    [
        local_address,
        local_port,
        go_ip_text(addr),
        port.to_string(),
        proto,
        mark,
    ]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The node_exporter IPVS families for `services`.
pub fn render(services: &[ServiceView]) -> String {
    let mut out = String::new();
    let total = |f: fn(&ServiceView) -> u64| services.iter().map(f).sum::<u64>();
    let totals: [(&str, &str, u64); 5] = [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
            total(|s| s.stats.conns),
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
            total(|s| s.stats.inpkts),
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
            total(|s| s.stats.outpkts),
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
            total(|s| s.stats.inbytes),
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
            total(|s| s.stats.outbytes),
        ),
    ];
    for (name, help, v) in totals {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }

    // node_exporter sums backends whose labels coincide
    let mut sums: BTreeMap<BackendLabels, [u64; 3]> = BTreeMap::new();
    for s in services {
        for d in &s.dests {
            let e = sums
                .entry(backend_labels(&s.key, d.addr, d.port))
                .or_default();
            e[0] += u64::from(d.active);
            e[1] += u64::from(d.inactive);
            e[2] += u64::from(d.weight);
        }
    }
    const NAMES: [&str; 6] = [
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "proto",
        "local_mark",
    ];
    let backends: [(&str, &str); 3] = [
        (
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
        ),
        (
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
        ),
        (
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
        ),
    ];
    for (i, (name, help)) in backends.into_iter().enumerate() {
        family(&mut out, name, "gauge", help);
        for (labels, v) in &sums {
            let l: Vec<String> = NAMES
                .iter()
                .zip(labels)
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {}", l.join(","), v[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::estimator::{Counters, Rates};
    use crate::control::listing::DestView;
    use crate::lb::service::{PersistMask, SchedFlags};
    use crate::lb::types::{AddrFamily, FwdMethod};

    fn dest(addr: &str, port: u16, weight: u32, active: u32, inactive: u32) -> DestView {
        DestView {
            addr: addr.parse().unwrap(),
            port,
            method: FwdMethod::Masq,
            weight,
            active,
            inactive,
            persistent: 0,
            u_threshold: 0,
            l_threshold: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }

    fn service(key: ServiceKey, conns: u64, dests: Vec<DestView>) -> ServiceView {
        ServiceView {
            key,
            scheduler: "rr".into(),
            flags: SchedFlags::default(),
            persistence: None,
            netmask: PersistMask::full(AddrFamily::Inet),
            one_packet: false,
            synproxy: false,
            stats: Counters {
                conns,
                inpkts: conns * 10,
                outpkts: conns * 9,
                inbytes: conns * 1000,
                outbytes: conns * 900,
            },
            rates: Rates::default(),
            dests,
        }
    }

    #[test]
    fn names_labels_and_sums_match_node_exporter() {
        let services = vec![
            service(
                ServiceKey::Addr {
                    proto: Protocol::Tcp,
                    addr: "198.18.0.100".parse().unwrap(),
                    port: 80,
                },
                5,
                vec![
                    dest("198.18.1.11", 8080, 3, 2, 1),
                    dest("2001:2::11", 80, 1, 0, 4),
                ],
            ),
            service(
                ServiceKey::Fwmark {
                    mark: 26,
                    af: AddrFamily::Inet,
                },
                2,
                vec![dest("198.18.1.12", 0, 2, 1, 0)],
            ),
        ];
        let text = render(&services);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE node_ipvs_connections_total counter",
            "node_ipvs_connections_total 7",
            "node_ipvs_incoming_packets_total 70",
            "node_ipvs_outgoing_packets_total 63",
            "node_ipvs_incoming_bytes_total 7000",
            "node_ipvs_outgoing_bytes_total 6300",
            "# TYPE node_ipvs_backend_connections_active gauge",
            "node_ipvs_backend_connections_active{local_address=\"198.18.0.100\",local_port=\"80\",remote_address=\"198.18.1.11\",remote_port=\"8080\",proto=\"TCP\",local_mark=\"\"} 2",
            "node_ipvs_backend_connections_inactive{local_address=\"198.18.0.100\",local_port=\"80\",remote_address=\"2001:2::11\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 4",
            "node_ipvs_backend_weight{local_address=\"\",local_port=\"0\",remote_address=\"198.18.1.12\",remote_port=\"0\",proto=\"FWM\",local_mark=\"0000001A\"} 2",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        // one sample per backend per family
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("node_ipvs_backend_weight{"))
                .count(),
            3
        );
    }

    #[test]
    fn ipv6_labels_are_gos_net_ip_text() {
        let v6 = |a: &str| -> IpAddr { a.parse().unwrap() };
        let services = vec![service(
            ServiceKey::Addr {
                proto: Protocol::Udp,
                addr: v6("2001:2:0:0:0:0:0:64"),
                port: 53,
            },
            1,
            vec![
                dest("2001:0002::0010", 53, 1, 0, 0),
                dest("::ffff:198.18.1.10", 53, 1, 0, 0),
            ],
        )];
        let text = render(&services);
        for want in [
            "node_ipvs_backend_weight{local_address=\"2001:2::64\",local_port=\"53\",remote_address=\"2001:2::10\",remote_port=\"53\",proto=\"UDP\",local_mark=\"\"} 1",
            "node_ipvs_backend_weight{local_address=\"2001:2::64\",local_port=\"53\",remote_address=\"198.18.1.10\",remote_port=\"53\",proto=\"UDP\",local_mark=\"\"} 1",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in\n{text}");
        }
        assert_eq!(go_ip_text(v6("::198.18.1.10")), "::c612:10a");
        assert_eq!(go_ip_text(v6("198.18.1.10")), "198.18.1.10");
    }
}
