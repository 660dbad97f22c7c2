//! `[announce]` in vsd's TOML: route announcement of the served VIPs
//! through a kernel interface (see [`crate::control::announce`] for the
//! mechanism and its design note).
//!
//! ```toml
//! [announce]
//! interface = "vip0"      # required: where each announced VIP goes, as /32
//! drain_timeout = 300     # seconds a drain forwards at most (default 300)
//! require_healthy = true  # withdraw a VIP without an available real server
//! kind = "auto"           # what vsd creates when the interface is absent
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx, PortConf, VipConf, S};

/// Default `drain_timeout`, seconds.
pub const DEFAULT_DRAIN_TIMEOUT_S: i64 = 300;
/// Longest `drain_timeout` (one day): a longer drain is a typo.
pub const MAX_DRAIN_TIMEOUT_S: i64 = 86_400;

/// `[announce]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConf {
    /// The kernel interface the announced VIPs are put on (created as a
    /// `dummy` link when absent).
    pub interface: String,
    /// How long a drain keeps reporting "draining" at most.
    pub drain_timeout: Duration,
    /// Withdraw a VIP when none of its services has an available real
    /// server (present with weight > 0).
    pub require_healthy: bool,
    /// What vsd creates when the interface does not exist.
    pub kind: LinkKind,
}

/// `[announce] kind`: the link vsd creates when `interface` is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkKind {
    /// A `dummy` link, or a TUN device where the kernel has no dummy
    /// driver (the default).
    #[default]
    Auto,
    /// A `dummy` link (stays if vsd is killed with SIGKILL).
    Dummy,
    /// A TUN device vsd holds open: it disappears with vsd however vsd
    /// ends, SIGKILL included, and so do its routes.
    Tun,
}

/// `[announce]` as the file says it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnounce {
    interface: S<String>,
    drain_timeout: Option<S<i64>>,
    require_healthy: Option<S<bool>>,
    kind: Option<S<String>>,
}

