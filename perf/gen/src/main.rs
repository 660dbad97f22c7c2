//! vsd-gen: a one-lcore DPDK traffic generator for benchmarking vsd (and,
//! for the machine's ceiling, dpdk-testpmd) over net_memif.
//!
//! ```text
//! vsd-gen --expect nat --proto tcp --flows 1M --duration 10 \
//!         --memif-socket /tmp/vsd-memif.sock [-- extra EAL args]
//! ```
//!
//! It sends TCP or UDP from a space of client flows to VIP:vport, receives
//! what the forwarder sends back, checks a sample of it for the expected
//! rewrite (`--expect`), times it, and prints one JSON object on stdout and
//! a summary line on stderr. See perf/README.md.

mod check;
mod fast;
mod flows;
mod gen;
mod packet;
mod report;

use check::{Expect, Mode, NetSet};
use clap::{Parser, ValueEnum};
use flows::FlowSpace;
use gen::{FloodRate, Handshake, Plan};
use hdrhistogram::Histogram;
use packet::{Family, Proto, Template, TemplateSpec, FCS_LEN};
use report::{Report, RunInfo};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vsd::dpdk::{tsc_hz, Eal, Mempool, Port, PortConfig};
use vsd::wire::{tcp, MacAddr};

/// Name of the generator's mbuf pool (looked up again for bulk allocation).
const POOL_NAME: &str = "vsd_gen_pool";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    /// On for NAT and FULLNAT (replies pass the forwarder), off otherwise.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Client,
    Server,
}

