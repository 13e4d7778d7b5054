//! Bad input: each malformed request gets a Tencent FAIL with its code and no upstream call.

mod support;

use bytes::Bytes;
use serde_json::{json, Value};
use support::*;

// --- helpers ---

/// Asserts `answer` is a FAIL envelope with `code` whose ErrorInfo mentions `says`.
fn assert_fail(answer: &Value, code: i64, says: &str, case: &str) {
    assert_eq!(answer["ActionStatus"], "FAIL", "{case}: {answer}");
    assert_eq!(answer["ErrorCode"], code, "{case}: {answer}");
    let info = answer["ErrorInfo"].as_str().unwrap_or_default();
    assert!(!info.is_empty(), "{case}: empty ErrorInfo: {answer}");
    assert!(
        info.contains(says),
        "{case}: ErrorInfo should mention {says:?}: {answer}"
    );
    assert!(
        answer.get("UserProfileItem").is_none(),
        "{case}: a failure carries no profiles: {answer}"
    );
}

/// A good request for a fresh account, which must be answered as the sim answers it.
async fn assert_serves(gw: &TestGateway, n: u64, case: &str) {
    let account = format!("user{}", 500 + n);
    let body = get_body(&[&account], &[NICK, GENDER]);
    assert_eq!(
        gw.portrait_get(&body).await,
        gw.alone(&body),
        "after {case}: good request not served"
    );
}

/// `n` accounts `user0..`, as a JSON array.
fn accounts(n: usize) -> Value {
    Value::from((0..n).map(|i| format!("user{i}")).collect::<Vec<_>>())
}

/// A tiny fixed-seed PRNG (xorshift64*), so the garbage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// Garbage body number `i`: random bytes, JSON-alphabet soup, truncated or corrupted real
/// bodies, and deep nesting. None is a valid portrait_get.
fn garbage(rng: &mut Rng, i: usize) -> Vec<u8> {
    let good = get_body(&["user1", "user2"], &[NICK, GENDER]).to_string();
    match i % 6 {
        0 => (0..rng.below(300)).map(|_| rng.byte()).collect(),
        1 => {
            const ALPHABET: &[u8] = b"{}[]\":,.-+0123456789eE truefalsnl\\u\"To_AccountTagList";
            (0..1 + rng.below(300))
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect()
        }
        2 => {
            // A real body cut short.
            let cut = rng.below(good.len() as u64) as usize;
            good.as_bytes()[..cut].to_vec()
        }
        3 => {
            // A real body with invalid UTF-8 inside an account id.
            let mut bytes = good.into_bytes();
            let at = bytes
                .windows(5)
                .position(|w| w == b"user1")
                .expect("account in body");
            let bad: &[u8] = match rng.below(4) {
                0 => &[0xFF],
                1 => &[0xC3, 0x28],
                2 => &[0xED, 0xA0, 0x80],
                _ => &[0xF0, 0x28, 0x8C],
            };
            bytes.splice(at..at, bad.iter().copied());
            bytes
        }
        4 => {
            // Deep nesting, at the top or inside a field, balanced or not.
            let depth = 100 + rng.below(10_000) as usize;
            let open = match rng.below(3) {
                0 => "[",
                1 => "{\"a\":",
                _ => "[{\"To_Account\":",
            };
            let mut body = match rng.below(3) {
                0 => String::new(),
                1 => "{\"To_Account\":".to_string(),
                _ => "{\"To_Account\":[\"user1\"],\"TagList\":".to_string(),
            };
            body.push_str(&open.repeat(depth));
            if rng.below(2) == 0 {
                body.push_str(&"]".repeat(depth));
            }
            body.into_bytes()
        }
        _ => {
            // A real body with random bytes spliced in after the first `{`.
            let mut bytes = good.into_bytes();
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
            let at = 1 + rng.below(bytes.len() as u64 - 1) as usize;
            bytes.splice(at..at, junk);
            bytes.insert(1, b'\x01');
            bytes
        }
    }
}

