//! The collector thread and what feeds it: [`Sink`] (its channel), [`WorkerRecorder`] (a
//! generator worker's inline recording, which ships each closed interval), [`UserRecorder`]
//! (sample batches, for tests and fixtures), and what the collector does with closed intervals
//! ([`IntervalOutput`]: keep them, drop them, or stream them to `latency.hlog`).
//!
//! When is an interval closed? A sample belongs to the interval of its completion, and is
//! recorded on its worker's thread right after it completes, so a worker is done with interval
//! k once its clock has passed k + 1 s. It says so by shipping every interval before the one it
//! is in ([`Batch::Closed`]), on its first sample of a later interval or on its once-a-second
//! tick. The collector adds the pieces and writes interval k when some worker has reported
//! interval k + [`INTERVAL_GRACE`] closed: the grace absorbs the workers' skew. A piece that still
//! arrives after its interval was written (a worker stalled for seconds) is written as a second
//! entry with the same start — the readers add them — and counted in
//! [`CollectorStats::late_entries`]; nothing is lost or moved to another interval.

use super::hlog::{HlogStream, StreamWriter};
use super::{IntervalRecording, LiveStats, Recording, Sample};
use crate::live::{LiveFeed, PublishedCounts};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Intervals the collector waits after a worker reported one closed before it writes it.
pub const INTERVAL_GRACE: u64 = 2;

/// What reaches the collector.
pub enum Batch {
    /// Samples to record (callers without a worker).
    Samples(Vec<Sample>),
    /// A worker has nothing more for any interval before `before`; these are its pieces of them.
    Closed {
        before: u64,
        intervals: Vec<IntervalRecording>,
    },
    /// A worker's whole recording, at the end of the phase.
    Worker(Box<Recording>),
}

/// What the collector does with an interval once every worker is done with it.
pub enum IntervalOutput {
    /// Keep every interval in the returned [`Recording`] (tests and fixtures write the log
    /// themselves); memory grows with the run.
    Keep,
    /// Drop it (ramp stages: nothing reads their intervals).
    Discard,
    /// Append it to the interval log, then drop it.
    Stream(HlogStream),
}

/// What the collector did besides recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectorStats {
    /// The most intervals it held at once (bounded by the grace and the workers' skew when the
    /// intervals are streamed or discarded, whatever the run's length).
    pub peak_held_intervals: usize,
    /// Intervals written to the log.
    pub intervals_written: u64,
    /// Pieces of intervals that arrived after their interval was written (written as extra
    /// entries with the same start).
    pub late_entries: u64,
    /// Why the log could not be written (the first error; the run's record is then incomplete).
    pub write_error: Option<String>,
    /// The failed requests' statuses per interval (index → status → count; only intervals with
    /// failures): small, and not in the log. The faults' recovery figures read them.
    pub error_statuses_by_interval: BTreeMap<u64, BTreeMap<u16, u64>>,
}

/// Where recordings go: the collector's channel, and what a [`WorkerRecorder`] needs to start.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Batch>,
    names: Arc<[String]>,
    window_end_us: u64,
    live: Arc<Mutex<LiveStats>>,
    /// `--serve`: where the workers' counters go, once a second.
    live_feed: Option<LiveFeed>,
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
            live_published: PublishedCounts::default(),
        }
    }
}

/// One worker's recording, written inline by its users.
pub struct WorkerRecorder {
    recording: Recording,
    sink: Sink,
    /// The interval of the latest sample (or tick); the live figures are published and the
    /// earlier intervals shipped when it changes.
    interval: u64,
    unpublished_completed: u64,
    unpublished_errors: u64,
    /// What of this worker's counters the `--serve` live state already has.
    live_published: PublishedCounts,
}

impl WorkerRecorder {
    pub fn record(&mut self, sample: &Sample) {
        let interval = sample.completed_offset_us / 1_000_000;
        if interval > self.interval {
            self.advance(interval);
        }
        self.recording.record(sample);
        self.unpublished_completed += 1;
        self.unpublished_errors += u64::from(sample.error);
    }

    /// The worker's clock says `offset_us` from the schedule start: ships what closed before
    /// it even when no sample came (an idle worker must not hold an interval back).
    pub fn tick(&mut self, offset_us: u64) {
        let interval = offset_us / 1_000_000;
        if interval > self.interval {
            self.advance(interval);
        }
    }

