//! FleetLimiter: one upstream budget for every gateway of an app, safe in any sliding second.
//!
//! The single gateway's reasoning made fleet-wide, on Redis's clock: each call takes a *hold*
//! in a Redis sorted set before it is sent and keeps it until one window after its answer, so
//! the call's arrival at Tencent lies inside its hold and no one-second window of arrivals can
//! see more calls than there are holds (the limit). A hold first expires at grant + lease
//! (longer than any call), so a gateway that dies holding capacity gives it back by expiry;
//! the release after the answer only shortens it. Grants are also spaced `1 s / limit` apart
//! on Redis's clock (no burst) and handed out as reservations in arrival order, which keeps
//! gateways' shares even. See `scripts::ACQUIRE`.
//!
//! While Redis is down the gateway allows itself `limit / fallback_instances`, counted in a
//! local ledger that holds *every* call of this gateway, whichever mode granted it. Switching
//! to fallback first waits until one window has passed since this gateway's last fleet grant
//! and its fleet holds have ended (it cannot see the other gateways' holds, which were granted
//! before Redis went away too). Switching back, fleet grants also need room in the local
//! budget until every hold granted in fallback has ended plus [`CATCH_UP`] (time for the other
//! gateways to reconnect), and the holds granted locally are written into Redis's count (all
//! live holds after Redis lost its state, noticed by its epoch key).

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::link::Link;
use super::metrics::Command;
use super::scripts;
use crate::apis::WINDOW;
use crate::ratelimit::{SharedBudget, SharedPermit};

/// How long a waiting acquisition sleeps at most before it looks at the mode again.
const RECHECK: Duration = Duration::from_millis(50);
/// After a fallback grant's hold ends, how much longer fleet grants also need room in the
/// fallback budget: other gateways may still be in fallback (not yet reconnected, so their
/// calls are not in Redis's count) for up to the channel's reconnect backoff and a ping.
const CATCH_UP: Duration = Duration::from_millis(2_500);

/// The fleet's budget for one upstream API; cheap to clone.
#[derive(Clone)]
pub struct FleetLimiter(Arc<Inner>);

struct Inner {
    link: Link,
    /// Redis keys: holds, next permit, epoch.
    holds_key: String,
    next_key: String,
    epoch_key: String,
    limit: u32,
    interval: Duration,
    /// A hold's first expiry after its grant; longer than any call can last.
    lease: Duration,
    /// `gateway id:` prefix of this gateway's hold members.
    member_prefix: String,
    next_hold: AtomicU64,
    /// The epoch of Redis's budget state this gateway last saw.
    epoch: Mutex<String>,
    ledger: Mutex<Ledger>,
    ledger_changed: Notify,
    fallback_limit: usize,
    fallback_spacing: DefaultDirectRateLimiter,
}

/// Every live hold of this gateway.
#[derive(Default)]
struct Ledger {
    in_flight: HashMap<u64, Grant>,
    /// Ended calls, until one window after their answer; oldest first.
    ended: VecDeque<(Instant, u64, Grant)>,
    /// Redis may not know some live holds (granted in fallback, or Redis lost its state).
    register: bool,
    /// When this gateway last got a fleet grant while the fleet was busy: fallback grants wait
    /// one window after it.
    last_busy_grant: Option<Instant>,
    /// Until when fleet grants also need room in the fallback budget (see [`CATCH_UP`]).
    both_budgets_until: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Grant {
    at: Instant,
    by_fleet: bool,
}

/// The right to send one call; dropping it ends the call (see [`SharedPermit`]).
pub struct FleetPermit {
    limiter: FleetLimiter,
    id: u64,
}

enum Attempt {
    Granted(FleetPermit),
    Wait,
}

impl FleetLimiter {
    /// A budget of `limit` calls per sliding second across the fleet, named `api` in Redis.
    pub fn new(
        link: Link,
        api: &str,
        limit: NonZeroU32,
        fallback_instances: NonZeroU32,
        upstream_timeout: Duration,
    ) -> FleetLimiter {
        let fallback = (limit.get() / fallback_instances.get()).max(1);
        let quota = Quota::with_period(WINDOW / fallback)
            .expect("non-zero interval")
            .allow_burst(NonZeroU32::MIN);
        FleetLimiter(Arc::new(Inner {
            holds_key: link.key(&["budget", api, "holds"]),
            next_key: link.key(&["budget", api, "next"]),
            epoch_key: link.key(&["budget", "epoch"]),
            limit: limit.get(),
            interval: WINDOW / limit.get(),
            lease: upstream_timeout + WINDOW + Duration::from_secs(1),
            member_prefix: format!("{:016x}:", rand::random::<u64>()),
            next_hold: AtomicU64::new(0),
            epoch: Mutex::new(String::new()),
            ledger: Mutex::new(Ledger::default()),
            ledger_changed: Notify::new(),
            fallback_limit: fallback as usize,
            fallback_spacing: RateLimiter::direct(quota),
            link,
        }))
    }

