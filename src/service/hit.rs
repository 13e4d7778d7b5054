//! The all-hit path in one pass: what a body seen for the first time costs when every (account,
//! tag) it asks for is cached and fresh.
//!
//! Each distinct account is read from the cache once, borrowed for the request (no lock, no `Arc`
//! taken: see `cache/table.rs`); all of them are found first, so that the processor overlaps their
//! cache misses, then the answer is written with each pair looked up once and no per-account views
//! or miss lists. An account already rendered for the request's `TagList` (cache/rendered.rs) is
//! copied whole from its rendered entry; one written pair by pair is rendered for the next request
//! (within the cache's render budget). An account asked for again in the same request is copied
//! from the bytes of its first entry. The first pair that is not a fresh hit (a miss, a stale
//! value, an account not cached or remembered as failed) abandons the pass; the general path
//! (lookup.rs `lookup` -> fetch.rs -> assemble.rs `assemble`) then takes the request from the
//! start. Nothing is counted in the metrics until the pass succeeds.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;

use super::ProfileService;
use crate::answers::CachedAnswer;
use crate::cache::{CachedAccount, PairCounts, Render, Stamp, TagListKey, Ticks};
use crate::wire::{PortraitGetRequest, ResponseWriter, Tag, MAX_ACCOUNTS_PER_REQUEST};

/// An answer written wholly from the cache, and what keeping it by body needs.
pub(super) struct AllHit {
    answer: Vec<u8>,
    /// Each distinct account's stamp, taken before its entry was read.
    sources: Vec<Stamp>,
    /// When the first of its pairs goes stale.
    fresh_until: Option<Ticks>,
    /// Distinct pairs answered with a value, and as unset.
    hits: u64,
    absent: u64,
}

/// The tags of a request as a bit set of first occurrences (distinct pairs are what the lookup
/// metrics count); `None` past 64 tags, which the general path handles.
fn first_occurrences(request: &PortraitGetRequest<'_>) -> Option<u64> {
    let tags = &request.tags;
    if tags.len() > 64 {
        return None;
    }
    let first = (0..tags.len())
        .filter(|&i| !tags[..i].contains(&tags[i]))
        .fold(0u64, |set, i| set | (1 << i));
    Some(first)
}

/// `To_Account`'s names, in request order.
fn names_in_order<'r>(request: &'r PortraitGetRequest<'_>) -> impl Iterator<Item = &'r str> {
    request.accounts.iter().map(|n| n.as_ref())
}

/// One of a request's distinct accounts: its name, its cached entry, and where its answer entry
/// was written (a repeat is written again from there).
struct Seen<'r, 'c> {
    name: &'r str,
    account: &'c CachedAccount,
    written: Option<Range<usize>>,
}

/// The distinct accounts of a request (at most 100, wire.rs) by hash: an open-addressed table
/// on the stack, keyed on the hash that also picks the account's invalidation stripe.
struct Distinct {
    /// 0: free; else the account's index among the distinct accounts + 1.
    table: [u8; 256],
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct { table: [0; 256] }
    }
}

impl Distinct {
    /// `Ok(index)` of `name` among `seen`, or `Err(free slot)` to record it in.
    fn find(&self, name: &str, hash: u64, seen: &[Seen<'_, '_>]) -> Result<u8, usize> {
        let mut at = (hash >> 40) as usize % self.table.len();
        loop {
            match self.table[at] {
                0 => return Err(at),
                i if seen.get(usize::from(i - 1)).map(|s| s.name) == Some(name) => return Ok(i - 1),
                _ => at = (at + 1) % self.table.len(),
            }
        }
    }
}

impl AllHit {
    /// Counts an account's pairs into the answer.
    fn count(&mut self, counts: PairCounts) {
        self.hits += u64::from(counts.hits);
        self.absent += u64::from(counts.absent);
        let until = counts.fresh_until;
        self.fresh_until = Some(self.fresh_until.map_or(until, |f| f.min(until)));
    }
}

