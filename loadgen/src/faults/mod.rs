//! Faults under load: `[[faults]]` steps of a scenario, injected while the measured phase runs,
//! and how long the server took to recover from each.
//!
//! A fault fires `at` after the **end of the warm-up** (the start of the measured window; the
//! warm-up is never disturbed) and is one of [`FaultAction`]: terminate every session of the
//! variant's database copy, fast-restart or pause the PostgreSQL apibench started, pause or kill
//! (and restart) the target. The scenario parser checks what it can from the file alone (actions,
//! durations, windows inside the load, no overlaps, no `url` variants); [`check_database`] checks,
//! once the server is known, that a fault signalling the postmaster has a cluster apibench owns.
//!
//! Inside: this file (the parsed [`FaultSpec`], the saved [`FaultRecord`], the checks, and
//! [`assess`] — injections + the phase's interval log → records), `actions.rs` (running the
//! faults beside the load, the SIGSTOP/SIGCONT guard), `recovery.rs` (the recovery rule as pure
//! functions over per-interval figures, and reading them back from `latency.hlog`).
//!
//! Never: signal a process apibench did not start, leave a process stopped (every SIGSTOP has a
//! guard that sends SIGCONT when dropped — the load ending, Ctrl-C, an error, a panic — and the
//! emergency exit resumes whatever is still stopped, [`resume_all_paused`]), or fire after the
//! load's end.

mod actions;
pub mod recovery;

pub use actions::{FaultHost, Injection, LoadClock, beside_load, resume_all_paused};

use crate::scenario::ScenarioError;
use pgprovision::ProvisionedBy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// `pg_terminate_backend` on every session of the variant's database copy: the target's
    /// pool must notice and reconnect.
    PgTerminate,
    /// A fast restart of the PostgreSQL apibench provisioned (a local cluster only).
    PgRestart,
    /// SIGSTOP of the postmaster and every backend for `duration`, then SIGCONT.
    PgPause,
    /// SIGSTOP of the target's process group for `duration`, then SIGCONT.
    TargetPause,
    /// SIGKILL of the target, then the same start as the runner's (same port, environment and
    /// database); the load keeps running.
    TargetKill,
}

impl FaultAction {
    pub const ALL: [FaultAction; 5] = [
        FaultAction::PgTerminate,
        FaultAction::PgRestart,
        FaultAction::PgPause,
        FaultAction::TargetPause,
        FaultAction::TargetKill,
    ];

