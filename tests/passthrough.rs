//! One base URL for the whole API: any other `POST /v4/<service>/<command>` is forwarded byte
//! for byte with the gateway's own signature, each API under its own limit; bad paths and bad
//! credentials are answered locally.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use support::{auth_query, Caller, TestGateway, ADMIN};
use tim_gateway::sim::{Fault, SimCall};

const SENDMSG: &str = "/v4/openim/sendmsg";
const FRIEND_GET: &str = "/v4/sns/friend_get";

/// The identifier the gateway signs its upstream calls as, unlike the callers' `ADMIN`.
const GATEWAY_ADMIN: &str = "gateway_admin";

/// A sendmsg body with the quirks a byte-for-byte forward must keep: odd spacing, key order,
/// escaped and raw non-ASCII text.
const SENDMSG_BODY: &str = concat!(
    "{ \"SyncOtherMachine\": 2,\"From_Account\":\"user1\", \"To_Account\":\"user2\",",
    "\"MsgRandom\":1287657,\"MsgBody\":[{\"MsgType\":\"TIMTextElem\",",
    "\"MsgContent\":{\"Text\":\"hi \\u2603 ☃\"}}] }"
);

fn calls_to(gw: &TestGateway, path: &str) -> Vec<SimCall> {
    gw.sim
        .calls()
        .into_iter()
        .filter(|c| c.path == path)
        .collect()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn gateway_signing_as_its_own_admin() -> TestGateway {
    TestGateway::builder()
        .config(|c| c.upstream.identifier = GATEWAY_ADMIN.to_owned())
        .sim(|s| s.admins = vec![ADMIN.to_owned(), GATEWAY_ADMIN.to_owned()])
        .start()
        .await
}

#[tokio::test]
async fn a_sendmsg_is_forwarded_byte_for_byte_with_the_gateways_signature() {
    let gw = gateway_signing_as_its_own_admin().await;
    let caller_query = auth_query();
    let caller_usersig = query_param(&caller_query, "usersig").expect("usersig");

    let through_gateway = gw.post_bytes(SENDMSG, SENDMSG_BODY).await;
    let _second = gw.post_bytes(SENDMSG, SENDMSG_BODY).await;

    // The answer is the upstream's, verbatim: the same bytes the sim gives a direct caller.
    let direct = Caller::new(gw.sim.addr());
    let (status, direct_answer) = direct
        .send("POST", &format!("{SENDMSG}?{caller_query}"), SENDMSG_BODY)
        .await;
    assert_eq!(status, 200);
    assert_eq!(through_gateway, direct_answer);
    let echo: Value = serde_json::from_slice(&through_gateway).expect("JSON");
    assert_eq!(echo["ErrorCode"], 0, "{echo}");
    assert_eq!(echo["Echo"]["Api"], "openim/sendmsg", "{echo}");

    let forwarded = calls_to(&gw, SENDMSG);
    assert_eq!(forwarded.len(), 3, "two through the gateway, one direct");
    for call in &forwarded[..2] {
        assert_eq!(call.body, Bytes::from_static(SENDMSG_BODY.as_bytes()));
        let param = |name| query_param(&call.query, name);
        assert_eq!(param("identifier").as_deref(), Some(GATEWAY_ADMIN));
        assert_ne!(param("usersig"), Some(caller_usersig.clone()));
        assert_ne!(
            param("random").as_deref(),
            Some("42"),
            "the caller's random"
        );
        assert_eq!(param("contenttype").as_deref(), Some("json"));
    }
    let random = |call: &SimCall| query_param(&call.query, "random");
    assert_ne!(
        random(&forwarded[0]),
        random(&forwarded[1]),
        "a fresh random per call"
    );
    let count = "tim_gateway_requests_total{api=\"openim/sendmsg\",outcome=\"ok\"}";
    assert_eq!(gw.metric(count).await, Some(2.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn the_upstreams_http_status_and_body_come_back_as_they_are() {
    let gw = TestGateway::start().await;
    let direct = Caller::new(gw.sim.addr());
    gw.sim.set_fault(Fault::Status(503));
    let (status, body) = gw
        .send("POST", &format!("{SENDMSG}?{}", auth_query()), SENDMSG_BODY)
        .await;
    let (direct_status, direct_body) = direct
        .send("POST", &format!("{SENDMSG}?{}", auth_query()), SENDMSG_BODY)
        .await;
    assert_eq!((status, &body), (direct_status, &direct_body));
    assert_eq!(status, 503);
    gw.sim.set_fault(Fault::None);
    gw.shutdown().await;
}

/// The most calls in any sliding second, from arrival times.
fn max_in_any_second(mut times: Vec<Instant>) -> usize {
    times.sort();
    let mut max = 0;
    for (i, start) in times.iter().enumerate() {
        let end = *start + Duration::from_secs(1);
        max = max.max(times[i..].iter().take_while(|t| **t < end).count());
    }
    max
}

#[tokio::test]
async fn two_apis_under_saturation_are_each_held_to_their_own_limit() {
    let limits = [(SENDMSG, 6u32), (FRIEND_GET, 4u32)];
    let gw = TestGateway::builder()
        .config(|c| {
            for (path, rate) in limits {
                let api = path.trim_start_matches("/v4/").to_owned();
                let rate = std::num::NonZeroU32::new(rate).expect("non-zero");
                c.passthrough.limits.insert(api, rate);
            }
            c.limits.max_queue_wait = Duration::from_millis(2500);
        })
        .sim(|s| s.requests_per_second = 0)
        .start()
        .await;
    let mut callers = Vec::new();
    for (path, _) in limits {
        for _ in 0..30 {
            let caller = Caller::clone(&gw);
            callers.push(tokio::spawn(async move {
                let (status, body) = caller
                    .send("POST", &format!("{path}?{}", auth_query()), SENDMSG_BODY)
                    .await;
                assert_eq!(status, 200);
                let answer: Value = serde_json::from_slice(&body).expect("JSON");
                answer["ErrorCode"].as_i64().expect("code")
            }));
        }
    }
    let mut codes: HashMap<i64, usize> = HashMap::new();
    for caller in callers {
        *codes.entry(caller.await.expect("caller")).or_default() += 1;
    }
    assert!(
        codes.keys().all(|code| *code == 0 || *code == 60007),
        "{codes:?}"
    );
    for (path, rate) in limits {
        let calls = calls_to(&gw, path);
        assert!(calls.iter().all(|c| c.error_code == 0));
        let max = max_in_any_second(calls.iter().map(|c| c.at).collect());
        assert!(max <= rate as usize, "{path}: {max} calls in one second");
        assert!(
            calls.len() >= 2 * rate as usize,
            "{path}: only {} calls in 2.5 s",
            calls.len()
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_paths_and_bad_credentials_are_answered_locally() {
    let gw = TestGateway::start().await;
    for path in [
        "/v4/openim",
        "/v4/openim/",
        "/v4//sendmsg",
        "/v4/open%2Fim/sendmsg",
        "/v4/openim/send%6Dsg",
        "/v4/openim/sendmsg/extra",
        "/v4/../metrics",
        "/v4/openim/..",
        "/v4/OpenIM/sendmsg",
        "/v5/openim/sendmsg",
    ] {
        let (status, body) = gw
            .send("POST", &format!("{path}?{}", auth_query()), SENDMSG_BODY)
            .await;
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            (status, &answer["ErrorCode"]),
            (404, &Value::from(60009)),
            "{path}"
        );
    }
    let (status, _) = gw
        .send("GET", &format!("{SENDMSG}?{}", auth_query()), Bytes::new())
        .await;
    assert_eq!(status, 405);
    let bad_sig = auth_query().replace("usersig=", "usersig=x");
    let (status, body) = gw
        .send("POST", &format!("{SENDMSG}?{bad_sig}"), SENDMSG_BODY)
        .await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 200);
    assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
    let (_, body) = gw.send("POST", SENDMSG, SENDMSG_BODY).await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["ActionStatus"], "FAIL", "no query at all: {answer}");
    assert!(gw.sim.calls().is_empty(), "nothing reached the upstream");
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("openim/sendmsg"),
        "refused callers create no series"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn with_pass_through_off_other_apis_are_404_and_the_table_still_served() {
    let gw = TestGateway::builder()
        .config(|c| c.passthrough.enabled = false)
        .start()
        .await;
    let (status, _) = gw
        .send("POST", &format!("{SENDMSG}?{}", auth_query()), SENDMSG_BODY)
        .await;
    assert_eq!(status, 404);
    let answer = gw
        .get(&support::get_body(&["user1"], &[support::NICK]))
        .await;
    assert_eq!(answer["ErrorCode"], 0);
    assert!(calls_to(&gw, SENDMSG).is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn past_max_distinct_apis_further_apis_share_the_other_label() {
    let gw = TestGateway::builder()
        .config(|c| c.passthrough.max_distinct_apis = 1)
        .start()
        .await;
    gw.post_bytes(SENDMSG, SENDMSG_BODY).await;
    let answer = gw.post_raw(FRIEND_GET, SENDMSG_BODY).await;
    assert_eq!(
        answer["Echo"]["Api"], "sns/friend_get",
        "still its own path upstream"
    );
    let own = "tim_gateway_requests_total{api=\"openim/sendmsg\",outcome=\"ok\"}";
    let other = "tim_gateway_requests_total{api=\"other\",outcome=\"ok\"}";
    assert_eq!(gw.metric(own).await, Some(1.0));
    assert_eq!(gw.metric(other).await, Some(1.0));
    assert!(!gw.metrics().await.contains("sns/friend_get"));
    gw.shutdown().await;
}
