//! Refusals of what vsd accepts syntactically but cannot do yet.
//!
//! What: the control plane checks every change (vsadm commands, `-R`,
//! the TOML configuration at start, `--check` and `--reload`) against
//! these rules and refuses, with a message that says why, what the data
//! plane would otherwise silently ignore:
//!
//! - IPv6 services, IPv6 real servers and IPv6 FULLNAT local addresses:
//!   the forwarding core handles IPv4 only (IPv6 frames are dropped as
//!   `ipv6_unsupported`, an IPv6 server behind an IPv4 service as
//!   `unsupported_dest`).
//! - IPv6 director addresses in the configuration: a port's IPv6
//!   `addresses`, an IPv6 port `gateway`, IPv6 `[[vip]]` entries (the data
//!   plane would neither answer for them nor route through them). Refused
//!   when the configuration is read, so at start, `--check` and `--reload`.
//!
//! Why: an operator must never believe something runs when it does not
//! (the "accepted but ignored"). When a feature lands, its rule
//! here goes.
//!
//! IPv6 services, servers and local addresses: everything above the
//! forwarding core (parsing, the service table, listings, `-S`/`-R`, JSON,
//! Prometheus, the TOML and keepalived configurations) handles them
//! already, and is tested with the refusal lifted (`control::ipv6_tests`).
//! Lifting it for good is [`IPV6_FORWARDING`] set to `true`.

use crate::lb::service::ServiceKey;
use crate::lb::types::AddrFamily;
use std::net::IpAddr;

/// Whether the forwarding core forwards IPv6 services, IPv6 real servers
/// and IPv6 FULLNAT local addresses. The one switch of the refusals below.
pub const IPV6_FORWARDING: bool = false;

fn ipv6_refused() -> bool {
    !(IPV6_FORWARDING || test_override::ipv6_allowed())
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

/// Refuse a real server address vsd cannot forward to.
pub fn check_server(addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() && ipv6_refused() {
        return Err(format!(
            "IPv6 real servers are not supported yet (vsd forwards IPv4 only): {addr} refused"
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
/// ("port addresses", "port gateways", "VIPs"), `shown` is how the operator
/// wrote it.
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
        assert!(check_server("198.18.1.1".parse().unwrap()).is_ok());
        assert!(check_server("2001:db8::2".parse().unwrap()).is_err());
        assert!(check_local_addr("2001:db8::3".parse().unwrap()).is_err());
    }

    #[test]
    fn the_test_override_lifts_the_ipv6_refusals_only_while_it_lives() {
        let v6 = ServiceKey::fwmark(1, AddrFamily::Inet6);
        {
            let _allow = test_override::AllowIpv6::new();
            assert!(check_service(&v6).is_ok());
            assert!(check_server("2001:2::10".parse().unwrap()).is_ok());
            assert!(check_local_addr("2001:2::5".parse().unwrap()).is_ok());
        }
        assert_eq!(check_service(&v6).is_err(), !IPV6_FORWARDING);
    }
}
