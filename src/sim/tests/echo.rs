//! Every other `/v4/<service>/<command>`: the echo answer, its checks, its own rate limit per
//! path, faults, and the call log showing what crossed the wire.

use super::*;

const SENDMSG: &str = "/v4/openim/sendmsg";

fn error_code(bytes: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(bytes).expect("JSON")["ErrorCode"]
        .as_i64()
        .unwrap_or(-2)
}

#[test]
fn paths_name_an_echoed_api_only_in_tencents_shape() {
    let cases = [
        ("/v4/profile/portrait_get", Some(Api::PortraitGet)),
        ("/v4/profile/portrait_set", Some(Api::PortraitSet)),
        ("/v4/openim/sendmsg", Some(Api::Other)),
        (
            "/v4/openim/query_online_status",
            Some(Api::QueryOnlineStatus),
        ),
        (
            "/v4/im_open_login_svc/account_check",
            Some(Api::AccountCheck),
        ),
        (
            "/v4/group_open_http_svc/get_group_info",
            Some(Api::GroupInfo),
        ),
        (
            "/v4/group_open_http_svc/get_specified_group_member_info",
            Some(Api::GroupMemberInfo),
        ),
        (
            "/v4/group_open_http_svc/get_group_member_info",
            Some(Api::Other),
        ),
        ("/v4/openim/querystate", Some(Api::Other)),
        ("/v4/openim/batchsendmsg2", Some(Api::Other)),
        ("/v4/profile/portrait_nope", Some(Api::Other)),
        ("/v4/open1m/sendmsg", None),
        ("/v4/openim/", None),
        ("/v4/openim", None),
        ("/v4//sendmsg", None),
        ("/v4/openim/send/msg", None),
        ("/v4/openim/send%2fmsg", None),
        ("/v4/../admin/x", None),
        ("/v4/OpenIM/sendmsg", None),
        ("/v3/openim/sendmsg", None),
        ("/v4/openim/sendmsg/", None),
    ];
    for (path, api) in cases {
        assert_eq!(Api::from_path(path), api, "{path}");
    }
}

#[tokio::test]
async fn an_echoed_api_answers_its_name_and_the_body_byte_for_byte() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let body = " {\"To_Account\":\"user1\", \"MsgBody\":[{\"MsgType\":\"TIMTextElem\",\"MsgContent\":{\"Text\":\"hé \\\"x\\\"\"}}],\"n\":1.50}\n";
    let (status, answer) = client
        .send(Method::POST, SENDMSG, body)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    let expected = format!(
        r#"{{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Echo":{{"Api":"openim/sendmsg","Body":{body}}}}}"#
    );
    assert_eq!(std::str::from_utf8(&answer).expect("utf-8"), expected);
    let parsed: Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(parsed["Echo"]["Body"]["n"], json!(1.5));
    let again = client
        .send(Method::POST, SENDMSG, body)
        .await
        .expect("answer");
    assert_eq!(again.1, answer, "depends only on (path, body)");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_echoed_api_refuses_bodies_that_are_not_json_objects_with_40001() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    for body in ["", "[1]", "\"x\"", "{not json", "{} trailing", "null"] {
        let (status, answer) = client
            .send(Method::POST, SENDMSG, body)
            .await
            .expect("answer");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_slice::<Value>(&answer).expect("JSON"),
            json!({"ActionStatus": "FAIL", "ErrorCode": 40001,
                "ErrorInfo": "Err_Profile_Comm_Decode_Fail", "ErrorDisplay": ""}),
            "{body:?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_echoed_api_checks_the_query_string_like_the_others() {
    let sim = Sim::start(config()).await.expect("start");
    let mut client = TestClient::new(&sim);
    client.query = query_for("administrator", "some-other-apps-key");
    let (_, answer) = client
        .send(Method::POST, SENDMSG, "{}")
        .await
        .expect("answer");
    assert_eq!(error_code(&answer), 70009);
    client.query = "sdkappid=1400000001&identifier=administrator".to_owned();
    let (_, answer) = client
        .send(Method::POST, SENDMSG, "{}")
        .await
        .expect("answer");
    assert_eq!(error_code(&answer), 70014);
    client.query = query_for("user1", DEMO_SECRET_KEY);
    let (_, answer) = client
        .send(Method::POST, SENDMSG, "{}")
        .await
        .expect("answer");
    assert_eq!(error_code(&answer), 40004);
    sim.shutdown().await;
}

