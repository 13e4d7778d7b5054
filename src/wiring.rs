//! The wiring: builds every component from the [`Config`] and connects them, then serves.
//! The one place that names every component (the fleet included) and decides which plugs into
//! which seam: the fleet's budgets behind each API's limiter, its tier behind the cache.
//! Nothing else depends on this module but the crate root, which re-exports its entry points.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::answers::AnswerCache;
use crate::apis::{self, Api};
use crate::auth::Authenticator;
use crate::batcher::{BatchConfig, Batcher};
use crate::cache::{CacheMetrics, CacheTier, ProfileCache};
use crate::callback::Callbacks;
use crate::config::Config;
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::Fleet;
use crate::lists::ListApis;
use crate::metrics::Metrics;
use crate::passthrough::PassThrough;
use crate::ratelimit::BudgetSource;
use crate::readiness::Report;
use crate::reload::{Live, Reloader, Reloads};
use crate::routes::{AppState, Handlers, Listener};
use crate::server;
use crate::service::ProfileService;
use crate::upstream::{PathFactory, UpstreamApi, UpstreamClient};

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

/// [`run`], applying each config `reloads` brings (the binary sends one per SIGHUP).
pub async fn run_reloading(
    config: Config,
    listeners: impl Into<Listeners>,
    reloads: Reloads,
    shutdown: impl Future<Output = ()>,
) {
    let upstream = Arc::new(UpstreamClient::new(&config.upstream));
    serve_gateway(config, listeners.into(), upstream, Some(reloads), shutdown).await;
}

/// [`run`] with any [`UpstreamApi`] (benches plug in an in-memory one).
pub async fn run_with_upstream(
    config: Config,
    listeners: impl Into<Listeners>,
    upstream: Arc<dyn UpstreamApi>,
    shutdown: impl Future<Output = ()>,
) {
    serve_gateway(config, listeners.into(), upstream, None, shutdown).await;
}

async fn serve_gateway(
    config: Config,
    listeners: Listeners,
    upstream: Arc<dyn UpstreamApi>,
    reloads: Option<Reloads>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = Metrics::new();
    let Built {
        handlers,
        worker,
        fleet,
        live,
    } = build_handlers(&config, upstream, metrics.clone());
    let reloader = Reloader::new(&config, live, &metrics);
    let reloading = reloads.map(|reloads| tokio::spawn(reloader.serve(reloads)));
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
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    if let Some(fleet) = fleet {
        // Once the last calls' window has passed, this gateway's shares go back to the
        // others at once rather than when its lease runs out.
        fleet.leave().await;
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
    let built = build_handlers(config, upstream, metrics);
    (built.handlers.service, built.worker)
}

/// What [`build_handlers`] built.
pub(crate) struct Built {
    /// Everything that answers requests.
    pub(crate) handlers: Handlers,
    /// The batch worker, which exits once the handlers are dropped.
    pub(crate) worker: tokio::task::JoinHandle<()>,
    /// The fleet membership, to leave on a graceful stop.
    pub(crate) fleet: Option<Arc<Fleet>>,
    /// What a reload changes.
    pub(crate) live: Live,
}

/// Everything that answers requests: the profile service (cache, tier, batcher, the paths of
/// the table's APIs), the pass-through router and the callback receiver.
pub(crate) fn build_handlers(
    config: &Config,
    upstream: Arc<dyn UpstreamApi>,
    metrics: Metrics,
) -> Built {
    let limits = &config.limits;
    let cache_metrics = CacheMetrics::register(&metrics);
    let cache = ProfileCache::with_evictions(&config.cache, Some(cache_metrics.evictions()));
    let fleet = Fleet::join(config, &cache, FleetMetrics::register(&metrics)).map(Arc::new);
    let budgets = fleet.clone().map(|f| f as Arc<dyn BudgetSource>);
    let paths = PathFactory::new(upstream, budgets, config, &metrics);
    let get_path = paths.build(&Api::PORTRAIT_GET, limits.requests_per_second);
    let set_path = paths.build(&Api::PORTRAIT_SET, limits.set_requests_per_second);
    let (get_limiter, set_limiter) = (get_path.limiter().clone(), set_path.limiter().clone());
    let lists = ListApis::new(
        config,
        &paths,
        cache.lists().clone(),
        fleet
            .clone()
            .map_or(CacheTier::Local, |f| CacheTier::Shared(f)),
        &metrics,
    );
    let mut listed = vec![
        (apis::PORTRAIT_GET.label, get_path.limiter().clone()),
        (apis::PORTRAIT_SET.label, set_path.limiter().clone()),
    ];
    listed.extend(lists.limiters());
    // The fleet is the tier: the service and the batch worker holding it keep it alive.
    let tier = fleet
        .clone()
        .map_or(CacheTier::Local, |f| CacheTier::Shared(f));
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
    let (cached, tiered) = (cache.clone(), tier.clone());
    let service = ProfileService::new(
        AnswerCache::new(config.cache.answer_cache_bytes, cache.clone()),
        cache,
        tier,
        batcher,
        set_path,
        metrics.clone(),
        cache_metrics,
        config,
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
        lists.clone(),
        passthrough.clone(),
        &metrics,
    );
    let reports = fleet.iter().map(|f| f.clone() as Arc<dyn Report>).collect();
    let handlers = Handlers {
        service,
        lists,
        passthrough,
        callbacks,
        reports,
    };
    let live = Live {
        get: get_limiter,
        set: set_limiter,
        passthrough: handlers.passthrough.clone(),
        lists: handlers.lists.clone(),
        cache: cached,
        tier: tiered,
    };
    Built {
        handlers,
        worker,
        fleet,
        live,
    }
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

#[cfg(test)]
mod tests;
