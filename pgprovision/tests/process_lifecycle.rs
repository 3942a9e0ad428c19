//! What happens across processes: the watchdog cleans up after an owner that dies without
//! dropping its handle, and `Auto` decides from the real environment. Each test re-runs this
//! test binary as a child (selecting `helper_child_process` with an environment variable), so
//! environment variables and process deaths stay out of the parent.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pgprovision::{Postgres, Provision};

use common::{children_of, process_running, select_int, wait_until_gone};

const HELPER_ENV: &str = "PGPROVISION_TEST_HELPER";

/// The helper's line on stdout, parsed.
#[derive(Debug)]
struct HelperReport {
    provisioned_by: String,
    postmaster_pid: Option<u32>,
    dir: Option<PathBuf>,
    url: String,
}

/// Runs in a child process only (it is `#[ignore]`d, and does nothing without [`HELPER_ENV`]):
/// provisions per the mode, prints one `HELPER …` line, then
/// - `exit`: `std::process::exit(0)` without dropping the handle;
/// - `hang`: waits to be killed;
/// - `auto`: provisions with `Provision::Auto` and drops the handle normally.
#[test]
#[ignore = "helper: run in a child process by the other tests of this file"]
fn helper_child_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let how = if mode == "auto" {
        Provision::Auto
    } else {
        Provision::LocalBinaries
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a runtime");
    let postgres = runtime
        .block_on(Postgres::start(how))
        .unwrap_or_else(|e| panic!("helper could not provision: {e}"));
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "HELPER provisioned_by={} pid={} dir={} url={}",
        postgres.provisioned_by(),
        postgres
            .postmaster_pid()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        postgres
            .cluster_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        postgres.url(),
    );
    let _ = stdout.flush();
    match mode.as_str() {
        "exit" => std::process::exit(0),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        _ => drop(postgres),
    }
}

/// Starts the helper in `mode` with `env` changes (value `None` removes the variable), in its
/// own process group (like a job started from a shell), and waits for its report.
fn start_helper(mode: &str, env: &[(&str, Option<&str>)]) -> (Child, HelperReport) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([
            "--ignored",
            "--exact",
            "helper_child_process",
            "--nocapture",
        ])
        .env(HELPER_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("spawning the helper");
    let stdout = child.stdout.take().expect("the helper's stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(report) = line.strip_prefix("HELPER ") {
                let _ = sender.send(report.to_owned());
            }
        }
    });
    let line = match receiver.recv_timeout(Duration::from_secs(90)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("the helper ({mode}) printed no report; it ended with {status:?}");
        }
    };
    let field = |name: &str| {
        line.split(' ')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    let report = HelperReport {
        provisioned_by: field("provisioned_by"),
        postmaster_pid: field("pid").parse().ok(),
        dir: Some(field("dir"))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        url: field("url"),
    };
    (child, report)
}

/// The helper's postmaster and its children, and the cluster dir — all alive right now.
fn cluster_of(report: &HelperReport) -> (Vec<u32>, PathBuf) {
    let pid = report
        .postmaster_pid
        .expect("the helper reported a postmaster pid");
    let dir = report
        .dir
        .clone()
        .expect("the helper reported a cluster dir");
    assert!(process_running(pid), "postmaster {pid} is not running");
    assert!(dir.exists(), "{} does not exist", dir.display());
    let mut pids = children_of(pid);
    pids.push(pid);
    (pids, dir)
}

#[test]
fn the_watchdog_cleans_up_after_an_owner_that_exits_without_dropping() {
    let (mut child, report) = start_helper("exit", &[]);
    let status = child.wait().expect("waiting for the helper");
    assert!(status.success(), "the helper failed: {status}");
    let pid = report.postmaster_pid.expect("a pid");
    let dir = report.dir.clone().expect("a dir");
    // The helper is gone; only the watchdog can stop the server now.
    let left = wait_until_gone(&[pid], &dir, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "left behind after the owner exited: {left:?}"
    );
}

#[test]
fn the_watchdog_cleans_up_after_an_owner_killed_with_sigkill() {
    let (mut child, report) = start_helper("hang", &[]);
    let (pids, dir) = cluster_of(&report);
    child.kill().expect("SIGKILL to the helper");
    let _ = child.wait();
    let left = wait_until_gone(&pids, &dir, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "left behind after SIGKILL of the owner: {left:?}"
    );
}

#[test]
fn the_watchdog_cleans_up_after_ctrl_c_to_the_owners_process_group() {
    let (mut child, report) = start_helper("hang", &[]);
    let (pids, dir) = cluster_of(&report);
    // What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    killpg(group, Signal::SIGINT).expect("SIGINT to the helper's process group");
    let status = child.wait().expect("waiting for the helper");
    assert!(!status.success(), "the helper ignored SIGINT: {status}");
    let left = wait_until_gone(&pids, &dir, Duration::from_secs(10));
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:?}");
}

#[tokio::test]
async fn auto_with_database_url_set_uses_that_server() {
    let server = Postgres::start(Provision::LocalBinaries)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url().to_owned();
    let (mut child, report) = tokio::task::spawn_blocking(move || {
        start_helper(
            "auto",
            &[
                ("DATABASE_URL", Some(&url)),
                ("DOCKER_HOST", Some("unix:///nonexistent/docker.sock")),
            ],
        )
    })
    .await
    .expect("the helper thread");
    let status = child.wait().expect("waiting for the helper");
    assert!(status.success(), "the helper failed: {status}");
    assert_eq!(report.provisioned_by, "url");
    assert_eq!(report.url, server.url());
    assert_eq!(report.postmaster_pid, None);
    // The helper's handle was dropped; a Url handle must leave the server alone.
    assert_eq!(select_int(server.url(), 2).await, 2);
}

#[test]
fn auto_without_database_url_or_docker_starts_local_binaries() {
    let (mut child, report) = start_helper(
        "auto",
        &[
            ("DATABASE_URL", None),
            ("DOCKER_HOST", Some("unix:///nonexistent/docker.sock")),
        ],
    );
    let status = child.wait().expect("waiting for the helper");
    assert!(status.success(), "the helper failed: {status}");
    assert_eq!(report.provisioned_by, "local-binaries");
    let pid = report
        .postmaster_pid
        .expect("a local cluster reports its pid");
    let dir = report.dir.clone().expect("a local cluster reports its dir");
    // The helper dropped its handle before exiting: everything is already gone.
    let left = wait_until_gone(&[pid], &dir, Duration::from_secs(1));
    assert!(left.is_empty(), "left behind after a normal drop: {left:?}");
}
