//! The result files' schema: `summary.json` ([`Summary`]) and `run.json` ([`RunInfo`]).
//! Written by `apibench run`, read back by report / compare / gate, so every type here is
//! `Serialize + Deserialize` and the files carry `schema_version`. Units are in the field names.
//!
//! Change a field's meaning → bump [`SCHEMA_VERSION`]. Adding an optional field does not need it.

use crate::scenario::{DataSpec, LoadModel};
use crate::schedule::Stage;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// Values recorded.
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
            count: h.len(),
        }
    }
}

/// One request name's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    pub requests: u64,
    pub errors: u64,
    /// Successful requests only (errors are in `error_latency_us`).
    pub latency_us: Percentiles,
    pub ttfb_us: Percentiles,
    /// Failed requests (wrong status, connection error, timeout), apart: an instant 503 must not
    /// pull the successes' p50 down.
    #[serde(default)]
    pub error_latency_us: Percentiles,
}

/// Files of one measurement, relative to the run directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementFiles {
    pub latency_hlog: String,
    pub resources_csv: String,
    pub target_log: Option<String>,
}

/// The figures of one load phase (one variant, one repetition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// False when the measurement cannot be trusted as the server's; see `invalid_reason`.
    pub valid: bool,
    pub invalid_reason: Option<String>,
    /// Stopped early (Ctrl-C): the figures cover what was measured.
    pub partial: bool,
    /// The users stopped before the schedule's end, and why (`data file accounts exhausted
    /// after 500 rows`); the figures cover what was sent (`partial` is set too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Flow steps not sent because an earlier step of their iteration failed (a failed check,
    /// extraction, status or timeout), after the warm-up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flow_steps_skipped: u64,
    /// A backlog formed (every user busy past its slots) while the generator was healthy and
    /// users were still available: the server's doing, and latency includes the backlog.
    pub saturated: bool,
    /// `valid`, `saturated` or `invalid` ([`crate::verdict::State`]); empty in files written
    /// before it existed.
    #[serde(default)]
    pub verdict: String,
    /// One sentence: why this verdict, naming the evidence.
    #[serde(default)]
    pub verdict_reason: Option<String>,
    /// Open model: mean scheduled rate after warm-up. Closed model: null.
    pub target_rate_per_sec: Option<f64>,
    /// Completed requests (successful + failed) inside the measured window, per second of it.
    pub throughput_rps: f64,
    /// Successful completions inside the measured window per second of it — the throughput
    /// figure that compare and gate use. `None` in files written before it existed.
    #[serde(default)]
    pub goodput_rps: Option<f64>,
    /// After the schedule ended: how long the last in-flight requests took to finish, and how
    /// many there were (they count in the latency figures, not in goodput).
    #[serde(default)]
    pub drain_ms: u64,
    #[serde(default)]
    pub drain_requests: u64,
    /// Open model: scheduled requests never sent — still overdue when the grace after the
    /// schedule's end ran out (an overloaded server or generator). Not in any latency figure.
    #[serde(default)]
    pub dropped_sends: u64,
    /// Requests sent per second of the measured window (the generator's achieved rate).
    pub achieved_send_rate_per_sec: f64,
    pub measured_duration_ms: u64,
    pub warmup_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub error_rate: f64,
    /// Count per HTTP status; "0" = no response (connection error, timeout).
    pub status_counts: BTreeMap<String, u64>,
    /// Successful requests only. Open model: from the scheduled send time (the backlog behind a
    /// busy server counts; the generator's own send lag does not); closed: from the actual send.
    pub latency_us: Percentiles,
    pub ttfb_us: Percentiles,
    /// Failed requests, measured the same way, apart from the successes.
    #[serde(default)]
    pub error_latency_us: Percentiles,
    /// The generator's own lateness per send: actual send − the moment it could have gone
    /// (`max(due, user free)`). Not part of `latency_us`.
    #[serde(default)]
    pub send_lag_us: Percentiles,
    /// Time from the actual send to the response, successes only: the server's own time,
    /// without the backlog that waited for a free user (a ramp stage's "whose limit was it" when
    /// users ran out).
    #[serde(default)]
    pub service_us: Percentiles,
    /// How late a task on the users' runtime woke from a precise 1 ms sleep: a CPU-starved
    /// generator shows here whatever the server does.
    #[serde(default)]
    pub probe_lag_us: Percentiles,
    /// Open model: users started, the most busy at once, and the cap (`[load] max_users`).
    #[serde(default)]
    pub users_started: u64,
    #[serde(default)]
    pub peak_users_busy: u64,
    #[serde(default)]
    pub max_users: u64,
    /// Every user was busy at the cap while slots waited: the client, not the server, limited
    /// the rate. Always invalid.
    #[serde(default)]
    pub users_exhausted: bool,
    /// CPUs the generator may run on (`sched_getaffinity`), and its mean CPU as a share of them.
    #[serde(default)]
    pub generator_cpus_allowed: Option<u32>,
    #[serde(default)]
    pub generator_cpu_share: Option<f64>,
    pub requests_by_name: BTreeMap<String, RequestSummary>,
    /// Null for `url` targets (no process to watch).
    pub target_rss_peak_bytes: Option<u64>,
    pub target_cpu_mean_percent: Option<f64>,
    /// Postgres memory at its peak: PSS (shared buffers counted once) when
    /// `postgres_memory_is_pss`, else the RSS sum over its processes (an upper bound).
    pub postgres_rss_peak_bytes: Option<u64>,
    #[serde(default)]
    pub postgres_memory_is_pss: bool,
    pub postgres_cpu_mean_percent: Option<f64>,
    pub generator_rss_peak_bytes: Option<u64>,
    pub generator_cpu_mean_percent: Option<f64>,
    /// The target's peak RSS as the kernel kept it (`VmHWM`): catches spikes between samples.
    #[serde(default)]
    pub target_rss_hwm_bytes: Option<u64>,
    /// Sends after the warm-up that the generator itself delayed by more than 1 ms.
    pub generator_late_sends: u64,
    pub generator_late_share: f64,
    /// Sends whose slot was already overdue when a user became free.
    pub backlogged_sends: u64,
    /// Sends after the warm-up.
    pub sends: u64,
    pub files: MeasurementFiles,
    /// Node targets: GC pause time during the measured phase (`nodejs_gc_duration_seconds_sum`
    /// after minus before), ms. `None` for targets without a GC (the Rust API) or without
    /// `/metrics`.
    #[serde(default)]
    pub gc_pause_total_ms: Option<f64>,
    /// Node targets: GC pauses during the measured phase (`nodejs_gc_duration_seconds_count`).
    #[serde(default)]
    pub gc_pauses: Option<u64>,
    /// `[find_max]` scenarios: one entry per ramp stage that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageFigures>,
    /// `[find_max]` scenarios: the highest stage rate within the budget (see [`max_sustainable_rps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sustainable_rps: Option<f64>,
    /// `[find_max]`: the gap between the ceiling and the lowest failing rate above it after the
    /// bisection (the ceiling's resolution), req/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sustainable_resolution_rps: Option<f64>,
    /// `[find_max]`: the first failing stage above the ceiling was client-limited (users
    /// exhausted or generator-bound): the server's ceiling is at least `max_sustainable_rps`.
    #[serde(default)]
    pub max_sustainable_is_lower_bound: bool,
    /// `[[faults]]` scenarios: each fault injected during the measured phase, with its errors
    /// and how long the server took to recover ([`crate::faults::FaultRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::faults::FaultRecord>,
}

