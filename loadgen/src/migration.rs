//! The seed's migration table, filled from one run: max sustainable throughput (×), p99 at the
//! fixed rate, RSS peak and GC pause time, "before" → "after", each beside the claim the seed
//! story made. Also the step-by-step ratios the report's attribution (waterfall) chart draws.
//!
//! Which variants are "before" and "after": the scenario's `migration_table` when it set one,
//! else the first `node*` variant and the last `rust*` variant. Pure functions over a
//! [`Summary`]; this module never reads files or prints.
//!
//! It must never print a ratio as if both sides were the server's. A variant whose measurement
//! is invalid (generator-bound, users exhausted, too many errors) gives no ratio at all — its
//! cells are marked and the change reads "n/a (before invalid)" with the reason in
//! [`MigrationTable::notes`] — and a step from or to it is excluded from the attribution. A
//! ceiling that is only a lower bound ([`Ceiling::AtLeast`]) gives a bounded ratio ("≥ ×3.0")
//! in the table and no bar in the waterfall; a ramp that was client-limited from its first stage
//! gives none.

use crate::output::{format_bytes, format_rate, format_us, verdict_reason, verdict_state};
use crate::results::{StageFigures, Summary, VariantSummary};
use crate::verdict::State;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRow {
    pub metric: String,
    pub before: String,
    pub after: String,
    /// "×12.3" for throughput, "÷4.2" for a latency that fell, "≥ ×3.0" against a lower bound,
    /// "n/a (…)" when a side cannot give a ratio, "-" when not comparable.
    pub change: String,
    /// What the seed story claimed for this row.
    pub seed_claim: &'static str,
}

/// The table for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationTable {
    /// What this table compares, e.g. "against single-process Node (the seed's comparison)".
    pub title: String,
    pub before: String,
    pub after: String,
    pub before_state: State,
    pub after_state: State,
    pub rows: Vec<MigrationRow>,
    /// Why a ratio is missing or only a bound, one sentence each (shown under the table).
    pub notes: Vec<String>,
}

/// One figure's change over a step, or why it has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepRatio {
    /// `to` / `from`.
    pub ratio: Option<f64>,
    /// Why the step is left out of the attribution (an invalid side, a ceiling that is only a
    /// bound); `None` with no ratio means the figure was not measured at all.
    pub excluded: Option<String>,
}

/// One step of the migration: the change from one variant to the next, in scenario order.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStep {
    pub from: String,
    pub to: String,
    /// `to`'s max sustainable rate / `from`'s (> 1: more throughput).
    pub throughput: StepRatio,
    /// `to`'s p99 at the fixed rate / `from`'s (< 1: faster).
    pub p99: StepRatio,
}

/// What a variant's `[find_max]` ramp says about the server's ceiling.
#[derive(Debug, Clone, PartialEq)]
pub enum Ceiling {
    /// The highest passing rate; `resolution` is the gap to the lowest failing rate above it.
    Exact { rate: f64, resolution: Option<f64> },
    /// The server held at least this: the ramp's top stage passed, or the first failure above
    /// it was client-limited.
    AtLeast(f64),
    /// Even the lowest stage failed, by the server's doing.
    Below(f64),
    /// The lowest stage was already client-limited: the ramp says nothing about the server.
    NotMeasured { rate: f64, reason: String },
}

/// The before/after variant indices: the explicit setting, else `node*` first → `rust*` last.
pub fn resolve_pair(summary: &Summary) -> Option<(usize, usize)> {
    let index = |name: &str| summary.variants.iter().position(|v| v.name == name);
    if let Some(pair) = &summary.migration_table {
        return Some((index(&pair.before)?, index(&pair.after)?));
    }
    let before = summary
        .variants
        .iter()
        .position(|v| v.name.starts_with("node"))?;
    let after = summary
        .variants
        .iter()
        .rposition(|v| v.name.starts_with("rust"))?;
    Some((before, after))
}

