//! The fleet: gateways of one app sharing a Redis become one gateway to Tencent: one upstream
//! budget (limiter.rs), one cache tier behind every L1 (tier.rs), one truth after a write
//! (the invalidation channel, channel.rs). With no `fleet.redis_url` none of this runs and the
//! gateway is standalone, exactly as without this module.
//!
//! | file | owns |
//! |---|---|
//! | `link.rs` | the Redis connection, per-command timeout, fleet/fallback mode |
//! | `scripts.rs` | the Lua run inside Redis, on Redis's clock |
//! | `limiter.rs` | the fleet budget and the fallback budget while Redis is down |
//! | `tier.rs` | shared (account, tag) values with versions; fleet-wide invalidation |
//! | `channel.rs` | receiving invalidations; flushing L1 when some may have been missed |
//! | `metrics.rs` | the fleet's metric families |
//!
//! Nothing else names this module but the wiring: [`Fleet`] plugs into the two seams the
//! other modules define, [`BudgetSource`] (ratelimit: the fleet's budgets behind each
//! `UpstreamLimiter`) and [`SharedTier`] (cache: the fleet's tier behind each L1).

mod channel;
mod limiter;
mod link;
pub mod metrics;
mod scripts;
mod tier;

use std::num::NonZeroU32;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::cache::{AccountMiss, ProfileCache, SharedTier, TierAnswer, TierWrite};
use crate::config::Config;
use crate::ratelimit::{BudgetSource, SharedBudget};
use crate::wire::Account;
use limiter::FleetLimiter;
use link::Link;
use metrics::FleetMetrics;
use tier::RedisTier;

/// A running fleet membership: the link, the shared tier and the channel task, which stops
/// when this is dropped.
pub struct Fleet {
    link: Link,
    tier: RedisTier,
    fallback_instances: NonZeroU32,
    upstream_timeout: Duration,
    _stop: DropGuard,
}

impl Fleet {
    /// Joins the fleet configured in `config.fleet`, or returns `None` when it names no Redis.
    /// Connects lazily: a Redis that is down at start-up only means starting in fallback.
    /// Must run inside a tokio runtime (it spawns the channel task).
    pub fn join(config: &Config, cache: &ProfileCache, metrics: FleetMetrics) -> Option<Fleet> {
        config.fleet.redis_url.as_ref()?;
        let link = Link::new(&config.fleet, config.upstream.sdkappid, metrics)
            .expect("fleet.redis_url was validated when the config was loaded");
        let tier = RedisTier::new(link.clone(), config.cache.ttl);
        let stop = CancellationToken::new();
        tokio::spawn(channel::run(tier.clone(), cache.clone(), stop.clone()));
        Some(Fleet {
            link,
            tier,
            fallback_instances: config.fleet.fallback_instances,
            upstream_timeout: config.upstream.timeout,
            _stop: stop.drop_guard(),
        })
    }
}

impl BudgetSource for Fleet {
    fn budget(&self, api: &str, requests_per_second: NonZeroU32) -> Arc<dyn SharedBudget> {
        Arc::new(FleetLimiter::new(
            self.link.clone(),
            api,
            requests_per_second,
            self.fallback_instances,
            self.upstream_timeout,
        ))
    }
}

/// The fleet is the tier: whoever holds it (the service, the batch worker) keeps the
/// membership and its channel task alive.
impl SharedTier for Fleet {
    fn lookup<'a>(&'a self, misses: &'a [AccountMiss]) -> BoxFuture<'a, Option<Vec<TierAnswer>>> {
        Box::pin(self.tier.lookup(misses))
    }

    fn put<'a>(&'a self, writes: &'a [TierWrite]) -> BoxFuture<'a, Option<Vec<bool>>> {
        Box::pin(self.tier.put(writes))
    }

    fn invalidate<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.invalidate(account))
    }
}
