//! argon2id, the CPU cost that dominates `POST /api/users`.

use std::hint::black_box;
use std::time::Duration;

use api::{Knobs, PasswordHasher};
use apibench_benches::{criterion_config, runtime};
use criterion::{Criterion, criterion_group, criterion_main};

fn hasher(knobs: &Knobs) -> PasswordHasher {
    PasswordHasher::from_knobs(knobs).unwrap_or_else(|e| panic!("building the hasher: {e}"))
}

/// How long does one sign-up's password hash take at the API's default cost (19 MiB, t = 2,
/// p = 1) and at the cheap cost the tests use (64 KiB, t = 1)? Timed through
/// `PasswordHasher::hash`, i.e. including the hop to tokio's blocking pool the API makes.
fn password_hash(c: &mut Criterion) {
    let default_cost = Knobs::default();
    // The cost of api/tests/common: argon2's minimum-ish memory, one pass.
    let test_cost = Knobs {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Knobs::default()
    };
    let rt = runtime();
    let mut group = c.benchmark_group("password_hash");
    // Tens of milliseconds per hash: 10 samples (55 hashes) fit in the measurement time.
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (case, knobs) in [
        ("default_19mib_t2_p1", &default_cost),
        ("test_64kib_t1_p1", &test_cost),
    ] {
        let hasher = hasher(knobs);
        group.bench_function(case, |b| {
            b.to_async(rt).iter(|| async {
                let phc = hasher
                    .hash("correct horse battery staple".to_owned())
                    .await
                    .unwrap_or_else(|e| panic!("hashing: {e}"));
                black_box(phc)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = password_hash
}
criterion_main!(benches);
