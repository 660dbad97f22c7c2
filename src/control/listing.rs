//! ipvsadm's output formats, rendered from plain view structs the daemon
//! fills (no access to live tables here).
//!
//! Every line is byte-identical to what ipvsadm 1.31's printf formats print
//! (`print_title`, `print_service_entry`, `print_largenum`, `list_conn`,
//! `list_timeout`, `list_daemon`), trailing spaces included. Differences:
//! - vsd always prints numeric addresses and ports: `-n` is accepted and
//!   changes nothing (vsd does no DNS or services-database lookups).
//! - The title's `size=` is the number of connection-index buckets summed
//!   over all worker cores (the kernel prints its connection hash table's
//!   bucket count, 4096 by default); the daemon passes it in.
//! - FULLNAT servers show `FullNat` in the Forward column and save as
//!   `--fullnat`; a service's FULLNAT local addresses save as
//!   `--add-laddr -z LIP -t VIP:PORT` lines after its servers, and non-zero
//!   thresholds save as `-x U -y L` (ipvsadm drops them), so that `-S`
//!   output restores (`-R`) to the same state.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use hdrhistogram::Histogram;

use super::estimator::{Counters, Rates};
use super::ipvsadm::{ListFormat, SyncDaemonSpec};
use crate::lb::service::{
    cmp_dests_for_listing, cmp_services_for_listing, PersistMask, SchedFlags, ServiceKey,
};
use crate::lb::tcp_state::Timeouts;
use crate::lb::types::{AddrFamily, FwdMethod, Protocol};

/// The IPVS version vsd reports (the kernel's, unchanged since 2.6.x).
pub const IPVS_VERSION: &str = "1.2.1";

/// A virtual service as `-L` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: String,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence timeout in seconds, if persistent.
    pub persistence: Option<u32>,
    /// Persistence granularity in effect.
    pub netmask: PersistMask,
    /// One-packet scheduling.
    pub one_packet: bool,
    /// SYN proxy (vsd).
    pub synproxy: bool,
    /// Counters since creation or the last `-Z`.
    pub stats: Counters,
    /// Estimated rates.
    pub rates: Rates,
    /// Real servers, in the kernel's walking order (listings sort them).
    pub dests: Vec<DestView>,
}

/// A real server as `-L` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestView {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Forwarding method.
    pub method: FwdMethod,
    /// Weight.
    pub weight: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// PersistConn (templates).
    pub persistent: u32,
    /// Upper threshold (`-x`).
    pub u_threshold: u32,
    /// Lower threshold (`-y`).
    pub l_threshold: u32,
    /// Counters since creation or the last `-Z`.
    pub stats: Counters,
    /// Estimated rates.
    pub rates: Rates,
}

/// The protocol column of `-Lc`: the kernel's `ip_vs_proto_name` of the entry's
/// protocol, which is IPPROTO_IP ("IP") for a fwmark service's persistence template
/// (a fwmark matches any protocol, so its template has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnProto {
    /// A TCP connection or template of a TCP service.
    Tcp,
    /// A UDP connection or template of a UDP service.
    Udp,
    /// A fwmark service's persistence template.
    Ip,
}

impl ConnProto {
    /// Name as `ipvsadm -Lc` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConnProto::Tcp => "TCP",
            ConnProto::Udp => "UDP",
            ConnProto::Ip => "IP",
        }
    }
    /// The protocol of a worker's connection row ("TCP", "UDP", or "IP" for a fwmark
    /// template, as `Conn::proto_name` gives it).
    pub fn from_name(name: &str) -> Option<Self> {
        [ConnProto::Tcp, ConnProto::Udp, ConnProto::Ip]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

impl From<Protocol> for ConnProto {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => ConnProto::Tcp,
            Protocol::Udp => ConnProto::Udp,
        }
    }
}

/// One connection as `-Lc` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// Protocol.
    pub proto: ConnProto,
    /// Time left before it expires, milliseconds.
    pub expires_ms: u64,
    /// State name (`ESTABLISHED`, `UDP`, `NONE` for templates, ...).
    pub state: &'static str,
    /// Client address and port.
    pub client: SocketAddr,
    /// Virtual address and port.
    pub vip: SocketAddr,
    /// Real server address and port.
    pub dest: SocketAddr,
}

/// One worker's data-plane counters, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreCounters {
    /// The worker's lcore.
    pub core: u32,
    /// Events (rx_packets, ...), in a stable order.
    pub events: Vec<(String, u64)>,
    /// Drops by reason, in a stable order.
    pub drops: Vec<(String, u64)>,
}

/// One port's NIC counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Port name.
    pub port: String,
    /// Link up (the PMD's answer, or where the tap interface now is).
    pub link_up: bool,
    /// Counters by name (rx_packets, rx_bytes, tx_packets, ...).
    pub counters: Vec<(String, u64)>,
}

/// A latency histogram (values in nanoseconds).
#[derive(Debug, Clone)]
pub struct LatencyView {
    /// What is measured (e.g. `burst`).
    pub name: String,
    /// The worker it belongs to; `None` for a sum over workers.
    pub core: Option<u32>,
    /// The recorded values.
    pub hist: Histogram<u64>,
}

// ---------------------------------------------------------------------------------------
// Pieces
// ---------------------------------------------------------------------------------------

/// ipvsadm's `print_largenum`: 9 columns, shrunk to K/M/G/T (powers of
/// 1000, truncated) from 10^8 up unless `exact`.
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let len = n.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        return format!("{n:>width$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

/// An address as ipvsadm prints it: glibc's `inet_ntop`. It agrees with
/// Rust's text everywhere but on the deprecated IPv4-compatible form
/// (`::a.b.c.d`: six zero groups, then a non-zero one), which glibc
/// writes dotted and Rust in hex (`::c612:1`).
pub fn ip_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V6(a) if a.segments()[..6] == [0; 6] && a.segments()[6] != 0 => {
            let [.., b0, b1, b2, b3] = a.octets();
            format!("::{}", std::net::Ipv4Addr::new(b0, b1, b2, b3))
        }
        a => a.to_string(),
    }
}

