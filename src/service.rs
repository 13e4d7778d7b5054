//! ProfileService: the policy of each API, one small step per function, with no HTTP in sight.
//!
//! `portrait_get`: a body answered wholly from the cache before is served again as it was while
//! still valid (answers.rs). Otherwise: decode and validate -> answer known-missing tags
//! locally -> look every (account, tag) up in the cache -> fetch the misses (service/fetch.rs:
//! the fleet's shared tier, a peer's claimed fetch, the batcher) -> assemble the answer in
//! `To_Account` and `TagList` order. When every pair hits, no
//! batcher, limiter or lock is touched, and the answer is kept by body for the next caller.
//!
//! `portrait_set` is in `service/set.rs`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::answers::{AnswerCache, CachedAnswer};
use crate::batcher::{AccountFetch, Batcher};
use crate::cache::{
    AccountFailure, AccountMiss, CacheTier, CachedAccount, Lookup, ProfileCache, Stamp,
};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::upstream::UpstreamPath;
use crate::wire::{self, Account, PortraitGetRequest, RawJson, ResponseWriter, Tag};

mod fetch;
mod hit;
mod set;
mod stale;

/// What the caches hold, read for the size gauges at scrape time.
pub struct CacheSizes {
    /// Cached (account, tag) pairs.
    pub pairs: u64,
    /// Bytes of whole answers kept by body.
    pub answer_bytes: u64,
    /// Bytes of answer entries rendered into accounts.
    pub rendered_bytes: u64,
}

/// The gateway's API logic; cheap to clone.
#[derive(Clone)]
pub struct ProfileService(Arc<Inner>);

struct Inner {
    answers: AnswerCache,
    cache: ProfileCache,
    /// What stands behind `cache`: nothing, or the fleet's shared tier.
    tier: CacheTier,
    batcher: Batcher,
    /// The client, limiter, breaker and retries of `portrait_set`.
    set_path: UpstreamPath,
    metrics: Metrics,
    max_queue_wait: Duration,
    /// `cache.stale_if_error_seconds`.
    stale_if_error: Duration,
    /// `cache.stale_while_revalidate_seconds`.
    stale_while_revalidate: Duration,
    /// Accounts being refreshed in the background: at most one refresh each at a time.
    refreshing: parking_lot::Mutex<std::collections::HashSet<Account>>,
}

/// One distinct account of a request: what the cache had, and where its misses went.
struct AccountView<'a> {
    name: &'a str,
    /// Taken before `cached` was read (what a kept answer checks).
    stamp: Stamp,
    cached: Option<Arc<CachedAccount>>,
    /// Index into the fetch answer when some of its tags missed.
    fetched: Option<usize>,
    /// Values past their TTL answered anyway: inside the revalidate window (a refresh is on its
    /// way), or because the fetch failed (serve-stale).
    stale: Vec<(Tag, Option<RawJson>)>,
    /// Tencent recently said this account does not exist: answered so again, not fetched.
    failed: Option<AccountFailure>,
}

