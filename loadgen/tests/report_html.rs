//! `apibench report DIR` on saved fixture runs, through the real binary: the page holds every
//! section, no URL and no script; bad input exits 2, names the file, and leaves an existing
//! `index.html` as it was.

mod report_support;

use report_support::{apibench, code, copy_fixture, edited_copy, stderr, stdout};
use std::path::Path;

fn report(dir: &Path, extra: &[&str]) -> std::process::Output {
    let dir = dir.display().to_string();
    let mut args = vec!["report", dir.as_str()];
    args.extend_from_slice(extra);
    apibench(&args, &[])
}

#[test]
fn report_holds_every_section_and_no_url_or_script() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-a", tmp.path());
    let out = report(&run, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let index = run.join("index.html");
    assert!(
        stdout(&out).contains(&index.display().to_string()),
        "prints the report path: {}",
        stdout(&out)
    );
    let html = std::fs::read_to_string(&index).expect("index.html written");
    for id in [
        "environment",
        "summary",
        "spectrum",
        "latency-over-time",
        "throughput",
        "resources",
        "requests",
        "generator",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "section {id} missing"
        );
    }
    assert!(
        !html.contains("id=\"drift\""),
        "a run measured for seconds has no drift section"
    );
    // Header facts, and a latency never without its rate.
    for fact in [
        "fixture-pools",
        "Synthetic fixture",
        "0123456789ab",
        "Fixture CPU",
        "PostgreSQL 15.10",
        "local binaries",
        "open model",
        "50 req/s",
    ] {
        assert!(html.contains(fact), "header lacks {fact}");
    }
    assert!(
        html.contains("pool-10 @ 50 req/s"),
        "chart legends carry the rate"
    );
    // Charts: spectrum, p50, p99, throughput, 4 resource charts, with titles and axis units.
    assert!(html.matches("<svg").count() >= 8, "charts are inline SVG");
    for label in [
        "Latency by percentile",
        "99.9 %",
        "latency (ms)",
        "p99 latency per 1 s interval",
        "Throughput per 1 s interval",
        "RSS (MiB)",
        "CPU (% of one core)",
    ] {
        assert!(html.contains(label), "chart text {label} missing");
    }
    // Both request names have a table, and repetitions show their spread.
    assert!(html.contains("get_user") && html.contains("list_posts"));
    assert!(html.contains("class=\"spread\" title=\"min–max over repetitions\""));
    // Self-contained: nothing to fetch, nothing to run.
    let lower = html.to_ascii_lowercase();
    for forbidden in [
        "http://", "https://", "<script", "<link", "<img", "<iframe", "@import", "url(",
    ] {
        assert!(!lower.contains(forbidden), "the page contains {forbidden}");
    }
    // Each variant keeps its colour: the swatch colour appears in the charts too.
    assert!(html.contains("#1f77b4") && html.contains("#ff7f0e"));
    assert!(lower.contains("stroke=\"#1f77b4\"") || lower.contains("rgb(31,119,180)"));
}

/// A fresh copy of fixture run `name` with its report rendered: (the copy's home, the copy, the
/// page).
fn rendered(name: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture(name, tmp.path());
    let out = report(&run, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let html = std::fs::read_to_string(run.join("index.html")).expect("index.html written");
    (tmp, run, html)
}

#[test]
fn invalid_variant_is_flagged_with_its_reason() {
    let (_tmp, run, html) = rendered("run-single");
    assert!(html.contains("pool-50 is INVALID"));
    // The reason as the run wrote it (it names the generator), escaped for HTML.
    let summary: loadgen::results::Summary =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).expect("summary"))
            .expect("json");
    let figures = &summary.variants[1].figures;
    let reason = figures
        .verdict_reason
        .as_deref()
        .or(figures.invalid_reason.as_deref())
        .expect("an invalid variant has a reason");
    assert!(reason.contains("generator"), "{reason}");
    assert!(
        html.contains(&loadgen::report::html::esc(reason)),
        "{reason}"
    );
    assert!(html.contains("class=\"verdict invalid\""));
    assert!(html.contains("no spread known"), "one repetition says so");
}