/// One stage of a `[find_max]` ramp, measured after its settle period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageFigures {
    /// The stage's scheduled rate.
    pub rate_per_sec: f64,
    /// Completed requests per second after the settle period.
    pub achieved_rps: f64,
    pub p99_us: u64,
    pub requests: u64,
    pub error_rate: f64,
    /// The generator kept its schedule (see `invalid_reason` of a measurement).
    pub generator_valid: bool,
    /// p99 ≤ budget, error rate < the maximum, and the generator valid.
    pub within_budget: bool,
    /// The stage's verdict (`valid` / `saturated` / `invalid`) and its reason.
    #[serde(default)]
    pub verdict: String,
    #[serde(default)]
    pub verdict_reason: Option<String>,
    /// The client (users exhausted, generator-bound), not the server, limited this stage: it
    /// never counts as the server's ceiling.
    #[serde(default)]
    pub client_limited: bool,
    /// Users ran out or the generator was judged bound, yet the server's own p99 from the actual
    /// send, less the runtime probe's p99 lateness, was already over the p99 budget: no number
    /// of users and no faster generator brings that within budget, so the stage counts as the
    /// server's failure (✗), not as client-limited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub server_over_budget: bool,
    /// Added by the bisection between the last passing and the first failing stage.
    #[serde(default)]
    pub bisection: bool,
    #[serde(default)]
    pub goodput_rps: Option<f64>,
    #[serde(default)]
    pub send_lag_p99_us: u64,
    #[serde(default)]
    pub peak_users_busy: u64,
    #[serde(default)]
    pub target_cpu_mean_percent: Option<f64>,
    #[serde(default)]
    pub target_rss_peak_bytes: Option<u64>,
    #[serde(default)]
    pub postgres_cpu_mean_percent: Option<f64>,
    #[serde(default)]
    pub postgres_rss_peak_bytes: Option<u64>,
    #[serde(default)]
    pub generator_cpu_mean_percent: Option<f64>,
}

