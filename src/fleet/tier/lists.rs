//! The list reads in the shared tier: each id's entries kept fleet-wide (`ttl_ms > 0`), a
//! fleet-wide single flight of each (id, options) (a gateway's claim; its peers wait for its
//! fetch and read what it shared), and the fleet-wide invalidation (layout in
//! `scripts/lists.rs`).
//!
//! Invalidation: a `State.StateChange` (or a group callback, or a purge) heard by one gateway
//! drops the id in Redis and on every gateway. Each message on the fleet's `invalidate_lists`
//! channel is `<api label>\n<id>` (a label has no newline; the id is the rest, whatever it
//! holds; an empty id, which no request can name, means every id: the API's generation is
//! bumped). One Redis could not take is kept (bounded, with the accounts') and sent again
//! with them before the gateway returns to fleet mode.
//!
//! A fetch's fill is announced on the filled channel the accounts' fills use, named
//! `l\n<api>\n<options hash>\n<id>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::super::metrics::Command;
use super::super::scripts;
use super::{millis, RedisTier, MAX_PENDING_INVALIDATIONS};
use crate::apis;
use crate::cache::{ListEntry, ListKeys, ListTierAnswer, ListTierWrite, ProfileCache};
use crate::wire::Account;

/// How long a fetched entry stays for the peers waiting on its claim when nothing is kept
/// (`ttl_ms = 0`), and how long an id the upstream left out is shared: read only by a
/// lookup that waited for the fetch (or within this of it).
const HANDOFF: Duration = Duration::from_secs(2);

impl RedisTier {
    /// The list invalidation channel's name.
    pub(in crate::fleet) fn list_channel(&self) -> &str {
        &self.0.list_channel
    }

    /// Reads (with `read`) and claims a list read's ids; `None` when Redis is down or slow.
    pub(in crate::fleet) async fn list_lookup(
        &self,
        keys: ListKeys<'_>,
        ids: &[Arc<str>],
        read: bool,
    ) -> Option<Vec<ListTierAnswer>> {
        if !self.0.link.is_up() || ids.is_empty() {
            return None;
        }
        let options = options_hash(keys.options);
        let mut invocation = scripts::LIST_GET.prepare_invoke();
        invocation.key(self.generation_key(keys.api));
        for id in ids {
            invocation.key(self.list_key(keys.api, id));
        }
        invocation
            .arg(&self.0.token)
            .arg(&options)
            .arg(millis(self.0.claim_ttl))
            .arg(if read { "1" } else { "0" });
        let answer = self
            .0
            .link
            .run::<Vec<String>>(Command::ListGet, &invocation);
        let rows = answer.await.ok().filter(|rows| rows.len() == ids.len())?;
        Some(rows.iter().map(|row| decode_answer(row)).collect())
    }

    /// Shares a fetch's outcome for the ids this gateway claims (see `LIST_PUT`).
    pub(in crate::fleet) async fn list_put(
        &self,
        keys: ListKeys<'_>,
        fetched: &[(Arc<str>, ListTierWrite)],
        ttl: Duration,
    ) {
        if !self.0.link.is_up() || fetched.is_empty() {
            return;
        }
        let options = options_hash(keys.options);
        let keep = if ttl.is_zero() { HANDOFF } else { ttl };
        let mut invocation = scripts::LIST_PUT.prepare_invoke();
        invocation.key(self.generation_key(keys.api));
        invocation
            .arg(&self.0.token)
            .arg(&options)
            .arg(&self.0.filled_channel)
            .arg(millis(keep))
            .arg(millis(HANDOFF.min(keep)));
        for (id, write) in fetched {
            invocation
                .key(self.list_key(keys.api, id))
                .arg(fill_name(keys.api, &options, id))
                .arg(encode_write(write));
        }
        let _: Result<i64, _> = self.0.link.run(Command::ListPut, &invocation).await;
    }

    /// Waits for peers' claimed fetches of `ids` (see `Fills::wait`).
    pub(in crate::fleet) async fn list_wait_filled(
        &self,
        keys: ListKeys<'_>,
        ids: &[Arc<str>],
        since: Instant,
        deadline: Instant,
    ) -> Vec<bool> {
        let options = options_hash(keys.options);
        let names: Vec<Account> = ids
            .iter()
            .map(|id| Account::from(fill_name(keys.api, &options, id).as_str()))
            .collect();
        let fills = &self.0.fills;
        fills.wait(&self.0.link, &names, since, deadline).await
    }

    /// Tells every gateway that `id` of the list read `api` changed.
    pub(in crate::fleet) async fn invalidate_list(&self, api: &str, id: &str) {
        let message = format!("{api}\n{id}");
        if self.0.link.is_up() && self.publish_list(&message).await {
            return;
        }
        let mut pending = self.0.pending.lock();
        if pending.lists.len() < MAX_PENDING_INVALIDATIONS {
            pending.lists.insert(message);
        } else {
            pending.overflowed = true;
        }
    }

