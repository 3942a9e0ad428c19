//! `[[faults]]`: the scenario file's checks (each naming the file, line and field), and one run
//! against the real API and a provisioned PostgreSQL with a pause, a terminate and a kill, read
//! back from summary.json. The run is skipped (with the reason printed) when target/debug/api
//! is not built (`cargo build -p api`).

mod common;

use loadgen::faults::{self, FaultAction};
use loadgen::scenario::{self, ScenarioError};
use pgprovision::ProvisionedBy;
use std::path::Path;

const BASE: &str = r#"name = "f"
[load]
rate_per_sec = 100
duration = "20s"
warmup = "2s"
[target]
kind = "api"
[[requests]]
name = "get"
path = "/api/users/{{user_id}}"
"#;

fn parse(text: &str) -> Result<scenario::Scenario, ScenarioError> {
    scenario::parse(text, Path::new("f.toml"))
}

/// "file:line:col: field: message" of a scenario that must not parse.
fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e @ ScenarioError::Invalid { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

fn assert_names(error: &str, line: usize, field: &str, says: &str) {
    let prefix = format!("f.toml:{line}:");
    assert!(
        error.starts_with(&prefix),
        "`{error}` should start with {prefix}"
    );
    assert!(error.contains(field), "`{error}` should name {field}");
    assert!(error.contains(says), "`{error}` should say {says:?}");
}

#[test]
fn every_action_parses_in_time_order_with_durations_for_pauses() {
    let text = BASE.to_string()
        + "[[faults]]\nat = \"12s\"\naction = \"target_pause\"\nduration = \"3s\"\n\
           [[faults]]\nat = \"1s\"\naction = \"pg_terminate\"\n\
           [[faults]]\nat = \"4s\"\naction = \"pg_restart\"\n\
           [[faults]]\nat = \"7s\"\naction = \"pg_pause\"\nduration = \"1500ms\"\n\
           [[faults]]\nat = \"17s\"\naction = \"target_kill\"\n";
    let s = parse(&text).expect("valid");
    let got: Vec<(FaultAction, u64, Option<u64>)> = s
        .faults
        .iter()
        .map(|f| {
            (
                f.action,
                f.at.as_millis() as u64,
                f.duration.map(|d| d.as_millis() as u64),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (FaultAction::PgTerminate, 1_000, None),
            (FaultAction::PgRestart, 4_000, None),
            (FaultAction::PgPause, 7_000, Some(1_500)),
            (FaultAction::TargetPause, 12_000, Some(3_000)),
            (FaultAction::TargetKill, 17_000, None),
        ]
    );
    // Where each action is written, for errors found once the database is known.
    assert_eq!(s.faults[0].source.line, 17);
    assert!(parse(BASE).expect("valid").faults.is_empty());
}

#[test]
fn an_unknown_action_is_named_with_the_ones_there_are() {
    let e = error_of(&(BASE.to_string() + "[[faults]]\nat = \"5s\"\naction = \"pg_crash\"\n"));
    assert_names(&e, 13, "faults.action", "`pg_crash` is not a fault");
    assert!(
        e.contains("pg_terminate, pg_restart, pg_pause, target_pause, target_kill"),
        "{e}"
    );
}

#[test]
fn pauses_need_a_duration_and_single_steps_take_none() {
    let e = error_of(&(BASE.to_string() + "[[faults]]\nat = \"5s\"\naction = \"target_pause\"\n"));
    assert_names(&e, 11, "faults.duration", "needs duration");
    let e = error_of(&(BASE.to_string() + "[[faults]]\nat = \"5s\"\naction = \"pg_pause\"\n"));
    assert_names(&e, 11, "faults.duration", "needs duration");
    let e = error_of(
        &(BASE.to_string()
            + "[[faults]]\nat = \"5s\"\naction = \"pg_restart\"\nduration = \"2s\"\n"),
    );
    assert_names(&e, 14, "faults.duration", "single step");
    let e = error_of(
        &(BASE.to_string() + "[[faults]]\nat = \"5s\"\naction = \"pg_pause\"\nduration = \"0s\"\n"),
    );
    assert_names(&e, 14, "faults.duration", "must be > 0");
}

#[test]
fn a_fault_must_end_before_the_load_does() {
    let e = error_of(&(BASE.to_string() + "[[faults]]\nat = \"20s\"\naction = \"pg_terminate\"\n"));
    assert_names(&e, 12, "faults.at", "the measured load lasts 20000 ms");
    let e = error_of(
        &(BASE.to_string()
            + "[[faults]]\nat = \"18s\"\naction = \"target_pause\"\nduration = \"3s\"\n"),
    );
    assert_names(&e, 12, "faults.at", "ends at 21000 ms");
    let e =
        error_of(&(BASE.to_string() + "[[faults]]\nat = \"soon\"\naction = \"pg_terminate\"\n"));
    assert_names(&e, 12, "faults.at", "not a duration");
    // Absurd values are an error, never an overflow.
    let huge = "18446744073709551615ms";
    let e = error_of(
        &(BASE.to_string()
            + &format!(
                "[[faults]]\nat = \"{huge}\"\naction = \"pg_pause\"\nduration = \"{huge}\"\n"
            )),
    );
    assert_names(&e, 12, "faults.at", "must end before the load does");
}

#[test]
fn overlapping_faults_and_url_targets_are_refused() {
    let e = error_of(
        &(BASE.to_string()
            + "[[faults]]\nat = \"5s\"\naction = \"target_pause\"\nduration = \"3s\"\n\
               [[faults]]\nat = \"7s\"\naction = \"pg_terminate\"\n"),
    );
    assert_names(
        &e,
        16,
        "faults.at",
        "overlaps the `target_pause` at line 13",
    );
    let url = BASE.replace(
        "kind = \"api\"",
        "kind = \"url\"\nurl = \"http://127.0.0.1:9\"",
    ) + "[[faults]]\nat = \"5s\"\naction = \"target_kill\"\n";
    let e = error_of(&url);
    assert_names(
        &e,
        14,
        "faults.action",
        "not possible with variant `default` (kind = \"url\")",
    );
}

#[test]
fn pg_restart_and_pg_pause_are_refused_without_a_cluster_apibench_started() {
    let text = BASE.to_string()
        + "[[faults]]\nat = \"3s\"\naction = \"pg_terminate\"\n\
           [[faults]]\nat = \"6s\"\naction = \"pg_restart\"\n";
    let s = parse(&text).expect("parses: the server is not known yet");
    for (by, says) in [
        (ProvisionedBy::Url, "given by URL"),
        (ProvisionedBy::Testcontainers, "testcontainers"),
    ] {
        let e = faults::check_database(&s.faults, Some(by))
            .expect_err("refused")
            .to_string();
        assert_names(&e, 16, "faults.action", "`pg_restart` is not possible");
        assert!(e.contains(says), "{e}");
    }
    assert!(faults::check_database(&s.faults, Some(ProvisionedBy::LocalBinaries)).is_ok());
    let e = faults::check_before_provisioning(&s.faults, Some("postgres://u@127.0.0.1/db"))
        .expect_err("a --database-url server is the user's");
    assert_names(&e.to_string(), 16, "faults.action", "given by URL");
}

/// A few seconds of load against the real API on a provisioned PostgreSQL: a session
/// terminate, a pause of the API and a kill + restart of it. Every fault is injected and
/// recorded, the load carries on after the kill, and the report has the table.
#[test]
fn faults_under_load_against_the_real_api_are_recorded_in_the_summary() {
    // target/debug/api, next to the test binary's directory.
    let api = loadgen::target::default_api_bin();
    if !api.is_file() {
        eprintln!("skipped: {} not built (cargo build -p api)", api.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("faults.toml");
    std::fs::write(
        &scenario,
        "name = \"faults-e2e\"\n[data]\nusers = 100\nposts = 200\n\
         [load]\nrate_per_sec = 100\nusers = 8\nmax_users = 200\nduration = \"8s\"\nwarmup = \"1s\"\n\
         timeout = \"2s\"\n\
         [target]\nkind = \"api\"\n\
         [[requests]]\nname = \"get_user\"\npath = \"/api/users/{{user_id}}\"\n\
         [[faults]]\nat = \"1s\"\naction = \"pg_terminate\"\n\
         [[faults]]\nat = \"3s\"\naction = \"target_pause\"\nduration = \"1s\"\n\
         [[faults]]\nat = \"6s\"\naction = \"target_kill\"\n",
    )
    .expect("scenario");
    let out = dir.path().join("out");
    let (stdout, summary) =
        common::run_against_api(env!("CARGO_BIN_EXE_apibench"), &api, &scenario, &out, true);
    let m = &summary.variants[0].figures;
    let actions: Vec<&str> = m.faults.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(actions, ["pg_terminate", "target_pause", "target_kill"]);
    for fault in &m.faults {
        assert_eq!(fault.injection_error, None, "{fault:?}");
        let started = fault.started_ms.expect("injected");
        assert!(started >= fault.at_ms, "{fault:?}");
        assert!(
            fault.recovered == fault.time_to_recover_ms.is_some()
                && fault.recovered != fault.not_recovered.is_some(),
            "a recovery time or the reason there is none: {fault:?}"
        );
    }
    let [terminate, pause, kill] = &m.faults[..] else {
        panic!("three faults: {:?}", m.faults);
    };
    // The API's pool keeps connections open (pool_min): there were sessions to end.
    let detail = terminate.detail.as_deref().unwrap_or("");
    assert!(
        !detail.starts_with("0 sessions") && detail.contains("terminated"),
        "{terminate:?}"
    );
    let paused_ms = pause.ended_ms.expect("resumed") - pause.started_ms.expect("started");
    assert!(paused_ms >= 1_000, "{pause:?}");
    if let Some(ms) = pause.time_to_recover_ms {
        assert!(ms >= 1_000, "never sooner than the pause itself: {pause:?}");
    }
    assert!(
        kill.detail
            .as_deref()
            .is_some_and(|d| d.contains("killed") && d.contains("ready")),
        "{kill:?}"
    );
    // The restarted API answered: requests succeeded after the kill.
    assert!(m.requests > m.errors && m.latency_us.count > 0, "{m:?}");
    assert!(stdout.contains("target_kill at 6 s"), "{stdout}");
    let html = std::fs::read_to_string(out.join("index.html")).expect("report");
    assert!(html.contains("Faults and recovery") && html.contains("fault window"));
    // One log for both processes: the restart appends to it.
    let log = std::fs::read_to_string(out.join("default/target.log")).expect("target log");
    assert!(
        log.matches("listening on").count() >= 2,
        "started twice:\n{log}"
    );
}

/// `[cpus] postgres`: a `pg_restart` starts a new postmaster (a new process tree), which is
/// pinned again — it is not left to run wherever the kernel puts it.
#[test]
fn a_restarted_postgres_is_pinned_again() {
    let api = loadgen::target::default_api_bin();
    if !api.is_file() {
        eprintln!("skipped: {} not built (cargo build -p api)", api.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("restart.toml");
    std::fs::write(
        &scenario,
        "name = \"restart-pinned\"\n[data]\nusers = 100\nposts = 200\n\
         [cpus]\npostgres = \"0\"\n\
         [load]\nrate_per_sec = 50\nusers = 4\nduration = \"5s\"\nwarmup = \"1s\"\ntimeout = \"2s\"\n\
         [target]\nkind = \"api\"\n\
         [[requests]]\nname = \"get_user\"\npath = \"/api/users/{{user_id}}\"\n\
         [[faults]]\nat = \"2s\"\naction = \"pg_restart\"\n",
    )
    .expect("scenario");
    let out = dir.path().join("out");
    let (_, summary) =
        common::run_against_api(env!("CARGO_BIN_EXE_apibench"), &api, &scenario, &out, true);
    let restart = &summary.variants[0].figures.faults[0];
    assert_eq!(restart.injection_error, None, "{restart:?}");
    let detail = restart.detail.as_deref().unwrap_or("");
    assert!(
        detail.contains("accepted connections again") && detail.contains("pinned to CPUs 0 again"),
        "{restart:?}"
    );
    assert!(!detail.contains("NOT pinned"), "{restart:?}");
}