/// The `[find_max]` budget a stage must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageBudget {
    pub p99_budget_us: u64,
    /// Exclusive: a stage passes with an error rate strictly below this.
    pub max_error_rate: f64,
}

impl StageBudget {
    /// Whether a stage with these figures is sustainable.
    pub fn admits(
        &self,
        p99_us: u64,
        error_rate: f64,
        generator_valid: bool,
        requests: u64,
    ) -> bool {
        requests > 0
            && generator_valid
            && p99_us <= self.p99_budget_us
            && error_rate < self.max_error_rate
    }
}

/// The highest passing stage rate below the ramp's ceiling — the first run of
/// `failures_to_stop` consecutive over-budget stages (by rate; `0` counts as `1`). `None` when
/// no stage passed before it.
///
/// With `failures_to_stop = 1` every failure is the ceiling (strictest). With 2 (the migration
/// scenario) a single over-budget stage between passing ones — one checkpoint or autovacuum
/// stall on a shared 2-core box — does not cap the result; the stage table still shows it.
pub fn max_sustainable_rps(stages: &[StageFigures], failures_to_stop: u32) -> Option<f64> {
    let mut by_rate: Vec<&StageFigures> = stages.iter().collect();
    by_rate.sort_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec));
    let limit = failures_to_stop.max(1);
    let mut consecutive_failures = 0;
    let mut best = None;
    for stage in by_rate {
        if stage.within_budget {
            consecutive_failures = 0;
            best = Some(stage.rate_per_sec);
        } else {
            consecutive_failures += 1;
            if consecutive_failures >= limit {
                break;
            }
        }
    }
    best
}

/// The ceiling ([`max_sustainable_rps`]) and the lowest failing stage above it: the interval
/// the ramp's bisection narrows. `None` without a ceiling or without a failure above it.
pub fn bisection_bounds(
    stages: &[StageFigures],
    failures_to_stop: u32,
) -> Option<(f64, &StageFigures)> {
    let ceiling = max_sustainable_rps(stages, failures_to_stop)?;
    let fail = stages
        .iter()
        .filter(|s| s.rate_per_sec > ceiling && !s.within_budget)
        .min_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec))?;
    Some((ceiling, fail))
}

/// Which variants the seed's before/after table compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationPair {
    pub before: String,
    pub after: String,
    /// The fair "before": Node on every core the target may use (a second table against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair_before: Option<String>,
}

/// One variant in `summary.json`. The figures at the top level are, with `--repeat N`, medians
/// over the repetitions (`valid` only if every repetition was); `repetitions` holds each
/// repetition's own figures, so spread can be shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub name: String,
    pub target_kind: String,
    pub knobs: BTreeMap<String, String>,
    pub load_model: LoadModel,
    /// "scheduled" (open) or "sent" (closed): where latency is measured from.
    pub latency_origin: String,
    #[serde(flatten)]
    pub figures: Measurement,
    pub repetitions: Vec<Measurement>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: String,
    pub load_model: LoadModel,
    pub partial: bool,
    pub repeat: u32,
    pub started_at: String,
    pub finished_at: String,
    pub variants: Vec<VariantSummary>,
    /// The scenario's `migration_table`, when it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_table: Option<MigrationPair>,
    /// A merged run: one row per shard it was merged from (`apibench merge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<crate::shard::ShardRow>,
    /// `[baseline]`: the database's own ceiling, measured before the variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::baseline::BaselineFigures>,
}

