#![no_main]
//! See `countersign::fuzzing::webhook_answer` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| countersign::fuzzing::webhook_answer(data));
