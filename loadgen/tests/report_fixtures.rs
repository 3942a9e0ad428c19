//! The fixture runs under `tests/fixtures/` and the generator that made them.
//!
//! The fixtures are synthetic but written by the crate's own code: samples go through the
//! recorder's collector, the hlog through `Recording::write_hlog`, figures through the runner's
//! `build_measurement` (so the generator's self-check marks the late variant invalid) and the
//! repetitions through `results::aggregate`. Regenerate after a schema change with
//!
//! ```text
//! cargo test -p loadgen --test report_fixtures -- --ignored regenerate_fixtures
//! ```
//!
//! - `run-a`: 3 repetitions of `pool-10` and `pool-50` at 50 req/s.
//! - `run-b`: the same, with `pool-10`'s tail shorter (improved) and `pool-50`'s longer
//!   (regressed); medians (p50) and throughput unchanged (within noise).
//! - `run-single`: 1 repetition; `pool-50` sends late, so the run's self-check marks it invalid.
//! - `run-verdicts`: one variant per verdict — `node-before` invalid (users exhausted),
//!   `rust-n-plus-one` saturated, `rust-tuned` valid — each with a `[find_max]` ramp holding
//!   bisection and client-limited stages. Its figures come from the same code; its verdicts,
//!   reasons and ramps are set here (see [`verdicts_run`]), so the report and migration tests do
//!   not depend on the machine that regenerates it. Regenerate it alone with
//!   `cargo test -p loadgen --test report_fixtures -- --ignored regenerate_verdicts_fixture`.

mod report_support;

use loadgen::engine::EngineOutcome;
use loadgen::recorder::{Collector, Sample, UserRecorder, new_histogram, record_clamped};
use loadgen::results::{
    self, Environment, FindMaxInfo, LoadInfo, Measurement, MeasurementFiles, MigrationPair,
    PostgresInfo, RequestInfo, RunInfo, ScenarioInfo, StageBudget, StageFigures, Summary,
    VariantInfo, VariantSummary,
};
use loadgen::runner::{PhaseFacts, build_measurement};
use loadgen::sampler::{CSV_HEADER, ResourceSummary};
use loadgen::scenario::{DataSpec, LoadModel};
use loadgen::schedule::{SchedulePlan, Stage};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const RATE_PER_SEC: f64 = 50.0;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(6);
/// 2026-01-05T10:00:00Z: fixed, so regenerating gives the same bytes.
const EPOCH_SECS: u64 = 1_767_607_200;
const REQUESTS: [&str; 2] = ["get_user", "list_posts"];

/// How one variant behaves in one run.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Median latency of `get_user`, µs (`list_posts` is 2.5× slower).
    base_us: f64,
    /// Share of requests hit by a stall, and the stall's maximum, µs.
    tail_share: f64,
    tail_us: f64,
    error_share: f64,
    /// Share of sends the generator itself delayed (by 2–15 ms; the rest leave within 150 µs).
    late_share: f64,
    /// Share of sends that waited for a free user (a backlog of up to `tail_us`).
    backlog_share: f64,
    rss_mib: f64,
    cpu_percent: f64,
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `[load] users`, and `max_users` at its default (4 × users).
const USERS: usize = 16;
const MAX_USERS: usize = 64;

fn plan() -> SchedulePlan {
    SchedulePlan::new(
        WARMUP,
        &[Stage {
            rate_per_sec: RATE_PER_SEC,
            duration: MEASURED,
        }],
    )
}

