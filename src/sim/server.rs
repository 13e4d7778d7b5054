//! The sim's I/O: the listener (dropped and re-bound around [`Fault::RefuseConnections`]) and
//! one hyper HTTP/1.1 task per connection; each call on it is `request.rs`'s (routing, fault
//! and latency injection).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::request::handle;
use super::{Fault, SimState};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Pause between attempts to re-bind the port after refusing connections.
const REBIND_RETRY: Duration = Duration::from_millis(20);

/// Listen backlog of the sim's socket.
const LISTEN_BACKLOG: u32 = 1024;

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
