//! The real `tim-gateway` binary as a child process: `demo` prints a curl that works, `sim`
//! serves a separately started gateway, bad config exits 64 with one line, `usersig` signs, and
//! env overrides reach the running server.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// sysexits.h EX_USAGE.
const EXIT_USAGE: i32 = 64;
/// How long a child may take to print or exit.
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the child when dropped, whatever happened to the test.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits for the child to exit, failing the test after [`CHILD_TIMEOUT`].
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the child did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its whole stderr (call after exit).
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            stderr.read_to_string(&mut text).expect("read stderr");
        }
        text
    }

    /// Its whole stdout (call after exit).
    fn stdout(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            stdout.read_to_string(&mut text).expect("read stdout");
        }
        text
    }

    /// Stdout lines as they come, read by a thread.
    fn stdout_lines(&mut self) -> mpsc::Receiver<String> {
        let stdout = self.0.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

/// `tim-gateway ARGS` in the crate directory, with no inherited `TIM_GATEWAY__*` variables,
/// plus `env`; stdout and stderr piped (stderr null when `quiet`).
fn spawn(args: &[&str], env: &[(&str, &str)], quiet: bool) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tim-gateway"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet { Stdio::null() } else { Stdio::piped() });
    for (name, _) in std::env::vars() {
        if name.starts_with("TIM_GATEWAY__") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    ChildGuard(command.spawn().expect("spawn tim-gateway"))
}

/// Runs the binary to completion; returns its exit code, stdout and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut child = spawn(args, env, false);
    let status = child.wait_exit();
    (status.code(), child.stdout(), child.stderr())
}

