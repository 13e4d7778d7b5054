//! Per-component metric families, each registered by its own helper so that `Metrics::new`
//! does not grow with every component: errors answered by code, auth failures, upstream
//! results by code class, cache evictions (moka's eviction listener), and the process
//! collector.
//!
//! Label values are bounded: API names, Tencent error codes (a documented, finite set), code
//! classes and moka's removal causes; never an account, a tag or a path.

use prometheus::{IntCounterVec, Registry};

use super::{Api, Registrar};
use crate::error::{codes, Error};

// === impl ErrorMetrics ===

/// Errors answered to callers, by Tencent code; auth failures by code.
pub struct ErrorMetrics {
    by_code: IntCounterVec,
    auth_failures: IntCounterVec,
}

impl ErrorMetrics {
    pub(super) fn register(reg: &Registrar<'_>) -> ErrorMetrics {
        ErrorMetrics {
            by_code: reg.counter_vec(
                "request_errors_total",
                "API requests answered with an error, by the ErrorCode the caller saw",
                &["api", "code"],
            ),
            auth_failures: reg.counter_vec(
                "auth_failures_total",
                "API requests refused by the caller credential check, by ErrorCode",
                &["code"],
            ),
        }
    }

    /// Records an error answered to a caller of `api`.
    pub fn record(&self, api: &Api, error: &Error) {
        let code = error.code().to_string();
        self.by_code.with_label_values(&[api.label(), &code]).inc();
        if let Error::Auth { .. } = error {
            self.auth_failures.with_label_values(&[&code]).inc();
        }
    }
}

// === impl UpstreamResults ===

/// Upstream calls by API and the class of their result code.
pub struct UpstreamResults(IntCounterVec);

impl UpstreamResults {
    pub(super) fn register(reg: &Registrar<'_>) -> UpstreamResults {
        UpstreamResults(reg.counter_vec(
            "upstream_results_total",
            "Calls made to Tencent IM by the class of their result (ok, tencent_4xxxx, timeout, ...)",
            &["api", "code_class"],
        ))
    }

    /// Records one call that ended with `code` (0: ok; else the Tencent or gateway code).
    pub fn record(&self, api: &Api, code: i64) {
        self.0
            .with_label_values(&[api.label(), code_class(code)])
            .inc();
    }
}

/// The bounded class of a result code: the path to Tencent's failures by name, Tencent's own
/// codes by their leading digit.
pub fn code_class(code: i64) -> &'static str {
    match code {
        0 => "ok",
        codes::GATEWAY_UPSTREAM_UNREACHABLE => "unreachable",
        codes::SERVICE_TIMEOUT => "timeout",
        codes::GATEWAY_UPSTREAM_STATUS => "http_status",
        codes::GATEWAY_UPSTREAM_DECODE => "decode",
        codes::FREQUENCY_LIMIT => "frequency_limit",
        10_000..=19_999 => "tencent_1xxxx",
        20_000..=29_999 => "tencent_2xxxx",
        30_000..=39_999 => "tencent_3xxxx",
        40_000..=49_999 => "tencent_4xxxx",
        50_000..=59_999 => "tencent_5xxxx",
        60_000..=69_999 => "tencent_6xxxx",
        70_000..=79_999 => "tencent_7xxxx",
        80_000..=89_999 => "tencent_8xxxx",
        90_000..=99_999 => "tencent_9xxxx",
        _ => "other",
    }
}

/// A registry without the `tim_gateway` prefix holding the process collector, so its series
/// keep the standard names (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...)
/// every Prometheus user knows.
pub(super) fn process_registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("the process collector registers once");
    registry
}
