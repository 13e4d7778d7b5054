//! Membership: this gateway's lease in the fleet, renewed every `fleet.heartbeat_ms` together
//! with its share of every budget (scripts::HEARTBEAT), so each gateway knows how many peers are
//! alive and Redis knows what a silent one may still be spending.
//!
//! A heartbeat that Redis answered confirms this gateway's shares until one lease after it was
//! *sent* (Redis recorded it later, so its lease there ends later still): the limiters spend
//! their shares only inside that time ([`MembershipState::safe_lease`]). A graceful stop waits
//! until every call of the last window has ended, then leaves (its shares return at once); a
//! gateway that dies gives them back one window after its lease ends (its last calls count in
//! every sliding second until then).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::limiter::{FleetLimiter, Granted};
use super::link::Link;
use super::metrics::Command;
use super::scripts::{self, micros};
use crate::apis::WINDOW;
use crate::config::{AfterLease, FleetConfig};

/// Taken off a confirmed lease: clock-rate differences between this host and Redis's over one
/// lease, and scheduling.
const LEASE_MARGIN: Duration = Duration::from_millis(100);
/// The longest a graceful leave waits for this gateway's last calls' window to pass.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// What the limiters read of the membership; no handle to them (no cycle).
pub(super) struct MembershipState {
    /// This gateway's id in the fleet (random per process).
    id: String,
    members_key: String,
    epoch_key: String,
    lease: Duration,
    heartbeat: Duration,
    fallback_instances: u32,
    after_lease: AfterLease,
    /// Redis's epoch at the last heartbeat; `None` until one was answered, or after the pool
    /// reported another.
    epoch: Mutex<Option<String>>,
    learning: AtomicBool,
    /// When the last answered heartbeat was sent.
    confirmed_at: Mutex<Option<Instant>>,
}

impl MembershipState {
    pub(super) fn new(link: &Link, config: &FleetConfig) -> MembershipState {
        MembershipState {
            id: format!("{:016x}", rand::random::<u64>()),
            members_key: link.key(&["members"]),
            epoch_key: link.key(&["budget", "epoch"]),
            lease: config.lease,
            heartbeat: config.heartbeat,
            fallback_instances: config.fallback_instances.get(),
            after_lease: config.after_lease,
            epoch: Mutex::new(None),
            learning: AtomicBool::new(false),
            confirmed_at: Mutex::new(None),
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn epoch_key(&self) -> &str {
        &self.epoch_key
    }

    /// The epoch the pool scripts must find, once a heartbeat was answered.
    pub(super) fn epoch(&self) -> Option<String> {
        self.epoch.lock().clone()
    }

    /// The pool saw another epoch: Redis lost its state; wait for the next heartbeat.
    pub(super) fn epoch_changed(&self) {
        *self.epoch.lock() = None;
    }

    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    /// How long after a heartbeat's send its shares may be spent.
    pub(super) fn safe_lease(&self) -> Duration {
        self.lease.saturating_sub(LEASE_MARGIN)
    }

    pub(super) fn after_lease(&self) -> AfterLease {
        self.after_lease
    }

    pub(super) fn fallback_instances(&self) -> u32 {
        self.fallback_instances
    }
}

/// The membership and the budgets whose shares it renews; cheap to clone.
#[derive(Clone)]
pub(super) struct Membership(Arc<Inner>);

struct Inner {
    link: Link,
    state: Arc<MembershipState>,
    limiters: Mutex<Vec<FleetLimiter>>,
}

impl Membership {
    pub(super) fn new(link: Link, config: &FleetConfig) -> Membership {
        let state = Arc::new(MembershipState::new(&link, config));
        Membership(Arc::new(Inner {
            link,
            state,
            limiters: Mutex::new(Vec::new()),
        }))
    }

    pub(super) fn state(&self) -> Arc<MembershipState> {
        self.0.state.clone()
    }

    /// Adds a budget whose share every heartbeat renews.
    pub(super) fn register(&self, limiter: FleetLimiter) {
        self.0.limiters.lock().push(limiter);
    }

    /// Heartbeats until `stop` is cancelled.
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.0.state.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.beat(false).await;
            self.show_lease_left();
        }
    }

