//! AccountTable: where cached accounts are kept and read, with moka deciding what stays.
//!
//! Accounts are spread by hash over a fixed array of buckets. A bucket is a short list of
//! `(hash, Arc<CachedAccount>)` behind its own read-write lock, so a hit is one hash, one read
//! lock (writers hold it only to swap an entry in or out) and a scan of a few hashes in one or
//! two cache lines.
//!
//! moka holds one entry per *bucket* (key: its index, value and weight: the slots it holds) and
//! does what it is for: admission (TinyLFU), eviction against `cache.max_entries`, and the
//! removal notice, on which the bucket is emptied. Grouping divides moka's bookkeeping per entry
//! (about 300 bytes) among the accounts of a bucket, and reads report one lookup in
//! [`READ_SAMPLE`] to moka, so its popularity estimate and recency order follow the traffic
//! without a moka `get` per account. The price: an eviction drops a bucket's accounts together.
//!
//! Consistency between the lists and moka: a bucket's list changes only under its `write` mutex,
//! which also covers the moka update that follows, so moka's weight of a bucket is never below
//! what the list holds once the update is in (an eviction racing a write may leave moka counting
//! slots a list no longer has: capacity unused, never exceeded). No lock of this table is held
//! while moka runs, because moka may call the removal notice (which takes a list's lock) from
//! within any of its calls.

use std::cell::Cell;
use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use parking_lot::{Mutex, RwLock};

use super::CachedAccount;
use crate::metrics::CacheEvictions;

/// About how many (account, tag) slots a bucket holds when the cache is full: 8 accounts of 4
/// tags. Larger buckets share moka's per-entry cost among more accounts but evict more at once.
const SLOTS_PER_BUCKET: u64 = 32;

/// One lookup in this many is reported to moka as a read of its bucket (1 in 8, 16 or 32 gave
/// the same hit ratios under eviction, reporting every read lower ones: BENCHMARKS.md).
const READ_SAMPLE: u32 = 32;

/// moka keys buckets by index: an identity-like hash is enough (foldhash of a `u32`).
type PolicyHasher = foldhash::fast::FixedState;

/// The accounts of one bucket, each with its hash.
type Entries = Vec<(u64, Arc<CachedAccount>)>;

#[derive(Default)]
struct Bucket {
    /// Serialises writers of this bucket, across their moka update.
    write: Mutex<()>,
    entries: RwLock<Entries>,
}

/// The cached accounts (see the module doc).
pub(super) struct AccountTable {
    buckets: Arc<[Bucket]>,
    /// `buckets.len() - 1` (a power of two).
    mask: u64,
    /// One entry per non-empty bucket, weighted by its slots.
    policy: Cache<u32, u32, PolicyHasher>,
}

thread_local! {
    /// Lookups on this thread since its last read reported to moka.
    static UNREPORTED_READS: Cell<u32> = const { Cell::new(0) };
}

