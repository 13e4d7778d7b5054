//! Tencent's callbacks keep the cache true: a signed `Profile.CallbackPortraitSet` drops the
//! account's cached tags (a fetch already in flight never writes its older values back), bad
//! callbacks are refused and change nothing, every accepted callback is relayed to the app's
//! own handler, and a dead handler never delays invalidation.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{get_body, TestGateway, NICK};
use tim_gateway::config::SecretKey;
use tim_gateway::sim::{portrait_set_callback, request_over_limit_callback, SimCall};
use tim_gateway::sim::{PORTRAIT_SET_COMMAND, REQUEST_OVER_LIMIT_COMMAND};

const TOKEN: &str = "console-callback-token";

async fn gateway_with_token() -> TestGateway {
    TestGateway::builder()
        .config(|c| c.callback.token = Some(SecretKey::new(TOKEN.to_owned())))
        .sim_calls_back()
        .start()
        .await
}

fn gets_of(gw: &TestGateway, account: &str) -> Vec<SimCall> {
    gw.upstream_gets()
        .into_iter()
        .filter(|c| c.accounts.iter().any(|a| a == account))
        .collect()
}

async fn nick(gw: &TestGateway, account: &str) -> Value {
    let answer = gw.portrait_get(&get_body(&[account], &[NICK])).await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    answer["UserProfileItem"][0]["ProfileItem"][0]["Value"].clone()
}

