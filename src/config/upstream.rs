//! `[upstream]`: the Tencent endpoint (a base URL or a region), the admin identity and secret
//! key the gateway signs its calls with, and how each call is timed, bounded and retried.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::checks::{at_least, between, invalid, MIN_BODY_BYTES};
use super::ConfigError;

/// Smallest allowed `upstream.usersig_ttl_seconds`, so renewal cannot spin.
const MIN_USERSIG_TTL_SECONDS: u64 = 300;

/// `[upstream]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// http(s) base with a host and no query, e.g. `https://console.tim.qq.com`.
    pub base_url: Url,
    /// Tencent application id (> 0).
    pub sdkappid: u64,
    /// The app admin the gateway signs upstream calls as.
    pub identifier: String,
    /// Key for signing UserSigs; may be empty until
    /// [`Config::require_secret_key`](super::Config::require_secret_key).
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
    /// Retries may add at most this share (percent) of calls over a sliding 10 s window...
    pub retry_budget_percent: u32,
    /// ... plus this many retries per second of the window, whatever the calls (a quiet
    /// gateway's floor).
    pub retry_budget_min_per_second: u32,
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

/// The app's UserSig secret. `Debug` never shows it; call [`SecretKey::expose`] to sign.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretKey(String);

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
        retry_budget_min_per_second: u32 = 1,
    }
);

impl RawUpstream {
    pub(super) fn validate(self) -> Result<UpstreamConfig, ConfigError> {
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
            retry_budget_min_per_second: between(
                "upstream.retry_budget_min_per_second",
                self.retry_budget_min_per_second,
                0,
                100,
            )?,
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
