//! Latency recording without a cross-thread hop on the hot path.
//!
//! The engine records each request where it happened: every generator worker owns a
//! [`WorkerRecorder`] (one [`Recording`]: its histograms and counters), its users record into it
//! inline (a few HDR increments, on the worker's own thread), and when the phase ends each worker
//! hands its recording to the [`Collector`], which merges them exactly (histograms add). No
//! thread wakes up per second to digest a burst of samples on the generator's CPU.
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
//! megabytes per user. One set per worker is the same memory as the old single collector's.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

/// What reaches the collector: a batch of samples, or a worker's whole recording.
pub enum Batch {
    Samples(Vec<Sample>),
    Worker(Box<Recording>),
}

/// Where recordings go: the collector's channel, and what a [`WorkerRecorder`] needs to start.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Batch>,
    names: Arc<[String]>,
    window_end_us: u64,
    live: Arc<Mutex<LiveStats>>,
}

impl Sink {
    /// A recorder for one generator worker; its recording reaches the collector when dropped.
    pub fn worker_recorder(&self) -> WorkerRecorder {
        let mut recording = Recording::new(&self.names);
        recording.window_end_us = self.window_end_us;
        WorkerRecorder {
            recording,
            sink: self.clone(),
            interval: 0,
            unpublished_completed: 0,
            unpublished_errors: 0,
        }
    }
}

/// One worker's recording, written inline by its users.
pub struct WorkerRecorder {
    recording: Recording,
    sink: Sink,
    /// The interval of the latest sample; the live figures are published when it changes.
    interval: u64,
    unpublished_completed: u64,
    unpublished_errors: u64,
}

impl WorkerRecorder {
    pub fn record(&mut self, sample: &Sample) {
        let interval = sample.completed_offset_us / 1_000_000;
        if interval > self.interval {
            self.publish(interval);
        }
        self.recording.record(sample);
        self.unpublished_completed += 1;
        self.unpublished_errors += u64::from(sample.error);
    }

    /// Adds this worker's counts to the live figures; the interval just ended contributes its
    /// rate (summed over workers) and p99 (the worst worker's).
    fn publish(&mut self, now_interval: u64) {
        let ended = self.interval;
        self.interval = now_interval;
        let (p99, rate) = self.recording.intervals.get(&ended).map_or((0, 0), |i| {
            (i.latency.value_at_quantile(0.99), i.latency.len())
        });
        if let Ok(mut live) = self.sink.live.lock() {
            live.completed += std::mem::take(&mut self.unpublished_completed);
            live.errors += std::mem::take(&mut self.unpublished_errors);
            match live.recent_interval {
                Some(i) if i > ended => {}
                Some(i) if i == ended => {
                    live.recent_p99_us = live.recent_p99_us.max(p99);
                    live.recent_rate_per_sec += rate;
                }
                _ => {
                    live.recent_interval = Some(ended);
                    live.recent_p99_us = p99;
                    live.recent_rate_per_sec = rate;
                }
            }
        }
    }
}

impl Drop for WorkerRecorder {
    fn drop(&mut self) {
        let names: Vec<String> = Vec::new();
        let recording = std::mem::replace(&mut self.recording, Recording::new(&names));
        // The collector outlives the workers; a send error only means it already gave up.
        let _ = self.sink.tx.send(Batch::Worker(Box::new(recording)));
    }
}

/// A user's sample buffer, flushed to the collector at each 1 s interval boundary (for callers
/// without a worker: tests, fixtures, benches).
pub struct UserRecorder {
    buffer: Vec<Sample>,
    interval: u64,
    sink: Sink,
}

impl UserRecorder {
    pub fn new(sink: Sink) -> UserRecorder {
        UserRecorder {
            buffer: Vec::with_capacity(256),
            interval: 0,
            sink,
        }
    }

    pub fn push(&mut self, sample: Sample) {
        let interval = sample.completed_offset_us / 1_000_000;
        if interval != self.interval && !self.buffer.is_empty() {
            self.flush();
        }
        self.interval = interval;
        self.buffer.push(sample);
    }

    pub fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let batch = std::mem::replace(&mut self.buffer, Vec::with_capacity(256));
            // The collector outlives the users; a send error only means it already gave up.
            let _ = self.sink.tx.send(Batch::Samples(batch));
        }
    }
}

