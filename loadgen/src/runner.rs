//! `apibench run`: scenario → database → for each repetition and variant: fresh database copy,
//! target start, load phase with sampling (plus, for Node, its GC counters before and after),
//! the `[find_max]` ramp when the scenario has one (each stage a load phase of its own on the
//! same running target), target stop → result files → summary table.
//!
//! Cancellation (Ctrl-C) arrives as a `watch` channel turning true: the current load phase stops,
//! everything measured so far is written with `partial: true`, the target and the database are
//! stopped, and the caller exits 130. This module prints nothing itself except through
//! [`crate::output`].

use crate::database::{DatabaseError, Databases};
use crate::engine::{self, EngineError, LoadPlan};
use crate::recorder::{
    Collector, CollectorStats, EngineFigures, HlogStream, IntervalOutput, Recording,
    RecordingState, encode_histogram,
};
use crate::results::{
    self, FindMaxInfo, LoadInfo, Measurement, MeasurementFiles, Percentiles, RequestInfo,
    RequestSummary, RunInfo, ScenarioInfo, StageBudget, StageFigures, Summary, VariantInfo,
    VariantSummary,
};
use crate::sampler::{self, ResourceSummary, Sampler, Watched};
use crate::scenario::{
    self, FindMaxSpec, LoadModel, Scenario, ScenarioError, TargetSpec, VariantSpec,
};
use crate::schedule::{SchedulePlan, ShardSlice, Stage};
use crate::shard::{self, ShardFile, ShardRunInfo};
use crate::target::{self, TargetEnv, TargetError};
use crate::template::SharedTemplateState;
use crate::verdict::{self, Evidence};
use crate::{environment, faults, knobs, output};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Exit code: the run finished.
pub const EXIT_OK: u8 = 0;
/// Exit code: bad input (scenario, flags, files).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the run itself failed.
pub const EXIT_RUN_FAILED: u8 = 3;
/// Exit code: interrupted by Ctrl-C after writing partial results.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why a run did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RunError {
    /// 2 for bad input, 3 for a run that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) | RunError::BadInput(_) => EXIT_BAD_INPUT,
            _ => EXIT_RUN_FAILED,
        }
    }
}

/// What `apibench run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: PathBuf,
    pub out: Option<PathBuf>,
    pub database_url: Option<String>,
    pub repeat: u32,
    pub variants: Vec<String>,
    pub api_bin: Option<PathBuf>,
    pub quiet: bool,
    pub command_line: Vec<String>,
    pub timer: engine::Timer,
    /// `--generator-threads`: overrides `[load] generator_threads`.
    pub generator_threads: Option<u32>,
    /// `--generator-cpus`: the CPUs the generator's workers are pinned to.
    pub generator_cpus: Option<engine::workers::CpuList>,
    /// Do not read the generator's calibration (no warning): `apibench calibrate`'s own runs.
    pub ignore_calibration: bool,
    /// `--duration`: the measured duration instead of the scenario's.
    pub duration: Option<Duration>,
    /// `--target-url`: every variant loads this URL (nothing started, provisioned or seeded).
    pub target_url: Option<String>,
    /// `--shard I/N`: send only this share of the load.
    pub shard: Option<ShardSlice>,
    /// `--start-at`: the schedule's start on the wall clock.
    pub start_at: Option<SystemTime>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub out_dir: PathBuf,
    pub summary: Summary,
    pub interrupted: bool,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| RunError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, text + "\n").map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The warning the latest `apibench calibrate` gives for this scenario's highest fixed rate on
/// the generator's CPUs (open model only; a ramp past the ceiling is `[find_max]`'s business).
fn calibration_warning(scenario: &Scenario, generator: &Generator) -> Option<String> {
    if scenario.load.model != LoadModel::Open {
        return None;
    }
    let rate = scenario
        .load
        .stages
        .iter()
        .map(|s| s.rate_per_sec)
        .fold(0.0, f64::max);
    match crate::calibrate::load_latest() {
        Ok(Some(calibration)) => {
            crate::calibrate::rate_warning(&calibration, rate, generator.cpus_allowed() as usize)
        }
        Ok(None) => None,
        Err(e) => Some(format!("the generator calibration could not be read: {e}")),
    }
}

/// The variants to run, in scenario order.
fn select_variants(scenario: &Scenario, wanted: &[String]) -> Result<Vec<VariantSpec>, RunError> {
    if wanted.is_empty() {
        return Ok(scenario.variants.clone());
    }
    for name in wanted {
        if !scenario.variants.iter().any(|v| &v.name == name) {
            let known: Vec<&str> = scenario.variants.iter().map(|v| v.name.as_str()).collect();
            return Err(RunError::BadInput(format!(
                "--variants: `{name}` is not a variant of {}; it has: {}",
                scenario.path.display(),
                known.join(", ")
            )));
        }
    }
    Ok(scenario
        .variants
        .iter()
        .filter(|v| wanted.contains(&v.name))
        .cloned()
        .collect())
}

/// The schedule a load phase follows.
pub fn schedule_plan(scenario: &Scenario) -> SchedulePlan {
    match scenario.load.model {
        LoadModel::Open => SchedulePlan::new(scenario.load.warmup, &scenario.load.stages),
        // The closed model uses only the warm-up and the end; a zero rate has no slots.
        LoadModel::Closed => SchedulePlan::new(
            scenario.load.warmup,
            &[Stage {
                rate_per_sec: 0.0,
                duration: scenario.load.duration,
            }],
        ),
    }
}

