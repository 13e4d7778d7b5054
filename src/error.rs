//! The gateway's one error type and its one mapping to Tencent error codes.
//!
//! Variants are grouped by who is at fault (the caller, the upstream, capacity, the gateway
//! itself), which decides the log level and the metrics outcome. Every variant is cheap to
//! clone, because one upstream failure reaches every caller waiting on that call. The mapping
//! to Tencent codes lives in [`Error::code`] and is pinned by the table test at the bottom; the
//! Tencent body an error is answered with is rendered by `wire::error_body`, so this module
//! depends on nothing else in the crate.

use std::sync::Arc;
use std::time::Duration;

/// Tencent error codes the gateway emits, and the few gateway-only ones (README lists them).
pub(crate) mod codes {
    /// Malformed request or parameters (`Err_Profile_Comm_Decode_Fail`).
    pub(crate) const INVALID_PARAMETERS: i64 = 40001;
    /// `To_Account` missing or empty.
    pub(crate) const ACCOUNT_MISSING: i64 = 40002;
    /// Account does not exist (upstream only).
    pub(crate) const ACCOUNT_NOT_FOUND: i64 = 40003;
    /// `identifier` is not an App admin (profile APIs).
    pub(crate) const ADMIN_REQUIRED: i64 = 40004;
    /// No read permission on a requested field (upstream only).
    pub(crate) const READ_PERMISSION_REQUIRED: i64 = 40007;
    /// A tag in `TagList` does not exist.
    pub(crate) const TAG_NOT_FOUND: i64 = 40009;
    /// REST API call frequency over the limit.
    pub(crate) const FREQUENCY_LIMIT: i64 = 60007;
    /// Service timeout.
    pub(crate) const SERVICE_TIMEOUT: i64 = 60008;
    /// Too many requests, retry later.
    pub(crate) const TOO_MANY_REQUESTS: i64 = 60018;
    /// Too many requests, retry later.
    pub(crate) const TOO_MANY_REQUESTS_RETRY: i64 = 60019;
    /// Bad resource / URL path.
    pub(crate) const BAD_PATH: i64 = 60009;
    /// `sdkappid` missing from the URL.
    pub(crate) const SDKAPPID_MISSING: i64 = 60012;
    /// Bad `sdkappid` / `identifier` / `usersig` / `contenttype` URL parameter.
    pub(crate) const BAD_URL_PARAMETER: i64 = 60025;
    /// Gateway-only: an invariant broke inside the gateway.
    pub(crate) const GATEWAY_INTERNAL: i64 = 91000;
    /// Gateway-only: the upstream could not be reached (connection refused or dropped).
    pub(crate) const GATEWAY_UPSTREAM_UNREACHABLE: i64 = 91001;
    /// Gateway-only: the upstream answered with a non-200 HTTP status.
    pub(crate) const GATEWAY_UPSTREAM_STATUS: i64 = 91002;
    /// Gateway-only: the upstream's answer could not be decoded.
    pub(crate) const GATEWAY_UPSTREAM_DECODE: i64 = 91003;
    /// Gateway-only: the gateway is draining and takes no new upstream work.
    pub(crate) const GATEWAY_SHUTTING_DOWN: i64 = 91004;
    /// Gateway-only: the TLS handshake with the upstream failed (certificate not trusted).
    pub(crate) const GATEWAY_UPSTREAM_TLS: i64 = 91005;
    /// Gateway-only: the upstream keeps failing; calls are not sent for a while (breaker open).
    pub(crate) const GATEWAY_BREAKER_OPEN: i64 = 91006;
}

/// Who is at fault for an error: decides the log level and the metrics outcome label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input or credentials from the caller (logged at debug).
    Caller,
    /// Tencent, or the path to it (logged at warn).
    Upstream,
    /// The gateway's own limits: queue deadline, draining (logged at warn).
    Capacity,
    /// A gateway bug (logged at error).
    Internal,
}

