//! A run stopped before it wrote `summary.json` (killed with SIGKILL, out of memory, a machine
//! that went down): its figures rebuilt from what it left on disk, so `apibench report` can still
//! render it as a partial run.
//!
//! `run.json` is written when a run starts and `latency.hlog` is streamed interval by interval,
//! so a killed run's directory holds the load as run and every 1 s interval that was closed. From
//! those, [`summary_from_logs`] rebuilds a [`Summary`] marked partial, each measurement invalid
//! (its reason says why): request and error counts, latency / TTFB / send-lag percentiles and
//! throughput over the intervals after the warm-up, and the resource peaks and means from
//! `resources.csv` when it is there. What only the live run knew (status codes, per-request-name
//! figures, sends, users, the verdict's evidence) stays at its default. The logs are streamed
//! (one histogram decoded at a time), so a killed soak run recovers in bounded memory.
//!
//! This module never writes into a run directory: the directory stays as the killed run left
//! it, and a later `apibench report` recovers it again the same way.

use crate::recorder;
use crate::results::{
    self, Measurement, MeasurementFiles, Percentiles, RunInfo, SCHEMA_VERSION, Summary,
    VariantSummary,
};
use crate::saved::{self, ResourceRow, SavedRun, SavedRunError};
use crate::scenario::LoadModel;
use crate::schedule::SchedulePlan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every recovered measurement's `invalid_reason` (and verdict reason).
pub const RECOVERED_REASON: &str = "recovered from latency.hlog: the run stopped without \
     writing summary.json (killed?); the figures cover the 1 s intervals it logged after the \
     warm-up, and what only the live run knew (status codes, per-request figures, the \
     generator's self-check) is unknown";

/// Why a run directory cannot be recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "{}: missing: a run directory without run.json cannot be recovered (is this a directory written by `apibench run`?)",
        .0.display()
    )]
    MissingRunInfo(PathBuf),
    #[error("{}: nothing to recover: {reasons}", dir.display())]
    NothingMeasured { dir: PathBuf, reasons: String },
    /// A log or `run.json` that is there but unreadable or corrupt (names the file).
    #[error(transparent)]
    Saved(#[from] SavedRunError),
}

/// A run rebuilt from its logs.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub dir: PathBuf,
    /// `partial: true`; `finished_at` is when its logs were last written.
    pub summary: Summary,
    /// `run.json` as read, with `partial` set.
    pub info: RunInfo,
    /// Each measurement of `run.json` that has no figures, and why (one sentence each).
    pub skipped: Vec<String>,
}

impl Recovered {
    /// One line for the user: the run is partial, rebuilt from its logs, and what was left out.
    pub fn warning(&self) -> String {
        let recovered: usize = self
            .summary
            .variants
            .iter()
            .map(|v| saved::measurements_of(v).len())
            .sum();
        let mut line = format!(
            "{}: no summary.json — the run stopped before its end (killed?); the report is \
             rebuilt from its logs and is partial ({recovered} measurement{} recovered",
            self.dir.display(),
            if recovered == 1 { "" } else { "s" }
        );
        if !self.skipped.is_empty() {
            line.push_str("; skipped: ");
            line.push_str(&self.skipped.join("; "));
        }
        line.push(')');
        line
    }

    /// The run as `apibench report` reads a finished one, by the same code
    /// ([`SavedRun::from_killed_run`]: the same check of the counts against the logs), reading
    /// the files as a kill leaves them — a cut last line left out, a missing `resources.csv`
    /// read as empty. The run directory itself is never written.
    pub fn load_saved_run(&self) -> Result<SavedRun, RecoverError> {
        Ok(SavedRun::from_killed_run(
            &self.dir,
            self.summary.clone(),
            Some(self.info.clone()),
        )?)
    }
}

