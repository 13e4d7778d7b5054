//! A fleet of gateways sharing one real Redis in front of one sim behaves like one gateway:
//! one upstream budget in any sliding second, one cache tier, one truth after a write, and
//! no caller stuck or misled while Redis is killed, restarted or frozen.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fleet::{fleet_config, max_in_any_second, TestFleet};
use support::load::{judge, load, upstream_gets, Seen, OVER_LIMIT};
use support::Caller;
use support::{get_body, FAILING_ACCOUNT, GENDER, NICK, SET};
use tim_gateway::config::AfterLease;
use tim_gateway::sim::{portrait_set_callback, CallbackSender, PORTRAIT_SET_COMMAND};

/// The sim's app limit in the budget tests, and every gateway's configured budget.
const APP_LIMIT: u32 = 30;

async fn fleet_with_app_limit(fallback_instances: u32) -> TestFleet {
    TestFleet::start(
        3,
        |sim| sim.requests_per_second = APP_LIMIT,
        |config| {
            config.limits.requests_per_second = APP_LIMIT.try_into().expect("non-zero");
            config.fleet.fallback_instances = fallback_instances.try_into().expect("non-zero");
            config.limits.max_queue_wait = Duration::from_secs(5);
        },
    )
    .await
}

/// The load tests run one at a time: on a 2-core CI machine, two of them at once would starve
/// Redis's answers past the test timeout and measure the machine instead of the fleet.
static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_budget_in_any_sliding_second() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let fleet = fleet_with_app_limit(3).await;
    let started = Instant::now();
    let seen = load(fleet.callers(), 180, started + Duration::from_secs(4)).await;
    let calls = upstream_gets(&fleet.sim);
    let (correct, errors) = judge(&fleet.sim, &seen);
    let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
    let over = calls.iter().filter(|c| c.error_code == OVER_LIMIT).count();
    let span = calls
        .last()
        .map_or(0.0, |c| (c.at - calls[0].at).as_secs_f64());
    let used = calls.len() as f64 / (span.max(1.0) * f64::from(APP_LIMIT));
    // Saturated: from the end of the shares' ramp (the first calls' pool slots are held for
    // a window after their answers) to the end of the load.
    let (from, to) = (
        started + Duration::from_secs(2),
        started + Duration::from_secs(4),
    );
    let steady = calls.iter().filter(|c| c.at >= from && c.at < to).count() as f64
        / (2.0 * f64::from(APP_LIMIT));
    let mut acquires = 0.0;
    for gateway in &fleet.gateways {
        let sample = r#"tim_gateway_redis_command_duration_seconds_count{command="acquire"}"#;
        acquires += gateway.metric(sample).await.unwrap_or(0.0);
    }
    let per_call = acquires / calls.len() as f64;
    eprintln!(
        "{} calls over {span:.2} s, max {max} in any second, budget used {:.0} % ({:.0} % \
         saturated), {per_call:.2} acquire round trips per call, {correct} correct, \
         {errors} errors, slowest caller {:?}",
        calls.len(),
        used * 100.0,
        steady * 100.0,
        seen.slowest
    );
    assert!(
        max <= APP_LIMIT as usize,
        "{max} upstream calls in one second"
    );
    assert_eq!(over, 0, "the sim answered 60007");
    assert_eq!(errors, 0, "no caller needs an error under this load");
    assert!(used >= 0.8, "only {:.0} % of the budget used", used * 100.0);
    assert!(
        steady >= 0.95,
        "only {:.0} % of the budget used at saturation",
        steady * 100.0
    );
    assert!(per_call <= 1.1, "{per_call:.2} pool round trips per call");
    let mut shares = Vec::new();
    for gateway in &fleet.gateways {
        let sample = r#"tim_gateway_upstream_requests_total{api="portrait_get",outcome="ok"}"#;
        shares.push(gateway.metric(sample).await.unwrap_or(0.0));
    }
    let fair = calls.len() as f64 / 3.0;
    for share in &shares {
        assert!(
            (fair / 2.0..=fair * 2.0).contains(share),
            "a gateway starved or hogged: {shares:?}"
        );
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_api_is_held_to_its_limit_by_the_whole_fleet() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    const SENDMSG_LIMIT: u32 = 6;
    let fleet = TestFleet::start(
        3,
        |sim| sim.requests_per_second = SENDMSG_LIMIT,
        |config| {
            let limit = SENDMSG_LIMIT.try_into().expect("non-zero");
            config
                .passthrough
                .limits
                .insert("openim/sendmsg".to_owned(), limit);
            config.limits.max_queue_wait = Duration::from_millis(2500);
        },
    )
    .await;
    let mut callers = Vec::new();
    for (i, gateway) in fleet.callers().into_iter().cycle().take(45).enumerate() {
        callers.push(tokio::spawn(async move {
            let body =
                format!(r#"{{"From_Account":"user1","To_Account":"user{i}","MsgRandom":{i}}}"#);
            let (status, answer) = gateway.send("POST", "/v4/openim/sendmsg", body).await;
            assert_eq!(status, 200);
            let answer: Value = serde_json::from_slice(&answer).expect("JSON");
            answer["ErrorCode"].as_i64().expect("code")
        }));
    }
    for caller in callers {
        let code = caller.await.expect("caller");
        assert!(code == 0 || code == 60007, "{code}");
    }
    let calls: Vec<_> = fleet
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.path == "/v4/openim/sendmsg")
        .collect();
    let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
    eprintln!("{} sendmsg calls, max {max} in any second", calls.len());
    assert!(max <= SENDMSG_LIMIT as usize, "{max} calls in one second");
    assert!(
        calls.iter().all(|c| c.error_code == 0),
        "the sim answered 60007"
    );
    assert!(
        calls.len() >= 2 * SENDMSG_LIMIT as usize,
        "only {}",
        calls.len()
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_fetched_through_one_gateway_is_answered_by_another_without_upstream() {
    let fleet = TestFleet::start(3, |_| {}, |_| {}).await;
    let body = get_body(&["user1", "user2", FAILING_ACCOUNT], &[NICK, GENDER]);
    let [a, b, c] = &fleet.gateways[..] else {
        unreachable!()
    };
    let first = a.get(&body).await;
    assert_eq!(upstream_gets(&fleet.sim).len(), 1);
    // The shared tier is written right after the answer: B asks only once A's write is done
    // (asked earlier, B would fetch and keep the values in its own L1, never asking again).
    let put = r#"tim_gateway_redis_command_duration_seconds_count{command="cache_put"}"#;
    let written = support::eventually(Duration::from_secs(5), || async {
        a.metric(put).await.unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(
        written,
        "gateway A never wrote its values to the shared tier"
    );
    let hits = r#"tim_gateway_shared_cache_lookups_total{result="hit"}"#;
    let before = b.metric(hits).await.unwrap_or(0.0);
    assert_eq!(
        b.get(&body).await,
        first,
        "the fleet answers like one gateway"
    );
    assert!(
        b.metric(hits).await.unwrap_or(0.0) > before,
        "gateway B did not find A's values in the shared tier"
    );
    assert_eq!(c.get(&body).await, first);
    let calls = upstream_gets(&fleet.sim);
    assert!(
        calls
            .iter()
            .skip(1)
            .all(|call| call.accounts == [FAILING_ACCOUNT]),
        "only the account Tencent failed (never cached) is asked again: {calls:?}"
    );
    fleet.shutdown().await;
}

fn set_nick(account: &str, nick: &str) -> Value {
    json!({"From_Account": account, "ProfileItem": [{"Tag": NICK, "Value": nick}]})
}

fn nick_of(answer: &Value) -> Value {
    answer["UserProfileItem"][0]["ProfileItem"][0]["Value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_through_one_gateway_is_seen_through_every_other_within_100_ms() {
    let fleet = TestFleet::start(3, |_| {}, |_| {}).await;
    let body = get_body(&["user5"], &[NICK]);
    for gateway in &fleet.gateways {
        assert_eq!(nick_of(&gateway.get(&body).await), json!("nick-5"));
    }
    let set = fleet.gateways[0]
        .post(SET, &set_nick("user5", "renamed"))
        .await;
    assert_eq!(set["ErrorCode"], 0, "{set}");
    let answered = Instant::now();
    for gateway in &fleet.gateways[1..] {
        let fresh = support::eventually(Duration::from_millis(100), || async {
            nick_of(&gateway.get(&body).await) == json!("renamed")
        })
        .await;
        assert!(fresh, "not visible within 100 ms of the set's answer");
    }
    eprintln!(
        "visible everywhere {:?} after the set's answer",
        answered.elapsed()
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_callback_received_by_one_gateway_refreshes_every_other() {
    let fleet = TestFleet::start(3, |_| {}, |_| {}).await;
    let body = get_body(&["user6"], &[NICK]);
    for gateway in &fleet.gateways {
        assert_eq!(nick_of(&gateway.get(&body).await), json!("nick-6"));
    }
    // A user renames themselves in the app; Tencent calls back whichever gateway the ingress picks.
    let changed = fleet
        .sim
        .client_portrait_set("user6", &[(NICK, json!("renamed in the app"))])
        .await
        .expect("profile changed");
    assert!(
        changed.is_none(),
        "the sim has no callback URL of its own here"
    );
    let url = format!("http://{}/tim/callback", fleet.gateways[0].addr);
    let sender = CallbackSender::try_new(support::SDKAPPID, None, &url).expect("url");
    let callback = portrait_set_callback("user6", &[(NICK, json!("renamed in the app"))]);
    let (status, _) = sender
        .send(PORTRAIT_SET_COMMAND, callback)
        .await
        .expect("answered");
    assert_eq!(status, 200);
    for gateway in &fleet.gateways {
        let fresh = support::eventually(Duration::from_millis(100), || async {
            nick_of(&gateway.get(&body).await) == json!("renamed in the app")
        })
        .await;
        assert!(fresh, "not visible within 100 ms of the callback's answer");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_sent_before_a_set_and_answered_after_it_writes_nothing_back() {
    let fleet = TestFleet::start(3, |_| {}, |_| {}).await;
    let body = get_body(&["user6"], &[NICK]);
    let slow = Caller::clone(&fleet.gateways[1]);
    // The fetch reaches the sim (and reads the old nick) before the set, and is answered
    // 600 ms later, long after the set's answer and the fleet's invalidation.
    fleet.sim.set_latency(Duration::from_millis(600));
    let in_flight = tokio::spawn({
        let body = body.clone();
        async move { slow.get(&body).await }
    });
    assert!(
        support::eventually(Duration::from_secs(2), || async {
            !upstream_gets(&fleet.sim).is_empty()
        })
        .await
    );
    fleet.sim.set_latency(Duration::ZERO);
    let set = fleet.gateways[0]
        .post(SET, &set_nick("user6", "after"))
        .await;
    assert_eq!(set["ErrorCode"], 0, "{set}");
    let old = in_flight.await.expect("caller task");
    assert_eq!(
        nick_of(&old),
        json!("nick-6"),
        "the concurrent caller got the old value"
    );
    tokio::time::sleep(Duration::from_millis(200)).await; // any write-back would have landed
    for gateway in &fleet.gateways {
        assert_eq!(
            nick_of(&gateway.get(&body).await),
            json!("after"),
            "an old fetch wrote its value back"
        );
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_then_restarted_keeps_callers_served_and_the_budget_held() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let mut fleet = fleet_with_app_limit(3).await;
    let started = Instant::now();
    let load_ends = started + Duration::from_secs(6);
    let seen = {
        let load = load(fleet.callers(), 90, load_ends);
        tokio::pin!(load);
        let disturb = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            fleet.redis.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            fleet.redis.restart();
        };
        let (seen, ()) = tokio::join!(load, disturb);
        seen
    };
    let calls = upstream_gets(&fleet.sim);
    let (correct, errors) = judge(&fleet.sim, &seen);
    let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
    let over = calls.iter().filter(|c| c.error_code == OVER_LIMIT).count();
    eprintln!(
        "{} calls, max {max} in any second, {correct} correct, {errors} errors, slowest {:?}",
        calls.len(),
        seen.slowest
    );
    assert!(
        max <= APP_LIMIT as usize,
        "{max} upstream calls in one second"
    );
    assert_eq!(over, 0, "the sim answered 60007");
    assert!(correct > 0);
    assert!(
        fleet.all_in_mode("fleet", Duration::from_secs(10)).await,
        "the fleet did not return to fleet mode after Redis came back"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_callers_at_most_its_timeout_per_step() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(
        2,
        |_| {},
        |config| {
            config.fleet.redis_timeout = gateway_timeout();
        },
    )
    .await;
    let gateway = &fleet.gateways[0];
    let timed = |body: Value| async move {
        let started = Instant::now();
        let answer = gateway.get(&body).await;
        (started.elapsed(), answer)
    };
    let normal_at = Instant::now();
    let (normal_cold, _) = timed(get_body(&["user20"], &[NICK])).await;
    // An idle gateway's share is two calls a second, spaced half a second apart: each cold
    // account below is asked once the share may send it (a matter of budget, not of Redis).
    tokio::time::sleep_until((normal_at + Duration::from_millis(550)).into()).await;
    fleet.redis.pause();
    let (frozen_cold, answer) = timed(get_body(&["user22"], &[NICK])).await;
    assert_eq!(nick_of(&answer), json!("nick-22"));
    let (frozen_hot, _) = timed(get_body(&["user20"], &[NICK])).await;
    // The third waits for the first call's window to pass.
    tokio::time::sleep_until((normal_at + Duration::from_millis(1_100)).into()).await;
    let (frozen_cold_again, _) = timed(get_body(&["user23"], &[NICK])).await;
    eprintln!(
        "normal cold {normal_cold:?}; frozen: cold {frozen_cold:?}, hot {frozen_hot:?}, \
         cold again {frozen_cold_again:?}"
    );
    // The first cold request pays one Redis timeout before it goes on without it (and spends
    // the gateway's share, which Redis keeps booked for it); after that the gateway is in
    // fallback and sends nothing to Redis. Slack for CI noise.
    let step = gateway_timeout();
    assert!(frozen_cold < normal_cold + step + Duration::from_millis(250));
    assert!(
        frozen_hot < Duration::from_millis(250),
        "a hit never waits on Redis"
    );
    assert!(frozen_cold_again < normal_cold + step + Duration::from_millis(250));
    assert!(fleet.all_in_mode("fallback", Duration::from_secs(2)).await);
    fleet.redis.resume();
    assert!(
        fleet.all_in_mode("fleet", Duration::from_secs(5)).await,
        "back to fleet mode once Redis answers"
    );
    fleet.shutdown().await;
}

/// The shipped `fleet.redis_timeout_ms`.
fn gateway_timeout() -> Duration {
    tim_gateway::Config::default().fleet.redis_timeout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_accounts_asked_on_every_gateway_at_once_are_fetched_once_fleet_wide() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(3, |_| {}, |_| {}).await;
    const ACCOUNTS: usize = 300;
    let bodies: Vec<Value> = (0..ACCOUNTS)
        .step_by(100)
        .map(|first| {
            let names: Vec<String> = (first..first + 100)
                .map(|n| format!("user{}", 5_000 + n))
                .collect();
            get_body(
                &names.iter().map(String::as_str).collect::<Vec<_>>(),
                &[NICK],
            )
        })
        .collect();
    // Every gateway is asked for all 300 new accounts at the same instant.
    let mut asks = Vec::new();
    for gateway in fleet.callers() {
        for body in &bodies {
            let (gateway, body) = (gateway.clone(), body.clone());
            asks.push(tokio::spawn(async move {
                let answer = gateway.get(&body).await;
                (0, body, answer)
            }));
        }
    }
    let mut seen = Seen::default();
    for ask in asks {
        seen.exchanges.push(ask.await.expect("caller"));
    }
    let (correct, errors) = judge(&fleet.sim, &seen);
    let calls = upstream_gets(&fleet.sim);
    let fetched: usize = calls.iter().map(|c| c.accounts.len()).sum();
    let mut times: std::collections::HashMap<&str, usize> = Default::default();
    for account in calls.iter().flat_map(|c| &c.accounts) {
        *times.entry(account.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    let mut claims = Vec::new();
    for gateway in &fleet.gateways {
        let mut row = Vec::new();
        for result in ["won", "waited", "expired"] {
            let sample = format!("tim_gateway_fleet_claims_total{{result=\"{result}\"}}");
            row.push(gateway.metric(&sample).await.unwrap_or(0.0));
        }
        claims.push(row);
    }
    eprintln!(
        "{ACCOUNTS} new accounts on 3 gateways: {fetched} fetched upstream, {correct} correct, \
         {errors} errors; claims won/waited/expired per gateway {claims:?}; \
         fetched more than once: {twice:?}"
    );
    assert_eq!(errors, 0, "every caller is answered");
    assert!(
        fetched <= ACCOUNTS + ACCOUNTS / 20,
        "{fetched} accounts fetched for {ACCOUNTS} (more than 5 % duplicates)"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_gateway_died_delays_the_account_only_until_it_expires() {
    let fleet = TestFleet::start(1, |_| {}, |_| {}).await;
    let config = fleet_config(&fleet.redis);
    // A claim held by a gateway that is gone: nobody will ever fill it.
    let key = format!(
        "{{{}:{}}}:c:user42",
        config.fleet.key_prefix, config.upstream.sdkappid
    );
    let set = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &fleet.redis.url(),
            "SET",
            &key,
            "dead-gateway",
            "PX",
            "600",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(set.status.success(), "{set:?}");
    let gateway = &fleet.gateways[0];
    let started = Instant::now();
    let answer = gateway.get(&get_body(&["user42"], &[NICK])).await;
    let waited = started.elapsed();
    assert_eq!(nick_of(&answer), json!("昵称-42"));
    let expired = r#"tim_gateway_fleet_claims_total{result="expired"}"#;
    assert_eq!(gateway.metric(expired).await, Some(1.0));
    assert_eq!(
        upstream_gets(&fleet.sim).len(),
        1,
        "fetched by the waiter itself"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "waited {waited:?} on a claim with 600 ms left"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_shows_the_membership_and_a_graceful_leave_returns_a_share_at_once() {
    let mut fleet = TestFleet::start(2, |_| {}, |_| {}).await;
    let readyz = |gateway: Caller| async move {
        let (status, body) = gateway.send("GET", "/readyz", String::new()).await;
        assert_eq!(status, 200, "a fleet member is ready whatever Redis does");
        String::from_utf8(body.to_vec()).expect("text")
    };
    let first = Caller::clone(&fleet.gateways[0]);
    let both = support::eventually(Duration::from_secs(5), || async {
        readyz(first.clone())
            .await
            .contains("fleet fleet peers=2 silent=0")
    })
    .await;
    assert!(both, "{}", readyz(first.clone()).await);
    let report = readyz(first.clone()).await;
    assert!(report.contains("portrait_get share="), "{report}");
    // A graceful stop leaves the fleet: the survivor sees one member long before a lease.
    // (Without the leave it would show as a silent peer until its 4 s lease ran out.)
    let left = fleet.gateways.pop().expect("two");
    left.shutdown().await;
    let alone = support::eventually(Duration::from_secs(1), || async {
        readyz(first.clone()).await.contains("peers=1 silent=0")
    })
    .await;
    assert!(alone, "{}", readyz(first.clone()).await);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_host_does_not_flap_modes_and_a_frozen_redis_is_noticed_within_a_second() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let fleet = TestFleet::start(
        3,
        |_| {},
        |config| config.fleet.redis_timeout = gateway_timeout(),
    )
    .await;
    // Twice as many busy threads as cores: a load average of twice the cores.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..cores * 2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let started = Instant::now();
    let seen = load(fleet.callers(), 12, started + Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join().expect("hog");
    }
    let mut changes = 0.0;
    for gateway in &fleet.gateways {
        changes += gateway
            .metric("tim_gateway_fleet_mode_changes_total")
            .await
            .unwrap_or(0.0);
    }
    let (correct, errors) = judge(&fleet.sim, &seen);
    eprintln!("loaded host: {correct} correct, {errors} errors, {changes} mode changes");
    // Each gateway entered fleet mode once at start-up.
    assert_eq!(
        changes, 3.0,
        "a loaded host flapped between fleet and fallback"
    );
    // Gone without a word (frozen: no refusal, no reset), the hardest to notice.
    fleet.redis.pause();
    let frozen_at = Instant::now();
    assert!(fleet.all_in_mode("fallback", Duration::from_secs(1)).await);
    eprintln!("frozen Redis noticed after {:?}", frozen_at.elapsed());
    fleet.redis.resume();
    fleet.shutdown().await;
}

/// What three loaded gateways did while the whole fleet's Redis was gone for longer than a
/// lease: (calls per second after the leases ran out, max in any second, correct, errors).
async fn outage_longer_than_a_lease(after_lease: AfterLease) -> (f64, usize, usize, usize) {
    let mut fleet = TestFleet::start(
        3,
        |sim| sim.requests_per_second = APP_LIMIT,
        |config| {
            config.limits.requests_per_second = APP_LIMIT.try_into().expect("non-zero");
            config.limits.max_queue_wait = Duration::from_secs(2);
            config.fleet.after_lease = after_lease;
        },
    )
    .await;
    let lease = fleet_config(&fleet.redis).fleet.lease;
    let started = Instant::now();
    let (killed_at, restarted_at) = (started + Duration::from_secs(1), started + lease * 2);
    let seen = {
        let load = load(fleet.callers(), 90, restarted_at + Duration::from_secs(2));
        let disturb = async {
            tokio::time::sleep_until(killed_at.into()).await;
            fleet.redis.kill();
            tokio::time::sleep_until(restarted_at.into()).await;
            fleet.redis.restart();
        };
        let (seen, ()) = tokio::join!(load, disturb);
        seen
    };
    let calls = upstream_gets(&fleet.sim);
    let (correct, errors) = judge(&fleet.sim, &seen);
    let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
    let over = calls.iter().filter(|c| c.error_code == OVER_LIMIT).count();
    // From one window after the last leases could have ended to the restart.
    let (from, to) = (killed_at + lease + Duration::from_secs(1), restarted_at);
    let after = calls.iter().filter(|c| c.at >= from && c.at < to).count();
    let rate = after as f64 / (to - from).as_secs_f64();
    eprintln!(
        "after_lease {after_lease:?}: {} calls, {rate:.1}/s once the leases ended, max {max} in \
         any second, {correct} correct, {errors} errors",
        calls.len()
    );
    assert!(
        max <= APP_LIMIT as usize,
        "{max} upstream calls in one second"
    );
    assert_eq!(over, 0, "the sim answered 60007");
    assert!(
        fleet.all_in_mode("fleet", Duration::from_secs(10)).await,
        "the fleet did not return to fleet mode after Redis came back"
    );
    fleet.shutdown().await;
    (rate, max, correct, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_fleet_outage_past_the_lease_stops_calls_by_default() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let (rate, _, correct, _) = outage_longer_than_a_lease(AfterLease::Stop).await;
    assert_eq!(rate, 0.0, "a gateway spent a share whose lease had ended");
    assert!(
        correct > 0,
        "callers were served before and after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_fleet_outage_past_the_lease_spends_the_last_shares_when_configured() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let (rate, max, _, _) = outage_longer_than_a_lease(AfterLease::SpendShare).await;
    // The last shares sum to at most the budget; at saturation, to nearly all of it.
    assert!(rate >= f64::from(APP_LIMIT) * 0.5, "only {rate:.1}/s spent");
    assert!(max <= APP_LIMIT as usize);
}
