//! The command line: one clap-derived [`Cli`] with a subcommand per verb. `run` and `calibrate`
//! are here; the other verbs (`report`, `compare`, `gate`) keep their `Args` beside their code.
//! `hello-server` is hidden: `calibrate` starts it as its own child process.

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
  apibench run load.toml --target-url http://10.0.0.5:8080 --shard 0/2 --start-at 2026-11-27T10:30:00Z
      shard 0 of 2 (run 1/2 on another machine with the same --start-at), then
      `apibench merge merged/ shard-0/ shard-1/` for one report with exact percentiles
  apibench run scenarios/quick.toml --serve 127.0.0.1:9464
      watch it live: http://127.0.0.1:9464/ (page), /metrics (Prometheus); docs/LIVE.md

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
    /// Provision, seed and start one variant's target, print its URL and keep it running
    #[command(after_help = crate::serve::SERVE_AFTER_HELP)]
    Serve(crate::serve::ServeArgs),
    /// Merge the run directories of `run --shard I/N` into one run, histograms added exactly
    #[command(after_help = crate::merge::MERGE_AFTER_HELP)]
    Merge(crate::merge::MergeArgs),
    /// Measure this machine's generator ceiling per core and its send lag; `run` warns above 70 %
    #[command(after_help = CALIBRATE_AFTER_HELP)]
    Calibrate(CalibrateArgs),
    /// Write a scenario from a HAR file: its requests at their mean rate, or replayed (--timing)
    #[command(after_help = crate::import::IMPORT_HAR_AFTER_HELP)]
    ImportHar(crate::import::ImportArgs),
    /// Write a scenario from an access log (common/combined): at the mean rate, or replayed
    #[command(after_help = crate::import::IMPORT_LOG_AFTER_HELP)]
    ImportLog(crate::import::ImportArgs),
    /// The trivial server `calibrate` measures against: 200 "ok" on every path (serves until killed)
    #[command(hide = true)]
    HelloServer(HelloServerArgs),
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

    /// The measured duration instead of `[load] duration`, e.g. `90s`, `5m`, `2h` (the warm-up
    /// stays; a scenario with several `[[load.stages]]` refuses it)
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// Load this URL instead of starting each variant's target (every variant becomes
    /// `kind = "url"`; nothing is provisioned or seeded)
    #[arg(long, value_name = "URL", env = "APIBENCH_TARGET_URL")]
    pub target_url: Option<String>,

    /// Send only shard I of N of the load: open model, slot s when s mod N = I (N shards send
    /// exactly the single-process schedule); closed model, every N-th user. Needs a URL target
    /// (--target-url); merge the shards' directories with `apibench merge`
    #[arg(long, value_name = "I/N", env = "APIBENCH_SHARD", value_parser = clap::value_parser!(crate::schedule::ShardSlice))]
    pub shard: Option<crate::schedule::ShardSlice>,

    /// Begin the schedule at this wall-clock instant (RFC 3339, e.g. 2026-11-27T10:30:00Z) —
    /// the same on every shard [default with --shard: now + 5 s, rounded up to 10 s, printed]
    #[arg(long, value_name = "RFC3339", env = "APIBENCH_START_AT", value_parser = crate::shard::parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// While the run goes, serve its live figures on this address (e.g. 127.0.0.1:9464): GET
    /// /metrics (Prometheus), / (a live page), /live.json. Exactly this address is bound:
    /// 127.0.0.1 is this machine only; 0.0.0.0:9464 lets a Prometheus in a container scrape it
    #[arg(long, value_name = "HOST:PORT", env = "APIBENCH_SERVE")]
    pub serve: Option<std::net::SocketAddr>,
}

const CALIBRATE_AFTER_HELP: &str = "\
How: a trivial HTTP server (`200 ok`, HTTP/1.1 keep-alive) runs as a child process pinned to one
CPU, the generator on the others; short open-model runs at fixed rates (doubling, then bisecting)
find the highest rate whose verdict is valid — the generator's ceiling — then three runs at 25,
50 and 75 % of it measure the send lag. About 40-60 s (--quick: about 20 s, coarser).

Examples:
  apibench calibrate
      server on the first CPU, generator on the rest; writes ~/.cache/apibench/calibration.json
  taskset -c 2,3 apibench calibrate
      calibrate inside CPUs 2-3: the server on 2, the generator on 3
  apibench calibrate --generator-cpus 1 --out calibration.json --keep-runs /tmp/cal
      one generator CPU; the file where you want it; every run's results kept for a look
  apibench calibrate --quick --quiet
      a coarse figure in about 20 s, only the summary printed

The file: $APIBENCH_CALIBRATION, else $XDG_CACHE_HOME/apibench/calibration.json, else
~/.cache/apibench/calibration.json. `apibench run` reads it and warns when a scenario's rate is
above 70 % of the ceiling for the CPUs it has. Calibrate the binary you run: a debug build's
ceiling is a fraction of a release build's.

If the server, not the generator, is the limit (`saturated`, or a busy server), the ceiling is
written as a lower bound (limited_by = \"server\"). On a 1-CPU machine both share the CPU
(the file says so).

Exit codes: 0 written, 2 bad input (CPUs, rates, paths), 3 failed (the server would not start,
or no rate was valid), 130 interrupted (nothing written).";

/// `apibench calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Write calibration.json here [default: $APIBENCH_CALIBRATION, else
    /// $XDG_CACHE_HOME/apibench/calibration.json, else ~/.cache/apibench/calibration.json]
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// The hello server's CPU [default: the first CPU this process may use]
    #[arg(long, value_name = "N", env = "APIBENCH_SERVER_CPU")]
    pub server_cpu: Option<usize>,

    /// The generator's CPUs, one worker thread each, e.g. `1` or `1-3` [default: every other CPU
    /// this process may use; the server's own on a 1-CPU machine]
    #[arg(long, value_name = "LIST", env = "APIBENCH_GENERATOR_CPUS", value_parser = crate::engine::workers::parse_cpu_list)]
    pub generator_cpus: Option<crate::engine::workers::CpuList>,

    /// Fewer, shorter runs and a coarser ceiling (±10 %): about 20 s, for CI and tests
    #[arg(long)]
    pub quick: bool,

    /// Do nothing when the file already holds a calibration of this machine (same hostname and
    /// CPU): what `make bench` uses, so only the first run pays for it
    #[arg(long)]
    pub if_missing: bool,

    /// Never try a rate above this (req/s); passing here ends the search (a lower bound)
    #[arg(long, value_name = "RATE", default_value_t = 1_000_000.0)]
    pub max_rate: f64,

    /// The first rate tried (req/s); the search doubles or halves from there
    #[arg(long, value_name = "RATE", default_value_t = 5_000.0)]
    pub start_rate: f64,

    /// Keep every run's results (summary.json, latency.hlog, index.html) under DIR
    #[arg(long, value_name = "DIR")]
    pub keep_runs: Option<PathBuf>,

    /// No progress lines on stderr (the summary is still printed)
    #[arg(long, short)]
    pub quiet: bool,
}

/// `apibench hello-server` (hidden).
#[derive(Debug, Args)]
pub struct HelloServerArgs {
    /// Listen here; port 0 picks a free port (the address is printed on stderr)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8099")]
    pub listen: String,

    /// Pin the server (one thread) to this CPU
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,

    /// Exit when stdin closes: `calibrate` holds the other end, so the server never outlives it
    #[arg(long)]
    pub exit_with_stdin: bool,
}
