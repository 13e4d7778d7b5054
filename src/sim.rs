//! A simulated Tencent IM upstream: `POST /v4/profile/portrait_get` and `portrait_set` over real
//! HTTP/1.1 on 127.0.0.1, answered the way Tencent answers them.
//!
//! Owns: seeded, deterministic profiles for `user0..user{accounts-1}` (with `portrait_set`
//! overrides layered on top), Tencent's query-string and UserSig checks, a per-API sliding-window
//! rate limit (60007), error and latency injection ([`Fault`], [`Sim::set_latency`]) and a call log
//! ([`SimCall`]). It is the oracle the equality tests judge the gateway by, so it reads requests
//! and writes answers with its own plain `serde_json` code (`sim/json.rs`), sharing nothing with
//! the gateway's `wire` but Tencent's standard tag list. UserSigs are checked by
//! [`crate::usersig::verify`].
//!
//! Called by `tim-gateway demo` and `tim-gateway sim`, by the integration tests (tests/support) and by the benches. It is
//! the crate's one fake Tencent, in the spirit of linkerd's integration servers.
//!
//! Layout: this file holds the public types and the [`Sim`] handle; `sim/server.rs` the listener,
//! connections and fault injection; `sim/api.rs` the auth, rate-limit and answer logic;
//! `sim/json.rs` Tencent's JSON; `sim/profiles.rs` the generated profiles and overrides;
//! `sim/flap.rs` the soak's fault timetable.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod api;
mod flap;
pub(crate) mod json;
mod profiles;
mod server;
#[cfg(test)]
mod tests;

pub use flap::{flap, SPIKE_LATENCY};

use api::RateWindow;
use profiles::Profiles;

/// The secret key of the demo app. Not a secret: it only ever signs UserSigs for the sim.
pub const DEMO_SECRET_KEY: &str = "tim-gateway-demo-key-not-a-secret";

/// How the simulated Tencent is set up.
#[derive(Clone)]
pub struct SimConfig {
    /// The app's SDKAppID; requests naming another one get 70014.
    pub sdkappid: u64,
    /// The SecretKey UserSigs are verified with.
    pub secret_key: String,
    /// App admin UserIDs; any other `identifier` gets 40004.
    pub admins: Vec<String>,
    /// Whether to check `usersig` (off lets benches skip signing).
    pub verify_usersig: bool,
    /// Existing accounts are `user0` ..= `user{accounts-1}` (canonical decimal only).
    pub accounts: u64,
    /// Custom tags that exist; any other `Tag_Profile_Custom_*` gets 40009.
    pub custom_tags: Vec<String>,
    /// Accepted calls per API in any sliding 1 s window; more get 60007. 0 disables the limit.
    pub requests_per_second: u32,
    /// Added before every answer.
    pub latency: Duration,
    /// How a `portrait_get` naming a nonexistent account fails.
    pub missing_account: MissingAccount,
    /// Whether to keep the call log ([`Sim::calls`]); a long-running sim turns it off and
    /// reads [`Sim::stats`] instead, which is always kept.
    pub call_log: bool,
}

/// How `portrait_get` reports accounts that do not exist (reference §2.3: Tencent's choice is
/// unknown, so the sim can play either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAccount {
    /// That account's entry gets `ResultCode` 40003 and is listed in `Fail_Account`.
    PerAccount,
    /// The whole call fails with `ErrorCode` 40003.
    WholeCall,
}

/// The two REST APIs the sim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `v4/profile/portrait_get`.
    PortraitGet,
    /// `v4/profile/portrait_set`.
    PortraitSet,
}

/// An injected failure, applied to every call of both APIs until replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer with this HTTP status and a small HTML body (an invalid status becomes 500).
    Status(u16),
    /// Never answer, until the fault is cleared (then the call is answered normally) or the sim
    /// shuts down.
    Hang,
    /// Close the TCP connection without answering.
    DropConnection,
    /// Answer HTTP 200 with a body that is not JSON.
    Garbage,
    /// Stop listening and close every open connection. Clearing the fault re-binds the same port.
    RefuseConnections,
    /// Answer the next call normally, but pad its body with [`OVERSIZED_PADDING_BYTES`] of
    /// trailing whitespace (still valid JSON, far larger than any real answer); then the fault
    /// clears itself to [`Fault::None`].
    Oversized,
    /// Every other call (the 1st, 3rd, ... since the fault was set) gets this HTTP status; the
    /// others are answered normally.
    EveryOther(u16),
    /// Answer HTTP 200 with Tencent's whole-call 60007 ("frequency exceeds the limit"), as when
    /// someone else spends the app's budget.
    OverLimit,
}

