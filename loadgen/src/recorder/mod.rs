//! Latency recording without a cross-thread hop on the hot path, and with memory that does not
//! grow with the run's length.
//!
//! The engine records each request where it happened: every generator worker owns a
//! [`WorkerRecorder`] (one [`Recording`]: its histograms and counters), its users record into it
//! inline (a few HDR increments, on the worker's own thread). Each 1 s interval, once closed, is
//! shipped to the [`Collector`] (by the worker's next sample in a later interval, or by its
//! once-a-second tick when it is idle); the collector adds the workers' pieces of an interval
//! together and, [`INTERVAL_GRACE`] intervals later, writes it to `latency.hlog` and drops it. So a
//! run holds a handful of interval histograms whatever its length (a 1 s set is ~0.5 MB), and a
//! killed run leaves every interval that closed before the kill on disk. When the phase ends each
//! worker hands over the rest of its recording and the collector merges them exactly
//! (histograms add).
//!
//! [`UserRecorder`] is the other way in, for callers that have [`Sample`]s rather than a worker
//! (tests, fixtures, benches): it batches samples per 1 s interval and the collector thread
//! records them. Both arrive over the same [`Sink`].
//!
//! What is recorded: per 1 s interval (for `latency.hlog`) and, after the warm-up, overall, per
//! request name, and for time-to-first-byte. Successful requests and failed ones go to separate
//! histograms (an instant 503 must not pull the successes' p50 down), and each send's lag — the
//! generator's own lateness — to a third, never into latency.
//!
//! `latency.hlog` tags: untagged = successes' latency, `ttfb`, `errors` = failed requests'
//! latency, `send_lag`. Goodput counts successes that completed inside the measured window;
//! completions after the schedule's end are the drain, counted apart.
//!
//! Why per worker and not per user: a histogram covering 1 µs..60 s at 3 significant digits is
//! ~140 KB; a set per user (overall + TTFB + one per request name, per interval) would be
//! megabytes per user. One set per worker is the same memory as a single collector's.
//!
//! Inside: this file (samples, [`Recording`]), `collector.rs` (the collector thread, the sinks
//! and recorders that feed it, what it does with closed intervals), `hlog.rs` (writing and
//! reading the interval log, whole or streamed), `state.rs` (`recording.json`: a whole
//! recording saved for exact merges), `tests.rs`.

mod collector;
mod hlog;
mod state;
#[cfg(test)]
mod tests;

pub use collector::{
    Batch, Collector, CollectorStats, INTERVAL_GRACE, IntervalOutput, Sink, UserRecorder,
    WorkerRecorder,
};
pub use hlog::{
    HlogIntervals, HlogStream, LoggedInterval, for_each_hlog_interval,
    for_each_hlog_interval_tagged, hlog_intervals, hlog_start_time, read_hlog,
    write_logged_intervals,
};
use hlog::{base64_decode, decode_v2_histogram};
pub use state::{
    EngineFigures, RECORDING_STATE_VERSION, RecordingState, RequestState, StateError,
    decode_histogram, encode_histogram,
};

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Lowest and highest trackable latency, microseconds (1 µs .. 60 s), 3 significant digits.
pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 60_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new histogram with the run's bounds.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|_| Histogram::new(SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!()))
}

/// Records a value clamped into the histogram's range.
pub fn record_clamped(histogram: &mut Histogram<u64>, value_us: u64) {
    let _ = histogram.record(value_us.clamp(LOWEST_US, HIGHEST_US));
}