/// `ADDR:PORT`, `[ADDR]:PORT` for IPv6 (ipvsadm's numeric `addrport_to_anyname`).
pub fn addr_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{}]:{port}", ip_text(addr)),
    }
}

/// The scheduler flags as ipvsadm prints them for scheduler `sched`.
pub fn flag_names(sched: &str, f: &SchedFlags) -> Vec<&'static str> {
    let mut v = Vec::new();
    match sched {
        "sh" => {
            if f.sh_fallback {
                v.push("sh-fallback");
            }
            if f.sh_port {
                v.push("sh-port");
            }
        }
        "mh" => {
            if f.mh_fallback {
                v.push("mh-fallback");
            }
            if f.mh_port {
                v.push("mh-port");
            }
        }
        _ => {}
    }
    v
}

/// The service column of listings: `TCP  198.18.0.100:80`, `FWM  7`,
/// `FWM  7 IPv6` (IPv4 names cut at 33 bytes, as ipvsadm does).
pub fn list_service_name(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Fwmark { mark, af } => match af {
            AddrFamily::Inet => format!("FWM  {mark}"),
            AddrFamily::Inet6 => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr { proto, addr, port } => {
            let mut s = format!("{:<4} {}", proto.name(), addr_port(addr, port));
            if addr.is_ipv4() {
                s.truncate(33);
            }
            s
        }
    }
}

/// The service as `-S` names it: `-t 198.18.0.100:80`, `-f 7 -6`.
pub fn rule_service_name(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Fwmark { mark, af } => match af {
            AddrFamily::Inet => format!("-f {mark}"),
            AddrFamily::Inet6 => format!("-f {mark} -6"),
        },
        ServiceKey::Addr { proto, addr, port } => {
            let opt = match proto {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
            };
            format!("{opt} {}", addr_port(addr, port))
        }
    }
}

/// The `-g|-i|-m|--fullnat` switch of a method.
pub fn fwd_switch(m: FwdMethod) -> &'static str {
    match m {
        FwdMethod::Masq => "-m",
        FwdMethod::Tunnel => "-i",
        FwdMethod::Route => "-g",
        FwdMethod::FullNat => "--fullnat",
    }
}

/// The persistence granularity as `-S` writes it after `-M` (a netmask
/// for IPv4, a prefix length for IPv6); `None` for the family default.
pub fn mask_text(m: &PersistMask) -> Option<String> {
    if m.is_full() {
        return None;
    }
    Some(match m {
        PersistMask::V4(a) => a.to_string(),
        PersistMask::V6(len) => len.to_string(),
    })
}

fn sorted_services(services: &[ServiceView], nosort: bool) -> Vec<&ServiceView> {
    let mut v: Vec<&ServiceView> = services.iter().collect();
    if !nosort {
        v.sort_by(|a, b| cmp_services_for_listing(&a.key, &b.key));
    }
    v
}

fn sorted_dests(dests: &[DestView], nosort: bool) -> Vec<&DestView> {
    let mut v: Vec<&DestView> = dests.iter().collect();
    if !nosort {
        v.sort_by(|a, b| -> Ordering { cmp_dests_for_listing((a.addr, a.port), (b.addr, b.port)) });
    }
    v
}

// ---------------------------------------------------------------------------------------
// -L
// ---------------------------------------------------------------------------------------

/// ipvsadm's `print_title`: the two header lines of a listing.
pub fn title(fmt: &ListFormat) -> String {
    const SVC: &str = "Prot LocalAddress:Port";
    if fmt.stats {
        format!(
            "{SVC:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if fmt.rate {
        format!(
            "{SVC:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if fmt.thresholds {
        format!(
            "{SVC:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if fmt.persistent_conn {
        format!(
            "{SVC:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if fmt.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
            .to_string()
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
            .to_string()
    }
}

/// ipvsadm's `print_service_entry` (listing forms): the service line and
/// its servers.
pub fn service_entry(out: &mut String, s: &ServiceView, fmt: &ListFormat) {
    let name = list_service_name(&s.key);
    let x = fmt.exact;
    if fmt.stats || fmt.rate {
        let c = &s.stats;
        let r = &s.rates;
        let nums = if fmt.stats {
            [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes]
        } else {
            [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
        };
        let _ = write!(out, "{name:<33}");
        for n in nums {
            out.push_str(&largenum(n, x));
        }
    } else {
        let _ = write!(out, "{name} {}", s.scheduler);
        let flags = flag_names(&s.scheduler, &s.flags);
        if !flags.is_empty() {
            let _ = write!(out, " ({})", flags.join(","));
        }
        if let Some(t) = s.persistence {
            let _ = write!(out, " persistent {t}");
            if let Some(m) = mask_text(&s.netmask) {
                let _ = write!(out, " mask {m}");
            }
        }
        if s.one_packet {
            out.push_str(" ops");
        }
        if s.synproxy {
            out.push_str(" synproxy");
        }
    }
    out.push('\n');
    for d in sorted_dests(&s.dests, fmt.nosort) {
        let mut dname = addr_port(d.addr, d.port);
        if d.addr.is_ipv4() {
            dname.truncate(28);
        }
        if fmt.stats {
            let _ = write!(out, "  -> {dname:<28}");
            for n in [
                d.stats.conns,
                d.stats.inpkts,
                d.stats.outpkts,
                d.stats.inbytes,
                d.stats.outbytes,
            ] {
                out.push_str(&largenum(n, x));
            }
            out.push('\n');
        } else if fmt.rate {
            let r = &d.rates;
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}{}{}",
                r.cps,
                r.inpps,
                r.outpps,
                largenum(r.inbps, x),
                largenum(r.outbps, x)
            );
        } else if fmt.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.u_threshold, d.l_threshold, d.active, d.inactive
            );
        } else if fmt.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.weight, d.persistent, d.active, d.inactive
            );
        } else if fmt.tun_info {
            let ti = if d.method == FwdMethod::Tunnel {
                "ipip"
            } else {
                "n/a"
            };
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                d.method.name(),
                ti,
                d.weight,
                d.active,
                d.inactive
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                d.method.name(),
                d.weight,
                d.active,
                d.inactive
            );
        }
    }
}

