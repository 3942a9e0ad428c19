//! `apibench calibrate`: how fast can this generator send on this machine, and how late is it
//! at a given share of that? The answer goes to `calibration.json`, and `apibench run` warns
//! ([`rate_warning`]) when a scenario asks more than [`WARN_SHARE`] of it.
//!
//! The folder:
//! - `mod.rs` (here) — the file's schema ([`Calibration`]), where it lives ([`default_path`]),
//!   [`load`] / [`save`], the run-time warning ([`rate_warning`]) and the closing summary text;
//! - [`run`] — the calibration itself ([`calibrate`]): choose the CPUs, start the server, drive
//!   fixed-rate runs through the ordinary [`crate::runner`], then the send-lag runs;
//! - [`search`] — the pure search for the ceiling (which rate next, given the outcomes so far);
//! - [`hello`] — the trivial hyper server (`200 ok`), pinned to its own CPU;
//! - [`child`] — that server as a child process (`apibench hello-server`) that never outlives
//!   the calibration.
//!
//! The generator is measured through the same runner and verdict as every run, so the ceiling
//! is exactly "the highest rate apibench calls valid here". The library never prints: progress
//! lines go to the caller's callback, the summary is returned as text.

pub mod child;
pub mod hello;
pub mod run;
pub mod search;

pub use run::{CalibrateOptions, Progress, calibrate};
pub use search::LimitedBy;

use crate::engine::workers::CpuList;
use crate::output::format_us;
use crate::results::Environment;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `calibration.json`'s schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// `apibench run` warns above this share of the calibrated ceiling for its CPUs.
pub const WARN_SHARE: f64 = 0.7;

/// The environment variable naming the calibration file.
pub const PATH_ENV: &str = "APIBENCH_CALIBRATION";

/// Why a calibration could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{0}")]
    BadInput(String),
    /// No calibration file there (callers that only want a warning stay silent).
    #[error("no calibration at {path} (make one with `apibench calibrate`)")]
    Missing { path: PathBuf },
    #[error("cannot read the calibration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a calibration file apibench can read: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} has schema_version {found}; this apibench reads {SCHEMA_VERSION} (run `apibench calibrate` again)"
    )]
    Schema { path: PathBuf, found: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
    #[error("calibration run failed: {0}")]
    Run(#[from] crate::runner::RunError),
    #[error("{0}")]
    NoCeiling(String),
    #[error("interrupted; no calibration written")]
    Interrupted,
}

impl CalibrateError {
    /// The CLI's exit code: 2 bad input, 3 failed, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        use crate::runner::{EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED};
        match self {
            CalibrateError::BadInput(_)
            | CalibrateError::Missing { .. }
            | CalibrateError::Parse { .. }
            | CalibrateError::Schema { .. } => EXIT_BAD_INPUT,
            CalibrateError::Run(e) => e.exit_code(),
            CalibrateError::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_RUN_FAILED,
        }
    }
}

/// The machine a calibration was made on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: Option<String>,
    pub cpu_model: Option<String>,
    /// CPUs available to the process (`available_parallelism`).
    pub logical_cpus: usize,
    pub kernel: Option<String>,
}

impl From<&Environment> for Machine {
    fn from(env: &Environment) -> Machine {
        Machine {
            hostname: env.hostname.clone(),
            cpu_model: env.cpu_model.clone(),
            logical_cpus: env.cpu_count,
            kernel: env.kernel.clone(),
        }
    }
}

impl Machine {
    /// This machine.
    pub fn current() -> Machine {
        Machine::from(&crate::environment::collect())
    }

    /// Same host name and CPU model (what is unknown on either side does not count as different).
    pub fn same_as(&self, other: &Machine) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        agree(&self.hostname, &other.hostname) && agree(&self.cpu_model, &other.cpu_model)
    }
}

