//! The accept loop: TCP connections in, hyper (HTTP/1.1 and HTTP/2) serving `routes::handle`.
//!
//! Every connection is bounded (see `server/conn.rs` for the rules): its first request must
//! start within `server.header_read_timeout_ms`, an HTTP/1 request head within the same bound
//! once begun, and it is closed after `server.idle_timeout_ms` with no request in flight; HTTP/2
//! connections are also pinged and capped in streams. At `server.max_connections` the
//! longest-idle connections are closed to make room, so silent or idle ones can never lock good
//! callers out. Disables Nagle. Drains on shutdown: mark draining (so `/healthz` says 503), stop
//! accepting, ask every connection to finish gracefully, and after `server.shutdown_grace_ms`
//! close whatever is left.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::routes::{self, AppState, Listener};

mod conn;
mod gated;

use conn::{ConnLimits, ConnState, Registry, Watched};
use gated::Gated;

/// How long to back off when `accept` fails (for example out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Everything a connection task needs besides its socket.
#[derive(Clone)]
struct Shared {
    state: Arc<AppState>,
    /// What this listener serves.
    role: Listener,
    builder: Arc<auto::Builder<TokioExecutor>>,
    registry: Arc<Registry>,
    limits: ConnLimits,
    /// Cancelled when the drain starts: connections finish gracefully.
    drain: CancellationToken,
    /// Cancelled when the grace period is over: connections are dropped.
    stop: CancellationToken,
}

/// Serves `listener` until `shutdown` resolves; then says not ready while still accepting for
/// `config.drain_announce`, stops accepting and drains for at most `config.shutdown_grace`.
/// Returns when the drain started, which the caller's own deadline (flushing the batch worker)
/// counts from.
pub(crate) async fn serve(
    listener: TcpListener,
    role: Listener,
    state: Arc<AppState>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Instant {
    let shared = Shared {
        state: state.clone(),
        role,
        builder: Arc::new(builder(config)),
        registry: Arc::new(Registry::new(config.max_connections)),
        limits: ConnLimits {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
        },
        drain: CancellationToken::new(),
        stop: CancellationToken::new(),
    };
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => admit(&shared, &tracker, stream, peer),
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    // Readiness turns 503 first, while the listener still accepts: load balancers and
    // kube-proxy need a probe period or two to stop sending here.
    state.start_draining();
    if !config.drain_announce.is_zero() {
        info!(
            announce_ms = config.drain_announce.as_millis() as u64,
            "draining announced; still accepting"
        );
        let stop_accepting = tokio::time::sleep(config.drain_announce);
        tokio::pin!(stop_accepting);
        loop {
            tokio::select! {
                biased;
                () = &mut stop_accepting => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => admit(&shared, &tracker, stream, peer),
                    Err(_) => tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await,
                },
            }
        }
    }
    let drain_started = Instant::now();
    drop(listener);
    let grace = config.shutdown_grace;
    info!(grace_ms = grace.as_millis() as u64, "draining connections");
    shared.drain.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("grace period over; closing remaining connections");
        shared.stop.cancel();
        tracker.wait().await;
    }
    drain_started
}

/// hyper's connection builder with the HTTP/2 bounds. HTTP/1 head timing is enforced by
/// `conn.rs` (hyper's own header timer would also cut idle keep-alive connections).
fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_concurrent_streams(config.http2_max_concurrent_streams);
    builder
}

/// Registers and spawns a connection, or refuses it when every slot has a request in flight.
fn admit(shared: &Shared, tracker: &TaskTracker, stream: TcpStream, peer: std::net::SocketAddr) {
    let Some(conn) = shared.registry.admit() else {
        debug!(%peer, "connection refused: every connection is busy");
        return;
    };
    let _ = stream.set_nodelay(true);
    let shared = shared.clone();
    tracker.spawn(async move {
        serve_connection(&shared, stream, &conn, peer).await;
        shared.registry.remove(&conn);
    });
}

/// What one of a connection's watchers saw.
enum Watch {
    /// The drain's grace is over: close now.
    Stop,
    /// Shutdown began: finish the request in flight, then close.
    Drain,
    /// The registry may have shed this connection.
    Changed,
    /// Time to check the connection's deadline.
    Check,
}

/// Runs one connection until it ends, is closed by its deadline or shed, or the drain ends.
async fn serve_connection(
    shared: &Shared,
    stream: TcpStream,
    conn: &Arc<ConnState>,
    peer: std::net::SocketAddr,
) {
    let (state, role) = (shared.state.clone(), shared.role);
    let counted = conn.clone();
    let service = service_fn(move |request| {
        let guard = counted.request_started();
        let state = state.clone();
        async move {
            let response = routes::handle(state, role, request).await;
            drop(guard);
            response
        }
    });
    let io = TokioIo::new(Watched::new(stream, conn.clone()));
    let connection = shared.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    // Made once, polled across turns: a request's wake-up of the connection re-creates none.
    let stop = shared.stop.cancelled();
    let drain = shared.drain.cancelled();
    let check = tokio::time::sleep_until(conn.next_check(&shared.limits, Instant::now()).into());
    tokio::pin!(stop, drain, check);
    loop {
        // Behind a gate: polled when one of them fired, not on each request's wake-up.
        let watch = Gated::new(async {
            tokio::select! {
                biased;
                () = &mut stop => Watch::Stop,
                () = &mut drain, if !draining => Watch::Drain,
                () = conn.changed() => Watch::Changed,
                () = &mut check => Watch::Check,
            }
        });
        let event = tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            event = watch => event,
        };
        match event {
            Watch::Stop => return,
            Watch::Drain => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            Watch::Changed => {
                if conn.is_shed() {
                    if conn.is_idle() {
                        debug!(%peer, "idle connection closed to make room");
                        return;
                    }
                    shared.registry.unshed(conn);
                }
            }
            Watch::Check => {
                let now = Instant::now();
                if conn.expired(&shared.limits, now) {
                    debug!(%peer, "connection closed: no request within its deadline");
                    return;
                }
                check
                    .as_mut()
                    .reset(conn.next_check(&shared.limits, now).into());
            }
        }
    }
}
