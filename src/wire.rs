//! Tencent IM JSON on the wire: `portrait_get` request decoding and validation, upstream answer
//! decoding, and response encoding.
//!
//! Pure: bytes in, typed values out, no I/O and no clock. Used by the gateway's service
//! (service.rs), routes (error bodies) and batcher (upstream answers). The simulated Tencent
//! (sim.rs) deliberately does not use it, only [`STANDARD_TAGS`]: it is the oracle the gateway is
//! tested against. Tencent's names appear in serde attributes, in the tag constants below and in
//! the encoders (`wire/encode.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;

mod encode;
mod plain;
#[cfg(test)]
mod tests;

pub(crate) use encode::{encode_error, error_body, ResponseWriter};

/// Tencent's cap on `To_Account` per `portrait_get` call.
pub(crate) const MAX_ACCOUNTS_PER_REQUEST: usize = crate::apis::PORTRAIT_GET_ROW.max_ids;

/// Prefix of every custom profile tag (`Tag_Profile_Custom_Test`).
pub(crate) const CUSTOM_TAG_PREFIX: &str = "Tag_Profile_Custom_";

/// Tencent's standard profile tags (reference §4.2), in a fixed order: a standard [`Tag`] is an
/// index into this table.
pub const STANDARD_TAGS: [&str; 12] = [
    "Tag_Profile_IM_Nick",
    "Tag_Profile_IM_Gender",
    "Tag_Profile_IM_BirthDay",
    "Tag_Profile_IM_Location",
    "Tag_Profile_IM_SelfSignature",
    "Tag_Profile_IM_AllowType",
    "Tag_Profile_IM_Language",
    "Tag_Profile_IM_Image",
    "Tag_Profile_IM_MsgSettings",
    "Tag_Profile_IM_AdminForbidType",
    "Tag_Profile_IM_Level",
    "Tag_Profile_IM_Role",
];

/// A Tencent UserID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account(Arc<str>);

/// A profile tag. Standard tags are interned (an index, no allocation, cheap to compare);
/// custom tags carry their name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(TagName);

#[derive(Clone, PartialEq, Eq, Hash)]
enum TagName {
    Standard(u8),
    Custom(Arc<str>),
}

/// A profile value exactly as the upstream sent it: opaque JSON text (a number, a string, ...).
pub(crate) type RawJson = Arc<RawValue>;

/// A decoded, validated `portrait_get` request. Accounts borrow from the request body.
#[derive(Debug, Clone, PartialEq)]
pub struct PortraitGetRequest<'a> {
    /// `To_Account`, in request order, duplicates kept.
    pub accounts: Vec<Cow<'a, str>>,
    /// `TagList`, in request order, duplicates kept.
    pub tags: Vec<Tag>,
}

/// One account's entry in an upstream `portrait_get` answer.
#[derive(Debug, Deserialize)]
pub struct UpstreamProfile<'a> {
    #[serde(rename = "To_Account", borrow)]
    pub account: Cow<'a, str>,
    #[serde(rename = "ProfileItem", default, borrow)]
    pub items: Vec<UpstreamTagValue<'a>>,
    #[serde(rename = "ResultCode", default)]
    pub result_code: i64,
    #[serde(rename = "ResultInfo", default, borrow)]
    pub result_info: Cow<'a, str>,
}

/// One `{Tag, Value}` pair in an upstream answer; the value stays raw JSON.
#[derive(Debug, Deserialize)]
pub struct UpstreamTagValue<'a> {
    #[serde(rename = "Tag", borrow)]
    pub tag: Cow<'a, str>,
    #[serde(rename = "Value", borrow)]
    pub value: &'a RawValue,
}

/// The whole-request envelope every Tencent answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(rename = "ActionStatus", default)]
    pub action_status: String,
    #[serde(rename = "ErrorCode", default)]
    pub error_code: i64,
    #[serde(rename = "ErrorInfo", default)]
    pub error_info: String,
    #[serde(rename = "ErrorDisplay", default)]
    pub error_display: String,
}

/// An upstream `portrait_get` answer that succeeded as a whole (per-account failures inside).
#[derive(Debug, Deserialize)]
pub struct UpstreamGetAnswer<'a> {
    #[serde(rename = "UserProfileItem", default, borrow)]
    pub profiles: Vec<UpstreamProfile<'a>>,
    #[serde(flatten)]
    pub envelope: Envelope,
}

