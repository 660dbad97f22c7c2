//! vsd-xcpu-probe: what one cache line costs to move between two CPUs, now.
//!
//! ```text
//! vsd-xcpu-probe --cpus 0,1 --rounds 20000 --trials 5
//! ```
//!
//! Why: the memif benchmark is two processes on two CPUs exchanging every
//! packet through shared memory, so its rate follows the cost of moving a
//! cache line from one CPU to the other. On the benchmark VM that cost has
//! two modes set by the host, not by the guest (~50-70 ns and ~160-190 ns
//! one way, switching between and sometimes within sessions, whatever runs
//! in the guest). In the slow mode the memif PMD's copies cost ~4x and every
//! forwarder, testpmd included, runs at ~3.5 Mpps; a point measured in it
//! says nothing about the forwarder. perf/run.sh runs this probe around
//! every session (both CPUs idle) to tell the two apart.
//!
//! How: two threads pinned to the two CPUs bounce a counter in one cache
//! line (each waits for the other's value, then writes the next), `rounds`
//! round trips per trial, each trial on a line of its own; the result is the
//! lowest over trials of the time per one-way transfer (the host's mode lasts
//! seconds; a CPU taken by another task while the probe spins only ever makes
//! a trial slower). Failure modes: a CPU that cannot be pinned is an error
//! (exit 1); a machine so busy that every trial is preempted reads as slow
//! (true for the benchmark too). Output: one JSON object on stdout, a human
//! line on stderr.

#[path = "../pin.rs"]
mod pin;

use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(name = "vsd-xcpu-probe", version, about)]
struct Opts {
    /// The two CPUs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1])]
    cpus: Vec<usize>,
    /// Round trips per trial (100 to 10M).
    #[arg(long, default_value_t = 20_000)]
    rounds: u64,
    /// Trials (1 to 100), each on its own cache line.
    #[arg(long, default_value_t = 5)]
    trials: usize,
}

/// One cache line of its own, so the bounce moves nothing else.
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

/// Pin the calling thread to one CPU (None: leave it where it is).
fn pin_to(cpu: Option<usize>) -> Result<(), String> {
    cpu.map_or(Ok(()), pin::pin_to)
}

/// Waits until `line` holds `want` (spinning: the point is to measure the
/// line's transfer, a sleep would measure the scheduler); false if the other
/// side gave up (`abort`, a line of its own that is only read while spinning).
#[inline]
fn wait_for(line: &AtomicU64, want: u64, abort: &AtomicBool) -> bool {
    while line.load(Ordering::Acquire) != want {
        if abort.load(Ordering::Relaxed) {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// Nanoseconds per one-way transfer of a line between `cpus` (each entry
/// None: that thread is not pinned), one value per trial.
fn bounce(cpus: [Option<usize>; 2], rounds: u64, trials: usize) -> Result<Vec<f64>, String> {
    let lines: Vec<Line> = (0..trials).map(|_| Line::default()).collect();
    let rounds = rounds.max(1);
    // either side that fails raises it, so the other never waits forever
    let abort = AtomicBool::new(false);
    let gave_up = || "the other thread gave up".to_string();
    std::thread::scope(|s| {
        let peer = s.spawn(|| -> Result<(), String> {
            pin_to(cpus[1]).inspect_err(|_| abort.store(true, Ordering::Relaxed))?;
            for line in &lines {
                // odd values are ours to answer: 2k+1 -> 2k+2
                for k in 0..rounds {
                    if !wait_for(&line.0, 2 * k + 1, &abort) {
                        return Err(gave_up());
                    }
                    line.0.store(2 * k + 2, Ordering::Release);
                }
            }
            Ok(())
        });
        let mine = (|| {
            pin_to(cpus[0])?;
            let mut out = Vec::with_capacity(trials);
            for line in &lines {
                let t0 = Instant::now();
                for k in 0..rounds {
                    line.0.store(2 * k + 1, Ordering::Release);
                    if !wait_for(&line.0, 2 * k + 2, &abort) {
                        return Err(gave_up());
                    }
                }
                out.push(t0.elapsed().as_nanos() as f64 / (2 * rounds) as f64);
            }
            Ok(out)
        })();
        if mine.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let peer = match peer.join() {
            Ok(r) => r,
            Err(_) => Err("the peer thread panicked".to_string()),
        };
        // the side that failed first says why
        match (mine, peer) {
            (Ok(out), Ok(())) => Ok(out),
            (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(if a.starts_with("cannot") { a } else { b }),
        }
    })
}

/// The lowest finite value of `v`.
fn lowest(v: &[f64]) -> Option<f64> {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .min_by(f64::total_cmp)
}

fn main() -> ExitCode {
    let o = Opts::parse();
    if o.cpus.len() != 2 || o.cpus[0] == o.cpus[1] {
        eprintln!("vsd-xcpu-probe: --cpus takes two different CPUs");
        return ExitCode::from(2);
    }
    if !(100..=10_000_000).contains(&o.rounds) || !(1..=100).contains(&o.trials) {
        eprintln!("vsd-xcpu-probe: --rounds 100..10000000, --trials 1..100");
        return ExitCode::from(2);
    }
    let trials = match bounce([Some(o.cpus[0]), Some(o.cpus[1])], o.rounds, o.trials) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vsd-xcpu-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(ns) = lowest(&trials) else {
        eprintln!("vsd-xcpu-probe: no trial gave a result");
        return ExitCode::FAILURE;
    };
    println!(
        "{}",
        serde_json::json!({
            "cpus": o.cpus,
            "ns_per_transfer": (ns * 10.0).round() / 10.0,
            "trials_ns": trials.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "rounds": o.rounds,
        })
    );
    eprintln!(
        "vsd-xcpu-probe cpus {}<->{}: {:.1} ns per cache-line transfer (lowest of {})",
        o.cpus[0], o.cpus[1], ns, o.trials
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_skips_what_is_not_a_number() {
        assert_eq!(lowest(&[3.0, 1.5, 2.0]), Some(1.5));
        assert_eq!(lowest(&[f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
        assert_eq!(lowest(&[]), None);
    }

    /// The bounce completes every round trip and reports one positive,
    /// finite time per trial (threads unpinned: runs on any machine).
    #[test]
    fn bounce_reports_every_trial() {
        let t = bounce([None, None], 200, 3).expect("bounce");
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|x| x.is_finite() && *x > 0.0), "{t:?}");
    }

    #[test]
    fn an_unpinnable_cpu_is_an_error_not_a_hang() {
        let e = bounce([Some(libc::CPU_SETSIZE as usize), None], 100, 2);
        assert!(e.is_err());
        let e = bounce([None, Some(libc::CPU_SETSIZE as usize)], 100, 2);
        assert!(e.is_err());
    }
}
