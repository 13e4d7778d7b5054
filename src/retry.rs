//! Retries of failed upstream calls: which failures, how long to back off, and the budget that
//! keeps a failing upstream from seeing more than `1 + retry_budget_percent / 100` times the
//! calls it would have seen without retries, plus a floor of `retry_budget_min_per_second`
//! retries a second (Finagle's `minRetriesPerSec`): a quiet gateway, whose 10 % of a handful of
//! calls is less than one retry, still retries its rare failure; at scale the percentage rules.
//!
//! The batch worker's call tasks use it: a retryable failure ([`Error::is_retryable`]) is sent
//! again after exponential backoff with full jitter, through the limiter like any call, at
//! most `max_retries` times, only while the budget has room and the callers' deadline does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;

/// The sliding window the budget counts calls and retries in.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// The budget's bucket width: the window slides in these steps.
const BUCKET: Duration = Duration::from_secs(1);
/// The first retry's backoff ceiling; each later one doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// No backoff ceiling above this.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Retry policy and budget for one upstream API; cheap to clone.
#[derive(Clone)]
pub(crate) struct Retries(Arc<Inner>);

struct Inner {
    max_retries: u32,
    percent: u64,
    /// Retries the window allows whatever the calls: the floor per second times the window.
    floor: u64,
    /// (bucket start, first attempts, retries), oldest first.
    buckets: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Retries {
    /// At most `max_retries` per call, and retries at most `percent` % of calls over 10 s plus
    /// `min_per_second` a second.
    pub(crate) fn new(max_retries: u32, percent: u32, min_per_second: u32) -> Retries {
        Retries(Arc::new(Inner {
            max_retries,
            percent: u64::from(percent),
            floor: u64::from(min_per_second) * BUDGET_WINDOW.as_secs(),
            buckets: Mutex::new(VecDeque::new()),
        }))
    }

    /// Counts a call's first attempt (what the budget is a share of).
    pub(crate) fn record_call(&self, now: Instant) {
        self.bucket(now, |b| b.1 += 1);
    }

    /// How long to wait before retry number `attempt` (1-based) of a call that failed with
    /// `error`, or `None` when it must not be retried: not a retryable failure, out of
    /// attempts, out of budget, or past `deadline` even if the retry went well.
    pub(crate) fn next(
        &self,
        error: &Error,
        attempt: u32,
        now: Instant,
        call_takes: Duration,
        deadline: Instant,
    ) -> Option<Duration> {
        if !error.is_retryable() || attempt > self.0.max_retries {
            return None;
        }
        let backoff = full_jitter(attempt);
        if now + backoff + call_takes > deadline || !self.spend(now) {
            return None;
        }
        Some(backoff)
    }

    /// Takes one retry from the budget if it has room.
    fn spend(&self, now: Instant) -> bool {
        let mut buckets = self.0.buckets.lock();
        prune(&mut buckets, now);
        let (calls, retries) = buckets.iter().fold((0, 0), |(c, r), b| (c + b.1, r + b.2));
        if (retries + 1) * 100 > calls * self.0.percent + self.0.floor * 100 {
            return false;
        }
        drop(buckets);
        self.bucket(now, |b| b.2 += 1);
        true
    }

    fn bucket(&self, now: Instant, update: impl FnOnce(&mut (Instant, u64, u64))) {
        let mut buckets = self.0.buckets.lock();
        prune(&mut buckets, now);
        match buckets.back_mut() {
            Some(last) if now < last.0 + BUCKET => update(last),
            _ => {
                let mut fresh = (now, 0, 0);
                update(&mut fresh);
                buckets.push_back(fresh);
            }
        }
    }
}

fn prune(buckets: &mut VecDeque<(Instant, u64, u64)>, now: Instant) {
    while buckets.front().is_some_and(|b| b.0 + BUDGET_WINDOW <= now) {
        buckets.pop_front();
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base * 2^(attempt-1))]`.
fn full_jitter(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random::<u64>() % (micros + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage() -> Error {
        Error::UpstreamStatus(503)
    }

    #[test]
    fn retries_only_retryable_failures_within_attempts_and_deadline() {
        let r = Retries::new(2, 100, 0);
        let now = Instant::now();
        r.record_call(now);
        r.record_call(now);
        let far = now + Duration::from_secs(60);
        let call = Duration::from_millis(100);
        assert!(r.next(&outage(), 1, now, call, far).is_some());
        assert!(
            r.next(&outage(), 3, now, call, far).is_none(),
            "max_retries"
        );
        let bad_input = Error::InvalidField(Arc::from("x"));
        assert!(r.next(&bad_input, 1, now, call, far).is_none());
        assert!(
            r.next(&outage(), 1, now, call, now + Duration::from_millis(50))
                .is_none(),
            "a retry that cannot finish before the deadline is not sent"
        );
    }

    #[test]
    fn the_budget_caps_retries_at_a_share_of_calls_over_the_window() {
        let r = Retries::new(10, 10, 0);
        let now = Instant::now();
        for _ in 0..50 {
            r.record_call(now);
        }
        let far = now + Duration::from_secs(60);
        let granted = (0..20)
            .filter(|_| r.next(&outage(), 1, now, Duration::ZERO, far).is_some())
            .count();
        assert_eq!(granted, 5, "10 % of 50 calls");
        let later = now + BUDGET_WINDOW + BUCKET;
        assert!(
            r.next(&outage(), 1, later, Duration::ZERO, far + BUDGET_WINDOW)
                .is_none(),
            "calls that left the window no longer pay for retries"
        );
    }

    #[test]
    fn a_quiet_gateway_retries_its_rare_failure_and_a_busy_one_stays_within_the_percentage() {
        let far = |now: Instant| now + Duration::from_secs(60);
        // One call in the window: 10 % of it is no retry at all; the floor gives one.
        let quiet = Retries::new(2, 10, 1);
        let now = Instant::now();
        quiet.record_call(now);
        assert!(quiet
            .next(&outage(), 1, now, Duration::ZERO, far(now))
            .is_some());
        // 1,000 calls of a failing upstream in the window: 10 % plus the floor's 10, no more.
        let busy = Retries::new(2, 10, 1);
        for _ in 0..1_000 {
            busy.record_call(now);
        }
        let granted = (0..1_000)
            .filter(|_| {
                busy.next(&outage(), 1, now, Duration::ZERO, far(now))
                    .is_some()
            })
            .count();
        assert_eq!(
            granted, 110,
            "10 % of 1,000 calls and 1/s over the 10 s window"
        );
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..30 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_MAX);
            assert!(full_jitter(attempt) <= ceiling);
        }
    }
}
