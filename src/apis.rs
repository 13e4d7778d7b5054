//! The one table of Tencent APIs: each API's path, metric label and how the gateway handles it.
//!
//! Routes, the upstream client, metrics, the limiters and the sim all read it; adding an API
//! the gateway treats specially is one row in [`TABLE`]. Every other `POST /v4/<service>/<command>`
//! whose path passes [`forwarded_label`] is passed through as is (`passthrough.rs`), labelled
//! `service/command`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The window Tencent counts each API's calls in (its limits are calls per second, by arrival,
/// in any sliding second): every limiter, local or fleet, budgets against it.
pub const WINDOW: Duration = Duration::from_secs(1);

/// How the gateway handles an API of the table; any API not in it is passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Answered per (account, tag) from the cache; misses coalesced and batched.
    Cached,
    /// Forwarded, then the account's cached tags are dropped on every gateway.
    Invalidating,
}

/// One row of the table.
#[derive(Debug)]
pub struct ApiSpec {
    /// The URL path Tencent serves it on.
    pub path: &'static str,
    /// The `api` label of its metrics and its limiter's name in a fleet.
    pub label: &'static str,
    /// What the gateway does with it.
    pub handling: Handling,
    /// Its position in [`TABLE`].
    index: usize,
}

/// `v4/profile/portrait_get`.
pub const PORTRAIT_GET: ApiSpec = ApiSpec {
    path: "/v4/profile/portrait_get",
    label: "portrait_get",
    handling: Handling::Cached,
    index: 0,
};

/// `v4/profile/portrait_set`.
pub const PORTRAIT_SET: ApiSpec = ApiSpec {
    path: "/v4/profile/portrait_set",
    label: "portrait_set",
    handling: Handling::Invalidating,
    index: 1,
};

/// Every API the gateway handles itself; the rest are passed through.
pub static TABLE: [&ApiSpec; 2] = [&PORTRAIT_GET, &PORTRAIT_SET];

/// How a list read names its ids in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsField {
    /// An array of strings: `"To_Account": ["a", "b"]`.
    Strings(&'static str),
    /// An array of objects naming one id each: `"CheckItem": [{"UserID": "a"}]`.
    Objects {
        /// The array's field.
        list: &'static str,
        /// Each object's id field.
        key: &'static str,
    },
}

/// One array of a list read's answer, holding one entry per id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerList {
    /// The array's field, e.g. `QueryResult`.
    pub name: &'static str,
    /// The field of each entry naming its id, e.g. `To_Account`.
    pub id: &'static str,
    /// Whether every entry of it is a per-id failure (`ErrorList`); elsewhere an entry fails
    /// when its own `ResultCode` or `ErrorCode` is not 0.
    pub failures: bool,
}

/// What a field of a list read's request other than its ids may hold. Every such field, known
/// or not, is part of what callers must agree on to share a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// `0` or `1` (`IsNeedDetail`).
    Flag,
    /// A string the whole answer is about (`GroupId`): required, checked before the ids; not
    /// a string is `bad_option`, an empty one this code. Echoed at the top of the answer.
    Scope {
        /// The code of an empty one.
        empty: i64,
    },
    /// An array of strings (`MemberInfoFilter`).
    Names,
    /// An object whose named members, where present, are arrays of strings
    /// (`ResponseFilter`).
    Filters(&'static [&'static str]),
}

/// The codes Tencent refuses a malformed list read with (whole request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// The body is not a JSON object.
    pub not_json: i64,
    /// The ids field is missing, empty, or holds something other than ids.
    pub bad_ids: i64,
    /// More ids than the API takes in one call.
    pub too_many: i64,
    /// A known option has a value the API does not take.
    pub bad_option: i64,
}