#[tokio::test]
async fn each_echoed_path_has_its_own_rate_window() {
    let sim = Sim::start(SimConfig {
        requests_per_second: 3,
        ..config()
    })
    .await
    .expect("start");
    let client = TestClient::new(&sim);
    let mut codes = Vec::new();
    for path in [SENDMSG; 4].into_iter().chain(["/v4/sns/friend_get"; 4]) {
        let (_, answer) = client.send(Method::POST, path, "{}").await.expect("answer");
        codes.push(error_code(&answer));
    }
    assert_eq!(codes, [0, 0, 0, 60007, 0, 0, 0, 60007]);
    assert_eq!(
        client.get(&["user1"], &["Tag_Profile_IM_Nick"]).await["ErrorCode"],
        0,
        "portrait_get's window is its own"
    );
    assert_eq!(sim.stats().rate_limited, 2);
    sim.shutdown().await;
}

#[test]
fn the_map_of_path_windows_stays_bounded_and_drops_idle_paths() {
    let windows = RateWindows::default();
    let t0 = Instant::now();
    let path = |n: usize| format!("/v4/svc/cmd{n}");
    for n in 0..MAX_TRACKED_PATHS {
        assert!(windows.admit(Api::Other, &path(n), t0, 5));
    }
    assert!(
        !windows.admit(Api::Other, "/v4/svc/one_too_many", t0, 5),
        "every tracked path is busy"
    );
    assert!(
        windows.admit(Api::Other, &path(7), t0, 5),
        "known paths go on"
    );
    let later = t0 + Duration::from_millis(1500);
    assert!(windows.admit(Api::Other, "/v4/svc/one_too_many", later, 5));
    assert_eq!(windows.tracked_paths(), 1, "idle windows were dropped");
    assert!(
        (0..10).all(|_| windows.admit(Api::Other, "/v4/svc/x", t0, 0)),
        "0 disables the limit"
    );
}

#[tokio::test]
async fn faults_and_the_call_log_cover_echoed_apis() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    sim.set_fault(Fault::Status(502));
    let (status, _) = client
        .send(Method::POST, SENDMSG, "{}")
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    sim.set_fault(Fault::None);
    let body = r#"{"MsgRandom":7}"#;
    client
        .send(Method::POST, SENDMSG, body)
        .await
        .expect("answer");
    let calls = sim.calls();
    let seen: Vec<(Api, &str, &str, &[u8], i64)> = calls
        .iter()
        .map(|c| {
            (
                c.api,
                c.path.as_str(),
                c.query.as_str(),
                &c.body[..],
                c.error_code,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Api::Other, SENDMSG, client.query.as_str(), &b"{}"[..], -1),
            (
                Api::Other,
                SENDMSG,
                client.query.as_str(),
                body.as_bytes(),
                0
            ),
        ]
    );
    assert!(calls
        .iter()
        .all(|c| c.accounts.is_empty() && c.tags.is_empty()));
    assert_eq!(sim.call_count(Api::Other), 2);
    let stats = sim.stats();
    assert_eq!((stats.other_calls, stats.faulted), (2, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_call_log_keeps_the_raw_query_and_body_of_profile_calls_too() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let body = r#"{"To_Account":["user1"],"TagList":["Tag_Profile_IM_Nick"]}"#;
    client
        .send(Method::POST, Api::PortraitGet.path(), body)
        .await
        .expect("answer");
    let calls = sim.calls();
    assert_eq!(calls[0].path, Api::PortraitGet.path());
    assert_eq!(calls[0].query, client.query);
    assert_eq!(&calls[0].body[..], body.as_bytes());
    sim.shutdown().await;
}
