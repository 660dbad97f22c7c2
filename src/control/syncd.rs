//! The connection synchronisation daemons: IPVS's master and backup sync
//! threads, speaking sync protocol version 1 ([`crate::wire::ipvs_sync`])
//! over UDP multicast.
//!
//! **What.** `--start-daemon master|backup` starts one thread each (both
//! may run). The master drains every worker's sync queue
//! ([`crate::dataplane::sync_feed`]) every [`MASTER_POLL`], packs the
//! records into messages of at most `sync_maxlen` bytes and sends a
//! message when it is full or its first entry has waited
//! [`FLUSH_AFTER`] (the kernel's `IPVS_SYNC_FLUSH_TIME`, 2 s). The backup
//! joins the group on the interface, decodes each datagram (filtering the
//! sync ID) and hands every entry to the worker that owns its tuple, which
//! installs it ([`crate::lb::director`]'s sync module).
//!
//! **Cost.** Both threads share a CPU with the control plane (and, on the
//! benchmark VM, with the traffic generator), so their work per entry is
//! kept small: the master takes records from a worker's ring a batch at a
//! time into buffers it keeps, encodes them straight into the message
//! being filled, and sends the datagrams of a round with one `sendmmsg`
//! per destination; the backup decodes a datagram into one vector and
//! counts per datagram. Counters are relaxed atomics (no lock, no name
//! lookup but for drops). `cargo bench --bench lb_core -- sync` measures
//! both (perf/README.md, "Connection sync").
//!
//! **Transport.** Ordinary kernel UDP sockets in vsd's namespace, bound to
//! the `--mcast-interface` (SO_BINDTODEVICE, IP_MULTICAST_IF, TTL
//! `--mcast-ttl`, no loopback; the backup joins with IP_ADD_MEMBERSHIP on
//! that interface). With the interface being a port's kernel twin, the
//! exception path carries the datagrams to and from the wire, so sync
//! costs the workers nothing but their queue pushes. Defaults as the
//! kernel's: group 224.0.0.81, port 8848, TTL 1, `sync_maxlen` the
//! interface MTU minus IP and UDP headers for a backup (the MTU at least
//! 1500) and 1500 minus them for a master.
//!
//! **Ownership on the backup.** A connection goes to the worker owning its
//! request tuple (client → VIP). A NAT connection whose reply tuple (real
//! → client) another worker owns is installed there and a redirect entry
//! on the request's worker, as vsd's own NAT does; a FULLNAT connection is
//! installed on the owners of both its tuples (they agree when master and
//! backup run the same number of workers, as the master chose the local
//! port so). Templates go to every worker, as template notes do.
//!
//! **FULLNAT local addresses.** The master's local address and port are
//! kept, whether the address is in the backup's own pool for the service
//! (`--add-laddr`; directors sharing one pool) or not (directors behind
//! ECMP with a pool each, docs/ecmp.md: the entry serves requests the
//! router moves here and the replies to a dead peer's address). Entries
//! for a service with no local address here are refused (counted as
//! `refused_local_addr_not_in_pool`).
//!
//! **Failure modes.** Every datagram that is not used is counted by
//! reason (the decoder's [`MessageError`] and [`EntryError`] variants,
//! [`FromSyncError`], a full worker inbox); send errors are counted. A
//! socket that cannot be set up refuses the `--start-daemon`.
//!
//! **Unicast peers** (vsd, `--sync-peer`): instead of the group, a master
//! sends every message to each peer's sync port; a backup binds the port
//! on any address of the interface, joins no group and drops (counting
//! `dropped_message_not_a_peer`) datagrams whose source is not a peer.
//!
//! **Knobs.** The kernel's sync sysctls ([`SyncSettings`], `--set-sync`)
//! go to every worker's feed ([`SyncDaemons::set_settings`]); the workers
//! make the decision ([`crate::lb::sync::sync_decide`]).
//!
//! **IPv6 transport.** As the kernel's (`mcast_af` AF_INET6): an IPv6
//! `--mcast-group` is joined with IPV6_ADD_MEMBERSHIP and sent to with
//! IPV6_MULTICAST_IF/HOPS, and `sync_maxlen` leaves room for IPv6 + UDP
//! headers (48 bytes). Unicast peers may be IPv6 too (all of one family);
//! link-local groups and peers are scoped to the interface. What the
//! messages carry is independent of the transport.
//!
//! **Data-plane transport** (`--sync-transport dataplane`, the default
//! `auto` picks it for a multicast master whose `--mcast-interface` is a
//! DPDK port or its kernel twin): no master thread; every worker encodes
//! its own records and sends the frames out of the port itself
//! ([`crate::dataplane::sync_tx`], which says why and what the frames
//! look like). Refused with unicast peers, on an interface that is no
//! port, on a port without an address of the group's family, and when a
//! message would not fit the port's MTU or an mbuf. `auto` falls back to
//! the kernel sockets in those cases; `-L --daemon` shows what runs.
//!
//! **Not done.** SEQ options (vsd keeps no sequence deltas).

use super::ipvsadm::{SyncDaemonSpec, SyncRole, SyncTransport};
use crate::dataplane::sync_feed::{SyncDelivery, SyncFeed};
use crate::dataplane::sync_tx::{source_address, SyncTxConf};
use crate::lb::family::Family;
use crate::lb::owner::RssOwner;
use crate::lb::sync::{FromSyncError, SyncAddr, SyncRecord, SyncSettings, SyncedConn};
use crate::lb::types::{AddrFamily, FwdMethod};
use crate::wire::ipvs_sync::{decode, EntryError, MessageError, SyncConn, SyncMessageBuilder};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default multicast group (`IP_VS_SYNC_GROUP`).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Default port (`IP_VS_SYNC_PORT`).
pub const DEFAULT_PORT: u16 = 8848;
/// Default TTL.
pub const DEFAULT_TTL: u8 = 1;
/// How long a message's first entry may wait for company.
pub const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// How often the master drains the workers' queues when they were empty.
pub const MASTER_POLL: Duration = Duration::from_millis(20);
/// ... and while records keep coming, so a worker's queue
/// ([`crate::dataplane::sync_feed::SYNC_FEED_CAPACITY`] records, 65536:
/// 130 ms at 500K records/s) rides out the daemon thread being scheduled
/// late on a busy CPU.
pub const MASTER_BUSY_POLL: Duration = Duration::from_millis(1);
/// IPv4 + UDP header bytes.
const HEADERS_V4: usize = 28;
/// IPv6 + UDP header bytes.
const HEADERS_V6: usize = 48;

/// Counters of the sync daemons, by name (the control thread reads them;
/// each daemon thread adds to its own): one relaxed atomic add per
/// datagram or batch of records, no lock and no name lookup on the
/// daemons' paths (drops, which are rare, find their slot by name).
#[derive(Debug)]
pub struct SyncCounters {
    /// [`COUNTER_NAMES`], then `dropped_message_` [`MESSAGE_DROPS`], then
    /// `dropped_entry_` [`ENTRY_DROPS`].
    values: Box<[AtomicU64]>,
}

/// Counters shown from the start (at 0), so every reason is visible; the
/// constants below are their indexes.
const COUNTER_NAMES: &[&str] = &[
    "sent_messages",
    "sent_entries",
    "send_errors",
    "encode_errors",
    "received_messages",
    "received_entries",
    "recv_errors",
    "delivered_entries",
    "dropped_entry_inbox_full",
    "dropped_entry_no_worker",
    "dropped_message_not_a_peer",
];
const SENT_MESSAGES: usize = 0;
const SENT_ENTRIES: usize = 1;
const SEND_ERRORS: usize = 2;
const ENCODE_ERRORS: usize = 3;
const RECEIVED_MESSAGES: usize = 4;
const RECEIVED_ENTRIES: usize = 5;
const RECV_ERRORS: usize = 6;
const DELIVERED_ENTRIES: usize = 7;
const DROPPED_INBOX_FULL: usize = 8;
const DROPPED_NO_WORKER: usize = 9;
const DROPPED_NOT_A_PEER: usize = 10;

