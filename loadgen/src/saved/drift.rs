//! A soak's drift over its measured window: is the service at minute 30 what it was at minute 5?
//!
//! Latency: the measured window (after the warm-up) cut into consecutive [`DRIFT_BLOCK_S`]
//! blocks, each with its goodput, its failed requests, and its p50 and p99 read from the merged
//! histogram of the block's 1 s intervals — never an average of per-second percentiles, which
//! would weigh a quiet second like a busy one and smooth a tail away. A last, shorter block is
//! kept when it spans at least [`DRIFT_PARTIAL_BLOCK_MIN_S`] (marked partial); a shorter rest is
//! left out. Memory: the target's and apibench's RSS at the window's start and end (medians of
//! its first and last [`RSS_EDGE_S`], so one spike does not decide) and their least-squares
//! slope over the whole window ([`RssTrend`]).
//!
//! Only for measured windows of at least [`DRIFT_MIN_MEASURED_S`]: a shorter run has one block,
//! no trend. Built while `latency.hlog` streams ([`DriftBlocks`], fed by `latency_log.rs`): one
//! histogram per block still open, a block's percentiles fixed once the stream is two blocks past
//! it, so memory stays a few histograms whatever the run's length. Reads and computes only: what
//! a slope or a ratio means is the report's to say.

use super::latency_log::{IntervalPoint, p50_p99};
use super::{ResourceRow, Spread};
use crate::recorder;
use crate::results::Measurement;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// A measured window at least this long gets a drift analysis: two full blocks, the least that
/// can show a change.
pub const DRIFT_MIN_MEASURED_S: u64 = 20 * 60;

/// One block of the drift table: long enough that its p99 rests on ~10⁵–10⁶ requests at soak
/// rates, short enough that a 30-minute soak still has three.
pub const DRIFT_BLOCK_S: u64 = 10 * 60;

/// A last, shorter block is shown (marked partial) from this long; a shorter rest is left out
/// (its p99 would rest on too little to compare with the full blocks').
pub const DRIFT_PARTIAL_BLOCK_MIN_S: u64 = 5 * 60;

/// More blocks than a week of them is not a window apibench writes (a corrupt `summary.json`):
/// no drift rather than a table, and an allocation, of that size.
const DRIFT_BLOCKS_MAX: u64 = 7 * 24 * 3_600 / DRIFT_BLOCK_S;

/// The RSS at the start (end) of the measured window is the median of its first (last) this many
/// seconds of samples: robust to one spike.
pub const RSS_EDGE_S: u64 = 60;

const MIB: f64 = 1024.0 * 1024.0;
const MS_PER_HOUR: f64 = 3_600_000.0;

/// One block of the measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftBlock {
    /// Where it starts, seconds from the load start.
    pub start_s: f64,
    /// Its span: [`DRIFT_BLOCK_S`], or less for the partial last block.
    pub duration_s: f64,
    /// The last block, shorter than the others.
    pub partial: bool,
    /// Successful completions in its full measured intervals.
    pub completed: u64,
    /// Failed requests in them (the log's `errors` entries).
    pub errors: u64,
    /// From the merged histogram of its intervals; 0 when nothing completed.
    pub p50_us: u64,
    pub p99_us: u64,
}

impl DriftBlock {
    /// Successful completions per second of the block (a second with none counts as zero).
    pub fn completed_per_sec(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.completed as f64 / self.duration_s
        } else {
            0.0
        }
    }

    /// Where it ends, seconds from the load start.
    pub fn end_s(&self) -> f64 {
        self.start_s + self.duration_s
    }
}

/// One process's RSS over the measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct RssTrend {
    /// Median of the samples in the window's first [`RSS_EDGE_S`].
    pub start_bytes: u64,
    /// Median of the samples in the window's last [`RSS_EDGE_S`].
    pub end_bytes: u64,
    /// Least-squares slope over every sample in the window.
    pub slope_mib_per_hour: f64,
    /// Samples in the window.
    pub samples: usize,
}

