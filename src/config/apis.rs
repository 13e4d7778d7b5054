//! `[passthrough]` and `[callback]`: which other Tencent APIs are forwarded and at what rates,
//! and where Tencent's callbacks are received, checked and relayed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::checks::{between, invalid, rate};
use super::{ConfigError, SecretKey};

/// `[passthrough]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassThroughConfig {
    /// Whether every other `POST /v4/<service>/<command>` is forwarded (else 404).
    pub enabled: bool,
    /// Calls per second of an API without its own entry in `limits`.
    pub default_requests_per_second: NonZeroU32,
    /// Per-API rates, by `service/command`.
    pub limits: BTreeMap<String, NonZeroU32>,
    /// Distinct APIs given their own limiter and metric label; the rest share `other`'s.
    pub max_distinct_apis: usize,
}

/// `[callback]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackConfig {
    /// The path Tencent's callbacks are POSTed to.
    pub path: String,
    /// `None`: on `server.listen`; else callbacks alone on their own address.
    pub listen: Option<SocketAddr>,
    /// The console's callback token: `Sign` is required and checked when set.
    pub token: Option<SecretKey>,
    /// `RequestTime` further than this from now is refused.
    pub max_skew: Duration,
    /// The app's own handler, to which every callback is relayed.
    pub forward_url: Option<Url>,
}

raw_section!(
    /// `[passthrough]` as written.
    RawPassThrough {
        enabled: bool = true,
        default_requests_per_second: u32 = 200,
        limits: BTreeMap<String, u32> = BTreeMap::new(),
        max_distinct_apis: usize = 64,
    }
);
raw_section!(
    /// `[callback]` as written.
    RawCallback {
        path: String = "/tim/callback".to_owned(),
        listen: String = String::new(),
        token: SecretKey = SecretKey::default(),
        max_skew_seconds: u64 = 60,
        forward_url: String = String::new(),
    }
);

impl RawPassThrough {
    pub(super) fn validate(self) -> Result<PassThroughConfig, ConfigError> {
        let mut limits = BTreeMap::new();
        for (api, calls) in self.limits {
            let path = format!("/v4/{api}");
            if crate::apis::forwarded_label(&path) != Some(api.as_str()) {
                let reason = "keys are \"service/command\" ([a-z_]+/[a-z_0-9]+)";
                return Err(invalid("passthrough.limits", format!("{api:?}"), reason));
            }
            if crate::apis::listed(&path).is_some() {
                let reason = "portrait_get and portrait_set have their rates in [limits]";
                return Err(invalid("passthrough.limits", format!("{api:?}"), reason));
            }
            limits.insert(api, rate("passthrough.limits", calls)?);
        }
        Ok(PassThroughConfig {
            enabled: self.enabled,
            default_requests_per_second: rate(
                "passthrough.default_requests_per_second",
                self.default_requests_per_second,
            )?,
            limits,
            max_distinct_apis: between(
                "passthrough.max_distinct_apis",
                self.max_distinct_apis,
                1,
                10_000,
            )?,
        })
    }
}

/// Paths the gateway serves itself, which a callback path must not shadow.
const RESERVED_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

impl RawCallback {
    pub(super) fn validate(self) -> Result<CallbackConfig, ConfigError> {
        let path_ok = self.path.starts_with('/')
            && self.path.len() <= 256
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
            && !self.path.starts_with("/v4/")
            && !RESERVED_PATHS.contains(&self.path.as_str());
        if !path_ok {
            let reason = "an absolute path of visible ASCII, not under /v4/ nor a probe's";
            return Err(invalid("callback.path", format!("{:?}", self.path), reason));
        }
        let listen = match self.listen.trim() {
            "" => None,
            text => Some(text.parse().map_err(|e: std::net::AddrParseError| {
                invalid("callback.listen", format!("{text:?}"), e.to_string())
            })?),
        };
        let skew = between(
            "callback.max_skew_seconds",
            self.max_skew_seconds,
            1,
            86_400,
        )?;
        Ok(CallbackConfig {
            path: self.path,
            listen,
            token: (!self.token.is_empty()).then_some(self.token),
            max_skew: Duration::from_secs(skew),
            forward_url: forward_url(&self.forward_url)?,
        })
    }
}

fn forward_url(text: &str) -> Result<Option<Url>, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let url = Url::parse(text)
        .map_err(|e| invalid("callback.forward_url", format!("{text:?}"), e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        let reason = "an http:// or https:// URL with a host";
        return Err(invalid("callback.forward_url", format!("{text:?}"), reason));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::super::{Config, RawConfig};
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).expect("toml");
        Config::from_raw(raw)
    }

    #[test]
    fn defaults_forward_everything_at_200_and_receive_callbacks_on_the_api_port() {
        let config = Config::default();
        assert!(config.passthrough.enabled);
        assert_eq!(config.passthrough.default_requests_per_second.get(), 200);
        assert_eq!(config.callback.path, "/tim/callback");
        assert_eq!(config.callback.listen, None);
        assert_eq!(config.callback.token, None);
        assert_eq!(config.callback.max_skew, Duration::from_secs(60));
        assert_eq!(config.callback.forward_url, None);
    }

    #[test]
    fn per_api_limits_are_read_by_service_command() {
        let config =
            load("[passthrough.limits]\n\"openim/batchsendmsg\" = 100\n\"sns/friend_get\" = 50\n")
                .expect("valid");
        let limits = &config.passthrough.limits;
        assert_eq!(limits["openim/batchsendmsg"].get(), 100);
        assert_eq!(limits["sns/friend_get"].get(), 50);
    }

    #[test]
    fn bad_passthrough_and_callback_settings_are_refused_with_their_key() {
        for (text, key) in [
            (
                "[passthrough.limits]\n\"openim\" = 1\n",
                "passthrough.limits",
            ),
            (
                "[passthrough.limits]\n\"../x/y\" = 1\n",
                "passthrough.limits",
            ),
            (
                "[passthrough.limits]\n\"profile/portrait_get\" = 1\n",
                "passthrough.limits",
            ),
            (
                "[passthrough.limits]\n\"openim/sendmsg\" = 0\n",
                "passthrough.limits",
            ),
            (
                "[passthrough]\nmax_distinct_apis = 0\n",
                "passthrough.max_distinct_apis",
            ),
            ("[callback]\npath = \"tim\"\n", "callback.path"),
            ("[callback]\npath = \"/metrics\"\n", "callback.path"),
            ("[callback]\npath = \"/v4/x/y\"\n", "callback.path"),
            ("[callback]\nlisten = \"nowhere\"\n", "callback.listen"),
            (
                "[callback]\nmax_skew_seconds = 0\n",
                "callback.max_skew_seconds",
            ),
            (
                "[callback]\nforward_url = \"ftp://x/\"\n",
                "callback.forward_url",
            ),
        ] {
            match load(text) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
