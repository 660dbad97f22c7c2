//! `vsadm --checks`: the health report as text and as JSON.

use std::time::Duration;

use super::ServiceChecks;

/// A duration as `--checks` prints it: `850us`, `12.3ms`, `4.2s`, `3m07s`.
fn short_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if d.as_secs() < 3600 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}

/// `vsadm --checks`: per service its quorum, per server its pool state,
/// per checker its state, last result, latency and counters.
pub fn render_checks(report: &[ServiceChecks]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    out.push_str("Prot LocalAddress:Port Quorum\n");
    out.push_str("  -> RemoteAddress:Port           State     Weight\n");
    out.push_str(
        "     Checker    Target                 State Last                   Latency  Checks     Failures   Trans  Since\n",
    );
    for s in report {
        let q = &s.quorum;
        let _ = write!(
            out,
            "{} {} (live weight {}, quorum {}+{})",
            s.service,
            if q.up { "up" } else { "down" },
            q.live_weight,
            q.quorum,
            q.hysteresis
        );
        if let Some((d, serving)) = q.sorry {
            let _ = write!(
                out,
                " sorry {d} {}",
                if serving { "serving" } else { "standby" }
            );
        }
        out.push('\n');
        for v in &s.servers {
            let weight = match v.pool.table_weight {
                Some(w) => w.to_string(),
                None => "-".into(),
            };
            let _ = write!(
                out,
                "  -> {:<28} {:<9} {}",
                v.pool.dest.to_string(),
                v.pool.state.name(),
                weight
            );
            if !v.pool.reason.is_empty() {
                let _ = write!(out, " ({})", v.pool.reason);
            }
            out.push('\n');
            for c in &v.checks {
                let (last, latency) = match &c.last {
                    Some(r) if r.ok => ("ok".to_string(), short_duration(r.latency)),
                    Some(r) => (r.reason.clone(), short_duration(r.latency)),
                    None => ("-".to_string(), "-".to_string()),
                };
                let _ = writeln!(
                    out,
                    "     {:<10} {:<22} {:<5} {:<22} {:<8} {:<10} {:<10} {:<6} {}",
                    c.kind,
                    c.target,
                    if c.up { "up" } else { "down" },
                    last,
                    latency,
                    c.checks,
                    c.failures,
                    c.transitions,
                    short_duration(c.since_change)
                );
            }
        }
    }
    out
}

/// `vsadm --checks` as JSON (`data.checks`).
pub fn checks_json(report: &[ServiceChecks]) -> serde_json::Value {
    use serde_json::json;
    serde_json::Value::Array(
        report
            .iter()
            .map(|s| {
                json!({
                    "service": s.service.to_string(),
                    "quorum_up": s.quorum.up,
                    "live_weight": s.quorum.live_weight,
                    "quorum": s.quorum.quorum,
                    "hysteresis": s.quorum.hysteresis,
                    "sorry": s.quorum.sorry.map(|(d, serving)| json!({"server": d.to_string(), "serving": serving})),
                    "servers": s.servers.iter().map(|v| json!({
                        "server": v.pool.dest.to_string(),
                        "state": v.pool.state.name(),
                        "alive": v.pool.alive,
                        "weight": v.pool.weight,
                        "table_weight": v.pool.table_weight,
                        "reason": v.pool.reason,
                        "checks": v.checks.iter().map(|c| json!({
                            "index": c.key.index,
                            "kind": c.kind,
                            "target": c.target,
                            "up": c.up,
                            "last_ok": c.last.as_ref().map(|r| r.ok),
                            "last_reason": c.last.as_ref().map(|r| r.reason.clone()),
                            "latency_seconds": c.last.as_ref().map(|r| r.latency.as_secs_f64()),
                            "checks": c.checks,
                            "failures": c.failures,
                            "transitions": c.transitions,
                            "since_change_seconds": c.since_change.as_secs_f64(),
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}
