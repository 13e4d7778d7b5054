//! The route table: which path and method go where, body limits, and turning results into
//! HTTP responses.
//!
//! API paths answer HTTP 200 with Tencent's JSON whatever happened, as Tencent does (a
//! passed-through API returns the upstream's own status); only non-API paths and wrong methods
//! get 4xx. Which APIs exist is the API table's business (`apis.rs`): its rows are served by
//! the service, any other valid `/v4/<service>/<command>` is passed through (`passthrough.rs`).
//! `callback.path` takes Tencent's callbacks (`callback.rs`), with no caller auth (they are
//! signed by the callback token instead); on a [`Listener::Callbacks`] listener it is the only
//! path besides the probes. Bodies are read in `routes/body.rs`, the probes answered in
//! `routes/probes.rs`. `/metrics`, `/healthz` (liveness) and `/readyz`
//! (readiness: 503 once draining) skip auth and are not counted as API requests. Each error is
//! logged once, here, where it becomes a response: caller faults at debug, upstream and capacity
//! faults at warn, gateway faults at error.
//!
//! Every API request has a request id (`request_id.rs`). The id is returned in the response's
//! `X-Request-Id`, logged with the request's failure, carried by its `request` span (a debug
//! span: recorded when `RUST_LOG` enables debug) and handed to the batch worker (see
//! [`request_id::CURRENT`](crate::request_id::CURRENT)), whose flush span lists the ids it serves.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tracing::{debug, error, warn, Instrument};

use crate::apis::{self, Api, Handling, OTHER_LABEL};
use crate::auth::Authenticator;
use crate::callback::Callbacks;
use crate::config::Config;
use crate::error::{codes, Error, Fault};
use crate::lists::{ListApis, ListPath};
use crate::metrics::{Metrics, Outcome};
use crate::passthrough::PassThrough;
use crate::request_id::{self, RequestId};
use crate::service::ProfileService;

mod body;
mod probes;

use body::read_body;
use probes::{healthz, metrics, readyz};
/// Everything a request handler needs; shared by all connections.
pub(crate) struct AppState {
    service: ProfileService,
    lists: ListApis,
    passthrough: PassThrough,
    callbacks: Callbacks,
    reports: Vec<std::sync::Arc<dyn crate::readiness::Report>>,
    /// `callback.path`.
    callback_path: String,
    /// Whether callbacks are served on the API listener (`callback.listen` unset).
    callbacks_on_api_listener: bool,
    auth: Authenticator,
    metrics: Metrics,
    max_body_bytes: usize,
    /// A body not received whole within this is refused (slow bodies hold no slot for long).
    body_read_timeout: Duration,
    /// Set when shutdown starts: `/healthz` answers 503 so the pod leaves load balancing.
    draining: AtomicBool,
}

impl AppState {
    /// Bundles the handlers' dependencies.
    pub(crate) fn new(
        handlers: Handlers,
        auth: Authenticator,
        metrics: Metrics,
        config: &Config,
    ) -> AppState {
        AppState {
            service: handlers.service,
            lists: handlers.lists,
            passthrough: handlers.passthrough,
            callbacks: handlers.callbacks,
            reports: handlers.reports,
            callback_path: config.callback.path.clone(),
            callbacks_on_api_listener: config.callback.listen.is_none(),
            auth,
            metrics,
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            draining: AtomicBool::new(false),
        }
    }

