//! The calibration itself: choose the CPUs, start the hello server on its own (as a child
//! process), search for the generator's ceiling with short fixed-rate runs through the ordinary
//! [`crate::runner`], measure the send lag at 25 / 50 / 75 % of it, write the file.
//!
//! Every run is a real `apibench run` of a generated one-request scenario, so the verdict that
//! decides "valid" here is the one every user run gets. It must never leave the server running
//! or the temporary run folders behind (unless `--keep-runs`).

use super::child::HelloChild;
use super::search::{LimitedBy, Outcome, Search, SearchPlan};
use super::{CalibrateError, Calibration, LagPoint, Machine, SCHEMA_VERSION, Step, per_sec};
use crate::engine::workers::CpuList;
use crate::output;
use crate::results::Measurement;
use crate::runner::{self, RunOptions};
use crate::sampler::{Sampler, Watched};
use crate::verdict::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The lowest rate the search tries before giving up.
pub const MIN_RATE_PER_SEC: f64 = 100.0;
/// The shares of the ceiling where the send lag is measured.
pub const LAG_SHARES: [f64; 3] = [0.25, 0.5, 0.75];
/// At or above this share of its core the hello server, not the generator, is taken to be the
/// limit of a run that was invalid for a reason other than the generator.
const SERVER_BUSY_SHARE: f64 = 0.85;

/// Receives one progress line per step (the binary prints them to stderr).
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// What `apibench calibrate` was asked to do.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// The `apibench` binary to start as `hello-server` (the running one, or a test's
    /// `CARGO_BIN_EXE_apibench`).
    pub server_program: PathBuf,
    /// The server's CPU [default: the first this process may use].
    pub server_cpu: Option<usize>,
    /// The generator's CPUs [default: the others this process may use; the server's on a
    /// 1-CPU machine].
    pub generator_cpus: Option<CpuList>,
    /// Shorter runs and a coarser resolution (≤ ~25 s).
    pub quick: bool,
    pub start_rate_per_sec: f64,
    pub max_rate_per_sec: f64,
    /// Where `calibration.json` is written.
    pub out: PathBuf,
    /// Keep every run's result folder here (else a temporary folder, removed at the end).
    pub keep_runs: Option<PathBuf>,
    pub progress: Option<Progress>,
}

impl Default for CalibrateOptions {
    fn default() -> CalibrateOptions {
        CalibrateOptions {
            server_program: PathBuf::new(),
            server_cpu: None,
            generator_cpus: None,
            quick: false,
            start_rate_per_sec: 5_000.0,
            max_rate_per_sec: 1_000_000.0,
            out: PathBuf::new(),
            keep_runs: None,
            progress: None,
        }
    }
}

/// How long each run is and how fine the search goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub warmup: Duration,
    pub measured: Duration,
    pub resolution: f64,
    pub max_search_steps: usize,
}

impl Pace {
    /// Default: ~40–60 s in all. Quick: ≤ ~25 s.
    pub fn new(quick: bool) -> Pace {
        if quick {
            Pace {
                warmup: Duration::from_millis(500),
                measured: Duration::from_secs(1),
                resolution: 0.10,
                max_search_steps: 7,
            }
        } else {
            Pace {
                warmup: Duration::from_secs(1),
                measured: Duration::from_secs(2),
                resolution: 0.05,
                max_search_steps: 10,
            }
        }
    }
}

/// Where the server and the generator run.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub server_cpu: usize,
    pub generator_cpus: CpuList,
    /// The generator shares a CPU with the server.
    pub shared: bool,
}

