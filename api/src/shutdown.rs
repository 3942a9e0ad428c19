//! Graceful shutdown: a future that completes on SIGTERM or SIGINT (Ctrl-C).
//!
//! The server stops accepting connections when it completes, lets in-flight requests finish,
//! and only then closes the pool (see [`crate::Server::run_until`]). apibench stops targets with
//! SIGTERM and expects a clean exit; this module must never exit the process itself.
//!
//! The drain has no deadline of its own and needs none: every database call a request makes is
//! bounded (`pool_acquire_timeout_ms`, `query_timeout_ms`, see [`crate::db`]), so even with the
//! database gone every in-flight request ends, with its normal status or a 503. Closing the pool
//! afterwards is bounded too ([`POOL_CLOSE_PATIENCE`]) as a last guard: `pool.close()` waits for
//! every connection to come back, and one that waits on a server answering nothing must not keep
//! the process from exiting.
//! `api/tests/faults.rs` checks the drain on the real binary.

use std::time::Duration;

/// How long closing the pool may take after the last request has finished.
pub const POOL_CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Resolves when the process receives SIGTERM or SIGINT. If a handler cannot be installed the
/// failure is logged and that signal is simply not waited for.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
