//! One upstream `portrait_get` call: pending (filling, waiting for a permit) or dispatched.
//!
//! A batch asks for the union of its tags for each of its accounts, and remembers which
//! caller waits on which (account, tag). It also turns the upstream's answer into one
//! [`AccountFetch`] per account ([`split_answer`], run on the dispatching task), and encodes its
//! own request body. Owned by the worker only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::AccountFetch;
use crate::cache::Stamp;
use crate::error::Error;
use crate::wire::{self, Account, RawJson, Tag};

/// Identifies a caller's fetch inside the worker.
pub type WaiterId = u64;

/// Identifies a batch inside the worker.
pub type BatchId = u64;

/// Who waits for an (account, tag): the caller and the index of the account in its misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub waiter: WaiterId,
    pub account_index: usize,
}

/// A pending or dispatched upstream call.
#[derive(Debug)]
pub struct Batch {
    pub id: BatchId,
    /// Accounts in request order, unique.
    pub accounts: Vec<Account>,
    /// The union of the tags asked for, unique, in first-asked order.
    pub tags: Vec<Tag>,
    /// Who waits for each (account, tag).
    pub subscribers: HashMap<(Account, Tag), Vec<Subscriber>>,
    /// When the batch was opened: its window and its queue deadline count from here.
    pub opened_at: Instant,
    /// Set for a caller's share re-sent alone: no one else joins it.
    pub solo_owner: Option<WaiterId>,
    /// Each account's invalidation stamp when the call was sent (`accounts` order); `None`
    /// while pending.
    pub dispatch_stamps: Option<Vec<Stamp>>,
}

impl Batch {
    pub fn new(id: BatchId, opened_at: Instant, solo_owner: Option<WaiterId>) -> Batch {
        Batch {
            id,
            accounts: Vec::new(),
            tags: Vec::new(),
            subscribers: HashMap::new(),
            opened_at,
            solo_owner,
            dispatch_stamps: None,
        }
    }

    /// Whether another account can be added: the batch is shared, not yet sent, not full.
    pub fn accepts(&self, max_accounts: usize) -> bool {
        self.solo_owner.is_none()
            && self.dispatch_stamps.is_none()
            && self.accounts.len() < max_accounts
    }

    /// Adds (account, tag) with its first subscriber.
    pub fn add(&mut self, account: &Account, tag: &Tag, subscriber: Subscriber) {
        if !self.accounts.contains(account) {
            self.accounts.push(account.clone());
        }
        if !self.tags.contains(tag) {
            self.tags.push(tag.clone());
        }
        self.subscribe(account, tag, subscriber);
    }

    /// Adds a subscriber to an (account, tag) this batch fetches.
    pub fn subscribe(&mut self, account: &Account, tag: &Tag, subscriber: Subscriber) {
        self.subscribers
            .entry((account.clone(), tag.clone()))
            .or_default()
            .push(subscriber);
    }

    pub fn is_full(&self, max_accounts: usize) -> bool {
        self.accounts.len() >= max_accounts
    }

    /// Every caller waiting on this batch, each once.
    pub fn waiters(&self) -> Vec<WaiterId> {
        let mut ids: Vec<WaiterId> = self
            .subscribers
            .values()
            .flatten()
            .map(|s| s.waiter)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The part of this batch that `waiter` asked for, as a batch of its own.
    pub fn share_of(&self, waiter: WaiterId, id: BatchId, now: Instant) -> Batch {
        let mut share = Batch::new(id, now, Some(waiter));
        for ((account, tag), subs) in &self.subscribers {
            for s in subs.iter().filter(|s| s.waiter == waiter) {
                share.add(account, tag, *s);
            }
        }
        share
    }

    /// The request body for this batch.
    pub fn encode_request(&self) -> Vec<u8> {
        let accounts: Vec<&str> = self.accounts.iter().map(Account::as_str).collect();
        let tags: Vec<&str> = self.tags.iter().map(Tag::as_str).collect();
        serde_json::to_vec(&serde_json::json!({ "To_Account": accounts, "TagList": tags }))
            .expect("serialising strings cannot fail")
    }

    /// The only custom tag of this batch, if it has exactly one: then an upstream 40009 for
    /// this batch names it.
    pub fn sole_custom_tag(&self) -> Option<&Tag> {
        let mut custom = self.tags.iter().filter(|t| t.is_custom());
        match (custom.next(), custom.next()) {
            (Some(tag), None) => Some(tag),
            _ => None,
        }
    }
}

/// Decodes an upstream answer for the batch's `accounts` and `tags`: one [`AccountFetch`] per
/// account, aligned with `accounts`. Runs on the dispatching task, not on the worker.
pub fn split_answer(
    body: &[u8],
    accounts: &[Account],
    tags: &[Tag],
) -> Result<Vec<AccountFetch>, Error> {
    let answer = wire::decode_upstream_get(body)?;
    let by_account: HashMap<&str, &wire::UpstreamProfile<'_>> = answer
        .profiles
        .iter()
        .map(|p| (p.account.as_ref(), p))
        .collect();
    let fetches = accounts
        .iter()
        .map(|account| match by_account.get(account.as_str()) {
            None => AccountFetch::Failed {
                code: crate::error::codes::GATEWAY_UPSTREAM_DECODE,
                info: Arc::from("tim-gateway: the upstream answer left this account out"),
            },
            Some(p) if p.result_code != 0 => AccountFetch::Failed {
                code: p.result_code,
                info: Arc::from(p.result_info.as_ref()),
            },
            Some(p) => AccountFetch::Values(
                tags.iter()
                    .map(|tag| {
                        let value = p
                            .items
                            .iter()
                            .find(|item| item.tag == tag.as_str())
                            .map(|item| own(item.value));
                        (tag.clone(), value)
                    })
                    .collect(),
            ),
        })
        .collect();
    Ok(fetches)
}

fn own(value: &RawValue) -> RawJson {
    Arc::from(value.to_owned())
}
