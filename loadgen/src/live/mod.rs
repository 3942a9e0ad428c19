//! `apibench run --serve ADDR`: the generator's own figures while a run goes, for watching — a
//! Prometheus `/metrics`, a live page (`/`) and the JSON it draws from (`/live.json`). The saved
//! run stays the record; nothing here is ever written to disk or read back by a report.
//!
//! Where the figures come from (every feed is optional: without `--serve` none of this exists):
//! - the collector ([`crate::recorder::Collector`]), each time it writes an interval (complete:
//!   every worker's piece added), calls [`LiveFeed::intervals_closed`]: that interval's
//!   percentiles go to the page's ring of recent points and its histograms into the cumulative
//!   Prometheus buckets;
//! - each generator worker's [`crate::recorder::WorkerRecorder`], once a second when it ships its
//!   closed intervals (and once more at the phase's end), calls [`LiveFeed::publish_counts`]: the
//!   growth of its request counters (by request name, by status) since its last call;
//! - the engine sums its workers' busy users four times a second ([`LiveState::set_users_busy`]);
//! - the sampler hands over each `/proc` reading ([`LiveFeed::set_resources`]).
//!
//! What it must never do: add work to a request's hot path (everything above runs at most once a
//! second per worker, or on the collector's and sampler's own threads), make a generator worker
//! wait (workers only `try_lock` and keep their figures for the next second when the lock is
//! busy), or take anything from the network it serves but a request line.
//!
//! Inside: this file (the state and its feeds), `prometheus.rs` (the text exposition),
//! `server.rs` (the HTTP/1.1 server on a tokio task), `page.html` (the live page).

mod prometheus;
mod server;

pub use prometheus::render as render_metrics;
pub use server::{LiveServer, ServeError};

use crate::recorder::{IntervalRecording, Recording};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Seconds of recent 1 s points the page can draw.
pub const RECENT_POINTS: usize = 300;

/// Upper bounds (`le`) of the latency histogram's buckets, µs: 100 µs .. 60 s.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Upper bounds (`le`) of the send-lag histogram's buckets, µs: 10 µs .. 1 s (a healthy
/// generator's lag is tens of µs; a millisecond is already late).
pub const SEND_LAG_BOUNDS_US: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000,
];

/// What part of a variant's run is loading the target now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseInfo {
    pub variant: String,
    /// `measure` (the fixed-rate phase), `ramp` or `bisect` (a `[find_max]` stage).
    pub phase: String,
    pub repetition: u32,
    /// A ramp stage's rate, req/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
}

/// One `/proc` reading of the sampler (`None`: that tree is not watched, or not yet read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResourceReading {
    pub target_rss_bytes: Option<u64>,
    /// Of one core: 200 = two cores busy.
    pub target_cpu_percent: Option<f64>,
    pub target_processes: Option<u32>,
    pub postgres_rss_bytes: Option<u64>,
    pub postgres_pss_bytes: Option<u64>,
    pub postgres_cpu_percent: Option<f64>,
    pub generator_rss_bytes: u64,
    pub generator_cpu_percent: f64,
}

/// Counts per bucket (not cumulative: the exposition adds them up), with the total and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Upper bounds, µs.
    pub bounds_us: &'static [u64],
    /// `counts[i]`: values above `bounds_us[i - 1]` and at most `bounds_us[i]`.
    pub counts: Vec<u64>,
    /// Every value, those above the last bound included (`+Inf`).
    pub count: u64,
    pub sum_seconds: f64,
}

impl Buckets {
    pub fn new(bounds_us: &'static [u64]) -> Buckets {
        Buckets {
            bounds_us,
            counts: vec![0; bounds_us.len()],
            count: 0,
            sum_seconds: 0.0,
        }
    }

    /// Adds an HDR histogram (µs). A value goes to the first bucket whose bound is at least the
    /// lowest value of its HDR bucket (3 significant digits: at most 0.1 % off a bound); the sum
    /// is the histogram's mean times its count, as HDR computes it.
    pub fn add_histogram(&mut self, histogram: &Histogram<u64>) {
        if histogram.is_empty() {
            return;
        }
        for value in histogram.iter_recorded() {
            let lowest = histogram.lowest_equivalent(value.value_iterated_to());
            let index = self.bounds_us.partition_point(|bound| *bound < lowest);
            if let Some(slot) = self.counts.get_mut(index) {
                *slot += value.count_at_value();
            }
        }
        self.count += histogram.len();
        self.sum_seconds += histogram.mean() * histogram.len() as f64 / 1e6;
    }
}

