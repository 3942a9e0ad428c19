//! The HTTP contract suite (docs/CONTRACT.md) over a real socket, for ANY server.
//!
//! With `CONTRACT_BASE_URL=http://host:port` set it checks that server (the Node.js baseline,
//! a deployed build). The server must run with the default knobs of docs/KNOBS.md (cache
//! headers, gzip and metrics on) against a database that already has the schema; the tests
//! create the users and posts they need through the API and never assume any other rows, and
//! every email carries a unique suffix so the suite can rerun against a persistent database.
//! Without it, this crate's server is started in-process on 127.0.0.1:0 (on its own runtime
//! thread, shared by all tests) against a fresh database.

mod common;

use std::io::Read as _;
use std::sync::OnceLock;

use reqwest::header;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use common::{Reply, field_names, id_of, is_iso_millis_utc, unique_suffix};

/// The server under test, without a trailing slash.
fn base_url() -> &'static str {
    static BASE_URL: OnceLock<String> = OnceLock::new();
    BASE_URL.get_or_init(|| match std::env::var("CONTRACT_BASE_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
        _ if std::env::var("CONTRACT_TARGET").is_ok_and(|t| t == "node") => start_node_server(),
        _ => start_in_process_server(),
    })
}

/// Starts the Node.js baseline (`baselines/node`) on 127.0.0.1:0 against a fresh, migrated
/// database — `CONTRACT_TARGET=node`, what `make test` uses for the parity check.
///
/// The child keeps our end of its stdin as a lifeline (`API_EXIT_ON_STDIN_EOF`): statics never
/// drop, so when this test process exits the pipe closes and the server stops by itself.
fn start_node_server() -> String {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let database_url = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a setup runtime");
        runtime.block_on(async {
            let url = common::fresh_database_url().await;
            let pool = sqlx::PgPool::connect(&url)
                .await
                .expect("connecting to the fresh database");
            api::migrate(&pool)
                .await
                .expect("migrating for the Node server");
            pool.close().await;
            url
        })
    })
    .join()
    .expect("database setup thread");

    let node_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../baselines/node");
    assert!(
        node_dir.join("node_modules").is_dir(),
        "{}: run `npm ci` there first (make test does)",
        node_dir.display()
    );
    let knobs = common::test_knobs();
    let mut child = Command::new("node")
        .arg("src/server.js")
        .current_dir(&node_dir)
        .env("DATABASE_URL", &database_url)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("API_POOL_MAX", knobs.pool_max.to_string())
        .env("API_POOL_MIN", knobs.pool_min.to_string())
        .env("API_ARGON2_MEMORY_KIB", knobs.argon2_memory_kib.to_string())
        .env("API_ARGON2_ITERATIONS", knobs.argon2_iterations.to_string())
        .env("API_LOG_FORMAT", "off")
        .env("API_EXIT_ON_STDIN_EOF", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting `node src/server.js` (is Node.js 20 installed?)");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => match line.strip_prefix("listening on ") {
                Some(url) => break url.trim().to_owned(),
                None => seen.push(line),
            },
            _ => panic!(
                "the Node server exited before listening:\n{}",
                seen.join("\n")
            ),
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe; keep stdin open forever.
    std::thread::spawn(move || lines.for_each(drop));
    static LIFELINE: OnceLock<std::sync::Mutex<std::process::Child>> = OnceLock::new();
    let _ = LIFELINE.set(std::sync::Mutex::new(child));
    address
}

/// Starts this crate's server on its own runtime thread (test runtimes end with their test).
fn start_in_process_server() -> String {
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("contract-api-server".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("building the server runtime");
            runtime.block_on(async move {
                let config = api::Config {
                    database_url: Some(common::fresh_database_url().await),
                    listen: "127.0.0.1:0".parse().expect("a socket address"),
                    provision: pgprovision::Provision::Auto,
                    knobs: common::test_knobs(),
                };
                let server = api::Server::start(config)
                    .await
                    .expect("starting the in-process API");
                address_sender
                    .send(server.local_addr())
                    .expect("reporting the address");
                server
                    .run_until(std::future::pending())
                    .await
                    .expect("serving the in-process API");
            });
        })
        .expect("spawning the server thread");
    let address = address_receiver.recv().expect("the in-process API started");
    format!("http://{address}")
}