/// Environment facts in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub apibench_version: String,
    pub cpu_model: Option<String>,
    pub cpu_count: usize,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
}

/// The database a run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostgresInfo {
    pub server_version: String,
    pub provisioned_by: String,
    pub settings: BTreeMap<String, String>,
}

/// The load model as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadInfo {
    pub model: LoadModel,
    pub users: usize,
    pub stages: Vec<Stage>,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    pub think_time_ms: u64,
    pub request_timeout_ms: u64,
    pub latency_origin: String,
    /// Open model: the most users the load may grow to.
    #[serde(default)]
    pub max_users: Option<usize>,
    /// At or above this error rate the run is invalid.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// The `Accept-Encoding` header every request sends (`[http] accept_encoding`); `None` = none.
    #[serde(default)]
    pub accept_encoding: Option<String>,
    /// How sends waited for their due time (`--timer`); `None` in files written before it.
    #[serde(default)]
    pub timer: Option<crate::engine::Timer>,
    /// Generator worker threads (`--generator-threads`, `[load] generator_threads`, else one
    /// per CPU the generator may use); `None` in files written before workers existed.
    #[serde(default)]
    pub generator_threads: Option<usize>,
    /// `--generator-cpus`: the CPUs the workers were pinned to (`None`: not pinned).
    #[serde(default)]
    pub generator_cpus: Option<crate::engine::workers::CpuList>,
    /// The warning `apibench calibrate`'s figures gave for this rate, if any (the target rate is
    /// above 70 % of the calibrated generator ceiling for the CPUs it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_warning: Option<String>,
    /// The `[find_max]` ramp as run, when the scenario has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_max: Option<FindMaxInfo>,
}

/// `[find_max]` in `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindMaxInfo {
    pub budget: StageBudget,
    pub settle_ms: u64,
    pub stop_after_failures: u32,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub name: String,
    pub method: String,
    pub path: String,
    pub body: Option<String>,
    pub expect_status: Option<u16>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantInfo {
    pub name: String,
    pub target_kind: String,
    pub target_url: Option<String>,
    pub knobs: BTreeMap<String, String>,
    /// The environment variables the knobs became.
    pub knob_env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub path: String,
    pub sha256: String,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub apibench_version: String,
    pub command_line: Vec<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub partial: bool,
    pub scenario: ScenarioInfo,
    pub environment: Environment,
    pub postgres: Option<PostgresInfo>,
    pub data: DataSpec,
    pub load: LoadInfo,
    pub requests: Vec<RequestInfo>,
    pub variants: Vec<VariantInfo>,
    pub repeat: u32,
    /// `--shard I/N` and `--start-at`: this run sent one share of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardRunInfo>,
    /// `apibench merge`: the shard directories this run was merged from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// `[cpus]`: where the target, PostgreSQL and the generator ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::placement::PlacementInfo>,
}

/// The typical repetition: numbers → median, booleans → all true (so `valid` means every
/// repetition was valid) except `partial`/`saturated` → any, strings → distinct values joined.
/// A `[find_max]` ramp's figures come from one repetition as a whole (see [`median_ramp`]).
pub fn aggregate(measurements: &[Measurement]) -> Measurement {
    match measurements {
        [] => Measurement::default(),
        [one] => one.clone(),
        many => {
            let values: Vec<Value> = many
                .iter()
                .filter_map(|m| serde_json::to_value(m).ok())
                .collect();
            let merged = merge_values("", &values);
            let mut out: Measurement =
                serde_json::from_value(merged).unwrap_or_else(|_| many[0].clone());
            // Where files are is per repetition; the aggregate points at the first.
            out.files = many[0].files.clone();
            median_ramp(many, &mut out);
            out
        }
    }
}

