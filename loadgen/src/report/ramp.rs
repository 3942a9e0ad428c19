//! The report's ramp section: for each variant with a `[find_max]` ramp, a row per stage by
//! rate — its goodput, p99, send lag, errors, whether it was within budget, over it, or
//! client-limited (never the server's ceiling), the stages the bisection added, and what the
//! target, Postgres and the generator used — under the variant's max sustainable throughput.
//! The verdicts come from the saved files; this section never judges a stage itself.

use super::html::{esc, row_class, swatch, verdict_cell};
use crate::compare::{Unit, format_figure};
use crate::output::{
    format_rate, format_us, stage_goodput_rps, stage_mark, stage_state, stages_by_rate,
};
use crate::results::StageFigures;
use crate::saved::SavedRun;
use std::fmt::Write as _;

/// The `[find_max]` ramp of each variant that has one: a row per stage, by rate, with its verdict,
/// whether it was within budget, over it, or client-limited (never the server's ceiling), the
/// stages the bisection added, and what the target, Postgres and the generator used.
pub(super) fn ramp_section(run: &SavedRun) -> String {
    let summary = &run.summary;
    if summary.variants.iter().all(|v| v.figures.stages.is_empty()) {
        return String::new();
    }
    let budget = run
        .info
        .as_ref()
        .and_then(|i| i.load.find_max.as_ref())
        .map(|f| {
            format!(
                " The budget: p99 ≤ {} and errors under {}.",
                format_us(f.budget.p99_budget_us),
                format_figure(Unit::Fraction, f.budget.max_error_rate)
            )
        })
        .unwrap_or_default();
    let mut out =
        String::from("<section id=\"ramp\">\n<h2>Max sustainable throughput (ramp)</h2>\n");
    for (i, v) in summary.variants.iter().enumerate() {
        if v.figures.stages.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<h3>{}{}: max sustainable {}</h3>\n<div class=\"scroll\"><table>\n<tr><th>stage rate</th>\
             <th>goodput</th><th>p99</th><th>send lag p99</th><th>errors</th><th>budget</th>\
             <th class=\"left\">verdict</th><th>users busy (peak)</th><th>target CPU</th>\
             <th>target RSS peak</th><th>Postgres CPU</th><th>Postgres memory peak</th>\
             <th>generator CPU</th></tr>",
            swatch(i),
            esc(&v.name),
            esc(&crate::migration::max_sustainable_text(v))
        );
        for stage in stages_by_rate(&v.figures) {
            out.push_str(&stage_row(stage));
        }
        out.push_str("</table></div>\n");
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">Each stage is measured after its settle period. <span class=\"ok\">✓</span> \
         within budget, <span class=\"bad\">✗</span> over budget (the server's doing), \
         <span class=\"stage-mark client-limited\">client-limited</span>: users exhausted or the \
         generator bound — it says nothing about the server and is never its ceiling (unless the \
         server's own p99 from the actual send was already over the budget: then it is the \
         server's ✗, and its reason says so); when the first \
         failure above the ceiling is client-limited the ceiling is shown as “≥”. Stages marked \
         <span class=\"bisection\">bisection</span> were added between the last pass and the first \
         failure until the step was small; “±” is the resolution that leaves. CPU is % of one core.{}</p>\n</section>",
        esc(&budget)
    );
    out
}

/// `[baseline]`: the database's ceiling (pgbench) and each variant's rate as a fraction of it,
/// with a bar per variant against the ceiling's line.
pub(super) fn ceiling_section(run: &SavedRun) -> String {
    let Some(b) = &run.summary.baseline else {
        return String::new();
    };
    let mut out = format!(
        "<section id=\"ceiling\">\n<h2>The database's ceiling: {} point reads/s</h2>\n\
         <p class=\"note\">{} — {}, {} clients, {} threads, {} s{}; mean latency {}{}. Command: \
         <code>{}</code>.</p>\n<div class=\"scroll\"><table>\n<tr><th class=\"left\">variant</th>\
         <th>rate</th><th>of the ceiling</th><th class=\"left\" style=\"min-width:240px\">\
         </th></tr>\n",
        format_rate(b.tps),
        esc(&b.tool),
        esc(&b.query),
        b.clients,
        b.threads,
        b.seconds,
        b.cpus
            .as_deref()
            .map_or_else(String::new, |c| format!(", on CPUs {}", esc(c))),
        b.latency_avg_ms
            .map_or_else(|| "–".to_string(), |ms| format!("{ms:.3} ms")),
        b.samples_note()
            .map_or_else(String::new, |note| format!("; {}", esc(&note))),
        esc(&b.command)
    );
    for (i, v) in run.summary.variants.iter().enumerate() {
        let Some(share) = crate::baseline::fraction_of_ceiling(b, &v.figures) else {
            continue;
        };
        let width = (share.fraction.clamp(0.0, 1.0) * 100.0).round();
        let _ = writeln!(
            out,
            "<tr><td class=\"left\">{}{}</td><td>{} {}{} req/s</td><td>{}{:.2}{}</td>\
             <td class=\"left\"><div style=\"position:relative;height:14px;background:#eef1f4\">\
             <div style=\"width:{width}%;height:14px;background:#3b6ea5\"></div></div></td></tr>",
            swatch(i),
            esc(&v.name),
            share.what,
            esc(share.bound()),
            format_rate(share.rate_per_sec),
            esc(share.bound()),
            share.fraction,
            if v.figures.valid { "" } else { " (not valid)" }
        );
    }
    out.push_str(
        "</table></div>\n<p class=\"note\">A full bar is the database's own rate for the same \
         query: what is missing is the cost of the HTTP layer, the pool and the generator's share \
         of the machine (see the CPU placement above).</p>\n</section>\n",
    );
    out
}

fn stage_row(s: &StageFigures) -> String {
    let state = stage_state(s);
    let mark_class = match stage_mark(s) {
        "✓" => "ok",
        "✗" => "bad",
        _ => "stage-mark client-limited",
    };
    let percent = |p: Option<f64>| p.map_or("–".into(), |c| format!("{c:.1} %"));
    let bytes = |b: Option<u64>| b.map_or("–".into(), |b| format_figure(Unit::Bytes, b as f64));
    format!(
        "<tr{}><td>{} req/s{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td><span class=\"{mark_class}\">{}</span></td>{}<td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td></tr>\n",
        row_class(state),
        format_rate(s.rate_per_sec),
        if s.bisection {
            "<span class=\"bisection\">bisection</span>"
        } else {
            ""
        },
        format_figure(Unit::PerSec, stage_goodput_rps(s)),
        esc(&format_us(s.p99_us)),
        if s.send_lag_p99_us > 0 || !s.verdict.is_empty() {
            esc(&format_us(s.send_lag_p99_us))
        } else {
            "–".into()
        },
        format_figure(Unit::Fraction, s.error_rate),
        stage_mark(s),
        verdict_cell(state, s.verdict_reason.as_deref()),
        if s.peak_users_busy > 0 {
            s.peak_users_busy.to_string()
        } else {
            "–".into()
        },
        percent(s.target_cpu_mean_percent),
        bytes(s.target_rss_peak_bytes),
        percent(s.postgres_cpu_mean_percent),
        bytes(s.postgres_rss_peak_bytes),
        percent(s.generator_cpu_mean_percent),
    )
}
