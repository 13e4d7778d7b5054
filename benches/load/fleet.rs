//! S7: a fleet. Gateway processes (the release binary) share one `redis-server` in front of
//! one sim (in this process, as in [`Stack`](crate::stack::Stack), so its call log gives
//! arrival times), and the load is spread over them: connection `i` talks to gateway `i % n`.
//! Every phase runs on a fresh sim, Redis and fleet:
//!
//! - by size (`fleet/sizes.rs`): fleets of 1, 4, 16 and 32 gateways (`S7_SIZES=1,4,16,32`
//!   picks), each under S3's saturating cold load and under a paced load of misses at about
//!   half the budget: budget used, the sliding-second maximum, 60007s, Redis commands per
//!   upstream call and per caller request and Redis's CPU (from its `INFO`), a miss's latency;
//! - at four (`fleet/four.rs`): cold pairs (cross-gateway duplicate fetches at their worst),
//!   and S4's mix with Redis and without it.
//!
//! The gateways run `TIM_GATEWAY_BIN`, else `target/release/tim-gateway` (which `cargo bench`
//! rebuilds with the bench profile before it runs this), get their settings from
//! `TIM_GATEWAY__*` env vars (`--config /dev/null`; any such variable in this process's own
//! environment reaches them too, e.g. `TIM_GATEWAY__FLEET__REDIS_TIMEOUT_MS=250`), log at warn
//! into a temp dir, and are stopped by SIGTERM. `S7_GATEWAY0_REDIS_TIMEOUT_MS` sets gateway 0's
//! Redis timeout alone (e.g. 5 ms: it alone keeps dropping to fallback). Without a gateway
//! binary or `redis-server` the scenario says so and is skipped. Owns the rows every phase
//! shares (shares of calls, duplicate fetches, the fleet's Redis rows); `fleet/procs.rs` owns
//! the processes, `fleet/redis_info.rs` Redis's own counters, `fleet/cpu.rs` the CPU split.

#[path = "fleet/cpu.rs"]
mod cpu;
#[path = "fleet/four.rs"]
mod four;
#[path = "fleet/procs.rs"]
mod procs;
#[path = "fleet/redis_info.rs"]
mod redis_info;
#[path = "fleet/sizes.rs"]
mod sizes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tim_gateway::sim::SimCall;

use crate::client::{LoadResult, Plan};
use crate::cold;
use crate::report::Table;
use crate::stack;
use crate::Timing;
use cpu::CpuSplit;
pub use procs::Fleet;
use redis_info::RedisDelta;

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

/// Runs the phases by size, then those at four, or explains why it cannot.
pub fn run(table: &mut Table, cold_timing: Timing, mix_timing: Timing) {
    let sizes = sizes::chosen();
    let Some(bin) = fleet_bin("S7") else {
        return;
    };
    eprintln!(
        "S7: fleets of {sizes:?} gateway processes ({}), one redis-server",
        bin.display()
    );
    sizes::run(table, &bin, &sizes, cold_timing);
    four::run(table, &bin, cold_timing, mix_timing);
}

/// The gateway binary a fleet scenario runs (`TIM_GATEWAY_BIN`, else the release build), when
/// it and `redis-server` are there; else `None`, saying why `scenario` is skipped.
pub fn fleet_bin(scenario: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("TIM_GATEWAY_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tim-gateway"),
        PathBuf::from,
    );
    if !bin.is_file() {
        eprintln!(
            "{scenario}: skipped: no gateway binary at {} (run `cargo build --release` first, \
             or set TIM_GATEWAY_BIN)",
            bin.display()
        );
        return None;
    }
    let redis = Command::new("redis-server").arg("--version").output();
    if !redis.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "{scenario}: skipped: no redis-server on PATH (Debian: `apt-get install redis-server`)"
        );
        return None;
    }
    Some(bin)
}

/// What one phase saw: the plan, the callers' result, each gateway's metrics at the start and
/// the end of the measured window, the sim's whole `portrait_get` log, the gateways'
/// switches to fallback over the whole phase (from their logs), and what Redis did in the
/// measured window (when there is one) and where the machine's CPU went in it.
struct Run {
    plan: Plan,
    result: LoadResult,
    before: Scrape,
    after: Scrape,
    calls: Vec<SimCall>,
    fallbacks: usize,
    redis: Option<RedisDelta>,
    cpu: CpuSplit,
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
/// share: each share up to four gateways, the smallest and the largest beyond.
fn shares(table: &mut Table, name: &str, run: &Run) {
    let calls = run.per_gateway("upstream_requests_total{api=\"portrait_get\"");
    let total: f64 = calls.iter().sum::<f64>().max(1.0);
    let equal = 1.0 / calls.len() as f64;
    let shares: Vec<f64> = calls.iter().map(|c| 100.0 * c / total).collect();
    let (low, high) = (50.0 * equal, 200.0 * equal);
    let fair = shares.iter().all(|s| *s >= low && *s <= high);
    let text = if shares.len() <= 4 {
        let each: Vec<String> = shares.iter().map(|s| format!("{s:.1}")).collect();
        each.join(" / ")
    } else {
        let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
        let max = shares.iter().copied().fold(0.0, f64::max);
        format!("min {min:.1}, max {max:.1}")
    };
    let target = format!("each {low:.1}-{high:.1} %");
    table.target(name, "gateways' shares of calls, %", text, &target, fair);
}

/// (account, tag) pairs fetched more than once, as a share of the pairs fetched in `calls` (the
/// measured window): again by a call that arrived within one batch window of the previous
/// fetch of that pair, within [`IN_FLIGHT`] of it, and at all. A gateway coalesces its own
/// misses and keeps what it fetched, and S7's accounts are readable, so a pair fetched again
/// was fetched by another gateway (or while the first fetch was in flight).
fn duplicates(table: &mut Table, name: &str, calls: &[&SimCall]) {
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
fn redis_rows(table: &mut Table, name: &str, run: &Run) {
    let mode = "tim_gateway_fleet_mode{mode=\"fleet\"}";
    let in_fleet = run
        .after
        .iter()
        .filter(|m| m.get(mode) == Some(&1.0))
        .count();
    let all = run.after.len();
    let target = all.to_string();
    let met = in_fleet == all;
    table.target(
        name,
        "gateways in fleet mode at the end",
        in_fleet,
        &target,
        met,
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
