//! CachedAccount: one account's name and cached tags, compactly: a fixed-size slot per tag and
//! the name and every value's JSON text in one string (see [`ProfileCache`](super::ProfileCache)),
//! and the answer entry the hit path rendered from them (rendered.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::rendered::{Render, RenderBudget, Renders, TagListKey};
use super::Lookup;
use crate::wire::{RawJson, Tag};

/// The cached tags of one account, compactly: one fixed-size slot per tag and the account's name
/// and every value's JSON text in one string, so a cached (account, tag) costs a slot (24 bytes)
/// plus its value's bytes, with no allocation of its own.
#[derive(Debug)]
pub struct CachedAccount {
    slots: Box<[Slot]>,
    /// The account's name, then the values' JSON texts, each custom tag's name just before its
    /// value.
    text: Box<str>,
    /// The name's length at the start of `text`.
    name_len: u32,
    /// Its answer entries as the hit path wrote them, for the first few `TagList`s it was
    /// written for, as the cache's render budget allowed.
    rendered: Renders,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Stored time + TTL as [`Ticks`]: comparing integers is cheaper than comparing instants.
    pub(super) fresh_until: Ticks,
    /// The value's text in `CachedAccount::text` (`len == ABSENT`: unset upstream).
    start: u32,
    len: u32,
    /// A custom tag's name length (its name precedes the value); 0 for a standard tag.
    name_len: u16,
    /// The standard tag's index, or `CUSTOM`.
    tag: u8,
}

/// `Slot::len` of a tag the upstream answered without a value.
const ABSENT: u32 = u32::MAX;
/// `Slot::tag` of a custom tag, whose name is kept in the text.
const CUSTOM: u8 = u8::MAX;

/// An instant as nanoseconds since the process's cache epoch: slots compare integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticks(u64);

impl Ticks {
    /// `at` in ticks (saturating at the epoch, an hour before the first cache was built).
    pub fn at(at: Instant) -> Ticks {
        Ticks(at.saturating_duration_since(epoch()).as_nanos() as u64)
    }

    /// The instant these ticks stand for.
    pub fn instant(self) -> Instant {
        epoch() + Duration::from_nanos(self.0)
    }

    pub(super) fn plus(self, d: Duration) -> Ticks {
        Ticks(self.0.saturating_add(d.as_nanos() as u64))
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
    })
}

impl CachedAccount {
    /// The account's name.
    pub fn name(&self) -> &str {
        self.text.get(..self.name_len as usize).unwrap_or("")
    }

    /// The slots it holds: what it adds to its bucket's weight in moka, against `cache.max_entries`.
    pub fn weight(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// The cached value of `tag` as an owned handle, if fresh at `now` (`Some(None)`: cached
    /// as unset).
    pub fn fresh(&self, tag: &Tag, now: Instant) -> Option<Option<RawJson>> {
        let (value, _) = self.find(tag, Ticks::at(now))?;
        owned(value)
    }

    /// What is cached for `tag`, honouring the per-slot TTL.
    pub fn lookup(&self, tag: &Tag, now: Instant) -> Lookup<'_> {
        self.lookup_until(tag, now).0
    }

    /// What is cached for `tag`, and until when it stays fresh (`None` for a miss).
    pub fn lookup_until(&self, tag: &Tag, now: Instant) -> (Lookup<'_>, Option<Instant>) {
        match self.find(tag, Ticks::at(now)) {
            Some((Some(v), until)) => (Lookup::Value(v), Some(until.instant())),
            Some((None, until)) => (Lookup::Absent, Some(until.instant())),
            None => (Lookup::Miss, None),
        }
    }

    /// The hit path's lookup: `tag`'s value text (`None`: cached as unset) and when it goes
    /// stale, if it is fresh at `now`.
    pub fn find(&self, tag: &Tag, now: Ticks) -> Option<(Option<&str>, Ticks)> {
        let slot = self.slot(tag).filter(|s| now < s.fresh_until)?;
        Some((self.value(slot), slot.fresh_until))
    }

    /// The value of `tag` if it went stale less than `max_age` ago (`Some(None)`: cached as
    /// unset); `None` when fresh, missing or older.
    pub fn stale(&self, tag: &Tag, now: Instant, max_age: Duration) -> Option<Option<RawJson>> {
        let slot = self.slot(tag)?;
        let now = Ticks::at(now);
        if slot.fresh_until <= now && now < slot.fresh_until.plus(max_age) {
            return owned(self.value(slot));
        }
        None
    }

