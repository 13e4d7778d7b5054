//! The fetch stage of `portrait_get`: what L1 missed is looked up in the fleet's shared tier
//! (one round trip for all of a request's misses, which also claims them), and what is still
//! missing is fetched through the batcher, or, for accounts a peer has claimed, awaited from
//! that peer's fetch and looked up again (fleet-wide single flight). Standalone, every miss
//! goes to the batcher.
//!
//! A waiter waits at most for the claim's remaining life and never longer than
//! `limits.max_queue_wait`; then it takes what the tier has and fetches the rest itself, so a
//! claimer that died or failed costs its waiters time, never an answer.

use std::time::Instant;

use super::lookup::Lookups;
use super::ProfileService;
use crate::batcher::AccountFetch;
use crate::cache::{AccountMiss, Claim, ProfileCache, Stamp, TierAnswer};
use crate::error::Error;
use crate::wire::{Account, RawJson, Tag};

/// Misses still to answer after a tier lookup, with their places in the fetch's answer.
#[derive(Default)]
struct Left {
    at: Vec<usize>,
    misses: Vec<AccountMiss>,
    stamps: Vec<Option<Stamp>>,
}

impl Left {
    fn push(&mut self, at: usize, miss: AccountMiss, stamp: Option<Stamp>) {
        self.at.push(at);
        self.misses.push(miss);
        self.stamps.push(stamp);
    }

    fn accounts(&self) -> Vec<Account> {
        self.misses.iter().map(|m| m.account.clone()).collect()
    }
}

impl ProfileService {
    /// Fetches what L1 missed, aligned with `misses`. `stamps`: each miss's account stamp,
    /// taken before L1 was read.
    pub(super) async fn fetch(
        &self,
        stamps: Vec<Option<Stamp>>,
        misses: Vec<AccountMiss>,
    ) -> Result<Vec<AccountFetch>, Error> {
        let asked_at = Instant::now();
        let Some(answers) = self.0.tier.lookup(&misses, true).await else {
            return self.0.batcher.fetch(misses).await;
        };
        let mut fetched = Vec::with_capacity(misses.len());
        let (mut mine, mut theirs) = (Left::default(), Left::default());
        let mut longest_claim = std::time::Duration::ZERO;
        for (i, ((miss, answer), stamp)) in misses.into_iter().zip(answers).zip(stamps).enumerate()
        {
            let claim = answer.claim;
            let (found, left) = self.take_found(miss, answer, stamp);
            fetched.push(AccountFetch::Values(found));
            let Some(left) = left else { continue };
            match claim {
                Claim::Theirs(lasts) => {
                    longest_claim = longest_claim.max(lasts);
                    theirs.push(i, left, stamp);
                }
                Claim::Mine | Claim::Unclaimed => mine.push(i, left, stamp),
            }
        }
        let deadline = asked_at + longest_claim.min(self.0.max_queue_wait);
        let (own, awaited) = tokio::join!(
            self.fetch_claimed(&mine),
            self.fetch_after_peers(&theirs, asked_at, deadline)
        );
        merge(&mut fetched, &mine.at, own?);
        merge(&mut fetched, &theirs.at, awaited?);
        Ok(fetched)
    }

    /// Stores what the tier had in L1; returns it, and the miss of the tags it lacked.
    fn take_found(
        &self,
        miss: AccountMiss,
        answer: TierAnswer,
        stamp: Option<Stamp>,
    ) -> (Vec<(Tag, Option<RawJson>)>, Option<AccountMiss>) {
        if let (false, Some(stamp)) = (answer.found.is_empty(), stamp) {
            let now = Instant::now();
            let until = now + answer.fresh_for;
            let cache = &self.0.cache;
            cache.store_until(&miss.account, &answer.found, stamp, now, until);
        }
        let has = |tag: &Tag| answer.found.iter().any(|(t, _)| t == tag);
        let left: Vec<Tag> = miss.tags.iter().filter(|t| !has(t)).cloned().collect();
        let left = (!left.is_empty()).then_some(AccountMiss {
            account: miss.account,
            tags: left,
            version: Some(answer.version),
        });
        (answer.found, left)
    }

    /// Fetches the accounts this gateway claimed; a failed fetch releases their claims at
    /// once, so the peers waiting on them fetch for themselves without waiting out the claim.
    async fn fetch_claimed(&self, mine: &Left) -> Result<Vec<AccountFetch>, Error> {
        if mine.misses.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.0.batcher.fetch(mine.misses.clone()).await;
        let failed: Vec<Account> = match &result {
            Err(_) => mine.accounts(),
            Ok(fetches) => mine
                .misses
                .iter()
                .zip(fetches)
                .filter(|(_, f)| matches!(f, AccountFetch::Failed { .. }))
                .map(|(m, _)| m.account.clone())
                .collect(),
        };
        if !failed.is_empty() {
            let tier = self.0.tier.clone();
            tokio::spawn(async move { tier.release(&failed).await });
        }
        result
    }

    /// Waits for peers' fetches of the accounts they claimed (until `deadline`), looks them up
    /// again, and fetches what is still missing itself.
    async fn fetch_after_peers(
        &self,
        theirs: &Left,
        asked_at: Instant,
        deadline: Instant,
    ) -> Result<Vec<AccountFetch>, Error> {
        if theirs.misses.is_empty() {
            return Ok(Vec::new());
        }
        let tier = &self.0.tier;
        tier.wait_filled(&theirs.accounts(), asked_at, deadline)
            .await;
        let Some(answers) = tier.lookup(&theirs.misses, false).await else {
            return self.0.batcher.fetch(theirs.misses.clone()).await;
        };
        let mut fetched = Vec::with_capacity(theirs.misses.len());
        let mut rest = Left::default();
        let pairs = theirs
            .misses
            .iter()
            .cloned()
            .zip(answers)
            .zip(&theirs.stamps);
        for (i, ((miss, answer), stamp)) in pairs.enumerate() {
            let (found, left) = self.take_found(miss, answer, *stamp);
            fetched.push(AccountFetch::Values(found));
            if let Some(left) = left {
                rest.push(i, left, *stamp);
            }
        }
        if !rest.misses.is_empty() {
            let more = self.0.batcher.fetch(rest.misses).await?;
            merge(&mut fetched, &rest.at, more);
        }
        Ok(fetched)
    }
}

/// Puts each of `more` (fetched for the accounts at `at`) into `fetched`: values join what
/// the tier had, a failure replaces it.
fn merge(fetched: &mut [AccountFetch], at: &[usize], more: Vec<AccountFetch>) {
    for (&i, fetch) in at.iter().zip(more) {
        match (&mut fetched[i], fetch) {
            (AccountFetch::Values(have), AccountFetch::Values(more)) => have.extend(more),
            (slot, failed) => *slot = failed,
        }
    }
}

/// Each miss's account stamp now, for fetches not tied to an earlier L1 read (refreshes).
pub(super) fn fetch_stamps_now(cache: &ProfileCache, misses: &[AccountMiss]) -> Vec<Option<Stamp>> {
    misses
        .iter()
        .map(|m| Some(cache.stamp(m.account.as_str())))
        .collect()
}

/// Each miss's account stamp (aligned with the misses), taken before L1 was read.
pub(super) fn fetch_stamps(found: &Lookups<'_>, misses: usize) -> Vec<Option<Stamp>> {
    let mut stamps = vec![None; misses];
    for view in &found.views {
        if let Some(i) = view.fetched {
            stamps[i] = Some(view.stamp);
        }
    }
    stamps
}
