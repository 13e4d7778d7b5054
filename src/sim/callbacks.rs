//! Tencent's callbacks (reference §7), sent the way Tencent sends them: a [`CallbackSender`]
//! POSTs a JSON body over plain HTTP to the app's callback URL with Tencent's query string
//! (`SdkAppid`, `CallbackCommand`, `contenttype`, `ClientIP`, `OptPlatform`, and with a token
//! `Sign` = hex SHA-256(token ‖ RequestTime) and `RequestTime`), and returns the answer.
//!
//! Tests send well-formed callbacks and deliberately wrong ones ([`CallbackRequest`]: another
//! SdkAppid, a wrong or missing Sign, a RequestTime of their choice, any body). The sim itself
//! sends `Profile.CallbackPortraitSet` after a profile change and `State.StateChange` after a
//! presence change (`sim/fire.rs`). The bodies are built here from plain derived structs,
//! sharing nothing with the gateway's callback receiver.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::api::unix_now;

/// Tencent gives up on a callback after this long (reference §7.1).
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// `CallbackCommand` of the after-profile-change callback (reference §7.2).
pub const PORTRAIT_SET_COMMAND: &str = "Profile.CallbackPortraitSet";

/// `CallbackCommand` of the rate-limit early warning (reference §7.3).
pub const REQUEST_OVER_LIMIT_COMMAND: &str = "Alert.RequestOverLimit";

/// `CallbackCommand` of a user's login-state change (reference §9.3).
pub const STATE_CHANGE_COMMAND: &str = "State.StateChange";

/// Largest callback answer read; a longer one is a transport failure.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where the sim sends its own callbacks ([`super::SimConfig::callback`]).
#[derive(Clone)]
pub struct SimCallbacks {
    /// The app's callback URL, `http://HOST:PORT/path` (the console's setting).
    pub url: String,
    /// The console's callback auth token; `None` sends no `Sign` / `RequestTime`.
    pub token: Option<String>,
}

/// Why a callback got no answer, or could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The target is not an `http://host[:port]/path` URL.
    #[error("callback url is not http://host:port/path: {0}")]
    BadUrl(String),
    /// Connecting, writing or reading failed (or the answer exceeded 1 MiB).
    #[error("callback failed: {0}")]
    Transport(String),
    /// No whole answer within [`CALLBACK_TIMEOUT`].
    #[error("callback not answered within 2 s")]
    Timeout,
}

/// Sends callbacks for one app to one URL over a keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct CallbackSender {
    sdkappid: u64,
    token: Option<String>,
    url: url::Url,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// One callback about to be sent; by default exactly as Tencent would send it.
pub struct CallbackRequest<'a> {
    sender: &'a CallbackSender,
    command: String,
    body: Bytes,
    sdkappid: u64,
    /// `None`: the time of sending.
    request_time: Option<u64>,
    sign: SignChoice,
    opt_platform: String,
}

/// Which `Sign` a request carries.
enum SignChoice {
    /// The right one for the sender's token (none without a token).
    FromToken,
    /// This text, whatever the token.
    Given(String),
    /// None at all, even with a token.
    Absent,
}

// === impl CallbackSender ===

