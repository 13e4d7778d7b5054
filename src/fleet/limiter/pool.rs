//! The fleet's pool for one API: what no share books, taken one call at a time
//! (scripts::ACQUIRE), each hold living in a Redis sorted set until one window after its
//! answer, on Redis's clock; asked only when the last heartbeat left it room and it did not
//! say it is full.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::ledger::Source;
use super::{FleetLimiter, FleetPermit, RECHECK};
use crate::fleet::metrics::Command;
use crate::fleet::scripts;
use crate::fleet::scripts::micros;

impl FleetLimiter {
    /// Whether asking the pool may succeed: in fleet mode with Redis's last answer on time
    /// (a caller pays one timeout at most, not one per step), the pool was not full at the last
    /// try (it said until when), and the last heartbeat left it some room. At saturation every
    /// share is fair and the pool is empty: calls then cost no Redis round trip at all.
    pub(super) fn pool_may_have_room(&self) -> bool {
        let state = self.0.state.lock();
        self.0.link.is_healthy() && state.pool_room > 0 && Instant::now() >= state.pool_closed_until
    }

    /// One attempt at a pool hold (in fleet mode), else a wait of at most `share_wait` for the
    /// share to have room.
    pub(super) async fn try_pool(&self, share_wait: Duration) -> Option<FleetPermit> {
        let wait = share_wait.min(RECHECK);
        let Some(epoch) = self.0.membership.epoch().filter(|_| self.0.link.is_up()) else {
            self.wait_for_change(wait).await;
            return None;
        };
        let id = self.0.next_hold.fetch_add(1, Ordering::Relaxed);
        let mut invocation = scripts::ACQUIRE.prepare_invoke();
        invocation
            .key(&self.0.keys.holds)
            .key(&self.0.keys.next)
            .key(self.0.membership.epoch_key())
            .key(&self.0.keys.reserved)
            .key(&self.0.keys.pace)
            .arg(self.limit())
            .arg(micros(self.interval()))
            .arg(micros(self.0.hold_lease))
            .arg(self.member(id))
            .arg(&epoch)
            .arg(micros(self.0.membership.lease()));
        let answer: (i64, i64) = match self.0.link.run(Command::Acquire, &invocation).await {
            Ok(answer) => answer,
            Err(_) => return None, // counted by the link; the share is looked at again
        };
        let micros_to_wait = Duration::from_micros(u64::try_from(answer.1).unwrap_or(0));
        match answer.0 {
            1 => {
                self.0.state.lock().in_flight.push((id, Source::Pool));
                self.0.grants_pool.inc();
                tokio::time::sleep(micros_to_wait).await;
                Some(FleetPermit {
                    limiter: self.clone(),
                    id,
                })
            }
            2 => {
                self.0.membership.epoch_changed();
                self.wait_for_change(wait).await;
                None
            }
            _ => {
                let closed_for = micros_to_wait + jitter();
                self.0.state.lock().pool_closed_until = Instant::now() + closed_for;
                self.wait_for_change(closed_for.min(wait)).await;
                None
            }
        }
    }

    pub(super) fn member(&self, id: u64) -> String {
        format!("{}{id}", self.0.member_prefix)
    }
}

/// Up to 2 ms, so gateways told to retry at the same instant do not arrive in lockstep.
fn jitter() -> Duration {
    Duration::from_micros(rand::random::<u64>() % 2_000)
}
