//! Caller auth: Tencent's codes, nothing upstream on failure, upstream signed as the gateway.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::*;
use tim_gateway::config::AuthMode;
use tim_gateway::sim::DEMO_SECRET_KEY;

// --- helpers ---

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A query in the Java SDK's parameter order.
fn query(sdkappid: &str, identifier: &str, usersig: &str) -> String {
    format!(
        "random=99&usersig={usersig}&sdkappid={sdkappid}&identifier={identifier}&contenttype=json"
    )
}

/// POSTs a good body to portrait_get with `query`; expects HTTP 200 and JSON.
async fn get_with_query(gw: &TestGateway, query: &str) -> Value {
    let body = get_body(&["user1"], &[NICK]).to_string();
    let path = if query.is_empty() {
        GET.to_string()
    } else {
        format!("{GET}?{query}")
    };
    let (status, bytes) = gw.send("POST", &path, body).await;
    assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{query}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn assert_refused(answer: &Value, code: i64, case: &str) {
    assert_eq!(answer["ActionStatus"], "FAIL", "{case}: {answer}");
    assert_eq!(answer["ErrorCode"], code, "{case}: {answer}");
    assert!(
        !answer["ErrorInfo"].as_str().unwrap_or_default().is_empty(),
        "{case}: empty ErrorInfo: {answer}"
    );
}

fn assert_served(gw: &TestGateway, answer: &Value, case: &str) {
    let body = get_body(&["user1"], &[NICK]);
    assert_eq!(answer, &gw.alone(&body), "{case}");
}

// --- failures ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_failure_gets_tencents_code_and_makes_no_upstream_call() {
    let gw = TestGateway::start().await;
    let app = SDKAPPID.to_string();
    let good = admin_usersig();
    let t = now();
    let other_key = tim_gateway::usersig::sign(SDKAPPID, "another-key", ADMIN, t, 86_400);
    let for_someone = usersig_for("someone", DEMO_SECRET_KEY, 86_400);
    let expired = tim_gateway::usersig::sign(SDKAPPID, DEMO_SECRET_KEY, ADMIN, t - 3_600, 60);
    let other_app = tim_gateway::usersig::sign(SDKAPPID + 1, DEMO_SECRET_KEY, ADMIN, t, 86_400);
    let cases: Vec<(&str, String, i64)> = vec![
        (
            "missing sdkappid",
            format!("random=1&usersig={good}&identifier={ADMIN}&contenttype=json"),
            60012,
        ),
        ("non-numeric sdkappid", query("14000x", ADMIN, &good), 60025),
        ("other sdkappid", query("1400000001", ADMIN, &good), 70014),
        (
            "missing identifier",
            format!("random=1&usersig={good}&sdkappid={app}&contenttype=json"),
            60025,
        ),
        (
            "identifier not an admin",
            query(&app, "someone", &for_someone),
            40004,
        ),
        (
            "missing usersig",
            format!("random=1&sdkappid={app}&identifier={ADMIN}&contenttype=json"),
            70002,
        ),
        ("empty usersig", query(&app, ADMIN, ""), 70002),
        ("garbage usersig", query(&app, ADMIN, "garbage"), 70003),
        (
            "usersig signed with another key",
            query(&app, ADMIN, &other_key),
            70009,
        ),
        ("expired usersig", query(&app, ADMIN, &expired), 70001),
        (
            "usersig of another identifier",
            query(&app, ADMIN, &for_someone),
            70013,
        ),
        (
            "usersig of another sdkappid",
            query(&app, ADMIN, &other_app),
            70014,
        ),
        ("no query at all", String::new(), 60012),
    ];
    for (case, q, code) in cases {
        let answer = get_with_query(&gw, &q).await;
        assert_refused(&answer, code, case);
        assert!(gw.sim.calls().is_empty(), "{case}: went upstream");
    }
    // The gateway still serves a good caller.
    let answer = get_with_query(&gw, &query(&app, ADMIN, &good)).await;
    assert_served(&gw, &answer, "after the refusals");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_checked_before_the_body_is_validated() {
    let gw = TestGateway::start().await;
    let (status, bytes) = gw
        .send(
            "POST",
            &format!("{GET}?{}", query("1400000000", ADMIN, "garbage")),
            "not json",
        )
        .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_refused(&answer, 70003, "garbage usersig with a bad body");
    assert!(gw.sim.calls().is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_identifier_gets_60025_as_a_missing_one() {
    let gw = TestGateway::start().await;
    let answer = get_with_query(&gw, &query("1400000000", "", &admin_usersig())).await;
    assert_refused(&answer, 60025, "empty identifier");
    assert!(gw.sim.calls().is_empty());
    gw.shutdown().await;
}

// --- accepted ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_are_accepted_in_any_order() {
    let gw = TestGateway::start().await;
    let sig = admin_usersig();
    let app = SDKAPPID;
    let orders = [
        // Tencent's Java SDK.
        format!("random=7&usersig={sig}&sdkappid={app}&identifier={ADMIN}&contenttype=json"),
        // Tencent's documentation.
        format!("sdkappid={app}&identifier={ADMIN}&usersig={sig}&random=7&contenttype=json"),
        format!("contenttype=json&identifier={ADMIN}&random=7&sdkappid={app}&usersig={sig}"),
        // Without the optional parameters.
        format!("identifier={ADMIN}&usersig={sig}&sdkappid={app}"),
    ];
    for q in &orders {
        let answer = get_with_query(&gw, q).await;
        assert_served(&gw, &answer, q);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mode_none_accepts_a_request_without_a_query() {
    let gw = TestGateway::builder()
        .config(|c| c.auth.mode = AuthMode::None)
        .start()
        .await;
    let answer = get_with_query(&gw, "").await;
    assert_served(&gw, &answer, "no query");
    // Nonsense credentials are not looked at either.
    let answer = get_with_query(&gw, "sdkappid=abc&usersig=garbage").await;
    assert_served(&gw, &answer, "nonsense query");
    assert_eq!(gw.upstream_gets().len(), 1, "the second was a cache hit");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_usersig_is_not_forwarded_upstream() {
    // The gateway admits "ops"; the sim (Tencent) knows only "administrator" and would refuse
    // "ops" with 40004. Success means the gateway called upstream as itself.
    let gw = TestGateway::builder()
        .config(|c| c.auth.admins = vec![ADMIN.to_string(), "ops".to_string()])
        .start()
        .await;
    let sig = usersig_for("ops", DEMO_SECRET_KEY, 86_400);
    let answer = get_with_query(&gw, &query(&SDKAPPID.to_string(), "ops", &sig)).await;
    assert_served(&gw, &answer, "caller signed as ops");
    let calls = gw.upstream_gets();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].error_code, 0,
        "upstream refused the gateway: {calls:?}"
    );
    gw.shutdown().await;
}
