#![no_main]
//! See `countersign::fuzzing::import_line` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| countersign::fuzzing::import_line(data));
