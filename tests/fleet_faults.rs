//! The fleet keeps one budget when its parts fail: one gateway's link to Redis refused or
//! blackholed (through a proxy the test cuts) and healed after a long partition, Redis frozen
//! (SIGSTOP) and thawed, a gateway process SIGKILLed while it holds slots, and a Tencent that
//! allows less than the configured budget (fleet-wide pacing). Each case runs three loaded
//! gateways and judges what the simulated Tencent saw: no sliding second over the budget,
//! no 60007 (but where Tencent's limit is the test), every answer the sim's own or a
//! Tencent-style error.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use support::fleet::{fleet_config_at, process_member, RedisServer, TestFleet};
use support::load::{judge, load, AtTencent, Seen};
use support::proxy::TcpCut;
use support::{eventually, metric_sum, metric_value, Caller};
use tim_gateway::config::Config;
use tokio::time::sleep_until;

/// The sim's app limit, and every gateway's configured budget.
const APP_LIMIT: u32 = 30;
/// Callers on the fleet: enough to keep every gateway saturated.
const CALLERS: usize = 90;

/// One load at a time: two on a 2-core CI machine would measure the machine.
static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn budget(config: &mut Config) {
    config.limits.requests_per_second = APP_LIMIT.try_into().expect("non-zero");
    config.fleet.fallback_instances = 3.try_into().expect("non-zero");
    config.limits.max_queue_wait = Duration::from_secs(5);
}

/// The shipped lease.
fn lease() -> Duration {
    fleet_config_at("redis://127.0.0.1:1/0").fleet.lease
}

/// Loads `callers` until `ends` while `disturb` runs; what the callers saw and what it returned.
async fn under_load<T>(
    callers: Vec<Caller>,
    ends: Instant,
    disturb: impl Future<Output = T>,
) -> (Seen, T) {
    tokio::join!(load(callers, CALLERS, ends), disturb)
}

/// Judges a run at the sim: within the budget, no 60007, every answer right or an error.
fn assert_within_budget(what: &str, fleet: &TestFleet, seen: &Seen) -> AtTencent {
    let at = AtTencent::of(&fleet.sim);
    let (correct, errors) = judge(&fleet.sim, seen);
    eprintln!(
        "{what}: {} calls, max {} in any second, {} x 60007, {correct} correct, {errors} \
         errors, slowest caller {:?}",
        at.calls.len(),
        at.max,
        at.over,
        seen.slowest
    );
    assert!(
        at.max <= APP_LIMIT as usize,
        "{what}: {} upstream calls in one second",
        at.max
    );
    assert_eq!(at.over, 0, "{what}: the sim answered 60007");
    assert!(correct > 0, "{what}: no caller was answered");
    at
}

/// How long until `gateway` reports `mode` (polled every 20 ms, up to `within`).
async fn time_to_mode(gateway: &Caller, mode: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let sample = format!("tim_gateway_fleet_mode{{mode=\"{mode}\"}}");
    let reached = eventually(within, || async {
        gateway.metric(&sample).await == Some(1.0)
    });
    reached.await.then(|| started.elapsed())
}

/// portrait_get calls this gateway has sent upstream, whatever their outcome.
async fn calls_sent(gateway: &Caller) -> f64 {
    let (_, body) = gateway.send("GET", "/metrics", "").await;
    let prefix = "tim_gateway_upstream_requests_total{api=\"portrait_get\",";
    metric_sum(&String::from_utf8_lossy(&body), prefix)
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    Refused,
    Blackholed,
}

