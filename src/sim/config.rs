//! The sim's configuration: [`SimConfig`], its defaults (what every existing user gets: no
//! callbacks) and its redacted `Debug`, and how missing accounts are reported.
//!
//! Read by `sim.rs` when the sim starts; nothing here changes while it runs.

use std::fmt;
use std::time::Duration;

use super::{SimCallbacks, DEMO_SECRET_KEY};

/// How the simulated Tencent is set up.
#[derive(Clone)]
pub struct SimConfig {
    /// The app's SDKAppID; requests naming another one get 70014.
    pub sdkappid: u64,
    /// The SecretKey UserSigs are verified with.
    pub secret_key: String,
    /// App admin UserIDs; any other `identifier` gets 40004.
    pub admins: Vec<String>,
    /// Whether to check `usersig` (off lets benches skip signing).
    pub verify_usersig: bool,
    /// Existing accounts are `user0` ..= `user{accounts-1}` (canonical decimal only).
    pub accounts: u64,
    /// Custom tags that exist; any other `Tag_Profile_Custom_*` gets 40009.
    pub custom_tags: Vec<String>,
    /// Existing groups are `group0` ..= `group{groups-1}` (canonical decimal only).
    pub groups: u64,
    /// Accepted calls per API in any sliding 1 s window; more get 60007. 0 disables the limit.
    /// Each echoed API ([`Api::Other`](super::Api::Other)) has its own window, by path. Every
    /// API but `account_check` has this limit (Tencent's default is 200/s for each).
    pub requests_per_second: u32,
    /// The same for `account_check` ([`Api::AccountCheck`](super::Api::AccountCheck)), whose
    /// published default is 100/s, half the others'. 0 disables its limit.
    pub account_check_per_second: u32,
    /// Added before every answer.
    pub latency: Duration,
    /// How a `portrait_get` naming a nonexistent account fails.
    pub missing_account: MissingAccount,
    /// Whether to keep the call log ([`Sim::calls`](super::Sim::calls)); a long-running sim turns it off and
    /// reads [`Sim::stats`](super::Sim::stats) instead, which is always kept.
    pub call_log: bool,
    /// Where to send `Profile.CallbackPortraitSet` after each profile change (a REST
    /// `portrait_set` or [`Sim::client_portrait_set`](super::Sim::client_portrait_set)) and
    /// `State.StateChange` after each [`Sim::set_online_status`](super::Sim::set_online_status);
    /// `None` sends no callbacks.
    pub callback: Option<SimCallbacks>,
}

/// How `portrait_get` reports accounts that do not exist (reference §2.3: Tencent's choice is
/// unknown, so the sim can play either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAccount {
    /// That account's entry gets `ResultCode` 40003 and is listed in `Fail_Account`.
    PerAccount,
    /// The whole call fails with `ErrorCode` 40003.
    WholeCall,
}

// === impl SimConfig ===

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sdkappid: 1_400_000_000,
            secret_key: DEMO_SECRET_KEY.to_owned(),
            admins: vec!["administrator".to_owned()],
            verify_usersig: true,
            accounts: 1_000_000,
            custom_tags: vec!["Tag_Profile_Custom_Test".to_owned()],
            groups: 1000,
            requests_per_second: 200,
            account_check_per_second: 100,
            latency: Duration::ZERO,
            missing_account: MissingAccount::WholeCall,
            call_log: true,
            callback: None,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("sdkappid", &self.sdkappid)
            .field("secret_key", &"<redacted>")
            .field("admins", &self.admins)
            .field("verify_usersig", &self.verify_usersig)
            .field("accounts", &self.accounts)
            .field("custom_tags", &self.custom_tags)
            .field("groups", &self.groups)
            .field("requests_per_second", &self.requests_per_second)
            .field("account_check_per_second", &self.account_check_per_second)
            .field("latency", &self.latency)
            .field("missing_account", &self.missing_account)
            .field("call_log", &self.call_log)
            .field("callback", &self.callback)
            .finish()
    }
}

impl fmt::Debug for SimCallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCallbacks")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
