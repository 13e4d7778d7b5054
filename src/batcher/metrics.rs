//! The batcher's own families, registered on the gateway's registry by the batcher (the
//! central metrics module never names them): how much coalescing saved, how full the calls
//! are, how many batches wait for a permit, and the per-caller resends after a bad input.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};

use crate::metrics::Metrics;

/// Bucket bounds of `batch_accounts`: fine near the 100-account maximum.
const BATCH_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 100.0,
];

/// The batcher's handles; cheap to clone.
#[derive(Clone)]
pub(super) struct BatcherMetrics {
    /// (account, tag) pairs that joined a fetch another caller was already waiting on.
    pub(super) coalesced_keys: IntCounter,
    /// Accounts per upstream `portrait_get` call.
    pub(super) batch_accounts: Histogram,
    /// Batches waiting for an upstream permit.
    pub(super) queue_batches: IntGauge,
    /// Merged calls re-sent per caller because a caller's input failed them.
    pub(super) isolation_resends: IntCounter,
}

impl BatcherMetrics {
    /// Registers the batcher's families on `metrics`' registry (once per gateway).
    pub(super) fn register(metrics: &Metrics) -> BatcherMetrics {
        BatcherMetrics {
            coalesced_keys: metrics.register(IntCounter::new(
                "coalesced_keys_total",
                "(account, tag) pairs that joined a fetch another caller was already waiting on",
            )),
            batch_accounts: metrics.register(Histogram::with_opts(
                HistogramOpts::new("batch_accounts", "Accounts per upstream portrait_get call")
                    .buckets(BATCH_BUCKETS.to_vec()),
            )),
            queue_batches: metrics.register(IntGauge::new(
                "queue_batches",
                "Upstream portrait_get batches waiting for a permit",
            )),
            isolation_resends: metrics.register(IntCounter::new(
                "isolation_resends_total",
                "Merged upstream calls re-sent per caller after a caller-attributable failure",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batchers_families_are_exposed_under_the_gateways_prefix() {
        let metrics = Metrics::new();
        let own = BatcherMetrics::register(&metrics);
        own.batch_accounts.observe(100.0);
        own.coalesced_keys.inc();
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        for sample in [
            "tim_gateway_coalesced_keys_total 1",
            "tim_gateway_batch_accounts_bucket{le=\"100\"} 1",
            "tim_gateway_queue_batches 0",
            "tim_gateway_isolation_resends_total 0",
        ] {
            assert!(text.contains(sample), "missing {sample} in\n{text}");
        }
    }
}
