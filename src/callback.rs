//! Tencent's callbacks (reference §7): checked, acted on, relayed.
//!
//! `POST {callback.path}?SdkAppid=…&CallbackCommand=…[&Sign=…&RequestTime=…]`: `SdkAppid` must be
//! ours; with `callback.token` set, `Sign` must equal hex SHA-256(token ‖ RequestTime) (compared
//! in constant time) and `RequestTime` be within `callback.max_skew_seconds` of now; the body
//! must be a JSON object. A refused callback is answered HTTP 200
//! `{"ActionStatus":"FAIL","ErrorCode":1,…}` and changes nothing.
//!
//! Accepted: `Profile.CallbackPortraitSet` drops `From_Account`'s cached tags at once (in a
//! fleet on every gateway), under `portrait_set`'s race rule; `Alert.RequestOverLimit` lowers
//! the named API's pace, if the gateway calls it; `State.StateChange` drops `Info.To_Account`'s
//! cached online status, and the group callbacks (callback/groups.rs) the group reads' entries
//! they void (in a fleet on every gateway). Then every accepted callback, whatever its
//! command, is relayed unchanged to `callback.forward_url` when set (callback/relay.rs) and the
//! app's answer returned to Tencent; without one, or when the relay fails, it is answered OK
//! here. Invalidation always happens before the relay, so a dead handler never delays it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus::IntCounterVec;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{debug, info};

use crate::apis::{GET_GROUP_INFO, GET_GROUP_MEMBERS, QUERY_ONLINE_STATUS};
use crate::config::{CallbackConfig, SecretKey};
use crate::lists::ListApis;
use crate::metrics::Metrics;
use crate::passthrough::PassThrough;
use crate::service::ProfileService;
use crate::wire::Account;

mod groups;
mod relay;

use relay::Relay;

/// `Profile.CallbackPortraitSet`: a profile changed (client SDK or REST).
pub(crate) const PORTRAIT_SET_COMMAND: &str = "Profile.CallbackPortraitSet";
/// `Alert.RequestOverLimit`: an API reached 80 % of its limit.
pub(crate) const OVER_LIMIT_COMMAND: &str = "Alert.RequestOverLimit";
/// `State.StateChange`: a user's login state changed (reference §9.3).
pub(crate) const STATE_CHANGE_COMMAND: &str = "State.StateChange";

/// The answer Tencent expects from a handled callback.
const OK_BODY: &[u8] = br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#;

/// What a callback is answered: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallbackAnswer {
    /// The HTTP status (200 unless a relayed handler said otherwise).
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// The callback receiver; cheap to clone.
#[derive(Clone)]
pub(crate) struct Callbacks(Arc<Inner>);

struct Inner {
    sdkappid: u64,
    token: Option<SecretKey>,
    max_skew: Duration,
    relay: Option<Relay>,
    service: ProfileService,
    lists: ListApis,
    passthrough: PassThrough,
    /// `callbacks_total{command, result}`.
    counted: IntCounterVec,
}

/// Why a callback was refused; the `result` label and the `ErrorInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    SdkAppid,
    Sign,
    RequestTime,
    Body,
}

/// The fields of a callback body the gateway reads; the rest is only relayed.
#[derive(Deserialize)]
struct CallbackBody {
    #[serde(rename = "CallbackCommand")]
    command: Option<String>,
    #[serde(rename = "From_Account")]
    from_account: Option<String>,
    #[serde(rename = "ServiceName")]
    service_name: Option<String>,
    #[serde(rename = "Command")]
    api_command: Option<String>,
    #[serde(rename = "Info")]
    info: Option<StateInfo>,
    /// A group callback's fields.
    #[serde(flatten)]
    group: groups::GroupFields,
}

/// `State.StateChange`'s `Info`: whose state changed.
#[derive(Deserialize)]
struct StateInfo {
    #[serde(rename = "To_Account")]
    to_account: Option<String>,
}

impl Callbacks {
    /// A receiver for the app `sdkappid` acting on `service` and `passthrough`'s limiters.
    pub(crate) fn new(
        config: &CallbackConfig,
        sdkappid: u64,
        service: ProfileService,
        lists: ListApis,
        passthrough: PassThrough,
        metrics: &Metrics,
    ) -> Callbacks {
        let counted = metrics.register(IntCounterVec::new(
            prometheus::Opts::new(
                "callbacks_total",
                "Tencent callbacks received, by command (portrait_set, request_over_limit, \
                 state_change, group_change, other) \
                 and result (handled, or refused_<why>)",
            ),
            &["command", "result"],
        ));
        Callbacks(Arc::new(Inner {
            sdkappid,
            token: config.token.clone(),
            max_skew: config.max_skew,
            relay: config
                .forward_url
                .clone()
                .map(|url| Relay::new(url, metrics)),
            service,
            lists,
            passthrough,
            counted,
        }))
    }