/// One request as the generator saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Index into the scenario's request list.
    pub request: u16,
    /// Open model: from the scheduled time; closed model: from the actual send.
    pub latency_us: u64,
    /// Until the response headers arrived; `None` when none did (connection error, timeout).
    pub ttfb_us: Option<u64>,
    /// When it completed, from the schedule start (picks its hlog interval).
    pub completed_offset_us: u64,
    /// When it was sent, from the schedule start.
    pub sent_offset_us: u64,
    /// HTTP status, 0 when there was no response.
    pub status: u16,
    pub error: bool,
    pub timed_out: bool,
    pub in_warmup: bool,
    /// Left more than 1 ms after it could have (the generator's fault).
    pub generator_late: bool,
    /// Was already overdue when its user became free (all users busy: the server's backlog).
    pub backlogged: bool,
    /// Backlogged while every user the load may have (`max_users`) was busy.
    pub backlogged_at_cap: bool,
    /// The generator's own lateness: actual send − `max(due, user free)`, µs.
    pub send_lag_us: u64,
    /// From the actual send to completion (the server's response time), µs.
    pub service_us: u64,
}

impl Sample {
    /// A successful `200` completed at `completed_offset_us`, sent `latency_us` earlier (TTFB half
    /// of it, no backlog, the generator on time): what tests and fixtures build logs from.
    pub fn success(
        request: u16,
        latency_us: u64,
        completed_offset_us: u64,
        in_warmup: bool,
        send_lag_us: u64,
    ) -> Sample {
        Sample {
            request,
            latency_us,
            ttfb_us: Some(latency_us / 2),
            completed_offset_us,
            sent_offset_us: completed_offset_us.saturating_sub(latency_us),
            status: 200,
            error: false,
            timed_out: false,
            in_warmup,
            generator_late: false,
            backlogged: false,
            backlogged_at_cap: false,
            send_lag_us,
            service_us: latency_us,
        }
    }
}

/// The histograms of one request name (after warm-up).
#[derive(Debug, Clone)]
pub struct RequestRecording {
    pub name: String,
    /// Successes only.
    pub latency: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub error_latency: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
}

/// One 1 s interval of the hlog.
#[derive(Debug, Clone)]
pub struct IntervalRecording {
    pub index: u64,
    /// Successes only.
    pub latency: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub errors: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// The failed requests by status (0 = no response): not in the log, kept by the collector
    /// ([`CollectorStats::error_statuses_by_interval`]) for the faults' recovery figures.
    pub error_statuses: BTreeMap<u16, u64>,
}

impl IntervalRecording {
    /// Adds another piece of the same interval.
    pub fn add(&mut self, other: &IntervalRecording) {
        add(&mut self.latency, &other.latency);
        add(&mut self.ttfb, &other.ttfb);
        add(&mut self.errors, &other.errors);
        add(&mut self.send_lag, &other.send_lag);
        for (status, n) in &other.error_statuses {
            *self.error_statuses.entry(*status).or_insert(0) += n;
        }
    }

    fn new(index: u64) -> IntervalRecording {
        IntervalRecording {
            index,
            latency: new_histogram(),
            ttfb: new_histogram(),
            errors: new_histogram(),
            send_lag: new_histogram(),
            error_statuses: BTreeMap::new(),
        }
    }
}

/// Adds `from` into `into` (same bounds by construction; a value out of range is dropped).
pub(crate) fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if !from.is_empty() {
        let _ = into.add(from);
    }
}

/// Everything one load phase measured.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Successes only (after the warm-up).
    pub latency: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    /// Failed requests (after the warm-up).
    pub error_latency: Histogram<u64>,
    /// The generator's own lateness per measured send.
    pub send_lag: Histogram<u64>,
    /// Measured completions (successes / all) up to the schedule's end: goodput and throughput.
    pub successes_in_window: u64,
    pub completions_in_window: u64,
    /// Measured completions after the schedule's end (the drain).
    pub drain_requests: u64,
    /// Backlogged sends while every user up to `max_users` was busy.
    pub backlogged_at_cap_sends: u64,
    /// Sum of the measured successes' response times from the actual send (Little's law).
    pub service_sum_us: u64,
    /// The same response times as a histogram: the server's own time, without any backlog
    /// (a `[find_max]` stage whose users ran out asks whether its p99 was over the budget).
    pub service: Histogram<u64>,
    pub by_request: Vec<RequestRecording>,
    pub intervals: BTreeMap<u64, IntervalRecording>,
    /// Measured (post warm-up) requests that completed.
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub status_counts: BTreeMap<u16, u64>,
    /// Sends after the warm-up, for the generator self-check.
    pub sends: u64,
    pub generator_late_sends: u64,
    pub backlogged_sends: u64,
    pub warmup_requests: u64,
    /// First and last measured send / completion, from the schedule start.
    pub first_measured_send_us: Option<u64>,
    pub last_measured_send_us: Option<u64>,
    pub last_measured_completion_us: Option<u64>,
    /// The schedule's end, from its start: completions after it are the drain.
    pub window_end_us: u64,
}

