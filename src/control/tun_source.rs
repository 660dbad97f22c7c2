//! The IPv6 outer source of TUN packets (IPv6-in-IPv6).
//!
//! **What.** [`tun_source6`] picks the address vsd writes as the outer
//! source of IPv6 tunnel packets: `[lb] tun_source6` if set, else the
//! port address on the prefix of the first IPv6 TUN real server, else the
//! first global IPv6 address of the last port that has one (the IPv4
//! source's rule). The
//! data plane gets it at start ([`crate::lb::director::CoreLbConfig`]'s
//! `tun_source6`), as the IPv4 `tun_source`.
//!
//! **Why.** Without one the director would send tunnel packets from `::`,
//! which no real server accepts: an IPv6 TUN server with no IPv6 source is
//! refused ([`check_server`]) wherever servers are added (start, reload,
//! `-R`, `vsadm -a/-e`), with the remedy in the message.
//!
//! **Failure modes.** Only global unicast addresses qualify (not `::`,
//! loopback, link-local, multicast or IPv4-mapped): a link-local source
//! cannot leave the link, a mapped one is not IPv6 on the wire.

use std::net::{IpAddr, Ipv6Addr};

use crate::control::config::{Config, IpCidr};
use crate::lb::types::FwdMethod;

/// Whether `a` may be the outer source of IPv6 tunnel packets.
pub fn usable6(a: Ipv6Addr) -> bool {
    let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || link_local
        || a.to_ipv4_mapped().is_some())
}

/// The IPv6 tunnel source `cfg` gives (see the module docs), if any.
pub fn tun_source6(cfg: &Config) -> Option<Ipv6Addr> {
    if let Some(a) = cfg.lb.tun_source6 {
        return Some(a);
    }
    let global = |c: &&IpCidr| matches!(c.addr, IpAddr::V6(a) if usable6(a));
    let port_addrs = || {
        cfg.ports
            .iter()
            .flat_map(|p| p.addresses.iter())
            .filter(global)
    };
    let last_port = || {
        cfg.ports
            .iter()
            .rev()
            .find_map(|p| p.addresses.iter().find(global))
    };
    let first_server = cfg
        .services
        .iter()
        .flat_map(|s| s.real_servers.iter())
        .find(|r| r.method == FwdMethod::Tunnel && r.address.is_ipv6());
    let on_link = first_server.and_then(|r| port_addrs().find(|c| c.contains(r.address)));
    on_link.or_else(last_port).and_then(|c| match c.addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    })
}

/// Refuse an IPv6 TUN real server when there is no IPv6 tunnel source.
pub fn check_server(
    source6: Option<Ipv6Addr>,
    addr: IpAddr,
    method: FwdMethod,
) -> Result<(), String> {
    if method == FwdMethod::Tunnel && addr.is_ipv6() && source6.is_none() {
        return Err(format!(
            "IPv6 TUN real server {addr} refused: no IPv6 tunnel source \
             (set [lb] tun_source6 or give a port a global IPv6 address)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ipvsadm;
    use crate::control::state::ControlState;
    use crate::control::unsupported::test_override::AllowIpv6;

    const PORT: &str =
        "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n";
    const TUN6: &str = "[[service]]\nproto = \"tcp\"\nvip = \"2001:2::64\"\nport = 80\n\
                        [[service.real_server]]\naddress = \"2001:2:0:1::11\"\nmethod = \"tun\"\n";

    fn config(text: &str) -> Config {
        Config::from_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn picks_configured_then_on_link_then_first_global() {
        let with = |addrs: &str, lb: &str| {
            tun_source6(&config(&format!("{PORT}addresses = [{addrs}]\n{lb}{TUN6}")))
        };
        let a = |s: &str| Some(s.parse::<Ipv6Addr>().unwrap());
        // link-local and IPv4 addresses never qualify
        assert_eq!(with("\"fe80::1/64\", \"198.18.0.1/24\"", ""), None);
        assert_eq!(
            with("\"fe80::1/64\", \"2001:2::1/64\", \"2001:2:0:1::1/64\"", ""),
            a("2001:2:0:1::1"),
            "the address on the server's prefix"
        );
        assert_eq!(
            with("\"2001:2::1/64\"", ""),
            a("2001:2::1"),
            "else the first global one"
        );
        // of the last port that has one
        let two = format!(
            "{PORT}addresses = [\"2001:2:0:7::1/64\", \"2001:2:0:7::2/64\"]\n\
             [[port]]\nname = \"lan1\"\ndevice = \"net_tap1\"\n\
             addresses = [\"fe80::1/64\", \"2001:2:0:8::1/64\", \"2001:2:0:8::2/64\"]\n\
             [[port]]\nname = \"lan2\"\ndevice = \"net_tap2\"\naddresses = [\"198.18.0.1/24\"]\n"
        );
        assert_eq!(tun_source6(&config(&two)), a("2001:2:0:8::1"));
        assert_eq!(
            with(
                "\"2001:2::1/64\"",
                "[lb]\ntun_source6 = \"2001:2:0:9::1\"\n"
            ),
            a("2001:2:0:9::1"),
            "the configured one first"
        );
    }

    #[test]
    fn ipv6_tun_server_refused_without_a_source() {
        let _v6 = AllowIpv6::new();
        // at start (and --check, reload: the same ControlState::reload)
        let e = ControlState::from_config(&config(&format!("{PORT}{TUN6}"))).unwrap_err();
        assert!(
            e.contains("IPv6 TUN real server 2001:2:0:1::11 refused: no IPv6 tunnel source"),
            "{e}"
        );
        // with an IPv4 address only, IPv6 NAT is fine, IPv6 TUN is not,
        // also when added by vsadm later
        let nat6 = TUN6.replace("\"tun\"", "\"nat\"");
        let mut s = ControlState::from_config(&config(&format!(
            "{PORT}addresses = [\"198.18.0.1/24\"]\n{nat6}"
        )))
        .unwrap();
        let add = |s: &mut ControlState, line: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            s.apply(&ipvsadm::parse(&words).unwrap())
        };
        let e = add(&mut s, "-a -t [2001:2::64]:80 -r [2001:2:0:1::12]:80 -i").unwrap_err();
        assert!(e.contains("no IPv6 tunnel source"), "{e}");
        add(&mut s, "-a -t [2001:2::64]:80 -r [2001:2:0:1::12]:80 -m").unwrap();
        // and accepted once the configuration gives a source
        let cfg = config(&format!(
            "{PORT}addresses = [\"198.18.0.1/24\"]\n[lb]\ntun_source6 = \"2001:2::1\"\n{TUN6}"
        ));
        ControlState::from_config(&cfg).unwrap();
    }
}