fn run_info(
    scenario: &Scenario,
    variants: &[VariantSpec],
    opts: &RunOptions,
    generator: &Generator,
    started_at: &str,
) -> RunInfo {
    let load = &scenario.load;
    RunInfo {
        schema_version: results::SCHEMA_VERSION,
        apibench_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: opts.command_line.clone(),
        started_at: started_at.to_string(),
        finished_at: None,
        partial: false,
        scenario: ScenarioInfo {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            path: scenario.path.display().to_string(),
            sha256: scenario.sha256.clone(),
        },
        environment: environment::collect(),
        postgres: None,
        data: scenario.data,
        load: LoadInfo {
            model: load.model,
            users: load.users,
            stages: load.stages.clone(),
            warmup_ms: millis(load.warmup),
            duration_ms: millis(load.duration),
            think_time_ms: millis(load.think_time),
            request_timeout_ms: millis(load.request_timeout),
            latency_origin: latency_origin(load.model).to_string(),
            max_users: (load.model == LoadModel::Open).then_some(load.max_users),
            max_error_rate: Some(load.max_error_rate),
            accept_encoding: scenario.http.accept_encoding.clone(),
            timer: Some(opts.timer),
            generator_threads: Some(generator.threads),
            generator_cpus: generator.cpus.clone(),
            generator_warning: None,
            find_max: scenario.find_max.as_ref().map(|f| FindMaxInfo {
                budget: f.budget,
                settle_ms: millis(f.settle),
                stop_after_failures: f.stop_after_failures,
                stages: f.stages.clone(),
            }),
        },
        requests: scenario
            .requests
            .iter()
            .map(|r| RequestInfo {
                name: r.name.clone(),
                method: r.method.clone(),
                path: r.path_source.clone(),
                body: r.body_source.clone(),
                expect_status: r.expect_status,
                weight: r.weight,
            })
            .collect(),
        variants: variants
            .iter()
            .map(|v| VariantInfo {
                name: v.name.clone(),
                target_kind: v.target.kind().to_string(),
                target_url: match &v.target {
                    TargetSpec::Url { url } => Some(url.clone()),
                    _ => None,
                },
                knobs: v.knobs.clone(),
                knob_env: v
                    .knobs
                    .iter()
                    .map(|(k, val)| (knobs::env_var_name(k), val.clone()))
                    .collect(),
            })
            .collect(),
        repeat: opts.repeat.max(1),
        shard: None,
        merged_from: Vec::new(),
    }
}

fn latency_origin(model: LoadModel) -> &'static str {
    match model {
        LoadModel::Open => "scheduled",
        LoadModel::Closed => "sent",
    }
}

/// A Postgres database name for a variant copy.
fn copy_name(nonce: &str, variant: &str, repetition: u32) -> String {
    let clean: String = variant
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    format!("apibench_{nonce}_{clean}_{repetition}")
}