/// Everything that can fail a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    // --- the caller's fault ---
    /// The body is not JSON, or not a JSON object.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(Arc<str>),
    /// A field has the wrong type or value.
    #[error("{0}")]
    InvalidField(Arc<str>),
    /// `To_Account` is missing or empty.
    #[error("To_Account is missing or empty")]
    MissingAccounts,
    /// More accounts than Tencent allows in one call.
    #[error("To_Account has {0} accounts; at most 100 are allowed")]
    TooManyAccounts(usize),
    /// A tag that is not a standard tag nor a well-formed custom tag.
    #[error("TagList contains an unknown tag: {0}")]
    UnknownTag(Arc<str>),
    /// A list read Tencent would refuse, with that API's own code (`apis::Refusals`).
    #[error("{info}")]
    Refused {
        /// The API's code for this refusal.
        code: i64,
        /// What was wrong, for ErrorInfo.
        info: Arc<str>,
    },
    /// The body exceeds `server.max_body_bytes`.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The caller's query string or UserSig did not pass the checks.
    #[error("{reason}")]
    Auth {
        /// Tencent's code for this failure (70001, 70003, 40004, ...).
        code: i64,
        /// What was wrong, for ErrorInfo.
        reason: &'static str,
    },

    // --- the upstream's fault ---
    /// The upstream could not be reached or dropped the connection.
    #[error("Tencent IM upstream unreachable: {0}")]
    UpstreamConnect(Arc<str>),
    /// No connection to the upstream could be made: the call was provably never sent.
    #[error("Tencent IM upstream unreachable: {0}")]
    UpstreamRefused(Arc<str>),
    /// The upstream did not answer within `upstream.timeout_ms`.
    #[error("Tencent IM upstream did not answer within {} ms", .0.as_millis())]
    UpstreamTimeout(Duration),
    /// The upstream answered with a non-200 HTTP status.
    #[error("Tencent IM upstream answered HTTP {0}")]
    UpstreamStatus(u16),
    /// The upstream failed the whole call; its code and texts are passed through as given.
    #[error("{info}")]
    UpstreamFailed {
        /// Tencent's `ErrorCode`.
        code: i64,
        /// Tencent's `ErrorInfo`.
        info: Arc<str>,
        /// Tencent's `ErrorDisplay`.
        display: Arc<str>,
    },
    /// The upstream's answer was not the JSON Tencent sends.
    #[error("Tencent IM upstream answer could not be decoded: {0}")]
    UpstreamDecode(Arc<str>),
    /// The TLS handshake with the upstream failed.
    #[error("Tencent IM upstream TLS handshake failed: {0}")]
    UpstreamTls(Arc<str>),
    /// The upstream failed too often in a row; no call is sent until the breaker half-opens.
    #[error("tim-gateway: Tencent IM upstream is failing; calls paused for up to {} ms", .0.as_millis())]
    BreakerOpen(Duration),

    // --- capacity ---
    /// The caller would have waited past `limits.max_queue_wait_ms` for upstream capacity.
    #[error("tim-gateway: upstream queue deadline of {} ms passed; retry later", .0.as_millis())]
    QueueWaitExceeded(Duration),
    /// The gateway is shutting down.
    #[error("tim-gateway is shutting down; retry on another instance")]
    ShuttingDown,

    // --- the gateway's fault ---
    /// An invariant broke.
    #[error("tim-gateway internal error: {0}")]
    Internal(Arc<str>),
}

impl Error {
    /// An [`Error::InvalidField`] naming the field and serde's reason.
    pub fn invalid_field(what: &str, cause: &serde_json::Error) -> Error {
        Error::InvalidField(Arc::from(format!("{what}: {cause}")))
    }

