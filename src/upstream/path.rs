//! UpstreamPath: everything between a request and Tencent for one API — the client, the
//! limiter (local or fleet), the breaker and the retry policy — and [`UpstreamPath::forward`],
//! the send used by every API that is not cached (`portrait_set`, pass-through): one call
//! under a permit, sent again only when the connection provably never reached the upstream
//! (such calls are not idempotent to retry blindly). Every call of every API, `portrait_get`
//! batches included (batcher/call.rs), runs one attempt loop: [`UpstreamPath::attempts`].

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts};
use tracing::Instrument as _;

use crate::apis::Api;
use crate::breaker::{Admission, Breaker, BreakerMetrics};
use crate::config::Config;
use crate::error::{codes, Error};
use crate::metrics::{Metrics, Outcome};
use crate::ratelimit::{BudgetSource, CallPermit, LimiterGauges, UpstreamLimiter};
use crate::retry::Retries;
use crate::upstream::UpstreamApi;
use crate::wire;

/// Everything between a request and Tencent for one API: the client, the limiter, the breaker and the retry
/// policy; cheap to clone.
#[derive(Clone)]
pub struct UpstreamPath {
    client: Arc<dyn UpstreamApi>,
    /// The API this path calls.
    api: Api,
    /// Its budget (local or fleet).
    limiter: UpstreamLimiter,
    breaker: Breaker,
    /// Retry policy and budget.
    retries: Retries,
    /// `upstream_retries_total{api=...}`.
    retried: IntCounter,
}

/// The families every API's path reports into, registered once per gateway.
#[derive(Clone)]
pub struct PathMetrics {
    breakers: BreakerMetrics,
    limiters: Arc<LimiterGauges>,
    retried: IntCounterVec,
    pace: GaugeVec,
}

impl PathMetrics {
    /// Registers the breaker, retry, pace and window families.
    pub fn register(metrics: &Metrics) -> PathMetrics {
        let retried = metrics.register(IntCounterVec::new(
            Opts::new(
                "upstream_retries_total",
                "Upstream calls sent again after a retryable failure",
            ),
            &["api"],
        ));
        let pace = metrics.register(GaugeVec::new(
            Opts::new(
                "upstream_pace_requests_per_second",
                "This gateway's own upstream pace: the configured rate, lowered after a 60007 \
                 or an Alert.RequestOverLimit callback",
            ),
            &["api"],
        ));
        PathMetrics {
            breakers: BreakerMetrics::register(metrics),
            limiters: LimiterGauges::register(metrics.registry()),
            retried,
            pace,
        }
    }
}

impl UpstreamPath {
    /// The path of `api` through `limiter`, with the breaker and retry policy of `config`.
    pub fn new(
        api: &Api,
        client: Arc<dyn UpstreamApi>,
        limiter: UpstreamLimiter,
        config: &Config,
        metrics: &PathMetrics,
    ) -> UpstreamPath {
        limiter.show_pace_in(metrics.pace.with_label_values(&[api.label()]));
        UpstreamPath {
            client,
            limiter,
            breaker: Breaker::new(api.label(), &config.breaker, metrics.breakers.clone()),
            api: api.clone(),
            retries: Retries::new(
                config.upstream.max_retries,
                config.upstream.retry_budget_percent,
                config.upstream.retry_budget_min_per_second,
            ),
            retried: metrics.retried.with_label_values(&[api.label()]),
        }
    }
}

impl UpstreamPath {
    /// This path's budget (local or fleet).
    pub fn limiter(&self) -> &UpstreamLimiter {
        &self.limiter
    }

    /// This path's breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The API this path calls.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// This path, sending to `api` instead (the one shared path of the APIs that have no
    /// limit of their own sends each call to its caller's URL path).
    pub fn to(mut self, api: Api) -> UpstreamPath {
        self.api = api;
        self
    }

    /// One attempt of a cached API's call (`api`'s answer body), outside any loop: for the
    /// `send` of [`UpstreamPath::attempts`].
    pub(crate) fn call(&self, api: &Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        self.client.call(api, body)
    }
}

