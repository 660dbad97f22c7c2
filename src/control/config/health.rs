//! Health checking in vsd's TOML: `[service.health]`, `[[service.check]]`
//! (default checkers of a service), `[[service.real_server.check]]` and the
//! real server's own health keys, turned into [`crate::health::spec`].
//!
//! Key names are keepalived's, so an operator can move a checker between
//! keepalived.conf and vsd.toml by changing only the punctuation (the DNS
//! query type is `query_type` here: `type` names the checker). Durations
//! are seconds, integer or float, like keepalived's TIMER values.
//!
//! The value rules (status code ranges, digests, hex strings, timer ranges,
//! which options a checker type takes) are plain functions shared with the
//! keepalived.conf front end ([`crate::control::keepalived`]), so both refuse
//! the same things with the same words.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{narrow, ConfigError, Ctx, RawRealServer, S};
use crate::health::spec::{
    CheckKind, CheckerSpec, CheckerTiming, DnsCheck, DnsType, HexNibble, HttpCheck, HttpProtocol,
    MiscCheck, PassiveCheck, Script, ServerHealth, ServiceHealth, SorryServer, UdpCheck, UrlCheck,
};
use crate::lb::types::{AddrFamily, FwdMethod};

/// Longest accepted duration (one day): longer timers are typos.
pub const MAX_TIMER_SECS: f64 = 86_400.0;
/// Largest `retry`.
pub const MAX_RETRY: i64 = 65_535;
/// Longest UDP_CHECK payload / require_reply (a UDP datagram's payload).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

// ---------------------------------------------------------------------------------------
// Value rules shared with the keepalived.conf front end
// ---------------------------------------------------------------------------------------

/// A TIMER value in seconds: finite, not negative, at most a day; zero only
/// when `zero_ok`.
pub fn timer(secs: f64, zero_ok: bool) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{secs} is not a duration: expected seconds >= 0"));
    }
    if secs > MAX_TIMER_SECS {
        return Err(format!(
            "{secs} seconds out of range: at most {MAX_TIMER_SECS} (one day)"
        ));
    }
    if secs == 0.0 && !zero_ok {
        return Err("0 seconds: must be more than 0".into());
    }
    // keepalived's timers have microsecond resolution
    let micros = (secs * 1e6).round() as u64;
    if micros == 0 && !zero_ok {
        return Err(format!("{secs} seconds is below a microsecond"));
    }
    Ok(Duration::from_micros(micros))
}

/// `status_code` words: `200`, `200-299`; codes 100..=599.
pub fn status_codes<'a>(
    words: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(u16, u16)>, String> {
    let code = |w: &str| -> Result<u16, String> {
        match w.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(format!(
                "invalid status code {w:?}: expected 100..=599 or a range like 200-299"
            )),
        }
    };
    let mut out = Vec::new();
    for w in words {
        let (lo, hi) = match w.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => {
                let n = code(w)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("invalid status code range {w:?}: {lo} > {hi}"));
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err("empty status_code: give codes or ranges like 200-299".into());
    }
    Ok(out)
}

/// `digest`: the body's MD5 as 32 hex digits (what genhash prints).
pub fn digest(text: &str) -> Result<[u8; 16], String> {
    let bad = || format!("invalid digest {text:?}: expected an MD5 as 32 hex digits");
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// keepalived's HEX_STR: whitespace-separated groups of hex digits, read
/// two digits a byte, a group's odd last digit being a byte of its own
/// (`Ab12f 3` is AB 12 0F 03). With `wildcards`, `X` stands for any nibble.
/// Returns nibbles, two per byte.
pub fn hex_string(text: &str, wildcards: bool) -> Result<Vec<HexNibble>, String> {
    let mut out: Vec<HexNibble> = Vec::new();
    for group in text.split_whitespace() {
        let mut nibbles: Vec<HexNibble> = Vec::with_capacity(group.len() + 1);
        for c in group.chars() {
            let n = match c {
                'x' | 'X' if wildcards => None,
                c => match c.to_digit(16) {
                    Some(d) => Some(d as u8),
                    None => {
                        return Err(format!(
                            "invalid hex string {text:?}: {c:?} is not a hex digit{}",
                            if wildcards { " or X" } else { "" }
                        ))
                    }
                },
            };
            nibbles.push(n);
        }
        if nibbles.len() % 2 == 1 {
            // a group's odd last digit is the low nibble of a byte
            let last = nibbles.pop().flatten();
            nibbles.push(Some(0));
            nibbles.push(last);
        }
        out.extend(nibbles);
        if out.len() / 2 > MAX_UDP_PAYLOAD {
            return Err(format!(
                "hex string longer than {MAX_UDP_PAYLOAD} bytes (a UDP payload)"
            ));
        }
    }
    Ok(out)
}

/// [`hex_string`] without wildcards, as bytes.
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let nibbles = hex_string(text, false)?;
    if nibbles.is_empty() {
        return Err("empty payload: give hex digits".into());
    }
    Ok(nibbles
        .chunks(2)
        .map(|p| (p[0].unwrap_or(0) << 4) | p.get(1).copied().flatten().unwrap_or(0))
        .collect())
}

/// `http_protocol`: `1.0`, `1.0C`, `1.1`.
pub fn http_protocol(text: &str) -> Result<HttpProtocol, String> {
    match text {
        "1.0" => Ok(HttpProtocol::V10),
        "1.0C" | "1.0c" => Ok(HttpProtocol::V10Close),
        "1.1" => Ok(HttpProtocol::V11),
        other => Err(format!(
            "unknown http_protocol {other:?}: expected 1.0, 1.0C or 1.1"
        )),
    }
}

/// `type` of a DNS_CHECK.
pub fn dns_type(text: &str) -> Result<DnsType, String> {
    DnsType::parse(text).ok_or_else(|| {
        format!("unknown DNS query type {text:?}: expected A, NS, CNAME, SOA, MX, TXT or AAAA")
    })
}