/// An app user changes `account`'s nickname; the sim calls the gateway back, which must answer
/// OK.
async fn edit_nick_in_app(gw: &TestGateway, account: &str, nick: &str) {
    let answer = gw
        .sim
        .client_portrait_set(account, &[(NICK, json!(nick))])
        .await
        .expect("profile changed")
        .expect("callback answered");
    assert_ok(&answer);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn assert_ok(answer: &(hyper::StatusCode, Bytes)) {
    assert_eq!(answer.0, 200);
    let body: Value = serde_json::from_slice(&answer.1).expect("JSON");
    assert_eq!(
        body,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
}

#[tokio::test]
async fn a_signed_portrait_set_callback_makes_the_next_get_fetch_fresh_values() {
    let gw = gateway_with_token().await;
    let before = nick(&gw, "user7").await;
    nick(&gw, "user7").await;
    assert_eq!(gets_of(&gw, "user7").len(), 1, "the second get was a hit");

    // A user edits their nickname in the app: Tencent calls the gateway back.
    edit_nick_in_app(&gw, "user7", "renamed in the app").await;

    assert_eq!(nick(&gw, "user7").await, json!("renamed in the app"));
    assert_ne!(before, json!("renamed in the app"));
    assert_eq!(gets_of(&gw, "user7").len(), 2, "fetched fresh");
    let handled = "tim_gateway_callbacks_total{command=\"portrait_set\",result=\"handled\"}";
    assert_eq!(gw.metric(handled).await, Some(1.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn each_refused_callback_is_answered_fail_and_leaves_the_cache_untouched() {
    let gw = gateway_with_token().await;
    nick(&gw, "user8").await;
    let sender = gw.callback_sender();
    let body = portrait_set_callback("user8", &[(NICK, json!("x"))]);
    let now = unix_now();
    let cases = [
        (
            "refused_sdkappid",
            sender
                .request(PORTRAIT_SET_COMMAND, body.clone())
                .sdkappid(1_400_000_001),
        ),
        (
            "refused_sign",
            sender
                .request(PORTRAIT_SET_COMMAND, body.clone())
                .sign(&"0".repeat(64)),
        ),
        (
            "refused_request_time",
            sender
                .request(PORTRAIT_SET_COMMAND, body.clone())
                .request_time(now - 120),
        ),
        (
            "refused_request_time",
            sender
                .request(PORTRAIT_SET_COMMAND, body.clone())
                .request_time(now + 120),
        ),
        (
            "refused_request_time",
            sender
                .request(PORTRAIT_SET_COMMAND, body.clone())
                .unsigned(),
        ),
        (
            "refused_body",
            sender.request(PORTRAIT_SET_COMMAND, b"{not json".to_vec()),
        ),
        (
            "refused_body",
            sender.request(PORTRAIT_SET_COMMAND, b"[1,2]".to_vec()),
        ),
        (
            "refused_body",
            sender.request(PORTRAIT_SET_COMMAND, br#"{"From_Account":""}"#.to_vec()),
        ),
    ];
    let count = cases.len();
    for (reason, request) in cases {
        let query = request.query();
        let (status, answer) = request.send().await.expect("answered");
        assert_eq!(status, 200, "{reason}: {query}");
        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(answer["ActionStatus"], "FAIL", "{reason}: {answer}");
        assert_eq!(answer["ErrorCode"], 1, "{reason}: {answer}");
        assert!(answer["ErrorInfo"].as_str().is_some_and(|i| !i.is_empty()));
    }
    nick(&gw, "user8").await;
    assert_eq!(gets_of(&gw, "user8").len(), 1, "still cached");
    let metrics = gw.metrics().await;
    let total: f64 = [
        "refused_sdkappid",
        "refused_sign",
        "refused_request_time",
        "refused_body",
    ]
    .iter()
    .map(|r| format!("tim_gateway_callbacks_total{{command=\"any\",result=\"{r}\"}}"))
    .map(|sample| support::metric_value(&metrics, &sample).unwrap_or(0.0))
    .sum();
    assert_eq!(total, count as f64);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_fetch_in_flight_when_the_callback_lands_never_writes_back_the_old_value() {
    let gw = gateway_with_token().await;
    gw.sim.set_latency(Duration::from_millis(400));
    let caller = support::Caller::clone(&gw);
    let in_flight = tokio::spawn(async move { caller.get(&get_body(&["user9"], &[NICK])).await });
    // The sim has computed the old answer and is sleeping on it when the profile changes.
    assert!(
        support::eventually(Duration::from_secs(2), || async {
            !gets_of(&gw, "user9").is_empty()
        })
        .await
    );
    edit_nick_in_app(&gw, "user9", "changed mid-flight").await;
    let old = in_flight.await.expect("caller");
    assert_ne!(
        old["UserProfileItem"][0]["ProfileItem"][0]["Value"],
        json!("changed mid-flight"),
        "the in-flight fetch carried the old value"
    );
    gw.sim.set_latency(Duration::ZERO);
    assert_eq!(nick(&gw, "user9").await, json!("changed mid-flight"));
    assert_eq!(
        gets_of(&gw, "user9").len(),
        2,
        "the old value was not cached"
    );
    gw.shutdown().await;
}

/// What a test's own callback handler saw: (query, body) per request.
type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An app callback handler on 127.0.0.1 that records each request and answers `answer`
/// after `delay`.
async fn app_handler(answer: &'static str, delay: Duration) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let query = request.uri().query().unwrap_or("").to_owned();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        record.lock().push((query, body));
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            answer.as_bytes(),
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

const APP_ANSWER: &str = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","FromTheApp":true}"#;

#[tokio::test]
async fn every_accepted_callback_is_relayed_unchanged_and_the_apps_answer_returned() {
    let (handler, seen) = app_handler(APP_ANSWER, Duration::ZERO).await;
    let gw = TestGateway::builder()
        .config(|c| {
            c.callback.token = Some(SecretKey::new(TOKEN.to_owned()));
            c.callback.forward_url = Some(format!("http://{handler}/im/cb").parse().expect("url"));
        })
        .start()
        .await;
    nick(&gw, "user10").await;
    let sender = gw.callback_sender();
    let body = portrait_set_callback("user10", &[(NICK, json!("n"))]);
    let request = sender.request(PORTRAIT_SET_COMMAND, body.clone());
    let query = request.query();
    let (status, answer) = request.send().await.expect("answered");
    assert_eq!((status.as_u16(), &answer[..]), (200, APP_ANSWER.as_bytes()));
    let unknown = br#"{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a"}"#;
    let (_, answer) = sender
        .send("C2C.CallbackAfterSendMsg", unknown.to_vec())
        .await
        .expect("answered");
    assert_eq!(&answer[..], APP_ANSWER.as_bytes(), "any command is relayed");
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0],
        (query, Bytes::from(body)),
        "query (Sign included) and body unchanged"
    );
    assert!(seen[1]
        .0
        .contains("CallbackCommand=C2C.CallbackAfterSendMsg"));
    nick(&gw, "user10").await;
    assert_eq!(
        gets_of(&gw, "user10").len(),
        2,
        "invalidated before the relay"
    );
    let relayed = "tim_gateway_callback_relays_total{result=\"ok\"}";
    assert_eq!(gw.metric(relayed).await, Some(2.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_dead_or_slow_forward_url_never_blocks_invalidation() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (slow, _) = app_handler(APP_ANSWER, Duration::from_secs(10)).await;
    for (handler, account) in [(closed, "user11"), (slow, "user12")] {
        let gw = TestGateway::builder()
            .config(|c| {
                c.callback.forward_url = Some(format!("http://{handler}/cb").parse().expect("url"));
            })
            .start()
            .await;
        nick(&gw, account).await;
        let started = Instant::now();
        let body = portrait_set_callback(account, &[(NICK, json!("n"))]);
        let answer = gw
            .callback_sender()
            .send(PORTRAIT_SET_COMMAND, body)
            .await
            .expect("answered within Tencent's 2 s");
        assert_ok(&answer);
        assert!(started.elapsed() < Duration::from_secs(2), "{account}");
        nick(&gw, account).await;
        assert_eq!(gets_of(&gw, account).len(), 2, "{account}: invalidated");
        let failed = "tim_gateway_callback_relays_total{result=\"failed\"}";
        assert_eq!(gw.metric(failed).await, Some(1.0), "{account}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn callbacks_on_their_own_listener_are_apart_from_the_api() {
    let gw = TestGateway::builder()
        .callback_listener()
        .sim_calls_back()
        .start()
        .await;
    assert_ne!(gw.callback_addr, gw.addr);
    nick(&gw, "user14").await;
    edit_nick_in_app(&gw, "user14", "apart").await;
    assert_eq!(nick(&gw, "user14").await, json!("apart"));

    // The API port does not take callbacks; the callback port serves nothing else.
    let path = &gw.config.callback.path;
    let (status, _) = gw
        .send("POST", &format!("{path}?SdkAppid=1400000000"), "{}")
        .await;
    assert_eq!(status, 404);
    let callback_port = support::Caller::new(gw.callback_addr);
    let query = format!("{}?{}", support::GET, support::auth_query());
    let (status, _) = callback_port
        .send("POST", &query, get_body(&["user1"], &[NICK]).to_string())
        .await;
    assert_eq!(status, 404);
    let (status, _) = callback_port.send("GET", "/metrics", Bytes::new()).await;
    assert_eq!(status, 404);
    let (status, _) = callback_port.send("GET", "/healthz", Bytes::new()).await;
    assert_eq!(status, 200, "probes answer on both");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_over_limit_alert_lowers_that_apis_pace() {
    let gw = TestGateway::start().await;
    let pace = "tim_gateway_upstream_pace_requests_per_second{api=\"portrait_get\"}";
    assert_eq!(gw.metric(pace).await, Some(200.0));
    let alert = request_over_limit_callback("profile", "portrait_get", 170, 200);
    let answer = gw
        .callback_sender()
        .send(REQUEST_OVER_LIMIT_COMMAND, alert)
        .await
        .expect("answered");
    assert_ok(&answer);
    let lowered = gw.metric(pace).await.expect("pace gauge");
    assert!(lowered < 200.0, "pace {lowered}");
    let handled = "tim_gateway_callbacks_total{command=\"request_over_limit\",result=\"handled\"}";
    assert_eq!(gw.metric(handled).await, Some(1.0));
    gw.shutdown().await;
}
