//! The four list reads: each answer for a fixed request as literal JSON, their refusals, their
//! rate windows and call log, presence changes with their `State.StateChange`, and group names.

use super::callbacks::{params, sim_config, Answer, Receiver};
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

// === get_group_info ===

/// Group 1 of the test app, every field, as the sim generates it.
fn group1() -> Value {
    json!({
        "GroupId": "group1", "ErrorCode": 0, "ErrorInfo": "",
        "Type": "Private", "Name": "group-1", "Appid": 1_400_000_000u64,
        "Introduction": "introduction of group1", "Notification": "notification of group1",
        "FaceUrl": "https://img.example/g1.png", "Owner_Account": "user10",
        "CreateTime": 1_600_003_600u64, "InfoSeq": 2, "LastInfoTime": 1_600_004_200u64,
        "LastMsgTime": 1_600_004_800u64, "NextMsgSeq": 3, "MemberNum": 3, "MaxMemberNum": 200,
        "ApplyJoinOption": "NeedPermission", "ShutUpAllMember": "Off",
        "MemberList": [
            {"Member_Account": "user10", "Role": "Owner", "JoinTime": 1_600_003_600u64,
             "MsgSeq": 1, "MsgFlag": "AcceptAndNotify", "LastSendMsgTime": 1_600_003_630u64,
             "ShutUpUntil": 0},
            {"Member_Account": "user11", "Role": "Admin", "JoinTime": 1_600_003_660u64,
             "MsgSeq": 2, "MsgFlag": "AcceptAndNotify", "LastSendMsgTime": 0, "ShutUpUntil": 0},
            {"Member_Account": "user12", "Role": "Member", "JoinTime": 1_600_003_720u64,
             "MsgSeq": 3, "MsgFlag": "AcceptAndNotify", "LastSendMsgTime": 1_600_003_750u64,
             "ShutUpUntil": 1_700_000_000u64}
        ]
    })
}

