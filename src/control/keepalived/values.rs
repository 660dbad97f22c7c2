//! The mapper's readers: one keyword's value (numbers, ports, addresses,
//! timers, flags, scripts, forwarding methods) checked, with its place for errors.

use std::net::IpAddr;
use std::time::Duration;

use super::lexer::Loc;
use super::parse::Node;

use super::{KaError, Mapper, Place};
use crate::control::config::health::{command, timer};
use crate::health::spec::Script;
use crate::lb::types::FwdMethod;

impl Mapper<'_> {
    pub(super) fn place(&self, loc: Loc) -> Place {
        Place {
            file: self.lx.files.get(loc.file).cloned().unwrap_or_default(),
            line: loc.line,
        }
    }

    pub(super) fn err(&self, n: &Node, message: impl Into<String>) -> KaError {
        self.lx.error(n.loc, message)
    }

    pub(super) fn warn(&mut self, n: &Node, message: String) {
        let w = format!(
            "{}: {message} (keepalived ignores it too)",
            self.place(n.loc)
        );
        self.warnings.push(w);
    }

    pub(super) fn no_block(&self, n: &Node) -> Result<(), KaError> {
        if n.block.is_some() {
            return Err(self.err(n, format!("{} takes no {{ }} block", n.keyword)));
        }
        Ok(())
    }

    pub(super) fn block<'n>(&self, n: &'n Node) -> Result<&'n [Node], KaError> {
        n.block
            .as_deref()
            .ok_or_else(|| self.err(n, format!("{} needs a {{ }} block", n.keyword)))
    }

    pub(super) fn no_args(&self, n: &Node) -> Result<(), KaError> {
        self.no_block(n)?;
        if !n.args.is_empty() {
            return Err(self.err(n, format!("{} takes no value", n.keyword)));
        }
        Ok(())
    }

    pub(super) fn one<'n>(&self, n: &'n Node) -> Result<&'n str, KaError> {
        self.no_block(n)?;
        match n.args.as_slice() {
            [a] => Ok(a),
            [] => Err(self.err(n, format!("{} needs a value", n.keyword))),
            _ => Err(self.err(
                n,
                format!(
                    "{} takes one value, got {} ({}); quote a value with spaces",
                    n.keyword,
                    n.args.len(),
                    n.args.join(" ")
                ),
            )),
        }
    }

    pub(super) fn int(&self, n: &Node, lo: u64, hi: u64) -> Result<u64, KaError> {
        let v = self.one(n)?;
        match v.parse::<u64>() {
            Ok(x) if (lo..=hi).contains(&x) => Ok(x),
            _ => Err(self.err(
                n,
                format!("{} {v:?}: expected an integer {lo}..={hi}", n.keyword),
            )),
        }
    }

    pub(super) fn port(&self, n: &Node, text: &str) -> Result<u16, KaError> {
        text.parse::<u16>()
            .map_err(|_| self.err(n, format!("invalid port {text:?}: expected 0..=65535")))
    }

    pub(super) fn ip(&self, n: &Node, text: &str) -> Result<IpAddr, KaError> {
        text.parse::<IpAddr>()
            .map_err(|_| self.err(n, format!("invalid address {text:?}: not an IP address")))
    }

    pub(super) fn timer(&self, n: &Node, zero_ok: bool) -> Result<Duration, KaError> {
        let v = self.one(n)?;
        let secs: f64 = v
            .parse()
            .map_err(|_| self.err(n, format!("{} {v:?}: expected seconds", n.keyword)))?;
        timer(secs, zero_ok).map_err(|m| self.err(n, format!("{}: {m}", n.keyword)))
    }

    /// `KEYWORD [BOOL]`: no value means true.
    pub(super) fn flag(&self, n: &Node) -> Result<bool, KaError> {
        self.no_block(n)?;
        match n.args.as_slice() {
            [] => Ok(true),
            [v] => match v.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => Ok(true),
                "false" | "off" | "no" => Ok(false),
                _ => Err(self.err(
                    n,
                    format!("{} {v:?}: expected true/false, on/off or yes/no", n.keyword),
                )),
            },
            _ => Err(self.err(n, format!("{} takes at most one value", n.keyword))),
        }
    }

    /// `KEYWORD COMMAND [USER [GROUP]]`.
    pub(super) fn script(&self, n: &Node) -> Result<Script, KaError> {
        self.no_block(n)?;
        let (cmd, user, group) = match n.args.as_slice() {
            [c] => (c, None, None),
            [c, u] => (c, Some(u.clone()), None),
            [c, u, g] => (c, Some(u.clone()), Some(g.clone())),
            [] => return Err(self.err(n, format!("{} needs a command", n.keyword))),
            _ => {
                return Err(self.err(
                    n,
                    format!(
                        "{} takes a command, a user and a group; quote a command with arguments",
                        n.keyword
                    ),
                ))
            }
        };
        let command = command(cmd).map_err(|m| self.err(n, m))?;
        let (user, group) = match (user, &self.script_user) {
            (Some(u), _) => (Some(u), group),
            (None, Some((u, g))) => (Some(u.clone()), g.clone()),
            (None, None) => (None, None),
        };
        Ok(Script {
            command,
            user,
            group,
        })
    }

    pub(super) fn method(&self, n: &Node) -> Result<FwdMethod, KaError> {
        self.no_block(n)?;
        let Some(first) = n.args.first() else {
            return Err(self.err(n, format!("{} needs NAT, DR, TUN or FNAT", n.keyword)));
        };
        let method = match first.to_ascii_uppercase().as_str() {
            "NAT" => FwdMethod::Masq,
            "DR" => FwdMethod::Route,
            "TUN" => FwdMethod::Tunnel,
            "FNAT" | "FULLNAT" => FwdMethod::FullNat,
            other => {
                return Err(self.err(
                    n,
                    format!(
                        "unknown {} {other:?}: expected NAT, DR, TUN or FNAT",
                        n.keyword
                    ),
                ))
            }
        };
        let rest = n.args.get(1..).unwrap_or(&[]);
        match (method, rest) {
            (_, []) => Ok(method),
            (FwdMethod::Tunnel, [t, kind]) if t == "type" && kind == "ipip" => Ok(method),
            (FwdMethod::Tunnel, _) => Err(self.err(
                n,
                format!(
                    "{} TUN {}: vsd tunnels with IPIP only (no GUE or GRE)",
                    n.keyword,
                    rest.join(" ")
                ),
            )),
            _ => Err(self.err(n, format!("{} {first} takes no options", n.keyword))),
        }
    }
}
