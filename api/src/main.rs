//! The `api` binary: parse the [`api::Config`], set up logging, build a tokio runtime with the
//! `worker_threads` knob, start an [`api::Server`] and serve until SIGTERM/SIGINT.
//!
//! Besides the log it prints exactly one line to stderr, `listening on http://ADDR`, so a
//! harness that asked for port 0 can read the port.

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let config = api::Config::parse();
    api::telemetry::init(&config.knobs).map_err(|e| anyhow::anyhow!("setting up logging: {e}"))?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.knobs.worker_threads > 0 {
        runtime.worker_threads(config.knobs.worker_threads);
    }
    let runtime = runtime.build().context("building the tokio runtime")?;

    runtime.block_on(async {
        let server = api::Server::start(config).await?;
        eprintln!("listening on http://{}", server.local_addr());
        server.run_until(api::shutdown::signal()).await
    })
}
