//! Everything between EAL start and EAL cleanup: ports, workers, the control
//! loop and the ordered shutdown, as named steps of [`serve`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use super::control::open_announcer;
use super::{
    signals, startup, twin, vip_activity, Control, PlaneView, PortView, DEST_CAPACITY, STOP,
};
use crate::control::config::Config;
use crate::control::health::HealthMonitor;
use crate::control::metrics_http::MetricsServer;
use crate::control::socket::ControlServer;
use crate::control::state::ControlState;
use crate::control::vipwatch::{FollowedVip, VipWatch};
use crate::control::wait::WaitSet;
use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::exception::{PuntBudget, TwinQueue};
use crate::dataplane::idle::Idle;
use crate::dataplane::local::PortAddrs;
use crate::dataplane::neigh::NeighTable;
use crate::dataplane::publish::{Published, Subscriber};
use crate::dataplane::sync_feed::SyncFeed;
use crate::dataplane::worker::{
    ConnDump, NeighUpdate, PlaneConfig, SteerOut, Worker, WorkerLatency, WorkerPort, FWD_BATCH,
    NEIGH_INBOX, STEER_RING_SIZE, TEMPLATE_INBOX,
};
use crate::dpdk::{Eal, LaunchedLcore, Mempool, Port, PortConfig, SteerBatch, SteerRing, TxBuffer};
use crate::lb::director::{CoreLb, CoreLbConfig};
use crate::lb::load::{CoreLoad, GlobalLoad};
use crate::lb::owner::RssOwner;
use crate::lb::stats::StatsTable;
use crate::lb::types::FwdMethod;
use crate::wire::{MacAddr, SYMMETRIC_KEY};

/// The `iface=` of a net_tap vdev spec (DPDK's default `dtap0`... names
/// are not guessed: without `iface=` there is nothing to look up).
fn tap_iface_of(dev: &crate::control::config::PortDevice) -> Option<String> {
    let crate::control::config::PortDevice::Vdev(spec) = dev else {
        return None;
    };
    let mut parts = spec.split(',');
    if !parts.next()?.starts_with("net_tap") {
        return None;
    }
    parts.find_map(|kv| kv.strip_prefix("iface=").map(str::to_string))
}

