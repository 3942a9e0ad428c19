//! Configuration: one [`Config`] parsed by clap from flags and environment variables.
//!
//! Every knob of `docs/KNOBS.md` lives in [`Knobs`] (flag `--name-with-dashes`, env `API_NAME`);
//! the knobs are serialised as they are into `/healthz` and the start-up log line, so a result can
//! always say which configuration produced it. The remaining fields (`DATABASE_URL`, `API_LISTEN`,
//! `API_PROVISION`) are configuration, not knobs: they do not change what is measured.
//!
//! This module only parses and checks values; it never opens a socket or a database.

use std::net::SocketAddr;

use clap::{ArgAction, Args, Parser, ValueEnum};
use serde::Serialize;

/// The `api` binary's command line (each flag also reads its environment variable).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    about = "The reference API that apibench measures"
)]
pub struct Config {
    /// PostgreSQL URL; when unset the API provisions a database itself (see --provision).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Address to listen on; port 0 picks a free port (the chosen address is printed to stderr).
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// How to provision PostgreSQL when DATABASE_URL is unset: auto | local | testcontainers | a postgres:// URL.
    #[arg(long, env = "API_PROVISION", default_value = "auto")]
    pub provision: pgprovision::Provision,

    /// The measured switches (docs/KNOBS.md).
    #[command(flatten)]
    pub knobs: Knobs,
}

/// The largest `query_timeout_ms`: PostgreSQL's `statement_timeout` is a 32-bit count of ms.
pub const MAX_QUERY_TIMEOUT_MS: u64 = i32::MAX as u64;

/// The knobs of `docs/KNOBS.md`, exactly as named there.
#[derive(Debug, Clone, PartialEq, Eq, Args, Serialize)]
pub struct Knobs {
    /// Maximum connections in the pool.
    #[arg(long, env = "API_POOL_MAX", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub pool_max: u32,

    /// Connections kept open when idle (at most pool_max).
    #[arg(long, env = "API_POOL_MIN", default_value_t = 10)]
    pub pool_min: u32,

    /// How long a request waits for a pooled connection before it gets 503 + Retry-After.
    #[arg(long, env = "API_POOL_ACQUIRE_TIMEOUT_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_acquire_timeout_ms: u64,

    /// Ping a pooled connection before handing it out.
    #[arg(long, env = "API_TEST_BEFORE_ACQUIRE", default_value_t = true, action = ArgAction::Set)]
    pub test_before_acquire: bool,

    /// How long one SQL statement may run before the request gets 503 + Retry-After (sent to
    /// PostgreSQL as statement_timeout; the client gives up 250 ms later if no answer comes).
    #[arg(long, env = "API_QUERY_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=MAX_QUERY_TIMEOUT_MS))]
    pub query_timeout_ms: u64,

    /// Gzip responses when the client accepts it.
    #[arg(long, env = "API_GZIP", default_value_t = true, action = ArgAction::Set)]
    pub gzip: bool,

    /// Cache-Control + ETag/304 on GET /api/posts/{id}.
    #[arg(long, env = "API_CACHE_HEADERS", default_value_t = true, action = ArgAction::Set)]
    pub cache_headers: bool,

    /// The max-age sent in Cache-Control.
    #[arg(long, env = "API_CACHE_MAX_AGE_SECS", default_value_t = 3600)]
    pub cache_max_age_secs: u64,

    /// How GET /api/posts loads authors: 2 queries (batch) or 1 + N (n_plus_one).
    #[arg(long, env = "API_POSTS_STRATEGY", default_value = "batch")]
    pub posts_strategy: PostsStrategy,

    /// Log output format.
    #[arg(long, env = "API_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Log level; per-request lines are debug.
    #[arg(long, env = "API_LOG_LEVEL", default_value = "info")]
    pub log_level: LogLevel,

    /// Record and serve /metrics.
    #[arg(long, env = "API_METRICS", default_value_t = true, action = ArgAction::Set)]
    pub metrics: bool,

    /// Tokio worker threads; 0 = one per core (tokio's default: the CPUs this process may use).
    #[arg(long, env = "API_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Prepared statements sqlx keeps per connection (0 = none: every statement is parsed anew).
    #[arg(long, env = "API_STATEMENT_CACHE", default_value_t = 100)]
    pub statement_cache: usize,

    /// The global allocator: system | mimalloc. Chosen from API_ALLOCATOR before main runs (the
    /// flag must agree with it).
    #[arg(long, env = "API_ALLOCATOR", default_value = "system")]
    pub allocator: Allocator,

