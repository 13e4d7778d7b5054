//! Criterion micro benches (issue S6, STYLE.md section 10): one entry that groups the modules in
//! `benches/micro/`, each measuring one step of the gateway in process, with no sockets in the
//! timed path.
//!
//! - `decode`: request decode + validation (`wire::decode_portrait_get`), 1x1, 20x4, 100x3.
//! - `hit_path`: the all-hit `ProfileService::portrait_get`, single- and multi-threaded, with
//!   and without the answer cache.
//! - `upstream`: upstream answer decode (`wire::decode_upstream_get`) and a whole batcher round
//!   trip (admit, encode, decode + split, cache store, reply) for 100 accounts.
//! - `usersig`: UserSig verification without and with the verdict cache.
//! - `coalesce`: 1,000 concurrent callers with overlapping misses against an in-memory upstream.
//!
//! `cargo bench --bench gateway` runs them (about two minutes); CI builds them with
//! `cargo bench --no-run`. Whole-process scenarios S1-S5 are in `benches/load.rs`.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// The binary's allocator (src/main.rs), so that memory and CPU figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/inmem.rs"]
mod inmem;

#[path = "micro/coalesce.rs"]
mod coalesce;
#[path = "micro/decode.rs"]
mod decode;
#[path = "micro/hit_path.rs"]
mod hit_path;
#[path = "micro/upstream.rs"]
mod upstream;
#[path = "micro/usersig.rs"]
mod usersig;

/// Short runs: the whole suite stays well under three minutes.
fn short() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = micro;
    config = short();
    targets = decode::bench, hit_path::bench, upstream::bench, usersig::bench, coalesce::bench
}
criterion_main!(micro);
