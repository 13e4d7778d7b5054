//! A per-account "account not found" (40003) is answered locally for
//! `cache.failure_ttl_seconds`, so a hot nonexistent account costs one upstream call per TTL;
//! transient per-account failures (40006) are asked again every time.

mod support;

use std::time::Duration;

use support::*;
use tim_gateway::sim::MissingAccount;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonexistent_account_is_remembered_briefly_and_transient_failures_never() {
    let gw = TestGateway::builder()
        .config(|c| c.cache.failure_ttl = Duration::from_millis(800))
        .sim(|s| s.missing_account = MissingAccount::PerAccount)
        .start()
        .await;
    let missing = get_body(&["user1", "no-such-user"], &[NICK]);
    let first = gw.portrait_get(&missing).await;
    assert_eq!(first, gw.alone(&missing));
    assert_eq!(first["UserProfileItem"][1]["ResultCode"], 40003, "{first}");
    for _ in 0..5 {
        assert_eq!(gw.portrait_get(&missing).await, first);
    }
    assert_eq!(
        gw.upstream_gets().len(),
        1,
        "remembered: no call per request"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(gw.portrait_get(&missing).await, first);
    assert_eq!(gw.upstream_gets().len(), 2, "asked again after failure_ttl");

    let transient = get_body(&[FAILING_ACCOUNT], &[NICK]);
    gw.portrait_get(&transient).await;
    gw.portrait_get(&transient).await;
    assert_eq!(gw.upstream_gets().len(), 4, "40006 is never remembered");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_missing_account_never_hides_an_unknown_custom_tag() {
    let gw = TestGateway::builder()
        .sim(|s| s.missing_account = MissingAccount::PerAccount)
        .start()
        .await;
    let remembered = get_body(&["no-such-user"], &[NICK]);
    let first = gw.portrait_get(&remembered).await;
    assert_eq!(first["UserProfileItem"][0]["ResultCode"], 40003, "{first}");
    // Tencent checks custom tags before accounts: an unknown one fails the whole call (40009).
    let custom = get_body(&["no-such-user"], &[CUSTOM, "Tag_Profile_Custom_Nope"]);
    let answer = gw.portrait_get(&custom).await;
    assert_eq!(answer, gw.alone(&custom));
    assert_eq!(answer["ErrorCode"], 40009, "{answer}");
    // Standard tags alone are still answered from the remembered failure.
    assert_eq!(gw.portrait_get(&remembered).await, first);
    assert_eq!(
        gw.upstream_gets().len(),
        2,
        "the custom-tag request went upstream"
    );
    gw.shutdown().await;
}