/// Gateway 0 reaches Redis through a proxy; 1.5 s into the load its link is cut, and healed
/// again 3 s after its lease ran out.
async fn one_link_cut_then_healed_after_a_long_partition(how: Cut) {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    let mut proxy = TcpCut::start(redis.addr()).await;
    let through_proxy = format!("redis://{}/0", proxy.addr());
    let sim = |sim: &mut tim_gateway::sim::SimConfig| sim.requests_per_second = APP_LIMIT;
    let fleet = TestFleet::start_on(redis, 3, sim, |i, config| {
        if i == 0 {
            config.fleet = fleet_config_at(&through_proxy).fleet;
        }
        budget(config);
    })
    .await;
    let lease = lease();
    let started = Instant::now();
    let cut_at = started + Duration::from_millis(1_500);
    let lease_over = cut_at + lease + Duration::from_millis(300);
    let healed_at = cut_at + lease + Duration::from_secs(3);
    let ends = healed_at + Duration::from_secs(3);
    let cut_off = Caller::clone(&fleet.gateways[0]);
    let (seen, (noticed, spent_past_lease, back)) = under_load(fleet.callers(), ends, async {
        sleep_until(cut_at.into()).await;
        match how {
            Cut::Refused => proxy.refuse(),
            Cut::Blackholed => proxy.blackhole(),
        }
        let noticed = time_to_mode(&cut_off, "fallback", Duration::from_secs(3)).await;
        sleep_until(lease_over.into()).await;
        let sent_at_lease_end = calls_sent(&cut_off).await;
        sleep_until(healed_at.into()).await;
        let spent_past_lease = calls_sent(&cut_off).await - sent_at_lease_end;
        proxy.heal();
        let back = time_to_mode(&cut_off, "fleet", Duration::from_secs(4)).await;
        (noticed, spent_past_lease, back)
    })
    .await;
    let what = format!("gateway 0's link {how:?}");
    let busiest = AtTencent::of(&fleet.sim).busiest_from();
    eprintln!(
        "{what}: the busiest second began {:?} after the cut",
        busiest.map(|b| b.saturating_duration_since(cut_at))
    );
    let at = assert_within_budget(&what, &fleet, &seen);
    let second = Duration::from_secs(1);
    let rates = [
        at.rate_between(started + second / 2, cut_at),
        at.rate_between(cut_at, cut_at + lease),
        at.rate_between(lease_over + second * 3 / 2, healed_at),
        at.rate_between(healed_at + second, ends),
    ];
    eprintln!(
        "{what}: calls/s before {:.1}, within its lease {:.1}, after it {:.1}, healed {:.1}; \
         fallback after {noticed:?}, {spent_past_lease} calls past its lease, back in fleet \
         mode {back:?} after healing",
        rates[0], rates[1], rates[2], rates[3]
    );
    let noticed = noticed.expect("the cut-off gateway fell back");
    assert!(noticed <= second, "the cut was noticed after {noticed:?}");
    assert_eq!(
        spent_past_lease, 0.0,
        "it spent a share whose lease had ended"
    );
    let full = f64::from(APP_LIMIT) * 0.8;
    assert!(
        rates[2] >= full,
        "its share did not return to the others: {rates:?}"
    );
    let back = back.expect("back in fleet mode once healed");
    assert!(
        back <= Duration::from_secs(2),
        "back in fleet mode after {back:?}"
    );
    assert!(
        rates[3] >= full,
        "the healed fleet is not at full budget: {rates:?}"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateways_link_refused_past_its_lease_never_pushes_the_fleet_over_budget() {
    one_link_cut_then_healed_after_a_long_partition(Cut::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateways_link_blackholed_past_its_lease_never_pushes_the_fleet_over_budget() {
    one_link_cut_then_healed_after_a_long_partition(Cut::Blackholed).await;
}

/// Redis SIGSTOPped 1.5 s into the load for `freeze`, then thawed.
async fn frozen_then_thawed(freeze: Duration) {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let sim = |sim: &mut tim_gateway::sim::SimConfig| sim.requests_per_second = APP_LIMIT;
    let fleet = TestFleet::start(3, sim, budget).await;
    let started = Instant::now();
    let frozen_at = started + Duration::from_millis(1_500);
    let thawed_at = frozen_at + freeze;
    let ends = thawed_at + Duration::from_secs(5);
    let (seen, back) = under_load(fleet.callers(), ends, async {
        sleep_until(frozen_at.into()).await;
        fleet.redis.pause();
        sleep_until(thawed_at.into()).await;
        fleet.redis.resume();
        let back = Instant::now();
        let all_back = fleet.all_in_mode("fleet", Duration::from_secs(4)).await;
        all_back.then(|| back.elapsed())
    })
    .await;
    let what = format!("Redis frozen for {freeze:?}");
    let at = assert_within_budget(&what, &fleet, &seen);
    // Pool holds whose release could not be sent while frozen end by their own expiry
    // (grant + upstream timeout + 2 s), so full speed may take that long to come back.
    let recovered = at.rate_between(thawed_at + Duration::from_secs(3), ends);
    eprintln!(
        "{what}: calls/s frozen {:.1}, from 3 s after the thaw {recovered:.1}; every gateway \
         in fleet mode {back:?} after it",
        at.rate_between(frozen_at, thawed_at)
    );
    let back = back.expect("every gateway back in fleet mode once Redis answers");
    assert!(back <= Duration::from_secs(2), "back after {back:?}");
    assert!(
        recovered >= f64::from(APP_LIMIT) * 0.8,
        "the thawed fleet is at {recovered:.1}/s"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_within_a_lease_then_thawed_keeps_the_budget() {
    frozen_then_thawed(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_past_the_leases_then_thawed_keeps_the_budget() {
    frozen_then_thawed(lease() + Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_sigkilled_while_holding_slots_leaves_the_budget_safe_and_its_share_returns() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let sim = |sim: &mut tim_gateway::sim::SimConfig| sim.requests_per_second = APP_LIMIT;
    let fleet = TestFleet::start(2, sim, budget).await;
    let limit = APP_LIMIT.to_string();
    let env = [
        ("TIM_GATEWAY__LIMITS__REQUESTS_PER_SECOND", limit.as_str()),
        ("TIM_GATEWAY__LIMITS__MAX_QUEUE_WAIT_MS", "5000"),
        ("TIM_GATEWAY__FLEET__FALLBACK_INSTANCES", "3"),
    ];
    let mut doomed = process_member(&fleet.sim, &fleet.redis, &env).await;
    let mut callers = fleet.callers();
    callers.push(Caller::clone(&doomed));
    let lease = lease();
    let started = Instant::now();
    let killed_at = started + Duration::from_secs(2);
    let ends = killed_at + lease + Duration::from_secs(4);
    let (seen, ()) = under_load(callers, ends, async {
        sleep_until(killed_at.into()).await;
        doomed.kill();
    })
    .await;
    let at = assert_within_budget("a gateway SIGKILLed", &fleet, &seen);
    let mut expired = 0.0;
    for gateway in &fleet.gateways {
        expired += gateway
            .metric("tim_gateway_fleet_peers_expired_total")
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(
        expired, 1.0,
        "the dead gateway's expiry is counted once fleet-wide"
    );
    let second = Duration::from_secs(1);
    let (before, within, after) = (
        at.rate_between(started + second / 2, killed_at),
        at.rate_between(killed_at + second, killed_at + lease),
        at.rate_between(killed_at + lease + second * 2, ends),
    );
    eprintln!(
        "a gateway SIGKILLed: calls/s before {before:.1}, within its lease {within:.1}, after \
         it {after:.1}; {} requests to the killed gateway unanswered",
        seen.unanswered.len()
    );
    assert!(
        seen.unanswered.iter().all(|gateway| *gateway == 2),
        "a surviving gateway did not answer"
    );
    // The survivors keep their own shares at once, and get the dead one's when its lease ends.
    let own = f64::from(APP_LIMIT) * 2.0 / 3.0 * 0.8;
    assert!(
        within >= own,
        "survivors at {within:.1}/s within the dead one's lease"
    );
    // Without the dead one's share the survivors could send at most two thirds of the budget.
    assert!(
        after >= f64::from(APP_LIMIT) * 0.72,
        "survivors at {after:.1}/s after its lease"
    );
    fleet.shutdown().await;
}

/// Every gateway's fleet pace of portrait_get.
async fn paces(fleet: &TestFleet) -> Vec<f64> {
    let mut paces = Vec::new();
    for gateway in &fleet.gateways {
        let (_, body) = gateway.send("GET", "/metrics", "").await;
        let text = String::from_utf8_lossy(&body);
        let sample = "tim_gateway_upstream_pace_requests_per_second{api=\"portrait_get\"}";
        paces.push(metric_value(&text, sample).unwrap_or(f64::NAN));
    }
    paces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60007_seen_by_one_gateway_slows_the_whole_fleet_and_the_recovery_is_shared() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    // Tencent allows half what the gateways were told.
    const TENCENT_ALLOWS: u32 = APP_LIMIT / 2;
    let sim = |sim: &mut tim_gateway::sim::SimConfig| sim.requests_per_second = TENCENT_ALLOWS;
    let fleet = TestFleet::start(3, sim, budget).await;
    let ends = Instant::now() + Duration::from_secs(6);
    let (seen, slowed) = under_load(fleet.callers(), ends, async {
        let first_over = eventually(Duration::from_secs(5), || async {
            AtTencent::of(&fleet.sim).over > 0
        });
        assert!(first_over.await, "the sim never answered 60007");
        let seen_at = Instant::now();
        let all_slowed = eventually(Duration::from_secs(1), || async {
            paces(&fleet)
                .await
                .iter()
                .all(|pace| *pace < f64::from(APP_LIMIT))
        });
        let slowed = all_slowed.await.then(|| seen_at.elapsed());
        (slowed, paces(&fleet).await)
    })
    .await;
    let (correct, errors) = judge(&fleet.sim, &seen);
    let at = AtTencent::of(&fleet.sim);
    let recovered_in = {
        let load_ended = Instant::now();
        let recovered = eventually(Duration::from_secs(20), || async {
            paces(&fleet)
                .await
                .iter()
                .all(|pace| *pace >= f64::from(APP_LIMIT))
        });
        recovered.await.then(|| load_ended.elapsed())
    };
    let steady = at.rate_between(ends - Duration::from_secs(3), ends);
    eprintln!(
        "Tencent allows {TENCENT_ALLOWS}/s, the fleet was told {APP_LIMIT}/s: every gateway \
         slowed {:?} after the first 60007 (paces {:?}), {} x 60007 in {} calls, {steady:.1} \
         calls/s over the last 3 s, {correct} correct, {errors} errors; all paces back to \
         {APP_LIMIT}/s {recovered_in:?} after the load",
        slowed.0,
        slowed.1,
        at.over,
        at.calls.len()
    );
    assert!(
        slowed.0.is_some(),
        "a gateway kept its pace after a peer's 60007: {:?}",
        slowed.1
    );
    assert!(correct > 0);
    assert!(
        steady <= f64::from(TENCENT_ALLOWS) * 1.5,
        "the fleet went on at {steady:.1}/s against Tencent's {TENCENT_ALLOWS}/s"
    );
    assert!(
        recovered_in.is_some(),
        "the fleet's pace did not recover once the 60007s stopped"
    );
    fleet.shutdown().await;
}
