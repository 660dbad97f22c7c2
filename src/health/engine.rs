//! The checker engine: every checker of every real server on one thread.
//!
//! **What.** [`Engine`] owns a thread named `vsd-health` that runs a tokio
//! current-thread runtime. Each checker is one task: a loop of timer,
//! attempt ([`super::check`]) and keepalived's state machine. Commands go
//! in over a channel ([`Engine::set_targets`] diffs on the caller's side
//! and sends only what changed); events come out over a channel, with an
//! eventfd ([`Engine::wake_fd`]) that stays readable while events wait, so
//! the control loop can sleep in poll(2).
//!
//! **Why one async thread.** keepalived's checker process struggles with
//! thousands of checkers; here a checker costs a task, a timer and, while
//! an attempt runs, one socket or child process. A slow server delays
//! nothing else.
//!
//! **State machine** (keepalived's): the first attempt comes after a
//! random delay in [0, `warmup`], then one every `delay_loop` (counted
//! from the end of the previous attempt, as keepalived's timers are).
//! While up, a failed attempt is retried up to `retry` times,
//! `delay_before_retry` apart; only when they all fail does the checker go
//! down, with the last failure's reason. While down, one passing attempt
//! brings it up. HTTP_GET/SSL_GET with several URLs: an attempt while up
//! fetches them all; while down without `fast_recovery` one URL per
//! `delay_loop` (as keepalived), and it comes up when all have passed in
//! a row; with `fast_recovery` every URL at once. `misc_dynamic`: an event
//! also when the weight a passing MISC_CHECK asks for changes.
//!
//! **Reload.** A key whose target is unchanged keeps its task, state and
//! schedule; a changed one gets a new task that inherits its up/down
//! state, dynamic weight and counters; a new key starts up, or down with
//! `alpha`. A generation number per key makes a replaced task's late
//! result invisible.
//!
//! **Failure modes.** A checker that cannot start (bad option, missing
//! program, unknown user) fails its attempts with that reason. Dropping
//! the engine stops the thread and joins it; tasks are dropped with it,
//! and a MISC_CHECK child still running is killed (its process group)
//! and reaped.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::check::{self, UrlScope};
use super::spec::{CheckKind, CheckTarget};
use super::{CheckEvent, CheckKey, CheckResult, CheckRunner, CheckStatus};

enum Command {
    /// Run `target` as generation `gen` (replacing any task of its key).
    Start {
        target: Box<CheckTarget>,
        gen: u64,
    },
    Stop {
        key: CheckKey,
    },
}

/// What the engine knows of one checker (shared with `status`).
struct Entry {
    gen: u64,
    kind: &'static str,
    target: String,
    up: bool,
    dynamic_weight: Option<u32>,
    last: Option<CheckResult>,
    checks: u64,
    failures: u64,
    transitions: u64,
    changed_at: Instant,
}

struct Shared {
    checkers: HashMap<CheckKey, Entry>,
    /// How late attempts started against their schedule, in microseconds.
    lateness: hdrhistogram::Histogram<u64>,
    attempts: u64,
}

/// Scheduling statistics since the last [`Engine::reset_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub attempts: u64,
    pub lateness_p50: Duration,
    pub lateness_p99: Duration,
    pub lateness_max: Duration,
}

/// The checker engine (see the module note).
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    events: std_mpsc::Receiver<CheckEvent>,
    wake: Arc<OwnedFd>,
    shared: Arc<Mutex<Shared>>,
    /// The targets running, for diffing the next `set_targets`.
    targets: HashMap<CheckKey, CheckTarget>,
    next_gen: u64,
    tid: libc::pid_t,
    thread: Option<JoinHandle<()>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere must not take health checking down with it.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn target_text(t: &CheckTarget) -> String {
    match &t.spec.kind {
        CheckKind::Misc(m) => m.path.clone(),
        CheckKind::Ping => t.addr.to_string(),
        _ => std::net::SocketAddr::new(t.addr, t.port).to_string(),
    }
}

