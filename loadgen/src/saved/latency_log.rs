//! Reading a `latency.hlog` back, streamed entry by entry (one histogram decoded at a time):
//! per-interval points ([`IntervalPoint`]), the time charts' points — the intervals themselves,
//! or for a long run buckets whose percentiles come from merged histograms ([`ChartBuckets`]) —
//! the measured intervals merged, and a soak's drift blocks ([`super::drift`]), all in one pass
//! ([`read_latency_log`]); and, for `compare` and `gate`, the measured intervals themselves
//! ([`load_measured_intervals`]), merged into coarser units when a run is long so that memory
//! stays bounded.
//!
//! Untagged entries are the successes' latency; of the tagged ones only `errors` is counted
//! (per drift block), `ttfb` and `send_lag` are other figures and never held. A streamed log may
//! hold an interval twice (a batch written after its interval was flushed): every reader here
//! adds the two.

use super::drift::DriftBlocks;
use super::{Ending, SavedRunError, complete_lines, measurements_of, read_bytes};
use crate::recorder;
use crate::results::{Measurement, VariantSummary};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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
        (self.p50_us, self.p99_us) = p50_p99(h);
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

/// A histogram's p50 and p99, µs; 0 and 0 when it is empty.
pub(super) fn p50_p99(h: &Histogram<u64>) -> (u64, u64) {
    if h.is_empty() {
        (0, 0)
    } else {
        (h.value_at_quantile(0.50), h.value_at_quantile(0.99))
    }
}

/// The tag of failed requests' latency entries (see [`crate::recorder`]).
const ERRORS_TAG: &str = "errors";

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
pub(super) struct LatencyLog {
    pub(super) intervals: Vec<IntervalPoint>,
    pub(super) chart_intervals: Vec<IntervalPoint>,
    pub(super) chart_bucket_s: u64,
    pub(super) merged: Histogram<u64>,
    /// The drift blocks, without the RSS trends (those come from `resources.csv`).
    pub(super) drift: Option<super::Drift>,
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

/// The untagged entries of `bytes` as (start, length), from the log's text alone (no histogram
/// decoded): what plans a streaming pass. Stops at the first unreadable line (the streaming pass
/// then reports it).
fn untagged_spans(bytes: &[u8]) -> impl Iterator<Item = (Duration, Duration)> + '_ {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    IntervalLogIterator::new(bytes)
        .map_while(Result::ok)
        .filter_map(|entry| match entry {
            LogEntry::Interval(interval) if interval.tag().is_none() => {
                Some((interval.start_timestamp(), interval.duration()))
            }
            _ => None,
        })
}