/// The counters and histograms of one variant, over the whole run (every phase of it).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantFigures {
    /// Request name → (measured requests, failed ones), after the warm-up.
    pub by_request: BTreeMap<String, (u64, u64)>,
    /// HTTP status (0: no response) → measured requests, after the warm-up.
    pub by_status: BTreeMap<u16, u64>,
    pub warmup_requests: u64,
    /// Latency of the successes, of the failures, and the send lag: every completed request,
    /// the warm-up included.
    pub latency_success: Buckets,
    pub latency_error: Buckets,
    pub send_lag: Buckets,
}

impl VariantFigures {
    fn new() -> VariantFigures {
        VariantFigures {
            by_request: BTreeMap::new(),
            by_status: BTreeMap::new(),
            warmup_requests: 0,
            latency_success: Buckets::new(LATENCY_BOUNDS_US),
            latency_error: Buckets::new(LATENCY_BOUNDS_US),
            send_lag: Buckets::new(SEND_LAG_BOUNDS_US),
        }
    }
}

/// One complete 1 s interval, for the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivePoint {
    /// The interval's end, seconds since the live state began (about the run's start).
    pub t: f64,
    pub variant: String,
    pub phase: String,
    /// Completions (successes and failures) in the interval.
    pub rate_per_sec: u64,
    pub errors: u64,
    /// Of the successes; `None` when there were none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub send_lag_p99_ms: Option<f64>,
    #[serde(skip)]
    index: u64,
    /// Which load phase of the run (1, 2, …): a chart's line breaks where it changes.
    #[serde(rename = "phase_id")]
    phase_serial: u64,
}

/// Everything the server renders, copied out under the lock.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub scenario: String,
    /// Seconds since the live state began.
    pub elapsed_s: f64,
    pub phase: Option<PhaseInfo>,
    pub users_busy: u64,
    pub resources: Option<ResourceReading>,
    pub points: Vec<LivePoint>,
    #[serde(skip)]
    pub variants: BTreeMap<String, VariantFigures>,
}

/// The live figures of one run, shared by the server and the feeds.
#[derive(Debug)]
pub struct LiveState {
    scenario: String,
    began: Instant,
    users_busy: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    phase: Option<PhaseInfo>,
    /// Increases with each phase: two phases' intervals with the same index stay apart.
    phase_serial: u64,
    resources: Option<ResourceReading>,
    variants: BTreeMap<String, VariantFigures>,
    recent: VecDeque<LivePoint>,
}

