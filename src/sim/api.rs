//! What the sim answers: Tencent's query-string and UserSig checks, the per-API rate limit
//! (`rate.rs`), the `portrait_get` / `portrait_set` answers, the dispatch to the four list reads
//! (`online.rs`, `account_check.rs`, `group_info.rs`, `group_members.rs`), and the echo of every
//! other API. Synchronous and socket-free; `request.rs` calls in, and the profile APIs' JSON is
//! read and written by `json.rs`.

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{self, code, info, Entry, Refusal};
use super::profiles::Profiles;
use super::{account_check, group_info, group_members, online};
use super::{Api, MissingAccount, SimConfig, SimState};
use crate::wire::STANDARD_TAGS;

/// The code of a call refused by the rate limit (counted in [`super::SimStats`]).
pub(super) const FREQUENCY_LIMIT: i64 = code::FREQUENCY_LIMIT;

/// A decided call: the whole-call `ErrorCode` and the body to send with HTTP 200.
pub(super) struct Outcome {
    pub code: i64,
    pub body: Vec<u8>,
}

// === impl Outcome ===

impl Outcome {
    /// A whole-call failure.
    pub(super) fn fail(code: i64, info: &str) -> Outcome {
        Outcome {
            code,
            body: json::error_body(code, info),
        }
    }
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Outcome {
        Outcome::fail(refusal.code, refusal.info)
    }
}

// === calls ===

/// One HTTP call as routed: its API, URL path, raw query string and body.
pub(super) struct Call<'a> {
    pub api: Api,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub at: Instant,
}

/// Answers one HTTP call: query checks, then the rate limit of its path, then the body.
pub(super) fn answer_call(state: &SimState, call: &Call<'_>) -> Outcome {
    if let Err(refused) = check_query(&state.config, call.query, unix_now()) {
        return refused;
    }
    let limit = match call.api {
        Api::AccountCheck => state.config.account_check_per_second,
        _ => state.config.requests_per_second,
    };
    if !state.rate.admit(call.api, call.path, call.at, limit) {
        return Outcome::fail(code::FREQUENCY_LIMIT, info::FREQUENCY_LIMIT);
    }
    if let Some(read) = answer_read(state, call.api, call.body) {
        return read;
    }
    match call.api {
        Api::PortraitSet => answer_set(&state.profiles, call.body),
        _ => answer_echo(call.path, call.body),
    }
}

/// The answer of a read API (`portrait_get` or a list read) to `body`, as state stands now;
/// `None` for `portrait_set` and echoed APIs.
pub(super) fn answer_read(state: &SimState, api: Api, body: &[u8]) -> Option<Outcome> {
    let config = &state.config;
    Some(match api {
        Api::PortraitGet => answer_get(config, &state.profiles, body),
        Api::QueryOnlineStatus => online::answer(&state.profiles, &state.presence, body),
        Api::AccountCheck => account_check::answer(&state.profiles, body),
        Api::GroupInfo => group_info::answer(&state.groups, config.sdkappid, body),
        Api::GroupMemberInfo => group_members::answer(&state.groups, &state.presence, body),
        Api::PortraitSet | Api::Other => return None,
    })
}

/// Tencent's URL checks, in order: sdkappid present (60012), numeric (60025) and ours (70014);
/// identifier present (60025) and an admin (40004); then, if enabled, the UserSig (70002 when
/// missing or empty, else the code of the verification failure).
pub(super) fn check_query(config: &SimConfig, query: &str, now_unix: u64) -> Result<(), Outcome> {
    let (mut sdkappid, mut identifier, mut usersig) = (None, None, None);
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "sdkappid" => &mut sdkappid,
            "identifier" => &mut identifier,
            "usersig" => &mut usersig,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    let sdkappid =
        sdkappid.ok_or_else(|| Outcome::fail(code::SDKAPPID_MISSING, "sdkappid is missing"))?;
    let sdkappid: u64 = sdkappid
        .parse()
        .map_err(|_| Outcome::fail(code::BAD_URL_PARAMETER, "sdkappid is not a number"))?;
    if sdkappid != config.sdkappid {
        return Err(Outcome::fail(
            code::SDKAPPID_MISMATCH,
            "sdkappid does not match this app",
        ));
    }
    let identifier = identifier
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Outcome::fail(code::BAD_URL_PARAMETER, "identifier is missing"))?;
    if !config.admins.iter().any(|admin| *admin == identifier) {
        return Err(Outcome::fail(
            code::NOT_ADMIN,
            "identifier is not an App admin",
        ));
    }
    if !config.verify_usersig {
        return Ok(());
    }
    let usersig: Cow<'_, str> = usersig.unwrap_or_default();
    if usersig.is_empty() {
        return Err(Outcome::fail(code::USERSIG_EMPTY, "usersig is empty"));
    }
    crate::usersig::verify(
        &usersig,
        &config.secret_key,
        config.sdkappid,
        &identifier,
        now_unix,
    )
    .map(drop)
    .map_err(|e| Outcome::fail(e.tencent_code(), &e.to_string()))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// === portrait_get ===

