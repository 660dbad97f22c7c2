//! The engine against real local servers (127.0.0.1 / ::1, ephemeral
//! ports). Timings are small, but assertions are on order and counts;
//! "eventually" waits are generous.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::*;
use crate::health::spec::{
    CheckerSpec, DnsCheck, DnsType, EffectiveTiming, HttpCheck, HttpProtocol, MiscCheck, UdpCheck,
    UrlCheck,
};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long "eventually" may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn timing(delay_loop: Duration, retry: u32, delay_before_retry: Duration) -> EffectiveTiming {
    EffectiveTiming {
        connect_timeout: Duration::from_secs(2),
        retry,
        delay_before_retry,
        delay_loop,
        warmup: Duration::ZERO,
        starts_down: false,
    }
}

fn target(name: &str, kind: CheckKind, addr: IpAddr, port: u16, t: EffectiveTiming) -> CheckTarget {
    CheckTarget {
        key: CheckKey {
            service: format!("TCP test:{name}"),
            server: addr,
            server_port: port,
            index: 0,
        },
        addr,
        port,
        spec: CheckerSpec::new(kind),
        timing: t,
        virtualhost: None,
    }
}

fn alpha(mut t: CheckTarget) -> CheckTarget {
    t.timing.starts_down = true;
    t
}

/// Wait (in poll(2) on the wake fd, as the daemon will) until `n` events
/// arrived or PATIENCE ran out.
fn wait_events(engine: &mut Engine, n: usize) -> Vec<CheckEvent> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: engine.wake_fd().unwrap(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 200) };
        engine.drain_events(&mut out);
    }
    out
}

fn status_of(engine: &Engine, name: &str) -> CheckStatus {
    engine
        .status()
        .into_iter()
        .find(|s| s.key.service == format!("TCP test:{name}"))
        .unwrap()
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(ms(20));
    }
}

fn free_port_tcp() -> u16 {
    TcpListener::bind((LOCAL, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small HTTP server: answers every request with `status` and `body`
/// (chunked when the request is HTTP/1.1) and records the requests.
struct HttpServer {
    port: u16,
    status: Arc<AtomicU16>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn http_server(addr: IpAddr, body: &'static [u8]) -> HttpServer {
    let listener = TcpListener::bind((addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = Arc::new(AtomicU16::new(200));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (st, rq) = (status.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).into_owned();
            let code = {
                // Record and read the status together: a test that flips
                // the status knows which requests saw which.
                let mut all = rq.lock().unwrap();
                all.push(req.clone());
                st.load(Ordering::SeqCst)
            };
            let reply = http_reply(
                code,
                body,
                req.starts_with("GET") && req.contains("HTTP/1.1"),
            );
            let _ = conn.write_all(&reply);
        }
    });
    HttpServer {
        port,
        status,
        requests,
    }
}

fn http_reply(code: u16, body: &[u8], chunked: bool) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {code} X\r\nServer: test\r\n").into_bytes();
    if chunked {
        r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for part in body.chunks(3) {
            r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            r.extend_from_slice(part);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
    } else {
        r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        r.extend_from_slice(body);
    }
    r
}

fn http_kind(urls: Vec<UrlCheck>, protocol: HttpProtocol) -> HttpCheck {
    HttpCheck {
        urls,
        protocol,
        virtualhost: None,
        enable_sni: false,
        fast_recovery: false,
    }
}

fn url(path: &str, digest: Option<[u8; 16]>) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        status: vec![],
        digest,
        virtualhost: None,
    }
}

#[test]
fn http_goes_down_after_all_retries_fail_and_up_on_one_success() {
    let server = http_server(LOCAL, b"ok");
    let mut engine = Engine::start().unwrap();
    // delay_loop is long against delay_before_retry, so the attempts of
    // one failure episode are all done long before the next delay_loop.
    let t = target(
        "retry",
        CheckKind::Http(http_kind(vec![url("/", None)], HttpProtocol::V10)),
        LOCAL,
        server.port,
        timing(Duration::from_secs(2), 2, ms(50)),
    );
    engine.set_targets(vec![t]);
    wait_until(|| status_of(&engine, "retry").checks >= 1);
    let s = status_of(&engine, "retry");
    assert!(s.up && s.failures == 0 && s.transitions == 0);
    let before = {
        let all = server.requests.lock().unwrap();
        server.status.store(503, Ordering::SeqCst);
        all.len()
    };
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(!events[0].up);
    assert_eq!(events[0].result.reason, "status 503");
    // the failed attempt and `retry` (2) retries, then down
    let s = status_of(&engine, "retry");
    assert_eq!(server.requests.lock().unwrap().len() - before, 3);
    assert_eq!((s.up, s.failures, s.transitions), (false, 3, 1));
    assert_eq!(s.last.as_ref().unwrap().reason, "status 503");

    server.status.store(200, Ordering::SeqCst);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert!(events[0].up && events[0].result.ok);
    let s = status_of(&engine, "retry");
    assert_eq!((s.up, s.transitions), (true, 2));
}

#[test]
fn alpha_starts_down_and_warmup_zero_checks_at_once() {
    let closed = free_port_tcp();
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let open = listener.local_addr().unwrap().port();
    let mut engine = Engine::start().unwrap();
    // delay_loop of a minute: only the immediate first check can report.
    let slow = timing(Duration::from_secs(60), 1, ms(50));
    engine.set_targets(vec![
        alpha(target("alpha-up", CheckKind::Tcp, LOCAL, open, slow)),
        alpha(target("alpha-dead", CheckKind::Tcp, LOCAL, closed, slow)),
    ]);
    assert!(!status_of(&engine, "alpha-up").up);
    assert!(!status_of(&engine, "alpha-dead").up);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key.service, "TCP test:alpha-up");
    assert!(events[0].up);
    wait_until(|| status_of(&engine, "alpha-dead").checks == 1);
    let s = status_of(&engine, "alpha-dead");
    // down stays down without an event, and no retries while down
    assert_eq!((s.up, s.transitions, s.failures), (false, 0, 1));
    assert_eq!(s.last.unwrap().reason, "connection refused");
    std::thread::sleep(ms(300));
    let mut more = Vec::new();
    engine.drain_events(&mut more);
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(status_of(&engine, "alpha-dead").checks, 1);
}

