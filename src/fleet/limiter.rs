//! FleetLimiter: one upstream budget for every gateway of an app, safe in any sliding second
//! whatever fails: a gateway cut off from Redis, killed, or back after a long partition;
//! Redis killed, restarted empty or frozen.
//!
//! The budget of each API is split in Redis (scripts::HEARTBEAT) into each live gateway's
//! *share* and a *pool*:
//!
//! - **The share** is booked in Redis for this gateway while its lease lives. The gateway
//!   grants calls within it by itself, with no Redis round trip, counting them in its own
//!   ledger the way the local engine does (each call holds a slot from its grant until one
//!   window after its answer); so at saturation, when every gateway's share is its fair share,
//!   calls cost no Redis command at all. Cut off from Redis, the gateway goes on spending its
//!   share, which nobody else can take, until its lease ends; then `fleet.after_lease` decides
//!   (stop, or keep spending and accept the risk). A dead gateway's share returns to the others
//!   one window after its lease ends; a graceful stop returns it at once.
//! - **The pool** (what no share books) is taken one call at a time (scripts::ACQUIRE): the
//!   hold lives in a Redis sorted set until one window after the answer, on Redis's clock.
//!
//! Shares follow demand (calls of the last window and whether callers wait, every heartbeat):
//! a busy gateway grows toward its fair share as room frees, an idle one keeps one call. A
//! share only shrinks after this gateway stopped using what it gives back, and only grows once
//! Redis has booked it, so `Σ shares + pool holds <= limit` holds at every instant.
//!
//! Pace: a 60007 (or an over-limit alert) halves this gateway's own share at once and the
//! fleet's paced limit in Redis (scripts::PACE_DOWN); every gateway follows at its next
//! heartbeat, and the recovery, computed from the same Redis state, is shared too.
//!
//! Here: the handle, the wait for a permit and the heartbeat's side; `limiter/ledger.rs` this
//! gateway's slots and the grants from its share; `limiter/pool.rs` the holds taken from the
//! pool.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::link::Link;
use super::membership::MembershipState;
use super::metrics::Command;
use super::scripts::{self, micros};
use crate::apis::WINDOW;
use crate::ratelimit::{SharedBudget, SharedPermit};

use ledger::{Source, State};

mod ledger;
mod pool;

/// How long a waiting acquisition sleeps at most before it looks at its share and mode again.
const RECHECK: Duration = Duration::from_millis(50);
/// The share an idle gateway asks for (if the fair share allows it).
const SHARE_FLOOR: u32 = 2;

/// The fleet's budget for one upstream API; cheap to clone.
#[derive(Clone)]
pub(super) struct FleetLimiter(Arc<Inner>);

struct Inner {
    link: Link,
    membership: Arc<MembershipState>,
    /// The API's label (its keys in Redis, its metrics).
    api: String,
    keys: Keys,
    /// This gateway's configured limit for the budget (a reload may change it).
    limit: AtomicU32,
    /// A pool hold's first expiry after its grant; longer than any call can last.
    hold_lease: Duration,
    /// `gateway id:` prefix of this gateway's pool hold members.
    member_prefix: String,
    next_hold: AtomicU64,
    state: Mutex<State>,
    changed: Notify,
    grants_share: prometheus::IntCounter,
    grants_pool: prometheus::IntCounter,
    pace_gauge: std::sync::OnceLock<prometheus::Gauge>,
}

/// This API's keys in Redis.
pub(super) struct Keys {
    pub(super) usable: String,
    pub(super) booked: String,
    pub(super) holds: String,
    pub(super) reserved: String,
    pub(super) pace: String,
    next: String,
}

/// The right to send one call; dropping it ends the call (see [`SharedPermit`]).
pub(super) struct FleetPermit {
    limiter: FleetLimiter,
    id: u64,
}

/// What a heartbeat asks Redis for this API.
pub(super) struct Ask {
    pub(super) limit: u32,
    pub(super) want: u32,
    pub(super) claim: u32,
}

/// What a heartbeat brought back for this API.
pub(super) struct Granted {
    pub(super) share: u32,
    pub(super) fair: u32,
    pub(super) paced: u32,
    pub(super) booked: u32,
    pub(super) for_silent: u32,
}