impl Engine {
    /// Start the `vsd-health` thread with no checkers.
    pub fn start() -> io::Result<Engine> {
        // SAFETY: eventfd takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor we own.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Mutex::new(Shared {
            checkers: HashMap::new(),
            lateness: hdrhistogram::Histogram::new(3)
                .map_err(|e| io::Error::other(e.to_string()))?,
            attempts: 0,
        }));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let (tid_tx, tid_rx) = std_mpsc::sync_channel(1);
        let thread_shared = shared.clone();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("vsd-health".into())
            .spawn(move || {
                // SAFETY: gettid has no arguments and cannot fail.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                let events = Events {
                    tx: ev_tx,
                    wake: thread_wake,
                };
                serve(runtime, cmd_rx, thread_shared, events);
            })?;
        let tid = tid_rx
            .recv()
            .map_err(|_| io::Error::other("vsd-health thread died at start"))?;
        Ok(Engine {
            commands: cmd_tx,
            events: ev_rx,
            wake,
            shared,
            targets: HashMap::new(),
            next_gen: 1,
            tid,
            thread: Some(thread),
        })
    }

    /// The engine thread's kernel id (for its CPU time in
    /// /proc/self/task/TID/stat).
    pub fn thread_id(&self) -> libc::pid_t {
        self.tid
    }

    /// Attempts and their start lateness since the last reset.
    pub fn stats(&self) -> EngineStats {
        let s = lock(&self.shared);
        let us = |q: f64| Duration::from_micros(s.lateness.value_at_quantile(q));
        EngineStats {
            attempts: s.attempts,
            lateness_p50: us(0.5),
            lateness_p99: us(0.99),
            lateness_max: Duration::from_micros(s.lateness.max()),
        }
    }

    pub fn reset_stats(&self) {
        let mut s = lock(&self.shared);
        s.lateness.reset();
        s.attempts = 0;
    }

    fn send(&self, cmd: Command) {
        // The thread only ends when the engine is dropped.
        let _ = self.commands.send(cmd);
    }
}

impl CheckRunner for Engine {
    fn set_targets(&mut self, targets: Vec<CheckTarget>) {
        let mut next: HashMap<CheckKey, CheckTarget> = HashMap::with_capacity(targets.len());
        for t in targets {
            next.insert(t.key.clone(), t);
        }
        let mut start = Vec::new();
        {
            let mut shared = lock(&self.shared);
            for key in self.targets.keys() {
                if !next.contains_key(key) {
                    shared.checkers.remove(key);
                    let _ = self.commands.send(Command::Stop { key: key.clone() });
                }
            }
            for (key, t) in &next {
                if self.targets.get(key) == Some(t) {
                    continue;
                }
                let gen = self.next_gen;
                self.next_gen += 1;
                match shared.checkers.get_mut(key) {
                    // Changed: same up/down, counters and weight; the old
                    // task's results stop counting from here.
                    Some(e) => {
                        e.gen = gen;
                        e.kind = t.spec.kind.name();
                        e.target = target_text(t);
                    }
                    None => {
                        shared.checkers.insert(
                            key.clone(),
                            Entry {
                                gen,
                                kind: t.spec.kind.name(),
                                target: target_text(t),
                                up: !t.timing.starts_down,
                                dynamic_weight: None,
                                last: None,
                                checks: 0,
                                failures: 0,
                                transitions: 0,
                                changed_at: Instant::now(),
                            },
                        );
                    }
                }
                start.push(Command::Start {
                    target: Box::new(t.clone()),
                    gen,
                });
            }
        }
        for cmd in start {
            self.send(cmd);
        }
        self.targets = next;
    }

