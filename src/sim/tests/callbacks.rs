//! Callbacks like Tencent sends them: the Sign against the reference's vector, the query and
//! bodies, deliberately wrong ones, and the sim firing `Profile.CallbackPortraitSet` after a
//! client-side change (awaited) and after a REST `portrait_set` (in the background), against a
//! small recording receiver on 127.0.0.1.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::*;

const TOKEN: &str = "callback-token";
const NICK: &str = "Tag_Profile_IM_Nick";

/// What the receiver answers.
#[derive(Clone, Copy)]
pub(super) enum Answer {
    Ok,
    Status(u16),
    /// Waits for a permit from `Receiver::release` first.
    Held,
}

/// One callback as received: path with query, and body.
pub(super) type Received = (String, Bytes);

/// A recording callback receiver over real TCP.
pub(super) struct Receiver {
    pub(super) url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Semaphore>,
}

impl Receiver {
    pub(super) async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/tim/callback",
            listener.local_addr().expect("addr")
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (task_seen, task_gate) = (Arc::clone(&seen), Arc::clone(&gate));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, gate) = (Arc::clone(&task_seen), Arc::clone(&task_gate));
                let service = service_fn(move |request: Request<Incoming>| {
                    let (seen, gate) = (Arc::clone(&seen), Arc::clone(&gate));
                    async move { receive(request, &seen, &gate, answer).await }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Receiver { url, seen, gate }
    }

    pub(super) fn seen(&self) -> Vec<Received> {
        self.seen.lock().clone()
    }

    fn release(&self) {
        self.gate.add_permits(1);
    }
}

async fn receive(
    request: Request<Incoming>,
    seen: &Mutex<Vec<Received>>,
    gate: &Semaphore,
    answer: Answer,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let uri = request.uri().to_string();
    let body = request.into_body().collect().await?.to_bytes();
    seen.lock().push((uri, body));
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(status) => status,
        Answer::Held => {
            let _ = gate.acquire().await.map(|permit| permit.forget());
            200
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(
        br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#,
    )));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    Ok(response)
}

