//! Database faults under a running API, against a real PostgreSQL this file owns.
//!
//! Each test starts its own throwaway cluster ([`pgprovision::Provision::LocalBinaries`]) — never
//! the shared one, never a `DATABASE_URL` — because it stops, pauses (SIGSTOP), restarts or
//! terminates the sessions of that server. What a user of the API must see while the database
//! misbehaves, and what each test proves:
//! - stopped: `503` + `Retry-After` within the acquire timeout (sqlx retries a refused connection
//!   until then); served again after the server comes back, without restarting the API.
//! - fast restart under load: every answer is `200` or the contract's `503`; served again soon
//!   after PostgreSQL accepts connections.
//! - paused (SIGSTOP, no answer at all): `503` within `query_timeout_ms` (+ grace) when a pooled
//!   connection is handed out untested, within `pool_acquire_timeout_ms` when it is pinged first
//!   — never a hang; after SIGCONT the right rows come back (no connection was returned to the
//!   pool owing a reply).
//! - one stalled session (only its backend stopped): the request on it is a 503 after the query
//!   timeout — or is dropped when its client gives up first — and its pool slot comes back at
//!   once (the connection is closed, not pinged until the stall ends), so the next request is
//!   served on a new session.
//! - `pg_terminate_backend` of every session: replaced without a single failed request when
//!   connections are tested before use, within a few requests when they are not.
//! - pool exhausted by a slow statement (a table lock held from the test): `503` + `Retry-After`
//!   after the acquire timeout for the waiting request, after `query_timeout_ms` (PostgreSQL's
//!   `statement_timeout`) for the stuck one, whose connection stays in the pool.
//! - SIGTERM to the real `api` binary with requests in flight: it stops accepting, every
//!   in-flight request completes with its normal status, then it exits 0.
//!
//! Every 503 body is checked to be exactly the contract's error (no driver message). Every
//! SIGSTOP is undone by a guard's `Drop`, so a failing assertion cannot leave PostgreSQL frozen;
//! every wait has a bound, so a regression fails instead of hanging.

mod common;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api::{DbDriver, Knobs};
use pgprovision::{Postgres, Provision};
use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

use common::{id_of, test_knobs, unique_suffix};

/// The bound on any single HTTP request of these tests: far above every timeout under test, so
/// a request that hits it is a hang, reported as such.
const REQUEST_PATIENCE: Duration = Duration::from_secs(20);

/// A cluster of our own, with a migrated fresh database.
struct Database {
    postgres: Postgres,
    url: String,
}

impl Database {
    async fn start() -> Database {
        let postgres = Postgres::start(Provision::LocalBinaries)
            .await
            .expect("starting a local PostgreSQL cluster (initdb + postgres must be installed)");
        let url = postgres
            .fresh_database()
            .await
            .expect("creating a fresh database");
        let pool = sqlx::PgPool::connect(&url)
            .await
            .expect("connecting to migrate");
        api::migrate(&pool).await.expect("migrating");
        pool.close().await;
        Database { postgres, url }
    }

    fn postmaster_pid(&self) -> u32 {
        self.postgres
            .postmaster_pid()
            .expect("a local cluster has a postmaster")
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connecting from the test")
    }

    /// Fast shutdown (SIGINT to the postmaster, as `pg_ctl stop -m fast`); returns once it no
    /// longer accepts connections. [`Postgres::restart`] brings it back.
    async fn stop(&self) {
        signal(&[self.postmaster_pid()], "INT");
        wait_until("PostgreSQL to stop", Duration::from_secs(10), async || {
            PgConnection::connect(&self.url).await.is_err()
        })
        .await;
    }

    /// A session holding an exclusive lock on `users` until it commits or rolls back: the API's
    /// reads of `users` wait for it — a slow statement made by the test, with no production
    /// endpoint for it.
    async fn lock_users(&self) -> PgConnection {
        let mut locker = self.connect().await;
        sqlx::query("BEGIN")
            .execute(&mut locker)
            .await
            .expect("BEGIN");
        sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .execute(&mut locker)
            .await
            .expect("locking users");
        locker
    }

