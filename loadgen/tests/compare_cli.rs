//! `apibench compare A B` on the fixture runs, through the real binary. Run B shortened
//! pool-10's tail (improved), lengthened pool-50's (regressed) and left medians and throughput
//! alone (within noise); both have 3 repetitions, `run-single` has none.

mod report_support;

use report_support::{apibench, code, fixtures_dir, stderr, stdout};
use serde_json::Value;

fn run(name: &str) -> String {
    fixtures_dir().join(name).display().to_string()
}

fn compare_json(a: &str, b: &str) -> Value {
    let out = apibench(&["compare", &run(a), &run(b), "--format", "json"], &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("compare --format json prints JSON")
}

fn figure<'a>(c: &'a Value, variant: &str, figure: &str) -> &'a Value {
    c["variants"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == variant))
        .and_then(|v| v["figures"].as_array())
        .and_then(|fs| fs.iter().find(|f| f["figure"] == figure))
        .unwrap_or_else(|| panic!("{variant} {figure} missing in {c:#}"))
}

#[test]
fn json_verdicts_are_noise_aware() {
    let c = compare_json("run-a", "run-b");
    let p99 = figure(&c, "pool-10", "p99_us");
    assert_eq!(p99["verdict"], "improved", "{p99:#}");
    assert_eq!(p99["noise_estimated"], true);
    assert_eq!(p99["better"], "lower");
    assert!(p99["ratio"].as_f64().is_some_and(|r| r < 0.8), "{p99:#}");
    assert_eq!(p99["a"]["n"], 3, "each repetition's figure counts");

    assert_eq!(figure(&c, "pool-50", "p99_us")["verdict"], "regressed");
    assert_eq!(
        figure(&c, "pool-10", "throughput_rps")["verdict"],
        "within_noise"
    );
    assert_eq!(figure(&c, "pool-10", "throughput_rps")["better"], "higher");
    assert_eq!(figure(&c, "pool-10", "p50_us")["verdict"], "within_noise");
    assert_eq!(
        figure(&c, "pool-10", "target_rss_peak_bytes")["verdict"],
        "within_noise"
    );
    // Latencies come with their rates, and request names are compared too.
    let pool10 = &c["variants"][0];
    assert_eq!(pool10["a_target_rate_per_sec"], 50.0);
    assert_eq!(pool10["b_target_rate_per_sec"], 50.0);
    let requests: Vec<&str> = pool10["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(requests, ["get_user", "list_posts"]);
}

#[test]
fn a_huge_threshold_calls_nothing() {
    let out = apibench(
        &[
            "compare",
            &run("run-a"),
            &run("run-b"),
            "--format",
            "json",
            "--threshold",
            "500%",
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let c: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(figure(&c, "pool-50", "p99_us")["verdict"], "within_noise");
}

#[test]
fn without_repetitions_the_verdict_says_it_has_no_noise_estimate() {
    let c = compare_json("run-a", "run-single");
    assert_eq!(figure(&c, "pool-10", "p99_us")["noise_estimated"], false);

    let out = apibench(&["compare", &run("run-a"), &run("run-single")], &[]);
    let text = stdout(&out);
    assert!(text.contains("no noise estimate"), "{text}");
    assert!(text.contains("B has no repetitions"), "{text}");
    assert!(
        text.contains("B is INVALID"),
        "the invalid variant is called out: {text}"
    );
}

#[test]
fn text_output_is_a_table_with_directions_rates_and_verdicts() {
    let out = apibench(&["compare", &run("run-a"), &run("run-b")], &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "pool-10 — open model; A at 50.0 req/s, B at 50.0 req/s",
        "figure",
        "B/A",
        "improved",
        "regressed",
        "within noise",
        "lower",
        "higher",
        "get_user p99",
        "lower is better",
        "higher is better",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let p99_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("p99 "))
        .expect("a p99 row");
    assert!(p99_line.contains("ms ("), "median with spread: {p99_line}");
}

#[test]
fn markdown_output_has_a_table_per_variant() {
    let out = apibench(
        &["compare", &run("run-a"), &run("run-b"), "--format", "md"],
        &[],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let md = stdout(&out);
    assert!(md.starts_with("## apibench compare"));
    assert_eq!(
        md.matches("| figure | better | A | B | B/A | verdict |")
            .count(),
        2
    );
    assert!(md.contains("### pool-50"));
    assert!(md.contains("| regressed |"));
}

#[test]
fn a_missing_run_exits_2_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = apibench(
        &["compare", &run("run-a"), &tmp.path().display().to_string()],
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("summary.json"), "{}", stderr(&out));
}
