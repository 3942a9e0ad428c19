//! The report page: header (what was run, where, at which rate), the summary table, the
//! percentile spectrum, the per-request tables and the generator self-check, with the sections
//! that live in their own files — the migration table and waterfalls (`migration.rs`), the ramp
//! (`ramp.rs`), the time charts (`time_charts.rs`), a soak's drift (`drift.rs`), the per-request and
//! generator tables (`tables.rs`) — assembled
//! as one HTML string ([`page`]), and the cells and labels they share. Everything user-supplied
//! is escaped; nothing here fetches, links or scripts.
//!
//! Every measurement says whose numbers it holds: its verdict (valid / saturated / invalid,
//! styled apart) with the verdict's reason, the generator's own send lag and runtime-probe lag
//! beside its latency (which excludes them), goodput as its throughput with the drain apart, and
//! failed requests' latency apart from the successes'. The verdicts come from the saved files
//! ([`crate::output::verdict_state`]); this page never judges a run itself.

use super::charts::{self, ChartSpec, Line, XAxis};
use super::{ReportError, drift, migration, ramp, tables, time_charts};
use crate::compare::{Unit, format_figure, format_ratio, format_spread_parts};
use crate::output::{format_us, goodput_rps, verdict_reason, verdict_state};
use crate::results::{Measurement, Percentiles, RunInfo, VariantSummary};
use crate::saved::{self, SavedRun, SavedVariant, Spread};
use crate::verdict::State;
use std::fmt::Write as _;

