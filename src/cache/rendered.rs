//! Rendered entries: an account's answer entry (`{"To_Account":..,"ProfileItem":[..],..}`) as
//! the hit path wrote it for one `TagList`, kept beside the account's cached tags so that the
//! next request asking that account for the same tags copies it whole instead of looking up and
//! writing each pair.
//!
//! A rendered entry lives inside the [`CachedAccount`](super::CachedAccount) it was written
//! from, which is never modified (a store or an invalidation replaces or removes it), so it can
//! never disagree with the slots it was built from. It is served only while all of its pairs
//! are fresh. An account version keeps the entries of the first [`MAX_TAG_LISTS`] `TagList`s it
//! is written for (callers differ in the tags they ask for), in a chain that is only ever
//! appended to, so reading needs no lock. Their memory is bounded by one [`RenderBudget`] per
//! cache (`cache.rendered_entry_bytes`; 0 turns them off): past it, accounts are answered pair
//! by pair as before.
//!
//! Entries are matched by a [`TagListKey`]: the usual `TagList` (standard tags only) packed into
//! 16 bytes held in the entry itself, so finding an account's entry reads no memory beyond the
//! entry's own header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::Ticks;
use crate::wire::Tag;

/// The bytes all rendered entries of one cache may hold, and how many they hold.
#[derive(Debug)]
pub(super) struct RenderBudget {
    limit: u64,
    used: AtomicU64,
}

impl RenderBudget {
    /// A budget of `limit` bytes (0: nothing is ever rendered).
    pub(super) fn new(limit: u64) -> Arc<RenderBudget> {
        Arc::new(RenderBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes held by rendered entries (including those whose account was replaced but not yet
    /// reclaimed).
    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the budget is not zero.
    pub(super) fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// Takes `bytes` from the budget, if they fit.
    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }
}

/// A request's `TagList` as entries are matched by, computed once per request.
#[derive(Debug, Clone, Copy)]
pub struct TagListKey<'a> {
    packed: Option<Packed>,
    tags: &'a [Tag],
}

/// The most tags a [`Packed`] key holds.
const MAX_PACKED: usize = 15;

/// Up to [`MAX_PACKED`] standard tags: their number, then their indices, then zeros.
type Packed = [u8; MAX_PACKED + 1];

impl<'a> TagListKey<'a> {
    pub fn new(tags: &'a [Tag]) -> TagListKey<'a> {
        TagListKey {
            packed: pack(tags),
            tags,
        }
    }
}

/// `tags` packed, if they are few enough and all standard.
fn pack(tags: &[Tag]) -> Option<Packed> {
    if tags.len() > MAX_PACKED {
        return None;
    }
    let mut packed = [0; MAX_PACKED + 1];
    packed[0] = tags.len() as u8;
    for (byte, tag) in packed[1..].iter_mut().zip(tags) {
        *byte = tag.standard_index()?;
    }
    Some(packed)
}

/// A [`TagListKey`] as an entry keeps it: packed whenever it can be, so the two forms never
/// stand for the same list.
#[derive(Debug)]
enum StoredKey {
    Packed(Packed),
    Listed(Box<[Tag]>),
}

impl StoredKey {
    fn new(key: &TagListKey<'_>) -> StoredKey {
        match key.packed {
            Some(packed) => StoredKey::Packed(packed),
            None => StoredKey::Listed(key.tags.into()),
        }
    }

    fn matches(&self, key: &TagListKey<'_>) -> bool {
        match (self, &key.packed) {
            (StoredKey::Packed(mine), Some(theirs)) => mine == theirs,
            (StoredKey::Listed(mine), None) => **mine == *key.tags,
            _ => false,
        }
    }

