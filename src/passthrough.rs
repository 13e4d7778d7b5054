//! Pass-through: every `POST /v4/<service>/<command>` the API table does not list, forwarded
//! byte for byte (re-signed with the gateway's own UserSig by the upstream client) under that
//! API's own limiter, and the upstream's status and body returned as they came.
//!
//! Each API gets its own [`UpstreamPath`] (limiter at `passthrough.limits[api]` or the default
//! rate, in a fleet the fleet's budget; breaker; retries only of calls that never left) the
//! first time it is called. At most `passthrough.max_distinct_apis` get their own; any further
//! API shares the `other` path and label, so a caller inventing paths cannot grow the
//! gateway's memory or its metric series. Also the one place that finds an API's limiter by
//! label, for Tencent's `Alert.RequestOverLimit` callback.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::apis::{self, Api, OTHER_LABEL};
use crate::config::PassThroughConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::ratelimit::UpstreamLimiter;
use crate::upstream::{Forwarded, PathFactory, UpstreamPath};

/// The pass-through rates: per API, else the default.
struct Rates {
    default: NonZeroU32,
    by_label: BTreeMap<String, NonZeroU32>,
}

impl Rates {
    fn of(&self, label: &str) -> NonZeroU32 {
        self.by_label.get(label).copied().unwrap_or(self.default)
    }
}

/// The pass-through router; cheap to clone.
#[derive(Clone)]
pub(crate) struct PassThrough(Arc<Inner>);

struct Inner {
    enabled: bool,
    factory: PathFactory,
    /// `passthrough.default_requests_per_second` and `passthrough.limits` (a reload may
    /// change them).
    rates: Mutex<Rates>,
    max_distinct: usize,
    /// Paths by label, created as APIs are first called.
    paths: Mutex<HashMap<Box<str>, UpstreamPath>>,
    /// Built on first use, then shared by every API past the bound.
    other: Mutex<Option<UpstreamPath>>,
    /// The limiters of the APIs the table lists (`portrait_get`, `portrait_set`), by label.
    listed: Vec<(&'static str, UpstreamLimiter)>,
    max_queue_wait: Duration,
    metrics: Metrics,
}

impl PassThrough {
    /// A router building paths with `factory`; `listed` are the table's APIs' limiters.
    pub(crate) fn new(
        config: &PassThroughConfig,
        factory: PathFactory,
        listed: Vec<(&'static str, UpstreamLimiter)>,
        max_queue_wait: Duration,
        metrics: Metrics,
    ) -> PassThrough {
        PassThrough(Arc::new(Inner {
            enabled: config.enabled,
            factory,
            rates: Mutex::new(Rates {
                default: config.default_requests_per_second,
                by_label: config.limits.clone(),
            }),
            max_distinct: config.max_distinct_apis,
            paths: Mutex::new(HashMap::new()),
            other: Mutex::new(None),
            listed,
            max_queue_wait,
            metrics,
        }))
    }

    /// Whether other APIs are passed through at all (`passthrough.enabled`).
    pub(crate) fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// The path of an API already called through this gateway, without creating one.
    pub(crate) fn known(&self, path: &str) -> Option<UpstreamPath> {
        let label = apis::forwarded_label(path)?;
        self.0.paths.lock().get(label).cloned()
    }

    /// The path a request for `path` is forwarded through, or `None` when it is not forwarded
    /// (pass-through off, or a path that fails [`apis::forwarded_label`]).
    pub(crate) fn route(&self, path: &str) -> Option<UpstreamPath> {
        if !self.0.enabled {
            return None;
        }
        let label = apis::forwarded_label(path)?;
        let mut paths = self.0.paths.lock();
        if let Some(known) = paths.get(label) {
            return Some(known.clone());
        }
        if paths.len() < self.0.max_distinct {
            let rate = self.0.rates.lock().of(label);
            let built = self.0.factory.build(&Api::forwarded(path, label), rate);
            paths.insert(Box::from(label), built.clone());
            return Some(built);
        }
        drop(paths);
        Some(self.other().to(Api::forwarded(path, OTHER_LABEL)))
    }

    /// A reload changed the rates: every API passed through so far (and the shared path of
    /// those past the bound) takes its new rate at once, and later ones are built with it.
    pub(crate) fn set_rates(&self, config: &PassThroughConfig) {
        // Locks in `route`'s order (paths, then rates; rates is let go before `other`).
        let default = {
            let paths = self.0.paths.lock();
            let mut rates = self.0.rates.lock();
            *rates = Rates {
                default: config.default_requests_per_second,
                by_label: config.limits.clone(),
            };
            for (label, path) in paths.iter() {
                path.limiter().set_rate(rates.of(label));
            }
            rates.default
        };
        if let Some(other) = self.0.other.lock().as_ref() {
            other.limiter().set_rate(default);
        }
    }

    /// The breakers of the APIs passed through so far (their own paths, then the shared one of
    /// the APIs with no limit of their own), in label order, for readiness reports.
    pub(crate) fn breakers(&self) -> Vec<crate::breaker::Breaker> {
        let paths = self.0.paths.lock();
        let mut own: Vec<_> = paths.iter().collect();
        own.sort_by(|a, b| a.0.cmp(b.0));
        let mut breakers: Vec<_> = own.iter().map(|(_, path)| path.breaker().clone()).collect();
        breakers.extend(
            self.0
                .other
                .lock()
                .as_ref()
                .map(|path| path.breaker().clone()),
        );
        breakers
    }

    /// Forwards `body` through `path`, waiting at most `limits.max_queue_wait` for a permit.
    pub(crate) async fn forward(
        &self,
        path: &UpstreamPath,
        body: Bytes,
    ) -> Result<Forwarded, Error> {
        path.forward(body, self.0.max_queue_wait, &self.0.metrics)
            .await
    }

    /// Lowers the pace of the API Tencent calls `label` (`portrait_get`, `openim/sendmsg`),
    /// if this gateway has called it; whether it had.
    pub(crate) fn slow_down(&self, label: &str) -> bool {
        if let Some((_, limiter)) = self.0.listed.iter().find(|(l, _)| *l == label) {
            limiter.slow_down();
            return true;
        }
        match self.0.paths.lock().get(label) {
            Some(path) => {
                path.limiter().slow_down();
                true
            }
            None => false,
        }
    }

    fn other(&self) -> UpstreamPath {
        let mut other = self.0.other.lock();
        other
            .get_or_insert_with(|| {
                let api = Api::forwarded("/v4/other/other", OTHER_LABEL);
                self.0.factory.build(&api, self.0.rates.lock().default)
            })
            .clone()
    }
}
