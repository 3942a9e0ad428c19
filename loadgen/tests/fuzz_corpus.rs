//! The fuzz corpus, replayed on the stable toolchain (`make test`; `make fuzz` is the nightly
//! fuzzing itself): every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`
//! goes through the entry point its cargo-fuzz target calls ([`loadgen::fuzzing`]), which must
//! return — parsed or an error — without panicking. The seed files (`seed-*`: copies of the
//! repository's scenarios, budgets, templates and interval logs) must parse. The regressions are
//! inputs that once crashed, overflowed, exhausted memory or took minutes; each file says how
//! (a comment in its first line, or its name).

use loadgen::fuzzing;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn is_seed(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seed-"))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".into())
}

/// `target`'s corpus and regressions: the inputs that panicked and the seeds that did not parse.
fn replay(target: &str) -> Vec<String> {
    let corpus = inputs("corpus", target);
    let mut failures = Vec::new();
    if !corpus.iter().any(|p| is_seed(p)) {
        failures.push(format!("fuzz/corpus/{target}/ has no seed-* file"));
    }
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).expect("corpus file is readable");
        match std::panic::catch_unwind(|| fuzzing::run(target, &data)) {
            Err(payload) => failures.push(format!(
                "{}: panicked: {}",
                path.display(),
                panic_message(payload.as_ref())
            )),
            Ok(None) => failures.push(format!("`{target}` is not a fuzz target")),
            Ok(Some(Err(message))) if is_seed(path) => failures.push(format!(
                "{}: a seed is a valid file and must parse: {message}",
                path.display()
            )),
            Ok(Some(Ok(()) | Err(_))) => {}
        }
    }
    failures
}

#[test]
fn every_corpus_and_regression_input_returns_without_panicking() {
    let failures: Vec<String> = fuzzing::TARGETS.iter().flat_map(|t| replay(t)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A target added to fuzz/fuzz_targets/ without its replay here (or the other way round) fails.
#[test]
fn every_fuzz_target_is_replayed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets/")
        .map(|e| e.expect("directory entry").path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut replayed: Vec<String> = fuzzing::TARGETS.iter().map(|t| t.to_string()).collect();
    replayed.sort();
    assert_eq!(on_disk, replayed);
}
