//! `apibench serve SCENARIO`: provision and seed the scenario's database and start one
//! variant's target exactly as `apibench run` would — then leave it running and print its URL,
//! until Ctrl-C (or stdin closing, with `--exit-with-stdin`). This is the target for load that
//! does not come from this process: shards on other machines (`run --target-url URL --shard
//! I/N`), a single-process run to compare them with, or any other tool pointed at the same URL.
//! Nothing is measured here; the database copy and the target are removed when it stops.

use crate::database::Databases;
use crate::runner::RunError;
use crate::scenario::{self, TargetSpec};
use crate::target::{self, TargetEnv};
use clap::Args;
use std::path::PathBuf;
use tokio::sync::watch;

pub const SERVE_AFTER_HELP: &str = "\
Examples:
  apibench serve scenarios/smoke.toml --variant pool-10
      the reference API with pool_max = 10 on a freshly seeded database, on a loopback port
  apibench serve scenarios/smoke.toml --listen-host 10.0.0.1 --url-file /tmp/url
      reachable from other hosts on 10.0.0.1; the URL also written to /tmp/url once it answers

Then, from one or more machines (the same --start-at on each):
  apibench run scenarios/smoke.toml --target-url \"$(cat /tmp/url)\" --shard 0/2 --start-at T --out s0

Exit codes: 0 stopped by Ctrl-C or stdin, 2 bad input, 3 the target or database failed.";

/// `apibench serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The scenario whose `[data]` seeds the database and whose variant is started
    pub scenario: PathBuf,

    /// The variant to start [default: the scenario's first]
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,

    /// Use this Postgres server instead of provisioning one
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// The reference API binary [default: `api` next to the apibench executable]
    #[arg(long, value_name = "PATH", env = "APIBENCH_API_BIN")]
    pub api_bin: Option<PathBuf>,

    /// The address the target binds (a free port on it) [default: 127.0.0.1]
    #[arg(long, value_name = "HOST")]
    pub listen_host: Option<String>,

    /// Write the target's URL to this file once it answers (for scripts)
    #[arg(long, value_name = "PATH")]
    pub url_file: Option<PathBuf>,

    /// Where the target's log goes [default: a temporary file, printed]
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// Stop when stdin closes (a parent process holds it open)
    #[arg(long)]
    pub exit_with_stdin: bool,
}

/// Serves until `cancel` turns true. Prints the URL on stdout when the target answers.
pub async fn serve(args: &ServeArgs, mut cancel: watch::Receiver<bool>) -> Result<(), RunError> {
    let scenario = scenario::load(&args.scenario)?;
    let variant = match &args.variant {
        None => scenario.variants.first(),
        Some(name) => scenario.variants.iter().find(|v| &v.name == name),
    }
    .ok_or_else(|| {
        RunError::BadInput(format!(
            "--variant: `{}` is not a variant of {}; it has: {}",
            args.variant.as_deref().unwrap_or(""),
            scenario.path.display(),
            scenario
                .variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?
    .clone();
    if let TargetSpec::Url { url } = &variant.target {
        return Err(RunError::BadInput(format!(
            "variant `{}` is kind \"url\" ({url}): there is nothing to start",
            variant.name
        )));
    }
    let target_env = TargetEnv::find(
        args.api_bin.clone(),
        &scenario.path,
        args.listen_host.clone(),
    );
    let nonce = format!("{:08x}", rand::random::<u32>());
    let databases =
        Databases::prepare(args.database_url.as_deref(), &scenario.data, &nonce).await?;
    let copy = format!("apibench_{nonce}_serve");
    let served = async {
        let url = databases.fresh_copy(&copy).await?;
        let log = args
            .log
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("apibench-serve-{nonce}.log")));
        // `[cpus] target` applies here too: the target is the one thing `serve` starts.
        let variant_cpus = scenario.cpus.target.clone();
        let running = target::start(
            &variant.target,
            &variant.knobs,
            Some(&url),
            &target_env,
            &log,
            variant_cpus.as_ref(),
        )
        .await?;
        println!(
            "serving variant `{}` ({}) at {} — database seeded with {} users, {} posts; log {}; \
             Ctrl-C stops",
            variant.name,
            variant.target.kind(),
            running.base_url,
            scenario.data.users,
            scenario.data.posts,
            log.display()
        );
        if let Some(path) = &args.url_file {
            std::fs::write(path, format!("{}\n", running.base_url)).map_err(|source| {
                RunError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let stdin_closed = async {
            if args.exit_with_stdin {
                let _ = tokio::task::spawn_blocking(|| {
                    let mut sink = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = cancel.wait_for(|c| *c) => {}
            () = stdin_closed => {}
        }
        running.stop().await;
        Ok::<(), RunError>(())
    }
    .await;
    databases.drop_copy(&copy).await;
    databases.cleanup().await;
    served
}
