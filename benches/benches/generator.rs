//! The load generator's own work per request, without the network: render its path and body,
//! write the request's bytes from the prepared parts into the user's buffer, and record the
//! sample in the worker's recorder. A regression in the generator's cost per request shows here first
//! (`make microbench`), before it shows as a lower calibrated ceiling.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use apibench_benches::{criterion_config, runtime};
use criterion::{Criterion, criterion_group, criterion_main};
use loadgen::engine::http::{Endpoint, PreparedRequest, RenderBuffers};
use loadgen::recorder::{Collector, Sample};
use loadgen::scenario::RequestSpec;
use loadgen::template::{RenderContext, SharedTemplateState, Template};

fn spec(method: &str, path: &str, body: Option<&str>) -> RequestSpec {
    let compile = |text: &str| {
        Template::compile(text).unwrap_or_else(|e| panic!("template `{text}`: {}", e.message))
    };
    RequestSpec {
        name: "bench".into(),
        method: method.into(),
        path: compile(path),
        body: body.map(compile),
        path_source: path.into(),
        body_source: body.map(str::to_string),
        expect_status: None,
        weight: 1,
        headers: BTreeMap::new(),
        step: Default::default(),
    }
}

fn render_context() -> RenderContext {
    RenderContext::new(
        42,
        0,
        Arc::new(SharedTemplateState {
            users: 1_000,
            posts: 5_000,
            run_nonce: "bench".into(),
            seq: AtomicU64::new(1),
            seq_step: 1,
        }),
    )
}

fn sample(i: u64) -> Sample {
    // 100 000 samples per "second", cycling over 8 intervals: the recorder flushes a batch per
    // interval as in a 100 000/s run, and the collector's memory stays bounded however long
    // criterion iterates.
    let offset_us = (i / 100_000 % 8) * 1_000_000;
    Sample {
        request: 0,
        latency_us: 500 + i.wrapping_mul(7_919) % 100_000,
        ttfb_us: Some(400),
        completed_offset_us: offset_us,
        sent_offset_us: offset_us,
        status: 200,
        error: false,
        timed_out: false,
        in_warmup: false,
        generator_late: false,
        backlogged: false,
        backlogged_at_cap: false,
        send_lag_us: 20,
        service_us: 480,
    }
}

fn generator_request(c: &mut Criterion) {
    let endpoint = runtime()
        .block_on(Endpoint::resolve("http://127.0.0.1:8080"))
        .unwrap_or_else(|e| panic!("endpoint: {e}"));
    let prepare = |s: RequestSpec| {
        PreparedRequest::new(&s, &endpoint, Some("gzip")).unwrap_or_else(|e| panic!("prepare: {e}"))
    };
    let literal = prepare(spec("GET", "/", None));
    let point_read = prepare(spec("GET", "/api/users/{{user_id}}", None));
    let create = prepare(spec(
        "POST",
        "/api/users",
        Some(r#"{"email":"{{unique_email}}","name":"Bench {{seq}}"}"#),
    ));
    let mut buffers = RenderBuffers::new();
    let mut render = render_context();
    point_read
        .build(&endpoint, &mut buffers, &mut render)
        .unwrap_or_else(|e| panic!("build: {e}"));
    assert!(
        buffers.request().starts_with(b"GET /api/users/"),
        "{}",
        String::from_utf8_lossy(buffers.request())
    );

    // A worker's own recorder, as in a run: users record inline; the collector only merges at
    // the end.
    let (collector, sink) = Collector::start(vec!["bench".into()], Instant::now(), u64::MAX);
    let mut recorder = sink.worker_recorder();
    let mut i = 0_u64;

    let mut group = c.benchmark_group("generator_request");
    group.bench_function("build_literal_path", |b| {
        b.iter(|| black_box(literal.build(&endpoint, &mut buffers, &mut render)))
    });
    group.bench_function("build_point_read", |b| {
        b.iter(|| black_box(point_read.build(&endpoint, &mut buffers, &mut render)))
    });
    group.bench_function("build_post_with_body", |b| {
        b.iter(|| black_box(create.build(&endpoint, &mut buffers, &mut render)))
    });
    group.bench_function("record_sample", |b| {
        b.iter(|| {
            i += 1;
            recorder.record(black_box(&sample(i)));
        })
    });
    // Build + record, with the clock reads a send takes (due check, sent, headers, completed).
    group.bench_function("point_read_build_plus_record", |b| {
        b.iter(|| {
            let sent = Instant::now();
            let request = point_read.build(&endpoint, &mut buffers, &mut render);
            black_box(request.is_ok());
            let _headers = Instant::now();
            let done = Instant::now();
            i += 1;
            let mut s = sample(i);
            s.service_us = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(0);
            recorder.record(&s);
        })
    });
    group.finish();
    drop(recorder);
    drop(sink);
    let recording = collector.finish();
    assert!(recording.requests > 0, "the collector recorded nothing");
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = generator_request
}
criterion_main!(benches);