    /// Sessions of this database other than the caller's.
    async fn backends(&self, observer: &mut PgConnection) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid",
        )
        .fetch_all(observer)
        .await
        .expect("listing sessions")
    }

    /// Sessions of this database waiting for a lock.
    async fn lock_waiters(&self, observer: &mut PgConnection) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(observer)
        .await
        .expect("counting lock waiters")
    }
}

/// `kill -SIG pid…` (we are root, the cluster runs as `postgres`; no signal crate needed).
fn signal(pids: &[u32], signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pids:?}: {status}");
}

/// The direct children of `pid` (for PostgreSQL: every backend and auxiliary process — each is
/// its own process group leader, so a group signal would miss them).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_comm = &stat[stat.rfind(") ")? + 2..];
                    after_comm.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// PostgreSQL frozen with SIGSTOP (postmaster first, so it forks nothing new, then every child):
/// sockets stay open and nothing answers — a stalled VM or a partition as a client sees it.
/// Dropping the guard sends SIGCONT, also when a test fails half-way.
struct Paused {
    pids: Vec<u32>,
}

impl Paused {
    /// The whole server.
    fn freeze(database: &Database) -> Paused {
        let postmaster = database.postmaster_pid();
        let mut paused = Paused::freeze_pids(vec![postmaster]);
        let children = children_of(postmaster);
        if !children.is_empty() {
            signal(&children, "STOP");
            paused.pids.extend(children);
        }
        paused
    }

