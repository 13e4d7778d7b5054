//! Upstream faults: with the sim failing, hanging, slow or gone, concurrent callers get a Tencent
//! error body with the fault's code within timeout + queue wait; once the sim recovers the same
//! requests succeed without restarting the gateway, and no error was cached.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;
use support::*;
use tim_gateway::sim::Fault;

const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_QUEUE_WAIT: Duration = Duration::from_millis(500);
const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// Scheduling slack on top of the gateway's own bound.
const SLACK: Duration = Duration::from_secs(1);
/// Concurrent callers per scenario.
const CALLERS: usize = 6;

/// The longest any caller may wait for an answer.
fn deadline() -> Duration {
    UPSTREAM_TIMEOUT + MAX_QUEUE_WAIT + BATCH_WINDOW + SLACK
}

async fn start_gateway() -> TestGateway {
    TestGateway::builder()
        .config(|c| {
            c.upstream.timeout = UPSTREAM_TIMEOUT;
            c.limits.max_queue_wait = MAX_QUEUE_WAIT;
            c.limits.batch_window = BATCH_WINDOW;
        })
        .start()
        .await
}

/// One body per caller: two accounts of its own plus one all callers share, all cold.
fn caller_bodies() -> Vec<Value> {
    (0..CALLERS)
        .map(|i| {
            let own_a = format!("user{}", 10 * i + 1);
            let own_b = format!("user{}", 10 * i + 2);
            get_body(&[&own_a, &own_b, "user500"], &[NICK, GENDER, CUSTOM])
        })
        .collect()
}

/// Sends every body at once; returns each answer with how long it took. A caller still
/// waiting past twice the deadline fails the test instead of hanging it.
async fn send_concurrently(gw: &TestGateway, bodies: &[Value]) -> Vec<(Value, Duration)> {
    join_all(bodies.iter().map(|body| async move {
        let started = Instant::now();
        let answer = tokio::time::timeout(2 * deadline(), gw.portrait_get(body))
            .await
            .unwrap_or_else(|_| panic!("caller hung for over {:?}: {body}", 2 * deadline()));
        (answer, started.elapsed())
    }))
    .await
}

/// Every caller got a FAIL body with `code`, in time.
fn assert_all_failed_in_time(answers: &[(Value, Duration)], code: i64) {
    for (answer, took) in answers {
        assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
        assert_eq!(answer["ErrorCode"], code, "{answer}");
        assert!(
            !answer["ErrorInfo"].as_str().unwrap_or_default().is_empty(),
            "{answer}"
        );
        assert!(
            answer.get("UserProfileItem").is_none(),
            "an error must not carry profiles: {answer}"
        );
        assert!(
            *took <= deadline(),
            "error took {took:?}, more than {:?}",
            deadline()
        );
    }
}

/// Clears the fault with `clear`, then checks the same requests succeed, equal the sim alone,
/// and were answered from sim calls made after the fault (errors are not cached).
async fn assert_recovered(gw: &TestGateway, bodies: &[Value], clear: impl FnOnce()) {
    // A caller is failed as soon as one of its batches fails, while another batch holding its
    // other accounts may still be in flight (a hung one would be answered normally once the
    // fault clears). Let every fetch of the fault phase end, still under the fault, so that
    // every value after recovery comes from a call made after it.
    tokio::time::sleep(UPSTREAM_TIMEOUT + Duration::from_millis(200)).await;
    let fault_calls = gw.upstream_gets().len();
    clear();
    let answers = send_concurrently(gw, bodies).await;
    for ((answer, took), body) in answers.iter().zip(bodies) {
        assert_eq!(answer["ActionStatus"], "OK", "{answer}");
        assert_eq!(*answer, gw.alone(body), "after recovery: {body}");
        assert!(*took <= deadline(), "recovered answer took {took:?}");
    }
    let fresh = gw.upstream_gets().split_off(fault_calls);
    assert!(
        fresh.iter().all(|c| c.error_code == 0),
        "calls after recovery succeed: {fresh:?}"
    );
    for body in bodies {
        for account in body["To_Account"].as_array().expect("accounts") {
            let account = account.as_str().expect("account");
            assert!(
                fresh
                    .iter()
                    .any(|c| c.accounts.iter().any(|a| a == account)),
                "{account} was fetched from the recovered sim: {fresh:?}"
            );
        }
    }
}

