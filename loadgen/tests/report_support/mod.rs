//! Helpers for the report / compare / gate tests: the checked-in fixture runs, copied into a
//! temporary directory before a test touches them, and the real `apibench` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `loadgen/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh copy of fixture run `name` (`run-a`, `run-b`, `run-single`) in `into`.
pub fn copy_fixture(name: &str, into: &Path) -> PathBuf {
    let to = into.join(name);
    copy_tree(&fixtures_dir().join(name), &to);
    to
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture copy");
    for entry in std::fs::read_dir(from).expect("fixture directory exists") {
        let entry = entry.expect("fixture entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy fixture file");
        }
    }
}

/// Runs `apibench ARGS` with `GITHUB_STEP_SUMMARY` unset unless `env` sets it.
pub fn apibench(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apibench"));
    command.args(args).env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("apibench starts")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, with the output in the panic message when there is none.
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal; stderr: {}", stderr(o)))
}

/// Writes a file and returns its path as a string (for command lines).
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path.display().to_string()
}

/// A copy of fixture run `name` in `into/label` with `edit` applied to every measurement of
/// its `summary.json` (each variant's figures and each repetition).
pub fn edited_copy(
    name: &str,
    into: &Path,
    label: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> PathBuf {
    let dir = copy_fixture(name, &into.join(label));
    let path = dir.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("summary")).expect("json");
    for variant in summary["variants"].as_array_mut().expect("variants") {
        edit(variant);
        for repetition in variant["repetitions"].as_array_mut().expect("repetitions") {
            edit(repetition);
        }
    }
    std::fs::write(&path, summary.to_string()).expect("write summary");
    dir
}
