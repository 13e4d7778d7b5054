//! `POST /admin/purge`: an app admin drops accounts whose cached profile went wrong behind the
//! gateway (a console edit, a script calling Tencent directly): their tags and every whole
//! answer naming them, here and, in a fleet, on every gateway and in the shared tier (the same
//! fleet-wide invalidation as `portrait_set`). Nothing is sent to Tencent.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::ProfileService;
use crate::error::Error;
use crate::wire::Account;

/// The most accounts one purge takes (as many as one `portrait_get`).
const MAX_PURGE_ACCOUNTS: usize = 100;

#[derive(Deserialize)]
struct PurgeRequest<'a> {
    #[serde(rename = "To_Account", borrow)]
    to_account: Option<Vec<Cow<'a, str>>>,
}

impl ProfileService {
    /// Drops the profiles of a `{"To_Account": [...]}` body's accounts everywhere they are
    /// cached; the distinct accounts purged (the list reads' entries are the caller's job).
    pub(crate) async fn purge(&self, body: &[u8]) -> Result<Vec<Account>, Error> {
        let accounts = decode_purge(body)?;
        for account in &accounts {
            self.invalidate(account).await;
        }
        Ok(accounts)
    }
}

/// The answer to a purge of `count` accounts.
pub(crate) fn purged_answer(count: usize) -> Bytes {
    let answer = serde_json::json!({
        "ActionStatus": "OK",
        "ErrorCode": 0,
        "ErrorInfo": "",
        "PurgedCount": count,
    });
    Bytes::from(answer.to_string())
}

/// The distinct accounts of a purge body, in order; a bad body is the caller's error.
fn decode_purge(body: &[u8]) -> Result<Vec<Account>, Error> {
    let request: PurgeRequest<'_> = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_field("purge body must be {\"To_Account\": [string, ...]}", &e)
    })?;
    let accounts = request
        .to_account
        .filter(|accounts| !accounts.is_empty())
        .ok_or_else(|| Error::InvalidField(Arc::from("To_Account is missing or empty")))?;
    if accounts.len() > MAX_PURGE_ACCOUNTS {
        return Err(Error::TooManyAccounts(accounts.len()));
    }
    if accounts.iter().any(|account| account.is_empty()) {
        return Err(Error::InvalidField(Arc::from(
            "To_Account holds an empty account",
        )));
    }
    let mut seen = HashSet::new();
    let distinct = accounts
        .iter()
        .filter(|account| seen.insert(account.to_string()));
    Ok(distinct
        .map(|account| Account::from(account.as_ref()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_body_is_checked_and_its_accounts_deduplicated() {
        let accounts = decode_purge(br#"{"To_Account": ["a", "b", "a"]}"#).expect("valid");
        assert_eq!(accounts, vec![Account::from("a"), Account::from("b")]);
        for bad in [
            &br#"{"To_Account": []}"#[..],
            br#"{"To_Account": [""]}"#,
            br#"{"To_Account": "a"}"#,
            br#"{}"#,
            b"not json",
        ] {
            let error = decode_purge(bad).expect_err("refused");
            assert_eq!(error.code(), 40001, "{error}");
        }
        let many: Vec<String> = (0..101).map(|n| format!("u{n}")).collect();
        let body = serde_json::json!({ "To_Account": many }).to_string();
        assert!(matches!(
            decode_purge(body.as_bytes()),
            Err(Error::TooManyAccounts(101))
        ));
    }
}
