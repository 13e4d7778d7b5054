//! One call to the sim: routing, reading the body, the call log, fault and latency injection,
//! and the HTTP answer (JSON, or a fault's HTML page, garbage or dropped connection).
//!
//! The answers themselves come from `api.rs`; nothing here looks inside a body except to log it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::api::{self, Call, Outcome};
use super::json::{self, code};
use super::{fire, Api, Fault, SimCall, SimState, OVERSIZED_PADDING_BYTES};

/// Largest request body read; larger ones get 40001.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Body of a [`Fault::Garbage`] answer: HTTP 200, but not JSON.
const GARBAGE_BODY: &[u8] = b"<html><body>upstream garbage \x7f{\"ActionStatus\":</body></html>";

pub(super) type SimResponse = Response<Full<Bytes>>;

/// A service error: hyper closes the connection without answering ([`Fault::DropConnection`]).
#[derive(Debug)]
pub(super) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sim dropped the connection")
    }
}

impl std::error::Error for DropConnection {}

/// Routes, reads the body, logs the call, then answers it, or lets a fault answer instead.
pub(super) async fn handle(
    state: Arc<SimState>,
    request: Request<Incoming>,
) -> Result<SimResponse, DropConnection> {
    let Some(api) = Api::from_path(request.uri().path()) else {
        let body = json::error_body(code::BAD_PATH, "Err_Bad_Resource_Path");
        return Ok(json_response(StatusCode::NOT_FOUND, body));
    };
    let is_post = request.method() == Method::POST;
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Some(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => None,
        Err(_) => return Err(DropConnection),
    };
    let at = Instant::now();
    // The call without its body (logged apart from it), and with it (answered).
    let head = Call {
        api,
        path: &path,
        query: &query,
        body: b"",
        at,
    };
    let pass = match pass_faults(&state, &head, body.as_ref()).await {
        Ok(pass) => pass,
        Err(faulted) => return faulted,
    };
    let outcome = match &body {
        _ if !is_post => Outcome::fail(code::BAD_PATH, "Err_Http_Method_Not_Allowed"),
        None => Outcome::fail(code::DECODE_FAIL, "Err_Request_Body_Too_Large"),
        Some(bytes) => api::answer_call(
            &state,
            &Call {
                body: bytes,
                ..head
            },
        ),
    };
    if !pass.logged {
        log_call(&state, &head, body.as_ref(), outcome.code);
    }
    if let (Api::PortraitSet, 0, Some(bytes)) = (api, outcome.code, &body) {
        fire::after_rest_set(&state, &query, bytes);
    }
    sleep_latency(&state).await;
    Ok(respond(&state, is_post, outcome, pass.oversized))
}

/// The answer to a call that got past the faults: 200 (405 if not a POST), padded if
/// `oversized`.
fn respond(state: &SimState, is_post: bool, outcome: Outcome, oversized: bool) -> SimResponse {
    let status = if is_post {
        StatusCode::OK
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    let mut body = outcome.body;
    if oversized {
        state.count_oversized();
        body.resize(body.len() + OVERSIZED_PADDING_BYTES, b' ');
    }
    json_response(status, body)
}

/// A call the faults let through to be answered normally.
struct Pass {
    /// It took the [`Fault::Oversized`]: pad its answer.
    oversized: bool,
    /// It was already logged (held by [`Fault::Hang`] first, as -1).
    logged: bool,
}

/// Applies the current fault to `call`: `Err` with the fault's answer (the call logged), or
/// the [`Pass`] to answer it normally, after waiting out a [`Fault::Hang`].
async fn pass_faults(
    state: &SimState,
    call: &Call<'_>,
    body: Option<&Bytes>,
) -> Result<Pass, Result<SimResponse, DropConnection>> {
    let mut logged = false;
    loop {
        let fault = match *state.fault.borrow() {
            Fault::EveryOther(status) => {
                let n = state
                    .every_other
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_multiple_of(2) {
                    Fault::Status(status)
                } else {
                    Fault::None
                }
            }
            fault => fault,
        };
        if matches!(fault, Fault::None | Fault::Oversized) {
            // Only one call takes an Oversized fault: it clears it for the rest.
            let oversized = state.fault.send_if_modified(|f| {
                let mine = *f == Fault::Oversized;
                if mine {
                    *f = Fault::None;
                }
                mine
            });
            return Ok(Pass { oversized, logged });
        }
        if !logged {
            let code = if fault == Fault::OverLimit {
                code::FREQUENCY_LIMIT
            } else {
                -1
            };
            log_call(state, call, body, code);
            logged = true;
        }
        if fault != Fault::Hang {
            return Err(answer_fault(state, fault).await);
        }
        // Held until the fault changes; shutdown or a refusal drops the whole connection.
        let mut changes = state.fault.subscribe();
        let _ = changes.wait_for(|f| *f != Fault::Hang).await.map(drop);
    }
}

/// Logs `call` (its body is `body`: `None` if it was too large to read).
fn log_call(state: &SimState, call: &Call<'_>, body: Option<&Bytes>, error_code: i64) {
    let (accounts, tags) = body
        .map(|b| api::call_subject(call.api, b))
        .unwrap_or_default();
    state.log(SimCall {
        at: call.at,
        api: call.api,
        path: call.path.to_owned(),
        query: call.query.to_owned(),
        body: body.cloned().unwrap_or_default(),
        accounts,
        tags,
        error_code,
    });
}

async fn answer_fault(state: &SimState, fault: Fault) -> Result<SimResponse, DropConnection> {
    match fault {
        Fault::DropConnection => Err(DropConnection),
        Fault::Status(code) => {
            sleep_latency(state).await;
            Ok(status_response(code))
        }
        Fault::Garbage => {
            sleep_latency(state).await;
            Ok(json_response(StatusCode::OK, GARBAGE_BODY.to_vec()))
        }
        Fault::OverLimit => {
            sleep_latency(state).await;
            let body = json::error_body(code::FREQUENCY_LIMIT, json::info::FREQUENCY_LIMIT);
            Ok(json_response(StatusCode::OK, body))
        }
        // Refusing closes this connection via the epoch; answer nothing meanwhile.
        Fault::RefuseConnections
        | Fault::None
        | Fault::Hang
        | Fault::Oversized
        | Fault::EveryOther(_) => Err(DropConnection),
    }
}

async fn sleep_latency(state: &SimState) {
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> SimResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A small HTML error page, like the one a load balancer in front of Tencent would send.
fn status_response(code: u16) -> SimResponse {
    let status = match StatusCode::from_u16(code) {
        // A 1xx is not a final answer; hyper would not end the exchange with it.
        Ok(status) if !status.is_informational() => status,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let html = format!(
        "<html><head><title>{line}</title></head><body><h1>{line}</h1><hr>sim</body></html>\n"
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