/// Runs a scenario. `Ok` with `interrupted: true` after Ctrl-C (partial results written).
pub async fn run(opts: RunOptions, cancel: watch::Receiver<bool>) -> Result<RunReport, RunError> {
    let mut scenario = scenario::load(&opts.scenario)?;
    if let Some(duration) = opts.duration {
        scenario
            .load
            .set_duration(duration)
            .map_err(RunError::BadInput)?;
    }
    let mut variants = select_variants(&scenario, &opts.variants)?;
    if let Some(url) = &opts.target_url {
        for v in &mut variants {
            v.target = TargetSpec::Url { url: url.clone() };
        }
    }
    let repeat = opts.repeat.max(1);
    let shard = opts.shard.unwrap_or(ShardSlice::WHOLE);
    let start_at = plan_start(&opts, &mut scenario, &variants)?;
    // Faults that stop or restart PostgreSQL need a cluster apibench owns: refused before
    // anything is provisioned (the scenario's own url targets were refused when it was parsed).
    crate::faults::check_before_provisioning(&scenario.faults, opts.database_url.as_deref())?;
    if !scenario.faults.is_empty() && opts.target_url.is_some() {
        return Err(RunError::BadInput(format!(
            "{}: [[faults]] act on the target and the database apibench started; with \
             --target-url there is neither (drop --target-url, or run without faults)",
            scenario.path.display()
        )));
    }
    let started_at = now_rfc3339();
    let out_dir = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from("reports").join(format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            scenario.name
        ))
    });
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        RunError::BadInput(format!("cannot create --out {}: {e}", out_dir.display()))
    })?;

    let target_env = TargetEnv::find(opts.api_bin.clone(), &scenario.path, None);
    let cwd = target_env.search_root.clone();
    // Fail fast, before provisioning a database, when a target cannot start at all.
    for v in &variants {
        match v.target {
            TargetSpec::Api if !target_env.api_bin.is_file() => {
                return Err(TargetError::ApiBinaryMissing(target_env.api_bin.clone()).into());
            }
            TargetSpec::Node if target_env.node_dir.is_none() => {
                return Err(TargetError::NodeMissing(cwd.clone()).into());
            }
            _ => {}
        }
    }

    let nonce = format!(
        "{:08x}",
        rand::random::<u32>() ^ std::process::id().rotate_left(16)
    );
    let generator = Generator::choose(&opts, &scenario.load);
    let mut info = run_info(&scenario, &variants, &opts, &generator, &started_at);
    info.shard = opts.shard.map(|s| ShardRunInfo {
        index: s.index,
        count: s.count,
        start_at: start_at.map(shard::rfc3339).unwrap_or_default(),
    });
    if !opts.ignore_calibration {
        info.load.generator_warning = calibration_warning(&scenario, &generator);
    }
    if let Some(text) = &info.load.generator_warning {
        output::warn(text);
    }
    let run_json = out_dir.join("run.json");
    write_json(&run_json, &info)?;

    let mut cancel_db = cancel.clone();
    let databases = if variants.iter().any(|v| v.target.needs_database()) {
        tracing::info!("provisioning Postgres and seeding {:?}", scenario.data);
        let prepared = tokio::select! {
            prepared = Databases::prepare_with(
                crate::database::provision_for(
                    opts.database_url.as_deref(),
                    crate::faults::need_own_cluster(&scenario.faults),
                ),
                &scenario.data,
                &nonce,
            ) => Some(prepared?),
            _ = cancel_db.wait_for(|c| *c) => None,
        };
        if let Some(db) = &prepared {
            info.postgres = Some(db.info());
            write_json(&run_json, &info)?;
        }
        prepared
    } else {
        None
    };

    let mut measured: BTreeMap<String, Vec<Measurement>> = BTreeMap::new();
    let mut failure = None;
    'reps: for repetition in 1..=repeat {
        for variant in &variants {
            if *cancel.borrow() {
                break 'reps;
            }
            if variant.target.needs_database() && databases.is_none() {
                break 'reps;
            }
            let dir_rel = if repeat > 1 {
                format!("{}/rep-{repetition}", variant.name)
            } else {
                variant.name.clone()
            };
            let phase = Phase {
                scenario: &scenario,
                variant,
                repetition,
                repeat,
                out_dir: &out_dir,
                dir_rel: &dir_rel,
                target_env: &target_env,
                databases: databases.as_ref(),
                nonce: &nonce,
                quiet: opts.quiet,
                timer: opts.timer,
                generator: &generator,
                shard,
                start_at,
            };
            match phase.run(cancel.clone()).await {
                Ok(Some(m)) => measured.entry(variant.name.clone()).or_default().push(m),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e);
                    break 'reps;
                }
            }
        }
    }
    let interrupted = *cancel.borrow();

    if let Some(db) = databases {
        db.cleanup().await;
    }

    let summary = Summary {
        schema_version: results::SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        load_model: scenario.load.model,
        partial: interrupted,
        repeat,
        started_at: started_at.clone(),
        finished_at: now_rfc3339(),
        migration_table: scenario.migration_table.clone(),
        shards: Vec::new(),
        variants: variants
            .iter()
            .filter_map(|v| {
                let reps = measured.remove(&v.name)?;
                Some(VariantSummary {
                    name: v.name.clone(),
                    target_kind: v.target.kind().to_string(),
                    knobs: v.knobs.clone(),
                    load_model: scenario.load.model,
                    latency_origin: latency_origin(scenario.load.model).to_string(),
                    figures: results::aggregate(&reps),
                    repetitions: reps,
                })
            })
            .collect(),
    };
    write_json(&out_dir.join("summary.json"), &summary)?;
    if let (Some(slice), Some(variant)) = (opts.shard, variants.first()) {
        let engine = read_engine_figures(&out_dir.join(&variant.name));
        let file = ShardFile {
            index: slice.index,
            count: slice.count,
            host: shard::host_name(),
            start_at: start_at.map(shard::rfc3339).unwrap_or_default(),
            scenario_sha256: scenario.sha256.clone(),
            variant: variant.name.clone(),
            start_lead_ms: engine.as_ref().and_then(|e| e.start_lead_ms),
            first_send_late_us: engine.as_ref().and_then(|e| e.first_send_late_us),
            clock_offset_ms: engine.as_ref().and_then(|e| e.clock_offset_ms),
            clock_offset_resolution_ms: engine.as_ref().and_then(|e| e.clock_offset_resolution_ms),
        };
        write_json(&out_dir.join(shard::SHARD_FILE), &file)?;
    }
    info.finished_at = Some(summary.finished_at.clone());
    info.partial = interrupted || failure.is_some();
    write_json(&run_json, &info)?;
    if let Err(e) = crate::report::render_dir(&out_dir, None) {
        tracing::warn!("the HTML report was not written (re-render with `apibench report`): {e}");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(RunReport {
        out_dir,
        summary,
        interrupted,
    })
}

/// One variant, one repetition: the fixed-rate load phase, then the ramp if any.
struct Phase<'a> {
    scenario: &'a Scenario,
    variant: &'a VariantSpec,
    repetition: u32,
    repeat: u32,
    out_dir: &'a Path,
    dir_rel: &'a str,
    target_env: &'a TargetEnv,
    databases: Option<&'a Databases>,
    nonce: &'a str,
    quiet: bool,
    timer: engine::Timer,
    generator: &'a Generator,
    /// The share of the schedule this process sends.
    shard: ShardSlice,
    /// The fixed-rate phase's start on the wall clock (`--start-at`).
    start_at: Option<SystemTime>,
}

/// Where the generator runs: its worker threads, and the CPUs they are pinned to.
#[derive(Debug, Clone)]
pub struct Generator {
    pub threads: usize,
    pub cpus: Option<engine::workers::CpuList>,
}

impl Generator {
    /// `--generator-threads`, else `[load] generator_threads`, else one per generator CPU
    /// (`--generator-cpus`, else the CPUs this process may use). Capped at the users.
    pub fn choose(opts: &RunOptions, load: &crate::scenario::LoadSpec) -> Generator {
        let cpus = opts.generator_cpus.clone().filter(|c| !c.is_empty());
        let threads = opts
            .generator_threads
            .map(|t| t as usize)
            .or(load.generator_threads)
            .unwrap_or_else(|| match &cpus {
                Some(cpus) => cpus.len(),
                None => sampler::cpus_allowed() as usize,
            });
        Generator {
            threads: engine::effective_threads(threads, load.users),
            cpus,
        }
    }

    /// The CPUs the generator may use, for its CPU share in the verdict.
    pub fn cpus_allowed(&self) -> u32 {
        match &self.cpus {
            Some(cpus) => u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            None => sampler::cpus_allowed(),
        }
    }
}

