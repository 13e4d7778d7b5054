//! Upstream answers for 100 accounts: decoding (`wire::decode_upstream_get`) alone, and a whole
//! batcher round trip. The split itself (`batcher::batch::split_answer`) is private, so it is
//! measured inside the round trip: a caller's 100 misses go through `Batcher::fetch`, the worker
//! batches them (full, so sent at once), the in-memory upstream answers with a precomputed
//! 100-account body, the answer is decoded and split, 100 accounts are stored in the cache and
//! the caller gets its answer. The round trip's cache has a 1 ns TTL: the worker answers keys
//! it finds fresh in the cache without a call, so with a real TTL every iteration after the
//! first would skip the upstream. Throughput is in accounts.

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{black_box, Criterion, Throughput};
use tim_gateway::bench::{self as wire, Account, Tag};
use tim_gateway::bench::{AccountMiss, BatchConfig, Batcher, PathMetrics, UpstreamPath};
use tim_gateway::bench::{CacheTier, ProfileCache, UpstreamLimiter};
use tim_gateway::metrics::{Api, Metrics};

use crate::inmem;

/// Accounts per upstream answer: Tencent's maximum.
const ACCOUNTS: usize = 100;

pub fn bench(c: &mut Criterion) {
    let rt = crate::inmem::current_thread_runtime();
    let _enter = rt.enter();
    let sim = rt.block_on(inmem::bench_sim());

    let mut group = c.benchmark_group("upstream_100");
    group.throughput(Throughput::Elements(ACCOUNTS as u64));
    for tags in [3, 4] {
        let answer = sim.answer_portrait_get(inmem::readable_body(0, ACCOUNTS, tags).as_bytes());
        let decoded = wire::decode_upstream_get(&answer).expect("sim answers");
        assert_eq!(decoded.profiles.len(), ACCOUNTS);
        group.bench_function(format!("decode/x{tags}"), |b| {
            b.iter(|| wire::decode_upstream_get(black_box(&answer)).map(|a| a.profiles.len()))
        });
    }

    let tags = 3;
    let answer = sim.answer_portrait_get(inmem::readable_body(0, ACCOUNTS, tags).as_bytes());
    let upstream = inmem::FixedUpstream::new(answer);
    let mut config = inmem::bench_config(10_000_000);
    config.cache.ttl = Duration::from_nanos(1);
    let batch_config = BatchConfig {
        max_accounts: ACCOUNTS,
        window: config.limits.batch_window,
        max_queue_wait: config.limits.max_queue_wait,
        upstream_timeout: config.upstream.timeout,
    };
    let metrics = Metrics::new();
    let path = UpstreamPath::new(
        &Api::PORTRAIT_GET,
        upstream.clone(),
        UpstreamLimiter::new(NonZeroU32::new(inmem::UNLIMITED_RPS).expect("non-zero")),
        &config,
        &PathMetrics::register(&metrics),
    );
    let (batcher, _worker) = Batcher::spawn(
        batch_config,
        path,
        ProfileCache::new(&config.cache),
        CacheTier::Local,
        metrics,
    );
    let misses: Vec<AccountMiss> = inmem::readable(0, ACCOUNTS)
        .into_iter()
        .map(|n| AccountMiss {
            account: Account::from(format!("user{n}").as_str()),
            tags: inmem::BENCH_TAGS[..tags]
                .iter()
                .map(|i| Tag::standard(*i).expect("standard tag"))
                .collect(),
            version: None,
        })
        .collect();
    group.bench_function(format!("batcher_round_trip/x{tags}"), |b| {
        b.to_async(&rt).iter(|| async {
            let fetched = batcher.fetch(misses.clone()).await.expect("fetched");
            assert_eq!(fetched.len(), ACCOUNTS);
        })
    });
    group.finish();
    let calls = upstream.calls.load(std::sync::atomic::Ordering::Relaxed);
    if calls > 0 {
        eprintln!("upstream_100/batcher_round_trip: {calls} upstream calls in all (one per fetch)");
    }
}