/// What the cache had for a request.
struct Lookups<'a> {
    /// One per distinct account, in first-seen order.
    views: Vec<AccountView<'a>>,
    /// For each `To_Account` position, its index in `views`.
    positions: Vec<usize>,
    /// The (account, tags) to fetch; `AccountView::fetched` indexes the answer.
    misses: Vec<AccountMiss>,
    /// Distinct pairs found with a value, and cached as unset.
    hits: u64,
    absent: u64,
    /// When the first of the pairs found goes stale.
    fresh_until: Option<Instant>,
    /// Accounts with values inside the revalidate window, to refresh in the background.
    revalidate: Vec<AccountMiss>,
    /// No stale value and no remembered failure was used: an all-hit answer may be kept whole.
    keepable: bool,
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
    /// Wires the service to its caches, batcher and upstream.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        answers: AnswerCache,
        cache: ProfileCache,
        tier: CacheTier,
        batcher: Batcher,
        set_path: UpstreamPath,
        metrics: Metrics,
        config: &Config,
    ) -> ProfileService {
        ProfileService(Arc::new(Inner {
            answers,
            cache,
            tier,
            batcher,
            set_path,
            metrics,
            max_queue_wait: config.limits.max_queue_wait,
            stale_if_error: config.cache.stale_if_error,
            stale_while_revalidate: config.cache.stale_while_revalidate,
            refreshing: parking_lot::Mutex::new(std::collections::HashSet::new()),
        }))
    }

    /// The breakers of every upstream API, for readiness reports.
    pub fn breakers(&self) -> [&crate::breaker::Breaker; 2] {
        [self.0.batcher.breaker(), self.0.set_path.breaker()]
    }

    /// How much the caches hold, for the scrape-time gauges.
    pub fn cache_sizes(&self) -> CacheSizes {
        CacheSizes {
            pairs: self.0.cache.weighted_size(),
            answer_bytes: self.0.answers.weighted_size(),
            rendered_bytes: self.0.cache.rendered_bytes(),
        }
    }

    /// Answers a `portrait_get` body exactly as Tencent would answer it alone.
    pub async fn portrait_get(&self, body: &[u8]) -> Result<Bytes, Error> {
        let now = Instant::now();
        if let Some(answer) = self.cached_answer(body, now) {
            return Ok(answer);
        }
        let request = wire::decode_portrait_get(body)?;
        self.answer_known_missing_tags(&request)?;
        if let Some(hit) = self.answer_all_hit(&request, now) {
            return Ok(self.all_hit_answer(body, hit));
        }
        let mut found = self.lookup(&request, now);
        self.revalidate(std::mem::take(&mut found.revalidate));
        if found.misses.is_empty() {
            let answer = Bytes::from(self.assemble(&request, &found, &[], now));
            if let Some(fresh_until) = found.fresh_until.filter(|_| found.keepable) {
                self.keep_answer(body, || CachedAnswer {
                    body: answer.clone(),
                    fresh_until,
                    sources: found.views.iter().map(|v| v.stamp).collect(),
                    hits: found.hits,
                    absent: found.absent,
                });
            }
            return Ok(answer);
        }
        let misses = std::mem::take(&mut found.misses);
        let stamps = fetch_stamps(&found, misses.len());
        // Serve-stale needs the misses again only when the fetch fails; copied only if enabled.
        let kept = (!self.0.stale_if_error.is_zero()).then(|| misses.clone());
        // Boxed: a hit's future need not be as large as a fetch's (hyper moves it per request).
        let fetched = match (Box::pin(self.fetch(stamps, misses)).await, kept) {
            (Ok(fetched), _) => fetched,
            (Err(e), Some(misses)) if e.is_outage() => {
                self.stale_on_error(&mut found, &misses, e, now)?
            }
            (Err(e), _) => return Err(e),
        };
        Ok(Bytes::from(self.assemble(&request, &found, &fetched, now)))
    }

    /// A still-valid answer kept for exactly this body, counted as the pair lookups it saves.
    fn cached_answer(&self, body: &[u8], now: Instant) -> Option<Bytes> {
        if !self.0.answers.is_enabled() {
            return None;
        }
        let metrics = &self.0.metrics;
        let Some(answer) = self.0.answers.get(body, now) else {
            metrics.answer_cache_misses.inc();
            return None;
        };
        metrics.answer_cache_hits.inc();
        metrics.cache_hits.inc_by(answer.hits);
        metrics.cache_absent.inc_by(answer.absent);
        Some(answer.body.clone())
    }

    /// Keeps an all-hit answer by body (on the body's second sighting, answers.rs), valid until
    /// its first slot goes stale and voided by an invalidation of any of its accounts.
    fn keep_answer(&self, body: &[u8], kept: impl FnOnce() -> CachedAnswer) {
        if self.0.answers.admit(body) {
            self.0.answers.insert(body, kept());
        }
    }

    /// A tag Tencent recently said does not exist fails the request locally, as it would
    /// upstream, without spending an upstream call.
    fn answer_known_missing_tags(&self, request: &PortraitGetRequest<'_>) -> Result<(), Error> {
        for tag in request.tags.iter().filter(|t| t.is_custom()) {
            if let Some(error) = self.0.cache.missing_tag(tag) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Looks each distinct (account, tag) up. Returns one view per distinct account, the view
    /// of each `To_Account` position, and the misses to fetch.
    fn lookup<'r>(&self, request: &'r PortraitGetRequest<'_>, now: Instant) -> Lookups<'r> {
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

    /// Builds the answer: one entry per `To_Account` occurrence, tags in `TagList` order.
    fn assemble(
        &self,
        request: &PortraitGetRequest<'_>,
        found: &Lookups<'_>,
        fetched: &[AccountFetch],
        now: Instant,
    ) -> Vec<u8> {
        // About 80 bytes per account entry and 96 per tag with a short value: one allocation
        // for most answers instead of a chain of regrowth copies.
        let capacity = 96 + request.accounts.len() * (80 + request.tags.len() * 96);
        let mut out = ResponseWriter::with_capacity(capacity);
        for &position in &found.positions {
            let view = &found.views[position];
            let fresh = view.fetched.and_then(|i| fetched.get(i));
            if let Some((code, info)) = &view.failed {
                out.failed_account(view.name, *code, info);
                continue;
            }
            if let Some(AccountFetch::Failed { code, info }) = fresh {
                out.failed_account(view.name, *code, info);
                continue;
            }
            out.begin_account(view.name);
            for tag in &request.tags {
                if let Some(value) = value_of(view, fresh, tag, now) {
                    out.tag_value(tag, value);
                }
            }
            out.end_account();
        }
        out.finish()
    }
}

/// The value to answer for `tag`: cached, stale but allowed, or just fetched; `None` when
/// unset.
fn value_of<'a>(
    view: &'a AccountView<'_>,
    fresh: Option<&'a AccountFetch>,
    tag: &Tag,
    now: Instant,
) -> Option<&'a str> {
    let in_list = |values: &'a [(Tag, Option<RawJson>)]| {
        let found = values.iter().find(|(t, _)| t == tag)?;
        Some(found.1.as_deref().map(RawValue::get))
    };
    match view
        .cached
        .as_deref()
        .map_or(Lookup::Miss, |c| c.lookup(tag, now))
    {
        Lookup::Value(v) => Some(v),
        Lookup::Absent => None,
        Lookup::Miss => match (in_list(&view.stale), fresh) {
            (Some(stale), _) => stale,
            (None, Some(AccountFetch::Values(values))) => in_list(values).flatten(),
            _ => None,
        },
    }
}

/// Each miss's account stamp now, for fetches not tied to an earlier L1 read (refreshes).
fn fetch_stamps_now(cache: &ProfileCache, misses: &[AccountMiss]) -> Vec<Option<Stamp>> {
    misses
        .iter()
        .map(|m| Some(cache.stamp(m.account.as_str())))
        .collect()
}

/// Each miss's account stamp (aligned with the misses), taken before L1 was read.
fn fetch_stamps(found: &Lookups<'_>, misses: usize) -> Vec<Option<Stamp>> {
    let mut stamps = vec![None; misses];
    for view in &found.views {
        if let Some(i) = view.fetched {
            stamps[i] = Some(view.stamp);
        }
    }
    stamps
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
