//! Shared helpers for the sim's tests (a keep-alive hyper client over real TCP on 127.0.0.1) and
//! the auth tests; answers, faults, portrait_set, echoed APIs, callbacks and the list reads live
//! in the child files.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::api::check_query;
use super::rate::{RateWindow, RateWindows, MAX_TRACKED_PATHS};
use super::*;

mod callbacks;
mod echo;
mod faults;
mod get;
mod lists;
mod set;

const SDKAPPID: u64 = 1_400_000_000;

/// A small, fast setup: 1000 accounts, generous rate limit.
fn config() -> SimConfig {
    SimConfig {
        accounts: 1000,
        ..SimConfig::default()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn query_for(identifier: &str, key: &str) -> String {
    let usersig = crate::usersig::sign(SDKAPPID, key, identifier, now_unix(), 86_400);
    format!(
        "random=7&usersig={usersig}&sdkappid={SDKAPPID}&identifier={identifier}&contenttype=json"
    )
}

/// A keep-alive hyper client talking to one sim.
struct TestClient {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    query: String,
}

impl TestClient {
    fn new(sim: &Sim) -> TestClient {
        TestClient {
            http: Client::builder(TokioExecutor::new()).build_http(),
            base: sim.base_url(),
            query: query_for("administrator", DEMO_SECRET_KEY),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<(StatusCode, Bytes), String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}?{}", self.base, self.query))
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn call(&self, api: Api, body: &Value) -> Value {
        let (status, bytes) = self
            .send(Method::POST, api.path(), &body.to_string())
            .await
            .expect("sim answers");
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&bytes).expect("sim answers JSON")
    }

    async fn get(&self, accounts: &[&str], tags: &[&str]) -> Value {
        self.call(
            Api::PortraitGet,
            &json!({"To_Account": accounts, "TagList": tags}),
        )
        .await
    }
}

fn get_body(accounts: &[&str], tags: &[&str]) -> Vec<u8> {
    json!({"To_Account": accounts, "TagList": tags})
        .to_string()
        .into_bytes()
}

fn direct(sim: &Sim, accounts: &[&str], tags: &[&str]) -> Value {
    serde_json::from_slice(&sim.answer_portrait_get(&get_body(accounts, tags))).expect("JSON")
}

// === auth ===

#[tokio::test]
async fn accepts_a_valid_admin_usersig() {
    let sim = Sim::start(config()).await.expect("start");
    let answer = TestClient::new(&sim)
        .get(&["user1"], &["Tag_Profile_IM_Image"])
        .await;
    assert_eq!(answer["ActionStatus"], "OK");
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["UserProfileItem"][0]["To_Account"], "user1");
    sim.shutdown().await;
}

#[tokio::test]
async fn rejects_a_usersig_signed_with_another_key_with_70009() {
    let sim = Sim::start(config()).await.expect("start");
    let mut client = TestClient::new(&sim);
    client.query = query_for("administrator", "some-other-apps-key");
    let answer = client.get(&["user1"], &["Tag_Profile_IM_Nick"]).await;
    assert_eq!(answer["ActionStatus"], "FAIL");
    assert_eq!(answer["ErrorCode"], 70009);
    sim.shutdown().await;
}

#[tokio::test]
async fn rejects_a_non_admin_identifier_with_40004() {
    let sim = Sim::start(config()).await.expect("start");
    let mut client = TestClient::new(&sim);
    client.query = query_for("user1", DEMO_SECRET_KEY);
    assert_eq!(
        client.get(&["user1"], &["Tag_Profile_IM_Nick"]).await["ErrorCode"],
        40004
    );
    sim.shutdown().await;
}

#[test]
fn query_checks_follow_tencents_order_and_codes() {
    let cfg = config();
    let now = now_unix();
    let sig = crate::usersig::sign(SDKAPPID, DEMO_SECRET_KEY, "administrator", now, 600);
    let code = |query: &str| check_query(&cfg, query, now).err().map_or(0, |o| o.code);
    assert_eq!(
        code(&format!(
            "identifier=administrator&usersig={sig}&sdkappid={SDKAPPID}"
        )),
        0
    );
    assert_eq!(code("identifier=administrator"), 60012);
    assert_eq!(code("sdkappid=14x&identifier=administrator"), 60025);
    assert_eq!(code("sdkappid=1400000001&identifier=administrator"), 70014);
    assert_eq!(code(&format!("sdkappid={SDKAPPID}&usersig={sig}")), 60025);
    assert_eq!(
        code(&format!("sdkappid={SDKAPPID}&identifier=bob&usersig={sig}")),
        40004
    );
    assert_eq!(
        code(&format!("sdkappid={SDKAPPID}&identifier=administrator")),
        70002
    );
    assert_eq!(
        code(&format!(
            "sdkappid={SDKAPPID}&identifier=administrator&usersig="
        )),
        70002
    );
    assert_eq!(
        code(&format!(
            "sdkappid={SDKAPPID}&identifier=administrator&usersig=%21%21"
        )),
        70003
    );
    let expired = crate::usersig::sign(SDKAPPID, DEMO_SECRET_KEY, "administrator", now - 100, 10);
    assert_eq!(
        code(&format!(
            "sdkappid={SDKAPPID}&identifier=administrator&usersig={expired}"
        )),
        70001
    );
    let unchecked = SimConfig {
        verify_usersig: false,
        ..config()
    };
    assert!(check_query(
        &unchecked,
        &format!("sdkappid={SDKAPPID}&identifier=administrator"),
        now
    )
    .is_ok());
}