/// An answer forwarded as is: the upstream's HTTP status and body.
pub struct Forwarded {
    /// The HTTP status.
    pub status: u16,
    /// The body, untouched.
    pub body: Bytes,
}

impl UpstreamPath {
    /// Sends `body` once through the breaker and a permit of this path's limiter (waiting at
    /// most `max_wait`), retrying only calls refused before they reached the upstream; records
    /// each attempt; a whole-call 60007 lowers the pace. The answer, whatever its status.
    pub async fn forward(
        &self,
        body: Bytes,
        max_wait: Duration,
        metrics: &Metrics,
    ) -> Result<Forwarded, Error> {
        let Admission::Send { probe } = self.breaker.admit(Instant::now()) else {
            return Err(self.breaker.refusal());
        };
        let result = self.forward_admitted(body, max_wait, metrics).await;
        let bad_status = match &result {
            Ok(answer) if answer.status != 200 => Some(Error::UpstreamStatus(answer.status)),
            _ => None,
        };
        let verdict = match (&result, &bad_status) {
            (_, Some(e)) | (Err(e), None) => Err(e),
            (Ok(_), None) => Ok(()),
        };
        match verdict {
            Err(Error::QueueWaitExceeded(_)) if probe => self.breaker.abandon_probe(Instant::now()),
            verdict => self.breaker.record(verdict, probe, Instant::now()),
        }
        result
    }

    async fn forward_admitted(
        &self,
        body: Bytes,
        max_wait: Duration,
        metrics: &Metrics,
    ) -> Result<Forwarded, Error> {
        let deadline = Instant::now() + max_wait;
        let (permit, waited) = self.limiter.acquire(deadline, max_wait).await?;
        metrics.ratelimit_wait.observe(waited.as_secs_f64());
        let plan = Attempts {
            deadline,
            attempt_takes: Duration::ZERO,
            // Not idempotent: sent again only when it provably never reached the upstream.
            may_retry: |error| matches!(error, Error::UpstreamRefused(_)),
            retry_turn: RetryTurn::Queued { max_wait },
            metrics,
        };
        let send = || self.client.forward(&self.api, body.clone());
        let (status, body) = self.attempts(permit, &plan, send, forward_outcome).await?;
        Ok(Forwarded { status, body })
    }

    /// The attempt loop every call of this path runs (a `portrait_get` batch, a
    /// `portrait_set`, a pass-through): `send` under `permit`; the attempt recorded as `judge`
    /// says; a whole-call 60007 lowers the pace; a failure `plan` may retry is sent again after
    /// the retry policy's backoff, under a new permit, while the policy, its budget and the
    /// deadline allow. The last attempt's result.
    pub(crate) async fn attempts<T, F, Fut>(
        &self,
        mut permit: CallPermit,
        plan: &Attempts<'_>,
        mut send: F,
        judge: fn(&Result<T, Error>) -> (Outcome, i64),
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.retries.record_call(Instant::now());
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let span = tracing::debug_span!(
                "upstream_call",
                api = self.api.label(),
                attempt = i64::from(attempt),
                outcome = tracing::field::Empty,
                error_code = tracing::field::Empty,
            );
            let result = send().instrument(span.clone()).await;
            // The call has ended: its window slot is released one window from now.
            drop(permit);
            let (outcome, code) = judge(&result);
            span.record("outcome", outcome.label());
            span.record("error_code", code);
            let seconds = started.elapsed().as_secs_f64();
            plan.metrics
                .record_upstream(&self.api, outcome, code, seconds);
            if code == codes::FREQUENCY_LIMIT && outcome == Outcome::UpstreamError {
                self.limiter.slow_down();
            }
            let Err(error) = &result else {
                return result;
            };
            if !(plan.may_retry)(error) {
                return result;
            }
            attempt += 1;
            let now = Instant::now();
            let Some(backoff) =
                self.retries
                    .next(error, attempt, now, plan.attempt_takes, plan.deadline)
            else {
                return result;
            };
            self.retried.inc();
            tokio::time::sleep(backoff).await;
            permit = match self.retry_permit(plan).await {
                Some(permit) => permit,
                None => return result,
            };
        }
    }

    /// A retry's permit, if one comes in time for the attempt to end by the deadline.
    async fn retry_permit(&self, plan: &Attempts<'_>) -> Option<CallPermit> {
        let latest_send = plan
            .deadline
            .checked_sub(plan.attempt_takes)
            .unwrap_or_else(Instant::now);
        match plan.retry_turn {
            RetryTurn::Queued { max_wait } => {
                let (permit, waited) = self.limiter.acquire(latest_send, max_wait).await.ok()?;
                plan.metrics.ratelimit_wait.observe(waited.as_secs_f64());
                Some(permit)
            }
            RetryTurn::Direct => {
                let wait = latest_send.saturating_duration_since(Instant::now());
                tokio::time::timeout(wait, self.limiter.until_ready())
                    .await
                    .ok()
            }
        }
    }
}