/// Outer sources of TUN packets (IPv4, IPv6 outer headers): the
/// configured one (`tun_source`, `tun_source6`); otherwise, per family, the director address on the port
/// toward the first tunnelled real server of that family, else the last
/// port's first address of the family (IPv6: not link-local), else the
/// unspecified address (no port has one: nothing of that family can be
/// tunnelled anywhere).
fn tun_sources(cfg: &Config, views: &[PortView]) -> (Ipv4Addr, std::net::Ipv6Addr) {
    let of_family = |v6: bool| -> Option<IpAddr> {
        let tun_rs = cfg
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter())
            .filter(|r| r.method == FwdMethod::Tunnel)
            .map(|r| r.address)
            .find(|a| a.is_ipv6() == v6);
        if let Some(rs) = tun_rs {
            let src = views
                .iter()
                .find(|v| v.addrs.on_link(rs))
                .and_then(|v| v.addrs.source_for(rs));
            if let Some(src) = src.filter(|a| a.is_ipv6() == v6) {
                return Some(src);
            }
        }
        views.iter().rev().find_map(|v| {
            v.addrs.addrs.iter().map(|(a, _)| *a).find(|a| {
                a.is_ipv6() == v6
                    && !matches!(a, IpAddr::V6(b) if b.segments()[0] & 0xffc0 == 0xfe80)
            })
        })
    };
    let v4 = match (cfg.lb.tun_source, of_family(false)) {
        (Some(a), _) | (None, Some(IpAddr::V4(a))) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let v6 = match (cfg.lb.tun_source6, of_family(true)) {
        (Some(a), _) | (None, Some(IpAddr::V6(a))) => a,
        _ => std::net::Ipv6Addr::UNSPECIFIED,
    };
    (v4, v6)
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

/// Rate estimators, drained-slot reuse, and the longest the control thread
/// sleeps (stop and reload requests wake it at once, see `signals`).
const TICK_PERIOD: Duration = Duration::from_millis(100);
/// Refresh period of the summed connection counts while a scheduler or
/// threshold reads them (bounded staleness for lc, wlc, ...).
const LOAD_PERIOD: Duration = Duration::from_millis(10);

/// Service slots for per-service counters.
const SERVICE_CAPACITY: usize = 1024;

/// Everything between EAL start and EAL cleanup. Every error return drops
/// what was made in reverse order: workers are stopped and joined (by
/// [`startup::Workers`]) before the rings, ports and mempool go.
pub(super) fn serve(
    cfg: &Config,
    state: ControlState,
    health: Option<HealthMonitor>,
    eal: &Eal,
    bound: startup::Bound,
    control_signals: &signals::ControlSignals,
) -> Result<(), String> {
    let first = state.snapshot();
    check_worker_lcores(cfg, eal)?;
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
    let opened = open_ports(cfg, nworkers, &pool)?;
    let views = opened.views;
    let queues = opened.queues;
    // kernel twins (exception path), dropped before the pool
    let twin_ports = opened.twin_ports;
    let twin_queues = opened.twin_queues;

    // the data-plane sync transport's view of the ports
    crate::control::syncd::register_ports(
        views
            .iter()
            .zip(&cfg.ports)
            .enumerate()
            .map(|(index, (v, pc))| crate::control::syncd::SyncPort {
                index,
                name: v.name.clone(),
                twin: v.kernel_iface.clone(),
                addrs: v.addrs.addrs.iter().map(|(a, _)| *a).collect(),
                // an mbuf's data room less its headroom (RTE_PKTMBUF_HEADROOM)
                max_frame: (usize::from(pc.mtu) + 14)
                    .min(usize::from(cfg.mempool.data_room).saturating_sub(128)),
            })
            .collect(),
    );
    let owner = flow_owner(nworkers, &views);

    let per_ms = (crate::dpdk::tsc_hz() / 1000).max(1);
    let now_ms = crate::dpdk::tsc_now() / per_ms;
    let vipwatch = follow_vips(cfg)?;
    let plane = Arc::new(Published::new(Arc::new(PlaneConfig {
        services: first.services.clone(),
        timeouts: first.timeouts,
        marks: first.marks.clone(),
        defense: first.defense,
        followed_vips: vip_activity(vipwatch.as_ref()),
    })));
    let global = Arc::new(GlobalLoad::new(DEST_CAPACITY));
    let (lb_cfg, l4_csum_offload) = forwarding_config(cfg, &views, nworkers);

    let rings = steering_rings(nworkers)?;

    // Bind the control socket now: what can fail must fail before any
    // worker runs. (The metrics listener is bound already.)
    let mut server = ControlServer::bind(&cfg.control.socket)?;
    server.set_mode(cfg.control.socket_mode)?;
    let mut metrics = bound.metrics;

    // workers
    let stop = Arc::new(AtomicBool::new(false));
    let mut launched = startup::Workers::new(stop.clone());
    let workers = launch_workers(
        &mut launched,
        &WorkerSetup {
            cfg,
            nworkers,
            views: &views,
            pool: &pool,
            plane: &plane,
            global: &global,
            owner: &owner,
            rings: &rings,
            lb_cfg: &lb_cfg,
            l4_csum_offload,
            now_ms,
            stop: &stop,
        },
        queues,
        twin_queues,
    )?;
    log!(
        "running: {} worker(s) on lcores {:?}, {} service(s), control socket {}",
        nworkers,
        cfg.lcores.workers,
        plane.load().services.services().len(),
        cfg.control.socket.display()
    );
    // systemd Type=notify: workers run and the control socket is listening.
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        log::warn!("sd_notify READY: {e}");
    }

    // The control thread must never preempt packet work sharing its CPU
    // (on small machines it shares one with a worker or a generator):
    // SCHED_BATCH turns off wakeup preemption for this thread only.
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
    // valid, zeroed sched_param; failure only leaves the default policy.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
    let mut control = Control {
        view: PlaneView {
            started: Instant::now(),
            config_path: PathBuf::from(&cfg.source),
            keepalived_path: cfg.keepalived.as_ref().map(PathBuf::from),
            worker_lcores: cfg.lcores.workers.clone(),
            counters: workers.counters,
            lb_stats: workers.lb_stats,
            global: global.clone(),
            dumps: workers.dumps,
            adopted: workers.adopted,
            latencies: workers.latencies,
            conn_capacity: lb_cfg.conn_capacity as u64 * nworkers as u64,
            ports: &views,
            pool: &pool,
            plane: plane.clone(),
            vip_watch: vipwatch.as_ref().map(VipWatch::stats),
            announce: None,
        },
        state,
        published_watch: vipwatch.as_ref().map_or(0, VipWatch::version),
        vipwatch,
        syncd: crate::control::syncd::SyncDaemons::new(workers.sync_feeds, owner.clone()),
        sync_config: cfg.sync_daemons.clone(),
        health,
        rules_file: cfg.control.rules_file.clone(),
        rules_written: None,
        announce: match &cfg.announce {
            Some(c) => {
                let mut a = open_announcer(c.clone())?;
                a.remember(cfg.vips.iter().map(|v| v.address));
                Some(a)
            }
            None => None,
        },
        announce_evaluated: None,
    };
    control.evaluate_announce(&launched.finished_each(), true);
    control.save_rules();
    // `[[sync_daemon]]`: started now that the twins exist
    for spec in &cfg.sync_daemons {
        control
            .state
            .apply(&crate::control::ipvsadm::Command::StartDaemon(spec.clone()))
            .map_err(|e| format!("sync_daemon {}: {e}", spec.role.name()))?;
    }
    control.run_sync_daemons()?;
    if let Some(addr) = metrics.as_ref().and_then(MetricsServer::local_addr) {
        log!("prometheus metrics on http://{addr}/metrics");
    }
    let loads = workers.loads;
    control_loop(
        &mut control,
        &mut server,
        &mut metrics,
        &launched,
        control_signals,
        &global,
        &loads,
        first.version,
    );
    stop_control(&mut control);
    let failures = launched.stop_and_join();
    for (lcore, e) in &failures {
        log::error!("worker on lcore {lcore} failed: {e}");
    }
    release_ports(server, rings, views, twin_ports, pool);
    if !failures.is_empty() {
        Err("a worker failed".into())
    } else {
        Ok(())
    }
}

