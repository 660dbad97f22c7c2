//! Refusals of what vsd accepts syntactically but cannot do yet.
//!
//! What: the control plane checks every change (vsadm commands, `-R`,
//! the TOML configuration at start, `--check` and `--reload`) against
//! these rules and refuses, with a message that says why, what the data
//! plane would otherwise silently ignore:
//!
//! - IPv6 services, IPv6 real servers and IPv6 FULLNAT local addresses:
//!   the forwarding core handles IPv4 only (an IPv6 server behind an IPv4
//!   service is dropped as `unsupported_dest`).
//! - Tunnels between address families (a TUN server of the other family
//!   than its service), once IPv6 is lifted.
//! - IPv6 `[[vip]]` entries in the configuration (no IPv6 service could
//!   use them). Refused when the configuration is read, so at start,
//!   `--check` and `--reload`. A port's IPv6 `addresses` and `gateway` are
//!   accepted: the data plane answers neighbor discovery and ping for them
//!   and routes through them (`dataplane::local`).
//!
//! Why: an operator must never believe something runs when it does not
//! (the "accepted but ignored"). When a feature lands, its rule
//! here goes.
//!
//! IPv6 services, servers and local addresses: everything above the
//! forwarding core (parsing, the service table, listings, `-S`/`-R`, JSON,
//! Prometheus, the TOML and keepalived configurations) handles them
//! already, and is tested with the refusal lifted (`control::ipv6_tests`).
//! Lifting it for good is [`IPV6_FORWARDING`] set to `true`; tunnels
//! between families (an IPv4 server behind an IPv6 service or the
//! reverse, which the kernel allows for TUN only) have their own switch,
//! [`MIXED_FAMILY_TUNNELS`], as the forwarding core may do them later.

use crate::lb::service::ServiceKey;
use crate::lb::types::AddrFamily;
use std::net::IpAddr;

/// Whether the forwarding core forwards IPv6 services, IPv6 real servers
/// and IPv6 FULLNAT local addresses: the switch of the IPv6 refusals below.
pub const IPV6_FORWARDING: bool = false;

/// Whether the forwarding core tunnels between address families (IPv4 in
/// IPv6, IPv6 in IPv4: a TUN server of the other family than its service).
pub const MIXED_FAMILY_TUNNELS: bool = false;

fn ipv6_refused() -> bool {
    !(IPV6_FORWARDING || test_override::ipv6_allowed())
}

fn mixed_family_refused() -> bool {
    !(MIXED_FAMILY_TUNNELS || test_override::ipv6_allowed())
}

/// Refuse a service vsd cannot forward.
pub fn check_service(key: &ServiceKey) -> Result<(), String> {
    if key.af() == AddrFamily::Inet6 && ipv6_refused() {
        return Err(format!(
            "IPv6 services are not supported yet (vsd forwards IPv4 only): {key} refused"
        ));
    }
    Ok(())
}

/// Refuse a real server vsd cannot forward to: an IPv6 one, or one of the
/// other family than its service (`service_af`).
pub fn check_server(service_af: AddrFamily, addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() && ipv6_refused() {
        return Err(format!(
            "IPv6 real servers are not supported yet (vsd forwards IPv4 only): {addr} refused"
        ));
    }
    if AddrFamily::of(addr) != service_af && mixed_family_refused() {
        let (inner, outer) = match service_af {
            AddrFamily::Inet => ("IPv4", "IPv6"),
            AddrFamily::Inet6 => ("IPv6", "IPv4"),
        };
        return Err(format!(
            "tunnels between address families ({inner} in {outer}) are not supported yet: \
             {addr} refused"
        ));
    }
    Ok(())
}

/// Refuse a FULLNAT local address vsd cannot use.
pub fn check_local_addr(addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() && ipv6_refused() {
        return Err(format!(
            "IPv6 local addresses are not supported yet (vsd forwards IPv4 only): {addr} refused"
        ));
    }
    Ok(())
}

/// Refuse an IPv6 director address of the configuration: `what` names it
/// ("VIPs"), `shown` is how the operator wrote it.
pub fn check_director_addr(what: &str, addr: IpAddr, shown: &str) -> Result<(), String> {
    if addr.is_ipv6() {
        return Err(format!(
            "IPv6 {what} are not supported yet (vsd forwards IPv4 only): {shown} refused"
        ));
    }
    Ok(())
}

/// Lifting the IPv6 refusals in unit tests of the layers above the
/// forwarding core (one test thread at a time; nothing outside tests can
/// reach it).
#[cfg(test)]
pub(crate) mod test_override {
    use std::cell::Cell;

    thread_local! {
        static ALLOW_IPV6: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn ipv6_allowed() -> bool {
        ALLOW_IPV6.with(Cell::get)
    }

    /// IPv6 is accepted on this thread while the guard lives.
    pub(crate) struct AllowIpv6(());

    impl AllowIpv6 {
        pub(crate) fn new() -> Self {
            ALLOW_IPV6.with(|a| a.set(true));
            AllowIpv6(())
        }
    }

    impl Drop for AllowIpv6 {
        fn drop(&mut self) {
            ALLOW_IPV6.with(|a| a.set(false));
        }
    }
}

#[cfg(not(test))]
mod test_override {
    pub(super) fn ipv6_allowed() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::types::Protocol;

    #[test]
    fn ipv6_is_refused_ipv4_passes() {
        let v4 = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "198.18.0.100".parse().unwrap(),
            port: 80,
        };
        let v6 = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 80,
        };
        assert!(check_service(&v4).is_ok());
        assert!(check_service(&ServiceKey::fwmark(1, AddrFamily::Inet)).is_ok());
        assert!(check_service(&v6).unwrap_err().contains("IPv6 services"));
        assert!(check_service(&ServiceKey::fwmark(1, AddrFamily::Inet6)).is_err());
        assert!(check_server(AddrFamily::Inet, "198.18.1.1".parse().unwrap()).is_ok());
        assert!(check_server(AddrFamily::Inet, "2001:db8::2".parse().unwrap()).is_err());
        assert!(check_local_addr("2001:db8::3".parse().unwrap()).is_err());
    }

    #[test]
    fn the_test_override_lifts_the_ipv6_refusals_only_while_it_lives() {
        let v6 = ServiceKey::fwmark(1, AddrFamily::Inet6);
        {
            let _allow = test_override::AllowIpv6::new();
            assert!(check_service(&v6).is_ok());
            assert!(check_server(AddrFamily::Inet6, "2001:2::10".parse().unwrap()).is_ok());
            assert!(check_server(AddrFamily::Inet6, "198.18.1.10".parse().unwrap()).is_ok());
            assert!(check_local_addr("2001:2::5".parse().unwrap()).is_ok());
        }
        assert_eq!(check_service(&v6).is_err(), !IPV6_FORWARDING);
    }

    #[test]
    fn tunnels_between_families_have_their_own_switch() {
        let v4_server = check_server(AddrFamily::Inet6, "198.18.1.10".parse().unwrap());
        assert_eq!(v4_server.is_err(), !MIXED_FAMILY_TUNNELS);
        if let Err(e) = v4_server {
            assert_eq!(
                e,
                "tunnels between address families (IPv6 in IPv4) are not supported yet: \
                 198.18.1.10 refused"
            );
        }
        // an IPv6 server of an IPv4 service is refused as IPv6 first
        let v6_server = check_server(AddrFamily::Inet, "2001:2::12".parse().unwrap());
        assert_eq!(
            v6_server.is_err(),
            !(IPV6_FORWARDING && MIXED_FAMILY_TUNNELS)
        );
    }
}
