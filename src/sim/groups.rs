//! The sim's groups: `group0..group{groups-1}` ([`super::SimConfig::groups`]), each generated
//! from its number `N` (type, name, times, options and a member list of 2 to 10 existing
//! accounts), with names set by [`super::Sim::set_group_name`] layered on top.
//!
//! Group `N` has `min(2 + N % 9, accounts)` members: `user{(10N + k) % accounts}` for
//! `k = 0, 1, ..`, the first its `Owner`, the second an `Admin`, the rest `Member`s. Some names
//! are non-ASCII or carry a quote. Groups with `N % 97 == 13` fail every read (10002). The
//! answers built from these are `group_info.rs`'s and `group_members.rs`'s; no group has custom
//! (`AppDefinedData`) fields.

use std::collections::HashMap;

use parking_lot::RwLock;
use serde_json::{Map, Value};

use super::lists::{kept, Names};
use super::profiles::{self, Profiles, ACCOUNT_PREFIX};

/// Prefix of every existing group ("group{N}").
const GROUP_PREFIX: &str = "group";

const TYPES: [&str; 4] = ["Public", "Private", "ChatRoom", "Community"];
const JOIN_OPTIONS: [&str; 3] = ["FreeAccess", "NeedPermission", "DisableApply"];

/// `CreateTime` of group 0; each later group was made an hour later.
const FIRST_CREATE_TIME: u64 = 1_600_000_000;

/// Tencent's "group does not exist or was dismissed".
const NO_SUCH_GROUP: i64 = 10010;
/// Tencent's "internal server error, retry".
const INTERNAL_ERROR: i64 = 10002;

/// `MuteUntil` / `ShutUpUntil` of the third member of every group.
const MUTED_UNTIL: u64 = 1_700_000_000;

/// All groups of the simulated app.
pub(super) struct Groups {
    count: u64,
    accounts: u64,
    /// Names set at runtime, by group number.
    names: RwLock<HashMap<u64, String>>,
}

/// One member of a group, as generated.
pub(super) struct Member {
    pub account: String,
    pub role: &'static str,
    pub join_time: u64,
    pub msg_seq: u64,
    pub msg_flag: &'static str,
    pub last_send_msg_time: u64,
    /// 0 when not muted.
    pub muted_until: u64,
    pub name_card: String,
}

// === impl Member ===

impl Member {
    /// This member's `MemberList` entry: `Member_Account` and, of `Role`, `JoinTime`, `MsgSeq`,
    /// `MsgFlag`, `LastSendMsgTime`, the mute deadline (named `muted`) and, with `name_card`,
    /// `NameCard`, those `names` keeps.
    pub(super) fn entry(
        &self,
        muted: &'static str,
        name_card: bool,
        names: &Names,
    ) -> Map<String, Value> {
        let mut fields = vec![
            ("Role", self.role.into()),
            ("JoinTime", self.join_time.into()),
            ("MsgSeq", self.msg_seq.into()),
            ("MsgFlag", self.msg_flag.into()),
            ("LastSendMsgTime", self.last_send_msg_time.into()),
            (muted, self.muted_until.into()),
        ];
        if name_card {
            fields.push(("NameCard", self.name_card.clone().into()));
        }
        let mut entry = Map::from_iter([(
            "Member_Account".to_owned(),
            Value::String(self.account.clone()),
        )]);
        entry.extend(kept(fields, names));
        entry
    }
}

// === impl Groups ===

impl Groups {
    pub(super) fn new(count: u64, accounts: u64) -> Groups {
        Groups {
            count,
            accounts,
            names: RwLock::new(HashMap::new()),
        }
    }

    /// `N` for an existing group `group{N}`; `None` for any other id.
    fn number(&self, group: &str) -> Option<u64> {
        profiles::numbered(group, GROUP_PREFIX, self.count)
    }

    /// `N` for a group `group{N}` that can be read; else the code and `ErrorInfo` why not:
    /// 10010 if it does not exist, 10002 if its reads fail.
    pub(super) fn readable(&self, group: &str) -> Result<u64, (i64, &'static str)> {
        match self.number(group) {
            None => Err((NO_SUCH_GROUP, "group does not exist")),
            Some(n) if Profiles::read_fails(n) => Err((INTERNAL_ERROR, "internal error, retry")),
            Some(n) => Ok(n),
        }
    }

