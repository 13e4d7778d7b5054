//! Batcher: coalesces the cache misses of all concurrent callers into full upstream calls.
//!
//! [`Batcher`] is the clonable handle callers use; [`BatchWorker`](worker::BatchWorker) is the
//! one task that owns all batching state (the in-flight map, the queue of batches, the callers
//! waiting), so none of it needs a lock. Callers send their misses over an mpsc channel with a
//! oneshot for the answer, carrying their tracing span (tower's buffer pattern). The worker:
//!
//! 1. keeps each account in at most one shared batch at a time: a key joins the batch holding
//!    its account (pending, or dispatched with that tag), waits for it when it was dispatched
//!    without the tag, and otherwise goes into the open batch (up to `max_accounts_per_batch`
//!    accounts, asking for the union of their tags), so no (account, tag) is fetched twice at
//!    once;
//! 2. dispatches the oldest batch once it is full or `batch_window_ms` old, when the upstream
//!    limiter grants a permit; while a batch waits for a permit it keeps filling;
//! 3. fails batches that waited past `max_queue_wait_ms` with Tencent's 60007;
//! 4. splits each answer back to every waiting caller, caches values and absences, and keeps
//!    per-account failures to the callers that asked for those accounts;
//! 5. re-sends each caller's share alone when a merged call failed with an error one caller's
//!    input could cause, so the error reaches only its owner.
//!
//! Layout: `batch.rs` (one pending or dispatched upstream call), `worker.rs` (state, loop,
//! dispatch) with `worker/admission.rs` and `worker/delivery.rs`, `tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument as _, Span};

use crate::cache::{AccountMiss, CacheTier, ProfileCache};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::request_id::{self, RequestId};
use crate::upstream::UpstreamPath;
use crate::wire::{RawJson, Tag};

mod batch;
mod call;
mod metrics;
#[cfg(test)]
mod tests;
mod worker;

pub(crate) use worker::BatchWorker;

/// Slack in a caller's deadline for scheduling: past the sum of its waits, the worker has a
/// bug and the caller gets an error rather than hanging.
const CALLER_SLACK: Duration = Duration::from_secs(1);

/// For the upstream-answer fuzz target (`crate::fuzzing`).
pub(crate) use batch::split_answer;

/// How many callers' requests may wait for the worker to read them.
const CHANNEL_CAPACITY: usize = 4096;

/// What the upstream said about one missed account.
#[derive(Debug, Clone)]
pub enum AccountFetch {
    /// The account was answered: one entry per missed tag, `None` when unset.
    Values(Vec<(Tag, Option<RawJson>)>),
    /// The account failed on its own (`ResultCode != 0`); never cached.
    Failed {
        /// Tencent's `ResultCode`.
        code: i64,
        /// Tencent's `ResultInfo`.
        info: Arc<str>,
    },
}

/// Batching policy, from `[limits]` and `[upstream]`.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Accounts per upstream call (at most 100).
    pub max_accounts: usize,
    /// How long a batch waits for company before it may be sent.
    pub window: Duration,
    /// How long a batch may wait for an upstream permit before its callers get 60007.
    pub max_queue_wait: Duration,
    /// The upstream call timeout (bounds how long a caller can wait in total).
    pub upstream_timeout: Duration,
}

impl BatchConfig {
    /// The longest a caller can wait for a fetch, with slack for scheduling. Past it the
    /// worker has a bug; the caller gets an error rather than hanging.
    pub fn caller_deadline(&self) -> Duration {
        self.window + self.max_queue_wait + self.upstream_timeout + CALLER_SLACK
    }
}

/// A caller's request to the worker.
pub(crate) struct FetchMessage {
    misses: Vec<AccountMiss>,
    reply: oneshot::Sender<Result<Vec<AccountFetch>, Error>>,
    span: Span,
    /// The caller's request id, when it runs inside one.
    request_id: Option<RequestId>,
}

/// Clonable handle to the batch worker.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<FetchMessage>,
    caller_deadline: Duration,
    /// The breaker of the worker's upstream path, for readiness reports.
    breaker: crate::breaker::Breaker,
}

impl Batcher {
    /// Starts the worker task. It exits once every handle is dropped and its queue is drained.
    pub fn spawn(
        config: BatchConfig,
        path: UpstreamPath,
        cache: ProfileCache,
        tier: CacheTier,
        metrics: Metrics,
    ) -> (Batcher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let caller_deadline = config.caller_deadline();
        let breaker = path.breaker().clone();
        let worker = BatchWorker::new(config, rx, path, cache, tier, metrics);
        (
            Batcher {
                tx,
                caller_deadline,
                breaker,
            },
            tokio::spawn(worker.run()),
        )
    }

    /// The breaker guarding this batcher's upstream calls.
    pub fn breaker(&self) -> &crate::breaker::Breaker {
        &self.breaker
    }

    /// Fetches `misses` from the upstream, joining fetches already in flight. The answer is
    /// aligned with `misses`. Fails as a whole only when the upstream call failed as a whole.
    pub async fn fetch(&self, misses: Vec<AccountMiss>) -> Result<Vec<AccountFetch>, Error> {
        let (reply, answer) = oneshot::channel();
        // The caller's wait for its batch: the flush span links to it.
        let span = tracing::debug_span!("queue_wait", accounts = misses.len());
        let message = FetchMessage {
            misses,
            reply,
            span: span.clone(),
            request_id: request_id::CURRENT.try_with(RequestId::clone).ok(),
        };
        async {
            self.tx
                .send(message)
                .await
                .map_err(|_| Error::ShuttingDown)?;
            match tokio::time::timeout(self.caller_deadline, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(Error::ShuttingDown),
                Err(_) => Err(Error::Internal(Arc::from(
                    "batch worker did not answer in time",
                ))),
            }
        }
        .instrument(span)
        .await
    }
}
