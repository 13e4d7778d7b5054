//! The list reads' fleet-wide invalidation: a `State.StateChange` (or a group callback, or a
//! purge) heard by one gateway drops the id on every gateway. Each message on the fleet's
//! `invalidate_lists` channel is `<api label>\n<id>` (a label has no newline; the id is the
//! rest, whatever it holds; an empty id, which no request can name, means every id). List answers are not kept in Redis, so a publish is all it takes;
//! one Redis could not take is kept (bounded, with the accounts') and sent again with them
//! before the gateway returns to fleet mode.

use super::super::metrics::Command;
use super::super::scripts;
use super::{RedisTier, MAX_PENDING_INVALIDATIONS};
use crate::apis;
use crate::cache::ProfileCache;

impl RedisTier {
    /// The list invalidation channel's name.
    pub(in crate::fleet) fn list_channel(&self) -> &str {
        &self.0.list_channel
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

    async fn publish_list(&self, message: &str) -> bool {
        let mut invocation = scripts::PUBLISH.prepare_invoke();
        invocation.arg(&self.0.list_channel).arg(message);
        let link = &self.0.link;
        let result: Result<i64, _> = link.run_anyway(Command::Invalidate, &invocation).await;
        result.is_ok()
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