impl RssTrend {
    /// The trend of `pick`'s bytes over the samples taken in `from_ms..=to_ms` (sampling time);
    /// `None` with fewer than two samples or none at either edge (the process was not watched,
    /// or the file predates the column).
    pub fn of(
        rows: &[ResourceRow],
        (from_ms, to_ms): (u64, u64),
        pick: impl Fn(&ResourceRow) -> Option<u64>,
    ) -> Option<RssTrend> {
        let samples: Vec<(u64, u64)> = rows
            .iter()
            .filter(|r| (from_ms..=to_ms).contains(&r.elapsed_ms))
            .filter_map(|r| pick(r).map(|bytes| (r.elapsed_ms, bytes)))
            .collect();
        if samples.len() < 2 {
            return None;
        }
        let edge_ms = RSS_EDGE_S * 1000;
        let median_where = |keep: &dyn Fn(u64) -> bool| {
            let values: Vec<f64> = samples
                .iter()
                .filter(|(at_ms, _)| keep(*at_ms))
                .map(|(_, bytes)| *bytes as f64)
                .collect();
            Spread::of(&values).map(|s| s.median.round() as u64)
        };
        let start_bytes = median_where(&|at_ms| at_ms < from_ms + edge_ms)?;
        let end_bytes = median_where(&|at_ms| at_ms + edge_ms > to_ms)?;
        let points: Vec<(f64, f64)> = samples
            .iter()
            .map(|(at_ms, bytes)| ((at_ms - from_ms) as f64 / MS_PER_HOUR, *bytes as f64 / MIB))
            .collect();
        Some(RssTrend {
            start_bytes,
            end_bytes,
            slope_mib_per_hour: least_squares_slope(&points)?,
            samples: samples.len(),
        })
    }
}

/// The slope of the least-squares line through `points`; `None` when they share one x.
fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// A measurement's drift over its measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The measured window's length (the blocks cover it but for a rest under
    /// [`DRIFT_PARTIAL_BLOCK_MIN_S`]).
    pub measured_s: f64,
    /// Consecutive blocks from the warm-up's end; the last may be partial.
    pub blocks: Vec<DriftBlock>,
    /// Log entries that arrived after their block's percentiles were fixed: counted in its
    /// completions, not in its p50 / p99. The collector writes an interval seconds after it
    /// closes, so this stays 0 unless the log was written some other way.
    pub late_entries: u64,
    /// The target's process tree; `None` when it was not watched (url targets).
    pub target_rss: Option<RssTrend>,
    /// apibench's own; `None` in files from before the sampler recorded it.
    pub generator_rss: Option<RssTrend>,
}

impl Drift {
    /// The RSS trends over `m`'s measured window, from its resource rows. The rows' time counts
    /// from the sampler's start, a fraction of a second before the load's: close enough for a
    /// window of twenty minutes or more.
    pub(super) fn with_resources(mut self, rows: &[ResourceRow], m: &Measurement) -> Drift {
        let window_ms = (
            m.warmup_ms,
            m.warmup_ms.saturating_add(m.measured_duration_ms),
        );
        self.target_rss = RssTrend::of(rows, window_ms, |r| r.target_rss_bytes);
        self.generator_rss = RssTrend::of(rows, window_ms, |r| r.generator_rss_bytes);
        self
    }

    /// `block`'s p99 over the first block's; `None` when either has nothing completed.
    pub fn p99_ratio(&self, block: &DriftBlock) -> Option<f64> {
        let first = self.blocks.first()?;
        (first.p99_us > 0 && block.completed > 0).then(|| block.p99_us as f64 / first.p99_us as f64)
    }

    /// `block`'s p99 minus the first block's, µs; `None` when either has nothing completed.
    pub fn p99_change_us(&self, block: &DriftBlock) -> Option<i64> {
        let first = self.blocks.first()?;
        let signed = |us: u64| i64::try_from(us).unwrap_or(i64::MAX);
        (first.completed > 0 && block.completed > 0)
            .then(|| signed(block.p99_us) - signed(first.p99_us))
    }
}

