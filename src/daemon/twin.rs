//! Bringing up a port's kernel twin (the exception path's kernel side; the
//! data-plane side and the design note are in `dataplane::exception`).
//!
//! What: before EAL starts, [`preflight`] refuses a twin that cannot work
//! (no /dev/net/tun for net_tap, no /dev/vhost-net for virtio-user, an
//! interface of that name already in this namespace). After EAL created
//! the device, [`open`] sets up one queue pair per worker, starts it, and
//! gives the kernel interface the port's MAC and MTU, the port's own
//! addresses, IPv6 on with router advertisements ignored (its addresses
//! are the port's, not SLAAC's), link up. With IPv6 on, the kernel forms
//! the same EUI-64 link-local address vsd owns for the port, answers
//! neighbor solicitations for its addresses and resolves its own next hops
//! through the twin (`dataplane::exception`).
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
    // IPv6 off while the device comes up with its own MAC; then, with
    // the port's MAC, on (below): addresses from the configuration only
    // (no SLAAC, no default route from a router advertisement) and the
    // EUI-64 link-local address vsd also owns for the port
    let v6_conf = |name: &str, value: &str| -> Result<(), String> {
        let path = format!("/proc/sys/net/ipv6/conf/{}/{name}", k.iface);
        if Path::new(&path).exists() {
            std::fs::write(&path, value).map_err(|e| err(format!("{path}: {e}")))?;
        }
        Ok(())
    };
    for (name, value) in [
        ("disable_ipv6", "1"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("addr_gen_mode", "0"),
    ] {
        v6_conf(name, value)?;
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
    v6_conf("disable_ipv6", "0")?;
    for a in &pc.addresses {
        let cidr = format!("{}/{}", a.addr, a.prefix_len);
        match a.addr {
            IpAddr::V4(_) => ip(&["-4", "addr", "add", &cidr, "dev", &k.iface]),
            IpAddr::V6(_) => ip(&["-6", "addr", "add", &cidr, "dev", &k.iface]),
        }
        .map_err(err)?;
    }
    ip(&["link", "set", "dev", &k.iface, "up"]).map_err(err)?;
    Ok(Twin { port, rx, tx })
}

#[cfg(test)]
mod tests {
    use crate::control::config::{Config, IdleMode, KernelDevice};

    fn cfg(port_extra: &str, lcores_extra: &str) -> Result<Config, String> {
        let text = format!(
            "[lcores]\ncontrol = 0\nworkers = [1, 2]\n{lcores_extra}\n\n[[port]]\nname = \"lan0\"\n\
             device = \"net_tap0\"\naddresses = [\"198.18.0.1/24\"]\n{port_extra}\n\n\
             [[port]]\nname = \"srv0\"\ndevice = \"net_tap1\"\naddresses = [\"198.18.1.1/24\"]\n"
        );
        Config::from_str(&text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn kernel_iface_adds_a_twin_vdev_with_a_queue_per_worker() {
        let c = cfg("kernel_iface = \"vsd-lan0\"", "").unwrap();
        let k = c.ports[0].kernel.as_ref().unwrap();
        assert_eq!(
            (k.iface.as_str(), k.device),
            ("vsd-lan0", KernelDevice::Tap)
        );
        assert!(c.ports[1].kernel.is_none());
        let argv = c.eal_argv("vsd").join(" ");
        assert!(
            argv.contains("--vdev net_tap0 --vdev net_tap1 --vdev net_tap_vsdk0,iface=vsd-lan0"),
            "{argv}"
        );
        let c = cfg("kernel_iface = \"k0\"\nkernel_device = \"virtio-user\"", "").unwrap();
        let argv = c.eal_argv("vsd").join(" ");
        assert!(
            argv.contains("--vdev virtio_user_vsdk0,path=/dev/vhost-net,iface=k0,queues=2"),
            "{argv}"
        );
        assert_eq!(c.lcores.idle, IdleMode::Poll);
    }

    #[test]
    fn bad_twin_keys_are_refused_with_their_position() {
        let e = cfg("kernel_iface = \"much-too-long-name\"", "").unwrap_err();
        assert!(
            e.contains("t.toml:10:16: port[0].kernel_iface: invalid interface name"),
            "{e}"
        );
        let e = cfg("kernel_iface = \"a/b\"", "").unwrap_err();
        assert!(e.contains("port[0].kernel_iface"), "{e}");
        let e = cfg("kernel_device = \"tap\"", "").unwrap_err();
        assert!(
            e.contains("port[0].kernel_device: kernel_device needs kernel_iface"),
            "{e}"
        );
        let e = cfg("kernel_iface = \"k0\"\nkernel_device = \"kni\"", "").unwrap_err();
        assert!(e.contains("unknown kernel device \"kni\""), "{e}");
        let text = "[lcores]\nworkers = [1]\n\n[[port]]\nname = \"a\"\ndevice = \"net_tap0\"\n\
                    kernel_iface = \"k0\"\n\n[[port]]\nname = \"b\"\ndevice = \"net_tap1\"\n\
                    kernel_iface = \"k0\"\n";
        let e = Config::from_str(text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("port[1].kernel_iface: interface \"k0\" is already the twin of port \"a\""),
            "{e}"
        );
    }

    #[test]
    fn idle_mode_parses_and_refuses_unknown_modes() {
        assert_eq!(
            cfg("", "idle = \"sleep\"").unwrap().lcores.idle,
            IdleMode::Sleep
        );
        assert_eq!(
            cfg("", "idle = \"poll\"").unwrap().lcores.idle,
            IdleMode::Poll
        );
        let e = cfg("", "idle = \"interrupt\"").unwrap_err();
        assert!(
            e.contains(
                "lcores.idle: unknown idle mode \"interrupt\": expected \"poll\" or \"sleep\""
            ),
            "{e}"
        );
    }
}
