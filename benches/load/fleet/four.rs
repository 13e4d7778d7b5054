//! S7's phases at four gateways, each on a fresh sim, Redis and fleet (the cold phase at four
//! is one of `sizes.rs`'s):
//!
//! - cold, pairs: the worst case for cross-gateway duplicate fetches: fresh accounts again, but
//!   gateways 0 and 1 (and 2 and 3) each ask for the same blocks in the same order, so two
//!   gateways miss the same accounts at about the same time;
//! - mix, fleet: S4's load (`mix.rs`); the fleet hit ratio counts L1 hits and shared-tier hits
//!   over L1 lookups, summed over the four gateways' `/metrics`;
//! - mix, local: the same four processes without Redis, each allowed 200 / 4 calls/s (what a
//!   team does without a fleet), for the comparison.
//!
//! Called by `fleet.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{duplicates, redis_rows, sum, Fleet};
use crate::client::{self, Workload};
use crate::cold;
use crate::inmem;
use crate::mix::{self, Mix};
use crate::report::Table;
use crate::Timing;

/// Cold, every fresh block asked through two gateways at about the same time.
const PAIRS: &str = "S7 cold, pairs";
/// With Redis: one budget, the shared tier behind each L1.
const MIX_FLEET: &str = "S7 mix, fleet";
/// Without Redis: four standalone gateways, an equal part of the budget each.
const MIX_LOCAL: &str = "S7 mix, local";
const GATEWAYS: usize = 4;

/// Runs the three phases.
pub fn run(table: &mut Table, bin: &Path, cold_timing: Timing, mix_timing: Timing) {
    pairs_phase(table, bin, cold_timing);
    mix_phase(table, bin, mix_timing, true);
    mix_phase(table, bin, mix_timing, false);
}

fn pairs_phase(table: &mut Table, bin: &Path, timing: Timing) {
    eprintln!("{PAIRS}: S3's load, each block asked through two gateways");
    let workload = Arc::new(ColdPairs {
        sent: std::array::from_fn(|_| AtomicU64::new(0)),
    });
    let run =
        Fleet::start(bin, cold::sim_config(), GATEWAYS, true).run(workload, cold::CONNS, timing);
    let measured = run.measured_calls();
    let calls = measured.len() as f64 / timing.measure.as_secs_f64();
    table.info(PAIRS, "upstream calls/s", format!("{calls:.1}"));
    duplicates(table, PAIRS, &measured);
    let errors: u64 = run.result.errors.values().sum();
    let text = format!("{errors} {:?}", run.result.errors);
    table.target(PAIRS, "caller errors", text, "0", errors == 0);
}

/// Fresh blocks of accounts, the `n`-th block of lane `g / 2` asked by gateway `g`'s `n`-th
/// request: the two gateways of a lane ask for the same accounts at about the same time.
struct ColdPairs {
    /// Requests written per gateway (connection `i` talks to gateway `i % GATEWAYS`).
    sent: [AtomicU64; GATEWAYS],
}

impl Workload for ColdPairs {
    type Sent = ();

    fn request(&self, conn: usize, out: &mut Vec<u8>) {
        let gateway = conn % GATEWAYS;
        let n = self.sent[gateway].fetch_add(1, Ordering::Relaxed);
        let lanes = (GATEWAYS / 2) as u64;
        let block = n * lanes + (gateway / 2) as u64;
        let first = 1 + block * cold::ACCOUNTS as u64;
        let body = inmem::body(first, cold::ACCOUNTS, cold::TAGS);
        client::write_request(out, body.as_bytes());
    }

    fn answered(&self, (): (), _code: i64, _body: &[u8]) -> bool {
        false
    }
}

fn mix_phase(table: &mut Table, bin: &Path, timing: Timing, shared: bool) {
    let name = if shared { MIX_FLEET } else { MIX_LOCAL };
    eprintln!("{name}: S4's load over {GATEWAYS} gateways");
    let run =
        Fleet::start(bin, mix::sim_config(), GATEWAYS, shared).run(Mix::new(), mix::CONNS, timing);
    let measured = run.measured_calls();
    let (before, after) = (sum(&run.before), sum(&run.after));
    mix::report(
        table,
        name,
        timing,
        &run.result,
        measured.len(),
        &before,
        &after,
    );
    let l1 = |result: &str| run.delta(&format!("cache_lookups_total{{result=\"{result}\"}}"));
    let l2 = |result: &str| {
        run.delta(&format!(
            "shared_cache_lookups_total{{result=\"{result}\"}}"
        ))
    };
    let lookups = (l1("hit") + l1("absent") + l1("miss")).max(1.0);
    let (l2_answered, l2_asked) = (
        l2("hit") + l2("absent"),
        l2("hit") + l2("absent") + l2("miss"),
    );
    let ratio = 100.0 * (l1("hit") + l1("absent") + l2_answered) / lookups;
    let ratio_text = format!(
        "{ratio:.2} % (shared tier {:.2} % of lookups)",
        100.0 * l2_answered / lookups
    );
    table.info(name, "fleet hit ratio, L1 + shared tier", ratio_text);
    if shared {
        let answered = format!("{:.1} %", 100.0 * l2_answered / l2_asked.max(1.0));
        table.info(name, "shared tier answered (of L1 misses)", answered);
    }
    duplicates(table, name, &measured);
    if shared {
        redis_rows(table, name, &run);
    }
}