    /// Waits for a permit, in fleet or fallback mode, with no deadline (the batch worker keeps
    /// its own). Dropping the future before it resolves loses nothing but, at worst, one
    /// reservation, which ends one window later.
    pub async fn until_ready(&self) -> FleetPermit {
        let started = Instant::now();
        loop {
            let attempt = if self.0.link.is_up() {
                self.try_fleet().await
            } else {
                self.try_fallback().await
            };
            if let Attempt::Granted(permit) = attempt {
                let waited = started.elapsed().as_secs_f64();
                self.0.link.metrics().budget_wait.observe(waited);
                return permit;
            }
        }
    }

    /// Live holds this gateway has against the fallback budget's size (for metrics and tests).
    pub fn local_holds(&self) -> (usize, usize) {
        let mut ledger = self.0.ledger.lock();
        ledger.prune(Instant::now());
        (ledger.live(), self.0.fallback_limit)
    }

    // === fleet mode ===

    async fn try_fleet(&self) -> Attempt {
        let Some(register) = self.fleet_registration() else {
            // For one window after fallback, both budgets apply.
            self.wait_for_ledger(RECHECK).await;
            return Attempt::Wait;
        };
        let id = self.0.next_hold.fetch_add(1, Ordering::Relaxed);
        let known_epoch = self.0.epoch.lock().clone();
        let mut invocation = scripts::ACQUIRE.prepare_invoke();
        invocation
            .key(&self.0.holds_key)
            .key(&self.0.next_key)
            .key(&self.0.epoch_key)
            .arg(self.0.limit)
            .arg(micros(self.0.interval))
            .arg(micros(self.0.lease))
            .arg(self.member(id))
            .arg(&known_epoch);
        for (member, remaining) in register.iter().flatten() {
            invocation.arg(member).arg(micros(*remaining));
        }
        let answer: (i64, i64, String, i64) =
            match self.0.link.run(Command::Acquire, &invocation).await {
                Ok(answer) => answer,
                Err(_) => return Attempt::Wait, // now in fallback mode
            };
        let (status, micros_to_wait, epoch, fleet_holds) = answer;
        let wait = Duration::from_micros(u64::try_from(micros_to_wait).unwrap_or(0));
        match status {
            1 => {
                // With more holds than half a fallback share, some gateway may hold more than
                // its share: falling back right after would risk the sum.
                let busy = fleet_holds > (self.0.fallback_limit / 2) as i64;
                let permit = self.record(id, Some(busy), register.is_some());
                tokio::time::sleep(wait).await;
                Attempt::Granted(permit)
            }
            2 => {
                *self.0.epoch.lock() = epoch;
                self.0.ledger.lock().register = true;
                Attempt::Wait
            }
            _ => {
                tokio::time::sleep(wait.min(RECHECK) + jitter()).await;
                Attempt::Wait
            }
        }
    }

    /// What to register with the next fleet grant (`Some(None)`: nothing), or `None` while
    /// holds granted in fallback leave no room in the fallback budget.
    fn fleet_registration(&self) -> Option<Option<Vec<(String, Duration)>>> {
        let now = Instant::now();
        let mut ledger = self.0.ledger.lock();
        ledger.prune(now);
        let both_budgets = ledger.any_fallback_grant()
            || ledger.both_budgets_until.is_some_and(|until| now < until);
        if both_budgets && ledger.live() >= self.0.fallback_limit {
            return None;
        }
        Some(ledger.register.then(|| self.live_holds(&ledger)))
    }

    /// Every live hold of this gateway as (member, time left), for Redis to count.
    fn live_holds(&self, ledger: &Ledger) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let in_flight = ledger.in_flight.iter().map(|(id, grant)| {
            (
                *id,
                (grant.at + self.0.lease).saturating_duration_since(now),
            )
        });
        let ended = ledger
            .ended
            .iter()
            .map(|(end, id, _)| (*id, end.saturating_duration_since(now)));
        in_flight
            .chain(ended)
            .filter(|(_, left)| !left.is_zero())
            .map(|(id, left)| (self.member(id), left))
            .collect()
    }

    // === fallback mode ===

    async fn try_fallback(&self) -> Attempt {
        match self.fallback_wait() {
            Some(wait) => {
                self.wait_for_ledger(wait.min(RECHECK)).await;
                Attempt::Wait
            }
            None => {
                let id = self.0.next_hold.fetch_add(1, Ordering::Relaxed);
                Attempt::Granted(self.record(id, None, false))
            }
        }
    }

