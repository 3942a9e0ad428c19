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

mod report_support;

use loadgen::recorder::{Collector, Sample, UserRecorder};
use loadgen::results::{
    self, Environment, LoadInfo, Measurement, MeasurementFiles, PostgresInfo, RequestInfo, RunInfo,
    ScenarioInfo, Summary, VariantInfo, VariantSummary,
};
use loadgen::runner::build_measurement;
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
    late_share: f64,
    rss_mib: f64,
    cpu_percent: f64,
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

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
    let plan = plan();
    let (collector, sink) = Collector::start(
        REQUESTS.iter().map(|s| s.to_string()).collect(),
        Instant::now(),
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
        let mut latency = base * (0.25 * normal(&mut rng)).exp();
        if rng.r#gen::<f64>() < b.tail_share {
            latency += b.tail_us * rng.r#gen::<f64>();
        }
        let latency_us = latency.round().max(1.0) as u64;
        let error = rng.r#gen::<f64>() < b.error_share;
        samples.push(Sample {
            request,
            latency_us,
            ttfb_us: Some(latency_us * 4 / 5),
            completed_offset_us: due_us + latency_us,
            sent_offset_us: due_us,
            status: if error { 500 } else { 200 },
            error,
            timed_out: false,
            in_warmup: due < WARMUP,
            generator_late: rng.r#gen::<f64>() < b.late_share,
            backlogged: false,
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
        csv.push_str(&format!(
            "{},{t_rss},{t_c:.1},1,{p_rss},{p_c:.1},7,{g_rss},{g_c:.1}\n",
            k * 250
        ));
        t_peak = t_peak.max(t_rss);
        p_peak = p_peak.max(p_rss);
        g_peak = g_peak.max(g_rss);
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
    };
    build_measurement(
        &recording,
        &plan,
        LoadModel::Open,
        &resources,
        false,
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
    };
    write_json(&run_dir.join("summary.json"), &summary);
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
            users: 16,
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
    };
    write_json(&run_dir.join("run.json"), &info);
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
    rss_mib: 38.0,
    cpu_percent: 22.0,
};
const POOL_50_A: Behaviour = Behaviour {
    base_us: 1600.0,
    tail_share: 0.03,
    tail_us: 12_000.0,
    error_share: 0.004,
    late_share: 0.0,
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
}

#[test]
#[ignore = "writes tests/fixtures; run with --ignored after a schema change"]
fn regenerate_fixtures() {
    generate(&report_support::fixtures_dir());
}

/// The checked-in fixtures are what the generator writes today (so they follow the schema).
#[test]
fn fixtures_are_current() {
    let fresh = tempfile::tempdir().expect("tempdir");
    generate(fresh.path());
    for run in ["run-a", "run-b", "run-single"] {
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
        assert_eq!(
            saved, now,
            "tests/fixtures/{run} is stale: regenerate with \
             `cargo test -p loadgen --test report_fixtures -- --ignored regenerate_fixtures`"
        );
    }
}

#[test]
fn fixture_verdicts_are_what_the_tests_rely_on() {
    let single: Summary = serde_json::from_slice(
        &std::fs::read(report_support::fixtures_dir().join("run-single/summary.json"))
            .expect("fixture"),
    )
    .expect("parses");
    assert!(single.variants[0].figures.valid);
    assert!(!single.variants[1].figures.valid, "pool-50 sends late");
    assert!(
        single.variants[1]
            .figures
            .invalid_reason
            .as_deref()
            .is_some_and(|r| r.contains("late"))
    );
}
