//! A minimal HTTP/1.x listener for Prometheus scrapes (`GET /metrics`),
//! polled from the control thread like the control socket: non-blocking,
//! bounded request size, bounded clients, idle clients dropped. Loopback
//! only (the config refuses other addresses).
//!
//! Never starved: a scrape is answered in the poll that reads its request
//! and the connection closed once the answer is written. When every slot
//! is taken, a newcomer is never turned away; the client that has waited
//! longest without sending anything makes room (then the oldest with an
//! unfinished request, then the oldest still being written to), and gets
//! a 503 rather than a silent close. A request must be complete
//! [`REQUEST_TIMEOUT`] after connecting, an answer taken within [`IDLE`].

use super::wait::{Interest, WaitSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MAX_REQUEST: usize = 8192;
/// Clients held at once (more evict the longest-waiting, see above).
pub const MAX_CLIENTS: usize = 32;
/// A request not complete this long after connecting ends its client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A client connected this long is dropped, whatever it is doing.
const IDLE: Duration = Duration::from_secs(5);

struct Client {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    since: Instant,
    /// The client closed its side.
    eof: bool,
}

impl Client {
    /// Eviction order when full (lowest first): sent nothing yet, then an
    /// unfinished request, then an answer still being written; oldest
    /// first within each.
    fn eviction_rank(&self) -> (u8, Instant) {
        let stage = if !self.out.is_empty() {
            2
        } else if !self.inbuf.is_empty() {
            1
        } else {
            0
        };
        (stage, self.since)
    }
}

/// The metrics listener.
pub struct MetricsServer {
    listener: TcpListener,
    clients: Vec<Client>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("clients", &self.clients.len())
            .finish()
    }
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("metrics listener {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("metrics listener {addr}: {e}"))?;
        Ok(MetricsServer {
            listener,
            clients: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Add what the listener waits for to `set`: connections, requests,
    /// room to write answers.
    pub fn interest(&self, set: &mut WaitSet) {
        set.add(Interest::listener(self.listener.as_raw_fd()));
        for c in &self.clients {
            set.add(Interest {
                fd: c.stream.as_raw_fd(),
                read: c.out.is_empty() && !c.eof,
                write: c.sent < c.out.len(),
            });
        }
    }

    /// Serve whatever is ready; `render` produces the exposition text.
    pub fn poll(&mut self, render: &mut dyn FnMut() -> String) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                let evict = self
                    .clients
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| c.eviction_rank())
                    .map(|(i, _)| i);
                if let Some(i) = evict {
                    let mut gone = self.clients.swap_remove(i);
                    let _ = gone.stream.write(&response(
                        "503 Service Unavailable",
                        "too many connections; this one waited longest\n",
                    ));
                }
            }
            self.clients.push(Client {
                stream,
                inbuf: Vec::new(),
                out: Vec::new(),
                sent: 0,
                since: Instant::now(),
                eof: false,
            });
        }
        let now = Instant::now();
        for c in &mut self.clients {
            if c.out.is_empty() {
                let mut buf = [0u8; 2048];
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.eof = true;
                            break;
                        }
                        Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                    if c.inbuf.len() > MAX_REQUEST {
                        break;
                    }
                }
                let complete = c.inbuf.windows(4).any(|w| w == b"\r\n\r\n")
                    || c.inbuf.windows(2).any(|w| w == b"\n\n");
                if c.inbuf.len() > MAX_REQUEST {
                    c.out = response("431 Request Header Fields Too Large", "request too large\n");
                } else if complete {
                    let line = c.inbuf.split(|b| *b == b'\n').next().unwrap_or(&[]);
                    let line = String::from_utf8_lossy(line);
                    let mut parts = line.split_whitespace();
                    c.out = match (parts.next(), parts.next()) {
                        (Some("GET"), Some("/metrics")) => response("200 OK", &render()),
                        (Some("GET"), _) => response("404 Not Found", "try /metrics\n"),
                        _ => response("405 Method Not Allowed", "GET only\n"),
                    };
                }
            }
            while c.sent < c.out.len() {
                match c.stream.write(&c.out[c.sent..]) {
                    Ok(0) => break,
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        self.clients.retain_mut(|c| {
            let done = !c.out.is_empty() && c.sent >= c.out.len();
            // gone before asking anything complete: nothing to answer
            let gone = c.eof && c.out.is_empty();
            let age = now.duration_since(c.since);
            let too_slow = c.out.is_empty() && age >= REQUEST_TIMEOUT;
            if too_slow && !gone {
                let _ = c.stream.write(&response(
                    "408 Request Timeout",
                    "no complete request in time\n",
                ));
            }
            !done && !gone && !too_slow && age < IDLE
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(server: &mut MetricsServer, req: &[u8]) -> String {
        let addr = server.local_addr().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            server.poll(&mut || "vsd_up 1\n".to_string());
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8(got).unwrap()
    }

    /// Issue 12 item 9: 16 connections that never asked anything used to
    /// hold every slot, and each further scrape was accepted and closed
    /// unanswered. Now the longest-waiting idle client makes room (and is
    /// told so), and an idle client is cut off after REQUEST_TIMEOUT.
    #[test]
    fn idle_connections_cannot_starve_scrapes() {
        let mut server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut idle: Vec<TcpStream> = (0..MAX_CLIENTS + 8)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        server.poll(&mut || "vsd_up 1\n".to_string());
        assert!(server.clients.len() <= MAX_CLIENTS);
        for _ in 0..3 {
            let ok = get(&mut server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok:?}");
        }
        // the first ones made room and were told why
        let mut told = String::new();
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let _ = idle[0].read_to_string(&mut told);
        assert!(told.starts_with("HTTP/1.0 503"), "{told:?}");
        // the rest time out without a request
        let deadline = Instant::now() + REQUEST_TIMEOUT * 3;
        while !server.clients.is_empty() && Instant::now() < deadline {
            server.poll(&mut || "vsd_up 1\n".to_string());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.clients.is_empty(), "idle clients never dropped");
        let mut told = String::new();
        let last = idle.last_mut().unwrap();
        last.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = last.read_to_string(&mut told);
        assert!(told.starts_with("HTTP/1.0 408"), "{told:?}");
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let mut server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ok = get(&mut server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(ok.ends_with("\r\n\r\nvsd_up 1\n"), "{ok}");
        assert!(get(&mut server, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(get(&mut server, b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        let big = vec![b'a'; MAX_REQUEST + 10];
        assert!(get(&mut server, &big).starts_with("HTTP/1.0 431"));
    }
}