/// Repetitions' ramps: the maximum is the *lower median* of the repetitions' maxima, shown with
/// that repetition's own stages and resolution (field-by-field medians would pair one
/// repetition's maximum with another's stages: "875 req/s (over budget at 800)"). It is a lower
/// bound ("≥") unless enough repetitions were exact at or below it to pin the median there: each
/// repetition's true maximum is at least its figure, so the true median is at least this one,
/// and at most it only when ⌈n/2⌉ exact maxima are ≤ it. A repetition whose ramp found no
/// maximum counts as below every other.
fn median_ramp(reps: &[Measurement], out: &mut Measurement) {
    if reps.iter().all(|m| m.stages.is_empty()) {
        return;
    }
    let mut order: Vec<&Measurement> = reps.iter().collect();
    order.sort_by(|a, b| {
        let key = |m: &Measurement| m.max_sustainable_rps.unwrap_or(f64::NEG_INFINITY);
        key(a).total_cmp(&key(b))
    });
    let Some(median) = order.get((order.len() - 1) / 2) else {
        return;
    };
    out.stages = median.stages.clone();
    out.max_sustainable_rps = median.max_sustainable_rps;
    out.max_sustainable_resolution_rps = median.max_sustainable_resolution_rps;
    out.max_sustainable_is_lower_bound = match median.max_sustainable_rps {
        None => false,
        Some(max) => {
            let exact_at_or_below = reps
                .iter()
                .filter(|m| {
                    !m.max_sustainable_is_lower_bound
                        && m.max_sustainable_rps.is_some_and(|v| v <= max)
                })
                .count();
            exact_at_or_below < reps.len().div_ceil(2)
        }
    };
}

