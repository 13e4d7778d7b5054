//! AccountTable: where cached accounts are kept and read, with moka deciding what stays.
//!
//! Accounts are spread by hash over a fixed number of buckets. A bucket is a short list of
//! `(hash, Arc<CachedAccount>)`, kept in a [`papaya`] map by bucket index and replaced whole on
//! every change (copy on write: a bucket holds a handful of accounts). Reads take no lock and
//! no reference count: a request pins the map once ([`AccountTable::reader`]) and every account
//! it reads is borrowed until it is done; a replaced list is freed once no reader can see it.
//! (A read-write lock per bucket cost two atomic read-modify-writes per account read, half of
//! the hit path's own time on a 100-account body: docs/benchmarks-history.md, State I.)
//!
//! moka holds one entry per *bucket* (key: its index, value and weight: the slots it holds) and
//! does what it is for: admission (TinyLFU), eviction against `cache.max_entries`, and the
//! removal notice, on which the bucket is emptied. Grouping divides moka's bookkeeping per entry
//! (about 300 bytes) among the accounts of a bucket, and reads report one lookup in
//! [`READ_SAMPLE`] to moka, so its popularity estimate and recency order follow the traffic
//! without a moka `get` per account. The price: an eviction drops a bucket's accounts together.
//!
//! Consistency between the lists and moka: a bucket's list is changed only under its writer
//! mutex, which also covers the moka update that follows, so moka's weight of a bucket is never
//! below what the list holds once the update is in (an eviction racing a write may leave moka
//! counting slots a list no longer has, or a writer may put back accounts an eviction had just
//! dropped, counting them: capacity unused, never exceeded). The removal notice takes no writer
//! mutex, because moka may call it from within any of its calls, writers' included.

use std::cell::Cell;
use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use papaya::{HashMap, HashMapRef, LocalGuard};
use parking_lot::Mutex;

use super::metrics::CacheEvictions;
use super::CachedAccount;

/// About how many (account, tag) slots a bucket holds when the cache is full: 8 accounts of 4
/// tags. Larger buckets share moka's per-entry cost among more accounts but evict more at once.
const SLOTS_PER_BUCKET: u64 = 32;

/// One lookup in this many is reported to moka as a read of its bucket (1 in 8, 16 or 32 gave
/// the same hit ratios under eviction, reporting every read lower ones: BENCHMARKS.md).
const READ_SAMPLE: u32 = 32;

/// Buckets are keyed by index: an identity-like hash is enough (foldhash of a `u32`).
type IndexHasher = foldhash::fast::FixedState;

/// The accounts of one bucket, each with its hash.
type Entries = Vec<(u64, Arc<CachedAccount>)>;

/// The non-empty buckets' lists, by bucket index.
type Lists = HashMap<u32, Entries, IndexHasher>;

/// The cached accounts (see the module doc).
pub(super) struct AccountTable {
    lists: Arc<Lists>,
    /// One per bucket: serialises the bucket's writers, across their moka update.
    writers: Box<[Mutex<()>]>,
    /// `writers.len() - 1` (a power of two).
    mask: u64,
    /// One entry per non-empty bucket, weighted by its slots.
    policy: Cache<u32, u32, IndexHasher>,
}

