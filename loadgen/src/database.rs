//! The database of a run: provisioned once (`--database-url`, else `pgprovision`'s choice from
//! the environment), migrated with the API's own migrations, seeded once into a *template*
//! database, and cloned with `CREATE DATABASE … TEMPLATE` for every variant and repetition, so
//! each starts from byte-identical data. `url` targets need none of this.
//!
//! Seeding is set-based SQL (`generate_series`), deterministic for a given `[data]` section:
//! row `n` always has the same email, name, author and text. Every seeded user shares ONE
//! precomputed argon2id PHC string ([`SEED_PASSWORD_HASH`]): hashing 10 000 passwords at the
//! API's default cost would take minutes of CPU and measure nothing — the seeded rows are read,
//! never logged in to — while a real PHC string keeps each row the size and shape the API writes.
//!
//! Faults (`[[faults]]`, [`crate::faults`]) reach the server through here: terminating every
//! session of one variant's copy, and a fast restart of a cluster apibench started itself. The
//! server handle sits behind a lock so that a restart (which replaces the postmaster) can happen
//! while the load holds `&Databases`; nothing else ever waits on that lock for long.

use crate::results::PostgresInfo;
use crate::scenario::DataSpec;
use pgprovision::{Provision, ProvisionedBy};
use sqlx::Connection;
use std::time::Duration;

/// argon2id (m = 19456 KiB, t = 2, p = 1 — the API's defaults) of "correct horse battery staple"
/// with a fixed salt. Generated once with the `argon2` crate; see the module docs for why one.
pub const SEED_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YXBpYmVuY2gtc2VlZC1zYWx0$hfB+u6dTWBX60DTkMWSquH1UqTxbFDgRCiarP9Z8T2k";

/// Why the database could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot provision Postgres: {0}")]
    Provision(String),
    #[error("cannot create database {name}: {detail}")]
    Create { name: String, detail: String },
    #[error("cannot migrate {name}: {source}")]
    Migrate {
        name: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot seed {name}: {source}")]
    Seed { name: String, source: sqlx::Error },
    #[error("{action} failed: {detail}")]
    Fault {
        action: &'static str,
        detail: String,
    },
}

/// How long the `pg_terminate` fault's own connection and statement may take.
const FAULT_SQL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to provision a run's server: `database_url` (from `--database-url` or DATABASE_URL) as
/// given; otherwise pgprovision's own choice — except that `own_cluster` (the scenario's faults
/// stop or restart the postmaster) asks for a local cluster, as a container's postmaster is not
/// apibench's process to signal.
pub fn provision_for(database_url: Option<&str>, own_cluster: bool) -> Provision {
    match database_url {
        Some(url) => Provision::Url(url.to_string()),
        None => match Provision::from_env() {
            Provision::Auto if own_cluster => Provision::LocalBinaries,
            chosen => chosen,
        },
    }
}

/// The provisioned server plus the seeded template.
pub struct Databases {
    /// Written only by [`Databases::restart_server`].
    server: tokio::sync::RwLock<pgprovision::Postgres>,
    template: String,
}

impl Databases {
    /// Provisions Postgres, then creates, migrates and seeds the template database.
    pub async fn prepare(
        database_url: Option<&str>,
        data: &DataSpec,
        run_nonce: &str,
    ) -> Result<Databases, DatabaseError> {
        Databases::prepare_with(provision_for(database_url, false), data, run_nonce).await
    }

    /// [`Databases::prepare`] with the provisioning chosen ([`provision_for`]).
    pub async fn prepare_with(
        provision: Provision,
        data: &DataSpec,
        run_nonce: &str,
    ) -> Result<Databases, DatabaseError> {
        let server = pgprovision::Postgres::start(provision)
            .await
            .map_err(|e| DatabaseError::Provision(e.to_string()))?;
        let template = format!("apibench_{run_nonce}_template");
        let url =
            server
                .create_database(&template, None)
                .await
                .map_err(|e| DatabaseError::Create {
                    name: template.clone(),
                    detail: e.to_string(),
                })?;
        let databases = Databases {
            server: tokio::sync::RwLock::new(server),
            template,
        };
        databases.migrate_and_seed(&url, data).await?;
        Ok(databases)
    }