/// The first and last slot of `bytes`' full untagged intervals: what sizes the chart's buckets
/// before the log streams.
fn full_slot_span(bytes: &[u8], m: &Measurement) -> Option<(i64, i64)> {
    untagged_spans(bytes)
        .map(|(start, duration)| IntervalPoint::empty(start, duration, m))
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
/// intervals merged, and — for a measured window of at least [`super::DRIFT_MIN_MEASURED_S`] —
/// the drift blocks ([`DriftBlocks`]). An interval written twice (a late batch) adds into the
/// merged histogram exactly, and into its point as [`IntervalPoint::absorb_late`] says. A log whose intervals
/// after the warm-up hold fewer values than `summary.json` counted measured successes was cut
/// short and is reported as corrupt (the warm-up's own values would hide a cut at the end
/// otherwise).
pub(super) fn read_latency_log(
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
    let mut drift = DriftBlocks::plan(m);
    let mut by_start: BTreeMap<Duration, IntervalPoint> = BTreeMap::new();
    let mut merged = recorder::new_histogram();
    // Successes that completed after the warm-up began to end: every measured success is among
    // them (untagged entries are successes; in older logs, every completion).
    let mut after_warmup = 0u64;
    // Latencies, and the errors' counts when the drift table wants them; nothing else decoded.
    let drifting = drift.is_some();
    let wanted = move |tag: Option<&str>| tag.is_none() || (drifting && tag == Some(ERRORS_TAG));
    recorder::for_each_hlog_interval_tagged(&bytes, wanted, |interval| {
        match (interval.tag.as_deref(), drift.as_mut()) {
            (None, _) => {}
            (Some(ERRORS_TAG), Some(drift)) => {
                let point = IntervalPoint::empty(interval.start, interval.duration, m);
                drift.add_errors(&point, interval.histogram.len());
                return Ok(());
            }
            (Some(_), _) => return Ok(()),
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
        if let Some(drift) = drift.as_mut() {
            drift.add_successes(&point, h)?;
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
        drift: drift.map(DriftBlocks::finish),
    })
}

/// A unit of a measurement's measured window: one full 1 s interval, or in a long run
/// (see [`MEASURED_UNITS_MAX`]) a few consecutive ones merged; its success latencies.
#[derive(Debug, Clone)]
pub struct MeasuredInterval {
    /// The seconds it spans: 1, or the sum of its intervals' lengths.
    pub duration_s: f64,
    pub histogram: Histogram<u64>,
}

/// The most units [`load_measured_intervals`] gives per measurement. A decoded interval
/// histogram is ~140 KB whatever it holds, so a 2 h run read one unit per second would hold
/// 7,200 of them — a gigabyte — for each side of a comparison; 600 hold ~85 MB, and still give
/// the bootstrap ~600 distinct moving blocks (see [`crate::noise::BLOCK_INTERVALS`]).
pub const MEASURED_UNITS_MAX: usize = 600;

/// Per measurement of a variant (see [`measurements_of`]), the full measured intervals of its
/// `latency.hlog` ([`IntervalPoint::is_measured`]), in time order: what [`crate::noise`]'s block
/// bootstrap resamples. Untagged entries only (tagged ones — `ttfb`, errors, send lag — are
/// other figures, never held); an interval written twice (a late batch) is added into one.
///
/// A measurement with more than [`MEASURED_UNITS_MAX`] measured intervals gives coarser units:
/// runs of `k = ⌈n / MEASURED_UNITS_MAX⌉` consecutive intervals merged into one (histograms
/// added, durations summed), so memory is bounded whatever the run's length. The estimate stays
/// honest: the statistics a resample computes (a quantile of the summed histograms, completions
/// over seconds) only ever sum intervals, so a unit is exactly the k seconds it replaces, and
/// the block bootstrap already keeps consecutive seconds together — with units its blocks are
/// just k times longer, which keeps more of the run's short-range dependence, not less.
///
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
        let units = measured_units(&bytes, m).map_err(|reason| SavedRunError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        segments.push(units);
    }
    Ok(Some(segments))
}

/// `m`'s measured units from its log's bytes, in two passes: the text alone says which
/// intervals are measured and how long each is (so how many go in a unit), then the log streams
/// and each entry's histogram is added into its unit.
fn measured_units(bytes: &[u8], m: &Measurement) -> Result<Vec<MeasuredInterval>, String> {
    let measured = |start: Duration, duration: Duration| {
        IntervalPoint::empty(start, duration, m).is_measured(m.warmup_ms)
    };
    // Each measured interval's length (the longer of two entries of one interval).
    let mut lengths: BTreeMap<Duration, f64> = BTreeMap::new();
    for (start, duration) in untagged_spans(bytes).filter(|(s, d)| measured(*s, *d)) {
        let held = lengths.entry(start).or_insert(0.0);
        *held = held.max(duration.as_secs_f64());
    }
    let per_unit = lengths.len().div_ceil(MEASURED_UNITS_MAX).max(1);
    let mut unit_of: BTreeMap<Duration, usize> = BTreeMap::new();
    let mut units: Vec<MeasuredInterval> = Vec::new();
    for (index, (start, duration_s)) in lengths.into_iter().enumerate() {
        if index % per_unit == 0 {
            units.push(MeasuredInterval {
                duration_s: 0.0,
                histogram: recorder::new_histogram(),
            });
        }
        unit_of.insert(start, units.len() - 1);
        if let Some(unit) = units.last_mut() {
            unit.duration_s += duration_s;
        }
    }
    recorder::for_each_hlog_interval_tagged(
        bytes,
        |tag| tag.is_none(),
        |interval| {
            if interval.tag.is_some() || !measured(interval.start, interval.duration) {
                return Ok(());
            }
            let at = || format!("interval at {} s", interval.start.as_secs_f64());
            let unit = unit_of
                .get(&interval.start)
                .and_then(|index| units.get_mut(*index))
                .ok_or_else(|| format!("{}: missing from the first reading of the log", at()))?;
            unit.histogram
                .add(&interval.histogram)
                .map_err(|e| format!("{}: {e:?}", at()))
        },
    )?;
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::super::test_logs::{SyntheticLog, measurement};
    use super::*;

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
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.hlog");
        // A slow drift, with a tail in every seventh interval.
        let long = SyntheticLog {
            intervals: INTERVALS,
            warmup_s: WARMUP_S,
            per_interval: 4,
            latency: |i: u64, k: u64| {
                500 + i * 3 + k * 250 + u64::from(i.is_multiple_of(7)) * 90_000
            },
        };
        let recording = long.write(&path);
        let m = long.measurement();
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
            let merged = long.latencies(from..to);
            assert_eq!(bucket.completed, merged.len(), "{bucket:?}");
            assert_eq!(bucket.p99_us, merged.value_at_quantile(0.99), "{bucket:?}");
            assert_eq!(bucket.p50_us, merged.value_at_quantile(0.50), "{bucket:?}");
            assert!(bucket.is_full());
        }
        // The figures themselves never come from the buckets.
        assert_eq!(log.merged, recording.latency);
    }

    #[test]
    fn a_long_log_gives_at_most_the_unit_limit_for_compare_and_every_measured_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let units_of = |intervals: u64| {
            let log = SyntheticLog {
                intervals,
                warmup_s: 10,
                per_interval: 3,
                latency: |i: u64, k: u64| 1_000 + (i % 13) * 40 + k,
            };
            let path = dir.path().join(format!("{intervals}.hlog"));
            log.write(&path);
            let bytes = std::fs::read(&path).expect("log");
            let m = log.measurement();
            (measured_units(&bytes, &m).expect("reads"), m.requests, log)
        };
        // 1,900 measured intervals over a limit of 600: units of ⌈1900 / 600⌉ = 4 intervals.
        let (units, measured, log) = units_of(10 + 1_900);
        assert!(units.len() <= MEASURED_UNITS_MAX, "{} units", units.len());
        assert_eq!(units.len(), 475);
        assert!(units.iter().all(|u| u.duration_s == 4.0));
        let total: u64 = units.iter().map(|u| u.histogram.len()).sum();
        assert_eq!(total, measured, "every measured latency is in a unit");
        assert_eq!(
            units[0].histogram,
            log.latencies(10..14),
            "10 s .. 13 s added"
        );

        // A run under the limit keeps its 1 s intervals.
        let (units, _, _) = units_of(10 + 500);
        assert_eq!(units.len(), 500);
        assert!(
            units
                .iter()
                .all(|u| u.duration_s == 1.0 && u.histogram.len() == 3)
        );
    }
}
