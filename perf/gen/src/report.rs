//! The run's result: one JSON object on stdout, one human line on stderr.

use crate::check::Failure;
use crate::gen::{Counters, Outcome, Window};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// What was asked for (echoed into the report).
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub mode: &'static str,
    pub proto: &'static str,
    /// Address family, 4 or 6.
    pub family: u8,
    pub flows: u64,
    /// Frame size including the 4-byte FCS, as asked (`--pkt-size`).
    pub pkt_size: usize,
    pub rate_pps: u64,
    pub new_conn_share: f64,
    pub reflect: bool,
    pub sample: u32,
    pub handshake: bool,
}

/// The JSON report of one measurement window. Rates are over the window;
/// `drops` counts what came back until the end of the next window (or the
/// drain); checks and failures are over the whole run so far.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub info: RunInfo,
    /// Window number, from 1, and how many windows the run has.
    pub window: usize,
    pub windows: usize,
    /// Measurement window, seconds.
    pub duration_s: f64,
    /// Settle + prime + warm-up before the window, seconds.
    pub lead_s: f64,
    /// Packets originated in the window.
    pub tx_packets: u64,
    /// Data packets received back through the forwarder in the window
    /// (requests + replies).
    pub rx_packets: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub tx_mpps: f64,
    pub rx_mpps: f64,
    pub rx_requests: u64,
    pub rx_replies: u64,
    pub reflected: u64,
    /// New connections originated in the window.
    pub new_conns: u64,
    /// Connection-opening packets (TCP SYN) the forwarder delivered to the
    /// real servers, per second.
    pub new_conns_per_s: f64,
    /// Window packets that never came back: originated × legs (2 when
    /// reflecting) − received (including the drain), at least 0.
    pub drops: u64,
    pub loss_ratio: f64,
    /// Stamped packets checked (whole run, including warm-up and drain).
    pub checked: u64,
    pub check_failures: u64,
    /// Failures by reason (whole run), all reasons listed.
    pub failures: BTreeMap<&'static str, u64>,
    /// Round trips recorded (stamped packets on their last arrival).
    pub latency_samples: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub reordered: u64,
    pub rx_arp: u64,
    pub arp_replies: u64,
    pub rx_other: u64,
    pub alloc_failures: u64,
    pub reflect_dropped: u64,
    /// In the window: loop turns, sends the ring refused in part (the
    /// forwarder is the bottleneck when this is a large share of turns),
    /// and receive polls that found nothing (the generator waits on the
    /// forwarder).
    pub loop_turns: u64,
    pub tx_ring_full: u64,
    pub rx_empty_polls: u64,
    pub tsc_hz: u64,
    /// Handshake mode only (`--handshake`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<HandshakeReport>,
}

/// The handshake mode's numbers: rates over the window, `*_run` over the
/// whole run (warm-up, every window and the drain).
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    /// Flood SYNs sent, per second.
    pub flood_pps: f64,
    /// SYN-ACKs the flood drew (vsd's cookies with a SYN proxy; the real
    /// servers' through a plain director), per second.
    pub flood_synacks_per_s: f64,
    /// New connections opened (SYNs sent) and completed (the server's
    /// answer to the first data segment reached the client), per second.
    pub legit_opened_per_s: f64,
    pub legit_done_per_s: f64,
    /// Completed / opened over the whole run (the drain lets the last ones
    /// finish): the legitimate success rate.
    pub legit_opened_run: u64,
    pub legit_done_run: u64,
    pub legit_success: Option<f64>,
    /// Established flows whose prime handshake completed, of `flows`.
    pub est_flows_done: u64,
    /// Established-flow traffic delivered: requests at the servers and
    /// replies at the clients, per second.
    pub est_pps: f64,
    /// SYN-ACKs to our clients, answers sent, SYNs at the servers, marked
    /// segments at the servers, segments without data there, RSTs, SYN-ACKs
    /// to unknown addresses: whole run.
    pub synacks_legit_run: u64,
    pub answers_run: u64,
    pub server_syns_run: u64,
    pub marked_requests_run: u64,
    pub bare_requests_run: u64,
    pub rsts_run: u64,
    pub synacks_other_run: u64,
}

