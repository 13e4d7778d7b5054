//! S3: cold saturation. Every request names fresh accounts (never asked before), and the
//! closed loop keeps far more misses outstanding than 200 calls/s can carry, so the gateway
//! always has a backlog. Measures fill (accounts per upstream call), upstream calls/s and the
//! most in any sliding second (from the sim's call log), the sim's 60007 answers, and accounts
//! answered per second against the physical limit of 200 x 100 = 20,000/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tim_gateway::sim::{SimCall, SimConfig};

use crate::client::{self, LoadResult, Plan, Workload};
use crate::inmem;
use crate::report::Table;
use crate::stack::{self, Stack};
use crate::Timing;

const NAME: &str = "S3";
/// Outstanding requests: 512 x 20 accounts = about half a second of upstream capacity queued.
pub const CONNS: usize = 512;
pub const ACCOUNTS: usize = 20;
pub const TAGS: usize = 4;
/// Tencent's limit and the gateway's default budget, calls per second.
pub const LIMIT_RPS: usize = 200;

/// Fresh accounts for every request (also S7's cold load, `fleet.rs`).
pub struct Cold {
    next: AtomicU64,
}

impl Cold {
    /// Starts at account 1.
    pub fn new() -> Arc<Cold> {
        Arc::new(Cold {
            next: AtomicU64::new(1),
        })
    }
}

impl Workload for Cold {
    type Sent = ();

    fn request(&self, _conn: usize, out: &mut Vec<u8>) {
        let first = self.next.fetch_add(ACCOUNTS as u64, Ordering::Relaxed);
        client::write_request(out, inmem::body(first, ACCOUNTS, TAGS).as_bytes());
    }

    fn answered(&self, (): (), _code: i64, _body: &[u8]) -> bool {
        false
    }
}

/// The sim S3 runs against: Tencent's 200 calls/s, every account exists.
pub fn sim_config() -> SimConfig {
    SimConfig {
        accounts: inmem::SIM_ACCOUNTS,
        ..SimConfig::default()
    }
}

pub fn run(table: &mut Table, timing: Timing) {
    eprintln!("{NAME}: cold saturation, {CONNS} conns x {ACCOUNTS}x{TAGS} fresh accounts");
    let stack = Stack::start(sim_config(), stack::base_config());
    let plan = Plan::starting_now(CONNS, timing);
    let result = client::start(&[stack.addr], Cold::new(), plan)
        .join()
        .expect("client");
    let all = stack.upstream_gets();
    stack.stop();
    report(table, NAME, plan, &all, &result);
}

/// The cold-saturation rows of scenario `name`: `all` is the sim's whole `portrait_get` log,
/// `result` what the callers saw during `plan`'s measured window.
pub fn report(table: &mut Table, name: &str, plan: Plan, all: &[SimCall], result: &LoadResult) {
    let Plan {
        measure_from,
        until,
        ..
    } = plan;
    let secs = until.duration_since(measure_from).as_secs_f64();
    let measured = stack::within(all, measure_from, until);
    let accounts: usize = measured.iter().map(|c| c.accounts.len()).sum();
    let fill = accounts as f64 / measured.len().max(1) as f64;
    let min_fill = measured.iter().map(|c| c.accounts.len()).min().unwrap_or(0);
    let rejected = all.iter().filter(|c| c.error_code == 60007).count();
    let max_second = stack::max_in_any_second(all);
    let served = (result.ok.len() * ACCOUNTS) as f64 / secs;
    let caller_errors: u64 = result.errors.values().sum();

    table.target(
        name,
        "accounts per upstream call (mean)",
        format!("{fill:.1}"),
        ">= 95",
        fill >= 95.0,
    );
    table.info(name, "accounts per upstream call (min)", min_fill);
    table.info(
        name,
        "upstream calls/s",
        format!("{:.1}", measured.len() as f64 / secs),
    );
    let limit = format!("<= {LIMIT_RPS}");
    table.target(
        name,
        "max upstream calls in any sliding 1 s",
        max_second,
        &limit,
        max_second <= LIMIT_RPS,
    );
    table.target(
        name,
        "60007 answers from the sim",
        rejected,
        "0",
        rejected == 0,
    );
    table.target(
        name,
        "accounts served/s (limit 20,000)",
        format!("{served:.0}"),
        ">= 19,000",
        served >= 19_000.0,
    );
    table.latencies(name, "caller", &result.ok);
    table.info(
        name,
        "caller errors (any code)",
        format!("{caller_errors} {:?}", result.errors),
    );
}
