//! The range checks every section validates its keys with, and the limits more than one section
//! shares. Each failure is a [`ConfigError::Invalid`] naming the dotted key.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use super::ConfigError;

/// Upper bound for every upstream rate budget, far above any Tencent quota.
const MAX_REQUESTS_PER_SECOND: u32 = 100_000;
/// Smallest allowed `server.max_body_bytes` and `upstream.max_response_bytes`; a real
/// `portrait_get` body is bigger.
pub(super) const MIN_BODY_BYTES: usize = 1024;

/// A timeout of at least 1 ms.
pub(super) fn millis(key: &'static str, value: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(at_least(key, value, 1)?))
}

/// A calls-per-second budget: 1 to [`MAX_REQUESTS_PER_SECOND`].
pub(super) fn rate(key: &'static str, value: u32) -> Result<NonZeroU32, ConfigError> {
    let value = between(key, value, 1, MAX_REQUESTS_PER_SECOND)?;
    Ok(NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN))
}

pub(super) fn at_least<T: PartialOrd + fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
) -> Result<T, ConfigError> {
    match value >= min {
        true => Ok(value),
        false => Err(invalid(key, &value, format!("must be at least {min}"))),
    }
}

pub(super) fn between<T: PartialOrd + fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    match min <= value && value <= max {
        true => Ok(value),
        false => Err(invalid(
            key,
            &value,
            format!("must be between {min} and {max}"),
        )),
    }
}

pub(super) fn invalid(
    key: &'static str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}
