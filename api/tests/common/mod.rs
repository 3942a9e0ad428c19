//! Shared by the integration tests: a fresh PostgreSQL database per test (from pgprovision's
//! process-wide cluster), test knobs with a cheap argon2 cost, and checks of the error shape.
#![allow(dead_code)] // each test binary uses a different subset

use api::{AppState, DbDriver, Knobs, LogFormat};
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Knobs for tests: the documented defaults with a cheap argon2id cost, a small pool and no logs;
/// the hot reads' driver from `APIBENCH_TEST_DB_DRIVER` (`sqlx` | `tokio-postgres`) when set, so
/// the whole suite runs under either `db_driver`:
/// `APIBENCH_TEST_DB_DRIVER=tokio-postgres cargo test -p api`.
pub fn test_knobs() -> Knobs {
    Knobs {
        pool_max: 5,
        pool_min: 0,
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        log_format: LogFormat::Off,
        db_driver: test_db_driver(),
        ..Knobs::default()
    }
}

/// `APIBENCH_TEST_DB_DRIVER`, or the default driver; an unknown value fails the test run.
pub fn test_db_driver() -> DbDriver {
    match std::env::var("APIBENCH_TEST_DB_DRIVER").as_deref() {
        Err(_) | Ok("") => Knobs::default().db_driver,
        Ok(value) => <DbDriver as clap::ValueEnum>::from_str(value, false)
            .unwrap_or_else(|e| panic!("APIBENCH_TEST_DB_DRIVER={value}: {e}")),
    }
}

/// The URL of a new, empty database on the shared test cluster.
pub async fn fresh_database_url() -> String {
    let postgres = pgprovision::shared().expect("provisioning the shared test PostgreSQL");
    postgres
        .fresh_database()
        .await
        .expect("creating a fresh test database")
}

/// A migrated fresh database and an [`AppState`] over it with `knobs`.
pub async fn state_with(knobs: Knobs) -> AppState {
    let url = fresh_database_url().await;
    let pool = api::db::connect(&url, &knobs)
        .await
        .expect("connecting to the fresh test database");
    api::migrate(&pool)
        .await
        .expect("migrating the fresh test database");
    AppState::with_database_url(pool, &url, knobs).expect("test knobs are valid")
}

/// A response as both suites see it (status, headers, the whole body).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn assert_json_content_type(&self) {
        let content_type = self.header(CONTENT_TYPE).unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "Content-Type {content_type:?} for status {}",
            self.status
        );
    }

    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts an error in the contract's shape; returns its `fields`.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> Value {
        self.assert_status(status);
        self.assert_json_content_type();
        assert_error_shape(&self.json(), code)
    }
}

/// Asserts `body` is the contract's error shape with `code` and returns its `fields` (or Null).
pub fn assert_error_shape(body: &Value, code: &str) -> Value {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no \"error\" object in {body}"));
    assert_eq!(error["code"], code, "wrong error code in {body}");
    assert!(
        error["message"].is_string(),
        "message is not a string in {body}"
    );
    let object = error
        .as_object()
        .unwrap_or_else(|| panic!("error is not an object in {body}"));
    let allowed = ["code", "message", "fields"];
    assert!(
        object.keys().all(|k| allowed.contains(&k.as_str())),
        "unexpected keys in {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "extra top-level keys in {body}"
    );
    match error.get("fields") {
        Some(fields) => {
            assert_eq!(
                code, "validation_failed",
                "fields outside validation_failed: {body}"
            );
            let fields = fields
                .as_object()
                .unwrap_or_else(|| panic!("fields is not an object in {body}"));
            assert!(
                fields.values().all(Value::is_string),
                "a field message is not a string in {body}"
            );
            Value::Object(fields.clone())
        }
        None => {
            assert_ne!(
                code, "validation_failed",
                "validation_failed without fields: {body}"
            );
            Value::Null
        }
    }
}

/// The same database as `state`, with other knobs (clones share the pool and query counter).
pub fn with_knobs(state: &AppState, knobs: Knobs) -> AppState {
    AppState {
        knobs: std::sync::Arc::new(knobs),
        ..state.clone()
    }
}

/// The `id` of a created user or post.
pub fn id_of(value: &Value) -> i64 {
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {value}"))
}

/// The sorted keys of a `fields` object.
pub fn field_names(fields: &Value) -> Vec<String> {
    let mut names: Vec<String> = fields
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// True if `s` is an RFC 3339 UTC timestamp with exactly millisecond precision and `Z`,
/// as JavaScript's `Date.toISOString()` prints it: `2026-11-26T17:25:51.123Z`.
pub fn is_iso_millis_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.clone().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// A suffix that makes emails unique per test run, so suites can rerun on a persistent DB.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{nanos:x}{:x}{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
