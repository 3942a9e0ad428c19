//! The database: pool construction from the knobs, migrations, row types and every query.
//!
//! All SQL of the service lives here, written with runtime-checked `sqlx::query_as::<_, T>` so a
//! fresh clone builds without a database. Handlers and benches call the `pub async fn`s below
//! with a [`Db`], never a bare pool: `Db` counts every statement it issues
//! ([`Db::queries_issued`]), which is how tests prove that `n_plus_one` issues 1 + N queries
//! and `batch` issues 2. The count is per `Db` value (shared by its clones), so tests running in
//! parallel in one process do not disturb each other.
//!
//! Every statement is bounded in time ([`Db::query_timeout`], the `query_timeout_ms` knob): it
//! runs on a connection taken from the pool (bounded by `pool_acquire_timeout_ms`), PostgreSQL
//! cancels it itself after `query_timeout_ms` (`statement_timeout`, set when each connection
//! starts), and if the server does not answer at all — paused, partitioned — the client gives up
//! [`QUERY_TIMEOUT_GRACE`] later and closes that connection. So no database path can hang a
//! request; each such failure is a 503 + `Retry-After` ([`ApiError`]).
//!
//! The hot reads (`get_user`, `get_users`, `get_post`, `list_posts`) run on the pool, or — with
//! `db_driver = "tokio-postgres"` — on the pipelined connections of [`crate::pipelined`]
//! ([`Db::with_pipelined`]): same SQL ([`sql`]), same row types, same count, same bounds, same
//! error mapping. Writes, `ping` and migrations always use the pool.
//!
//! Nothing here knows about HTTP except that failures are [`ApiError`]s.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};

use crate::config::{Knobs, PostsStrategy};
use crate::error::{ApiError, DbFailure};
use crate::pipelined::{self, PipelinedClients};

/// The schema of docs/CONTRACT.md (`api/migrations/`), embedded at compile time. Idempotent:
/// `MIGRATOR.run(&pool)` applies only what is missing (under an advisory lock).
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Applies the migrations to `pool`'s database.
///
/// On a connection of its own with `statement_timeout` off: the pool's connections carry the
/// request-sized `query_timeout_ms`, and a migration (an index build on a big table) may
/// legitimately take longer. The connection is closed afterwards, never returned to the pool.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut connection = pool.acquire().await?.detach();
    let migrated = async {
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut connection)
            .await?;
        MIGRATOR.run(&mut connection).await
    }
    .await;
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
    migrated
}

/// Pool options from the knobs.
///
/// `pool_max` bounds the concurrency the database sees (each request holds a connection only
/// for the duration of one statement); `pool_min` keeps warm connections so a burst after idle
/// does not pay connection set-up; `acquire_timeout` is how long a request queues for a
/// connection before it is answered 503 + `Retry-After` instead of piling up.
pub fn pool_options(knobs: &Knobs) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(knobs.pool_max)
        .min_connections(knobs.pool_min.min(knobs.pool_max))
        .acquire_timeout(Duration::from_millis(knobs.pool_acquire_timeout_ms))
        .test_before_acquire(knobs.test_before_acquire)
}

/// Connects a pool to `url` with the knobs' settings; every connection starts with
/// `statement_timeout = query_timeout_ms`, so PostgreSQL stops a statement that overruns (and
/// frees what it holds) even when the client has long given up, and keeps up to
/// `statement_cache` prepared statements (0: each statement is parsed and planned anew).
pub async fn connect(url: &str, knobs: &Knobs) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?
        .options([("statement_timeout", knobs.query_timeout_ms.to_string())])
        .statement_cache_capacity(knobs.statement_cache);
    pool_options(knobs).connect_with(options).await
}

/// How long after `query_timeout_ms` the client stops waiting for an answer. PostgreSQL's own
/// `statement_timeout` fires first whenever the server is alive; its error arrives on a healthy
/// connection that goes back to the pool. Only a server that answers nothing at all (paused,
/// partitioned, out of CPU) reaches the client-side bound, and that connection is closed.
pub const QUERY_TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// A pool plus a count of the statements issued through it and the bound on each statement.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    queries_issued: Arc<AtomicU64>,
    /// The `query_timeout_ms` knob; the client-side bound adds [`QUERY_TIMEOUT_GRACE`].
    query_timeout: Duration,
    /// `db_driver = "tokio-postgres"`: the hot reads go here instead of the pool.
    pipelined: Option<Arc<PipelinedClients>>,
}

