//! The all-hit path through `ProfileService::portrait_get`, in two groups:
//! - `all_hit`: as configured by default, a repeated body is served from the answer cache (one
//!   hash of the body, one lookup, validity checks);
//! - `all_hit_per_pair`: the answer cache off, so every call decodes, looks each account up and
//!   assembles from cached raw JSON (what a body seen for the first time costs; accounts already
//!   rendered for the body's `TagList` are copied whole, cache/rendered.rs);
//! - `first_seen`: every call sends a body never sent before (the same request made distinct by
//!   trailing JSON whitespace), all pairs cached, with the answer cache off and on: real
//!   callers' bodies rarely repeat, and on such traffic the answer cache must cost nothing; and
//!   `rendered_off`, both the answer cache and rendered entries off: every pair written.
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

/// Runs an all-hit `portrait_get` to completion in one poll. Never inlined, so that callgrind
/// can count instructions per call (`--toggle-collect='*answer_now*'`, BENCHMARKS.md).
#[inline(never)]
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
    first_seen(c);
}

/// JSON whitespace: four ways to spell a base-4 digit after a body.
const WHITESPACE: [u8; 4] = [b' ', b'\t', b'\n', b'\r'];

/// `base` made unique to `n` by 24 trailing whitespace bytes (2^48 distinct bodies).
fn variant(base: &[u8], n: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    out.extend((0..24).map(|digit| WHITESPACE[((n >> (2 * digit)) & 3) as usize]));
}

/// All-hit calls, each with a body never sent before: 100x3 and 20x4, answer cache off and on,
/// and with both it and rendered account entries off (every pair written one by one).
fn first_seen(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _enter = rt.enter();
    let sim = rt.block_on(inmem::bench_sim());
    let mut group = c.benchmark_group("first_seen");
    for label in ["answer_cache_off", "answer_cache_on", "rendered_off"] {
        let upstream = inmem::SimUpstream::new(sim.clone(), Duration::ZERO);
        let mut config = inmem::bench_config(1_000_000);
        if label != "answer_cache_on" {
            config.cache.answer_cache_bytes = 0;
        }
        if label == "rendered_off" {
            config.cache.rendered_entry_bytes = 0;
        }
        let service = inmem::build_service(&config, upstream).service;
        for (i, (accounts, tags)) in SHAPES.into_iter().take(2).enumerate() {
            let body = inmem::readable_body(20_000 + 10_000 * i as u64, accounts, tags);
            let warm = rt
                .block_on(service.portrait_get(body.as_bytes()))
                .expect("warm-up call answers");
            let (mut next, mut buf) = (0u64, Vec::new());
            variant(body.as_bytes(), u64::MAX, &mut buf);
            assert_eq!(
                answer_now(&service, &buf),
                warm,
                "a variant is the same request"
            );
            group.throughput(Throughput::Elements((accounts * tags) as u64));
            group.bench_function(format!("{accounts}x{tags}/{label}"), |b| {
                b.iter(|| {
                    next += 1;
                    variant(body.as_bytes(), next, &mut buf);
                    answer_now(&service, black_box(&buf)).len()
                })
            });
        }
    }
    group.finish();
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
