//! ListCache: each id's answer of the coalesced list reads (`lists.rs`), kept for its API's
//! `ttl_ms` in one moka cache bounded in bytes (`cache.list_cache_bytes`).
//!
//! One entry per (API, id) holds that id's answers under each set of options callers asked
//! with (`IsNeedDetail` 0 or 1 answer differently), so invalidating an id drops all of them.
//! Only successful entries are stored: a per-id failure is never cached as a value. As for
//! profiles, every id has an invalidation [`ListStamp`] (a counter in one of a fixed set of
//! stripes): a fetch sent before an invalidation (a `State.StateChange` callback) carries an
//! older stamp and never writes its answer back, and is not joined by later callers.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use parking_lot::Mutex;

/// Stripes of the invalidation counters.
const STRIPES: usize = 1024;
/// Bytes counted per cached answer beyond its text (key, slot, moka's own bookkeeping).
const SLOT_OVERHEAD: u32 = 96;

/// One id's answer under one set of options: which array of the answer it goes in, its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Its position among the API's answer arrays.
    pub list: u8,
    /// The entry's JSON text as the upstream sent it.
    pub raw: Arc<str>,
}

#[derive(Clone)]
struct Slot {
    options: Arc<str>,
    entry: ListEntry,
    fresh_until: Instant,
}

type Key = (u8, Arc<str>);

/// An id's invalidation count when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListStamp {
    stripe: u32,
    generation: u64,
}

#[derive(Default)]
struct Stripe {
    write: Mutex<()>,
    generation: AtomicU64,
}

/// The list reads' cache; cheap to clone.
#[derive(Clone)]
pub(crate) struct ListCache(Arc<Inner>);

struct Inner {
    entries: Cache<Key, Arc<[Slot]>>,
    stripes: Box<[Stripe]>,
    hasher: foldhash::fast::RandomState,
}

