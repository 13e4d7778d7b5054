//! The circuit breaker: consecutive whole-call failures open it, callers then fail fast with
//! no upstream call (readiness stays 200 and names the state), one probe half-opens it after
//! `breaker.open_ms`, and a successful probe closes it.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tim_gateway::sim::Fault;

const OPEN: &str = r#"tim_gateway_breaker_state{api="portrait_get",state="open"}"#;
const CLOSED: &str = r#"tim_gateway_breaker_state{api="portrait_get",state="closed"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_after_repeated_failures_fails_fast_then_probes_and_closes() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.breaker.failure_threshold = 3;
            c.breaker.open = Duration::from_millis(800);
            c.upstream.max_retries = 0;
            c.cache.stale_if_error = Duration::ZERO;
        })
        .start()
        .await;
    gw.sim.set_fault(Fault::Status(503));
    for n in 0..3 {
        let answer = gw
            .portrait_get(&get_body(&[&format!("user{n}")], &[NICK]))
            .await;
        assert_eq!(answer["ErrorCode"], 91002, "{answer}");
    }
    assert_eq!(gw.metric(OPEN).await, Some(1.0));
    let calls = gw.upstream_gets().len();
    for n in 10..20 {
        let started = Instant::now();
        let answer = gw
            .portrait_get(&get_body(&[&format!("user{n}")], &[NICK]))
            .await;
        let took = started.elapsed();
        assert_eq!(answer["ErrorCode"], 91006, "{answer}");
        assert!(took <= Duration::from_millis(50), "failed fast: {took:?}");
    }
    assert_eq!(gw.upstream_gets().len(), calls, "nothing sent while open");
    let (status, body) = gw.send("GET", "/readyz", Bytes::new()).await;
    assert_eq!(status, 200, "an open breaker never fails readiness");
    assert!(
        String::from_utf8_lossy(&body).contains("portrait_get=open"),
        "{body:?}"
    );

    tokio::time::sleep(Duration::from_millis(850)).await;
    gw.sim.set_fault(Fault::None);
    let body = get_body(&["user30"], &[NICK]);
    assert_eq!(
        gw.portrait_get(&body).await,
        gw.alone(&body),
        "the probe goes through"
    );
    assert_eq!(gw.metric(CLOSED).await, Some(1.0));
    let to_open = r#"tim_gateway_breaker_transitions_total{api="portrait_get",to="open"}"#;
    assert_eq!(gw.metric(to_open).await, Some(1.0));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_opens_it_again() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.breaker.failure_threshold = 1;
            c.breaker.open = Duration::from_millis(300);
            c.upstream.max_retries = 0;
        })
        .start()
        .await;
    gw.sim.set_fault(Fault::Garbage);
    let answer = gw.portrait_get(&get_body(&["user1"], &[NICK])).await;
    assert_eq!(answer["ErrorCode"], 91003);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe = gw.portrait_get(&get_body(&["user2"], &[NICK])).await;
    assert_eq!(
        probe["ErrorCode"], 91003,
        "the probe was sent and failed: {probe}"
    );
    let refused = gw.portrait_get(&get_body(&["user3"], &[NICK])).await;
    assert_eq!(refused["ErrorCode"], 91006, "open again: {refused}");
    gw.shutdown().await;
}
