//! apibench's harness: turn a scenario file into numbers a user can trust.
//!
//! Flow of `apibench run` ([`runner`]): [`scenario`] parses and validates the TOML (every error
//! names file:line:column and the field) → [`database`] provisions Postgres once, migrates and
//! seeds a template, and clones it per variant → [`target`] starts the API or Node baseline (or
//! uses a URL) → [`engine`] runs goose users on `generator_threads` single-threaded workers
//! ([`engine::workers`]), each with its lane of the shared [`schedule`] (open model) or back to
//! back (closed), waiting for each send on its worker's [`pacer`] (precise to tens of µs),
//! rendering [`template`]s and sending on the user's own HTTP/1.1 connection ([`engine::http`]),
//! timing each request itself → [`recorder`]: each worker records into its own HDR histograms
//! (successes, errors and the generator's own send lag apart), merged exactly into the interval log,
//! while [`sampler`] reads `/proc` every 250 ms on its own thread → [`verdict`] decides whose
//! numbers they are (valid / saturated / invalid, with the evidence) → [`results`] (the on-disk
//! schema) and [`output`] (progress bars, the summary table).
//!
//! After a run, from its saved files only ([`saved`]): [`report`] renders the self-contained
//! `index.html` (the runner calls it last), [`compare`] sets two runs side by side and [`gate`]
//! checks one against [`budgets`] and a baseline; [`noise`] decides what counts as a change.
//! [`recover`] rebuilds a partial summary from the logs of a run killed before it wrote
//! `summary.json`, so `report` can still render it.
//!
//! Beyond one machine: `run --shard I/N --start-at T` sends one share of the schedule
//! ([`shard`]), and [`merge`] (`apibench merge`) adds the shards' histograms into one run;
//! [`serve`] (`apibench serve`) starts a seeded target for them and leaves it running.
//!
//! While a run goes, `run --serve ADDR` ([`live`]) serves the generator's own figures — a
//! Prometheus `/metrics` and a live page — fed by the collector, the workers, the engine and the
//! sampler at most once a second each; the saved run stays the record.
//!
//! [`calibrate`] (`apibench calibrate`) measures the generator itself: the highest rate it keeps
//! valid against a trivial server on its own CPU, and its send lag below that, for `run` to
//! warn against.
//!
//! [`import`] (`apibench import-har|import-log`) writes a scenario from recorded traffic: its
//! requests at their mean rate, or a `[replay]` of their arrival times.
//!
//! The library never exits the process and never prints except through [`output`]; the binary
//! (`main.rs`) owns signals, logging and exit codes. It never depends on the `api` crate: the
//! API is only ever a process under test.

pub mod baseline;
pub mod budgets;
pub mod calibrate;
pub mod cli;
pub mod compare;
pub mod database;
pub mod engine;
pub mod environment;
pub mod faults;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod import;
pub mod knobs;
pub mod live;
pub mod merge;
pub mod migration;
pub mod noise;
pub mod output;
pub mod pacer;
pub mod placement;
pub mod recorder;
pub mod recover;
pub mod report;
pub mod results;
pub mod runner;
pub mod sampler;
pub mod saved;
pub mod scenario;
pub mod schedule;
pub mod serve;
pub mod shard;
pub mod target;
pub mod template;
pub mod verdict;

pub use cli::{Cli, Command, RunArgs};
pub use runner::{RunError, RunOptions, RunReport, run};
