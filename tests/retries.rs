//! Retries inside a budget: against a sim failing every other call with 502, callers are still
//! answered (retries turn many failures into answers), retries stay within
//! `upstream.retry_budget_percent` of calls plus the floor, and the sim never sees more than its
//! limit in any sliding second; a quiet gateway's single failure is retried thanks to the floor
//! (`upstream.retry_budget_min_per_second`), and not without it.

mod support;

use std::time::Duration;

use support::fleet::max_in_any_second;
use support::*;
use tim_gateway::sim::Fault;

const LIMIT: u32 = 20;
const RETRIES: &str = r#"tim_gateway_upstream_retries_total{api="portrait_get"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_upstream_is_retried_within_the_budget_and_the_limit() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.requests_per_second = LIMIT.try_into().expect("non-zero");
            c.upstream.max_retries = 2;
            c.upstream.retry_budget_percent = 50;
            c.upstream.retry_budget_min_per_second = 1;
            c.breaker.failure_threshold = 1_000;
            c.cache.stale_if_error = Duration::ZERO;
        })
        .sim(|s| s.requests_per_second = LIMIT)
        .start()
        .await;
    gw.sim.set_fault(Fault::EveryOther(502));
    let (mut ok, mut failed) = (0, 0);
    for round in 0..10 {
        let gw = &gw;
        let answers = futures_util::future::join_all((0..10).map(|i| async move {
            let body = get_body(&[&format!("user{}", 100 + round * 10 + i)], &[NICK]);
            (gw.portrait_get(&body).await, body)
        }))
        .await;
        for (answer, body) in answers {
            if answer == gw.alone(&body) {
                ok += 1;
            } else {
                assert_eq!(
                    answer["ErrorCode"], 91002,
                    "an error, never a wrong answer: {answer}"
                );
                failed += 1;
            }
        }
    }
    let calls = gw.upstream_gets();
    let retries = gw.metric(RETRIES).await.unwrap_or(0.0) as usize;
    let first_attempts = calls.len() - retries;
    eprintln!(
        "{ok} answered, {failed} errors; {} calls, {retries} retries",
        calls.len()
    );
    assert!(retries > 0, "failures were retried");
    // 50 % of the calls of the last 10 s, plus the floor's one a second over that window.
    assert!(
        retries * 100 <= first_attempts * 50 + 10 * 100,
        "{retries} retries for {first_attempts} calls: over the 50 % budget and its floor"
    );
    // Without retries every other call fails, so about half the callers would; retries turn
    // some of those failures into answers.
    assert!(
        ok > failed,
        "retries turned failures into answers: {ok} answered, {failed} failed"
    );
    let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
    assert!(max <= LIMIT as usize, "{max} calls in one second");
    assert!(
        calls.iter().all(|c| c.error_code != 60007),
        "the sim never refused a call"
    );
    gw.shutdown().await;
}

/// A gateway that has made no call yet asks for one account while the sim fails its next call
/// with 502: whether the caller gets the profile or an error.
async fn a_quiet_gateways_single_failure(min_per_second: u32) -> serde_json::Value {
    let gw = TestGateway::builder()
        .config(|c| {
            c.upstream.retry_budget_percent = 10;
            c.upstream.retry_budget_min_per_second = min_per_second;
            c.cache.stale_if_error = Duration::ZERO;
        })
        .start()
        .await;
    gw.sim.set_fault(Fault::EveryOther(502));
    let body = get_body(&["user42"], &[NICK]);
    let answer = gw.portrait_get(&body).await;
    let alone = gw.alone(&body);
    gw.shutdown().await;
    if answer == alone {
        serde_json::json!("answered")
    } else {
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_gateway_retries_its_single_failure_thanks_to_the_floor() {
    // 10 % of one call is no retry: only the floor lets it through.
    let with_floor = a_quiet_gateways_single_failure(1).await;
    assert_eq!(with_floor, serde_json::json!("answered"));
    let without = a_quiet_gateways_single_failure(0).await;
    assert_eq!(without["ActionStatus"], "FAIL", "{without}");
}
