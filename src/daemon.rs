//! The director process: boots EAL from the config, brings up the ports,
//! launches one worker per worker lcore and runs the control loop on the main
//! lcore until SIGINT or SIGTERM. Shutdown order matters: workers stop and
//! are joined before the ports stop, ports close before the mempool goes,
//! and EAL cleanup comes last.

use crate::control::announce::Announcer;
use crate::control::config::Config;
use crate::control::health::HealthMonitor;
use crate::control::state::ControlState;
use crate::control::vipwatch::VipWatch;
use crate::dataplane::counters::WorkerCounters;
use crate::dataplane::local::PortAddrs;
use crate::dataplane::publish::Published;
use crate::dataplane::vipfollow::VipActivity;
use crate::dataplane::worker::{ConnDump, PlaneConfig, WorkerLatency};
use crate::dpdk::{Eal, Mempool, Port};
use crate::lb::load::GlobalLoad;
use crate::lb::stats::StatsTable;
use crate::wire::MacAddr;
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

mod signals;
mod startup;
mod taplink;
mod twin;

pub use startup::check;

/// Set once a stop is requested (SIGINT or SIGTERM), for `status`.
static STOP: AtomicBool = AtomicBool::new(false);

/// Informational lines; warnings and errors use `log::warn!`/`log::error!`.
macro_rules! log {
    ($($t:tt)*) => { log::info!($($t)*) };
}

// after `log!`, which they use
mod control;
mod serve;
mod view;

use serve::serve;

/// The followed VIPs and their state, as the workers take them.
fn vip_activity(w: Option<&VipWatch>) -> Arc<[VipActivity]> {
    w.map_or_else(
        || Arc::from(Vec::new()),
        |w| {
            w.states()
                .map(|(v, active)| VipActivity {
                    port: v.port,
                    addr: v.address,
                    active,
                })
                .collect()
        },
    )
}

/// What the control plane shows of a port.
struct PortView {
    port: Port,
    name: String,
    mac: MacAddr,
    addrs: PortAddrs,
    /// `[[vip]]`s of this port that follow a kernel interface: (VIP, name).
    follow: Vec<(IpAddr, String)>,
    /// The kernel twin's interface (exception path), if any.
    kernel_iface: Option<String>,
    /// A net_tap port's interface name (`iface=`), to tell its true link
    /// state once it left vsd's namespace (see `taplink`).
    tap_iface: Option<String>,
}

impl PortView {
    /// The port's link status, with the truth about a net_tap interface
    /// that left our namespace (net_tap itself reads "down" then).
    fn link(&self) -> crate::dpdk::LinkStatus {
        let mut link = self.port.link();
        if !link.up {
            if let Some(up) = self.tap_iface.as_deref().and_then(taplink::tap_link_up) {
                link.up = up;
            }
        }
        link
    }
}

/// What the control thread reads of the running data plane.
struct PlaneView<'a> {
    started: Instant,
    config_path: PathBuf,
    /// `--keepalived FILE`, re-read with the TOML file on reload.
    keepalived_path: Option<PathBuf>,
    worker_lcores: Vec<u32>,
    counters: Vec<Arc<WorkerCounters>>,
    lb_stats: Vec<Arc<StatsTable>>,
    global: Arc<GlobalLoad>,
    dumps: Vec<Arc<ConnDump>>,
    adopted: Vec<Arc<AtomicU64>>,
    latencies: Vec<Arc<WorkerLatency>>,
    conn_capacity: u64,
    ports: &'a [PortView],
    pool: &'a Mempool,
    plane: Arc<Published<PlaneConfig>>,
    /// The VIP watcher's counters (when a VIP follows an interface).
    vip_watch: Option<crate::control::vipwatch::WatchStats>,
    /// `[announce]`: the announcer's state at its last evaluation.
    announce: Option<Value>,
}

/// The control thread: the ipvsadm state plus the view of the data plane.
struct Control<'a> {
    view: PlaneView<'a>,
    state: ControlState,
    /// Which followed VIPs are active, from rtnetlink.
    vipwatch: Option<VipWatch>,
    /// The watcher's version in the last published configuration.
    published_watch: u64,
    /// The connection sync daemons that run (`--start-daemon`).
    syncd: crate::control::syncd::SyncDaemons,
    /// `[[sync_daemon]]` as read at start (a reload does not restart
    /// daemons; it says so when the file's differ).
    sync_config: Vec<crate::control::ipvsadm::SyncDaemonSpec>,
    /// Health checks, when the configuration has some (see [`start_health`]).
    health: Option<HealthMonitor>,
    /// `[control] rules_file`: vsadm's own services, kept across restarts.
    rules_file: Option<PathBuf>,
    /// The rules text last written there (writes only on change).
    rules_written: Option<String>,
    /// `[announce]`: the served VIPs on a kernel interface, and the drain.
    announce: Option<Announcer>,
    /// When the announce rule ran last, and on which table generation.
    announce_evaluated: Option<(Instant, u64)>,
}

