//! The route table: which path and method go where, body limits, and turning results into
//! HTTP responses.
//!
//! API paths answer HTTP 200 with Tencent's JSON whatever happened, as Tencent does; only
//! non-API paths and wrong methods get 4xx. `/metrics` and `/healthz` skip auth and are not
//! counted as API requests. Each error is logged once, here, where it becomes a response: caller
//! faults at debug, upstream and capacity faults at warn, gateway faults at error.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tracing::{debug, error, warn};

use crate::auth::Authenticator;
use crate::error::{codes, Error, Fault};
use crate::metrics::{Api, Metrics, Outcome};
use crate::service::ProfileService;

/// Path of `portrait_get`.
pub const PORTRAIT_GET_PATH: &str = "/v4/profile/portrait_get";
/// Path of `portrait_set`.
pub const PORTRAIT_SET_PATH: &str = "/v4/profile/portrait_set";

/// Everything a request handler needs; shared by all connections.
pub struct AppState {
    service: ProfileService,
    auth: Authenticator,
    metrics: Metrics,
    max_body_bytes: usize,
    /// Set when shutdown starts: `/healthz` answers 503 so the pod leaves load balancing.
    draining: AtomicBool,
}

impl AppState {
    /// Bundles the handlers' dependencies.
    pub fn new(
        service: ProfileService,
        auth: Authenticator,
        metrics: Metrics,
        max_body_bytes: usize,
    ) -> AppState {
        AppState {
            service,
            auth,
            metrics,
            max_body_bytes,
            draining: AtomicBool::new(false),
        }
    }

    /// Marks the gateway as draining.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Routes one request. Never fails: every outcome is a response.
pub async fn handle<B>(
    state: Arc<AppState>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let is_post = request.method() == Method::POST;
    let response = match (request.uri().path(), is_post) {
        (PORTRAIT_GET_PATH, true) => api(&state, Api::PortraitGet, request).await,
        (PORTRAIT_SET_PATH, true) => api(&state, Api::PortraitSet, request).await,
        (PORTRAIT_GET_PATH | PORTRAIT_SET_PATH, false) => not_served(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is allowed on this path",
        ),
        ("/metrics", _) if request.method() == Method::GET => metrics(&state),
        ("/healthz", _) if request.method() == Method::GET => healthz(&state),
        _ => not_served(StatusCode::NOT_FOUND, "no such API on this gateway"),
    };
    Ok(response)
}

async fn api<B>(state: &AppState, api: Api, request: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let result = answer(state, api, request).await;
    state.metrics.record_request(
        api,
        Outcome::of(result.as_ref().map(|_| ())),
        started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => {
            log_error(api, &e);
            json(StatusCode::OK, Bytes::from(crate::wire::error_body(&e)))
        }
    }
}

async fn answer<B>(state: &AppState, api: Api, request: Request<B>) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    state.auth.check(request.uri().query())?;
    let body = read_body(request, state.max_body_bytes).await?;
    match api {
        Api::PortraitGet => state.service.portrait_get(&body).await,
        Api::PortraitSet => state.service.portrait_set(body).await,
    }
}

/// Reads the whole body, refusing more than `limit` bytes (early, from Content-Length, when
/// the client sends one).
async fn read_body<B>(request: Request<B>, limit: usize) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Error::BodyTooLarge(limit))
        }
        Err(_) => Err(Error::InvalidField(Arc::from(
            "request body could not be read",
        ))),
    }
}

fn log_error(api: Api, e: &Error) {
    let (api, code) = (api.label(), e.code());
    match e.fault() {
        Fault::Caller => debug!(api, code, error = %e, "request refused"),
        Fault::Upstream | Fault::Capacity => warn!(api, code, error = %e, "request failed"),
        Fault::Internal => error!(api, code, error = %e, "request failed"),
    }
}

fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let (pairs, answer_bytes) = state.service.cache_sizes();
    state.metrics.cache_entries.set(gauge(pairs));
    state.metrics.answer_cache_bytes.set(gauge(answer_bytes));
    let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn healthz(state: &AppState) -> Response<Full<Bytes>> {
    let (status, text) = if state.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    };
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
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
