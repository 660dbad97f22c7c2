//! The data plane: worker loop, classification, neighbours, steering.

pub mod conn_rows;
pub mod counters;
pub mod exception;
pub mod idle;
pub mod local;
pub mod martian;
pub mod mld;
pub mod neigh;
pub mod offload;
pub mod publish;
pub mod sync_feed;
pub mod sync_ring;
pub mod sync_tx;
pub mod vipfollow;
pub mod worker;
