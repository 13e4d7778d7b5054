//! The seam behind L1: what a cache lookup missed ([`AccountMiss`]), and [`CacheTier`], what
//! stands behind this gateway's cache: nothing (standalone), or a tier shared by a fleet that
//! implements [`SharedTier`]. The cache side owns the seam and its data; the fleet plugs into
//! it, so nothing here (nor the batcher or the service, which hold a `CacheTier`) names it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::wire::{Account, RawJson, Tag};

/// The tags of one account a caller could not answer from the cache.
#[derive(Debug, Clone)]
pub struct AccountMiss {
    /// The account; unique within one fetch.
    pub account: Account,
    /// Its missing tags; unique.
    pub tags: Vec<Tag>,
    /// In a fleet, the account's version read from the shared tier before this miss was
    /// queued: the fence that keeps an older fetch from writing back. `None`: not read.
    pub version: Option<u64>,
}

/// What the shared tier had for one missed account.
#[derive(Debug, Default)]
pub struct TierAnswer {
    /// The account's version when read: the fence for writing what a fetch brings back.
    pub version: u64,
    /// Fresh (tag, value) pairs found; `None` = cached as unset.
    pub found: Vec<(Tag, Option<RawJson>)>,
    /// How long the shortest-lived of `found` stays fresh.
    pub fresh_for: Duration,
}

/// Fetched values of one account to write, fenced by the version read before the fetch.
pub struct TierWrite {
    /// The account.
    pub account: Account,
    /// Its version when the fetch was sent.
    pub version: u64,
    /// What the upstream answered, `None` = unset.
    pub values: Vec<(Tag, Option<RawJson>)>,
}

/// A cache tier shared by several gateways (the fleet's Redis).
pub trait SharedTier: Send + Sync + 'static {
    /// Looks every miss up in one round trip, answers aligned with `misses`; `None` when the
    /// tier is unavailable (the caller goes to the upstream as a standalone gateway would).
    fn lookup<'a>(&'a self, misses: &'a [AccountMiss]) -> BoxFuture<'a, Option<Vec<TierAnswer>>>;

    /// Writes fetched values, each account only while its version is unchanged; which were
    /// written (aligned with `writes`), or `None` when the tier did not answer.
    fn put<'a>(&'a self, writes: &'a [TierWrite]) -> BoxFuture<'a, Option<Vec<bool>>>;

    /// Tells every gateway sharing the tier that `account` changed (this gateway's L1 is the
    /// caller's job); kept and sent later when the tier is unavailable.
    fn invalidate<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()>;
}

/// What stands behind each gateway's L1; cheap to clone.
#[derive(Clone, Default)]
pub enum CacheTier {
    /// Standalone: L1 is the only cache.
    #[default]
    Local,
    /// A tier shared by a fleet.
    Shared(Arc<dyn SharedTier>),
}

impl CacheTier {
    /// Looks misses up behind L1 (one round trip); `None` when there is nothing to ask.
    pub async fn lookup(&self, misses: &[AccountMiss]) -> Option<Vec<TierAnswer>> {
        match self {
            CacheTier::Local => None,
            CacheTier::Shared(tier) => tier.lookup(misses).await,
        }
    }

    /// Tells the rest of the fleet that `account` changed (L1 is the caller's job).
    pub async fn invalidate(&self, account: &Account) {
        if let CacheTier::Shared(tier) = self {
            tier.invalidate(account).await;
        }
    }

    /// The shared tier, if any.
    pub fn shared(&self) -> Option<&Arc<dyn SharedTier>> {
        match self {
            CacheTier::Local => None,
            CacheTier::Shared(tier) => Some(tier),
        }
    }
}
