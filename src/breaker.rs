//! Breaker: stops calling an upstream API that keeps failing, so callers get a stale value or
//! an error at once instead of waiting out every timeout, and probes it back to health.
//!
//! Closed: calls go through; `failure_threshold` whole-call failures in a row (outages, see
//! [`Error::is_outage`]; not a refusal of one caller's input) open it. Open: no call is sent
//! for `open_ms`; the batch worker fails what it would have sent with [`Error::BreakerOpen`].
//! Then half-open: exactly one call goes through as a probe; its success closes the breaker,
//! its failure opens it again. One breaker per upstream API; state and transitions are in
//! metrics and in `/readyz`'s body, never in its status (a sidecar's readiness gates its pod).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tracing::{info, warn};

use crate::config::BreakerConfig;
use crate::error::Error;
use crate::metrics::Metrics;

/// One API's breaker; cheap to clone.
#[derive(Clone)]
pub struct Breaker(Arc<Inner>);

struct Inner {
    api: Box<str>,
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
    metrics: BreakerMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// What the breaker says about sending one call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it. `probe`: it is the half-open probe; report its outcome with `probe = true`.
    Send {
        /// Whether this call is the one probe of a half-open breaker.
        probe: bool,
    },
    /// Do not send it; fail it with this error.
    Refuse,
}

/// The breaker families, shared by every API's breaker of one gateway.
#[derive(Clone)]
pub struct BreakerMetrics {
    state: IntGaugeVec,
    transitions: IntCounterVec,
}

impl BreakerMetrics {
    /// Registers `breaker_state{api,state}` and `breaker_transitions_total{api,to}`.
    pub fn register(metrics: &Metrics) -> BreakerMetrics {
        let state = metrics.register(IntGaugeVec::new(
            Opts::new("breaker_state", "1 for the state each API's breaker is in"),
            &["api", "state"],
        ));
        let transitions = metrics.register(IntCounterVec::new(
            Opts::new(
                "breaker_transitions_total",
                "Breaker state changes, by new state",
            ),
            &["api", "to"],
        ));
        BreakerMetrics { state, transitions }
    }
}

impl Breaker {
    /// A closed breaker for `api` (its metric label).
    pub fn new(api: &str, config: &BreakerConfig, metrics: BreakerMetrics) -> Breaker {
        let breaker = Breaker(Arc::new(Inner {
            api: Box::from(api),
            threshold: config.failure_threshold,
            open_for: config.open,
            state: Mutex::new(State::Closed { failures: 0 }),
            metrics,
        }));
        breaker.show(State::Closed { failures: 0 });
        breaker
    }