/// One run of the calibration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `search` (looking for the ceiling) or `lag` (send lag at a share of it).
    pub purpose: String,
    pub target_rate_per_sec: f64,
    pub achieved_send_rate_per_sec: f64,
    pub goodput_rps: Option<f64>,
    /// How the search read it: `pass`, `saturated`, `generator_bound` or `server_limited`.
    pub outcome: String,
    /// The run's verdict (`valid`, `saturated`, `invalid`) and its reason.
    pub verdict: String,
    pub verdict_reason: Option<String>,
    pub send_lag_p50_us: u64,
    pub send_lag_p99_us: u64,
    pub latency_p99_us: u64,
    /// The generator's mean CPU as a share of the CPUs the process may use.
    pub generator_cpu_share: Option<f64>,
    /// The hello server's mean CPU over the whole run, as a share of one core.
    pub server_cpu_share: Option<f64>,
    /// The run's directory under `--keep-runs`; `None` when the runs were not kept.
    pub run_dir: Option<String>,
}

/// Send lag at a share of the ceiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagPoint {
    pub share: f64,
    pub rate_per_sec: f64,
    pub send_lag_p50_us: u64,
    pub send_lag_p99_us: u64,
    pub verdict: String,
}

/// `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema_version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub apibench_version: String,
    pub git_commit: Option<String>,
    /// `release` or `debug`: a debug build's ceiling says nothing about a release build's.
    pub build_profile: String,
    pub machine: Machine,
    pub server_cpu: usize,
    pub generator_cpus: CpuList,
    pub generator_threads: u32,
    /// The generator shared its CPU(s) with the server (a 1-CPU machine, or on request): the
    /// ceiling is lower than it would be alone.
    pub shared_cpu: bool,
    /// Made with `--quick` (shorter runs, coarser resolution).
    pub quick: bool,
    /// The highest rate the generator sustained (a valid run) on `generator_cpus`.
    pub ceiling_rps: f64,
    /// `ceiling_rps / generator_cpus`.
    pub ceiling_per_core_rps: f64,
    /// What stopped the search: `generator` (the ceiling is the generator's), `server` or
    /// `max_rate` (the generator's ceiling is at least `ceiling_rps`).
    pub limited_by: LimitedBy,
    /// Lowest failing rate − ceiling, when the search bracketed it.
    pub resolution_rps: Option<f64>,
    pub steps: Vec<Step>,
    /// Send lag at 25, 50 and 75 % of the ceiling.
    pub lag_at: Vec<LagPoint>,
    pub duration_ms: u64,
    /// The machine's 1-minute load average before and after: other work competes with the
    /// generator and lowers the ceiling.
    #[serde(default)]
    pub load_average_1m_before: Option<f64>,
    #[serde(default)]
    pub load_average_1m_after: Option<f64>,
    /// Anything a reader should know (shared CPU, a debug build, …).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where [`load`] read it from (not in the file).
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
}

impl Calibration {
    /// The ceiling is a lower bound (the server or `--max-rate` stopped the search first).
    pub fn is_lower_bound(&self) -> bool {
        self.limited_by != LimitedBy::Generator
    }
}

/// Where the calibration lives: `$APIBENCH_CALIBRATION`, else
/// `$XDG_CACHE_HOME/apibench/calibration.json`, else `~/.cache/apibench/calibration.json`.
pub fn default_path() -> Option<PathBuf> {
    path_from_env(|name| std::env::var_os(name))
}

fn path_from_env(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = set(PATH_ENV) {
        return Some(path);
    }
    // The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored.
    if let Some(cache) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(cache.join("apibench").join("calibration.json"));
    }
    set("HOME").map(|home| {
        home.join(".cache")
            .join("apibench")
            .join("calibration.json")
    })
}

