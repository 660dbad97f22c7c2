//! IPVS's connection-table defences: `drop_entry` and `secure_tcp`, and
//! the other per-director TCP knob the workers read, `sloppy_tcp`.
//!
//! What: the kernel (`ip_vs_ctl.c`, `update_defense_level`, run every
//! second) has two knobs against tables filled by a SYN flood, each an
//! integer 0..=3: 0 never, 1 automatic (off now), 2 automatic (on now), 3
//! always. The kernel's "pressure" is low memory; vsd's tables are
//! preallocated, so here the pressure is the fill of a worker's own
//! connection table: at least `pressure_percent` of its entries in use.
//! Each worker decides for its own table, once a second
//! ([`DefenseState::check`]).
//!
//! - `drop_entry` on: every second, probe 1/32 of the table at random slots
//!   (spread over that second's ticks, at most the tick budget per tick, so
//!   that a large table's pass never stalls the worker for milliseconds)
//!   and drop half-open TCP entries (SYN_RECV, SYNACK) outright, plus, at
//!   the kernel's thinning rates, ESTABLISHED TCP and UDP entries that have
//!   lived 60 s or more and have seen at most 8 client packets
//!   (`ip_vs_random_dropentry`, `todrop_entry`). Entries controlling
//!   connections (templates with users) are never dropped.
//! - `secure_tcp` on: the kernel's secure transition tables (half-open
//!   connections stay out of ESTABLISHED until the server's side is seen),
//!   and half-open states (SYN_RECV, SYNACK) time out after
//!   [`SECURE_HALFOPEN_TIMEOUT_S`] (10 s, the SYN_RECV value of the
//!   kernel's old `vs_timeout_table_dos`) unless their configured timeout
//!   is shorter. The plain SYN_RECV timeout (60 s) is settable too
//!   (`vsadm --set-defense synrecv=SECS`).
//!
//! Why: a random-source SYN flood creates one SYN_RECV entry per SYN; with a
//! 60 s timeout the table stays full for a minute after the flood and every
//! new client is refused (`table_full`). With these knobs entries are
//! recycled within seconds. (The SYN proxy is the defence that keeps the
//! table empty in the first place.)
//!
//! `sloppy_tcp` (kernel sysctl `net.ipv4.vs.sloppy_tcp`, off by default):
//! a TCP packet without the SYN flag (but not a RST) that matches no
//! connection may create one, scheduled as if it were new (kernel
//! `tcp_conn_schedule`); its state then follows the packet from NONE as in
//! the kernel (an ACK makes it ESTABLISHED). With `mh` (the same table on
//! every director) a backup director that takes over mid-connection picks
//! the same real server, so DR and TUN connections survive a failover
//! without connection sync. SYN-proxied services keep their own rule (an
//! ACK without a valid cookie opens nothing). vsd has no SCTP, so there is
//! no `sloppy_sctp`.
//!
//! Failure modes: a burst faster than the drops still fills the table and
//! new connections are then dropped and counted as `table_full`, as before;
//! drop_entry may drop a legitimate connection that is still half-open
//! (its client retransmits its SYN and is scheduled again).

/// How often a worker re-evaluates its defence level (kernel
/// `DEFENSE_TIMER_PERIOD`, 1 s).
pub const DEFENSE_PERIOD_MS: u64 = 1000;
/// Half-open timeout while secure_tcp is on, seconds.
pub const SECURE_HALFOPEN_TIMEOUT_S: u32 = 10;
/// Default table fill (percent) that counts as pressure.
pub const DEFAULT_PRESSURE_PERCENT: u8 = 90;
/// Fraction of the table probed per period by drop_entry: 1/2^5.
pub const DROP_PROBE_SHIFT: u32 = 5;
/// Highest mode value.
pub const MAX_MODE: u8 = 3;

/// The operator's settings (same on every worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefenseConfig {
    /// `drop_entry` mode, 0..=3.
    pub drop_entry: u8,
    /// `secure_tcp` mode, 0..=3.
    pub secure_tcp: u8,
    /// Table fill, percent (1..=100), at which modes 1 and 2 switch on.
    pub pressure_percent: u8,
    /// `sloppy_tcp`: a non-SYN TCP packet may create a connection.
    pub sloppy_tcp: bool,
}

