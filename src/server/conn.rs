//! Per-connection bookkeeping for the accept loop: what a connection is doing, when it must be
//! closed, and the registry that sheds idle connections when `server.max_connections` is reached.
//!
//! Owns no I/O policy beyond that: server.rs runs each connection, wakes at
//! [`ConnState::next_check`] and asks [`ConnState::expired`]; [`Watched`] tells the state when
//! bytes arrive; the request service tells it when a request starts and ends ([`RequestGuard`]).
//! Neither wakes the connection's task (that would cost two task wake-ups per request): the task
//! checks at least every `header_read_timeout`, and at each check arms its timer for the
//! earliest moment the connection could be due, so every rule below holds to the millisecond.
//! Only shedding wakes it. The rules:
//! - a connection that has not started its first request within `header_read_timeout` of being
//!   accepted is closed (silent TCP, bare HTTP/2 prefaces, slowloris on the first request);
//! - on HTTP/1, a request head whose first byte arrived must be complete within
//!   `header_read_timeout` (slowloris on later keep-alive requests);
//! - a connection with no request in flight for `idle_timeout` is closed (keep-alive idle);
//! - at the cap, the connections idle the longest are closed first, so new callers get in; only
//!   when every connection has a request in flight is a new one refused.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// `pending_since_ms` when no request head is being received.
const NOT_PENDING: u64 = u64::MAX;

/// The time bounds a connection lives by (from `[server]`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnLimits {
    /// First request, and an HTTP/1 request head once begun, must arrive within this.
    pub header_read_timeout: Duration,
    /// No request in flight for this long closes the connection.
    pub idle_timeout: Duration,
}

/// One connection's activity, shared by its I/O wrapper, its request service and its task.
/// Times are milliseconds since `opened`, so they fit in atomics.
pub(super) struct ConnState {
    id: u64,
    opened: Instant,
    in_flight: AtomicU32,
    /// Whether any request has started: before that, the first-request deadline applies.
    served: AtomicBool,
    /// When the last request ended (0: none has).
    last_active_ms: AtomicU64,
    /// When the first byte of a request head not yet complete arrived ([`NOT_PENDING`] if none).
    pending_since_ms: AtomicU64,
    /// HTTP/2 (preface seen): its frames are not request heads, so only the idle rules apply.
    h2: AtomicBool,
    /// Chosen by the registry to make room; changed only under the registry's lock.
    shed: AtomicBool,
    /// Wakes the connection's task when it was shed.
    changed: Notify,
}

/// Counts a request in flight on its connection until dropped.
pub(super) struct RequestGuard(Arc<ConnState>);

/// The live connections, for shedding at the cap.
pub(super) struct Registry {
    cap: usize,
    inner: Mutex<RegistryInner>,
}

struct RegistryInner {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    /// Connections told to close that have not yet gone; they no longer count against the cap.
    leaving: usize,
}

/// A TCP stream that reports arriving bytes to its [`ConnState`].
pub(super) struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    /// The connection's first bytes, until three are seen (`PRI` starts the HTTP/2 preface).
    prefix: Vec<u8>,
}

// === impl ConnState ===

impl ConnState {
    fn new(id: u64) -> ConnState {
        ConnState {
            id,
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            pending_since_ms: AtomicU64::new(NOT_PENDING),
            h2: AtomicBool::new(false),
            shed: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// Marks a request as started; it counts as in flight until the guard is dropped.
    pub(super) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        self.pending_since_ms.store(NOT_PENDING, Ordering::Release);
        // No clock read here: a busy connection has no deadline and is never shed, and the
        // guard stamps the activity when the request ends.
        RequestGuard(self.clone())
    }

    /// Whether no request is in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether the registry chose this connection to make room.
    pub(super) fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }

    /// Resolves when the connection may have been shed.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// When to check the connection next: its deadline, or one `header_read_timeout` from now
    /// if that is sooner (a request head may begin, or the request in flight end, meanwhile).
    pub(super) fn next_check(&self, limits: &ConnLimits, now: Instant) -> Instant {
        let soon = now + limits.header_read_timeout;
        self.deadline(limits).map_or(soon, |due| due.min(soon))
    }

    /// Whether the connection is due to be closed at `now` (never with a request in flight).
    pub(super) fn expired(&self, limits: &ConnLimits, now: Instant) -> bool {
        self.deadline(limits).is_some_and(|due| due <= now)
    }