/// Trailing whitespace a [`Fault::Oversized`] answer carries.
pub const OVERSIZED_PADDING_BYTES: usize = 16 * 1024 * 1024;

/// Counters over the sim's whole life, kept even when the call log is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `portrait_get` calls received (answered, refused or faulted).
    pub portrait_get_calls: u64,
    /// `portrait_set` calls received.
    pub portrait_set_calls: u64,
    /// Calls refused with 60007 because the caller went over `requests_per_second`.
    pub rate_limited: u64,
    /// Calls a fault answered instead of the API (every fault but [`Fault::Oversized`]).
    pub faulted: u64,
    /// Answers sent padded by [`Fault::Oversized`].
    pub oversized: u64,
}

/// One call as the sim saw it.
#[derive(Debug, Clone)]
pub struct SimCall {
    /// When the request (with its body) arrived, before any latency.
    pub at: Instant,
    /// Which API was called.
    pub api: Api,
    /// `To_Account` (portrait_get) or `[From_Account]` (portrait_set); empty if undecodable.
    pub accounts: Vec<String>,
    /// `TagList` (portrait_get) or the `ProfileItem` tags (portrait_set); empty if undecodable.
    pub tags: Vec<String>,
    /// The whole-call `ErrorCode` answered; -1 if a fault answered instead.
    pub error_code: i64,
}

/// A running simulated Tencent. Shut it down with [`Sim::shutdown`]; dropping it only signals
/// its tasks to stop.
pub struct Sim {
    state: Arc<SimState>,
    /// The accept loop; it owns (and on shutdown awaits) every connection task.
    acceptor: Option<JoinHandle<()>>,
}

/// Everything the accept loop, the connections and the [`Sim`] handle share.
struct SimState {
    config: SimConfig,
    /// The port clients use; re-bound after [`Fault::RefuseConnections`] is cleared.
    addr: SocketAddr,
    profiles: Profiles,
    /// Current latency in nanoseconds (set at runtime by [`Sim::set_latency`]).
    latency_nanos: AtomicU64,
    /// The current fault; hung handlers and the accept loop wait on changes.
    fault: watch::Sender<Fault>,
    /// Calls that met [`Fault::EveryOther`] since it was set.
    every_other: AtomicU64,
    /// Bumped by every [`Fault::RefuseConnections`]: the accept loop drops its listener and
    /// every connection task drops its connection, even if the fault is cleared before they look.
    epoch: watch::Sender<u64>,
    /// A listener bound synchronously by [`Sim::set_fault`] when refusing ends, so the port
    /// accepts again as soon as the call returns; the accept loop adopts it.
    pending_listener: Mutex<Option<std::net::TcpListener>>,
    calls: Mutex<Vec<SimCall>>,
    stats: Mutex<SimStats>,
    /// Sliding windows of accepted calls, indexed by [`Api::index`].
    rate: [RateWindow; 2],
    shutdown: CancellationToken,
}

// === impl SimConfig ===

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sdkappid: 1_400_000_000,
            secret_key: DEMO_SECRET_KEY.to_owned(),
            admins: vec!["administrator".to_owned()],
            verify_usersig: true,
            accounts: 1_000_000,
            custom_tags: vec!["Tag_Profile_Custom_Test".to_owned()],
            requests_per_second: 200,
            latency: Duration::ZERO,
            missing_account: MissingAccount::WholeCall,
            call_log: true,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("sdkappid", &self.sdkappid)
            .field("secret_key", &"<redacted>")
            .field("admins", &self.admins)
            .field("verify_usersig", &self.verify_usersig)
            .field("accounts", &self.accounts)
            .field("custom_tags", &self.custom_tags)
            .field("requests_per_second", &self.requests_per_second)
            .field("latency", &self.latency)
            .field("missing_account", &self.missing_account)
            .field("call_log", &self.call_log)
            .finish()
    }
}

// === impl Api ===

impl Api {
    /// The URL path Tencent serves this API on.
    pub fn path(self) -> &'static str {
        match self {
            Api::PortraitGet => "/v4/profile/portrait_get",
            Api::PortraitSet => "/v4/profile/portrait_set",
        }
    }

    fn from_path(path: &str) -> Option<Api> {
        [Api::PortraitGet, Api::PortraitSet]
            .into_iter()
            .find(|api| api.path() == path)
    }

    fn index(self) -> usize {
        match self {
            Api::PortraitGet => 0,
            Api::PortraitSet => 1,
        }
    }
}