impl HandshakeReport {
    fn new(s: &Counters, e: &Counters, f: &Counters, per_s: impl Fn(u64) -> f64) -> Self {
        HandshakeReport {
            flood_pps: per_s(e.tx_flood - s.tx_flood).round(),
            flood_synacks_per_s: per_s(e.rx_synack_flood - s.rx_synack_flood).round(),
            legit_opened_per_s: per_s(e.tx_new - s.tx_new).round(),
            legit_done_per_s: per_s(e.done_new - s.done_new).round(),
            legit_opened_run: f.tx_new,
            legit_done_run: f.done_new,
            legit_success: (f.tx_new > 0).then(|| round(f.done_new as f64 / f.tx_new as f64, 6)),
            est_flows_done: f.done_est,
            est_pps: per_s(e.rx_data() - s.rx_data()).round(),
            synacks_legit_run: f.rx_synack_legit,
            answers_run: f.tx_answer,
            server_syns_run: f.rx_server_syn,
            marked_requests_run: f.rx_marked_request,
            bare_requests_run: f.rx_bare_request,
            rsts_run: f.rx_rst,
            synacks_other_run: f.rx_synack_other,
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

impl Report {
    /// The report of window `index` (from 0) of a finished run.
    pub fn new(
        info: RunInfo,
        out: &Outcome,
        index: usize,
        rtt_ns: &Histogram<u64>,
        hz: u64,
    ) -> Report {
        let empty = Window {
            at_start: Counters::default(),
            at_end: Counters::default(),
            at_settled: Counters::default(),
            cycles: 0,
        };
        let w = out.windows.get(index).unwrap_or(&empty);
        let secs = w.cycles as f64 / hz.max(1) as f64;
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let (s, e, f): (&Counters, &Counters, &Counters) = (&w.at_start, &w.at_end, &out.at_finish);
        let tx = e.tx_orig - s.tx_orig;
        let rx = e.rx_data() - s.rx_data();
        let legs = if info.reflect { 2 } else { 1 };
        // In the handshake mode new connections are counted apart (their
        // packets are not data), so only the established flows' are expected.
        let counted = if info.handshake {
            tx - (e.tx_new - s.tx_new)
        } else {
            tx
        };
        let expected = counted * legs;
        let returned = w.at_settled.rx_data() - s.rx_data();
        let drops = expected.saturating_sub(returned);
        let us = |q: f64| {
            (!rtt_ns.is_empty()).then(|| round(rtt_ns.value_at_quantile(q) as f64 / 1000.0, 2))
        };
        Report {
            window: index + 1,
            windows: out.windows.len(),
            duration_s: round(secs, 3),
            lead_s: round(out.lead_cycles as f64 / hz.max(1) as f64, 3),
            tx_packets: tx,
            rx_packets: rx,
            tx_pps: per_s(tx).round(),
            rx_pps: per_s(rx).round(),
            tx_mpps: round(per_s(tx) / 1e6, 3),
            rx_mpps: round(per_s(rx) / 1e6, 3),
            rx_requests: e.rx_request - s.rx_request,
            rx_replies: e.rx_reply - s.rx_reply,
            reflected: e.tx_reflected - s.tx_reflected,
            new_conns: e.tx_new - s.tx_new,
            new_conns_per_s: per_s(e.rx_new - s.rx_new).round(),
            drops,
            loss_ratio: if expected > 0 {
                round(drops as f64 / expected as f64, 6)
            } else {
                0.0
            },
            checked: f.checked,
            check_failures: f.check_failures(),
            failures: Failure::ALL
                .iter()
                .map(|r| (r.name(), f.failures[r.index()]))
                .collect(),
            latency_samples: rtt_ns.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: (!rtt_ns.is_empty()).then(|| round(rtt_ns.max() as f64 / 1000.0, 2)),
            mean_us: (!rtt_ns.is_empty()).then(|| round(rtt_ns.mean() / 1000.0, 2)),
            reordered: f.reordered,
            rx_arp: f.rx_arp,
            arp_replies: f.tx_arp,
            rx_other: f.rx_other,
            alloc_failures: f.alloc_failures,
            reflect_dropped: f.reflect_dropped,
            loop_turns: e.loop_turns - s.loop_turns,
            tx_ring_full: e.tx_ring_full - s.tx_ring_full,
            rx_empty_polls: e.rx_empty_polls - s.rx_empty_polls,
            tsc_hz: hz,
            handshake: info.handshake.then(|| HandshakeReport::new(s, e, f, per_s)),
            info,
        }
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let lat = match (self.p50_us, self.p99_us, self.p999_us) {
            (Some(a), Some(b), Some(c)) => format!("rtt p50 {a} p99 {b} p99.9 {c} us"),
            _ => "no latency samples".to_string(),
        };
        let hs = match &self.handshake {
            Some(h) => format!(
                "; flood {:.3} Mpps drew {:.3} M SYN-ACKs/s, legit {}/{} done ({}), \
                 {:.0} done/s, established {:.3} Mpps",
                h.flood_pps / 1e6,
                h.flood_synacks_per_s / 1e6,
                h.legit_done_run,
                h.legit_opened_run,
                h.legit_success
                    .map_or("-".to_string(), |r| format!("{:.3}%", r * 100.0)),
                h.legit_done_per_s,
                h.est_pps / 1e6
            ),
            None => String::new(),
        };
        format!(
            "vsd-gen {} {} flows={} size={}{}: tx {:.3} Mpps, rx {:.3} Mpps, drops {} ({:.3}%), \
             checked {} failed {}, {}{}{hs}",
            self.info.mode,
            self.info.proto,
            self.info.flows,
            self.info.pkt_size,
            if self.windows > 1 {
                format!(" [{}/{}]", self.window, self.windows)
            } else {
                String::new()
            },
            self.tx_mpps,
            self.rx_mpps,
            self.drops,
            self.loss_ratio * 100.0,
            self.checked,
            self.check_failures,
            lat,
            if self.new_conns > 0 {
                format!(", {} new conns/s delivered", self.new_conns_per_s)
            } else {
                String::new()
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(reflect: bool) -> RunInfo {
        RunInfo {
            mode: "nat",
            proto: "tcp",
            family: 4,
            flows: 1000,
            pkt_size: 64,
            rate_pps: 0,
            new_conn_share: 0.0,
            reflect,
            sample: 64,
            handshake: false,
        }
    }

    #[test]
    fn rates_drops_and_latency() {
        let start = Counters {
            tx_orig: 100,
            rx_request: 90,
            ..Counters::default()
        };
        let end = Counters {
            tx_orig: 2_000_100,
            rx_request: 1_000_090,
            rx_reply: 990_000,
            tx_reflected: 995_000,
            rx_new: 500,
            ..Counters::default()
        };
        let mut finish = end;
        finish.rx_request += 9_000;
        finish.rx_reply += 500;
        finish.checked = 70_000;
        finish.failures[Failure::DstPort.index()] = 3;
        let out = Outcome {
            windows: vec![Window {
                at_start: start,
                at_end: end,
                at_settled: finish,
                cycles: 2_000_000_000,
            }],
            at_finish: finish,
            lead_cycles: 500_000_000,
        };
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let r = Report::new(info(true), &out, 0, &h, 1_000_000_000);
        assert_eq!((r.window, r.windows), (1, 1));
        assert_eq!(r.duration_s, 2.0);
        assert_eq!(r.lead_s, 0.5);
        assert_eq!(r.tx_packets, 2_000_000);
        assert_eq!(r.rx_packets, 1_990_000);
        assert_eq!(r.tx_mpps, 1.0);
        assert_eq!(r.rx_pps, 995_000.0);
        // 2M originated × 2 legs − (1_990_000 + 9_500 received after start)
        assert_eq!(r.drops, 4_000_000 - 1_999_500);
        assert_eq!(r.new_conns_per_s, 250.0);
        assert_eq!(r.check_failures, 3);
        assert_eq!(r.failures["dst_port"], 3);
        assert_eq!(r.failures.len(), Failure::ALL.len());
        // hdrhistogram keeps 3 significant digits
        let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() <= want * 0.001;
        assert!(near(r.p50_us, 500.0), "{:?}", r.p50_us);
        assert!(near(r.p99_us, 990.0), "{:?}", r.p99_us);
        assert_eq!(r.latency_samples, 1000);
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "mode",
            "flows",
            "pkt_size",
            "tx_pps",
            "rx_pps",
            "tx_mpps",
            "rx_mpps",
            "drops",
            "check_failures",
            "p50_us",
            "p99_us",
            "p999_us",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(r.human().contains("tx 1.000 Mpps, rx 0.995 Mpps"));
    }

    #[test]
    fn empty_window_has_no_rates_or_latency() {
        let out = Outcome {
            windows: Vec::new(),
            at_finish: Counters::default(),
            lead_cycles: 0,
        };
        let h = Histogram::<u64>::new(3).unwrap();
        let r = Report::new(info(false), &out, 0, &h, 0);
        assert_eq!(
            (r.tx_pps, r.rx_pps, r.drops, r.loss_ratio),
            (0.0, 0.0, 0, 0.0)
        );
        assert_eq!(r.p99_us, None);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["p99_us"].is_null());
        assert!(r.human().contains("no latency samples"));
    }
}
