//! The sim's own Tencent JSON: decoding `portrait_get` requests and encoding every answer.
//!
//! Written apart from the gateway's `wire` on purpose: the equality tests and the property test
//! compare the gateway's answers with the sim's, so the sim must not reuse the code it judges.
//! It shares only Tencent's standard tag list ([`crate::wire::STANDARD_TAGS`], a fact, not
//! logic). Requests are read into `serde_json::Value`s; answers are plain derived structs
//! holding `Value`s, whose field order is that of Tencent's examples (the gateway copies
//! upstream bytes through, so tests compare answers byte for byte).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Tencent's error codes, as its documentation lists them (reference §3).
pub(crate) mod code {
    pub(crate) const DECODE_FAIL: i64 = 40001;
    pub(crate) const ACCOUNT_MISSING: i64 = 40002;
    pub(crate) const ACCOUNT_NOT_FOUND: i64 = 40003;
    pub(crate) const NOT_ADMIN: i64 = 40004;
    pub(crate) const READ_FAIL: i64 = 40006;
    pub(crate) const TAG_NOT_FOUND: i64 = 40009;
    pub(crate) const FREQUENCY_LIMIT: i64 = 60007;
    pub(crate) const BAD_PATH: i64 = 60009;
    pub(crate) const SDKAPPID_MISSING: i64 = 60012;
    pub(crate) const BAD_URL_PARAMETER: i64 = 60025;
    pub(crate) const USERSIG_EMPTY: i64 = 70002;
    pub(crate) const SDKAPPID_MISMATCH: i64 = 70014;
}

/// `ErrorInfo` texts Tencent sends with the codes above.
pub(crate) mod info {
    pub(crate) const DECODE_FAIL: &str = "Err_Profile_Comm_Decode_Fail";
    pub(crate) const ACCOUNT_MISSING: &str = "Err_Profile_Comm_Account_Missing";
    pub(crate) const TOO_MANY_ACCOUNTS: &str = "Err_Profile_Comm_Too_Many_Accounts";
    pub(crate) const TAG_NOT_FOUND: &str = "Err_Profile_Tag_Not_Found";
    pub(crate) const ACCOUNT_NOT_FOUND: &str = "Err_Profile_Account_Not_Found";
    pub(crate) const READ_FAIL: &str = "Err_Profile_PortraitGet_Read_Custom_Data_Fail";
    pub(crate) const FREQUENCY_LIMIT: &str = "REST API call frequency exceeds the limit";
}

/// Tencent's cap on `To_Account` in one `portrait_get`.
const MAX_ACCOUNTS: usize = 100;

/// The two fields of a `portrait_get` request, exactly as named, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetRequest {
    pub accounts: Vec<String>,
    pub tags: Vec<String>,
}

/// A whole-call failure: `ErrorCode` and `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: i64,
    pub info: &'static str,
}

/// One account's entry in a `portrait_get` answer.
pub(crate) enum Entry {
    /// Found: `(tag, value)` for every asked tag that is set, in `TagList` order.
    Found(String, Vec<(String, Value)>),
    /// Failed on its own: listed in `Fail_Account` too.
    Failed(String, i64, &'static str),
}

/// The top-level members of a request that Tencent reads, as JSON text; other members are
/// skipped unread. A read member named twice makes the request undecodable. Each member's text
/// is decoded when its own check comes (see [`decode_get`]).
#[derive(Default)]
struct Members {
    to_account: Option<Box<RawValue>>,
    tag_list: Option<Box<RawValue>>,
}

/// Tencent's envelope, in the field order of its examples.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "ActionStatus")]
    action_status: &'a str,
    #[serde(rename = "ErrorCode")]
    error_code: i64,
    #[serde(rename = "ErrorInfo")]
    error_info: &'a str,
    #[serde(rename = "ErrorDisplay")]
    error_display: &'a str,
}

