//! Drop-in equality: the gateway answers each portrait_get exactly as the sim answers it alone.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::*;
use tim_gateway::sim::MissingAccount;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_one_tag_equals_tencent_alone() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user1"], &[NICK]);
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_accounts_four_tags_with_a_per_account_failure_equals_tencent_alone() {
    let gw = TestGateway::start().await;
    let body = get_body(
        &["user1", FAILING_ACCOUNT, "user2", "user3"],
        &[NICK, GENDER, BIRTHDAY, CUSTOM],
    );
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    assert_eq!(answer["Fail_Account"], json!([FAILING_ACCOUNT]));
    assert_eq!(answer["UserProfileItem"][1]["ResultCode"], 40006);
    gw.shutdown().await;
}

// --- helpers ---

/// Whether the sim fails every read of `user{n}` (40006).
fn read_fails(n: u64) -> bool {
    n % 97 == 13
}

/// The first readable account `user{n}` (n >= `from`) for which `tags` are all unset.
fn account_with_unset(gw: &TestGateway, from: u64, tags: &[&str]) -> String {
    (from..from + 100_000)
        .filter(|n| !read_fails(*n))
        .map(|n| format!("user{n}"))
        .find(|a| tags.iter().all(|t| gw.sim.profile_value(a, t).is_none()))
        .unwrap_or_else(|| panic!("no account from user{from} has {tags:?} all unset"))
}

/// The first readable account `user{n}` (n >= `from`) for which `tag` is set.
fn account_with_set(gw: &TestGateway, from: u64, tag: &str) -> String {
    (from..from + 100_000)
        .filter(|n| !read_fails(*n))
        .map(|n| format!("user{n}"))
        .find(|a| gw.sim.profile_value(a, tag).is_some())
        .unwrap_or_else(|| panic!("no account from user{from} has {tag} set"))
}

fn entries(answer: &Value) -> &Vec<Value> {
    answer["UserProfileItem"]
        .as_array()
        .unwrap_or_else(|| panic!("no UserProfileItem: {answer}"))
}

// --- absent tags ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_tags_are_left_out_as_tencent_leaves_them_out() {
    let gw = TestGateway::start().await;
    let no_nick = account_with_unset(&gw, 1, &[NICK]);
    let has_nick = account_with_set(&gw, 1, NICK);
    let body = get_body(&[&no_nick, &has_nick], &[NICK, GENDER, BIRTHDAY]);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    let tags_of = |i: usize| -> Vec<Value> {
        entries(&answer)[i]["ProfileItem"]
            .as_array()
            .expect("ProfileItem")
            .iter()
            .map(|item| item["Tag"].clone())
            .collect()
    };
    assert!(!tags_of(0).contains(&json!(NICK)), "{answer}");
    assert!(tags_of(1).contains(&json!(NICK)), "{answer}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_with_every_requested_tag_unset_gets_an_empty_profile_item() {
    let gw = TestGateway::start().await;
    let tags = [NICK, GENDER, BIRTHDAY];
    let empty = account_with_unset(&gw, 1, &tags);
    let body = get_body(&["user1", &empty], &tags);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    let entry = &entries(&answer)[1];
    assert_eq!(entry["To_Account"], json!(empty));
    assert_eq!(entry["ProfileItem"], json!([]), "{answer}");
    assert_eq!(entry["ResultCode"], 0);
    // Answered again from the cache, still with the empty list.
    assert_eq!(gw.portrait_get(&body).await, answer);
    assert_eq!(gw.upstream_gets().len(), 1);
    gw.shutdown().await;
}

