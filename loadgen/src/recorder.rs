//! Latency recording without a lock on the hot path.
//!
//! Each user appends compact [`Sample`]s (a few dozen bytes) to its own buffer and hands the
//! buffer to the collector over a channel whenever its current 1-second interval ends (and when
//! it stops). The collector — one thread, off the hot path — records them into the HDR
//! histograms: per 1 s interval (for `latency.hlog`) and, after the warm-up, overall, per request
//! name, and for time-to-first-byte. Successful requests and failed ones go to separate
//! histograms (an instant 503 must not pull the successes' p50 down), and each send's lag — the
//! generator's own lateness — to a third, never into latency.
//!
//! `latency.hlog` tags: untagged = successes' latency, `ttfb`, `errors` = failed requests'
//! latency, `send_lag`. Goodput counts successes that completed inside the measured window;
//! completions after the schedule's end are the drain, counted apart.
//!
//! Why samples and not per-user histograms: a histogram covering 1 µs..60 s at 3 significant
//! digits is ~140 KB; rotating a set per user (overall + TTFB + one per request name) every
//! second would copy megabytes per second on a generator that must stay idle-ish. A sample
//! batch costs O(requests) and keeps the same property: users never share anything mutable.

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

/// A user's sample buffer, flushed to the collector at each 1 s interval boundary.
pub struct UserRecorder {
    buffer: Vec<Sample>,
    interval: u64,
    sink: mpsc::Sender<Vec<Sample>>,
}

impl UserRecorder {
    pub fn new(sink: mpsc::Sender<Vec<Sample>>) -> UserRecorder {
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
            let _ = self.sink.send(batch);
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
    fn new(names: &[String]) -> Recording {
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

    fn record(&mut self, s: &Sample) {
        let interval = s.completed_offset_us / 1_000_000;
        let slot = self
            .intervals
            .entry(interval)
            .or_insert_with(|| IntervalRecording {
                index: interval,
                latency: new_histogram(),
                ttfb: new_histogram(),
                errors: new_histogram(),
                send_lag: new_histogram(),
            });
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

/// Figures the progress display reads (updated by the collector once per batch).
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub completed: u64,
    pub errors: u64,
    /// p99 of the latest complete 1 s interval, µs.
    pub recent_p99_us: u64,
    /// Completions in the latest complete 1 s interval.
    pub recent_rate_per_sec: u64,
}

/// The collector thread: receives sample batches until every sender is gone.
pub struct Collector {
    handle: std::thread::JoinHandle<Recording>,
    live: Arc<Mutex<LiveStats>>,
}

impl Collector {
    /// Starts the collector; give each user a clone of the returned sender, then drop yours.
    /// `window_end_us`: the schedule's end from its start (completions after it are the drain).
    pub fn start(
        names: Vec<String>,
        started: Instant,
        window_end_us: u64,
    ) -> (Collector, mpsc::Sender<Vec<Sample>>) {
        let (tx, rx) = mpsc::channel::<Vec<Sample>>();
        let live = Arc::new(Mutex::new(LiveStats::default()));
        let live_writer = Arc::clone(&live);
        let handle = std::thread::Builder::new()
            .name("apibench-collector".into())
            .spawn(move || {
                let mut recording = Recording::new(&names);
                recording.window_end_us = window_end_us;
                let mut completed = 0u64;
                let mut errors = 0u64;
                for batch in rx {
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
        (Collector { handle, live }, tx)
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

/// Reads an interval log written by [`Recording::write_hlog`] (or any V2 / V2-deflate log).
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<LoggedInterval>, String> {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut deserializer = Deserializer::new();
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Ok(LogEntry::Interval(interval)) => {
                let raw = base64_decode(interval.encoded_histogram());
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| format!("bad histogram: {e:?}"))?;
                out.push(LoggedInterval {
                    tag: interval.tag().map(|t| t.as_str().to_string()),
                    start: interval.start_timestamp(),
                    duration: interval.duration(),
                    histogram,
                });
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad interval log: {e:?}")),
        }
    }
    Ok(out)
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
