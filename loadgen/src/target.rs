//! Target lifecycle: start the reference API or the Node baseline as a child process in its own
//! process group, wait until `/healthz` answers 200, and stop it (SIGTERM to the group, SIGKILL
//! after a grace period). A `url` target is only a base URL: apibench never touches its process.
//!
//! A started target is killed (the whole group) when its handle is dropped, and the binary's
//! second-Ctrl-C path kills every group still registered here, so no run leaves a server behind.
//! The `target_kill` fault ([`RunningTarget::kill_and_restart`]) replaces the process in place:
//! the handle keeps how it was started (program, arguments, environment, address) and starts it
//! again identically, so the load, the ramp and the final stop carry on with the same handle.

use crate::engine::workers::CpuList;
use crate::knobs::{self, Knobs};
use crate::scenario::TargetSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
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
    #[error("{0} was not started by apibench, so it cannot be restarted")]
    NotRestartable(String),
}

/// Process groups of targets that are running, for the emergency kill.
static RUNNING_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// SIGKILLs every target group still running (second Ctrl-C, just before exiting), after
/// resuming whatever a fault still holds stopped ([`crate::faults::resume_all_paused`]).
pub fn kill_all_now() {
    crate::faults::resume_all_paused();
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
    /// Bind the target here (a free port on it) instead of 127.0.0.1 (`apibench serve
    /// --listen-host`: a target other machines load).
    pub listen_host: Option<String>,
}

impl TargetEnv {
    /// `api_bin` or the default one; the Node baseline searched from the working directory and
    /// from the scenario file's folder.
    pub fn find(
        api_bin: Option<PathBuf>,
        scenario_path: &Path,
        listen_host: Option<String>,
    ) -> TargetEnv {
        let cwd = std::env::current_dir().unwrap_or_default();
        let scenario_dir = scenario_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        TargetEnv {
            api_bin: api_bin.unwrap_or_else(default_api_bin),
            node_dir: find_node_dir(&[&cwd, &scenario_dir]),
            search_root: cwd,
            listen_host,
        }
    }
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
    /// The pid of the process started first (`None` for a `url` target). After
    /// [`RunningTarget::kill_and_restart`] the live one is [`RunningTarget::current_pid`].
    pub pid: Option<u32>,
    /// The live process, behind a lock so that a fault can replace it while the load holds
    /// `&self` (never held across an `.await`).
    process: Mutex<Option<TargetProcess>>,
    /// How it was started, to start it again the same way.
    launch: Option<Launch>,
    pub log_path: Option<PathBuf>,
    pub what: String,
}

/// A target process apibench started, in its own process group.
struct TargetProcess {
    child: Child,
    pid: Option<u32>,
    pgid: Option<i32>,
}

/// Everything a target's start depends on, kept to start it again identically (`target_kill`).
#[derive(Debug, Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    current_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// The API takes `--listen ADDR`: port 0 at first, then the address it bound.
    listen_flag: bool,
    what: String,
    log_path: PathBuf,
    /// `[cpus] target`: the process is pinned the moment it exists (before its runtime sizes
    /// itself to the CPUs it sees), and so is every restart.
    cpus: Option<CpuList>,
}

/// What [`RunningTarget::kill_and_restart`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    pub killed_pid: Option<u32>,
    pub new_pid: Option<u32>,
    /// From the SIGKILL until the new process answered `/healthz`.
    pub took: Duration,
}

/// Starts on a restart: the old process's port may take a moment to be free again.
const RESTART_ATTEMPTS: u32 = 5;

impl RunningTarget {
    /// An already-running server.
    pub fn external(url: &str) -> RunningTarget {
        RunningTarget {
            base_url: url.trim_end_matches('/').to_string(),
            pid: None,
            process: Mutex::new(None),
            launch: None,
            log_path: None,
            what: format!("url {url}"),
        }
    }

    /// The pid of the live process.
    pub fn current_pid(&self) -> Option<u32> {
        self.lock().as_ref().and_then(|p| p.pid)
    }

