//! Graceful shutdown: requests in flight complete after the trigger, the drain stops taking
//! new work (`/healthz` 503 or refused), and once the gateway task ends its port is closed.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::*;
use tim_gateway::sim::Api;

/// One request on a fresh connection (no pool), so the drain's closed listener shows.
async fn fresh_request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path_and_query}"))
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// A portrait_get on its own connection, in its own task, so it outlives the test's borrows.
fn spawn_portrait_get(addr: SocketAddr, body: &Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let body = Bytes::from(body.to_string());
    tokio::spawn(async move {
        let (status, answer) =
            fresh_request(addr, "POST", &format!("{GET}?{}", auth_query()), body)
                .await
                .expect("the request in flight is answered");
        let answer = serde_json::from_slice(&answer)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&answer)));
        (status, answer)
    })
}

/// `/healthz` status on a fresh connection, or `None` when the connection is refused.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    fresh_request(addr, "GET", "/healthz", Bytes::new())
        .await
        .ok()
        .map(|(status, _)| status)
}

/// Shuts `gw` down, returning how long it took; then its port refuses connections.
async fn shutdown_and_check_closed(gw: TestGateway) -> Duration {
    let addr = gw.addr;
    let grace = gw.config.server.shutdown_grace;
    let started = Instant::now();
    gw.shutdown().await;
    let took = started.elapsed();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections are refused after shutdown"
    );
    assert!(
        took < grace,
        "with nothing in flight the drain ends without waiting out the {grace:?} grace ({took:?})"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_upstream_completes_after_shutdown_is_triggered() {
    let mut gw = TestGateway::start().await;
    assert_eq!(healthz(gw.addr).await, Some(200), "healthy before shutdown");
    gw.sim.set_latency(Duration::from_millis(500));
    let body = get_body(&["user1", "user2"], &[NICK, GENDER, CUSTOM]);
    let in_flight = spawn_portrait_get(gw.addr, &body);
    let sim = &gw.sim;
    let upstream = eventually(Duration::from_secs(2), move || async move {
        sim.call_count(Api::PortraitGet) == 1
    })
    .await;
    assert!(upstream, "the request reached the upstream");

    let triggered = Instant::now();
    gw.trigger_shutdown();
    // During the drain: /healthz says 503 or the listener is gone, while the request is
    // still waiting for the sim.
    let addr = gw.addr;
    let draining = eventually(Duration::from_millis(300), move || async move {
        healthz(addr).await != Some(200)
    })
    .await;
    assert!(
        draining,
        "/healthz stops answering 200 once the drain starts"
    );
    assert!(
        !in_flight.is_finished(),
        "the drain was observed while the request was in flight"
    );

    let (status, answer) = in_flight.await.expect("request task");
    let completed = triggered.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        gw.alone(&body),
        "the request in flight got its answer"
    );
    let took = shutdown_and_check_closed(gw).await;
    eprintln!(
        "in-flight request completed {completed:?} after the trigger; shutdown then took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_waiting_in_the_batch_window_completes_after_shutdown_is_triggered() {
    let mut gw = TestGateway::builder()
        .config(|c| c.limits.batch_window = Duration::from_millis(400))
        .start()
        .await;
    let body = get_body(&["user3"], &[NICK]);
    let in_flight = spawn_portrait_get(gw.addr, &body);
    let queued = eventually(Duration::from_secs(2), || async {
        gw.metric("tim_gateway_queue_batches").await == Some(1.0)
    })
    .await;
    assert!(queued, "the request's batch is waiting in the queue");
    assert_eq!(gw.sim.call_count(Api::PortraitGet), 0, "not sent yet");

    gw.trigger_shutdown();
    let (status, answer) = in_flight.await.expect("request task");
    assert_eq!(status, 200);
    assert_eq!(answer, gw.alone(&body), "the queued batch was still sent");
    assert_eq!(gw.sim.call_count(Api::PortraitGet), 1);
    shutdown_and_check_closed(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gateway_stops_and_then_refuses_new_connections() {
    let gw = TestGateway::start().await;
    // Leave an idle keep-alive connection in the test client's pool.
    let body = get_body(&["user4"], &[NICK]);
    assert_eq!(gw.portrait_get(&body).await, gw.alone(&body));
    assert_eq!(healthz(gw.addr).await, Some(200));
    let took = shutdown_and_check_closed(gw).await;
    eprintln!("idle shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_older_than_its_grace_still_flushes_queued_batches_after_the_signal() {
    // The grace counts from the signal: a gateway that has run longer than it must still
    // give the worker its whole grace to flush a batch whose caller went away.
    let grace = Duration::from_millis(1500);
    let mut gw = TestGateway::builder()
        .config(|c| {
            c.server.shutdown_grace = grace;
            c.limits.batch_window = Duration::from_secs(30);
        })
        .start()
        .await;
    let latency = Duration::from_millis(300);
    gw.sim.set_latency(latency);
    tokio::time::sleep(grace + Duration::from_millis(300)).await;
    let caller = spawn_portrait_get(gw.addr, &get_body(&["user7"], &[NICK]));
    let queued = eventually(Duration::from_secs(2), || async {
        gw.metric("tim_gateway_queue_batches").await == Some(1.0)
    })
    .await;
    assert!(queued, "the request's batch is waiting in the queue");
    caller.abort();
    let _ = caller.await;
    assert_eq!(gw.sim.call_count(Api::PortraitGet), 0, "not sent yet");

    let triggered = Instant::now();
    gw.stop_gateway().await;
    let took = triggered.elapsed();
    assert_eq!(
        gw.sim.call_count(Api::PortraitGet),
        1,
        "the queued batch was sent before the gateway stopped ({took:?} after the signal)"
    );
    // The sim logs a call when it arrives and answers after `latency`: a gateway that stopped
    // sooner gave up on the call in flight (in the binary, the process would exit under it).
    assert!(
        took >= latency,
        "the gateway waited for the flushed call's answer ({took:?} after the signal)"
    );
    assert!(took < grace, "and stopped within the grace ({took:?})");
    eprintln!("drain with a queued batch took {took:?} after the signal");
    gw.sim.shutdown().await;
}
