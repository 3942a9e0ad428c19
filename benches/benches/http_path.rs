//! The request path without the database's share: JSON out, JSON in, gzip, and the framework.

use std::hint::black_box;
use std::io::Write as _;

use api::routes::posts::PostList;
use api::routes::users::NewUser;
use api::{ApiError, PostsStrategy, ValidatedJson};
use apibench_benches::{criterion_config, fixture, runtime};
use axum::body::Body;
use axum::extract::FromRequest as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{Method, Request, StatusCode, header};
use tower::ServiceExt as _;

/// A `GET /api/posts` body of `limit` posts, read from the seeded database as the API would.
fn post_list(limit: i64) -> PostList {
    let posts = runtime()
        .block_on(api::list_posts(&fixture().db, limit, PostsStrategy::Batch))
        .unwrap_or_else(|e| panic!("listing {limit} seeded posts: {e}"));
    assert_eq!(posts.len() as i64, limit, "the seed has fewer posts");
    PostList { posts }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| panic!("serialising a bench body: {e}"))
}

/// What does turning rows into response bytes cost, per user and per page of posts?
fn serialize(c: &mut Criterion) {
    let user = runtime()
        .block_on(api::get_user(&fixture().db, 1))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("seeded user 1 is missing"));
    let mut group = c.benchmark_group("serialize");
    group.throughput(Throughput::Bytes(to_json(&user).len() as u64));
    group.bench_function("user", |b| b.iter(|| serde_json::to_vec(black_box(&user))));
    for limit in [20, 100] {
        let page = post_list(limit);
        group.throughput(Throughput::Bytes(to_json(&page).len() as u64));
        group.bench_with_input(BenchmarkId::new("posts", limit), &page, |b, page| {
            b.iter(|| serde_json::to_vec(black_box(page)))
        });
    }
    group.finish();
}

fn json_request(body: &'static str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("building a bench request: {e}"))
}

/// How much of `POST /api/users` is spent checking the body, on the happy and the worst path?
fn validate(c: &mut Criterion) {
    const VALID: &str =
        r#"{"email":"Ada@Example.com","password":"correct horse battery","name":"Ada Lovelace"}"#;
    // Every rule fails: bad email, 5-character password, blank name → three field messages.
    const ALL_WRONG: &str = r#"{"email":"not-an-email","password":"short","name":"   "}"#;
    let rt = runtime();
    let check = |body| {
        rt.block_on(ValidatedJson::<NewUser>::from_request(
            json_request(body),
            &(),
        ))
    };
    assert!(check(VALID).is_ok(), "the valid body was rejected");
    match check(ALL_WRONG) {
        Err(ApiError::Validation(fields)) => assert_eq!(fields.len(), 3, "{fields:?}"),
        other => panic!("the all-wrong body gave {other:?}, not three field errors"),
    }
    let mut group = c.benchmark_group("validate");
    for (case, body) in [("valid", VALID), ("every_field_wrong", ALL_WRONG)] {
        group.bench_function(case, |b| {
            b.to_async(rt).iter(|| async {
                let outcome = ValidatedJson::<NewUser>::from_request(json_request(body), &()).await;
                black_box(outcome.is_ok())
            })
        });
    }
    group.finish();
}

/// What does gzip add to a 100-post response at the level the API uses (6), and at level 1?
fn compress(c: &mut Criterion) {
    let body = to_json(&post_list(100));
    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // tower-http's `CompressionLayer::new()` uses `CompressionLevel::Default`, which
    // async-compression maps to `flate2::Compression::default()` — level 6.
    for level in [6, 1] {
        group.bench_with_input(BenchmarkId::new("gzip_level", level), &body, |b, body| {
            b.iter(|| {
                let mut encoder =
                    GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::new(level));
                let written = encoder.write_all(black_box(body));
                black_box((written.is_ok(), encoder.finish().map(|gz| gz.len())))
            })
        });
    }
    group.finish();
}

/// What does the framework cost per request — routing, extractors, middleware, error bodies?
fn router(c: &mut Criterion) {
    // The metrics middleware is only layered in when the recorder is installed, as in the API.
    let _ = api::metrics::recorder();
    let app = api::app(fixture().state.clone());
    let rt = runtime();
    // (case, path, expected status). `/healthz` runs `SELECT 1` through the pool and
    // `/api/users/1` a point read, so those two include a database round trip (compare with
    // `db_point_read`); the 404 and the 400 (non-numeric id) never reach the database.
    let cases = [
        ("healthz_200", "/healthz", StatusCode::OK),
        ("get_user_200", "/api/users/1", StatusCode::OK),
        ("unknown_route_404", "/no/such/route", StatusCode::NOT_FOUND),
        ("bad_id_400", "/api/users/abc", StatusCode::BAD_REQUEST),
    ];
    let request = |path: &'static str| {
        Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("building a bench request: {e}"))
    };
    for (case, path, expected) in cases {
        let response = rt.block_on(app.clone().oneshot(request(path)));
        let status = response.map(|r| r.status()).unwrap_or_else(|e| match e {});
        assert_eq!(status, expected, "{case}: GET {path}");
    }
    let mut group = c.benchmark_group("router");
    for (case, path, _) in cases {
        group.bench_function(case, |b| {
            b.to_async(rt).iter(|| async {
                let response = app
                    .clone()
                    .oneshot(request(path))
                    .await
                    .unwrap_or_else(|e| match e {});
                // Drain the body: a handler's serialisation happens before this, gzip (when
                // asked for) while it is read.
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                black_box(body.map(|b| b.len()).ok())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = serialize, validate, compress, router
}
criterion_main!(benches);