/// Rebuilds the summary of a run directory that has `run.json` but no `summary.json`: for each
/// variant of `run.json` (and each `rep-N` when it repeated) whose `latency.hlog` holds a
/// complete interval after the warm-up, a partial, invalid [`Measurement`] (see the module doc).
/// A last log line without its newline (cut by the kill) is left out; an interval logged twice
/// counts once with both halves. Fails naming `run.json` when it is missing, naming a log when
/// it is corrupt, and when no measurement at all could be rebuilt.
pub fn summary_from_logs(dir: &Path) -> Result<Recovered, RecoverError> {
    if !dir.is_dir() {
        return Err(SavedRunError::NotADirectory(dir.to_path_buf()).into());
    }
    let Some(mut info) = saved::load_run_info(dir)? else {
        return Err(RecoverError::MissingRunInfo(dir.join("run.json")));
    };
    info.partial = true;
    let repeat = info.repeat.max(1);
    let mut skipped = Vec::new();
    let mut variants = Vec::new();
    let mut last_written: Option<SystemTime> = None;
    for variant in &info.variants {
        let mut measurements = Vec::new();
        for repetition in 1..=repeat {
            let dir_rel = if repeat > 1 {
                format!("{}/rep-{repetition}", variant.name)
            } else {
                variant.name.clone()
            };
            match recover_measurement(dir, &dir_rel, &info)? {
                Found::Measured(measurement, written) => {
                    last_written = last_written.max(written);
                    measurements.push(*measurement);
                }
                Found::Skipped(reason) => skipped.push(format!("{dir_rel}: {reason}")),
            }
        }
        if measurements.is_empty() {
            continue;
        }
        variants.push(VariantSummary {
            name: variant.name.clone(),
            target_kind: variant.target_kind.clone(),
            knobs: variant.knobs.clone(),
            load_model: info.load.model,
            latency_origin: info.load.latency_origin.clone(),
            figures: results::aggregate(&measurements),
            repetitions: measurements,
        });
    }
    if variants.is_empty() {
        return Err(RecoverError::NothingMeasured {
            dir: dir.to_path_buf(),
            reasons: if skipped.is_empty() {
                "run.json lists no variant".into()
            } else {
                skipped.join("; ")
            },
        });
    }
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        scenario: info.scenario.name.clone(),
        load_model: info.load.model,
        partial: true,
        repeat,
        started_at: info.started_at.clone(),
        finished_at: last_written.map_or_else(String::new, |t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
        variants,
        migration_table: None,
        shards: Vec::new(),
        baseline: None,
    };
    Ok(Recovered {
        dir: dir.to_path_buf(),
        summary,
        info,
        skipped,
    })
}

/// One measurement directory's outcome.
enum Found {
    /// Its figures, and when its log was last written.
    Measured(Box<Measurement>, Option<SystemTime>),
    /// Why it has no figures.
    Skipped(String),
}

