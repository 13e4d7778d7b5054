//! Prometheus metrics: the gateway's one owned registry, the request and upstream series, and
//! the exposition. Components register their own families on it ([`Metrics::register`]) and
//! keep the handles (the batcher's in batcher/metrics.rs, the caches' in cache/metrics.rs, the fleet's in fleet/metrics.rs, the
//! breaker's and limiters' next to them); the families still here are the request path's.
//!
//! `run` builds one [`Metrics`] and hands clones to each module; nothing uses the default
//! registry or statics, so two gateways in one test process never share counters. Label values
//! come from small fixed sets (api, outcome, result), never from accounts or tags; the `api` of
//! a passed-through call is its `service/command`, bounded by `passthrough.max_distinct_apis`.
//! Children with fixed labels are resolved once here, so recording on the hot path is an atomic
//! add, not a label lookup.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use crate::apis::Api;
use crate::error::{Error, Fault};

mod components;

pub use components::{code_class, ErrorMetrics, UpstreamResults};

/// How a request or upstream call ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without error.
    Ok,
    /// The caller's fault.
    CallerError,
    /// Tencent's fault, or the path to it.
    UpstreamError,
    /// The gateway's capacity limits.
    CapacityError,
    /// A gateway bug.
    InternalError,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::CallerError,
        Outcome::UpstreamError,
        Outcome::CapacityError,
        Outcome::InternalError,
    ];

    /// The outcome of a result.
    pub fn of<T>(result: Result<T, &Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => match e.fault() {
                Fault::Caller => Outcome::CallerError,
                Fault::Upstream => Outcome::UpstreamError,
                Fault::Capacity => Outcome::CapacityError,
                Fault::Internal => Outcome::InternalError,
            },
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::CallerError => "caller_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::CapacityError => "capacity_error",
            Outcome::InternalError => "internal_error",
        }
    }
}

/// A counter and a duration histogram for every (api, outcome): pre-resolved for the APIs of
/// the table, so that recording is two atomic updates with no label hashing; looked up by label
/// for passed-through APIs (whose labels the pass-through router bounds).
struct SeriesTable {
    listed: Vec<(IntCounter, Histogram)>,
    count: IntCounterVec,
    duration: HistogramVec,
}

impl SeriesTable {
    fn new(count: &IntCounterVec, duration: &HistogramVec) -> SeriesTable {
        let mut listed = Vec::with_capacity(crate::apis::TABLE.len() * Outcome::ALL.len());
        for spec in crate::apis::TABLE {
            for outcome in Outcome::ALL {
                let labels = [spec.label, outcome.label()];
                listed.push((
                    count.with_label_values(&labels),
                    duration.with_label_values(&labels),
                ));
            }
        }
        SeriesTable {
            listed,
            count: count.clone(),
            duration: duration.clone(),
        }
    }

    fn record(&self, api: &Api, outcome: Outcome, seconds: f64) {
        match api.table_index() {
            Some(index) => {
                let (count, duration) = &self.listed[index * Outcome::ALL.len() + outcome as usize];
                count.inc();
                duration.observe(seconds);
            }
            None => {
                let labels = [api.label(), outcome.label()];
                self.count.with_label_values(&labels).inc();
                self.duration.with_label_values(&labels).observe(seconds);
            }
        }
    }
}

/// Handle to the gateway's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Families>);

/// The metric families, with hot-path children pre-resolved.
pub struct Families {
    registry: Registry,
    requests: SeriesTable,
    /// `cache_lookups_total{result=hit}`, resolved once.
    pub cache_hits: IntCounter,
    /// `cache_lookups_total{result=miss}`.
    pub cache_misses: IntCounter,
    /// `cache_lookups_total{result=absent}`: a hit on a tag cached as unset.
    pub cache_absent: IntCounter,
    /// `cache_lookups_total{result=stale}`: answered past its TTL (revalidating, or the
    /// upstream failed).
    pub cache_stale: IntCounter,
    /// `answer_cache_requests_total{result=hit}`: requests answered whole by body.
    pub answer_cache_hits: IntCounter,
    /// `answer_cache_requests_total{result=miss}`.
    pub answer_cache_misses: IntCounter,
    /// Accounts dropped from the cache by `portrait_set`.
    pub cache_invalidations: IntCounter,
    upstream_requests: SeriesTable,
    /// Time a batch or a `portrait_set` waited for upstream capacity.
    pub ratelimit_wait: Histogram,
    /// Errors answered, by code; auth failures.
    pub errors: ErrorMetrics,
    /// Upstream calls by code class.
    pub upstream_results: UpstreamResults,
    /// Unprefixed registry of the process collector.
    process: Registry,
}

