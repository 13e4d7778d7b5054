//! ProfileCache: what the gateway knows about each (account, tag).
//!
//! One entry per account holds that account's cached tags (interned [`Tag`]s), so a hit costs
//! one hash lookup per account however many tags are asked for, and the per-pair overhead is a
//! slot, not an entry. Each slot keeps its own expiry, so the TTL is per (account, tag) even
//! though storage is per account. A slot is a value or "absent" (the upstream answered the
//! account but not this tag). Per-account failures are never stored. The accounts live in an
//! `AccountTable` (table.rs) read without moka's per-read bookkeeping, moka deciding admission and
//! eviction for groups of them.
//!
//! Writes come from the batch worker and the fleet's tier reads. `portrait_set` invalidates.
//! Each account has an invalidation [`Stamp`]: a counter in one of a fixed set of stripes,
//! independent of the stored entries and their eviction, bumped by every invalidation of an
//! account of that stripe. Whatever was read or sent before an invalidation carries an older
//! stamp and knows it is void without a lookup: a fetch dispatched before it never writes its
//! older values back ([`ProfileCache::store`]) and is not joined by later callers (the batcher),
//! and a whole cached answer built before it is not served (answers.rs). The stripe's lock
//! serialises a store's read-modify-write of an entry with an invalidation's removal. Tags
//! Tencent says do not exist are remembered here too, so the next caller asking for one is
//! answered locally.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use parking_lot::Mutex;

use crate::config::{CacheConfig, LiveDuration};
use crate::error::Error;
use crate::wire::{Account, RawJson, Tag};

mod account;
mod lists;
mod metrics;
mod rendered;
mod table;
mod tier;
pub(crate) use account::{CachedAccount, Ticks};
pub(crate) use lists::{ListCache, ListEntry, ListStamp};
pub(crate) use metrics::{CacheEvictions, CacheMetrics, CacheSizes};
use rendered::RenderBudget;
pub(crate) use rendered::{PairCounts, Render, TagListKey};
use table::AccountTable;
pub use tier::{AccountMiss, CacheTier};
pub(crate) use tier::{
    Claim, ListKeys, ListTierAnswer, ListTierWrite, SharedTier, TierAnswer, TierWrite,
};

/// Cheap-to-clone handle to the gateway's caches.
#[derive(Clone)]
pub struct ProfileCache(Arc<Inner>);

/// The account hash (one per account on the hit path): foldhash, seeded per process.
type Hasher = foldhash::fast::RandomState;

struct Inner {
    profiles: AccountTable,
    /// `cache.ttl_seconds`, changed live by a reload (for values stored from then on).
    ttl: LiveDuration,
    /// How long past its TTL a slot is kept (for serve-stale and stale-while-revalidate).
    stale_keep: Duration,
    /// Accounts Tencent said do not exist (40003 per account), answered locally for a while.
    failures: Option<Cache<Account, AccountFailure>>,
    /// Custom tags the upstream said do not exist, with the error it gave.
    missing_tags: Cache<Tag, Error>,
    /// Invalidation counters and write locks, an account's chosen by the high bits of its
    /// [`ProfileCache::hash`].
    stripes: Box<[Stripe]>,
    /// Finds an account's stripe and repeated accounts of a request.
    hasher: Hasher,
    /// Bounds the answer entries rendered into accounts (`cache.rendered_entry_bytes`).
    render_budget: Arc<RenderBudget>,
    /// The list reads' per-id answers (`cache.list_cache_bytes`).
    lists: ListCache,
}

/// How many stripes share out the accounts. An invalidation voids what was read for any account
/// of its stripe: with 4096 stripes, a 20-account answer is voided by an unrelated account's
/// invalidation once in about 200, and a 100-account fetch keeps one of its accounts' values
/// out of the cache once in about 40.
const STRIPES: usize = 4096;

#[derive(Default)]
struct Stripe {
    /// Held by a store's read-modify-write and by an invalidation's removal.
    write: Mutex<()>,
    /// Bumped by every invalidation of an account in this stripe, after the removal.
    generation: AtomicU64,
}

/// An account's invalidation count when it was read: still current means nothing read after it
/// was invalidated since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    stripe: u32,
    generation: u64,
}

/// A per-account failure remembered for `cache.failure_ttl_seconds`: Tencent's code and info.
pub(crate) type AccountFailure = (i64, Arc<str>);

/// What the cache knows about one (account, tag).
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// A cached value: its JSON text as the upstream sent it.
    Value(&'a str),
    /// Cached as unset.
    Absent,
    /// Not cached, or expired.
    Miss,
}

