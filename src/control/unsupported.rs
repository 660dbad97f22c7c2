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
//! - `--start-daemon`: connection synchronisation is not implemented; the
//!   multicast interface is checked first, so a typo is reported as such.
//!
//! Why: an operator must never believe something runs when it does not
//! (the "accepted but ignored"). When a feature lands, its rule
//! here goes.

use super::ipvsadm::SyncDaemonSpec;
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

/// Whether a network interface of this name exists in vsd's namespace.
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Refuse `--start-daemon`: sync is not implemented.
pub fn check_start_daemon(spec: &SyncDaemonSpec) -> Result<(), String> {
    if !interface_exists(&spec.mcast_interface) {
        return Err(format!(
            "--mcast-interface {}: no such interface",
            spec.mcast_interface
        ));
    }
    Err(format!(
        "--start-daemon {}: connection synchronisation is not implemented in vsd yet; \
         nothing was started",
        spec.role.name()
    ))
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
    fn start_daemon_is_refused_and_names_a_missing_interface() {
        let mut spec = SyncDaemonSpec {
            role: super::super::ipvsadm::SyncRole::Master,
            mcast_interface: "nonexistent0".into(),
            syncid: 0,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        };
        assert_eq!(
            check_start_daemon(&spec).unwrap_err(),
            "--mcast-interface nonexistent0: no such interface"
        );
        spec.mcast_interface = "lo".into();
        assert!(check_start_daemon(&spec)
            .unwrap_err()
            .contains("not implemented"));
    }
}
