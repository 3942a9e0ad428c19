//! Sharded runs end to end, with the real `apibench` binary: N shard processes against one
//! server, then `apibench merge`. The merge must be exact — the merged request count is the
//! sum of the shards' and the single-process schedule's; the merged histograms (overall, per
//! request, per 1 s interval of the log) are the shards' added bucket by bucket — `{{seq}}`
//! must never repeat across shards, and mismatched inputs are refused with exit 2.
//!
//! The shards run as separate hosts in network namespaces when this test may create them (root,
//! iproute2); the loopback test runs everywhere.

mod common;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use hdrhistogram::Histogram;
use loadgen::recorder::{RecordingState, decode_histogram, read_hlog};
use loadgen::results::Summary;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const APIBENCH: &str = env!("CARGO_BIN_EXE_apibench");

/// Answers every path; remembers the `{{seq}}` numbers it was sent on `/seq/{n}`.
fn recording_server(seen: Arc<Mutex<Vec<u64>>>) -> Router {
    Router::new()
        .route(
            "/seq/{n}",
            get(
                |State(seen): State<Arc<Mutex<Vec<u64>>>>, UrlPath(n): UrlPath<u64>| async move {
                    seen.lock().expect("not poisoned").push(n);
                    "ok"
                },
            ),
        )
        .fallback(get(|| async { "ok" }))
        .with_state(seen)
}

/// 1 000/s for 3 s after a 1 s warm-up: 3 000 measured requests in the whole schedule.
fn scenario(url: &str) -> String {
    format!(
        r#"name = "sharded"
[load]
model = "open"
rate_per_sec = 1000
users = 6
max_users = 32
duration = "3s"
warmup = "1s"
timeout = "2s"
[target]
kind = "url"
url = "{url}"
[[requests]]
name = "root"
path = "/"
weight = 1
[[requests]]
name = "seq"
path = "/seq/{{{{seq}}}}"
weight = 1
"#
    )
}

const MEASURED_REQUESTS: u64 = 3_000;

