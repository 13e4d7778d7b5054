//! A broken upstream cannot hurt the gateway: an endless or oversized answer is cut off at
//! `upstream.max_response_bytes` and answered with 91003 (memory stays bounded, nothing is
//! cached); a duplicated account fails that account alone with 91003; foreign accounts and
//! tags are never cached; the rest of each batch is served.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use support::hostile::{
    honest_answer, rss_bytes, BareGateway, Behaviour, BrokenUpstream, TestClient,
};
use support::*;

const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

async fn gateway_against(upstream: &BrokenUpstream) -> (BareGateway, Client) {
    let mut config = test_config();
    config.upstream.base_url = upstream.base_url().parse().expect("url");
    config.upstream.max_response_bytes = MAX_RESPONSE_BYTES;
    config.upstream.timeout = Duration::from_secs(5);
    config.limits.batch_window = Duration::from_millis(1);
    // Every call here fails on purpose, one caller each; the breaker has tests of its own.
    config.breaker.failure_threshold = 1_000;
    let gateway = BareGateway::start(config).await;
    let client = Client::new(gateway.addr);
    (gateway, client)
}

/// A `portrait_get` client for a [`BareGateway`].
struct Client(TestClient);

impl Client {
    fn new(addr: std::net::SocketAddr) -> Client {
        Client(TestClient::new(addr))
    }

    async fn get(&self, accounts: &[&str], tags: &[&str]) -> Value {
        self.0.portrait_get(&get_body(accounts, tags)).await
    }
}

fn honest() -> Behaviour {
    Behaviour::Answer(Arc::new(honest_answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_oversized_answers_get_91003_with_bounded_memory_and_nothing_cached() {
    let upstream = BrokenUpstream::start(Behaviour::Endless).await;
    let (gateway, client) = gateway_against(&upstream).await;
    let before = rss_bytes();
    let started = Instant::now();
    // Fifteen callers, each its own account; staggered so several calls stream at once.
    let answers = join_all((0..15).map(|i| {
        let client = &client;
        async move {
            tokio::time::sleep(Duration::from_millis(5 * i)).await;
            client.get(&[&format!("endless{i}")], &[NICK]).await
        }
    }))
    .await;
    let took = started.elapsed();
    let grown = rss_bytes().saturating_sub(before);
    for answer in &answers {
        assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
        assert_eq!(answer["ErrorCode"], 91003, "{answer}");
    }
    eprintln!(
        "endless upstream: 15 callers answered 91003 in {took:?}; RSS grew {} KiB over {} KiB",
        grown / 1024,
        before / 1024
    );
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew {grown} bytes answering endless upstream bodies"
    );

    for oversized in [
        Behaviour::OversizedDeclared(2 * MAX_RESPONSE_BYTES),
        Behaviour::OversizedChunked(2 * MAX_RESPONSE_BYTES),
    ] {
        upstream.set(oversized);
        let answer = client.get(&["big"], &[NICK]).await;
        assert_eq!(answer["ErrorCode"], 91003, "{answer}");
    }
    // Nothing of them was cached: with an honest upstream the same accounts are fetched.
    upstream.set(honest());
    let calls = upstream.calls();
    let answer = client.get(&["endless0", "big"], &[NICK]).await;
    assert_eq!(
        answer,
        honest_answer(&get_body(&["endless0", "big"], &[NICK]))
    );
    assert_eq!(
        upstream.calls(),
        calls + 1,
        "fetched, not served from cache"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_account_fails_alone_and_is_never_cached() {
    let upstream = BrokenUpstream::start(Behaviour::Answer(Arc::new(|request: &Value| {
        let mut answer = honest_answer(request);
        let items = answer["UserProfileItem"].as_array_mut().expect("items");
        let mut copy = items[0].clone();
        copy["ProfileItem"][0]["Value"] = json!("the last copy");
        items.push(copy);
        answer
    })))
    .await;
    let (gateway, client) = gateway_against(&upstream).await;
    let answer = client.get(&["dup", "fine"], &[NICK]).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    assert_eq!(answer["Fail_Account"], json!(["dup"]), "{answer}");
    let items = &answer["UserProfileItem"];
    assert_eq!(items[0]["To_Account"], "dup");
    assert_eq!(items[0]["ResultCode"], 91003, "{answer}");
    assert_eq!(
        items[1]["ProfileItem"][0]["Value"],
        "fine:Tag_Profile_IM_Nick"
    );

    upstream.set(honest());
    let calls = upstream.calls();
    let answer = client.get(&["fine"], &[NICK]).await;
    assert_eq!(
        answer["UserProfileItem"][0]["ProfileItem"][0]["Value"],
        "fine:Tag_Profile_IM_Nick"
    );
    assert_eq!(
        upstream.calls(),
        calls,
        "the well-formed account was cached"
    );
    let answer = client.get(&["dup"], &[NICK]).await;
    assert_eq!(
        answer,
        honest_answer(&get_body(&["dup"], &[NICK])),
        "no copy was cached"
    );
    assert_eq!(upstream.calls(), calls + 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_accounts_and_tags_are_ignored_and_never_cached() {
    let upstream = BrokenUpstream::start(Behaviour::Answer(Arc::new(|request: &Value| {
        let mut answer = honest_answer(request);
        let items = answer["UserProfileItem"].as_array_mut().expect("items");
        items[0]["ProfileItem"]
            .as_array_mut()
            .expect("profile")
            .push(json!({"Tag": GENDER, "Value": "planted"}));
        items.push(json!({"To_Account": "stranger", "ResultCode": 0,
                          "ProfileItem": [{"Tag": NICK, "Value": "planted"}]}));
        answer
    })))
    .await;
    let (gateway, client) = gateway_against(&upstream).await;
    let answer = client.get(&["asked"], &[NICK]).await;
    assert_eq!(answer, honest_answer(&get_body(&["asked"], &[NICK])));

    upstream.set(honest());
    let calls = upstream.calls();
    let answer = client.get(&["stranger"], &[NICK]).await;
    assert_eq!(answer, honest_answer(&get_body(&["stranger"], &[NICK])));
    let answer = client.get(&["asked"], &[GENDER]).await;
    assert_eq!(answer, honest_answer(&get_body(&["asked"], &[GENDER])));
    assert_eq!(
        upstream.calls(),
        calls + 2,
        "neither planted value was cached"
    );
    gateway.shutdown().await;
}