    /// Sets the name of `group`; false (nothing set) if it does not exist.
    pub(super) fn set_name(&self, group: &str, name: &str) -> bool {
        let Some(n) = self.number(group) else {
            return false;
        };
        self.names.write().insert(n, name.to_owned());
        true
    }

    /// The members of group `n`, owner first.
    pub(super) fn members(&self, n: u64) -> Vec<Member> {
        let count = (2 + n % 9).min(self.accounts);
        let first = n.wrapping_mul(10);
        (0..count)
            .map(|k| member(n, k, first.wrapping_add(k) % self.accounts))
            .collect()
    }

    /// The base fields of group `n` (of app `appid`) with `members`, in the order of Tencent's
    /// example: `Type`, `Name`, `Appid`, `Introduction`, `Notification`, `FaceUrl`,
    /// `Owner_Account`, `CreateTime`, `InfoSeq`, `LastInfoTime`, `LastMsgTime`, `NextMsgSeq`,
    /// `MemberNum`, `MaxMemberNum`, `ApplyJoinOption`, `ShutUpAllMember`.
    pub(super) fn base_fields(
        &self,
        n: u64,
        appid: u64,
        members: &[Member],
    ) -> Vec<(&'static str, Value)> {
        let create_time = create_time(n);
        let last_msg_time = if n.is_multiple_of(3) {
            0
        } else {
            create_time + 1200
        };
        let owner = members.first().map_or("", |m| m.account.as_str());
        vec![
            ("Type", TYPES[(n % 4) as usize].into()),
            ("Name", self.name(n).into()),
            ("Appid", appid.into()),
            ("Introduction", format!("introduction of group{n}").into()),
            ("Notification", notification(n).into()),
            ("FaceUrl", format!("https://img.example/g{n}.png").into()),
            ("Owner_Account", owner.into()),
            ("CreateTime", create_time.into()),
            ("InfoSeq", (1 + n % 5).into()),
            ("LastInfoTime", (create_time + 600).into()),
            ("LastMsgTime", last_msg_time.into()),
            ("NextMsgSeq", next_msg_seq(n, last_msg_time).into()),
            ("MemberNum", members.len().into()),
            ("MaxMemberNum", 200.into()),
            ("ApplyJoinOption", JOIN_OPTIONS[(n % 3) as usize].into()),
            (
                "ShutUpAllMember",
                if n.is_multiple_of(10) { "On" } else { "Off" }.into(),
            ),
        ]
    }

    /// The name of group `n`: as set, else generated (every 7th non-ASCII, every 11th quoted).
    fn name(&self, n: u64) -> String {
        if let Some(name) = self.names.read().get(&n) {
            return name.clone();
        }
        if n.is_multiple_of(7) {
            format!("群组-{n}")
        } else if n.is_multiple_of(11) {
            format!("group \"{n}\"")
        } else {
            format!("group-{n}")
        }
    }
}

fn create_time(n: u64) -> u64 {
    FIRST_CREATE_TIME.saturating_add(n.saturating_mul(3600))
}

/// Every 5th group has no notification.
fn notification(n: u64) -> String {
    if n.is_multiple_of(5) {
        String::new()
    } else {
        format!("notification of group{n}")
    }
}

/// 1 while nothing was sent in the group.
fn next_msg_seq(n: u64, last_msg_time: u64) -> u64 {
    if last_msg_time == 0 {
        1
    } else {
        2 + n % 50
    }
}

/// The `k`th member of group `n`, account `user{account}`.
fn member(n: u64, k: u64, account: u64) -> Member {
    let join_time = create_time(n) + 60 * k;
    let account = format!("{ACCOUNT_PREFIX}{account}");
    Member {
        role: match k {
            0 => "Owner",
            1 => "Admin",
            _ => "Member",
        },
        join_time,
        msg_seq: k + 1,
        msg_flag: if k == 3 {
            "AcceptNotNotify"
        } else {
            "AcceptAndNotify"
        },
        last_send_msg_time: if k % 2 == 1 { 0 } else { join_time + 30 },
        muted_until: if k == 2 { MUTED_UNTIL } else { 0 },
        name_card: if k % 2 == 1 {
            format!("card-{account}")
        } else {
            String::new()
        },
        account,
    }
}
