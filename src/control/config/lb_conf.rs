//! `[lb]` (connection table, timeouts, scheduling knobs) and `[neighbour]`.

use std::net::IpAddr;

use super::{narrow, ConfigError, Ctx, RawLb, RawNeighbour, S};
use crate::dataplane::neigh::NeighParams;

/// `[lb]`: settings of each worker's forwarding core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConf {
    /// Connection table capacity per worker (connections, templates and
    /// NAT redirect entries).
    pub conn_capacity: u32,
    /// The IPv6 connection table's capacity per worker (its own table:
    /// 128-bit keys; NAT64 and cross-family tunnel connections live there).
    pub conn_capacity6: u32,
    /// Expire a connection on its next request once its real server is
    /// removed and schedule that request afresh (IPVS `expire_nodest_conn`);
    /// otherwise its requests are dropped until the entry times out.
    pub expire_nodest_conn: bool,
    /// IPVS `conn_reuse_mode` (0..=3, default 1): bit 1 schedules afresh
    /// a SYN that finds a closing connection; bit 2 also one in FIN_WAIT
    /// on a DR/TUN connection.
    pub conn_reuse_mode: u8,
    /// IPVS `expire_quiescent_template`: persistence templates of a
    /// weight-0 server are not followed (default false).
    pub expire_quiescent_template: bool,
    /// Outer source of TUN packets; default: the director address on the
    /// port toward the first tunnelled real server.
    pub tun_source: Option<std::net::Ipv4Addr>,
    /// Outer source of IPv6 TUN packets (IPv6-in-IPv6); default: see
    /// [`crate::control::tun_source`].
    pub tun_source6: Option<std::net::Ipv6Addr>,
    /// FULLNAT local port range.
    pub local_port_min: u16,
    /// FULLNAT local port range, last port.
    pub local_port_max: u16,
}

impl Default for LbConf {
    fn default() -> Self {
        LbConf {
            conn_capacity: 1 << 20,
            conn_capacity6: 1 << 16,
            expire_nodest_conn: false,
            conn_reuse_mode: 1,
            expire_quiescent_template: false,
            tun_source: None,
            tun_source6: None,
            local_port_min: 1024,
            local_port_max: 65535,
        }
    }
}

pub(super) fn build_neighbour(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawNeighbour>>,
) -> Result<NeighParams, ConfigError> {
    let d = NeighParams::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let n = raw.get_ref();
    let day_ms = 86_400_000;
    let params = NeighParams {
        max_entries: narrow(ctx.int_or(
            &n.max_entries,
            "neighbour.max_entries",
            1,
            1 << 20,
            i64::from(d.max_entries),
        )?),
        max_pending_per_entry: narrow(ctx.int_or(
            &n.max_pending_per_entry,
            "neighbour.max_pending_per_entry",
            1,
            65535,
            i64::from(d.max_pending_per_entry),
        )?),
        max_pending_total: narrow(ctx.int_or(
            &n.max_pending_total,
            "neighbour.max_pending_total",
            1,
            1 << 20,
            i64::from(d.max_pending_total),
        )?),
        retry_ms: narrow(ctx.int_or(
            &n.retry_ms,
            "neighbour.retry_ms",
            1,
            60_000,
            d.retry_ms as i64,
        )?),
        max_retries: narrow(ctx.int_or(
            &n.max_retries,
            "neighbour.max_retries",
            1,
            100,
            i64::from(d.max_retries),
        )?),
        reachable_ms: narrow(ctx.int_or(
            &n.reachable_ms,
            "neighbour.reachable_ms",
            1000,
            day_ms,
            d.reachable_ms as i64,
        )?),
        gc_stale_ms: narrow(ctx.int_or(
            &n.gc_stale_ms,
            "neighbour.gc_stale_ms",
            1000,
            day_ms,
            d.gc_stale_ms as i64,
        )?),
        delay_probe_ms: d.delay_probe_ms,
    };
    if params.max_pending_per_entry > params.max_pending_total {
        let span = n.max_pending_per_entry.as_ref().map_or(raw.span(), S::span);
        return Err(ctx.err(
            span,
            "neighbour.max_pending_per_entry",
            format!(
                "{} exceeds max_pending_total {}",
                params.max_pending_per_entry, params.max_pending_total
            ),
        ));
    }
    Ok(params)
}

pub(super) fn build_lb(ctx: &Ctx<'_>, raw: Option<&S<RawLb>>) -> Result<LbConf, ConfigError> {
    let d = LbConf::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let l = raw.get_ref();
    if let Some(sctp) = l.sloppy_sctp.as_ref().filter(|v| *v.get_ref()) {
        return Err(ctx.err(
            sctp.span(),
            "lb.sloppy_sctp",
            "vsd has no SCTP services, so sloppy_sctp cannot be on",
        ));
    }
    let tun_source = match &l.tun_source {
        None => None,
        Some(a) => match ctx.ip(a, "lb.tun_source")? {
            IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_multicast() => Some(v4),
            other => {
                return Err(ctx.err(
                    a.span(),
                    "lb.tun_source",
                    format!("tun_source {other} must be a unicast IPv4 address"),
                ))
            }
        },
    };
    let tun_source6 = match &l.tun_source6 {
        None => None,
        Some(a) => match ctx.ip(a, "lb.tun_source6")? {
            IpAddr::V6(v6) if crate::control::tun_source::usable6(v6) => Some(v6),
            other => {
                return Err(ctx.err(
                    a.span(),
                    "lb.tun_source6",
                    format!("tun_source6 {other} must be a global unicast IPv6 address"),
                ))
            }
        },
    };
    let lb = LbConf {
        conn_capacity: narrow(ctx.int_or(
            &l.conn_capacity,
            "lb.conn_capacity",
            1024,
            1 << 28,
            i64::from(d.conn_capacity),
        )?),
        conn_capacity6: narrow(ctx.int_or(
            &l.conn_capacity6,
            "lb.conn_capacity6",
            1024,
            1 << 28,
            i64::from(d.conn_capacity6),
        )?),
        expire_nodest_conn: l.expire_nodest_conn.unwrap_or(d.expire_nodest_conn),
        conn_reuse_mode: narrow(ctx.int_or(
            &l.conn_reuse_mode,
            "lb.conn_reuse_mode",
            0,
            3,
            i64::from(d.conn_reuse_mode),
        )?),
        expire_quiescent_template: l
            .expire_quiescent_template
            .unwrap_or(d.expire_quiescent_template),
        tun_source,
        tun_source6,
        local_port_min: narrow(ctx.int_or(
            &l.local_port_min,
            "lb.local_port_min",
            1,
            65535,
            i64::from(d.local_port_min),
        )?),
        local_port_max: narrow(ctx.int_or(
            &l.local_port_max,
            "lb.local_port_max",
            1,
            65535,
            i64::from(d.local_port_max),
        )?),
    };
    if lb.local_port_min > lb.local_port_max {
        let span = l.local_port_min.as_ref().map_or(raw.span(), S::span);
        return Err(ctx.err(
            span,
            "lb.local_port_min",
            format!(
                "{} is above local_port_max {}",
                lb.local_port_min, lb.local_port_max
            ),
        ));
    }
    Ok(lb)
}