/// The `portrait_get` answer for `body`: the request's shape ([`json::decode_get`]), then tags
/// that do not exist (40009, before any account), then missing accounts (per
/// [`MissingAccount`]), then one entry per `To_Account` in request order.
pub(super) fn answer_get(config: &SimConfig, profiles: &Profiles, body: &[u8]) -> Outcome {
    let request = match json::decode_get(body) {
        Ok(request) => request,
        Err(refusal) => return refusal.into(),
    };
    if !request.tags.iter().all(|tag| tag_exists(profiles, tag)) {
        return Outcome::fail(code::TAG_NOT_FOUND, info::TAG_NOT_FOUND);
    }
    let numbers: Vec<Option<u64>> = request
        .accounts
        .iter()
        .map(|a| profiles.account_number(a))
        .collect();
    if config.missing_account == MissingAccount::WholeCall && numbers.contains(&None) {
        return Outcome::fail(code::ACCOUNT_NOT_FOUND, info::ACCOUNT_NOT_FOUND);
    }
    let entries = request
        .accounts
        .into_iter()
        .zip(numbers)
        .map(|(account, number)| match number {
            None => Entry::Failed(account, code::ACCOUNT_NOT_FOUND, info::ACCOUNT_NOT_FOUND),
            Some(n) if Profiles::read_fails(n) => {
                Entry::Failed(account, code::READ_FAIL, info::READ_FAIL)
            }
            Some(n) => found(profiles, account, n, &request.tags),
        })
        .collect();
    Outcome {
        code: 0,
        body: json::get_answer(entries),
    }
}

/// A standard tag, or one of the app's custom tags.
fn tag_exists(profiles: &Profiles, tag: &str) -> bool {
    STANDARD_TAGS.contains(&tag) || profiles.has_custom_tag(tag)
}

fn found(profiles: &Profiles, account: String, n: u64, tags: &[String]) -> Entry {
    // One short read-lock per account; the answer is built outside it.
    let overrides = profiles.overrides_of(&account);
    let values = tags
        .iter()
        .filter_map(|tag| {
            let raw = profiles.value(n, tag, overrides.as_deref())?;
            // Stored values were checked to parse when set (answer_set) or generated.
            let value = serde_json::from_str(raw.get()).ok()?;
            Some((tag.clone(), value))
        })
        .collect();
    Entry::Found(account, values)
}

// === portrait_set ===

#[derive(Deserialize)]
struct SetRequest<'a> {
    #[serde(rename = "From_Account", borrow, default)]
    from_account: Option<Cow<'a, str>>,
    #[serde(rename = "ProfileItem", borrow, default)]
    items: Option<Vec<SetItem<'a>>>,
}

#[derive(Deserialize)]
struct SetItem<'a> {
    #[serde(rename = "Tag", borrow)]
    tag: Cow<'a, str>,
    /// `None` when missing or `null`: both are decode failures.
    #[serde(rename = "Value", borrow, default)]
    value: Option<&'a RawValue>,
}

/// The `portrait_set` answer for `body`, storing the values as written on success: decode
/// (40001, also for a value that is `null` or does not parse as JSON a `Value` holds), tags
/// (40009), account (40003).
pub(super) fn answer_set(profiles: &Profiles, body: &[u8]) -> Outcome {
    let decode_fail = || Outcome::fail(code::DECODE_FAIL, info::DECODE_FAIL);
    let Ok(request) = serde_json::from_slice::<SetRequest<'_>>(body) else {
        return decode_fail();
    };
    let (Some(account), Some(items)) = (request.from_account, request.items) else {
        return decode_fail();
    };
    let Some(values) = items
        .iter()
        .map(|item| {
            item.value
                .filter(|v| parses(v))
                .map(|v| (item.tag.as_ref(), v))
        })
        .collect::<Option<Vec<_>>>()
        .filter(|values| !values.is_empty())
    else {
        return decode_fail();
    };
    if !values.iter().all(|(tag, _)| tag_exists(profiles, tag)) {
        return Outcome::fail(code::TAG_NOT_FOUND, info::TAG_NOT_FOUND);
    }
    if profiles.account_number(&account).is_none() {
        return Outcome::fail(code::ACCOUNT_NOT_FOUND, info::ACCOUNT_NOT_FOUND);
    }
    profiles.set(&account, &values);
    Outcome {
        code: 0,
        body: json::ok_body(),
    }
}

