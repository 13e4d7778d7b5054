//! Fuzz target: a portrait_get request body: the gateway's decoder against the sim's (see `tim_gateway::fuzzing::portrait_get_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tim_gateway::fuzzing::portrait_get_request(data));
