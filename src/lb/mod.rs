//! The IPVS core: services, real servers, schedulers, connection table.
//! Pure Rust, no DPDK: everything here is tested on plain data.

pub mod load;
pub mod sched;
pub mod service;
pub mod types;
