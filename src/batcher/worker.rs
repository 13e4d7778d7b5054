//! BatchWorker: the one task that owns the account-to-batch map, the batch queue and the waiting callers.
//!
//! Its loop reacts to four things: a caller's misses arriving ([`BatchWorker::admit`]), the
//! front batch becoming sendable and the limiter granting a permit (`dispatch_front`), a queued
//! batch passing its deadline (`expire_overdue`), and an upstream call finishing
//! (`on_complete`). Upstream calls run as separate tasks in a `JoinSet`, so a slow Tencent
//! never stalls admission. The worker exits when every [`Batcher`](super::Batcher) handle is
//! gone and the queue and the calls in flight have drained.
//!
//! This file holds the state, the loop and dispatch; admission is in `worker/admission.rs` and
//! completion (caching, splitting, isolation re-sends) in `worker/delivery.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, Instrument};

use super::batch::{Batch, BatchId, Subscriber, WaiterId};
use super::call::BatchCall;
use super::metrics::BatcherMetrics;
use super::{AccountFetch, BatchConfig, FetchMessage, CALLER_SLACK};
use crate::breaker::Admission;
use crate::cache::{CacheTier, ProfileCache};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::ratelimit::CallPermit;
use crate::request_id::RequestId;
use crate::upstream::UpstreamPath;
use crate::wire::{Account, RawJson, Tag};

mod admission;
mod delivery;

type FetchResult = Result<Vec<AccountFetch>, Error>;

/// The batching task. Build it with [`Batcher::spawn`](super::Batcher::spawn).
pub(crate) struct BatchWorker {
    config: BatchConfig,
    rx: mpsc::Receiver<FetchMessage>,
    /// Every handle is gone: flush what is queued without waiting for windows, then exit.
    closed: bool,
    path: UpstreamPath,
    /// A permit being acquired for the front batch, and whether that batch is the breaker's
    /// probe. Kept across loop turns: a fleet limiter's wait is a Redis reservation, which a
    /// select! that rebuilt it every turn would waste.
    acquiring: Option<(BoxFuture<'static, CallPermit>, bool)>,
    cache: ProfileCache,
    /// The fleet's shared tier, written (version-checked) with what each call brings back.
    tier: CacheTier,
    metrics: Metrics,
    /// The batcher's own families.
    own: BatcherMetrics,
    /// Batches waiting to be sent, oldest first; only the back one may still be filling.
    queue: VecDeque<BatchId>,
    /// Queued and dispatched batches.
    batches: HashMap<BatchId, Batch>,
    /// Account -> the one shared batch (pending or dispatched) that holds it. An account is in
    /// at most one shared batch at a time, so no (account, tag) is ever fetched by two calls
    /// at once, even though a batch asks for the union of its tags for every account. Solo
    /// re-sends are not listed: no one joins a caller's private re-send.
    account_batch: HashMap<Account, BatchId>,
    /// Keys waiting for a dispatched batch that holds their account (for other tags) to
    /// finish; they are placed again when it does.
    parked: HashMap<BatchId, Vec<ParkedKey>>,
    waiters: HashMap<WaiterId, Waiter>,
    running: JoinSet<FetchResult>,
    /// Upstream task -> its batch, so even a panicked task's batch is answered.
    running_batches: HashMap<tokio::task::Id, BatchId>,
    next_id: u64,
}

/// A caller waiting for its misses.
struct Waiter {
    reply: oneshot::Sender<FetchResult>,
    /// One per missed account, aligned with the caller's misses.
    accounts: Vec<Partial>,
    /// (account, tag) answers still outstanding.
    pending: usize,
    /// Each missed account's fleet version (aligned with `accounts`).
    versions: Vec<Option<u64>>,
    /// The caller's request id, for the flush span.
    request_id: Option<RequestId>,
    /// The caller's span, for the flush span's links (when traces are exported).
    trace: Option<opentelemetry::trace::SpanContext>,
}

/// What has arrived so far for one missed account of a caller.
enum Partial {
    Collecting(Vec<(Tag, Option<RawJson>)>),
    Failed { code: i64, info: Arc<str> },
}

/// A key whose account is in a dispatched batch that does not fetch this tag.
struct ParkedKey {
    account: Account,
    tag: Tag,
    subscriber: Subscriber,
}

/// Where [`BatchWorker::place`] put a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Joined a fetch another caller already waits on for this (account, tag).
    Joined,
    /// Answered from the cache, filled since the caller looked it up.
    Cached,
    /// Added to a pending batch.
    Queued,
    /// Waits for its account's dispatched batch to finish.
    Parked,
}

