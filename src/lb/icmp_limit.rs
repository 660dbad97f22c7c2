//! Rate limits on the ICMP errors vsd sends, as Linux limits its own.
//!
//! What: before an ICMP error leaves, two token buckets must agree, as in
//! Linux since 6.12 ("icmp: change the order of rate limits"): the global
//! bucket must hold a credit, then the destination's bucket must allow,
//! and only then is the global credit taken (a message refused per
//! destination costs the global budget nothing, which closed a side
//! channel):
//! - a global bucket, `icmp_msgs_per_sec` (1000) refilled at most every
//!   20 ms, holding at most `icmp_msgs_burst` (50), one credit a message;
//! - a bucket per destination (`inet_peer_xrlim_allow` with
//!   `icmp_ratelimit` = 1000 ms): one message costs 1000 ms of tokens,
//!   tokens accrue with time up to 6 × 1000 ms, and a destination not seen
//!   before starts full (a burst of 6, then one a second).
//!
//! Types follow `icmp_ratemask` (0x1818: destination unreachable, source
//! quench, time exceeded, parameter problem), except that fragmentation
//! needed is never limited ("Don't limit PMTU discovery"): a sender must
//! learn the path MTU however many packets it has in flight.
//!
//! Why: every TTL-expired request made vsd send a time exceeded at once,
//! so spoofed sources could have it send any number of errors to a victim.
//!
//! Per worker, allocation-free: the global rate and burst are split
//! evenly over the workers (shares rounded up), and destinations live in
//! a fixed 4-way set-associative table; a destination that finds its set
//! full takes the entry used least recently (and starts full, as a new
//! inet_peer does). A suppressed error is counted by the caller
//! ([`Verdict`] says which bucket refused it). The kernel randomises the
//! global credit taken (0–2) against side channels on port-unreachable
//! errors; vsd sends none of those, so it takes exactly one.

use std::net::Ipv4Addr;

/// Linux's defaults (net.ipv4.icmp_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpLimitConfig {
    /// `icmp_ratelimit`: cost of one message to one destination, in ms
    /// (0: no per-destination limit).
    pub ratelimit_ms: u32,
    /// `icmp_msgs_per_sec` (0: no global limit).
    pub msgs_per_sec: u32,
    /// `icmp_msgs_burst`.
    pub msgs_burst: u32,
}

impl Default for IcmpLimitConfig {
    fn default() -> Self {
        IcmpLimitConfig {
            ratelimit_ms: 1000,
            msgs_per_sec: 1000,
            msgs_burst: 50,
        }
    }
}

/// `XRLIM_BURST_FACTOR`: a destination saves up at most this many messages.
const BURST_FACTOR: u64 = 6;
/// The global bucket refills only after this many ms (HZ / 50).
const GLOBAL_REFILL_MS: u64 = 20;
/// Ways per set of the destination table.
const WAYS: usize = 4;
/// Sets (a power of two): 1024 destinations per worker.
const SETS: usize = 256;

/// What to do with one ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// The global bucket is empty (Linux: RateLimitGlobal).
    LimitedGlobal,
    /// This destination's bucket is empty (Linux: RateLimitHost).
    LimitedHost,
}

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// 0: free (0.0.0.0 never gets an error).
    addr: u32,
    tokens_ms: u64,
    last_ms: u64,
}

/// One worker's ICMP error limiter.
#[derive(Debug, Clone)]
pub struct IcmpLimiter {
    cfg: IcmpLimitConfig,
    rate: u64,
    burst: u64,
    credit: u64,
    stamp_ms: u64,
    peers: Vec<Peer>,
}

impl IcmpLimiter {
    /// A limiter for one of `workers` workers, sharing `cfg`'s global
    /// budget with the others.
    pub fn new(cfg: IcmpLimitConfig, workers: u16, now_ms: u64) -> IcmpLimiter {
        let n = u64::from(workers.max(1));
        let burst = u64::from(cfg.msgs_burst).div_ceil(n).max(1);
        IcmpLimiter {
            cfg,
            rate: u64::from(cfg.msgs_per_sec).div_ceil(n),
            burst,
            credit: burst,
            stamp_ms: now_ms,
            peers: vec![Peer::default(); SETS * WAYS],
        }
    }