/// Chooses the CPUs from the ones this process may use (`allowed`, ascending). A CPU named
/// that is not allowed is bad input.
pub fn place(
    allowed: &[usize],
    server_cpu: Option<usize>,
    generator_cpus: Option<&CpuList>,
) -> Result<Placement, CalibrateError> {
    let allowed_list = CpuList::new(allowed.to_vec());
    let not_allowed = |what: &str, cpu: usize| {
        CalibrateError::BadInput(format!(
            "{what}: CPU {cpu} is not one this process may use ({allowed_list})"
        ))
    };
    let Some(&first) = allowed.first() else {
        return Err(CalibrateError::BadInput(
            "this process may use no CPU at all (sched_getaffinity is empty)".into(),
        ));
    };
    let server_cpu = server_cpu.unwrap_or(first);
    if !allowed.contains(&server_cpu) {
        return Err(not_allowed("--server-cpu", server_cpu));
    }
    let generator_cpus = match generator_cpus {
        Some(list) => {
            if let Some(&cpu) = list.cpus().iter().find(|c| !allowed.contains(c)) {
                return Err(not_allowed("--generator-cpus", cpu));
            }
            if list.is_empty() {
                return Err(CalibrateError::BadInput(
                    "--generator-cpus names no CPU".into(),
                ));
            }
            list.clone()
        }
        None => {
            let others: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|&c| c != server_cpu)
                .collect();
            if others.is_empty() {
                CpuList::new(vec![server_cpu])
            } else {
                CpuList::new(others)
            }
        }
    };
    let shared = generator_cpus.cpus().contains(&server_cpu);
    Ok(Placement {
        server_cpu,
        generator_cpus,
        shared,
    })
}

/// The CPUs this process may run on, ascending.
fn allowed_cpus() -> Vec<usize> {
    crate::placement::allowed_cpus().cpus().to_vec()
}

/// The one-request scenario a calibration run follows.
pub fn scenario_toml(url: &str, rate_per_sec: f64, pace: &Pace) -> String {
    // Users: the hello server answers in ~100 µs, so Little's law needs few users even at
    // 100 000/s (≈ 10–30 with the generator's own overhead); 64 start (one connection each,
    // opened during the warm-up) and up to 1 024 may, so users never run out before the
    // generator does. (256 did not: at 60 000/s on the development VM some answers stall for
    // 5–10 ms — p99 5–10 ms, oha's p99 7.3 ms at the same rate — and a 5 ms stall holds ~300
    // users. Measured 2026-11-27 with a healthy generator, 74–82 % CPU: 5 of 7 runs with 256
    // invalid, 4 of them for users exhausted alone; 2 of 2 with 1 024 valid.)
    format!(
        r#"# Generated by `apibench calibrate`.
name = "calibrate"
description = "the generator against the hello server at a fixed rate"
[load]
model = "open"
rate_per_sec = {rate}
users = 64
max_users = 1024
duration = "{measured}ms"
warmup = "{warmup}ms"
timeout = "1s"
[http]
accept_encoding = "none"
[target]
kind = "url"
url = "{url}"
[[requests]]
name = "root"
path = "/"
"#,
        rate = rate_per_sec.round().max(1.0) as u64,
        measured = pace.measured.as_millis(),
        warmup = pace.warmup.as_millis(),
    )
}

/// How the search reads a run's figures. `server_cpu_share`: the hello server's CPU over the
/// run, as a share of one core, when known.
pub fn classify(m: &Measurement, server_cpu_share: Option<f64>) -> Outcome {
    match output::verdict_state(m) {
        State::Valid => Outcome::Pass,
        // A backlog behind a server with CPU to spare is a stall of the server (this VM's hello
        // server pauses for milliseconds now and then), not its ceiling; the generator was
        // healthy — a saturated verdict says so — so for the generator's ceiling the run passed
        // and the search goes on. Behind a busy server, or one whose CPU is unknown, the server
        // is the limit from here.
        State::Saturated if server_cpu_share.is_some_and(|s| s < SERVER_BUSY_SHARE) => {
            Outcome::Pass
        }
        State::Saturated => Outcome::Saturated,
        State::Invalid => {
            let generator_bound =
                output::verdict_reason(m).is_some_and(|r| r.contains("generator-bound"));
            // Users exhausted or errors behind a busy server: the server's limit. With the
            // server idle, whatever went wrong was the client's.
            let server_busy = server_cpu_share.is_some_and(|s| s >= SERVER_BUSY_SHARE);
            if !generator_bound && server_busy {
                Outcome::ServerLimited
            } else {
                Outcome::GeneratorBound {
                    achieved_rate_per_sec: m.achieved_send_rate_per_sec,
                }
            }
        }
    }
}

/// Below this generator CPU share a failed search run is run once more before it counts.
pub const CONFIRM_BELOW_CPU_SHARE: f64 = 0.8;

