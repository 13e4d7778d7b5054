//! `v4/im_open_login_svc/account_check`: whether up to 100 accounts are imported (reference
//! §9.2).
//!
//! Request `{"CheckItem":[{"UserID":".."},..]}`. One `ResultItem` per item, in request order: an
//! existing account `user{N}` is `Imported`, any other UserID `NotImported` (both `ResultCode`
//! 0, as Tencent documents), an account whose reads fail `ResultCode` 70500 with no
//! `AccountStatus` (the sim's choice: a failed check has no status to report). Whole-call
//! refusals, checked in this order (the codes are the sim's choice, from the account APIs'
//! family): not a JSON object 90001; `CheckItem` not a non-empty array 70402; more than 100
//! items 70402; an item not an object with a non-empty string `UserID` 70402.

use serde::Serialize;
use serde_json::Value;

use super::api::Outcome;
use super::lists::{self, Envelope};
use super::profiles::Profiles;

/// Tencent's cap on `CheckItem` in one call.
const MAX_ITEMS: usize = 100;

/// Tencent's account APIs' "invalid parameters".
const INVALID_PARAMETERS: i64 = 70402;
/// Per account: its reads fail.
const INTERNAL_ERROR: i64 = 70500;

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(rename = "ResultItem")]
    items: Vec<ResultItem>,
}

#[derive(Serialize)]
struct ResultItem {
    #[serde(rename = "UserID")]
    user_id: String,
    #[serde(rename = "ResultCode")]
    code: i64,
    #[serde(rename = "ResultInfo")]
    info: &'static str,
    /// `Imported` or `NotImported`; absent from a failed item.
    #[serde(rename = "AccountStatus", skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

/// The answer to `body`.
pub(super) fn answer(profiles: &Profiles, body: &[u8]) -> Outcome {
    let user_ids = match decode(body) {
        Ok(user_ids) => user_ids,
        Err(refused) => return refused,
    };
    let items = user_ids
        .into_iter()
        .map(|user_id| {
            let (code, info, status) = match profiles.account_number(&user_id) {
                None => (0, "", Some("NotImported")),
                Some(n) if Profiles::read_fails(n) => (INTERNAL_ERROR, "internal error", None),
                Some(_) => (0, "", Some("Imported")),
            };
            ResultItem {
                user_id,
                code,
                info,
                status,
            }
        })
        .collect();
    lists::answer(&Answer {
        envelope: Envelope::ok(),
        items,
    })
}

/// The UserIDs of the request, in order.
fn decode(body: &[u8]) -> Result<Vec<String>, Outcome> {
    let members = lists::object(body)?;
    let invalid = |info: &str| lists::refuse(INVALID_PARAMETERS, info);
    let items = members
        .get("CheckItem")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| invalid("CheckItem must be a non-empty array"))?;
    if items.len() > MAX_ITEMS {
        return Err(invalid("CheckItem holds more than 100 items"));
    }
    items
        .iter()
        .map(|item| {
            item.get("UserID")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| invalid("every CheckItem needs a non-empty string UserID"))
}
