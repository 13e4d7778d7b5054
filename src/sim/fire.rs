//! The sim's own callbacks: after a profile change, `Profile.CallbackPortraitSet` goes to the
//! configured URL ([`super::SimConfig::callback`]) the way Tencent fires it for both kinds of
//! change (reference §7.2): a user editing their own profile in the app
//! ([`super::Sim::client_portrait_set`], awaited) and an admin's REST `portrait_set` (in the
//! background, after the set is decided, so it never delays the set's answer). After a client's
//! login state changes ([`super::Sim::set_online_status`], awaited), `State.StateChange`
//! (reference §9.3).
//!
//! Counts every callback fired and every failure in [`super::SimStats`]. Sending itself is
//! `callbacks.rs`; validating and storing the change is `api.rs`'s `portrait_set` and
//! `presence.rs`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api;
use super::callbacks::{self, CallbackError, PORTRAIT_SET_COMMAND, STATE_CHANGE_COMMAND};
use super::presence::Status;
use super::SimState;

/// `OptPlatform` of a profile change made in the app (a client SDK) rather than over REST.
const CLIENT_PLATFORM: &str = "Android";

/// Why a presence change is refused: the account does not exist (not imported).
const NOT_IMPORTED: i64 = 70107;

/// Why [`super::Sim::client_portrait_set`] did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSetError {
    /// The change was refused, nothing changed and no callback was sent: a profile change as a
    /// `portrait_set` of it would be (40001, 40003, 40009); a presence change of an account
    /// that does not exist (70107).
    #[error("change refused with {0}")]
    Refused(i64),
    /// The status is not `Online`, `PushOnline` or `Offline`; nothing changed.
    #[error("no such online status: {0}")]
    UnknownStatus(String),
    /// The profile changed, but the callback got no answer.
    #[error("changed, but {0}")]
    Callback(#[from] CallbackError),
}

/// A REST `portrait_set` body, as far as the callback needs it.
#[derive(Deserialize)]
struct RestSet {
    #[serde(rename = "From_Account")]
    account: String,
    #[serde(rename = "ProfileItem")]
    items: Vec<RestItem>,
}

#[derive(Deserialize)]
struct RestItem {
    #[serde(rename = "Tag")]
    tag: String,
    #[serde(rename = "Value")]
    value: Value,
}

/// Changes `account`'s profile as the client SDK would (validated like `portrait_set`, not
/// rate limited, not logged as a call), then, with a callback URL configured, sends
/// `Profile.CallbackPortraitSet` and returns its answer.
pub(super) async fn client_set(
    state: &SimState,
    account: &str,
    items: &[(&str, Value)],
) -> Result<Option<(StatusCode, Bytes)>, ClientSetError> {
    let items_json: Vec<Value> = items
        .iter()
        .map(|(tag, value)| json!({"Tag": tag, "Value": value}))
        .collect();
    let body = json!({"From_Account": account, "ProfileItem": items_json}).to_string();
    let outcome = api::answer_set(&state.profiles, body.as_bytes());
    if outcome.code != 0 {
        return Err(ClientSetError::Refused(outcome.code));
    }
    let body = callbacks::portrait_set_callback(account, items);
    send_client(state, PORTRAIT_SET_COMMAND, body, CLIENT_PLATFORM).await
}

/// Sets `account`'s login status as its client would (not rate limited, not logged as a call),
/// then, with a callback URL configured, sends `State.StateChange` and returns its answer.
pub(super) async fn set_status(
    state: &SimState,
    account: &str,
    status: &str,
) -> Result<Option<(StatusCode, Bytes)>, ClientSetError> {
    let status =
        Status::parse(status).ok_or_else(|| ClientSetError::UnknownStatus(status.to_owned()))?;
    if !state.presence.set(account, status) {
        return Err(ClientSetError::Refused(NOT_IMPORTED));
    }
    let (action, reason) = status.event();
    let body = callbacks::state_change_callback(account, action, reason);
    send_client(state, STATE_CHANGE_COMMAND, body, status.opt_platform()).await
}

/// Sends the callback of a change made in the app, if a callback URL is configured, and counts
/// it; its answer, `None` without a URL.
async fn send_client(
    state: &SimState,
    command: &str,
    body: Vec<u8>,
    platform: &str,
) -> Result<Option<(StatusCode, Bytes)>, ClientSetError> {
    let Some(sender) = &state.callback else {
        return Ok(None);
    };
    let answer = sender
        .request(command, body)
        .opt_platform(platform)
        .send()
        .await;
    state.count_callback(&answer);
    Ok(Some(answer?))
}

/// After a REST `portrait_set` that succeeded (its raw `query` and `body`), fires the callback
/// in the background, if one is configured. Shutdown abandons callbacks still in flight.
pub(super) fn after_rest_set(state: &Arc<SimState>, query: &str, body: &[u8]) {
    let Some(sender) = state.callback.clone() else {
        return;
    };
    // The set succeeded, so its body decodes; `Operator_Account` is the admin who called.
    let Ok(set) = serde_json::from_slice::<RestSet>(body) else {
        return;
    };
    let operator = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "identifier")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let items: Vec<(&str, &Value)> = set
        .items
        .iter()
        .map(|item| (item.tag.as_str(), &item.value))
        .collect();
    let body = callbacks::portrait_set_body(&operator, &set.account, &items);
    let task_state = Arc::clone(state);
    state.callback_tasks.spawn(async move {
        tokio::select! {
            _ = task_state.shutdown.cancelled() => {}
            answer = sender.send(PORTRAIT_SET_COMMAND, body) => task_state.count_callback(&answer),
        }
    });
}

/// Whether a callback's answer counts as delivered: Tencent's rule is HTTP 200 with a JSON
/// body (it ignores `ErrorCode` for after-event callbacks).
pub(super) fn delivered(answer: &Result<(StatusCode, Bytes), CallbackError>) -> bool {
    matches!(answer, Ok((status, body))
        if *status == StatusCode::OK && serde_json::from_slice::<Value>(body).is_ok())
}
