//! `[baseline] pgbench = { clients, seconds }`: the database's own ceiling, measured in the same
//! run as the variants — before them, against a fresh copy of the same seeded database, on the
//! same cluster with the same `[cpus]` placement (pgbench plays the generator's part and runs on
//! the generator's CPUs) — so every variant's throughput can be read as a fraction of what
//! PostgreSQL alone serves ("API point read = 0.41 of the database's ceiling").
//!
//! The query is the API's own point read (`SELECT id, email, name, created_at FROM users WHERE
//! id = $1`, a primary-key lookup like `pgbench -S`, on the rows the variants read) run by
//! `pgbench -n -M prepared -f`; pgbench's own `-S` would need `pgbench -i` tables that nothing
//! else reads. This module runs one child process and parses its output; it never touches the
//! target.

use crate::engine::workers::CpuList;
use crate::scenario::PgbenchSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The baseline's figures, in summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineFigures {
    pub tool: String,
    /// What pgbench ran, in words.
    pub query: String,
    /// The command line (the database URL's password redacted).
    pub command: String,
    pub clients: u32,
    pub threads: u32,
    pub seconds: u32,
    /// Transactions (= point reads) per second, excluding connection set-up.
    pub tps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_avg_ms: Option<f64>,
    /// pgbench's CPUs (`[cpus] generator`), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// pgbench's own output, saved beside the run (of the sample `tps` is).
    pub log: String,
    /// Every sample, in order: before the variants, and after them when the run got there.
    /// `tps` is the highest — a stall on a shared machine only ever lowers a sample — and their
    /// spread is the baseline's own noise. Empty in files written before there were two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<BaselineSample>,
}

/// One pgbench run of the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSample {
    /// "before the variants" / "after the variants".
    pub when: String,
    pub tps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_avg_ms: Option<f64>,
    pub log: String,
}

impl BaselineFigures {
    /// This run as a sample taken `when`.
    fn sample(&self, when: &str) -> BaselineSample {
        BaselineSample {
            when: when.to_string(),
            tps: self.tps,
            latency_avg_ms: self.latency_avg_ms,
            log: self.log.clone(),
        }
    }

    /// The baseline of a run from its sample before the variants and, if it was taken, the one
    /// after: the higher one's figures, with both kept in `samples`.
    pub fn bracketing(before: BaselineFigures, after: Option<BaselineFigures>) -> BaselineFigures {
        let mut samples = vec![before.sample("before the variants")];
        let mut best = before;
        if let Some(after) = after {
            samples.push(after.sample("after the variants"));
            if after.tps > best.tps {
                best = after;
            }
        }
        best.samples = samples;
        best
    }

    /// "the higher of 2 samples: 42 196 before the variants, 40 100 after the variants", or
    /// `None` with one sample.
    pub fn samples_note(&self) -> Option<String> {
        if self.samples.len() < 2 {
            return None;
        }
        let each: Vec<String> = self
            .samples
            .iter()
            .map(|s| format!("{} {}", crate::output::format_rate(s.tps), s.when))
            .collect();
        Some(format!(
            "the higher of {} samples: {}",
            self.samples.len(),
            each.join(", ")
        ))
    }
}

/// The point read pgbench runs: the API's `GET /api/users/{id}` query.
pub const POINT_READ_SQL: &str = "SELECT id, email, name, created_at FROM users WHERE id = :id;";

/// Why the baseline was not measured.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(
        "pgbench was not found ({searched}); install the PostgreSQL client tools (Debian: \
         postgresql-client) or drop [baseline] from the scenario"
    )]
    NotFound { searched: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pgbench failed ({status}); its output is in {log}")]
    Failed { status: String, log: PathBuf },
    #[error("pgbench's output has no `tps = …` line; see {log}")]
    NoTps { log: PathBuf },
}

/// pgbench beside the server binaries (`pg_config --bindir`, …), else on `PATH`.
pub fn find_pgbench() -> Result<PathBuf, BaselineError> {
    let mut searched = Vec::new();
    match pgprovision::server_bindir() {
        Ok(dir) => {
            let candidate = dir.join("pgbench");
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate.display().to_string());
        }
        Err(_) => searched.push("the PostgreSQL server's bin directory".into()),
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("pgbench");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        searched.push("each PATH entry".into());
    }
    Err(BaselineError::NotFound {
        searched: searched.join(", "),
    })
}

/// pgbench's threads: as asked, else one per generator CPU (all allowed CPUs when unpinned),
/// never more than the clients.
pub fn threads_for(spec: &PgbenchSpec, cpus: Option<&CpuList>) -> u32 {
    let per_cpu = cpus.map_or_else(crate::sampler::cpus_allowed, |c| {
        u32::try_from(c.len()).unwrap_or(1)
    });
    spec.threads
        .unwrap_or(per_cpu)
        .clamp(1, spec.clients.max(1))
}

