//! Scale benchmark of the health checker engine: N TCP_CHECK targets at
//! `delay_loop 1` from the engine's one thread.
//!
//! Run through `perf/health-scale.sh`, which makes a network namespace
//! with the addresses; by hand (in a namespace of your own!):
//! `health_scale --addrs 198.18.1.1 --count 100 --ports 20000 --nports 100 --seconds 30`.
//!
//! The targets are `count` consecutive IPv4 addresses × `nports`
//! consecutive ports. Listeners on the wildcard address, one per port, on
//! a thread of their own, accept and close. Each checker starts after a
//! random warmup up to delay_loop, so attempts spread over the second.
//! After `settle` seconds the counters are reset and the run measures for
//! `seconds`: checks/s, how late attempts started against their schedule
//! (p50/p99/max), and the vsd-health thread's CPU time from
//! /proc/self/task/TID/stat.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use vsd::health::spec::{CheckKey, CheckKind, CheckTarget, CheckerSpec, EffectiveTiming};
use vsd::health::{CheckRunner, Engine};

struct Args {
    first: Ipv4Addr,
    count: u32,
    port: u16,
    nports: u16,
    seconds: u64,
    settle: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        first: Ipv4Addr::new(198, 18, 1, 1),
        count: 100,
        port: 20000,
        nports: 100,
        seconds: 30,
        settle: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes --bench; ignore it.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--addrs" => a.first = value.parse().map_err(|_| format!("bad address {value}"))?,
            "--count" => a.count = value.parse().map_err(bad)?,
            "--ports" => a.port = value.parse().map_err(bad)?,
            "--nports" => a.nports = value.parse().map_err(bad)?,
            "--seconds" => a.seconds = value.parse().map_err(bad)?,
            "--settle" => a.settle = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// Raise RLIMIT_NOFILE to `want`, or at least the soft limit to the hard
/// one (a container may refuse raising the hard limit). Only attempts in
/// flight hold a descriptor, so a few thousand are plenty at delay_loop 1.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: setrlimit/getrlimit read or write one valid rlimit.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            return;
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or("?")
        .to_string()
}

/// utime + stime of one of our threads, in clock ticks.
fn thread_ticks(tid: libc::pid_t) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // fields[0] is state (field 3); utime and stime are fields 14 and 15.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Nanoseconds one of our threads spent waiting on a run queue (ready
/// but not running), from /proc/self/task/TID/schedstat.
fn thread_runqueue_wait_ns(tid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn listeners(ports: std::ops::Range<u16>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("listener runtime");
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for port in ports {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("reuseaddr");
            socket
                .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
                .expect("bind listener");
            let listener = socket.listen(4096).expect("listen");
            tasks.push(tokio::spawn(async move {
                loop {
                    if let Ok((conn, _)) = listener.accept().await {
                        drop(conn);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("health_scale: {e}");
            std::process::exit(2);
        }
    };
    let n = args.count as u64 * args.nports as u64;
    raise_nofile(n + 20_000);
    let ports = args.port..args.port + args.nports;
    std::thread::Builder::new()
        .name("listeners".into())
        .spawn(move || listeners(ports))
        .expect("listener thread");
    std::thread::sleep(Duration::from_millis(300));

    let timing = EffectiveTiming {
        connect_timeout: Duration::from_secs(5),
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        delay_loop: Duration::from_secs(1),
        warmup: Duration::from_secs(1),
        starts_down: false,
    };
    let mut targets = Vec::with_capacity(n as usize);
    for i in 0..args.count {
        let addr = IpAddr::V4(Ipv4Addr::from(u32::from(args.first) + i));
        for p in 0..args.nports {
            let port = args.port + p;
            targets.push(CheckTarget {
                key: CheckKey {
                    service: "TCP 198.18.0.100:80".into(),
                    server: addr,
                    server_port: port,
                    index: 0,
                },
                addr,
                port,
                spec: CheckerSpec::new(CheckKind::Tcp),
                timing,
                virtualhost: None,
            });
        }
    }
    let mut engine = Engine::start().expect("engine");
    let tid = engine.thread_id();
    let t0 = Instant::now();
    engine.set_targets(targets);
    println!(
        "health_scale: {n} TCP_CHECK targets ({} addresses x {} ports), delay_loop 1s, set_targets took {:?}",
        args.count,
        args.nports,
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_secs(args.settle));
    let mut events = Vec::new();
    engine.drain_events(&mut events);
    engine.reset_stats();
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks0 = thread_ticks(tid);
    let wait0 = thread_runqueue_wait_ns(tid);
    let load0 = loadavg();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let elapsed = start.elapsed().as_secs_f64();
    let ticks = thread_ticks(tid) - ticks0;
    let runqueue_pct = (thread_runqueue_wait_ns(tid) - wait0) as f64 / 1e9 / elapsed * 100.0;
    let stats = engine.stats();
    engine.drain_events(&mut events);
    let status = engine.status();
    let up = status.iter().filter(|s| s.up).count();
    let failures: u64 = status.iter().map(|s| s.failures).sum();
    let checks_per_s = stats.attempts as f64 / elapsed;
    let cpu = ticks as f64 / hz / elapsed * 100.0;
    let cpu_us_per_check = ticks as f64 / hz * 1e6 / stats.attempts.max(1) as f64;
    println!(
        "checks/s {:.0} (ideal {}), lateness p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
         vsd-health thread CPU {:.1}% of one core ({:.1} us per check) over {:.0} s, up {}/{}, \
         failed attempts {}, transitions {}, load average {} -> {}, \
         thread ready but waiting for a CPU {:.1}% of the time",
        checks_per_s,
        n,
        stats.lateness_p50.as_secs_f64() * 1e3,
        stats.lateness_p99.as_secs_f64() * 1e3,
        stats.lateness_max.as_secs_f64() * 1e3,
        cpu,
        cpu_us_per_check,
        elapsed,
        up,
        status.len(),
        failures,
        events.len(),
        load0,
        loadavg(),
        runqueue_pct
    );
    println!(
        "json: {{\"targets\": {n}, \"checks_per_s\": {checks_per_s:.0}, \"lateness_p50_ms\": {:.3}, \
         \"lateness_p99_ms\": {:.3}, \"lateness_max_ms\": {:.3}, \"cpu_pct\": {cpu:.1}, \"cpu_us_per_check\": {cpu_us_per_check:.1}, \"runqueue_wait_pct\": {runqueue_pct:.1}, \"up\": {up}, \
         \"failed_attempts\": {failures}, \"events\": {}}}",
        stats.lateness_p50.as_secs_f64() * 1e3,
        stats.lateness_p99.as_secs_f64() * 1e3,
        stats.lateness_max.as_secs_f64() * 1e3,
        events.len()
    );
    let t1 = Instant::now();
    drop(engine);
    println!("engine stopped in {:?}", t1.elapsed());
    // The listener thread keeps running; exit the process.
    std::process::exit(0);
}
