//! `apibench report DIR`: one self-contained `DIR/index.html` from a saved run — charts as
//! inline SVG ([`charts`], plotters), inline CSS, no script, no font, no image, no URL — so it
//! reads offline and in a CI artifact viewer. `apibench run` calls [`render_dir`] at its end.
//!
//! Reads the saved files only ([`crate::saved`]), never a live run. The page is rendered in
//! memory first and written through a temporary file and a rename, so a missing or corrupt input
//! (exit 2, file named) never leaves a half-written or overwritten `index.html` behind.

pub mod charts;
pub mod html;

use crate::saved::{CommandOutcome, SavedRun, SavedRunError};
use std::path::{Path, PathBuf};

/// `apibench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run directory written by `apibench run` (holds summary.json)
    pub dir: PathBuf,
    /// The variant the ratio columns divide by [default: the first variant that is not invalid]
    #[arg(long, value_name = "NAME")]
    pub reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Saved(#[from] SavedRunError),
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

/// Reads `dir`, renders, and writes `dir/index.html` atomically; returns its path.
pub fn render_dir(dir: &Path, reference: Option<&str>) -> Result<PathBuf, ReportError> {
    let run = SavedRun::load(dir)?;
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
    Ok(target)
}

/// Runs `apibench report`: exit 0 and the report's path, or 2 naming the bad file.
pub fn command(args: &ReportArgs) -> CommandOutcome {
    match render_dir(&args.dir, args.reference.as_deref()) {
        Ok(path) => CommandOutcome {
            stdout: format!("report: {}\n", path.display()),
            stderr: String::new(),
            exit_code: 0,
        },
        Err(e) => CommandOutcome::bad_input(e),
    }
}
