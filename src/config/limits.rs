//! `[limits]`: the upstream rate budgets of `portrait_get` and `portrait_set`, and how cache
//! misses are batched and queued for them.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{between, rate};
use super::ConfigError;
use crate::wire::MAX_ACCOUNTS_PER_REQUEST;

/// `[limits]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Upstream `portrait_get` calls per second.
    pub requests_per_second: NonZeroU32,
    /// Upstream `portrait_set` calls per second, a budget of their own.
    pub set_requests_per_second: NonZeroU32,
    /// Accounts per upstream `portrait_get` (1..=100).
    pub max_accounts_per_batch: usize,
    /// How long a cache miss may wait for others to share its upstream call.
    pub batch_window: Duration,
    /// A caller waiting longer than this for upstream capacity gets an error.
    pub max_queue_wait: Duration,
}

raw_section!(
    /// `[limits]` as written.
    RawLimits {
        requests_per_second: u32 = 200,
        set_requests_per_second: u32 = 200,
        max_accounts_per_batch: usize = MAX_ACCOUNTS_PER_REQUEST,
        batch_window_ms: u64 = 2,
        max_queue_wait_ms: u64 = 2_000,
    }
);

impl RawLimits {
    pub(super) fn validate(self) -> Result<LimitsConfig, ConfigError> {
        let (get, set) = (self.requests_per_second, self.set_requests_per_second);
        let batch = self.max_accounts_per_batch;
        Ok(LimitsConfig {
            requests_per_second: rate("limits.requests_per_second", get)?,
            set_requests_per_second: rate("limits.set_requests_per_second", set)?,
            max_accounts_per_batch: between(
                "limits.max_accounts_per_batch",
                batch,
                1,
                MAX_ACCOUNTS_PER_REQUEST,
            )?,
            batch_window: Duration::from_millis(self.batch_window_ms),
            max_queue_wait: Duration::from_millis(self.max_queue_wait_ms),
        })
    }
}
