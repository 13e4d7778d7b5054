//! `portrait_set`: check the body -> forward it untouched through its own path (breaker,
//! limiter, retried only when the connection provably never reached the upstream; see
//! `upstream/path.rs`) -> drop the account's cached tags whatever the outcome (a failed set may
//! have partly applied), in a fleet on every gateway -> return the upstream's answer as is.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ProfileService;
use crate::error::Error;
use crate::upstream::Forwarded;
use crate::wire::Account;

impl ProfileService {
    /// Forwards a `portrait_set` body untouched, then drops the account's cached tags.
    pub async fn portrait_set(&self, body: Bytes) -> Result<Bytes, Error> {
        let account = decode_set_account(&body)?;
        let path = &self.0.set_path;
        let result = path
            .forward(body, self.0.max_queue_wait, &self.0.metrics)
            .await;
        // Dropped whatever the outcome: a failed set may have partly applied.
        self.invalidate(&account).await;
        match result? {
            Forwarded { status: 200, body } => Ok(body),
            Forwarded { status, .. } => Err(Error::UpstreamStatus(status)),
        }
    }

    /// Drops `account`'s cached tags here and, in a fleet, on every gateway; a fetch dispatched
    /// before this never writes its older values back. Used by `portrait_set` and by Tencent's
    /// `Profile.CallbackPortraitSet`.
    pub async fn invalidate(&self, account: &Account) {
        self.0.cache.invalidate(account);
        self.0.tier.invalidate(account).await;
        self.0.metrics.cache_invalidations.inc();
    }
}

#[derive(Deserialize)]
struct SetRequest<'a> {
    #[serde(rename = "From_Account", borrow)]
    from_account: Option<Cow<'a, str>>,
    #[serde(rename = "ProfileItem", borrow)]
    profile_item: Option<Vec<&'a RawValue>>,
}

/// Checks a `portrait_set` body enough to know whose cache to drop; Tencent checks the rest.
fn decode_set_account(body: &[u8]) -> Result<Account, Error> {
    let request: SetRequest<'_> = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_field(
            "portrait_set body must be {\"From_Account\": string, \"ProfileItem\": [...]}",
            &e,
        )
    })?;
    let account = request
        .from_account
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::InvalidField(Arc::from("From_Account is missing or empty")))?;
    if request.profile_item.is_none_or(|items| items.is_empty()) {
        return Err(Error::InvalidField(Arc::from(
            "ProfileItem is missing or empty",
        )));
    }
    Ok(Account::from(account.as_ref()))
}
