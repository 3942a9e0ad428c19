//! Entry points for the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and their corpus replay
//! on the stable toolchain (`tests/fuzz_corpus.rs`): one function per input the harness reads
//! from a user's file, taking raw bytes, so the fuzzer and the replay run exactly the same code.
//!
//! Each returns `Ok` when the input parsed and `Err` with the message a user would see when it did
//! not; none may panic, overflow, allocate without bound or loop on any input — that is the bug
//! the fuzzer reports. Not an API: hidden from the docs, and nothing in the harness calls it.

use crate::template::{RenderContext, SharedTemplateState, Template};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: &[&str] = &["scenario", "template", "budgets", "hlog"];

/// Runs target `name` on `data`; `None` for a name not in [`TARGETS`].
pub fn run(name: &str, data: &[u8]) -> Option<Result<(), String>> {
    let entry: fn(&[u8]) -> Result<(), String> = match name {
        "scenario" => scenario,
        "template" => template,
        "budgets" => budgets,
        "hlog" => hlog,
        _ => return None,
    };
    Some(entry(data))
}

/// Scenario files are read as UTF-8 ([`crate::scenario::load`]), then parsed and validated.
pub fn scenario(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    crate::scenario::parse(text, Path::new("fuzz.toml"))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A request path or body template: compiled, then rendered against the smallest and the
/// largest data set a scenario accepts (`data.users` / `data.posts` are positive `i64`s).
pub fn template(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let compiled = Template::compile(text).map_err(|e| format!("{}: {}", e.offset, e.message))?;
    let largest = i64::MAX.unsigned_abs();
    let mut out = String::new();
    for (users, posts) in [(1, 1), (compiled.max_ids().max(1), 7), (largest, largest)] {
        let shared = Arc::new(SharedTemplateState {
            users,
            posts,
            run_nonce: "fuzz".into(),
            seq: AtomicU64::new(u64::MAX - 1),
            seq_step: 1,
        });
        compiled.render_into(&mut out, &mut RenderContext::new(42, 3, shared));
    }
    Ok(())
}

/// A budgets file (`apibench gate --budgets`), and each budget matched against a few names.
pub fn budgets(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let parsed =
        crate::budgets::parse(Path::new("fuzz-budgets.toml"), text).map_err(|e| e.to_string())?;
    for located in &parsed.budgets {
        for name in ["pool-10", "", "ünïcødé-*?"] {
            located.budget.matches_variant(name);
        }
    }
    Ok(())
}

/// Most counters [`hlog`] lets [`crate::recorder::read_hlog`] hold at once (256 MiB of `u64`).
const READ_WHOLE_MAX_COUNTERS: usize = 1 << 25;

/// An interval log (`latency.hlog`): streamed as the report and `recover` read it (each entry's
/// end and quantiles taken as they do), walked as `merge` does, and read whole — when its
/// histograms fit together: [`crate::recorder::read_hlog`] holds every one by design, so a log
/// of many large histograms is large in memory, not a bug.
pub fn hlog(data: &[u8]) -> Result<(), String> {
    let mut counters = 0usize;
    crate::recorder::for_each_hlog_interval(data, |interval| {
        let _end = interval.start + interval.duration;
        let _p99 = interval.histogram.value_at_quantile(0.99);
        counters = counters.saturating_add(interval.histogram.distinct_values());
        Ok(())
    })?;
    for interval in crate::recorder::hlog_intervals(data) {
        interval?;
    }
    crate::recorder::hlog_start_time(data);
    if counters <= READ_WHOLE_MAX_COUNTERS {
        crate::recorder::read_hlog(data)?;
    }
    Ok(())
}
