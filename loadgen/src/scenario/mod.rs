//! Scenario files (TOML): parsed with spans, validated once, and turned into a [`Scenario`] the
//! runner can execute without further checks. Every error names `file:line:column` and the field
//! (`smoke.toml:14:1: load.rate_per_sec: must be > 0`).
//!
//! This module never touches the network, a database or a process: it only reads one file (and
//! a `[replay]`'s arrivals file).
//!
//! Inside: this file (the types, the raw TOML shapes, `parse`, targets, variants, the error
//! helpers), `requests.rs` (`[[requests]]` and the request shape of flow steps: templates,
//! checks, extractions), `flows.rs` (`[[flows]]`, `[[data_files]]`, variables), `load.rs`
//! (`[load]`, stages, `[find_max]`), `replay.rs` (`[replay]` and its arrivals file), `faults.rs`
//! (`[[faults]]`), `placement.rs` (`[cpus]`, `[baseline]`).

use crate::faults::{FaultAction, FaultSpec, SourceSpot};
use crate::knobs::{self, Knobs};
use crate::results::{MigrationPair, StageBudget};
use crate::schedule::Stage;
use crate::template::Template;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub mod data;
mod faults;
mod flows;
mod load;
mod placement;
mod replay;
mod requests;

use faults::parse_faults;
pub use flows::{FlowSet, UnitSpec};
use flows::{RawCheck, RawDataFile, RawExtract, RawFlow, Scope, SlotAllocator};
use load::{parse_find_max, parse_load};
pub use placement::{CpuPlacement, PgbenchSpec};
use placement::{RawBaseline, RawCpus, parse_baseline, parse_cpus};
pub use replay::{REPLAY_FILE_HEADER, ReplaySpec, ReplayTiming, parse_arrivals};
pub use requests::METHODS;
use requests::{parse_request, weight_field};

/// A scenario that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

/// Open (arrival rate) or closed (users + think time) load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    Open,
    Closed,
}

impl std::fmt::Display for LoadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadModel::Open => "open",
            LoadModel::Closed => "closed",
        })
    }
}

/// The load of every variant.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub model: LoadModel,
    /// Goose users: concurrent connections (open model: the ones started at once).
    pub users: usize,
    /// Open model: the load adds users while every user is busy, up to this many
    /// (default [`DEFAULT_MAX_USERS_FACTOR`] × `users`). Closed model: equals `users`.
    pub max_users: usize,
    /// Generator worker threads; `None`: one per CPU the generator may use (`--generator-threads`
    /// overrides both).
    pub generator_threads: Option<usize>,
    /// At or above this share of failed requests the run is invalid (default 0.5).
    pub max_error_rate: f64,
    /// Measured but excluded from the results; run at the first stage's rate.
    pub warmup: Duration,
    /// Open model: the measured stages (one when the scenario gives `rate_per_sec` + `duration`).
    pub stages: Vec<Stage>,
    /// Measured duration (sum of stages for the open model).
    pub duration: Duration,
    /// Closed model: pause between a user's requests.
    pub think_time: Duration,
    /// A request still unanswered after this counts as an error.
    pub request_timeout: Duration,
    /// `[replay]`: the open model follows a recording's arrivals (then `stages` holds one stage
    /// at the recording's mean rate, for run.json and the report).
    pub replay: Option<ReplaySpec>,
}

impl LoadSpec {
    /// `apibench run --duration`: the measured duration instead of the scenario's (the
    /// warm-up stays). An open model with several stages has no one duration to replace.
    pub fn set_duration(&mut self, duration: Duration) -> Result<(), String> {
        if duration.is_zero() {
            return Err("--duration must be longer than 0 s".into());
        }
        if self.replay.is_some() {
            return Err(
                "--duration: a [replay] lasts as long as its recording; cut the \
                        recording with `apibench import-… --limit N`"
                    .into(),
            );
        }
        match (self.model, self.stages.as_mut_slice()) {
            (LoadModel::Closed, _) => {}
            (LoadModel::Open, [stage]) => stage.duration = duration,
            (LoadModel::Open, stages) => {
                return Err(format!(
                    "--duration replaces one stage's duration, but this scenario has {} \
                     [[load.stages]]: change them in the file",
                    stages.len()
                ));
            }
        }
        self.duration = duration;
        Ok(())
    }
}

/// The open model's default `max_users`: this many times `users`.
pub const DEFAULT_MAX_USERS_FACTOR: usize = 4;
/// The most generator worker threads a scenario may ask for.
pub const MAX_GENERATOR_THREADS: usize = 256;
/// The most users a scenario may ask for.
pub const MAX_USERS_LIMIT: usize = 10_000;

