//! The checkers: one attempt of each keepalived checker type.
//!
//! **What.** `attempt` runs one check of a [`CheckTarget`] and says whether
//! it passed, or why not in a few words. Each type lives in its own file;
//! this one holds what they share: sockets bound the way `bindto`,
//! `bind_port`, `bind_if` and `fwmark` ask, and the short failure reasons.
//!
//! **Why async.** Every attempt is a future on the engine's one thread, so
//! a slow or dead server costs a socket and a timer, not a thread.
//!
//! **Failure modes.** Everything that can go wrong in an attempt (a bad
//! option, a socket error, a timeout, a malformed reply) is a failed
//! attempt with its reason; nothing here panics on what a server sends.

pub mod dns;
pub mod http;
pub mod misc;
pub mod ping;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::spec::{CheckKind, CheckTarget, CheckerSpec};

/// What an attempt found: `Ok(dynamic weight)` or `Err(reason)`.
pub type Outcome = Result<Option<u32>, String>;

/// Which URLs of an HTTP_GET/SSL_GET checker this attempt fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlScope {
    /// Every URL in turn (a checker that is up, or `fast_recovery`).
    All,
    /// Only this one (a checker recovering without `fast_recovery`).
    One(usize),
}

/// Shared, read-only things checkers need (built once per engine).
pub struct Context {
    pub tls: Arc<rustls::ClientConfig>,
}

impl Context {
    pub fn new() -> Context {
        Context {
            tls: http::insecure_tls_config(),
        }
    }
}

impl Default for Context {
    fn default() -> Context {
        Context::new()
    }
}

/// Run one attempt of `target`.
pub async fn attempt(target: &CheckTarget, scope: UrlScope, ctx: &Context) -> Outcome {
    match &target.spec.kind {
        CheckKind::Tcp => tcp::check(target).await,
        CheckKind::Http(h) => http::check(target, h, scope, None).await,
        CheckKind::Ssl(h) => http::check(target, h, scope, Some(&ctx.tls)).await,
        CheckKind::Misc(m) => misc::check(target, m).await,
        CheckKind::Dns(d) => dns::check(target, d).await,
        CheckKind::Udp(u) => udp::check(target, u).await,
        CheckKind::Ping => ping::check(target).await,
    }
}

/// "3s", "150ms", "1.5s": durations as an operator wrote them.
pub fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// "timeout after 3s".
pub fn timeout_reason(d: Duration) -> String {
    format!("timeout after {}", human(d))
}

/// A socket error in the words an operator expects.
pub fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EHOSTUNREACH) => "no route to host".into(),
        Some(libc::ENETUNREACH) => "network unreachable".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::ETIMEDOUT) => "connection timed out".into(),
        Some(libc::EADDRINUSE) => "source address in use".into(),
        Some(libc::EADDRNOTAVAIL) => "source address not available".into(),
        Some(libc::ENODEV) => "no such bind_if device".into(),
        Some(libc::EPIPE) => "connection closed".into(),
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => "connection closed early".into(),
            _ => {
                let text = e.to_string();
                // "Connection refused (os error 111)" -> "connection refused"
                let text = text.split(" (os error").next().unwrap_or("");
                text.to_lowercase()
            }
        },
    }
}

/// The address an attempt goes to.
pub fn target_addr(target: &CheckTarget) -> SocketAddr {
    SocketAddr::new(target.addr, target.port)
}

/// A non-blocking socket of `ty`/`proto` for `dst`'s family, with the
/// checker's source options applied (`bindto`, `bind_port`, `bind_if`,
/// `fwmark`).
pub fn bound_socket(
    spec: &CheckerSpec,
    dst: IpAddr,
    ty: Type,
    proto: Option<Protocol>,
) -> io::Result<Socket> {
    let domain = match dst {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    // Non-blocking from socket(2) on: one system call less per attempt.
    let socket = Socket::new(domain, ty.nonblocking().cloexec(), proto)?;
    if let Some(dev) = &spec.bind_if {
        socket.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = spec.fwmark {
        socket.set_mark(mark)?;
    }
    if spec.bindto.is_some() || spec.bind_port.is_some() {
        let src = match (spec.bindto, dst) {
            (Some(a), _) if a.is_ipv4() != dst.is_ipv4() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "bindto and target address families differ",
                ))
            }
            (Some(a), _) => a,
            (None, IpAddr::V4(_)) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            (None, IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        if spec.bind_port.is_some() {
            // A fixed source port is reused by every attempt; the previous
            // one may still sit in TIME_WAIT.
            socket.set_reuse_address(true)?;
        }
        socket.bind(&SockAddr::from(SocketAddr::new(
            src,
            spec.bind_port.unwrap_or(0),
        )))?;
    }
    Ok(socket)
}

/// A TCP connection to the target within `connect_timeout`.
pub async fn connect_tcp(target: &CheckTarget) -> Result<tokio::net::TcpStream, String> {
    let dst = target_addr(target);
    let socket = bound_socket(&target.spec, dst.ip(), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| io_reason(&e))?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(target.timing.connect_timeout, socket.connect(dst)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(io_reason(&e)),
        Err(_) => Err(timeout_reason(target.timing.connect_timeout)),
    }
}

/// A small PRNG for payloads, DNS ids and warmup jitter (not security).
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    fn seed() -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: getrandom writes at most b.len() bytes into b.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let s = u64::from_ne_bytes(b);
        if n == 8 && s != 0 {
            s
        } else {
            0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64
        }
    }
    STATE.with(|st| {
        // xorshift64*
        let mut x = st.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        st.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        assert_eq!(human(Duration::from_secs(3)), "3s");
        assert_eq!(human(Duration::from_millis(150)), "150ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn socket_errors_read_like_keepalived_logs() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "connection refused");
        let e = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(io_reason(&e), "no route to host");
    }
}
