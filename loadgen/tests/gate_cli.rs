//! `apibench gate` through the real binary: its three exit codes (0 pass, 1 fail, 2 bad input),
//! the per-check lines, invalid runs, baselines (bootstrap intervals, goodput, target rates),
//! JUnit XML and the GitHub step summary.

mod report_support;

use report_support::{
    apibench, code, copy_fixture, edited_copy, fixtures_dir, stderr, stdout, write,
};

fn run(name: &str) -> String {
    fixtures_dir().join(name).display().to_string()
}

/// The output line of `variant`'s `check`.
fn line_of(text: &str, variant: &str, check: &str) -> String {
    text.lines()
        .find(|l| l.contains(&format!(" {variant} ")) && l.contains(check))
        .unwrap_or_else(|| panic!("no {variant} {check} line in\n{text}"))
        .to_string()
}

/// Limits every fixture run meets.
const GENEROUS: &str = "\
# generous: every fixture run passes
[[budget]]
variant = \"*\"
p50_ms = 20
p99_ms = 200
p999_ms = 500
error_rate = 0.05
min_throughput_rps = 40
max_rss_mib = 512

[[budget]]
variant = \"pool-?0\"
request = \"get_user\"
p99_ms = 100
";

#[test]
fn a_run_within_budget_passes_with_one_line_per_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(
        code(&out),
        0,
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    // Per variant: valid + 6 limits + 1 request limit.
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("PASS"))
            .count(),
        16,
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("gate: PASS"), "{text}");
    let p99 = text
        .lines()
        .find(|l| l.contains("pool-10") && l.contains(" p99_ms "))
        .expect("a p99 line");
    assert!(
        p99.contains(" ms") && p99.contains("≤ 200.000 ms") && p99.contains("budgets.toml:2"),
        "{p99}"
    );
    assert!(
        text.contains("pool-10 get_user"),
        "request budgets name the request: {text}"
    );
    assert!(
        text.contains("open model at 50.0 req/s"),
        "latency with its rate: {text}"
    );
    assert!(
        line_of(&text, "pool-10", "min_throughput_rps").contains("50.0 req/s goodput"),
        "{text}"
    );
}

#[test]
fn the_throughput_budget_limits_goodput() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    // 50 req/s completed, but only 30 of them successfully inside the window.
    let failing = edited_copy("run-a", tmp.path(), "b", |m| {
        m["goodput_rps"] = 30.0.into();
    });
    let out = apibench(
        &[
            "gate",
            &failing.display().to_string(),
            "--budgets",
            &budgets,
        ],
        &[],
    );
    assert_eq!(code(&out), 1, "stdout: {}", stdout(&out));
    let line = line_of(&stdout(&out), "pool-10", "min_throughput_rps");
    assert!(line.trim_start().starts_with("FAIL"), "{line}");
    assert!(
        line.contains("30.0 req/s goodput") && line.contains("≥ 40.0 req/s"),
        "{line}"
    );
}

#[test]
fn a_run_over_budget_fails_with_exit_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"pool-50\"\np99_ms = 1\nmin_throughput_rps = 10\n",
    );
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(
        code(&out),
        1,
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let failing = text
        .lines()
        .find(|l| l.trim_start().starts_with("FAIL"))
        .expect("a FAIL line");
    assert!(
        failing.contains("p99_ms") && failing.contains("≤ 1.000 ms"),
        "{failing}"
    );
    assert!(text.contains("PASS  pool-50  min_throughput_rps"), "{text}");
    assert!(text.contains("gate: FAIL — 1 of"), "{text}");
}

