//! Control plane: config, socket, ipvsadm syntax and output formats, the
//! control state machine, stats (rates, Prometheus). No fast-path access.

pub mod announce;
pub mod api;
pub mod bootplan;
pub mod config;
pub mod cpumap;
pub mod estimator;
pub mod health;
#[cfg(test)]
mod ipv6_tests;
pub mod ipvsadm;
pub mod keepalived;
pub mod listing;
pub mod metrics_http;
pub mod prometheus;
pub mod prometheus_ipvs;
pub mod socket;
pub mod state;
pub mod syncd;
#[cfg(test)]
mod test_netns;
pub mod tun_source;
pub mod unsupported;
pub mod vipwatch;
pub mod vsadm;
pub mod wait;