impl CallbackSender {
    /// A sender for app `sdkappid` signing with `token` (the console's callback auth token) to
    /// `url` (`http://127.0.0.1:PORT/path`; a query string in it is kept, Tencent's follows).
    pub fn try_new(
        sdkappid: u64,
        token: Option<String>,
        url: &str,
    ) -> Result<CallbackSender, CallbackError> {
        let parsed = url::Url::parse(url).map_err(|_| CallbackError::BadUrl(url.to_owned()))?;
        if parsed.scheme() != "http" || parsed.host_str().is_none() || parsed.fragment().is_some() {
            return Err(CallbackError::BadUrl(url.to_owned()));
        }
        Ok(CallbackSender {
            sdkappid,
            token,
            url: parsed,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The target URL, without Tencent's query string.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// A callback of `command` with `body` (sent as is), to adjust before [`CallbackRequest::send`].
    pub fn request(&self, command: &str, body: impl Into<Bytes>) -> CallbackRequest<'_> {
        CallbackRequest {
            sender: self,
            command: command.to_owned(),
            body: body.into(),
            sdkappid: self.sdkappid,
            request_time: None,
            sign: SignChoice::FromToken,
            opt_platform: "RESTAPI".to_owned(),
        }
    }

    /// Sends a well-formed callback of `command` with `body`: the answer's status and body.
    pub async fn send(
        &self,
        command: &str,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), CallbackError> {
        self.request(command, body).send().await
    }
}

impl std::fmt::Debug for CallbackSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSender")
            .field("sdkappid", &self.sdkappid)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("url", &self.url.as_str())
            .finish()
    }
}

// === impl CallbackRequest ===

impl CallbackRequest<'_> {
    /// Names another app in `SdkAppid`.
    pub fn sdkappid(mut self, sdkappid: u64) -> Self {
        self.sdkappid = sdkappid;
        self
    }

    /// Sends `RequestTime` = `unix_seconds` (and, with a token, the right `Sign` for it).
    pub fn request_time(mut self, unix_seconds: u64) -> Self {
        self.request_time = Some(unix_seconds);
        self
    }

    /// Sends `sign` as `Sign` (with a `RequestTime`), whatever the token.
    pub fn sign(mut self, sign: &str) -> Self {
        self.sign = SignChoice::Given(sign.to_owned());
        self
    }

    /// Sends neither `Sign` nor `RequestTime`, even with a token.
    pub fn unsigned(mut self) -> Self {
        self.sign = SignChoice::Absent;
        self
    }

    /// Sends `platform` as `OptPlatform` (Tencent's are `RESTAPI`, `Android`, `iOS`, `Web`, ...).
    pub fn opt_platform(mut self, platform: &str) -> Self {
        self.opt_platform = platform.to_owned();
        self
    }

    /// The query string this request carries (with `RequestTime` = now unless chosen).
    pub fn query(&self) -> String {
        let time = self.request_time.unwrap_or_else(unix_now);
        let sign = match (&self.sign, &self.sender.token) {
            (SignChoice::Given(given), _) => Some(given.clone()),
            (SignChoice::FromToken, Some(token)) => Some(sign(token, time)),
            (SignChoice::FromToken, None) | (SignChoice::Absent, _) => None,
        };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("SdkAppid", &self.sdkappid.to_string())
            .append_pair("CallbackCommand", &self.command)
            .append_pair("contenttype", "json")
            .append_pair("ClientIP", "127.0.0.1")
            .append_pair("OptPlatform", &self.opt_platform);
        if let Some(sign) = sign {
            query
                .append_pair("Sign", &sign)
                .append_pair("RequestTime", &time.to_string());
        }
        query.finish()
    }

    /// POSTs the callback: the answer's HTTP status and body, within [`CALLBACK_TIMEOUT`].
    pub async fn send(self) -> Result<(StatusCode, Bytes), CallbackError> {
        let separator = if self.sender.url.query().is_some() {
            '&'
        } else {
            '?'
        };
        let uri = format!("{}{separator}{}", self.sender.url, self.query());
        let mut request = Request::post(uri)
            .body(Full::new(self.body))
            .map_err(|e| CallbackError::BadUrl(e.to_string()))?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let exchange = async {
            let transport = |e: &dyn std::fmt::Display| CallbackError::Transport(e.to_string());
            let response = self
                .sender
                .http
                .request(request)
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| transport(&e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALLBACK_TIMEOUT, exchange)
            .await
            .map_err(|_| CallbackError::Timeout)?
    }
}

// === signing and bodies ===