/// Whether the ramp passed its top stage (and all below), so the maximum is only a lower bound.
pub fn max_is_capped(v: &VariantSummary) -> bool {
    let top = v
        .figures
        .stages
        .iter()
        .map(|s| s.rate_per_sec)
        .max_by(f64::total_cmp);
    top.is_some() && top == v.figures.max_sustainable_rps
}

/// The variant's ceiling; `None` without a `[find_max]` ramp.
pub fn ceiling(v: &VariantSummary) -> Option<Ceiling> {
    let m = &v.figures;
    if let Some(rate) = m.max_sustainable_rps {
        return Some(if m.max_sustainable_is_lower_bound || max_is_capped(v) {
            Ceiling::AtLeast(rate)
        } else {
            Ceiling::Exact {
                rate,
                resolution: m.max_sustainable_resolution_rps,
            }
        });
    }
    let lowest = m
        .stages
        .iter()
        .min_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec))?;
    Some(if lowest.client_limited {
        Ceiling::NotMeasured {
            rate: lowest.rate_per_sec,
            reason: lowest
                .verdict_reason
                .clone()
                .unwrap_or_else(|| "users exhausted or generator-bound".into()),
        }
    } else {
        Ceiling::Below(lowest.rate_per_sec)
    })
}

/// "1 200 req/s ±50", "≥ 1 600 req/s" (passed every stage, or client-limited above), "< 200
/// req/s" (passed none), "n/a (client-limited from 200 req/s)"; notes where the ramp was not
/// monotonic: "2 000 req/s (over budget at 1 600; passed above the ceiling at 3 200)" — a lone
/// stall below the maximum, or a pass beyond the failures that ended the ramp, neither of which
/// the maximum counts — and where a stage was client-limited.
pub fn max_sustainable_text(v: &VariantSummary) -> String {
    let stages = &v.figures.stages;
    let rates = |keep: &dyn Fn(&StageFigures) -> bool| -> Vec<String> {
        let mut kept: Vec<f64> = stages
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.rate_per_sec)
            .collect();
        kept.sort_by(f64::total_cmp);
        kept.into_iter().map(format_rate).collect()
    };
    let notes = |max: f64| {
        let failed_below =
            rates(&|s| !s.within_budget && !s.client_limited && s.rate_per_sec < max);
        let passed_above = rates(&|s| s.within_budget && s.rate_per_sec > max);
        let client_limited = rates(&|s| s.client_limited);
        let mut parts = Vec::new();
        if !failed_below.is_empty() {
            parts.push(format!("over budget at {}", failed_below.join(", ")));
        }
        if !passed_above.is_empty() {
            parts.push(format!(
                "passed above the ceiling at {}",
                passed_above.join(", ")
            ));
        }
        if !client_limited.is_empty() {
            parts.push(format!("client-limited at {}", client_limited.join(", ")));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    };
    match ceiling(v) {
        Some(Ceiling::Exact { rate, resolution }) => format!(
            "{} req/s{}{}",
            format_rate(rate),
            resolution.map_or_else(String::new, |r| format!(" ±{}", format_rate(r))),
            notes(rate)
        ),
        Some(Ceiling::AtLeast(rate)) => format!("≥ {} req/s{}", format_rate(rate), notes(rate)),
        Some(Ceiling::Below(rate)) => format!("< {} req/s", format_rate(rate)),
        Some(Ceiling::NotMeasured { rate, .. }) => {
            format!("n/a (client-limited from {} req/s)", format_rate(rate))
        }
        None => "n/a (no [find_max])".into(),
    }
}

/// GC pause time of the measured phase: "none (no GC)" for targets without one.
pub fn gc_text(v: &VariantSummary) -> String {
    match (v.figures.gc_pause_total_ms, v.figures.gc_pauses) {
        (Some(ms), Some(n)) => format!("{ms:.1} ms in {n} pauses"),
        (Some(ms), None) => format!("{ms:.1} ms"),
        _ if v.target_kind == "api" => "none (no GC)".into(),
        _ => "not recorded".into(),
    }
}

