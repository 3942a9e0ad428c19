//! `apibench run --serve`: the real binary serves live figures while it loads an in-process
//! server (a `url` target: no database). `/metrics` is scraped twice during the run — the
//! counters grow and `promtool check metrics` accepts the text — the live page is loaded in
//! headless Chromium and must have drawn a throughput above zero, and the server is gone when
//! the run is (at its end, and on Ctrl-C). A taken port is bad input (exit 2) naming the address.
//!
//! Without `promtool` (Debian package `prometheus`) or `chromium` those checks fail under CI
//! (`CI=true`, where `.ci/run` installs both) and are skipped with a printed reason elsewhere.
//! `APIBENCH_LIVE_SCREENSHOT=path.png` keeps a screenshot of the page (`make live-screenshot`
//! makes `docs/live.png` that way).

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(path)` of the tool, `None` with a printed reason outside CI; a panic under CI.
fn tool(names: &[&str], why: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        let reason = format!("{} is not installed ({why})", names[0]);
        assert!(!in_ci(), "{reason}: CI must run this check");
        eprintln!("SKIPPED: {reason}");
    }
    found
}

/// Mostly fast; one request in 20 takes 4 ms and one in 50 is a `503`, so every chart has
/// something to draw.
fn uneven_server() -> Router {
    let counter = Arc::new(AtomicU64::new(0));
    Router::new().fallback(get(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            if n % 50 == 49 {
                return (StatusCode::SERVICE_UNAVAILABLE, "busy");
            }
            if n.is_multiple_of(20) {
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            (StatusCode::OK, "ok")
        }
    }))
}

fn scenario(dir: &Path, url: &str) -> PathBuf {
    common::write_scenario(
        dir,
        "live.toml",
        &format!(
            r#"name = "live"
[load]
users = 4
warmup = "1s"
[[load.stages]]
rate_per_sec = 150
duration = "7s"
[[load.stages]]
rate_per_sec = 300
duration = "7s"
[[load.stages]]
rate_per_sec = 200
duration = "7s"
[target]
kind = "url"
url = "{url}"
[[requests]]
name = "root"
path = "/"
[[requests]]
name = "user"
path = "/api/users/{{{{user_id}}}}"
weight = 3
"#
        ),
    )
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr")
}

/// `apibench run --quiet --serve ADDR` with stderr in `dir/stderr.txt`.
fn start_run(dir: &Path, scenario: &Path, serve: SocketAddr) -> Child {
    let stderr = std::fs::File::create(dir.join("stderr.txt")).expect("stderr file");
    Command::new(env!("CARGO_BIN_EXE_apibench"))
        .args(["run", "--quiet", "--out"])
        .arg(dir.join("out"))
        .arg("--serve")
        .arg(serve.to_string())
        .arg(scenario)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("apibench starts")
}

/// The exit code within `limit`, or the child killed and a panic.
fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("apibench did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on `addr` (HTTP/1.1, one request, connection closed): the body of a `200`.
fn get_body(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum of every sample of `name` whose labels contain `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn requests_total(text: &str) -> f64 {
    metric_sum(text, "apibench_requests_total", "")
}

fn completed_total(text: &str) -> f64 {
    metric_sum(text, "apibench_request_duration_seconds_count", "")
}

