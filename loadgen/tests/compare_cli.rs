//! `apibench compare A B` on the fixture runs, through the real binary. Run B shortened
//! pool-10's tail (improved), lengthened pool-50's (regressed) and left medians and throughput
//! alone (within noise); both have 3 repetitions (the repetitions bootstrap), `run-single` has
//! one (the interval bootstrap). Synthetic runs written here give the interval bootstrap a
//! known answer; copies with edited summaries cover goodput and different target rates.

mod report_support;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use rand::{Rng, SeedableRng, rngs::StdRng};
use report_support::{apibench, code, copy_fixture, edited_copy, fixtures_dir, stderr, stdout};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn run(name: &str) -> String {
    fixtures_dir().join(name).display().to_string()
}

fn compare_json(a: &str, b: &str) -> Value {
    compare_paths_json(&run(a), &run(b), &[])
}

fn compare_paths_json(a: &str, b: &str, flags: &[&str]) -> Value {
    let mut args = vec!["compare", a, b, "--format", "json"];
    args.extend_from_slice(flags);
    let out = apibench(&args, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("compare --format json prints JSON")
}

const SYNTHETIC_WARMUP_S: u64 = 2;
const SYNTHETIC_MEASURED_S: u64 = 30;
const SYNTHETIC_PER_SEC: u64 = 200;

/// One 1 s interval of latencies around 2 ms × `scale`, roughly log-normal.
fn synthetic_interval(rng: &mut StdRng, scale: f64) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for _ in 0..SYNTHETIC_PER_SEC {
        let u1: f64 = rng.r#gen::<f64>().max(1e-12);
        let u2: f64 = rng.r#gen();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        h.record((2_000.0 * (0.35 * z).exp() * scale).round() as u64)
            .expect("in range");
    }
    h
}

/// A latency log of 2 s of warm-up and 30 full 1 s intervals drawn (seeded) around
/// 2 ms × `scale`, and its measured intervals merged.
fn synthetic_log(rng: &mut StdRng, scale: f64) -> (Vec<u8>, Histogram<u64>) {
    let mut log = Vec::new();
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .with_start_time(SystemTime::UNIX_EPOCH)
        .with_max_value_divisor(1_000.0);
    let mut writer = builder
        .begin_log_with(&mut log, &mut serializer)
        .expect("log");
    for second in 0..SYNTHETIC_WARMUP_S + SYNTHETIC_MEASURED_S {
        let h = synthetic_interval(rng, scale);
        if second >= SYNTHETIC_WARMUP_S {
            merged.add(&h).expect("same bounds");
        }
        writer
            .write_histogram(
                &h,
                Duration::from_secs(second),
                Duration::from_secs(1),
                None,
            )
            .expect("interval");
    }
    drop(writer);
    (log, merged)
}

