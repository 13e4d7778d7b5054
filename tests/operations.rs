//! Operations: a real Prometheus scrapes a gateway that served hits, misses, coalesced and
//! failing requests, and evaluates every expression of the Grafana dashboard and of the rule
//! files (each must parse; every dashboard query must return data). Also: the coalesced-keys
//! counter means what its help says, `/readyz`, and no secret in deploy/.

mod support;

#[path = "operations/prometheus.rs"]
mod prometheus;

use std::time::Duration;

use bytes::Bytes;
use prometheus::{repo_file, Prometheus};
use serde_json::Value;
use support::*;

/// Series the dashboard and rules use that a standalone gateway (as this test runs) exposes
/// without samples: Redis command latency, shares and grants, observed only in fleet mode. Queries naming them may
/// come back empty. The test fails while a listed name is exposed, so the list cannot go stale.
const FLEET_ONLY_SERIES: &[&str] = &[
    "tim_gateway_redis_command_duration_seconds",
    "tim_gateway_fleet_share_calls",
    "tim_gateway_fleet_grants_total",
];

const RULE_FILES: [&str; 2] = [
    "deploy/prometheus/tim-gateway-recording.yml",
    "deploy/prometheus/tim-gateway-alerts.yml",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_and_rule_expression() {
    // The list reads' row needs one of them coalesced, keeping answers a while.
    let gw = TestGateway::builder()
        .config(|config| {
            let on = tim_gateway::config::ListApiConfig {
                enabled: true,
                ttl: Duration::from_secs(60),
            };
            let label = tim_gateway::apis::QUERY_ONLINE_STATUS.label;
            config.list_apis.by_label.insert(label, on);
        })
        .start()
        .await;
    send_mixed_traffic(&gw).await;
    let exposed = gw.metrics().await;
    for name in FLEET_ONLY_SERIES {
        assert!(
            !exposed.contains(name),
            "{name} is exposed now: remove it from FLEET_ONLY_SERIES"
        );
    }
    let rules: Vec<_> = RULE_FILES.iter().map(|f| repo_file(f)).collect();
    let prom = Prometheus::start(gw.addr, &rules).await;
    wait_for_scrapes(&prom, 3).await;
    // Traffic again so every rate window holds changes, then two more scrapes.
    send_mixed_traffic(&gw).await;
    wait_for_scrapes(&prom, 5).await;

    let mut failures = dashboard_failures(&prom).await;
    failures.extend(rule_failures(&prom).await);
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}\n--- prometheus log ---\n{}",
        failures.len(),
        failures.join("\n"),
        prom.log()
    );
    drop(prom);
    gw.shutdown().await;
}

/// Hits, misses, a coalesced fetch, a per-account failure, an auth failure, a bad body.
async fn send_mixed_traffic(gw: &TestGateway) {
    let cold = get_body(&["user1", "user2", "user3"], &[NICK, GENDER]);
    gw.portrait_get(&cold).await;
    gw.portrait_get(&cold).await; // whole-answer hit
    gw.portrait_get(&get_body(&["user3", "user2"], &[GENDER]))
        .await; // per-pair hits
    gw.portrait_get(&get_body(&["user4", FAILING_ACCOUNT], &[NICK]))
        .await;
    joined_keys(gw, &["user40", "user41"]).await;
    let bad_sig = format!(
        "{GET}?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig=nope&random=1&contenttype=json"
    );
    let (status, body) = gw.send("POST", &bad_sig, cold.to_string()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    gw.post_raw(GET, "not json").await;
    let online = tim_gateway::apis::QUERY_ONLINE_STATUS.path;
    let status = serde_json::json!({"To_Account": ["user1", "user2"]});
    gw.post(online, &status).await;
    gw.post(online, &status).await; // from the cache
}

/// Sends the same cold request twice, the second while the first's upstream call is in
/// flight; returns how much `coalesced_keys_total` grew.
async fn joined_keys(gw: &TestGateway, accounts: &[&str]) -> f64 {
    const COALESCED: &str = "tim_gateway_coalesced_keys_total";
    let before = gw.metric(COALESCED).await.unwrap_or(0.0);
    let body = get_body(accounts, &[NICK, GENDER]);
    gw.sim.set_latency(Duration::from_millis(300));
    let (first, second) = tokio::join!(gw.portrait_get(&body), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gw.portrait_get(&body).await
    });
    gw.sim.set_latency(Duration::ZERO);
    assert_eq!(first, second);
    gw.metric(COALESCED).await.unwrap_or(0.0) - before
}

/// Waits until Prometheus holds at least `n` scrapes of the gateway from the last minute.
async fn wait_for_scrapes(prom: &Prometheus, n: usize) {
    let expr = format!("count_over_time(up{{job=\"tim-gateway\"}}[1m]) >= {n}");
    let ok = eventually(Duration::from_secs(30), || async {
        prom.query(&expr).await.is_ok_and(|r| !r.is_empty())
    })
    .await;
    assert!(
        ok,
        "prometheus did not scrape the gateway {n} times:\n{}",
        prom.log()
    );
}

/// Every target of every dashboard panel, and the instance variable's series: must parse and
/// return data (fleet-only series excepted).
async fn dashboard_failures(prom: &Prometheus) -> Vec<String> {
    let text = std::fs::read_to_string(repo_file("deploy/grafana/tim-gateway.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_targets(&dashboard["panels"], &mut queries);
    assert!(
        queries.len() >= 20,
        "found only {} panel queries",
        queries.len()
    );
    queries.push((
        "variable instance".into(),
        "tim_gateway_build_info{job=\"tim-gateway\"}".into(),
    ));
    let mut failures = Vec::new();
    for (panel, expr) in queries {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$api", ".*");
        let pending = FLEET_ONLY_SERIES.iter().any(|m| expr.contains(m));
        match prom.query(&expr).await {
            Err(e) => failures.push(format!("dashboard '{panel}': {expr}: {e}")),
            Ok(result) if result.is_empty() && !pending => {
                failures.push(format!("dashboard '{panel}': no data for {expr}"))
            }
            Ok(_) => {}
        }
    }
    failures
}

fn collect_targets(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_string()));
            }
        }
        collect_targets(&panel["panels"], out);
    }
}

