//! RedisTier: the fleet's shared cache tier: (account, tag) values and absences in Redis,
//! behind every gateway's L1; the fleet-wide invalidation of an account; and the claims that
//! make a miss single-flight across the fleet.
//!
//! Layout per account: a hash `…:p:<account>` with one field per tag (`expiry ms|=raw JSON`, or
//! `expiry ms|-` for a tag the upstream left unset; the expiry is on Redis's clock, so the TTL
//! means the same on every gateway) and a version key `…:v:<account>`. A lookup returns the
//! version with the values (one round trip for all of a caller's missed accounts); a write of
//! fetched values names the version read before the fetch was sent and is refused once an
//! invalidation has bumped it. Invalidating bumps the version, drops the values and publishes
//! the account on the fleet's channel (channel.rs), all in one script. An invalidation Redis
//! could not take is kept (bounded) and sent again when Redis answers.
//!
//! Claims: a lookup that may go upstream also claims, in the same script, each account it
//! lacks tags of (`…:c:<account>`, this gateway's token, expiring after the longest a fetch can
//! take). A gateway that finds a peer's claim waits for the filled channel to name the account
//! (fills.rs), then looks again; the claimer's write of the values ends its claims and
//! publishes them, and a failed fetch releases them the same way. A claimer that dies leaves
//! its claims to expire; its waiters stop waiting at their own bound and fetch for themselves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;

use super::fills::Fills;
use super::link::Link;
use super::metrics::Command;
use super::scripts;

mod lists;

use crate::cache::{AccountMiss, Claim, TierAnswer, TierWrite};
use crate::config::LiveDuration;
use crate::wire::{Account, RawJson};
pub(super) use lists::heard as heard_list;

/// Invalidations kept while Redis is down; past this the fleet is told to flush every L1.
const MAX_PENDING_INVALIDATIONS: usize = 10_000;
/// The channel message that makes every gateway drop its whole L1 (no account is empty).
pub(super) const FLUSH_ALL: &str = "";

/// Handle to the shared tier; cheap to clone.
#[derive(Clone)]
pub(super) struct RedisTier(Arc<Inner>);

struct Inner {
    link: Link,
    /// `cache.ttl_seconds`, changed live by a reload.
    ttl: LiveDuration,
    channel: String,
    /// The channel on which claimed accounts are announced filled (or given up on).
    filled_channel: String,
    /// The channel of the list reads' invalidations (`lists.rs`).
    list_channel: String,
    /// This gateway's claims hold its token (random per process).
    token: String,
    /// How long a claim lives: the longest its claimer's fetch can take.
    claim_ttl: Duration,
    fills: Fills,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    accounts: HashSet<Account>,
    /// List reads' invalidations, as their channel messages (`lists.rs`).
    lists: HashSet<String>,
    overflowed: bool,
}

impl RedisTier {
    /// The tier in `link`'s namespace, with the L1 TTL; claims live for `claim_ttl`.
    pub(super) fn new(link: Link, ttl: Duration, claim_ttl: Duration) -> RedisTier {
        RedisTier(Arc::new(Inner {
            channel: link.key(&["invalidate"]),
            filled_channel: link.key(&["filled"]),
            list_channel: link.key(&["invalidate_lists"]),
            token: format!("{:016x}", rand::random::<u64>()),
            claim_ttl,
            fills: Fills::default(),
            ttl: LiveDuration::new(ttl),
            link,
            pending: Mutex::new(Pending::default()),
        }))
    }

    /// Sets the lifetime of values written from now on.
    pub(super) fn set_ttl(&self, ttl: Duration) {
        self.0.ttl.set(ttl);
    }

    /// How long a version outlives its last bump: far longer than any fetch takes, and than
    /// any value written under it lives.
    fn version_ttl(&self) -> Duration {
        self.0.ttl.get() * 2 + Duration::from_secs(600)
    }

    /// The invalidation channel's name.
    pub(super) fn channel(&self) -> &str {
        &self.0.channel
    }

