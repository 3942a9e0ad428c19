//! `apibench gate DIR --budgets FILE [--baseline DIR] [--max-regression 10%]
//! [--allow-different-rates] [--junit FILE]`: the CI verdict on a saved run. One check per
//! budget limit per matching variant (value, limit, PASS/FAIL), a validity check per variant (a
//! run whose generator fell behind fails with that reason), and with `--baseline` a regression
//! check per figure (goodput, p50, p99, p99.9, RSS), judged as in `compare` by
//! [`crate::noise`]: a figure fails only when its bootstrap interval of current/baseline lies
//! wholly beyond `--max-regression`, Holm-corrected over every baseline check of the gate. The
//! throughput figure, here and in `min_throughput_rps`, is goodput
//! ([`compare::goodput_per_sec`]).
//!
//! Exit codes: 0 every check passed, 1 a check failed, 2 bad input (budgets file that does not
//! parse, unknown field, missing or corrupt results file, a budget that matches nothing, a
//! baseline made at a target rate more than 1 % away without `--allow-different-rates`). Also
//! writes a Markdown summary to `$GITHUB_STEP_SUMMARY` when set and JUnit XML with `--junit`.
//! Reads saved files only; writes nothing into the run directory.

use crate::budgets::{self, Budget, Budgets};
use crate::compare::{self, Scope, VariantComparison, format_judged_ratio, format_spread, md_cell};
use crate::noise::{self, NoiseEstimate, Verdict};
use crate::report::html::esc;
use crate::results::{Measurement, Percentiles, Summary, VariantSummary};
use crate::saved::{self, CommandOutcome};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Exit code: every check passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code: a budget, validity or regression check failed.
pub const EXIT_FAIL: u8 = 1;

/// `apibench gate`.
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// The run to check, a directory written by `apibench run`
    pub dir: PathBuf,
    /// The budgets file (TOML, `[[budget]]` tables), e.g. scenarios/budgets.toml
    #[arg(long, value_name = "FILE")]
    pub budgets: PathBuf,
    /// Also fail where a figure regressed against this earlier run
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: the largest tolerated change for the worse (relative, e.g. 10%)
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = noise::parse_percent)]
    pub max_regression: f64,
    /// With --baseline: compare even when the two runs' target rates are more than 1 % apart
    /// (refused otherwise: their latencies measure different loads)
    #[arg(long)]
    pub allow_different_rates: bool,
    /// Write the checks as JUnit XML to this file (one test case per check)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// One line of the gate's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The variant (and request name) checked.
    pub subject: String,
    /// What was checked, e.g. `p99_ms`, `valid`, `p99 vs baseline`.
    pub check: String,
    pub value: String,
    pub limit: String,
    pub passed: bool,
    /// Where the limit came from (`budgets.toml:3`, `--baseline`), or why it failed.
    pub note: String,
}

/// Everything the gate decided.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub dir: PathBuf,
    pub budgets_path: PathBuf,
    pub baseline: Option<PathBuf>,
    /// Per variant: a heading (name, load model and rate) and its checks.
    pub sections: Vec<(String, Vec<Check>)>,
}

impl GateReport {
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.sections.iter().flat_map(|(_, c)| c.iter())
    }

    pub fn passed(&self) -> bool {
        self.checks().all(|c| c.passed)
    }

    fn counts(&self) -> (usize, usize) {
        let total = self.checks().count();
        let failed = self.checks().filter(|c| !c.passed).count();
        (total, failed)
    }

    fn verdict_line(&self) -> String {
        let (total, failed) = self.counts();
        if failed == 0 {
            format!("gate: PASS — all {total} checks passed")
        } else {
            format!("gate: FAIL — {failed} of {total} checks failed")
        }
    }
}

fn rate_heading(v: &VariantSummary) -> String {
    let m = &v.figures;
    let reps = v.repetitions.len().max(1);
    let rate = match m.target_rate_per_sec {
        Some(r) => format!(
            "{} model at {r:.1} req/s (achieved {:.1} req/s)",
            v.load_model, m.achieved_send_rate_per_sec
        ),
        None => format!(
            "{} model, {:.1} req/s goodput",
            v.load_model,
            compare::goodput_per_sec(m, Scope::Overall).unwrap_or(m.throughput_rps)
        ),
    };
    let reps = if reps > 1 {
        format!(", median of {reps} repetitions")
    } else {
        String::new()
    };
    format!("{} — {rate}{reps}", v.name)
}

fn percentile(p: &Percentiles, field: &str) -> Option<u64> {
    Some(match field {
        "p50_ms" => p.p50,
        "p90_ms" => p.p90,
        "p99_ms" => p.p99,
        "p999_ms" => p.p999,
        "max_ms" => p.max,
        _ => return None,
    })
}