/// The part of the page from `<section id="{id}"` to its `</section>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..]
        .find("</section>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

#[test]
fn each_verdict_is_shown_with_its_reason_and_the_generator_evidence() {
    let (_tmp, _run, html) = rendered("run-verdicts");

    // Banners and the summary's verdict column: three states, styled apart, each with its reason.
    assert!(html.contains("node-before is INVALID:"), "invalid banner");
    assert!(
        html.contains("rust-n-plus-one is SATURATED:"),
        "saturated banner"
    );
    let summary = section(&html, "summary");
    for (class, reason) in [
        ("verdict invalid", "users exhausted: 64 of 64 busy"),
        ("verdict saturated", "server saturated: "),
        ("verdict valid", "generator healthy: send-lag p99"),
    ] {
        assert!(summary.contains(&format!("class=\"{class}\"")), "{class}");
        assert!(summary.contains(reason), "summary lacks {reason}");
    }
    assert!(summary.contains("<tr class=\"invalid\">"));
    // An invalid variant gives no ratio, and is not the default reference.
    assert!(summary.contains("Ratios are against <strong>rust-n-plus-one</strong>"));
    let invalid_row = &summary[summary.find("<tr class=\"invalid\">").expect("row")..];
    // Up to the verdict cell (whose reason may quote Little's law's "×").
    let invalid_row = &invalid_row[..invalid_row.find("<td class=\"reason\">").expect("row end")];
    assert!(!invalid_row.contains('×'), "{invalid_row}");
    assert_eq!(
        invalid_row.matches("n/a <small").count(),
        2,
        "{invalid_row}"
    );
    assert!(summary.contains("<tr class=\"saturated\">"));
    // Send lag p50 / p99 / max and the probe beside latency; goodput with the drain apart;
    // failed requests' latency apart.
    assert!(summary.contains("send lag p50 / p99 / max"));
    assert!(summary.contains("runtime probe p99"));
    assert!(summary.contains("<th>goodput</th>"));
    assert!(
        summary.contains("drain: "),
        "node-before's tail after the schedule"
    );
    assert!(
        summary.contains("failed: p50"),
        "rust-n-plus-one has errors"
    );

    // The generator self-check: users busy of the maximum, the CPU share of its allowed CPUs.
    let generator = section(&html, "generator");
    assert!(
        generator.contains("64 of 64"),
        "node-before ran out of users"
    );
    assert!(generator.contains("exhausted"));
    assert!(generator.contains("of the 2 CPUs it may use"));

    // The ramp: verdicts, client-limited and bisection stages marked, the ceilings.
    let ramp = section(&html, "ramp");
    assert!(
        ramp.contains("≥ 240 req/s (client-limited at 280, 320)"),
        "lower bound"
    );
    assert!(
        ramp.contains("60 req/s ±10"),
        "exact ceiling with its resolution"
    );
    let stage_row = |rate: &str| {
        let at = ramp
            .find(&format!("<td>{rate} req/s"))
            .unwrap_or_else(|| panic!("no stage {rate}"));
        let from = ramp[..at].rfind("<tr").unwrap_or(0);
        let to = ramp[at..].find("</tr>").map_or(ramp.len(), |e| at + e);
        &ramp[from..to]
    };
    let limited = "<span class=\"stage-mark client-limited\">client-limited</span>";
    let bisection = "<span class=\"bisection\">bisection</span>";
    // rust-tuned: 280/s was added by the bisection and the generator was its bound.
    let row = stage_row("280");
    assert!(row.contains(limited) && row.contains(bisection), "{row}");
    assert!(row.contains("generator-bound, not the server"), "{row}");
    assert!(row.contains("class=\"verdict invalid\""), "{row}");
    let row = stage_row("240");
    assert!(
        row.contains(bisection) && row.contains("<span class=\"ok\">✓</span>"),
        "{row}"
    );
    let row = stage_row("320");
    assert!(row.contains(limited) && !row.contains(bisection), "{row}");
    // rust-n-plus-one: over budget by the server's doing is ✗, not client-limited.
    let row = stage_row("70");
    assert!(
        row.contains("<span class=\"bad\">✗</span>") && row.contains(bisection),
        "{row}"
    );
    assert!(row.contains("class=\"verdict saturated\""), "{row}");
    for column in [
        "send lag p99",
        "target CPU",
        "Postgres CPU",
        "generator CPU",
        "target RSS peak",
    ] {
        assert!(ramp.contains(column), "stage table lacks {column}");
    }

    // The migration: no ratio from the invalid "before", the reason said, the step excluded.
    let migration = section(&html, "migration");
    let table = &migration[..migration.find("</table>").expect("a table")];
    assert!(!table.contains('×') && !table.contains('÷'), "{table}");
    assert!(table.contains("n/a (before invalid)"));
    assert!(migration.contains("before (node-before) is invalid: users exhausted"));
    assert!(migration.contains("Excluded from the attribution"));
    assert!(migration.contains("node-before → rust-n-plus-one (p99): node-before is invalid"));
    // rust-tuned's ceiling is only a lower bound: no throughput bar from it either.
    assert!(migration.contains("rust-tuned&#39;s ceiling is only a lower bound"));

    let lower = html.to_ascii_lowercase();
    for forbidden in ["http://", "https://", "<script", "<link", "<img", "url("] {
        assert!(!lower.contains(forbidden), "the page contains {forbidden}");
    }
}

#[test]
fn reference_flag_sets_the_ratio_base() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    let out = report(&run, &["--reference", "pool-50"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let html = std::fs::read_to_string(run.join("index.html")).expect("index");
    assert!(html.contains("Ratios are against <strong>pool-50</strong>"));

    let out = report(&run, &["--reference", "pool-99"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("pool-99"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pool-10, pool-50"),
        "{}",
        stderr(&out)
    );
}

/// An existing report, then a broken input: exit 2, the file named, the old page untouched.
fn assert_rejected_keeping_old_page(run: &Path, bad_file: &str) {
    let index = run.join("index.html");
    std::fs::write(&index, "previous report").expect("seed index");
    let out = report(run, &[]);
    assert_eq!(code(&out), 2, "stdout: {}", stdout(&out));
    assert!(
        stderr(&out).contains(bad_file),
        "the message names {bad_file}: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&index).expect("index"),
        "previous report",
        "nothing written over"
    );
    let leftovers: Vec<_> = std::fs::read_dir(run)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left behind");
}

#[test]
fn corrupt_summary_exits_2_and_keeps_the_old_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    let summary = run.join("summary.json");
    let text = std::fs::read_to_string(&summary).expect("summary");
    std::fs::write(&summary, &text[..text.len() / 2]).expect("corrupt");
    assert_rejected_keeping_old_page(&run, &summary.display().to_string());
}

#[test]
fn missing_summary_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    std::fs::remove_file(run.join("summary.json")).expect("remove");
    assert_rejected_keeping_old_page(&run, "summary.json");
}

#[test]
fn truncated_latency_log_exits_2_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    let hlog = run.join("pool-10/latency.hlog");
    let bytes = std::fs::read(&hlog).expect("hlog");
    std::fs::write(&hlog, &bytes[..bytes.len() * 2 / 3]).expect("truncate");
    assert_rejected_keeping_old_page(&run, "pool-10/latency.hlog");
}

#[test]
fn latency_log_cut_at_a_line_boundary_is_still_caught() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    let hlog = run.join("pool-50/latency.hlog");
    let text = std::fs::read_to_string(&hlog).expect("hlog");
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[..lines.len() - 6].join("\n") + "\n";
    std::fs::write(&hlog, kept).expect("cut");
    assert_rejected_keeping_old_page(&run, "pool-50/latency.hlog");
}

