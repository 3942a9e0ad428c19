//! The report's time charts: latency (p50, p99) and throughput per 1 s interval — or, for a run
//! with more intervals than a chart can show, per bucket whose percentiles come from merged
//! histograms ([`crate::saved::CHART_POINTS_MAX`]) — and the memory and CPU of the target,
//! Postgres and apibench itself, sampled every 250 ms. One line per measurement (repetition);
//! the x axis in seconds, or minutes past half an hour. Every chart shades the warm-up and each
//! `[[faults]]` window ([`super::faults::fault_bands`]). Draws what the saved files hold; never
//! judges it.

use super::ReportError;
use super::charts::{self, Line, XAxis};
use super::html::{chart, spec, trim_number, variant_label};
use crate::saved::{self, SavedRun};

/// One line per measurement (repetition) of each variant, labelled once.
fn per_measurement_lines(
    run: &SavedRun,
    points: impl Fn(&saved::SavedMeasurement) -> Vec<(f64, f64)>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for (i, v) in run.variants.iter().enumerate() {
        for (k, m) in v.measurements.iter().enumerate() {
            let label = (k == 0).then(|| {
                if v.measurements.len() > 1 {
                    format!(
                        "{} ({} repetitions)",
                        variant_label(&v.summary),
                        v.measurements.len()
                    )
                } else {
                    variant_label(&v.summary)
                }
            });
            lines.push(Line {
                label,
                colour_index: i,
                points: points(m),
            });
        }
    }
    lines
}

fn warmup_shade(run: &SavedRun) -> Option<(f64, f64, String)> {
    let warmup_ms = run.variants.first()?.summary.figures.warmup_ms;
    (warmup_ms > 0).then(|| {
        (
            0.0,
            warmup_ms as f64 / 1000.0,
            "warm-up (excluded)".to_string(),
        )
    })
}

/// Runs longer than this are drawn in minutes: 7,200 s reads worse than 120 min.
const MINUTES_AXIS_FROM_S: f64 = 30.0 * 60.0;

/// The time charts' x axis: seconds, or minutes for a run of more than half an hour; with the
/// unit for the axis label. Points are always given in seconds ([`XAxis::Minutes`] converts).
fn time_axis(run: &SavedRun) -> (XAxis, &'static str) {
    let longest_s = run
        .variants
        .iter()
        .flat_map(|v| saved::measurements_of(&v.summary))
        .map(|m| (m.warmup_ms + m.measured_duration_ms + m.drain_ms) as f64 / 1000.0)
        .fold(0.0, f64::max);
    if longest_s > MINUTES_AXIS_FROM_S {
        (XAxis::Minutes, "min")
    } else {
        (XAxis::Seconds, "s")
    }
}

/// How much of the run one point of the latency charts covers, for titles and notes: `None`
/// when the measurements were bucketed differently (runs of different lengths).
fn chart_bucket_s(run: &SavedRun) -> Option<u64> {
    let mut sizes = run
        .variants
        .iter()
        .flat_map(|v| &v.measurements)
        .map(|m| m.chart_bucket_s);
    let first = sizes.next().unwrap_or(1);
    sizes.all(|s| s == first).then_some(first)
}