/// The drift blocks of one log, accumulated while it streams (see the module's doc).
pub(super) struct DriftBlocks {
    warmup_ms: u64,
    measured_ms: u64,
    blocks: Vec<DriftBlock>,
    /// Merged histograms of the blocks whose percentiles are not fixed yet (two or three).
    open: BTreeMap<usize, Histogram<u64>>,
    /// Blocks before this index have their percentiles fixed.
    fixed_before: usize,
    late_entries: u64,
}

impl DriftBlocks {
    /// The blocks of `m`'s measured window; `None` when it is shorter than
    /// [`DRIFT_MIN_MEASURED_S`].
    pub(super) fn plan(m: &Measurement) -> Option<DriftBlocks> {
        let measured_ms = m.measured_duration_ms;
        let block_ms = DRIFT_BLOCK_S * 1000;
        if measured_ms < DRIFT_MIN_MEASURED_S * 1000 || measured_ms / block_ms > DRIFT_BLOCKS_MAX {
            return None;
        }
        let rest_ms = measured_ms % block_ms;
        let mut spans: Vec<(u64, bool)> =
            vec![(block_ms, false); (measured_ms / block_ms) as usize];
        if rest_ms >= DRIFT_PARTIAL_BLOCK_MIN_S * 1000 {
            spans.push((rest_ms, true));
        }
        let blocks = spans
            .into_iter()
            .enumerate()
            .map(|(index, (span_ms, partial))| DriftBlock {
                start_s: m.warmup_ms.saturating_add(index as u64 * block_ms) as f64 / 1000.0,
                duration_s: span_ms as f64 / 1000.0,
                partial,
                completed: 0,
                errors: 0,
                p50_us: 0,
                p99_us: 0,
            })
            .collect();
        Some(DriftBlocks {
            warmup_ms: m.warmup_ms,
            measured_ms,
            blocks,
            open: BTreeMap::new(),
            fixed_before: 0,
            late_entries: 0,
        })
    }

    /// The block `point` falls in, when it is a measured interval of a planned block. Moves the
    /// stream's position to it: every block two or more behind is fixed.
    fn enter(&mut self, point: &IntervalPoint) -> Option<usize> {
        let since_warmup_s = point.start_s - self.warmup_ms as f64 / 1000.0;
        if since_warmup_s < 0.0 {
            return None;
        }
        let index = (since_warmup_s / DRIFT_BLOCK_S as f64).floor() as usize;
        while self.fixed_before + 2 <= index && self.fixed_before < self.blocks.len() {
            self.fix(self.fixed_before);
        }
        (point.is_measured(self.warmup_ms) && index < self.blocks.len()).then_some(index)
    }

    /// The block's p50 and p99 from its merged histogram, which is then dropped.
    fn fix(&mut self, index: usize) {
        if let (Some(h), Some(block)) = (self.open.remove(&index), self.blocks.get_mut(index)) {
            (block.p50_us, block.p99_us) = p50_p99(&h);
        }
        self.fixed_before = self.fixed_before.max(index + 1);
    }

    /// An untagged entry (successes' latencies).
    pub(super) fn add_successes(
        &mut self,
        point: &IntervalPoint,
        h: &Histogram<u64>,
    ) -> Result<(), String> {
        let Some(index) = self.enter(point) else {
            return Ok(());
        };
        self.blocks[index].completed += h.len();
        if index < self.fixed_before {
            self.late_entries += 1;
            return Ok(());
        }
        self.open
            .entry(index)
            .or_insert_with(recorder::new_histogram)
            .add(h)
            .map_err(|e| format!("interval at {} s: {e:?}", point.start_s))
    }

    /// An `errors` entry: `failed` requests.
    pub(super) fn add_errors(&mut self, point: &IntervalPoint, failed: u64) {
        if let Some(index) = self.enter(point) {
            self.blocks[index].errors += failed;
        }
    }