impl Default for DefenseConfig {
    /// Everything off, as in the kernel.
    fn default() -> Self {
        DefenseConfig {
            drop_entry: 0,
            secure_tcp: 0,
            pressure_percent: DEFAULT_PRESSURE_PERCENT,
            sloppy_tcp: false,
        }
    }
}

/// Why a defence setting was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefenseError {
    /// A mode outside 0..=3.
    BadMode(&'static str, u64),
    /// A pressure outside 1..=100.
    BadPressure(u64),
}

impl std::fmt::Display for DefenseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefenseError::BadMode(name, v) => {
                write!(f, "{name} {v} out of range: must be 0..={MAX_MODE}")
            }
            DefenseError::BadPressure(v) => {
                write!(f, "pressure {v} out of range: must be 1..=100 (percent)")
            }
        }
    }
}

impl std::error::Error for DefenseError {}

impl DefenseConfig {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), DefenseError> {
        if self.drop_entry > MAX_MODE {
            return Err(DefenseError::BadMode(
                "drop_entry",
                u64::from(self.drop_entry),
            ));
        }
        if self.secure_tcp > MAX_MODE {
            return Err(DefenseError::BadMode(
                "secure_tcp",
                u64::from(self.secure_tcp),
            ));
        }
        if !(1..=100).contains(&self.pressure_percent) {
            return Err(DefenseError::BadPressure(u64::from(self.pressure_percent)));
        }
        Ok(())
    }
}

/// Whether a mode is on, given the pressure (kernel: 1 and 2 follow the
/// pressure, 3 is always on).
pub fn mode_on(mode: u8, pressure: bool) -> bool {
    match mode {
        0 => false,
        1 | 2 => pressure,
        _ => true,
    }
}

/// What a worker does this period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DefenseLevel {
    /// The table is at or above the pressure threshold.
    pub pressure: bool,
    /// Use the secure_tcp tables and half-open timeouts.
    pub secure_tcp: bool,
    /// Run a random drop pass now.
    pub drop_entry: bool,
}

/// One worker's defence state.
#[derive(Debug, Clone)]
pub struct DefenseState {
    cfg: DefenseConfig,
    level: DefenseLevel,
    next_check_ms: u64,
    rng: u64,
    /// Kernel `todrop_counter`: per client-packet count 0..=8, how many
    /// more candidates to skip before one is dropped.
    pub(crate) todrop_counter: [u8; 9],
    /// drop_entry probes of this period not made yet: a period's probes
    /// (1/32 of the table, 32K for a 1M table, each a likely cache miss)
    /// are spread over the ticks so that no single tick stalls the worker.
    pending_probes: usize,
}

impl DefenseState {
    /// A state with everything off; `seed` varies the random probes.
    pub fn new(seed: u64) -> Self {
        DefenseState {
            cfg: DefenseConfig::default(),
            level: DefenseLevel::default(),
            next_check_ms: 0,
            rng: seed | 1,
            todrop_counter: [0; 9],
            pending_probes: 0,
        }
    }

    /// Take new settings; they apply at the next [`DefenseState::check`],
    /// which is made due now.
    pub fn set_config(&mut self, cfg: DefenseConfig) {
        if cfg != self.cfg {
            self.cfg = cfg;
            self.next_check_ms = 0;
        }
    }

    /// The settings.
    pub fn config(&self) -> &DefenseConfig {
        &self.cfg
    }

    /// The level decided at the last check.
    pub fn level(&self) -> DefenseLevel {
        self.level
    }

    /// Once per [`DEFENSE_PERIOD_MS`]: the level for a table holding `len`
    /// of `capacity` entries. `None` when not due yet.
    pub fn check(&mut self, now_ms: u64, len: usize, capacity: usize) -> Option<DefenseLevel> {
        if now_ms < self.next_check_ms {
            return None;
        }
        self.next_check_ms = now_ms + DEFENSE_PERIOD_MS;
        let threshold = (capacity as u128 * u128::from(self.cfg.pressure_percent)).div_ceil(100);
        let pressure = len as u128 >= threshold.max(1);
        self.level = DefenseLevel {
            pressure,
            secure_tcp: mode_on(self.cfg.secure_tcp, pressure),
            drop_entry: mode_on(self.cfg.drop_entry, pressure),
        };
        Some(self.level)
    }

    /// Start a drop_entry pass of `probes` random probes (replacing what
    /// is left of the previous one).
    pub fn plan_probes(&mut self, probes: usize) {
        self.pending_probes = probes;
    }

