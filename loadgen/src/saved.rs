//! Reading a saved run back: `summary.json`, `run.json`, and per measurement `latency.hlog`
//! and `resources.csv`. Shared by `apibench report`, `compare` and `gate`, which work from saved
//! files only — never from a live run — so any run can be re-rendered, compared and gated later.
//! `compare` and `gate` read the logs only for their noise estimate
//! ([`load_measured_intervals`]: the full 1 s intervals after the warm-up, without the drain)
//! and the per-repetition values of a figure ([`repetition_values`]).
//!
//! Every error names the file it is about; the verbs turn them into exit code 2 (bad input).
//! This module only reads; it never writes into a run directory.

use crate::recorder;
use crate::results::{Measurement, RunInfo, Summary, VariantSummary};
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};

/// Exit code of report / compare / gate: bad input (missing or corrupt file, bad flags).
pub const EXIT_BAD_INPUT: u8 = 2;

/// What a verb prints and how it exits. The library never prints; `main.rs` writes these out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

impl CommandOutcome {
    /// A bad-input failure: the message on stderr, exit 2.
    pub fn bad_input(message: impl std::fmt::Display) -> CommandOutcome {
        CommandOutcome {
            stdout: String::new(),
            stderr: format!("apibench: {message}\n"),
            exit_code: EXIT_BAD_INPUT,
        }
    }
}