#[derive(Serialize)]
struct GetAnswer<'a> {
    #[serde(rename = "UserProfileItem")]
    items: Vec<AccountItem>,
    #[serde(rename = "Fail_Account", skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
    #[serde(flatten)]
    envelope: Envelope<'a>,
}

/// One account's entry; a failed one has no `ProfileItem`.
#[derive(Serialize)]
struct AccountItem {
    #[serde(rename = "To_Account")]
    account: String,
    #[serde(rename = "ProfileItem", skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<TagValue>>,
    #[serde(rename = "ResultCode")]
    code: i64,
    #[serde(rename = "ResultInfo")]
    info: &'static str,
}

#[derive(Serialize)]
struct TagValue {
    #[serde(rename = "Tag")]
    tag: String,
    #[serde(rename = "Value")]
    value: Value,
}

// === decoding ===

impl Refusal {
    fn decode_fail() -> Refusal {
        Refusal {
            code: code::DECODE_FAIL,
            info: info::DECODE_FAIL,
        }
    }
}

/// Reads a `portrait_get` body as Tencent does: a JSON object whose `To_Account` is a
/// non-empty array of at most 100 strings (missing, `null` or empty: 40002) and whose `TagList`
/// is a non-empty array of strings (40001 otherwise). Which tags exist is the caller's check.
///
/// Checks run in that order, and each member is decoded by its own check: a body without
/// `To_Account` is 40002 even if its `TagList` holds a string that does not decode (a lone
/// surrogate escape, which only a full decode notices). Fuzzing found the gateway and the sim
/// disagreeing there; this order is the one both now follow.
pub(crate) fn decode_get(body: &[u8]) -> Result<GetRequest, Refusal> {
    let members: Members = serde_json::from_slice(body).map_err(|_| Refusal::decode_fail())?;
    let accounts = match members.to_account.as_deref().map(value_of) {
        None | Some(Some(Value::Null)) => Vec::new(),
        Some(value) => value.and_then(strings).ok_or_else(Refusal::decode_fail)?,
    };
    if accounts.is_empty() {
        return Err(Refusal {
            code: code::ACCOUNT_MISSING,
            info: info::ACCOUNT_MISSING,
        });
    }
    if accounts.len() > MAX_ACCOUNTS {
        return Err(Refusal {
            code: code::DECODE_FAIL,
            info: info::TOO_MANY_ACCOUNTS,
        });
    }
    let tags = members
        .tag_list
        .as_deref()
        .and_then(value_of)
        .and_then(strings)
        .filter(|tags| !tags.is_empty())
        .ok_or_else(Refusal::decode_fail)?;
    Ok(GetRequest { accounts, tags })
}

/// A member's text decoded in full; `None` if it does not decode.
fn value_of(raw: &RawValue) -> Option<Value> {
    serde_json::from_str(raw.get()).ok()
}

/// The strings of a JSON array of strings; `None` for anything else.
fn strings(value: Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Members::default();
        while let Some(name) = map.next_key::<String>()? {
            let slot = match name.as_str() {
                "To_Account" => &mut members.to_account,
                "TagList" => &mut members.tag_list,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom("a member is named twice"));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(members)
    }
}

// === encoding ===

/// A whole-call failure body.
pub(crate) fn error_body(code: i64, info: &str) -> Vec<u8> {
    to_vec(&Envelope {
        action_status: "FAIL",
        error_code: code,
        error_info: info,
        error_display: "",
    })
}

/// The body of a call that succeeded and answers nothing else (`portrait_set`).
pub(crate) fn ok_body() -> Vec<u8> {
    to_vec(&ok_envelope())
}

/// A successful `portrait_get` answer with `entries` in request order.
pub(crate) fn get_answer(entries: Vec<Entry>) -> Vec<u8> {
    let mut failed = Vec::new();
    let items = entries
        .into_iter()
        .map(|entry| match entry {
            Entry::Found(account, values) => AccountItem {
                account,
                profile: Some(
                    values
                        .into_iter()
                        .map(|(tag, value)| TagValue { tag, value })
                        .collect(),
                ),
                code: 0,
                info: "",
            },
            Entry::Failed(account, code, info) => {
                failed.push(account.clone());
                AccountItem {
                    account,
                    profile: None,
                    code,
                    info,
                }
            }
        })
        .collect();
    to_vec(&GetAnswer {
        items,
        failed,
        envelope: ok_envelope(),
    })
}