/// Whether a value is JSON a `Value` holds (not, say, a number out of `f64` range).
fn parses(value: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Value>(value.get()).is_ok()
}

// === any other API ===

/// The echo of an API the sim does not implement: the API (`service/command`) and the request
/// body verbatim, if the body is a JSON object; else the whole-call 40001 an undecodable
/// `portrait_get` gets.
pub(super) fn answer_echo(path: &str, body: &[u8]) -> Outcome {
    let is_object = serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object());
    let (true, Ok(text)) = (is_object, std::str::from_utf8(body)) else {
        return Outcome::fail(code::DECODE_FAIL, info::DECODE_FAIL);
    };
    let api = path.strip_prefix("/v4/").unwrap_or(path);
    Outcome {
        code: 0,
        body: json::echo_answer(api, text),
    }
}

// === call log ===

#[derive(Deserialize)]
struct LooseGet {
    #[serde(rename = "To_Account", default)]
    to_account: Vec<String>,
    #[serde(rename = "TagList", default)]
    tag_list: Vec<String>,
}

#[derive(Deserialize)]
struct LooseSet {
    #[serde(rename = "From_Account", default)]
    from_account: Option<String>,
    #[serde(rename = "ProfileItem", default)]
    items: Vec<LooseItem>,
}

#[derive(Deserialize)]
struct LooseItem {
    #[serde(rename = "Tag")]
    tag: String,
}

#[derive(Deserialize)]
struct LooseOnline {
    #[serde(rename = "To_Account", default)]
    to_account: Vec<String>,
}

#[derive(Deserialize)]
struct LooseCheck {
    #[serde(rename = "CheckItem", default)]
    items: Vec<LooseCheckItem>,
}

#[derive(Deserialize)]
struct LooseCheckItem {
    #[serde(rename = "UserID")]
    user_id: String,
}

#[derive(Deserialize)]
struct LooseGroups {
    #[serde(rename = "GroupIdList", default)]
    group_ids: Vec<String>,
}

#[derive(Deserialize)]
struct LooseMembers {
    #[serde(rename = "Member_List_Account", default)]
    accounts: Vec<String>,
}

/// The ids and tags a call names, for the call log: accounts and tags of the profile APIs,
/// `To_Account` (query_online_status), the `CheckItem` UserIDs (account_check), `GroupIdList`
/// (get_group_info) and `Member_List_Account` (get_specified_group_member_info), in request
/// order with duplicates, and no tags for those. Empty where the body does not decode and for
/// echoed APIs.
pub(super) fn call_subject(api: Api, body: &[u8]) -> (Vec<String>, Vec<String>) {
    match api {
        Api::QueryOnlineStatus => ids(body, |r: LooseOnline| r.to_account),
        Api::AccountCheck => ids(body, |r: LooseCheck| {
            r.items.into_iter().map(|item| item.user_id).collect()
        }),
        Api::GroupInfo => ids(body, |r: LooseGroups| r.group_ids),
        Api::GroupMemberInfo => ids(body, |r: LooseMembers| r.accounts),
        Api::PortraitGet => serde_json::from_slice::<LooseGet>(body)
            .map(|get| (get.to_account, get.tag_list))
            .unwrap_or_default(),
        Api::PortraitSet => serde_json::from_slice::<LooseSet>(body)
            .map(|set| {
                let tags = set.items.into_iter().map(|item| item.tag).collect();
                (set.from_account.into_iter().collect(), tags)
            })
            .unwrap_or_default(),
        Api::Other => Default::default(),
    }
}

/// The ids `pick` takes from `body` read as a `T`, and no tags; none if it does not decode.
fn ids<T: DeserializeOwned>(
    body: &[u8],
    pick: impl FnOnce(T) -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let ids = serde_json::from_slice(body).map(pick).unwrap_or_default();
    (ids, Vec::new())
}
