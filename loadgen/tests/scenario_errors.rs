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
