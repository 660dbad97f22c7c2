//! The director process: boots EAL from the config, brings up the ports,
//! launches one worker per worker lcore and runs the control loop on the main
//! lcore until SIGINT or SIGTERM. Shutdown order matters: workers stop and
//! are joined before the ports stop, ports close before the mempool goes,
//! and EAL cleanup comes last.

use crate::control::config::Config;
use crate::control::socket::{ControlServer, Handler};
use crate::dataplane::counters::{CounterSnapshot, WorkerCounters};
use crate::dataplane::local::PortAddrs;
use crate::dataplane::neigh::NeighTable;
use crate::dataplane::publish::{Published, Subscriber};
use crate::dataplane::worker::{
    NeighUpdate, PlaneConfig, SteerOut, Worker, WorkerPort, NEIGH_INBOX, STEER_RING_SIZE,
    TEMPLATE_INBOX,
};
use crate::dpdk::{Eal, LaunchedLcore, Mempool, Port, PortConfig, SteerBatch, SteerRing, TxBuffer};
use crate::lb::director::{CoreLb, CoreLbConfig};
use crate::lb::fwd::FwdDrop;
use crate::lb::load::{CoreLoad, GlobalLoad};
use crate::lb::owner::RssOwner;
use crate::lb::service::{ServiceConfig, ServiceTable};
use crate::lb::stats::FwdEvent;
use crate::lb::stats::StatsTable;
use crate::lb::tcp_state::Timeouts;
use crate::lb::types::FwdMethod;
use crate::wire::{MacAddr, SYMMETRIC_KEY};
use crossbeam::queue::ArrayQueue;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_sig: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

macro_rules! log {
    ($($t:tt)*) => { eprintln!("vsd: {}", format!($($t)*)) };
}

/// What the control plane shows of a port.
struct PortView {
    port: Port,
    name: String,
    mac: MacAddr,
    addrs: PortAddrs,
}

struct Control<'a> {
    started: Instant,
    worker_lcores: Vec<u32>,
    counters: Vec<Arc<WorkerCounters>>,
    lb_stats: Vec<Arc<StatsTable>>,
    ports: &'a [PortView],
    pool: &'a Mempool,
    plane: Arc<Published<PlaneConfig>>,
}