const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    /// Registers every family on a fresh registry with the `tim_gateway` prefix.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("tim_gateway".into()), None)
            .expect("static prefix is a valid metric name");
        let reg = Registrar(&registry);
        let requests = reg.counter_vec(
            "requests_total",
            "API requests answered",
            &["api", "outcome"],
        );
        let request_duration = reg.histogram_vec(
            HistogramOpts::new("request_duration_seconds", "Time to answer an API request")
                .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            &["api", "outcome"],
        );
        let cache_lookups = reg.counter_vec(
            "cache_lookups_total",
            "Cache lookups per (account, tag)",
            &["result"],
        );
        let answer_cache = reg.counter_vec(
            "answer_cache_requests_total",
            "portrait_get requests looked up whole, by exact body, before the per-pair cache",
            &["result"],
        );
        let upstream_requests = reg.counter_vec(
            "upstream_requests_total",
            "Calls made to Tencent IM",
            &["api", "outcome"],
        );
        let upstream_duration = reg.histogram_vec(
            HistogramOpts::new(
                "upstream_request_duration_seconds",
                "Duration of calls to Tencent IM",
            )
            .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            &["api", "outcome"],
        );
        let build_info: IntGaugeVec = reg.register(
            IntGaugeVec::new(
                Opts::new("build_info", "Build information; always 1"),
                &["version"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let families = Families {
            cache_hits: cache_lookups.with_label_values(&["hit"]),
            cache_misses: cache_lookups.with_label_values(&["miss"]),
            cache_absent: cache_lookups.with_label_values(&["absent"]),
            cache_stale: cache_lookups.with_label_values(&["stale"]),
            answer_cache_hits: answer_cache.with_label_values(&["hit"]),
            answer_cache_misses: answer_cache.with_label_values(&["miss"]),
            cache_invalidations: reg.counter(
                "cache_invalidations_total",
                "Accounts dropped from the cache",
            ),
            ratelimit_wait: reg.histogram(
                HistogramOpts::new("ratelimit_wait_seconds", "Wait for upstream capacity")
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            ),
            errors: ErrorMetrics::register(&reg),
            upstream_results: UpstreamResults::register(&reg),
            process: components::process_registry(),
            requests: SeriesTable::new(&requests, &request_duration),
            upstream_requests: SeriesTable::new(&upstream_requests, &upstream_duration),
            registry,
        };
        Metrics(Arc::new(families))
    }

    /// Records one answered API request.
    pub fn record_request(&self, api: &Api, outcome: Outcome, seconds: f64) {
        self.0.requests.record(api, outcome, seconds);
    }

    /// Records one upstream call that ended with `code` (0 when it succeeded, else the
    /// Tencent or gateway ErrorCode).
    pub fn record_upstream(&self, api: &Api, outcome: Outcome, code: i64, seconds: f64) {
        self.0.upstream_requests.record(api, outcome, seconds);
        self.0.upstream_results.record(api, code);
    }

    /// The registry, for components that register families of their own (the fleet).
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// Registers a component's family (as built, `metric`) on the gateway's registry and
    /// returns it; panics only on programmer error (an invalid or duplicate name).
    pub fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: prometheus::Result<M>,
    ) -> M {
        Registrar(&self.0.registry).register(metric.expect("valid metric"))
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut families = self.0.registry.gather();
        families.extend(self.0.process.gather());
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("encoding to a Vec cannot fail");
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.0
    }
}

/// Creates and registers metrics, panicking only on programmer error (duplicate or bad names).
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are unique and valid");
        metric
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }
    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
    fn histogram(&self, opts: HistogramOpts) -> Histogram {
        self.register(Histogram::with_opts(opts).expect("valid metric"))
    }
    fn histogram_vec(&self, opts: HistogramOpts, labels: &[&str]) -> HistogramVec {
        self.register(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

#[cfg(test)]
mod tests;