#[test]
fn http_digest_virtualhost_and_chunked_bodies() {
    let server = http_server(LOCAL, b"hello, health");
    let good: [u8; 16] = Md5::digest(b"hello, health").into();
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let mut ok = alpha(target(
        "digest-ok",
        CheckKind::Http(http_kind(vec![url("/a", Some(good))], HttpProtocol::V10)),
        LOCAL,
        server.port,
        t,
    ));
    ok.virtualhost = Some("checker.example".into());
    let mut vhost_url = url("/c", Some(good));
    vhost_url.virtualhost = Some("url.example".into());
    let mut chunked = alpha(target(
        "digest-chunked",
        CheckKind::Http(http_kind(vec![vhost_url], HttpProtocol::V11)),
        LOCAL,
        server.port,
        t,
    ));
    chunked.virtualhost = Some("checker.example".into());
    let bad = target(
        "digest-bad",
        CheckKind::Http(http_kind(vec![url("/b", Some([0; 16]))], HttpProtocol::V10)),
        LOCAL,
        server.port,
        t,
    );
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![ok, chunked, bad]);
    let mut events = wait_events(&mut engine, 3);
    events.sort_by(|a, b| a.key.service.cmp(&b.key.service));
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.key.service.as_str(), e.up, e.result.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("TCP test:digest-bad", false, "digest mismatch"),
            ("TCP test:digest-chunked", true, ""),
            ("TCP test:digest-ok", true, ""),
        ]
    );
    let reqs = server.requests.lock().unwrap().clone();
    let a = reqs.iter().find(|r| r.starts_with("GET /a ")).unwrap();
    assert!(a.contains("\r\nHost: checker.example:"), "{a}");
    assert!(a.starts_with("GET /a HTTP/1.0\r\n"));
    // the URL's virtualhost wins over the checker's
    let c = reqs.iter().find(|r| r.starts_with("GET /c ")).unwrap();
    assert!(c.contains("\r\nHost: url.example:"), "{c}");
    assert!(c.contains("Connection: close\r\n"));
    let b = reqs.iter().find(|r| r.starts_with("GET /b ")).unwrap();
    assert!(
        b.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", server.port)),
        "{b}"
    );
}

