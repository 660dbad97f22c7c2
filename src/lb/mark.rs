//! The built-in packet classifier that sets the firewall mark.
//!
//! What: Linux IPVS matches fwmark services (`ipvsadm -A -f MARK`) on the
//! mark netfilter put on the packet, typically with
//! `iptables -t mangle -A PREROUTING -d VIP -p tcp --dport 80:90 -j MARK
//! --set-mark 1`. vsd has no netfilter, so it carries that rule set itself:
//! an ordered list of [`MarkRule`]s (destination prefix, protocol,
//! destination port range → mark); the first rule that matches gives the
//! mark, as iptables' first `-j MARK` in PREROUTING would (later MARK
//! targets overwrite in iptables, but operators write disjoint rules; vsd
//! documents first match).
//!
//! Where: the rules come from the TOML configuration (`[[mark]]`) and from
//! vsadm (`--add-mark`, `--del-mark`, `-L --marks`, saved by `-S`), live in
//! the control state and are published to the workers with the service
//! snapshot; [`crate::lb::director::CoreLb`] consults them only for a
//! packet that starts a connection, and only while a fwmark service exists,
//! so established flows and configurations without fwmark services pay
//! nothing. The lookup is a linear scan of a small array: no allocation.
//!
//! Families: a rule's destination is an IPv4 or an IPv6 prefix and matches
//! packets of its family only (iptables and ip6tables keep separate rule
//! sets); a rule without a destination is `0.0.0.0/0`, any IPv4 packet
//! (`--dst ::/0` marks any IPv6 packet). A mark picks the fwmark service of
//! the packet's family (`-f MARK` or `-f MARK -6`).
//!
//! Failure modes: a rule that matches no fwmark service gives a mark no
//! service has; the packet then falls back to the `-t`/`-u` service lookup,
//! as in the kernel (`ip_vs_service_find`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most rules a configuration may hold (the lookup is linear).
pub const MAX_MARK_RULES: usize = 1024;

/// One `--set-mark` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkRule {
    /// Destination network and prefix length (`0.0.0.0/0`: any IPv4
    /// packet, `::/0`: any IPv6 packet).
    pub dst: (IpAddr, u8),
    /// IP protocol (6 TCP, 17 UDP); `None`: any.
    pub proto: Option<u8>,
    /// Destination port range, inclusive (TCP/UDP only); `None`: any.
    pub dport: Option<(u16, u16)>,
    /// The mark set (non-zero).
    pub mark: u32,
}

fn mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The longest prefix of `a`'s family (a host route).
pub fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

impl MarkRule {
    /// A rule; checks the prefix, the port range and the mark, and
    /// normalises the destination to its network address.
    pub fn new<A: Into<IpAddr>>(
        dst: (A, u8),
        proto: Option<u8>,
        dport: Option<(u16, u16)>,
        mark: u32,
    ) -> Result<Self, String> {
        let dst: (IpAddr, u8) = (dst.0.into(), dst.1);
        if dst.1 > host_prefix(dst.0) {
            return Err(format!("invalid prefix length /{}", dst.1));
        }
        if mark == 0 {
            return Err("invalid mark 0: marks start at 1".into());
        }
        if let Some((lo, hi)) = dport {
            if lo > hi {
                return Err(format!("invalid port range {lo}:{hi}"));
            }
            if proto.is_none() {
                return Err("a destination port needs a protocol (tcp or udp)".into());
            }
        }
        let net = match dst.0 {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask(dst.1))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask6(dst.1))),
        };
        Ok(MarkRule {
            dst: (net, dst.1),
            proto,
            dport,
            mark,
        })
    }

    /// Whether a packet to `dst` (`proto`, destination port `dport`, 0 for
    /// protocols without ports) matches: same family, inside the prefix.
    #[inline]
    pub fn matches(&self, dst: IpAddr, proto: u8, dport: u16) -> bool {
        let inside = match (self.dst.0, dst) {
            (IpAddr::V4(net), IpAddr::V4(d)) => u32::from(d) & mask(self.dst.1) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(d)) => {
                u128::from(d) & mask6(self.dst.1) == u128::from(net)
            }
            _ => false,
        };
        inside
            && self.proto.is_none_or(|p| p == proto)
            && self.dport.is_none_or(|(lo, hi)| (lo..=hi).contains(&dport))
    }

    /// Parses `ADDR[/LEN]`, IPv4 or IPv6.
    pub fn parse_dst(text: &str) -> Result<(IpAddr, u8), String> {
        let bad = || format!("invalid destination `{text}'");
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let a: IpAddr = a.parse().map_err(|_| bad())?;
        let len = len.unwrap_or(host_prefix(a));
        if len > host_prefix(a) {
            return Err(bad());
        }
        Ok((a, len))
    }

    /// Parses `tcp`, `udp` (or 6, 17).
    pub fn parse_proto(text: &str) -> Result<u8, String> {
        match text {
            "tcp" | "6" => Ok(6),
            "udp" | "17" => Ok(17),
            _ => Err(format!("invalid protocol `{text}': tcp or udp")),
        }
    }

    /// Parses `PORT` or `FIRST:LAST` (iptables' `--dport` syntax).
    pub fn parse_ports(text: &str) -> Result<(u16, u16), String> {
        let bad = || format!("invalid port range `{text}'");
        let (lo, hi) = match text.split_once(':') {
            Some((a, b)) => (a, b),
            None => (text, text),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        Ok((lo, hi))
    }
}

