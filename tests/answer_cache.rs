//! The answer cache: a body answered wholly from the cache before is served again as a whole,
//! byte for byte what Tencent answers, until the first of its (account, tag) values goes stale
//! or any of its accounts is invalidated; answers holding a per-account failure are never kept.
//! A body's answer is kept on its second all-hit sighting (most bodies are never sent twice).

mod support;

use std::time::Duration;

use support::*;

const ANSWER_HITS: &str = r#"tim_gateway_answer_cache_requests_total{result="hit"}"#;
const ANSWER_MISSES: &str = r#"tim_gateway_answer_cache_requests_total{result="miss"}"#;
const PAIR_HITS: &str = r#"tim_gateway_cache_lookups_total{result="hit"}"#;
const PAIR_ABSENT: &str = r#"tim_gateway_cache_lookups_total{result="absent"}"#;

async fn metric(gw: &TestGateway, sample: &str) -> f64 {
    gw.metric(sample).await.unwrap_or(0.0)
}

/// (account, tag) lookups answered from the cache, with a value or as unset.
async fn pairs_from_cache(gw: &TestGateway) -> f64 {
    metric(gw, PAIR_HITS).await + metric(gw, PAIR_ABSENT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_answered_from_the_cache_before_is_served_whole_with_tencents_bytes() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user3", "user1", "user3"], &[GENDER, NICK, CUSTOM, NICK]);
    let alone = gw.alone(&body).to_string();
    let cold = gw.portrait_get_bytes(&body).await;
    let first_sighting = gw.portrait_get_bytes(&body).await;
    let per_pair = gw.portrait_get_bytes(&body).await;
    assert_eq!(first_sighting, per_pair);
    let pairs_before = pairs_from_cache(&gw).await;
    assert_eq!(
        metric(&gw, ANSWER_HITS).await,
        0.0,
        "kept on the second sighting"
    );
    let whole = gw.portrait_get_bytes(&body).await;
    for answer in [&cold, &per_pair, &whole] {
        let parsed: serde_json::Value = serde_json::from_slice(answer).expect("JSON");
        assert_eq!(parsed.to_string(), alone);
    }
    assert_eq!(whole, per_pair, "the same bytes as the per-pair path");
    assert_eq!(metric(&gw, ANSWER_HITS).await, 1.0);
    assert_eq!(metric(&gw, ANSWER_MISSES).await, 3.0);
    assert_eq!(
        pairs_from_cache(&gw).await - pairs_before,
        6.0,
        "a whole answer still counts its 2 accounts x 3 distinct tags as pair hits"
    );
    assert_eq!(gw.upstream_gets().len(), 1);
    let held = metric(&gw, "tim_gateway_answer_cache_bytes").await;
    assert!(
        held > whole.len() as f64,
        "the size gauge counts the kept answer: {held}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_voids_every_kept_answer_holding_its_account_and_no_other() {
    let gw = TestGateway::start().await;
    let both = get_body(&["user5", "user6"], &[NICK]);
    let reversed = get_body(&["user6", "user5"], &[NICK]);
    let other = get_body(&["user7"], &[NICK]);
    for body in [&both, &reversed, &other] {
        for _ in 0..4 {
            gw.portrait_get(body).await;
        }
    }
    let hits = metric(&gw, ANSWER_HITS).await;
    assert_eq!(
        hits, 4.0,
        "each body's fourth call was answered whole, and `reversed` (all hits at once) its third"
    );

    let set = r#"{"From_Account":"user5","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"renamed"}]}"#;
    let answer = gw.post_raw(SET, set).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");

    for body in [&both, &reversed] {
        let answer = gw.portrait_get(body).await;
        assert_eq!(answer, gw.alone(body));
        assert!(answer.to_string().contains("\"renamed\""), "{answer}");
    }
    assert_eq!(gw.portrait_get(&other).await, gw.alone(&other));
    assert_eq!(
        metric(&gw, ANSWER_HITS).await,
        hits + 1.0,
        "only the answer without user5 was served whole"
    );
    let last = gw.upstream_gets().pop().expect("a refetch");
    assert_eq!(last.accounts, ["user5"], "only user5 was fetched again");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_expires_with_its_oldest_value() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.cache.ttl = Duration::from_secs(2);
            // Expired values are fetched again before answering, not revalidated behind.
            c.cache.stale_while_revalidate = Duration::ZERO;
        })
        .start()
        .await;
    gw.portrait_get(&get_body(&["user1"], &[NICK])).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // NICK was stored a second before GENDER: the answer must go stale with NICK.
    let body = get_body(&["user1"], &[NICK, GENDER]);
    for _ in 0..4 {
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    }
    assert_eq!(metric(&gw, ANSWER_HITS).await, 1.0);
    assert_eq!(gw.upstream_gets().len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 3, "the stale answer was served: {calls:?}");
    assert_eq!(calls[2].tags, [NICK], "GENDER was still fresh: {calls:?}");
    assert_eq!(metric(&gw, ANSWER_HITS).await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_a_per_account_failure_is_never_kept() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user1", FAILING_ACCOUNT], &[NICK]);
    for _ in 0..3 {
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    }
    assert_eq!(metric(&gw, ANSWER_HITS).await, 0.0);
    assert_eq!(
        gw.upstream_gets().len(),
        3,
        "the failing account is asked again every time"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_layer_off_repeats_are_answered_per_pair() {
    let gw = TestGateway::builder()
        .config(|c| c.cache.answer_cache_bytes = 0)
        .start()
        .await;
    let body = get_body(&["user1", "user2"], &[NICK, GENDER]);
    for _ in 0..3 {
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    }
    assert_eq!(metric(&gw, ANSWER_HITS).await, 0.0);
    assert_eq!(metric(&gw, ANSWER_MISSES).await, 0.0);
    assert_eq!(pairs_from_cache(&gw).await, 8.0);
    assert_eq!(gw.upstream_gets().len(), 1);
    gw.shutdown().await;
}
