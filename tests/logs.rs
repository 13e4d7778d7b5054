//! Logs: every API request carries a request id (the caller's `X-Request-Id` when sane, else a
//! new one), returned in the response and listed by the upstream batch that serves it; and no
//! UserSig or SecretKey reaches the logs at any level, on good, bad and failing requests.
//! A capturing subscriber records everything at TRACE, from every crate in the process.

mod support;

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use support::*;
use tim_gateway::sim::{Fault, DEMO_SECRET_KEY};

/// Everything logged in this test process.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_text() -> String {
    String::from_utf8_lossy(&captured().lock()).into_owned()
}

/// POSTs with an optional X-Request-Id; returns status, the response's X-Request-Id and body.
async fn post(
    gw: &TestGateway,
    path_and_query: &str,
    request_id: Option<&[u8]>,
    body: String,
) -> (u16, Option<String>, Bytes) {
    let headers: Vec<(&str, &[u8])> = request_id
        .map(|id| ("x-request-id", id))
        .into_iter()
        .collect();
    let (status, response_headers, body) =
        gw.send_with("POST", path_and_query, &headers, body).await;
    let id = response_headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, id, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_made_returned_and_listed_by_the_batch() {
    captured();
    let gw = TestGateway::start().await;
    let query = format!("{GET}?{}", auth_query());
    let body = get_body(&["user201", "user202"], &[NICK]).to_string();
    let (_, id, _) = post(&gw, &query, Some(b"checkout-7f3a"), body.clone()).await;
    assert_eq!(id.as_deref(), Some("checkout-7f3a"), "a sane id is kept");

    let too_long = [b'a'; 129];
    for insane in [&b"has space"[..], &b"tab\there"[..], &too_long[..]] {
        let (_, id, _) = post(&gw, &query, Some(insane), body.clone()).await;
        let id = id.expect("an id is always returned");
        assert_ne!(id.as_bytes(), insane, "an insane id is replaced");
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let (_, made, _) = post(&gw, &query, None, body).await;
    let made = made.expect("a missing id is made");
    assert_eq!(made.len(), 16);

    // The upstream batch serving the first request lists its id.
    let flush = logs_text()
        .lines()
        .find(|l| l.contains("flushing batch") && l.contains("checkout-7f3a"))
        .map(str::to_string);
    let flush = flush.expect("the flush span lists the request ids it serves");
    assert!(
        flush.contains("batch_id=") && flush.contains("accounts=2"),
        "{flush}"
    );
    gw.shutdown().await;
}

/// At the default level the request span is not recorded, yet a failed request's warning still
/// names its request id. (A thread-local INFO subscriber: this test's runtime has one thread.)
#[tokio::test(flavor = "current_thread")]
async fn a_failed_request_is_logged_with_its_request_id_at_the_default_level() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let info = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    let _default = tracing::subscriber::set_default(info);
    let gw = TestGateway::start().await;
    gw.sim.set_fault(Fault::Status(500));
    let query = format!("{GET}?{}", auth_query());
    let body = get_body(&["user501"], &[NICK]).to_string();
    let (status, id, _) = post(&gw, &query, Some(b"failing-501"), body).await;
    assert_eq!((status, id.as_deref()), (200, Some("failing-501")));
    gw.sim.set_fault(Fault::None);
    gw.shutdown().await;

    let text = String::from_utf8_lossy(&logs.lock()).into_owned();
    let failed = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("request failed"));
    let failed = failed.unwrap_or_else(|| panic!("no request warning in:\n{text}"));
    assert!(failed.contains("request_id=failing-501"), "{failed}");
    assert!(
        !text.contains("request{"),
        "the request span is not recorded at INFO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usersig_or_secret_key_is_logged_on_any_path() {
    captured();
    let gw = TestGateway::start().await;
    let caller_sig = admin_usersig();
    let good = format!("{GET}?{}", auth_query());
    let cold = get_body(&["user301", "user302", FAILING_ACCOUNT], &[NICK, GENDER]).to_string();
    // Good: misses, then hits; a portrait_set.
    for _ in 0..2 {
        assert_eq!(post(&gw, &good, None, cold.clone()).await.0, 200);
    }
    let set = serde_json::json!({"From_Account": "user301", "ProfileItem": [{"Tag": NICK, "Value": "n"}]});
    post(
        &gw,
        &format!("{SET}?{}", auth_query()),
        None,
        set.to_string(),
    )
    .await;
    // Bad: not JSON, wrong UserSig, a UserSig for another key, an expired one, no query.
    post(&gw, &good, None, "{not json".into()).await;
    let wrong_key = usersig_for(ADMIN, "another-key", 86_400);
    let expired = usersig_for(ADMIN, DEMO_SECRET_KEY, 0);
    for sig in ["garbage", wrong_key.as_str(), expired.as_str()] {
        let query = format!(
            "{GET}?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random=9&contenttype=json"
        );
        post(&gw, &query, None, cold.clone()).await;
    }
    post(&gw, GET, None, cold.clone()).await;
    // Failing: the upstream answers 500, then garbage, then drops the connection.
    for (i, fault) in [Fault::Status(500), Fault::Garbage, Fault::DropConnection]
        .into_iter()
        .enumerate()
    {
        gw.sim.set_fault(fault);
        let body = get_body(&[&format!("user40{i}")], &[NICK]).to_string();
        post(&gw, &good, None, body).await;
    }
    gw.sim.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    gw.shutdown().await;

    let logs = logs_text();
    assert!(logs.contains("request_id="), "the capture saw the requests");
    for (what, secret) in [
        ("the caller's UserSig", caller_sig.as_str()),
        ("a wrong-key UserSig", wrong_key.as_str()),
        ("an expired UserSig", expired.as_str()),
        ("the SecretKey", DEMO_SECRET_KEY),
    ] {
        assert!(!logs.contains(secret), "{what} is in the logs");
    }
    assert!(
        !logs.to_ascii_lowercase().contains("usersig="),
        "a query string with a usersig is in the logs"
    );
    let longest = longest_sig_like_run(&logs);
    assert!(
        longest < 64,
        "a {longest}-char UserSig-like token is in the logs"
    );
}

/// The longest run of UserSig alphabet characters (base64 with Tencent's `*-_`).
fn longest_sig_like_run(text: &str) -> usize {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "*-_".contains(c)))
        .map(str::len)
        .max()
        .unwrap_or(0)
}