    /// Whether an ICMP error of `msg_type`/`code` to `dst` may leave now
    /// (and take its tokens if so).
    pub fn allow(&mut self, msg_type: u8, code: u8, dst: Ipv4Addr, now_ms: u64) -> Verdict {
        if !limited_type(msg_type, code) {
            return Verdict::Send;
        }
        if !self.global_has_credit(now_ms) {
            return Verdict::LimitedGlobal;
        }
        if !self.peer_allow(u32::from(dst), now_ms) {
            return Verdict::LimitedHost;
        }
        if self.cfg.msgs_per_sec != 0 {
            self.credit -= 1;
        }
        Verdict::Send
    }

    /// Refill the global bucket; whether it holds a credit.
    fn global_has_credit(&mut self, now_ms: u64) -> bool {
        if self.cfg.msgs_per_sec == 0 {
            return true;
        }
        let delta = now_ms.saturating_sub(self.stamp_ms).min(1000);
        if delta >= GLOBAL_REFILL_MS {
            let incr = self.rate * delta / 1000;
            if incr > 0 {
                self.stamp_ms = now_ms;
                self.credit = (self.credit + incr).min(self.burst);
            }
        }
        self.credit > 0
    }

    fn peer_allow(&mut self, addr: u32, now_ms: u64) -> bool {
        let timeout = u64::from(self.cfg.ratelimit_ms);
        if timeout == 0 {
            return true;
        }
        let set = (addr.wrapping_mul(0x9E37_79B9) >> 24) as usize % SETS;
        let ways = &mut self.peers[set * WAYS..(set + 1) * WAYS];
        let i = match ways.iter().position(|p| p.addr == addr) {
            Some(i) => i,
            None => {
                // a free way, else the one used least recently; a new
                // destination starts with a full bucket
                let i = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| (p.addr != 0, p.last_ms))
                    .map_or(0, |(i, _)| i);
                ways[i] = Peer {
                    addr,
                    tokens_ms: BURST_FACTOR * timeout,
                    last_ms: now_ms,
                };
                i
            }
        };
        let p = &mut ways[i];
        let tokens = (p.tokens_ms + now_ms.saturating_sub(p.last_ms)).min(BURST_FACTOR * timeout);
        p.last_ms = now_ms;
        if tokens >= timeout {
            p.tokens_ms = tokens - timeout;
            true
        } else {
            p.tokens_ms = tokens;
            false
        }
    }
}

