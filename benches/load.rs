//! The load tool for scenarios S1-S5 of the benchmark issue and S7 of the fleet issue: starts
//! the simulated Tencent and the gateway in this process on 127.0.0.1 (S7: the sim here,
//! gateway processes and a `redis-server`), drives them with a closed-loop HTTP/1.1 load
//! generator, and prints one summary table.
//!
//! ```sh
//! cargo bench --bench load                 # all: s5 s1 s2 s3 s4 s7 (about 5 min)
//! cargo bench --bench load -- s1 s3        # some
//! LOAD_SECONDS=20 cargo bench --bench load -- s4   # longer measured windows
//! cargo bench --bench load -- s8          # S8 (about 30 s): list reads coalesced vs direct
//! cargo bench --bench load -- s7          # S7 (about 4 min): fleets of 1, 4, 16, 32, then four
//! S7_SIZES=1,4 cargo bench --bench load -- s7   # S7 at some sizes only
//! cargo build --release && cp target/release/tim-gateway /tmp/tim-gateway-s7-bin
//! TIM_GATEWAY_BIN=/tmp/tim-gateway-s7-bin cargo bench --bench load -- s7   # S7, release profile
//! ```
//!
//! - S1 / S2: hit path, 1x1 and 20x4 (16 bodies), 64 connections (`load/hits.rs`).
//! - S3: cold saturation against the sim's 200 calls/s (`load/cold.rs`).
//! - S4: Zipf mix with 20 ms upstream latency (`load/mix.rs`).
//! - S5: RSS per cached (account, tag) (`load/memory.rs`).
//! - S8: `query_online_status` coalesced, open loop at 1,000 requests/s of 20 Zipf ids, against
//!   the sim directly in the same run (`load/lists.rs`).
//! - S7: fleets of gateway processes sharing one Redis: at 1, 4, 16 and 32 gateways
//!   (`S7_SIZES`) S3's load and a paced load of misses; at four, cold pairs and S4's load with
//!   and without Redis (`load/fleet.rs`; needs `redis-server`, else skipped). Its gateways
//!   run `target/release/tim-gateway`, which `cargo bench` has just rebuilt with the bench
//!   profile, or `TIM_GATEWAY_BIN`.
//!
//! Everything shares the machine's cores, as in production sidecars; compare.sh in
//! `../shared/bench` is the side-by-side judge for S1/S2 against nginx. Run only by
//! `cargo bench` (which passes `--bench`); under `cargo test` it does nothing.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::time::Duration;

/// The binary's allocator (src/main.rs), so that memory and CPU figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/inmem.rs"]
mod inmem;

#[path = "load/client.rs"]
mod client;
#[path = "load/cold.rs"]
mod cold;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/hits.rs"]
mod hits;
#[path = "load/lists.rs"]
mod lists;
#[path = "load/memory.rs"]
mod memory;
#[path = "load/mix.rs"]
mod mix;
#[path = "load/report.rs"]
mod report;
#[path = "load/stack.rs"]
mod stack;
#[path = "load/zipf.rs"]
mod zipf;

/// Scenario names in run order: S5 first, so its RSS baseline is clean.
const ALL: [&str; 7] = ["s5", "s1", "s2", "s3", "s4", "s7", "s8"];

/// How long a scenario warms up and then measures.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("load: run it with `cargo bench --bench load -- [s1 s2 s3 s4 s5 s7 s8]`");
        return;
    }
    let chosen: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    if let Some(bad) = chosen.iter().find(|a| !ALL.contains(&a.as_str())) {
        eprintln!("load: unknown scenario {bad:?}; choose from s1 s2 s3 s4 s5 s7 s8");
        std::process::exit(2);
    }
    let measure = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let timing = |warmup: u64, secs: u64| Timing {
        warmup: Duration::from_secs(warmup),
        measure: measure.unwrap_or(Duration::from_secs(secs)),
    };
    let mut table = report::Table::default();
    for name in ALL {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == name) {
            continue;
        }
        match name {
            "s1" => hits::Hits {
                name: "S1",
                accounts: 1,
                tags: 1,
                bodies: 1,
                conns: 64,
            }
            .run(&mut table, timing(1, 5)),
            "s2" => hits::Hits {
                name: "S2",
                accounts: 20,
                tags: 4,
                bodies: 16,
                conns: 64,
            }
            .run(&mut table, timing(1, 5)),
            "s3" => cold::run(&mut table, timing(2, 10)),
            "s4" => mix::run(&mut table, timing(5, 10)),
            "s7" => fleet::run(&mut table, timing(2, 10), timing(5, 10)),
            "s8" => lists::run(&mut table, timing(2, 10)),
            _ => memory::run(&mut table),
        }
    }
    println!();
    table.print();
}
