//! Criterion microbenchmarks of apibench's hot paths, and the set-up they share.
//!
//! Load runs (`make bench`) show *that* a configuration is slower; these show *where* the time
//! of one request goes. `make microbench` runs them all and prints where criterion's HTML report
//! is (`target/criterion/report/index.html`); `cargo bench -p apibench-benches -- <group>` runs
//! one group; `cargo bench --workspace -- --test` (part of `make test`) runs every case once.
//!
//! # Map: bench binary → groups → the code they time
//! - `benches/http_path.rs`
//!   - `serialize`: `serde_json::to_vec` of a [`api::User`] and of `GET /api/posts` bodies
//!     ([`api::routes::posts::PostList`]) of 20 and 100 posts with authors.
//!   - `validate`: [`api::ValidatedJson`]`<`[`api::routes::users::NewUser`]`>` on a valid body
//!     and on one with every field wrong.
//!   - `compress`: flate2 gzip of the 100-post body at level 6 — what tower-http's
//!     `CompressionLayer::new()` (the API's `gzip` knob) uses — and level 1 for comparison.
//!   - `router`: the whole [`api::app`] via `tower::ServiceExt::oneshot`, no socket.
//! - `benches/database.rs`
//!   - `db_point_read`: [`api::get_user`] through a pool with and without `test_before_acquire`.
//!   - `db_posts`: [`api::list_posts`] for N = 10, 50, 100, `batch` vs `n_plus_one`.
//! - `benches/password_hash.rs`
//!   - `password_hash`: [`api::PasswordHasher::hash`] at the default and at the test cost.
//! - `benches/recording.rs`
//!   - `metrics_record`: one Prometheus counter + histogram update as `api::metrics::record`
//!     does it.
//!   - `latency_record`: one [`loadgen::schedule::Schedule::take`] step plus one HDR record
//!     ([`loadgen::recorder::record_clamped`]) — the load generator's per-request work.
//! - `benches/generator.rs`
//!   - `generator_request`: the generator's per-request work without the network —
//!     [`loadgen::engine::http::PreparedRequest::build`] for a literal path, a templated point
//!     read and a POST with a rendered body, [`loadgen::recorder::WorkerRecorder::record`], and
//!     build + record together.
//!
//! # This library
//! [`criterion_config`] (short warm-up and measurement so the whole suite stays in minutes on two
//! cores), [`runtime`] (one multi-thread tokio runtime per bench process: pools must be used on
//! the runtime that opened them) and [`fixture`] (one seeded database per bench process).
//!
//! The database is PostgreSQL from [`pgprovision::shared`] (`DATABASE_URL` if set, else
//! Docker, else a throwaway local cluster), migrated and seeded by loadgen's own
//! [`loadgen::database::Databases`] — the same deterministic rows a load run reads — with
//! [`SEEDED_USERS`] users and [`SEEDED_POSTS`] posts, then cloned into `apibench_bench_<pid>`.
//! On a throwaway cluster everything disappears with the process; on a server given by
//! `DATABASE_URL` that one clone is left behind (the seeding template is dropped).
//!
//! It must never measure anything itself, and never be a dependency of `api` or `loadgen`.
//! Set-up failures panic with the cause: a bench binary has no better way to say it cannot run.

use std::sync::OnceLock;
use std::time::Duration;

use api::{AppState, Db, Knobs};
use criterion::Criterion;
use loadgen::database::{DatabaseError, Databases};
use loadgen::scenario::DataSpec;
use tokio::runtime::Runtime;

/// Users seeded into the bench database (ids `1..=SEEDED_USERS`).
pub const SEEDED_USERS: u64 = 1_000;
/// Posts seeded into the bench database, spread over the users.
pub const SEEDED_POSTS: u64 = 5_000;
/// The seed of the data set (the value loadgen scenarios default to).
pub const DATA_SEED: u64 = 42;

/// The suite's defaults: 1 s warm-up, 3 s measurement. Groups that time milliseconds per
/// iteration lower the sample size themselves. Command-line flags (`--save-baseline`,
/// `--baseline`, `--test`, …) are applied on top by `criterion_group!`.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The bench process's tokio runtime: multi-thread, one worker per core, like the API's default.
///
/// # Panics
/// If the runtime cannot be built (the process is out of threads or file descriptors).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the benches' tokio runtime: {e}"))
    })
}

/// A seeded database and everything the database and router benches reach it through.
#[derive(Debug)]
pub struct Fixture {
    /// A pool with the API's default knobs (`test_before_acquire` on).
    pub db: Db,
    /// A second pool on the same database with `test_before_acquire` off.
    pub db_without_test_before_acquire: Db,
    /// The API's state with default knobs (metrics and gzip on) over `db`'s pool.
    pub state: AppState,
}

/// Why the bench database could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot provision PostgreSQL: {0}")]
    Provision(#[from] pgprovision::ProvisionError),
    #[error("cannot seed the bench database: {0}")]
    Seed(#[from] DatabaseError),
    #[error("cannot connect a pool to the bench database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("the API rejected the bench knobs: {0}")]
    Knobs(#[from] api::ConfigError),
}

/// The bench process's seeded database, set up on first use (a few seconds; see the crate docs).
///
/// # Panics
/// If PostgreSQL cannot be provisioned, seeded or connected to; the message says which.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        runtime()
            .block_on(set_up())
            .unwrap_or_else(|e| panic!("database benches cannot run: {e}"))
    })
}

async fn set_up() -> Result<Fixture, SetupError> {
    let server = pgprovision::shared()?;
    let data = DataSpec {
        users: SEEDED_USERS,
        posts: SEEDED_POSTS,
        seed: DATA_SEED,
    };
    let nonce = format!("bench_{}", std::process::id());
    let databases = Databases::prepare(Some(server.url()), &data, &nonce).await?;
    let url = databases.fresh_copy(&format!("apibench_{nonce}")).await?;
    databases.cleanup().await;

    let knobs = Knobs::default();
    let pool = api::db::connect(&url, &knobs).await?;
    let without_test = Knobs {
        test_before_acquire: false,
        ..knobs.clone()
    };
    let pool_without_test = api::db::connect(&url, &without_test).await?;
    Ok(Fixture {
        db: Db::new(pool.clone()),
        db_without_test_before_acquire: Db::new(pool_without_test),
        state: AppState::new(pool, knobs)?,
    })
}

/// The id of a seeded user for iteration `i`: cycles through every user so that a point-read
/// bench does not time one hot row.
pub fn seeded_user_id(i: u64) -> i64 {
    // SEEDED_USERS is a small constant, so the conversion cannot fail.
    i64::try_from(1 + i % SEEDED_USERS).unwrap_or(1)
}