async fn post(url: &str, method: &str, body: String) -> (u16, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = tokio::time::timeout(CHILD_TIMEOUT, client.request(request))
        .await
        .expect("answered in time")
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Splits `curl -s 'URL' -d 'BODY'` into URL and BODY.
fn parse_curl(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("curl -s '")
        .unwrap_or_else(|| panic!("not a curl line: {line}"));
    let (url, rest) = rest.split_once('\'').expect("closing quote of the URL");
    let body = rest
        .trim_start()
        .strip_prefix("-d '")
        .and_then(|b| b.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no -d '...' body: {line}"));
    (url.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_curl_that_returns_real_profiles() {
    let mut child = spawn(
        &["demo"],
        &[("TIM_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")],
        true,
    );
    let lines = child.stdout_lines();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let curl = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("demo prints a curl line in time");
        if line.trim_start().starts_with("curl ") {
            break line.trim().to_string();
        }
    };
    let (url, body) = parse_curl(&curl);
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.starts_with("http://127.0.0.1:0/"),
        "the URL names the bound port: {url}"
    );
    let (status, answer) = post(&url, "POST", body).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).expect("JSON answer");
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    let items = answer["UserProfileItem"]
        .as_array()
        .expect("UserProfileItem");
    assert_eq!(items.len(), 3, "{answer}");
    for item in items {
        assert_eq!(item["ResultCode"], 0, "{item}");
        let profile = item["ProfileItem"].as_array().expect("ProfileItem");
        assert!(!profile.is_empty(), "real values: {item}");
        assert!(
            profile
                .iter()
                .all(|p| p["Tag"].is_string() && !p["Value"].is_null()),
            "{item}"
        );
    }
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_config_value_exits_64_with_one_line_naming_the_key() {
    let (code, _, stderr) = run_to_exit(
        &[],
        &[
            ("TIM_GATEWAY__LIMITS__MAX_ACCOUNTS_PER_BATCH", "101"),
            ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x"),
        ],
    );
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    assert!(
        lines[0].contains("max_accounts_per_batch"),
        "names the key: {}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_the_shipped_config_and_refuses_a_bad_one_with_one_line() {
    let shipped = "config/tim-gateway.toml";
    let key = [("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x")];
    let (code, stdout, stderr) = run_to_exit(&["check", "--config", shipped], &key);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    let dir = std::env::temp_dir().join(format!("tim-gateway-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_accounts_per_batch = 101\n").expect("write");
    let bad = bad.to_str().expect("utf-8 path");
    let (code, _, stderr) = run_to_exit(&["check", "--config", bad], &key);
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    assert!(lines[0].contains("max_accounts_per_batch"), "{}", lines[0]);
    // Serving needs the secret key: a config without one is not valid to ship.
    let (code, _, stderr) = run_to_exit(&["check", "--config", shipped], &[]);
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_shapes_at_once_exit_64_with_one_line_naming_both_and_no_password() {
    let (code, _, stderr) = run_to_exit(
        &[],
        &[
            (
                "TIM_GATEWAY__FLEET__REDIS_URL",
                "redis://:hunter2@127.0.0.1:1/0",
            ),
            (
                "TIM_GATEWAY__FLEET__REDIS_CLUSTER_NODES",
                "127.0.0.1:7000,127.0.0.1:7001",
            ),
            ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x"),
        ],
    );
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    for key in ["redis_url", "redis_cluster_nodes"] {
        assert!(lines[0].contains(key), "names {key}: {}", lines[0]);
    }
    assert!(
        !stderr.contains("hunter2"),
        "the password was printed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_env_key_exits_64_with_one_line_naming_it() {
    let (code, _, stderr) = run_to_exit(
        &[],
        &[
            ("TIM_GATEWAY__LIMITS__BOGUS", "1"),
            ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x"),
        ],
    );
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    assert!(
        lines[0].to_ascii_uppercase().contains("BOGUS"),
        "names the key: {}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usersig_command_prints_a_usersig_that_verifies_with_the_key() {
    let (code, stdout, stderr) = run_to_exit(
        &["usersig", "--identifier", "administrator"],
        &[("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "k")],
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stdout:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let verified =
        tim_gateway::usersig::verify(lines[0].trim(), "k", 1_400_000_000, "administrator", now);
    assert!(verified.is_ok(), "{verified:?}");
    let wrong_key = tim_gateway::usersig::verify(
        lines[0].trim(),
        "other",
        1_400_000_000,
        "administrator",
        now,
    );
    assert!(wrong_key.is_err(), "signed with the configured key only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usersig_command_without_a_secret_key_exits_64() {
    let (code, stdout, stderr) = run_to_exit(&["usersig", "--identifier", "administrator"], &[]);
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    assert!(stdout.is_empty(), "no usersig printed: {stdout:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("secret_key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_without_a_secret_key_exits_64() {
    let (code, _, stderr) = run_to_exit(&[], &[]);
    assert_eq!(code, Some(EXIT_USAGE), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("secret_key"), "{stderr}");
}

/// A fake upstream that reads one request head, records its request line and hangs up.
fn spawn_hang_up_upstream() -> (String, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_ok() {
            let _ = tx.send(line.trim_end().to_string());
        }
        // Dropping the stream closes the connection without an answer.
    });
    (base_url, rx)
}

async fn wait_healthy(addr: SocketAddr) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let request = http::Request::get(format!("http://{addr}/healthz"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let healthy = matches!(
            tokio::time::timeout(Duration::from_secs(1), client.request(request)).await,
            Ok(Ok(response)) if response.status() == 200
        );
        if healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not answer 200 on {addr} (listen from env) within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary on `config/tim-gateway.toml` with env overrides pointing it at `base_url`
/// without caller auth, and returns its answer to an unauthenticated portrait_get.
async fn portrait_get_through_binary_with_env_overrides(base_url: &str) -> Value {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = spawn(
        &["--config", "config/tim-gateway.toml"],
        &[
            ("TIM_GATEWAY__SERVER__LISTEN", listen.as_str()),
            ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x"),
            ("TIM_GATEWAY__UPSTREAM__BASE_URL", base_url),
            ("TIM_GATEWAY__AUTH__MODE", "none"),
        ],
        true,
    );
    let addr: SocketAddr = listen.parse().expect("addr");
    wait_healthy(addr).await;
    // No query string at all: auth.mode = none came from env.
    let (status, answer) = post(
        &format!("http://{addr}/v4/profile/portrait_get"),
        "POST",
        r#"{"To_Account":["user1"],"TagList":["Tag_Profile_IM_Nick"]}"#.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    drop(child);
    serde_json::from_slice(&answer).expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_overrides_listen_base_url_and_auth_mode_of_the_config_file() {
    let answer = portrait_get_through_binary_with_env_overrides("http://127.0.0.1:9").await;
    assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
    assert_eq!(
        answer["ErrorCode"], 91001,
        "the upstream from env is unreachable: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_base_url_is_where_the_binary_sends_upstream_calls() {
    // The file's base URL (Tencent) may be unreachable here too; prove the call came to us.
    let (base_url, requests) = spawn_hang_up_upstream();
    let answer = portrait_get_through_binary_with_env_overrides(&base_url).await;
    assert_eq!(answer["ActionStatus"], "FAIL", "{answer}");
    assert_eq!(answer["ErrorCode"], 91001, "the upstream hung up: {answer}");
    let line = requests
        .recv_timeout(CHILD_TIMEOUT)
        .expect("the upstream call reached the env base URL");
    assert!(
        line.starts_with(
            "POST /v4/profile/portrait_get?sdkappid=1400000000&identifier=administrator&usersig="
        ),
        "{line}"
    );
}

/// The next stdout line starting with `prefix`, within [`CHILD_TIMEOUT`]; the rest of it.
fn line_after(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line starting {prefix:?} in time"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_command_serves_a_gateway_started_separately_and_reports_its_counters() {
    // Both processes read the same secret key from env, as a fleet would from one config.
    let mut sim = spawn(
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--requests-per-second",
            "50",
        ],
        &[("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "x")],
        true,
    );
    let lines = sim.stdout_lines();
    let base_url = line_after(&lines, "tim-gateway sim: listening on ");
    assert!(
        base_url.starts_with("http://127.0.0.1:") && !base_url.ends_with(":0"),
        "the bound port is printed: {base_url}"
    );

    let answer = portrait_get_through_binary_with_env_overrides(&base_url).await;
    assert_eq!(answer["ActionStatus"], "OK", "{answer}");
    let in_process = tim_gateway::sim::Sim::start(tim_gateway::sim::SimConfig::default())
        .await
        .expect("start an in-process sim");
    let expected: Value = serde_json::from_slice(
        &in_process
            .answer_portrait_get(br#"{"To_Account":["user1"],"TagList":["Tag_Profile_IM_Nick"]}"#),
    )
    .expect("JSON");
    in_process.shutdown().await;
    assert_eq!(
        answer, expected,
        "the sim process answers as the library sim"
    );

    let terminated = Command::new("kill")
        .args(["-TERM", &sim.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(terminated.success());
    let counters: Value =
        serde_json::from_str(&line_after(&lines, "")).expect("a JSON line of counters");
    assert_eq!(counters["portrait_get_calls"], 1, "{counters}");
    assert_eq!(counters["rate_limited"], 0, "{counters}");
    assert_eq!(sim.wait_exit().code(), Some(0));
}
