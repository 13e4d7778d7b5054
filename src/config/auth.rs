//! `[auth]`: who may call the gateway (a UserSig of one of the admins, or anyone), and the
//! memory for cached UserSig verdicts.

use serde::{Deserialize, Serialize};

use super::checks::invalid;
use super::ConfigError;

/// How callers are authenticated (`auth.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `"usersig"`: callers must present a valid UserSig of one of `auth.admins`.
    #[default]
    UserSig,
    /// `"none"`: trust the network; any caller is accepted.
    None,
}

/// `[auth]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// How callers are authenticated.
    pub mode: AuthMode,
    /// Identifiers allowed to call; never empty (an empty file list means `[upstream.identifier]`).
    pub admins: Vec<String>,
    /// Memory for cached UserSig verdicts, weighed in bytes.
    pub verdict_cache_bytes: u64,
}

raw_section!(
    /// `[auth]` as written.
    RawAuth {
        mode: AuthMode = AuthMode::UserSig,
        admins: Vec<String> = Vec::new(),
        verdict_cache_bytes: u64 = 8 * 1024 * 1024,
    }
);

impl RawAuth {
    pub(super) fn validate(self, identifier: &str) -> Result<AuthConfig, ConfigError> {
        let admins = if self.admins.is_empty() {
            vec![identifier.to_owned()]
        } else {
            self.admins
        };
        if admins.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                "auth.admins",
                format!("{admins:?}"),
                "entries must not be empty",
            ));
        }
        Ok(AuthConfig {
            mode: self.mode,
            admins,
            verdict_cache_bytes: self.verdict_cache_bytes,
        })
    }
}
