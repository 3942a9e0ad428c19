//! The report's "Faults and recovery" table (one row per fault of each measurement: what was
//! injected, the failed requests and their statuses during and after it, the time to recover and
//! the p99 while recovering) and the fault windows the time charts shade. Reads `faults` of the
//! saved measurements; judges nothing itself.

use super::html::{esc, swatch};
use crate::faults::{self, FaultRecord};
use crate::output::format_us;
use crate::saved::{self, SavedRun};
use std::fmt::Write as _;

/// The fault windows to shade on the time charts, seconds from the load's start (the x axis of
/// the latency charts): each fault from its planned time to the latest end any measurement
/// recorded (a pause: its planned end at least), labelled with its action.
pub(super) fn fault_bands(run: &SavedRun) -> Vec<(f64, f64, String)> {
    let mut bands: Vec<(f64, f64, String)> = Vec::new();
    for variant in &run.variants {
        for m in saved::measurements_of(&variant.summary) {
            let warmup_s = m.warmup_ms as f64 / 1000.0;
            for (i, fault) in m.faults.iter().enumerate() {
                let start = warmup_s + fault.at_ms as f64 / 1000.0;
                let planned_end = start + fault.duration_ms.unwrap_or(0) as f64 / 1000.0;
                let ended = fault
                    .ended_ms
                    .map_or(planned_end, |e| warmup_s + e as f64 / 1000.0);
                let end = planned_end.max(ended);
                match bands.get_mut(i) {
                    Some(band) => band.1 = band.1.max(end),
                    None => bands.push((start, end, fault.action.clone())),
                }
            }
        }
    }
    bands
}

/// The section, or nothing when no measurement had faults.
pub(super) fn section(run: &SavedRun) -> String {
    let any = run.variants.iter().any(|v| {
        saved::measurements_of(&v.summary)
            .iter()
            .any(|m| !m.faults.is_empty())
    });
    if !any {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"faults\">\n<h2>Faults and recovery</h2>\n<div class=\"scroll\"><table>\n\
         <tr><th>variant</th><th class=\"left\">fault</th><th class=\"left\">injection</th>\
         <th>errors during</th><th>errors after</th><th>time to recover</th>\
         <th>pre-fault p99</th><th>p99 while recovering</th></tr>\n",
    );
    for (i, variant) in run.variants.iter().enumerate() {
        let measurements = saved::measurements_of(&variant.summary);
        for (k, m) in measurements.iter().enumerate() {
            let name = if measurements.len() > 1 {
                format!("{} #{}", variant.summary.name, k + 1)
            } else {
                variant.summary.name.clone()
            };
            for fault in &m.faults {
                let _ = writeln!(
                    out,
                    "<tr><td class=\"variant\">{}<strong>{}</strong></td>{}</tr>",
                    swatch(i),
                    esc(&name),
                    cells(fault)
                );
            }
        }
    }
    out.push_str("</table></div>\n");
    let _ = writeln!(
        out,
        "<p class=\"note\">Each fault fires <code>at</code> after the end of the warm-up (shaded in \
         red on the time charts). Errors <em>during</em> completed in the 1 s intervals from the \
         fault's start to its end; <em>after</em>, in the intervals after it until the recovery \
         (\"no response\" = connection error or timeout). Recovered: the first 1 s interval, from \
         the one the fault ended in, with successes, no failure, and a p99 at most {}× the pre-fault \
         p99 (the median of the 1 s intervals' p99s before the first fault); time to recover runs from the fault's start to that interval \
         (1 s resolution, never less than the fault's own length).</p>",
        faults::recovery::RECOVERED_P99_FACTOR
    );
    out.push_str("</section>\n");
    out
}

fn cells(fault: &FaultRecord) -> String {
    let mut what = format!("{} at {}", fault.action, faults::seconds(fault.at_ms));
    if let Some(d) = fault.duration_ms {
        let _ = write!(what, " for {}", faults::seconds(d));
    }
    let injection = match (&fault.injection_error, &fault.detail) {
        (Some(error), _) => format!("<span class=\"bad\">{}</span>", esc(error)),
        (None, Some(detail)) => esc(detail),
        (None, None) => "–".into(),
    };
    let errors = |n: u64, statuses| {
        if n == 0 {
            "<td>0</td>".to_string()
        } else {
            format!(
                "<td>{n}<small class=\"spread\">{}</small></td>",
                esc(&faults::statuses_text(statuses))
            )
        }
    };
    let recovered = match (fault.time_to_recover_ms, &fault.not_recovered) {
        (Some(ms), _) => format!("<td class=\"ok\">{}</td>", faults::seconds(ms)),
        (None, reason) => format!(
            "<td class=\"bad\">not recovered<small class=\"spread\">{}</small></td>",
            esc(reason.as_deref().unwrap_or(""))
        ),
    };
    let p99 = |p: Option<u64>| p.map_or("–".to_string(), format_us);
    format!(
        "<td class=\"reason\">{}</td><td class=\"reason\">{injection}</td>{}{}{recovered}\
         <td>{}</td><td>{}</td>",
        esc(&what),
        errors(fault.errors_during, &fault.statuses_during),
        errors(fault.errors_after, &fault.statuses_after),
        esc(&p99(fault.pre_fault_p99_us)),
        esc(&p99(fault.recovery_p99_us)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::run_of;
    use super::*;
    use std::collections::BTreeMap;

    fn run_with(faults: Vec<FaultRecord>) -> SavedRun {
        let mut run = run_of(90, 1, Vec::new(), Vec::new());
        for v in &mut run.variants {
            v.summary.figures.faults = faults.clone();
            v.summary.figures.warmup_ms = 3_000;
        }
        run
    }

    #[test]
    fn the_table_shows_each_fault_its_statuses_and_whether_it_recovered() {
        let run = run_with(vec![
            FaultRecord {
                action: "pg_restart".into(),
                at_ms: 10_000,
                started_ms: Some(10_000),
                ended_ms: Some(10_800),
                detail: Some("fast restart".into()),
                errors_during: 120,
                statuses_during: BTreeMap::from([("503".into(), 100), ("0".into(), 20)]),
                recovered: true,
                time_to_recover_ms: Some(2_000),
                pre_fault_p99_us: Some(2_000),
                recovery_p99_us: Some(450_000),
                ..FaultRecord::default()
            },
            FaultRecord {
                action: "target_pause".into(),
                at_ms: 20_000,
                duration_ms: Some(3_000),
                started_ms: Some(20_000),
                ended_ms: Some(23_000),
                not_recovered: Some("not recovered before the end of the load".into()),
                ..FaultRecord::default()
            },
        ]);
        let html = section(&run);
        for needle in [
            "Faults and recovery",
            "pg_restart at 10 s",
            "503 ×100, no response ×20",
            "2 s",
            "450.0 ms",
            "target_pause at 20 s for 3 s",
            "not recovered before the end of the load",
        ] {
            assert!(html.contains(needle), "missing {needle:?} in {html}");
        }
        let bands = fault_bands(&run);
        assert_eq!(
            bands,
            vec![
                (13.0, 13.8, "pg_restart".to_string()),
                (23.0, 26.0, "target_pause".to_string())
            ]
        );
    }

    #[test]
    fn a_run_without_faults_has_no_section_and_no_bands() {
        let run = run_with(Vec::new());
        assert_eq!(section(&run), "");
        assert!(fault_bands(&run).is_empty());
    }
}
