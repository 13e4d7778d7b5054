//! portrait_get answers: determinism, order, duplicates, unset tags and Tencent's error scopes.

use super::*;

// === portrait_get answers ===

#[tokio::test]
async fn answers_are_deterministic_and_equal_answer_portrait_get() {
    let sim = Sim::start(config()).await.expect("start");
    let client = TestClient::new(&sim);
    let accounts: Vec<String> = (0..100).map(|n| format!("user{n}")).collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let tags: Vec<&str> = crate::wire::STANDARD_TAGS
        .iter()
        .copied()
        .chain(["Tag_Profile_Custom_Test"])
        .collect();
    let body = get_body(&accounts, &tags);
    let first = client
        .send(
            Method::POST,
            Api::PortraitGet.path(),
            std::str::from_utf8(&body).expect("utf-8"),
        )
        .await;
    let second = client
        .send(
            Method::POST,
            Api::PortraitGet.path(),
            std::str::from_utf8(&body).expect("utf-8"),
        )
        .await;
    let first = first.expect("answer").1;
    assert_eq!(first, second.expect("answer").1);
    assert_eq!(&first[..], &sim.answer_portrait_get(&body)[..]);
    let other = Sim::start(config()).await.expect("start");
    assert_eq!(
        other.answer_portrait_get(&body),
        sim.answer_portrait_get(&body)
    );
    other.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_accounts_and_tags_are_answered_in_request_order() {
    let sim = Sim::start(config()).await.expect("start");
    let tags = ["Tag_Profile_IM_Image", "Tag_Profile_IM_Image"];
    let answer = TestClient::new(&sim)
        .get(&["user2", "user1", "user2"], &tags)
        .await;
    let items = answer["UserProfileItem"].as_array().expect("entries");
    let order: Vec<&str> = items
        .iter()
        .map(|i| i["To_Account"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(order, ["user2", "user1", "user2"]);
    assert_eq!(items[0], items[2]);
    for item in items {
        let n = item["To_Account"]
            .as_str()
            .and_then(|a| a.strip_prefix("user"))
            .unwrap_or("");
        let profile = item["ProfileItem"].as_array().expect("ProfileItem");
        if let Some(image) = sim.profile_value(&format!("user{n}"), "Tag_Profile_IM_Image") {
            assert_eq!(profile.len(), 2, "{item}");
            assert_eq!(profile[0]["Value"].to_string(), image);
            assert_eq!(profile[0], profile[1]);
        } else {
            assert!(profile.is_empty());
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn accounts_13_mod_97_fail_per_account_with_40006() {
    let sim = Sim::start(config()).await.expect("start");
    let answer = TestClient::new(&sim)
        .get(&["user12", "user13", "user110"], &["Tag_Profile_IM_Nick"])
        .await;
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["Fail_Account"], json!(["user13", "user110"]));
    let failed = &answer["UserProfileItem"][1];
    assert_eq!(failed["ResultCode"], 40006);
    assert_eq!(
        failed["ResultInfo"],
        "Err_Profile_PortraitGet_Read_Custom_Data_Fail"
    );
    assert!(failed.get("ProfileItem").is_none());
    assert_eq!(answer["UserProfileItem"][0]["ResultCode"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn unset_tags_are_omitted_and_all_unset_gives_an_empty_profile_item() {
    let sim = Sim::start(config()).await.expect("start");
    let tag = "Tag_Profile_IM_Gender";
    let ok = |n: &u64| n % 97 != 13;
    let unset = (0..1000)
        .filter(ok)
        .find(|n| sim.profile_value(&format!("user{n}"), tag).is_none());
    let set = (0..1000)
        .filter(ok)
        .find(|n| sim.profile_value(&format!("user{n}"), tag).is_some());
    let (unset, set) = (
        format!("user{}", unset.expect("some unset")),
        format!("user{}", set.expect("some set")),
    );
    let answer = TestClient::new(&sim)
        .get(&[&unset, &set], &[tag, "Tag_Profile_IM_Gender"])
        .await;
    assert_eq!(answer["UserProfileItem"][0]["ProfileItem"], json!([]));
    assert_eq!(answer["UserProfileItem"][0]["ResultCode"], 0);
    assert_eq!(
        answer["UserProfileItem"][1]["ProfileItem"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(answer.get("Fail_Account").is_none());
    let unset_pairs = (0..1000u64)
        .flat_map(|n| crate::wire::STANDARD_TAGS.map(|t| (n, t)))
        .filter(|(n, t)| sim.profile_value(&format!("user{n}"), t).is_none())
        .count();
    assert!(
        (1800..3000).contains(&unset_pairs),
        "about 1 in 5 unset, got {unset_pairs} of 12000"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn generated_values_exercise_escaping_and_numbers() {
    let sim = Sim::start(config()).await.expect("start");
    let nicks: Vec<String> = (0..1000)
        .filter_map(|n| sim.profile_value(&format!("user{n}"), "Tag_Profile_IM_Nick"))
        .collect();
    assert!(nicks.iter().any(|v| !v.is_ascii()));
    assert!(nicks.iter().any(|v| v.contains("\\\"")), "a quote");
    assert!(nicks.iter().any(|v| v.contains("\\\\")), "a backslash");
    let birthday =
        (0..1000).find_map(|n| sim.profile_value(&format!("user{n}"), "Tag_Profile_IM_BirthDay"));
    assert!(birthday.expect("some birthday").parse::<u32>().is_ok());
    let accounts: Vec<String> = (0..100).map(|n| format!("user{n}")).collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let answer = direct(
        &sim,
        &accounts,
        &["Tag_Profile_IM_Nick", "Tag_Profile_IM_SelfSignature"],
    );
    assert_eq!(
        answer["UserProfileItem"].as_array().map(Vec::len),
        Some(100)
    );
    assert_eq!(
        answer["UserProfileItem"][7]["ProfileItem"][0]["Value"],
        "昵称-7"
    );
    assert_eq!(sim.profile_value("user7", "Tag_Profile_Custom_Nope"), None);
    assert_eq!(sim.profile_value("user1000", "Tag_Profile_IM_Image"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_custom_tag_fails_the_whole_call_with_40009() {
    let sim = Sim::start(config()).await.expect("start");
    let answer = TestClient::new(&sim)
        .get(
            &["user1", "nobody"],
            &["Tag_Profile_IM_Nick", "Tag_Profile_Custom_Nope"],
        )
        .await;
    assert_eq!(answer["ActionStatus"], "FAIL");
    assert_eq!(answer["ErrorCode"], 40009);
    assert_eq!(answer["ErrorInfo"], "Err_Profile_Tag_Not_Found");
    let wire_rejected = direct(&sim, &["user1"], &["Tag_Profile_IM_Bogus"]);
    assert_eq!(wire_rejected["ErrorCode"], 40009);
    assert_eq!(
        direct(&sim, &[], &["Tag_Profile_IM_Nick"])["ErrorCode"],
        40002
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_account_fails_the_whole_call_in_whole_call_mode() {
    let sim = Sim::start(config()).await.expect("start");
    for missing in ["user1000", "user01", "user", "bob", "user-1"] {
        let answer = TestClient::new(&sim)
            .get(&["user1", missing], &["Tag_Profile_IM_Nick"])
            .await;
        assert_eq!(answer["ErrorCode"], 40003, "{missing}");
        assert_eq!(answer["ErrorInfo"], "Err_Profile_Account_Not_Found");
        assert!(answer.get("UserProfileItem").is_none());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_account_fails_only_its_entry_in_per_account_mode() {
    let sim = Sim::start(SimConfig {
        missing_account: MissingAccount::PerAccount,
        ..config()
    })
    .await
    .expect("start");
    let answer = TestClient::new(&sim)
        .get(&["user01", "user1", "user999"], &["Tag_Profile_IM_Image"])
        .await;
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["Fail_Account"], json!(["user01"]));
    assert_eq!(answer["UserProfileItem"][0]["ResultCode"], 40003);
    assert_eq!(
        answer["UserProfileItem"][0]["ResultInfo"],
        "Err_Profile_Account_Not_Found"
    );
    assert_eq!(answer["UserProfileItem"][2]["ResultCode"], 0);
    sim.shutdown().await;
}
