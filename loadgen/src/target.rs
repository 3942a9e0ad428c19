//! Target lifecycle: start the reference API or the Node baseline as a child process in its own
//! process group, wait until `/healthz` answers 200, and stop it (SIGTERM to the group, SIGKILL
//! after a grace period). A `url` target is only a base URL: apibench never touches its process.
//!
//! A started target is killed (the whole group) when its handle is dropped, and the binary's
//! second-Ctrl-C path kills every group still registered here, so no run leaves a server behind.

use crate::knobs::{self, Knobs};
use crate::scenario::TargetSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a target may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a target may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a target did not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "the api binary was not found at {0}; build it with `cargo build --release -p api` (or point --api-bin / APIBENCH_API_BIN at it)"
    )]
    ApiBinaryMissing(PathBuf),
    #[error(
        "the Node baseline was not found (looked for baselines/node/src/server.js above {0} and above the scenario file)"
    )]
    NodeMissing(PathBuf),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited before it was ready ({status}); its output is in {log}")]
    ExitedEarly {
        what: String,
        status: String,
        log: PathBuf,
    },
    #[error("{what} was not ready within {secs} s; its output is in {log}")]
    NotReady {
        what: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("cannot write the target log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Process groups of targets that are running, for the emergency kill.
static RUNNING_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// SIGKILLs every target group still running (second Ctrl-C, just before exiting).
pub fn kill_all_now() {
    if let Ok(groups) = RUNNING_GROUPS.lock() {
        for pgid in groups.iter() {
            let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
        }
    }
}

fn register(pgid: i32) {
    if let Ok(mut groups) = RUNNING_GROUPS.lock() {
        groups.push(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut groups) = RUNNING_GROUPS.lock() {
        groups.retain(|g| *g != pgid);
    }
}

/// Where to find things a target needs.
#[derive(Debug, Clone)]
pub struct TargetEnv {
    /// The `api` binary.
    pub api_bin: PathBuf,
    /// `baselines/node`, when found.
    pub node_dir: Option<PathBuf>,
    /// Where the search for the Node baseline started (for the error message).
    pub search_root: PathBuf,
}

/// The default `api` binary: next to the running executable (target/{debug,release}/api).
pub fn default_api_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/<profile>/deps; the api binary one level up.
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().unwrap_or(&dir).join("api");
    }
    dir.join("api")
}

/// Finds `baselines/node` above any of `starts`.
pub fn find_node_dir(starts: &[&Path]) -> Option<PathBuf> {
    for start in starts {
        let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
        for dir in start.ancestors() {
            let candidate = dir.join("baselines/node");
            if candidate.join("src/server.js").is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A running (or external) target.
pub struct RunningTarget {
    pub base_url: String,
    pub pid: Option<u32>,
    child: Option<Child>,
    pgid: Option<i32>,
    pub log_path: Option<PathBuf>,
    pub what: String,
}

impl RunningTarget {
    /// An already-running server.
    pub fn external(url: &str) -> RunningTarget {
        RunningTarget {
            base_url: url.trim_end_matches('/').to_string(),
            pid: None,
            child: None,
            pgid: None,
            log_path: None,
            what: format!("url {url}"),
        }
    }

    /// Stops the target: SIGTERM to its group, SIGKILL after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
            let exited = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            if exited.is_err() {
                tracing::warn!(
                    "{} did not stop within {:?}; killing it",
                    self.what,
                    STOP_GRACE
                );
            }
            // Kill whatever is left of the group (forked children, or the leader on timeout).
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            let _ = child.wait().await;
            unregister(pgid);
            self.pgid = None;
        }
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            unregister(pgid);
        }
    }
}

/// Starts `spec` with `knobs` against `database_url`; logs go to `log_path`.
pub async fn start(
    spec: &TargetSpec,
    knobs: &Knobs,
    database_url: Option<&str>,
    env: &TargetEnv,
    log_path: &Path,
) -> Result<RunningTarget, TargetError> {
    let (mut command, what) = match spec {
        TargetSpec::Url { url } => return Ok(RunningTarget::external(url)),
        TargetSpec::Api => {
            if !env.api_bin.is_file() {
                return Err(TargetError::ApiBinaryMissing(env.api_bin.clone()));
            }
            let mut c = Command::new(&env.api_bin);
            c.args(["--listen", "127.0.0.1:0"]);
            (c, format!("api ({})", env.api_bin.display()))
        }
        TargetSpec::Node => {
            let Some(dir) = &env.node_dir else {
                return Err(TargetError::NodeMissing(env.search_root.clone()));
            };
            let mut c = Command::new("node");
            c.arg("src/server.js").current_dir(dir);
            (c, format!("node baseline ({})", dir.display()))
        }
    };
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    for (knob, value) in knobs {
        command.env(knobs::env_var_name(knob), value);
    }
    let node_port = if matches!(spec, TargetSpec::Node) {
        let port = free_port().map_err(|source| TargetError::Spawn {
            what: what.clone(),
            source,
        })?;
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Some(port)
    } else {
        None
    };
    let log_file = std::fs::File::create(log_path).map_err(|source| TargetError::Log {
        path: log_path.to_path_buf(),
        source,
    })?;
    let stdout_log = log_file.try_clone().map_err(|source| TargetError::Log {
        path: log_path.to_path_buf(),
        source,
    })?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_log))
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| TargetError::Spawn {
        what: what.clone(),
        source,
    })?;
    let pid = child.id();
    let pgid = pid.and_then(|p| i32::try_from(p).ok());
    if let Some(pgid) = pgid {
        register(pgid);
    }
    let mut running = RunningTarget {
        base_url: node_port.map_or_else(String::new, |p| format!("http://127.0.0.1:{p}")),
        pid,
        child: None,
        pgid,
        log_path: Some(log_path.to_path_buf()),
        what: what.clone(),
    };

    // Forward stderr to the log, and pick up the API's "listening on http://ADDR" line.
    let (addr_tx, mut addr_rx) = tokio::sync::mpsc::channel::<String>(1);
    if let Some(stderr) = child.stderr.take() {
        let mut log = tokio::fs::File::from_std(log_file);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = addr_tx.try_send(url);
                }
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
            let _ = log.flush().await;
        });
    }

    let deadline = Instant::now() + START_TIMEOUT;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| TargetError::Spawn {
            what: what.clone(),
            source: std::io::Error::other(e),
        })?;
    loop {
        if running.base_url.is_empty()
            && let Ok(url) = addr_rx.try_recv()
        {
            running.base_url = url.trim_end_matches('/').to_string();
        }
        if !running.base_url.is_empty() {
            let health = format!("{}/healthz", running.base_url);
            if let Ok(response) = client.get(&health).send().await
                && response.status().as_u16() == 200
            {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(TargetError::ExitedEarly {
                what,
                status: status.to_string(),
                log: log_path.to_path_buf(),
            });
        }
        if Instant::now() > deadline {
            return Err(TargetError::NotReady {
                what,
                secs: START_TIMEOUT.as_secs(),
                log: log_path.to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.child = Some(child);
    Ok(running)
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Cumulative GC pause figures of a Node process (prom-client's `nodejs_gc_duration_seconds`,
/// summed over the `kind` labels).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GcTotals {
    pub pause_secs: f64,
    pub pauses: u64,
}

impl GcTotals {
    /// What happened between `earlier` and `self` (counters only grow; a restart reads as 0).
    pub fn since(&self, earlier: &GcTotals) -> GcTotals {
        GcTotals {
            pause_secs: (self.pause_secs - earlier.pause_secs).max(0.0),
            pauses: self.pauses.saturating_sub(earlier.pauses),
        }
    }
}

/// Reads the GC totals out of a Prometheus text exposition; `None` when it has none.
pub fn parse_gc_totals(text: &str) -> Option<GcTotals> {
    let mut totals = GcTotals::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((name_and_labels, value)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let name = name_and_labels
            .split('{')
            .next()
            .unwrap_or(name_and_labels)
            .trim();
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        match name {
            "nodejs_gc_duration_seconds_sum" => {
                totals.pause_secs += value;
                seen = true;
            }
            "nodejs_gc_duration_seconds_count" => {
                totals.pauses += value.max(0.0) as u64;
                seen = true;
            }
            _ => {}
        }
    }
    seen.then_some(totals)
}

/// Scrapes `{base_url}/metrics` for the GC totals (best effort: `None` when it cannot be read).
pub async fn scrape_gc_totals(base_url: &str) -> Option<GcTotals> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    // prom-client emits a `kind` series only once that kind of GC has happened: a reachable
    // `/metrics` without the lines means no pause yet, not "unknown".
    Some(parse_gc_totals(&response.text().await.ok()?).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_totals_sum_every_kind_and_ignore_buckets() {
        let text = "# HELP nodejs_gc_duration_seconds Garbage collection duration by kind\n\
# TYPE nodejs_gc_duration_seconds histogram\n\
nodejs_gc_duration_seconds_bucket{le=\"0.001\",kind=\"minor\"} 7\n\
nodejs_gc_duration_seconds_sum{kind=\"minor\"} 0.25\n\
nodejs_gc_duration_seconds_count{kind=\"minor\"} 10\n\
nodejs_gc_duration_seconds_sum{kind=\"major\"} 0.5\n\
nodejs_gc_duration_seconds_count{kind=\"major\"} 2\n\
api_requests_total{route=\"/api/posts\"} 99\n";
        let totals = parse_gc_totals(text).expect("has GC lines");
        assert!((totals.pause_secs - 0.75).abs() < 1e-9);
        assert_eq!(totals.pauses, 12);
        let later = GcTotals {
            pause_secs: 1.0,
            pauses: 20,
        };
        assert_eq!(later.since(&totals).pauses, 8);
        assert!((later.since(&totals).pause_secs - 0.25).abs() < 1e-9);
    }

    #[test]
    fn a_server_without_gc_metrics_has_no_totals() {
        assert_eq!(parse_gc_totals("api_requests_total 5\n"), None);
        assert_eq!(parse_gc_totals(""), None);
    }
}
