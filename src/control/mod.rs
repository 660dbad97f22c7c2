//! Control plane: config, socket, ipvsadm syntax and output formats, stats.
//! No fast-path access.

pub mod config;
pub mod estimator;
pub mod ipvsadm;
pub mod listing;
pub mod socket;
pub mod vsadm;