impl ProfileCache {
    /// Builds the caches.
    pub fn new(config: &CacheConfig) -> ProfileCache {
        Self::with_evictions(config, None)
    }

    /// Builds the caches, telling `on_evict` of the accounts moka's evictions dropped, by cause.
    pub(crate) fn with_evictions(
        config: &CacheConfig,
        on_evict: Option<CacheEvictions>,
    ) -> ProfileCache {
        // No TTL in moka: freshness is checked per slot. Stale accounts stay until re-fetched
        // or evicted by size.
        let profiles = AccountTable::new(config.max_entries, on_evict);
        let hasher = Hasher::default();
        let missing_tags = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(config.missing_tag_ttl)
            .build();
        let failures = (!config.failure_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.failure_ttl)
                .build()
        });
        ProfileCache(Arc::new(Inner {
            profiles,
            ttl: LiveDuration::new(config.ttl),
            stale_keep: config.stale_if_error.max(config.stale_while_revalidate),
            failures,
            missing_tags,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher,
            render_budget: RenderBudget::new(config.rendered_entry_bytes),
            lists: ListCache::new(config.list_cache_bytes),
        }))
    }

    /// Sets the lifetime of values stored from now on (a reload's `cache.ttl_seconds`); values
    /// already stored keep the expiry they were given.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.0.ttl.set(ttl);
    }

    /// The invalidation stamp of `account`. Read it before the account's entry: the stamp is
    /// then current only while nothing was invalidated after that read.
    pub fn stamp(&self, account: &str) -> Stamp {
        self.stamp_hashed(self.hash(account))
    }

    /// [`ProfileCache::stamp`] with the account's [`ProfileCache::hash`] already taken.
    pub fn stamp_hashed(&self, hash: u64) -> Stamp {
        let stripe = stripe_of(hash);
        Stamp {
            stripe: stripe as u32,
            generation: self.0.stripes[stripe].generation.load(Ordering::Acquire),
        }
    }

    /// Whether no account of the stamp's stripe was invalidated since it was taken.
    pub fn is_current(&self, stamp: Stamp) -> bool {
        self.0
            .stripes
            .get(stamp.stripe as usize)
            .is_some_and(|s| s.generation.load(Ordering::Acquire) == stamp.generation)
    }

    /// The cached tags of `account`, if any. Check each tag with [`CachedAccount::lookup`].
    pub fn get(&self, account: &str) -> Option<Arc<CachedAccount>> {
        self.0.profiles.get(account, self.hash(account))
    }

    /// A per-process hash of `account` (the hit path also finds repeated accounts with it).
    pub fn hash(&self, account: &str) -> u64 {
        self.0.hasher.hash_one(account)
    }

    /// A view for the hit path: accounts read through it are borrowed (no lock, no `Arc` taken)
    /// until it is dropped; keep it for one request's synchronous work.
    pub fn reader(&self) -> table::Reader<'_> {
        self.0.profiles.reader()
    }

    /// Keeps `render`, the answer entry the hit path just wrote from `account` for `key`, in
    /// `account`, if rendering is on and its budget has room.
    pub fn keep_rendered(&self, account: &CachedAccount, key: &TagListKey<'_>, render: Render<'_>) {
        account.keep_rendered(&self.0.render_budget, key, render);
    }

    /// Whether the hit path renders answer entries into accounts.
    pub fn renders(&self) -> bool {
        self.0.render_budget.is_enabled()
    }

    /// Bytes held by rendered answer entries.
    pub fn rendered_bytes(&self) -> u64 {
        self.0.render_budget.used()
    }

    /// Merges freshly fetched values for `account` into its entry, unless the account was
    /// invalidated after the fetch was dispatched (`dispatched`: its stamp then). Called by the
    /// batch worker only.
    pub fn store(
        &self,
        account: &Account,
        values: &[(Tag, Option<RawJson>)],
        dispatched: Stamp,
        now: Instant,
    ) {
        self.store_until(account, values, dispatched, now, now + self.0.ttl.get());
    }

    /// [`ProfileCache::store`] with values fresh until `fresh_until` (values read from the
    /// fleet's shared tier keep the expiry they have there).
    pub fn store_until(
        &self,
        account: &Account,
        values: &[(Tag, Option<RawJson>)],
        dispatched: Stamp,
        now: Instant,
        fresh_until: Instant,
    ) {
        if values.is_empty() {
            return;
        }
        // Under the stripe lock, an invalidation either came first (the stamp moved) or waits
        // and removes what this inserts.
        let _write = self.0.stripes[dispatched.stripe as usize].write.lock();
        if !self.is_current(dispatched) {
            return;
        }
        let now = Ticks::at(now);
        let stale_keep = self.0.stale_keep;
        let name = account.as_str();
        let hash = self.hash(name);
        let old = self.0.profiles.get(name, hash);
        let entry = CachedAccount::merged(
            name,
            old.as_deref(),
            |s| now < s.fresh_until.plus(stale_keep),
            values,
            Ticks::at(fresh_until),
        );
        if let Some(entry) = entry {
            self.0.profiles.insert(hash, Arc::new(entry));
        }
    }

    /// Drops everything cached for `account` and moves its stamp, which fences off fetches
    /// already dispatched and answers already built.
    pub fn invalidate(&self, account: &Account) {
        let hash = self.hash(account.as_str());
        let stripe = &self.0.stripes[stripe_of(hash)];
        let _write = stripe.write.lock();
        self.0.profiles.remove(account.as_str(), hash);
        if let Some(failures) = &self.0.failures {
            failures.invalidate(account.as_str());
        }
        stripe.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Remembers that Tencent said `account` does not exist (only 40003 is ever remembered:
    /// transient per-account failures must be asked again).
    pub fn remember_failure(&self, account: &Account, failure: AccountFailure, dispatched: Stamp) {
        let Some(failures) = &self.0.failures else {
            return;
        };
        let _write = self.0.stripes[dispatched.stripe as usize].write.lock();
        if self.is_current(dispatched) {
            failures.insert(account.clone(), failure);
        }
    }

    /// A remembered per-account failure of `account`.
    pub fn failure(&self, account: &str) -> Option<AccountFailure> {
        self.0.failures.as_ref()?.get(account)
    }

    /// Drops every cached account and moves every stamp: for a gateway that may have missed
    /// invalidations (its fleet channel was lost). Each stripe is emptied under its lock.
    pub fn invalidate_all(&self) {
        for stripe in self.0.stripes.iter() {
            let _write = stripe.write.lock();
            stripe.generation.fetch_add(1, Ordering::AcqRel);
        }
        // Bumped first, cleared second: a racing store either fails its stamp check or
        // inserted before the clear.
        self.0.profiles.clear();
        if let Some(failures) = &self.0.failures {
            failures.invalidate_all();
        }
        self.0.lists.invalidate_all();
    }

    /// The list reads' per-id answers, flushed with everything else by
    /// [`ProfileCache::invalidate_all`].
    pub(crate) fn lists(&self) -> &ListCache {
        &self.0.lists
    }

    /// Remembers that the upstream failed a call because `tag` does not exist.
    pub fn remember_missing_tag(&self, tag: Tag, error: Error) {
        self.0.missing_tags.insert(tag, error);
    }

    /// The error to answer locally if `tag` is known not to exist.
    pub fn missing_tag(&self, tag: &Tag) -> Option<Error> {
        self.0.missing_tags.get(tag)
    }

    /// Cached (account, tag) slots, approximately (moka applies writes lazily).
    pub fn weighted_size(&self) -> u64 {
        self.0.profiles.weighted_size()
    }
}

/// The stripe of an account with [`ProfileCache::hash`] `hash`.
fn stripe_of(hash: u64) -> usize {
    (hash >> 32) as usize % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn cache(ttl: Duration) -> ProfileCache {
        let config = CacheConfig {
            ttl,
            max_entries: 1000,
            missing_tag_ttl: Duration::from_secs(60),
            answer_cache_bytes: 0,
            ..crate::Config::default().cache
        };
        ProfileCache::new(&config)
    }

    fn raw(text: &str) -> RawJson {
        Arc::from(RawValue::from_string(text.to_string()).expect("valid raw JSON"))
    }

    fn tag(i: usize) -> Tag {
        Tag::standard(i).expect("standard tag")
    }

    #[test]
    fn stores_values_and_absence_per_tag() {
        let c = cache(Duration::from_secs(60));
        let a = Account::from("a");
        let now = Instant::now();
        c.store(
            &a,
            &[(tag(0), Some(raw("\"nick\""))), (tag(1), None)],
            c.stamp("a"),
            now,
        );
        let entry = c.get("a").expect("cached");
        assert!(matches!(entry.lookup(&tag(0), now), Lookup::Value(v) if v == "\"nick\""));
        assert!(matches!(entry.lookup(&tag(1), now), Lookup::Absent));
        assert!(matches!(entry.lookup(&tag(2), now), Lookup::Miss));
    }

    #[test]
    fn merges_new_tags_into_the_account_entry_and_replaces_old_values() {
        let c = cache(Duration::from_secs(60));
        let a = Account::from("a");
        let now = Instant::now();
        c.store(&a, &[(tag(0), Some(raw("1")))], c.stamp("a"), now);
        c.store(
            &a,
            &[(tag(1), Some(raw("2"))), (tag(0), Some(raw("3")))],
            c.stamp("a"),
            now,
        );
        let entry = c.get("a").expect("cached");
        assert!(matches!(entry.lookup(&tag(0), now), Lookup::Value(v) if v == "3"));
        assert!(matches!(entry.lookup(&tag(1), now), Lookup::Value(v) if v == "2"));
    }

    #[test]
    fn each_slot_expires_after_the_ttl_from_its_own_store_time() {
        let ttl = Duration::from_secs(10);
        let c = cache(ttl);
        let a = Account::from("a");
        let t0 = Instant::now();
        c.store(&a, &[(tag(0), Some(raw("1")))], c.stamp("a"), t0);
        let entry = c.get("a").expect("cached");
        assert!(matches!(
            entry.lookup(&tag(0), t0 + Duration::from_secs(9)),
            Lookup::Value(_)
        ));
        assert!(matches!(entry.lookup(&tag(0), t0 + ttl), Lookup::Miss));
    }

    #[test]
    fn fetch_dispatched_before_an_invalidation_does_not_write_back() {
        let c = cache(Duration::from_secs(60));
        let a = Account::from("a");
        let dispatched_at = c.stamp("a");
        c.invalidate(&a);
        c.store(
            &a,
            &[(tag(0), Some(raw("\"old\"")))],
            dispatched_at,
            Instant::now(),
        );
        assert!(
            c.get("a").is_none(),
            "stale fetch must not repopulate the cache"
        );
        c.store(
            &a,
            &[(tag(0), Some(raw("\"new\"")))],
            c.stamp("a"),
            Instant::now(),
        );
        assert!(
            c.get("a").is_some(),
            "a fetch dispatched after the invalidation may write"
        );
    }

    #[test]
    fn invalidation_drops_all_tags_of_the_account_only() {
        let c = cache(Duration::from_secs(60));
        let now = Instant::now();
        for name in ["a", "b"] {
            c.store(
                &Account::from(name),
                &[(tag(0), Some(raw("1")))],
                c.stamp(name),
                now,
            );
        }
        c.invalidate(&Account::from("a"));
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some());
    }

    #[test]
    fn an_invalidation_moves_the_accounts_stamp_whatever_moka_holds() {
        let c = cache(Duration::from_secs(60));
        let a = Account::from("a");
        let now = Instant::now();
        let before_store = c.stamp("a");
        c.store(&a, &[(tag(0), Some(raw("1")))], c.stamp("a"), now);
        let stored = c.stamp("a");
        assert_eq!(
            before_store, stored,
            "storing values is not an invalidation"
        );
        assert!(c.is_current(stored));
        c.invalidate(&a);
        assert!(!c.is_current(stored));
        let later = c.stamp("a");
        assert!(c.is_current(later));
        c.invalidate(&Account::from("never cached"));
        assert!(
            c.is_current(later) || c.stamp("a").stripe == c.stamp("never cached").stripe,
            "another account's invalidation leaves this stamp alone unless they share a stripe"
        );
        c.invalidate(&a);
        assert!(!c.is_current(later), "even with no entry in moka to remove");
    }

    #[test]
    fn reports_each_slots_expiry() {
        let ttl = Duration::from_secs(10);
        let c = cache(ttl);
        let a = Account::from("a");
        let t0 = Instant::now();
        c.store(
            &a,
            &[(tag(0), Some(raw("1"))), (tag(1), None)],
            c.stamp("a"),
            t0,
        );
        let entry = c.get("a").expect("cached");
        let until = |t: usize| entry.lookup_until(&tag(t), t0).1;
        assert_eq!(until(0), Some(t0 + ttl));
        assert_eq!(until(1), Some(t0 + ttl));
        assert_eq!(until(2), None);
    }

    #[test]
    fn remembers_missing_tags() {
        let c = cache(Duration::from_secs(60));
        let custom = Tag::parse("Tag_Profile_Custom_Nope").expect("well-formed");
        assert!(c.missing_tag(&custom).is_none());
        c.remember_missing_tag(
            custom.clone(),
            Error::UnknownTag(Arc::from("Tag_Profile_Custom_Nope")),
        );
        assert_eq!(c.missing_tag(&custom).map(|e| e.code()), Some(40009));
    }
}