/// Every recording and alerting rule Prometheus loaded from the repo's files: each was
/// evaluated without error and its expression evaluates through the query API.
async fn rule_failures(prom: &Prometheus) -> Vec<String> {
    let groups = prom.rule_groups().await;
    let rules: Vec<Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(groups.len(), 2, "both rule files load: {groups:?}");
    assert!(rules.len() >= 14, "found only {} rules", rules.len());
    let mut failures = Vec::new();
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or("?");
        let expr = rule["query"].as_str().unwrap_or_default();
        if rule["health"] == "err" {
            failures.push(format!("rule {name}: {}", rule["lastError"]));
        }
        if let Err(e) = prom.query(expr).await {
            failures.push(format!("rule {name}: {expr}: {e}"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_keys_count_only_pairs_joining_a_fetch_another_caller_waits_on() {
    let gw = TestGateway::start().await;
    // A cold request for 3 accounts x 4 tags joins nothing (it used to report 6).
    let cold = get_body(
        &["user1", "user2", "user3"],
        &[NICK, GENDER, BIRTHDAY, CUSTOM],
    );
    gw.portrait_get(&cold).await;
    assert_eq!(
        gw.metric("tim_gateway_coalesced_keys_total").await,
        Some(0.0)
    );
    // The same cold request twice at once: the second's 3 x 2 pairs join the first's fetch.
    assert_eq!(joined_keys(&gw, &["user7", "user8", "user9"]).await, 6.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_dropped_by_a_full_cache_are_counted_as_size_evictions() {
    let gw = TestGateway::builder()
        .config(|c| c.cache.max_entries = 10)
        .start()
        .await;
    const EVICTED: &str = "tim_gateway_cache_evictions_total{cause=\"size\"}";
    assert_eq!(gw.metric(EVICTED).await, Some(0.0));
    let mut round = 0;
    let evicted = eventually(Duration::from_secs(10), || {
        round += 1;
        let accounts: Vec<String> = (0..20)
            .map(|i| format!("user{}", 1000 + round * 20 + i))
            .collect();
        let gw = &gw;
        async move {
            let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
            gw.portrait_get(&get_body(&accounts, &[NICK])).await;
            gw.metric(EVICTED).await.unwrap_or(0.0) > 0.0
        }
    })
    .await;
    assert!(
        evicted,
        "60+ accounts through a 10-pair cache evicted nothing"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_ready_while_serving_without_auth() {
    let gw = TestGateway::start().await;
    let (status, body) = gw.send("GET", "/readyz", Bytes::new()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("ready; breakers "), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    // A passed-through API's breaker shows once the API has been called.
    let sendmsg = serde_json::json!({"From_Account": "user1", "To_Account": "user2"});
    gw.post("/v4/openim/sendmsg", &sendmsg).await;
    let (_, body) = gw.send("GET", "/readyz", Bytes::new()).await;
    let text = String::from_utf8_lossy(&body);
    for breaker in [
        "portrait_get=closed",
        "portrait_set=closed",
        "openim/sendmsg=closed",
    ] {
        assert!(text.contains(breaker), "{breaker} missing: {text}");
    }
    gw.shutdown().await;
}

/// The ConfigMap's embedded tim-gateway.toml is a config the gateway accepts, with the key
/// coming from the environment as the Deployments set it.
#[test]
fn the_configmap_holds_a_config_the_gateway_accepts() {
    let manifest = std::fs::read_to_string(repo_file("deploy/kubernetes/configmap.yaml"))
        .expect("read the ConfigMap");
    let toml: String = manifest
        .lines()
        .skip_while(|l| l.trim() != "tim-gateway.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(toml.contains("[upstream]"), "no embedded config found");
    let env = std::collections::HashMap::from([(
        "TIM_GATEWAY__UPSTREAM__SECRET_KEY".to_string(),
        "placeholder".to_string(),
    )]);
    let config = tim_gateway::Config::from_toml_str(&toml, &env).expect("a valid config");
    config
        .require_secret_key()
        .expect("the key comes from the env");
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(20));
}

/// No SecretKey, private key or token in deploy/: Secrets hold placeholders only.
#[test]
fn deploy_holds_no_secret() {
    let mut files = Vec::new();
    walk(&repo_file("deploy"), &mut files);
    assert!(files.len() >= 10, "deploy/ has only {} files", files.len());
    let demo_key = tim_gateway::sim::DEMO_SECRET_KEY;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let shown = file.display();
        assert!(!text.contains(demo_key), "{shown} holds the sim's key");
        assert!(!text.contains("PRIVATE KEY"), "{shown} holds a private key");
        assert!(
            longest_hex_run(&text) < 32,
            "{shown} holds a long hex string (a SecretKey or token?)"
        );
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("secret-key:") {
                assert!(
                    value.contains("REPLACE"),
                    "{shown}: secret-key is not a placeholder"
                );
            }
            let lowered = line.to_ascii_lowercase();
            if lowered.starts_with("secret_key") || lowered.contains("usersig=") {
                panic!("{shown}: a credential is set in a file: {line}");
            }
        }
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn longest_hex_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}
