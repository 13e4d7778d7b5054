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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::Ticks;
use crate::wire::Tag;

/// The bytes all rendered entries of one cache may hold, and how many they hold.
#[derive(Debug)]
pub struct RenderBudget {
    limit: u64,
    used: AtomicU64,
}

impl RenderBudget {
    /// A budget of `limit` bytes (0: nothing is ever rendered).
    pub fn new(limit: u64) -> Arc<RenderBudget> {
        Arc::new(RenderBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes held by rendered entries (including those whose account was replaced but not yet
    /// reclaimed).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the budget is not zero.
    pub fn is_enabled(&self) -> bool {
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

/// How many `TagList`s one account version keeps an entry for.
pub const MAX_TAG_LISTS: usize = 4;

/// An account's rendered entries: a chain of at most [`MAX_TAG_LISTS`], appended to only.
#[derive(Debug, Default)]
pub(super) struct Renders {
    first: OnceLock<Box<Rendered>>,
}

impl Renders {
    /// The entry rendered for exactly `tags`, if there is one and it is fresh at `now`.
    pub(super) fn find(&self, tags: &[Tag], now: Ticks) -> Option<Render<'_>> {
        let mut next = self.first.get();
        while let Some(rendered) = next {
            if *rendered.tags == *tags {
                return rendered.answering(now);
            }
            next = rendered.next.get();
        }
        None
    }

    /// Keeps `render` for `tags` if the chain has room for another `TagList` and the budget for
    /// its bytes. The caller found no entry for `tags`; two callers racing to add the same one
    /// may both add it (the second is never read: harmless).
    pub(super) fn keep(&self, budget: &Arc<RenderBudget>, tags: &[Tag], render: Render<'_>) {
        let mut slot = &self.first;
        for _ in 0..MAX_TAG_LISTS {
            match slot.get() {
                Some(rendered) => slot = &rendered.next,
                None => {
                    let Some(rendered) = Rendered::new(budget, tags, render) else {
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
pub struct Rendered {
    /// The `TagList` it answers, in request order, duplicates kept.
    tags: Box<[Tag]>,
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
    /// `render` for `tags`, if the budget has room for it.
    fn new(budget: &Arc<RenderBudget>, tags: &[Tag], render: Render<'_>) -> Option<Rendered> {
        let cost = cost(tags.len(), render.json.len());
        if !budget.take(cost) {
            return None;
        }
        Some(Rendered {
            tags: tags.into(),
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
        let cost = cost(self.tags.len(), self.json.len());
        self.budget.used.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// What a rendered entry of `tags` tags and `json` bytes is charged: its heap blocks and itself.
fn cost(tags: usize, json: usize) -> u64 {
    let bytes = std::mem::size_of::<Rendered>() + tags * std::mem::size_of::<Tag>() + json;
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
        renders.keep(&budget, &tags(&[0, 7]), render(b"{}", until));
        let found = |t: &[usize], at| renders.find(&tags(t), at).map(|r| r.json.to_vec());
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
            renders.keep(&budget, &tags(&[i]), render(json.as_bytes(), until));
        }
        for i in 0..MAX_TAG_LISTS + 2 {
            let found = renders.find(&tags(&[i]), now).map(|r| r.json.to_vec());
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
        let one = cost(2, 100);
        let budget = RenderBudget::new(2 * one);
        let json = [b'x'; 100];
        let first = Rendered::new(&budget, &tags(&[0, 1]), render(&json, now));
        let second = Rendered::new(&budget, &tags(&[0, 1]), render(&json, now));
        assert!(first.is_some() && second.is_some());
        assert_eq!(budget.used(), 2 * one);
        assert!(
            Rendered::new(&budget, &tags(&[0, 1]), render(&json, now)).is_none(),
            "full"
        );
        drop(first);
        assert_eq!(budget.used(), one);
        assert!(Rendered::new(&budget, &tags(&[0, 1]), render(&json, now)).is_some());
        let off = RenderBudget::new(0);
        assert!(Rendered::new(&off, &tags(&[0]), render(b"{}", now)).is_none());
        assert_eq!(off.used(), 0);
    }
}
