//! The limiters' gauges: window slots in use against the limit, per API, read from each
//! limiter when Prometheus scrapes (nothing is updated on the call path).

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts, Registry};

use super::UpstreamLimiter;
use crate::apis::Api;

/// Window slots in use and the limit, per API, read from the limiters at scrape time.
pub(crate) struct LimiterGauges {
    in_use: IntGaugeVec,
    limit: IntGaugeVec,
    watched: Mutex<Vec<(Api, UpstreamLimiter)>>,
}

impl LimiterGauges {
    pub(crate) fn register(registry: &Registry) -> Arc<LimiterGauges> {
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["api"]).expect("valid metric")
        };
        let gauges = Arc::new(LimiterGauges {
            in_use: gauge(
                "upstream_window_calls",
                "Upstream calls holding a slot of the sliding one-second window (sent or \
                 answered less than a second ago, or being sent)",
            ),
            limit: gauge(
                "upstream_window_calls_limit",
                "The configured upstream calls per second (the limit line)",
            ),
            watched: Mutex::new(Vec::new()),
        });
        registry
            .register(Box::new(SharedCollector(gauges.clone())))
            .expect("metric names are unique and valid");
        gauges
    }

    /// Reports `limiter` as `api`'s window (its limit read at each scrape: a reload may change it).
    pub(crate) fn watch(&self, api: &Api, limiter: UpstreamLimiter) {
        self.watched.lock().push((api.clone(), limiter));
    }
}

struct SharedCollector(Arc<LimiterGauges>);

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut desc = self.0.in_use.desc();
        desc.extend(self.0.limit.desc());
        desc
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (api, limiter) in self.0.watched.lock().iter() {
            let limit = i64::from(limiter.rate());
            let free = i64::try_from(limiter.free_slots()).unwrap_or(i64::MAX);
            let labels = [api.label()];
            self.0.limit.with_label_values(&labels).set(limit);
            self.0
                .in_use
                .with_label_values(&labels)
                .set((limit - free).max(0));
        }
        let mut families = self.0.in_use.collect();
        families.extend(self.0.limit.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn a_watched_limiter_shows_its_window_and_limit() {
        let registry = Registry::new_custom(Some("tim_gateway".into()), None).expect("prefix");
        let gauges = LimiterGauges::register(&registry);
        let limiter = UpstreamLimiter::new(NonZeroU32::new(200).expect("non-zero"));
        gauges.watch(&Api::PORTRAIT_GET, limiter);
        let mut text = String::new();
        let families = registry.gather();
        prometheus::TextEncoder::new()
            .encode_utf8(&families, &mut text)
            .expect("text encoding");
        for line in [
            "tim_gateway_upstream_window_calls{api=\"portrait_get\"} 0",
            "tim_gateway_upstream_window_calls_limit{api=\"portrait_get\"} 200",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
