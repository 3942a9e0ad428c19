//! One variant × repetition of `apibench run`: a fresh database copy, the target started, the
//! fixed-rate load phase sampled and recorded (faults injected beside it), then the `[find_max]`
//! ramp's stages on the same target, the target stopped.

use super::measurement::window_end_us;
use super::*;

/// One variant, one repetition: the fixed-rate load phase, then the ramp if any.
pub(super) struct Phase<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) variant: &'a VariantSpec,
    pub(super) repetition: u32,
    pub(super) repeat: u32,
    pub(super) out_dir: &'a Path,
    pub(super) dir_rel: &'a str,
    pub(super) target_env: &'a TargetEnv,
    pub(super) databases: Option<&'a Databases>,
    pub(super) nonce: &'a str,
    pub(super) quiet: bool,
    pub(super) timer: engine::Timer,
    pub(super) generator: &'a Generator,
    /// The share of the schedule this process sends.
    pub(super) shard: ShardSlice,
    /// The fixed-rate phase's start on the wall clock (`--start-at`).
    pub(super) start_at: Option<SystemTime>,
    /// `--serve`: the live state every load phase feeds.
    pub(super) live: Option<&'a Arc<crate::live::LiveState>>,
}

impl Phase<'_> {
    pub(super) async fn run(
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
                self.scenario.cpus.target.as_ref(),
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

    /// `--serve`: this load phase becomes the live state's current one; `None` without it.
    fn live_feed(
        &self,
        phase: &str,
        rate_per_sec: Option<f64>,
        names: &[String],
    ) -> Option<crate::live::LiveFeed> {
        let info = crate::live::PhaseInfo {
            variant: self.variant.name.clone(),
            phase: phase.to_string(),
            repetition: self.repetition,
            rate_per_sec,
        };
        self.live.map(|live| live.begin_phase(info, names))
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
            flows: Arc::clone(&scenario.flows),
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
            live: self.live.cloned(),
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
                start_lead_ms,
                clock_offset_ms: clock.map(|c| c.0),
                clock_offset_resolution_ms: clock.map(|c| c.1),
                ..EngineFigures::from_outcome(outcome)
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
            cpus: self.generator.observer_cpus.clone(),
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
        let phase = if bisection { "bisect" } else { "ramp" };
        let live_feed = self.live_feed(phase, Some(stage.rate_per_sec), &names);
        let (collector, sink) = Collector::start_live(
            names,
            Instant::now(),
            window_end_us(&plan),
            IntervalOutput::Discard,
            live_feed.clone(),
        )
        .map_err(|e| RunError::BadInput(format!("cannot start the collector: {e}")))?;
        let label = self.label(&format!(
            " {} {:.0}/s",
            if bisection { "bisect" } else { "ramp" },
            stage.rate_per_sec
        ));
        let progress =
            output::Progress::start(&label, plan.end_offset(), collector.live(), self.quiet);
        let sampler = Sampler::start_live(self.watched(running), None, live_feed).ok();
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
            } else if figures.server_over_budget {
                "over budget (the server's own time was, though the client was flagged)"
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
        let live_feed = self.live_feed("measure", None, &names);
        let (collector, sink) = Collector::start_live(
            names,
            Instant::now(),
            window_end_us(&plan),
            IntervalOutput::Stream(HlogStream {
                path: hlog_path.clone(),
                comment,
                started_at: Arc::clone(&hlog_start),
            }),
            live_feed.clone(),
        )
        .map_err(|source| RunError::Write {
            path: hlog_path.clone(),
            source,
        })?;
        let csv_path = dir.join("resources.csv");
        let sampler = match Sampler::start_live(self.watched(running), Some(&csv_path), live_feed) {
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
            postgres_cpus: self.scenario.cpus.postgres.as_ref(),
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
                // A data file that ran out ended the load early: figures up to the last send.
                partial: outcome.cancelled || outcome.stopped_early.is_some(),
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
        if let Some(note) = &measurement.stopped_early {
            output::warn(&format!(
                "{}: stopped early: {note}; figures cover what was sent",
                self.variant.name
            ));
        }
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