/// The rule as vsadm takes it (and `-S` writes it).
impl fmt::Display for MarkRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--add-mark --dst {}/{}", self.dst.0, self.dst.1)?;
        match self.proto {
            Some(6) => write!(f, " --proto tcp")?,
            Some(17) => write!(f, " --proto udp")?,
            Some(p) => write!(f, " --proto {p}")?,
            None => {}
        }
        match self.dport {
            Some((lo, hi)) if lo == hi => write!(f, " --dport {lo}")?,
            Some((lo, hi)) => write!(f, " --dport {lo}:{hi}")?,
            None => {}
        }
        write!(f, " --set-mark {}", self.mark)
    }
}

/// The ordered rule set the workers consult.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkRules {
    rules: Vec<MarkRule>,
}

impl MarkRules {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rules, in match order.
    pub fn rules(&self) -> &[MarkRule] {
        &self.rules
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Append a rule (`--add-mark`). An identical rule is refused.
    pub fn add(&mut self, r: MarkRule) -> Result<(), String> {
        if self.rules.contains(&r) {
            return Err("Mark rule already exists".into());
        }
        if self.rules.len() >= MAX_MARK_RULES {
            return Err(format!("at most {MAX_MARK_RULES} mark rules"));
        }
        self.rules.push(r);
        Ok(())
    }

    /// Remove an identical rule (`--del-mark`).
    pub fn remove(&mut self, r: &MarkRule) -> Result<(), String> {
        let Some(i) = self.rules.iter().position(|x| x == r) else {
            return Err("No such mark rule".into());
        };
        self.rules.remove(i);
        Ok(())
    }

    /// Remove every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The mark of a packet: the first matching rule's, else 0 (no mark).
    #[inline]
    pub fn mark_of(&self, dst: impl Into<IpAddr>, proto: u8, dport: u16) -> u32 {
        let dst = dst.into();
        self.rules
            .iter()
            .find(|r| r.matches(dst, proto, dport))
            .map_or(0, |r| r.mark)
    }

    /// The rules one per line as vsadm commands (`-S`, `-L --marks`).
    pub fn render(&self) -> String {
        self.rules.iter().map(|r| format!("{r}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn first_match_like_iptables_mangle() {
        let mut m = MarkRules::new();
        // -d 198.18.0.100 -p tcp --dport 80:90 -j MARK --set-mark 1
        m.add(MarkRule::new((ip("198.18.0.100"), 32), Some(6), Some((80, 90)), 1).unwrap())
            .unwrap();
        // -d 198.18.0.0/24 -p udp -j MARK --set-mark 2
        m.add(MarkRule::new((ip("198.18.0.0"), 24), Some(17), None, 2).unwrap())
            .unwrap();
        // -d 198.18.0.0/16 -j MARK --set-mark 3
        m.add(MarkRule::new((ip("198.18.0.0"), 16), None, None, 3).unwrap())
            .unwrap();
        let v = ip("198.18.0.100");
        assert_eq!(m.mark_of(v, 6, 80), 1);
        assert_eq!(m.mark_of(v, 6, 90), 1);
        assert_eq!(m.mark_of(v, 6, 91), 3, "out of range: falls through");
        assert_eq!(m.mark_of(v, 6, 79), 3);
        assert_eq!(m.mark_of(v, 17, 80), 2, "protocol differs");
        assert_eq!(m.mark_of(ip("198.18.0.7"), 17, 53), 2);
        assert_eq!(m.mark_of(ip("198.18.9.7"), 17, 53), 3);
        assert_eq!(m.mark_of(ip("198.19.0.100"), 6, 80), 0, "no rule: no mark");
        assert_eq!(MarkRules::new().mark_of(v, 6, 80), 0);
    }

    #[test]
    fn rules_check_and_normalise() {
        let r = MarkRule::new((ip("198.18.0.77"), 24), Some(6), Some((80, 80)), 5).unwrap();
        assert_eq!(r.dst, (ip("198.18.0.0").into(), 24));
        assert_eq!(
            r.to_string(),
            "--add-mark --dst 198.18.0.0/24 --proto tcp --dport 80 --set-mark 5"
        );
        let any = MarkRule::new((ip("0.0.0.0"), 0), None, None, 9).unwrap();
        assert_eq!(any.to_string(), "--add-mark --dst 0.0.0.0/0 --set-mark 9");
        assert!(any.matches(Ipv4Addr::BROADCAST.into(), 1, 0));
        assert!(!any.matches(Ipv6Addr::LOCALHOST.into(), 1, 0), "IPv4 only");
        assert!(MarkRule::new((ip("1.2.3.4"), 32), None, None, 0).is_err());
        assert!(MarkRule::new((ip("1.2.3.4"), 33), None, None, 1).is_err());
        assert!(MarkRule::new((ip("1.2.3.4"), 32), Some(6), Some((9, 8)), 1).is_err());
        assert!(MarkRule::new((ip("1.2.3.4"), 32), None, Some((8, 9)), 1).is_err());
        assert_eq!(MarkRule::parse_ports("80:90"), Ok((80, 90)));
        assert_eq!(MarkRule::parse_ports("443"), Ok((443, 443)));
        assert!(MarkRule::parse_ports("90:80").is_err());
        assert!(MarkRule::parse_ports("x").is_err());
        assert_eq!(
            MarkRule::parse_dst("198.18.0.1"),
            Ok((ip("198.18.0.1").into(), 32))
        );
        assert_eq!(
            MarkRule::parse_dst("198.18.0.0/15"),
            Ok((ip("198.18.0.0").into(), 15))
        );
        assert_eq!(
            MarkRule::parse_dst("2001:db8::1"),
            Ok(("2001:db8::1".parse().unwrap(), 128))
        );
        assert!(MarkRule::parse_dst("2001:db8::/129").is_err());
        assert!(MarkRule::parse_dst("198.18.0.0/40").is_err());
        assert!(MarkRule::parse_dst("[2001:db8::1]").is_err());
        assert_eq!(MarkRule::parse_proto("udp"), Ok(17));
        assert!(MarkRule::parse_proto("sctp").is_err());
    }

    #[test]
    fn ipv6_rules_match_ipv6_packets_only() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let mut m = MarkRules::new();
        let r = MarkRule::new((v6("2001:2::77"), 64), Some(6), Some((80, 81)), 6).unwrap();
        assert_eq!(
            r.to_string(),
            "--add-mark --dst 2001:2::/64 --proto tcp --dport 80:81 --set-mark 6"
        );
        m.add(r).unwrap();
        m.add(MarkRule::new((v6("::"), 0), None, None, 7).unwrap())
            .unwrap();
        m.add(MarkRule::new((ip("0.0.0.0"), 0), None, None, 4).unwrap())
            .unwrap();
        assert_eq!(m.mark_of(v6("2001:2::64"), 6, 81), 6);
        assert_eq!(m.mark_of(v6("2001:2:1::64"), 6, 81), 7, "outside the /64");
        assert_eq!(m.mark_of(v6("2001:2::64"), 17, 81), 7);
        assert_eq!(
            m.mark_of(ip("198.18.0.100"), 6, 81),
            4,
            "IPv4: the IPv4 rule"
        );
        assert!(MarkRule::new((v6("2001:2::"), 129), None, None, 1).is_err());
    }

    #[test]
    fn add_remove_duplicates() {
        let mut m = MarkRules::new();
        let r = MarkRule::new((ip("198.18.0.100"), 32), Some(6), Some((80, 90)), 1).unwrap();
        m.add(r).unwrap();
        assert_eq!(m.add(r).unwrap_err(), "Mark rule already exists");
        assert_eq!(
            m.render(),
            "--add-mark --dst 198.18.0.100/32 --proto tcp --dport 80:90 --set-mark 1\n"
        );
        m.remove(&r).unwrap();
        assert_eq!(m.remove(&r).unwrap_err(), "No such mark rule");
        assert!(m.is_empty());
    }

    /// A fwmark service with two NAT servers, persistence as asked, and a
    /// director with the given rules.
    fn director(rules: &[MarkRule], persistence: Option<u32>) -> crate::lb::director::CoreLb {
        use crate::lb::director::{CoreLb, CoreLbConfig};
        use crate::lb::load::GlobalLoad;
        use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
        use crate::lb::types::{AddrFamily, FwdMethod};
        use std::sync::Arc;
        let mut t = ServiceTable::new(16);
        let key = ServiceKey::fwmark(1, AddrFamily::Inet);
        let mut cfg = ServiceConfig::with_scheduler("rr");
        cfg.persistence = persistence;
        t.add_service(key, cfg).unwrap();
        for rs in ["198.18.1.11", "198.18.1.12"] {
            t.add_dest(
                &key,
                RealServerConfig::new(IpAddr::V4(ip(rs)), 0, FwdMethod::Masq),
            )
            .unwrap();
        }
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let lb_cfg = CoreLbConfig {
            hash_seed: Some(3),
            conn_capacity: 256,
            ..CoreLbConfig::default()
        };
        let mut lb = CoreLb::new(lb_cfg, t.snapshot(), global, None, 0).unwrap();
        let mut m = MarkRules::new();
        for r in rules {
            m.add(*r).unwrap();
        }
        lb.set_marks(Arc::new(m));
        lb
    }

    fn syn(sport: u16, dport: u16) -> crate::lb::packet::VecPacket {
        use crate::wire::{MacAddr, PacketBuilder};
        crate::lb::packet::VecPacket::new(
            &PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
                .ipv4(ip("198.19.0.7"), ip("198.18.0.100"))
                .ttl(64)
                .tcp(sport, dport, 0x02)
                .build(),
        )
    }

    #[test]
    fn fwmark_service_forwards_what_the_rules_mark() {
        use crate::lb::director::FwdVerdict;
        use crate::lb::packet::PacketBuf;
        let rule = MarkRule::new((ip("198.18.0.100"), 32), Some(6), Some((80, 90)), 1).unwrap();
        // without a rule nothing reaches the fwmark service (today's
        // behaviour was this for every packet)
        let mut lb = director(&[], None);
        assert_eq!(
            lb.process(&mut syn(40000, 80), None, 0),
            FwdVerdict::NotService
        );
        let mut lb = director(&[rule], None);
        let mut p = syn(40000, 85);
        let v = lb.process(&mut p, None, 0);
        let FwdVerdict::Forward {
            next_hop: IpAddr::V4(next_hop),
        } = v
        else {
            panic!("{v:?}");
        };
        // NAT to the server, keeping the packet's port (server port 0)
        assert_eq!(&p.data()[30..34], &next_hop.octets());
        assert_eq!(&p.data()[36..38], &85u16.to_be_bytes());
        assert_eq!(
            lb.process(&mut syn(40000, 91), None, 0),
            FwdVerdict::NotService,
            "port outside the rule's range"
        );
        assert_eq!(lb.conns().len(), 1);
    }

    #[test]
    fn ipv6_fwmark_service_forwards_what_ipv6_rules_mark() {
        use crate::lb::director::{CoreLb, CoreLbConfig, FwdVerdict};
        use crate::lb::load::GlobalLoad;
        use crate::lb::packet::PacketBuf;
        use crate::lb::service::{RealServerConfig, ServiceConfig, ServiceKey, ServiceTable};
        use crate::lb::types::{AddrFamily, FwdMethod};
        use crate::wire::{MacAddr, PacketBuilder};
        use std::sync::Arc;
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let mut t = ServiceTable::new(16);
        // the same mark names an IPv4 and an IPv6 service: the packet's
        // family picks
        for (af, rs) in [
            (AddrFamily::Inet6, IpAddr::V6(v6("2001:2:1::11"))),
            (AddrFamily::Inet, IpAddr::V4(ip("198.18.1.11"))),
        ] {
            let key = ServiceKey::fwmark(6, af);
            t.add_service(key, ServiceConfig::with_scheduler("rr"))
                .unwrap();
            t.add_dest(&key, RealServerConfig::new(rs, 0, FwdMethod::Masq))
                .unwrap();
        }
        let global = Arc::new(GlobalLoad::new(t.dest_capacity()));
        let cfg = CoreLbConfig {
            hash_seed: Some(3),
            conn_capacity: 256,
            ..CoreLbConfig::default()
        };
        let mut lb = CoreLb::new(cfg, t.snapshot(), global, None, 0).unwrap();
        let mut m = MarkRules::new();
        m.add(MarkRule::new((v6("2001:2::"), 64), Some(6), Some((80, 90)), 6).unwrap())
            .unwrap();
        lb.set_marks(Arc::new(m));
        let syn6 = |dst: &str, dport: u16| {
            crate::lb::packet::VecPacket::new(
                &PacketBuilder::ethernet(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
                    .ipv6(v6("2001:2::2"), v6(dst))
                    .ttl(64)
                    .tcp(40000, dport, 0x02)
                    .build(),
            )
        };
        let mut p = syn6("2001:2::64", 85);
        assert_eq!(
            lb.process(&mut p, None, 0),
            FwdVerdict::Forward {
                next_hop: IpAddr::V6(v6("2001:2:1::11"))
            }
        );
        // NAT to the IPv6 server (destination at 14 + 24), the port kept
        assert_eq!(&p.data()[38..54], &v6("2001:2:1::11").octets());
        assert_eq!(&p.data()[56..58], &85u16.to_be_bytes());
        assert_eq!(
            lb.process(&mut syn6("2001:2::64", 91), None, 0),
            FwdVerdict::NotService,
            "port outside the rule's range"
        );
        assert_eq!(
            lb.process(&mut syn6("2001:2:9::64", 85), None, 0),
            FwdVerdict::NotService,
            "outside the rule's prefix"
        );
        // an IPv4 packet is not marked by the IPv6 rule
        assert_eq!(
            lb.process(&mut syn(40001, 85), None, 0),
            FwdVerdict::NotService
        );
        assert_eq!(lb.conns6().len(), 1);
    }

    #[test]
    fn fwmark_persistence_uses_port_zero_templates() {
        use crate::lb::director::FwdVerdict;
        let rule = MarkRule::new((ip("198.18.0.0"), 24), Some(6), None, 1).unwrap();
        let mut lb = director(&[rule], Some(300));
        let mut hops = Vec::new();
        // different destination ports and client ports: one template
        // (client, mark 1, port 0), so rr never moves the client
        for (sport, dport) in [(40000, 80), (40001, 443), (40002, 8080), (40003, 22)] {
            match lb.process(&mut syn(sport, dport), None, 0) {
                FwdVerdict::Forward {
                    next_hop: IpAddr::V4(next_hop),
                } => hops.push(next_hop),
                v => panic!("{v:?}"),
            }
        }
        assert!(hops.iter().all(|h| *h == hops[0]), "{hops:?}");
        let templates: Vec<_> = lb
            .conns()
            .iter()
            .filter(|(_, c)| c.is_template())
            .map(|(_, c)| (c.proto_name(), c.virt().port))
            .collect();
        assert_eq!(templates, vec![("IP", 0)]);
        let conns = lb.conns().iter().filter(|(_, c)| !c.is_template()).count();
        assert_eq!(conns, 4, "each SYN has its connection");
    }
}
