//! Fills: which accounts peers' claimed fetches have just filled (or given up on), heard on the
//! fleet's filled channel, and the wait of a gateway that found a peer's claim on an account.
//!
//! A waiter registers before it checks, and a fill is remembered for a while after it is heard,
//! so a fill that lands between the lookup that saw the claim and the wait is never missed.
//! Both the memory and the waiting are bounded: the memory by entries and age, each wait by its
//! deadline and by the link (a gateway that loses Redis stops waiting at once).

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::link::Link;
use crate::wire::Account;

/// Fills remembered at most (a burst of new accounts larger than this only costs waiters
/// that miss theirs a wait to their deadline, then a fetch of their own).
const REMEMBERED: u64 = 100_000;
/// How long a fill is remembered: longer than any wait.
const REMEMBER_FOR: Duration = Duration::from_secs(30);
/// How often a waiter looks at the link while nothing is heard.
const LINK_CHECK: Duration = Duration::from_millis(100);

/// Fills heard on the channel; shared by the channel task and the waiters.
pub(super) struct Fills {
    heard: moka::sync::Cache<Account, Instant>,
    changed: Notify,
}

impl Default for Fills {
    fn default() -> Self {
        Fills {
            heard: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(REMEMBER_FOR)
                .build(),
            changed: Notify::new(),
        }
    }
}

impl Fills {
    /// A filled-channel message: a JSON array of accounts. Anything else is ignored.
    pub(super) fn heard(&self, payload: &[u8]) {
        let Ok(accounts) = serde_json::from_slice::<Vec<String>>(payload) else {
            return;
        };
        let now = Instant::now();
        for account in accounts {
            self.heard.insert(Account::from(account.as_str()), now);
        }
        self.changed.notify_waiters();
    }

    /// Waits until each of `accounts` was heard filled since `since`, until `deadline`, or
    /// until `link` leaves fleet mode; which were heard, aligned with `accounts`.
    pub(super) async fn wait(
        &self,
        link: &Link,
        accounts: &[Account],
        since: Instant,
        deadline: Instant,
    ) -> Vec<bool> {
        let filled = |account: &Account| self.heard.get(account).is_some_and(|at| at >= since);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let done: Vec<bool> = accounts.iter().map(filled).collect();
            let now = Instant::now();
            if done.iter().all(|d| *d) || now >= deadline || !link.is_up() {
                return done;
            }
            let nap = deadline.saturating_duration_since(now).min(LINK_CHECK);
            let _ = tokio::time::timeout(nap, changed).await;
        }
    }
}