/// Tencent's callback `Sign`: lower-case hex SHA-256 of `token` immediately followed by the
/// decimal `request_time` (not an HMAC).
pub fn sign(token: &str, request_time: u64) -> String {
    let mut digest = Sha256::new();
    digest.update(token.as_bytes());
    digest.update(request_time.to_string().as_bytes());
    format!("{:x}", digest.finalize())
}

#[derive(Serialize)]
struct PortraitSetBody<'a> {
    #[serde(rename = "CallbackCommand")]
    command: &'static str,
    #[serde(rename = "Operator_Account")]
    operator: &'a str,
    #[serde(rename = "From_Account")]
    account: &'a str,
    #[serde(rename = "EventTime")]
    event_time_ms: u64,
    #[serde(rename = "ProfileItem")]
    items: Vec<TagValue<'a>>,
}

#[derive(Serialize)]
struct TagValue<'a> {
    #[serde(rename = "Tag")]
    tag: &'a str,
    #[serde(rename = "Value")]
    value: &'a Value,
}

#[derive(Serialize)]
struct OverLimitBody<'a> {
    #[serde(rename = "CallbackCommand")]
    command: &'static str,
    #[serde(rename = "ServiceName")]
    service: &'a str,
    #[serde(rename = "Command")]
    api_command: &'a str,
    #[serde(rename = "Request")]
    observed: u64,
    #[serde(rename = "Limit")]
    limit: u64,
}

#[derive(Serialize)]
struct StateChangeBody<'a> {
    #[serde(rename = "CallbackCommand")]
    command: &'static str,
    #[serde(rename = "EventTime")]
    event_time_ms: u64,
    #[serde(rename = "Info")]
    info: StateChangeInfo<'a>,
}

#[derive(Serialize)]
struct StateChangeInfo<'a> {
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "To_Account")]
    account: &'a str,
    #[serde(rename = "Reason")]
    reason: &'a str,
}

/// The body of `State.StateChange` after `account`'s login state changed:
/// `{"CallbackCommand":"State.StateChange","EventTime":<now, ms>,"Info":{"Action":action,
/// "To_Account":account,"Reason":reason}}`, without `KickedDevice` (no device was kicked).
pub fn state_change_callback(account: &str, action: &str, reason: &str) -> Vec<u8> {
    to_vec(&StateChangeBody {
        command: STATE_CHANGE_COMMAND,
        event_time_ms: unix_now_ms(),
        info: StateChangeInfo {
            action,
            account,
            reason,
        },
    })
}

/// The body of `Profile.CallbackPortraitSet` after `account` changed its own profile: the
/// changed `(tag, value)` items, `EventTime` now in milliseconds.
pub fn portrait_set_callback(account: &str, items: &[(&str, Value)]) -> Vec<u8> {
    let items: Vec<(&str, &Value)> = items.iter().map(|(tag, value)| (*tag, value)).collect();
    portrait_set_body(account, account, &items)
}

/// The body of `Profile.CallbackPortraitSet` after `operator` changed `account`'s profile.
pub(super) fn portrait_set_body(
    operator: &str,
    account: &str,
    items: &[(&str, &Value)],
) -> Vec<u8> {
    to_vec(&PortraitSetBody {
        command: PORTRAIT_SET_COMMAND,
        operator,
        account,
        event_time_ms: unix_now_ms(),
        items: items
            .iter()
            .map(|(tag, value)| TagValue { tag, value })
            .collect(),
    })
}

/// The body of `Alert.RequestOverLimit`: `service/command` reached `observed` calls per second
/// against its `limit`.
pub fn request_over_limit_callback(
    service: &str,
    command: &str,
    observed: u64,
    limit: u64,
) -> Vec<u8> {
    to_vec(&OverLimitBody {
        command: REQUEST_OVER_LIMIT_COMMAND,
        service,
        api_command: command,
        observed,
        limit,
    })
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("strings, integers and Values always serialise")
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
