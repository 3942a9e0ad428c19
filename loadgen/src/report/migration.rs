//! The report's migration section, when the run names a before and an after
//! ([`crate::migration::resolve_pair`]): the seed's before/after table (each figure, its change,
//! what the seed claimed) and the attribution waterfalls — how much of the throughput and p99
//! change each step between consecutive variants bought, with the steps that cannot be trusted
//! (an invalid side) left out and said.

use super::ReportError;
use super::charts::{self, ChartSpec, XAxis};
use super::html::{esc, spec, verdict_badge};
use crate::output::verdict_state;
use crate::saved::SavedRun;
use crate::verdict::State;
use std::fmt::Write as _;

/// "node-before (INVALID)" in a heading, by the variant's verdict.
fn state_suffix(state: State) -> &'static str {
    match state {
        State::Valid => "",
        State::Saturated => " (saturated)",
        State::Invalid => " (INVALID)",
    }
}

/// The seed's before/after table and the attribution waterfalls; empty when the run has no
/// before/after pair (see [`crate::migration::resolve_pair`]).
pub(super) fn migration_section(run: &SavedRun) -> Result<String, ReportError> {
    let summary = &run.summary;
    let tables = crate::migration::tables(summary);
    if tables.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("<section id=\"migration\">\n");
    for table in &tables {
        let _ = write!(
            out,
            "<h2>Migration: {} → {} <small>({})</small></h2>\n<div class=\"scroll\"><table>\n\
         <tr><th></th><th>before ({}) {}</th><th>after ({}) {}</th><th>change</th>\
         <th class=\"left\">the seed claimed</th></tr>\n",
            esc(&table.before),
            esc(&table.after),
            esc(&table.title),
            esc(&table.before),
            verdict_badge(table.before_state),
            esc(&table.after),
            verdict_badge(table.after_state)
        );
        for row in &table.rows {
            let change_class = if row.change.starts_with("n/a") {
                " class=\"muted\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td{change_class}>{}</td><td class=\"reason\">{}</td></tr>",
                esc(&row.metric),
                esc(&row.before),
                esc(&row.after),
                esc(&row.change),
                esc(row.seed_claim)
            );
        }
        out.push_str("</table></div>\n");
        if !table.notes.is_empty() {
            out.push_str("<ul class=\"notes\">\n");
            for note in &table.notes {
                let _ = writeln!(out, "<li>{}</li>", esc(note));
            }
            out.push_str("</ul>\n");
        }
    }

    let steps = crate::migration::steps(summary);
    if !steps.is_empty() {
        let states: std::collections::HashMap<&str, State> = summary
            .variants
            .iter()
            .map(|v| (v.name.as_str(), verdict_state(&v.figures)))
            .collect();
        let label = |name: &str| {
            format!(
                "→ {name}{}",
                state_suffix(states.get(name).copied().unwrap_or(State::Valid))
            )
        };
        let bars = |pick: fn(&crate::migration::MigrationStep) -> &crate::migration::StepRatio| {
            steps
                .iter()
                .map(|s| charts::WaterfallStep {
                    label: label(&s.to),
                    ratio: pick(s).ratio,
                    note: pick(s).excluded.as_ref().map(|_| "excluded".to_string()),
                })
                .collect::<Vec<_>>()
        };
        let throughput_spec = spec(
            "Max sustainable throughput, step by step",
            "step (variant → next variant, in scenario order)",
            "cumulative change (log)",
            XAxis::Seconds,
            false,
        );
        let rate = summary
            .variants
            .first()
            .and_then(|v| v.figures.target_rate_per_sec)
            .map_or_else(String::new, |r| format!(" at {r:.0} req/s"));
        let p99_spec = spec(
            &format!("p99{rate}, step by step (lower is better)"),
            "step (variant → next variant, in scenario order)",
            "cumulative change (log)",
            XAxis::Seconds,
            false,
        );
        let draw = |chart_spec: &ChartSpec, steps: &[charts::WaterfallStep], higher: bool| {
            charts::waterfall_chart(chart_spec, steps, higher)
                .map(|svg| format!("<figure>{svg}</figure>"))
                .map_err(|message| ReportError::Chart {
                    chart: chart_spec.title.clone(),
                    message,
                })
        };
        let _ = write!(
            out,
            "<h3>Attribution: which step bought how much</h3>\n<div class=\"grid\">{}{}</div>\n",
            draw(&throughput_spec, &bars(|s| &s.throughput), true)?,
            draw(&p99_spec, &bars(|s| &s.p99), false)?
        );
        let mut excluded: Vec<String> = Vec::new();
        for step in &steps {
            for (what, ratio) in [("throughput", &step.throughput), ("p99", &step.p99)] {
                if let Some(why) = &ratio.excluded {
                    excluded.push(format!("{} → {} ({what}): {why}", step.from, step.to));
                }
            }
        }
        if !excluded.is_empty() {
            out.push_str(
                "<p class=\"note\">Excluded from the attribution (no bar, and no total where a \
                 step is missing), because a side is not the server's measurement:</p>\n<ul class=\"notes\">\n",
            );
            for line in excluded {
                let _ = writeln!(out, "<li>{}</li>", esc(&line));
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str(
        "<p class=\"note\">Same machine, data, rate and pool size for every variant unless a step exists to \
         change exactly that. Throughput is the highest ramp stage whose p99 stayed within the budget with \
         under the error limit and a healthy generator (a “≥” means the top stage passed or the first \
         failure above was client-limited, so the server's ceiling is at least that; “±” is the ceiling's \
         resolution). An invalid variant — generator-bound, users exhausted, too many errors — gives no \
         ratio. p99 and RSS are from the fixed-rate phase; GC pause time is Node's \
         <code>nodejs_gc_duration_seconds</code> over that phase. Generator, Postgres and server share the \
         CPUs: compare ratios, not absolutes.</p>\n</section>\n",
    );
    Ok(out)
}
