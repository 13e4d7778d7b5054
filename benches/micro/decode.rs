//! Request decode + validation: `wire::decode_portrait_get` on bodies of 1x1, 20x4 and 100x3
//! (accounts x tags). Throughput is in (account, tag) pairs.

use criterion::{black_box, Criterion, Throughput};
use tim_gateway::bench as wire;

use crate::inmem;

/// The request shapes of the issue: (accounts, tags).
const SHAPES: [(usize, usize); 3] = [(1, 1), (20, 4), (100, 3)];

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_portrait_get");
    for (accounts, tags) in SHAPES {
        let body = inmem::body(1_000, accounts, tags);
        let request = wire::decode_portrait_get(body.as_bytes()).expect("valid body");
        assert_eq!(
            (request.accounts.len(), request.tags.len()),
            (accounts, tags)
        );
        group.throughput(Throughput::Elements((accounts * tags) as u64));
        group.bench_function(format!("{accounts}x{tags}"), |b| {
            b.iter(|| wire::decode_portrait_get(black_box(body.as_bytes())).map(|r| r.tags.len()))
        });
    }
    group.finish();
}
