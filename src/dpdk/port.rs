use super::{DpdkError, Mbuf, MbufBurst, Mempool, BURST_SIZE};
use std::ffi::{CStr, CString};

/// How to bring up a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mtu: u16,
    /// Override the port's MAC address.
    pub mac: Option<[u8; 6]>,
    pub promiscuous: bool,
    /// Spread flows with RSS over the rx queues, using this 40-byte key (a
    /// symmetric key keeps both directions of a flow on one queue).
    pub rss_key: Option<[u8; 40]>,
    /// RETA contents (queue per entry), repeated to the port's RETA size.
    pub reta: Vec<u16>,
}

/// What the PMD reports about itself.
#[derive(Debug, Clone, Default)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub reta_size: u16,
    pub hash_key_size: u8,
    pub flow_type_rss_offloads: u64,
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    pub min_mtu: u16,
    pub max_mtu: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// `rte_eth_stats` essentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// An ethdev port. Control-plane object: configure, start, stop, stats.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    info: PortInfo,
    started: bool,
    /// Whether RSS got configured (the PMD supports it and it was asked for).
    rss_active: bool,
    /// The RSS hash types configured (0 without RSS).
    rss_types: u64,
    tx_offloads: u64,
    /// A configured MAC the PMD could not program (used in software only).
    soft_mac: Option<[u8; 6]>,
}

fn check(op: &str, ret: i32) -> Result<(), DpdkError> {
    if ret < 0 {
        Err(DpdkError::from_ret(op, ret))
    } else {
        Ok(())
    }
}