/// The kernel's rules for an interface name (IFNAMSIZ 16, no '/', ':' or
/// white space; not "." or "..").
pub fn valid_iface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Build `[announce]`: the interface name must be valid and must not be an
/// interface a `[[vip]]` follows (vsd would then follow its own
/// announcements: a VIP put there for BGP would make it "active" for VRRP).
pub(super) fn build_announce(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawAnnounce>>,
    ports: &[PortConf],
    vips: &[VipConf],
) -> Result<Option<AnnounceConf>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let raw = raw.get_ref();
    let name = raw.interface.get_ref();
    if !valid_iface_name(name) {
        return Err(ctx.err(
            raw.interface.span(),
            "announce.interface",
            format!(
                "{name:?} is not a kernel interface name (1 to 15 characters, no '/', ':' or spaces)"
            ),
        ));
    }
    if let Some(v) = vips.iter().find(|v| v.follow.as_deref() == Some(name)) {
        let twin = ports
            .iter()
            .find(|p| p.kernel.as_ref().is_some_and(|k| k.iface == *name))
            .map(|p| format!(" (the kernel twin of port {:?})", p.name))
            .unwrap_or_default();
        return Err(ctx.err(
            raw.interface.span(),
            "announce.interface",
            format!(
                "interface {name:?}{twin} is followed by VIP {} (follow = {name:?}): \
                 vsd would follow its own announcements; use another interface, e.g. \"vip0\"",
                v.address
            ),
        ));
    }
    let drain_timeout = ctx.int_or(
        &raw.drain_timeout,
        "announce.drain_timeout",
        0,
        MAX_DRAIN_TIMEOUT_S,
        DEFAULT_DRAIN_TIMEOUT_S,
    )?;
    let kind = match &raw.kind {
        None => LinkKind::Auto,
        Some(k) => match k.get_ref().as_str() {
            "auto" => LinkKind::Auto,
            "dummy" => LinkKind::Dummy,
            "tun" => LinkKind::Tun,
            other => {
                return Err(ctx.err(
                    k.span(),
                    "announce.kind",
                    format!("unknown kind {other:?}: expected \"auto\", \"dummy\" or \"tun\""),
                ))
            }
        },
    };
    Ok(Some(AnnounceConf {
        kind,
        interface: name.clone(),
        drain_timeout: Duration::from_secs(drain_timeout as u64),
        require_healthy: raw.require_healthy.as_ref().is_none_or(|b| *b.get_ref()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::Config;

    /// Lines 1-8; tests append from line 9 on.
    const BASE: &str =
        "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n\
                        addresses = [\"198.18.0.1/24\"]\nkernel_iface = \"vsd-lan0\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::from_str(&format!("{BASE}{extra}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn absent_table_means_no_announcement() {
        assert_eq!(parse("").unwrap().announce, None);
    }

    #[test]
    fn keys_and_defaults() {
        let c = parse("[announce]\ninterface = \"vip0\"\n").unwrap();
        assert_eq!(
            c.announce,
            Some(AnnounceConf {
                interface: "vip0".into(),
                drain_timeout: Duration::from_secs(300),
                require_healthy: true,
                kind: LinkKind::Auto,
            })
        );
        let c = parse(
            "[announce]\ninterface = \"vip0\"\ndrain_timeout = 5\nrequire_healthy = false\n\
             kind = \"tun\"\n",
        )
        .unwrap();
        let a = c.announce.unwrap();
        assert_eq!(a.drain_timeout, Duration::from_secs(5));
        assert!(!a.require_healthy);
        assert_eq!(a.kind, LinkKind::Tun);
        let c = parse("[announce]\ninterface = \"vip0\"\nkind = \"dummy\"\n").unwrap();
        assert_eq!(c.announce.unwrap().kind, LinkKind::Dummy);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            parse("[announce]\ndrain_timeout = 5\n").unwrap_err(),
            "t.toml:9:1: announce: missing field `interface`"
        );
        assert_eq!(
            parse("[announce]\ninterface = \"much-too-long-name\"\n").unwrap_err(),
            "t.toml:10:13: announce.interface: \"much-too-long-name\" is not a kernel interface \
             name (1 to 15 characters, no '/', ':' or spaces)"
        );
        assert_eq!(
            parse("[announce]\ninterface = \"vip0\"\ndrain_timeout = -1\n").unwrap_err(),
            "t.toml:11:17: announce.drain_timeout: -1 out of range: must be 0..=86400"
        );
        assert_eq!(
            parse("[announce]\ninterface = \"vip0\"\nrequire_healthy = \"yes\"\n").unwrap_err(),
            "t.toml:11:19: announce.require_healthy: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            parse("[announce]\ninterface = \"vip0\"\nkind = \"veth\"\n").unwrap_err(),
            "t.toml:11:8: announce.kind: unknown kind \"veth\": expected \"auto\", \"dummy\" or \"tun\""
        );
        assert!(parse("[announce]\ninterface = \"vip0\"\nbogus = 1\n")
            .unwrap_err()
            .starts_with("t.toml:11:1: announce.bogus: unknown field `bogus`"));
    }

    /// The commented `[announce]` of configs/demo.toml parses once
    /// uncommented, with the documented defaults.
    #[test]
    fn the_demo_reference_block_parses() {
        let demo = include_str!("../../../configs/demo.toml");
        let start = demo
            .find("# [announce]\n")
            .expect("[announce] in demo.toml");
        let block: String = demo[start..]
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                *l == "[announce]"
                    || l.split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(block.lines().count(), 5, "{block}");
        let c = parse(&block).unwrap();
        assert_eq!(
            c.announce,
            Some(AnnounceConf {
                interface: "vip0".into(),
                drain_timeout: Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_S as u64),
                require_healthy: true,
                kind: LinkKind::Auto,
            })
        );
    }

    #[test]
    fn an_interface_vip_follow_watches_is_refused() {
        let vip = "[[vip]]\naddress = \"198.18.0.100\"\nport = \"lan0\"\nfollow = \"vsd-lan0\"\n";
        let e = parse(&format!("{vip}[announce]\ninterface = \"vsd-lan0\"\n")).unwrap_err();
        assert_eq!(
            e,
            "t.toml:14:13: announce.interface: interface \"vsd-lan0\" (the kernel twin of port \
             \"lan0\") is followed by VIP 198.18.0.100 (follow = \"vsd-lan0\"): vsd would follow \
             its own announcements; use another interface, e.g. \"vip0\""
        );
        // the twin without VIP-follow, or another interface, is fine
        assert!(parse("[announce]\ninterface = \"vsd-lan0\"\n").is_ok());
        assert!(parse(&format!("{vip}[announce]\ninterface = \"vip0\"\n")).is_ok());
    }
}
