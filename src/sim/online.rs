//! `v4/openim/query_online_status`: the presence of up to 500 accounts (reference §9.1), read
//! from the presence store (`presence.rs`).
//!
//! Request `{"To_Account":[..], "IsNeedDetail":0|1, "IsReturnCustomStatus":0|1,
//! "IsReturnInstid":0|1}`, the flags optional (absent = 0). One entry per `To_Account`
//! occurrence, in request order: an existing account in `QueryResult`, any other in `ErrorList`
//! (70107), an account whose reads fail there too (70500). Whole-call refusals, checked in this
//! order (Tencent's pages name none of them; the codes are the sim's choice): not a JSON object
//! 90001; `To_Account` not a non-empty array of non-empty strings 90003; more than 500 90011; a
//! flag other than the integer 0 or 1 90010 (checked in the order `IsNeedDetail`,
//! `IsReturnCustomStatus`, `IsReturnInstid`).

use serde::Serialize;

use super::api::Outcome;
use super::lists::{self, Envelope, Members};
use super::presence::{self, Presence};
use super::profiles::Profiles;

/// Tencent's cap on `To_Account` in one call.
const MAX_ACCOUNTS: usize = 500;

const ACCOUNTS_MISSING: i64 = 90003;
const BAD_FLAG: i64 = 90010;
const TOO_MANY_ACCOUNTS: i64 = 90011;
/// Per account: not an existing account (not imported).
const NOT_IMPORTED: i64 = 70107;
/// Per account: its reads fail.
const INTERNAL_ERROR: i64 = 70500;

/// A decoded request.
struct Request {
    accounts: Vec<String>,
    detail: bool,
    custom_status: bool,
}

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(rename = "QueryResult")]
    found: Vec<Found>,
    /// Always sent, `[]` when nothing failed (Tencent's docs leave this open).
    #[serde(rename = "ErrorList")]
    failed: Vec<Failed>,
}

#[derive(Serialize)]
struct Found {
    #[serde(rename = "To_Account")]
    account: String,
    #[serde(rename = "Status")]
    status: &'static str,
    /// With `IsReturnCustomStatus:1` only. Tencent does not name the field; `CustomStatus` is
    /// the sim's choice (the name `State.StateChange` uses).
    #[serde(rename = "CustomStatus", skip_serializing_if = "Option::is_none")]
    custom_status: Option<String>,
    /// With `IsNeedDetail:1` only, and never for an `Offline` account (as in Tencent's example).
    #[serde(rename = "Detail", skip_serializing_if = "Option::is_none")]
    detail: Option<Vec<Device>>,
}

#[derive(Serialize)]
struct Device {
    #[serde(rename = "Platform")]
    platform: &'static str,
    #[serde(rename = "Status")]
    status: &'static str,
}

#[derive(Serialize)]
struct Failed {
    #[serde(rename = "To_Account")]
    account: String,
    #[serde(rename = "ErrorCode")]
    code: i64,
}

/// The answer to `body`. `IsReturnInstid` is checked but adds nothing: the sim's devices have
/// no instance ids.
pub(super) fn answer(profiles: &Profiles, presence: &Presence, body: &[u8]) -> Outcome {
    let mut request = match decode(body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let mut answer = Answer {
        envelope: Envelope::ok(),
        found: Vec::new(),
        failed: Vec::new(),
    };
    for account in std::mem::take(&mut request.accounts) {
        match profiles.account_number(&account) {
            None => answer.failed.push(Failed {
                account,
                code: NOT_IMPORTED,
            }),
            Some(n) if Profiles::read_fails(n) => answer.failed.push(Failed {
                account,
                code: INTERNAL_ERROR,
            }),
            Some(n) => answer.found.push(found(presence, &request, account, n)),
        }
    }
    lists::answer(&answer)
}

fn found(presence: &Presence, request: &Request, account: String, n: u64) -> Found {
    let status = presence.status_of(n);
    let devices = status.device().map(|platform| {
        vec![Device {
            platform,
            status: status.name(),
        }]
    });
    Found {
        account,
        status: status.name(),
        custom_status: request.custom_status.then(|| presence::custom_status(n)),
        detail: devices.filter(|_| request.detail),
    }
}

fn decode(body: &[u8]) -> Result<Request, Outcome> {
    let members = lists::object(body)?;
    let accounts = lists::ids(members.get("To_Account")).ok_or_else(|| {
        lists::refuse(
            ACCOUNTS_MISSING,
            "To_Account must be a non-empty array of UserIDs",
        )
    })?;
    if accounts.len() > MAX_ACCOUNTS {
        return Err(lists::refuse(
            TOO_MANY_ACCOUNTS,
            "To_Account holds more than 500 UserIDs",
        ));
    }
    let detail = flag_of(&members, "IsNeedDetail")?;
    let custom_status = flag_of(&members, "IsReturnCustomStatus")?;
    flag_of(&members, "IsReturnInstid")?;
    Ok(Request {
        accounts,
        detail,
        custom_status,
    })
}

/// Flag `name`: absent is 0; anything but the integer 0 or 1 is refused with 90010.
fn flag_of(members: &Members, name: &str) -> Result<bool, Outcome> {
    match members.get(name).map(serde_json::Value::as_u64) {
        None | Some(Some(0)) => Ok(false),
        Some(Some(1)) => Ok(true),
        Some(_) => Err(lists::refuse(BAD_FLAG, &format!("{name} must be 0 or 1"))),
    }
}