/// One load phase: writes `<dir_rel>/latency.hlog` and `resources.csv`, returns its figures.
fn measure(run_dir: &Path, dir_rel: &str, b: Behaviour, seed: u64) -> Measurement {
    let mut rng = StdRng::seed_from_u64(seed);
    // The generator's side (send lag, backlog, probe) draws from its own stream, so the server's
    // figures stay those of the same seed before these existed.
    let mut generator_rng = StdRng::seed_from_u64(seed ^ 0x05ee_d1a9);
    let plan = plan();
    let (collector, sink) = Collector::start(
        REQUESTS.iter().map(|s| s.to_string()).collect(),
        Instant::now(),
        u64::try_from(plan.end_offset().as_micros()).unwrap_or(u64::MAX),
    );
    let mut user = UserRecorder::new(sink);
    let mut samples = Vec::new();
    for slot in 0..plan.total_slots() {
        let Some(due) = plan.offset_of(slot) else {
            break;
        };
        let due_us = u64::try_from(due.as_micros()).unwrap_or(0);
        let request = u16::from(rng.r#gen::<f64>() < 0.3);
        let base = b.base_us * if request == 1 { 2.5 } else { 1.0 };
        let mut service = base * (0.25 * normal(&mut rng)).exp();
        if rng.r#gen::<f64>() < b.tail_share {
            service += b.tail_us * rng.r#gen::<f64>();
        }
        let service_us = service.round().max(1.0) as u64;
        let error = rng.r#gen::<f64>() < b.error_share;
        let generator_late = rng.r#gen::<f64>() < b.late_share;
        let send_lag_us = if generator_late {
            2_000 + (13_000.0 * generator_rng.r#gen::<f64>()) as u64
        } else {
            20 + (130.0 * generator_rng.r#gen::<f64>()) as u64
        };
        let backlogged = generator_rng.r#gen::<f64>() < b.backlog_share;
        let backlog_us = if backlogged {
            (b.tail_us * generator_rng.r#gen::<f64>()) as u64
        } else {
            0
        };
        // From the schedule: the backlog counts, the generator's own send lag does not.
        let latency_us = backlog_us + service_us;
        let sent_offset_us = due_us + backlog_us + send_lag_us;
        samples.push(Sample {
            request,
            latency_us,
            ttfb_us: Some(latency_us * 4 / 5),
            completed_offset_us: sent_offset_us + service_us,
            sent_offset_us,
            status: if error { 500 } else { 200 },
            error,
            timed_out: false,
            in_warmup: due < WARMUP,
            generator_late,
            backlogged,
            backlogged_at_cap: false,
            send_lag_us,
            service_us,
        });
    }
    // The collector cuts intervals by completion: feed in completion order, like real users.
    samples.sort_by_key(|s| s.completed_offset_us);
    for s in samples {
        user.push(s);
    }
    drop(user);
    let recording = collector.finish();

    let dir = run_dir.join(dir_rel);
    std::fs::create_dir_all(&dir).expect("create measurement dir");
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS);
    let mut hlog = Vec::new();
    recording
        .write_hlog(
            &mut hlog,
            started,
            "apibench fixture (synthetic, see tests/report_fixtures.rs)",
        )
        .expect("hlog");
    std::fs::write(dir.join("latency.hlog"), hlog).expect("write hlog");

    let mut csv = format!("{CSV_HEADER}\n");
    let (mut t_peak, mut p_peak, mut g_peak) = (0u64, 0u64, 0u64);
    let (mut t_cpu, mut p_cpu, mut g_cpu, mut n) = (0.0, 0.0, 0.0, 0.0);
    let mib = 1024.0 * 1024.0;
    for k in 1..=((WARMUP + MEASURED).as_millis() / 250) {
        let t = k as f64 / 4.0;
        let warm = (t / 2.0).min(1.0);
        let t_rss = ((b.rss_mib * (0.6 + 0.4 * warm) + rng.r#gen::<f64>()) * mib) as u64;
        let t_c = (b.cpu_percent * warm + 3.0 * normal(&mut rng)).max(0.0);
        let p_rss = ((48.0 + 6.0 * warm + rng.r#gen::<f64>()) * mib) as u64;
        let p_c = (9.0 * warm + normal(&mut rng)).max(0.0);
        let g_rss = ((21.0 + rng.r#gen::<f64>()) * mib) as u64;
        let g_c = (6.0 + normal(&mut rng)).max(0.0);
        t_peak = t_peak.max(t_rss);
        p_peak = p_peak.max(p_rss);
        g_peak = g_peak.max(g_rss);
        // Peak RSS (VmHWM) so far, and Postgres PSS (shared buffers counted once).
        csv.push_str(&format!(
            "{},{t_rss},{t_c:.1},1,{p_rss},{p_c:.1},7,{g_rss},{g_c:.1},{t_peak},{},{g_peak}\n",
            k * 250,
            p_rss * 2 / 5
        ));
        t_cpu += t_c;
        p_cpu += p_c;
        g_cpu += g_c;
        n += 1.0;
    }
    std::fs::write(dir.join("resources.csv"), csv).expect("write csv");
    let round1 = |x: f64| (x * 100.0).round() / 100.0;
    let resources = ResourceSummary {
        samples: n as u64,
        target_rss_peak_bytes: Some(t_peak),
        target_cpu_mean_percent: Some(round1(t_cpu / n)),
        postgres_rss_peak_bytes: Some(p_peak),
        postgres_cpu_mean_percent: Some(round1(p_cpu / n)),
        generator_rss_peak_bytes: Some(g_peak),
        generator_cpu_mean_percent: Some(round1(g_cpu / n)),
        ..ResourceSummary::default()
    };
    // The runtime probe: 1 ms sleeps after the warm-up, waking 30–150 µs late.
    let mut probe_lag = new_histogram();
    for _ in 0..MEASURED.as_millis() {
        record_clamped(
            &mut probe_lag,
            30 + (120.0 * generator_rng.r#gen::<f64>()) as u64,
        );
    }
    let started_at = Instant::now();
    let outcome = EngineOutcome {
        started_at,
        ended_at: started_at + WARMUP + MEASURED,
        cancelled: false,
        users_started: USERS,
        peak_users_busy: 3,
        max_users: MAX_USERS,
        generator_threads: 2,
        probe_lag,
        first_send_late_us: None,
        stopped_early: None,
        flow_steps_skipped: 0,
        iterations_measured: None,
    };
    build_measurement(
        &recording,
        &plan,
        &PhaseFacts {
            model: LoadModel::Open,
            max_error_rate: 0.5,
            outcome: &outcome,
            resources: &resources,
            partial: false,
            // Fixed, so the fixtures do not depend on the machine that regenerates them.
            generator_cpus_allowed: 2,
        },
        MeasurementFiles {
            latency_hlog: format!("{dir_rel}/latency.hlog"),
            resources_csv: format!("{dir_rel}/resources.csv"),
            target_log: None,
        },
    )
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) {
    let text = serde_json::to_string_pretty(value).expect("encode");
    std::fs::write(path, text + "\n").expect("write json");
}

fn knobs(name: &str) -> BTreeMap<String, String> {
    let pool = name.trim_start_matches("pool-");
    BTreeMap::from([
        ("pool_max".to_string(), pool.to_string()),
        ("posts_strategy".to_string(), "batch".to_string()),
    ])
}

fn write_run(run_dir: &Path, repeat: u32, variants: &[(&str, Behaviour)], seed: u64) {
    let (summary, info) = measure_run(run_dir, repeat, variants, seed);
    write_json(&run_dir.join("summary.json"), &summary);
    write_json(&run_dir.join("run.json"), &info);
}

/// Measures every variant into `run_dir` (hlog and CSV files) and returns the run's summary.json
/// and run.json, not yet written.
fn measure_run(
    run_dir: &Path,
    repeat: u32,
    variants: &[(&str, Behaviour)],
    seed: u64,
) -> (Summary, RunInfo) {
    let _ = std::fs::remove_dir_all(run_dir);
    std::fs::create_dir_all(run_dir).expect("create run dir");
    let started_at = rfc3339(EPOCH_SECS + seed);
    let finished_at = rfc3339(EPOCH_SECS + seed + 60);
    let mut summaries = Vec::new();
    for (vi, (name, behaviour)) in variants.iter().enumerate() {
        let mut reps = Vec::new();
        for rep in 1..=repeat {
            let dir_rel = if repeat > 1 {
                format!("{name}/rep-{rep}")
            } else {
                (*name).to_string()
            };
            let rep_seed = seed * 1000 + vi as u64 * 100 + u64::from(rep);
            reps.push(measure(run_dir, &dir_rel, *behaviour, rep_seed));
        }
        summaries.push(VariantSummary {
            name: (*name).to_string(),
            target_kind: "api".into(),
            knobs: knobs(name),
            load_model: LoadModel::Open,
            latency_origin: "scheduled".into(),
            figures: results::aggregate(&reps),
            repetitions: reps,
        });
    }
    let summary = Summary {
        schema_version: results::SCHEMA_VERSION,
        scenario: "fixture-pools".into(),
        load_model: LoadModel::Open,
        partial: false,
        repeat,
        started_at: started_at.clone(),
        finished_at: finished_at.clone(),
        variants: summaries,
        migration_table: None,
        shards: Vec::new(),
        baseline: None,
    };
    let info = RunInfo {
        schema_version: results::SCHEMA_VERSION,
        apibench_version: "0.1.0".into(),
        command_line: vec![
            "apibench".into(),
            "run".into(),
            "scenarios/fixture-pools.toml".into(),
            "--repeat".into(),
            repeat.to_string(),
        ],
        started_at,
        finished_at: Some(finished_at),
        partial: false,
        scenario: ScenarioInfo {
            name: "fixture-pools".into(),
            description: "Synthetic fixture: connection pool of 10 vs 50 under a steady 50 req/s \
                          (for the report, compare and gate tests)."
                .into(),
            path: "scenarios/fixture-pools.toml".into(),
            sha256: "3f1c0e9d2b7a4c5e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcde".into(),
        },
        environment: Environment {
            git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            git_dirty: Some(false),
            apibench_version: "0.1.0".into(),
            cpu_model: Some("Fixture CPU @ 2.40GHz".into()),
            cpu_count: 2,
            kernel: Some("6.1.0".into()),
            hostname: Some("fixture-host".into()),
        },
        postgres: Some(PostgresInfo {
            server_version: "PostgreSQL 15.10".into(),
            provisioned_by: "local binaries (throwaway cluster)".into(),
            settings: BTreeMap::new(),
        }),
        data: DataSpec {
            users: 1000,
            posts: 5000,
            seed: 42,
        },
        load: LoadInfo {
            model: LoadModel::Open,
            users: USERS,
            stages: vec![Stage {
                rate_per_sec: RATE_PER_SEC,
                duration: MEASURED,
            }],
            warmup_ms: 2000,
            duration_ms: 6000,
            think_time_ms: 0,
            request_timeout_ms: 5000,
            find_max: None,
            latency_origin: "scheduled".into(),
            max_users: Some(MAX_USERS),
            max_error_rate: Some(0.5),
            accept_encoding: Some(loadgen::scenario::DEFAULT_ACCEPT_ENCODING.into()),
            timer: Some(loadgen::engine::Timer::Precise),
            generator_threads: Some(2),
            generator_cpus: None,
            generator_warning: None,
        },
        requests: vec![
            RequestInfo {
                name: "get_user".into(),
                method: "GET".into(),
                path: "/api/users/{{user_id}}".into(),
                body: None,
                expect_status: Some(200),
                weight: 7,
            },
            RequestInfo {
                name: "list_posts".into(),
                method: "GET".into(),
                path: "/api/posts?limit=20".into(),
                body: None,
                expect_status: Some(200),
                weight: 3,
            },
        ],
        variants: variants
            .iter()
            .map(|(name, _)| VariantInfo {
                name: (*name).to_string(),
                target_kind: "api".into(),
                target_url: None,
                knobs: knobs(name),
                knob_env: BTreeMap::new(),
            })
            .collect(),
        repeat,
        shard: None,
        merged_from: Vec::new(),
        placement: None,
    };
    (summary, info)
}

/// RFC 3339 for whole seconds since the epoch.
fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const POOL_10_A: Behaviour = Behaviour {
    base_us: 1800.0,
    tail_share: 0.04,
    tail_us: 30_000.0,
    error_share: 0.0,
    late_share: 0.0,
    backlog_share: 0.0,
    rss_mib: 38.0,
    cpu_percent: 22.0,
};
const POOL_50_A: Behaviour = Behaviour {
    base_us: 1600.0,
    tail_share: 0.03,
    tail_us: 12_000.0,
    error_share: 0.004,
    late_share: 0.0,
    backlog_share: 0.0,
    rss_mib: 52.0,
    cpu_percent: 25.0,
};

fn generate(root: &Path) {
    write_run(
        &root.join("run-a"),
        3,
        &[("pool-10", POOL_10_A), ("pool-50", POOL_50_A)],
        1,
    );
    write_run(
        &root.join("run-b"),
        3,
        &[
            (
                "pool-10",
                Behaviour {
                    tail_us: 6_000.0,
                    ..POOL_10_A
                },
            ),
            (
                "pool-50",
                Behaviour {
                    tail_us: 45_000.0,
                    ..POOL_50_A
                },
            ),
        ],
        2,
    );
    write_run(
        &root.join("run-single"),
        1,
        &[
            ("pool-10", POOL_10_A),
            (
                "pool-50",
                Behaviour {
                    late_share: 0.05,
                    ..POOL_50_A
                },
            ),
        ],
        3,
    );
    verdicts_run(&root.join("run-verdicts"));
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Sets a verdict and its reason the way the runner writes them, on a 2-CPU generator (fixed, so
/// the fixture does not depend on the machine that regenerates it).
fn set_verdict(m: &mut Measurement, state: &str, reason: String) {
    m.verdict = state.into();
    m.valid = state != "invalid";
    m.saturated = state == "saturated";
    m.invalid_reason = (state == "invalid").then(|| reason.clone());
    m.verdict_reason = Some(reason);
    m.generator_cpus_allowed = Some(2);
    m.generator_cpu_share = m
        .generator_cpu_mean_percent
        .map(|cpu| (cpu / 2.0).round() / 100.0);
}

/// The generator's health clause of a reason.
fn health(m: &Measurement) -> String {
    format!(
        "send-lag p99 {}, probe p99 {}, generator CPU {:.0} % of 2 CPUs",
        ms(m.send_lag_us.p99),
        ms(m.probe_lag_us.p99),
        m.generator_cpu_mean_percent.unwrap_or(0.0)
    )
}

/// What limited a client-limited stage.
#[derive(Clone, Copy, PartialEq)]
enum Limit {
    Server,
    Users,
    Generator,
}

/// One `[find_max]` stage, as the runner writes it.
fn stage(rate: f64, p99_us: u64, verdict: &str, limit: Limit, bisection: bool) -> StageFigures {
    const BUDGET_P99_US: u64 = 50_000;
    let client_limited = limit != Limit::Server;
    let reason = match (verdict, limit) {
        (_, Limit::Generator) => {
            "generator-bound, not the server: send-lag p99 4.80 ms > 1.00 ms, \
                                  generator CPU 186 % of the 2 CPU(s) it may use"
                .to_string()
        }
        (_, Limit::Users) => {
            "users exhausted: 64 of 64 busy while 19.0 % of sends waited for one".to_string()
        }
        ("saturated", _) => "server saturated: 6.0 % of sends waited for a free user while the \
                             generator was healthy"
            .to_string(),
        _ => "generator healthy: send-lag p99 0.09 ms, probe p99 0.15 ms".to_string(),
    };
    let goodput = if client_limited {
        rate * 0.81
    } else {
        rate * 0.998
    };
    StageFigures {
        rate_per_sec: rate,
        achieved_rps: goodput,
        p99_us,
        requests: (goodput * 4.0) as u64,
        error_rate: 0.0,
        generator_valid: !client_limited,
        within_budget: !client_limited && p99_us <= BUDGET_P99_US,
        verdict: verdict.into(),
        verdict_reason: Some(reason),
        client_limited,
        server_over_budget: false,
        bisection,
        goodput_rps: Some(goodput),
        send_lag_p99_us: if limit == Limit::Generator { 4_800 } else { 90 },
        peak_users_busy: if limit == Limit::Users {
            MAX_USERS as u64
        } else {
            (rate / 20.0).ceil() as u64
        },
        target_cpu_mean_percent: Some(rate * 0.3),
        target_rss_peak_bytes: Some((40 << 20) + (rate as u64) * 40_000),
        postgres_cpu_mean_percent: Some(rate * 0.12),
        postgres_rss_peak_bytes: Some(30 << 20),
        generator_cpu_mean_percent: Some(if limit == Limit::Generator {
            186.0
        } else {
            rate * 0.05
        }),
    }
}

/// `run-verdicts`: `node-before` invalid (its users ran out), `rust-n-plus-one` saturated (a
/// backlog by the server's doing), `rust-tuned` valid. Their ramps (20, 40, 80, … req/s) hold
/// bisection stages; the first failure above `node-before`'s ceiling ran out of users and above
/// `rust-tuned`'s the generator was the bound, so both ceilings are lower bounds, while
/// `rust-n-plus-one`'s is exact, with its resolution.
fn verdicts_run(run_dir: &Path) {
    const NODE_BEFORE: Behaviour = Behaviour {
        base_us: 900_000.0,
        tail_share: 0.1,
        tail_us: 600_000.0,
        error_share: 0.0,
        late_share: 0.0,
        backlog_share: 0.3,
        rss_mib: 180.0,
        cpu_percent: 95.0,
    };
    const N_PLUS_ONE: Behaviour = Behaviour {
        base_us: 6_000.0,
        tail_share: 0.05,
        tail_us: 120_000.0,
        error_share: 0.002,
        late_share: 0.0,
        backlog_share: 0.18,
        rss_mib: 30.0,
        cpu_percent: 60.0,
    };
    const TUNED: Behaviour = Behaviour {
        base_us: 900.0,
        tail_share: 0.02,
        tail_us: 8_000.0,
        error_share: 0.0,
        late_share: 0.0,
        backlog_share: 0.0,
        rss_mib: 24.0,
        cpu_percent: 12.0,
    };
    let (mut summary, mut info) = measure_run(
        run_dir,
        1,
        &[
            ("node-before", NODE_BEFORE),
            ("rust-n-plus-one", N_PLUS_ONE),
            ("rust-tuned", TUNED),
        ],
        4,
    );
    summary.scenario = "fixture-verdicts".into();
    summary.migration_table = Some(MigrationPair {
        before: "node-before".into(),
        after: "rust-tuned".into(),
        fair_before: None,
    });
    info.scenario.name = "fixture-verdicts".into();
    info.scenario.path = "scenarios/fixture-verdicts.toml".into();
    info.scenario.description = "Synthetic fixture: one variant per verdict (invalid, saturated, \
                                 valid), each with a find_max ramp (for the report and migration \
                                 tests)."
        .into();
    info.command_line[2] = info.scenario.path.clone();
    let ramp_rates = [20.0, 40.0, 80.0, 160.0, 320.0];
    info.load.find_max = Some(FindMaxInfo {
        budget: StageBudget {
            p99_budget_us: 50_000,
            max_error_rate: 0.01,
        },
        settle_ms: 1000,
        stop_after_failures: 1,
        stages: ramp_rates
            .iter()
            .map(|&rate_per_sec| Stage {
                rate_per_sec,
                duration: Duration::from_secs(5),
            })
            .collect(),
    });
    for (v, vi) in summary.variants.iter_mut().zip(&mut info.variants) {
        let m = &mut v.figures;
        match v.name.as_str() {
            "node-before" => {
                v.target_kind = "node".into();
                v.knobs = BTreeMap::new();
                m.gc_pause_total_ms = Some(412.5);
                m.gc_pauses = Some(96);
                m.users_started = MAX_USERS as u64;
                m.peak_users_busy = MAX_USERS as u64;
                m.users_exhausted = true;
                let share = 100.0 * m.backlogged_sends as f64 / m.sends.max(1) as f64;
                let rate = m.target_rate_per_sec.unwrap_or(RATE_PER_SEC);
                let needed = (rate * m.latency_us.mean / 1e6).ceil();
                let reason = format!(
                    "users exhausted: {MAX_USERS} of {MAX_USERS} busy while {share:.1} % of sends \
                     waited for one; this rate at this latency needs ≈ {needed:.0} (Little's law: \
                     {rate:.0}/s × {}); raise [load] max_users",
                    ms(m.latency_us.mean.round() as u64)
                );
                set_verdict(m, "invalid", reason);
                m.stages = vec![
                    stage(20.0, 31_000, "valid", Limit::Server, false),
                    stage(40.0, 2_400_000, "invalid", Limit::Users, false),
                    stage(30.0, 1_900_000, "invalid", Limit::Users, true),
                ];
                m.max_sustainable_rps = Some(20.0);
                m.max_sustainable_resolution_rps = Some(10.0);
                m.max_sustainable_is_lower_bound = true;
            }
            "rust-n-plus-one" => {
                v.knobs =
                    BTreeMap::from([("posts_strategy".to_string(), "n_plus_one".to_string())]);
                m.users_started = 24;
                m.peak_users_busy = 21;
                let share = 100.0 * m.backlogged_sends as f64 / m.sends.max(1) as f64;
                let reason = format!(
                    "server saturated: {share:.1} % of sends waited for a free user (the backlog \
                     counts in latency) while the generator was healthy ({}) and users were \
                     available ({} of {MAX_USERS} busy at most)",
                    health(m),
                    m.peak_users_busy
                );
                set_verdict(m, "saturated", reason);
                m.stages = vec![
                    stage(20.0, 9_000, "valid", Limit::Server, false),
                    stage(40.0, 21_000, "valid", Limit::Server, false),
                    stage(80.0, 310_000, "saturated", Limit::Server, false),
                    stage(60.0, 38_000, "valid", Limit::Server, true),
                    stage(70.0, 95_000, "saturated", Limit::Server, true),
                ];
                m.max_sustainable_rps = Some(60.0);
                m.max_sustainable_resolution_rps = Some(10.0);
            }
            _ => {
                v.knobs = BTreeMap::from([
                    ("pool_max".to_string(), "20".to_string()),
                    ("posts_strategy".to_string(), "batch".to_string()),
                ]);
                let reason = format!("generator healthy: {}", health(m));
                set_verdict(m, "valid", reason);
                m.stages = vec![
                    stage(20.0, 1_900, "valid", Limit::Server, false),
                    stage(40.0, 2_000, "valid", Limit::Server, false),
                    stage(80.0, 2_600, "valid", Limit::Server, false),
                    stage(160.0, 4_100, "valid", Limit::Server, false),
                    stage(320.0, 5_200, "invalid", Limit::Generator, false),
                    stage(240.0, 6_800, "valid", Limit::Server, true),
                    stage(280.0, 4_900, "invalid", Limit::Generator, true),
                ];
                m.max_sustainable_rps = Some(240.0);
                m.max_sustainable_resolution_rps = Some(40.0);
                m.max_sustainable_is_lower_bound = true;
            }
        }
        v.repetitions = vec![m.clone()];
        vi.target_kind = v.target_kind.clone();
        vi.knobs = v.knobs.clone();
    }
    write_json(&run_dir.join("summary.json"), &summary);
    write_json(&run_dir.join("run.json"), &info);
}

#[test]
#[ignore = "writes tests/fixtures; run with --ignored after a schema change"]
fn regenerate_fixtures() {
    generate(&report_support::fixtures_dir());
}

#[test]
#[ignore = "writes tests/fixtures/run-verdicts only"]
fn regenerate_verdicts_fixture() {
    verdicts_run(&report_support::fixtures_dir().join("run-verdicts"));
}

/// The checked-in fixtures are what the generator writes today (so they follow the schema).
#[test]
fn fixtures_are_current() {
    let fresh = tempfile::tempdir().expect("tempdir");
    generate(fresh.path());
    let mut stale = Vec::new();
    for run in ["run-a", "run-b", "run-single", "run-verdicts"] {
        let saved: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                report_support::fixtures_dir()
                    .join(run)
                    .join("summary.json"),
            )
            .expect("fixture summary.json"),
        )
        .expect("fixture json");
        let now: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fresh.path().join(run).join("summary.json")).expect("fresh summary"),
        )
        .expect("fresh json");
        if let Some(difference) = first_difference(&saved, &now, "") {
            stale.push(format!("tests/fixtures/{run}: {difference}"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale fixtures (regenerate with `cargo test -p loadgen --test report_fixtures -- \
         --ignored regenerate_fixtures`):\n{}",
        stale.join("\n")
    );
}

/// Where two JSON values first differ: "variants[0].verdict: saved null, generated \"valid\"".
fn first_difference(
    saved: &serde_json::Value,
    now: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (saved, now) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let missing = Value::Null;
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(
                    a.get(k).unwrap_or(&missing),
                    b.get(k).unwrap_or(&missing),
                    &at,
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if saved == now => None,
        _ => {
            let short = |v: &Value| {
                let text = v.to_string();
                if text.chars().count() > 80 {
                    format!("{}…", text.chars().take(80).collect::<String>())
                } else {
                    text
                }
            };
            Some(format!(
                "{path}: saved {}, generated {}",
                short(saved),
                short(now)
            ))
        }
    }
}

#[test]
fn fixture_verdicts_are_what_the_tests_rely_on() {
    let single = load_fixture("run-single");
    assert!(single.variants[0].figures.valid);
    assert!(!single.variants[1].figures.valid, "pool-50 sends late");
    // The reason names the generator (its wording is the verdict's: "generator late" before
    // send lag existed, "generator-bound, not the server: send-lag p99 …" since).
    assert!(
        single.variants[1]
            .figures
            .invalid_reason
            .as_deref()
            .is_some_and(|r| r.contains("generator")),
        "{:?}",
        single.variants[1].figures.invalid_reason
    );

    let verdicts = load_fixture("run-verdicts");
    let states: Vec<(&str, &str, bool)> = verdicts
        .variants
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.figures.verdict.as_str(),
                v.figures.verdict_reason.is_some(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("node-before", "invalid", true),
            ("rust-n-plus-one", "saturated", true),
            ("rust-tuned", "valid", true)
        ]
    );
    let stages = |name: &str| {
        verdicts
            .variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.figures.stages.clone())
            .unwrap_or_default()
    };
    assert!(
        stages("rust-tuned")
            .iter()
            .any(|s| s.client_limited && s.bisection)
    );
    assert!(stages("node-before").iter().any(|s| s.client_limited));
    assert!(stages("rust-n-plus-one").iter().all(|s| !s.client_limited));
}

fn load_fixture(run: &str) -> Summary {
    serde_json::from_slice(
        &std::fs::read(
            report_support::fixtures_dir()
                .join(run)
                .join("summary.json"),
        )
        .expect("fixture"),
    )
    .expect("parses")
}

/// The end-of-run table of a run with one variant per verdict: send lag beside latency, every
/// reason under its row, the ramp's marks and ceilings, and a migration table without a ratio
/// from the invalid "before".
#[test]
fn the_terminal_table_says_whose_numbers_each_row_holds() {
    let summary = load_fixture("run-verdicts");
    let text = loadgen::output::summary_table(&summary);
    let line = |prefix: &str, containing: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(containing))
            .unwrap_or_else(|| panic!("no line {prefix}…{containing} in:\n{text}"))
            .to_string()
    };
    assert!(line("variant", "goodput").contains("lag p99"), "{text}");
    let tuned = &summary.variants[2].figures;
    let row = line("rust-tuned", "open");
    assert!(
        row.contains(&loadgen::output::format_us(tuned.send_lag_us.p99)),
        "send lag p99 in the row: {row}"
    );
    assert!(row.trim_end().ends_with("valid"), "{row}");
    assert!(line("node-before", "open").trim_end().ends_with("INVALID"));
    assert!(
        line("rust-n-plus-one", "open")
            .trim_end()
            .ends_with("SATURATED")
    );
    line(" ", "invalid: users exhausted: 64 of 64 busy");
    line(" ", "saturated: server saturated:");
    line("latency excludes", "send lag");
    // The ramp: marks, bisection, ceilings with their resolution or as lower bounds.
    let ramp = line("rust-tuned", "≥ 240 req/s");
    assert!(ramp.contains("*280/s 4.9 ms client-limited"), "{ramp}");
    assert!(ramp.contains("*240/s 6.8 ms ✓"), "{ramp}");
    assert!(line("rust-n-plus-one", "60 req/s ±10").contains("80/s 310.0 ms ✗"));
    // The migration table: the invalid "before" gives no ratio at all.
    let migration = &text[text.find("migration (").expect("a migration table")..];
    assert!(
        migration
            .starts_with("migration (the seed's comparison): node-before [INVALID] → rust-tuned"),
        "{migration}"
    );
    // (The notes under the table may quote a reason's own "×", as in Little's law.)
    for row in migration.lines().take_while(|l| !l.starts_with("note:")) {
        assert!(!row.contains('×') && !row.contains('÷'), "{row}");
    }
    assert!(migration.contains("n/a (before invalid)"), "{migration}");
    assert!(
        migration.contains("note: before (node-before) is invalid: users exhausted"),
        "{migration}"
    );
}
