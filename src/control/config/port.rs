//! `[[port]]`: devices, addresses, gateways and the kernel twin of each port.

use std::collections::HashMap;
use std::net::IpAddr;

use super::addr::{IpCidr, MacAddr, PciAddr};
use super::{narrow, ConfigError, Ctx, RawPort, MTU_RANGE, S};

/// `[[port]] kernel_device`: the DPDK device behind a kernel twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelDevice {
    /// DPDK's net_tap PMD (needs /dev/net/tun).
    Tap,
    /// virtio-user with the vhost-net backend (needs /dev/vhost-net).
    VirtioUser,
}

/// The kernel twin of a port (`kernel_iface`, `kernel_device`): see
/// `dataplane::exception`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTwin {
    /// Name of the kernel interface vsd creates.
    pub iface: String,
    pub device: KernelDevice,
}

impl KernelTwin {
    /// DPDK name of the twin device of port `index`.
    pub fn eal_name(&self, index: usize) -> String {
        match self.device {
            KernelDevice::Tap => format!("net_tap_vsdk{index}"),
            KernelDevice::VirtioUser => format!("virtio_user_vsdk{index}"),
        }
    }

    /// The `--vdev` argument for the twin of port `index` with `queues`
    /// queue pairs.
    pub fn eal_spec(&self, index: usize, queues: usize) -> String {
        match self.device {
            KernelDevice::Tap => format!("{},iface={}", self.eal_name(index), self.iface),
            KernelDevice::VirtioUser => format!(
                "{},path=/dev/vhost-net,iface={},queues={queues},queue_size=1024",
                self.eal_name(index),
                self.iface
            ),
        }
    }
}

/// `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConf {
    /// Unique name used in logs and listings.
    pub name: String,
    /// The DPDK device behind the port.
    pub device: PortDevice,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// MTU (IP packet size).
    pub mtu: u16,
    /// MAC address to set on the port instead of its own.
    pub mac: Option<MacAddr>,
    /// Enable promiscuous mode.
    pub promiscuous: bool,
    /// Use hardware RSS with the symmetric key where the PMD supports it.
    pub rss: bool,
    /// The director's own addresses on this port.
    pub addresses: Vec<IpCidr>,
    /// Default next hops reached through this port, at most one per
    /// address family (`gateway = "ADDR"` or a list of addresses).
    pub gateways: Vec<IpAddr>,
    /// The kernel twin interface, when the port has one.
    pub kernel: Option<KernelTwin>,
}

/// The DPDK device of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDevice {
    /// A virtual device (`--vdev`), e.g. `net_tap0,iface=vsd0`; the full spec.
    Vdev(String),
    /// A PCI device (`-a`), with optional device arguments after a comma.
    Pci {
        /// Bus address.
        addr: PciAddr,
        /// Driver arguments (text after the first comma), passed through.
        devargs: Option<String>,
    },
}

impl PortDevice {
    /// Name DPDK gives the port (`rte_eth_dev_get_port_by_name`): the vdev name before
    /// its first comma, or the canonical PCI address.
    pub fn eal_name(&self) -> String {
        match self {
            PortDevice::Vdev(spec) => spec.split(',').next().unwrap_or(spec).to_string(),
            PortDevice::Pci { addr, .. } => addr.to_string(),
        }
    }

    /// The argument of `--vdev` or `-a` for this device.
    pub fn eal_spec(&self) -> String {
        match self {
            PortDevice::Vdev(spec) => spec.clone(),
            PortDevice::Pci {
                addr,
                devargs: Some(args),
            } => format!("{addr},{args}"),
            PortDevice::Pci {
                addr,
                devargs: None,
            } => addr.to_string(),
        }
    }
}