/// The query parameters of a received callback, by name.
pub(super) fn params(received: &Received) -> std::collections::HashMap<String, String> {
    let query = received.0.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub(super) fn sim_config(receiver: &Receiver) -> SimConfig {
    calling_back_to(&receiver.url, Some(TOKEN))
}

/// The test config with callbacks sent to `url`, signed with `token`.
fn calling_back_to(url: &str, token: Option<&str>) -> SimConfig {
    SimConfig {
        callback: Some(SimCallbacks {
            url: url.to_owned(),
            token: token.map(str::to_owned),
        }),
        ..config()
    }
}

// === signing, query and bodies ===

#[test]
fn sign_matches_the_reference_example() {
    // Reference §7.1: token "xxxxyyyy", RequestTime 1669872112.
    assert_eq!(
        sign("xxxxyyyy", 1_669_872_112),
        "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    );
}

#[tokio::test]
async fn the_query_carries_tencents_parameters_and_chosen_mistakes() {
    let url = "http://127.0.0.1:9/cb";
    let sender = CallbackSender::try_new(SDKAPPID, Some("xxxxyyyy".into()), url).expect("url");
    let request = sender
        .request(PORTRAIT_SET_COMMAND, "{}")
        .request_time(1_669_872_112);
    assert_eq!(
        request.query(),
        "SdkAppid=1400000000&CallbackCommand=Profile.CallbackPortraitSet&contenttype=json\
         &ClientIP=127.0.0.1&OptPlatform=RESTAPI\
         &Sign=17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061\
         &RequestTime=1669872112"
    );
    let wrong = sender
        .request("Alert.RequestOverLimit", "{}")
        .sdkappid(42)
        .sign("bad sign")
        .request_time(7)
        .opt_platform("iOS")
        .query();
    assert_eq!(
        wrong,
        "SdkAppid=42&CallbackCommand=Alert.RequestOverLimit&contenttype=json\
         &ClientIP=127.0.0.1&OptPlatform=iOS&Sign=bad+sign&RequestTime=7"
    );
    let unsigned = sender.request("C", "{}").unsigned().query();
    assert!(!unsigned.contains("Sign") && !unsigned.contains("RequestTime"));
    let no_token = CallbackSender::try_new(SDKAPPID, None, url).expect("url");
    assert!(!no_token.request("C", "{}").query().contains("Sign"));
    for bad in [
        "https://127.0.0.1/cb",
        "127.0.0.1:80/cb",
        "http://",
        "http://h/#x",
    ] {
        assert!(
            matches!(
                CallbackSender::try_new(SDKAPPID, None, bad),
                Err(CallbackError::BadUrl(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn bodies_follow_tencents_examples_in_field_order() {
    let body = portrait_set_callback(
        "user3",
        &[(NICK, json!("n")), ("Tag_Profile_IM_Level", json!(7))],
    );
    let text = String::from_utf8(body).expect("utf-8");
    let prefix = r#"{"CallbackCommand":"Profile.CallbackPortraitSet","Operator_Account":"user3","From_Account":"user3","EventTime":"#;
    assert!(text.starts_with(prefix), "{text}");
    assert!(
        text.ends_with(r#","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"n"},{"Tag":"Tag_Profile_IM_Level","Value":7}]}"#),
        "{text}"
    );
    let event_ms = serde_json::from_str::<Value>(&text).expect("JSON")["EventTime"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        event_ms > now_unix() * 1000 - 60_000,
        "milliseconds since the epoch: {event_ms}"
    );
    assert_eq!(
        request_over_limit_callback("profile", "portrait_get", 160, 200),
        br#"{"CallbackCommand":"Alert.RequestOverLimit","ServiceName":"profile","Command":"portrait_get","Request":160,"Limit":200}"#
    );
}

// === sending ===

#[tokio::test]
async fn a_sender_posts_the_body_as_is_and_returns_the_answer() {
    let receiver = Receiver::start(Answer::Status(500)).await;
    let sender = CallbackSender::try_new(SDKAPPID, Some(TOKEN.into()), &receiver.url).expect("url");
    let (status, body) = sender
        .request(REQUEST_OVER_LIMIT_COMMAND, "raw {not json")
        .request_time(1_000)
        .send()
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.starts_with(br#"{"ActionStatus":"OK""#));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].0.starts_with("/tim/callback?SdkAppid=1400000000&"),
        "{}",
        seen[0].0
    );
    assert_eq!(&seen[0].1[..], b"raw {not json");
    let params = params(&seen[0]);
    assert_eq!(params["RequestTime"], "1000");
    assert_eq!(params["Sign"], sign(TOKEN, 1000));
    let closed = CallbackSender::try_new(SDKAPPID, None, "http://127.0.0.1:1/cb").expect("url");
    assert!(matches!(
        closed.send("C", "{}").await,
        Err(CallbackError::Transport(_))
    ));
}

#[tokio::test]
async fn a_callback_not_answered_within_two_seconds_times_out() {
    let receiver = Receiver::start(Answer::Held).await;
    let sender = CallbackSender::try_new(SDKAPPID, None, &receiver.url).expect("url");
    assert_eq!(sender.send("C", "{}").await, Err(CallbackError::Timeout));
    receiver.release();
}

// === the sim's own callbacks ===

#[tokio::test]
async fn a_client_side_change_updates_the_profile_and_sends_a_signed_callback() {
    let receiver = Receiver::start(Answer::Ok).await;
    let sim = Sim::start(sim_config(&receiver)).await.expect("start");
    let answer = sim
        .client_portrait_set("user4", &[(NICK, json!("from the app"))])
        .await
        .expect("changed and delivered");
    let (status, body) = answer.expect("a callback URL is set");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        &br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#[..]
    );
    assert_eq!(
        sim.profile_value("user4", NICK).as_deref(),
        Some("\"from the app\"")
    );
    let seen = receiver.seen();
    let params = params(&seen[0]);
    assert_eq!(params["CallbackCommand"], PORTRAIT_SET_COMMAND);
    assert_eq!(params["SdkAppid"], SDKAPPID.to_string());
    let time: u64 = params["RequestTime"].parse().expect("a number");
    assert_eq!(params["Sign"], sign(TOKEN, time));
    let body: Value = serde_json::from_slice(&seen[0].1).expect("JSON");
    assert_eq!(
        (
            &body["Operator_Account"],
            &body["From_Account"],
            &body["ProfileItem"]
        ),
        (
            &json!("user4"),
            &json!("user4"),
            &json!([{"Tag": NICK, "Value": "from the app"}])
        )
    );
    assert!(sim.calls().is_empty(), "no REST call");
    assert_eq!(
        (sim.stats().callbacks_sent, sim.stats().callback_failures),
        (1, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_client_change_sends_nothing_and_no_url_sends_nothing() {
    let receiver = Receiver::start(Answer::Ok).await;
    let sim = Sim::start(sim_config(&receiver)).await.expect("start");
    let bogus = sim
        .client_portrait_set("user4", &[("Tag_Profile_IM_Bogus", json!(1))])
        .await;
    assert_eq!(bogus, Err(ClientSetError::Refused(40009)));
    let nobody = sim
        .client_portrait_set("nobody", &[(NICK, json!("x"))])
        .await;
    assert_eq!(nobody, Err(ClientSetError::Refused(40003)));
    assert!(receiver.seen().is_empty());
    sim.shutdown().await;
    let quiet = Sim::start(config()).await.expect("start");
    assert_eq!(
        quiet
            .client_portrait_set("user4", &[(NICK, json!("y"))])
            .await,
        Ok(None)
    );
    assert_eq!(quiet.profile_value("user4", NICK).as_deref(), Some("\"y\""));
    quiet.shutdown().await;
}

#[tokio::test]
async fn an_undelivered_callback_is_counted_and_the_change_still_holds() {
    let refusing = Receiver::start(Answer::Status(503)).await;
    let sim = Sim::start(sim_config(&refusing)).await.expect("start");
    let answer = sim
        .client_portrait_set("user5", &[(NICK, json!("a"))])
        .await;
    assert_eq!(
        answer.expect("answered").map(|(s, _)| s),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    sim.shutdown().await;
    let sim = Sim::start(calling_back_to("http://127.0.0.1:1/cb", None))
        .await
        .expect("start");
    let answer = sim
        .client_portrait_set("user5", &[(NICK, json!("b"))])
        .await;
    assert!(matches!(
        answer,
        Err(ClientSetError::Callback(CallbackError::Transport(_)))
    ));
    assert_eq!(sim.profile_value("user5", NICK).as_deref(), Some("\"b\""));
    assert_eq!(
        (sim.stats().callbacks_sent, sim.stats().callback_failures),
        (1, 1)
    );
    sim.shutdown().await;
    assert!(Sim::start(calling_back_to("ftp://127.0.0.1/cb", None))
        .await
        .is_err());
}

#[tokio::test]
async fn a_rest_portrait_set_fires_the_callback_without_waiting_for_it() {
    let receiver = Receiver::start(Answer::Held).await;
    let sim = Sim::start(sim_config(&receiver)).await.expect("start");
    let client = TestClient::new(&sim);
    let set = json!({"From_Account": "user6", "ProfileItem": [{"Tag": NICK, "Value": "by rest"}]});
    assert_eq!(client.call(Api::PortraitSet, &set).await["ErrorCode"], 0);
    // The receiver still holds the callback: the set was answered before it was.
    assert_eq!(sim.stats().callbacks_sent, 0);
    let bad = json!({"From_Account": "user6", "ProfileItem": [{"Tag": "Tag_Profile_IM_Bogus", "Value": 1}]});
    assert_eq!(
        client.call(Api::PortraitSet, &bad).await["ErrorCode"],
        40009
    );
    receiver.release();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.stats().callbacks_sent == 0 {
        assert!(Instant::now() < deadline, "the callback was never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "only the set that succeeded fires");
    let body: Value = serde_json::from_slice(&seen[0].1).expect("JSON");
    assert_eq!(
        (
            &body["Operator_Account"],
            &body["From_Account"],
            &body["ProfileItem"]
        ),
        (
            &json!("administrator"),
            &json!("user6"),
            &json!([{"Tag": NICK, "Value": "by rest"}])
        )
    );
    assert_eq!(sim.stats().callback_failures, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_abandons_a_callback_still_in_flight() {
    let receiver = Receiver::start(Answer::Held).await;
    let sim = Sim::start(sim_config(&receiver)).await.expect("start");
    let set = json!({"From_Account": "user6", "ProfileItem": [{"Tag": NICK, "Value": "z"}]});
    assert_eq!(
        TestClient::new(&sim).call(Api::PortraitSet, &set).await["ErrorCode"],
        0
    );
    let sender = sim.callback_sender().expect("configured");
    assert_eq!(sender.url(), receiver.url);
    tokio::time::timeout(Duration::from_secs(1), sim.shutdown())
        .await
        .expect("shutdown does not wait for the held callback");
    receiver.release();
}
