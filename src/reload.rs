//! Reloading the config without a restart (SIGHUP, as for nginx): the file and the environment
//! are read again by the binary and handed here as a [`Reload`]. A valid config is applied where
//! it can change live, without dropping a connection or a caller: the upstream rates
//! (`limits.requests_per_second`, `limits.set_requests_per_second`, the pass-through's
//! `default_requests_per_second` and `limits`, which also name the list reads' rates; in a
//! fleet, the budgets this gateway asks Redis for), the profile TTL (`cache.ttl_seconds`, for
//! values stored from then on, in L1 and the fleet's tier) and each enabled list read's
//! `ttl_ms`. Every other changed key is reported in the log and keeps its running value until a
//! restart. An invalid file is refused with one log line and the
//! running config stays. Both are counted in `config_reloads_total{result}`, and the config in
//! force is logged (secrets redacted) after each reload.

use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::cache::{CacheTier, ProfileCache};
use crate::config::Config;
use crate::lists::ListApis;
use crate::metrics::Metrics;
use crate::passthrough::PassThrough;
use crate::ratelimit::UpstreamLimiter;

/// What a reload read.
pub enum Reload {
    /// A valid config, to apply where it can change live.
    Read(Box<Config>),
    /// Why the file (or an override) was refused: one line.
    Refused(String),
}

/// Where reloads go: the binary's SIGHUP handler keeps the sender.
pub type Reloads = mpsc::Receiver<Reload>;

/// The running gateway's parts a reload changes.
pub(crate) struct Live {
    /// portrait_get's limiter.
    pub(crate) get: UpstreamLimiter,
    /// portrait_set's limiter.
    pub(crate) set: UpstreamLimiter,
    pub(crate) passthrough: PassThrough,
    pub(crate) lists: ListApis,
    pub(crate) cache: ProfileCache,
    pub(crate) tier: CacheTier,
}

/// Applies reloads to the running gateway.
pub(crate) struct Reloader {
    running: Config,
    live: Live,
    applied: IntCounter,
    refused: IntCounter,
}

impl Reloader {
    /// For a gateway running `config`, changing `live`.
    pub(crate) fn new(config: &Config, live: Live, metrics: &Metrics) -> Reloader {
        let results = metrics.register(IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Config reloads (SIGHUP): applied (valid; keys that cannot change live keep \
                 their running value) or invalid (refused; the running config stays)",
            ),
            &["result"],
        ));
        Reloader {
            running: config.clone(),
            live,
            applied: results.with_label_values(&["applied"]),
            refused: results.with_label_values(&["invalid"]),
        }
    }

    /// Applies each reload as it comes, until the sender is dropped.
    pub(crate) async fn serve(mut self, mut reloads: Reloads) {
        while let Some(reload) = reloads.recv().await {
            match reload {
                Reload::Read(config) => self.apply(*config),
                Reload::Refused(why) => {
                    self.refused.inc();
                    warn!(error = %why, "config reload refused: the running config stays");
                }
            }
        }
    }

    fn apply(&mut self, new: Config) {
        let mut applied = self.apply_rates(&new);
        applied.extend(self.apply_ttls(&new));
        let kept = needs_a_restart(&self.running, &new);
        self.applied.inc();
        info!(
            applied = ?applied,
            kept_until_restart = ?kept,
            config = ?self.running,
            "config reloaded"
        );
    }

    /// The upstream rates; which keys changed.
    fn apply_rates(&mut self, new: &Config) -> Vec<&'static str> {
        let (live, running) = (&self.live, &mut self.running);
        let mut applied = Vec::new();
        let (new_get, new_set) = (
            new.limits.requests_per_second,
            new.limits.set_requests_per_second,
        );
        if new_get != running.limits.requests_per_second {
            live.get.set_rate(new_get);
            running.limits.requests_per_second = new_get;
            applied.push("limits.requests_per_second");
        }
        if new_set != running.limits.set_requests_per_second {
            live.set.set_rate(new_set);
            running.limits.set_requests_per_second = new_set;
            applied.push("limits.set_requests_per_second");
        }
        let wanted = &new.passthrough;
        if (
            running.passthrough.default_requests_per_second,
            &running.passthrough.limits,
        ) != (wanted.default_requests_per_second, &wanted.limits)
        {
            live.passthrough.set_rates(wanted);
            live.lists.set_rates(wanted);
            running.passthrough.default_requests_per_second = wanted.default_requests_per_second;
            running.passthrough.limits = wanted.limits.clone();
            applied.push("passthrough.default_requests_per_second / passthrough.limits");
        }
        applied
    }

    /// The profile TTL and the enabled list reads' TTLs; which keys changed.
    fn apply_ttls(&mut self, new: &Config) -> Vec<&'static str> {
        let (live, running) = (&self.live, &mut self.running);
        let mut applied = Vec::new();
        if new.cache.ttl != running.cache.ttl {
            live.cache.set_ttl(new.cache.ttl);
            live.tier.set_ttl(new.cache.ttl);
            running.cache.ttl = new.cache.ttl;
            applied.push("cache.ttl_seconds");
        }
        let mut lists_changed = false;
        for (label, running_api) in running.list_apis.by_label.iter_mut() {
            let wanted = new.list_apis.by_label.get(label);
            let wanted = wanted.filter(|w| w.enabled && running_api.enabled);
            if let Some(wanted) = wanted.filter(|w| w.ttl != running_api.ttl) {
                running_api.ttl = wanted.ttl;
                lists_changed = true;
            }
        }
        if lists_changed {
            live.lists.set_ttls(&running.list_apis);
            applied.push("list_apis.*.ttl_ms");
        }
        applied
    }
}

/// The sections (or keys) that differ between the running config and `new` but cannot change
/// live; the running config already holds every live key of `new`.
fn needs_a_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let sections = [
        ("server", running.server != new.server),
        ("upstream", running.upstream != new.upstream),
        ("auth", running.auth != new.auth),
        ("limits", running.limits != new.limits),
        ("cache", running.cache != new.cache),
        ("log", running.log != new.log),
        ("fleet", running.fleet != new.fleet),
        ("breaker", running.breaker != new.breaker),
        ("passthrough", running.passthrough != new.passthrough),
        ("callback", running.callback != new.callback),
        ("list_apis", running.list_apis != new.list_apis),
    ];
    let changed = sections.into_iter().filter(|(_, changed)| *changed);
    changed.map(|(section, _)| section).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sections_that_cannot_change_live_are_reported() {
        let running = Config::default();
        let mut new = running.clone();
        assert!(needs_a_restart(&running, &new).is_empty());
        new.cache.max_entries += 1;
        new.server.max_body_bytes += 1;
        assert_eq!(needs_a_restart(&running, &new), ["server", "cache"]);
    }
}
