//! Replays every file under `fuzz/corpus/<target>/` (Tencent-shaped seeds and each crash the
//! fuzzers ever found) through the fuzz target's function in `tim_gateway::fuzzing`, so a plain
//! `cargo test` catches a regression without cargo-fuzz. A panic names the file.

use std::path::{Path, PathBuf};

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("read a seed");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails its target", file.display());
    }
}

#[test]
fn portrait_get_request_corpus() {
    replay(
        "portrait_get_request",
        tim_gateway::fuzzing::portrait_get_request,
    );
}

#[test]
fn upstream_answer_corpus() {
    replay("upstream_answer", tim_gateway::fuzzing::upstream_answer);
}

#[test]
fn usersig_corpus() {
    replay("usersig", tim_gateway::fuzzing::usersig);
}

#[test]
fn config_toml_corpus() {
    replay("config_toml", tim_gateway::fuzzing::config_toml);
}