/// A failure with the generator's CPU below [`CONFIRM_BELOW_CPU_SHARE`]: a stall, until repeated.
pub fn is_transient_failure(outcome: Outcome, generator_cpu_share: Option<f64>) -> bool {
    matches!(
        outcome,
        Outcome::GeneratorBound { .. } | Outcome::ServerLimited
    ) && generator_cpu_share.is_some_and(|c| c < CONFIRM_BELOW_CPU_SHARE)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Saturated => "saturated",
        Outcome::GeneratorBound { .. } => "generator_bound",
        Outcome::ServerLimited => "server_limited",
    }
}

/// One progress line: rate, verdict, sent/s, lag p99.
pub fn step_line(index: usize, step: &Step) -> String {
    let mut line = format!(
        "calibrate: {index:>2} {:<6} {:>10}: {:<9} sent {:>10}, send-lag p50 {} p99 {}",
        step.purpose,
        per_sec(step.target_rate_per_sec),
        step.verdict,
        per_sec(step.achieved_send_rate_per_sec),
        output::format_us(step.send_lag_p50_us),
        output::format_us(step.send_lag_p99_us),
    );
    if let Some(share) = step.generator_cpu_share {
        line += &format!(", generator CPU {:.0} %", 100.0 * share);
    }
    if let Some(share) = step.server_cpu_share {
        line += &format!(", server CPU {:.0} %", 100.0 * share);
    }
    if step.verdict != "valid"
        && let Some(reason) = &step.verdict_reason
    {
        line += &format!(" — {reason}");
    }
    line
}

/// Removes a temporary folder on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The state shared by every run of one calibration.
struct Session<'a> {
    options: &'a CalibrateOptions,
    pace: Pace,
    placement: &'a Placement,
    server: &'a HelloChild,
    url: String,
    runs_dir: &'a Path,
    keep: bool,
    steps: Vec<Step>,
}

impl Session<'_> {
    fn say(&self, line: &str) {
        if let Some(progress) = &self.options.progress {
            (progress.0)(line);
        }
    }

    /// One fixed-rate run; `None` when interrupted.
    async fn run_at(
        &mut self,
        purpose: &str,
        rate_per_sec: f64,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Option<(Step, Outcome)>, CalibrateError> {
        let index = self.steps.len() + 1;
        let name = format!("{index:02}-{purpose}-{}", rate_per_sec.round() as u64);
        let dir = self.runs_dir.join(&name);
        let scenario = self.runs_dir.join(format!("{name}.toml"));
        std::fs::write(
            &scenario,
            scenario_toml(&self.url, rate_per_sec, &self.pace),
        )
        .map_err(|source| CalibrateError::Write {
            path: scenario.clone(),
            source,
        })?;
        // The server's CPU over the run, from its own sampler (the runner sees a url target).
        let server_sampler = Sampler::start(
            Watched {
                target_pid: Some(self.server.pid()),
                postgres_pid: None,
                cpus: None,
            },
            None,
        )
        .ok();
        let generator_threads =
            u32::try_from(self.placement.generator_cpus.len().max(1)).unwrap_or(u32::MAX);
        let report = runner::run(
            RunOptions {
                scenario: scenario.clone(),
                out: Some(dir.clone()),
                quiet: true,
                repeat: 1,
                generator_threads: Some(generator_threads),
                generator_cpus: Some(self.placement.generator_cpus.clone()),
                // Measuring the ceiling: an older calibration has nothing to say about it.
                ignore_calibration: true,
                duration: None,
                command_line: vec![
                    "apibench".into(),
                    "calibrate".into(),
                    format!("(step {index}: {purpose} at {rate_per_sec}/s)"),
                ],
                ..RunOptions::default()
            },
            cancel.clone(),
        )
        .await;
        let server_cpu_share = server_sampler
            .map(Sampler::stop)
            .and_then(|s| s.target_cpu_mean_percent)
            .map(|percent| percent.round() / 100.0);
        let report = report?;
        if report.interrupted || *cancel.borrow() {
            return Ok(None);
        }
        let Some(variant) = report.summary.variants.first() else {
            return Err(CalibrateError::NoCeiling(format!(
                "the run at {} produced no figures (see {})",
                per_sec(rate_per_sec),
                dir.display()
            )));
        };
        let m = &variant.figures;
        let outcome = classify(m, server_cpu_share);
        let step = Step {
            purpose: purpose.to_string(),
            target_rate_per_sec: rate_per_sec,
            achieved_send_rate_per_sec: m.achieved_send_rate_per_sec,
            goodput_rps: m.goodput_rps,
            outcome: outcome_name(outcome).to_string(),
            verdict: m.verdict.clone(),
            verdict_reason: m.verdict_reason.clone(),
            send_lag_p50_us: m.send_lag_us.p50,
            send_lag_p99_us: m.send_lag_us.p99,
            latency_p99_us: m.latency_us.p99,
            generator_cpu_share: m.generator_cpu_share,
            server_cpu_share,
            run_dir: self.keep.then(|| dir.display().to_string()),
        };
        self.say(&step_line(index, &step));
        self.steps.push(step.clone());
        Ok(Some((step, outcome)))
    }
}

