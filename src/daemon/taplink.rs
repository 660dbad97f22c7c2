//! The true link state of a net_tap port whose interface left vsd's
//! network namespace.
//!
//! **Why.** net_tap answers `rte_eth_link_get` with `SIOCGIFFLAGS` on the
//! tap's name through a socket in vsd's namespace. Tests, demos and
//! appliances move the tap into another namespace (a bridge, a client);
//! the ioctl then finds no such interface and the port reads "link down"
//! while it forwards.
//!
//! **How.** The tap's file descriptors are vsd's own (net_tap opened
//! /dev/net/tun once per queue). Among /proc/self/fd, `TUNGETIFF` names
//! the interface behind each tun descriptor, `TUNGETDEVNETNS` (Linux 5.2)
//! hands out its current namespace, and a short-lived thread that enters
//! that namespace reads the interface's flags there: up means `IFF_UP` and
//! `IFF_RUNNING`, as net_tap itself judges them.
//!
//! **Failure modes.** Any step failing (old kernel, descriptor gone) gives
//! `None` and the caller keeps the PMD's answer; the thread never touches
//! the process's namespace (namespaces are per thread) and ends at once.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IOR('T', 210, unsigned int)`.
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// `_IO('T', 227)`.
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// The interface name behind a tun/tap descriptor, if it is one.
fn tun_name(fd: RawFd) -> Option<String> {
    // SAFETY: all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes an ifreq into the one we own; on a
    // descriptor that is not a tun device it fails with an error.
    let r = unsafe { libc::ioctl(fd, TUNGETIFF as _, &mut ifr) };
    if r < 0 {
        return None;
    }
    // SAFETY: the kernel wrote a NUL-terminated name within IFNAMSIZ.
    let name = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// (IFF_UP and IFF_RUNNING) of `name` in the namespace `ns`, read from a
/// thread that enters it.
fn flags_in(ns: OwnedFd, name: &str) -> Option<bool> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name("vsd-taplink".into())
        .spawn(move || -> Option<bool> {
            // SAFETY: setns moves only this thread, which ends right after.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return None;
            }
            // SAFETY: plain socket(2); the descriptor is owned below.
            let s =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if s < 0 {
                return None;
            }
            // SAFETY: s is a fresh descriptor nobody else owns.
            let s = unsafe { OwnedFd::from_raw_fd(s) };
            // SAFETY: all-zero ifreq is valid.
            let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
            let bytes = name.as_bytes();
            if bytes.len() >= ifr.ifr_name.len() {
                return None;
            }
            for (d, b) in ifr.ifr_name.iter_mut().zip(bytes) {
                *d = *b as libc::c_char;
            }
            // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of
            // the ifreq we own.
            if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) } < 0 {
                return None;
            }
            // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
            let flags = i32::from(unsafe { ifr.ifr_ifru.ifru_flags });
            Some(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
        })
        .ok()?
        .join()
        .ok()?
}

/// Whether vsd's tap interface `name` is up wherever it lives now; `None`
/// when that cannot be told.
pub fn tap_link_up(name: &str) -> Option<bool> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    for e in dir.flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_tun = std::fs::read_link(e.path())
            .map(|t| t.as_os_str() == "/dev/net/tun")
            .unwrap_or(false);
        if !is_tun || tun_name(fd).as_deref() != Some(name) {
            continue;
        }
        // SAFETY: TUNGETDEVNETNS returns a new descriptor (or an error).
        let ns = unsafe { libc::ioctl(fd, TUNGETDEVNETNS as _) };
        if ns < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor we own from here.
        let ns = unsafe { OwnedFd::from_raw_fd(ns) };
        return flags_in(ns, name);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interfaces_are_not_guessed() {
        assert_eq!(tap_link_up("vsd-no-such-tap"), None);
        // a descriptor that is not a tun device has no tun name
        assert_eq!(tun_name(0), None);
    }
}
