//! A simulated Tencent IM upstream: `POST /v4/profile/portrait_get` and `portrait_set`, and the
//! list reads `query_online_status`, `account_check`, `get_group_info` and
//! `get_specified_group_member_info`, over real HTTP/1.1 on 127.0.0.1, answered the way Tencent
//! answers them; every other `/v4/<service>/<command>` answered with a recognisable echo
//! ([`Api::Other`]); and Tencent's callbacks ([`CallbackSender`]), fired by the sim after profile
//! and presence changes or sent by tests.
//!
//! Owns: seeded, deterministic profiles and presence for `user0..user{accounts-1}` (with
//! `portrait_set` overrides and [`Sim::set_online_status`] layered on top), deterministic groups
//! `group0..group{groups-1}` (names settable, [`Sim::set_group_name`]), Tencent's query-string
//! and UserSig checks, a per-API sliding-window rate limit (60007), error and latency injection
//! ([`Fault`], [`Sim::set_latency`]) and a call log ([`SimCall`]: what crossed the wire). It is
//! the oracle the equality tests judge the gateway by, so it reads requests and writes answers
//! with its own plain `serde_json` code (`sim/json.rs` and the list reads' files), sharing
//! nothing with the gateway's `wire` but Tencent's standard tag list. UserSigs are checked by
//! [`crate::usersig::verify`].
//!
//! Called by `tim-gateway demo` and `tim-gateway sim`, by the integration tests (tests/support) and by the benches. It is
//! the crate's one fake Tencent, in the spirit of linkerd's integration servers.
//!
//! Layout: this file holds the public types and the [`Sim`] handle; `sim/server.rs` the listener
//! and connections; `sim/request.rs` each call's routing, fault and latency injection;
//! `sim/route.rs` the paths; `sim/api.rs` the auth and answer logic; `sim/rate.rs` the per-API
//! windows; `sim/json.rs` the profile APIs' JSON; `sim/profiles.rs` the generated profiles and
//! overrides; `sim/lists.rs` what the list reads share, and `sim/online.rs`,
//! `sim/account_check.rs`, `sim/group_info.rs`, `sim/group_members.rs` each list read;
//! `sim/presence.rs` the presence store; `sim/groups.rs` the generated groups;
//! `sim/callbacks.rs` sending callbacks; `sim/fire.rs` the sim's own callbacks; `sim/flap.rs` the
//! soak's fault timetable.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod account_check;
mod api;
mod callbacks;
mod config;
mod fire;
mod flap;
mod group_info;
mod group_members;
mod groups;
pub(crate) mod json;
mod lists;
mod online;
mod presence;
mod profiles;
mod rate;
mod request;
mod route;
mod server;
#[cfg(test)]
mod tests;

pub use callbacks::{
    portrait_set_callback, request_over_limit_callback, sign, state_change_callback, CallbackError,
    CallbackRequest, CallbackSender, SimCallbacks, CALLBACK_TIMEOUT, PORTRAIT_SET_COMMAND,
    REQUEST_OVER_LIMIT_COMMAND, STATE_CHANGE_COMMAND,
};
pub use config::{MissingAccount, SimConfig};
pub use fire::ClientSetError;
pub use flap::{flap, SPIKE_LATENCY};
pub use route::Api;

use groups::Groups;
use presence::Presence;
use profiles::Profiles;
use rate::RateWindows;

/// The secret key of the demo app. Not a secret: it only ever signs UserSigs for the sim.
pub const DEMO_SECRET_KEY: &str = "tim-gateway-demo-key-not-a-secret";

/// An injected failure, applied to every call of every API until replaced.
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
    /// Calls of the four list reads (`query_online_status`, `account_check`, `get_group_info`,
    /// `get_specified_group_member_info`) received.
    pub list_calls: u64,
    /// Calls of echoed APIs ([`Api::Other`]) received.
    pub other_calls: u64,
    /// Calls refused with 60007 because the caller went over its API's limit
    /// (`requests_per_second`, `account_check_per_second`).
    pub rate_limited: u64,
    /// Calls a fault answered instead of the API (every fault but [`Fault::Oversized`]).
    pub faulted: u64,
    /// Answers sent padded by [`Fault::Oversized`].
    pub oversized: u64,
    /// Callbacks the sim sent (`Profile.CallbackPortraitSet`, `State.StateChange`), counted
    /// once answered or failed.
    pub callbacks_sent: u64,
    /// Of those, the ones not answered HTTP 200 with a JSON body (Tencent's rule), or not at all.
    pub callback_failures: u64,
}

