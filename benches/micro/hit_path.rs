//! The all-hit path through `ProfileService::portrait_get`, in two groups:
//! - `all_hit`: as configured by default, a repeated body is served from the answer cache (one
//!   hash of the body, one lookup, validity checks);
//! - `all_hit_per_pair`: the answer cache off, so every call decodes, looks each account up and
//!   assembles from cached raw JSON (what a body seen for the first time costs).
//!
//! The cache is warmed with two calls per body (a miss, then an all-hit call that keeps the
//! answer); each measured call is then polled once and must complete without suspending (a miss
//! would suspend on the batcher, and the bench panics).
//!
//! Single-threaded: one caller in a loop. Multi-threaded: one caller per core, each doing
//! `iters` calls, timed together (governor's `single_threaded.rs` / `multi_threaded.rs` shape);
//! throughput counts the pairs answered by all threads. Throughput is in (account, tag) pairs.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, Criterion, Throughput};
use tim_gateway::ProfileService;

use crate::inmem;

/// (accounts, tags): the 100x3, plus the two shapes the side-by-side runs use.
const SHAPES: [(usize, usize); 3] = [(100, 3), (20, 4), (1, 1)];

/// Runs an all-hit `portrait_get` to completion in one poll.
pub fn answer_now(service: &ProfileService, body: &[u8]) -> Bytes {
    let mut call = pin!(service.portrait_get(body));
    match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(answer) => answer.expect("the sim's accounts answer"),
        Poll::Pending => panic!("an all-hit request suspended: the cache was not warm"),
    }
}

pub fn bench(c: &mut Criterion) {
    bench_group(c, "all_hit", true);
    bench_group(c, "all_hit_per_pair", false);
}

fn bench_group(c: &mut Criterion, name: &str, answer_cache: bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _enter = rt.enter();
    let sim = rt.block_on(inmem::bench_sim());
    let upstream = inmem::SimUpstream::new(sim.clone(), Duration::ZERO);
    let mut config = inmem::bench_config(1_000_000);
    if !answer_cache {
        config.cache.answer_cache_bytes = 0;
    }
    let wired = inmem::build_service(&config, upstream);
    let service = wired.service;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    let mut group = c.benchmark_group(name);
    for (i, (accounts, tags)) in SHAPES.into_iter().enumerate() {
        let body = inmem::readable_body(10_000 * i as u64, accounts, tags);
        let warm = rt
            .block_on(service.portrait_get(body.as_bytes()))
            .expect("warm-up call answers");
        for _ in 0..2 {
            assert_eq!(
                answer_now(&service, body.as_bytes()),
                warm,
                "hits answer what the miss answered"
            );
        }
        assert_eq!(
            warm,
            sim.answer_portrait_get(body.as_bytes()),
            "same bytes as Tencent"
        );
        let pairs = (accounts * tags) as u64;

        group.throughput(Throughput::Elements(pairs));
        group.bench_function(format!("{accounts}x{tags}/1_thread"), |b| {
            b.iter(|| answer_now(&service, black_box(body.as_bytes())).len())
        });

        group.throughput(Throughput::Elements(pairs * threads as u64));
        group.bench_function(format!("{accounts}x{tags}/{threads}_threads"), |b| {
            b.iter_custom(|iters| parallel(&service, body.as_bytes(), threads, iters))
        });
    }
    group.finish();
}

/// `threads` callers each answering `body` `iters` times; the wall time for all of them.
fn parallel(service: &ProfileService, body: &[u8], threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..iters {
                    black_box(answer_now(service, black_box(body)).len());
                }
            });
        }
    });
    start.elapsed()
}