#[test]
fn http_recovers_one_url_per_delay_loop_unless_fast_recovery() {
    let server = http_server(LOCAL, b"x");
    let urls = vec![url("/1", None), url("/2", None), url("/3", None)];
    let mut engine = Engine::start().unwrap();
    let mut slow = http_kind(urls.clone(), HttpProtocol::V10);
    let mut fast = slow.clone();
    fast.fast_recovery = true;
    slow.fast_recovery = false;
    let t = timing(ms(500), 0, ms(50));
    engine.set_targets(vec![
        alpha(target(
            "recover-slow",
            CheckKind::Http(slow),
            LOCAL,
            server.port,
            t,
        )),
        alpha(target(
            "recover-fast",
            CheckKind::Http(fast),
            LOCAL,
            server.port,
            t,
        )),
    ]);
    let events = wait_events(&mut engine, 2);
    assert_eq!(events.len(), 2);
    // fast_recovery comes up on its first attempt, the other on its third
    assert_eq!(events[0].key.service, "TCP test:recover-fast");
    assert_eq!(events[1].key.service, "TCP test:recover-slow");
    assert_eq!(status_of(&engine, "recover-fast").transitions, 1);
    let s = status_of(&engine, "recover-slow");
    assert!(s.checks >= 3, "{s:?}");
}

fn self_signed() -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["server.example".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    Arc::new(config)
}

#[test]
fn ssl_get_accepts_a_self_signed_server_and_sends_sni_only_when_asked() {
    let config = self_signed();
    let snis: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = snis.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            let Ok(tls) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut s = rustls::StreamOwned::new(tls, tcp);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(s.conn.server_name().map(str::to_string));
            let _ = s.write_all(&http_reply(200, b"secure", false));
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
    let digest: [u8; 16] = Md5::digest(b"secure").into();
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let mut sni = http_kind(vec![url("/", Some(digest))], HttpProtocol::V10);
    sni.enable_sni = true;
    let mut with_sni = alpha(target("ssl-sni", CheckKind::Ssl(sni), LOCAL, port, t));
    with_sni.virtualhost = Some("www.example".into());
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![with_sni]);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert!(events[0].up, "{events:?}");
    assert_eq!(
        snis.lock().unwrap().as_slice(),
        &[Some("www.example".to_string())]
    );

    let plain = http_kind(vec![url("/", Some(digest))], HttpProtocol::V10);
    let mut no_sni = alpha(target("ssl-plain", CheckKind::Ssl(plain), LOCAL, port, t));
    no_sni.virtualhost = Some("www.example".into());
    engine.set_targets(vec![no_sni]);
    let events = wait_events(&mut engine, 1);
    assert!(events.len() == 1 && events[0].up, "{events:?}");
    assert_eq!(snis.lock().unwrap().len(), 2);
    assert_eq!(snis.lock().unwrap()[1], None);

    // SSL_GET against a plain-text server fails in the handshake
    let text = TcpListener::bind((LOCAL, 0)).unwrap();
    let text_port = text.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in text.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let plain = http_kind(vec![url("/", None)], HttpProtocol::V10);
    engine.set_targets(vec![target(
        "ssl-vs-http",
        CheckKind::Ssl(plain),
        LOCAL,
        text_port,
        t,
    )]);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert!(!events[0].up);
    assert!(
        events[0].result.reason.starts_with("tls handshake: "),
        "{events:?}"
    );
}

fn misc(path: &str, dynamic: bool, timeout: Option<Duration>) -> CheckKind {
    CheckKind::Misc(MiscCheck {
        path: path.into(),
        timeout,
        dynamic,
        user: None,
        group: None,
    })
}