/// Port names: 1..=32 of `[A-Za-z0-9_.-]`.
fn valid_port_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Parses a port's `device`: a vdev spec `net_NAME[,args]` or a PCI address `[,devargs]`.
fn parse_device(spec: &str) -> Result<PortDevice, String> {
    if spec.is_empty()
        || spec
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "invalid device {spec:?}: must be non-empty without spaces"
        ));
    }
    let (name, args) = match spec.split_once(',') {
        Some((name, args)) => (name, Some(args)),
        None => (spec, None),
    };
    if let Some(driver) = name.strip_prefix("net_") {
        if driver.is_empty()
            || !driver
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("invalid vdev name {name:?}"));
        }
        return Ok(PortDevice::Vdev(spec.to_string()));
    }
    match PciAddr::parse(name) {
        Some(addr) => Ok(PortDevice::Pci {
            addr,
            devargs: args.filter(|a| !a.is_empty()).map(str::to_string),
        }),
        None => Err(format!(
            "invalid device {spec:?}: expected a vdev (\"net_...\") or a PCI address (\"0000:03:00.0\")"
        )),
    }
}

pub(super) fn build_port(
    ctx: &Ctx<'_>,
    i: usize,
    raw: &RawPort,
    earlier: &[PortConf],
    seen_addrs: &mut HashMap<IpAddr, String>,
) -> Result<PortConf, ConfigError> {
    let base = format!("port[{i}]");
    let name = raw.name.get_ref();
    if !valid_port_name(name) {
        return Err(ctx.err(
            raw.name.span(),
            format!("{base}.name"),
            format!("invalid port name {name:?}: 1 to 32 of A-Z a-z 0-9 _ . -"),
        ));
    }
    if earlier.iter().any(|p| p.name == *name) {
        return Err(ctx.err(
            raw.name.span(),
            format!("{base}.name"),
            format!("duplicate port name {name:?}"),
        ));
    }
    let device = parse_device(raw.device.get_ref())
        .map_err(|m| ctx.err(raw.device.span(), format!("{base}.device"), m))?;
    if let Some(other) = earlier
        .iter()
        .find(|p| p.device.eal_name() == device.eal_name())
    {
        return Err(ctx.err(
            raw.device.span(),
            format!("{base}.device"),
            format!(
                "device {} is already used by port {:?}",
                device.eal_name(),
                other.name
            ),
        ));
    }
    let desc = |v: &Option<S<i64>>, key: &str| -> Result<u16, ConfigError> {
        let key = format!("{base}.{key}");
        let n = ctx.int_or(v, &key, 32, 16384, 1024)?;
        if n.count_ones() != 1 {
            let span = v.as_ref().map_or(0..0, S::span);
            return Err(ctx.err(span, key, format!("{n} is not a power of two")));
        }
        Ok(narrow(n))
    };
    let rx_desc = desc(&raw.rx_desc, "rx_desc")?;
    let tx_desc = desc(&raw.tx_desc, "tx_desc")?;
    let mtu = narrow(ctx.int_or(
        &raw.mtu,
        &format!("{base}.mtu"),
        MTU_RANGE.0,
        MTU_RANGE.1,
        1500,
    )?);
    let mac = match &raw.mac {
        None => None,
        Some(m) => {
            let key = format!("{base}.mac");
            let mac = MacAddr::parse(m.get_ref()).ok_or_else(|| {
                ctx.err(
                    m.span(),
                    &key,
                    format!(
                        "invalid MAC address {:?}: expected six hex pairs like \"02:00:00:00:00:01\"",
                        m.get_ref()
                    ),
                )
            })?;
            if mac.is_multicast() || mac.0 == [0; 6] {
                return Err(ctx.err(
                    m.span(),
                    key,
                    format!("MAC address {mac} must be a non-zero unicast address"),
                ));
            }
            Some(mac)
        }
    };
    let mut addresses = Vec::with_capacity(raw.addresses.len());
    for (j, a) in raw.addresses.iter().enumerate() {
        let key = format!("{base}.addresses[{j}]");
        let cidr = IpCidr::parse(a.get_ref()).map_err(|m| {
            ctx.err(
                a.span(),
                &key,
                format!("invalid address {:?}: {m}", a.get_ref()),
            )
        })?;
        if let Some(owner) = seen_addrs.get(&cidr.addr) {
            let message = if *owner == *name {
                format!("address {} is listed twice", cidr.addr)
            } else {
                format!("address {} is already on port {owner:?}", cidr.addr)
            };
            return Err(ctx.err(a.span(), key, message));
        }
        seen_addrs.insert(cidr.addr, name.clone());
        addresses.push(cidr);
    }
    let gateways = build_gateways(ctx, &base, raw.gateway.as_ref(), &addresses)?;
    let kernel = build_kernel_twin(ctx, &base, raw, earlier)?;
    Ok(PortConf {
        name: name.clone(),
        device,
        rx_desc,
        tx_desc,
        mtu,
        mac,
        promiscuous: raw.promiscuous.unwrap_or(false),
        rss: raw.rss.unwrap_or(true),
        addresses,
        gateways,
        kernel,
    })
}