/// Injects `fault`, checks every caller fails with `code` in time, clears it, checks recovery.
async fn fails_in_time_then_recovers(fault: Fault, code: i64) {
    let gw = start_gateway().await;
    let bodies = caller_bodies();
    gw.sim.set_fault(fault);
    let answers = send_concurrently(&gw, &bodies).await;
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!("{fault:?}: slowest error after {slowest:?}");
    assert_all_failed_in_time(&answers, code);
    assert_recovered(&gw, &bodies, || gw.sim.set_fault(Fault::None)).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_http_502_fails_callers_with_91002_then_recovers() {
    fails_in_time_then_recovers(Fault::Status(502), 91002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_fails_callers_with_60008_within_the_timeout_then_recovers() {
    fails_in_time_then_recovers(Fault::Hang, 60008).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upstream_connection_fails_callers_with_91001_then_recovers() {
    fails_in_time_then_recovers(Fault::DropConnection, 91001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_upstream_answer_fails_callers_with_91003_then_recovers() {
    fails_in_time_then_recovers(Fault::Garbage, 91003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_connections_fail_callers_with_91001_then_recover() {
    fails_in_time_then_recovers(Fault::RefuseConnections, 91001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_the_timeout_fails_callers_with_60008_then_recovers() {
    let gw = start_gateway().await;
    let bodies = caller_bodies();
    gw.sim.set_latency(UPSTREAM_TIMEOUT * 3);
    let answers = send_concurrently(&gw, &bodies).await;
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!("slow: slowest error after {slowest:?}");
    assert_all_failed_in_time(&answers, 60008);
    assert_recovered(&gw, &bodies, || gw.sim.set_latency(Duration::ZERO)).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_is_not_cached_for_the_next_caller() {
    let gw = start_gateway().await;
    let body = get_body(&["user7"], &[NICK]);
    gw.sim.set_fault(Fault::Status(502));
    let failed = gw.portrait_get(&body).await;
    assert_eq!(failed["ErrorCode"], 91002, "{failed}");
    gw.sim.set_fault(Fault::None);
    let calls_before = gw.upstream_gets().len();
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    assert_eq!(
        gw.upstream_gets().len(),
        calls_before + 1,
        "the retry is fetched from the sim"
    );
    // Now it is cached: no further upstream call.
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    assert_eq!(gw.upstream_gets().len(), calls_before + 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_with_batches_queued_behind_the_rate_limit_fails_every_caller_in_time() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.upstream.timeout = UPSTREAM_TIMEOUT;
            c.limits.max_queue_wait = MAX_QUEUE_WAIT;
            c.limits.batch_window = BATCH_WINDOW;
            c.limits.max_accounts_per_batch = 1;
            c.limits.requests_per_second = std::num::NonZeroU32::new(3).expect("non-zero");
        })
        .start()
        .await;
    // One account each and one account per batch: the batches queue for permits 340 ms apart,
    // so some are dispatched (and time out) and the rest pass the 500 ms queue deadline.
    let bodies: Vec<Value> = (0..CALLERS)
        .map(|i| get_body(&[&format!("user{}", 100 + i)], &[NICK]))
        .collect();
    gw.sim.set_fault(Fault::Hang);
    let answers = send_concurrently(&gw, &bodies).await;
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!("Hang behind the limiter: slowest error after {slowest:?}");
    let codes: Vec<i64> = answers
        .iter()
        .map(|(a, _)| a["ErrorCode"].as_i64().unwrap_or_default())
        .collect();
    for (answer, took) in &answers {
        assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
        let code = answer["ErrorCode"].as_i64().unwrap_or_default();
        assert!(
            code == 60008 || code == 60007,
            "timed out upstream (60008) or queue deadline passed (60007): {answer}"
        );
        assert!(*took <= deadline(), "error took {took:?}");
    }
    assert!(
        codes.contains(&60008),
        "the dispatched batch timed out: {codes:?}"
    );
    assert!(codes.contains(&60007), "queued batches expired: {codes:?}");
    gw.sim.set_fault(Fault::None);
    // A timed-out call may still have reached Tencent late, so its rate-limit slot stays held
    // for one window after the timeout; after that, recovery one at a time: each waits at most
    // one permit interval (340 ms < queue wait).
    tokio::time::sleep(
        Duration::from_millis(1_200), /* one rate-limit window and some */
    )
    .await;
    for body in &bodies {
        assert_eq!(gw.portrait_get(body).await, gw.alone(body));
    }
    gw.shutdown().await;
}