// --- duplicates ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_accounts_and_tags_are_answered_once_per_occurrence_in_order() {
    let gw = TestGateway::start().await;
    let nick_set = account_with_set(&gw, 1, NICK);
    let accounts = [
        nick_set.as_str(),
        "user2",
        FAILING_ACCOUNT,
        nick_set.as_str(),
        FAILING_ACCOUNT,
    ];
    let tags = [NICK, GENDER, NICK, BIRTHDAY, GENDER];
    let body = get_body(&accounts, &tags);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    let names: Vec<&str> = entries(&answer)
        .iter()
        .map(|e| e["To_Account"].as_str().expect("To_Account"))
        .collect();
    assert_eq!(names, accounts);
    assert_eq!(
        answer["Fail_Account"],
        json!([FAILING_ACCOUNT, FAILING_ACCOUNT])
    );
    let nicks = entries(&answer)[0]["ProfileItem"]
        .as_array()
        .expect("ProfileItem")
        .iter()
        .filter(|item| item["Tag"] == NICK)
        .count();
    assert_eq!(nicks, 2, "Nick asked twice is answered twice: {answer}");
    // Upstream, each (account, tag) is asked for once.
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let unique: HashSet<&String> = calls[0].accounts.iter().collect();
    assert_eq!(unique.len(), calls[0].accounts.len(), "{calls:?}");
    assert_eq!(unique.len(), 3, "{calls:?}");
    let unique_tags: HashSet<&String> = calls[0].tags.iter().collect();
    assert_eq!(unique_tags.len(), calls[0].tags.len(), "{calls:?}");
    assert_eq!(unique_tags.len(), 3, "{calls:?}");
    gw.shutdown().await;
}

// --- caching ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_from_the_cache_without_an_upstream_call() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user1", "user2", "user3"], &[NICK, GENDER, CUSTOM]);
    let first = gw.portrait_get_bytes(&body).await;
    assert_eq!(gw.upstream_gets().len(), 1);
    let second = gw.portrait_get_bytes(&body).await;
    assert_eq!(gw.upstream_gets().len(), 1, "the repeat went upstream");
    assert_eq!(first, second, "cached answer differs from the first");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_hit_fetches_only_the_missing_tags() {
    let gw = TestGateway::start().await;
    let accounts = ["user1", "user2"];
    gw.portrait_get(&get_body(&accounts, &[NICK])).await;
    let body = get_body(&accounts, &[NICK, GENDER]);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].tags, vec![GENDER.to_string()], "{calls:?}");
    let asked: HashSet<&str> = calls[1].accounts.iter().map(String::as_str).collect();
    assert_eq!(asked, HashSet::from(accounts), "{calls:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_hit_fetches_only_the_missing_accounts() {
    let gw = TestGateway::start().await;
    gw.portrait_get(&get_body(&["user1"], &[NICK, GENDER]))
        .await;
    let body = get_body(&["user1", "user2"], &[NICK, GENDER]);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].accounts, vec!["user2".to_string()], "{calls:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_tag_is_cached_as_absent() {
    let gw = TestGateway::start().await;
    let account = account_with_unset(&gw, 1, &[NICK]);
    let body = get_body(&[&account], &[NICK]);
    let first = gw.portrait_get(&body).await;
    assert_eq!(first, gw.alone(&body));
    assert_eq!(entries(&first)[0]["ProfileItem"], json!([]), "{first}");
    let second = gw.portrait_get(&body).await;
    assert_eq!(second, first);
    assert_eq!(gw.upstream_gets().len(), 1, "absence was not cached");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_account_failures_are_not_cached() {
    let gw = TestGateway::start().await;
    let body = get_body(&[FAILING_ACCOUNT], &[NICK]);
    let alone = gw.alone(&body);
    assert_eq!(gw.portrait_get(&body).await, alone);
    assert_eq!(gw.portrait_get(&body).await, alone);
    let calls = gw.upstream_gets();
    assert_eq!(
        calls.len(),
        2,
        "a per-account failure was cached: {calls:?}"
    );
    assert!(calls
        .iter()
        .all(|c| c.accounts == vec![FAILING_ACCOUNT.to_string()]));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_values_expire_after_the_configured_ttl() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.cache.ttl = Duration::from_secs(1);
            // Expired values are fetched again before answering, not revalidated behind.
            c.cache.stale_while_revalidate = Duration::ZERO;
        })
        .start()
        .await;
    let body = get_body(&["user1", "user2"], &[NICK, GENDER]);
    let alone = gw.alone(&body);
    assert_eq!(gw.portrait_get(&body).await, alone);
    assert_eq!(gw.portrait_get(&body).await, alone);
    assert_eq!(gw.upstream_gets().len(), 1, "not cached within the TTL");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(gw.portrait_get(&body).await, alone);
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 2, "still cached after the TTL: {calls:?}");
    gw.shutdown().await;
}