// --- malformed bodies ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_body_fails_with_tencents_code_and_makes_no_upstream_call() {
    let gw = TestGateway::start().await;
    let cases: Vec<(&str, Vec<u8>, i64, &str)> = vec![
        ("not JSON", b"To_Account=user1".to_vec(), 40001, "JSON"),
        ("empty body", Vec::new(), 40001, "JSON"),
        (
            "trailing garbage",
            format!("{}xyz", get_body(&["user1"], &[NICK])).into_bytes(),
            40001,
            "JSON",
        ),
        ("a JSON string", b"\"user1\"".to_vec(), 40001, "JSON"),
        ("a JSON number", b"42".to_vec(), 40001, "JSON"),
        ("JSON null", b"null".to_vec(), 40001, "JSON"),
        (
            "To_Account a string",
            json!({"To_Account": "user1", "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40001,
            "To_Account",
        ),
        (
            "To_Account of numbers",
            json!({"To_Account": [1, 2], "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40001,
            "To_Account",
        ),
        (
            "To_Account an object",
            json!({"To_Account": {"user1": 1}, "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40001,
            "To_Account",
        ),
        (
            "To_Account with a null",
            json!({"To_Account": ["user1", null], "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40001,
            "To_Account",
        ),
        (
            "TagList a string",
            json!({"To_Account": ["user1"], "TagList": NICK})
                .to_string()
                .into_bytes(),
            40001,
            "TagList",
        ),
        (
            "TagList with a number",
            json!({"To_Account": ["user1"], "TagList": [NICK, 5]})
                .to_string()
                .into_bytes(),
            40001,
            "TagList",
        ),
        (
            "missing To_Account",
            json!({"TagList": [NICK]}).to_string().into_bytes(),
            40002,
            "To_Account",
        ),
        (
            "empty To_Account",
            json!({"To_Account": [], "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40002,
            "To_Account",
        ),
        (
            "101 accounts",
            json!({"To_Account": accounts(101), "TagList": [NICK]})
                .to_string()
                .into_bytes(),
            40001,
            "100",
        ),
        (
            "missing TagList",
            json!({"To_Account": ["user1"]}).to_string().into_bytes(),
            40001,
            "TagList",
        ),
        (
            "empty TagList",
            json!({"To_Account": ["user1"], "TagList": []})
                .to_string()
                .into_bytes(),
            40001,
            "TagList",
        ),
        (
            "unknown standard tag",
            json!({"To_Account": ["user1"], "TagList": [NICK, "Tag_Profile_IM_Bogus"]})
                .to_string()
                .into_bytes(),
            40009,
            "Tag_Profile_IM_Bogus",
        ),
        (
            "tag from no namespace",
            json!({"To_Account": ["user1"], "TagList": ["Nick"]})
                .to_string()
                .into_bytes(),
            40009,
            "Nick",
        ),
        (
            "malformed custom tag",
            json!({"To_Account": ["user1"], "TagList": ["Tag_Profile_Custom_bad-name"]})
                .to_string()
                .into_bytes(),
            40009,
            "Tag_Profile_Custom_bad-name",
        ),
    ];
    for (n, (case, body, code, says)) in cases.into_iter().enumerate() {
        let before = gw.upstream_gets().len();
        let answer = gw.post_raw(GET, body).await;
        assert_fail(&answer, code, says, case);
        assert_eq!(
            gw.upstream_gets().len(),
            before,
            "{case}: bad input went upstream"
        );
        assert_serves(&gw, n as u64, case).await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_accounts_are_accepted() {
    let gw = TestGateway::start().await;
    let body = json!({"To_Account": accounts(100), "TagList": [NICK]});
    let answer = gw.portrait_get(&body).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    assert_eq!(answer, gw.alone(&body));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_body_is_refused_as_not_an_object() {
    let gw = TestGateway::start().await;
    let cases: [(&str, &[u8]); 3] = [
        (
            "positional request",
            b"[[\"user1\"],[\"Tag_Profile_IM_Nick\"]]",
        ),
        ("empty array", b"[]"),
        ("array of strings", b"[\"user1\"]"),
    ];
    for (n, (case, body)) in cases.into_iter().enumerate() {
        let answer = gw.post_raw(GET, body.to_vec()).await;
        assert_fail(&answer, 40001, "JSON", case);
        assert!(gw.upstream_gets().is_empty(), "{case}: went upstream");
        assert_serves(&gw, n as u64, case).await;
        gw.sim.clear_calls();
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_bytes_fails_with_40001() {
    let gw = TestGateway::builder()
        .config(|c| c.server.max_body_bytes = 2048)
        .start()
        .await;
    // A well-formed request that is merely too big.
    let names: Vec<String> = (0..100).map(|i| format!("user{:0>20}", i + 1)).collect();
    let body = json!({"To_Account": names, "TagList": [NICK]}).to_string();
    assert!(body.len() > 2048);
    let answer = gw.post_raw(GET, body).await;
    assert_fail(&answer, 40001, "2048", "body over the limit");
    // Far over the limit, too.
    let huge = format!("{{\"To_Account\":[\"{}\"]}}", "x".repeat(1 << 20));
    let answer = gw.post_raw(GET, huge).await;
    assert_fail(&answer, 40001, "2048", "body far over the limit");
    assert!(gw.upstream_gets().is_empty());
    // Just under the limit is read.
    let small = get_body(&["user1"], &[NICK]);
    assert_eq!(gw.portrait_get(&small).await, gw.alone(&small));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_never_crash_the_gateway() {
    let gw = TestGateway::start().await;
    let mut rng = Rng(0x5EED_F00D_CAFE_BEEF);
    for i in 0..200 {
        let body = garbage(&mut rng, i);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (status, bytes) = gw
            .send("POST", &format!("{GET}?{}", auth_query()), body)
            .await;
        assert_eq!(status, 200, "#{i} {shown:?}");
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "#{i} {shown:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(answer["ActionStatus"], "FAIL", "#{i} {shown:?}: {answer}");
        let code = answer["ErrorCode"].as_i64().unwrap_or_default();
        assert!(
            [40001, 40002, 40009].contains(&code),
            "#{i} {shown:?}: {answer}"
        );
        assert!(
            !answer["ErrorInfo"].as_str().unwrap_or_default().is_empty(),
            "#{i} {shown:?}: {answer}"
        );
    }
    assert!(gw.upstream_gets().is_empty(), "garbage went upstream");
    assert_serves(&gw, 0, "200 garbage bodies").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_arrays_fail_with_40001() {
    let gw = TestGateway::start().await;
    let deep = "[".repeat(10_000);
    let cases = [
        ("10000 [", deep.clone()),
        ("10000 [ in To_Account", format!("{{\"To_Account\":{deep}")),
        (
            "balanced 10000 [] in TagList",
            format!(
                "{{\"To_Account\":[\"user1\"],\"TagList\":{deep}{}}}",
                "]".repeat(10_000)
            ),
        ),
    ];
    for (case, body) in cases {
        let answer = gw.post_raw(GET, body).await;
        assert_fail(&answer, 40001, "", case);
    }
    assert!(gw.upstream_gets().is_empty());
    assert_serves(&gw, 0, "deep nesting").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_errors_are_counted_as_caller_errors() {
    let gw = TestGateway::start().await;
    for _ in 0..3 {
        gw.post_raw(GET, "not json").await;
    }
    let sample = r#"tim_gateway_requests_total{api="portrait_get",outcome="caller_error"}"#;
    let counted = eventually(std::time::Duration::from_secs(2), || async {
        gw.metric(sample).await == Some(3.0)
    })
    .await;
    assert!(counted, "{}", gw.metrics().await);
    gw.shutdown().await;
}

// --- paths and methods ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_on_an_api_path_gets_405_with_60009() {
    let gw = TestGateway::start().await;
    for method in ["GET", "PUT", "DELETE"] {
        for path in [GET, SET] {
            let (status, body) = gw
                .send(method, &format!("{path}?{}", auth_query()), Bytes::new())
                .await;
            assert_eq!(status, 405, "{method} {path}");
            let answer: Value = serde_json::from_slice(&body).expect("JSON body");
            assert_fail(&answer, 60009, "POST", &format!("{method} {path}"));
        }
    }
    assert!(gw.sim.calls().is_empty());
    assert_serves(&gw, 0, "wrong methods").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_gets_404_with_60009() {
    let gw = TestGateway::start().await;
    let body = get_body(&["user1"], &[NICK]).to_string();
    // Any plain /v4/<service>/<command> is passed through (tests/passthrough.rs); these are not.
    for path in [
        "/",
        "/v4/profile",
        "/v4/profile/portrait_get/",
        "/v4/profile/portrait-get",
        "/V4/PROFILE/PORTRAIT_GET",
    ] {
        let (status, bytes) = gw
            .send("POST", &format!("{path}?{}", auth_query()), body.clone())
            .await;
        assert_eq!(status, 404, "{path}");
        let answer: Value = serde_json::from_slice(&bytes).expect("JSON body");
        assert_fail(&answer, 60009, "", path);
    }
    assert!(gw.sim.calls().is_empty());
    assert_serves(&gw, 0, "unknown paths").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer_without_auth() {
    let gw = TestGateway::start().await;
    let (status, body) = gw.send("GET", "/healthz", Bytes::new()).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok\n");
    let (status, body) = gw.send("GET", "/metrics", Bytes::new()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(text.contains("tim_gateway_build_info"), "{text}");
    assert!(gw.sim.calls().is_empty());
    gw.shutdown().await;
}