impl Default for SyncCounters {
    fn default() -> Self {
        let n = COUNTER_NAMES.len() + MESSAGE_DROPS.len() + ENTRY_DROPS.len();
        SyncCounters {
            values: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SyncCounters {
    fn add(&self, index: usize, n: u64) {
        if n != 0 {
            if let Some(v) = self.values.get(index) {
                v.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// A datagram dropped whole, for reason `name` (of [`MESSAGE_DROPS`]).
    fn message_dropped(&self, name: &str) {
        if let Some(i) = MESSAGE_DROPS.iter().position(|n| *n == name) {
            self.add(COUNTER_NAMES.len() + i, 1);
        }
    }

    /// An entry dropped, for reason `name` (of [`ENTRY_DROPS`]).
    fn entry_dropped(&self, name: &str) {
        if let Some(i) = ENTRY_DROPS.iter().position(|n| *n == name) {
            self.add(COUNTER_NAMES.len() + MESSAGE_DROPS.len() + i, 1);
        }
    }

    fn values(&self) -> BTreeMap<String, u64> {
        let names = COUNTER_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(MESSAGE_DROPS.iter().map(|n| format!("dropped_message_{n}")))
            .chain(ENTRY_DROPS.iter().map(|n| format!("dropped_entry_{n}")));
        names
            .zip(self.values.iter().map(|v| v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Every [`message_drop_name`].
const MESSAGE_DROPS: &[&str] = &[
    "header_too_short",
    "size_mismatch",
    "syncid_mismatch",
    "bad_version",
    "bad_spare",
    "entry_truncated",
    "entry_overrun",
    "entry_version",
    "entry_type",
    "entry_too_small",
    "option_truncated",
    "option_empty",
    "bad_seq_option",
    "bad_pe_option",
    "trailing_data",
];

/// Every [`entry_drop_name`] and [`from_sync_drop_name`].
const ENTRY_DROPS: &[&str] = &[
    "unknown_mandatory_option",
    "unsupported_protocol",
    "invalid_state",
    "persistence_engine",
    "version0_seq_data",
    "bad_fullnat_option",
    "bad_synproxy_option",
    "address_family",
    "forwarding_method",
    "protocol",
    "state",
    "seq_adjust",
];

/// Counter name of a datagram dropped whole.
pub fn message_drop_name(e: &MessageError) -> &'static str {
    match e {
        MessageError::HeaderTooShort { .. } => "header_too_short",
        MessageError::SizeMismatch { .. } => "size_mismatch",
        MessageError::SyncIdMismatch { .. } => "syncid_mismatch",
        MessageError::BadVersion(_) => "bad_version",
        MessageError::BadSpare => "bad_spare",
        MessageError::EntryTruncated { .. } => "entry_truncated",
        MessageError::EntryOverrun { .. } => "entry_overrun",
        MessageError::EntryVersion { .. } => "entry_version",
        MessageError::EntryType { .. } => "entry_type",
        MessageError::EntryTooSmall { .. } => "entry_too_small",
        MessageError::OptionTruncated { .. } => "option_truncated",
        MessageError::OptionEmpty { .. } => "option_empty",
        MessageError::BadSeqOption { .. } => "bad_seq_option",
        MessageError::BadPeOption { .. } => "bad_pe_option",
        MessageError::TrailingData { .. } => "trailing_data",
    }
}

/// Counter name of one entry dropped by the decoder.
pub fn entry_drop_name(e: &EntryError) -> &'static str {
    match e {
        EntryError::UnknownMandatoryOption(_) => "unknown_mandatory_option",
        EntryError::UnsupportedProtocol(_) => "unsupported_protocol",
        EntryError::InvalidState { .. } => "invalid_state",
        EntryError::PersistenceEngine => "persistence_engine",
        EntryError::Version0SeqData => "version0_seq_data",
        EntryError::BadFullnatOption => "bad_fullnat_option",
        EntryError::BadSynproxyOption => "bad_synproxy_option",
    }
}

/// Counter name of an entry vsd cannot represent.
pub fn from_sync_drop_name(e: &FromSyncError) -> &'static str {
    match e {
        FromSyncError::AddressFamily => "address_family",
        FromSyncError::ForwardingMethod(_) => "forwarding_method",
        FromSyncError::Protocol(_) => "protocol",
        FromSyncError::State(_) => "state",
        FromSyncError::SeqAdjust => "seq_adjust",
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The MTU of interface `name` (SIOCGIFMTU).
fn interface_mtu(name: &str) -> Result<usize, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("socket: {e}"))?;
    // SAFETY: a zeroed ifreq is valid; we copy at most IFNAMSIZ-1 bytes of
    // the name, leaving it NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU fills ifr_ifru.ifru_mtu of the ifreq we pass.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(format!(
            "--mcast-interface {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the ioctl succeeded, so the union holds the MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| format!("--mcast-interface {name}: MTU {mtu}"))
}

/// Check `spec` and fill in every default as the kernel does, so the
/// listing shows what runs. Refuses a missing interface, a non-multicast
/// or IPv6 group, a `sync_maxlen` the encoder cannot use.
pub fn resolve(spec: &SyncDaemonSpec) -> Result<SyncDaemonSpec, String> {
    resolve_with(spec, PORTS.get().map_or(&[], Vec::as_slice))
}

/// A DPDK port as the data-plane transport sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPort {
    /// The workers' index of the port.
    pub index: usize,
    /// `[[port]] name`.
    pub name: String,
    /// Its kernel twin's interface, if any.
    pub twin: Option<String>,
    /// The port's own addresses, in configuration order (with the IPv6
    /// link-local one).
    pub addrs: Vec<IpAddr>,
    /// The largest frame it sends: its MTU + 14, at most what an mbuf holds.
    pub max_frame: usize,
}

/// The ports of this vsd (set once at start).
static PORTS: OnceLock<Vec<SyncPort>> = OnceLock::new();

/// Tell [`resolve`] which DPDK ports there are (vsd's start-up, once).
pub fn register_ports(ports: Vec<SyncPort>) {
    let _ = PORTS.set(ports);
}

/// The port `name` names (its own name or its twin's), if any.
fn port_named<'a>(ports: &'a [SyncPort], name: &str) -> Option<&'a SyncPort> {
    ports
        .iter()
        .find(|p| p.name == name || p.twin.as_deref() == Some(name))
}

/// Why a master cannot send from the data plane on `ports` (`None`: it can).
fn dataplane_refusal(
    spec: &SyncDaemonSpec,
    ports: &[SyncPort],
    group: IpAddr,
    maxlen: usize,
) -> Option<String> {
    let t = "--sync-transport dataplane";
    if spec.role != SyncRole::Master {
        return Some(format!(
            "{t}: a backup receives through the kernel (the port's twin); only a master sends from the data plane"
        ));
    }
    if !spec.peers.is_empty() {
        return Some(format!(
            "{t}: unicast peers (--sync-peer) need the kernel transport"
        ));
    }
    let Some(port) = port_named(ports, &spec.mcast_interface) else {
        return Some(format!(
            "{t}: --mcast-interface {} is no DPDK port or kernel twin of one",
            spec.mcast_interface
        ));
    };
    if source_address(&port.addrs, group).is_none() {
        return Some(format!(
            "{t}: port {} has no address of group {group}'s family to send from",
            port.name
        ));
    }
    let frame = maxlen
        + 14
        + if group.is_ipv4() {
            HEADERS_V4
        } else {
            HEADERS_V6
        };
    if frame > port.max_frame {
        return Some(format!(
            "{t}: --sync-maxlen {maxlen} makes {frame}-byte frames, port {} sends at most {}",
            port.name, port.max_frame
        ));
    }
    None
}

/// [`resolve`] against the DPDK ports `ports`.
pub fn resolve_with(spec: &SyncDaemonSpec, ports: &[SyncPort]) -> Result<SyncDaemonSpec, String> {
    let on_port = spec.role == SyncRole::Master
        && spec.transport != SyncTransport::Kernel
        && port_named(ports, &spec.mcast_interface).is_some();
    if !on_port && ifindex(&spec.mcast_interface).is_none() {
        return Err(format!(
            "--mcast-interface {}: no such interface",
            spec.mcast_interface
        ));
    }
    let group = spec.mcast_group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
    if !group.is_multicast() {
        return Err(format!("--mcast-group {group}: not a multicast address"));
    }
    let peers = check_peers(&spec.peers)?;
    let headers = match transport_family(group, &peers) {
        AddrFamily::Inet => HEADERS_V4,
        AddrFamily::Inet6 => HEADERS_V6,
    };
    // as the kernel's start_sync_thread: a given length is clamped
    let maxlen = match spec.sync_maxlen {
        Some(m) => {
            let min = if spec.role == SyncRole::Backup {
                1024
            } else {
                1
            };
            usize::from(m).clamp(min, 65535 - headers)
        }
        None => match spec.role {
            SyncRole::Master => 1500 - headers,
            SyncRole::Backup => interface_mtu(&spec.mcast_interface)?.clamp(1500, 65535) - headers,
        },
    };
    let min = crate::wire::ipvs_sync::MIN_MAXLEN;
    let max = crate::wire::ipvs_sync::MAX_MESSAGE_LEN;
    if spec.role == SyncRole::Master && !(min..=max).contains(&maxlen) {
        return Err(format!("--sync-maxlen {maxlen}: outside {min}..={max}"));
    }
    let refusal = dataplane_refusal(spec, ports, group, maxlen);
    let transport = match (spec.transport, refusal) {
        (SyncTransport::Dataplane, Some(why)) => return Err(why),
        (SyncTransport::Dataplane, None) | (SyncTransport::Auto, None) => SyncTransport::Dataplane,
        (SyncTransport::Auto, Some(_)) | (SyncTransport::Kernel, _) => SyncTransport::Kernel,
    };
    if transport == SyncTransport::Kernel && ifindex(&spec.mcast_interface).is_none() {
        return Err(format!(
            "--mcast-interface {}: no such interface",
            spec.mcast_interface
        ));
    }
    Ok(SyncDaemonSpec {
        transport,
        role: spec.role,
        mcast_interface: spec.mcast_interface.clone(),
        syncid: spec.syncid,
        sync_maxlen: Some(maxlen.min(usize::from(u16::MAX)) as u16),
        mcast_group: Some(group),
        mcast_port: Some(spec.mcast_port.unwrap_or(DEFAULT_PORT)),
        mcast_ttl: Some(spec.mcast_ttl.unwrap_or(DEFAULT_TTL).max(1)),
        peers,
    })
}

/// Unicast peers: unicast addresses of one family, each once.
fn check_peers(peers: &[IpAddr]) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(peers.len());
    for &p in peers {
        let unicast = match p {
            IpAddr::V4(a) => !a.is_multicast() && !a.is_unspecified() && !a.is_broadcast(),
            IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified(),
        };
        if !unicast {
            return Err(format!("--sync-peer {p}: must be a unicast address"));
        }
        if out.contains(&p) {
            return Err(format!("--sync-peer {p} given twice"));
        }
        if let Some(o) = out.iter().find(|o| o.is_ipv4() != p.is_ipv4()) {
            return Err(format!(
                "--sync-peer {p}: peers of one address family only ({o} is the other)"
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// The family the daemon's datagrams travel in: the peers', else the group's.
fn transport_family(group: IpAddr, peers: &[IpAddr]) -> AddrFamily {
    AddrFamily::of(peers.first().copied().unwrap_or(group))
}

/// `addr:port`, scoped to interface `ifindex` when `addr` is link-local
/// (a link-local IPv6 group or peer means nothing without its link).
fn scoped(addr: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match addr {
        // multicast scope (RFC 4291): 1 interface-local, 2 link-local
        IpAddr::V6(a)
            if a.is_unicast_link_local() || (a.is_multicast() && a.segments()[0] & 0xf <= 2) =>
        {
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, ifindex))
        }
        a => SocketAddr::new(a, port),
    }
}

fn setsockopt<T>(sock: &UdpSocket, level: i32, name: i32, val: &T) -> std::io::Result<()> {
    // SAFETY: `val` points to a live T of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bind_to_device(sock: &UdpSocket, name: &str) -> std::io::Result<()> {
    // SAFETY: the name bytes are live for the call; the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn mreq6(group: Ipv6Addr, ifindex: u32) -> libc::ipv6_mreq {
    libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    }
}

fn mreqn(group: Ipv4Addr, ifindex: u32) -> libc::ip_mreqn {
    libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    }
}

fn group_of(spec: &SyncDaemonSpec) -> (IpAddr, u16) {
    let g = spec.mcast_group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
    (g, spec.mcast_port.unwrap_or(DEFAULT_PORT))
}

/// The master's socket: bound to the interface, sending to the group.
fn master_socket(spec: &SyncDaemonSpec) -> Result<UdpSocket, String> {
    let what = |e: std::io::Error| format!("master sync socket on {}: {e}", spec.mcast_interface);
    let idx = ifindex(&spec.mcast_interface).ok_or_else(|| {
        format!(
            "--mcast-interface {}: no such interface",
            spec.mcast_interface
        )
    })?;
    let (group, port) = group_of(spec);
    let ttl = libc::c_int::from(spec.mcast_ttl.unwrap_or(DEFAULT_TTL));
    let sock = match transport_family(group, &spec.peers) {
        AddrFamily::Inet => {
            let sock = UdpSocket::bind("0.0.0.0:0").map_err(what)?;
            bind_to_device(&sock, &spec.mcast_interface).map_err(what)?;
            if let IpAddr::V4(g) = group {
                setsockopt(
                    &sock,
                    libc::IPPROTO_IP,
                    libc::IP_MULTICAST_IF,
                    &mreqn(g, idx),
                )
                .map_err(what)?;
            }
            setsockopt(&sock, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl).map_err(what)?;
            setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_LOOP,
                &0 as &libc::c_int,
            )
            .map_err(what)?;
            sock
        }
        AddrFamily::Inet6 => {
            let sock = UdpSocket::bind("[::]:0").map_err(what)?;
            bind_to_device(&sock, &spec.mcast_interface).map_err(what)?;
            let ifindex = idx as libc::c_int;
            setsockopt(&sock, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &ifindex)
                .map_err(what)?;
            setsockopt(&sock, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &ttl).map_err(what)?;
            setsockopt(
                &sock,
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_LOOP,
                &0 as &libc::c_int,
            )
            .map_err(what)?;
            sock
        }
    };
    if spec.peers.is_empty() {
        sock.connect(scoped(group, port, idx)).map_err(what)?;
    }
    Ok(sock)
}

/// The backup's socket: the group's port, joined on the interface.
fn backup_socket(spec: &SyncDaemonSpec) -> Result<UdpSocket, String> {
    let what = |e: std::io::Error| format!("backup sync socket on {}: {e}", spec.mcast_interface);
    let idx = ifindex(&spec.mcast_interface).ok_or_else(|| {
        format!(
            "--mcast-interface {}: no such interface",
            spec.mcast_interface
        )
    })?;
    let (group, port) = group_of(spec);
    // unicast peers: the port on any address of the interface, no group
    let local = match (spec.peers.is_empty(), transport_family(group, &spec.peers)) {
        (true, _) => scoped(group, port, idx),
        (false, AddrFamily::Inet) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        (false, AddrFamily::Inet6) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    };
    let sock = UdpSocket::bind(local).map_err(what)?;
    bind_to_device(&sock, &spec.mcast_interface).map_err(what)?;
    if spec.peers.is_empty() {
        match group {
            IpAddr::V4(g) => setsockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                &mreqn(g, idx),
            ),
            IpAddr::V6(g) => setsockopt(
                &sock,
                libc::IPPROTO_IPV6,
                libc::IPV6_ADD_MEMBERSHIP,
                &mreq6(g, idx),
            ),
        }
        .map_err(what)?;
    }
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(what)?;
    Ok(sock)
}

struct Running {
    spec: SyncDaemonSpec,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The workers sending from the data plane (their transports are
    /// turned off on stop).
    dataplane: Vec<Arc<SyncFeed>>,
}

impl Running {
    fn stop(&mut self) {
        for f in &self.dataplane {
            f.dp.set(None);
        }
        // the workers send what they hold at their next loop turn: wait
        // for it (bounded), so that the counters read next include it
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.dataplane.iter().any(|f| !f.dp.followed()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The running sync daemons of one vsd.
pub struct SyncDaemons {
    feeds: Vec<Arc<SyncFeed>>,
    owner: Option<Arc<RssOwner>>,
    counters: Arc<SyncCounters>,
    running: Vec<Running>,
    settings: SyncSettings,
}

impl SyncDaemons {
    /// Daemons for workers fed through `feeds`, whose flows `owner` assigns
    /// (`None`: one worker).
    pub fn new(feeds: Vec<Arc<SyncFeed>>, owner: Option<Arc<RssOwner>>) -> Self {
        SyncDaemons {
            feeds,
            owner,
            counters: Arc::new(SyncCounters::default()),
            running: Vec::new(),
            settings: SyncSettings::default(),
        }
    }

    /// Hand the sync knobs (`--set-sync`, `[sync]`) to the workers if they
    /// changed; they take them at their next loop turn.
    pub fn set_settings(&mut self, s: &SyncSettings) {
        if *s == self.settings {
            return;
        }
        self.settings = *s;
        for f in &self.feeds {
            f.set_settings(s);
        }
    }

    /// Make the running daemons those of `wanted` (resolved specs, at most
    /// one per role): stop what is not wanted or changed, start what is
    /// missing. The first daemon that cannot start is reported (its role
    /// in the error); the others are started.
    pub fn reconcile(&mut self, wanted: &[SyncDaemonSpec]) -> Result<(), (SyncRole, String)> {
        let mut keep = Vec::new();
        for mut r in std::mem::take(&mut self.running) {
            if wanted.contains(&r.spec) {
                keep.push(r);
            } else {
                if r.spec.role == SyncRole::Master {
                    for f in &self.feeds {
                        f.master.store(false, Ordering::Relaxed);
                    }
                }
                r.stop();
            }
        }
        self.running = keep;
        let mut first_err = None;
        for spec in wanted {
            if self.running.iter().any(|r| r.spec == *spec) {
                continue;
            }
            match self.start(spec) {
                Ok(r) => self.running.push(r),
                Err(e) => {
                    first_err.get_or_insert((spec.role, e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn start(&self, spec: &SyncDaemonSpec) -> Result<Running, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = self.counters.clone();
        let feeds = self.feeds.clone();
        let st = stop.clone();
        if spec.role == SyncRole::Master && spec.transport == SyncTransport::Dataplane {
            return self.start_dataplane(spec);
        }
        let thread = match spec.role {
            SyncRole::Master => {
                let sock = master_socket(spec)?;
                let maxlen = usize::from(spec.sync_maxlen.unwrap_or(1472));
                let builder =
                    SyncMessageBuilder::new(spec.syncid, maxlen).map_err(|e| e.to_string())?;
                let port = spec.mcast_port.unwrap_or(DEFAULT_PORT);
                let idx = ifindex(&spec.mcast_interface).unwrap_or(0);
                let peers: Vec<SocketAddr> =
                    spec.peers.iter().map(|&p| scoped(p, port, idx)).collect();
                for f in &feeds {
                    f.master.store(true, Ordering::Relaxed);
                }
                std::thread::Builder::new()
                    .name("vsd-sync-master".into())
                    .spawn(move || master_loop(sock, peers, builder, feeds, counters, st))
            }
            SyncRole::Backup => {
                let sock = backup_socket(spec)?;
                let owner = self.owner.clone();
                let syncid = spec.syncid;
                let peers = spec.peers.clone();
                std::thread::Builder::new()
                    .name("vsd-sync-backup".into())
                    .spawn(move || backup_loop(sock, syncid, peers, feeds, owner, counters, st))
            }
        }
        .map_err(|e| format!("sync thread: {e}"))?;
        Ok(Running {
            spec: spec.clone(),
            stop,
            thread: Some(thread),
            dataplane: Vec::new(),
        })
    }

    /// A master sending from the workers: each is told the port, group
    /// and message length; no thread.
    fn start_dataplane(&self, spec: &SyncDaemonSpec) -> Result<Running, String> {
        let ports = PORTS.get().map_or(&[][..], Vec::as_slice);
        let port = port_named(ports, &spec.mcast_interface).ok_or_else(|| {
            format!(
                "--mcast-interface {}: no DPDK port or kernel twin of one",
                spec.mcast_interface
            )
        })?;
        let (group, mcast_port) = group_of(spec);
        let conf = SyncTxConf {
            port: port.index,
            syncid: spec.syncid,
            maxlen: usize::from(spec.sync_maxlen.unwrap_or(1472)),
            group,
            // every worker is the kernel's thread 0 (see sync_tx's note)
            dst_port: mcast_port,
            ttl: spec.mcast_ttl.unwrap_or(DEFAULT_TTL),
        };
        SyncMessageBuilder::new(conf.syncid, conf.maxlen).map_err(|e| e.to_string())?;
        for f in &self.feeds {
            f.dp.set(Some(conf.clone()));
            f.master.store(true, Ordering::Relaxed);
        }
        Ok(Running {
            spec: spec.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            dataplane: self.feeds.clone(),
        })
    }

    /// Stop every daemon (vsd shutting down).
    pub fn stop_all(&mut self) {
        let _ = self.reconcile(&[]);
    }

    /// The counters for `--counters`: the daemons' and the workers' summed.
    pub fn counters_json(&self) -> Value {
        let mut all: BTreeMap<String, u64> = self.counters.values();
        for f in &self.feeds {
            for (k, v) in f.counters.values() {
                *all.entry(format!("worker_{k}")).or_default() += v;
            }
        }
        // the data-plane transport's, per worker and summed
        let mut workers = Vec::new();
        for (w, f) in self.feeds.iter().enumerate() {
            let mut one = BTreeMap::new();
            for (k, v) in f.dp.counters.values() {
                // what the master sent, whichever transport; the rest by name
                let key = match k {
                    "sent_messages" | "sent_entries" => k.to_string(),
                    _ => format!("dataplane_{k}"),
                };
                *all.entry(key).or_default() += v;
                one.insert(k.to_string(), v);
            }
            workers.push(json!({ "worker": w, "counters": one }));
        }
        let master = self
            .running
            .iter()
            .find(|r| r.spec.role == SyncRole::Master);
        json!({
            "running": self.running.iter().map(|r| r.spec.role.name()).collect::<Vec<_>>(),
            "transport": master.map(|r| r.spec.transport.name()),
            "counters": all,
            "dataplane_workers": workers,
        })
    }
}

impl Drop for SyncDaemons {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `addr` as the kernel takes it in a `msghdr`.
fn raw_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in6.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// Send every message of `msgs` to the group (connected socket, `peers`
/// empty) or to every unicast peer: one `sendmmsg(2)` per destination for
/// the whole batch, not a system call per datagram. A datagram the kernel
/// refuses is counted (`send_errors`) and the rest still go.
fn send_batch(sock: &UdpSocket, peers: &[SocketAddr], msgs: &[Vec<u8>], counters: &SyncCounters) {
    if msgs.is_empty() {
        return;
    }
    let mut iov: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    let dests: Vec<Option<SocketAddr>> = if peers.is_empty() {
        vec![None]
    } else {
        peers.iter().copied().map(Some).collect()
    };
    for dest in dests {
        let mut raw = dest.as_ref().map(raw_sockaddr);
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is valid (no name, no control).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                if let Some((st, len)) = raw.as_mut() {
                    h.msg_hdr.msg_name = (st as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen = *len;
                }
                h
            })
            .collect();
        let mut at = 0;
        while at < hdrs.len() {
            let rest = &mut hdrs[at..];
            // SAFETY: `rest` holds `rest.len()` initialised headers whose
            // iovecs point into `msgs` and whose names point into `raw`,
            // all live for the call; the kernel writes only `msg_len`.
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len().min(u32::MAX as usize) as libc::c_uint,
                    0,
                )
            };
            if rc <= 0 {
                // the first datagram of `rest` failed: count it, go on
                counters.add(SEND_ERRORS, 1);
                at += 1;
                continue;
            }
            let sent = rc as usize;
            let entries: usize = msgs[at..at + sent].iter().map(|m| entries_of(m)).sum();
            counters.add(SENT_MESSAGES, sent as u64);
            counters.add(SENT_ENTRIES, entries as u64);
            at += sent;
        }
    }
}

/// Entries in an encoded message (its `nr_conns` byte).
fn entries_of(msg: &[u8]) -> usize {
    msg.get(4).map_or(0, |n| usize::from(*n))
}

/// Records the master takes from one worker's queue at a time.
const MASTER_TAKE: usize = 1024;

/// The master's batching: records in, finished messages out (when full,
/// when the oldest entry has waited [`FLUSH_AFTER`], or when stopping).
/// Records leave the workers' queues a batch at a time into buffers kept
/// from round to round (no allocation per record); each becomes its wire
/// entry straight in the message being filled.
#[derive(Debug)]
pub struct MasterBatch {
    builder: SyncMessageBuilder,
    first_pending: Option<Instant>,
    recs: Vec<SyncRecord>,
    recs6: Vec<SyncRecord<u128>>,
}

impl MasterBatch {
    pub fn new(builder: SyncMessageBuilder) -> Self {
        MasterBatch {
            builder,
            first_pending: None,
            recs: Vec::with_capacity(MASTER_TAKE),
            recs6: Vec::with_capacity(MASTER_TAKE),
        }
    }

    /// Drain every feed into messages; those to send are appended to `out`.
    /// Returns the records taken. At most a queue's capacity per feed and
    /// round, so a worker producing as fast as this drains cannot hold the
    /// daemon here.
    pub fn collect(
        &mut self,
        feeds: &[Arc<SyncFeed>],
        now: Instant,
        stopping: bool,
        counters: &SyncCounters,
        out: &mut Vec<Vec<u8>>,
    ) -> usize {
        let MasterBatch {
            builder,
            first_pending,
            recs,
            recs6,
        } = self;
        let mut taken = 0;
        for f in feeds {
            let mut budget = f.out.capacity() + f.out6.capacity();
            while budget > 0 {
                recs.clear();
                recs6.clear();
                let n = f.out.pop_into(recs, MASTER_TAKE) + f.out6.pop_into(recs6, MASTER_TAKE);
                if n == 0 {
                    break;
                }
                budget = budget.saturating_sub(n);
                taken += n;
                let wire = recs
                    .iter()
                    .map(|r| r.to_wire())
                    .chain(recs6.iter().map(|r| r.to_wire()));
                for rec in wire {
                    match builder.push(&rec) {
                        Ok(Some(msg)) => {
                            out.push(msg);
                            *first_pending = Some(now);
                        }
                        Ok(None) => {
                            first_pending.get_or_insert(now);
                        }
                        Err(_) => counters.add(ENCODE_ERRORS, 1),
                    }
                }
            }
        }
        let due = first_pending.is_some_and(|t| now.saturating_duration_since(t) >= FLUSH_AFTER);
        if builder.pending() > 0 && (due || stopping) {
            out.extend(builder.finish());
            *first_pending = None;
        }
        taken
    }
}

fn master_loop(
    sock: UdpSocket,
    peers: Vec<SocketAddr>,
    builder: SyncMessageBuilder,
    feeds: Vec<Arc<SyncFeed>>,
    counters: Arc<SyncCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = MasterBatch::new(builder);
    let mut ready = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let taken = batch.collect(&feeds, Instant::now(), stopping, &counters, &mut ready);
        send_batch(&sock, &peers, &ready, &counters);
        ready.clear();
        if stopping {
            return;
        }
        std::thread::sleep(if taken > 0 {
            MASTER_BUSY_POLL
        } else {
            MASTER_POLL
        });
    }
}

/// Where entry `c` goes: `(worker, redirect)` pairs (`A`: its family).
fn destinations<A: Family>(
    c: &SyncedConn<A::Key>,
    owner: Option<&RssOwner>,
    workers: usize,
    out: &mut Vec<(usize, bool)>,
) {
    out.clear();
    let Some(rss) = owner else {
        out.push((0, false));
        return;
    };
    if c.template {
        out.extend((0..workers).map(|w| (w, false)));
        return;
    }
    let ip = A::from_key;
    let request = usize::from(A::owner(
        rss,
        ip(c.client.addr),
        ip(c.virt.addr),
        c.client.port,
        c.virt.port,
    ));
    let reply_dst = c.local.unwrap_or(c.client);
    let reply = usize::from(A::owner(
        rss,
        ip(c.real.addr),
        ip(reply_dst.addr),
        c.real.port,
        reply_dst.port,
    ));
    match c.fwd {
        FwdMethod::Masq if reply != request => {
            out.push((reply, false));
            out.push((request, true));
        }
        FwdMethod::FullNat if reply != request => {
            out.push((request, false));
            out.push((reply, false));
        }
        _ => out.push((request, false)),
    }
}

fn backup_loop(
    sock: UdpSocket,
    syncid: u8,
    peers: Vec<IpAddr>,
    feeds: Vec<Arc<SyncFeed>>,
    owner: Option<Arc<RssOwner>>,
    counters: Arc<SyncCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    let mut dests = Vec::with_capacity(8);
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, from)) if peers.is_empty() || peers.contains(&from.ip()) => n,
            Ok(_) => {
                counters.add(DROPPED_NOT_A_PEER, 1);
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                counters.add(RECV_ERRORS, 1);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        ingest_datagram(
            &buf[..n],
            syncid,
            owner.as_deref(),
            &feeds,
            &counters,
            &mut dests,
        );
    }
}

/// The backup's work on one datagram from an accepted source: decode it
/// (sync ID `syncid`), check every entry and hand it to the workers owning
/// its tuples (`owner`; `None`: worker 0), which install it at their next
/// loop turn. The counters move once per datagram; drops by reason.
/// `dests`: scratch space kept by the caller.
pub fn ingest_datagram(
    buf: &[u8],
    syncid: u8,
    owner: Option<&RssOwner>,
    feeds: &[Arc<SyncFeed>],
    counters: &SyncCounters,
    dests: &mut Vec<(usize, bool)>,
) {
    counters.add(RECEIVED_MESSAGES, 1);
    let msg = match decode(buf, syncid) {
        Ok(m) => m,
        Err(e) => {
            counters.message_dropped(message_drop_name(&e));
            return;
        }
    };
    let (mut delivered, mut inbox_full, mut no_worker) = (0u64, 0u64, 0u64);
    for entry in &msg.entries {
        let s = match entry {
            Ok(s) => s,
            Err(e) => {
                counters.entry_dropped(entry_drop_name(e));
                continue;
            }
        };
        let outcome = if s.client.is_ipv6() {
            deliver::<Ipv6Addr>(s, owner, feeds, dests, |f, d| f.inbox6.push(d).is_ok())
        } else {
            deliver::<Ipv4Addr>(s, owner, feeds, dests, |f, d| f.inbox.push(d).is_ok())
        };
        if let Err(e) = outcome {
            counters.entry_dropped(from_sync_drop_name(&e));
            continue;
        }
        for &(w, pushed) in dests.iter() {
            match (w < feeds.len(), pushed) {
                (false, _) => no_worker += 1,
                (true, false) => inbox_full += 1,
                (true, true) => delivered += 1,
            }
        }
    }
    counters.add(RECEIVED_ENTRIES, msg.entries.len() as u64);
    counters.add(DELIVERED_ENTRIES, delivered);
    counters.add(DROPPED_INBOX_FULL, inbox_full);
    counters.add(DROPPED_NO_WORKER, no_worker);
}

/// Check entry `s` against a table of family `A` and hand it to the
/// workers that own its tuples; `dests` gets `(worker, delivered)` pairs.
fn deliver<A: Family>(
    s: &SyncConn,
    owner: Option<&RssOwner>,
    feeds: &[Arc<SyncFeed>],
    dests: &mut Vec<(usize, bool)>,
    push: impl Fn(&SyncFeed, SyncDelivery<A::Key>) -> bool,
) -> Result<(), FromSyncError>
where
    A::Key: SyncAddr,
{
    let conn = SyncedConn::<A::Key>::from_sync(s)?;
    destinations::<A>(&conn, owner, feeds.len(), dests);
    for (w, redirect) in dests.iter_mut() {
        let pushed = feeds.get(*w).is_some_and(|f| {
            push(
                f,
                SyncDelivery {
                    conn,
                    redirect: *redirect,
                },
            )
        });
        *redirect = pushed;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::test_netns::{in_private_netns, ip};
    use crate::lb::conn::Endpoint;

    fn synced(fwd: FwdMethod, local: Option<Endpoint<u32>>) -> SyncedConn<u32> {
        SyncedConn {
            proto: 6,
            client: Endpoint::new(0xc612_0002, 40000),
            virt: Endpoint::new(0xc612_0064, 80),
            local,
            real: Endpoint::new(0xc613_0002, 8080),
            fwd,
            template: false,
            state: 1,
            inactive: false,
            no_output: false,
            timeout_s: 900,
            fwmark: 0,
            synproxy: None,
        }
    }

    #[test]
    fn defaults_are_the_kernels() {
        let spec = SyncDaemonSpec {
            role: SyncRole::Master,
            mcast_interface: "lo".into(),
            syncid: 7,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            peers: Vec::new(),
            transport: SyncTransport::Auto,
        };
        let r = resolve(&spec).unwrap();
        assert_eq!(r.sync_maxlen, Some(1472));
        assert_eq!(r.mcast_group, Some(IpAddr::V4(DEFAULT_GROUP)));
        assert_eq!(r.mcast_port, Some(8848));
        assert_eq!(r.mcast_ttl, Some(1));
        // lo's MTU (65536) clamps to 65535 for a backup
        let b = resolve(&SyncDaemonSpec {
            role: SyncRole::Backup,
            ..spec.clone()
        })
        .unwrap();
        assert_eq!(b.sync_maxlen, Some(65535 - 28));
        // given lengths are clamped as the kernel does; a master needs room
        // for one entry of the largest kind
        let clamp = |role, m| {
            resolve(&SyncDaemonSpec {
                role,
                sync_maxlen: Some(m),
                ..spec.clone()
            })
        };
        assert_eq!(
            clamp(SyncRole::Backup, 100).unwrap().sync_maxlen,
            Some(1024)
        );
        assert_eq!(
            clamp(SyncRole::Master, 65535).unwrap().sync_maxlen,
            Some(65507)
        );
        assert!(clamp(SyncRole::Master, 20)
            .unwrap_err()
            .contains("--sync-maxlen 20"));
        let bad = SyncDaemonSpec {
            mcast_interface: "nonexistent0".into(),
            ..spec.clone()
        };
        assert_eq!(
            resolve(&bad).unwrap_err(),
            "--mcast-interface nonexistent0: no such interface"
        );
        let unicast = SyncDaemonSpec {
            mcast_group: Some("198.18.0.1".parse().unwrap()),
            ..spec
        };
        assert!(resolve(&unicast).unwrap_err().contains("not a multicast"));
    }

    /// `auto` sends from the data plane for a multicast master on a port
    /// or its twin and from kernel sockets otherwise; `dataplane` where
    /// it cannot work is refused, naming why.
    #[test]
    fn transport_selection() {
        let ports = [SyncPort {
            index: 1,
            name: "lan".into(),
            twin: Some("lo".into()),
            addrs: vec!["198.18.0.1".parse().unwrap(), "fe80::1".parse().unwrap()],
            max_frame: 1514,
        }];
        let spec = |ifname: &str, t| SyncDaemonSpec {
            role: SyncRole::Master,
            mcast_interface: ifname.into(),
            syncid: 1,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            peers: Vec::new(),
            transport: t,
        };
        let run = |s: &SyncDaemonSpec| resolve_with(s, &ports).map(|r| r.transport);
        use SyncTransport::*;
        // the twin's name or the port's own
        assert_eq!(run(&spec("lo", Auto)), Ok(Dataplane));
        assert_eq!(run(&spec("lan", Auto)), Ok(Dataplane));
        assert_eq!(run(&spec("lan", Dataplane)), Ok(Dataplane));
        assert_eq!(run(&spec("lo", Kernel)), Ok(Kernel));
        // a port name is no kernel interface
        assert!(run(&spec("lan", Kernel))
            .unwrap_err()
            .contains("no such interface"));
        // lo is no port without the registry
        assert_eq!(
            resolve_with(&spec("lo", Auto), &[]).map(|r| r.transport),
            Ok(Kernel)
        );
        let e = resolve_with(&spec("lo", Dataplane), &[]).unwrap_err();
        assert!(e.contains("no DPDK port or kernel twin"), "{e}");
        // unicast peers: kernel for auto, refused for dataplane
        let peers = SyncDaemonSpec {
            peers: vec!["198.18.0.2".parse().unwrap()],
            ..spec("lo", Auto)
        };
        assert_eq!(run(&peers), Ok(Kernel));
        let e = run(&SyncDaemonSpec {
            transport: Dataplane,
            ..peers
        })
        .unwrap_err();
        assert!(e.contains("unicast peers"), "{e}");
        // a backup receives through the kernel
        let backup = SyncDaemonSpec {
            role: SyncRole::Backup,
            ..spec("lo", Auto)
        };
        assert_eq!(run(&backup), Ok(Kernel));
        assert!(run(&SyncDaemonSpec {
            transport: Dataplane,
            ..backup
        })
        .unwrap_err()
        .contains("only a master"));
        // a global IPv6 group needs an address to send from: fe80::1 does
        let v6 = SyncDaemonSpec {
            mcast_group: Some("ff05::81".parse().unwrap()),
            ..spec("lan", Dataplane)
        };
        assert_eq!(run(&v6), Ok(Dataplane));
        let no_v4 = [SyncPort {
            addrs: vec!["fe80::1".parse().unwrap()],
            ..ports[0].clone()
        }];
        let e = resolve_with(&spec("lan", Dataplane), &no_v4).unwrap_err();
        assert!(e.contains("no address of group 224.0.0.81's family"), "{e}");
        // a message larger than the port's frames
        let big = SyncDaemonSpec {
            sync_maxlen: Some(4000),
            ..spec("lan", Dataplane)
        };
        assert!(run(&big).unwrap_err().contains("sends at most 1514"));
        assert_eq!(
            run(&SyncDaemonSpec {
                transport: Auto,
                ..big
            }),
            Err("--mcast-interface lan: no such interface".into())
        );
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A master with unicast peers sends each message to every peer; a
    /// backup with peers takes datagrams from them only (a stranger's is
    /// counted and dropped) and delivers the entries to the workers.
    #[test]
    fn unicast_peers_carry_sync_and_strangers_are_dropped() {
        let port = free_udp_port();
        let spec = |role, peers: &[&str]| SyncDaemonSpec {
            role,
            mcast_interface: "lo".into(),
            syncid: 9,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: Some(port),
            mcast_ttl: None,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            transport: SyncTransport::Auto,
        };
        let r = resolve(&spec(SyncRole::Master, &["127.0.0.1"])).unwrap();
        assert_eq!(r.peers, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(resolve(&spec(SyncRole::Master, &["224.0.0.81"]))
            .unwrap_err()
            .contains("unicast"));
        assert!(
            resolve(&spec(SyncRole::Master, &["127.0.0.1", "127.0.0.1"]))
                .unwrap_err()
                .contains("twice")
        );
        // master and backup in one vsd, as both roles may run
        let feeds = vec![Arc::new(SyncFeed::default())];
        let mut d = SyncDaemons::new(feeds.clone(), None);
        let wanted = [
            resolve(&spec(SyncRole::Backup, &["127.0.0.1"])).unwrap(),
            resolve(&spec(SyncRole::Master, &["127.0.0.1"])).unwrap(),
        ];
        d.reconcile(&wanted).unwrap();
        let listed = super::super::listing::render_daemons(&wanted);
        assert!(listed.contains(", peer=127.0.0.1)"), "{listed}");
        let rec = crate::wire::ipvs_sync::SyncConn {
            protocol: 6,
            flags: crate::wire::ipvs_sync::flags::MASQ,
            state: 1,
            client: "198.18.1.10:40000".parse().unwrap(),
            virt: "198.18.0.100:80".parse().unwrap(),
            real: "198.18.0.20:8080".parse().unwrap(),
            fwmark: 0,
            timeout_s: 900,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        };
        // a stranger (127.0.0.2) sends a valid message: dropped
        let mut b = SyncMessageBuilder::new(9, 1472).unwrap();
        b.push(&rec).unwrap();
        let msg = b.finish().unwrap();
        let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
        stranger.send_to(&msg, ("127.0.0.1", port)).unwrap();
        // the master's record, through its worker's queue
        feeds[0]
            .out
            .push(SyncRecord::from_wire(&rec).unwrap())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            if let Some(d) = feeds[0].inbox.pop() {
                break d;
            }
            assert!(Instant::now() < deadline, "nothing delivered");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            got.conn,
            SyncedConn::from_sync(&{
                let mut r = rec;
                r.flags |= crate::wire::ipvs_sync::flags::SYNC;
                r
            })
            .unwrap()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.counters.values()["dropped_message_not_a_peer"] == 0 {
            assert!(Instant::now() < deadline, "stranger not counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        d.stop_all();
        let c = d.counters.values();
        assert_eq!(c["sent_messages"], 1);
        assert_eq!(c["received_messages"], 1, "{c:?}");
        assert_eq!(c["dropped_message_not_a_peer"], 1);
        assert_eq!(c["delivered_entries"], 1);
    }

    /// One record from the master's worker queue to the backup's inbox.
    fn carries_one_record(wanted: &[SyncDaemonSpec]) {
        let feeds = vec![Arc::new(SyncFeed::default())];
        let mut d = SyncDaemons::new(feeds.clone(), None);
        d.reconcile(wanted).unwrap();
        let rec = crate::wire::ipvs_sync::SyncConn {
            protocol: 17,
            flags: crate::wire::ipvs_sync::flags::MASQ,
            state: 0,
            client: "198.18.1.10:5353".parse().unwrap(),
            virt: "198.18.0.100:53".parse().unwrap(),
            real: "198.18.0.20:53".parse().unwrap(),
            fwmark: 0,
            timeout_s: 300,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        };
        feeds[0]
            .out
            .push(SyncRecord::from_wire(&rec).unwrap())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            if let Some(d) = feeds[0].inbox.pop() {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "nothing delivered: {:?}",
                d.counters.values()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut synced = rec;
        synced.flags |= crate::wire::ipvs_sync::flags::SYNC;
        assert_eq!(got.conn, SyncedConn::from_sync(&synced).unwrap());
        d.stop_all();
        let c = d.counters.values();
        assert_eq!(c["sent_messages"], 1, "{c:?}");
        assert_eq!(c["received_messages"], 1, "{c:?}");
        assert_eq!(c["send_errors"], 0, "{c:?}");
    }

    /// As the kernel with an IPv6 `--mcast-group`: the group joined on the
    /// backup's interface, the master sending to it on its own, 48 header
    /// bytes off `sync_maxlen`; unicast peers over IPv6 likewise.
    #[test]
    fn ipv6_groups_and_peers_carry_sync() {
        let spec = |role, ifname: &str, group: &str, peers: &[&str]| SyncDaemonSpec {
            role,
            mcast_interface: ifname.into(),
            syncid: 4,
            sync_maxlen: None,
            mcast_group: Some(group.parse().unwrap()),
            mcast_port: Some(8848),
            mcast_ttl: None,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            transport: SyncTransport::Auto,
        };
        assert!(resolve(&spec(SyncRole::Master, "lo", "2001:2::1", &[]))
            .unwrap_err()
            .contains("--mcast-group 2001:2::1: not a multicast address"));
        assert_eq!(
            resolve(&spec(
                SyncRole::Master,
                "lo",
                "ff02::51",
                &["::1", "127.0.0.1"]
            ))
            .unwrap_err(),
            "--sync-peer 127.0.0.1: peers of one address family only (::1 is the other)"
        );
        assert!(
            resolve(&spec(SyncRole::Master, "lo", "ff02::51", &["ff02::1"]))
                .unwrap_err()
                .contains("must be a unicast address")
        );
        let master = resolve(&spec(SyncRole::Master, "lo", "ff02::51", &[])).unwrap();
        assert_eq!(master.sync_maxlen, Some(1500 - 48));
        let backup = resolve(&spec(SyncRole::Backup, "lo", "ff02::51", &[])).unwrap();
        assert_eq!(backup.sync_maxlen, Some(65535 - 48));
        // IPv4 peers of an IPv6 group travel in IPv4
        let v4 = resolve(&spec(SyncRole::Master, "lo", "ff02::51", &["127.0.0.1"])).unwrap();
        assert_eq!(v4.sync_maxlen, Some(1500 - 28));
        let listed = super::super::listing::render_daemons(&[master]);
        assert!(listed.contains(", group=ff02::51, port=8848"), "{listed}");

        in_private_netns(|| {
            // a link between two interfaces: master on one, backup on the other
            std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").unwrap();
            ip(&[
                "link", "add", "vsync0", "type", "veth", "peer", "name", "vsync1",
            ]);
            ip(&["link", "set", "vsync0", "up"]);
            ip(&["link", "set", "vsync1", "up"]);
            // addrconf gives the veths their link-local addresses
            // asynchronously; sending before that is ENETUNREACH
            for dev in ["vsync0", "vsync1"] {
                wait_link_local(dev);
            }
            carries_one_record(&[
                resolve(&spec(SyncRole::Backup, "vsync1", "ff02::51", &[])).unwrap(),
                resolve(&spec(SyncRole::Master, "vsync0", "ff02::51", &[])).unwrap(),
            ]);
            // unicast IPv6 peers
            carries_one_record(&[
                resolve(&spec(SyncRole::Backup, "lo", "ff02::51", &["::1"])).unwrap(),
                resolve(&spec(SyncRole::Master, "lo", "ff02::51", &["::1"])).unwrap(),
            ]);
        });
    }

    /// Waits (at most 10 s) until `dev` has an IPv6 link-local address.
    fn wait_link_local(dev: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = std::process::Command::new("ip")
                .args(["-6", "-o", "addr", "show", "dev", dev, "scope", "link"])
                .output()
                .expect("ip -6 addr show");
            if String::from_utf8_lossy(&out.stdout).contains("fe80::") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{dev} got no link-local address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn settings_reach_the_feeds() {
        let feeds = vec![Arc::new(SyncFeed::default()), Arc::new(SyncFeed::default())];
        let mut d = SyncDaemons::new(feeds.clone(), None);
        assert_eq!(feeds[1].settings(), Some(SyncSettings::default()));
        let s = SyncSettings {
            threshold: 7,
            period: 0,
            refresh_period_s: 120,
            retries: 3,
            persist_mode: true,
            version: 1,
        };
        d.set_settings(&s);
        assert!(feeds.iter().all(|f| f.settings() == Some(s)));
    }

    #[test]
    fn entries_go_to_the_owners_of_their_tuples() {
        let rss = RssOwner::round_robin(4, 128);
        let mut out = Vec::new();
        // one worker: everything to worker 0
        destinations::<Ipv4Addr>(&synced(FwdMethod::Masq, None), None, 1, &mut out);
        assert_eq!(out, [(0, false)]);
        // NAT: the reply owner gets the connection, the request owner a
        // redirect when they differ; search clients until they do
        let mut seen_split = false;
        for port in 40000..40100u16 {
            let mut c = synced(FwdMethod::Masq, None);
            c.client.port = port;
            destinations::<Ipv4Addr>(&c, Some(&rss), 4, &mut out);
            let ip = Ipv4Addr::from;
            let req = usize::from(rss.owner_v4(ip(c.client.addr), ip(c.virt.addr), port, 80));
            let rep = usize::from(rss.owner_v4(ip(c.real.addr), ip(c.client.addr), 8080, port));
            if req == rep {
                assert_eq!(out, [(req, false)]);
            } else {
                seen_split = true;
                assert_eq!(out, [(rep, false), (req, true)]);
            }
        }
        assert!(seen_split);
        let mut t = synced(FwdMethod::Masq, None);
        t.template = true;
        destinations::<Ipv4Addr>(&t, Some(&rss), 4, &mut out);
        assert_eq!(out.len(), 4);
    }

    /// An IPv6 FULLNAT entry as a master sends it.
    fn fullnat6(cport: u16) -> crate::wire::ipvs_sync::SyncConn {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        crate::wire::ipvs_sync::SyncConn {
            protocol: 6,
            flags: crate::wire::ipvs_sync::flags::MASQ,
            state: 1,
            client: SocketAddr::new(sa("[2001:2:0:c::7]:0").ip(), cport),
            virt: sa("[2001:2::64]:80"),
            real: sa("[2001:2:0:1::11]:8080"),
            fwmark: 0,
            timeout_s: 900,
            seq: None,
            fullnat_local: Some(sa("[2001:2:0:2::1]:20000")),
            synproxy: None,
        }
    }

    #[test]
    fn ipv6_entries_go_to_the_owners_ipv6_inboxes() {
        let rss = RssOwner::round_robin(4, 128);
        let feeds: Vec<Arc<SyncFeed>> = (0..4).map(|_| Arc::new(SyncFeed::default())).collect();
        let mut dests = Vec::new();
        let v6 = |s: SocketAddr| match s.ip() {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => unreachable!(),
        };
        let mut seen_split = false;
        for port in 40000..40100u16 {
            let s = fullnat6(port);
            deliver::<Ipv6Addr>(&s, Some(&rss), &feeds, &mut dests, |f, d| {
                f.inbox6.push(d).is_ok()
            })
            .unwrap();
            let l = s.fullnat_local.unwrap();
            let req = usize::from(rss.owner_v6(&v6(s.client), &v6(s.virt), port, 80));
            let rep = usize::from(rss.owner_v6(&v6(s.real), &v6(l), 8080, l.port()));
            // FULLNAT: the full entry on both owners, all delivered
            if req == rep {
                assert_eq!(dests, [(req, true)]);
            } else {
                seen_split = true;
                assert_eq!(dests, [(req, true), (rep, true)]);
            }
            for (w, f) in feeds.iter().enumerate() {
                let want = usize::from(w == req) + usize::from(w == rep && rep != req);
                assert_eq!(f.inbox6.len(), want, "worker {w}");
                assert!(f.inbox.is_empty(), "never the IPv4 inbox");
                while let Some(d) = f.inbox6.pop() {
                    assert_eq!(d.conn.client.port, port);
                    assert!(!d.redirect);
                }
            }
        }
        assert!(seen_split);
        // an IPv6 entry does not fit an IPv4 table, and the reverse
        assert_eq!(
            deliver::<Ipv4Addr>(&fullnat6(1), Some(&rss), &feeds, &mut dests, |_, _| true),
            Err(FromSyncError::AddressFamily)
        );
    }

    #[test]
    fn master_sends_ipv6_records() {
        let feeds = vec![Arc::new(SyncFeed::default())];
        let counters = SyncCounters::default();
        let mut batch = MasterBatch::new(SyncMessageBuilder::new(7, 1452).unwrap());
        let rec = crate::lb::sync::SyncRecord::<u128>::from_wire(&fullnat6(40000)).unwrap();
        assert!(feeds[0].out6.push(rec).is_ok());
        let mut out = Vec::new();
        assert_eq!(
            batch.collect(&feeds, Instant::now(), true, &counters, &mut out),
            1
        );
        assert_eq!(out.len(), 1);
        let m = decode(&out[0], 7).unwrap();
        let got = m.entries[0].as_ref().unwrap();
        assert_eq!(got.client, fullnat6(40000).client);
        assert_eq!(got.fullnat_local, fullnat6(40000).fullnat_local);
    }

    #[test]
    fn master_batches_until_full_or_two_seconds() {
        let feeds = vec![Arc::new(SyncFeed::default()), Arc::new(SyncFeed::default())];
        let counters = SyncCounters::default();
        let mut batch = MasterBatch::new(SyncMessageBuilder::new(7, 1472).unwrap());
        let rec = |port: u16| crate::wire::ipvs_sync::SyncConn {
            protocol: 6,
            flags: crate::wire::ipvs_sync::flags::MASQ,
            state: 1,
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10)), port),
            virt: "198.18.0.100:80".parse().unwrap(),
            real: "198.18.0.20:8080".parse().unwrap(),
            fwmark: 0,
            timeout_s: 900,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        };
        let t0 = Instant::now();
        let mut out = Vec::new();
        // three records from two workers wait (up to 2 s) for company
        let rec = |port| SyncRecord::from_wire(&rec(port)).unwrap();
        feeds[0].out.push(rec(1)).unwrap();
        feeds[1].out.push(rec(2)).unwrap();
        feeds[1].out.push(rec(3)).unwrap();
        batch.collect(&feeds, t0, false, &counters, &mut out);
        assert!(out.is_empty());
        batch.collect(
            &feeds,
            t0 + Duration::from_millis(1999),
            false,
            &counters,
            &mut out,
        );
        assert!(out.is_empty());
        batch.collect(&feeds, t0 + FLUSH_AFTER, false, &counters, &mut out);
        assert_eq!(out.len(), 1);
        let m = decode(&out[0], 7).unwrap();
        assert_eq!(m.entries.len(), 3);
        // a burst fills messages to sync_maxlen: 40 IPv4 entries of 36
        // bytes after the 8-byte header in 1472 bytes
        out.clear();
        for p in 0..100 {
            feeds[0].out.push(rec(100 + p)).unwrap();
        }
        batch.collect(&feeds, t0 + FLUSH_AFTER, false, &counters, &mut out);
        assert_eq!(
            out.iter().map(|m| entries_of(m)).collect::<Vec<_>>(),
            [40, 40]
        );
        assert!(out.iter().all(|m| m.len() <= 1472));
        // the rest leaves when the daemon stops
        batch.collect(&feeds, t0 + FLUSH_AFTER, true, &counters, &mut out);
        assert_eq!(
            out.iter().map(|m| entries_of(m)).collect::<Vec<_>>(),
            [40, 40, 20]
        );
    }

    #[test]
    fn every_message_drop_has_a_distinct_name() {
        let errs = [
            MessageError::HeaderTooShort { len: 0 },
            MessageError::SizeMismatch {
                header: 0,
                actual: 0,
            },
            MessageError::SyncIdMismatch { got: 0 },
            MessageError::BadVersion(0),
            MessageError::BadSpare,
            MessageError::EntryTruncated { index: 0 },
            MessageError::EntryOverrun { index: 0 },
            MessageError::EntryVersion {
                index: 0,
                version: 0,
            },
            MessageError::EntryType {
                index: 0,
                entry_type: 0,
            },
            MessageError::EntryTooSmall { index: 0, size: 0 },
            MessageError::OptionTruncated { index: 0 },
            MessageError::OptionEmpty { index: 0 },
            MessageError::BadSeqOption { index: 0 },
            MessageError::BadPeOption { index: 0 },
            MessageError::TrailingData { extra: 0 },
        ];
        let names: std::collections::BTreeSet<_> = errs.iter().map(message_drop_name).collect();
        assert_eq!(names.len(), errs.len());
        assert!(names.iter().all(|n| MESSAGE_DROPS.contains(n)));
        assert_eq!(MESSAGE_DROPS.len(), errs.len());
        let entry = [
            EntryError::UnknownMandatoryOption(0),
            EntryError::UnsupportedProtocol(0),
            EntryError::InvalidState {
                protocol: 0,
                state: 0,
            },
            EntryError::PersistenceEngine,
            EntryError::Version0SeqData,
            EntryError::BadFullnatOption,
            EntryError::BadSynproxyOption,
        ];
        let from = [
            FromSyncError::AddressFamily,
            FromSyncError::ForwardingMethod(0),
            FromSyncError::Protocol(0),
            FromSyncError::State(0),
            FromSyncError::SeqAdjust,
        ];
        let names: std::collections::BTreeSet<_> = entry
            .iter()
            .map(entry_drop_name)
            .chain(from.iter().map(from_sync_drop_name))
            .collect();
        assert_eq!(names.len(), ENTRY_DROPS.len());
        assert!(names.iter().all(|n| ENTRY_DROPS.contains(n)));
        // all shown at 0 from the start
        let c = SyncCounters::default().values();
        assert_eq!(c.get("dropped_message_bad_version"), Some(&0));
        assert_eq!(c.get("dropped_entry_seq_adjust"), Some(&0));
        assert_eq!(c.get("sent_messages"), Some(&0));
    }
}
