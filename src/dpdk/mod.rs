//! Safe wrappers over `dpdk-sys`. This is the only module that calls DPDK.
//!
//! Ownership rules the types enforce:
//! - [`Eal`] is initialised once per process; dropping it runs `rte_eal_cleanup`.
//! - An [`Mbuf`] owns one packet buffer and frees it on drop.
//! - [`RxQueue`] / [`TxQueue`] are `Send` but not `Sync`: each is moved to the
//!   one lcore that polls it.
//! - [`TxBuffer`] batches packets for one tx queue.

mod eal;
mod error;
mod lcore;
pub mod log;
mod mbuf;
mod mempool;
mod port;
mod ring;
mod txbuf;

pub use eal::{tsc_hz, tsc_now, Eal};
pub use error::DpdkError;
pub use lcore::{current_lcore, LaunchedLcore};
pub use mbuf::{Mbuf, MbufBurst, BURST_SIZE};
pub use mempool::Mempool;
pub use port::{LinkStatus, Port, PortConfig, PortInfo, PortStats, RxQueue, TxQueue};
pub use ring::{SteerBatch, SteerBurst, SteerRing};
pub use txbuf::TxBuffer;

/// `RTE_ETH_TX_OFFLOAD_{IPV4,UDP,TCP}_CKSUM`: the checksum offloads vsd
/// uses for forwarded packets where a port has them.
pub const TX_CSUM_OFFLOADS: u64 = dpdk_sys::offload::TX_IPV4_CKSUM
    | dpdk_sys::offload::TX_TCP_CKSUM
    | dpdk_sys::offload::TX_UDP_CKSUM;