    /// Every block fixed; the RSS trends are added from the resource rows
    /// ([`Drift::with_resources`]).
    pub(super) fn finish(mut self) -> Drift {
        while self.fixed_before < self.blocks.len() {
            self.fix(self.fixed_before);
        }
        Drift {
            measured_s: self.measured_ms as f64 / 1000.0,
            blocks: self.blocks,
            late_entries: self.late_entries,
            target_rss: None,
            generator_rss: None,
        }
    }

    /// Histograms held right now (what bounds the memory).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::latency_log::read_latency_log;
    use super::super::test_logs::{SyntheticLog, measurement};
    use super::*;

    const WARMUP_S: u64 = 30;
    const MIN: u64 = 60;

    /// Latency that is steady (2–3 ms with a 20 ms tail every 50th request) for 30 minutes, then
    /// twice as slow in the last 5.
    fn soak_latency_us(interval: u64, k: u64) -> u64 {
        let base = 2_000 + (k % 10) * 100 + if k % 50 == 49 { 18_000 } else { 0 };
        if interval >= WARMUP_S + 30 * MIN {
            base * 2
        } else {
            base
        }
    }

    #[test]
    fn a_35_minute_soak_has_three_full_blocks_and_a_partial_one_with_merged_percentiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.hlog");
        let soak = SyntheticLog {
            intervals: WARMUP_S + 35 * MIN,
            warmup_s: WARMUP_S,
            per_interval: 100,
            latency: soak_latency_us,
        };
        soak.write(&path);
        let log = read_latency_log(&path, &soak.measurement(), super::super::Ending::Finished)
            .expect("reads");
        let drift = log.drift.expect("a 35-minute window has a drift");