impl Db {
    /// Wraps `pool` with the default `query_timeout_ms`; the query count starts at 0.
    pub fn new(pool: PgPool) -> Db {
        Db {
            pool,
            queries_issued: Arc::new(AtomicU64::new(0)),
            query_timeout: Duration::from_millis(Knobs::default().query_timeout_ms),
            pipelined: None,
        }
    }

    /// The same, with the hot reads (`get_user`, `get_users`, `get_post`, `list_posts`) sent
    /// through `clients` instead of the pool (`db_driver = "tokio-postgres"`); writes, `ping` and
    /// `server_version` stay on the pool.
    pub fn with_pipelined(self, clients: Arc<PipelinedClients>) -> Db {
        Db {
            pipelined: Some(clients),
            ..self
        }
    }

    /// The pipelined clients, when the hot reads use them.
    pub fn pipelined(&self) -> Option<&Arc<PipelinedClients>> {
        self.pipelined.as_ref()
    }

    /// The same, with `query_timeout` as the bound on each statement (the `query_timeout_ms`
    /// knob; give [`connect`] the same knobs so that the server enforces it too).
    pub fn with_query_timeout(self, query_timeout: Duration) -> Db {
        Db {
            query_timeout,
            ..self
        }
    }

    /// The bound on each statement (the `query_timeout_ms` knob).
    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// The underlying pool (for health checks, gauges, shutdown).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Statements issued through this `Db` (and its clones) so far.
    pub fn queries_issued(&self) -> u64 {
        self.queries_issued.load(Ordering::Relaxed)
    }

    /// Runs one statement, counted, on a connection from the pool, within the query timeout.
    /// Every query in this module goes through here.
    ///
    /// Waiting for the connection is bounded by the pool (`pool_acquire_timeout_ms`, then
    /// `PoolTimedOut` → 503). The statement is bounded by the server's `statement_timeout`
    /// (error 57014 → 503, connection reused) and, should no answer come at all, by
    /// `query_timeout + QUERY_TIMEOUT_GRACE` here. A statement abandoned mid-flight — that bound,
    /// or the request dropped because its client went away — leaves a connection that still
    /// owes a reply, and is closed ([`Lease`]).
    async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, ApiError> {
        self.queries_issued.fetch_add(1, Ordering::Relaxed);
        let mut lease = Lease {
            connection: self.pool.acquire().await?,
            completed: false,
        };
        let bound = self.query_timeout + QUERY_TIMEOUT_GRACE;
        match tokio::time::timeout(bound, statement(&mut lease.connection)).await {
            Ok(result) => {
                lease.completed = true;
                Ok(result?)
            }
            Err(_elapsed) => Err(ApiError::Unavailable(
                sqlx::Error::Io(no_answer_within(bound)).into(),
            )),
        }
    }
}

