//! Refusals of what vsd accepts syntactically but cannot do yet.
//!
//! What: the control plane checks every change (vsadm commands, `-R`,
//! the TOML configuration at start, `--check` and `--reload`) against
//! these rules and refuses, with a message that says why, what the data
//! plane would otherwise silently ignore:
//!
//! - An IPv6 FULLNAT local address on an IPv4 service (no NAT46: IPv4
//!   clients are never translated to IPv6 servers).
//!
//! IPv6 forwarding itself is no longer refused ([`IPV6_FORWARDING`]):
//! every method forwards IPv6 (NAT, DR, TUN IPv6-in-IPv6, FULLNAT with
//! IPv6 local addresses), FULLNAT translates IPv6 clients to IPv4 real
//! servers (NAT64), and tunnels cross families ([`MIXED_FAMILY_TUNNELS`]:
//! IPv4-in-IPv6 and IPv6-in-IPv4); the service table itself refuses other
//! mixes of families ("Different address family is allowed only for
//! tunneling servers"). IPv6 `[[vip]]`s are answered by the data
//! plane's neighbor discovery (`dataplane::local`), and those that
//! `follow` a kernel interface are served while the address is there and
//! announced with unsolicited neighbor advertisements when it comes
//! (`dataplane::vipfollow`). Proven end to end in
//! tests/e2e_ipv6.rs.
//!
//! Why: an operator must never believe something runs when it does not
//! (the "accepted but ignored"). When a feature lands, its rule
//! here goes.

use crate::lb::service::ServiceKey;
use crate::lb::types::AddrFamily;
use std::net::IpAddr;

/// Whether the forwarding core forwards IPv6 services, IPv6 real servers
/// and IPv6 FULLNAT local addresses: the switch of the IPv6 refusals below.
pub const IPV6_FORWARDING: bool = true;

/// Whether the forwarding core tunnels between address families (IPv4 in
/// IPv6, IPv6 in IPv4: a TUN server of the other family than its service)
/// and translates IPv6 clients to IPv4 FULLNAT servers (NAT64).
pub const MIXED_FAMILY_TUNNELS: bool = true;

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

/// Refuse a FULLNAT local address vsd cannot use for a service of family
/// `service_af`: an IPv6 one of an IPv4 service would never be used (IPv4
/// clients are never translated to IPv6 servers).
pub fn check_local_addr(service_af: AddrFamily, addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() && ipv6_refused() {
        return Err(format!(
            "IPv6 local addresses are not supported yet (vsd forwards IPv4 only): {addr} refused"
        ));
    }
    if addr.is_ipv6() && service_af == AddrFamily::Inet {
        return Err(format!(
            "an IPv6 local address is never used by an IPv4 service (FULLNAT from IPv4 \
             clients to IPv6 servers is not supported): {addr} refused"
        ));
    }
    Ok(())
}

/// Refuse a `[[vip]]` of the configuration vsd cannot serve as written.
pub fn check_vip(addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() && ipv6_refused() {
        return Err(format!(
            "IPv6 VIPs are not supported yet (vsd forwards IPv4 only): {addr} refused"
        ));
    }
    Ok(())
}

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
    fn ipv6_services_servers_and_local_addresses_pass() {
        let v6 = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "2001:2::64".parse().unwrap(),
            port: 80,
        };
        assert!(check_service(&v6).is_ok());
        assert!(check_server(AddrFamily::Inet6, "2001:2::11".parse().unwrap()).is_ok());
        assert!(check_local_addr(AddrFamily::Inet6, "2001:2::200".parse().unwrap()).is_ok());
        // NAT64: IPv4 local addresses for the IPv4 servers of an IPv6 service
        assert!(check_local_addr(AddrFamily::Inet6, "198.18.1.200".parse().unwrap()).is_ok());
        assert!(check_vip("2001:2::64".parse().unwrap()).is_ok());
        // NAT64 and tunnels between families: the service table decides by
        // method (only TUN, and FULLNAT from IPv6 to IPv4)
        assert!(check_server(AddrFamily::Inet6, "198.18.1.11".parse().unwrap()).is_ok());
        assert!(check_server(AddrFamily::Inet, "2001:2::12".parse().unwrap()).is_ok());
    }

    #[test]
    fn nat46_local_addresses_are_refused() {
        assert!(check_service(&ServiceKey::fwmark(3, AddrFamily::Inet6)).is_ok());
        assert!(check_vip("198.18.0.100".parse().unwrap()).is_ok());
        assert!(
            check_local_addr(AddrFamily::Inet, "2001:2::200".parse().unwrap())
                .unwrap_err()
                .starts_with("an IPv6 local address is never used by an IPv4 service")
        );
    }
}
