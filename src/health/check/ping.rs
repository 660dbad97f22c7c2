//! PING_CHECK: one ICMP (ICMPv6) echo request; it passes when the echo
//! reply with our id and sequence number arrives within
//! `connect_timeout`.
//!
//! An unprivileged ICMP datagram socket (`net.ipv4.ping_group_range`) is
//! used when the kernel allows it: the kernel then fills in the id and
//! checksum and hands us only our own replies. Otherwise (vsd runs as
//! root) a raw socket, which sees every ICMP message: replies are matched
//! on type, id and sequence, and IPv4's header is skipped.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};

use socket2::{Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::{bound_socket, io_reason, timeout_reason, Outcome};
use crate::health::spec::CheckTarget;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub async fn check(target: &CheckTarget) -> Outcome {
    let dst = target.addr;
    let proto = if dst.is_ipv4() {
        Protocol::ICMPV4
    } else {
        Protocol::ICMPV6
    };
    let (socket, raw) = match bound_socket(&target.spec, dst, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => (
            bound_socket(&target.spec, dst, Type::RAW, Some(proto)).map_err(|e| io_reason(&e))?,
            true,
        ),
        Err(e) => return Err(io_reason(&e)),
    };
    socket
        .connect(&SocketAddr::new(dst, 0).into())
        .map_err(|e| io_reason(&e))?;
    let id = super::random_u64() as u16;
    let seq = super::random_u64() as u16;
    let request = echo_request(dst, id, seq, raw);
    // SAFETY: the AsyncFd owns the socket; nothing else closes or
    // replaces its descriptor.
    let socket =
        unsafe { AsyncFd::register(socket) }.map_err(|e| io_reason(&std::io::Error::from(e)))?;
    let limit = target.timing.connect_timeout;
    let exchange = async {
        send(&socket, &request).await?;
        let mut buf = vec![0u8; 2048];
        loop {
            let n = recv(&socket, &mut buf).await?;
            if is_our_reply(&buf[..n], dst, id, seq, raw) {
                return Ok(None);
            }
        }
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r,
        Err(_) => Err(timeout_reason(limit)),
    }
}

async fn send(socket: &AsyncFd<Socket>, packet: &[u8]) -> Result<(), String> {
    loop {
        let mut guard = socket.writable().await.map_err(|e| io_reason(&e))?;
        match guard.try_io(|s| s.get_ref().write(packet)) {
            Ok(r) => return r.map(|_| ()).map_err(|e| io_reason(&e)),
            Err(_would_block) => continue,
        }
    }
}

async fn recv(socket: &AsyncFd<Socket>, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        let mut guard = socket.readable().await.map_err(|e| io_reason(&e))?;
        match guard.try_io(|s| s.get_ref().read(buf)) {
            Ok(r) => return r.map_err(|e| io_reason(&e)),
            Err(_would_block) => continue,
        }
    }
}

/// An echo request; raw IPv4 needs our own checksum (the kernel computes
/// it for ICMPv6 and for datagram ICMP sockets).
fn echo_request(dst: IpAddr, id: u16, seq: u16, raw: bool) -> Vec<u8> {
    let ty = if dst.is_ipv4() {
        ECHO_REQUEST_V4
    } else {
        ECHO_REQUEST_V6
    };
    let mut p = vec![ty, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"vsd PING_CHECK\0\0");
    if raw && dst.is_ipv4() {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet` (as the socket delivered it) is our echo reply.
fn is_our_reply(packet: &[u8], dst: IpAddr, id: u16, seq: u16, raw: bool) -> bool {
    let icmp = if raw && dst.is_ipv4() {
        let Some(first) = packet.first() else {
            return false;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        match packet.get(ihl..) {
            Some(p) => p,
            None => return false,
        }
    } else {
        packet
    };
    if icmp.len() < 8 {
        return false;
    }
    let reply = if dst.is_ipv4() {
        ECHO_REPLY_V4
    } else {
        ECHO_REPLY_V6
    };
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    // A datagram socket's id is the kernel's; it only delivers ours.
    icmp[0] == reply && got_seq == seq && (!raw || got_id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_checksum_and_replies_match() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        let p = echo_request(v4, 0x1111, 0x2222, true);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        let mut reply = vec![0x45u8; 20];
        reply.extend_from_slice(&[0, 0, 0, 0, 0x11, 0x11, 0x22, 0x22]);
        assert!(is_our_reply(&reply, v4, 0x1111, 0x2222, true));
        assert!(!is_our_reply(&reply, v4, 0x1112, 0x2222, true));
        assert!(!is_our_reply(&reply[..24], v4, 0x1111, 0x2222, true));
    }
}