    /// The Tencent `ErrorCode` a caller sees for this error.
    pub fn code(&self) -> i64 {
        use codes::*;
        match self {
            Error::InvalidJson(_) | Error::InvalidField(_) => INVALID_PARAMETERS,
            Error::TooManyAccounts(_) | Error::BodyTooLarge(_) => INVALID_PARAMETERS,
            Error::MissingAccounts => ACCOUNT_MISSING,
            Error::UnknownTag(_) => TAG_NOT_FOUND,
            Error::Auth { code, .. } | Error::Refused { code, .. } => *code,
            Error::UpstreamConnect(_) | Error::UpstreamRefused(_) => GATEWAY_UPSTREAM_UNREACHABLE,
            Error::UpstreamTimeout(_) => SERVICE_TIMEOUT,
            Error::UpstreamStatus(_) => GATEWAY_UPSTREAM_STATUS,
            Error::UpstreamFailed { code, .. } => *code,
            Error::UpstreamDecode(_) => GATEWAY_UPSTREAM_DECODE,
            Error::UpstreamTls(_) => GATEWAY_UPSTREAM_TLS,
            Error::BreakerOpen(_) => GATEWAY_BREAKER_OPEN,
            Error::QueueWaitExceeded(_) => FREQUENCY_LIMIT,
            Error::ShuttingDown => GATEWAY_SHUTTING_DOWN,
            Error::Internal(_) => GATEWAY_INTERNAL,
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::InvalidJson(_)
            | Error::InvalidField(_)
            | Error::MissingAccounts
            | Error::TooManyAccounts(_)
            | Error::UnknownTag(_)
            | Error::BodyTooLarge(_)
            | Error::Refused { .. }
            | Error::Auth { .. } => Fault::Caller,
            Error::UpstreamConnect(_)
            | Error::UpstreamRefused(_)
            | Error::UpstreamTimeout(_)
            | Error::UpstreamStatus(_)
            | Error::UpstreamFailed { .. }
            | Error::UpstreamDecode(_)
            | Error::UpstreamTls(_)
            | Error::BreakerOpen(_) => Fault::Upstream,
            Error::QueueWaitExceeded(_) | Error::ShuttingDown => Fault::Capacity,
            Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether a whole-call upstream failure could have been caused by one caller's input
    /// (a bad account or tag), so a merged call must be re-sent per caller to find its owner.
    pub fn is_caller_attributable(&self) -> bool {
        use codes::*;
        matches!(
            self,
            Error::UpstreamFailed { code, .. }
                if matches!(*code, INVALID_PARAMETERS | ACCOUNT_NOT_FOUND | READ_PERMISSION_REQUIRED | TAG_NOT_FOUND)
        )
    }

    /// Whether a call that failed so is worth sending again after a pause: the upstream was
    /// unreachable, slow, broken or over its limit, not refusing this call's input.
    pub fn is_retryable(&self) -> bool {
        use codes::*;
        match self {
            Error::UpstreamConnect(_) | Error::UpstreamRefused(_) | Error::UpstreamTimeout(_) => {
                true
            }
            Error::UpstreamStatus(status) => *status >= 500,
            Error::UpstreamFailed { code, .. } => {
                matches!(
                    *code,
                    FREQUENCY_LIMIT | TOO_MANY_REQUESTS | TOO_MANY_REQUESTS_RETRY
                )
            }
            _ => false,
        }
    }

    /// Whether this is the upstream failing as a whole (an outage, not a refusal of this
    /// input): what opens the breaker and what a stale value may answer instead of.
    pub fn is_outage(&self) -> bool {
        match self {
            Error::UpstreamConnect(_)
            | Error::UpstreamRefused(_)
            | Error::UpstreamTimeout(_)
            | Error::UpstreamStatus(_)
            | Error::UpstreamDecode(_)
            | Error::UpstreamTls(_)
            | Error::BreakerOpen(_)
            | Error::QueueWaitExceeded(_) => true,
            Error::UpstreamFailed { .. } => self.is_retryable(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn each_variant_maps_to_its_pinned_tencent_code_and_fault() {
        let table: Vec<(Error, i64, Fault)> = vec![
            (Error::InvalidJson(s("x")), 40001, Fault::Caller),
            (Error::InvalidField(s("x")), 40001, Fault::Caller),
            (Error::MissingAccounts, 40002, Fault::Caller),
            (Error::TooManyAccounts(101), 40001, Fault::Caller),
            (
                Error::UnknownTag(s("Tag_Profile_IM_Bogus")),
                40009,
                Fault::Caller,
            ),
            (Error::BodyTooLarge(1024), 40001, Fault::Caller),
            (
                Error::Auth {
                    code: 70001,
                    reason: "expired",
                },
                70001,
                Fault::Caller,
            ),
            (Error::UpstreamConnect(s("dropped")), 91001, Fault::Upstream),
            (Error::UpstreamRefused(s("refused")), 91001, Fault::Upstream),
            (
                Error::UpstreamTimeout(Duration::from_secs(3)),
                60008,
                Fault::Upstream,
            ),
            (Error::UpstreamStatus(502), 91002, Fault::Upstream),
            (
                Error::UpstreamFailed {
                    code: 70500,
                    info: s("i"),
                    display: s(""),
                },
                70500,
                Fault::Upstream,
            ),
            (Error::UpstreamDecode(s("eof")), 91003, Fault::Upstream),
            (
                Error::QueueWaitExceeded(Duration::from_secs(2)),
                60007,
                Fault::Capacity,
            ),
            (Error::ShuttingDown, 91004, Fault::Capacity),
            (Error::UpstreamTls(s("bad cert")), 91005, Fault::Upstream),
            (
                Error::BreakerOpen(Duration::from_secs(2)),
                91006,
                Fault::Upstream,
            ),
            (Error::Internal(s("bug")), 91000, Fault::Internal),
        ];
        for (error, code, fault) in table {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.fault(), fault, "{error:?}");
            assert!(!error.to_string().is_empty(), "{error:?}");
        }
    }

    #[test]
    fn only_account_and_tag_codes_are_caller_attributable() {
        for code in [40001, 40003, 40007, 40009] {
            let e = Error::UpstreamFailed {
                code,
                info: s(""),
                display: s(""),
            };
            assert!(e.is_caller_attributable(), "{code}");
        }
        for code in [40006, 60007, 70001, 70500] {
            let e = Error::UpstreamFailed {
                code,
                info: s(""),
                display: s(""),
            };
            assert!(!e.is_caller_attributable(), "{code}");
        }
        assert!(!Error::UpstreamStatus(502).is_caller_attributable());
    }
}
