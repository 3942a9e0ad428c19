//! `apibench compare A B`: two saved runs side by side, per variant present in both and per
//! request name — goodput, p50, p99, p99.9, errors, RSS — with the ratio B/A, its bootstrap
//! interval and a verdict (improved / regressed / within noise, see [`crate::noise`]). All the
//! figures of one invocation form one family for Holm's correction.
//!
//! Goodput (successful completions inside the measured window per second of it) is the
//! throughput figure; files written before it existed fall back to `throughput_rps`. Runs made
//! at target rates more than 1 % apart are refused (exit 2) unless `--allow-different-rates`:
//! their latencies measure different loads, not different code.
//!
//! Reads `summary.json` and, when the two runs do not both have repetitions, each
//! measurement's `latency.hlog` (for the interval bootstrap); never a live run, never writes
//! anything. The figures and their formatting live here and are reused by the gate's baseline
//! checks and budgets and by the report.

use crate::noise::{
    self, Better, Candidate, IntervalSeries, IntervalStatistic, Judgement, NoiseEstimate,
};
use crate::results::{Measurement, Summary, VariantSummary};
use crate::saved::{self, CommandOutcome, SavedRunError, Spread};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `apibench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The earlier run (the baseline), a directory written by `apibench run`
    pub a: PathBuf,
    /// The later run, compared against A (ratios are B/A)
    pub b: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A change is called only when the bootstrap interval of B/A lies wholly outside 1 ± this
    /// (relative, e.g. 5%)
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = noise::parse_percent)]
    pub threshold: f64,
    /// Compare runs made at target rates more than 1 % apart (refused otherwise: their
    /// latencies measure different loads)
    #[arg(long)]
    pub allow_different_rates: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Md,
    Json,
}

/// How a figure is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Micros,
    PerSec,
    /// A fraction shown as a percentage.
    Fraction,
    Bytes,
}

/// Which part of a measurement a figure is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Overall,
    Request(&'a str),
}

/// A comparable figure.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Stable key, units in the name (JSON output, gate lines).
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub better: Better,
    pub read: fn(&Measurement, Scope) -> Option<f64>,
    /// What a 1 s interval of `latency.hlog` gives of this figure (overall scope only: the log
    /// has no per-request intervals); `None`: the interval bootstrap cannot estimate it.
    pub interval_statistic: Option<IntervalStatistic>,
}

fn per_request(m: &Measurement, scope: Scope) -> Option<crate::results::RequestSummary> {
    match scope {
        Scope::Overall => None,
        Scope::Request(name) => m.requests_by_name.get(name).cloned(),
    }
}

fn latency(
    m: &Measurement,
    scope: Scope,
    pick: fn(&crate::results::Percentiles) -> u64,
) -> Option<f64> {
    let p = match scope {
        Scope::Overall => m.latency_us.clone(),
        Scope::Request(_) => per_request(m, scope)?.latency_us,
    };
    (p.count > 0).then(|| pick(&p) as f64)
}

/// Goodput, the throughput figure of compare, the gate's baseline checks and its
/// `min_throughput_rps` budget: successful completions per second of the measured window.
/// Overall: `goodput_rps`, or `throughput_rps` in files written before goodput existed. One
/// request name: its successful requests per second of the window.
pub fn goodput_per_sec(m: &Measurement, scope: Scope) -> Option<f64> {
    match scope {
        Scope::Overall => Some(m.goodput_rps.unwrap_or(m.throughput_rps)),
        Scope::Request(_) => {
            let r = per_request(m, scope)?;
            (m.measured_duration_ms > 0).then(|| {
                r.requests.saturating_sub(r.errors) as f64 * 1000.0 / m.measured_duration_ms as f64
            })
        }
    }
}

/// The figures compared, in display order.
pub const FIGURES: &[Figure] = &[
    Figure {
        key: "goodput_rps",
        label: "goodput",
        unit: Unit::PerSec,
        better: Better::Higher,
        read: goodput_per_sec,
        interval_statistic: Some(IntervalStatistic::CompletionsPerSec),
    },
    Figure {
        key: "p50_us",
        label: "p50",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p50),
        interval_statistic: Some(IntervalStatistic::Quantile(0.50)),
    },
    Figure {
        key: "p99_us",
        label: "p99",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p99),
        interval_statistic: Some(IntervalStatistic::Quantile(0.99)),
    },
    Figure {
        key: "p999_us",
        label: "p99.9",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p999),
        interval_statistic: Some(IntervalStatistic::Quantile(0.999)),
    },
    Figure {
        key: "error_rate",
        label: "errors",
        unit: Unit::Fraction,
        better: Better::Lower,
        read: |m, scope| match scope {
            Scope::Overall => Some(m.error_rate),
            Scope::Request(_) => {
                let r = per_request(m, scope)?;
                (r.requests > 0).then(|| r.errors as f64 / r.requests as f64)
            }
        },
        interval_statistic: None,
    },
    Figure {
        key: "target_rss_peak_bytes",
        label: "RSS peak",
        unit: Unit::Bytes,
        better: Better::Lower,
        read: |m, scope| match scope {
            Scope::Overall => m.target_rss_peak_bytes.map(|b| b as f64),
            Scope::Request(_) => None,
        },
        interval_statistic: None,
    },
];

/// A figure of a variant, over its repetitions.
pub fn figure_spread(variant: &VariantSummary, figure: &Figure, scope: Scope) -> Option<Spread> {
    saved::spread_of(variant, |m| (figure.read)(m, scope))
}

/// `value` in `unit`, e.g. "1.23 ms", "199.8 req/s", "0.100 %", "12.0 MiB".
pub fn format_figure(unit: Unit, value: f64) -> String {
    let (scaled, suffix, decimals) = scale(unit, value);
    format!("{scaled:.decimals$} {suffix}")
}

/// The median with the spread in the same scale when there are repetitions:
/// "1.23 ms (1.10–1.40)".
pub fn format_spread(unit: Unit, spread: &Spread) -> String {
    match format_spread_parts(unit, spread) {
        (median, Some(range)) => format!("{median} ({range})"),
        (median, None) => median,
    }
}

/// The median with its unit, and the range "min–max" in the same scale when there are
/// repetitions.
pub fn format_spread_parts(unit: Unit, spread: &Spread) -> (String, Option<String>) {
    let (median, suffix, decimals) = scale(unit, spread.median);
    let median_text = format!("{median:.decimals$} {suffix}");
    if !spread.has_spread() {
        return (median_text, None);
    }
    // The range in the median's scale, so "1.23 ms (0.98–1.40)" reads at a glance.
    let factor = scale(unit, 1.0).0;
    let factor = match (unit, suffix) {
        (Unit::Micros, "s") => 1e-6,
        (Unit::Micros, "ms") => 1e-3,
        _ => factor,
    };
    (
        median_text,
        Some(format!(
            "{:.decimals$}–{:.decimals$}",
            spread.min * factor,
            spread.max * factor
        )),
    )
}

fn scale(unit: Unit, value: f64) -> (f64, &'static str, usize) {
    match unit {
        Unit::Micros if value >= 1_000_000.0 => (value / 1e6, "s", 2),
        Unit::Micros if value >= 1_000.0 => (value / 1e3, "ms", 2),
        Unit::Micros => (value, "µs", 0),
        Unit::PerSec => (value, "req/s", 1),
        Unit::Fraction => (value * 100.0, "%", 3),
        Unit::Bytes => (value / (1024.0 * 1024.0), "MiB", 1),
    }
}

/// A ratio for display: "1.23×", or "∞" when the base is zero.
pub fn format_ratio(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{r:.2}×"),
        None => "∞".into(),
    }
}

/// A ratio with its bootstrap interval when there is one: "1.08× [0.97, 1.19]".
pub fn format_judged_ratio(j: &Judgement) -> String {
    let ratio = format_ratio(j.ratio);
    if j.noise_estimate == NoiseEstimate::None {
        return ratio;
    }
    let end = |x: Option<f64>| x.map_or_else(|| "∞".to_string(), |x| format!("{x:.2}"));
    format!("{ratio} [{}, {}]", end(j.ci_low), end(j.ci_high))
}

/// Where a run came from, for the output's header.
#[derive(Debug, Clone, Serialize)]
pub struct RunLabel {
    pub dir: PathBuf,
    pub scenario: String,
    pub started_at: String,
    pub repeat: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FigureComparison {
    pub figure: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub better: Better,
    pub a: Spread,
    pub b: Spread,
    #[serde(flatten)]
    pub judgement: Judgement,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestComparison {
    pub name: String,
    pub figures: Vec<FigureComparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantComparison {
    pub name: String,
    pub load_model: String,
    /// The rate that produced each run's latencies (open model); null for a closed model.
    pub a_target_rate_per_sec: Option<f64>,
    pub b_target_rate_per_sec: Option<f64>,
    pub a_valid: bool,
    pub b_valid: bool,
    pub figures: Vec<FigureComparison>,
    pub requests: Vec<RequestComparison>,
    /// Things to know before trusting the verdicts (different rates, invalid runs).
    pub notes: Vec<String>,
}

/// The whole comparison (the JSON output's shape).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: RunLabel,
    pub b: RunLabel,
    pub threshold: f64,
    /// Family-wise error rate of Holm's correction over `figures_tested`.
    pub alpha: f64,
    /// Figures with a noise estimate: the family Holm's correction is over.
    pub figures_tested: usize,
    pub variants: Vec<VariantComparison>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

/// The target rates of one variant in two runs, when both are open-model runs whose rates are
/// more than 1 % apart. Closed-model runs have no target rate; a different load model is a
/// note of its own ([`VariantPair::notes`]).
pub fn different_rates(a: &VariantSummary, b: &VariantSummary) -> Option<(f64, f64)> {
    if a.load_model != b.load_model {
        return None;
    }
    match (a.figures.target_rate_per_sec, b.figures.target_rate_per_sec) {
        (Some(x), Some(y)) if (x - y).abs() > 0.01 * x.max(y) => Some((x, y)),
        _ => None,
    }
}

/// Why two runs at different rates are refused, naming the variant and both rates.
pub fn different_rates_refusal(
    variant: &str,
    (a_label, a_rate): (&str, f64),
    (b_label, b_rate): (&str, f64),
) -> String {
    format!(
        "variant {variant}: {a_label} ran at {a_rate:.1} req/s and {b_label} at {b_rate:.1} req/s — \
         target rates more than 1 % apart, so latency and goodput would compare different loads, \
         not different code. Pass --allow-different-rates if this is intended."
    )
}

/// One variant present in both runs, with what its noise can be estimated from.
pub struct VariantPair<'a> {
    pub a: &'a VariantSummary,
    pub b: &'a VariantSummary,
    /// Each run's measured 1 s intervals; read only when the two do not both have repetitions,
    /// `None` when either has no interval log.
    intervals: Option<(IntervalSeries, IntervalSeries)>,
}

impl<'a> VariantPair<'a> {
    /// Pairs the variant of run A (in `a_dir`) with its namesake in run B, reading the interval
    /// logs when the repetitions cannot give the noise estimate.
    pub fn load(
        (a_dir, a): (&Path, &'a VariantSummary),
        (b_dir, b): (&Path, &'a VariantSummary),
    ) -> Result<VariantPair<'a>, SavedRunError> {
        let intervals = if both_repeated(a, b) {
            None
        } else {
            match (
                saved::load_measured_intervals(a_dir, a)?,
                saved::load_measured_intervals(b_dir, b)?,
            ) {
                (Some(ia), Some(ib)) => IntervalSeries::new(&ia).zip(IntervalSeries::new(&ib)),
                _ => None,
            }
        };
        Ok(VariantPair { a, b, intervals })
    }

    /// Things to know before trusting the verdicts: a different load model or rate, invalid
    /// runs.
    fn notes(&self) -> Vec<String> {
        let (a, b) = (self.a, self.b);
        let mut notes = Vec::new();
        if a.load_model != b.load_model {
            notes.push(format!(
                "load models differ (A {}, B {}): latencies are not comparable",
                a.load_model, b.load_model
            ));
        } else if let Some((x, y)) = different_rates(a, b) {
            notes.push(format!(
                "target rates differ (A {x:.1} req/s, B {y:.1} req/s): latency ratios compare different loads"
            ));
        }
        for (run, v) in [("A", a), ("B", b)] {
            if !v.figures.valid {
                notes.push(format!(
                    "{run} is INVALID: {}",
                    v.figures
                        .invalid_reason
                        .as_deref()
                        .unwrap_or("the generator could not be trusted")
                ));
            }
        }
        notes
    }

    /// A figure's values and its bootstrap distribution, when either source can give one.
    fn candidate(&self, figure: &Figure, scope: Scope) -> Option<Candidate> {
        let a = figure_spread(self.a, figure, scope)?;
        let b = figure_spread(self.b, figure, scope)?;
        let scope_name = match scope {
            Scope::Overall => "",
            Scope::Request(name) => name,
        };
        let seed = noise::seed_for(&[&self.a.name, scope_name, figure.key]);
        let resampled = if both_repeated(self.a, self.b) {
            let values = |v| saved::repetition_values(v, |m| (figure.read)(m, scope));
            noise::bootstrap_repetitions(&values(self.a), &values(self.b), seed)
        } else {
            match (scope, figure.interval_statistic, &self.intervals) {
                (Scope::Overall, Some(statistic), Some((ia, ib))) => {
                    Some(noise::bootstrap_intervals(ia, ib, statistic, seed))
                }
                _ => None,
            }
        };
        Some(Candidate {
            a,
            b,
            better: figure.better,
            resampled,
        })
    }
}

/// Both runs have repetitions: they, not the intervals, estimate the noise.
fn both_repeated(a: &VariantSummary, b: &VariantSummary) -> bool {
    a.repetitions.len() >= 2 && b.repetitions.len() >= 2
}

/// Compares every pair's figures that `include` admits, judging them as one family (Holm's
/// correction over all of them). Also returns how many had a noise estimate.
pub fn compare_pairs(
    pairs: &[VariantPair],
    threshold: f64,
    include: impl Fn(&Figure, Scope) -> bool,
) -> (Vec<VariantComparison>, usize) {
    struct Pending {
        variant: usize,
        request: Option<usize>,
        figure: &'static Figure,
        candidate: Candidate,
    }
    let mut pending: Vec<Pending> = Vec::new();
    let mut variants: Vec<VariantComparison> = Vec::with_capacity(pairs.len());
    for (index, pair) in pairs.iter().enumerate() {
        let mut collect = |scope: Scope, request: Option<usize>| {
            for figure in FIGURES.iter().filter(|f| include(f, scope)) {
                if let Some(candidate) = pair.candidate(figure, scope) {
                    pending.push(Pending {
                        variant: index,
                        request,
                        figure,
                        candidate,
                    });
                }
            }
        };
        collect(Scope::Overall, None);
        let request_names: Vec<String> = pair
            .a
            .figures
            .requests_by_name
            .keys()
            .filter(|name| pair.b.figures.requests_by_name.contains_key(*name))
            .cloned()
            .collect();
        for (r, name) in request_names.iter().enumerate() {
            collect(Scope::Request(name), Some(r));
        }
        variants.push(VariantComparison {
            name: pair.a.name.clone(),
            load_model: pair.a.load_model.to_string(),
            a_target_rate_per_sec: pair.a.figures.target_rate_per_sec,
            b_target_rate_per_sec: pair.b.figures.target_rate_per_sec,
            a_valid: pair.a.figures.valid,
            b_valid: pair.b.figures.valid,
            figures: Vec::new(),
            requests: request_names
                .into_iter()
                .map(|name| RequestComparison {
                    name,
                    figures: Vec::new(),
                })
                .collect(),
            notes: pair.notes(),
        });
    }
    let candidates: Vec<&Candidate> = pending.iter().map(|p| &p.candidate).collect();
    let judgements = noise::judge_family(&candidates, threshold);
    let tested = judgements.iter().filter(|j| j.noise_estimated).count();
    for (p, judgement) in pending.iter().zip(judgements) {
        let comparison = FigureComparison {
            figure: p.figure.key,
            label: p.figure.label,
            unit: p.figure.unit,
            better: p.figure.better,
            a: p.candidate.a,
            b: p.candidate.b,
            judgement,
        };
        let variant = &mut variants[p.variant];
        match p.request {
            None => variant.figures.push(comparison),
            Some(r) => variant.requests[r].figures.push(comparison),
        }
    }
    for variant in &mut variants {
        variant.requests.retain(|r| !r.figures.is_empty());
    }
    (variants, tested)
}

/// Compares two loaded runs. `Err` (exit 2): target rates more than 1 % apart without
/// `allow_different_rates`, or an interval log that cannot be read.
pub fn compare(
    a: (&Path, &Summary),
    b: (&Path, &Summary),
    threshold: f64,
    allow_different_rates: bool,
) -> Result<Comparison, String> {
    let label = |(dir, s): (&Path, &Summary)| RunLabel {
        dir: dir.to_path_buf(),
        scenario: s.scenario.clone(),
        started_at: s.started_at.clone(),
        repeat: s.repeat,
    };
    let common: Vec<(&VariantSummary, &VariantSummary)> =
        a.1.variants
            .iter()
            .filter_map(|va| Some((va, b.1.variants.iter().find(|vb| vb.name == va.name)?)))
            .collect();
    if !allow_different_rates {
        let refusals: Vec<String> = common
            .iter()
            .filter_map(|(va, vb)| {
                let (x, y) = different_rates(va, vb)?;
                Some(different_rates_refusal(&va.name, ("A", x), ("B", y)))
            })
            .collect();
        if !refusals.is_empty() {
            return Err(refusals.join("\n"));
        }
    }
    let pairs = common
        .iter()
        .map(|(va, vb)| VariantPair::load((a.0, va), (b.0, vb)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let (variants, figures_tested) = compare_pairs(&pairs, threshold, |_, _| true);
    let find = |s: &'_ Summary, name: &str| s.variants.iter().any(|v| v.name == name);
    Ok(Comparison {
        a: label(a),
        b: label(b),
        threshold,
        alpha: noise::ALPHA,
        figures_tested,
        variants,
        only_in_a: a
            .1
            .variants
            .iter()
            .filter(|v| !find(b.1, &v.name))
            .map(|v| v.name.clone())
            .collect(),
        only_in_b: b
            .1
            .variants
            .iter()
            .filter(|v| !find(a.1, &v.name))
            .map(|v| v.name.clone())
            .collect(),
    })
}

/// Runs `apibench compare`: exit 0 with the comparison, 2 on bad input or runs at different
/// rates.
pub fn command(args: &CompareArgs) -> CommandOutcome {
    let a = match saved::load_summary(&args.a) {
        Ok(s) => s,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let b = match saved::load_summary(&args.b) {
        Ok(s) => s,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let comparison = match compare(
        (&args.a, &a),
        (&args.b, &b),
        args.threshold,
        args.allow_different_rates,
    ) {
        Ok(c) => c,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    if comparison.variants.is_empty() {
        return CommandOutcome::bad_input(format!(
            "{} and {} have no variant in common (A: {}; B: {})",
            args.a.display(),
            args.b.display(),
            names(&a),
            names(&b)
        ));
    }
    let stdout = match args.format {
        Format::Text => render_text(&comparison),
        Format::Md => render_markdown(&comparison),
        Format::Json => match serde_json::to_string_pretty(&comparison) {
            Ok(s) => s + "\n",
            Err(e) => return CommandOutcome::bad_input(format!("cannot encode JSON: {e}")),
        },
    };
    CommandOutcome {
        stdout,
        stderr: String::new(),
        exit_code: 0,
    }
}

fn names(s: &Summary) -> String {
    s.variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate_text(rate: Option<f64>, model: &str) -> String {
    match rate {
        Some(r) => format!("{r:.1} req/s"),
        None => format!("{model} model (no fixed rate)"),
    }
}

/// The verdict with a mark for its noise estimate: none for repetitions, † for the intervals
/// of one run each, * for none at all.
fn verdict_text(f: &FigureComparison) -> String {
    let mark = match f.judgement.noise_estimate {
        NoiseEstimate::Repetitions => "",
        NoiseEstimate::Intervals => "†",
        NoiseEstimate::None => "*",
    };
    format!("{}{mark}", f.judgement.verdict.label())
}

fn rows(figures: &[FigureComparison], prefix: &str) -> Vec<Vec<String>> {
    figures
        .iter()
        .map(|f| {
            vec![
                format!("{prefix}{}", f.label),
                match f.better {
                    Better::Lower => "lower".into(),
                    Better::Higher => "higher".into(),
                },
                format_spread(f.unit, &f.a),
                format_spread(f.unit, &f.b),
                format_judged_ratio(&f.judgement),
                verdict_text(f),
            ]
        })
        .collect()
}

const HEADER: [&str; 6] = ["figure", "better", "A", "B", "B/A", "verdict"];

fn footnotes(c: &Comparison) -> Vec<String> {
    let pct = c.threshold * 100.0;
    let all: Vec<&FigureComparison> = c
        .variants
        .iter()
        .flat_map(|v| {
            v.figures
                .iter()
                .chain(v.requests.iter().flat_map(|r| &r.figures))
        })
        .collect();
    let uses = |e: NoiseEstimate| all.iter().any(|f| f.judgement.noise_estimate == e);
    let mut out = vec![format!(
        "A change is called only when the bootstrap interval of B/A, shown as [low, high], lies \
         wholly outside 1 ± {pct:.0} %; the intervals are Holm-corrected over the {} figures \
         with a noise estimate (family-wise α = {}). Figures with repetitions show median \
         (min–max).",
        c.figures_tested, c.alpha
    )];
    if uses(NoiseEstimate::Repetitions) {
        out.push(
            "Unmarked verdicts: both runs' repetitions resampled (median B / median A).".into(),
        );
    }
    if uses(NoiseEstimate::Intervals) {
        out.push(
            "† noise from the 1 s intervals within each run (block bootstrap): it cannot see what \
             changes between runs (the machine's state, a fresh database); run both with \
             --repeat 3 or more for that."
                .into(),
        );
    }
    if uses(NoiseEstimate::None) {
        out.push(format!(
            "* no noise estimate: {} and no 1 s interval log covers this figure (per-request \
             figures, errors, RSS; runs without latency.hlog) — the verdict rests on the \
             {pct:.0} % threshold alone; run both with --repeat 3 or more for one.",
            match (c.a.repeat > 1, c.b.repeat > 1) {
                (false, false) => "neither run has repetitions",
                (false, true) => "A has no repetitions",
                (true, false) => "B has no repetitions",
                (true, true) => "some figures lack repetitions",
            }
        ));
    }
    out.push("Latency, errors and RSS: lower is better. Goodput: higher is better.".into());
    if !c.only_in_a.is_empty() {
        out.push(format!(
            "Only in A (not compared): {}",
            c.only_in_a.join(", ")
        ));
    }
    if !c.only_in_b.is_empty() {
        out.push(format!(
            "Only in B (not compared): {}",
            c.only_in_b.join(", ")
        ));
    }
    out
}
/// Aligned plain-text columns.
fn text_table(header: &[&str], body: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in body {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        out.push_str("  ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(width(cell));
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in body {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn run_line(name: &str, r: &RunLabel) -> String {
    format!(
        "{name}: {}  ({}, started {}, {} repetition{})",
        r.dir.display(),
        r.scenario,
        r.started_at,
        r.repeat,
        if r.repeat == 1 { "" } else { "s" }
    )
}

/// The plain-text table.
pub fn render_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", run_line("A", &c.a));
    let _ = writeln!(out, "{}", run_line("B", &c.b));
    for v in &c.variants {
        let _ = writeln!(
            out,
            "\n{} — {} model; A at {}, B at {}",
            v.name,
            v.load_model,
            rate_text(v.a_target_rate_per_sec, &v.load_model),
            rate_text(v.b_target_rate_per_sec, &v.load_model)
        );
        for note in &v.notes {
            let _ = writeln!(out, "  ! {note}");
        }
        let mut body = rows(&v.figures, "");
        for r in &v.requests {
            body.extend(rows(&r.figures, &format!("{} ", r.name)));
        }
        out.push_str(&text_table(&HEADER, &body));
    }
    out.push('\n');
    for note in footnotes(c) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// Text safe inside a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown tables (one per variant).
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::from("## apibench compare\n\n");
    let _ = writeln!(out, "- {}", md_cell(&run_line("**A**", &c.a)));
    let _ = writeln!(out, "- {}", md_cell(&run_line("**B**", &c.b)));
    for v in &c.variants {
        let _ = writeln!(
            out,
            "\n### {} — {} model; A at {}, B at {}\n",
            md_cell(&v.name),
            v.load_model,
            rate_text(v.a_target_rate_per_sec, &v.load_model),
            rate_text(v.b_target_rate_per_sec, &v.load_model)
        );
        for note in &v.notes {
            let _ = writeln!(out, "> **{}**\n", md_cell(note));
        }
        let _ = writeln!(out, "| {} |", HEADER.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
        let mut body = rows(&v.figures, "");
        for r in &v.requests {
            body.extend(rows(&r.figures, &format!("{} ", r.name)));
        }
        for row in body {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out.push('\n');
    for note in footnotes(c) {
        let _ = writeln!(out, "{}\n", md_cell(&note));
    }
    out
}
