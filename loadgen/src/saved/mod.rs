//! Reading a saved run back: `summary.json`, `run.json`, and per measurement `latency.hlog`
//! and `resources.csv`. Shared by `apibench report`, `compare` and `gate`, which work from saved
//! files only — never from a live run — so any run can be re-rendered, compared and gated later.
//! `compare` and `gate` read the logs only for their noise estimate
//! ([`load_measured_intervals`]: the full 1 s intervals after the warm-up, without the drain)
//! and the per-repetition values of a figure ([`repetition_values`]).
//!
//! Every error names the file it is about; the verbs turn them into exit code 2 (bad input).
//! This module only reads; it never writes into a run directory.
//!
//! Long runs: a 2 h `latency.hlog` holds 28,800 histograms of a few hundred KB each once
//! decoded, so the report streams it ([`recorder::for_each_hlog_interval`]) and keeps only small
//! per-interval points, one merged histogram, and — for the charts, which cannot show thousands
//! of points — buckets of [`CHART_POINTS_MAX`] at most whose percentiles come from the merged
//! histograms of their intervals, never from averaging the intervals' percentiles. A soak's
//! [`Drift`] (10-minute blocks, RSS slopes) is built in the same pass, a few histograms at a time;
//! `compare` and `gate` hold at most [`MEASURED_UNITS_MAX`] histograms per measurement.
//!
//! Inside: this file (the run as a whole: [`SavedRun`], [`load_summary`], [`load_run_info`], the
//! errors), `latency_log.rs` (reading `latency.hlog`: per-interval points, chart buckets, the
//! measured intervals `compare` and `gate` resample), `drift.rs` (the soak's drift over time:
//! blocks accumulated while the log streams, RSS trends from the resource rows),
//! `resources.rs` (`resources.csv`), `spread.rs` (a figure over repetitions).

mod drift;
mod latency_log;
mod resources;
mod spread;
#[cfg(test)]
mod test_logs;

pub use drift::{
    DRIFT_BLOCK_S, DRIFT_MIN_MEASURED_S, DRIFT_PARTIAL_BLOCK_MIN_S, Drift, DriftBlock, RSS_EDGE_S,
    RssTrend,
};
pub use latency_log::{
    CHART_POINTS_MAX, IntervalPoint, MEASURED_UNITS_MAX, MeasuredInterval, load_measured_intervals,
};
pub use resources::{ResourceRow, parse_resources_csv};
pub use spread::{Spread, repetition_values, spread_of};

use crate::recorder;
use crate::results::{Measurement, RunInfo, Summary, VariantSummary};
use hdrhistogram::Histogram;
use latency_log::read_latency_log;
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

/// One measurement (a variant's load phase, one repetition) read back from its files.
#[derive(Debug, Clone)]
pub struct SavedMeasurement {
    /// 1-based repetition number.
    pub repetition: usize,
    /// Every 1 s interval of the log, warm-up and drain included, by start.
    pub intervals: Vec<IntervalPoint>,
    /// What the time charts draw: `intervals` when there are at most [`CHART_POINTS_MAX`] of
    /// them, else buckets of `chart_bucket_s` consecutive full intervals.
    pub chart_intervals: Vec<IntervalPoint>,
    /// Seconds of run per chart point: 1 unless the log was too long to draw interval by interval.
    pub chart_bucket_s: u64,
    /// Every measured (post warm-up) interval merged: the percentile spectrum's source.
    pub merged: Histogram<u64>,
    pub resources: Vec<ResourceRow>,
    /// The soak's drift over the measured window: `None` when it is shorter than
    /// [`DRIFT_MIN_MEASURED_S`].
    pub drift: Option<Drift>,
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
        SavedRun::read_files(dir, summary, info, Ending::Finished)
    }

    /// A run that was killed before it wrote `summary.json`, with the summary rebuilt from its
    /// logs ([`crate::recover`]): its files are read as a kill leaves them — a cut last line of
    /// `latency.hlog` or `resources.csv` is left out, a missing `resources.csv` reads as empty.
    pub fn from_killed_run(
        dir: &Path,
        summary: Summary,
        info: Option<RunInfo>,
    ) -> Result<SavedRun, SavedRunError> {
        SavedRun::read_files(dir, summary, info, Ending::Killed)
    }

    fn read_files(
        dir: &Path,
        summary: Summary,
        info: Option<RunInfo>,
        ending: Ending,
    ) -> Result<SavedRun, SavedRunError> {
        let mut variants = Vec::with_capacity(summary.variants.len());
        for variant in &summary.variants {
            let measurements = measurements_of(variant);
            let mut saved = Vec::with_capacity(measurements.len());
            let mut merged = recorder::new_histogram();
            for (i, m) in measurements.iter().enumerate() {
                let measurement = load_measurement(dir, i + 1, m, ending)?;
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

/// How the run that wrote the files ended: a finished run's files are whole, a killed run's may
/// end in a cut line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Finished,
    Killed,
}

/// `bytes` up to and including its last newline (what a kill mid-write leaves whole).
fn complete_lines(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&[][..], |last| &bytes[..=last])
}

fn load_measurement(
    dir: &Path,
    repetition: usize,
    m: &Measurement,
    ending: Ending,
) -> Result<SavedMeasurement, SavedRunError> {
    let hlog_path = dir.join(&m.files.latency_hlog);
    let log = read_latency_log(&hlog_path, m, ending)?;
    let csv_path = dir.join(&m.files.resources_csv);
    let mut bytes = match (read_bytes(&csv_path), ending) {
        (Err(SavedRunError::Missing(_)), Ending::Killed) => Vec::new(),
        (read, _) => read?,
    };
    if ending == Ending::Killed {
        let whole = complete_lines(&bytes).len();
        bytes.truncate(whole);
        if bytes.is_empty() {
            bytes = format!("{}\n", crate::sampler::CSV_HEADER).into_bytes();
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let resources = parse_resources_csv(&text).map_err(|reason| SavedRunError::Corrupt {
        path: csv_path.clone(),
        reason,
    })?;
    let drift = log.drift.map(|drift| drift.with_resources(&resources, m));
    Ok(SavedMeasurement {
        repetition,
        intervals: log.intervals,
        chart_intervals: log.chart_intervals,
        chart_bucket_s: log.chart_bucket_s,
        merged: log.merged,
        resources,
        drift,
    })
}
