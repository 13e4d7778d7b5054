//! Answers past the TTL: stale-while-revalidate (a pair expired by at most
//! `cache.stale_while_revalidate_seconds` is answered at once and refreshed in the background,
//! at most one refresh per account at a time, coalesced with other misses and paced by the
//! limiter) and stale-if-error (when a fetch fails as a whole, each missed pair younger than
//! `cache.stale_if_error_seconds` past its TTL is answered from the cache; only accounts with
//! nothing to fall back on get the error, per account). Per-account failures from Tencent are
//! answered as Tencent answered them, never replaced by stale values.

use std::sync::Arc;
use std::time::Instant;

use super::fetch::fetch_stamps_now;
use super::lookup::Lookups;
use super::ProfileService;
use crate::batcher::AccountFetch;
use crate::cache::AccountMiss;
use crate::error::Error;

impl ProfileService {
    /// Starts one background refresh for each account not already being refreshed.
    pub(super) fn revalidate(&self, stale: Vec<AccountMiss>) {
        if stale.is_empty() {
            return;
        }
        let todo: Vec<AccountMiss> = {
            let mut refreshing = self.0.refreshing.lock();
            stale
                .into_iter()
                .filter(|m| refreshing.insert(m.account.clone()))
                .collect()
        };
        if todo.is_empty() {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let accounts: Vec<_> = todo.iter().map(|m| m.account.clone()).collect();
            let stamps = fetch_stamps_now(&service.0.cache, &todo);
            // Whatever comes back is cached by the batch worker; a failure leaves the stale
            // values to serve-stale.
            let _ = service.fetch(stamps, todo).await;
            let mut refreshing = service.0.refreshing.lock();
            for account in &accounts {
                refreshing.remove(account);
            }
        });
    }

    /// The fetch of `misses` failed as a whole with `error`: answers each missed account from
    /// values that went stale less than `stale_if_error` ago, and fails per account only those
    /// with a pair that has none. Fails the whole call when no account could be answered.
    pub(super) fn stale_on_error(
        &self,
        found: &mut Lookups<'_>,
        misses: &[AccountMiss],
        error: Error,
        now: Instant,
    ) -> Result<Vec<AccountFetch>, Error> {
        let max_age = self.0.stale_if_error;
        let (code, info) = (error.code(), Arc::<str>::from(error.to_string()));
        let mut answered = 0usize;
        let mut stale_pairs = 0u64;
        let mut fetched = Vec::with_capacity(misses.len());
        for (i, miss) in misses.iter().enumerate() {
            let view = found.views.iter().find(|v| v.fetched == Some(i));
            let cached = view.and_then(|v| v.cached.clone());
            let old: Option<Vec<_>> = miss
                .tags
                .iter()
                .map(|tag| {
                    let value = cached.as_ref()?.stale(tag, now, max_age)?;
                    Some((tag.clone(), value))
                })
                .collect();
            match old {
                Some(values) => {
                    answered += 1;
                    stale_pairs += values.len() as u64;
                    fetched.push(AccountFetch::Values(values));
                }
                _ => fetched.push(AccountFetch::Failed {
                    code,
                    info: info.clone(),
                }),
            }
        }
        if answered == 0 {
            return Err(error);
        }
        self.0.metrics.cache_stale.inc_by(stale_pairs);
        tracing::debug!(error = %error, answered, "upstream failed: answered from stale values");
        Ok(fetched)
    }
}