/// Why a saved run cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedRunError {
    #[error("{}: not a directory (expected a run directory written by `apibench run`)", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: missing (is this a directory written by `apibench run`?)", .0.display())]
    Missing(PathBuf),
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, SavedRunError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SavedRunError::Missing(path.to_path_buf())
        } else {
            SavedRunError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SavedRunError> {
    let bytes = read_bytes(path)?;
    serde_json::from_slice(&bytes).map_err(|e| SavedRunError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads `DIR/summary.json`.
pub fn load_summary(dir: &Path) -> Result<Summary, SavedRunError> {
    if !dir.is_dir() {
        return Err(SavedRunError::NotADirectory(dir.to_path_buf()));
    }
    let path = dir.join("summary.json");
    let summary: Summary = read_json(&path)?;
    if summary.schema_version > crate::results::SCHEMA_VERSION {
        return Err(SavedRunError::Corrupt {
            path,
            reason: format!(
                "schema_version {} is newer than this apibench understands ({})",
                summary.schema_version,
                crate::results::SCHEMA_VERSION
            ),
        });
    }
    Ok(summary)
}

/// Reads `DIR/run.json` (the environment and the load as run); `None` when the file is absent
/// (the report then says "unknown"), an error when it is present but unreadable.
pub fn load_run_info(dir: &Path) -> Result<Option<RunInfo>, SavedRunError> {
    match read_json(&dir.join("run.json")) {
        Ok(info) => Ok(Some(info)),
        Err(SavedRunError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One 1 s interval of a latency log (untagged entries: latency, not TTFB).
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPoint {
    /// Interval start, seconds from the load start.
    pub start_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Completions in the interval.
    pub completed: u64,
    /// The interval's length (1 s but for a run's last, partial one).
    pub duration_s: f64,
    /// Mostly after the end of the schedule: only the drain of the last in-flight requests.
    pub after_schedule: bool,
}

impl IntervalPoint {
    /// An untagged interval of `m`'s latency log.
    pub fn of(interval: &recorder::LoggedInterval, m: &Measurement) -> IntervalPoint {
        let h = &interval.histogram;
        let start_s = interval.start.as_secs_f64();
        let duration_s = interval.duration.as_secs_f64();
        let schedule_end_s = (m.warmup_ms + m.measured_duration_ms) as f64 / 1000.0;
        let quantile = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        IntervalPoint {
            start_s,
            p50_us: quantile(0.50),
            p99_us: quantile(0.99),
            completed: h.len(),
            duration_s,
            after_schedule: start_s + duration_s / 2.0 > schedule_end_s,
        }
    }

    /// A full interval: the trailing partial one (the drain of the last in-flight requests
    /// after the schedule ended) would plot as a throughput cliff and a latency spike of a few
    /// stragglers, so charts leave it out. The summary figures still count its requests.
    pub fn is_full(&self) -> bool {
        self.duration_s >= 0.9 && !self.after_schedule
    }

    /// A full interval after the warm-up: what the noise estimate of `compare` and `gate`
    /// resamples.
    pub fn is_measured(&self, warmup_ms: u64) -> bool {
        self.start_s >= warmup_ms as f64 / 1000.0 && self.is_full()
    }

    /// Completions per second over the interval.
    pub fn completed_per_sec(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.completed as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

/// One row of `resources.csv`; `None` where the process was not watched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRow {
    pub elapsed_ms: u64,
    pub target_rss_bytes: Option<u64>,
    pub target_cpu_percent: Option<f64>,
    pub postgres_rss_bytes: Option<u64>,
    pub postgres_cpu_percent: Option<f64>,
}

/// One measurement (a variant's load phase, one repetition) read back from its files.
#[derive(Debug, Clone)]
pub struct SavedMeasurement {
    /// 1-based repetition number.
    pub repetition: usize,
    pub intervals: Vec<IntervalPoint>,
    /// Every measured (post warm-up) interval merged: the percentile spectrum's source.
    pub merged: Histogram<u64>,
    pub resources: Vec<ResourceRow>,
}

/// A variant with its measurements' files read.
#[derive(Debug, Clone)]
pub struct SavedVariant {
    pub summary: VariantSummary,
    pub measurements: Vec<SavedMeasurement>,
    /// All repetitions' measured intervals merged.
    pub merged: Histogram<u64>,
}

/// A run directory read in full (what the HTML report needs).
#[derive(Debug, Clone)]
pub struct SavedRun {
    pub dir: PathBuf,
    pub summary: Summary,
    pub info: Option<RunInfo>,
    pub variants: Vec<SavedVariant>,
}

impl SavedRun {
    /// Reads `summary.json`, `run.json` and every measurement's `latency.hlog` and
    /// `resources.csv`. Fails on the first missing or corrupt file, naming it.
    pub fn load(dir: &Path) -> Result<SavedRun, SavedRunError> {
        let summary = load_summary(dir)?;
        let info = load_run_info(dir)?;
        let mut variants = Vec::with_capacity(summary.variants.len());
        for variant in &summary.variants {
            let measurements = measurements_of(variant);
            let mut saved = Vec::with_capacity(measurements.len());
            let mut merged = recorder::new_histogram();
            for (i, m) in measurements.iter().enumerate() {
                let measurement = load_measurement(dir, i + 1, m)?;
                // Same bounds on both sides: adding cannot fail.
                let _ = merged.add(&measurement.merged);
                saved.push(measurement);
            }
            variants.push(SavedVariant {
                summary: variant.clone(),
                measurements: saved,
                merged,
            });
        }
        Ok(SavedRun {
            dir: dir.to_path_buf(),
            summary,
            info,
            variants,
        })
    }
}

/// A variant's measurements, each with its own files: with `--repeat N` the repetitions,
/// without, the variant's own figures.
pub fn measurements_of(variant: &VariantSummary) -> Vec<&Measurement> {
    if variant.repetitions.is_empty() {
        vec![&variant.figures]
    } else {
        variant.repetitions.iter().collect()
    }
}

fn load_measurement(
    dir: &Path,
    repetition: usize,
    m: &Measurement,
) -> Result<SavedMeasurement, SavedRunError> {
    let hlog_path = dir.join(&m.files.latency_hlog);
    let (intervals, merged) = read_latency_log(&hlog_path, m)?;
    let csv_path = dir.join(&m.files.resources_csv);
    let text = String::from_utf8(read_bytes(&csv_path)?).map_err(|_| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let resources = parse_resources_csv(&text).map_err(|reason| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason,
    })?;
    Ok(SavedMeasurement {
        repetition,
        intervals,
        merged,
        resources,
    })
}

/// Reads a `latency.hlog`: the per-interval points (warm-up included, so the charts show it)
/// and the post-warm-up intervals merged. A log whose intervals after the warm-up hold fewer
/// values than `summary.json` counted measured successes was cut short and is reported as
/// corrupt (the warm-up's own values would hide a cut at the end otherwise).
fn read_latency_log(
    path: &Path,
    m: &Measurement,
) -> Result<(Vec<IntervalPoint>, Histogram<u64>), SavedRunError> {
    let bytes = read_bytes(path)?;
    let corrupt = |reason: String| SavedRunError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.last().is_some_and(|b| *b != b'\n') {
        return Err(corrupt(
            "truncated: the last line is incomplete (no final newline)".into(),
        ));
    }
    let logged = recorder::read_hlog(&bytes).map_err(corrupt)?;
    let mut intervals = Vec::new();
    let mut merged = recorder::new_histogram();
    let warmup_s = m.warmup_ms as f64 / 1000.0;
    // Successes that completed after the warm-up began to end: every measured success is among
    // them (untagged entries are successes; in older logs, every completion).
    let mut after_warmup = 0u64;
    for interval in logged.iter().filter(|i| i.tag.is_none()) {
        let h = &interval.histogram;
        let point = IntervalPoint::of(interval, m);
        if point.start_s + point.duration_s > warmup_s {
            after_warmup += h.len();
        }
        if point.start_s >= warmup_s {
            merged
                .add(h)
                .map_err(|e| corrupt(format!("interval at {} s: {e:?}", point.start_s)))?;
        }
        intervals.push(point);
    }
    let successes = m.requests.saturating_sub(m.errors);
    if after_warmup < successes {
        return Err(corrupt(format!(
            "truncated: it holds {after_warmup} latencies after the warm-up but summary.json \
             counts {successes} measured successful requests"
        )));
    }
    Ok((intervals, merged))
}

/// A full 1 s interval inside a measurement's measured window: its success latencies.
#[derive(Debug, Clone)]
pub struct MeasuredInterval {
    pub duration_s: f64,
    pub histogram: Histogram<u64>,
}

/// Per measurement of a variant (see [`measurements_of`]), the full measured intervals of its
/// `latency.hlog` ([`IntervalPoint::is_measured`]), in time order: what [`crate::noise`]'s block
/// bootstrap resamples. Untagged entries only (tagged ones — `ttfb`, errors, send lag — are
/// other figures). `Ok(None)` when a measurement has no log (runs written before there was one):
/// the comparison then has no noise estimate. A log that is present but unreadable is an error.
pub fn load_measured_intervals(
    dir: &Path,
    variant: &VariantSummary,
) -> Result<Option<Vec<Vec<MeasuredInterval>>>, SavedRunError> {
    let mut segments = Vec::new();
    for m in measurements_of(variant) {
        if m.files.latency_hlog.is_empty() {
            return Ok(None);
        }
        let path = dir.join(&m.files.latency_hlog);
        let bytes = match read_bytes(&path) {
            Ok(bytes) => bytes,
            Err(SavedRunError::Missing(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let logged = recorder::read_hlog(&bytes).map_err(|reason| SavedRunError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        segments.push(
            logged
                .into_iter()
                .filter(|i| i.tag.is_none() && IntervalPoint::of(i, m).is_measured(m.warmup_ms))
                .map(|i| MeasuredInterval {
                    duration_s: i.duration.as_secs_f64(),
                    histogram: i.histogram,
                })
                .collect(),
        );
    }
    Ok(Some(segments))
}

/// Parses `resources.csv` by its header's column names (units in the names). Empty cells are
/// processes that were not watched.
pub fn parse_resources_csv(text: &str) -> Result<Vec<ResourceRow>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err("empty: no header row".into());
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let Some(elapsed_col) = find("elapsed_ms") else {
        return Err(format!(
            "line 1: the header has no `elapsed_ms` column: {header}"
        ));
    };
    let cols = [
        find("target_rss_bytes"),
        find("target_cpu_percent"),
        find("postgres_rss_bytes"),
        find("postgres_cpu_percent"),
    ];
    let mut rows = Vec::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(format!(
                "line {line_no}: {} cells, the header has {}",
                cells.len(),
                columns.len()
            ));
        }
        let cell = |col: Option<usize>| col.and_then(|c| cells.get(c)).filter(|s| !s.is_empty());
        let int = |col: Option<usize>, name: &str| -> Result<Option<u64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| format!("line {line_no}: {name} `{s}` is not a whole number"))
                })
                .transpose()
        };
        let float = |col: Option<usize>, name: &str| -> Result<Option<f64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("line {line_no}: {name} `{s}` is not a number"))
                })
                .transpose()
        };
        let Some(elapsed_ms) = int(Some(elapsed_col), "elapsed_ms")? else {
            return Err(format!("line {line_no}: elapsed_ms is empty"));
        };
        rows.push(ResourceRow {
            elapsed_ms,
            target_rss_bytes: int(cols[0], "target_rss_bytes")?,
            target_cpu_percent: float(cols[1], "target_cpu_percent")?,
            postgres_rss_bytes: int(cols[2], "postgres_rss_bytes")?,
            postgres_cpu_percent: float(cols[3], "postgres_cpu_percent")?,
        });
    }
    Ok(rows)
}

