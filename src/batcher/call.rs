//! One upstream `portrait_get` call of a batch, with its retries: what runs on the call task,
//! off the worker. The path's one attempt loop (upstream/path.rs) sends it; what is particular
//! to a batch is here: a retryable failure may be sent again whatever it was, the answer is
//! split per account, and a retry's permit comes straight from the limiter.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::split_answer;
use super::AccountFetch;
use crate::apis::Api;
use crate::error::Error;
use crate::metrics::{Metrics, Outcome};
use crate::ratelimit::CallPermit;
use crate::upstream::{Attempts, RetryTurn, UpstreamPath};
use crate::wire::{Account, Tag};

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
    pub(super) async fn run(self, permit: CallPermit) -> Result<Vec<AccountFetch>, Error> {
        let plan = Attempts {
            deadline: self.deadline,
            attempt_takes: self.attempt_timeout,
            may_retry: |_| true,
            retry_turn: RetryTurn::Direct,
            metrics: &self.metrics,
        };
        let send = || async {
            let answer = self
                .path
                .call(&Api::PORTRAIT_GET, self.body.clone())
                .await?;
            split_answer(&answer, &self.accounts, &self.tags)
        };
        self.path.attempts(permit, &plan, send, judge).await
    }
}

/// A batch's outcome and code: the call's, or the whole answer's when Tencent failed it.
fn judge(result: &Result<Vec<AccountFetch>, Error>) -> (Outcome, i64) {
    let outcome = Outcome::of(result.as_ref().map(|_| ()));
    (outcome, result.as_ref().map_or_else(Error::code, |_| 0))
}