    /// How long until the fallback budget may have room (`None`: it has room now, and the
    /// spacing permit is taken).
    fn fallback_wait(&self) -> Option<Duration> {
        {
            let now = Instant::now();
            let mut ledger = self.0.ledger.lock();
            ledger.prune(now);
            // Just out of a busy fleet: every gateway's fleet grants of the last window may still
            // arrive at Tencent, and this one cannot see the others'. Wait until one window has
            // passed since its own last such grant and its own fleet holds have ended.
            let quiet_from = ledger.last_busy_grant.map(|at| at + WINDOW);
            if let Some(wait) = quiet_from.and_then(|from| from.checked_duration_since(now)) {
                return Some(wait);
            }
            if quiet_from.is_some() && ledger.any_fleet_grant() {
                return Some(RECHECK);
            }
            if ledger.live() >= self.0.fallback_limit {
                let first_end = ledger.ended.front().map(|(end, _, _)| *end);
                let until = first_end.map(|end| end.saturating_duration_since(Instant::now()));
                return Some(until.unwrap_or(RECHECK));
            }
        }
        match self.0.fallback_spacing.check() {
            Ok(()) => None,
            Err(not_yet) => {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                Some(not_yet.wait_time_from(now))
            }
        }
    }

    // === the ledger ===

    /// Records a grant: `fleet_busy` is `None` for a fallback grant, else whether the fleet
    /// was busy when Redis granted it.
    fn record(&self, id: u64, fleet_busy: Option<bool>, registered: bool) -> FleetPermit {
        let mut ledger = self.0.ledger.lock();
        let grant = Grant {
            at: Instant::now(),
            by_fleet: fleet_busy.is_some(),
        };
        ledger.in_flight.insert(id, grant);
        match fleet_busy {
            None => ledger.register = true,
            Some(busy) => {
                if busy {
                    ledger.last_busy_grant = Some(grant.at);
                }
                if registered {
                    ledger.register = false;
                }
            }
        }
        FleetPermit {
            limiter: self.clone(),
            id,
        }
    }

    async fn wait_for_ledger(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.0.ledger_changed.notified()).await;
    }

    fn member(&self, id: u64) -> String {
        format!("{}{id}", self.0.member_prefix)
    }

    fn end_call(&self, id: u64) {
        {
            let mut ledger = self.0.ledger.lock();
            let Some(grant) = ledger.in_flight.remove(&id) else {
                return;
            };
            let hold_ends = Instant::now() + WINDOW;
            if !grant.by_fleet {
                ledger.both_budgets_until = Some(hold_ends + CATCH_UP);
            }
            ledger.ended.push_back((hold_ends, id, grant));
        }
        self.0.ledger_changed.notify_waiters();
        if !self.0.link.is_up() || tokio::runtime::Handle::try_current().is_err() {
            return; // the hold expires by its lease, or by registration's time left
        }
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut invocation = scripts::RELEASE.prepare_invoke();
            invocation
                .key(&limiter.0.holds_key)
                .arg(limiter.member(id))
                .arg(micros(WINDOW));
            let _: Result<i64, _> = limiter.0.link.run(Command::Release, &invocation).await;
        });
    }
}

impl Ledger {
    fn prune(&mut self, now: Instant) {
        while self.ended.front().is_some_and(|(end, _, _)| *end <= now) {
            self.ended.pop_front();
        }
    }

    fn live(&self) -> usize {
        self.in_flight.len() + self.ended.len()
    }

    fn any_fallback_grant(&self) -> bool {
        self.any_grant(|g| !g.by_fleet)
    }

    fn any_fleet_grant(&self) -> bool {
        self.any_grant(|g| g.by_fleet)
    }

    fn any_grant(&self, which: impl Fn(&Grant) -> bool) -> bool {
        self.in_flight.values().any(&which) || self.ended.iter().any(|(_, _, g)| which(g))
    }
}

impl SharedBudget for FleetLimiter {
    fn until_ready(&self) -> BoxFuture<'_, SharedPermit> {
        Box::pin(async move { Box::new(FleetLimiter::until_ready(self).await) as SharedPermit })
    }

    fn local_holds(&self) -> (usize, usize) {
        FleetLimiter::local_holds(self)
    }
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        self.limiter.end_call(self.id);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Up to 2 ms, so gateways told to retry at the same instant do not arrive in lockstep.
fn jitter() -> Duration {
    Duration::from_micros(rand::random::<u64>() % 2_000)
}