/// The echo of an API the sim does not implement (`api` as `service/command`), with `body`, a
/// JSON object, embedded byte for byte.
pub(crate) fn echo_answer(api: &str, body: &str) -> Vec<u8> {
    let api = serde_json::to_string(api).expect("a string always serialises");
    let mut out = Vec::with_capacity(body.len() + api.len() + 80);
    out.extend_from_slice(br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Echo":{"Api":"#);
    out.extend_from_slice(api.as_bytes());
    out.extend_from_slice(br#","Body":"#);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b"}}");
    out
}

fn ok_envelope() -> Envelope<'static> {
    Envelope {
        action_status: "OK",
        error_code: 0,
        error_info: "",
        error_display: "",
    }
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("strings, integers and Values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> i64 {
        decode_get(body.as_bytes()).map_or_else(|r| r.code, |_| 0)
    }

    #[test]
    fn request_shapes_get_tencents_codes() {
        let tags = r#""TagList":["Tag_Profile_IM_Nick"]"#;
        let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        let cases = [
            (format!(r#"{{"To_Account":["a"],{tags}}}"#), 0),
            (format!(r#"{{"To_Account":["a"],{tags},"x":1e999}}"#), 0),
            (format!(r#"{{"To_Account":null,{tags}}}"#), 40002),
            (format!(r#"{{"To_Account":[],{tags}}}"#), 40002),
            (format!(r#"{{{tags}}}"#), 40002),
            (format!(r#"{{"To_Account":[1],{tags}}}"#), 40001),
            (format!(r#"{{"To_Account":{many:?},{tags}}}"#), 40001),
            (r#"{"To_Account":["a"],"TagList":[]}"#.to_owned(), 40001),
            (r#"{"To_Account":["a"],"TagList":null}"#.to_owned(), 40001),
            (r#"{"To_Account":["a"]}"#.to_owned(), 40001),
            (
                format!(r#"{{"To_Account":["a"],"To_Account":["b"],{tags}}}"#),
                40001,
            ),
            (r#"[["a"],["Tag_Profile_IM_Nick"]]"#.to_owned(), 40001),
            (format!(r#"{{"To_Account":["a"],{tags}}} trailing"#), 40001),
            // Fuzzing: each member is decoded by its own check, so the missing To_Account wins
            // over a TagList string that does not decode (a lone surrogate).
            (
                r#"{"To_Fccount":["a"],"TagList":["\uDa00"]}"#.to_owned(),
                40002,
            ),
            (
                r#"{"To_Account":["a"],"TagList":["\uDa00"]}"#.to_owned(),
                40001,
            ),
            (
                r#"{"To_Account":["\uDa00"],"TagList":["x"]}"#.to_owned(),
                40001,
            ),
        ];
        for (body, code) in cases {
            assert_eq!(code_of(&body), code, "{body}");
        }
    }

    #[test]
    fn envelopes_keep_tencents_field_order() {
        assert_eq!(
            error_body(40009, "Err_Profile_Tag_Not_Found"),
            br#"{"ActionStatus":"FAIL","ErrorCode":40009,"ErrorInfo":"Err_Profile_Tag_Not_Found","ErrorDisplay":""}"#
        );
        assert_eq!(
            ok_body(),
            br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""}"#
        );
        let answer = get_answer(vec![Entry::Failed("u".into(), 40006, "x")]);
        let text = String::from_utf8(answer).expect("utf-8");
        assert!(
            text.starts_with(r#"{"UserProfileItem":["#)
                && text.contains(r#""Fail_Account":["u"],"ActionStatus":"OK""#),
            "{text}"
        );
    }
}