/// A port's `gateway`: one address or a list, at most one per address
/// family, each in one of the port's subnets (an IPv6 link-local gateway,
/// as routers advertise themselves, is on-link through the port's own
/// link-local address) and none the port's own address.
fn build_gateways(
    ctx: &Ctx,
    base: &str,
    raw: Option<&S<toml::Value>>,
    addresses: &[IpCidr],
) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(g) = raw else {
        return Ok(Vec::new());
    };
    let key = format!("{base}.gateway");
    let err = |m: String| ctx.err(g.span(), &key, m);
    let texts: Vec<&str> = match g.get_ref() {
        toml::Value::String(t) => vec![t.as_str()],
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<_>>()
            .ok_or_else(|| err("gateway list entries must be address strings".to_string()))?,
        _ => {
            return Err(err(
                "gateway must be an address or a list of addresses (one per family)".to_string(),
            ))
        }
    };
    let mut gateways: Vec<IpAddr> = Vec::with_capacity(texts.len());
    for t in texts {
        let gw: IpAddr = t
            .parse()
            .map_err(|_| err(format!("invalid address {t:?}: not an IP address")))?;
        if let Some(other) = gateways.iter().find(|o| o.is_ipv4() == gw.is_ipv4()) {
            return Err(err(format!(
                "gateway {gw}: the port already has gateway {other} (at most one per address family)"
            )));
        }
        if addresses.iter().any(|a| a.addr == gw) {
            return Err(err(format!("gateway {gw} is the port's own address")));
        }
        let link_local = matches!(gw, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        if !link_local && !addresses.iter().any(|a| a.contains(gw)) {
            return Err(err(format!(
                "gateway {gw} is not in any subnet of this port"
            )));
        }
        gateways.push(gw);
    }
    Ok(gateways)
}

/// `kernel_iface` / `kernel_device` of a port.
fn build_kernel_twin(
    ctx: &Ctx<'_>,
    base: &str,
    raw: &RawPort,
    earlier: &[PortConf],
) -> Result<Option<KernelTwin>, ConfigError> {
    let device = match &raw.kernel_device {
        None => None,
        Some(d) => Some(match d.get_ref().as_str() {
            "tap" => KernelDevice::Tap,
            "virtio-user" => KernelDevice::VirtioUser,
            other => {
                return Err(ctx.err(
                    d.span(),
                    format!("{base}.kernel_device"),
                    format!("unknown kernel device {other:?}: expected \"tap\" or \"virtio-user\""),
                ))
            }
        }),
    };
    let Some(iface) = &raw.kernel_iface else {
        if let Some(d) = &raw.kernel_device {
            return Err(ctx.err(
                d.span(),
                format!("{base}.kernel_device"),
                "kernel_device needs kernel_iface (the twin interface's name)",
            ));
        }
        return Ok(None);
    };
    let key = format!("{base}.kernel_iface");
    let name = iface.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(ctx.err(
            iface.span(),
            key,
            format!("invalid interface name {name:?}: 1 to 15 of A-Z a-z 0-9 _ . -"),
        ));
    }
    if let Some(other) = earlier
        .iter()
        .find(|p| p.kernel.as_ref().is_some_and(|k| k.iface == *name))
    {
        return Err(ctx.err(
            iface.span(),
            key,
            format!(
                "interface {name:?} is already the twin of port {:?}",
                other.name
            ),
        ));
    }
    Ok(Some(KernelTwin {
        iface: name.clone(),
        device: device.unwrap_or(KernelDevice::Tap),
    }))
}