#[test]
fn corrupt_resources_csv_exits_2_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-single", tmp.path());
    let csv = run.join("pool-10/resources.csv");
    let text = std::fs::read_to_string(&csv).expect("csv");
    std::fs::write(&csv, text.replacen("\n250,", "\n250,lots,", 1)).expect("corrupt");
    assert_rejected_keeping_old_page(&run, "pool-10/resources.csv");
}

#[test]
fn not_a_run_directory_exits_2() {
    let out = apibench(&["report", "/nonexistent/apibench-run"], &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("/nonexistent/apibench-run"));
}

#[test]
fn the_migration_section_appears_when_the_run_names_a_before_and_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = copy_fixture("run-a", tmp.path());
    // Without a before/after pair (variants pool-10 / pool-50, no migration_table): no section.
    let out = report(&run, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let html = std::fs::read_to_string(run.join("index.html")).expect("index.html");
    assert!(!html.contains("id=\"migration\""));

    // Make pool-10 a Node "before" with GC and a ramp, pool-50 the Rust "after".
    let path = run.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    summary["migration_table"] = serde_json::json!({"before": "pool-10", "after": "pool-50"});
    let stage = |rate: f64, p99_us: u64, ok: bool| {
        serde_json::json!({"rate_per_sec": rate, "achieved_rps": rate, "p99_us": p99_us,
            "requests": 1000, "error_rate": 0.0, "generator_valid": true, "within_budget": ok})
    };
    let variants = summary["variants"].as_array_mut().expect("variants");
    variants[0]["target_kind"] = "node".into();
    variants[0]["gc_pause_total_ms"] = 123.4.into();
    variants[0]["gc_pauses"] = 56.into();
    variants[0]["max_sustainable_rps"] = 200.0.into();
    variants[0]["stages"] =
        serde_json::json!([stage(200.0, 9_000, true), stage(400.0, 90_000, false)]);
    variants[1]["max_sustainable_rps"] = 800.0.into();
    variants[1]["stages"] = serde_json::json!([
        stage(200.0, 2_000, true),
        stage(400.0, 3_000, true),
        stage(800.0, 6_000, true),
        stage(1600.0, 70_000, false)
    ]);
    std::fs::write(&path, summary.to_string()).expect("write");

    let out = report(&run, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let html = std::fs::read_to_string(run.join("index.html")).expect("index.html");
    assert!(
        html.contains("id=\"migration\""),
        "migration section missing"
    );
    for fact in [
        "Migration: pool-10 → pool-50",
        "throughput (max sustainable)",
        "200 req/s",
        "800 req/s",
        "×4.0",
        "20x",
        "200 ms → 8 ms",
        "500 MB → 50 MB",
        "123.4 ms in 56 pauses",
        "none (no GC)",
        "no GC pauses",
        "Attribution",
        "→ pool-50",
        "total",
    ] {
        assert!(html.contains(fact), "migration section lacks {fact}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

/// Writes a sparse soak log to `path`: 100 successes every 30 s over `warmup_s` + 35 minutes,
/// 2–3 ms with a 20 ms tail, twice as slow in the last 5 minutes.
fn write_soak_log(path: &Path, warmup_s: u64) {
    use loadgen::recorder::{Recording, Sample};
    let mut recording = Recording::new(&["get_user".to_string(), "list_posts".to_string()]);
    for interval in (0..warmup_s + 35 * 60).step_by(30) {
        let slow = if interval >= warmup_s + 30 * 60 { 2 } else { 1 };
        for k in 0..100u64 {
            let latency_us = slow * (2_000 + (k % 10) * 100 + u64::from(k % 50 == 49) * 18_000);
            let completed_offset_us = interval * 1_000_000 + k * 5_000;
            let in_warmup = interval < warmup_s;
            recording.record(&Sample::success(
                0,
                latency_us,
                completed_offset_us,
                in_warmup,
                40,
            ));
        }
    }
    let mut bytes = Vec::new();
    recording
        .write_hlog(&mut bytes, std::time::SystemTime::UNIX_EPOCH, "soak")
        .expect("hlog");
    std::fs::write(path, bytes).expect("write hlog");
}

#[test]
fn a_soak_run_shows_its_drift_per_ten_minutes_and_its_memory_slopes() {
    const WARMUP_S: u64 = 30;
    let tmp = tempfile::tempdir().expect("tempdir");
    // run-single (pool-10, pool-50) stretched to a 35-minute measured window: its logs
    // rewritten, the target leaking 48 MiB/h, apibench flat.
    let run = edited_copy("run-single", tmp.path(), "soak", |m| {
        m["warmup_ms"] = (WARMUP_S * 1000).into();
        m["measured_duration_ms"] = (35 * 60 * 1000).into();
        // No count for the log to be checked against (it is sparse).
        m["errors"] = 0.into();
        m["requests"] = 0.into();
    });
    for variant in ["pool-10", "pool-50"] {
        write_soak_log(&run.join(variant).join("latency.hlog"), WARMUP_S);
        let mut csv = format!("{}\n", loadgen::sampler::CSV_HEADER);
        for i in 1..=(WARMUP_S + 35 * 60) * 4 {
            let target_rss_bytes = (200 << 20) + i * 250 * (48 << 20) / 3_600_000;
            let cells: Vec<String> = loadgen::sampler::CSV_HEADER
                .split(',')
                .map(|column| match column {
                    "elapsed_ms" => (i * 250).to_string(),
                    "target_rss_bytes" => target_rss_bytes.to_string(),
                    "generator_rss_bytes" => (30u64 << 20).to_string(),
                    _ => String::new(),
                })
                .collect();
            csv.push_str(&cells.join(","));
            csv.push('\n');
        }
        std::fs::write(run.join(variant).join("resources.csv"), csv).expect("write csv");
    }
    let out = report(&run, &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let html = std::fs::read_to_string(run.join("index.html")).expect("index.html written");
    let drift = section(&html, "drift");
    assert!(drift.contains("Drift over time (soak)"));
    assert_eq!(drift.matches("<h3>").count(), 2, "one per variant");
    assert_eq!(
        drift.matches("<tr><td>").count(),
        2 * (4 + 2),
        "4 blocks, 2 processes"
    );
    assert!(
        drift.contains("<td>0:30 – 10:30</td>"),
        "blocks from the warm-up's end"
    );
    assert!(
        drift.contains("4<small class=\"spread\">partial: 5 min</small>"),
        "the last 5 minutes, marked partial"
    );
    assert!(drift.contains("1.00× (reference)"));
    assert!(
        drift.contains("2.00× (+20.9 ms)"),
        "the last block's p99 doubled: {drift}"
    );
    assert!(drift.contains("latency degrades as the run goes on"));
    assert!(drift.contains("+48.0 MiB/h"), "the slope put in: {drift}");
    assert!(drift.contains("rising: a leak, or a cache still warming"));
    assert!(
        drift.contains("flat: as it should be"),
        "apibench's own RSS"
    );
    // After the resources charts, as the page reads: memory over time, then its drift.
    assert!(html.find("id=\"resources\"") < html.find("id=\"drift\""));
}
