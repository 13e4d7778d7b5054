//! 1,000 concurrent callers whose misses overlap, against the in-memory upstream (the sim's
//! answers, no latency, limiter out of the way): the time until every caller has its answer.
//! Each iteration uses fresh accounts, so every caller misses. Accounts whose reads the sim
//! fails are skipped: failures are never cached, so every caller arriving after the first
//! answer would fetch them again, which is correct but not coalescing.
//!
//! - `overlap_10`: caller `i` asks for 10 of 1,000 accounts (`i`, `i+100`, ... mod 1,000), so
//!   each account is wanted by 10 callers; ideal: 10 upstream calls of 100 accounts.
//! - `same_100`: every caller asks for the same 100 accounts; ideal: 1 upstream call.
//!
//! After the group it prints the upstream calls per iteration, to compare with the ideal.
//! Throughput is in callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tim_gateway::ProfileService;

use crate::inmem;

const CALLERS: usize = 1_000;
const TAGS: usize = 3;

/// How one iteration's callers pick their accounts from a fresh block starting at `base`.
#[derive(Clone, Copy)]
enum Pattern {
    Overlap10,
    Same100,
}

pub fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _enter = rt.enter();
    let sim = rt.block_on(inmem::bench_sim());
    let upstream = inmem::SimUpstream::new(sim, Duration::ZERO);
    let wired = inmem::build_service(&inmem::bench_config(100_000_000), upstream.clone());
    let service = wired.service;
    let next_base = AtomicU64::new(1 << 30);

    let mut group = c.benchmark_group("coalesce_1k_callers");
    // Iterations take tens of milliseconds: the minimum sample count keeps the suite short.
    group.sample_size(10);
    group.throughput(Throughput::Elements(CALLERS as u64));
    for (name, pattern, ideal) in [
        ("overlap_10", Pattern::Overlap10, 10),
        ("same_100", Pattern::Same100, 1),
    ] {
        let (iterations, calls_before) = (AtomicU64::new(0), upstream.calls());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let base = next_base.fetch_add(1_000, Ordering::Relaxed);
                    let bodies = bodies(pattern, base);
                    let start = Instant::now();
                    rt.block_on(answer_all(&service, bodies));
                    total += start.elapsed();
                }
                iterations.fetch_add(iters, Ordering::Relaxed);
                total
            })
        });
        let calls = upstream.calls() - calls_before;
        let iterations = iterations.load(Ordering::Relaxed);
        if iterations == 0 {
            continue; // filtered out on the command line
        }
        eprintln!(
            "coalesce_1k_callers/{name}: {:.2} upstream calls per iteration (ideal {ideal}), {calls} calls over {iterations} iterations",
            calls as f64 / iterations as f64
        );
    }
    group.finish();
}

/// The request bodies of one iteration's callers.
fn bodies(pattern: Pattern, base: u64) -> Vec<Arc<[u8]>> {
    (0..CALLERS as u64)
        .map(|i| {
            let ranks: Vec<u64> = match pattern {
                Pattern::Overlap10 => (0..10).map(|j| base + (i + j * 100) % 1_000).collect(),
                Pattern::Same100 => (base..base + 100).collect(),
            };
            let numbers: Vec<u64> = ranks.into_iter().map(inmem::readable_account).collect();
            Arc::from(inmem::body_of(&numbers, TAGS).into_bytes())
        })
        .collect()
}

/// Starts every caller at once and waits for all answers.
async fn answer_all(service: &ProfileService, bodies: Vec<Arc<[u8]>>) {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let service = service.clone();
            tokio::spawn(async move { service.portrait_get(&body).await.map(|a| a.len()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task").expect("caller answered");
    }
}