#[tokio::test]
async fn get_group_info_answers_every_field_without_a_filter() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({"GroupIdList": ["group1", "group1000", "group13", "group1"]});
    let answer = TestClient::new(&sim).call(Api::GroupInfo, &body).await;
    assert_eq!(
        answer,
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
            "GroupInfo": [
                group1(),
                {"GroupId": "group1000", "ErrorCode": 10010, "ErrorInfo": "group does not exist"},
                {"GroupId": "group13", "ErrorCode": 10002, "ErrorInfo": "internal error, retry"},
                group1()
            ]
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_group_info_returns_only_what_the_filters_name() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({
        "GroupIdList": ["group7", "group01"],
        "ResponseFilter": {
            "GroupBaseInfoFilter": ["Name", "MemberNum", "NoSuchField"],
            "MemberInfoFilter": ["Role", "Account"],
            "AppDefinedDataFilter_Group": ["GroupTestData1"]
        }
    });
    let roles = [
        "Owner", "Admin", "Member", "Member", "Member", "Member", "Member", "Member", "Member",
    ];
    let members: Vec<Value> = (70..79)
        .zip(roles)
        .map(|(n, role)| json!({"Member_Account": format!("user{n}"), "Role": role}))
        .collect();
    assert_eq!(
        direct_read(&sim, Api::GroupInfo, &body),
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
            "GroupInfo": [
                {"GroupId": "group7", "ErrorCode": 0, "ErrorInfo": "", "Name": "群组-7",
                 "MemberNum": 9, "MemberList": members},
                {"GroupId": "group01", "ErrorCode": 10010, "ErrorInfo": "group does not exist"}
            ]
        })
    );
    let base_only = json!({"GroupIdList": ["group22"], "ResponseFilter": {"GroupBaseInfoFilter": ["Name", "ShutUpAllMember"]}});
    assert_eq!(
        direct_read(&sim, Api::GroupInfo, &base_only)["GroupInfo"],
        json!([{"GroupId": "group22", "ErrorCode": 0, "ErrorInfo": "", "Name": "group \"22\"", "ShutUpAllMember": "Off"}])
    );
    let nothing = json!({"GroupIdList": ["group10"], "ResponseFilter": {}});
    assert_eq!(
        direct_read(&sim, Api::GroupInfo, &nothing)["GroupInfo"],
        json!([{"GroupId": "group10", "ErrorCode": 0, "ErrorInfo": ""}])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_group_info_refuses_malformed_requests_whole() {
    let sim = Sim::start(config()).await.expect("start");
    let ids = |n: u32| {
        let ids: Vec<String> = (0..n).map(|i| format!("group{i}")).collect();
        json!({ "GroupIdList": ids }).to_string()
    };
    let cases = [
        ("7".to_owned(), 90001),
        ("{}".to_owned(), 10004),
        (r#"{"GroupIdList":"group1"}"#.to_owned(), 10004),
        (r#"{"GroupIdList":[]}"#.to_owned(), 10004),
        (r#"{"GroupIdList":["group1",1]}"#.to_owned(), 10004),
        (r#"{"GroupIdList":[""]}"#.to_owned(), 10004),
        (ids(51), 10004),
        (ids(50), 0),
        (
            r#"{"GroupIdList":["group1"],"ResponseFilter":[]}"#.to_owned(),
            10004,
        ),
        (
            r#"{"GroupIdList":["group1"],"ResponseFilter":{"MemberInfoFilter":"Role"}}"#.to_owned(),
            10004,
        ),
        (
            r#"{"GroupIdList":["group1"],"ResponseFilter":{"AppDefinedDataFilter_GroupMember":[1]}}"#
                .to_owned(),
            10004,
        ),
        (
            r#"{"GroupIdList":["nobody"],"ResponseFilter":{"GroupBaseInfoFilter":[]}}"#.to_owned(),
            0,
        ),
    ];
    assert_codes(&sim, Api::GroupInfo, &cases);
    assert_eq!(
        lone(&sim, Api::GroupInfo, &ids(51)),
        json!({"ActionStatus": "FAIL", "ErrorInfo": "GroupIdList holds more than 50 groups", "ErrorCode": 10004})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn set_group_name_changes_what_get_group_info_answers() {
    let sim = Sim::start(config()).await.expect("start");
    let body =
        json!({"GroupIdList": ["group1"], "ResponseFilter": {"GroupBaseInfoFilter": ["Name"]}});
    assert!(sim.set_group_name("group1", "renamed \"1\""));
    assert!(!sim.set_group_name("group1000", "x"), "no such group");
    assert_eq!(
        TestClient::new(&sim).call(Api::GroupInfo, &body).await["GroupInfo"][0]["Name"],
        "renamed \"1\""
    );
    let other = Sim::start(config()).await.expect("start");
    assert_eq!(
        direct_read(&other, Api::GroupInfo, &body)["GroupInfo"][0]["Name"],
        "group-1",
        "names are per sim"
    );
    other.shutdown().await;
    sim.shutdown().await;
}

// === get_specified_group_member_info ===

#[tokio::test]
async fn specified_member_info_answers_members_in_request_order() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({"GroupId": "group1", "Member_List_Account": ["user12", "user10", "nobody", "user13", "user12"]});
    let user12 = json!({"Member_Account": "user12", "Role": "Member", "JoinTime": 1_600_003_720u64,
        "MsgSeq": 3, "MsgFlag": "AcceptAndNotify", "LastSendMsgTime": 1_600_003_750u64,
        "MuteUntil": 1_700_000_000u64, "NameCard": ""});
    assert_eq!(
        TestClient::new(&sim)
            .call(Api::GroupMemberInfo, &body)
            .await,
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0, "GroupId": "group1",
            "MemberList": [
                user12,
                {"Member_Account": "user10", "Role": "Owner", "JoinTime": 1_600_003_600u64,
                 "MsgSeq": 1, "MsgFlag": "AcceptAndNotify", "LastSendMsgTime": 1_600_003_630u64,
                 "MuteUntil": 0, "NameCard": ""},
                user12
            ]
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn specified_member_info_filters_fields_and_roles() {
    let sim = Sim::start(config()).await.expect("start");
    let body = json!({
        "GroupId": "group1",
        "Member_List_Account": ["user10", "user11", "user12"],
        "MemberInfoFilter": ["Role", "NameCard", "OnlineStatus"],
        "MemberRoleFilter": ["Admin", "Member"],
        "AppDefinedDataFilter_GroupMember": ["group_member_p"]
    });
    assert_eq!(
        direct_read(&sim, Api::GroupMemberInfo, &body),
        json!({
            "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0, "GroupId": "group1",
            "MemberList": [
                {"Member_Account": "user11", "Role": "Admin", "NameCard": "card-user11", "OnlineStatus": "Offline"},
                {"Member_Account": "user12", "Role": "Member", "NameCard": "", "OnlineStatus": "Online"}
            ]
        })
    );
    let owners = json!({"GroupId": "group1", "Member_List_Account": ["user11", "user10"], "MemberRoleFilter": ["Owner"], "MemberInfoFilter": []});
    assert_eq!(
        direct_read(&sim, Api::GroupMemberInfo, &owners)["MemberList"],
        json!([{"Member_Account": "user10"}])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn specified_member_info_refuses_with_the_pages_codes() {
    let sim = Sim::start(config()).await.expect("start");
    let members =
        |n: u32| json!({"GroupId": "group1", "Member_List_Account": users(0..n)}).to_string();
    let cases = [
        ("null".to_owned(), 90001),
        (r#"{"Member_List_Account":["user10"]}"#.to_owned(), 10004),
        (
            r#"{"GroupId":1,"Member_List_Account":["user10"]}"#.to_owned(),
            10004,
        ),
        (
            r#"{"GroupId":"","Member_List_Account":["user10"]}"#.to_owned(),
            10015,
        ),
        (r#"{"GroupId":"group1"}"#.to_owned(), 10004),
        (
            r#"{"GroupId":"group1","Member_List_Account":[]}"#.to_owned(),
            10004,
        ),
        (
            r#"{"GroupId":"group1","Member_List_Account":[""]}"#.to_owned(),
            10004,
        ),
        (members(51), 10005),
        (members(50), 0),
        (
            r#"{"GroupId":"group1","Member_List_Account":["user10"],"MemberRoleFilter":"Owner"}"#
                .to_owned(),
            10004,
        ),
        (
            r#"{"GroupId":"group1","Member_List_Account":["user10"],"MemberInfoFilter":[null]}"#
                .to_owned(),
            10004,
        ),
        (
            r#"{"GroupId":"group1000","Member_List_Account":["user10"]}"#.to_owned(),
            10010,
        ),
        (
            r#"{"GroupId":"group13","Member_List_Account":["user10"]}"#.to_owned(),
            10002,
        ),
    ];
    assert_codes(&sim, Api::GroupMemberInfo, &cases);
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
        (Api::GroupInfo, json!({"GroupIdList": ["group3", "group1"]})),
        (
            Api::GroupMemberInfo,
            json!({"GroupId": "group1", "Member_List_Account": ["user10", "user11"]}),
        ),
        (Api::GroupInfo, json!({"GroupIdList": "not a list"})),
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
            (Api::GroupInfo, ids(&["group3", "group1"]), 0),
            (Api::GroupMemberInfo, ids(&["user10", "user11"]), 0),
            (Api::GroupInfo, Vec::new(), 10004),
        ]
    );
    assert!(sim.calls().iter().all(|c| c.tags.is_empty()));
    assert_eq!(sim.call_count(Api::GroupInfo), 2);
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
        (
            Api::GroupInfo,
            json!({"GroupIdList": (0..50).map(|n| format!("group{n}")).collect::<Vec<_>>()}),
        ),
        (
            Api::GroupMemberInfo,
            json!({"GroupId": "group8", "Member_List_Account": users(70..120)}),
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

// === presence and State.StateChange ===

#[tokio::test]
async fn set_online_status_changes_what_the_reads_answer() {
    let sim = Sim::start(config()).await.expect("start");
    assert_eq!(sim.online_status("user2"), Some("Offline"));
    assert_eq!(sim.set_online_status("user2", "Online").await, Ok(None));
    assert_eq!(sim.set_online_status("user3", "PushOnline").await, Ok(None));
    assert_eq!(sim.set_online_status("user0", "Offline").await, Ok(None));
    let body = json!({"To_Account": ["user2", "user3", "user0"], "IsNeedDetail": 1});
    assert_eq!(
        TestClient::new(&sim)
            .call(Api::QueryOnlineStatus, &body)
            .await["QueryResult"],
        json!([
            {"To_Account": "user2", "Status": "Online", "Detail": [{"Platform": "iPhone", "Status": "Online"}]},
            {"To_Account": "user3", "Status": "PushOnline", "Detail": [{"Platform": "Android", "Status": "PushOnline"}]},
            {"To_Account": "user0", "Status": "Offline"}
        ])
    );
    let members = json!({"GroupId": "group1", "Member_List_Account": ["user12"], "MemberInfoFilter": ["OnlineStatus"]});
    assert_eq!(
        sim.set_online_status("user12", "PushOnline").await,
        Ok(None)
    );
    assert_eq!(
        direct_read(&sim, Api::GroupMemberInfo, &members)["MemberList"],
        json!([{"Member_Account": "user12", "OnlineStatus": "PushOnline"}])
    );
    assert_eq!(
        sim.set_online_status("user2", "online").await,
        Err(ClientSetError::UnknownStatus("online".to_owned()))
    );
    assert_eq!(
        sim.set_online_status("nobody", "Online").await,
        Err(ClientSetError::Refused(70107))
    );
    assert_eq!(sim.online_status("user2"), Some("Online"));
    assert_eq!(sim.online_status("nobody"), None);
    assert_eq!(sim.calls().len(), 1, "only the REST call is logged");
    sim.shutdown().await;
}

#[test]
fn the_state_change_body_follows_tencents_example() {
    let text =
        String::from_utf8(state_change_callback("user3", "Login", "Register")).expect("utf-8");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    let event_ms = body["EventTime"].as_u64().unwrap_or(0);
    assert!(
        event_ms > now_unix() * 1000 - 60_000,
        "milliseconds: {event_ms}"
    );
    assert_eq!(
        body,
        json!({"CallbackCommand": "State.StateChange", "EventTime": event_ms,
               "Info": {"Action": "Login", "To_Account": "user3", "Reason": "Register"}})
    );
    assert!(
        text.starts_with(r#"{"CallbackCommand":"State.StateChange","EventTime":"#),
        "{text}"
    );
    assert_eq!(STATE_CHANGE_COMMAND, "State.StateChange");
}

#[tokio::test]
async fn each_presence_change_sends_a_signed_state_change() {
    let receiver = Receiver::start(Answer::Ok).await;
    let sim = Sim::start(sim_config(&receiver)).await.expect("start");
    let changes = [
        ("user4", "Online", "Login", "Register", "IOS"),
        ("user4", "PushOnline", "Disconnect", "LinkClose", "Android"),
        ("user5", "Offline", "Logout", "Unregister", "IOS"),
    ];
    for (account, status, ..) in changes {
        let (code, _) = sim
            .set_online_status(account, status)
            .await
            .expect("changed and delivered")
            .expect("a callback URL is set");
        assert_eq!(code, StatusCode::OK);
    }
    assert_eq!(
        sim.set_online_status("nobody", "Online").await,
        Err(ClientSetError::Refused(70107))
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), changes.len(), "a refused change sends nothing");
    for (received, (account, _, action, reason, platform)) in seen.iter().zip(changes) {
        let params = params(received);
        assert_eq!(params["CallbackCommand"], STATE_CHANGE_COMMAND);
        assert_eq!(params["OptPlatform"], platform);
        let time: u64 = params["RequestTime"].parse().expect("a number");
        assert_eq!(params["Sign"], sign("callback-token", time));
        let body: Value = serde_json::from_slice(&received.1).expect("JSON");
        assert_eq!(
            body["Info"],
            json!({"Action": action, "To_Account": account, "Reason": reason})
        );
    }
    assert_eq!(sim.online_status("user4"), Some("PushOnline"));
    assert_eq!(
        (sim.stats().callbacks_sent, sim.stats().callback_failures),
        (3, 0)
    );
    assert!(sim.calls().is_empty(), "no REST call");
    sim.shutdown().await;
}
