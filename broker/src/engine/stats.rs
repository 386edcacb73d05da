//! What the loop counts about itself, for metrics: how long journal commits (write + fsync) and
//! passes take, and how much waits in the inbox. Recording is a few integer operations on fixed
//! arrays — no allocation, no I/O, no formatting in the pass. A front end asks for a copy with
//! [`Command::Stats`](super::commands::Command::Stats) and turns it into whatever it exposes.
//! The filesystem's operation counts are the `Fs`'s own (relaxed atomics), copied at that moment.

use serde::Serialize;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets, from 50 µs to 5 s. An fsync on a fast disk
/// lands in the first buckets, a loaded pass in the middle, a stalled disk in the last.
pub const LATENCY_BOUNDS_SECS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// A fixed-bucket histogram of durations: `counts[i]` observations at most
/// `LATENCY_BOUNDS_SECS[i]` and above the previous bound, the last slot everything above 5 s.
/// (Not cumulative: an exporter sums them into Prometheus' `le` buckets.)
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    pub counts: [u64; LATENCY_BOUNDS_SECS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS_SECS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BOUNDS_SECS.len());
        self.counts[i] += 1;
        self.sum_secs += secs;
        self.count += 1;
    }

    /// `(upper bound, observations at most that)` in Prometheus' cumulative form, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c;
            out.push((LATENCY_BOUNDS_SECS.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        out
    }
}

/// The loop's own figures since the engine opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Journal commits that wrote records: append plus fsync (the group commit).
    pub commits: Histogram,
    /// Passes of the loop ([`Engine::step`](super::Engine::step)).
    pub passes: Histogram,
    /// Records committed.
    pub records: u64,
    /// Inbox messages handled.
    pub messages: u64,
    /// Messages waiting in `broker/inbox/new/` as last listed (a backlog listed once counts down
    /// as passes take it; arrivals since are counted at the next listing).
    pub inbox_waiting: u64,
    /// What the broker process's filesystem has done on the root since it opened (creations,
    /// renames, removals, fsyncs, bytes written and journaled, reads, listings), counted by the
    /// `Fs` itself ([`runtime_layout::FsCounts`]); `None` on one that does not count.
    pub fs: Option<runtime_layout::FsCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_add_up() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[6], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(h.counts[LATENCY_BOUNDS_SECS.len()], 1, "above every bound");
        let c = h.cumulative();
        assert_eq!(c.first(), Some(&(0.000_05, 1)));
        assert_eq!(c.last().map(|(b, n)| (b.is_infinite(), *n)), Some((true, 3)));
        assert_eq!(h.count, 3);
        assert!((h.sum_secs - 9.003_01).abs() < 1e-9);
    }
}
