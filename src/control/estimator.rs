//! IPVS's rate estimator (kernel `ip_vs_est.c`) over cumulative counters.
//!
//! Every 2 seconds the kernel takes the difference of each counter since the
//! previous sample and folds it into an exponentially weighted average with
//! weight 1/4: `avg += (rate - avg) >> 2`. The averages are fixed point:
//! connections and packets per second scaled by 2^10, bytes per second by
//! 2^5. A 2-second difference `d` therefore enters as `d << 9` (`d / 2 * 2^10`)
//! for cps/pps and `d << 4` for bps, and reading rounds:
//! `(avg + 0x1FF) >> 10`, `(avg + 0xF) >> 5`.
//!
//! vsd samples from its control loop, which may be late: a sample is taken
//! only once at least [`ESTIMATOR_INTERVAL_MS`] have passed, and the
//! difference is scaled by the time that really passed (at exactly 2 s this
//! is the kernel's arithmetic, bit for bit). A counter that went backwards
//! (reset) counts as no traffic.

/// Sampling period of the estimator, as the kernel's (2 s).
pub const ESTIMATOR_INTERVAL_MS: u64 = 2000;

/// Cumulative IPVS counters of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub inpkts: u64,
    /// Packets server → client.
    pub outpkts: u64,
    /// Bytes client → server.
    pub inbytes: u64,
    /// Bytes server → client.
    pub outbytes: u64,
}

impl Counters {
    /// Field-wise `self - base`, 0 where `base` is larger (counters reset).
    pub fn since(&self, base: &Counters) -> Counters {
        Counters {
            conns: self.conns.saturating_sub(base.conns),
            inpkts: self.inpkts.saturating_sub(base.inpkts),
            outpkts: self.outpkts.saturating_sub(base.outpkts),
            inbytes: self.inbytes.saturating_sub(base.inbytes),
            outbytes: self.outbytes.saturating_sub(base.outbytes),
        }
    }

    /// Field-wise sum (wrapping, as cumulative counters do).
    pub fn plus(&self, o: &Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_add(o.conns),
            inpkts: self.inpkts.wrapping_add(o.inpkts),
            outpkts: self.outpkts.wrapping_add(o.outpkts),
            inbytes: self.inbytes.wrapping_add(o.inbytes),
            outbytes: self.outbytes.wrapping_add(o.outbytes),
        }
    }
}

/// Estimated rates (per second), as `ipvsadm --rate` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second in.
    pub inpps: u64,
    /// Packets per second out.
    pub outpps: u64,
    /// Bytes per second in.
    pub inbps: u64,
    /// Bytes per second out.
    pub outbps: u64,
}

/// Fixed-point shift of the cps/pps averages.
const PKT_SHIFT: u32 = 10;
/// Fixed-point shift of the bps averages.
const BYTE_SHIFT: u32 = 5;

/// One estimator (the kernel's `struct ip_vs_estimator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateEstimator {
    last: Counters,
    last_ms: u64,
    /// Scaled averages: cps, inpps, outpps (<< 10), inbps, outbps (<< 5).
    avg: [i64; 5],
}

/// `delta` events over `elapsed_ms`, per second, scaled by `2^shift`.
fn scaled_rate(delta: u64, elapsed_ms: u64, shift: u32) -> i64 {
    let r = (u128::from(delta) << shift) * 1000 / u128::from(elapsed_ms.max(1));
    // Keep `rate - avg` far from overflow.
    r.min((i64::MAX / 2) as u128) as i64
}

impl RateEstimator {
    /// A new estimator whose rates are 0 and whose next sample counts from
    /// `current` (the kernel's `ip_vs_zero_estimator`).
    pub fn new(now_ms: u64, current: &Counters) -> Self {
        RateEstimator {
            last: *current,
            last_ms: now_ms,
            avg: [0; 5],
        }
    }

    /// Reset the rates to 0 and count from `current` on (`ipvsadm -Z`).
    pub fn zero(&mut self, now_ms: u64, current: &Counters) {
        *self = RateEstimator::new(now_ms, current);
    }

