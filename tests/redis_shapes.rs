//! The fleet on the Redis shapes users run, each made of real `redis-server` processes the
//! tests start on loopback: TLS from a private CA, a password alone and an ACL user, a
//! 3-primary Cluster made with `redis-cli --cluster create` (and one with replicas whose primary
//! for the fleet's slot is SIGKILLed under load), and a Sentinel set (a primary, a
//! replica, three sentinels) whose primary is SIGKILLed under load. On each: one budget in any
//! sliding second at the simulated Tencent, the shared tier, and a set seen by every gateway.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use serde_json::json;
use support::fleet::FleetMember;
use support::load::{judge, load, AtTencent};
use support::{eventually, get_body, test_config, Caller, NICK, SET};
use tim_gateway::config::{Config, RawConfig, RawFleet};
use tim_gateway::sim::{Sim, SimConfig};

/// The app limit at the sim, and every gateway's budget, in the load tests.
const APP_LIMIT: u32 = 30;

/// One at a time: each test starts several Redis processes and a loaded fleet.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `redis-server` (or sentinel) process on a free loopback port, SIGKILLed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// `redis-server` on `port` with `args` (and `conf` first, when given), working in a
    /// fresh directory; returns once the port accepts connections.
    fn start(port: u16, conf: Option<&str>, args: &[&str]) -> Redis {
        let dir =
            std::env::temp_dir().join(format!("tim-gateway-shapes-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut command = Command::new("redis-server");
        if let Some(conf) = conf {
            let path = dir.join("redis.conf");
            std::fs::write(&path, conf).expect("conf");
            command.arg(&path);
        }
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().expect("utf-8 dir")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .expect("redis-server (Debian package redis-server; tests/run.sh installs it)");
        let redis = Redis {
            child: Some(child),
            port,
            dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `redis-cli -p port args...` (plain TCP); its stdout.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sim and `n` gateways whose `[fleet]` `fleet` sets (the rest as in every fleet test).
struct Shaped {
    sim: Sim,
    gateways: Vec<FleetMember>,
}

impl Shaped {
    /// `limit`: the sim's app limit and every gateway's budget; 0: no limit at the sim.
    async fn start(n: usize, limit: u32, fleet: impl Fn(&mut RawFleet)) -> Shaped {
        let sim = Sim::start(SimConfig {
            requests_per_second: limit,
            ..SimConfig::default()
        })
        .await
        .expect("sim");
        let mut gateways = Vec::new();
        for _ in 0..n {
            gateways.push(FleetMember::start(member_config(&sim, limit, &fleet)).await);
        }
        Shaped { sim, gateways }
    }

    async fn all_in_mode(&self, mode: &str, within: Duration) -> bool {
        let sample = format!("tim_gateway_fleet_mode{{mode=\"{mode}\"}}");
        eventually(within, || async {
            for gateway in &self.gateways {
                if gateway.metric(&sample).await != Some(1.0) {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Waits until every gateway is in fleet mode past the new Redis's first lease (a new
    /// Redis books no growth for one lease: it cannot tell new from restarted empty).
    async fn ready_in_fleet(&self) -> bool {
        self.all_in_mode("fleet", Duration::from_secs(10)).await
            && eventually(Duration::from_secs(10), || async {
                for gateway in &self.gateways {
                    if gateway.metric("tim_gateway_fleet_learning").await != Some(0.0) {
                        return false;
                    }
                }
                true
            })
            .await
    }

    async fn readyz(&self, i: usize) -> String {
        let (_, body) = self.gateways[i].send("GET", "/readyz", String::new()).await;
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Every gateway's `tim_gateway_redis_errors_total`, summed over commands.
    async fn redis_errors(&self) -> f64 {
        let mut total = 0.0;
        for gateway in &self.gateways {
            let (_, body) = gateway.send("GET", "/metrics", String::new()).await;
            let text = String::from_utf8_lossy(&body);
            total += support::metric_sum(&text, "tim_gateway_redis_errors_total");
        }
        total
    }

    async fn shutdown(self) {
        for gateway in self.gateways {
            gateway.shutdown().await;
        }
        self.sim.shutdown().await;
    }
}

fn member_config(sim: &Sim, limit: u32, fleet: &impl Fn(&mut RawFleet)) -> Config {
    let mut raw = RawConfig::default();
    fleet(&mut raw.fleet);
    let mut config = test_config();
    config.auth.mode = tim_gateway::config::AuthMode::None;
    config.fleet = Config::from_raw(raw).expect("valid fleet config").fleet;
    config.upstream.base_url = sim.base_url().parse().expect("sim url");
    let budget = if limit == 0 { 200 } else { limit };
    config.limits.requests_per_second = budget.try_into().expect("non-zero");
    config.limits.max_queue_wait = Duration::from_secs(3);
    config
}

/// One truth on this shape: what A fetched, B answers from the shared tier with no upstream
/// call; a set through A is seen through B within `within` of its answer.
async fn one_truth(shaped: &Shaped, account: &str, within: Duration) {
    let [a, b, ..] = &shaped.gateways[..] else {
        panic!("two gateways at least");
    };
    let body = get_body(&[account], &[NICK]);
    let first = a.get(&body).await;
    let put = r#"tim_gateway_redis_command_duration_seconds_count{command="cache_put"}"#;
    let before = a.metric(put).await.unwrap_or(0.0);
    let written = eventually(Duration::from_secs(5), || async {
        a.metric(put).await.unwrap_or(0.0) >= before.max(1.0)
    })
    .await;
    if !written {
        let (_, m) = a.send("GET", "/metrics", String::new()).await;
        let m = String::from_utf8_lossy(&m).into_owned();
        let lines: Vec<&str> = m
            .lines()
            .filter(|l| l.contains("redis") || l.contains("fleet_mode"))
            .collect();
        panic!(
            "A never wrote to the shared tier: {first}\n{}",
            lines.join("\n")
        );
    }
    let calls = shaped.sim.calls().len();
    assert_eq!(
        b.get(&body).await,
        first,
        "the fleet answers like one gateway"
    );
    assert_eq!(shaped.sim.calls().len(), calls, "B asked Tencent again");
    let set = json!({"From_Account": account, "ProfileItem": [{"Tag": NICK, "Value": "renamed"}]});
    let answer = a.post(SET, &set).await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    let answered = Instant::now();
    let seen = eventually(within, || async {
        b.get(&body).await["UserProfileItem"][0]["ProfileItem"][0]["Value"] == json!("renamed")
    })
    .await;
    assert!(seen, "the set was not seen through B within {within:?}");
    eprintln!(
        "set seen through B {:?} after its answer",
        answered.elapsed()
    );
}

/// What the callers saw under load, judged against the sim alone.
struct Judged {
    calls: usize,
    max_in_a_second: usize,
    over_limit: usize,
    correct: usize,
    errors: usize,
}

/// `callers` callers on the gateways asking for new accounts until `until` (the fleet tests'
/// load); every answer is the sim's own or a Tencent-style error (anything else fails the
/// test), and every gateway answers.
async fn loaded(shaped: &Shaped, callers: usize, until: Instant) -> Judged {
    let gateways = shaped.gateways.iter().map(|g| Caller::clone(g)).collect();
    let seen = load(gateways, callers, until).await;
    assert!(seen.unanswered.is_empty(), "a gateway did not answer");
    let (correct, errors) = judge(&shaped.sim, &seen);
    let at = AtTencent::of(&shaped.sim);
    Judged {
        calls: at.calls.len(),
        max_in_a_second: at.max,
        over_limit: at.over,
        correct,
        errors,
    }
}

fn assert_within_budget(judged: &Judged) {
    assert!(
        judged.max_in_a_second <= APP_LIMIT as usize,
        "{} upstream calls in one second",
        judged.max_in_a_second
    );
    assert_eq!(judged.over_limit, 0, "the sim answered 60007");
    assert!(judged.correct > 0, "no caller was answered");
}

// === TLS and auth ===

/// A throwaway CA and a certificate for 127.0.0.1 it signed, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let made = support::pki::test_pki();
    std::fs::create_dir_all(dir).expect("pki dir");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, made.ca_pem).expect("ca");
    std::fs::write(&paths.1, made.leaf.pem()).expect("cert");
    std::fs::write(&paths.2, made.leaf_key.serialize_pem()).expect("key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_joins_the_fleet_and_without_it_says_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("tim-gateway-redis-pki-{}", std::process::id()));
    let (ca, cert, key) = test_pki(&dir);
    let port = free_port();
    let tls_port = free_port();
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let _redis = Redis::start(
        port,
        None,
        &[
            "--port",
            &port.to_string(),
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path(&cert),
            "--tls-key-file",
            &path(&key),
            "--tls-ca-cert-file",
            &path(&ca),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let shaped = Shaped::start(2, 0, |fleet| {
        fleet.redis_url = url.clone();
        fleet.redis_ca_file = path(&ca);
    })
    .await;
    assert!(
        shaped.ready_in_fleet().await,
        "TLS with the CA: {}",
        shaped.readyz(0).await
    );
    one_truth(&shaped, "user31", Duration::from_millis(500)).await;
    shaped.shutdown().await;

    // Without the CA the certificate is not trusted: fallback, and /readyz says why.
    let untrusted = Shaped::start(1, 0, |fleet| fleet.redis_url = url.clone()).await;
    let said = eventually(Duration::from_secs(5), || async {
        untrusted.readyz(0).await.contains("redis_error=")
    })
    .await;
    let readyz = untrusted.readyz(0).await;
    assert!(said, "no reason in /readyz: {readyz}");
    assert!(readyz.contains("fleet fallback"), "{readyz}");
    assert!(
        readyz.to_lowercase().contains("certificate") || readyz.contains("UnknownIssuer"),
        "the reason names the certificate: {readyz}"
    );
    assert!(
        untrusted.redis_errors().await > 0.0,
        "TLS failures are counted as Redis errors"
    );
    untrusted.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_alone_and_an_acl_user_both_join_and_a_wrong_one_says_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let port = free_port();
    let _redis = Redis::start(
        port,
        Some("user gateway on >gw-secret ~* &* +@all\n"),
        &[
            "--port",
            &port.to_string(),
            "--requirepass",
            "default-secret",
        ],
    );
    for (url, account) in [
        (
            format!("redis://:default-secret@127.0.0.1:{port}/0"),
            "user32",
        ),
        (
            format!("redis://gateway:gw-secret@127.0.0.1:{port}/0"),
            "user35",
        ),
    ] {
        let shaped = Shaped::start(2, 0, |fleet| fleet.redis_url = url.clone()).await;
        assert!(shaped.ready_in_fleet().await, "{}", shaped.readyz(0).await);
        one_truth(&shaped, account, Duration::from_millis(500)).await;
        shaped.shutdown().await;
    }
    let url = format!("redis://gateway:wrong-secret@127.0.0.1:{port}/0");
    let refused = Shaped::start(1, 0, |fleet| fleet.redis_url = url.clone()).await;
    let said = eventually(Duration::from_secs(5), || async {
        refused.readyz(0).await.contains("redis_error=")
    })
    .await;
    let readyz = refused.readyz(0).await;
    assert!(said && readyz.contains("fleet fallback"), "{readyz}");
    assert!(
        !readyz.contains("wrong-secret"),
        "a password in /readyz: {readyz}"
    );
    refused.shutdown().await;
}

// === Cluster ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_primary_cluster_holds_one_budget_one_tier_and_one_truth() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_nodes, addresses) = cluster(3, 0).await;
    let shaped = Shaped::start(3, APP_LIMIT, |fleet| {
        fleet.redis_cluster_nodes = addresses.clone();
    })
    .await;
    assert!(shaped.ready_in_fleet().await, "{}", shaped.readyz(0).await);
    one_truth(&shaped, "user33", Duration::from_millis(100)).await;
    let started = Instant::now();
    let judged = loaded(&shaped, 60, started + Duration::from_secs(4)).await;
    eprintln!(
        "cluster: {} calls, max {} in any second, {} correct, {} errors",
        judged.calls, judged.max_in_a_second, judged.correct, judged.errors
    );
    assert_within_budget(&judged);
    assert_eq!(
        judged.errors, 0,
        "no caller needs an error on a healthy cluster"
    );
    assert_eq!(
        shaped.redis_errors().await,
        0.0,
        "CROSSSLOT or MOVED reached the gateways"
    );
    shaped.shutdown().await;
}

/// `count` cluster nodes on free ports, made one cluster with `replicas` replicas per primary;
/// returns them and their `127.0.0.1:port` addresses once the cluster is ok.
async fn cluster(count: usize, replicas: u8) -> (Vec<Redis>, Vec<String>) {
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let nodes: Vec<Redis> = ports
        .iter()
        .map(|port| {
            Redis::start(
                *port,
                None,
                &[
                    "--port",
                    &port.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ],
            )
        })
        .collect();
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(created.status.success(), "{created:?}");
    let ok = eventually(Duration::from_secs(15), || async {
        ports
            .iter()
            .all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
    })
    .await;
    assert!(ok, "the cluster did not form");
    (nodes, addresses)
}

/// Which of `ports` is the primary serving the fleet's one hash-tag slot.
fn primary_of_the_fleets_slot(ports: &[u16]) -> u16 {
    let tag = format!("{{tim-gateway:{}}}", support::SDKAPPID);
    let slot: u32 = cli(ports[0], &["cluster", "keyslot", &tag])
        .trim()
        .parse()
        .expect("a slot");
    let nodes = cli(ports[0], &["cluster", "nodes"]);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            continue;
        }
        let serves = fields[8..].iter().any(|range| {
            let mut bounds = range.split('-').filter_map(|b| b.parse::<u32>().ok());
            let low = bounds.next().unwrap_or(u32::MAX);
            let high = bounds.next().unwrap_or(low);
            (low..=high).contains(&slot)
        });
        if serves {
            let port = fields[1].split(['@', ':']).nth(1).expect("port");
            return port.parse().expect("port number");
        }
    }
    panic!("no primary serves slot {slot}:\n{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_sigkilled_under_load_keeps_the_budget_and_its_replica_takes_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut nodes, addresses) = cluster(6, 1).await;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let nodes_list = addresses.clone();
    let shaped = Shaped::start(3, APP_LIMIT, |fleet| {
        fleet.redis_cluster_nodes = nodes_list.clone();
    })
    .await;
    assert!(shaped.ready_in_fleet().await, "{}", shaped.readyz(0).await);
    let doomed = primary_of_the_fleets_slot(&ports);
    let started = Instant::now();
    let killed_at = started + Duration::from_secs(2);
    let (judged, back_after) = {
        let load = loaded(&shaped, 60, started + Duration::from_secs(14));
        let kill = async {
            tokio::time::sleep_until(killed_at.into()).await;
            let node = nodes.iter_mut().find(|n| n.port == doomed).expect("node");
            node.kill();
            shaped.all_in_mode("fallback", Duration::from_secs(5)).await;
            let alive: Vec<u16> = ports.iter().copied().filter(|p| *p != doomed).collect();
            let promoted = eventually(Duration::from_secs(15), || async {
                primary_of_the_fleets_slot(&alive) != doomed
            });
            let promoted = promoted.await.then(|| killed_at.elapsed());
            let back = shaped.all_in_mode("fleet", Duration::from_secs(15)).await;
            let back = back.then(|| killed_at.elapsed());
            // The promoted replica's copy may be behind: its first lease books no growth.
            let learning = eventually(Duration::from_secs(2), || async {
                shaped.gateways[0]
                    .metric("tim_gateway_fleet_learning")
                    .await
                    == Some(1.0)
            });
            assert!(learning.await, "the promoted copy was trusted as it was");
            (promoted, back)
        };
        let (judged, (promoted, back)) = tokio::join!(load, kill);
        eprintln!("the replica took the slot {promoted:?} after the kill");
        (judged, back)
    };
    let mut changes = 0.0;
    for gateway in &shaped.gateways {
        changes += gateway
            .metric("tim_gateway_fleet_mode_changes_total")
            .await
            .unwrap_or(0.0);
    }
    eprintln!("mode changes over the three gateways: {changes}");
    // Each gateway: into fleet mode at start, out at the kill, back once the slot is served.
    assert!(
        changes <= 9.0,
        "the gateways flapped: {changes} mode changes"
    );
    eprintln!(
        "cluster failover: {} calls, max {} in any second, {} correct, {} errors; back in \
         fleet mode {back_after:?} after the kill",
        judged.calls, judged.max_in_a_second, judged.correct, judged.errors,
    );
    assert_within_budget(&judged);
    assert!(
        back_after.is_some_and(|t| t < Duration::from_secs(15)),
        "not back in fleet mode within 15 s: {}",
        shaped.readyz(0).await
    );
    one_truth(&shaped, "user35", Duration::from_millis(500)).await;
    shaped.shutdown().await;
}

// === Sentinel ===

/// A primary, its replica and three sentinels watching it as `mymaster`.
struct SentinelSet {
    primary: Redis,
    _replica: Redis,
    _sentinels: Vec<Redis>,
    sentinel_addresses: Vec<String>,
}

impl SentinelSet {
    fn start() -> SentinelSet {
        let (primary_port, replica_port) = (free_port(), free_port());
        let primary = Redis::start(primary_port, None, &["--port", &primary_port.to_string()]);
        let replica = Redis::start(
            replica_port,
            None,
            &[
                "--port",
                &replica_port.to_string(),
                "--replicaof",
                "127.0.0.1",
                &primary_port.to_string(),
            ],
        );
        let mut sentinels = Vec::new();
        let mut sentinel_addresses = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\n\
                 sentinel monitor mymaster 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n\
                 sentinel parallel-syncs mymaster 1\n"
            );
            sentinels.push(Redis::start(port, Some(&conf), &["--sentinel"]));
            sentinel_addresses.push(format!("127.0.0.1:{port}"));
        }
        SentinelSet {
            primary,
            _replica: replica,
            _sentinels: sentinels,
            sentinel_addresses,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_keeps_the_budget_and_the_fleet_comes_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut set = SentinelSet::start();
    // The replica has synced and every sentinel sees it before anything depends on them.
    let synced = eventually(Duration::from_secs(15), || async {
        let port: u16 = set.sentinel_addresses[0]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        cli(port, &["sentinel", "replicas", "mymaster"]).contains("slave")
    })
    .await;
    assert!(synced, "the sentinels never saw the replica");
    let nodes = set.sentinel_addresses.clone();
    let shaped = Shaped::start(3, APP_LIMIT, |fleet| {
        fleet.redis_sentinel_nodes = nodes.clone();
        fleet.redis_sentinel_master = "mymaster".to_owned();
    })
    .await;
    assert!(shaped.ready_in_fleet().await, "{}", shaped.readyz(0).await);
    let started = Instant::now();
    let killed_at = started + Duration::from_secs(2);
    let (judged, back_after) = {
        let load = loaded(&shaped, 60, started + Duration::from_secs(14));
        let kill = async {
            tokio::time::sleep_until(killed_at.into()).await;
            set.primary.kill();
            // Fallback first (the primary is gone), then fleet mode on the new primary.
            shaped.all_in_mode("fallback", Duration::from_secs(5)).await;
            let back = shaped.all_in_mode("fleet", Duration::from_secs(15)).await;
            back.then(|| killed_at.elapsed())
        };
        tokio::join!(load, kill)
    };
    eprintln!(
        "sentinel failover: {} calls, max {} in any second, {} correct, {} errors; back in \
         fleet mode {back_after:?} after the kill",
        judged.calls, judged.max_in_a_second, judged.correct, judged.errors,
    );
    assert_within_budget(&judged);
    assert!(
        back_after.is_some_and(|t| t < Duration::from_secs(15)),
        "not back in fleet mode within 15 s: {}",
        shaped.readyz(0).await
    );
    one_truth(&shaped, "user34", Duration::from_millis(500)).await;
    shaped.shutdown().await;
}
