//! vsd-stall-probe: how much of each CPU this machine takes away from a
//! busy poll loop.
//!
//! ```text
//! vsd-stall-probe --cpus 0,1 --seconds 5 --gap-us 50
//! ```
//!
//! One thread per CPU, pinned, spins on the clock like a poll-mode worker
//! and counts every gap between two readings of at least `--gap-us`: time
//! the kernel gave to another task, an interrupt, or the hypervisor gave to
//! another guest. All CPUs are probed at once (a VM's vCPUs are disturbed
//! more when all are busy). Prints one JSON object per CPU on stdout and a
//! summary line per CPU on stderr. A latency tail measured on the same
//! machine cannot be shorter than what this shows.

#[path = "../pin.rs"]
mod pin;

use clap::Parser;
use pin::pin_to;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Gap lengths bucketed by upper bound (us); the last bucket is open.
const BUCKETS_US: [u64; 7] = [100, 200, 500, 1000, 2000, 5000, 10000];

#[derive(Parser, Debug)]
#[command(name = "vsd-stall-probe", version, about)]
struct Opts {
    /// CPUs to probe, comma-separated (default: every CPU this process may use).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// How long to probe, seconds (0.1 to 600).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Shortest gap that counts, microseconds (1 or more).
    #[arg(long, default_value_t = 50)]
    gap_us: u64,
}

/// The gaps one CPU's loop saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GapStats {
    threshold_ns: u64,
    count: u64,
    total_ns: u64,
    max_ns: u64,
    buckets: [u64; BUCKETS_US.len() + 1],
}

impl GapStats {
    fn new(threshold_ns: u64) -> Self {
        GapStats {
            threshold_ns: threshold_ns.max(1),
            count: 0,
            total_ns: 0,
            max_ns: 0,
            buckets: [0; BUCKETS_US.len() + 1],
        }
    }

    /// Account one interval between two clock readings.
    #[inline]
    fn observe(&mut self, gap_ns: u64) {
        if gap_ns < self.threshold_ns {
            return;
        }
        self.count += 1;
        self.total_ns += gap_ns;
        self.max_ns = self.max_ns.max(gap_ns);
        let us = gap_ns / 1000;
        let b = BUCKETS_US
            .iter()
            .position(|&ub| us < ub)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[b] += 1;
    }

    /// Share of `elapsed_ns` lost in gaps, percent.
    fn lost_pct(&self, elapsed_ns: u64) -> f64 {
        if elapsed_ns == 0 {
            return 0.0;
        }
        100.0 * self.total_ns as f64 / elapsed_ns as f64
    }