/// Every worker lcore must be one EAL enabled, or its launch would fail
/// after the ports are up.
fn check_worker_lcores(cfg: &Config, eal: &Eal) -> Result<(), String> {
    for l in &cfg.lcores.workers {
        if !eal.lcore_enabled(*l) {
            return Err(format!("worker lcore {l} is not enabled in EAL"));
        }
    }
    Ok(())
}

/// What [`open_ports`] made, in the order [`serve`] binds (and so drops) it.
struct OpenPorts {
    views: Vec<PortView>,
    queues: Vec<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>,
    twin_ports: Vec<Port>,
    twin_queues: Vec<Option<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>>,
}

/// Configure and start every `[[port]]` (one rx and one tx queue per
/// worker) and its kernel twin, and log what each driver gave.
fn open_ports(cfg: &Config, nworkers: usize, pool: &Arc<Mempool>) -> Result<OpenPorts, String> {
    let mut views = Vec::new();
    let mut queues = Vec::new();
    // kernel twins (exception path), dropped before the pool
    let mut twin_ports: Vec<Port> = Vec::new();
    let mut twin_queues: Vec<Option<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>> =
        Vec::new();
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
            .configure(&pcfg, pool)
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
        let addrs = PortAddrs::new(
            mac,
            pc.addresses
                .iter()
                .map(|c| (c.addr, c.prefix_len))
                .collect(),
            cfg.vips
                .iter()
                .filter(|v| v.port == idx)
                .map(|v| v.address)
                .collect(),
            pc.gateways.clone(),
        );
        log!(
            "port {} ({}, driver {}): mac {}, {} queue(s), rss {}",
            pc.name,
            pc.device.eal_name(),
            port.info().driver,
            mac,
            nworkers,
            if port.rss_active() { "on" } else { "off" }
        );
        let missing = port.rss_missing_l4();
        if !missing.is_empty() {
            log!(
                "port {}: warning: the driver's RSS does not hash {} on ports; such flows may \
                 reach another worker than the ownership rule predicts",
                pc.name,
                missing.join(", ")
            );
        }
        match &pc.kernel {
            Some(k) => {
                let t = twin::open(idx, pc, k, mac.0, nworkers, pool)?;
                log!(
                    "port {}: kernel twin {} (driver {}), mac {mac}",
                    pc.name,
                    k.iface,
                    t.port.info().driver
                );
                twin_ports.push(t.port);
                twin_queues.push(Some((t.rx, t.tx)));
            }
            None => twin_queues.push(None),
        }
        queues.push((rxq, txq));
        views.push(PortView {
            tap_iface: tap_iface_of(&pc.device),
            port,
            name: pc.name.clone(),
            mac,
            addrs,
            follow: cfg
                .vips
                .iter()
                .filter(|v| v.port == idx)
                .filter_map(|v| Some((v.address, v.follow.clone()?)))
                .collect(),
            kernel_iface: pc.kernel.as_ref().map(|k| k.iface.clone()),
        });
    }
    Ok(OpenPorts {
        views,
        queues,
        twin_ports,
        twin_queues,
    })
}

