//! Coalescing: 400 concurrent callers over 1,000 cold, heavily overlapping accounts are each
//! answered exactly as Tencent answers them alone, in about ceil(distinct / 100) full upstream
//! calls that never fetch an (account, tag) twice; a second wave is served from the cache.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::*;
use tim_gateway::sim::SimCall;

const CALLERS: usize = 400;
const POOL: u64 = 1_000;
const TAGS: [&str; 4] = [NICK, GENDER, BIRTHDAY, CUSTOM];
const SEED: u64 = 0x5EED_C0A1_E5CE;
/// Added before each sim answer, so upstream calls overlap in flight.
const SIM_LATENCY: Duration = Duration::from_millis(50);
/// Long enough that every caller is admitted before a partial batch may leave, however slowly
/// this machine delivers 400 connections: only full batches go out early.
const BATCH_WINDOW: Duration = Duration::from_secs(1);

/// One caller's body per caller: 1–20 distinct accounts of user0..user999 and 1–4 distinct
/// tags of [`TAGS`], both in random order.
fn caller_bodies(seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pool: Vec<String> = (0..POOL).map(|n| format!("user{n}")).collect();
    (0..CALLERS)
        .map(|_| {
            let account_count = rng.random_range(1..=20);
            let accounts: Vec<&str> = pool
                .choose_multiple(&mut rng, account_count)
                .map(String::as_str)
                .collect();
            let mut tags = TAGS.to_vec();
            tags.shuffle(&mut rng);
            tags.truncate(rng.random_range(1..=TAGS.len()));
            get_body(&accounts, &tags)
        })
        .collect()
}

/// Sends every body from its own task at once; returns the answers in body order. The query
/// is signed once, so the callers' own signing does not spread their arrivals out.
async fn send_all(gw: &Arc<TestGateway>, bodies: &[Value]) -> Vec<Value> {
    let path = Arc::new(format!("{GET}?{}", auth_query()));
    let tasks: Vec<_> = bodies
        .iter()
        .map(|body| {
            let (gw, path, body) = (Arc::clone(gw), Arc::clone(&path), body.to_string());
            tokio::spawn(async move {
                let (status, answer) = gw.send("POST", &path, body).await;
                assert_eq!(status, 200);
                serde_json::from_slice::<Value>(&answer).expect("JSON answer")
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("caller task"));
    }
    answers
}

fn assert_each_equals_alone(gw: &TestGateway, bodies: &[Value], answers: &[Value], wave: &str) {
    for (i, (body, answer)) in bodies.iter().zip(answers).enumerate() {
        assert_eq!(
            *answer,
            gw.alone(body),
            "{wave}: caller {i} asked {body} and got a different answer than Tencent alone"
        );
    }
}

fn distinct_accounts(bodies: &[Value]) -> BTreeSet<String> {
    bodies
        .iter()
        .flat_map(|b| b["To_Account"].as_array().expect("accounts").iter())
        .map(|a| a.as_str().expect("account").to_owned())
        .collect()
}

fn is_failing(account: &str) -> bool {
    account
        .strip_prefix("user")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n % 97 == 13)
}

/// The (account, tag) pairs fetched by more than one call, each with the indexes of those calls.
/// Accounts the sim fails per account (n % 97 == 13): never cached, so a later caller's
/// request must fetch them again; they are left out of the "fetched twice" counts.
fn fails_per_account(account: &str) -> bool {
    account
        .strip_prefix("user")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n % 97 == 13)
}

fn pairs_fetched_twice(calls: &[SimCall]) -> Vec<((String, String), Vec<usize>)> {
    let mut by_pair: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, call) in calls.iter().enumerate() {
        for account in call.accounts.iter().filter(|a| !fails_per_account(a)) {
            for tag in &call.tags {
                by_pair
                    .entry((account.clone(), tag.clone()))
                    .or_default()
                    .push(i);
            }
        }
    }
    let mut twice: Vec<_> = by_pair.into_iter().filter(|(_, c)| c.len() > 1).collect();
    twice.sort();
    twice
}

/// Of `twice`, the pairs whose second fetch was sent before the first one's answer could have
/// arrived (less than the sim latency later): fetched twice while in flight.
fn fetched_while_in_flight(calls: &[SimCall], twice: &[((String, String), Vec<usize>)]) -> usize {
    twice
        .iter()
        .filter(|(_, ids)| {
            ids.windows(2)
                .any(|w| calls[w[1]].at.duration_since(calls[w[0]].at) < SIM_LATENCY)
        })
        .count()
}

fn describe(calls: &[SimCall]) -> String {
    let start = calls.first().map(|c| c.at);
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ms = start.map_or(0, |s| c.at.duration_since(s).as_millis());
            format!(
                "  #{i} +{ms} ms: {} accounts, tags {:?}, code {}\n",
                c.accounts.len(),
                c.tags,
                c.error_code
            )
        })
        .collect()
}

/// A gateway in front of a sim answering after [`SIM_LATENCY`], with [`BATCH_WINDOW`].
async fn start_gateway() -> Arc<TestGateway> {
    Arc::new(
        TestGateway::builder()
            .config(|c| c.limits.batch_window = BATCH_WINDOW)
            .sim(|s| s.latency = SIM_LATENCY)
            .start()
            .await,
    )
}

