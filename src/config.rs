//! Gateway settings: built-in defaults < the TOML file < `TIM_GATEWAY__<SECTION>__<KEY>` env vars.
//!
//! Owns reading, overriding and validating settings into a typed [`Config`]. It does not bind
//! sockets, sign UserSigs or set up logging. `main.rs` calls [`Config::load`] once at startup (and
//! [`Config::require_secret_key`] for `run`) and passes the whole [`Config`] to `tim_gateway::run`,
//! which hands its sections to the server, upstream client, limiters and caches. Loading has two steps: [`RawConfig`] mirrors the file and rejects
//! unknown keys (a typo in a sidecar config must not fail silently), and [`Config::from_raw`]
//! validates it and builds `Duration`s, `SocketAddr`, `Url` and `NonZeroU32`s.

use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::wire::MAX_ACCOUNTS_PER_REQUEST;

#[cfg(test)]
mod tests;

/// Smallest allowed `upstream.usersig_ttl_seconds`, so renewal cannot spin.
const MIN_USERSIG_TTL_SECONDS: u64 = 300;

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
}

/// `[server]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address the gateway serves on.
    pub listen: SocketAddr,
    /// Larger request bodies get a Tencent-style error instead of being read.
    pub max_body_bytes: usize,
    /// Concurrent client connections; at the cap the longest-idle ones are closed to make room.
    pub max_connections: usize,
    /// Drain deadline after SIGTERM.
    pub shutdown_grace: Duration,
    /// A connection's first request, and any HTTP/1 request head once its first byte arrived,
    /// must be complete within this (slowloris, silent connections, bare HTTP/2 prefaces).
    pub header_read_timeout: Duration,
    /// A request body must be received whole within this.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged to check the client is still there.
    pub http2_keep_alive_interval: Duration,
    /// An unanswered HTTP/2 ping closes the connection after this.
    pub http2_keep_alive_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// After SIGTERM, how long `/readyz` says 503 while the listener still accepts.
    pub drain_announce: Duration,
}

/// `[upstream]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// http(s) base with a host and no query, e.g. `https://console.tim.qq.com`.
    pub base_url: Url,
    /// Tencent application id (> 0).
    pub sdkappid: u64,
    /// The app admin the gateway signs upstream calls as.
    pub identifier: String,
    /// Key for signing UserSigs; may be empty until [`Config::require_secret_key`].
    pub secret_key: SecretKey,
    /// Per upstream call, connect + answer.
    pub timeout: Duration,
    /// Lifetime of the gateway's own admin UserSig.
    pub usersig_ttl: Duration,
    /// Larger upstream answers are cut off and answered with 91003, nothing cached.
    pub max_response_bytes: usize,
    /// Extra PEM CA certificates trusted for the upstream, besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Retries per upstream call on retryable failures.
    pub max_retries: u32,
    /// Retries may add at most this share (percent) of calls over a sliding 10 s window.
    pub retry_budget_percent: u32,
}

/// Tencent's data centres (`upstream.region`), each with its REST host (reference §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// `console.tim.qq.com`
    China,
    /// `adminapisgp.im.qcloud.com`
    Singapore,
    /// `adminapikr.im.qcloud.com`
    Seoul,
    /// `adminapijpn.im.qcloud.com`
    Tokyo,
    /// `adminapiger.im.qcloud.com`
    Frankfurt,
    /// `adminapiusa.im.qcloud.com`
    SiliconValley,
    /// `adminapiidn.im.qcloud.com`
    Jakarta,
    /// `adminapiind.im.qcloud.com`
    Mumbai,
}

impl Region {
    /// The region's primary REST host.
    pub fn host(self) -> &'static str {
        match self {
            Region::China => "console.tim.qq.com",
            Region::Singapore => "adminapisgp.im.qcloud.com",
            Region::Seoul => "adminapikr.im.qcloud.com",
            Region::Tokyo => "adminapijpn.im.qcloud.com",
            Region::Frankfurt => "adminapiger.im.qcloud.com",
            Region::SiliconValley => "adminapiusa.im.qcloud.com",
            Region::Jakarta => "adminapiidn.im.qcloud.com",
            Region::Mumbai => "adminapiind.im.qcloud.com",
        }
    }
}

/// `[breaker]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive whole-call failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe call may go through.
    pub open: Duration,
}