/// Flow ownership: the NIC's RETA (every port gets the same mapping) or,
/// without RSS, the same rule in software; none with a single worker.
fn flow_owner(nworkers: usize, views: &[PortView]) -> Option<Arc<RssOwner>> {
    (nworkers > 1).then(|| {
        let reta_size = views
            .iter()
            .filter(|v| v.port.rss_active())
            .map(|v| v.port.info().reta_size as usize)
            .find(|n| *n > 0)
            .unwrap_or(128);
        Arc::new(RssOwner::round_robin(nworkers as u16, reta_size))
    })
}

/// VIPs that follow a kernel interface: learn the addresses before the
/// workers start, so they begin with the right set.
fn follow_vips(cfg: &Config) -> Result<Option<VipWatch>, String> {
    let followed: Vec<FollowedVip> = cfg
        .vips
        .iter()
        .filter_map(|v| {
            Some(FollowedVip {
                address: v.address,
                port: v.port,
                iface: v.follow.clone()?,
            })
        })
        .collect();
    Ok(if followed.is_empty() {
        None
    } else {
        let w = VipWatch::open_synced(followed, Duration::from_secs(2))
            .map_err(|e| format!("VIPs that follow an interface: rtnetlink: {e}"))?;
        for (v, active) in w.states() {
            log!(
                "vip {} follows {}: {}",
                v.address,
                v.iface,
                if active { "active" } else { "inactive" }
            );
        }
        Some(w)
    })
}

