//! tim-gateway: a drop-in sidecar for Tencent Cloud IM's REST API, caching and coalescing
//! `v4/profile/portrait_get`.
//!
//! Callers point their existing Tencent client at the gateway (only the host changes) and get
//! exactly what Tencent would answer; Tencent sees far fewer, fuller calls, never more than its
//! per-second limit. Every other API is passed through under its own limit, and Tencent's
//! callbacks keep the cache true when profiles change elsewhere.
//!
//! # Layout
//!
//! Public: `apis`, `config`, `demo`, `metrics`, `shutdown`, `sim`, `usersig`; everything else is
//! internal (`bench` and `fuzzing` are doc-hidden doors for `benches/` and `fuzz/`).
//!
//! | module | owns |
//! |---|---|
//! | `apis` | the one table of APIs: path, metric label, handling (cached, invalidating); the rest passed through |
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
//! | `upstream` | HTTP(S) calls to Tencent (rustls, h2 by ALPN), signed as the gateway's admin; each API's path (limiter, breaker, retries) |
//! | `passthrough` | every other `/v4/<service>/<command>`, forwarded byte for byte under its own limiter |
//! | `callback` | Tencent's callbacks: Sign check, invalidation, over-limit pacing, relay to the app |
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
pub mod apis;
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
pub(crate) mod callback;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod passthrough;
pub(crate) mod ratelimit;
pub(crate) mod request_id;
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
use apis::Api;
use auth::Authenticator;
use batcher::{BatchConfig, Batcher};
use cache::ProfileCache;
use callback::Callbacks;
use fleet::metrics::FleetMetrics;
use fleet::{CacheTier, Fleet};
use metrics::Metrics;
use passthrough::PassThrough;
use routes::{AppState, Handlers, Listener};
use upstream::{PathFactory, UpstreamClient};

/// The sockets a gateway serves: the API listener (`server.listen`) and, when callbacks have
/// their own port (`callback.listen`), theirs. A bare `TcpListener` is the API listener alone.
pub struct Listeners {
    /// `server.listen`.
    pub api: TcpListener,
    /// `callback.listen`, bound by the caller; `None` serves callbacks on the API listener
    /// (or, when `callback.listen` is set, not at all).
    pub callbacks: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(api: TcpListener) -> Listeners {
        Listeners {
            api,
            callbacks: None,
        }
    }
}

/// Runs the gateway on `listeners` against the configured Tencent upstream until `shutdown`
/// resolves, then drains within `server.shutdown_grace_ms`.
pub async fn run(
    config: Config,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()>,
) {
    let upstream = Arc::new(UpstreamClient::new(&config.upstream));
    run_with_upstream(config, listeners, upstream, shutdown).await;
}

/// [`run`] with any [`UpstreamApi`] (benches plug in an in-memory one).
pub async fn run_with_upstream(
    config: Config,
    listeners: impl Into<Listeners>,
    upstream: Arc<dyn UpstreamApi>,
    shutdown: impl Future<Output = ()>,
) {
    let listeners = listeners.into();
    let metrics = Metrics::new();
    let (handlers, worker) = build_handlers(&config, upstream, metrics.clone());
    let auth = Authenticator::new(
        &config.auth,
        config.upstream.sdkappid,
        config.upstream.secret_key.clone(),
    );
    let state = Arc::new(AppState::new(handlers, auth, metrics, &config));
    log_banner(&config, &listeners);
    let drain_started = serve_all(listeners, state, &config, shutdown).await;
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

/// Serves the API listener and the callback listener (if any) until `shutdown`, draining both;
/// when the API listener's drain started.
async fn serve_all(
    listeners: Listeners,
    state: Arc<AppState>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> std::time::Instant {
    if config.callback.listen.is_some() && listeners.callbacks.is_none() {
        warn!("callback.listen is set but no callback listener was bound: callbacks not served");
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let api = server::serve(
        listeners.api,
        Listener::Api,
        state.clone(),
        &config.server,
        stop.cancelled(),
    );
    let callbacks = async {
        if let Some(listener) = listeners.callbacks {
            let role = Listener::Callbacks;
            server::serve(
                listener,
                role,
                state.clone(),
                &config.server,
                stop.cancelled(),
            )
            .await;
        }
    };
    let signal = async {
        shutdown.await;
        stop.cancel();
    };
    let (drain_started, (), ()) = tokio::join!(api, callbacks, signal);
    drain_started
}

/// Builds the cache, limiters, batch worker and service from `config`, without HTTP (benches
/// drive the service directly), joining the fleet when `fleet.redis_url` is set. The worker
/// exits once the service and its clones are dropped; so does the fleet's channel task.
pub fn build_service(
    config: &Config,
    upstream: Arc<dyn UpstreamApi>,
    metrics: Metrics,
) -> (ProfileService, tokio::task::JoinHandle<()>) {
    let (handlers, worker) = build_handlers(config, upstream, metrics);
    (handlers.service, worker)
}

/// Everything that answers requests: the profile service (cache, tier, batcher, the paths of
/// the table's APIs), the pass-through router and the callback receiver.
fn build_handlers(
    config: &Config,
    upstream: Arc<dyn UpstreamApi>,
    metrics: Metrics,
) -> (Handlers, tokio::task::JoinHandle<()>) {
    let limits = &config.limits;
    let cache = ProfileCache::with_evictions(&config.cache, Some(metrics.cache_evictions.clone()));
    let fleet = Fleet::join(config, &cache, FleetMetrics::register(&metrics)).map(Arc::new);
    let paths = PathFactory::new(upstream, fleet.clone(), config, &metrics);
    let get_path = paths.build(&Api::PORTRAIT_GET, limits.requests_per_second);
    let set_path = paths.build(&Api::PORTRAIT_SET, limits.set_requests_per_second);
    let listed = vec![
        (apis::PORTRAIT_GET.label, get_path.limiter.clone()),
        (apis::PORTRAIT_SET.label, set_path.limiter.clone()),
    ];
    let tier = fleet.as_deref().map_or(CacheTier::Local, Fleet::tier);
    let batch_config = BatchConfig {
        max_accounts: limits.max_accounts_per_batch,
        window: limits.batch_window,
        max_queue_wait: limits.max_queue_wait,
        upstream_timeout: config.upstream.timeout,
    };
    let (batcher, worker) = Batcher::spawn(
        batch_config,
        get_path,
        cache.clone(),
        tier.clone(),
        metrics.clone(),
    );
    let service = ProfileService::new(
        AnswerCache::new(config.cache.answer_cache_bytes, cache.clone()),
        cache,
        tier,
        batcher,
        set_path,
        metrics.clone(),
        config,
        fleet,
    );
    let passthrough = PassThrough::new(
        &config.passthrough,
        paths,
        listed,
        limits.max_queue_wait,
        metrics.clone(),
    );
    let callbacks = Callbacks::new(
        &config.callback,
        config.upstream.sdkappid,
        service.clone(),
        passthrough.clone(),
        &metrics,
    );
    let handlers = Handlers {
        service,
        passthrough,
        callbacks,
    };
    (handlers, worker)
}

fn log_banner(config: &Config, listeners: &Listeners) {
    let address = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let listen = address(&listeners.api);
    let callbacks = match &listeners.callbacks {
        Some(listener) => format!("{}{}", address(listener), config.callback.path),
        None => format!("{listen}{}", config.callback.path),
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen,
        callbacks,
        passthrough = config.passthrough.enabled,
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