/// Reads a calibration; [`CalibrateError::Missing`] when there is no file.
pub fn load(path: &Path) -> Result<Calibration, CalibrateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CalibrateError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(CalibrateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // The version first, so a newer file says so instead of failing on a field.
    #[derive(Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let version: Version =
        serde_json::from_slice(&bytes).map_err(|source| CalibrateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    if version.schema_version != SCHEMA_VERSION {
        return Err(CalibrateError::Schema {
            path: path.to_path_buf(),
            found: version.schema_version,
        });
    }
    let mut calibration: Calibration =
        serde_json::from_slice(&bytes).map_err(|source| CalibrateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    calibration.loaded_from = Some(path.to_path_buf());
    Ok(calibration)
}

/// The calibration at [`default_path`], if there is one. `Ok(None)` when there is no path or no
/// file; an unreadable file is an error (the caller decides whether to say so).
pub fn load_latest() -> Result<Option<Calibration>, CalibrateError> {
    let Some(path) = default_path() else {
        return Ok(None);
    };
    match load(&path) {
        Ok(calibration) => Ok(Some(calibration)),
        Err(CalibrateError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `calibration` to `path` atomically (a temporary file in the same folder, then a
/// rename), creating the folder.
pub fn save(calibration: &Calibration, path: &Path) -> Result<(), CalibrateError> {
    let write_error = |source| CalibrateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let text = serde_json::to_string_pretty(calibration)
        .map_err(|e| write_error(std::io::Error::other(e)))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    if let Err(e) = std::fs::write(&temporary, text + "\n") {
        let _ = std::fs::remove_file(&temporary);
        return Err(write_error(e));
    }
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        write_error(e)
    })
}

/// The warning `apibench run` prints when `target_rate_per_sec` exceeds [`WARN_SHARE`] of the
/// calibrated ceiling for `generator_cpus` CPUs; `None` below it.
pub fn rate_warning(
    calibration: &Calibration,
    target_rate_per_sec: f64,
    generator_cpus: usize,
) -> Option<String> {
    rate_warning_on(
        calibration,
        target_rate_per_sec,
        generator_cpus,
        &Machine::current(),
    )
}

/// [`rate_warning`] with the current machine given (pure).
pub fn rate_warning_on(
    calibration: &Calibration,
    target_rate_per_sec: f64,
    generator_cpus: usize,
    here: &Machine,
) -> Option<String> {
    let cpus = generator_cpus.max(1);
    let ceiling = calibration.ceiling_per_core_rps * cpus as f64;
    if !ceiling.is_finite() || ceiling <= 0.0 || target_rate_per_sec <= WARN_SHARE * ceiling {
        return None;
    }
    let file = calibration.loaded_from.as_ref().map_or_else(
        || "the calibration".to_string(),
        |p| p.display().to_string(),
    );
    let date = calibration
        .created_at
        .split('T')
        .next()
        .unwrap_or(&calibration.created_at);
    let mut text = format!(
        "the target rate {} is {:.0} % of the generator's calibrated ceiling for {cpus} CPU{} \
         ({}{}, {file} of {date}); above {:.0} % its own send lag grows and the run may be \
         judged generator-bound. Give the generator more CPUs (--generator-cpus, e.g. on a \
         larger machine) or lower the rate.",
        per_sec(target_rate_per_sec),
        100.0 * target_rate_per_sec / ceiling,
        if cpus == 1 { "" } else { "s" },
        if calibration.is_lower_bound() {
            "at least "
        } else {
            ""
        },
        per_sec(ceiling),
        100.0 * WARN_SHARE,
    );
    if !calibration.machine.same_as(here) {
        let _ = write!(
            text,
            " (The calibration was made on another machine: {}, {}; run `apibench calibrate` here.)",
            calibration
                .machine
                .hostname
                .as_deref()
                .unwrap_or("unknown host"),
            calibration
                .machine
                .cpu_model
                .as_deref()
                .unwrap_or("unknown CPU"),
        );
    }
    Some(text)
}

/// `31 300/s`: a rate as the rest of the CLI writes it ([`crate::output::format_rate`]).
pub fn per_sec(rate: f64) -> String {
    format!("{}/s", crate::output::format_rate(rate))
}

/// The closing summary (for stdout): the ceiling per core, the lag table, the file.
pub fn summary_text(calibration: &Calibration, path: &Path) -> String {
    let c = calibration;
    let cpus = c.generator_cpus.len().max(1);
    let mut out = String::new();
    let bound = if c.is_lower_bound() { "≥ " } else { "" };
    let _ = writeln!(
        out,
        "generator ceiling: {bound}{} per core ({bound}{} on {cpus} CPU{} [{}], server on CPU {})",
        per_sec(c.ceiling_per_core_rps),
        per_sec(c.ceiling_rps),
        if cpus == 1 { "" } else { "s" },
        c.generator_cpus,
        c.server_cpu,
    );
    match c.limited_by {
        LimitedBy::Generator => {
            if let Some(resolution) = c.resolution_rps {
                let _ = writeln!(
                    out,
                    "  limited by the generator (next failing rate {} higher)",
                    per_sec(resolution)
                );
            }
        }
        LimitedBy::Server => {
            let _ = writeln!(
                out,
                "  limited by the hello server, not the generator: the ceiling is a lower bound"
            );
        }
        LimitedBy::MaxRate => {
            let _ = writeln!(
                out,
                "  every rate up to --max-rate passed: the ceiling is a lower bound"
            );
        }
    }
    let _ = writeln!(
        out,
        "{:>6}  {:>12}  {:>13}  {:>13}  verdict",
        "share", "rate", "send-lag p50", "send-lag p99"
    );
    for point in &c.lag_at {
        let _ = writeln!(
            out,
            "{:>5.0} %  {:>12}  {:>13}  {:>13}  {}",
            100.0 * point.share,
            per_sec(point.rate_per_sec),
            format_us(point.send_lag_p50_us),
            format_us(point.send_lag_p99_us),
            point.verdict
        );
    }
    for note in &c.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "apibench run warns above {:.0} % of this; calibration: {}",
        100.0 * WARN_SHARE,
        path.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            hostname: Some("bench-1".into()),
            cpu_model: Some("Example CPU @ 3.0GHz".into()),
            logical_cpus: 2,
            kernel: Some("6.1.0".into()),
        }
    }

    fn calibration() -> Calibration {
        Calibration {
            schema_version: SCHEMA_VERSION,
            created_at: "2025-03-04T05:06:07.000Z".into(),
            apibench_version: "0.1.0".into(),
            git_commit: None,
            build_profile: "release".into(),
            machine: machine(),
            server_cpu: 0,
            generator_cpus: CpuList::new(vec![1]),
            generator_threads: 1,
            shared_cpu: false,
            quick: false,
            ceiling_rps: 30_000.0,
            ceiling_per_core_rps: 30_000.0,
            limited_by: LimitedBy::Generator,
            resolution_rps: Some(1_300.0),
            steps: Vec::new(),
            lag_at: Vec::new(),
            duration_ms: 45_000,
            load_average_1m_before: Some(0.1),
            load_average_1m_after: Some(0.9),
            notes: Vec::new(),
            loaded_from: Some(PathBuf::from("/home/me/.cache/apibench/calibration.json")),
        }
    }

    #[test]
    fn no_warning_at_or_below_seventy_percent_of_the_ceiling_for_the_cpus() {
        let c = calibration();
        assert_eq!(rate_warning_on(&c, 21_000.0, 1, &machine()), None);
        assert_eq!(rate_warning_on(&c, 5_000.0, 1, &machine()), None);
        // Two generator CPUs: 70 % of 60 000/s.
        assert_eq!(rate_warning_on(&c, 40_000.0, 2, &machine()), None);
    }

    #[test]
    fn a_warning_above_seventy_percent_names_rate_ceiling_file_date_and_the_way_out() {
        let c = calibration();
        let text = rate_warning_on(&c, 25_000.0, 1, &machine()).expect("a warning");
        for needle in [
            "25 000/s",
            "83 %",
            "1 CPU ",
            "30 000/s",
            "/home/me/.cache/apibench/calibration.json",
            "2025-03-04",
            "--generator-cpus",
            "lower the rate",
        ] {
            assert!(text.contains(needle), "`{needle}` missing from: {text}");
        }
        assert!(!text.contains("another machine"), "{text}");
        let text = rate_warning_on(&c, 50_000.0, 2, &machine()).expect("a warning");
        assert!(text.contains("2 CPUs (60 000/s"), "{text}");
        // Zero CPUs (unknown) counts as one.
        assert!(rate_warning_on(&c, 25_000.0, 0, &machine()).is_some());
    }

    #[test]
    fn a_calibration_from_another_machine_still_warns_and_says_so() {
        let c = calibration();
        let elsewhere = Machine {
            hostname: Some("laptop".into()),
            ..machine()
        };
        let text = rate_warning_on(&c, 25_000.0, 1, &elsewhere).expect("a warning");
        assert!(text.contains("another machine: bench-1"), "{text}");
        let other_cpu = Machine {
            cpu_model: Some("Other CPU".into()),
            ..machine()
        };
        assert!(
            rate_warning_on(&c, 25_000.0, 1, &other_cpu)
                .is_some_and(|t| t.contains("Example CPU @ 3.0GHz"))
        );
        // Below the threshold nothing is said, whatever the machine.
        assert_eq!(rate_warning_on(&c, 1_000.0, 1, &elsewhere), None);
    }

    #[test]
    fn a_lower_bound_ceiling_says_at_least() {
        let c = Calibration {
            limited_by: LimitedBy::Server,
            ..calibration()
        };
        let text = rate_warning_on(&c, 25_000.0, 1, &machine()).expect("a warning");
        assert!(text.contains("at least 30 000/s"), "{text}");
    }

    #[test]
    fn the_default_path_follows_the_env_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            path_from_env(env(&[
                (PATH_ENV, "/tmp/c.json"),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/tmp/c.json"))
        );
        assert_eq!(
            path_from_env(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/apibench/calibration.json"))
        );
        assert_eq!(
            path_from_env(env(&[
                (PATH_ENV, ""),
                ("XDG_CACHE_HOME", "relative"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/h/.cache/apibench/calibration.json"))
        );
        assert_eq!(path_from_env(env(&[])), None);
    }

    #[test]
    fn save_then_load_round_trips_and_load_names_the_file_on_error() {
        let dir = std::env::temp_dir().join(format!("apibench-cal-unit-{}", std::process::id()));
        let path = dir.join("nested").join("calibration.json");
        let mut c = calibration();
        c.loaded_from = None;
        save(&c, &path).expect("saved");
        let back = load(&path).expect("loads");
        assert_eq!(back.loaded_from.as_deref(), Some(path.as_path()));
        assert_eq!(
            Calibration {
                loaded_from: None,
                ..back
            },
            c
        );
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        let missing = dir.join("none.json");
        assert!(matches!(
            load(&missing),
            Err(CalibrateError::Missing { .. })
        ));
        std::fs::write(&missing, "{\"schema_version\": 1, \"created_at\": 3}").expect("write");
        let err = load(&missing).expect_err("bad file");
        assert!(err.to_string().contains("none.json"), "{err}");
        assert_eq!(err.exit_code(), crate::runner::EXIT_BAD_INPUT);
        std::fs::write(&missing, "{\"schema_version\": 7}").expect("write");
        assert!(
            matches!(load(&missing), Err(CalibrateError::Schema { found: 7, .. })),
            "a newer file says so"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rates_print_with_thousands_separated() {
        assert_eq!(per_sec(31_300.4), "31 300/s");
        assert_eq!(per_sec(999.0), "999/s");
        assert_eq!(per_sec(1_000_000.0), "1 000 000/s");
    }
}
