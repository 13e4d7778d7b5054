//! Gated: a future polled only after its own waker fired.
//!
//! A connection's task is woken for every request it serves; the futures that watch for
//! shutdown, drain, shedding and the connection's deadline fire a few times in its life. Polled
//! together in one `select!`, each of them was polled again on every request's wake-up
//! (gating them took a 20x4 hit from 9.65 to 9.31 us of CPU: docs/benchmarks-history.md,
//! State K). Behind a gate they are polled when one of them woke the task, and once at the
//! start.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// `inner`, polled only when it asked to be.
pub(super) struct Gated<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// Wakes `signal`: what `inner` is polled with.
    waker: Waker,
}

/// Set when `inner` was woken; wakes the task that polls the gate.
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Gated<F> {
    pub(super) fn new(inner: F) -> Gated<F> {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Gated {
            inner: Box::pin(inner),
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake after the read still wakes this task.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready once `ready` is set (and it was woken).
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<tokio::sync::Notify>,
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_at_first_and_when_woken_only() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(tokio::sync::Notify::new());
        let probe = Probe {
            polls: polls.clone(),
            ready: ready.clone(),
        };
        let mut gated = Box::pin(Gated::new(async move {
            probe.polls.fetch_add(1, Ordering::SeqCst);
            let notified = probe.ready.notified();
            tokio::pin!(notified);
            std::future::poll_fn(|cx| {
                probe.polls.fetch_add(1, Ordering::SeqCst);
                notified.as_mut().poll(cx)
            })
            .await;
            "fired"
        }));
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        let first = polls.load(Ordering::SeqCst);
        assert_eq!(first, 2, "polled once at the start");
        for _ in 0..10 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            first,
            "not polled without a wake"
        );
        ready.notify_one();
        let fired = tokio::time::timeout(Duration::from_secs(5), gated).await;
        assert_eq!(fired, Ok("fired"), "a wake reaches the inner future");
    }
}
