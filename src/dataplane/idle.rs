//! Adaptive idle polling: a worker that keeps finding nothing to do
//! sleeps, with a growing pause, and goes back to busy polling at the
//! first packet.
//!
//! What: with `[lcores] idle = "sleep"`, after [`EMPTY_TURNS`] loop turns
//! in a row without work the worker sleeps [`FIRST_SLEEP_US`], then twice
//! as long each further idle turn up to [`MAX_SLEEP_US`]; one turn with
//! work resets it. Each sleep is counted (`idle_sleeps`, `idle_sleep_us`).
//! With `idle = "poll"` (the default, for appliances that give vsd its
//! CPUs) nothing changes.
//!
//! Why: a busy-polling worker owns its CPU. On a small machine shared with
//! keepalived, servers or a second director, idle workers must give the
//! CPU back. Rx interrupts (l3fwd-power) would wake faster, but not every
//! PMD has them (net_tap, memif, pcap...); a bounded sleep works with all.
//!
//! Cost and failure modes: under load the worker never sleeps (every turn
//! has work), so throughput at full load is unchanged. After an idle
//! period the first packet waits up to [`MAX_SLEEP_US`] plus the kernel's
//! timer slack, and a burst arriving meanwhile must fit in the rx ring
//! (rx_desc): at 500 µs and 1024 descriptors that is ~2 Mpps before
//! `rx_missed` — the price of not owning the CPU. The sleep is not a
//! stall (the stall counter skips it).

use crate::control::config::IdleMode;

/// Empty loop turns before the first sleep.
pub const EMPTY_TURNS: u32 = 256;
/// First pause, µs.
pub const FIRST_SLEEP_US: u64 = 10;
/// Longest pause, µs.
pub const MAX_SLEEP_US: u64 = 500;

/// A worker's idle state.
#[derive(Debug, Clone)]
pub struct Idle {
    mode: IdleMode,
    empty: u32,
    next_sleep_us: u64,
}

impl Idle {
    pub fn new(mode: IdleMode) -> Self {
        Idle {
            mode,
            empty: 0,
            next_sleep_us: FIRST_SLEEP_US,
        }
    }

    /// After a loop turn: how long to sleep now (µs), if at all.
    #[inline]
    pub fn after_turn(&mut self, worked: bool) -> Option<u64> {
        if self.mode == IdleMode::Poll {
            return None;
        }
        if worked {
            self.empty = 0;
            self.next_sleep_us = FIRST_SLEEP_US;
            return None;
        }
        if self.empty < EMPTY_TURNS {
            self.empty += 1;
            return None;
        }
        let us = self.next_sleep_us;
        self.next_sleep_us = (us * 2).min(MAX_SLEEP_US);
        Some(us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_mode_never_sleeps() {
        let mut i = Idle::new(IdleMode::Poll);
        assert!((0..10_000).all(|_| i.after_turn(false).is_none()));
    }

    #[test]
    fn sleeps_after_empty_turns_with_backoff_and_resets_on_work() {
        let mut i = Idle::new(IdleMode::Sleep);
        for _ in 0..EMPTY_TURNS {
            assert_eq!(i.after_turn(false), None);
        }
        assert_eq!(i.after_turn(false), Some(FIRST_SLEEP_US));
        assert_eq!(i.after_turn(false), Some(FIRST_SLEEP_US * 2));
        let mut last = 0;
        for _ in 0..20 {
            last = i.after_turn(false).unwrap_or(0);
        }
        assert_eq!(last, MAX_SLEEP_US);
        assert_eq!(i.after_turn(true), None);
        assert_eq!(i.after_turn(false), None);
        for _ in 1..EMPTY_TURNS {
            i.after_turn(false);
        }
        assert_eq!(i.after_turn(false), Some(FIRST_SLEEP_US));
    }
}