    /// Heap bytes it holds beyond itself.
    fn heap_bytes(&self) -> usize {
        match self {
            StoredKey::Packed(_) => 0,
            StoredKey::Listed(tags) => std::mem::size_of_val(&**tags),
        }
    }
}

/// How many `TagList`s one account version keeps an entry for.
pub(super) const MAX_TAG_LISTS: usize = 4;

/// An account's rendered entries: a chain of at most [`MAX_TAG_LISTS`], appended to only.
#[derive(Debug, Default)]
pub(super) struct Renders {
    first: OnceLock<Box<Rendered>>,
}

impl Renders {
    /// The entry rendered for exactly `key`'s `TagList`, if there is one and it is fresh at `now`.
    pub(super) fn find(&self, key: &TagListKey<'_>, now: Ticks) -> Option<Render<'_>> {
        let mut next = self.first.get();
        while let Some(rendered) = next {
            if rendered.key.matches(key) {
                return rendered.answering(now);
            }
            next = rendered.next.get();
        }
        None
    }

    /// Keeps `render` for `key` if the chain has room for another `TagList` and the budget for
    /// its bytes. The caller found no entry for `key`; two callers racing to add the same one
    /// may both add it (the second is never read: harmless).
    pub(super) fn keep(
        &self,
        budget: &Arc<RenderBudget>,
        key: &TagListKey<'_>,
        render: Render<'_>,
    ) {
        let mut slot = &self.first;
        for _ in 0..MAX_TAG_LISTS {
            match slot.get() {
                Some(rendered) => slot = &rendered.next,
                None => {
                    let Some(rendered) = Rendered::new(budget, key, render) else {
                        return;
                    };
                    match slot.set(Box::new(rendered)) {
                        Ok(()) => return,
                        // Another caller filled this link first: the next one, if any.
                        Err(mine) => drop(mine),
                    }
                }
            }
        }
    }
}

/// One account's answer entry for one `TagList`, and what counting and keeping it needs.
#[derive(Debug)]
pub(super) struct Rendered {
    /// The `TagList` it answers, in request order, duplicates kept.
    key: StoredKey,
    /// The entry's JSON, from `{"To_Account"` to its closing `}`.
    json: Box<[u8]>,
    counts: PairCounts,
    budget: Arc<RenderBudget>,
    /// The entry of another `TagList`.
    next: OnceLock<Box<Rendered>>,
}

/// What an account's entry for a `TagList` counts: the same whether written pair by pair or
/// copied rendered.
#[derive(Debug, Clone, Copy)]
pub struct PairCounts {
    /// When the first of its pairs goes stale.
    pub fresh_until: Ticks,
    /// Distinct tags answered with a value (what the lookup metrics count).
    pub hits: u32,
    /// Distinct tags answered as unset.
    pub absent: u32,
}

/// A rendered entry: its JSON, from `{"To_Account"` to its closing `}`, and its counts.
#[derive(Debug, Clone, Copy)]
pub struct Render<'a> {
    pub json: &'a [u8],
    pub counts: PairCounts,
}

impl Rendered {
    /// `render` for `key`, if the budget has room for it.
    fn new(
        budget: &Arc<RenderBudget>,
        key: &TagListKey<'_>,
        render: Render<'_>,
    ) -> Option<Rendered> {
        let key = StoredKey::new(key);
        let cost = cost(&key, render.json.len());
        if !budget.take(cost) {
            return None;
        }
        Some(Rendered {
            key,
            json: render.json.into(),
            counts: render.counts,
            budget: budget.clone(),
            next: OnceLock::new(),
        })
    }

    /// The entry, if all its pairs are fresh at `now`.
    fn answering(&self, now: Ticks) -> Option<Render<'_>> {
        (now < self.counts.fresh_until).then_some(Render {
            json: &self.json,
            counts: self.counts,
        })
    }
}

impl Drop for Rendered {
    fn drop(&mut self) {
        let cost = cost(&self.key, self.json.len());
        self.budget.used.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// What a rendered entry keyed by `key` with `json` bytes is charged: itself and its heap blocks.
fn cost(key: &StoredKey, json: usize) -> u64 {
    let bytes = std::mem::size_of::<Rendered>() + key.heap_bytes() + json;
    bytes as u64
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn tags(indices: &[usize]) -> Vec<Tag> {
        indices
            .iter()
            .map(|&i| Tag::standard(i).expect("standard tag"))
            .collect()
    }

    fn key(tags: &[Tag]) -> TagListKey<'_> {
        TagListKey::new(tags)
    }

    fn render(json: &[u8], fresh_until: Ticks) -> Render<'_> {
        Render {
            json,
            counts: PairCounts {
                fresh_until,
                hits: 2,
                absent: 0,
            },
        }
    }