#[test]
fn misc_exit_codes_and_dynamic_weights() {
    let dir = std::env::temp_dir().join(format!("vsd-misc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let code = dir.join("code");
    std::fs::write(&code, "7").unwrap();
    let script = format!("/bin/sh -c 'exit $(cat {})'", code.display());
    let t = timing(ms(100), 0, ms(50));
    let mut engine = Engine::start().unwrap();
    let mut nobody = misc("/bin/true", false, None);
    if let CheckKind::Misc(m) = &mut nobody {
        m.user = Some("no-such-user-vsd".into());
    }
    let mut as_nobody = misc(
        "/bin/sh -c 'test $(id -u):$(id -g) = 65534:65534'",
        false,
        None,
    );
    if let CheckKind::Misc(m) = &mut as_nobody {
        m.user = Some("nobody".into());
        m.group = Some("nogroup".into());
    }
    engine.set_targets(vec![
        alpha(target("misc-as-nobody", as_nobody, LOCAL, 4, t)),
        target("misc-dyn", misc(&script, true, None), LOCAL, 1, t),
        target(
            "misc-fail",
            misc("/bin/sh -c 'exit 1'", false, None),
            LOCAL,
            2,
            t,
        ),
        target("misc-user", nobody, LOCAL, 3, t),
    ]);
    let mut events = wait_events(&mut engine, 4);
    events.sort_by(|a, b| a.key.service.cmp(&b.key.service));
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.key.service.as_str(),
                e.up,
                e.result.reason.as_str(),
                e.result.dynamic_weight,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("TCP test:misc-as-nobody", true, "", None),
            ("TCP test:misc-dyn", true, "", Some(5)),
            ("TCP test:misc-fail", false, "exit status 1", None),
            (
                "TCP test:misc-user",
                false,
                "unknown user no-such-user-vsd",
                None
            ),
        ]
    );
    // a new weight is an event without a transition; exit 0 is the
    // configured weight again, exit 1 is down
    for (written, up, weight) in [
        ("12", true, Some(10)),
        ("0", true, None),
        ("1", false, None),
    ] {
        std::fs::write(&code, written).unwrap();
        let events = wait_events(&mut engine, 1);
        assert_eq!(events.len(), 1, "{written}: {events:?}");
        assert_eq!(
            (events[0].up, events[0].result.dynamic_weight),
            (up, weight)
        );
    }
    assert_eq!(status_of(&engine, "misc-dyn").transitions, 1);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Our children (pid, state) whose command line contains `marker`; a
/// zombie has no command line, so also those whose comm is `comm` in
/// state Z.
fn children(marker: &str, comm: &str) -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let state = fields[0].chars().next().unwrap_or('?');
        let ppid: i32 = fields[1].parse().unwrap_or(0);
        if ppid != me {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) || (state == 'Z' && name == comm) {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn misc_timeout_kills_the_process_group_and_reaps() {
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let mut engine = Engine::start().unwrap();
    // the shell's own child (sleep) is in the same process group
    engine.set_targets(vec![target(
        "misc-timeout",
        misc("/bin/sh -c '/bin/sleep 31.25; :'", false, Some(ms(300))),
        LOCAL,
        1,
        t,
    )]);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].result.reason, "killed after misc_timeout 300ms");
    let mut stray = Vec::new();
    wait_until(|| {
        stray = children("31.25", "sh");
        stray.is_empty()
    });
    // the grandchild (sleep) was in the group: it is gone too
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains("31.25"));
    assert!(!alive, "sleep 31.25 survived");

    // dropping the engine mid-attempt kills and reaps the child too
    engine.set_targets(vec![target(
        "misc-drop",
        misc("/bin/sleep 32.25", false, Some(Duration::from_secs(60))),
        LOCAL,
        1,
        t,
    )]);
    wait_until(|| !children("32.25", "sleep").is_empty());
    let tid = engine.thread_id();
    drop(engine);
    assert!(children("32.25", "sleep").is_empty());
    assert!(!std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
}

/// A DNS server: NOERROR for names under ok., SERVFAIL otherwise; every
/// reply is preceded by one with the wrong id.
fn dns_server(addr: IpAddr) -> u16 {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    let sock = UdpSocket::bind((addr, 0)).unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let id = q.metadata.id;
            let name = q.queries[0].name().to_ascii();
            let code = if name.ends_with("ok.") {
                ResponseCode::NoError
            } else {
                ResponseCode::ServFail
            };
            let mut wrong = Message::error_msg(
                id.wrapping_add(1),
                q.metadata.op_code,
                ResponseCode::NoError,
            );
            wrong.metadata.message_type = MessageType::Response;
            let _ = sock.send_to(&wrong.to_vec().unwrap(), from);
            let mut r = Message::error_msg(id, q.metadata.op_code, code);
            r.add_queries(q.queries.clone());
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    });
    port
}

#[test]
fn dns_check_wants_our_id_and_noerror() {
    let port = dns_server(LOCAL);
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let dns = |name: &str| {
        CheckKind::Dns(DnsCheck {
            qtype: DnsType::A,
            name: name.into(),
        })
    };
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![
        alpha(target("dns-ok", dns("www.ok"), LOCAL, port, t)),
        target("dns-fail", dns("www.broken"), LOCAL, port, t),
    ]);
    let mut events = wait_events(&mut engine, 2);
    events.sort_by(|a, b| a.key.service.cmp(&b.key.service));
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.key.service.as_str(), e.up, e.result.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("TCP test:dns-fail", false, "dns rcode SERVFAIL"),
            ("TCP test:dns-ok", true, ""),
        ]
    );
}