/// A DNS name for DNS_CHECK `name`: labels of 1..=63 bytes, 253 in all.
pub fn dns_name(text: &str) -> Result<String, String> {
    if text == "." {
        return Ok(text.into());
    }
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    if trimmed.is_empty()
        || trimmed.len() > 253
        || trimmed
            .split('.')
            .any(|l| l.is_empty() || l.len() > 63 || l.bytes().any(|b| b.is_ascii_whitespace()))
    {
        return Err(format!("invalid DNS name {text:?}"));
    }
    Ok(text.into())
}

/// A command line (`misc_path`, `notify_up`...): not empty.
pub fn command(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty command".into());
    }
    Ok(text.into())
}

/// A `virtualhost`: a host name (an HTTP Host header), no spaces.
pub fn virtualhost(text: &str) -> Result<String, String> {
    if text.is_empty()
        || text.len() > 255
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid virtualhost {text:?}"));
    }
    Ok(text.into())
}

/// A kernel interface name (`bind_if`).
pub fn ifname(text: &str) -> Result<String, String> {
    if text.is_empty()
        || text.len() > 15
        || text == "."
        || text == ".."
        || text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "{text:?} is not a kernel interface name (1 to 15 characters, no '/', ':' or spaces)"
        ));
    }
    Ok(text.into())
}

/// The checker type names of vsd's TOML (`type = ...`).
pub const CHECK_TYPES: [&str; 7] = ["tcp", "http_get", "ssl_get", "misc", "dns", "udp", "ping"];

/// Rules on a finished checker that both front ends share: what a checker
/// of its type needs, and options that contradict each other. The error
/// names the option it is about.
pub fn validate_checker(spec: &CheckerSpec) -> Result<(), (&'static str, String)> {
    match &spec.kind {
        CheckKind::Http(h) | CheckKind::Ssl(h) if h.urls.is_empty() => {
            return Err((
                "url",
                format!("{} needs at least one url", spec.kind.name()),
            ));
        }
        CheckKind::Udp(u) if u.min_reply_length > u.max_reply_length => {
            return Err((
                "min_reply_length",
                format!(
                    "min_reply_length {} is more than max_reply_length {}",
                    u.min_reply_length, u.max_reply_length
                ),
            ));
        }
        CheckKind::Misc(m) => {
            if m.path.trim().is_empty() {
                return Err(("misc_path", "MISC_CHECK needs misc_path".into()));
            }
            if m.group.is_some() && m.user.is_none() {
                return Err(("group", "group needs user".into()));
            }
        }
        _ => {}
    }
    if let (Some(b), Some(c)) = (spec.bindto, spec.connect_ip) {
        if AddrFamily::of(b) != AddrFamily::of(c) {
            return Err((
                "bindto",
                format!("bindto {b} and connect_ip {c} are of different address families"),
            ));
        }
    }
    Ok(())
}