    /// The filled channel's name.
    pub(super) fn filled_channel(&self) -> &str {
        &self.0.filled_channel
    }

    /// What the filled channel said, for the waiters.
    pub(super) fn fills(&self) -> &Fills {
        &self.0.fills
    }

    /// The link to Redis.
    pub(super) fn link(&self) -> &Link {
        &self.0.link
    }

    /// Looks every miss up in one round trip, claiming (with `claim`) the accounts still
    /// missing tags; `None` when Redis is down or slow (the caller goes to the upstream as a
    /// standalone gateway would).
    pub(super) async fn lookup(
        &self,
        misses: &[AccountMiss],
        claim: bool,
    ) -> Option<Vec<TierAnswer>> {
        let metrics = self.0.link.metrics();
        let pairs: usize = misses.iter().map(|m| m.tags.len()).sum();
        if !self.0.link.is_up() {
            metrics.l2_skipped.inc_by(pairs as u64);
            return None;
        }
        let mut invocation = scripts::CACHE_GET.prepare_invoke();
        invocation
            .arg(if claim { self.0.token.as_str() } else { "" })
            .arg(millis(self.0.claim_ttl));
        for miss in misses {
            invocation
                .key(self.values_key(&miss.account))
                .key(self.version_key(&miss.account))
                .key(self.claim_key(&miss.account));
            invocation.arg(miss.tags.len());
            for tag in &miss.tags {
                invocation.arg(tag.as_str());
            }
        }
        let answer = self
            .0
            .link
            .run::<Vec<Vec<String>>>(Command::CacheGet, &invocation);
        let rows = match answer.await {
            Ok(rows) if rows.len() == misses.len() => rows,
            _ => {
                metrics.l2_skipped.inc_by(pairs as u64);
                return None;
            }
        };
        let answers: Vec<TierAnswer> = misses
            .iter()
            .zip(&rows)
            .map(|(miss, row)| decode_row(miss, row))
            .collect();
        let (mut hits, mut absent) = (0u64, 0u64);
        for found in answers.iter().flat_map(|a| &a.found) {
            match found.1 {
                Some(_) => hits += 1,
                None => absent += 1,
            }
        }
        metrics.l2_hits.inc_by(hits);
        metrics.l2_absent.inc_by(absent);
        metrics.l2_misses.inc_by(pairs as u64 - hits - absent);
        let won = answers.iter().filter(|a| a.claim == Claim::Mine).count();
        metrics.claims_won.inc_by(won as u64);
        Some(answers)
    }

    /// Writes fetched values, each account only while its version is unchanged. Returns which
    /// were written (aligned with `writes`), or `None` when Redis did not answer.
    pub(super) async fn put(&self, writes: &[TierWrite]) -> Option<Vec<bool>> {
        if writes.is_empty() {
            return Some(Vec::new());
        }
        let mut invocation = scripts::CACHE_PUT.prepare_invoke();
        invocation
            .arg(millis(self.0.ttl.get()))
            .arg(&self.0.token)
            .arg(&self.0.filled_channel);
        for write in writes {
            invocation
                .key(self.values_key(&write.account))
                .key(self.version_key(&write.account))
                .key(self.claim_key(&write.account));
            invocation
                .arg(write.account.as_str())
                .arg(write.version.to_string())
                .arg(write.values.len());
            for (tag, value) in &write.values {
                invocation
                    .arg(tag.as_str())
                    .arg(encode_value(value.as_deref()));
            }
        }
        let written: Vec<i64> = self.0.link.run(Command::CachePut, &invocation).await.ok()?;
        Some(written.iter().map(|w| *w == 1).collect())
    }