fn start_in(secs: u64) -> String {
    let at = SystemTime::now() + Duration::from_secs(secs);
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn apibench(args: &[&str]) -> Output {
    tokio::process::Command::new(APIBENCH)
        .args(args)
        .env("APIBENCH_CALIBRATION", "/nonexistent/calibration.json")
        .output()
        .await
        .expect("apibench runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(dir: &Path) -> Summary {
    let bytes = std::fs::read(dir.join("summary.json")).expect("summary.json");
    serde_json::from_slice(&bytes).expect("summary parses")
}

fn recording(dir: &Path) -> RecordingState {
    let bytes = std::fs::read(dir.join("default/recording.json")).expect("recording.json");
    serde_json::from_slice(&bytes).expect("recording parses")
}

fn histogram(text: &str) -> Histogram<u64> {
    decode_histogram("test", text).expect("decodes")
}

/// Per (start, tag): the histogram of one interval log.
fn intervals(dir: &Path) -> BTreeMap<(Duration, Option<String>), Histogram<u64>> {
    let bytes = std::fs::read(dir.join("default/latency.hlog")).expect("latency.hlog");
    read_hlog(&bytes)
        .expect("log parses")
        .into_iter()
        .map(|i| ((i.start, i.tag), i.histogram))
        .collect()
}

/// Checks `merged` is exactly the sum of `shards`.
fn assert_exact_merge(merged: &Path, shards: &[PathBuf]) {
    let whole = summary(merged);
    let m = &whole.variants[0].repetitions[0];
    let parts: Vec<Summary> = shards.iter().map(|d| summary(d)).collect();
    let shard_requests: u64 = parts
        .iter()
        .map(|s| s.variants[0].repetitions[0].requests)
        .sum();
    assert_eq!(m.requests, shard_requests, "merged = sum of the shards");
    assert_eq!(
        m.requests, MEASURED_REQUESTS,
        "merged = the single-process schedule"
    );
    assert_eq!(whole.shards.len(), shards.len());

    // Overall and per-request histograms: bucket by bucket.
    let merged_state = recording(merged);
    let states: Vec<RecordingState> = shards.iter().map(|d| recording(d)).collect();
    let mut latency = histogram(&states[0].latency);
    for s in &states[1..] {
        latency.add(histogram(&s.latency)).expect("adds");
    }
    assert_eq!(histogram(&merged_state.latency), latency);
    for (r, request) in merged_state.by_request.iter().enumerate() {
        let mut sum = histogram(&states[0].by_request[r].latency);
        for s in &states[1..] {
            sum.add(histogram(&s.by_request[r].latency)).expect("adds");
        }
        assert_eq!(histogram(&request.latency), sum, "request {}", request.name);
    }
    assert_eq!(
        m.latency_us.p99,
        latency.value_at_quantile(0.99),
        "the merged p99 is the p99 of every request"
    );

    // The interval log: every (second, tag) is the sum of the shards' entries for it.
    let merged_log = intervals(merged);
    let mut expected: BTreeMap<(Duration, Option<String>), Histogram<u64>> = BTreeMap::new();
    for d in shards {
        for (key, h) in intervals(d) {
            match expected.get_mut(&key) {
                Some(sum) => sum.add(&h).expect("adds"),
                None => {
                    expected.insert(key, h);
                }
            }
        }
    }
    assert_eq!(
        merged_log.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, h) in &expected {
        assert_eq!(&merged_log[key], h, "interval {key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_on_loopback_merge_exactly_and_never_repeat_a_sequence_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = common::serve(recording_server(Arc::clone(&seen))).await;
    let file = common::write_scenario(dir.path(), "sharded.toml", &scenario(&url));
    let file = file.to_str().expect("utf-8 path").to_string();
    let start_at = start_in(3);
    let shard_dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("s{i}"))).collect();
    let runs = shard_dirs.iter().enumerate().map(|(i, out)| {
        let shard = format!("{i}/3");
        let out = out.to_str().expect("utf-8").to_string();
        let start_at = start_at.clone();
        let file = file.clone();
        async move {
            apibench(&[
                "run",
                &file,
                "--shard",
                &shard,
                "--start-at",
                &start_at,
                "--out",
                &out,
                "--quiet",
                "--generator-threads",
                "1",
            ])
            .await
        }
    });
    for (i, output) in futures_join(runs).await.into_iter().enumerate() {
        assert!(
            output.status.success(),
            "shard {i}: {}",
            text(&output.stderr)
        );
    }
    // 4 000 slots over 3 shards: 1 334 / 1 333 / 1 333 (warm-up included).
    for (i, d) in shard_dirs.iter().enumerate() {
        let shard: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("shard.json")).expect("shard.json"))
                .expect("parses");
        assert_eq!(shard["index"], i);
        assert_eq!(shard["count"], 3);
    }
    let mut sequence = seen.lock().expect("not poisoned").clone();
    let sent = sequence.len();
    assert!(
        sent > 1_000,
        "about half of 4 000 requests use {{seq}}: {sent}"
    );
    sequence.sort_unstable();
    sequence.dedup();
    assert_eq!(sequence.len(), sent, "no {{seq}} value was sent twice");

    let merged = dir.path().join("merged");
    let mut args = vec!["merge", merged.to_str().expect("utf-8")];
    args.extend(shard_dirs.iter().map(|d| d.to_str().expect("utf-8")));
    let output = apibench(&args).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("merged 3 shards"));
    assert_exact_merge(&merged, &shard_dirs);
    let html = std::fs::read_to_string(merged.join("index.html")).expect("index.html");
    assert!(html.contains("Merged from 3 shards"), "the per-shard table");
    // report, compare and gate read a merged run like any other.
    let report = apibench(&["report", merged.to_str().expect("utf-8")]).await;
    assert!(report.status.success(), "{}", text(&report.stderr));

    // Refusals, each exit 2 naming the problem.
    let s = |i: usize| shard_dirs[i].to_str().expect("utf-8");
    let out = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let missing = apibench(&["merge", &out("m1"), s(0), s(2)]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("shard 1/3 missing"),
        "{}",
        text(&missing.stderr)
    );
    let twice = apibench(&["merge", &out("m2"), s(0), s(1), s(1), s(2)]).await;
    assert_eq!(twice.status.code(), Some(2));
    assert!(
        text(&twice.stderr).contains("given twice"),
        "{}",
        text(&twice.stderr)
    );
    let foreign_dir = dir.path().join("foreign");
    copy_dir(&shard_dirs[2], &foreign_dir);
    let shard_json = foreign_dir.join("shard.json");
    let edited = std::fs::read_to_string(&shard_json)
        .expect("shard.json")
        .replace("\"scenario_sha256\": \"", "\"scenario_sha256\": \"0");
    std::fs::write(&shard_json, edited).expect("write");
    let foreign = apibench(&[
        "merge",
        &out("m3"),
        s(0),
        s(1),
        foreign_dir.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(foreign.status.code(), Some(2));
    assert!(
        text(&foreign.stderr).contains("foreign"),
        "{}",
        text(&foreign.stderr)
    );
    let not_shard = apibench(&["merge", &out("m4"), merged.to_str().expect("utf-8")]).await;
    assert_eq!(not_shard.status.code(), Some(2));
    assert!(text(&not_shard.stderr).contains("not a shard run"));
    let occupied = apibench(&["merge", merged.to_str().expect("utf-8"), s(0), s(1), s(2)]).await;
    assert_eq!(occupied.status.code(), Some(2));
}

#[tokio::test]
async fn a_shard_never_starts_a_target_and_never_starts_late() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = common::write_scenario(
        dir.path(),
        "api.toml",
        "name = \"api\"\n[load]\nrate_per_sec = 10\nduration = \"1s\"\n[target]\nkind = \"api\"\n\
         [[requests]]\nname = \"r\"\npath = \"/\"\n",
    );
    let api = api.to_str().expect("utf-8");
    let refused = apibench(&["run", api, "--shard", "0/2"]).await;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("--target-url") && stderr.contains("never starts the target"),
        "{stderr}"
    );

    let bad_slice = apibench(&["run", api, "--shard", "2/2"]).await;
    assert_eq!(bad_slice.status.code(), Some(2));
    assert!(text(&bad_slice.stderr).contains("0 <= I < N"));

    let late = apibench(&[
        "run",
        api,
        "--target-url",
        "http://127.0.0.1:9",
        "--shard",
        "0/2",
        "--start-at",
        "2020-01-01T00:00:00Z",
        "--out",
        dir.path().join("late").to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(late.status.code(), Some(2));
    assert!(
        text(&late.stderr).contains("in the past"),
        "{}",
        text(&late.stderr)
    );
}

/// Network namespaces for the shards: each a host of its own, with a veth pair to this
/// namespace; removed on drop.
struct Hosts {
    names: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .output();
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &format!("{name}-h")])
                .output();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), text(&out.stderr)))
    }
}

