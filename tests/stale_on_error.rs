//! Serve stale on error: while the upstream fails as a whole (502, hanging), pairs that went
//! stale less than `cache.stale_if_error_seconds` ago are answered from the cache; accounts
//! with nothing to fall back on get the error per account; fresh values return with Tencent.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tim_gateway::sim::Fault;

const STALE: &str = r#"tim_gateway_cache_lookups_total{result="stale"}"#;

async fn gateway() -> TestGateway {
    TestGateway::builder()
        .config(|c| {
            c.cache.ttl = Duration::from_millis(1_000);
            c.cache.stale_while_revalidate = Duration::ZERO;
            c.cache.stale_if_error = Duration::from_secs(3_600);
            c.upstream.timeout = Duration::from_millis(300);
            c.upstream.max_retries = 0;
            c.breaker.failure_threshold = 1_000;
        })
        .start()
        .await
}

fn item<'a>(answer: &'a Value, account: &str) -> &'a Value {
    let items = answer["UserProfileItem"]
        .as_array()
        .expect("UserProfileItem");
    items
        .iter()
        .find(|i| i["To_Account"] == account)
        .unwrap_or_else(|| panic!("{account} missing from {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_values_answer_while_tencent_fails_and_fresh_ones_return_after() {
    let gw = gateway().await;
    let known = get_body(&["user1", "user2"], &[NICK, GENDER]);
    let before = gw.portrait_get(&known).await;
    assert_eq!(before, gw.alone(&known));
    tokio::time::sleep(Duration::from_millis(1_100)).await; // every pair is past its TTL

    for fault in [Fault::Status(502), Fault::Hang] {
        gw.sim.set_fault(fault);
        let started = std::time::Instant::now();
        let answer = gw.portrait_get(&known).await;
        assert_eq!(
            answer, before,
            "{fault:?}: the stale values, exactly as Tencent sent them"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{fault:?}: answered after one failed call, not after every deadline"
        );
    }
    assert!(
        gw.metric(STALE).await.unwrap_or(0.0) >= 8.0,
        "stale pairs are counted"
    );

    // An account the gateway never saw has nothing to fall back on: it alone fails.
    gw.sim.set_fault(Fault::Status(502));
    let mixed = get_body(&["user1", "user3"], &[NICK]);
    let answer = gw.portrait_get(&mixed).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    assert_eq!(item(&answer, "user1"), item(&gw.alone(&mixed), "user1"));
    assert_eq!(item(&answer, "user3")["ResultCode"], 91002, "{answer}");
    assert_eq!(answer["Fail_Account"], serde_json::json!(["user3"]));
    // Nothing to fall back on at all: the whole call fails as before.
    let unknown = gw.portrait_get(&get_body(&["user4"], &[NICK])).await;
    assert_eq!(unknown["ErrorCode"], 91002, "{unknown}");

    gw.sim.set_fault(Fault::None);
    let calls = gw.upstream_gets().len();
    let fresh = gw.portrait_get(&known).await;
    assert_eq!(fresh, gw.alone(&known));
    assert!(
        gw.upstream_gets().len() > calls,
        "fetched fresh once Tencent answers"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_account_failures_are_answered_as_tencent_sent_them_not_from_stale_values() {
    let gw = gateway().await;
    let body = get_body(&["user1", FAILING_ACCOUNT], &[NICK]);
    let first = gw.portrait_get(&body).await;
    assert_eq!(first, gw.alone(&body));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = gw.portrait_get(&body).await;
    assert_eq!(
        again,
        gw.alone(&body),
        "the upstream answers: its per-account failure stands"
    );
    assert_eq!(item(&again, FAILING_ACCOUNT)["ResultCode"], 40006);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_older_than_the_stale_limit_are_not_served() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.cache.ttl = Duration::from_millis(500);
            c.cache.stale_while_revalidate = Duration::ZERO;
            c.cache.stale_if_error = Duration::from_millis(500);
            c.upstream.max_retries = 0;
        })
        .start()
        .await;
    let body = get_body(&["user1"], &[NICK]);
    gw.portrait_get(&body).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past TTL + stale limit
    gw.sim.set_fault(Fault::Status(502));
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer["ErrorCode"], 91002, "{answer}");
    gw.shutdown().await;
}