/// One batch's answer for one (account, tag).
#[derive(Clone, Copy)]
enum KeyOutcome<'a> {
    Value(&'a Option<RawJson>),
    Failed(i64, &'a Arc<str>),
}

impl BatchWorker {
    pub(super) fn new(
        config: BatchConfig,
        rx: mpsc::Receiver<FetchMessage>,
        path: UpstreamPath,
        cache: ProfileCache,
        tier: CacheTier,
        metrics: Metrics,
    ) -> BatchWorker {
        BatchWorker {
            config,
            rx,
            closed: false,
            path,
            acquiring: None,
            cache,
            tier,
            own: BatcherMetrics::register(&metrics),
            metrics,
            queue: VecDeque::new(),
            batches: HashMap::new(),
            account_batch: HashMap::new(),
            parked: HashMap::new(),
            waiters: HashMap::new(),
            running: JoinSet::new(),
            running_batches: HashMap::new(),
            next_id: 0,
        }
    }

    /// Runs until every handle is dropped and all work is answered.
    pub(crate) async fn run(mut self) {
        loop {
            if self.closed && self.queue.is_empty() && self.running.is_empty() {
                break;
            }
            let ready_at = self.front_ready_at();
            let now = Instant::now();
            let waiting_for_window = ready_at.filter(|at| *at > now && self.acquiring.is_none());
            if ready_at.is_some_and(|at| at <= now) && self.acquiring.is_none() {
                match self.path.breaker().admit(now) {
                    Admission::Send { probe } => {
                        let limiter = self.path.limiter().clone();
                        let permit = Box::pin(async move { limiter.until_ready().await });
                        self.acquiring = Some((permit, probe));
                    }
                    Admission::Refuse => {
                        self.refuse_front();
                        continue;
                    }
                }
            }
            let expires_at = self
                .queue
                .front()
                .map(|id| self.batches[id].opened_at + self.config.max_queue_wait);
            let acquiring = &mut self.acquiring;
            tokio::select! {
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.on_complete(joined);
                }
                permit = poll_acquisition(acquiring) => {
                    let probe = self.acquiring.take().is_some_and(|(_, probe)| probe);
                    self.dispatch_front(ready_at.unwrap_or(now), permit, probe);
                }
                () = sleep_until(waiting_for_window), if waiting_for_window.is_some() => {}
                () = sleep_until(expires_at), if expires_at.is_some() => self.expire_overdue(Instant::now()),
                message = self.rx.recv(), if !self.closed => match message {
                    Some(message) => self.admit(message),
                    None => self.closed = true,
                },
            }
            if self.queue.is_empty() {
                // Nothing left to send (expired): an acquisition in progress is given up.
                if let Some((_, true)) = self.acquiring.take() {
                    self.path.breaker().abandon_probe(Instant::now());
                }
            }
            self.own
                .queue_batches
                .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        }
        debug!("batch worker drained");
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // === dispatch ===

    /// When the front batch may be sent: at once if full, a solo re-send, or draining;
    /// otherwise when its window ends.
    fn front_ready_at(&self) -> Option<Instant> {
        let batch = &self.batches[self.queue.front()?];
        let send_now =
            self.closed || batch.solo_owner.is_some() || batch.is_full(self.config.max_accounts);
        Some(if send_now {
            batch.opened_at
        } else {
            batch.opened_at + self.config.window
        })
    }

    /// Fails the front batch at once: the breaker is open.
    fn refuse_front(&mut self) {
        let Some(id) = self.queue.pop_front() else {
            return;
        };
        let batch = self.batches.remove(&id).expect("queued batch exists");
        self.release(&batch);
        self.fail_waiters(&batch, &self.path.breaker().refusal());
    }

    /// Sends the front batch; the limiter has just granted a permit.
    fn dispatch_front(&mut self, ready_at: Instant, permit: CallPermit, probe: bool) {
        let Some(id) = self.queue.pop_front() else {
            if probe {
                self.path.breaker().abandon_probe(Instant::now());
            }
            return;
        };
        let versions = self.fleet_versions(id);
        // The flush span is at debug: skip listing the callers when it is not recorded.
        let requests = if tracing::enabled!(tracing::Level::DEBUG) {
            self.request_ids(self.batches[&id].waiters())
        } else {
            String::new()
        };
        let callers = self.caller_traces(id);
        let batch = self.batches.get_mut(&id).expect("queued batch exists");
        let stamps = batch.accounts.iter().map(|a| self.cache.stamp(a.as_str()));
        batch.dispatch_stamps = Some(stamps.collect());
        batch.fleet_versions = versions;
        batch.probe = probe;
        let now = Instant::now();
        self.metrics
            .ratelimit_wait
            .observe(now.saturating_duration_since(ready_at).as_secs_f64());
        self.own.batch_accounts.observe(batch.accounts.len() as f64);
        let body = batch.encode_request();
        let (accounts, tags) = (batch.accounts.clone(), batch.tags.clone());
        let span = tracing::debug_span!(
            "flush",
            batch_id = id,
            accounts = accounts.len(),
            tags = tags.len(),
            requests = %requests,
        );
        span.in_scope(|| debug!("flushing batch"));
        crate::traces::link_callers(&span, callers);
        let call = BatchCall {
            path: self.path.clone(),
            metrics: self.metrics.clone(),
            body: body.into(),
            accounts,
            tags,
            attempt_timeout: self.config.upstream_timeout,
            deadline: batch.opened_at + self.config.caller_deadline() - CALLER_SLACK,
        }
        .run(permit);
        let handle = self.running.spawn(call.instrument(span));
        self.running_batches.insert(handle.id(), id);
    }

    /// For each account of batch `id`, the newest fleet version its callers read before it was
    /// sent (any read before the send fences it); empty outside a fleet.
    fn fleet_versions(&self, id: BatchId) -> Vec<Option<u64>> {
        let batch = &self.batches[&id];
        if self.tier.shared().is_none() {
            return Vec::new();
        }
        let mut versions: HashMap<&Account, u64> = HashMap::new();
        for ((account, _), subscribers) in &batch.subscribers {
            for s in subscribers {
                let waiter = self.waiters.get(&s.waiter);
                let read = waiter.and_then(|w| w.versions.get(s.account_index).copied().flatten());
                if let Some(v) = read {
                    let newest = versions.entry(account).or_insert(v);
                    *newest = (*newest).max(v);
                }
            }
        }
        batch
            .accounts
            .iter()
            .map(|a| versions.get(a).copied())
            .collect()
    }

    /// The callers' spans of batch `id` (empty unless traces are exported).
    fn caller_traces(&self, id: BatchId) -> Vec<opentelemetry::trace::SpanContext> {
        // Not exported: no waiter carries a context; skip listing the batch's waiters.
        if !crate::traces::exporting() {
            return Vec::new();
        }
        let waiters = self.batches[&id].waiters();
        let traced = waiters
            .iter()
            .filter_map(|w| self.waiters.get(w)?.trace.clone());
        traced.collect()
    }

    /// The request ids of `waiters`, comma-separated (callers without one are left out).
    fn request_ids(&self, waiters: Vec<WaiterId>) -> String {
        let ids = waiters
            .iter()
            .filter_map(|w| Some(self.waiters.get(w)?.request_id.as_ref()?.as_str()));
        ids.collect::<Vec<_>>().join(",")
    }

    /// Fails every queued batch that has waited past `max_queue_wait` (the front is oldest).
    fn expire_overdue(&mut self, now: Instant) {
        while let Some(&id) = self.queue.front() {
            if now < self.batches[&id].opened_at + self.config.max_queue_wait {
                break;
            }
            self.queue.pop_front();
            let batch = self.batches.remove(&id).expect("queued batch exists");
            self.release(&batch);
            self.fail_waiters(
                &batch,
                &Error::QueueWaitExceeded(self.config.max_queue_wait),
            );
        }
    }
}

/// The permit being acquired, if any; never resolves when none is.
async fn poll_acquisition(
    acquiring: &mut Option<(BoxFuture<'static, CallPermit>, bool)>,
) -> CallPermit {
    match acquiring {
        Some((acquisition, _)) => acquisition.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; returns at once when it has passed (a tokio sleep with a past deadline
/// still waits for the timer's next millisecond tick, which added ~1 ms to every full batch).
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at.filter(|at| *at > Instant::now()) {
        tokio::time::sleep_until(at.into()).await;
    }
}
