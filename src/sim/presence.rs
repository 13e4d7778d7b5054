//! The sim's presence store: every existing account's login status, generated from its number
//! (`user{N}`: N % 3 == 0 `Online`, 1 `PushOnline`, 2 `Offline`) with the statuses set by
//! [`super::Sim::set_online_status`] layered on top, and its custom status.
//!
//! Each status shows one device in `query_online_status`'s `Detail` (an `Offline` account
//! shows none) and is reached by one `State.StateChange` event. Read by `online.rs` and
//! `group_members.rs`; changed by `fire.rs`, which also sends the callback.

use std::collections::HashMap;

use parking_lot::RwLock;

use super::profiles;

/// A login status, as `query_online_status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Online,
    PushOnline,
    Offline,
}

/// What a [`Status`] shows and which event leads to it.
struct Shape {
    name: &'static str,
    /// The one logged-in device `Detail` lists (`Platform`); `None` for no `Detail`.
    device: Option<&'static str>,
    /// `Info.Action` and `Info.Reason` of the `State.StateChange` that leads here.
    action: &'static str,
    reason: &'static str,
    /// The callback's `OptPlatform` (State.StateChange spells iOS `IOS`).
    opt_platform: &'static str,
}

const ONLINE: Shape = Shape {
    name: "Online",
    device: Some("iPhone"),
    action: "Login",
    reason: "Register",
    opt_platform: "IOS",
};
const PUSH_ONLINE: Shape = Shape {
    name: "PushOnline",
    device: Some("Android"),
    action: "Disconnect",
    reason: "LinkClose",
    opt_platform: "Android",
};
const OFFLINE: Shape = Shape {
    name: "Offline",
    device: None,
    action: "Logout",
    reason: "Unregister",
    opt_platform: "IOS",
};

/// Every account's status: generated, or as last set.
pub(super) struct Presence {
    accounts: u64,
    set: RwLock<HashMap<u64, Status>>,
}

// === impl Status ===

impl Status {
    /// The status named `name` (`Online`, `PushOnline`, `Offline`; case-sensitive).
    pub(super) fn parse(name: &str) -> Option<Status> {
        [Status::Online, Status::PushOnline, Status::Offline]
            .into_iter()
            .find(|status| status.shape().name == name)
    }

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

    /// `(Action, Reason)` of the `State.StateChange` leading to this status.
    pub(super) fn event(self) -> (&'static str, &'static str) {
        (self.shape().action, self.shape().reason)
    }

    /// The `OptPlatform` that `State.StateChange` is sent with.
    pub(super) fn opt_platform(self) -> &'static str {
        self.shape().opt_platform
    }
}

// === impl Presence ===

impl Presence {
    pub(super) fn new(accounts: u64) -> Presence {
        Presence {
            accounts,
            set: RwLock::new(HashMap::new()),
        }
    }

    /// The status of account `n` now.
    pub(super) fn status_of(&self, n: u64) -> Status {
        self.set
            .read()
            .get(&n)
            .copied()
            .unwrap_or_else(|| Status::generated(n))
    }

    /// The status of `account` now; `None` if it does not exist.
    pub(super) fn status(&self, account: &str) -> Option<Status> {
        profiles::numbered(account, profiles::ACCOUNT_PREFIX, self.accounts)
            .map(|n| self.status_of(n))
    }

    /// Sets `account`'s status; false (nothing set) if the account does not exist.
    pub(super) fn set(&self, account: &str, status: Status) -> bool {
        let Some(n) = profiles::numbered(account, profiles::ACCOUNT_PREFIX, self.accounts) else {
            return false;
        };
        self.set.write().insert(n, status);
        true
    }
}

/// The custom status of account `n`: `busy-N` for N % 4 == 0, `在忙 N` for N % 4 == 2, else
/// empty (never set). Not changed by [`Presence::set`].
pub(super) fn custom_status(n: u64) -> String {
    match n % 4 {
        0 => format!("busy-{n}"),
        2 => format!("在忙 {n}"),
        _ => String::new(),
    }
}
