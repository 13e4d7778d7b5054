//! Batcher unit tests against an in-memory upstream that records every call.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::*;
use crate::config::CacheConfig;
use crate::metrics::Api;
use crate::ratelimit::UpstreamLimiter;
use crate::upstream::UpstreamApi;
use crate::upstream::{PathMetrics, UpstreamPath};
use crate::wire::Account;

/// Answers every account with `"<account>/<tag>"` for each tag, except accounts starting with
/// `fail` (per-account 40006) and any call containing account `bad` (whole-call 40003).
#[derive(Default)]
struct FakeUpstream {
    calls: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    delay: Duration,
}

impl UpstreamApi for FakeUpstream {
    fn call(&self, _api: &Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        let request: Value = serde_json::from_slice(&body).expect("batcher sends JSON");
        let accounts: Vec<String> =
            serde_json::from_value(request["To_Account"].clone()).expect("accounts");
        let tags: Vec<String> = serde_json::from_value(request["TagList"].clone()).expect("tags");
        self.calls.lock().push((accounts.clone(), tags.clone()));
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if accounts.iter().any(|a| a == "bad") {
                let body = json!({"ActionStatus":"FAIL","ErrorCode":40003,"ErrorInfo":"Err_Profile_Account_Not_Found","ErrorDisplay":""});
                return Ok(Bytes::from(body.to_string()));
            }
            let items: Vec<Value> = accounts
                .iter()
                .map(|a| {
                    if a.starts_with("fail") {
                        json!({"To_Account": a, "ResultCode": 40006, "ResultInfo": "Err_x"})
                    } else {
                        let items: Vec<Value> = tags.iter().map(|t| json!({"Tag": t, "Value": format!("{a}/{t}")})).collect();
                        json!({"To_Account": a, "ProfileItem": items, "ResultCode": 0, "ResultInfo": ""})
                    }
                })
                .collect();
            let body = json!({"UserProfileItem": items, "ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""});
            Ok(Bytes::from(body.to_string()))
        })
    }
}

fn start(
    upstream: Arc<FakeUpstream>,
    rps: u32,
    max_queue_wait: Duration,
) -> (Batcher, ProfileCache) {
    let cache_config = CacheConfig {
        ttl: Duration::from_secs(60),
        max_entries: 10_000,
        missing_tag_ttl: Duration::from_secs(60),
        answer_cache_bytes: 0,
        ..crate::Config::default().cache
    };
    let cache = ProfileCache::new(&cache_config);
    let config = BatchConfig {
        max_accounts: 100,
        window: Duration::from_millis(20),
        max_queue_wait,
        upstream_timeout: Duration::from_secs(3),
    };
    let limiter = UpstreamLimiter::new(NonZeroU32::new(rps).expect("non-zero"));
    let metrics = Metrics::new();
    let path = UpstreamPath::new(
        &Api::PORTRAIT_GET,
        upstream,
        limiter,
        &crate::Config::default(),
        &PathMetrics::register(&metrics),
    );
    let (batcher, _worker) = Batcher::spawn(config, path, cache.clone(), CacheTier::Local, metrics);
    (batcher, cache)
}

fn miss(account: &str, tags: &[usize]) -> AccountMiss {
    AccountMiss {
        account: Account::from(account),
        tags: tags
            .iter()
            .map(|i| Tag::standard(*i).expect("tag"))
            .collect(),
        version: None,
    }
}

fn value_of(fetch: &AccountFetch, tag: usize) -> Option<String> {
    match fetch {
        AccountFetch::Values(values) => values
            .iter()
            .find(|(t, _)| *t == Tag::standard(tag).expect("tag"))
            .and_then(|(_, v)| v.as_ref().map(|v| v.get().to_string())),
        AccountFetch::Failed { .. } => None,
    }
}