impl Recording {
    pub fn new(names: &[String]) -> Recording {
        Recording {
            latency: new_histogram(),
            ttfb: new_histogram(),
            error_latency: new_histogram(),
            send_lag: new_histogram(),
            successes_in_window: 0,
            completions_in_window: 0,
            drain_requests: 0,
            backlogged_at_cap_sends: 0,
            service_sum_us: 0,
            service: new_histogram(),
            window_end_us: u64::MAX,
            by_request: names
                .iter()
                .map(|name| RequestRecording {
                    name: name.clone(),
                    latency: new_histogram(),
                    ttfb: new_histogram(),
                    error_latency: new_histogram(),
                    requests: 0,
                    errors: 0,
                })
                .collect(),
            intervals: BTreeMap::new(),
            requests: 0,
            errors: 0,
            timeouts: 0,
            status_counts: BTreeMap::new(),
            sends: 0,
            generator_late_sends: 0,
            backlogged_sends: 0,
            warmup_requests: 0,
            first_measured_send_us: None,
            last_measured_send_us: None,
            last_measured_completion_us: None,
        }
    }

    pub fn record(&mut self, s: &Sample) {
        let interval = s.completed_offset_us / 1_000_000;
        let slot = self
            .intervals
            .entry(interval)
            .or_insert_with(|| IntervalRecording::new(interval));
        if s.error {
            record_clamped(&mut slot.errors, s.latency_us);
            *slot.error_statuses.entry(s.status).or_insert(0) += 1;
        } else {
            record_clamped(&mut slot.latency, s.latency_us);
            if let Some(ttfb) = s.ttfb_us {
                record_clamped(&mut slot.ttfb, ttfb);
            }
        }
        record_clamped(&mut slot.send_lag, s.send_lag_us);
        if s.in_warmup {
            self.warmup_requests += 1;
            return;
        }
        // The self-check looks at measured sends only: the warm-up is where connections open.
        self.sends += 1;
        self.generator_late_sends += u64::from(s.generator_late);
        self.backlogged_sends += u64::from(s.backlogged);
        self.backlogged_at_cap_sends += u64::from(s.backlogged_at_cap);
        record_clamped(&mut self.send_lag, s.send_lag_us);
        self.requests += 1;
        self.errors += u64::from(s.error);
        self.timeouts += u64::from(s.timed_out);
        if s.completed_offset_us <= self.window_end_us {
            self.completions_in_window += 1;
            self.successes_in_window += u64::from(!s.error);
        } else {
            self.drain_requests += 1;
        }
        *self.status_counts.entry(s.status).or_insert(0) += 1;
        if s.error {
            record_clamped(&mut self.error_latency, s.latency_us);
        } else {
            self.service_sum_us = self.service_sum_us.saturating_add(s.service_us);
            record_clamped(&mut self.service, s.service_us);
            record_clamped(&mut self.latency, s.latency_us);
            if let Some(ttfb) = s.ttfb_us {
                record_clamped(&mut self.ttfb, ttfb);
            }
        }
        if let Some(per) = self.by_request.get_mut(usize::from(s.request)) {
            per.requests += 1;
            per.errors += u64::from(s.error);
            if s.error {
                record_clamped(&mut per.error_latency, s.latency_us);
            } else {
                record_clamped(&mut per.latency, s.latency_us);
                if let Some(ttfb) = s.ttfb_us {
                    record_clamped(&mut per.ttfb, ttfb);
                }
            }
        }
        self.first_measured_send_us = Some(
            self.first_measured_send_us
                .map_or(s.sent_offset_us, |v| v.min(s.sent_offset_us)),
        );
        self.last_measured_send_us = Some(
            self.last_measured_send_us
                .map_or(s.sent_offset_us, |v| v.max(s.sent_offset_us)),
        );
        self.last_measured_completion_us = Some(
            self.last_measured_completion_us
                .map_or(s.completed_offset_us, |v| v.max(s.completed_offset_us)),
        );
    }