/// `-L` of the whole table: version line, title, every service (sorted as
/// ipvsadm sorts unless `--nosort`). `size` is the title's table size.
pub fn render_list(size: u64, services: &[ServiceView], fmt: &ListFormat) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={size})\n");
    out.push_str(&title(fmt));
    for s in sorted_services(services, fmt.nosort) {
        service_entry(&mut out, s, fmt);
    }
    out
}

/// `-L -t VIP:PORT`: title and that service (ipvsadm prints no version line).
pub fn render_service(s: &ServiceView, fmt: &ListFormat) -> String {
    let mut out = title(fmt);
    service_entry(&mut out, s, fmt);
    out
}

// ---------------------------------------------------------------------------------------
// -S
// ---------------------------------------------------------------------------------------

/// `-S`: one ipvsadm command per line, services sorted as `-L`; `laddrs`
/// gives each service's FULLNAT local addresses.
pub fn render_save(
    services: &[ServiceView],
    laddrs: &dyn Fn(&ServiceKey) -> Vec<IpAddr>,
) -> String {
    let mut out = String::new();
    for s in sorted_services(services, false) {
        let name = rule_service_name(&s.key);
        let _ = write!(out, "-A {name} -s {}", s.scheduler);
        if let Some(t) = s.persistence {
            let _ = write!(out, " -p {t}");
            if let Some(m) = mask_text(&s.netmask) {
                let _ = write!(out, " -M {m}");
            }
        }
        if s.one_packet {
            out.push_str(" -o");
        }
        if s.synproxy {
            out.push_str(" --synproxy");
        }
        let flags = flag_names(&s.scheduler, &s.flags);
        if !flags.is_empty() {
            let _ = write!(out, " -b {}", flags.join(","));
        }
        out.push('\n');
        for d in sorted_dests(&s.dests, false) {
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                addr_port(d.addr, d.port),
                fwd_switch(d.method),
                d.weight
            );
            if d.method == FwdMethod::Tunnel {
                out.push_str(" --tun-type ipip");
            }
            if d.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.l_threshold);
            }
            out.push('\n');
        }
        for l in laddrs(&s.key) {
            let _ = writeln!(out, "--add-laddr -z {l} {name}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Other listings
// ---------------------------------------------------------------------------------------

/// `-L --timeout`.
pub fn render_timeouts(t: &Timeouts) -> String {
    format!("{t}\n")
}

/// `-L --defense` (vsd): the drop_entry / secure_tcp modes with the
/// pressure threshold, then the SYN_RECV timeout and the half-open timeout
/// used while secure_tcp is on.
pub fn render_defense(d: &crate::lb::defense::DefenseConfig, t: &Timeouts) -> String {
    let synrecv = t.tcp_state(crate::lb::tcp_state::TcpState::SynRecv);
    let secure = synrecv.min(crate::lb::defense::SECURE_HALFOPEN_TIMEOUT_S);
    format!(
        "Defense (drop_entry secure_tcp pressure): {} {} {}%\n\
         Timeout (synrecv synrecv_secure): {synrecv} {secure}\n\
         Sloppy (sloppy_tcp): {}\n",
        d.drop_entry,
        d.secure_tcp,
        d.pressure_percent,
        u8::from(d.sloppy_tcp)
    )
}

/// `-Lc`: the connection table, in the order given. With
/// `--persistent-conn` ipvsadm adds persistence-engine columns to the title;
/// vsd has no persistence engine, so rows keep the short form as in IPVS.
pub fn render_conns(conns: &[ConnView], persistent_conn: bool) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        let secs = c.expires_ms / 1000;
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto.name(),
            expire,
            c.state,
            addr_port(c.client.ip(), c.client.port()),
            addr_port(c.vip.ip(), c.vip.port()),
            addr_port(c.dest.ip(), c.dest.port())
        );
    }
    out
}

/// `-L --daemon`: one line per running sync daemon.
pub fn render_daemons(daemons: &[SyncDaemonSpec]) -> String {
    let mut out = String::new();
    for d in daemons {
        let _ = write!(
            out,
            "{} sync daemon (mcast={}, syncid={}",
            d.role.name(),
            d.mcast_interface,
            d.syncid
        );
        if let Some(m) = d.sync_maxlen {
            let _ = write!(out, ", maxlen={m}");
        }
        if let Some(g) = d.mcast_group {
            let _ = write!(out, ", group={g}");
        }
        if let Some(p) = d.mcast_port {
            let _ = write!(out, ", port={p}");
        }
        if let Some(t) = d.mcast_ttl {
            let _ = write!(out, ", ttl={t}");
        }
        // vsd: unicast peers instead of the group
        for p in &d.peers {
            let _ = write!(out, ", peer={p}");
        }
        // vsd: a master sending from the data plane says so (through the
        // kernel's sockets the line is ipvsadm's)
        if d.role == crate::control::ipvsadm::SyncRole::Master
            && d.transport == crate::control::ipvsadm::SyncTransport::Dataplane
        {
            let _ = write!(out, ", transport={}", d.transport.name());
        }
        out.push_str(")\n");
    }
    out
}

