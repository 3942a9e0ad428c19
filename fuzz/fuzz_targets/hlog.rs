//! Fuzzes an interval log (`latency.hlog`), read whole: `loadgen::fuzzing::hlog`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = loadgen::fuzzing::hlog(data);
});
