//! The assemble stage of `portrait_get`: the answer written in `To_Account` and `TagList` order
//! from what the lookup found (lookup.rs) and what the fetch brought back (fetch.rs).

use std::time::Instant;

use serde_json::value::RawValue;

use super::lookup::{AccountView, Lookups};
use super::ProfileService;
use crate::batcher::AccountFetch;
use crate::cache::Lookup;
use crate::wire::{PortraitGetRequest, RawJson, ResponseWriter, Tag};

impl ProfileService {
    /// Builds the answer: one entry per `To_Account` occurrence, tags in `TagList` order.
    pub(super) fn assemble(
        &self,
        request: &PortraitGetRequest<'_>,
        found: &Lookups<'_>,
        fetched: &[AccountFetch],
        now: Instant,
    ) -> Vec<u8> {
        // About 80 bytes per account entry and 96 per tag with a short value: one allocation
        // for most answers instead of a chain of regrowth copies.
        let capacity = 96 + request.accounts.len() * (80 + request.tags.len() * 96);
        let mut out = ResponseWriter::with_capacity(capacity);
        for &position in &found.positions {
            let view = &found.views[position];
            let fresh = view.fetched.and_then(|i| fetched.get(i));
            if let Some((code, info)) = &view.failed {
                out.failed_account(view.name, *code, info);
                continue;
            }
            if let Some(AccountFetch::Failed { code, info }) = fresh {
                out.failed_account(view.name, *code, info);
                continue;
            }
            out.begin_account(view.name);
            for tag in &request.tags {
                if let Some(value) = value_of(view, fresh, tag, now) {
                    out.tag_value(tag, value);
                }
            }
            out.end_account();
        }
        out.finish()
    }
}

/// The value to answer for `tag`: cached, stale but allowed, or just fetched; `None` when
/// unset.
fn value_of<'a>(
    view: &'a AccountView<'_>,
    fresh: Option<&'a AccountFetch>,
    tag: &Tag,
    now: Instant,
) -> Option<&'a str> {
    let in_list = |values: &'a [(Tag, Option<RawJson>)]| {
        let found = values.iter().find(|(t, _)| t == tag)?;
        Some(found.1.as_deref().map(RawValue::get))
    };
    match view
        .cached
        .as_deref()
        .map_or(Lookup::Miss, |c| c.lookup(tag, now))
    {
        Lookup::Value(v) => Some(v),
        Lookup::Absent => None,
        Lookup::Miss => match (in_list(&view.stale), fresh) {
            (Some(stale), _) => stale,
            (None, Some(AccountFetch::Values(values))) => in_list(values).flatten(),
            _ => None,
        },
    }
}