/// Writes an account's pairs from its cached entry (`first`: the tags' first occurrences) and
/// returns their counts; `None` at the first pair that is not a fresh hit.
fn write_pairs(
    entry: &CachedAccount,
    tags: &[Tag],
    first: u64,
    now: Ticks,
    out: &mut ResponseWriter,
) -> Option<PairCounts> {
    let (mut hits, mut absent, mut fresh_until) = (0, 0, None::<Ticks>);
    for (i, tag) in tags.iter().enumerate() {
        let (value, until) = entry.find(tag, now)?;
        if first & (1 << i) != 0 {
            match value {
                Some(_) => hits += 1,
                None => absent += 1,
            }
            fresh_until = Some(fresh_until.map_or(until, |f| f.min(until)));
        }
        if let Some(value) = value {
            out.tag_value(tag, value);
        }
    }
    Some(PairCounts {
        fresh_until: fresh_until?,
        hits,
        absent,
    })
}

impl ProfileService {
    /// Answers `request` in one pass if every pair is a fresh hit; `None` otherwise.
    pub(super) fn answer_all_hit(
        &self,
        request: &PortraitGetRequest<'_>,
        now: Instant,
    ) -> Option<AllHit> {
        let first = first_occurrences(request)?;
        let now = Ticks::at(now);
        let cache = &self.0.cache;
        let accounts = request.accounts.len();
        // Decoding refuses longer lists; were one to get here, the general path would answer it.
        if accounts > MAX_ACCOUNTS_PER_REQUEST {
            return None;
        }
        let capacity = 96 + accounts * (80 + request.tags.len() * 96);
        let mut out = ResponseWriter::with_capacity(capacity);
        let mut hit = AllHit {
            answer: Vec::new(),
            sources: Vec::with_capacity(accounts),
            fresh_until: None,
            hits: 0,
            absent: 0,
        };
        // First every account is found (independent lookups, whose cache misses the processor
        // overlaps), then the answer is written.
        let reader = cache.reader();
        let mut seen: Vec<Seen<'_, '_>> = Vec::with_capacity(accounts);
        // Each position's index among the distinct accounts (at most 100 of them).
        let mut positions = [0u8; MAX_ACCOUNTS_PER_REQUEST];
        let mut distinct = Distinct::default();
        // Stamps matter only to an answer kept by body.
        let stamped = self.0.answers.is_enabled();
        let renders = cache.renders();
        for (position, name) in positions.iter_mut().zip(names_in_order(request)) {
            let hash = cache.hash(name);
            *position = match distinct.find(name, hash, &seen) {
                Ok(index) => index,
                Err(free) => {
                    if stamped {
                        hit.sources.push(cache.stamp_hashed(hash));
                    }
                    let index = u8::try_from(seen.len()).ok()?;
                    seen.push(Seen {
                        name,
                        account: reader.get(name, hash)?,
                        written: None,
                    });
                    distinct.table[free] = index + 1;
                    index
                }
            };
        }
        let tags = &request.tags[..];
        let key = TagListKey::new(tags);
        for &index in &positions[..accounts] {
            let Seen {
                name,
                account,
                written,
            } = &mut seen[usize::from(index)];
            if let Some(entry) = written {
                out.repeat_account(entry.clone());
                continue;
            }
            if let Some(render) = account.rendered(&key, now) {
                hit.count(render.counts);
                *written = Some(out.rendered_account(render.json));
                continue;
            }
            let start = out.begin_account(name);
            let counts = write_pairs(account, tags, first, now, &mut out)?;
            let entry = start..out.end_account();
            hit.count(counts);
            if renders {
                let json = out.written(entry.clone());
                cache.keep_rendered(account, &key, Render { json, counts });
            }
            *written = Some(entry);
        }
        hit.answer = out.finish();
        Some(hit)
    }

    /// Counts an all-hit answer's lookups, keeps it by body (answers.rs decides whether to keep
    /// it yet) and hands it out.
    pub(super) fn all_hit_answer(&self, body: &[u8], hit: AllHit) -> Bytes {
        let metrics = &self.0.metrics;
        metrics.cache_hits.inc_by(hit.hits);
        metrics.cache_absent.inc_by(hit.absent);
        let answer = Bytes::from(hit.answer);
        if let Some(fresh_until) = hit.fresh_until {
            self.keep_answer(body, || CachedAnswer {
                body: answer.clone(),
                fresh_until: fresh_until.instant(),
                sources: hit.sources.into_boxed_slice(),
                hits: hit.hits,
                absent: hit.absent,
            });
        }
        answer
    }
}