    /// The answer entry rendered for exactly the `TagList` of `key`, if there is one and it is
    /// fresh at `now`.
    pub fn rendered(&self, key: &TagListKey<'_>, now: Ticks) -> Option<Render<'_>> {
        self.rendered.find(key, now)
    }

    /// Keeps `render`, this account's answer entry for `key`'s `TagList`, if it has room for
    /// another `TagList` and `budget` for the bytes.
    pub(super) fn keep_rendered(
        &self,
        budget: &Arc<RenderBudget>,
        key: &TagListKey<'_>,
        render: Render<'_>,
    ) {
        self.rendered.keep(budget, key, render);
    }

    fn slot(&self, tag: &Tag) -> Option<&Slot> {
        match tag.standard_index() {
            Some(index) => self.slots.iter().find(|s| s.tag == index),
            None => self
                .slots
                .iter()
                .find(|s| s.tag == CUSTOM && self.custom_name(s) == tag.as_str()),
        }
    }

    fn value(&self, slot: &Slot) -> Option<&str> {
        if slot.len == ABSENT {
            return None;
        }
        let start = slot.start as usize;
        self.text.get(start..start + slot.len as usize)
    }

    fn custom_name(&self, slot: &Slot) -> &str {
        let start = slot.start as usize;
        let name = start.checked_sub(usize::from(slot.name_len));
        name.and_then(|n| self.text.get(n..start)).unwrap_or("")
    }

    /// The account `name`: `old`'s slots that `keep` keeps and `values` does not replace, then
    /// `values`, fresh until `fresh_until`. `None` for a name too long to keep.
    pub(super) fn merged(
        name: &str,
        old: Option<&CachedAccount>,
        keep: impl Fn(&Slot) -> bool,
        values: &[(Tag, Option<RawJson>)],
        fresh_until: Ticks,
    ) -> Option<CachedAccount> {
        let name_len = u32::try_from(name.len()).ok()?;
        let mut out = Builder {
            slots: Vec::with_capacity(values.len() + old.map_or(0, |o| o.slots.len())),
            text: String::from(name),
        };
        if let Some(old) = old {
            let replaced = |s: &Slot| values.iter().any(|(t, _)| old.slot(t) == Some(s));
            for slot in old.slots.iter().filter(|s| keep(s) && !replaced(s)) {
                let name = old.custom_name(slot);
                out.push(slot.tag, name, old.value(slot), slot.fresh_until);
            }
        }
        for (tag, value) in values {
            let (index, name) = match tag.standard_index() {
                Some(index) => (index, ""),
                None => (CUSTOM, tag.as_str()),
            };
            out.push(
                index,
                name,
                value.as_deref().map(RawValue::get),
                fresh_until,
            );
        }
        Some(CachedAccount {
            slots: out.slots.into_boxed_slice(),
            text: out.text.into_boxed_str(),
            name_len,
            rendered: Renders::default(),
        })
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        std::ptr::eq(self, other)
    }
}

/// Slots and text of a [`CachedAccount`] being built.
struct Builder {
    slots: Vec<Slot>,
    text: String,
}

impl Builder {
    /// Adds a slot; a name or value too long for a slot's fields is left uncached.
    fn push(&mut self, tag: u8, name: &str, value: Option<&str>, fresh_until: Ticks) {
        let Ok(name_len) = u16::try_from(name.len()) else {
            return;
        };
        let len = value.map_or(Some(ABSENT), |v| u32::try_from(v.len()).ok());
        let start = u32::try_from(self.text.len() + name.len()).ok();
        let (Some(start), Some(len)) = (start, len.filter(|l| value.is_none() || *l != ABSENT))
        else {
            return;
        };
        self.text.push_str(name);
        self.text.push_str(value.unwrap_or(""));
        self.slots.push(Slot {
            fresh_until,
            start,
            len,
            name_len,
            tag,
        });
    }
}

/// A value's text as an owned raw JSON handle (for the batcher and serve-stale, off the hit
/// path); `None` if it were somehow not JSON.
fn owned(value: Option<&str>) -> Option<Option<RawJson>> {
    match value {
        None => Some(None),
        Some(text) => RawValue::from_string(text.to_owned())
            .ok()
            .map(|v| Some(Arc::from(v))),
    }
}
