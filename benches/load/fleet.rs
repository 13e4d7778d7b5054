//! S7: a fleet of four. Four gateway processes (the release binary) share one `redis-server`
//! in front of one sim (in this process, as in [`Stack`](crate::stack::Stack), so its call log
//! gives arrival times), and the load is spread over them: connection `i` talks to gateway
//! `i % 4`. Four phases, each on a fresh sim, Redis and fleet:
//!
//! - cold: S3's load (`cold.rs`) against the fleet's one budget of 200 calls/s: S3's rows, each
//!   gateway's share of the upstream calls, and cross-gateway duplicate fetches;
//! - cold, pairs: the worst case for cross-gateway duplicate fetches: fresh accounts again, but
//!   gateways 0 and 1 (and 2 and 3) each ask for the same blocks in the same order, so two
//!   gateways miss the same accounts at about the same time;
//! - mix, fleet: S4's load (`mix.rs`); the fleet hit ratio counts L1 hits and shared-tier hits
//!   over L1 lookups, summed over the four gateways' `/metrics`;
//! - mix, local: the same four processes without Redis, each allowed 200 / 4 calls/s (what a
//!   team does without a fleet), for the comparison.
//!
//! The gateways run `TIM_GATEWAY_BIN`, else `target/release/tim-gateway` (which `cargo bench`
//! rebuilds with the bench profile before it runs this), get their settings from
//! `TIM_GATEWAY__*` env vars (`--config /dev/null`; any such variable in this process's own
//! environment reaches them too, e.g. `TIM_GATEWAY__FLEET__REDIS_TIMEOUT_MS=250`), log at warn
//! into a temp dir, and are stopped by SIGTERM. `S7_GATEWAY0_REDIS_TIMEOUT_MS` sets gateway 0's
//! Redis timeout alone (e.g. 5 ms: it alone keeps dropping to fallback). Without a gateway
//! binary or `redis-server` the scenario says so and is skipped. Owns the fleet-only figures;
//! `fleet/procs.rs` owns the processes.

#[path = "fleet/procs.rs"]
mod procs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tim_gateway::sim::SimCall;

use crate::client::{self, LoadResult, Plan, Workload};
use crate::cold::{self, Cold};
use crate::inmem;
use crate::mix::{self, Mix};
use crate::report::Table;
use crate::stack;
use crate::Timing;
use procs::Fleet;

const COLD: &str = "S7 cold";
/// Cold, every fresh block asked through two gateways at about the same time.
const PAIRS: &str = "S7 cold, pairs";
/// With Redis: one budget, the shared tier behind each L1.
const MIX_FLEET: &str = "S7 mix, fleet";
/// Without Redis: four standalone gateways, an equal part of the budget each.
const MIX_LOCAL: &str = "S7 mix, local";
const GATEWAYS: usize = 4;
/// The fleet's budget, as the sim enforces it.
const FLEET_RPS: usize = cold::LIMIT_RPS;
/// The gateways' batch window (`limits.batch_window_ms`, default).
const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// Long enough for a fetch to come back and be written to the shared tier.
const IN_FLIGHT: Duration = Duration::from_millis(100);
/// What a gateway logs (at warn) when it switches to fallback (`src/fleet/link.rs`).
const FALLBACK_LOG: &str = "redis unavailable";
const READY_WITHIN: Duration = Duration::from_secs(20);
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Metrics scraped from every gateway, one map per gateway.
type Scrape = Vec<HashMap<String, f64>>;

/// Runs the four phases, or explains why it cannot.
pub fn run(table: &mut Table, cold_timing: Timing, mix_timing: Timing) {
    let bin = std::env::var_os("TIM_GATEWAY_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tim-gateway"),
        PathBuf::from,
    );
    if !bin.is_file() {
        eprintln!(
            "S7: skipped: no gateway binary at {} (run `cargo build --release` first, or set \
             TIM_GATEWAY_BIN)",
            bin.display()
        );
        return;
    }
    let redis = Command::new("redis-server").arg("--version").output();
    if !redis.is_ok_and(|o| o.status.success()) {
        eprintln!("S7: skipped: no redis-server on PATH (Debian: `apt-get install redis-server`)");
        return;
    }
    eprintln!(
        "S7: {GATEWAYS} gateway processes ({}), one redis-server",
        bin.display()
    );
    cold_phase(table, &bin, cold_timing);
    pairs_phase(table, &bin, cold_timing);
    mix_phase(table, &bin, mix_timing, true);
    mix_phase(table, &bin, mix_timing, false);
}