/// Calibrates the generator on this machine and writes `options.out`. Ctrl-C (`cancel` turning
/// true) stops at once with [`CalibrateError::Interrupted`]; the server is stopped on every path.
pub async fn calibrate(
    options: CalibrateOptions,
    cancel: watch::Receiver<bool>,
) -> Result<Calibration, CalibrateError> {
    let started = Instant::now();
    let load_average_before = load_average_1m();
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if !options.max_rate_per_sec.is_finite() || options.max_rate_per_sec < MIN_RATE_PER_SEC {
        return Err(CalibrateError::BadInput(format!(
            "--max-rate must be at least {MIN_RATE_PER_SEC}/s"
        )));
    }
    if !options.start_rate_per_sec.is_finite() || options.start_rate_per_sec < MIN_RATE_PER_SEC {
        return Err(CalibrateError::BadInput(format!(
            "--start-rate must be at least {MIN_RATE_PER_SEC}/s"
        )));
    }
    let pace = Pace::new(options.quick);
    let placement = place(
        &allowed_cpus(),
        options.server_cpu,
        options.generator_cpus.as_ref(),
    )?;

    let (runs_dir, _temporary) = match &options.keep_runs {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "apibench-calibrate-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            (dir.clone(), Some(TempDir(dir)))
        }
    };
    std::fs::create_dir_all(&runs_dir).map_err(|e| {
        CalibrateError::BadInput(format!("cannot create {}: {e}", runs_dir.display()))
    })?;

    let program = options.server_program.clone();
    let server_cpu = placement.server_cpu;
    let server = tokio::task::spawn_blocking(move || HelloChild::start(&program, Some(server_cpu)))
        .await
        .map_err(|e| CalibrateError::Server(format!("starting the hello server: {e}")))??;

    let mut session = Session {
        options: &options,
        pace,
        placement: &placement,
        server: &server,
        url: format!("http://{}", server.addr),
        runs_dir: &runs_dir,
        keep: options.keep_runs.is_some(),
        steps: Vec::new(),
    };
    let mut notes = Vec::new();
    if placement.shared {
        notes.push(format!(
            "the generator shared CPU {} with the server: its ceiling alone is higher",
            placement.server_cpu
        ));
    }
    if cfg!(debug_assertions) {
        notes.push(
            "a debug build: its ceiling is far below a release build's (cargo build --release)"
                .to_string(),
        );
    }
    session.say(&format!(
        "calibrate: hello server on CPU {} ({}), generator on CPU{} {} ({} thread{}); {} + {} per run",
        placement.server_cpu,
        session.url,
        if placement.generator_cpus.len() == 1 { "" } else { "s" },
        placement.generator_cpus,
        placement.generator_cpus.len(),
        if placement.generator_cpus.len() == 1 { "" } else { "s" },
        humantime(pace.warmup),
        humantime(pace.measured),
    ));

    let mut search = Search::new(SearchPlan {
        start_rate_per_sec: options.start_rate_per_sec,
        min_rate_per_sec: MIN_RATE_PER_SEC,
        max_rate_per_sec: options.max_rate_per_sec,
        resolution: pace.resolution,
        max_steps: pace.max_search_steps,
    });
    while let Some(rate) = search.next_rate() {
        let Some((step, mut outcome)) = session.run_at("search", rate, &cancel).await? else {
            return Err(CalibrateError::Interrupted);
        };
        // A run that failed while the generator had CPU to spare met a passing stall (on a
        // shared VM, a few ms now and then), not the generator's capacity: once more decides.
        if is_transient_failure(outcome, step.generator_cpu_share) {
            let Some((_, again)) = session.run_at("search", rate, &cancel).await? else {
                return Err(CalibrateError::Interrupted);
            };
            outcome = again;
        }
        search.record(rate, outcome);
    }
    let found = search.result();
    let Some(ceiling) = found.ceiling_rate_per_sec else {
        let last = session.steps.last();
        return Err(CalibrateError::NoCeiling(format!(
            "no rate down to {} was valid: {}",
            per_sec(last.map_or(MIN_RATE_PER_SEC, |s| s.target_rate_per_sec)),
            last.and_then(|s| s.verdict_reason.clone())
                .unwrap_or_else(|| "nothing ran".into())
        )));
    };
    if found.limited_by == LimitedBy::Server {
        notes.push(format!(
            "the hello server on CPU {} could not keep up above {}: the generator's ceiling is at least this",
            placement.server_cpu,
            per_sec(ceiling)
        ));
    }

    let mut lag_at = Vec::new();
    for share in LAG_SHARES {
        let rate = (share * ceiling).round().max(1.0);
        let Some((step, _)) = session.run_at("lag", rate, &cancel).await? else {
            return Err(CalibrateError::Interrupted);
        };
        lag_at.push(LagPoint {
            share,
            rate_per_sec: rate,
            send_lag_p50_us: step.send_lag_p50_us,
            send_lag_p99_us: step.send_lag_p99_us,
            verdict: step.verdict,
        });
    }
    let steps = std::mem::take(&mut session.steps);
    drop(session);
    drop(server);
    let load_average_after = load_average_1m();
    let invalid_below: Vec<String> = lag_at
        .iter()
        .filter(|p| p.verdict == State::Invalid.as_str())
        .map(|p| format!("{:.0} %", 100.0 * p.share))
        .collect();
    if !invalid_below.is_empty() {
        notes.push(format!(
            "the run(s) at {} of the ceiling were invalid too, so the ceiling is not sharp: a busy \
             machine (load average {} before, {} after) or a generator whose lag does not fall \
             with the rate; steps[] has each reason — calibrate again on a quiet machine",
            invalid_below.join(", "),
            load_average_before.map_or_else(|| "?".into(), |l| format!("{l:.2}")),
            load_average_after.map_or_else(|| "?".into(), |l| format!("{l:.2}")),
        ));
    }

    let environment = crate::environment::collect();
    let cpus = placement.generator_cpus.len().max(1);
    let calibration = Calibration {
        schema_version: SCHEMA_VERSION,
        created_at,
        apibench_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: environment.git_commit.clone(),
        build_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        machine: Machine::from(&environment),
        server_cpu: placement.server_cpu,
        generator_cpus: placement.generator_cpus.clone(),
        generator_threads: u32::try_from(cpus).unwrap_or(u32::MAX),
        shared_cpu: placement.shared,
        quick: options.quick,
        ceiling_rps: ceiling,
        ceiling_per_core_rps: ceiling / cpus as f64,
        limited_by: found.limited_by,
        resolution_rps: found.resolution_rps(),
        steps,
        lag_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        load_average_1m_before: load_average_before,
        load_average_1m_after: load_average_after,
        notes,
        loaded_from: None,
    };
    super::save(&calibration, &options.out)?;
    Ok(Calibration {
        loaded_from: Some(options.out.clone()),
        ..calibration
    })
}

