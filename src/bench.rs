//! What the criterion benches (`benches/`) measure below the HTTP surface: request decoding,
//! upstream answers, batcher round trips, UserSig verdicts. Doc-hidden and not a stable API;
//! nothing outside `benches/` should use it.

pub use crate::auth::Authenticator;
pub use crate::batcher::{BatchConfig, Batcher};
pub use crate::cache::AccountMiss;
pub use crate::cache::CacheTier;
pub use crate::cache::ProfileCache;
pub use crate::ratelimit::UpstreamLimiter;
pub use crate::upstream::{PathMetrics, UpstreamPath};
pub use crate::wire::{decode_portrait_get, decode_upstream_get, Account, Tag};
