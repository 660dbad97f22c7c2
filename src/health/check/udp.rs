//! UDP_CHECK: send `payload` (random bytes when none) on a connected UDP
//! socket. Without `require_reply` the check passes unless an ICMP error
//! comes back within `connect_timeout` (a connected socket reports the
//! ICMP port unreachable as ECONNREFUSED); with it, a reply must come in
//! time, between `min_reply_length` and `max_reply_length` bytes long,
//! and match the nibble pattern over the shorter of the two lengths.

use socket2::{Protocol, Type};

use super::{bound_socket, io_reason, target_addr, timeout_reason, Outcome};
use crate::health::spec::{CheckTarget, HexNibble, UdpCheck};

/// A connected, non-blocking UDP socket to the target.
pub fn connected_udp(target: &CheckTarget) -> Result<tokio::net::UdpSocket, String> {
    let dst = target_addr(target);
    let socket = bound_socket(&target.spec, dst.ip(), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| io_reason(&e))?;
    socket.connect(&dst.into()).map_err(|e| io_reason(&e))?;
    tokio::net::UdpSocket::from_std(socket.into()).map_err(|e| io_reason(&e))
}

/// A UDP error in ICMP's words.
pub fn udp_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "icmp port unreachable".into(),
        _ => io_reason(e),
    }
}

pub async fn check(target: &CheckTarget, udp: &UdpCheck) -> Outcome {
    let socket = connected_udp(target)?;
    let payload = match &udp.payload {
        Some(p) => p.clone(),
        None => (0..16).map(|_| super::random_u64() as u8).collect(),
    };
    socket.send(&payload).await.map_err(|e| udp_reason(&e))?;
    let limit = target.timing.connect_timeout;
    let mut buf = vec![0u8; 65536];
    let received = tokio::time::timeout(limit, socket.recv(&mut buf)).await;
    match (received, &udp.require_reply) {
        (Err(_), None) => Ok(None),
        (Err(_), Some(_)) => Err(format!("no reply, {}", timeout_reason(limit))),
        (Ok(Err(e)), _) => Err(udp_reason(&e)),
        (Ok(Ok(_)), None) => Ok(None),
        (Ok(Ok(n)), Some(pattern)) => reply_ok(&buf[..n], udp, pattern).map(|()| None),
    }
}

fn reply_ok(reply: &[u8], udp: &UdpCheck, pattern: &[HexNibble]) -> Result<(), String> {
    let len = reply.len() as u32;
    if len < udp.min_reply_length {
        return Err(format!("reply of {len} bytes, below min_reply_length"));
    }
    if len > udp.max_reply_length {
        return Err(format!("reply of {len} bytes, above max_reply_length"));
    }
    let nibbles = reply.iter().flat_map(|b| [b >> 4, b & 0xf]);
    for (want, got) in pattern.iter().zip(nibbles) {
        if let Some(w) = want {
            if *w != got {
                return Err("reply does not match require_reply".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_lengths_and_nibbles() {
        let udp = UdpCheck {
            payload: None,
            require_reply: None,
            min_reply_length: 2,
            max_reply_length: 4,
        };
        let pat = vec![Some(0xa), None, Some(0x0)];
        assert!(reply_ok(&[0xab, 0x01], &udp, &pat).is_ok());
        assert!(reply_ok(&[0xaf, 0x0f, 0], &udp, &pat).is_ok());
        assert!(reply_ok(&[0xbb, 0x01], &udp, &pat).is_err());
        assert!(reply_ok(&[0xab], &udp, &pat).is_err());
        assert!(reply_ok(&[0xab, 0, 0, 0, 0], &udp, &pat).is_err());
        // a pattern longer than the reply compares only the reply
        assert!(reply_ok(
            &[0xa0, 0x0f],
            &udp,
            &[Some(0xa), None, Some(0), Some(0xf), Some(1)]
        )
        .is_ok());
    }
}
