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
//!
//! | file | owns |
//! |---|---|
//! | `service.rs` | the service and its wiring; the driver of a `portrait_get` (`portrait_get`), answers kept by body, known-missing tags |
//! | `service/hit.rs` | the all-hit path in one pass |
//! | `service/lookup.rs` | the lookup: each distinct (account, tag) read from L1 into per-account views and misses |
//! | `service/fetch.rs` | the fetch of the misses: shared tier, peers' claims, batcher; the misses' stamps |
//! | `service/stale.rs` | values past their TTL: stale-while-revalidate, stale-if-error |
//! | `service/assemble.rs` | the answer in `To_Account` and `TagList` order |
//! | `service/set.rs` | `portrait_set` and invalidation |

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::answers::{AnswerCache, CachedAnswer};
use crate::batcher::Batcher;
use crate::cache::{CacheMetrics, CacheSizes, CacheTier, ProfileCache};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::upstream::UpstreamPath;
use crate::wire::{self, Account, PortraitGetRequest};

use fetch::fetch_stamps;

mod assemble;
mod fetch;
mod hit;
mod lookup;
mod purge;
pub(crate) use purge::purged_answer;
mod set;
mod stale;

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
    /// The caches' own families (their size gauges).
    cache_metrics: CacheMetrics,
    max_queue_wait: Duration,
    /// `cache.stale_if_error_seconds`.
    stale_if_error: Duration,
    /// `cache.stale_while_revalidate_seconds`.
    stale_while_revalidate: Duration,
    /// Accounts being refreshed in the background: at most one refresh each at a time.
    refreshing: parking_lot::Mutex<std::collections::HashSet<Account>>,
}

impl ProfileService {
    /// Wires the service to its caches, batcher and upstream.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        answers: AnswerCache,
        cache: ProfileCache,
        tier: CacheTier,
        batcher: Batcher,
        set_path: UpstreamPath,
        metrics: Metrics,
        cache_metrics: CacheMetrics,
        config: &Config,
    ) -> ProfileService {
        ProfileService(Arc::new(Inner {
            answers,
            cache,
            tier,
            batcher,
            set_path,
            metrics,
            cache_metrics,
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

    /// How much the caches hold (the size gauges' values).
    pub fn cache_sizes(&self) -> CacheSizes {
        CacheSizes {
            pairs: self.0.cache.weighted_size(),
            answer_bytes: self.0.answers.weighted_size(),
            rendered_bytes: self.0.cache.rendered_bytes(),
        }
    }

    /// Sets the caches' size gauges to what they hold now (at each scrape).
    pub(crate) fn show_cache_sizes(&self) {
        self.0.cache_metrics.show(&self.cache_sizes());
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
}