async fn stop(gw: Arc<TestGateway>) {
    let gw = Arc::try_unwrap(gw).unwrap_or_else(|_| panic!("callers still hold the gateway"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_callers_each_get_tencents_answer_and_a_second_wave_hits_the_cache() {
    let gw = start_gateway().await;
    let bodies = caller_bodies(SEED);

    let answers = send_all(&gw, &bodies).await;
    assert_each_equals_alone(&gw, &bodies, &answers, "wave 1");
    let wave1 = gw.upstream_gets();
    for (i, call) in wave1.iter().enumerate() {
        assert!(
            call.accounts.len() <= 100,
            "call #{i} named {} accounts",
            call.accounts.len()
        );
        assert_eq!(call.error_code, 0, "call #{i} failed upstream");
    }

    // The same callers again: only accounts that fail per account (never cached) may reach
    // the upstream.
    let answers = send_all(&gw, &bodies).await;
    assert_each_equals_alone(&gw, &bodies, &answers, "wave 2");
    let calls = gw.upstream_gets();
    let wave2 = &calls[wave1.len()..];
    println!(
        "wave 1: {} calls; wave 2: {} calls\n{}",
        wave1.len(),
        wave2.len(),
        describe(wave2)
    );
    for call in wave2 {
        let cached: Vec<&String> = call.accounts.iter().filter(|a| !is_failing(a)).collect();
        assert!(
            cached.is_empty(),
            "wave 2 fetched accounts wave 1 had cached: {cached:?}"
        );
    }

    let coalesced = gw
        .metric("tim_gateway_coalesced_keys_total")
        .await
        .expect("coalesced_keys_total exported");
    let observed = gw
        .metric("tim_gateway_batch_accounts_count")
        .await
        .expect("batch_accounts histogram exported");
    let observed_sum = gw
        .metric("tim_gateway_batch_accounts_sum")
        .await
        .expect("batch_accounts histogram exported");
    let accounts_sent: usize = calls.iter().map(|c| c.accounts.len()).sum();
    println!(
        "coalesced keys {coalesced}; batch_accounts count {observed} sum {observed_sum}; \
         sim saw {} calls naming {accounts_sent} accounts",
        calls.len()
    );
    assert!(
        coalesced > 0.0,
        "no (account, tag) joined a fetch in flight"
    );
    assert_eq!(
        observed as usize,
        calls.len(),
        "one observation per upstream call"
    );
    assert_eq!(
        observed_sum as usize, accounts_sent,
        "each observation is the call's account count"
    );
    stop(gw).await;
}

/// Runs the cold burst and returns the sim's call log, after checking every answer.
async fn cold_burst(gw: &Arc<TestGateway>) -> (BTreeSet<String>, Vec<SimCall>) {
    let bodies = caller_bodies(SEED);
    let answers = send_all(gw, &bodies).await;
    assert_each_equals_alone(gw, &bodies, &answers, "cold burst");
    (distinct_accounts(&bodies), gw.upstream_gets())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_concurrent_misses_take_about_ceil_distinct_over_100_calls_none_twice_in_flight(
) {
    let gw = start_gateway().await;
    let (distinct, calls) = cold_burst(&gw).await;
    let budget = distinct.len().div_ceil(100) * 3 / 2 + 2;
    let twice = pairs_fetched_twice(&calls);
    let in_flight = fetched_while_in_flight(&calls, &twice);
    let slots: usize = calls.iter().map(|c| c.accounts.len()).sum();
    println!(
        "{} distinct accounts: {} upstream calls (budget {budget}) naming {slots} accounts; \
         {} (account, tag) pairs fetched more than once, {in_flight} of them while the first \
         fetch was in flight",
        distinct.len(),
        calls.len(),
        twice.len()
    );
    assert!(
        calls.iter().all(|c| c.accounts.len() <= 100),
        "a call named more than 100 accounts\n{}",
        describe(&calls)
    );
    assert!(
        calls.len() <= budget,
        "{} upstream calls naming {slots} accounts for {} distinct accounts; at most {budget} \
         expected\n{}",
        calls.len(),
        distinct.len(),
        describe(&calls)
    );
    assert_eq!(
        in_flight,
        0,
        "(account, tag) pairs were fetched again while a call fetching them was in flight\n{}",
        describe(&calls)
    );
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_fetches_each_account_tag_pair_from_upstream_only_once() {
    let gw = start_gateway().await;
    let (_, calls) = cold_burst(&gw).await;
    let twice = pairs_fetched_twice(&calls);
    let in_flight = fetched_while_in_flight(&calls, &twice);
    let accounts: BTreeSet<&str> = twice.iter().map(|((a, _), _)| a.as_str()).collect();
    println!(
        "{} calls; {} (account, tag) pairs of {} accounts fetched more than once, {in_flight} \
         while the first fetch was in flight",
        calls.len(),
        twice.len(),
        accounts.len()
    );
    assert!(
        twice.is_empty(),
        "{} (account, tag) pairs of {} accounts were fetched by more than one call \
         ({in_flight} while the first fetch was in flight), e.g. {:?}\n{}",
        twice.len(),
        accounts.len(),
        &twice[..twice.len().min(3)],
        describe(&calls)
    );
    stop(gw).await;
}