    /// The name in scenario files and results.
    pub fn name(self) -> &'static str {
        match self {
            FaultAction::PgTerminate => "pg_terminate",
            FaultAction::PgRestart => "pg_restart",
            FaultAction::PgPause => "pg_pause",
            FaultAction::TargetPause => "target_pause",
            FaultAction::TargetKill => "target_kill",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultAction> {
        FaultAction::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Pauses last `duration`; every other action is a single step.
    pub fn takes_duration(self) -> bool {
        matches!(self, FaultAction::PgPause | FaultAction::TargetPause)
    }

    /// Signals the postmaster: only a cluster apibench started itself.
    pub fn needs_own_cluster(self) -> bool {
        matches!(self, FaultAction::PgRestart | FaultAction::PgPause)
    }
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a fault is written, for errors found after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpot {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

/// One `[[faults]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub action: FaultAction,
    /// From the end of the warm-up.
    pub at: Duration,
    /// Pauses: how long the processes stay stopped.
    pub duration: Option<Duration>,
    /// Where `action = …` is written.
    pub source: SourceSpot,
}

impl FaultSpec {
    /// When the fault's own window ends, from the end of the warm-up (`at` for single steps).
    pub fn planned_end(&self) -> Duration {
        self.at
            .saturating_add(self.duration.unwrap_or(Duration::ZERO))
    }

    fn error(&self, message: String) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.source.file.clone(),
            line: self.source.line,
            column: self.source.column,
            field: "faults.action".into(),
            message,
        }
    }
}

/// Whether every fault can run against the server this run got (`None`: no database). A fault
/// that stops or restarts the postmaster needs a local cluster apibench started itself; the
/// error names the fault's file, line and field (exit 2).
pub fn check_database(
    faults: &[FaultSpec],
    provisioned_by: Option<ProvisionedBy>,
) -> Result<(), ScenarioError> {
    for fault in faults.iter().filter(|f| f.action.needs_own_cluster()) {
        let why = match provisioned_by {
            Some(ProvisionedBy::LocalBinaries) => continue,
            Some(ProvisionedBy::Url) => {
                "this run's PostgreSQL was given by URL (--database-url or DATABASE_URL): \
                 apibench does not own that server and never signals it"
            }
            Some(ProvisionedBy::Testcontainers) => {
                "this run's PostgreSQL runs in a testcontainers container, whose postmaster is \
                 not a process apibench can signal"
            }
            None => "this run has no PostgreSQL",
        };
        return Err(fault.error(format!(
            "`{}` is not possible: {why}; it needs the local cluster apibench provisions itself \
             (unset DATABASE_URL, drop --database-url, and have initdb/postgres installed)",
            fault.action
        )));
    }
    Ok(())
}

/// [`check_database`] before provisioning, from what is already known: a `--database-url` or
/// `DATABASE_URL` means the server is the user's. (With neither, pgprovision decides later.)
pub fn check_before_provisioning(
    faults: &[FaultSpec],
    database_url: Option<&str>,
) -> Result<(), ScenarioError> {
    let given = database_url.is_some()
        || std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty());
    if given {
        check_database(faults, Some(ProvisionedBy::Url))
    } else {
        Ok(())
    }
}

/// Whether the scenario's faults need a cluster apibench owns (for the provisioning choice,
/// [`crate::database::provision_for`]).
pub fn need_own_cluster(faults: &[FaultSpec]) -> bool {
    faults.iter().any(|f| f.action.needs_own_cluster())
}

/// One fault as `summary.json` records it (`faults` of a measurement). Times are in ms from the
/// end of the warm-up, like `at`; status keys are HTTP statuses, "0" = no response (connection
/// error, timeout).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub action: String,
    /// As planned.
    pub at_ms: u64,
    /// Pauses: as planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When it was injected, and when the injection was over (SIGCONT sent, the server or the
    /// target accepting again); `None`: not injected / never over.
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// What the injection did ("12 sessions terminated").
    #[serde(default)]
    pub detail: Option<String>,
    /// Why it was not injected, or failed.
    #[serde(default)]
    pub injection_error: Option<String>,
    /// Failed requests that completed in the 1 s intervals from the fault's start to its end.
    #[serde(default)]
    pub errors_during: u64,
    #[serde(default)]
    pub statuses_during: BTreeMap<String, u64>,
    /// … and in the intervals after it, up to the recovery (or the next fault, or the end).
    #[serde(default)]
    pub errors_after: u64,
    #[serde(default)]
    pub statuses_after: BTreeMap<String, u64>,
    /// The median of the 1 s intervals' p99s before the first fault (a typical second): what
    /// "recovered" is measured against.
    #[serde(default)]
    pub pre_fault_p99_us: Option<u64>,
    #[serde(default)]
    pub recovered: bool,
    /// From the fault's start to the start of the first recovered interval (never less than the
    /// injection's own length). 1 s resolution.
    #[serde(default)]
    pub time_to_recover_ms: Option<u64>,
    /// p99 of the successes from the fault's start until the recovery (or the end).
    #[serde(default)]
    pub recovery_p99_us: Option<u64>,
    /// Why there is no recovery time ("not recovered before the end of the load").
    #[serde(default)]
    pub not_recovered: Option<String>,
}

