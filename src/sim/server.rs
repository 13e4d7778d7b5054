//! The sim's I/O: the listener (dropped and re-bound around [`Fault::RefuseConnections`]), one
//! hyper HTTP/1.1 task per connection, routing, and fault and latency injection.
//!
//! The answers themselves come from `api.rs`; nothing here looks inside a body except to log it.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::api::{self, Call, Outcome};
use super::json::{self, code};
use super::{fire, Api, Fault, SimCall, SimState, OVERSIZED_PADDING_BYTES};

/// Largest request body read; larger ones get 40001.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Pause between attempts to re-bind the port after refusing connections.
const REBIND_RETRY: Duration = Duration::from_millis(20);

/// Listen backlog of the sim's socket.
const LISTEN_BACKLOG: u32 = 1024;

/// Body of a [`Fault::Garbage`] answer: HTTP 200, but not JSON.
const GARBAGE_BODY: &[u8] = b"<html><body>upstream garbage \x7f{\"ActionStatus\":</body></html>";

type SimResponse = Response<Full<Bytes>>;

/// A service error: hyper closes the connection without answering ([`Fault::DropConnection`]).
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sim dropped the connection")
    }
}

impl std::error::Error for DropConnection {}

// === listener ===

/// Binds a listening socket with SO_REUSEADDR, so the port can be re-bound while old
/// connections sit in TIME_WAIT.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds without a runtime (std sets SO_REUSEADDR on Unix); the accept loop adopts it.
pub(super) fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts connections until shutdown, owning every connection task; then awaits them all and
/// re-raises the first panic among them.
pub(super) async fn accept_loop(state: Arc<SimState>, first: TcpListener) {
    let mut connections = JoinSet::new();
    let mut panic: Option<Box<dyn Any + Send>> = None;
    let mut epoch = state.epoch.subscribe();
    let mut listener = Some(first);
    loop {
        while let Some(done) = connections.try_join_next() {
            keep_first_panic(done, &mut panic);
        }
        let current = match listener.take() {
            Some(l) => l,
            None => match rebind(&state, &mut epoch).await {
                Some(l) => l,
                None => break,
            },
        };
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = epoch.changed() => None,
            accepted = current.accept() => Some(accepted),
        };
        match accepted {
            // RefuseConnections: dropping the listener closes the port.
            None => drop(current),
            Some(Ok((stream, _))) => {
                // A clone keeps our "seen" epoch, so a refusal we have not acted on yet still
                // reaches the new connection.
                connections.spawn(serve_connection(Arc::clone(&state), stream, epoch.clone()));
                listener = Some(current);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "sim accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                listener = Some(current);
            }
        }
    }
    while let Some(done) = connections.join_next().await {
        keep_first_panic(done, &mut panic);
    }
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
}

fn keep_first_panic(
    done: Result<(), tokio::task::JoinError>,
    panic: &mut Option<Box<dyn Any + Send>>,
) {
    if let Err(e) = done {
        if e.is_panic() && panic.is_none() {
            *panic = Some(e.into_panic());
        }
    }
}

/// Waits until connections are no longer refused, then binds the same address again (adopting
/// the listener `set_fault` bound, if any). `None` on shutdown.
async fn rebind(state: &SimState, epoch: &mut watch::Receiver<u64>) -> Option<TcpListener> {
    let mut fault = state.fault.subscribe();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return None,
            open = fault.wait_for(|f| *f != Fault::RefuseConnections) => {
                // Err only if the sender is gone, which means the sim is gone.
                if open.is_err() {
                    return None;
                }
            }
        }
        // Refusals up to here are handled by this re-bind.
        epoch.borrow_and_update();
        let pending = state.pending_listener.lock().take();
        let bound = match pending {
            Some(std_listener) => TcpListener::from_std(std_listener),
            None => bind(state.addr),
        };
        match bound {
            Ok(listener) => return Some(listener),
            Err(e) => {
                tracing::debug!(error = %e, addr = %state.addr, "sim re-bind failed; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(REBIND_RETRY) => {}
                }
            }
        }
    }
}

/// Serves one keep-alive connection until the client closes it, a refusal starts, or shutdown.
async fn serve_connection(
    state: Arc<SimState>,
    stream: TcpStream,
    mut epoch: watch::Receiver<u64>,
) {
    let _ = stream.set_nodelay(true);
    let service_state = Arc::clone(&state);
    let service = service_fn(move |request| handle(Arc::clone(&service_state), request));
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        done = connection => {
            if let Err(e) = done {
                tracing::trace!(error = %e, "sim connection ended");
            }
        }
        _ = epoch.changed() => {}
        _ = state.shutdown.cancelled() => {}
    }
}

// === requests ===

/// Routes, reads the body, logs the call, then answers it, or lets a fault answer instead.
async fn handle(
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
