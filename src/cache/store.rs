//! AccountStore: the per-account map behind [`ProfileCache`](super::ProfileCache), bounded in
//! (account, tag) slots, evicting by CLOCK.
//!
//! It replaces moka for the per-pair cache, whose per-entry bookkeeping (an `Arc`'d key, entry
//! info, deque nodes, about 340 bytes an account in S5) and per-`get` work (a clock read, a
//! read-op record, housekeeping) were most of a hit's cost and memory. Here a read is one hash,
//! a shard's read lock and one probe, and marks the entry visited with a relaxed store; an
//! entry costs its key, an `Arc` and a flag in a shard's table.
//!
//! Accounts are spread over [`SHARDS`] shards by hash. Each shard holds its entries in a `Vec`
//! (the CLOCK ring) indexed by a map from account to position. When an insert takes the store
//! past `max_entries` slots, the hand of the shard it went into sweeps that shard's ring: a
//! visited entry is spared once (its flag cleared), an unvisited one is evicted and reported.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::CachedAccount;
use crate::wire::Account;

/// moka's SipHash was a visible cost on the hit path; foldhash is much faster and still seeded
/// per process.
type Hasher = foldhash::fast::RandomState;

/// Shards: enough that two cores rarely meet on one lock, few enough that each shard's share
/// of a small `max_entries` still holds an account.
const SHARDS: usize = 64;

/// Called with each account evicted for room (not for replacement or invalidation).
pub type OnEvict = Box<dyn Fn() + Send + Sync>;

pub struct AccountStore {
    shards: Box<[RwLock<Shard>]>,
    hasher: Hasher,
    /// Slots the store may hold, and holds.
    capacity: u64,
    total: AtomicU64,
    on_evict: Option<OnEvict>,
}

#[derive(Default)]
struct Shard {
    /// Account -> position in `ring`.
    index: HashMap<Account, usize, Hasher>,
    ring: Vec<Entry>,
    hand: usize,
    /// Slots held.
    weight: u64,
}

struct Entry {
    account: Account,
    value: Arc<CachedAccount>,
    visited: AtomicBool,
}

impl AccountStore {
    /// A store of at most about `max_slots` (account, tag) slots.
    pub fn new(max_slots: u64, on_evict: Option<OnEvict>) -> AccountStore {
        AccountStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: Hasher::default(),
            capacity: max_slots,
            total: AtomicU64::new(0),
            on_evict,
        }
    }

    /// `account`'s hash, which picks its shard.
    pub fn hash(&self, account: &str) -> u64 {
        self.hasher.hash_one(account)
    }

    fn shard(&self, account: &str) -> &RwLock<Shard> {
        self.shard_of(self.hash(account))
    }

    fn shard_of(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[hash as usize % SHARDS]
    }

    /// The cached tags of `account`; marks it visited.
    pub fn get(&self, account: &str) -> Option<Arc<CachedAccount>> {
        self.get_hashed(account, self.hash(account))
    }

    /// [`AccountStore::get`] with the account's [`AccountStore::hash`] already taken.
    pub fn get_hashed(&self, account: &str, hash: u64) -> Option<Arc<CachedAccount>> {
        let shard = self.shard_of(hash).read();
        let entry = &shard.ring[*shard.index.get(account)?];
        if !entry.visited.load(Ordering::Relaxed) {
            entry.visited.store(true, Ordering::Relaxed);
        }
        Some(entry.value.clone())
    }

    /// Inserts or replaces `account`'s entry, evicting others of its shard while the store is
    /// over capacity.
    pub fn insert(&self, account: &Account, value: Arc<CachedAccount>) {
        let weight = value.weight();
        let mut evicted = 0;
        {
            let mut shard = self.shard(account.as_str()).write();
            let shard = &mut *shard;
            match shard.index.get(account.as_str()) {
                Some(&at) => {
                    let old = std::mem::replace(&mut shard.ring[at].value, value);
                    shard.weight = shard.weight - old.weight() + weight;
                    self.total.fetch_sub(old.weight(), Ordering::Relaxed);
                }
                None => {
                    shard.index.insert(account.clone(), shard.ring.len());
                    shard.ring.push(Entry {
                        account: account.clone(),
                        value,
                        visited: AtomicBool::new(false),
                    });
                    shard.weight += weight;
                }
            }
            let mut total = self.total.fetch_add(weight, Ordering::Relaxed) + weight;
            while total > self.capacity && shard.ring.len() > 1 {
                let freed = shard.evict_one(account.as_str());
                total = self.total.fetch_sub(freed, Ordering::Relaxed) - freed;
                evicted += 1;
            }
        }
        if let Some(on_evict) = &self.on_evict {
            (0..evicted).for_each(|_| on_evict());
        }
    }

    /// Drops `account`'s entry, if any.
    pub fn remove(&self, account: &str) {
        let mut shard = self.shard(account).write();
        if let Some(at) = shard.index.get(account).copied() {
            let freed = shard.remove_at(at);
            self.total.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            self.total.fetch_sub(shard.weight, Ordering::Relaxed);
            *shard = Shard::default();
        }
    }

    /// Slots held.
    pub fn weight(&self) -> u64 {
        self.shards.iter().map(|s| s.read().weight).sum()
    }
}

impl Shard {
    /// Sweeps the hand to the first unvisited entry other than `keep` (the account just
    /// inserted), clearing visited ones, and removes it; returns its weight. Needs another
    /// entry than `keep`.
    fn evict_one(&mut self, keep: &str) -> u64 {
        loop {
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let entry = &self.ring[self.hand];
            if entry.account.as_str() == keep || entry.visited.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            return self.remove_at(self.hand);
        }
    }

    /// Removes the entry at `at`, moving the last entry into its place; returns its weight.
    fn remove_at(&mut self, at: usize) -> u64 {
        let removed = self.ring.swap_remove(at);
        self.index.remove(removed.account.as_str());
        let weight = removed.value.weight();
        self.weight -= weight;
        if let Some(moved) = self.ring.get(at) {
            self.index.insert(moved.account.clone(), at);
        }
        weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn entry(slots: usize) -> Arc<CachedAccount> {
        Arc::new(CachedAccount::with_absent_slots(slots))
    }

    #[test]
    fn holds_replaces_and_removes_accounts() {
        let store = AccountStore::new(1000, None);
        let a = Account::from("a");
        store.insert(&a, entry(2));
        store.insert(&Account::from("b"), entry(1));
        assert_eq!(store.weight(), 3);
        store.insert(&a, entry(4));
        assert_eq!(store.weight(), 5);
        assert!(store.get("a").is_some_and(|e| e.weight() == 4));
        store.remove("a");
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some());
        assert_eq!(store.weight(), 1);
        store.clear();
        assert!(store.get("b").is_none());
        assert_eq!(store.weight(), 0);
    }

    #[test]
    fn stays_within_its_slots_and_spares_visited_accounts() {
        let evicted = Arc::new(AtomicU64::new(0));
        let counter = evicted.clone();
        let on_evict: OnEvict = Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let store = AccountStore::new(SHARDS as u64 * 4, Some(on_evict));
        let hot = Account::from("hot");
        store.insert(&hot, entry(1));
        for i in 0..10_000 {
            assert!(store.get("hot").is_some(), "visited before each insert");
            store.insert(&Account::from(format!("u{i}").as_str()), entry(1));
        }
        assert!(store.weight() <= SHARDS as u64 * 4);
        assert!(evicted.load(Ordering::Relaxed) >= 10_000 - SHARDS as u64 * 4);
        assert!(store.get("hot").is_some(), "a visited account is spared");
    }
}
