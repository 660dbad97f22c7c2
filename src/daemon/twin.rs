//! Bringing up a port's kernel twin (the exception path's kernel side; the
//! data-plane side and the design note are in `dataplane::exception`).
//!
//! What: before EAL starts, [`preflight`] refuses a twin that cannot work
//! (no /dev/net/tun for net_tap, no /dev/vhost-net for virtio-user, an
//! interface of that name already in this namespace). After EAL created
//! the device, [`open`] sets up one queue pair per worker, starts it, and
//! gives the kernel interface the port's MAC and MTU, the port's own
//! addresses, IPv6 off, link up.
//!
//! Why `ip`: these are a handful of one-time configuration steps at start;
//! iproute2 is on every host vsd runs on and its errors are precise. A
//! failing step is a start-up error naming the command and its message.
//!
//! Failure modes: the interface lives in the namespace vsd runs in and
//! goes away with the device when vsd stops (or dies: the tap's file
//! descriptors close with the process), taking its addresses with it.

use crate::control::config::{Config, KernelDevice, KernelTwin, PortConf};
use crate::dpdk::{Mempool, Port, PortConfig, RxQueue, TxQueue};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// Descriptors per twin queue (the kernel path is not the fast path).
const TWIN_DESC: u16 = 512;

/// Refuse twins that cannot be created here.
pub fn preflight(cfg: &Config) -> Result<(), String> {
    for pc in &cfg.ports {
        let Some(k) = &pc.kernel else {
            continue;
        };
        let (dev, hint) = match k.device {
            KernelDevice::Tap => ("/dev/net/tun", "load the tun module"),
            KernelDevice::VirtioUser => (
                "/dev/vhost-net",
                "load the vhost_net module, or use kernel_device = \"tap\"",
            ),
        };
        if !Path::new(dev).exists() {
            return Err(format!(
                "port {}: kernel_device = \"{}\" needs {dev}, which does not exist ({hint})",
                pc.name,
                match k.device {
                    KernelDevice::Tap => "tap",
                    KernelDevice::VirtioUser => "virtio-user",
                }
            ));
        }
        if Path::new("/sys/class/net").join(&k.iface).exists() {
            return Err(format!(
                "port {}: kernel_iface {:?} already exists in this network namespace",
                pc.name, k.iface
            ));
        }
    }
    Ok(())
}

/// A started twin and its queues (one pair per worker).
pub struct Twin {
    pub port: Port,
    pub rx: Vec<RxQueue>,
    pub tx: Vec<TxQueue>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Set up, start and configure the twin of port `index`.
pub fn open(
    index: usize,
    pc: &PortConf,
    k: &KernelTwin,
    mac: [u8; 6],
    workers: usize,
    pool: &Mempool,
) -> Result<Twin, String> {
    let err = |e: String| format!("port {}: kernel twin {}: {e}", pc.name, k.iface);
    let mut port = Port::by_name(&k.eal_name(index)).map_err(|e| err(e.to_string()))?;
    // vsd speaks IPv4 only: keep the kernel from sending router
    // solicitations and DAD probes through the port
    let v6 = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", k.iface);
    if Path::new(&v6).exists() {
        std::fs::write(&v6, "1").map_err(|e| err(format!("{v6}: {e}")))?;
    }
    let pcfg = PortConfig {
        rx_queues: workers as u16,
        tx_queues: workers as u16,
        rx_desc: TWIN_DESC,
        tx_desc: TWIN_DESC,
        mtu: pc.mtu,
        mac: None,
        promiscuous: false,
        rss_key: None,
        reta: Vec::new(),
    };
    let (rx, tx) = port
        .configure(&pcfg, pool)
        .map_err(|e| err(e.to_string()))?;
    port.start().map_err(|e| err(e.to_string()))?;
    let mac_text = crate::wire::MacAddr(mac).to_string();
    let mtu = pc.mtu.to_string();
    ip(&[
        "link", "set", "dev", &k.iface, "address", &mac_text, "mtu", &mtu,
    ])
    .map_err(err)?;
    for a in &pc.addresses {
        if let IpAddr::V4(v4) = a.addr {
            let cidr = format!("{v4}/{}", a.prefix_len);
            ip(&["-4", "addr", "add", &cidr, "dev", &k.iface]).map_err(err)?;
        }
    }
    ip(&["link", "set", "dev", &k.iface, "up"]).map_err(err)?;
    Ok(Twin { port, rx, tx })
}
