//! Zero-copy packet header views and checksums. No DPDK here.
