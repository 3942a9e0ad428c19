//! Reading a saved run back: `summary.json`, `run.json`, and per measurement `latency.hlog`
//! and `resources.csv`. Shared by `apibench report`, `compare` and `gate`, which work from saved
//! files only — never from a live run — so any run can be re-rendered, compared and gated later.
//! `compare` and `gate` read the logs only for their noise estimate
//! ([`load_measured_intervals`]: the full 1 s intervals after the warm-up, without the drain)
//! and the per-repetition values of a figure ([`repetition_values`]).
//!
//! Every error names the file it is about; the verbs turn them into exit code 2 (bad input).
//! This module only reads; it never writes into a run directory.
//!
//! Long runs: a 2 h `latency.hlog` holds 28,800 histograms of a few hundred KB each once
//! decoded, so the report streams it ([`recorder::for_each_hlog_interval`]) and keeps only small
//! per-interval points, one merged histogram, and — for the charts, which cannot show thousands
//! of points — buckets of [`CHART_POINTS_MAX`] at most whose percentiles come from the merged
//! histograms of their intervals, never from averaging the intervals' percentiles.

use crate::recorder;
use crate::results::{Measurement, RunInfo, Summary, VariantSummary};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit code of report / compare / gate: bad input (missing or corrupt file, bad flags).
pub const EXIT_BAD_INPUT: u8 = 2;

/// What a verb prints and how it exits. The library never prints; `main.rs` writes these out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

impl CommandOutcome {
    /// A bad-input failure: the message on stderr, exit 2.
    pub fn bad_input(message: impl std::fmt::Display) -> CommandOutcome {
        CommandOutcome {
            stdout: String::new(),
            stderr: format!("apibench: {message}\n"),
            exit_code: EXIT_BAD_INPUT,
        }
    }
}

