//! A generator pinned to one CPU and asked for far more than it can send must call itself the
//! limit — `invalid`, generator-bound, with the evidence — never "valid, saturated".
//!
//! The CPU is shared with a busy loop, as on a crowded machine: the test's own server is a
//! debug build, and since the generator speaks HTTP/1.1 on its sockets itself its debug build
//! out-sends that server — without the neighbour the server, not the generator, was the limit
//! in 2 of 4 runs (users exhausted behind it, generator CPU 68–71 %), and the test would test
//! the server.

mod common;

use loadgen::results::Summary;
use std::process::Command;

#[test]
fn a_generator_far_past_its_ceiling_is_invalid_and_named() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = runtime.block_on(common::serve(common::hello()));
    let dir = tempfile::tempdir().expect("tempdir");
    // 200 000/s: several times what one core can send (a release build on the development
    // machine peaks near 60 000/s; this test runs the debug build).
    let scenario = common::write_scenario(
        dir.path(),
        "overload.toml",
        &format!(
            "name = \"overload\"\n[load]\nrate_per_sec = 200000\nusers = 32\nmax_users = 32\n\
             duration = \"2s\"\nwarmup = \"500ms\"\ntimeout = \"1s\"\n\
             [target]\nkind = \"url\"\nurl = \"{url}\"\n[[requests]]\nname = \"root\"\npath = \"/\"\n"
        ),
    );
    let out = dir.path().join("out");
    let cpu = first_allowed_cpu();
    let _neighbour = BusyLoop::on(cpu);
    let status = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(env!("CARGO_BIN_EXE_apibench"))
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset (util-linux) runs apibench");
    assert!(status.success(), "apibench exits 0: {status:?}");
    let summary: Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
            .expect("summary.json parses");
    let m = &summary.variants[0].figures;
    assert_eq!(m.verdict, "invalid", "{m:?}");
    assert!(!m.saturated, "never the server's saturation");
    let reason = m.invalid_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("generator-bound"), "{reason}");
    assert_eq!(m.generator_cpus_allowed, Some(1), "taskset -c {cpu}");
}

/// A CPU this process may run on (CI containers may not own CPU 0).
fn first_allowed_cpu() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| list.trim().split([',', '-']).next()?.parse().ok())
        .unwrap_or(0)
}

/// A shell busy loop pinned to a CPU, killed when dropped (also when the test panics).
struct BusyLoop(std::process::Child);

impl BusyLoop {
    fn on(cpu: usize) -> BusyLoop {
        BusyLoop(
            Command::new("taskset")
                .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
                .spawn()
                .expect("taskset (util-linux) runs a busy loop"),
        )
    }
}

impl Drop for BusyLoop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
