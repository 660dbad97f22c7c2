//! `real_server` blocks and their health checkers (`TCP_CHECK`, `HTTP_GET`,
//! `MISC_CHECK`, ...) mapped to real servers.

use std::net::IpAddr;

use super::parse::Node;

use super::{KaError, Mapper};
use crate::control::config::health::{
    command, digest, dns_name, dns_type, hex_bytes, hex_string, http_protocol, ifname,
    status_codes, validate_checker, virtualhost, MAX_UDP_PAYLOAD,
};
use crate::control::config::{RealServerConf, ServiceKey};
use crate::health::spec::{
    CheckKind, CheckerSpec, DnsCheck, DnsType, HttpCheck, MiscCheck, ServerHealth, UdpCheck,
    UrlCheck,
};
use crate::lb::types::{AddrFamily, FwdMethod};

impl Mapper<'_> {
    pub(super) fn real_server(
        &mut self,
        n: &Node,
        key: &ServiceKey,
        vs_method: FwdMethod,
        local_addresses: &[IpAddr],
        synproxy: bool,
    ) -> Result<Option<RealServerConf>, KaError> {
        // keepalived takes a real_server without a block (no options)
        let body = n.block.as_deref().unwrap_or(&[]);
        let (address, port) = match n.args.as_slice() {
            [a] => (self.ip(n, a)?, key.port()),
            [a, p] => (self.ip(n, a)?, self.port(n, p)?),
            _ => return Err(self.err(n, "real_server takes an address and an optional port")),
        };
        let mut weight = 1u32;
        let mut method = vs_method;
        let mut upper = 0u32;
        let mut lower = 0u32;
        let mut health = ServerHealth::default();
        for c in body {
            if self.timing_keyword(c, &mut health.timing)? {
                continue;
            }
            let kw = c.keyword.as_str();
            match kw {
                "weight" => weight = self.int(c, 0, 65535)? as u32,
                "lvs_method" | "lb_kind" => method = self.method(c)?,
                "notify_up" => health.notify_up = Some(self.script(c)?),
                "notify_down" => health.notify_down = Some(self.script(c)?),
                "uthreshold" => upper = self.int(c, 0, u64::from(u32::MAX))? as u32,
                "lthreshold" => lower = self.int(c, 0, u64::from(u32::MAX))? as u32,
                "inhibit_on_failure" => health.inhibit_on_failure = Some(self.flag(c)?),
                "virtualhost" => {
                    health.virtualhost = Some(virtualhost(self.one(c)?).map_err(|m| self.err(c, m))?)
                }
                "smtp_alert" | "snmp_name" => self.no_block(c)?,
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" | "DNS_CHECK" | "UDP_CHECK"
                | "PING_CHECK" => {
                    if let Some(spec) = self.checker(c)? {
                        health.checkers.push(spec);
                    }
                }
                "SMTP_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    return Err(self.err(c, format!("{kw} is not supported by vsd (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, DNS_CHECK, UDP_CHECK and PING_CHECK are)")))
                }
                _ => self.warn(c, format!("unknown keyword '{kw}' in real_server ignored")),
            }
        }
        // NAT64 (DPVS): FNAT from an IPv6 virtual server to IPv4 servers
        let nat64 =
            method == FwdMethod::FullNat && key.family() == AddrFamily::Inet6 && address.is_ipv4();
        if AddrFamily::of(address) != key.family() && method != FwdMethod::Tunnel && !nat64 {
            self.correct(
                n,
                &format!("address family of virtual server and real server {address} don't match - skipping real server"),
            );
            return Ok(None);
        }
        // keepalived's port rules: NAT (and FNAT) keep the real server's
        // port (the virtual server's when none); DR and TUN forward to the
        // virtual server's port (none for fwmark) while the checkers still
        // connect to the port written
        let forward_port = match (method.sees_replies(), key) {
            (true, ServiceKey::Addr { port: vport, .. }) if port == 0 => *vport,
            (true, _) => port,
            (false, ServiceKey::Fwmark { .. }) => {
                if port != 0 {
                    self.correct(n, &format!("fwmark virtual server, real server {address} has port specified - clearing"));
                }
                0
            }
            (false, ServiceKey::Addr { port: vport, .. }) => {
                if port != 0 && port != *vport {
                    self.correct(n, &format!("virtual server and real server {address} ports don't match - resetting"));
                }
                *vport
            }
        };
        if forward_port != port && port != 0 {
            for c in &mut health.checkers {
                if !matches!(c.kind, CheckKind::Misc(_) | CheckKind::Ping) {
                    c.connect_port.get_or_insert(port);
                }
            }
        }
        let port = forward_port;
        if lower > upper {
            return Err(self.err(
                n,
                format!("lthreshold {lower} is higher than uthreshold {upper}"),
            ));
        }
        if method == FwdMethod::FullNat
            && !local_addresses
                .iter()
                .any(|l| AddrFamily::of(*l) == AddrFamily::of(address))
        {
            return Err(self.err(n, format!("FNAT to {address} needs local addresses of its family: laddr_group_name NAME and local_address_group NAME {{ ... }}")));
        }
        if synproxy && !method.sees_replies() {
            return Err(self.err(
                n,
                "syn_proxy needs NAT or FNAT real servers (replies bypass the director)",
            ));
        }
        Ok(Some(RealServerConf {
            address,
            port,
            weight,
            method,
            upper_threshold: upper,
            lower_threshold: lower,
            health,
        }))
    }

    /// A checker block; `None` for one keepalived drops with a warning.
    fn checker(&mut self, n: &Node) -> Result<Option<CheckerSpec>, KaError> {
        let body = self.block(n)?;
        if !n.args.is_empty() {
            return Err(self.err(n, format!("{} takes no value", n.keyword)));
        }
        let kw = n.keyword.as_str();
        let mut spec = CheckerSpec::new(match kw {
            "HTTP_GET" => CheckKind::Http(HttpCheck::default()),
            "SSL_GET" => CheckKind::Ssl(HttpCheck::default()),
            "MISC_CHECK" => CheckKind::Misc(MiscCheck {
                path: String::new(),
                timeout: None,
                dynamic: false,
                user: None,
                group: None,
            }),
            "DNS_CHECK" => CheckKind::Dns(DnsCheck {
                qtype: DnsType::Soa,
                name: ".".into(),
            }),
            "UDP_CHECK" => CheckKind::Udp(UdpCheck {
                payload: None,
                require_reply: None,
                min_reply_length: 0,
                max_reply_length: 255,
            }),
            "PING_CHECK" => CheckKind::Ping,
            _ => CheckKind::Tcp,
        });
        spec.log_all_failures = self.log_all_failures;
        let is_misc = kw == "MISC_CHECK";
        for c in body {
            if self.timing_keyword(c, &mut spec.timing)? {
                continue;
            }
            let ck = c.keyword.as_str();
            let connection_option = matches!(
                ck,
                "connect_ip" | "connect_port" | "bindto" | "bind_port" | "bind_if" | "fwmark"
            );
            // keepalived accepts these and has no use for them either
            if (connection_option && is_misc)
                || (matches!(ck, "connect_port" | "bind_port") && kw == "PING_CHECK")
            {
                self.warn(c, format!("{ck} does not apply to {kw}: ignored"));
                continue;
            }
            match ck {
                "connect_ip" => spec.connect_ip = Some(self.ip(c, self.one(c)?)?),
                "connect_port" => spec.connect_port = Some(self.int(c, 1, 65535)? as u16),
                "bindto" => spec.bindto = Some(self.ip(c, self.one(c)?)?),
                "bind_port" => spec.bind_port = Some(self.int(c, 1, 65535)? as u16),
                "bind_if" => spec.bind_if = Some(ifname(self.one(c)?).map_err(|m| self.err(c, m))?),
                "fwmark" => spec.fwmark = Some(self.int(c, 1, u64::from(u32::MAX))? as u32),
                "log_all_failures" => spec.log_all_failures = self.flag(c)?,
                _ => {
                    let known = self.checker_option(c, &mut spec.kind)?;
                    if !known {
                        self.warn(c, format!("unknown keyword '{ck}' in {kw} ignored"));
                    }
                }
            }
        }
        if let CheckKind::Http(h) | CheckKind::Ssl(h) = &spec.kind {
            if h.urls.is_empty() {
                // keepalived drops such a checker with this warning
                self.warn(n, format!("{kw} checker has no urls specified - ignoring"));
                return Ok(None);
            }
        }
        validate_checker(&spec).map_err(|(_, m)| self.err(n, m))?;
        Ok(Some(spec))
    }

    /// A checker type's own option; false when `n` is none of them.
    fn checker_option(&mut self, n: &Node, kind: &mut CheckKind) -> Result<bool, KaError> {
        let kw = n.keyword.as_str();
        match kind {
            CheckKind::Http(h) | CheckKind::Ssl(h) => match kw {
                "url" => {
                    let u = self.url(n)?;
                    h.urls.push(u);
                }
                "virtualhost" => {
                    h.virtualhost = Some(virtualhost(self.one(n)?).map_err(|m| self.err(n, m))?)
                }
                "http_protocol" => {
                    h.protocol = http_protocol(self.one(n)?).map_err(|m| self.err(n, m))?
                }
                "fast_recovery" => h.fast_recovery = self.flag(n)?,
                "enable_sni" => h.enable_sni = self.flag(n)?,
                _ => return Ok(false),
            },
            CheckKind::Misc(m) => match kw {
                "misc_path" => m.path = command(self.one(n)?).map_err(|e| self.err(n, e))?,
                "misc_timeout" => m.timeout = Some(self.timer(n, false)?),
                "misc_dynamic" => m.dynamic = self.flag(n)?,
                "user" => {
                    self.no_block(n)?;
                    match n.args.as_slice() {
                        [u] => m.user = Some(u.clone()),
                        [u, g] => {
                            m.user = Some(u.clone());
                            m.group = Some(g.clone());
                        }
                        _ => return Err(self.err(n, "user takes a user and an optional group")),
                    }
                }
                _ => return Ok(false),
            },
            CheckKind::Dns(d) => match kw {
                "type" => d.qtype = dns_type(self.one(n)?).map_err(|m| self.err(n, m))?,
                "name" => d.name = dns_name(self.one(n)?).map_err(|m| self.err(n, m))?,
                _ => return Ok(false),
            },
            CheckKind::Udp(u) => match kw {
                "payload" => {
                    self.no_block(n)?;
                    u.payload = Some(hex_bytes(&n.args.join(" ")).map_err(|m| self.err(n, m))?);
                }
                "require_reply" => {
                    self.no_block(n)?;
                    u.require_reply =
                        Some(hex_string(&n.args.join(" "), true).map_err(|m| self.err(n, m))?);
                }
                "min_reply_length" => {
                    u.min_reply_length = self.int(n, 0, MAX_UDP_PAYLOAD as u64)? as u32
                }
                "max_reply_length" => {
                    u.max_reply_length = self.int(n, 0, MAX_UDP_PAYLOAD as u64)? as u32
                }
                _ => return Ok(false),
            },
            CheckKind::Tcp | CheckKind::Ping => return Ok(false),
        }
        Ok(true)
    }

    fn url(&mut self, n: &Node) -> Result<UrlCheck, KaError> {
        let body = self.block(n)?;
        if !n.args.is_empty() {
            return Err(self.err(n, "url takes no value"));
        }
        let mut url = UrlCheck {
            path: String::new(),
            status: Vec::new(),
            digest: None,
            virtualhost: None,
        };
        for c in body {
            let kw = c.keyword.as_str();
            match kw {
                "path" => url.path = self.one(c)?.to_string(),
                "digest" => url.digest = Some(digest(self.one(c)?).map_err(|m| self.err(c, m))?),
                "status_code" => {
                    self.no_block(c)?;
                    url.status = status_codes(c.args.iter().map(String::as_str))
                        .map_err(|m| self.err(c, m))?;
                }
                "virtualhost" => {
                    url.virtualhost = Some(virtualhost(self.one(c)?).map_err(|m| self.err(c, m))?)
                }
                "regex" | "regex_no_match" | "regex_options" | "regex_stack"
                | "regex_min_offset" | "regex_max_offset" => {
                    return Err(self.err(
                        c,
                        format!("{kw} is not supported by vsd (status_code and digest are)"),
                    ))
                }
                _ => self.warn(c, format!("unknown keyword '{kw}' in url ignored")),
            }
        }
        if url.path.is_empty() {
            return Err(self.err(n, "url needs a path"));
        }
        Ok(url)
    }
}
