//! SIGHUP reloads the config without a restart: the gateway binary, started with a config file
//! in front of the sim, is sent SIGHUP after the file's rates changed, while callers keep
//! asking: the new portrait_get rate takes effect at the sim, a passed-through API's limit
//! follows, and no caller is dropped or failed. A broken
//! file sent the same way is refused, counted, and the running config stays.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::process::{free_addr, GatewayProcess};
use support::{get_body, metric_value, Caller, ADMIN, NICK, SDKAPPID};
use tim_gateway::sim::{Api, Sim, SimConfig, DEMO_SECRET_KEY};

/// The gateway's config file: portrait_get at `rate`, and sendmsg passed through at a third
/// of it (at least 1).
fn config_text(listen: &str, sim: &Sim, rate: u32) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\n\
         [upstream]\nbase_url = \"{}\"\nsdkappid = {SDKAPPID}\nidentifier = \"{ADMIN}\"\n\
         [auth]\nmode = \"none\"\n\
         [limits]\nrequests_per_second = {rate}\n\
         [passthrough.limits]\n\"openim/sendmsg\" = {}\n",
        sim.base_url(),
        (rate / 3).max(1)
    )
}

/// portrait_get calls the sim took in `[from, to)`, per second.
fn rate_between(sim: &Sim, from: Instant, to: Instant) -> f64 {
    let calls = sim
        .calls()
        .into_iter()
        .filter(|c| c.api == Api::PortraitGet);
    let within = calls.filter(|c| c.at >= from && c.at < to).count();
    within as f64 / (to - from).as_secs_f64()
}

