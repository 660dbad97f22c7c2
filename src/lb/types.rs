//! Small types shared across the IPVS core.

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
    /// Name as ipvsadm prints it in listings ("TCP", "UDP").
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// How packets reach a real server (ipvsadm -m, -g, -i; vsd --fullnat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FwdMethod {
    /// NAT (`-m`): destination rewritten, replies come back through vsd.
    Masq,
    /// Direct routing (`-g`): only the destination MAC changes.
    Route,
    /// IP-in-IP (`-i`).
    Tunnel,
    /// Both source and destination rewritten; source from a local address pool.
    FullNat,
}

impl FwdMethod {
    /// Name as the Forward column of `ipvsadm -L` prints it.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Route => "Route",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::FullNat => "FullNat",
        }
    }
    /// Whether replies pass through the director (NAT, FULLNAT).
    pub fn sees_replies(self) -> bool {
        matches!(self, FwdMethod::Masq | FwdMethod::FullNat)
    }
}
