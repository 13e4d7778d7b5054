//! One upstream `portrait_get` call of a batch, with its retries: what runs on the call task,
//! off the worker. A retryable failure is sent again after a backoff, through the limiter,
//! while the retry budget and the callers' deadline allow (retry.rs); Tencent's 60007 also
//! lowers this gateway's pace (ratelimit/pace.rs).

use std::time::{Duration, Instant};

use super::batch::split_answer;
use super::AccountFetch;
use crate::apis::Api;
use crate::error::{codes, Error, Fault};
use crate::metrics::{Metrics, Outcome};
use crate::ratelimit::CallPermit;
use crate::upstream::UpstreamPath;
use crate::wire::{Account, Tag};
use bytes::Bytes;

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
                .call(&Api::PORTRAIT_GET, self.body.clone())
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
                .record_upstream(&Api::PORTRAIT_GET, outcome, code, seconds);
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
