//! `POST /admin/purge`: an app admin drops accounts whose profile changed behind the gateway
//! (here: a portrait_set sent to the sim directly, as a console edit would be). Their tags and
//! whole answers are gone at once, on every gateway of a fleet too; a bad UserSig purges
//! nothing; nothing is sent upstream.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fleet::TestFleet;
use support::{eventually, get_body, Caller, TestGateway, ADMIN, NICK, SDKAPPID, SET};

const PURGE: &str = "/admin/purge";

fn nick_of(answer: &Value) -> Value {
    answer["UserProfileItem"][0]["ProfileItem"][0]["Value"].clone()
}

/// Renames `account` at the sim itself, behind every gateway.
async fn edit_behind_the_gateway(sim: &tim_gateway::sim::Sim, account: &str, nick: &str) {
    let set = json!({"From_Account": account, "ProfileItem": [{"Tag": NICK, "Value": nick}]});
    let answer = Caller::new(sim.addr()).post(SET, &set).await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_drops_a_profile_changed_behind_the_gateway_and_a_bad_usersig_purges_nothing() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user5"], &[NICK]);
    assert_eq!(nick_of(&gw.portrait_get(&body).await), json!("nick-5"));
    edit_behind_the_gateway(&gw.sim, "user5", "console-edit").await;
    assert_eq!(
        nick_of(&gw.portrait_get(&body).await),
        json!("nick-5"),
        "cached until purged"
    );
    let upstream_before = gw.upstream_gets().len();

    let forged = format!(
        "{PURGE}?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig=forged&random=1&contenttype=json"
    );
    let (status, refused) = gw
        .send("POST", &forged, r#"{"To_Account": ["user5"]}"#)
        .await;
    let refused: Value = serde_json::from_slice(&refused).expect("JSON");
    assert_eq!(status, 200);
    assert_eq!(refused["ActionStatus"], "FAIL", "{refused}");
    assert_eq!(
        nick_of(&gw.portrait_get(&body).await),
        json!("nick-5"),
        "a bad UserSig purged something"
    );

    let bad_body = gw.post(PURGE, &json!({"To_Account": "user5"})).await;
    assert_eq!(bad_body["ErrorCode"], 40001, "{bad_body}");

    let purged = gw
        .post(PURGE, &json!({"To_Account": ["user5", "user5", "user6"]}))
        .await;
    assert_eq!(purged["ActionStatus"], "OK", "{purged}");
    assert_eq!(purged["PurgedCount"], 2, "{purged}");
    assert_eq!(
        gw.upstream_gets().len(),
        upstream_before,
        "a purge sends nothing upstream"
    );
    assert_eq!(
        nick_of(&gw.portrait_get(&body).await),
        json!("console-edit"),
        "the purged account was fetched again"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_gateway_reaches_every_gateway_of_the_fleet_and_the_shared_tier() {
    let fleet = TestFleet::start(2, |_| {}, |_| {}).await;
    let body = get_body(&["user8"], &[NICK]);
    for gateway in &fleet.gateways {
        assert_eq!(nick_of(&gateway.get(&body).await), json!("nick-8"));
    }
    edit_behind_the_gateway(&fleet.sim, "user8", "console-edit").await;
    let purged = fleet.gateways[0]
        .post(PURGE, &json!({"To_Account": ["user8"]}))
        .await;
    assert_eq!(purged["PurgedCount"], 1, "{purged}");
    let answered = Instant::now();
    let other = &fleet.gateways[1];
    let seen = eventually(Duration::from_millis(100), || async {
        nick_of(&other.get(&body).await) == json!("console-edit")
    });
    assert!(seen.await, "the other gateway kept the purged profile");
    eprintln!(
        "purge seen by the other gateway {:?} after its answer",
        answered.elapsed()
    );
    fleet.shutdown().await;
}
