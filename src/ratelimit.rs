//! UpstreamLimiter: keeps calls to one Tencent API under its per-second limit.
//!
//! A governor GCRA limiter with a burst of one spaces permits evenly: no initial burst of a
//! whole second's quota, and never more than `requests_per_second` permits in any sliding
//! one-second window, whichever way Tencent counts. Permits are spaced
//! [`PACING_MARGIN`] wider than `1 s / requests_per_second`, so the jitter between our permit
//! and the call's arrival at Tencent cannot squeeze an extra call into a window. Waiters are
//! served first come, first served (a fair tokio mutex in front of governor), and a waiter whose
//! deadline would pass gets [`Error::QueueWaitExceeded`] instead of a permit.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// Permits are spaced this much wider than `1 s / rate` (2 %: 196 calls/s at a 200/s limit).
pub const PACING_MARGIN: f64 = 1.02;

/// A FIFO, deadline-bounded rate limiter for one upstream API; cheap to clone.
#[derive(Clone)]
pub struct UpstreamLimiter(Arc<Inner>);

struct Inner {
    limiter: DefaultDirectRateLimiter,
    /// Makes waiting first come, first served: governor alone wakes waiters in any order.
    queue: tokio::sync::Mutex<()>,
    interval: Duration,
}

impl UpstreamLimiter {
    /// A limiter allowing at most `requests_per_second` permits in any one-second window.
    pub fn new(requests_per_second: NonZeroU32) -> UpstreamLimiter {
        let interval = Self::interval_for(requests_per_second);
        let quota = Quota::with_period(interval)
            .expect("interval is non-zero")
            .allow_burst(NonZeroU32::MIN);
        UpstreamLimiter(Arc::new(Inner {
            limiter: RateLimiter::direct(quota),
            queue: tokio::sync::Mutex::new(()),
            interval,
        }))
    }

    /// The spacing between two permits.
    pub fn interval_for(requests_per_second: NonZeroU32) -> Duration {
        Duration::from_secs_f64(PACING_MARGIN / f64::from(requests_per_second.get()))
    }

    /// The spacing between two permits of this limiter.
    pub fn interval(&self) -> Duration {
        self.0.interval
    }

    /// Waits for a permit, first come first served, giving up at `deadline`. Returns how long
    /// the caller waited.
    pub async fn acquire(&self, deadline: Instant, max_wait: Duration) -> Result<Duration, Error> {
        let started = Instant::now();
        let wait = async {
            let _turn = self.0.queue.lock().await;
            self.0.limiter.until_ready().await;
        };
        let remaining = deadline.saturating_duration_since(started);
        match tokio::time::timeout(remaining, wait).await {
            Ok(()) => Ok(started.elapsed()),
            Err(_) => Err(Error::QueueWaitExceeded(max_wait)),
        }
    }

    /// Waits for a permit with no deadline and no queue: for a single consumer (the batch
    /// worker), which keeps its own first-come-first-served order.
    pub async fn until_ready(&self) {
        self.0.limiter.until_ready().await;
    }

    /// Takes a permit if one is free right now.
    pub fn try_acquire(&self) -> bool {
        self.0.limiter.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::{Clock, FakeRelativeClock};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    /// Counts permits granted in every sliding one-second window while a fake clock advances
    /// in small steps and a greedy caller takes every permit it can.
    fn max_permits_in_any_window(rps: u32, seconds: u64) -> usize {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(UpstreamLimiter::interval_for(nz(rps)))
            .expect("non-zero")
            .allow_burst(NonZeroU32::MIN);
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        let step = Duration::from_micros(100);
        let mut granted: Vec<Duration> = Vec::new();
        let elapsed = || Duration::from_nanos(clock.now().as_u64());
        while elapsed() < Duration::from_secs(seconds) {
            if limiter.check().is_ok() {
                granted.push(elapsed());
            }
            clock.advance(step);
        }
        let mut max = 0;
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| **u <= *t + Duration::from_secs(1))
                .count();
            max = max.max(in_window);
        }
        max
    }

    #[test]
    fn never_more_than_the_limit_in_any_closed_one_second_window() {
        for rps in [5, 50, 200] {
            let max = max_permits_in_any_window(rps, 3);
            assert!(
                max <= rps as usize,
                "rps {rps}: {max} permits in one window"
            );
            assert!(
                max as f64 >= f64::from(rps) * 0.95,
                "rps {rps}: only {max} permits; pacing too slow"
            );
        }
    }

    #[test]
    fn no_initial_burst() {
        let limiter = UpstreamLimiter::new(nz(200));
        assert!(limiter.try_acquire());
        assert!(
            !limiter.try_acquire(),
            "a second permit right away would be a burst"
        );
    }

    #[tokio::test]
    async fn waiter_past_its_deadline_gets_the_frequency_limit_error() {
        let limiter = UpstreamLimiter::new(nz(1));
        assert!(limiter.try_acquire());
        let max_wait = Duration::from_millis(50);
        let err = limiter
            .acquire(Instant::now() + max_wait, max_wait)
            .await
            .expect_err("no permit within 50 ms");
        assert_eq!(err.code(), 60007);
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let limiter = UpstreamLimiter::new(nz(100));
        assert!(limiter.try_acquire());
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (limiter, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                limiter
                    .acquire(deadline, Duration::from_secs(5))
                    .await
                    .expect("permit");
                order.lock().push(i);
            }));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }
}
