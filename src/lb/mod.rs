//! The IPVS core: services, real servers, schedulers, connection table.
//! Pure Rust, no DPDK: everything here is tested on plain data.

pub mod conn;
pub mod defense;
pub mod director;
pub mod family;
pub mod frag;
pub mod fwd;
pub mod fwd6;
pub mod icmp_limit;
pub mod laddr;
pub mod load;
pub mod mark;
pub mod nat64;
pub mod owner;
pub mod packet;
pub mod persist;
pub mod sched;
pub mod service;
pub mod siphash;
pub mod stats;
pub mod svc_index;
pub mod sync;
pub mod synproxy;
pub mod tcp_state;
pub mod timer;
pub mod types;