impl Phase<'_> {
    async fn run(
        &self,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Option<Measurement>, RunError> {
        let dir = self.out_dir.join(self.dir_rel);
        std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
            path: dir.clone(),
            source,
        })?;
        let copy = match (self.databases, self.variant.target.needs_database()) {
            (Some(db), true) => {
                let name = copy_name(self.nonce, &self.variant.name, self.repetition);
                let url = db.fresh_copy(&name).await?;
                Some((db, name, url))
            }
            _ => None,
        };
        let log_path = dir.join("target.log");
        let started = tokio::select! {
            started = target::start(
                &self.variant.target,
                &self.variant.knobs,
                copy.as_ref().map(|(_, _, url)| url.as_str()),
                self.target_env,
                &log_path,
            ) => Some(started),
            _ = cancel.wait_for(|c| *c) => None,
        };
        let result = match started {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(running)) => {
                let mut measured = self.measure(&running, &dir, cancel.clone()).await;
                if let (Ok(m), Some(find_max)) = (&mut measured, &self.scenario.find_max)
                    && !m.partial
                {
                    match self.find_max(&running, find_max, cancel.clone()).await {
                        Ok(stages) => {
                            let k = find_max.stop_after_failures;
                            m.max_sustainable_rps = results::max_sustainable_rps(&stages, k);
                            if let Some((ceiling, fail)) = results::bisection_bounds(&stages, k) {
                                m.max_sustainable_resolution_rps =
                                    Some(fail.rate_per_sec - ceiling);
                                m.max_sustainable_is_lower_bound = fail.client_limited;
                            }
                            m.stages = stages;
                        }
                        Err(e) => measured = Err(e),
                    }
                }
                running.stop().await;
                measured.map(Some)
            }
        };
        if let Some((db, name, _)) = copy {
            db.drop_copy(&name).await;
        }
        result
    }

    /// The progress label: the variant, its repetition, and `suffix` (a ramp stage).
    fn label(&self, suffix: &str) -> String {
        let mut label = self.variant.name.clone();
        if self.repeat > 1 {
            label.push_str(&format!(" #{}", self.repetition));
        }
        label + suffix
    }

    /// GC totals of a Node target (`None` for other kinds, or when `/metrics` cannot be read).
    async fn gc_totals(&self, running: &target::RunningTarget) -> Option<target::GcTotals> {
        if !matches!(self.variant.target, TargetSpec::Node) {
            return None;
        }
        let totals = target::scrape_gc_totals(&running.base_url).await;
        if totals.is_none() {
            tracing::warn!(
                "{}: no nodejs_gc_duration_seconds in /metrics; GC pauses not recorded",
                self.variant.name
            );
        }
        totals
    }

    /// Sends one schedule's load to the target and returns what the collector recorded.
    /// `phase_salt` keeps the request sequence of each phase (fixed rate, ramp stages) distinct.
    async fn drive(
        &self,
        running: &target::RunningTarget,
        plan: &SchedulePlan,
        phase_salt: u64,
        (collector, sink): (Collector, crate::recorder::Sink),
        PhaseMarks {
            window,
            hlog_start,
            state,
        }: PhaseMarks,
        cancel: watch::Receiver<bool>,
    ) -> (
        (Recording, CollectorStats),
        Result<engine::EngineOutcome, EngineError>,
    ) {
        let scenario = self.scenario;
        // Only the measured phase starts at `--start-at` (a sharded run has no ramp).
        let start_at = self.start_at.filter(|_| hlog_start.is_some());
        let clock = match (start_at, &state) {
            (Some(_), Some(_)) => shard::probe_clock_offset(&running.base_url).await,
            _ => None,
        };
        let start_instant = start_at.map(instant_of);
        let start_lead_ms = start_instant.map(|at| {
            let now = Instant::now();
            if at >= now {
                i64::try_from((at - now).as_millis()).unwrap_or(i64::MAX)
            } else {
                -i64::try_from((now - at).as_millis()).unwrap_or(i64::MAX)
            }
        });
        let load = LoadPlan {
            model: scenario.load.model,
            users: scenario.load.users,
            max_users: scenario.load.max_users,
            accept_encoding: scenario.http.accept_encoding.clone(),
            timer: self.timer,
            generator_threads: self.generator.threads,
            generator_cpus: self.generator.cpus.clone(),
            schedule: plan.clone(),
            think_time: scenario.load.think_time,
            request_timeout: scenario.load.request_timeout,
            seed: scenario.data.seed ^ u64::from(self.repetition) ^ (phase_salt << 32),
            requests: Arc::new(scenario.requests.clone()),
            templates: Arc::new(SharedTemplateState {
                users: scenario.data.users,
                posts: scenario.data.posts,
                // Phase 0 keeps the plain nonce; ramp stages get their own (unique emails).
                run_nonce: if phase_salt == 0 {
                    format!("{}{}", self.nonce, self.repetition)
                } else {
                    format!("{}{}p{phase_salt}", self.nonce, self.repetition)
                },
                // Shard I/N renders I + 1, I + 1 + N, …: no two shards share a number.
                seq: AtomicU64::new(1 + u64::from(self.shard.index)),
                seq_step: u64::from(self.shard.count.max(1)),
            }),
            start_at: start_instant,
        };
        // The sampler's CPU means start when the warm-up ends (start-up is not the load's cost).
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Instant>();
        let warmup = plan.warmup();
        let mark = tokio::spawn(async move {
            let Ok(start) = started_rx.await else {
                return;
            };
            // The interval log's StartTime: the schedule's start on the wall clock (exactly
            // `--start-at` when given, so shards' logs align to the microsecond).
            if let Some(cell) = hlog_start {
                let wall = start_at.unwrap_or_else(|| {
                    SystemTime::now()
                        .checked_sub(start.elapsed())
                        .unwrap_or_else(SystemTime::now)
                });
                let _ = cell.set(wall);
            }
            if let Some(window) = window {
                tokio::time::sleep_until((start + warmup).into()).await;
                window.starts_now();
            }
        });
        let outcome = engine::run(load, &running.base_url, sink, cancel, Some(started_tx)).await;
        mark.abort();
        let recording = tokio::task::spawn_blocking(move || collector.finish_with_stats())
            .await
            .unwrap_or_else(|_| {
                tracing::error!("the collector thread panicked");
                (Recording::new(&[]), CollectorStats::default())
            });
        if let (Some(path), Ok(outcome)) = (state, &outcome) {
            let engine = EngineFigures {
                users_started: outcome.users_started as u64,
                peak_users_busy: outcome.peak_users_busy as u64,
                max_users: outcome.max_users as u64,
                generator_threads: outcome.generator_threads as u64,
                probe_lag: encode_histogram(&outcome.probe_lag),
                cancelled: outcome.cancelled,
                start_lead_ms,
                first_send_late_us: outcome.first_send_late_us,
                clock_offset_ms: clock.map(|c| c.0),
                clock_offset_resolution_ms: clock.map(|c| c.1),
            };
            let saved = RecordingState::of(&recording.0, engine);
            if let Err(e) = write_json(&path, &saved) {
                tracing::warn!("{e} (a merge of this run will refuse it)");
            }
        }
        (recording, outcome)
    }

    /// The processes the sampler watches during a load phase.
    fn watched(&self, running: &target::RunningTarget) -> Watched {
        Watched {
            target_pid: running.pid,
            postgres_pid: self
                .databases
                .filter(|_| self.variant.target.needs_database())
                .and_then(Databases::postmaster_pid),
        }
    }

    /// One ramp stage at `rate`: its settle period is the warm-up, so it is excluded; sampled
    /// like the fixed-rate phase. `None` when interrupted.
    async fn ramp_stage(
        &self,
        running: &target::RunningTarget,
        find_max: &FindMaxSpec,
        stage: &Stage,
        salt: u64,
        bisection: bool,
        cancel: watch::Receiver<bool>,
    ) -> Result<Option<StageFigures>, RunError> {
        let names: Vec<String> = self
            .scenario
            .requests
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let plan = SchedulePlan::new(
            find_max.settle,
            &[Stage {
                rate_per_sec: stage.rate_per_sec,
                duration: stage.duration.saturating_sub(find_max.settle),
            }],
        );
        let (collector, sink) = Collector::start_with(
            names,
            Instant::now(),
            window_end_us(&plan),
            IntervalOutput::Discard,
        )
        .map_err(|e| RunError::BadInput(format!("cannot start the collector: {e}")))?;
        let label = self.label(&format!(
            " {} {:.0}/s",
            if bisection { "bisect" } else { "ramp" },
            stage.rate_per_sec
        ));
        let progress =
            output::Progress::start(&label, plan.end_offset(), collector.live(), self.quiet);
        let sampler = Sampler::start(self.watched(running), None).ok();
        let window = sampler.as_ref().map(Sampler::measured_window);
        let ((recording, _), outcome) = self
            .drive(
                running,
                &plan,
                salt,
                (collector, sink),
                PhaseMarks {
                    window,
                    hlog_start: None,
                    state: None,
                },
                cancel,
            )
            .await;
        let resources = sampler.map(Sampler::stop).unwrap_or_default();
        let (outcome, progress) = finished_or_failed(outcome, progress)?;
        if outcome.cancelled {
            progress.finish("interrupted");
            return Ok(None);
        }
        let m = build_measurement(
            &recording,
            &plan,
            &PhaseFacts {
                model: LoadModel::Open,
                max_error_rate: self.scenario.load.max_error_rate,
                outcome: &outcome,
                resources: &resources,
                partial: false,
                generator_cpus_allowed: self.generator.cpus_allowed(),
            },
            MeasurementFiles::default(),
        );
        let mut figures = stage_figures(stage, &m, &find_max.budget);
        figures.bisection = bisection;
        progress.finish(&format!(
            "{:.1} req/s, p99 {} at {:.0}/s, errors {:.2} % — {}",
            figures.goodput_rps.unwrap_or(figures.achieved_rps),
            output::format_us(figures.p99_us),
            stage.rate_per_sec,
            figures.error_rate * 100.0,
            if figures.client_limited {
                "CLIENT-LIMITED (not the server's ceiling)"
            } else if figures.within_budget {
                "within budget"
            } else {
                "over budget"
            }
        ));
        Ok(Some(figures))
    }

    /// The second phase: each ramp stage as a load phase of its own, until
    /// `stop_after_failures` consecutive stages fail (over budget or client-limited); then a
    /// bisection between the ceiling and the lowest failing rate above it, until the gap is
    /// at most [`BISECTION_RESOLUTION`] of the ceiling.
    async fn find_max(
        &self,
        running: &target::RunningTarget,
        find_max: &FindMaxSpec,
        cancel: watch::Receiver<bool>,
    ) -> Result<Vec<StageFigures>, RunError> {
        let mut figures = Vec::new();
        let mut consecutive_failures = 0;
        let mut salt = 0u64;
        for stage in &find_max.stages {
            if *cancel.borrow() {
                break;
            }
            salt += 1;
            let Some(result) = self
                .ramp_stage(running, find_max, stage, salt, false, cancel.clone())
                .await?
            else {
                return Ok(figures);
            };
            consecutive_failures = if result.within_budget {
                0
            } else {
                consecutive_failures + 1
            };
            figures.push(result);
            if find_max.stop_after_failures > 0
                && consecutive_failures >= find_max.stop_after_failures
            {
                break;
            }
        }
        // Bisection: the same stage length as the coarse ramp's first failing stage.
        while let Some((pass, fail)) =
            results::bisection_bounds(&figures, find_max.stop_after_failures)
        {
            if *cancel.borrow() || fail.rate_per_sec - pass <= BISECTION_RESOLUTION * pass {
                break;
            }
            let stage = Stage {
                rate_per_sec: ((pass + fail.rate_per_sec) / 2.0).round(),
                duration: find_max
                    .stages
                    .iter()
                    .find(|s| s.rate_per_sec >= fail.rate_per_sec)
                    .or(find_max.stages.last())
                    .map_or(Duration::from_secs(8), |s| s.duration),
            };
            if stage.rate_per_sec <= pass || stage.rate_per_sec >= fail.rate_per_sec {
                break;
            }
            salt += 1;
            let Some(result) = self
                .ramp_stage(running, find_max, &stage, salt, true, cancel.clone())
                .await?
            else {
                break;
            };
            figures.push(result);
        }
        Ok(figures)
    }

    async fn measure(
        &self,
        running: &target::RunningTarget,
        dir: &Path,
        cancel: watch::Receiver<bool>,
    ) -> Result<Measurement, RunError> {
        let scenario = self.scenario;
        let plan = schedule_plan(scenario).shard(self.shard);
        // Before any load: a fault that signals the postmaster needs a cluster apibench owns.
        faults::check_database(
            &scenario.faults,
            self.databases.and_then(Databases::provisioned_by),
        )?;
        let names: Vec<String> = scenario.requests.iter().map(|r| r.name.clone()).collect();
        let hlog_path = dir.join("latency.hlog");
        let comment = format!(
            "apibench {} variant {} ({} model; latency from the {} time, successes untagged; tags: ttfb, errors, send_lag)",
            scenario.name,
            self.variant.name,
            scenario.load.model,
            latency_origin(scenario.load.model)
        );
        let hlog_start = Arc::new(OnceLock::new());
        // Each interval goes to the log a few seconds after it closes, and leaves memory.
        let (collector, sink) = Collector::start_with(
            names,
            Instant::now(),
            window_end_us(&plan),
            IntervalOutput::Stream(HlogStream {
                path: hlog_path.clone(),
                comment,
                started_at: Arc::clone(&hlog_start),
            }),
        )
        .map_err(|source| RunError::Write {
            path: hlog_path.clone(),
            source,
        })?;
        let csv_path = dir.join("resources.csv");
        let sampler = match Sampler::start(self.watched(running), Some(&csv_path)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("resource sampling failed to start: {e}");
                None
            }
        };
        let label = self.label("");
        let progress =
            output::Progress::start(&label, plan.end_offset(), collector.live(), self.quiet);
        // Node's GC counters before and after the measured phase; the difference is the run's.
        let gc_before = self.gc_totals(running).await;
        let window = sampler.as_ref().map(Sampler::measured_window);
        // `[[faults]]` fire beside the load, on the schedule's clock; none: just the load.
        let fault_host = faults::FaultHost {
            target: running,
            databases: self.databases,
            database_name: copy_name(self.nonce, &self.variant.name, self.repetition),
        };
        let fault_clock = faults::LoadClock {
            schedule_start: Arc::clone(&hlog_start),
            warmup: plan.warmup(),
            end: plan.end_offset(),
        };
        let (((recording, collected), outcome), injections) = faults::beside_load(
            self.drive(
                running,
                &plan,
                0,
                (collector, sink),
                PhaseMarks {
                    window,
                    hlog_start: Some(hlog_start),
                    state: Some(dir.join("recording.json")),
                },
                cancel,
            ),
            &scenario.faults,
            &fault_host,
            &fault_clock,
        )
        .await;
        let gc_after = self.gc_totals(running).await;
        let resources = sampler.map(Sampler::stop).unwrap_or_default();
        let (outcome, progress) = finished_or_failed(outcome, progress)?;

        if let Some(reason) = collected.write_error {
            return Err(RunError::Write {
                path: hlog_path,
                source: std::io::Error::other(reason),
            });
        }
        if collected.late_entries > 0 {
            tracing::info!(
                "{} interval pieces arrived after their interval was written (extra entries in latency.hlog; readers add them)",
                collected.late_entries
            );
        }

        let files = MeasurementFiles {
            latency_hlog: format!("{}/latency.hlog", self.dir_rel),
            resources_csv: format!("{}/resources.csv", self.dir_rel),
            target_log: running
                .log_path
                .as_ref()
                .map(|_| format!("{}/target.log", self.dir_rel)),
        };
        let mut measurement = build_measurement(
            &recording,
            &plan,
            &PhaseFacts {
                model: scenario.load.model,
                max_error_rate: scenario.load.max_error_rate,
                outcome: &outcome,
                resources: &resources,
                partial: outcome.cancelled,
                generator_cpus_allowed: self.generator.cpus_allowed(),
            },
            files,
        );
        if let (Some(before), Some(after)) = (gc_before, gc_after) {
            let pause = after.since(&before);
            measurement.gc_pause_total_ms = Some((pause.pause_secs * 1e5).round() / 100.0);
            measurement.gc_pauses = Some(pause.pauses);
        }
        measurement.faults = faults::assess(
            &scenario.faults,
            &injections,
            &hlog_path,
            &collected.error_statuses_by_interval,
            plan.warmup(),
            plan.end_offset(),
        );
        progress.finish(&format!(
            "{:.1} req/s goodput, p99 {}, send-lag p99 {} — {}",
            measurement
                .goodput_rps
                .unwrap_or(measurement.throughput_rps),
            output::format_us(measurement.latency_us.p99),
            output::format_us(measurement.send_lag_us.p99),
            measurement.verdict.to_uppercase()
        ));
        Ok(measurement)
    }
}

