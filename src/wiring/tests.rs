//! The wired gateway's probes: what `/readyz` reports about the components it was built from.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::*;
use crate::routes::handle;

fn state() -> Arc<AppState> {
    let config = crate::Config::default();
    let metrics = Metrics::new();
    let upstream = Arc::new(UpstreamClient::new(&config.upstream));
    let handlers = build_handlers(&config, upstream, metrics.clone()).handlers;
    let secret = config.upstream.secret_key.clone();
    let auth = Authenticator::new(&config.auth, config.upstream.sdkappid, secret);
    Arc::new(AppState::new(handlers, auth, metrics, &config))
}

async fn get(state: &Arc<AppState>, path: &str) -> (StatusCode, Bytes) {
    let request = Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = handle(state.clone(), Listener::Api, request)
        .await
        .expect("infallible");
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