/// The app's UserSig secret. `Debug` never shows it; call [`SecretKey::expose`] to sign.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretKey(String);

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
    }
);
raw_section!(
    /// `[server]` as written.
    RawServer {
        listen: String = "127.0.0.1:8080".to_owned(),
        max_body_bytes: usize = 1_048_576,
        max_connections: usize = 10_000,
        shutdown_grace_ms: u64 = 20_000,
        header_read_timeout_ms: u64 = 5_000,
        body_read_timeout_ms: u64 = 10_000,
        idle_timeout_ms: u64 = 60_000,
        http2_keep_alive_interval_ms: u64 = 20_000,
        http2_keep_alive_timeout_ms: u64 = 10_000,
        http2_max_concurrent_streams: u32 = 256,
        drain_announce_ms: u64 = 5_000,
    }
);
raw_section!(
    /// `[upstream]` as written.
    RawUpstream {
        base_url: String = String::new(),
        region: String = String::new(),
        sdkappid: u64 = 1_400_000_000,
        identifier: String = "administrator".to_owned(),
        secret_key: SecretKey = SecretKey::default(),
        timeout_ms: u64 = 3_000,
        usersig_ttl_seconds: u64 = 86_400,
        max_response_bytes: usize = 8 * 1024 * 1024,
        ca_file: String = String::new(),
        max_retries: u32 = 2,
        retry_budget_percent: u32 = 10,
    }
);
raw_section!(
    /// `[auth]` as written.
    RawAuth {
        mode: AuthMode = AuthMode::UserSig,
        admins: Vec<String> = Vec::new(),
        verdict_cache_bytes: u64 = 8 * 1024 * 1024,
    }
);
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
raw_section!(
    /// `[cache]` as written.
    RawCache {
        ttl_seconds: u64 = 300,
        max_entries: u64 = 1_000_000,
        missing_tag_ttl_seconds: u64 = 60,
        answer_cache_bytes: u64 = 64 * 1024 * 1024,
        rendered_entry_bytes: u64 = 32 * 1024 * 1024,
        stale_if_error_seconds: u64 = 3_600,
        stale_while_revalidate_seconds: u64 = 30,
        failure_ttl_seconds: u64 = 5,
    }
);
raw_section!(
    /// `[breaker]` as written.
    RawBreaker { failure_threshold: u32 = 5, open_ms: u64 = 2_000, }
);
raw_section!(
    /// `[log]` as written.
    RawLog { format: LogFormat = LogFormat::Text, }
);

// Sections in their own files (they use `raw_section!`, so they come after it).
mod apis;
mod checks;
mod env;
mod fleet;

pub use apis::{CallbackConfig, PassThroughConfig, RawCallback, RawPassThrough};
pub use env::{EnvSource, ProcessEnv, ENV_PREFIX, ENV_SECRET_KEY};
pub use fleet::{AfterLease, FleetConfig, RawFleet, RedisShape, RedisUrl};

use checks::{at_least, between, invalid, millis, rate, MIN_BODY_BYTES};

// === impl Config ===

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
            log: LogConfig {
                format: raw.log.format,
            },
            fleet: raw.fleet.validate()?,
            breaker: raw.breaker.validate()?,
            passthrough: raw.passthrough.validate()?,
            callback: raw.callback.validate()?,
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

// === validation ===

impl RawServer {
    fn validate(self) -> Result<ServerConfig, ConfigError> {
        let listen = self.listen.parse().map_err(|e: std::net::AddrParseError| {
            invalid("server.listen", format!("{:?}", self.listen), e.to_string())
        })?;
        Ok(ServerConfig {
            listen,
            max_body_bytes: at_least("server.max_body_bytes", self.max_body_bytes, MIN_BODY_BYTES)?,
            max_connections: at_least("server.max_connections", self.max_connections, 1)?,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            header_read_timeout: millis(
                "server.header_read_timeout_ms",
                self.header_read_timeout_ms,
            )?,
            body_read_timeout: millis("server.body_read_timeout_ms", self.body_read_timeout_ms)?,
            idle_timeout: millis("server.idle_timeout_ms", self.idle_timeout_ms)?,
            http2_keep_alive_interval: millis(
                "server.http2_keep_alive_interval_ms",
                self.http2_keep_alive_interval_ms,
            )?,
            http2_keep_alive_timeout: millis(
                "server.http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout_ms,
            )?,
            http2_max_concurrent_streams: at_least(
                "server.http2_max_concurrent_streams",
                self.http2_max_concurrent_streams,
                1,
            )?,
            drain_announce: Duration::from_millis(self.drain_announce_ms),
        })
    }
}