#[test]
fn udp_check_refused_port_is_down_and_replies_are_matched() {
    let closed = {
        let s = UdpSocket::bind((LOCAL, 0)).unwrap();
        s.local_addr().unwrap().port()
    };
    let echo = UdpSocket::bind((LOCAL, 0)).unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let udp = |require_reply: Option<Vec<Option<u8>>>| {
        CheckKind::Udp(UdpCheck {
            payload: Some(vec![0xca, 0xfe]),
            require_reply,
            min_reply_length: 0,
            max_reply_length: 255,
        })
    };
    // a server that takes the datagram and never answers
    let silent = UdpSocket::bind((LOCAL, 0)).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let mut t = timing(Duration::from_secs(60), 0, ms(50));
    t.connect_timeout = ms(500);
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![
        alpha(target("udp-silent", udp(None), LOCAL, silent_port, t)),
        target("udp-silent-reply", udp(Some(vec![])), LOCAL, silent_port, t),
        target("udp-refused", udp(None), LOCAL, closed, t),
        alpha(target(
            "udp-echo",
            udp(Some(vec![Some(0xc), None, Some(0xf)])),
            LOCAL,
            echo_port,
            t,
        )),
        target(
            "udp-mismatch",
            udp(Some(vec![Some(0xd)])),
            LOCAL,
            echo_port,
            t,
        ),
    ]);
    let mut events = wait_events(&mut engine, 5);
    events.sort_by(|a, b| a.key.service.cmp(&b.key.service));
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.key.service.as_str(), e.up, e.result.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("TCP test:udp-echo", true, ""),
            (
                "TCP test:udp-mismatch",
                false,
                "reply does not match require_reply"
            ),
            ("TCP test:udp-refused", false, "icmp port unreachable"),
            ("TCP test:udp-silent", true, ""),
            (
                "TCP test:udp-silent-reply",
                false,
                "no reply, timeout after 500ms"
            ),
        ]
    );
}

#[test]
fn ping_and_tcp_work_over_ipv4_and_ipv6() {
    let v6: IpAddr = "::1".parse().unwrap();
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let l6 = TcpListener::bind(SocketAddr::new(v6, 0)).unwrap();
    let p6 = l6.local_addr().unwrap().port();
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![
        alpha(target("ping4", CheckKind::Ping, LOCAL, 0, t)),
        alpha(target("ping6", CheckKind::Ping, v6, 0, t)),
        alpha(target("tcp6", CheckKind::Tcp, v6, p6, t)),
    ]);
    let events = wait_events(&mut engine, 3);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e.up), "{events:?}");
}

#[test]
fn set_targets_keeps_unchanged_and_changed_state_and_stops_removed() {
    let server = http_server(LOCAL, b"x");
    let closed = free_port_tcp();
    let t = timing(ms(100), 0, ms(50));
    let steady = target(
        "diff-steady",
        CheckKind::Http(http_kind(vec![url("/steady", None)], HttpProtocol::V10)),
        LOCAL,
        server.port,
        t,
    );
    let dead = target("diff-dead", CheckKind::Tcp, LOCAL, closed, t);
    let gone = target(
        "diff-gone",
        CheckKind::Http(http_kind(vec![url("/gone", None)], HttpProtocol::V10)),
        LOCAL,
        server.port,
        t,
    );
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![steady.clone(), dead.clone(), gone.clone()]);
    let events = wait_events(&mut engine, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].key.service.as_str(), events[0].up),
        ("TCP test:diff-dead", false)
    );
    wait_until(|| status_of(&engine, "diff-steady").checks >= 3);

    // unchanged: same task and counters; changed (even if its new
    // settings say alpha): keeps its down state; removed: stops.
    let mut dead2 = dead.clone();
    dead2.timing.connect_timeout = ms(900);
    dead2.timing.starts_down = false;
    let checks_before = status_of(&engine, "diff-steady").checks;
    let gen_before = engine.next_gen;
    engine.set_targets(vec![steady.clone(), dead2.clone()]);
    // only the changed checker got a new task
    assert_eq!(engine.next_gen, gen_before + 1);
    engine.set_targets(vec![steady.clone(), dead2]);
    assert_eq!(
        engine.next_gen,
        gen_before + 1,
        "unchanged targets restarted"
    );
    let s = status_of(&engine, "diff-dead");
    assert_eq!((s.up, s.transitions), (false, 1));
    assert!(status_of(&engine, "diff-steady").checks >= checks_before);
    assert!(engine
        .status()
        .iter()
        .all(|s| s.key.service != "TCP test:diff-gone"));
    let count_gone = || {
        server
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("GET /gone "))
            .count()
    };
    std::thread::sleep(ms(300));
    let gone_after = count_gone();
    let dead_checks = status_of(&engine, "diff-dead").checks;
    wait_until(|| status_of(&engine, "diff-dead").checks >= dead_checks + 3);
    assert_eq!(count_gone(), gone_after, "a removed checker kept running");
    let s = status_of(&engine, "diff-steady");
    assert!(s.up && s.transitions == 0 && s.checks > checks_before);
    let s = status_of(&engine, "diff-dead");
    assert_eq!((s.up, s.transitions), (false, 1));
    let mut events = Vec::new();
    engine.drain_events(&mut events);
    assert!(events.is_empty(), "no flap on reload: {events:?}");

    // the same key brought back is a new checker (alpha respected)
    engine.set_targets(vec![steady, alpha(gone)]);
    assert!(!status_of(&engine, "diff-gone").up);
    let events = wait_events(&mut engine, 1);
    assert_eq!(
        (events[0].key.service.as_str(), events[0].up),
        ("TCP test:diff-gone", true)
    );
}

