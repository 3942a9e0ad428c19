//! The command line: one clap-derived [`Cli`] with a subcommand per verb. `run` is here; later
//! verbs (`report`, `compare`, `gate`) are new [`Command`] variants with their own `Args`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  apibench run scenarios/smoke.toml
      run every variant of the smoke scenario; results in reports/<UTC time>-smoke/
  apibench run scenarios/quick.toml --variants baseline,pool-10 --repeat 3 --out /tmp/pools
      two variants, three repetitions each (figures are medians; each repetition is kept)
  apibench run my.toml --database-url postgres://postgres:pw@localhost:5432/postgres
      use an existing server (apibench creates and drops its own databases on it)

Exit codes: 0 done, 2 bad input (scenario, flags, files), 3 the run failed
(target would not start, database unreachable), 130 interrupted (partial results written).

Latency (open model) is measured from each request's scheduled send time, so a stalled
server's backlog is counted; every latency is reported with the rate that produced it.";

/// apibench: what does this change do to an HTTP API's tail latency, throughput and memory?
#[derive(Debug, Parser)]
#[command(name = "apibench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: start each variant's target, load it, write results
    #[command(after_help = AFTER_HELP)]
    Run(RunArgs),
    /// Render DIR/index.html (self-contained HTML) from a saved run
    Report(crate::report::ReportArgs),
    /// Compare two saved runs side by side: ratios B/A and noise-aware verdicts
    Compare(crate::compare::CompareArgs),
    /// Check a saved run against budgets (and a baseline): exit 0 pass, 1 fail, 2 bad input
    Gate(crate::gate::GateArgs),
}

/// `apibench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML), e.g. scenarios/smoke.toml
    pub scenario: PathBuf,

    /// Where results go [default: reports/<UTC timestamp>-<scenario name>/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Use this Postgres server instead of provisioning one (API_PROVISION / pgprovision decide
    /// otherwise); apibench creates and drops its own databases on it
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Run every variant N times (interleaved); summary figures are medians
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,

    /// Only these variants (comma-separated names from the scenario)
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub variants: Vec<String>,

    /// The reference API binary [default: `api` next to the apibench executable]
    #[arg(long, value_name = "PATH", env = "APIBENCH_API_BIN")]
    pub api_bin: Option<PathBuf>,

    /// No progress bars (the summary table is still printed)
    #[arg(long, short)]
    pub quiet: bool,

    /// How sends wait for their due time: `precise` (the pacer thread, tens of µs) or `tokio`
    /// (tokio's 1 ms timer wheel, the old behaviour — for measuring what precision buys)
    #[arg(long, value_enum, env = "APIBENCH_TIMER", default_value_t = crate::engine::Timer::Precise)]
    pub timer: crate::engine::Timer,

    /// Generator worker threads, each an independent event loop with its own share of the
    /// schedule (slot i on worker i mod N) and its own connections [default: `[load]
    /// generator_threads`, else the CPUs of --generator-cpus, else the CPUs this process may use]
    #[arg(long, value_name = "N", env = "APIBENCH_GENERATOR_THREADS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub generator_threads: Option<u32>,

    /// Pin the generator's worker threads (and only them: never the target or PostgreSQL) to
    /// these CPUs, e.g. `1` or `2,3` or `4-7`; run.json records the placement
    #[arg(long, value_name = "LIST", env = "APIBENCH_GENERATOR_CPUS", value_parser = crate::engine::workers::parse_cpu_list)]
    pub generator_cpus: Option<crate::engine::workers::CpuList>,
}