#[test]
fn an_invalid_run_fails_with_its_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let out = apibench(&["gate", &run("run-single"), "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 1, "stdout: {}", stdout(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains("FAIL") && l.contains("valid"))
        .map(str::to_string)
        .expect("a failed validity check");
    assert!(
        line.contains("pool-50") && line.contains("INVALID"),
        "{line}"
    );
    assert!(
        line.contains("generator-bound"),
        "the reason is given: {line}"
    );
}

#[test]
fn budgets_that_do_not_parse_exit_2_with_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"*\"\np99_ms = = 8\n",
    );
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("{budgets}:3:")),
        "file:line:col: {}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no verdict on bad input");
}

#[test]
fn an_unknown_budget_field_exits_2_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"*\"\np99_ms = 8\np95_ms = 5\n",
    );
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{budgets}:4:")), "{err}");
    assert!(err.contains("p95_ms"), "{err}");
}

#[test]
fn a_budget_matching_no_variant_or_request_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"*\"\np99_ms = 100\n\n[[budget]]\nvariant = \"node*\"\np99_ms = 8\n",
    );
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("{budgets}:5:")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("node*"), "{}", stderr(&out));

    let budgets = write(
        tmp.path(),
        "requests.toml",
        "[[budget]]\nrequest = \"delete_user\"\np99_ms = 8\n",
    );
    let out = apibench(&["gate", &run("run-a"), "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("delete_user"), "{}", stderr(&out));
}

#[test]
fn missing_or_corrupt_results_exit_2_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = apibench(
        &["gate", &empty.display().to_string(), "--budgets", &budgets],
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("summary.json"), "{}", stderr(&out));

    let copy = copy_fixture("run-a", tmp.path());
    std::fs::write(copy.join("summary.json"), "{\"schema_version\": 1,").expect("corrupt");
    let out = apibench(
        &["gate", &copy.display().to_string(), "--budgets", &budgets],
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&copy.join("summary.json").display().to_string()),
        "{}",
        stderr(&out)
    );

    let out = apibench(
        &[
            "gate",
            &run("run-a"),
            "--budgets",
            &tmp.path().join("nope.toml").display().to_string(),
        ],
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
}

#[test]
fn a_baseline_fails_regressions_beyond_noise_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let out = apibench(
        &[
            "gate",
            &run("run-b"),
            "--budgets",
            &budgets,
            "--baseline",
            &run("run-a"),
        ],
        &[],
    );
    assert_eq!(code(&out), 1, "stdout: {}", stdout(&out));
    let text = stdout(&out);
    let line = |variant: &str, check: &str| line_of(&text, variant, check);
    assert!(
        line("pool-50", "p99 vs baseline")
            .trim_start()
            .starts_with("FAIL")
    );
    let regressed = line("pool-50", "p99 vs baseline");
    assert!(regressed.contains("regressed"), "{regressed}");
    assert!(
        regressed.contains("× [") && regressed.contains("bootstrap over repetitions"),
        "the ratio with its interval and where the noise came from: {regressed}"
    );
    assert!(line("pool-10", "goodput vs baseline").contains("within noise"));
    assert!(
        line("pool-10", "p99 vs baseline")
            .trim_start()
            .starts_with("PASS")
    );
    assert!(line("pool-10", "p99 vs baseline").contains("improved"));
    assert!(line("pool-10", "p50 vs baseline").contains("within noise"));

    // The same run against itself never regresses.
    let out = apibench(
        &[
            "gate",
            &run("run-a"),
            "--budgets",
            &budgets,
            "--baseline",
            &run("run-a"),
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "stdout: {}", stdout(&out));
}

#[test]
fn one_run_against_another_uses_the_interval_bootstrap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"*\"\nerror_rate = 1\n",
    );
    let out = apibench(
        &[
            "gate",
            &run("run-single"),
            "--budgets",
            &budgets,
            "--baseline",
            &run("run-single"),
        ],
        &[],
    );
    let text = stdout(&out);
    let p99 = line_of(&text, "pool-10", "p99 vs baseline");
    assert!(p99.trim_start().starts_with("PASS"), "{p99}");
    assert!(
        p99.contains("within noise (block bootstrap over 1 s intervals"),
        "{p99}"
    );
    assert!(p99.contains("1.00× ["), "{p99}");
}

