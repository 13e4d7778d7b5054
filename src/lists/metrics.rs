//! The list reads' own families, registered once per gateway by `lists.rs` (the central
//! metrics module never names them): where each id a caller asked for was answered from, and
//! how many ids each upstream call carried. The coalescing ratio is ids asked (not from the
//! cache) over ids sent upstream.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::metrics::Metrics;

/// Bucket bounds of `list_call_ids`: up to query_online_status's 500.
const CALL_ID_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0,
];

/// The families; cheap to clone.
#[derive(Clone)]
pub(crate) struct ListMetrics {
    ids: IntCounterVec,
    call_ids: HistogramVec,
}

impl ListMetrics {
    /// Registers the list reads' families on `metrics`' registry (once per gateway).
    pub(crate) fn register(metrics: &Metrics) -> ListMetrics {
        ListMetrics {
            ids: metrics.register(IntCounterVec::new(
                Opts::new(
                    "list_ids_total",
                    "Ids callers asked coalesced list reads for, by where each was answered \
                     from: cache, shared (the fleet's shared tier or a peer's fetch), joined (a call \
                     in flight for another caller) or fetched",
                ),
                &["api", "source"],
            )),
            call_ids: metrics.register(HistogramVec::new(
                HistogramOpts::new("list_call_ids", "Ids per upstream call of a list read")
                    .buckets(CALL_ID_BUCKETS.to_vec()),
                &["api"],
            )),
        }
    }

    /// The handles of one API, resolved once.
    pub(crate) fn of(&self, label: &str) -> ApiListMetrics {
        let source = |s: &str| self.ids.with_label_values(&[label, s]);
        ApiListMetrics {
            cached: source("cache"),
            shared: source("shared"),
            joined: source("joined"),
            fetched: source("fetched"),
            call_ids: self.call_ids.with_label_values(&[label]),
        }
    }
}

/// One list read's series.
#[derive(Clone)]
pub(crate) struct ApiListMetrics {
    /// Ids answered from the cache.
    pub(crate) cached: IntCounter,
    /// Ids answered from the fleet's shared tier (kept, or a peer's fetch waited for).
    pub(crate) shared: IntCounter,
    /// Ids that rode on a call another caller's request had started.
    pub(crate) joined: IntCounter,
    /// Ids this request put into an upstream call.
    pub(crate) fetched: IntCounter,
    /// Ids per upstream call.
    pub(crate) call_ids: Histogram,
}