/// `icmp_ratemask` 0x1818, with fragmentation needed exempt.
fn limited_type(msg_type: u8, code: u8) -> bool {
    use crate::wire::icmp::{CODE_FRAG_NEEDED, TYPE_DEST_UNREACHABLE};
    if msg_type == TYPE_DEST_UNREACHABLE && code == CODE_FRAG_NEEDED {
        return false;
    }
    msg_type < 32 && (1u32 << msg_type) & 0x1818 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::icmp::{CODE_FRAG_NEEDED, TYPE_DEST_UNREACHABLE, TYPE_TIME_EXCEEDED};

    const TE: u8 = TYPE_TIME_EXCEEDED;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xC612_0000 | n)
    }

    fn sent(l: &mut IcmpLimiter, dst: Ipv4Addr, from_ms: u64, to_ms: u64, every_ms: u64) -> u64 {
        (from_ms..to_ms)
            .step_by(every_ms as usize)
            .filter(|t| l.allow(TE, 0, dst, *t) == Verdict::Send)
            .count() as u64
    }

    #[test]
    fn one_destination_gets_a_burst_of_6_then_one_a_second() {
        let mut l = IcmpLimiter::new(IcmpLimitConfig::default(), 1, 0);
        let d = ip(1);
        for _ in 0..6 {
            assert_eq!(l.allow(TE, 0, d, 0), Verdict::Send);
        }
        assert_eq!(l.allow(TE, 0, d, 0), Verdict::LimitedHost);
        assert_eq!(l.allow(TE, 0, d, 999), Verdict::LimitedHost);
        assert_eq!(l.allow(TE, 0, d, 1999), Verdict::Send);
        // 100 per second offered for 10 s: one a second gets through
        assert_eq!(sent(&mut l, d, 2000, 12_000, 10), 10);
        // after a quiet minute the full burst is back, not more
        assert_eq!(sent(&mut l, d, 72_000, 72_010, 1), 6);
        // another destination has its own bucket
        assert_eq!(l.allow(TE, 0, ip(2), 72_010), Verdict::Send);
    }

    #[test]
    fn the_global_bucket_holds_50_and_refills_1000_a_second() {
        let mut l = IcmpLimiter::new(IcmpLimitConfig::default(), 1, 0);
        // 60 destinations at once: 50 sent, then the global limit
        let v: Vec<Verdict> = (1..=60).map(|n| l.allow(TE, 0, ip(n), 0)).collect();
        assert_eq!(v.iter().filter(|v| **v == Verdict::Send).count(), 50);
        assert_eq!(v[59], Verdict::LimitedGlobal);
        // nothing refills before 20 ms
        assert_eq!(l.allow(TE, 0, ip(100), 19), Verdict::LimitedGlobal);
        // 20 ms bring 20 credits
        let n = (200..240)
            .filter(|n| l.allow(TE, 0, ip(*n), 20) == Verdict::Send)
            .count();
        assert_eq!(n, 20);
        // a spoofed flood from ever new sources: at most ~1000 a second
        let mut sent = 0;
        let mut src = 1000;
        for t in (1000..11_000).step_by(1) {
            for _ in 0..10 {
                src += 1;
                if l.allow(TE, 0, ip(src), t) == Verdict::Send {
                    sent += 1;
                }
            }
        }
        assert!((9_900..=10_100).contains(&sent), "{sent} in 10 s");
    }

    #[test]
    fn the_global_budget_is_shared_over_workers() {
        let mut l = IcmpLimiter::new(IcmpLimitConfig::default(), 4, 0);
        let n = (1..=60)
            .filter(|n| l.allow(TE, 0, ip(*n), 0) == Verdict::Send)
            .count();
        assert_eq!(n, 13, "ceil(50 / 4)");
    }

    #[test]
    fn only_ratemask_types_are_limited_and_frag_needed_never() {
        let mut l = IcmpLimiter::new(IcmpLimitConfig::default(), 1, 0);
        let d = ip(1);
        for _ in 0..100 {
            assert_eq!(
                l.allow(TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED, d, 0),
                Verdict::Send
            );
            assert_eq!(l.allow(0, 0, d, 0), Verdict::Send, "echo reply");
        }
        assert_eq!(sent(&mut l, d, 0, 10, 1), 6);
        assert_eq!(
            l.allow(TYPE_DEST_UNREACHABLE, 3, d, 10),
            Verdict::LimitedHost
        );
        assert_eq!(l.allow(12, 0, d, 10), Verdict::LimitedHost);
    }

    #[test]
    fn zero_settings_turn_the_limits_off() {
        let cfg = IcmpLimitConfig {
            ratelimit_ms: 0,
            msgs_per_sec: 0,
            msgs_burst: 0,
        };
        let mut l = IcmpLimiter::new(cfg, 1, 0);
        assert_eq!(sent(&mut l, ip(1), 0, 1000, 1), 1000);
    }

    #[test]
    fn a_full_set_gives_way_to_a_newcomer() {
        let mut l = IcmpLimiter::new(IcmpLimitConfig::default(), 1, 0);
        // many destinations over time: the table never refuses a newcomer
        for n in 1..5000u32 {
            let t = u64::from(n) * 2;
            assert_ne!(l.allow(TE, 0, ip(n), t), Verdict::LimitedHost, "{n}");
        }
    }
}
