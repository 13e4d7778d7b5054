//! Rendered entries: once an account was answered wholly from the cache for a `TagList`, its
//! answer entry is kept with it and copied whole the next time any body asks it for the same
//! tags. Callers must not be able to tell: the bytes, the counts and the freshness are those of
//! the per-pair path, whatever the tags, their order or repeats, and a set or an expiry is seen
//! at once. The answer cache is off here, so that every repeat takes this path.

mod support;

use std::time::Duration;

use support::*;

const PAIR_HITS: &str = r#"tim_gateway_cache_lookups_total{result="hit"}"#;
const PAIR_ABSENT: &str = r#"tim_gateway_cache_lookups_total{result="absent"}"#;
const RENDERED_BYTES: &str = "tim_gateway_cache_rendered_bytes";

async fn metric(gw: &TestGateway, sample: &str) -> f64 {
    gw.metric(sample).await.unwrap_or(0.0)
}

/// A gateway with the answer cache off and `rendered_entry_bytes` as given.
async fn gateway(rendered_entry_bytes: u64, ttl: Duration) -> TestGateway {
    TestGateway::builder()
        .config(|c| {
            c.cache.answer_cache_bytes = 0;
            c.cache.rendered_entry_bytes = rendered_entry_bytes;
            c.cache.ttl = ttl;
            // Expired values are fetched again before answering, not revalidated behind.
            c.cache.stale_while_revalidate = Duration::ZERO;
        })
        .start()
        .await
}

/// Bodies over overlapping accounts with different tag lists: orders, repeats, a custom tag.
fn mixed_bodies() -> Vec<serde_json::Value> {
    vec![
        get_body(&["user1", "user2", "user3"], &[NICK, GENDER]),
        get_body(&["user3", "user1"], &[NICK, GENDER]),
        get_body(&["user2", "user1", "user2"], &[GENDER, NICK]),
        get_body(&["user1", "user4"], &[NICK, NICK, CUSTOM]),
        get_body(&["user4", "user3"], &[NICK]),
        get_body(&["user1", "user2", "user3", "user4"], &[NICK, GENDER]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_over_many_tag_lists_answer_tencents_bytes_and_count_like_the_per_pair_path() {
    let mut answers = Vec::new();
    let mut counts = Vec::new();
    for budget in [32 << 20, 0] {
        let gw = gateway(budget, Duration::from_secs(300)).await;
        let mut bytes = Vec::new();
        for round in 0..3 {
            for body in mixed_bodies() {
                let answer = gw.portrait_get_bytes(&body).await;
                let parsed: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
                assert_eq!(parsed, gw.alone(&body), "round {round}, body {body}");
                bytes.push(answer);
            }
        }
        let rendered = metric(&gw, RENDERED_BYTES).await;
        match budget {
            0 => assert_eq!(rendered, 0.0, "nothing rendered with a zero budget"),
            _ => assert!(rendered > 0.0, "entries were rendered"),
        }
        counts.push((
            metric(&gw, PAIR_HITS).await,
            metric(&gw, PAIR_ABSENT).await,
            gw.upstream_gets().len(),
        ));
        answers.push(bytes);
        gw.shutdown().await;
    }
    assert_eq!(
        answers[0], answers[1],
        "the same bytes with and without rendered entries"
    );
    assert_eq!(
        counts[0], counts[1],
        "the same lookups counted and the same upstream calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_seen_by_the_next_body_asking_for_its_account() {
    let gw = gateway(32 << 20, Duration::from_secs(300)).await;
    let body = get_body(&["user5", "user6"], &[NICK, GENDER]);
    let other = get_body(&["user6", "user5"], &[NICK, GENDER]);
    for _ in 0..3 {
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    }
    let set = r#"{"From_Account":"user5","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"renamed"}]}"#;
    let answer = gw.post_raw(SET, set).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    let answer = gw.portrait_get(&other).await;
    assert_eq!(answer, gw.alone(&other));
    assert!(answer.to_string().contains("\"renamed\""), "{answer}");
    let last = gw.upstream_gets().pop().expect("a refetch");
    assert_eq!(last.accounts, ["user5"], "user6's entry was still good");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_entry_goes_stale_with_its_oldest_value() {
    let gw = gateway(32 << 20, Duration::from_secs(2)).await;
    gw.portrait_get(&get_body(&["user1"], &[NICK])).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // NICK was stored a second before GENDER: the entry must go stale with NICK.
    let body = get_body(&["user1"], &[NICK, GENDER]);
    for _ in 0..3 {
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    }
    assert_eq!(gw.upstream_gets().len(), 2);
    assert!(metric(&gw, RENDERED_BYTES).await > 0.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Another body, so that nothing but the account's entry could answer it.
    let again = get_body(&["user1", "user1"], &[NICK, GENDER]);
    assert_eq!(gw.portrait_get(&again).await, gw.alone(&again));
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 3, "the stale entry was served: {calls:?}");
    assert_eq!(calls[2].tags, [NICK], "GENDER was still fresh: {calls:?}");
    gw.shutdown().await;
}
