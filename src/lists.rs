//! The coalesced list reads: `openim/query_online_status`, `im_open_login_svc/account_check`
//! and the other rows of [`apis::LIST_TABLE`] that `[list_apis]` turns on, answered the way
//! `portrait_get` is: each id from the cache (`ttl_ms > 0`) or from one upstream call shared by
//! every concurrent caller asking for it under the same options, packed up to the API's
//! maximum, under that API's own limiter; each caller answered only its ids, in its order.
//!
//! Everything particular to an API is its row (ids field, options, answer arrays, refusal
//! codes); this module is the one pipeline of them all.
//!
//! | file | owns |
//! | --- | --- |
//! | `lists.rs` | [`ListApis`] (routing, invalidation, rates) and a request's driver |
//! | `lists/request.rs` | a caller's request checked, split into options and ids; call bodies |
//! | `lists/shared.rs` | in a fleet: the shared tier and peers' fetches before any call |
//! | `lists/flight.rs` | the flights: queues per options, the sender, the calls |
//! | `lists/answer.rs` | upstream answers split per id; callers' answers assembled |
//! | `lists/metrics.rs` | `list_ids_total`, `list_call_ids` |
//!
//! In a fleet the misses go to the shared tier first (`lists/shared.rs`): kept entries, peers'
//! fetches awaited, the rest claimed and fetched here, so an id asked on many gateways at once
//! is fetched once. Invalidation (`State.StateChange` for presence, group callbacks for groups,
//! `POST /admin/purge`) drops an id on this gateway at once and, in a fleet, in Redis and on
//! every gateway through the tier's channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::apis::{self, Api, ListSpec};
use crate::breaker::Breaker;
use crate::cache::{CacheTier, ListCache, ListEntry};
use crate::config::{Config, ListApisConfig, LiveDuration, PassThroughConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::ratelimit::UpstreamLimiter;
use crate::upstream::PathFactory;

mod answer;
mod flight;
mod metrics;
mod request;
mod shared;

use flight::{Caller, Flights};
use metrics::ListMetrics;

/// The coalesced list reads of this gateway; cheap to clone.
#[derive(Clone)]
pub(crate) struct ListApis(Arc<Routes>);

struct Routes {
    /// The enabled rows' paths, in table order.
    paths: Vec<ListPath>,
    cache: ListCache,
    tier: CacheTier,
}

/// One coalesced list read.
#[derive(Clone)]
pub(crate) struct ListPath {
    flights: Flights,
    api: Api,
}

impl ListApis {
    /// The rows `config.list_apis` enables, each on a path of its own built by `factory`,
    /// at `passthrough.limits[label]` or Tencent's default rate for it.
    pub(crate) fn new(
        config: &Config,
        factory: &PathFactory,
        cache: ListCache,
        tier: CacheTier,
        metrics: &Metrics,
    ) -> ListApis {
        let families = ListMetrics::register(metrics);
        let paths = apis::LIST_TABLE
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| {
                let settings = config.list_apis.enabled(spec.label)?;
                let api = Api::forwarded(spec.path, spec.label);
                let path = factory.build(&api, rate_of(spec, &config.passthrough));
                let caller = Caller {
                    spec,
                    index: index as u8,
                    path,
                    cache: cache.clone(),
                    tier: tier.clone(),
                    ttl: LiveDuration::new(settings.ttl),
                    max_wait: config.limits.max_queue_wait,
                    attempt_timeout: config.upstream.timeout,
                    metrics: metrics.clone(),
                    own: families.of(spec.label),
                };
                Some(ListPath {
                    flights: Flights::new(caller),
                    api,
                })
            })
            .collect();
        ListApis(Arc::new(Routes { paths, cache, tier }))
    }

    /// The coalesced list read served on `path`, if it is one.
    pub(crate) fn route(&self, path: &str) -> Option<&ListPath> {
        self.0.paths.iter().find(|p| p.api.path() == path)
    }

    /// The limiters by label (for `Alert.RequestOverLimit`).
    pub(crate) fn limiters(&self) -> Vec<(&'static str, UpstreamLimiter)> {
        let limiter = |p: &ListPath| (p.spec().label, p.flights.caller().path.limiter().clone());
        self.0.paths.iter().map(limiter).collect()
    }

    /// The breakers, for readiness reports.
    pub(crate) fn breakers(&self) -> Vec<Breaker> {
        let breaker = |p: &ListPath| p.flights.caller().path.breaker().clone();
        self.0.paths.iter().map(breaker).collect()
    }

    /// A reload changed the rates: each list read takes its new one at once.
    pub(crate) fn set_rates(&self, passthrough: &PassThroughConfig) {
        for path in &self.0.paths {
            let limiter = path.flights.caller().path.limiter();
            limiter.set_rate(rate_of(path.spec(), passthrough));
        }
    }

    /// Sets each enabled row's `ttl_ms` as `wanted` says (a reload; turning a row on or off
    /// takes a restart). What was kept stays until its own expiry.
    pub(crate) fn set_ttls(&self, wanted: &ListApisConfig) {
        for path in &self.0.paths {
            if let Some(settings) = wanted.enabled(path.spec().label) {
                path.flights.caller().ttl.set(settings.ttl);
            }
        }
    }

    /// Drops `accounts` from every list read whose ids are accounts (`POST /admin/purge`), here
    /// and on every gateway.
    pub(crate) async fn purge_accounts(&self, accounts: &[&str]) {
        for spec in apis::LIST_TABLE.iter().filter(|s| s.ids_are_accounts) {
            self.invalidate(spec.label, accounts).await;
        }
    }

    /// Drops every id of the list read labelled `label`, here and on every gateway.
    pub(crate) async fn invalidate_all_of(&self, label: &str) {
        let Some(index) = apis::LIST_TABLE.iter().position(|s| s.label == label) else {
            return;
        };
        self.0.cache.invalidate_api(index as u8);
        // No id is empty: an empty one names them all.
        self.0.tier.invalidate_list(label, "").await;
    }

    /// Drops `ids` of the list read labelled `label` here and, in a fleet, on every gateway;
    /// how many ids that was. Unknown labels drop nothing.
    pub(crate) async fn invalidate(&self, label: &str, ids: &[&str]) -> usize {
        let Some(index) = apis::LIST_TABLE.iter().position(|s| s.label == label) else {
            return 0;
        };
        for id in ids {
            self.0.cache.invalidate(index as u8, id);
            self.0.tier.invalidate_list(label, id).await;
        }
        ids.len()
    }
}