impl Db {
    /// [`Db::run`] for the pipelined driver: one statement, counted, on the next connection of
    /// `clients`, within the same bounds (opening a connection: `pool_acquire_timeout_ms`; the
    /// statement: the server's `statement_timeout`, then `query_timeout + QUERY_TIMEOUT_GRACE`
    /// here). A connection that let that client-side bound pass is abandoned: it still owes a
    /// reply and, pipelined, would hold every later statement behind it. A request dropped
    /// mid-statement needs no such care: the connection discards the reply when it comes.
    async fn run_pipelined<T>(
        &self,
        clients: &PipelinedClients,
        statement: impl AsyncFnOnce(&pipelined::Connection) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, ApiError> {
        self.queries_issued.fetch_add(1, Ordering::Relaxed);
        let (index, connection) = clients.connection().await?;
        let bound = self.query_timeout + QUERY_TIMEOUT_GRACE;
        match tokio::time::timeout(bound, statement(&connection)).await {
            Ok(result) => Ok(result?),
            Err(_elapsed) => {
                clients.abandon(index, &connection);
                Err(ApiError::Unavailable(DbFailure::NoAnswer(
                    no_answer_within(bound),
                )))
            }
        }
    }
}

impl Db {
    /// One row or none, by the prepared statement `statement` picks, decoded by `decode`.
    async fn pipelined_opt<T>(
        &self,
        clients: &PipelinedClients,
        statement: fn(&pipelined::Statements) -> &tokio_postgres::Statement,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        decode: fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Option<T>, ApiError> {
        self.run_pipelined(clients, async |connection| {
            let row = connection
                .client
                .query_opt(statement(&connection.statements), params)
                .await?;
            row.as_ref().map(decode).transpose()
        })
        .await
    }

    /// Every row, by the prepared statement `statement` picks, decoded by `decode`.
    async fn pipelined_all<T>(
        &self,
        clients: &PipelinedClients,
        statement: fn(&pipelined::Statements) -> &tokio_postgres::Statement,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        decode: fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Vec<T>, ApiError> {
        self.run_pipelined(clients, async |connection| {
            let rows = connection
                .client
                .query(statement(&connection.statements), params)
                .await?;
            rows.iter().map(decode).collect()
        })
        .await
    }
}

/// The I/O error of a statement that got no answer within `bound`.
fn no_answer_within(bound: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from the database within {} ms",
            bound.as_millis()
        ),
    )
}

/// A pooled connection for one statement; closed instead of returned to the pool unless the
/// statement ran to its end (with a result or an error).
///
/// Dropped mid-statement, a connection still owes a reply. sqlx would return it to the pool by
/// pinging it first, and that ping waits for the owed reply — forever on a paused server or a
/// stalled session, holding a pool slot all along. Closed, its slot is free at once and a fresh
/// connection replaces it when one is needed.
struct Lease {
    connection: PoolConnection<Postgres>,
    completed: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.completed {
            self.connection.close_on_drop();
        }
    }
}

/// Serialises a timestamp as JavaScript's `Date.toISOString()` does: UTC, milliseconds, `Z`.
pub fn serialize_timestamp<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&at.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// A user as stored and as represented (the password hash is never selected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A post as stored and as represented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Post {
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub body: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A post in a list: the post's fields plus `"author"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithAuthor {
    #[serde(flatten)]
    pub post: Post,
    pub author: User,
}

// Column lists as macros so the SQL below is `concat!`-ed at compile time: no per-request
// `format!`, and one stable string per statement for sqlx's prepared-statement cache.
macro_rules! user_columns {
    () => {
        "id, email, name, created_at"
    };
}
macro_rules! post_columns {
    () => {
        "id, author_id, title, body, created_at"
    };
}

/// The SQL of the hot reads, shared by both drivers (`db_driver`) so they run the same statements.
pub mod sql {
    pub const GET_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    pub const GET_USERS: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ANY($1) ORDER BY id"
    );
    pub const GET_POST: &str = concat!("SELECT ", post_columns!(), " FROM posts WHERE id = $1");
    pub const LIST_POSTS: &str = concat!(
        "SELECT ",
        post_columns!(),
        " FROM posts ORDER BY created_at DESC, id DESC LIMIT $1"
    );
}

/// Inserts a user; `email` must already be normalised (trimmed, lower-cased).
/// A taken email is [`ApiError::EmailTaken`].
pub async fn insert_user(
    db: &Db,
    email: &str,
    name: &str,
    password_hash: &str,
) -> Result<User, ApiError> {
    let sql = concat!(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING ",
        user_columns!()
    );
    db.run(async |connection| {
        sqlx::query_as::<_, User>(sql)
            .bind(email)
            .bind(name)
            .bind(password_hash)
            .fetch_one(connection)
            .await
    })
    .await
}

/// One user by id, `None` if absent.
pub async fn get_user(db: &Db, id: i64) -> Result<Option<User>, ApiError> {
    if let Some(clients) = &db.pipelined {
        return db
            .pipelined_opt(clients, |s| &s.get_user, &[&id], pipelined::user_from_row)
            .await;
    }
    db.run(async |connection| {
        sqlx::query_as::<_, User>(sql::GET_USER)
            .bind(id)
            .fetch_optional(connection)
            .await
    })
    .await
}

/// The users among `ids` that exist, ordered by id — one statement, `WHERE id = ANY($1)`.
pub async fn get_users(db: &Db, ids: &[i64]) -> Result<Vec<User>, ApiError> {
    if let Some(clients) = &db.pipelined {
        return db
            .pipelined_all(clients, |s| &s.get_users, &[&ids], pipelined::user_from_row)
            .await;
    }
    db.run(async |connection| {
        sqlx::query_as::<_, User>(sql::GET_USERS)
            .bind(ids)
            .fetch_all(connection)
            .await
    })
    .await
}

