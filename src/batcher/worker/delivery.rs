//! Completion: an upstream call's answer is cached, split back to every caller waiting on its
//! keys, or re-sent per caller when one caller's input failed it; parked keys are placed again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinError;
use tracing::debug;

use super::{BatchWorker, FetchResult, KeyOutcome, Partial};
use crate::batcher::batch::{Batch, Subscriber, WaiterId};
use crate::batcher::AccountFetch;
use crate::cache::Stamp;
use crate::cache::TierWrite;
use crate::error::{codes, Error};
use crate::wire::Tag;

impl BatchWorker {
    pub(super) fn on_complete(
        &mut self,
        joined: Result<(tokio::task::Id, FetchResult), JoinError>,
    ) {
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
        let outcome = result.as_ref().map(|_| ());
        self.path
            .breaker()
            .record(outcome, batch.probe, Instant::now());
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
        let stamps = batch.dispatch_stamps.as_deref().unwrap_or_default();
        let mut index = HashMap::with_capacity(batch.accounts.len());
        let mut fleet_writes = Vec::new();
        for (i, (account, fetch)) in batch.accounts.iter().zip(fetches).enumerate() {
            if let (AccountFetch::Failed { code, info }, Some(stamp)) = (fetch, stamps.get(i)) {
                if *code == codes::ACCOUNT_NOT_FOUND {
                    self.cache
                        .remember_failure(account, (*code, info.clone()), *stamp);
                }
            }
            if let (AccountFetch::Values(values), Some(stamp)) = (fetch, stamps.get(i)) {
                match batch.fleet_versions.get(i).copied().flatten() {
                    Some(version) => fleet_writes.push((
                        TierWrite {
                            account: account.clone(),
                            version,
                            values: values.clone(),
                        },
                        *stamp,
                    )),
                    None => self.cache.store(account, values, *stamp, now),
                }
            }
            index.insert(account.as_str(), fetch);
        }
        self.write_through_fleet(fleet_writes);
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

    /// Writes values to the fleet's tier, then to L1 those whose version still held there:
    /// values an invalidation anywhere in the fleet overtook are cached nowhere. When Redis
    /// does not answer, L1 alone takes them, as on a standalone gateway.
    fn write_through_fleet(&self, writes: Vec<(TierWrite, Stamp)>) {
        let Some(tier) = self.tier.shared().filter(|_| !writes.is_empty()).cloned() else {
            return;
        };
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let (writes, stamps): (Vec<TierWrite>, Vec<Stamp>) = writes.into_iter().unzip();
            let written = tier.put(&writes).await;
            let now = Instant::now();
            for (i, (write, stamp)) in writes.iter().zip(stamps).enumerate() {
                if written.as_ref().is_none_or(|w| w.get(i) == Some(&true)) {
                    cache.store(&write.account, &write.values, stamp, now);
                }
            }
        });
    }

    pub(super) fn deliver_key(
        &mut self,
        subscriber: Subscriber,
        tag: &Tag,
        outcome: KeyOutcome<'_>,
    ) {
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
        self.own.isolation_resends.inc();
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

    pub(super) fn fail_waiters(&mut self, batch: &Batch, error: &Error) {
        for id in batch.waiters() {
            if let Some(waiter) = self.waiters.remove(&id) {
                let _ = waiter.reply.send(Err(error.clone()));
            }
        }
    }

    /// Frees the batch's accounts for other batches, then places the keys that were parked
    /// behind it (for callers still waiting).
    pub(super) fn release(&mut self, batch: &Batch) {
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
