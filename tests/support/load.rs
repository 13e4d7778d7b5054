//! Cold closed-loop load on a fleet of gateways, and what the simulated Tencent and the
//! callers saw of it: every answer judged against the sim alone, the most upstream calls in
//! any sliding second, the 60007s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tim_gateway::sim::{Api, Sim, SimCall};

use super::fleet::{busiest_second, max_in_any_second};
use super::{get_body, Caller, GENDER, NICK};

/// Tencent's "over the limit" answer.
pub const OVER_LIMIT: i64 = 60007;

/// Cold accounts per request: enough that every gateway always has full batches queued, so
/// the budget, not the callers, sets the pace.
pub const COLD_PER_REQUEST: usize = 10;

/// What the callers saw: (gateway, request, answer), the longest wait, and the gateways that
/// did not answer a request at all (a killed one).
#[derive(Default)]
pub struct Seen {
    pub exchanges: Vec<(usize, Value, Value)>,
    pub slowest: Duration,
    pub unanswered: Vec<usize>,
}

/// `callers` callers spread over the gateways, each asking for new cold accounts (plus a hot
/// one) until `until`. A caller that waits 10 s fails the test; a gateway that does not answer
/// is noted and its caller backs off 50 ms.
pub async fn load(gateways: Vec<Caller>, callers: usize, until: Instant) -> Seen {
    let next = Arc::new(AtomicUsize::new(1_000));
    let mut tasks = Vec::new();
    for c in 0..callers {
        let gateway = c % gateways.len();
        let caller = gateways[gateway].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while Instant::now() < until {
                let body = cold_body(next.fetch_add(COLD_PER_REQUEST, Ordering::Relaxed));
                let started = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(10), caller.try_get(&body))
                    .await
                    .expect("no caller waits 10 s");
                seen.slowest = seen.slowest.max(started.elapsed());
                match answer {
                    Some(answer) => seen.exchanges.push((gateway, body, answer)),
                    None => {
                        seen.unanswered.push(gateway);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for task in tasks {
        let seen = task.await.expect("caller task");
        all.exchanges.extend(seen.exchanges);
        all.unanswered.extend(seen.unanswered);
        all.slowest = all.slowest.max(seen.slowest);
    }
    all
}

/// `COLD_PER_REQUEST` never-asked accounts from `first` on, and one hot account.
fn cold_body(first: usize) -> Value {
    let mut accounts: Vec<String> = (first..first + COLD_PER_REQUEST)
        .map(|n| format!("user{n}"))
        .collect();
    accounts.push("user7".to_owned());
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    get_body(&accounts, &[NICK, GENDER])
}

/// (answered as the sim alone would, answered with an error); panics on any other answer.
pub fn judge(sim: &Sim, seen: &Seen) -> (usize, usize) {
    let (mut correct, mut errors) = (0, 0);
    for (_, body, answer) in &seen.exchanges {
        let alone: Value =
            serde_json::from_slice(&sim.answer_portrait_get(body.to_string().as_bytes()))
                .expect("sim answers JSON");
        if *answer == alone {
            correct += 1;
        } else if answer["ActionStatus"] == "FAIL" && answer["ErrorCode"].as_i64() != Some(0) {
            errors += 1;
        } else {
            panic!("wrong answer to {body}: {answer}\nthe sim alone: {alone}");
        }
    }
    (correct, errors)
}

/// The portrait_get calls the sim took.
pub fn upstream_gets(sim: &Sim) -> Vec<SimCall> {
    let calls = sim.calls().into_iter();
    calls.filter(|c| c.api == Api::PortraitGet).collect()
}

/// What the sim saw of a run.
pub struct AtTencent {
    pub calls: Vec<SimCall>,
    /// The most calls in any sliding second.
    pub max: usize,
    /// Calls answered 60007.
    pub over: usize,
}

impl AtTencent {
    pub fn of(sim: &Sim) -> AtTencent {
        let calls = upstream_gets(sim);
        let max = max_in_any_second(&calls.iter().map(|c| c.at).collect::<Vec<_>>());
        let over = calls.iter().filter(|c| c.error_code == OVER_LIMIT).count();
        AtTencent { calls, max, over }
    }

    /// When the busiest sliding second began.
    pub fn busiest_from(&self) -> Option<Instant> {
        let sent: Vec<Instant> = self.calls.iter().map(|c| c.at).collect();
        busiest_second(&sent).map(|(from, _)| from)
    }

    /// Calls per second sent in `[from, to)`.
    pub fn rate_between(&self, from: Instant, to: Instant) -> f64 {
        let sent = self.calls.iter().filter(|c| c.at >= from && c.at < to);
        sent.count() as f64 / (to - from).as_secs_f64()
    }
}