/// One call as the sim saw it.
#[derive(Debug, Clone)]
pub struct SimCall {
    /// When the request (with its body) arrived, before any latency.
    pub at: Instant,
    /// Which API was called.
    pub api: Api,
    /// The URL path as received, e.g. `/v4/openim/sendmsg`.
    pub path: String,
    /// The raw query string as received (`""` if none).
    pub query: String,
    /// The raw request body (empty if it was over the 1 MiB the sim reads).
    pub body: Bytes,
    /// The ids the call names, in request order with duplicates: `To_Account` (portrait_get,
    /// query_online_status), `[From_Account]` (portrait_set), the `CheckItem` UserIDs
    /// (account_check), `GroupIdList` (get_group_info) or `Member_List_Account`
    /// (get_specified_group_member_info); empty if undecodable or echoed.
    pub accounts: Vec<String>,
    /// `TagList` (portrait_get) or the `ProfileItem` tags (portrait_set); empty if undecodable
    /// and for every other API.
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
    presence: Presence,
    groups: Groups,
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
    /// Sliding windows of accepted calls, per API.
    rate: RateWindows,
    /// Sends the sim's own callbacks, if [`SimConfig::callback`] is set.
    callback: Option<CallbackSender>,
    /// Callbacks fired in the background after a REST `portrait_set`; awaited on shutdown.
    callback_tasks: TaskTracker,
    shutdown: CancellationToken,
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
        let callback = match &config.callback {
            Some(target) => Some(
                CallbackSender::try_new(config.sdkappid, target.token.clone(), &target.url)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let state = Arc::new(SimState {
            profiles: Profiles::new(config.accounts, &config.custom_tags),
            presence: Presence::new(config.accounts),
            groups: Groups::new(config.groups, config.accounts),
            config,
            addr,
            latency_nanos: AtomicU64::new(latency),
            every_other: AtomicU64::new(0),
            fault: watch::Sender::new(Fault::None),
            epoch: watch::Sender::new(0),
            pending_listener: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            stats: Mutex::new(SimStats::default()),
            rate: RateWindows::default(),
            callback,
            callback_tasks: TaskTracker::new(),
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

    /// The call log in arrival order: every call to an API path, including rejected and
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

    /// The answer the sim gives to `body` as a lone call of the read API `api` (portrait_get or
    /// a list read), as state stands now: no HTTP, no query check, no rate limit, not logged;
    /// `None` for [`Api::PortraitSet`] and [`Api::Other`], which are not reads.
    pub fn answer_read(&self, api: Api, body: &[u8]) -> Option<Vec<u8>> {
        api::answer_read(&self.state, api, body).map(|outcome| outcome.body)
    }

    /// Sets `account`'s login status (`Online`, `PushOnline` or `Offline`) as its client would
    /// (no REST call, no rate limit, not in the call log): `query_online_status` and the
    /// members' `OnlineStatus` answer it from now on, `Detail` showing the status's device
    /// (`iPhone` for Online, `Android` for PushOnline, none for Offline). Then, if
    /// [`SimConfig::callback`] is set, sends `State.StateChange` (Action/Reason
    /// `Login`/`Register`, `Disconnect`/`LinkClose` or `Logout`/`Unregister`; `OptPlatform`
    /// `Android` for PushOnline, else `IOS`) and returns its answer (`None` without a callback
    /// URL). Refused, changing nothing: an unknown status, or an account that does not exist
    /// ([`ClientSetError::Refused`] with 70107).
    pub async fn set_online_status(
        &self,
        account: &str,
        status: &str,
    ) -> Result<Option<(StatusCode, Bytes)>, ClientSetError> {
        fire::set_status(&self.state, account, status).await
    }

    /// `account`'s login status as stored now (`Online`, `PushOnline`, `Offline`); `None` if
    /// the account does not exist.
    pub fn online_status(&self, account: &str) -> Option<&'static str> {
        self.state
            .presence
            .status(account)
            .map(presence::Status::name)
    }

    /// Renames `group` (what `get_group_info` answers as `Name` from now on); false, changing
    /// nothing, if the group does not exist. Sends no callback.
    pub fn set_group_name(&self, group: &str, name: &str) -> bool {
        self.state.groups.set_name(group, name)
    }

    /// Changes `account`'s profile as a user editing it in the app would (a client SDK: no REST
    /// call, no rate limit, not in the call log; refused like a `portrait_set` of the same
    /// items), then, if [`SimConfig::callback`] is set, sends `Profile.CallbackPortraitSet` to
    /// it and returns its answer (`None` without a callback URL).
    pub async fn client_portrait_set(
        &self,
        account: &str,
        items: &[(&str, Value)],
    ) -> Result<Option<(StatusCode, Bytes)>, ClientSetError> {
        fire::client_set(&self.state, account, items).await
    }

    /// A sender of callbacks to [`SimConfig::callback`] for this app, if set, for tests that
    /// send callbacks of their own (`Alert.RequestOverLimit`, deliberately wrong ones).
    pub fn callback_sender(&self) -> Option<CallbackSender> {
        self.state.callback.clone()
    }

    /// A profile value as stored now (after any portrait_set), for tests: raw JSON text, or None
    /// if the tag is unset or the account does not exist.
    pub fn profile_value(&self, account: &str, tag: &str) -> Option<String> {
        self.state.profiles.value_text(account, tag)
    }

    /// Stops accepting, closes every connection, abandons callbacks in flight and awaits every
    /// sim task. Re-raises a panic of any connection task, so a test fails loudly instead of
    /// hanging.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        self.state.pending_listener.lock().take();
        self.state.callback_tasks.close();
        self.state.callback_tasks.wait().await;
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
                Api::QueryOnlineStatus
                | Api::AccountCheck
                | Api::GroupInfo
                | Api::GroupMemberInfo => stats.list_calls += 1,
                Api::Other => stats.other_calls += 1,
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

    fn count_callback(&self, answer: &Result<(StatusCode, Bytes), CallbackError>) {
        let mut stats = self.stats.lock();
        stats.callbacks_sent += 1;
        if !fire::delivered(answer) {
            stats.callback_failures += 1;
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
