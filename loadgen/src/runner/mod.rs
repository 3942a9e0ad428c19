//! `apibench run`: scenario → database → for each repetition and variant: fresh database copy,
//! target start, load phase with sampling (plus, for Node, its GC counters before and after),
//! the `[find_max]` ramp when the scenario has one (each stage a load phase of its own on the
//! same running target), target stop → result files → summary table.
//!
//! Inside: this file (options, the run as a whole, run.json/summary.json), `phase.rs` (one variant
//! × repetition: target, load, sampling, the ramp), `measurement.rs` (a recording → the summary's
//! figures and verdict; also used by `apibench merge`), `start.rs` (`--shard` / `--start-at`).
//!
//! Cancellation (Ctrl-C) arrives as a `watch` channel turning true: the current load phase stops,
//! everything measured so far is written with `partial: true`, the target and the database are
//! stopped, and the caller exits 130. This module prints nothing itself except through
//! [`crate::output`].

use crate::database::{DatabaseError, Databases};
use crate::engine::{self, EngineError, LoadPlan};
use crate::recorder::{
    Collector, CollectorStats, EngineFigures, HlogStream, IntervalOutput, Recording, RecordingState,
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

mod measurement;
mod phase;
mod start;

pub use measurement::{PhaseFacts, build_measurement, stage_figures};
pub use phase::BISECTION_RESOLUTION;
use phase::Phase;
use start::{plan_start, read_engine_figures};

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
    /// `--serve`: live metrics and page on this address while the run goes.
    pub serve: Option<std::net::SocketAddr>,
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
        LoadModel::Open => match &scenario.load.replay {
            Some(replay) => replay.schedule_plan(scenario.load.warmup),
            None => SchedulePlan::new(scenario.load.warmup, &scenario.load.stages),
        },
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
        placement: None,
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
    // `[cpus]`: checked against this process's mask before anything starts; `--generator-cpus`
    // wins over `[cpus] generator`.
    let allowed_cpus = crate::placement::allowed_cpus();
    crate::placement::check(&scenario.cpus, &allowed_cpus)
        .map_err(|e| RunError::BadInput(format!("{}: {e}", scenario.path.display())))?;
    let mut opts = opts;
    if opts.generator_cpus.is_none() {
        opts.generator_cpus = scenario.cpus.generator.clone();
    }
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
    // `--serve`: bound before anything is provisioned, so a taken port costs nothing; it
    // serves until this function returns (the run's end, Ctrl-C included).
    let live = match opts.serve {
        Some(addr) => {
            let state = crate::live::LiveState::new(&scenario.name);
            let server = crate::live::LiveServer::start(addr, Arc::clone(&state))
                .await
                .map_err(|e| RunError::BadInput(e.to_string()))?;
            let addr = server.local_addr();
            output::note(&format!(
                "live: http://{addr}/ (page), http://{addr}/metrics (Prometheus), until the run ends"
            ));
            Some((server, state))
        }
        None => None,
    };
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
    let mut generator = Generator::choose(&opts, &scenario.load);
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
    // The generator's CPUs hold every apibench thread (workers, collector, sampler, main), not
    // only the workers; what apibench starts from now on would inherit them, so the target and
    // PostgreSQL get their own mask — as asked, else every CPU apibench was allowed.
    let postgres_asked = scenario.cpus.postgres.is_some();
    if let Some(cpus) = generator.cpus.clone() {
        match crate::placement::pin_own_threads(&cpus) {
            Ok(_) => {
                let rest: Vec<usize> = allowed_cpus
                    .cpus()
                    .iter()
                    .copied()
                    .filter(|c| !cpus.cpus().contains(c))
                    .collect();
                generator.observer_cpus =
                    (!rest.is_empty()).then(|| engine::workers::CpuList::new(rest));
                scenario
                    .cpus
                    .target
                    .get_or_insert_with(|| allowed_cpus.clone());
                scenario
                    .cpus
                    .postgres
                    .get_or_insert_with(|| allowed_cpus.clone());
            }
            Err(e) => output::warn(&format!("apibench's own threads not pinned to {cpus}: {e}")),
        }
    }
    let mut placement = crate::placement::PlacementInfo {
        cpus: crate::scenario::CpuPlacement {
            generator: generator.cpus.clone(),
            ..scenario.cpus.clone()
        },
        allowed: allowed_cpus.to_string(),
        notes: Vec::new(),
    };
    if placement.cpus.target.is_some() && variants.iter().all(|v| !v.target.needs_database()) {
        placement
            .notes
            .push("target not pinned: no variant starts a target process".into());
    }
    info.placement = Some(placement.clone());
    if !scenario.cpus.is_empty() && !opts.quiet {
        output::note(&format!("placement: {}", placement.describe()));
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
            if let Some(cpus) = &scenario.cpus.postgres {
                let note = match db.postmaster_pid() {
                    Some(pid) => crate::placement::pin_tree(pid, cpus).err(),
                    None => Some(
                        "not a cluster apibench started (DATABASE_URL or a container): its \
                         processes are not this machine's to pin"
                            .to_string(),
                    ),
                };
                if let Some(note) = note
                    && postgres_asked
                {
                    output::warn(&format!("[cpus] postgres = \"{cpus}\" not applied: {note}"));
                    placement
                        .notes
                        .push(format!("PostgreSQL not pinned: {note}"));
                }
            }
            info.placement = Some(placement.clone());
            write_json(&run_json, &info)?;
        }
        prepared
    } else {
        None
    };

    let baseline_run = match (&scenario.baseline, &databases) {
        (Some(spec), Some(db)) => Some(BaselineRun {
            spec,
            db,
            scenario: &scenario,
            nonce: &nonce,
            generator: &generator,
            out_dir: &out_dir,
            quiet: opts.quiet,
        }),
        _ => None,
    };
    let baseline_before = match &baseline_run {
        Some(run) if !*cancel.borrow() => run.measure(BaselineWhen::Before).await,
        _ => None,
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
                live: live.as_ref().map(|(_, state)| state),
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
    // The same pgbench again after the variants: one 10 s sample on a shared machine can land on
    // a stall, and the ceiling is the higher of the two.
    let baseline = match (baseline_before, &baseline_run) {
        (Some(before), Some(run)) => {
            let after = if failure.is_none() && !interrupted {
                run.measure(BaselineWhen::After).await
            } else {
                None
            };
            Some(crate::baseline::BaselineFigures::bracketing(before, after))
        }
        _ => None,
    };

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
        baseline,
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

/// When a baseline sample is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaselineWhen {
    Before,
    After,
}

