//! The report's "Drift over time (soak)" section: for each measurement whose measured window is
//! at least [`DRIFT_MIN_MEASURED_S`] long (a soak), its 10-minute blocks — goodput, failed
//! requests, p50 and p99 from each block's merged histogram, p99 against the first block's — and
//! the target's and apibench's RSS at the window's start and end with their slope, then a
//! sentence that says what the numbers look like: degradation or steady, a leak (or a cache
//! still warming) or flat. No section for shorter runs. The figures come from
//! [`crate::saved::Drift`]; this file only words and lays them out.

use super::html::{esc, swatch, variant_label};
use crate::compare::{Unit, format_figure};
use crate::output::{format_clock, format_us};
use crate::saved::{
    DRIFT_BLOCK_S, DRIFT_MIN_MEASURED_S, DRIFT_PARTIAL_BLOCK_MIN_S, Drift, DriftBlock, RSS_EDGE_S,
    RssTrend, SavedRun,
};
use std::fmt::Write as _;
use std::time::Duration;

/// The last block's p99 within this factor of the first block's (either way) reads as steady;
/// beyond it, as degradation (or, below, as a warm-up that was too short).
pub const P99_STEADY_RATIO: f64 = 1.2;

/// RSS whose fitted change over the window stays under this share of its start reads as flat…
pub const RSS_FLAT_SHARE: f64 = 0.02;
/// …or under this many MiB, for small processes whose 2 % is a few pages.
pub const RSS_FLAT_MIB: f64 = 1.0;

const MIB: f64 = 1024.0 * 1024.0;

/// The section, or nothing when no measurement ran long enough.
pub fn section(run: &SavedRun) -> String {
    let mut body = String::new();
    for (i, v) in run.variants.iter().enumerate() {
        let repeated = v.measurements.len() > 1;
        for m in &v.measurements {
            let Some(drift) = &m.drift else {
                continue;
            };
            let repetition = if repeated {
                format!(" — repetition {} of {}", m.repetition, v.measurements.len())
            } else {
                String::new()
            };
            let _ = writeln!(
                body,
                "<h3>{}{}{}</h3>",
                swatch(i),
                esc(&variant_label(&v.summary)),
                esc(&repetition)
            );
            body.push_str(&blocks_table(drift));
            body.push_str(&memory_table(drift));
            let _ = writeln!(
                body,
                "<p class=\"note\">{}</p>",
                esc(&interpretation(drift))
            );
        }
    }
    if body.is_empty() {
        return String::new();
    }
    format!(
        "<section id=\"drift\">\n<h2>Drift over time (soak)</h2>\n<p class=\"note\">Runs whose \
         measured window is at least {} minutes long: the window after the warm-up cut into \
         consecutive {}-minute blocks (a last shorter one of {} minutes or more is shown, marked \
         partial). A block's p50 and p99 come from the merged histogram of its 1 s intervals — \
         every request in it — never from an average of per-second percentiles; its goodput is \
         successful completions per second of the block. RSS at the start and end of the window \
         is the median of its first and last {} s of samples (one spike does not decide); the \
         slope is the least-squares line through every sample in the window.</p>\n{body}</section>\n",
        DRIFT_MIN_MEASURED_S / 60,
        DRIFT_BLOCK_S / 60,
        DRIFT_PARTIAL_BLOCK_MIN_S / 60,
        RSS_EDGE_S
    )
}

fn blocks_table(drift: &Drift) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table>\n<tr><th>block</th><th>since load start</th>\
         <th>goodput</th><th>failed</th><th>p50</th><th>p99</th><th>p99 vs first block</th></tr>\n",
    );
    for (index, block) in drift.blocks.iter().enumerate() {
        let clock = |s: f64| format_clock(Duration::try_from_secs_f64(s).unwrap_or_default());
        let partial = if block.partial {
            format!(
                "<small class=\"spread\">partial: {} min</small>",
                trim_minutes(block.duration_s)
            )
        } else {
            String::new()
        };
        let percentile = |us: u64| {
            if block.completed > 0 {
                esc(&format_us(us))
            } else {
                "–".into()
            }
        };
        let _ = writeln!(
            out,
            "<tr><td>{}{partial}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            index + 1,
            clock(block.start_s),
            clock(block.end_s()),
            format_figure(Unit::PerSec, block.completed_per_sec()),
            block.errors,
            percentile(block.p50_us),
            percentile(block.p99_us),
            p99_change_text(drift, index, block)
        );
    }
    out.push_str("</table></div>\n");
    out
}

