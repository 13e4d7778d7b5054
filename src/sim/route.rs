//! The sim's routing: which REST API a URL path names ([`Api`]), and the path of each.
//!
//! Read by `request.rs` for every request; the answers themselves are `api.rs`'s. The paths of
//! the APIs the gateway lists come from its one API table (`crate::apis`), a fact both sides
//! share; which other paths are valid the sim decides with its own code, so the gateway's
//! pass-through validation is still judged by an independent oracle.

/// The REST APIs the sim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `v4/profile/portrait_get`.
    PortraitGet,
    /// `v4/profile/portrait_set`.
    PortraitSet,
    /// Any other `v4/<service>/<command>` (service `[a-z_]+`, command `[a-z_0-9]+`): checked
    /// and rate limited like the others (one window per path), then answered with
    /// `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Echo":{"Api":"<service>/<command>",
    /// "Body":<the request body, byte for byte>}}`, or 40001 if the body is not a JSON object.
    Other,
}

// === impl Api ===

impl Api {
    /// The URL path Tencent serves this API on; `""` for [`Api::Other`], which is many paths
    /// (see [`SimCall::path`](super::SimCall::path)).
    pub fn path(self) -> &'static str {
        match self {
            Api::PortraitGet => crate::apis::PORTRAIT_GET.path,
            Api::PortraitSet => crate::apis::PORTRAIT_SET.path,
            Api::Other => "",
        }
    }

    /// The API served on `path`; `None` (404) for anything but `/v4/<service>/<command>`.
    pub(super) fn from_path(path: &str) -> Option<Api> {
        if let Some(api) = [Api::PortraitGet, Api::PortraitSet]
            .into_iter()
            .find(|api| api.path() == path)
        {
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