fn merge_values(key: &str, values: &[Value]) -> Value {
    let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
    let Some(first) = present.first() else {
        return Value::Null;
    };
    match first {
        Value::Bool(_) => {
            let any = present.iter().any(|v| v.as_bool() == Some(true));
            let all = present.iter().all(|v| v.as_bool() == Some(true));
            Value::Bool(if matches!(key, "partial" | "saturated") {
                any
            } else {
                all
            })
        }
        Value::Number(_) => {
            let mut numbers: Vec<f64> = present.iter().filter_map(|v| v.as_f64()).collect();
            numbers.sort_by(f64::total_cmp);
            let n = numbers.len();
            let median = if n % 2 == 1 {
                numbers[n / 2]
            } else {
                (numbers[n / 2 - 1] + numbers[n / 2]) / 2.0
            };
            if present.iter().all(|v| v.is_u64()) {
                Value::from(median.round() as u64)
            } else {
                Value::from(median)
            }
        }
        Value::String(_) => {
            let mut seen: Vec<&str> = Vec::new();
            for v in &present {
                if let Some(s) = v.as_str()
                    && !seen.contains(&s)
                {
                    seen.push(s);
                }
            }
            Value::from(seen.join("; "))
        }
        Value::Object(_) => {
            let mut keys: Vec<&String> = present
                .iter()
                .filter_map(|v| v.as_object())
                .flat_map(|o| o.keys())
                .collect();
            keys.sort();
            keys.dedup();
            let mut out = serde_json::Map::new();
            for k in keys {
                let column: Vec<Value> = present
                    .iter()
                    .map(|v| v.get(k).cloned().unwrap_or(Value::Null))
                    .collect();
                out.insert(k.clone(), merge_values(k, &column));
            }
            Value::Object(out)
        }
        Value::Array(_) | Value::Null => (*first).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(p99: u64, valid: bool) -> Measurement {
        Measurement {
            valid,
            invalid_reason: (!valid).then(|| "late".to_string()),
            target_rate_per_sec: Some(500.0),
            throughput_rps: 499.5,
            requests: 1000,
            latency_us: Percentiles {
                p99,
                ..Percentiles::default()
            },
            ..Measurement::default()
        }
    }

    #[test]
    fn summary_round_trips_through_json() {
        let m = measurement(1234, true);
        let summary = Summary {
            schema_version: SCHEMA_VERSION,
            scenario: "smoke".into(),
            load_model: LoadModel::Open,
            partial: false,
            repeat: 1,
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:01:00Z".into(),
            variants: vec![VariantSummary {
                name: "pool-10".into(),
                target_kind: "api".into(),
                knobs: BTreeMap::from([("pool_max".into(), "10".into())]),
                load_model: LoadModel::Open,
                latency_origin: "scheduled".into(),
                figures: m.clone(),
                repetitions: vec![m],
            }],
            migration_table: None,
            shards: Vec::new(),
            baseline: None,
        };
        let text = serde_json::to_string_pretty(&summary).expect("serializes");
        let value: Value = serde_json::from_str(&text).expect("json");
        // The field names, at the variant's top level.
        let variant = &value["variants"][0];
        for field in [
            "name",
            "valid",
            "invalid_reason",
            "load_model",
            "target_rate_per_sec",
            "throughput_rps",
            "requests",
            "errors",
            "latency_us",
            "requests_by_name",
            "ttfb_us",
            "target_rss_peak_bytes",
            "target_cpu_mean_percent",
            "postgres_cpu_mean_percent",
            "generator_cpu_mean_percent",
        ] {
            assert!(variant.get(field).is_some(), "missing {field}");
        }
        for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(
                variant["latency_us"].get(p).is_some(),
                "missing latency_us.{p}"
            );
        }
        assert_eq!(value["schema_version"], SCHEMA_VERSION);
        let back: Summary = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, summary);
    }

    #[test]
    fn repetitions_aggregate_to_medians_and_validity_of_all() {
        let agg = aggregate(&[
            measurement(100, true),
            measurement(300, false),
            measurement(200, true),
        ]);
        assert_eq!(agg.latency_us.p99, 200);
        assert!(!agg.valid);
        assert_eq!(agg.invalid_reason.as_deref(), Some("late"));
        assert_eq!(agg.requests, 1000);
    }

    /// A repetition's ramp: its maximum (`None`: none found), whether that is a lower bound, and
    /// one stage at `stage_rate` to tell whose stages the aggregate shows.
    fn ramp(max: Option<f64>, lower_bound: bool, stage_rate: f64) -> Measurement {
        Measurement {
            max_sustainable_rps: max,
            max_sustainable_is_lower_bound: lower_bound,
            max_sustainable_resolution_rps: max.map(|m| m / 40.0),
            stages: vec![StageFigures {
                rate_per_sec: stage_rate,
                ..StageFigures::default()
            }],
            ..Measurement::default()
        }
    }

    #[test]
    fn a_ramps_maximum_across_repetitions_is_one_repetitions_with_its_own_stages() {
        // The migration run's node-before: 775 exact, ≥ 875, ≥ 975.
        let agg = aggregate(&[
            ramp(Some(775.0), false, 1.0),
            ramp(Some(875.0), true, 2.0),
            ramp(Some(975.0), true, 3.0),
        ]);
        assert_eq!(agg.max_sustainable_rps, Some(875.0));
        assert_eq!(
            agg.stages[0].rate_per_sec, 2.0,
            "the median repetition's stages"
        );
        assert_eq!(agg.max_sustainable_resolution_rps, Some(875.0 / 40.0));
        // Only one exact maximum at or below 875 of the two needed: the median is at least 875.
        assert!(agg.max_sustainable_is_lower_bound);

        // Two exact maxima at or below the median: it is pinned, whatever the third says.
        let agg = aggregate(&[
            ramp(Some(975.0), true, 3.0),
            ramp(Some(800.0), false, 1.0),
            ramp(Some(875.0), false, 2.0),
        ]);
        assert_eq!(agg.max_sustainable_rps, Some(875.0));
        assert_eq!(agg.stages[0].rate_per_sec, 2.0);
        assert!(!agg.max_sustainable_is_lower_bound);

        // Even counts take the lower median; a ramp that found nothing sorts lowest.
        let agg = aggregate(&[
            ramp(Some(900.0), false, 3.0),
            ramp(None, false, 1.0),
            ramp(Some(700.0), false, 2.0),
            ramp(Some(1_000.0), false, 4.0),
        ]);
        assert_eq!(agg.max_sustainable_rps, Some(700.0));
        assert_eq!(agg.stages[0].rate_per_sec, 2.0);
        // 700 exact, and the one without a maximum is not exact: 1 < 2.
        assert!(agg.max_sustainable_is_lower_bound);

        // Without ramps nothing of this applies.
        let plain = aggregate(&[measurement(100, true), measurement(200, true)]);
        assert!(plain.stages.is_empty() && plain.max_sustainable_rps.is_none());
    }
}

#[cfg(test)]
mod max_sustainable_tests {
    use super::*;

    const BUDGET: StageBudget = StageBudget {
        p99_budget_us: 50_000,
        max_error_rate: 0.001,
    };

    fn stage(rate: f64, p99_us: u64, error_rate: f64, generator_valid: bool) -> StageFigures {
        StageFigures {
            rate_per_sec: rate,
            achieved_rps: rate,
            p99_us,
            requests: 1000,
            error_rate,
            generator_valid,
            within_budget: BUDGET.admits(p99_us, error_rate, generator_valid, 1000),
            ..StageFigures::default()
        }
    }