/// Runs the baseline against `database_url` (a fresh copy of the seeded database with `users`
/// rows), writing the script and pgbench's output under `dir` (`log_in_run`: that log's path
/// relative to the run directory, as the report links it).
pub async fn run_pgbench(
    spec: &PgbenchSpec,
    database_url: &str,
    users: u64,
    cpus: Option<&CpuList>,
    dir: &Path,
    log_in_run: &str,
) -> Result<BaselineFigures, BaselineError> {
    let pgbench = find_pgbench()?;
    std::fs::create_dir_all(dir).map_err(|source| BaselineError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let script = dir.join("pgbench-point-read.sql");
    let text = format!("\\set id random(1, {})\n{POINT_READ_SQL}\n", users.max(1));
    std::fs::write(&script, text).map_err(|source| BaselineError::Write {
        path: script.clone(),
        source,
    })?;
    let threads = threads_for(spec, cpus);
    let args: Vec<String> = vec![
        "-n".into(),
        "-M".into(),
        "prepared".into(),
        "-c".into(),
        spec.clients.to_string(),
        "-j".into(),
        threads.to_string(),
        "-T".into(),
        spec.seconds.to_string(),
        "-f".into(),
        script.display().to_string(),
    ];
    let log = dir.join("pgbench.log");
    let command = format!(
        "{} {} {}",
        pgbench.display(),
        args.join(" "),
        pgprovision::redact(database_url)
    );
    let child = tokio::process::Command::new(&pgbench)
        .args(&args)
        .arg(database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| BaselineError::NotFound {
            searched: pgbench.display().to_string(),
        })?;
    if let (Some(cpus), Some(pid)) = (cpus, child.id())
        && let Err(e) = crate::placement::pin_tree(pid, cpus)
    {
        tracing::warn!("pgbench was not pinned to CPUs {cpus}: {e}");
    }
    let bound = Duration::from_secs(u64::from(spec.seconds) + 60);
    let output = match tokio::time::timeout(bound, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(BaselineError::Failed {
                status: e.to_string(),
                log,
            });
        }
        Err(_) => {
            return Err(BaselineError::Failed {
                status: format!("still running after {} s", bound.as_secs()),
                log,
            });
        }
    };
    let text = format!(
        "$ {command}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&log, &text).map_err(|source| BaselineError::Write {
        path: log.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(BaselineError::Failed {
            status: output.status.to_string(),
            log,
        });
    }
    let Some(tps) = parse_tps(&text) else {
        return Err(BaselineError::NoTps { log });
    };
    Ok(BaselineFigures {
        tool: "pgbench".into(),
        query: format!(
            "the API's point read (users by primary key, {} rows), prepared",
            users.max(1)
        ),
        command,
        clients: spec.clients,
        threads,
        seconds: spec.seconds,
        tps,
        latency_avg_ms: parse_latency_avg_ms(&text),
        cpus: cpus.map(ToString::to_string),
        log: log_in_run.to_string(),
        samples: Vec::new(),
    })
}

/// `tps = 57100.123 (without initial connection time)` → 57100.123 (pgbench 13+ prints one
/// line; older versions two, the second "excluding connections establishing").
pub fn parse_tps(output: &str) -> Option<f64> {
    let lines: Vec<&str> = output.lines().filter(|l| l.starts_with("tps = ")).collect();
    let line = lines
        .iter()
        .find(|l| l.contains("without initial connection") || l.contains("excluding"))
        .or_else(|| lines.last())?;
    line.trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t >= 0.0)
}

/// `latency average = 0.561 ms` → 0.561.
pub fn parse_latency_avg_ms(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))?
        .strip_suffix(" ms")?
        .trim()
        .parse()
        .ok()
}

/// A variant's rate beside the database's ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CeilingShare {
    /// The rate compared, req/s.
    pub rate_per_sec: f64,
    /// `rate_per_sec` ÷ the baseline's tps.
    pub fraction: f64,
    /// "max sustainable" (a `[find_max]` ramp) or "throughput" (goodput of a plain run).
    pub what: &'static str,
    /// The ramp's maximum is a lower bound (its first failure above was client-limited).
    pub at_least: bool,
}

impl CeilingShare {
    /// "≥ " for a lower bound, else nothing.
    pub fn bound(&self) -> &'static str {
        if self.at_least { "≥ " } else { "" }
    }
}

