//! S4: a realistic mix against a slow upstream. Accounts are Zipf-distributed (s = 1.0) over
//! 1,000,000, each request names 1-20 distinct accounts and 1-4 tags (a random subset of
//! Nick, Gender, BirthDay, Image), and the sim answers after 20 ms. Closed loop on 64
//! connections; the first seconds warm the cache and are not measured.
//!
//! A request counts as all-hit when every (account, tag) it names was answered by an earlier
//! request (so the gateway has it cached; the TTL outlives the run and the cache does not
//! evict). Hit ratio comes from the gateway's `/metrics`, upstream calls from the sim's log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use tim_gateway::sim::SimConfig;

use crate::client::{self, Plan, Workload};
use crate::inmem;
use crate::report::Table;
use crate::stack::{self, Stack};
use crate::zipf::{self, Zipf};
use crate::Timing;

const NAME: &str = "S4";
pub const CONNS: usize = 64;
const POPULATION: usize = 1_000_000;
const ZIPF_S: f64 = 1.0;
const UPSTREAM_LATENCY: Duration = Duration::from_millis(20);
const MAX_ACCOUNTS: usize = 20;

/// The mix, and which (account, tag) pairs callers have been answered for (also S7's mix).
pub struct Mix {
    zipf: Zipf,
    /// Per rank, a bit per [`inmem::BENCH_TAGS`] index: answered before.
    known: Vec<AtomicU8>,
}

/// One request: its ranks, its tag bits, and whether all its pairs were known when sent.
pub struct Sent {
    ranks: Vec<u32>,
    mask: u8,
    all_hit: bool,
}

impl Mix {
    /// Nothing answered yet.
    pub fn new() -> Arc<Mix> {
        Arc::new(Mix {
            zipf: Zipf::new(POPULATION, ZIPF_S),
            known: (0..POPULATION).map(|_| AtomicU8::new(0)).collect(),
        })
    }
}

impl Workload for Mix {
    type Sent = Sent;

    fn request(&self, _conn: usize, out: &mut Vec<u8>) -> Sent {
        let mut rng = rand::rng();
        let want = rng.random_range(1..=MAX_ACCOUNTS);
        let mut ranks: Vec<u32> = Vec::with_capacity(want);
        for _ in 0..want * 50 {
            let rank = self.zipf.sample(&mut rng) as u32;
            if !ranks.contains(&rank) {
                ranks.push(rank);
            }
            if ranks.len() == want {
                break;
            }
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(&mut rng);
        let chosen = &order[..rng.random_range(1..=4)];
        let mask = chosen.iter().fold(0u8, |m, i| m | 1 << i);
        let numbers: Vec<u64> = ranks
            .iter()
            .map(|r| zipf::readable_account(u64::from(*r)))
            .collect();
        let tags: Vec<usize> = chosen.iter().map(|i| inmem::BENCH_TAGS[*i]).collect();
        client::write_request(out, inmem::body_with(&numbers, &tags).as_bytes());
        let all_hit = ranks
            .iter()
            .all(|r| self.known[*r as usize].load(Ordering::Relaxed) & mask == mask);
        Sent {
            ranks,
            mask,
            all_hit,
        }
    }

    fn answered(&self, sent: Sent, code: i64, _body: &[u8]) -> bool {
        if code != 0 {
            return false;
        }
        for r in &sent.ranks {
            self.known[*r as usize].fetch_or(sent.mask, Ordering::Relaxed);
        }
        sent.all_hit
    }
}

/// The sim S4 runs against: the population's accounts, answering after 20 ms.
pub fn sim_config() -> SimConfig {
    SimConfig {
        accounts: zipf::accounts_for(POPULATION as u64),
        latency: UPSTREAM_LATENCY,
        ..SimConfig::default()
    }
}

pub fn run(table: &mut Table, timing: Timing) {
    eprintln!("{NAME}: Zipf s={ZIPF_S} over {POPULATION}, 1-20 accounts x 1-4 tags, sim +20 ms");
    let stack = Stack::start(sim_config(), stack::base_config());
    let plan = Plan::starting_now(CONNS, timing);
    let Plan {
        measure_from,
        until,
        ..
    } = plan;
    let client = client::start(&[stack.addr], Mix::new(), plan);
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let before = stack.metrics();
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let after = stack.metrics();
    let result = client.join().expect("client");
    let calls = stack::within(&stack.upstream_gets(), measure_from, until).len();
    stack.stop();
    report(table, NAME, timing, &result, calls, &before, &after);
}

/// The mix rows of scenario `name`: `calls` upstream calls in the measured window, `before` and
/// `after` the gateway's metrics (summed over a fleet's gateways) at its ends.
pub fn report(
    table: &mut Table,
    name: &str,
    timing: Timing,
    result: &client::LoadResult,
    calls: usize,
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
) {
    let delta = |family: &str, result: &str| {
        let key = format!("tim_gateway_{family}{{result=\"{result}\"}}");
        after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
    };
    let lookups = |result| delta("cache_lookups_total", result);
    let (hit, absent, miss) = (lookups("hit"), lookups("absent"), lookups("miss"));
    let lookups = (hit + absent + miss).max(1.0);
    let secs = timing.measure.as_secs_f64();
    let requests = result.ok.len().max(1);
    table.info(
        name,
        "requests/s",
        format!("{:.0}", result.ok.len() as f64 / secs),
    );
    let ratio = format!(
        "{:.2} % (values {:.2} %, cached-unset {:.2} %)",
        100.0 * (hit + absent) / lookups,
        100.0 * hit / lookups,
        100.0 * absent / lookups
    );
    table.info(name, "hit ratio, (account, tag) lookups", ratio);
    let share = 100.0 * result.hits.len() as f64 / requests as f64;
    table.info(name, "all-hit requests", format!("{share:.1} %"));
    let whole = |result| delta("answer_cache_requests_total", result);
    let (whole_hits, whole_misses) = (whole("hit"), whole("miss"));
    let whole_share = 100.0 * whole_hits / (whole_hits + whole_misses).max(1.0);
    table.info(
        name,
        "requests served whole (answer cache)",
        format!("{whole_share:.1} %"),
    );
    table.info(
        name,
        "upstream calls/s",
        format!("{:.1}", calls as f64 / secs),
    );
    table.latencies(name, "caller", &result.ok);
    table.latencies(name, "all-hit", &result.hits);
    let errors: u64 = result.errors.values().sum();
    table.target(
        name,
        "errors",
        format!("{errors} {:?}", result.errors),
        "0",
        errors == 0,
    );
}
