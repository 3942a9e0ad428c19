//! Is a change real, or noise? One rule for `apibench compare` and `apibench gate --baseline`.
//!
//! Every figure compared (goodput, p50, p99, p99.9, errors, RSS; overall and per request) gets a
//! bootstrap distribution of its ratio B/A, [`RESAMPLES`] resamples from a seeded RNG, so the
//! same two runs always give the same answer:
//!
//! - **Repetitions** — when *both* runs have 2 or more repetitions: each run's repetitions are
//!   resampled with replacement (separately), and a resample's ratio is the median of B's
//!   resample over the median of A's ([`bootstrap_repetitions`]).
//! - **Intervals** — otherwise (1 vs 1, 1 vs many), for the figures a 1 s interval of
//!   `latency.hlog` can give (overall goodput and latency percentiles): a moving-block bootstrap
//!   over the full 1 s intervals inside each run's measured window, blocks of
//!   [`BLOCK_INTERVALS`] consecutive intervals, never across repetitions
//!   ([`bootstrap_intervals`]). A latency percentile is read from the chosen intervals'
//!   histograms summed; goodput is their completions over their duration. A long run's
//!   intervals arrive as coarser units — k consecutive seconds merged, so that no more than
//!   [`crate::saved::MEASURED_UNITS_MAX`] histograms are held per measurement — and the
//!   bootstrap treats a unit as it treats an interval (see [`BLOCK_INTERVALS`]).
//! - **None** — no repetitions on both sides and no interval log (runs written before there was
//!   one), or a figure the log cannot give (per-request figures, errors, RSS of runs without
//!   repetitions): the old rule — the relative threshold alone decides (and, where one side has
//!   repetitions, the min–max spreads must not overlap) — and the judgement says "no noise
//!   estimate". These figures take no part in the correction below.
//!
//! **The rule.** Let `t` be the threshold (compare's `--threshold`, the gate's
//! `--max-regression`), `L = 1 − t`, `U = 1 + t`, and `r₁ ≤ … ≤ r_B` a figure's sorted resampled
//! ratios (`B` = [`RESAMPLES`]). Its p-value for "the change is within the threshold" is
//! `p = min(1, 2 · min(#{rᵢ ≤ U}, #{rᵢ ≥ L}) / B)` — twice the share of resamples on the benign
//! side of the nearer threshold bound. Its interval at level `ℓ` (a `1 − ℓ` interval) is
//! `[r_(j+1), r_(B−j)]` with `j = ⌊ℓ·B/2⌋`. Holm–Bonferroni over the `m` figures *with* a noise
//! estimate in one `compare` or `gate` invocation, family-wise `α` = [`ALPHA`]: sort them by `p`;
//! the figure of rank `k` (1-based) is read at `ℓₖ = α / (m − k + 1)`; walking up the ranks, a
//! change is called while the figure's interval at `ℓₖ` lies wholly outside `[L, U]` (above `U`:
//! B is higher; below `L`: lower; [`Better`] says which is the improvement); from the first figure
//! whose interval does not, the walk stops, and that figure and every later one are within
//! noise and show their interval at the level where it stopped. So a called change's interval
//! always lies outside `1 ± t`, and an uncalled one's always reaches inside it. Ties in `p` keep
//! the figures' order. The ratio shown is the ratio of the figures as reported (medians over
//! repetitions); the interval says how far noise could move it.
//!
//! Intervals from within one run cannot see what changes between runs (a fresh database copy,
//! the machine's state): the repetitions estimate can, which is why CI should use `--repeat`.
//! This module only decides; it never reads files or prints.

use crate::saved::{MeasuredInterval, Spread};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Family-wise error rate of one compare or gate: the chance that any within-noise figure is
/// called a change.
pub const ALPHA: f64 = 0.05;

/// Bootstrap resamples per figure. With Holm over ~30 figures the smallest level is
/// 0.05 / 30 ≈ 0.0017, so the interval's tails need `⌊ℓ·B/2⌋ ≥ 1` resamples to mean something:
/// 2000 gives that and still judges a gate in a few milliseconds per figure.
pub const RESAMPLES: usize = 2000;

/// Consecutive 1 s intervals per bootstrap block. Latency in a load test is correlated over a
/// few seconds — a GC pause, a checkpoint, a backlog draining spans neighbouring intervals — so
/// resampling single seconds as if independent would understate the noise. Longer blocks keep
/// more of that dependence but leave fewer distinct blocks in a short run, which makes the
/// interval itself noisy; the usual rule of thumb, a block of about n^(1/3), is 3 for the
/// 30–60 s windows apibench's scenarios measure (30^(1/3) ≈ 3.1).
///
/// A run with more than [`crate::saved::MEASURED_UNITS_MAX`] measured seconds comes as units of
/// k consecutive seconds merged ([`crate::saved::load_measured_intervals`]), and a block is then
/// 3 units, 3k seconds. That keeps the estimate honest: a resample's statistic only ever sums
/// intervals (histograms added, completions over seconds), so a unit is exactly the k seconds it
/// stands for; a moving-block bootstrap already resamples consecutive time, and a longer block
/// keeps more of the run's short-range dependence, not less — for a 2 h run, 36 s blocks where
/// n^(1/3) would suggest ~19 s, slightly conservative; and with 600 units there are still ~600
/// distinct blocks to draw, so the interval is not noisy for want of blocks.
pub const BLOCK_INTERVALS: usize = 3;

