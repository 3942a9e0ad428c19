//! Every scenario error names the file, the line and the field.

use loadgen::scenario::{self, ScenarioError};
use std::path::Path;

const VALID: &str = r#"name = "t"
[load]
rate_per_sec = 100
duration = "2s"
[target]
kind = "url"
url = "http://127.0.0.1:9"
[[requests]]
name = "get"
path = "/api/users/{{user_id}}"
"#;

/// Parses `text` and returns "file:line:col: field: message".
fn error_of(text: &str) -> String {
    match scenario::parse(text, Path::new("scen.toml")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e @ ScenarioError::Invalid { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

fn assert_names(error: &str, line: usize, field: &str) {
    let prefix = format!("scen.toml:{line}:");
    assert!(
        error.starts_with(&prefix),
        "`{error}` should start with {prefix}"
    );
    assert!(error.contains(field), "`{error}` should name {field}");
}

#[test]
fn the_valid_base_parses() {
    let s = scenario::parse(VALID, Path::new("scen.toml")).expect("valid");
    assert_eq!(s.variants.len(), 1);
    assert_eq!(s.load.stages[0].rate_per_sec, 100.0);
}

#[test]
fn unknown_field() {
    let e = error_of(&VALID.replace("duration = \"2s\"", "duration = \"2s\"\nrate = 5"));
    assert_names(&e, 5, "rate");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn unknown_knob() {
    let text = VALID.replace(
        "kind = \"url\"\nurl = \"http://127.0.0.1:9\"",
        "kind = \"api\"",
    ) + "[[variants]]\nname = \"a\"\nknobs = { pool_size = 10 }\n";
    let e = error_of(&text);
    assert_names(&e, 12, "variants.knobs.pool_size");
    assert!(e.contains("unknown knob"), "{e}");
}

#[test]
fn bad_knob_value() {
    let text = VALID.replace(
        "kind = \"url\"\nurl = \"http://127.0.0.1:9\"",
        "kind = \"api\"",
    ) + "[[variants]]\nname = \"a\"\nknobs = { posts_strategy = \"n+1\" }\n";
    assert_names(&error_of(&text), 12, "variants.knobs.posts_strategy");
}

#[test]
fn unknown_template() {
    let e = error_of(&VALID.replace("{{user_id}}", "{{foo}}"));
    // Line 10, column of the `{{` inside the string.
    assert!(e.starts_with("scen.toml:10:20:"), "{e}");
    assert!(e.contains("requests.path") && e.contains("{{foo}}"), "{e}");
}

#[test]
fn missing_url_for_url_target() {
    let e = error_of(&VALID.replace("url = \"http://127.0.0.1:9\"\n", ""));
    assert_names(&e, 5, "target.url");
}

#[test]
fn bad_duration() {
    let e = error_of(&VALID.replace("\"2s\"", "\"2 seconds\""));
    assert_names(&e, 4, "load.duration");
    assert!(e.contains("not a duration"), "{e}");
}

#[test]
fn bad_model() {
    let e = error_of(&VALID.replace("[load]\n", "[load]\nmodel = \"poisson\"\n"));
    assert_names(&e, 3, "load.model");
}

#[test]
fn zero_rate() {
    assert_names(
        &error_of(&VALID.replace("rate_per_sec = 100", "rate_per_sec = 0")),
        3,
        "load.rate_per_sec",
    );
}

#[test]
fn wrong_type() {
    let e = error_of(&VALID.replace("rate_per_sec = 100", "rate_per_sec = \"fast\""));
    assert_names(&e, 3, "rate_per_sec");
}

#[test]
fn stages_and_rate_together() {
    let e = error_of(&VALID.replace(
        "duration = \"2s\"",
        "[[load.stages]]\nrate_per_sec = 10\nduration = \"1s\"",
    ));
    assert_names(&e, 3, "load.rate_per_sec");
}

#[test]
fn stages_replace_rate_and_duration() {
    let text = VALID.replace(
        "rate_per_sec = 100\nduration = \"2s\"",
        "[[load.stages]]\nrate_per_sec = 10\nduration = \"1s\"\n[[load.stages]]\nrate_per_sec = 20\nduration = \"1m30s\"",
    );
    let s = scenario::parse(&text, Path::new("scen.toml")).expect("stages parse");
    assert_eq!(s.load.stages.len(), 2);
    assert_eq!(s.load.duration.as_secs(), 91);
}

#[test]
fn duplicate_variant_names() {
    let text = VALID.to_string() + "[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n";
    assert_names(&error_of(&text), 14, "variants.name");
}

#[test]
fn closed_model_rejects_a_rate() {
    let e = error_of(&VALID.replace("[load]\n", "[load]\nmodel = \"closed\"\n"));
    assert_names(&e, 4, "load.rate_per_sec");
}

#[test]
fn unreadable_file_is_reported() {
    let e = scenario::load(Path::new("/nonexistent/scen.toml")).expect_err("missing file");
    assert!(e.to_string().contains("/nonexistent/scen.toml"));
}

/// VALID with an `api` target (the request's path is then on line 9) plus `tail` from line 10.
fn api_scenario(tail: &str) -> String {
    VALID.replace(
        "kind = \"url\"\nurl = \"http://127.0.0.1:9\"",
        "kind = \"api\"",
    ) + tail
}

#[test]
fn a_pool_max_below_the_default_pool_min_asks_for_pool_min() {
    let e = error_of(&api_scenario(
        "[[variants]]\nname = \"small\"\nknobs = { pool_max = 5 }\n",
    ));
    assert_names(&e, 12, "variants.knobs.pool_min");
    assert!(e.contains("set pool_min too"), "{e}");
    assert!(e.contains("pool_max = 5"), "{e}");
}

#[test]
fn an_explicit_pool_min_above_pool_max_is_refused() {
    let e = error_of(&api_scenario(
        "[[variants]]\nname = \"a\"\ntarget = { kind = \"node\" }\nknobs = { pool_max = 20, pool_min = 30 }\n",
    ));
    assert_names(&e, 13, "variants.knobs.pool_min");
    assert!(e.contains("pool_min = 30 is above pool_max = 20"), "{e}");
    // The default pool_max (50) counts too.
    let e = error_of(&api_scenario(
        "[[variants]]\nname = \"a\"\nknobs = { pool_min = 60 }\n",
    ));
    assert_names(&e, 12, "variants.knobs.pool_min");
}

#[test]
fn a_small_pool_with_its_own_pool_min_parses() {
    let s = scenario::parse(
        &api_scenario("[[variants]]\nname = \"a\"\nknobs = { pool_max = 5, pool_min = 5 }\n"),
        Path::new("scen.toml"),
    )
    .expect("pool_min = pool_max is fine");
    assert_eq!(s.variants[0].knobs["pool_min"], "5");
}

const RAMP: &str = "[find_max]\n[[find_max.stages]]\nrate_per_sec = 100\nduration = \"8s\"\n[[find_max.stages]]\nrate_per_sec = 400\nduration = \"8s\"\n";

#[test]
fn find_max_parses_with_the_issues_defaults() {
    let s = scenario::parse(&(VALID.to_string() + RAMP), Path::new("scen.toml")).expect("ramp");
    let f = s.find_max.expect("find_max");
    assert_eq!(f.budget.p99_budget_us, 50_000);
    assert_eq!(f.budget.max_error_rate, 0.001);
    assert_eq!(f.settle.as_secs(), 2);
    assert_eq!(f.stop_after_failures, 1);
    assert_eq!(f.stages.len(), 2);
    assert_eq!(f.stages[1].rate_per_sec, 400.0);
    // The fixed-rate phase is untouched.
    assert_eq!(s.load.stages[0].rate_per_sec, 100.0);
}

#[test]
fn find_max_errors_name_the_line() {
    let with = |setting: &str| VALID.to_string() + &RAMP.replace("[find_max]\n", setting);
    let e = error_of(&with("[find_max]\np99_budget_ms = 0\n"));
    assert_names(&e, 12, "find_max.p99_budget_ms");
    let e = error_of(&with("[find_max]\nmax_error_rate = 5\n"));
    assert_names(&e, 12, "find_max.max_error_rate");
    // settle is not measured, so a stage must be longer.
    let e = error_of(&with("[find_max]\nsettle = \"8s\"\n"));
    assert_names(&e, 15, "find_max.stages.duration");
    let e = error_of(&(VALID.to_string() + "[find_max]\np99_budget_ms = 20\n"));
    assert_names(&e, 11, "find_max.stages");
    let e = error_of(&with("[find_max]\nbudget = 3\n"));
    assert_names(&e, 12, "budget");
}

#[test]
fn migration_table_must_name_variants() {
    let text = VALID.replace(
        "name = \"t\"\n",
        "name = \"t\"\nmigration_table = { before = \"node-before\", after = \"default\" }\n",
    );
    let e = error_of(&text);
    assert_names(&e, 2, "migration_table.before");
    assert!(e.contains("node-before") && e.contains("default"), "{e}");
}

#[test]
fn the_migration_scenario_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/migration.toml");
    let s = scenario::load(&path).expect("scenarios/migration.toml is valid");
    let names: Vec<&str> = s.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "node-before",
            "node-batched",
            "node-cluster",
            "rust-batched",
            "rust-tuned"
        ]
    );
    let pair = s.migration_table.expect("migration_table");
    assert_eq!(
        (
            pair.before.as_str(),
            pair.after.as_str(),
            pair.fair_before.as_deref()
        ),
        ("node-before", "rust-tuned", Some("node-cluster"))
    );
    let ramp = s.find_max.expect("find_max");
    assert!(
        ramp.stages
            .windows(2)
            .all(|w| w[0].rate_per_sec < w[1].rate_per_sec)
    );
    // Every step of the walk changes exactly one thing: the target's kind or one knob. How a
    // runtime uses the cores (Node's workers) belongs to the runtime when the kind changes.
    for step in s.variants.windows(2) {
        let (from, to) = (&step[0], &step[1]);
        let kind = usize::from(from.target.kind() != to.target.kind());
        let runtime_knob = |k: &str| kind == 1 && k == "node_workers";
        let keys: std::collections::BTreeSet<&String> =
            from.knobs.keys().chain(to.knobs.keys()).collect();
        let knobs = keys
            .iter()
            .filter(|k| !runtime_knob(k) && from.knobs.get(**k) != to.knobs.get(**k))
            .count();
        assert_eq!(
            kind + knobs,
            1,
            "{} → {} changes {} things",
            from.name,
            to.name,
            kind + knobs
        );
    }
    // No handicapping: the same total pool until the step that exists to change it.
    for v in &s.variants[..4] {
        assert_eq!(v.knobs["pool_max"], "10", "{}", v.name);
    }
}

#[test]
fn run_duration_replaces_one_stage_and_refuses_several() {
    let mut one = scenario::parse(VALID, Path::new("scen.toml")).expect("valid");
    one.load
        .set_duration(std::time::Duration::from_secs(7_200))
        .expect("one stage takes --duration");
    assert_eq!(one.load.duration.as_secs(), 7_200);
    assert_eq!(one.load.stages[0].duration.as_secs(), 7_200);
    let staged = VALID.replace(
        "rate_per_sec = 100\nduration = \"2s\"",
        "[[load.stages]]\nrate_per_sec = 100\nduration = \"2s\"\n[[load.stages]]\nrate_per_sec = 200\nduration = \"2s\"",
    );
    let mut two = scenario::parse(&staged, Path::new("scen.toml")).expect("valid stages");
    let e = two
        .load
        .set_duration(std::time::Duration::from_secs(60))
        .expect_err("two stages have no one duration");
    assert!(
        e.contains("--duration") && e.contains("2 [[load.stages]]"),
        "{e}"
    );
    assert_eq!(two.load.duration.as_secs(), 4, "left as the file says");
    assert!(one.load.set_duration(std::time::Duration::ZERO).is_err());
}

#[test]
fn cpus_and_baseline_are_checked_with_their_lines() {
    let e = error_of(&format!(
        "{VALID}[cpus]\ntarget = \"1\"\npostgres = \"3-1\"\n"
    ));
    assert_names(&e, 13, "cpus.postgres");
    assert!(e.contains("backwards"), "{e}");
    let e = error_of(&format!("{VALID}[cpus]\ngenrator = \"1\"\n"));
    assert!(e.contains("genrator"), "{e}");
    // A url target has no database for pgbench to measure.
    let e = error_of(&format!(
        "{VALID}[baseline]\npgbench = {{ clients = 8, seconds = 5 }}\n"
    ));
    assert_names(&e, 12, "baseline.pgbench");
    let api = VALID.replace(
        "kind = \"url\"\nurl = \"http://127.0.0.1:9\"",
        "kind = \"api\"",
    );
    let e = error_of(&format!(
        "{api}[baseline]\npgbench = {{ clients = 0, seconds = 5 }}\n"
    ));
    assert_names(&e, 11, "baseline.pgbench.clients");
    let ok = scenario::parse(
        &format!("{api}[baseline]\npgbench = {{ seconds = 3 }}\n[cpus]\ngenerator = \"0-1\"\n"),
        Path::new("scen.toml"),
    )
    .expect("valid");
    let spec = ok.baseline.expect("a baseline");
    assert_eq!((spec.clients, spec.seconds, spec.threads), (32, 3, None));
    assert_eq!(ok.cpus.generator.map(|c| c.to_string()), Some("0-1".into()));
}

#[test]
fn the_api_ceiling_scenarios_parse_with_a_baseline_and_a_placement() {
    for file in [
        "api-ceiling.toml",
        "api-ceiling-ramp.toml",
        "api-ceiling-mixed.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(file);
        let s = scenario::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(s.baseline.is_some(), "{file}");
        assert!(!s.cpus.is_empty(), "{file}");
        // The ramp asks for the highest arrival rate within a budget; the other two drive the
        // API as pgbench drives PostgreSQL: a closed loop of as many users as its clients.
        if file.contains("ramp") {
            assert!(s.find_max.is_some(), "{file}");
        } else {
            assert!(s.find_max.is_none(), "{file}");
            assert_eq!(s.load.model, scenario::LoadModel::Closed, "{file}");
            let clients = s.baseline.as_ref().map(|b| u64::from(b.clients));
            assert_eq!(Some(s.load.users as u64), clients, "{file}");
        }
        // One knob per variant against the first (the "best" set combines the winners).
        let first = &s.variants[0];
        for v in s.variants[1..].iter().filter(|v| v.name != "best") {
            let changed = v
                .knobs
                .iter()
                .filter(|(k, val)| first.knobs.get(*k) != Some(val))
                .count();
            assert_eq!(changed, 1, "{file}: {} changes {changed} knobs", v.name);
        }
    }
}

#[test]
fn the_hash_covers_the_data_files_a_scenario_reads_and_is_the_files_own_without_any() {
    use sha2::Digest as _;
    let plain = scenario::parse(VALID, Path::new("scen.toml")).expect("valid");
    assert_eq!(
        plain.sha256,
        hex::encode(sha2::Sha256::digest(VALID.as_bytes())),
        "no side files: `sha256sum scen.toml`"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let text = VALID.replace(
        "[[requests]]\nname = \"get\"\npath = \"/api/users/{{user_id}}\"",
        "[[data_files]]\nname = \"accounts\"\npath = \"accounts.csv\"\n\n[[requests]]\nname = \"get\"\npath = \"/api/users/{{accounts.id}}\"",
    );
    assert_ne!(text, VALID);
    let scenario_path = dir.path().join("scen.toml");
    let csv = dir.path().join("accounts.csv");
    let hash_with = |rows: &str| {
        std::fs::write(&csv, rows).expect("write csv");
        scenario::parse(&text, &scenario_path)
            .expect("valid")
            .sha256
    };
    let first = hash_with("id\n1\n2\n");
    assert_eq!(first, hash_with("id\n1\n2\n"), "same inputs, same hash");
    assert_ne!(
        first,
        hash_with("id\n1\n3\n"),
        "a changed data row changes the hash"
    );
    assert_ne!(first, plain.sha256);

    // The same scenario and data elsewhere hash alike (paths as written, not where they are).
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("accounts.csv"), "id\n1\n2\n").expect("write csv");
    let moved = scenario::parse(&text, &other.path().join("scen.toml")).expect("valid");
    assert_eq!(moved.sha256, first);
}