    #[test]
    fn the_highest_stage_within_budget_wins() {
        let stages = [
            stage(200.0, 3_000, 0.0, true),
            stage(400.0, 9_000, 0.0, true),
            stage(800.0, 400_000, 0.0, true),
        ];
        assert_eq!(max_sustainable_rps(&stages, 1), Some(400.0));
    }

    #[test]
    fn the_budget_is_inclusive_for_p99_and_exclusive_for_errors() {
        assert!(BUDGET.admits(50_000, 0.0, true, 10));
        assert!(!BUDGET.admits(50_001, 0.0, true, 10));
        assert!(BUDGET.admits(1_000, 0.000_9, true, 10));
        assert!(!BUDGET.admits(1_000, 0.001, true, 10));
    }

    #[test]
    fn an_invalid_generator_or_an_empty_stage_disqualifies_it() {
        let stages = [
            stage(200.0, 3_000, 0.0, true),
            stage(400.0, 3_000, 0.0, false),
        ];
        assert_eq!(max_sustainable_rps(&stages, 1), Some(200.0));
        assert!(!BUDGET.admits(1_000, 0.0, true, 0));
    }

    #[test]
    fn no_stage_within_budget_means_none() {
        let stages = [
            stage(200.0, 90_000, 0.0, true),
            stage(400.0, 1_000, 0.5, true),
        ];
        assert_eq!(max_sustainable_rps(&stages, 1), None);
        assert_eq!(max_sustainable_rps(&[], 1), None);
    }

    #[test]
    fn a_passing_stage_above_a_failing_one_does_not_count() {
        // 800/s passed after 400/s failed: only 200/s is a rate every lower rate also held.
        let stages = [
            stage(200.0, 3_000, 0.0, true),
            stage(400.0, 60_000, 0.0, true),
            stage(800.0, 8_000, 0.0, true),
        ];
        assert_eq!(max_sustainable_rps(&stages, 1), Some(200.0));
        // The stage order in the file does not matter, only the rates.
        let shuffled = [stages[2].clone(), stages[0].clone(), stages[1].clone()];
        assert_eq!(max_sustainable_rps(&shuffled, 1), Some(200.0));
    }

    #[test]
    fn bisection_narrows_between_the_ceiling_and_the_first_failure_above_it() {
        let mut stages = vec![
            stage(1200.0, 3_000, 0.0, true),
            stage(1600.0, 9_000, 0.0, true),
            stage(2000.0, 90_000, 0.0, true),
        ];
        let (pass, fail) = bisection_bounds(&stages, 1).expect("bounds");
        assert_eq!((pass, fail.rate_per_sec), (1600.0, 2000.0));
        // A passing bisection stage raises the ceiling; a failing one lowers the bound.
        stages.push(stage(1800.0, 20_000, 0.0, true));
        let (pass, fail) = bisection_bounds(&stages, 1).expect("bounds");
        assert_eq!((pass, fail.rate_per_sec), (1800.0, 2000.0));
        stages.push(stage(1900.0, 70_000, 0.0, true));
        let (pass, fail) = bisection_bounds(&stages, 1).expect("bounds");
        assert_eq!((pass, fail.rate_per_sec), (1800.0, 1900.0));
        assert_eq!(max_sustainable_rps(&stages, 1), Some(1800.0));
        // Nothing failed above the ceiling: nothing to bisect.
        assert!(bisection_bounds(&stages[..2], 1).is_none());
    }

    #[test]
    fn with_two_failures_to_stop_a_lone_hiccup_does_not_cap_the_maximum() {
        let stages = [
            stage(200.0, 105_000, 0.0, true), // one stall
            stage(400.0, 6_000, 0.0, true),
            stage(800.0, 8_000, 0.0, true),
            stage(1600.0, 90_000, 0.0, true),
            stage(2000.0, 9_000, 0.0, true),
            stage(2400.0, 80_000, 0.0, true),
            stage(2800.0, 90_000, 0.0, true), // two in a row: the ceiling
            stage(3200.0, 9_000, 0.0, true),  // beyond the ceiling: not counted
        ];
        assert_eq!(max_sustainable_rps(&stages, 2), Some(2000.0));
        assert_eq!(max_sustainable_rps(&stages, 1), None);
        assert_eq!(max_sustainable_rps(&stages, 0), None);
    }
}

/// serde: leave a zero count out of the file.
fn is_zero(n: &u64) -> bool {
    *n == 0
}