    /// Marks the gateway as draining.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// What answers requests: the profile service, the pass-through router, the callback receiver.
pub(crate) struct Handlers {
    /// `portrait_get` and `portrait_set`.
    pub service: ProfileService,
    /// The coalesced list reads.
    pub lists: ListApis,
    /// Every other API.
    pub passthrough: PassThrough,
    /// Tencent's callbacks.
    pub callbacks: Callbacks,
    /// Components with a line in `/readyz` (the fleet, when there is one).
    pub reports: Vec<std::sync::Arc<dyn crate::readiness::Report>>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// `server.listen`: the APIs, the probes, `/metrics` (and callbacks unless they have their own).
    Api,
    /// `callback.listen`: callbacks and the probes only.
    Callbacks,
}

/// Where an API request goes.
enum Target {
    /// A row of the API table.
    Listed(Handling, Api),
    /// A coalesced list read.
    List(ListPath),
    /// A path that may be passed through.
    Forward,
    /// `POST /admin/purge`: drop cached accounts (an app admin's call; nothing goes upstream).
    Purge,
}

/// The purge endpoint's path and its `api` label.
const PURGE_PATH: &str = "/admin/purge";
const PURGE_LABEL: &str = "admin_purge";

/// Routes one request. Never fails: every outcome is a response.
pub(crate) async fn handle<B>(
    state: Arc<AppState>,
    listener: Listener,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // Split at once: every level below borrows the head, so a request's future holds it once.
    let (parts, body) = request.into_parts();
    let is_post = parts.method == Method::POST;
    let is_get = parts.method == Method::GET;
    let path = parts.uri.path();
    let callbacks_here = match listener {
        Listener::Api => state.callbacks_on_api_listener,
        Listener::Callbacks => true,
    };
    let response = if callbacks_here && path == state.callback_path {
        match is_post {
            true => Box::pin(callback(&state, &parts, body)).await,
            false => not_served(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is allowed on this path",
            ),
        }
    } else if is_get && (path == "/healthz" || path == "/readyz") {
        match path {
            "/healthz" => healthz(&state),
            _ => readyz(&state),
        }
    } else if listener == Listener::Callbacks {
        not_served(
            StatusCode::NOT_FOUND,
            "this listener takes Tencent callbacks only",
        )
    } else if is_get && path == "/metrics" {
        metrics(&state)
    } else {
        match target(&state, path) {
            Some(_) if !is_post => not_served(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is allowed on this path",
            ),
            Some(target) => api(&state, target, &parts, body).await,
            None => not_served(StatusCode::NOT_FOUND, "no such API on this gateway"),
        }
    };
    Ok(response)
}

fn target(state: &AppState, path: &str) -> Option<Target> {
    if path == PURGE_PATH {
        return Some(Target::Purge);
    }
    if let Some(list) = state.lists.route(path) {
        return Some(Target::List(list.clone()));
    }
    match apis::listed(path) {
        Some(spec) => Some(Target::Listed(spec.handling, Api::of(spec))),
        None if state.passthrough.enabled() && apis::forwarded_label(path).is_some() => {
            Some(Target::Forward)
        }
        None => None,
    }
}

async fn api<B>(state: &AppState, target: Target, parts: &Parts, body: B) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let id = RequestId::of(&parts.headers);
    // A debug span: at the default level it costs nothing (formatting its fields was ~4 % of a
    // hit's CPU), and the request's own failure is logged with its id below either way. It
    // records its fields now: the label (a table row's) or path (passed through) is borrowed.
    let span = match &target {
        Target::Listed(_, api) => {
            tracing::debug_span!("request", request_id = %id, api = api.label())
        }
        Target::Forward => {
            tracing::debug_span!("request", request_id = %id, api = parts.uri.path())
        }
        Target::List(list) => {
            tracing::debug_span!("request", request_id = %id, api = list.api().label())
        }
        Target::Purge => tracing::debug_span!("request", request_id = %id, api = PURGE_LABEL),
    };
    crate::traces::continue_trace(&span, &parts.headers);
    let (api, result) = request_id::CURRENT
        .scope(id.clone(), answer(state, target, parts, body))
        .instrument(span.clone())
        .await;
    state.metrics.record_request(
        &api,
        Outcome::of(result.as_ref().map(|_| ())),
        started.elapsed().as_secs_f64(),
    );
    let mut response = match result {
        Ok((status, body)) => json(status, body),
        Err(e) => {
            match span.is_disabled() {
                true => log_error(&api, &e, Some(id.as_str())),
                false => span.in_scope(|| log_error(&api, &e, None)),
            }
            state.metrics.errors.record(&api, &e);
            json(StatusCode::OK, Bytes::from(crate::wire::error_body(&e)))
        }
    };
    response
        .headers_mut()
        .insert(request_id::HEADER, id.header_value());
    response
}