/// The workers' forwarding settings from `[lb]` and the ports (MTU, TUN
/// sources, checksum offload), logged; and whether the NIC sums L4.
fn forwarding_config(cfg: &Config, views: &[PortView], nworkers: usize) -> (CoreLbConfig, bool) {
    // NIC checksum offload for forwarded TCP/UDP: only on hardware ports
    // that offer it (a software PMD's "offload" is a full software sum,
    // slower than the incremental update)
    let want_csum = crate::dpdk::TX_CSUM_OFFLOADS;
    let l4_csum_offload = !views.is_empty()
        && cfg.ports.iter().zip(views).all(|(pc, v)| {
            matches!(pc.device, crate::control::config::PortDevice::Pci { .. })
                && v.port.tx_offloads() & want_csum == want_csum
        });
    let (tun_source4, tun_source6) = tun_sources(cfg, views);
    let lb_cfg = CoreLbConfig {
        l4_csum: if l4_csum_offload {
            crate::lb::fwd::L4Csum::Skip
        } else {
            crate::lb::fwd::L4Csum::Update
        },
        cores: nworkers as u16,
        mtu: views
            .iter()
            .filter_map(|v| v.port.mtu().ok())
            .min()
            .unwrap_or(1500),
        tun_source: tun_source4,
        tun_source6,
        conn_capacity: cfg.lb.conn_capacity as usize,
        conn_capacity6: cfg.lb.conn_capacity6 as usize,
        expire_nodest_conn: cfg.lb.expire_nodest_conn,
        conn_reuse_mode: cfg.lb.conn_reuse_mode,
        expire_quiescent_template: cfg.lb.expire_quiescent_template,
        local_port_min: cfg.lb.local_port_min,
        local_port_max: cfg.lb.local_port_max,
        service_capacity: SERVICE_CAPACITY,
        ..CoreLbConfig::default()
    };
    log!(
        "forwarding: {} IPv4 + {} IPv6 conns per worker, TUN source {} / {}, MTU {}, L4 checksums {}",
        lb_cfg.conn_capacity,
        lb_cfg.conn_capacity6,
        lb_cfg.tun_source,
        lb_cfg.tun_source6,
        lb_cfg.mtu,
        if l4_csum_offload {
            "by the NIC"
        } else {
            "updated incrementally"
        }
    );
    (lb_cfg, l4_csum_offload)
}

/// Steering rings: `rings[i][j]` carries packets from worker i to worker j.
type Rings = Vec<Vec<Option<Arc<SteerRing>>>>;

/// One ring per ordered pair of workers, for packets a worker received but
/// another owns.
fn steering_rings(nworkers: usize) -> Result<Rings, String> {
    let mut rings: Rings = Vec::new();
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
    Ok(rings)
}

/// What every worker is made from, shared by [`launch_workers`].
struct WorkerSetup<'a> {
    cfg: &'a Config,
    nworkers: usize,
    views: &'a [PortView],
    pool: &'a Arc<Mempool>,
    plane: &'a Arc<Published<PlaneConfig>>,
    global: &'a Arc<GlobalLoad>,
    owner: &'a Option<Arc<RssOwner>>,
    rings: &'a Rings,
    lb_cfg: &'a CoreLbConfig,
    l4_csum_offload: bool,
    now_ms: u64,
    stop: &'a Arc<AtomicBool>,
}

/// The control thread's handles on the launched workers.
struct WorkerHandles {
    counters: Vec<Arc<WorkerCounters>>,
    loads: Vec<Arc<CoreLoad>>,
    lb_stats: Vec<Arc<StatsTable>>,
    dumps: Vec<Arc<ConnDump>>,
    adopted: Vec<Arc<AtomicU64>>,
    latencies: Vec<Arc<WorkerLatency>>,
    sync_feeds: Vec<Arc<SyncFeed>>,
}

