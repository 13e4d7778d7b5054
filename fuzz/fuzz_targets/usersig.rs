//! Fuzz target: a UserSig string: decode, verify, and sign/verify round trip (see `tim_gateway::fuzzing::usersig`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tim_gateway::fuzzing::usersig(data));
