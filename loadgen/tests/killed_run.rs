//! A run killed with SIGKILL mid-way leaves a directory `apibench report` still renders, as a
//! partial run rebuilt from its logs — and leaves that directory as the kill left it.
//! The real binary throughout: `apibench hello-server` as the target, `apibench run`, a SIGKILL,
//! `apibench report`.

use loadgen::calibrate::child::HelloChild;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const APIBENCH: &str = env!("CARGO_BIN_EXE_apibench");

/// The scenario: open model at `rate_per_sec` against `url`; no `[[variants]]`, so its one
/// variant is called `default`.
fn write_scenario(dir: &Path, url: &str, rate_per_sec: u32, duration: &str) -> PathBuf {
    let path = dir.join("killed.toml");
    let text = format!(
        "name = \"killed\"\n\
         description = \"apibench against its own hello server, killed mid-way\"\n\
         [load]\nmodel = \"open\"\nrate_per_sec = {rate_per_sec}\nusers = 16\n\
         duration = \"{duration}\"\nwarmup = \"1s\"\ntimeout = \"2s\"\n\
         [http]\naccept_encoding = \"none\"\n\
         [target]\nkind = \"url\"\nurl = \"{url}\"\n\
         [[requests]]\nname = \"root\"\npath = \"/\"\n"
    );
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// `apibench run SCENARIO --out OUT -q`, without the machine's calibration (no warning).
fn run_command(scenario: &Path, out: &Path, calibration: &Path) -> Command {
    let mut command = Command::new(APIBENCH);
    command
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .arg("-q")
        .env("APIBENCH_CALIBRATION", calibration);
    command
}

fn report(out: &Path) -> Output {
    Command::new(APIBENCH)
        .arg("report")
        .arg(out)
        .output()
        .expect("apibench report runs")
}

/// Untagged (latency) intervals in the complete lines of `hlog` so far.
fn logged_intervals(hlog: &Path) -> usize {
    let Ok(bytes) = std::fs::read(hlog) else {
        return 0;
    };
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..=end],
        None => return 0,
    };
    loadgen::recorder::read_hlog(complete).map_or(0, |intervals| {
        intervals.iter().filter(|i| i.tag.is_none()).count()
    })
}

/// What a user sees from `apibench report` on a run that has no summary.json.
fn assert_recovered_report(out: &Path, report: &Output) {
    let stdout = String::from_utf8_lossy(&report.stdout);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert_eq!(
        report.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("apibench: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {stderr}");
    assert!(
        warnings[0].contains("rebuilt from its logs") && warnings[0].contains("partial"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(out.join("index.html")).expect("index.html written");
    assert!(
        page.contains("Partial run"),
        "the page says the run is partial"
    );
    assert!(page.contains("recovered from latency.hlog"), "and why");
    assert!(
        !out.join("summary.json").exists(),
        "the run directory is left as the run left it"
    );
}

#[test]
fn a_run_killed_mid_way_still_renders_as_a_partial_run() {
    let server = HelloChild::start(Path::new(APIBENCH), None).expect("hello server starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(dir.path(), &format!("http://{}", server.addr), 300, "40s");
    let out = dir.path().join("out");
    let mut run = run_command(&scenario, &out, &dir.path().join("calibration.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apibench run starts");

    // Killed once the log holds three closed intervals, well before the 41 s schedule ends.
    let hlog = out.join("default").join("latency.hlog");
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut logged = 0;
    while Instant::now() < deadline {
        logged = logged_intervals(&hlog);
        if logged >= 3 {
            break;
        }
        if let Some(status) = run.try_wait().expect("wait") {
            panic!("apibench run ended ({status}) before it was killed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    run.kill().expect("SIGKILL sent");
    let status = run.wait().expect("reaped");
    assert!(
        logged >= 3,
        "{} held {logged} intervals after 25 s: the log is not streamed while the run goes",
        hlog.display()
    );
    assert_eq!(status.code(), None, "killed by a signal, not exited");
    assert!(!out.join("summary.json").exists());

    let report = report(&out);
    assert_recovered_report(&out, &report);
    let recovered = loadgen::recover::summary_from_logs(&out).expect("recovers");
    let figures = &recovered.summary.variants[0].figures;
    assert_eq!(recovered.summary.variants[0].name, "default");
    assert!(figures.partial && !figures.valid);
    assert!(figures.requests > 0, "{figures:?}");
    assert!(
        figures.measured_duration_ms < 40_000,
        "only the seconds logged before the kill: {figures:?}"
    );
}

#[test]
fn a_finished_run_without_its_summary_recovers_the_requests_it_counted() {
    let server = HelloChild::start(Path::new(APIBENCH), None).expect("hello server starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let rate_per_sec = 200;
    let scenario = write_scenario(
        dir.path(),
        &format!("http://{}", server.addr),
        rate_per_sec,
        "3s",
    );
    let out = dir.path().join("out");
    let run = run_command(&scenario, &out, &dir.path().join("calibration.json"))
        .output()
        .expect("apibench run runs");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let finished = loadgen::saved::load_summary(&out).expect("summary.json");
    std::fs::remove_file(out.join("summary.json")).expect("remove summary.json");
    std::fs::remove_file(out.join("index.html")).expect("remove index.html");
    // A finished run's missing summary is damage, not a kill: the report refuses it (exit 2).
    let refused = report(&out);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    // As a kill just before the summary leaves it: run.json without its end.
    let run_json = out.join("run.json");
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&run_json).expect("run.json")).expect("json");
    info["finished_at"] = serde_json::Value::Null;
    std::fs::write(&run_json, info.to_string()).expect("rewrite run.json");

    let report = report(&out);
    assert_recovered_report(&out, &report);
    let recovered = loadgen::recover::summary_from_logs(&out).expect("recovers");
    let (counted, rebuilt) = (
        &finished.variants[0].figures,
        &recovered.summary.variants[0].figures,
    );
    // The log is by completion second, the summary by send time: every measured request
    // completed after the warm-up, and at most the warm-up's own requests did too.
    assert!(
        rebuilt.requests >= counted.requests
            && rebuilt.requests <= counted.requests + u64::from(rate_per_sec),
        "recovered {} requests, the run counted {}",
        rebuilt.requests,
        counted.requests
    );
    assert!(
        rebuilt.errors >= counted.errors
            && rebuilt.errors <= rebuilt.requests - counted.requests + counted.errors,
        "recovered {} errors, the run counted {}",
        rebuilt.errors,
        counted.errors
    );
    assert_eq!(rebuilt.measured_duration_ms, 3_000, "the whole schedule");
}
