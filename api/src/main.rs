//! The `api` binary: install the allocator of the `allocator` knob ([`api::alloc`]), parse the
//! [`api::Config`], set up logging, build a tokio runtime with the `worker_threads` knob, start an
//! [`api::Server`] and serve until SIGTERM/SIGINT.
//!
//! Besides the log it prints exactly one line to stderr, `listening on http://ADDR`, so a
//! harness that asked for port 0 can read the port.

use anyhow::Context as _;
use clap::Parser as _;

/// The `allocator` knob: system or mimalloc, fixed from `API_ALLOCATOR` by the first allocation.
#[global_allocator]
static ALLOCATOR: api::alloc::Selectable = api::alloc::Selectable;

fn main() -> anyhow::Result<()> {
    let config = api::Config::parse();
    let allocator = api::alloc::active();
    if config.knobs.allocator != allocator {
        anyhow::bail!(
            "allocator: --allocator={} but this process started with the {} allocator; the \
             allocator is chosen from the environment before the arguments are read, so set \
             API_ALLOCATOR={} instead",
            config.knobs.allocator.as_str(),
            allocator.as_str(),
            config.knobs.allocator.as_str()
        );
    }
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
