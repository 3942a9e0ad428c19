//! `apibench report DIR`: one self-contained `DIR/index.html` from a saved run — charts as
//! inline SVG ([`charts`], plotters), inline CSS, no script, no font, no image, no URL — so it
//! reads offline and in a CI artifact viewer. `apibench run` calls [`render_dir`] at its end.
//!
//! Reads the saved files only ([`crate::saved`]), never a live run. A run stopped before it
//! wrote `summary.json` (killed) but with its `run.json` is rebuilt from its logs
//! ([`crate::recover`]) and rendered as a partial run; nothing but `index.html` is written into
//! its directory. The page is rendered in memory first and written through a temporary file and
//! a rename, so a missing or corrupt input (exit 2, file named) never leaves a half-written or
//! overwritten `index.html` behind.
//!
//! Inside: this file (the verb, loading, writing), `html.rs` (the page and the cells its
//! sections share), one file per section that grew its own logic — `migration.rs`, `ramp.rs`,
//! `time_charts.rs`, `drift.rs` (a soak's drift over time), `tables.rs` (per-request and generator
//! tables), `faults.rs` (faults and recovery, and the fault windows the time charts shade) — and
//! `charts.rs` (the SVG charts).

pub mod charts;
mod drift;
mod faults;
pub mod html;
mod migration;
mod ramp;
mod shards;
mod tables;
#[cfg(test)]
mod test_runs;
mod time_charts;

use crate::recover::{self, RecoverError};
use crate::saved::{CommandOutcome, SavedRun, SavedRunError};
use std::path::{Path, PathBuf};

/// `apibench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run directory written by `apibench run` (holds summary.json; a run killed before
    /// writing it is rebuilt from its run.json and latency logs, as a partial run)
    pub dir: PathBuf,
    /// The variant the ratio columns divide by [default: the first variant that is not invalid]
    #[arg(long, value_name = "NAME")]
    pub reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Saved(#[from] SavedRunError),
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error("--reference {name}: no such variant in {summary} (it has: {known})", summary = .summary.display())]
    UnknownReference {
        name: String,
        summary: PathBuf,
        known: String,
    },
    #[error("drawing the chart \"{chart}\": {message}")]
    Chart { chart: String, message: String },
    #[error("{}: cannot write the report: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The page's HTML for a loaded run.
pub fn render(run: &SavedRun, reference: Option<&str>) -> Result<String, ReportError> {
    let reference_index = match reference {
        // An invalid variant gives no ratio: by default divide by one that can.
        None => run
            .variants
            .iter()
            .position(|v| {
                crate::output::verdict_state(&v.summary.figures) != crate::verdict::State::Invalid
            })
            .unwrap_or(0),
        Some(name) => run
            .variants
            .iter()
            .position(|v| v.summary.name == name)
            .ok_or_else(|| ReportError::UnknownReference {
                name: name.to_string(),
                summary: run.dir.join("summary.json"),
                known: run
                    .variants
                    .iter()
                    .map(|v| v.summary.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
    };
    html::page(run, reference_index)
}

/// What [`render_dir`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `dir/index.html`.
    pub path: PathBuf,
    /// Set when the run had no `summary.json` and was rebuilt from its logs: the one-line
    /// warning for the user ([`recover::Recovered::warning`]).
    pub recovered: Option<String>,
}

/// Reads a run directory: `summary.json` and its files, or, when `summary.json` is missing but
/// `run.json` is there (a run killed before its end), the run rebuilt from its logs with the
/// warning that says so. Writes nothing.
pub fn load_or_recover(dir: &Path) -> Result<(SavedRun, Option<String>), ReportError> {
    match SavedRun::load(dir) {
        Ok(run) => Ok((run, None)),
        // Recovered only when run.json says the run never ended: a finished run without its
        // summary was damaged afterwards, and rebuilding it would hide that.
        Err(SavedRunError::Missing(path))
            if path == dir.join("summary.json")
                && crate::saved::load_run_info(dir)
                    .ok()
                    .flatten()
                    .is_some_and(|info| info.finished_at.is_none()) =>
        {
            let recovered = recover::summary_from_logs(dir)?;
            let warning = recovered.warning();
            Ok((recovered.load_saved_run()?, Some(warning)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads `dir` ([`load_or_recover`]), renders, and writes `dir/index.html` atomically.
pub fn render_dir(dir: &Path, reference: Option<&str>) -> Result<Rendered, ReportError> {
    let (run, recovered) = load_or_recover(dir)?;
    let page = render(&run, reference)?;
    let target = dir.join("index.html");
    let temporary = dir.join(format!(".index.html.tmp-{}", std::process::id()));
    let written =
        std::fs::write(&temporary, page).and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(ReportError::Write {
            path: target,
            source,
        });
    }
    Ok(Rendered {
        path: target,
        recovered,
    })
}

/// Runs `apibench report`: exit 0 and the report's path, or 2 naming the bad file. A run
/// rebuilt from its logs is warned about on stderr (it is partial, whatever the page shows).
pub fn command(args: &ReportArgs) -> CommandOutcome {
    match render_dir(&args.dir, args.reference.as_deref()) {
        Ok(rendered) => {
            if let Some(warning) = &rendered.recovered {
                crate::output::warn(warning);
            }
            CommandOutcome {
                stdout: format!("report: {}\n", rendered.path.display()),
                stderr: String::new(),
                exit_code: 0,
            }
        }
        Err(e) => CommandOutcome::bad_input(e),
    }
}
