//! A trivial HTTP server for measuring the generator's own ceiling: `200 ok` on every path.
//! `cargo run --release -p loadgen --example hello_server -- 127.0.0.1:8099`
//! (one thread; pin it with `taskset` to keep it off the generator's core). The server is the
//! library's ([`loadgen::calibrate::hello`]), the one `apibench calibrate` measures against.

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_string());
    loadgen::calibrate::hello::run_blocking(
        &addr,
        None,
        |bound| eprintln!("listening on http://{bound}"),
        std::future::pending(),
    )
}
