//! vsd: a Linux Virtual Server director in user space.
//!
//! Layers, each using only the ones listed before it:
//! `wire` (packet views), `lb` (the IPVS core), `health` (real-server
//! checks, no DPDK), `dpdk` (safe wrappers),
//! `dataplane` (worker loop), `control` (socket, config, stats).

pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod dpdk;
pub mod health;
pub mod lb;
pub mod logging;
pub mod wire;
