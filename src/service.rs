//! ProfileService: the policy of each API, one small step per function, with no HTTP in sight.
//!
//! `portrait_get`: a body answered wholly from the cache before is served again as it was while
//! still valid (answers.rs). Otherwise: decode and validate -> answer known-missing tags
//! locally -> look every (account, tag) up in the cache -> fetch the misses through the
//! batcher -> assemble the answer in `To_Account` and `TagList` order. When every pair hits, no
//! batcher, limiter or lock is touched, and the answer is kept by body for the next caller.
//!
//! `portrait_set`: check the body -> wait for a permit of its own limiter -> forward the
//! caller's body untouched -> drop the account's cached tags whatever the outcome (a failed
//! set may have partly applied) -> return the upstream's answer as is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::answers::{AnswerCache, CachedAnswer};
use crate::batcher::{AccountFetch, AccountMiss, Batcher};
use crate::cache::{CachedAccount, Lookup, ProfileCache, Stamp};
use crate::error::Error;
use crate::metrics::{Api, Metrics, Outcome};
use crate::ratelimit::UpstreamLimiter;
use crate::upstream::UpstreamApi;
use crate::wire::{self, Account, PortraitGetRequest, ResponseWriter, Tag};

/// The gateway's API logic; cheap to clone.
#[derive(Clone)]
pub struct ProfileService(Arc<Inner>);

struct Inner {
    answers: AnswerCache,
    cache: ProfileCache,
    batcher: Batcher,
    upstream: Arc<dyn UpstreamApi>,
    set_limiter: UpstreamLimiter,
    metrics: Metrics,
    max_queue_wait: Duration,
}

