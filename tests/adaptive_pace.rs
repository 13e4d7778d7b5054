//! Adaptive pacing: while Tencent answers 60007 (someone else spends the app's budget), the
//! gateway lowers its own pace, shown in a metric, and recovers it once calls go through again,
//! never above the configured limit.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tim_gateway::sim::Fault;

const PACE: &str = r#"tim_gateway_upstream_pace_requests_per_second{api="portrait_get"}"#;
const LIMIT: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_007_lowers_the_pace_which_recovers_afterwards() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.requests_per_second = LIMIT.try_into().expect("non-zero");
            c.upstream.max_retries = 0;
            c.breaker.failure_threshold = 1_000;
            c.cache.stale_if_error = Duration::ZERO;
        })
        .start()
        .await;
    assert_eq!(gw.metric(PACE).await, Some(f64::from(LIMIT)));
    gw.sim.set_fault(Fault::OverLimit);
    let over_until = Instant::now() + Duration::from_secs(2);
    let mut n = 0;
    while Instant::now() < over_until {
        n += 1;
        let answer = gw
            .portrait_get(&get_body(&[&format!("user{n}")], &[NICK]))
            .await;
        assert_eq!(answer["ErrorCode"], 60007, "{answer}");
    }
    let lowered = gw.metric(PACE).await.unwrap_or(f64::MAX);
    assert!(
        lowered < f64::from(LIMIT) / 4.0,
        "pace after 2 s of 60007: {lowered}"
    );
    let during: Vec<_> = gw.upstream_gets();
    let last_second = during
        .iter()
        .filter(|c| c.at + Duration::from_secs(1) >= over_until)
        .count();
    assert!(
        last_second < (LIMIT / 2) as usize,
        "{last_second} calls in the last second of 60007s: the pace did not drop"
    );
    gw.sim.set_fault(Fault::None);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut pace = lowered;
    while pace < f64::from(LIMIT) && Instant::now() < deadline {
        n += 1;
        let body = get_body(&[&format!("user{n}")], &[NICK]);
        assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
        let now = gw.metric(PACE).await.unwrap_or(0.0);
        assert!(
            now >= pace && now <= f64::from(LIMIT),
            "climbs, never above: {pace} -> {now}"
        );
        pace = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pace,
        f64::from(LIMIT),
        "the pace climbs back to the configured limit"
    );
    gw.shutdown().await;
}