    /// Waits for peers' claimed fetches of `accounts` (see [`Fills::wait`]).
    pub(super) async fn wait_filled(
        &self,
        accounts: &[Account],
        since: Instant,
        deadline: Instant,
    ) -> Vec<bool> {
        let filled = self
            .0
            .fills
            .wait(&self.0.link, accounts, since, deadline)
            .await;
        let metrics = self.0.link.metrics();
        let heard = filled.iter().filter(|f| **f).count();
        metrics.claims_waited.inc_by(heard as u64);
        metrics.claims_expired.inc_by((filled.len() - heard) as u64);
        filled
    }

    /// Ends this gateway's claims on `accounts` (their fetch failed) and wakes their waiters;
    /// when Redis does not answer, the claims end by expiry.
    pub(super) async fn release(&self, accounts: &[Account]) {
        if accounts.is_empty() {
            return;
        }
        let mut invocation = scripts::RELEASE_CLAIMS.prepare_invoke();
        invocation.arg(&self.0.token).arg(&self.0.filled_channel);
        for account in accounts {
            invocation
                .key(self.claim_key(account))
                .arg(account.as_str());
        }
        let _: Result<i64, _> = self.0.link.run(Command::ReleaseClaims, &invocation).await;
    }

    /// Invalidates `account` fleet-wide; kept for later when Redis does not take it.
    pub(super) async fn invalidate(&self, account: &Account) {
        if self.0.link.is_up() && self.send_invalidation(account, false).await {
            return;
        }
        let mut pending = self.0.pending.lock();
        if pending.accounts.len() < MAX_PENDING_INVALIDATIONS {
            pending.accounts.insert(account.clone());
        } else {
            pending.overflowed = true;
        }
    }

    /// Sends the invalidations Redis missed; true when none is left. Used by the channel task
    /// before it returns the gateway to fleet mode.
    pub(super) async fn resend_pending(&self) -> bool {
        let (accounts, overflowed) = {
            let mut pending = self.0.pending.lock();
            let overflowed = std::mem::take(&mut pending.overflowed);
            (std::mem::take(&mut pending.accounts), overflowed)
        };
        let mut unsent: Vec<Account> = Vec::new();
        for account in accounts {
            if unsent.is_empty() && self.send_invalidation(&account, true).await {
                continue;
            }
            unsent.push(account);
        }
        let lists_sent = unsent.is_empty() && self.resend_pending_lists().await;
        let flush_unsent = overflowed && !(lists_sent && self.publish_flush_all().await);
        let all_sent = unsent.is_empty() && lists_sent && !flush_unsent;
        let mut pending = self.0.pending.lock();
        pending.accounts.extend(unsent);
        pending.overflowed |= flush_unsent;
        all_sent
    }

    async fn send_invalidation(&self, account: &Account, anyway: bool) -> bool {
        let mut invocation = scripts::INVALIDATE.prepare_invoke();
        invocation
            .key(self.values_key(account))
            .key(self.version_key(account))
            .arg(&self.0.channel)
            .arg(account.as_str())
            .arg(millis(self.version_ttl()));
        let link = &self.0.link;
        let result: Result<i64, _> = if anyway {
            link.run_anyway(Command::Invalidate, &invocation).await
        } else {
            link.run(Command::Invalidate, &invocation).await
        };
        let sent = result.is_ok();
        if sent {
            link.metrics().invalidations_sent.inc();
        }
        sent
    }

    async fn publish_flush_all(&self) -> bool {
        let mut invocation = scripts::PUBLISH.prepare_invoke();
        invocation.arg(&self.0.channel).arg(FLUSH_ALL);
        let result: Result<i64, _> = self
            .0
            .link
            .run_anyway(Command::Invalidate, &invocation)
            .await;
        result.is_ok()
    }

    fn values_key(&self, account: &Account) -> String {
        self.0.link.key(&["p", account.as_str()])
    }

    fn version_key(&self, account: &Account) -> String {
        self.0.link.key(&["v", account.as_str()])
    }

    fn claim_key(&self, account: &Account) -> String {
        self.0.link.key(&["c", account.as_str()])
    }
}