fn cold_phase(table: &mut Table, bin: &Path, timing: Timing) {
    eprintln!("{COLD}: S3's load over {GATEWAYS} gateways, one budget of {FLEET_RPS}/s");
    let run = Fleet::start(bin, cold::sim_config(), true).run(Cold::new(), cold::CONNS, timing);
    cold::report(table, COLD, run.plan, &run.calls, &run.result);
    let secs = timing.measure.as_secs_f64();
    let measured = run.measured_calls();
    let used = 100.0 * measured.len() as f64 / secs / FLEET_RPS as f64;
    let used_text = format!("{used:.1} %");
    table.target(
        COLD,
        "fleet budget used",
        used_text,
        ">= 90 %",
        used >= 90.0,
    );
    shares(table, &run);
    duplicates(table, COLD, &measured);
    redis_rows(table, COLD, &run);
}

fn pairs_phase(table: &mut Table, bin: &Path, timing: Timing) {
    eprintln!("{PAIRS}: S3's load, each block asked through two gateways");
    let workload = Arc::new(ColdPairs {
        sent: std::array::from_fn(|_| AtomicU64::new(0)),
    });
    let run = Fleet::start(bin, cold::sim_config(), true).run(workload, cold::CONNS, timing);
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
    let run = Fleet::start(bin, mix::sim_config(), shared).run(Mix::new(), mix::CONNS, timing);
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

/// What one phase saw: the plan, the callers' result, each gateway's metrics at the start and
/// the end of the measured window, the sim's whole `portrait_get` log, and the gateways'
/// switches to fallback over the whole phase (from their logs).
struct Run {
    plan: Plan,
    result: LoadResult,
    before: Scrape,
    after: Scrape,
    calls: Vec<SimCall>,
    fallbacks: usize,
}

// === impl Run ===

impl Run {
    /// The sim's calls that arrived in the measured window.
    fn measured_calls(&self) -> Vec<&SimCall> {
        stack::within(&self.calls, self.plan.measure_from, self.plan.until)
    }

    /// The fleet-wide change of samples starting with `tim_gateway_{prefix}` over the window.
    fn delta(&self, prefix: &str) -> f64 {
        self.per_gateway(prefix).iter().sum()
    }

    /// Per gateway, the change of samples starting with `tim_gateway_{prefix}`.
    fn per_gateway(&self, prefix: &str) -> Vec<f64> {
        let prefix = format!("tim_gateway_{prefix}");
        let total = |m: &HashMap<String, f64>| -> f64 {
            m.iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .sum()
        };
        self.before
            .iter()
            .zip(&self.after)
            .map(|(b, a)| total(a) - total(b))
            .collect()
    }

    /// Mean of histogram `family{labels}` over the window, milliseconds.
    fn mean_ms(&self, family: &str, labels: &str) -> String {
        let sum = self.delta(&format!("{family}_sum{labels}"));
        let count = self.delta(&format!("{family}_count{labels}"));
        format!("{:.2} ms ({count:.0})", 1_000.0 * sum / count.max(1.0))
    }
}

/// Each gateway's share of the upstream `portrait_get` calls, against half and twice the equal
/// share.
fn shares(table: &mut Table, run: &Run) {
    let calls = run.per_gateway("upstream_requests_total{api=\"portrait_get\"");
    let total: f64 = calls.iter().sum::<f64>().max(1.0);
    let equal = 1.0 / GATEWAYS as f64;
    let shares: Vec<f64> = calls.iter().map(|c| c / total).collect();
    let fair = shares
        .iter()
        .all(|s| *s >= equal / 2.0 && *s <= equal * 2.0);
    let text: Vec<String> = shares.iter().map(|s| format!("{:.1}", 100.0 * s)).collect();
    let target = format!("each {:.1}-{:.1} %", 50.0 * equal, 200.0 * equal);
    table.target(
        COLD,
        "gateways' shares of calls, %",
        text.join(" / "),
        &target,
        fair,
    );
}

/// (account, tag) pairs fetched more than once, as a share of the pairs fetched in `calls` (the
/// measured window): again by a call that arrived within one batch window of the previous
/// fetch of that pair, within [`IN_FLIGHT`] of it, and at all. A gateway coalesces its own
/// misses and keeps what it fetched, and S7's accounts are readable, so a pair fetched again
/// was fetched by another gateway (or while the first fetch was in flight).
fn duplicates(table: &mut Table, name: &'static str, calls: &[&SimCall]) {
    let mut seen: HashMap<(&str, &str), Vec<Instant>> = HashMap::new();
    for call in calls {
        for account in &call.accounts {
            for tag in &call.tags {
                seen.entry((account, tag)).or_default().push(call.at);
            }
        }
    }
    let fetched: usize = seen.values().map(Vec::len).sum();
    let (mut in_window, mut in_flight, mut again) = (0, 0, 0);
    for times in seen.values_mut() {
        times.sort_unstable();
        again += times.len() - 1;
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            in_window += usize::from(gap <= BATCH_WINDOW);
            in_flight += usize::from(gap <= IN_FLIGHT);
        }
    }
    let share = |n: usize| format!("{:.2} % ({n})", 100.0 * n as f64 / fetched.max(1) as f64);
    table.info(name, "(account, tag) pairs fetched", fetched);
    table.info(name, "fetched again within 2 ms", share(in_window));
    table.info(name, "fetched again within 100 ms", share(in_flight));
    let met = again * 20 <= fetched;
    table.target(
        name,
        "fetched again, whole window",
        share(again),
        "<= 5 %",
        met,
    );
}

