//! tim-gateway: a drop-in sidecar for Tencent Cloud IM `v4/profile/portrait_get`.
//!
//! Callers point their existing Tencent client at the gateway (only the host changes) and get
//! exactly what Tencent would answer; Tencent sees far fewer, fuller calls, never more than its
//! per-second limit.
//!
//! # Layout
//!
//! Public: `config`, `demo`, `metrics`, `shutdown`, `sim`, `usersig`; everything else is
//! internal (`bench` and `fuzzing` are doc-hidden doors for `benches/` and `fuzz/`).
//!
//! | module | owns |
//! |---|---|
//! | `config` | TOML + env -> validated [`Config`] |
//! | `wire` | Tencent JSON: request validation, upstream decoding, response and error encoding |
//! | `error` | the one [`Error`] type: Tencent code, fault, retryable or outage |
//! | `usersig`, `auth` | UserSig v2 sign/verify; checking callers' query strings |
//! | `cache` | per-(account, tag) values, absences and stale slots in moka; invalidation stamps |
//! | `answers` | whole all-hit answers by exact request body, voided by expiry or invalidation |
//! | `batcher` | coalescing misses of concurrent callers into upstream calls of <= 100 accounts |
//! | `ratelimit` | FIFO, deadline-bounded limiter per upstream API (local or fleet engine), pace |
//! | `fleet` | Redis: one budget, one shared cache tier, one invalidation channel for N gateways |
//! | `breaker`, `retry` | stop calling a failing upstream; retries inside a budget |
//! | `upstream` | HTTP(S) calls to Tencent (rustls, h2 by ALPN), signed as the gateway's admin |
//! | `service` | API policy: validate -> cache -> tier -> batcher -> assemble; stale; portrait_set |
//! | `routes`, `server` | route table, probes and responses; bounded connections, announced drain |
//! | `metrics` | Prometheus families on an owned registry |
//! | `sim` | the simulated Tencent upstream (demo, `tim-gateway sim`, tests, benches) |
//! | `demo` | `tim-gateway demo`: the gateway in front of the sim, and a ready curl |
//! | `shutdown` | the SIGTERM / Ctrl-C future that starts the drain |
//!
//! # One request
//!
//! `server` accepts -> `routes` matches `POST /v4/profile/portrait_get`, `auth` checks the
//! query, the body is read up to a limit -> `service` serves a still-valid answer kept for
//! exactly this body (`answers`), or validates it (`wire`) and looks each (account, tag) up in
//! `cache`. All hits: the answer is written from cached raw JSON and kept by body, done.
//! In a fleet, misses are looked up in the shared tier (`fleet`) first. The rest go to `batcher`, whose one worker joins them to fetches in flight or batches them,
//! waits for a `ratelimit` permit and calls `upstream`; it caches what comes back and hands
//! each caller its own accounts. `service` assembles the answer in `To_Account` and `TagList`
//! order. Every outcome is HTTP 200 with Tencent's envelope.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

// The public surface: configuration, the entry points, the simulated Tencent, UserSig tools,
// and what `build_service` and an `UpstreamApi` implementation name. Everything else is
// internal; benches and fuzz targets reach what they measure through doc-hidden modules.
pub mod config;
pub mod demo;
pub mod metrics;
pub mod shutdown;
pub mod sim;
pub mod usersig;

#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod fuzzing;

pub(crate) mod answers;
pub(crate) mod auth;
pub(crate) mod batcher;
pub(crate) mod breaker;
pub(crate) mod cache;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod ratelimit;
pub(crate) mod retry;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod upstream;
pub(crate) mod wire;

use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;
pub use error::Error;
pub use service::ProfileService;
pub use upstream::UpstreamApi;
pub use wire::STANDARD_TAGS;

use answers::AnswerCache;
use auth::Authenticator;
use batcher::{BatchConfig, Batcher, PathMetrics, UpstreamPath};
use cache::ProfileCache;
use fleet::metrics::FleetMetrics;
use fleet::{CacheTier, Fleet};
use metrics::{Api, Metrics};
use ratelimit::UpstreamLimiter;
use routes::AppState;

use upstream::UpstreamClient;