/// A client that sends no `Accept-Encoding` (so bodies arrive as sent) and never retries.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("building the HTTP client")
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("sending the request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("reading the body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(path: &str) -> Reply {
    send(client().get(format!("{}{path}", base_url()))).await
}

async fn post_json(path: &str, body: impl Into<reqwest::Body>) -> Reply {
    send(
        client()
            .post(format!("{}{path}", base_url()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body),
    )
    .await
}

fn email() -> String {
    format!("contract-{}@example.com", unique_suffix())
}

async fn create_user(email: &str) -> Value {
    let reply = post_json(
        "/api/users",
        json!({"email": email, "password": "correct horse", "name": "Ann"}).to_string(),
    )
    .await;
    reply
        .assert_status(StatusCode::CREATED)
        .assert_json_content_type();
    reply.json()
}

async fn create_post(author_id: i64, title: &str, body: &str) -> Value {
    let reply = post_json(
        "/api/posts",
        json!({"author_id": author_id, "title": title, "body": body}).to_string(),
    )
    .await;
    reply
        .assert_status(StatusCode::CREATED)
        .assert_json_content_type();
    reply.json()
}

fn assert_keys(value: &Value, keys: &[&str]) {
    let mut got: Vec<&str> = value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "keys of {value}");
}

fn assert_user(user: &Value) {
    assert_keys(user, &["id", "email", "name", "created_at"]);
    assert!(user["id"].as_i64().is_some_and(|id| id > 0), "{user}");
    assert!(
        user["email"].is_string() && user["name"].is_string(),
        "{user}"
    );
    assert!(
        is_iso_millis_utc(user["created_at"].as_str().unwrap_or_default()),
        "{user}"
    );
}

fn assert_post(post: &Value) {
    assert_keys(post, &["id", "author_id", "title", "body", "created_at"]);
    assert!(post["id"].as_i64().is_some_and(|id| id > 0), "{post}");
    assert!(
        post["author_id"].as_i64().is_some_and(|id| id > 0),
        "{post}"
    );
    assert!(
        is_iso_millis_utc(post["created_at"].as_str().unwrap_or_default()),
        "{post}"
    );
}

/// An id no test creates (the largest BIGSERIAL value).
const ABSENT_ID: &str = "9223372036854775807";

#[tokio::test]
async fn create_and_read_a_user() {
    let address = email();
    let shouted = format!("  {}  ", address.to_uppercase());
    let reply = post_json(
        "/api/users",
        json!({"email": shouted, "password": "correct horse", "name": "  Ann Example "})
            .to_string(),
    )
    .await;
    reply
        .assert_status(StatusCode::CREATED)
        .assert_json_content_type();
    let user = reply.json();
    assert_user(&user);
    assert_eq!(user["email"], address, "stored trimmed and lower-cased");
    assert_eq!(user["name"], "Ann Example", "stored trimmed");
    let text = String::from_utf8_lossy(&reply.body).to_lowercase();
    assert!(
        !text.contains("password") && !text.contains("correct horse") && !text.contains("argon2")
    );

    let fetched = get(&format!("/api/users/{}", id_of(&user))).await;
    fetched
        .assert_status(StatusCode::OK)
        .assert_json_content_type();
    assert_eq!(fetched.json(), user);
}

#[tokio::test]
async fn user_errors() {
    let fields = post_json(
        "/api/users",
        json!({"email": "nope", "password": "short", "name": ""}).to_string(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["email", "name", "password"]);
    let fields = post_json("/api/users", "{}")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["email", "name", "password"]);
    let fields = post_json(
        "/api/users",
        json!({"email": email(), "password": "correct horse"}).to_string(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["name"]);

    post_json("/api/users", "{\"email\": ")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    post_json("/api/users", "")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    post_json(
        "/api/users",
        json!({"email": 42, "password": "correct horse", "name": "Ann"}).to_string(),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable_entity");
    post_json("/api/users", "[]")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable_entity");

    let body = json!({"email": email(), "password": "correct horse", "name": "Ann"}).to_string();
    send(
        client()
            .post(format!("{}/api/users", base_url()))
            .body(body.clone()),
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(
        client()
            .post(format!("{}/api/users", base_url()))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(body),
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let big = json!({"email": email(), "password": "correct horse", "name": "x".repeat(70 * 1024)})
        .to_string();
    post_json("/api/users", big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn duplicate_email_is_409() {
    let address = email();
    create_user(&address).await;
    for duplicate in [address.clone(), address.to_uppercase()] {
        post_json(
            "/api/users",
            json!({"email": duplicate, "password": "correct horse", "name": "Bob"}).to_string(),
        )
        .await
        .assert_error(StatusCode::CONFLICT, "email_taken");
    }
}

#[tokio::test]
async fn user_by_id_absent_or_malformed() {
    get(&format!("/api/users/{ABSENT_ID}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    for bad in ["abc", "0", "-1", "1.5", "9223372036854775808"] {
        get(&format!("/api/users/{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn users_by_ids() {
    let a = id_of(&create_user(&email()).await);
    let b = id_of(&create_user(&email()).await);
    let reply = get(&format!("/api/users?ids={b},{a},{b},{ABSENT_ID}")).await;
    reply
        .assert_status(StatusCode::OK)
        .assert_json_content_type();
    let body = reply.json();
    assert_keys(&body, &["users"]);
    let users = body["users"].as_array().cloned().unwrap_or_default();
    users.iter().for_each(assert_user);
    assert_eq!(
        users.iter().map(id_of).collect::<Vec<_>>(),
        [a.min(b), a.max(b)]
    );

    let too_many = (1..=1001)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for query in [
        "",
        "?ids=",
        "?ids=,,,",
        "?ids=abc",
        &format!("?ids={too_many}"),
    ] {
        get(&format!("/api/users{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn create_posts_and_reject_bad_ones() {
    let author = id_of(&create_user(&email()).await);
    let post = create_post(author, "Title", "Body").await;
    assert_post(&post);
    assert_eq!(
        (post["author_id"].as_i64(), &post["title"], &post["body"]),
        (Some(author), &json!("Title"), &json!("Body"))
    );

    let fields = post_json("/api/posts", json!({"author_id": ABSENT_ID.parse::<i64>().unwrap_or(i64::MAX), "title": "t", "body": "b"}).to_string())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["author_id"]);
    let fields = post_json(
        "/api/posts",
        json!({"author_id": 0, "title": "", "body": ""}).to_string(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["author_id", "body", "title"]);
    let fields = post_json("/api/posts", json!({"title": "t".repeat(201)}).to_string())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(field_names(&fields), ["author_id", "body", "title"]);
    post_json(
        "/api/posts",
        json!({"author_id": "1", "title": "t", "body": "b"}).to_string(),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable_entity");
    send(
        client()
            .post(format!("{}/api/posts", base_url()))
            .body("{}"),
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn list_posts_newest_first_with_authors() {
    let author = create_user(&email()).await;
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(create_post(id_of(&author), &format!("listed {i}"), "b").await);
    }
    let reply = get("/api/posts?limit=100").await;
    reply
        .assert_status(StatusCode::OK)
        .assert_json_content_type();
    let body = reply.json();
    assert_keys(&body, &["posts"]);
    let posts = body["posts"].as_array().cloned().unwrap_or_default();
    assert!(!posts.is_empty() && posts.len() <= 100);
    for listed in &posts {
        let without_author: serde_json::Map<String, Value> = listed
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| *k != "author")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        assert_post(&Value::Object(without_author));
        assert_user(&listed["author"]);
        assert_eq!(listed["author"]["id"], listed["author_id"]);
    }
    let stamps: Vec<&str> = posts
        .iter()
        .filter_map(|p| p["created_at"].as_str())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {stamps:?}"
    );
    let positions: Vec<usize> = mine
        .iter()
        .map(|p| {
            posts
                .iter()
                .position(|l| l["id"] == p["id"])
                .expect("a just-created post is listed")
        })
        .collect();
    assert!(
        positions[0] > positions[1] && positions[1] > positions[2],
        "{positions:?}"
    );
    let newest = &posts[positions[2]];
    assert_eq!(newest["author"], author);

    let default = get("/api/posts").await.json();
    let count = default["posts"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    assert!(
        (3..=20).contains(&count),
        "default limit is 20, got {count}"
    );
    assert_eq!(
        get("/api/posts?limit=1").await.json()["posts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    for bad in ["0", "101", "abc"] {
        get(&format!("/api/posts?limit={bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn a_post_is_cacheable() {
    let author = id_of(&create_user(&email()).await);
    let post = create_post(author, "cached", "body").await;
    let path = format!("/api/posts/{}", id_of(&post));
    let reply = get(&path).await;
    reply
        .assert_status(StatusCode::OK)
        .assert_json_content_type();
    assert_eq!(reply.json(), post);
    assert_eq!(
        reply.header(header::CACHE_CONTROL),
        Some("public, max-age=3600")
    );
    let etag = reply.header(header::ETAG).expect("an ETag").to_owned();
    let digest = hex_prefix(&reply.body);
    assert_eq!(
        etag,
        format!("\"{digest}\""),
        "strong ETag: quoted first 32 hex digits of sha256(body)"
    );

    for candidate in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let conditional = send(
            client()
                .get(format!("{}{path}", base_url()))
                .header(header::IF_NONE_MATCH, candidate.as_str()),
        )
        .await;
        conditional.assert_status(StatusCode::NOT_MODIFIED);
        assert!(conditional.body.is_empty(), "304 with a body");
        assert_eq!(conditional.header(header::ETAG), Some(etag.as_str()));
    }
    let changed = send(
        client()
            .get(format!("{}{path}", base_url()))
            .header(header::IF_NONE_MATCH, "\"stale\""),
    )
    .await;
    changed.assert_status(StatusCode::OK);

    get(&format!("/api/posts/{ABSENT_ID}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    get("/api/posts/abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

fn hex_prefix(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn responses_are_gzipped_when_accepted() {
    let author = id_of(&create_user(&email()).await);
    for i in 0..3 {
        create_post(author, &format!("long {i}"), &"lorem ipsum ".repeat(200)).await;
    }
    let zipped = send(
        client()
            .get(format!("{}/api/posts?limit=3", base_url()))
            .header(header::ACCEPT_ENCODING, "gzip"),
    )
    .await;
    zipped.assert_status(StatusCode::OK);
    assert_eq!(zipped.header(header::CONTENT_ENCODING), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    let body: Value = serde_json::from_str(&text).expect("JSON inside the gzip");
    assert_eq!(body["posts"].as_array().map(Vec::len), Some(3));

    let plain = send(client().get(format!("{}/api/posts?limit=3", base_url()))).await;
    assert!(
        plain
            .header(header::CONTENT_ENCODING)
            .is_none_or(|e| e == "identity")
    );
    plain.json();
}

#[tokio::test]
async fn healthz_reports_ok_and_knobs() {
    let reply = get("/healthz").await;
    reply
        .assert_status(StatusCode::OK)
        .assert_json_content_type();
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    let knobs = body["knobs"].as_object().expect("a knobs object");
    for knob in knob_names_from_doc() {
        assert!(
            knobs.contains_key(&knob),
            "knob {knob} missing from /healthz: {body}"
        );
    }
}

/// The knob names of docs/KNOBS.md (first column of its table).
fn knob_names_from_doc() -> Vec<String> {
    include_str!("../../docs/KNOBS.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[tokio::test]
async fn metrics_in_prometheus_text() {
    get("/healthz").await;
    get("/no/such/route").await;
    let reply = get("/metrics").await;
    reply.assert_status(StatusCode::OK);
    assert!(
        reply
            .header(header::CONTENT_TYPE)
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("# TYPE api_requests_total counter"), "{text}");
    assert!(
        text.contains("# TYPE api_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("# TYPE api_db_pool_size gauge"), "{text}");
    assert!(text.contains("# TYPE api_db_pool_idle gauge"), "{text}");
    let counted = text.lines().any(|l| {
        l.starts_with("api_requests_total{")
            && [
                r#"endpoint="/healthz""#,
                r#"method="GET""#,
                r#"status="200""#,
            ]
            .iter()
            .all(|label| l.contains(label))
    });
    assert!(counted, "no GET /healthz 200 counted:\n{text}");
    assert!(text.contains(r#"endpoint="unmatched""#), "{text}");
    assert!(
        !text.contains("/no/such/route"),
        "raw paths must not become labels"
    );
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    get("/api/nothing-here")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    for (method, path) in [
        (Method::DELETE, "/api/users/1"),
        (Method::PUT, "/api/posts"),
        (Method::POST, "/healthz"),
    ] {
        send(client().request(method, format!("{}{path}", base_url())))
            .await
            .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}
