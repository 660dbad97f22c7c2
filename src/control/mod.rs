//! Control plane: config, socket, stats. No fast-path access.

pub mod config;
pub mod socket;
pub mod vsadm;