    /// The live process's group (the process tree a `target_pause` stops).
    pub fn process_group(&self) -> Option<i32> {
        self.lock().as_ref().and_then(|p| p.pgid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TargetProcess>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `process` in place of the live one (registered for the emergency kill); returns
    /// the one it replaced.
    fn replace_process(&self, process: Option<TargetProcess>) -> Option<TargetProcess> {
        if let Some(pgid) = process.as_ref().and_then(|p| p.pgid) {
            register(pgid);
        }
        let old = std::mem::replace(&mut *self.lock(), process);
        if let Some(pgid) = old.as_ref().and_then(|p| p.pgid) {
            unregister(pgid);
        }
        old
    }

    /// Stops the target: SIGTERM to its group, SIGKILL after [`STOP_GRACE`].
    pub async fn stop(self) {
        let Some(mut process) = self.replace_process(None) else {
            return;
        };
        if let Some(pgid) = process.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
            let exited = tokio::time::timeout(STOP_GRACE, process.child.wait()).await;
            if exited.is_err() {
                tracing::warn!(
                    "{} did not stop within {:?}; killing it",
                    self.what,
                    STOP_GRACE
                );
            }
            // Kill whatever is left of the group (forked children, or the leader on timeout).
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = process.child.wait().await;
    }

    /// The `target_kill` fault: SIGKILL to the target's group, then the same start as the first
    /// — same program, arguments, environment and database, on the same address (the load's
    /// users reconnect to the URL they know) — until `/healthz` answers again. The log goes on
    /// in the same file.
    pub async fn kill_and_restart(&self) -> Result<Restarted, TargetError> {
        let Some(launch) = &self.launch else {
            return Err(TargetError::NotRestartable(self.what.clone()));
        };
        let started = Instant::now();
        let killed_pid = self.current_pid();
        if let Some(mut old) = self.replace_process(None) {
            if let Some(pgid) = old.pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = tokio::time::timeout(STOP_GRACE, old.child.wait()).await;
        }
        let listen = launch
            .listen_flag
            .then(|| self.base_url.trim_start_matches("http://").to_string());
        let mut attempt = 1;
        loop {
            let (process, _) = launch.spawn(listen.as_deref(), false)?;
            let new_pid = process.pid;
            self.replace_process(Some(process));
            let mut base_url = self.base_url.clone();
            match wait_ready(&mut base_url, None, &self.process, launch).await {
                Ok(()) => {
                    return Ok(Restarted {
                        killed_pid,
                        new_pid,
                        took: started.elapsed(),
                    });
                }
                // The address may still be held for a moment by the killed process.
                Err(TargetError::ExitedEarly { .. }) if attempt < RESTART_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        if let Some(pgid) = self.lock().take().and_then(|p| p.pgid) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            unregister(pgid);
        }
    }
}

impl Launch {
    /// Starts the process in its own group (stdout and stderr to the log, truncated first when
    /// `fresh`); the receiver gets the address of the API's "listening on http://ADDR" line.
    fn spawn(
        &self,
        listen: Option<&str>,
        fresh: bool,
    ) -> Result<(TargetProcess, tokio::sync::mpsc::Receiver<String>), TargetError> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.listen_flag {
            command.args(["--listen", listen.unwrap_or("127.0.0.1:0")]);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let log_error = |source| TargetError::Log {
            path: self.log_path.clone(),
            source,
        };
        let log_file = std::fs::File::options()
            .create(true)
            .write(true)
            .truncate(fresh)
            .append(!fresh)
            .open(&self.log_path)
            .map_err(log_error)?;
        let stdout_log = log_file.try_clone().map_err(log_error)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout_log))
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| TargetError::Spawn {
            what: self.what.clone(),
            source,
        })?;
        let pid = child.id();
        if let (Some(cpus), Some(pid)) = (&self.cpus, pid)
            && let Err(e) = crate::placement::pin_tree(pid, cpus)
        {
            tracing::warn!("{} not pinned to CPUs {cpus}: {e}", self.what);
        }
        // Forward stderr to the log, and pick up the API's "listening on http://ADDR" line.
        let (addr_tx, addr_rx) = tokio::sync::mpsc::channel::<String>(1);
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
        let process = TargetProcess {
            child,
            pid,
            pgid: pid.and_then(|p| i32::try_from(p).ok()),
        };
        Ok((process, addr_rx))
    }
}

