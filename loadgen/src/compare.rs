//! `apibench compare A B`: two saved runs side by side, per variant present in both and per
//! request name — throughput, p50, p99, p99.9, errors, RSS — with the ratio B/A and a verdict
//! (improved / regressed / within noise, see [`crate::noise`]).
//!
//! Reads `summary.json` of each run only; never a live run, never writes anything. The figures
//! and their formatting live here and are reused by the gate's baseline checks and the report.

use crate::noise::{self, Better, Judgement};
use crate::results::{Measurement, Summary, VariantSummary};
use crate::saved::{self, CommandOutcome, Spread};
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
    /// Changes smaller than this are never called, whatever the spread (relative, e.g. 5%)
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = noise::parse_percent)]
    pub threshold: f64,
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

/// The figures compared, in display order.
pub const FIGURES: &[Figure] = &[
    Figure {
        key: "throughput_rps",
        label: "throughput",
        unit: Unit::PerSec,
        better: Better::Higher,
        read: |m, scope| match scope {
            Scope::Overall => Some(m.throughput_rps),
            Scope::Request(_) => {
                let r = per_request(m, scope)?;
                (m.measured_duration_ms > 0)
                    .then(|| r.requests as f64 * 1000.0 / m.measured_duration_ms as f64)
            }
        },
    },
    Figure {
        key: "p50_us",
        label: "p50",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p50),
    },
    Figure {
        key: "p99_us",
        label: "p99",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p99),
    },
    Figure {
        key: "p999_us",
        label: "p99.9",
        unit: Unit::Micros,
        better: Better::Lower,
        read: |m, scope| latency(m, scope, |p| p.p999),
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
    pub variants: Vec<VariantComparison>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

fn compare_figures(
    a: &VariantSummary,
    b: &VariantSummary,
    scope: Scope,
    threshold: f64,
) -> Vec<FigureComparison> {
    FIGURES
        .iter()
        .filter_map(|figure| {
            let sa = figure_spread(a, figure, scope)?;
            let sb = figure_spread(b, figure, scope)?;
            Some(FigureComparison {
                figure: figure.key,
                label: figure.label,
                unit: figure.unit,
                better: figure.better,
                a: sa,
                b: sb,
                judgement: noise::judge(&sa, &sb, figure.better, threshold),
            })
        })
        .collect()
}

/// Compares one variant of two runs.
pub fn compare_variant(
    a: &VariantSummary,
    b: &VariantSummary,
    threshold: f64,
) -> VariantComparison {
    let mut notes = Vec::new();
    let (ra, rb) = (a.figures.target_rate_per_sec, b.figures.target_rate_per_sec);
    if a.load_model != b.load_model {
        notes.push(format!(
            "load models differ (A {}, B {}): latencies are not comparable",
            a.load_model, b.load_model
        ));
    } else if let (Some(x), Some(y)) = (ra, rb)
        && (x - y).abs() > 0.01 * x.max(y)
    {
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
    let requests = a
        .figures
        .requests_by_name
        .keys()
        .filter(|name| b.figures.requests_by_name.contains_key(*name))
        .map(|name| RequestComparison {
            name: name.clone(),
            figures: compare_figures(a, b, Scope::Request(name), threshold),
        })
        .collect();
    VariantComparison {
        name: a.name.clone(),
        load_model: a.load_model.to_string(),
        a_target_rate_per_sec: ra,
        b_target_rate_per_sec: rb,
        a_valid: a.figures.valid,
        b_valid: b.figures.valid,
        figures: compare_figures(a, b, Scope::Overall, threshold),
        requests,
        notes,
    }
}

/// Compares two loaded runs.
pub fn compare(a: (&Path, &Summary), b: (&Path, &Summary), threshold: f64) -> Comparison {
    let label = |(dir, s): (&Path, &Summary)| RunLabel {
        dir: dir.to_path_buf(),
        scenario: s.scenario.clone(),
        started_at: s.started_at.clone(),
        repeat: s.repeat,
    };
    let find = |s: &'_ Summary, name: &str| s.variants.iter().any(|v| v.name == name);
    Comparison {
        a: label(a),
        b: label(b),
        threshold,
        variants: a
            .1
            .variants
            .iter()
            .filter_map(|va| {
                let vb = b.1.variants.iter().find(|vb| vb.name == va.name)?;
                Some(compare_variant(va, vb, threshold))
            })
            .collect(),
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
    }
}

/// Runs `apibench compare`: exit 0 with the comparison, 2 on bad input.
pub fn command(args: &CompareArgs) -> CommandOutcome {
    let a = match saved::load_summary(&args.a) {
        Ok(s) => s,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let b = match saved::load_summary(&args.b) {
        Ok(s) => s,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let comparison = compare((&args.a, &a), (&args.b, &b), args.threshold);
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

fn verdict_text(f: &FigureComparison) -> String {
    let mark = if f.judgement.noise_estimated { "" } else { "*" };
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
                format_ratio(f.judgement.ratio),
                verdict_text(f),
            ]
        })
        .collect()
}

const HEADER: [&str; 6] = ["figure", "better", "A", "B", "B/A", "verdict"];

fn footnotes(c: &Comparison) -> Vec<String> {
    let pct = c.threshold * 100.0;
    let mut out = vec![format!(
        "A change is called only when it is beyond {pct:.0} % and, where repetitions exist, \
         outside the spread (min–max) of both runs; figures with repetitions show median (min–max)."
    )];
    let unestimated = c
        .variants
        .iter()
        .flat_map(|v| {
            v.figures
                .iter()
                .chain(v.requests.iter().flat_map(|r| &r.figures))
        })
        .any(|f| !f.judgement.noise_estimated);
    if unestimated {
        out.push(format!(
            "* no noise estimate: {} — the verdict rests on the {pct:.0} % threshold alone; \
             run both with --repeat 3 or more for one.",
            match (c.a.repeat > 1, c.b.repeat > 1) {
                (false, false) => "neither run has repetitions",
                (false, true) => "A has no repetitions",
                (true, false) => "B has no repetitions",
                (true, true) => "some figures lack repetitions",
            }
        ));
    }
    out.push("Latency, errors and RSS: lower is better. Throughput: higher is better.".into());
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