    /// Leaves the fleet once this gateway's last calls' window has passed (at most
    /// [`LEAVE_WAIT`]): its shares return to the others at once.
    pub(super) async fn leave(&self) {
        let deadline = Instant::now() + LEAVE_WAIT;
        let limiters = self.0.limiters.lock().clone();
        while limiters.iter().any(FleetLimiter::has_live_slots) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.beat(true).await {
            info!("left the fleet: shares returned");
        }
    }

    /// One heartbeat (or the leave); whether Redis answered.
    async fn beat(&self, leaving: bool) -> bool {
        let limiters = self.0.limiters.lock().clone();
        let state = &self.0.state;
        let sent_at = Instant::now();
        let mut invocation = scripts::HEARTBEAT.prepare_invoke();
        invocation
            .key(&state.members_key)
            .key(&state.epoch_key)
            .arg(&state.id)
            .arg(micros(state.lease))
            .arg(state.fallback_instances)
            .arg(micros(state.heartbeat))
            .arg(u8::from(leaving))
            .arg(micros(WINDOW));
        for limiter in &limiters {
            let keys = limiter.keys();
            invocation
                .key(&keys.usable)
                .key(&keys.booked)
                .key(&keys.holds)
                .key(&keys.reserved)
                .key(&keys.pace);
            let ask = limiter.ask(sent_at);
            invocation.arg(ask.limit).arg(ask.want).arg(ask.claim);
        }
        let reply: Result<(String, Vec<i64>), _> = self
            .0
            .link
            .run_anyway(Command::Heartbeat, &invocation)
            .await;
        let (epoch, numbers) = match reply {
            Ok(reply) => reply,
            Err(e) => {
                debug!(error = %e, "heartbeat not answered");
                return false;
            }
        };
        if leaving {
            return true;
        }
        self.take_reply(sent_at, epoch, &numbers, &limiters);
        true
    }

    fn take_reply(
        &self,
        sent_at: Instant,
        epoch: String,
        numbers: &[i64],
        limiters: &[FleetLimiter],
    ) {
        let state = &self.0.state;
        let metrics = self.0.link.metrics();
        let number = |i: usize| numbers.get(i).copied().unwrap_or(0);
        let as_u32 = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        let learning = number(1) == 1;
        if state.learning.swap(learning, Ordering::AcqRel) != learning && learning {
            warn!("redis lost its state: shares held as claimed for one lease, no growth");
        }
        metrics.learning.set(i64::from(learning));
        metrics.peers.set(number(0));
        metrics.silent_peers.set(number(2));
        metrics
            .peers_expired
            .inc_by(u64::try_from(number(3)).unwrap_or(0));
        *state.confirmed_at.lock() = Some(sent_at);
        {
            let mut known = state.epoch.lock();
            if known.as_deref() != Some(epoch.as_str()) {
                *known = Some(epoch);
            }
        }
        for (i, limiter) in limiters.iter().enumerate() {
            let at = 4 + 5 * i;
            let granted = Granted {
                share: as_u32(number(at)),
                fair: as_u32(number(at + 1)),
                paced: as_u32(number(at + 2)),
                booked: as_u32(number(at + 3)),
                for_silent: as_u32(number(at + 4)),
            };
            limiter.granted(sent_at, &granted);
            limiter.wake();
        }
    }
}

impl Membership {
    fn show_lease_left(&self) {
        let state = &self.0.state;
        let left = state.confirmed_at.lock().map_or(Duration::ZERO, |at| {
            (at + state.safe_lease()).saturating_duration_since(Instant::now())
        });
        self.0
            .link
            .metrics()
            .lease_remaining
            .set(left.as_secs_f64());
    }
}
