//! The in-memory upstream and the service wiring shared by the criterion benches
//! (`benches/gateway.rs`) and the load tool (`benches/load.rs`, scenario S5).
//!
//! Owns [`SimUpstream`], an [`UpstreamApi`] answering from the simulated Tencent's
//! [`Sim::answer_portrait_get`] (no HTTP, no rate limit, no call log), [`FixedUpstream`], which
//! answers every call with one precomputed body, [`build_service`] (`tim_gateway::build_service` plus the
//! metrics handle) and request-body builders. It
//! owns no measurement: callers time what they need.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tim_gateway::config::Config;
use tim_gateway::metrics::{Api, Metrics};
use tim_gateway::sim::Sim;
use tim_gateway::ProfileService;
use tim_gateway::UpstreamApi;
use tim_gateway::STANDARD_TAGS;

/// Accounts the benches' sims know: far more than any bench asks for, so fresh accounts exist.
pub const SIM_ACCOUNTS: u64 = 1 << 40;

/// An upstream rate no bench can reach: the limiter never makes anyone wait.
pub const UNLIMITED_RPS: u32 = 100_000_000;

/// The tags the benches ask for, in order: `tags(k)` is the first `k`.
pub const BENCH_TAGS: [usize; 4] = [0, 1, 2, 7]; // Nick, Gender, BirthDay, Image

/// Answers `portrait_get` calls from a [`Sim`]'s profiles, after an optional delay, counting
/// calls and accounts.
pub struct SimUpstream {
    sim: Arc<Sim>,
    latency: Duration,
    /// Upstream calls answered: benches report accounts per call from it.
    pub calls: AtomicU64,
}

/// Answers every call with the same precomputed body.
pub struct FixedUpstream {
    answer: Bytes,
    /// Upstream calls answered.
    pub calls: AtomicU64,
}

// === impl SimUpstream ===

impl SimUpstream {
    /// An upstream answering from `sim` after `latency` (zero: answers at once).
    pub fn new(sim: Arc<Sim>, latency: Duration) -> Arc<SimUpstream> {
        Arc::new(SimUpstream {
            sim,
            latency,
            calls: AtomicU64::new(0),
        })
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl UpstreamApi for SimUpstream {
    fn call(
        &self,
        api: &Api,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, tim_gateway::Error>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = if *api == Api::PORTRAIT_GET {
            Bytes::from(self.sim.answer_portrait_get(&body))
        } else {
            Bytes::from_static(
                br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""}"#,
            )
        };
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(answer)
        })
    }
}

// === impl FixedUpstream ===

impl FixedUpstream {
    /// An upstream answering `answer` to everything.
    pub fn new(answer: Vec<u8>) -> Arc<FixedUpstream> {
        Arc::new(FixedUpstream {
            answer: Bytes::from(answer),
            calls: AtomicU64::new(0),
        })
    }
}

impl UpstreamApi for FixedUpstream {
    fn call(&self, _: &Api, _: Bytes) -> BoxFuture<'static, Result<Bytes, tim_gateway::Error>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self.answer.clone();
        Box::pin(async move { Ok(answer) })
    }
}

// === wiring ===

/// A single-threaded tokio runtime with I/O and timers, for a bench driving one thing at a time.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A running service: the handle, its metrics and the batch worker's task.
pub struct Wired {
    pub service: ProfileService,
    pub metrics: Metrics,
    pub worker: tokio::task::JoinHandle<()>,
}

/// Wires the service exactly as `tim_gateway::run` does (`tim_gateway::build_service`). Call
/// inside a tokio runtime (the batch worker is spawned).
pub fn build_service(config: &Config, upstream: Arc<dyn UpstreamApi>) -> Wired {
    let metrics = Metrics::new();
    let (service, worker) = tim_gateway::build_service(config, upstream, metrics.clone());
    Wired {
        service,
        metrics,
        worker,
    }
}

/// The default config with the upstream limiter out of the way, a long TTL and room for
/// `max_pairs` cached (account, tag) pairs.
pub fn bench_config(max_pairs: u64) -> Config {
    let mut config = Config::default();
    config.limits.requests_per_second = NonZeroU32::new(UNLIMITED_RPS).expect("non-zero");
    config.cache.ttl = Duration::from_secs(3600);
    config.cache.max_entries = max_pairs;
    config
}

// === accounts and bodies ===

/// The sim account number of the `rank`-th account whose reads succeed. The sim fails every
/// read of `user{n}` with `n % 97 == 13` (40006, never cached), so hit-path benches skip them.
pub fn readable_account(rank: u64) -> u64 {
    // Per block of 97 numbers, 96 are readable: offsets 0..=12 and 14..=96.
    let (block, i) = (rank / 96, rank % 96);
    block * 97 + if i < 13 { i } else { i + 1 }
}

/// `count` readable account numbers from rank `first`.
pub fn readable(first: u64, count: usize) -> Vec<u64> {
    (first..first + count as u64)
        .map(readable_account)
        .collect()
}

/// A body of `accounts` readable accounts from rank `first` and the first `tags` bench tags.
pub fn readable_body(first: u64, accounts: usize, tags: usize) -> String {
    body_of(&readable(first, accounts), tags)
}

/// `{"To_Account":["user{first}",...],"TagList":[...]}` with `accounts` consecutive accounts
/// and the first `tags` of [`BENCH_TAGS`].
pub fn body(first: u64, accounts: usize, tags: usize) -> String {
    body_of(
        (first..first + accounts as u64)
            .collect::<Vec<_>>()
            .as_slice(),
        tags,
    )
}

/// A `portrait_get` body naming `user{n}` for each of `numbers`, with the first `tags` of
/// [`BENCH_TAGS`].
pub fn body_of(numbers: &[u64], tags: usize) -> String {
    body_with(numbers, &BENCH_TAGS[..tags])
}

/// A `portrait_get` body naming `user{n}` for each of `numbers` and the standard tags at
/// `tag_indices` (into [`STANDARD_TAGS`]), in that order.
pub fn body_with(numbers: &[u64], tag_indices: &[usize]) -> String {
    let mut out = String::with_capacity(32 + numbers.len() * 16 + tag_indices.len() * 28);
    out.push_str(r#"{"To_Account":["#);
    for (i, n) in numbers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"user{n}\"");
    }
    out.push_str(r#"],"TagList":["#);
    for (i, t) in tag_indices.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", STANDARD_TAGS[*t]);
    }
    out.push_str("]}");
    out
}

/// A sim for in-memory use: every `user{n}` below [`SIM_ACCOUNTS`] exists, no rate limit, no
/// UserSig check. Call inside a tokio runtime; it also listens on 127.0.0.1 (unused here).
pub async fn bench_sim() -> Arc<Sim> {
    let config = tim_gateway::sim::SimConfig {
        accounts: SIM_ACCOUNTS,
        requests_per_second: 0,
        verify_usersig: false,
        ..tim_gateway::sim::SimConfig::default()
    };
    Arc::new(Sim::start(config).await.expect("sim starts on 127.0.0.1"))
}