/// "1.00× (reference)", "2.01× (+21.0 ms)", or "–" when a side has nothing completed.
fn p99_change_text(drift: &Drift, index: usize, block: &DriftBlock) -> String {
    match (drift.p99_ratio(block), drift.p99_change_us(block)) {
        (Some(_), Some(_)) if index == 0 => "1.00× (reference)".into(),
        (Some(ratio), Some(change_us)) => {
            format!("{ratio:.2}× ({})", signed_ms(change_us as f64 / 1000.0))
        }
        _ => "–".into(),
    }
}

fn signed_ms(ms: f64) -> String {
    if ms < 0.0 {
        format!("−{:.1} ms", -ms)
    } else {
        format!("+{ms:.1} ms")
    }
}

fn trim_minutes(seconds: f64) -> String {
    let minutes = seconds / 60.0;
    if (minutes - minutes.round()).abs() < 0.05 {
        format!("{minutes:.0}")
    } else {
        format!("{minutes:.1}")
    }
}

/// Which way a process's memory went over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Rising,
    Flat,
    Falling,
}

/// Rising or falling when the fitted line moves more than [`RSS_FLAT_SHARE`] of the start RSS
/// and more than [`RSS_FLAT_MIB`] over the window.
fn direction(trend: &RssTrend, window_s: f64) -> Direction {
    let change_mib = trend.slope_mib_per_hour * window_s / 3_600.0;
    let flat_mib = (trend.start_bytes as f64 / MIB * RSS_FLAT_SHARE).max(RSS_FLAT_MIB);
    if change_mib > flat_mib {
        Direction::Rising
    } else if change_mib < -flat_mib {
        Direction::Falling
    } else {
        Direction::Flat
    }
}

fn memory_table(drift: &Drift) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table>\n<tr><th>process</th><th>RSS at start</th>\
         <th>RSS at end</th><th>slope</th><th class=\"left\">reading</th></tr>\n",
    );
    // (process, its trend, why there is none, what rising and flat mean for it)
    let rows = [
        (
            "target (process tree)",
            &drift.target_rss,
            "not measured: no process was watched",
            "rising: a leak, or a cache still warming",
            "flat: what a steady service looks like",
        ),
        (
            "apibench (generator)",
            &drift.generator_rss,
            "not recorded: this resources.csv predates apibench's own RSS column",
            "rising: the generator itself grows — read later blocks with care",
            "flat: as it should be at any duration",
        ),
    ];
    for (name, trend, missing, rising, flat) in rows {
        let Some(trend) = trend else {
            let _ = writeln!(
                out,
                "<tr><td>{name}</td><td>–</td><td>–</td><td>–</td>\
                 <td class=\"reason\">{}</td></tr>",
                esc(missing)
            );
            continue;
        };
        let (class, reading) = match direction(trend, drift.measured_s) {
            Direction::Rising => ("warn", rising),
            Direction::Flat => ("ok", flat),
            Direction::Falling => ("muted", "falling: memory given back after a peak"),
        };
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{:+.1} MiB/h</td>\
             <td class=\"reason\"><span class=\"{class}\">{}</span></td></tr>",
            mib_text(trend.start_bytes),
            mib_text(trend.end_bytes),
            trend.slope_mib_per_hour,
            esc(reading)
        );
    }
    out.push_str("</table></div>\n");
    out
}

fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// What the numbers look like, in plain words: the p99 of the last block against the first's,
/// then each process's memory.
fn interpretation(drift: &Drift) -> String {
    let mut sentences = Vec::new();
    let first = drift.blocks.first();
    let last = drift.blocks.iter().rev().find(|b| b.completed > 0);
    if let (Some(first), Some(last)) = (first, last)
        && let (Some(ratio), Some(change_us)) = (drift.p99_ratio(last), drift.p99_change_us(last))
    {
        let from_to = format!(
            "p99 went from {} in the first block to {} in the last ({ratio:.2}×, {})",
            format_us(first.p99_us),
            format_us(last.p99_us),
            signed_ms(change_us as f64 / 1000.0)
        );
        sentences.push(if ratio >= P99_STEADY_RATIO {
            format!(
                "{from_to}: latency degrades as the run goes on — look for what grows with time \
                 (a table scanned, a heap fragmenting, a pool losing connections)."
            )
        } else if ratio <= 1.0 / P99_STEADY_RATIO {
            format!(
                "{from_to}: the first block was the slow one — the warm-up may have been too \
                 short for the service to settle."
            )
        } else {
            format!("{from_to}: within ×{P99_STEADY_RATIO} of the first block, no latency drift.")
        });
    }
    if let Some(trend) = &drift.target_rss {
        sentences.push(match direction(trend, drift.measured_s) {
            Direction::Rising => format!(
                "The target's memory rises {:.1} MiB/h: a leak, or a cache still warming — a \
                 cache flattens out once it is full, a leak does not, so a longer soak tells them \
                 apart.",
                trend.slope_mib_per_hour
            ),
            Direction::Flat => {
                "The target's memory is flat: what a steady service looks like.".to_string()
            }
            Direction::Falling => {
                "The target's memory falls over the window: it gave back memory taken before or \
                 at the start of it."
                    .to_string()
            }
        });
    }
    if let Some(trend) = &drift.generator_rss {
        sentences.push(match direction(trend, drift.measured_s) {
            Direction::Rising => format!(
                "apibench's own memory rises {:.1} MiB/h: the generator should stay flat at any \
                 duration (it streams its intervals to disk), so read the later blocks with care.",
                trend.slope_mib_per_hour
            ),
            _ => "apibench's own memory does not grow: the generator held steady.".to_string(),
        });
    }
    if drift.late_entries > 0 {
        sentences.push(format!(
            "{} log entries arrived after their block's percentiles were fixed: counted in its \
             goodput, not in its p50 and p99.",
            drift.late_entries
        ));
    }
    sentences.join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::run_of;
    use super::*;
    use crate::saved::RssTrend;

    fn block(start_s: f64, duration_s: f64, p99_us: u64) -> DriftBlock {
        DriftBlock {
            start_s,
            duration_s,
            partial: duration_s < DRIFT_BLOCK_S as f64,
            completed: (2_000.0 * duration_s) as u64,
            errors: 3,
            p50_us: 2_300,
            p99_us,
        }
    }

    /// A 35-minute soak whose p99 doubles in its last, partial block, with a target leaking
    /// 48 MiB/h and a flat generator.
    fn soak_drift() -> Drift {
        Drift {
            measured_s: 35.0 * 60.0,
            blocks: vec![
                block(30.0, 600.0, 20_900),
                block(630.0, 600.0, 21_100),
                block(1_230.0, 600.0, 20_800),
                block(1_830.0, 300.0, 41_800),
            ],
            late_entries: 0,
            target_rss: Some(RssTrend {
                start_bytes: 200 << 20,
                end_bytes: 228 << 20,
                slope_mib_per_hour: 48.0,
                samples: 8_400,
            }),
            generator_rss: Some(RssTrend {
                start_bytes: 30 << 20,
                end_bytes: 30 << 20,
                slope_mib_per_hour: 0.1,
                samples: 8_400,
            }),
        }
    }

    #[test]
    fn a_soak_shows_its_blocks_the_p99_drift_and_what_the_memory_slopes_mean() {
        let mut run = run_of(2_160, 3, Vec::new(), Vec::new());
        run.variants[0].measurements[0].drift = Some(soak_drift());
        let html = section(&run);
        assert!(html.contains("<h2>Drift over time (soak)</h2>"));
        assert!(html.contains("<td>0:30 – 10:30</td>"), "blocks by clock");
        assert!(
            html.contains("4<small class=\"spread\">partial: 5 min</small>"),
            "the last block is marked partial"
        );
        assert!(html.contains("1.00× (reference)"));
        assert!(
            html.contains("2.00× (+20.9 ms)"),
            "ratio and ms vs the first"
        );
        assert!(html.contains("2000.0 req/s"));
        assert!(html.contains("+48.0 MiB/h") && html.contains("rising: a leak, or a cache"));
        assert!(
            html.contains("flat: as it should be"),
            "the generator's row"
        );
        assert!(html.contains("latency degrades as the run goes on"));
        assert!(html.contains("a longer soak tells them apart"));
        assert!(html.contains("the generator held steady"));
    }

    #[test]
    fn steady_latency_and_flat_memory_read_as_steady() {
        let mut drift = soak_drift();
        drift.blocks[3].p99_us = 21_500;
        drift.target_rss = drift.generator_rss.clone();
        let mut run = run_of(2_160, 3, Vec::new(), Vec::new());
        run.variants[0].measurements[0].drift = Some(drift);
        let html = section(&run);
        assert!(html.contains("no latency drift"), "{html}");
        assert!(html.contains("The target&#39;s memory is flat"));
        assert!(html.contains("flat: what a steady service looks like"));
        assert!(!html.contains("rising"));
    }

    #[test]
    fn a_run_without_drift_has_no_section() {
        let run = run_of(600, 1, Vec::new(), Vec::new());
        assert_eq!(section(&run), "");
    }
}