/// The value a budget field limits, for a measurement (overall or one request); `None` when
/// the run did not measure it (RSS of a `url` target, a request with no completions).
fn budget_value(
    m: &Measurement,
    request: Option<&str>,
    field: &str,
) -> Result<Option<f64>, String> {
    let (latency, requests, errors) = match request {
        None => (&m.latency_us, m.requests, m.errors),
        Some(name) => match m.requests_by_name.get(name) {
            Some(r) => (&r.latency_us, r.requests, r.errors),
            None => {
                let known: Vec<&str> = m.requests_by_name.keys().map(String::as_str).collect();
                return Err(format!(
                    "request = \"{name}\" is not a request of this run (it has: {})",
                    known.join(", ")
                ));
            }
        },
    };
    Ok(match field {
        "error_rate" => (requests > 0).then(|| errors as f64 / requests as f64),
        "min_throughput_rps" => compare::goodput_per_sec(
            m,
            match request {
                None => Scope::Overall,
                Some(name) => Scope::Request(name),
            },
        ),
        "max_rss_mib" => m
            .target_rss_peak_bytes
            .map(|b| b as f64 / (1024.0 * 1024.0)),
        latency_field => (latency.count > 0)
            .then_some(())
            .and_then(|()| percentile(latency, latency_field))
            .map(|us| us as f64 / 1000.0),
    })
}

fn show(field: &str, value: f64) -> String {
    match field {
        "error_rate" => format!("{value:.4}"),
        "min_throughput_rps" => format!("{value:.1} req/s"),
        "max_rss_mib" => format!("{value:.1} MiB"),
        _ => format!("{value:.3} ms"),
    }
}