/// Which way is good for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latency, errors, memory.
    Lower,
    /// Throughput.
    Higher,
}

impl Better {
    pub fn label(self) -> &'static str {
        match self {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    WithinNoise,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// What a figure's noise was estimated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseEstimate {
    /// Both runs' repetitions, resampled.
    Repetitions,
    /// The 1 s intervals of each run's `latency.hlog`, block-resampled.
    Intervals,
    /// Nothing: the threshold alone decided.
    None,
}

impl NoiseEstimate {
    pub fn label(self) -> &'static str {
        match self {
            NoiseEstimate::Repetitions => "bootstrap over repetitions",
            NoiseEstimate::Intervals => "block bootstrap over 1 s intervals",
            NoiseEstimate::None => "no noise estimate",
        }
    }
}

/// The outcome of comparing one figure of two runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// B's figure over A's (medians over repetitions); `None` when A is 0 and B is not.
    pub ratio: Option<f64>,
    pub noise_estimate: NoiseEstimate,
    /// `noise_estimate` is not `none` (kept for readers of the older JSON).
    pub noise_estimated: bool,
    /// The bootstrap interval of B/A at `ci_level`; `None` without a noise estimate. An
    /// unbounded end (A was 0 in some resamples) is `None` as well and shows as ∞.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The interval's confidence after Holm's correction, e.g. 0.9983.
    pub ci_level: Option<f64>,
    /// Bootstrap p-value for "the change is within the threshold", before the correction.
    pub p_value: Option<f64>,
}

/// A figure's bootstrap distribution of B/A.
#[derive(Debug, Clone, PartialEq)]
pub struct Resampled {
    pub source: NoiseEstimate,
    /// Sorted ascending; `+∞` where A's resample was 0 and B's was not.
    ratios: Vec<f64>,
}

impl Resampled {
    fn new(source: NoiseEstimate, mut ratios: Vec<f64>) -> Resampled {
        ratios.sort_by(f64::total_cmp);
        Resampled { source, ratios }
    }

    /// `p = min(1, 2 · min(#{r ≤ 1 + t}, #{r ≥ 1 − t}) / B)`: see the module's rule.
    pub fn p_value(&self, threshold: f64) -> f64 {
        let n = self.ratios.len();
        if n == 0 {
            return 1.0;
        }
        let at_most_upper = self.ratios.partition_point(|r| *r <= 1.0 + threshold);
        let at_least_lower = n - self.ratios.partition_point(|r| *r < 1.0 - threshold);
        (2.0 * at_most_upper.min(at_least_lower) as f64 / n as f64).min(1.0)
    }

    /// The `1 − level` percentile interval `[r_(j+1), r_(B−j)]`, `j = ⌊level·B/2⌋`.
    pub fn interval(&self, level: f64) -> Option<(f64, f64)> {
        let n = self.ratios.len();
        if n == 0 {
            return None;
        }
        let j = ((level * n as f64 / 2.0).floor() as usize).min((n - 1) / 2);
        Some((self.ratios[j], self.ratios[n - 1 - j]))
    }
}

/// One figure to judge: the reported values and, when there is one, its noise estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub a: Spread,
    pub b: Spread,
    pub better: Better,
    pub resampled: Option<Resampled>,
}

/// B/A of two statistics: 1 when both are 0, `+∞` when only A is.
fn ratio_of(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        if b == 0.0 { 1.0 } else { f64::INFINITY }
    } else {
        b / a
    }
}

/// A stable seed from a figure's identity, so every figure has its own reproducible stream
/// whatever order the figures are judged in.
pub fn seed_for(parts: &[&str]) -> u64 {
    // FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn median_in_place(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Resamples each run's repetition values with replacement; a resample's ratio is
/// median(B's resample) / median(A's resample). `None` unless both have 2 or more values.
pub fn bootstrap_repetitions(a: &[f64], b: &[f64], seed: u64) -> Option<Resampled> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scratch = Vec::with_capacity(a.len().max(b.len()));
    let mut resample_median = |values: &[f64], rng: &mut StdRng| {
        scratch.clear();
        scratch.extend((0..values.len()).map(|_| values[rng.gen_range(0..values.len())]));
        median_in_place(&mut scratch)
    };
    let ratios = (0..RESAMPLES)
        .map(|_| {
            let median_a = resample_median(a, &mut rng);
            let median_b = resample_median(b, &mut rng);
            ratio_of(median_a, median_b)
        })
        .collect();
    Some(Resampled::new(NoiseEstimate::Repetitions, ratios))
}

/// What a resample of 1 s intervals is turned into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IntervalStatistic {
    /// A latency quantile (0.5, 0.99, 0.999) of the chosen intervals' histograms summed.
    Quantile(f64),
    /// Completions per second over the chosen intervals (successes only: goodput).
    CompletionsPerSec,
}

/// `max(1, ⌈q·total⌉)`: the rank hdrhistogram's `value_at_quantile` reads, so a resample's
/// percentile is the one the summed histogram would report.
fn rank_at_quantile(quantile: f64, total: u64) -> u64 {
    ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1)
}

