//! `apibench import-har` and `import-log` end to end, with the real binary: the written scenario
//! loads, its weights are the recorded counts, no secret is copied, a bad line is reported and
//! never fatal; `[replay]` errors name file:line; and a replay run against an in-process server
//! sends each request when the recording (scaled) says. Goose keeps process-wide state: only
//! one test of this file runs the engine.

mod common;

use axum::Router;
use axum::http::{Method, Uri};
use loadgen::scenario::{self, ReplayTiming};
use loadgen::{RunOptions, run};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const APIBENCH: &str = env!("CARGO_BIN_EXE_apibench");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// `apibench COMMAND RECORDING -o OUT EXTRA…` (the real binary and its parser).
fn import(command: &str, recording: &Path, out: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(APIBENCH)
        .arg(command)
        .arg(recording)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("apibench runs")
}

/// Each request's method, path and weight, in file order.
fn weights(scenario: &scenario::Scenario) -> Vec<(&str, &str, u32)> {
    scenario
        .requests
        .iter()
        .map(|r| (r.method.as_str(), r.path_source.as_str(), r.weight))
        .collect()
}

fn target_url(scenario: &scenario::Scenario) -> &str {
    match &scenario.variants[0].target {
        scenario::TargetSpec::Url { url } => url,
        other => panic!("not a url target: {other:?}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The HAR fixture's requests to its main host, in time order (the CDN entry is skipped):
/// offsets from the first in µs, and the distinct request each is (first appearance order).
const SHOP_OFFSETS_US: [u64; 9] = [
    0, 150_000, 400_000, 700_000, 1_000_000, 1_300_000, 1_600_000, 2_000_000, 2_100_000,
];
const SHOP_REQUESTS: [usize; 9] = [0, 1, 2, 1, 3, 1, 4, 0, 5];

#[test]
fn a_har_becomes_a_scenario_with_counted_weights_and_no_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("shop.toml");
    let output = import("import-har", &fixture("shop.har"), &out, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("6 distinct requests from 9 recorded"),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("log.entries[3]") && stderr.contains("https://cdn.example.net"),
        "the CDN entry is skipped and named: {stderr}"
    );

    let written = std::fs::read_to_string(&out).expect("scenario written");
    for secret in [
        "COOKIE-SECRET",
        "AUTH-SECRET",
        "CSRF-SECRET",
        "QUERY-SECRET",
        "Bearer AUTH",
    ] {
        assert!(!written.contains(secret), "{secret} copied:\n{written}");
        assert!(!stderr.contains(secret) && !stdout.contains(secret));
    }
    assert!(
        written.contains("cookie") && written.contains("authorization"),
        "the comment names what was not copied:\n{written}"
    );
    assert!(written.contains("{{env.API_TOKEN}}"), "{written}");
    assert!(written.contains("api_key=REDACTED"), "{written}");

    let scenario = scenario::load(&out).expect("the written scenario loads");
    assert_eq!(
        weights(&scenario),
        [
            ("GET", "/api/products?page=1", 2),
            ("GET", "/api/products/42", 3),
            ("POST", "/api/cart", 1),
            ("GET", "/api/cart", 1),
            ("POST", "/api/cart", 1),
            ("GET", "/api/search?q=shoes&api_key=REDACTED", 1),
        ]
    );
    let cart = &scenario.requests[2];
    assert_eq!(
        cart.body_source.as_deref(),
        Some(r#"{"product_id": 42, "qty": 2}"#)
    );
    assert_eq!(
        cart.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert!(
        scenario.requests.iter().all(|r| r
            .headers
            .keys()
            .all(|h| h == "accept" || h == "content-type")),
        "only the headers worth keeping"
    );
    assert_eq!(target_url(&scenario), "https://shop.example.com");
    // The mean rate over the recording's span (2.1 s + one mean gap): the same 9 requests.
    assert!(scenario.load.replay.is_none());
    assert_eq!(scenario.load.duration, Duration::from_millis(2_363));
    let rate = scenario.load.stages[0].rate_per_sec;
    assert!((rate * 2.363 - 9.0).abs() < 1e-3, "rate {rate}");

    // Never overwritten without --force; --limit keeps the first N.
    let again = import("import-har", &fixture("shop.har"), &out, &["--limit", "3"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = import(
        "import-har",
        &fixture("shop.har"),
        &out,
        &["--limit", "3", "--force", "--name", "shop-first-3"],
    );
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let limited = scenario::load(&out).expect("loads");
    assert_eq!(limited.name, "shop-first-3");
    let total: u32 = limited.requests.iter().map(|r| r.weight).sum();
    assert_eq!(total, 3);
}

#[test]
fn an_access_log_imports_common_and_combined_lines_and_reports_the_garbage_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sub/access.toml");
    let output = import(
        "import-log",
        &fixture("access.log"),
        &out,
        &[
            "--base-url",
            "http://10.0.0.5:8080/",
            "--timing",
            "original",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("skipped 1 lines") && stderr.contains("line 4:"),
        "{stderr}"
    );
    let scenario = scenario::load(&out).expect("the written scenario loads");
    assert_eq!(
        weights(&scenario),
        [
            ("GET", "/api/users/1", 3),
            ("GET", "/api/users/2", 1),
            ("POST", "/api/posts", 1),
            ("GET", "/healthz", 1),
        ]
    );
    assert_eq!(target_url(&scenario), "http://10.0.0.5:8080");
    // A second's requests spread across it; 15:55:39 +0200 is 13:55:39 UTC.
    let replay = scenario.load.replay.as_ref().expect("a replay");
    assert_eq!(replay.timing, ReplayTiming::Original);
    assert_eq!(replay.file, dir.path().join("sub/access.replay.csv"));
    let arrivals: Vec<(u64, u32)> = replay
        .arrivals
        .iter()
        .map(|a| (a.offset_us, a.request))
        .collect();
    assert_eq!(
        arrivals,
        [
            (0, 0),
            (500_000, 1),
            (1_000_000, 2),
            (2_000_000, 0),
            (2_500_000, 0),
            (3_000_000, 3)
        ]
    );
    let csv = std::fs::read_to_string(&replay.file).expect("arrivals file");
    assert!(
        csv.starts_with("offset_us,request\n0,0\n500000,1\n"),
        "{csv}"
    );
    assert!(
        !std::fs::read_to_string(&out)
            .expect("scenario")
            .contains("alice"),
        "the log's user field is not copied"
    );
    // A replay lasts as long as its recording.
    let mut load = scenario.load.clone();
    assert!(
        load.set_duration(Duration::from_secs(5))
            .is_err_and(|e| e.contains("[replay]"))
    );

    // Nothing importable: exit 2, the reason named.
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, "nope\n\nstill nope\n").expect("write");
    let none = import("import-log", &garbage, &dir.path().join("g.toml"), &[]);
    assert_eq!(none.status.code(), Some(2));
    let message = text(&none.stderr);
    assert!(
        message.contains("no request could be imported")
            && message.contains("line 1:")
            && message.contains("line 3:"),
        "{message}"
    );
}

/// A minimal replay scenario next to `csv` as its arrivals file, with `extra` in `[load]` and
/// `tail` after the requests.
fn replay_scenario(dir: &Path, csv: &str, extra: &str, tail: &str) -> PathBuf {
    std::fs::write(dir.join("r.replay.csv"), csv).expect("write arrivals");
    common::write_scenario(
        dir,
        "r.toml",
        &format!(
            "name = \"r\"\ntarget = {{ kind = \"url\", url = \"http://127.0.0.1:9\" }}\n\
             [load]\nmodel = \"open\"\n{extra}\n[replay]\ntiming = \"scaled:2.0\"\n\
             file = \"r.replay.csv\"\n[[requests]]\nname = \"a\"\npath = \"/a\"\n\
             [[requests]]\nname = \"b\"\npath = \"/b\"\n{tail}"
        ),
    )
}

#[test]
fn replay_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = "offset_us,request\n0,0\n1000000,1\n";
    let error = |csv: &str, extra: &str, tail: &str| {
        let path = replay_scenario(dir.path(), csv, extra, tail);
        scenario::load(&path)
            .expect_err("refused")
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    };
    let toml_line = |e: &str| -> String { e.split(':').take(3).collect::<Vec<_>>().join(":") };

    let e = error(good, "rate_per_sec = 10", "");
    assert!(e.contains("load.rate_per_sec"), "{e}");
    assert_eq!(toml_line(&e), "DIR/r.toml:5:16", "{e}");
    let e = error(good, "duration = \"10s\"", "");
    assert!(e.contains("load.duration"), "{e}");
    let e = error(
        good,
        "",
        "[find_max]\n[[find_max.stages]]\nrate_per_sec = 10\nduration = \"10s\"\n",
    );
    assert!(
        e.starts_with("DIR/r.toml:") && e.contains(": find_max:"),
        "{e}"
    );
    let e = error(good, "warmup = \"600ms\"", "");
    assert!(
        e.contains("load.warmup") && e.contains("nothing would be measured"),
        "{e}"
    );

    let e = error("offset_us,request\n0,0\n12x,1\n", "", "");
    assert!(e.starts_with("DIR/r.replay.csv:3:1: offset_us:"), "{e}");
    let e = error("offset_us,request\n0,0\n5,2\n", "", "");
    assert!(e.starts_with("DIR/r.replay.csv:3:3: request:"), "{e}");

    std::fs::remove_file(dir.path().join("r.replay.csv")).expect("remove");
    let path = dir.path().join("r.toml");
    let e = scenario::load(&path)
        .expect_err("no arrivals file")
        .to_string();
    assert!(
        e.contains("replay.file") && e.contains("cannot read"),
        "{e}"
    );

    // The good one: 2 requests, half speed... twice as fast: 0 and 500 ms.
    let path = replay_scenario(dir.path(), good, "warmup = \"100ms\"", "");
    let loaded = scenario::load(&path).expect("loads");
    let plan = loadgen::runner::schedule_plan(&loaded);
    assert_eq!(plan.total_slots(), 2);
    assert_eq!(plan.warmup_slots(), 1);
    assert_eq!(plan.offset_of(1), Some(Duration::from_millis(500)));
    assert_eq!(plan.request_of(1), Some(1));
}

/// What the in-process server saw: when each request arrived, and which.
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

fn arrival_log(seen: Arrivals) -> Router {
    Router::new().fallback(move |method: Method, uri: Uri| {
        let seen = Arc::clone(&seen);
        async move {
            if let Ok(mut seen) = seen.lock() {
                seen.push((Instant::now(), format!("{method} {uri}")));
            }
            "ok"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_replay_sends_each_request_when_the_recording_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen: Arrivals = Arc::new(Mutex::new(Vec::new()));
    let url = common::serve(arrival_log(Arc::clone(&seen))).await;
    let out = dir.path().join("shop.toml");
    let output = import(
        "import-har",
        &fixture("shop.har"),
        &out,
        &["--timing", "scaled:2.0", "--base-url", &url],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let scenario = scenario::load(&out).expect("loads");
    let expected: Vec<String> = SHOP_REQUESTS
        .iter()
        .map(|&i| {
            let r = &scenario.requests[i];
            format!("{} {}", r.method, r.path_source)
        })
        .collect();

    let (_cancel_tx, cancel_rx) = watch::channel(false);
    let report = run(
        RunOptions {
            scenario: out.clone(),
            out: Some(dir.path().join("run")),
            repeat: 1,
            quiet: true,
            ..RunOptions::default()
        },
        cancel_rx,
    )
    .await
    .expect("the replay runs");
    assert_eq!(report.summary.variants[0].figures.requests, 9);
    assert_eq!(report.summary.variants[0].figures.errors, 0);

    let mut seen = seen.lock().expect("not poisoned").clone();
    seen.sort_by_key(|(at, _)| *at);
    let order: Vec<&str> = seen.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        order, expected,
        "the recorded requests, in the recorded order"
    );
    // Arrival offsets against the recording's at twice its speed, both from their first request;
    // the median difference is the first request's own delay (a new connection) and is taken out.
    let first = seen[0].0;
    let mut differences_us: Vec<i64> = seen
        .iter()
        .zip(SHOP_OFFSETS_US)
        .map(|((at, _), recorded_us)| {
            let arrived_us = i64::try_from(at.duration_since(first).as_micros()).expect("small");
            arrived_us - i64::try_from(recorded_us / 2).expect("small")
        })
        .collect();
    let mut sorted = differences_us.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    for d in &mut differences_us {
        *d -= median;
    }
    eprintln!(
        "replay: arrival minus recorded/2 offsets, µs (median {median} taken out): {differences_us:?}"
    );
    // Typically well under 1 ms each (a few hundred µs measured on the 2-core VM). On a busy
    // machine the odd arrival is late at the server — the generator records its own lateness
    // apart — so: the median within 2 ms and 7 of the 9 within 5 ms. A schedule that ignored the
    // recording (its mean rate, evenly spaced) or its scale is 40 ms off or more at most of them.
    let mut deviations_us: Vec<i64> = differences_us.iter().map(|d| d.abs()).collect();
    deviations_us.sort_unstable();
    assert!(
        deviations_us[deviations_us.len() / 2] <= 2_000,
        "the median request within 2 ms of its recorded (scaled) offset: {differences_us:?}"
    );
    assert!(
        deviations_us.iter().filter(|d| **d <= 5_000).count() >= 7,
        "7 of 9 requests within 5 ms of their recorded (scaled) offset: {differences_us:?}"
    );
}
