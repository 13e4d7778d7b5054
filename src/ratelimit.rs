//! UpstreamLimiter: keeps calls to one Tencent API under its per-second limit, counted the way
//! Tencent counts them: by arrival, in any sliding one-second window.
//!
//! Two mechanisms, both needed:
//!
//! - **Spacing.** A governor GCRA limiter with a burst of one spaces permits `1 s / rate`
//!   apart: no initial burst of a whole second's quota, calls spread evenly.
//! - **Window slots.** Spacing alone cannot bound arrivals: a call delayed after its permit
//!   (a new TCP/TLS connection, scheduling) can land next to the following one. So each call
//!   also holds one of `rate` slots from before it is sent until one second after its answer
//!   (or failure). A call's arrival lies between those two instants, so any one-second window
//!   of arrivals meets only calls whose slots were all held at the window's end: at most
//!   `rate` of them, whatever the jitter.
//!
//! Waiters are served first come, first served (a fair tokio mutex in front of both), and a
//! waiter whose deadline passes gets [`Error::QueueWaitExceeded`] instead of a permit.
//!
//! That is the local engine. In a fleet the same reasoning runs in Redis for every gateway of
//! the app, behind the [`SharedBudget`] seam defined here and implemented by the fleet;
//! callers of [`UpstreamLimiter`] do not know which engine runs.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::apis::WINDOW;
use crate::error::Error;

mod gauges;
mod pace;
pub(crate) use gauges::LimiterGauges;
use pace::Pace;

/// A FIFO, deadline-bounded rate limiter for one upstream API; cheap to clone.
#[derive(Clone)]
pub struct UpstreamLimiter(Arc<Inner>);

struct Inner {
    engine: Engine,
    /// The configured calls per second (a reload may change it).
    rate: AtomicU32,
    /// This gateway's own ceiling, lowered while Tencent answers 60007.
    pace: Pace,
    /// Makes waiting first come, first served across every step of the engine.
    queue: tokio::sync::Mutex<()>,
}

/// Who keeps the count: this gateway alone, or a budget shared with other gateways.
enum Engine {
    Local(LocalWindow),
    Shared(Arc<dyn SharedBudget>),
}

/// An upstream budget kept outside this process and shared by several gateways (the fleet's,
/// in Redis). It keeps the same promise as the local engine: at most its limit of call
/// arrivals in any sliding [`WINDOW`], across every gateway that shares it.
pub trait SharedBudget: Send + Sync + 'static {
    /// Waits for the right to send one call, with no deadline (the caller keeps its own).
    /// Dropping the future before it resolves takes nothing that does not end by itself.
    fn until_ready(&self) -> BoxFuture<'_, SharedPermit>;

    /// Live holds of this gateway against its own local budget's size (metrics and tests).
    fn local_holds(&self) -> (usize, usize);

    /// Tencent answered 60007: lower the pace of every gateway sharing the budget.
    fn slow_down(&self);

    /// Shows the shared pace (calls per second) in `gauge`.
    fn show_pace_in(&self, gauge: prometheus::Gauge);

    /// A reload changed this gateway's configured limit for the budget (every gateway of the
    /// fleet should be given the same; each asks Redis with its own).
    fn set_limit(&self, requests_per_second: NonZeroU32);
}

/// A shared budget's grant for one call; dropping it ends the call (its hold ends one window
/// later).
pub(crate) type SharedPermit = Box<dyn Send + Sync>;

/// Makes the shared budget of each upstream API (one per API, named by its label).
pub(crate) trait BudgetSource: Send + Sync + 'static {
    /// The budget allowing `requests_per_second` calls of `api` across every gateway.
    fn budget(&self, api: &str, requests_per_second: NonZeroU32) -> Arc<dyn SharedBudget>;
}

/// The standalone engine: spacing plus window slots in this process.
struct LocalWindow {
    /// Replaced whole when a reload changes the rate.
    spacing: parking_lot::RwLock<Arc<DefaultDirectRateLimiter>>,
    slots: Arc<Semaphore>,
    /// The slots there are (in use or free): the rate.
    rate: AtomicU32,
}

impl LocalWindow {
    fn new(requests_per_second: NonZeroU32) -> LocalWindow {
        let slots = usize::try_from(requests_per_second.get()).unwrap_or(usize::MAX);
        LocalWindow {
            spacing: parking_lot::RwLock::new(Arc::new(spacing(requests_per_second))),
            slots: Arc::new(Semaphore::new(slots)),
            rate: AtomicU32::new(requests_per_second.get()),
        }
    }

