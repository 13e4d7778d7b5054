//! A list read in a fleet: the ids this gateway's cache missed, looked up in the shared tier
//! before any is fetched. An id kept there (`ttl_ms > 0`) is answered from it; an id a peer is
//! fetching is awaited (one wait, bounded by the peer's claim and the caller's deadline) and
//! read from what that fetch shared; the rest this gateway claims and fetches itself, through
//! its flights, and shares when the answer comes (`flight.rs`). Redis down or slow: every id
//! is fetched here, as a standalone gateway would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::flight::Caller;
use crate::cache::{ListEntry, ListKeys, ListStamp, ListTierAnswer, SharedTier};

/// What the shared tier answered of a caller's misses: ids found there (entry, or left out by
/// the upstream), the ids this gateway fetches (its claims: into its flights at once), and
/// the ids peers are fetching.
pub(super) struct FromFleet {
    pub found: HashMap<Arc<str>, Option<ListEntry>>,
    pub fetch: Vec<Arc<str>>,
    pub theirs: Peers,
}

/// Ids peers claimed, to wait for.
#[derive(Default)]
pub(super) struct Peers {
    ids: Vec<(Arc<str>, ListStamp)>,
    since: Option<Instant>,
    /// When the longest of their claims lapses.
    until: Option<Instant>,
}

/// Looks `misses` up in `tier`, claiming what nobody holds: the ids found, the ids this
/// gateway now fetches, the ids peers fetch. Tier unavailable: every id is this gateway's.
pub(super) async fn look_up(
    tier: &dyn SharedTier,
    caller: &Caller,
    options: &Arc<str>,
    misses: Vec<Arc<str>>,
) -> FromFleet {
    let mut result = FromFleet {
        found: HashMap::new(),
        fetch: Vec::new(),
        theirs: Peers::default(),
    };
    let since = Instant::now();
    let stamps: Vec<ListStamp> = misses
        .iter()
        .map(|id| caller.cache.stamp(caller.index, id))
        .collect();
    let read = !caller.ttl.is_zero();
    let Some(answers) = tier.list_lookup(keys(caller, options), &misses, read).await else {
        result.fetch = misses;
        return result;
    };
    let mut until = since;
    for ((id, answer), stamp) in misses.into_iter().zip(answers).zip(stamps) {
        match answer {
            ListTierAnswer::Found(entry) => result.found_in_tier(caller, options, id, entry, stamp),
            ListTierAnswer::Mine => result.fetch.push(id),
            ListTierAnswer::Theirs(left) => {
                until = until.max(since + left);
                result.theirs.ids.push((id, stamp));
            }
        }
    }
    result.theirs.since = Some(since);
    result.theirs.until = Some(until);
    caller.own.shared.inc_by(result.found.len() as u64);
    result
}

impl Peers {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Waits for the peers' fetches (until their claims lapse, `deadline` at most), then looks
    /// once more: what they shared is found; the rest this gateway fetches (claimed now, or
    /// still a peer's: fetched here too rather than waited on again).
    pub(super) async fn wait(
        self,
        tier: &dyn SharedTier,
        caller: &Caller,
        options: &Arc<str>,
        deadline: Instant,
    ) -> FromFleet {
        let mut result = FromFleet {
            found: HashMap::new(),
            fetch: Vec::new(),
            theirs: Peers::default(),
        };
        let ids: Vec<Arc<str>> = self.ids.iter().map(|(id, _)| id.clone()).collect();
        let (since, until) = (self.since.unwrap_or_else(Instant::now), self.until);
        let until = until.unwrap_or(deadline).min(deadline);
        let keys = keys(caller, options);
        tier.list_wait_filled(keys, &ids, since, until).await;
        let Some(again) = tier.list_lookup(keys, &ids, true).await else {
            result.fetch = ids;
            return result;
        };
        for ((id, stamp), answer) in self.ids.into_iter().zip(again) {
            match answer {
                ListTierAnswer::Found(entry) => {
                    result.found_in_tier(caller, options, id, entry, stamp)
                }
                ListTierAnswer::Mine | ListTierAnswer::Theirs(_) => result.fetch.push(id),
            }
        }
        caller.own.shared.inc_by(result.found.len() as u64);
        result
    }
}

fn keys<'a>(caller: &Caller, options: &'a Arc<str>) -> ListKeys<'a> {
    ListKeys {
        api: caller.spec.label,
        options: options.as_ref(),
    }
}

impl FromFleet {
    /// An id the tier answered: found, and kept in this gateway's cache too (`ttl_ms > 0`),
    /// fenced by the stamp taken before the lookup.
    fn found_in_tier(
        &mut self,
        caller: &Caller,
        options: &Arc<str>,
        id: Arc<str>,
        entry: Option<ListEntry>,
        stamp: ListStamp,
    ) {
        if let (Some(entry), false) = (&entry, caller.ttl.is_zero()) {
            let (index, ttl) = (caller.index, caller.ttl.get());
            (caller.cache).store(index, &id, options, entry.clone(), stamp, ttl);
        }
        self.found.insert(id, entry);
    }
}
