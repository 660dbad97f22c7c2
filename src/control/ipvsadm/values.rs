//! Value parsers for option arguments (ipvsadm's helpers): numbers, timeouts,
//! ports and service names, addresses, firewall marks, scheduler flags.

use std::net::{IpAddr, Ipv4Addr};

use super::MAX_TIMEOUT;
use crate::lb::service::SchedFlags;

/// ipvsadm's `string_to_number`: a whole decimal number in `min..=max`.
pub(super) fn number(text: &str, min: i64, max: i64) -> Option<i64> {
    let n: i64 = text.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

/// Longest `--drain --timeout` (one day, as `[announce] drain_timeout`).
pub(super) const DRAIN_TIMEOUT_MAX: i64 = 86_400;

/// ipvsadm's `parse_timeout`.
pub(super) fn timeout(text: &str, min: u32) -> Result<u32, String> {
    number(text, i64::from(min), i64::from(MAX_TIMEOUT))
        .map(|n| n as u32)
        .ok_or_else(|| format!("invalid timeout value `{text}' specified"))
}

/// Well-known service names accepted as ports (`/etc/services` entries that
/// never change), since vsd does not consult the system's databases.
pub fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "tftp" => 69,
        "http" | "www" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "postgresql" => 5432,
        "http-alt" => 8080,
        _ => return None,
    })
}

/// ipvsadm's `parse_service`: `ADDR`, `ADDR:PORT`, `[V6ADDR]:PORT` or a bare
/// IPv6 address. Returns the address and the port if one was given.
pub fn parse_addr_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = |p: &str| -> Option<u16> {
        number(p, 0, 65535)
            .map(|n| n as u16)
            .or_else(|| service_port(p))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let p = after.strip_prefix(':')?;
        let a: std::net::Ipv6Addr = addr.parse().ok()?;
        return Some((IpAddr::V6(a), Some(port(p)?)));
    }
    if let Ok(a) = text.parse::<std::net::Ipv6Addr>() {
        return Some((IpAddr::V6(a), None));
    }
    match text.rsplit_once(':') {
        Some((addr, p)) => {
            let a: Ipv4Addr = addr.parse().ok()?;
            Some((IpAddr::V4(a), Some(port(p)?)))
        }
        None => Some((IpAddr::V4(text.parse().ok()?), None)),
    }
}

/// ipvsadm's `parse_fwmark`.
pub(super) fn fwmark(text: &str) -> Result<u32, String> {
    number(text, 1, i64::from(u32::MAX))
        .map(|n| n as u32)
        .ok_or_else(|| format!("invalid fwmark value `{text}' specified"))
}

/// The scheduler flags of `-b` for scheduler `sched` (ipvsadm's
/// `parse_sched_flags`; see the module notes for flag-N).
pub(super) fn sched_flags(list: &str, sched: &str) -> Result<SchedFlags, String> {
    let mut f = SchedFlags::default();
    for flag in list.split(',').filter(|s| !s.is_empty()) {
        let owner = match flag {
            "flag-1" | "flag-2" | "flag-3" => None,
            "sh-fallback" | "sh-port" => Some("sh"),
            "mh-fallback" | "mh-port" => Some("mh"),
            _ => return Err(format!("invalid scheduler flag `{flag}'")),
        };
        if owner.is_some_and(|o| o != sched) {
            return Err(format!("incompatible scheduler flag `{flag}'"));
        }
        match (flag, sched) {
            ("sh-fallback", _) | ("flag-1", "sh") => f.sh_fallback = true,
            ("sh-port", _) | ("flag-2", "sh") => f.sh_port = true,
            ("mh-fallback", _) | ("flag-1", "mh") => f.mh_fallback = true,
            ("mh-port", _) | ("flag-2", "mh") => f.mh_port = true,
            _ => {}
        }
    }
    Ok(f)
}