/// The fleet's own figures: modes at the end, Redis latency and errors, switches to fallback,
/// budget waits.
fn redis_rows(table: &mut Table, name: &'static str, run: &Run) {
    let mode = "tim_gateway_fleet_mode{mode=\"fleet\"}";
    let in_fleet = run
        .after
        .iter()
        .filter(|m| m.get(mode) == Some(&1.0))
        .count();
    let all = format!("{GATEWAYS}");
    table.target(
        name,
        "gateways in fleet mode at the end",
        in_fleet,
        &all,
        in_fleet == GATEWAYS,
    );
    for command in ["acquire", "release", "cache_get", "cache_put"] {
        let labels = format!("{{command=\"{command}\"}}");
        let mean = run.mean_ms("redis_command_duration_seconds", &labels);
        let errors = run.delta(&format!("redis_errors_total{labels}"));
        let text = format!("{mean}, {errors} errors");
        table.info(name, &format!("Redis {command} mean (count)"), text);
    }
    table.info(
        name,
        "Redis errors, all commands",
        run.delta("redis_errors_total"),
    );
    table.info(name, "switches to fallback (whole phase)", run.fallbacks);
    let skipped = run.delta("shared_cache_lookups_total{result=\"skipped\"}");
    table.info(name, "shared tier lookups skipped (fallback)", skipped);
    table.info(
        name,
        "whole-L1 flushes",
        run.delta("fleet_l1_flushes_total"),
    );
    let wait = run.mean_ms("fleet_budget_wait_seconds", "");
    table.info(name, "fleet budget wait mean (count)", wait);
}

/// Sums per-gateway samples into one map, as if one gateway had served everything.
fn sum(scrape: &Scrape) -> HashMap<String, f64> {
    let mut total = HashMap::new();
    for sample in scrape.iter().flatten() {
        *total.entry(sample.0.clone()).or_default() += sample.1;
    }
    total
}
