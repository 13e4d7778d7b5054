//! Metrics unit tests: the exposed names, and owned registries.

use super::*;
use crate::error::Error;

#[test]
fn exposes_the_catalogue_with_prefix_and_no_ms_units() {
    let m = Metrics::new();
    m.record_request(&Api::PORTRAIT_GET, Outcome::Ok, 0.001);
    m.record_upstream(&Api::PORTRAIT_GET, Outcome::Ok, 0, 0.01);
    m.record_upstream(&Api::PORTRAIT_GET, Outcome::UpstreamError, 60008, 0.01);
    m.errors.record(
        &Api::PORTRAIT_GET,
        &Error::Auth {
            code: 70001,
            reason: "expired",
        },
    );
    m.cache_hits.inc();
    m.ratelimit_wait.observe(0.0);
    let text = String::from_utf8(m.encode()).expect("utf-8");
    for name in [
        "tim_gateway_requests_total{api=\"portrait_get\",outcome=\"ok\"} 1",
        "tim_gateway_request_duration_seconds_bucket",
        "tim_gateway_cache_lookups_total{result=\"hit\"} 1",
        "tim_gateway_answer_cache_requests_total{result=\"hit\"} 0",
        "tim_gateway_cache_invalidations_total",
        "tim_gateway_upstream_requests_total{api=\"portrait_get\",outcome=\"ok\"} 1",
        "tim_gateway_upstream_request_duration_seconds_bucket",
        "tim_gateway_ratelimit_wait_seconds_bucket",
        "tim_gateway_build_info{version=",
        "tim_gateway_upstream_results_total{api=\"portrait_get\",code_class=\"ok\"} 1",
        "tim_gateway_upstream_results_total{api=\"portrait_get\",code_class=\"timeout\"} 1",
        "tim_gateway_request_errors_total{api=\"portrait_get\",code=\"70001\"} 1",
        "tim_gateway_auth_failures_total{code=\"70001\"} 1",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert!(!text.contains("_ms"), "durations are in seconds");
}

#[test]
fn two_instances_do_not_share_counters() {
    let a = Metrics::new();
    let b = Metrics::new();
    a.cache_hits.inc();
    assert_eq!(a.cache_hits.get(), 1);
    assert_eq!(b.cache_hits.get(), 0);
}
