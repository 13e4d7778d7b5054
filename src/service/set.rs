//! `portrait_set`: check the body -> ask the breaker -> wait for a permit of its own limiter
//! -> forward the caller's body untouched (again only when the connection provably never
//! reached the upstream: a set is not idempotent to retry blindly) -> drop the account's cached
//! tags whatever the outcome (a failed set may have partly applied), in a fleet on every
//! gateway -> return the upstream's answer as is.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ProfileService;
use crate::breaker::Admission;
use crate::error::Error;
use crate::metrics::{Api, Outcome};
use crate::wire::{self, Account};

impl ProfileService {
    /// Forwards a `portrait_set` body untouched, then drops the account's cached tags.
    pub async fn portrait_set(&self, body: Bytes) -> Result<Bytes, Error> {
        let account = decode_set_account(&body)?;
        let breaker = &self.0.set_path.breaker;
        let Admission::Send { probe } = breaker.admit(Instant::now()) else {
            return Err(breaker.refusal());
        };
        let result = self.forward_set(body).await;
        match &result {
            Err(Error::QueueWaitExceeded(_)) if probe => breaker.abandon_probe(Instant::now()),
            result => breaker.record(result.as_ref().map(|_| ()), probe, Instant::now()),
        }
        self.0.cache.invalidate(&account);
        self.0.tier.invalidate(&account).await;
        self.0.metrics.cache_invalidations.inc();
        result
    }

    /// Sends the set, retrying only calls that never left the gateway (connection refused).
    async fn forward_set(&self, body: Bytes) -> Result<Bytes, Error> {
        let path = &self.0.set_path;
        let max_wait = self.0.max_queue_wait;
        let deadline = Instant::now() + max_wait;
        path.retries.record_call(Instant::now());
        let mut attempt = 0;
        loop {
            let (permit, waited) = path.limiter.acquire(deadline, max_wait).await?;
            self.0.metrics.ratelimit_wait.observe(waited.as_secs_f64());
            let started = Instant::now();
            let result = path.client.call(Api::PortraitSet, body.clone()).await;
            drop(permit);
            let seconds = started.elapsed().as_secs_f64();
            let metrics = &self.0.metrics;
            let (outcome, code) = set_outcome(&result);
            metrics.record_upstream(Api::PortraitSet, outcome, code, seconds);
            let Err(error @ Error::UpstreamRefused(_)) = &result else {
                return result;
            };
            attempt += 1;
            let now = Instant::now();
            let call_takes = std::time::Duration::ZERO;
            let Some(backoff) = path.retries.next(error, attempt, now, call_takes, deadline) else {
                return result;
            };
            path.retried.inc();
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The metrics outcome and code of a set: Tencent's own envelope decides, not just the
/// transport.
fn set_outcome(result: &Result<Bytes, Error>) -> (Outcome, i64) {
    match result {
        Ok(answer) => match wire::decode_envelope(answer).map(|env| env.error_code) {
            Ok(0) => (Outcome::Ok, 0),
            Ok(code) => (Outcome::UpstreamError, code),
            Err(e) => (Outcome::UpstreamError, e.code()),
        },
        Err(e) => (Outcome::of::<()>(Err(e)), e.code()),
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