/// Build one worker per worker lcore (its queues on every port, its
/// connection table, its rings and inboxes) and launch it; a launched
/// worker is in `launched`, which stops and joins it on any later error.
fn launch_workers(
    launched: &mut startup::Workers,
    s: &WorkerSetup<'_>,
    queues: Vec<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>,
    twin_queues: Vec<Option<(Vec<crate::dpdk::RxQueue>, Vec<crate::dpdk::TxQueue>)>>,
) -> Result<WorkerHandles, String> {
    let WorkerSetup {
        cfg,
        nworkers,
        views,
        pool,
        plane,
        global,
        owner,
        rings,
        lb_cfg,
        l4_csum_offload,
        now_ms,
        stop,
    } = *s;
    let inboxes: Vec<Arc<ArrayQueue<NeighUpdate>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(NEIGH_INBOX)))
        .collect();
    let template_inboxes: Vec<Arc<ArrayQueue<_>>> = (0..nworkers)
        .map(|_| Arc::new(ArrayQueue::new(TEMPLATE_INBOX)))
        .collect();
    let sync_feeds: Vec<Arc<SyncFeed>> = (0..nworkers)
        .map(|_| Arc::new(SyncFeed::default()))
        .collect();
    let mut per_worker_queues: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    for ((rxq, txq), twin) in queues.into_iter().zip(twin_queues) {
        let mut twin = twin.map(|(r, t)| r.into_iter().zip(t));
        for (w, (r, t)) in rxq.into_iter().zip(txq).enumerate() {
            let tq = twin
                .as_mut()
                .and_then(Iterator::next)
                .map(|(rx, tx)| TwinQueue {
                    rx,
                    tx: TxBuffer::new(tx),
                    tx_dropped_seen: 0,
                });
            per_worker_queues[w].push((r, t, tq));
        }
    }
    let mut counters = Vec::new();
    let mut loads: Vec<Arc<CoreLoad>> = Vec::new();
    let mut lb_stats: Vec<Arc<StatsTable>> = Vec::new();
    let mut dumps = Vec::new();
    let mut adopted = Vec::new();
    let mut latencies = Vec::new();
    for (w, qs) in per_worker_queues.into_iter().enumerate() {
        let dump = Arc::new(ConnDump::default());
        let adopted_gen = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(WorkerLatency::default());
        dumps.push(dump.clone());
        adopted.push(adopted_gen.clone());
        latencies.push(latency.clone());
        let c = Arc::new(WorkerCounters::default());
        counters.push(c.clone());
        let ports = qs
            .into_iter()
            .zip(views)
            .map(|((rx, tx, twin), v)| WorkerPort {
                rx,
                tx: TxBuffer::new(tx),
                twin,
                static_vips: v.addrs.vips.clone(),
                addrs: v.addrs.clone(),
                neigh: NeighTable::new(cfg.neighbour),
                tx_dropped_seen: 0,
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
            sync: sync_feeds[w].clone(),
            sync_tx: Default::default(),
            dump,
            adopted: adopted_gen,
            latency,
            l4_csum_offload,
            fwd_batch: Vec::with_capacity(FWD_BATCH),
            fwd_meta: Vec::with_capacity(FWD_BATCH),
            martian: Default::default(),
            follow: Default::default(),
            mld: Default::default(),
            idle: Idle::new(cfg.lcores.idle),
            punt_budget: PuntBudget::default(),
        };
        let lcore = cfg.lcores.workers[w];
        launched.push(
            LaunchedLcore::launch(lcore, move || {
                signals::keep_async_signals_off_worker();
                worker.run()
            })
            .map_err(|e| format!("worker {w}: {e}"))?,
        );
    }
    Ok(WorkerHandles {
        counters,
        loads,
        lb_stats,
        dumps,
        adopted,
        latencies,
        sync_feeds,
    })
}

