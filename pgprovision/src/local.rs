//! A throwaway PostgreSQL cluster from locally installed server binaries: find `initdb` and
//! `postgres`, initialise a cluster in a temp dir, start it on a free port, and make sure it goes
//! away again — by [`Drop`] when the owner is orderly, by a detached watchdog when it is not
//! (panic=abort, SIGKILL, Ctrl-C, a `static` that never drops).
//!
//! It must never touch a cluster or directory it did not create: the watchdog only signals the
//! pid this module spawned (and only if that process is still a `postgres`), and only removes
//! the temp dir this module created.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Gid, Pid, Uid, User, chown};
use sqlx::{Connection as _, PgConnection};

use crate::{ProvisionError, SERVER_TUNING, ServerInfo, url};

/// The OS user that runs the cluster when we are root (initdb refuses to run as root).
const SERVICE_USER: &str = "postgres";
/// How long the server may take to accept connections.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long a fast shutdown (SIGINT) may take before SIGKILL.
const STOP_PATIENCE: Duration = Duration::from_secs(5);
/// Attempts at a free port: another process may grab the port between our probe and the bind.
const PORT_ATTEMPTS: usize = 3;
/// The file, inside the cluster dir, where the postmaster's pid is written for the watchdog.
const SPAWNED_PID_FILE: &str = "postmaster.spawned.pid";

/// Polls the owner every 0.5 s; once it is gone (or a zombie, or its pid was reused), stops the
/// postmaster (SIGINT, then SIGKILL to its process group after 5 s) and removes the cluster dir.
/// Arguments: owner pid, owner start time (field 22 of /proc/<pid>/stat, may be empty), dir.
const WATCHDOG_SCRIPT: &str = r#"
owner=$1 owner_start=$2 dir=$3
trap '' HUP INT
# running PID: the process exists and is not a zombie.
running() {
  if [ -d "/proc/$$" ]; then
    [ -r "/proc/$1/stat" ] || return 1
    set -- $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)
    [ -n "$1" ] && [ "$1" != Z ] && [ "$1" != X ]
  else
    kill -0 "$1" 2>/dev/null
  fi
}
owner_alive() {
  running "$owner" || return 1
  [ -n "$owner_start" ] && [ -r "/proc/$owner/stat" ] || return 0
  set -- $(sed 's/^.*) //' "/proc/$owner/stat" 2>/dev/null)
  [ "${20}" = "$owner_start" ]
}
while owner_alive; do sleep 0.5; done
pm=
if [ -s "$dir/postmaster.spawned.pid" ]; then read -r pm < "$dir/postmaster.spawned.pid"
elif [ -s "$dir/data/postmaster.pid" ]; then read -r pm < "$dir/data/postmaster.pid"
fi
if [ -n "$pm" ] && running "$pm" && { [ ! -r "/proc/$pm/comm" ] || grep -q postgres "/proc/$pm/comm"; }; then
  kill -s INT "$pm" 2>/dev/null
  i=0
  while running "$pm" && [ "$i" -lt 10 ]; do sleep 0.5; i=$((i + 1)); done
  if running "$pm"; then
    kill -s KILL -- "-$pm" 2>/dev/null || kill -s KILL "$pm" 2>/dev/null
  fi
fi
rm -rf "$dir"
"#;

/// A running cluster this process started. Dropping it stops the server and removes the dir.
pub(crate) struct LocalCluster {
    /// The temp dir holding `data/`, `sock/` and `postgres.log`; `None` once removed.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    watchdog: Option<Child>,
    postmaster: Option<Child>,
}

/// The uid/gid to run initdb and postgres as, when we are root.
#[derive(Clone, Copy)]
struct ServiceUser {
    uid: Uid,
    gid: Gid,
}

