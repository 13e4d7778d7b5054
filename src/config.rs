//! Gateway settings: built-in defaults < the TOML file < `TIM_GATEWAY__<SECTION>__<KEY>` env vars.
//!
//! Owns reading, overriding and validating settings into a typed [`Config`]. It does not bind
//! sockets, sign UserSigs or set up logging. `main.rs` calls [`Config::load`] once at startup (and
//! [`Config::require_secret_key`] for `run`) and passes the whole [`Config`] to `tim_gateway::run`,
//! which hands its sections to the server, upstream client, limiters and caches. Loading has two
//! steps: [`RawConfig`] mirrors the file and rejects unknown keys (a typo in a sidecar config must
//! not fail silently), and [`Config::from_raw`] validates it and builds `Duration`s,
//! `SocketAddr`, `Url` and `NonZeroU32`s.
//!
//! Config follows the data: each section's public type, its raw mirror and its checks live
//! together in one file, and everything is re-exported from here.
//!
//! | file | owns |
//! | --- | --- |
//! | `config.rs` | [`Config`], [`RawConfig`], [`ConfigError`], loading and parsing |
//! | `config/server.rs` | `[server]`: [`ServerConfig`] |
//! | `config/upstream.rs` | `[upstream]`: [`UpstreamConfig`], [`Region`], [`SecretKey`] |
//! | `config/auth.rs` | `[auth]`: [`AuthConfig`], [`AuthMode`] |
//! | `config/limits.rs` | `[limits]`: [`LimitsConfig`] |
//! | `config/cache.rs` | `[cache]`: [`CacheConfig`] |
//! | `config/log.rs` | `[log]`: [`LogConfig`], [`LogFormat`] |
//! | `config/fleet.rs` | `[fleet]`: [`FleetConfig`], [`RedisShape`], [`RedisUrl`], [`AfterLease`] |
//! | `config/breaker.rs` | `[breaker]`: [`BreakerConfig`] |
//! | `config/apis.rs` | `[passthrough]` and `[callback]`: [`PassThroughConfig`], [`CallbackConfig`] |
//! | `config/lists.rs` | `[list_apis]`: [`ListApisConfig`], [`ListApiConfig`] |
//! | `config/env.rs` | env overrides: [`EnvSource`], [`ProcessEnv`], [`ENV_PREFIX`] |
//! | `config/checks.rs` | the range checks and limits the sections share |

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Validated gateway settings, built by [`Config::load`], [`Config::from_toml_str`] or
/// [`Config::from_raw`]. `Debug` redacts the secret key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: the listener clients talk to.
    pub server: ServerConfig,
    /// `[upstream]`: the Tencent endpoint and the admin identity used to call it.
    pub upstream: UpstreamConfig,
    /// `[auth]`: who may call the gateway.
    pub auth: AuthConfig,
    /// `[limits]`: upstream rate budgets and batching.
    pub limits: LimitsConfig,
    /// `[cache]`: profile cache sizing and lifetimes.
    pub cache: CacheConfig,
    /// `[log]`: log output format.
    pub log: LogConfig,
    /// `[fleet]`: the Redis shared by a fleet of gateways (none: standalone).
    pub fleet: FleetConfig,
    /// `[breaker]`: when to stop calling a failing upstream for a while.
    pub breaker: BreakerConfig,
    /// `[passthrough]`: every other Tencent API, forwarded under its own limiter.
    pub passthrough: PassThroughConfig,
    /// `[callback]`: Tencent's callbacks, received, checked and relayed.
    pub callback: CallbackConfig,
    /// `[list_apis]`: the list reads coalesced like `portrait_get`.
    pub list_apis: ListApisConfig,
}

/// Why the configuration could not be loaded. Every `Display` is a single line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("cannot parse config {origin}: {message}")]
    Parse {
        /// The file path, or `<string>` for [`Config::from_toml_str`].
        origin: String,
        /// toml's error collapsed to one line (position and message; the source line is dropped
        /// so a secret in it is never printed).
        message: String,
    },
    /// A `TIM_GATEWAY__*` env var is malformed, unknown or has a bad value.
    #[error("invalid environment variable {var}: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value parsed but is out of range or otherwise unusable.
    #[error("invalid config: {key} = {value}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `limits.max_accounts_per_batch`.
        key: &'static str,
        /// The offending value as written (never the secret key).
        value: String,
        /// What is allowed instead.
        reason: String,
    },
}