/// Escapes text for HTML and XML content and attribute values (the report and the gate's
/// JUnit file). Control characters other than tab/newline, which XML 1.0 forbids, become spaces.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
:root{color-scheme:light}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1d232a;background:#f4f5f7;margin:0}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:18px 0 6px}
header,section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:16px 20px;margin:14px 0}
.description{color:#3d4752;margin:0 0 10px;font-size:15px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:8px 0 0}
dl.facts dt{color:#5b6673}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid #eceef1;text-align:right;vertical-align:top;white-space:nowrap}
th:first-child,td:first-child,th.left{text-align:left}
th{font-weight:600;color:#4a5562;font-size:12px;background:#f8f9fa;border-bottom:1px solid #d9dde2}
td.variant{white-space:normal;min-width:150px;max-width:260px}
td.reason{white-space:normal;text-align:left;min-width:180px;max-width:320px}
small.spread{display:block;color:#808a95;font-size:11px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.ok{color:#1a7f37;font-weight:600}
.bad{color:#c62828;font-weight:600}
.warn{color:#9a6700;font-weight:600}
.muted{color:#808a95}
.verdict{display:inline-block;border-radius:4px;padding:0 6px;font-weight:600;font-size:12px;border:1px solid}
.verdict.valid{color:#1a7f37;background:#e9f7ee;border-color:#9fd8b1}
.verdict.saturated{color:#7a5200;background:#fff4d6;border-color:#f0c36d}
.verdict.invalid{color:#8c1d1d;background:#fdecec;border-color:#e5a4a4}
tr.saturated td{background:#fffbef}
tr.invalid td{background:#fdf3f3}
.stage-mark.client-limited{color:#6f42c1;font-weight:600}
.bisection{display:inline-block;font-size:11px;color:#5b6673;border:1px dashed #aab2bb;border-radius:3px;padding:0 4px;margin-left:4px}
ul.notes{margin:6px 0 0;padding-left:20px;color:#5b6673;font-size:13px}
.banner{border-radius:8px;padding:10px 14px;margin:14px 0;border:1px solid #f0c36d;background:#fff8e5}
.banner.bad{border-color:#e5a4a4;background:#fdecec;color:#8c1d1d}
.note{color:#5b6673;font-size:13px;margin:6px 0 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:14px}
figure{margin:0}
svg{max-width:100%;height:auto;display:block}
.empty{color:#808a95;font-style:italic;border:1px dashed #d0d5db;border-radius:6px;padding:24px;text-align:center}
footer{color:#6b7580;font-size:12px;margin-top:20px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
";

/// The rate a variant's latencies were measured at, for labels: "pool-10 @ 200 req/s".
pub(super) fn variant_label(v: &VariantSummary) -> String {
    match v.figures.target_rate_per_sec {
        Some(rate) => format!("{} @ {} req/s", v.name, trim_number(rate)),
        None => format!(
            "{} (closed model, {} req/s achieved)",
            v.name,
            trim_number(v.figures.throughput_rps)
        ),
    }
}

pub(super) fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(super) fn swatch(index: usize) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:{}\"></span>",
        charts::css_colour(index)
    )
}

/// A table cell: the figure, and its min–max below when there are repetitions.
fn cell(parts: (String, Option<String>)) -> String {
    noted_cell(parts, "")
}

/// A table cell: the figure, its min–max when there are repetitions, and a note under both.
fn noted_cell((value, range): (String, Option<String>), note: &str) -> String {
    let range = range.map_or_else(String::new, |range| {
        format!(
            "<small class=\"spread\" title=\"min–max over repetitions\">{}</small>",
            esc(&range)
        )
    });
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("<small class=\"spread\">{}</small>", esc(note))
    };
    format!("<td>{}{range}{note}</td>", esc(&value))
}

pub(super) fn figure_cell(unit: Unit, spread: Option<Spread>) -> String {
    figure_cell_noted(unit, spread, "")
}

fn figure_cell_noted(unit: Unit, spread: Option<Spread>, note: &str) -> String {
    match spread {
        Some(s) => noted_cell(format_spread_parts(unit, &s), note),
        None => "<td>–</td>".into(),
    }
}

fn percent_cell(spread: Option<Spread>) -> String {
    match spread {
        None => "<td>–</td>".into(),
        Some(s) => cell((
            format!("{:.1} %", s.median),
            s.has_spread().then(|| format!("{:.1}–{:.1}", s.min, s.max)),
        )),
    }
}

/// A ratio against the reference; `untrusted` (this row or the reference is invalid) gives none.
fn ratio_cell(
    value: Option<f64>,
    reference: Option<f64>,
    is_reference: bool,
    untrusted: bool,
) -> String {
    if untrusted {
        return "<td class=\"muted\" title=\"an invalid measurement gives no ratio\">n/a \
                <small class=\"spread\">invalid</small></td>"
            .into();
    }
    if is_reference && value.is_some() {
        return "<td title=\"the reference\">1.00× <small class=\"spread\">reference</small></td>"
            .into();
    }
    match (value, reference) {
        (Some(v), Some(r)) if r > 0.0 => format!("<td>{}</td>", format_ratio(Some(v / r))),
        (Some(_), Some(_)) => "<td>∞</td>".into(),
        _ => "<td>–</td>".into(),
    }
}

pub(super) fn spread(
    v: &VariantSummary,
    f: impl Fn(&Measurement) -> Option<f64>,
) -> Option<Spread> {
    saved::spread_of(v, f)
}

/// The verdict as a styled badge: valid, saturated or invalid look different at a glance.
pub(super) fn verdict_badge(state: State) -> String {
    let text = match state {
        State::Valid => "✓ valid",
        State::Saturated => "◐ saturated",
        State::Invalid => "✗ INVALID",
    };
    format!("<span class=\"verdict {}\">{text}</span>", state.as_str())
}

/// The verdict cell: the badge and, under it, the one-sentence reason (every state has one in
/// files that record it).
pub(super) fn verdict_cell(state: State, reason: Option<&str>) -> String {
    let fallback = match state {
        State::Valid => None,
        State::Saturated => Some("every user was busy past its slots: the server's backlog"),
        State::Invalid => Some("the measurement could not be trusted"),
    };
    let reason = reason.or(fallback).map_or_else(String::new, |r| {
        format!("<small class=\"spread\">{}</small>", esc(r))
    });
    format!("<td class=\"reason\">{}{reason}</td>", verdict_badge(state))
}

/// `class="…"` of a table row by verdict, so a saturated or invalid row stands out.
pub(super) fn row_class(state: State) -> &'static str {
    match state {
        State::Valid => "",
        State::Saturated => " class=\"saturated\"",
        State::Invalid => " class=\"invalid\"",
    }
}

/// "45 µs / 1.2 ms / 12.0 ms": p50 / p99 / max, or `None` when nothing was recorded.
pub(super) fn p50_p99_max(p: &Percentiles) -> Option<String> {
    (p.count > 0).then(|| {
        format!(
            "{} / {} / {}",
            format_us(p.p50),
            format_us(p.p99),
            format_us(p.max)
        )
    })
}

fn duration_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn header(run: &SavedRun) -> String {
    let s = &run.summary;
    let info: Option<&RunInfo> = run.info.as_ref();
    let unknown = || "unknown (run.json missing)".to_string();
    let mut facts: Vec<(&str, String)> = Vec::new();
    facts.push(("Date", format!("{} → {}", s.started_at, s.finished_at)));
    facts.push((
        "Commit",
        info.map_or_else(unknown, |i| match &i.environment.git_commit {
            Some(c) => format!(
                "{}{}",
                c.chars().take(12).collect::<String>(),
                if i.environment.git_dirty == Some(true) {
                    " (uncommitted changes)"
                } else {
                    ""
                }
            ),
            None => "unknown (not a git checkout)".into(),
        }),
    ));
    facts.push((
        "Machine",
        info.map_or_else(unknown, |i| {
            let e = &i.environment;
            format!(
                "{} × {} CPUs{}{}",
                e.cpu_model.as_deref().unwrap_or("unknown CPU"),
                e.cpu_count,
                e.kernel
                    .as_deref()
                    .map(|k| format!(", Linux {k}"))
                    .unwrap_or_default(),
                e.hostname
                    .as_deref()
                    .map(|h| format!(", host {h}"))
                    .unwrap_or_default()
            )
        }),
    ));
    if let Some(p) = info.and_then(|i| i.placement.as_ref()) {
        let mut text = p.describe();
        for note in &p.notes {
            text.push_str(&format!("; {note}"));
        }
        facts.push(("CPU placement", text));
    }
    facts.push((
        "PostgreSQL",
        info.map_or_else(unknown, |i| match &i.postgres {
            Some(p) => format!("{}, provisioned by {}", p.server_version, p.provisioned_by),
            None => "none used (no variant needed a database)".into(),
        }),
    ));
    let load = match info {
        Some(i) => {
            let l = &i.load;
            let stages: Vec<String> = l
                .stages
                .iter()
                .map(|st| {
                    format!(
                        "{} req/s for {}",
                        trim_number(st.rate_per_sec),
                        duration_text(u64::try_from(st.duration.as_millis()).unwrap_or(u64::MAX))
                    )
                })
                .collect();
            let shape = match l.model {
                crate::scenario::LoadModel::Open => format!(
                    "open model (fixed schedule): {}; {} users{}",
                    stages.join(", then "),
                    l.users,
                    l.max_users
                        .filter(|max| *max > l.users)
                        .map_or_else(String::new, |max| format!(
                            ", growing to at most {max} while every user is busy"
                        ))
                ),
                crate::scenario::LoadModel::Closed => format!(
                    "closed model: {} users back to back, think time {} ms, for {}",
                    l.users,
                    l.think_time_ms,
                    duration_text(l.duration_ms)
                ),
            };
            format!(
                "{shape}; warm-up {} (excluded from figures); request timeout {}{}",
                duration_text(l.warmup_ms),
                duration_text(l.request_timeout_ms),
                l.max_error_rate.map_or_else(String::new, |rate| format!(
                    "; invalid at ≥ {} % errors",
                    trim_number(rate * 100.0)
                ))
            )
        }
        None => format!("{} model", s.load_model),
    };
    facts.push(("Load", load));
    facts.push((
        "Latency",
        match s.load_model {
            crate::scenario::LoadModel::Open => "successful requests, measured from each \
                 request's scheduled send time (a stalled server's backlog counts: \
                 coordinated-omission corrected); the generator's own send lag is excluded and \
                 shown apart, and so is failed requests' latency"
                .into(),
            crate::scenario::LoadModel::Closed => "successful requests, measured from the actual \
                 send (closed model: a stalled server slows the generator down, so tails are \
                 understated); failed requests' latency is shown apart"
                .into(),
        },
    ));
    if let Some(encoding) = info.and_then(|i| i.load.accept_encoding.as_deref()) {
        facts.push((
            "Accept-Encoding",
            format!("{encoding} (decompression is part of the full-body time)"),
        ));
    }
    if let Some(i) = info {
        facts.push((
            "Data",
            format!(
                "{} users, {} posts (seed {})",
                i.data.users, i.data.posts, i.data.seed
            ),
        ));
        facts.push((
            "Scenario file",
            format!(
                "{} (sha256 {}…)",
                i.scenario.path,
                i.scenario.sha256.chars().take(12).collect::<String>()
            ),
        ));
    }
    facts.push((
        "Repetitions",
        if s.repeat > 1 {
            format!(
                "{} per variant, interleaved; figures are medians, small grey numbers min–max",
                s.repeat
            )
        } else {
            "1 (no spread known: run with --repeat 3 to see the noise)".into()
        },
    ));
    if let Some(i) = info {
        facts.push((
            "apibench",
            format!("{} — {}", i.apibench_version, i.command_line.join(" ")),
        ));
    }

    let description = info
        .map(|i| i.scenario.description.trim().to_string())
        .filter(|d| !d.is_empty());
    let mut out = String::from("<header id=\"environment\">\n");
    let _ = writeln!(out, "<h1>apibench — {}</h1>", esc(&s.scenario));
    if let Some(d) = description {
        let _ = writeln!(out, "<p class=\"description\">{}</p>", esc(&d));
    }
    out.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    out.push_str("</dl>\n</header>\n");
    out
}

fn banners(run: &SavedRun) -> String {
    let mut out = String::new();
    if run.summary.partial {
        out.push_str(
            "<div class=\"banner\"><strong>Partial run:</strong> interrupted before the end of its \
             schedule; the figures cover what was measured.</div>\n",
        );
    }
    for v in &run.variants {
        let m = &v.summary.figures;
        match verdict_state(m) {
            State::Valid => {}
            State::Saturated => {
                let _ = writeln!(
                    out,
                    "<div class=\"banner\"><strong>{} is SATURATED:</strong> {} — the server's \
                     limit, with the generator healthy: its latency includes the backlog.</div>",
                    esc(&v.summary.name),
                    esc(verdict_reason(m).unwrap_or("every user was busy past its slots"))
                );
            }
            State::Invalid => {
                let _ = writeln!(
                    out,
                    "<div class=\"banner bad\"><strong>{} is INVALID:</strong> {} — its figures \
                     are not the server's: no ratio is drawn from them.</div>",
                    esc(&v.summary.name),
                    esc(verdict_reason(m).unwrap_or("the measurement could not be trusted"))
                );
            }
        }
    }
    out
}

/// The drain after the schedule ended, apart from goodput: "drain: 12 requests in 340 ms".
fn drain_text(m: &Measurement) -> String {
    if m.drain_requests == 0 && m.drain_ms == 0 {
        return String::new();
    }
    format!(
        "drain: {} request{} in {} after the schedule",
        m.drain_requests,
        if m.drain_requests == 1 { "" } else { "s" },
        format_us(m.drain_ms.saturating_mul(1000))
    )
}

fn summary_table(run: &SavedRun, reference: usize) -> String {
    let r = &run.variants[reference].summary;
    let mut out =
        String::from("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"scroll\"><table>\n");
    let _ = writeln!(
        out,
        "<tr><th>variant</th><th>target rate</th><th>goodput</th><th>p50</th><th>p90</th>\
         <th>p99</th><th>p99.9</th><th>max</th><th>send lag p50 / p99 / max</th><th>errors</th>\
         <th>goodput ×</th><th>p99 ×</th><th class=\"left\">verdict</th></tr>"
    );
    let ref_goodput = goodput_rps(&r.figures);
    let ref_invalid = verdict_state(&r.figures) == State::Invalid;
    let ref_p99 = r.figures.latency_us.p99 as f64;
    let ref_rss = r.figures.target_rss_peak_bytes.map(|b| b as f64);
    for (i, v) in run.variants.iter().enumerate() {
        let s = &v.summary;
        let m = &s.figures;
        let state = verdict_state(m);
        let is_ref = i == reference;
        let lat = |pick: fn(&Measurement) -> u64| {
            spread(s, move |m| (m.latency_us.count > 0).then(|| pick(m) as f64))
        };
        let _ = write!(
            out,
            "<tr{}><td class=\"variant\">{}<strong>{}</strong><small class=\"spread\">{}{}</small></td>",
            row_class(state),
            swatch(i),
            esc(&s.name),
            esc(&s.target_kind),
            esc(&knobs_text(s))
        );
        let _ = write!(
            out,
            "<td>{}<small class=\"spread\">sent {}</small></td>",
            m.target_rate_per_sec
                .map_or("closed model".into(), |r| format_figure(Unit::PerSec, r)),
            format_figure(Unit::PerSec, m.achieved_send_rate_per_sec)
        );
        out.push_str(&figure_cell_noted(
            Unit::PerSec,
            spread(s, |m| Some(goodput_rps(m))),
            &drain_text(m),
        ));
        out.push_str(&figure_cell(Unit::Micros, lat(|m| m.latency_us.p50)));
        out.push_str(&figure_cell(Unit::Micros, lat(|m| m.latency_us.p90)));
        out.push_str(&figure_cell(Unit::Micros, lat(|m| m.latency_us.p99)));
        out.push_str(&figure_cell(Unit::Micros, lat(|m| m.latency_us.p999)));
        out.push_str(&figure_cell(Unit::Micros, lat(|m| m.latency_us.max)));
        let _ = write!(
            out,
            "<td>{}<small class=\"spread\">{}</small></td>",
            esc(&p50_p99_max(&m.send_lag_us).unwrap_or_else(|| "–".into())),
            esc(&if m.probe_lag_us.count > 0 {
                format!("runtime probe p99 {}", format_us(m.probe_lag_us.p99))
            } else if m.send_lag_us.count == 0 {
                "not recorded".into()
            } else {
                String::new()
            })
        );
        let _ = write!(
            out,
            "<td>{}<small class=\"spread\">{}</small>{}</td>",
            m.errors,
            format_figure(Unit::Fraction, m.error_rate),
            if m.error_latency_us.count > 0 {
                format!(
                    "<small class=\"spread\" title=\"failed requests' latency, apart from the \
                     successes'\">failed: p50 {}, p99 {}</small>",
                    esc(&format_us(m.error_latency_us.p50)),
                    esc(&format_us(m.error_latency_us.p99))
                )
            } else {
                String::new()
            }
        );
        let untrusted = ref_invalid || state == State::Invalid;
        out.push_str(&ratio_cell(
            Some(goodput_rps(m)),
            Some(ref_goodput),
            is_ref,
            untrusted,
        ));
        out.push_str(&ratio_cell(
            Some(m.latency_us.p99 as f64),
            Some(ref_p99),
            is_ref,
            untrusted,
        ));
        let mut reason = verdict_reason(m).map(str::to_string);
        if let Some(note) = &m.stopped_early {
            reason = Some(format!(
                "stopped early: {note}{}",
                reason.map_or_else(String::new, |r| format!("; {r}"))
            ));
        } else if m.partial {
            reason = Some(format!(
                "partial (interrupted){}",
                reason.map_or_else(String::new, |r| format!("; {r}"))
            ));
        }
        let _ = writeln!(out, "{}</tr>", verdict_cell(state, reason.as_deref()));
    }
    out.push_str("</table></div>\n");
    out.push_str(
        "<h3>Memory and CPU</h3>\n<div class=\"scroll\"><table>\n<tr><th>variant</th>\
         <th>target RSS peak</th><th>target CPU</th><th>Postgres memory peak</th><th>Postgres CPU</th>\
         <th>RSS ×</th></tr>\n",
    );
    for (i, v) in run.variants.iter().enumerate() {
        let s = &v.summary;
        let _ = write!(
            out,
            "<tr{}><td class=\"variant\">{}<strong>{}</strong></td>",
            row_class(verdict_state(&s.figures)),
            swatch(i),
            esc(&s.name)
        );
        out.push_str(&figure_cell(
            Unit::Bytes,
            spread(s, |m| m.target_rss_peak_bytes.map(|b| b as f64)),
        ));
        out.push_str(&percent_cell(spread(s, |m| m.target_cpu_mean_percent)));
        out.push_str(&figure_cell(
            Unit::Bytes,
            spread(s, |m| m.postgres_rss_peak_bytes.map(|b| b as f64)),
        ));
        out.push_str(&percent_cell(spread(s, |m| m.postgres_cpu_mean_percent)));
        out.push_str(&ratio_cell(
            s.figures.target_rss_peak_bytes.map(|b| b as f64),
            ref_rss,
            i == reference,
            ref_invalid || verdict_state(&s.figures) == State::Invalid,
        ));
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
    let _ = writeln!(
        out,
        "<p class=\"note\">Latency is reported with the rate that produced it (target rate column), \
         for successful requests only; failed requests' latency is under the error count. It \
         excludes the generator's own send lag (actual send − the moment the send could have \
         gone), shown apart with the runtime probe's lateness: evidence of the generator's health \
         that the server cannot influence. Goodput is successful completions inside the measured \
         window per second of it; the drain after the schedule ended is shown under it, apart. \
         The verdict says whose numbers these are: <strong>valid</strong>, \
         <strong>saturated</strong> (a backlog formed by the server's doing while the generator \
         was healthy) or <strong>invalid</strong> (generator-bound, users exhausted, too many \
         errors: not the server's), so it gives no ratio. Ratios are against <strong>{}</strong>: \
         goodput × above 1 is better, p99 × and RSS × below 1 are better. RSS is the peak of the target's process tree; \
         CPU is the mean, in % of one core. Postgres memory is the PSS of the postmaster and its \
         backends where apibench could read <code>smaps_rollup</code> (shared_buffers counted \
         once); otherwise it is their summed RSS, which counts shared memory once per process that \
         touched it and overstates the footprint: compare variants with it, do not size with \
         it.{}</p>",
        esc(&r.name),
        if run.summary.repeat > 1 {
            " Grey numbers under a figure: min–max over the repetitions; the figure is their median."
        } else {
            ""
        }
    );
    out.push_str("</section>\n");
    out
}

fn knobs_text(s: &VariantSummary) -> String {
    if s.knobs.is_empty() {
        return String::new();
    }
    let knobs: Vec<String> = s.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" · {}", knobs.join(" "))
}

pub(super) fn chart(
    spec: &ChartSpec,
    lines: &[Line],
    empty_reason: &str,
) -> Result<String, ReportError> {
    if lines.iter().all(|l| l.points.is_empty()) {
        return Ok(format!(
            "<figure><div class=\"empty\"><strong>{}</strong><br>{}</div></figure>",
            esc(&spec.title),
            esc(empty_reason)
        ));
    }
    let svg = charts::line_chart(spec, lines).map_err(|message| ReportError::Chart {
        chart: spec.title.clone(),
        message,
    })?;
    Ok(format!("<figure>{svg}</figure>"))
}

pub(super) fn spec(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    wide: bool,
) -> ChartSpec {
    ChartSpec {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        x_axis,
        width_px: if wide { 1180 } else { 580 },
        height_px: if wide { 440 } else { 330 },
        shade: None,
        bands: Vec::new(),
        reference_y: None,
    }
}

fn spectrum(run: &SavedRun) -> Result<String, ReportError> {
    let lines: Vec<Line> = run
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| Line {
            label: Some(variant_label(&v.summary)),
            colour_index: i,
            points: spectrum_points(v),
        })
        .collect();
    let merged = if run.summary.repeat > 1 {
        ", all repetitions merged"
    } else {
        ""
    };
    let title = format!("Latency by percentile (every successful measured request{merged})");
    let svg = chart(
        &spec(
            &title,
            "percentile (log scale: 90 %, 99 %, 99.9 %, …)",
            "latency (ms)",
            XAxis::Nines,
            true,
        ),
        &lines,
        "no latency was recorded",
    )?;
    Ok(format!(
        "<section id=\"spectrum\">\n<h2>Percentile spectrum</h2>\n{svg}\n<p class=\"note\">Read \
         the tail on the right: each step of the x axis is another nine. Reconstructed from the \
         1 s interval histograms in <code>latency.hlog</code> after the warm-up.</p>\n</section>\n"
    ))
}

fn spectrum_points(v: &SavedVariant) -> Vec<(f64, f64)> {
    let h = &v.merged;
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    for step in h.iter_quantiles(5) {
        let q = step.quantile_iterated_to();
        let ms = h.highest_equivalent(step.value_iterated_to()) as f64 / 1000.0;
        if q >= 0.99999 {
            break;
        }
        points.push((charts::nines(q * 100.0), ms));
    }
    points.push((5.0, h.max() as f64 / 1000.0));
    points
}

/// The whole page.
pub fn page(run: &SavedRun, reference: usize) -> Result<String, ReportError> {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>apibench — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&run.summary.scenario)
    );
    out.push_str(&header(run));
    out.push_str(&banners(run));
    out.push_str(&summary_table(run, reference));
    out.push_str(&super::shards::section(run));
    out.push_str(&super::faults::section(run));
    out.push_str(&migration::migration_section(run)?);
    out.push_str(&ramp::ceiling_section(run));
    out.push_str(&ramp::ramp_section(run));
    out.push_str(&spectrum(run)?);
    out.push_str(&time_charts::over_time(run)?);
    out.push_str(&time_charts::resources(run)?);
    out.push_str(&drift::section(run));
    out.push_str(&tables::request_tables(run));
    out.push_str(&tables::generator_table(run));
    let _ = write!(
        out,
        "<footer>Rendered by <code>apibench report</code> from the files saved in <code>{}</code> \
         (summary.json, run.json, per variant latency.hlog and resources.csv); re-render any time \
         with <code>apibench report {}</code>.</footer>\n</main>\n</body>\n</html>\n",
        esc(&run.dir.display().to_string()),
        esc(&run.dir.display().to_string())
    );
    Ok(out)
}