/// The records of one phase: each fault's injection and its recovery, computed from the
/// phase's `latency.hlog` and the failed requests' statuses per interval (from the collector).
/// `warmup` and `schedule_end` are from the schedule's start. A log that cannot be read leaves
/// the recovery unknown, said in each record.
pub fn assess(
    faults: &[FaultSpec],
    injections: &[Option<Injection>],
    hlog_path: &Path,
    error_statuses_by_interval: &BTreeMap<u64, BTreeMap<u16, u64>>,
    warmup: Duration,
    schedule_end: Duration,
) -> Vec<FaultRecord> {
    if faults.is_empty() {
        return Vec::new();
    }
    let warmup_us = micros(warmup);
    let windows: Vec<Option<recovery::FaultWindow>> = injections
        .iter()
        .map(|i| {
            i.as_ref().and_then(|i| {
                (i.error.is_none()).then_some(recovery::FaultWindow {
                    start_us: i.started_us,
                    // A fault still going when the load ended lasted to the end.
                    end_us: i.ended_us.unwrap_or(micros(schedule_end)),
                })
            })
        })
        .collect();
    let injected: Vec<recovery::FaultWindow> = windows.iter().flatten().copied().collect();
    let assessed = std::fs::read(hlog_path)
        .map_err(|e| format!("cannot read {}: {e}", hlog_path.display()))
        .and_then(|bytes| {
            recovery::assess_log(
                &bytes,
                error_statuses_by_interval,
                &injected,
                warmup_us,
                micros(schedule_end),
            )
        });
    if let Err(e) = &assessed {
        tracing::warn!("fault recovery not computed: {e}");
    }
    let mut assessed_iter = match &assessed {
        Ok(list) => Some(list.iter()),
        Err(_) => None,
    };
    let ms_after_warmup = |us: u64| us.saturating_sub(warmup_us) / 1000;
    faults
        .iter()
        .zip(injections.iter().chain(std::iter::repeat(&None)))
        .zip(&windows)
        .map(|((spec, injection), window)| {
            let mut record = FaultRecord {
                action: spec.action.name().to_string(),
                at_ms: millis(spec.at),
                duration_ms: spec.duration.map(millis),
                ..FaultRecord::default()
            };
            let Some(injection) = injection else {
                record.injection_error =
                    Some("not injected: the load ended (or was interrupted) first".into());
                record.not_recovered = Some("not injected".into());
                return record;
            };
            record.started_ms = Some(ms_after_warmup(injection.started_us));
            record.ended_ms = injection.ended_us.map(ms_after_warmup);
            record.detail = injection.detail.clone();
            record.injection_error = injection.error.clone();
            if window.is_none() {
                record.not_recovered = Some("the injection failed".into());
                return record;
            }
            let Some(a) = assessed_iter.as_mut().and_then(Iterator::next) else {
                record.not_recovered = Some(match &assessed {
                    Err(e) => format!("unknown: {e}"),
                    Ok(_) => "unknown".into(),
                });
                return record;
            };
            record.errors_during = a.during.errors;
            record.statuses_during = status_keys(&a.during.statuses);
            record.errors_after = a.after.errors;
            record.statuses_after = status_keys(&a.after.statuses);
            record.pre_fault_p99_us = a.pre_fault_p99_us;
            record.recovered = a.recovered_at_us.is_some();
            record.time_to_recover_ms = a.time_to_recover_us.map(|us| us / 1000);
            record.recovery_p99_us = a.recovery_p99_us;
            record.not_recovered = a.not_recovered.clone();
            record
        })
        .collect()
}

