//! What the four list reads (`query_online_status`, `account_check`, `get_group_info`,
//! `get_specified_group_member_info`) share: reading a body as a JSON object and its members
//! as lists of ids or names, applying field filters, and Tencent's envelope of these APIs (no `ErrorDisplay`, unlike the
//! profile APIs), for answers and whole-call refusals alike.
//!
//! Each API's own checks and answer are its own file's (`online.rs`, `account_check.rs`,
//! `group_info.rs`, `group_members.rs`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::api::Outcome;

/// The body is not a JSON object (Tencent's "JSON format parse failed").
pub(super) const PARSE_FAIL: i64 = 90001;

/// `ErrorInfo` of [`PARSE_FAIL`].
const PARSE_FAIL_INFO: &str = "Fail to Parse json data of body, Please check it";

/// A request body's members, by name.
pub(super) type Members = Map<String, Value>;

/// The field names a filter keeps; `None` (no filter) keeps every field.
pub(super) type Names = Option<Vec<String>>;

/// The envelope of these APIs, in the order of Tencent's `query_online_status` example.
#[derive(Serialize)]
pub(super) struct Envelope {
    #[serde(rename = "ActionStatus")]
    action_status: &'static str,
    #[serde(rename = "ErrorInfo")]
    error_info: String,
    #[serde(rename = "ErrorCode")]
    error_code: i64,
}

// === impl Envelope ===

impl Envelope {
    /// The envelope of an answer: `OK`, code 0.
    pub(super) fn ok() -> Envelope {
        Envelope {
            action_status: "OK",
            error_info: String::new(),
            error_code: 0,
        }
    }
}

/// A whole-call refusal: HTTP 200, `{"ActionStatus":"FAIL","ErrorInfo":info,"ErrorCode":code}`.
pub(super) fn refuse(code: i64, info: &str) -> Outcome {
    Outcome {
        code,
        body: encode(&Envelope {
            action_status: "FAIL",
            error_info: info.to_owned(),
            error_code: code,
        }),
    }
}

/// A successful answer (its envelope flattened in).
pub(super) fn answer(body: &impl Serialize) -> Outcome {
    Outcome {
        code: 0,
        body: encode(body),
    }
}

/// The body's members if it is a JSON object; else the refusal [`PARSE_FAIL`].
pub(super) fn object(body: &[u8]) -> Result<Members, Outcome> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(members)) => Ok(members),
        _ => Err(refuse(PARSE_FAIL, PARSE_FAIL_INFO)),
    }
}

/// The ids of a non-empty JSON array of non-empty strings; `None` for anything else (missing,
/// `null`, not an array, empty, or holding anything but a non-empty string).
pub(super) fn ids(value: Option<&Value>) -> Option<Vec<String>> {
    let ids = names(value?)?;
    (!ids.is_empty() && ids.iter().all(|id| !id.is_empty())).then_some(ids)
}

/// The strings of a JSON array of strings (a filter's field names); `None` for anything else.
pub(super) fn names(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// An optional filter `name` of `members`: `Ok(None)` when absent, `Err(())` when present but
/// not an array of strings.
pub(super) fn filter(members: &Members, name: &str) -> Result<Names, ()> {
    members.get(name).map(|v| names(v).ok_or(())).transpose()
}

/// Whether `names` keeps the field `name`.
pub(super) fn keeps(names: &Names, name: &str) -> bool {
    names
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == name))
}

/// The `fields` that `names` keeps, as JSON members.
pub(super) fn kept<'a>(
    fields: Vec<(&'static str, Value)>,
    names: &'a Names,
) -> impl Iterator<Item = (String, Value)> + 'a {
    fields
        .into_iter()
        .filter(move |(name, _)| keeps(names, name))
        .map(|(name, value)| (name.to_owned(), value))
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("strings, integers and Values always serialise")
}
