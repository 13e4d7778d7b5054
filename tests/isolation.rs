//! Isolation: when callers share an upstream call, one caller's bad input (an unknown custom
//! tag, a nonexistent account) fails only that caller, exactly as Tencent would fail it alone.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tim_gateway::sim::{MissingAccount, SimCall};

/// A custom tag the sim does not know: Tencent fails the whole call with 40009.
const UNKNOWN_CUSTOM: &str = "Tag_Profile_Custom_Nope";
/// An account the sim does not have.
const NOBODY: &str = "nobody";
/// Long enough that requests sent together land in one batch, however busy this machine is.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

async fn start_gateway(missing_account: MissingAccount) -> TestGateway {
    TestGateway::builder()
        .config(|c| c.limits.batch_window = BATCH_WINDOW)
        .sim(|s| s.missing_account = missing_account)
        .start()
        .await
}

fn strings(value: &Value, field: &str) -> BTreeSet<String> {
    value[field]
        .as_array()
        .expect("array field")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

fn describe(calls: &[SimCall]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{:?} {:?} -> {}", c.accounts, c.tags, c.error_code))
        .collect()
}

/// The call log shows one merged call naming every caller's accounts that failed with `code`,
/// then each caller's share re-sent alone: `owner`'s failing with `code` again, the others' not.
fn assert_merged_then_resent(calls: &[SimCall], bodies: &[&Value], owner: &Value, code: i64) {
    let log = describe(calls);
    assert_eq!(
        calls.len(),
        1 + bodies.len(),
        "one merged call and one re-send per caller: {log:#?}"
    );
    let merged = &calls[0];
    let everyone: BTreeSet<String> = bodies
        .iter()
        .flat_map(|b| strings(b, "To_Account"))
        .collect();
    assert_eq!(set(&merged.accounts), everyone, "merged call: {log:#?}");
    assert_eq!(merged.error_code, code, "merged call: {log:#?}");
    for body in bodies {
        let (accounts, tags) = (strings(body, "To_Account"), strings(body, "TagList"));
        let resends: Vec<&SimCall> = calls[1..]
            .iter()
            .filter(|c| set(&c.accounts) == accounts && set(&c.tags) == tags)
            .collect();
        assert_eq!(
            resends.len(),
            1,
            "{body} re-sent alone exactly once: {log:#?}"
        );
        let expected = if *body == owner { code } else { 0 };
        assert_eq!(
            resends[0].error_code, expected,
            "re-send of {body}: {log:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_custom_tag_fails_only_its_caller_and_is_then_answered_locally() {
    let gw = start_gateway(MissingAccount::WholeCall).await;
    let a = get_body(&["user1", "user2"], &[NICK, UNKNOWN_CUSTOM]);
    let b = get_body(&["user2", "user3"], &[NICK, CUSTOM]);
    let c = get_body(&["user4", "user1"], &[GENDER]);

    let (got_a, got_b, got_c) = tokio::join!(
        gw.portrait_get(&a),
        gw.portrait_get(&b),
        gw.portrait_get(&c)
    );
    assert_eq!(got_a, gw.alone(&a));
    assert_eq!(got_a["ErrorCode"], 40009);
    assert_eq!(got_b, gw.alone(&b));
    assert_eq!(got_c, gw.alone(&c));
    assert_eq!(got_b["ErrorCode"], 0);
    assert_eq!(got_c["ErrorCode"], 0);
    assert_merged_then_resent(&gw.upstream_gets(), &[&a, &b, &c], &a, 40009);
    assert_eq!(
        gw.metric("tim_gateway_isolation_resends_total").await,
        Some(1.0)
    );

    // Tencent said the tag does not exist: the next caller asking it is answered locally.
    let calls_before = gw.upstream_gets().len();
    let again = get_body(&["user9"], &[UNKNOWN_CUSTOM, GENDER]);
    let got = gw.portrait_get(&again).await;
    assert_eq!(got, gw.alone(&again));
    assert_eq!(got["ErrorCode"], 40009);
    assert_eq!(
        gw.upstream_gets().len(),
        calls_before,
        "the known-missing tag cost an upstream call"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonexistent_account_failing_the_whole_call_fails_only_its_caller() {
    let gw = start_gateway(MissingAccount::WholeCall).await;
    let a = get_body(&[NOBODY, "user1"], &[NICK]);
    let b = get_body(&["user2"], &[NICK]);

    let (got_a, got_b) = tokio::join!(gw.portrait_get(&a), gw.portrait_get(&b));
    assert_eq!(got_a, gw.alone(&a));
    assert_eq!(got_a["ErrorCode"], 40003);
    assert_eq!(got_b, gw.alone(&b));
    assert_eq!(got_b["ErrorCode"], 0);
    assert_merged_then_resent(&gw.upstream_gets(), &[&a, &b], &a, 40003);

    // Nothing about the failed account was cached: asking again asks Tencent again.
    let calls_before = gw.upstream_gets().len();
    assert_eq!(gw.portrait_get(&a).await, gw.alone(&a));
    assert_eq!(gw.upstream_gets().len(), calls_before + 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonexistent_account_failing_per_account_leaves_the_rest_of_the_shared_call_intact() {
    let gw = start_gateway(MissingAccount::PerAccount).await;
    let a = get_body(&[NOBODY, "user1"], &[NICK, GENDER]);
    let b = get_body(&["user2", "user1"], &[NICK]);

    let (got_a, got_b) = tokio::join!(gw.portrait_get(&a), gw.portrait_get(&b));
    assert_eq!(got_a, gw.alone(&a));
    assert_eq!(got_b, gw.alone(&b));
    assert_eq!(got_a["ErrorCode"], 0);
    assert_eq!(got_a["Fail_Account"], json!([NOBODY]));
    assert_eq!(got_a["UserProfileItem"][0]["To_Account"], NOBODY);
    assert_eq!(got_a["UserProfileItem"][0]["ResultCode"], 40003);
    assert_eq!(got_a["UserProfileItem"][1]["ResultCode"], 0);
    assert!(got_b.get("Fail_Account").is_none_or(|f| f == &json!([])));

    let calls = gw.upstream_gets();
    assert_eq!(
        calls.len(),
        1,
        "one shared call, no re-sends: {:#?}",
        describe(&calls)
    );
    assert_eq!(
        set(&calls[0].accounts),
        BTreeSet::from([NOBODY.to_owned(), "user1".to_owned(), "user2".to_owned()])
    );
    assert_eq!(calls[0].error_code, 0);
    gw.shutdown().await;
}