/// Restore `[control] rules_file` (if it exists) on top of the
/// configuration file's state; lines that cannot apply are logged and
/// skipped, an unreadable file stops the start (its rules would be lost
/// at the next save).
fn restore_rules(state: &mut ControlState, path: &std::path::Path) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("rules file {}: {e}", path.display())),
    };
    let (applied, skipped) = state.restore_vsadm_rules(&text);
    for why in &skipped {
        log::warn!("rules file {}: {why}", path.display());
    }
    log!(
        "rules file {}: {applied} vsadm rule(s) restored, {} skipped",
        path.display(),
        skipped.len()
    );
    Ok(())
}

/// Real-server slots (connections keep a slot until they drain): room
/// for 10,000 health-checked servers and their draining predecessors.
const DEST_CAPACITY: usize = crate::control::state::DEFAULT_DEST_CAPACITY;

/// The health monitor on the checker engine (always a monitor, even
/// without checkers, so that a reload may add some), and the engine
/// thread's id. It runs after `signals::block_async_signals`, so the
/// engine's thread inherits the signal mask.
fn start_health(cfg: &Config) -> Result<(Option<HealthMonitor>, libc::pid_t), String> {
    let engine = crate::health::engine::Engine::start()
        .map_err(|e| format!("health checks: cannot start the checker thread: {e}"))?;
    let tid = engine.thread_id();
    HealthMonitor::new(cfg, Box::new(engine)).map(|(m, _)| (Some(m), tid))
}

/// Keep a control-side thread (the checker engine) off the worker CPUs:
/// the CPUs EAL gave the main (control) lcore, and SCHED_BATCH like the
/// control thread, so thousands of checks never preempt packet work.
fn confine_to_control_cpus(tid: libc::pid_t) {
    // SAFETY: all-zero cpu_set_t is a valid empty set; sched_getaffinity
    // fills it for the calling (main, EAL-pinned) thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with the set's own size.
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: sched_setaffinity on our own thread id with a valid set.
    if got != 0
        || unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) }
            != 0
    {
        log::warn!(
            "health checks: could not pin the checker thread to the control CPUs: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a zeroed sched_param is valid for SCHED_BATCH.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(tid, libc::SCHED_BATCH, &param);
    }
}

/// Run the director until a stop signal. Whatever fails at start-up is
/// reported before any worker runs, and leaves nothing behind.
pub fn run(cfg: Config) -> Result<(), String> {
    let bound = startup::preflight(&cfg)?;
    let mut state = ControlState::from_config_with_capacity(&cfg, DEST_CAPACITY)?;
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
    // before EAL starts its threads, so that they inherit the mask
    signals::block_async_signals();
    // the table starts as the checks' state says (alpha servers out, the
    // sorry server in when the quorum starts down)
    let (health, health_tid) = start_health(&cfg)?;
    if let Some(h) = &health {
        state = ControlState::from_config_with_capacity(&h.effective_config(&cfg)?, DEST_CAPACITY)?;
    }
    // what vsadm added before the last stop comes back on top of the file
    if let Some(path) = &cfg.control.rules_file {
        restore_rules(&mut state, path)?;
    }
    log!("starting EAL: {}", argv.join(" "));
    // EAL's own lines through our logger, with their levels (before init,
    // so its first lines come through too)
    if let Err(e) = crate::dpdk::log::route_to_logger() {
        log::warn!("DPDK's log stays on its own stream: {e}");
    }
    let runtime = startup::RuntimeDir::before_init(&argv);
    let eal = match Eal::init(&argv) {
        Ok(eal) => eal,
        Err(e) => {
            runtime.remove_if_created();
            return Err(format!("EAL: {e}"));
        }
    };
    // EAL pinned this (main) thread to the control lcore's CPUs
    confine_to_control_cpus(health_tid);
    let result = signals::start()
        .and_then(|control_signals| serve(&cfg, state, health, &eal, bound, &control_signals));
    let runtime_dir = eal.runtime_dir();
    drop(eal);
    // EAL leaves its runtime directory (config, sockets) behind; nothing
    // uses it once we are gone
    if let Some(dir) = runtime_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    log!("stopped");
    result
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_runs_the_real_engine_with_or_without_checkers() {
        let text = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"lan0\"\ndevice = \"net_tap0\"\n\
                    [[service]]\nproto = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\n\
                    [[service.real_server]]\naddress = \"198.19.0.2\"\nmethod = \"nat\"\n";
        let mut cfg = Config::from_str(text, "t.toml").unwrap();
        // a monitor even without checkers, so that a reload may add some
        assert!(start_health(&cfg).unwrap().0.is_some());
        cfg.services[0].real_servers[0].health.checkers =
            vec![crate::health::spec::CheckerSpec::new(
                crate::health::spec::CheckKind::Tcp,
            )];
        let m = start_health(&cfg).unwrap().0.expect("monitor");
        assert_eq!(m.report()[0].servers[0].checks.len(), 1);
    }
}
