//! BatchWorker: the one task that owns the account-to-batch map, the batch queue and the waiting callers.
//!
//! Its loop reacts to four things: a caller's misses arriving ([`BatchWorker::admit`]), the
//! front batch becoming sendable and the limiter granting a permit (`dispatch_front`), a queued
//! batch passing its deadline (`expire_overdue`), and an upstream call finishing
//! (`on_complete`). Upstream calls run as separate tasks in a `JoinSet`, so a slow Tencent
//! never stalls admission. The worker exits when every [`Batcher`](super::Batcher) handle is
//! gone and the queue and the calls in flight have drained.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, Instrument};

use super::batch::{split_answer, Batch, BatchId, Subscriber, WaiterId};
use super::{AccountFetch, BatchConfig, FetchMessage};
use crate::cache::ProfileCache;
use crate::error::{codes, Error};
use crate::metrics::{Api, Metrics, Outcome};
use crate::ratelimit::{CallPermit, UpstreamLimiter};
use crate::upstream::UpstreamApi;
use crate::wire::{Account, RawJson, Tag};

type FetchResult = Result<Vec<AccountFetch>, Error>;

/// The batching task. Build it with [`Batcher::spawn`](super::Batcher::spawn).
pub struct BatchWorker {
    config: BatchConfig,
    rx: mpsc::Receiver<FetchMessage>,
    /// Every handle is gone: flush what is queued without waiting for windows, then exit.
    closed: bool,
    upstream: Arc<dyn UpstreamApi>,
    limiter: UpstreamLimiter,
    cache: ProfileCache,
    metrics: Metrics,
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
    /// Joined a fetch that already asks for this (account, tag).
    Joined,
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
        upstream: Arc<dyn UpstreamApi>,
        limiter: UpstreamLimiter,
        cache: ProfileCache,
        metrics: Metrics,
    ) -> BatchWorker {
        BatchWorker {
            config,
            rx,
            closed: false,
            upstream,
            limiter,
            cache,
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
    pub async fn run(mut self) {
        loop {
            if self.closed && self.queue.is_empty() && self.running.is_empty() {
                break;
            }
            let ready_at = self.front_ready_at();
            let expires_at = self
                .queue
                .front()
                .map(|id| self.batches[id].opened_at + self.config.max_queue_wait);
            let limiter = self.limiter.clone();
            tokio::select! {
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.on_complete(joined);
                }
                permit = permit_after(ready_at, limiter), if ready_at.is_some() => {
                    self.dispatch_front(ready_at.unwrap_or_else(Instant::now), permit);
                }
                () = sleep_until(expires_at), if expires_at.is_some() => self.expire_overdue(Instant::now()),
                message = self.rx.recv(), if !self.closed => match message {
                    Some(message) => self.admit(message),
                    None => self.closed = true,
                },
            }
            self.metrics
                .queue_batches
                .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        }
        debug!("batch worker drained");
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // === admission ===

    /// Registers a caller: joins keys already being fetched, queues the rest.
    fn admit(&mut self, message: FetchMessage) {
        let FetchMessage {
            misses,
            reply,
            span,
        } = message;
        if misses.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
            return;
        }
        let waiter = self.next_id();
        let accounts = misses
            .iter()
            .map(|m| Partial::Collecting(Vec::with_capacity(m.tags.len())))
            .collect();
        let pending = misses.iter().map(|m| m.tags.len()).sum();
        self.waiters.insert(
            waiter,
            Waiter {
                reply,
                accounts,
                pending,
            },
        );
        let mut joined = 0u64;
        for (account_index, miss) in misses.iter().enumerate() {
            let subscriber = Subscriber {
                waiter,
                account_index,
            };
            for tag in &miss.tags {
                if self.place(&miss.account, tag, subscriber) == Placement::Joined {
                    joined += 1;
                }
            }
        }
        self.metrics.coalesced_keys.inc_by(joined);
        debug!(parent: &span, accounts = misses.len(), joined, "misses admitted");
    }

    /// Puts one (account, tag) where it will be fetched: into the batch that already holds
    /// the account if it is still pending or already asks for the tag, parked behind it if it
    /// was dispatched without the tag (or before the account was invalidated), else into the
    /// open batch.
    fn place(&mut self, account: &Account, tag: &Tag, subscriber: Subscriber) -> Placement {
        let Some(id) = self.account_batch.get(account).copied() else {
            // The caller looked the cache up before its message got here; a fetch may have
            // filled it since. The worker is the cache's only writer, so this check is final.
            let cached = self.cache.get(account.as_str());
            if let Some(value) = cached.and_then(|c| c.fresh(tag, Instant::now())) {
                self.deliver_key(subscriber, tag, KeyOutcome::Value(&value));
                return Placement::Joined;
            }
            let id = self.open_batch();
            self.batches
                .get_mut(&id)
                .expect("open batch exists")
                .add(account, tag, subscriber);
            self.account_batch.insert(account.clone(), id);
            return Placement::Queued;
        };
        let batch = self
            .batches
            .get_mut(&id)
            .expect("an account's batch exists");
        let asks_for_tag = batch.tags.contains(tag);
        match batch.dispatch_epoch {
            None => {
                batch.add(account, tag, subscriber);
                if asks_for_tag {
                    Placement::Joined
                } else {
                    Placement::Queued
                }
            }
            Some(epoch)
                if asks_for_tag && !self.cache.invalidated_since(account.as_str(), epoch) =>
            {
                batch.subscribe(account, tag, subscriber);
                Placement::Joined
            }
            Some(_) => {
                let key = ParkedKey {
                    account: account.clone(),
                    tag: tag.clone(),
                    subscriber,
                };
                self.parked.entry(id).or_default().push(key);
                Placement::Parked
            }
        }
    }

    /// The batch at the back of the queue if it takes another account, else a new one.
    fn open_batch(&mut self) -> BatchId {
        let max = self.config.max_accounts;
        if let Some(&id) = self
            .queue
            .back()
            .filter(|id| self.batches[*id].accepts(max))
        {
            return id;
        }
        let id = self.next_id();
        self.batches
            .insert(id, Batch::new(id, Instant::now(), None));
        self.queue.push_back(id);
        id
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

    /// Sends the front batch; the limiter has just granted a permit.
    fn dispatch_front(&mut self, ready_at: Instant, permit: CallPermit) {
        let Some(id) = self.queue.pop_front() else {
            return;
        };
        let batch = self.batches.get_mut(&id).expect("queued batch exists");
        batch.dispatch_epoch = Some(self.cache.epoch());
        let now = Instant::now();
        self.metrics
            .ratelimit_wait
            .observe(now.saturating_duration_since(ready_at).as_secs_f64());
        self.metrics
            .batch_accounts
            .observe(batch.accounts.len() as f64);
        let body = batch.encode_request();
        let (accounts, tags) = (batch.accounts.clone(), batch.tags.clone());
        let span = tracing::debug_span!(
            "flush",
            batch_id = id,
            accounts = accounts.len(),
            tags = tags.len()
        );
        let (upstream, metrics) = (self.upstream.clone(), self.metrics.clone());
        let call = async move {
            let result = match upstream.call(Api::PortraitGet, body.into()).await {
                Ok(answer) => split_answer(&answer, &accounts, &tags),
                Err(e) => Err(e),
            };
            // The call has ended: its window slot is released one window from now.
            drop(permit);
            let outcome = Outcome::of(result.as_ref().map(|_| ()));
            metrics.record_upstream(Api::PortraitGet, outcome, now.elapsed().as_secs_f64());
            result
        };
        let handle = self.running.spawn(call.instrument(span));
        self.running_batches.insert(handle.id(), id);
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

    // === completion ===

    fn on_complete(&mut self, joined: Result<(tokio::task::Id, FetchResult), JoinError>) {
        let (task, result) = match joined {
            Ok((task, result)) => (task, result),
            Err(e) => (
                e.id(),
                Err(Error::Internal(Arc::from("upstream call task failed"))),
            ),
        };
        let Some(batch) = self
            .running_batches
            .remove(&task)
            .and_then(|id| self.batches.remove(&id))
        else {
            return;
        };
        self.release(&batch);
        match result {
            Ok(fetches) => self.deliver(&batch, &fetches),
            Err(e)
                if e.is_caller_attributable()
                    && batch.solo_owner.is_none()
                    && batch.waiters().len() > 1 =>
            {
                self.isolate(&batch);
            }
            Err(e) => {
                if e.code() == codes::TAG_NOT_FOUND {
                    if let Some(tag) = batch.sole_custom_tag() {
                        self.cache.remember_missing_tag(tag.clone(), e.clone());
                    }
                }
                self.fail_waiters(&batch, &e);
            }
        }
    }

    /// Caches the answer and hands each subscriber its (account, tag).
    fn deliver(&mut self, batch: &Batch, fetches: &[AccountFetch]) {
        let now = Instant::now();
        let epoch = batch.dispatch_epoch.unwrap_or(0);
        let mut index = HashMap::with_capacity(batch.accounts.len());
        for (account, fetch) in batch.accounts.iter().zip(fetches) {
            if let AccountFetch::Values(values) = fetch {
                self.cache.store(account, values, epoch, now);
            }
            index.insert(account.as_str(), fetch);
        }
        for ((account, tag), subscribers) in &batch.subscribers {
            let outcome = match index.get(account.as_str()) {
                Some(AccountFetch::Values(values)) => match values.iter().find(|(t, _)| t == tag) {
                    Some((_, value)) => KeyOutcome::Value(value),
                    None => KeyOutcome::Value(&None),
                },
                Some(AccountFetch::Failed { code, info }) => KeyOutcome::Failed(*code, info),
                None => continue,
            };
            for subscriber in subscribers {
                self.deliver_key(*subscriber, tag, outcome);
            }
        }
    }

    fn deliver_key(&mut self, subscriber: Subscriber, tag: &Tag, outcome: KeyOutcome<'_>) {
        let Some(waiter) = self.waiters.get_mut(&subscriber.waiter) else {
            return;
        };
        if let Some(partial) = waiter.accounts.get_mut(subscriber.account_index) {
            match (partial, outcome) {
                (Partial::Collecting(values), KeyOutcome::Value(value)) => {
                    values.push((tag.clone(), value.clone()))
                }
                (partial, KeyOutcome::Failed(code, info)) => {
                    *partial = Partial::Failed {
                        code,
                        info: info.clone(),
                    }
                }
                (Partial::Failed { .. }, KeyOutcome::Value(_)) => {}
            }
        }
        waiter.pending = waiter.pending.saturating_sub(1);
        if waiter.pending == 0 {
            let waiter = self
                .waiters
                .remove(&subscriber.waiter)
                .expect("waiter present");
            let fetches = waiter
                .accounts
                .into_iter()
                .map(|p| match p {
                    Partial::Collecting(values) => AccountFetch::Values(values),
                    Partial::Failed { code, info } => AccountFetch::Failed { code, info },
                })
                .collect();
            let _ = waiter.reply.send(Ok(fetches));
        }
    }

    /// Re-sends each caller's share of a failed merged call on its own, ahead of the queue and
    /// keeping the original age, so the error reaches only the caller whose input caused it.
    fn isolate(&mut self, batch: &Batch) {
        self.metrics.isolation_resends.inc();
        let waiters: Vec<WaiterId> = batch
            .waiters()
            .into_iter()
            .filter(|w| self.waiters.contains_key(w))
            .rev()
            .collect();
        debug!(
            batch_id = batch.id,
            callers = waiters.len(),
            "re-sending each caller's share alone"
        );
        for waiter in waiters {
            let id = self.next_id();
            let share = batch.share_of(waiter, id, batch.opened_at);
            self.batches.insert(id, share);
            self.queue.push_front(id);
        }
    }

    fn fail_waiters(&mut self, batch: &Batch, error: &Error) {
        for id in batch.waiters() {
            if let Some(waiter) = self.waiters.remove(&id) {
                let _ = waiter.reply.send(Err(error.clone()));
            }
        }
    }

    /// Frees the batch's accounts for other batches, then places the keys that were parked
    /// behind it (for callers still waiting).
    fn release(&mut self, batch: &Batch) {
        for account in &batch.accounts {
            if self.account_batch.get(account) == Some(&batch.id) {
                self.account_batch.remove(account);
            }
        }
        for key in self.parked.remove(&batch.id).unwrap_or_default() {
            if self.waiters.contains_key(&key.subscriber.waiter) {
                self.place(&key.account, &key.tag, key.subscriber);
            }
        }
    }
}

/// Resolves once `at` has passed and the limiter grants a permit.
async fn permit_after(at: Option<Instant>, limiter: UpstreamLimiter) -> CallPermit {
    sleep_until(at).await;
    limiter.until_ready().await
}

/// Sleeps until `at`; returns at once when it has passed (a tokio sleep with a past deadline
/// still waits for the timer's next millisecond tick, which added ~1 ms to every full batch).
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at.filter(|at| *at > Instant::now()) {
        tokio::time::sleep_until(at.into()).await;
    }
}
