//! portrait_set validation and storage, and the call log.

use super::*;

// === portrait_set and the call log ===

#[tokio::test]
async fn portrait_set_changes_later_answers() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let set = json!({"From_Account": "user3", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "new \"nick\" ✓"},
        {"Tag": "Tag_Profile_IM_Level", "Value": 42},
        {"Tag": "Tag_Profile_Custom_Test", "Value": "c"}]});
    assert_eq!(
        client.call(Api::PortraitSet, &set).await,
        json!({"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""})
    );
    let answer = client
        .get(&["user3"], &["Tag_Profile_IM_Level", "Tag_Profile_IM_Nick"])
        .await;
    assert_eq!(
        answer["UserProfileItem"][0]["ProfileItem"],
        json!([
        {"Tag": "Tag_Profile_IM_Level", "Value": 42}, {"Tag": "Tag_Profile_IM_Nick", "Value": "new \"nick\" ✓"}])
    );
    assert_eq!(
        sim.profile_value("user3", "Tag_Profile_IM_Level")
            .as_deref(),
        Some("42")
    );
    assert_eq!(
        sim.profile_value("user3", "Tag_Profile_Custom_Test")
            .as_deref(),
        Some("\"c\"")
    );
    assert_eq!(
        direct(&sim, &["user3"], &["Tag_Profile_IM_Level"]),
        client.get(&["user3"], &["Tag_Profile_IM_Level"]).await
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn portrait_set_rejects_bad_bodies_tags_and_accounts() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let item = json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "x"}]);
    let cases = [
        (json!("not an object"), 40001),
        (json!({"ProfileItem": item}), 40001),
        (json!({"From_Account": "user1"}), 40001),
        (json!({"From_Account": "user1", "ProfileItem": []}), 40001),
        (
            json!({"From_Account": "user1", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick"}]}),
            40001,
        ),
        (
            json!({"From_Account": "user1", "ProfileItem": [{"Tag": "Tag_Profile_IM_Bogus", "Value": 1}]}),
            40009,
        ),
        (
            json!({"From_Account": "user1", "ProfileItem": [{"Tag": "Tag_Profile_Custom_Nope", "Value": "v"}]}),
            40009,
        ),
        (
            json!({"From_Account": "user1000", "ProfileItem": item}),
            40003,
        ),
    ];
    for (body, code) in cases {
        let answer = client.call(Api::PortraitSet, &body).await;
        assert_eq!(
            (
                answer["ActionStatus"].as_str(),
                answer["ErrorCode"].as_i64()
            ),
            (Some("FAIL"), Some(code)),
            "{body}"
        );
    }
    let (_, raw) = client
        .send(Method::POST, Api::PortraitSet.path(), "{not json")
        .await
        .expect("answer");
    assert_eq!(
        serde_json::from_slice::<Value>(&raw).expect("JSON")["ErrorInfo"],
        "Err_Profile_Comm_Decode_Fail"
    );
    let untouched =
        super::profiles::Profiles::new(1000, &[]).value_text("user1", "Tag_Profile_IM_Nick");
    assert_eq!(
        sim.profile_value("user1", "Tag_Profile_IM_Nick"),
        untouched,
        "nothing was stored"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_call_log_records_accounts_tags_and_error_codes() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    client
        .get(&["user1", "user2"], &["Tag_Profile_IM_Nick"])
        .await;
    client.get(&["user1"], &["Tag_Profile_Custom_Nope"]).await;
    client.call(Api::PortraitSet, &json!({"From_Account": "user5", "ProfileItem": [{"Tag": "Tag_Profile_IM_Role", "Value": 1}]})).await;
    client
        .send(Method::POST, Api::PortraitGet.path(), "garbage")
        .await
        .expect("answer");
    let calls = sim.calls();
    let seen: Vec<(Api, Vec<String>, Vec<String>, i64)> = calls
        .iter()
        .map(|c| (c.api, c.accounts.clone(), c.tags.clone(), c.error_code))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        vec![
            (
                Api::PortraitGet,
                s(&["user1", "user2"]),
                s(&["Tag_Profile_IM_Nick"]),
                0
            ),
            (
                Api::PortraitGet,
                s(&["user1"]),
                s(&["Tag_Profile_Custom_Nope"]),
                40009
            ),
            (
                Api::PortraitSet,
                s(&["user5"]),
                s(&["Tag_Profile_IM_Role"]),
                0
            ),
            (Api::PortraitGet, vec![], vec![], 40001),
        ]
    );
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(
        (
            sim.call_count(Api::PortraitGet),
            sim.call_count(Api::PortraitSet)
        ),
        (3, 1)
    );
    sim.clear_calls();
    assert!(sim.calls().is_empty());
    sim.shutdown().await;
}