impl FleetLimiter {
    /// A budget of `limit` calls per sliding second across the fleet, named `api` in Redis.
    pub(super) fn new(
        link: Link,
        membership: Arc<MembershipState>,
        api: &str,
        limit: NonZeroU32,
        upstream_timeout: Duration,
    ) -> FleetLimiter {
        let key = |part: &str| link.key(&["budget", api, part]);
        let keys = Keys {
            usable: key("usable"),
            booked: key("booked"),
            holds: key("holds"),
            reserved: key("reserved"),
            pace: key("pace"),
            next: key("next"),
        };
        let metrics = link.metrics();
        let now = Instant::now();
        FleetLimiter(Arc::new(Inner {
            grants_share: metrics.grants.with_label_values(&[api, "share"]),
            grants_pool: metrics.grants.with_label_values(&[api, "pool"]),
            keys,
            api: api.to_owned(),
            limit: AtomicU32::new(limit.get()),
            hold_lease: upstream_timeout + WINDOW + Duration::from_secs(1),
            member_prefix: format!("{}:", membership.id()),
            next_hold: AtomicU64::new(0),
            state: Mutex::new(State {
                share: 0,
                confirmed_at: None,
                fair: 0,
                paced: limit.get(),
                in_flight: Vec::new(),
                ended: VecDeque::new(),
                next_share_at: now,
                waiting: false,
                pool_room: 0,
                pool_closed_until: now,
                slowed_at: None,
            }),
            changed: Notify::new(),
            pace_gauge: std::sync::OnceLock::new(),
            membership,
            link,
        }))
    }

    /// Waits for a permit, from this gateway's share or the fleet's pool, with no deadline
    /// (the caller keeps its own). Dropping the future before it resolves loses nothing but,
    /// at worst, one pool reservation, which ends by its lease.
    pub(super) async fn until_ready(&self) -> FleetPermit {
        let started = Instant::now();
        let permit = loop {
            let share_wait = match self.try_share() {
                Ok(permit) => break permit,
                Err(share_wait) => share_wait,
            };
            if self.pool_may_have_room() {
                if let Some(permit) = self.try_pool(share_wait).await {
                    break permit;
                }
            } else {
                self.wait_for_change(share_wait.min(RECHECK)).await;
            }
        };
        self.0.state.lock().waiting = false;
        let waited = started.elapsed().as_secs_f64();
        self.0.link.metrics().budget_wait.observe(waited);
        permit
    }

    /// Live slots of this gateway against its share (for metrics and tests).
    pub(super) fn local_holds(&self) -> (usize, usize) {
        let now = Instant::now();
        let mut state = self.0.state.lock();
        state.prune(now);
        let share = self.spendable_share(&state, now);
        (state.live(Source::Share), share as usize)
    }

