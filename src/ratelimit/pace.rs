//! Pace: this gateway's own ceiling under the configured rate, lowered when Tencent answers
//! 60007 (someone else is spending the app's budget too: another service calling Tencent
//! directly, a console script) and raised again as calls go through (AIMD).
//!
//! Each 60007 halves the ceiling (never below 1 call/s); it then grows back by a tenth of the
//! configured rate per second, so a single 60007 costs about five seconds of reduced pace. At
//! the configured rate the pace adds nothing: the limiter's own window and spacing rule.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::Gauge;

/// One API's adaptive ceiling.
pub(super) struct Pace {
    state: Mutex<State>,
    /// The current ceiling, in calls per second, when a gauge was attached.
    gauge: std::sync::OnceLock<Gauge>,
}

struct State {
    /// The configured rate (calls per second), changed only by a reload.
    limit: f64,
    /// Calls per second allowed at `since`.
    rate: f64,
    /// When `rate` was last lowered.
    since: Instant,
    /// The earliest the next call may go while below the limit.
    next_at: Instant,
}

impl Pace {
    /// Full pace: the configured `limit` in calls per second.
    pub(super) fn new(limit: u32) -> Pace {
        let now = Instant::now();
        Pace {
            state: Mutex::new(State {
                limit: f64::from(limit),
                rate: f64::from(limit),
                since: now,
                next_at: now,
            }),
            gauge: std::sync::OnceLock::new(),
        }
    }

    /// Shows the current ceiling in `gauge`.
    pub(super) fn show_in(&self, gauge: Gauge) {
        gauge.set(self.state.lock().limit);
        let _ = self.gauge.set(gauge);
    }

    /// Tencent said the app is over its limit: halve the ceiling.
    pub(super) fn slow_down(&self, now: Instant) {
        let mut state = self.state.lock();
        let current = self.rate_at(&state, now);
        state.rate = (current / 2.0).max(1.0);
        state.since = now;
        self.show(state.rate);
    }

    /// The ceiling now, in calls per second.
    #[cfg(test)]
    pub(crate) fn rate(&self, now: Instant) -> f64 {
        self.rate_at(&self.state.lock(), now)
    }

    /// How long the next call must wait for the pace (zero at full pace), reserving its turn.
    pub(super) fn turn(&self, now: Instant) -> Duration {
        let mut state = self.state.lock();
        let rate = self.rate_at(&state, now);
        self.show(rate);
        if rate >= state.limit {
            return Duration::ZERO;
        }
        let at = state.next_at.max(now);
        state.next_at = at + Duration::from_secs_f64(1.0 / rate);
        at - now
    }

    fn rate_at(&self, state: &State, now: Instant) -> f64 {
        let recovered =
            now.saturating_duration_since(state.since).as_secs_f64() * state.limit / 10.0;
        (state.rate + recovered).min(state.limit)
    }

    /// A reload changed the configured rate: the ceiling follows (a lowered pace keeps its
    /// share of the new rate and recovers toward it).
    pub(super) fn set_limit(&self, limit: u32, now: Instant) {
        let mut state = self.state.lock();
        let share = self.rate_at(&state, now) / state.limit;
        state.limit = f64::from(limit);
        state.rate = (share * state.limit).max(1.0);
        state.since = now;
        let rate = self.rate_at(&state, now);
        drop(state);
        self.show(rate);
    }

    fn show(&self, rate: f64) {
        if let Some(gauge) = self.gauge.get() {
            gauge.set(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_60007_halves_the_pace_which_recovers_additively_to_the_limit() {
        let pace = Pace::new(100);
        let t0 = Instant::now();
        assert_eq!(pace.turn(t0), Duration::ZERO, "full pace adds nothing");
        pace.slow_down(t0);
        assert!((pace.rate(t0) - 50.0).abs() < 1e-9);
        pace.slow_down(t0);
        assert!((pace.rate(t0) - 25.0).abs() < 1e-9);
        let t1 = t0 + Duration::from_secs(2);
        assert!((pace.rate(t1) - 45.0).abs() < 1e-6, "+10/s per second");
        assert!((pace.rate(t0 + Duration::from_secs(60)) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn below_the_limit_calls_are_spaced_at_the_lowered_rate() {
        let pace = Pace::new(10);
        let t0 = Instant::now();
        for _ in 0..4 {
            pace.slow_down(t0); // 10 -> 0.625, floored at 1 call/s
        }
        assert!((pace.rate(t0) - 1.0).abs() < 1e-9);
        assert_eq!(pace.turn(t0), Duration::ZERO);
        let second = pace.turn(t0);
        assert!(second > Duration::from_millis(900), "{second:?}");
    }
}
