//! Facts about the machine and checkout a run happened on, for `run.json`: git commit, CPU model
//! and count, kernel, apibench version. Best effort: a fact that cannot be read is `null`.

use crate::results::Environment;

pub fn collect() -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let cpu_count = std::thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let git_commit = git(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty());
    let git_dirty = git_commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty());
    Environment {
        git_commit,
        git_dirty,
        apibench_version: env!("CARGO_PKG_VERSION").to_string(),
        cpu_model,
        cpu_count,
        kernel,
        hostname,
    }
}