/// `[http]`: how every request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    /// The `Accept-Encoding` header; `None` sends none (the server answers uncompressed).
    pub accept_encoding: Option<String>,
}

/// Ask for gzip, as browsers do (the body is read to its end, never decompressed).
pub const DEFAULT_ACCEPT_ENCODING: &str = "gzip";

impl Default for HttpSpec {
    fn default() -> HttpSpec {
        HttpSpec {
            accept_encoding: Some(DEFAULT_ACCEPT_ENCODING.to_string()),
        }
    }
}

/// What a variant runs against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSpec {
    /// The reference API, started by apibench.
    Api,
    /// The Node.js baseline (baselines/node), started by apibench.
    Node,
    /// An already-running server; no database, no process management.
    Url { url: String },
}

impl TargetSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSpec::Api => "api",
            TargetSpec::Node => "node",
            TargetSpec::Url { .. } => "url",
        }
    }
    /// Whether apibench must provide a database for this target.
    pub fn needs_database(&self) -> bool {
        !matches!(self, TargetSpec::Url { .. })
    }
}

/// One kind of request of the mix.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub name: String,
    pub method: String,
    pub path: Template,
    pub body: Option<Template>,
    /// The templates as written, for run.json.
    pub path_source: String,
    pub body_source: Option<String>,
    /// `None`: any 2xx succeeds.
    pub expect_status: Option<u16>,
    pub weight: u32,
    /// The headers as written (`{{…}}` in a value is compiled into `step.headers`).
    pub headers: BTreeMap<String, String>,
    /// Header templates, checks and extractions (empty for a plain request).
    pub step: crate::flow::StepSpec,
}

/// A named configuration of the target.
#[derive(Debug, Clone)]
pub struct VariantSpec {
    pub name: String,
    pub knobs: Knobs,
    pub target: TargetSpec,
}

/// The seed data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataSpec {
    pub users: u64,
    pub posts: u64,
    pub seed: u64,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    /// sha256 of the file's bytes, hex — and of the data files and replay arrivals it reads,
    /// when it has any (see `scenario_sha256`).
    pub sha256: String,
    pub data: DataSpec,
    pub load: LoadSpec,
    pub http: HttpSpec,
    pub requests: Vec<RequestSpec>,
    pub variants: Vec<VariantSpec>,
    /// `[find_max]`: a second load phase per variant, a ramp to find its maximum sustainable rate.
    pub find_max: Option<FindMaxSpec>,
    /// `migration_table = { before = "…", after = "…" }`: the variants of the seed's table.
    pub migration_table: Option<MigrationPair>,
    /// `[[faults]]`: injected during every variant's measured phase, in time order.
    pub faults: Vec<FaultSpec>,
    /// The units the weighted pick chooses from (top-level requests, then `[[flows]]`), and
    /// the `[[data_files]]` they feed on.
    pub flows: std::sync::Arc<FlowSet>,
    /// `[cpus]`: where the target, PostgreSQL and the generator may run.
    pub cpus: CpuPlacement,
    /// `[baseline] pgbench = {…}`: measure the database's own ceiling before the variants.
    pub baseline: Option<PgbenchSpec>,
}

/// The ramp of `[find_max]`: run after the fixed-rate phase, on the same running target.
#[derive(Debug, Clone, PartialEq)]
pub struct FindMaxSpec {
    pub budget: StageBudget,
    /// The start of every stage that is sent but not measured (queues adjust to the new rate).
    pub settle: Duration,
    /// Rising rates; each is run as a load phase of its own (settle + duration).
    pub stages: Vec<Stage>,
    /// Stop the ramp after this many consecutive stages over budget (0: run every stage).
    pub stop_after_failures: u32,
}