/// The 1-minute load average (`/proc/loadavg`), if readable.
fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `1s`, `500ms`.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_takes_the_first_allowed_cpu_and_the_generator_the_rest() {
        let p = place(&[0, 1, 2, 3], None, None).expect("placed");
        assert_eq!(p.server_cpu, 0);
        assert_eq!(p.generator_cpus.cpus(), [1, 2, 3]);
        assert!(!p.shared);
        // Under `taskset -c 2,3`.
        let p = place(&[2, 3], None, None).expect("placed");
        assert_eq!((p.server_cpu, p.generator_cpus.cpus()), (2, &[3][..]));
        let p = place(&[0, 1, 2], Some(1), None).expect("placed");
        assert_eq!(p.generator_cpus.cpus(), [0, 2]);
    }

    #[test]
    fn one_cpu_is_shared_and_said_so() {
        let p = place(&[0], None, None).expect("placed");
        assert_eq!((p.server_cpu, p.generator_cpus.cpus()), (0, &[0][..]));
        assert!(p.shared);
        let p = place(&[0, 1], None, Some(&CpuList::new(vec![0, 1]))).expect("placed");
        assert!(p.shared);
    }

    #[test]
    fn cpus_outside_the_affinity_mask_are_bad_input() {
        let err = place(&[0, 1], Some(5), None).expect_err("not allowed");
        assert!(err.to_string().contains("--server-cpu: CPU 5"), "{err}");
        assert_eq!(err.exit_code(), crate::runner::EXIT_BAD_INPUT);
        let err = place(&[0, 1], None, Some(&CpuList::new(vec![1, 7]))).expect_err("no");
        assert!(err.to_string().contains("--generator-cpus: CPU 7"), "{err}");
        assert!(err.to_string().contains("(0-1)"), "{err}");
    }

    #[test]
    fn the_generated_scenario_loads() {
        let dir = std::env::temp_dir().join(format!("apibench-cal-scn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        let pace = Pace::new(true);
        std::fs::write(&path, scenario_toml("http://127.0.0.1:9", 12_345.4, &pace)).expect("w");
        let scenario = crate::scenario::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        let scenario = scenario.expect("the generated scenario is valid");
        assert_eq!(scenario.load.max_users, 1024);
        assert_eq!(scenario.load.warmup, pace.warmup);
        assert_eq!(scenario.load.duration, pace.measured);
    }

    fn measured(verdict: &str, reason: &str) -> Measurement {
        Measurement {
            verdict: verdict.into(),
            valid: verdict != "invalid",
            invalid_reason: (verdict == "invalid").then(|| reason.to_string()),
            verdict_reason: Some(reason.into()),
            achieved_send_rate_per_sec: 12_000.0,
            ..Measurement::default()
        }
    }

    #[test]
    fn only_failures_with_cpu_to_spare_are_run_again() {
        let bound = classify(
            &measured(
                "invalid",
                "generator-bound, not the server: runtime probe woke 5 ms late",
            ),
            None,
        );
        assert!(is_transient_failure(bound, Some(0.6)));
        assert!(!is_transient_failure(bound, Some(0.93)));
        assert!(!is_transient_failure(bound, None));
        assert!(!is_transient_failure(Outcome::Pass, Some(0.3)));
        assert!(!is_transient_failure(Outcome::Saturated, Some(0.3)));
    }

    #[test]
    fn runs_are_read_as_the_verdict_says_and_the_servers_cpu_decides_the_rest() {
        assert_eq!(classify(&measured("valid", "ok"), None), Outcome::Pass);
        assert_eq!(
            classify(&measured("saturated", "backlog"), Some(0.99)),
            Outcome::Saturated
        );
        // A backlog behind an idle server: its stall, not its ceiling; the generator passed.
        assert_eq!(
            classify(&measured("saturated", "backlog"), Some(0.52)),
            Outcome::Pass
        );
        assert_eq!(
            classify(&measured("saturated", "backlog"), None),
            Outcome::Saturated
        );
        let generator = measured("invalid", "generator-bound, not the server: …");
        assert_eq!(
            classify(&generator, Some(0.99)),
            Outcome::GeneratorBound {
                achieved_rate_per_sec: 12_000.0
            }
        );
        let users = measured("invalid", "users exhausted: 256 of 256 busy");
        assert_eq!(classify(&users, Some(0.97)), Outcome::ServerLimited);
        assert_eq!(
            classify(&users, Some(0.30)),
            Outcome::GeneratorBound {
                achieved_rate_per_sec: 12_000.0
            },
            "an idle server was not the limit"
        );
        assert!(matches!(
            classify(&users, None),
            Outcome::GeneratorBound { .. }
        ));
    }
}