/// `--get-laddr`: each service with its FULLNAT local addresses (sorted as
/// `-L`), in the listing's layout.
pub fn render_laddrs(entries: &[(ServiceKey, Vec<IpAddr>)]) -> String {
    let mut v: Vec<&(ServiceKey, Vec<IpAddr>)> = entries.iter().collect();
    v.sort_by(|a, b| cmp_services_for_listing(&a.0, &b.0));
    let mut out = String::from("Prot LocalAddress:Port\n  -> LocalAddress\n");
    for (key, addrs) in v {
        let _ = writeln!(out, "{}", list_service_name(key));
        let mut addrs = addrs.clone();
        addrs.sort_by_key(|a| match a {
            IpAddr::V4(x) => (0u8, u128::from(u32::from(*x))),
            IpAddr::V6(x) => (1u8, u128::from(*x)),
        });
        for a in addrs {
            let _ = writeln!(out, "  -> {}", ip_text(a));
        }
    }
    out
}

fn counter_block(out: &mut String, title: &str, list: &[(String, u64)]) {
    let _ = writeln!(out, "{title}");
    for (k, v) in list {
        let _ = writeln!(out, "  {k:<24} {v}");
    }
}

/// Sums counters by name over cores, keeping the first core's order.
pub fn sum_by_name<'a>(lists: impl Iterator<Item = &'a [(String, u64)]>) -> Vec<(String, u64)> {
    let mut total: Vec<(String, u64)> = Vec::new();
    for list in lists {
        for (k, v) in list {
            match total.iter_mut().find(|(n, _)| n == k) {
                Some((_, t)) => *t = t.wrapping_add(*v),
                None => total.push((k.clone(), *v)),
            }
        }
    }
    total
}

/// `--counters`: totals over workers, each worker's with `per_worker`, then
/// each port's NIC counters.
pub fn render_counters(cores: &[CoreCounters], ports: &[PortCounters], per_worker: bool) -> String {
    let mut out = String::new();
    counter_block(
        &mut out,
        "events:",
        &sum_by_name(cores.iter().map(|c| c.events.as_slice())),
    );
    counter_block(
        &mut out,
        "drops:",
        &sum_by_name(cores.iter().map(|c| c.drops.as_slice())),
    );
    if per_worker {
        for c in cores {
            counter_block(
                &mut out,
                &format!("worker lcore {} events:", c.core),
                &c.events,
            );
            counter_block(
                &mut out,
                &format!("worker lcore {} drops:", c.core),
                &c.drops,
            );
        }
    }
    for p in ports {
        counter_block(&mut out, &format!("port {}:", p.port), &p.counters);
    }
    out
}