/// Why a variant's figures must give no ratio: its measurement is invalid (generator-bound,
/// users exhausted, too many errors, nothing completed). `None` when they are the server's.
pub fn untrusted_reason(v: &VariantSummary) -> Option<String> {
    (verdict_state(&v.figures) == State::Invalid).then(|| {
        verdict_reason(&v.figures)
            .unwrap_or("the measurement could not be trusted")
            .to_string()
    })
}

fn ratio(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    match (after, before) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn p99_of(v: &VariantSummary) -> Option<f64> {
    let p99 = v.figures.latency_us.p99;
    (v.figures.requests > 0 && p99 > 0).then_some(p99 as f64)
}

/// "×3.2" when it grew, "÷3.2" when it shrank.
fn change_text(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 1.0 => format!("×{r:.1}"),
        Some(r) => format!("÷{:.1}", 1.0 / r),
    }
}

/// A bounded ratio, always as a factor so "≥"/"≤" read one way: "≥ ×3.0", "≤ ×0.50".
fn bound_text(bound: &str, r: f64) -> String {
    if r >= 1.0 {
        format!("{bound} ×{r:.1}")
    } else {
        format!("{bound} ×{r:.2}")
    }
}

/// A cell of a fixed-rate figure, marked with its variant's verdict when it is not plainly valid.
fn marked(text: String, v: &VariantSummary, mark_saturated: bool) -> String {
    match verdict_state(&v.figures) {
        State::Invalid => format!("{text} (invalid)"),
        State::Saturated if mark_saturated => format!("{text} (saturated)"),
        _ => text,
    }
}

/// The throughput row's change for two trusted variants, and a note when it is bounded or
/// missing.
fn throughput_change(before: &VariantSummary, after: &VariantSummary) -> (String, Option<String>) {
    use Ceiling::{AtLeast, Exact, NotMeasured};
    match (ceiling(before), ceiling(after)) {
        (Some(Exact { rate: b, .. }), Some(Exact { rate: a, .. })) => {
            (change_text(ratio(Some(a), Some(b))), None)
        }
        (Some(Exact { rate: b, .. }), Some(AtLeast(a))) => (
            bound_text("≥", a / b),
            Some(format!(
                "{}'s ceiling is a lower bound (≥ {} req/s): the throughput ratio is at least this",
                after.name,
                format_rate(a)
            )),
        ),
        (Some(AtLeast(b)), Some(Exact { rate: a, .. })) => (
            bound_text("≤", a / b),
            Some(format!(
                "{}'s ceiling is a lower bound (≥ {} req/s): the throughput ratio is at most this",
                before.name,
                format_rate(b)
            )),
        ),
        (Some(AtLeast(_)), Some(AtLeast(_))) => (
            "n/a (both ≥)".into(),
            Some("both ceilings are lower bounds: no throughput ratio is known".into()),
        ),
        (Some(NotMeasured { rate, reason }), _) => (
            "n/a (before client-limited)".into(),
            Some(format!(
                "{}'s ramp was client-limited from {} req/s ({reason}): it measured the client, not the server",
                before.name,
                format_rate(rate)
            )),
        ),
        (_, Some(NotMeasured { rate, reason })) => (
            "n/a (after client-limited)".into(),
            Some(format!(
                "{}'s ramp was client-limited from {} req/s ({reason}): it measured the client, not the server",
                after.name,
                format_rate(rate)
            )),
        ),
        _ => ("-".into(), None),
    }
}

/// The seed's table for `summary`, when it has a before/after pair.
pub fn table(summary: &Summary) -> Option<MigrationTable> {
    tables(summary).into_iter().next()
}