#[test]
fn tcp_source_options_bindto_bind_port_bind_if_and_fwmark() {
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let src_port = free_port_tcp();
    let t = timing(Duration::from_secs(60), 0, ms(50));
    let mut bound = alpha(target("src-bound", CheckKind::Tcp, LOCAL, port, t));
    bound.spec.bindto = Some("127.0.0.2".parse().unwrap());
    bound.spec.bind_port = Some(src_port);
    bound.spec.bind_if = Some("lo".into());
    bound.spec.fwmark = Some(0x42);
    let mut no_dev = target("src-nodev", CheckKind::Tcp, LOCAL, port, t);
    no_dev.spec.bind_if = Some("vsd-nonexist0".into());
    let mut mixed = target("src-family", CheckKind::Tcp, LOCAL, port, t);
    mixed.spec.bindto = Some("::1".parse().unwrap());
    let mut engine = Engine::start().unwrap();
    engine.set_targets(vec![bound, no_dev, mixed]);
    let mut events = wait_events(&mut engine, 3);
    events.sort_by(|a, b| a.key.service.cmp(&b.key.service));
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.key.service.as_str(), e.up, e.result.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("TCP test:src-bound", true, ""),
            (
                "TCP test:src-family",
                false,
                "bindto and target address families differ"
            ),
            ("TCP test:src-nodev", false, "no such bind_if device"),
        ]
    );
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(
        peer,
        SocketAddr::new("127.0.0.2".parse().unwrap(), src_port)
    );
}

#[test]
fn state_machine_retries_only_while_up_and_reports_weights() {
    let t = target(
        "machine",
        misc("/bin/true", true, None),
        LOCAL,
        1,
        timing(ms(1000), 2, ms(10)),
    );
    let mut m = Machine {
        up: true,
        retries_left: 2,
        url_cursor: 0,
        dynamic_weight: None,
    };
    let fail: check::Outcome = Err("exit status 1".into());
    let step = |m: &mut Machine, o: &check::Outcome| m.apply(&t, UrlScope::All, o);
    let retry = Step {
        event: false,
        next: ms(10),
    };
    // up: two retries delay_before_retry apart, then down with an event
    assert_eq!(step(&mut m, &fail), retry);
    assert_eq!(step(&mut m, &fail), retry);
    assert_eq!(
        step(&mut m, &fail),
        Step {
            event: true,
            next: ms(1000)
        }
    );
    assert!(!m.up);
    // down: no retries, no events
    assert_eq!(
        step(&mut m, &fail),
        Step {
            event: false,
            next: ms(1000)
        }
    );
    // one success brings it up; the same weight again is no event
    assert!(step(&mut m, &Ok(Some(3))).event);
    assert!(m.up && m.dynamic_weight == Some(3));
    assert!(!step(&mut m, &Ok(Some(3))).event);
    assert!(step(&mut m, &Ok(None)).event);
    // a success in between restores the full retry budget
    assert_eq!(step(&mut m, &fail), retry);
    assert!(!step(&mut m, &Ok(None)).event);
    assert_eq!(step(&mut m, &fail), retry);
    assert_eq!(step(&mut m, &fail), retry);
    assert!(step(&mut m, &fail).event);
}