impl AccountTable {
    /// A table for `max_slots` (account, tag) slots; `evictions` hears of accounts moka dropped.
    pub(super) fn new(max_slots: u64, evictions: Option<CacheEvictions>) -> AccountTable {
        let count = (max_slots / SLOTS_PER_BUCKET)
            .clamp(64, 1 << 24)
            .next_power_of_two();
        let buckets: Arc<[Bucket]> = (0..count).map(|_| Bucket::default()).collect();
        let emptied = Arc::clone(&buckets);
        let policy = Cache::builder()
            .max_capacity(max_slots)
            .weigher(|_: &u32, slots: &u32| *slots)
            .eviction_listener(move |index: Arc<u32>, _, cause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                let dropped = emptied
                    .get(*index as usize)
                    .map(|b| std::mem::take(&mut *b.entries.write()));
                if let (Some(evictions), Some(dropped)) = (&evictions, dropped) {
                    evictions.record(cause, dropped.len() as u64);
                }
            })
            .build_with_hasher(PolicyHasher::default());
        AccountTable {
            mask: count - 1,
            buckets,
            policy,
        }
    }

    fn index(&self, hash: u64) -> u32 {
        (hash & self.mask) as u32
    }

    /// The account `name` (of hash `hash`), if cached.
    pub(super) fn get(&self, name: &str, hash: u64) -> Option<Arc<CachedAccount>> {
        self.read(name, hash, Arc::clone)
    }

    /// `read` applied to the account `name` (of hash `hash`) where it lies, if cached: no `Arc`
    /// is taken. Its bucket is read-locked meanwhile, so `read` must be short and must not use
    /// this table (the sampled moka read comes after the lock is released).
    pub(super) fn read<R>(
        &self,
        name: &str,
        hash: u64,
        read: impl FnOnce(&Arc<CachedAccount>) -> R,
    ) -> Option<R> {
        let index = self.index(hash);
        let found = {
            let entries = self.buckets[index as usize].entries.read();
            entries
                .iter()
                .find(|(h, e)| *h == hash && e.name() == name)
                .map(|(_, e)| read(e))
        };
        self.sample_read(index);
        found
    }

    /// Tells moka of one read in [`READ_SAMPLE`] (no lock of the table is held here).
    fn sample_read(&self, index: u32) {
        let report = UNREPORTED_READS.with(|n| {
            let seen = n.get() + 1;
            n.set(if seen == READ_SAMPLE { 0 } else { seen });
            seen == READ_SAMPLE
        });
        if report {
            self.policy.get(&index);
        }
    }

    /// Puts `entry` in place of the account of the same name, or adds it.
    pub(super) fn insert(&self, hash: u64, entry: Arc<CachedAccount>) {
        self.update(hash, |entries| {
            match entries
                .iter_mut()
                .find(|(h, e)| *h == hash && e.name() == entry.name())
            {
                Some(slot) => slot.1 = entry,
                None => {
                    entries.reserve_exact(1);
                    entries.push((hash, entry));
                }
            }
        });
    }

    /// Drops the account `name`, if cached.
    pub(super) fn remove(&self, name: &str, hash: u64) {
        self.update(hash, |entries| {
            entries.retain(|(h, e)| *h != hash || e.name() != name);
            entries.shrink_to_fit();
        });
    }

    /// Changes the list of `hash`'s bucket, then tells moka its new weight.
    fn update(&self, hash: u64, change: impl FnOnce(&mut Entries)) {
        let index = self.index(hash);
        let bucket = &self.buckets[index as usize];
        let _writer = bucket.write.lock();
        let slots = {
            let mut entries = bucket.entries.write();
            change(&mut entries);
            entries
                .iter()
                .map(|(_, e)| u64::from(e.weight()))
                .sum::<u64>()
        };
        match u32::try_from(slots) {
            Ok(0) => self.policy.invalidate(&index),
            Ok(slots) => self.policy.insert(index, slots),
            Err(_) => self.policy.insert(index, u32::MAX),
        }
    }

    /// Drops every account.
    pub(super) fn clear(&self) {
        for bucket in self.buckets.iter() {
            let _writer = bucket.write.lock();
            drop(std::mem::take(&mut *bucket.entries.write()));
        }
        self.policy.invalidate_all();
        self.policy.run_pending_tasks();
    }

    /// The slots moka counts (it applies writes lazily: pending ones are applied first).
    pub(super) fn weighted_size(&self) -> u64 {
        self.policy.run_pending_tasks();
        self.policy.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::time::Instant;

    use super::*;
    use crate::cache::Ticks;
    use crate::wire::Tag;

    fn account(name: &str, tags: usize) -> Arc<CachedAccount> {
        let values: Vec<_> = (0..tags)
            .map(|i| (Tag::standard(i).expect("standard tag"), None))
            .collect();
        let until = Ticks::at(Instant::now()).plus(std::time::Duration::from_secs(60));
        Arc::new(CachedAccount::merged(name, None, |_| true, &values, until).expect("short name"))
    }

    /// The slots the lists hold, whatever moka counts.
    fn stored_slots(table: &AccountTable) -> u64 {
        table
            .buckets
            .iter()
            .flat_map(|b| b.entries.read().clone())
            .map(|(_, e)| u64::from(e.weight()))
            .sum()
    }

    /// Asserts the table's own invariant, that no bucket's list holds more than moka keeps for
    /// it, and that moka keeps the whole within `capacity`; returns what the lists hold.
    ///
    /// moka's running total can trail the sum of its entries by a few slots after concurrent
    /// updates and evictions (seen: up to 16 of 2,000, not growing over 20x longer runs), so the
    /// lists are bounded by moka's entries, and those by the capacity plus that slack.
    fn assert_within(table: &AccountTable, capacity: u64) -> u64 {
        let counted = table.weighted_size();
        assert!(counted <= capacity, "moka counts {counted} slots");
        let kept: std::collections::HashMap<u32, u64> = table
            .policy
            .iter()
            .map(|(index, slots)| (*index, u64::from(slots)))
            .collect();
        let mut stored = 0;
        for (index, bucket) in table.buckets.iter().enumerate() {
            let listed: u64 = bucket
                .entries
                .read()
                .iter()
                .map(|(_, e)| u64::from(e.weight()))
                .sum();
            let kept = kept.get(&(index as u32)).copied().unwrap_or(0);
            assert!(
                listed <= kept,
                "bucket {index} lists {listed} slots, moka keeps {kept}"
            );
            stored += listed;
        }
        let slack = capacity / 50;
        assert!(
            kept.values().sum::<u64>() <= capacity + slack,
            "moka keeps more than {capacity} slots"
        );
        stored
    }

    #[test]
    fn accounts_sharing_a_hash_are_told_apart_by_name() {
        let table = AccountTable::new(1000, None);
        table.insert(7, account("a", 1));
        table.insert(7, account("b", 2));
        table.insert(7, account("a", 3));
        assert_eq!(table.get("a", 7).map(|e| e.weight()), Some(3));
        assert_eq!(table.get("b", 7).map(|e| e.weight()), Some(2));
        assert!(table.get("c", 7).is_none());
        table.remove("a", 7);
        assert!(table.get("a", 7).is_none());
        assert_eq!(table.get("b", 7).map(|e| e.weight()), Some(2));
        assert_eq!(table.weighted_size(), 2);
    }

    #[test]
    fn what_the_lists_hold_stays_within_the_capacity_and_evictions_are_counted() {
        let metrics = crate::metrics::Metrics::new();
        let table = AccountTable::new(2_000, Some(metrics.cache_evictions.clone()));
        let hasher = foldhash::fast::RandomState::default();
        for i in 0..5_000 {
            let name = format!("user{i}");
            table.insert(hasher.hash_one(&name), account(&name, 4));
        }
        let stored = assert_within(&table, 2_000);
        assert!(stored > 1_000, "the cache is used: {stored} slots");
        let evicted = metrics.cache_evictions.count("size");
        assert_eq!(
            evicted,
            5_000 - stored / 4,
            "every dropped account is counted once"
        );
    }

    #[test]
    fn concurrent_writers_readers_and_evictions_never_hold_more_than_moka_counts() {
        let table = Arc::new(AccountTable::new(2_000, None));
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        // Few buckets' worth of names, so writers collide and evictions race them.
                        let n = (i * 7 + worker * 13) % 3_000;
                        let name = format!("u{n}");
                        let hash = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        match i % 10 {
                            0 => table.remove(&name, hash),
                            1..=4 => table.insert(hash, account(&name, 1 + (i % 4) as usize)),
                            _ => {
                                if let Some(e) = table.get(&name, hash) {
                                    assert_eq!(e.name(), name);
                                }
                            }
                        }
                        if worker == 0 && i % 5_000 == 4_999 {
                            table.clear();
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("no worker panicked or deadlocked");
        }
        assert_within(&table, 2_000);
    }

    #[test]
    fn clear_drops_everything() {
        let table = AccountTable::new(1000, None);
        for i in 0..50u64 {
            table.insert(i, account(&format!("u{i}"), 2));
        }
        table.clear();
        assert_eq!(stored_slots(&table), 0);
        assert_eq!(table.weighted_size(), 0);
        assert!(table.get("u1", 1).is_none());
    }
}