/// A variant's throughput as a fraction of the database's ceiling: its maximum sustainable rate
/// when it ran a `[find_max]` ramp (none when the ramp found none), else its goodput (successes
/// per second: a closed loop like pgbench's own).
pub fn fraction_of_ceiling(
    baseline: &BaselineFigures,
    figures: &crate::results::Measurement,
) -> Option<CeilingShare> {
    if baseline.tps <= 0.0 {
        return None;
    }
    let share = |rate: f64, what, at_least| CeilingShare {
        rate_per_sec: rate,
        fraction: rate / baseline.tps,
        what,
        at_least,
    };
    match figures.max_sustainable_rps {
        Some(max) => Some(share(
            max,
            "max sustainable",
            figures.max_sustainable_is_lower_bound,
        )),
        // A ramp that found no maximum (client-limited, or nothing passed) gives no fraction.
        None if !figures.stages.is_empty() => None,
        None => {
            let goodput = crate::output::goodput_rps(figures);
            (goodput > 0.0).then(|| share(goodput, "throughput", false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PGBENCH_15: &str = "pgbench (15.8 (Debian 15.8-0+deb12u1))
transaction type: /tmp/x/pgbench-point-read.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 571002
number of failed transactions: 0 (0.000%)
latency average = 0.561 ms
initial connection time = 21.771 ms
tps = 57100.212345 (without initial connection time)
";

    #[test]
    fn pgbench_output_gives_tps_and_latency() {
        assert_eq!(parse_tps(PGBENCH_15), Some(57100.212345));
        assert_eq!(parse_latency_avg_ms(PGBENCH_15), Some(0.561));
        let old = "tps = 100.5 (including connections establishing)\n\
                   tps = 101.25 (excluding connections establishing)\n";
        assert_eq!(parse_tps(old), Some(101.25));
        assert_eq!(parse_tps("no figures here"), None);
        assert_eq!(parse_tps("tps = nan (x)"), None);
    }

    #[test]
    fn threads_follow_the_generator_cpus_and_never_exceed_clients() {
        let spec = PgbenchSpec {
            clients: 32,
            threads: None,
            seconds: 10,
        };
        assert_eq!(threads_for(&spec, Some(&CpuList::new(vec![1]))), 1);
        assert_eq!(threads_for(&spec, Some(&CpuList::new(vec![0, 1, 2]))), 3);
        let few = PgbenchSpec {
            clients: 2,
            threads: Some(8),
            seconds: 10,
        };
        assert_eq!(threads_for(&few, None), 2);
    }

    fn figures(tps: f64, log: &str) -> BaselineFigures {
        BaselineFigures {
            tool: "pgbench".into(),
            query: String::new(),
            command: String::new(),
            clients: 32,
            threads: 1,
            seconds: 10,
            tps,
            latency_avg_ms: Some(1000.0 * 32.0 / tps),
            cpus: None,
            log: log.into(),
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_ceiling_is_the_higher_of_the_samples_around_the_variants() {
        // A stalled first sample (the 17:12 run here: 23 972 tps where the others read 33–43 k).
        let b = BaselineFigures::bracketing(
            figures(23_972.0, "baseline/pgbench.log"),
            Some(figures(41_000.0, "baseline/after/pgbench.log")),
        );
        assert_eq!(b.tps, 41_000.0);
        assert_eq!(
            b.log, "baseline/after/pgbench.log",
            "the log of the sample used"
        );
        assert_eq!(b.latency_avg_ms, Some(1000.0 * 32.0 / 41_000.0));
        let whens: Vec<(&str, f64)> = b.samples.iter().map(|s| (s.when.as_str(), s.tps)).collect();
        assert_eq!(
            whens,
            [
                ("before the variants", 23_972.0),
                ("after the variants", 41_000.0)
            ]
        );
        assert_eq!(
            b.samples_note().as_deref(),
            Some("the higher of 2 samples: 23 972 before the variants, 41 000 after the variants")
        );
        // The first one higher: it stays.
        let b = BaselineFigures::bracketing(
            figures(42_000.0, "baseline/pgbench.log"),
            Some(figures(40_000.0, "baseline/after/pgbench.log")),
        );
        assert_eq!((b.tps, b.log.as_str()), (42_000.0, "baseline/pgbench.log"));
        // Interrupted before the second: one sample, no note.
        let b = BaselineFigures::bracketing(figures(42_000.0, "baseline/pgbench.log"), None);
        assert_eq!((b.tps, b.samples.len()), (42_000.0, 1));
        assert_eq!(b.samples_note(), None);
    }

    #[test]
    fn the_fraction_prefers_the_ramps_maximum() {
        let baseline = figures(40_000.0, "");
        let mut m = crate::results::Measurement {
            throughput_rps: 1_100.0,
            goodput_rps: Some(1_000.0),
            ..Default::default()
        };
        let share = |m: &crate::results::Measurement| {
            fraction_of_ceiling(&baseline, m).map(|s| (s.fraction, s.what, s.bound()))
        };
        // Goodput, not completions: a failed request is no point read.
        assert_eq!(share(&m), Some((0.025, "throughput", "")));
        m.max_sustainable_rps = Some(20_000.0);
        assert_eq!(share(&m), Some((0.5, "max sustainable", "")));
        m.max_sustainable_is_lower_bound = true;
        assert_eq!(share(&m), Some((0.5, "max sustainable", "≥ ")));
        m.max_sustainable_rps = None;
        m.stages = vec![crate::results::StageFigures::default()];
        assert_eq!(share(&m), None);
    }
}