/// How the attempts of one call are bounded and retried (see [`UpstreamPath::attempts`]).
pub(crate) struct Attempts<'a> {
    /// The callers stop waiting then: no retry starts that could not end before.
    pub deadline: Instant,
    /// How long one attempt may take (`upstream.timeout_ms`; zero where not known).
    pub attempt_takes: Duration,
    /// Which failures may be sent again at all, before the retry policy's own rules.
    pub may_retry: fn(&Error) -> bool,
    /// Where a retry's permit comes from.
    pub retry_turn: RetryTurn,
    /// Where attempts are recorded.
    pub metrics: &'a Metrics,
}

/// Where a retry's permit comes from.
#[derive(Clone, Copy)]
pub(crate) enum RetryTurn {
    /// The API's first-come-first-served queue, shared with its other callers.
    Queued {
        /// Named in the error of a wait that ran out.
        max_wait: Duration,
    },
    /// Straight from the limiter: the batch worker is the only other consumer.
    Direct,
}

/// The metrics outcome and code of a forwarded call: Tencent's own envelope decides, not just
/// the transport.
fn forward_outcome(result: &Result<(u16, Bytes), Error>) -> (Outcome, i64) {
    match result {
        Ok((200, answer)) => match wire::decode_envelope(answer).map(|env| env.error_code) {
            Ok(0) => (Outcome::Ok, 0),
            Ok(code) => (Outcome::UpstreamError, code),
            Err(e) => (Outcome::UpstreamError, e.code()),
        },
        Ok((status, _)) => {
            let e = Error::UpstreamStatus(*status);
            (Outcome::of::<()>(Err(&e)), e.code())
        }
        Err(e) => (Outcome::of::<()>(Err(e)), e.code()),
    }
}

/// Builds the [`UpstreamPath`] of any API: a shared budget's limiter when in a fleet (else a
/// local one), shown in the limiter gauges, with the configured breaker and retry policy. Cheap to
/// clone; the pass-through router builds paths with it as APIs are first seen.
#[derive(Clone)]
pub(crate) struct PathFactory {
    client: Arc<dyn UpstreamApi>,
    budgets: Option<Arc<dyn BudgetSource>>,
    config: Arc<Config>,
    path_metrics: PathMetrics,
}

impl PathFactory {
    /// A factory for paths to `client`, budgeted by shared `budgets` (a fleet's) when given,
    /// else by local limiters.
    pub(crate) fn new(
        client: Arc<dyn UpstreamApi>,
        budgets: Option<Arc<dyn BudgetSource>>,
        config: &Config,
        metrics: &Metrics,
    ) -> PathFactory {
        PathFactory {
            client,
            budgets,
            config: Arc::new(config.clone()),
            path_metrics: PathMetrics::register(metrics),
        }
    }

    /// The path of `api`, allowed `rate` calls per second (by the whole fleet, in a fleet).
    pub(crate) fn build(&self, api: &Api, rate: NonZeroU32) -> UpstreamPath {
        let limiter = match &self.budgets {
            Some(budgets) => UpstreamLimiter::shared(budgets.budget(api.label(), rate), rate),
            None => UpstreamLimiter::new(rate),
        };
        self.path_metrics.limiters.watch(api, limiter.clone());
        UpstreamPath::new(
            api,
            self.client.clone(),
            limiter,
            &self.config,
            &self.path_metrics,
        )
    }
}