/// What a load phase marks when its schedule starts: the sampler's measured window (from the
/// warm-up's end) and the interval log's StartTime.
struct PhaseMarks {
    window: Option<sampler::MeasuredWindow>,
    hlog_start: Option<Arc<OnceLock<SystemTime>>>,
    /// Where the whole recording goes (`recording.json`, for exact merges): the measured phase.
    state: Option<PathBuf>,
}

/// The `Instant` of a wall-clock time (past or future), by this process's clocks now.
fn instant_of(at: SystemTime) -> Instant {
    let now = Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

/// The engine's figures a run saved in `DIR/recording.json`, if it did.
fn read_engine_figures(dir: &Path) -> Option<EngineFigures> {
    let text = std::fs::read_to_string(dir.join("recording.json")).ok()?;
    serde_json::from_str::<RecordingState>(&text)
        .ok()
        .map(|s| s.engine)
}

/// `--shard` / `--start-at`: checks a shard can run (URL targets, one phase), gives the shard its
/// share of the users, and settles the start instant (printed when it was not given).
fn plan_start(
    opts: &RunOptions,
    scenario: &mut Scenario,
    variants: &[VariantSpec],
) -> Result<Option<SystemTime>, RunError> {
    if let Some(slice) = opts.shard {
        let kinds: Vec<(String, &'static str)> = variants
            .iter()
            .map(|v| (v.name.clone(), v.target.kind()))
            .collect();
        shard::check_shardable(
            slice,
            &kinds,
            opts.repeat.max(1),
            scenario.find_max.is_some(),
        )
        .map_err(RunError::BadInput)?;
        let share = |total: usize| slice_share(total, slice);
        if scenario.load.model == LoadModel::Closed && share(scenario.load.users) == 0 {
            return Err(RunError::BadInput(format!(
                "--shard {slice}: the closed model's {} users cannot be split over {} shards \
                 (at least one user each)",
                scenario.load.users, slice.count
            )));
        }
        scenario.load.users = share(scenario.load.users).max(1);
        scenario.load.max_users = share(scenario.load.max_users).max(scenario.load.users);
    }
    let start_at = match (opts.start_at, opts.shard) {
        (Some(at), _) => Some(at),
        (None, Some(slice)) => {
            let at = shard::default_start_at(SystemTime::now());
            output::warn(&format!(
                "shard {slice}: no --start-at given; the schedule starts at {} — give every \
                 shard this same --start-at",
                shard::rfc3339(at)
            ));
            Some(at)
        }
        (None, None) => None,
    };
    if let Some(at) = start_at {
        shard::check_start_at(at, SystemTime::now()).map_err(RunError::BadInput)?;
    }
    Ok(start_at)
}

/// Items `0..total` dealt round-robin over the shards: how many are this shard's.
fn slice_share(total: usize, slice: ShardSlice) -> usize {
    usize::try_from(slice.share_of(total as u64)).unwrap_or(total)
}

/// The engine's outcome, or its error with the progress line marked "failed".
fn finished_or_failed(
    outcome: Result<engine::EngineOutcome, EngineError>,
    progress: output::Progress,
) -> Result<(engine::EngineOutcome, output::Progress), RunError> {
    match outcome {
        Ok(o) => Ok((o, progress)),
        Err(e) => {
            progress.finish("failed");
            Err(e.into())
        }
    }
}

/// The bisection stops when the gap between the ceiling and the lowest failing rate above it
/// is at most this share of the ceiling.
pub const BISECTION_RESOLUTION: f64 = 0.05;

/// The schedule's end from its start, µs: completions after it are the drain.
fn window_end_us(plan: &SchedulePlan) -> u64 {
    u64::try_from(plan.end_offset().as_micros()).unwrap_or(u64::MAX)
}

/// What a load phase knew besides its recording.
pub struct PhaseFacts<'a> {
    pub model: LoadModel,
    pub max_error_rate: f64,
    pub outcome: &'a engine::EngineOutcome,
    pub resources: &'a ResourceSummary,
    /// Stopped early (Ctrl-C).
    pub partial: bool,
    /// The CPUs the generator may run on ([`sampler::cpus_allowed`]).
    pub generator_cpus_allowed: u32,
}

/// Turns a recording into the summary figures and applies the generator's self-check.
pub fn build_measurement(
    recording: &Recording,
    plan: &SchedulePlan,
    facts: &PhaseFacts<'_>,
    files: MeasurementFiles,
) -> Measurement {
    let (model, resources, partial) = (facts.model, facts.resources, facts.partial);
    let warmup_us = u64::try_from(plan.warmup().as_micros()).unwrap_or(0);
    let planned_us =
        u64::try_from(plan.end_offset().saturating_sub(plan.warmup()).as_micros()).unwrap_or(0);
    // The measured window: from the warm-up's end to the schedule's end (to the last send when
    // interrupted). Completions after it are the drain, reported apart.
    let window_secs = if partial {
        recording
            .last_measured_send_us
            .map_or(0, |l| l.saturating_sub(warmup_us)) as f64
            / 1e6
    } else {
        planned_us as f64 / 1e6
    };
    let send_secs = if partial {
        window_secs
    } else {
        let actual = recording
            .last_measured_send_us
            .map_or(0, |l| l.saturating_sub(warmup_us));
        actual.max(planned_us) as f64 / 1e6
    };
    let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let target_rate_per_sec = match model {
        LoadModel::Open => Some(plan.measured_rate_per_sec()),
        LoadModel::Closed => None,
    };
    let achieved_send_rate_per_sec = per_sec(recording.sends, send_secs);
    let send_lag_us = Percentiles::of(&recording.send_lag);
    let probe_lag_us = Percentiles::of(&facts.outcome.probe_lag);
    let cpus_allowed = facts.generator_cpus_allowed;
    let successes = recording.requests.saturating_sub(recording.errors);
    let verdict = verdict::judge(&Evidence {
        // A partial run never reached its schedule's end: judge lateness, not the rate.
        target_rate_per_sec: if partial { None } else { target_rate_per_sec },
        achieved_send_rate_per_sec,
        sends: recording.sends,
        backlogged_sends: recording.backlogged_sends,
        backlogged_at_cap_sends: recording.backlogged_at_cap_sends,
        requests: recording.requests,
        errors: recording.errors,
        max_error_rate: facts.max_error_rate,
        send_lag_p50_us: send_lag_us.p50,
        send_lag_p99_us: send_lag_us.p99,
        probe_lag_p99_us: (probe_lag_us.count > 0).then_some(probe_lag_us.p99),
        generator_cpu_percent: resources.generator_cpu_mean_percent,
        generator_cpus_allowed: cpus_allowed,
        max_users: facts.outcome.max_users as u64,
        peak_users_busy: facts.outcome.peak_users_busy as u64,
        mean_service_us: (successes > 0)
            .then(|| recording.service_sum_us as f64 / successes as f64),
    });
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let drain_ms = match recording.last_measured_completion_us {
        Some(last) if !partial => last.saturating_sub(recording.window_end_us) / 1000,
        _ => 0,
    };
    Measurement {
        valid: verdict.valid(),
        invalid_reason: (!verdict.valid()).then(|| verdict.reason.clone()),
        partial,
        saturated: verdict.saturated(),
        verdict: verdict.state.as_str().to_string(),
        verdict_reason: Some(verdict.reason.clone()),
        target_rate_per_sec: target_rate_per_sec.map(round2),
        throughput_rps: round2(per_sec(recording.completions_in_window, window_secs)),
        goodput_rps: Some(round2(per_sec(recording.successes_in_window, window_secs))),
        drain_ms,
        drain_requests: recording.drain_requests,
        dropped_sends: match model {
            LoadModel::Open if !partial => plan
                .total_slots()
                .saturating_sub(recording.sends + recording.warmup_requests),
            _ => 0,
        },
        achieved_send_rate_per_sec: round2(achieved_send_rate_per_sec),
        measured_duration_ms: (window_secs * 1000.0).round() as u64,
        warmup_ms: warmup_us / 1000,
        requests: recording.requests,
        errors: recording.errors,
        timeouts: recording.timeouts,
        error_rate: if recording.requests > 0 {
            recording.errors as f64 / recording.requests as f64
        } else {
            0.0
        },
        status_counts: recording
            .status_counts
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect(),
        latency_us: Percentiles::of(&recording.latency),
        ttfb_us: Percentiles::of(&recording.ttfb),
        error_latency_us: Percentiles::of(&recording.error_latency),
        send_lag_us,
        probe_lag_us,
        users_started: facts.outcome.users_started as u64,
        peak_users_busy: facts.outcome.peak_users_busy as u64,
        max_users: facts.outcome.max_users as u64,
        users_exhausted: verdict.users_exhausted,
        generator_cpus_allowed: Some(cpus_allowed),
        generator_cpu_share: resources
            .generator_cpu_mean_percent
            .map(|cpu| round2(cpu / (100.0 * f64::from(cpus_allowed.max(1))))),
        requests_by_name: recording
            .by_request
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    RequestSummary {
                        requests: r.requests,
                        errors: r.errors,
                        latency_us: Percentiles::of(&r.latency),
                        ttfb_us: Percentiles::of(&r.ttfb),
                        error_latency_us: Percentiles::of(&r.error_latency),
                    },
                )
            })
            .collect(),
        target_rss_peak_bytes: resources.target_rss_peak_bytes,
        target_cpu_mean_percent: resources.target_cpu_mean_percent.map(round2),
        postgres_rss_peak_bytes: resources.postgres_rss_peak_bytes,
        postgres_memory_is_pss: resources.postgres_memory_is_pss,
        target_rss_hwm_bytes: resources.target_rss_hwm_bytes,
        postgres_cpu_mean_percent: resources.postgres_cpu_mean_percent.map(round2),
        generator_rss_peak_bytes: resources.generator_rss_peak_bytes,
        generator_cpu_mean_percent: resources.generator_cpu_mean_percent.map(round2),
        generator_late_sends: recording.generator_late_sends,
        generator_late_share: if recording.sends > 0 {
            recording.generator_late_sends as f64 / recording.sends as f64
        } else {
            0.0
        },
        backlogged_sends: recording.backlogged_sends,
        sends: recording.sends,
        files,
        gc_pause_total_ms: None,
        gc_pauses: None,
        stages: Vec::new(),
        max_sustainable_rps: None,
        max_sustainable_resolution_rps: None,
        max_sustainable_is_lower_bound: false,
        faults: Vec::new(),
    }
}