/// The stored argon2id PHC string of a user (for tests and audits; never served).
pub async fn get_password_hash(db: &Db, id: i64) -> Result<Option<String>, ApiError> {
    db.run(async |connection| {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(connection)
            .await
    })
    .await
}

/// Inserts a post; an unknown author is a 400 `validation_failed` on `author_id`.
pub async fn insert_post(
    db: &Db,
    author_id: i64,
    title: &str,
    body: &str,
) -> Result<Post, ApiError> {
    let sql = concat!(
        "INSERT INTO posts (author_id, title, body) VALUES ($1, $2, $3) RETURNING ",
        post_columns!()
    );
    db.run(async |connection| {
        sqlx::query_as::<_, Post>(sql)
            .bind(author_id)
            .bind(title)
            .bind(body)
            .fetch_one(connection)
            .await
    })
    .await
}

/// One post by id, `None` if absent.
pub async fn get_post(db: &Db, id: i64) -> Result<Option<Post>, ApiError> {
    if let Some(clients) = &db.pipelined {
        return db
            .pipelined_opt(clients, |s| &s.get_post, &[&id], pipelined::post_from_row)
            .await;
    }
    db.run(async |connection| {
        sqlx::query_as::<_, Post>(sql::GET_POST)
            .bind(id)
            .fetch_optional(connection)
            .await
    })
    .await
}

/// The newest `limit` posts, without their authors.
async fn newest_posts(db: &Db, limit: i64) -> Result<Vec<Post>, ApiError> {
    if let Some(clients) = &db.pipelined {
        return db
            .pipelined_all(
                clients,
                |s| &s.list_posts,
                &[&limit],
                pipelined::post_from_row,
            )
            .await;
    }
    db.run(async |connection| {
        sqlx::query_as::<_, Post>(sql::LIST_POSTS)
            .bind(limit)
            .fetch_all(connection)
            .await
    })
    .await
}

/// The newest `limit` posts (`created_at DESC, id DESC`) with their authors.
///
/// `Batch` issues 2 statements (posts, then authors `WHERE id = ANY($1)`); `NPlusOne` issues
/// 1 + N (one author lookup per post, sequentially — the pattern being measured). With no posts
/// both issue 1. The result is identical either way.
pub async fn list_posts(
    db: &Db,
    limit: i64,
    strategy: PostsStrategy,
) -> Result<Vec<PostWithAuthor>, ApiError> {
    let posts = newest_posts(db, limit).await?;
    if posts.is_empty() {
        return Ok(Vec::new());
    }
    match strategy {
        PostsStrategy::Batch => {
            let mut author_ids: Vec<i64> = posts.iter().map(|p| p.author_id).collect();
            author_ids.sort_unstable();
            author_ids.dedup();
            let authors: HashMap<i64, User> = get_users(db, &author_ids)
                .await?
                .into_iter()
                .map(|u| (u.id, u))
                .collect();
            posts
                .into_iter()
                .map(|post| {
                    let author = authors
                        .get(&post.author_id)
                        .cloned()
                        .ok_or_else(|| missing_author(&post))?;
                    Ok(PostWithAuthor { post, author })
                })
                .collect()
        }
        PostsStrategy::NPlusOne => {
            let mut listed = Vec::with_capacity(posts.len());
            for post in posts {
                let author = get_user(db, post.author_id)
                    .await?
                    .ok_or_else(|| missing_author(&post))?;
                listed.push(PostWithAuthor { post, author });
            }
            Ok(listed)
        }
    }
}

/// The foreign key makes this impossible; if it happens anyway it is our bug, hence a 500.
fn missing_author(post: &Post) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "post {} references user {} which does not exist",
        post.id,
        post.author_id
    ))
}

/// `SELECT 1` through the pool (what `/healthz` checks).
pub async fn ping(db: &Db) -> Result<(), ApiError> {
    db.run(async |connection| sqlx::query("SELECT 1").execute(connection).await)
        .await?;
    Ok(())
}

/// The server's `server_version` setting (for the start-up log line and results).
pub async fn server_version(db: &Db) -> Result<String, ApiError> {
    db.run(async |connection| {
        sqlx::query_scalar::<_, String>("SELECT current_setting('server_version')")
            .fetch_one(connection)
            .await
    })
    .await
}
