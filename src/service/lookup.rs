//! The lookup stage of `portrait_get`: each distinct (account, tag) of a request read from L1
//! once, into one view per distinct account (what the cache had, values stale but allowed,
//! a remembered "account not found") and the misses left for the fetch stage (fetch.rs).
//! Repeated accounts are found by a linear scan for short lists, a map for long ones.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::ProfileService;
use crate::cache::{AccountFailure, AccountMiss, CachedAccount, Lookup, Stamp};
use crate::wire::{Account, PortraitGetRequest, RawJson, Tag};

/// One distinct account of a request: what the cache had, and where its misses went.
pub(super) struct AccountView<'a> {
    pub(super) name: &'a str,
    /// Taken before `cached` was read (what a kept answer checks).
    pub(super) stamp: Stamp,
    pub(super) cached: Option<Arc<CachedAccount>>,
    /// Index into the fetch answer when some of its tags missed.
    pub(super) fetched: Option<usize>,
    /// Values past their TTL answered anyway: inside the revalidate window (a refresh is on its
    /// way), or because the fetch failed (serve-stale).
    pub(super) stale: Vec<(Tag, Option<RawJson>)>,
    /// Tencent recently said this account does not exist: answered so again, not fetched.
    pub(super) failed: Option<AccountFailure>,
}

/// What the cache had for a request.
pub(super) struct Lookups<'a> {
    /// One per distinct account, in first-seen order.
    pub(super) views: Vec<AccountView<'a>>,
    /// For each `To_Account` position, its index in `views`.
    pub(super) positions: Vec<usize>,
    /// The (account, tags) to fetch; `AccountView::fetched` indexes the answer.
    pub(super) misses: Vec<AccountMiss>,
    /// Distinct pairs found with a value, and cached as unset.
    pub(super) hits: u64,
    pub(super) absent: u64,
    /// When the first of the pairs found goes stale.
    pub(super) fresh_until: Option<Instant>,
    /// Accounts with values inside the revalidate window, to refresh in the background.
    pub(super) revalidate: Vec<AccountMiss>,
    /// No stale value and no remembered failure was used: an all-hit answer may be kept whole.
    pub(super) keepable: bool,
}

/// Finds repeated accounts in a request: a linear scan for short lists, a map for long ones.
enum DistinctAccounts<'a> {
    Scan,
    Map(HashMap<&'a str, usize, foldhash::fast::RandomState>),
}

impl<'a> DistinctAccounts<'a> {
    /// Past this many accounts a hash map beats comparing against every earlier account.
    const SCAN_LIMIT: usize = 16;

    fn new(accounts: usize) -> Self {
        if accounts > Self::SCAN_LIMIT {
            DistinctAccounts::Map(HashMap::with_capacity_and_hasher(
                accounts,
                Default::default(),
            ))
        } else {
            DistinctAccounts::Scan
        }
    }

    /// `name`'s index among the distinct `names` seen so far.
    fn get<'n>(&self, name: &str, mut names: impl Iterator<Item = &'n str>) -> Option<usize> {
        match self {
            DistinctAccounts::Scan => names.position(|n| n == name),
            DistinctAccounts::Map(map) => map.get(name).copied(),
        }
    }

    fn insert(&mut self, name: &'a str, view: usize) {
        if let DistinctAccounts::Map(map) = self {
            map.insert(name, view);
        }
    }
}

impl ProfileService {
    /// Looks each distinct (account, tag) up. Returns one view per distinct account, the view
    /// of each `To_Account` position, and the misses to fetch.
    pub(super) fn lookup<'r>(
        &self,
        request: &'r PortraitGetRequest<'_>,
        now: Instant,
    ) -> Lookups<'r> {
        let tags = distinct(&request.tags);
        let mut found = Lookups {
            views: Vec::with_capacity(request.accounts.len()),
            positions: Vec::with_capacity(request.accounts.len()),
            misses: Vec::new(),
            hits: 0,
            absent: 0,
            fresh_until: None,
            revalidate: Vec::new(),
            keepable: true,
        };
        let revalidate_window = self.0.stale_while_revalidate;
        // A remembered "account not found" answers only requests of standard tags: Tencent
        // checks custom tags first (an unknown one is 40009 for the whole call, whatever the
        // accounts), and this gateway cannot know every custom tag is still defined.
        let failures_apply = tags.iter().all(|t| t.standard_index().is_some());
        let mut seen = DistinctAccounts::new(request.accounts.len());
        let mut missed = 0u64;
        for name in request.accounts.iter().map(Cow::as_ref) {
            if let Some(view) = seen.get(name, found.views.iter().map(|v| v.name)) {
                found.positions.push(view);
                continue;
            }
            let stamp = self.0.cache.stamp(name);
            let cached = self.0.cache.get(name);
            let failed = (cached.is_none() && failures_apply)
                .then(|| self.0.cache.failure(name))
                .flatten();
            let (mut missing, mut stale) = (Vec::new(), Vec::new());
            for tag in tags.iter().filter(|_| failed.is_none()) {
                let (lookup, until) = cached
                    .as_ref()
                    .map_or((Lookup::Miss, None), |c| c.lookup_until(tag, now));
                match lookup {
                    Lookup::Value(_) => found.hits += 1,
                    Lookup::Absent => found.absent += 1,
                    Lookup::Miss => {
                        let old = cached
                            .as_ref()
                            .and_then(|c| c.stale(tag, now, revalidate_window));
                        match old {
                            Some(value) => stale.push(((*tag).clone(), value)),
                            None => missing.push((*tag).clone()),
                        }
                    }
                }
                if let Some(until) = until {
                    found.fresh_until = Some(found.fresh_until.map_or(until, |f| f.min(until)));
                }
            }
            missed += missing.len() as u64;
            found.keepable &= stale.is_empty() && failed.is_none();
            if !stale.is_empty() {
                found.revalidate.push(AccountMiss {
                    account: Account::from(name),
                    tags: stale.iter().map(|(t, _)| t.clone()).collect(),
                    version: None,
                });
            }
            let fetched = (!missing.is_empty()).then(|| {
                found.misses.push(AccountMiss {
                    account: Account::from(name),
                    tags: missing,
                    version: None,
                });
                found.misses.len() - 1
            });
            seen.insert(name, found.views.len());
            found.positions.push(found.views.len());
            found.views.push(AccountView {
                name,
                stamp,
                cached,
                fetched,
                stale,
                failed,
            });
        }
        let stale: usize = found.revalidate.iter().map(|m| m.tags.len()).sum();
        self.0.metrics.cache_stale.inc_by(stale as u64);
        self.0.metrics.cache_hits.inc_by(found.hits);
        self.0.metrics.cache_absent.inc_by(found.absent);
        self.0.metrics.cache_misses.inc_by(missed);
        found
    }
}

/// The distinct tags of a request, in first-seen order.
fn distinct(tags: &[Tag]) -> Vec<&Tag> {
    let mut out: Vec<&Tag> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}