async fn metrics_of(gateway: &Caller) -> String {
    let (_, body) = gateway.send("GET", "/metrics", "").await;
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_rate_without_dropping_a_caller_and_refuses_a_broken_file() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let listen = free_addr();
    let dir = std::env::temp_dir().join(format!("tim-gateway-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tim-gateway.toml");
    let listen_text = listen.to_string();
    std::fs::write(&file, config_text(&listen_text, &sim, 4)).expect("config");
    let path = file.to_str().expect("utf-8 path");
    let secret = [("TIM_GATEWAY__UPSTREAM__SECRET_KEY", DEMO_SECRET_KEY)];
    let gateway = GatewayProcess::spawn(listen, &["--config", path], &secret).await;
    let caller = Caller::clone(&gateway);

    // Eight callers, each asking for a new account at a time, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(3_000));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (caller, stop, next) = (caller.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let account = format!("user{}", next.fetch_add(1, Ordering::Relaxed));
                    let body = get_body(&[&account], &[NICK]);
                    let answer = caller.try_get(&body).await;
                    seen.push((body, answer));
                }
                seen
            })
        })
        .collect();

    // A passed-through API with a limit of its own, called once so that its path exists.
    let sendmsg = serde_json::json!({"From_Account": "user1", "To_Account": "user2"});
    caller.post("/v4/openim/sendmsg", &sendmsg).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(&file, config_text(&listen_text, &sim, 16)).expect("config");
    let reloaded_at = Instant::now();
    gateway.signal("-HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(&file, config_text(&listen_text, &sim, 0)).expect("broken config");
    let broken_at = Instant::now();
    gateway.signal("-HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut failed) = (0, Vec::new());
    for task in callers {
        for (body, answer) in task.await.expect("caller") {
            let alone: serde_json::Value =
                serde_json::from_slice(&sim.answer_portrait_get(body.to_string().as_bytes()))
                    .expect("sim JSON");
            match answer {
                Some(answer) if answer == alone => answered += 1,
                other => failed.push(format!("{body}: {other:?}")),
            }
        }
    }
    let second = Duration::from_secs(1);
    let before = rate_between(&sim, started + second, reloaded_at);
    let after = rate_between(&sim, reloaded_at + second, broken_at);
    let after_broken = rate_between(&sim, broken_at + second, broken_at + second * 3);
    let metrics = metrics_of(&caller).await;
    let sample = |name: &str| metric_value(&metrics, name).unwrap_or(f64::NAN);
    eprintln!(
        "{answered} answered, {} failed; calls/s at 4: {before:.1}, after the reload to 16: \
         {after:.1}, after the broken reload: {after_broken:.1}",
        failed.len()
    );
    assert!(failed.is_empty(), "callers dropped or failed: {failed:?}");
    assert!(before <= 4.5, "{before:.1}/s under a limit of 4");
    assert!(
        after >= 10.0,
        "the new rate did not take effect: {after:.1}/s"
    );
    assert!(after <= 16.5, "{after:.1}/s under a limit of 16");
    assert!(
        after_broken >= 10.0,
        "a broken file changed the running rate: {after_broken:.1}/s"
    );
    assert_eq!(
        sample("tim_gateway_config_reloads_total{result=\"applied\"}"),
        1.0
    );
    assert_eq!(
        sample("tim_gateway_config_reloads_total{result=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        sample("tim_gateway_upstream_window_calls_limit{api=\"portrait_get\"}"),
        16.0
    );
    assert_eq!(
        sample("tim_gateway_upstream_window_calls_limit{api=\"openim/sendmsg\"}"),
        5.0,
        "the passed-through API's own limit follows the reload"
    );
    drop(gateway);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The gateway's config file with the profile TTL and query_online_status' `ttl_ms`.
fn ttl_config(listen: &str, sim: &Sim, ttl_seconds: u64, status_ttl_ms: u64) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\n\
         [upstream]\nbase_url = \"{}\"\nsdkappid = {SDKAPPID}\nidentifier = \"{ADMIN}\"\n\
         [auth]\nmode = \"none\"\n\
         [cache]\nttl_seconds = {ttl_seconds}\n\
         [list_apis.\"openim/query_online_status\"]\nttl_ms = {status_ttl_ms}\n",
        sim.base_url(),
    )
}

/// How many times the sim was sent `id` on `path`.
fn sends_of(sim: &Sim, path: &str, id: &str) -> usize {
    let calls = sim.calls().into_iter().filter(|c| c.path == path);
    calls.filter(|c| c.accounts.iter().any(|a| a == id)).count()
}

/// SIGHUP with shorter TTLs: what is stored from then on (a profile, an online status) lives
/// the new TTL; what was stored before keeps the expiry it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_ttls_to_what_is_stored_from_then_on() {
    const GET: &str = "/v4/profile/portrait_get";
    const ONLINE: &str = "/v4/openim/query_online_status";
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let listen = free_addr();
    let dir = std::env::temp_dir().join(format!("tim-gateway-ttl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tim-gateway.toml");
    let listen_text = listen.to_string();
    std::fs::write(&file, ttl_config(&listen_text, &sim, 300, 600_000)).expect("config");
    let path = file.to_str().expect("utf-8 path");
    let secret = [("TIM_GATEWAY__UPSTREAM__SECRET_KEY", DEMO_SECRET_KEY)];
    let gateway = GatewayProcess::spawn(listen, &["--config", path], &secret).await;
    let caller = Caller::clone(&gateway);
    let profile = |account: &str| get_body(&[account], &[NICK]);
    let status = |account: &str| serde_json::json!({ "To_Account": [account] });
    let ask_both = |account: &'static str| {
        let caller = caller.clone();
        async move {
            caller.get(&profile(account)).await;
            caller.post(ONLINE, &status(account)).await;
        }
    };
    ask_both("user50").await;

    std::fs::write(&file, ttl_config(&listen_text, &sim, 1, 1_000)).expect("config");
    gateway.signal("-HUP");
    let applied = support::eventually(Duration::from_secs(5), || async {
        let metrics = metrics_of(&caller).await;
        metric_value(
            &metrics,
            "tim_gateway_config_reloads_total{result=\"applied\"}",
        ) == Some(1.0)
    });
    assert!(applied.await, "the reload was applied");
    ask_both("user51").await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ask_both("user50").await;
    ask_both("user51").await;
    for path in [GET, ONLINE] {
        // A stale profile is answered at once and refreshed behind (stale-while-revalidate).
        let refetched = support::eventually(Duration::from_secs(2), || async {
            sends_of(&sim, path, "user51") == 2
        });
        assert!(refetched.await, "{path}: stored for the new 1 s");
        assert_eq!(
            sends_of(&sim, path, "user50"),
            1,
            "{path}: kept its 300 s expiry"
        );
    }
    drop(gateway);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
