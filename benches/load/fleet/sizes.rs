//! S7 by fleet size: for each size in `S7_SIZES` (default `1,4,16,32`) gateway processes on one
//! `redis-server`, two phases, each on a fresh sim, Redis and fleet:
//!
//! - cold, `NN gw`: S3's saturating load (512 connections of 20 fresh accounts x 4 tags, spread
//!   over the gateways) against the fleet's one budget: S3's rows, the budget used, each
//!   gateway's share, duplicate fetches, the fleet's Redis rows, and what Redis did;
//! - paced, `NN gw`: the same fresh accounts below saturation: [`PACED_CONNS`] connections
//!   each waiting [`PACED_THINK`] after an answer (about half the budget), so that a caller's
//!   latency is what a miss costs (batch window, budget, shared tier, upstream call) and not
//!   the queue behind a full budget.
//!
//! "What Redis did" comes from its own `INFO` at both ends of the measured window: commands
//! per upstream call (the sim's calls in the same window) and per caller request (requests
//! started in the measured window), and its CPU (sys + user) over the window's wall time. The
//! figures of every size are also printed as one summary table, a row per size, with the load
//! average when the size was done. Called by `fleet.rs`.

use std::path::Path;
use std::time::Duration;

use super::{duplicates, redis_rows, shares, Fleet, Run, FLEET_RPS};
use crate::cold::{self, Cold};
use crate::report::{micros, percentile, Table};
use crate::stack;
use crate::Timing;

/// Which fleet sizes to run, comma-separated.
const SIZES_VAR: &str = "S7_SIZES";
const DEFAULT_SIZES: [usize; 4] = [1, 4, 16, 32];
/// The paced phase's connections: one per gateway at the largest default size.
const PACED_CONNS: usize = 32;
/// 32 connections / 320 ms = at most 100 requests of 20 fresh accounts per second: about 100
/// upstream calls/s, half the budget, at any size.
const PACED_THINK: Duration = Duration::from_millis(320);

/// One phase's figures for the summary table.
struct Phase {
    calls_per_s: f64,
    max_second: usize,
    rejected: usize,
    requests_per_s: f64,
    p50: u32,
    p99: u32,
    /// Redis commands per upstream call (all, and the scripts run among them) and per caller
    /// request, and its CPU (% of a core).
    per_call: f64,
    scripts_per_call: f64,
    per_request: f64,
    redis_cpu: f64,
    /// The machine's CPU in the window, as `CpuSplit::text` says it.
    cpu: String,
}

/// One size's line of the summary table.
struct Size {
    gateways: usize,
    cold: Phase,
    paced: Phase,
    /// `/proc/loadavg`'s first three fields when the size was done.
    load: String,
}

/// The sizes `S7_SIZES` names (default all four); exits naming a bad one.
pub fn chosen() -> Vec<usize> {
    let Ok(text) = std::env::var(SIZES_VAR) else {
        return DEFAULT_SIZES.to_vec();
    };
    let sizes: Result<Vec<usize>, _> = text.split(',').map(|s| s.trim().parse()).collect();
    match sizes {
        Ok(sizes) if !sizes.is_empty() && sizes.iter().all(|n| (1..=FLEET_RPS).contains(n)) => {
            sizes
        }
        _ => {
            eprintln!("S7: {SIZES_VAR}={text:?}: give fleet sizes 1-{FLEET_RPS}, e.g. 1,4,16,32");
            std::process::exit(2);
        }
    }
}

/// Runs both phases at every size in `sizes`, then prints the summary table.
pub fn run(table: &mut Table, bin: &Path, sizes: &[usize], timing: Timing) {
    let paced_timing = Timing {
        warmup: Duration::from_secs(2),
        ..timing
    };
    let done: Vec<Size> = sizes
        .iter()
        .map(|&n| Size {
            gateways: n,
            cold: cold_phase(table, bin, n, timing),
            paced: paced_phase(table, bin, n, paced_timing),
            load: load_average(),
        })
        .collect();
    print_summary(&done, timing);
}

fn cold_phase(table: &mut Table, bin: &Path, n: usize, timing: Timing) -> Phase {
    let name = format!("S7 cold, {n:02} gw");
    eprintln!("{name}: S3's load over {n} gateways, one budget of {FLEET_RPS}/s");
    let run = Fleet::start(bin, cold::sim_config(), n, true).run(Cold::new(), cold::CONNS, timing);
    cold::report(table, &name, run.plan, &run.calls, &run.result);
    let phase = figures(&run);
    let used = 100.0 * phase.calls_per_s / FLEET_RPS as f64;
    let text = format!("{used:.1} %");
    table.target(&name, "fleet budget used", text, ">= 90 %", used >= 90.0);
    if n > 1 {
        shares(table, &name, &run);
    }
    duplicates(table, &name, &run.measured_calls());
    redis_rows(table, &name, &run);
    window_rows(table, &name, &run, &phase);
    phase
}