/// The seed's table, then — when the scenario names a `fair_before` (Node on every core) — the
/// same table against it: the seed compared one Node process on a multi-core machine, the fair
/// comparison gives Node every core the Rust server had.
pub fn tables(summary: &Summary) -> Vec<MigrationTable> {
    let Some((b, a)) = resolve_pair(summary) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let fair = summary
        .migration_table
        .as_ref()
        .and_then(|p| p.fair_before.as_deref())
        .and_then(|name| summary.variants.iter().position(|v| v.name == name))
        .filter(|&f| f != b);
    let seed_title = if fair.is_some() {
        "against the seed's \"before\" (its comparison)"
    } else {
        "the seed's comparison"
    };
    out.extend(table_between(summary, b, a, seed_title));
    if let Some(f) = fair {
        out.extend(table_between(
            summary,
            f,
            a,
            "against Node on every core the target may use (the fair comparison)",
        ));
    }
    out
}

/// The table between variants `b` (before) and `a` (after) of `summary`.
fn table_between(summary: &Summary, b: usize, a: usize, title: &str) -> Option<MigrationTable> {
    let before = summary.variants.get(b)?;
    let after = summary.variants.get(a)?;
    let rate = before
        .figures
        .target_rate_per_sec
        .map_or_else(|| "the fixed load".to_string(), |r| format!("{r:.0} req/s"));
    let before_reason = untrusted_reason(before);
    let after_reason = untrusted_reason(after);
    let untrusted = match (&before_reason, &after_reason) {
        (None, None) => None,
        (Some(_), Some(_)) => Some("n/a (both invalid)"),
        (Some(_), None) => Some("n/a (before invalid)"),
        (None, Some(_)) => Some("n/a (after invalid)"),
    };
    let mut notes = Vec::new();
    for (side, v, reason) in [
        ("before", before, before_reason),
        ("after", after, after_reason),
    ] {
        if let Some(reason) = reason {
            notes.push(format!(
                "{side} ({}) is invalid: {reason} — its figures describe the client, not the \
                 server, so no ratio is drawn from them",
                v.name
            ));
        }
    }
    let change = |computed: String| untrusted.map_or(computed, str::to_string);
    let throughput = match untrusted {
        Some(text) => text.to_string(),
        None => {
            let (text, note) = throughput_change(before, after);
            notes.extend(note);
            text
        }
    };
    let rss = |v: &VariantSummary| v.figures.target_rss_peak_bytes.map(|x| x as f64);
    let rows = vec![
        MigrationRow {
            metric: "throughput (max sustainable)".into(),
            before: max_sustainable_text(before),
            after: max_sustainable_text(after),
            change: throughput,
            seed_claim: "20x",
        },
        MigrationRow {
            metric: format!("p99 at {rate}"),
            before: marked(format_us(before.figures.latency_us.p99), before, true),
            after: marked(format_us(after.figures.latency_us.p99), after, true),
            change: change(change_text(ratio(p99_of(after), p99_of(before)))),
            seed_claim: "200 ms → 8 ms",
        },
        MigrationRow {
            metric: format!("RSS peak at {rate}"),
            before: marked(
                format_bytes(before.figures.target_rss_peak_bytes),
                before,
                false,
            ),
            after: marked(
                format_bytes(after.figures.target_rss_peak_bytes),
                after,
                false,
            ),
            change: change(change_text(ratio(rss(after), rss(before)))),
            seed_claim: "500 MB → 50 MB",
        },
        MigrationRow {
            metric: format!("GC pause time at {rate}"),
            before: marked(gc_text(before), before, false),
            after: marked(gc_text(after), after, false),
            change: "-".into(),
            seed_claim: "no GC pauses",
        },
    ];
    Some(MigrationTable {
        title: title.to_string(),
        before: before.name.clone(),
        after: after.name.clone(),
        before_state: verdict_state(&before.figures),
        after_state: verdict_state(&after.figures),
        rows,
        notes,
    })
}