/// The control thread's loop: signals, vsadm clients, scrapers, rtnetlink,
/// health transitions and the periodic duties, until a stop is asked or a
/// worker stops.
#[allow(clippy::too_many_arguments)]
fn control_loop(
    control: &mut Control<'_>,
    server: &mut ControlServer,
    metrics: &mut Option<MetricsServer>,
    launched: &startup::Workers,
    control_signals: &signals::ControlSignals,
    global: &GlobalLoad,
    loads: &[Arc<CoreLoad>],
    first_version: u64,
) {
    let mut published_version = first_version;
    let load_refs: Vec<&CoreLoad> = loads.iter().map(|l| &**l).collect();
    let mut waits = WaitSet::default();
    let mut next_sum = Instant::now();
    let mut next_tick = Instant::now() + TICK_PERIOD;
    loop {
        let asked = control_signals.take();
        if asked.stop {
            log!(
                "stop requested by {}",
                signals::describe_sender(asked.stop_from)
            );
            STOP.store(true, Ordering::SeqCst);
            break;
        }
        if asked.reload {
            log!(
                "SIGHUP from {}: reloading",
                signals::describe_sender(asked.reload_from)
            );
            control.reload();
            control.publish_if_changed(&mut published_version);
        }
        // Sleep until a client, a scraper or a signal needs us or a
        // periodic duty is due.
        waits.clear();
        waits.add(crate::control::wait::Interest::listener(
            control_signals.fd(),
        ));
        server.interest(&mut waits);
        if let Some(w) = control.vipwatch.as_ref() {
            waits.add(crate::control::wait::Interest::listener(w.fd()));
        }
        if let Some(m) = metrics.as_ref() {
            m.interest(&mut waits);
        }
        if let Some(fd) = control.health.as_ref().and_then(HealthMonitor::wake_fd) {
            waits.add(crate::control::wait::Interest::listener(fd));
        }
        let due = next_sum.min(next_tick);
        let io = waits.wait(due.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        // rtnetlink first: a VIP that came or went is published at once
        if control.poll_vipwatch() {
            control.publish_if_changed(&mut published_version);
        }
        // health transitions next: a dead server leaves the table at once
        if control.poll_health() {
            control.publish_if_changed(&mut published_version);
        }
        // Connection counts summed over cores: every LOAD_PERIOD while a
        // decision depends on them (lc, wlc, ..., thresholds), otherwise
        // with the tick; and before answering anybody, so listings are fresh.
        if io || now >= next_sum {
            global.refresh_upto(control.slots_in_use(), &load_refs);
            let fast = control.view.plane.load().services.reads_load();
            next_sum = now + if fast { LOAD_PERIOD } else { TICK_PERIOD };
        }
        if io {
            server.poll(control);
            if let Some(m) = metrics.as_mut() {
                m.poll(&mut || control.prometheus_text());
            }
            control.publish_if_changed(&mut published_version);
        }
        if now >= next_tick {
            if let Some(w) = control.vipwatch.as_mut() {
                w.tick();
            }
            control.tick();
            if control.tick_health() {
                control.publish_if_changed(&mut published_version);
            }
            next_tick = now + TICK_PERIOD;
        }
        if control.announce.is_some() {
            control.evaluate_announce(&launched.finished_each(), false);
        }
        if launched.any_finished() {
            log::error!("a worker stopped unexpectedly; shutting down");
            break;
        }
    }
}

/// The way out, before the workers stop: routes withdrawn first (so that
/// the routers move the traffic while we still forward it), the rules file
/// saved, health's down notifiers run, systemd told.
fn stop_control(control: &mut Control<'_>) {
    log!("stopping");
    // routes first, so that the routers move the traffic while we still
    // forward it
    if let Some(a) = control.announce.as_mut() {
        a.shutdown();
    }
    control.save_rules();
    // omega: the down notifiers run on the way out
    if let Some(h) = control.health.as_mut() {
        h.shutdown();
    }
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]) {
        log::warn!("sd_notify STOPPING: {e}");
    }
}

/// After the workers are joined: the control socket, the rings, the ports
/// and their kernel twins go, in that order, and the mempool last.
fn release_ports(
    server: ControlServer,
    rings: Rings,
    mut views: Vec<PortView>,
    mut twin_ports: Vec<Port>,
    pool: Arc<Mempool>,
) {
    drop(server);
    drop(rings);
    for v in &mut views {
        if let Err(e) = v.port.stop() {
            log!("port {}: {e}", v.name);
        }
    }
    drop(views);
    for t in &mut twin_ports {
        if let Err(e) = t.stop() {
            log!("kernel twin {}: {e}", t.name());
        }
    }
    drop(twin_ports);
    drop(pool);
}