/// One account's row from `CACHE_GET`: version, claim, then (field, ms left, value) triples.
fn decode_row(miss: &AccountMiss, row: &[String]) -> TierAnswer {
    let mut answer = TierAnswer {
        version: row.first().and_then(|v| v.parse().ok()).unwrap_or(0),
        claim: row.get(1).map_or(Claim::Unclaimed, |c| decode_claim(c)),
        ..TierAnswer::default()
    };
    let mut fresh_for: Option<u64> = None;
    for triple in row.get(2..).unwrap_or_default().chunks_exact(3) {
        let Some(tag) = miss.tags.iter().find(|t| t.as_str() == triple[0]) else {
            continue;
        };
        let (Ok(ms), Some(value)) = (triple[1].parse::<u64>(), decode_value(&triple[2])) else {
            continue; // not ours, or damaged: treated as a miss
        };
        fresh_for = Some(fresh_for.map_or(ms, |f| f.min(ms)));
        answer.found.push((tag.clone(), value));
    }
    answer.fresh_for = Duration::from_millis(fresh_for.unwrap_or(0));
    answer
}

/// `m`: this gateway's; digits: a peer's, with that many ms left; else nothing claimed.
fn decode_claim(text: &str) -> Claim {
    match text {
        "m" => Claim::Mine,
        ms => ms.parse::<u64>().map_or(Claim::Unclaimed, |ms| {
            Claim::Theirs(Duration::from_millis(ms))
        }),
    }
}

fn encode_value(value: Option<&RawValue>) -> String {
    match value {
        Some(v) => format!("={}", v.get()),
        None => "-".to_owned(),
    }
}

/// `Some(None)`: cached as unset; `None`: not a value this gateway wrote (never trusted).
fn decode_value(text: &str) -> Option<Option<RawJson>> {
    match text.split_at_checked(1)? {
        ("-", "") => Some(None),
        ("=", json) => RawValue::from_string(json.to_owned())
            .ok()
            .map(|raw| Some(Arc::from(raw))),
        _ => None,
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Tag;

    #[test]
    fn values_round_trip_and_damage_is_a_miss() {
        let raw: RawJson = Arc::from(RawValue::from_string("\"nick\"".into()).unwrap());
        let encoded = encode_value(Some(&raw));
        assert_eq!(encoded, "=\"nick\"");
        let decoded = decode_value(&encoded).expect("ours").expect("a value");
        assert_eq!(decoded.get(), "\"nick\"");
        assert!(matches!(decode_value("-"), Some(None)));
        assert!(decode_value("=not json").is_none());
        assert!(decode_value("").is_none());
        assert!(decode_value("x1").is_none());
    }

    #[test]
    fn a_row_keeps_only_requested_tags_and_the_shortest_freshness() {
        let nick = Tag::standard(0).unwrap();
        let gender = Tag::standard(1).unwrap();
        let miss = AccountMiss {
            account: Account::from("a"),
            tags: vec![nick.clone(), gender.clone()],
            version: None,
        };
        let row: Vec<String> = [
            "7",
            "1500",
            nick.as_str(),
            "5000",
            "=\"n\"",
            gender.as_str(),
            "1200",
            "-",
            "Tag_Profile_IM_Other",
            "9",
            "=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let answer = decode_row(&miss, &row);
        assert_eq!(answer.version, 7);
        assert_eq!(answer.found.len(), 2);
        assert_eq!(answer.fresh_for, Duration::from_millis(1200));
        assert_eq!(answer.claim, Claim::Theirs(Duration::from_millis(1500)));
    }

    #[test]
    fn claims_decode_and_anything_else_is_unclaimed() {
        assert_eq!(decode_claim("m"), Claim::Mine);
        assert_eq!(decode_claim("0"), Claim::Theirs(Duration::ZERO));
        assert_eq!(decode_claim("-"), Claim::Unclaimed);
        assert_eq!(decode_claim(""), Claim::Unclaimed);
    }
}