impl Control<'_> {
    fn counters_json(&self) -> Value {
        let total = CounterSnapshot::sum(self.counters.iter().map(|c| &**c));
        let per_worker: Vec<Value> = self
            .counters
            .iter()
            .zip(&self.worker_lcores)
            .map(|(c, l)| {
                let s = CounterSnapshot::sum([&**c]);
                json!({"lcore": l, "events": pairs(&s.events), "drops": pairs(&s.drops)})
            })
            .collect();
        let refs: Vec<&StatsTable> = self.lb_stats.iter().map(|t| &**t).collect();
        let fwd = StatsTable::sum(&refs);
        let fwd_drops: serde_json::Map<String, Value> = FwdDrop::ALL
            .iter()
            .map(|d| (d.name().to_string(), json!(fwd.drop_count(*d))))
            .collect();
        let fwd_events: serde_json::Map<String, Value> = FwdEvent::ALL
            .iter()
            .map(|e| (e.name().to_string(), json!(fwd.event(*e))))
            .collect();
        json!({
            "total": {"events": pairs(&total.events), "drops": pairs(&total.drops)},
            "forwarding": {"events": fwd_events, "drops": fwd_drops},
            "workers": per_worker,
        })
    }

    /// Services, their servers and counters, as the workers see them.
    fn services_json(&self) -> Value {
        let refs: Vec<&StatsTable> = self.lb_stats.iter().map(|t| &**t).collect();
        let sum = StatsTable::sum(&refs);
        let cv = |c: crate::lb::stats::CounterValues| {
            json!({"conns": c.conns, "in_pkts": c.in_pkts, "out_pkts": c.out_pkts,
                   "in_bytes": c.in_bytes, "out_bytes": c.out_bytes})
        };
        let snap = self.plane.load();
        Value::Array(
            snap.services
                .services()
                .iter()
                .map(|svc| {
                    json!({
                        "service": svc.key.to_string(),
                        "scheduler": svc.sched.name(),
                        "stats": cv(sum.service(svc.slot)),
                        "servers": svc.servers.iter().map(|rs| json!({
                            "address": rs.addr.to_string(),
                            "port": rs.port,
                            "method": rs.method.name(),
                            "weight": rs.weight,
                            "stats": cv(sum.dest(rs.id)),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    fn ports_json(&self) -> Value {
        Value::Array(
            self.ports
                .iter()
                .map(|p| {
                    let link = p.port.link();
                    let stats = p.port.stats().unwrap_or_default();
                    json!({
                        "name": p.name,
                        "driver": p.port.info().driver,
                        "mac": p.mac.to_string(),
                        "mtu": p.port.mtu().unwrap_or(0),
                        "link_up": link.up,
                        "speed_mbps": link.speed_mbps,
                        "rss": p.port.rss_active(),
                        "addresses": p.addrs.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                        "vips": p.addrs.vips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        "stats": {
                            "rx_packets": stats.rx_packets, "tx_packets": stats.tx_packets,
                            "rx_bytes": stats.rx_bytes, "tx_bytes": stats.tx_bytes,
                            "rx_missed": stats.rx_missed, "rx_errors": stats.rx_errors,
                            "tx_errors": stats.tx_errors, "rx_nombuf": stats.rx_nombuf,
                        },
                    })
                })
                .collect(),
        )
    }
}

fn pairs(list: &[(&'static str, u64)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

impl Handler for Control<'_> {
    fn handle(&mut self, cmd: &str, _req: &Value) -> Result<Value, String> {
        match cmd {
            "version" => Ok(json!({
                "vsd": env!("CARGO_PKG_VERSION"),
                "dpdk": Eal::version(),
                "protocol": crate::control::socket::PROTOCOL_VERSION,
            })),
            "status" => Ok(json!({
                "state": if STOP.load(Ordering::Relaxed) { "stopping" } else { "running" },
                "vsd": env!("CARGO_PKG_VERSION"),
                "dpdk": Eal::version(),
                "pid": std::process::id(),
                "uptime_s": self.started.elapsed().as_secs(),
                "workers": self.worker_lcores,
                "ports": self.ports_json(),
                "mbufs_in_use": self.pool.in_use(),
                "mbufs_available": self.pool.available(),
            })),
            "counters" => Ok(self.counters_json()),
            "ports" => Ok(self.ports_json()),
            "services" => Ok(self.services_json()),
            "xstats" => Ok(Value::Object(
                self.ports
                    .iter()
                    .map(|p| {
                        let x = p.port.xstats().unwrap_or_default();
                        (
                            p.name.clone(),
                            Value::Object(x.into_iter().map(|(k, v)| (k, json!(v))).collect()),
                        )
                    })
                    .collect(),
            )),
            _ => Err(format!(
                "unknown command {cmd:?} (known: version, status, counters, ports, xstats, services)"
            )),
        }
    }
}

fn v4_only<T>(items: impl Iterator<Item = (IpAddr, T)>) -> Vec<(std::net::Ipv4Addr, T)> {
    items
        .filter_map(|(a, t)| match a {
            IpAddr::V4(v4) => Some((v4, t)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The services the config describes (its `[[service]]` tables).
fn services_from_config(cfg: &Config, dest_capacity: usize) -> Result<ServiceTable, String> {
    use crate::control::config::ServiceKey as CKey;
    use crate::lb::service::{PersistMask, RealServerConfig, SchedFlags, ServiceKey};
    let mut table = ServiceTable::new(dest_capacity);
    for (i, s) in cfg.services.iter().enumerate() {
        let key = match s.key {
            CKey::Addr { proto, vip, port } => ServiceKey::Addr {
                proto,
                addr: vip,
                port,
            },
            CKey::Fwmark { mark, family } => ServiceKey::fwmark(mark, family),
        };
        let flag_names: Vec<&str> = s.flags.iter().map(|f| f.as_str()).collect();
        let flags = SchedFlags::parse(&flag_names.join(","), s.scheduler.name())
            .map_err(|e| format!("service[{i}]: {e}"))?;
        let persist_mask = s.netmask.map(|len| match key.af() {
            crate::lb::types::AddrFamily::Inet => PersistMask::V4(std::net::Ipv4Addr::from(
                u32::MAX
                    .checked_shl(32 - u32::from(len.min(32)))
                    .unwrap_or(0),
            )),
            crate::lb::types::AddrFamily::Inet6 => PersistMask::V6(len),
        });
        let config = ServiceConfig {
            scheduler: s.scheduler.name().to_string(),
            flags,
            persistence: s.persistence_timeout,
            persist_mask,
            one_packet: s.one_packet,
            local_addresses: s.local_addresses.clone(),
            ..ServiceConfig::default()
        };
        table
            .add_service(key, config)
            .map_err(|e| format!("service[{i}] {key}: {e}"))?;
        for r in &s.real_servers {
            let mut rs = RealServerConfig::new(r.address, r.port, r.method);
            rs.weight = r.weight;
            rs.upper_threshold = r.upper_threshold;
            rs.lower_threshold = r.lower_threshold;
            table
                .add_dest(&key, rs)
                .map_err(|e| format!("service[{i}] {key} real server {}: {e}", r.address))?;
        }
    }
    Ok(table)
}

/// Outer source of TUN packets: the configured one, else the director
/// address on the port toward the first tunnelled real server, else the
/// last port's first address.
fn tun_source(cfg: &Config, views: &[PortView]) -> std::net::Ipv4Addr {
    if let Some(a) = cfg.lb.tun_source {
        return a;
    }
    let tun_rs = cfg
        .services
        .iter()
        .flat_map(|s| s.real_servers.iter())
        .filter(|r| r.method == FwdMethod::Tunnel)
        .find_map(|r| match r.address {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        });
    if let Some(rs) = tun_rs {
        if let Some(src) = views
            .iter()
            .find(|v| v.addrs.on_link(rs))
            .and_then(|v| v.addrs.source_for(rs))
        {
            return src;
        }
    }
    views
        .iter()
        .rev()
        .find_map(|v| v.addrs.addrs.first().map(|(a, _)| *a))
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
}

/// Every queue but worker `w`'s own.
fn others<T>(queues: &[Arc<T>], w: usize) -> Vec<Arc<T>> {
    queues
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != w)
        .map(|(_, q)| q.clone())
        .collect()
}

/// Real-server slots (connections keep a slot until they drain).
const DEST_CAPACITY: usize = 4096;
/// Service slots for per-service counters.
const SERVICE_CAPACITY: usize = 1024;

/// Run the director until a stop signal.
pub fn run(cfg: Config) -> Result<(), String> {
    let table = services_from_config(&cfg, DEST_CAPACITY)?;
    let mut argv = cfg.eal_argv("vsd");
    // Hugepage files are unlinked as soon as they are mapped, so none are
    // left behind whatever way the process ends.
    if cfg.eal.huge
        && !argv
            .iter()
            .any(|a| a == "--huge-unlink" || a == "--in-memory")
    {
        argv.push("--huge-unlink".into());
    }
    log!("starting EAL: {}", argv.join(" "));
    let eal = Eal::init(&argv).map_err(|e| e.to_string())?;
    install_signal_handlers();

    for l in &cfg.lcores.workers {
        if !eal.lcore_enabled(*l) {
            return Err(format!("worker lcore {l} is not enabled in EAL"));
        }
    }
    let nworkers = cfg.lcores.workers.len();
    let pool = Arc::new(
        Mempool::new_pktmbuf(
            "vsd_pkt",
            cfg.mempool.mbufs,
            cfg.mempool.cache,
            cfg.mempool.data_room,
            -1,
        )
        .map_err(|e| e.to_string())?,
    );

    // ports: one rx and one tx queue per worker
    let mut views = Vec::new();
    let mut queues = Vec::new();
    for (idx, pc) in cfg.ports.iter().enumerate() {
        let mut port = Port::by_name(&pc.device.eal_name()).map_err(|e| e.to_string())?;
        let pcfg = PortConfig {
            rx_queues: nworkers as u16,
            tx_queues: nworkers as u16,
            rx_desc: pc.rx_desc,
            tx_desc: pc.tx_desc,
            mtu: pc.mtu,
            mac: pc.mac.map(|m| m.0),
            promiscuous: pc.promiscuous,
            rss_key: pc.rss.then_some(SYMMETRIC_KEY),
            reta: (0..nworkers as u16).collect(),
        };
        let (rxq, txq) = port
            .configure(&pcfg, &pool)
            .map_err(|e| format!("port {}: {e}", pc.name))?;
        port.start().map_err(|e| format!("port {}: {e}", pc.name))?;
        port.set_reta(&pcfg.reta)
            .map_err(|e| format!("port {}: {e}", pc.name))?;
        let mac = MacAddr(port.mac().map_err(|e| e.to_string())?);
        if port.mac_in_software() {
            log!(
                "port {}: driver cannot set the MAC; using {mac} in software",
                pc.name
            );
        }
        let addrs = PortAddrs {
            mac,
            addrs: v4_only(pc.addresses.iter().map(|c| (c.addr, c.prefix_len))),
            vips: v4_only(
                cfg.vips
                    .iter()
                    .filter(|v| v.port == idx)
                    .map(|v| (v.address, ())),
            )
            .into_iter()
            .map(|(a, _)| a)
            .collect(),
            gateway: match pc.gateway {
                Some(IpAddr::V4(g)) => Some(g),
                _ => None,
            },
        };
        log!(
            "port {} ({}, driver {}): mac {}, {} queue(s), rss {}",
            pc.name,
            pc.device.eal_name(),
            port.info().driver,
            mac,
            nworkers,
            if port.rss_active() { "on" } else { "off" }
        );
        queues.push((rxq, txq));
        views.push(PortView {
            port,
            name: pc.name.clone(),
            mac,
            addrs,
        });
    }

    // flow ownership: the NIC's RETA (every port gets the same mapping) or,
    // without RSS, the same rule in software
    let owner = (nworkers > 1).then(|| {
        let reta_size = views
            .iter()
            .filter(|v| v.port.rss_active())
            .map(|v| v.port.info().reta_size as usize)
            .find(|n| *n > 0)
            .unwrap_or(128);
        Arc::new(RssOwner::round_robin(nworkers as u16, reta_size))
    });

    let per_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
    let now_ms = crate::dpdk::tsc_now() / per_ms;
    let timeouts = Timeouts::default();
    let plane = Arc::new(Published::new(Arc::new(PlaneConfig {
        services: table.snapshot(),
        timeouts,
    })));
    let global = Arc::new(GlobalLoad::new(DEST_CAPACITY));
    let lb_cfg = CoreLbConfig {
        cores: nworkers as u16,
        mtu: views
            .iter()
            .filter_map(|v| v.port.mtu().ok())
            .min()
            .unwrap_or(1500),
        tun_source: tun_source(&cfg, &views),
        conn_capacity: cfg.lb.conn_capacity as usize,
        expire_nodest_conn: cfg.lb.expire_nodest_conn,
        local_port_min: cfg.lb.local_port_min,
        local_port_max: cfg.lb.local_port_max,
        service_capacity: SERVICE_CAPACITY,
        ..CoreLbConfig::default()
    };
    log!(
        "forwarding: {} conns per worker, TUN source {}, MTU {}",
        lb_cfg.conn_capacity,
        lb_cfg.tun_source,
        lb_cfg.mtu
    );

    // steering rings: rings[i][j] carries packets from worker i to worker j
    let mut rings: Vec<Vec<Option<Arc<SteerRing>>>> = Vec::new();
    for i in 0..nworkers {
        let mut row = Vec::new();
        for j in 0..nworkers {
            row.push(if i == j {
                None
            } else {
                Some(Arc::new(
                    SteerRing::new(&format!("vsd_steer_{i}_{j}"), STEER_RING_SIZE)
                        .map_err(|e| e.to_string())?,
                ))
            });
        }
        rings.push(row);
    }

    // workers
    let stop = Arc::new(AtomicBool::new(false));
    let inboxes: Vec<Arc<ArrayQueue<NeighUpdate>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(NEIGH_INBOX)))
        .collect();
    let template_inboxes: Vec<Arc<ArrayQueue<_>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(TEMPLATE_INBOX)))
        .collect();
    let mut per_worker_queues: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (rxq, txq) in queues {
        for (w, (r, t)) in rxq.into_iter().zip(txq).enumerate() {
            per_worker_queues[w].push((r, t));
        }
    }
    let mut counters = Vec::new();
    let mut loads: Vec<Arc<CoreLoad>> = Vec::new();
    let mut lb_stats: Vec<Arc<StatsTable>> = Vec::new();
    let mut launched = Vec::new();
    for (w, qs) in per_worker_queues.into_iter().enumerate() {
        let c = Arc::new(WorkerCounters::default());
        counters.push(c.clone());
        let ports = qs
            .into_iter()
            .zip(&views)
            .map(|((rx, tx), v)| WorkerPort {
                rx,
                tx: TxBuffer::new(tx),
                static_vips: v.addrs.vips.clone(),
                addrs: v.addrs.clone(),
                neigh: NeighTable::new(cfg.neighbour),
                tx_dropped_seen: 0,
                soft_steer: nworkers > 1 && !v.port.rss_active(),
            })
            .collect();
        let lb = CoreLb::new(
            CoreLbConfig {
                core: w as u16,
                ..lb_cfg.clone()
            },
            plane.load().services.clone(),
            global.clone(),
            owner.clone(),
            now_ms,
        )
        .map_err(|e| format!("worker {w}: connection table: {e:?}"))?;
        loads.push(lb.load().clone());
        lb_stats.push(lb.stats().clone());
        let mut worker = Worker {
            index: w,
            ports,
            counters: c,
            stop: stop.clone(),
            pool: pool.clone(),
            lb,
            config: Subscriber::new(plane.clone()),
            owner: owner.clone(),
            steer_out: rings[w]
                .iter()
                .map(|r| {
                    r.as_ref().map(|ring| SteerOut {
                        ring: ring.clone(),
                        batch: SteerBatch::new(),
                    })
                })
                .collect(),
            steer_in: rings.iter().filter_map(|row| row[w].clone()).collect(),
            inbox: inboxes[w].clone(),
            peers: others(&inboxes, w),
            template_inbox: template_inboxes[w].clone(),
            template_peers: others(&template_inboxes, w),
        };
        let lcore = cfg.lcores.workers[w];
        launched.push(
            LaunchedLcore::launch(lcore, move || worker.run())
                .map_err(|e| format!("worker {w}: {e}"))?,
        );
    }
    log!(
        "running: {} worker(s) on lcores {:?}, {} service(s), control socket {}",
        nworkers,
        cfg.lcores.workers,
        plane.load().services.services().len(),
        cfg.control.socket.display()
    );

    let mut server = ControlServer::bind(&cfg.control.socket)?;
    server.set_mode(cfg.control.socket_mode)?;
    let mut control = Control {
        started: Instant::now(),
        worker_lcores: cfg.lcores.workers.clone(),
        counters,
        lb_stats,
        ports: &views,
        pool: &pool,
        plane: plane.clone(),
    };
    let load_refs: Vec<&CoreLoad> = loads.iter().map(|l| &**l).collect();
    let mut last_sum = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        server.poll(&mut control);
        // connection counts summed over cores for lc, wlc, ... (bounded
        // staleness: one refresh period)
        if last_sum.elapsed() >= Duration::from_millis(10) {
            global.refresh(&load_refs);
            last_sum = Instant::now();
        }
        if launched.iter().any(LaunchedLcore::finished) {
            log!("a worker stopped unexpectedly; shutting down");
            break;
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            log!("SIGHUP: configuration reload is not supported yet; keeping the running config");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    log!("stopping");
    stop.store(true, Ordering::SeqCst);
    let mut failed = false;
    for l in launched {
        let lcore = l.lcore();
        if let Err(e) = l.join() {
            log!("worker on lcore {lcore} failed: {e}");
            failed = true;
        }
    }
    drop(server);
    drop(rings);
    for v in &mut views {
        if let Err(e) = v.port.stop() {
            log!("port {}: {e}", v.name);
        }
    }
    drop(views);
    drop(pool);
    drop(eal);
    log!("stopped");
    if failed {
        Err("a worker failed".into())
    } else {
        Ok(())
    }
}