/// Runs the gateway on `listener` against the configured Tencent upstream until `shutdown`
/// resolves, then drains within `server.shutdown_grace_ms`.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let upstream = Arc::new(UpstreamClient::new(&config.upstream));
    run_with_upstream(config, listener, upstream, shutdown).await;
}

/// [`run`] with any [`UpstreamApi`] (benches plug in an in-memory one).
pub async fn run_with_upstream(
    config: Config,
    listener: TcpListener,
    upstream: Arc<dyn UpstreamApi>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = Metrics::new();
    let (service, worker) = build_service(&config, upstream, metrics.clone());
    let auth = Authenticator::new(
        &config.auth,
        config.upstream.sdkappid,
        config.upstream.secret_key.clone(),
    );
    let state = Arc::new(AppState::new(
        service,
        auth,
        metrics,
        config.server.max_body_bytes,
        config.server.body_read_timeout,
    ));
    log_banner(&config, &listener);
    let drain_started = server::serve(listener, state, &config.server, shutdown).await;
    // The server held the last handles to the batcher: the worker now flushes what is queued
    // and exits once its channel closes, within what is left of the grace period counted from
    // the shutdown signal.
    let left = config
        .server
        .shutdown_grace
        .saturating_sub(drain_started.elapsed());
    if tokio::time::timeout(left, worker).await.is_err() {
        warn!("batch worker still busy at the end of the grace period");
    }
    info!("tim-gateway stopped");
}

/// Builds the cache, limiters, batch worker and service from `config`, without HTTP (benches
/// drive the service directly), joining the fleet when `fleet.redis_url` is set. The worker
/// exits once the service and its clones are dropped; so does the fleet's channel task.
pub fn build_service(
    config: &Config,
    upstream: Arc<dyn UpstreamApi>,
    metrics: Metrics,
) -> (ProfileService, tokio::task::JoinHandle<()>) {
    let limits = &config.limits;
    let cache = ProfileCache::with_evictions(&config.cache, Some(metrics.cache_evictions.clone()));
    let fleet = Fleet::join(config, &cache, FleetMetrics::register(&metrics));
    let limiter_for = |api: Api, rate: std::num::NonZeroU32| {
        let limiter = match &fleet {
            Some(fleet) => UpstreamLimiter::fleet(fleet.limiter(api.label(), rate), rate),
            None => UpstreamLimiter::new(rate),
        };
        metrics.limiters.watch(api, limiter.clone(), rate.get());
        limiter
    };
    let path_metrics = PathMetrics::register(&metrics);
    let path_for = |api: Api, rate| {
        let limiter = limiter_for(api, rate);
        UpstreamPath::new(api, upstream.clone(), limiter, config, &path_metrics)
    };
    let tier = fleet.as_ref().map_or(CacheTier::Local, Fleet::tier);
    let batch_config = BatchConfig {
        max_accounts: limits.max_accounts_per_batch,
        window: limits.batch_window,
        max_queue_wait: limits.max_queue_wait,
        upstream_timeout: config.upstream.timeout,
    };
    let (batcher, worker) = Batcher::spawn(
        batch_config,
        path_for(Api::PortraitGet, limits.requests_per_second),
        cache.clone(),
        tier.clone(),
        metrics.clone(),
    );
    let service = ProfileService::new(
        AnswerCache::new(config.cache.answer_cache_bytes, cache.clone()),
        cache,
        tier,
        batcher,
        path_for(Api::PortraitSet, limits.set_requests_per_second),
        metrics,
        config,
        fleet,
    );
    (service, worker)
}

fn log_banner(config: &Config, listener: &TcpListener) {
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen,
        upstream = config.upstream.base_url.host_str().unwrap_or(""),
        sdkappid = config.upstream.sdkappid,
        requests_per_second = config.limits.requests_per_second.get(),
        max_accounts_per_batch = config.limits.max_accounts_per_batch,
        batch_window_ms = config.limits.batch_window.as_millis() as u64,
        max_queue_wait_ms = config.limits.max_queue_wait.as_millis() as u64,
        cache_ttl_seconds = config.cache.ttl.as_secs(),
        auth = ?config.auth.mode,
        "tim-gateway serving"
    );
}
