//! Stale while revalidate: a hot pair expired by less than
//! `cache.stale_while_revalidate_seconds` is answered at once, while exactly one refresh for it
//! goes upstream; the refreshed value is served after.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_pair_is_answered_at_once_while_one_refresh_goes_upstream() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.cache.ttl = Duration::from_millis(1_000);
            c.cache.stale_while_revalidate = Duration::from_secs(30);
        })
        .start()
        .await;
    let body = get_body(&["user1", "user2"], &[NICK]);
    let first = gw.portrait_get(&body).await;
    assert_eq!(gw.upstream_gets().len(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Tencent is slow now: a caller waiting for it would wait 600 ms.
    gw.sim.set_latency(Duration::from_millis(600));
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..20).map(|_| gw.portrait_get(&body))).await;
    let took = started.elapsed();
    assert!(
        answers.iter().all(|a| *a == first),
        "the cached values, at once"
    );
    assert!(
        took < Duration::from_millis(500),
        "20 callers answered in {took:?}: nobody waited for Tencent"
    );
    let refreshed = eventually(Duration::from_secs(3), || async {
        gw.upstream_gets().len() == 2
    })
    .await;
    assert!(refreshed, "one background refresh");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 2, "exactly one refresh for 20 hits: {calls:?}");
    assert_eq!(calls[1].accounts, ["user1", "user2"]);
    let stale = r#"tim_gateway_cache_lookups_total{result="stale"}"#;
    assert!(gw.metric(stale).await.unwrap_or(0.0) >= 40.0);
    // The refreshed values are fresh: the next caller neither waits nor refreshes again.
    gw.sim.set_latency(Duration::ZERO);
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    assert_eq!(gw.upstream_gets().len(), 2);
    gw.shutdown().await;
}
