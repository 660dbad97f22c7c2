//! Health checking of real servers, with keepalived's semantics.
//!
//! **What.** keepalived's checkers (TCP_CHECK, HTTP_GET, SSL_GET,
//! MISC_CHECK, DNS_CHECK, UDP_CHECK, PING_CHECK) run against every real
//! server that has them; a server whose checkers fail is removed from its
//! service, or kept at weight 0 with `inhibit_on_failure`, and restored
//! when they pass again; quorum, hysteresis, sorry server and notify
//! scripts behave as in keepalived.
//!
//! **Why here.** keepalived's checkers program the kernel's IPVS over
//! netlink and cannot drive vsd, so vsd checks natively. Checks are plain
//! kernel sockets opened by vsd's process: with a kernel twin (the
//! exception path) they leave from the director's own addresses through
//! the data plane, exactly like keepalived's would.
//!
//! **Parts.**
//! - [`spec`]: the settings (shared by the TOML and keepalived.conf front
//!   ends).
//! - [`engine`]: one thread that runs every checker asynchronously and
//!   reports [`CheckEvent`]s (checker up/down transitions and
//!   `misc_dynamic` weights); its per-checker state machine applies
//!   `retry`, `delay_before_retry`, `delay_loop`, `warmup` and `alpha`.
//! - [`check`]: one attempt of each checker type.
//! - the pool: per service, turns checker states into server weights,
//!   removals, the sorry server, quorum transitions and notify scripts.
//!
//! **Failure modes.** A checker that cannot even start (bad address,
//! missing program) counts as failing, with the reason logged; a slow
//! server costs one socket and a timer, never the control thread's time;
//! a reload keeps every unchanged checker's state so nothing flaps.

pub mod check;
pub mod command;
pub mod engine;
pub mod pool;
pub mod spec;

use std::time::Duration;

pub use engine::{Engine, EngineStats};
pub use spec::CheckKey;

/// The outcome of one check attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The attempt passed.
    pub ok: bool,
    /// Why it failed, in a few words for logs and `vsadm --checks`:
    /// "timeout after 3s", "connection refused", "status 503",
    /// "digest mismatch", "exit status 1"... Empty when it passed.
    pub reason: String,
    /// From the start of the attempt to its result.
    pub latency: Duration,
    /// `misc_dynamic`: the weight the exit status asks for.
    pub dynamic_weight: Option<u32>,
}

/// A checker changed state, or (`misc_dynamic`) asked for another weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvent {
    pub key: CheckKey,
    /// The checker's state after this event.
    pub up: bool,
    /// The result that caused it.
    pub result: CheckResult,
}

/// What `vsadm --checks` shows of one checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStatus {
    pub key: CheckKey,
    /// keepalived's block name (`HTTP_GET`...).
    pub kind: &'static str,
    /// Where it connects.
    pub target: String,
    pub up: bool,
    /// The last attempt, if one finished.
    pub last: Option<CheckResult>,
    /// Attempts finished, and how many failed.
    pub checks: u64,
    pub failures: u64,
    /// Up/down transitions.
    pub transitions: u64,
    /// Seconds since the last transition (or since the checker started).
    pub since_change: Duration,
}

/// What the control plane needs from a checker engine: the real one runs
/// sockets and programs on its own thread; tests use a scripted fake.
pub trait CheckRunner {
    /// Run exactly these checkers. A key already running with an equal
    /// target keeps its state and schedule; a key whose target changed
    /// keeps its up/down state until its next result (no flap on reload);
    /// a new key starts up, or down when `timing.starts_down` (alpha).
    fn set_targets(&mut self, targets: Vec<spec::CheckTarget>);
    /// Move the events that happened since the last call into `out`.
    fn drain_events(&mut self, out: &mut Vec<CheckEvent>);
    /// Every running checker, for `vsadm --checks` and metrics.
    fn status(&self) -> Vec<CheckStatus>;
    /// A descriptor that polls readable while events wait to be drained
    /// (the control loop sleeps in poll(2)).
    fn wake_fd(&self) -> Option<std::os::fd::RawFd>;
}
