//! Synthetic latency logs for this folder's tests, written the way a run writes them (samples to
//! a collector that streams each closed interval to `latency.hlog` and drops it: an hour of log
//! costs a few intervals of memory), and the measurement that would go with them.

use crate::recorder::{
    self, Collector, HlogStream, IntervalOutput, Recording, Sample, UserRecorder,
};
use crate::results::Measurement;
use hdrhistogram::Histogram;
use std::ops::Range;
use std::path::Path;

/// A log of `intervals` 1 s intervals (the first `warmup_s` in the warm-up), each with
/// `per_interval` successes, the `k`-th of interval `i` taking `latency(i, k)` µs.
pub struct SyntheticLog<F: Fn(u64, u64) -> u64> {
    pub intervals: u64,
    pub warmup_s: u64,
    pub per_interval: u64,
    pub latency: F,
}

impl<F: Fn(u64, u64) -> u64> SyntheticLog<F> {
    /// Streams the log to `path`; returns the collector's recording (its overall histograms hold
    /// every measured latency; the intervals went to the file).
    pub fn write(&self, path: &Path) -> Recording {
        let names = vec!["get".to_string()];
        let (collector, sink) = Collector::start_with(
            names,
            std::time::Instant::now(),
            u64::MAX,
            IntervalOutput::Stream(HlogStream {
                path: path.to_path_buf(),
                comment: "synthetic".into(),
                started_at: std::sync::Arc::new(std::sync::OnceLock::new()),
            }),
        )
        .expect("the log is created");
        // Samples, not a worker's closed intervals: the channel then carries a few bytes per
        // request, however far ahead of the collector this loop runs.
        let mut user = UserRecorder::new(sink);
        let spacing_us = 1_000_000 / self.per_interval.max(1);
        for interval in 0..self.intervals {
            for k in 0..self.per_interval {
                let latency_us = (self.latency)(interval, k);
                let completed_offset_us = interval * 1_000_000 + k * spacing_us;
                user.push(Sample::success(
                    0,
                    latency_us,
                    completed_offset_us,
                    interval < self.warmup_s,
                    30,
                ));
            }
        }
        drop(user);
        collector.finish()
    }

    /// The latencies of intervals `range`, merged: what a block or a bucket of them must read.
    pub fn latencies(&self, range: Range<u64>) -> Histogram<u64> {
        let mut merged = recorder::new_histogram();
        for interval in range.start..range.end.min(self.intervals) {
            for k in 0..self.per_interval {
                recorder::record_clamped(&mut merged, (self.latency)(interval, k));
            }
        }
        merged
    }

    /// The measurement `summary.json` would hold for it: its warm-up, the rest measured, every
    /// measured request a success.
    pub fn measurement(&self) -> Measurement {
        measurement(
            self.warmup_s,
            self.intervals - self.warmup_s,
            (self.intervals - self.warmup_s) * self.per_interval,
        )
    }
}

/// A measurement of `warmup_s` + `measured_s` whose summary counted `successes`.
pub fn measurement(warmup_s: u64, measured_s: u64, successes: u64) -> Measurement {
    Measurement {
        warmup_ms: warmup_s * 1000,
        measured_duration_ms: measured_s * 1000,
        requests: successes,
        ..Default::default()
    }
}
