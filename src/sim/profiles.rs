//! The sim's profile store: values generated deterministically from (account number, tag), with
//! `portrait_set` overrides layered on top.
//!
//! Generated values exercise what the gateway must carry through untouched: about 1 in 5
//! (account, tag) pairs is unset, integers are JSON numbers, and some strings hold non-ASCII
//! text, quotes or backslashes. Accounts with `n % 97 == 13` fail every read (40006 in
//! `portrait_get`, 70500 in `query_online_status` and `account_check`); so do groups with that
//! number (10002).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::value::RawValue;

use crate::wire::STANDARD_TAGS;

/// The override values of one account, tag name -> raw JSON value.
pub(super) type Overrides = HashMap<String, Box<RawValue>>;

/// Prefix of every existing account ("user{N}").
pub(super) const ACCOUNT_PREFIX: &str = "user";

/// Splitmix64's increment; also spreads tag salts apart.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

const GENDERS: [&str; 3] = [
    "Gender_Type_Unknown",
    "Gender_Type_Female",
    "Gender_Type_Male",
];
const ALLOW_TYPES: [&str; 3] = [
    "AllowType_Type_NeedConfirm",
    "AllowType_Type_AllowAny",
    "AllowType_Type_DenyAny",
];

/// All profiles of the simulated app.
pub(super) struct Profiles {
    accounts: u64,
    custom_tags: Vec<String>,
    /// Per-account overrides. Each account's map sits behind an `Arc`, so a reader clones the
    /// `Arc` under a short read lock and builds its answer without holding any lock.
    overrides: RwLock<HashMap<String, Arc<Overrides>>>,
}

/// A generated value before it becomes JSON.
enum Generated {
    Text(String),
    Number(u64),
}

impl Profiles {
    pub(super) fn new(accounts: u64, custom_tags: &[String]) -> Profiles {
        Profiles {
            accounts,
            custom_tags: custom_tags.to_vec(),
            overrides: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `tag` is one of the app's configured custom tags.
    pub(super) fn has_custom_tag(&self, tag: &str) -> bool {
        self.custom_tags.iter().any(|t| t == tag)
    }

    /// `N` for an existing account `user{N}`; `None` for anything else, including non-canonical
    /// numbers such as `user01`.
    pub(super) fn account_number(&self, account: &str) -> Option<u64> {
        numbered(account, ACCOUNT_PREFIX, self.accounts)
    }

    /// Whether reading account (or group) `n` fails: 40006, 70500 or 10002 by API.
    pub(super) fn read_fails(n: u64) -> bool {
        n % 97 == 13
    }

    /// The override map of `account`, if it has one.
    pub(super) fn overrides_of(&self, account: &str) -> Option<Arc<Overrides>> {
        self.overrides.read().get(account).cloned()
    }

    /// The value of `tag` for account `n`: its override, else its generated value.
    pub(super) fn value<'a>(
        &self,
        n: u64,
        tag: &str,
        overrides: Option<&'a Overrides>,
    ) -> Option<Cow<'a, RawValue>> {
        if let Some(value) = overrides.and_then(|o| o.get(tag)) {
            return Some(Cow::Borrowed(value));
        }
        generate(n, tag).map(Cow::Owned)
    }

    /// The raw JSON text of `tag` for `account` as stored now; `None` if unset, if the tag does
    /// not exist for this app, or if the account does not exist.
    pub(super) fn value_text(&self, account: &str, tag: &str) -> Option<String> {
        let n = self.account_number(account)?;
        let standard = STANDARD_TAGS.contains(&tag);
        if !standard && !self.has_custom_tag(tag) {
            return None;
        }
        let overrides = self.overrides_of(account);
        self.value(n, tag, overrides.as_deref())
            .map(|v| v.get().to_owned())
    }