/// The `[find_max]` defaults: the "p99 within 50 ms with under 0.1 % errors".
pub const DEFAULT_P99_BUDGET_MS: f64 = 50.0;
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.001;
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    data: Option<RawData>,
    load: Spanned<RawLoad>,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    target: Option<Spanned<RawTarget>>,
    #[serde(default)]
    requests: Vec<Spanned<RawRequest>>,
    #[serde(default)]
    variants: Vec<Spanned<RawVariant>>,
    #[serde(default)]
    find_max: Option<Spanned<RawFindMax>>,
    #[serde(default)]
    migration_table: Option<Spanned<RawMigrationTable>>,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    flows: Vec<Spanned<RawFlow>>,
    #[serde(default)]
    data_files: Vec<Spanned<RawDataFile>>,
    #[serde(default)]
    cpus: Option<RawCpus>,
    #[serde(default)]
    baseline: Option<Spanned<RawBaseline>>,
    #[serde(default)]
    replay: Option<Spanned<replay::RawReplay>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: Spanned<String>,
    action: Spanned<String>,
    duration: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFindMax {
    p99_budget_ms: Option<Spanned<f64>>,
    max_error_rate: Option<Spanned<f64>>,
    settle: Option<Spanned<String>>,
    stop_after_failures: Option<Spanned<i64>>,
    stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMigrationTable {
    before: Spanned<String>,
    after: Spanned<String>,
    fair_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    users: Option<Spanned<i64>>,
    posts: Option<Spanned<i64>>,
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    model: Option<Spanned<String>>,
    rate_per_sec: Option<Spanned<f64>>,
    users: Option<Spanned<i64>>,
    max_users: Option<Spanned<i64>>,
    generator_threads: Option<Spanned<i64>>,
    max_error_rate: Option<Spanned<f64>>,
    duration: Option<Spanned<String>>,
    warmup: Option<Spanned<String>>,
    think_time: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    accept_encoding: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    rate_per_sec: Spanned<f64>,
    duration: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    body: Option<Spanned<String>>,
    expect_status: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    /// Flow steps only: `{ variable = { json = "/ptr" } | { header = "name" } | { regex = "…" } }`.
    extract: Option<BTreeMap<Spanned<String>, Spanned<RawExtract>>>,
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: Spanned<String>,
    #[serde(default)]
    knobs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    target: Option<Spanned<RawTarget>>,
}

/// Default seed data when a scenario has no `[data]`.
pub const DEFAULT_DATA: DataSpec = DataSpec {
    users: 1_000,
    posts: 5_000,
    seed: 42,
};

/// sha256 of the scenario's text, then — only when it reads any — of each data file and replay
/// arrivals file in turn (a NUL, its path as the scenario writes it, a NUL, its bytes): two runs
/// with the same hash used the same inputs wherever the checkout is, and a scenario without side
/// files keeps the plain file hash (`sha256sum scenario.toml`).
fn scenario_sha256(text: &str, side_files: &[(String, PathBuf)]) -> Result<String, ScenarioError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(text.as_bytes());
    for (written, file) in side_files {
        let bytes = std::fs::read(file).map_err(|source| ScenarioError::Read {
            path: file.clone(),
            source,
        })?;
        hasher.update(b"\0");
        hasher.update(written.as_bytes());
        hasher.update(b"\0");
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses scenario text; `path` names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let cx = Cx {
        text,
        file: path.display().to_string(),
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let field = cx.field_at(&span);
        cx.err(&span, &field, e.message().trim())
    })?;
    // Read again once everything parsed: the hash covers what the run will use.
    let side_files: Vec<(String, PathBuf)> = flows::data_file_paths(&raw.data_files, path)
        .into_iter()
        .chain(raw.replay.as_ref().map(|r| r.get_ref().arrivals_path(path)))
        .collect();

    let name = raw.name.get_ref().trim().to_string();
    check_name(&cx, &raw.name, "name")?;

    let data = match &raw.data {
        None => DEFAULT_DATA,
        Some(d) => DataSpec {
            users: positive(&cx, d.users.as_ref(), "data.users", DEFAULT_DATA.users)?,
            posts: positive(&cx, d.posts.as_ref(), "data.posts", DEFAULT_DATA.posts)?,
            seed: d.seed.unwrap_or(DEFAULT_DATA.seed),
        },
    };

    let mut load = parse_load(&cx, &raw.load, raw.replay.is_some())?;
    let http = match raw.http.as_ref().and_then(|h| h.accept_encoding.as_ref()) {
        None => HttpSpec::default(),
        Some(value) => {
            let text = value.get_ref().trim();
            if text.is_empty() || text.eq_ignore_ascii_case("none") {
                HttpSpec {
                    accept_encoding: None,
                }
            } else if reqwest::header::HeaderValue::from_str(text).is_err() {
                return Err(cx.err(
                    &value.span(),
                    "http.accept_encoding",
                    "not a valid header value; e.g. \"gzip\", \"identity\" or \"none\" (no header)",
                ));
            } else {
                HttpSpec {
                    accept_encoding: Some(text.to_string()),
                }
            }
        }
    };

    let data_files = flows::parse_data_files(&cx, &raw.data_files, path)?;
    let (requests, flows) = flows::parse_work(&cx, &raw.requests, &raw.flows, data_files, &data)?;

    let default_target = match &raw.target {
        Some(t) => parse_target(&cx, t, "target")?,
        None => TargetSpec::Api,
    };
    let mut variants = Vec::new();
    let mut variant_names = BTreeSet::new();
    for raw_variant in &raw.variants {
        let v = raw_variant.get_ref();
        check_name(&cx, &v.name, "variants.name")?;
        let name = v.name.get_ref().trim().to_string();
        if !variant_names.insert(name.clone()) {
            return Err(cx.err(
                &v.name.span(),
                "variants.name",
                &format!("duplicate variant name `{name}`"),
            ));
        }
        let target = match &v.target {
            Some(t) => parse_target(&cx, t, "variants.target")?,
            None => default_target.clone(),
        };
        let mut knobs = Knobs::new();
        for (key, value) in &v.knobs {
            let rendered = knobs::validate_knob(key.get_ref(), value.get_ref()).map_err(|m| {
                cx.err(
                    &key.span(),
                    &format!("variants.knobs.{}", key.get_ref()),
                    &m,
                )
            })?;
            knobs.insert(key.get_ref().clone(), rendered);
        }
        check_pool_bounds(&cx, v, &knobs, &name)?;
        if !knobs.is_empty() && !target.needs_database() {
            return Err(cx.err(
                &raw_variant.span(),
                "variants.knobs",
                &format!(
                    "variant `{name}` sets knobs but its target is kind = \"url\", which apibench does not start and cannot configure"
                ),
            ));
        }
        variants.push(VariantSpec {
            name,
            knobs,
            target,
        });
    }
    if variants.is_empty() {
        variants.push(VariantSpec {
            name: "default".into(),
            knobs: Knobs::new(),
            target: default_target,
        });
    }

    replay::parse_replay(&cx, &raw, path, &mut load, requests.len())?;
    let find_max = match &raw.find_max {
        None => None,
        Some(f) => Some(parse_find_max(&cx, f, &load)?),
    };
    let migration_table = match &raw.migration_table {
        None => None,
        Some(m) => {
            let m = m.get_ref();
            let fields = [("before", Some(&m.before)), ("after", Some(&m.after))]
                .into_iter()
                .chain(std::iter::once(("fair_before", m.fair_before.as_ref())))
                .filter_map(|(field, value)| Some((field, value?)));
            for (field, value) in fields {
                let wanted = value.get_ref().trim();
                if !variants.iter().any(|v| v.name == wanted) {
                    let known: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                    return Err(cx.err(
                        &value.span(),
                        &format!("migration_table.{field}"),
                        &format!(
                            "`{wanted}` is not a variant; the variants are: {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
            Some(MigrationPair {
                before: m.before.get_ref().trim().to_string(),
                after: m.after.get_ref().trim().to_string(),
                fair_before: m
                    .fair_before
                    .as_ref()
                    .map(|f| f.get_ref().trim().to_string()),
            })
        }
    };

    let faults = parse_faults(&cx, &raw.faults, &load, &variants)?;
    let cpus = parse_cpus(&cx, raw.cpus.as_ref())?;
    let baseline = parse_baseline(&cx, raw.baseline.as_ref(), &variants)?;
    let sha256 = scenario_sha256(text, &side_files)?;

    Ok(Scenario {
        name,
        description: raw.description.unwrap_or_default(),
        path: path.to_path_buf(),
        sha256,
        data,
        load,
        http,
        requests,
        variants,
        find_max,
        migration_table,
        faults,
        flows: std::sync::Arc::new(flows),
        cpus,
        baseline,
    })
}

/// The knob defaults the pool check assumes (docs/KNOBS.md; both targets share them).
const DEFAULT_POOL_MAX: i64 = 50;
const DEFAULT_POOL_MIN: i64 = 10;

/// `pool_min ≤ pool_max`, counting a knob the variant leaves out at its default: both targets
/// refuse to start otherwise, so a variant with `pool_max = 5` must set `pool_min` as well.
fn check_pool_bounds(
    cx: &Cx,
    raw: &RawVariant,
    knobs: &Knobs,
    name: &str,
) -> Result<(), ScenarioError> {
    let value = |knob: &str, default: i64| {
        knobs
            .get(knob)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let pool_max = value("pool_max", DEFAULT_POOL_MAX);
    let pool_min = value("pool_min", DEFAULT_POOL_MIN);
    if pool_min <= pool_max {
        return Ok(());
    }
    let key_span = |knob: &str| {
        raw.knobs
            .keys()
            .find(|k| k.get_ref() == knob)
            .map(|k| k.span())
    };
    let (span, message) = if knobs.contains_key("pool_min") {
        (
            key_span("pool_min").unwrap_or(raw.name.span()),
            format!(
                "variant `{name}`: pool_min = {pool_min} is above pool_max = {pool_max}{}; lower pool_min or raise pool_max",
                if knobs.contains_key("pool_max") {
                    ""
                } else {
                    " (the default)"
                }
            ),
        )
    } else {
        (
            key_span("pool_max").unwrap_or(raw.name.span()),
            format!(
                "variant `{name}`: pool_max = {pool_max} is below the default pool_min = {DEFAULT_POOL_MIN}, and both targets refuse pool_min > pool_max; set pool_min too (e.g. pool_min = {pool_max})"
            ),
        )
    };
    Err(cx.err(&span, "variants.knobs.pool_min", &message))
}

/// Parses a duration: `"20s"`, `"1m30s"`, `"500ms"`, `"2h"`, sums of integer parts.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || format!("`{text}` is not a duration; write e.g. \"20s\", \"1m30s\", \"500ms\"");
    if trimmed.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let factor_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(factor_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total_ms))
}

struct Cx<'a> {
    text: &'a str,
    file: String,
}

impl Cx<'_> {
    fn err(&self, span: &Range<usize>, field: &str, message: &str) -> ScenarioError {
        let (line, column) = line_col(self.text, span.start);
        ScenarioError::Invalid {
            file: self.file.clone(),
            line,
            column,
            field: if field.is_empty() {
                "(file)".into()
            } else {
                field.into()
            },
            message: message.into(),
        }
    }

    /// Best effort name of the key at or just before `span` (for toml's own errors).
    fn field_at(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let end = span.end.min(self.text.len()).max(start);
        let at = self.text.get(start..end).unwrap_or("");
        let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
        if !at.is_empty() && at.chars().all(is_key) {
            return at.to_string();
        }
        let before = self.text.get(..start).unwrap_or("").trim_end();
        if let Some(before_eq) = before.strip_suffix('=') {
            let key: String = before_eq
                .trim_end()
                .chars()
                .rev()
                .take_while(|c| is_key(*c))
                .collect();
            return key.chars().rev().collect();
        }
        String::new()
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn check_name(cx: &Cx, name: &Spanned<String>, field: &str) -> Result<(), ScenarioError> {
    let n = name.get_ref().trim();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !n.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(cx.err(
            &name.span(),
            field,
            &format!("`{n}` must be 1..=64 characters of A-Z a-z 0-9 - _ . (it names a directory)"),
        ))
    }
}

fn positive(
    cx: &Cx,
    value: Option<&Spanned<i64>>,
    field: &str,
    default: u64,
) -> Result<u64, ScenarioError> {
    match value {
        None => Ok(default),
        Some(v) => u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| cx.err(&v.span(), field, "must be a positive integer")),
    }
}

fn duration_field(
    cx: &Cx,
    value: &Spanned<String>,
    field: &str,
) -> Result<Duration, ScenarioError> {
    parse_duration(value.get_ref()).map_err(|m| cx.err(&value.span(), field, &m))
}

fn rate_field(cx: &Cx, value: &Spanned<f64>, field: &str) -> Result<f64, ScenarioError> {
    let rate = *value.get_ref();
    if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err(cx.err(
            &value.span(),
            field,
            &format!("must be > 0 and <= 1000000 requests per second, got {rate}"),
        ))
    }
}

fn parse_target(
    cx: &Cx,
    raw: &Spanned<RawTarget>,
    field: &str,
) -> Result<TargetSpec, ScenarioError> {
    let t = raw.get_ref();
    let target = match t.kind.get_ref().as_str() {
        "api" => TargetSpec::Api,
        "node" => TargetSpec::Node,
        "url" => {
            let Some(url) = &t.url else {
                return Err(cx.err(
                    &raw.span(),
                    &format!("{field}.url"),
                    "kind = \"url\" needs url = \"http://host:port\" (an already-running server)",
                ));
            };
            let text = url.get_ref().trim().trim_end_matches('/').to_string();
            match reqwest::Url::parse(&text) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
                _ => {
                    return Err(cx.err(
                        &url.span(),
                        &format!("{field}.url"),
                        &format!("`{text}` is not an http(s) URL"),
                    ));
                }
            }
            return Ok(TargetSpec::Url { url: text });
        }
        other => {
            return Err(cx.err(
                &t.kind.span(),
                &format!("{field}.kind"),
                &format!("`{other}` is not a target kind; use \"api\", \"node\" or \"url\""),
            ));
        }
    };
    if let Some(url) = &t.url {
        return Err(cx.err(
            &url.span(),
            &format!("{field}.url"),
            "url is only for kind = \"url\"; apibench starts api and node targets itself",
        ));
    }
    Ok(target)
}
