//! `[sync]` and `[[sync.daemon]]`: connection synchronisation settings.

use std::net::IpAddr;

use super::{narrow, ConfigError, Ctx, RawSync, RawSyncDaemon, S};

pub(super) fn build_sync_daemons(
    ctx: &Ctx<'_>,
    raw: &[S<RawSyncDaemon>],
) -> Result<Vec<crate::control::ipvsadm::SyncDaemonSpec>, ConfigError> {
    use crate::control::ipvsadm::{SyncDaemonSpec, SyncRole, SyncTransport};
    let mut out: Vec<SyncDaemonSpec> = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let d = d.get_ref();
        let k = |f: &str| format!("sync_daemon[{i}].{f}");
        let role = match d.role.get_ref().as_str() {
            "master" => SyncRole::Master,
            "backup" => SyncRole::Backup,
            other => {
                return Err(ctx.err(
                    d.role.span(),
                    k("role"),
                    format!("{other:?}: must be \"master\" or \"backup\""),
                ))
            }
        };
        if out.iter().any(|o| o.role == role) {
            return Err(ctx.err(
                d.role.span(),
                k("role"),
                format!("a second {} sync daemon", role.name()),
            ));
        }
        let opt = |v: &Option<S<i64>>, f: &str, lo: i64, hi: i64| {
            v.as_ref().map(|v| ctx.int(v, &k(f), lo, hi)).transpose()
        };
        let mcast_group = match &d.mcast_group {
            None => None,
            Some(g) => {
                let ip = ctx.ip(g, &k("mcast_group"))?;
                if !ip.is_multicast() {
                    return Err(ctx.err(
                        g.span(),
                        k("mcast_group"),
                        format!("{ip}: must be a multicast address"),
                    ));
                }
                Some(ip)
            }
        };
        let mut peers = Vec::new();
        for (j, p) in d.peers.iter().enumerate() {
            let ip = ctx.ip(p, &k(&format!("peers[{j}]")))?;
            if ip.is_multicast() || ip.is_unspecified() || ip == IpAddr::from([255; 4]) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip}: must be a unicast address"),
                ));
            }
            if let Some(o) = peers.iter().find(|o: &&IpAddr| o.is_ipv4() != ip.is_ipv4()) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip}: peers of one address family only ({o} is the other)"),
                ));
            }
            if peers.contains(&ip) {
                return Err(ctx.err(
                    p.span(),
                    k(&format!("peers[{j}]")),
                    format!("{ip} given twice"),
                ));
            }
            peers.push(ip);
        }
        let transport = match &d.transport {
            None => SyncTransport::Auto,
            Some(t) => SyncTransport::parse(t.get_ref()).ok_or_else(|| {
                ctx.err(
                    t.span(),
                    k("transport"),
                    format!(
                        "{:?}: must be \"auto\", \"kernel\" or \"dataplane\"",
                        t.get_ref()
                    ),
                )
            })?,
        };
        out.push(SyncDaemonSpec {
            transport,
            peers,
            role,
            mcast_interface: d.mcast_interface.get_ref().clone(),
            syncid: opt(&d.syncid, "syncid", 0, 255)?.unwrap_or(0) as u8,
            sync_maxlen: opt(&d.sync_maxlen, "sync_maxlen", 1, 65535)?.map(|n| n as u16),
            mcast_group,
            mcast_port: opt(&d.mcast_port, "mcast_port", 1, 65535)?.map(|n| n as u16),
            mcast_ttl: opt(&d.mcast_ttl, "mcast_ttl", 1, 255)?.map(|n| n as u8),
        });
    }
    Ok(out)
}

pub(super) fn build_sync(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawSync>>,
) -> Result<crate::lb::sync::SyncSettings, ConfigError> {
    use crate::lb::sync::{SyncSettings, MAX_REFRESH_PERIOD_S};
    let d = SyncSettings::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let r = raw.get_ref();
    let max = i64::from(i32::MAX);
    let s = SyncSettings {
        threshold: narrow(ctx.int_or(&r.threshold, "sync.threshold", 0, max, 3)?),
        period: narrow(ctx.int_or(&r.period, "sync.period", 0, max, 50)?),
        refresh_period_s: narrow(ctx.int_or(
            &r.refresh_period,
            "sync.refresh_period",
            0,
            i64::from(MAX_REFRESH_PERIOD_S),
            0,
        )?),
        retries: narrow(ctx.int_or(&r.retries, "sync.retries", 0, 3, 0)?),
        persist_mode: ctx.int_or(&r.persist_mode, "sync.persist_mode", 0, 1, 0)? == 1,
        version: narrow(ctx.int_or(&r.version, "sync.version", 0, 1, 1)?),
    };
    s.validate().map_err(|e| ctx.err(raw.span(), "sync", e))?;
    Ok(s)
}