    /// Stores `values` (already validated) as overrides of `account`.
    pub(super) fn set(&self, account: &str, values: &[(&str, &RawValue)]) {
        let mut all = self.overrides.write();
        let mine = Arc::make_mut(all.entry(account.to_owned()).or_default());
        for (tag, value) in values {
            mine.insert((*tag).to_owned(), (*value).to_owned());
        }
    }
}

/// `N` for an id `{prefix}{N}` with `N < below` written in canonical decimal (`user7`, not
/// `user07`); `None` for anything else. Names the sim's accounts and its groups.
pub(super) fn numbered(id: &str, prefix: &str, below: u64) -> Option<u64> {
    let digits = id.strip_prefix(prefix)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse::<u64>().ok().filter(|n| *n < below)
}

/// The generated value of `tag` for account `n`; `None` when unset (about 1 in 5).
fn generate(n: u64, tag: &str) -> Option<Box<RawValue>> {
    let index = STANDARD_TAGS.iter().position(|t| *t == tag);
    let salt = index.map_or_else(|| fnv1a(tag), |i| i as u64 + 1);
    let h = splitmix64(n ^ salt.wrapping_mul(GOLDEN_GAMMA));
    if h.is_multiple_of(5) {
        return None;
    }
    let r = h >> 8;
    let value = match index.map(|i| STANDARD_TAGS[i]) {
        Some("Tag_Profile_IM_Nick") => Generated::Text(nick(n, r)),
        Some("Tag_Profile_IM_Gender") => Generated::Text(GENDERS[(r % 3) as usize].to_owned()),
        Some("Tag_Profile_IM_BirthDay") => Generated::Number(birthday(r)),
        Some("Tag_Profile_IM_Location") => {
            Generated::Text(format!("CN-{:02}-{:03}", r % 34, (r >> 8) % 1000))
        }
        Some("Tag_Profile_IM_SelfSignature") => Generated::Text(signature(n, r)),
        Some("Tag_Profile_IM_AllowType") => {
            Generated::Text(ALLOW_TYPES[(r % 3) as usize].to_owned())
        }
        Some("Tag_Profile_IM_Image") => Generated::Text(format!("https://img.example/u{n}.png")),
        Some("Tag_Profile_IM_AdminForbidType") => Generated::Text(
            if r.is_multiple_of(10) {
                "AdminForbid_Type_SendOut"
            } else {
                "AdminForbid_Type_None"
            }
            .to_owned(),
        ),
        Some("Tag_Profile_IM_Language") => Generated::Number(r % 16),
        Some("Tag_Profile_IM_MsgSettings") => Generated::Number(r & 1),
        Some(_) => Generated::Number(r % 256), // Level, Role
        None => Generated::Text(format!("custom-{n}-{}", r % 10_000)),
    };
    let raw = match &value {
        Generated::Text(text) => serde_json::value::to_raw_value(text),
        Generated::Number(number) => serde_json::value::to_raw_value(number),
    };
    Some(raw.expect("strings and integers always serialize"))
}

/// Every 7th account has a non-ASCII nick; a few others carry a quote or a backslash.
fn nick(n: u64, r: u64) -> String {
    if n.is_multiple_of(7) {
        format!("昵称-{n}")
    } else if r.is_multiple_of(11) {
        format!("nick \"{n}\"")
    } else if r.is_multiple_of(13) {
        format!("nick\\{n}")
    } else {
        format!("nick-{n}")
    }
}

fn signature(n: u64, r: u64) -> String {
    match r % 6 {
        0 => format!("签名 {n} ✓"),
        1 => format!("line one\nline two \"{n}\""),
        _ => format!("hello from user{n}"),
    }
}

/// A plausible `YYYYMMDD`.
fn birthday(r: u64) -> u64 {
    let year = 1950 + r % 60;
    let month = 1 + (r >> 8) % 12;
    let day = 1 + (r >> 16) % 28;
    year * 10_000 + month * 100 + day
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a custom tag's name, so its values do not depend on config order.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}