fn budget_checks(
    budgets: &Budgets,
    variant: &VariantSummary,
    matched: &mut [bool],
) -> Result<Vec<Check>, String> {
    let file = budgets.path.file_name().map_or_else(
        || budgets.path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let mut checks = Vec::new();
    for (index, located) in budgets.budgets.iter().enumerate() {
        let budget: &Budget = &located.budget;
        if !budget.matches_variant(&variant.name) {
            continue;
        }
        matched[index] = true;
        let subject = match &budget.request {
            Some(r) => format!("{} {r}", variant.name),
            None => variant.name.clone(),
        };
        for (field, limit) in budget.limits() {
            let value =
                budget_value(&variant.figures, budget.request.as_deref(), field).map_err(|e| {
                    format!(
                        "{}:{}: {e} (variant {})",
                        budgets.path.display(),
                        located.line,
                        variant.name
                    )
                })?;
            let at_least = field == "min_throughput_rps";
            let (passed, value_text) = match value {
                Some(v) => (
                    if at_least { v >= limit } else { v <= limit },
                    if at_least {
                        format!("{} goodput", show(field, v))
                    } else {
                        show(field, v)
                    },
                ),
                None => (false, "not measured".into()),
            };
            checks.push(Check {
                subject: subject.clone(),
                check: field.into(),
                value: value_text,
                limit: format!(
                    "{} {}",
                    if at_least { "≥" } else { "≤" },
                    show(field, limit)
                ),
                passed,
                note: format!("{file}:{}", located.line),
            });
        }
    }
    Ok(checks)
}

fn validity_check(variant: &VariantSummary) -> Check {
    let m = &variant.figures;
    Check {
        subject: variant.name.clone(),
        check: "valid".into(),
        value: if m.valid {
            "valid".into()
        } else {
            "INVALID".into()
        },
        limit: "valid".into(),
        passed: m.valid,
        note: if m.valid {
            if m.saturated {
                "server saturated: the achieved rate is the server's".into()
            } else {
                String::new()
            }
        } else {
            m.invalid_reason
                .clone()
                .unwrap_or_else(|| "the generator could not be trusted".into())
        },
    }
}

/// Regression checks of one variant against its baseline (already judged with the gate's
/// other baseline figures: see [`baseline_comparisons`]). Errors are left to the budgets'
/// absolute `error_rate`: a ratio against zero errors means nothing.
fn baseline_checks(comparison: &VariantComparison, max_regression: f64) -> Vec<Check> {
    comparison
        .figures
        .iter()
        .map(|f| {
            let judgement = &f.judgement;
            let regressed = judgement.verdict == Verdict::Regressed;
            let mut note = judgement.verdict.label().to_string();
            match (judgement.noise_estimate, judgement.ci_level) {
                (NoiseEstimate::None, _) | (_, None) => note.push_str(
                    " (no noise estimate: no repetitions or interval log; the threshold alone decides)",
                ),
                (estimate, Some(level)) => {
                    let _ = write!(
                        note,
                        " ({}, {:.2} % interval, p = {:.3})",
                        estimate.label(),
                        level * 100.0,
                        judgement.p_value.unwrap_or(1.0)
                    );
                }
            }
            for n in &comparison.notes {
                let _ = write!(note, "; {n}");
            }
            Check {
                subject: comparison.name.clone(),
                check: format!("{} vs baseline", f.label),
                value: format!(
                    "{} vs {} = {}",
                    format_spread(f.unit, &f.b),
                    format_spread(f.unit, &f.a),
                    format_judged_ratio(judgement)
                ),
                limit: match f.better {
                    noise::Better::Lower => format!("≤ {:.2}×", 1.0 + max_regression),
                    noise::Better::Higher => format!("≥ {:.2}×", 1.0 - max_regression),
                },
                passed: !regressed,
                note,
            }
        })
        .collect()
}

/// Every variant present in both runs compared against the baseline, as one family for Holm's
/// correction: the figures the gate checks (all but errors, overall only). `Err` (bad input):
/// target rates more than 1 % apart without `allow_different_rates`, or an unreadable log.
fn baseline_comparisons(
    (dir, summary): (&Path, &Summary),
    (base_dir, base): (&Path, &Summary),
    max_regression: f64,
    allow_different_rates: bool,
) -> Result<Vec<VariantComparison>, String> {
    let common: Vec<(&VariantSummary, &VariantSummary)> = summary
        .variants
        .iter()
        .filter_map(|v| Some((base.variants.iter().find(|b| b.name == v.name)?, v)))
        .collect();
    if !allow_different_rates {
        let refusals: Vec<String> = common
            .iter()
            .filter_map(|(b, v)| {
                let (base_rate, rate) = compare::different_rates(b, v)?;
                Some(compare::different_rates_refusal(
                    &v.name,
                    ("the baseline", base_rate),
                    ("this run", rate),
                ))
            })
            .collect();
        if !refusals.is_empty() {
            return Err(refusals.join("\n"));
        }
    }
    let pairs = common
        .iter()
        .map(|(b, v)| compare::VariantPair::load((base_dir, b), (dir, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--baseline: {e}"))?;
    let (comparisons, _) = compare::compare_pairs(&pairs, max_regression, |figure, scope| {
        scope == Scope::Overall && figure.key != "error_rate"
    });
    Ok(comparisons)
}

/// Runs every check. `Err` is bad input (exit 2), with the message naming the file.
pub fn evaluate(
    dir: &Path,
    summary: &Summary,
    budgets: &Budgets,
    baseline: Option<(&Path, &Summary)>,
    max_regression: f64,
    allow_different_rates: bool,
) -> Result<GateReport, String> {
    let mut matched = vec![false; budgets.budgets.len()];
    let mut sections = Vec::new();
    if summary.variants.is_empty() {
        return Err(format!(
            "{}: the run has no variant results",
            dir.join("summary.json").display()
        ));
    }
    let comparisons = match baseline {
        Some(base) => {
            baseline_comparisons((dir, summary), base, max_regression, allow_different_rates)?
        }
        None => Vec::new(),
    };
    for variant in &summary.variants {
        let mut checks = Vec::new();
        if variant.figures.partial || summary.partial {
            checks.push(Check {
                subject: variant.name.clone(),
                check: "complete".into(),
                value: "partial".into(),
                limit: "complete".into(),
                passed: false,
                note: "the run was interrupted before the end of its schedule".into(),
            });
        }
        checks.push(validity_check(variant));
        checks.extend(budget_checks(budgets, variant, &mut matched)?);
        if let Some((base_dir, _)) = baseline {
            match comparisons.iter().find(|c| c.name == variant.name) {
                Some(c) => checks.extend(baseline_checks(c, max_regression)),
                None => checks.push(Check {
                    subject: variant.name.clone(),
                    check: "baseline".into(),
                    value: "absent".into(),
                    limit: "-".into(),
                    passed: true,
                    note: format!(
                        "{} has no variant of this name: nothing to compare",
                        base_dir.display()
                    ),
                }),
            }
        }
        sections.push((rate_heading(variant), checks));
    }
    if let Some(i) = matched.iter().position(|m| !m) {
        let names: Vec<&str> = summary.variants.iter().map(|v| v.name.as_str()).collect();
        return Err(format!(
            "{}:{}: variant = \"{}\" matches no variant of {} (it has: {})",
            budgets.path.display(),
            budgets.budgets[i].line,
            budgets.budgets[i].budget.variant,
            dir.display(),
            names.join(", ")
        ));
    }
    Ok(GateReport {
        dir: dir.to_path_buf(),
        budgets_path: budgets.path.clone(),
        baseline: baseline.map(|(p, _)| p.to_path_buf()),
        sections,
    })
}

/// Aligned columns: PASS/FAIL, check, value, limit, note.
pub fn render_text(report: &GateReport) -> String {
    let mut out = format!(
        "apibench gate {}  (budgets {}{})\n",
        report.dir.display(),
        report.budgets_path.display(),
        report
            .baseline
            .as_ref()
            .map(|b| format!(", baseline {}", b.display()))
            .unwrap_or_default()
    );
    let checks: Vec<&Check> = report.checks().collect();
    let width = |f: fn(&Check) -> String| {
        checks
            .iter()
            .map(|c| f(c).chars().count())
            .max()
            .unwrap_or(0)
    };
    let subject_w = width(|c| c.subject.clone());
    let check_w = width(|c| c.check.clone());
    let value_w = width(|c| c.value.clone());
    let limit_w = width(|c| c.limit.clone());
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    for (heading, checks) in &report.sections {
        let _ = writeln!(out, "\n{heading}");
        for c in checks {
            let line = format!(
                "  {}  {}  {}  {}  {}  {}",
                if c.passed { "PASS" } else { "FAIL" },
                pad(&c.subject, subject_w),
                pad(&c.check, check_w),
                pad(&c.value, value_w),
                pad(&c.limit, limit_w),
                c.note
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let _ = writeln!(out, "\n{}", report.verdict_line());
    out
}

/// The Markdown summary for `$GITHUB_STEP_SUMMARY`.
pub fn render_markdown(report: &GateReport) -> String {
    let mut out = format!(
        "## apibench gate: {}\n\n`{}` against `{}`{}\n\n",
        if report.passed() {
            "✅ PASS"
        } else {
            "❌ FAIL"
        },
        report.dir.display(),
        report.budgets_path.display(),
        report
            .baseline
            .as_ref()
            .map(|b| format!(" and baseline `{}`", b.display()))
            .unwrap_or_default()
    );
    for (heading, checks) in &report.sections {
        let _ = writeln!(out, "**{}**\n", md_cell(heading));
        out.push_str("| | check | value | limit | note |\n|---|---|---|---|---|\n");
        for c in checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                if c.passed { "PASS" } else { "**FAIL**" },
                md_cell(&format!("{} {}", c.subject, c.check)),
                md_cell(&c.value),
                md_cell(&c.limit),
                md_cell(&c.note)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}\n", report.verdict_line());
    out
}

/// JUnit XML: one test suite, one test case per check.
pub fn render_junit(report: &GateReport) -> String {
    let (total, failed) = report.counts();
    let suite = esc(&format!("apibench gate {}", report.dir.display()));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"apibench gate\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">"
    );
    for c in report.checks() {
        let classname = esc(&format!("apibench.gate.{}", c.subject.replace(' ', ".")));
        let name = esc(&format!("{} {}", c.check, c.limit));
        let detail = esc(&format!(
            "{} {}: {} (limit {}) {}",
            c.subject, c.check, c.value, c.limit, c.note
        ));
        if c.passed {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{classname}\" name=\"{name}\"><system-out>{detail}</system-out></testcase>"
            );
        } else {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{classname}\" name=\"{name}\"><failure message=\"{detail}\" type=\"apibench.gate\">{detail}</failure></testcase>"
            );
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Runs `apibench gate`. `step_summary` is `$GITHUB_STEP_SUMMARY` (passed in, so tests and the
/// binary decide where it comes from).
pub fn command(args: &GateArgs, step_summary: Option<&Path>) -> CommandOutcome {
    let budgets = match budgets::load(&args.budgets) {
        Ok(b) => b,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let summary = match saved::load_summary(&args.dir) {
        Ok(s) => s,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let baseline = match &args.baseline {
        Some(dir) => match saved::load_summary(dir) {
            Ok(s) => Some((dir.as_path(), s)),
            Err(e) => return CommandOutcome::bad_input(format!("--baseline: {e}")),
        },
        None => None,
    };
    let report = match evaluate(
        &args.dir,
        &summary,
        &budgets,
        baseline.as_ref().map(|(d, s)| (*d, s)),
        args.max_regression,
        args.allow_different_rates,
    ) {
        Ok(r) => r,
        Err(e) => return CommandOutcome::bad_input(e),
    };
    let mut stderr = String::new();
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, render_junit(&report))
    {
        return CommandOutcome::bad_input(format!("--junit {}: cannot write: {e}", path.display()));
    }
    if let Some(path) = step_summary.filter(|p| !p.as_os_str().is_empty()) {
        // GitHub appends the file's content to the job page; other steps may have written too.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, render_markdown(&report).as_bytes())
            });
        if let Err(e) = appended {
            let _ = writeln!(
                stderr,
                "apibench: warning: cannot write the step summary {}: {e}",
                path.display()
            );
        }
    }
    CommandOutcome {
        stdout: render_text(&report),
        stderr,
        exit_code: if report.passed() {
            EXIT_PASS
        } else {
            EXIT_FAIL
        },
    }
}