/// Why a saved run cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedRunError {
    #[error("{}: not a directory (expected a run directory written by `apibench run`)", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: missing (is this a directory written by `apibench run`?)", .0.display())]
    Missing(PathBuf),
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, SavedRunError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SavedRunError::Missing(path.to_path_buf())
        } else {
            SavedRunError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SavedRunError> {
    let bytes = read_bytes(path)?;
    serde_json::from_slice(&bytes).map_err(|e| SavedRunError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads `DIR/summary.json`.
pub fn load_summary(dir: &Path) -> Result<Summary, SavedRunError> {
    if !dir.is_dir() {
        return Err(SavedRunError::NotADirectory(dir.to_path_buf()));
    }
    let path = dir.join("summary.json");
    let summary: Summary = read_json(&path)?;
    if summary.schema_version > crate::results::SCHEMA_VERSION {
        return Err(SavedRunError::Corrupt {
            path,
            reason: format!(
                "schema_version {} is newer than this apibench understands ({})",
                summary.schema_version,
                crate::results::SCHEMA_VERSION
            ),
        });
    }
    Ok(summary)
}

/// Reads `DIR/run.json` (the environment and the load as run); `None` when the file is absent
/// (the report then says "unknown"), an error when it is present but unreadable.
pub fn load_run_info(dir: &Path) -> Result<Option<RunInfo>, SavedRunError> {
    match read_json(&dir.join("run.json")) {
        Ok(info) => Ok(Some(info)),
        Err(SavedRunError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One 1 s interval of a latency log (untagged entries: latency, not TTFB).
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPoint {
    /// Interval start, seconds from the load start.
    pub start_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Completions in the interval.
    pub completed: u64,
    /// The interval's length (1 s but for a run's last, partial one).
    pub duration_s: f64,
    /// Mostly after the end of the schedule: only the drain of the last in-flight requests.
    pub after_schedule: bool,
}

impl IntervalPoint {
    /// An untagged interval of `m`'s latency log.
    pub fn of(interval: &recorder::LoggedInterval, m: &Measurement) -> IntervalPoint {
        let mut point = IntervalPoint::empty(interval.start, interval.duration, m);
        point.set_histogram(&interval.histogram);
        point
    }

    /// An interval of `m`'s log with nothing counted yet: where it sits against the schedule.
    fn empty(start: Duration, duration: Duration, m: &Measurement) -> IntervalPoint {
        let start_s = start.as_secs_f64();
        let duration_s = duration.as_secs_f64();
        let schedule_end_s = (m.warmup_ms + m.measured_duration_ms) as f64 / 1000.0;
        IntervalPoint {
            start_s,
            p50_us: 0,
            p99_us: 0,
            completed: 0,
            duration_s,
            after_schedule: start_s + duration_s / 2.0 > schedule_end_s,
        }
    }

    /// Counts and percentiles from the histogram of this interval (or bucket).
    fn set_histogram(&mut self, h: &Histogram<u64>) {
        let quantile = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        self.p50_us = quantile(0.50);
        self.p99_us = quantile(0.99);
        self.completed = h.len();
    }

    /// Adds a second entry of the same interval (or bucket) whose histograms are no longer held:
    /// a streamed log writes a batch that arrived after its interval was flushed as a second
    /// entry. Counts add exactly; p50 and p99 take the larger of the two, an approximation (the
    /// exact value would need both histograms) that only late batches ever see. The measured
    /// histogram (the summary's percentiles, the spectrum) adds every entry exactly.
    fn absorb_late(&mut self, late: &IntervalPoint) {
        self.completed += late.completed;
        self.p50_us = self.p50_us.max(late.p50_us);
        self.p99_us = self.p99_us.max(late.p99_us);
        self.duration_s = self.duration_s.max(late.duration_s);
    }

    /// A full interval: the trailing partial one (the drain of the last in-flight requests
    /// after the schedule ended) would plot as a throughput cliff and a latency spike of a few
    /// stragglers, so charts leave it out. The summary figures still count its requests.
    pub fn is_full(&self) -> bool {
        self.duration_s >= 0.9 && !self.after_schedule
    }

    /// A full interval after the warm-up: what the noise estimate of `compare` and `gate`
    /// resamples.
    pub fn is_measured(&self, warmup_ms: u64) -> bool {
        self.start_s >= warmup_ms as f64 / 1000.0 && self.is_full()
    }

    /// Completions per second over the interval.
    pub fn completed_per_sec(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.completed as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

/// One row of `resources.csv`; `None` where the process was not watched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRow {
    pub elapsed_ms: u64,
    pub target_rss_bytes: Option<u64>,
    pub target_cpu_percent: Option<f64>,
    pub postgres_rss_bytes: Option<u64>,
    pub postgres_cpu_percent: Option<f64>,
    /// apibench's own RSS; `None` in files written before the sampler recorded it.
    pub generator_rss_bytes: Option<u64>,
}

/// One measurement (a variant's load phase, one repetition) read back from its files.
#[derive(Debug, Clone)]
pub struct SavedMeasurement {
    /// 1-based repetition number.
    pub repetition: usize,
    /// Every 1 s interval of the log, warm-up and drain included, by start.
    pub intervals: Vec<IntervalPoint>,
    /// What the time charts draw: `intervals` when there are at most [`CHART_POINTS_MAX`] of
    /// them, else buckets of `chart_bucket_s` consecutive full intervals (see
    /// [`read_latency_log`]).
    pub chart_intervals: Vec<IntervalPoint>,
    /// Seconds of run per chart point: 1 unless the log was too long to draw interval by interval.
    pub chart_bucket_s: u64,
    /// Every measured (post warm-up) interval merged: the percentile spectrum's source.
    pub merged: Histogram<u64>,
    pub resources: Vec<ResourceRow>,
}

/// A variant with its measurements' files read.
#[derive(Debug, Clone)]
pub struct SavedVariant {
    pub summary: VariantSummary,
    pub measurements: Vec<SavedMeasurement>,
    /// All repetitions' measured intervals merged.
    pub merged: Histogram<u64>,
}

/// A run directory read in full (what the HTML report needs).
#[derive(Debug, Clone)]
pub struct SavedRun {
    pub dir: PathBuf,
    pub summary: Summary,
    pub info: Option<RunInfo>,
    pub variants: Vec<SavedVariant>,
}

impl SavedRun {
    /// Reads `summary.json`, `run.json` and every measurement's `latency.hlog` and
    /// `resources.csv`. Fails on the first missing or corrupt file, naming it.
    pub fn load(dir: &Path) -> Result<SavedRun, SavedRunError> {
        let summary = load_summary(dir)?;
        let info = load_run_info(dir)?;
        SavedRun::read_files(dir, summary, info, Ending::Finished)
    }

    /// A run that was killed before it wrote `summary.json`, with the summary rebuilt from its
    /// logs ([`crate::recover`]): its files are read as a kill leaves them — a cut last line of
    /// `latency.hlog` or `resources.csv` is left out, a missing `resources.csv` reads as empty.
    pub fn from_killed_run(
        dir: &Path,
        summary: Summary,
        info: Option<RunInfo>,
    ) -> Result<SavedRun, SavedRunError> {
        SavedRun::read_files(dir, summary, info, Ending::Killed)
    }

    fn read_files(
        dir: &Path,
        summary: Summary,
        info: Option<RunInfo>,
        ending: Ending,
    ) -> Result<SavedRun, SavedRunError> {
        let mut variants = Vec::with_capacity(summary.variants.len());
        for variant in &summary.variants {
            let measurements = measurements_of(variant);
            let mut saved = Vec::with_capacity(measurements.len());
            let mut merged = recorder::new_histogram();
            for (i, m) in measurements.iter().enumerate() {
                let measurement = load_measurement(dir, i + 1, m, ending)?;
                // Same bounds on both sides: adding cannot fail.
                let _ = merged.add(&measurement.merged);
                saved.push(measurement);
            }
            variants.push(SavedVariant {
                summary: variant.clone(),
                measurements: saved,
                merged,
            });
        }
        Ok(SavedRun {
            dir: dir.to_path_buf(),
            summary,
            info,
            variants,
        })
    }
}

/// A variant's measurements, each with its own files: with `--repeat N` the repetitions,
/// without, the variant's own figures.
pub fn measurements_of(variant: &VariantSummary) -> Vec<&Measurement> {
    if variant.repetitions.is_empty() {
        vec![&variant.figures]
    } else {
        variant.repetitions.iter().collect()
    }
}

/// How the run that wrote the files ended: a finished run's files are whole, a killed run's may
/// end in a cut line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Finished,
    Killed,
}

/// `bytes` up to and including its last newline (what a kill mid-write leaves whole).
fn complete_lines(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&[][..], |last| &bytes[..=last])
}

fn load_measurement(
    dir: &Path,
    repetition: usize,
    m: &Measurement,
    ending: Ending,
) -> Result<SavedMeasurement, SavedRunError> {
    let hlog_path = dir.join(&m.files.latency_hlog);
    let log = read_latency_log(&hlog_path, m, ending)?;
    let csv_path = dir.join(&m.files.resources_csv);
    let mut bytes = match (read_bytes(&csv_path), ending) {
        (Err(SavedRunError::Missing(_)), Ending::Killed) => Vec::new(),
        (read, _) => read?,
    };
    if ending == Ending::Killed {
        let whole = complete_lines(&bytes).len();
        bytes.truncate(whole);
        if bytes.is_empty() {
            bytes = format!("{}\n", crate::sampler::CSV_HEADER).into_bytes();
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let resources = parse_resources_csv(&text).map_err(|reason| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason,
    })?;
    Ok(SavedMeasurement {
        repetition,
        intervals: log.intervals,
        chart_intervals: log.chart_intervals,
        chart_bucket_s: log.chart_bucket_s,
        merged: log.merged,
        resources,
    })
}

/// The most points a time chart draws per line: a 2 h run has 7,200 intervals, more than a
/// chart is pixels wide. Longer series are drawn as buckets of consecutive intervals.
pub const CHART_POINTS_MAX: usize = 720;

/// How many 1 s slots past a bucket's end the stream may go before the bucket's histogram is
/// dropped and its point fixed. The collector writes an interval a couple of intervals after it
/// closes; a batch later still is a second entry of that interval, and one later than this
/// window goes into the fixed point as [`IntervalPoint::absorb_late`] says. Bounds the memory to
/// a few histograms whatever the log's length.
const LATE_WINDOW_SLOTS: i64 = 10;

/// Seconds per chart point, shortest first: round spans, so a note reads "each point: 15 s".
const BUCKET_SECONDS: [i64; 17] = [
    1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1_200, 1_800, 3_600,
];

/// A `latency.hlog` read back: see [`read_latency_log`].
struct LatencyLog {
    intervals: Vec<IntervalPoint>,
    chart_intervals: Vec<IntervalPoint>,
    chart_bucket_s: u64,
    merged: Histogram<u64>,
}

/// The 1 s slot (`floor(start)`) of an interval starting at `start_s`.
fn slot_of(start_s: f64) -> i64 {
    start_s.floor() as i64
}

/// The chart's buckets of one log, built while it streams: `slots_per_bucket` consecutive 1 s
/// slots each, counted from the end of the warm-up so that no bucket mixes warm-up and measured
/// intervals. Only full intervals ([`IntervalPoint::is_full`]) go in: the drain's partial
/// interval stays out of the charts as it always has. A bucket's p50 and p99 come from the
/// merged histogram of its intervals; its duration is the slots it spans inside the log's full
/// intervals, so a second in which nothing completed (no entry) counts as zero throughput.
struct ChartBuckets {
    slots_per_bucket: i64,
    /// The first measured slot: bucket 0 starts there, warm-up buckets have negative keys.
    origin_slot: i64,
    first_slot: i64,
    last_full_slot: i64,
    /// Buckets still within [`LATE_WINDOW_SLOTS`] of the stream: their merged histograms.
    open: BTreeMap<i64, Histogram<u64>>,
    /// Buckets whose point is fixed.
    closed: BTreeMap<i64, IntervalPoint>,
    latest_slot: i64,
}

impl ChartBuckets {
    /// Buckets for full intervals in slots `first_slot..=last_full_slot`: the shortest round
    /// span ([`BUCKET_SECONDS`], then whole hours) that draws at most [`CHART_POINTS_MAX`]
    /// points; `None` when they fit the chart one interval per point.
    fn plan(first_slot: i64, last_full_slot: i64, origin_slot: i64) -> Option<ChartBuckets> {
        // Aligning on the warm-up's end can cost one bucket more than the plain division.
        let count = |per: i64| {
            (last_full_slot - origin_slot).div_euclid(per)
                - (first_slot - origin_slot).div_euclid(per)
                + 1
        };
        let hours = (2..).map(|h| h * 3_600);
        let per = BUCKET_SECONDS
            .into_iter()
            .chain(hours)
            .find(|per| count(*per) <= CHART_POINTS_MAX as i64)?;
        (per > 1).then(|| ChartBuckets {
            slots_per_bucket: per,
            origin_slot,
            first_slot,
            last_full_slot,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            latest_slot: first_slot,
        })
    }

    fn key(&self, slot: i64) -> i64 {
        (slot - self.origin_slot).div_euclid(self.slots_per_bucket)
    }

    /// The bucket's point without counts: its first slot and its span, clipped to the log.
    fn empty_point(&self, key: i64) -> IntervalPoint {
        let from = self.origin_slot + key * self.slots_per_bucket;
        let from_clipped = from.max(self.first_slot);
        let to_clipped = (from + self.slots_per_bucket).min(self.last_full_slot + 1);
        IntervalPoint {
            start_s: from_clipped as f64,
            p50_us: 0,
            p99_us: 0,
            completed: 0,
            duration_s: (to_clipped - from_clipped).max(0) as f64,
            after_schedule: false,
        }
    }

    /// One full untagged interval: into its open bucket, or (later than the window) into its
    /// fixed point.
    fn add(&mut self, point: &IntervalPoint, h: &Histogram<u64>) -> Result<(), String> {
        let slot = slot_of(point.start_s);
        let key = self.key(slot);
        if let Some(fixed) = self.closed.get_mut(&key) {
            fixed.absorb_late(point);
        } else {
            self.open
                .entry(key)
                .or_insert_with(recorder::new_histogram)
                .add(h)
                .map_err(|e| format!("interval at {} s: {e:?}", point.start_s))?;
        }
        self.latest_slot = self.latest_slot.max(slot);
        let horizon = self.key(self.latest_slot - LATE_WINDOW_SLOTS);
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            let (key, h) = entry.remove_entry();
            self.close(key, &h);
        }
        Ok(())
    }

    fn close(&mut self, key: i64, h: &Histogram<u64>) {
        let mut point = self.empty_point(key);
        point.set_histogram(h);
        self.closed.insert(key, point);
    }

    /// Every bucket from the log's first full slot to its last, in order; a bucket with no
    /// entry at all is a point with nothing completed.
    fn finish(mut self) -> Vec<IntervalPoint> {
        for (key, h) in std::mem::take(&mut self.open) {
            self.close(key, &h);
        }
        (self.key(self.first_slot)..=self.key(self.last_full_slot))
            .map(|key| {
                self.closed
                    .remove(&key)
                    .unwrap_or_else(|| self.empty_point(key))
            })
            .collect()
    }
}

/// The first and last slot of `bytes`' full untagged intervals, from the log's text alone (no
/// histogram decoded): what sizes the chart's buckets before the log streams. Stops at the first
/// unreadable line (the streaming pass then reports it).
fn full_slot_span(bytes: &[u8], m: &Measurement) -> Option<(i64, i64)> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    IntervalLogIterator::new(bytes)
        .map_while(Result::ok)
        .filter_map(|entry| match entry {
            LogEntry::Interval(interval) if interval.tag().is_none() => Some(IntervalPoint::empty(
                interval.start_timestamp(),
                interval.duration(),
                m,
            )),
            _ => None,
        })
        .filter(IntervalPoint::is_full)
        .map(|point| slot_of(point.start_s))
        .fold(None, |span, slot| match span {
            None => Some((slot, slot)),
            Some((first, last)) => Some((first.min(slot), last.max(slot))),
        })
}

/// Reads a `latency.hlog`, streaming it (one histogram decoded at a time): the per-interval
/// points (warm-up included, so the charts show it), the chart's points (the same, or buckets
/// when there are more than [`CHART_POINTS_MAX`]; see [`ChartBuckets`]) and the post-warm-up
/// intervals merged. An interval written twice (a late batch) adds into the merged histogram
/// exactly, and into its point as [`IntervalPoint::absorb_late`] says. A log whose intervals
/// after the warm-up hold fewer values than `summary.json` counted measured successes was cut
/// short and is reported as corrupt (the warm-up's own values would hide a cut at the end
/// otherwise).
fn read_latency_log(
    path: &Path,
    m: &Measurement,
    ending: Ending,
) -> Result<LatencyLog, SavedRunError> {
    let mut bytes = read_bytes(path)?;
    if ending == Ending::Killed {
        let whole = complete_lines(&bytes).len();
        bytes.truncate(whole);
    }
    let corrupt = |reason: String| SavedRunError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.last().is_some_and(|b| *b != b'\n') {
        return Err(corrupt(
            "truncated: the last line is incomplete (no final newline)".into(),
        ));
    }
    let warmup_s = m.warmup_ms as f64 / 1000.0;
    // Buckets count from the first slot after the warm-up (see `ChartBuckets`).
    let mut buckets = full_slot_span(&bytes, m)
        .and_then(|(first, last)| ChartBuckets::plan(first, last, slot_of(warmup_s.ceil())));
    let mut by_start: BTreeMap<Duration, IntervalPoint> = BTreeMap::new();
    let mut merged = recorder::new_histogram();
    // Successes that completed after the warm-up began to end: every measured success is among
    // them (untagged entries are successes; in older logs, every completion).
    let mut after_warmup = 0u64;
    recorder::for_each_hlog_interval(&bytes, |interval| {
        if interval.tag.is_some() {
            return Ok(());
        }
        let h = &interval.histogram;
        let point = IntervalPoint::of(&interval, m);
        if point.start_s + point.duration_s > warmup_s {
            after_warmup += h.len();
        }
        if point.start_s >= warmup_s {
            merged
                .add(h)
                .map_err(|e| format!("interval at {} s: {e:?}", point.start_s))?;
        }
        if let Some(buckets) = buckets.as_mut().filter(|_| point.is_full()) {
            buckets.add(&point, h)?;
        }
        match by_start.entry(interval.start) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(point);
            }
            std::collections::btree_map::Entry::Occupied(mut held) => {
                held.get_mut().absorb_late(&point);
            }
        }
        Ok(())
    })
    .map_err(corrupt)?;
    let successes = m.requests.saturating_sub(m.errors);
    if after_warmup < successes {
        return Err(corrupt(format!(
            "truncated: it holds {after_warmup} latencies after the warm-up but summary.json \
             counts {successes} measured successful requests"
        )));
    }
    let intervals: Vec<IntervalPoint> = by_start.into_values().collect();
    let (chart_intervals, chart_bucket_s) = match buckets {
        Some(buckets) => {
            let per = buckets.slots_per_bucket.unsigned_abs();
            (buckets.finish(), per)
        }
        None => (intervals.clone(), 1),
    };
    Ok(LatencyLog {
        intervals,
        chart_intervals,
        chart_bucket_s,
        merged,
    })
}

/// A full 1 s interval inside a measurement's measured window: its success latencies.
#[derive(Debug, Clone)]
pub struct MeasuredInterval {
    pub duration_s: f64,
    pub histogram: Histogram<u64>,
}

/// Per measurement of a variant (see [`measurements_of`]), the full measured intervals of its
/// `latency.hlog` ([`IntervalPoint::is_measured`]), in time order: what [`crate::noise`]'s block
/// bootstrap resamples. Untagged entries only (tagged ones — `ttfb`, errors, send lag — are
/// other figures, never held); an interval written twice (a late batch) is added into one.
/// `Ok(None)` when a measurement has no log (runs written before there was one): the comparison
/// then has no noise estimate. A log that is present but unreadable is an error.
pub fn load_measured_intervals(
    dir: &Path,
    variant: &VariantSummary,
) -> Result<Option<Vec<Vec<MeasuredInterval>>>, SavedRunError> {
    let mut segments = Vec::new();
    for m in measurements_of(variant) {
        if m.files.latency_hlog.is_empty() {
            return Ok(None);
        }
        let path = dir.join(&m.files.latency_hlog);
        let bytes = match read_bytes(&path) {
            Ok(bytes) => bytes,
            Err(SavedRunError::Missing(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut by_start: BTreeMap<Duration, MeasuredInterval> = BTreeMap::new();
        recorder::for_each_hlog_interval(&bytes, |interval| {
            if interval.tag.is_some()
                || !IntervalPoint::empty(interval.start, interval.duration, m)
                    .is_measured(m.warmup_ms)
            {
                return Ok(());
            }
            match by_start.entry(interval.start) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(MeasuredInterval {
                        duration_s: interval.duration.as_secs_f64(),
                        histogram: interval.histogram,
                    });
                }
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    let held = held.get_mut();
                    held.duration_s = held.duration_s.max(interval.duration.as_secs_f64());
                    held.histogram.add(&interval.histogram).map_err(|e| {
                        format!("interval at {} s: {e:?}", interval.start.as_secs_f64())
                    })?;
                }
            }
            Ok(())
        })
        .map_err(|reason| SavedRunError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        segments.push(by_start.into_values().collect());
    }
    Ok(Some(segments))
}

/// Parses `resources.csv` by its header's column names (units in the names). Empty cells are
/// processes that were not watched.
pub fn parse_resources_csv(text: &str) -> Result<Vec<ResourceRow>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err("empty: no header row".into());
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let Some(elapsed_col) = find("elapsed_ms") else {
        return Err(format!(
            "line 1: the header has no `elapsed_ms` column: {header}"
        ));
    };
    let cols = [
        find("target_rss_bytes"),
        find("target_cpu_percent"),
        find("postgres_rss_bytes"),
        find("postgres_cpu_percent"),
        find("generator_rss_bytes"),
    ];
    let mut rows = Vec::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(format!(
                "line {line_no}: {} cells, the header has {}",
                cells.len(),
                columns.len()
            ));
        }
        let cell = |col: Option<usize>| col.and_then(|c| cells.get(c)).filter(|s| !s.is_empty());
        let int = |col: Option<usize>, name: &str| -> Result<Option<u64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| format!("line {line_no}: {name} `{s}` is not a whole number"))
                })
                .transpose()
        };
        let float = |col: Option<usize>, name: &str| -> Result<Option<f64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("line {line_no}: {name} `{s}` is not a number"))
                })
                .transpose()
        };
        let Some(elapsed_ms) = int(Some(elapsed_col), "elapsed_ms")? else {
            return Err(format!("line {line_no}: elapsed_ms is empty"));
        };
        rows.push(ResourceRow {
            elapsed_ms,
            target_rss_bytes: int(cols[0], "target_rss_bytes")?,
            target_cpu_percent: float(cols[1], "target_cpu_percent")?,
            postgres_rss_bytes: int(cols[2], "postgres_rss_bytes")?,
            postgres_cpu_percent: float(cols[3], "postgres_cpu_percent")?,
            generator_rss_bytes: int(cols[4], "generator_rss_bytes")?,
        });
    }
    Ok(rows)
}

