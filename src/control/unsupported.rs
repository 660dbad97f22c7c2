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
//! - IPv6 `[[vip]]` entries in the configuration (no IPv6 service could
//!   use them). Refused when the configuration is read, so at start,
//!   `--check` and `--reload`. A port's IPv6 `addresses` and `gateway` are
//!   accepted: the data plane answers neighbor discovery and ping for them
//!   and routes through them (`dataplane::local`).
//!
//! Why: an operator must never believe something runs when it does not
//! (the "accepted but ignored"). When a feature lands, its rule
//! here goes.

use crate::lb::service::ServiceKey;
use crate::lb::types::AddrFamily;
use std::net::IpAddr;

/// Refuse a service vsd cannot forward.
pub fn check_service(key: &ServiceKey) -> Result<(), String> {
    if key.af() == AddrFamily::Inet6 {
        return Err(format!(
            "IPv6 services are not supported yet (vsd forwards IPv4 only): {key} refused"
        ));
    }
    Ok(())
}

/// Refuse a real server address vsd cannot forward to.
pub fn check_server(addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() {
        return Err(format!(
            "IPv6 real servers are not supported yet (vsd forwards IPv4 only): {addr} refused"
        ));
    }
    Ok(())
}

/// Refuse a FULLNAT local address vsd cannot use.
pub fn check_local_addr(addr: IpAddr) -> Result<(), String> {
    if addr.is_ipv6() {
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
}