/// A memif traffic generator for vsd benchmarks.
#[derive(Parser, Debug)]
#[command(
    name = "vsd-gen",
    version,
    about,
    after_help = "Anything after `--` is passed to DPDK's EAL as is."
)]
struct Opts {
    /// The rewrite to expect on returned packets.
    #[arg(long, value_enum, default_value = "io")]
    expect: Mode,
    /// Transport protocol.
    #[arg(long, value_enum, default_value = "udp")]
    proto: ProtoArg,
    /// Address family, 4 or 6. With 6 every address option below (VIP,
    /// real servers, local addresses, clients) names the IPv6 address with
    /// that IPv4 address in the low 32 bits of --ipv6-prefix's /96, e.g.
    /// 198.19.0.5 -> 2001:2::c613:5; neighbor solicitations are answered
    /// as ARP is.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=6))]
    family: u8,
    /// The /96 IPv6 addresses are formed in with --family 6.
    #[arg(long, default_value = "2001:2::")]
    ipv6_prefix: Ipv6Addr,
    /// Concurrent flows (client address:port pairs), 1 to 10M; K/M suffixes.
    #[arg(long, default_value = "1K", value_parser = parse_count)]
    flows: u64,
    /// Frame size in bytes including the FCS, 64 to 1518.
    #[arg(long, default_value_t = 64)]
    pkt_size: usize,
    /// Share of packets that open a new connection (TCP SYN, or UDP on a
    /// fresh tuple), 0 to 1; the rest are established-flow packets (ACK).
    #[arg(long, default_value_t = 0.0)]
    new_conn_share: f64,
    /// Target rate in packets/s (K/M suffixes); 0 = as fast as possible.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    rate: u64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Measurement windows, back to back on one connection; one JSON line
    /// each.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// After reporting, keep the memif connection until the forwarder
    /// closes it (or this many seconds pass). Stopping the forwarder first
    /// avoids a DPDK 22.11 memif server crash when a client disconnects
    /// while the server's worker polls.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    /// Skip the remaining windows after one in which nothing came back.
    #[arg(long)]
    stop_if_silent: bool,
    /// Say on stderr when each window starts ("vsd-gen: window N starts")
    /// and when the last one ends ("vsd-gen: windows end"), as it happens,
    /// so a caller can read the forwarder's counters at the boundaries.
    #[arg(long)]
    window_marks: bool,
    /// Traffic before the window (after settling and priming), seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Pause after the first packets so the forwarder can resolve ARP, ms.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Receive-only time after the window, ms.
    #[arg(long, default_value_t = 100)]
    drain_ms: u64,
    /// Stamp, check and time one packet in N.
    #[arg(long, default_value_t = 64)]
    sample: u32,
    /// Answer requests as the real servers would (SYN → SYN+ACK, addresses
    /// and ports swapped) so replies cross the forwarder too.
    #[arg(long, value_enum, default_value = "auto")]
    reflect: Switch,
    /// The generator's MAC (clients, gateway).
    #[arg(long, default_value = "02:00:00:00:20:01", value_parser = parse_mac)]
    gen_mac: MacAddr,
    /// The forwarder's MAC (vsd's port `mac`).
    #[arg(long, default_value = "02:00:00:00:10:01", value_parser = parse_mac)]
    dut_mac: MacAddr,
    /// Virtual IP.
    #[arg(long, default_value = "198.18.0.100")]
    vip: Ipv4Addr,
    /// Virtual port.
    #[arg(long, default_value_t = 80)]
    vport: u16,
    /// Real server port (NAT/FULLNAT); default: the virtual port.
    #[arg(long)]
    rport: Option<u16>,
    /// Real servers: addresses and/or prefixes, comma-separated. ARP for
    /// them is answered with MAC 02:52:<address>.
    #[arg(
        long,
        default_value = "198.18.0.11,198.18.0.12,198.18.0.13,198.18.0.14"
    )]
    rips: String,
    /// FULLNAT local addresses (addresses and/or prefixes). Empty: any
    /// source that is not a client passes.
    #[arg(long, default_value = "")]
    lips: String,
    /// First client address of the established flows.
    #[arg(long, default_value = "198.19.0.0")]
    client_net: Ipv4Addr,
    /// Client addresses the established flows spread over (at most).
    #[arg(long, default_value_t = 4096)]
    client_ips: u32,
    /// First client address of new connections.
    #[arg(long, default_value = "198.19.128.0")]
    new_conn_net: Ipv4Addr,
    /// Client addresses new connections spread over.
    #[arg(long, default_value_t = 32768)]
    new_conn_ips: u32,
    /// Lowest client port.
    #[arg(long, default_value_t = 1024)]
    src_port_base: u16,
    /// Complete real TCP handshakes (TCP through NAT/FULLNAT, e.g. a SYN
    /// proxy): answer SYN-ACKs to our clients with ACK + data, answer as the
    /// real servers with consistent sequence numbers, count completed
    /// connections. Needed for --flood-rate.
    #[arg(long)]
    handshake: bool,
    /// SYN flood from random sources of --flood-net, from the warm-up on,
    /// on top of --rate: packets/s (K/M suffixes), "max" (as fast as the
    /// port takes them) or 0 (off).
    #[arg(long, default_value = "0", value_parser = parse_flood_rate)]
    flood_rate: FloodRate,
    /// Handshake mode: most new connections open at once (0: no limit).
    /// With --new-conn-share 1 --rate 0 this measures the forwarder's
    /// handshake rate in a closed loop.
    #[arg(long, default_value_t = 0)]
    max_inflight: u64,
    /// First address of the flood's sources.
    #[arg(long, default_value = "198.18.128.0")]
    flood_net: Ipv4Addr,
    /// Addresses the flood's sources spread over (ports 1024-65535 each).
    #[arg(long, default_value_t = 32768)]
    flood_ips: u32,
    /// memif socket (the forwarder's).
    #[arg(long, default_value = "/tmp/vsd-memif.sock")]
    memif_socket: String,
    /// memif role of the generator.
    #[arg(long, value_enum, default_value = "client")]
    memif_role: Role,
    /// Extra net_memif devargs, e.g. "rsize=11".
    #[arg(long, default_value = "")]
    memif_args: String,
    /// EAL --file-prefix (default: vsd-gen-<pid>).
    #[arg(long)]
    file_prefix: Option<String>,
    /// The lcore (CPU) the generator runs on.
    #[arg(long, default_value_t = 0)]
    lcore: u32,
    /// EAL memory in MiB (with --no-huge unless --huge).
    #[arg(long, default_value_t = 512)]
    mem_mb: u32,
    /// Use hugepages (with --huge-unlink) instead of --no-huge.
    #[arg(long)]
    huge: bool,
    /// Mbufs in the pool.
    #[arg(long, default_value_t = 16383)]
    mbufs: u32,
    /// Seconds to wait for the memif link.
    #[arg(long, default_value_t = 10.0)]
    link_timeout: f64,
    /// Extra EAL arguments (after `--`). With a --vdev here, no memif vdev
    /// is added and the first --vdev is the port used.
    #[arg(last = true)]
    eal: Vec<String>,
}