/// Min, median and max of a figure over repetitions (one value without repetitions).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many values: 1 means no spread is known.
    pub n: usize,
}

impl Spread {
    /// `None` for no values; NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }

    /// Whether repetitions give this figure a spread at all.
    pub fn has_spread(&self) -> bool {
        self.n >= 2
    }
}

/// A figure's value in each repetition (empty without repetitions): what the repetitions
/// bootstrap of [`crate::noise`] resamples.
pub fn repetition_values(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Vec<f64> {
    variant
        .repetitions
        .iter()
        .filter_map(figure)
        .filter(|v| !v.is_nan())
        .collect()
}

/// A figure of a variant over its repetitions: each repetition's value when there are several,
/// else the variant's own figure. The median of `Spread` then matches the summary's figure.
pub fn spread_of(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Option<Spread> {
    if variant.repetitions.len() >= 2 {
        let values: Vec<f64> = variant.repetitions.iter().filter_map(&figure).collect();
        if let Some(s) = Spread::of(&values) {
            return Some(s);
        }
    }
    figure(&variant.figures).and_then(|v| Spread::of(&[v]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `resources.csv` row under the sampler's current header: the named cells, the others
    /// empty (so these tests follow the header when the sampler adds columns).
    fn csv_row(cells: &[(&str, &str)]) -> String {
        crate::sampler::CSV_HEADER
            .split(',')
            .map(|column| {
                cells
                    .iter()
                    .find(|(name, _)| *name == column)
                    .map_or("", |(_, value)| value)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn resources_csv_reads_by_header_and_keeps_empty_cells_empty() {
        let text = format!(
            "{}\n{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[
                ("elapsed_ms", "250"),
                ("target_rss_bytes", "1048576"),
                ("target_cpu_percent", "12.5"),
            ]),
            csv_row(&[
                ("elapsed_ms", "500"),
                ("target_rss_bytes", "2097152"),
                ("postgres_rss_bytes", "4096"),
                ("postgres_cpu_percent", "1.5"),
            ]),
        );
        let rows = parse_resources_csv(&text).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].target_rss_bytes, Some(1_048_576));
        assert_eq!(rows[0].postgres_rss_bytes, None);
        assert_eq!(rows[1].postgres_cpu_percent, Some(1.5));
    }

    #[test]
    fn resources_csv_errors_name_the_line() {
        let text = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[("elapsed_ms", "250"), ("target_rss_bytes", "x")])
        );
        let err = parse_resources_csv(&text).expect_err("bad cell");
        assert!(err.starts_with("line 2:"), "{err}");
    }

    /// A latency log like the runner writes: 1 s intervals from 0 s (warm-up until 2 s), each
    /// with a `ttfb` twin, and the drain after the schedule's end (8 s) as a short last one.
    fn write_log(path: &Path, intervals: &[(f64, f64, u64)]) {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use std::time::{Duration, SystemTime};
        let mut bytes = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .with_start_time(SystemTime::UNIX_EPOCH)
            .with_max_value_divisor(1_000.0);
        let mut writer = builder
            .begin_log_with(&mut bytes, &mut serializer)
            .expect("log starts");
        for &(start_s, duration_s, latency_us) in intervals {
            let mut latency = recorder::new_histogram();
            let mut ttfb = recorder::new_histogram();
            for i in 0..10 {
                recorder::record_clamped(&mut latency, latency_us + i);
                recorder::record_clamped(&mut ttfb, 1);
            }
            let (start, length) = (
                Duration::from_secs_f64(start_s),
                Duration::from_secs_f64(duration_s),
            );
            writer
                .write_histogram(&latency, start, length, None)
                .expect("interval");
            writer
                .write_histogram(&ttfb, start, length, Tag::new("ttfb"))
                .expect("tagged interval");
        }
        drop(writer);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write log");
    }

    fn variant_with_log(log: &str) -> VariantSummary {
        let measurement = Measurement {
            warmup_ms: 2_000,
            measured_duration_ms: 6_000,
            files: crate::results::MeasurementFiles {
                latency_hlog: log.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        VariantSummary {
            name: "pool-10".into(),
            target_kind: "api".into(),
            knobs: Default::default(),
            load_model: crate::scenario::LoadModel::Open,
            latency_origin: "scheduled".into(),
            figures: measurement.clone(),
            repetitions: vec![measurement],
        }
    }

    #[test]
    fn measured_intervals_leave_out_warm_up_drain_and_tagged_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut intervals: Vec<(f64, f64, u64)> =
            (0..8).map(|s| (s as f64, 1.0, 1_000 * (s + 1))).collect();
        intervals.push((8.0, 0.3, 90_000));
        write_log(&dir.path().join("pool-10/latency.hlog"), &intervals);
        let variant = variant_with_log("pool-10/latency.hlog");
        let segments = load_measured_intervals(dir.path(), &variant)
            .expect("reads")
            .expect("has a log");
        assert_eq!(segments.len(), 1);
        let mins: Vec<u64> = segments[0].iter().map(|i| i.histogram.min()).collect();
        assert_eq!(
            mins,
            [3_000, 4_000, 5_000, 6_000, 7_000, 8_000],
            "2 s .. 7 s only"
        );
        assert!(
            segments[0]
                .iter()
                .all(|i| i.histogram.len() == 10 && i.duration_s == 1.0)
        );

        // A run written before there was a log has no noise estimate, not an error...
        let old = variant_with_log("pool-10/missing.hlog");
        assert!(
            load_measured_intervals(dir.path(), &old)
                .expect("ok")
                .is_none()
        );
        // ...but a log that is there and unreadable names itself.
        std::fs::write(dir.path().join("bad.hlog"), "0.000,1.000,1.0,@@@@\n").expect("write");
        let err = load_measured_intervals(dir.path(), &variant_with_log("bad.hlog"))
            .expect_err("corrupt");
        assert!(err.to_string().contains("bad.hlog"), "{err}");
    }

    #[test]
    fn resources_csv_reads_the_generator_rss_and_older_files_have_none() {
        let text = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[
                ("elapsed_ms", "250"),
                ("target_rss_bytes", "1048576"),
                ("generator_rss_bytes", "33554432"),
            ]),
        );
        let rows = parse_resources_csv(&text).expect("parses");
        assert_eq!(rows[0].generator_rss_bytes, Some(33_554_432));
        assert_eq!(rows[0].target_rss_bytes, Some(1_048_576));

        // A file from before the sampler recorded apibench's own memory.
        let old = "elapsed_ms,target_rss_bytes,target_cpu_percent,postgres_rss_bytes,\
                   postgres_cpu_percent\n250,1048576,1.5,,\n";
        let rows = parse_resources_csv(old).expect("parses");
        assert_eq!(rows[0].generator_rss_bytes, None);
        assert_eq!(rows[0].target_cpu_percent, Some(1.5));

        let bad = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[("elapsed_ms", "250"), ("generator_rss_bytes", "12k")])
        );
        let err = parse_resources_csv(&bad).expect_err("bad cell");
        assert!(err.contains("generator_rss_bytes"), "{err}");
    }

    /// A measurement of `warmup_s` + `measured_s` whose summary counted `successes`.
    fn measurement(warmup_s: u64, measured_s: u64, successes: u64) -> Measurement {
        Measurement {
            warmup_ms: warmup_s * 1000,
            measured_duration_ms: measured_s * 1000,
            requests: successes,
            ..Default::default()
        }
    }

    #[test]
    fn a_late_entry_adds_into_its_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.hlog");
        // 3 s written twice: a batch that arrived after its interval had been flushed.
        write_log(
            &path,
            &[
                (2.0, 1.0, 1_000),
                (3.0, 1.0, 2_000),
                (4.0, 1.0, 1_000),
                (5.0, 1.0, 1_000),
                (3.0, 1.0, 40_000),
            ],
        );
        let log = read_latency_log(&path, &measurement(2, 6, 50), Ending::Finished).expect("reads");
        let starts: Vec<f64> = log.intervals.iter().map(|i| i.start_s).collect();
        assert_eq!(
            starts,
            [2.0, 3.0, 4.0, 5.0],
            "one point per interval, by start"
        );
        let late = &log.intervals[1];
        assert_eq!(late.completed, 20, "counts add");
        assert!(late.p99_us >= 40_000, "the larger p99: {}", late.p99_us);
        assert_eq!(late.duration_s, 1.0);
        // The merged histogram adds both entries exactly.
        assert_eq!(log.merged.len(), 50);
        assert!(log.merged.max() >= 40_009);
        assert_eq!(log.chart_bucket_s, 1);
        assert_eq!(
            log.chart_intervals, log.intervals,
            "a short log is drawn as is"
        );
    }

    #[test]
    fn a_long_log_is_charted_in_buckets_whose_percentiles_come_from_merged_histograms() {
        const INTERVALS: u64 = 5_000;
        const WARMUP_S: u64 = 61;
        let names = vec!["get".to_string()];
        let mut recording = recorder::Recording::new(&names);
        let mut successes = 0;
        for interval in 0..INTERVALS {
            // A slow drift, with a tail in every seventh interval.
            for k in 0..4u64 {
                let latency_us = 500 + interval * 3 + k * 250 + (interval % 7 == 0) as u64 * 90_000;
                let in_warmup = interval < WARMUP_S;
                successes += u64::from(!in_warmup);
                recording.record(&recorder::Sample {
                    request: 0,
                    latency_us,
                    ttfb_us: Some(latency_us / 2),
                    completed_offset_us: interval * 1_000_000 + k * 240_000,
                    sent_offset_us: (interval * 1_000_000 + k * 240_000).saturating_sub(latency_us),
                    status: 200,
                    error: false,
                    timed_out: false,
                    in_warmup,
                    generator_late: false,
                    backlogged: false,
                    backlogged_at_cap: false,
                    send_lag_us: 30,
                    service_us: latency_us,
                });
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.hlog");
        let mut bytes = Vec::new();
        recording
            .write_hlog(&mut bytes, std::time::SystemTime::UNIX_EPOCH, "soak")
            .expect("writes");
        std::fs::write(&path, bytes).expect("write log");

        let m = measurement(WARMUP_S, INTERVALS - WARMUP_S, successes);
        let log = read_latency_log(&path, &m, Ending::Finished).expect("reads");
        assert_eq!(
            log.intervals.len(),
            INTERVALS as usize,
            "every interval kept"
        );
        let charted = &log.chart_intervals;
        assert!(
            charted.len() <= CHART_POINTS_MAX && log.chart_bucket_s > 1,
            "{} points of {} s",
            charted.len(),
            log.chart_bucket_s
        );
        assert_eq!(
            charted.iter().map(|b| b.completed).sum::<u64>(),
            INTERVALS * 4,
            "every completion is in a bucket"
        );
        assert_eq!(
            charted.iter().map(|b| b.duration_s).sum::<f64>(),
            INTERVALS as f64,
            "the buckets tile the run"
        );
        assert!(
            charted.iter().any(|b| b.start_s == WARMUP_S as f64),
            "a bucket starts where the warm-up ends"
        );
        for bucket in charted {
            let (from, to) = (
                bucket.start_s as u64,
                (bucket.start_s + bucket.duration_s) as u64,
            );
            assert!(
                from >= WARMUP_S || to <= WARMUP_S,
                "mixes warm-up: {bucket:?}"
            );
            let mut merged = recorder::new_histogram();
            for interval in recording.intervals.range(from..to).map(|(_, i)| &i.latency) {
                merged.add(interval).expect("same bounds");
            }
            assert_eq!(bucket.completed, merged.len(), "{bucket:?}");
            assert_eq!(bucket.p99_us, merged.value_at_quantile(0.99), "{bucket:?}");
            assert_eq!(bucket.p50_us, merged.value_at_quantile(0.50), "{bucket:?}");
            assert!(bucket.is_full());
        }
        // The figures themselves never come from the buckets.
        assert_eq!(log.merged, recording.latency);
    }

    #[test]
    fn spread_is_min_median_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert!(Spread::of(&[]).is_none());
    }
}
