//! One upstream `portrait_get` call: pending (filling, waiting for a permit) or dispatched.
//!
//! A batch asks for the union of its tags for each of its accounts, and remembers which
//! caller waits on which (account, tag). It also turns the upstream's answer into one
//! [`AccountFetch`] per account ([`split_answer`], run on the dispatching task), and encodes its
//! own request body. Owned by the worker only.
//!
//! The upstream's answer is read strictly: an account that appears twice, or a tag that appears
//! twice in one account's `ProfileItem`, makes that account's answer ambiguous, so it fails with
//! 91003 (never cached, never last-copy-wins) while the rest of the batch is served. Accounts and
//! tags that were not asked for are ignored, so they can never reach the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::AccountFetch;
use crate::cache::Stamp;
use crate::error::Error;
use crate::wire::{self, Account, RawJson, Tag};

/// Identifies a caller's fetch inside the worker.
pub(super) type WaiterId = u64;

/// Identifies a batch inside the worker.
pub(super) type BatchId = u64;

/// Who waits for an (account, tag): the caller and the index of the account in its misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Subscriber {
    pub waiter: WaiterId,
    pub account_index: usize,
}

/// A pending or dispatched upstream call.
#[derive(Debug)]
pub(super) struct Batch {
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
    /// In a fleet, each account's shared-tier version read before the call was sent
    /// (`accounts` order; empty outside a fleet, `None` where no caller read one).
    pub fleet_versions: Vec<Option<u64>>,
    /// Sent as the half-open breaker's one probe: its outcome closes or re-opens it.
    pub probe: bool,
}

impl Batch {
    pub(super) fn new(id: BatchId, opened_at: Instant, solo_owner: Option<WaiterId>) -> Batch {
        Batch {
            id,
            accounts: Vec::new(),
            tags: Vec::new(),
            subscribers: HashMap::new(),
            opened_at,
            solo_owner,
            dispatch_stamps: None,
            fleet_versions: Vec::new(),
            probe: false,
        }
    }

    /// Whether another account can be added: the batch is shared, not yet sent, not full.
    pub(super) fn accepts(&self, max_accounts: usize) -> bool {
        self.solo_owner.is_none()
            && self.dispatch_stamps.is_none()
            && self.accounts.len() < max_accounts
    }

    /// Adds (account, tag) with its first subscriber.
    pub(super) fn add(&mut self, account: &Account, tag: &Tag, subscriber: Subscriber) {
        if !self.accounts.contains(account) {
            self.accounts.push(account.clone());
        }
        if !self.tags.contains(tag) {
            self.tags.push(tag.clone());
        }
        self.subscribe(account, tag, subscriber);
    }

    /// Adds a subscriber to an (account, tag) this batch fetches.
    pub(super) fn subscribe(&mut self, account: &Account, tag: &Tag, subscriber: Subscriber) {
        self.subscribers
            .entry((account.clone(), tag.clone()))
            .or_default()
            .push(subscriber);
    }

    pub(super) fn is_full(&self, max_accounts: usize) -> bool {
        self.accounts.len() >= max_accounts
    }