/// Min, median and max of a figure over repetitions (one value without repetitions).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many values: 1 means no spread is known.
    pub n: usize,
}

impl Spread {
    /// `None` for no values; NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }

    /// Whether repetitions give this figure a spread at all.
    pub fn has_spread(&self) -> bool {
        self.n >= 2
    }
}

/// A figure's value in each repetition (empty without repetitions): what the repetitions
/// bootstrap of [`crate::noise`] resamples.
pub fn repetition_values(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Vec<f64> {
    variant
        .repetitions
        .iter()
        .filter_map(figure)
        .filter(|v| !v.is_nan())
        .collect()
}

/// A figure of a variant over its repetitions: each repetition's value when there are several,
/// else the variant's own figure. The median of `Spread` then matches the summary's figure.
pub fn spread_of(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Option<Spread> {
    if variant.repetitions.len() >= 2 {
        let values: Vec<f64> = variant.repetitions.iter().filter_map(&figure).collect();
        if let Some(s) = Spread::of(&values) {
            return Some(s);
        }
    }
    figure(&variant.figures).and_then(|v| Spread::of(&[v]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `resources.csv` row under the sampler's current header: the named cells, the others
    /// empty (so these tests follow the header when the sampler adds columns).
    fn csv_row(cells: &[(&str, &str)]) -> String {
        crate::sampler::CSV_HEADER
            .split(',')
            .map(|column| {
                cells
                    .iter()
                    .find(|(name, _)| *name == column)
                    .map_or("", |(_, value)| value)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn resources_csv_reads_by_header_and_keeps_empty_cells_empty() {
        let text = format!(
            "{}\n{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[
                ("elapsed_ms", "250"),
                ("target_rss_bytes", "1048576"),
                ("target_cpu_percent", "12.5"),
            ]),
            csv_row(&[
                ("elapsed_ms", "500"),
                ("target_rss_bytes", "2097152"),
                ("postgres_rss_bytes", "4096"),
                ("postgres_cpu_percent", "1.5"),
            ]),
        );
        let rows = parse_resources_csv(&text).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].target_rss_bytes, Some(1_048_576));
        assert_eq!(rows[0].postgres_rss_bytes, None);
        assert_eq!(rows[1].postgres_cpu_percent, Some(1.5));
    }

    #[test]
    fn resources_csv_errors_name_the_line() {
        let text = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[("elapsed_ms", "250"), ("target_rss_bytes", "x")])
        );
        let err = parse_resources_csv(&text).expect_err("bad cell");
        assert!(err.starts_with("line 2:"), "{err}");
    }

    /// A latency log like the runner writes: 1 s intervals from 0 s (warm-up until 2 s), each
    /// with a `ttfb` twin, and the drain after the schedule's end (8 s) as a short last one.
    fn write_log(path: &Path, intervals: &[(f64, f64, u64)]) {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use std::time::{Duration, SystemTime};
        let mut bytes = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .with_start_time(SystemTime::UNIX_EPOCH)
            .with_max_value_divisor(1_000.0);
        let mut writer = builder
            .begin_log_with(&mut bytes, &mut serializer)
            .expect("log starts");
        for &(start_s, duration_s, latency_us) in intervals {
            let mut latency = recorder::new_histogram();
            let mut ttfb = recorder::new_histogram();
            for i in 0..10 {
                recorder::record_clamped(&mut latency, latency_us + i);
                recorder::record_clamped(&mut ttfb, 1);
            }
            let (start, length) = (
                Duration::from_secs_f64(start_s),
                Duration::from_secs_f64(duration_s),
            );
            writer
                .write_histogram(&latency, start, length, None)
                .expect("interval");
            writer
                .write_histogram(&ttfb, start, length, Tag::new("ttfb"))
                .expect("tagged interval");
        }
        drop(writer);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write log");
    }

    fn variant_with_log(log: &str) -> VariantSummary {
        let measurement = Measurement {
            warmup_ms: 2_000,
            measured_duration_ms: 6_000,
            files: crate::results::MeasurementFiles {
                latency_hlog: log.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        VariantSummary {
            name: "pool-10".into(),
            target_kind: "api".into(),
            knobs: Default::default(),
            load_model: crate::scenario::LoadModel::Open,
            latency_origin: "scheduled".into(),
            figures: measurement.clone(),
            repetitions: vec![measurement],
        }
    }

    #[test]
    fn measured_intervals_leave_out_warm_up_drain_and_tagged_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut intervals: Vec<(f64, f64, u64)> =
            (0..8).map(|s| (s as f64, 1.0, 1_000 * (s + 1))).collect();
        intervals.push((8.0, 0.3, 90_000));
        write_log(&dir.path().join("pool-10/latency.hlog"), &intervals);
        let variant = variant_with_log("pool-10/latency.hlog");
        let segments = load_measured_intervals(dir.path(), &variant)
            .expect("reads")
            .expect("has a log");
        assert_eq!(segments.len(), 1);
        let mins: Vec<u64> = segments[0].iter().map(|i| i.histogram.min()).collect();
        assert_eq!(
            mins,
            [3_000, 4_000, 5_000, 6_000, 7_000, 8_000],
            "2 s .. 7 s only"
        );
        assert!(
            segments[0]
                .iter()
                .all(|i| i.histogram.len() == 10 && i.duration_s == 1.0)
        );

        // A run written before there was a log has no noise estimate, not an error...
        let old = variant_with_log("pool-10/missing.hlog");
        assert!(
            load_measured_intervals(dir.path(), &old)
                .expect("ok")
                .is_none()
        );
        // ...but a log that is there and unreadable names itself.
        std::fs::write(dir.path().join("bad.hlog"), "0.000,1.000,1.0,@@@@\n").expect("write");
        let err = load_measured_intervals(dir.path(), &variant_with_log("bad.hlog"))
            .expect_err("corrupt");
        assert!(err.to_string().contains("bad.hlog"), "{err}");
    }

    #[test]
    fn spread_is_min_median_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert!(Spread::of(&[]).is_none());
    }
}
