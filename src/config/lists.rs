//! `[list_apis."<service>/<command>"]`: which list reads are coalesced (the rows of
//! [`crate::apis::LIST_TABLE`]) and how long each id's answer is kept. A list read with no
//! section is passed through as any other API.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{between, invalid};
use super::ConfigError;
use crate::apis;

/// Longest `ttl_ms` accepted: a day (presence is seconds, account checks are stable).
const MAX_TTL_MS: u64 = 24 * 3600 * 1000;

/// One list read's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListApiConfig {
    /// Whether concurrent callers' ids are coalesced into shared upstream calls.
    pub enabled: bool,
    /// How long each id's answer is kept; zero: coalesce only, keep nothing.
    pub ttl: Duration,
}

/// `[list_apis]`: the configured list reads, by label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListApisConfig {
    /// By label (`openim/query_online_status`); only rows of the list table.
    pub by_label: BTreeMap<&'static str, ListApiConfig>,
}

impl ListApisConfig {
    /// The settings of `label`'s list read when it is coalesced.
    pub fn enabled(&self, label: &str) -> Option<&ListApiConfig> {
        self.by_label.get(label).filter(|api| api.enabled)
    }
}

raw_section!(
    /// One `[list_apis."<label>"]` as written.
    RawListApi {
        enabled: bool = true,
        ttl_ms: u64 = 0,
    }
);

/// `[list_apis]` as written.
pub type RawListApis = BTreeMap<String, RawListApi>;

pub(super) fn validate(raw: RawListApis) -> Result<ListApisConfig, ConfigError> {
    let mut by_label = BTreeMap::new();
    for (label, api) in raw {
        let Some(spec) = apis::list_spec(&label) else {
            let known: Vec<&str> = apis::LIST_TABLE.iter().map(|s| s.label).collect();
            let reason = format!(
                "not a list API this gateway coalesces; known: {}",
                known.join(", ")
            );
            return Err(invalid("list_apis", format!("\"{label}\""), reason));
        };
        let ttl_ms = between("list_apis.ttl_ms", api.ttl_ms, 0, MAX_TTL_MS)?;
        by_label.insert(
            spec.label,
            ListApiConfig {
                enabled: api.enabled,
                ttl: Duration::from_millis(ttl_ms),
            },
        );
    }
    Ok(ListApisConfig { by_label })
}
