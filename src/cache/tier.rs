//! The seam behind L1: what a cache lookup missed ([`AccountMiss`]), and [`CacheTier`], what
//! stands behind this gateway's cache: nothing (standalone), or a tier shared by a fleet that
//! implements [`SharedTier`]. The cache side owns the seam and its data; the fleet plugs into
//! it, so nothing here (nor the batcher or the service, which hold a `CacheTier`) names it.
//!
//! A shared tier also makes a miss single-flight across gateways: a lookup may claim the
//! accounts it missed ([`Claim`]); a gateway that finds a peer's claim waits for that peer's
//! fetch to fill the tier ([`SharedTier::wait_filled`]) instead of fetching the same accounts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::ListEntry;
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

/// Who fetches an account the shared tier missed, as the lookup found or made its claim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nothing claimed: nothing was missing, or the lookup did not claim.
    #[default]
    Unclaimed,
    /// This gateway fetches it (its claim, made now or by another of its callers).
    Mine,
    /// A peer is fetching it; its claim lapses in this long.
    Theirs(Duration),
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
    /// Who fetches the tags `found` lacks, when the lookup claimed.
    pub claim: Claim,
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

/// What the shared tier had for one id of a list read.
#[derive(Debug, Clone)]
pub enum ListTierAnswer {
    /// Its entry (`None`: the upstream left the id out), fetched by a gateway of the fleet.
    Found(Option<ListEntry>),
    /// This gateway fetches it (its claim).
    Mine,
    /// A peer is fetching it; its claim lapses in this long.
    Theirs(Duration),
}

/// What this gateway's fetch of one claimed id of a list read came to.
#[derive(Debug, Clone)]
pub enum ListTierWrite {
    /// An entry to share.
    Entry(ListEntry),
    /// The upstream left the id out.
    Absent,
    /// Nothing to share (a per-id or whole-call failure): the claim ends, waiters fetch.
    Release,
}

/// The ids of one list read under one set of options, as the shared tier keys them.
#[derive(Debug, Clone, Copy)]
pub struct ListKeys<'a> {
    /// The API's label.
    pub api: &'a str,
    /// The request's options (canonical JSON): the same id under other options is another entry.
    pub options: &'a str,
}

/// A cache tier shared by several gateways (the fleet's Redis).
pub trait SharedTier: Send + Sync + 'static {
    /// Looks every miss up in one round trip, answers aligned with `misses`; `None` when the
    /// tier is unavailable (the caller goes to the upstream as a standalone gateway would).
    /// With `claim`, each account with tags still missing is claimed for this gateway unless a
    /// peer's claim holds it (in the same round trip).
    fn lookup<'a>(
        &'a self,
        misses: &'a [AccountMiss],
        claim: bool,
    ) -> BoxFuture<'a, Option<Vec<TierAnswer>>>;

    /// Writes fetched values, each account only while its version is unchanged; which were
    /// written (aligned with `writes`), or `None` when the tier did not answer. Ends this
    /// gateway's claims on the accounts and wakes the peers waiting on them.
    fn put<'a>(&'a self, writes: &'a [TierWrite]) -> BoxFuture<'a, Option<Vec<bool>>>;

    /// Waits until a peer's fetch filled each of `accounts` (heard of since `since`), until
    /// `deadline`, or until the tier becomes unavailable; which were filled, aligned.
    fn wait_filled<'a>(
        &'a self,
        accounts: &'a [Account],
        since: Instant,
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<bool>>;

    /// Ends this gateway's claims on `accounts` without values (the fetch failed): waiting
    /// peers wake and fetch for themselves.
    fn release<'a>(&'a self, accounts: &'a [Account]) -> BoxFuture<'a, ()>;

    /// Tells every gateway sharing the tier that `account` changed (this gateway's L1 is the
    /// caller's job); kept and sent later when the tier is unavailable.
    fn invalidate<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()>;

    /// Tells every gateway sharing the tier that `id` of the list read labelled `api` changed
    /// (this gateway's own cache is the caller's job); kept and sent later when the tier is
    /// unavailable.
    fn invalidate_list<'a>(&'a self, api: &'a str, id: &'a str) -> BoxFuture<'a, ()>;

    /// Sets the lifetime of values written from now on (a reload's `cache.ttl_seconds`).
    fn set_ttl(&self, ttl: Duration);

    /// A list read's ids in one round trip, claiming each it has no entry for unless a peer's
    /// claim holds it; entries are read only with `read` (a TTL, or after a peer's fetch).
    /// `None` when the tier is unavailable.
    fn list_lookup<'a>(
        &'a self,
        keys: ListKeys<'a>,
        ids: &'a [Arc<str>],
        read: bool,
    ) -> BoxFuture<'a, Option<Vec<ListTierAnswer>>>;

    /// Shares what this gateway's fetch of claimed ids brought (kept `ttl`, or only long
    /// enough for the waiting peers to read it when zero), ends the claims and wakes the
    /// peers waiting on them.
    fn list_put<'a>(
        &'a self,
        keys: ListKeys<'a>,
        fetched: &'a [(Arc<str>, ListTierWrite)],
        ttl: Duration,
    ) -> BoxFuture<'a, ()>;

    /// Waits until a peer's fetch of each of `ids` ended (heard of since `since`), until
    /// `deadline`, or until the tier becomes unavailable; which ended, aligned.
    fn list_wait_filled<'a>(
        &'a self,
        keys: ListKeys<'a>,
        ids: &'a [Arc<str>],
        since: Instant,
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<bool>>;
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
    /// Looks misses up behind L1 (one round trip), claiming what is still missing when
    /// `claim`; `None` when there is nothing to ask.
    pub async fn lookup(&self, misses: &[AccountMiss], claim: bool) -> Option<Vec<TierAnswer>> {
        match self {
            CacheTier::Local => None,
            CacheTier::Shared(tier) => tier.lookup(misses, claim).await,
        }
    }

    /// Tells the rest of the fleet that `account` changed (L1 is the caller's job).
    pub async fn invalidate(&self, account: &Account) {
        if let CacheTier::Shared(tier) = self {
            tier.invalidate(account).await;
        }
    }

    /// Tells the rest of the fleet that `id` of the list read `api` changed.
    pub async fn invalidate_list(&self, api: &str, id: &str) {
        if let CacheTier::Shared(tier) = self {
            tier.invalidate_list(api, id).await;
        }
    }

    /// Waits for peers' claimed fetches of `accounts`; standalone, nothing is awaited.
    pub async fn wait_filled(
        &self,
        accounts: &[Account],
        since: Instant,
        deadline: Instant,
    ) -> Vec<bool> {
        match self {
            CacheTier::Local => vec![false; accounts.len()],
            CacheTier::Shared(tier) => tier.wait_filled(accounts, since, deadline).await,
        }
    }

    /// Ends this gateway's claims on `accounts` (their fetch failed).
    pub async fn release(&self, accounts: &[Account]) {
        if let CacheTier::Shared(tier) = self {
            tier.release(accounts).await;
        }
    }

    /// Sets the shared tier's lifetime of values written from now on.
    pub fn set_ttl(&self, ttl: Duration) {
        if let CacheTier::Shared(tier) = self {
            tier.set_ttl(ttl);
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