// === impl Account ===

impl Account {
    /// The UserID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Account {
    fn from(s: &str) -> Self {
        Account(Arc::from(s))
    }
}

impl std::borrow::Borrow<str> for Account {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

// === impl Tag ===

impl Tag {
    /// Parses a tag name from a request. Unknown `Tag_Profile_IM_*` names and names that are
    /// neither standard nor well-formed custom tags are rejected with 40009, as Tencent does.
    pub fn parse(name: &str) -> Result<Tag, Error> {
        if let Some(i) = STANDARD_TAGS.iter().position(|t| *t == name) {
            return Ok(Tag(TagName::Standard(i as u8)));
        }
        match name.strip_prefix(CUSTOM_TAG_PREFIX) {
            Some(key)
                if !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Ok(Tag(TagName::Custom(Arc::from(name))))
            }
            _ => Err(Error::UnknownTag(Arc::from(truncate_for_message(name)))),
        }
    }

    /// The standard tag at `index` in [`STANDARD_TAGS`].
    pub fn standard(index: usize) -> Option<Tag> {
        (index < STANDARD_TAGS.len()).then_some(Tag(TagName::Standard(index as u8)))
    }

    /// The tag's Tencent name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TagName::Standard(i) => STANDARD_TAGS[usize::from(*i)],
            TagName::Custom(name) => name,
        }
    }

    /// The standard tag's index in [`STANDARD_TAGS`]; `None` for a custom tag.
    pub fn standard_index(&self) -> Option<u8> {
        match self.0 {
            TagName::Standard(i) => Some(i),
            TagName::Custom(_) => None,
        }
    }

    /// Whether this is an app-defined `Tag_Profile_Custom_*` tag (the only kind Tencent can
    /// answer 40009 "tag not found" for, since standard tags are checked locally).
    pub fn is_custom(&self) -> bool {
        matches!(self.0, TagName::Custom(_))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === decoding ===

#[derive(Deserialize)]
struct RawGetRequest<'a> {
    #[serde(rename = "To_Account", borrow, default)]
    to_account: Option<&'a RawValue>,
    #[serde(rename = "TagList", borrow, default)]
    tag_list: Option<&'a RawValue>,
}

/// Decodes and validates a `portrait_get` body the way Tencent does: a JSON object with a
/// non-empty `To_Account` array of strings (40002 when missing or empty), at most 100 of them,
/// and a non-empty `TagList` of known tags. The usual body is split in one pass (`wire/plain.rs`);
/// any other takes serde_json's path, which gives the exact error.
pub fn decode_portrait_get(body: &[u8]) -> Result<PortraitGetRequest<'_>, Error> {
    if let Some((accounts, names)) = plain::split(body) {
        let accounts = checked_accounts(accounts)?;
        return Ok(PortraitGetRequest {
            accounts,
            tags: parsed_tags(&names)?,
        });
    }
    // serde's derived struct decoding would also accept a JSON array, field by position.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidJson(Arc::from(
            "the body must be a JSON object",
        )));
    }
    let raw: RawGetRequest<'_> =
        serde_json::from_slice(body).map_err(|e| Error::InvalidJson(json_message(&e)))?;
    let accounts = match raw.to_account {
        None => return Err(Error::MissingAccounts),
        Some(v) => strings(v)
            .map_err(|e| Error::invalid_field("To_Account must be an array of strings", &e))?,
    };
    let accounts = checked_accounts(accounts)?;
    let names: Vec<Cow<'_, str>> = match raw.tag_list {
        None => return Err(Error::InvalidField(Arc::from("TagList is missing"))),
        Some(v) => strings(v)
            .map_err(|e| Error::invalid_field("TagList must be an array of strings", &e))?,
    };
    Ok(PortraitGetRequest {
        accounts,
        tags: parsed_tags(&names)?,
    })
}