/// Starts `spec` with `knobs` against `database_url`; logs go to `log_path`.
pub async fn start(
    spec: &TargetSpec,
    knobs: &Knobs,
    database_url: Option<&str>,
    env: &TargetEnv,
    log_path: &Path,
    cpus: Option<&CpuList>,
) -> Result<RunningTarget, TargetError> {
    let mut launch = match spec {
        TargetSpec::Url { url } => return Ok(RunningTarget::external(url)),
        TargetSpec::Api => {
            if !env.api_bin.is_file() {
                return Err(TargetError::ApiBinaryMissing(env.api_bin.clone()));
            }
            Launch {
                program: env.api_bin.clone(),
                args: Vec::new(),
                current_dir: None,
                env: Vec::new(),
                listen_flag: true,
                what: format!("api ({})", env.api_bin.display()),
                log_path: log_path.to_path_buf(),
                cpus: cpus.cloned(),
            }
        }
        TargetSpec::Node => {
            let Some(dir) = &env.node_dir else {
                return Err(TargetError::NodeMissing(env.search_root.clone()));
            };
            Launch {
                program: PathBuf::from("node"),
                args: vec!["src/server.js".into()],
                current_dir: Some(dir.clone()),
                env: Vec::new(),
                listen_flag: false,
                what: format!("node baseline ({})", dir.display()),
                log_path: log_path.to_path_buf(),
                cpus: cpus.cloned(),
            }
        }
    };
    if let Some(url) = database_url {
        launch.env.push(("DATABASE_URL".into(), url.to_string()));
    }
    for (knob, value) in knobs {
        launch.env.push((knobs::env_var_name(knob), value.clone()));
    }
    let mut base_url = String::new();
    if matches!(spec, TargetSpec::Node) {
        let port = free_port().map_err(|source| TargetError::Spawn {
            what: launch.what.clone(),
            source,
        })?;
        let host = env.listen_host.as_deref().unwrap_or("127.0.0.1");
        launch.env.push(("HOST".into(), host.into()));
        launch.env.push(("PORT".into(), port.to_string()));
        base_url = format!("http://{host}:{port}");
    }
    let listen = env.listen_host.as_ref().map(|host| format!("{host}:0"));
    let (process, addr_rx) = launch.spawn(listen.as_deref(), true)?;
    let mut running = RunningTarget {
        base_url,
        pid: process.pid,
        process: Mutex::new(None),
        launch: None,
        log_path: Some(log_path.to_path_buf()),
        what: launch.what.clone(),
    };
    running.replace_process(Some(process));
    wait_ready(
        &mut running.base_url,
        Some(addr_rx),
        &running.process,
        &launch,
    )
    .await?;
    running.launch = Some(launch);
    Ok(running)
}

/// Polls `/healthz` until it answers 200 (learning the API's address from `addr_rx` first
/// when `base_url` is empty); fails when the process exits or [`START_TIMEOUT`] passes.
async fn wait_ready(
    base_url: &mut String,
    mut addr_rx: Option<tokio::sync::mpsc::Receiver<String>>,
    process: &Mutex<Option<TargetProcess>>,
    launch: &Launch,
) -> Result<(), TargetError> {
    let what = launch.what.clone();
    let log = launch.log_path.clone();
    let deadline = Instant::now() + START_TIMEOUT;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| TargetError::Spawn {
            what: what.clone(),
            source: std::io::Error::other(e),
        })?;
    loop {
        if base_url.is_empty()
            && let Some(Ok(url)) = addr_rx.as_mut().map(|rx| rx.try_recv())
        {
            *base_url = url.trim_end_matches('/').to_string();
        }
        if !base_url.is_empty() {
            let health = format!("{base_url}/healthz");
            if let Ok(response) = client.get(&health).send().await
                && response.status().as_u16() == 200
            {
                return Ok(());
            }
        }
        let exited = {
            let mut guard = process.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut().map(|p| p.child.try_wait()) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                None => Some("gone".to_string()),
                _ => None,
            }
        };
        if let Some(status) = exited {
            return Err(TargetError::ExitedEarly { what, status, log });
        }
        if Instant::now() > deadline {
            return Err(TargetError::NotReady {
                what,
                secs: START_TIMEOUT.as_secs(),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
