//! The Lua scripts the fleet runs inside Redis, so that each decision is atomic and read
//! against Redis's own clock (`TIME`): gateways' clocks never meet.
//!
//! Times inside the scripts are microseconds since the Unix epoch on Redis's clock. Every key
//! a script touches is passed in `KEYS`.
//!
//! | file | scripts |
//! |---|---|
//! | `scripts/budget.rs` | HEARTBEAT, ACQUIRE, RELEASE, PACE_DOWN, PROBE |
//! | `scripts/tier.rs` | CACHE_GET, CACHE_PUT, RELEASE_CLAIMS, INVALIDATE, PUBLISH |
//! | `scripts/lists.rs` | LIST_GET, LIST_PUT, LIST_INVALIDATE |

use std::time::Duration;

mod budget;
mod lists;
mod tier;

pub(super) use budget::{ACQUIRE, HEARTBEAT, PACE_DOWN, PROBE, RELEASE};
pub(super) use lists::{LIST_GET, LIST_INVALIDATE, LIST_PUT};
pub(super) use tier::{CACHE_GET, CACHE_PUT, INVALIDATE, PUBLISH, RELEASE_CLAIMS};

/// A duration as the scripts take it: whole microseconds.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
