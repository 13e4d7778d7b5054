//! Fuzz target: a config file's TOML text: parse and validate (see `tim_gateway::fuzzing::config_toml`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tim_gateway::fuzzing::config_toml(data));