/// One ramp stage's figures from its measurement (the settle period was its warm-up). A stage
/// the client limited (users exhausted, generator-bound) is never within budget and never
/// counts as the server's ceiling.
pub fn stage_figures(stage: &Stage, m: &Measurement, budget: &StageBudget) -> StageFigures {
    let client_limited = !m.valid
        && (m.users_exhausted
            || m.invalid_reason
                .as_deref()
                .is_some_and(|r| r.contains("generator-bound")));
    StageFigures {
        rate_per_sec: stage.rate_per_sec,
        achieved_rps: m.throughput_rps,
        p99_us: m.latency_us.p99,
        requests: m.requests,
        error_rate: m.error_rate,
        generator_valid: !client_limited,
        within_budget: !client_limited
            && budget.admits(m.latency_us.p99, m.error_rate, true, m.requests),
        verdict: m.verdict.clone(),
        verdict_reason: m.verdict_reason.clone(),
        client_limited,
        bisection: false,
        goodput_rps: m.goodput_rps,
        send_lag_p99_us: m.send_lag_us.p99,
        peak_users_busy: m.peak_users_busy,
        target_cpu_mean_percent: m.target_cpu_mean_percent,
        target_rss_peak_bytes: m.target_rss_peak_bytes,
        postgres_cpu_mean_percent: m.postgres_cpu_mean_percent,
        postgres_rss_peak_bytes: m.postgres_rss_peak_bytes,
        generator_cpu_mean_percent: m.generator_cpu_mean_percent,
    }
}