/// One list read: ids in, one entry per id out, nothing written. The gateway coalesces
/// concurrent callers' ids into shared calls of up to `max_ids` (`lists.rs`); everything
/// particular to an API is data in its row.
#[derive(Debug)]
pub struct ListSpec {
    /// The URL path.
    pub path: &'static str,
    /// The `api` label of its metrics, its key in `[list_apis]` and in `passthrough.limits`.
    pub label: &'static str,
    /// Most ids Tencent takes in one call.
    pub max_ids: usize,
    /// Tencent's default calls per second for it, used unless `passthrough.limits` names one.
    pub default_rate: u32,
    /// Where a request names its ids.
    pub ids: IdsField,
    /// Whether its ids are accounts (UserIDs): `POST /admin/purge` drops them too.
    pub ids_are_accounts: bool,
    /// The known other fields of a request.
    pub options: &'static [(&'static str, OptionKind)],
    /// The arrays of its answer, in the order Tencent writes them.
    pub answer: &'static [AnswerList],
    /// The array naming the ids whose entries failed, written only when one did
    /// (`portrait_get`'s `Fail_Account`).
    pub failed_ids: Option<&'static str>,
    /// Whether its envelope carries `ErrorDisplay` (portrait_get's does).
    pub error_display: bool,
    /// Its refusal codes.
    pub refusals: Refusals,
}

/// `v4/profile/portrait_get` as a row of the same kind (reference §2): ids in (`To_Account`),
/// one `UserProfileItem` per id out, `Fail_Account` naming the failed ones. It is served by its
/// own pipeline, not [`LIST_TABLE`]'s: its cache is per (account, tag), finer than a row's per
/// (id, options), so callers asking different `TagList`s still share what they have in common
/// (`batcher`, `service`). The row is what the two pipelines agree on: the request's limit,
/// the refusal codes, the answer's arrays; the list pipeline's splitter and assembler answer
/// portrait_get from it exactly as Tencent does (`lists/answer.rs` tests it against the sim).
pub const PORTRAIT_GET_ROW: ListSpec = ListSpec {
    path: PORTRAIT_GET.path,
    label: PORTRAIT_GET.label,
    max_ids: 100,
    default_rate: 200,
    ids: IdsField::Strings("To_Account"),
    ids_are_accounts: true,
    options: &[("TagList", OptionKind::Names)],
    answer: &[AnswerList {
        name: "UserProfileItem",
        id: "To_Account",
        failures: false,
    }],
    failed_ids: Some("Fail_Account"),
    error_display: true,
    refusals: Refusals {
        not_json: 40001,
        bad_ids: 40002,
        too_many: 40001,
        bad_option: 40001,
    },
};

/// `v4/openim/query_online_status` (reference §9.1).
pub const QUERY_ONLINE_STATUS: ListSpec = ListSpec {
    path: "/v4/openim/query_online_status",
    label: "openim/query_online_status",
    max_ids: 500,
    default_rate: 200,
    ids: IdsField::Strings("To_Account"),
    ids_are_accounts: true,
    options: &[
        ("IsNeedDetail", OptionKind::Flag),
        ("IsReturnCustomStatus", OptionKind::Flag),
        ("IsReturnInstid", OptionKind::Flag),
    ],
    answer: &[
        AnswerList {
            name: "QueryResult",
            id: "To_Account",
            failures: false,
        },
        AnswerList {
            name: "ErrorList",
            id: "To_Account",
            failures: true,
        },
    ],
    // Tencent's docs leave these unsaid (reference §9.1); openim's own family.
    failed_ids: None,
    error_display: false,
    refusals: Refusals {
        not_json: 90001,
        bad_ids: 90003,
        too_many: 90011,
        bad_option: 90010,
    },
};