    /// Every caller waiting on this batch, each once.
    pub(super) fn waiters(&self) -> Vec<WaiterId> {
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
    pub(super) fn share_of(&self, waiter: WaiterId, id: BatchId, now: Instant) -> Batch {
        let mut share = Batch::new(id, now, Some(waiter));
        for ((account, tag), subs) in &self.subscribers {
            for s in subs.iter().filter(|s| s.waiter == waiter) {
                share.add(account, tag, *s);
            }
        }
        share
    }

    /// The request body for this batch.
    pub(super) fn encode_request(&self) -> Vec<u8> {
        let accounts: Vec<&str> = self.accounts.iter().map(Account::as_str).collect();
        let tags: Vec<&str> = self.tags.iter().map(Tag::as_str).collect();
        serde_json::to_vec(&serde_json::json!({ "To_Account": accounts, "TagList": tags }))
            .expect("serialising strings cannot fail")
    }

    /// The only custom tag of this batch, if it has exactly one: then an upstream 40009 for
    /// this batch names it.
    pub(super) fn sole_custom_tag(&self) -> Option<&Tag> {
        let mut custom = self.tags.iter().filter(|t| t.is_custom());
        match (custom.next(), custom.next()) {
            (Some(tag), None) => Some(tag),
            _ => None,
        }
    }
}

/// Decodes an upstream answer for the batch's `accounts` and `tags`: one [`AccountFetch`] per
/// account, aligned with `accounts`. Runs on the dispatching task, not on the worker.
pub(crate) fn split_answer(
    body: &[u8],
    accounts: &[Account],
    tags: &[Tag],
) -> Result<Vec<AccountFetch>, Error> {
    let answer = wire::decode_upstream_get(body)?;
    // `None` marks an account the answer holds more than once.
    let mut by_account: HashMap<&str, Option<&wire::UpstreamProfile<'_>>> =
        HashMap::with_capacity(answer.profiles.len());
    for profile in &answer.profiles {
        by_account
            .entry(profile.account.as_ref())
            .and_modify(|seen| *seen = None)
            .or_insert(Some(profile));
    }
    let fetches = accounts
        .iter()
        .map(|account| match by_account.get(account.as_str()) {
            None => malformed("the upstream answer left this account out"),
            Some(None) => malformed("the upstream answer holds this account more than once"),
            Some(Some(p)) if p.result_code != 0 => AccountFetch::Failed {
                code: p.result_code,
                info: Arc::from(p.result_info.as_ref()),
            },
            Some(Some(p)) => account_values(p, tags),
        })
        .collect();
    Ok(fetches)
}

/// The asked-for `tags` of one successful account, `None` where unset; a tag given twice makes
/// the whole account malformed.
fn account_values(profile: &wire::UpstreamProfile<'_>, tags: &[Tag]) -> AccountFetch {
    let mut values = Vec::with_capacity(tags.len());
    for tag in tags {
        let mut copies = profile.items.iter().filter(|item| item.tag == tag.as_str());
        let value = copies.next().map(|item| own(item.value));
        if copies.next().is_some() {
            return malformed("the upstream answer holds a tag of this account more than once");
        }
        values.push((tag.clone(), value));
    }
    AccountFetch::Values(values)
}

/// A per-account 91003: the upstream's answer for this account cannot be trusted.
fn malformed(why: &'static str) -> AccountFetch {
    AccountFetch::Failed {
        code: crate::error::codes::GATEWAY_UPSTREAM_DECODE,
        info: Arc::from(why),
    }
}

fn own(value: &RawValue) -> RawJson {
    Arc::from(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &str, accounts: &[&str], tags: &[&str]) -> Vec<AccountFetch> {
        let accounts: Vec<Account> = accounts.iter().map(|a| Account::from(*a)).collect();
        let tags: Vec<Tag> = tags.iter().map(|t| Tag::parse(t).expect("tag")).collect();
        split_answer(body.as_bytes(), &accounts, &tags).expect("decodes")
    }

    /// Each fetch as text: `code` for failures, `tag=value|-` pairs for values.
    fn show(fetches: &[AccountFetch]) -> Vec<String> {
        fetches
            .iter()
            .map(|f| match f {
                AccountFetch::Failed { code, .. } => code.to_string(),
                AccountFetch::Values(values) => values
                    .iter()
                    .map(|(t, v)| format!("{}={}", t.as_str(), v.as_ref().map_or("-", |v| v.get())))
                    .collect::<Vec<_>>()
                    .join(","),
            })
            .collect()
    }

    const NICK: &str = "Tag_Profile_IM_Nick";
    const GENDER: &str = "Tag_Profile_IM_Gender";

    fn answer(items: &str) -> String {
        format!(
            r#"{{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","UserProfileItem":[{items}]}}"#
        )
    }

    #[test]
    fn an_account_answered_twice_fails_alone_with_91003() {
        let body = answer(concat!(
            r#"{"To_Account":"a","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"first"}],"ResultCode":0},"#,
            r#"{"To_Account":"b","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"bee"}],"ResultCode":0},"#,
            r#"{"To_Account":"a","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"second"}],"ResultCode":0}"#,
        ));
        let fetches = split(&body, &["a", "b"], &[NICK]);
        assert_eq!(show(&fetches), ["91003", r#"Tag_Profile_IM_Nick="bee""#]);
    }

    #[test]
    fn a_tag_answered_twice_for_one_account_fails_that_account() {
        let body = answer(concat!(
            r#"{"To_Account":"a","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"x"},"#,
            r#"{"Tag":"Tag_Profile_IM_Nick","Value":"y"}],"ResultCode":0},"#,
            r#"{"To_Account":"b","ProfileItem":[],"ResultCode":0}"#,
        ));
        let fetches = split(&body, &["a", "b"], &[NICK]);
        assert_eq!(show(&fetches), ["91003", "Tag_Profile_IM_Nick=-"]);
    }

    #[test]
    fn foreign_accounts_and_tags_are_ignored() {
        let body = answer(concat!(
            r#"{"To_Account":"stranger","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"s"}],"ResultCode":0},"#,
            r#"{"To_Account":"a","ProfileItem":[{"Tag":"Tag_Profile_IM_Gender","Value":"Gender_Type_Male"},"#,
            r#"{"Tag":"Tag_Profile_Custom_Evil","Value":1},{"Tag":"Tag_Profile_IM_Gender","Value":"again"},"#,
            r#"{"Tag":"Tag_Profile_IM_Nick","Value":"nick"}],"ResultCode":0}"#,
        ));
        // Gender is duplicated but was not asked for: ignored like the custom tag.
        let fetches = split(&body, &["a"], &[NICK]);
        assert_eq!(show(&fetches), [r#"Tag_Profile_IM_Nick="nick""#]);
        let fetches = split(&body, &["a"], &[NICK, GENDER]);
        assert_eq!(show(&fetches), ["91003"], "asked for, the duplicate counts");
    }

    #[test]
    fn a_missing_account_and_a_per_account_failure_keep_their_codes() {
        let body = answer(r#"{"To_Account":"b","ResultCode":40006,"ResultInfo":"nope"}"#);
        let fetches = split(&body, &["a", "b"], &[NICK]);
        assert_eq!(show(&fetches), ["91003", "40006"]);
    }
}
