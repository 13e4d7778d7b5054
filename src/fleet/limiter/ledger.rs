//! This gateway's ledger for one API: its share and every live slot it holds (share and pool),
//! each slot counted from its grant until one window after its answer, the way the local
//! engine counts; and the grants from the share, made from this ledger alone with no Redis
//! round trip.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{FleetLimiter, FleetPermit, RECHECK};
use crate::apis::WINDOW;
use crate::config::AfterLease;

/// The share, and every live slot of this gateway (share and pool), guarded together.
pub(super) struct State {
    /// Calls per window this gateway may grant itself (booked for it in Redis).
    pub(super) share: u32,
    /// When the share was last confirmed by Redis (a heartbeat's send instant).
    pub(super) confirmed_at: Option<Instant>,
    /// The fair share and the paced limit at the last heartbeat.
    pub(super) fair: u32,
    pub(super) paced: u32,
    /// Slots held now: in flight, or ended less than one window ago (oldest first).
    pub(super) in_flight: Vec<(u64, Source)>,
    pub(super) ended: VecDeque<(Instant, Source)>,
    /// The earliest the next share grant may go (spacing `1 s / share`).
    pub(super) next_share_at: Instant,
    /// A grant is being waited for (demand the share does not meet).
    pub(super) waiting: bool,
    /// The pool's room at the last heartbeat (paced limit - every gateway's booked share).
    pub(super) pool_room: u32,
    /// The pool said it is full until then.
    pub(super) pool_closed_until: Instant,
    /// When a 60007 last slowed this gateway down.
    pub(super) slowed_at: Option<Instant>,
}

/// Where a grant came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Share,
    Pool,
}

impl State {
    pub(super) fn prune(&mut self, now: Instant) {
        while self.ended.front().is_some_and(|(end, _)| *end <= now) {
            self.ended.pop_front();
        }
    }

    pub(super) fn live(&self, source: Source) -> usize {
        let in_flight = self.in_flight.iter().filter(|(_, s)| *s == source).count();
        in_flight + self.ended.iter().filter(|(_, s)| *s == source).count()
    }
}

impl FleetLimiter {
    /// A permit from the share when it has room and its spacing (`1 s / share`) allows one
    /// now, else how long until it may.
    pub(super) fn try_share(&self) -> Result<FleetPermit, Duration> {
        let now = Instant::now();
        let mut state = self.0.state.lock();
        state.prune(now);
        let share = self.spendable_share(&state, now);
        if state.live(Source::Share) >= share as usize {
            state.waiting = true;
            let first_end = state
                .ended
                .iter()
                .find(|(_, s)| *s == Source::Share)
                .map(|(end, _)| end.saturating_duration_since(now));
            return Err(first_end.unwrap_or(RECHECK));
        }
        if let Some(spacing) = state.next_share_at.checked_duration_since(now) {
            if !spacing.is_zero() {
                state.waiting = true;
                return Err(spacing);
            }
        }
        state.next_share_at = now + WINDOW / share;
        let id = self.0.next_hold.fetch_add(1, Ordering::Relaxed);
        state.in_flight.push((id, Source::Share));
        drop(state);
        self.0.grants_share.inc();
        Ok(FleetPermit {
            limiter: self.clone(),
            id,
        })
    }

    /// The share this gateway may spend now: Redis's, while the lease lives; after it, what
    /// `fleet.after_lease` says.
    pub(super) fn spendable_share(&self, state: &State, now: Instant) -> u32 {
        let membership = &self.0.membership;
        let leased = state
            .confirmed_at
            .is_some_and(|at| now < at + membership.safe_lease());
        match (leased, membership.after_lease()) {
            (true, _) => state.share,
            (false, AfterLease::Stop) => 0,
            (false, AfterLease::SpendShare) if state.confirmed_at.is_some() => state.share,
            // Never seen the fleet: the floor the operator set.
            (false, AfterLease::SpendShare) => self.limit() / membership.fallback_instances(),
        }
    }
}
