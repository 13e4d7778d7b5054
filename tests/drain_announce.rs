//! A drain you can see: on SIGTERM `/readyz` turns 503 first while the listener keeps accepting
//! for `server.drain_announce_ms`; then it stops accepting and every request already accepted
//! (here 200 in flight) is answered.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_first_while_200_requests_in_flight_are_all_answered() {
    let announce = Duration::from_millis(800);
    let mut gw = TestGateway::builder()
        .config(|c| {
            c.server.drain_announce = announce;
            c.auth.mode = tim_gateway::config::AuthMode::None;
        })
        .sim(|s| s.latency = Duration::from_millis(1_500))
        .start()
        .await;
    let addr = gw.addr;
    let in_flight: Vec<_> = (0..200)
        .map(|i| {
            let caller = Caller::new(addr);
            let body = get_body(&[&format!("user{}", 1_000 + i), "user1"], &[NICK]);
            tokio::spawn(async move { (caller.get(&body).await, body) })
        })
        .collect();
    // In flight: every caller's account is in a call the sim has received (and holds 400 ms).
    let all_sent = eventually(Duration::from_secs(10), || async {
        let mut seen = std::collections::HashSet::new();
        for call in gw.upstream_gets() {
            seen.extend(call.accounts);
        }
        (0..200).all(|i| seen.contains(&format!("user{}", 1_000 + i)))
    })
    .await;
    assert!(all_sent, "the 200 requests reached the gateway");
    let signalled = Instant::now();
    gw.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A new connection is still accepted, and told not to send more.
    let fresh = Caller::new(addr);
    let (status, body) = fresh.send("GET", "/readyz", Bytes::new()).await;
    assert_eq!(status, 503, "{body:?}");
    assert!(String::from_utf8_lossy(&body).starts_with("draining: "));
    let (status, _) = fresh.send("GET", "/metrics", Bytes::new()).await;
    assert_eq!(status, 200, "still serving while announcing");

    for task in in_flight {
        let (answer, body) = task.await.expect("caller task");
        assert_eq!(
            answer,
            gw.alone(&body),
            "every accepted request is answered"
        );
    }
    // Once the announcement is over the listener is closed.
    tokio::time::sleep(announce.saturating_sub(signalled.elapsed()) + Duration::from_millis(200))
        .await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "the listener closes after drain_announce_ms"
    );
    gw.stop_gateway().await;
}
