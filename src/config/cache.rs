//! `[cache]`: how many profile values are kept and for how long, the answer and rendered-entry
//! layers' memory, and how long stale or negative answers may be served.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::at_least;
use super::ConfigError;

/// `[cache]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Lifetime of a cached profile value.
    pub ttl: Duration,
    /// Capacity in cached (account, tag) pairs.
    pub max_entries: u64,
    /// How long a tag Tencent says does not exist is answered locally (zero disables).
    pub missing_tag_ttl: Duration,
    /// Memory for whole answers keyed on the exact request body (zero disables that layer).
    pub answer_cache_bytes: u64,
    /// Memory for the list reads' per-id answers (`[list_apis]` with `ttl_ms > 0`).
    pub list_cache_bytes: u64,
    /// Memory for accounts' answer entries rendered for one `TagList` (zero disables them).
    pub rendered_entry_bytes: u64,
    /// How long past its TTL a value may still answer when the upstream fails (zero: never).
    pub stale_if_error: Duration,
    /// How long past its TTL a value is answered at once while it is refreshed in the
    /// background (zero: never).
    pub stale_while_revalidate: Duration,
    /// How long a per-account "account not found" (40003) is answered locally (zero: never).
    pub failure_ttl: Duration,
}

raw_section!(
    /// `[cache]` as written.
    RawCache {
        ttl_seconds: u64 = 300,
        max_entries: u64 = 1_000_000,
        missing_tag_ttl_seconds: u64 = 60,
        answer_cache_bytes: u64 = 64 * 1024 * 1024,
        rendered_entry_bytes: u64 = 32 * 1024 * 1024,
        list_cache_bytes: u64 = 32 * 1024 * 1024,
        stale_if_error_seconds: u64 = 3_600,
        stale_while_revalidate_seconds: u64 = 30,
        failure_ttl_seconds: u64 = 5,
    }
);

impl RawCache {
    pub(super) fn validate(self) -> Result<CacheConfig, ConfigError> {
        Ok(CacheConfig {
            ttl: Duration::from_secs(at_least("cache.ttl_seconds", self.ttl_seconds, 1)?),
            max_entries: at_least("cache.max_entries", self.max_entries, 1)?,
            missing_tag_ttl: Duration::from_secs(self.missing_tag_ttl_seconds),
            answer_cache_bytes: self.answer_cache_bytes,
            rendered_entry_bytes: self.rendered_entry_bytes,
            list_cache_bytes: self.list_cache_bytes,
            stale_if_error: Duration::from_secs(self.stale_if_error_seconds),
            stale_while_revalidate: Duration::from_secs(self.stale_while_revalidate_seconds),
            failure_ttl: Duration::from_secs(self.failure_ttl_seconds),
        })
    }
}