    async fn migrate_and_seed(&self, url: &str, data: &DataSpec) -> Result<(), DatabaseError> {
        let name = self.template.clone();
        let seed_err = |source| DatabaseError::Seed {
            name: name.clone(),
            source,
        };
        // One connection, closed before the template is cloned (a template must be unused).
        let mut conn = sqlx::PgConnection::connect(url).await.map_err(seed_err)?;
        sqlx::migrate!("../api/migrations")
            .run(&mut conn)
            .await
            .map_err(|source| DatabaseError::Migrate {
                name: name.clone(),
                source,
            })?;
        let users = i64::try_from(data.users).unwrap_or(i64::MAX);
        let posts = i64::try_from(data.posts).unwrap_or(i64::MAX);
        // Deterministic: row n's values depend only on n (and the seed for the spread).
        let seed = i64::try_from(data.seed % 1_000_003).unwrap_or(0);
        sqlx::query(
            "INSERT INTO users (email, name, password_hash, created_at)
             SELECT 'user' || g || '@seed.apibench.test', 'Seed User ' || g, $1,
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
             FROM generate_series(1, $2::bigint) AS g",
        )
        .bind(SEED_PASSWORD_HASH)
        .bind(users)
        .execute(&mut conn)
        .await
        .map_err(seed_err)?;
        sqlx::query(
            "INSERT INTO posts (author_id, title, body, created_at)
             SELECT 1 + ((g * 7919 + $3) % $1::bigint), 'Post ' || g,
                    repeat('The quick brown fox jumps over the lazy dog. ', 2 + ((g + $3) % 9)::int),
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
             FROM generate_series(1, $2::bigint) AS g",
        )
        .bind(users)
        .bind(posts)
        .bind(seed)
        .execute(&mut conn)
        .await
        .map_err(seed_err)?;
        sqlx::query("ANALYZE")
            .execute(&mut conn)
            .await
            .map_err(seed_err)?;
        conn.close().await.map_err(seed_err)?;
        Ok(())
    }

    /// A fresh copy of the template; returns its URL.
    pub async fn fresh_copy(&self, name: &str) -> Result<String, DatabaseError> {
        self.server
            .read()
            .await
            .create_database(name, Some(&self.template))
            .await
            .map_err(|e| DatabaseError::Create {
                name: name.to_string(),
                detail: e.to_string(),
            })
    }

    /// Drops a copy (best effort: a failure is logged, not fatal).
    pub async fn drop_copy(&self, name: &str) {
        if let Err(e) = self.server.read().await.drop_database(name).await {
            tracing::warn!("cannot drop database {name}: {e}");
        }
    }

    /// Drops the template; the server itself stops when `self` is dropped (if throwaway).
    pub async fn cleanup(self) {
        self.drop_copy(&self.template).await;
    }

    /// The postmaster of a local cluster (`None` for other servers, and while it restarts).
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.server.try_read().ok()?.postmaster_pid()
    }

    /// How the server was provisioned (`None` only while it restarts).
    pub fn provisioned_by(&self) -> Option<ProvisionedBy> {
        Some(self.server.try_read().ok()?.provisioned_by())
    }

    pub fn info(&self) -> PostgresInfo {
        match self.server.try_read() {
            Ok(server) => PostgresInfo {
                server_version: server.server_version().to_string(),
                provisioned_by: server.provisioned_by().to_string(),
                settings: server.settings().clone(),
            },
            Err(_) => PostgresInfo {
                server_version: "unknown (restarting)".into(),
                ..PostgresInfo::default()
            },
        }
    }

    /// `pg_terminate_backend` on every session of `database` (the `pg_terminate` fault); how
    /// many were terminated. Connects to the server's default database for it.
    pub async fn terminate_connections(&self, database: &str) -> Result<u64, DatabaseError> {
        let url = self.server.read().await.url().to_string();
        let terminate = async {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let (terminated,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM (
                     SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()
                 ) AS sessions WHERE gone",
            )
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(terminated)
        };
        let fault = |detail: String| DatabaseError::Fault {
            action: "pg_terminate",
            detail,
        };
        match tokio::time::timeout(FAULT_SQL_TIMEOUT, terminate).await {
            Ok(Ok(terminated)) => Ok(u64::try_from(terminated).unwrap_or(0)),
            Ok(Err(e)) => Err(fault(e.to_string())),
            Err(_) => Err(fault(format!(
                "no answer within {} s",
                FAULT_SQL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A fast restart of the server (the `pg_restart` fault): only a local cluster apibench
    /// started; returns once it accepts connections again.
    pub async fn restart_server(&self) -> Result<(), DatabaseError> {
        self.server
            .write()
            .await
            .restart()
            .await
            .map_err(|e| DatabaseError::Fault {
                action: "pg_restart",
                detail: e.to_string(),
            })
    }
}
