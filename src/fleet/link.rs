//! Link: the gateway's one connection to the fleet's Redis (in its shape, backend.rs), every
//! command bounded by `fleet.redis_timeout_ms`, and the fleet/fallback mode that command
//! outcomes decide. Every key and channel of one fleet shares one hash tag
//! (`{key_prefix:sdkappid}`), so each multi-key script runs on one Cluster slot.
//!
//! Why Redis does not answer (refused, timed out, TLS, auth) is logged once per change of that
//! reason, not once per command, and is shown in `/readyz` until a command answers again.
//!
//! Two failed or slow commands in a row switch the gateway to fallback, so few callers pay the
//! timeout (one slow answer on a busy host does not flip a whole gateway, which would spend its
//! fallback share on top of the fleet's budget); only the invalidation channel's health probe
//! (channel.rs) switches it back. In fallback no hot-path code sends anything to Redis.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{FromRedisValue, ScriptInvocation};
use tracing::{info, warn};

use super::backend::Backend;
use super::metrics::{Command, FleetMetrics, Mode};
use super::scripts;
use crate::config::{FleetConfig, RedisShape};

/// Why a Redis command did not answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    /// The gateway is in fallback: nothing was sent.
    #[error("redis is down (fallback mode)")]
    Down,
    /// No answer within `fleet.redis_timeout_ms`.
    #[error("redis did not answer in time")]
    Timeout,
    /// Redis answered with an error, or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Failed or slow commands in a row that switch the gateway to fallback.
const DOWN_AFTER: u32 = 2;

/// Handle to the fleet's Redis; cheap to clone.
#[derive(Clone)]
pub(super) struct Link(Arc<Inner>);

struct Inner {
    backend: Backend,
    timeout: Duration,
    /// `key_prefix:sdkappid:`, the namespace shared by one app's gateways.
    namespace: String,
    /// Redis answers: fleet mode. Set by the channel's probe, cleared by failures.
    up: AtomicBool,
    /// Commands failed in a row; [`DOWN_AFTER`] of them mean Redis is down.
    failures: AtomicU32,
    /// Why the last failed command failed, until one answers (logged once per change).
    last_error: Mutex<Option<String>>,
    metrics: FleetMetrics,
}

impl Link {
    /// Prepares the connection to `shape`; connects lazily, so a Redis that is down at
    /// start-up only means starting in fallback.
    pub(super) fn new(
        config: &FleetConfig,
        shape: &RedisShape,
        sdkappid: u64,
        metrics: FleetMetrics,
    ) -> Result<Link, redis::RedisError> {
        let backend = Backend::new(config, shape)?;
        metrics.set_mode(Mode::Fallback);
        Ok(Link(Arc::new(Inner {
            backend,
            timeout: config.redis_timeout,
            namespace: format!("{{{}:{sdkappid}}}:", config.key_prefix),
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            last_error: Mutex::new(None),
            metrics,
        })))
    }

    /// The fleet metrics.
    pub(super) fn metrics(&self) -> &FleetMetrics {
        &self.0.metrics
    }

    /// A key in this app's namespace.
    pub(super) fn key(&self, parts: &[&str]) -> String {
        let mut key = self.0.namespace.clone();
        key.push_str(&parts.join(":"));
        key
    }

    /// The per-command timeout.
    pub(super) fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// The backend (its shape's connections, failover following).
    pub(super) fn backend(&self) -> &Backend {
        &self.0.backend
    }

    /// Why Redis last failed to answer, while it has not answered since.
    pub(super) fn last_error(&self) -> Option<String> {
        self.0.last_error.lock().clone()
    }

    /// Whether the gateway is in fleet mode.
    pub(super) fn is_up(&self) -> bool {
        self.0.up.load(Ordering::Acquire)
    }

    /// In fleet mode with the last command answered: worth a round trip that a caller waits on
    /// (after one failure, callers spend what needs no Redis until a command answers again).
    pub(super) fn is_healthy(&self) -> bool {
        self.is_up() && self.0.failures.load(Ordering::Acquire) == 0
    }

    /// Counts a failed or slow command; the [`DOWN_AFTER`]th in a row switches to fallback.
    pub(super) fn failed(&self, why: &LinkError) {
        self.note_error(why);
        if self.0.failures.fetch_add(1, Ordering::AcqRel) + 1 >= DOWN_AFTER {
            self.mark_down(why);
        }
    }

    /// Logs why Redis does not answer when the reason changed (not once per command).
    fn note_error(&self, why: &LinkError) {
        let reason = why.to_string();
        let mut last = self.0.last_error.lock();
        if last.as_deref() != Some(reason.as_str()) {
            warn!(error = %reason, "redis does not answer");
            *last = Some(reason);
        }
    }

    /// A command answered: clears the failure count and the last error.
    fn answered(&self) {
        self.0.failures.store(0, Ordering::Release);
        self.0.last_error.lock().take();
    }

    /// Switches to fleet mode (the channel is live and Redis answers).
    pub(super) fn mark_up(&self) {
        self.answered();
        if !self.0.up.swap(true, Ordering::AcqRel) {
            info!("redis answers: fleet mode");
            self.0.metrics.set_mode(Mode::Fleet);
            self.0.metrics.mode_changes.inc();
        }
    }

    /// Switches to fallback mode.
    pub(super) fn mark_down(&self, why: &LinkError) {
        if self.0.up.swap(false, Ordering::AcqRel) {
            warn!(error = %why, "redis unavailable: fallback mode");
            self.0.metrics.set_mode(Mode::Fallback);
            self.0.metrics.mode_changes.inc();
        }
    }

    /// Whether the fleet's keys answer through the command path (the channel's pings reach
    /// one node; before fleet mode comes back, the node serving the fleet must answer too).
    pub(super) async fn probe(&self) -> bool {
        let mut invocation = scripts::PROBE.prepare_invoke();
        invocation.key(self.key(&["budget", "epoch"]));
        let answer: Result<i64, _> = self.run_anyway(Command::Ping, &invocation).await;
        answer.is_ok()
    }

    /// Runs a script within the timeout, when in fleet mode; a failure switches to fallback.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        command: Command,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        self.run_anyway(command, invocation).await
    }

    /// [`Link::run`] even in fallback mode (for the probe and for resending invalidations).
    pub(super) async fn run_anyway<T: FromRedisValue>(
        &self,
        command: Command,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        let started = Instant::now();
        let call = async {
            let mut conn = self.0.backend.conn().await?;
            conn.invoke(invocation).await
        };
        let result = match tokio::time::timeout(self.0.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => Err(LinkError::Timeout),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.0.metrics.record(command, seconds, result.is_ok());
        match &result {
            Ok(_) => self.answered(),
            Err(e) => self.failed(e),
        }
        result
    }
}
