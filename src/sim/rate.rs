//! The sim's rate limit: one sliding 1 s window per API path, as Tencent limits each REST API
//! separately. Every API on a fixed path (the profile APIs and the four list reads) has a window
//! of its own; every echoed API ([`super::Api::Other`]) gets its own, kept in a bounded map keyed
//! by path.
//!
//! Owns only arrival times; `api.rs` decides each API's limit ([`super::SimConfig`]) and what a
//! refused call is answered (60007).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Api;

/// The rate limit's sliding window.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Most echoed paths tracked at once. Windows idle for a whole second hold nothing and are
/// dropped to make room; past this many busy paths, a new path is refused (60007).
pub(super) const MAX_TRACKED_PATHS: usize = 1024;

/// Arrival times of the calls accepted in the last second, for one API.
#[derive(Default)]
pub(super) struct RateWindow(Mutex<VecDeque<Instant>>);

/// Every API's window.
#[derive(Default)]
pub(super) struct RateWindows {
    portrait_get: RateWindow,
    portrait_set: RateWindow,
    query_online_status: RateWindow,
    account_check: RateWindow,
    group_info: RateWindow,
    group_member_info: RateWindow,
    /// Echoed APIs by path ("/v4/openim/sendmsg"), at most [`MAX_TRACKED_PATHS`].
    others: Mutex<HashMap<String, Arc<RateWindow>>>,
}

// === impl RateWindow ===

impl RateWindow {
    /// Admits a call arriving `at` if fewer than `limit` calls were admitted in `(at - 1s, at]`.
    /// Rejected calls are not counted. A `limit` of 0 admits everything.
    pub(super) fn admit(&self, at: Instant, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let mut window = self.0.lock();
        if let Some(start) = at.checked_sub(RATE_WINDOW) {
            while window.front().is_some_and(|t| *t <= start) {
                window.pop_front();
            }
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(at);
        true
    }

    /// Whether no call admitted before `at` is still inside the window ending at `at`.
    fn is_idle(&self, at: Instant) -> bool {
        let window = self.0.lock();
        match (window.back(), at.checked_sub(RATE_WINDOW)) {
            (None, _) => true,
            (Some(last), Some(start)) => *last <= start,
            (Some(_), None) => false,
        }
    }
}

// === impl RateWindows ===

impl RateWindows {
    /// Admits a call of `api` on `path` arriving `at` (see [`RateWindow::admit`]).
    pub(super) fn admit(&self, api: Api, path: &str, at: Instant, limit: u32) -> bool {
        let fixed = match api {
            Api::PortraitGet => &self.portrait_get,
            Api::PortraitSet => &self.portrait_set,
            Api::QueryOnlineStatus => &self.query_online_status,
            Api::AccountCheck => &self.account_check,
            Api::GroupInfo => &self.group_info,
            Api::GroupMemberInfo => &self.group_member_info,
            Api::Other => return self.admit_other(path, at, limit),
        };
        fixed.admit(at, limit)
    }

    /// Admits a call of the echoed API on `path` (see [`RateWindow::admit`]).
    fn admit_other(&self, path: &str, at: Instant, limit: u32) -> bool {
        limit == 0
            || self
                .other(path, at)
                .is_some_and(|window| window.admit(at, limit))
    }

    /// The window of an echoed `path`, made if needed; `None` if [`MAX_TRACKED_PATHS`] busy
    /// paths are already tracked.
    fn other(&self, path: &str, at: Instant) -> Option<Arc<RateWindow>> {
        let mut others = self.others.lock();
        if let Some(window) = others.get(path) {
            return Some(Arc::clone(window));
        }
        if others.len() >= MAX_TRACKED_PATHS {
            others.retain(|_, window| !window.is_idle(at));
            if others.len() >= MAX_TRACKED_PATHS {
                return None;
            }
        }
        let window = Arc::new(RateWindow::default());
        others.insert(path.to_owned(), Arc::clone(&window));
        Some(window)
    }

    /// How many echoed paths have a window now.
    #[cfg(test)]
    pub(crate) fn tracked_paths(&self) -> usize {
        self.others.lock().len()
    }
}