/// "1000", "1K", "1.5M", "10M" → count.
fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("not a number: {s:?}"))?;
    let v = v * mul;
    if !(0.0..=1e12).contains(&v) || v.fract() != 0.0 {
        return Err(format!("not a whole count: {s:?}"));
    }
    Ok(v as u64)
}

/// "0"/"off", "max", or a count as [`parse_count`].
fn parse_flood_rate(s: &str) -> Result<FloodRate, String> {
    match s.trim() {
        "off" => Ok(FloodRate::Off),
        "max" => Ok(FloodRate::Max),
        t => Ok(match parse_count(t)? {
            0 => FloodRate::Off,
            n => FloodRate::Paced(n),
        }),
    }
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("bad MAC {s:?}"));
    }
    for (b, p) in mac.iter_mut().zip(&parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
    }
    Ok(MacAddr(mac))
}

/// The EAL command line and the name of the port to use.
fn eal_args(o: &Opts) -> (Vec<String>, String) {
    let mut a = vec![
        "vsd-gen".to_string(),
        "-l".to_string(),
        o.lcore.to_string(),
        "--no-pci".to_string(),
        format!(
            "--file-prefix={}",
            o.file_prefix
                .clone()
                .unwrap_or_else(|| format!("vsd-gen-{}", std::process::id()))
        ),
    ];
    if o.huge {
        a.push("--huge-unlink".into());
        a.push(format!("-m{}", o.mem_mb));
    } else {
        a.push("--no-huge".into());
        a.push(format!("-m{}", o.mem_mb));
    }
    let user_vdev = o
        .eal
        .iter()
        .position(|x| x == "--vdev")
        .and_then(|i| o.eal.get(i + 1))
        .or_else(|| {
            o.eal
                .iter()
                .find_map(|x| x.strip_prefix("--vdev=").map(|_| x))
        })
        .map(|v| {
            v.trim_start_matches("--vdev=")
                .split(',')
                .next()
                .unwrap_or("")
                .to_string()
        });
    let port = match user_vdev {
        Some(name) => name,
        None => {
            let role = match o.memif_role {
                Role::Client => "client",
                Role::Server => "server",
            };
            let mut dev = format!(
                "net_memif0,role={role},socket={},socket-abstract=no",
                o.memif_socket
            );
            if !o.memif_args.is_empty() {
                dev.push(',');
                dev.push_str(&o.memif_args);
            }
            a.push("--vdev".into());
            a.push(dev);
            "net_memif0".to_string()
        }
    };
    a.extend(o.eal.iter().cloned());
    (a, port)
}

fn secs_to_cycles(s: f64, hz: u64) -> u64 {
    (s.max(0.0) * hz as f64) as u64
}

