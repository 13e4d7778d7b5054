//! `[breaker]`: when the gateway stops calling a failing upstream, and for how long.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{at_least, millis};
use super::ConfigError;

/// `[breaker]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive whole-call failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe call may go through.
    pub open: Duration,
}

raw_section!(
    /// `[breaker]` as written.
    RawBreaker { failure_threshold: u32 = 5, open_ms: u64 = 2_000, }
);

impl RawBreaker {
    pub(super) fn validate(self) -> Result<BreakerConfig, ConfigError> {
        Ok(BreakerConfig {
            failure_threshold: at_least("breaker.failure_threshold", self.failure_threshold, 1)?,
            open: millis("breaker.open_ms", self.open_ms)?,
        })
    }
}