impl Drop for UserRecorder {
    fn drop(&mut self) {
        self.flush();
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
}

impl IntervalRecording {
    fn new(index: u64) -> IntervalRecording {
        IntervalRecording {
            index,
            latency: new_histogram(),
            ttfb: new_histogram(),
            errors: new_histogram(),
            send_lag: new_histogram(),
        }
    }
}

/// Adds `from` into `into` (same bounds by construction; a value out of range is dropped).
fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
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
        for (mine, theirs) in self.by_request.iter_mut().zip(&other.by_request) {
            add(&mut mine.latency, &theirs.latency);
            add(&mut mine.ttfb, &theirs.ttfb);
            add(&mut mine.error_latency, &theirs.error_latency);
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
        }
        for (index, theirs) in &other.intervals {
            let mine = self
                .intervals
                .entry(*index)
                .or_insert_with(|| IntervalRecording::new(*index));
            add(&mut mine.latency, &theirs.latency);
            add(&mut mine.ttfb, &theirs.ttfb);
            add(&mut mine.errors, &theirs.errors);
            add(&mut mine.send_lag, &theirs.send_lag);
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

    /// Writes the 1 s intervals (untagged: successes' latency; tags `ttfb`, `errors` and
    /// `send_lag`) in the HdrHistogram interval-log format. Values are microseconds; the max
    /// column is in ms. Empty `errors` histograms are left out.
    pub fn write_hlog(
        &self,
        out: &mut impl std::io::Write,
        started_at: SystemTime,
        comment: &str,
    ) -> std::io::Result<()> {
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .add_comment("values in microseconds; the max column in milliseconds")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .with_max_value_divisor(1_000.0);
        let mut writer = builder.begin_log_with(out, &mut serializer)?;
        let ttfb_tag = Tag::new("ttfb");
        let errors_tag = Tag::new("errors");
        let send_lag_tag = Tag::new("send_lag");
        for interval in self.intervals.values() {
            let start = Duration::from_secs(interval.index);
            let length = Duration::from_secs(1);
            let entries = [
                (&interval.latency, None),
                (&interval.ttfb, ttfb_tag),
                (&interval.errors, errors_tag),
                (&interval.send_lag, send_lag_tag),
            ];
            for (histogram, tag) in entries {
                if tag == errors_tag && histogram.is_empty() {
                    continue;
                }
                writer
                    .write_histogram(histogram, start, length, tag)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        }
        Ok(())
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

/// The collector thread: receives sample batches and workers' recordings until every sender is
/// gone, and merges them.
pub struct Collector {
    handle: std::thread::JoinHandle<Recording>,
    live: Arc<Mutex<LiveStats>>,
}

impl Collector {
    /// Starts the collector; give each user a clone of the returned sender, then drop yours.
    /// `window_end_us`: the schedule's end from its start (completions after it are the drain).
    pub fn start(names: Vec<String>, started: Instant, window_end_us: u64) -> (Collector, Sink) {
        let (tx, rx) = mpsc::channel::<Batch>();
        let live = Arc::new(Mutex::new(LiveStats::default()));
        let live_writer = Arc::clone(&live);
        let sink = Sink {
            tx,
            names: names.clone().into(),
            window_end_us,
            live: Arc::clone(&live),
        };
        let handle = std::thread::Builder::new()
            .name("apibench-collector".into())
            .spawn(move || {
                let mut recording = Recording::new(&names);
                recording.window_end_us = window_end_us;
                let mut completed = 0u64;
                let mut errors = 0u64;
                for batch in rx {
                    let batch = match batch {
                        Batch::Worker(worker) => {
                            recording.merge(&worker);
                            continue;
                        }
                        Batch::Samples(batch) => batch,
                    };
                    for sample in &batch {
                        recording.record(sample);
                        completed += 1;
                        errors += u64::from(sample.error);
                    }
                    let now_interval = started.elapsed().as_secs();
                    let latest_complete = now_interval.checked_sub(1);
                    let (p99, rate) = latest_complete
                        .and_then(|i| recording.intervals.get(&i))
                        .map_or((0, 0), |i| {
                            (i.latency.value_at_quantile(0.99), i.latency.len())
                        });
                    if let Ok(mut live) = live_writer.lock() {
                        live.completed = completed;
                        live.errors = errors;
                        if latest_complete.is_some() {
                            live.recent_interval = latest_complete;
                            live.recent_p99_us = p99;
                            live.recent_rate_per_sec = rate;
                        }
                    }
                }
                recording
            });
        let handle = match handle {
            Ok(h) => h,
            // Spawning one thread failing means the process is out of resources; record nothing.
            Err(e) => {
                tracing::error!("cannot start the collector thread: {e}");
                let names_empty: Vec<String> = Vec::new();
                std::thread::spawn(move || Recording::new(&names_empty))
            }
        };
        (Collector { handle, live }, sink)
    }

    pub fn live(&self) -> Arc<Mutex<LiveStats>> {
        Arc::clone(&self.live)
    }

    /// Waits for every sender to be dropped, then returns what was recorded.
    pub fn finish(self) -> Recording {
        self.handle.join().unwrap_or_else(|_| Recording::new(&[]))
    }
}

/// One interval read back from an interval log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub tag: Option<String>,
    pub start: Duration,
    /// Usually 1 s; the last interval of a run is shorter (the drain after the schedule).
    pub duration: Duration,
    pub histogram: Histogram<u64>,
}

/// Reads an interval log written by [`Recording::write_hlog`] or streamed by the collector (or
/// any V2 / V2-deflate log), whole: entries sorted by start then tag, and entries that share a
/// start and a tag (a late batch written after its interval was flushed) added into one. Holds
/// every histogram in memory: for long logs use [`for_each_hlog_interval`].
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<LoggedInterval>, String> {
    let mut by_key: BTreeMap<(Duration, Option<String>), LoggedInterval> = BTreeMap::new();
    for_each_hlog_interval(bytes, |interval| {
        match by_key.entry((interval.start, interval.tag.clone())) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(interval);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let held = slot.get_mut();
                add(&mut held.histogram, &interval.histogram);
                held.duration = held.duration.max(interval.duration);
            }
        }
        Ok(())
    })?;
    Ok(by_key.into_values().collect())
}

/// Streams an interval log: `visit` gets each interval entry in file order, decoded one at a
/// time (memory stays one histogram whatever the log's length). A streamed log may hold a
/// (start, tag) twice — a batch that arrived after its interval was written goes in as a second
/// entry — so a consumer that keys by start adds them. The first error (from the log or from
/// `visit`) stops the walk.
pub fn for_each_hlog_interval(
    bytes: &[u8],
    mut visit: impl FnMut(LoggedInterval) -> Result<(), String>,
) -> Result<(), String> {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Ok(LogEntry::Interval(interval)) => {
                let raw = base64_decode(interval.encoded_histogram());
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| format!("bad histogram: {e:?}"))?;
                visit(LoggedInterval {
                    tag: interval.tag().map(|t| t.as_str().to_string()),
                    start: interval.start_timestamp(),
                    duration: interval.duration(),
                    histogram,
                })?;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad interval log: {e:?}")),
        }
    }
    Ok(())
}

