//! The data plane: worker loop, classification, neighbours, steering.

pub mod neigh;