/// Everything that does not need DPDK: the plan and the run description.
fn build_plan(o: &Opts, hz: u64) -> Result<(Plan, RunInfo), String> {
    if !(64..=1518).contains(&o.pkt_size) {
        return Err(format!("--pkt-size {} is outside 64..=1518", o.pkt_size));
    }
    if !(1..=10_000_000).contains(&o.flows) {
        return Err(format!("--flows {} is outside 1..=10M", o.flows));
    }
    if !(0.0..=1.0).contains(&o.new_conn_share) {
        return Err("--new-conn-share must be within 0..=1".into());
    }
    if o.repeat == 0 || o.repeat > 1000 {
        return Err("--repeat must be within 1..=1000".into());
    }
    if o.sample == 0 {
        return Err("--sample must be at least 1".into());
    }
    if !(o.duration > 0.0 && o.duration.is_finite() && o.warmup >= 0.0 && o.warmup.is_finite()) {
        return Err("--duration must be > 0 and --warmup >= 0".into());
    }
    let family = match o.family {
        4 => Family::V4,
        6 => Family::v6(o.ipv6_prefix),
        f => return Err(format!("--family {f}: 4 or 6")),
    };
    if o.ipv6_prefix.octets()[12..] != [0; 4] {
        return Err(format!(
            "--ipv6-prefix {} has bits set in its last 32 (a /96 is needed)",
            o.ipv6_prefix
        ));
    }
    let rips = NetSet::parse(&o.rips)?;
    let lips = NetSet::parse(&o.lips)?;
    let mode = o.expect;
    if matches!(mode, Mode::Dr | Mode::Tun | Mode::Nat | Mode::Fullnat) && rips.is_empty() {
        return Err(format!("--expect {} needs --rips", mode.name()));
    }
    let clients = FlowSpace::new(o.client_net, o.client_ips, o.src_port_base, o.flows)
        .map_err(|e| format!("established flows: {e}"))?;
    let new_space = FlowSpace::full(o.new_conn_net, o.new_conn_ips, o.src_port_base)
        .map_err(|e| format!("new connections: {e}"))?;
    let proto = match o.proto {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
    };
    let reflect = match o.reflect {
        Switch::Auto => mode.replies_through_forwarder(),
        // Only NAT and FULLNAT replies come back through the forwarder; in
        // the other modes a reflected packet would return as a request and
        // bounce forever.
        Switch::On if !mode.replies_through_forwarder() => {
            return Err(format!(
                "--reflect on needs --expect nat, fullnat or io-reflect, not {}",
                mode.name()
            ))
        }
        Switch::On => true,
        Switch::Off => false,
    };
    let spec = |flags| TemplateSpec {
        family,
        proto,
        tcp_flags: flags,
        src_mac: o.gen_mac,
        dst_mac: o.dut_mac,
        dst_ip: o.vip,
        dst_port: o.vport,
        frame_len: o.pkt_size - FCS_LEN,
    };
    let (syn, ack) = match proto {
        Proto::Tcp => (tcp::SYN, tcp::ACK),
        Proto::Udp => (0, 0),
    };
    let expect = Expect {
        mode,
        family,
        gen_mac: o.gen_mac,
        dut_mac: o.dut_mac,
        vip: u32::from(o.vip),
        vport: o.vport,
        rport: o.rport.unwrap_or(o.vport),
        proto: proto.number(),
        rips,
        lips,
        clients,
        new_clients: new_space,
    };
    let handshake = if o.handshake {
        if proto != Proto::Tcp || !matches!(mode, Mode::Nat | Mode::Fullnat) || !reflect {
            return Err(
                "--handshake needs --proto tcp, --expect nat or fullnat and reflection".into(),
            );
        }
        let flood = FlowSpace::full(o.flood_net, o.flood_ips, 1024)
            .map_err(|e| format!("flood sources: {e}"))?;
        let (fa, fb) = (
            u32::from(o.flood_net),
            u32::from(o.flood_net) + o.flood_ips - 1,
        );
        for (what, net, ips) in [
            ("--client-net", o.client_net, o.client_ips),
            ("--new-conn-net", o.new_conn_net, o.new_conn_ips),
        ] {
            let (a, b) = (
                u32::from(net),
                u32::from(net).saturating_add(ips.saturating_sub(1)),
            );
            if a <= fb && fa <= b {
                return Err(format!(
                    "--flood-net overlaps {what}: their answers would mix"
                ));
            }
        }
        let mut answer = Template::new(&spec(tcp::ACK | tcp::PSH));
        answer.mark();
        Some(Handshake {
            answer,
            flood,
            flood_rate: o.flood_rate,
            server_isn: 0x5e5e_0000,
            max_inflight: o.max_inflight,
        })
    } else if o.flood_rate != FloodRate::Off || o.max_inflight > 0 {
        return Err("--flood-rate and --max-inflight need --handshake".into());
    } else {
        None
    };
    let plan = Plan {
        handshake,
        expect,
        flows: clients,
        new_space,
        prime: Template::new(&spec(syn)),
        steady: Template::new(&spec(ack)),
        fresh: Template::new(&spec(syn)),
        new_share_q16: (o.new_conn_share * 65536.0).round() as u32,
        rate_pps: o.rate,
        sample: o.sample,
        reflect,
        stop_if_silent: o.stop_if_silent,
        window_marks: o.window_marks,
        hz,
        settle_cycles: secs_to_cycles(o.settle_ms as f64 / 1000.0, hz),
        warmup_cycles: secs_to_cycles(o.warmup, hz),
        duration_cycles: secs_to_cycles(o.duration, hz),
        drain_cycles: secs_to_cycles(o.drain_ms as f64 / 1000.0, hz),
    };
    let info = RunInfo {
        mode: mode.name(),
        proto: match proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        },
        family: family.number(),
        flows: o.flows,
        pkt_size: o.pkt_size,
        rate_pps: o.rate,
        new_conn_share: o.new_conn_share,
        reflect,
        sample: o.sample,
        handshake: o.handshake,
    };
    Ok((plan, info))
}

