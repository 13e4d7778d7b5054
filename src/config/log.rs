//! `[log]`: the log output format; the level comes from `RUST_LOG`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Log output format (`log.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]` settings; the level comes from `RUST_LOG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Log output format.
    pub format: LogFormat,
}

raw_section!(
    /// `[log]` as written.
    RawLog { format: LogFormat = LogFormat::Text, }
);

impl RawLog {
    pub(super) fn validate(self) -> Result<LogConfig, ConfigError> {
        Ok(LogConfig {
            format: self.format,
        })
    }
}
