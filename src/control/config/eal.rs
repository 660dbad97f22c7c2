//! `[eal]` and `[mempool]`: EAL arguments vsd generates or accepts, and mbuf pool sizing.

use super::{
    narrow, ConfigError, Ctx, LcoreConf, PortConf, PortDevice, RawEal, RawMempool, RawPort,
    MBUF_HEADROOM, MEMPOOL_CACHE_MAX, S,
};
use crate::dataplane::neigh::NeighParams;

/// `[eal]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConf {
    /// Extra EAL arguments, appended verbatim after the ones vsd generates.
    pub args: Vec<String>,
    /// Use hugepages; `false` makes vsd pass `--no-huge -m <memory_mb>`.
    pub huge: bool,
    /// EAL memory in MiB (`-m`); with hugepages only passed when set.
    pub memory_mb: Option<u32>,
}

/// `[mempool]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConf {
    /// Mbufs in the pool (explicit, or the estimate of [`default_mbufs`]).
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    pub cache: u32,
    /// Data room of each mbuf including the 128-byte headroom.
    pub data_room: u16,
}

/// Ethernet header + one VLAN tag: what a frame adds to the MTU.
const FRAME_OVERHEAD: u32 = 18;
/// Packets per RX/TX burst, for the mempool sizing estimate.
const BURST: u32 = 32;
/// Mbufs per worker for steering rings between workers (estimate).
const STEERING_MBUFS_PER_WORKER: u32 = 1024;
/// Mbufs for the control thread and the exception path (estimate).
const CONTROL_MBUFS: u32 = 2048;
/// The default pool never goes below this (a power of two minus one, as DPDK likes).
const MIN_DEFAULT_MBUFS: u32 = 8191;

/// EAL options vsd generates itself; `eal.args` must not repeat them.
const GENERATED_EAL_OPTIONS: [&str; 6] =
    ["-l", "-c", "--lcores", "--main-lcore", "--no-huge", "-m"];

/// Whether an EAL argument is (or starts) the option `opt`.
pub(super) fn is_option(arg: &str, opt: &str) -> bool {
    if opt.starts_with("--") {
        arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
    } else {
        // Short options may carry their value attached: `-l0-3`.
        !arg.starts_with("--") && arg.starts_with(opt)
    }
}

pub(super) fn build_eal(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawEal>>,
    ports: &[PortConf],
) -> Result<EalConf, ConfigError> {
    let Some(raw) = raw else {
        return Ok(EalConf {
            args: Vec::new(),
            huge: true,
            memory_mb: None,
        });
    };
    let e = raw.get_ref();
    let mut args = Vec::with_capacity(e.args.len());
    for (i, a) in e.args.iter().enumerate() {
        let key = format!("eal.args[{i}]");
        let arg = a.get_ref();
        if arg.is_empty() {
            return Err(ctx.err(a.span(), key, "empty argument"));
        }
        if let Some(opt) = GENERATED_EAL_OPTIONS.iter().find(|o| is_option(arg, o)) {
            return Err(ctx.err(
                a.span(),
                key,
                format!(
                    "{arg:?}: vsd generates {opt} itself from [lcores] and [eal] huge/memory_mb"
                ),
            ));
        }
        if is_option(arg, "--no-pci") {
            if let Some(j) = ports
                .iter()
                .position(|p| matches!(p.device, PortDevice::Pci { .. }))
            {
                return Err(ctx.err(
                    a.span(),
                    key,
                    format!(
                        "--no-pci contradicts PCI port {:?}",
                        ports.get(j).map_or("", |p| p.name.as_str())
                    ),
                ));
            }
        }
        args.push(arg.clone());
    }
    let memory_mb = match &e.memory_mb {
        Some(m) => Some(narrow::<u32>(ctx.int(m, "eal.memory_mb", 64, 1 << 20)?)),
        None => None,
    };
    Ok(EalConf {
        args,
        huge: e.huge.unwrap_or(true),
        memory_mb,
    })
}

/// The default mbuf count: every RX and TX ring full on every worker queue, plus each
/// worker's mempool cache and bursts in flight, its neighbour queue and steering rings,
/// plus the control thread; rounded up to 2^n - 1, at least 8191.
pub fn default_mbufs(ports: &[PortConf], workers: u32, cache: u32, neighbour: &NeighParams) -> u32 {
    let rings: u64 = ports
        .iter()
        .map(|p| u64::from(p.rx_desc) + u64::from(p.tx_desc))
        .sum();
    let per_worker = rings
        + u64::from(cache)
        + 2 * u64::from(BURST)
        + u64::from(neighbour.max_pending_total)
        + u64::from(STEERING_MBUFS_PER_WORKER);
    let needed = u64::from(workers) * per_worker + u64::from(CONTROL_MBUFS);
    let rounded = (needed + 1).next_power_of_two() - 1;
    u32::try_from(rounded.max(u64::from(MIN_DEFAULT_MBUFS))).unwrap_or(u32::MAX)
}

pub(super) fn build_mempool(
    ctx: &Ctx<'_>,
    raw: Option<&S<RawMempool>>,
    raw_ports: &[S<RawPort>],
    ports: &[PortConf],
    lcores: &LcoreConf,
    neighbour: &NeighParams,
) -> Result<MempoolConf, ConfigError> {
    let m = raw.map(S::get_ref);
    let none = None;
    let field = |f: fn(&RawMempool) -> &Option<S<i64>>| m.map_or(&none, f);
    let cache = narrow::<u32>(ctx.int_or(
        field(|m| &m.cache),
        "mempool.cache",
        0,
        MEMPOOL_CACHE_MAX,
        256,
    )?);
    let data_room = narrow::<u16>(ctx.int_or(
        field(|m| &m.data_room),
        "mempool.data_room",
        i64::from(MBUF_HEADROOM) + 64,
        65535,
        2176,
    )?);
    let workers = u32::try_from(lcores.workers.len()).unwrap_or(u32::MAX);
    let rx_total: u64 =
        ports.iter().map(|p| u64::from(p.rx_desc)).sum::<u64>() * u64::from(workers);
    let mbufs = match field(|m| &m.mbufs) {
        None => default_mbufs(ports, workers, cache, neighbour),
        Some(v) => {
            let n = narrow::<u32>(ctx.int(v, "mempool.mbufs", 1024, 1 << 28)?);
            if u64::from(n) < rx_total {
                return Err(ctx.err(
                    v.span(),
                    "mempool.mbufs",
                    format!("{n} is too small: the RX rings alone hold {rx_total}"),
                ));
            }
            n
        }
    };
    for (i, port) in ports.iter().enumerate() {
        let needed = MBUF_HEADROOM + u32::from(port.mtu) + FRAME_OVERHEAD;
        if u32::from(data_room) < needed {
            let span = raw_ports
                .get(i)
                .and_then(|p| p.get_ref().mtu.as_ref().map(S::span))
                .unwrap_or(0..0);
            return Err(ctx.err(
                span,
                format!("port[{i}].mtu"),
                format!(
                    "mtu {} needs mempool.data_room >= {needed} (headroom {MBUF_HEADROOM} + frame {}), data_room is {data_room}",
                    port.mtu,
                    needed - MBUF_HEADROOM
                ),
            ));
        }
    }
    Ok(MempoolConf {
        mbufs,
        cache,
        data_room,
    })
}