    /// Bodies smaller than this many bytes are sent uncompressed even when gzip is on (tower-http's
    /// default floor is 32).
    #[arg(long, env = "API_GZIP_MIN_BYTES", default_value_t = 1024)]
    pub gzip_min_bytes: u16,

    /// How JSON bodies are serialised: into a buffer sized from the value (presized) or into
    /// axum's default 128-byte buffer that grows (default).
    #[arg(long, env = "API_JSON_BUFFER", default_value = "default")]
    pub json_buffer: JsonBuffer,

    /// The driver of the hot reads (GET /api/users/{id}, /api/users?ids=, /api/posts/{id},
    /// /api/posts): the shared sqlx pool, or pipelined tokio-postgres connections.
    #[arg(long, env = "API_DB_DRIVER", default_value = "sqlx")]
    pub db_driver: DbDriver,

    /// Connections of the tokio-postgres driver; each pipelines the queries sent to it.
    #[arg(long, env = "API_PIPELINED_CONNECTIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pipelined_connections: u32,

    /// argon2id memory cost in KiB.
    #[arg(long, env = "API_ARGON2_MEMORY_KIB", default_value_t = 19456, value_parser = clap::value_parser!(u32).range(8..))]
    pub argon2_memory_kib: u32,

    /// argon2id time cost (iterations).
    #[arg(long, env = "API_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,

    /// argon2id lanes.
    #[arg(long, env = "API_ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_parallelism: u32,
}

impl Default for Knobs {
    /// The documented defaults (what the binary runs with when nothing is set).
    fn default() -> Self {
        Knobs {
            pool_max: 50,
            pool_min: 10,
            pool_acquire_timeout_ms: 3000,
            test_before_acquire: true,
            query_timeout_ms: 2000,
            gzip: true,
            cache_headers: true,
            cache_max_age_secs: 3600,
            posts_strategy: PostsStrategy::Batch,
            log_format: LogFormat::Json,
            log_level: LogLevel::Info,
            metrics: true,
            worker_threads: 0,
            statement_cache: 100,
            allocator: Allocator::System,
            gzip_min_bytes: 1024,
            json_buffer: JsonBuffer::Default,
            db_driver: DbDriver::Sqlx,
            pipelined_connections: 2,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
        }
    }
}

/// A combination of knob values that clap cannot reject on its own.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("pool_min ({pool_min}) must not exceed pool_max ({pool_max})")]
    PoolMinAbovePoolMax { pool_min: u32, pool_max: u32 },
    #[error(
        "db_driver = tokio-postgres needs the database URL (AppState::with_database_url), not only a pool"
    )]
    DriverNeedsUrl,
    #[error("db_driver = tokio-postgres cannot use the database URL: {0}")]
    DatabaseUrl(String),
    #[error(
        "invalid argon2id parameters (memory {memory_kib} KiB, iterations {iterations}, parallelism {parallelism}): {reason}"
    )]
    Argon2Params {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        reason: String,
    },
}

impl Knobs {
    /// Checks the rules that span several knobs (argon2 parameters are checked by
    /// [`crate::password::PasswordHasher::from_knobs`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_min > self.pool_max {
            return Err(ConfigError::PoolMinAbovePoolMax {
                pool_min: self.pool_min,
                pool_max: self.pool_max,
            });
        }
        Ok(())
    }
}

/// How `GET /api/posts` loads the authors of the posts it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostsStrategy {
    /// Two queries: the posts, then their authors `WHERE id = ANY($1)`.
    #[value(name = "batch")]
    Batch,
    /// One query for the posts, then one query per post for its author.
    #[value(name = "n_plus_one")]
    NPlusOne,
}

/// The process's global allocator (see `crate::alloc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocator {
    /// The C library's malloc (glibc's ptmalloc on Linux).
    System,
    /// mimalloc (linked in statically).
    Mimalloc,
}

impl Allocator {
    /// The knob value as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Allocator::System => "system",
            Allocator::Mimalloc => "mimalloc",
        }
    }
}

/// How JSON response bodies are serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonBuffer {
    /// Into a buffer sized from the value's strings, so it never grows.
    Presized,
    /// axum's `Json`: a 128-byte buffer that doubles as needed.
    Default,
}

