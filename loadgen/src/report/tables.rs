//! The per-request tables (each request name's latency, TTFB and failures per variant) and the
//! generator self-check table (send lag, runtime probe, CPU share, users) of the report page.

use super::html::{
    esc, figure_cell, p50_p99_max, row_class, spread, swatch, variant_label, verdict_cell,
};
use crate::compare::{Unit, format_figure};
use crate::output::{format_us, verdict_reason, verdict_state};
use crate::results::Measurement;
use crate::saved::SavedRun;
use std::fmt::Write as _;

pub(super) fn request_tables(run: &SavedRun) -> String {
    let mut names: Vec<&String> = run
        .variants
        .iter()
        .flat_map(|v| v.summary.figures.requests_by_name.keys())
        .collect();
    // In the scenario's order (a flow's steps stay in step order), names it does not list last.
    let position = |name: &String| {
        run.info
            .as_ref()
            .and_then(|i| i.requests.iter().position(|r| &r.name == name))
            .unwrap_or(usize::MAX)
    };
    names.sort_by(|a, b| position(a).cmp(&position(b)).then_with(|| a.cmp(b)));
    names.dedup();
    let mut out = String::from("<section id=\"requests\">\n<h2>Per request</h2>\n");
    if names.is_empty() {
        out.push_str("<p class=\"empty\">no request names were recorded</p>\n");
    }
    for name in names {
        let what = run
            .info
            .as_ref()
            .and_then(|i| i.requests.iter().find(|r| &r.name == name))
            .map(|r| {
                format!(
                    " — <code>{} {}</code> (weight {})",
                    esc(&r.method),
                    esc(&r.path),
                    r.weight
                )
            })
            .unwrap_or_default();
        let _ = writeln!(out, "<h3>{}{what}</h3>", esc(name));
        out.push_str(
            "<div class=\"scroll\"><table><tr><th>variant</th><th>requests</th><th>goodput</th>\
             <th>errors</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th>\
             <th>TTFB p50</th><th>TTFB p99</th><th>failed p50 / p99</th></tr>\n",
        );
        for (i, v) in run.variants.iter().enumerate() {
            let s = &v.summary;
            let Some(r) = s.figures.requests_by_name.get(name) else {
                continue;
            };
            let name = name.as_str();
            let lat = |pick: fn(&crate::results::RequestSummary) -> u64| {
                spread(s, move |m| {
                    m.requests_by_name
                        .get(name)
                        .filter(|r| r.latency_us.count > 0)
                        .map(|r| pick(r) as f64)
                })
            };
            let ttfb = |pick: fn(&crate::results::Percentiles) -> u64| {
                spread(s, move |m| {
                    m.requests_by_name
                        .get(name)
                        .filter(|r| r.ttfb_us.count > 0)
                        .map(|r| pick(&r.ttfb_us) as f64)
                })
            };
            let _ = write!(
                out,
                "<tr><td>{}{}</td><td>{}</td>",
                swatch(i),
                esc(&variant_label(s)),
                r.requests
            );
            out.push_str(&figure_cell(
                Unit::PerSec,
                spread(s, |m| {
                    let r = m.requests_by_name.get(name)?;
                    (m.measured_duration_ms > 0).then(|| {
                        r.requests.saturating_sub(r.errors) as f64 * 1000.0
                            / m.measured_duration_ms as f64
                    })
                }),
            ));
            let _ = write!(
                out,
                "<td>{}<small class=\"spread\">{}</small></td>",
                r.errors,
                if r.requests > 0 {
                    format_figure(Unit::Fraction, r.errors as f64 / r.requests as f64)
                } else {
                    "–".into()
                }
            );
            out.push_str(&figure_cell(Unit::Micros, lat(|r| r.latency_us.p50)));
            out.push_str(&figure_cell(Unit::Micros, lat(|r| r.latency_us.p90)));
            out.push_str(&figure_cell(Unit::Micros, lat(|r| r.latency_us.p99)));
            out.push_str(&figure_cell(Unit::Micros, lat(|r| r.latency_us.p999)));
            out.push_str(&figure_cell(Unit::Micros, lat(|r| r.latency_us.max)));
            out.push_str(&figure_cell(Unit::Micros, ttfb(|p| p.p50)));
            out.push_str(&figure_cell(Unit::Micros, ttfb(|p| p.p99)));
            let _ = writeln!(
                out,
                "<td>{}</td></tr>",
                if r.error_latency_us.count > 0 {
                    esc(&format!(
                        "{} / {}",
                        format_us(r.error_latency_us.p50),
                        format_us(r.error_latency_us.p99)
                    ))
                } else {
                    "–".into()
                }
            );
        }
        out.push_str("</table></div>\n");
    }
    out.push_str(
        "<p class=\"note\">Latency and TTFB are of successful requests; failed requests (wrong \
         status, connection error, timeout) are timed apart, so an instant error cannot pull the \
         successes' percentiles down.</p>\n</section>\n",
    );
    out
}