fn paced_phase(table: &mut Table, bin: &Path, n: usize, timing: Timing) -> Phase {
    let name = format!("S7 paced, {n:02} gw");
    eprintln!("{name}: {PACED_CONNS} conns of fresh accounts, {PACED_THINK:?} between requests");
    let fleet = Fleet::start(bin, cold::sim_config(), n, true);
    let run = fleet.run_paced(Cold::new(), PACED_CONNS, timing, PACED_THINK);
    let phase = figures(&run);
    table.info(
        &name,
        "caller requests/s",
        format!("{:.1}", phase.requests_per_s),
    );
    table.info(
        &name,
        "upstream calls/s",
        format!("{:.1}", phase.calls_per_s),
    );
    let limit = format!("<= {FLEET_RPS}");
    let max = phase.max_second;
    let max_met = max <= FLEET_RPS;
    table.target(
        &name,
        "max upstream calls in any sliding 1 s",
        max,
        &limit,
        max_met,
    );
    let rejected = phase.rejected;
    table.target(
        &name,
        "60007 answers from the sim",
        rejected,
        "0",
        rejected == 0,
    );
    table.latencies(&name, "miss (caller)", &run.result.ok);
    let errors: u64 = run.result.errors.values().sum();
    let text = format!("{errors} {:?}", run.result.errors);
    table.target(&name, "caller errors", text, "0", errors == 0);
    redis_rows(table, &name, &run);
    window_rows(table, &name, &run, &phase);
    phase
}

/// The summary figures of one phase's run.
fn figures(run: &Run) -> Phase {
    let secs = run.plan.until.duration_since(run.plan.measure_from);
    let secs = secs.as_secs_f64();
    let requests = run.result.ok.len() as u64 + run.result.errors.values().sum::<u64>();
    let (mut per_call, mut scripts_per_call, mut per_request, mut redis_cpu) = (0.0, 0.0, 0.0, 0.0);
    if let Some(redis) = &run.redis {
        let calls = stack::within(&run.calls, redis.from, redis.until)
            .len()
            .max(1) as f64;
        per_call = redis.total() as f64 / calls;
        scripts_per_call = redis.scripts() as f64 / calls;
        per_request = redis.total() as f64 / requests.max(1) as f64;
        redis_cpu = redis.cpu_percent();
    }
    Phase {
        calls_per_s: run.measured_calls().len() as f64 / secs,
        max_second: stack::max_in_any_second(&run.calls),
        rejected: run.calls.iter().filter(|c| c.error_code == 60007).count(),
        requests_per_s: requests as f64 / secs,
        p50: percentile(&run.result.ok, 0.50),
        p99: percentile(&run.result.ok, 0.99),
        per_call,
        scripts_per_call,
        per_request,
        redis_cpu,
        cpu: run.cpu.text(),
    }
}

/// Where the machine's CPU went in the measured window, and what Redis's own `INFO` says.
fn window_rows(table: &mut Table, name: &str, run: &Run, phase: &Phase) {
    table.info(name, "machine CPU (/proc; 2 cores)", &phase.cpu);
    let Some(redis) = &run.redis else {
        return;
    };
    let wall = redis.until.duration_since(redis.from).as_secs_f64();
    let total = format!("{} in {wall:.2} s", redis.total());
    table.info(
        name,
        "Redis commands (INFO commandstats, in scripts too)",
        total,
    );
    table.info(name, "Redis busiest commands", redis.busiest(5));
    let per_call = format!(
        "{:.2} ({:.2} script runs)",
        phase.per_call, phase.scripts_per_call
    );
    table.info(name, "Redis commands per upstream call", per_call);
    let per_request = format!("{:.3}", phase.per_request);
    table.info(name, "Redis commands per caller request", per_request);
    let cpu = format!("{:.1} % of a core", phase.redis_cpu);
    table.info(name, "Redis CPU (INFO, sys + user)", cpu);
}

/// One line per size, the figures of issue 22's fleet table.
fn print_summary(sizes: &[Size], timing: Timing) {
    let secs = timing.measure.as_secs();
    println!();
    println!("S7 by fleet size ({secs} s measured per phase; budget {FLEET_RPS} calls/s):");
    println!();
    println!(
        "| gateways | cold: calls/s (budget used) | max in any 1 s | 60007 (both) | Redis cmds \
         (script runs) / call | / request | Redis CPU | caller p50 / p99 | paced: req/s | calls/s \
         | miss p50 / p99 | Redis cmds (script runs) / call | / request | Redis CPU | load average \
         | cold: CPU | paced: CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes {
        let (c, p) = (&size.cold, &size.paced);
        let used = 100.0 * c.calls_per_s / FLEET_RPS as f64;
        println!(
            "| {} | {:.1} ({used:.1} %) | {} | {} | {:.1} ({:.2}) | {:.1} | {:.1} % | {} / {} \
             | {:.1} | {:.1} | {} / {} | {:.1} ({:.2}) | {:.1} | {:.1} % | {} | {} | {} |",
            size.gateways,
            c.calls_per_s,
            c.max_second,
            c.rejected + p.rejected,
            c.per_call,
            c.scripts_per_call,
            c.per_request,
            c.redis_cpu,
            micros(c.p50),
            micros(c.p99),
            p.requests_per_s,
            p.calls_per_s,
            micros(p.p50),
            micros(p.p99),
            p.per_call,
            p.scripts_per_call,
            p.per_request,
            p.redis_cpu,
            size.load,
            c.cpu,
            p.cpu,
        );
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    fields.join(" ")
}
