//! Shared helpers for the integration tests: tiny in-process HTTP servers and scenario files.
#![allow(dead_code)]

use axum::Router;
use axum::routing::get;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Serves `app` on a loopback port in the current runtime; returns its base URL. Handlers may
/// take the client's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

/// 200 "ok" on every path.
pub fn hello() -> Router {
    Router::new().fallback(get(|| async { "ok" }))
}

/// Freezes for the last `stall` of every `period`: a request arriving then waits until the
/// stall ends, like a server stuck in a GC pause or on a lock.
pub fn stalling(period: Duration, stall: Duration) -> Router {
    let epoch = Instant::now();
    Router::new().fallback(get(move || async move {
        let phase = Duration::from_nanos((epoch.elapsed().as_nanos() % period.as_nanos()) as u64);
        if phase >= period - stall {
            tokio::time::sleep(period - phase).await;
        }
        "ok"
    }))
}

/// Answers every request after `delay`: a healthy but slow server (e.g. 50 ms of work).
pub fn slow(delay: Duration) -> Router {
    Router::new().fallback(get(move || async move {
        tokio::time::sleep(delay).await;
        "ok"
    }))
}

/// `503` at once on every other request, `200` after `delay` on the others.
pub fn half_failing(delay: Duration) -> Router {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Router::new().fallback(get(move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            if n.is_multiple_of(2) {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
            } else {
                tokio::time::sleep(delay).await;
                (axum::http::StatusCode::OK, "ok")
            }
        }
    }))
}

/// Writes `text` as `name` in `dir`.
pub fn write_scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// Runs `apibench run [--quiet] --api-bin API --out OUT SCENARIO` (the binary at `apibench`, the
/// test's `env!("CARGO_BIN_EXE_apibench")`) with no `DATABASE_URL`, so apibench provisions
/// PostgreSQL itself; panics with both outputs unless it exits 0. Returns stdout and the summary.
pub fn run_against_api(
    apibench: &str,
    api: &Path,
    scenario: &Path,
    out: &Path,
    quiet: bool,
) -> (String, loadgen::results::Summary) {
    let mut command = std::process::Command::new(apibench);
    command.arg("run");
    if quiet {
        command.arg("--quiet");
    }
    let run = command
        .arg("--api-bin")
        .arg(api)
        .arg("--out")
        .arg(out)
        .arg(scenario)
        .env_remove("DATABASE_URL")
        .output()
        .expect("apibench runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(
        run.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("summary parses");
    (stdout, summary)
}