    /// A new rate: new spacing at once; slots added at once, or taken out as calls give
    /// theirs back (the removal waits first in line, so no call starts on a slot that is going).
    fn resize(&self, requests_per_second: NonZeroU32) {
        let new = requests_per_second.get();
        let old = self.rate.swap(new, Ordering::AcqRel);
        *self.spacing.write() = Arc::new(spacing(requests_per_second));
        if new > old {
            self.slots
                .add_permits(usize::try_from(new - old).unwrap_or(usize::MAX));
        } else if old > new {
            let (slots, gone) = (self.slots.clone(), old - new);
            tokio::spawn(async move {
                if let Ok(taken) = slots.acquire_many_owned(gone).await {
                    taken.forget();
                }
            });
        }
    }
}

/// Permits `1 s / rate` apart, with a burst of one.
fn spacing(requests_per_second: NonZeroU32) -> DefaultDirectRateLimiter {
    let quota = Quota::with_period(UpstreamLimiter::interval_for(requests_per_second))
        .expect("interval is non-zero")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// The right to send one upstream call. Drop it when the call has ended (answered, failed or
/// timed out): its window slot is given back one second later.
#[must_use = "dropping the permit ends the call's hold on its window slot"]
pub struct CallPermit {
    slot: Option<OwnedSemaphorePermit>,
    /// A shared budget's hold, ended by its owner when dropped.
    _shared: Option<SharedPermit>,
}

impl UpstreamLimiter {
    /// A limiter allowing at most `requests_per_second` call arrivals in any one-second window.
    pub fn new(requests_per_second: NonZeroU32) -> UpstreamLimiter {
        let engine = Engine::Local(LocalWindow::new(requests_per_second));
        Self::with_engine(engine, requests_per_second)
    }

    /// A reload changed the configured rate: spacing, window slots and pace follow at once
    /// (slots in use stay held until their window ends); in a fleet, the shared budget's limit.
    pub fn set_rate(&self, requests_per_second: NonZeroU32) {
        self.0
            .rate
            .store(requests_per_second.get(), Ordering::Release);
        self.0
            .pace
            .set_limit(requests_per_second.get(), Instant::now());
        match &self.0.engine {
            Engine::Local(local) => local.resize(requests_per_second),
            Engine::Shared(budget) => budget.set_limit(requests_per_second),
        }
    }

    /// The configured calls per second.
    pub fn rate(&self) -> u32 {
        self.0.rate.load(Ordering::Acquire)
    }

    /// A limiter whose count is kept by a shared budget (the fleet's).
    pub fn shared(
        budget: Arc<dyn SharedBudget>,
        requests_per_second: NonZeroU32,
    ) -> UpstreamLimiter {
        Self::with_engine(Engine::Shared(budget), requests_per_second)
    }

    fn with_engine(engine: Engine, requests_per_second: NonZeroU32) -> UpstreamLimiter {
        UpstreamLimiter(Arc::new(Inner {
            engine,
            rate: AtomicU32::new(requests_per_second.get()),
            pace: Pace::new(requests_per_second.get()),
            queue: tokio::sync::Mutex::new(()),
        }))
    }

    /// Tencent answered 60007: someone else spends this app's budget too. Lowers this
    /// gateway's own pace for a while (see `pace.rs`).
    pub fn slow_down(&self) {
        match &self.0.engine {
            Engine::Local(_) => self.0.pace.slow_down(Instant::now()),
            Engine::Shared(budget) => budget.slow_down(),
        }
    }

    /// Shows the current pace (calls per second) in `gauge`: this gateway's, or the shared
    /// budget's.
    pub fn show_pace_in(&self, gauge: prometheus::Gauge) {
        match &self.0.engine {
            Engine::Local(_) => self.0.pace.show_in(gauge),
            Engine::Shared(budget) => budget.show_pace_in(gauge),
        }
    }

    /// The spacing between two permits at `requests_per_second`.
    pub fn interval_for(requests_per_second: NonZeroU32) -> Duration {
        WINDOW / requests_per_second.get()
    }

    /// Waits for a permit, first come first served, giving up at `deadline` with
    /// [`Error::QueueWaitExceeded`] (which names `max_wait`). Returns the permit and how long
    /// the caller waited.
    pub async fn acquire(
        &self,
        deadline: Instant,
        max_wait: Duration,
    ) -> Result<(CallPermit, Duration), Error> {
        let started = Instant::now();
        let wait = async {
            let _turn = self.0.queue.lock().await;
            self.until_ready().await
        };
        let remaining = deadline.saturating_duration_since(started);
        match tokio::time::timeout(remaining, wait).await {
            Ok(permit) => Ok((permit, started.elapsed())),
            Err(_) => Err(Error::QueueWaitExceeded(max_wait)),
        }
    }

    /// Waits for a permit with no deadline and no queue: for a single consumer (the batch
    /// worker), which keeps its own first-come-first-served order. Cancel-safe: dropping the
    /// future before it resolves takes nothing.
    pub async fn until_ready(&self) -> CallPermit {
        let permit = self.engine_permit().await;
        let turn = self.0.pace.turn(Instant::now());
        if !turn.is_zero() {
            tokio::time::sleep(turn).await;
        }
        permit
    }

    async fn engine_permit(&self) -> CallPermit {
        match &self.0.engine {
            Engine::Local(local) => {
                let slot = local
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the slot semaphore is never closed");
                let spacing = local.spacing.read().clone();
                spacing.until_ready().await;
                CallPermit {
                    slot: Some(slot),
                    _shared: None,
                }
            }
            Engine::Shared(budget) => CallPermit {
                slot: None,
                _shared: Some(budget.until_ready().await),
            },
        }
    }

    /// Window slots free right now (for tests and metrics); in a fleet, this gateway's room in
    /// its fallback budget.
    pub fn free_slots(&self) -> usize {
        match &self.0.engine {
            Engine::Local(local) => local.slots.available_permits(),
            Engine::Shared(budget) => {
                let (live, limit) = budget.local_holds();
                limit.saturating_sub(live)
            }
        }
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(WINDOW).await;
                    drop(slot);
                });
            }
            // No runtime: the process is shutting down; nothing more will be sent.
            Err(_) => drop(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[tokio::test]
    async fn a_new_rate_resizes_the_window_both_ways() {
        let limiter = UpstreamLimiter::new(nz(10));
        limiter.set_rate(nz(20));
        assert_eq!((limiter.rate(), limiter.free_slots()), (20, 20));
        let held = limiter.until_ready().await;
        limiter.set_rate(nz(2));
        // Slots go as they are free; the one held goes when its call's window ends.
        tokio::task::yield_now().await;
        assert_eq!((limiter.rate(), limiter.free_slots()), (2, 1));
        drop(held);
    }

    #[test]
    fn spacing_is_even_with_no_burst() {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(UpstreamLimiter::interval_for(nz(200)))
            .expect("non-zero")
            .allow_burst(NonZeroU32::MIN);
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        assert!(limiter.check().is_ok());
        assert!(
            limiter.check().is_err(),
            "a second permit right away would be a burst"
        );
        clock.advance(Duration::from_micros(4_900));
        assert!(limiter.check().is_err(), "permits are 5 ms apart at 200/s");
        clock.advance(Duration::from_micros(100));
        assert!(limiter.check().is_ok());
    }

    #[tokio::test]
    async fn a_slot_returns_one_window_after_the_call_ends() {
        let limiter = UpstreamLimiter::new(nz(1000));
        let permit = limiter.until_ready().await;
        assert_eq!(limiter.free_slots(), 999);
        drop(permit);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            limiter.free_slots(),
            999,
            "still held: the call may have arrived late"
        );
        tokio::time::sleep(WINDOW).await;
        assert_eq!(limiter.free_slots(), 1000);
    }

    /// Calls that end at once still hold their slots for a second, so even arrivals delayed
    /// arbitrarily within [permit, answer] can never put more than `rate` in one window.
    #[tokio::test]
    async fn never_more_than_the_limit_granted_within_one_window() {
        let limiter = UpstreamLimiter::new(nz(10));
        let started = Instant::now();
        let mut granted = Vec::new();
        while started.elapsed() < Duration::from_millis(1_600) {
            let deadline = started + Duration::from_secs(5);
            let (permit, _) = limiter
                .acquire(deadline, Duration::from_secs(5))
                .await
                .expect("permit");
            granted.push(started.elapsed());
            drop(permit);
        }
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| **u < *t + WINDOW)
                .count();
            assert!(
                in_window <= 10,
                "{in_window} permits within one second from {t:?}"
            );
        }
        assert!(granted.len() > 10, "the window frees again after a second");
    }

    #[tokio::test]
    async fn waiter_past_its_deadline_gets_the_frequency_limit_error() {
        let limiter = UpstreamLimiter::new(nz(1));
        let _held = limiter.until_ready().await;
        let max_wait = Duration::from_millis(50);
        let result = limiter.acquire(Instant::now() + max_wait, max_wait).await;
        assert_eq!(result.err().map(|e| e.code()), Some(60007));
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let limiter = UpstreamLimiter::new(nz(100));
        let first = limiter.until_ready().await;
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (limiter, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                let (_permit, _) = limiter
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
        drop(first);
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }
}