/// Namespace `ab{pid}s{i}` with address 10.231.{i}.2, its peer here 10.231.{i}.1, routed to
/// every other 10.231.x.1 through this namespace.
fn make_hosts(count: usize) -> Result<Hosts, String> {
    let tag = std::process::id() % 100_000;
    let mut hosts = Hosts { names: Vec::new() };
    for i in 0..count {
        let name = format!("ab{tag}s{i}");
        ip(&["netns", "add", &name])?;
        hosts.names.push(name.clone());
        let (here, there) = (format!("{name}-h"), format!("{name}-n"));
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there])?;
        ip(&["link", "set", &there, "netns", &name])?;
        ip(&["addr", "add", &format!("10.231.{i}.1/24"), "dev", &here])?;
        ip(&["link", "set", &here, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("10.231.{i}.2/24"), "dev", &there])?;
        inside(&["link", "set", &there, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &format!("10.231.{i}.1")])?;
    }
    Ok(hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_as_separate_hosts_in_network_namespaces() {
    let hosts = match make_hosts(2) {
        Ok(h) => h,
        Err(why) => {
            // Not root, or no iproute2: the loopback test above covers the merge.
            eprintln!("skipped: network namespaces unavailable ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The server listens on this namespace's end of shard 0's link; shard 1 reaches it through
    // its own link (this namespace routes between them).
    let listener = tokio::net::TcpListener::bind("10.231.0.1:0")
        .await
        .expect("bind the veth address");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = recording_server(Arc::clone(&seen));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}");
    let file = common::write_scenario(dir.path(), "sharded.toml", &scenario(&url));
    let start_at = start_in(4);
    let shard_dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("s{i}"))).collect();
    let runs = hosts.names.iter().enumerate().map(|(i, ns)| {
        // Each shard a host: its own network namespace and, via unshare, its own host name.
        let command = format!(
            "hostname shard-{i} 2>/dev/null; exec {APIBENCH} run {} --shard {i}/2 --start-at {start_at} --out {} --quiet --generator-threads 1",
            file.display(),
            shard_dirs[i].display()
        );
        let ns = ns.clone();
        async move {
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &ns, "unshare", "--uts", "sh", "-c", &command])
                .env("APIBENCH_CALIBRATION", "/nonexistent/calibration.json")
                .output()
                .await
                .expect("ip netns exec runs")
        }
    });
    for (i, output) in futures_join(runs).await.into_iter().enumerate() {
        assert!(
            output.status.success(),
            "shard {i}: {}",
            text(&output.stderr)
        );
    }
    let merged = dir.path().join("merged");
    let output = apibench(&[
        "merge",
        merged.to_str().expect("utf-8"),
        shard_dirs[0].to_str().expect("utf-8"),
        shard_dirs[1].to_str().expect("utf-8"),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_exact_merge(&merged, &shard_dirs);
    let hosts_seen: Vec<String> = summary(&merged)
        .shards
        .iter()
        .map(|s| s.host.clone())
        .collect();
    assert_eq!(
        hosts_seen,
        vec!["shard-0".to_string(), "shard-1".to_string()]
    );
    drop(hosts);
}

/// Awaits every future (concurrently) and returns their outputs in order.
async fn futures_join<F: std::future::Future<Output = Output> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Output> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for h in handles {
        outputs.push(h.await.expect("task"));
    }
    outputs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