    /// Sends the list invalidations Redis missed; true when none is left.
    pub(super) async fn resend_pending_lists(&self) -> bool {
        let messages = std::mem::take(&mut self.0.pending.lock().lists);
        let mut unsent = Vec::new();
        for message in messages {
            if unsent.is_empty() && self.publish_list(&message).await {
                continue;
            }
            unsent.push(message);
        }
        let all_sent = unsent.is_empty();
        self.0.pending.lock().lists.extend(unsent);
        all_sent
    }

    /// Drops what Redis holds of the message's id (or API) and publishes it.
    async fn publish_list(&self, message: &str) -> bool {
        let Some((api, id)) = message.split_once('\n') else {
            return true;
        };
        let mut invocation = scripts::LIST_INVALIDATE.prepare_invoke();
        match id {
            "" => invocation.key(self.generation_key(api)).arg("api"),
            id => invocation.key(self.list_key(api, id)).arg("id"),
        };
        invocation.arg(&self.0.list_channel).arg(message);
        let link = &self.0.link;
        let result: Result<i64, _> = link.run_anyway(Command::Invalidate, &invocation).await;
        result.is_ok()
    }

    fn list_key(&self, api: &str, id: &str) -> String {
        self.0.link.key(&["l", api, id])
    }

    fn generation_key(&self, api: &str) -> String {
        self.0.link.key(&["lgen", api])
    }
}

/// A short, fixed-size name of a set of options (their canonical JSON).
fn options_hash(options: &str) -> String {
    hex::encode(&Sha256::digest(options.as_bytes())[..16])
}

fn fill_name(api: &str, options: &str, id: &str) -> String {
    format!("l\n{api}\n{options}\n{id}")
}

fn encode_write(write: &ListTierWrite) -> String {
    match write {
        ListTierWrite::Entry(entry) => format!("{}|{}", entry.list, entry.raw),
        ListTierWrite::Absent => "-".to_owned(),
        ListTierWrite::Release => String::new(),
    }
}

/// One row of `LIST_GET`; anything damaged reads as a claim of this gateway's (it fetches).
fn decode_answer(row: &str) -> ListTierAnswer {
    if let Some(value) = row.strip_prefix('=') {
        if value == "-" {
            return ListTierAnswer::Found(None);
        }
        let entry = value.split_once('|').and_then(|(list, raw)| {
            let list = list.parse().ok()?;
            Some(ListEntry {
                list,
                raw: Arc::from(raw),
            })
        });
        return entry.map_or(ListTierAnswer::Mine, |e| ListTierAnswer::Found(Some(e)));
    }
    match row.parse::<u64>() {
        Ok(ms) => ListTierAnswer::Theirs(Duration::from_millis(ms)),
        Err(_) => ListTierAnswer::Mine,
    }
}

/// Drops the id a peer's list invalidation names from this gateway's cache.
pub(in crate::fleet) fn heard(cache: &ProfileCache, payload: &[u8]) {
    let Some((api, id)) = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.split_once('\n'))
    else {
        return;
    };
    let Some(index) = apis::LIST_TABLE.iter().position(|spec| spec.label == api) else {
        return;
    };
    match id {
        // No id is empty: an empty one names every id of the API.
        "" => cache.lists().invalidate_api(index as u8),
        id => cache.lists().invalidate(index as u8, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_and_damage_is_a_fetch_of_our_own() {
        let write = ListTierWrite::Entry(ListEntry {
            list: 1,
            raw: Arc::from(r#"{"a":"x|y"}"#),
        });
        let stored = format!("={}", encode_write(&write));
        let ListTierAnswer::Found(Some(entry)) = decode_answer(&stored) else {
            panic!("an entry");
        };
        assert_eq!((entry.list, &*entry.raw), (1, r#"{"a":"x|y"}"#));
        assert!(matches!(decode_answer("=-"), ListTierAnswer::Found(None)));
        assert!(matches!(decode_answer("m"), ListTierAnswer::Mine));
        let theirs = decode_answer("250");
        assert!(matches!(theirs, ListTierAnswer::Theirs(d) if d == Duration::from_millis(250)));
        for damaged in ["=x|{}", "=", "-3", ""] {
            assert!(
                matches!(decode_answer(damaged), ListTierAnswer::Mine),
                "{damaged}"
            );
        }
    }

    #[test]
    fn options_name_entries_apart() {
        assert_eq!(options_hash("{}"), options_hash("{}"));
        assert_ne!(options_hash("{}"), options_hash(r#"{"IsNeedDetail":1}"#));
        assert_eq!(options_hash("{}").len(), 32);
    }
}
