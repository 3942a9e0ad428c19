//! Fuzzes a request template, compiled and rendered: `loadgen::fuzzing::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = loadgen::fuzzing::template(data);
});
