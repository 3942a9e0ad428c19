//! Ctrl-C: the real binary stops the load, writes partial results, and exits 130.

mod common;

use common::children_of;

use loadgen::results::Summary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

#[test]
fn ctrl_c_writes_partial_results_and_exits_130() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(common::serve(common::hello()));
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = common::write_scenario(
        dir.path(),
        "long.toml",
        &format!(
            "name = \"long\"\n[load]\nrate_per_sec = 50\nusers = 2\nduration = \"60s\"\n\
             [target]\nkind = \"url\"\nurl = \"{url}\"\n[[requests]]\nname = \"root\"\npath = \"/\"\n"
        ),
    );
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apibench"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("apibench starts");
    std::thread::sleep(Duration::from_secs(2));
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    let children_before = children_of(child.id());
    kill(pid, Signal::SIGINT).expect("SIGINT sent");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("apibench did not exit within 20 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let summary: Summary = serde_json::from_slice(
        &std::fs::read(out.join("summary.json")).expect("summary.json written"),
    )
    .expect("summary parses");
    assert!(summary.partial);
    let figures = &summary.variants[0].figures;
    assert!(figures.partial);
    assert!(
        figures.requests > 0,
        "what was measured before Ctrl-C is kept"
    );
    assert!(out.join("default/latency.hlog").is_file());
    // No process apibench had started is left.
    let left: Vec<u32> = children_before
        .into_iter()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