    /// Tencent answered 60007: halve this gateway's share now, and the fleet's pace (once per
    /// window: the 60007s of one window are one signal).
    pub(super) fn slow_down(&self) {
        {
            let mut state = self.0.state.lock();
            let now = Instant::now();
            if state.slowed_at.is_some_and(|at| now < at + WINDOW) {
                return;
            }
            state.slowed_at = Some(now);
            state.share /= 2;
            state.paced = (state.paced / 2).max(1);
            self.show_pace(state.paced);
        }
        if !self.0.link.is_up() || tokio::runtime::Handle::try_current().is_err() {
            return; // the fleet hears of it from the next 60007 seen while Redis answers
        }
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut invocation = scripts::PACE_DOWN.prepare_invoke();
            invocation
                .key(&limiter.0.keys.pace)
                .arg(limiter.limit())
                .arg(micros(WINDOW));
            let _: Result<i64, _> = limiter.0.link.run(Command::Pace, &invocation).await;
        });
    }

    /// Shows the fleet's paced limit (calls per second) in `gauge`.
    pub(super) fn show_pace_in(&self, gauge: prometheus::Gauge) {
        gauge.set(f64::from(self.0.state.lock().paced));
        let _ = self.0.pace_gauge.set(gauge);
    }

    fn show_pace(&self, paced: u32) {
        if let Some(gauge) = self.0.pace_gauge.get() {
            gauge.set(f64::from(paced));
        }
    }

    async fn wait_for_change(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.0.changed.notified()).await;
    }

    fn end_call(&self, id: u64) {
        let source = {
            let mut state = self.0.state.lock();
            let Some(at) = state.in_flight.iter().position(|(i, _)| *i == id) else {
                return;
            };
            let (_, source) = state.in_flight.swap_remove(at);
            state.ended.push_back((Instant::now() + WINDOW, source));
            source
        };
        self.0.changed.notify_waiters();
        let pooled = source == Source::Pool;
        if !pooled || !self.0.link.is_up() || tokio::runtime::Handle::try_current().is_err() {
            return; // a share slot is this gateway's alone; a pool hold expires by its lease
        }
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut invocation = scripts::RELEASE.prepare_invoke();
            invocation
                .key(&limiter.0.keys.holds)
                .arg(limiter.member(id))
                .arg(micros(WINDOW));
            let _: Result<i64, _> = limiter.0.link.run(Command::Release, &invocation).await;
        });
    }

    // === the heartbeat's side ===

    /// The keys a heartbeat passes for this API.
    pub(super) fn keys(&self) -> &Keys {
        &self.0.keys
    }

    /// What to ask for at a heartbeat: the share wanted (calls of the last window with
    /// headroom, more when callers wait, [`SHARE_FLOOR`] at least; never below the share slots still live, which Redis
    /// must keep covering) and the share claimed (for a Redis that lost its state). A smaller
    /// share is applied here before it is sent, so Redis never books less than is spent.
    pub(super) fn ask(&self, now: Instant) -> Ask {
        let mut state = self.0.state.lock();
        state.prune(now);
        let live_share = state.live(Source::Share) as u32;
        let demand = state.live(Source::Share) + state.live(Source::Pool);
        let demand = u32::try_from(demand).unwrap_or(u32::MAX);
        // Headroom of a quarter, and a floor, so that a gateway cut off from Redis can still
        // answer a few new misses; a waiting caller asks for the fair share.
        let extra = u32::from(state.waiting) * state.fair.max(1);
        let want = (demand + demand / 4 + SHARE_FLOOR + extra)
            .min(self.limit())
            .max(live_share);
        let claim =
            self.spendable_share(&state, now).max(live_share) + state.live(Source::Pool) as u32;
        if want < state.share {
            state.share = want;
        }
        Ask {
            limit: self.limit(),
            want,
            claim,
        }
    }

    /// Takes what Redis booked at a heartbeat sent at `sent_at`.
    pub(super) fn granted(&self, sent_at: Instant, granted: &Granted) {
        let metrics = self.0.link.metrics();
        {
            let mut state = self.0.state.lock();
            // Never more than Redis booked, the fair share, or the pace.
            state.share = granted.share.min(granted.fair.max(1)).min(granted.paced);
            state.fair = granted.fair;
            state.paced = granted.paced;
            state.pool_room = granted.paced.saturating_sub(granted.booked);
            state.confirmed_at = Some(sent_at);
            self.show_pace(granted.paced);
            metrics.show_shares(&self.0.api, state.share, granted);
        }
        self.0.changed.notify_waiters();
    }

    /// Wakes waiters (the mode or the epoch changed).
    pub(super) fn wake(&self) {
        self.0.changed.notify_waiters();
    }

    /// Whether any slot of this gateway is still live (a graceful leave waits for none).
    pub(super) fn has_live_slots(&self) -> bool {
        let mut state = self.0.state.lock();
        state.prune(Instant::now());
        !state.in_flight.is_empty() || !state.ended.is_empty()
    }
}

impl FleetLimiter {
    /// The configured calls per second across the fleet.
    fn limit(&self) -> u32 {
        self.0.limit.load(Ordering::Acquire)
    }

    /// The pool's spacing between two grants fleet-wide: `1 s / limit`.
    fn interval(&self) -> Duration {
        WINDOW / self.limit().max(1)
    }
}

impl SharedBudget for FleetLimiter {
    fn set_limit(&self, requests_per_second: NonZeroU32) {
        self.0
            .limit
            .store(requests_per_second.get(), Ordering::Release);
    }

    fn until_ready(&self) -> BoxFuture<'_, SharedPermit> {
        Box::pin(async move { Box::new(FleetLimiter::until_ready(self).await) as SharedPermit })
    }

    fn local_holds(&self) -> (usize, usize) {
        FleetLimiter::local_holds(self)
    }

    fn slow_down(&self) {
        FleetLimiter::slow_down(self);
    }

    fn show_pace_in(&self, gauge: prometheus::Gauge) {
        FleetLimiter::show_pace_in(self, gauge);
    }
}

impl Drop for FleetPermit {
    fn drop(&mut self) {
        self.limiter.end_call(self.id);
    }
}
