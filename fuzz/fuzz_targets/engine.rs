//! Fuzz target: see [`synack_fuzz::engine`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synack_fuzz::engine(data));