    /// Whether a call may be sent at `now` (taking the probe slot when half-opening).
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.0.state.lock();
        match *state {
            State::Closed { .. } => Admission::Send { probe: false },
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                drop(state);
                self.changed(State::HalfOpen);
                Admission::Send { probe: true }
            }
            State::Open { .. } | State::HalfOpen => Admission::Refuse,
        }
    }

    /// The error a refused call gets.
    pub fn refusal(&self) -> Error {
        Error::BreakerOpen(self.0.open_for)
    }

    /// Reports how a sent call ended. Only outages count as failures; a call refused for its
    /// input or answered per account still proves the upstream works.
    pub fn record(&self, result: Result<(), &Error>, probe: bool, now: Instant) {
        let failed = result.is_err_and(counts_as_failure);
        let mut state = self.0.state.lock();
        let next = match (*state, failed) {
            (State::HalfOpen, false) if probe => State::Closed { failures: 0 },
            (State::HalfOpen, true) if probe => self.open_until(now),
            (State::Closed { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 >= self.0.threshold => {
                self.open_until(now)
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            // A call sent before the breaker opened says nothing about now.
            (other, _) => other,
        };
        let moved = std::mem::discriminant(&next) != std::mem::discriminant(&*state);
        *state = next;
        drop(state);
        if moved {
            self.changed(next);
        }
    }

    /// The probe this breaker admitted was never sent (its caller gave up first): the next
    /// call may probe instead.
    pub fn abandon_probe(&self, now: Instant) {
        let mut state = self.0.state.lock();
        if *state == State::HalfOpen {
            *state = State::Open { until: now };
        }
    }

    /// `closed`, `open` or `half_open`, for `/readyz`.
    pub fn state_name(&self) -> &'static str {
        state_name(*self.0.state.lock())
    }

    /// The API this breaker guards.
    pub fn api(&self) -> &str {
        &self.0.api
    }

    fn open_until(&self, now: Instant) -> State {
        State::Open {
            until: now + self.0.open_for,
        }
    }

    fn changed(&self, to: State) {
        let name = state_name(to);
        match to {
            State::Open { .. } => warn!(api = &*self.0.api, "upstream failing: breaker open"),
            _ => info!(api = &*self.0.api, state = name, "breaker state changed"),
        }
        self.0
            .metrics
            .transitions
            .with_label_values(&[&self.0.api, name])
            .inc();
        self.show(to);
    }

    fn show(&self, current: State) {
        for name in ["closed", "open", "half_open"] {
            let on = i64::from(name == state_name(current));
            let gauge = self.0.metrics.state.with_label_values(&[&self.0.api, name]);
            gauge.set(on);
        }
    }
}

/// An outage of the upstream itself: not a refusal of one call's input, not the gateway's own
/// queue deadline, not this breaker's own refusals.
fn counts_as_failure(error: &Error) -> bool {
    error.is_outage()
        && error.fault() == crate::error::Fault::Upstream
        && !matches!(error, Error::BreakerOpen(_))
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Closed { .. } => "closed",
        State::Open { .. } => "open",
        State::HalfOpen => "half_open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> Breaker {
        let config = BreakerConfig {
            failure_threshold: threshold,
            open: Duration::from_millis(open_ms),
        };
        Breaker::new(
            "portrait_get",
            &config,
            BreakerMetrics::register(&Metrics::new()),
        )
    }

    fn outage() -> Error {
        Error::UpstreamStatus(502)
    }

    #[test]
    fn opens_after_consecutive_outages_half_opens_with_one_probe_and_closes_on_success() {
        let b = breaker(3, 1000);
        let t0 = Instant::now();
        for _ in 0..2 {
            b.record(Err(&outage()), false, t0);
        }
        assert_eq!(b.state_name(), "closed");
        b.record(Err(&outage()), false, t0);
        assert_eq!(b.state_name(), "open");
        assert_eq!(b.admit(t0 + Duration::from_millis(999)), Admission::Refuse);
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(b.admit(later), Admission::Send { probe: true });
        assert_eq!(b.admit(later), Admission::Refuse, "one probe at a time");
        b.record(Ok(()), true, later);
        assert_eq!(b.state_name(), "closed");
        assert_eq!(b.admit(later), Admission::Send { probe: false });
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_success_resets_the_count() {
        let b = breaker(2, 100);
        let t0 = Instant::now();
        b.record(Err(&outage()), false, t0);
        b.record(Ok(()), false, t0);
        b.record(Err(&outage()), false, t0);
        assert_eq!(b.state_name(), "closed", "failures must be consecutive");
        b.record(Err(&outage()), false, t0);
        assert_eq!(b.state_name(), "open");
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.admit(t1), Admission::Send { probe: true });
        b.record(Err(&outage()), true, t1);
        assert_eq!(b.state_name(), "open");
        assert_eq!(b.admit(t1 + Duration::from_millis(50)), Admission::Refuse);
    }

    #[test]
    fn refusals_of_one_callers_input_never_open_it() {
        let b = breaker(1, 100);
        let refused = Error::UpstreamFailed {
            code: 40003,
            info: Arc::from("Err_Profile_Account_Not_Found"),
            display: Arc::from(""),
        };
        b.record(Err(&refused), false, Instant::now());
        assert_eq!(b.state_name(), "closed");
        let over_limit = Error::UpstreamFailed {
            code: 60007,
            info: Arc::from("over limit"),
            display: Arc::from(""),
        };
        b.record(Err(&over_limit), false, Instant::now());
        assert_eq!(b.state_name(), "open", "Tencent's 60007 is an outage");
    }
}
