//! The bookkeeping around each request: the API's Prometheus update and the load generator's
//! schedule step and HDR record.

use std::hint::black_box;
use std::time::{Duration, Instant};

use api::metrics::record_request;
use apibench_benches::criterion_config;
use criterion::{Criterion, criterion_group, criterion_main};
use loadgen::recorder::{new_histogram, record_clamped};
use loadgen::schedule::{self, Schedule, SchedulePlan, Stage};

/// What does the API's per-request Prometheus update (counter + histogram) cost?
fn metrics_record(c: &mut Criterion) {
    // The API's own recorder and buckets, so the update lands where it does in production.
    let handle =
        api::metrics::recorder().unwrap_or_else(|| panic!("the Prometheus recorder is missing"));
    record_request("/api/users/{id}", "GET", 200, 0.001);
    let rendered = handle.render();
    assert!(
        rendered.contains(
            r#"api_requests_total{endpoint="/api/users/{id}",method="GET",status="200"}"#
        ),
        "the update did not reach the recorder:\n{rendered}"
    );
    let mut group = c.benchmark_group("metrics_record");
    group.bench_function("counter_plus_histogram", |b| {
        b.iter(|| record_request("/api/users/{id}", "GET", 200, black_box(0.0012)))
    });
    group.finish();
}

/// What does the generator spend per request outside the HTTP exchange: taking its slot from
/// the shared open-model schedule, and recording the latency into an HDR histogram?
fn latency_record(c: &mut Criterion) {
    // 10^6 requests/s for 10^6 s: a schedule criterion cannot exhaust.
    let plan = SchedulePlan::new(
        Duration::ZERO,
        &[Stage {
            rate_per_sec: 1e6,
            duration: Duration::from_secs(1_000_000),
        }],
    );
    let schedule = Schedule::new(plan);
    let start = schedule.start();
    let mut user_free_at = Instant::now();
    // The step of loadgen's engine before each send: slot, wait decision, lateness checks.
    let mut step = || {
        let Some(slot) = schedule.take() else {
            panic!("the bench schedule ran out of slots");
        };
        let now = Instant::now();
        let wait = schedule::wait_for(
            slot.due.saturating_duration_since(start),
            now.saturating_duration_since(start),
        );
        let late = schedule::is_generator_late(slot.due, user_free_at, now);
        let backlogged = schedule::is_backlogged(slot.due, user_free_at);
        user_free_at = now;
        (wait, late, backlogged)
    };
    // loadgen's histogram (1 µs .. 60 s, 3 significant digits), fed latencies spread over
    // 0.5 .. 100 ms so records do not all hit one bucket.
    let mut histogram = new_histogram();
    let mut iteration = 0_u64;
    let mut latency_us = move || {
        iteration += 1;
        500 + iteration.wrapping_mul(7_919) % 100_000
    };

    let mut group = c.benchmark_group("latency_record");
    group.bench_function("schedule_step", |b| b.iter(|| black_box(step())));
    group.bench_function("hdr_record", |b| {
        b.iter(|| record_clamped(&mut histogram, black_box(latency_us())))
    });
    group.bench_function("schedule_step_plus_hdr_record", |b| {
        b.iter(|| {
            black_box(step());
            record_clamped(&mut histogram, black_box(latency_us()));
        })
    });
    group.finish();
    assert!(!histogram.is_empty(), "nothing was recorded");
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = metrics_record, latency_record
}
criterion_main!(benches);
