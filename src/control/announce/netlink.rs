//! The announce interface over rtnetlink: find or create the link, add and
//! delete the VIPs' host addresses, delete the link vsd created.
//!
//! Each operation is one request with NLM_F_ACK on a blocking socket with
//! a receive timeout ([`REPLY_TIMEOUT`]), answered before the next: the
//! control thread does a handful of these per change, never per packet.
//! Replies to earlier requests that timed out are skipped by sequence
//! number.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::AnnounceKernel;
pub use crate::control::config::announce::LinkKind;

/// The longest vsd waits for the kernel's answer to one request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A synchronous rtnetlink client.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// What a request brought back.
#[derive(Debug, Default)]
struct Answer {
    /// Index of a link in the answer (RTM_GETLINK).
    link_index: Option<u32>,
}

impl Rtnl {
    pub fn open() -> std::io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: setsockopt on our own open socket with a valid timeval
        // and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Send one request and wait for its ACK (or error).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::io::Result<Answer> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), msg.into());
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out[..]);
        self.socket.send(&out, 0)?;
        let mut answer = Answer::default();
        loop {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n.min(self.buf.len()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer from the kernel",
                    ))
                }
                Err(e) => return Err(e),
            };
            let mut data = &self.buf[..n];
            while !data.is_empty() {
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) else {
                    break;
                };
                let len = (msg.header.length as usize + 3) & !3;
                let ours = msg.header.sequence_number == seq;
                match msg.payload {
                    NetlinkPayload::Error(e) if ours => {
                        return match e.code {
                            None => Ok(answer),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) if ours => {
                        answer.link_index = Some(l.header.index);
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                data = data.get(len..).unwrap_or_default();
            }
        }
    }

    /// The index of the link named `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> std::io::Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(a) => Ok(a.link_index),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a `dummy` link named `name`, up.
    pub fn create_dummy(&mut self, name: &str) -> std::io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Dummy,
            )]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(|_| ())
    }

    /// Set link `index` up.
    pub fn set_up(&mut self, index: u32) -> std::io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(m), 0).map(|_| ())
    }

    /// Delete link `index`.
    pub fn delete_link(&mut self, index: u32) -> std::io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0).map(|_| ())
    }

    fn addr_message(index: u32, ip: IpAddr) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.scope = AddressScope::Universe;
        match ip {
            IpAddr::V4(_) => {
                m.header.family = AddressFamily::Inet;
                m.header.prefix_len = 32;
                m.attributes.push(AddressAttribute::Local(ip));
            }
            IpAddr::V6(_) => {
                m.header.family = AddressFamily::Inet6;
                m.header.prefix_len = 128;
                // no duplicate address detection: a tentative address is
                // not exported by the routing daemon for its first second
                m.header.flags = AddressHeaderFlags::Nodad;
            }
        }
        m.attributes.push(AddressAttribute::Address(ip));
        m
    }

    /// Put `ip` on link `index` as a host address (present already is fine).
    pub fn add_host_addr(&mut self, index: u32, ip: IpAddr) -> std::io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewAddress(Self::addr_message(index, ip)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(|_| ())
    }

    /// Take the host address `ip` off link `index` (absent is fine).
    pub fn del_host_addr(&mut self, index: u32, ip: IpAddr) -> std::io::Result<()> {
        match self.request(
            RouteNetlinkMessage::DelAddress(Self::addr_message(index, ip)),
            0,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// A TUN device named `name` (IFF_TUN, no packet information), alive as
/// long as the returned file is open: not persistent, so it goes with vsd
/// however vsd ends.
fn open_tun(name: &str) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: an all-zero ifreq is valid (empty name, no flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF on our open /dev/net/tun descriptor with a valid,
    // initialised ifreq that lives across the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The announce interface: looked up by name on every request (so an
/// interface deleted and created again is found), created when absent,
/// removed at [`AnnounceKernel::close`] if vsd created it.
pub struct IfaceAnnouncer {
    rtnl: Rtnl,
    name: String,
    kind: LinkKind,
    /// Index of the link vsd created, to remove it at exit.
    created: Option<u32>,
    /// The TUN device vsd created (closing it removes the device).
    tun: Option<std::fs::File>,
}

impl IfaceAnnouncer {
    /// Open rtnetlink for interface `name` and create it (a dummy, up) if
    /// it does not exist, so that a routing daemon finds it from the start.
    /// Fails when rtnetlink is unusable or the link cannot be made (no
    /// CAP_NET_ADMIN, no dummy support in the kernel).
    pub fn open(name: &str, kind: LinkKind) -> Result<IfaceAnnouncer, String> {
        let rtnl = Rtnl::open().map_err(|e| format!("rtnetlink: {e}"))?;
        let mut a = IfaceAnnouncer {
            rtnl,
            name: name.to_string(),
            kind,
            created: None,
            tun: None,
        };
        a.index_or_create()?;
        Ok(a)
    }

    /// The interface's index, created as a dummy (up) when absent.
    fn index_or_create(&mut self) -> Result<u32, String> {
        if let Some(i) = self
            .rtnl
            .link_index(&self.name)
            .map_err(|e| e.to_string())?
        {
            return Ok(i);
        }
        let made = match self.kind {
            LinkKind::Dummy | LinkKind::Auto => match self.rtnl.create_dummy(&self.name) {
                Ok(()) => "dummy",
                // created meanwhile by someone else: use it
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => "",
                // a kernel without the dummy driver (CONFIG_DUMMY=n)
                Err(e)
                    if self.kind == LinkKind::Auto
                        && e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                {
                    self.create_tun()?;
                    "tun (this kernel has no dummy driver)"
                }
                Err(e) => return Err(format!("creating dummy link {}: {e}", self.name)),
            },
            LinkKind::Tun => {
                self.create_tun()?;
                "tun"
            }
        };
        let i = self
            .rtnl
            .link_index(&self.name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("link {} vanished after its creation", self.name))?;
        if self.tun.is_some() {
            self.rtnl
                .set_up(i)
                .map_err(|e| format!("setting {} up: {e}", self.name))?;
        }
        if !made.is_empty() {
            log::info!(
                "announce: created {made} link {} (index {i}), up",
                self.name
            );
            self.created = Some(i);
            // a link vsd made is vsd's: IPv6 on even where the namespace's
            // default has it off (IPv6 VIPs are announced there too)
            enable_ipv6(&self.name);
        }
        Ok(i)
    }

    fn create_tun(&mut self) -> Result<(), String> {
        let f =
            open_tun(&self.name).map_err(|e| format!("creating TUN device {}: {e}", self.name))?;
        self.tun = Some(f);
        Ok(())
    }
}

/// `net.ipv6.conf.IFACE.disable_ipv6 = 0`; a kernel without IPv6 has no
/// such file, and then IPv6 VIPs fail with their own error.
fn enable_ipv6(iface: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "0") {
        log::warn!("announce: enabling IPv6 on {iface} ({path}): {e}");
    }
}

impl AnnounceKernel for IfaceAnnouncer {
    fn add(&mut self, vip: IpAddr) -> Result<(), String> {
        let i = self.index_or_create()?;
        self.rtnl
            .add_host_addr(i, vip)
            .map_err(|e| match e.raw_os_error() {
                // the kernel's answer when IPv6 is off on the link
                Some(libc::EACCES) if vip.is_ipv6() => format!(
                    "IPv6 is disabled on {} (net.ipv6.conf.{}.disable_ipv6 = 1): {e}",
                    self.name, self.name
                ),
                _ => e.to_string(),
            })
    }

    fn remove(&mut self, vip: IpAddr) -> Result<(), String> {
        let Some(i) = self
            .rtnl
            .link_index(&self.name)
            .map_err(|e| e.to_string())?
        else {
            return Ok(()); // no interface, no address
        };
        self.rtnl.del_host_addr(i, vip).map_err(|e| e.to_string())
    }

    fn close(&mut self) {
        let Some(created) = self.created.take() else {
            return;
        };
        if let Some(tun) = self.tun.take() {
            // not persistent: the device goes with its last descriptor
            drop(tun);
            log::info!("announce: removed TUN device {}", self.name);
            return;
        }
        // only the link vsd made, and only while it still has that index
        match self.rtnl.link_index(&self.name) {
            Ok(Some(i)) if i == created => match self.rtnl.delete_link(i) {
                Ok(()) => log::info!("announce: deleted dummy link {}", self.name),
                Err(e) => log::error!("announce: deleting dummy link {}: {e}", self.name),
            },
            Ok(_) => {}
            Err(e) => log::error!("announce: looking up {}: {e}", self.name),
        }
    }

    fn iface(&self) -> &str {
        &self.name
    }
}
