//! The reference API that apibench measures: axum + sqlx + tokio + tower-http on PostgreSQL.
//!
//! It implements docs/CONTRACT.md (users, posts with embedded authors, a cacheable post,
//! `/healthz`, `/metrics`) with every technique of docs/KNOBS.md behind a switch, so a load run
//! can compare configurations. The Node.js baseline implements the same contract;
//! `tests/contract.rs` checks either one over HTTP.
//!
//! Layout and flow of a request:
//! - [`config`]: the one [`Config`] (clap: flags + `API_*` env), its [`Knobs`].
//! - [`app`] (here): the router — routes, fallbacks, and the layers in order: trace → metrics →
//!   gzip → JSON-error safety net → 64 KiB body limit → handler.
//! - [`extract`]: [`ValidatedJson`] (415 / 413 / 400 `invalid_json` / 422 / 400 validation),
//!   path ids and query strings (400 `bad_request`).
//! - [`routes`]: one module per resource; handlers call [`db`] and shape responses.
//! - [`db`]: pool from the knobs, migrations ([`MIGRATOR`]), row types, every SQL statement,
//!   and the per-[`Db`] statement counter that proves batch (2) vs n_plus_one (1 + N).
//! - [`error`]: [`ApiError`] and the one JSON error shape; constraint violations → 4xx.
//! - [`pipelined`]: the `db_driver = "tokio-postgres"` alternative for the hot reads.
//! - [`json`]: response bodies per the `json_buffer` knob.
//! - [`password`]: argon2id on the blocking pool. [`metrics`], [`telemetry`], [`shutdown`].
//! - [`alloc`]: the `allocator` knob's global allocator (installed by `main.rs` only).
//! - [`Server`] (here): provision/connect, migrate, bind, serve until a signal, close the pool.
//!
//! `main.rs` only parses the [`Config`], sets up logging, builds the runtime with the
//! `worker_threads` knob and runs a [`Server`]. This crate never depends on the load generator.

pub mod alloc;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod password;
pub mod pipelined;
pub mod routes;
pub mod shutdown;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, map_response};
use axum::routing::{get, post};
use std::time::Duration;

use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate as _, SizeAbove};
use tower_http::trace::TraceLayer;

pub use crate::config::{
    Allocator, Config, ConfigError, DbDriver, JsonBuffer, Knobs, LogFormat, LogLevel, PostsStrategy,
};
pub use crate::db::{
    Db, MIGRATOR, Post, PostWithAuthor, User, get_post, get_user, get_users, list_posts, migrate,
};
pub use crate::error::ApiError;
pub use crate::extract::ValidatedJson;
pub use crate::password::PasswordHasher;

/// What every handler can reach: the database, the knobs, the password hasher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub knobs: Arc<Knobs>,
    pub hasher: PasswordHasher,
}

impl AppState {
    /// Checks the knobs and builds the state over an already connected pool (migrated or not:
    /// see [`migrate`]). `db_driver = "tokio-postgres"` needs the database's URL: use
    /// [`AppState::with_database_url`].
    pub fn new(pool: sqlx::PgPool, knobs: Knobs) -> Result<AppState, ConfigError> {
        if knobs.db_driver == DbDriver::TokioPostgres {
            return Err(ConfigError::DriverNeedsUrl);
        }
        AppState::build(pool, None, knobs)
    }

    /// The same, for either `db_driver`: with `tokio-postgres` the hot reads go through
    /// pipelined connections to `url` (opened on first use, so the schema may be migrated after
    /// this). `url` must name the pool's database.
    pub fn with_database_url(
        pool: sqlx::PgPool,
        url: &str,
        knobs: Knobs,
    ) -> Result<AppState, ConfigError> {
        AppState::build(pool, Some(url), knobs)
    }

    fn build(pool: sqlx::PgPool, url: Option<&str>, knobs: Knobs) -> Result<AppState, ConfigError> {
        knobs.validate()?;
        let hasher = PasswordHasher::from_knobs(&knobs)?;
        let query_timeout = Duration::from_millis(knobs.query_timeout_ms);
        let mut db = Db::new(pool).with_query_timeout(query_timeout);
        if let (DbDriver::TokioPostgres, Some(url)) = (knobs.db_driver, url) {
            let clients = pipelined::PipelinedClients::new(
                url,
                knobs.pipelined_connections,
                query_timeout,
                Duration::from_millis(knobs.pool_acquire_timeout_ms),
            )
            .map_err(|e| ConfigError::DatabaseUrl(e.to_string()))?;
            db = db.with_pipelined(Arc::new(clients));
        }
        Ok(AppState {
            db,
            knobs: Arc::new(knobs),
            hasher,
        })
    }
}

