//! AnswerCache: whole `portrait_get` answers, keyed on the exact request body, in front of the
//! per-(account, tag) cache.
//!
//! Hot callers send the same bodies again and again. When every pair of a body was a cache hit,
//! the assembled answer is kept here with what it was built from, so the next identical body
//! costs one hash of the body and one lookup instead of decoding, a lookup per account and
//! re-encoding (what nginx's `proxy_cache` does, but never staler than the per-pair cache):
//!
//! - an answer expires with the first of its (account, tag) slots (`fresh_until`);
//! - it holds each of its accounts' invalidation [`Stamp`]s, taken before the account's entry
//!   was read, so invalidating any of its accounts voids it at once: no lookup, no global
//!   flush, and no dependence on whether moka still holds the entries it was built from.
//!
//! Only all-hit answers are kept: an answer with a per-account failure or freshly fetched
//! values is kept the next time it is answered wholly from the cache. Memory is bounded in
//! bytes (`cache.answer_cache_bytes`; 0 turns this layer off).
//!
//! Most real bodies are never sent twice (S4 served 0.6 % of requests whole), so a body's
//! answer is kept only on its second all-hit sighting: a doorkeeper, a fixed table of body
//! hashes, remembers the first. A body whose hash is not in the doorkeeper is not looked for in
//! moka either, so a first-seen body costs one hash of the body and two loads and a store of
//! one word, and no moka lookup or insert. (A kept answer whose doorkeeper word another body
//! took over is found again after its next all-hit sighting.)

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use moka::sync::Cache;

use crate::cache::{ProfileCache, Stamp};

/// A cached answer and what decides whether it may still be served.
pub(crate) struct CachedAnswer {
    /// The response body, shared with every caller it is served to.
    pub body: Bytes,
    /// When the first of the slots it was built from goes stale.
    pub fresh_until: Instant,
    /// One per distinct account it read.
    pub sources: Box<[Stamp]>,
    /// Distinct (account, tag) pairs it answered with a value, for the lookup metrics.
    pub hits: u64,
    /// Distinct (account, tag) pairs it answered as unset.
    pub absent: u64,
}

/// Whole answers by request body; cheap to clone.
#[derive(Clone)]
pub(crate) struct AnswerCache {
    answers: Option<Cache<Bytes, Arc<CachedAnswer>, foldhash::fast::RandomState>>,
    /// Hashes of bodies seen once (or kept), by `hash % DOORKEEPER_SLOTS`.
    doorkeeper: Arc<Doorkeeper>,
    /// Whose stamps the answers hold.
    profiles: ProfileCache,
}

/// Bodies seen once, as hashes: a word per slot, overwritten by any later body of that slot.
struct Doorkeeper {
    seen: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
}

/// 16,384 words (128 KiB): a body's first sighting is forgotten after about as many other
/// bodies' first sightings.
const DOORKEEPER_SLOTS: usize = 1 << 14;