/// What a `[baseline]` sample needs: the scenario's spec and the run's database, generator and
/// directory.
struct BaselineRun<'a> {
    spec: &'a crate::scenario::PgbenchSpec,
    db: &'a Databases,
    scenario: &'a Scenario,
    nonce: &'a str,
    generator: &'a Generator,
    out_dir: &'a Path,
    quiet: bool,
}

impl BaselineRun<'_> {
    /// pgbench against a fresh copy of the seeded database, on the generator's CPUs. A sample
    /// that cannot be taken is warned about, not fatal: the variants still answer the question.
    async fn measure(&self, when: BaselineWhen) -> Option<crate::baseline::BaselineFigures> {
        let BaselineRun {
            spec,
            db,
            scenario,
            nonce,
            generator,
            out_dir,
            quiet,
        } = *self;
        let (repetition, dir_rel, says) = match when {
            BaselineWhen::Before => (1, "baseline", "before the variants"),
            BaselineWhen::After => (2, "baseline/after", "again after the variants"),
        };
        let name = copy_name(nonce, "baseline", repetition);
        let url = match db.fresh_copy(&name).await {
            Ok(url) => url,
            Err(e) => {
                output::warn(&format!("[baseline] not measured: {e}"));
                return None;
            }
        };
        if !quiet {
            output::note(&format!(
                "baseline: pgbench, {} clients, {} s, the API's point read, {says}",
                spec.clients, spec.seconds
            ));
        }
        let result = crate::baseline::run_pgbench(
            spec,
            &url,
            scenario.data.users,
            generator.cpus.as_ref(),
            &out_dir.join(dir_rel),
            &format!("{dir_rel}/pgbench.log"),
        )
        .await;
        db.drop_copy(&name).await;
        match result {
            Ok(figures) => {
                if !quiet {
                    output::note(&format!(
                        "baseline: the database serves {:.0} point reads/s ({} clients)",
                        figures.tps, figures.clients
                    ));
                }
                Some(figures)
            }
            Err(e) => {
                output::warn(&format!("[baseline] not measured: {e}"));
                None
            }
        }
    }
}

/// Where the generator runs: its worker threads, and the CPUs they are pinned to.
#[derive(Debug, Clone)]
pub struct Generator {
    pub threads: usize,
    pub cpus: Option<engine::workers::CpuList>,
    /// The CPUs left to apibench's observers (the `/proc` sampler) when the generator is pinned:
    /// every allowed CPU but the generator's (`None`: none left, or not pinned).
    pub observer_cpus: Option<engine::workers::CpuList>,
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
            observer_cpus: None,
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