/// Scrapes until completed requests show in the histograms (the collector writes an interval
/// a few seconds after it closes).
fn scrape_when_counting(addr: SocketAddr, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(text) = get_body(addr, "/metrics")
            && completed_total(&text) > 0.0
            && requests_total(&text) > 0.0
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no counted request on http://{addr}/metrics within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn promtool_check(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- input ---\n{text}"
    );
    eprintln!(
        "promtool check metrics: clean ({} lines)",
        text.lines().count()
    );
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            // Timers run ahead in virtual time; fetches hold it until they answer.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// `data-value` of the element with `id` in a dumped DOM.
fn data_value(dom: &str, id: &str) -> Option<f64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let value = rest.split("data-value=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[test]
fn live_metrics_and_page_while_a_run_goes_and_nothing_after() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(common::serve(uneven_server()));
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), &url);
    let addr = free_port();
    let mut child = start_run(dir.path(), &scenario, addr);

    // Two scrapes during the run: the counters grow between them.
    let first = scrape_when_counting(addr, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let second = get_body(addr, "/metrics").expect("/metrics answers during the run");
    assert!(
        requests_total(&second) > requests_total(&first),
        "apibench_requests_total grows: {} then {}",
        requests_total(&first),
        requests_total(&second)
    );
    assert!(completed_total(&second) > completed_total(&first));
    for family in [
        "# TYPE apibench_request_duration_seconds histogram",
        "# TYPE apibench_send_lag_seconds histogram",
        "# TYPE apibench_users_busy gauge",
        "# TYPE apibench_generator_resident_memory_bytes gauge",
        "apibench_phase_info{scenario=\"live\",variant=\"default\",phase=\"measure\",repetition=\"1\"} 1",
        "apibench_requests_total{variant=\"default\",request=\"user\"}",
        "apibench_responses_total{variant=\"default\",status=\"503\"}",
    ] {
        assert!(second.contains(family), "no `{family}` in:\n{second}");
    }
    if let Some(promtool) = tool(&["promtool"], "Debian package `prometheus`") {
        promtool_check(&promtool, &second);
    }

    // The page's data: complete 1 s intervals with a throughput.
    let json: serde_json::Value =
        serde_json::from_str(&get_body(addr, "/live.json").expect("/live.json answers"))
            .expect("live.json is JSON");
    assert_eq!(json["phase"]["variant"], "default");
    let points = json["points"].as_array().expect("points");
    assert!(
        points.iter().any(|p| p["rate_per_sec"].as_u64() > Some(0)),
        "{json}"
    );

    // The page itself draws it: its throughput figure after a few (virtual) seconds.
    if let Some(chromium) = tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    ) {
        let page = format!("http://{addr}/");
        let dom = headless(&chromium, &dir.path().join("profile"))
            .arg("--dump-dom")
            .arg(&page)
            .stderr(Stdio::null())
            .output()
            .expect("chromium starts");
        let dom = String::from_utf8_lossy(&dom.stdout);
        let throughput = data_value(&dom, "throughput");
        assert!(
            throughput.is_some_and(|t| t > 0.0),
            "the page shows a throughput above 0, has {throughput:?}:\n{dom}"
        );
        assert!(data_value(&dom, "p99").is_some_and(|p| p > 0.0), "{dom}");
        if let Some(keep) = std::env::var_os("APIBENCH_LIVE_SCREENSHOT") {
            // More history on the charts: the third stage is under way by then.
            std::thread::sleep(Duration::from_secs(9));
            let shot = headless(&chromium, &dir.path().join("profile"))
                .arg("--window-size=1100,900")
                .arg(format!("--screenshot={}", PathBuf::from(&keep).display()))
                .arg(&page)
                .stderr(Stdio::null())
                .output()
                .expect("chromium starts");
            assert!(shot.status.success() && Path::new(&keep).is_file());
        }
    }

    assert_eq!(wait_exit(&mut child, Duration::from_secs(90)), 0);
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).expect("stderr");
    assert!(
        stderr.contains(&format!("http://{addr}/metrics")),
        "says where it listens: {stderr}"
    );
    assert!(
        dir.path().join("out/summary.json").is_file(),
        "the saved run stays the record"
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens on {addr} after the run"
    );
}

#[test]
fn ctrl_c_ends_the_live_server_with_the_run() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(common::serve(common::hello()));
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = scenario(dir.path(), &url);
    let addr = free_port();
    let mut child = start_run(dir.path(), &scenario, addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_body(addr, "/metrics").is_none() {
        assert!(Instant::now() < deadline, "/metrics never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    kill(pid, Signal::SIGINT).expect("SIGINT sent");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 130);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens on {addr} after Ctrl-C"
    );
}

#[test]
fn a_taken_port_is_bad_input_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = taken.local_addr().expect("local addr");
    let dir = tempfile::tempdir().expect("tempdir");
    // Never loaded: the address is refused first.
    let scenario = scenario(dir.path(), "http://127.0.0.1:9");
    let mut child = start_run(dir.path(), &scenario, addr);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 2);
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).expect("stderr");
    assert!(
        stderr.contains(&addr.to_string()) && stderr.contains("--serve"),
        "the message names the flag and the address: {stderr}"
    );
    assert!(!dir.path().join("out").exists(), "nothing was started");
}
