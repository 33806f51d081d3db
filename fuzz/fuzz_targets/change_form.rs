#![no_main]
//! See `countersign::fuzzing::change_form` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| countersign::fuzzing::change_form(data));
