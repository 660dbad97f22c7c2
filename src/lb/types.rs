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

/// Address family of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrFamily {
    /// IPv4 (AF_INET). Orders before IPv6, as ipvsadm's listing does (AF_INET 2 < AF_INET6 10).
    Inet,
    /// IPv6 (AF_INET6).
    Inet6,
}

impl AddrFamily {
    /// Family of an address.
    pub fn of(addr: std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => AddrFamily::Inet,
            std::net::IpAddr::V6(_) => AddrFamily::Inet6,
        }
    }
}

/// The IPVS scheduling algorithms (ipvsadm `-s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    Wlc,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Maglev hashing.
    Mh,
    /// Weighted fail-over.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Power of two choices.
    Twos,
}

impl SchedulerKind {
    /// Every scheduler, in the order ipvsadm's manual lists them.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    /// The default when `-s` is not given.
    pub const DEFAULT: SchedulerKind = SchedulerKind::Wlc;

    /// Whether the scheduler's choice depends on the servers' connection
    /// counts (summed over cores, so the control thread keeps the sums
    /// fresh while such a scheduler is in use).
    pub fn reads_load(self) -> bool {
        use SchedulerKind::*;
        match self {
            Lc | Wlc | Sed | Nq | Lblc | Lblcr | Ovf | Twos => true,
            Rr | Wrr | Dh | Sh | Mh | Fo => false,
        }
    }

    /// Name as ipvsadm spells it (`-s NAME` and listings).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
        }
    }

    /// Look a scheduler up by its ipvsadm name (exact, lower case, as the kernel does).
    pub fn from_name(name: &str) -> Option<Self> {
        SchedulerKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_based_schedulers() {
        let reading: Vec<&str> = SchedulerKind::ALL
            .iter()
            .filter(|k| k.reads_load())
            .map(|k| k.name())
            .collect();
        assert_eq!(
            reading,
            ["lc", "wlc", "lblc", "lblcr", "sed", "nq", "ovf", "twos"]
        );
    }
}
