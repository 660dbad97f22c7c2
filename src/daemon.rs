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
use crate::dataplane::worker::{NeighUpdate, Worker, WorkerPort, NEIGH_INBOX};
use crate::dpdk::{Eal, LaunchedLcore, Mempool, Port, PortConfig, TxBuffer};
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
    ports: &'a [PortView],
    pool: &'a Mempool,
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
        json!({
            "total": {"events": pairs(&total.events), "drops": pairs(&total.drops)},
            "workers": per_worker,
        })
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
                "unknown command {cmd:?} (known: version, status, counters, ports, xstats)"
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

/// Run the director until a stop signal. Returns the process exit code.
pub fn run(cfg: Config) -> Result<(), String> {
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

    // workers
    let stop = Arc::new(AtomicBool::new(false));
    let inboxes: Vec<Arc<ArrayQueue<NeighUpdate>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(NEIGH_INBOX)))
        .collect();
    let mut per_worker_queues: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (rxq, txq) in queues {
        for (w, (r, t)) in rxq.into_iter().zip(txq).enumerate() {
            per_worker_queues[w].push((r, t));
        }
    }
    let mut counters = Vec::new();
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
                addrs: v.addrs.clone(),
                neigh: NeighTable::new(cfg.neighbour),
                tx_dropped_seen: 0,
            })
            .collect();
        let mut worker = Worker {
            index: w,
            ports,
            counters: c,
            stop: stop.clone(),
            pool: pool.clone(),
            inbox: inboxes[w].clone(),
            peers: inboxes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != w)
                .map(|(_, q)| q.clone())
                .collect(),
        };
        let lcore = cfg.lcores.workers[w];
        launched.push(
            LaunchedLcore::launch(lcore, move || worker.run())
                .map_err(|e| format!("worker {w}: {e}"))?,
        );
    }
    log!(
        "running: {} worker(s) on lcores {:?}, control socket {}",
        nworkers,
        cfg.lcores.workers,
        cfg.control.socket.display()
    );

    let mut server = ControlServer::bind(&cfg.control.socket)?;
    server.set_mode(cfg.control.socket_mode)?;
    let mut control = Control {
        started: Instant::now(),
        worker_lcores: cfg.lcores.workers.clone(),
        counters,
        ports: &views,
        pool: &pool,
    };
    while !STOP.load(Ordering::SeqCst) {
        server.poll(&mut control);
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
