//! The list reads: each answer for a fixed request as literal JSON, their refusals, their rate
//! windows and call log.

use super::*;

fn code_of(answer: &Value) -> i64 {
    answer["ErrorCode"].as_i64().unwrap_or(-2)
}

/// The sim's answer to `body` as a lone `api` call.
fn lone(sim: &Sim, api: Api, body: &str) -> Value {
    let answer = sim.answer_read(api, body.as_bytes()).expect("a read");
    serde_json::from_slice(&answer).expect("JSON")
}

/// Asserts the whole-call code the sim answers each body with as a lone `api` call (0 when
/// answered).
fn assert_codes(sim: &Sim, api: Api, cases: &[(String, i64)]) {
    for (body, code) in cases {
        assert_eq!(code_of(&lone(sim, api, body)), *code, "{api:?} {body}");
    }
}

fn direct_read(sim: &Sim, api: Api, body: &Value) -> Value {
    lone(sim, api, &body.to_string())
}

fn users(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("user{n}")).collect()
}

// === query_online_status ===

#[tokio::test]
async fn query_online_status_answers_in_request_order_with_detail_and_custom_status() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({
        "To_Account": ["user0", "user1", "user2", "user13", "nobody", "user0"],
        "IsNeedDetail": 1,
        "IsReturnCustomStatus": 1,
        "IsReturnInstid": 1
    });
    assert_eq!(
        TestClient::new(&sim)
            .call(Api::QueryOnlineStatus, &body)
            .await,
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
            "QueryResult": [
                {"To_Account": "user0", "Status": "Online", "CustomStatus": "busy-0",
                 "Detail": [{"Platform": "iPhone", "Status": "Online"}]},
                {"To_Account": "user1", "Status": "PushOnline", "CustomStatus": "",
                 "Detail": [{"Platform": "Android", "Status": "PushOnline"}]},
                {"To_Account": "user2", "Status": "Offline", "CustomStatus": "在忙 2"},
                {"To_Account": "user0", "Status": "Online", "CustomStatus": "busy-0",
                 "Detail": [{"Platform": "iPhone", "Status": "Online"}]}
            ],
            "ErrorList": [
                {"To_Account": "user13", "ErrorCode": 70500},
                {"To_Account": "nobody", "ErrorCode": 70107}
            ]
        })
    );
    let plain = direct_read(
        &sim,
        Api::QueryOnlineStatus,
        &json!({"To_Account": ["user5", "user3"], "IsNeedDetail": 0}),
    );
    assert_eq!(
        plain,
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
            "QueryResult": [
                {"To_Account": "user5", "Status": "Offline"},
                {"To_Account": "user3", "Status": "Online"}
            ],
            "ErrorList": []
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn query_online_status_refuses_malformed_requests_whole() {
    let sim = Sim::start(config()).await.expect("start");
    let api = Api::QueryOnlineStatus;
    let many = serde_json::to_string(&users(0..501)).expect("JSON");
    let most = serde_json::to_string(&users(0..500)).expect("JSON");
    let cases = [
        (r#"["user1"]"#.to_owned(), 90001),
        ("not json".to_owned(), 90001),
        ("{}".to_owned(), 90003),
        (r#"{"To_Account":null}"#.to_owned(), 90003),
        (r#"{"To_Account":"user1"}"#.to_owned(), 90003),
        (r#"{"To_Account":[]}"#.to_owned(), 90003),
        (r#"{"To_Account":["user1",2]}"#.to_owned(), 90003),
        (r#"{"To_Account":["user1",""]}"#.to_owned(), 90003),
        (format!(r#"{{"To_Account":{many}}}"#), 90011),
        (format!(r#"{{"To_Account":{most}}}"#), 0),
        (
            r#"{"To_Account":["user1"],"IsNeedDetail":2}"#.to_owned(),
            90010,
        ),
        (
            r#"{"To_Account":["user1"],"IsNeedDetail":"1"}"#.to_owned(),
            90010,
        ),
        (
            r#"{"To_Account":["user1"],"IsReturnInstid":1.0}"#.to_owned(),
            90010,
        ),
        (
            r#"{"To_Account":["user1"],"IsReturnCustomStatus":null}"#.to_owned(),
            90010,
        ),
        (r#"{"To_Account":["user1"],"IsNeedDetail":1}"#.to_owned(), 0),
    ];
    assert_codes(&sim, api, &cases);
    let (status, bytes) = TestClient::new(&sim)
        .send(Method::POST, api.path(), r#"{"To_Account":[]}"#)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    let refused: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(
        refused,
        json!({"ActionStatus": "FAIL", "ErrorInfo": "To_Account must be a non-empty array of UserIDs", "ErrorCode": 90003})
    );
    sim.shutdown().await;
}

// === account_check ===

#[tokio::test]
async fn account_check_answers_each_item_in_request_order() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({"CheckItem": [
        {"UserID": "user1"}, {"UserID": "user13"}, {"UserID": "user01"},
        {"UserID": "nobody"}, {"UserID": "user1"}, {"UserID": "user999"}, {"UserID": "user1000"}
    ]});
    let answer = TestClient::new(&sim).call(Api::AccountCheck, &body).await;
    let imported = |id: &str| json!({"UserID": id, "ResultCode": 0, "ResultInfo": "", "AccountStatus": "Imported"});
    let not_imported = |id: &str| json!({"UserID": id, "ResultCode": 0, "ResultInfo": "", "AccountStatus": "NotImported"});
    assert_eq!(
        answer,
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
            "ResultItem": [
                imported("user1"),
                {"UserID": "user13", "ResultCode": 70500, "ResultInfo": "internal error"},
                not_imported("user01"),
                not_imported("nobody"),
                imported("user1"),
                imported("user999"),
                not_imported("user1000")
            ]
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn account_check_refuses_malformed_requests_whole() {
    let sim = Sim::start(config()).await.expect("start");
    let items = |n: u32| {
        let items: Vec<Value> = users(0..n).iter().map(|u| json!({"UserID": u})).collect();
        json!({ "CheckItem": items }).to_string()
    };
    let cases = [
        ("[]".to_owned(), 90001),
        ("{".to_owned(), 90001),
        ("{}".to_owned(), 70402),
        (r#"{"CheckItem":{"UserID":"user1"}}"#.to_owned(), 70402),
        (r#"{"CheckItem":[]}"#.to_owned(), 70402),
        (r#"{"CheckItem":["user1"]}"#.to_owned(), 70402),
        (r#"{"CheckItem":[{"UserId":"user1"}]}"#.to_owned(), 70402),
        (r#"{"CheckItem":[{"UserID":""}]}"#.to_owned(), 70402),
        (r#"{"CheckItem":[{"UserID":7}]}"#.to_owned(), 70402),
        (items(101), 70402),
        (items(100), 0),
    ];
    assert_codes(&sim, Api::AccountCheck, &cases);
    assert_eq!(
        lone(&sim, Api::AccountCheck, &items(101)),
        json!({"ActionStatus": "FAIL", "ErrorInfo": "CheckItem holds more than 100 items", "ErrorCode": 70402})
    );
    sim.shutdown().await;
}

// === rate windows and the call log ===

#[tokio::test]
async fn each_list_read_has_its_own_window_and_account_check_its_own_limit() {
    let sim = Sim::start(SimConfig {
        requests_per_second: 3,
        account_check_per_second: 2,
        ..config()
    })
    .await
    .expect("start");
    let client = TestClient::new(&sim);
    let check = json!({"CheckItem": [{"UserID": "user1"}]});
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code_of(&client.call(Api::AccountCheck, &check).await));
    }
    assert_eq!(codes, [0, 0, 60007]);
    let requests = [
        (Api::QueryOnlineStatus, json!({"To_Account": ["user1"]})),
        (Api::GroupInfo, json!({"GroupIdList": ["group1"]})),
        (
            Api::GroupMemberInfo,
            json!({"GroupId": "group1", "Member_List_Account": ["user10"]}),
        ),
    ];
    for (api, body) in requests {
        let mut codes = Vec::new();
        for _ in 0..4 {
            codes.push(code_of(&client.call(api, &body).await));
        }
        assert_eq!(codes, [0, 0, 0, 60007], "{api:?}");
    }
    assert_eq!(sim.stats().list_calls, 15);
    assert_eq!(sim.stats().rate_limited, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_call_log_holds_each_calls_ids_in_request_order() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let calls = [
        (
            Api::QueryOnlineStatus,
            json!({"To_Account": ["user2", "user1", "user2"]}),
        ),
        (
            Api::AccountCheck,
            json!({"CheckItem": [{"UserID": "a"}, {"UserID": "b"}]}),
        ),
    ];
    for (api, body) in &calls {
        client.call(*api, body).await;
    }
    let logged: Vec<(Api, Vec<String>, i64)> = sim
        .calls()
        .into_iter()
        .map(|c| (c.api, c.accounts, c.error_code))
        .collect();
    let ids = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        logged,
        [
            (Api::QueryOnlineStatus, ids(&["user2", "user1", "user2"]), 0),
            (Api::AccountCheck, ids(&["a", "b"]), 0),
        ]
    );
    assert!(sim.calls().iter().all(|c| c.tags.is_empty()));
    assert_eq!(sim.call_count(Api::AccountCheck), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn answers_are_deterministic_across_sims_and_equal_answer_read() {
    let sim = Sim::start(config()).await.expect("start");
    let other = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let requests = [
        (
            Api::QueryOnlineStatus,
            json!({"To_Account": users(0..500), "IsNeedDetail": 1}),
        ),
        (
            Api::AccountCheck,
            json!({"CheckItem": users(0..100).iter().map(|u| json!({"UserID": u})).collect::<Vec<_>>()}),
        ),
    ];
    for (api, body) in requests {
        let text = body.to_string();
        let (_, over_http) = client
            .send(Method::POST, api.path(), &text)
            .await
            .expect("answer");
        let direct = sim.answer_read(api, text.as_bytes()).expect("a read");
        assert_eq!(&over_http[..], &direct[..], "{api:?}");
        assert_eq!(other.answer_read(api, text.as_bytes()), Some(direct));
    }
    assert_eq!(sim.answer_read(Api::PortraitSet, b"{}"), None);
    assert_eq!(sim.answer_read(Api::Other, b"{}"), None);
    other.shutdown().await;
    sim.shutdown().await;
}
