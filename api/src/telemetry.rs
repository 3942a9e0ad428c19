//! Logging set-up from the `log_format` / `log_level` knobs: JSON lines, human-readable, or off.
//!
//! Per-request spans and lines (tower-http's `TraceLayer`, see [`crate::app`]) are at `debug`,
//! so the default `info` keeps the hot path quiet: a measured run must not be measuring its
//! own logging. Installs a global subscriber, so call it once, from the binary.

use tracing_subscriber::EnvFilter;

use crate::config::{Knobs, LogFormat};

/// Installs the global subscriber described by the knobs (nothing for `log_format = off`).
/// Logs go to stderr; stdout is left to the program's own output.
pub fn init(knobs: &Knobs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::try_new(knobs.log_level.as_directive())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match knobs.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
        LogFormat::Off => Ok(()),
    }
}