impl Doorkeeper {
    fn new(enabled: bool) -> Doorkeeper {
        let slots = if enabled { DOORKEEPER_SLOTS } else { 0 };
        Doorkeeper {
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    /// The body's slot and its hash (never 0, the empty word).
    fn slot(&self, body: &[u8]) -> Option<(&AtomicU64, u64)> {
        let hash = self.hasher.hash_one(body) | 1;
        let slot = self.seen.get(hash as usize % DOORKEEPER_SLOTS.max(1))?;
        Some((slot, hash))
    }

    /// Whether `body` was seen before (it may then be kept).
    fn was_seen(&self, body: &[u8]) -> bool {
        self.slot(body)
            .is_some_and(|(slot, hash)| slot.load(Ordering::Relaxed) == hash)
    }

    /// Records a sighting; true if it is not the first.
    fn sighted(&self, body: &[u8]) -> bool {
        let Some((slot, hash)) = self.slot(body) else {
            return false;
        };
        slot.swap(hash, Ordering::Relaxed) == hash
    }
}

/// Bookkeeping bytes per entry beyond the request and answer bytes (moka's entry, the `Arc`s,
/// the key and value headers), so that many small answers cannot exceed the budget unseen.
const ENTRY_OVERHEAD_BYTES: usize = 160;

impl AnswerCache {
    /// A cache holding at most about `max_bytes` of requests and answers built from `profiles`;
    /// 0 disables it.
    pub(crate) fn new(max_bytes: u64, profiles: ProfileCache) -> AnswerCache {
        let answers = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &Bytes, answer: &Arc<CachedAnswer>| {
                    let bytes = ENTRY_OVERHEAD_BYTES
                        + key.len()
                        + answer.body.len()
                        + answer.sources.len() * std::mem::size_of::<Stamp>();
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build_with_hasher(Default::default())
        });
        let doorkeeper = Arc::new(Doorkeeper::new(answers.is_some()));
        AnswerCache {
            answers,
            doorkeeper,
            profiles,
        }
    }

    /// The answer to `request_body`, if one is cached and still valid at `now`.
    pub(crate) fn get(&self, request_body: &[u8], now: Instant) -> Option<Arc<CachedAnswer>> {
        let cache = self.answers.as_ref()?;
        if !self.doorkeeper.was_seen(request_body) {
            return None;
        }
        let answer = cache.get(request_body)?;
        let current = |stamp: &Stamp| self.profiles.is_current(*stamp);
        if now < answer.fresh_until && answer.sources.iter().all(current) {
            return Some(answer);
        }
        cache.invalidate(request_body);
        None
    }

    /// Records an all-hit sighting of `request_body`: true when its answer should be kept now
    /// (its second sighting), false on its first or when this layer is off.
    pub(crate) fn admit(&self, request_body: &[u8]) -> bool {
        self.answers.is_some() && self.doorkeeper.sighted(request_body)
    }

    /// Keeps `answer` for `request_body` (a no-op when disabled), whether or not admitted.
    pub(crate) fn insert(&self, request_body: &[u8], answer: CachedAnswer) {
        if let Some(cache) = &self.answers {
            if let Some((slot, hash)) = self.doorkeeper.slot(request_body) {
                slot.store(hash, Ordering::Relaxed);
            }
            cache.insert(Bytes::copy_from_slice(request_body), Arc::new(answer));
        }
    }

    /// Bytes held, approximately (moka applies writes lazily).
    pub(crate) fn weighted_size(&self) -> u64 {
        self.answers.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.weighted_size()
        })
    }

    /// Whether this layer is on.
    pub(crate) fn is_enabled(&self) -> bool {
        self.answers.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CacheConfig;
    use crate::wire::Account;

    fn answer(fresh_until: Instant, sources: Vec<Stamp>) -> CachedAnswer {
        CachedAnswer {
            body: Bytes::from_static(b"{\"ActionStatus\":\"OK\"}"),
            fresh_until,
            sources: sources.into_boxed_slice(),
            hits: 1,
            absent: 0,
        }
    }

    fn profiles() -> ProfileCache {
        let config = CacheConfig {
            ttl: Duration::from_secs(60),
            max_entries: 100,
            missing_tag_ttl: Duration::from_secs(60),
            answer_cache_bytes: 0,
            ..crate::Config::default().cache
        };
        ProfileCache::new(&config)
    }

    #[test]
    fn serves_an_answer_until_its_first_slot_goes_stale() {
        let answers = AnswerCache::new(1 << 20, profiles());
        let now = Instant::now();
        let until = now + Duration::from_secs(5);
        answers.insert(b"body", answer(until, vec![]));
        assert!(answers.get(b"body", now).is_some());
        assert!(answers.get(b"other body", now).is_none());
        assert!(
            answers.get(b"body", until).is_none(),
            "stale at fresh_until"
        );
        assert!(
            answers.get(b"body", now).is_none(),
            "a stale answer is dropped, not kept for later"
        );
    }

    #[test]
    fn invalidating_any_source_account_voids_the_answer() {
        let profiles = profiles();
        let answers = AnswerCache::new(1 << 20, profiles.clone());
        let now = Instant::now();
        let sources = vec![profiles.stamp("b"), profiles.stamp("a")];
        answers.insert(b"body", answer(now + Duration::from_secs(60), sources));
        assert!(answers.get(b"body", now).is_some());
        profiles.invalidate(&Account::from("a"));
        assert!(answers.get(b"body", now).is_none());
    }

    #[test]
    fn a_body_is_admitted_on_its_second_sighting() {
        let answers = AnswerCache::new(1 << 20, profiles());
        assert!(!answers.admit(b"body"), "first sighting");
        assert!(answers.admit(b"body"), "second sighting");
        assert!(!AnswerCache::new(0, profiles()).admit(b"body"));
    }

    #[test]
    fn zero_bytes_turns_the_layer_off() {
        let answers = AnswerCache::new(0, profiles());
        let now = Instant::now();
        answers.insert(b"body", answer(now + Duration::from_secs(60), vec![]));
        assert!(!answers.is_enabled());
        assert!(answers.get(b"body", now).is_none());
    }
}