/// "45 % of 2 CPUs" — the generator's mean CPU as a share of the CPUs it may run on.
fn cpu_share_text(m: &Measurement) -> Option<String> {
    let share = m.generator_cpu_share?;
    Some(match m.generator_cpus_allowed {
        Some(n) => format!(
            "{:.0} % of the {n} CPU{} it may use",
            share * 100.0,
            if n == 1 { "" } else { "s" }
        ),
        None => format!("{:.0} % of the CPUs it may use", share * 100.0),
    })
}

pub(super) fn generator_table(run: &SavedRun) -> String {
    let mut out = String::from(
        "<section id=\"generator\">\n<h2>Generator self-check</h2>\n<div class=\"scroll\"><table>\
         <tr><th>variant</th><th>target rate</th><th>achieved send rate</th>\
         <th>send lag p50 / p99 / max</th><th>runtime probe p50 / p99 / max</th>\
         <th>late sends (&gt;1 ms)</th><th>backlogged sends</th><th>users busy (peak of max)</th>\
         <th>generator CPU</th><th>generator RSS</th><th>timeouts</th>\
         <th class=\"left\">verdict</th></tr>\n",
    );
    for (i, v) in run.variants.iter().enumerate() {
        let m = &v.summary.figures;
        let state = verdict_state(m);
        let users = if m.max_users > 0 {
            format!(
                "{} of {}<small class=\"spread\">{} started{}</small>",
                m.peak_users_busy,
                m.max_users,
                m.users_started,
                if m.users_exhausted {
                    " · <span class=\"bad\">exhausted</span>"
                } else {
                    ""
                }
            )
        } else {
            "–".into()
        };
        let _ = writeln!(
            out,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td>\
             <td>{}</td><td>{users}</td><td>{}<small class=\"spread\">{}</small></td><td>{}</td>\
             <td>{}</td>{}</tr>",
            row_class(state),
            swatch(i),
            esc(&v.summary.name),
            m.target_rate_per_sec
                .map_or("closed model".into(), |r| format_figure(Unit::PerSec, r)),
            format_figure(Unit::PerSec, m.achieved_send_rate_per_sec),
            esc(&p50_p99_max(&m.send_lag_us).unwrap_or_else(|| "not recorded".into())),
            esc(&p50_p99_max(&m.probe_lag_us).unwrap_or_else(|| "not recorded".into())),
            m.generator_late_sends,
            format_figure(Unit::Fraction, m.generator_late_share),
            m.backlogged_sends,
            m.generator_cpu_mean_percent
                .map_or("–".into(), |c| format!("{c:.1} %")),
            esc(&cpu_share_text(m).unwrap_or_default()),
            m.generator_rss_peak_bytes
                .map_or("–".into(), |b| format_figure(Unit::Bytes, b as f64)),
            m.timeouts,
            verdict_cell(state, verdict_reason(m))
        );
    }
    out.push_str(
        "</table></div>\n<p class=\"note\">The generator's health is judged on evidence the server \
         cannot influence, on every run: its send lag (actual send − the moment the send could have \
         gone), a runtime probe (a task on the users' runtime sleeping 1 ms at a time: how late it \
         woke) and its CPU against the CPUs it may run on. When the generator or its users were the \
         limit the measurement is <strong>invalid</strong>, never the server's saturation; \
         backlogged sends with a healthy generator and users to spare are the server's doing \
         (<strong>saturated</strong>). Users grow while every one is busy, up to the maximum.</p>\n\
         </section>\n",
    );
    out
}
