//! The `vsd` command line, here rather than in `src/bin/vsd.rs` so the man
//! page generator (`examples/mangen.rs`) renders vsd(8) from the same
//! definition the binary parses with.

use clap::Parser;
use std::path::PathBuf;

/// Linux Virtual Server director on DPDK.
#[derive(Parser, Debug)]
#[command(
    name = "vsd",
    version,
    about,
    long_about = "vsd does what LVS/IPVS does in the kernel (virtual services in front of real \
servers; NAT, DR, TUN and FULLNAT forwarding; the IPVS schedulers) in user space on DPDK \
poll-mode drivers. It is administered with vsadm(8), which speaks ipvsadm's syntax over the \
control socket. SIGHUP reloads the configuration's services; SIGTERM or SIGINT stops it. Under \
systemd (Type=notify) it reports READY=1 once its workers run and the control socket listens."
)]
pub struct VsdArgs {
    /// TOML configuration file (see vsd.toml(5)).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// keepalived.conf whose virtual_server blocks (and their real servers
    /// and checkers) are added to the TOML file's services; the TOML file
    /// still gives ports, lcores and VIPs. vrrp_* blocks are skipped
    /// (keepalived --vrrp runs them on the same file). A reload re-reads
    /// both files.
    #[arg(short = 'k', long, value_name = "FILE")]
    pub keepalived: Option<PathBuf>,
    /// Only check the configuration (and that the control socket and the
    /// Prometheus address are free) and print the EAL arguments it gives.
    #[arg(long)]
    pub check: bool,
    /// Print what the machine must prepare at boot (hugepages, PCI devices
    /// to bind to vfio-pci) and exit; read by the vsd-prepare unit.
    #[arg(long, conflicts_with = "check")]
    pub boot_plan: bool,
    /// Log filter, env_logger syntax: `info` (default), `debug`,
    /// `warn,dpdk=error` (target `dpdk` is DPDK's own log). Overrides the
    /// VSD_LOG environment variable.
    #[arg(long, value_name = "SPEC")]
    pub log_level: Option<String>,
}