    /// Up to `budget` probes of the current pass, for this tick.
    pub fn take_probes(&mut self, budget: usize) -> usize {
        let n = self.pending_probes.min(budget);
        self.pending_probes -= n;
        n
    }

    /// A random number below `n` (xorshift64*; `n` > 0).
    pub fn random_below(&mut self, n: usize) -> usize {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((u128::from(r) * n as u128) >> 64) as usize
    }

    /// Kernel `todrop_entry` for an entry that has seen `in_pkts` client
    /// packets (the 60 s age rule is the caller's): entries with 1..=8
    /// packets are dropped one candidate in `in_pkts`; 0 or more than 8,
    /// never.
    pub fn todrop(&mut self, in_pkts: u32) -> bool {
        let Ok(i) = usize::try_from(in_pkts) else {
            return false;
        };
        let Some(counter) = self.todrop_counter.get_mut(i) else {
            return false;
        };
        if i == 0 {
            return false;
        }
        if *counter > 1 {
            *counter -= 1;
            return false;
        }
        *counter = i as u8;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(drop_entry: u8, secure_tcp: u8, pressure_percent: u8) -> DefenseState {
        let mut s = DefenseState::new(7);
        s.set_config(DefenseConfig {
            drop_entry,
            secure_tcp,
            pressure_percent,
            sloppy_tcp: false,
        });
        s
    }

    #[test]
    fn modes_follow_the_kernel() {
        for (mode, idle, pressed) in [(0, false, false), (1, false, true), (2, false, true)] {
            assert_eq!(mode_on(mode, false), idle, "mode {mode}");
            assert_eq!(mode_on(mode, true), pressed, "mode {mode}");
        }
        assert!(mode_on(3, false) && mode_on(3, true));
    }

    #[test]
    fn pressure_is_table_fill_checked_once_a_second() {
        let mut s = state(1, 1, 90);
        let l = s.check(0, 899, 1000).unwrap();
        assert_eq!(l, DefenseLevel::default());
        assert_eq!(s.check(999, 1000, 1000), None, "not due before 1 s");
        let l = s.check(1000, 900, 1000).unwrap();
        assert!(l.pressure && l.secure_tcp && l.drop_entry);
        let l = s.check(2000, 10, 1000).unwrap();
        assert!(!l.pressure && !l.secure_tcp && !l.drop_entry, "back off");
        // mode 3: on without pressure; 0: off under pressure.
        let mut s = state(3, 0, 50);
        let l = s.check(0, 1000, 1000).unwrap();
        assert!(l.pressure && l.drop_entry && !l.secure_tcp);
        let l = s.check(1000, 0, 1000).unwrap();
        assert!(!l.pressure && l.drop_entry);
        // a new config is looked at at once
        s.set_config(DefenseConfig {
            drop_entry: 0,
            secure_tcp: 3,
            pressure_percent: 50,
            sloppy_tcp: false,
        });
        let l = s.check(1001, 0, 1000).unwrap();
        assert!(!l.drop_entry && l.secure_tcp);
    }

    #[test]
    fn validation_names_the_bad_value() {
        let mut c = DefenseConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.drop_entry = 4;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "drop_entry 4 out of range: must be 0..=3"
        );
        c.drop_entry = 0;
        c.secure_tcp = 9;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("secure_tcp 9"));
        c.secure_tcp = 0;
        c.pressure_percent = 0;
        assert!(c.validate().unwrap_err().to_string().contains("1..=100"));
    }

    #[test]
    fn todrop_thins_like_the_kernel() {
        let mut s = DefenseState::new(1);
        assert!(!(0..20).any(|_| s.todrop(0)), "never with no packets");
        assert!(!(0..20).any(|_| s.todrop(9)), "never above 8 packets");
        let hits: Vec<bool> = (0..9).map(|_| s.todrop(3)).collect();
        assert_eq!(hits.iter().filter(|h| **h).count(), 3, "one in three");
        assert!((0..5).all(|_| s.todrop(1)), "every one with one packet");
    }

    #[test]
    fn random_below_stays_in_range_and_spreads() {
        let mut s = DefenseState::new(42);
        let mut seen = [0u32; 8];
        for _ in 0..8000 {
            let r = s.random_below(8);
            seen[r] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
