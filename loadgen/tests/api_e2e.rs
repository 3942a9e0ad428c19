//! End to end with the real reference API and a provisioned Postgres: start, load, Ctrl-C,
//! partial results, nothing left running. Skipped (with the reason printed) when
//! target/debug/api is not built (`cargo build -p api`).

use loadgen::results::Summary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::children_of;

fn api_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_apibench"))
        .parent()
        .map(|dir| dir.join("api"))
        .unwrap_or_default()
}

#[test]
fn api_target_interrupted_leaves_partial_results_and_no_processes() {
    let api = api_bin();
    if !api.is_file() {
        eprintln!("skipped: {} not built (cargo build -p api)", api.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("e2e.toml");
    std::fs::write(
        &scenario,
        "name = \"e2e\"\n[data]\nusers = 100\nposts = 200\n[load]\nrate_per_sec = 50\nusers = 4\n\
         duration = \"60s\"\n[target]\nkind = \"api\"\n[[requests]]\nname = \"get_user\"\n\
         path = \"/api/users/{{user_id}}\"\n[[variants]]\nname = \"v\"\nknobs = { pool_max = 10 }\n",
    )
    .expect("scenario");
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apibench"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("apibench starts");
    let pid = child.id();
    // Wait until the target is up and the load has run for a moment.
    let log = out.join("v/resources.csv");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !log.is_file() {
        assert!(Instant::now() < deadline, "the api target never started");
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("apibench exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let started = children_of(pid);
    assert!(!started.is_empty(), "the api runs as a child of apibench");
    kill(
        Pid::from_raw(i32::try_from(pid).expect("pid")),
        Signal::SIGINT,
    )
    .expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("apibench did not exit within 30 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let summary: Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("summary parses");
    assert!(summary.partial);
    let figures = &summary.variants[0].figures;
    assert!(figures.requests > 0 && figures.errors == 0, "{figures:?}");
    assert!(figures.target_rss_peak_bytes.is_some());
    let left: Vec<u32> = started
        .into_iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

/// `[baseline]` + `[cpus]` end to end: pgbench runs before the variants and again after them on
/// fresh copies, the ceiling is the higher sample with both kept, every variant is shown as a
/// fraction of it (terminal, summary.json, report), and the placement is recorded.
#[test]
fn the_baseline_brackets_the_variants_and_every_variant_is_a_fraction_of_it() {
    let api = api_bin();
    if !api.is_file() {
        eprintln!("skipped: {} not built (cargo build -p api)", api.display());
        return;
    }
    if let Err(e) = loadgen::baseline::find_pgbench() {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("ceiling.toml");
    std::fs::write(
        &scenario,
        "name = \"ceiling-e2e\"\n[data]\nusers = 100\nposts = 200\n\
         [baseline]\npgbench = { clients = 2, seconds = 1 }\n\
         [cpus]\npostgres = \"0\"\ntarget = \"0\"\n\
         [load]\nmodel = \"closed\"\nusers = 2\nduration = \"2s\"\nwarmup = \"1s\"\n\
         [target]\nkind = \"api\"\n[[requests]]\nname = \"get_user\"\n\
         path = \"/api/users/{{user_id}}\"\n\
         [[variants]]\nname = \"defaults\"\n\
         [[variants]]\nname = \"tokio-postgres\"\nknobs = { db_driver = \"tokio-postgres\" }\n",
    )
    .expect("scenario");
    let out = dir.path().join("out");
    let (stdout, summary) =
        common::run_against_api(env!("CARGO_BIN_EXE_apibench"), &api, &scenario, &out, false);
    let b = summary.baseline.as_ref().expect("a baseline");
    let whens: Vec<&str> = b.samples.iter().map(|s| s.when.as_str()).collect();
    assert_eq!(whens, ["before the variants", "after the variants"]);
    let highest = b.samples.iter().map(|s| s.tps).fold(0.0, f64::max);
    assert!(highest > 0.0 && b.tps == highest, "{b:?}");
    for sample in &b.samples {
        let log = std::fs::read_to_string(out.join(&sample.log)).expect("each sample's log");
        assert!(log.contains("tps = "), "{}: {log}", sample.log);
    }
    for v in &summary.variants {
        let share = loadgen::baseline::fraction_of_ceiling(b, &v.figures).expect("a fraction");
        assert!(
            share.fraction > 0.0 && share.what == "throughput",
            "{}: {share:?}",
            v.name
        );
        assert!(
            stdout.contains(&format!("  {}: throughput ", v.name)),
            "{}:\n{stdout}",
            v.name
        );
    }
    assert!(stdout.contains("the higher of 2 samples"), "{stdout}");
    let html = std::fs::read_to_string(out.join("index.html")).expect("report");
    assert!(html.contains("The database's ceiling") && html.contains("the higher of 2 samples"));
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).expect("run.json"))
            .expect("run.json parses");
    assert!(
        run_json["placement"].to_string().contains("\"0\""),
        "{}",
        run_json["placement"]
    );
}