/// The whole HTTP service as a router, configured by `state.knobs`; serve it or drive it with
/// `tower::ServiceExt::oneshot`. Builds no sockets and may be called any number of times.
pub fn app(state: AppState) -> Router {
    let knobs = Arc::clone(&state.knobs);
    let mut router = Router::new()
        .route(
            "/api/users",
            post(routes::users::create).get(routes::users::list),
        )
        .route("/api/users/{id}", get(routes::users::get))
        .route(
            "/api/posts",
            post(routes::posts::create).get(routes::posts::list),
        )
        .route("/api/posts/{id}", get(routes::posts::get))
        .route("/healthz", get(routes::health::healthz))
        .route("/openapi.json", get(openapi::serve));
    if knobs.metrics {
        router = router.route("/metrics", get(metrics::render));
    }
    router = router.method_not_allowed_fallback(routes::method_not_allowed);
    if knobs.metrics {
        // After the 405 fallback so that wrong-method requests carry their route template too.
        router = router.route_layer(from_fn(metrics::tag_route));
    }
    // Layers are listed innermost first: each `.layer` wraps everything above it.
    let mut router = router
        .fallback(routes::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(error::MAX_BODY_BYTES))
        .layer(map_response(error::json_error_fallback));
    if knobs.gzip {
        // tower-http's default predicate with the `gzip_min_bytes` knob for its 32-byte floor: gzip
        // makes a short body longer (a 99-byte user: 113 bytes, chunked) and under one TCP segment
        // saves no packet (docs/KNOBS.md has the measurement).
        let worth_compressing = SizeAbove::new(knobs.gzip_min_bytes)
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::SSE);
        router = router.layer(CompressionLayer::new().compress_when(worth_compressing));
    }
    if knobs.metrics && metrics::recorder().is_some() {
        router = router.layer(from_fn(metrics::record));
    }
    router.layer(TraceLayer::new_for_http())
}

/// A started service: database connected and migrated, socket bound, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    /// Keeps a self-provisioned PostgreSQL alive until the server has stopped.
    provisioned: Option<pgprovision::Postgres>,
}

impl Server {
    /// Connects to `DATABASE_URL` (or provisions PostgreSQL per `--provision`), runs the
    /// migrations, binds `--listen`, and logs one start-up line with every knob.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.knobs.validate().context("checking the knobs")?;
        let (url, provisioned) = match &config.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let postgres = pgprovision::Postgres::start(config.provision.clone())
                    .await
                    .with_context(|| format!("provisioning PostgreSQL ({})", config.provision))?;
                (postgres.url().to_owned(), Some(postgres))
            }
        };
        let provisioned_by = provisioned.as_ref().map_or_else(
            || "DATABASE_URL".to_owned(),
            |pg| pg.provisioned_by().to_string(),
        );
        let pool = db::connect(&url, &config.knobs).await.with_context(|| {
            format!("connecting to PostgreSQL at {}", pgprovision::redact(&url))
        })?;
        migrate(&pool)
            .await
            .with_context(|| format!("migrating the database at {}", pgprovision::redact(&url)))?;
        let state = AppState::with_database_url(pool, &url, config.knobs.clone())
            .context("checking the knobs")?;
        let server_version = db::server_version(&state.db)
            .await
            .context("reading the PostgreSQL server version")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener
            .local_addr()
            .with_context(|| format!("reading the bound address of {}", config.listen))?;
        tracing::info!(
            listen = %local_addr,
            database_provisioned_by = %provisioned_by,
            postgres_version = %server_version,
            knobs = %serde_json::to_string(&config.knobs).unwrap_or_default(),
            version = env!("CARGO_PKG_VERSION"),
            "api started"
        );
        Ok(Server {
            listener,
            local_addr,
            state,
            provisioned,
        })
    }

    /// The address actually bound (useful with `--listen 127.0.0.1:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The state the server will serve (its pool, knobs, query counter).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish, closes the pool and — if it provisioned one — stops PostgreSQL.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pool = self.state.db.pool().clone();
        let pipelined = self.state.db.pipelined().cloned();
        axum::serve(self.listener, app(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .with_context(|| format!("serving on {}", self.local_addr))?;
        if let Some(clients) = pipelined {
            clients.close();
        }
        if tokio::time::timeout(shutdown::POOL_CLOSE_PATIENCE, pool.close())
            .await
            .is_err()
        {
            tracing::warn!("the database pool did not close in time; stopping without it");
        }
        drop(self.provisioned);
        tracing::info!("api stopped");
        Ok(())
    }
}