impl LocalCluster {
    /// Finds the binaries, initialises a cluster in a new temp dir and starts it.
    pub(crate) async fn start() -> Result<(LocalCluster, ServerInfo), ProvisionError> {
        let bindir = find_bindir()?;
        let service_user = service_user()?;
        let dir = tempfile::Builder::new()
            .prefix("pgprovision-")
            .tempdir()
            .map_err(|e| ProvisionError::io("creating a temp dir in", std::env::temp_dir(), e))?;
        let root = dir.path().to_path_buf();
        let mut cluster = LocalCluster {
            dir: Some(dir),
            root: root.clone(),
            watchdog: None,
            postmaster: None,
        };
        // From here on, an early return drops `cluster`, which cleans up what exists so far;
        // the watchdog covers the owner dying while initdb or the server start is in progress.
        cluster.watchdog = Some(spawn_watchdog(&root)?);
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir)
            .map_err(|e| ProvisionError::io("creating the socket dir", &socket_dir, e))?;
        if let Some(user) = service_user {
            for path in [&root, &socket_dir] {
                chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                    ProvisionError::io(
                        "handing to OS user \"postgres\" (chown)",
                        path,
                        std::io::Error::from(e),
                    )
                })?;
            }
        }
        let data_dir = root.join("data");
        let initdb_started = Instant::now();
        let initdb = {
            let (bindir, data_dir, root) = (bindir.clone(), data_dir.clone(), root.clone());
            // initdb takes seconds; keep it off the async worker.
            tokio::task::spawn_blocking(move || run_initdb(&bindir, &data_dir, &root, service_user))
                .await
        };
        match initdb {
            Ok(result) => result?,
            Err(join_error) => {
                return Err(ProvisionError::io(
                    "running initdb for",
                    &data_dir,
                    std::io::Error::other(join_error.to_string()),
                ));
            }
        }
        tracing::debug!(data_dir = %data_dir.display(), elapsed_ms = initdb_started.elapsed().as_millis(), "initdb done");

        let log_file = root.join("postgres.log");
        let postgres = bindir.join("postgres");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            cluster.spawn_postmaster(&postgres, port, service_user)?;

            let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            match cluster.wait_until_ready(&url).await {
                Ok(server_version) => {
                    let server = ServerInfo {
                        url,
                        server_version,
                        settings: chosen_settings(port, &socket_dir, &data_dir, &log_file),
                    };
                    return Ok((cluster, server));
                }
                Err(reason) => {
                    cluster.stop_postmaster();
                    let log_tail = tail(&log_file, 30);
                    let port_taken = log_tail.contains("could not bind")
                        || log_tail.contains("Address already in use");
                    last_error = Some(ProvisionError::ServerStart {
                        binary: postgres.clone(),
                        data_dir: data_dir.clone(),
                        log_file: log_file.clone(),
                        reason,
                        log_tail,
                    });
                    if !port_taken {
                        break;
                    }
                    tracing::debug!(port, "port taken between probe and bind; trying another");
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ProvisionError::ServerStart {
            binary: postgres,
            data_dir,
            log_file: log_file.clone(),
            reason: "no attempt was made".to_owned(),
            log_tail: tail(&log_file, 30),
        }))
    }

    /// Polls until the server accepts a connection at `url` and returns its version; fails
    /// early if the postmaster exits.
    async fn wait_until_ready(&mut self, url: &str) -> Result<String, String> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if let Some(postmaster) = self.postmaster.as_mut() {
                match postmaster.try_wait() {
                    Ok(Some(status)) => return Err(format!("the postmaster exited ({status})")),
                    Ok(None) => {}
                    Err(e) => return Err(format!("checking on the postmaster: {e}")),
                }
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(url)).await;
            if let Ok(Ok(mut connection)) = attempt {
                let version = url::server_version(&mut connection, url).await;
                let _ = connection.close().await;
                return version.map_err(|e| e.to_string());
            }
            if Instant::now() >= deadline {
                let last = match attempt {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connection attempt timed out".to_owned(),
                };
                return Err(format!(
                    "no connection accepted at {url} within {} s (last error: {last})",
                    START_PATIENCE.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pid of the postmaster, while it runs.
    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The temp dir that holds `data/`, `sock/` and `postgres.log`.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Starts `postgres` on `port` with the cluster's data and socket dirs, logging to
    /// `postgres.log`, in its own process group; records its pid for the watchdog.
    fn spawn_postmaster(
        &mut self,
        postgres: &Path,
        port: u16,
        service_user: Option<ServiceUser>,
    ) -> Result<(), ProvisionError> {
        let root = &self.root;
        let log_file = root.join("postgres.log");
        let mut command = postgres_command(postgres, &root.join("data"), port, &root.join("sock"));
        if let Some(user) = service_user {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_file)
            .map_err(|e| ProvisionError::io("opening the server log", &log_file, e))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| ProvisionError::io("opening the server log", &log_file, e))?;
        let child = command
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            // Its own process group: a Ctrl-C meant for the owner must not stop the server
            // under a still-running owner, and SIGKILL can then take the whole group.
            .process_group(0)
            .spawn()
            .map_err(|e| ProvisionError::io("starting", postgres, e))?;
        let pid = child.id();
        self.postmaster = Some(child);
        let pid_file = root.join(SPAWNED_PID_FILE);
        fs::write(&pid_file, format!("{pid}\n"))
            .map_err(|e| ProvisionError::io("writing the postmaster pid to", &pid_file, e))
    }

    /// A fast restart, as `pg_ctl restart -m fast` does it: SIGINT (every session is
    /// terminated, a checkpoint is written), wait for the postmaster to exit, start it again on
    /// the same `port` with the same data dir and settings, and return once `url` accepts
    /// connections. The new postmaster is our child like the first, so Drop and the watchdog
    /// still stop it.
    pub(crate) async fn restart(&mut self, port: u16, url: &str) -> Result<(), ProvisionError> {
        let bindir = find_bindir()?;
        let service_user = service_user()?;
        if let Some(postmaster) = self.postmaster.take() {
            // The shutdown waits with std sleeps (it also runs in Drop): keep it off the runtime.
            tokio::task::spawn_blocking(move || stop_child(postmaster))
                .await
                .map_err(|e| {
                    ProvisionError::io(
                        "stopping the postmaster of",
                        &self.root,
                        std::io::Error::other(e.to_string()),
                    )
                })?;
        }
        let postgres = bindir.join("postgres");
        self.spawn_postmaster(&postgres, port, service_user)?;
        if let Err(reason) = self.wait_until_ready(url).await {
            let log_file = self.root.join("postgres.log");
            return Err(ProvisionError::ServerStart {
                binary: postgres,
                data_dir: self.root.join("data"),
                log_tail: tail(&log_file, 30),
                log_file,
                reason,
            });
        }
        Ok(())
    }

    /// SIGINT (fast shutdown), up to [`STOP_PATIENCE`], then SIGKILL to the process group.
    fn stop_postmaster(&mut self) {
        if let Some(postmaster) = self.postmaster.take() {
            stop_child(postmaster);
        }
    }
}

/// Stops a postmaster we spawned: SIGINT (fast shutdown), up to [`STOP_PATIENCE`], then SIGKILL
/// to its process group; reaps it.
fn stop_child(mut postmaster: Child) {
    let Ok(raw_pid) = i32::try_from(postmaster.id()) else {
        let _ = postmaster.kill();
        let _ = postmaster.wait();
        return;
    };
    let pid = Pid::from_raw(raw_pid);
    if matches!(postmaster.try_wait(), Ok(None)) {
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + STOP_PATIENCE;
        while matches!(postmaster.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(postmaster.try_wait(), Ok(None)) {
            tracing::warn!(
                pid = raw_pid,
                "postmaster ignored SIGINT for 5 s; sending SIGKILL"
            );
            if killpg(pid, Signal::SIGKILL).is_err() {
                let _ = postmaster.kill();
            }
        }
    }
    let _ = postmaster.wait();
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The watchdog first: we are alive and about to do its job ourselves.
        if let Some(mut watchdog) = self.watchdog.take() {
            if let Ok(pid) = i32::try_from(watchdog.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        self.stop_postmaster();
        if let Some(dir) = self.dir.take()
            && let Err(error) = dir.close()
        {
            tracing::warn!(dir = %self.root.display(), %error, "could not remove the cluster dir");
        }
    }
}

/// The directory holding `initdb` and `postgres`: `pg_config --bindir`, then each `PATH` entry,
/// then the highest version under `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf, ProvisionError> {
    let mut searched = Vec::new();
    match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
            searched.push(format!("{} (from pg_config --bindir)", dir.display()));
        }
        Ok(output) => searched.push(format!("pg_config --bindir ({})", output.status)),
        Err(error) => searched.push(format!("pg_config --bindir ({error})")),
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
        }
        searched.push("each PATH entry".to_owned());
    }
    let versions_root = Path::new("/usr/lib/postgresql");
    if let Some(dir) = highest_version_bindir(versions_root) {
        return Ok(dir);
    }
    searched.push(format!("{}/*/bin", versions_root.display()));
    Err(ProvisionError::BinariesNotFound { searched })
}

fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `<root>/<version>/bin` with the highest version (compared numerically: 9.6 < 10 < 15)
/// that has the server binaries.
fn highest_version_bindir(root: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            Some((version?, bin)).filter(|(_, bin)| has_server_binaries(bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin)
}

/// `Some` when we are root: the server must then run as [`SERVICE_USER`].
fn service_user() -> Result<Option<ServiceUser>, ProvisionError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name(SERVICE_USER) {
        Ok(Some(user)) => Ok(Some(ServiceUser {
            uid: user.uid,
            gid: user.gid,
        })),
        Ok(None) => Err(ProvisionError::ServiceUser {
            user: SERVICE_USER.to_owned(),
            reason: "no such user exists (create it, or run as a non-root user)".to_owned(),
        }),
        Err(errno) => Err(ProvisionError::ServiceUser {
            user: SERVICE_USER.to_owned(),
            reason: format!("looking it up failed: {errno}"),
        }),
    }
}

fn run_initdb(
    bindir: &Path,
    data_dir: &Path,
    cwd: &Path,
    service_user: Option<ServiceUser>,
) -> Result<(), ProvisionError> {
    let initdb = bindir.join("initdb");
    let mut command = Command::new(&initdb);
    command
        .arg("-D")
        .arg(data_dir)
        // The C locale: it exists everywhere, so a missing LANG locale cannot fail initdb.
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        // The service user may not be able to enter our working directory.
        .current_dir(cwd)
        .stdin(Stdio::null());
    if let Some(user) = service_user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let output = command
        .output()
        .map_err(|e| ProvisionError::io("running", &initdb, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(ProvisionError::Initdb {
        binary: initdb,
        data_dir: data_dir.to_path_buf(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

fn postgres_command(postgres: &Path, data_dir: &Path, port: u16, socket_dir: &Path) -> Command {
    let mut command = Command::new(postgres);
    command
        .arg("-D")
        .arg(data_dir)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(socket_dir)
        .args(["-c", "listen_addresses=127.0.0.1"]);
    for (name, value) in SERVER_TUNING {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    command
}

fn chosen_settings(
    port: u16,
    socket_dir: &Path,
    data_dir: &Path,
    log_file: &Path,
) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = SERVER_TUNING
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    settings.insert("port".to_owned(), port.to_string());
    settings.insert("listen_addresses".to_owned(), "127.0.0.1".to_owned());
    settings.insert(
        "unix_socket_directories".to_owned(),
        socket_dir.display().to_string(),
    );
    settings.insert("data_directory".to_owned(), data_dir.display().to_string());
    settings.insert("lc_collate".to_owned(), "C".to_owned());
    settings.insert("log_file".to_owned(), log_file.display().to_string());
    settings
}

/// A port nobody listens on right now (bind 127.0.0.1:0, read it, release it).
fn free_port() -> Result<u16, ProvisionError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| ProvisionError::io("finding a free port on", "127.0.0.1", e))
}

/// The last `lines` lines of `path` (at most the last 16 KiB), or a note why it is unreadable.
fn tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(could not read {}: {error})", path.display()),
    }
}

/// Starts the watchdog for the cluster in `dir`, detached in its own process group.
fn spawn_watchdog(dir: &Path) -> Result<Child, ProvisionError> {
    let owner = std::process::id();
    let owner_start = process_start_time(owner).unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("pgprovision-watchdog")
        .arg(owner.to_string())
        .arg(owner_start)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Not in the owner's process group: a terminal Ctrl-C must reach the owner, not us.
        .process_group(0)
        .spawn()
        .map_err(|e| ProvisionError::io("starting the cleanup watchdog (sh) for", dir, e))
}

/// Field 22 (start time in clock ticks) of `/proc/<pid>/stat`, to tell a reused pid apart.
fn process_start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(") ")? + 2..];
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_installed_version_wins_numerically() {
        let root = tempfile::tempdir().expect("temp dir");
        for version in ["9.6", "10", "15", "not-a-version"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).expect("creating a fake bindir");
            for binary in ["initdb", "postgres"] {
                fs::write(bin.join(binary), "").expect("creating a fake binary");
            }
        }
        // 16 exists but lacks the server binaries (client-only install).
        fs::create_dir_all(root.path().join("16").join("bin")).expect("creating a fake bindir");
        assert_eq!(
            highest_version_bindir(root.path()),
            Some(root.path().join("15").join("bin"))
        );
    }

    #[test]
    fn our_own_start_time_is_readable() {
        let start = process_start_time(std::process::id()).expect("reading /proc/self/stat");
        assert!(
            start.parse::<u64>().is_ok(),
            "start time {start:?} is not a number"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        fs::write(&path, "a\nb\nc\nd\n").expect("writing");
        assert_eq!(tail(&path, 2), "c\nd");
        assert!(tail(&dir.path().join("missing"), 2).contains("could not read"));
    }
}
