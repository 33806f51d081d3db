#![no_main]
//! See `countersign::fuzzing::selector_ids` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| countersign::fuzzing::selector_ids(data));
