//! `apibench merge OUT DIR...`: the run directories of `apibench run --shard I/N` (one per
//! machine) become one run directory, exactly as one process sending the whole schedule would
//! have written it — so `report`, `compare` and `gate` read it unchanged.
//!
//! Exact, not approximate: each shard saved its whole recording (`recording.json`: every
//! histogram and counter) and its 1 s interval log with the schedule's start as StartTime. The
//! merge adds the recordings (HDR histograms add bucket by bucket) and rebuilds the summary with
//! the same code a run uses ([`crate::runner::build_measurement`]) against the whole schedule;
//! it adds the interval logs entry by entry, aligned on absolute time. Percentiles of the merge
//! are the percentiles of every request any shard sent — not an average of the shards' p99s,
//! which is what a dashboard of per-pod summaries would show.
//!
//! The inputs must belong together (same scenario file by sha256, same N, same start, same
//! variant, every index present once) or the merge refuses with exit 2 naming the odd one out.
//! Any invalid shard makes the merged run invalid, naming the shard. Reads the shards' files
//! only; writes only under OUT (refused when OUT already holds a run).

use crate::recorder::{
    self, EngineFigures, LoggedInterval, Recording, RecordingState, decode_histogram,
};
use crate::results::{self, Measurement, MeasurementFiles, RunInfo, Summary, VariantSummary};
use crate::runner::{PhaseFacts, build_measurement};
use crate::sampler::ResourceSummary;
use crate::saved::{self, CommandOutcome};
use crate::scenario::LoadModel;
use crate::schedule::{SchedulePlan, Stage};
use crate::shard::{self, SHARD_FILE, ShardFile, ShardRow};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const MERGE_AFTER_HELP: &str = "\
Each DIR is the --out of one `apibench run ... --shard I/N --start-at T`. The merge checks they
belong together (same scenario sha256, same N and --start-at, every I once), adds the shards'
histograms exactly (interval logs aligned on absolute time) and writes OUT as one run:
summary.json, run.json, <variant>/latency.hlog, resources.csv, index.html with a per-shard table.

Examples:
  apibench merge reports/merged shard-0 shard-1
      two shards into one report (open reports/merged/index.html)
  apibench gate reports/merged --budgets scenarios/budgets.toml
      a merged run gates like any other

Exit codes: 0 merged (even when a shard was invalid: the merged run then says which),
2 bad input (a missing, duplicate or foreign shard; unreadable files; OUT not empty).";

/// `apibench merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The merged run directory to write (must not exist, or be empty)
    pub out: PathBuf,
    /// The shards' run directories (each has shard.json)
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
}