/// `v4/im_open_login_svc/account_check` (reference §9.2).
pub const ACCOUNT_CHECK: ListSpec = ListSpec {
    path: "/v4/im_open_login_svc/account_check",
    label: "im_open_login_svc/account_check",
    max_ids: 100,
    default_rate: 100,
    ids: IdsField::Objects {
        list: "CheckItem",
        key: "UserID",
    },
    ids_are_accounts: true,
    options: &[],
    answer: &[AnswerList {
        name: "ResultItem",
        id: "UserID",
        failures: false,
    }],
    // The account APIs' "invalid parameters" (reference §9.2, inferred).
    failed_ids: None,
    error_display: false,
    refusals: Refusals {
        not_json: 90001,
        bad_ids: 70402,
        too_many: 70402,
        bad_option: 70402,
    },
};

/// `v4/group_open_http_svc/get_group_info` (Tencent's page 269/1616).
pub const GET_GROUP_INFO: ListSpec = ListSpec {
    path: "/v4/group_open_http_svc/get_group_info",
    label: "group_open_http_svc/get_group_info",
    max_ids: 50,
    default_rate: 200,
    ids: IdsField::Strings("GroupIdList"),
    ids_are_accounts: false,
    options: &[(
        "ResponseFilter",
        OptionKind::Filters(&[
            "GroupBaseInfoFilter",
            "MemberInfoFilter",
            "AppDefinedDataFilter_Group",
            "AppDefinedDataFilter_GroupMember",
        ]),
    )],
    answer: &[AnswerList {
        name: "GroupInfo",
        id: "GroupId",
        failures: false,
    }],
    // The group service's "invalid parameters".
    failed_ids: None,
    error_display: false,
    refusals: Refusals {
        not_json: 90001,
        bad_ids: 10004,
        too_many: 10004,
        bad_option: 10004,
    },
};

/// `v4/group_open_http_svc/get_specified_group_member_info` (Tencent's page 269/112002): the
/// members named of one group; one that is not a member gets no entry.
pub const GET_GROUP_MEMBERS: ListSpec = ListSpec {
    path: "/v4/group_open_http_svc/get_specified_group_member_info",
    label: "group_open_http_svc/get_specified_group_member_info",
    max_ids: 50,
    default_rate: 200,
    ids: IdsField::Strings("Member_List_Account"),
    ids_are_accounts: true,
    options: &[
        ("GroupId", OptionKind::Scope { empty: 10015 }),
        ("MemberInfoFilter", OptionKind::Names),
        ("MemberRoleFilter", OptionKind::Names),
        ("AppDefinedDataFilter_GroupMember", OptionKind::Names),
    ],
    answer: &[AnswerList {
        name: "MemberList",
        id: "Member_Account",
        failures: false,
    }],
    failed_ids: None,
    error_display: false,
    refusals: Refusals {
        not_json: 90001,
        bad_ids: 10004,
        too_many: 10005,
        bad_option: 10004,
    },
};

/// Every list read the gateway can coalesce (`[list_apis."<label>"]` turns each on).
pub static LIST_TABLE: [&ListSpec; 4] = [
    &QUERY_ONLINE_STATUS,
    &ACCOUNT_CHECK,
    &GET_GROUP_INFO,
    &GET_GROUP_MEMBERS,
];

/// The list read labelled `label`, if any.
pub fn list_spec(label: &str) -> Option<&'static ListSpec> {
    LIST_TABLE.iter().copied().find(|spec| spec.label == label)
}

/// The label of pass-through APIs past `passthrough.max_distinct_apis`.
pub const OTHER_LABEL: &str = "other";

/// One Tencent API as the gateway calls it: a row of [`TABLE`], or a passed-through path.
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Api(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Listed(&'static str, &'static str, usize),
    Forwarded { path: Arc<str>, label: Arc<str> },
}

impl Api {
    /// `portrait_get`.
    pub const PORTRAIT_GET: Api = Api::of(&PORTRAIT_GET);
    /// `portrait_set`.
    pub const PORTRAIT_SET: Api = Api::of(&PORTRAIT_SET);

    /// The API of a table row.
    pub const fn of(spec: &'static ApiSpec) -> Api {
        Api(Repr::Listed(spec.path, spec.label, spec.index))
    }