impl ListPath {
    /// The row it serves.
    pub(crate) fn spec(&self) -> &'static ListSpec {
        self.flights.caller().spec
    }

    /// The API it is counted as.
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// Answers one caller's `body` as Tencent would have answered it alone.
    pub(crate) async fn answer(&self, body: &[u8]) -> Result<Bytes, Error> {
        let caller = self.flights.caller();
        let request = request::decode(caller.spec, body)?;
        let started = Instant::now();
        let (mut found, mut misses) = self.look_in_cache(&request, started);
        // The sender bounds every wait (a permit within max_wait, then the call's own
        // deadline); this only catches a call that was lost.
        let deadline = started
            + 2 * (caller.max_wait + caller.attempt_timeout)
            + std::time::Duration::from_secs(1);
        let tier = caller.tier.shared().filter(|_| !misses.is_empty());
        let mut peers = shared::Peers::default();
        if let Some(tier) = tier {
            let fleet = shared::look_up(tier.as_ref(), caller, &request.options, misses).await;
            found.extend(fleet.found);
            (misses, peers) = (fleet.fetch, fleet.theirs);
        }
        let mut waits = self.join(&request, misses)?;
        if let (Some(tier), false) = (tier, peers.is_empty()) {
            // A peer's fetch is awaited as long as one of ours could take, no longer.
            let peers_by = started + caller.max_wait + caller.attempt_timeout;
            let rest = peers.wait(tier.as_ref(), caller, &request.options, peers_by);
            let rest = rest.await;
            found.extend(rest.found);
            waits.extend(self.join(&request, rest.fetch)?);
        }
        for wait in waits {
            let id = wait.id.clone();
            let fetched = wait.outcome(deadline).await?;
            found.insert(id, fetched.map(|a| a.entry));
        }
        let entries = request
            .ids
            .iter()
            .map(|id| found.get(id).and_then(Option::as_ref));
        Ok(answer::assemble(caller.spec, &request.fields, entries))
    }

    /// The request's distinct ids answered from this gateway's cache (`ttl_ms > 0`), and the
    /// rest, in order.
    fn look_in_cache(
        &self,
        request: &request::ListRequest,
        now: Instant,
    ) -> (Found, Vec<Arc<str>>) {
        let caller = self.flights.caller();
        let mut found = HashMap::new();
        let mut misses = Vec::new();
        for id in &request.ids {
            if found.contains_key(id) || misses.contains(id) {
                continue;
            }
            let cached = (!caller.ttl.is_zero())
                .then(|| caller.cache.get(caller.index, id, &request.options, now))
                .flatten();
            match cached {
                Some(entry) => {
                    caller.own.cached.inc();
                    found.insert(id.clone(), Some(entry));
                }
                None => misses.push(id.clone()),
            }
        }
        (found, misses)
    }

    /// `ids` joined to this gateway's flights (none: nothing to wait for).
    fn join(
        &self,
        request: &request::ListRequest,
        ids: Vec<Arc<str>>,
    ) -> Result<Vec<flight::Wait>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.flights.join(&request.options, &request.fields, ids)
    }
}

/// The entries found for a request's ids so far (`None`: the upstream left the id out).
type Found = HashMap<Arc<str>, Option<ListEntry>>;

/// `passthrough.limits[label]`, else Tencent's default for the API.
fn rate_of(spec: &ListSpec, passthrough: &PassThroughConfig) -> std::num::NonZeroU32 {
    passthrough
        .limits
        .get(spec.label)
        .copied()
        .or(std::num::NonZeroU32::new(spec.default_rate))
        .unwrap_or(std::num::NonZeroU32::MIN)
}
