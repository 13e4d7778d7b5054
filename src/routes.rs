//! The route table: which path and method go where, body limits, and turning results into
//! HTTP responses.
//!
//! API paths answer HTTP 200 with Tencent's JSON whatever happened, as Tencent does; only
//! non-API paths and wrong methods get 4xx. `/metrics`, `/healthz` (liveness) and `/readyz`
//! (readiness: 503 once draining) skip auth and are not counted as API requests. Each error is
//! logged once, here, where it becomes a response: caller faults at debug, upstream and capacity
//! faults at warn, gateway faults at error.
//!
//! Every API request runs in a `request` span carrying its request id: the caller's
//! `X-Request-Id` when it is sane (1 to 128 visible ASCII characters), else a new one. The id is
//! returned in the response's `X-Request-Id` and handed to the batch worker (see
//! [`batcher::REQUEST_ID`](crate::batcher::REQUEST_ID)), whose flush span lists the ids it serves.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tracing::{debug, error, warn, Instrument};

use crate::auth::Authenticator;
use crate::batcher::REQUEST_ID;
use crate::error::{codes, Error, Fault};
use crate::metrics::{Api, Metrics, Outcome};
use crate::service::ProfileService;

/// Path of `portrait_get`.
pub const PORTRAIT_GET_PATH: &str = "/v4/profile/portrait_get";
/// Path of `portrait_set`.
pub const PORTRAIT_SET_PATH: &str = "/v4/profile/portrait_set";
/// The request id header, read from callers and returned to them.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest caller-chosen request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Everything a request handler needs; shared by all connections.
pub struct AppState {
    service: ProfileService,
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
    pub fn new(
        service: ProfileService,
        auth: Authenticator,
        metrics: Metrics,
        max_body_bytes: usize,
        body_read_timeout: Duration,
    ) -> AppState {
        AppState {
            service,
            auth,
            metrics,
            max_body_bytes,
            body_read_timeout,
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
        ("/readyz", _) if request.method() == Method::GET => readyz(&state),
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
    let id = request_id(&request);
    let span = tracing::info_span!("request", request_id = %id, api = api.label());
    let result = REQUEST_ID
        .scope(id.clone(), answer(state, api, request))
        .instrument(span.clone())
        .await;
    state.metrics.record_request(
        api,
        Outcome::of(result.as_ref().map(|_| ())),
        started.elapsed().as_secs_f64(),
    );
    let mut response = match result {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => {
            span.in_scope(|| log_error(api, &e));
            state.metrics.errors.record(api, &e);
            json(StatusCode::OK, Bytes::from(crate::wire::error_body(&e)))
        }
    };
    if let Ok(value) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The caller's `X-Request-Id` when sane (1 to 128 visible ASCII characters), else a new
/// random one (16 hex digits).
fn request_id<B>(request: &Request<B>) -> Arc<str> {
    let given = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN)
        .filter(|v| v.iter().all(|b| b.is_ascii_graphic()))
        .and_then(|v| std::str::from_utf8(v).ok());
    match given {
        Some(id) => Arc::from(id),
        None => Arc::from(format!("{:016x}", rand::random::<u64>())),
    }
}

async fn answer<B>(state: &AppState, api: Api, request: Request<B>) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    state.auth.check(request.uri().query())?;
    let body = tokio::time::timeout(
        state.body_read_timeout,
        read_body(request, state.max_body_bytes),
    )
    .await
    .map_err(|_| {
        Error::InvalidField(Arc::from(
            "request body was not received within server.body_read_timeout_ms",
        ))
    })??;
    match api {
        Api::PortraitGet => state.service.portrait_get(&body).await,
        Api::PortraitSet => state.service.portrait_set(body).await,
    }
}

/// Reads the whole body, refusing more than `limit` bytes. A refused body is still read (and
/// discarded) up to [`DRAIN_LIMIT_BYTES`]: closing a connection with unread bytes in it makes
/// the kernel reset it, and the caller would lose the answer that explains the refusal.
async fn read_body<B>(request: Request<B>, limit: usize) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT_BYTES as u64) {
        return Err(Error::BodyTooLarge(limit));
    }
    let unreadable = || Error::InvalidField(Arc::from("request body could not be read"));
    let body = request.into_body();
    let mut body = std::pin::pin!(body);
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| unreadable())?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT_BYTES {
            break;
        }
        if seen <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(Error::BodyTooLarge(limit));
    }
    Ok(Bytes::from(kept))
}

/// How much of a refused body is read and discarded before the connection is simply closed.
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;

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

/// Readiness: 200 while serving, 503 with the reason once draining. The breakers' states are
/// in the body, never in the status: a sidecar's readiness gates its whole pod, and a Tencent
/// outage must not take every pod of the app out of service at once.
fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    let breakers: Vec<String> = state
        .service
        .breakers()
        .iter()
        .map(|b| format!("{}={}", b.api(), b.state_name()))
        .collect();
    let (status, text) = if state.draining.load(Ordering::Acquire) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down, send no new requests\n".to_owned(),
        )
    } else {
        (
            StatusCode::OK,
            format!("ready; breakers {}\n", breakers.join(" ")),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamClient;

    fn state() -> Arc<AppState> {
        let config = crate::Config::default();
        let metrics = Metrics::new();
        let upstream = Arc::new(UpstreamClient::new(&config.upstream));
        let (service, _worker) = crate::build_service(&config, upstream, metrics.clone());
        let secret = config.upstream.secret_key.clone();
        let auth = Authenticator::new(&config.auth, config.upstream.sdkappid, secret);
        Arc::new(AppState::new(
            service,
            auth,
            metrics,
            1024,
            Duration::from_secs(10),
        ))
    }

    async fn get(state: &Arc<AppState>, path: &str) -> (StatusCode, Bytes) {
        let request = Request::get(path)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = handle(state.clone(), request).await.expect("infallible");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        (status, body.to_bytes())
    }

    #[tokio::test]
    async fn readyz_is_ready_while_serving_and_503_with_a_reason_once_draining() {
        let state = state();
        assert_eq!(
            get(&state, "/readyz").await,
            (
                StatusCode::OK,
                Bytes::from_static(b"ready; breakers portrait_get=closed portrait_set=closed\n")
            )
        );
        state.start_draining();
        let (status, body) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let reason = String::from_utf8_lossy(&body);
        assert!(reason.starts_with("draining: ") && reason.lines().count() == 1);
    }
}
