//! `v4/group_open_http_svc/get_specified_group_member_info`: up to 50 named members of one group
//! (cloud.tencent.com/document/product/269/112002, trtc.io/document/64897), from `groups.rs`,
//! with their presence from `presence.rs`.
//!
//! Request `{"GroupId":"..", "Member_List_Account":[..], "MemberInfoFilter":[..],
//! "MemberRoleFilter":[..], "AppDefinedDataFilter_GroupMember":[..]}`. Answer
//! `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"GroupId":"..","MemberList":[..]}`: one
//! entry per `Member_List_Account` occurrence in request order that is a member of the group and
//! whose `Role` `MemberRoleFilter` (if given) names. An account that is not a member gets no
//! entry: Tencent's page shows no per-member error, and its role filter already makes
//! `MemberList` a subset (the sim's choice).
//!
//! An entry has `Member_Account`, `Role`, `JoinTime`, `MsgSeq`, `MsgFlag`, `LastSendMsgTime`,
//! `MuteUntil` and `NameCard` (the fields of the page's basic answer); with `MemberInfoFilter`,
//! `Member_Account` and the fields it names, and `OnlineStatus` (`Online`, `PushOnline` or
//! `Offline`) only when it names that. Unknown names are ignored; the sim's members have no
//! custom fields, so `AppDefinedDataFilter_GroupMember` is checked and answers nothing. Keys are
//! in alphabetical order, as in Tencent's examples.
//!
//! Whole-call refusals (the page's codes), in this order: not a JSON object 90001; `GroupId`
//! missing or not a string 10004, empty 10015; `Member_List_Account` not a non-empty array of
//! non-empty strings 10004; more than 50 10005; a filter not an array of strings 10004; a group
//! that does not exist 10010; one whose reads fail 10002.

use serde::Serialize;
use serde_json::{Map, Value};

use super::api::Outcome;
use super::group_info::INVALID_PARAMETERS;
use super::groups::{Groups, Member};
use super::lists::{self, keeps, Envelope, Names};
use super::presence::{Presence, Status};

/// Tencent's cap on `Member_List_Account` in one call.
const MAX_MEMBERS: usize = 50;

/// The page's "more than 50 members asked for".
const TOO_MANY_MEMBERS: i64 = 10005;
/// The page's "invalid group ID".
const INVALID_GROUP_ID: i64 = 10015;

/// The member field returned only when `MemberInfoFilter` names it.
const ONLINE_STATUS: &str = "OnlineStatus";

/// A decoded request.
struct Request {
    group: String,
    accounts: Vec<String>,
    fields: Names,
    roles: Names,
}

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(rename = "GroupId")]
    group: String,
    #[serde(rename = "MemberList")]
    members: Vec<Map<String, Value>>,
}

/// The answer to `body`.
pub(super) fn answer(groups: &Groups, presence: &Presence, body: &[u8]) -> Outcome {
    let request = match decode(body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let n = match groups.readable(&request.group) {
        Ok(n) => n,
        Err((code, info)) => return lists::refuse(code, info),
    };
    let members = groups.members(n);
    let entries = request
        .accounts
        .iter()
        .filter_map(|account| members.iter().find(|m| m.account == *account))
        .filter(|m| keeps(&request.roles, m.role))
        .map(|m| entry(m, presence, &request.fields))
        .collect();
    lists::answer(&Answer {
        envelope: Envelope::ok(),
        group: request.group,
        members: entries,
    })
}

fn entry(member: &Member, presence: &Presence, fields: &Names) -> Map<String, Value> {
    let mut entry = member.entry("MuteUntil", true, fields);
    if fields.is_some() && keeps(fields, ONLINE_STATUS) {
        let status = presence
            .status(&member.account)
            .map_or("Offline", Status::name);
        entry.insert(ONLINE_STATUS.to_owned(), status.into());
    }
    entry
}

fn decode(body: &[u8]) -> Result<Request, Outcome> {
    let members = lists::object(body)?;
    let invalid = |info: &str| lists::refuse(INVALID_PARAMETERS, info);
    let group = match members.get("GroupId") {
        Some(Value::String(id)) if id.is_empty() => {
            return Err(lists::refuse(INVALID_GROUP_ID, "GroupId is empty"))
        }
        Some(Value::String(id)) => id.clone(),
        _ => return Err(invalid("GroupId must be a string")),
    };
    let accounts = lists::ids(members.get("Member_List_Account"))
        .ok_or_else(|| invalid("Member_List_Account must be a non-empty array of UserIDs"))?;
    if accounts.len() > MAX_MEMBERS {
        return Err(lists::refuse(
            TOO_MANY_MEMBERS,
            "Member_List_Account holds more than 50 members",
        ));
    }
    let filter = |name: &str| {
        lists::filter(&members, name)
            .map_err(|()| invalid(&format!("{name} must be an array of strings")))
    };
    let fields = filter("MemberInfoFilter")?;
    let roles = filter("MemberRoleFilter")?;
    filter("AppDefinedDataFilter_GroupMember")?;
    Ok(Request {
        group,
        accounts,
        fields,
        roles,
    })
}