pub(super) fn over_time(run: &SavedRun) -> Result<String, ReportError> {
    let shade = warmup_shade(run);
    let bands = super::faults::fault_bands(run);
    let (x_axis, unit) = time_axis(run);
    let x_label = format!("time since load start ({unit})");
    let bucket = chart_bucket_s(run);
    let per = match bucket {
        Some(1) => "per 1 s interval".to_string(),
        Some(n) => format!("per {n} s"),
        None => "over time (downsampled)".to_string(),
    };
    let mut p50 = spec(
        &format!("p50 latency {per}"),
        &x_label,
        "p50 latency (ms)",
        x_axis,
        false,
    );
    p50.shade = shade.clone();
    p50.bands = bands.clone();
    let mut p99 = spec(
        &format!("p99 latency {per}"),
        &x_label,
        "p99 latency (ms)",
        x_axis,
        false,
    );
    p99.shade = shade.clone();
    p99.bands = bands.clone();
    let latency_lines = |pick: fn(&saved::IntervalPoint) -> u64| {
        per_measurement_lines(run, move |m| {
            m.chart_intervals
                .iter()
                .filter(|i| i.completed > 0 && i.is_full())
                .map(|i| (i.start_s, pick(i) as f64 / 1000.0))
                .collect()
        })
    };
    let p50_lines = latency_lines(|i| i.p50_us);
    let p99_lines = latency_lines(|i| i.p99_us);
    let mut tp = spec(
        &format!("Throughput {per} (goodput: successful requests)"),
        &x_label,
        "successful requests per second",
        x_axis,
        true,
    );
    tp.height_px = 360;
    tp.shade = shade;
    tp.bands = bands;
    tp.reference_y =
        common_target_rate(run).map(|r| (r, format!("target rate {} req/s", trim_number(r))));
    let tp_lines = per_measurement_lines(run, |m| {
        m.chart_intervals
            .iter()
            .filter(|i| i.is_full())
            .map(|i| (i.start_s, i.completed_per_sec()))
            .collect()
    });
    let points = match bucket {
        Some(1) => {
            "Each point is one 1 s interval of <code>latency.hlog</code>, by completion time"
                .to_string()
        }
        bucket => format!(
            "Each point: {} — the 1 s intervals of <code>latency.hlog</code> in that span (by \
             completion time), drawn as one because the run has more intervals than a chart can \
             show: its percentiles come from the merged histograms of those intervals (never an \
             average of their percentiles), its throughput is their completions over its \
             seconds, and every summary figure still comes from the full histograms",
            bucket.map_or_else(
                || "a few seconds, more for longer runs".to_string(),
                |n| format!("{n} s")
            )
        ),
    };
    let faults_note = if tp.bands.is_empty() {
        ""
    } else {
        " the red bands are the faults (see Faults and recovery);"
    };
    Ok(format!(
        "<section id=\"latency-over-time\">\n<h2>Latency over time</h2>\n<div class=\"grid\">{}{}</div>\n\
         <p class=\"note\">{points}; the grey band is the warm-up, which the summary figures \
         exclude;{faults_note} the last, partial interval (the drain after the schedule ended) is left out of \
         the charts: its latencies count in the summary's percentiles, not in its goodput.</p>\n\
         </section>\n\
         <section id=\"throughput\">\n<h2>Throughput over time</h2>\n{}\n</section>\n",
        chart(&p50, &p50_lines, "no interval was recorded")?,
        chart(&p99, &p99_lines, "no interval was recorded")?,
        chart(&tp, &tp_lines, "no interval was recorded")?
    ))
}

/// The target rate when every variant ran at the same single rate.
fn common_target_rate(run: &SavedRun) -> Option<f64> {
    if let Some(info) = &run.info
        && info.load.stages.len() != 1
    {
        return None;
    }
    let rates: Vec<f64> = run
        .variants
        .iter()
        .map(|v| v.summary.figures.target_rate_per_sec)
        .collect::<Option<Vec<f64>>>()?;
    let first = *rates.first()?;
    rates
        .iter()
        .all(|r| (r - first).abs() < 1e-6)
        .then_some(first)
}