#[tokio::test]
async fn concurrent_misses_share_one_upstream_call_and_each_gets_its_own_accounts() {
    let upstream = Arc::new(FakeUpstream::default());
    let (batcher, _) = start(upstream.clone(), 200, Duration::from_secs(2));
    let (a, b) = tokio::join!(
        batcher.fetch(vec![miss("u1", &[0]), miss("u2", &[0])]),
        batcher.fetch(vec![miss("u2", &[0, 1]), miss("u3", &[1])]),
    );
    let (a, b) = (a.expect("a answered"), b.expect("b answered"));
    assert_eq!(upstream.calls.lock().len(), 1, "one merged call");
    assert_eq!(
        value_of(&a[0], 0).as_deref(),
        Some("\"u1/Tag_Profile_IM_Nick\"")
    );
    assert_eq!(
        value_of(&a[1], 0).as_deref(),
        Some("\"u2/Tag_Profile_IM_Nick\"")
    );
    assert_eq!(
        value_of(&b[0], 1).as_deref(),
        Some("\"u2/Tag_Profile_IM_Gender\"")
    );
    assert_eq!(
        value_of(&b[1], 1).as_deref(),
        Some("\"u3/Tag_Profile_IM_Gender\"")
    );
}

#[tokio::test]
async fn a_late_caller_joins_the_fetch_in_flight() {
    let upstream = Arc::new(FakeUpstream {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let (batcher, _) = start(upstream.clone(), 200, Duration::from_secs(2));
    let first = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.fetch(vec![miss("u1", &[0])]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // dispatched, not answered
    let second = batcher.fetch(vec![miss("u1", &[0])]).await.expect("joined");
    first.await.expect("task").expect("first answered");
    assert_eq!(
        upstream.calls.lock().len(),
        1,
        "the in-flight pair is never fetched twice"
    );
    assert!(value_of(&second[0], 0).is_some());
}

#[tokio::test]
async fn per_account_failures_reach_only_their_callers_and_are_not_cached() {
    let upstream = Arc::new(FakeUpstream::default());
    let (batcher, cache) = start(upstream, 200, Duration::from_secs(2));
    let (a, b) = tokio::join!(
        batcher.fetch(vec![miss("fail1", &[0])]),
        batcher.fetch(vec![miss("u1", &[0])])
    );
    assert!(matches!(
        a.expect("a")[0],
        AccountFetch::Failed { code: 40006, .. }
    ));
    assert!(value_of(&b.expect("b")[0], 0).is_some());
    assert!(cache.get("fail1").is_none());
    assert!(cache.get("u1").is_some());
}

#[tokio::test]
async fn a_callers_bad_account_fails_only_that_caller() {
    let upstream = Arc::new(FakeUpstream::default());
    let (batcher, _) = start(upstream.clone(), 200, Duration::from_secs(2));
    let (bad, good) = tokio::join!(
        batcher.fetch(vec![miss("bad", &[0]), miss("u1", &[0])]),
        batcher.fetch(vec![miss("u2", &[0])]),
    );
    assert_eq!(bad.expect_err("the bad caller fails").code(), 40003);
    assert!(value_of(&good.expect("the good caller is served")[0], 0).is_some());
    assert_eq!(
        upstream.calls.lock().len(),
        3,
        "one merged call, then one per caller"
    );
}

#[tokio::test]
async fn callers_past_the_queue_deadline_get_60007() {
    let upstream = Arc::new(FakeUpstream::default());
    let (batcher, _) = start(upstream.clone(), 1, Duration::from_millis(100));
    // The first call takes the only permit of this second; the 101st account needs a second
    // batch, which cannot get a permit within 100 ms.
    let misses: Vec<AccountMiss> = (0..101).map(|i| miss(&format!("u{i}"), &[0])).collect();
    let err = batcher
        .fetch(misses)
        .await
        .expect_err("second batch expires");
    assert_eq!(err.code(), 60007);
    assert_eq!(upstream.calls.lock().len(), 1);
}

#[tokio::test]
async fn batches_never_exceed_max_accounts() {
    let upstream = Arc::new(FakeUpstream::default());
    let (batcher, _) = start(upstream.clone(), 200, Duration::from_secs(2));
    let fetches = (0..5).map(|c| {
        let batcher = batcher.clone();
        async move {
            batcher
                .fetch((0..60).map(|i| miss(&format!("c{c}-{i}"), &[0])).collect())
                .await
        }
    });
    for result in futures_util::future::join_all(fetches).await {
        assert_eq!(result.expect("answered").len(), 60);
    }
    let calls = upstream.calls.lock();
    assert!(calls.iter().all(|(accounts, _)| accounts.len() <= 100));
    assert_eq!(calls.len(), 3, "300 accounts in 3 full calls");
}