impl ListCache {
    /// A cache of at most `max_bytes` of answers (zero: nothing is kept).
    pub(crate) fn new(max_bytes: u64) -> ListCache {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Key, slots: &Arc<[Slot]>| {
                let text: usize = slots
                    .iter()
                    .map(|s| s.options.len() + s.entry.raw.len())
                    .sum();
                let bytes = key.1.len() + text + SLOT_OVERHEAD as usize * slots.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        ListCache(Arc::new(Inner {
            entries,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }))
    }

    /// The invalidation stamp of `api`'s `id`; read it before the entry.
    pub(crate) fn stamp(&self, api: u8, id: &str) -> ListStamp {
        let stripe = self.stripe_of(api, id);
        ListStamp {
            stripe: stripe as u32,
            generation: self.0.stripes[stripe].generation.load(Ordering::Acquire),
        }
    }

    /// Whether nothing of the stamp's stripe was invalidated since it was taken.
    pub(crate) fn is_current(&self, stamp: ListStamp) -> bool {
        self.0.stripes[stamp.stripe as usize]
            .generation
            .load(Ordering::Acquire)
            == stamp.generation
    }

    /// `id`'s fresh answer under `options`, if kept.
    pub(crate) fn get(&self, api: u8, id: &str, options: &str, now: Instant) -> Option<ListEntry> {
        let slots = self.0.entries.get(&(api, Arc::from(id)))?;
        slots
            .iter()
            .find(|s| &*s.options == options && s.fresh_until > now)
            .map(|s| s.entry.clone())
    }

    /// Keeps `entry` as `id`'s answer under `options` for `ttl`, unless `id` was invalidated
    /// since `stamp` was read (the answer may predate the change).
    pub(crate) fn store(
        &self,
        api: u8,
        id: &Arc<str>,
        options: &Arc<str>,
        entry: ListEntry,
        stamp: ListStamp,
        ttl: Duration,
    ) {
        let now = Instant::now();
        let key = (api, id.clone());
        let _write = self.0.stripes[stamp.stripe as usize].write.lock();
        if !self.is_current(stamp) {
            return;
        }
        let mut slots: Vec<Slot> = self.0.entries.get(&key).map_or_else(Vec::new, |old| {
            old.iter()
                .filter(|s| s.fresh_until > now && s.options != *options)
                .cloned()
                .collect()
        });
        slots.push(Slot {
            options: options.clone(),
            entry,
            fresh_until: now + ttl,
        });
        self.0.entries.insert(key, Arc::from(slots));
    }

    /// Drops everything kept for `api`'s `id`; fetches sent before are not written back.
    pub(crate) fn invalidate(&self, api: u8, id: &str) {
        let stripe = &self.0.stripes[self.stripe_of(api, id)];
        let _write = stripe.write.lock();
        self.0.entries.invalidate(&(api, Arc::from(id)));
        stripe.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops every id of `api` (a destroyed group voids all its members' entries, which are
    /// kept per member); fetches sent before are not written back.
    pub(crate) fn invalidate_api(&self, api: u8) {
        self.bump_every_stripe();
        // Only fails without `support_invalidation_closures`, which the builder sets.
        let _ = self
            .0
            .entries
            .invalidate_entries_if(move |key, _| key.0 == api);
    }

    /// Drops everything (the fleet's channel was lost: invalidations may have been missed).
    pub(crate) fn invalidate_all(&self) {
        self.bump_every_stripe();
        self.0.entries.invalidate_all();
    }

    fn bump_every_stripe(&self) {
        for stripe in self.0.stripes.iter() {
            let _write = stripe.write.lock();
            stripe.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn stripe_of(&self, api: u8, id: &str) -> usize {
        (self.0.hasher.hash_one((api, id)) >> 32) as usize % STRIPES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(raw: &str) -> ListEntry {
        ListEntry {
            list: 0,
            raw: Arc::from(raw),
        }
    }

    #[test]
    fn answers_are_kept_per_options_and_dropped_by_invalidation() {
        let cache = ListCache::new(1 << 20);
        let (id, detail, plain) = (Arc::from("user1"), Arc::from("d"), Arc::from("p"));
        let ttl = Duration::from_secs(60);
        cache.store(0, &id, &detail, entry("1"), cache.stamp(0, &id), ttl);
        cache.store(0, &id, &plain, entry("2"), cache.stamp(0, &id), ttl);
        let now = Instant::now();
        assert_eq!(cache.get(0, &id, &detail, now), Some(entry("1")));
        assert_eq!(cache.get(0, &id, &plain, now), Some(entry("2")));
        assert_eq!(cache.get(1, &id, &plain, now), None, "another API's id");
        let before = cache.stamp(0, &id);
        cache.invalidate(0, &id);
        assert_eq!(cache.get(0, &id, &detail, now), None);
        cache.store(0, &id, &plain, entry("old"), before, ttl);
        assert_eq!(
            cache.get(0, &id, &plain, now),
            None,
            "a fetch older than the change"
        );
    }

    #[test]
    fn dropping_an_api_keeps_the_others() {
        let cache = ListCache::new(1 << 20);
        let (id, options) = (Arc::from("u"), Arc::from(""));
        let ttl = Duration::from_secs(60);
        cache.store(2, &id, &options, entry("a"), cache.stamp(2, &id), ttl);
        cache.store(3, &id, &options, entry("b"), cache.stamp(3, &id), ttl);
        let before = cache.stamp(3, &id);
        cache.invalidate_api(3);
        let now = Instant::now();
        assert_eq!(cache.get(3, &id, &options, now), None);
        assert_eq!(cache.get(2, &id, &options, now), Some(entry("a")));
        assert!(!cache.is_current(before));
    }

    #[test]
    fn answers_expire_after_their_ttl() {
        let cache = ListCache::new(1 << 20);
        let (id, options) = (Arc::from("a"), Arc::from(""));
        let ttl = Duration::from_millis(50);
        cache.store(1, &id, &options, entry("x"), cache.stamp(1, &id), ttl);
        assert!(cache.get(1, &id, &options, Instant::now()).is_some());
        let later = Instant::now() + Duration::from_millis(60);
        assert_eq!(cache.get(1, &id, &options, later), None);
    }
}
