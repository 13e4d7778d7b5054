//! Fuzz target: an upstream portrait_get answer, decoded and split per account (see `tim_gateway::fuzzing::upstream_answer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tim_gateway::fuzzing::upstream_answer(data));
