//! `v4/group_open_http_svc/get_group_info`: the profiles of up to 50 groups
//! (cloud.tencent.com/document/product/269/1616, trtc.io/document/34961), from `groups.rs`.
//!
//! Request `{"GroupIdList":[..], "ResponseFilter":{"GroupBaseInfoFilter":[..],
//! "MemberInfoFilter":[..], "AppDefinedDataFilter_Group":[..],
//! "AppDefinedDataFilter_GroupMember":[..]}}`. Answer `{"ActionStatus":"OK","ErrorInfo":"",
//! "ErrorCode":0,"GroupInfo":[..]}`, one entry per `GroupIdList` occurrence in request order,
//! each with its own `GroupId`, `ErrorCode` and `ErrorInfo` (as in Tencent's example): a group
//! that does not exist is only those three with 10010, one whose reads fail with 10002 (the
//! sim's choice of per-group codes, from the page's error table).
//!
//! Without `ResponseFilter` an entry has every base field and the whole `MemberList` (each
//! member: `Member_Account`, `Role`, `JoinTime`, `MsgSeq`, `MsgFlag`, `LastSendMsgTime`,
//! `ShutUpUntil`, as in Tencent's example). With one, as the page says, fields its filters do
//! not name are not returned: only the base fields `GroupBaseInfoFilter` names, and a
//! `MemberList` only with `MemberInfoFilter`, each member `Member_Account` plus the fields named
//! (the sim's reading of the page). Names the sim does not have are ignored; the sim's groups
//! have no custom fields, so the two `AppDefinedDataFilter_*` are checked and answer nothing.
//! Entries' keys are in alphabetical order, as Tencent's live answers are.
//!
//! Whole-call refusals, in this order: not a JSON object 90001; `GroupIdList` not a non-empty
//! array of non-empty strings 10004; more than 50 10004; `ResponseFilter` not an object, or one
//! of its filters not an array of strings, 10004.

use serde::Serialize;
use serde_json::{Map, Value};

use super::api::Outcome;
use super::groups::Groups;
use super::lists::{self, kept, Envelope, Members, Names};

/// Tencent's cap on `GroupIdList` in one call.
const MAX_GROUPS: usize = 50;

/// The page's "invalid parameters".
pub(super) const INVALID_PARAMETERS: i64 = 10004;

/// The filters of `ResponseFilter`, in the order they are checked.
const FILTERS: [&str; 4] = [
    "GroupBaseInfoFilter",
    "MemberInfoFilter",
    "AppDefinedDataFilter_Group",
    "AppDefinedDataFilter_GroupMember",
];

/// Which fields an entry carries.
struct Filter {
    base: Names,
    /// `None`: no `MemberList`.
    members: Option<Names>,
}

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(rename = "GroupInfo")]
    groups: Vec<Map<String, Value>>,
}

/// The answer to `body`, for app `appid`.
pub(super) fn answer(groups: &Groups, appid: u64, body: &[u8]) -> Outcome {
    let (ids, filter) = match decode(body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let entries = ids
        .into_iter()
        .map(|id| entry(groups, appid, &filter, id))
        .collect();
    lists::answer(&Answer {
        envelope: Envelope::ok(),
        groups: entries,
    })
}

fn entry(groups: &Groups, appid: u64, filter: &Filter, id: String) -> Map<String, Value> {
    let n = match groups.readable(&id) {
        Ok(n) => n,
        Err((code, info)) => return failed(id, code, info),
    };
    let members = groups.members(n);
    let mut entry = failed(id, 0, "");
    entry.extend(kept(groups.base_fields(n, appid, &members), &filter.base));
    if let Some(names) = &filter.members {
        let list = members
            .iter()
            .map(|m| Value::Object(m.entry("ShutUpUntil", false, names)))
            .collect();
        entry.insert("MemberList".to_owned(), Value::Array(list));
    }
    entry
}

/// A group entry with only its id and outcome.
fn failed(id: String, code: i64, info: &str) -> Map<String, Value> {
    Map::from_iter([
        ("GroupId".to_owned(), Value::String(id)),
        ("ErrorCode".to_owned(), code.into()),
        ("ErrorInfo".to_owned(), info.into()),
    ])
}

fn decode(body: &[u8]) -> Result<(Vec<String>, Filter), Outcome> {
    let members = lists::object(body)?;
    let invalid = |info: &str| lists::refuse(INVALID_PARAMETERS, info);
    let ids = lists::ids(members.get("GroupIdList"))
        .ok_or_else(|| invalid("GroupIdList must be a non-empty array of group IDs"))?;
    if ids.len() > MAX_GROUPS {
        return Err(invalid("GroupIdList holds more than 50 groups"));
    }
    let filter = match members.get("ResponseFilter") {
        None => Filter {
            base: None,
            members: Some(None),
        },
        Some(Value::Object(filters)) => response_filter(filters)
            .ok_or_else(|| invalid("ResponseFilter's filters must be arrays of strings"))?,
        Some(_) => return Err(invalid("ResponseFilter must be an object")),
    };
    Ok((ids, filter))
}

/// The filter a `ResponseFilter` object sets; `None` if one of its filters is malformed.
fn response_filter(filters: &Members) -> Option<Filter> {
    let [base, members, group_data, member_data] =
        FILTERS.map(|name| lists::filter(filters, name).ok());
    group_data?;
    member_data?;
    Some(Filter {
        base: Some(base?.unwrap_or_default()),
        members: members?.map(Some),
    })
}