    /// Checks, acts on and relays one callback. Never fails: every outcome is an answer.
    pub(crate) async fn receive(&self, query: Option<&str>, body: Bytes) -> CallbackAnswer {
        let query = query.unwrap_or("");
        let parsed = self.check(query, unix_now()).and_then(|command| {
            let fields: CallbackBody = serde_json::from_slice(&body).map_err(|_| Refusal::Body)?;
            Ok((command, fields))
        });
        let (command, fields) = match parsed {
            Ok(accepted) => accepted,
            Err(refusal) => return self.refuse(refusal),
        };
        let command = command.or(fields.command.clone()).unwrap_or_default();
        if let Err(refusal) = self.act(&command, &fields).await {
            return self.refuse(refusal);
        }
        self.count(&command, "handled");
        match &self.0.relay {
            Some(relay) => relay.relay(query, body).await.unwrap_or_else(ok_answer),
            None => ok_answer(),
        }
    }

    /// The query's checks; the `CallbackCommand` it names, if any.
    fn check(&self, query: &str, now_unix: u64) -> Result<Option<String>, Refusal> {
        let (mut sdkappid, mut command, mut sign, mut time) = (None, None, None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "SdkAppid" => &mut sdkappid,
                "CallbackCommand" => &mut command,
                "Sign" => &mut sign,
                "RequestTime" => &mut time,
                _ => continue,
            };
            slot.get_or_insert(value.into_owned());
        }
        if sdkappid.and_then(|s| s.parse::<u64>().ok()) != Some(self.0.sdkappid) {
            return Err(Refusal::SdkAppid);
        }
        if let Some(token) = &self.0.token {
            let time = time.ok_or(Refusal::RequestTime)?;
            let at: u64 = time.parse().map_err(|_| Refusal::RequestTime)?;
            if now_unix.abs_diff(at) > self.0.max_skew.as_secs() {
                return Err(Refusal::RequestTime);
            }
            let expected = format!("{:x}", Sha256::digest(format!("{}{time}", token.expose())));
            let given = sign.unwrap_or_default().to_ascii_lowercase();
            if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
                return Err(Refusal::Sign);
            }
        }
        Ok(command)
    }

    /// What the gateway itself does with an accepted callback.
    async fn act(&self, command: &str, fields: &CallbackBody) -> Result<(), Refusal> {
        match command {
            PORTRAIT_SET_COMMAND => {
                let account = fields
                    .from_account
                    .as_deref()
                    .filter(|a| !a.is_empty())
                    .ok_or(Refusal::Body)?;
                self.0.service.invalidate(&Account::from(account)).await;
                debug!(account, "profile changed at Tencent: cached tags dropped");
            }
            OVER_LIMIT_COMMAND => {
                let (Some(service), Some(api)) = (&fields.service_name, &fields.api_command) else {
                    return Err(Refusal::Body);
                };
                let label = crate::apis::label_of(service, api);
                let paced = self.0.passthrough.slow_down(&label);
                info!(api = %label, paced, "Tencent warns an API is near its limit");
            }
            STATE_CHANGE_COMMAND => {
                let account = fields
                    .info
                    .as_ref()
                    .and_then(|info| info.to_account.as_deref())
                    .filter(|a| !a.is_empty())
                    .ok_or(Refusal::Body)?;
                self.0
                    .lists
                    .invalidate(QUERY_ONLINE_STATUS.label, &[account])
                    .await;
                debug!(
                    account,
                    "login state changed at Tencent: cached status dropped"
                );
            }
            command if groups::COMMANDS.contains(&command) => {
                let change = groups::change(command, &fields.group).ok_or(Refusal::Body)?;
                let lists = &self.0.lists;
                lists
                    .invalidate(GET_GROUP_INFO.label, &[change.group])
                    .await;
                match change.all_members {
                    true => lists.invalidate_all_of(GET_GROUP_MEMBERS.label).await,
                    false => {
                        lists
                            .invalidate(GET_GROUP_MEMBERS.label, &change.members)
                            .await;
                    }
                }
                debug!(
                    group = change.group,
                    "group changed at Tencent: cached entries dropped"
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn refuse(&self, refusal: Refusal) -> CallbackAnswer {
        let (result, info) = match refusal {
            Refusal::SdkAppid => ("refused_sdkappid", "SdkAppid is not this app's"),
            Refusal::Sign => ("refused_sign", "Sign does not match the callback token"),
            Refusal::RequestTime => (
                "refused_request_time",
                "RequestTime is missing or too far from now",
            ),
            Refusal::Body => ("refused_body", "the body is not a valid callback"),
        };
        // At debug like every caller fault: anyone can send these; the counter shows them.
        debug!(reason = result, "callback refused");
        self.0.counted.with_label_values(&["any", result]).inc();
        let body = serde_json::json!({"ActionStatus": "FAIL", "ErrorCode": 1, "ErrorInfo": info});
        CallbackAnswer {
            status: 200,
            body: Bytes::from(body.to_string()),
        }
    }

    fn count(&self, command: &str, result: &str) {
        let command = match command {
            PORTRAIT_SET_COMMAND => "portrait_set",
            OVER_LIMIT_COMMAND => "request_over_limit",
            STATE_CHANGE_COMMAND => "state_change",
            c if groups::COMMANDS.contains(&c) => "group_change",
            _ => "other",
        };
        self.0.counted.with_label_values(&[command, result]).inc();
    }
}

fn ok_answer() -> CallbackAnswer {
    CallbackAnswer {
        status: 200,
        body: Bytes::from_static(OK_BODY),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