/// Which client runs the hot read statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum DbDriver {
    /// The shared sqlx pool (one connection per statement in flight).
    #[value(name = "sqlx")]
    #[serde(rename = "sqlx")]
    Sqlx,
    /// `pipelined_connections` tokio-postgres connections, round-robin, each pipelining.
    #[value(name = "tokio-postgres")]
    #[serde(rename = "tokio-postgres")]
    TokioPostgres,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
    Off,
}

/// Log level (per-request lines are `debug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    /// The knob names of docs/KNOBS.md: the first column of its table.
    fn documented_knobs() -> Vec<&'static str> {
        include_str!("../../docs/KNOBS.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn help_lists_every_documented_knob_with_its_env_var() {
        let knobs = documented_knobs();
        assert_eq!(knobs.len(), 22, "the KNOBS.md table changed: {knobs:?}");
        let help = Config::command().render_long_help().to_string();
        for knob in &knobs {
            let flag = format!("--{}", knob.replace('_', "-"));
            let env = format!("API_{}", knob.to_uppercase());
            assert!(help.contains(&flag), "--help lacks {flag}:\n{help}");
            assert!(help.contains(&env), "--help lacks {env}:\n{help}");
        }
        // ...and every knob is in the serialised form /healthz and the results record.
        let serialised = serde_json::to_value(Knobs::default()).unwrap_or_default();
        let mut recorded: Vec<&str> = serialised
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut documented = knobs.clone();
        recorded.sort_unstable();
        documented.sort_unstable();
        assert_eq!(recorded, documented);
    }

    #[test]
    fn every_knob_parses_from_its_flag() {
        let parsed = Config::try_parse_from([
            "api",
            "--database-url=postgres://localhost/x",
            "--listen=127.0.0.1:0",
            "--provision=local",
            "--pool-max=7",
            "--pool-min=2",
            "--pool-acquire-timeout-ms=250",
            "--test-before-acquire=false",
            "--query-timeout-ms=750",
            "--gzip=false",
            "--cache-headers=false",
            "--cache-max-age-secs=60",
            "--posts-strategy=n_plus_one",
            "--log-format=off",
            "--log-level=debug",
            "--metrics=false",
            "--worker-threads=3",
            "--statement-cache=0",
            "--allocator=mimalloc",
            "--gzip-min-bytes=1400",
            "--json-buffer=presized",
            "--db-driver=tokio-postgres",
            "--pipelined-connections=8",
            "--argon2-memory-kib=64",
            "--argon2-iterations=1",
            "--argon2-parallelism=2",
        ]);
        let config = match parsed {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        };
        let expected = Knobs {
            pool_max: 7,
            pool_min: 2,
            pool_acquire_timeout_ms: 250,
            test_before_acquire: false,
            query_timeout_ms: 750,
            gzip: false,
            cache_headers: false,
            cache_max_age_secs: 60,
            posts_strategy: PostsStrategy::NPlusOne,
            log_format: LogFormat::Off,
            log_level: LogLevel::Debug,
            metrics: false,
            worker_threads: 3,
            statement_cache: 0,
            allocator: Allocator::Mimalloc,
            gzip_min_bytes: 1400,
            json_buffer: JsonBuffer::Presized,
            db_driver: DbDriver::TokioPostgres,
            pipelined_connections: 8,
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 2,
        };
        assert_eq!(config.knobs, expected);
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn documented_defaults_are_the_parsed_defaults() {
        // Only meaningful when no API_* variable overrides a default in this environment.
        let config = Config::try_parse_from(["api"]);
        if let Ok(config) = config
            && std::env::vars().all(|(k, _)| !k.starts_with("API_"))
        {
            assert_eq!(config.knobs, Knobs::default());
        }
    }

    #[test]
    fn bad_values_are_rejected() {
        for bad in [
            ["api", "--pool-max=0"],
            ["api", "--gzip=yes"],
            ["api", "--posts-strategy=n-plus-one"],
            ["api", "--log-level=loud"],
            ["api", "--argon2-memory-kib=4"],
            ["api", "--query-timeout-ms=0"],
            ["api", "--query-timeout-ms=2147483648"],
            ["api", "--provision=nonsense"],
            ["api", "--allocator=jemalloc"],
            ["api", "--gzip-min-bytes=65536"],
            ["api", "--json-buffer=big"],
            ["api", "--db-driver=tokio_postgres"],
            ["api", "--pipelined-connections=0"],
            ["api", "--statement-cache=-1"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
        let knobs = Knobs {
            pool_min: 11,
            pool_max: 10,
            ..Knobs::default()
        };
        assert!(knobs.validate().is_err());
    }
}
