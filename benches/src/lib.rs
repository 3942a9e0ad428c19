//! microbenchmarks live in benches/