impl RawUpstream {
    fn validate(self) -> Result<UpstreamConfig, ConfigError> {
        if self.identifier.trim().is_empty() {
            let value = format!("{:?}", self.identifier);
            return Err(invalid("upstream.identifier", value, "must not be empty"));
        }
        let ttl = self.usersig_ttl_seconds;
        Ok(UpstreamConfig {
            base_url: resolve_base_url(&self.base_url, &self.region)?,
            sdkappid: at_least("upstream.sdkappid", self.sdkappid, 1)?,
            identifier: self.identifier,
            secret_key: self.secret_key,
            timeout: Duration::from_millis(at_least("upstream.timeout_ms", self.timeout_ms, 1)?),
            usersig_ttl: Duration::from_secs(at_least(
                "upstream.usersig_ttl_seconds",
                ttl,
                MIN_USERSIG_TTL_SECONDS,
            )?),
            max_response_bytes: at_least(
                "upstream.max_response_bytes",
                self.max_response_bytes,
                MIN_BODY_BYTES,
            )?,
            ca_file: ca_file(&self.ca_file)?,
            max_retries: between("upstream.max_retries", self.max_retries, 0, 10)?,
            retry_budget_percent: between(
                "upstream.retry_budget_percent",
                self.retry_budget_percent,
                0,
                100,
            )?,
        })
    }
}

impl RawAuth {
    fn validate(self, identifier: &str) -> Result<AuthConfig, ConfigError> {
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

impl RawLimits {
    fn validate(self) -> Result<LimitsConfig, ConfigError> {
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

impl RawCache {
    fn validate(self) -> Result<CacheConfig, ConfigError> {
        Ok(CacheConfig {
            ttl: Duration::from_secs(at_least("cache.ttl_seconds", self.ttl_seconds, 1)?),
            max_entries: at_least("cache.max_entries", self.max_entries, 1)?,
            missing_tag_ttl: Duration::from_secs(self.missing_tag_ttl_seconds),
            answer_cache_bytes: self.answer_cache_bytes,
            rendered_entry_bytes: self.rendered_entry_bytes,
            stale_if_error: Duration::from_secs(self.stale_if_error_seconds),
            stale_while_revalidate: Duration::from_secs(self.stale_while_revalidate_seconds),
            failure_ttl: Duration::from_secs(self.failure_ttl_seconds),
        })
    }
}

impl RawBreaker {
    fn validate(self) -> Result<BreakerConfig, ConfigError> {
        Ok(BreakerConfig {
            failure_threshold: at_least("breaker.failure_threshold", self.failure_threshold, 1)?,
            open: millis("breaker.open_ms", self.open_ms)?,
        })
    }
}

/// `upstream.ca_file`: must hold at least one PEM certificate (checked now, so a typo fails at
/// start-up with exit 64 rather than at the first call).
fn ca_file(path: &str) -> Result<Option<PathBuf>, ConfigError> {
    if path.is_empty() {
        return Ok(None);
    }
    crate::tls::load_ca_file(Path::new(path))
        .map_err(|reason| invalid("upstream.ca_file", format!("{path:?}"), reason))?;
    Ok(Some(PathBuf::from(path)))
}

/// `base_url` as written, else the region's host, else Tencent's China host; both is an error.
fn resolve_base_url(base_url: &str, region: &str) -> Result<Url, ConfigError> {
    let region = match region {
        "" => None,
        name => Some(
            toml::Value::String(name.to_owned())
                .try_into::<Region>()
                .map_err(|_| {
                    let known = "china, singapore, seoul, tokyo, frankfurt, silicon_valley, \
                                 jakarta, mumbai";
                    invalid(
                        "upstream.region",
                        format!("{name:?}"),
                        format!("one of {known}"),
                    )
                })?,
        ),
    };
    match (base_url, region) {
        ("", region) => {
            let host = region.unwrap_or(Region::China).host();
            parse_base_url(&format!("https://{host}"))
        }
        (url, None) => parse_base_url(url),
        (url, Some(region)) => Err(invalid(
            "upstream.base_url",
            format!("{url:?}"),
            format!("set either base_url or region ({region:?}), not both"),
        )),
    }
}

fn parse_base_url(text: &str) -> Result<Url, ConfigError> {
    let bad = |reason: String| invalid("upstream.base_url", format!("{text:?}"), reason);
    let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
    let problem = if !matches!(url.scheme(), "http" | "https") {
        "scheme must be http or https"
    } else if url.host_str().is_none_or(str::is_empty) {
        "must have a host"
    } else if url.query().is_some() || url.fragment().is_some() {
        "must not have a query or fragment"
    } else if !url.username().is_empty() || url.password().is_some() {
        "must not hold credentials"
    } else {
        return Ok(url);
    };
    Err(bad(problem.to_owned()))
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

// === impl SecretKey ===

impl SecretKey {
    /// Wraps a key.
    pub fn new(key: String) -> Self {
        SecretKey(key)
    }

    /// The key itself, for signing. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "SecretKey(<empty>)"
        } else {
            "SecretKey(<redacted>)"
        })
    }
}