    /// A passed-through API: its path and its (bounded) metric label.
    pub fn forwarded(path: &str, label: &str) -> Api {
        Api(Repr::Forwarded {
            path: Arc::from(path),
            label: Arc::from(label),
        })
    }

    /// The URL path, e.g. `/v4/openim/sendmsg`.
    pub fn path(&self) -> &str {
        match &self.0 {
            Repr::Listed(path, _, _) => path,
            Repr::Forwarded { path, .. } => path,
        }
    }

    /// The metric label: `portrait_get`, `openim/sendmsg`, or `other`.
    pub fn label(&self) -> &str {
        match &self.0 {
            Repr::Listed(_, label, _) => label,
            Repr::Forwarded { label, .. } => label,
        }
    }

    /// The position in [`TABLE`] of a listed API (metrics keep pre-resolved series for them).
    pub fn table_index(&self) -> Option<usize> {
        match self.0 {
            Repr::Listed(_, _, index) => Some(index),
            Repr::Forwarded { .. } => None,
        }
    }
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The row of [`TABLE`] serving `path`, if any.
pub fn listed(path: &str) -> Option<&'static ApiSpec> {
    TABLE.iter().copied().find(|spec| spec.path == path)
}

/// The `service/command` label of a path that may be passed through: `/v4/` then a service of
/// `[a-z_]+` and a command of `[a-z_0-9]+`, nothing else (no `..`, no encoded characters, no
/// further segments).
pub fn forwarded_label(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v4/")?;
    let (service, command) = rest.split_once('/')?;
    let service_ok =
        !service.is_empty() && service.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let command_ok = !command.is_empty()
        && command
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (service_ok && command_ok && rest.len() <= MAX_LABEL_LEN).then_some(rest)
}

/// Longest `service/command` accepted (Tencent's longest is well under this).
const MAX_LABEL_LEN: usize = 96;

/// The label Tencent's `Alert.RequestOverLimit` names an API by (`ServiceName`, `Command`).
pub fn label_of(service: &str, command: &str) -> String {
    let path = format!("/v4/{service}/{command}");
    match listed(&path) {
        Some(spec) => spec.label.to_owned(),
        None => format!("{service}/{command}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_indexes_match_positions_and_paths_are_unique() {
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.index, i);
            assert_eq!(listed(spec.path).map(|s| s.label), Some(spec.label));
        }
        assert_eq!(Api::PORTRAIT_GET.path(), "/v4/profile/portrait_get");
        assert_eq!(Api::PORTRAIT_SET.table_index(), Some(1));
    }

    #[test]
    fn only_plain_service_command_paths_may_be_forwarded() {
        assert_eq!(
            forwarded_label("/v4/openim/sendmsg"),
            Some("openim/sendmsg")
        );
        assert_eq!(
            forwarded_label("/v4/group_open_http_svc/get_group_info"),
            Some("group_open_http_svc/get_group_info")
        );
        assert_eq!(
            forwarded_label("/v4/sns/friend_get2"),
            Some("sns/friend_get2")
        );
        for bad in [
            "/v4/openim",
            "/v4/openim/",
            "/v4//sendmsg",
            "/v4/openim/sendmsg/x",
            "/v4/../metrics",
            "/v4/openim/..",
            "/v4/open%2Fim/sendmsg",
            "/v4/OpenIM/sendmsg",
            "/v4/open-im/sendmsg",
            "/v4/sns2/friend_get",
            "/v5/openim/sendmsg",
            "/metrics",
        ] {
            assert_eq!(forwarded_label(bad), None, "{bad}");
        }
        let long = format!("/v4/{}/x", "a".repeat(200));
        assert_eq!(forwarded_label(&long), None);
    }

    #[test]
    fn over_limit_alerts_name_listed_apis_by_their_label() {
        assert_eq!(label_of("profile", "portrait_get"), "portrait_get");
        assert_eq!(label_of("openim", "sendmsg"), "openim/sendmsg");
    }
}
