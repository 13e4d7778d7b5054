//! UpstreamPath: everything between a request and Tencent for one API — the client, the
//! limiter (local or fleet), the breaker and the retry policy — and [`UpstreamPath::forward`],
//! the send used by every API that is not cached (`portrait_set`, pass-through): one call
//! under a permit, sent again only when the connection provably never reached the upstream
//! (such calls are not idempotent to retry blindly). `portrait_get` batches use the same path
//! with their own retry loop (batcher/call.rs).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts};

use crate::apis::Api;
use crate::breaker::{Admission, Breaker, BreakerMetrics};
use crate::config::Config;
use crate::error::{codes, Error};
use crate::metrics::{Metrics, Outcome};
use crate::ratelimit::{BudgetSource, LimiterGauges, UpstreamLimiter};
use crate::retry::Retries;
use crate::upstream::UpstreamApi;
use crate::wire;

/// Everything between a request and Tencent for one API: the client, the limiter, the breaker and the retry
/// policy; cheap to clone.
#[derive(Clone)]
pub struct UpstreamPath {
    /// The upstream client.
    pub client: Arc<dyn UpstreamApi>,
    /// The API this path calls.
    pub api: Api,
    /// Its budget (local or fleet).
    pub limiter: UpstreamLimiter,
    /// Its breaker.
    pub breaker: Breaker,
    /// Retry policy and budget.
    pub retries: Retries,
    /// `upstream_retries_total{api=...}`.
    pub retried: IntCounter,
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
            ),
            retried: metrics.retried.with_label_values(&[api.label()]),
        }
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
        self.retries.record_call(Instant::now());
        let mut attempt = 0;
        loop {
            let (permit, waited) = self.limiter.acquire(deadline, max_wait).await?;
            metrics.ratelimit_wait.observe(waited.as_secs_f64());
            let started = Instant::now();
            let result = self.client.forward(&self.api, body.clone()).await;
            drop(permit);
            let (outcome, code) = forward_outcome(&result);
            metrics.record_upstream(&self.api, outcome, code, started.elapsed().as_secs_f64());
            if code == codes::FREQUENCY_LIMIT && outcome == Outcome::UpstreamError {
                self.limiter.slow_down();
            }
            let error = match result {
                Ok((status, body)) => return Ok(Forwarded { status, body }),
                Err(error @ Error::UpstreamRefused(_)) => error,
                Err(error) => return Err(error),
            };
            attempt += 1;
            let call_takes = Duration::ZERO;
            let Some(backoff) =
                self.retries
                    .next(&error, attempt, Instant::now(), call_takes, deadline)
            else {
                return Err(error);
            };
            self.retried.inc();
            tokio::time::sleep(backoff).await;
        }
    }
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
pub struct PathFactory {
    client: Arc<dyn UpstreamApi>,
    budgets: Option<Arc<dyn BudgetSource>>,
    config: Arc<Config>,
    path_metrics: PathMetrics,
}

impl PathFactory {
    /// A factory for paths to `client`, budgeted by shared `budgets` (a fleet's) when given,
    /// else by local limiters.
    pub fn new(
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
    pub fn build(&self, api: &Api, rate: NonZeroU32) -> UpstreamPath {
        let limiter = match &self.budgets {
            Some(budgets) => UpstreamLimiter::shared(budgets.budget(api.label(), rate), rate),
            None => UpstreamLimiter::new(rate),
        };
        self.path_metrics
            .limiters
            .watch(api, limiter.clone(), rate.get());
        UpstreamPath::new(
            api,
            self.client.clone(),
            limiter,
            &self.config,
            &self.path_metrics,
        )
    }
}