    /// Whether [`Self::sample`] would take a sample at `now_ms` (lets the
    /// caller skip summing counters when it would not).
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_ms) >= ESTIMATOR_INTERVAL_MS
    }

    /// Feed the cumulative counters at `now_ms`. Returns whether a sample
    /// was taken (at least [`ESTIMATOR_INTERVAL_MS`] since the previous one).
    pub fn sample(&mut self, now_ms: u64, current: &Counters) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed < ESTIMATOR_INTERVAL_MS {
            return false;
        }
        let d = current.since(&self.last);
        let deltas = [
            (d.conns, PKT_SHIFT),
            (d.inpkts, PKT_SHIFT),
            (d.outpkts, PKT_SHIFT),
            (d.inbytes, BYTE_SHIFT),
            (d.outbytes, BYTE_SHIFT),
        ];
        for (avg, (delta, shift)) in self.avg.iter_mut().zip(deltas) {
            let rate = scaled_rate(delta, elapsed, shift);
            // Arithmetic shift of a signed difference, as the kernel's s64.
            *avg += (rate - *avg) >> 2;
        }
        self.last = *current;
        self.last_ms = now_ms;
        true
    }

    /// The current rates (the kernel's `ip_vs_read_estimator`).
    pub fn rates(&self) -> Rates {
        let read = |avg: i64, shift: u32| -> u64 {
            let round = (1i64 << (shift - 1)) - 1;
            (avg.max(0) + round).checked_shr(shift).unwrap_or(0) as u64
        };
        Rates {
            cps: read(self.avg[0], PKT_SHIFT),
            inpps: read(self.avg[1], PKT_SHIFT),
            outpps: read(self.avg[2], PKT_SHIFT),
            inbps: read(self.avg[3], BYTE_SHIFT),
            outbps: read(self.avg[4], BYTE_SHIFT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(t_s: u64, cps: u64, pps: u64, bps: u64) -> Counters {
        Counters {
            conns: cps * t_s,
            inpkts: pps * t_s,
            outpkts: pps / 2 * t_s,
            inbytes: bps * t_s,
            outbytes: bps / 4 * t_s,
        }
    }

    #[test]
    fn first_samples_follow_kernel_arithmetic() {
        let mut e = RateEstimator::new(0, &Counters::default());
        // 1000 conn/s, 2000 B/s over 2 s.
        let mut exp_cps = Vec::new();
        let mut exp_bps = Vec::new();
        // Kernel: rate = d << 9 (cps) or d << 4 (bps); avg += (rate - avg) >> 2.
        let (mut a, mut b) = (0i64, 0i64);
        for k in 1..=4u64 {
            a += ((2000i64 << 9) - a) >> 2;
            b += ((4000i64 << 4) - b) >> 2;
            exp_cps.push(((a + 0x1FF) >> 10) as u64);
            exp_bps.push(((b + 0xF) >> 5) as u64);
            let c = Counters {
                conns: 2000 * k,
                inbytes: 4000 * k,
                ..Counters::default()
            };
            assert!(e.sample(2000 * k, &c));
        }
        // Hand-computed: avg 256000, 448000, 592000, 700000 -> 250, 437, 578, 684.
        assert_eq!(exp_cps, vec![250, 437, 578, 684]);
        // bps: avg 16000, 28000, 37000, 43750 -> 500, 875, 1156, 1367.
        assert_eq!(exp_bps, vec![500, 875, 1156, 1367]);
        let mut e2 = RateEstimator::new(0, &Counters::default());
        let mut got = Vec::new();
        for k in 1..=4u64 {
            let c = Counters {
                conns: 2000 * k,
                inbytes: 4000 * k,
                ..Counters::default()
            };
            e2.sample(2000 * k, &c);
            got.push((e2.rates().cps, e2.rates().inbps));
        }
        assert_eq!(got, vec![(250, 500), (437, 875), (578, 1156), (684, 1367)]);
        assert_eq!(e.rates(), e2.rates());
    }

    #[test]
    fn converges_to_steady_rates_within_one_percent() {
        let (cps, pps, bps) = (12_345u64, 987_654u64, 1_250_000_000u64);
        let mut e = RateEstimator::new(0, &Counters::default());
        for k in 1..=40u64 {
            e.sample(k * 2000, &steady(k * 2, cps, pps, bps));
        }
        let r = e.rates();
        let close = |got: u64, want: u64| got.abs_diff(want) * 100 <= want;
        assert!(close(r.cps, cps), "{r:?}");
        assert!(close(r.inpps, pps), "{r:?}");
        assert!(close(r.outpps, pps / 2), "{r:?}");
        assert!(close(r.inbps, bps), "{r:?}");
        assert!(close(r.outbps, bps / 4), "{r:?}");
        // After 17 samples (3/4)^17 < 1%; after 16 it is not yet.
        let mut e = RateEstimator::new(0, &Counters::default());
        for k in 1..=16u64 {
            e.sample(k * 2000, &steady(k * 2, cps, pps, bps));
        }
        assert!(!close(e.rates().cps, cps));
        e.sample(17 * 2000, &steady(34, cps, pps, bps));
        assert!(close(e.rates().cps, cps));
    }

    #[test]
    fn samples_only_every_two_seconds_and_scales_late_ones() {
        let mut e = RateEstimator::new(1000, &Counters::default());
        let c = Counters {
            conns: 100,
            ..Counters::default()
        };
        assert!(!e.due(2999));
        assert!(!e.sample(2999, &c));
        assert!(e.due(3000));
        assert_eq!(e.rates(), Rates::default());
        // 4000 conns over 4 s = 1000/s, same as 2000 over 2 s.
        let mut late = RateEstimator::new(0, &Counters::default());
        let mut on_time = RateEstimator::new(0, &Counters::default());
        late.sample(4000, &steady(4, 1000, 0, 0));
        on_time.sample(2000, &steady(2, 1000, 0, 0));
        assert_eq!(late.rates(), on_time.rates());
        assert_eq!(late.rates().cps, 250);
    }

    #[test]
    fn decays_when_traffic_stops_and_zero_resets() {
        let mut e = RateEstimator::new(0, &Counters::default());
        for k in 1..=30u64 {
            e.sample(k * 2000, &steady(k * 2, 100, 100, 100));
        }
        assert_eq!(e.rates().cps, 100);
        let frozen = steady(60, 100, 100, 100);
        for k in 31..=80u64 {
            e.sample(k * 2000, &frozen);
        }
        assert_eq!(e.rates(), Rates::default());
        e.sample(81 * 2000, &steady(62, 100, 100, 100));
        assert!(e.rates().cps > 0);
        e.zero(81 * 2000, &steady(62, 100, 100, 100));
        assert_eq!(e.rates(), Rates::default());
        // Counters going backwards (reset) count as no traffic.
        e.sample(82 * 2000, &Counters::default());
        assert_eq!(e.rates(), Rates::default());
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let mut e = RateEstimator::new(0, &Counters::default());
        let max = Counters {
            conns: u64::MAX,
            inpkts: u64::MAX,
            outpkts: u64::MAX,
            inbytes: u64::MAX,
            outbytes: u64::MAX,
        };
        e.sample(2000, &max);
        e.sample(4000, &max);
        assert!(e.rates().inbps > 0);
        assert_eq!(max.since(&Counters::default()), max);
        assert_eq!(Counters::default().since(&max), Counters::default());
    }
}