#[test]
fn a_baseline_at_a_different_target_rate_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let faster = edited_copy("run-a", tmp.path(), "faster", |m| {
        m["target_rate_per_sec"] = 80.0.into();
    });
    let faster = faster.display().to_string();
    let args = [
        "gate",
        &faster,
        "--budgets",
        &budgets,
        "--baseline",
        &run("run-a"),
    ];
    let out = apibench(&args, &[]);
    assert_eq!(code(&out), 2, "stdout: {}", stdout(&out));
    let err = stderr(&out);
    for needle in [
        "variant pool-10",
        "the baseline ran at 50.0 req/s",
        "this run at 80.0 req/s",
        "--allow-different-rates",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(stdout(&out).is_empty(), "no verdict on refusal");

    let mut allowed = args.to_vec();
    allowed.push("--allow-different-rates");
    let out = apibench(&allowed, &[]);
    assert_eq!(code(&out), 0, "stdout: {}", stdout(&out));
    assert!(
        line_of(&stdout(&out), "pool-10", "p99 vs baseline")
            .contains("target rates differ (A 50.0 req/s, B 80.0 req/s)"),
        "{}",
        stdout(&out)
    );

    // Without a baseline there is nothing to compare and no refusal.
    let out = apibench(&["gate", &faster, "--budgets", &budgets], &[]);
    assert_eq!(code(&out), 0, "stdout: {}", stdout(&out));
}

/// A small well-formedness check: tags nest and close, attributes are quoted, `&` starts an
/// entity. Enough for what the gate writes (no CDATA, no comments).
fn assert_well_formed_xml(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "stray '>' in text: {text}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {text}"
            );
        }
        let end = rest[start..].find('>').expect("tag closes") + start;
        let tag = &rest[start + 1..end];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("tag name").to_string();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(rest.trim().is_empty(), "text after the root: {rest}");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn junit_xml_is_well_formed_with_one_case_per_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(
        tmp.path(),
        "budgets.toml",
        "[[budget]]\nvariant = \"*\"\np99_ms = 12\nerror_rate = 0.01\n",
    );
    let junit = tmp.path().join("gate.xml");
    let out = apibench(
        &[
            "gate",
            &run("run-single"),
            "--budgets",
            &budgets,
            "--junit",
            &junit.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code(&out), 1, "stdout: {}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert_well_formed_xml(&xml);
    let checks = stdout(&out)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("PASS") || t.starts_with("FAIL")
        })
        .count();
    let failures = stdout(&out)
        .lines()
        .filter(|l| l.trim_start().starts_with("FAIL"))
        .count();
    assert_eq!(xml.matches("<testcase ").count(), checks);
    assert_eq!(xml.matches("<failure ").count(), failures);
    assert!(xml.contains(&format!("tests=\"{checks}\" failures=\"{failures}\"")));
    assert!(
        xml.contains("generator-bound"),
        "the invalid reason is in the XML"
    );
}

#[test]
fn the_github_step_summary_gets_a_markdown_section_appended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let budgets = write(tmp.path(), "budgets.toml", GENEROUS);
    let summary = tmp.path().join("step_summary.md");
    std::fs::write(&summary, "earlier step\n").expect("seed");
    let out = apibench(
        &["gate", &run("run-a"), "--budgets", &budgets],
        &[("GITHUB_STEP_SUMMARY", &summary.display().to_string())],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let md = std::fs::read_to_string(&summary).expect("summary");
    assert!(
        md.starts_with("earlier step\n"),
        "appended, not overwritten"
    );
    assert!(md.contains("## apibench gate: ✅ PASS"), "{md}");
    assert!(md.contains("| | check | value | limit | note |"), "{md}");
    assert!(md.contains("pool-50 p99_ms"), "{md}");
}