/// Rules on a finished service's health settings: quorum and hysteresis,
/// and a sorry server that the service can forward to.
pub fn validate_service_health(
    health: &ServiceHealth,
    family: AddrFamily,
    local_addresses: &[IpAddr],
) -> Result<(), (&'static str, String)> {
    // quorum 0 (keepalived.conf: no server weight to reach) is always met
    if health.quorum > 0 && health.hysteresis >= health.quorum {
        return Err((
            "hysteresis",
            format!(
                "hysteresis {} must be less than quorum {}",
                health.hysteresis, health.quorum
            ),
        ));
    }
    if let Some(s) = &health.sorry_server {
        let method = s.method.unwrap_or(FwdMethod::Masq);
        if AddrFamily::of(s.addr) != family && method != FwdMethod::Tunnel {
            return Err((
                "sorry_server",
                format!(
                    "sorry server {} is not in the service's address family (only tun mixes families)",
                    s.addr
                ),
            ));
        }
        if method == FwdMethod::FullNat
            && !local_addresses
                .iter()
                .any(|l| AddrFamily::of(*l) == AddrFamily::of(s.addr))
        {
            return Err((
                "sorry_server",
                format!(
                    "fullnat to sorry server {} needs a local address of its family",
                    s.addr
                ),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Raw TOML structs
// ---------------------------------------------------------------------------------------

/// Seconds, integer or float.
pub(super) struct RawSeconds(f64);

impl<'de> Deserialize<'de> for RawSeconds {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawSeconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds (integer or float)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSeconds, E> {
                Ok(RawSeconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSeconds, E> {
                Ok(RawSeconds(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSeconds, E> {
                Ok(RawSeconds(v))
            }
        }
        de.deserialize_any(V)
    }
}

/// `notify_up = "/path args"` or `{ command = "...", user = "...", group = "..." }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawScript {
    Command(String),
    Full(RawScriptTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScriptTable {
    command: String,
    user: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSorry {
    address: S<String>,
    port: Option<S<i64>>,
    method: Option<S<String>>,
    inhibit: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    syn_timeouts: S<i64>,
    window: S<RawSeconds>,
}

/// `[service.health]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceHealth {
    delay_loop: Option<S<RawSeconds>>,
    connect_timeout: Option<S<RawSeconds>>,
    retry: Option<S<i64>>,
    delay_before_retry: Option<S<RawSeconds>>,
    warmup: Option<S<RawSeconds>>,
    alpha: Option<S<bool>>,
    omega: Option<S<bool>>,
    quorum: Option<S<i64>>,
    hysteresis: Option<S<i64>>,
    quorum_up: Option<S<RawScript>>,
    quorum_down: Option<S<RawScript>>,
    sorry_server: Option<S<RawSorry>>,
    inhibit_on_failure: Option<S<bool>>,
    virtualhost: Option<S<String>>,
    passive: Option<S<RawPassive>>,
}

/// One `url = [{ ... }]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUrl {
    path: S<String>,
    status_code: Option<S<toml::Value>>,
    digest: Option<S<String>>,
    virtualhost: Option<S<String>>,
}

/// `[[service.check]]` / `[[service.real_server.check]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(rename = "type")]
    kind: S<String>,
    connect_ip: Option<S<String>>,
    connect_port: Option<S<i64>>,
    bindto: Option<S<String>>,
    bind_port: Option<S<i64>>,
    bind_if: Option<S<String>>,
    fwmark: Option<S<i64>>,
    connect_timeout: Option<S<RawSeconds>>,
    retry: Option<S<i64>>,
    delay_before_retry: Option<S<RawSeconds>>,
    delay_loop: Option<S<RawSeconds>>,
    warmup: Option<S<RawSeconds>>,
    alpha: Option<S<bool>>,
    log_all_failures: Option<S<bool>>,
    // HTTP_GET / SSL_GET
    url: Option<S<Vec<S<RawUrl>>>>,
    http_protocol: Option<S<String>>,
    enable_sni: Option<S<bool>>,
    fast_recovery: Option<S<bool>>,
    virtualhost: Option<S<String>>,
    // MISC_CHECK
    misc_path: Option<S<String>>,
    misc_timeout: Option<S<RawSeconds>>,
    misc_dynamic: Option<S<bool>>,
    user: Option<S<String>>,
    group: Option<S<String>>,
    // DNS_CHECK
    query_type: Option<S<String>>,
    name: Option<S<String>>,
    // UDP_CHECK
    payload: Option<S<String>>,
    require_reply: Option<S<toml::Value>>,
    min_reply_length: Option<S<i64>>,
    max_reply_length: Option<S<i64>>,
}

// ---------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------

fn seconds(
    ctx: &Ctx<'_>,
    v: &Option<S<RawSeconds>>,
    key: &str,
    zero_ok: bool,
) -> Result<Option<Duration>, ConfigError> {
    match v {
        None => Ok(None),
        Some(v) => timer(v.get_ref().0, zero_ok)
            .map(Some)
            .map_err(|m| ctx.err(v.span(), key, m)),
    }
}

fn opt_bool(v: &Option<S<bool>>) -> Option<bool> {
    v.as_ref().map(|b| *b.get_ref())
}

#[allow(clippy::too_many_arguments)]
fn timing(
    ctx: &Ctx<'_>,
    base: &str,
    delay_loop: &Option<S<RawSeconds>>,
    connect_timeout: &Option<S<RawSeconds>>,
    retry: &Option<S<i64>>,
    delay_before_retry: &Option<S<RawSeconds>>,
    warmup: &Option<S<RawSeconds>>,
    alpha: &Option<S<bool>>,
) -> Result<CheckerTiming, ConfigError> {
    let k = |key: &str| format!("{base}.{key}");
    Ok(CheckerTiming {
        delay_loop: seconds(ctx, delay_loop, &k("delay_loop"), false)?,
        connect_timeout: seconds(ctx, connect_timeout, &k("connect_timeout"), false)?,
        retry: match retry {
            None => None,
            Some(r) => Some(narrow::<u32>(ctx.int(r, &k("retry"), 0, MAX_RETRY)?)),
        },
        delay_before_retry: seconds(ctx, delay_before_retry, &k("delay_before_retry"), true)?,
        warmup: seconds(ctx, warmup, &k("warmup"), true)?,
        alpha: opt_bool(alpha),
    })
}

fn script(
    ctx: &Ctx<'_>,
    v: &Option<S<RawScript>>,
    key: &str,
) -> Result<Option<Script>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let (cmd, user, group) = match v.get_ref() {
        RawScript::Command(c) => (c.clone(), None, None),
        RawScript::Full(t) => (t.command.clone(), t.user.clone(), t.group.clone()),
    };
    let command = command(&cmd).map_err(|m| ctx.err(v.span(), key, m))?;
    if group.is_some() && user.is_none() {
        return Err(ctx.err(v.span(), key, "group needs user"));
    }
    Ok(Some(Script {
        command,
        user,
        group,
    }))
}

fn opt_string(
    ctx: &Ctx<'_>,
    v: &Option<S<String>>,
    key: &str,
    check: impl Fn(&str) -> Result<String, String>,
) -> Result<Option<String>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) => check(s.get_ref())
            .map(Some)
            .map_err(|m| ctx.err(s.span(), key, m)),
    }
}

/// `[service.health]` and `[[service.check]]` of service `base`.
pub(super) fn build_service_health(
    ctx: &Ctx<'_>,
    base: &str,
    raw: Option<&S<RawServiceHealth>>,
    checks: &[S<RawCheck>],
    family: AddrFamily,
    local_addresses: &[IpAddr],
) -> Result<ServiceHealth, ConfigError> {
    let mut health = ServiceHealth::default();
    for (i, c) in checks.iter().enumerate() {
        health
            .default_checkers
            .push(build_check(ctx, &format!("{base}.check[{i}]"), c)?);
    }
    let Some(raw) = raw else {
        return Ok(health);
    };
    let hb = format!("{base}.health");
    let k = |key: &str| format!("{hb}.{key}");
    let h = raw.get_ref();
    health.timing = timing(
        ctx,
        &hb,
        &h.delay_loop,
        &h.connect_timeout,
        &h.retry,
        &h.delay_before_retry,
        &h.warmup,
        &h.alpha,
    )?;
    health.omega = opt_bool(&h.omega).unwrap_or(false);
    if let Some(q) = &h.quorum {
        health.quorum = narrow::<u32>(ctx.int(q, &k("quorum"), 1, i64::from(u32::MAX))?);
    }
    if let Some(q) = &h.hysteresis {
        health.hysteresis = narrow::<u32>(ctx.int(q, &k("hysteresis"), 0, i64::from(u32::MAX))?);
    }
    health.quorum_up = script(ctx, &h.quorum_up, &k("quorum_up"))?;
    health.quorum_down = script(ctx, &h.quorum_down, &k("quorum_down"))?;
    health.inhibit_on_failure = opt_bool(&h.inhibit_on_failure).unwrap_or(false);
    health.virtualhost = opt_string(ctx, &h.virtualhost, &k("virtualhost"), virtualhost)?;
    if let Some(s) = &h.sorry_server {
        let sk = |key: &str| format!("{hb}.sorry_server.{key}");
        let r = s.get_ref();
        let addr = ctx.ip(&r.address, &sk("address"))?;
        let port = match &r.port {
            None => None,
            Some(p) => Some(narrow::<u16>(ctx.int(p, &sk("port"), 0, 65535)?)),
        };
        let method = match &r.method {
            None => None,
            Some(m) => Some(super::parse_method(m.get_ref()).ok_or_else(|| {
                ctx.err(
                    m.span(),
                    sk("method"),
                    format!(
                        "unknown method {:?}: expected one of nat dr tun fullnat",
                        m.get_ref()
                    ),
                )
            })?),
        };
        health.sorry_server = Some(SorryServer {
            addr,
            port,
            method,
            inhibit: opt_bool(&r.inhibit).unwrap_or(false),
        });
    }
    if let Some(p) = &h.passive {
        let r = p.get_ref();
        let pk = |key: &str| format!("{hb}.passive.{key}");
        health.passive = Some(PassiveCheck {
            syn_timeouts: narrow::<u32>(ctx.int(
                &r.syn_timeouts,
                &pk("syn_timeouts"),
                1,
                1_000_000,
            )?),
            window: timer(r.window.get_ref().0, false)
                .map_err(|m| ctx.err(r.window.span(), pk("window"), m))?,
        });
    }
    validate_service_health(&health, family, local_addresses).map_err(|(key, m)| {
        let span = match key {
            "hysteresis" => h.hysteresis.as_ref().map_or(raw.span(), S::span),
            "sorry_server" => h.sorry_server.as_ref().map_or(raw.span(), S::span),
            _ => raw.span(),
        };
        ctx.err(span, k(key), m)
    })?;
    Ok(health)
}

/// The health keys and `[[check]]`s of real server `base`.
pub(super) fn build_server_health(
    ctx: &Ctx<'_>,
    base: &str,
    r: &RawRealServer,
) -> Result<ServerHealth, ConfigError> {
    let k = |key: &str| format!("{base}.{key}");
    let mut checkers = Vec::with_capacity(r.check.len());
    for (i, c) in r.check.iter().enumerate() {
        checkers.push(build_check(ctx, &format!("{base}.check[{i}]"), c)?);
    }
    Ok(ServerHealth {
        checkers,
        timing: timing(
            ctx,
            base,
            &r.delay_loop,
            &r.connect_timeout,
            &r.retry,
            &r.delay_before_retry,
            &r.warmup,
            &r.alpha,
        )?,
        inhibit_on_failure: opt_bool(&r.inhibit_on_failure),
        notify_up: script(ctx, &r.notify_up, &k("notify_up"))?,
        notify_down: script(ctx, &r.notify_down, &k("notify_down"))?,
        virtualhost: opt_string(ctx, &r.virtualhost, &k("virtualhost"), virtualhost)?,
    })
}

/// One check table.
fn build_check(ctx: &Ctx<'_>, base: &str, raw: &S<RawCheck>) -> Result<CheckerSpec, ConfigError> {
    let c = raw.get_ref();
    let k = |key: &str| format!("{base}.{key}");
    let ty = c.kind.get_ref().as_str();
    if !CHECK_TYPES.contains(&ty) {
        return Err(ctx.err(
            c.kind.span(),
            k("type"),
            format!(
                "unknown check type {ty:?}: expected one of {}",
                CHECK_TYPES.join(" ")
            ),
        ));
    }
    // Options that only some types take: (key, present, types).
    type OnlyFor<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [&'a str]);
    let spans: [OnlyFor<'_>; 18] = [
        ("url", c.url.as_ref().map(S::span), &["http_get", "ssl_get"]),
        (
            "http_protocol",
            c.http_protocol.as_ref().map(S::span),
            &["http_get", "ssl_get"],
        ),
        (
            "enable_sni",
            c.enable_sni.as_ref().map(S::span),
            &["ssl_get"],
        ),
        (
            "fast_recovery",
            c.fast_recovery.as_ref().map(S::span),
            &["http_get", "ssl_get"],
        ),
        (
            "virtualhost",
            c.virtualhost.as_ref().map(S::span),
            &["http_get", "ssl_get"],
        ),
        ("misc_path", c.misc_path.as_ref().map(S::span), &["misc"]),
        (
            "misc_timeout",
            c.misc_timeout.as_ref().map(S::span),
            &["misc"],
        ),
        (
            "misc_dynamic",
            c.misc_dynamic.as_ref().map(S::span),
            &["misc"],
        ),
        ("user", c.user.as_ref().map(S::span), &["misc"]),
        ("group", c.group.as_ref().map(S::span), &["misc"]),
        ("query_type", c.query_type.as_ref().map(S::span), &["dns"]),
        ("name", c.name.as_ref().map(S::span), &["dns"]),
        ("payload", c.payload.as_ref().map(S::span), &["udp"]),
        (
            "require_reply",
            c.require_reply.as_ref().map(S::span),
            &["udp"],
        ),
        (
            "min_reply_length",
            c.min_reply_length.as_ref().map(S::span),
            &["udp"],
        ),
        (
            "max_reply_length",
            c.max_reply_length.as_ref().map(S::span),
            &["udp"],
        ),
        // keepalived's MISC_CHECK has no connection options
        (
            "connect_ip",
            c.connect_ip.as_ref().map(S::span),
            &["tcp", "http_get", "ssl_get", "dns", "udp", "ping"],
        ),
        (
            "connect_port",
            c.connect_port.as_ref().map(S::span),
            &["tcp", "http_get", "ssl_get", "dns", "udp"],
        ),
    ];
    for (key, span, types) in spans {
        if let Some(span) = span {
            if !types.contains(&ty) {
                return Err(ctx.err(
                    span,
                    k(key),
                    format!(
                        "{key} does not apply to type {ty:?} (only {})",
                        types.join(", ")
                    ),
                ));
            }
        }
    }
    for (key, span) in [
        ("bindto", c.bindto.as_ref().map(S::span)),
        ("bind_port", c.bind_port.as_ref().map(S::span)),
        ("bind_if", c.bind_if.as_ref().map(S::span)),
        ("fwmark", c.fwmark.as_ref().map(S::span)),
    ] {
        if let (Some(span), "misc") = (span, ty) {
            return Err(ctx.err(
                span,
                k(key),
                format!("{key} does not apply to type \"misc\" (a program, not a connection)"),
            ));
        }
    }
    if let (Some(p), "ping") = (&c.bind_port, ty) {
        return Err(ctx.err(
            p.span(),
            k("bind_port"),
            "bind_port does not apply to type \"ping\"",
        ));
    }

    let kind = match ty {
        "tcp" => CheckKind::Tcp,
        "ping" => CheckKind::Ping,
        "http_get" | "ssl_get" => {
            let mut http = HttpCheck::default();
            if let Some(urls) = &c.url {
                for (i, u) in urls.get_ref().iter().enumerate() {
                    http.urls
                        .push(build_url(ctx, &format!("{base}.url[{i}]"), u)?);
                }
            }
            if let Some(p) = &c.http_protocol {
                http.protocol = http_protocol(p.get_ref())
                    .map_err(|m| ctx.err(p.span(), k("http_protocol"), m))?;
            }
            http.enable_sni = opt_bool(&c.enable_sni).unwrap_or(false);
            http.fast_recovery = opt_bool(&c.fast_recovery).unwrap_or(false);
            http.virtualhost = opt_string(ctx, &c.virtualhost, &k("virtualhost"), virtualhost)?;
            if ty == "http_get" {
                CheckKind::Http(http)
            } else {
                CheckKind::Ssl(http)
            }
        }
        "misc" => {
            let Some(path) = &c.misc_path else {
                return Err(ctx.err(raw.span(), base, "type \"misc\" needs misc_path"));
            };
            CheckKind::Misc(MiscCheck {
                path: command(path.get_ref())
                    .map_err(|m| ctx.err(path.span(), k("misc_path"), m))?,
                timeout: seconds(ctx, &c.misc_timeout, &k("misc_timeout"), false)?,
                dynamic: opt_bool(&c.misc_dynamic).unwrap_or(false),
                user: c.user.as_ref().map(|u| u.get_ref().clone()),
                group: c.group.as_ref().map(|g| g.get_ref().clone()),
            })
        }
        "dns" => CheckKind::Dns(DnsCheck {
            qtype: match &c.query_type {
                None => DnsType::Soa,
                Some(t) => {
                    dns_type(t.get_ref()).map_err(|m| ctx.err(t.span(), k("query_type"), m))?
                }
            },
            name: opt_string(ctx, &c.name, &k("name"), dns_name)?.unwrap_or_else(|| ".".into()),
        }),
        _ => {
            // "udp"
            let payload = match &c.payload {
                None => None,
                Some(p) => {
                    Some(hex_bytes(p.get_ref()).map_err(|m| ctx.err(p.span(), k("payload"), m))?)
                }
            };
            let require_reply = match &c.require_reply {
                None => None,
                Some(v) => match v.get_ref() {
                    toml::Value::Boolean(true) => Some(Vec::new()),
                    toml::Value::Boolean(false) => None,
                    toml::Value::String(s) => Some(
                        hex_string(s, true)
                            .map_err(|m| ctx.err(v.span(), k("require_reply"), m))?,
                    ),
                    _ => {
                        return Err(ctx.err(
                            v.span(),
                            k("require_reply"),
                            "expected true (any reply) or a hex string the reply must match",
                        ))
                    }
                },
            };
            let len = |v: &Option<S<i64>>, key: &str, d: i64| -> Result<u32, ConfigError> {
                Ok(narrow::<u32>(ctx.int_or(
                    v,
                    &k(key),
                    0,
                    MAX_UDP_PAYLOAD as i64,
                    d,
                )?))
            };
            CheckKind::Udp(UdpCheck {
                payload,
                require_reply,
                min_reply_length: len(&c.min_reply_length, "min_reply_length", 0)?,
                max_reply_length: len(&c.max_reply_length, "max_reply_length", 255)?,
            })
        }
    };
    let mut spec = CheckerSpec::new(kind);
    let ip = |v: &Option<S<String>>, key: &str| -> Result<Option<IpAddr>, ConfigError> {
        v.as_ref().map(|a| ctx.ip(a, &k(key))).transpose()
    };
    let port = |v: &Option<S<i64>>, key: &str, lo: i64| -> Result<Option<u16>, ConfigError> {
        v.as_ref()
            .map(|p| ctx.int(p, &k(key), lo, 65535).map(narrow::<u16>))
            .transpose()
    };
    spec.connect_ip = ip(&c.connect_ip, "connect_ip")?;
    spec.connect_port = port(&c.connect_port, "connect_port", 1)?;
    spec.bindto = ip(&c.bindto, "bindto")?;
    spec.bind_port = port(&c.bind_port, "bind_port", 1)?;
    spec.bind_if = opt_string(ctx, &c.bind_if, &k("bind_if"), ifname)?;
    spec.fwmark = c
        .fwmark
        .as_ref()
        .map(|f| {
            ctx.int(f, &k("fwmark"), 1, i64::from(u32::MAX))
                .map(narrow::<u32>)
        })
        .transpose()?;
    spec.timing = timing(
        ctx,
        base,
        &c.delay_loop,
        &c.connect_timeout,
        &c.retry,
        &c.delay_before_retry,
        &c.warmup,
        &c.alpha,
    )?;
    spec.log_all_failures = opt_bool(&c.log_all_failures).unwrap_or(false);
    validate_checker(&spec).map_err(|(key, m)| {
        let span = match key {
            "min_reply_length" => c.min_reply_length.as_ref().map_or(raw.span(), S::span),
            "bindto" => c.bindto.as_ref().map_or(raw.span(), S::span),
            "group" => c.group.as_ref().map_or(raw.span(), S::span),
            _ => raw.span(),
        };
        ctx.err(span, k(key), m)
    })?;
    Ok(spec)
}

fn build_url(ctx: &Ctx<'_>, base: &str, raw: &S<RawUrl>) -> Result<UrlCheck, ConfigError> {
    let u = raw.get_ref();
    let k = |key: &str| format!("{base}.{key}");
    let path = u.path.get_ref();
    if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.err(
            u.path.span(),
            k("path"),
            format!("invalid path {path:?}: not empty, no spaces"),
        ));
    }
    let status = match &u.status_code {
        None => Vec::new(),
        Some(v) => {
            let words: Result<Vec<String>, String> = match v.get_ref() {
                toml::Value::String(s) => Ok(s.split_whitespace().map(String::from).collect()),
                toml::Value::Integer(n) => Ok(vec![n.to_string()]),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        _ => Err("status_code entries are codes or \"lo-hi\" ranges".to_string()),
                    })
                    .collect(),
                _ => Err("expected a code, a string like \"200-299 404\", or a list".into()),
            };
            words
                .and_then(|w| status_codes(w.iter().map(String::as_str)))
                .map_err(|m| ctx.err(v.span(), k("status_code"), m))?
        }
    };
    Ok(UrlCheck {
        path: path.clone(),
        status,
        digest: u
            .digest
            .as_ref()
            .map(|d| digest(d.get_ref()).map_err(|m| ctx.err(d.span(), k("digest"), m)))
            .transpose()?,
        virtualhost: opt_string(ctx, &u.virtualhost, &k("virtualhost"), virtualhost)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::Config;

    /// Lines 1-11: a base with one service; tests append from line 12 on.
    const BASE: &str = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\naddresses = [\"198.18.0.1/24\"]\n\
[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n";

    fn parse(extra: &str) -> Config {
        match Config::from_str(&format!("{BASE}{extra}"), "t.toml") {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn error(extra: &str) -> String {
        match Config::from_str(&format!("{BASE}{extra}"), "t.toml") {
            Ok(_) => panic!("expected an error for {extra}"),
            Err(e) => e.to_string(),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn service_health_and_default_checks() {
        let c = parse(
            "[service.health]\ndelay_loop = 6\nconnect_timeout = 2.5\nretry = 2\n\
             delay_before_retry = 0.5\nwarmup = 0\nalpha = true\nomega = true\nquorum = 3\n\
             hysteresis = 1\nquorum_up = \"/bin/up a\"\n\
             quorum_down = { command = \"/bin/down\", user = \"nobody\", group = \"nogroup\" }\n\
             sorry_server = { address = \"198.18.0.50\", port = 8080, method = \"nat\", inhibit = true }\n\
             inhibit_on_failure = true\nvirtualhost = \"www.example\"\n\
             passive = { syn_timeouts = 5, window = 10 }\n\
             [[service.check]]\ntype = \"tcp\"\nconnect_port = 81\n\
             [[service.real_server]]\naddress = \"198.18.0.11\"\n",
        );
        let h = &c.services[0].health;
        assert_eq!(h.timing.delay_loop, Some(secs(6)));
        assert_eq!(h.timing.connect_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(h.timing.retry, Some(2));
        assert_eq!(
            h.timing.delay_before_retry,
            Some(Duration::from_millis(500))
        );
        assert_eq!(h.timing.warmup, Some(secs(0)));
        assert_eq!(h.timing.alpha, Some(true));
        assert!(h.omega && h.inhibit_on_failure);
        assert_eq!((h.quorum, h.hysteresis), (3, 1));
        assert_eq!(h.quorum_up.as_ref().unwrap().command, "/bin/up a");
        let down = h.quorum_down.as_ref().unwrap();
        assert_eq!(
            (down.user.as_deref(), down.group.as_deref()),
            (Some("nobody"), Some("nogroup"))
        );
        assert_eq!(
            h.sorry_server,
            Some(SorryServer {
                addr: "198.18.0.50".parse().unwrap(),
                port: Some(8080),
                method: Some(FwdMethod::Masq),
                inhibit: true
            })
        );
        assert_eq!(h.virtualhost.as_deref(), Some("www.example"));
        assert_eq!(
            h.passive,
            Some(PassiveCheck {
                syn_timeouts: 5,
                window: secs(10)
            })
        );
        assert_eq!(h.default_checkers.len(), 1);
        assert_eq!(h.default_checkers[0].kind, CheckKind::Tcp);
        assert_eq!(h.default_checkers[0].connect_port, Some(81));
        // a server without checks of its own has none here: the pool uses the defaults
        assert!(c.services[0].real_servers[0].health.checkers.is_empty());
    }

    #[test]
    fn real_server_keys_and_every_check_type() {
        let c = parse(
            "[[service.real_server]]\naddress = \"198.18.0.11\"\nnotify_up = \"/bin/up\"\n\
             notify_down = \"/bin/down\"\ninhibit_on_failure = false\nalpha = true\n\
             delay_loop = 3\nretry = 4\nvirtualhost = \"rs.example\"\n\
             [[service.real_server.check]]\ntype = \"http_get\"\nhttp_protocol = \"1.0C\"\n\
             fast_recovery = true\nvirtualhost = \"chk.example\"\nconnect_timeout = 3\n\
             url = [{ path = \"/\", status_code = \"200-299 404\" },\n\
                    { path = \"/x\", status_code = [200, \"301-302\"], digest = \"9b3a0c85a887a256d6939da88aabd8cd\", virtualhost = \"u.example\" }]\n\
             [[service.real_server.check]]\ntype = \"ssl_get\"\nenable_sni = true\nurl = [{ path = \"/\" }]\n\
             [[service.real_server.check]]\ntype = \"misc\"\nmisc_path = \"/bin/check 1\"\n\
             misc_timeout = 4\nmisc_dynamic = true\nuser = \"nobody\"\n\
             [[service.real_server.check]]\ntype = \"dns\"\nquery_type = \"a\"\nname = \"example.org\"\n\
             [[service.real_server.check]]\ntype = \"udp\"\npayload = \"Ab12f 3\"\n\
             require_reply = \"ffX\"\nmin_reply_length = 2\nmax_reply_length = 20\n\
             [[service.real_server.check]]\ntype = \"ping\"\nbindto = \"198.18.0.1\"\nbind_if = \"lan0\"\nfwmark = 5\n\
             [[service.real_server.check]]\ntype = \"tcp\"\nconnect_ip = \"198.18.0.12\"\nbind_port = 999\nlog_all_failures = true\n",
        );
        let rs = &c.services[0].real_servers[0].health;
        assert_eq!(rs.notify_up.as_ref().unwrap().command, "/bin/up");
        assert_eq!(rs.notify_down.as_ref().unwrap().command, "/bin/down");
        assert_eq!(rs.inhibit_on_failure, Some(false));
        assert_eq!(
            (rs.timing.alpha, rs.timing.delay_loop, rs.timing.retry),
            (Some(true), Some(secs(3)), Some(4))
        );
        assert_eq!(rs.virtualhost.as_deref(), Some("rs.example"));
        let ch = &rs.checkers;
        assert_eq!(ch.len(), 7);
        let CheckKind::Http(h) = &ch[0].kind else {
            panic!("{:?}", ch[0].kind)
        };
        assert_eq!(h.protocol, HttpProtocol::V10Close);
        assert!(h.fast_recovery && !h.enable_sni);
        assert_eq!(h.virtualhost.as_deref(), Some("chk.example"));
        assert_eq!(h.urls[0].status, vec![(200, 299), (404, 404)]);
        assert_eq!(h.urls[1].status, vec![(200, 200), (301, 302)]);
        assert_eq!(h.urls[1].digest.unwrap()[0], 0x9b);
        assert_eq!(h.urls[1].virtualhost.as_deref(), Some("u.example"));
        assert_eq!(ch[0].timing.connect_timeout, Some(secs(3)));
        let CheckKind::Ssl(s) = &ch[1].kind else {
            panic!()
        };
        assert!(s.enable_sni && s.urls[0].status.is_empty());
        assert_eq!(
            ch[2].kind,
            CheckKind::Misc(MiscCheck {
                path: "/bin/check 1".into(),
                timeout: Some(secs(4)),
                dynamic: true,
                user: Some("nobody".into()),
                group: None
            })
        );
        assert_eq!(
            ch[3].kind,
            CheckKind::Dns(DnsCheck {
                qtype: DnsType::A,
                name: "example.org".into()
            })
        );
        assert_eq!(
            ch[4].kind,
            CheckKind::Udp(UdpCheck {
                payload: Some(vec![0xab, 0x12, 0x0f, 0x03]),
                require_reply: Some(vec![Some(15), Some(15), Some(0), None]),
                min_reply_length: 2,
                max_reply_length: 20
            })
        );
        assert_eq!(ch[5].kind, CheckKind::Ping);
        assert_eq!(ch[5].bindto, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(ch[5].bind_if.as_deref(), Some("lan0"));
        assert_eq!(ch[5].fwmark, Some(5));
        assert_eq!(ch[6].connect_ip, Some("198.18.0.12".parse().unwrap()));
        assert_eq!(ch[6].bind_port, Some(999));
        assert!(ch[6].log_all_failures);
        // the server's retry reaches the checker through keepalived's inheritance
        let t = crate::health::spec::EffectiveTiming::resolve(
            &ch[6].kind,
            &ch[6].timing,
            &rs.timing,
            &c.services[0].health.timing,
        );
        assert_eq!((t.retry, t.delay_loop, t.starts_down), (4, secs(3), true));
    }

    #[test]
    fn errors_point_at_the_key() {
        let mut bad = 0;
        let rs =
            "[[service.real_server]]\naddress = \"198.18.0.11\"\n[[service.real_server.check]]\n";
        for (extra, want) in [
            (
                format!("{rs}type = \"smtp\"\n"),
                "t.toml:15:8: service[0].real_server[0].check[0].type: unknown check type \"smtp\": expected one of tcp http_get ssl_get misc dns udp ping",
            ),
            (
                format!("{rs}type = \"http_get\"\nurl = [{{ path = \"/\", status_code = \"200-199\" }}]\n"),
                "t.toml:16:36: service[0].real_server[0].check[0].url[0].status_code: invalid status code range \"200-199\": 200 > 199",
            ),
            (
                format!("{rs}type = \"http_get\"\nurl = [{{ path = \"/\", status_code = \"2000\" }}]\n"),
                "t.toml:16:36: service[0].real_server[0].check[0].url[0].status_code: invalid status code \"2000\": expected 100..=599 or a range like 200-299",
            ),
            (
                format!("{rs}type = \"http_get\"\nurl = [{{ path = \"/\", digest = \"abc\" }}]\n"),
                "t.toml:16:31: service[0].real_server[0].check[0].url[0].digest: invalid digest \"abc\": expected an MD5 as 32 hex digits",
            ),
            (
                format!("{rs}type = \"http_get\"\n"),
                "t.toml:14:1: service[0].real_server[0].check[0].url: HTTP_GET needs at least one url",
            ),
            (
                format!("{rs}type = \"misc\"\n"),
                "t.toml:14:1: service[0].real_server[0].check[0]: type \"misc\" needs misc_path",
            ),
            (
                format!("{rs}type = \"tcp\"\nmisc_path = \"/bin/true\"\n"),
                "t.toml:16:13: service[0].real_server[0].check[0].misc_path: misc_path does not apply to type \"tcp\" (only misc)",
            ),
            (
                format!("{rs}type = \"misc\"\nmisc_path = \"/bin/true\"\nconnect_port = 80\n"),
                "t.toml:17:16: service[0].real_server[0].check[0].connect_port: connect_port does not apply to type \"misc\" (only tcp, http_get, ssl_get, dns, udp)",
            ),
            (
                format!("{rs}type = \"tcp\"\nconnect_timeout = -1\n"),
                "t.toml:16:19: service[0].real_server[0].check[0].connect_timeout: -1 is not a duration: expected seconds >= 0",
            ),
            (
                format!("{rs}type = \"tcp\"\ndelay_loop = 1e9\n"),
                "t.toml:16:14: service[0].real_server[0].check[0].delay_loop: 1000000000 seconds out of range: at most 86400 (one day)",
            ),
            (
                format!("{rs}type = \"tcp\"\ndelay_loop = 0\n"),
                "t.toml:16:14: service[0].real_server[0].check[0].delay_loop: 0 seconds: must be more than 0",
            ),
            (
                format!("{rs}type = \"tcp\"\nretry = 100000\n"),
                "t.toml:16:9: service[0].real_server[0].check[0].retry: 100000 out of range: must be 0..=65535",
            ),
            (
                format!("{rs}type = \"udp\"\npayload = \"zz\"\n"),
                "t.toml:16:11: service[0].real_server[0].check[0].payload: invalid hex string \"zz\": 'z' is not a hex digit",
            ),
            (
                format!("{rs}type = \"udp\"\nmin_reply_length = 9\nmax_reply_length = 3\n"),
                "t.toml:16:20: service[0].real_server[0].check[0].min_reply_length: min_reply_length 9 is more than max_reply_length 3",
            ),
            (
                format!("{rs}type = \"dns\"\nquery_type = \"PTR\"\n"),
                "t.toml:16:14: service[0].real_server[0].check[0].query_type: unknown DNS query type \"PTR\": expected A, NS, CNAME, SOA, MX, TXT or AAAA",
            ),
            (
                "[service.health]\nsorry_server = { address = \"2001:db8::1\" }\n".to_string(),
                "t.toml:13:16: service[0].health.sorry_server: sorry server 2001:db8::1 is not in the service's address family (only tun mixes families)",
            ),
            (
                "[service.health]\nquorum = 2\nhysteresis = 2\n".to_string(),
                "t.toml:14:14: service[0].health.hysteresis: hysteresis 2 must be less than quorum 2",
            ),
            (
                "[service.health]\nquorum = 0\n".to_string(),
                "t.toml:13:10: service[0].health.quorum: 0 out of range: must be 1..=4294967295",
            ),
        ] {
            let got = error(&extra);
            if got != want {
                eprintln!("GOT  {got}\nWANT {want}");
                bad += 1;
            }
        }
        assert_eq!(bad, 0);
        // unknown keys come from serde, with the key path
        let e = error(&format!("{rs}type = \"tcp\"\nnb_get_retry = 3\n"));
        assert!(
            e.starts_with("t.toml:16:1: service[0].real_server[0].check[0]"),
            "{e}"
        );
        assert!(e.contains("unknown field `nb_get_retry`"), "{e}");
    }

    #[test]
    fn hex_strings_follow_keepalived() {
        assert_eq!(
            hex_bytes("Ab12f 3 456 546443123").unwrap(),
            vec![0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]
        );
        assert_eq!(hex_string("x", true).unwrap(), vec![Some(0), None]);
        assert!(hex_string("x", false).is_err());
        assert!(hex_bytes("").is_err());
    }
}

#[cfg(test)]
mod reference_tests {
    use crate::control::config::Config;

    /// configs/demo.toml documents the health keys as commented examples
    /// (the demo runs without checks): uncommented, they must parse.
    #[test]
    fn the_commented_health_examples_in_demo_toml_parse() {
        let demo = include_str!("../../../configs/demo.toml");
        let mut inside = false;
        let mut examples = 0;
        let text: String = demo
            .lines()
            .map(|l| {
                if l.starts_with("# ---- health checks") {
                    inside = true;
                } else if l.starts_with("# ---- end of health checks") {
                    inside = false;
                } else if inside {
                    if let Some(code) = l.strip_prefix("# ") {
                        let is_code = code.starts_with('[')
                            || code.starts_with("  ")
                            || code.split_once(" = ").is_some_and(|(k, _)| {
                                k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            });
                        if is_code {
                            examples += 1;
                            return format!("{code}\n");
                        }
                    }
                }
                format!("{l}\n")
            })
            .collect();
        assert!(examples > 50, "{examples}");
        let c = match Config::from_str(&text, "demo.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        };
        let s = &c.services[0];
        assert_eq!(s.health.default_checkers.len(), 1);
        assert!(s.health.sorry_server.is_some() && s.health.passive.is_some());
        assert_eq!(s.real_servers[0].health.checkers.len(), 5);
        assert!(s.real_servers[0].health.notify_down.is_some());
    }
}
