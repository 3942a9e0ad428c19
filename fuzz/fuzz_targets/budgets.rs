//! Fuzzes a budgets file (TOML) of `apibench gate`: `loadgen::fuzzing::budgets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = loadgen::fuzzing::budgets(data);
});
