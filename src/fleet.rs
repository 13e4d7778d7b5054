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
//! The batcher and the service see only the seams: [`crate::ratelimit::UpstreamLimiter`]
//! (local or fleet engine) and [`CacheTier`] (local: nothing behind L1; shared: Redis).

mod channel;
mod limiter;
mod link;
pub mod metrics;
mod scripts;
mod tier;

use std::num::NonZeroU32;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

pub use limiter::{FleetLimiter, FleetPermit};
pub use tier::{SharedTier, TierAnswer, TierWrite};

use crate::batcher::AccountMiss;
use crate::cache::ProfileCache;
use crate::config::Config;
use crate::wire::Account;
use link::Link;
use metrics::FleetMetrics;

/// What stands behind each gateway's L1: nothing (standalone) or the fleet's shared tier.
#[derive(Clone, Default)]
pub enum CacheTier {
    /// Standalone: L1 is the only cache.
    #[default]
    Local,
    /// The fleet's Redis tier.
    Shared(SharedTier),
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
    pub fn shared(&self) -> Option<&SharedTier> {
        match self {
            CacheTier::Local => None,
            CacheTier::Shared(tier) => Some(tier),
        }
    }
}

/// A running fleet membership: the link, the shared tier and the channel task, which stops
/// when this is dropped.
pub struct Fleet {
    link: Link,
    tier: SharedTier,
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
        let tier = SharedTier::new(link.clone(), config.cache.ttl);
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

    /// The fleet's budget for one upstream API (`api` names it in Redis).
    pub fn limiter(&self, api: &str, requests_per_second: NonZeroU32) -> FleetLimiter {
        FleetLimiter::new(
            self.link.clone(),
            api,
            requests_per_second,
            self.fallback_instances,
            self.upstream_timeout,
        )
    }

    /// The shared cache tier.
    pub fn tier(&self) -> CacheTier {
        CacheTier::Shared(self.tier.clone())
    }
}
