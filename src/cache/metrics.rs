//! The caches' own families, registered on the gateway's registry by the cache (the central
//! metrics module never names them): what moka dropped on its own, and how much the per-pair
//! cache and the whole-answer cache hold (set at each scrape).

use moka::notification::RemovalCause;
use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::metrics::Metrics;

/// How much the caches hold, for the scrape-time gauges.
pub struct CacheSizes {
    /// Cached (account, tag) pairs.
    pub pairs: u64,
    /// Bytes of whole answers kept by body.
    pub answer_bytes: u64,
    /// Bytes of answer entries rendered into accounts.
    pub rendered_bytes: u64,
}

/// The caches' handles; cheap to clone.
#[derive(Clone)]
pub(crate) struct CacheMetrics {
    evictions: CacheEvictions,
    entries: IntGauge,
    answer_bytes: IntGauge,
    rendered_bytes: IntGauge,
}

impl CacheMetrics {
    /// Registers the caches' families on `metrics`' registry (once per gateway).
    pub(crate) fn register(metrics: &Metrics) -> CacheMetrics {
        let gauge = |name: &str, help: &str| metrics.register(IntGauge::new(name, help));
        CacheMetrics {
            evictions: CacheEvictions::register(metrics),
            entries: gauge("cache_entries", "Cached (account, tag) pairs"),
            answer_bytes: gauge(
                "answer_cache_bytes",
                "Bytes held by whole cached answers (requests, answers, bookkeeping)",
            ),
            rendered_bytes: gauge(
                "cache_rendered_bytes",
                "Bytes held by account answer entries rendered for a TagList",
            ),
        }
    }

    /// What moka's eviction listener of the per-pair cache reports into.
    pub(crate) fn evictions(&self) -> CacheEvictions {
        self.evictions.clone()
    }

    /// Sets the size gauges (at each scrape).
    pub(crate) fn show(&self, sizes: &CacheSizes) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.entries.set(gauge(sizes.pairs));
        self.answer_bytes.set(gauge(sizes.answer_bytes));
        self.rendered_bytes.set(gauge(sizes.rendered_bytes));
    }
}

/// Accounts removed from the per-pair cache by moka, by cause.
#[derive(Clone)]
pub(crate) struct CacheEvictions(IntCounterVec);

impl CacheEvictions {
    fn register(metrics: &Metrics) -> CacheEvictions {
        let evictions = metrics.register(IntCounterVec::new(
            Opts::new(
                "cache_evictions_total",
                "Cached accounts the cache dropped on its own: size (evicted, or refused \
                 admission, when full) or expired",
            ),
            &["cause"],
        ));
        for cause in ["size", "expired"] {
            evictions.with_label_values(&[cause]);
        }
        CacheEvictions(evictions)
    }

    /// What moka's eviction listener calls, with the accounts the removal dropped.
    /// Replacements (a refresh) and explicit removals (`portrait_set`, counted as
    /// invalidations) are not evictions.
    pub(crate) fn record(&self, cause: RemovalCause, accounts: u64) {
        let label = match cause {
            RemovalCause::Size => "size",
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit | RemovalCause::Replaced => return,
        };
        self.0.with_label_values(&[label]).inc_by(accounts);
    }

    /// The accounts dropped for `cause` so far.
    #[cfg(test)]
    pub(crate) fn count(&self, cause: &str) -> u64 {
        self.0.with_label_values(&[cause]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caches_families_are_exposed_under_the_gateways_prefix() {
        let metrics = Metrics::new();
        let own = CacheMetrics::register(&metrics);
        own.evictions().record(RemovalCause::Size, 1);
        own.evictions().record(RemovalCause::Replaced, 5);
        own.show(&CacheSizes {
            pairs: 3,
            answer_bytes: 4,
            rendered_bytes: 5,
        });
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        for sample in [
            "tim_gateway_cache_evictions_total{cause=\"size\"} 1",
            "tim_gateway_cache_evictions_total{cause=\"expired\"} 0",
            "tim_gateway_cache_entries 3",
            "tim_gateway_answer_cache_bytes 4",
            "tim_gateway_cache_rendered_bytes 5",
        ] {
            assert!(text.contains(sample), "missing {sample} in\n{text}");
        }
    }
}