impl Port {
    /// Find a port by device name: a vdev given to EAL with `--vdev`
    /// (`net_tap0`) or a PCI address (`0000:03:00.0`).
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::msg("port name has NUL"))?;
        let mut id: u16 = 0;
        // SAFETY: cname is a valid C string and id a valid out pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        check(&format!("no DPDK port named {name:?}"), ret)?;
        let info = Self::query_info(id)?;
        Ok(Port {
            id,
            name: name.to_owned(),
            info,
            started: false,
            rss_active: false,
            rss_types: 0,
            tx_offloads: 0,
            soft_mac: None,
        })
    }

    fn query_info(id: u16) -> Result<PortInfo, DpdkError> {
        // SAFETY: rte_eth_dev_info is a plain C struct; all-zero is valid.
        let mut di: dpdk_sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: id names an existing port; di is a valid out pointer.
        check("rte_eth_dev_info_get", unsafe {
            dpdk_sys::rte_eth_dev_info_get(id, &mut di)
        })?;
        let driver = if di.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points at the driver's static name string.
            unsafe { CStr::from_ptr(di.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: di.max_rx_queues,
            max_tx_queues: di.max_tx_queues,
            reta_size: di.reta_size,
            hash_key_size: di.hash_key_size,
            flow_type_rss_offloads: di.flow_type_rss_offloads,
            rx_offload_capa: di.rx_offload_capa,
            tx_offload_capa: di.tx_offload_capa,
            min_mtu: di.min_mtu,
            max_mtu: di.max_mtu,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn info(&self) -> &PortInfo {
        &self.info
    }
    pub fn rss_active(&self) -> bool {
        self.rss_active
    }

    /// The TCP/UDP hash types of either family the port's RSS does not
    /// compute on ports (names as DPDK spells them); empty without RSS.
    /// Flows of those kinds are spread on addresses alone, so the worker
    /// the NIC picks may not be the one the ownership rule predicts.
    pub fn rss_missing_l4(&self) -> Vec<&'static str> {
        if !self.rss_active {
            return Vec::new();
        }
        rss_missing_l4(self.rss_types)
    }
    /// TX checksum offloads enabled on the port (`RTE_ETH_TX_OFFLOAD_*`).
    /// Whether the MAC is kept in software because the PMD refused it.
    pub fn mac_in_software(&self) -> bool {
        self.soft_mac.is_some()
    }
    pub fn tx_offloads(&self) -> u64 {
        self.tx_offloads
    }

    /// Configure queues, RSS, offloads, MTU and MAC, set up every queue with
    /// `pool`, and hand back the queue handles for the workers.
    pub fn configure(
        &mut self,
        cfg: &PortConfig,
        pool: &Mempool,
    ) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(DpdkError::msg("a port needs at least one rx and tx queue"));
        }
        if cfg.rx_queues > self.info.max_rx_queues || cfg.tx_queues > self.info.max_tx_queues {
            return Err(DpdkError::msg(format!(
                "port {}: {} rx / {} tx queues asked, driver {} allows {} / {}",
                self.name,
                cfg.rx_queues,
                cfg.tx_queues,
                self.info.driver,
                self.info.max_rx_queues,
                self.info.max_tx_queues
            )));
        }
        // SAFETY: rte_eth_conf is a plain C struct; all-zero is its default.
        let mut conf: dpdk_sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        let mut rss_key = cfg.rss_key;
        let rss_types = rss_hash_types(self.info.flow_type_rss_offloads);
        self.rss_active = cfg.rx_queues > 1 && rss_key.is_some() && rss_types != 0;
        self.rss_types = if self.rss_active { rss_types } else { 0 };
        if self.rss_active {
            conf.rxmode.mq_mode = dpdk_sys::ETH_MQ_RX_RSS;
            if let Some(key) = rss_key.as_mut() {
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = 40;
            }
            conf.rx_adv_conf.rss_conf.rss_hf = rss_types;
            if self.info.rx_offload_capa & dpdk_sys::offload::RX_RSS_HASH != 0 {
                conf.rxmode.offloads |= dpdk_sys::offload::RX_RSS_HASH;
            }
        }
        let want_tx = dpdk_sys::offload::TX_IPV4_CKSUM
            | dpdk_sys::offload::TX_TCP_CKSUM
            | dpdk_sys::offload::TX_UDP_CKSUM;
        self.tx_offloads = self.info.tx_offload_capa & want_tx;
        conf.txmode.offloads = self.tx_offloads;

        // SAFETY: port id valid; conf lives across the call (the key pointer
        // too: rss_key is a local that outlives configure).
        check("rte_eth_dev_configure", unsafe {
            dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf)
        })?;
        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port id and out pointers.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rxd, &mut txd)
        })?;
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        let mut rxqs = Vec::new();
        for q in 0..cfg.rx_queues {
            // SAFETY: configured port, queue index in range, pool is live and
            // outlives the port (the daemon stops ports before dropping it).
            check("rte_eth_rx_queue_setup", unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
            rxqs.push(RxQueue {
                port: self.id,
                queue: q,
                _not_sync: std::marker::PhantomData,
            });
        }
        let mut txqs = Vec::new();
        for q in 0..cfg.tx_queues {
            // SAFETY: configured port, queue index in range.
            check("rte_eth_tx_queue_setup", unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(self.id, q, txd, socket, std::ptr::null())
            })?;
            txqs.push(TxQueue {
                port: self.id,
                queue: q,
                _not_sync: std::marker::PhantomData,
            });
        }
        if cfg.mtu != 0 {
            // SAFETY: valid port id.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, cfg.mtu) };
            // memif and some vdevs refuse MTU changes (ENOTSUP): harmless.
            if ret < 0 && ret != -(libc::ENOTSUP) && ret != -(libc::EOPNOTSUPP) {
                return Err(DpdkError::from_ret("rte_eth_dev_set_mtu", ret));
            }
        }
        if let Some(mac) = cfg.mac {
            // SAFETY: rte_ether_addr is 6 bytes; valid port id.
            let mut addr: dpdk_sys::rte_ether_addr = unsafe { std::mem::zeroed() };
            addr.addr_bytes = mac;
            // net_tap copies a MAC set through ethdev onto the kernel-side
            // interface too, so both ends of the tap would share one address
            // (a Linux bridge then drops our frames as its own); keep ours
            // in software there.
            let ret = if self.info.driver == "net_tap" {
                -(libc::ENOTSUP)
            } else {
                // SAFETY: valid port id and address pointer.
                unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr) }
            };
            if ret == -(libc::ENOTSUP) || ret == -(libc::EOPNOTSUPP) {
                // e.g. net_pcap: the MAC lives only in software, so the port
                // must accept every destination.
                self.soft_mac = Some(mac);
            } else {
                check("rte_eth_dev_default_mac_addr_set", ret)?;
            }
        }
        if cfg.promiscuous || self.soft_mac.is_some() {
            // SAFETY: valid port id.
            let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
            // a PMD without the mode (pcap) already passes everything up
            if ret != -(libc::ENOTSUP) && ret != -(libc::EOPNOTSUPP) {
                check("rte_eth_promiscuous_enable", ret)?;
            }
        }
        // IPv6 neighbor discovery arrives on multicast MACs (the
        // solicited-node groups 33:33:ff:xx:xx:xx of the port's addresses
        // and VIPs, all-nodes 33:33:00:00:00:01), as do VRRP and OSPF for
        // the kernel twin; a NIC filters them out unless told otherwise.
        // The data plane checks the group against the packet and counts
        // what is not its own.
        // SAFETY: valid port id.
        let ret = unsafe { dpdk_sys::rte_eth_allmulticast_enable(self.id) };
        // a PMD without the mode (pcap, memif) already passes everything up
        if ret != -(libc::ENOTSUP) && ret != -(libc::EOPNOTSUPP) {
            check("rte_eth_allmulticast_enable", ret)?;
        }
        Ok((rxqs, txqs))
    }

    /// Program the RETA (after start, as some PMDs require). `queues` is
    /// repeated to fill the table. No-op where RSS is not active.
    pub fn set_reta(&self, queues: &[u16]) -> Result<(), DpdkError> {
        let size = self.info.reta_size as usize;
        if !self.rss_active || size == 0 || queues.is_empty() {
            return Ok(());
        }
        let groups = size.div_ceil(dpdk_sys::ETH_RETA_GROUP_SIZE);
        // SAFETY: plain C structs, all-zero valid.
        let mut conf: Vec<dpdk_sys::rte_eth_rss_reta_entry64> =
            (0..groups).map(|_| unsafe { std::mem::zeroed() }).collect();
        for i in 0..size {
            let g = &mut conf[i / dpdk_sys::ETH_RETA_GROUP_SIZE];
            let slot = i % dpdk_sys::ETH_RETA_GROUP_SIZE;
            g.mask |= 1u64 << slot;
            g.reta[slot] = queues[i % queues.len()];
        }
        // SAFETY: conf has groups*64 entries covering reta_size.
        check("rte_eth_dev_rss_reta_update", unsafe {
            dpdk_sys::rte_eth_dev_rss_reta_update(self.id, conf.as_mut_ptr(), size as u16)
        })
    }

    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: configured port.
        check("rte_eth_dev_start", unsafe {
            dpdk_sys::rte_eth_dev_start(self.id)
        })?;
        self.started = true;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        // SAFETY: started port; the workers polling it have been joined.
        check("rte_eth_dev_stop", unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id)
        })
    }

    /// The port's MAC: the configured one where the PMD could not take it.
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        if let Some(m) = self.soft_mac {
            return Ok(m);
        }
        // SAFETY: all-zero is valid; valid port id and out pointer.
        let mut addr: dpdk_sys::rte_ether_addr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check("rte_eth_macaddr_get", unsafe {
            dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let mut mtu = 0u16;
        // SAFETY: valid port id and out pointer.
        check("rte_eth_dev_get_mtu", unsafe {
            dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut mtu)
        })?;
        Ok(mtu)
    }

    pub fn link(&self) -> LinkStatus {
        // SAFETY: all-zero rte_eth_link is valid; valid port id.
        let mut link: dpdk_sys::rte_eth_link = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if ret < 0 {
            return LinkStatus::default();
        }
        LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        }
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        // SAFETY: all-zero stats valid; valid port id and out pointer.
        let mut s: dpdk_sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check("rte_eth_stats_get", unsafe {
            dpdk_sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Extended stats as (name, value) pairs.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        // SAFETY: NULL/0 asks for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        check("rte_eth_xstats_get_names", n)?;
        let n = n as usize;
        // SAFETY: plain C structs, all-zero valid.
        let mut names: Vec<dpdk_sys::rte_eth_xstat_name> =
            (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut vals: Vec<dpdk_sys::rte_eth_xstat> =
            (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
        // SAFETY: arrays of n entries each.
        let got =
            unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
        check("rte_eth_xstats_get_names", got)?;
        // SAFETY: as above.
        let gotv = unsafe { dpdk_sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32) };
        check("rte_eth_xstats_get", gotv)?;
        let count = (got as usize).min(gotv as usize).min(n);
        let mut out = Vec::with_capacity(count);
        for v in vals.iter().take(count) {
            let Some(nm) = names.get(v.id as usize) else {
                continue;
            };
            // SAFETY: name is a NUL-terminated fixed-size C char array.
            let name = unsafe { CStr::from_ptr(nm.name.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            out.push((name, v.value));
        }
        Ok(out)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.stop();
        // SAFETY: port stopped; closing releases its queues. Nothing polls it.
        unsafe {
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// One rx queue, polled by exactly one lcore.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    // Send but not Sync: only the owning lcore touches it.
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl RxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receive up to [`BURST_SIZE`] packets into `burst` (previous contents
    /// not taken are freed). Returns how many arrived.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut MbufBurst) -> usize {
        burst.reset();
        // SAFETY: this queue is configured and owned by the calling lcore;
        // ptrs has room for BURST_SIZE pointers.
        let n = unsafe {
            dpdk_sys::rte_eth_rx_burst(
                self.port,
                self.queue,
                burst.ptrs.as_mut_ptr(),
                BURST_SIZE as u16,
            )
        };
        burst.len = n as usize;
        n as usize
    }
}

/// One tx queue, used by exactly one lcore.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl TxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Whether the port's link is up now (`rte_eth_link_get_nowait`; for
    /// net_tap an ioctl, so for rare control frames, not per packet).
    pub fn link_up(&self) -> bool {
        // SAFETY: all-zero rte_eth_link is valid; the port id is valid
        // while this queue exists.
        let mut link: dpdk_sys::rte_eth_link = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the out pointer is a live local.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.port, &mut link) };
        ret >= 0 && link.link_status() != 0
    }

    /// Hand `pkts` to the NIC. Returns how many it took; ownership of those
    /// passes to the driver, the rest stay the caller's.
    ///
    /// # Safety
    /// Every pointer in `pkts` must be a valid mbuf owned by the caller.
    #[inline]
    pub unsafe fn tx_burst_raw(&mut self, pkts: &mut [*mut dpdk_sys::rte_mbuf]) -> usize {
        // SAFETY: caller guarantees the pointers; queue owned by this lcore.
        unsafe {
            dpdk_sys::rte_eth_tx_burst(
                self.port,
                self.queue,
                pkts.as_mut_ptr(),
                pkts.len().min(u16::MAX as usize) as u16,
            ) as usize
        }
    }

    /// Send one packet now (slow path; the data plane uses [`super::TxBuffer`]).
    /// Returns false (and frees the packet) if the queue is full.
    pub fn send_one(&mut self, m: Mbuf) -> bool {
        let raw = m.into_raw();
        let mut arr = [raw.as_ptr()];
        // SAFETY: arr holds one owned mbuf.
        let sent = unsafe { self.tx_burst_raw(&mut arr) };
        if sent == 0 {
            // SAFETY: the driver did not take it; we still own it.
            drop(unsafe { Mbuf::from_raw(raw) });
            return false;
        }
        true
    }
}

/// The RSS hash types to ask of a PMD that offers `offered`: the inputs
/// the software ownership rule (`lb::owner`) computes, for both families:
/// TCP and UDP on the 4-tuple (`NONFRAG_IPV4_*`, `NONFRAG_IPV6_*`),
/// fragments and other IP on the 2-tuple. Not the `IPV6_*_EX` types,
/// which hash addresses from the home-address option and routing header
/// instead of the fixed header's and so would disagree with the software
/// rule (and with the NAT reply core the forwarding core predicts).
pub fn rss_hash_types(offered: u64) -> u64 {
    use dpdk_sys::rss::*;
    offered
        & (IPV4
            | FRAG_IPV4
            | NONFRAG_IPV4_TCP
            | NONFRAG_IPV4_UDP
            | NONFRAG_IPV4_OTHER
            | IPV6
            | FRAG_IPV6
            | NONFRAG_IPV6_TCP
            | NONFRAG_IPV6_UDP
            | NONFRAG_IPV6_OTHER)
}

/// The 4-tuple hash types (both families) missing from `types`.
pub fn rss_missing_l4(types: u64) -> Vec<&'static str> {
    use dpdk_sys::rss::*;
    [
        (NONFRAG_IPV4_TCP, "ipv4-tcp"),
        (NONFRAG_IPV4_UDP, "ipv4-udp"),
        (NONFRAG_IPV6_TCP, "ipv6-tcp"),
        (NONFRAG_IPV6_UDP, "ipv6-udp"),
    ]
    .into_iter()
    .filter(|(bit, _)| types & bit == 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::{rss_hash_types, rss_missing_l4};
    use dpdk_sys::rss::*;

    #[test]
    fn rss_hashes_ipv6_tcp_udp_on_the_fixed_header() {
        let everything = IP | TCP | UDP;
        let t = rss_hash_types(everything);
        for want in [
            NONFRAG_IPV4_TCP,
            NONFRAG_IPV4_UDP,
            NONFRAG_IPV6_TCP,
            NONFRAG_IPV6_UDP,
            IPV6,
            FRAG_IPV6,
            NONFRAG_IPV6_OTHER,
        ] {
            assert_ne!(t & want, 0, "{want:#x} missing from {t:#x}");
        }
        assert_eq!(t & (IPV6_EX | IPV6_TCP_EX | IPV6_UDP_EX), 0);
        // only what the PMD offers
        assert_eq!(
            rss_hash_types(NONFRAG_IPV6_TCP | IPV6_TCP_EX),
            NONFRAG_IPV6_TCP
        );
        assert_eq!(rss_hash_types(0), 0);
        assert!(rss_missing_l4(t).is_empty());
        assert_eq!(
            rss_missing_l4(rss_hash_types(IP | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP)),
            ["ipv6-tcp", "ipv6-udp"]
        );
    }
}
