//! One upstream `portrait_get` call of a batch, with its retries: what runs on the call task,
//! off the worker. A retryable failure is sent again after a backoff, through the limiter,
//! while the retry budget and the callers' deadline allow (retry.rs); Tencent's 60007 also
//! lowers this gateway's pace (ratelimit/pace.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts};

use super::batch::split_answer;
use super::AccountFetch;
use crate::breaker::{Breaker, BreakerMetrics};
use crate::config::Config;
use crate::error::{codes, Error, Fault};
use crate::metrics::{Api, Metrics, Outcome};
use crate::ratelimit::{CallPermit, UpstreamLimiter};
use crate::retry::Retries;
use crate::upstream::UpstreamApi;
use crate::wire::{Account, Tag};

/// Everything between a batch and Tencent: the client, the limiter, the breaker and the retry
/// policy; cheap to clone.
#[derive(Clone)]
pub struct UpstreamPath {
    /// The upstream client.
    pub client: Arc<dyn UpstreamApi>,
    /// The `portrait_get` budget (local or fleet).
    pub limiter: UpstreamLimiter,
    /// The `portrait_get` breaker.
    pub breaker: Breaker,
    /// Retry policy and budget.
    pub retries: Retries,
    /// `upstream_retries_total{api="portrait_get"}`.
    pub retried: IntCounter,
}

/// The families every API's path reports into, registered once per gateway.
#[derive(Clone)]
pub struct PathMetrics {
    breakers: BreakerMetrics,
    retried: IntCounterVec,
    pace: GaugeVec,
}

impl PathMetrics {
    /// Registers the breaker, retry and pace families.
    pub fn register(metrics: &Metrics) -> PathMetrics {
        let retried = IntCounterVec::new(
            Opts::new(
                "upstream_retries_total",
                "Upstream calls sent again after a retryable failure",
            ),
            &["api"],
        )
        .expect("valid metric");
        let pace = GaugeVec::new(
            Opts::new(
                "upstream_pace_requests_per_second",
                "This gateway's own upstream pace: the configured rate, lowered after a 60007",
            ),
            &["api"],
        )
        .expect("valid metric");
        let registry = metrics.registry();
        for collector in [
            Box::new(retried.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pace.clone()),
        ] {
            registry
                .register(collector)
                .expect("path metrics are registered once per registry");
        }
        PathMetrics {
            breakers: BreakerMetrics::register(metrics),
            retried,
            pace,
        }
    }
}

impl UpstreamPath {
    /// The path of `api` through `limiter`, with the breaker and retry policy of `config`.
    pub fn new(
        api: Api,
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
            retries: Retries::new(
                config.upstream.max_retries,
                config.upstream.retry_budget_percent,
            ),
            retried: metrics.retried.with_label_values(&[api.label()]),
        }
    }
}

/// One batch's call, ready to run on its own task.
pub(super) struct BatchCall {
    pub path: UpstreamPath,
    pub metrics: Metrics,
    pub body: Bytes,
    pub accounts: Vec<Account>,
    pub tags: Vec<Tag>,
    /// How long one attempt may take (`upstream.timeout_ms`).
    pub attempt_timeout: Duration,
    /// No retry starts that could not finish before this (the callers stop waiting).
    pub deadline: Instant,
}

impl BatchCall {
    /// Sends the call with `permit`, retrying as policy allows; the last attempt's outcome.
    pub async fn run(self, mut permit: CallPermit) -> Result<Vec<AccountFetch>, Error> {
        self.path.retries.record_call(Instant::now());
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = match self
                .path
                .client
                .call(Api::PortraitGet, self.body.clone())
                .await
            {
                Ok(answer) => split_answer(&answer, &self.accounts, &self.tags),
                Err(e) => Err(e),
            };
            // The call has ended: its window slot is released one window from now.
            drop(permit);
            let outcome = Outcome::of(result.as_ref().map(|_| ()));
            let code = result.as_ref().map_or_else(Error::code, |_| 0);
            let seconds = started.elapsed().as_secs_f64();
            self.metrics
                .record_upstream(Api::PortraitGet, outcome, code, seconds);
            let Err(error) = &result else {
                return result;
            };
            if error.code() == codes::FREQUENCY_LIMIT && error.fault() == Fault::Upstream {
                self.path.limiter.slow_down();
            }
            attempt += 1;
            let now = Instant::now();
            let retries = &self.path.retries;
            let Some(backoff) =
                retries.next(error, attempt, now, self.attempt_timeout, self.deadline)
            else {
                return result;
            };
            self.path.retried.inc();
            tokio::time::sleep(backoff).await;
            let latest_send = self
                .deadline
                .checked_sub(self.attempt_timeout)
                .unwrap_or(now);
            let wait = latest_send.saturating_duration_since(Instant::now());
            permit = match tokio::time::timeout(wait, self.path.limiter.until_ready()).await {
                Ok(permit) => permit,
                Err(_) => return result,
            };
        }
    }
}