/// Why a step between two variants is left out of the attribution: an invalid side.
fn step_exclusion(from: &VariantSummary, to: &VariantSummary) -> Option<String> {
    let reasons: Vec<String> = [from, to]
        .iter()
        .filter_map(|v| untrusted_reason(v).map(|r| format!("{} is invalid: {r}", v.name)))
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// A step's throughput ratio: only between two exact ceilings (a bound is no bar).
fn throughput_step(from: &VariantSummary, to: &VariantSummary) -> StepRatio {
    let exact = |v: &VariantSummary| match ceiling(v) {
        Some(Ceiling::Exact { rate, .. }) => Ok(Some(rate)),
        Some(Ceiling::AtLeast(rate)) => Err(format!(
            "{}'s ceiling is only a lower bound (≥ {} req/s)",
            v.name,
            format_rate(rate)
        )),
        Some(Ceiling::NotMeasured { rate, .. }) => Err(format!(
            "{}'s ramp was client-limited from {} req/s",
            v.name,
            format_rate(rate)
        )),
        Some(Ceiling::Below(rate)) => Err(format!(
            "{} passed no ramp stage (< {} req/s)",
            v.name,
            format_rate(rate)
        )),
        None => Ok(None),
    };
    match (exact(from), exact(to)) {
        (Ok(b), Ok(a)) => StepRatio {
            ratio: ratio(a, b),
            excluded: None,
        },
        (Err(why), Ok(_)) | (Ok(_), Err(why)) => StepRatio {
            ratio: None,
            excluded: Some(why),
        },
        (Err(b), Err(a)) => StepRatio {
            ratio: None,
            excluded: Some(format!("{b}; {a}")),
        },
    }
}

/// The steps from "before" to "after", variant to next variant in scenario order.
pub fn steps(summary: &Summary) -> Vec<MigrationStep> {
    let Some((b, a)) = resolve_pair(summary) else {
        return Vec::new();
    };
    let walk: Vec<&VariantSummary> = if b < a {
        summary.variants[b..=a].iter().collect()
    } else {
        vec![&summary.variants[b], &summary.variants[a]]
    };
    walk.windows(2)
        .map(|pair| {
            let (from, to) = (pair[0], pair[1]);
            let (throughput, p99) = match step_exclusion(from, to) {
                Some(why) => {
                    let excluded = StepRatio {
                        ratio: None,
                        excluded: Some(why),
                    };
                    (excluded.clone(), excluded)
                }
                None => (
                    throughput_step(from, to),
                    StepRatio {
                        ratio: ratio(p99_of(to), p99_of(from)),
                        excluded: None,
                    },
                ),
            };
            MigrationStep {
                from: from.name.clone(),
                to: to.name.clone(),
                throughput,
                p99,
            }
        })
        .collect()
}

fn state_tag(state: State) -> &'static str {
    match state {
        State::Valid => "",
        State::Saturated => " [saturated]",
        State::Invalid => " [INVALID]",
    }
}

