//! The `db_driver = "tokio-postgres"` alternative to the shared sqlx pool for the hot reads.
//!
//! Why: a point read through sqlx's pool takes a connection out of a shared queue and puts it
//! back for every statement (sqlx issue #2436: the pool's bookkeeping contends under load), and
//! each connection carries one statement at a time. A tokio-postgres [`Client`] instead
//! *pipelines*: many tasks send statements over one connection concurrently and the answers come
//! back in order. So [`PipelinedClients`] holds `pipelined_connections` connections and hands
//! them out round-robin, with no lease to return; each connection prepares the read statements
//! once, when it opens ([`Statements`]).
//!
//! Faults behave as on the sqlx path (docs/CONTRACT.md "Under faults"): a connection is opened
//! lazily and re-opened when it has closed (server restarted, session terminated); opening is
//! bounded by `pool_acquire_timeout_ms` (its counterpart on the pool), each statement by the
//! server's `statement_timeout = query_timeout_ms` and by the client-side bound of
//! [`crate::db`]; a connection on which that client-side bound fired (a server that answers
//! nothing) is abandoned at once — its socket closed, the other statements on it failed — and
//! replaced on next use. Every failure is an [`ApiError`] from the same mapping as sqlx's.
//!
//! Only reads go through here; writes stay on the pool (they are rare in the measured mixes and
//! need the pool's constraint mapping). This module never decides what a row means: decoding
//! into [`User`] / [`Post`] happens here, serialisation stays in the row types, so both drivers
//! produce the same bytes.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::db::{Post, User, sql};
use crate::error::{ApiError, DbFailure};

/// The `application_name` of these connections in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "apibench-api-pipelined";

/// The read statements, prepared once per connection.
#[derive(Debug)]
pub struct Statements {
    pub get_user: Statement,
    pub get_users: Statement,
    pub get_post: Statement,
    pub list_posts: Statement,
}

/// One open connection: its client, its prepared statements, and the task that drives its
/// socket (aborted when the connection is abandoned or dropped, which closes the socket).
#[derive(Debug)]
pub struct Connection {
    pub client: Client,
    pub statements: Statements,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A slot holds at most one open connection; `opening` lets one task open it while the others
/// wait for that instead of each opening their own.
#[derive(Debug, Default)]
struct Slot {
    current: Mutex<Option<Arc<Connection>>>,
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The open connection, if there is one that has not closed.
    fn live(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|connection| !connection.client.is_closed())
            .cloned()
    }
}

/// `pipelined_connections` tokio-postgres connections, handed out round-robin (see the module
/// documentation). Cheap to share behind an `Arc`; connects lazily, so building it needs no
/// database.
#[derive(Debug)]
pub struct PipelinedClients {
    config: tokio_postgres::Config,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    open_timeout: Duration,
}

impl PipelinedClients {
    /// Clients for the database at `url` (a `postgres://` URL, as for sqlx), each connection
    /// started with `statement_timeout = query_timeout_ms`; opening one is bounded by
    /// `open_timeout`. Fails only on a URL tokio-postgres cannot read.
    pub fn new(
        url: &str,
        connections: u32,
        query_timeout: Duration,
        open_timeout: Duration,
    ) -> Result<PipelinedClients, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        config
            .options(format!(
                "-c statement_timeout={}",
                query_timeout.as_millis()
            ))
            .application_name(APPLICATION_NAME)
            .connect_timeout(open_timeout);
        let slots = (0..connections.max(1)).map(|_| Slot::default()).collect();
        Ok(PipelinedClients {
            config,
            slots,
            next: AtomicUsize::new(0),
            open_timeout,
        })
    }

    /// How many connections this driver keeps.
    pub fn connections(&self) -> usize {
        self.slots.len()
    }

    /// The next connection in round-robin order, opened (or re-opened) if need be; its slot
    /// index is for [`PipelinedClients::abandon`].
    pub async fn connection(&self) -> Result<(usize, Arc<Connection>), ApiError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(connection) = slot.live() {
            return Ok((index, connection));
        }
        let opened = tokio::time::timeout(self.open_timeout, async {
            let _opening = slot.opening.lock().await;
            if let Some(connection) = slot.live() {
                return Ok(connection);
            }
            let connection = Arc::new(self.open().await?);
            *slot.current.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Arc::clone(&connection));
            Ok::<_, ApiError>(connection)
        })
        .await;
        match opened {
            Ok(connection) => Ok((index, connection?)),
            Err(_elapsed) => Err(ApiError::Unavailable(DbFailure::NoAnswer(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no database connection within {} ms",
                        self.open_timeout.as_millis()
                    ),
                ),
            ))),
        }
    }

    /// Forgets `connection` (if slot `index` still holds it) and closes its socket at once: the
    /// statements still waiting on it fail and the next use of the slot opens a new one.
    pub fn abandon(&self, index: usize, connection: &Connection) {
        if let Some(slot) = self.slots.get(index) {
            let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current
                .as_deref()
                .is_some_and(|held| std::ptr::eq(held, connection))
            {
                *current = None;
            }
        }
        connection.driver.abort();
    }

    /// Closes every connection (at shutdown).
    pub fn close(&self) {
        for slot in &self.slots {
            let taken = slot
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(connection) = taken {
                connection.driver.abort();
            }
        }
    }

    /// Opens one connection and prepares the read statements on it. Any failure is a 503: the
    /// database cannot serve us now (the schema is migrated before the first request).
    async fn open(&self) -> Result<Connection, ApiError> {
        let unavailable = |e: tokio_postgres::Error| ApiError::Unavailable(e.into());
        let (client, connection) = self.config.connect(NoTls).await.map_err(unavailable)?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a pipelined database connection ended");
            }
        });
        let prepared = async {
            Ok::<_, tokio_postgres::Error>(Statements {
                get_user: client.prepare(sql::GET_USER).await?,
                get_users: client.prepare(sql::GET_USERS).await?,
                get_post: client.prepare(sql::GET_POST).await?,
                list_posts: client.prepare(sql::LIST_POSTS).await?,
            })
        }
        .await;
        match prepared {
            Ok(statements) => Ok(Connection {
                client,
                statements,
                driver,
            }),
            Err(error) => {
                driver.abort();
                Err(ApiError::from(error))
            }
        }
    }
}

/// A `users` row of [`sql::GET_USER`]'s columns.
pub fn user_from_row(row: &Row) -> Result<User, tokio_postgres::Error> {
    Ok(User {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

/// A `posts` row of [`sql::GET_POST`]'s columns.
pub fn post_from_row(row: &Row) -> Result<Post, tokio_postgres::Error> {
    Ok(Post {
        id: row.try_get(0)?,
        author_id: row.try_get(1)?,
        title: row.try_get(2)?,
        body: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}
