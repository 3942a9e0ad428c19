//! The report in a real browser: headless Chromium loads a fixture run's `index.html`, takes a
//! screenshot that must not be blank, and its network log must show no request made by the page.
//! Chromium itself phones home (update checks, network time) even with background networking
//! off; those requests have no initiator, while a page's carry its `file://` origin — the test
//! tells them apart and proves it can, on a control page that does fetch.
//!
//! Without `chromium` the test fails under CI (`CI=true`, where `.ci/run` installs it) and is
//! skipped with a printed reason elsewhere. `APIBENCH_SCREENSHOT=path.png` keeps the screenshot
//! (that is how `docs/report.png` is made).

mod report_support;

use report_support::{apibench, code, copy_fixture, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// Decodes a PNG into (width, height, RGBA-or-RGB rows) and says whether it has content: more
/// than one colour in a meaningful share of its pixels.
fn distinct_colours(png_path: &Path) -> (u32, u32, usize, f64) {
    let file = std::fs::File::open(png_path).expect("screenshot exists");
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame decodes");
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashMap::<[u8; 3], usize>::new();
    for px in bytes.chunks_exact(channels) {
        let rgb = [px[0], px[1.min(channels - 1)], px[2.min(channels - 1)]];
        *colours.entry(rgb).or_default() += 1;
    }
    let total = bytes.len() / channels;
    let most = colours.values().copied().max().unwrap_or(0);
    let not_background = 1.0 - most as f64 / total.max(1) as f64;
    (info.width, info.height, colours.len(), not_background)
}

/// Loads `page` headless; returns the screenshot's path and the URLs the page itself requested.
fn load_in_chromium(
    chromium: &Path,
    page: &Path,
    work: &Path,
    size: &str,
) -> (PathBuf, Vec<String>) {
    let name = page
        .file_stem()
        .map_or("page".into(), |s| s.to_string_lossy().into_owned());
    let screenshot = work.join(format!("{name}.png"));
    let net_log = work.join(format!("{name}-netlog.json"));
    let profile = work.join(format!("{name}-profile"));
    let browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        browser.status.success() && screenshot.is_file(),
        "chromium failed: {}",
        String::from_utf8_lossy(&browser.stderr)
    );
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&net_log).expect("net log written"))
            .expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the net log names its event types");
    let events = log["events"].as_array().expect("net log events");
    let page_requests = events
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| {
            let p = &e["params"];
            let initiated_by_page = p["initiator"].as_str() != Some("not an origin")
                || p["network_isolation_key"]
                    .as_str()
                    .is_some_and(|k| k.contains("file://"));
            let url = p["url"].as_str().unwrap_or("");
            initiated_by_page && !url.starts_with("file:")
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect();
    (screenshot, page_requests)
}

#[test]
fn report_renders_in_headless_chromium_without_network() {
    let Some(chromium) = find_chromium() else {
        let reason = "chromium is not installed (apt-get install chromium)";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{reason}: CI must run the browser check");
        }
        eprintln!("SKIPPED report_renders_in_headless_chromium_without_network: {reason}");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");

    // The detector sees a page's own requests (or this test could never fail).
    let control = tmp.path().join("control.html");
    std::fs::write(
        &control,
        "<html><body><img src=\"http://127.0.0.1:9/pixel.png\"></body></html>",
    )
    .expect("control page");
    let (_, control_requests) = load_in_chromium(&chromium, &control, tmp.path(), "400,300");
    assert_eq!(control_requests, ["http://127.0.0.1:9/pixel.png"]);

    let run = copy_fixture("run-a", tmp.path());
    let out = apibench(&["report", &run.display().to_string()], &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let index = std::fs::canonicalize(run.join("index.html")).expect("index.html");
    let (screenshot, requests) = load_in_chromium(&chromium, &index, tmp.path(), "1280,2400");
    assert!(
        requests.is_empty(),
        "the report made network requests: {requests:?}"
    );

    let (width, height, colours, not_background) = distinct_colours(&screenshot);
    assert_eq!((width, height), (1280, 2400));
    assert!(
        colours > 50,
        "the page has text and charts, not a flat colour ({colours} colours)"
    );
    assert!(
        not_background > 0.05,
        "more than background: {:.1} % of pixels differ from the commonest colour",
        not_background * 100.0
    );

    if let Some(keep) = std::env::var_os("APIBENCH_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).expect("keep the screenshot");
    }
}