        let spans: Vec<(f64, f64, bool)> = drift
            .blocks
            .iter()
            .map(|b| (b.start_s, b.duration_s, b.partial))
            .collect();
        assert_eq!(
            spans,
            [
                (30.0, 600.0, false),
                (630.0, 600.0, false),
                (1_230.0, 600.0, false),
                (1_830.0, 300.0, true),
            ],
            "3 blocks of 10 minutes from the warm-up's end, then 5 minutes marked partial"
        );
        for block in &drift.blocks {
            let merged = soak.latencies(block.start_s as u64..block.end_s() as u64);
            assert_eq!(block.completed, merged.len(), "{block:?}");
            assert_eq!(block.p99_us, merged.value_at_quantile(0.99), "{block:?}");
            assert_eq!(block.p50_us, merged.value_at_quantile(0.50), "{block:?}");
            assert_eq!(block.completed_per_sec(), 100.0);
            assert_eq!(block.errors, 0);
        }
        let last = drift.blocks.last().expect("blocks");
        let ratio = drift.p99_ratio(last).expect("ratio");
        assert!(
            (ratio - 2.0).abs() < 0.01,
            "p99 doubled in the last block: {ratio}"
        );
        assert!(drift.p99_change_us(last).expect("change") > 15_000);
        assert_eq!(
            drift.p99_ratio(&drift.blocks[1]),
            Some(1.0),
            "steady before"
        );
        assert_eq!(drift.late_entries, 0);
    }

    #[test]
    fn the_stream_holds_a_few_block_histograms_and_counts_an_entry_for_a_fixed_block() {
        let m = measurement(0, 40 * MIN, 0);
        let mut blocks = DriftBlocks::plan(&m).expect("40 minutes");
        let mut h = recorder::new_histogram();
        recorder::record_clamped(&mut h, 5_000);
        let point = |start_s: u64| IntervalPoint {
            start_s: start_s as f64,
            p50_us: 0,
            p99_us: 0,
            completed: 1,
            duration_s: 1.0,
            after_schedule: false,
        };
        let mut most_held = 0;
        for second in 0..40 * MIN {
            blocks.add_successes(&point(second), &h).expect("adds");
            most_held = most_held.max(blocks.held());
        }
        assert!(most_held <= 3, "held {most_held} block histograms at once");
        // An entry for the first block, long after it was fixed: counted, and said.
        blocks.add_successes(&point(10), &h).expect("adds");
        let drift = blocks.finish();
        assert_eq!(drift.late_entries, 1);
        assert_eq!(drift.blocks[0].completed, 601);
        assert_eq!(drift.blocks[3].completed, 600);
        assert!(drift.blocks.iter().all(|b| b.p99_us >= 5_000));
    }

    #[test]
    fn a_window_under_twenty_minutes_has_no_drift() {
        assert!(DriftBlocks::plan(&measurement(30, 10 * MIN, 0)).is_none());
        assert!(DriftBlocks::plan(&measurement(30, 20 * MIN - 1, 0)).is_none());
        let just = DriftBlocks::plan(&measurement(30, 20 * MIN, 0)).expect("20 minutes");
        assert_eq!(just.blocks.len(), 2);
        // A rest under 5 minutes is left out.
        let rest = DriftBlocks::plan(&measurement(30, 24 * MIN, 0)).expect("24 minutes");
        assert_eq!(rest.blocks.len(), 2);
        // A corrupt summary's absurd window plans nothing rather than billions of blocks.
        assert!(DriftBlocks::plan(&measurement(30, u64::MAX / 1000, 0)).is_none());
    }

    #[test]
    fn a_linear_rss_gives_the_slope_put_in_and_edge_medians_ignore_a_spike() {
        const SLOPE_MIB_PER_HOUR: f64 = 48.0;
        let (warmup_ms, measured_ms) = (30_000u64, 30 * MIN * 1000);
        let base_bytes = 200.0 * MIB;
        let rows: Vec<ResourceRow> = (0..=(warmup_ms + measured_ms + 5_000) / 250)
            .map(|i| {
                let at_ms = i * 250;
                let grown = SLOPE_MIB_PER_HOUR * MIB * at_ms as f64 / MS_PER_HOUR;
                // apibench's own RSS is flat but for one spike in the window's first minute.
                let spike = if at_ms == warmup_ms + 2_000 {
                    500 << 20
                } else {
                    0
                };
                ResourceRow {
                    elapsed_ms: at_ms,
                    target_rss_bytes: Some((base_bytes + grown) as u64),
                    generator_rss_bytes: Some((30 << 20) + spike),
                    ..ResourceRow::default()
                }
            })
            .collect();
        let m = Measurement {
            warmup_ms,
            measured_duration_ms: measured_ms,
            ..Measurement::default()
        };
        let drift = DriftBlocks::plan(&m)
            .expect("30 minutes")
            .finish()
            .with_resources(&rows, &m);
        let target = drift.target_rss.expect("target watched");
        let error = (target.slope_mib_per_hour - SLOPE_MIB_PER_HOUR).abs() / SLOPE_MIB_PER_HOUR;
        assert!(error < 0.01, "slope {} MiB/h", target.slope_mib_per_hour);
        // The medians of the window's first and last minutes: the line half a minute in (60 s
        // from the load start) and half a minute before its end (1,800 s).
        let mib = |bytes: u64| bytes as f64 / MIB;
        let line_at = |s: f64| 200.0 + SLOPE_MIB_PER_HOUR * s / 3_600.0;
        assert!((mib(target.start_bytes) - line_at(60.0)).abs() < 0.01);
        assert!((mib(target.end_bytes) - line_at(1_800.0)).abs() < 0.01);
        assert_eq!(target.samples, (measured_ms / 250 + 1) as usize);
        let generator = drift.generator_rss.expect("generator recorded");
        assert_eq!(
            (generator.start_bytes, generator.end_bytes),
            (30 << 20, 30 << 20),
            "one spike does not move the start"
        );
    }

    #[test]
    fn a_process_not_watched_has_no_trend() {
        let rows = vec![
            ResourceRow {
                elapsed_ms: 100,
                ..ResourceRow::default()
            };
            10
        ];
        assert!(RssTrend::of(&rows, (0, 1_000), |r| r.target_rss_bytes).is_none());
    }
}
