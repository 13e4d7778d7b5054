//! portrait_set: forwarded untouched with the upstream's answer returned as is; it drops the
//! account's cached tags (even when it fails), and a fetch that started before it never puts
//! older values back into the cache.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::Value;
use support::*;
use tim_gateway::sim::Api;

/// The sim's (Tencent's) answer to a successful portrait_set, byte for byte.
const SET_OK: &str = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""}"#;

/// A portrait_set body setting one tag to `value` (raw JSON text, kept as written).
fn set_body(account: &str, tag: &str, value: &str) -> String {
    format!(r#"{{"From_Account":"{account}","ProfileItem":[{{"Tag":"{tag}","Value":{value}}}]}}"#)
}

/// POSTs a portrait_set body; returns the gateway's answer bytes (HTTP 200 checked).
async fn set_raw(gw: &TestGateway, body: impl Into<Bytes>) -> Bytes {
    gw.post_bytes(SET, body).await
}

/// The value of `tag` in the first account of a portrait_get answer.
fn value_in(answer: &Value, tag: &str) -> Value {
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    answer["UserProfileItem"][0]["ProfileItem"]
        .as_array()
        .expect("ProfileItem")
        .iter()
        .find(|item| item["Tag"] == tag)
        .map(|item| item["Value"].clone())
        .unwrap_or(Value::Null)
}

/// The sim's current value of (account, tag), parsed.
fn sim_value(gw: &TestGateway, account: &str, tag: &str) -> Value {
    gw.sim
        .profile_value(account, tag)
        .map(|text| serde_json::from_str(&text).expect("sim value is JSON"))
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_is_forwarded_untouched_and_the_upstream_answer_is_returned_as_is() {
    let gw = TestGateway::start().await;
    // Escapes and spacing a re-encoding would change: the sim stores the raw JSON it received.
    let raw_value = r#""caf\u00e9 \u2713  \"quoted\"""#;
    let body = set_body("user5", CUSTOM, raw_value);
    let answer = set_raw(&gw, body).await;
    assert_eq!(answer, SET_OK.as_bytes(), "the sim's answer, byte for byte");
    assert_eq!(
        gw.sim.profile_value("user5", CUSTOM).as_deref(),
        Some(raw_value),
        "the value reached the sim exactly as the caller wrote it"
    );
    let sets: Vec<_> = gw
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.api == Api::PortraitSet)
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].accounts, ["user5"]);
    assert_eq!(sets[0].tags, [CUSTOM]);
    let get = get_body(&["user5"], &[NICK, CUSTOM]);
    let got = gw.portrait_get(&get).await;
    assert_eq!(got, gw.alone(&get));
    assert_eq!(value_in(&got, CUSTOM), "caf\u{e9} \u{2713}  \"quoted\"");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_get_returns_the_new_value_through_a_new_upstream_fetch() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user5"], &[NICK, GENDER]);
    let before = gw.portrait_get(&body).await;
    assert_eq!(before, gw.alone(&body));
    assert_eq!(gw.portrait_get(&body).await, before, "cached");
    assert_eq!(
        gw.upstream_gets().len(),
        1,
        "the second get was a cache hit"
    );

    let answer = set_raw(&gw, set_body("user5", NICK, r#""renamed""#)).await;
    assert_eq!(answer, SET_OK.as_bytes());
    assert_eq!(sim_value(&gw, "user5", NICK), "renamed");

    let after = gw.portrait_get(&body).await;
    assert_eq!(value_in(&after, NICK), "renamed");
    assert_eq!(after, gw.alone(&body));
    assert_eq!(gw.upstream_gets().len(), 2, "the set dropped user5's tags");
    let last = gw.upstream_gets().pop().expect("a call");
    assert_eq!(last.accounts, ["user5"]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_leaves_other_accounts_cached() {
    let gw = TestGateway::start().await;
    let other = get_body(&["user6", "user7"], &[NICK, GENDER]);
    let mine = get_body(&["user5"], &[NICK, GENDER]);
    let other_before = gw.portrait_get(&other).await;
    gw.portrait_get(&mine).await;
    let calls = gw.upstream_gets().len();

    let answer = set_raw(&gw, set_body("user5", NICK, r#""renamed""#)).await;
    assert_eq!(answer, SET_OK.as_bytes());

    assert_eq!(gw.portrait_get(&other).await, other_before);
    assert_eq!(
        gw.upstream_gets().len(),
        calls,
        "user6 and user7 are still answered from the cache"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_set_with_an_unknown_custom_tag_is_returned_as_is_and_still_invalidates() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user5"], &[NICK]);
    gw.portrait_get(&body).await;
    assert_eq!(gw.upstream_gets().len(), 1);

    let answer = set_raw(&gw, set_body("user5", "Tag_Profile_Custom_Nope", r#""x""#)).await;
    let expected: &[u8] = br#"{"ActionStatus":"FAIL","ErrorCode":40009,"ErrorInfo":"Err_Profile_Tag_Not_Found","ErrorDisplay":""}"#;
    assert_eq!(
        answer,
        expected,
        "the sim's FAIL answer, byte for byte: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(gw.sim.call_count(Api::PortraitSet), 1, "it was forwarded");

    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    assert_eq!(
        gw.upstream_gets().len(),
        2,
        "a failed set may have partly applied: user5 is fetched again"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_for_a_nonexistent_account_returns_tencents_40003_as_is() {
    let gw = TestGateway::start().await;
    let answer = set_raw(&gw, set_body("nobody", NICK, r#""x""#)).await;
    let expected: &[u8] = br#"{"ActionStatus":"FAIL","ErrorCode":40003,"ErrorInfo":"Err_Profile_Account_Not_Found","ErrorDisplay":""}"#;
    assert_eq!(answer, expected, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(gw.sim.call_count(Api::PortraitSet), 1, "it was forwarded");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_set_bodies_get_40001_locally_without_an_upstream_call() {
    let gw = TestGateway::start().await;
    let bad_bodies = [
        "not json",
        "",
        "[]",
        r#"{"ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"x"}]}"#,
        r#"{"From_Account":"","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"x"}]}"#,
        r#"{"From_Account":"user5"}"#,
        r#"{"From_Account":"user5","ProfileItem":[]}"#,
        r#"{"From_Account":5,"ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"x"}]}"#,
    ];
    for body in bad_bodies {
        let answer = set_raw(&gw, body).await;
        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(answer["ActionStatus"], "FAIL", "{body}: {answer}");
        assert_eq!(answer["ErrorCode"], 40001, "{body}: {answer}");
    }
    assert_eq!(
        gw.sim.call_count(Api::PortraitSet),
        0,
        "bad bodies are answered by the gateway"
    );
    gw.shutdown().await;
}

/// The sim reads a profile when a call arrives and only then sleeps its latency. So: start a
/// cold get of user5 with 800 ms of sim latency; once the sim has read (old) data for it, drop
/// the latency and set user5's Nick, which completes at once, while the first fetch is still
/// in flight; with `get_during`, get user5 again right after the set and return its answer.
/// The first get's answer, carrying the old Nick, arrives after the set.
async fn race_a_set_against_an_inflight_get(gw: &TestGateway, get_during: bool) -> Option<Value> {
    let old = sim_value(gw, "user5", NICK);
    assert_ne!(old, Value::Null, "user5 has a Nick to replace");
    let body = get_body(&["user5"], &[NICK]);
    let first_done = AtomicBool::new(false);
    gw.sim.set_latency(Duration::from_millis(800));
    let (first, during) = tokio::join!(
        async {
            let answer = gw.portrait_get(&body).await;
            first_done.store(true, Ordering::SeqCst);
            answer
        },
        async {
            let sim = &gw.sim;
            let arrived = eventually(Duration::from_secs(2), move || async move {
                sim.call_count(Api::PortraitGet) == 1
            })
            .await;
            assert!(arrived, "the first get reached the sim");
            // The sim logs a call after reading its data and just before sleeping.
            tokio::time::sleep(Duration::from_millis(50)).await;
            gw.sim.set_latency(Duration::ZERO);
            let answer = set_raw(gw, set_body("user5", NICK, r#""new""#)).await;
            assert_eq!(answer, SET_OK.as_bytes());
            assert!(
                !first_done.load(Ordering::SeqCst),
                "race setup: the set finished while the first fetch was in flight"
            );
            if get_during {
                Some(gw.portrait_get(&body).await)
            } else {
                None
            }
        }
    );
    assert_eq!(
        value_in(&first, NICK),
        old,
        "race setup: the first fetch carried the value from before the set"
    );
    during
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_started_before_a_set_does_not_write_its_older_value_into_the_cache() {
    let gw = TestGateway::start().await;
    race_a_set_against_an_inflight_get(&gw, false).await;
    // Nothing but the first fetch's answer could have filled the cache since the set.
    let body = get_body(&["user5"], &[NICK]);
    for _ in 0..3 {
        let later = gw.portrait_get(&body).await;
        assert_eq!(value_in(&later, NICK), "new", "{later}");
        assert_eq!(later, gw.alone(&body));
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sent_after_a_set_does_not_join_a_fetch_started_before_it() {
    let gw = TestGateway::start().await;
    let during = race_a_set_against_an_inflight_get(&gw, true)
        .await
        .expect("a get during the first fetch");
    // It may wait for the older fetch to end first; it must not take that fetch's answer.
    assert_eq!(value_in(&during, NICK), "new", "{during}");
    let gets = gw.upstream_gets();
    assert_eq!(gets.len(), 2, "the second get made its own upstream call");
    let set_at = gw
        .sim
        .calls()
        .into_iter()
        .find(|c| c.api == Api::PortraitSet)
        .expect("the set reached the sim")
        .at;
    assert!(
        gets[1].at > set_at,
        "its call reached the sim after the set"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_get_sent_after_a_set_answered_returns_the_new_value_under_concurrent_gets() {
    let gw = TestGateway::start().await;
    gw.sim.set_latency(Duration::from_millis(40));
    let body = get_body(&["user5", "user6"], &[NICK, GENDER]);
    let old = sim_value(&gw, "user5", NICK);
    let set_answered: parking_lot::Mutex<Option<Instant>> = parking_lot::Mutex::new(None);
    let give_up = Instant::now() + Duration::from_secs(10);
    // Keep getting until 300 ms after the set was answered.
    let keep_going = || {
        let answered = *set_answered.lock();
        let now = Instant::now();
        now < give_up && answered.is_none_or(|at| now < at + Duration::from_millis(300))
    };
    let getter = |_| async {
        let mut seen = Vec::new();
        while keep_going() {
            let started = Instant::now();
            let answer = gw.portrait_get(&body).await;
            seen.push((started, value_in(&answer, NICK)));
        }
        seen
    };
    let (gets, ()) = tokio::join!(join_all((0..8).map(getter)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = set_raw(&gw, set_body("user5", NICK, r#""new""#)).await;
        assert_eq!(answer, SET_OK.as_bytes());
        *set_answered.lock() = Some(Instant::now());
    });
    let set_answered = set_answered.lock().expect("the set was answered");
    let mut after = 0;
    for (started, value) in gets.into_iter().flatten() {
        if started > set_answered {
            after += 1;
            assert_eq!(value, "new", "a get started after the set answered");
        } else {
            assert!(value == old || value == "new", "{value}");
        }
    }
    assert!(after > 0, "some gets started after the set");
    gw.shutdown().await;
}
