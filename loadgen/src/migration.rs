//! The seed's migration table, filled from one run: max sustainable throughput (×), p99 at the
//! fixed rate, RSS peak and GC pause time, "before" → "after", each beside the claim the seed
//! story made. Also the step-by-step ratios the report's attribution (waterfall) chart draws.
//!
//! Which variants are "before" and "after": the scenario's `migration_table` when it set one,
//! else the first `node*` variant and the last `rust*` variant. Pure functions over a
//! [`Summary`]; this module never reads files or prints.

use crate::output::{format_bytes, format_us};
use crate::results::{Summary, VariantSummary};

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRow {
    pub metric: String,
    pub before: String,
    pub after: String,
    /// "×12.3" for throughput, "÷4.2" for a latency that fell, "-" when not comparable.
    pub change: String,
    /// What the seed story claimed for this row.
    pub seed_claim: &'static str,
}

/// The table for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationTable {
    pub before: String,
    pub after: String,
    pub rows: Vec<MigrationRow>,
}

/// One step of the migration: the change from one variant to the next, in scenario order.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStep {
    pub from: String,
    pub to: String,
    /// `to`'s max sustainable rate / `from`'s (> 1: more throughput).
    pub throughput_ratio: Option<f64>,
    /// `to`'s p99 at the fixed rate / `from`'s (< 1: faster).
    pub p99_ratio: Option<f64>,
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

/// "1200 req/s", "≥ 1600 req/s" (passed every stage), "< 200 req/s" (passed none), or "n/a";
/// notes where the ramp was not monotonic: "2000 req/s (over budget at 1600; passed above the
/// ceiling at 3200)" — a lone stall below the maximum, or a pass beyond the failures that
/// ended the ramp, neither of which the maximum counts.
pub fn max_sustainable_text(v: &VariantSummary) -> String {
    let stages = &v.figures.stages;
    let rates = |keep: &dyn Fn(&crate::results::StageFigures) -> bool| -> Vec<String> {
        stages
            .iter()
            .filter(|s| keep(s))
            .map(|s| format!("{:.0}", s.rate_per_sec))
            .collect()
    };
    let notes = |max: f64| {
        let failed_below = rates(&|s| !s.within_budget && s.rate_per_sec < max);
        let passed_above = rates(&|s| s.within_budget && s.rate_per_sec > max);
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
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    };
    match v.figures.max_sustainable_rps {
        Some(rate) if max_is_capped(v) => format!("≥ {rate:.0} req/s{}", notes(rate)),
        Some(rate) => format!("{rate:.0} req/s{}", notes(rate)),
        None => match stages.first() {
            Some(lowest) => format!("< {:.0} req/s", lowest.rate_per_sec),
            None => "n/a (no [find_max])".into(),
        },
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

/// The seed's table for `summary`, when it has a before/after pair.
pub fn table(summary: &Summary) -> Option<MigrationTable> {
    let (b, a) = resolve_pair(summary)?;
    let before = &summary.variants[b];
    let after = &summary.variants[a];
    let rate = before
        .figures
        .target_rate_per_sec
        .map_or_else(|| "the fixed load".to_string(), |r| format!("{r:.0} req/s"));
    let mut throughput_change = change_text(ratio(
        after.figures.max_sustainable_rps,
        before.figures.max_sustainable_rps,
    ));
    if max_is_capped(after) && throughput_change != "-" {
        // The after side passed the ramp's top stage: the true ratio is at least this.
        throughput_change = format!("≥ {throughput_change}");
    }
    let rss = |v: &VariantSummary| v.figures.target_rss_peak_bytes.map(|x| x as f64);
    let rows = vec![
        MigrationRow {
            metric: "throughput (max sustainable)".into(),
            before: max_sustainable_text(before),
            after: max_sustainable_text(after),
            change: throughput_change,
            seed_claim: "20x",
        },
        MigrationRow {
            metric: format!("p99 at {rate}"),
            before: format_us(before.figures.latency_us.p99),
            after: format_us(after.figures.latency_us.p99),
            change: change_text(ratio(p99_of(after), p99_of(before))),
            seed_claim: "200 ms → 8 ms",
        },
        MigrationRow {
            metric: format!("RSS peak at {rate}"),
            before: format_bytes(before.figures.target_rss_peak_bytes),
            after: format_bytes(after.figures.target_rss_peak_bytes),
            change: change_text(ratio(rss(after), rss(before))),
            seed_claim: "500 MB → 50 MB",
        },
        MigrationRow {
            metric: format!("GC pause time at {rate}"),
            before: gc_text(before),
            after: gc_text(after),
            change: "-".into(),
            seed_claim: "no GC pauses",
        },
    ];
    Some(MigrationTable {
        before: before.name.clone(),
        after: after.name.clone(),
        rows,
    })
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
        .map(|pair| MigrationStep {
            from: pair[0].name.clone(),
            to: pair[1].name.clone(),
            throughput_ratio: ratio(
                pair[1].figures.max_sustainable_rps,
                pair[0].figures.max_sustainable_rps,
            ),
            p99_ratio: ratio(p99_of(pair[1]), p99_of(pair[0])),
        })
        .collect()
}

/// The table as text for stdout.
pub fn render_text(table: &MigrationTable) -> String {
    let mut out = format!(
        "\nmigration: {} → {} (this run) vs the seed's claims\n",
        table.before, table.after
    );
    out.push_str(&format!(
        "{:<30} {:>26} {:>26} {:>9}  {}\n",
        "", "before", "after", "change", "seed claimed"
    ));
    for row in &table.rows {
        out.push_str(&format!(
            "{:<30} {:>26} {:>26} {:>9}  {}\n",
            row.metric, row.before, row.after, row.change, row.seed_claim
        ));
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
        }
    }

    #[test]
    fn names_pick_the_pair_unless_the_scenario_sets_it() {
        assert_eq!(resolve_pair(&summary(None)), Some((0, 3)));
        let explicit = MigrationPair {
            before: "node-batched".into(),
            after: "rust-n-plus-one".into(),
        };
        assert_eq!(resolve_pair(&summary(Some(explicit))), Some((1, 2)));
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
        assert_eq!(
            max_sustainable_text(&v),
            "1600 req/s (passed above the ceiling at 2400)"
        );
        v.figures.max_sustainable_rps = Some(2400.0);
        assert_eq!(
            max_sustainable_text(&v),
            "≥ 2400 req/s (over budget at 2000)"
        );
        v.figures.max_sustainable_rps = Some(1600.0);
        v.figures.stages.truncate(1);
        assert_eq!(max_sustainable_text(&v), "≥ 1600 req/s");
    }

    #[test]
    fn steps_walk_the_variants_in_order() {
        let s = steps(&summary(None));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].throughput_ratio, Some(2.0));
        assert_eq!(s[1].throughput_ratio, Some(1.0));
        assert_eq!(s[2].p99_ratio, Some(0.5));
    }
}
