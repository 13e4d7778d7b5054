//! Admission: a caller's misses join the fetch already carrying their account, wait for it
//! (parked) when it lacks a tag they need, or go into an open batch, one account per batch.

use std::time::Instant;

use tracing::debug;

use super::{BatchWorker, KeyOutcome, ParkedKey, Partial, Placement, Waiter};
use crate::batcher::batch::{Batch, BatchId, Subscriber};
use crate::batcher::FetchMessage;
use crate::wire::{Account, Tag};

impl BatchWorker {
    /// Registers a caller: joins keys already being fetched, queues the rest.
    pub(super) fn admit(&mut self, message: FetchMessage) {
        let FetchMessage {
            misses,
            reply,
            span,
            request_id,
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
        let versions = misses.iter().map(|m| m.version).collect();
        self.waiters.insert(
            waiter,
            Waiter {
                reply,
                accounts,
                pending,
                versions,
                request_id,
                trace: crate::traces::caller_of(&span),
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
        self.own.coalesced_keys.inc_by(joined);
        debug!(parent: &span, accounts = misses.len(), joined, "misses admitted");
    }

    /// Puts one (account, tag) where it will be fetched: into the batch that already holds
    /// the account if it is still pending or already asks for the tag, parked behind it if it
    /// was dispatched without the tag (or before the account was invalidated), else into the
    /// open batch.
    pub(super) fn place(
        &mut self,
        account: &Account,
        tag: &Tag,
        subscriber: Subscriber,
    ) -> Placement {
        let Some(id) = self.account_batch.get(account).copied() else {
            // The caller looked the cache up before its message got here; a fetch may have
            // filled it since. The worker is the cache's only writer, so this check is final.
            let cached = self.cache.get(account.as_str());
            if let Some(value) = cached.and_then(|c| c.fresh(tag, Instant::now())) {
                self.deliver_key(subscriber, tag, KeyOutcome::Value(&value));
                return Placement::Cached;
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
        // Joining means another caller already waits on this very (account, tag); a tag the
        // batch asks for only because another account needed it is new work, not a join.
        let awaited = batch
            .subscribers
            .contains_key(&(account.clone(), tag.clone()));
        let dispatched = batch.dispatch_stamps.as_deref().map(|stamps| {
            let i = batch.accounts.iter().position(|a| a == account);
            i.and_then(|i| stamps.get(i).copied())
        });
        match dispatched {
            None => {
                batch.add(account, tag, subscriber);
                if awaited {
                    Placement::Joined
                } else {
                    Placement::Queued
                }
            }
            Some(Some(stamp)) if asks_for_tag && self.cache.is_current(stamp) => {
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
}
