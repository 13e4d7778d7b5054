//! The sim's routing: which REST API a URL path names ([`Api`]), and the path of each.
//!
//! Read by `request.rs` for every request; the answers themselves are `api.rs`'s. The paths of
//! the two profile APIs come from the gateway's one API table (`crate::apis`), a fact both sides
//! share; the four list reads' paths are written here, as Tencent's pages spell them; which other
//! paths are valid the sim decides with its own code, so the gateway's pass-through validation is
//! still judged by an independent oracle.

/// The REST APIs the sim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `v4/profile/portrait_get`.
    PortraitGet,
    /// `v4/profile/portrait_set`.
    PortraitSet,
    /// `v4/openim/query_online_status`: presence of up to 500 accounts.
    QueryOnlineStatus,
    /// `v4/im_open_login_svc/account_check`: whether up to 100 accounts are imported.
    AccountCheck,
    /// `v4/group_open_http_svc/get_group_info`: profiles of up to 50 groups.
    GroupInfo,
    /// `v4/group_open_http_svc/get_specified_group_member_info`: up to 50 members of one group.
    GroupMemberInfo,
    /// Any other `v4/<service>/<command>` (service `[a-z_]+`, command `[a-z_0-9]+`): checked
    /// and rate limited like the others (one window per path), then answered with
    /// `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Echo":{"Api":"<service>/<command>",
    /// "Body":<the request body, byte for byte>}}`, or 40001 if the body is not a JSON object.
    Other,
}

/// Every API served on a single fixed path.
const FIXED: [Api; 6] = [
    Api::PortraitGet,
    Api::PortraitSet,
    Api::QueryOnlineStatus,
    Api::AccountCheck,
    Api::GroupInfo,
    Api::GroupMemberInfo,
];

// === impl Api ===

impl Api {
    /// The URL path Tencent serves this API on; `""` for [`Api::Other`], which is many paths
    /// (see [`SimCall::path`](super::SimCall::path)).
    pub fn path(self) -> &'static str {
        match self {
            Api::PortraitGet => crate::apis::PORTRAIT_GET.path,
            Api::PortraitSet => crate::apis::PORTRAIT_SET.path,
            Api::QueryOnlineStatus => "/v4/openim/query_online_status",
            Api::AccountCheck => "/v4/im_open_login_svc/account_check",
            Api::GroupInfo => "/v4/group_open_http_svc/get_group_info",
            Api::GroupMemberInfo => "/v4/group_open_http_svc/get_specified_group_member_info",
            Api::Other => "",
        }
    }

    /// The API served on `path`; `None` (404) for anything but `/v4/<service>/<command>`.
    pub(super) fn from_path(path: &str) -> Option<Api> {
        if let Some(api) = FIXED.into_iter().find(|api| api.path() == path) {
            return Some(api);
        }
        let (service, command) = path.strip_prefix("/v4/")?.split_once('/')?;
        let name = |s: &str, digits: bool| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || (digits && b.is_ascii_digit()))
        };
        (name(service, false) && name(command, true)).then_some(Api::Other)
    }
}