/// `--latency`: count and quantiles (nanoseconds) of each histogram.
pub fn render_latency(hists: &[LatencyView]) -> String {
    let mut out = format!(
        "{:<24} {:>5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "histogram", "core", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for h in hists {
        let core = h.core.map_or_else(|| "all".to_string(), |c| c.to_string());
        let q = |x: f64| h.hist.value_at_quantile(x);
        let _ = writeln!(
            out,
            "{:<24} {:>5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            h.name,
            core,
            h.hist.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.hist.max()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::service::ServiceKey;
    use std::net::Ipv4Addr;

    // Expected texts generated from ipvsadm 1.31's printf formats by an
    // independent model (C printf semantics), pasted literally.
    const GOLD_DEFAULT: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n",
        "  -> 198.18.1.11:8080             Masq    1      10         5         \n",
        "  -> 198.18.1.12:8080             Masq    2      3          1         \n",
        "UDP  198.18.0.100:53 sh (sh-fallback,sh-port) ops\n",
        "  -> 198.18.1.21:53               Route   1      0          0         \n",
        "TCP  [2001:db8::100]:443 mh (mh-port)\n",
        "  -> [2001:db8::11]:443           FullNat 5      1          2         \n",
        "  -> [2001:db8::12]:443           Tunnel  1      0          0         \n",
        "FWM  7 rr persistent 60\n",
        "  -> 198.18.1.31:0                Route   1      0          0         \n",
        "FWM  9 IPv6 wlc persistent 100 mask 64\n",
        "  -> [2001:db8::31]:0             Route   1      0          0         \n",
    ];
    const GOLD_STATS: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
        "  -> RemoteAddress:Port\n",
        "TCP  198.18.0.100:80               123456K        5    1000M 99999999     123T\n",
        "  -> 198.18.1.11:8080              100000K        2        3        4        5\n",
        "  -> 198.18.1.12:8080                    7        8        9       10       11\n",
        "UDP  198.18.0.100:53                     0        0        0        0        0\n",
        "  -> 198.18.1.21:53                      0        0        0        0        0\n",
        "TCP  [2001:db8::100]:443                 1        2        3        4        5\n",
        "  -> [2001:db8::11]:443                  1        2        3        4        5\n",
        "  -> [2001:db8::12]:443                  0        0        0        0        0\n",
        "FWM  7                                   0        0        0        0        0\n",
        "  -> 198.18.1.31:0                       0        0        0        0        0\n",
        "FWM  9 IPv6                              0        0        0        0        0\n",
        "  -> [2001:db8::31]:0                    0        0        0        0        0\n",
    ];
    const GOLD_STATS_EXACT: &[&str] = &[
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
            "  -> RemoteAddress:Port\n",
            "TCP  198.18.0.100:80              123456789        5 1000000000 99999999 123456789012345\n",
            "  -> 198.18.1.11:8080             100000000        2        3        4        5\n",
            "  -> 198.18.1.12:8080                    7        8        9       10       11\n",
            "UDP  198.18.0.100:53                     0        0        0        0        0\n",
            "  -> 198.18.1.21:53                      0        0        0        0        0\n",
            "TCP  [2001:db8::100]:443                 1        2        3        4        5\n",
            "  -> [2001:db8::11]:443                  1        2        3        4        5\n",
            "  -> [2001:db8::12]:443                  0        0        0        0        0\n",
            "FWM  7                                   0        0        0        0        0\n",
            "  -> 198.18.1.31:0                       0        0        0        0        0\n",
            "FWM  9 IPv6                              0        0        0        0        0\n",
            "  -> [2001:db8::31]:0                    0        0        0        0        0\n",
    ];
    const GOLD_RATE: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
        "  -> RemoteAddress:Port\n",
        "TCP  198.18.0.100:80                  1500   250000   240000 99999999  100000K\n",
        "  -> 198.18.1.11:8080             123456789        2        3  999999K        5\n",
        "  -> 198.18.1.12:8080                    1        2        3        4        5\n",
        "UDP  198.18.0.100:53                     0        0        0        0        0\n",
        "  -> 198.18.1.21:53                      0        0        0        0        0\n",
        "TCP  [2001:db8::100]:443                 0        0        0        0        0\n",
        "  -> [2001:db8::11]:443                  0        0        0        0        0\n",
        "  -> [2001:db8::12]:443                  0        0        0        0        0\n",
        "FWM  7                                   0        0        0        0        0\n",
        "  -> 198.18.1.31:0                       0        0        0        0        0\n",
        "FWM  9 IPv6                              0        0        0        0        0\n",
        "  -> [2001:db8::31]:0                    0        0        0        0        0\n",
    ];
    const GOLD_THRESHOLDS: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
        "  -> RemoteAddress:Port\n",
        "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n",
        "  -> 198.18.1.11:8080             100        75         10         5         \n",
        "  -> 198.18.1.12:8080             0          0          3          1         \n",
        "UDP  198.18.0.100:53 sh (sh-fallback,sh-port) ops\n",
        "  -> 198.18.1.21:53               0          0          0          0         \n",
        "TCP  [2001:db8::100]:443 mh (mh-port)\n",
        "  -> [2001:db8::11]:443           0          0          1          2         \n",
        "  -> [2001:db8::12]:443           0          0          0          0         \n",
        "FWM  7 rr persistent 60\n",
        "  -> 198.18.1.31:0                0          0          0          0         \n",
        "FWM  9 IPv6 wlc persistent 100 mask 64\n",
        "  -> [2001:db8::31]:0             0          0          0          0         \n",
    ];
    const GOLD_PERSISTENT_CONN: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
        "  -> RemoteAddress:Port\n",
        "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n",
        "  -> 198.18.1.11:8080             1         0           10         5         \n",
        "  -> 198.18.1.12:8080             2         2           3          1         \n",
        "UDP  198.18.0.100:53 sh (sh-fallback,sh-port) ops\n",
        "  -> 198.18.1.21:53               1         0           0          0         \n",
        "TCP  [2001:db8::100]:443 mh (mh-port)\n",
        "  -> [2001:db8::11]:443           5         0           1          2         \n",
        "  -> [2001:db8::12]:443           1         0           0          0         \n",
        "FWM  7 rr persistent 60\n",
        "  -> 198.18.1.31:0                1         4           0          0         \n",
        "FWM  9 IPv6 wlc persistent 100 mask 64\n",
        "  -> [2001:db8::31]:0             1         0           0          0         \n",
    ];
    const GOLD_TUN_INFO: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n",
        "  -> 198.18.1.11:8080             Masq    n/a           1      10         5         \n",
        "  -> 198.18.1.12:8080             Masq    n/a           2      3          1         \n",
        "UDP  198.18.0.100:53 sh (sh-fallback,sh-port) ops\n",
        "  -> 198.18.1.21:53               Route   n/a           1      0          0         \n",
        "TCP  [2001:db8::100]:443 mh (mh-port)\n",
        "  -> [2001:db8::11]:443           FullNat n/a           5      1          2         \n",
        "  -> [2001:db8::12]:443           Tunnel  ipip          1      0          0         \n",
        "FWM  7 rr persistent 60\n",
        "  -> 198.18.1.31:0                Route   n/a           1      0          0         \n",
        "FWM  9 IPv6 wlc persistent 100 mask 64\n",
        "  -> [2001:db8::31]:0             Route   n/a           1      0          0         \n",
    ];
    const GOLD_ONE: &[&str] = &[
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n",
        "  -> 198.18.1.11:8080             Masq    1      10         5         \n",
        "  -> 198.18.1.12:8080             Masq    2      3          1         \n",
    ];
    const GOLD_SAVE: &[&str] = &[
        "-A -t 198.18.0.100:80 -s wrr -p 300 -M 255.255.255.0\n",
        "-a -t 198.18.0.100:80 -r 198.18.1.11:8080 -m -w 1 -x 100 -y 75\n",
        "-a -t 198.18.0.100:80 -r 198.18.1.12:8080 -m -w 2\n",
        "-A -u 198.18.0.100:53 -s sh -o -b sh-fallback,sh-port\n",
        "-a -u 198.18.0.100:53 -r 198.18.1.21:53 -g -w 1\n",
        "-A -t [2001:db8::100]:443 -s mh -b mh-port\n",
        "-a -t [2001:db8::100]:443 -r [2001:db8::11]:443 --fullnat -w 5\n",
        "-a -t [2001:db8::100]:443 -r [2001:db8::12]:443 -i -w 1 --tun-type ipip\n",
        "-A -f 7 -s rr -p 60\n",
        "-a -f 7 -r 198.18.1.31:0 -g -w 1\n",
        "-A -f 9 -6 -s wlc -p 100 -M 64\n",
        "-a -f 9 -6 -r [2001:db8::31]:0 -g -w 1\n",
    ];
    const GOLD_CONNS: &[&str] = &[
        "IPVS connection entries\n",
        "pro expire state       source             virtual            destination\n",
        "TCP 14:59  ESTABLISHED 198.18.5.1:40000   198.18.0.100:80    198.18.1.11:8080\n",
        "UDP 00:05  UDP         198.18.5.2:5353    198.18.0.100:53    198.18.1.21:53\n",
        "TCP 1440:00 NONE        198.18.5.0:0       198.18.0.100:80    198.18.1.12:8080\n",
        "IP  04:59  NONE        198.18.5.0:0       0.0.0.7:0          198.18.1.31:0\n",
        "TCP 00:59  SYN_RECV    [2001:db8:5::1]:50000 [2001:db8::100]:443 [2001:db8::11]:443\n",
    ];
    const GOLD_CONNS_PC_TITLE: &[&str] = &[
            "IPVS connection entries\n",
            "pro expire state       source             virtual            destination        pe name          pe_data\n",
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn c(v: [u64; 5]) -> Counters {
        Counters {
            conns: v[0],
            inpkts: v[1],
            outpkts: v[2],
            inbytes: v[3],
            outbytes: v[4],
        }
    }
    fn r(v: [u64; 5]) -> Rates {
        Rates {
            cps: v[0],
            inpps: v[1],
            outpps: v[2],
            inbps: v[3],
            outbps: v[4],
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn d(
        addr: &str,
        port: u16,
        method: FwdMethod,
        weight: u32,
        active: u32,
        inactive: u32,
        persistent: u32,
        thr: (u32, u32),
        stats: [u64; 5],
        rates: [u64; 5],
    ) -> DestView {
        DestView {
            addr: ip(addr),
            port,
            method,
            weight,
            active,
            inactive,
            persistent,
            u_threshold: thr.0,
            l_threshold: thr.1,
            stats: c(stats),
            rates: r(rates),
        }
    }

    /// The same services as the model, in creation order (unsorted), with
    /// servers in walking order.
    fn services() -> Vec<ServiceView> {
        let z = [0; 5];
        vec![
            ServiceView {
                key: ServiceKey::fwmark(9, AddrFamily::Inet6),
                scheduler: "wlc".into(),
                flags: SchedFlags::default(),
                persistence: Some(100),
                netmask: PersistMask::V6(64),
                one_packet: false,
                synproxy: false,
                stats: c(z),
                rates: r(z),
                dests: vec![d(
                    "2001:db8::31",
                    0,
                    FwdMethod::Route,
                    1,
                    0,
                    0,
                    0,
                    (0, 0),
                    z,
                    z,
                )],
            },
            ServiceView {
                key: ServiceKey::tcp(ip("2001:db8::100"), 443),
                scheduler: "mh".into(),
                flags: SchedFlags {
                    mh_port: true,
                    ..SchedFlags::default()
                },
                persistence: None,
                netmask: PersistMask::V6(128),
                one_packet: false,
                synproxy: false,
                stats: c([1, 2, 3, 4, 5]),
                rates: r(z),
                dests: vec![
                    d(
                        "2001:db8::12",
                        443,
                        FwdMethod::Tunnel,
                        1,
                        0,
                        0,
                        0,
                        (0, 0),
                        z,
                        z,
                    ),
                    d(
                        "2001:db8::11",
                        443,
                        FwdMethod::FullNat,
                        5,
                        1,
                        2,
                        0,
                        (0, 0),
                        [1, 2, 3, 4, 5],
                        z,
                    ),
                ],
            },
            ServiceView {
                key: ServiceKey::tcp(ip("198.18.0.100"), 80),
                scheduler: "wrr".into(),
                flags: SchedFlags::default(),
                persistence: Some(300),
                netmask: PersistMask::V4(Ipv4Addr::new(255, 255, 255, 0)),
                one_packet: false,
                synproxy: false,
                stats: c([123456789, 5, 1000000000, 99999999, 123456789012345]),
                rates: r([1500, 250000, 240000, 99999999, 100000000]),
                dests: vec![
                    d(
                        "198.18.1.12",
                        8080,
                        FwdMethod::Masq,
                        2,
                        3,
                        1,
                        2,
                        (0, 0),
                        [7, 8, 9, 10, 11],
                        [1, 2, 3, 4, 5],
                    ),
                    d(
                        "198.18.1.11",
                        8080,
                        FwdMethod::Masq,
                        1,
                        10,
                        5,
                        0,
                        (100, 75),
                        [100000000, 2, 3, 4, 5],
                        [123456789, 2, 3, 999999999, 5],
                    ),
                ],
            },
            ServiceView {
                key: ServiceKey::fwmark(7, AddrFamily::Inet),
                scheduler: "rr".into(),
                flags: SchedFlags::default(),
                persistence: Some(60),
                netmask: PersistMask::V4(Ipv4Addr::BROADCAST),
                one_packet: false,
                synproxy: false,
                stats: c(z),
                rates: r(z),
                dests: vec![d(
                    "198.18.1.31",
                    0,
                    FwdMethod::Route,
                    1,
                    0,
                    0,
                    4,
                    (0, 0),
                    z,
                    z,
                )],
            },
            ServiceView {
                key: ServiceKey::udp(ip("198.18.0.100"), 53),
                scheduler: "sh".into(),
                flags: SchedFlags {
                    sh_fallback: true,
                    sh_port: true,
                    ..SchedFlags::default()
                },
                persistence: None,
                netmask: PersistMask::V4(Ipv4Addr::BROADCAST),
                one_packet: true,
                synproxy: false,
                stats: c(z),
                rates: r(z),
                dests: vec![d(
                    "198.18.1.21",
                    53,
                    FwdMethod::Route,
                    1,
                    0,
                    0,
                    0,
                    (0, 0),
                    z,
                    z,
                )],
            },
        ]
    }

    fn fmt() -> ListFormat {
        ListFormat {
            numeric: true,
            ..ListFormat::default()
        }
    }

    fn check(got: &str, want: &[&str]) {
        let want = want.concat();
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "line {i}");
        }
        assert_eq!(got, want);
    }

    #[test]
    fn default_listing() {
        check(&render_list(4096, &services(), &fmt()), GOLD_DEFAULT);
    }

    #[test]
    fn stats_rate_exact_listings() {
        let s = services();
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    stats: true,
                    ..fmt()
                },
            ),
            GOLD_STATS,
        );
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    stats: true,
                    exact: true,
                    ..fmt()
                },
            ),
            GOLD_STATS_EXACT,
        );
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    rate: true,
                    ..fmt()
                },
            ),
            GOLD_RATE,
        );
        // --stats wins over --rate, as in ipvsadm.
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    stats: true,
                    rate: true,
                    ..fmt()
                },
            ),
            GOLD_STATS,
        );
    }

    #[test]
    fn thresholds_persistent_tun_listings() {
        let s = services();
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    thresholds: true,
                    ..fmt()
                },
            ),
            GOLD_THRESHOLDS,
        );
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    persistent_conn: true,
                    ..fmt()
                },
            ),
            GOLD_PERSISTENT_CONN,
        );
        check(
            &render_list(
                4096,
                &s,
                &ListFormat {
                    tun_info: true,
                    ..fmt()
                },
            ),
            GOLD_TUN_INFO,
        );
    }

    #[test]
    fn one_service_has_no_version_line() {
        let s = services();
        check(&render_service(&s[2], &fmt()), GOLD_ONE);
    }

    #[test]
    fn nosort_keeps_given_order() {
        let s = services();
        let text = render_list(
            8,
            &s,
            &ListFormat {
                nosort: true,
                ..fmt()
            },
        );
        let firsts: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("  ->") && !l.starts_with("IP ") && !l.starts_with("Prot"))
            .collect();
        assert_eq!(
            firsts,
            vec![
                "FWM  9 IPv6 wlc persistent 100 mask 64",
                "TCP  [2001:db8::100]:443 mh (mh-port)",
                "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0",
                "FWM  7 rr persistent 60",
                "UDP  198.18.0.100:53 sh (sh-fallback,sh-port) ops",
            ]
        );
        assert!(text.starts_with("IP Virtual Server version 1.2.1 (size=8)\n"));
        // Servers in walking order too: .12 before .11.
        let i12 = text.find("198.18.1.12:8080").unwrap();
        let i11 = text.find("198.18.1.11:8080").unwrap();
        assert!(i12 < i11);
    }

    #[test]
    fn save_format() {
        let text = render_save(&services(), &|_| Vec::new());
        check(&text, GOLD_SAVE);
        let with_laddr = render_save(&services()[2..3], &|_| vec![ip("198.18.2.1")]);
        assert!(with_laddr.ends_with("--add-laddr -z 198.18.2.1 -t 198.18.0.100:80\n"));
    }

    #[test]
    fn connection_listing() {
        let sa = |a: &str, p: u16| SocketAddr::new(ip(a), p);
        let conns = vec![
            ConnView {
                proto: ConnProto::Tcp,
                expires_ms: 899_999,
                state: "ESTABLISHED",
                client: sa("198.18.5.1", 40000),
                vip: sa("198.18.0.100", 80),
                dest: sa("198.18.1.11", 8080),
            },
            ConnView {
                proto: ConnProto::Udp,
                expires_ms: 5000,
                state: "UDP",
                client: sa("198.18.5.2", 5353),
                vip: sa("198.18.0.100", 53),
                dest: sa("198.18.1.21", 53),
            },
            ConnView {
                proto: ConnProto::Tcp,
                expires_ms: 86_400_000,
                state: "NONE",
                client: sa("198.18.5.0", 0),
                vip: sa("198.18.0.100", 80),
                dest: sa("198.18.1.12", 8080),
            },
            ConnView {
                proto: ConnProto::Ip,
                expires_ms: 299_000,
                state: "NONE",
                client: sa("198.18.5.0", 0),
                vip: sa("0.0.0.7", 0),
                dest: sa("198.18.1.31", 0),
            },
            ConnView {
                proto: ConnProto::Tcp,
                expires_ms: 59_999,
                state: "SYN_RECV",
                client: sa("2001:db8:5::1", 50000),
                vip: sa("2001:db8::100", 443),
                dest: sa("2001:db8::11", 443),
            },
        ];
        check(&render_conns(&conns, false), GOLD_CONNS);
        // The worker's row names map back, a fwmark template's "IP" included.
        for p in [ConnProto::Tcp, ConnProto::Udp, ConnProto::Ip] {
            assert_eq!(ConnProto::from_name(p.name()), Some(p));
        }
        assert_eq!(ConnProto::from_name("SCTP"), None);
        let pc = render_conns(&[], true);
        check(&pc, GOLD_CONNS_PC_TITLE);
    }

    #[test]
    fn largenum_matches_print_largenum() {
        for (n, short, exact) in [
            (0, "        0", "        0"),
            (99999999, " 99999999", " 99999999"),
            (100000000, "  100000K", " 100000000"),
            (999999999, "  999999K", " 999999999"),
            (1000000000, "    1000M", " 1000000000"),
            (99999999999, "   99999M", " 99999999999"),
            (100000000000, "     100G", " 100000000000"),
            (99999999999999, "   99999G", " 99999999999999"),
            (100000000000000, "     100T", " 100000000000000"),
            (18446744073709551615, "18446744T", " 18446744073709551615"),
        ] {
            assert_eq!(largenum(n, false), short, "{n}");
            assert_eq!(largenum(n, true), exact, "{n}");
        }
    }

    #[test]
    fn long_ipv4_names_are_cut_like_ipvsadm() {
        // The longest IPv4 name fits: "TCP  255.255.255.255:65535" is 26 bytes.
        let k = ServiceKey::tcp(ip("255.255.255.255"), 65535);
        assert_eq!(list_service_name(&k), "TCP  255.255.255.255:65535");
        assert_eq!(rule_service_name(&k), "-t 255.255.255.255:65535");
        assert_eq!(
            rule_service_name(&ServiceKey::fwmark(3, AddrFamily::Inet6)),
            "-f 3 -6"
        );
        assert_eq!(addr_port(ip("::ffff:1.2.3.4"), 1), "[::ffff:1.2.3.4]:1");
    }

    #[test]
    fn ipv6_text_is_glibcs_inet_ntop() {
        // glibc's inet_ntop, as ipvsadm prints: IPv4-compatible dotted,
        // one zero group never "::", the first longest run compressed
        for (a, want) in [
            ("::198.18.0.1", "::198.18.0.1"),
            ("::1.0.0.0", "::1.0.0.0"),
            ("::1", "::1"),
            ("::", "::"),
            ("::1:0:0", "::1:0:0"),
            ("2001:2:0:1::64", "2001:2:0:1::64"),
            ("2001:0:0:1:0:0:0:64", "2001:0:0:1::64"),
            ("2001:0:0:1:1:0:0:64", "2001::1:1:0:0:64"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("0:0:0:0:0:1:0:1", "::1:0:1"),
        ] {
            assert_eq!(ip_text(ip(a)), want, "{a}");
        }
        assert_eq!(addr_port(ip("::198.18.0.1"), 80), "[::198.18.0.1]:80");
    }

    #[test]
    fn timeouts_daemons_laddrs() {
        assert_eq!(
            render_timeouts(&Timeouts::default()),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
        let d = vec![
            SyncDaemonSpec {
                role: crate::control::ipvsadm::SyncRole::Master,
                mcast_interface: "eth0".into(),
                syncid: 0,
                sync_maxlen: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                peers: Vec::new(),
                transport: Default::default(),
            },
            SyncDaemonSpec {
                role: crate::control::ipvsadm::SyncRole::Backup,
                mcast_interface: "lan0".into(),
                syncid: 9,
                sync_maxlen: Some(1400),
                mcast_group: Some(ip("239.0.0.1")),
                mcast_port: Some(9000),
                mcast_ttl: Some(3),
                peers: Vec::new(),
                transport: Default::default(),
            },
        ];
        assert_eq!(
            render_daemons(&d),
            "master sync daemon (mcast=eth0, syncid=0)\n\
             backup sync daemon (mcast=lan0, syncid=9, maxlen=1400, group=239.0.0.1, port=9000, ttl=3)\n"
        );
        assert_eq!(render_daemons(&[]), "");
        // a resolved master says how it sends
        let mut m = d[0].clone();
        m.transport = crate::control::ipvsadm::SyncTransport::Dataplane;
        assert_eq!(
            render_daemons(&[m]),
            "master sync daemon (mcast=eth0, syncid=0, transport=dataplane)\n"
        );
        let l = render_laddrs(&[
            (
                ServiceKey::tcp(ip("198.18.0.101"), 80),
                vec![ip("198.18.2.9"), ip("198.18.2.1")],
            ),
            (
                ServiceKey::tcp(ip("198.18.0.100"), 80),
                vec![ip("198.18.3.1")],
            ),
        ]);
        assert_eq!(
            l,
            "Prot LocalAddress:Port\n  -> LocalAddress\n\
             TCP  198.18.0.100:80\n  -> 198.18.3.1\n\
             TCP  198.18.0.101:80\n  -> 198.18.2.1\n  -> 198.18.2.9\n"
        );
    }

    #[test]
    fn counters_and_latency_text() {
        let cores = vec![
            CoreCounters {
                core: 1,
                events: vec![("rx_packets".into(), 5), ("tx_packets".into(), 4)],
                drops: vec![("no_service".into(), 1)],
            },
            CoreCounters {
                core: 2,
                events: vec![("rx_packets".into(), 7), ("tx_packets".into(), 6)],
                drops: vec![("no_service".into(), 2)],
            },
        ];
        let ports = vec![PortCounters {
            port: "lan0".into(),
            link_up: true,
            counters: vec![("rx_missed".into(), 3)],
        }];
        assert_eq!(
            render_counters(&cores, &ports, false),
            "events:\n  rx_packets               12\n  tx_packets               10\n\
             drops:\n  no_service               3\n\
             port lan0:\n  rx_missed                3\n"
        );
        let per = render_counters(&cores, &[], true);
        assert!(per.contains("worker lcore 2 drops:\n  no_service               2\n"));
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        let text = render_latency(&[LatencyView {
            name: "burst_ns".into(),
            core: Some(1),
            hist: h,
        }]);
        let line = text.lines().nth(1).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[..3], ["burst_ns", "1", "1000"]);
        assert_eq!(cols[3], "50015");
        assert_eq!(cols[7], "100031");
    }
}
