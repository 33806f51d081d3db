#![no_main]
//! See `countersign::fuzzing::schema_toml` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| countersign::fuzzing::schema_toml(data));
