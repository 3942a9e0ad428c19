//! Fuzzes a scenario file (TOML), parsed and validated: `loadgen::fuzzing::scenario`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = loadgen::fuzzing::scenario(data);
});