// --- batching ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_respect_max_accounts_per_batch() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.max_accounts_per_batch = 10)
        .start()
        .await;
    let names: Vec<String> = (100..135).map(|n| format!("user{n}")).collect();
    let accounts: Vec<&str> = names.iter().map(String::as_str).collect();
    let body = get_body(&accounts, &[NICK, GENDER]);
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 4, "35 accounts in batches of 10: {calls:?}");
    assert!(
        calls.iter().all(|c| c.accounts.len() <= 10),
        "a call exceeded 10 accounts: {calls:?}"
    );
    let mut asked: Vec<&str> = calls
        .iter()
        .flat_map(|c| c.accounts.iter().map(String::as_str))
        .collect();
    asked.sort_unstable();
    let mut expected = accounts.clone();
    expected.sort_unstable();
    assert_eq!(asked, expected, "each account asked exactly once");
    gw.shutdown().await;
}

// --- accounts and values on the wire ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_account_ids_fail_the_whole_call_as_tencent_does() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user1", "用户😀", "user2"], &[NICK]);
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer, gw.alone(&body));
    assert_eq!(answer["ActionStatus"], "FAIL");
    assert_eq!(answer["ErrorCode"], 40003);
    let after = get_body(&["user1"], &[NICK]);
    assert_eq!(gw.portrait_get(&after).await, gw.alone(&after));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_and_escaped_account_ids_reach_tencent_and_come_back_intact() {
    let gw = TestGateway::builder()
        .sim(|s| s.missing_account = MissingAccount::PerAccount)
        .start()
        .await;
    let odd = ["用户😀", "quote\"back\\slash", "tab\tnewline\n", "é"];
    let accounts = ["user1", odd[0], odd[1], "user2", odd[2], odd[3]];
    let body = get_body(&accounts, &[NICK, GENDER]);
    let bytes = gw.portrait_get_bytes(&body).await;
    let alone = gw.sim.answer_portrait_get(body.to_string().as_bytes());
    assert_eq!(
        bytes,
        Bytes::from(alone),
        "gateway:\n{}\nsim:\n{}",
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&gw.sim.answer_portrait_get(body.to_string().as_bytes()))
    );
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["Fail_Account"], json!(odd));
    let asked: HashSet<String> = gw
        .upstream_gets()
        .into_iter()
        .flat_map(|c| c.accounts)
        .collect();
    for account in accounts {
        assert!(asked.contains(account), "{account:?} not asked: {asked:?}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_byte_for_byte_as_tencent_sent_them() {
    let gw = TestGateway::start().await;
    // user0, user7, ...: non-ASCII nicks; signatures hold non-ASCII, newlines and quotes.
    let names: Vec<String> = (0..40).map(|n| format!("user{n}")).collect();
    let accounts: Vec<&str> = names.iter().map(String::as_str).collect();
    let tags = [
        NICK,
        "Tag_Profile_IM_SelfSignature",
        BIRTHDAY,
        "Tag_Profile_IM_Language",
        CUSTOM,
        GENDER,
    ];
    let body = get_body(&accounts, &tags);
    let expected = Bytes::from(gw.sim.answer_portrait_get(body.to_string().as_bytes()));
    let text = String::from_utf8_lossy(&expected).into_owned();
    assert!(
        text.contains("昵称") && text.contains("\\n") && text.contains("\\\""),
        "fixture lacks the tricky values: {text}"
    );
    let cold = gw.portrait_get_bytes(&body).await;
    assert_eq!(
        cold,
        expected,
        "cold answer differs:\n{}",
        String::from_utf8_lossy(&cold)
    );
    let warm = gw.portrait_get_bytes(&body).await;
    assert_eq!(
        warm,
        expected,
        "cached answer differs:\n{}",
        String::from_utf8_lossy(&warm)
    );
    // Only user13's per-account failure, which is never cached, is asked for again.
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].accounts, vec![FAILING_ACCOUNT.to_string()]);
    gw.shutdown().await;
}