impl LiveState {
    pub fn new(scenario: &str) -> Arc<LiveState> {
        Arc::new(LiveState {
            scenario: scenario.to_string(),
            began: Instant::now(),
            users_busy: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A poisoned lock only means a feed panicked mid-update; the figures are still worth showing.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A load phase begins: it becomes the current phase, its request names get zero counters
    /// (so every series exists from the start), and its feed is returned.
    pub fn begin_phase(self: &Arc<Self>, phase: PhaseInfo, request_names: &[String]) -> LiveFeed {
        let mut inner = self.lock();
        inner.phase_serial += 1;
        let serial = inner.phase_serial;
        let figures = inner
            .variants
            .entry(phase.variant.clone())
            .or_insert_with(VariantFigures::new);
        for name in request_names {
            figures.by_request.entry(name.clone()).or_insert((0, 0));
        }
        let feed = LiveFeed {
            state: Arc::clone(self),
            variant: phase.variant.as_str().into(),
            phase: phase.phase.as_str().into(),
            phase_serial: serial,
        };
        inner.phase = Some(phase);
        drop(inner);
        self.set_users_busy(0);
        feed
    }

    /// The users busy with a request now, summed over the generator's workers.
    pub fn set_users_busy(&self, users: usize) {
        self.users_busy
            .store(u64::try_from(users).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A copy of everything, for one response.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            scenario: self.scenario.clone(),
            elapsed_s: self.began.elapsed().as_secs_f64(),
            phase: inner.phase.clone(),
            users_busy: self.users_busy.load(Ordering::Relaxed),
            resources: inner.resources,
            points: inner.recent.iter().cloned().collect(),
            variants: inner.variants.clone(),
        }
    }
}

/// What a worker has already added to the live counters (kept by the worker, one per phase).
#[derive(Debug, Clone, Default)]
pub struct PublishedCounts {
    by_request: Vec<(u64, u64)>,
    by_status: BTreeMap<u16, u64>,
    warmup_requests: u64,
}

/// One phase's way into the [`LiveState`]: cloned into the collector, each worker's recorder and
/// the sampler.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    state: Arc<LiveState>,
    variant: Arc<str>,
    phase: Arc<str>,
    phase_serial: u64,
}

impl LiveFeed {
    /// The state this feed writes to.
    pub fn state(&self) -> &Arc<LiveState> {
        &self.state
    }

    /// Adds what `recording` counted since `published` (a worker's cumulative counters of this
    /// phase), then remembers it as published. `wait`: take the lock even when busy (the phase's
    /// end); otherwise a busy lock leaves the growth for the next call.
    pub fn publish_counts(
        &self,
        recording: &Recording,
        published: &mut PublishedCounts,
        wait: bool,
    ) {
        let mut inner = if wait {
            self.state.lock()
        } else {
            match self.state.inner.try_lock() {
                Ok(inner) => inner,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        };
        let figures = figures_of(&mut inner.variants, &self.variant);
        published
            .by_request
            .resize(recording.by_request.len(), (0, 0));
        for (request, seen) in recording.by_request.iter().zip(&mut published.by_request) {
            let grown = (
                request.requests.saturating_sub(seen.0),
                request.errors.saturating_sub(seen.1),
            );
            if grown != (0, 0) {
                let counts = match figures.by_request.get_mut(request.name.as_str()) {
                    Some(counts) => counts,
                    None => figures
                        .by_request
                        .entry(request.name.clone())
                        .or_insert((0, 0)),
                };
                counts.0 += grown.0;
                counts.1 += grown.1;
            }
            *seen = (request.requests, request.errors);
        }
        for (status, count) in &recording.status_counts {
            let seen = published.by_status.entry(*status).or_insert(0);
            *figures.by_status.entry(*status).or_insert(0) += count.saturating_sub(*seen);
            *seen = *count;
        }
        figures.warmup_requests += recording
            .warmup_requests
            .saturating_sub(published.warmup_requests);
        published.warmup_requests = recording.warmup_requests;
    }

    /// Complete intervals of this phase (the collector's, every worker's piece added):
    /// `schedule_started` is the instant their indexes count from. Computed outside the lock.
    pub fn intervals_closed(&self, schedule_started: Instant, intervals: &[IntervalRecording]) {
        if intervals.is_empty() {
            return;
        }
        let offset_s = schedule_started
            .saturating_duration_since(self.state.began)
            .as_secs_f64();
        let ms = |h: &Histogram<u64>, q: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
        };
        let mut success = Buckets::new(LATENCY_BOUNDS_US);
        let mut error = Buckets::new(LATENCY_BOUNDS_US);
        let mut send_lag = Buckets::new(SEND_LAG_BOUNDS_US);
        let points: Vec<LivePoint> = intervals
            .iter()
            .map(|interval| {
                success.add_histogram(&interval.latency);
                error.add_histogram(&interval.errors);
                send_lag.add_histogram(&interval.send_lag);
                LivePoint {
                    t: offset_s + interval.index as f64 + 1.0,
                    variant: self.variant.to_string(),
                    phase: self.phase.to_string(),
                    rate_per_sec: interval.latency.len() + interval.errors.len(),
                    errors: interval.errors.len(),
                    p50_ms: ms(&interval.latency, 0.5),
                    p99_ms: ms(&interval.latency, 0.99),
                    send_lag_p99_ms: ms(&interval.send_lag, 0.99),
                    index: interval.index,
                    phase_serial: self.phase_serial,
                }
            })
            .collect();
        let mut inner = self.state.lock();
        let figures = figures_of(&mut inner.variants, &self.variant);
        add_buckets(&mut figures.latency_success, &success);
        add_buckets(&mut figures.latency_error, &error);
        add_buckets(&mut figures.send_lag, &send_lag);
        for point in points {
            push_point(&mut inner.recent, point);
        }
    }

    /// The sampler's latest reading.
    pub fn set_resources(&self, reading: ResourceReading) {
        self.state.lock().resources = Some(reading);
    }
}

/// The variant's figures, made on first use (no allocation once they exist).
fn figures_of<'a>(
    variants: &'a mut BTreeMap<String, VariantFigures>,
    variant: &str,
) -> &'a mut VariantFigures {
    if !variants.contains_key(variant) {
        variants.insert(variant.to_string(), VariantFigures::new());
    }
    variants
        .get_mut(variant)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

fn add_buckets(into: &mut Buckets, from: &Buckets) {
    for (a, b) in into.counts.iter_mut().zip(&from.counts) {
        *a += b;
    }
    into.count += from.count;
    into.sum_seconds += from.sum_seconds;
}

/// Appends a point, or — a piece of an interval that came after it was written — adds its
/// counts to the point already there (its percentiles stay those of the bigger part).
fn push_point(recent: &mut VecDeque<LivePoint>, point: LivePoint) {
    if let Some(same) = recent
        .iter_mut()
        .rev()
        .find(|p| p.phase_serial == point.phase_serial && p.index == point.index)
    {
        same.rate_per_sec += point.rate_per_sec;
        same.errors += point.errors;
        return;
    }
    recent.push_back(point);
    while recent.len() > RECENT_POINTS {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Sample, new_histogram, record_clamped};

    fn phase(variant: &str) -> PhaseInfo {
        PhaseInfo {
            variant: variant.into(),
            phase: "measure".into(),
            repetition: 1,
            rate_per_sec: None,
        }
    }

    #[test]
    fn buckets_place_values_at_their_bound_and_above_the_last_only_in_the_count() {
        let mut h = new_histogram();
        for us in [100, 101, 1_000, 25_000, 70_000_000] {
            record_clamped(&mut h, us);
        }
        let mut b = Buckets::new(LATENCY_BOUNDS_US);
        b.add_histogram(&h);
        assert_eq!(b.counts[0], 1, "100 µs is at most 0.0001 s");
        assert_eq!(b.counts[1], 1, "101 µs is above it");
        assert_eq!(b.counts[3], 1, "1 ms");
        assert_eq!(b.counts[7], 1, "25 ms");
        // 70 s is clamped to the histogram's 60 s ceiling: the last bucket.
        assert_eq!(b.counts[LATENCY_BOUNDS_US.len() - 1], 1);
        assert_eq!(b.count, 5);
        assert!(
            (b.sum_seconds - 60.026_201).abs() < 0.1,
            "{}",
            b.sum_seconds
        );
    }

    #[test]
    fn worker_counts_are_added_once_each_however_often_they_are_published() {
        let state = LiveState::new("s");
        let names = vec!["a".to_string(), "b".to_string()];
        let feed = state.begin_phase(phase("v"), &names);
        let mut recording = Recording::new(&names);
        let mut published = PublishedCounts::default();
        recording.record(&Sample::success(0, 1_000, 10, true, 5));
        recording.record(&Sample::success(1, 1_000, 20, false, 5));
        feed.publish_counts(&recording, &mut published, false);
        feed.publish_counts(&recording, &mut published, true);
        recording.record(&Sample::success(1, 1_000, 30, false, 5));
        feed.publish_counts(&recording, &mut published, true);
        let snapshot = state.snapshot();
        let v = &snapshot.variants["v"];
        assert_eq!(
            v.by_request["a"],
            (0, 0),
            "a warm-up request is not measured"
        );
        assert_eq!(v.by_request["b"], (2, 0));
        assert_eq!(v.by_status[&200], 2);
        assert_eq!(v.warmup_requests, 1);
    }

    #[test]
    fn closed_intervals_become_points_and_histograms_and_the_ring_is_bounded() {
        let state = LiveState::new("s");
        let feed = state.begin_phase(phase("v"), &[]);
        let mut recording = Recording::new(&[]);
        for i in 0..(RECENT_POINTS as u64 + 5) {
            recording.record(&Sample::success(0, 2_000, i * 1_000_000 + 1, false, 7));
        }
        let intervals = recording.take_intervals_before(u64::MAX);
        feed.intervals_closed(Instant::now(), &intervals);
        let snapshot = state.snapshot();
        assert_eq!(snapshot.points.len(), RECENT_POINTS);
        let last = snapshot.points.last().expect("a point");
        assert_eq!(last.rate_per_sec, 1);
        assert_eq!(last.p99_ms, Some(2.0));
        assert_eq!(
            snapshot.variants["v"].latency_success.count,
            RECENT_POINTS as u64 + 5
        );
        // A late piece of the last interval adds to its point, not a second one.
        let mut late = Recording::new(&[]);
        late.record(&Sample::success(
            0,
            2_000,
            (RECENT_POINTS as u64 + 4) * 1_000_000 + 5,
            false,
            7,
        ));
        feed.intervals_closed(Instant::now(), &late.take_intervals_before(u64::MAX));
        let snapshot = state.snapshot();
        assert_eq!(snapshot.points.len(), RECENT_POINTS);
        assert_eq!(snapshot.points.last().map(|p| p.rate_per_sec), Some(2));
    }
}
