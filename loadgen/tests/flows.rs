//! Flows, data files and `{{env.*}}` secrets, end to end against an in-process axum server (no
//! database: `url` targets). Goose keeps process-wide state, so the in-process runs share one
//! test and go one after another; the secret test runs the real `apibench` binary in a child
//! process, so that everything it writes — files, stdout, stderr with debug logging — can be
//! searched for the secret.

mod common;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use loadgen::results::{Measurement, Summary};
use loadgen::{RunOptions, run};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    next_id: AtomicU64,
    logins: AtomicU64,
    never: AtomicU64,
    /// id → email of every created item.
    items: Mutex<HashMap<u64, String>>,
    /// Every `/echo` body with `"step": 1`.
    first_steps: Mutex<Vec<Value>>,
    /// Requests that carried the right `x-api-key`.
    keyed: AtomicU64,
}

const SECRET: &str = "s3cr3t-7f4d1c2a9b-planted";

fn app(seen: Arc<Seen>) -> Router {
    Router::new()
        .route(
            "/login",
            post(|State(seen): State<Arc<Seen>>| async move {
                let n = seen.logins.fetch_add(1, Ordering::Relaxed);
                ([("x-token", format!("tok-{n}"))], "welcome; count=17 left")
            }),
        )
        .route(
            "/items",
            post(
                |State(seen): State<Arc<Seen>>, axum::Json(body): axum::Json<Value>| async move {
                    let id = seen.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                    let email = body["email"].as_str().unwrap_or("").to_string();
                    if let Ok(mut items) = seen.items.lock() {
                        items.insert(id, email.clone());
                    }
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"id": id, "email": email})),
                    )
                },
            ),
        )
        .route(
            "/items/{id}",
            get(
                |State(seen): State<Arc<Seen>>,
                 UrlPath(id): UrlPath<u64>,
                 Query(query): Query<BTreeMap<String, String>>,
                 headers: HeaderMap| async move {
                    // The token from the setup's header, the count from its body's regex.
                    let token_ok = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("Bearer tok-"));
                    if !token_ok {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    if query.get("n").map(String::as_str) != Some("17") {
                        return StatusCode::BAD_REQUEST.into_response();
                    }
                    let email = seen.items.lock().ok().and_then(|i| i.get(&id).cloned());
                    match email {
                        Some(email) => {
                            axum::Json(json!({"id": id, "email": email})).into_response()
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                },
            ),
        )
        .route("/broken", get(|| async { axum::Json(json!({"id": 1})) }))
        .route(
            "/never",
            get(|State(seen): State<Arc<Seen>>| async move {
                seen.never.fetch_add(1, Ordering::Relaxed);
                "should not be called"
            }),
        )
        .route(
            "/echo",
            post(
                |State(seen): State<Arc<Seen>>, axum::Json(body): axum::Json<Value>| async move {
                    if body["step"] == json!(1)
                        && let Ok(mut first) = seen.first_steps.lock()
                    {
                        first.push(body.clone());
                    }
                    axum::Json(body)
                },
            ),
        )
        .route(
            "/secret/{value}",
            post(
                |State(seen): State<Arc<Seen>>,
                 UrlPath(value): UrlPath<String>,
                 headers: HeaderMap,
                 body: String| async move {
                    let header_ok =
                        headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(SECRET);
                    if header_ok && value == SECRET && body.contains(SECRET) {
                        seen.keyed.fetch_add(1, Ordering::Relaxed);
                        (StatusCode::OK, "accepted")
                    } else {
                        (StatusCode::FORBIDDEN, "wrong key")
                    }
                },
            ),
        )
        .with_state(seen)
}

async fn run_scenario(dir: &Path, name: &str, text: &str) -> Summary {
    let path = common::write_scenario(dir, &format!("{name}.toml"), text);
    let (_cancel_tx, cancel_rx) = watch::channel(false);
    let report = run(
        RunOptions {
            scenario: path,
            out: Some(dir.join(name)),
            repeat: 1,
            quiet: true,
            ..RunOptions::default()
        },
        cancel_rx,
    )
    .await
    .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(!report.interrupted);
    report.summary
}

fn head(name: &str, base: &str) -> String {
    format!(
        r#"name = "{name}"
[load]
rate_per_sec = 40
users = 4
duration = "2s"
warmup = "500ms"
[target]
kind = "url"
url = "{base}"
"#
    )
}

fn figures(summary: &Summary) -> &Measurement {
    &summary.variants[0].figures
}

/// (requests, errors) of one request name; (0, 0) when it never ran.
fn counts(m: &Measurement, name: &str) -> (u64, u64) {
    m.requests_by_name
        .get(name)
        .map_or((0, 0), |r| (r.requests, r.errors))
}

const FLOWS: &str = r#"
[[data_files]]
name = "accounts"
path = "accounts.csv"

[[flows]]
name = "signup"
weight = 3

[[flows.setup]]
name = "login"
method = "POST"
path = "/login"
extract = { token = { header = "x-token" }, n = { regex = "count=(\\d+)" } }

[[flows.steps]]
name = "create"
method = "POST"
path = "/items"
body = '{"email": "{{accounts.email}}"}'
expect_status = 201
extract = { id = { json = "/id" } }

[[flows.steps]]
name = "read"
path = "/items/{{id}}?n={{n}}"
headers = { authorization = "Bearer {{token}}" }
checks = [{ json = "/email", equals = "{{accounts.email}}" }, { json = "/id", exists = true }]

[[flows]]
name = "broken"

[[flows.steps]]
name = "check_fails"
path = "/broken"
checks = [{ json = "/id", equals = 2 }]

[[flows.steps]]
name = "never"
path = "/never"
"#;

/// Two steps of one iteration read the same row: the second sends back what the first
/// extracted next to the row's value again, and checks they match.
fn feed(order: &str) -> String {
    format!(
        r#"
[[data_files]]
name = "accounts"
path = "accounts.csv"
{order}

[[flows]]
name = "feed"

[[flows.steps]]
name = "first"
method = "POST"
path = "/echo"
body = '{{"step": 1, "email": "{{{{accounts.email}}}}"}}'
extract = {{ e = {{ json = "/email" }} }}

[[flows.steps]]
name = "second"
method = "POST"
path = "/echo"
body = '{{"step": 2, "email": "{{{{e}}}}", "again": "{{{{accounts.email}}}}"}}'
checks = [{{ json = "/again", equals = "{{{{e}}}}" }}]
"#
    )
}

/// How often each email was the first step's.
fn first_step_emails(seen: &Seen) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in seen.first_steps.lock().expect("lock").drain(..) {
        *counts
            .entry(body["email"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn write_accounts(dir: &Path, rows: usize) {
    let mut csv = String::from("email,name\n");
    for r in 0..rows {
        csv.push_str(&format!("user{r}@x.test,\"User, {r}\"\n"));
    }
    std::fs::write(dir.join("accounts.csv"), csv).expect("write accounts.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_extract_check_skip_and_feed_on_data_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Seen::default());
    let base = common::serve(app(Arc::clone(&seen))).await;

    // 1. Extraction by header, regex and JSON pointer; a failed check skips the rest.
    write_accounts(dir.path(), 10);
    let summary = run_scenario(
        dir.path(),
        "flows",
        &format!("{}{FLOWS}", head("flows", &base)),
    )
    .await;
    let m = figures(&summary);
    let (created, create_errors) = counts(m, "signup/create");
    let (read, read_errors) = counts(m, "signup/read");
    assert!(created > 10, "signup ran: {:?}", m.requests_by_name.keys());
    assert_eq!(create_errors, 0);
    // 401 without the header token, 400 without the regex's count, a failed check without the
    // right id and email: none happened, and every create was read back.
    assert_eq!((read, read_errors), (created, 0));
    let (broken, broken_errors) = counts(m, "broken/check_fails");
    assert!(broken > 0, "the broken flow ran");
    assert_eq!(broken_errors, broken, "a failed check is an error");
    assert_eq!(counts(m, "broken/never"), (0, 0));
    assert_eq!(
        seen.never.load(Ordering::Relaxed),
        0,
        "skipped steps are never sent"
    );
    assert_eq!(
        m.flow_steps_skipped, broken,
        "one skipped step per broken iteration"
    );
    assert!(m.stopped_early.is_none());
    let logins = seen.logins.load(Ordering::Relaxed);
    assert!(
        (1..=m.users_started).contains(&logins),
        "setup once per user: {logins} logins for {} users",
        m.users_started
    );
    // One row per step in the results, in the file's order in run.json.
    let info: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("flows/run.json")).expect("run.json"),
    )
    .expect("run.json parses");
    let names: Vec<&str> = info["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "signup/login",
            "signup/create",
            "signup/read",
            "broken/check_fails",
            "broken/never"
        ]
    );
    let html = std::fs::read_to_string(dir.path().join("flows/index.html")).expect("report");
    assert!(
        html.contains("signup/read"),
        "the report has a row per step"
    );
    seen.first_steps.lock().expect("lock").clear();

    // 1b. The closed model: a turn is one iteration, steps back to back.
    let closed = head("closed", &base).replace(
        "rate_per_sec = 40\nusers = 4",
        "model = \"closed\"\nthink_time = \"10ms\"\nusers = 2",
    );
    let summary = run_scenario(dir.path(), "closed", &format!("{closed}{FLOWS}")).await;
    assert_eq!(summary.load_model.to_string(), "closed");
    let m = figures(&summary);
    let (created, _) = counts(m, "signup/create");
    assert!(created > 0, "closed users ran the flow");
    assert_eq!(counts(m, "signup/read"), (created, 0));
    assert_eq!(m.flow_steps_skipped, counts(m, "broken/check_fails").0);

    // 2. Sequential: rows in turn, shared by all users, then from the top again.
    write_accounts(dir.path(), 3);
    let summary = run_scenario(
        dir.path(),
        "sequential",
        &format!("{}{}", head("sequential", &base), feed("")),
    )
    .await;
    let m = figures(&summary);
    assert_eq!(
        counts(m, "feed/second").1,
        0,
        "both steps of an iteration read one row"
    );
    let emails = first_step_emails(&seen);
    assert_eq!(emails.len(), 3, "{emails:?}");
    let (min, max) = (emails.values().min(), emails.values().max());
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "in turn: {emails:?}"
    );

    // 3. Random: every draw from the file, all rows eventually.
    let summary = run_scenario(
        dir.path(),
        "random",
        &format!("{}{}", head("random", &base), feed("order = \"random\"")),
    )
    .await;
    assert_eq!(counts(figures(&summary), "feed/second").1, 0);
    let emails = first_step_emails(&seen);
    assert_eq!(
        emails.keys().collect::<Vec<_>>(),
        ["user0@x.test", "user1@x.test", "user2@x.test"]
    );

    // 4. Unique, stop: each row once, then the users stop and the run says why.
    write_accounts(dir.path(), 5);
    let summary = run_scenario(
        dir.path(),
        "unique_stop",
        &format!(
            "{}{}",
            head("unique_stop", &base),
            feed("order = \"unique\"\non_exhausted = \"stop\"")
        ),
    )
    .await;
    let m = figures(&summary);
    let emails = first_step_emails(&seen);
    assert_eq!(emails.len(), 5, "{emails:?}");
    assert!(
        emails.values().all(|n| *n == 1),
        "each row once: {emails:?}"
    );
    assert_eq!(
        m.stopped_early.as_deref(),
        Some("data file accounts exhausted after 5 rows")
    );
    assert!(m.partial, "the figures cover what was sent");
    let saved =
        std::fs::read_to_string(dir.path().join("unique_stop/summary.json")).expect("summary.json");
    assert!(saved.contains("data file accounts exhausted after 5 rows"));

    // 5. Unique, wrap: each row once, then again from the first.
    write_accounts(dir.path(), 3);
    let summary = run_scenario(
        dir.path(),
        "unique_wrap",
        &format!(
            "{}{}",
            head("unique_wrap", &base),
            feed("order = \"unique\"\non_exhausted = \"wrap\"")
        ),
    )
    .await;
    assert!(figures(&summary).stopped_early.is_none());
    let emails = first_step_emails(&seen);
    assert_eq!(emails.len(), 3);
    assert!(emails.values().sum::<usize>() > 6, "wrapped: {emails:?}");
}

/// A secret from the environment is sent (header, path, body) but never written: not in any
/// file of the run directory, not on stdout or stderr — with debug logging on, and with a
/// failing check whose text names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_secret_is_sent_but_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Seen::default());
    let base = common::serve(app(Arc::clone(&seen))).await;
    let scenario = common::write_scenario(
        dir.path(),
        "secret.toml",
        &format!(
            r#"{}
[[requests]]
name = "plain"
weight = 3
method = "POST"
path = "/secret/{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}"
body = '{{"key": "{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}"}}'
headers = {{ x-api-key = "{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}" }}

[[flows]]
name = "keyed"

[[flows.steps]]
name = "send"
method = "POST"
path = "/secret/{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}"
body = '{{"key": "{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}"}}'
headers = {{ x-api-key = "{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}" }}
checks = [{{ body_contains = "{{{{env.APIBENCH_FLOWS_TEST_SECRET}}}}" }}]
"#,
            head("secret", &base)
        ),
    );
    let out = dir.path().join("out");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_apibench"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .env("APIBENCH_FLOWS_TEST_SECRET", SECRET)
        .env("RUST_LOG", "debug")
        .output()
        .await
        .expect("apibench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "apibench failed:\n{stderr}");
    assert!(
        seen.keyed.load(Ordering::Relaxed) > 10,
        "the secret was sent in the header, path and body"
    );
    assert!(!stdout.contains(SECRET), "stdout leaks the secret");
    assert!(!stderr.contains(SECRET), "stderr leaks the secret");
    assert!(
        stderr.contains("body_contains"),
        "the failed check is logged by its text: {stderr}"
    );

    let mut files = Vec::new();
    let mut pending = vec![out.clone()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read run dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() >= 4,
        "run.json, summary.json, index.html, latency.hlog: {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).expect("read result file");
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the secret",
            file.display()
        );
    }
    let run_json = std::fs::read_to_string(out.join("run.json")).expect("run.json");
    assert!(
        run_json.contains("{{env.APIBENCH_FLOWS_TEST_SECRET}}"),
        "run.json keeps the template text"
    );
}
