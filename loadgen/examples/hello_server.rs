//! A trivial HTTP server for measuring the generator's own ceiling: `200 ok` on every path.
//! `cargo run --release -p loadgen --example hello_server -- 127.0.0.1:8099`
//! (one tokio worker thread; pin it with `taskset` to keep it off the generator's core).

use axum::Router;
use axum::routing::get;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_string());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!("listening on http://{}", listener.local_addr()?);
            axum::serve(listener, Router::new().fallback(get(|| async { "ok" }))).await
        })
}