pub(super) fn resources(run: &SavedRun) -> Result<String, ReportError> {
    const MIB: f64 = 1024.0 * 1024.0;
    let (x_axis, unit) = time_axis(run);
    let x = format!("time since sampling start ({unit})");
    let no_target = "not measured: no process was watched (url targets have none)";
    let no_postgres = "not measured: no Postgres process was watched (url targets, or a container)";
    let no_generator = "not recorded: this resources.csv predates apibench's own RSS column";
    let bands = super::faults::fault_bands(run);
    // A long run has tens of thousands of samples: drawn in runs of consecutive samples, CPU as
    // their mean and RSS as their peak (a leak or a spike is never smoothed away).
    let draw = |title: &str,
                y_label: &str,
                pick: fn(&saved::ResourceRow) -> Option<f64>,
                reduce: charts::Reduce,
                empty_reason: &str| {
        let lines = per_measurement_lines(run, move |m| {
            let points: Vec<(f64, f64)> = m
                .resources
                .iter()
                .filter_map(|r| pick(r).map(|v| (r.elapsed_ms as f64 / 1000.0, v)))
                .collect();
            charts::downsample(&points, saved::CHART_POINTS_MAX, reduce)
        });
        let mut chart_spec = spec(title, &x, y_label, x_axis, false);
        chart_spec.bands = bands.clone();
        chart(&chart_spec, &lines, empty_reason)
    };
    let (rss, cpu) = ("RSS (MiB)", "CPU (% of one core)");
    let (peak, mean) = (charts::Reduce::Max, charts::Reduce::Mean);
    // Memory first, the target's and apibench's side by side: a leak in either shows.
    let charts_html = [
        draw(
            "Target RSS (process tree)",
            rss,
            |r| r.target_rss_bytes.map(|b| b as f64 / MIB),
            peak,
            no_target,
        )?,
        draw(
            "apibench (generator) RSS",
            rss,
            |r| r.generator_rss_bytes.map(|b| b as f64 / MIB),
            peak,
            no_generator,
        )?,
        draw(
            "PostgreSQL RSS (postmaster + backends)",
            rss,
            |r| r.postgres_rss_bytes.map(|b| b as f64 / MIB),
            peak,
            no_postgres,
        )?,
        draw("Target CPU", cpu, |r| r.target_cpu_percent, mean, no_target)?,
        draw(
            "PostgreSQL CPU",
            cpu,
            |r| r.postgres_cpu_percent,
            mean,
            no_postgres,
        )?,
    ];
    let samples_per_point = run
        .variants
        .iter()
        .flat_map(|v| &v.measurements)
        .map(|m| charts::points_per_bucket(m.resources.len(), saved::CHART_POINTS_MAX))
        .max()
        .unwrap_or(1);
    let downsampled = if samples_per_point > 1 {
        format!(
            " Each point: up to {samples_per_point} consecutive samples (the run has more than a \
             chart can show) — CPU as their mean, RSS as their peak, so no spike is smoothed away."
        )
    } else {
        String::new()
    };
    let faults_note = if bands.is_empty() {
        ""
    } else {
        " The red bands are the faults, placed by the load's clock (sampling starts a moment \
         before the load); after a pg_restart or target_kill the process watched is gone, so its \
         line may stop."
    };
    Ok(format!(
        "<section id=\"resources\">\n<h2>Memory and CPU over time</h2>\n<div class=\"grid\">{}</div>\n\
         <p class=\"note\">Sampled from <code>/proc</code> every 250 ms (<code>resources.csv</code>). \
         RSS sums the process tree, so pages shared between Postgres backends count once per backend: \
         read it as an upper bound. apibench's own RSS is beside the target's: memory that keeps \
         growing over a long run is a leak, in the generator or in the target. 200 % CPU is two \
         cores busy.{downsampled}{faults_note}</p>\n</section>\n",
        charts_html.join("")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::run_of;
    use super::*;
    use crate::saved::{IntervalPoint, ResourceRow};

    fn point(start_s: f64, duration_s: f64) -> IntervalPoint {
        IntervalPoint {
            start_s,
            p50_us: 2_000,
            p99_us: 9_000,
            completed: (100.0 * duration_s) as u64,
            duration_s,
            after_schedule: false,
        }
    }

    #[test]
    fn a_two_hour_run_is_drawn_in_minutes_from_buckets_with_the_generator_rss_beside_the_target_s()
    {
        let buckets: Vec<IntervalPoint> = (0..720).map(|b| point(b as f64 * 10.0, 10.0)).collect();
        let rows: Vec<ResourceRow> = (1..=28_800u64)
            .map(|i| ResourceRow {
                elapsed_ms: i * 250,
                target_rss_bytes: Some(100 << 20),
                target_cpu_percent: Some(50.0),
                generator_rss_bytes: Some((20 << 20) + i * 1_000),
                ..ResourceRow::default()
            })
            .collect();
        let run = run_of(7_200, 10, buckets, rows);
        let over = over_time(&run).expect("renders");
        assert!(
            over.contains("p99 latency per 10 s"),
            "titled by the bucket"
        );
        assert!(over.contains("time since load start (min)"));
        assert!(
            over.contains("Each point: 10 s")
                && over.contains("merged histograms of those intervals"),
            "the note says what a point is"
        );
        let resources = resources(&run).expect("renders");
        assert!(resources.contains("apibench (generator) RSS"));
        assert!(
            !resources.contains("predates apibench"),
            "the generator's RSS is drawn"
        );
        assert!(resources.contains("time since sampling start (min)"));
        assert!(
            resources.contains("up to 40 consecutive samples") && resources.contains("their peak"),
            "the note says how samples were merged"
        );
        // apibench's RSS sits next to the target's.
        let target = resources.find("Target RSS").expect("target RSS");
        let generator = resources
            .find("apibench (generator) RSS")
            .expect("generator");
        let target_cpu = resources.find("Target CPU").expect("target CPU");
        assert!(target < generator && generator < target_cpu);
    }

    #[test]
    fn a_short_run_keeps_seconds_intervals_and_says_when_the_generator_rss_is_unknown() {
        let intervals: Vec<IntervalPoint> = (0..120).map(|s| point(s as f64, 1.0)).collect();
        let rows = vec![ResourceRow {
            elapsed_ms: 250,
            target_rss_bytes: Some(1 << 20),
            ..ResourceRow::default()
        }];
        let run = run_of(120, 1, intervals, rows);
        let over = over_time(&run).expect("renders");
        assert!(over.contains("p99 latency per 1 s interval"));
        assert!(over.contains("time since load start (s)"));
        assert!(over.contains("Each point is one 1 s interval"));
        let resources = resources(&run).expect("renders");
        assert!(resources.contains("predates apibench&#39;s own RSS column"));
        assert!(!resources.contains("consecutive samples"));
    }
}
