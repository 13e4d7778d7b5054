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