/// Two (value, count) lists sorted by value, merged into one; equal values add their counts.
fn merge_sorted(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x.0 < y.0 {
            out.push(x);
            i += 1;
        } else if y.0 < x.0 {
            out.push(y);
            j += 1;
        } else {
            out.push((x.0, x.1 + y.1));
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// One 1 s interval as a sorted list of its recorded values.
#[derive(Debug, Clone)]
struct Interval {
    completions: u64,
    duration_s: f64,
    /// Distinct recorded values (each bucket's highest equivalent value), ascending.
    values: Vec<u64>,
    /// Completions at or below each of `values`.
    cumulative: Vec<u64>,
}

impl Interval {
    fn of(measured: &MeasuredInterval) -> Interval {
        let mut running = 0u64;
        let (values, cumulative) = measured
            .histogram
            .iter_recorded()
            .map(|v| {
                running += v.count_at_value();
                (v.value_iterated_to(), running)
            })
            .unzip();
        Interval {
            completions: running,
            duration_s: measured.duration_s,
            values,
            cumulative,
        }
    }

    fn count_at_or_below(&self, value: u64) -> u64 {
        match self.values.partition_point(|v| *v <= value) {
            0 => 0,
            i => self.cumulative[i - 1],
        }
    }
}

/// `BLOCK_INTERVALS` consecutive intervals of one repetition (fewer when it is shorter).
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Index of its first interval in [`IntervalSeries::intervals`].
    start: usize,
    len: usize,
    completions: u64,
    duration_s: f64,
}

/// One run's measured 1 s intervals and their moving blocks, prepared once so that a resample
/// only picks blocks and reads counts — no histogram is summed per resample.
#[derive(Debug, Clone)]
pub struct IntervalSeries {
    intervals: Vec<Interval>,
    blocks: Vec<Block>,
    /// Blocks per resample: about as many intervals as the run measured.
    draws: usize,
    /// Every interval's distinct values, sorted: where a resample's quantile is searched.
    grid: Vec<u64>,
}

impl IntervalSeries {
    /// From each measurement's (repetition's) full measured intervals (or units of them, for a
    /// long run: see [`BLOCK_INTERVALS`]), in time order. `None`
    /// when there are none. Blocks never span two repetitions; a repetition shorter than a
    /// block is one block.
    pub fn new(segments: &[Vec<MeasuredInterval>]) -> Option<IntervalSeries> {
        let mut intervals: Vec<Interval> = Vec::new();
        let mut blocks = Vec::new();
        for segment in segments.iter().filter(|s| !s.is_empty()) {
            let first = intervals.len();
            intervals.extend(segment.iter().map(Interval::of));
            let len = BLOCK_INTERVALS.min(segment.len());
            for start in first..=intervals.len() - len {
                let members = &intervals[start..start + len];
                blocks.push(Block {
                    start,
                    len,
                    completions: members.iter().map(|i| i.completions).sum(),
                    duration_s: members.iter().map(|i| i.duration_s).sum(),
                });
            }
        }
        if blocks.is_empty() {
            return None;
        }
        let mean_block = blocks.iter().map(|b| b.len).sum::<usize>() as f64 / blocks.len() as f64;
        let draws = ((intervals.len() as f64 / mean_block).round() as usize).max(1);
        let mut every_value: Vec<(u64, u64)> = Vec::new();
        for interval in &intervals {
            let own: Vec<(u64, u64)> = interval.values.iter().map(|v| (*v, 0)).collect();
            every_value = merge_sorted(&every_value, &own);
        }
        Some(IntervalSeries {
            intervals,
            blocks,
            draws,
            grid: every_value.into_iter().map(|(value, _)| value).collect(),
        })
    }

    fn draw(&self, rng: &mut StdRng, chosen: &mut Vec<usize>) {
        chosen.clear();
        chosen.extend((0..self.draws).map(|_| rng.gen_range(0..self.blocks.len())));
    }

    fn members(&self, block: usize) -> &[Interval] {
        let b = &self.blocks[block];
        &self.intervals[b.start..b.start + b.len]
    }

    /// Everything a resample of `statistic` needs that does not depend on the resample.
    fn prepare(&self, statistic: IntervalStatistic) -> Prepared {
        match statistic {
            IntervalStatistic::CompletionsPerSec => Prepared::CompletionsPerSec,
            IntervalStatistic::Quantile(q) => Prepared::Quantile(self.quantile_table(q)),
        }
    }

    /// The smallest grid index whose value has at least `rank` of `count`'s completions at or
    /// below it, searched in `lo..=hi` (which must hold it).
    fn search(
        &self,
        mut lo: usize,
        mut hi: usize,
        rank: u64,
        count: impl Fn(usize) -> u64,
    ) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if count(mid) >= rank {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn quantile_table(&self, quantile: f64) -> QuantileTable {
        // Per block, the grid index of its own value at the quantile: a mixture's quantile lies
        // between its parts' lowest and highest, which brackets every resample's search.
        let last = self.grid.len().saturating_sub(1);
        let own: Vec<Option<usize>> = (0..self.blocks.len())
            .map(|b| {
                let completions = self.blocks[b].completions;
                (completions > 0).then(|| {
                    let rank = rank_at_quantile(quantile, completions);
                    self.search(0, last, rank, |index| {
                        let value = self.grid[index];
                        self.members(b)
                            .iter()
                            .map(|i| i.count_at_or_below(value))
                            .sum()
                    })
                })
            })
            .collect();
        let mut table = QuantileTable {
            quantile,
            own,
            window_start: 0,
            window_rows: 0,
            rows: Vec::new(),
        };
        let (Some(lo), Some(hi)) = (
            table.own.iter().flatten().min().copied(),
            table.own.iter().flatten().max().copied(),
        ) else {
            return table;
        };
        // One row below the lowest, for the search's check that the bracket holds.
        let lo = lo.saturating_sub(1);
        let rows = hi - lo + 1;
        let width = self.blocks.len();
        let fits = rows.saturating_mul(width.max(self.intervals.len())) <= QuantileTable::MAX_CELLS
            && self
                .blocks
                .iter()
                .all(|b| u32::try_from(b.completions).is_ok());
        if !fits {
            return table;
        }
        // Row r, column i: interval i's completions at or below grid[lo + r]...
        let columns = self.intervals.len();
        let mut per_interval = vec![0u32; rows * columns];
        for (column, interval) in self.intervals.iter().enumerate() {
            let mut next = interval.values.partition_point(|v| *v < self.grid[lo]);
            let mut at_or_below = next.checked_sub(1).map_or(0, |i| interval.cumulative[i]);
            for row in 0..rows {
                let value = self.grid[lo + row];
                while next < interval.values.len() && interval.values[next] <= value {
                    at_or_below = interval.cumulative[next];
                    next += 1;
                }
                // Fits: a block's completions fit in u32 (checked above), so an interval's do.
                per_interval[row * columns + column] = at_or_below as u32;
            }
        }
        // ...and per block, its intervals' summed: one cell read per chosen block and step.
        let mut cells = vec![0u32; rows * width];
        for row in 0..rows {
            let counts = &per_interval[row * columns..(row + 1) * columns];
            for (column, block) in self.blocks.iter().enumerate() {
                cells[row * width + column] =
                    counts[block.start..block.start + block.len].iter().sum();
            }
        }
        table.window_start = lo;
        table.window_rows = rows;
        table.rows = cells;
        table
    }

    fn statistic(&self, chosen: &[usize], prepared: &Prepared) -> f64 {
        match prepared {
            Prepared::CompletionsPerSec => {
                let completions: u64 = chosen.iter().map(|&b| self.blocks[b].completions).sum();
                let seconds: f64 = chosen.iter().map(|&b| self.blocks[b].duration_s).sum();
                if seconds > 0.0 {
                    completions as f64 / seconds
                } else {
                    0.0
                }
            }
            Prepared::Quantile(table) => self.quantile(chosen, table) as f64,
        }
    }

    /// The value hdrhistogram's `value_at_quantile` would give for the chosen blocks' histograms
    /// summed: the smallest recorded value with at least `rank` completions at or below it.
    fn quantile(&self, chosen: &[usize], table: &QuantileTable) -> u64 {
        let total: u64 = chosen.iter().map(|&b| self.blocks[b].completions).sum();
        if total == 0 || self.grid.is_empty() {
            return 0;
        }
        let rank = rank_at_quantile(table.quantile, total);
        let count_at_or_below = |index: usize| -> u64 {
            match table.row(index, self.blocks.len()) {
                Some(row) => chosen.iter().map(|&b| u64::from(row[b])).sum(),
                None => {
                    let value = self.grid[index];
                    chosen
                        .iter()
                        .flat_map(|&b| self.members(b))
                        .map(|i| i.count_at_or_below(value))
                        .sum()
                }
            }
        };
        let last = self.grid.len() - 1;
        let mut lo = chosen
            .iter()
            .filter_map(|&b| table.own[b])
            .min()
            .unwrap_or(0);
        let mut hi = chosen
            .iter()
            .filter_map(|&b| table.own[b])
            .max()
            .unwrap_or(last);
        // The bracket holds in exact arithmetic; widen it if floating-point ranks disagree.
        if count_at_or_below(hi) < rank {
            hi = last;
        }
        if lo > 0 && count_at_or_below(lo - 1) >= rank {
            lo = 0;
        }
        self.grid[self.search(lo, hi, rank, count_at_or_below)]
    }
}

/// What one figure's resamples share, computed once per run.
enum Prepared {
    CompletionsPerSec,
    Quantile(QuantileTable),
}

/// For one quantile: each block's own quantile (as a grid index) and, when it fits, a table of
/// every block's count at or below each grid value between the lowest and highest of those —
/// the only values a resample's quantile can take. A search step then sums one short row
/// instead of binary-searching every chosen interval.
struct QuantileTable {
    quantile: f64,
    own: Vec<Option<usize>>,
    window_start: usize,
    window_rows: usize,
    /// `window_rows` rows of one `u32` per block; empty when the table would not fit.
    rows: Vec<u32>,
}

impl QuantileTable {
    /// At most 16 MiB per run and figure; beyond, the search reads the intervals' sorted values.
    const MAX_CELLS: usize = 4 * 1024 * 1024;

    fn row(&self, grid_index: usize, width: usize) -> Option<&[u32]> {
        let row = grid_index.checked_sub(self.window_start)?;
        if row >= self.window_rows {
            return None;
        }
        self.rows.get(row * width..(row + 1) * width)
    }
}

/// Moving-block bootstrap of each run's intervals (separately); a resample's ratio is B's
/// statistic over A's.
pub fn bootstrap_intervals(
    a: &IntervalSeries,
    b: &IntervalSeries,
    statistic: IntervalStatistic,
    seed: u64,
) -> Resampled {
    let (prepared_a, prepared_b) = (a.prepare(statistic), b.prepare(statistic));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(a.draws.max(b.draws));
    let ratios = (0..RESAMPLES)
        .map(|_| {
            a.draw(&mut rng, &mut chosen);
            let value_a = a.statistic(&chosen, &prepared_a);
            b.draw(&mut rng, &mut chosen);
            let value_b = b.statistic(&chosen, &prepared_b);
            ratio_of(value_a, value_b)
        })
        .collect();
    Resampled::new(NoiseEstimate::Intervals, ratios)
}

fn reported_ratio(a: &Spread, b: &Spread) -> Option<f64> {
    if a.median == 0.0 {
        (b.median == 0.0).then_some(1.0)
    } else {
        Some(b.median / a.median)
    }
}

fn directed(better: Better, increased: bool) -> Verdict {
    match (better, increased) {
        (Better::Lower, false) | (Better::Higher, true) => Verdict::Improved,
        _ => Verdict::Regressed,
    }
}

/// Without a noise estimate: the threshold alone decides — and where one side has
/// repetitions, their min–max spreads must not overlap.
pub fn judge_without_estimate(a: &Spread, b: &Spread, better: Better, threshold: f64) -> Judgement {
    let ratio = reported_ratio(a, b);
    let beyond_threshold = match ratio {
        Some(r) => (r - 1.0).abs() > threshold,
        None => true,
    };
    // A single value is a spread of width zero, so one run with repetitions still counts.
    let spreads_apart = b.min > a.max || b.max < a.min;
    let outside_noise = if a.has_spread() || b.has_spread() {
        spreads_apart
    } else {
        true
    };
    let verdict = if beyond_threshold && outside_noise && b.median != a.median {
        directed(better, b.median > a.median)
    } else {
        Verdict::WithinNoise
    };
    Judgement {
        verdict,
        ratio,
        noise_estimate: NoiseEstimate::None,
        noise_estimated: false,
        ci_low: None,
        ci_high: None,
        ci_level: None,
        p_value: None,
    }
}

/// Whether an interval lies wholly outside `[1 − t, 1 + t]`: `Some(true)` above (B higher),
/// `Some(false)` below.
fn outside(interval: (f64, f64), threshold: f64) -> Option<bool> {
    if interval.0 > 1.0 + threshold {
        Some(true)
    } else if interval.1 < 1.0 - threshold {
        Some(false)
    } else {
        None
    }
}

/// Holm–Bonferroni step-down over the figures that have a noise estimate: for each, the level
/// its interval is read at (see the module's rule); `None` for figures without an estimate.
fn holm_levels(candidates: &[&Candidate], threshold: f64) -> Vec<Option<f64>> {
    let p_values: Vec<Option<f64>> = candidates
        .iter()
        .map(|c| c.resampled.as_ref().map(|r| r.p_value(threshold)))
        .collect();
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| p_values[i].is_some())
        .collect();
    order.sort_by(|&i, &j| {
        p_values[i]
            .unwrap_or(1.0)
            .total_cmp(&p_values[j].unwrap_or(1.0))
    });
    let tested = order.len();
    let mut levels = vec![None; candidates.len()];
    let mut stopped_at: Option<f64> = None;
    for (rank, &i) in order.iter().enumerate() {
        let level = stopped_at.unwrap_or(ALPHA / (tested - rank) as f64);
        let rejected = candidates[i]
            .resampled
            .as_ref()
            .and_then(|r| r.interval(level))
            .and_then(|interval| outside(interval, threshold))
            .is_some();
        if !rejected {
            stopped_at.get_or_insert(level);
        }
        levels[i] = Some(level);
    }
    levels
}

/// Judges every figure of one compare or gate together, so Holm's correction sees them all.
/// The judgements come back in the candidates' order.
pub fn judge_family(candidates: &[&Candidate], threshold: f64) -> Vec<Judgement> {
    let levels = holm_levels(candidates, threshold);
    candidates
        .iter()
        .zip(levels)
        .map(|(c, level)| {
            let (Some(resampled), Some(level)) = (&c.resampled, level) else {
                return judge_without_estimate(&c.a, &c.b, c.better, threshold);
            };
            let interval = resampled.interval(level);
            let verdict = match interval.and_then(|i| outside(i, threshold)) {
                Some(increased) => directed(c.better, increased),
                None => Verdict::WithinNoise,
            };
            let finite = |x: f64| x.is_finite().then_some(x);
            Judgement {
                verdict,
                ratio: reported_ratio(&c.a, &c.b),
                noise_estimate: resampled.source,
                noise_estimated: true,
                ci_low: interval.and_then(|i| finite(i.0)),
                ci_high: interval.and_then(|i| finite(i.1)),
                ci_level: Some(1.0 - level),
                p_value: Some(resampled.p_value(threshold)),
            }
        })
        .collect()
}

/// Parses a percentage flag: `10%`, `10` (both ten percent) or `2.5%`; returns a fraction.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage (e.g. 10%)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}`: a percentage must be zero or more"));
    }
    Ok(value / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder;
    use hdrhistogram::Histogram;

    fn s(values: &[f64]) -> Spread {
        Spread::of(values).expect("values")
    }

    /// Judges one figure from repetition values, alone in its family.
    fn judge_repetitions(a: &[f64], b: &[f64], better: Better, threshold: f64) -> Judgement {
        let candidate = Candidate {
            a: s(a),
            b: s(b),
            better,
            resampled: bootstrap_repetitions(a, b, 7),
        };
        judge_family(&[&candidate], threshold)[0]
    }

    #[test]
    fn a_change_inside_either_spread_is_noise() {
        // Resampled medians: B/A reaches 125/130 ≈ 0.96 in about 7 % of resamples, so the
        // interval reaches inside 1.05.
        let j = judge_repetitions(
            &[100.0, 110.0, 130.0],
            &[125.0, 140.0, 150.0],
            Better::Lower,
            0.05,
        );
        assert_eq!(j.verdict, Verdict::WithinNoise);
        assert_eq!(j.noise_estimate, NoiseEstimate::Repetitions);
        assert!(j.noise_estimated);
        let (low, high) = (j.ci_low.expect("low"), j.ci_high.expect("high"));
        assert!(low <= 1.05 && high > 1.05, "[{low}, {high}]");
        assert!(j.p_value.is_some_and(|p| p > ALPHA), "{j:?}");
    }

    #[test]
    fn separated_spreads_beyond_threshold_are_called_with_direction() {
        let (a, b) = ([100.0, 105.0, 110.0], [140.0, 150.0, 160.0]);
        let regressed = judge_repetitions(&a, &b, Better::Lower, 0.05);
        assert_eq!(regressed.verdict, Verdict::Regressed);
        assert!(
            regressed.ci_low.is_some_and(|low| low > 1.05),
            "{regressed:?}"
        );
        assert_eq!(regressed.p_value, Some(0.0));
        assert_eq!(
            judge_repetitions(&a, &b, Better::Higher, 0.05).verdict,
            Verdict::Improved
        );
    }

    #[test]
    fn separated_but_below_threshold_is_noise() {
        let j = judge_repetitions(
            &[100.0, 100.5, 101.0],
            &[102.0, 102.5, 103.0],
            Better::Lower,
            0.05,
        );
        assert_eq!(j.verdict, Verdict::WithinNoise);
        assert_eq!(j.p_value, Some(1.0));
    }

    #[test]
    fn the_repetitions_bootstrap_is_reproducible_and_brackets_the_medians() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let b = [111.0, 108.0, 110.0, 112.0, 109.0];
        let first = bootstrap_repetitions(&a, &b, 1).expect("resampled");
        assert_eq!(Some(&first), bootstrap_repetitions(&a, &b, 1).as_ref());
        let (low, high) = first.interval(0.05).expect("interval");
        assert!(
            low >= 108.0 / 102.0 && high <= 112.0 / 98.0,
            "[{low}, {high}]"
        );
        assert!(
            low < 1.10 && high > 1.10,
            "the point 1.10 is inside: [{low}, {high}]"
        );
        assert!(bootstrap_repetitions(&a, &[1.0], 1).is_none());
    }

    #[test]
    fn without_noise_estimate_the_threshold_decides_and_says_so() {
        let candidate = Candidate {
            a: s(&[100.0]),
            b: s(&[120.0]),
            better: Better::Lower,
            resampled: None,
        };
        let j = judge_family(&[&candidate], 0.05)[0];
        assert_eq!(j.verdict, Verdict::Regressed);
        assert_eq!(j.noise_estimate, NoiseEstimate::None);
        assert!(!j.noise_estimated);
        assert_eq!((j.ci_low, j.p_value), (None, None));
        assert_eq!(j.ratio, Some(1.2));
        // With repetitions on one side only, min–max spreads still have to separate.
        let overlapping =
            judge_without_estimate(&s(&[100.0, 130.0, 90.0]), &s(&[120.0]), Better::Lower, 0.05);
        assert_eq!(overlapping.verdict, Verdict::WithinNoise);
    }

    #[test]
    fn zero_to_something_has_no_finite_ratio() {
        let j = judge_without_estimate(&s(&[0.0]), &s(&[3.0]), Better::Lower, 0.05);
        assert_eq!(j.ratio, None);
        assert_eq!(j.verdict, Verdict::Regressed);
        let same = judge_without_estimate(&s(&[0.0]), &s(&[0.0]), Better::Lower, 0.05);
        assert_eq!(same.verdict, Verdict::WithinNoise);
        // Resampled: a base of zero everywhere is an unbounded interval, shown as such.
        let j = judge_repetitions(&[0.0, 0.0], &[3.0, 4.0], Better::Lower, 0.05);
        assert_eq!(j.verdict, Verdict::Regressed);
        assert_eq!((j.ratio, j.ci_low, j.ci_high), (None, None, None));
    }

    #[test]
    fn percentages_parse_with_or_without_sign() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("5"), Ok(0.05));
        assert!(parse_percent("ten").is_err());
        assert!(parse_percent("-3%").is_err());
    }

    /// A deterministic latency distribution: roughly log-normal around `median_us`, with a tail.
    fn draw_latency_us(rng: &mut StdRng, median_us: f64) -> u64 {
        let u1: f64 = rng.r#gen::<f64>().max(1e-12);
        let u2: f64 = rng.r#gen();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median_us * (0.35 * z).exp()).round() as u64
    }

    /// `seconds` intervals of `per_second` latencies each, every value multiplied by `scale`.
    fn synthetic_run(
        seed: u64,
        seconds: usize,
        per_second: usize,
        scale: f64,
    ) -> Vec<MeasuredInterval> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..seconds)
            .map(|_| {
                let mut histogram = recorder::new_histogram();
                for _ in 0..per_second {
                    let us = draw_latency_us(&mut rng, 2_000.0) as f64 * scale;
                    recorder::record_clamped(&mut histogram, us.round() as u64);
                }
                MeasuredInterval {
                    duration_s: 1.0,
                    histogram,
                }
            })
            .collect()
    }

    fn interval_candidate(
        a: &[MeasuredInterval],
        b: &[MeasuredInterval],
        statistic: IntervalStatistic,
        better: Better,
    ) -> Candidate {
        let series_a = IntervalSeries::new(&[a.to_vec()]).expect("intervals");
        let series_b = IntervalSeries::new(&[b.to_vec()]).expect("intervals");
        // The reported figure: every interval summed, as the run's summary would give it.
        let point = |run: &[MeasuredInterval]| {
            let mut merged = recorder::new_histogram();
            for interval in run {
                merged.add(&interval.histogram).expect("same bounds");
            }
            s(&[match statistic {
                IntervalStatistic::Quantile(q) => merged.value_at_quantile(q) as f64,
                IntervalStatistic::CompletionsPerSec => merged.len() as f64 / run.len() as f64,
            }])
        };
        Candidate {
            a: point(a),
            b: point(b),
            better,
            resampled: Some(bootstrap_intervals(&series_a, &series_b, statistic, 11)),
        }
    }

    #[test]
    fn a_resampled_quantile_is_what_the_summed_histogram_reports() {
        let run = synthetic_run(3, 12, 400, 1.0);
        let series = IntervalSeries::new(std::slice::from_ref(&run)).expect("intervals");
        assert_eq!(
            series.blocks.len(),
            10,
            "moving blocks of 3 over 12 intervals"
        );
        assert_eq!(series.draws, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let mut chosen = Vec::new();
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let table = series.quantile_table(q);
            assert!(table.window_rows > 0, "the table fits");
            let mut without_table = series.quantile_table(q);
            without_table.rows.clear();
            without_table.window_rows = 0;
            for _ in 0..50 {
                series.draw(&mut rng, &mut chosen);
                let mut summed = recorder::new_histogram();
                for &block in &chosen {
                    for interval in &run[block..block + BLOCK_INTERVALS] {
                        summed.add(&interval.histogram).expect("same bounds");
                    }
                }
                let expected = if q == 0.0 {
                    // hdrhistogram reads q = 0 as the lowest equivalent value; apibench never
                    // asks for it, the bootstrap reports the bucket's highest like any other.
                    summed.highest_equivalent(summed.value_at_quantile(0.0))
                } else {
                    summed.value_at_quantile(q)
                };
                assert_eq!(series.quantile(&chosen, &table), expected, "q = {q}");
                assert_eq!(
                    series.quantile(&chosen, &without_table),
                    expected,
                    "q = {q}"
                );
            }
        }
    }

    #[test]
    fn runs_from_the_same_distribution_are_within_noise_with_1_inside_the_interval() {
        let a = synthetic_run(1, 30, 200, 1.0);
        let b = synthetic_run(2, 30, 200, 1.0);
        for (statistic, better) in [
            (IntervalStatistic::Quantile(0.5), Better::Lower),
            (IntervalStatistic::Quantile(0.99), Better::Lower),
            (IntervalStatistic::CompletionsPerSec, Better::Higher),
        ] {
            let candidate = interval_candidate(&a, &b, statistic, better);
            let j = judge_family(&[&candidate], 0.10)[0];
            assert_eq!(j.verdict, Verdict::WithinNoise, "{statistic:?}: {j:?}");
            assert_eq!(j.noise_estimate, NoiseEstimate::Intervals);
            let (low, high) = (j.ci_low.expect("low"), j.ci_high.expect("high"));
            assert!(low <= 1.0 && 1.0 <= high, "{statistic:?}: [{low}, {high}]");
            assert_eq!(j.ci_level, Some(1.0 - ALPHA));
        }
    }

    #[test]
    fn latencies_30_percent_higher_in_every_interval_are_a_regression_above_the_threshold() {
        let a = synthetic_run(1, 30, 200, 1.0);
        let b = synthetic_run(2, 30, 200, 1.3);
        for q in [0.5, 0.99] {
            let candidate =
                interval_candidate(&a, &b, IntervalStatistic::Quantile(q), Better::Lower);
            let j = judge_family(&[&candidate], 0.10)[0];
            assert_eq!(j.verdict, Verdict::Regressed, "p{q}: {j:?}");
            assert!(j.ci_low.is_some_and(|low| low > 1.10), "p{q}: {j:?}");
            assert!(j.ci_high.is_some_and(|high| high < 1.6), "p{q}: {j:?}");
        }
        // The same change the other way round is an improvement.
        let candidate = interval_candidate(&b, &a, IntervalStatistic::Quantile(0.5), Better::Lower);
        let j = judge_family(&[&candidate], 0.10)[0];
        assert_eq!(j.verdict, Verdict::Improved, "{j:?}");
        assert!(j.ci_high.is_some_and(|high| high < 0.90), "{j:?}");
    }

    /// A figure whose resampled ratios are given: `share_benign` of them at 1.0, the rest at 1.5.
    fn candidate_with(share_benign: f64) -> Candidate {
        let benign = (share_benign * RESAMPLES as f64).round() as usize;
        let ratios = (0..RESAMPLES)
            .map(|i| if i < benign { 1.0 } else { 1.5 })
            .collect();
        Candidate {
            a: s(&[100.0]),
            b: s(&[150.0]),
            better: Better::Lower,
            resampled: Some(Resampled::new(NoiseEstimate::Repetitions, ratios)),
        }
    }

    #[test]
    fn holm_makes_a_borderline_change_within_noise_among_many_figures() {
        // 1 % of resamples benign: p = 0.02, called when it is the only figure (0.02 ≤ 0.05)...
        let borderline = candidate_with(0.01);
        assert!((borderline.resampled.as_ref().expect("r").p_value(0.10) - 0.02).abs() < 1e-12);
        let alone = judge_family(&[&borderline], 0.10)[0];
        assert_eq!(alone.verdict, Verdict::Regressed, "{alone:?}");
        assert!(alone.ci_low.is_some_and(|low| low > 1.10));

        // ...but not among 10 figures that are plainly unchanged: its level is 0.05 / 10, so its
        // 99.5 % interval reaches the benign 1.0.
        let unchanged = candidate_with(1.0);
        let mut family: Vec<&Candidate> = vec![&unchanged; 9];
        family.insert(4, &borderline);
        let judged = judge_family(&family, 0.10);
        assert_eq!(judged[4].verdict, Verdict::WithinNoise, "{:?}", judged[4]);
        assert_eq!(
            judged[4].p_value, alone.p_value,
            "p-values are not adjusted"
        );
        assert!((judged[4].ci_level.expect("level") - 0.995).abs() < 1e-12);
        assert!(judged[4].ci_low.is_some_and(|low| low <= 1.10));

        // A clear change (p = 0) is still called among the same figures, and the borderline
        // one is then read at 0.05 / 9.
        let clear = candidate_with(0.0);
        family.push(&clear);
        let judged = judge_family(&family, 0.10);
        assert_eq!(judged[10].verdict, Verdict::Regressed);
        assert!((judged[10].ci_level.expect("level") - (1.0 - ALPHA / 11.0)).abs() < 1e-12);
        assert_eq!(judged[4].verdict, Verdict::WithinNoise);
        assert!((judged[4].ci_level.expect("level") - (1.0 - ALPHA / 10.0)).abs() < 1e-12);
    }

    #[test]
    fn holm_steps_down_and_stops_at_the_first_figure_inside_the_threshold() {
        // p = 0, 0.006, 0.02 among 3 figures: levels 0.05/3, 0.05/2, then 0.05 — all called.
        let figures = [
            candidate_with(0.0),
            candidate_with(0.003),
            candidate_with(0.01),
        ];
        let family: Vec<&Candidate> = figures.iter().collect();
        let judged = judge_family(&family, 0.10);
        assert!(
            judged.iter().all(|j| j.verdict == Verdict::Regressed),
            "{judged:?}"
        );
        // p = 0.02, 0.02, 0.02: the first is read at 0.05/3 and is not called, so none is.
        let figures = [
            candidate_with(0.01),
            candidate_with(0.01),
            candidate_with(0.01),
        ];
        let family: Vec<&Candidate> = figures.iter().collect();
        let judged = judge_family(&family, 0.10);
        assert!(
            judged.iter().all(|j| j.verdict == Verdict::WithinNoise),
            "{judged:?}"
        );
        for j in &judged {
            assert!((j.ci_level.expect("level") - (1.0 - ALPHA / 3.0)).abs() < 1e-12);
        }
    }

    #[test]
    fn figures_without_an_estimate_do_not_widen_the_others() {
        let borderline = candidate_with(0.01);
        let no_estimate = Candidate {
            a: s(&[1.0]),
            b: s(&[1.0]),
            better: Better::Lower,
            resampled: None,
        };
        let judged = judge_family(&[&no_estimate, &borderline, &no_estimate], 0.10);
        assert_eq!(judged[1].verdict, Verdict::Regressed, "{:?}", judged[1]);
        assert_eq!(judged[1].ci_level, Some(1.0 - ALPHA));
    }

    #[test]
    fn an_empty_interval_log_gives_no_series() {
        assert!(IntervalSeries::new(&[]).is_none());
        assert!(IntervalSeries::new(&[Vec::new()]).is_none());
        let short = vec![MeasuredInterval {
            duration_s: 1.0,
            histogram: Histogram::new(3).expect("histogram"),
        }];
        let series = IntervalSeries::new(&[short]).expect("one short block");
        assert_eq!((series.blocks.len(), series.draws), (1, 1));
    }
}