/// The file's bytes; `None` when it does not exist.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, SavedRunError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SavedRunError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The complete lines: a last line without its newline was cut mid-write and is left out.
fn complete_lines(bytes: &[u8]) -> &[u8] {
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(last_newline) => &bytes[..=last_newline],
        None => &[],
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Completions logged for one interval start after the warm-up (entries that share the start
/// add up).
#[derive(Debug, Default)]
struct Completions {
    duration: Duration,
    successes: u64,
    failures: u64,
}

/// The measurement in `dir/dir_rel` from its `latency.hlog` (and `resources.csv`).
fn recover_measurement(dir: &Path, dir_rel: &str, info: &RunInfo) -> Result<Found, RecoverError> {
    let hlog_path = dir.join(dir_rel).join("latency.hlog");
    let Some(bytes) = read_if_present(&hlog_path)? else {
        return Ok(Found::Skipped("no latency.hlog (not reached)".into()));
    };
    let load = &info.load;
    let warmup_s = load.warmup_ms as f64 / 1000.0;
    let mut latency = recorder::new_histogram();
    let mut ttfb = recorder::new_histogram();
    let mut error_latency = recorder::new_histogram();
    let mut send_lag = recorder::new_histogram();
    let mut any_interval = false;
    let mut measured: BTreeMap<Duration, Completions> = BTreeMap::new();
    recorder::for_each_hlog_interval(complete_lines(&bytes), |interval| {
        any_interval |= interval.tag.is_none();
        if interval.start.as_secs_f64() < warmup_s {
            return Ok(());
        }
        let h = &interval.histogram;
        let into = match interval.tag.as_deref() {
            None | Some("errors") => {
                let completions = measured.entry(interval.start).or_default();
                completions.duration = completions.duration.max(interval.duration);
                if interval.tag.is_none() {
                    completions.successes += h.len();
                    &mut latency
                } else {
                    completions.failures += h.len();
                    &mut error_latency
                }
            }
            Some("ttfb") => &mut ttfb,
            Some("send_lag") => &mut send_lag,
            Some(_) => return Ok(()),
        };
        into.add(h)
            .map_err(|e| format!("interval at {} s: {e:?}", interval.start.as_secs_f64()))
    })
    .map_err(|reason| SavedRunError::Corrupt {
        path: hlog_path.clone(),
        reason,
    })?;
    if !any_interval {
        return Ok(Found::Skipped(
            "latency.hlog holds no complete interval".into(),
        ));
    }
    // The window ends at the schedule's end, or where the log stops when it stopped earlier.
    let schedule_end_s = (load.warmup_ms + load.duration_ms) as f64 / 1000.0;
    let Some(log_end_s) = measured
        .iter()
        .map(|(start, c)| (*start + c.duration).as_secs_f64())
        .reduce(f64::max)
    else {
        return Ok(Found::Skipped(format!(
            "latency.hlog holds no interval after the {warmup_s} s warm-up"
        )));
    };
    let window_s = (log_end_s.min(schedule_end_s) - warmup_s).max(0.0);
    let measured_duration_ms = (window_s * 1000.0).round() as u64;
    // Completions in intervals mostly after the window are the drain of the last in-flight
    // requests: the rule of `saved::IntervalPoint::after_schedule`, on this measurement's window.
    let window_end_s = (load.warmup_ms + measured_duration_ms) as f64 / 1000.0;
    let (mut successes_in_window, mut completions_in_window) = (0u64, 0u64);
    for (start, c) in &measured {
        if start.as_secs_f64() + c.duration.as_secs_f64() / 2.0 <= window_end_s {
            successes_in_window += c.successes;
            completions_in_window += c.successes + c.failures;
        }
    }
    let per_sec = |n: u64| {
        if window_s > 0.0 {
            round2(n as f64 / window_s)
        } else {
            0.0
        }
    };
    let errors = error_latency.len();
    let requests = latency.len() + errors;
    let target_log = format!("{dir_rel}/target.log");
    let mut m = Measurement {
        valid: false,
        invalid_reason: Some(RECOVERED_REASON.into()),
        partial: true,
        verdict: crate::verdict::State::Invalid.as_str().into(),
        verdict_reason: Some(RECOVERED_REASON.into()),
        target_rate_per_sec: (load.model == LoadModel::Open).then(|| {
            let plan = SchedulePlan::new(Duration::from_millis(load.warmup_ms), &load.stages);
            round2(plan.measured_rate_per_sec())
        }),
        throughput_rps: per_sec(completions_in_window),
        goodput_rps: Some(per_sec(successes_in_window)),
        drain_requests: requests.saturating_sub(completions_in_window),
        measured_duration_ms,
        warmup_ms: load.warmup_ms,
        requests,
        errors,
        error_rate: if requests > 0 {
            errors as f64 / requests as f64
        } else {
            0.0
        },
        latency_us: Percentiles::of(&latency),
        ttfb_us: Percentiles::of(&ttfb),
        error_latency_us: Percentiles::of(&error_latency),
        send_lag_us: Percentiles::of(&send_lag),
        max_users: load.max_users.unwrap_or(load.users) as u64,
        generator_cpus_allowed: load
            .generator_cpus
            .as_ref()
            .and_then(|cpus| u32::try_from(cpus.len()).ok()),
        files: MeasurementFiles {
            latency_hlog: format!("{dir_rel}/latency.hlog"),
            resources_csv: format!("{dir_rel}/resources.csv"),
            target_log: dir.join(&target_log).is_file().then_some(target_log),
        },
        ..Measurement::default()
    };
    let resources = read_resources(&dir.join(&m.files.resources_csv))?;
    apply_resources(&mut m, &resources);
    let written = std::fs::metadata(&hlog_path)
        .and_then(|meta| meta.modified())
        .ok();
    Ok(Found::Measured(Box::new(m), written))
}

/// `resources.csv`'s complete rows; none when the file is absent or was cut in its header.
fn read_resources(path: &Path) -> Result<Vec<ResourceRow>, SavedRunError> {
    let Some(bytes) = read_if_present(path)? else {
        return Ok(Vec::new());
    };
    let corrupt = |reason: String| SavedRunError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(complete_lines(&bytes))
        .map_err(|_| corrupt("not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    saved::parse_resources_csv(text).map_err(corrupt)
}

/// The peaks (every sample) and CPU means (samples after the warm-up, as the sampler counts
/// them) of the target and Postgres, and the generator's RSS peak. Postgres as RSS (whether its
/// PSS could be read is not recovered); the kernel's high-water marks and the generator's CPU
/// are not read back from the file.
fn apply_resources(m: &mut Measurement, rows: &[ResourceRow]) {
    let peak = |field: fn(&ResourceRow) -> Option<u64>| rows.iter().filter_map(field).max();
    let mean = |field: fn(&ResourceRow) -> Option<f64>| {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.elapsed_ms >= m.warmup_ms)
            .filter_map(field)
            .collect();
        (!values.is_empty()).then(|| round2(values.iter().sum::<f64>() / values.len() as f64))
    };
    let target_cpu = mean(|r| r.target_cpu_percent);
    let postgres_cpu = mean(|r| r.postgres_cpu_percent);
    m.target_rss_peak_bytes = peak(|r| r.target_rss_bytes);
    m.target_cpu_mean_percent = target_cpu;
    m.postgres_rss_peak_bytes = peak(|r| r.postgres_rss_bytes);
    m.postgres_cpu_mean_percent = postgres_cpu;
    m.generator_rss_peak_bytes = peak(|r| r.generator_rss_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Recording, Sample};

    /// The fixture's load: open model, 2 s warm-up, 6 s at 50 req/s; variants pool-10, pool-50.
    fn run_info(repeat: u32) -> RunInfo {
        let mut info: RunInfo =
            serde_json::from_str(include_str!("../tests/fixtures/run-single/run.json"))
                .expect("the fixture's run.json parses");
        info.repeat = repeat;
        info.finished_at = None;
        info
    }

    fn write_run_info(dir: &Path, info: &RunInfo) {
        let text = serde_json::to_string_pretty(info).expect("serializes");
        std::fs::write(dir.join("run.json"), text).expect("write run.json");
    }

    /// 200 completions a second: the warm-up's before 2 s, then `measured_s` seconds of measured
    /// ones. Every 13th fails fast (503), every 97th stalls 150 ms.
    fn recording(measured_s: u64) -> Recording {
        let names = vec!["get_user".to_string(), "list_posts".to_string()];
        let mut recording = Recording::new(&names);
        recording.window_end_us = 8_000_000;
        let per_s = 200;
        for i in 0..(2 + measured_s) * per_s {
            let completed_offset_us = i * 1_000_000 / per_s;
            let error = i % 13 == 0;
            let latency_us = match i {
                _ if error => 300,
                _ if i % 97 == 0 => 150_000,
                _ => 800 + (i * 7_919) % 20_000,
            };
            recording.record(&Sample {
                request: (i % 2) as u16,
                latency_us,
                ttfb_us: (!error).then_some(latency_us / 2),
                completed_offset_us,
                sent_offset_us: completed_offset_us.saturating_sub(latency_us),
                status: if error { 503 } else { 200 },
                error,
                timed_out: false,
                in_warmup: completed_offset_us < 2_000_000,
                generator_late: false,
                backlogged: false,
                backlogged_at_cap: false,
                send_lag_us: 20 + i % 50,
                service_us: latency_us,
            });
        }
        recording
    }

    /// Writes `recording`'s log as `dir/rel/latency.hlog`; returns its bytes.
    fn write_log(dir: &Path, rel: &str, recording: &Recording) -> Vec<u8> {
        let mut bytes = Vec::new();
        recording
            .write_hlog(&mut bytes, SystemTime::UNIX_EPOCH, "recover test")
            .expect("hlog writes");
        std::fs::create_dir_all(dir.join(rel)).expect("mkdir");
        std::fs::write(dir.join(rel).join("latency.hlog"), &bytes).expect("write log");
        bytes
    }

    /// Target RSS peaks in the warm-up (9 MB); its CPU is 90 % then, 10 and 30 % after. Only
    /// the columns it fills: the file is read by its header's names.
    fn resources_csv() -> String {
        "elapsed_ms,target_rss_bytes,target_cpu_percent\n\
         1000,9000000,90.0\n\
         2500,5000000,10.0\n\
         5000,6000000,30.0\n"
            .to_string()
    }

    #[test]
    fn recovered_figures_agree_with_the_recording_and_pass_the_report_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run_info(dir.path(), &run_info(1));
        let full = recording(6);
        write_log(dir.path(), "pool-10", &full);
        std::fs::write(dir.path().join("pool-10/resources.csv"), resources_csv()).expect("csv");
        // pool-50 was starting when the run was killed: its log never got an interval.
        std::fs::create_dir_all(dir.path().join("pool-50")).expect("mkdir");
        std::fs::write(dir.path().join("pool-50/latency.hlog"), "").expect("empty log");

        let recovered = summary_from_logs(dir.path()).expect("recovers");
        let summary = &recovered.summary;
        assert!(summary.partial);
        assert_eq!(summary.scenario, "fixture-pools");
        let names: Vec<&str> = summary.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["pool-10"], "pool-50 has no interval");
        assert_eq!(recovered.skipped.len(), 1, "{:?}", recovered.skipped);
        assert!(recovered.skipped[0].starts_with("pool-50:"));
        assert!(recovered.warning().contains("pool-50"));

        let m = &summary.variants[0].figures;
        assert_eq!(summary.variants[0].repetitions, std::slice::from_ref(m));
        assert_eq!((m.requests, m.errors), (full.requests, full.errors));
        assert_eq!(m.latency_us.p99, Percentiles::of(&full.latency).p99);
        assert_eq!(m.latency_us, Percentiles::of(&full.latency));
        assert_eq!(m.ttfb_us, Percentiles::of(&full.ttfb));
        assert_eq!(m.error_latency_us, Percentiles::of(&full.error_latency));
        assert_eq!(m.send_lag_us, Percentiles::of(&full.send_lag));
        assert_eq!((m.warmup_ms, m.measured_duration_ms), (2_000, 6_000));
        assert_eq!(m.throughput_rps, 200.0);
        assert_eq!(
            m.goodput_rps,
            Some(round2(full.successes_in_window as f64 / 6.0))
        );
        assert_eq!(m.target_rate_per_sec, Some(50.0), "the fixture's schedule");
        assert!(m.partial && !m.valid);
        assert_eq!(m.verdict, "invalid");
        assert!(
            m.invalid_reason
                .as_deref()
                .is_some_and(|r| r.contains("summary.json")),
            "{m:?}"
        );
        assert_eq!(m.files.latency_hlog, "pool-10/latency.hlog");
        assert_eq!(m.files.resources_csv, "pool-10/resources.csv");
        assert_eq!(
            m.target_rss_peak_bytes,
            Some(9_000_000),
            "peaks count the warm-up"
        );
        assert_eq!(m.target_cpu_mean_percent, Some(20.0), "means do not");
        assert_eq!(m.postgres_rss_peak_bytes, None);

        // The report reads it as a finished run, through the check of its counts against the
        // log, and nothing is written into the run directory.
        let run = recovered.load_saved_run().expect("reads as a saved run");
        assert_eq!(run.dir, dir.path());
        assert_eq!(run.variants.len(), 1);
        let read = &run.variants[0].measurements[0];
        assert_eq!(read.merged.len(), full.requests - full.errors);
        assert_eq!(read.intervals.len(), 8, "warm-up included");
        assert_eq!(read.resources.len(), 3);
        assert!(run.info.as_ref().is_some_and(|i| i.partial));
        assert!(!dir.path().join("summary.json").exists());
    }

    #[test]
    fn a_cut_last_line_is_left_out_and_the_directory_renders_as_partial() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run_info(dir.path(), &run_info(1));
        // Killed 5 s in: intervals 0..=4 logged, the last one cut in the middle of its line.
        let killed = recording(3);
        let bytes = write_log(dir.path(), "pool-10", &killed);
        let text = std::str::from_utf8(&bytes).expect("text");
        let last_untagged = text
            .lines()
            .rfind(|line| line.starts_with(|c: char| c.is_ascii_digit()))
            .expect("an untagged line");
        assert!(last_untagged.starts_with("4.000,"), "{last_untagged}");
        let cut = text.rfind(last_untagged).expect("found") + last_untagged.len() / 2;
        std::fs::write(dir.path().join("pool-10/latency.hlog"), &bytes[..cut]).expect("cut");
        let mut csv = resources_csv();
        csv.push_str("7500,12");
        std::fs::write(dir.path().join("pool-10/resources.csv"), csv).expect("csv");

        let recovered = summary_from_logs(dir.path()).expect("recovers");
        let m = &recovered.summary.variants[0].figures;
        let lost = &killed.intervals[&4];
        assert_eq!(
            (m.requests, m.errors),
            (
                killed.requests - lost.latency.len() - lost.errors.len(),
                killed.errors - lost.errors.len()
            )
        );
        let mut logged = recorder::new_histogram();
        for index in [2, 3] {
            logged.add(&killed.intervals[&index].latency).expect("add");
        }
        assert_eq!(m.latency_us, Percentiles::of(&logged));
        assert_eq!(m.measured_duration_ms, 2_000, "intervals 2 and 3");
        assert_eq!(
            m.target_rss_peak_bytes,
            Some(9_000_000),
            "the cut CSV row too"
        );
        assert!(recovered.skipped[0].contains("not reached"), "pool-50");

        let rendered = crate::report::render_dir(dir.path(), None).expect("renders");
        assert!(rendered.recovered.is_some());
        let page = std::fs::read_to_string(&rendered.path).expect("index.html");
        assert!(page.contains("Partial run"));
        assert!(
            !dir.path().join("summary.json").exists(),
            "the killed run's directory is left as it was"
        );
    }

    #[test]
    fn each_repetition_is_recovered_from_its_own_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run_info(dir.path(), &run_info(2));
        write_log(dir.path(), "pool-10/rep-1", &recording(6));
        write_log(dir.path(), "pool-50/rep-1", &recording(6));
        write_log(dir.path(), "pool-10/rep-2", &recording(2));

        let recovered = summary_from_logs(dir.path()).expect("recovers");
        assert_eq!(recovered.summary.repeat, 2);
        let pool_10 = &recovered.summary.variants[0];
        let logs: Vec<&str> = pool_10
            .repetitions
            .iter()
            .map(|m| m.files.latency_hlog.as_str())
            .collect();
        assert_eq!(
            logs,
            ["pool-10/rep-1/latency.hlog", "pool-10/rep-2/latency.hlog"]
        );
        assert_eq!(recovered.summary.variants[1].repetitions.len(), 1);
        assert_eq!(
            recovered.skipped,
            ["pool-50/rep-2: no latency.hlog (not reached)"]
        );
        let run = recovered.load_saved_run().expect("reads as a saved run");
        assert_eq!(run.variants[0].measurements.len(), 2);
        assert_eq!(run.variants[0].measurements[1].repetition, 2);
    }

    #[test]
    fn a_log_with_nothing_after_the_warm_up_gives_no_measurement() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run_info(dir.path(), &run_info(1));
        write_log(dir.path(), "pool-10", &recording(0));
        let err = summary_from_logs(dir.path()).expect_err("nothing measured");
        let message = err.to_string();
        assert!(message.contains("nothing to recover"), "{message}");
        assert!(
            message.contains("pool-10: latency.hlog holds no interval after"),
            "{message}"
        );
    }

    #[test]
    fn without_run_json_the_error_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), "pool-10", &recording(6));
        let err = summary_from_logs(dir.path()).expect_err("no run.json");
        assert!(matches!(err, RecoverError::MissingRunInfo(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().join("run.json").display().to_string()),
            "{message}"
        );
    }
}
