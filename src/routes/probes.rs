//! The unauthenticated endpoints: `/metrics` (Prometheus text), `/healthz` (liveness: 503 once
//! draining) and `/readyz` (readiness, with the breakers' states and each component's report,
//! such as the fleet's membership, in its body).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use super::AppState;

pub(super) fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    state.service.show_cache_sizes();
    let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

pub(super) fn healthz(state: &AppState) -> Response<Full<Bytes>> {
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
pub(super) fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    let passed_through = state.passthrough.breakers();
    let lists = state.lists.breakers();
    let every = (state.service.breakers().into_iter())
        .chain(&lists)
        .chain(&passed_through);
    let breakers: Vec<String> = every
        .map(|b| format!("{}={}", b.api(), b.state_name()))
        .collect();
    let (status, text) = if state.draining.load(Ordering::Acquire) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down, send no new requests\n".to_owned(),
        )
    } else {
        let mut text = format!("ready; breakers {}\n", breakers.join(" "));
        for report in &state.reports {
            text.push_str(&report.readiness());
            text.push('\n');
        }
        (StatusCode::OK, text)
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}