/// A request's view of the table: accounts read through it are borrowed, without locks or
/// reference counts, until it is dropped. Keep it for one request's synchronous work.
pub struct Reader<'t> {
    table: &'t AccountTable,
    lists: HashMapRef<'t, u32, Entries, IndexHasher, LocalGuard<'t>>,
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
        let lists: Arc<Lists> = Arc::new(HashMap::builder().hasher(IndexHasher::default()).build());
        let emptied = Arc::clone(&lists);
        let policy = Cache::builder()
            .max_capacity(max_slots)
            .weigher(|_: &u32, slots: &u32| *slots)
            .eviction_listener(move |index: Arc<u32>, _, cause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                let dropped = emptied.pin().remove(&*index).map_or(0, Vec::len);
                if let Some(evictions) = &evictions {
                    evictions.record(cause, dropped as u64);
                }
            })
            .build_with_hasher(IndexHasher::default());
        AccountTable {
            lists,
            writers: (0..count).map(|_| Mutex::new(())).collect(),
            mask: count - 1,
            policy,
        }
    }

    fn index(&self, hash: u64) -> u32 {
        (hash & self.mask) as u32
    }

    /// A view for reading many accounts without a lock or reference count each.
    pub(super) fn reader(&self) -> Reader<'_> {
        Reader {
            table: self,
            lists: self.lists.pin(),
        }
    }

    /// The account `name` (of hash `hash`), if cached.
    pub(super) fn get(&self, name: &str, hash: u64) -> Option<Arc<CachedAccount>> {
        self.reader().entry(name, hash).map(Arc::clone)
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
                None => entries.push((hash, entry)),
            }
        });
    }

    /// Drops the account `name`, if cached.
    pub(super) fn remove(&self, name: &str, hash: u64) {
        self.update(hash, |entries| {
            entries.retain(|(h, e)| *h != hash || e.name() != name);
        });
    }

    /// Replaces the list of `hash`'s bucket with a changed copy, then tells moka its weight.
    fn update(&self, hash: u64, change: impl FnOnce(&mut Entries)) {
        let index = self.index(hash);
        let _writer = self.writers[index as usize].lock();
        let slots = {
            let lists = self.lists.pin();
            let current = lists.get(&index);
            let mut entries = Entries::with_capacity(current.map_or(0, Vec::len) + 1);
            entries.extend(current.into_iter().flatten().cloned());
            change(&mut entries);
            entries.shrink_to_fit();
            let slots = entries
                .iter()
                .map(|(_, e)| u64::from(e.weight()))
                .sum::<u64>();
            match entries.is_empty() {
                true => drop(lists.remove(&index)),
                false => drop(lists.insert(index, entries)),
            }
            slots
        };
        match u32::try_from(slots) {
            Ok(0) => self.policy.invalidate(&index),
            Ok(slots) => self.policy.insert(index, slots),
            Err(_) => self.policy.insert(index, u32::MAX),
        }
    }

    /// Drops every account.
    pub(super) fn clear(&self) {
        let indexes: Vec<u32> = self.lists.pin().keys().copied().collect();
        for index in indexes {
            let _writer = self.writers[index as usize].lock();
            self.lists.pin().remove(&index);
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

impl<'t> Reader<'t> {
    /// The account `name` (of hash `hash`), if cached, borrowed for as long as this view.
    pub fn get(&self, name: &str, hash: u64) -> Option<&CachedAccount> {
        self.entry(name, hash).map(|e| &**e)
    }

    fn entry(&self, name: &str, hash: u64) -> Option<&Arc<CachedAccount>> {
        let index = self.table.index(hash);
        let found = self.lists.get(&index).and_then(|entries| {
            entries
                .iter()
                .find(|(h, e)| *h == hash && e.name() == name)
                .map(|(_, e)| e)
        });
        self.table.sample_read(index);
        found
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
            .lists
            .pin()
            .values()
            .flatten()
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
        for (index, entries) in table.lists.pin().iter() {
            let listed: u64 = entries.iter().map(|(_, e)| u64::from(e.weight())).sum();
            let kept = kept.get(index).copied().unwrap_or(0);
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
        let metrics =
            super::super::metrics::CacheMetrics::register(&crate::metrics::Metrics::new());
        let table = AccountTable::new(2_000, Some(metrics.evictions()));
        let hasher = foldhash::fast::RandomState::default();
        for i in 0..5_000 {
            let name = format!("user{i}");
            table.insert(hasher.hash_one(&name), account(&name, 4));
        }
        let stored = assert_within(&table, 2_000);
        assert!(stored > 1_000, "the cache is used: {stored} slots");
        let evicted = metrics.evictions().count("size");
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
