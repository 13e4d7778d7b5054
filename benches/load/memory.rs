//! S5: memory per cached (account, tag). Fills a `ProfileService` (the public API, in-memory
//! sim upstream, limiter out of the way, no HTTP) with 1,000,000 accounts x 4 tags through
//! ordinary all-miss `portrait_get` calls of 100 accounts, and compares this process's RSS
//! before and after. Bytes per pair beyond the value = (RSS growth - the values' own JSON
//! bytes, as the sim reports them) / cached pairs; unset tags are cached too and have no value
//! bytes.
//!
//! Then every account is read once more, all hits: the hit path renders each account's answer
//! entry for the `TagList` (cache/rendered.rs) until `cache.rendered_entry_bytes` is spent, and
//! the RSS after that shows what the budget costs on top of the table.
//!
//! Runs first when several scenarios are chosen, so that memory freed by other scenarios
//! cannot be reused by the fill and hide its cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tim_gateway::sim::Sim;
use tim_gateway::STANDARD_TAGS;

use crate::inmem;
use crate::report::Table;
use crate::stack::rss_bytes;
use crate::zipf::readable_account;

const NAME: &str = "S5";
const ACCOUNTS: u64 = 1_000_000;
const TAGS: usize = 4;
const PER_CALL: u64 = 100;
/// Callers in flight while filling.
const CONCURRENCY: u64 = 64;
/// Issue 12 (was 250 in issue 3).
const TARGET_BYTES_PER_PAIR: f64 = 100.0;

pub fn run(table: &mut Table) {
    eprintln!("{NAME}: RSS for {ACCOUNTS} accounts x {TAGS} tags");
    let rt = crate::inmem::current_thread_runtime();
    let _enter = rt.enter();
    let sim = rt.block_on(inmem::bench_sim());
    let upstream = inmem::SimUpstream::new(sim.clone(), Duration::ZERO);
    let config = inmem::bench_config(ACCOUNTS * TAGS as u64);
    let wired = inmem::build_service(&config, upstream.clone());
    let service = wired.service;

    let before = rss_bytes();
    let started = Instant::now();
    rt.block_on(fill(&service));
    let fill_secs = started.elapsed().as_secs_f64();
    let pairs = service.cache_sizes().pairs;
    let after = rss_bytes();
    let values = value_bytes(&sim);

    let growth = after.saturating_sub(before) as f64;
    let beyond = (growth - values as f64) / pairs.max(1) as f64;
    table.info(NAME, "cached (account, tag) pairs", pairs);
    table.info(
        NAME,
        "fill time (upstream calls)",
        format!("{fill_secs:.1} s ({} calls)", upstream.calls()),
    );
    table.info(
        NAME,
        "RSS before -> after",
        format!("{:.1} MiB -> {:.1} MiB", mib(before), mib(after)),
    );
    table.info(
        NAME,
        "value bytes per pair (mean)",
        format!("{:.1}", values as f64 / pairs.max(1) as f64),
    );
    table.info(
        NAME,
        "RSS growth per pair",
        format!("{:.1} B", growth / pairs.max(1) as f64),
    );
    let target = format!("<= {TARGET_BYTES_PER_PAIR}");
    table.target(
        NAME,
        "bytes per pair beyond the value",
        format!("{beyond:.1} B"),
        &target,
        beyond <= TARGET_BYTES_PER_PAIR,
    );
    rt.block_on(fill(&service));
    let rendered = service.cache_sizes().rendered_bytes;
    let read = rss_bytes();
    table.info(
        NAME,
        "after an all-hit read of every account: rendered entries, RSS",
        format!(
            "{:.1} MiB (budget {:.1} MiB), RSS {:.1} MiB (+{:.1} MiB)",
            mib(rendered),
            mib(config.cache.rendered_entry_bytes),
            mib(read),
            mib(read.saturating_sub(after)),
        ),
    );
}

/// Asks for every account once, `PER_CALL` per request, `CONCURRENCY` requests at a time.
async fn fill(service: &tim_gateway::ProfileService) {
    let calls = ACCOUNTS / PER_CALL;
    let mut next = 0;
    while next < calls {
        let wave: Vec<_> = (next..(next + CONCURRENCY).min(calls))
            .map(|call| {
                let numbers: Vec<u64> = (call * PER_CALL..(call + 1) * PER_CALL)
                    .map(readable_account)
                    .collect();
                let body: Arc<[u8]> = Arc::from(inmem::body_of(&numbers, TAGS).into_bytes());
                let service = service.clone();
                tokio::spawn(async move { service.portrait_get(&body).await.map(|a| a.len()) })
            })
            .collect();
        for task in wave {
            task.await.expect("fill task").expect("fill answered");
        }
        next += CONCURRENCY;
    }
}

/// The JSON bytes of every value the fill cached: the sim's values for the filled accounts
/// and tags (unset tags have none).
fn value_bytes(sim: &Sim) -> u64 {
    let mut total = 0u64;
    for rank in 0..ACCOUNTS {
        let account = format!("user{}", readable_account(rank));
        for tag in &inmem::BENCH_TAGS[..TAGS] {
            total += sim
                .profile_value(&account, STANDARD_TAGS[*tag])
                .map_or(0, |v| v.len() as u64);
        }
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