    /// How many intervals this worker holds (the current one, and any it has not shipped).
    pub fn held_intervals(&self) -> usize {
        self.recording.intervals.len()
    }

    fn advance(&mut self, now_interval: u64) {
        self.publish(now_interval);
        let intervals = self.recording.take_intervals_before(now_interval);
        // The collector outlives the workers; a send error only means it already gave up.
        let _ = self.sink.tx.send(Batch::Closed {
            before: now_interval,
            intervals,
        });
    }

    /// Adds this worker's counts to the live figures; the interval just ended contributes its
    /// rate (summed over workers) and p99 (the worst worker's).
    fn publish(&mut self, now_interval: u64) {
        if let Some(feed) = &self.sink.live_feed {
            feed.publish_counts(&self.recording, &mut self.live_published, false);
        }
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
        if let Some(feed) = &self.sink.live_feed {
            feed.publish_counts(&self.recording, &mut self.live_published, true);
        }
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

/// The collector thread: receives sample batches, closed intervals and workers' recordings
/// until every sender is gone, and merges them.
pub struct Collector {
    handle: std::thread::JoinHandle<(Recording, CollectorStats)>,
    live: Arc<Mutex<LiveStats>>,
}

impl Collector {
    /// Starts a collector that keeps every interval ([`IntervalOutput::Keep`]).
    /// `window_end_us`: the schedule's end from its start (completions after it are the drain).
    pub fn start(names: Vec<String>, started: Instant, window_end_us: u64) -> (Collector, Sink) {
        Collector::start_with(names, started, window_end_us, IntervalOutput::Keep)
            .unwrap_or_else(|_| unreachable!("keeping intervals opens no file"))
    }

    /// Starts the collector; give each worker (or user) a clone of the returned sink, then drop
    /// yours. Fails only when `output` is a log that cannot be created.
    pub fn start_with(
        names: Vec<String>,
        started: Instant,
        window_end_us: u64,
        output: IntervalOutput,
    ) -> std::io::Result<(Collector, Sink)> {
        Collector::start_live(names, started, window_end_us, output, None)
    }

    /// [`Collector::start_with`], also feeding `apibench run --serve`'s live state: each
    /// interval it writes or drops, and each worker's counters once a second.
    pub fn start_live(
        names: Vec<String>,
        started: Instant,
        window_end_us: u64,
        output: IntervalOutput,
        live_feed: Option<LiveFeed>,
    ) -> std::io::Result<(Collector, Sink)> {
        let (tx, rx) = mpsc::channel::<Batch>();
        let live = Arc::new(Mutex::new(LiveStats::default()));
        let sink = Sink {
            tx,
            names: names.clone().into(),
            window_end_us,
            live: Arc::clone(&live),
            live_feed: live_feed.clone(),
        };
        let mut state = State {
            recording: Recording::new(&names),
            output: match output {
                IntervalOutput::Keep => Output::Keep,
                IntervalOutput::Discard => Output::Discard,
                IntervalOutput::Stream(stream) => Output::Stream(StreamWriter::create(stream)?),
            },
            closed_before: 0,
            written_before: 0,
            stats: CollectorStats::default(),
            live: Arc::clone(&live),
            started,
            completed: 0,
            errors: 0,
            live_feed,
        };
        state.recording.window_end_us = window_end_us;
        let handle = std::thread::Builder::new()
            .name("apibench-collector".into())
            .spawn(move || state.run(rx));
        let handle = match handle {
            Ok(h) => h,
            // Spawning one thread failing means the process is out of resources; record nothing.
            Err(e) => {
                tracing::error!("cannot start the collector thread: {e}");
                let names_empty: Vec<String> = Vec::new();
                std::thread::spawn(move || {
                    (Recording::new(&names_empty), CollectorStats::default())
                })
            }
        };
        Ok((Collector { handle, live }, sink))
    }

    pub fn live(&self) -> Arc<Mutex<LiveStats>> {
        Arc::clone(&self.live)
    }

    /// Waits for every sender to be dropped, then returns what was recorded.
    pub fn finish(self) -> Recording {
        self.finish_with_stats().0
    }

    /// [`Collector::finish`], with what the collector did with the intervals.
    pub fn finish_with_stats(self) -> (Recording, CollectorStats) {
        self.handle
            .join()
            .unwrap_or_else(|_| (Recording::new(&[]), CollectorStats::default()))
    }
}

/// Adds an interval's failed requests' statuses to the collector's per-interval record.
fn note_error_statuses(stats: &mut CollectorStats, interval: &IntervalRecording) {
    if interval.error_statuses.is_empty() {
        return;
    }
    let held = stats
        .error_statuses_by_interval
        .entry(interval.index)
        .or_default();
    for (status, n) in &interval.error_statuses {
        *held.entry(*status).or_insert(0) += n;
    }
}

enum Output {
    Keep,
    Discard,
    Stream(StreamWriter),
}

/// The collector thread's state.
struct State {
    recording: Recording,
    output: Output,
    /// The highest `before` any worker reported: every interval before it closed somewhere.
    closed_before: u64,
    /// Intervals before this one have been written (or dropped).
    written_before: u64,
    stats: CollectorStats,
    live: Arc<Mutex<LiveStats>>,
    started: Instant,
    completed: u64,
    errors: u64,
    live_feed: Option<LiveFeed>,
}

impl State {
    fn run(mut self, rx: mpsc::Receiver<Batch>) -> (Recording, CollectorStats) {
        for batch in rx {
            match batch {
                Batch::Worker(worker) => {
                    self.note_late(worker.intervals.keys().copied());
                    self.recording.merge(&worker);
                }
                Batch::Closed { before, intervals } => {
                    self.note_late(intervals.iter().map(|i| i.index));
                    for interval in &intervals {
                        self.recording.merge_interval(interval);
                    }
                    self.closed_before = self.closed_before.max(before);
                }
                Batch::Samples(samples) => self.record_samples(&samples),
            }
            self.stats.peak_held_intervals = self
                .stats
                .peak_held_intervals
                .max(self.recording.intervals.len());
            let due = self.closed_before.saturating_sub(INTERVAL_GRACE);
            self.flush_before(due);
        }
        // Every sender is gone: what is left is complete.
        self.flush_before(u64::MAX);
        // Kept intervals never leave: note their statuses here.
        for interval in self.recording.intervals.values() {
            note_error_statuses(&mut self.stats, interval);
        }
        (self.recording, self.stats)
    }

    /// Counts pieces for intervals already written.
    fn note_late(&mut self, indexes: impl Iterator<Item = u64>) {
        if matches!(self.output, Output::Stream(_)) {
            self.stats.late_entries += indexes.filter(|i| *i < self.written_before).count() as u64;
        }
    }

    /// Writes (or drops) every held interval before `index`; `Keep` holds them all.
    fn flush_before(&mut self, index: u64) {
        if matches!(self.output, Output::Keep) {
            return;
        }
        let closed = self.recording.take_intervals_before(index);
        self.written_before = self.written_before.max(index);
        for interval in &closed {
            note_error_statuses(&mut self.stats, interval);
        }
        if let Some(feed) = &self.live_feed {
            feed.intervals_closed(self.started, &closed);
        }
        if let Output::Stream(writer) = &mut self.output
            && !closed.is_empty()
            && self.stats.write_error.is_none()
        {
            match writer.write(&closed) {
                Ok(()) => self.stats.intervals_written += closed.len() as u64,
                Err(e) => self.stats.write_error = Some(e.to_string()),
            }
        }
    }

    /// Records samples from a [`UserRecorder`] and refreshes the live figures from the wall
    /// clock (no worker publishes them on this path).
    fn record_samples(&mut self, samples: &[Sample]) {
        for sample in samples {
            self.recording.record(sample);
            self.completed += 1;
            self.errors += u64::from(sample.error);
        }
        let now_interval = self.started.elapsed().as_secs();
        let latest_complete = now_interval.checked_sub(1);
        let (p99, rate) = latest_complete
            .and_then(|i| self.recording.intervals.get(&i))
            .map_or((0, 0), |i| {
                (i.latency.value_at_quantile(0.99), i.latency.len())
            });
        if let Ok(mut live) = self.live.lock() {
            live.completed = self.completed;
            live.errors = self.errors;
            if latest_complete.is_some() {
                live.recent_interval = latest_complete;
                live.recent_p99_us = p99;
                live.recent_rate_per_sec = rate;
            }
        }
        // Samples close intervals too: one in interval k means the ones before are done (a
        // user's batches arrive in its completion order).
        if let Some(last) = samples.last() {
            self.closed_before = self.closed_before.max(last.completed_offset_us / 1_000_000);
        }
    }
}
