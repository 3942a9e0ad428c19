//! The database's share of a request: the API's own queries through its own pool.

use std::hint::black_box;
use std::time::Duration;

use api::{Db, PostsStrategy};
use apibench_benches::{criterion_config, fixture, runtime, seeded_user_id};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// What does `GET /api/users/{id}`'s query cost, and how much of it is `test_before_acquire`'s
/// ping before every checkout?
fn db_point_read(c: &mut Criterion) {
    let fixture = fixture();
    let rt = runtime();
    let mut group = c.benchmark_group("db_point_read");
    for (case, db) in [
        ("test_before_acquire_on", &fixture.db),
        (
            "test_before_acquire_off",
            &fixture.db_without_test_before_acquire,
        ),
    ] {
        let mut iteration = 0_u64;
        group.bench_function(case, |b| {
            b.to_async(rt).iter(|| {
                iteration += 1;
                let id = seeded_user_id(iteration);
                async move {
                    let user = api::get_user(db, id)
                        .await
                        .unwrap_or_else(|e| panic!("reading user {id}: {e}"));
                    black_box(user)
                }
            })
        });
    }
    group.finish();
}

fn strategy_name(strategy: PostsStrategy) -> &'static str {
    match strategy {
        PostsStrategy::Batch => "batch",
        PostsStrategy::NPlusOne => "n_plus_one",
    }
}

/// Checks once, before timing, that both strategies return the same posts and issue the
/// statements they claim (batch 2, n_plus_one 1 + N) — so the chart compares what it says.
fn check_strategies(db: &Db, limit: i64) {
    let rt = runtime();
    let mut listed = Vec::new();
    for (strategy, statements) in [
        (PostsStrategy::Batch, 2),
        (PostsStrategy::NPlusOne, 1 + limit as u64),
    ] {
        let before = db.queries_issued();
        let posts = rt
            .block_on(api::list_posts(db, limit, strategy))
            .unwrap_or_else(|e| panic!("listing {limit} posts ({strategy:?}): {e}"));
        assert_eq!(posts.len() as i64, limit, "the seed has fewer posts");
        assert_eq!(
            db.queries_issued() - before,
            statements,
            "{strategy:?} at N = {limit}"
        );
        listed.push(posts);
    }
    assert_eq!(listed[0], listed[1], "batch and n_plus_one disagree");
}

/// The seed's batch lesson in one chart: `GET /api/posts?limit=N`'s queries, 2 statements
/// (batch) vs 1 + N (n_plus_one), on the same rows.
fn db_posts(c: &mut Criterion) {
    let db = &fixture().db;
    let rt = runtime();
    let mut group = c.benchmark_group("db_posts");
    // n_plus_one at N = 100 takes ~10-20 ms per iteration: 20 samples (210 iterations) need
    // about 4 s, so this group measures for 5 s instead of the suite's 3 s.
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for limit in [10_i64, 50, 100] {
        check_strategies(db, limit);
        for strategy in [PostsStrategy::Batch, PostsStrategy::NPlusOne] {
            let id = BenchmarkId::new(strategy_name(strategy), limit);
            group.bench_with_input(id, &limit, |b, &limit| {
                b.to_async(rt).iter(|| async move {
                    let posts = api::list_posts(db, limit, strategy)
                        .await
                        .unwrap_or_else(|e| panic!("listing {limit} posts: {e}"));
                    black_box(posts)
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = db_point_read, db_posts
}
criterion_main!(benches);