    /// Adds `other` (another worker's recording of the same phase) into this one: histograms
    /// add, counts sum, the first/last instants widen. Exact: the merged figures are those one
    /// recorder would have made of every sample.
    pub fn merge(&mut self, other: &Recording) {
        add(&mut self.latency, &other.latency);
        add(&mut self.ttfb, &other.ttfb);
        add(&mut self.error_latency, &other.error_latency);
        add(&mut self.send_lag, &other.send_lag);
        self.successes_in_window += other.successes_in_window;
        self.completions_in_window += other.completions_in_window;
        self.drain_requests += other.drain_requests;
        self.backlogged_at_cap_sends += other.backlogged_at_cap_sends;
        self.service_sum_us = self.service_sum_us.saturating_add(other.service_sum_us);
        add(&mut self.service, &other.service);
        for (mine, theirs) in self.by_request.iter_mut().zip(&other.by_request) {
            add(&mut mine.latency, &theirs.latency);
            add(&mut mine.ttfb, &theirs.ttfb);
            add(&mut mine.error_latency, &theirs.error_latency);
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
        }
        for theirs in other.intervals.values() {
            self.merge_interval(theirs);
        }
        self.requests += other.requests;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        for (status, count) in &other.status_counts {
            *self.status_counts.entry(*status).or_insert(0) += count;
        }
        self.sends += other.sends;
        self.generator_late_sends += other.generator_late_sends;
        self.backlogged_sends += other.backlogged_sends;
        self.warmup_requests += other.warmup_requests;
        let widen = |a: Option<u64>, b: Option<u64>, f: fn(u64, u64) -> u64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        self.first_measured_send_us = widen(
            self.first_measured_send_us,
            other.first_measured_send_us,
            u64::min,
        );
        self.last_measured_send_us = widen(
            self.last_measured_send_us,
            other.last_measured_send_us,
            u64::max,
        );
        self.last_measured_completion_us = widen(
            self.last_measured_completion_us,
            other.last_measured_completion_us,
            u64::max,
        );
    }

    /// Takes every interval before `index` out of this recording (closed intervals, on their
    /// way to the collector or the log).
    pub fn take_intervals_before(&mut self, index: u64) -> Vec<IntervalRecording> {
        let kept = self.intervals.split_off(&index);
        std::mem::replace(&mut self.intervals, kept)
            .into_values()
            .collect()
    }

    /// Adds one interval (a worker's piece of it) into this recording's intervals.
    pub fn merge_interval(&mut self, theirs: &IntervalRecording) {
        let mine = self
            .intervals
            .entry(theirs.index)
            .or_insert_with(|| IntervalRecording::new(theirs.index));
        mine.add(theirs);
    }
}

/// Figures the progress display reads (updated once per 1 s interval by each worker, or by the
/// collector per sample batch).
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub completed: u64,
    pub errors: u64,
    /// The interval the `recent_*` figures describe.
    pub recent_interval: Option<u64>,
    /// p99 of the latest complete 1 s interval, µs.
    pub recent_p99_us: u64,
    /// Completions in the latest complete 1 s interval.
    pub recent_rate_per_sec: u64,
}