/// The table as text for stdout, each column as wide as its widest cell.
pub fn render_text(table: &MigrationTable) -> String {
    let mut out = format!(
        "\nmigration ({}): {}{} → {}{} (this run) vs the seed's claims\n",
        table.title,
        table.before,
        state_tag(table.before_state),
        table.after,
        state_tag(table.after_state)
    );
    let width = |header: &str, cell: fn(&MigrationRow) -> &str| {
        table
            .rows
            .iter()
            .map(|r| cell(r).chars().count())
            .chain(std::iter::once(header.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let metric = width("", |r| &r.metric);
    let before = width("before", |r| &r.before);
    let after = width("after", |r| &r.after);
    let change = width("change", |r| &r.change);
    let line = |cells: [&str; 5]| {
        format!(
            "{:<metric$}  {:>before$}  {:>after$}  {:>change$}  {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        )
    };
    out.push_str(&line(["", "before", "after", "change", "seed claimed"]));
    for row in &table.rows {
        out.push_str(&line([
            &row.metric,
            &row.before,
            &row.after,
            &row.change,
            row.seed_claim,
        ]));
    }
    for note in &table.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Measurement, MigrationPair, Percentiles, StageFigures};
    use crate::scenario::LoadModel;

    fn variant(name: &str, kind: &str, max: Option<f64>, p99_us: u64) -> VariantSummary {
        let figures = Measurement {
            valid: true,
            target_rate_per_sec: Some(200.0),
            requests: 1000,
            latency_us: Percentiles {
                p99: p99_us,
                ..Percentiles::default()
            },
            target_rss_peak_bytes: Some(100 << 20),
            gc_pause_total_ms: (kind == "node").then_some(12.5),
            gc_pauses: (kind == "node").then_some(40),
            max_sustainable_rps: max,
            stages: vec![StageFigures {
                rate_per_sec: 1600.0,
                within_budget: false,
                ..StageFigures::default()
            }],
            ..Measurement::default()
        };
        VariantSummary {
            name: name.into(),
            target_kind: kind.into(),
            knobs: Default::default(),
            load_model: LoadModel::Open,
            latency_origin: "scheduled".into(),
            repetitions: vec![figures.clone()],
            figures,
        }
    }

    fn summary(pair: Option<MigrationPair>) -> Summary {
        Summary {
            schema_version: 1,
            scenario: "migration".into(),
            load_model: LoadModel::Open,
            partial: false,
            repeat: 1,
            started_at: String::new(),
            finished_at: String::new(),
            variants: vec![
                variant("node-before", "node", Some(200.0), 40_000),
                variant("node-batched", "node", Some(400.0), 20_000),
                variant("rust-n-plus-one", "api", Some(400.0), 10_000),
                variant("rust-tuned", "api", Some(1200.0), 5_000),
            ],
            migration_table: pair,
            shards: Vec::new(),
            baseline: None,
        }
    }

    #[test]
    fn names_pick_the_pair_unless_the_scenario_sets_it() {
        assert_eq!(resolve_pair(&summary(None)), Some((0, 3)));
        let explicit = MigrationPair {
            before: "node-batched".into(),
            after: "rust-n-plus-one".into(),
            fair_before: None,
        };
        assert_eq!(resolve_pair(&summary(Some(explicit))), Some((1, 2)));
    }

    #[test]
    fn a_fair_before_gives_a_second_table_against_it() {
        let pair = MigrationPair {
            before: "node-before".into(),
            after: "rust-tuned".into(),
            fair_before: Some("node-batched".into()),
        };
        let both = tables(&summary(Some(pair.clone())));
        assert_eq!(both.len(), 2);
        assert_eq!(
            (both[0].before.as_str(), both[0].rows[0].change.as_str()),
            ("node-before", "×6.0")
        );
        assert_eq!(
            (both[1].before.as_str(), both[1].rows[0].change.as_str()),
            ("node-batched", "×3.0")
        );
        assert!(both[1].title.contains("every core"), "{}", both[1].title);
        assert!(render_text(&both[1]).starts_with("\nmigration (against Node on every core"));
        // A fair "before" that is the seed's own, or not a variant, adds nothing.
        let same = MigrationPair {
            fair_before: Some("node-before".into()),
            ..pair.clone()
        };
        assert_eq!(tables(&summary(Some(same))).len(), 1);
        let missing = MigrationPair {
            fair_before: Some("node-cluster".into()),
            ..pair
        };
        assert_eq!(tables(&summary(Some(missing))).len(), 1);
    }

    #[test]
    fn the_table_shows_ratios_and_no_gc_for_rust() {
        let t = table(&summary(None)).expect("a pair");
        assert_eq!(t.rows[0].before, "200 req/s");
        assert_eq!(t.rows[0].change, "×6.0");
        assert_eq!(t.rows[1].metric, "p99 at 200 req/s");
        assert_eq!(t.rows[1].change, "÷8.0");
        assert_eq!(t.rows[3].before, "12.5 ms in 40 pauses");
        assert_eq!(t.rows[3].after, "none (no GC)");
        let text = render_text(&t);
        assert!(
            text.contains("20x") && text.contains("500 MB → 50 MB"),
            "{text}"
        );
    }

    #[test]
    fn a_pass_above_a_failed_stage_is_shown_but_not_counted() {
        let mut v = variant("rust-tuned", "api", Some(1600.0), 5_000);
        let stage = |rate: f64, ok: bool| StageFigures {
            rate_per_sec: rate,
            within_budget: ok,
            ..StageFigures::default()
        };
        v.figures.stages = vec![
            stage(1600.0, true),
            stage(2000.0, false),
            stage(2400.0, true),
        ];
        // Rates group their thousands ("1 600"), as every view of a ramp does.
        assert_eq!(
            max_sustainable_text(&v),
            "1 600 req/s (passed above the ceiling at 2 400)"
        );
        v.figures.max_sustainable_rps = Some(2400.0);
        assert_eq!(
            max_sustainable_text(&v),
            "≥ 2 400 req/s (over budget at 2 000)"
        );
        v.figures.max_sustainable_rps = Some(1600.0);
        v.figures.stages.truncate(1);
        assert_eq!(max_sustainable_text(&v), "≥ 1 600 req/s");
    }

    #[test]
    fn steps_walk_the_variants_in_order() {
        let s = steps(&summary(None));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].throughput.ratio, Some(2.0));
        assert_eq!(s[1].throughput.ratio, Some(1.0));
        assert_eq!(s[2].p99.ratio, Some(0.5));
        assert!(s.iter().all(|s| s.throughput.excluded.is_none()));
    }

    fn make_invalid(v: &mut VariantSummary, reason: &str) {
        v.figures.valid = false;
        v.figures.verdict = "invalid".into();
        v.figures.verdict_reason = Some(reason.into());
        v.figures.invalid_reason = Some(reason.into());
    }

    /// No "×12.3" or "÷4.2" anywhere in a change column.
    fn has_ratio(change: &str) -> bool {
        change.contains('×') || change.contains('÷')
    }

    #[test]
    fn an_invalid_before_gives_no_ratio_and_says_why() {
        let mut s = summary(None);
        make_invalid(
            &mut s.variants[0],
            "users exhausted: 64 of 64 busy; this rate at this latency needs ≈ 190",
        );
        let t = table(&s).expect("a pair");
        for row in &t.rows {
            assert!(!has_ratio(&row.change), "{}: {}", row.metric, row.change);
        }
        assert_eq!(t.rows[0].change, "n/a (before invalid)");
        assert_eq!(t.rows[1].change, "n/a (before invalid)");
        assert_eq!(t.rows[1].before, "40.0 ms (invalid)");
        assert_eq!(t.rows[1].after, "5.0 ms");
        assert_eq!(t.before_state, State::Invalid);
        let text = render_text(&t);
        assert!(
            text.contains("node-before [INVALID] → rust-tuned"),
            "{text}"
        );
        assert!(
            text.contains("note: before (node-before) is invalid: users exhausted: 64 of 64 busy"),
            "{text}"
        );
        assert!(!text.contains('×') && !text.contains('÷'), "{text}");

        // The same on the other side.
        let mut s = summary(None);
        make_invalid(&mut s.variants[3], "generator-bound, not the server");
        let t = table(&s).expect("a pair");
        assert!(t.rows.iter().all(|r| !has_ratio(&r.change)));
        assert_eq!(t.rows[2].change, "n/a (after invalid)");
    }

    #[test]
    fn a_saturated_side_still_compares_but_is_marked() {
        let mut s = summary(None);
        s.variants[0].figures.saturated = true;
        s.variants[0].figures.verdict = "saturated".into();
        let t = table(&s).expect("a pair");
        assert_eq!(t.rows[1].before, "40.0 ms (saturated)");
        assert_eq!(t.rows[1].change, "÷8.0");
        assert!(render_text(&t).contains("node-before [saturated]"));
    }

    #[test]
    fn lower_bound_ceilings_give_bounded_ratios_or_none() {
        let mut s = summary(None);
        // after: client-limited above 1200, so the server held at least 1200.
        s.variants[3].figures.max_sustainable_is_lower_bound = true;
        assert_eq!(ceiling(&s.variants[3]), Some(Ceiling::AtLeast(1200.0)));
        assert_eq!(max_sustainable_text(&s.variants[3]), "≥ 1 200 req/s");
        let t = table(&s).expect("a pair");
        assert_eq!(t.rows[0].change, "≥ ×6.0");
        assert!(
            t.notes.iter().any(|n| n.contains("lower bound")),
            "{:?}",
            t.notes
        );
        // before a lower bound too: nothing is known.
        s.variants[0].figures.max_sustainable_is_lower_bound = true;
        let t = table(&s).expect("a pair");
        assert_eq!(t.rows[0].change, "n/a (both ≥)");
        // only before: the ratio is at most this.
        s.variants[3].figures.max_sustainable_is_lower_bound = false;
        assert_eq!(table(&s).expect("a pair").rows[0].change, "≤ ×6.0");
    }

    #[test]
    fn a_ramp_client_limited_from_its_first_stage_measured_nothing() {
        let mut s = summary(None);
        s.variants[0].figures.max_sustainable_rps = None;
        s.variants[0].figures.stages = vec![StageFigures {
            rate_per_sec: 200.0,
            client_limited: true,
            verdict: "invalid".into(),
            verdict_reason: Some("generator-bound, not the server".into()),
            ..StageFigures::default()
        }];
        assert_eq!(
            max_sustainable_text(&s.variants[0]),
            "n/a (client-limited from 200 req/s)"
        );
        let t = table(&s).expect("a pair");
        assert_eq!(t.rows[0].change, "n/a (before client-limited)");
        assert!(t.notes[0].contains("generator-bound"), "{:?}", t.notes);
        // The fixed-rate rows are unaffected: that phase was valid.
        assert_eq!(t.rows[1].change, "÷8.0");
        let s = steps(&s);
        assert_eq!(s[0].throughput.ratio, None);
        assert!(
            s[0].throughput
                .excluded
                .as_deref()
                .is_some_and(|e| e.contains("client-limited")),
            "{:?}",
            s[0]
        );
        assert_eq!(s[0].p99.ratio, Some(0.5));
    }

    #[test]
    fn an_exact_ceiling_carries_its_resolution_and_client_limited_stages() {
        let mut v = variant("rust-tuned", "api", Some(1850.0), 5_000);
        v.figures.max_sustainable_resolution_rps = Some(50.0);
        v.figures.stages = vec![
            StageFigures {
                rate_per_sec: 1600.0,
                within_budget: true,
                ..StageFigures::default()
            },
            StageFigures {
                rate_per_sec: 1850.0,
                within_budget: true,
                bisection: true,
                ..StageFigures::default()
            },
            StageFigures {
                rate_per_sec: 1900.0,
                bisection: true,
                ..StageFigures::default()
            },
            StageFigures {
                rate_per_sec: 3200.0,
                client_limited: true,
                ..StageFigures::default()
            },
        ];
        assert_eq!(
            max_sustainable_text(&v),
            "1 850 req/s ±50 (client-limited at 3 200)"
        );
    }

    #[test]
    fn steps_from_or_to_an_invalid_variant_are_excluded_from_the_attribution() {
        let mut s = summary(None);
        make_invalid(
            &mut s.variants[1],
            "generator-bound, not the server: send-lag p99 35 ms",
        );
        let steps = steps(&s);
        for step in &steps[..2] {
            assert_eq!(step.throughput.ratio, None, "{step:?}");
            assert_eq!(step.p99.ratio, None, "{step:?}");
            assert!(
                step.p99
                    .excluded
                    .as_deref()
                    .is_some_and(|e| e.contains("node-batched is invalid: generator-bound")),
                "{step:?}"
            );
        }
        // The step between two valid variants keeps its ratios.
        assert_eq!(steps[2].throughput.ratio, Some(3.0));
        assert_eq!(steps[2].p99.excluded, None);
    }
}