/// A copy of `run-single` whose latency logs are [`synthetic_log`]s, with the summary's figures
/// set from them as the runner would: a run whose noise is known.
fn synthetic_run(into: &Path, label: &str, seed: u64, scale: f64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    // run-single's logs, one per variant.
    let logs: Vec<(&str, Vec<u8>, Histogram<u64>)> =
        ["pool-10/latency.hlog", "pool-50/latency.hlog"]
            .into_iter()
            .map(|path| {
                let (log, merged) = synthetic_log(&mut rng, scale);
                (path, log, merged)
            })
            .collect();
    let dir = edited_copy("run-single", into, label, |m| {
        let path = m["files"]["latency_hlog"].as_str().expect("hlog path");
        let (_, _, merged) = logs
            .iter()
            .find(|(p, _, _)| *p == path)
            .unwrap_or_else(|| panic!("run-single has a log at {path}"));
        m["warmup_ms"] = (SYNTHETIC_WARMUP_S * 1000).into();
        m["measured_duration_ms"] = (SYNTHETIC_MEASURED_S * 1000).into();
        m["goodput_rps"] = (SYNTHETIC_PER_SEC as f64).into();
        for (key, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            m["latency_us"][key] = merged.value_at_quantile(q).into();
        }
    });
    for (path, log, _) in &logs {
        std::fs::write(dir.join(path), log).expect("write log");
    }
    dir.display().to_string()
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
    assert_eq!(p99["noise_estimate"], "repetitions");
    assert_eq!(p99["noise_estimated"], true);
    assert_eq!(p99["better"], "lower");
    assert!(p99["ratio"].as_f64().is_some_and(|r| r < 0.8), "{p99:#}");
    assert!(
        p99["ci_high"].as_f64().is_some_and(|high| high < 0.95),
        "the whole interval is below 1 − 5 %: {p99:#}"
    );
    assert_eq!(p99["a"]["n"], 3, "each repetition's figure counts");

    let regressed = figure(&c, "pool-50", "p99_us");
    assert_eq!(regressed["verdict"], "regressed");
    assert!(
        regressed["ci_low"].as_f64().is_some_and(|low| low > 1.05),
        "{regressed:#}"
    );
    let goodput = figure(&c, "pool-10", "goodput_rps");
    assert_eq!(goodput["verdict"], "within_noise");
    assert_eq!(goodput["better"], "higher");
    assert_eq!(goodput["label"], "goodput");
    // p50 moved by up to 10 % between repetitions: its interval reaches inside 1 ± 5 %.
    let p50 = figure(&c, "pool-10", "p50_us");
    assert_eq!(p50["verdict"], "within_noise");
    let (low, high) = (
        p50["ci_low"].as_f64().expect("ci_low"),
        p50["ci_high"].as_f64().expect("ci_high"),
    );
    assert!(low < 1.05 && high > 0.95, "[{low}, {high}]");
    assert!(p50["p_value"].as_f64().is_some_and(|p| p > 0.05), "{p50:#}");
    // Every figure of the invocation is one family for Holm's correction.
    assert_eq!(c["alpha"], 0.05);
    assert!(
        c["figures_tested"].as_u64().is_some_and(|n| n >= 20),
        "{}",
        c["figures_tested"]
    );
    let level = p99["ci_level"].as_f64().expect("ci_level");
    assert!(level > 0.998, "the smallest p is read at 0.05 / m: {level}");
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
fn without_repetitions_on_both_sides_the_intervals_estimate_the_noise() {
    let c = compare_json("run-a", "run-single");
    let p99 = figure(&c, "pool-10", "p99_us");
    assert_eq!(p99["noise_estimate"], "intervals", "{p99:#}");
    assert_eq!(p99["noise_estimated"], true);
    assert!(p99["ci_low"].as_f64().is_some() && p99["ci_high"].as_f64().is_some());
    // Per-request figures have no interval log: the threshold alone decides, and says so.
    let per_request = c["variants"][0]["requests"][0]["figures"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["figure"] == "p99_us"))
        .expect("a per-request p99");
    assert_eq!(per_request["noise_estimate"], "none");
    assert_eq!(per_request["ci_low"], Value::Null);

    let out = apibench(&["compare", &run("run-a"), &run("run-single")], &[]);
    let text = stdout(&out);
    assert!(text.contains("no noise estimate"), "{text}");
    assert!(text.contains("B has no repetitions"), "{text}");
    assert!(text.contains("† noise from the 1 s intervals"), "{text}");
    assert!(
        text.contains("B is INVALID"),
        "the invalid variant is called out: {text}"
    );
}

#[test]
fn runs_without_an_interval_log_have_no_noise_estimate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = copy_fixture("run-single", tmp.path());
    for variant in ["pool-10", "pool-50"] {
        std::fs::remove_file(old.join(variant).join("latency.hlog")).expect("remove log");
    }
    let c = compare_paths_json(&run("run-a"), &old.display().to_string(), &[]);
    let p99 = figure(&c, "pool-10", "p99_us");
    assert_eq!(p99["noise_estimate"], "none", "{p99:#}");
    assert_eq!(c["figures_tested"], 0);
}