fn run(o: &Opts, out: &fast::StdoutGuard) -> Result<(), String> {
    // Validate before starting DPDK (with a nominal clock; rebuilt below).
    build_plan(o, 1)?;
    let (args, port_name) = eal_args(o);
    let eal = Eal::init(&args).map_err(|e| format!("EAL: {e}"))?;
    let runtime_dir = eal.runtime_dir();
    let result = run_on_eal(o, out, &port_name);
    drop(eal);
    if let Some(dir) = runtime_dir {
        // Only our own prefix's directory, and only once EAL is done with it.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn run_on_eal(o: &Opts, out: &fast::StdoutGuard, port_name: &str) -> Result<(), String> {
    let hz = tsc_hz();
    let (plan, info) = build_plan(o, hz)?;
    let pool = Mempool::new_pktmbuf(POOL_NAME, o.mbufs, 256, 2176, -1)
        .map_err(|e| format!("mempool: {e}"))?;
    let bulk = fast::BulkPool::lookup(POOL_NAME).map_err(|e| e.to_string())?;
    let mut port = Port::by_name(port_name).map_err(|e| e.to_string())?;
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 1024,
        tx_desc: 1024,
        mtu: 0,
        mac: Some(o.gen_mac.0),
        promiscuous: false,
        rss_key: None,
        reta: Vec::new(),
    };
    let (mut rxqs, mut txqs) = port
        .configure(&cfg, &pool)
        .map_err(|e| format!("port {port_name}: {e}"))?;
    let (Some(mut rxq), Some(mut txq)) = (rxqs.pop(), txqs.pop()) else {
        return Err("port has no queues".into());
    };
    // A memif client's start fails while the server is not listening yet
    // (its socket file may exist before): try again until the timeout.
    let t0 = Instant::now();
    while let Err(e) = port.start() {
        if t0.elapsed().as_secs_f64() > o.link_timeout {
            return Err(format!("port start: {e}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut last_try = Instant::now();
    while !port.link().up {
        if t0.elapsed().as_secs_f64() > o.link_timeout {
            return Err(format!(
                "memif link to {} not up after {} s (is the forwarder running?)",
                o.memif_socket, o.link_timeout
            ));
        }
        // A memif client connects once, at start: if the server was not
        // ready yet (its socket exists before its port is started), try
        // again by restarting the port. Not sooner: a client that drops a
        // half-done handshake can crash a DPDK 22.11 memif server
        // ("Error adding fd ... epoll_ctl" panic), so callers should start
        // the generator only once the forwarder is forwarding.
        if last_try.elapsed() >= Duration::from_secs(3) {
            let _ = port.stop();
            port.start().map_err(|e| format!("port restart: {e}"))?;
            last_try = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rtt = (0..o.repeat)
        .map(|_| Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("histogram: {e}"))?;
    let outcome = gen::run(&plan, &mut rxq, &mut txq, &bulk, &mut rtt);
    for (i, h) in rtt.iter().enumerate().take(outcome.windows.len()) {
        let report = Report::new(info.clone(), &outcome, i, h, hz);
        eprintln!("{}", report.human());
        let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        out.write_report(&format!("{json}\n"))
            .map_err(|e| format!("writing the report: {e}"))?;
    }
    eprintln!("vsd-gen: reported {} window(s)", outcome.windows.len());
    let t1 = Instant::now();
    while o.linger > 0.0 && port.link().up && t1.elapsed().as_secs_f64() < o.linger {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = port.stop();
    // Port before pool; EAL after both (in the caller).
    drop(port);
    drop(pool);
    Ok(())
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let out = match fast::StdoutGuard::divert() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vsd-gen: cannot set up stdout: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&opts, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vsd-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(extra: &[&str]) -> Opts {
        let mut a = vec!["vsd-gen"];
        a.extend_from_slice(extra);
        Opts::try_parse_from(a).unwrap()
    }

    #[test]
    fn counts_with_suffixes() {
        assert_eq!(parse_count("1K"), Ok(1000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("42"), Ok(42));
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("x").is_err());
        assert!(parse_count("").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:00:00:10:01"),
            Ok(MacAddr([2, 0, 0, 0, 0x10, 1]))
        );
        assert!(parse_mac("02:00:00:00:10").is_err());
        assert!(parse_mac("02:00:00:00:10:zz").is_err());
    }

    #[test]
    fn default_eal_line_is_a_memif_client_without_hugepages() {
        let o = opts(&["--file-prefix", "g1", "--memif-socket", "/tmp/x.sock"]);
        let (a, port) = eal_args(&o);
        assert_eq!(port, "net_memif0");
        assert_eq!(
            a,
            [
                "vsd-gen",
                "-l",
                "0",
                "--no-pci",
                "--file-prefix=g1",
                "--no-huge",
                "-m512",
                "--vdev",
                "net_memif0,role=client,socket=/tmp/x.sock,socket-abstract=no"
            ]
        );
        let o = opts(&[
            "--huge",
            "--file-prefix",
            "g",
            "--",
            "--vdev",
            "net_ring0",
            "-v",
        ]);
        let (a, port) = eal_args(&o);
        assert_eq!(port, "net_ring0");
        assert_eq!(
            a[5..],
            ["--huge-unlink", "-m512", "--vdev", "net_ring0", "-v"]
        );
    }

    #[test]
    fn plan_validation() {
        assert!(build_plan(&opts(&[]), 1_000_000_000).is_ok());
        for bad in [
            &["--pkt-size", "63"][..],
            &["--pkt-size", "1519"],
            &["--flows", "0"],
            &["--flows", "11M"],
            &["--new-conn-share", "1.5"],
            &["--sample", "0"],
            &["--duration", "0"],
            &["--expect", "dr", "--rips", ""],
            &["--flows", "10M", "--client-ips", "100"],
            &["--expect", "dr", "--reflect", "on"],
            &["--repeat", "0"],
            &["--flood-rate", "1M"],
            &["--max-inflight", "64"],
            &["--handshake", "--expect", "nat"],
            &["--handshake", "--expect", "dr", "--proto", "tcp"],
            &[
                "--handshake",
                "--expect",
                "nat",
                "--proto",
                "tcp",
                "--reflect",
                "off",
            ],
            &[
                "--handshake",
                "--expect",
                "nat",
                "--proto",
                "tcp",
                "--flood-net",
                "198.19.1.0",
            ],
            &[
                "--handshake",
                "--expect",
                "nat",
                "--proto",
                "tcp",
                "--flood-net",
                "198.19.127.255",
                "--flood-ips",
                "2",
            ],
            &[
                "--handshake",
                "--expect",
                "nat",
                "--proto",
                "tcp",
                "--flood-ips",
                "0",
            ],
        ] {
            assert!(build_plan(&opts(bad), 1).is_err(), "{bad:?} accepted");
        }
        let (p, info) = build_plan(
            &opts(&[
                "--expect", "nat", "--proto", "tcp", "--flows", "1M", "--rport", "8080",
            ]),
            2_000_000_000,
        )
        .unwrap();
        assert!(p.reflect && info.reflect);
        assert_eq!(p.expect.rport, 8080);
        assert_eq!(p.flows.len(), 1_000_000);
        assert_eq!(p.prime.len(), 60);
        assert_eq!(p.steady.bytes()[14 + 20 + 13], tcp::ACK);
        assert_eq!(p.prime.bytes()[14 + 20 + 13], tcp::SYN);
        assert_eq!(p.duration_cycles, 20_000_000_000);
        assert!(p.handshake.is_none());
        let (p, info) = build_plan(
            &opts(&[
                "--expect",
                "fullnat",
                "--proto",
                "tcp",
                "--handshake",
                "--flood-rate",
                "max",
            ]),
            1,
        )
        .unwrap();
        let hs = p.handshake.unwrap();
        assert!(info.handshake);
        assert_eq!(hs.flood_rate, FloodRate::Max);
        assert_eq!(hs.answer.bytes()[14 + 20 + 13], tcp::ACK | tcp::PSH);
        assert_eq!(parse_flood_rate("0"), Ok(FloodRate::Off));
        assert_eq!(parse_flood_rate("off"), Ok(FloodRate::Off));
        assert_eq!(parse_flood_rate("1.5M"), Ok(FloodRate::Paced(1_500_000)));
        assert!(parse_flood_rate("fast").is_err());
        let (p, _) = build_plan(&opts(&["--expect", "dr", "--new-conn-share", "0.25"]), 1).unwrap();
        assert!(!p.reflect);
        assert_eq!(p.new_share_q16, 16384);
    }
}