fn status_keys(statuses: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// "503 ×12, no response ×3": a fault's statuses for the terminal and the report.
pub fn statuses_text(statuses: &BTreeMap<String, u64>) -> String {
    if statuses.is_empty() {
        return "none".into();
    }
    let mut by_count: Vec<(&String, &u64)> = statuses.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_count
        .into_iter()
        .map(|(status, n)| {
            let status = if status == "0" {
                "no response"
            } else {
                status.as_str()
            };
            format!("{status} ×{n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per fault for the terminal summary: "pg_restart at 15 s: 84 errors (503 ×80, no
/// response ×4) + 0 after; recovered in 2.0 s, p99 during recovery 310 ms".
pub fn record_line(record: &FaultRecord) -> String {
    let mut line = format!("{} at {}", record.action, seconds(record.at_ms));
    if let Some(d) = record.duration_ms {
        line.push_str(&format!(" for {}", seconds(d)));
    }
    if record.started_ms.is_none() || record.injection_error.is_some() {
        let why = record.injection_error.as_deref().unwrap_or("not injected");
        return format!("{line}: {why}");
    }
    line.push_str(&format!(
        ": {} errors during ({}), {} after ({})",
        record.errors_during,
        statuses_text(&record.statuses_during),
        record.errors_after,
        statuses_text(&record.statuses_after)
    ));
    match record.time_to_recover_ms {
        Some(ms) => line.push_str(&format!("; recovered in {}", seconds(ms))),
        None => line.push_str(&format!(
            "; NOT RECOVERED ({})",
            record.not_recovered.as_deref().unwrap_or("unknown")
        )),
    }
    if let Some(p99) = record.recovery_p99_us {
        line.push_str(&format!(
            ", p99 during recovery {}",
            crate::output::format_us(p99)
        ));
    }
    line
}

/// "15 s", "2.5 s".
pub fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(action: FaultAction) -> FaultSpec {
        FaultSpec {
            action,
            at: Duration::from_secs(5),
            duration: None,
            source: SourceSpot {
                file: "f.toml".into(),
                line: 12,
                column: 10,
            },
        }
    }

    #[test]
    fn signalling_the_postmaster_needs_a_cluster_apibench_started() {
        let faults = [spec(FaultAction::PgTerminate), spec(FaultAction::PgRestart)];
        assert!(check_database(&faults, Some(ProvisionedBy::LocalBinaries)).is_ok());
        for (by, says) in [
            (ProvisionedBy::Url, "given by URL"),
            (ProvisionedBy::Testcontainers, "container"),
        ] {
            let e = check_database(&faults, Some(by))
                .expect_err("refused")
                .to_string();
            assert!(
                e.starts_with("f.toml:12:10: faults.action: `pg_restart` is not possible"),
                "{e}"
            );
            assert!(e.contains(says), "{e}");
        }
        // Terminating sessions is SQL: any server will do.
        assert!(check_database(&faults[..1], Some(ProvisionedBy::Url)).is_ok());
        let e = check_before_provisioning(&[spec(FaultAction::PgPause)], Some("postgres://u@h/db"))
            .expect_err("a URL is the user's server");
        assert!(e.to_string().contains("`pg_pause` is not possible"), "{e}");
    }

    #[test]
    fn a_line_per_fault_says_errors_statuses_and_recovery() {
        let record = FaultRecord {
            action: "pg_restart".into(),
            at_ms: 15_000,
            started_ms: Some(15_001),
            ended_ms: Some(15_900),
            errors_during: 84,
            statuses_during: BTreeMap::from([("503".into(), 80), ("0".into(), 4)]),
            recovered: true,
            time_to_recover_ms: Some(2_000),
            recovery_p99_us: Some(310_000),
            ..FaultRecord::default()
        };
        assert_eq!(
            record_line(&record),
            "pg_restart at 15 s: 84 errors during (503 ×80, no response ×4), 0 after (none); \
             recovered in 2 s, p99 during recovery 310.0 ms"
        );
        let never = FaultRecord {
            action: "target_pause".into(),
            at_ms: 5_000,
            duration_ms: Some(3_000),
            started_ms: Some(5_000),
            not_recovered: Some("not recovered before the end of the load".into()),
            ..FaultRecord::default()
        };
        assert!(
            record_line(&never)
                .ends_with("NOT RECOVERED (not recovered before the end of the load)"),
            "{}",
            record_line(&never)
        );
        let skipped = FaultRecord {
            action: "pg_terminate".into(),
            injection_error: Some("not injected: the load ended first".into()),
            ..FaultRecord::default()
        };
        assert_eq!(
            record_line(&skipped),
            "pg_terminate at 0 s: not injected: the load ended first"
        );
    }
}