#[test]
fn interval_bootstrap_on_synthetic_runs_finds_the_known_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = synthetic_run(tmp.path(), "a", 1, 1.0);
    let same = synthetic_run(tmp.path(), "same", 2, 1.0);
    let slower = synthetic_run(tmp.path(), "slower", 3, 1.3);
    let threshold = ["--threshold", "10%"];

    // Drawn from the same distribution: within noise, and the interval holds 1.
    let c = compare_paths_json(&a, &same, &threshold);
    for key in ["p50_us", "p99_us", "goodput_rps"] {
        let f = figure(&c, "pool-10", key);
        assert_eq!(f["verdict"], "within_noise", "{key}: {f:#}");
        assert_eq!(f["noise_estimate"], "intervals", "{key}");
        let (low, high) = (
            f["ci_low"].as_f64().expect("ci_low"),
            f["ci_high"].as_f64().expect("ci_high"),
        );
        assert!(low <= 1.0 && 1.0 <= high, "{key}: [{low}, {high}]");
    }

    // Every latency 30 % higher: regressed, and the whole interval is above 1.10.
    let c = compare_paths_json(&a, &slower, &threshold);
    for key in ["p50_us", "p99_us"] {
        let f = figure(&c, "pool-10", key);
        assert_eq!(f["verdict"], "regressed", "{key}: {f:#}");
        assert!(
            f["ci_low"].as_f64().is_some_and(|low| low > 1.10),
            "{key}: {f:#}"
        );
    }
    assert_eq!(
        figure(&c, "pool-10", "goodput_rps")["verdict"],
        "within_noise"
    );

    // The same call, reproducibly, with the interval in the text table's B/A column.
    let again = compare_paths_json(&a, &slower, &threshold);
    assert_eq!(
        c["variants"], again["variants"],
        "seeded: the same answer twice"
    );
    let out = apibench(&["compare", &a, &slower, "--threshold", "10%"], &[]);
    let p50_line = stdout(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("p50 "))
        .map(str::to_string)
        .expect("a p50 row");
    assert!(
        p50_line.contains("× [") && p50_line.contains("regressed†"),
        "{p50_line}"
    );
}

#[test]
fn goodput_is_the_throughput_figure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let half = edited_copy("run-single", tmp.path(), "b", |m| {
        m["goodput_rps"] = 25.0.into();
    });
    // Files written before goodput existed fall back to the throughput.
    let old = edited_copy("run-single", tmp.path(), "a", |m| {
        m["goodput_rps"] = Value::Null;
        m["throughput_rps"] = 60.0.into();
    });
    let c = compare_paths_json(&old.display().to_string(), &half.display().to_string(), &[]);
    let goodput = figure(&c, "pool-10", "goodput_rps");
    assert_eq!(goodput["b"]["median"], 25.0, "{goodput:#}");
    assert_eq!(goodput["a"]["median"], 60.0, "{goodput:#}");
    assert!(
        !c["variants"][0]["figures"]
            .as_array()
            .expect("figures")
            .iter()
            .any(|f| f["figure"] == "throughput_rps"),
        "no second throughput figure"
    );
}

#[test]
fn runs_at_different_target_rates_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faster = edited_copy("run-single", tmp.path(), "faster", |m| {
        m["target_rate_per_sec"] = 100.0.into();
    });
    let faster = faster.display().to_string();
    let out = apibench(&["compare", &run("run-single"), &faster], &[]);
    assert_eq!(code(&out), 2, "stdout: {}", stdout(&out));
    let err = stderr(&out);
    for needle in [
        "variant pool-10",
        "A ran at 50.0 req/s",
        "B at 100.0 req/s",
        "--allow-different-rates",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(stdout(&out).is_empty(), "no comparison on refusal");

    let out = apibench(
        &[
            "compare",
            &run("run-single"),
            &faster,
            "--allow-different-rates",
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("target rates differ (A 50.0 req/s, B 100.0 req/s)"),
        "{}",
        stdout(&out)
    );

    // Within 1 % is the same rate.
    let close = edited_copy("run-single", tmp.path(), "close", |m| {
        m["target_rate_per_sec"] = 50.4.into();
    });
    let out = apibench(
        &["compare", &run("run-single"), &close.display().to_string()],
        &[],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
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
        "goodput",
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
    assert!(
        p99_line.contains("× [") && p99_line.contains("]"),
        "ratio with its interval: {p99_line}"
    );
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