/// `[section]` structs mirroring the file; fields are documented in `config/tim-gateway.toml`.
macro_rules! raw_section {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty = $default:expr,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name { $(pub $field: $ty,)* }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }
    };
}

// Sections in their own files (they use `raw_section!`, so they come after it).
mod apis;
mod auth;
mod breaker;
mod cache;
mod checks;
mod env;
mod fleet;
mod limits;
mod lists;
mod live;
mod log;
mod server;
mod upstream;

pub use apis::{CallbackConfig, PassThroughConfig, RawCallback, RawPassThrough};
pub use auth::{AuthConfig, AuthMode, RawAuth};
pub use breaker::{BreakerConfig, RawBreaker};
pub use cache::{CacheConfig, RawCache};
pub use env::{EnvSource, ProcessEnv, ENV_PREFIX, ENV_SECRET_KEY};
pub use fleet::{AfterLease, FleetConfig, RawFleet, RedisShape, RedisUrl};
pub use limits::{LimitsConfig, RawLimits};
pub use lists::{ListApiConfig, ListApisConfig, RawListApi, RawListApis};
pub(crate) use live::LiveDuration;
pub use log::{LogConfig, LogFormat, RawLog};
pub use server::{RawServer, ServerConfig};
pub use upstream::{RawUpstream, Region, SecretKey, UpstreamConfig};

use checks::invalid;

raw_section!(
    /// The config file as written: every section and key optional, unknown ones rejected.
    RawConfig {
        server: RawServer = RawServer::default(),
        upstream: RawUpstream = RawUpstream::default(),
        auth: RawAuth = RawAuth::default(),
        limits: RawLimits = RawLimits::default(),
        cache: RawCache = RawCache::default(),
        log: RawLog = RawLog::default(),
        fleet: RawFleet = RawFleet::default(),
        breaker: RawBreaker = RawBreaker::default(),
        passthrough: RawPassThrough = RawPassThrough::default(),
        callback: RawCallback = RawCallback::default(),
        list_apis: RawListApis = RawListApis::new(),
    }
);

impl Config {
    /// Reads `path`, applies env overrides and validates. A missing file is an error unless
    /// `path_is_default` (no `--config` given): then the built-in defaults (plus env) apply.
    pub fn load(
        path: &Path,
        path_is_default: bool,
        env: &dyn EnvSource,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound && path_is_default => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_text(&text, &path.display().to_string(), env)
    }

    /// Parses TOML `text`, applies env overrides and validates.
    pub fn from_toml_str(text: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
        Self::from_text(text, "<string>", env)
    }

    /// Validates `raw` and builds the typed config; an empty `admins` becomes `[identifier]`.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let upstream = raw.upstream.validate()?;
        Ok(Config {
            server: raw.server.validate()?,
            auth: raw.auth.validate(&upstream.identifier)?,
            limits: raw.limits.validate()?,
            cache: raw.cache.validate()?,
            log: raw.log.validate()?,
            fleet: raw.fleet.validate()?,
            breaker: raw.breaker.validate()?,
            passthrough: raw.passthrough.validate()?,
            callback: raw.callback.validate()?,
            list_apis: lists::validate(raw.list_apis)?,
            upstream,
        })
    }

    /// Errors unless a secret key is configured; `run` needs one to sign upstream calls.
    pub fn require_secret_key(&self) -> Result<(), ConfigError> {
        if !self.upstream.secret_key.is_empty() {
            return Ok(());
        }
        let reason = format!("must be set to the app's key, normally via {ENV_SECRET_KEY}");
        Err(invalid("upstream.secret_key", "\"\"", reason))
    }

    fn from_text(text: &str, origin: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_owned(),
            message: one_line(&e),
        };
        // The file alone first, so its errors carry its own line numbers.
        let raw: RawConfig = toml::from_str(text).map_err(parse_error)?;
        let raw = env::overrides(raw, text, env, parse_error)?;
        Config::from_raw(raw)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default()).expect("built-in defaults are valid")
    }
}

/// Collapses toml's multi-line error (header, source excerpt with `^^^`, message, `in key`) to
/// one line, dropping the excerpt lines so that a secret on the offending line is never echoed.
fn one_line(err: &dyn fmt::Display) -> String {
    let text = err.to_string();
    let is_excerpt = |l: &str| {
        l.trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .collect();
    parts.join(": ")
}