/// Standard base64 (the interval log's histogram encoding); invalid characters are skipped.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        buffer = (buffer << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    fn sample(request: u16, latency_us: u64, completed_offset_us: u64, in_warmup: bool) -> Sample {
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
            send_lag_us: 40,
            service_us: latency_us,
        }
    }

    #[test]
    fn workers_recordings_merge_exactly_into_what_one_recorder_makes() {
        let names = vec!["a".to_string(), "b".to_string()];
        let samples: Vec<Sample> = (0..3_000u64)
            .map(|i| {
                let mut s = sample((i % 2) as u16, 100 + i * 37 % 9_000, i * 1_000, i < 500);
                s.error = i % 11 == 0;
                s.status = if s.error { 503 } else { 200 };
                s.backlogged = i % 7 == 0;
                s
            })
            .collect();
        // Reference: one recorder sees every sample.
        let mut one = Recording::new(&names);
        one.window_end_us = 2_500_000;
        for s in &samples {
            one.record(s);
        }
        // Three workers each see every third sample, then the collector merges them.
        let (collector, sink) = Collector::start(names.clone(), Instant::now(), 2_500_000);
        let mut workers: Vec<WorkerRecorder> = (0..3).map(|_| sink.worker_recorder()).collect();
        for (i, s) in samples.iter().enumerate() {
            workers[i % 3].record(s);
        }
        let live = collector.live();
        drop(workers);
        drop(sink);
        let merged = collector.finish();
        assert_eq!(merged.latency, one.latency);
        assert_eq!(merged.ttfb, one.ttfb);
        assert_eq!(merged.error_latency, one.error_latency);
        assert_eq!(merged.send_lag, one.send_lag);
        assert_eq!(
            (
                merged.requests,
                merged.errors,
                merged.sends,
                merged.warmup_requests
            ),
            (one.requests, one.errors, one.sends, one.warmup_requests)
        );
        assert_eq!(
            (
                merged.successes_in_window,
                merged.drain_requests,
                merged.backlogged_sends
            ),
            (
                one.successes_in_window,
                one.drain_requests,
                one.backlogged_sends
            )
        );
        assert_eq!(merged.status_counts, one.status_counts);
        assert_eq!(merged.service_sum_us, one.service_sum_us);
        assert_eq!(
            (
                merged.first_measured_send_us,
                merged.last_measured_completion_us
            ),
            (one.first_measured_send_us, one.last_measured_completion_us)
        );
        assert_eq!(merged.intervals.len(), one.intervals.len());
        for (index, interval) in &one.intervals {
            let m = &merged.intervals[index];
            assert_eq!(
                (&m.latency, &m.errors, &m.send_lag),
                (&interval.latency, &interval.errors, &interval.send_lag)
            );
        }
        for (m, o) in merged.by_request.iter().zip(&one.by_request) {
            assert_eq!(
                (m.requests, m.errors, &m.latency),
                (o.requests, o.errors, &o.latency)
            );
        }
        // The live figures saw every completed interval's counts.
        let live = live.lock().expect("live").clone();
        assert!(live.completed > 0 && live.completed <= 3_000, "{live:?}");
    }

    #[test]
    fn collector_excludes_warmup_but_logs_every_interval() {
        let (collector, tx) =
            Collector::start(vec!["a".into(), "b".into()], Instant::now(), 2_000_000);
        let mut user = UserRecorder::new(tx);
        user.push(sample(0, 1_000, 500_000, true));
        user.push(sample(0, 2_000, 1_500_000, false));
        user.push(sample(1, 400_000, 2_100_000, false));
        drop(user);
        let recording = collector.finish();
        assert_eq!(recording.requests, 2);
        assert_eq!(recording.warmup_requests, 1);
        assert_eq!(recording.sends, 2);
        assert_eq!(recording.intervals.len(), 3);
        assert_eq!(recording.by_request[1].requests, 1);
        assert!(recording.latency.max() >= 399_000);

        let mut log = Vec::new();
        recording
            .write_hlog(&mut log, SystemTime::now(), "test")
            .expect("hlog writes");
        let mut deserializer = Deserializer::new();
        let mut untagged = 0;
        for entry in IntervalLogIterator::new(&log) {
            if let Ok(LogEntry::Interval(interval)) = entry {
                let bytes = base64_decode(interval.encoded_histogram());
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .expect("histogram decodes");
                if interval.tag().is_none() {
                    untagged += h.len();
                }
            }
        }
        assert_eq!(untagged, 3, "warm-up intervals are logged too");
        let read = read_hlog(&log).expect("reads back");
        assert_eq!(read.iter().filter(|i| i.tag.is_none()).count(), 3);
        let lag: u64 = read
            .iter()
            .filter(|i| i.tag.as_deref() == Some("send_lag"))
            .map(|i| i.histogram.len())
            .sum();
        assert_eq!(lag, 3, "every send's lag is logged");
        // Completed at 2.1 s, after the window's end at 2 s: the drain, not goodput.
        assert_eq!(recording.successes_in_window, 1);
        assert_eq!(recording.drain_requests, 1);
    }

    #[test]
    fn errors_and_successes_have_separate_latencies() {
        let (collector, tx) = Collector::start(vec!["a".into()], Instant::now(), u64::MAX);
        let mut user = UserRecorder::new(tx);
        for i in 0..90 {
            user.push(sample(0, 10_000, 100_000 + i, false));
        }
        for i in 0..10 {
            // Instant 503s.
            user.push(Sample {
                status: 503,
                error: true,
                ..sample(0, 50, 200_000 + i, false)
            });
        }
        drop(user);
        let recording = collector.finish();
        assert_eq!(recording.latency.len(), 90);
        assert_eq!(recording.error_latency.len(), 10);
        assert!(
            recording.latency.value_at_quantile(0.01) >= 9_990,
            "503s left out"
        );
        assert!(recording.error_latency.max() <= 51);
        assert_eq!(recording.by_request[0].error_latency.len(), 10);
        assert_eq!(recording.successes_in_window, 90);
        assert_eq!(recording.completions_in_window, 100);
        let mut log = Vec::new();
        recording
            .write_hlog(&mut log, SystemTime::now(), "test")
            .expect("hlog writes");
        let read = read_hlog(&log).expect("reads back");
        let errors: u64 = read
            .iter()
            .filter(|i| i.tag.as_deref() == Some("errors"))
            .map(|i| i.histogram.len())
            .sum();
        assert_eq!(errors, 10);
    }
}