/// Authenticates, reads the body and answers: the API it was counted as, and the answer's
/// status and body.
async fn answer<B>(
    state: &AppState,
    target: Target,
    parts: &Parts,
    body: B,
) -> (Api, Result<(StatusCode, Bytes), Error>)
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match target {
        Target::Listed(handling, api) => {
            let result = match authenticated_body(state, parts, body).await {
                Ok(body) => match handling {
                    Handling::Cached => state.service.portrait_get(&body).await,
                    // Boxed, as are the other rarer paths: every request's future is as large
                    // as its largest path, and hyper moves it on each request.
                    Handling::Invalidating => Box::pin(state.service.portrait_set(body)).await,
                },
                Err(e) => Err(e),
            };
            (api, result.map(|body| (StatusCode::OK, body)))
        }
        Target::Forward => Box::pin(forward(state, parts, body)).await,
        Target::List(list) => {
            let result = match authenticated_body(state, parts, body).await {
                Ok(body) => Box::pin(list.answer(&body)).await,
                Err(e) => Err(e),
            };
            (
                list.api().clone(),
                result.map(|body| (StatusCode::OK, body)),
            )
        }
        Target::Purge => {
            let api = Api::forwarded(PURGE_PATH, PURGE_LABEL);
            let result = match authenticated_body(state, parts, body).await {
                Ok(body) => Box::pin(purge(state, &body)).await,
                Err(e) => Err(e),
            };
            (api, result.map(|body| (StatusCode::OK, body)))
        }
    }
}

/// `POST /admin/purge`: the accounts' profiles, then their list reads' entries, dropped.
async fn purge(state: &AppState, body: &[u8]) -> Result<Bytes, Error> {
    let accounts = state.service.purge(body).await?;
    let accounts: Vec<&str> = accounts.iter().map(|a| a.as_str()).collect();
    state.lists.purge_accounts(&accounts).await;
    Ok(crate::service::purged_answer(accounts.len()))
}

/// A passed-through API, counted under its own label only once it has one: unauthenticated
/// requests must not create limiters or metric series.
async fn forward<B>(
    state: &AppState,
    parts: &Parts,
    body: B,
) -> (Api, Result<(StatusCode, Bytes), Error>)
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = parts.uri.path();
    let known = state.passthrough.known(path);
    let api = known.as_ref().map_or_else(
        || Api::forwarded(path, OTHER_LABEL),
        |route| route.api().clone(),
    );
    let body = match authenticated_body(state, parts, body).await {
        Ok(body) => body,
        Err(e) => return (api, Err(e)),
    };
    let Some(route) = known.or_else(|| state.passthrough.route(path)) else {
        return (
            api,
            Err(Error::Internal(Arc::from(
                "pass-through is off for this path",
            ))),
        );
    };
    let result = state.passthrough.forward(&route, body).await.map(|answer| {
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
        (status, answer.body)
    });
    (route.api().clone(), result)
}

/// The caller's credentials checked, then the body read within its size and time limits.
async fn authenticated_body<B>(state: &AppState, parts: &Parts, body: B) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    state.auth.check(parts.uri.query())?;
    read_body_in_time(state, parts, body).await
}

async fn read_body_in_time<B>(state: &AppState, parts: &Parts, body: B) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut read = std::pin::pin!(read_body(&parts.headers, body, state.max_body_bytes));
    // Most bodies arrive with their head: they are read at once, with no timer armed.
    if let Some(read) = futures_util::future::poll_immediate(read.as_mut()).await {
        return read;
    }
    // Boxed: the timer is large, and every request's future would carry it (hyper moves that
    // future on each request).
    Box::pin(tokio::time::timeout(state.body_read_timeout, read))
        .await
        .map_err(|_| {
            Error::InvalidField(Arc::from(
                "request body was not received within server.body_read_timeout_ms",
            ))
        })?
}

/// A Tencent callback: no caller auth (the receiver checks Tencent's own signature).
async fn callback<B>(state: &AppState, parts: &Parts, body: B) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let query = parts.uri.query();
    let answer = match read_body_in_time(state, parts, body).await {
        Ok(body) => state.callbacks.receive(query, body).await,
        Err(e) => {
            debug!(error = %e, "callback body unreadable");
            state.callbacks.receive(query, Bytes::new()).await
        }
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    json(status, answer.body)
}

/// Logs a request's failure; `request_id` is given when the request span (which carries it) is
/// not recorded at this level.
fn log_error(api: &Api, e: &Error, request_id: Option<&str>) {
    let (api, code) = (api.label(), e.code());
    let request_id = request_id.map(tracing::field::display);
    match e.fault() {
        Fault::Caller => debug!(request_id, api, code, error = %e, "request refused"),
        Fault::Upstream | Fault::Capacity => {
            warn!(request_id, api, code, error = %e, "request failed")
        }
        Fault::Internal => error!(request_id, api, code, error = %e, "request failed"),
    }
}

/// A 4xx with a Tencent-style body (60009: bad resource or URL path).
fn not_served(status: StatusCode, info: &str) -> Response<Full<Bytes>> {
    json(
        status,
        Bytes::from(crate::wire::encode_error(codes::BAD_PATH, info, "")),
    )
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