/// One distinct account of a request: what the cache had, and where its misses went.
struct AccountView<'a> {
    name: &'a str,
    /// Taken before `cached` was read (what a kept answer checks).
    stamp: Stamp,
    cached: Option<Arc<CachedAccount>>,
    /// Index into the fetch answer when some of its tags missed.
    fetched: Option<usize>,
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

    fn get(&self, name: &str, views: &[AccountView<'_>]) -> Option<usize> {
        match self {
            DistinctAccounts::Scan => views.iter().position(|v| v.name == name),
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
    pub fn new(
        answers: AnswerCache,
        cache: ProfileCache,
        batcher: Batcher,
        upstream: Arc<dyn UpstreamApi>,
        set_limiter: UpstreamLimiter,
        metrics: Metrics,
        max_queue_wait: Duration,
    ) -> ProfileService {
        ProfileService(Arc::new(Inner {
            answers,
            cache,
            batcher,
            upstream,
            set_limiter,
            metrics,
            max_queue_wait,
        }))
    }

    /// Cached (account, tag) pairs and answer cache bytes, for the scrape-time gauges.
    pub fn cache_sizes(&self) -> (u64, u64) {
        (self.0.cache.weighted_size(), self.0.answers.weighted_size())
    }

    /// Answers a `portrait_get` body exactly as Tencent would answer it alone.
    pub async fn portrait_get(&self, body: &[u8]) -> Result<Bytes, Error> {
        let now = Instant::now();
        if let Some(answer) = self.cached_answer(body, now) {
            return Ok(answer);
        }
        let request = wire::decode_portrait_get(body)?;
        self.answer_known_missing_tags(&request)?;
        let mut found = self.lookup(&request, now);
        if found.misses.is_empty() {
            let answer = Bytes::from(self.assemble(&request, &found, &[], now));
            self.keep_answer(body, &found, &answer);
            return Ok(answer);
        }
        let misses = std::mem::take(&mut found.misses);
        let fetched = self.0.batcher.fetch(misses).await?;
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

    /// Keeps an all-hit answer by body, valid until its first slot goes stale and voided by an
    /// invalidation of any of its accounts.
    fn keep_answer(&self, body: &[u8], found: &Lookups<'_>, answer: &Bytes) {
        let Some(fresh_until) = found.fresh_until.filter(|_| self.0.answers.is_enabled()) else {
            return;
        };
        let kept = CachedAnswer {
            body: answer.clone(),
            fresh_until,
            sources: found.views.iter().map(|v| v.stamp).collect(),
            hits: found.hits,
            absent: found.absent,
        };
        self.0.answers.insert(body, kept);
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
        };
        let mut seen = DistinctAccounts::new(request.accounts.len());
        let mut missed = 0u64;
        for name in request.accounts.iter().map(Cow::as_ref) {
            if let Some(view) = seen.get(name, &found.views) {
                found.positions.push(view);
                continue;
            }
            let stamp = self.0.cache.stamp(name);
            let cached = self.0.cache.get(name);
            let mut missing = Vec::new();
            for tag in &tags {
                let (lookup, until) = cached
                    .as_ref()
                    .map_or((Lookup::Miss, None), |c| c.lookup_until(tag, now));
                match lookup {
                    Lookup::Value(_) => found.hits += 1,
                    Lookup::Absent => found.absent += 1,
                    Lookup::Miss => missing.push((*tag).clone()),
                }
                if let Some(until) = until {
                    found.fresh_until = Some(found.fresh_until.map_or(until, |f| f.min(until)));
                }
            }
            missed += missing.len() as u64;
            let fetched = (!missing.is_empty()).then(|| {
                found.misses.push(AccountMiss {
                    account: Account::from(name),
                    tags: missing,
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
            });
        }
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
            if let Some(AccountFetch::Failed { code, info }) = fresh {
                out.failed_account(view.name, *code, info);
                continue;
            }
            out.begin_account(view.name);
            for tag in &request.tags {
                if let Some(value) = value_of(view.cached.as_deref(), fresh, tag, now) {
                    out.tag_value(tag, value);
                }
            }
            out.end_account();
        }
        out.finish()
    }

    /// Forwards a `portrait_set` body untouched, then drops the account's cached tags.
    pub async fn portrait_set(&self, body: Bytes) -> Result<Bytes, Error> {
        let account = decode_set_account(&body)?;
        let max_wait = self.0.max_queue_wait;
        let (permit, waited) = self
            .0
            .set_limiter
            .acquire(Instant::now() + max_wait, max_wait)
            .await?;
        self.0.metrics.ratelimit_wait.observe(waited.as_secs_f64());
        let started = Instant::now();
        let result = self.0.upstream.call(Api::PortraitSet, body).await;
        drop(permit);
        self.0.cache.invalidate(&account);
        self.0.metrics.cache_invalidations.inc();
        let (outcome, code) = match &result {
            Ok(answer) => match wire::decode_envelope(answer).map(|env| env.error_code) {
                Ok(0) => (Outcome::Ok, 0),
                Ok(code) => (Outcome::UpstreamError, code),
                Err(e) => (Outcome::UpstreamError, e.code()),
            },
            Err(e) => (Outcome::of::<()>(Err(e)), e.code()),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.0
            .metrics
            .record_upstream(Api::PortraitSet, outcome, code, seconds);
        result
    }
}

/// The value to answer for `tag`: cached, or just fetched; `None` when unset.
fn value_of<'a>(
    cached: Option<&'a CachedAccount>,
    fresh: Option<&'a AccountFetch>,
    tag: &Tag,
    now: Instant,
) -> Option<&'a RawValue> {
    match cached.map_or(Lookup::Miss, |c| c.lookup(tag, now)) {
        Lookup::Value(v) => Some(v),
        Lookup::Absent => None,
        Lookup::Miss => match fresh {
            Some(AccountFetch::Values(values)) => values
                .iter()
                .find(|(t, _)| t == tag)
                .and_then(|(_, v)| v.as_deref()),
            _ => None,
        },
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

#[derive(Deserialize)]
struct SetRequest<'a> {
    #[serde(rename = "From_Account", borrow)]
    from_account: Option<Cow<'a, str>>,
    #[serde(rename = "ProfileItem", borrow)]
    profile_item: Option<Vec<&'a RawValue>>,
}

/// Checks a `portrait_set` body enough to know whose cache to drop; Tencent checks the rest.
fn decode_set_account(body: &[u8]) -> Result<Account, Error> {
    let request: SetRequest<'_> = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_field(
            "portrait_set body must be {\"From_Account\": string, \"ProfileItem\": [...]}",
            &e,
        )
    })?;
    let account = request
        .from_account
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::InvalidField(Arc::from("From_Account is missing or empty")))?;
    if request.profile_item.is_none_or(|items| items.is_empty()) {
        return Err(Error::InvalidField(Arc::from(
            "ProfileItem is missing or empty",
        )));
    }
    Ok(Account::from(account.as_ref()))
}