/// Why shards cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: not a shard run (no {SHARD_FILE}): run it with `apibench run ... --shard I/N`", .0.display())]
    NotAShard(PathBuf),
    #[error(transparent)]
    Saved(#[from] saved::SavedRunError),
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
    #[error("{0}")]
    Mismatch(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn bad(path: &Path, why: impl std::fmt::Display) -> MergeError {
    MergeError::Bad {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// One shard's directory, read.
struct ShardDir {
    dir: PathBuf,
    file: ShardFile,
    info: RunInfo,
    summary: Summary,
}

impl ShardDir {
    fn read(dir: &Path) -> Result<ShardDir, MergeError> {
        let path = dir.join(SHARD_FILE);
        if !path.is_file() {
            return Err(MergeError::NotAShard(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| bad(&path, e))?;
        let file: ShardFile = serde_json::from_str(&text).map_err(|e| bad(&path, e))?;
        let info = saved::load_run_info(dir)?.ok_or_else(|| bad(dir, "run.json is missing"))?;
        let summary = saved::load_summary(dir)?;
        Ok(ShardDir {
            dir: dir.to_path_buf(),
            file,
            info,
            summary,
        })
    }

    fn label(&self) -> String {
        format!(
            "shard {}/{} ({})",
            self.file.index,
            self.file.count,
            self.dir.display()
        )
    }

    /// The shard's one measurement of the variant.
    fn measurement(&self) -> Result<&Measurement, MergeError> {
        self.summary
            .variants
            .iter()
            .find(|v| v.name == self.file.variant)
            .and_then(|v| v.repetitions.first())
            .ok_or_else(|| {
                bad(
                    &self.dir.join("summary.json"),
                    format!("no measurement of variant `{}`", self.file.variant),
                )
            })
    }
}

/// Checks the shards belong together and puts them in index order.
fn check_set(mut shards: Vec<ShardDir>) -> Result<Vec<ShardDir>, MergeError> {
    let Some(first) = shards.first() else {
        return Err(MergeError::Mismatch("no shard directories given".into()));
    };
    let (count, sha, start, variant) = (
        first.file.count,
        first.file.scenario_sha256.clone(),
        first.file.start_at.clone(),
        first.file.variant.clone(),
    );
    let first_label = first.label();
    for s in &shards {
        let foreign = |what: &str, theirs: &str, ours: &str| {
            MergeError::Mismatch(format!(
                "{} is foreign: its {what} is {theirs}, {first_label}'s is {ours}",
                s.label()
            ))
        };
        if s.file.count != count {
            return Err(foreign(
                "shard count",
                &s.file.count.to_string(),
                &count.to_string(),
            ));
        }
        if s.file.scenario_sha256 != sha {
            return Err(foreign("scenario sha256", &s.file.scenario_sha256, &sha));
        }
        if s.file.start_at != start {
            return Err(foreign("--start-at", &s.file.start_at, &start));
        }
        if s.file.variant != variant {
            return Err(foreign("variant", &s.file.variant, &variant));
        }
        if s.file.index >= count {
            return Err(MergeError::Mismatch(format!(
                "{}: index {} is not below the count {count}",
                s.label(),
                s.file.index
            )));
        }
    }
    shards.sort_by_key(|s| s.file.index);
    for pair in shards.windows(2) {
        if pair[0].file.index == pair[1].file.index {
            return Err(MergeError::Mismatch(format!(
                "shard {}/{count} is given twice: {} and {}",
                pair[0].file.index,
                pair[0].dir.display(),
                pair[1].dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.file.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Mismatch(format!(
            "shard {} missing (given: {}); every shard of the run must be merged together",
            missing.join(", "),
            shards
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(shards)
}

/// The whole schedule (every shard's share together) as run.json describes the load.
fn whole_plan(info: &RunInfo) -> SchedulePlan {
    let load = &info.load;
    let warmup = Duration::from_millis(load.warmup_ms);
    match load.model {
        LoadModel::Open => SchedulePlan::new(warmup, &load.stages),
        LoadModel::Closed => SchedulePlan::new(
            warmup,
            &[Stage {
                rate_per_sec: 0.0,
                duration: Duration::from_millis(load.duration_ms),
            }],
        ),
    }
}

/// The shards' recordings added into one, with the engine's figures summed.
fn merged_recording(
    shards: &[ShardDir],
    variant: &str,
) -> Result<(Recording, crate::engine::EngineOutcome), MergeError> {
    let mut merged: Option<Recording> = None;
    let mut probe_lag = recorder::new_histogram();
    let mut engine = EngineFigures::default();
    let mut first_send_late_us: Option<u64> = None;
    for s in shards {
        let path = s.dir.join(variant).join("recording.json");
        let text = std::fs::read_to_string(&path).map_err(|e| bad(&path, e))?;
        let state: RecordingState = serde_json::from_str(&text).map_err(|e| bad(&path, e))?;
        let recording = state.to_recording().map_err(|e| bad(&path, e))?;
        let lag = decode_histogram("engine.probe_lag", &state.engine.probe_lag)
            .map_err(|e| bad(&path, e))?;
        let _ = probe_lag.add(&lag);
        engine.users_started += state.engine.users_started;
        engine.peak_users_busy += state.engine.peak_users_busy;
        engine.max_users += state.engine.max_users;
        engine.generator_threads += state.engine.generator_threads;
        engine.cancelled |= state.engine.cancelled;
        first_send_late_us = first_send_late_us.max(state.engine.first_send_late_us);
        match &mut merged {
            None => merged = Some(recording),
            Some(m) => {
                if m.by_request.len() != recording.by_request.len()
                    || m.by_request
                        .iter()
                        .zip(&recording.by_request)
                        .any(|(a, b)| a.name != b.name)
                {
                    return Err(bad(&path, "its requests differ from the first shard's"));
                }
                m.merge(&recording);
            }
        }
    }
    let recording = merged.ok_or_else(|| MergeError::Mismatch("no shards".into()))?;
    let now = std::time::Instant::now();
    let outcome = crate::engine::EngineOutcome {
        started_at: now,
        ended_at: now,
        cancelled: engine.cancelled,
        users_started: usize::try_from(engine.users_started).unwrap_or(usize::MAX),
        peak_users_busy: usize::try_from(engine.peak_users_busy).unwrap_or(usize::MAX),
        max_users: usize::try_from(engine.max_users).unwrap_or(usize::MAX),
        generator_threads: usize::try_from(engine.generator_threads).unwrap_or(usize::MAX),
        probe_lag,
        first_send_late_us,
        stopped_early: None,
        flow_steps_skipped: 0,
        iterations_measured: None,
    };
    Ok((recording, outcome))
}

/// The shards' resources as one machine's would read: generator CPU adds (each shard's share
/// of its own CPUs), memory peaks are the largest shard's, the target's and PostgreSQL's
/// figures are any shard's that watched them (a shard on the target's machine).
fn merged_resources(measurements: &[&Measurement]) -> ResourceSummary {
    let sum = |f: fn(&Measurement) -> Option<f64>| {
        let values: Vec<f64> = measurements.iter().filter_map(|m| f(m)).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let max = |f: fn(&Measurement) -> Option<u64>| measurements.iter().filter_map(|m| f(m)).max();
    let any_f = |f: fn(&Measurement) -> Option<f64>| measurements.iter().find_map(|m| f(m));
    ResourceSummary {
        samples: 0,
        target_rss_peak_bytes: max(|m| m.target_rss_peak_bytes),
        target_cpu_mean_percent: any_f(|m| m.target_cpu_mean_percent),
        postgres_rss_peak_bytes: max(|m| m.postgres_rss_peak_bytes),
        postgres_cpu_mean_percent: any_f(|m| m.postgres_cpu_mean_percent),
        generator_rss_peak_bytes: max(|m| m.generator_rss_peak_bytes),
        generator_cpu_mean_percent: sum(|m| m.generator_cpu_mean_percent),
        target_rss_hwm_bytes: max(|m| m.target_rss_hwm_bytes),
        postgres_pss_peak_bytes: None,
        postgres_memory_is_pss: measurements.iter().any(|m| m.postgres_memory_is_pss),
        generator_rss_hwm_bytes: None,
    }
}

/// Entries this many seconds behind every shard's progress are final and written; a later
/// piece of one (a worker that stalled) goes in as a second entry, which readers add.
const FLUSH_LAG_SECS: u64 = 10;

/// Adds the shards' interval logs entry by entry on absolute time and writes one log. Streams:
/// memory holds the last [`FLUSH_LAG_SECS`] seconds of intervals, whatever the run's length.
/// Returns the number of entries written.
fn merge_hlogs(
    shards: &[ShardDir],
    variant: &str,
    out: &Path,
    comment: &str,
) -> Result<u64, MergeError> {
    let mut logs = Vec::with_capacity(shards.len());
    for s in shards {
        let path = s.dir.join(variant).join("latency.hlog");
        let bytes = std::fs::read(&path).map_err(|e| bad(&path, e))?;
        let start = recorder::hlog_start_time(&bytes)
            .ok_or_else(|| bad(&path, "no #[StartTime] header: not a log apibench wrote"))?;
        logs.push((path, bytes, start));
    }
    let Some(reference) = logs.iter().map(|(_, _, start)| *start).min() else {
        return Ok(0);
    };
    let file = std::fs::File::create(out).map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let mut writer = std::io::BufWriter::new(file);
    let mut walkers: Vec<_> = logs
        .iter()
        .map(|(path, bytes, start)| {
            let shift = start.duration_since(reference).unwrap_or_default();
            LogWalker {
                path,
                entries: recorder::hlog_intervals(bytes),
                shift,
                latest_s: 0,
                done: false,
            }
        })
        .collect();
    let mut pending: BTreeMap<(Duration, Option<String>), LoggedInterval> = BTreeMap::new();
    let mut ready: Vec<LoggedInterval> = Vec::new();
    let mut written = 0u64;
    // The header goes out with the first block only.
    let mut header = Some((reference, comment));
    // Pull from the log that is furthest behind, so all advance together.
    while let Some(walker) = walkers
        .iter_mut()
        .filter(|w| !w.done)
        .min_by_key(|w| w.latest_s)
    {
        match walker.entries.next() {
            None => walker.done = true,
            Some(Err(e)) => return Err(bad(walker.path, e)),
            Some(Ok(mut interval)) => {
                // Shards started together have equal StartTimes; otherwise shift onto the
                // earliest and round to whole seconds (entries are 1 s intervals).
                interval.start = Duration::from_secs(
                    (interval.start + walker.shift).as_secs_f64().round() as u64,
                );
                walker.latest_s = walker.latest_s.max(interval.start.as_secs());
                match pending.entry((interval.start, interval.tag.clone())) {
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(interval);
                    }
                    std::collections::btree_map::Entry::Occupied(mut slot) => {
                        let held = slot.get_mut();
                        let _ = held.histogram.add(&interval.histogram);
                        held.duration = held.duration.max(interval.duration);
                    }
                }
            }
        }
        let frontier = walkers
            .iter()
            .filter(|w| !w.done)
            .map(|w| w.latest_s)
            .min()
            .unwrap_or(u64::MAX);
        let final_before = Duration::from_secs(frontier.saturating_sub(FLUSH_LAG_SECS));
        while let Some(entry) = pending.first_entry() {
            if entry.key().0 >= final_before {
                break;
            }
            ready.push(entry.remove());
        }
        if ready.len() >= 64 {
            written += write_ready(&mut writer, &mut ready, &mut header, out)?;
        }
    }
    ready.extend(pending.into_values());
    written += write_ready(&mut writer, &mut ready, &mut header, out)?;
    writer.flush().map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(written)
}

/// One shard's interval log being walked: its entries, how far its StartTime is after the
/// earliest shard's, the latest second pulled, whether it is exhausted.
struct LogWalker<'a> {
    path: &'a Path,
    entries: recorder::HlogIntervals<'a>,
    shift: Duration,
    latest_s: u64,
    done: bool,
}

/// Writes `ready` (preceded by the log's header while `header` still holds it) and empties it.
fn write_ready(
    writer: &mut impl std::io::Write,
    ready: &mut Vec<LoggedInterval>,
    header: &mut Option<(SystemTime, &str)>,
    out: &Path,
) -> Result<u64, MergeError> {
    if ready.is_empty() && header.is_none() {
        return Ok(0);
    }
    let write_error = |source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    };
    let first = header.is_some();
    let (reference, comment) = header.take().unwrap_or((SystemTime::UNIX_EPOCH, ""));
    let mut buffer = Vec::new();
    recorder::write_logged_intervals(&mut buffer, reference, comment, ready)
        .map_err(write_error)?;
    // After the first block, only the entries: skip the header lines (comments, StartTime,
    // BaseTime, the legend, the divisor).
    let body: &[u8] = if first {
        &buffer
    } else {
        let text = String::from_utf8_lossy(&buffer);
        let skip: usize = text
            .split_inclusive('\n')
            .take_while(|line| {
                line.starts_with('#') || line.starts_with('"') || line.trim().is_empty()
            })
            .map(str::len)
            .sum();
        &buffer[skip.min(buffer.len())..]
    };
    writer.write_all(body).map_err(write_error)?;
    let n = ready.len() as u64;
    ready.clear();
    Ok(n)
}

/// Each shard's resources.csv, with the generator's columns added across shards row by row
/// (every shard samples every 250 ms from its own start, so row k is about the same moment),
/// the other columns from the first shard that has them.
fn merge_resources_csv(paths: &[PathBuf], out: &Path) -> Result<bool, MergeError> {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut lines = text.lines();
        let Some(head) = lines.next() else { continue };
        let head: Vec<String> = head.split(',').map(str::to_string).collect();
        match &header {
            None => header = Some(head),
            Some(h) if *h != head => {
                return Err(bad(
                    path,
                    "its columns differ from the first shard's resources.csv",
                ));
            }
            Some(_) => {}
        }
        tables.push(
            lines
                .map(|l| l.split(',').map(str::to_string).collect())
                .collect(),
        );
    }
    let Some(header) = header else {
        return Ok(false);
    };
    let summed: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            matches!(
                name.as_str(),
                "generator_cpu_percent" | "generator_rss_bytes"
            )
        })
        .map(|(i, _)| i)
        .collect();
    let rows = tables.iter().map(Vec::len).min().unwrap_or(0);
    let mut text = header.join(",") + "\n";
    for r in 0..rows {
        let mut row: Vec<String> = vec![String::new(); header.len()];
        for (c, cell) in row.iter_mut().enumerate() {
            if summed.contains(&c) {
                let values: Vec<f64> = tables
                    .iter()
                    .filter_map(|t| t.get(r)?.get(c)?.parse::<f64>().ok())
                    .collect();
                if !values.is_empty() {
                    let total: f64 = values.iter().sum();
                    *cell = if header[c].ends_with("_bytes") {
                        format!("{}", total.round() as u64)
                    } else {
                        format!("{total:.1}")
                    };
                }
            } else if let Some(value) = tables
                .iter()
                .filter_map(|t| t.get(r)?.get(c))
                .find(|v| !v.is_empty())
            {
                cell.clone_from(value);
            }
        }
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(out, text).map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(true)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), MergeError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| MergeError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, text + "\n").map_err(|source| MergeError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// What a merge wrote.
#[derive(Debug)]
pub struct Merged {
    pub out: PathBuf,
    pub summary: Summary,
    pub hlog_entries: u64,
}

/// Merges the shard directories `dirs` into the run directory `out`.
pub fn merge(
    out: &Path,
    dirs: &[PathBuf],
    command_line: Vec<String>,
) -> Result<Merged, MergeError> {
    let shards = dirs
        .iter()
        .map(|d| ShardDir::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let shards = check_set(shards)?;
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(bad(
            out,
            "already exists and is not empty: merge into a new directory",
        ));
    }
    let first = &shards[0];
    let variant = first.file.variant.clone();
    let vdir = out.join(&variant);
    std::fs::create_dir_all(&vdir).map_err(|source| MergeError::Write {
        path: vdir.clone(),
        source,
    })?;

    let measurements = shards
        .iter()
        .map(ShardDir::measurement)
        .collect::<Result<Vec<_>, _>>()?;
    let (recording, outcome) = merged_recording(&shards, &variant)?;
    let plan = whole_plan(&first.info);
    let resources = merged_resources(&measurements);
    let partial = shards.iter().any(|s| s.summary.partial);
    let cpus: u32 = measurements
        .iter()
        .map(|m| m.generator_cpus_allowed.unwrap_or(1))
        .sum();
    let files = MeasurementFiles {
        latency_hlog: format!("{variant}/latency.hlog"),
        resources_csv: format!("{variant}/resources.csv"),
        target_log: None,
    };
    let mut measurement = build_measurement(
        &recording,
        &plan,
        &PhaseFacts {
            model: first.info.load.model,
            max_error_rate: first.info.load.max_error_rate.unwrap_or(1.0),
            outcome: &outcome,
            resources: &resources,
            partial,
            generator_cpus_allowed: cpus.max(1),
        },
        files,
    );
    if let Some((s, m)) = shards.iter().zip(&measurements).find(|(_, m)| !m.valid) {
        let why = m.invalid_reason.as_deref().unwrap_or("invalid");
        measurement.valid = false;
        measurement.saturated = false;
        measurement.verdict = "invalid".into();
        let reason = format!(
            "shard {}/{} on {} was invalid: {why}",
            s.file.index, s.file.count, s.file.host
        );
        measurement.invalid_reason = Some(reason.clone());
        measurement.verdict_reason = Some(reason);
    }

    let comment = format!(
        "apibench {} variant {variant}, merged from {} shards ({} model; latency from the {} time, successes untagged; tags: ttfb, errors, send_lag)",
        first.info.scenario.name,
        shards.len(),
        first.info.load.model,
        first.info.load.latency_origin
    );
    let hlog_entries = merge_hlogs(&shards, &variant, &vdir.join("latency.hlog"), &comment)?;
    // The merged recording too: a merged run can itself be checked, or merged again.
    write_json(
        &vdir.join("recording.json"),
        &RecordingState::of(&recording, EngineFigures::from_outcome(&outcome)),
    )?;
    let csvs: Vec<PathBuf> = shards
        .iter()
        .zip(&measurements)
        .map(|(s, m)| s.dir.join(&m.files.resources_csv))
        .collect();
    merge_resources_csv(&csvs, &vdir.join("resources.csv"))?;

    let skews = shard::start_skews_ms(
        &shards
            .iter()
            .map(|s| {
                s.file
                    .clock_offset_ms
                    .map(|o| (o, s.file.clock_offset_resolution_ms.unwrap_or(0.0)))
            })
            .collect::<Vec<_>>(),
    );
    let rows: Vec<ShardRow> = shards
        .iter()
        .zip(&measurements)
        .zip(skews)
        .map(|((s, m), skew)| ShardRow {
            index: s.file.index,
            host: s.file.host.clone(),
            dir: s.dir.display().to_string(),
            requests: m.requests,
            achieved_send_rate_per_sec: m.achieved_send_rate_per_sec,
            send_lag_p99_us: m.send_lag_us.p99,
            generator_cpu_mean_percent: m.generator_cpu_mean_percent,
            valid: m.valid,
            verdict: m.verdict.clone(),
            invalid_reason: m.invalid_reason.clone(),
            first_send_late_us: s.file.first_send_late_us,
            clock_offset_ms: s.file.clock_offset_ms,
            clock_offset_resolution_ms: s.file.clock_offset_resolution_ms,
            start_skew_ms: skew.map(|k| k.0),
            start_skew_resolution_ms: skew.map(|k| k.1),
        })
        .collect();

    let source = first
        .summary
        .variants
        .iter()
        .find(|v| v.name == variant)
        .ok_or_else(|| {
            bad(
                &first.dir,
                format!("no variant `{variant}` in summary.json"),
            )
        })?;
    let finished_at = shards
        .iter()
        .map(|s| s.summary.finished_at.clone())
        .max()
        .unwrap_or_default();
    let summary = Summary {
        schema_version: results::SCHEMA_VERSION,
        scenario: first.summary.scenario.clone(),
        load_model: first.summary.load_model,
        partial,
        repeat: 1,
        started_at: first.summary.started_at.clone(),
        finished_at: finished_at.clone(),
        migration_table: None,
        shards: rows,
        baseline: None,
        variants: vec![VariantSummary {
            name: variant.clone(),
            target_kind: source.target_kind.clone(),
            knobs: source.knobs.clone(),
            load_model: source.load_model,
            latency_origin: source.latency_origin.clone(),
            figures: results::aggregate(std::slice::from_ref(&measurement)),
            repetitions: vec![measurement],
        }],
    };
    let mut info = first.info.clone();
    info.command_line = command_line;
    info.shard = None;
    info.merged_from = shards.iter().map(|s| s.dir.display().to_string()).collect();
    info.finished_at = Some(finished_at);
    info.partial = partial;
    info.load.users = shards.iter().map(|s| s.info.load.users).sum();
    info.load.max_users = info
        .load
        .max_users
        .map(|_| shards.iter().filter_map(|s| s.info.load.max_users).sum());
    info.load.generator_threads = Some(
        shards
            .iter()
            .filter_map(|s| s.info.load.generator_threads)
            .sum(),
    );
    write_json(&out.join("run.json"), &info)?;
    write_json(&out.join("summary.json"), &summary)?;
    // Provenance: each shard's small files, so the merge can be checked or redone by hand.
    for s in &shards {
        let keep = out.join("shards").join(format!("shard-{}", s.file.index));
        std::fs::create_dir_all(&keep).map_err(|source| MergeError::Write {
            path: keep.clone(),
            source,
        })?;
        for name in [SHARD_FILE, "run.json", "summary.json"] {
            let _ = std::fs::copy(s.dir.join(name), keep.join(name));
        }
    }
    if let Err(e) = crate::report::render_dir(out, None) {
        tracing::warn!("the HTML report was not written (re-render with `apibench report`): {e}");
    }
    Ok(Merged {
        out: out.to_path_buf(),
        summary,
        hlog_entries,
    })
}

/// `apibench merge OUT DIR...`: 0 merged, 2 bad input.
pub fn command(args: &MergeArgs) -> CommandOutcome {
    match merge(&args.out, &args.dirs, std::env::args().collect()) {
        Ok(merged) => {
            let mut stdout = crate::output::summary_table(&merged.summary);
            stdout.push_str(&crate::output::shard_table(&merged.summary.shards));
            stdout.push_str(&format!(
                "merged {} shards ({} interval-log entries): {}\n",
                merged.summary.shards.len(),
                merged.hlog_entries,
                merged.out.join("index.html").display()
            ));
            CommandOutcome {
                stdout,
                stderr: String::new(),
                exit_code: 0,
            }
        }
        Err(e) => CommandOutcome::bad_input(e),
    }
}
