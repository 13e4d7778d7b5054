//! The sim's presence store: every existing account's login status, generated from its number
//! (`user{N}`: N % 3 == 0 `Online`, 1 `PushOnline`, 2 `Offline`), and its custom status.
//!
//! Each status shows one device in `query_online_status`'s `Detail` (an `Offline` account
//! shows none). Read by `online.rs` and `group_members.rs`.

use super::profiles;

/// A login status, as `query_online_status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Online,
    PushOnline,
    Offline,
}

/// What a [`Status`] shows.
struct Shape {
    name: &'static str,
    /// The one logged-in device `Detail` lists (`Platform`); `None` for no `Detail`.
    device: Option<&'static str>,
}

const ONLINE: Shape = Shape {
    name: "Online",
    device: Some("iPhone"),
};
const PUSH_ONLINE: Shape = Shape {
    name: "PushOnline",
    device: Some("Android"),
};
const OFFLINE: Shape = Shape {
    name: "Offline",
    device: None,
};

/// Every account's status.
pub(super) struct Presence {
    accounts: u64,
}

// === impl Status ===

impl Status {
    /// The generated status of account `n`.
    fn generated(n: u64) -> Status {
        match n % 3 {
            0 => Status::Online,
            1 => Status::PushOnline,
            _ => Status::Offline,
        }
    }

    fn shape(self) -> &'static Shape {
        match self {
            Status::Online => &ONLINE,
            Status::PushOnline => &PUSH_ONLINE,
            Status::Offline => &OFFLINE,
        }
    }

    /// The status as Tencent spells it.
    pub(super) fn name(self) -> &'static str {
        self.shape().name
    }

    /// The device `Detail` lists for this status, if any.
    pub(super) fn device(self) -> Option<&'static str> {
        self.shape().device
    }
}

// === impl Presence ===

impl Presence {
    pub(super) fn new(accounts: u64) -> Presence {
        Presence { accounts }
    }

    /// The status of account `n` now.
    pub(super) fn status_of(&self, n: u64) -> Status {
        Status::generated(n)
    }

    /// The status of `account` now; `None` if it does not exist.
    pub(super) fn status(&self, account: &str) -> Option<Status> {
        profiles::numbered(account, profiles::ACCOUNT_PREFIX, self.accounts)
            .map(|n| self.status_of(n))
    }
}

/// The custom status of account `n`: `busy-N` for N % 4 == 0, `在忙 N` for N % 4 == 2, else
/// empty (never set).
pub(super) fn custom_status(n: u64) -> String {
    match n % 4 {
        0 => format!("busy-{n}"),
        2 => format!("在忙 {n}"),
        _ => String::new(),
    }
}