/// `To_Account` if it names 1 to 100 accounts.
fn checked_accounts(accounts: Vec<Cow<'_, str>>) -> Result<Vec<Cow<'_, str>>, Error> {
    if accounts.is_empty() {
        return Err(Error::MissingAccounts);
    }
    if accounts.len() > MAX_ACCOUNTS_PER_REQUEST {
        return Err(Error::TooManyAccounts(accounts.len()));
    }
    Ok(accounts)
}

/// `TagList`'s tags, if there is at least one and every one is known.
fn parsed_tags(names: &[impl AsRef<str>]) -> Result<Vec<Tag>, Error> {
    if names.is_empty() {
        return Err(Error::InvalidField(Arc::from("TagList is empty")));
    }
    names.iter().map(|n| Tag::parse(n.as_ref())).collect()
}

/// A field's raw JSON as an array of strings, exactly as `serde_json::from_str` would decode it.
/// The body was parsed once already (as [`RawValue`]s), so the text is valid JSON: an array of
/// strings without escapes is split by scanning for quotes and borrowed as it is; anything
/// else (escapes, other types) takes serde_json's path, with its errors.
fn strings(raw: &RawValue) -> Result<Vec<Cow<'_, str>>, serde_json::Error> {
    match plain_strings(raw.get()) {
        Some(strings) => Ok(strings),
        None => serde_json::from_str(raw.get()),
    }
}

/// The strings of `json`, known to be valid JSON, if it is an array of strings without escapes.
fn plain_strings(json: &str) -> Option<Vec<Cow<'_, str>>> {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = json.as_bytes();
    let mut at = bytes.iter().position(|b| !is_ws(b))?;
    (bytes[at] == b'[').then_some(())?;
    let mut out = Vec::new();
    loop {
        at += 1 + bytes[at + 1..].iter().position(|b| !is_ws(b))?;
        match bytes[at] {
            b']' if out.is_empty() => return Some(out),
            b'"' => {}
            _ => return None,
        }
        let len = memchr::memchr2(b'"', b'\\', &bytes[at + 1..])?;
        (bytes[at + 1 + len] == b'"').then_some(())?;
        out.push(Cow::Borrowed(json.get(at + 1..at + 1 + len)?));
        at += 1 + len;
        at += 1 + bytes[at + 1..].iter().position(|b| !is_ws(b))?;
        match bytes[at] {
            b',' => {}
            b']' => return Some(out),
            _ => return None,
        }
    }
}

/// Decodes an upstream `portrait_get` answer. A whole-request failure (`ErrorCode != 0` or
/// `ActionStatus` not `OK`) becomes [`Error::UpstreamFailed`] with Tencent's code and texts.
pub fn decode_upstream_get(body: &[u8]) -> Result<UpstreamGetAnswer<'_>, Error> {
    let answer: UpstreamGetAnswer<'_> =
        serde_json::from_slice(body).map_err(|e| Error::UpstreamDecode(json_message(&e)))?;
    check_envelope(&answer.envelope)?;
    Ok(answer)
}

/// Decodes just the envelope of an upstream answer (used for `portrait_set`).
pub(crate) fn decode_envelope(body: &[u8]) -> Result<Envelope, Error> {
    serde_json::from_slice(body).map_err(|e| Error::UpstreamDecode(json_message(&e)))
}

/// The whole-call failure an envelope reports, if any (`ErrorCode != 0` or `ActionStatus` not
/// `OK`): [`Error::UpstreamFailed`] with Tencent's code and texts.
pub(crate) fn check_envelope(env: &Envelope) -> Result<(), Error> {
    if env.error_code == 0 && env.action_status == "OK" {
        return Ok(());
    }
    Err(Error::UpstreamFailed {
        code: if env.error_code == 0 {
            crate::error::codes::GATEWAY_UPSTREAM_DECODE
        } else {
            env.error_code
        },
        info: Arc::from(env.error_info.as_str()),
        display: Arc::from(env.error_display.as_str()),
    })
}

/// serde_json's message, which names the line and column but never echoes the input.
fn json_message(e: &serde_json::Error) -> Arc<str> {
    Arc::from(e.to_string())
}

/// Error texts quote caller input only briefly.
fn truncate_for_message(s: &str) -> &str {
    const MAX_QUOTED_BYTES: usize = 64;
    if s.len() <= MAX_QUOTED_BYTES {
        return s;
    }
    let mut end = MAX_QUOTED_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