    /// A roomy budget, now, ten seconds from now, and an account's empty chain.
    fn setup() -> (Arc<RenderBudget>, Ticks, Ticks, Renders) {
        let now = Ticks::at(Instant::now());
        let until = now.plus(std::time::Duration::from_secs(10));
        (RenderBudget::new(1 << 20), now, until, Renders::default())
    }

    #[test]
    fn an_entry_answers_only_its_own_tag_list_and_only_while_fresh() {
        let (budget, now, until, renders) = setup();
        renders.keep(&budget, &key(&tags(&[0, 7])), render(b"{}", until));
        let found = |t: &[usize], at| renders.find(&key(&tags(t)), at).map(|r| r.json.to_vec());
        assert_eq!(found(&[0, 7], now), Some(b"{}".to_vec()));
        assert_eq!(found(&[7, 0], now), None, "order matters");
        assert_eq!(found(&[0, 7, 7], now), None, "repeats matter");
        assert_eq!(found(&[0], now), None);
        assert_eq!(found(&[0, 7], until), None, "stale at its expiry");
    }

    #[test]
    fn an_account_keeps_the_first_few_tag_lists_it_is_written_for() {
        let (budget, now, until, renders) = setup();
        for i in 0..MAX_TAG_LISTS + 2 {
            let json = format!("{i}");
            renders.keep(&budget, &key(&tags(&[i])), render(json.as_bytes(), until));
        }
        for i in 0..MAX_TAG_LISTS + 2 {
            let found = renders
                .find(&key(&tags(&[i])), now)
                .map(|r| r.json.to_vec());
            let expected = (i < MAX_TAG_LISTS).then(|| format!("{i}").into_bytes());
            assert_eq!(found, expected, "tag list {i}");
        }
        let held = budget.used();
        drop(renders);
        assert_eq!(
            budget.used(),
            0,
            "{held} bytes given back when the account goes"
        );
    }

    #[test]
    fn the_budget_bounds_what_is_held_and_is_given_back_on_drop() {
        let now = Ticks::at(Instant::now());
        let two = tags(&[0, 1]);
        let two = key(&two);
        let one = cost(&StoredKey::new(&two), 100);
        let budget = RenderBudget::new(2 * one);
        let json = [b'x'; 100];
        let first = Rendered::new(&budget, &two, render(&json, now));
        let second = Rendered::new(&budget, &two, render(&json, now));
        assert!(first.is_some() && second.is_some());
        assert_eq!(budget.used(), 2 * one);
        assert!(
            Rendered::new(&budget, &two, render(&json, now)).is_none(),
            "full"
        );
        drop(first);
        assert_eq!(budget.used(), one);
        assert!(Rendered::new(&budget, &two, render(&json, now)).is_some());
        let off = RenderBudget::new(0);
        assert!(Rendered::new(&off, &two, render(b"{}", now)).is_none());
        assert_eq!(off.used(), 0);
    }

    #[test]
    fn lists_past_the_packed_form_match_only_themselves() {
        let (budget, now, until, renders) = setup();
        let nick = Tag::standard(0).expect("standard tag");
        let custom = Tag::parse("Tag_Profile_Custom_Level").expect("custom tag");
        // 16 tags are kept as a list, 15 packed: neither may answer for the other.
        let long: Vec<Tag> = (0..=MAX_PACKED).map(|_| nick.clone()).collect();
        let kept = [
            vec![custom.clone()],
            vec![nick.clone(), custom.clone()],
            long.clone(),
            long[1..].to_vec(),
        ];
        assert_eq!(kept.len(), MAX_TAG_LISTS);
        for (i, list) in kept.iter().enumerate() {
            let json = format!("{i}");
            renders.keep(&budget, &key(list), render(json.as_bytes(), until));
        }
        for (i, list) in kept.iter().enumerate() {
            let found = renders.find(&key(list), now).map(|r| r.json.to_vec());
            assert_eq!(found, Some(format!("{i}").into_bytes()), "list {i}");
        }
        let never_kept = [vec![custom.clone(), nick.clone()], long[2..].to_vec()];
        for list in never_kept {
            assert!(
                renders.find(&key(&list), now).is_none(),
                "{} tags",
                list.len()
            );
        }
    }
}