    fn json(&self, cpu: usize, elapsed_ns: u64) -> serde_json::Value {
        let mut buckets = serde_json::Map::new();
        let mut lower = self.threshold_ns / 1000;
        for (i, n) in self.buckets.iter().enumerate() {
            let name = match BUCKETS_US.get(i) {
                Some(ub) => format!("{lower}-{ub}us"),
                None => format!("{lower}us+"),
            };
            if let Some(ub) = BUCKETS_US.get(i) {
                lower = *ub;
            }
            buckets.insert(name, serde_json::json!(n));
        }
        serde_json::json!({
            "cpu": cpu,
            "seconds": elapsed_ns as f64 / 1e9,
            "gap_us": self.threshold_ns / 1000,
            "gaps": self.count,
            "lost_ms": self.total_ns as f64 / 1e6,
            "lost_pct": (self.lost_pct(elapsed_ns) * 1000.0).round() / 1000.0,
            "max_gap_us": self.max_ns as f64 / 1e3,
            "buckets": buckets,
        })
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in pin::pin_to; sched_getaffinity fills the set for this thread
    // and CPU_ISSET only reads bits below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Spin on one CPU until `until`, accounting every gap.
fn probe(cpu: usize, until: Instant, threshold_ns: u64) -> Result<(GapStats, u64), String> {
    pin_to(cpu)?;
    let mut stats = GapStats::new(threshold_ns);
    let start = Instant::now();
    let mut prev = start;
    loop {
        let now = Instant::now();
        stats.observe(now.duration_since(prev).as_nanos() as u64);
        prev = now;
        if now >= until {
            break;
        }
    }
    Ok((stats, prev.duration_since(start).as_nanos() as u64))
}

fn main() -> ExitCode {
    let o = Opts::parse();
    if !(0.1..=600.0).contains(&o.seconds) {
        eprintln!("vsd-stall-probe: --seconds must be between 0.1 and 600");
        return ExitCode::from(2);
    }
    if o.gap_us == 0 {
        eprintln!("vsd-stall-probe: --gap-us must be 1 or more");
        return ExitCode::from(2);
    }
    let cpus = if o.cpus.is_empty() {
        allowed_cpus()
    } else {
        o.cpus.clone()
    };
    if cpus.is_empty() {
        eprintln!("vsd-stall-probe: no CPU to probe");
        return ExitCode::from(2);
    }
    let until = Instant::now() + Duration::from_secs_f64(o.seconds);
    let threshold_ns = o.gap_us.saturating_mul(1000);
    let threads: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            (
                cpu,
                std::thread::spawn(move || probe(cpu, until, threshold_ns)),
            )
        })
        .collect();
    let mut failed = false;
    for (cpu, t) in threads {
        match t.join() {
            Ok(Ok((stats, elapsed))) => {
                println!("{}", stats.json(cpu, elapsed));
                eprintln!(
                    "vsd-stall-probe cpu {cpu}: {} gaps >= {} us, {:.1} ms lost ({:.2}%), longest {:.0} us",
                    stats.count,
                    o.gap_us,
                    stats.total_ns as f64 / 1e6,
                    stats.lost_pct(elapsed),
                    stats.max_ns as f64 / 1e3
                );
            }
            Ok(Err(e)) => {
                eprintln!("vsd-stall-probe: {e}");
                failed = true;
            }
            Err(_) => {
                eprintln!("vsd-stall-probe: the thread probing cpu {cpu} panicked");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_intervals_do_not_count() {
        let mut s = GapStats::new(50_000);
        for _ in 0..1000 {
            s.observe(30);
        }
        s.observe(49_999);
        assert_eq!((s.count, s.total_ns, s.max_ns), (0, 0, 0));
    }

    #[test]
    fn gaps_are_counted_summed_and_bucketed() {
        let mut s = GapStats::new(50_000);
        s.observe(50_000); // 50 us: first bucket
        s.observe(150_000); // 150 us: 100-200
        s.observe(3_000_000); // 3 ms: 2000-5000
        s.observe(20_000_000); // 20 ms: open bucket
        assert_eq!(s.count, 4);
        assert_eq!(s.total_ns, 23_200_000);
        assert_eq!(s.max_ns, 20_000_000);
        assert_eq!(s.buckets, [1, 1, 0, 0, 0, 1, 0, 1]);
        assert!((s.lost_pct(1_000_000_000) - 2.32).abs() < 1e-9);
        let j = s.json(1, 1_000_000_000);
        assert_eq!(j["gaps"], 4);
        assert_eq!(j["buckets"]["50-100us"], 1);
        assert_eq!(j["buckets"]["10000us+"], 1);
        assert_eq!(j["lost_pct"], 2.32);
    }

    #[test]
    fn nothing_elapsed_loses_nothing() {
        assert_eq!(GapStats::new(1).lost_pct(0), 0.0);
    }

    #[test]
    fn a_short_probe_runs_on_an_allowed_cpu() {
        let cpu = allowed_cpus()[0];
        let until = Instant::now() + Duration::from_millis(20);
        let (s, elapsed) = probe(cpu, until, 50_000).expect("pinning to an allowed cpu");
        // the probe starts its clock once pinned, a little after `until` was set
        assert!(elapsed >= 10_000_000, "probed {elapsed} ns");
        assert!(s.total_ns <= elapsed);
    }

    #[test]
    fn pinning_outside_the_set_is_an_error() {
        assert!(pin_to(libc::CPU_SETSIZE as usize).is_err());
    }
}