    /// Only these processes (e.g. one backend: one session stalls, the server is fine).
    fn freeze_pids(pids: Vec<u32>) -> Paused {
        let paused = Paused { pids };
        signal(&paused.pids, "STOP");
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // Not `signal()`: no panic inside a drop that may run during a panic.
        let _ = Command::new("kill")
            .arg("-CONT")
            .args(self.pids.iter().map(u32::to_string))
            .status();
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `patience`. Returns the time taken.
async fn wait_until(
    what: &str,
    patience: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < patience,
            "waited {patience:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API served in-process on 127.0.0.1:0 until dropped.
struct Api {
    base: String,
    client: reqwest::Client,
    /// The server's pool, to observe (never to query through).
    pool: sqlx::PgPool,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    async fn start(database: &Database, knobs: Knobs) -> Api {
        let config = api::Config {
            database_url: Some(database.url.clone()),
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            provision: Provision::Auto,
            knobs,
        };
        let server = api::Server::start(config).await.expect("starting the API");
        let base = format!("http://{}", server.local_addr());
        let pool = server.state().db.pool().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        Api {
            base,
            client: client(),
            pool,
            _stop: stop,
        }
    }

    /// Waits until every pooled connection is back in the pool (sqlx returns a connection
    /// asynchronously after the response, pinging it first): a fault injected before that would
    /// catch the hand-back rather than the next request.
    async fn settle(&self) {
        wait_until("the pool to settle", Duration::from_secs(5), async || {
            self.pool.size() > 0 && self.pool.num_idle() == self.pool.size() as usize
        })
        .await;
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn create_user(&self) -> i64 {
        let body = json!({
            "email": format!("fault-{}@example.com", unique_suffix()),
            "password": "correct horse",
            "name": "Ann",
        });
        let reply = send(
            self.client
                .post(format!("{}/api/users", self.base))
                .json(&body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        id_of(&reply.json())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_PATIENCE)
        .build()
        .expect("building an HTTP client")
}

/// One answer and how long it took.
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: not JSON ({e}): {}", self.status, self.text()))
    }

    /// The contract's 503: `Retry-After: 1`, JSON, and exactly the generic message — no driver
    /// text (sqlx / PostgreSQL error messages, "pool timed out", an I/O error) reaches the body.
    fn assert_unavailable(&self, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            self.text()
        );
        assert_eq!(self.retry_after.as_deref(), Some("1"), "{what}");
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: Content-Type {:?}",
            self.content_type
        );
        assert_eq!(
            self.json(),
            json!({"error": {"code": "service_unavailable", "message": "service temporarily unavailable"}}),
            "{what}"
        );
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer within {REQUEST_PATIENCE:?} (a hang?): {e}"));
    let status = response.status();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header_text(header::RETRY_AFTER);
    let content_type = header_text(header::CONTENT_TYPE);
    let body = response
        .bytes()
        .await
        .expect("reading the response body")
        .to_vec();
    Reply {
        status,
        retry_after,
        content_type,
        body,
        elapsed: started.elapsed(),
    }
}

/// Test knobs for these faults: quiet, cheap hashing, short timeouts that still tell apart
/// which bound answered (query timeout ≪ acquire timeout unless a test says otherwise).
fn fault_knobs() -> Knobs {
    Knobs {
        pool_max: 4,
        pool_min: 0,
        pool_acquire_timeout_ms: 5000,
        query_timeout_ms: 1000,
        ..test_knobs()
    }
}

/// The requests every fault is tried on: the three reads, the health check, a write.
async fn every_endpoint(api: &Api, user_id: i64) -> Vec<(String, Reply)> {
    let mut replies = Vec::new();
    for path in [
        format!("/api/users/{user_id}"),
        format!("/api/users?ids={user_id}"),
        "/api/posts".to_owned(),
        "/healthz".to_owned(),
    ] {
        let reply = api.get(&path).await;
        replies.push((format!("GET {path}"), reply));
    }
    let body = json!({"author_id": user_id, "title": "t", "body": "b"});
    let reply = send(
        api.client
            .post(format!("{}/api/posts", api.base))
            .json(&body),
    )
    .await;
    replies.push(("POST /api/posts".to_owned(), reply));
    replies
}

/// Polls `GET /api/users/{user_id}` until it is 200 with that user; every other answer on the
/// way must be the contract's 503. Returns the time it took and the number of 503s.
async fn until_served(api: &Api, user_id: i64, patience: Duration) -> (Duration, u32) {
    let started = Instant::now();
    let mut unavailable = 0;
    loop {
        let reply = api.get(&format!("/api/users/{user_id}")).await;
        if reply.status == StatusCode::OK {
            assert_eq!(id_of(&reply.json()), user_id);
            return (started.elapsed(), unavailable);
        }
        reply.assert_unavailable("while recovering");
        unavailable += 1;
        assert!(
            started.elapsed() < patience,
            "not served again within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_database_is_503_within_the_acquire_timeout_then_served_again() {
    let mut database = Database::start().await;
    let acquire_timeout = Duration::from_millis(1500);
    let api = Api::start(
        &database,
        Knobs {
            pool_min: 2,
            pool_acquire_timeout_ms: 1500,
            ..fault_knobs()
        },
    )
    .await;
    let user_id = api.create_user().await;

    database.stop().await;
    for (what, reply) in every_endpoint(&api, user_id).await {
        reply.assert_unavailable(&what);
        // sqlx retries a refused connection (with backoff) until the acquire timeout — what lets
        // a request ride out a fast restart — and then gives up: bounded, never a hang.
        assert!(
            reply.elapsed < acquire_timeout + Duration::from_secs(1),
            "{what}: 503 after {:?}, acquire timeout {acquire_timeout:?}",
            reply.elapsed
        );
        eprintln!("stopped: {what} → 503 in {:?}", reply.elapsed);
    }

    database
        .postgres
        .restart()
        .await
        .expect("starting PostgreSQL again");
    let (recovered, _) = until_served(&api, user_id, Duration::from_secs(5)).await;
    eprintln!("stopped: served again {recovered:?} after PostgreSQL accepted connections");
    for (what, reply) in every_endpoint(&api, user_id).await {
        assert!(reply.status.is_success(), "{what}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_restart_under_load_answers_200_or_503_and_recovers() {
    let mut database = Database::start().await;
    let api = Arc::new(
        Api::start(
            &database,
            Knobs {
                pool_max: 4,
                pool_min: 4,
                ..fault_knobs()
            },
        )
        .await,
    );
    let user_id = api.create_user().await;

    let done = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (api, done) = (Arc::clone(&api), Arc::clone(&done));
            tokio::spawn(async move {
                let (mut ok, mut unavailable) = (0_u32, 0_u32);
                while !done.load(Ordering::Relaxed) {
                    let reply = api.get(&format!("/api/users/{user_id}")).await;
                    if reply.status == StatusCode::OK {
                        ok += 1;
                    } else {
                        reply.assert_unavailable("during the restart");
                        unavailable += 1;
                    }
                }
                (ok, unavailable)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let restart_started = Instant::now();
    database.postgres.restart().await.expect("fast restart");
    let restart_took = restart_started.elapsed();
    let (recovered, _) = until_served(&api, user_id, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::Relaxed);
    let (mut ok, mut unavailable) = (0, 0);
    for task in load {
        let (o, u) = task.await.expect("a load task");
        ok += o;
        unavailable += u;
    }
    eprintln!(
        "fast restart: PostgreSQL back after {restart_took:?}, API serving {recovered:?} later; \
         under load {ok} × 200, {unavailable} × 503"
    );
    assert!(ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_database_is_503_within_the_timeouts_never_a_hang() {
    let database = Database::start().await;
    // Untested hand-out: the statement is sent on a pooled connection and never answered, so
    // the query timeout (1 s + 250 ms grace) answers — well before the 2.5 s acquire timeout.
    let untested = Api::start(
        &database,
        Knobs {
            pool_max: 1,
            pool_min: 0,
            test_before_acquire: false,
            pool_acquire_timeout_ms: 2500,
            db_driver: DbDriver::Sqlx, // the pool's ping semantics, whatever the suite's driver
            ..fault_knobs()
        },
    )
    .await;
    // Tested hand-out (the default): the ping before hand-out is never answered, so the acquire
    // timeout answers.
    let tested = Api::start(
        &database,
        Knobs {
            pool_max: 2,
            pool_min: 0,
            pool_acquire_timeout_ms: 1500,
            query_timeout_ms: 10_000,
            db_driver: DbDriver::Sqlx,
            ..fault_knobs()
        },
    )
    .await;
    let user_id = untested.create_user().await;
    let other_id = untested.create_user().await;
    // One pooled connection each.
    assert_eq!(untested.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(tested.get("/healthz").await.status, StatusCode::OK);
    untested.settle().await;
    tested.settle().await;

    {
        let _paused = Paused::freeze(&database);
        let path = format!("/api/users/{user_id}");
        let (by_query_timeout, by_acquire_timeout) =
            tokio::join!(untested.get(&path), tested.get(&path));
        by_query_timeout.assert_unavailable("paused, untested connection");
        by_acquire_timeout.assert_unavailable("paused, tested connection");
        eprintln!(
            "paused: 503 after {:?} (test_before_acquire=false, query_timeout_ms=1000), \
             {:?} (test_before_acquire=true, pool_acquire_timeout_ms=1500)",
            by_query_timeout.elapsed, by_acquire_timeout.elapsed
        );
        let query_bound = Duration::from_millis(1000) + api::db::QUERY_TIMEOUT_GRACE;
        assert!(
            by_query_timeout.elapsed >= query_bound
                && by_query_timeout.elapsed < Duration::from_millis(2500),
            "answered after {:?}: not by the query timeout",
            by_query_timeout.elapsed
        );
        assert!(
            by_acquire_timeout.elapsed >= Duration::from_millis(1500),
            "answered after {:?}: not by the acquire timeout",
            by_acquire_timeout.elapsed
        );
        // With its only connection closed, the next request has to connect to a server that
        // never completes the handshake: the acquire timeout bounds that too.
        let reconnect = untested.get(&path).await;
        reconnect.assert_unavailable("paused, connecting");
        eprintln!(
            "paused: a new connection → 503 after {:?}",
            reconnect.elapsed
        );
    }

    // SIGCONT: served again, and with the right rows — had the timed-out connection gone back
    // to the pool owing the reply to `user_id`'s query, a later query could read it.
    let (recovered, _) = until_served(&untested, user_id, Duration::from_secs(5)).await;
    eprintln!("paused: served again {recovered:?} after SIGCONT");
    for _ in 0..5 {
        for id in [other_id, user_id] {
            let reply = untested.get(&format!("/api/users/{id}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(id_of(&reply.json()), id);
        }
    }
    until_served(&tested, user_id, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_gives_its_pool_slot_back() {
    let database = Database::start().await;
    let api = Api::start(
        &database,
        Knobs {
            pool_max: 1,
            pool_min: 0,
            test_before_acquire: false,
            pool_acquire_timeout_ms: 2000,
            db_driver: DbDriver::Sqlx, // the pool's behaviour, whatever the suite's driver
            ..fault_knobs()
        },
    )
    .await;
    let user_id = api.create_user().await;
    api.settle().await;
    let mut observer = database.connect().await;
    let backends = database.backends(&mut observer).await;
    let [stalled] = backends[..] else {
        panic!("expected the pool's one session, found {backends:?}");
    };

    // Only the backend behind the pool's one connection stops; the server itself is fine.
    let _paused = Paused::freeze_pids(vec![u32::try_from(stalled).expect("a pid")]);
    let timed_out = api.get(&format!("/api/users/{user_id}")).await;
    timed_out.assert_unavailable("stalled session");
    // The timed-out connection was closed, not handed back to the pool to wait for its reply
    // (sqlx's ping-on-release would wait as long as the stall lasts, holding the only slot and
    // turning every later request into a 503): the next request opens a new session and is
    // served while the old one is still frozen.
    let next = api.get(&format!("/api/users/{user_id}")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    assert_eq!(id_of(&next.json()), user_id);
    eprintln!(
        "stalled session: 503 after {:?}, next request served in {:?} on a new session",
        timed_out.elapsed, next.elapsed
    );

    // The same when the request is abandoned by its client before any timeout: the server drops
    // the request, and the connection it held mid-statement is closed, not pinged back.
    api.settle().await;
    let serving: Vec<i32> = database
        .backends(&mut observer)
        .await
        .into_iter()
        .filter(|pid| *pid != stalled)
        .collect();
    let [serving] = serving[..] else {
        panic!("expected one new session besides the stalled one, found {serving:?}");
    };
    let _paused_too = Paused::freeze_pids(vec![u32::try_from(serving).expect("a pid")]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("building an HTTP client");
    let abandoned = impatient
        .get(format!("{}/api/users/{user_id}", api.base))
        .send()
        .await;
    assert!(
        abandoned.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the stalled request was answered: {abandoned:?}"
    );
    drop(impatient);
    let (served_after, unavailable) = until_served(&api, user_id, Duration::from_secs(5)).await;
    assert_eq!(
        unavailable, 0,
        "the abandoned request kept the pool's only slot"
    );
    eprintln!("stalled session, client gone after 300 ms: next request served in {served_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_connections_that_stall_or_end_are_replaced() {
    let database = Database::start().await;
    let api = Api::start(
        &database,
        Knobs {
            db_driver: DbDriver::TokioPostgres,
            pipelined_connections: 2,
            ..fault_knobs()
        },
    )
    .await;
    let user_id = api.create_user().await;
    let path = format!("/api/users/{user_id}");
    let mut observer = database.connect().await;
    let pipelined_sessions = async |observer: &mut PgConnection| -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1 ORDER BY pid",
        )
        .bind(api::pipelined::APPLICATION_NAME)
        .fetch_all(observer)
        .await
        .expect("listing the pipelined sessions")
    };
    // Two reads open both connections (round-robin).
    for _ in 0..2 {
        assert_eq!(api.get(&path).await.status, StatusCode::OK);
    }
    let sessions = pipelined_sessions(&mut observer).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");

    // One backend stops answering: the read sent to it is a 503 after query_timeout_ms + grace
    // (never a hang), its connection is abandoned, and reads are served on a new one.
    let paused = Paused::freeze_pids(vec![u32::try_from(sessions[0]).expect("a pid")]);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let reply = api.get(&path).await;
        if reply.status == StatusCode::OK {
            assert_eq!(id_of(&reply.json()), user_id);
        } else {
            reply.assert_unavailable("a stalled pipelined session");
            stalled.push(reply.elapsed);
        }
    }
    assert_eq!(stalled.len(), 1, "503s after {stalled:?}");
    assert!(
        stalled[0] >= Duration::from_millis(1000) && stalled[0] < Duration::from_millis(2500),
        "the stalled read took {:?}",
        stalled[0]
    );
    drop(paused);

    // Every session terminated: each connection notices it has closed, and reads are served
    // again on new ones — at most one 503 per connection on the way.
    let sessions = pipelined_sessions(&mut observer).await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&sessions)
        .execute(&mut observer)
        .await
        .expect("terminating the pipelined sessions");
    wait_until(
        "the terminated sessions to end",
        Duration::from_secs(5),
        async || {
            let alive = pipelined_sessions(&mut observer).await;
            sessions.iter().all(|pid| !alive.contains(pid))
        },
    )
    .await;
    let (recovered, failures) = until_served(&api, user_id, Duration::from_secs(5)).await;
    let mut failures = failures;
    for _ in 0..4 {
        let reply = api.get(&path).await;
        if reply.status != StatusCode::OK {
            reply.assert_unavailable("after pg_terminate_backend, pipelined");
            failures += 1;
        }
    }
    assert!(
        failures <= 2,
        "{failures} failures with 2 pipelined connections"
    );

    // The whole server paused: a read on an open connection is bounded by the query timeout, one
    // that has to open a connection by the open timeout (pool_acquire_timeout_ms): 503 either way.
    {
        let _paused = Paused::freeze(&database);
        for _ in 0..3 {
            let reply = api.get(&path).await;
            reply.assert_unavailable("paused server, pipelined");
            assert!(
                reply.elapsed < Duration::from_millis(5000 + 1000),
                "answered after {:?}",
                reply.elapsed
            );
        }
    }
    until_served(&api, user_id, Duration::from_secs(5)).await;
    eprintln!(
        "pipelined: stalled read 503 after {:?}; after terminate served again in {recovered:?} \
         with {failures} × 503",
        stalled[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_are_replaced_without_restarting_the_api() {
    let database = Database::start().await;
    let warm = Knobs {
        pool_max: 3,
        pool_min: 3,
        db_driver: DbDriver::Sqlx, // the pool's behaviour, whatever the suite's driver
        ..fault_knobs()
    };
    let tested = Api::start(&database, warm.clone()).await;
    let untested = Api::start(
        &database,
        Knobs {
            test_before_acquire: false,
            ..warm
        },
    )
    .await;
    let user_id = tested.create_user().await;
    let mut observer = database.connect().await;
    wait_until(
        "both pools to hold 3 connections",
        Duration::from_secs(10),
        async || database.backends(&mut observer).await.len() >= 6,
    )
    .await;

    let sessions = database.backends(&mut observer).await;
    let terminated: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
            .bind(&sessions)
            .fetch_all(&mut observer)
            .await
            .expect("terminating every session");
    assert!(terminated.len() >= 6 && terminated.iter().all(|t| *t));
    // pg_terminate_backend only signals: wait until those sessions are gone, so that a request
    // cannot be handed a connection whose backend dies between the ping and the query.
    wait_until(
        "the terminated sessions to end",
        Duration::from_secs(5),
        async || {
            let alive = database.backends(&mut observer).await;
            sessions.iter().all(|pid| !alive.contains(pid))
        },
    )
    .await;

    // Tested before hand-out: a dead connection is noticed and replaced inside the acquire.
    for _ in 0..6 {
        let reply = tested.get(&format!("/api/users/{user_id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    // Untested: a request that draws a dead connection is a 503 (never a 500), and that
    // connection is dropped; at most one failure per pooled connection.
    let (recovered, mut failures) = until_served(&untested, user_id, Duration::from_secs(5)).await;
    for _ in 0..6 {
        let reply = untested.get(&format!("/api/users/{user_id}")).await;
        if reply.status != StatusCode::OK {
            reply.assert_unavailable("after pg_terminate_backend, untested");
            failures += 1;
        }
    }
    assert!(
        failures <= 3,
        "{failures} failures with 3 pooled connections"
    );
    eprintln!(
        "terminate: tested pool served every request; untested pool served again after \
         {recovered:?}, {failures} × 503 on the way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_is_503_with_retry_after_and_keeps_its_connection() {
    let database = Database::start().await;
    let api = Arc::new(
        Api::start(
            &database,
            Knobs {
                pool_max: 1,
                pool_min: 0,
                pool_acquire_timeout_ms: 500,
                query_timeout_ms: 1500,
                db_driver: DbDriver::Sqlx, // the pool's behaviour, whatever the suite's driver
                ..fault_knobs()
            },
        )
        .await,
    );
    let user_id = api.create_user().await;
    let mut observer = database.connect().await;

    // The API's read waits for the test's lock, holding the pool's only connection.
    let mut locker = database.lock_users().await;
    let stuck = tokio::spawn({
        let api = Arc::clone(&api);
        async move { api.get(&format!("/api/users/{user_id}")).await }
    });
    wait_until(
        "the API's read to wait for the lock",
        Duration::from_secs(5),
        async || database.lock_waiters(&mut observer).await == 1,
    )
    .await;
    let stuck_backend = database.backends(&mut observer).await;

    let waiting = api.get("/healthz").await;
    waiting.assert_unavailable("pool exhausted");
    assert!(waiting.elapsed >= Duration::from_millis(500));
    let stuck = stuck.await.expect("the stuck request");
    stuck.assert_unavailable("statement over query_timeout_ms");
    assert!(stuck.elapsed >= Duration::from_millis(1500));
    eprintln!(
        "exhausted: waiting request → 503 after {:?} (acquire timeout 500 ms); stuck statement → \
         503 after {:?} (query_timeout_ms 1500, PostgreSQL's statement_timeout)",
        waiting.elapsed, stuck.elapsed
    );

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("releasing the lock");
    let reply = api.get(&format!("/api/users/{user_id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // The server cancelled the statement and the connection answered: it went back to the pool
    // and serves again (same backend process, no reconnect).
    let locker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut locker)
        .await
        .expect("the locker's pid");
    let api_backends: Vec<i32> = database
        .backends(&mut observer)
        .await
        .into_iter()
        .filter(|pid| *pid != locker_pid)
        .collect();
    let stuck_backend: Vec<i32> = stuck_backend
        .into_iter()
        .filter(|pid| *pid != locker_pid)
        .collect();
    assert_eq!(api_backends, stuck_backend);
}

/// The real `api` binary as a child process; killed if a test fails before it exits.
struct ApiProcess {
    child: Child,
    addr: SocketAddr,
}

impl ApiProcess {
    fn spawn(database_url: &str, knobs: &[(&str, &str)]) -> ApiProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("API_LISTEN", "127.0.0.1:0")
            .env("API_LOG_FORMAT", "off")
            .env("API_ARGON2_MEMORY_KIB", "64")
            .env("API_ARGON2_ITERATIONS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in knobs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting target/debug/api");
        let stderr = child.stderr.take().expect("piped stderr");
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.strip_prefix("listening on http://") {
                    let _ = address_tx.send(Ok(url.trim().to_owned()));
                } else {
                    seen.push(line);
                }
            }
            let _ = address_tx.send(Err(seen.join("\n")));
        });
        let mut process = ApiProcess {
            child,
            addr: "127.0.0.1:1".parse().expect("a socket address"),
        };
        process.addr = match address_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(address)) => address.parse().expect("the printed address"),
            Ok(Err(stderr)) => panic!("the api exited before listening:\n{stderr}"),
            Err(_) => panic!("the api printed no listening line within 30 s"),
        };
        process
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, waiting at most `patience`.
    async fn exit_status(&mut self, patience: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("checking on the api") {
                return status;
            }
            assert!(
                started.elapsed() < patience,
                "the api did not exit within {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_in_flight_request_then_exits_0() {
    const IN_FLIGHT: usize = 8;
    let database = Database::start().await;
    let mut api = ApiProcess::spawn(
        &database.url,
        &[
            ("API_POOL_MAX", "12"),
            ("API_POOL_MIN", "0"),
            ("API_QUERY_TIMEOUT_MS", "20000"),
        ],
    );
    let base = format!("http://{}", api.addr);
    let created = send(client().post(format!("{base}/api/users")).json(&json!({
        "email": format!("drain-{}@example.com", unique_suffix()),
        "password": "correct horse",
        "name": "Ann",
    })))
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let user_id = id_of(&created.json());

    // In flight for sure: each read waits for a lock the test holds, inside the server.
    let mut observer = database.connect().await;
    let mut locker = database.lock_users().await;
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            // A client each: one connection per request, as separate users would have.
            let request = client().get(format!("{base}/api/users/{user_id}"));
            tokio::spawn(send(request))
        })
        .collect();
    // ...and load that keeps coming until the server stops accepting.
    let sigterm_sent = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, sigterm_sent) = (
                client(),
                format!("{base}/healthz"),
                Arc::clone(&sigterm_sent),
            );
            tokio::spawn(async move {
                let mut answered = 0_u32;
                loop {
                    match client.get(&url).send().await {
                        Ok(response) => {
                            assert_eq!(response.status(), StatusCode::OK, "load during drain");
                            answered += 1;
                        }
                        // Refused or closed once the server stopped accepting: not sent.
                        Err(_) if sigterm_sent.load(Ordering::SeqCst) => return answered,
                        Err(e) => panic!("load failed before SIGTERM: {e}"),
                    }
                }
            })
        })
        .collect();
    wait_until(
        "every in-flight read to wait for the lock",
        Duration::from_secs(10),
        async || database.lock_waiters(&mut observer).await == IN_FLIGHT as i64,
    )
    .await;

    sigterm_sent.store(true, Ordering::SeqCst);
    signal(&[api.pid()], "TERM");
    // Draining: still running, no longer accepting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(api.child.try_wait(), Ok(None)),
        "the api exited with requests in flight"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&api.addr, Duration::from_secs(1)).is_err(),
        "the api still accepts connections after SIGTERM"
    );

    sqlx::query("COMMIT")
        .execute(&mut locker)
        .await
        .expect("releasing the lock");
    let mut completed = 0;
    for request in in_flight {
        let reply = request.await.expect("an in-flight request");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(id_of(&reply.json()), user_id);
        completed += 1;
    }
    let mut load_answered = 0;
    for task in load {
        load_answered += task.await.expect("a load task");
    }
    let status = api.exit_status(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    eprintln!(
        "SIGTERM: {completed}/{IN_FLIGHT} in-flight requests completed 200 after the signal, \
         {load_answered} load requests answered 200 before it stopped accepting; exit 0"
    );
}
