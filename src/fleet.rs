//! The fleet: gateways of one app sharing a Redis become one gateway to Tencent: one upstream
//! budget (limiter.rs), one cache tier behind every L1 (tier.rs), one truth after a write
//! (the invalidation channel, channel.rs). With no Redis configured none of this runs and the
//! gateway is standalone, exactly as without this module.
//!
//! | file | owns |
//! |---|---|
//! | `backend.rs` | the Redis in its shape (single, Sentinel, Cluster), TLS trust and credentials |
//! | `failover.rs` | following a Sentinel failover to the new primary |
//! | `link.rs` | the Redis connection, per-command timeout, fleet/fallback mode |
//! | `scripts.rs` | the Lua run inside Redis, on Redis's clock |
//! | `membership.rs` | this gateway's lease, renewed with its shares by a heartbeat; leaving |
//! | `limiter.rs` | one API's budget: this gateway's share, the fleet's pool, the shared pace |
//! | `tier.rs` | shared (account, tag) values with versions; fleet-wide invalidation; claims |
//! | `fills.rs` | claimed accounts heard filled; the wait of a gateway that found a claim |
//! | `channel.rs` | receiving invalidations and fills; flushing L1 when some may be missed |
//! | `metrics.rs` | the fleet's metric families |
//!
//! Nothing else names this module but the wiring: [`Fleet`] plugs into the seams the other
//! modules define, [`BudgetSource`] (ratelimit: the fleet's budgets behind each
//! `UpstreamLimiter`), [`SharedTier`] (cache: the fleet's tier behind each L1) and
//! [`Report`] (its line in `/readyz`).

mod backend;
mod channel;
mod failover;
mod fills;
mod limiter;
mod link;
mod membership;
pub(crate) mod metrics;
mod scripts;
mod tier;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::apis::WINDOW;
use crate::cache::{
    AccountMiss, ListKeys, ListTierAnswer, ListTierWrite, ProfileCache, SharedTier, TierAnswer,
    TierWrite,
};
use crate::config::Config;
use crate::ratelimit::{BudgetSource, SharedBudget};
use crate::readiness::Report;
use crate::wire::Account;
use limiter::FleetLimiter;
use link::Link;
use membership::Membership;
use metrics::FleetMetrics;
use tier::RedisTier;

/// A running fleet membership: the link, the shared tier, the heartbeat and the channel
/// task; both tasks stop when this is dropped.
pub(crate) struct Fleet {
    link: Link,
    tier: RedisTier,
    membership: Membership,
    upstream_timeout: Duration,
    heartbeat: CancellationToken,
    _stop: DropGuard,
}

impl Fleet {
    /// Joins the fleet configured in `config.fleet`, or returns `None` when it names no Redis.
    /// Connects lazily: a Redis that is down at start-up only means starting in fallback.
    /// Must run inside a tokio runtime (it spawns the channel and heartbeat tasks).
    pub(crate) fn join(
        config: &Config,
        cache: &ProfileCache,
        metrics: FleetMetrics,
    ) -> Option<Fleet> {
        let shape = config.fleet.redis.as_ref()?;
        let link = match Link::new(&config.fleet, shape, config.upstream.sdkappid, metrics) {
            Ok(link) => link,
            Err(e) => {
                // Validated at load; only an unreadable CA file can get here.
                tracing::error!(error = %e, "fleet: cannot prepare the Redis client; standalone");
                return None;
            }
        };
        // A claim lives as long as its claimer's fetch may take: queued, then sent.
        let claim_ttl = config.limits.max_queue_wait + config.upstream.timeout + WINDOW;
        let tier = RedisTier::new(link.clone(), config.cache.ttl, claim_ttl);
        let stop = CancellationToken::new();
        tokio::spawn(channel::run(tier.clone(), cache.clone(), stop.clone()));
        if link.backend().follows_failovers() {
            tokio::spawn(failover::follow(link.clone(), stop.clone()));
        }
        let membership = Membership::new(link.clone(), &config.fleet);
        let heartbeat = stop.child_token();
        tokio::spawn(membership.clone().run(heartbeat.clone()));
        Some(Fleet {
            link,
            tier,
            membership,
            upstream_timeout: config.upstream.timeout,
            heartbeat,
            _stop: stop.drop_guard(),
        })
    }

    /// Leaves the fleet (a graceful stop): no more heartbeats; once this gateway's last
    /// calls' window has passed, its shares return to the others at once.
    pub(crate) async fn leave(&self) {
        self.heartbeat.cancel();
        self.membership.leave().await;
    }
}

impl BudgetSource for Fleet {
    fn budget(&self, api: &str, requests_per_second: NonZeroU32) -> Arc<dyn SharedBudget> {
        let limiter = FleetLimiter::new(
            self.link.clone(),
            self.membership.state(),
            api,
            requests_per_second,
            self.upstream_timeout,
        );
        self.membership.register(limiter.clone());
        Arc::new(limiter)
    }
}

/// `/readyz` shows the mode, the membership and every budget's shares.
impl Report for Fleet {
    fn readiness(&self) -> String {
        let mode = if self.link.is_up() {
            metrics::Mode::Fleet
        } else {
            metrics::Mode::Fallback
        };
        let mut line = self.link.metrics().readiness(mode);
        if let Some(error) = self.link.last_error() {
            line.push_str(&format!("; redis_error={error:?}"));
        }
        line
    }
}

/// The fleet is the tier: whoever holds it (the service, the batch worker) keeps the
/// membership and its channel task alive.
impl SharedTier for Fleet {
    fn lookup<'a>(
        &'a self,
        misses: &'a [AccountMiss],
        claim: bool,
    ) -> BoxFuture<'a, Option<Vec<TierAnswer>>> {
        Box::pin(self.tier.lookup(misses, claim))
    }

    fn put<'a>(&'a self, writes: &'a [TierWrite]) -> BoxFuture<'a, Option<Vec<bool>>> {
        Box::pin(self.tier.put(writes))
    }

    fn wait_filled<'a>(
        &'a self,
        accounts: &'a [Account],
        since: Instant,
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<bool>> {
        Box::pin(self.tier.wait_filled(accounts, since, deadline))
    }

    fn release<'a>(&'a self, accounts: &'a [Account]) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.release(accounts))
    }

    fn invalidate<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.invalidate(account))
    }

    fn invalidate_list<'a>(&'a self, api: &'a str, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.invalidate_list(api, id))
    }

    fn set_ttl(&self, ttl: Duration) {
        self.tier.set_ttl(ttl);
    }

    fn list_lookup<'a>(
        &'a self,
        keys: ListKeys<'a>,
        ids: &'a [Arc<str>],
        read: bool,
    ) -> BoxFuture<'a, Option<Vec<ListTierAnswer>>> {
        Box::pin(self.tier.list_lookup(keys, ids, read))
    }

    fn list_put<'a>(
        &'a self,
        keys: ListKeys<'a>,
        fetched: &'a [(Arc<str>, ListTierWrite)],
        ttl: Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.list_put(keys, fetched, ttl))
    }

    fn list_wait_filled<'a>(
        &'a self,
        keys: ListKeys<'a>,
        ids: &'a [Arc<str>],
        since: Instant,
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<bool>> {
        Box::pin(self.tier.list_wait_filled(keys, ids, since, deadline))
    }
}