// === impl Sim ===

impl Sim {
    /// Starts a sim on 127.0.0.1 with an OS-assigned port.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Sim::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a sim listening on `addr`.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Sim> {
        let listener = server::bind(addr)?;
        let addr = listener.local_addr()?;
        let latency = duration_nanos(config.latency);
        let state = Arc::new(SimState {
            profiles: Profiles::new(config.accounts, &config.custom_tags),
            config,
            addr,
            latency_nanos: AtomicU64::new(latency),
            every_other: AtomicU64::new(0),
            fault: watch::Sender::new(Fault::None),
            epoch: watch::Sender::new(0),
            pending_listener: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            stats: Mutex::new(SimStats::default()),
            rate: [RateWindow::default(), RateWindow::default()],
            shutdown: CancellationToken::new(),
        });
        let acceptor = tokio::spawn(server::accept_loop(Arc::clone(&state), listener));
        tracing::debug!(%addr, "sim listening");
        Ok(Sim {
            state,
            acceptor: Some(acceptor),
        })
    }

    /// The address the sim listens on (the same port across [`Fault::RefuseConnections`]).
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `http://127.0.0.1:PORT`, for an upstream base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// The call log in arrival order: every call to either API path, including rejected and
    /// faulted ones. A call held by [`Fault::Hang`] stays logged with error code -1.
    pub fn calls(&self) -> Vec<SimCall> {
        let mut calls = self.state.calls.lock().clone();
        // Handlers append after deciding; arrival order is the order of `at`.
        calls.sort_by_key(|c| c.at);
        calls
    }

    /// How many calls of `api` are in the log.
    pub fn call_count(&self, api: Api) -> usize {
        self.state
            .calls
            .lock()
            .iter()
            .filter(|c| c.api == api)
            .count()
    }

    /// Counters since the sim started (not reset by [`Sim::clear_calls`]).
    pub fn stats(&self) -> SimStats {
        *self.state.stats.lock()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        self.state.calls.lock().clear();
    }

    /// Injects `fault` for every later call ([`Fault::None`] restores normal answers).
    /// [`Fault::RefuseConnections`] closes the listener and open connections right away;
    /// replacing it re-binds the same port before this returns (if the port is free).
    pub fn set_fault(&self, fault: Fault) {
        let state = &self.state;
        state
            .every_other
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let previous = state.fault.send_replace(fault);
        if fault == Fault::RefuseConnections {
            state.pending_listener.lock().take();
            state.epoch.send_modify(|epoch| *epoch += 1);
        } else if previous == Fault::RefuseConnections {
            // If the accept loop still holds the old listener this fails; it binds on its own.
            if let Ok(listener) = server::bind_std(state.addr) {
                *state.pending_listener.lock() = Some(listener);
            }
        }
    }

    /// Sets the delay added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_nanos
            .store(duration_nanos(latency), Ordering::Relaxed);
    }

    /// The answer Tencent (this sim) gives to `body` as a lone portrait_get call, computed
    /// directly: no HTTP, no rate limit, not logged. Tests compare the gateway's answers with this.
    pub fn answer_portrait_get(&self, body: &[u8]) -> Vec<u8> {
        api::answer_get(&self.state.config, &self.state.profiles, body).body
    }

    /// A profile value as stored now (after any portrait_set), for tests: raw JSON text, or None
    /// if the tag is unset or the account does not exist.
    pub fn profile_value(&self, account: &str, tag: &str) -> Option<String> {
        self.state.profiles.value_text(account, tag)
    }

    /// Stops accepting, closes every connection and awaits every sim task. Re-raises a panic of
    /// any sim task, so a test fails loudly instead of hanging.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        self.state.pending_listener.lock().take();
        if let Some(acceptor) = self.acceptor.take() {
            if let Err(e) = acceptor.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.state.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Without `shutdown`, at least stop serving; tasks exit on their own.
        self.state.shutdown.cancel();
    }
}

// === impl SimState ===

impl SimState {
    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    fn log(&self, call: SimCall) {
        {
            let mut stats = self.stats.lock();
            match call.api {
                Api::PortraitGet => stats.portrait_get_calls += 1,
                Api::PortraitSet => stats.portrait_set_calls += 1,
            }
            match call.error_code {
                api::FREQUENCY_LIMIT => stats.rate_limited += 1,
                -1 => stats.faulted += 1,
                _ => {}
            }
        }
        if self.config.call_log {
            self.calls.lock().push(call);
        }
    }

    fn count_oversized(&self) {
        self.stats.lock().oversized += 1;
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