    fn drain_events(&mut self, out: &mut Vec<CheckEvent>) {
        // Reset the eventfd first: an event sent after this read writes it
        // again, so nothing is left waiting with the fd unreadable.
        let mut counter = [0u8; 8];
        // SAFETY: reads at most 8 bytes into counter from our eventfd.
        let _ = unsafe { libc::read(self.wake.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
        out.extend(self.events.try_iter());
    }

    fn status(&self) -> Vec<CheckStatus> {
        let shared = lock(&self.shared);
        let mut all: Vec<CheckStatus> = shared
            .checkers
            .iter()
            .map(|(key, e)| CheckStatus {
                key: key.clone(),
                kind: e.kind,
                target: e.target.clone(),
                up: e.up,
                last: e.last.clone(),
                checks: e.checks,
                failures: e.failures,
                transitions: e.transitions,
                since_change: e.changed_at.elapsed(),
            })
            .collect();
        all.sort_by(|a, b| {
            (&a.key.service, a.key.server, a.key.server_port, a.key.index).cmp(&(
                &b.key.service,
                b.key.server,
                b.key.server_port,
                b.key.index,
            ))
        });
        all
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.wake.as_raw_fd())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop.
        let (dead, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.commands, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The way out for events: a channel and the eventfd that announces them.
#[derive(Clone)]
struct Events {
    tx: std_mpsc::Sender<CheckEvent>,
    wake: Arc<OwnedFd>,
}

impl Events {
    fn send(&self, event: CheckEvent) {
        if self.tx.send(event).is_ok() {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from `one` to our eventfd; a full
            // counter (EAGAIN) still leaves it readable.
            let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }
}

/// The engine thread: run commands until the engine is dropped, then drop
/// every task (killing and reaping MISC children) before returning.
fn serve(
    runtime: tokio::runtime::Runtime,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Mutex<Shared>>,
    events: Events,
) {
    let local = tokio::task::LocalSet::new();
    let ctx = Arc::new(check::Context::new());
    local.block_on(&runtime, async {
        let mut tasks: HashMap<CheckKey, tokio::task::JoinHandle<()>> = HashMap::new();
        while let Some(cmd) = commands.recv().await {
            match cmd {
                Command::Start { target, gen } => {
                    let key = target.key.clone();
                    let task = tokio::task::spawn_local(run_checker(
                        *target,
                        gen,
                        shared.clone(),
                        events.clone(),
                        ctx.clone(),
                    ));
                    if let Some(old) = tasks.insert(key, task) {
                        old.abort();
                    }
                }
                Command::Stop { key } => {
                    if let Some(old) = tasks.remove(&key) {
                        old.abort();
                    }
                }
            }
        }
        for t in tasks.values() {
            t.abort();
        }
    });
    // Dropping the LocalSet drops every task's future now.
    drop(local);
    drop(runtime);
}

/// Where a checker stands between attempts.
struct Machine {
    up: bool,
    retries_left: u32,
    /// HTTP recovering one URL at a time: the next URL to fetch.
    url_cursor: usize,
    dynamic_weight: Option<u32>,
}

/// What one attempt's result does to the machine.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    /// Report an event (transition or new dynamic weight).
    event: bool,
    /// Wait this long before the next attempt.
    next: Duration,
}

impl Machine {
    fn scope(&self, kind: &CheckKind) -> UrlScope {
        match kind {
            CheckKind::Http(h) | CheckKind::Ssl(h)
                if !self.up && !h.fast_recovery && h.urls.len() > 1 =>
            {
                UrlScope::One(self.url_cursor.min(h.urls.len() - 1))
            }
            _ => UrlScope::All,
        }
    }

    fn apply(&mut self, target: &CheckTarget, scope: UrlScope, outcome: &check::Outcome) -> Step {
        let t = &target.timing;
        match outcome {
            Ok(weight) => {
                self.retries_left = t.retry;
                if let UrlScope::One(i) = scope {
                    let urls = match &target.spec.kind {
                        CheckKind::Http(h) | CheckKind::Ssl(h) => h.urls.len(),
                        _ => 1,
                    };
                    if i + 1 < urls {
                        // Recovering: the next URL at the next delay_loop.
                        self.url_cursor = i + 1;
                        return Step {
                            event: false,
                            next: t.delay_loop,
                        };
                    }
                }
                self.url_cursor = 0;
                let event = !self.up || self.dynamic_weight != *weight;
                self.up = true;
                self.dynamic_weight = *weight;
                Step {
                    event,
                    next: t.delay_loop,
                }
            }
            Err(_) => {
                self.url_cursor = 0;
                if self.up && self.retries_left > 0 {
                    self.retries_left -= 1;
                    return Step {
                        event: false,
                        next: t.delay_before_retry,
                    };
                }
                let event = self.up;
                self.up = false;
                self.dynamic_weight = None;
                self.retries_left = t.retry;
                Step {
                    event,
                    next: t.delay_loop,
                }
            }
        }
    }
}

fn random_below(limit: Duration) -> Duration {
    let nanos = limit.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(check::random_u64() % (nanos + 1))
}

async fn run_checker(
    target: CheckTarget,
    gen: u64,
    shared: Arc<Mutex<Shared>>,
    events: Events,
    ctx: Arc<check::Context>,
) {
    let mut machine = {
        let s = lock(&shared);
        let Some(e) = s.checkers.get(&target.key).filter(|e| e.gen == gen) else {
            return;
        };
        Machine {
            up: e.up,
            retries_left: target.timing.retry,
            url_cursor: 0,
            dynamic_weight: e.dynamic_weight,
        }
    };
    let mut due = tokio::time::Instant::now() + random_below(target.timing.warmup);
    loop {
        sleep_until(due).await;
        let started = Instant::now();
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        let scope = machine.scope(&target.spec.kind);
        let outcome = check::attempt(&target, scope, &ctx).await;
        let latency = started.elapsed();
        let step = machine.apply(&target, scope, &outcome);
        let result = CheckResult {
            ok: outcome.is_ok(),
            reason: outcome.as_ref().err().cloned().unwrap_or_default(),
            latency,
            dynamic_weight: outcome.as_ref().ok().copied().flatten(),
        };
        {
            let mut s = lock(&shared);
            let s = &mut *s;
            s.attempts += 1;
            let _ = s
                .lateness
                .record(late.as_micros().min(u64::MAX as u128) as u64);
            let Some(e) = s.checkers.get_mut(&target.key).filter(|e| e.gen == gen) else {
                // Replaced or removed while the attempt ran.
                return;
            };
            e.checks += 1;
            if !result.ok {
                e.failures += 1;
            }
            if e.up != machine.up {
                e.transitions += 1;
                e.changed_at = Instant::now();
            }
            e.up = machine.up;
            e.dynamic_weight = machine.dynamic_weight;
            e.last = Some(result.clone());
            if step.event {
                // Sent under the lock so events and status agree in order.
                events.send(CheckEvent {
                    key: target.key.clone(),
                    up: machine.up,
                    result,
                });
            }
        }
        due = tokio::time::Instant::now() + step.next;
    }
}

#[cfg(test)]
mod tests;