    /// When this connection is to be closed unless something happens first; `None` while a
    /// request is in flight.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let header_ms = millis(limits.header_read_timeout);
        let idle_ms = match self.served.load(Ordering::Acquire) {
            true => millis(limits.idle_timeout),
            false => header_ms,
        };
        let mut due = self.last_active_ms.load(Ordering::Acquire) + idle_ms;
        let pending = self.pending_since_ms.load(Ordering::Acquire);
        if pending != NOT_PENDING && !self.h2.load(Ordering::Acquire) {
            due = due.min(pending + header_ms);
        }
        Some(self.opened + Duration::from_millis(due))
    }

    /// The time of the last request's end (or the opening), for choosing whom to shed.
    fn last_active(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Acquire))
    }

    fn bytes_arrived(&self, prefix: &[u8]) {
        if prefix.len() >= 3 && prefix[..3] == *b"PRI" {
            self.h2.store(true, Ordering::Release);
        }
        if self.is_idle() && self.pending_since_ms.load(Ordering::Acquire) == NOT_PENDING {
            self.pending_since_ms
                .store(self.now_ms(), Ordering::Release);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.0;
        state
            .last_active_ms
            .store(state.now_ms(), Ordering::Release);
        // Bytes read while the request was in flight were its body (or a pipelined request,
        // which hyper starts next); either way no head is half-received now.
        state.pending_since_ms.store(NOT_PENDING, Ordering::Release);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Registry ===

impl Registry {
    /// A registry for at most `cap` connections.
    pub(super) fn new(cap: usize) -> Registry {
        Registry {
            cap,
            inner: Mutex::new(RegistryInner {
                next_id: 0,
                conns: HashMap::new(),
                leaving: 0,
            }),
        }
    }

    /// Registers a new connection, first shedding the longest-idle ones when at the cap;
    /// `None` when every connection has a request in flight.
    pub(super) fn admit(&self) -> Option<Arc<ConnState>> {
        let mut inner = self.inner.lock();
        if inner.conns.len() - inner.leaving >= self.cap {
            inner.shed(shed_batch(self.cap));
        }
        if inner.conns.len() - inner.leaving >= self.cap {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState::new(id));
        inner.conns.insert(id, state.clone());
        Some(state)
    }

    /// Forgets a connection that has ended.
    pub(super) fn remove(&self, state: &ConnState) {
        let mut inner = self.inner.lock();
        if inner.conns.remove(&state.id).is_some() && state.is_shed() {
            inner.leaving -= 1;
        }
    }

    /// Keeps a shed connection that turned busy before it could close.
    pub(super) fn unshed(&self, state: &ConnState) {
        let mut inner = self.inner.lock();
        if state.shed.swap(false, Ordering::AcqRel) {
            inner.leaving -= 1;
        }
    }

    /// Live connections (those told to close excluded).
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.conns.len() - inner.leaving
    }
}

/// How many idle connections one shed closes: a sixteenth of the cap, so a flood of new
/// connections costs one scan per many admissions.
fn shed_batch(cap: usize) -> usize {
    (cap / 16).max(1)
}

impl RegistryInner {
    /// Tells up to `count` of the longest-idle connections to close.
    fn shed(&mut self, count: usize) {
        let mut idle: Vec<(Instant, &Arc<ConnState>)> = self
            .conns
            .values()
            .filter(|c| c.is_idle() && !c.is_shed())
            .map(|c| (c.last_active(), c))
            .collect();
        if idle.len() > count {
            idle.select_nth_unstable_by_key(count, |(at, _)| *at);
            idle.truncate(count);
        }
        let victims: Vec<Arc<ConnState>> = idle.into_iter().map(|(_, c)| c.clone()).collect();
        for victim in victims {
            victim.shed.store(true, Ordering::Release);
            victim.changed.notify_one();
            self.leaving += 1;
        }
    }
}

// === impl Watched ===

impl Watched {
    /// Wraps an accepted stream.
    pub(super) fn new(inner: TcpStream, state: Arc<ConnState>) -> Watched {
        Watched {
            inner,
            state,
            prefix: Vec::with_capacity(3),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let arrived = &buf.filled()[before..];
        if !arrived.is_empty() {
            if self.prefix.len() < 3 {
                let take = (3 - self.prefix.len()).min(arrived.len());
                let head = arrived[..take].to_vec();
                self.prefix.extend_from_slice(&head);
            }
            self.state.bytes_arrived(&self.prefix);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
    };

    #[test]
    fn a_fresh_connection_must_start_a_request_within_the_header_timeout() {
        let c = Arc::new(ConnState::new(0));
        assert_eq!(c.deadline(&LIMITS), Some(c.opened + Duration::from_secs(5)));
        let guard = c.request_started();
        assert_eq!(
            c.deadline(&LIMITS),
            None,
            "busy connections have no deadline"
        );
        drop(guard);
        let due = c.deadline(&LIMITS).expect("idle again");
        assert!(
            due >= c.opened + Duration::from_secs(60),
            "then the idle timeout"
        );
        c.bytes_arrived(b"POS");
        let due = c.deadline(&LIMITS).expect("head pending");
        assert!(
            due < c.opened + Duration::from_secs(6),
            "a begun head gets 5 s"
        );
    }

    #[test]
    fn http2_frames_between_requests_are_not_request_heads() {
        let c = Arc::new(ConnState::new(0));
        drop(c.request_started());
        c.bytes_arrived(b"PRI");
        let due = c.deadline(&LIMITS).expect("idle");
        assert!(due >= c.opened + Duration::from_secs(60));
    }

    #[test]
    fn at_the_cap_the_longest_idle_connections_make_room() {
        let registry = Registry::new(2);
        let old = registry.admit().expect("first");
        std::thread::sleep(Duration::from_millis(5));
        let busy = registry.admit().expect("second");
        let _guard = busy.request_started();
        let new = registry.admit().expect("room is made");
        assert!(old.is_shed() && !busy.is_shed() && !new.is_shed());
        let _guard2 = new.request_started();
        assert!(registry.admit().is_none(), "all live connections are busy");
        registry.remove(&old);
        assert_eq!(registry.len(), 2);
    }
}
